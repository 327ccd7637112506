//! The runtime: [`Runtime`], its [`Builder`] and its [`Handle`], and under
//! them the machinery the public modules (`task`, `time`) are a face for.
//!
//! A runtime owns its pools of worker threads (see `scheduler`). Dropping
//! the `Runtime` shuts them down: workers stop, and every task that has not
//! completed is dropped, its handle reporting a shutdown error. `Handle`s
//! outlive the runtime safely: spawning through one afterwards yields a
//! task whose handle reports the shutdown at once.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | this file | `Runtime`, its shutdown, and the facade below |
//! | `handle`, `builder`, `pool_builder` | `Handle`, `Builder`, `PoolBuilder` |
//! | `shared` | what a runtime's pools share (hooks, clock, blocking pool) |
//! | `context` | the runtime entered on the current thread |
//! | `block_on`, `global` | `block_on`; the global runtime |
//! | `hooks`, `guard` | user hooks; calling user code safely |
//! | `scheduler` | pools, workers, queues, stealing, parking, admission |
//! | `task` | the task header, wrapper, `spawn_on`, waker guards |
//! | `time` | clock, timer wheels and their driver, paused time |
//! | `blocking` | the blocking pool and `spawn_blocking`'s task |
//!
//! The public modules `crate::task` and `crate::time` reach the machinery
//! only through the `pub(crate)` names re-exported below, never through
//! deeper paths. The dependencies that remain inside `runtime` (task ↔
//! scheduler: a task names its pool, the pool queues tasks; scheduler ↔
//! time: workers fire timers, a timer wakes workers) are inherent.

mod block_on;
pub(crate) mod blocking;
mod builder;
pub(crate) mod context;
mod global;
pub(crate) mod guard;
mod handle;
pub(crate) mod hooks;
pub(crate) mod metrics;
mod pool_builder;
pub(crate) mod scheduler;
pub(crate) mod shared;
pub(crate) mod task;
pub(crate) mod time;

pub use block_on::block_on;
pub use builder::Builder;
pub use context::EnterGuard;
pub use handle::Handle;
pub use metrics::{Histogram, RuntimeMetrics};
pub use pool_builder::PoolBuilder;

// The facade of `crate::task` and `crate::time`: all they use of the
// machinery.
pub(crate) use blocking::spawn as spawn_blocking_on;
pub(crate) use context::with_current_pool;
pub(crate) use scheduler::placement::key_hash;
pub(crate) use scheduler::{Admission, Home, Pool};
pub(crate) use task::{
    coop, current_cancel_error, is_trusted, spawn_on, with_current_task, AbortCell, After,
    CpuLimits, DependencyGate, Enqueue, GuardedWaker, RawTask, SpawnOptions, Spawned, TaskOutput,
};
pub use task::{Id, Outcome, SlowPoll, TaskInfo, UnhandledPanic};
pub(crate) use time::{far_future, Timer};

use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use crate::error::BuildError;
use crate::sync::Arc;
use crate::task::Spawn;

