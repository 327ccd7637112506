//! The wrapper around every task's future: the end-of-life contract of the
//! module docs of `runtime::task`, and the task's registry entry.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{cancel, drop_quietly, TaskMeta, TaskOutput};
use crate::error::JoinError;
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
        self.meta.future_dropped();
        if self.meta.local {
            self.meta.pool.local_task_dropped(self.meta.home as usize);
        }
        self.meta.pool.count_completed();
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
