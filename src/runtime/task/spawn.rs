//! [`spawn_on`]: where every way of spawning ends. Creates the task and
//! queues it on its pool (or the blocking pool).
//!
//! Invariant: a task is created only after its pool admitted it (see
//! `scheduler::admission`); from then on it either runs, or is run once
//! with a cancel reason that its handle reports. Nothing is dropped
//! silently.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::time::Duration;

use super::dependency::{self, After};
use super::floor::{self, Floored};
use super::future::{
    Blocking, CpuLimits, Deadline, Limits, NoLimits, PollExtras, TaskFuture, TaskLimits,
};
use super::info::{run_task_hook, with_task_hooks, TaskInfo};
use super::{cancel, RawTask, Runnable, TaskMeta, TaskOutput};
use crate::alloc::{MemoryAccount, Uncharged};
use crate::runtime::scheduler::{worker, Admission, Home, Pool};
use crate::runtime::time::{far_future, Timer};
use crate::sync::Arc;
use crate::Priority;

/// Options of one task, collected by `Spawn`.
#[derive(Debug)]
pub(crate) struct SpawnOptions {
    pub(crate) priority: Priority,
    /// Shared with the task's header (`TaskMeta::name`).
    pub(crate) name: Option<std::sync::Arc<str>>,
    pub(crate) timeout: Option<Duration>,
    /// The CPU and memory limits; boxed, as few tasks have them and every
    /// spawn moves the options (measured: unboxed, they made `Spawn` big
    /// enough to be moved with a `memcpy` call at each builder step).
    pub(crate) limits: Option<Box<ResourceLimits>>,
    /// Where the task asked to run; resolved by admission.
    pub(crate) home: Home,
    /// Where the spawn was called.
    pub(crate) location: &'static Location<'static>,
}

/// `Spawn::cpu_budget`, `cpu_budget_demote`, `max_poll`, `memory_limit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResourceLimits {
    pub(crate) cpu: CpuLimits,
    /// In bytes.
    pub(crate) memory: Option<usize>,
}

impl SpawnOptions {
    /// The CPU and memory limits, made on first use.
    pub(crate) fn resource_limits(&mut self) -> &mut ResourceLimits {
        self.limits.get_or_insert_with(|| {
            Box::new(ResourceLimits {
                cpu: CpuLimits::NONE,
                memory: None,
            })
        })
    }

    /// The defaults, for a spawn called at `location`.
    pub(crate) fn at(location: &'static Location<'static>) -> Self {
        SpawnOptions {
            priority: Priority::default(),
            name: None,
            timeout: None,
            limits: None,
            home: Home::default(),
            location,
        }
    }
}

/// The schedule function of every pool task: wake-ups go back to the
/// task's pool.
fn schedule(runnable: Runnable, info: async_task::ScheduleInfo) {
    Pool::schedule_woken(runnable, info.woken_while_running);
}

/// Where a new task is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueue {
    /// The usual way: the spawning worker's queues, or the injector with a
    /// worker woken.
    Schedule,
    /// Part of a batch: neither counted nor queued here. The batch
    /// ([`Batch`]) counts its tasks a group at a time, queues them on the
    /// injector without waking anyone, and wakes a worker once at its end.
    Quiet,
    /// The runtime's blocking pool (`spawn_blocking`).
    Blocking,
    /// Nowhere yet: held until its dependencies have ended
    /// (`Spawn::after`, see [`Spawned::finish_after`]).
    Held,
}

/// A task just created by [`spawn_on`].
pub(crate) struct Spawned<T> {
    task: RawTask<T>,
    /// Set if the task was refused (a zero timeout or CPU limit): it must be cancelled,
    /// which drops the user's future and so runs user code.
    /// [`finish`](Self::finish) does that once the caller holds no
    /// thread-local state (`spawn_on` may run inside a borrow of it).
    refused: Option<Runnable>,
    /// Set if the runtime has an `on_task_spawn` hook: the task is queued
    /// by [`finish`](Self::finish), after the hook ran (outside any borrow,
    /// and before any worker can poll the task). Always set for a held task
    /// ([`Enqueue::Held`]).
    unqueued: Option<(Runnable, Enqueue)>,
}

impl<T> Spawned<T> {
    #[inline]
    pub(crate) fn finish(self) -> RawTask<T> {
        if self.unqueued.is_some() || self.refused.is_some() {
            finish_slow(self.unqueued, self.refused);
        }
        self.task
    }

    /// For a task of a batch ([`Enqueue::Quiet`]): its handle, after its
    /// runnable is handed to `batch`, which counts and queues it.
    #[inline]
    pub(crate) fn finish_in(self, batch: &mut Batch<'_>) -> RawTask<T> {
        debug_assert!(self.refused.is_none(), "a batch sets no timeout or limit");
        if let Some((runnable, enqueue)) = self.unqueued {
            debug_assert!(enqueue == Enqueue::Quiet);
            batch.add(runnable);
        }
        self.task
    }

