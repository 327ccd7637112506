//! Task ids, and the task being polled on this thread.
//!
//! Invariants:
//! * An [`Id`] is unique among all tasks of the process for its whole life:
//!   ids come from one 64-bit counter that never wraps in practice (at a
//!   billion spawns a second it lasts 580 years). Each thread takes ids in
//!   blocks of [`ID_BLOCK`], so taking one touches no shared cache line
//!   except once per block. A task takes its id the first time anyone asks
//!   for it (`TaskMeta::id`), so a task nobody asks about takes none.
//! * The task being polled (or dropped) on this thread is `scope`'s (see
//!   its invariants); [`CurrentTask`] and [`with_current_task`] set and
//!   read it.

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;
// A process-wide counter: loom's atomics cannot be statics, and no loom
// model spawns tasks.
use std::sync::atomic::{AtomicU64, Ordering};

use super::{scope, TaskMeta};

/// An opaque id of a task, unique among all tasks the process ever spawns
/// (on any runtime), as tokio's `task::Id`.
///
/// Get it from [`JoinHandle::id`](crate::JoinHandle::id),
/// [`AbortHandle::id`], [`task::id`](crate::task::id) inside the task, or
/// the [`TaskInfo`](crate::task::TaskInfo) a task hook receives.
///
/// An id names its task to [`Spawn::after`](crate::Spawn::after) until the
/// task ends. Taking a live task's id the first time enters the task in a
/// process-wide index (one short lock), which it leaves when it ends; tasks
/// whose id is never taken pay nothing.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let handle = multipool::spawn(async { multipool::task::id() }).start();
///     let id = handle.id();
///     assert_eq!(handle.await.unwrap(), id);
/// });
/// assert!(multipool::task::try_id().is_none()); // not inside a task
/// ```
///
/// [`AbortHandle::id`]: crate::task::AbortHandle::id
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(NonZeroU64);

impl Id {
    /// The id as a number (stable for the task's life; never zero).
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

/// Ids a thread takes from the shared counter at once.
const ID_BLOCK: u64 = 1024;

/// The first id of the next block not yet handed to a thread.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The next id of this thread's block, and the end of the block.
    static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

impl Id {
    /// The id numbered `n`, if `n` is one (ids are never 0).
    #[inline]
    pub(crate) fn from_u64(n: u64) -> Option<Id> {
        NonZeroU64::new(n).map(Id)
    }

    /// A fresh id.
    #[inline]
    pub(crate) fn next() -> Id {
        let id = BLOCK
            .try_with(|block| {
                let (mut next, mut end) = block.get();
                if next == end {
                    next = take_block();
                    end = next + ID_BLOCK;
                }
                block.set((next + 1, end));
                next
            })
            // A thread being torn down: one id of its own block.
            .unwrap_or_else(|_| take_block());
        Id(NonZeroU64::new(id).expect("task ids start at 1"))
    }
}

#[cold]
fn take_block() -> u64 {
    // Blocks start at 1, `ID_BLOCK` apart: no id is ever 0.
    NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed)
}

/// Marks `meta`'s task as the one polled on this thread until dropped
/// (without touching the budget: see `scope::PollScope` for a poll).
pub(crate) struct CurrentTask(*const TaskMeta);

impl CurrentTask {
    #[inline]
    pub(crate) fn enter(meta: &TaskMeta) -> CurrentTask {
        CurrentTask(scope::replace_task(meta))
    }
}

impl Drop for CurrentTask {
    #[inline]
    fn drop(&mut self) {
        scope::replace_task(self.0);
    }
}

/// Calls `f` with the metadata of the task polled on this thread, if any.
pub(crate) fn with_current_task<R>(f: impl FnOnce(Option<&TaskMeta>) -> R) -> R {
    let ptr = scope::task();
    // SAFETY: the scope's task is non-null only while a `CurrentTask` or
    // `PollScope` guard lives on this thread, inside the poll (or drop) of
    // that task's future; the metadata lives in the task's allocation,
    // which outlives its future, and `f` cannot keep the reference beyond
    // this call.
    f(unsafe { ptr.as_ref() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_threads_and_blocks() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..3 * ID_BLOCK as usize)
                        .map(|_| Id::next())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Id> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
