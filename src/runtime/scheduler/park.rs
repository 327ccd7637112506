//! Parking a worker through a hook ([`Builder::park_with`]): an idle worker
//! drives an outside reactor (tokio's I/O driver, say) instead of sleeping.
//!
//! # Invariants
//!
//! * A worker's unpark path ([`WorkerUnparker::unpark`]: producers'
//!   notifications, an earlier timer, `close`, paused time moving) sets the
//!   worker's parker token and then, only if the runtime has a park hook and
//!   the token was not already set, takes and wakes the waker registered by
//!   [`Unparked`]. [`Unparked`] registers its waker and then consumes the
//!   token (`park_timeout(0)`). Both sides go through the waker slot's
//!   mutex, so either the unparker finds the waker, or the future's token
//!   check (after the unparker's token store) sees the token: no wake-up is
//!   lost. Without a park hook the unpark path is exactly
//!   `parking::Unparker::unpark`.
//! * While a worker waits inside its hook, a task queued on its own queues
//!   (an I/O wake-up processed by the hook on this thread lands there) does
//!   not notify other workers: it unparks the worker itself, so the hook
//!   returns and the worker runs the task, like tokio's worker that parks on
//!   the I/O driver. After the hook returns with more than one task queued,
//!   the worker wakes a sibling to share them.
//! * The hook runs while the worker counts as parked (see `idle`): it must
//!   return once [`Park::unparked`] completes, and by [`Park::deadline`].
//!   It may return earlier: the worker re-checks its state and calls the
//!   hook again.
//! * A hook that runs work of its own (another executor's tasks) brackets
//!   it with [`Park::mark_busy`] and [`Park::mark_idle`]. While busy, the
//!   worker counts as unparked and not searching, and is not in `idle`'s
//!   sleepers: a notifier cannot claim it and then rely on it (a claimed
//!   worker counts as the searcher that finds the new work, so nobody else
//!   would be woken while the foreign poll lasts). A task queued on its own
//!   queues meanwhile still only unparks it, as above: what another
//!   executor's task wakes usually runs best right after it, on this thread
//!   (like tokio's LIFO slot), and a sibling that searches or is woken for
//!   other work steals it. `mark_busy` on a worker that a notifier already
//!   claimed gives up the claim's searching status (handing the search on
//!   if it was the last searcher, as `run_task` does), unless the claim's
//!   unpark has already arrived: then the hook is about to return, and the
//!   worker keeps searching.
//!   `mark_idle` announces the park again the way a worker does before it
//!   sleeps, and then looks for work queued while it was busy (the
//!   announce-then-scan order of `idle`, so a producer that saw the worker
//!   busy and woke nobody is seen by the scan). A hook that returns while
//!   busy leaves the worker unparked and not searching ([`Park::is_busy`]);
//!   the worker then skips its own re-check of the sleepers.
//! * [`Park::with_current`] reaches the hook's `Park` from code the hook
//!   calls on its thread (another executor's park and unpark callbacks):
//!   a thread-local pointer, set only by `Park::run_hook` for the hook's
//!   call and reset when it ends, also by unwinding.
//! * `mark_busy` and `mark_idle` may consume the worker's parker token (to
//!   tell whether an unpark already arrived); they remember it, and
//!   [`Unparked`] and [`Park::park`] honour what they remember. None of
//!   this touches the producers' path: pushes and notifications are the
//!   same with or without a hook.
//! * A panic in the hook is caught; the worker then parks the default way
//!   for the rest of its life.
//! * With the clock paused (`test-util`), workers park the default way and
//!   the hook is not called (paused time advances when every worker is
//!   parked, which needs the runtime's own parking).
//!
//! [`Builder::park_with`]: crate::Builder::park_with

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::Pool;
use crate::runtime::guard::guard_user;
use crate::sync::{Arc, RtMutex as Mutex};

