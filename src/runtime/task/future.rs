//! The wrapper around every task's future: the end-of-life contract of the
//! module docs of `runtime::task`, the task's limits (a deadline, CPU
//! limits, a memory limit), and its registry entry.
//!
//! Limits (the [`Limits`] type a task is spawned with):
//! * Every poll of a pool task starts with a fresh cooperative budget
//!   (`coop`); a `spawn_blocking` task's poll has none.
//! * A task's poll is never interrupted: its limits are checked after a
//!   poll returned `Pending`. A poll that completes the task (or panics)
//!   wins over every limit, as over the deadline.
//! * CPU limits count poll time: the wall-clock time of each poll of the
//!   future, read with `std::time::Instant` around it (task hooks
//!   excluded, paused time irrelevant); time the thread spends preempted by
//!   the OS inside a poll counts too.
//! * A task past `max_poll` in one poll, or past its `cpu_budget` in sum,
//!   is cancelled after that poll (its future dropped there) with
//!   `JoinError::is_poll_too_long` / `is_budget_exceeded`, and counted as
//!   `Outcome::Cancelled`. A task past its `cpu_budget_demote` is moved to
//!   `Priority::Low` once, after that poll.

//! * A task holding more than its memory limit at the end of a poll that
//!   returned `Pending` is cancelled there with `is_memory_exceeded`
//!   (`Outcome::MemoryExceeded`).
//! * A deadline (`Spawn::timeout`) counts from the spawn, except for a task
//!   held by `Spawn::after`: from the end of its first poll ([`Deadline`]).
//!   After a poll, the checks run in this order: CPU, deadline, memory.
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::coop::Budget;
use super::info::{panic_message, run_task_hook, with_task_hooks, Observe, Outcome, TaskInfo};
use super::scope::PollScope;
use super::{
    cancel, drop_quietly, life, run, with_current_task, CurrentTask, TaskMeta, TaskOutput,
    UnhandledPanic,
};
use crate::alloc::{Charging, MemoryAccount};
use crate::error::JoinError;
use crate::runtime::metrics;
use crate::runtime::time::{far_future, Timer};
use crate::sync::Ordering;

pin_project_lite::pin_project! {
    /// The user's future plus the task's end-of-life contract (see the module
    /// docs). The user's future is dropped by the poll that ends the task
    /// (inside its panic guard), or else by the wrapper's drop; then the
    /// task's end runs ([`End`]: the deadline's timer, the registry entry,
    /// the count), and last the span closes.
    ///
    /// Besides the user's future it holds one word (the header's address)
    /// and the limits, which are nothing for a task without any (and with
    /// the `tracing` feature, the task's span: 48 bytes): the flags
    /// its polls keep are in the header's spare bytes (`TaskMeta::run`),
    /// and the future is a `ManuallyDrop`, not an `Option`, whose tag took
    /// a word of its own for most futures. A task of a 32-byte future
    /// then takes 120 bytes, within glibc's fast bins (see `side`).
    pub(super) struct TaskFuture<'a, F, L: Limits> {
        // Alive while the task's outcome (its `run` bits) is unset: each
        // path that sets the outcome has dropped it (`drop_future`), and
        // the wrapper's drop drops it otherwise.
        #[pin]
        future: ManuallyDrop<F>,
        meta: &'a TaskMeta,
        limits: L,
        // The task's span (see `trace`); `()` without the `tracing`
        // feature. Last: the span closes after the rest of the task ended.
        trace: Trace,
    }
    impl<'a, F, L: Limits> PinnedDrop for TaskFuture<'a, F, L> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let meta = *this.meta;
            // Runs when this scope ends: the end is counted exactly once.
            let _end = End { meta, limits: this.limits };
            if meta.run_bits() & run::OUTCOME == 0 {
                // A future no poll ended (see `outcome_of`): it ends as shut
                // down. async-task drops the wrapper under its
                // abort-on-panic guard, so a panic from the future's
                // destructor is caught here, as in a poll, and the task
                // counts as panicked.
                // SAFETY: no outcome is set, so the future is alive (see the
                // field), and this is the wrapper's drop: nothing touches
                // the future after.
                let dropped =
                    unsafe { drop_future(this.future, meta, None, Outcome::Shutdown) };
                if let Err(panic) = dropped {
                    drop_quietly(panic);
                }
            }
        }
    }
}

