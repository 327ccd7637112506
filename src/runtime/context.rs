//! The runtime entered on the current thread.
//!
//! Workers enter their runtime for their whole life; `Runtime::block_on` and
//! `Handle::enter` enter it for a scope. [`with_current_pool`] is how
//! `multipool::spawn` finds where to put a task without cloning a handle.

use std::cell::RefCell;

use super::{global, Handle};
use crate::error::TryCurrentError;
use crate::pool::Pool;
use crate::sync::Arc;

thread_local! {
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Restores the previously entered runtime when dropped.
///
/// Returned by [`Handle::enter`]. Guards must be dropped in the reverse order
/// of their creation.
#[derive(Debug)]
#[must_use = "the runtime is only entered while the guard lives"]
pub struct EnterGuard {
    previous: Option<Handle>,
    /// `EnterGuard` must stay on the thread that created it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
    }
}

/// Makes `handle` the current runtime of this thread until the guard drops.
pub(crate) fn enter(handle: Handle) -> EnterGuard {
    let previous = CURRENT.with(|current| current.borrow_mut().replace(handle));
    EnterGuard {
        previous,
        _not_send: std::marker::PhantomData,
    }
}

pub(crate) fn try_current() -> Result<Handle, TryCurrentError> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
        .ok_or_else(TryCurrentError::new)
}

/// Calls `f` with the pool of the current runtime, or of the global runtime
/// when none is entered.
pub(crate) fn with_current_pool<R>(f: impl FnOnce(&Arc<Pool>) -> R) -> R {
    let mut f = Some(f);
    let entered = CURRENT
        .try_with(|current| {
            let current = current.borrow();
            current
                .as_ref()
                .map(|handle| (f.take().expect("called once"))(handle.pool()))
        })
        .ok()
        .flatten();
    match entered {
        Some(result) => result,
        None => (f.take().expect("called once"))(global::handle().pool()),
    }
}