/// How a worker is woken: its parker, and with a park hook, the waker of the
/// hook's [`Unparked`] future.
#[derive(Clone)]
pub(crate) struct WorkerUnparker {
    unparker: parking::Unparker,
    /// Only present when the runtime has a park hook.
    hook: Option<Arc<HookWaker>>,
}

/// The waker of a worker's [`Unparked`] future, while its hook runs.
#[derive(Default)]
pub(crate) struct HookWaker {
    waker: Mutex<Option<Waker>>,
}

impl HookWaker {
    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(current) if current.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        let waker = self.waker.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Forgets the registered waker: the hook returned.
    pub(crate) fn clear(&self) {
        drop(self.waker.lock().take());
    }
}

impl WorkerUnparker {
    pub(crate) fn new(unparker: parking::Unparker, hook: Option<Arc<HookWaker>>) -> Self {
        WorkerUnparker { unparker, hook }
    }

    /// Wakes the worker: from a default park, or out of its park hook.
    pub(crate) fn unpark(&self) {
        // `false`: the token was already set, and whoever set it wakes the
        // hook's waker (or the future sees the token when it registers).
        if self.unparker.unpark() {
            if let Some(hook) = &self.hook {
                hook.wake();
            }
        }
    }
}

/// An idle worker about to sleep, as seen by a park hook
/// ([`Builder::park_with`](crate::Builder::park_with)).
///
/// The hook must return once [`unparked`](Self::unparked) completes or the
/// [`deadline`](Self::deadline) passes, whichever comes first; it may return
/// earlier (the worker then looks for work and calls the hook again).
/// [`park`](Self::park) sleeps the way a worker without a hook does.
///
/// While the hook waits it counts as a parked worker, which a producer of
/// new work may pick to wake and then count on. A hook that also runs work
/// that may take long (the tasks of another executor) says so with
/// [`mark_busy`](Self::mark_busy) before it and
/// [`mark_idle`](Self::mark_idle) after, so that the pool wakes another
/// worker for new work meanwhile.
///
/// It stays on the worker's thread (it is neither `Send` nor `Sync`).
pub struct Park<'a> {
    deadline: Option<Instant>,
    parker: &'a parking::Parker,
    waker: &'a HookWaker,
    pool: &'a Pool,
    index: usize,
    /// Between `mark_busy` and `mark_idle`: the worker is unparked and not
    /// searching.
    busy: Cell<bool>,
    /// The parker token, once `mark_busy` or `mark_idle` consumed it.
    unparked: Cell<bool>,
}

impl<'a> Park<'a> {
    /// The hook's view of worker `index` of `pool`, which has announced it
    /// parks.
    pub(crate) fn new(
        deadline: Option<Instant>,
        parker: &'a parking::Parker,
        waker: &'a HookWaker,
        pool: &'a Pool,
        index: usize,
    ) -> Self {
        Park {
            deadline,
            parker,
            waker,
            pool,
            index,
            busy: Cell::new(false),
            unparked: Cell::new(false),
        }
    }
}

thread_local! {
    /// The `Park` of the park hook running on this thread, or null (see
    /// `Park::run_hook`).
    static CURRENT: Cell<*const Park<'static>> = const { Cell::new(ptr::null()) };
}

/// Resets [`CURRENT`] to its previous value when dropped.
struct CurrentGuard(*const Park<'static>);

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.0));
    }
}

