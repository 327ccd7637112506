//! User-written run-queues: the [`RunQueue`] trait and [`QueuedTask`].
//!
//! A pool may replace the queues of one priority level with a queue of the
//! user's (`PoolBuilder::queue`). Every task of that level that is spawned
//! or woken then goes into that one queue, shared by all workers, and
//! workers serving the level take from it: the queue decides the order
//! (by name, by arrival, by anything it can see). Tasks pinned to a worker
//! (`Spawn::worker`, `Spawn::key`, `spawn_local`) keep their worker's
//! inbox. Invariants:
//! * a [`QueuedTask`] the queue drops instead of handing back is not lost:
//!   it is cancelled on the spot and its handle reports that its queue
//!   dropped it;
//! * at shutdown the runtime pops whatever the queue still holds and
//!   cancels it, like any other queued task.

use std::fmt;

use crate::runtime::task::{cancel, Runnable};
use crate::Priority;

/// A task waiting in a [`RunQueue`]. Opaque: a queue can look at it to
/// decide the order, keep it, and hand it back from
/// [`pop`](RunQueue::pop).
pub struct QueuedTask {
    /// `None` only after it was taken back by the pool.
    runnable: Option<Runnable>,
}

impl QueuedTask {
    pub(crate) fn new(runnable: Runnable) -> Self {
        QueuedTask {
            runnable: Some(runnable),
        }
    }

    pub(crate) fn into_runnable(mut self) -> Runnable {
        self.runnable
            .take()
            .expect("a queued task holds its runnable")
    }

    fn runnable(&self) -> &Runnable {
        self.runnable
            .as_ref()
            .expect("a queued task holds its runnable")
    }

    /// The task's priority.
    pub fn priority(&self) -> Priority {
        self.runnable().metadata().priority()
    }

    /// The task's name, from [`Spawn::name`](crate::Spawn::name).
    pub fn name(&self) -> Option<&str> {
        self.runnable().metadata().name().map(|name| &**name)
    }
}

impl Drop for QueuedTask {
    /// A queue that drops a task instead of handing it back: the task is
    /// cancelled, and its handle says why. Not here and now: the queue may
    /// hold its own lock, and cancelling runs user code that may spawn
    /// into that very queue. The task goes to its pool's own injector of
    /// its level, which workers look at before the user's queue.
    fn drop(&mut self) {
        if let Some(runnable) = self.runnable.take() {
            runnable.metadata().set_cancel(cancel::DROPPED_BY_QUEUE);
            let pool = runnable.metadata().pool.clone();
            pool.push_dropped(runnable);
        }
    }
}

impl fmt::Debug for QueuedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedTask")
            .field("priority", &self.priority())
            .field("name", &self.name())
            .finish()
    }
}

/// A run-queue for one priority level of a pool, shared by its workers.
///
/// Workers call [`pop`](Self::pop) from many threads at once and producers
/// call [`push`](Self::push) from anywhere, so the queue synchronises
/// itself (a `Mutex` around a `VecDeque` is fine for moderate rates). `len`
/// may be approximate but must not report 0 while a pushed task was not
/// popped yet: workers park when every queue looks empty.
///
/// ```
/// use std::collections::VecDeque;
/// use std::sync::Mutex;
/// use multipool::{Priority, QueuedTask, RunQueue};
///
/// /// Newest first, across the whole pool.
/// #[derive(Default)]
/// struct Stack(Mutex<Vec<QueuedTask>>);
///
/// impl RunQueue for Stack {
///     fn push(&self, task: QueuedTask) {
///         self.0.lock().unwrap().push(task);
///     }
///     fn pop(&self) -> Option<QueuedTask> {
///         self.0.lock().unwrap().pop()
///     }
///     fn len(&self) -> usize {
///         self.0.lock().unwrap().len()
///     }
/// }
///
/// let rt = multipool::Runtime::builder()
///     .workers(2)
///     .queue(Priority::Low, Stack::default())
///     .build()
///     .unwrap();
/// let done = rt.block_on(rt.spawn(async { "low" }).priority(Priority::Low));
/// assert_eq!(done.unwrap(), "low");
/// ```
pub trait RunQueue: Send + Sync + 'static {
    /// Adds a task.
    fn push(&self, task: QueuedTask);

    /// Takes the task to run next, if any.
    fn pop(&self) -> Option<QueuedTask>;

    /// How many tasks wait (see the trait docs for how exact it must be).
    fn len(&self) -> usize;

    /// Whether no task waits.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
