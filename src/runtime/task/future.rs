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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::coop::Budget;
use super::info::{panic_message, run_task_hook, with_task_hooks, Observe, Outcome, TaskInfo};
use super::scope::PollScope;
use super::{
    cancel, drop_quietly, with_current_task, CurrentTask, TaskMeta, TaskOutput, UnhandledPanic,
};
use crate::alloc::{Charging, MemoryAccount};
use crate::error::JoinError;
use crate::runtime::metrics;
use crate::runtime::time::{far_future, Timer};
use crate::sync::Ordering;

pin_project_lite::pin_project! {
    /// The user's future plus the task's end-of-life contract (see the module
    /// docs). Fields drop in order: the user's future first, then the
    /// registry entry, which drops the deadline's timer before it counts
    /// the task's end.
    pub(super) struct TaskFuture<'a, F, L: Limits> {
        #[pin]
        future: Option<F>,
        meta: &'a TaskMeta,
        // What a poll must do besides polling: a set of `extras` bits.
        extras: u8,
        registration: Registration<'a, L>,
        // The task's span (see `trace`); `()` without the `tracing`
        // feature. Last: the span closes after the rest of the task ended.
        trace: Trace,
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

/// The task's entry in its pool's registry; counts the task as alive and
/// unregisters it when the task's future is dropped. It is also where the
/// task's end is counted (by [`Outcome`]) and the `on_task_terminate` hook
/// runs: after the future was dropped. It holds the task's limits, so the
/// hook can report the task's memory.
struct Registration<'a, L: Limits> {
    meta: &'a TaskMeta,
    registered: bool,
    /// How the task ended; set with its output. A future dropped without
    /// an output (its `Runnable` dropped, which the runtime never does)
    /// counts as shut down.
    outcome: Outcome,
    limits: L,
}

impl<L: Limits> Registration<'_, L> {
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

impl<L: Limits> Drop for Registration<'_, L> {
    #[inline]
    fn drop(&mut self) {
        // The deadline's timer first: once the end is counted, a graceful
        // shutdown may go on, and it finds no timer of this task.
        self.limits.release();
        // Then: from here on the task is ended for `Spawn::after` and its
        // `AbortHandle`s, before any hook can hand its id out again.
        let meta = self.meta;
        let life = meta.mark_ended();
        if life != 0 || self.registered || meta.local || meta.pool.observe.lifecycle {
            self.end_slow(life);
            return;
        }
        // The usual end (the task never waited, and nobody looked at it):
        // counted, nothing else to do.
        meta.pool.count_ended(self.outcome);
    }
}

impl<L: Limits> Registration<'_, L> {
    /// The rest of the end: `life` as the task's end found it. Out of line,
    /// so the usual end stays short.
    #[inline(never)]
    fn end_slow(&mut self, life: u8) {
        let dependents = self.meta.ended(life);
        if self.registered {
            // Reset first: `abort` on the finished task then finds no key.
            // One that read the key before is stopped by the owner check.
            let key = self.meta.registry_key.swap(usize::MAX, Ordering::SeqCst);
            self.meta.registry().remove(key);
        }
        if self.meta.local {
            self.meta.pool.local_task_dropped(self.meta.home as usize);
        }
        let pool = &self.meta.pool;
        if pool.observe.lifecycle {
            let (meta, outcome) = (self.meta, self.outcome);
            with_task_hooks(&pool.runtime, |hooks| {
                if let Some(hook) = &hooks.terminate {
                    let memory = self.limits.memory().map(MemoryAccount::usage);
                    run_task_hook("on_task_terminate", || {
                        hook(&TaskInfo::new(meta).with_memory(memory), outcome)
                    });
                }
            });
        }
        pool.count_ended(self.outcome);
        // Last: a dependent may run as soon as it is released.
        dependents.release();
    }
}

impl<'a, F, L: Limits> TaskFuture<'a, F, L> {
    /// The wrapper of a new task around `future`, in the task whose
    /// metadata is `meta`, with the `extras` its polls must do. With
    /// `tracing`, the task's span is made here (`kind`: see `trace::Kind`).
    pub(super) fn new(
        future: F,
        limits: L,
        meta: &'a TaskMeta,
        extras: PollExtras,
        #[cfg(feature = "tracing")] kind: super::trace::Kind,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let trace = super::trace::TaskTrace::new(kind, meta, std::mem::size_of::<F>());
        #[cfg(not(feature = "tracing"))]
        let trace = ();
        TaskFuture {
            future: Some(future),
            meta,
            extras: extras.0,
            registration: Registration {
                meta,
                registered: false,
                outcome: Outcome::Shutdown,
                limits,
            },
            trace,
        }
    }
}

/// What a new task's polls must do besides polling (see `extras`).
/// Worked out by the spawn before the task is allocated, so that the
/// wrapper's constructor stays a plain move: with the check inside it,
/// async-task's allocation was no longer inlined into the spawn
/// (callgrind, `hotpath_probe remote`: +10 instructions a spawn).
#[derive(Clone, Copy)]
pub(super) struct PollExtras(u8);