// Every outcome's code (its index + 1) fits in `run::OUTCOME`: one that
// did not would read as "alive", and the wrapper's drop would drop the
// future again.
const _: () = assert!(Outcome::COUNT < (run::OUTCOME >> run::OUTCOME_SHIFT) as usize + 1);

/// `outcome` in [`run::OUTCOME`]'s bits (never 0: that is "alive").
fn outcome_bits(outcome: Outcome) -> u8 {
    ((outcome.index() + 1) as u8) << run::OUTCOME_SHIFT
}

/// How the task ended, from its `run` bits. A future no poll ended (its
/// `Runnable` dropped, which the runtime never does, or a panic in the
/// wrapper's own code outside the poll's guard) counts as shut down.
fn outcome_of(run_bits: u8) -> Outcome {
    match (run_bits & run::OUTCOME) >> run::OUTCOME_SHIFT {
        0 => Outcome::Shutdown,
        code => Outcome::from_index(usize::from(code) - 1),
    }
}

#[cfg(feature = "tracing")]
type Trace = super::trace::TaskTrace;
#[cfg(not(feature = "tracing"))]
type Trace = ();

/// What a task is spawned with besides its future: the cooperative budget
/// of its polls, and what may end it early besides cancellation (a
/// deadline, CPU limits, a memory limit) and what it is charged. Chosen at spawn as a type, so a task spawned
/// without limits ([`NoLimits`]) pays for none of them: the checks below
/// are constants there and compile away.
pub(super) trait Limits: Send + Unpin + 'static {
    /// The cooperative budget each poll starts with (see `coop`).
    const BUDGET: Budget;

    /// Whether polls must be timed (for CPU limits).
    fn timed(&self) -> bool;

    /// Called after a poll that returned `Pending` and lasted `took`
    /// (`Some` exactly when [`timed`](Self::timed)): why the task must end
    /// now, if it must. Otherwise `cx` is woken at the task's deadline.
    fn after_pending(
        &mut self,
        took: Option<Duration>,
        meta: &TaskMeta,
        cx: &mut Context<'_>,
    ) -> Option<(JoinError, Outcome)>;

    /// The task's memory account, if it has a memory limit.
    fn memory(&self) -> Option<&MemoryAccount>;

    /// Drops the deadline's timer (the task ended).
    fn release(&mut self);
}

/// A pool task spawned without a deadline or CPU limits: the usual case.
pub(super) struct NoLimits;

impl Limits for NoLimits {
    const BUDGET: Budget = Budget::INITIAL;

    #[inline(always)]
    fn timed(&self) -> bool {
        false
    }

    #[inline(always)]
    fn after_pending(
        &mut self,
        _took: Option<Duration>,
        _meta: &TaskMeta,
        _cx: &mut Context<'_>,
    ) -> Option<(JoinError, Outcome)> {
        None
    }

    #[inline(always)]
    fn memory(&self) -> Option<&MemoryAccount> {
        None
    }

    #[inline(always)]
    fn release(&mut self) {}
}

/// A `spawn_blocking` task: no limits, and no cooperative budget (the
/// closure may drive multipool futures with any executor, which a budget
/// would make spin; as tokio's blocking tasks).
pub(super) struct Blocking;

impl Limits for Blocking {
    const BUDGET: Budget = Budget::UNCONSTRAINED;

    #[inline(always)]
    fn timed(&self) -> bool {
        false
    }

    #[inline(always)]
    fn after_pending(
        &mut self,
        _took: Option<Duration>,
        _meta: &TaskMeta,
        _cx: &mut Context<'_>,
    ) -> Option<(JoinError, Outcome)> {
        None
    }

    #[inline(always)]
    fn memory(&self) -> Option<&MemoryAccount> {
        None
    }

    #[inline(always)]
    fn release(&mut self) {}
}

/// A pool task with a deadline ([`Spawn::timeout`]), CPU limits, a memory
/// limit (`Spawn::memory_limit`), or several.
///
/// [`Spawn::timeout`]: crate::Spawn::timeout
pub(super) struct TaskLimits {
    pub(super) deadline: Option<Deadline>,
    pub(super) cpu: CpuLimits,
    pub(super) memory: Option<MemoryAccount>,
}

