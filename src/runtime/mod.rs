//! [`Runtime`], its [`Builder`] and its [`Handle`].
//!
//! A runtime owns a pool of worker threads (see `pool`). Dropping the
//! `Runtime` shuts the pool down: workers stop, and every task that has not
//! completed is dropped, its handle reporting a shutdown error. `Handle`s
//! outlive the runtime safely: spawning through one afterwards yields a task
//! whose handle reports the shutdown at once.

mod block_on;
mod builder;
pub(crate) mod context;
mod global;
pub(crate) mod hooks;
mod shared;

pub use block_on::block_on;
pub(crate) use block_on::run_blocking;
pub use builder::{Builder, PoolBuilder};
pub(crate) use shared::RuntimeShared;

pub use context::EnterGuard;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use crate::error::{BuildError, TryCurrentError};
use crate::pool::Pool;
use crate::sync::Arc;
use crate::task::{spawn_on, Enqueue, JoinHandle, Spawn, SpawnOptions};
use crate::Priority;

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

/// A cheap, cloneable reference to a [`Runtime`], usable from any thread.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let handle = rt.handle();
/// let answer = std::thread::spawn(move || {
///     multipool::block_on(handle.spawn(async { 42 }).start())
/// })
/// .join()
/// .unwrap();
/// assert_eq!(answer.unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct Handle {
    pool: Arc<Pool>,
}

impl Handle {
    pub(crate) fn from_pool(pool: Arc<Pool>) -> Self {
        Handle { pool }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The handle of the runtime entered on this thread.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime; see [`try_current`](Self::try_current).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let handle = multipool::Handle::current();
    ///     assert_eq!(handle.num_workers(), 1);
    /// });
    /// ```
    #[track_caller]
    pub fn current() -> Handle {
        match Self::try_current() {
            Ok(handle) => handle,
            Err(err) => panic!("{err}"),
        }
    }

    /// The handle of the runtime entered on this thread, or an error outside
    /// any runtime.
    ///
    /// ```
    /// assert!(multipool::Handle::try_current().is_err());
    /// ```
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::try_current()
    }

    /// Enters this runtime on the current thread until the guard is dropped,
    /// so that `multipool::spawn` and [`Handle::current`] use it.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let _guard = rt.handle().enter();
    /// let task = multipool::spawn(async { 1 }).start(); // runs on `rt`
    /// assert_eq!(multipool::block_on(task).unwrap(), 1);
    /// ```
    pub fn enter(&self) -> EnterGuard {
        context::enter(self.clone())
    }

    /// Describes a task to run on this runtime; see [`Spawn`].
    pub fn spawn<F>(&self, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Spawn::on(self.clone(), future)
    }

    /// Runs `future` on the calling thread with this runtime entered; see
    /// [`Runtime::block_on`].
    pub fn block_on<F: IntoFuture>(&self, future: F) -> F::Output {
        let _enter = self.enter();
        self.pool
            .runtime
            .hooks
            .wrapped(|| block_on::block_on_in(future, &self.pool))
    }