/// A multipool runtime: a pool of worker threads running spawned tasks.
///
/// ```
/// use multipool::{Priority, Runtime};
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let sum = rt.block_on(async {
///     let tasks: Vec<_> = (0..10u64)
///         .map(|i| multipool::spawn(async move { i * i }).priority(Priority::Low).start())
///         .collect();
///     let mut sum = 0;
///     for task in tasks {
///         sum += task.await.unwrap();
///     }
///     sum
/// });
/// assert_eq!(sum, 285);
/// ```
pub struct Runtime {
    /// The default pool's handle.
    handle: Handle,
    /// Every pool, the default one first.
    pools: Vec<Arc<Pool>>,
    /// Set once a `shutdown_*` method has run, so `Drop` does nothing more.
    shut_down: bool,
}

impl Runtime {
    /// A [`Builder`] with the default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A runtime with the default settings.
    ///
    /// # Errors
    ///
    /// The operating system refused to start a worker thread.
    pub fn new() -> Result<Runtime, BuildError> {
        Builder::new().build()
    }

    /// Runs `future` to completion on the calling thread, with this runtime
    /// entered: `multipool::spawn` and [`Handle::current`] inside it use this
    /// runtime. The future itself runs on the calling thread, not on a worker.
    ///
    /// # Panics
    ///
    /// Panics when called on a multipool worker thread (see
    /// [`multipool::block_on`](crate::block_on)).
    pub fn block_on<F: IntoFuture>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Describes a task to run on this runtime; see [`Spawn`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// A handle to this runtime, to spawn onto it from anywhere.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub(crate) fn handle_ref(&self) -> &Handle {
        &self.handle
    }

    /// Shuts the runtime down gracefully: new spawns are refused at once
    /// (their handles report a shutdown error), while the tasks already
    /// spawned, `spawn_blocking` calls included, get up to `timeout` to
    /// finish. Whatever is left then is cancelled, as when the runtime is
    /// dropped, except that blocking calls still running are not waited
    /// for beyond the timeout (they cannot be interrupted; their threads
    /// end when they return). Returns whether everything finished in time.
    ///
    /// A zero timeout cancels everything at once, like dropping the runtime
    /// without waiting for blocking calls.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let quick = rt.spawn(async { 1 }).start();
    /// let stuck = rt.spawn(std::future::pending::<()>()).start();
    /// assert!(!rt.shutdown_timeout(Duration::from_millis(20)));
    /// assert_eq!(multipool::block_on(quick).unwrap(), 1);
    /// assert!(multipool::block_on(stuck).unwrap_err().is_shutdown());
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        for pool in &self.pools {
            pool.stop_accepting();
        }
        let drained = match deadline {
            Some(deadline) => self.pools.iter().all(|pool| pool.wait_drained(deadline)),
            None => self
                .pools
                .iter()
                .all(|pool| pool.wait_drained(far_deadline())),
        };
        self.shut_down = true;
        let blocking_done =
            shutdown_pools(&self.pools, Some(deadline.unwrap_or_else(far_deadline)));
        drained && blocking_done
    }

    /// Starts shutting the runtime down and returns at once: new spawns are
    /// refused from now on, the workers stop after their current poll, and
    /// every unfinished task is cancelled, on a thread of its own that also
    /// waits for running blocking calls. Use it where waiting is not an
    /// option (inside a task, in a `Drop`).
    pub fn shutdown_background(mut self) {
        self.shut_down = true;
        for pool in &self.pools {
            pool.close();
        }
        let pools = std::mem::take(&mut self.pools);
        let background = pools.clone();
        let finish = move || {
            shutdown_pools(&background, None);
        };
        if let Err(err) = std::thread::Builder::new()
            .name("multipool-shutdown".to_owned())
            .spawn(finish)
        {
            eprintln!(
                "multipool: no thread for a background shutdown ({err}); shutting down here \
                 (without waiting for blocking calls)"
            );
            shutdown_pools(&pools, Some(Instant::now()));
        }
    }
}

/// An instant far enough to mean "no deadline".
fn far_deadline() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(365 * 24 * 3600))
        .unwrap_or(now)
}

/// Stops every pool, cancels what is left, waits for blocking calls until
/// `deadline` (`None`: as long as they run) and runs the `on_shutdown`
/// hooks. Returns whether the blocking calls finished.
fn shutdown_pools(pools: &[Arc<Pool>], deadline: Option<Instant>) -> bool {
    for pool in pools {
        pool.close();
    }
    for pool in pools {
        pool.shutdown();
    }
    let Some(first) = pools.first() else {
        return true;
    };
    let runtime = first.runtime.clone();
    let done = runtime.blocking.shutdown(deadline);
    runtime.hooks.shut_down();
    done
}

// As tokio's: a `Runtime` (and a `Handle`) stays consistent when a panic
// unwinds past it. The runtime's state is only changed by its own code,
// which never unwinds half-way (a bug in it shuts the pool down, see
// `scheduler::worker`); user code it calls runs guarded (`guard`), and
// tasks catch their own panics. What is not unwind-safe by itself is the
// user's hooks, schedulers and queues the runtime holds as trait objects.
impl std::panic::UnwindSafe for Runtime {}
impl std::panic::RefUnwindSafe for Runtime {}

impl Drop for Runtime {
    /// Stops the workers and cancels every unfinished task; see the module
    /// docs. Waits for tasks that are being polled to return from `poll`,
    /// and for running `spawn_blocking` calls to return.
    fn drop(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            shutdown_pools(&self.pools, None);
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("handle", &self.handle)
            .finish()
    }
}
