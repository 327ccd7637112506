//! [`Home`]: the multipool runtime that threads driving its tokio runtime
//! enter, so that `multipool::spawn` and `multipool::Handle::current()` in
//! a tokio task target it wherever tokio runs that task.
//!
//! Multipool's own threads (workers, `block_on` callers) have their
//! runtime entered already. The threads that are not multipool's but run
//! tokio tasks for it are the fallback thread of a [`Driver`](super::driver::Driver)
//! and the worker threads of an owned multi-thread tokio runtime
//! ([`TokioContext::worker_threads`](super::TokioContext::worker_threads)).
//! Without this, a `multipool::spawn` there went to the global runtime
//! (starting it, and with no tokio context, so the task's first tokio call
//! panicked).
//!
//! Invariants:
//! * The home is set by the first multipool thread to enter the
//!   `wrap_thread` wrapper (a worker starting, or a `block_on` call): the
//!   runtime is entered there already (multipool enters it before the
//!   wrappers run), and it is set before that thread builds the tokio
//!   runtime, so every thread of that tokio runtime finds it. It is
//!   cleared when the multipool runtime shuts down (its `on_shutdown`
//!   hook), which ends the reference cycle a `multipool::Handle` held here
//!   makes (the runtime holds its hooks, which hold this), and set again
//!   by the next thread of a runtime built again from the same builder.
//! * The fallback thread enters the home around each time it drives
//!   tokio; a tokio worker thread enters it when it starts, for its whole
//!   life.
//! * One builder built into several multipool runtimes that share one
//!   tokio runtime (a cloned builder) has one home: the first of them.
//!   An owned multi-thread tokio runtime's threads keep the home they
//!   entered at their start: if that first runtime shuts down while the
//!   tokio runtime lives on for another, `multipool::spawn` in a tokio task
//!   there is refused (shut down) rather than sent to the live one. Build
//!   each runtime from a builder of its own to avoid this.

use std::cell::RefCell;
use std::sync::Mutex;

/// See the module docs.
#[derive(Default)]
pub(super) struct Home(Mutex<Option<multipool::Handle>>);

impl Home {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<multipool::Handle>> {
        // A single assignment at a time: consistent even after a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On a multipool thread entering the wrapper (its runtime entered):
    /// the first one sets the home.
    pub(super) fn set_from_current(&self) {
        let mut home = self.lock();
        if home.is_none() {
            // Not a runtime that is shutting down: a thread of one can
            // still get here after its `on_shutdown` cleared the home.
            *home = multipool::Handle::try_current()
                .ok()
                .filter(|handle| !handle.is_shutdown());
        }
    }

    /// The `on_shutdown` hook.
    pub(super) fn clear(&self) {
        let handle = self.lock().take();
        // Outside the lock: this may be the last reference.
        drop(handle);
    }

    /// The home's handle, if it is set.
    pub(super) fn get(&self) -> Option<multipool::Handle> {
        self.lock().clone()
    }

    /// For a tokio worker thread, as it starts: enters the home, if set,
    /// for the rest of the thread's life.
    pub(super) fn enter_for_thread(&self) {
        thread_local! {
            static ENTERED: RefCell<Option<multipool::EnterGuard>> = const { RefCell::new(None) };
        }
        if let Some(handle) = self.get() {
            let _ = ENTERED.try_with(|entered| *entered.borrow_mut() = Some(handle.enter()));
        }
    }
}