impl Park<'_> {
    /// Runs the worker's park `hook` with this `Park`, which code the hook
    /// calls on this thread reaches through
    /// [`with_current`](Self::with_current); catches a panic.
    pub(crate) fn run_hook(&self, hook: &(dyn Fn(&Park<'_>) + Send + Sync)) -> Option<()> {
        // Only the lifetime changes: see `with_current` for why the pointer
        // is not used beyond this borrow.
        let this = ptr::from_ref(self).cast::<Park<'static>>();
        let _reset = CurrentGuard(CURRENT.with(|current| current.replace(this)));
        guard_user(
            format_args!(
                "the `Builder::park_with` hook (on worker {}, which parks without it from now on)",
                self.index
            ),
            || hook(self),
        )
    }

    /// Calls `f` with the `Park` of the park hook running on this thread,
    /// if one is, and returns what it returns; `None` elsewhere.
    ///
    /// For code that a hook runs without being able to hand it the `Park`:
    /// another executor's "about to run tasks" and "about to wait" callbacks,
    /// say, calling [`mark_busy`](Self::mark_busy) and
    /// [`mark_idle`](Self::mark_idle) (this is how `multipool-compat` tells
    /// tokio's tasks from its waits).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use multipool::Park;
    ///
    /// let found = Arc::new(AtomicUsize::new(0));
    /// let counter = found.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .park_with(move |park| {
    ///         // Deep inside code that was not handed `park`:
    ///         if Park::with_current(|current| current.deadline()) == Some(park.deadline()) {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///         park.park();
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert!(Park::with_current(|_| ()).is_none());
    /// rt.block_on(multipool::spawn(async {
    ///     // The worker parks in its hook meanwhile.
    ///     multipool::time::sleep(std::time::Duration::from_millis(1)).await;
    /// }))
    /// .unwrap();
    /// drop(rt);
    /// assert!(found.load(Ordering::Relaxed) > 0);
    /// ```
    pub fn with_current<R>(f: impl FnOnce(&Park<'_>) -> R) -> Option<R> {
        let current = CURRENT.try_with(Cell::get).unwrap_or(ptr::null());
        if current.is_null() {
            return None;
        }
        // SAFETY: a non-null `CURRENT` was set by `run_hook` on this very
        // thread (the cell is thread-local) to a `Park` that `run_hook`
        // borrows for as long as the setting lasts: its guard restores the
        // previous value before that borrow ends, also by unwinding, and
        // nested settings restore in order. So the `Park` is alive. It is
        // only ever used through shared references (its state is in
        // `Cell`s, touched on this thread only), and the reference given to
        // `f` cannot outlive the call. The lifetime erased in `run_hook`
        // only shortens again here (`Park` is covariant in it).
        Some(f(unsafe { &*current }))
    }

    /// When the worker must be running again (its next timer, or an elastic
    /// pool's idle timeout); `None`: only an unpark ends the wait.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A future that completes when the worker is unparked: new work for it,
    /// a timer earlier than [`deadline`](Self::deadline), shutdown, or a task
    /// queued on this worker while the hook runs (such as one woken by I/O
    /// that the hook processed on this thread). It does not complete at the
    /// deadline by itself.
    pub fn unparked(&self) -> Unparked<'_> {
        Unparked {
            park: self,
            done: false,
        }
    }

    /// Sleeps until unparked or the deadline, as a worker without a hook
    /// does: for a hook that has nothing to drive this time, or whose own
    /// timers are too coarse for a deadline close by. After
    /// [`mark_busy`](Self::mark_busy), it first marks the worker idle
    /// again.
    pub fn park(&self) {
        self.mark_idle();
        if self.unparked.get() {
            return;
        }
        match self.deadline {
            Some(deadline) => {
                self.parker.park_deadline(deadline);
            }
            None => self.parker.park(),
        }
    }

    /// The hook is about to run work that may take long: tasks of another
    /// executor, say, rather than a wait for events. Until
    /// [`mark_idle`](Self::mark_idle), the worker counts as running, so new
    /// work wakes another worker instead of waiting for this hook to return.
    /// Tasks queued on this worker's own queues meanwhile (woken by that
    /// work, say) still wait for the hook to return, unless a sibling
    /// steals them.
    ///
    /// If the worker has been unparked already, it stays as woken (its new
    /// work is found as soon as the hook returns) and this only makes sure
    /// that [`unparked`](Self::unparked) completes at its next poll: the
    /// hook should then look at that future before it runs more of its own
    /// work. Calling it again while busy does nothing.
    ///
    /// A hook that returns while busy is fine: the worker goes on as
    /// unparked.
    ///
    /// ```
    /// use std::sync::{mpsc, Mutex};
    ///
    /// // A toy executor of its own: jobs that an idle worker runs in its
    /// // park hook.
    /// let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
    /// let jobs = Mutex::new(rx);
    /// let (done_tx, done) = mpsc::channel();
    /// tx.send(Box::new(move || done_tx.send(()).unwrap())).unwrap();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .park_with(move |park| {
    ///         let job = jobs.lock().unwrap().try_recv();
    ///         if let Ok(job) = job {
    ///             // New work meanwhile wakes the other worker.
    ///             park.mark_busy();
    ///             job();
    ///             park.mark_idle();
    ///         }
    ///         park.park();
    ///     })
    ///     .build()
    ///     .unwrap();
    /// done.recv().unwrap();
    /// assert_eq!(rt.block_on(multipool::spawn(async { 6 * 7 })).unwrap(), 42);
    /// ```
    pub fn mark_busy(&self) {
        if self.busy.get() {
            return;
        }
        let pool = self.pool;
        if pool.idle.unpark_worker_by_id(self.index) {
            // Still among the sleepers: now unparked and not searching.
            self.busy.set(true);
            return;
        }
        // A notifier claimed the worker: it counts as searching, and the
        // claim's unpark follows the claim.
        if self.take_unpark() {
            // The unpark is here: the hook returns at its next look at
            // `unparked()`. Wake that future's waker (the unparker may not
            // have got to it yet) so that an executor that polls woken
            // futures before its tasks looks at it first.
            self.waker.wake();
            return;
        }
        // Not here yet: the claim's search would wait for this hook's work.
        // Hand it on, as a searcher that found work does.
        if pool.idle.transition_worker_from_searching() {
            pool.notify_parked();
        }
        self.busy.set(true);
    }

    /// The hook's own work is done (see [`mark_busy`](Self::mark_busy)) and
    /// it is about to wait again: the worker counts as parked once more,
    /// and is woken at once if work came in while it was busy. Does nothing
    /// unless busy.
    pub fn mark_idle(&self) {
        if !self.busy.get() {
            return;
        }
        if self.take_unpark() {
            // Unparked while busy (a timer, shutdown, a claim's late
            // unpark): stay unparked, the hook returns.
            return;
        }
        let pool = self.pool;
        // Announce, then look (see `idle`): a producer that found this
        // worker busy either woke a sibling or its work is seen here.
        pool.idle.transition_worker_to_parked(self.index, false);
        self.busy.set(false);
        let inbox_work = pool.slots[self.index]
            .inbox
            .get()
            .is_some_and(|inbox| !inbox.is_empty());
        if inbox_work {
            // Placed or pinned here while busy: its producer found the
            // worker unparked and did not wake it.
            pool.wake_worker(self.index);
        } else {
            pool.notify_if_work_pending();
        }
    }

    /// Whether the hook is between [`mark_busy`](Self::mark_busy) and
    /// [`mark_idle`](Self::mark_idle).
    pub fn is_busy(&self) -> bool {
        self.busy.get()
    }

    /// Consumes the parker token, remembering it: whether the worker was
    /// unparked during this hook call.
    fn take_unpark(&self) -> bool {
        if !self.unparked.get() && self.parker.park_timeout(Duration::ZERO) {
            self.unparked.set(true);
        }
        self.unparked.get()
    }
}

impl fmt::Debug for Park<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("deadline", &self.deadline)
            .field("busy", &self.busy.get())
            .finish_non_exhaustive()
    }
}

/// Completes when the parked worker is unparked; see [`Park::unparked`].
#[must_use = "futures do nothing unless polled"]
pub struct Unparked<'a> {
    park: &'a Park<'a>,
    done: bool,
}

impl Future for Unparked<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done || self.park.unparked.get() {
            return Poll::Ready(());
        }
        // Register first, then look at the token (see the module docs).
        self.park.waker.register(cx.waker());
        if self.park.parker.park_timeout(Duration::ZERO) {
            self.done = true;
            self.park.unparked.set(true);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl fmt::Debug for Unparked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unparked")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
