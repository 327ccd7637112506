//! [`AbortHandle`]: aborting a task from anywhere, without owning it.

use std::fmt;

use crate::runtime::AbortCell;
use crate::sync::Arc;

/// A cloneable permission to abort a task, without awaiting it.
///
/// Made by [`JoinHandle::abort_handle`](crate::JoinHandle::abort_handle) and
/// returned by [`JoinSet::spawn`](crate::task::JoinSet::spawn). It is
/// `Clone + Send + Sync`: any number of threads may hold one and abort the
/// task, before or after its `JoinHandle` is dropped. [`abort`](Self::abort)
/// means what [`JoinHandle::abort`](crate::JoinHandle::abort) means; on a
/// finished task it does nothing.
///
/// An `AbortHandle` keeps neither the task's future nor its output alive:
/// it shares a small cell with the task that points at the task only while
/// the task's future lives (see `src/runtime/task/abort.rs`). It never
/// wakes a finished task, nor one that reused its memory.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let task = multipool::spawn(std::future::pending::<()>()).start();
///     let abort = task.abort_handle();
///     std::thread::spawn(move || abort.abort()).join().unwrap();
///     assert!(task.await.unwrap_err().is_cancelled());
/// });
/// ```
#[derive(Clone)]
pub struct AbortHandle {
    /// `None`: the task was refused and never existed.
    cell: Option<Arc<AbortCell>>,
}

impl AbortHandle {
    pub(crate) fn new(cell: Option<Arc<AbortCell>>) -> Self {
        AbortHandle { cell }
    }

    /// Cancels the task, as [`JoinHandle::abort`](crate::JoinHandle::abort)
    /// does: its future is dropped the next time it is scheduled, and its
    /// handle yields an error with
    /// [`is_cancelled`](crate::JoinError::is_cancelled). Does nothing if the
    /// task has finished (its output, if any, is kept for its handle);
    /// aborting twice is harmless. Callable from any thread.
    pub fn abort(&self) {
        if let Some(cell) = &self.cell {
            cell.abort();
        }
    }

    /// Whether the task has finished: completed, panicked, been cancelled,
    /// or was refused before it ran. Once it returns `true` it always does.
    ///
    /// It turns `true` when the task's future has been dropped, which is an
    /// instant before the task's output reaches its `JoinHandle`:
    /// [`JoinHandle::is_finished`](crate::JoinHandle::is_finished) may still
    /// say `false` for that instant.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let task = rt.spawn(async { 7 }).start();
    /// let abort = task.abort_handle();
    /// assert_eq!(rt.block_on(task).unwrap(), 7);
    /// assert!(abort.is_finished());
    /// abort.abort(); // does nothing
    /// ```
    pub fn is_finished(&self) -> bool {
        self.cell.as_ref().is_none_or(|cell| cell.is_finished())
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
