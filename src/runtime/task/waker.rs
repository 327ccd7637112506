//! Wakers of tasks that await a `JoinHandle`: the guard that keeps a
//! panicking waker from aborting the process, and the wakers trusted to
//! need no guard.

use std::cell::Cell;
use std::ptr;
use std::task::{Wake, Waker};

use atomic_waker::AtomicWaker;

use super::drop_quietly;
use crate::runtime::guard::guard_user;
use crate::runtime::scheduler::worker;
use crate::sync::Arc;

/// The waker a task wakes when it finishes. async-task calls it inside an
/// abort-on-panic guard, so the awaiter's own waker (user code, perhaps of
/// another executor) is called, and dropped, here under `catch_unwind`: a
/// waker that panics is reported and cannot take the process down.
#[derive(Default)]
pub(crate) struct GuardedWaker(AtomicWaker);

impl GuardedWaker {
    /// Stores the awaiter's waker, to be woken (guarded) when the task
    /// finishes.
    pub(crate) fn register(&self, waker: &Waker) {
        self.0.register(waker);
    }
}

impl Wake for GuardedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(waker) = self.0.take() {
            guard_user("`Waker::wake of a task awaiting a JoinHandle`", || {
                waker.wake()
            });
        }
    }
}

thread_local! {
    /// The data pointer of a `block_on`'s waker (which never panics) while
    /// that `block_on` polls on this thread; null: none.
    static TRUSTED_WAKER: Cell<*const ()> = const { Cell::new(ptr::null()) };
}

/// Marks the waker whose data pointer is `data` as trusted (see
/// [`TRUSTED_WAKER`]) until the guard drops. `data` must identify a waker
/// that never panics, for as long as the guard lives.
pub(crate) fn trust_waker(data: *const ()) -> TrustedWaker {
    TrustedWaker(TRUSTED_WAKER.with(|trusted| trusted.replace(data)))
}

/// Restores the previously trusted waker; see [`trust_waker`].
pub(crate) struct TrustedWaker(*const ());

impl Drop for TrustedWaker {
    fn drop(&mut self) {
        let _ = TRUSTED_WAKER.try_with(|trusted| trusted.set(self.0));
    }
}

/// Whether `waker` is known never to panic: the waker of the task this
/// worker is polling, or of the `block_on` polling on this thread. A
/// `JoinHandle` polled with it needs no [`GuardedWaker`], which saves an
/// allocation per awaited task in the common cases.
pub(crate) fn is_trusted(waker: &Waker) -> bool {
    let data = waker.data();
    !data.is_null()
        && (worker::is_running_task(data)
            || TRUSTED_WAKER
                .try_with(|trusted| ptr::eq(trusted.get(), data))
                .unwrap_or(false))
}

impl Drop for GuardedWaker {
    fn drop(&mut self) {
        if let Some(waker) = self.0.take() {
            drop_quietly(waker);
        }
    }
}
