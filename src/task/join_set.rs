//! [`JoinSet`]: a set of tasks, awaited in the order they finish.
//!
//! # Design
//!
//! The set keeps its tasks' [`JoinHandle`]s in a slab, and polls only the
//! ones that may have finished, like `futures`' `FuturesUnordered`: each
//! entry has a small waker of its own (an `Arc` allocated once per task),
//! which the entry's task wakes when it finishes. Waking it pushes the
//! entry's key onto the set's *ready queue* (a mutex-guarded `VecDeque`,
//! taken whole by the set so that it locks once per batch) and wakes
//! whoever awaits [`join_next`](JoinSet::join_next). `join_next` pops keys
//! and polls those entries only, so its cost is per finished task, not per
//! task in the set. (The alternative, a completion hook inside every task,
//! would put a cost on tasks that are not in any set.)
//!
//! Invariants:
//!
//! * every entry is in the ready queue, or its task holds the entry's waker
//!   (registered by the entry's last poll, which returned `Pending`), so no
//!   finished task is missed. A new entry starts in the queue: its first
//!   poll registers the waker.
//! * an entry's `queued` flag is set while its key is in the queue, so a
//!   task woken many times is queued once; it is cleared just before the
//!   entry is polled (a wake-up during that poll queues it again).
//! * a key leaves the set only with its task's result, returned once, or
//!   through [`detach_all`](JoinSet::detach_all) or dropping the set; its
//!   waker is then marked queued for good, so it pushes nothing more. A key
//!   still in the queue by then (or pushed by a wake-up racing with the
//!   removal) is skipped, or names a later entry that reused the slot, which
//!   is then polled once for nothing: never wrong, only wasted.
//! * polling an entry never calls user code that can panic into the
//!   runtime: the entry's waker guards the waker of the awaiting task (it
//!   may belong to another executor) as a `JoinHandle` does.
//!
//! A call to `join_next` polls at most [`POLL_BUDGET`] entries that turn out
//! not to be finished, then yields (waking itself), so a burst of new
//! entries cannot hold its worker.
//!
//! [`spawn`](JoinSet::spawn) takes a [`Spawn`], so priorities, names,
//! timeouts and pools apply to the tasks of a set. It starts the task with
//! [`Spawn::start`]: a refusal (a full queue, a shut-down runtime) is not
//! an error at the spawn but that task's result, an `Err` from `join_next`.
//! Nothing is lost silently.
//!
//! Each task in a set costs one entry in the slab, its entry waker, and the
//! cell behind the [`AbortHandle`] that `spawn` returns (a second small
//! allocation; see `src/runtime/task/abort.rs` for why an `AbortHandle`
//! needs one).

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::resume_unwind;
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use super::{AbortHandle, JoinHandle, Spawn};
use crate::error::JoinError;
use crate::runtime::{coop, GuardedWaker};
use crate::sync::{Arc, AtomicBool, Ordering, RtMutex as Mutex};

/// How many not-yet-finished entries one poll of `join_next` polls before
/// it yields.
const POLL_BUDGET: usize = 64;

/// A set of tasks that can be awaited in the order they finish, aborted
/// together, and that are aborted when the set is dropped.
///
/// Add tasks with [`spawn`](Self::spawn) (any [`Spawn`]: its priority and
/// other options apply) or [`insert`](Self::insert) (an already started
/// task); take their results with [`join_next`](Self::join_next), in
/// completion order, not spawn order. The set is `Send` when `T` is, and
/// works on any executor (waiting costs no worker time: `join_next` is woken
/// when a task finishes). `join_next` polls only tasks that have finished
/// (or were just added), so its cost does not grow with the set.
///
/// Dropping the set aborts every task still in it (as
/// [`abort_all`](Self::abort_all) does); use [`detach_all`](Self::detach_all)
/// to let them run on instead.
///
/// ```
/// use multipool::task::JoinSet;
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let mut set = JoinSet::new();
///     for i in 0..10u64 {
///         set.spawn(multipool::spawn(async move { i * i }).priority(Priority::High));
///     }
///     let mut sum = 0;
///     while let Some(result) = set.join_next().await {
///         sum += result.unwrap();
///     }
///     assert_eq!(sum, 285);
///     assert!(set.is_empty());
/// });
/// ```
pub struct JoinSet<T> {
    entries: Slab<Entry<T>>,
    /// Keys taken from the shared ready queue, not polled yet.
    ready: VecDeque<usize>,
    shared: Arc<Shared>,
}