    /// [`finish`](Self::finish) for a task spawned with [`Enqueue::Held`]:
    /// it is held until the tasks of `after` have ended (see
    /// `dependency`). A refused task ends at once, as with `finish`.
    pub(crate) fn finish_after(self, after: After) -> RawTask<T> {
        if let Some((runnable, enqueue)) = self.unqueued {
            spawn_hook(runnable.metadata());
            if enqueue == Enqueue::Held {
                dependency::hold(self.task.metadata(), runnable, after);
            } else {
                let pool = runnable.metadata().pool.clone();
                enqueue_task(&pool, runnable, enqueue);
            }
        }
        if let Some(runnable) = self.refused {
            spawn_hook(runnable.metadata());
            run_cancelled(runnable);
        }
        self.task
    }
}

/// The rare half of [`Spawned::finish`]: the spawn hook, then the queueing
/// it held back, or the cancellation of a refused task.
#[cold]
#[inline(never)]
fn finish_slow(unqueued: Option<(Runnable, Enqueue)>, refused: Option<Runnable>) {
    if let Some((runnable, enqueue)) = unqueued {
        spawn_hook(runnable.metadata());
        let pool = runnable.metadata().pool.clone();
        enqueue_task(&pool, runnable, enqueue);
    }
    if let Some(runnable) = refused {
        spawn_hook(runnable.metadata());
        run_cancelled(runnable);
    }
}

/// Tasks a batch holds between two counts: one read-modify-write of the
/// pool's shared counter for this many spawns from outside the workers.
const BATCH_GROUP: usize = 64;

/// One `Handle::spawn_batch` call: the tasks made but not yet counted or
/// queued ([`Enqueue::Quiet`]). They are counted a group at a time, with
/// one add, and queued after the count: a task counted at its own spawn
/// took one read-modify-write of the pool's shared counter (a locked
/// instruction, which also waits for the spawn's stores) per task spawned
/// from outside the workers. Dropped, the batch queues what it still
/// holds and wakes the workers once for all its tasks.
///
/// Invariant: a task is counted before it is queued, so before it can
/// end (see `scheduler::counters`); every task made is queued by the
/// next [`flush`](Self::flush), at the latest when the batch is dropped,
/// also when the caller's iterator panics.
pub(crate) struct Batch<'a> {
    pool: &'a Arc<Pool>,
    /// The priority every task of the batch is spawned at.
    priority: Priority,
    held: [Option<Runnable>; BATCH_GROUP],
    len: usize,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(pool: &'a Arc<Pool>, priority: Priority) -> Self {
        Batch {
            pool,
            priority,
            held: std::array::from_fn(|_| None),
            len: 0,
        }
    }

    #[inline]
    fn add(&mut self, runnable: Runnable) {
        self.held[self.len] = Some(runnable);
        self.len += 1;
        if self.len == BATCH_GROUP {
            self.flush();
        }
    }

    /// Counts the held tasks, then runs their spawn hooks (if the runtime
    /// has one) and queues them.
    fn flush(&mut self) {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            return;
        }
        self.pool.count_spawned_many(self.priority, len as u64);
        let hooks = self.pool.observe.lifecycle;
        for runnable in self.held[..len].iter_mut().filter_map(Option::take) {
            if hooks {
                spawn_hook(runnable.metadata());
            }
            self.pool.schedule_quiet(runnable);
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.flush();
        self.pool.finish_batch();
    }
}

/// Runs the `on_task_spawn` hook, if the runtime has one, for a task.
fn spawn_hook(meta: &TaskMeta) {
    if meta.pool.observe.lifecycle {
        with_task_hooks(&meta.pool.runtime, |hooks| {
            if let Some(hook) = &hooks.spawn {
                run_task_hook("on_task_spawn", || hook(&TaskInfo::new(meta)));
            }
        });
    }
}

/// Queues a new task where `enqueue` says.
#[inline]
fn enqueue_task(pool: &Arc<Pool>, runnable: Runnable, enqueue: Enqueue) {
    match enqueue {
        // `Held` is queued by `finish_after`; here only as a fallback.
        Enqueue::Schedule | Enqueue::Held => pool.schedule_new(runnable),
        // A batch's tasks are counted and queued by their `Batch`
        // (`Spawned::finish_in`): queued here, one would go uncounted.
        Enqueue::Quiet => unreachable!("a batch's task is queued by its group"),
        Enqueue::Blocking => pool.runtime.blocking.push(runnable),
    }
}

