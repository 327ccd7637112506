//! Tasks: what is spawned, how it is wrapped, and the handles users hold.
//!
//! A task is one `async_task` allocation holding the user's future wrapped in
//! a `TaskFuture`, a `TaskMeta` header and the output slot. The wrapper
//! gives every task the same end-of-life contract:
//!
//! * it always completes with `Result<T, JoinError>`: the value, the panic it
//!   caught, or the reason it was cancelled. The runtime never drops a
//!   `Runnable` to cancel a task; it sets `TaskMeta::cancel` and runs the
//!   task once more, so the wrapper drops the future and records why. The
//!   `JoinHandle` therefore always finds an output.
//! * a panic in the future's `poll` or `Drop` is caught inside the wrapper, so
//!   it never unwinds into a worker.
//! * from the first time it returns `Pending` until its future is dropped,
//!   the task is in its pool's registry, which is how shutdown finds tasks
//!   that nobody may ever wake again. (Until then it is always in a queue or
//!   being polled, where shutdown finds it anyway; tasks that complete in
//!   their first poll never touch the registry.)

mod blocking;
mod join;
mod spawn;
mod yield_now;

pub use blocking::spawn_blocking;
pub(crate) use join::trust_waker;
pub use join::JoinHandle;
pub use spawn::{Spawn, SpawnFuture};
pub use yield_now::{yield_now, YieldNow};

pub(crate) use spawn::SpawnOptions;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::JoinError;
use crate::pool::Pool;
use crate::sync::{Arc, AtomicU8, AtomicUsize, Ordering};
use crate::time::Sleep;
use crate::Priority;

/// The runnable half of a multipool task, as queued by the scheduler.
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

/// The `async_task` half of a task's handle.
pub(crate) type RawTask<T> = async_task::Task<TaskOutput<T>, TaskMeta>;

/// What a task completes with: its value or why there is none.
///
/// async-task drops the output of a detached task itself, inside an
/// abort-on-panic guard; so an output (a value, or a `JoinError` holding a
/// panic payload) whose destructor panics would abort the process. Wrapped
/// in this type, it is dropped under `catch_unwind` instead, wherever that
/// happens.
pub(crate) struct TaskOutput<T>(ManuallyDrop<Result<T, JoinError>>);

impl<T> TaskOutput<T> {
    fn new(result: Result<T, JoinError>) -> Self {
        TaskOutput(ManuallyDrop::new(result))
    }

    /// The result, for the handle that awaited it.
    pub(crate) fn into_result(self) -> Result<T, JoinError> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its `Drop` never runs, so
        // the result is taken out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }
}

impl<T> Drop for TaskOutput<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and `into_result` (the only other
        // taker) forgets the wrapper: the result is taken exactly once.
        drop_quietly(unsafe { ManuallyDrop::take(&mut self.0) });
    }
}

/// Drops `value`, containing a panic from its destructor. A panic payload
/// whose own destructor panics is leaked rather than dropped: a second
/// unwind has nowhere safe to go.
pub(crate) fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(inner);
        }
    }
}

/// Why a task is being cancelled; stored in [`TaskMeta::cancel`].
pub(crate) mod cancel {
    /// Not cancelled.
    pub(crate) const NONE: u8 = 0;
    /// `JoinHandle::abort` was called.
    pub(crate) const ABORTED: u8 = 1;
    /// The runtime shut down.
    pub(crate) const SHUTDOWN: u8 = 2;
    /// Refused at spawn: a zero `Spawn::timeout`.
    pub(crate) const ZERO_TIMEOUT: u8 = 3;
    /// Refused by the blocking pool: its queue is full.
    pub(crate) const BLOCKING_FULL: u8 = 4;
    /// Dropped by a user's `RunQueue` instead of handed back.
    pub(crate) const DROPPED_BY_QUEUE: u8 = 5;
    /// Refused by the blocking pool: the OS refused it a thread, and no
    /// other blocking thread runs.
    pub(crate) const NO_THREAD: u8 = 6;
}

