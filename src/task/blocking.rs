//! [`spawn_blocking`]: run blocking code on the runtime's blocking threads.

use super::JoinHandle;
use crate::runtime::{spawn_blocking_on, with_current_pool};

/// Runs `f` on a thread of the current runtime's blocking pool (the global
/// runtime's outside any runtime) and returns a handle to its result.
///
/// Use it for work that blocks its thread (file I/O, a synchronous client,
/// heavy computation): on a worker such work would stall every task queued
/// behind it. The blocking pool starts threads on demand, up to
/// [`Builder::max_blocking_threads`](crate::Builder::max_blocking_threads),
/// and lets idle ones exit after
/// [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive).
/// When all threads are busy, calls wait in a queue bounded by
/// [`Builder::max_blocking_queued`](crate::Builder::max_blocking_queued); a
/// call beyond the bound is refused, and its handle says so
/// ([`JoinError::is_rejected`](crate::JoinError::is_rejected)).
///
/// The closure runs inside the runtime: `multipool::spawn`,
/// [`Handle::current`](crate::Handle::current) and `time::now` there are
/// the runtime's. Under paused time (feature `test-util`) the clock does
/// not advance by itself while blocking code is queued or runs, as in
/// tokio: a time-out around a blocking call does not elapse because the
/// workers went idle.
///
/// [`JoinHandle::abort`] cancels the call if it has not started yet; a
/// running closure cannot be interrupted and runs to the end. A panic in `f`
/// is caught and reported by the handle. Dropping the runtime waits for
/// running closures to return;
/// [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout) waits at
/// most its timeout.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let sum = rt.block_on(async {
///     multipool::task::spawn_blocking(|| (1..=100u64).sum::<u64>()).await
/// });
/// assert_eq!(sum.unwrap(), 5050);
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let location = std::panic::Location::caller();
    match with_current_pool(|pool| spawn_blocking_on(pool, f, location)) {
        Ok(spawned) => JoinHandle::new(spawned.finish()),
        Err((error, f)) => {
            // Dropped here, outside the runtime context's borrow.
            drop(f);
            JoinHandle::refused(error.into_join_error())
        }
    }
}