/// Creates a task on `pool`, which admitted it, and queues it. Every way
/// of spawning ends here.
///
/// `options` is borrowed, not moved: it is large, and passed down several
/// calls (measured: moving it cost ~30 instructions a spawn); the task
/// takes its name out of it.
pub(crate) fn spawn_on<F>(
    pool: &Arc<Pool>,
    future: F,
    options: &mut SpawnOptions,
    admission: Admission,
    enqueue: Enqueue,
) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if enqueue == Enqueue::Blocking {
        // `spawn_blocking` sets no limits: only pool tasks have them.
        return spawn_with_limits(
            pool,
            future,
            options,
            Blocking,
            admission,
            enqueue,
            crate::runtime::blocking::schedule,
        );
    }
    if options.timeout.is_none() && options.limits.is_none() {
        return spawn_with_limits(
            pool, future, options, NoLimits, admission, enqueue, schedule,
        );
    }
    let deadline = options.timeout.map(|timeout| {
        if enqueue == Enqueue::Held {
            // Counted from its first poll: the wait is not the task's time.
            return Deadline::FromFirstPoll(timeout);
        }
        let now = pool.timers.clock.now();
        Deadline::At(Timer::new(
            now.checked_add(timeout).unwrap_or_else(|| far_future(now)),
        ))
    });
    let limits = TaskLimits {
        deadline,
        cpu: options
            .limits
            .as_ref()
            .map_or(CpuLimits::NONE, |limits| limits.cpu),
        memory: (options.limits.as_ref())
            .and_then(|limits| limits.memory)
            .map(MemoryAccount::new),
    };
    spawn_with_limits(pool, future, options, limits, admission, enqueue, schedule)
}

/// What async-task keeps in a task's output slot (its `union` with the
/// future): the output, or the panic it would propagate (never here).
type AsyncTaskOutput<T> = Result<TaskOutput<T>, Box<dyn std::any::Any + Send>>;