/// Per-task data the scheduler routes by, stored in the task header.
pub(crate) struct TaskMeta {
    /// The pool the task belongs to; wake-ups go back to it.
    pub(crate) pool: Arc<Pool>,
    /// Index of the task's [`Priority`] level. Atomic so that a later policy
    /// may change it while the task lives.
    priority: AtomicU8,
    /// One of the [`cancel`] constants; the first reason set wins.
    cancel: AtomicU8,
    /// The task's key in its pool's registry, or `usize::MAX` while it is not
    /// registered. Written once, by the poll that registers the task; read
    /// by `JoinHandle::abort` (see `Registration::register` for the order).
    registry_key: AtomicUsize,
    /// The name given with [`Spawn::name`].
    pub(crate) name: Option<Box<str>>,
    /// The worker the task is pinned to, or `pool::NO_HOME`.
    pub(crate) home: u32,
    /// A `spawn_local` task: `!Send`, so it is polled and dropped only on
    /// its home worker's thread (see `pool::placement`).
    pub(crate) local: bool,
}

/// Where a task asked to run (`Spawn::worker`, `Spawn::key`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// Anywhere (the pool's placement decides where it starts).
    #[default]
    None,
    /// Pinned to this worker.
    Worker(usize),
    /// Pinned to the worker this key hashes to.
    Key(u64),
}

impl TaskMeta {
    #[inline]
    fn new(
        pool: &Arc<Pool>,
        priority: Priority,
        cancel: u8,
        name: Option<String>,
        home: u32,
        local: bool,
    ) -> Self {
        TaskMeta {
            pool: pool.clone(),
            priority: AtomicU8::new(priority.index() as u8),
            cancel: AtomicU8::new(cancel),
            registry_key: AtomicUsize::new(usize::MAX),
            name: name.map(String::into_boxed_str),
            home,
            local,
        }
    }

    pub(crate) fn priority(&self) -> Priority {
        Priority::from_index(self.priority.load(Ordering::Relaxed))
    }

    /// Records `reason` unless another reason was recorded first.
    pub(crate) fn set_cancel(&self, reason: u8) {
        let _ =
            self.cancel
                .compare_exchange(cancel::NONE, reason, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub(crate) fn registry_key(&self) -> usize {
        self.registry_key.load(Ordering::SeqCst)
    }

    /// This task's identity in its registry: the address of its metadata,
    /// unique among live tasks (see `pool::registry`).
    pub(crate) fn owner_id(&self) -> usize {
        self as *const TaskMeta as usize
    }

    /// The registry the task registers in: its home worker's for a local
    /// task (so that worker cancels it on its own thread), else its pool's.
    pub(crate) fn registry(&self) -> &crate::pool::registry::Registry {
        if self.local {
            self.pool.local_registry(self.home as usize)
        } else {
            &self.pool.registry
        }
    }
}

pin_project_lite::pin_project! {
    /// The user's future plus the task's end-of-life contract (see the module
    /// docs). Fields drop in order: the user's future first, then the
    /// deadline's timer, then the registry entry.
    struct TaskFuture<'a, F, D> {
        #[pin]
        future: Option<F>,
        deadline: D,
        meta: &'a TaskMeta,
        // Holds a place in the pool's bounded queue until the first poll.
        reserved: bool,
        registration: Registration<'a>,
    }
}

/// What ends a task early besides cancellation: nothing, or a deadline.
pub(crate) trait Deadline: Send + Unpin + 'static {
    /// Whether the deadline has passed; if not, `cx` is woken when it does.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool;
}

/// A task without a deadline.
pub(crate) struct NoDeadline;

impl Deadline for NoDeadline {
    fn poll_expired(&mut self, _cx: &mut Context<'_>) -> bool {
        false
    }
}

impl Deadline for Sleep {
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(self).poll(cx).is_ready()
    }
}

/// The task's entry in its pool's registry; counts the task as alive and
/// unregisters it when the task's future is dropped.
struct Registration<'a> {
    meta: &'a TaskMeta,
    registered: bool,
}

