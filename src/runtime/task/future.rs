//! The wrapper around every task's future: the end-of-life contract of the
//! module docs of `runtime::task`, and the task's registry entry.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::info::{panic_message, run_task_hook, with_task_hooks, Outcome, TaskInfo};
use super::{
    cancel, dependency, drop_quietly, with_current_task, CurrentTask, TaskMeta, TaskOutput,
    UnhandledPanic,
};
use crate::error::JoinError;
use crate::runtime::metrics;
use crate::runtime::time::{far_future, Clock, Timer};
use crate::sync::{Arc, Ordering};

pin_project_lite::pin_project! {
    /// The user's future plus the task's end-of-life contract (see the module
    /// docs). Fields drop in order: the user's future first, then the
    /// deadline's timer, then the registry entry.
    pub(super) struct TaskFuture<'a, F, D> {
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
pub(super) trait Deadline: Send + Unpin + 'static {
    /// Whether the deadline has passed; if not, `cx` is woken when it does.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool;
}

/// A task without a deadline.
pub(super) struct NoDeadline;

impl Deadline for NoDeadline {
    fn poll_expired(&mut self, _cx: &mut Context<'_>) -> bool {
        false
    }
}

impl Deadline for Timer {
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_fired(cx).is_ready()
    }
}

/// The deadline of a task held by `Spawn::after`: `timeout` from when it
/// first runs (the end of its first poll), so that the wait for its
/// dependencies does not count.
pub(super) struct FromFirstPoll {
    timeout: Duration,
    clock: Arc<Clock>,
    timer: Option<Timer>,
}

impl FromFirstPoll {
    pub(super) fn new(timeout: Duration, clock: Arc<Clock>) -> Self {
        FromFirstPoll {
            timeout,
            clock,
            timer: None,
        }
    }
}

impl Deadline for FromFirstPoll {
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let (timeout, clock) = (self.timeout, &self.clock);
        self.timer
            .get_or_insert_with(|| {
                let now = clock.now();
                Timer::new(now.checked_add(timeout).unwrap_or_else(|| far_future(now)))
            })
            .poll_fired(cx)
            .is_ready()
    }
}

/// The task's entry in its pool's registry; counts the task as alive and
/// unregisters it when the task's future is dropped. It is also where the
/// task's end is counted (by [`Outcome`]) and the `on_task_terminate` hook
/// runs: after the future was dropped.
struct Registration<'a> {
    meta: &'a TaskMeta,
    registered: bool,
    /// How the task ended; set with its output. A future dropped without
    /// an output (its `Runnable` dropped, which the runtime never does)
    /// counts as shut down.
    outcome: Outcome,
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
        // First: from here on the task is ended for `Spawn::after`, before
        // any hook can hand its id out again.
        let dependents = dependency::end(self.meta);
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
                    run_task_hook("on_task_terminate", || hook(&TaskInfo::new(meta), outcome));
                }
            });
        }
        pool.count_ended(self.outcome);
        // Last: a dependent may run as soon as it is released.
        dependents.release();
    }
}