/// When a task's [`Spawn::timeout`] ends it.
///
/// [`Spawn::timeout`]: crate::Spawn::timeout
pub(super) enum Deadline {
    /// At this timer's deadline (`timeout` from the spawn).
    At(Timer),
    /// `timeout` from the end of the task's first poll, when the timer is
    /// made: a task held by `Spawn::after`, whose wait for its
    /// dependencies is not its time.
    FromFirstPoll(Duration),
}

impl Deadline {
    /// Whether the deadline has passed; otherwise `cx` is woken at it.
    /// Called after each poll that returned `Pending` (the first arms a
    /// [`FromFirstPoll`](Self::FromFirstPoll) deadline).
    fn poll_expired(&mut self, meta: &TaskMeta, cx: &mut Context<'_>) -> bool {
        if let Deadline::FromFirstPoll(timeout) = *self {
            let now = meta.pool.timers.clock.now();
            let at = now.checked_add(timeout).unwrap_or_else(|| far_future(now));
            *self = Deadline::At(Timer::new(at));
        }
        let Deadline::At(timer) = self else {
            unreachable!("armed above")
        };
        timer.poll_fired(cx).is_ready()
    }
}

impl Limits for TaskLimits {
    const BUDGET: Budget = Budget::INITIAL;

    #[inline]
    fn timed(&self) -> bool {
        self.cpu.is_set()
    }

    fn after_pending(
        &mut self,
        took: Option<Duration>,
        meta: &TaskMeta,
        cx: &mut Context<'_>,
    ) -> Option<(JoinError, Outcome)> {
        if let Some(took) = took {
            if let Some(error) = self.cpu.charge(took, meta) {
                return Some((error, Outcome::Cancelled));
            }
        }
        // The future first, then the deadline: a future that is ready at
        // its deadline wins.
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.poll_expired(meta, cx) {
                return Some((JoinError::timed_out(), Outcome::TimedOut));
            }
        }
        let account = self.memory.as_ref().filter(|account| account.exceeded())?;
        let usage = account.usage();
        Some((
            JoinError::memory_exceeded(usage.held, usage.limit),
            Outcome::MemoryExceeded,
        ))
    }

    #[inline]
    fn memory(&self) -> Option<&MemoryAccount> {
        self.memory.as_ref()
    }

    fn release(&mut self) {
        self.deadline = None;
    }
}

/// A task's CPU limits ([`Spawn::cpu_budget`], [`Spawn::cpu_budget_demote`],
/// [`Spawn::max_poll`]) and the poll time it has used, in nanoseconds;
/// `u64::MAX` stands for no limit (and a limit of `Duration::MAX`
/// saturates to it: it never fires).
///
/// [`Spawn::cpu_budget`]: crate::Spawn::cpu_budget
/// [`Spawn::cpu_budget_demote`]: crate::Spawn::cpu_budget_demote
/// [`Spawn::max_poll`]: crate::Spawn::max_poll
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuLimits {
    /// Poll time used so far (saturating).
    used: u64,
    /// Cancel once `used` exceeds this.
    budget: u64,
    /// Demote to `Low` once `used` exceeds this (reset to `u64::MAX` once
    /// done).
    demote: u64,
    /// Cancel after a poll longer than this.
    max_poll: u64,
}

impl CpuLimits {
    /// No limits.
    pub(crate) const NONE: CpuLimits = CpuLimits {
        used: 0,
        budget: u64::MAX,
        demote: u64::MAX,
        max_poll: u64::MAX,
    };

