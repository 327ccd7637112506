//! multipool: an async-first executor with priority run-queues.
//!
//! Spawn futures at three [`Priority`] levels onto a pool of work-stealing
//! worker threads; every task has a [`JoinHandle`] that can be awaited,
//! aborted or detached.
//!
//! ```
//! use multipool::Priority;
//!
//! #[multipool::main(workers = 2)]
//! async fn main() {
//!     let report = multipool::spawn(async { "quarterly report" }).priority(Priority::Low).start();
//!     let health = multipool::spawn(async { "ok" }).priority(Priority::High).await;
//!     assert_eq!(health.unwrap(), "ok");
//!     assert_eq!(report.await.unwrap(), "quarterly report");
//! }
//! ```
//!
//! # Where tasks run
//!
//! [`spawn`] puts a task on the runtime entered on the current thread (inside
//! a task, inside [`Runtime::block_on`], or after [`Handle::enter`]) and
//! otherwise on a global runtime started on first use, so it works with no
//! set-up at all. [`Runtime::spawn`] and [`Handle::spawn`] choose explicitly.
//!
//! # Scheduling
//!
//! Each worker owns one run-queue per priority level and serves the highest
//! non-empty level first: its own queue, then the runtime's injection queue,
//! then stealing from a sibling. Priority order between levels is strict.
//! A panic inside a task is caught and reported through its handle; it never
//! takes a worker down.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

mod blocking;
mod error;
mod pool;
mod priority;
mod runtime;
mod sync;
pub mod task;
pub mod time;

pub use error::{BuildError, JoinError, SpawnError, TryCurrentError};
pub use pool::park::{Park, Unparked};
pub use pool::Placement;
pub use priority::Priority;
pub use runtime::{block_on, Builder, EnterGuard, Handle, PoolBuilder, Runtime};
pub use task::{JoinHandle, Spawn};

#[cfg(feature = "macros")]
pub use multipool_macros::{main, test};

use std::future::Future;

/// Describes a task to run on the current runtime (or the global one outside
/// any runtime); see [`Spawn`] for how to start it.
///
/// ```
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let result = multipool::spawn(async { 1 + 2 }).priority(Priority::High).await;
///     assert_eq!(result.unwrap(), 3);
/// });
/// ```
pub fn spawn<F>(future: F) -> Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Spawn::current(future)
}

/// The index of the worker running the current task, or `None` off the
/// workers. Indices run from 0 to `workers - 1`.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// assert_eq!(multipool::worker_index(), None);
/// let index = rt.block_on(multipool::spawn(async { multipool::worker_index() })).unwrap();
/// assert!(matches!(index, Some(0 | 1)));
/// ```
pub fn worker_index() -> Option<usize> {
    pool::worker::current_index()
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
