//! Blocking work: the blocking pool (`pool`) and how a `spawn_blocking`
//! call becomes a task on it. The public side is
//! `crate::task::spawn_blocking`.
//!
//! A blocking call is a task like any other (same header, same handle,
//! same cancellation), whose future runs the closure in its first poll and
//! whose schedule function queues it on the blocking pool instead of a
//! worker. It belongs to its runtime's default pool.

mod pool;

pub(crate) use pool::{BlockingConfig, BlockingPool};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::SpawnError;
use crate::runtime::scheduler::Pool;
use crate::runtime::task::{spawn_on, Enqueue, Runnable, SpawnOptions, Spawned};
use crate::sync::Arc;
use crate::Priority;
use std::panic::Location;

/// Creates the task of a `spawn_blocking` call on the default pool of
/// `pool`'s runtime and queues it on the blocking pool. A refusal hands the
/// closure back, for the caller to drop outside any borrow of the runtime
/// context (it is user code).
pub(crate) fn spawn<F, R>(
    pool: &Arc<Pool>,
    f: F,
    location: &'static Location<'static>,
) -> Result<Spawned<R>, (SpawnError, F)>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let default = pool.runtime.default_pool().unwrap_or_else(|| pool.clone());
    match default.admit_blocking() {
        Ok(admission) => Ok(spawn_on(
            &default,
            BlockingCall(Some(f)),
            &mut SpawnOptions::at(location),
            admission,
            Enqueue::Blocking,
        )),
        Err(error) => {
            default.count_refused(Priority::Normal);
            Err((error, f))
        }
    }
}

/// The schedule function of blocking tasks. A blocking task is only ever
/// scheduled once: its future completes in its first poll.
pub(crate) fn schedule(runnable: Runnable, _info: async_task::ScheduleInfo) {
    let pool = runnable.metadata().pool.clone();
    pool.runtime.blocking.push(runnable);
}

/// Runs a `spawn_blocking` task on a blocking thread (counted as active
/// paused-time work with `test-util`; see `runtime::time::paused`).
fn run_blocking(runnable: Runnable) {
    #[cfg(feature = "test-util")]
    crate::runtime::time::paused::BlockingCount::run(runnable);
    #[cfg(not(feature = "test-util"))]
    runnable.run();
}

/// A closure as a future that runs it in its first poll.
struct BlockingCall<F>(Option<F>);

impl<F> Unpin for BlockingCall<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingCall<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self.0.take().expect("a blocking call runs once");
        Poll::Ready(f())
    }
}