/// `schedule_fn` is a plain `fn` item (zero-sized, called directly):
/// [`schedule`] for pool tasks, `runtime::blocking::schedule` for blocking ones.
fn spawn_with_limits<F, L, S>(
    pool: &Arc<Pool>,
    future: F,
    options: &mut SpawnOptions,
    limits: L,
    admission: Admission,
    enqueue: Enqueue,
    schedule_fn: S,
) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    L: Limits,
    S: Fn(Runnable, async_task::ScheduleInfo) + Send + Sync + 'static,
{
    let cancel = if options.timeout == Some(Duration::ZERO) {
        cancel::ZERO_TIMEOUT
    } else if let Some(limits) = options.limits.as_deref() {
        if limits.memory.is_some() && !crate::alloc::is_installed() {
            cancel::NO_TASK_ALLOC
        } else {
            limits.cpu.zero_limit().unwrap_or(cancel::NONE)
        }
    } else {
        cancel::NONE
    };
    let rejected = cancel != cancel::NONE;
    let extras = PollExtras::new(admission.reserved, &pool.observe);
    let meta = TaskMeta::new(
        pool,
        options.priority,
        cancel,
        options.name.take(),
        options.location,
        admission.home,
        false,
        extras.0,
    );
    let builder = async_task::Builder::new()
        .metadata(meta)
        .propagate_panic(false);
    #[cfg(feature = "tracing")]
    let kind = if enqueue == Enqueue::Blocking {
        super::trace::Kind::Blocking
    } else {
        super::trace::Kind::Task
    };
    let make_future = |meta| {
        TaskFuture::new(
            future,
            limits,
            meta,
            #[cfg(feature = "tracing")]
            kind,
        )
    };
    // The task's own allocation is charged to no task (see `alloc`).
    let uncharged = Uncharged::enter();
    // Why `spawn_unchecked` is sound here: it lifts three bounds of
    // `spawn`:
    // - `Send`: `TaskFuture` is `Send` because `F: Send`, `L: Send`, and it
    //   otherwise holds only `&TaskMeta`, which is `Send` since
    //   `TaskMeta: Sync` (and with `tracing`, a `Span` and an `Arc` of a
    //   `Waker` and a `u64`, all `Send`). `Floored` is `Send` when its
    //   future is: it only adds bytes.
    // - `'static`: the only borrow is of the task's own metadata, which lives
    //   in the task allocation and is dropped only after the future has been
    //   dropped (async-task frees the header last), so it outlives the
    //   future and every `Runnable`.
    // - the schedule function is `Send + Sync + 'static` by its bounds.
    let (runnable, task) =
        if const { floor::below_floor::<TaskFuture<'static, F, L>, AsyncTaskOutput<F::Output>>() }
            && enqueue != Enqueue::Blocking
            && worker::current_index().is_some()
        {
            // A task spawned on a worker thread (of any runtime), which a
            // sibling may steal and free: past glibc's fast bins (see
            // `floor`).
            let make_floored = |meta| Floored::new(make_future(meta));
            // SAFETY: see above.
            unsafe { builder.spawn_unchecked(make_floored, async_task::WithInfo(schedule_fn)) }
        } else {
            // SAFETY: see above.
            unsafe { builder.spawn_unchecked(make_future, async_task::WithInfo(schedule_fn)) }
        };
    drop(uncharged);
    if enqueue != Enqueue::Quiet {
        pool.count_spawned(options.priority);
    }
    // A rejected task (a zero timeout, a memory limit without `TaskAlloc`)
    // ends at once and its handle says why. (A shutdown
    // that began after admission is caught where the task is queued.)
    if rejected {
        return Spawned {
            task,
            refused: Some(runnable),
            unqueued: None,
        };
    }
    if pool.observe.lifecycle || enqueue == Enqueue::Held || enqueue == Enqueue::Quiet {
        return Spawned {
            task,
            refused: None,
            unqueued: Some((runnable, enqueue)),
        };
    }
    enqueue_task(pool, runnable, enqueue);
    Spawned {
        task,
        refused: None,
        unqueued: None,
    }
}

/// Creates a `!Send` task pinned to worker `home` of `pool`, which must be
/// the worker running on this thread, and queues it there.
pub(crate) fn spawn_local_on<F>(
    pool: &Arc<Pool>,
    admission: Admission,
    future: F,
    location: &'static Location<'static>,
) -> RawTask<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let home = admission.home as usize;
    debug_assert_eq!(
        crate::runtime::scheduler::worker::index_in(pool),
        Some(home)
    );
    let extras = PollExtras::new(admission.reserved, &pool.observe);
    let meta = TaskMeta::new(
        pool,
        Priority::Normal,
        cancel::NONE,
        None,
        location,
        admission.home,
        true,
        extras.0,
    );
    let builder = async_task::Builder::new()
        .metadata(meta)
        .propagate_panic(false);
    let make_future = |meta| {
        TaskFuture::new(
            future,
            NoLimits,
            meta,
            #[cfg(feature = "tracing")]
            super::trace::Kind::Local,
        )
    };
    let uncharged = Uncharged::enter();
    // SAFETY: `spawn_unchecked` lifts three bounds of `spawn`:
    // - `Send` of the future: the task is pinned to `home`, the worker
    //   running on this thread. Its runnable only ever goes to that
    //   worker's `local` inbox, which no other thread takes from; the
    //   worker polls it there, and cancels it there (on shutdown it wakes
    //   its local registry and drains that inbox on its own thread before
    //   it ends, waiting until every local task's future was dropped; see
    //   `worker::Local::cancel_everything`). A wake-up from another thread
    //   only moves the runnable into that inbox. The `JoinHandle` never
    //   cancels by dropping (it detaches), so the future is never dropped
    //   by whoever holds the handle.
    // - `'static`: as in `spawn_with_limits`, the only borrow is of the
    //   task's own metadata.
    // - the schedule function is a plain `fn` item.
    let (runnable, task) =
        unsafe { builder.spawn_unchecked(make_future, async_task::WithInfo(schedule)) };
    drop(uncharged);
    pool.count_spawned(Priority::Normal);
    pool.local_task_spawned(home);
    // No borrow of the runtime context is held here (the caller only reads
    // the worker's thread-local pointer): the hook may run before the push.
    spawn_hook(runnable.metadata());
    pool.push_local(home, runnable);
    task
}

/// Runs a task whose cancel reason is set, so its future is dropped on this
/// thread and its handle gets the reason. Never unwinds.
///
/// Not inside a spawn that holds the runtime context's borrow, nor inside
/// another cancelled future's drop: such a cancellation waits, and the
/// outermost scope on this thread runs it once it has ended (see
/// `runtime::context::cancel`). A destructor that wakes another task of a
/// closed pool (which cancels it) may hold a lock that the other task's
/// destructor takes too: quinn's endpoint driver, dropped with its
/// endpoint's lock held, wakes the task in `accept`, whose `Endpoint`
/// locks it again.
pub(crate) fn run_cancelled(runnable: Runnable) {
    runnable.metadata().set_cancel(cancel::SHUTDOWN);
    crate::runtime::context::cancel(runnable);
}

/// Runs a cancelled task now: its future is dropped on this thread.
pub(crate) fn run_one_cancelled(runnable: Runnable) {
    // The wrapper catches panics itself; this guards against a panic in a
    // waker the completion notifies.
    let _ = catch_unwind(AssertUnwindSafe(|| runnable.run()));
}
