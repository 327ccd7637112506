//! Calling user code from the runtime's own threads.
//!
//! Invariant: no panic from user code (a hook, a `RunQueue`, a `Scheduler`,
//! a waker of a task that awaits a `JoinHandle`) unwinds into a worker, the
//! monitor or a blocking thread. Every such call goes through
//! [`guard_user`]. (Tasks catch their own panics; see `runtime::task`.)

use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs user code that the runtime calls on its own threads. A panic in it
/// is caught and reported on stderr as "multipool: {what} panicked; the
/// panic was caught". `None`: it panicked.
pub(crate) fn guard_user<R>(what: impl Display, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(payload) => {
            eprintln!("multipool: {what} panicked; the panic was caught");
            crate::runtime::task::drop_quietly(payload);
            None
        }
    }
}
