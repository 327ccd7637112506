//! [`JoinHandle`]: awaiting, aborting and detaching a task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::AbortHandle;
use crate::error::JoinError;
use crate::runtime::{coop, is_trusted, AbortCell, GuardedWaker, Id, RawTask, TaskOutput};
use crate::sync::Arc;

/// An owned permission to await, abort or detach a spawned task.
///
/// Awaiting it yields the task's output, or a [`JoinError`] saying why there is
/// none (it panicked, was aborted, or its runtime shut down). Dropping the
/// handle *detaches* the task: it keeps running, and its output is dropped
/// when it completes. This matches `tokio::task::JoinHandle`; note that
/// `async_task::Task` and smol cancel on drop instead.
///
/// Inside a task, a handle that yields its output spends one unit of the
/// task's cooperative budget (see
/// [`task::consume_budget`](crate::task::consume_budget)).
///
/// ```
/// use multipool::Runtime;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let handle = multipool::spawn(async { 6 * 7 }).start();
///     assert_eq!(handle.await.unwrap(), 42);
/// });
/// ```
#[must_use = "dropping a JoinHandle detaches the task; use `.detach()` to say so"]
pub struct JoinHandle<T> {
    /// `None` once detached (only in `Drop` and `detach`).
    task: Option<RawTask<T>>,
    /// Why the task was never created (its pool refused it), yielded
    /// once, and the id it was given. Boxed: the common handle stays small.
    refused: Option<Box<(Option<JoinError>, Id)>>,
    /// What the task wakes when it finishes, in place of the awaiter's own
    /// waker; created at the first poll that has to wait.
    awaiter: Option<Arc<GuardedWaker>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: RawTask<T>) -> Self {
        JoinHandle {
            task: Some(task),
            refused: None,
            awaiter: None,
        }
    }

    /// The handle of a task its pool refused before creating it.
    pub(crate) fn refused(error: JoinError) -> Self {
        JoinHandle {
            task: None,
            refused: Some(Box::new((Some(error), Id::next()))),
            awaiter: None,
        }
    }

    fn task(&self) -> Option<&RawTask<T>> {
        self.task.as_ref()
    }

    /// Whether the task was never created (its pool refused it).
    pub(crate) fn is_refused(&self) -> bool {
        self.task.is_none() && self.refused.is_some()
    }

    /// What [`Spawn::after`](crate::Spawn::after) waits for: the task's id,
    /// or `None` if it has ended or was never created.
    pub(crate) fn dependency_id(&self) -> Option<Id> {
        self.task()?.metadata().dependency_id()
    }

    /// Cancels the task.
    ///
    /// The task's future is dropped the next time the task is scheduled (at
    /// once if it is idle; after its current poll if it is running), and
    /// awaiting the handle then yields an error with
    /// [`is_cancelled`](JoinError::is_cancelled). If the task completed
    /// first, awaiting still yields its output. Aborting twice is harmless.
    ///
    /// While the runtime shuts down, an idle task is cancelled on the
    /// calling thread: its future's destructor runs inside `abort`, so do
    /// not call it while holding a lock that destructor takes.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let handle = multipool::spawn(std::future::pending::<()>()).start();
    ///     handle.abort();
    ///     assert!(handle.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        let Some(task) = self.task() else {
            return; // refused: it never ran, and its handle says why
        };
        task.metadata().abort();
    }

    /// A handle that can abort the task from any thread, also after this
    /// `JoinHandle` is dropped or awaited; it is `Clone`, `Send` and `Sync`.
    /// See [`AbortHandle`].
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let task = multipool::spawn(std::future::pending::<()>()).start();
    ///     let abort = task.abort_handle();
    ///     assert!(!abort.is_finished());
    ///     abort.abort();
    ///     assert!(task.await.unwrap_err().is_cancelled());
    ///     assert!(abort.is_finished());
    /// });
    /// ```
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle::new(match (&self.task, &self.refused) {
            (Some(task), _) => task.metadata().abort_cell(),
            // Never created: a cell that aborts nothing, with its id.
            (None, Some(refused)) => AbortCell::finished(refused.1),
            (None, None) => unreachable!("a JoinHandle holds its task until detached"),
        })
    }

    /// Whether the task has finished: completed, panicked or been cancelled.
    pub fn is_finished(&self) -> bool {
        self.task().is_none_or(|task| task.is_finished())
    }

    /// The task's id, unique among the process's tasks (a spawn the pool
    /// refused gets one too, which no task has). The id can name the task
    /// to [`Spawn::after`](crate::Spawn::after).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let a = rt.spawn(async {}).start();
    /// let b = rt.spawn(async {}).start();
    /// assert_ne!(a.id(), b.id());
    /// ```
    pub fn id(&self) -> Id {
        match (&self.task, &self.refused) {
            (Some(task), _) => task.metadata().public_id(),
            (None, Some(refused)) => refused.1,
            (None, None) => unreachable!("a JoinHandle holds its task until detached"),
        }
    }

    /// The name given with [`Spawn::name`](crate::Spawn::name), if any.
    pub fn name(&self) -> Option<&str> {
        self.task()?.metadata().name().map(|name| &**name)
    }

    /// Lets the task run to completion in the background; same as dropping
    /// the handle, but says so.
    pub fn detach(mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> JoinHandle<T> {
    /// Polls the task with `cx`'s waker itself, without the guard that
    /// [`poll`](Future::poll) puts around a waker it does not trust. The
    /// caller vouches that the waker never panics, in `wake` nor in `drop`
    /// (async-task calls both where a panic aborts the process).
    pub(crate) fn poll_trusted(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(Err(self.take_refusal()));
        };
        Pin::new(task).poll(cx).map(TaskOutput::into_result)
    }

    /// The refusal of a handle without a task, taken once.
    fn take_refusal(&mut self) -> JoinError {
        self.refused
            .as_mut()
            .and_then(|refused| refused.0.take())
            .expect("JoinHandle polled after it completed")
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A leaf of the cooperative budget (see `task::consume_budget`):
        // awaiting finished tasks in a loop yields now and then.
        std::task::ready!(coop::poll_proceed(cx));
        let polled = self.as_mut().get_mut().poll_output(cx);
        if polled.is_pending() {
            coop::refund();
        }
        polled
    }
}

impl<T> JoinHandle<T> {
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(Err(self.take_refusal()));
        };
        // Every task completes with an output (see the `task` module docs), so
        // the `async_task::Task` never reports a dropped runnable.
        if task.is_finished() || is_trusted(cx.waker()) {
            // Nothing to wait for (no waker is stored), or a waker that
            // never panics.
            return Pin::new(task).poll(cx).map(TaskOutput::into_result);
        }
        let awaiter = self.awaiter.get_or_insert_with(Default::default);
        awaiter.register(cx.waker());
        let waker = Waker::from(awaiter.clone());
        Pin::new(task)
            .poll(&mut Context::from_waker(&waker))
            .map(TaskOutput::into_result)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JoinHandle");
        if let Some(task) = &self.task {
            let meta = task.metadata();
            d.field("name", &meta.name())
                .field("priority", &meta.priority())
                .field("finished", &task.is_finished());
        }
        d.finish()
    }
}
