//! [`Handle`]: a cheap reference to a runtime, usable from any thread.

use std::fmt;
use std::future::{Future, IntoFuture};

use super::block_on::block_on_in;
use super::context::{self, EnterGuard};
use super::metrics::RuntimeMetrics;
use super::scheduler::{Home, Pool};
#[cfg(feature = "test-util")]
use super::shared::RuntimeShared;
use super::task::{spawn_on, Batch, Enqueue, SpawnOptions};
use crate::error::TryCurrentError;
use crate::limit::{Gate, Limits};
use crate::sync::Arc;
use crate::task::{JoinHandle, Spawn};
use crate::Priority;

/// A cheap, cloneable reference to a [`Runtime`](crate::Runtime), usable from any thread.
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
    /// The pool this handle spawns onto; what every pool of the runtime
    /// shares is its `runtime`. One `Arc`, not two: `Runtime::spawn` and
    /// `Handle::spawn` clone the handle into the `Spawn` and drop it after,
    /// each a read-modify-write (callgrind and `spawn_many_remote_idle`:
    /// two of them were ~3% of a remote spawn).
    pool: Arc<Pool>,
}

impl Handle {
    pub(crate) fn from_pool(pool: Arc<Pool>) -> Self {
        Handle { pool }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// What every pool of the runtime shares.
    #[cfg(feature = "test-util")]
    pub(crate) fn shared(&self) -> &RuntimeShared {
        &self.pool.runtime
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
    ///     assert_eq!(handle.metrics().num_workers(), 1);
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
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Spawn::on(self.clone(), future)
    }

    /// Runs `future` on the calling thread with this runtime entered; see
    /// [`Runtime::block_on`](crate::Runtime::block_on).
    pub fn block_on<F: IntoFuture>(&self, future: F) -> F::Output {
        let _enter = self.enter();
        self.pool
            .runtime
            .hooks
            .wrapped(|| block_on_in(future, &self.pool))
    }

    /// Spawns every future of `futures` onto this handle's pool at
    /// [`Priority::Normal`], waking the workers once for the whole batch
    /// rather than once per task (the woken worker wakes the next as it
    /// finds more work). Returns their handles in order.
    ///
    /// The tasks are queued in groups of 64 as the iterator yields them
    /// (counted for the metrics with one add a group), and every task made
    /// is queued, even if the iterator panics.
    ///
    /// A bounded pool (see [`Builder::max_queued`](crate::Builder::max_queued)) takes what fits; the
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
    #[track_caller]
    pub fn spawn_batch<I>(&self, futures: I) -> Vec<JoinHandle<<I::Item as Future>::Output>>
    where
        I: IntoIterator,
        I::Item: Future + Send + 'static,
        <I::Item as Future>::Output: Send + 'static,
    {
        let pool = &self.pool;
        // Counts and queues the tasks a group at a time; dropped (also if
        // the iterator panics half-way), it queues the rest and wakes the
        // workers once.
        let mut batch = Batch::new(pool, Priority::Normal);
        // One set of options for the whole batch: a spawn takes only the
        // name out of them, and a batch names no task.
        let mut options = SpawnOptions::at(std::panic::Location::caller());
        // The pool's rate limit, if it has one (see `limit`), gates every
        // task; without one, no task needs a look at it.
        let rate_limited = pool.rate_limiter.is_some();
        futures
            .into_iter()
            .map(|future| {
                let admission = match pool.admit(Priority::Normal, Home::None, false) {
                    Ok(admission) => admission,
                    Err(error) => {
                        pool.count_refused(Priority::Normal);
                        return JoinHandle::refused(error.into_join_error());
                    }
                };
                let spawned = if !rate_limited {
                    spawn_on(pool, future, &mut options, admission, Enqueue::Quiet)
                } else {
                    match Limits::NONE.gate(pool, Priority::Normal) {
                        Gate::Open => {
                            spawn_on(pool, future, &mut options, admission, Enqueue::Quiet)
                        }
                        gate => spawn_on(
                            pool,
                            gate.wrap(future),
                            &mut options,
                            admission,
                            Enqueue::Quiet,
                        ),
                    }
                };
                JoinHandle::new(spawned.finish_in(&mut batch))
            })
            .collect()
    }

    /// Runs `f` on this runtime's blocking pool; see
    /// [`task::spawn_blocking`](crate::task::spawn_blocking).
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _enter = self.enter();
        crate::task::spawn_blocking(f)
    }