impl PollExtras {
    /// `reserved`: the task holds a place in a bounded queue;
    /// `observe`: what its pool observes.
    #[inline]
    pub(super) fn new(reserved: bool, observe: &Observe) -> PollExtras {
        let mut extras = 0;
        if reserved {
            extras |= extras::RESERVED;
        }
        if observe.polls() {
            extras |= extras::OBSERVED;
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
        let extras = *self.as_mut().project().extras;
        if extras == 0 {
            self.poll_task::<false>(cx)
        } else {
            self.poll_with_extras(cx)
        }
    }
}

/// The bits of `TaskFuture::extras`, set at spawn.
mod extras {
    /// The task holds a place in the pool's bounded queue until its first
    /// poll (`Admission::reserved`).
    pub(super) const RESERVED: u8 = 1;
    /// The pool observes polls: poll hooks, or latency histograms (whose
    /// sampled polls are timed). Fixed at build, so fixed for the task.
    pub(super) const OBSERVED: u8 = 2;
}

impl<F: Future, L: Limits> TaskFuture<'_, F, L> {
    /// A poll with extras (see `extras`): the same poll, out of line.
    #[inline(never)]
    fn poll_with_extras(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskOutput<F::Output>> {
        self.poll_task::<true>(cx)
    }

    /// One poll of the task; `EXTRAS`: the task's `extras` may be set (with
    /// `false`, they are known to be clear, and their code is left out).
    #[inline(always)]
    fn poll_task<const EXTRAS: bool>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TaskOutput<F::Output>> {
        let mut this = self.project();
        // Around the whole poll: the future's poll, and its drop when this
        // is the last one.
        #[cfg(feature = "tracing")]
        let _span = this.trace.span.enter();
        if EXTRAS && *this.extras & extras::RESERVED != 0 {
            // Started (or about to be cancelled): the place is free again.
            *this.extras &= !extras::RESERVED;
            this.meta.pool.release_place();
        }
        let observed = EXTRAS && *this.extras & extras::OBSERVED != 0;
        let reason = this.meta.cancel.load(Ordering::Relaxed);
        if reason != cancel::NONE {
            return Poll::Ready(TaskOutput::new(cancelled(
                reason,
                this.meta,
                this.future,
                this.registration,
            )));
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            // async-task never polls a future again after it returned `Ready`.
            unreachable!("multipool task polled after it completed");
        };
        let meta = *this.meta;
        // The task polled here, and a fresh cooperative budget for this
        // poll; the previous ones are back when the guard drops (see
        // `scope` and `coop`).
        let _scope = PollScope::enter(meta, L::BUDGET);
        let memory = this.registration.limits.memory();
        let timed = this.registration.limits.timed();
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
        let (result, outcome) = match polled {
            Ok(Poll::Ready(value)) => {
                // Drop the future here, inside `catch_unwind`: async-task would
                // otherwise drop it outside, where a panicking destructor
                // would unwind into the worker.
                match drop_future(this.future, memory) {
                    Ok(()) => {
                        this.registration.outcome = Outcome::Completed;
                        return Poll::Ready(TaskOutput::new(Ok(value)));
                    }
                    Err(panic) => (Err(panic), Outcome::Panicked),
                }
            }
            Ok(Poll::Pending) => {
                // The future first, then the limits: a future that
                // completes in the poll that passes a limit wins.
                let ended = this.registration.limits.after_pending(took, meta, cx);
                let Some((error, outcome)) = ended else {
                    if !this.registration.registered {
                        this.registration.register(cx.waker());
                    }
                    return Poll::Pending;
                };
                match drop_future(this.future, this.registration.limits.memory()) {
                    Ok(()) => (Err(error), outcome),
                    Err(panic) => (Err(panic), Outcome::Panicked),
                }
            }
            Err(payload) => {
                if meta.pool.observe.panics {
                    task_panicked(meta, &*payload);
                }
                // The panic is what the handle reports; a second panic from
                // the destructor is swallowed (its payload dropped quietly).
                if let Err(second) = drop_future(this.future, memory) {
                    drop_quietly(second);
                }
                (Err(JoinError::panic(payload)), Outcome::Panicked)
            }
        };
        this.registration.outcome = outcome;
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
    future: Pin<&mut Option<F>>,
    registration: &mut Registration<'_, L>,
) -> Result<F::Output, JoinError> {
    let error = cancel_error(reason);
    let _current = CurrentTask::enter(meta);
    match drop_future(future, registration.limits.memory()) {
        Ok(()) => {
            registration.outcome = cancel_outcome(reason);
            Err(error)
        }
        Err(panic) => {
            registration.outcome = Outcome::Panicked;
            Err(panic)
        }
    }
}

type Polled<T> = std::thread::Result<Poll<T>>;

/// One poll of the user's future, with a panic caught, observed if
/// `observed` (the pool observes polls: `extras::OBSERVED`), timed if
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

/// Drops the user's future, catching a panic from its destructor; what it
/// frees is charged to `memory`, if the task has a memory limit. Always
/// inlined: out of line, the call and the returned `Result` cost ~30
/// instructions a task (callgrind, `hotpath_probe local`).
#[inline(always)]
fn drop_future<F>(
    future: Pin<&mut Option<F>>,
    memory: Option<&MemoryAccount>,
) -> Result<(), JoinError> {
    let mut future = future;
    catch_unwind(AssertUnwindSafe(|| {
        let _charging = memory.map(Charging::enter);
        future.set(None);
        crate::fault::hit("task.drop");
    }))
    .map_err(JoinError::panic)
}
