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
//! then stealing from a sibling. Lower levels keep a minimum share of the
//! polls (Normal one in 16, Low one in 64; [`Builder::min_share`],
//! [`Builder::strict_priority`]), so none starves. Where tasks start and run
//! is configurable ([`Placement`], [`Spawn::worker`], [`Spawn::key`],
//! [`spawn_local`]), and so is the policy itself ([`Scheduler`],
//! [`RunQueue`]). A panic inside a task is caught and reported through its
//! handle; it never takes a worker down.
//!
//! # Pools
//!
//! A runtime's pool sizes itself between [`Builder::min_workers`] and
//! [`Builder::max_workers`], standing in for workers blocked in a poll; a
//! runtime may hold named pools ([`Builder::pool`]) to isolate kinds of
//! work; blocking code goes to [`task::spawn_blocking`].
//!
//! # Dependencies between tasks
//!
//! [`Spawn::after`] holds a task, unqueued, until the tasks it depends on
//! have ended; [`graph::TaskGraph`] runs a DAG of tasks that pass their
//! outputs along, each node with its own priority, and cancels the
//! dependents of a failed node.
//!
//! # Where things are (for readers of the source)
//!
//! The public modules (`task`, `time`) are thin faces; the machinery is
//! under `runtime/`, and they reach it only through `runtime`'s facade.
//!
//! | concept | file |
//! |---|---|
//! | priority levels, `LevelSet` | `src/priority.rs` |
//! | spawning (`Spawn`), `JoinHandle` | `src/task/spawn.rs`, `src/task/join.rs` |
//! | retry with backoff, fallback (`task::retry`) | `src/task/retry.rs` |
//! | task dependencies (`Spawn::after`), held tasks | `src/runtime/task/dependency.rs` |
//! | task graphs (`graph::TaskGraph`) | `src/graph.rs` |
//! | admission, the queue bound | `src/runtime/scheduler/admission.rs` |
//! | a task's header, wrapper, `spawn_on` | `src/runtime/task/` |
//! | per-task limits (deadline, CPU budget, `max_poll`) | `Limits` in `src/runtime/task/future.rs` |
//! | the cooperative budget (`consume_budget`, `unconstrained`) | `src/runtime/task/coop.rs`, `src/task/coop.rs` |
//! | routing, the push protocol | `src/runtime/scheduler/push.rs` |
//! | the worker loop, priority order, fairness | `src/runtime/scheduler/worker/core.rs` |
//! | steal | `steal_level`/`steal_work` in `worker/core.rs`; `queues.rs` |
//! | park, idle workers, wake-ups | `worker/sleep.rs`, `scheduler/idle.rs`, `scheduler/park.rs` |
//! | pool, its invariants | `src/runtime/scheduler/mod.rs` |
//! | growing, retiring, shutdown | `scheduler/lifecycle.rs`, `scheduler/monitor.rs` |
//! | placement, pinned tasks | `src/runtime/scheduler/placement.rs` |
//! | timer wheel, timer driver, clock | `src/runtime/time/{wheel,driver,clock}.rs` |
//! | paused time (`test-util`) | `src/runtime/time/paused.rs` |
//! | blocking pool, `spawn_blocking` | `src/runtime/blocking/` |
//! | `Runtime`, `Handle`, builders | `src/runtime/{mod,handle,builder,pool_builder}.rs` |
//! | hooks, user code guarded | `src/runtime/hooks.rs`, `src/runtime/guard.rs` |
//! | `RuntimeMetrics`, latency histograms | `src/runtime/metrics.rs`, `scheduler/counters.rs` |
//! | export to the `metrics` facade (feature `metrics`) | `src/metrics_export.rs` |
//! | every lock and atomic (loom switch); the public `sync` re-exports | `src/sync.rs` |
//! | `JoinSet`, `AbortHandle` (the cell behind it) | `src/task/join_set.rs`, `src/task/abort.rs` (`src/runtime/task/abort.rs`) |
//! | rate and concurrency limits | `src/limit/` |
//! | memory limits, `TaskAlloc` (`alloc`) | `src/alloc.rs`; the check in `src/runtime/task/future.rs` |
//! | worker-local state | `src/runtime/scheduler/worker/state.rs` |
//! | task spans, traced wakers (feature `tracing`) | `src/runtime/task/trace.rs` |
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