impl Registration<'_> {
    /// Registers the task, which just returned `Pending` (its waker is `cx`'s).
    fn register(&mut self, waker: &std::task::Waker) {
        let meta = self.meta;
        match meta.registry().insert(waker.clone(), meta.owner_id()) {
            Ok(key) => {
                self.registered = true;
                // `abort` sets the cancel reason, then reads the key; this
                // stores the key, then reads the reason (both SeqCst). So
                // either `abort` wakes the task through the registry, or we
                // see the reason here and reschedule the task ourselves.
                meta.registry_key.store(key, Ordering::SeqCst);
                if meta.cancel.load(Ordering::SeqCst) != cancel::NONE {
                    waker.wake_by_ref();
                }
            }
            Err((_closed, clone)) => {
                // Shutdown has already collected the registered tasks: this
                // one cancels itself (the worker drains it on its way out).
                drop(clone);
                meta.set_cancel(cancel::SHUTDOWN);
                waker.wake_by_ref();
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.registered {
            // Reset first: `abort` on the finished task then finds no key.
            // One that read the key before is stopped by the owner check.
            let key = self.meta.registry_key.swap(usize::MAX, Ordering::SeqCst);
            self.meta.registry().remove(key);
        }
        if self.meta.local {
            self.meta.pool.local_task_dropped(self.meta.home as usize);
        }
        self.meta.pool.count_completed();
    }
}

impl<'a, F, D> TaskFuture<'a, F, D> {
    /// The wrapper of a new task around `future`, in the task whose
    /// metadata is `meta`; `reserved`: it holds a place in a bounded queue.
    fn new(future: F, deadline: D, meta: &'a TaskMeta, reserved: bool) -> Self {
        TaskFuture {
            future: Some(future),
            deadline,
            meta,
            reserved,
            registration: Registration {
                meta,
                registered: false,
            },
        }
    }
}

impl<F: Future, D: Deadline> Future for TaskFuture<'_, F, D> {
    type Output = TaskOutput<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_result(cx).map(TaskOutput::new)
    }
}

impl<F: Future, D: Deadline> TaskFuture<'_, F, D> {
    fn poll_result(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<F::Output, JoinError>> {
        let mut this = self.project();
        if *this.reserved {
            // Started (or about to be cancelled): the place is free again.
            *this.reserved = false;
            this.meta.pool.release_place();
        }
        let reason = this.meta.cancel.load(Ordering::Relaxed);
        if reason != cancel::NONE {
            let error = match reason {
                cancel::ABORTED => JoinError::aborted(),
                cancel::ZERO_TIMEOUT => JoinError::rejected(
                    "a zero `Spawn::timeout` would cancel the task before it could run",
                ),
                cancel::BLOCKING_FULL => JoinError::rejected(
                    "the blocking pool's queue is full (see `Builder::max_blocking_queued`)",
                ),
                cancel::DROPPED_BY_QUEUE => JoinError::rejected(
                    "the pool's run-queue dropped the task instead of handing it back",
                ),
                cancel::NO_THREAD => JoinError::rejected(
                    "the OS refused the blocking pool a thread, and no other blocking thread runs",
                ),
                _ => JoinError::shutdown(),
            };
            return Poll::Ready(match drop_future(this.future) {
                Ok(()) => Err(error),
                Err(panic) => Err(panic),
            });
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            // async-task never polls a future again after it returned `Ready`.
            unreachable!("multipool task polled after it completed");
        };
        match catch_unwind(AssertUnwindSafe(|| {
            crate::fault::hit("task.poll");
            future.poll(cx)
        })) {
            Ok(Poll::Pending) => {
                // The future first, then the deadline: a future that is
                // ready at its deadline wins.
                if this.deadline.poll_expired(cx) {
                    return Poll::Ready(match drop_future(this.future) {
                        Ok(()) => Err(JoinError::timed_out()),
                        Err(panic) => Err(panic),
                    });
                }
                if !this.registration.registered {
                    this.registration.register(cx.waker());
                }
                Poll::Pending
            }
            Ok(Poll::Ready(value)) => {
                // Drop the future here, inside `catch_unwind`: async-task would
                // otherwise drop it outside, where a panicking destructor
                // would unwind into the worker.
                Poll::Ready(drop_future(this.future).map(|()| value))
            }
            Err(payload) => {
                // The panic is what the handle reports; a second panic from
                // the destructor is swallowed (its payload dropped quietly).
                if let Err(second) = drop_future(this.future) {
                    drop_quietly(second);
                }
                Poll::Ready(Err(JoinError::panic(payload)))
            }
        }
    }
}

