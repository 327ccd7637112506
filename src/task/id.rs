//! The current task's id: [`id`] and [`try_id`]. The [`Id`] type itself
//! lives with the task machinery (`runtime::task`).

use crate::runtime::{with_current_task, Id};

/// The id of the task being polled on this thread.
///
/// # Panics
///
/// If called outside a task (use [`try_id`] there), as tokio's does.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let handle = rt.spawn(async { multipool::task::id() }).start();
/// let id = handle.id();
/// assert_eq!(rt.block_on(handle).unwrap(), id);
/// ```
#[track_caller]
pub fn id() -> Id {
    try_id().expect("`multipool::task::id` called outside a task (use `try_id` there)")
}

/// The id of the task being polled (or dropped) on this thread, or `None`
/// outside a task: in `block_on`'s own future, on a thread the runtime
/// does not run tasks on, or in a hook.
///
/// ```
/// assert!(multipool::task::try_id().is_none());
/// let id = multipool::block_on(multipool::spawn(async { multipool::task::try_id() }));
/// assert!(id.unwrap().is_some());
/// ```
pub fn try_id() -> Option<Id> {
    with_current_task(|task| task.map(|meta| meta.public_id()))
}
