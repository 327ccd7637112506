//! The wrapper around every task's future: the end-of-life contract of the
//! module docs of `runtime::task`, and the task's registry entry.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::info::{panic_message, run_task_hook, with_task_hooks, Outcome, TaskInfo};
use super::{cancel, drop_quietly, CurrentTask, TaskMeta, TaskOutput, UnhandledPanic};
use crate::error::JoinError;
use crate::runtime::metrics;
use crate::runtime::time::Timer;
use crate::sync::Ordering;

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
        // The task's span (see `trace`); `()` without the `tracing`
        // feature. Last: the span closes after the rest of the task ended.
        trace: Trace,
    }
}

#[cfg(feature = "tracing")]
type Trace = super::trace::TaskTrace;
#[cfg(not(feature = "tracing"))]
type Trace = ();

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
    }
}

impl<'a, F, D> TaskFuture<'a, F, D> {
    /// The wrapper of a new task around `future`, in the task whose
    /// metadata is `meta`; `reserved`: it holds a place in a bounded queue.
    /// With `tracing`, the task's span is made here (`kind`: see
    /// `trace::Kind`).
    pub(super) fn new(
        future: F,
        deadline: D,
        meta: &'a TaskMeta,
        reserved: bool,
        #[cfg(feature = "tracing")] kind: super::trace::Kind,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let trace = super::trace::TaskTrace::new(kind, meta, std::mem::size_of::<F>());
        #[cfg(not(feature = "tracing"))]
        let trace = ();
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
            trace,
        }
    }
}

impl<F: Future, D: Deadline> Future for TaskFuture<'_, F, D> {
    type Output = TaskOutput<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_result(cx).map(TaskOutput::new)
    }
}

/// The outcome a cancel reason ends a task with.
fn cancel_outcome(reason: u8) -> Outcome {
    match reason {
        cancel::ABORTED => Outcome::Cancelled,
        cancel::SHUTDOWN => Outcome::Shutdown,
        _ => Outcome::Rejected,
    }
}

impl<F: Future, D: Deadline> TaskFuture<'_, F, D> {
    fn poll_result(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<F::Output, JoinError>> {
        let mut this = self.project();
        // Around the whole poll: the future's poll, and its drop when this
        // is the last one.
        #[cfg(feature = "tracing")]
        let _span = this.trace.span.enter();
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
        #[cfg(not(feature = "tracing"))]
        let polled = poll_future(future, cx, meta);
        #[cfg(feature = "tracing")]
        let polled =
            match super::trace::traced_waker(&this.trace.span, &mut this.trace.waker, cx.waker()) {
                // The future gets the waker that reports what is done with it;
                // the runtime's own uses below keep the task's.
                Some(waker) => poll_future(future, &mut Context::from_waker(&waker), meta),
                None => poll_future(future, cx, meta),
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

/// One poll of the user's future, with a panic caught.
#[inline(always)]
fn poll_future<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
    meta: &TaskMeta,
) -> Polled<F::Output> {
    if meta.pool.observe.any {
        poll_observed(future, cx, meta)
    } else {
        catch_unwind(AssertUnwindSafe(|| {
            crate::fault::hit("task.poll");
            future.poll(cx)
        }))
    }
}

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