    fn nanos(limit: Duration) -> u64 {
        u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn set_budget(&mut self, limit: Duration) {
        self.budget = Self::nanos(limit);
    }

    pub(crate) fn set_demote(&mut self, limit: Duration) {
        self.demote = Self::nanos(limit);
    }

    pub(crate) fn set_max_poll(&mut self, limit: Duration) {
        self.max_poll = Self::nanos(limit);
    }

    /// Whether any limit is set (a limit of `Duration::MAX` counts: it is
    /// asked for, though it never fires).
    pub(crate) fn is_set(&self) -> bool {
        *self != CpuLimits::NONE
    }

    /// The setting a zero limit was given to, if one was: such a limit
    /// would stop the task before it could run, and is refused.
    pub(crate) fn zero_limit(&self) -> Option<u8> {
        if self.budget == 0 {
            Some(cancel::ZERO_CPU_BUDGET)
        } else if self.demote == 0 {
            Some(cancel::ZERO_DEMOTE)
        } else if self.max_poll == 0 {
            Some(cancel::ZERO_MAX_POLL)
        } else {
            None
        }
    }

    /// Adds a poll of `took` to the task's poll time: the error that ends
    /// the task if a limit was passed; demotes it if that threshold was.
    fn charge(&mut self, took: Duration, meta: &TaskMeta) -> Option<JoinError> {
        let took_ns = Self::nanos(took);
        self.used = self.used.saturating_add(took_ns);
        if took_ns > self.max_poll {
            return Some(JoinError::poll_too_long(took_ns, self.max_poll));
        }
        if self.used > self.budget {
            return Some(JoinError::budget_exceeded(self.used, self.budget));
        }
        if self.used > self.demote {
            self.demote = u64::MAX;
            meta.demote();
        }
        None
    }
}

/// Registers the task of `meta` in its pool's registry: it just returned
/// `Pending` (its waker is `waker`). From then until its end the registry
/// counts it as alive, and shutdown and `abort` can reach it while it waits.
fn register(meta: &TaskMeta, waker: &std::task::Waker) {
    match meta.registry().insert(waker.clone(), meta.owner_id()) {
        Ok(key) => {
            meta.set_run_bits(meta.run_bits() | run::REGISTERED);
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

/// The task's end, run by the wrapper's drop once the user's future is
/// gone: takes it out of the registry, counts it by its outcome, runs the
/// `on_task_terminate` hook. It borrows the task's limits, so the hook
/// can report the task's memory.
struct End<'a, L: Limits> {
    meta: &'a TaskMeta,
    limits: &'a mut L,
}

impl<L: Limits> Drop for End<'_, L> {
    #[inline]
    fn drop(&mut self) {
        // The deadline's timer first: once the end is counted, a graceful
        // shutdown may go on, and it finds no timer of this task.
        self.limits.release();
        // Then: from here on the task is ended for `Spawn::after` and its
        // `AbortHandle`s, before any hook can hand its id out again.
        let meta = self.meta;
        let life = meta.mark_ended();
        let run_bits = meta.run_bits();
        if life != 0 || run_bits & run::REGISTERED != 0 || meta.pool.observe.lifecycle {
            self.end_slow(life, run_bits);
            return;
        }
        // The usual end (the task never waited, and nobody looked at it):
        // counted, nothing else to do.
        meta.pool.count_ended(outcome_of(run_bits));
    }
}

impl<L: Limits> End<'_, L> {
    /// The rest of the end: `life` as the task's end found it. Out of line,
    /// so the usual end stays short.
    #[inline(never)]
    fn end_slow(&mut self, life: u8, run_bits: u8) {
        let meta = self.meta;
        let outcome = outcome_of(run_bits);
        let dependents = meta.ended(life);
        if run_bits & run::REGISTERED != 0 {
            // Reset first: `abort` on the finished task then finds no key.
            // One that read the key before is stopped by the owner check.
            let key = meta.registry_key.swap(usize::MAX, Ordering::SeqCst);
            meta.registry().remove(key);
        }
        if life & life::LOCAL != 0 {
            meta.pool.local_task_dropped(meta.home as usize);
        }
        let pool = &meta.pool;
        if pool.observe.lifecycle {
            with_task_hooks(&pool.runtime, |hooks| {
                if let Some(hook) = &hooks.terminate {
                    let memory = self.limits.memory().map(MemoryAccount::usage);
                    run_task_hook("on_task_terminate", || {
                        hook(&TaskInfo::new(meta).with_memory(memory), outcome)
                    });
                }
            });
        }
        pool.count_ended(outcome);
        // Last: a dependent may run as soon as it is released.
        dependents.release();
    }
}

impl<'a, F, L: Limits> TaskFuture<'a, F, L> {
    /// The wrapper of a new task around `future`, in the task whose
    /// metadata is `meta`. With `tracing`, the task's span is made here
    /// (`kind`: see `trace::Kind`).
    pub(super) fn new(
        future: F,
        limits: L,
        meta: &'a TaskMeta,
        #[cfg(feature = "tracing")] kind: super::trace::Kind,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let trace = super::trace::TaskTrace::new(kind, meta, std::mem::size_of::<F>());
        #[cfg(not(feature = "tracing"))]
        let trace = ();
        TaskFuture {
            future: ManuallyDrop::new(future),
            meta,
            limits,
            trace,
        }
    }
}

/// What a new task's polls must do besides polling: its first
/// [`run`] bits. Worked out by the spawn before the task is allocated, so
/// that the allocation's constructors stay plain moves: with the check
/// inside the wrapper's, async-task's allocation was no longer inlined
/// into the spawn (callgrind, `hotpath_probe remote`: +10 instructions a
/// spawn).
#[derive(Clone, Copy)]
pub(super) struct PollExtras(pub(super) u8);

impl PollExtras {
    /// `reserved`: the task holds a place in a bounded queue;
    /// `observe`: what its pool observes.
    #[inline]
    pub(super) fn new(reserved: bool, observe: &Observe) -> PollExtras {
        let mut extras = 0;
        if reserved {
            extras |= run::RESERVED;
        }
        if observe.polls() {
            extras |= run::OBSERVED;
        }
        PollExtras(extras)
    }
}

/// The outcome a cancel reason ends a task with. A dependency that failed
/// cancels its dependent (`Outcome::Cancelled`, as an abort does): every
/// task still ends with exactly one outcome.
fn cancel_outcome(reason: u8) -> Outcome {
    match reason {
        cancel::ABORTED | cancel::DEPENDENCY_FAILED => Outcome::Cancelled,
        cancel::SHUTDOWN => Outcome::Shutdown,
        _ => Outcome::Rejected,
    }
}

/// The error a cancel reason gives the task's handle.
fn cancel_error(reason: u8) -> JoinError {
    match reason {
        cancel::ABORTED => JoinError::aborted(),
        cancel::DEPENDENCY_FAILED => JoinError::dependency_failed(),
        cancel::ZERO_TIMEOUT => {
            JoinError::rejected("a zero `Spawn::timeout` would cancel the task before it could run")
        }
        cancel::BLOCKING_FULL => JoinError::rejected(
            "the blocking pool's queue is full (see `Builder::max_blocking_queued`)",
        ),
        cancel::DROPPED_BY_QUEUE => {
            JoinError::rejected("the pool's run-queue dropped the task instead of handing it back")
        }
        cancel::NO_THREAD => JoinError::rejected(
            "the OS refused the blocking pool a thread, and no other blocking thread runs",
        ),
        cancel::ZERO_CPU_BUDGET => JoinError::rejected(
            "a zero `Spawn::cpu_budget` would cancel the task before it could run",
        ),
        cancel::ZERO_DEMOTE => JoinError::rejected(
            "a zero `Spawn::cpu_budget_demote` would demote the task before it ran \
             (spawn it at `Priority::Low` instead)",
        ),
        cancel::ZERO_MAX_POLL => {
            JoinError::rejected("a zero `Spawn::max_poll` would cancel the task after any poll")
        }
        cancel::NO_TASK_ALLOC => JoinError::rejected(
            "`Spawn::memory_limit` needs `multipool::alloc::TaskAlloc` as the global \
             allocator (`#[global_allocator]`); without it nothing is counted",
        ),
        _ => JoinError::shutdown(),
    }
}

/// For a future that records why it was dropped before completing (a
/// `TaskGraph` node): the cancel reason of the task whose future is being
/// dropped on this thread, as its handle will report it. `None`: no reason
/// is set; a limit of the task ended it (its deadline, a CPU or memory
/// limit), or the future is dropped outside any task being cancelled (a
/// spawn refused before the task was created).
pub(crate) fn current_cancel_error() -> Option<JoinError> {
    with_current_task(|meta| {
        let reason = meta?.cancel.load(Ordering::SeqCst);
        (reason != cancel::NONE).then(|| cancel_error(reason))
    })
}

impl<F: Future, L: Limits> Future for TaskFuture<'_, F, L> {
    type Output = TaskOutput<F::Output>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // One check for all the extras: the usual poll has none, and its
        // path has no test of each (the observe check alone was a load of
        // the pool and a compare). callgrind, `hotpath_probe yield` on one
        // worker: 6 instructions a poll fewer, the fast path's registers
        // freed of the extras' values.
        // Read through the projection, not through `Deref` of the pin: a
        // shared borrow of the whole wrapper would cover the user's future
        // too, whose self-references it must not touch (miri, Tree Borrows:
        // an `Interval` polled in the task wrote through a frozen borrow).
        let run_bits = self.as_mut().project().meta.run_bits();
        if run_bits & run::EXTRAS == 0 {
            self.poll_task::<false>(cx, run_bits)
        } else {
            self.poll_with_extras(cx, run_bits)
        }
    }
}

