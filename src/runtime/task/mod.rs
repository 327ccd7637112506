//! Task machinery: what a spawned task is, how it is wrapped, and how it
//! is created and queued. The public side (`Spawn`, `JoinHandle`) is
//! `crate::task`.
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
//!   their first poll never touch the registry.) A task held by
//!   `Spawn::after` is in the registry too while it is held (under its
//!   `Waiting`, see `dependency`): held, it is in no queue.
//!
//! Files: this one holds the task header ([`TaskMeta`]) and the types every
//! part of the runtime names; `future` the wrapper around the user's future
//! (the contract above), the per-task limits it enforces (deadline, CPU
//! limits) and its registry entry; `coop` the cooperative budget of each
//! poll; `spawn` the one function
//! every spawn ends in, [`spawn_on`]; `waker` the guard around wakers of
//! tasks that await a `JoinHandle`; `abort` the cell behind `AbortHandle`;
//! `scope` the thread-local naming the task being polled and its budget;
//! `side` the rarely used part of the header, out of line (the name,
//! the histograms' stamp, the abort cell's slot);
//! `trace` (feature `tracing`) the task's span and the waker its future is
//! polled with while traced; `dependency` how a task started with
//! `Spawn::after` is held until the tasks it depends on have ended.

mod abort;
pub(crate) mod coop;
pub(crate) mod dependency;
mod floor;
mod future;
mod id;
mod info;
mod scope;
mod side;
mod spawn;
#[cfg(feature = "tracing")]
mod trace;
mod waker;

pub(crate) use abort::AbortCell;
pub(crate) use dependency::{After, DependencyGate};
pub(crate) use future::{current_cancel_error, CpuLimits};
pub use id::Id;
pub(crate) use id::{with_current_task, CurrentTask};
pub(crate) use info::{Observe, SlowPollHook, TaskHooks, ThreadHooks};
pub use info::{Outcome, SlowPoll, TaskInfo, UnhandledPanic};
pub(crate) use spawn::{
    run_cancelled, run_one_cancelled, spawn_local_on, spawn_on, Batch, Enqueue, SpawnOptions,
    Spawned,
};
pub(crate) use waker::{is_trusted, trust_waker, GuardedWaker};

use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};