/// Drops the user's future, catching a panic from its destructor.
fn drop_future<F>(future: Pin<&mut Option<F>>) -> Result<(), JoinError> {
    let mut future = future;
    catch_unwind(AssertUnwindSafe(|| {
        future.set(None);
        crate::fault::hit("task.drop");
    }))
    .map_err(JoinError::panic)
}

/// The schedule function of every task: wake-ups go back to the task's pool.
fn schedule(runnable: Runnable, info: async_task::ScheduleInfo) {
    Pool::schedule_woken(runnable, info.woken_while_running);
}

/// Where a new task is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueue {
    /// The usual way: the spawning worker's queues, or the injector with a
    /// worker woken.
    Schedule,
    /// Part of a batch: the injector, without waking anyone (the batch
    /// wakes a worker once at its end).
    Quiet,
    /// The runtime's blocking pool (`spawn_blocking`).
    Blocking,
}

/// A task just created by [`spawn_on`].
pub(crate) struct Spawned<T> {
    task: RawTask<T>,
    /// Set if the task was refused (zero timeout, runtime shut down): it
    /// must be cancelled, which drops the user's future and so runs user
    /// code. [`finish`](Self::finish) does that once the caller holds no
    /// thread-local state (`spawn_on` may run inside a borrow of it).
    refused: Option<Runnable>,
}

impl<T> Spawned<T> {
    pub(crate) fn finish(self) -> RawTask<T> {
        if let Some(runnable) = self.refused {
            run_cancelled(runnable);
        }
        self.task
    }
}

/// Creates a task on `pool` and queues it. Every way of spawning ends here.
/// `reserved`: the caller took a place in the pool's bounded queue for it.
pub(crate) fn spawn_on<F>(
    pool: &Arc<Pool>,
    future: F,
    options: SpawnOptions,
    reserved: bool,
    enqueue: Enqueue,
) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match (options.timeout, enqueue) {
        (None, Enqueue::Blocking) => spawn_with_deadline(
            pool,
            future,
            options,
            NoDeadline,
            reserved,
            enqueue,
            blocking::schedule,
        ),
        (None, _) => spawn_with_deadline(
            pool, future, options, NoDeadline, reserved, enqueue, schedule,
        ),
        (Some(timeout), _) => {
            // `spawn_blocking` sets no timeout: only pool tasks get here.
            let now = pool.timers.clock.now();
            let deadline = now
                .checked_add(timeout)
                .unwrap_or_else(|| crate::time::far_future(now));
            let deadline = Sleep::new(deadline);
            spawn_with_deadline(pool, future, options, deadline, reserved, enqueue, schedule)
        }
    }
}