pub mod alloc;
mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
pub mod graph;
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics_export;
mod priority;
mod runtime;
pub mod sync;
pub mod task;
pub mod time;

pub use error::{BuildError, JoinError, SpawnError, TryCurrentError};
pub use priority::Priority;
pub use runtime::scheduler::park::{Park, Unparked};
pub use runtime::scheduler::worker::{try_with_worker_state, with_worker_state};
pub use runtime::scheduler::{
    HoldWakes, Placement, PriorityFirst, QueuedTask, RunQueue, Scheduler, SchedulerContext,
    WeightedFair,
};
pub use runtime::{
    block_on, Builder, EnterGuard, Handle, Histogram, PoolBuilder, Runtime, RuntimeMetrics,
};
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
#[track_caller]
pub fn spawn<F>(future: F) -> Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Spawn::current(future)
}

/// Spawns a task that need not be `Send` (it may hold an `Rc`, a
/// `RefCell`, a `!Send` guard across an `.await`) onto the worker running
/// the current task, and pins it there: it is polled, and dropped, only on
/// this thread (what tokio users do with a `LocalSet`). It runs at
/// [`Priority::Normal`]. A pinned task waits while its worker is busy.
///
/// The handle works from any thread; it is `Send` when the output is.
///
/// # Panics
///
/// Panics when not called on a multipool worker (inside a task): only a
/// worker thread can run a task pinned to it.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// let total = rt.block_on(multipool::spawn(async {
///     // The outer task stays `Send`: the `Rc` lives in local tasks only.
///     multipool::spawn_local(async {
///         let shared = Rc::new(RefCell::new(0)); // not Send
///         let tasks: Vec<_> = (1..=10)
///             .map(|i| {
///                 let shared = shared.clone();
///                 multipool::spawn_local(async move {
///                     multipool::task::yield_now().await;
///                     *shared.borrow_mut() += i;
///                 })
///             })
///             .collect();
///         for task in tasks {
///             task.await.unwrap();
///         }
///         let total = *shared.borrow();
///         total
///     })
///     .await
///     .unwrap()
/// }));
/// assert_eq!(total.unwrap(), 55);
/// ```
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let location = std::panic::Location::caller();
    let placed = runtime::scheduler::worker::with_current_worker(|pool, index, stopping| {
        let admission = if stopping {
            // In an `on_thread_stop` hook: nothing would ever run it.
            Err(SpawnError::shutdown())
        } else {
            pool.admit_local(index)
        };
        match admission {
            // The pool's rate limit, if it has one (see `limit`).
            Ok(admission) => Ok(
                match limit::Limits::default().gate(pool, Priority::Normal) {
                    limit::Gate::Open => {
                        runtime::task::spawn_local_on(pool, admission, future, location)
                    }
                    gate => {
                        runtime::task::spawn_local_on(pool, admission, gate.wrap(future), location)
                    }
                },
            ),
            Err(error) => {
                pool.count_refused(Priority::Normal);
                Err(error)
            }
        }
    });
    match placed {
        Some(Ok(task)) => JoinHandle::new(task),
        // The runtime is shutting down: refused like any spawn.
        Some(Err(error)) => JoinHandle::refused(error.into_join_error()),
        None => panic!(
            "`multipool::spawn_local` called outside a multipool worker: a `!Send` task \
             can only be pinned to the worker running the current task; call it from \
             inside a task"
        ),
    }
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
    runtime::scheduler::worker::current_index()
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