impl<F: Future, L: Limits> TaskFuture<'_, F, L> {
    /// A poll with extras (see [`run::EXTRAS`]): the same poll, out of line.
    #[inline(never)]
    fn poll_with_extras(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        run_bits: u8,
    ) -> Poll<TaskOutput<F::Output>> {
        self.poll_task::<true>(cx, run_bits)
    }

    /// One poll of the task, whose `run` bits are `run_bits`; `EXTRAS`:
    /// its extras ([`run::EXTRAS`]) may be set (with `false`, they are
    /// known to be clear, and their code is left out).
    #[inline(always)]
    fn poll_task<const EXTRAS: bool>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        run_bits: u8,
    ) -> Poll<TaskOutput<F::Output>> {
        let mut this = self.project();
        let meta = *this.meta;
        if run_bits & run::OUTCOME != 0 {
            // async-task never polls a future again after it returned
            // `Ready`; the future is gone.
            unreachable!("multipool task polled after it completed");
        }
        // Around the whole poll: the future's poll, and its drop when this
        // is the last one.
        #[cfg(feature = "tracing")]
        let _span = this.trace.span.enter();
        if EXTRAS && run_bits & run::RESERVED != 0 {
            // Started (or about to be cancelled): the place is free again.
            meta.set_run_bits(run_bits & !run::RESERVED);
            meta.pool.release_place();
        }
        let observed = EXTRAS && run_bits & run::OBSERVED != 0;
        let reason = meta.cancel.load(Ordering::Relaxed);
        if reason != cancel::NONE {
            return Poll::Ready(TaskOutput::new(cancelled(
                reason,
                meta,
                this.future,
                this.limits,
            )));
        }
        // SAFETY: structural pinning of the `ManuallyDrop`'s content: it is
        // never moved out, and it is alive (no outcome is set, checked
        // above: see the field).
        let future = unsafe {
            this.future
                .as_mut()
                .map_unchecked_mut(|future| &mut **future)
        };
        // The task polled here, and a fresh cooperative budget for this
        // poll; the previous ones are back when the guard drops (see
        // `scope` and `coop`).
        let _scope = PollScope::enter(meta, L::BUDGET);
        let memory = this.limits.memory();
        let timed = this.limits.timed();
        #[cfg(not(feature = "tracing"))]
        let (polled, took) = poll_future(future, cx, meta, memory, timed, observed);
        #[cfg(feature = "tracing")]
        let (polled, took) =
            match super::trace::traced_waker(&this.trace.span, &mut this.trace.waker, cx.waker()) {
                // The future gets the waker that reports what is done with it;
                // the runtime's own uses below keep the task's.
                Some(waker) => poll_future(
                    future,
                    &mut Context::from_waker(&waker),
                    meta,
                    memory,
                    timed,
                    observed,
                ),
                None => poll_future(future, cx, meta, memory, timed, observed),
            };
        // Each arm sets how the task ended: a panic (the future's own, or
        // its destructor's) is `Panicked` whatever else happened. The
        // usual arm, `Ready` with a quiet drop, returns at once (no check
        // of the result after the match: callgrind, `hotpath_probe
        // intask`, a few instructions a task).
        let result = match polled {
            Ok(Poll::Ready(value)) => {
                // Drop the future here, inside `catch_unwind`: async-task would
                // otherwise drop it outside, where a panicking destructor
                // would unwind into the worker.
                // SAFETY: alive (no outcome is set, checked above), and
                // this ends the task: `drop_future` sets its outcome.
                match unsafe { drop_future(this.future, meta, memory, Outcome::Completed) } {
                    Ok(()) => return Poll::Ready(TaskOutput::new(Ok(value))),
                    Err(panic) => Err(panic),
                }
            }
            Ok(Poll::Pending) => {
                // The future first, then the limits: a future that
                // completes in the poll that passes a limit wins.
                let ended = this.limits.after_pending(took, meta, cx);
                let Some((error, outcome)) = ended else {
                    if meta.run_bits() & run::REGISTERED == 0 {
                        register(meta, cx.waker());
                    }
                    return Poll::Pending;
                };
                // SAFETY: as above.
                match unsafe { drop_future(this.future, meta, this.limits.memory(), outcome) } {
                    Ok(()) => Err(error),
                    Err(panic) => Err(panic),
                }
            }
            Err(payload) => {
                if meta.pool.observe.panics {
                    task_panicked(meta, &*payload);
                }
                // The panic is what the handle reports; a second panic from
                // the destructor is swallowed (its payload dropped quietly).
                // SAFETY: as above.
                let dropped = unsafe { drop_future(this.future, meta, memory, Outcome::Panicked) };
                if let Err(second) = dropped {
                    drop_quietly(second);
                }
                Err(JoinError::panic(payload))
            }
        };
        Poll::Ready(TaskOutput::new(result))
    }
}

