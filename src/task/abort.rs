//! [`AbortHandle`]: aborting a task from anywhere, without owning it.

use std::fmt;

use crate::runtime::{AbortCell, Id};
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
    /// Shared with the task (a task refused before it existed gets one of
    /// its own, which aborts nothing).
    cell: Arc<AbortCell>,
}

impl AbortHandle {
    pub(crate) fn new(cell: Arc<AbortCell>) -> Self {
        AbortHandle { cell }
    }

    /// The task's id, as [`JoinHandle::id`](crate::JoinHandle::id) gives
    /// it: the same id, which can name the task to
    /// [`Spawn::after`](crate::Spawn::after) (taking it from a live task
    /// the first time costs one short lock; see [`Id`]).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let task = rt.spawn(async { 7 }).start();
    /// let abort = task.abort_handle();
    /// assert_eq!(abort.id(), task.id());
    /// assert_eq!(rt.block_on(task).unwrap(), 7);
    /// ```
    pub fn id(&self) -> Id {
        self.cell.id()
    }

    /// What [`Spawn::after`](crate::Spawn::after) waits for: the task's
    /// id, or `None` if it has ended or never existed.
    pub(crate) fn dependency_id(&self) -> Option<Id> {
        self.cell.dependency_id()
    }

    /// Cancels the task, as [`JoinHandle::abort`](crate::JoinHandle::abort)
    /// does: its future is dropped the next time it is scheduled, and its
    /// handle yields an error with
    /// [`is_cancelled`](crate::JoinError::is_cancelled). Does nothing if the
    /// task has finished (its output, if any, is kept for its handle);
    /// aborting twice is harmless. Callable from any thread.
    pub fn abort(&self) {
        self.cell.abort();
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
        self.cell.is_finished()
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