    /// Spawns every future of `futures` onto this handle's pool at
    /// [`Priority::Normal`], waking the workers once for the whole batch
    /// rather than once per task (the woken worker wakes the next as it
    /// finds more work). Returns their handles in order.
    ///
    /// A bounded pool (see [`Builder::max_queued`]) takes what fits; the
    /// handles of the rest report the refusal
    /// ([`JoinError::is_rejected`](crate::JoinError::is_rejected)).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// let handles = rt.handle().spawn_batch((0..100u64).map(|i| async move { i * 2 }));
    /// let total: u64 = rt.block_on(async {
    ///     let mut total = 0;
    ///     for handle in handles {
    ///         total += handle.await.unwrap();
    ///     }
    ///     total
    /// });
    /// assert_eq!(total, 9900);
    /// ```
    pub fn spawn_batch<I>(&self, futures: I) -> Vec<JoinHandle<<I::Item as Future>::Output>>
    where
        I: IntoIterator,
        I::Item: Future + Send + 'static,
        <I::Item as Future>::Output: Send + 'static,
    {
        let pool = &self.pool;
        /// Wakes the workers for what was queued, even if the iterator
        /// panics half-way.
        struct FinishBatch<'a>(&'a Pool);
        impl Drop for FinishBatch<'_> {
            fn drop(&mut self) {
                self.0.finish_batch();
            }
        }
        let _finish = FinishBatch(pool);
        futures
            .into_iter()
            .map(|future| {
                let reserved = pool
                    .check_spawn(Priority::Normal)
                    .and_then(|()| pool.reserve_place(false));
                match reserved {
                    Ok(reserved) => JoinHandle::new(
                        spawn_on(
                            pool,
                            future,
                            SpawnOptions::default(),
                            reserved,
                            Enqueue::Quiet,
                        )
                        .finish(),
                    ),
                    Err(error) => JoinHandle::refused(error.into_join_error()),
                }
            })
            .collect()
    }

    /// Runs `f` on this runtime's blocking pool; see
    /// [`task::spawn_blocking`](crate::task::spawn_blocking).
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _enter = self.enter();
        crate::task::spawn_blocking(f)
    }

    /// A handle to this runtime's pool called `name` (see
    /// [`Builder::pool`]; the runtime's own pool is `"default"`), or `None`
    /// if there is no such pool.
    pub fn named_pool(&self, name: &str) -> Option<Handle> {
        self.pool.runtime.pool(name).map(Handle::from_pool)
    }

    /// The name of the pool this handle spawns onto.
    pub fn pool_name(&self) -> &str {
        &self.pool.name
    }

    /// Number of worker threads running now (between
    /// [`min_workers`](Self::min_workers) and
    /// [`max_workers`](Self::max_workers)).
    pub fn num_workers(&self) -> usize {
        self.pool.num_workers()
    }

    /// Tasks queued on each worker slot of the pool, in worker order (its
    /// local queues and the tasks placed on or pinned to it; the shared
    /// injector is [`injector_depth`](Self::injector_depth)). Dormant slots
    /// of an elastic pool count zero.
    pub fn worker_queue_depths(&self) -> Vec<usize> {
        self.pool.worker_queue_depths()
    }

    /// The fewest workers the pool runs.
    pub fn min_workers(&self) -> usize {
        self.pool.min_workers()
    }

    /// The most workers the pool runs.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    /// Workers the pool has started since it was built (the first
    /// `min_workers` included). A worker counts from the moment the pool
    /// decides to start it, before [`num_workers`](Self::num_workers)
    /// includes it: once `num_workers` has grown, this has too. (A start
    /// whose thread the OS refuses is counted back out.)
    pub fn workers_started(&self) -> usize {
        self.pool.workers_started()
    }

    /// Workers that have retired after the idle timeout. A worker counts
    /// from the moment it decides to retire, before
    /// [`num_workers`](Self::num_workers) drops; its thread then runs the
    /// `on_thread_stop` hooks and exits, so those may still be running
    /// when this has already grown.
    pub fn workers_retired(&self) -> usize {
        self.pool.workers_retired()
    }

    /// Workers found stuck in one poll for 2 ms or more at the pool
    /// monitor's last look (only elastic pools, `max_workers >
    /// min_workers`, have a monitor; others report 0).
    pub fn num_blocked_workers(&self) -> usize {
        self.pool
            .blocked_workers
            .load(crate::sync::Ordering::Relaxed)
    }

    /// Tasks waiting to start (spawned, not yet polled) in a pool with
    /// [`Builder::max_queued`]; 0 for an unbounded pool, which does not
    /// count them.
    pub fn num_queued(&self) -> usize {
        self.pool.num_queued()
    }

    /// The pool's queue bound, if it has one.
    pub fn max_queued(&self) -> Option<usize> {
        self.pool.max_queued()
    }

    /// Threads of the runtime's blocking pool, busy or idle.
    pub fn num_blocking_threads(&self) -> usize {
        self.pool.runtime.blocking.num_threads()
    }

    /// `spawn_blocking` calls waiting for a blocking thread.
    pub fn blocking_queue_depth(&self) -> usize {
        self.pool.runtime.blocking.queue_depth()
    }

    /// Number of tasks alive on this runtime: spawned and not yet completed
    /// or cancelled.
    pub fn num_alive_tasks(&self) -> usize {
        self.pool.num_alive()
    }

    /// Number of tasks waiting in the runtime's injection queues (spawned or
    /// woken from outside its workers and not yet picked up).
    pub fn injector_depth(&self) -> usize {
        self.pool.injector_len()
    }

    /// Number of workers currently parked (idle).
    pub fn num_parked_workers(&self) -> usize {
        self.pool.num_parked()
    }

    /// Number of timers registered: sleeps, time-outs, intervals and task
    /// deadlines that have been polled and not yet dropped (a fired timer
    /// counts until its `Sleep` is dropped).
    pub fn num_timers(&self) -> usize {
        self.pool.timers.len()
    }

    /// Whether the runtime has shut down or begun to (see
    /// [`Runtime::shutdown_timeout`]); spawns then fail with a shutdown
    /// error on their handle.
    pub fn is_shutdown(&self) -> bool {
        !self.pool.accepts_spawns()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.num_workers())
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}

impl futures_task::Spawn for Handle {
    /// Spawns a detached task, or reports that the runtime has shut down.
    fn spawn_obj(
        &self,
        future: futures_task::FutureObj<'static, ()>,
    ) -> Result<(), futures_task::SpawnError> {
        if self.is_shutdown() {
            return Err(futures_task::SpawnError::shutdown());
        }
        self.spawn(future).detach();
        Ok(())
    }

    fn status(&self) -> Result<(), futures_task::SpawnError> {
        if self.is_shutdown() {
            Err(futures_task::SpawnError::shutdown())
        } else {
            Ok(())
        }
    }
}