use crate::error::JoinError;
use crate::runtime::scheduler::registry::Registry;
use crate::runtime::scheduler::Pool;
use crate::sync::{Arc, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
    #[inline(always)]
    pub(super) fn new(result: Result<T, JoinError>) -> Self {
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
    #[inline]
    fn drop(&mut self) {
        // The usual output of a detached task, a value without a
        // destructor: nothing can panic, so no guard (callgrind,
        // `hotpath_probe intask`: 7 instructions a task).
        if !std::mem::needs_drop::<T>() && self.0.is_ok() {
            return;
        }
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
    /// Refused at spawn: a `Spawn::memory_limit` while `TaskAlloc` is not
    /// the global allocator (nothing would be counted).
    pub(crate) const NO_TASK_ALLOC: u8 = 7;
    /// Refused at spawn: a zero `Spawn::cpu_budget`.
    pub(crate) const ZERO_CPU_BUDGET: u8 = 8;
    /// Refused at spawn: a zero `Spawn::cpu_budget_demote`.
    pub(crate) const ZERO_DEMOTE: u8 = 9;
    /// Refused at spawn: a zero `Spawn::max_poll`.
    pub(crate) const ZERO_MAX_POLL: u8 = 10;
    /// Held by `Spawn::after`, and its gate found a dependency failed
    /// (`TaskGraph`'s default policy).
    pub(crate) const DEPENDENCY_FAILED: u8 = 11;
}

/// Per-task data the scheduler routes by, stored in the task header.
pub(crate) struct TaskMeta {
    /// The pool the task belongs to; wake-ups go back to it.
    pub(crate) pool: Arc<Pool>,
    /// The task's [`Id`] as a number, or 0 until first asked for (see
    /// [`id`](Self::id)).
    id: AtomicU64,
    /// Index of the task's [`Priority`] level. Atomic: it may change while
    /// the task lives (`Spawn::cpu_budget_demote` lowers it, during a poll,
    /// when the task is in no queue).
    priority: AtomicU8,
    /// One of the [`cancel`] constants; the first reason set wins.
    pub(super) cancel: AtomicU8,
    /// The task's key in its pool's registry, or `usize::MAX` while it is not
    /// registered. Written once, by the poll that registers the task; read
    /// by `JoinHandle::abort` (see `future::register` for the order).
    pub(super) registry_key: AtomicUsize,
    /// The worker the task is pinned to, or `scheduler::NO_HOME`.
    pub(crate) home: u32,
    /// The name, the histograms' stamp and the abort cell's slot, out of
    /// line: most tasks use none of them; and until they are made, the
    /// spawn location (`#[track_caller]` on every spawn; see `side`).
    side: side::SideSlot,
    /// What the task's end of life must tell others: a set of [`life`]
    /// bits (`LOCAL` among them, set at the spawn).
    pub(super) life: AtomicU8,
    /// What only the task's own polls and its end read and write: a set
    /// of [`run`] bits. In the header, not in the future's wrapper: there
    /// they took a word of their own (see `dependency`'s size test).
    run: AtomicU8,
}

/// The bits of [`TaskMeta::run`]. Only the thread that polls the task, or
/// drops its future, touches them, and async-task never does both at
/// once: `Relaxed` loads and stores suffice, and no read-modify-write is
/// needed (atomics only because the header is shared with other threads,
/// which read its other fields).
pub(crate) mod run {
    /// The task holds a place in the pool's bounded queue until its first
    /// poll (`Admission::reserved`).
    pub(crate) const RESERVED: u8 = 1;
    /// The pool observes polls: poll hooks, or latency histograms (whose
    /// sampled polls are timed). Fixed at build, so fixed for the task.
    pub(crate) const OBSERVED: u8 = 2;
    /// The extras a poll must look at (see `future::TaskFuture::poll`).
    pub(crate) const EXTRAS: u8 = RESERVED | OBSERVED;
    /// The task is in its pool's registry (see `future`'s `register`).
    pub(crate) const REGISTERED: u8 = 4;
    /// Where [`OUTCOME`] starts.
    pub(crate) const OUTCOME_SHIFT: u32 = 4;
    /// How the task ended, as `future::outcome_bits` encodes it: 0 while
    /// its future is alive, set by the poll that drops it. Four bits: the
    /// seven outcomes and room for more (a const assert in `future` holds
    /// every outcome's code inside the field, so none can read as alive).
    pub(crate) const OUTCOME: u8 = 0b1111 << OUTCOME_SHIFT;
}

/// The bits of [`TaskMeta::life`]. The task's end of life sets
/// [`ENDED`](life::ENDED) with one atomic read-modify-write, which also
/// tells it what else to do: take the task out of the dependency index
/// ([`WATCHED`](life::WATCHED)), clear its `AbortHandle`s' cell
/// ([`ABORT_CELL`](life::ABORT_CELL)). Each of those bits is set by a
/// read-modify-write too, so whichever of the two comes second sees the
/// other (see `dependency` and `abort` for what each side does then).
/// Bits are only ever set, never cleared.
pub(crate) mod life {
    /// The task is in the dependency index (`dependency::watch`).
    pub(crate) const WATCHED: u8 = 1;
    /// An `AbortCell` is installed in the task's header (`abort`).
    pub(crate) const ABORT_CELL: u8 = 2;
    /// The task's future has been dropped.
    pub(crate) const ENDED: u8 = 4;
    /// A `spawn_local` task: `!Send`, so it is polled and dropped only on
    /// its home worker's thread (see `scheduler::placement`), and its end
    /// tells that worker. Set at the spawn.
    pub(crate) const LOCAL: u8 = 8;
}

impl TaskMeta {
    // Always inlined into the spawn: out of line, the call alone costs more
    // than the body (measured with callgrind on `zz_ab local`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        pool: &Arc<Pool>,
        priority: Priority,
        cancel: u8,
        name: Option<std::sync::Arc<str>>,
        location: &'static Location<'static>,
        home: u32,
        local: bool,
        extras: u8,
    ) -> Self {
        let observe = pool.observe;
        let scheduled_at =
            if observe.histograms && crate::runtime::metrics::sample_due(observe.sample_one_in) {
                crate::runtime::metrics::now_stamp()
            } else {
                0
            };
        TaskMeta {
            pool: pool.clone(),
            id: AtomicU64::new(0),
            priority: AtomicU8::new(priority.index() as u8),
            cancel: AtomicU8::new(cancel),
            registry_key: AtomicUsize::new(usize::MAX),
            home,
            side: side::SideSlot::new(name, scheduled_at, location),
            life: AtomicU8::new(if local { life::LOCAL } else { 0 }),
            run: AtomicU8::new(extras),
        }
    }

    /// Where the task was spawned.
    pub(crate) fn location(&self) -> &'static Location<'static> {
        self.side.location()
    }

    /// Whether this is a `spawn_local` task (see [`life::LOCAL`]).
    #[inline]
    pub(crate) fn is_local(&self) -> bool {
        self.life.load(Ordering::Relaxed) & life::LOCAL != 0
    }

    /// The task's [`run`] bits (see there for who may call this).
    #[inline(always)]
    pub(super) fn run_bits(&self) -> u8 {
        self.run.load(Ordering::Relaxed)
    }

    /// Sets the task's [`run`] bits (see there for who may call this).
    #[inline(always)]
    pub(super) fn set_run_bits(&self, bits: u8) {
        self.run.store(bits, Ordering::Relaxed);
    }

    /// The task's id, given at the first call: most tasks are never asked
    /// for theirs, and their spawn then pays nothing for it. Unique and
    /// stable: the first call's id is stored once, and every call returns
    /// it. Internal bookkeeping calls this; a caller that hands the id to
    /// user code calls [`public_id`](Self::public_id).
    #[inline]
    pub(crate) fn id(&self) -> Id {
        match Id::from_u64(self.id.load(Ordering::Relaxed)) {
            Some(id) => id,
            None => self.assign_id(),
        }
    }

    #[cold]
    fn assign_id(&self) -> Id {
        let fresh = Id::next();
        match self
            .id
            .compare_exchange(0, fresh.as_u64(), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            // Another thread asked first: its id is the task's (ours is
            // never used).
            Err(theirs) => Id::from_u64(theirs).expect("a stored id is never 0"),
        }
    }

    /// The task's id, for a caller that hands it out to user code: from
    /// now on (until the task ends) `Spawn::after` can find the task by
    /// it. Internal bookkeeping calls [`id`](Self::id) instead.
    pub(crate) fn public_id(&self) -> Id {
        dependency::watch(self);
        self.id()
    }

    /// What `Spawn::after` waits for, given this task: its id, now in the
    /// index, or `None` if it has ended.
    pub(crate) fn dependency_id(&self) -> Option<Id> {
        dependency::watch(self).then(|| self.id())
    }

    /// The task was just woken, in a pool with latency histograms: stamps
    /// it if this wake-up is sampled, so the poll that follows is timed
    /// (see `future::poll_observed`). An unsampled wake-up writes nothing:
    /// the task carries no stamp when it is woken, since every stamp is
    /// taken by the poll that follows it ([`take_stamp`](Self::take_stamp);
    /// a task is scheduled at most once until it is polled), except a held
    /// task's spawn stamp, which [`restamp_released`](Self::restamp_released)
    /// replaces.
    #[inline]
    pub(crate) fn stamp_scheduled(&self) {
        if crate::runtime::metrics::sample_due(self.pool.observe.sample_one_in) {
            self.stamp_now();
        }
    }

    /// [`stamp_scheduled`](Self::stamp_scheduled) for a task released by
    /// `Spawn::after`: it may still carry its spawn's stamp, which would
    /// count its whole wait for its dependencies as schedule latency, so
    /// the stamp is always written (cleared if this release is not
    /// sampled).
    pub(crate) fn restamp_released(&self) {
        if crate::runtime::metrics::sample_due(self.pool.observe.sample_one_in) {
            self.stamp_now();
        } else if let Some(side) = self.side.get() {
            side.scheduled_at.store(0, Ordering::Relaxed);
        }
    }

    #[cold]
    fn stamp_now(&self) {
        let stamp = crate::runtime::metrics::now_stamp();
        self.side
            .get_or_create()
            .scheduled_at
            .store(stamp, Ordering::Relaxed);
    }

    /// Whether the poll starting now was scheduled by a sampled wake-up or
    /// spawn (see [`take_stamp`](Self::take_stamp)).
    #[inline]
    pub(crate) fn is_stamped(&self) -> bool {
        self.side
            .get()
            .is_some_and(|side| side.scheduled_at.load(Ordering::Relaxed) != 0)
    }

    /// The stamp of the wake-up (or spawn) that scheduled the poll starting
    /// now, if it was sampled; clears it. A plain load and store suffice:
    /// the task's next schedule, the only other writer, comes after this
    /// poll (a wake during the poll is scheduled when the poll returns).
    #[inline]
    pub(crate) fn take_stamp(&self) -> Option<u64> {
        let side = self.side.get()?;
        let stamp = side.scheduled_at.load(Ordering::Relaxed);
        if stamp == 0 {
            return None;
        }
        side.scheduled_at.store(0, Ordering::Relaxed);
        Some(stamp)
    }

    /// The name given with [`Spawn::name`](crate::Spawn::name).
    #[inline]
    pub(crate) fn name(&self) -> Option<&std::sync::Arc<str>> {
        self.side.get()?.name.as_ref()
    }

    pub(crate) fn priority(&self) -> Priority {
        Priority::from_index(self.priority.load(Ordering::Relaxed))
    }

    /// The index of [`priority`](Self::priority), for the queues' hot
    /// paths: the byte only ever holds a level's index, and clamping it is
    /// a compare and a move where the `match` of [`Priority::from_index`]
    /// and back took ten instructions on every push (callgrind,
    /// `hotpath_probe yield`).
    #[inline]
    pub(crate) fn level(&self) -> usize {
        usize::from(self.priority.load(Ordering::Relaxed)).min(Priority::COUNT - 1)
    }

    /// Lowers the task to [`Priority::Low`]; called only during the task's
    /// own poll, when it is in no queue, so every queue sees one level for
    /// it: its next wake-up queues it at `Low`.
    pub(crate) fn demote(&self) {
        self.priority
            .store(Priority::Low.index() as u8, Ordering::Relaxed);
    }

    /// Records `reason` unless another reason was recorded first.
    pub(crate) fn set_cancel(&self, reason: u8) {
        let _ =
            self.cancel
                .compare_exchange(cancel::NONE, reason, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// `JoinHandle::abort`: records the reason, then wakes the task if it
    /// is registered (idle). An unregistered task is queued or running and
    /// sees the reason anyway (see `future::register` for the race
    /// between the two). The registry only wakes the entry if it is still
    /// this task's: a finished task's key may name another task by now.
    pub(crate) fn abort(&self) {
        self.set_cancel(cancel::ABORTED);
        self.registry()
            .wake(self.registry_key.load(Ordering::SeqCst), self.owner_id());
    }

    /// The cell behind the task's `AbortHandle`s, created at the first
    /// call. The caller keeps the task alive meanwhile (it holds its `Task`).
    pub(crate) fn abort_cell(&self) -> Arc<AbortCell> {
        self.side.get_or_create().abort.get_or_create(self)
    }

    /// The task's future has been dropped: from now on its `AbortHandle`s
    /// see a finished task, and `Spawn::after` does not wait for it.
    /// Called once; returns the task's `life` bits from before, which
    /// [`ended`](Self::ended) must see unless they are 0 (no one looked at
    /// the task: nothing else to do).
    #[inline]
    pub(super) fn mark_ended(&self) -> u8 {
        self.life.fetch_or(life::ENDED, Ordering::AcqRel)
    }

    /// The rest of the end of life, given what [`mark_ended`](Self::mark_ended)
    /// returned: clears the `AbortHandle`s' cell, takes the task out of the
    /// dependency index, and returns its dependents, to release once its
    /// end is counted.
    pub(super) fn ended(&self, life: u8) -> dependency::Ended {
        if life & life::ABORT_CELL != 0 {
            // The cell is installed, so its side exists (see `abort`).
            if let Some(side) = self.side.get() {
                side.abort.clear_cell();
            }
        }
        dependency::end(self, life)
    }

    /// Whether the task's future has been dropped.
    pub(crate) fn has_ended(&self) -> bool {
        self.life.load(Ordering::Acquire) & life::ENDED != 0
    }

    /// This task's identity in its registry: the address of its metadata,
    /// unique among live tasks (see `scheduler::registry`).
    pub(crate) fn owner_id(&self) -> usize {
        self as *const TaskMeta as usize
    }

    /// The registry the task registers in: its home worker's for a local
    /// task (so that worker cancels it on its own thread), else its pool's.
    pub(crate) fn registry(&self) -> &Registry {
        if self.is_local() {
            self.pool.local_registry(self.home as usize)
        } else {
            &self.pool.registry
        }
    }
}