/// A poll that found a cancel reason: drops the future (inside the task's
/// scope, so it can read why) and records how the task ended. Out of line
/// and cold: the usual poll stays short.
#[cold]
#[inline(never)]
fn cancelled<F: Future, L: Limits>(
    reason: u8,
    meta: &TaskMeta,
    future: Pin<&mut ManuallyDrop<F>>,
    limits: &mut L,
) -> Result<F::Output, JoinError> {
    let error = cancel_error(reason);
    let _current = CurrentTask::enter(meta);
    // SAFETY: called by a poll that found no outcome set (the future is
    // alive), and it ends the task: `drop_future` sets the outcome.
    match unsafe { drop_future(future, meta, limits.memory(), cancel_outcome(reason)) } {
        Ok(()) => Err(error),
        Err(panic) => Err(panic),
    }
}

type Polled<T> = std::thread::Result<Poll<T>>;

/// One poll of the user's future, with a panic caught, observed if
/// `observed` (the pool observes polls: `run::OBSERVED`), timed if
/// `timed` (for CPU limits).
#[inline(always)]
fn poll_future<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    meta: &TaskMeta,
    memory: Option<&MemoryAccount>,
    timed: bool,
    observed: bool,
) -> (Polled<F::Output>, Option<Duration>) {
    // With histograms only, an unsampled poll takes the plain path.
    if observed && (meta.pool.observe.poll_hooks || meta.is_stamped()) {
        poll_observed(future, cx, meta, memory, timed)
    } else {
        let start = timed.then(Instant::now);
        let polled = poll_user(future, cx, memory);
        (polled, start.map(|start| start.elapsed()))
    }
}