impl<'a, F, D> TaskFuture<'a, F, D> {
    /// The wrapper of a new task around `future`, in the task whose
    /// metadata is `meta`; `reserved`: it holds a place in a bounded queue.
    pub(super) fn new(future: F, deadline: D, meta: &'a TaskMeta, reserved: bool) -> Self {
        TaskFuture {
            future: Some(future),
            deadline,
            meta,
            reserved,
            registration: Registration {
                meta,
                registered: false,
                outcome: Outcome::Shutdown,
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
        _ => JoinError::shutdown(),
    }
}

/// For a future that records why it was dropped before completing (a
/// `TaskGraph` node): the cancel reason of the task whose future is being
/// dropped on this thread, as its handle will report it. `None`: no reason
/// is set; the task's deadline passed, or the future is dropped outside
/// any task being cancelled (a spawn refused before the task was created).
pub(crate) fn current_cancel_error() -> Option<JoinError> {
    with_current_task(|meta| {
        let reason = meta?.cancel.load(Ordering::SeqCst);
        (reason != cancel::NONE).then(|| cancel_error(reason))
    })
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
            let error = cancel_error(reason);
            let _current = CurrentTask::enter(this.meta);
            return Poll::Ready(match drop_future(this.future) {
                Ok(()) => {
                    this.registration.outcome = cancel_outcome(reason);
                    Err(error)
                }
                Err(panic) => {
                    this.registration.outcome = Outcome::Panicked;
                    Err(panic)
                }
            });
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            // async-task never polls a future again after it returned `Ready`.
            unreachable!("multipool task polled after it completed");
        };
        let meta = *this.meta;
        let _current = CurrentTask::enter(meta);
        let polled = if meta.pool.observe.any {
            poll_observed(future, cx, meta)
        } else {
            catch_unwind(AssertUnwindSafe(|| {
                crate::fault::hit("task.poll");
                future.poll(cx)
            }))
        };
        let result = match polled {
            Ok(Poll::Pending) => {
                // The future first, then the deadline: a future that is
                // ready at its deadline wins.
                if this.deadline.poll_expired(cx) {
                    match drop_future(this.future) {
                        Ok(()) => {
                            this.registration.outcome = Outcome::TimedOut;
                            Err(JoinError::timed_out())
                        }
                        Err(panic) => Err(panic),
                    }
                } else {
                    if !this.registration.registered {
                        this.registration.register(cx.waker());
                    }
                    return Poll::Pending;
                }
            }
            Ok(Poll::Ready(value)) => {
                // Drop the future here, inside `catch_unwind`: async-task would
                // otherwise drop it outside, where a panicking destructor
                // would unwind into the worker.
                let dropped = drop_future(this.future);
                if dropped.is_ok() {
                    this.registration.outcome = Outcome::Completed;
                }
                dropped.map(|()| value)
            }
            Err(payload) => {
                if meta.pool.observe.panics {
                    task_panicked(meta, &*payload);
                }
                // The panic is what the handle reports; a second panic from
                // the destructor is swallowed (its payload dropped quietly).
                if let Err(second) = drop_future(this.future) {
                    drop_quietly(second);
                }
                Err(JoinError::panic(payload))
            }
        };
        if result.is_err() && this.registration.outcome == Outcome::Shutdown {
            // Only a panic leaves the outcome unset on this path (the
            // future's own, or its destructor's).
            this.registration.outcome = Outcome::Panicked;
        }
        Poll::Ready(result)
    }
}

type Polled<T> = std::thread::Result<Poll<T>>;

/// A poll with the task hooks, histograms or panic reports that the pool
/// observes (see `info::Observe`); out of line, so the plain path stays
/// short.
#[inline(never)]
fn poll_observed<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    meta: &TaskMeta,
) -> Polled<F::Output> {
    let observe = meta.pool.observe;
    let start = observe.histograms.then(metrics::now_ns);
    let latency = start.map(|start| {
        Duration::from_nanos(start.saturating_sub(meta.scheduled_at.load(Ordering::Relaxed)))
    });
    if observe.poll_hooks {
        with_task_hooks(&meta.pool.runtime, |hooks| {
            if let Some(hook) = &hooks.before_poll {
                run_task_hook("on_before_task_poll", || {
                    hook(&TaskInfo::with_latency(meta, latency, None))
                });
            }
        });
    }
    let polled = catch_unwind(AssertUnwindSafe(|| {
        crate::fault::hit("task.poll");
        future.poll(cx)
    }));
    let poll_time =
        start.map(|start| Duration::from_nanos(metrics::now_ns().saturating_sub(start)));
    if let (Some(latency), Some(poll_time)) = (latency, poll_time) {
        meta.pool.record_poll(meta.priority(), latency, poll_time);
    }
    if observe.poll_hooks {
        with_task_hooks(&meta.pool.runtime, |hooks| {
            if let Some(hook) = &hooks.after_poll {
                run_task_hook("on_after_task_poll", || {
                    hook(&TaskInfo::with_latency(meta, latency, poll_time))
                });
            }
        });
    }
    polled
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

/// Drops the user's future, catching a panic from its destructor.
fn drop_future<F>(future: Pin<&mut Option<F>>) -> Result<(), JoinError> {
    let mut future = future;
    catch_unwind(AssertUnwindSafe(|| {
        future.set(None);
        crate::fault::hit("task.drop");
    }))
    .map_err(JoinError::panic)
}