/// `schedule_fn` is a plain `fn` item (zero-sized, called directly):
/// [`schedule`] for pool tasks, `blocking::schedule` for blocking ones.
fn spawn_with_deadline<F, D, S>(
    pool: &Arc<Pool>,
    future: F,
    options: SpawnOptions,
    deadline: D,
    reserved: bool,
    enqueue: Enqueue,
    schedule_fn: S,
) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    D: Deadline,
    S: Fn(Runnable, async_task::ScheduleInfo) + Send + Sync + 'static,
{
    let rejected = options.timeout == Some(std::time::Duration::ZERO);
    let cancel = if rejected {
        cancel::ZERO_TIMEOUT
    } else {
        cancel::NONE
    };
    let meta = TaskMeta::new(
        pool,
        options.priority,
        cancel,
        options.name,
        options.resolved_home,
        false,
    );
    let builder = async_task::Builder::new()
        .metadata(meta)
        .propagate_panic(false);
    let make_future = |meta| TaskFuture::new(future, deadline, meta, reserved);
    // SAFETY: `spawn_unchecked` lifts three bounds of `spawn`:
    // - `Send`: `TaskFuture` is `Send` because `F: Send`, `D: Send`, and it
    //   otherwise holds only `&TaskMeta`, which is `Send` since
    //   `TaskMeta: Sync`.
    // - `'static`: the only borrow is of the task's own metadata, which lives
    //   in the task allocation and is dropped only after the future has been
    //   dropped (async-task frees the header last), so it outlives the
    //   future and every `Runnable`.
    // - the schedule function is `Send + Sync + 'static` by its bounds.
    let (runnable, task) =
        unsafe { builder.spawn_unchecked(make_future, async_task::WithInfo(schedule_fn)) };
    pool.count_spawned();
    // A rejected task, or one spawned after shutdown, ends at once and its
    // handle says why. (A shutdown that starts after this check is caught
    // where the task is queued.)
    let refused = if rejected || !pool.accepts_spawns() {
        Some(runnable)
    } else {
        match enqueue {
            Enqueue::Schedule => pool.schedule_new(runnable),
            Enqueue::Quiet => pool.schedule_quiet(runnable),
            Enqueue::Blocking => pool.runtime.blocking.push(runnable),
        }
        None
    };
    Spawned { task, refused }
}

/// Creates a `!Send` task pinned to worker `home` of `pool`, which must be
/// the worker running on this thread, and queues it there.
pub(crate) fn spawn_local_on<F>(
    pool: &Arc<Pool>,
    home: usize,
    future: F,
) -> Result<RawTask<F::Output>, JoinError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    debug_assert_eq!(crate::pool::worker::index_in(pool), Some(home));
    if !pool.accepts_spawns() {
        return Err(JoinError::shutdown());
    }
    let meta = TaskMeta::new(
        pool,
        Priority::Normal,
        cancel::NONE,
        None,
        home as u32,
        true,
    );
    let builder = async_task::Builder::new()
        .metadata(meta)
        .propagate_panic(false);
    let reserved = pool.reserve_place(true).unwrap_or(false);
    let make_future = |meta| TaskFuture::new(future, NoDeadline, meta, reserved);
    // SAFETY: `spawn_unchecked` lifts three bounds of `spawn`:
    // - `Send` of the future: the task is pinned to `home`, the worker
    //   running on this thread. Its runnable only ever goes to that
    //   worker's `local` inbox, which no other thread takes from; the
    //   worker polls it there, and cancels it there (on shutdown it wakes
    //   its local registry and drains that inbox on its own thread before
    //   it ends, waiting until every local task's future was dropped; see
    //   `worker::Local::cancel_local_tasks`). A wake-up from another thread
    //   only moves the runnable into that inbox. The `JoinHandle` never
    //   cancels by dropping (it detaches), so the future is never dropped
    //   by whoever holds the handle.
    // - `'static`: as in `spawn_with_deadline`, the only borrow is of the
    //   task's own metadata.
    // - the schedule function is a plain `fn` item.
    let (runnable, task) =
        unsafe { builder.spawn_unchecked(make_future, async_task::WithInfo(schedule)) };
    pool.count_spawned();
    pool.local_task_spawned(home);
    pool.push_local(home, runnable);
    Ok(task)
}

/// Runs a task whose cancel reason is set, so its future is dropped on this
/// thread and its handle gets the reason. Never unwinds.
pub(crate) fn run_cancelled(runnable: Runnable) {
    runnable.metadata().set_cancel(cancel::SHUTDOWN);
    // Inside a spawn that holds the runtime context's borrow, the future
    // is dropped once that borrow is released (see `runtime::context`).
    let Some(runnable) = crate::runtime::context::defer_cancel(runnable) else {
        return;
    };
    // The wrapper catches panics itself; this guards against a panic in a
    // waker the completion notifies.
    let _ = catch_unwind(AssertUnwindSafe(|| runnable.run()));
}