/// Polls the user's future, catching its panic; what it allocates and
/// frees is charged to `memory`, if the task has a memory limit.
#[inline(always)]
fn poll_user<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    memory: Option<&MemoryAccount>,
) -> Polled<F::Output> {
    // Two closures, not one with an `Option` inside: a task without a
    // memory limit (`memory` is a constant `None` for it) keeps the plain
    // one, which inlines into the poll (measured: one closure with the
    // account in it cost an out-of-line call and ~40 instructions a poll).
    match memory {
        None => catch_unwind(AssertUnwindSafe(|| {
            crate::fault::hit("task.poll");
            future.poll(cx)
        })),
        Some(account) => catch_unwind(AssertUnwindSafe(|| {
            let _charging = Charging::enter(account);
            crate::fault::hit("task.poll");
            future.poll(cx)
        })),
    }
}

/// A poll with the task hooks or the histograms that the pool observes
/// (see `info::Observe`): a pool with poll hooks, or a poll sampled for
/// the histograms. Out of line, so the plain path stays short. Returns
/// the poll's time too if `timed` (hooks excluded).
#[inline(never)]
fn poll_observed<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    meta: &TaskMeta,
    memory: Option<&MemoryAccount>,
    timed: bool,
) -> (Polled<F::Output>, Option<Duration>) {
    let observe = meta.pool.observe;
    // A poll is timed if the wake-up (or spawn) before it was sampled.
    let stamp = if observe.histograms {
        meta.take_stamp()
    } else {
        None
    };
    let start = stamp.map(|_| metrics::now_ticks());
    let latency = stamp
        .zip(start)
        .map(|(stamp, start)| metrics::ticks_between(stamp, start));
    if observe.poll_hooks {
        let latency = latency.map(|ticks| Duration::from_nanos(metrics::ticks_to_nanos(ticks)));
        with_task_hooks(&meta.pool.runtime, |hooks| {
            if let Some(hook) = &hooks.before_poll {
                let usage = memory.map(MemoryAccount::usage);
                run_task_hook("on_before_task_poll", || {
                    hook(&TaskInfo::with_latency(meta, latency, None).with_memory(usage))
                });
            }
        });
    }
    let poll_start = timed.then(Instant::now);
    let polled = poll_user(future, cx, memory);
    let took = poll_start.map(|poll_start| poll_start.elapsed());
    let poll_time = start.map(|start| metrics::ticks_between(start, metrics::now_ticks()));
    if let (Some(latency), Some(poll_time)) = (latency, poll_time) {
        meta.pool.record_poll(meta.priority(), latency, poll_time);
    }
    if observe.poll_hooks {
        let to_duration = |ticks| Duration::from_nanos(metrics::ticks_to_nanos(ticks));
        let (latency, poll_time) = (latency.map(to_duration), poll_time.map(to_duration));
        with_task_hooks(&meta.pool.runtime, |hooks| {
            if let Some(hook) = &hooks.after_poll {
                let usage = memory.map(MemoryAccount::usage);
                run_task_hook("on_after_task_poll", || {
                    hook(&TaskInfo::with_latency(meta, latency, poll_time).with_memory(usage))
                });
            }
        });
    }
    (polled, took)
}