    /// A handle to this runtime's pool called `name` (see
    /// [`Builder::pool`](crate::Builder::pool); the runtime's own pool is `"default"`), or `None`
    /// if there is no such pool.
    pub fn named_pool(&self, name: &str) -> Option<Handle> {
        self.pool.runtime.pool(name).map(Handle::from_pool)
    }

    /// The name of the pool this handle spawns onto.
    pub fn pool_name(&self) -> &str {
        &self.pool.name
    }

    /// The pool's metrics: gauges, counters per worker, priority and
    /// outcome, and latency histograms; see [`RuntimeMetrics`]. Cheap: a
    /// handle that reads the counters when asked.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// let metrics = rt.handle().metrics();
    /// assert_eq!(metrics.num_workers(), 2);
    /// assert_eq!(metrics.num_alive_tasks(), 0);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics::new(self.pool.clone(), self.pool.runtime.clone())
    }

    /// Whether the runtime has shut down or begun to (see
    /// [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)); spawns then fail with a shutdown
    /// error on their handle.
    pub fn is_shutdown(&self) -> bool {
        !self.pool.accepts_spawns()
    }
}

// See the same impls for `Runtime`.
impl std::panic::UnwindSafe for Handle {}
impl std::panic::RefUnwindSafe for Handle {}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("pool", &self.pool.name)
            .field("workers", &self.pool.num_workers())
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

/// The `spawn_local` path for `futures`' executor traits: a `!Send` task
/// pinned to the calling worker (see [`spawn_local`](crate::spawn_local)),
/// detached.
///
/// Only a worker of this handle's pool can run such a task: called on any
/// other thread (or once the runtime has shut down), this returns
/// `futures`' `SpawnError` (whose only kind is "shut down") instead of
/// panicking as `spawn_local` does, and drops the future.
///
/// ```
/// use futures::task::LocalSpawnExt;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let handle = rt.handle().clone();
/// let value = rt.block_on(rt.spawn(async {
///     let (tx, rx) = futures::channel::oneshot::channel();
///     multipool::Handle::current()
///         .spawn_local(async move {
///             let not_send = std::rc::Rc::new(42);
///             multipool::task::yield_now().await;
///             tx.send(*not_send).unwrap();
///         })
///         .unwrap();
///     rx.await.unwrap()
/// }));
/// assert_eq!(value.unwrap(), 42);
/// // Not on a worker of the pool:
/// assert!(handle.spawn_local(async {}).is_err());
/// ```
impl futures_task::LocalSpawn for Handle {
    fn spawn_local_obj(
        &self,
        future: futures_task::LocalFutureObj<'static, ()>,
    ) -> Result<(), futures_task::SpawnError> {
        self.status_local()?;
        crate::spawn_local(future).detach();
        Ok(())
    }

    fn status_local(&self) -> Result<(), futures_task::SpawnError> {
        // A worker of this pool that can still take tasks: not in its
        // `on_thread_stop` hook, and its pool not shutting down (where
        // `spawn_local` would refuse the task).
        let ready = crate::runtime::scheduler::worker::with_current_worker(|pool, _, stopping| {
            Arc::ptr_eq(pool, &self.pool) && !stopping && pool.accepts_spawns()
        });
        if ready == Some(true) {
            Ok(())
        } else {
            Err(futures_task::SpawnError::shutdown())
        }
    }
}
