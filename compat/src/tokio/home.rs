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
//! * The home is set by the first worker thread of the multipool runtime
//!   to start (its `on_thread_start` hook, which runs with the runtime
//!   entered), before that worker polls anything; so before any task of
//!   the runtime can hand tokio a task. It is cleared when the multipool
//!   runtime shuts down (its `on_shutdown` hook), which ends the reference
//!   cycle a `multipool::Handle` held here makes (the runtime holds its
//!   hooks, which hold this).
//! * A thread enters the home only while it is set: the fallback thread
//!   around each time it drives tokio; a tokio worker thread from its first
//!   unpark after the home is set until the thread exits.
//! * One builder built into several multipool runtimes that share one
//!   tokio runtime (a cloned builder) has one home: the first of them.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// See the module docs.
#[derive(Default)]
pub(super) struct Home(Mutex<Option<multipool::Handle>>);

impl Home {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<multipool::Handle>> {
        // A single assignment at a time: consistent even after a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `on_thread_start` hook: the first worker sets the home.
    pub(super) fn thread_started(&self) {
        let mut home = self.lock();
        if home.is_none() {
            *home = multipool::Handle::try_current().ok();
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

    /// For a tokio worker thread, at each unpark: enters the home for the
    /// rest of the thread's life once it is set (see the module docs).
    pub(super) fn enter_for_thread(self: &Arc<Self>) {
        thread_local! {
            static ENTERED: RefCell<Option<multipool::EnterGuard>> = const { RefCell::new(None) };
        }
        let _ = ENTERED.try_with(|entered| {
            if entered.borrow().is_some() {
                return;
            }
            if let Some(handle) = self.get() {
                *entered.borrow_mut() = Some(handle.enter());
            }
        });
    }
}