/// A task's poll panicked: the `on_task_panic` hook, then the panic policy.
#[cold]
fn task_panicked(meta: &TaskMeta, payload: &(dyn std::any::Any + Send)) {
    let mut policy = UnhandledPanic::Ignore;
    with_task_hooks(&meta.pool.runtime, |hooks| {
        policy = hooks.unhandled_panic;
        if let Some(hook) = &hooks.panic {
            run_task_hook("on_task_panic", || {
                hook(&TaskInfo::new(meta), panic_message(payload))
            });
        }
    });
    if policy == UnhandledPanic::ShutdownRuntime {
        meta.pool.runtime.shutdown_in_background();
    }
}

/// Drops the user's future, catching a panic from its destructor, and
/// sets the task's outcome in its `run` bits: `outcome`, or `Panicked` if
/// the destructor panicked. What the destructor frees is charged to
/// `memory`, if the task has a memory limit. Always inlined: out of line,
/// the call and the returned `Result` cost ~30 instructions a task
/// (callgrind, `hotpath_probe local`).
///
/// # Safety
///
/// The future must be alive (the task's outcome unset), and the caller
/// ends the task (the poll that ends it, or the wrapper's drop): nothing
/// polls or drops the future after.
#[inline(always)]
unsafe fn drop_future<F>(
    future: Pin<&mut ManuallyDrop<F>>,
    meta: &TaskMeta,
    memory: Option<&MemoryAccount>,
    outcome: Outcome,
) -> Result<(), JoinError> {
    debug_assert_eq!(
        meta.run_bits() & run::OUTCOME,
        0,
        "the future was dropped before"
    );
    // SAFETY: dropped in place, where it was pinned; the caller promises
    // it is alive and never used again. Past this point it counts as
    // dropped even if its destructor unwinds (the unwind drops its fields).
    let future = unsafe { future.get_unchecked_mut() };
    let dropped = catch_unwind(AssertUnwindSafe(|| {
        let _charging = memory.map(Charging::enter);
        // SAFETY: see above.
        unsafe { ManuallyDrop::drop(future) };
        crate::fault::hit("task.drop");
    }));
    let outcome = if dropped.is_ok() {
        outcome
    } else {
        Outcome::Panicked
    };
    meta.set_run_bits((meta.run_bits() & !run::OUTCOME) | outcome_bits(outcome));
    dropped.map_err(JoinError::panic)
}