struct Entry<T> {
    handle: JoinHandle<T>,
    waker: Arc<EntryWaker>,
}

/// What the set shares with its entries' wakers.
struct Shared {
    /// Keys of entries that may have finished; see the module docs.
    ready: Mutex<VecDeque<usize>>,
    /// The waker of whoever awaits `join_next`, woken (and dropped) guarded.
    awaiter: Arc<GuardedWaker>,
}

/// The waker an entry's task wakes when it finishes.
struct EntryWaker {
    key: usize,
    /// The key is in the ready queue, or the entry has left the set.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.ready.lock().push_back(self.key);
            // Guarded: the awaiter's waker is user code, and async-task calls
            // this one where a panic would abort the process.
            Wake::wake_by_ref(&self.shared.awaiter);
        }
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        JoinSet {
            entries: Slab::new(),
            ready: VecDeque::new(),
            shared: Arc::new(Shared {
                ready: Mutex::new(VecDeque::new()),
                awaiter: Arc::default(),
            }),
        }
    }

    /// How many tasks are in the set: spawned and not yet returned by
    /// [`join_next`](Self::join_next) (finished ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts `spawn`'s task in the set; returns a handle that can abort it.
    ///
    /// The task's options (priority, name, timeout, pool, worker) apply as
    /// they would to [`Spawn::start`]. If the task cannot start (its pool's
    /// queue is full, the runtime shut down, an unknown pool), it is still
    /// added: `join_next` returns that refusal as its `Err` (see
    /// [`JoinError::is_rejected`], [`JoinError::is_shutdown`]).
    ///
    /// ```
    /// use multipool::task::JoinSet;
    /// use multipool::Priority;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let mut set = JoinSet::new();
    ///     set.spawn(multipool::spawn(async { "urgent" }).priority(Priority::High));
    ///     set.spawn(multipool::spawn(async { "never" }).pool("no-such-pool"));
    ///     let mut results = Vec::new();
    ///     while let Some(result) = set.join_next().await {
    ///         results.push(result);
    ///     }
    ///     assert_eq!(results.len(), 2);
    ///     assert!(results.iter().any(|r| matches!(r, Ok("urgent"))));
    ///     assert!(results.iter().any(|r| r.as_ref().is_err_and(|e| e.is_rejected())));
    /// });
    /// ```
    pub fn spawn<F>(&mut self, spawn: Spawn<F>) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.insert(spawn.start())
    }

    /// Adds a task that is already started (from [`Spawn::start`],
    /// [`spawn_local`](crate::spawn_local),
    /// [`spawn_blocking`](crate::task::spawn_blocking)); the set owns it from
    /// now on, as if it had spawned it.
    ///
    /// ```
    /// use multipool::task::{spawn_blocking, JoinSet};
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let mut set = JoinSet::new();
    ///     set.insert(spawn_blocking(|| 40));
    ///     set.insert(multipool::spawn(async { 2 }).start());
    ///     assert_eq!(set.join_all().await.into_iter().sum::<i32>(), 42);
    /// });
    /// ```
    pub fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let slot = self.entries.vacant_entry();
        let waker = Arc::new(EntryWaker {
            key: slot.key(),
            // Queued below: the first poll registers the waker.
            queued: AtomicBool::new(true),
            shared: self.shared.clone(),
        });
        self.shared.ready.lock().push_back(slot.key());
        slot.insert(Entry { handle, waker });
        // For a caller of `poll_join_next` that got `Pending` from an empty
        // queue.
        Wake::wake_by_ref(&self.shared.awaiter);
        abort
    }

    /// Waits for the next task to finish and returns its result; `None` when
    /// the set is empty. Tasks are returned in the order they finish, each
    /// exactly once; one that panicked, was aborted or refused returns its
    /// [`JoinError`].
    ///
    /// Cancel safe: dropping the future before it completes loses no result
    /// (the task stays in the set).
    ///
    /// ```
    /// use multipool::task::JoinSet;
    ///
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(async {
    ///     let (tx, rx) = multipool::sync::bounded::<()>(1);
    ///     let mut set = JoinSet::new();
    ///     set.spawn(multipool::spawn(async move { rx.recv().await.unwrap(); "slow" }));
    ///     set.spawn(multipool::spawn(async { "fast" }));
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "fast");
    ///     tx.send(()).await.unwrap();
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "slow");
    ///     assert!(set.join_next().await.is_none());
    /// });
    /// ```
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// Polls for the next finished task: `Ready(None)` when the set is empty;
    /// `Pending` (with `cx` woken later) when no task has finished yet. The
    /// poll behind [`join_next`](Self::join_next), for hand-written futures.
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if self.entries.is_empty() {
            return Poll::Ready(None);
        }
        // A leaf of the cooperative budget (see `task::consume_budget`):
        // a loop over a set whose tasks are all finished yields now and then.
        std::task::ready!(coop::poll_proceed(cx));
        // Registered before looking: a task that finishes after the queue
        // was found empty wakes `cx`.
        self.shared.awaiter.register(cx.waker());
        match self.next_finished(POLL_BUDGET) {
            Next::Finished(result) => Poll::Ready(Some(result)),
            Next::None => {
                coop::refund();
                Poll::Pending
            }
            Next::OutOfBudget => {
                coop::refund();
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    /// The result of a task that has finished, if one has, without waiting;
    /// `None` when none has (or the set is empty).
    ///
    /// ```
    /// use multipool::task::JoinSet;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let mut set = JoinSet::new();
    /// set.spawn(rt.spawn(async { 1 }));
    /// let result = loop {
    ///     if let Some(result) = set.try_join_next() {
    ///         break result;
    ///     }
    ///     std::thread::yield_now();
    /// };
    /// assert_eq!(result.unwrap(), 1);
    /// assert!(set.try_join_next().is_none());
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        if self.entries.is_empty() {
            return None;
        }
        match self.next_finished(usize::MAX) {
            Next::Finished(result) => Some(result),
            Next::None | Next::OutOfBudget => None,
        }
    }

    /// Pops ready keys and polls their entries until one has finished, the
    /// queue is empty, or `budget` entries were polled for nothing.
    fn next_finished(&mut self, mut budget: usize) -> Next<T> {
        loop {
            let key = match self.ready.pop_front() {
                Some(key) => key,
                None => {
                    std::mem::swap(&mut self.ready, &mut *self.shared.ready.lock());
                    match self.ready.pop_front() {
                        Some(key) => key,
                        None => return Next::None,
                    }
                }
            };
            let Some(entry) = self.entries.get_mut(key) else {
                continue; // stale: the entry has left the set
            };
            // Before the poll: a wake-up from here on queues the key again.
            // (A swap, so that it orders with the waker's.)
            entry.waker.queued.swap(false, Ordering::AcqRel);
            let waker = Waker::from(entry.waker.clone());
            let poll = entry.handle.poll_trusted(&mut Context::from_waker(&waker));
            if let Poll::Ready(result) = poll {
                self.remove(key).detach();
                return Next::Finished(result);
            }
            budget -= 1;
            if budget == 0 {
                return Next::OutOfBudget;
            }
        }
    }

    /// Takes entry `key` out of the set; its waker queues nothing from now on.
    fn remove(&mut self, key: usize) -> JoinHandle<T> {
        let entry = self.entries.remove(key);
        entry.waker.queued.store(true, Ordering::Release);
        entry.handle
    }

    /// Aborts every task in the set (see [`JoinHandle::abort`]). They stay
    /// in the set: `join_next` returns each one's result, an error with
    /// [`is_cancelled`](JoinError::is_cancelled) unless it finished first.
    ///
    /// ```
    /// use multipool::task::JoinSet;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let mut set = JoinSet::new();
    ///     for _ in 0..3 {
    ///         set.spawn(multipool::spawn(std::future::pending::<()>()));
    ///     }
    ///     set.abort_all();
    ///     while let Some(result) = set.join_next().await {
    ///         assert!(result.unwrap_err().is_cancelled());
    ///     }
    /// });
    /// ```
    pub fn abort_all(&mut self) {
        for (_, entry) in &self.entries {
            entry.handle.abort();
        }
    }

    /// Aborts every task and waits until each has finished; the set is then
    /// empty. Results are dropped; use [`abort_all`](Self::abort_all) and
    /// [`join_next`](Self::join_next) to see them.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Removes every task from the set without aborting it: each runs on,
    /// detached, as a dropped [`JoinHandle`] does.
    pub fn detach_all(&mut self) {
        let keys: Vec<usize> = self.entries.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key).detach();
        }
        self.ready.clear();
        self.shared.ready.lock().clear();
        self.forget_awaiter();
    }

    /// Drops the awaiter's waker: a detached task that runs on keeps the
    /// shared part alive through its entry's waker, and must not keep the
    /// awaiting task (perhaps the owner of this set) alive with it.
    fn forget_awaiter(&self) {
        self.shared.awaiter.register(Waker::noop());
    }

    /// Waits for every task and returns their outputs, in the order they
    /// finished.
    ///
    /// # Panics
    ///
    /// As tokio's `JoinSet::join_all` does: if a task panicked, its panic is
    /// resumed here; if one was cancelled, refused or timed out, this panics
    /// with its error. Either way every task still in the set is aborted
    /// first. Use [`join_next`](Self::join_next) to handle errors instead.
    ///
    /// ```
    /// use multipool::task::JoinSet;
    ///
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// let mut outputs = rt.block_on(async {
    ///     let set: JoinSet<_> = (1..=3).map(|i| multipool::spawn(async move { i * 10 })).collect();
    ///     set.join_all().await
    /// });
    /// outputs.sort();
    /// assert_eq!(outputs, [10, 20, 30]);
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut outputs = Vec::with_capacity(self.len());
        while let Some(result) = self.join_next().await {
            match result {
                Ok(output) => outputs.push(output),
                Err(error) => {
                    self.abort_all();
                    drop(self);
                    match error.try_into_panic() {
                        Ok(payload) => resume_unwind(payload),
                        Err(error) => panic!("a task in `JoinSet::join_all` failed: {error}"),
                    }
                }
            }
        }
        outputs
    }
}

/// What [`JoinSet::next_finished`] found.
enum Next<T> {
    Finished(Result<T, JoinError>),
    /// The ready queue is empty.
    None,
    OutOfBudget,
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    /// Aborts every task still in the set.
    fn drop(&mut self) {
        self.abort_all();
        for entry in self.entries.drain() {
            entry.waker.queued.store(true, Ordering::Release);
            // Dropping a handle detaches its (now cancelled) task.
            drop(entry.handle);
        }
        self.forget_awaiter();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}

/// Spawns every task into the set, as [`JoinSet::spawn`] does.
impl<F> Extend<Spawn<F>> for JoinSet<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn extend<I: IntoIterator<Item = Spawn<F>>>(&mut self, spawns: I) {
        for spawn in spawns {
            self.spawn(spawn);
        }
    }
}

/// A set of the tasks spawned, as [`JoinSet::spawn`] does.
impl<F> FromIterator<Spawn<F>> for JoinSet<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn from_iter<I: IntoIterator<Item = Spawn<F>>>(spawns: I) -> Self {
        let mut set = JoinSet::new();
        set.extend(spawns);
        set
    }
}
