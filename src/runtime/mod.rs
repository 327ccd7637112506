//! [`Runtime`], its [`Builder`] and its [`Handle`].
//!
//! A runtime owns a pool of worker threads (see `pool`). Dropping the
//! `Runtime` shuts the pool down: workers stop, and every task that has not
//! completed is dropped, its handle reporting a shutdown error. `Handle`s
//! outlive the runtime safely: spawning through one afterwards yields a task
//! whose handle reports the shutdown at once.

mod block_on;
pub(crate) mod context;
mod global;
pub(crate) mod hooks;

pub use block_on::block_on;

pub use context::EnterGuard;

use std::fmt;
use std::future::{Future, IntoFuture};

use crate::error::{BuildError, TryCurrentError};
use crate::pool::{Pool, PoolConfig};
use crate::sync::Arc;
use crate::task::Spawn;
use hooks::Hooks;

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = multipool::Runtime::builder()
///     .workers(4)
///     .thread_name("app-worker")
///     .build()
///     .expect("valid configuration");
/// assert_eq!(rt.handle().num_workers(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    thread_name: String,
    stack_size: Option<usize>,
    start_paused: bool,
    hooks: Hooks,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            thread_name: "multipool-worker".to_owned(),
            stack_size: None,
            start_paused: false,
            hooks: Hooks::default(),
        }
    }
}

impl Builder {
    /// A builder with the defaults: one worker per available core, threads
    /// named `multipool-worker-N`, the standard library's stack size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker threads (default: `std::thread::available_parallelism`).
    /// Zero is rejected by [`build`](Self::build).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Prefix of the worker threads' names; worker `N` is called `{name}-{N}`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Stack size of the worker threads, in bytes.
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the runtime with its clock paused (see
    /// [`time::pause`](crate::time::pause)). Needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Runs `hook` on every worker thread as it starts, before it takes its
    /// first task; [`multipool::worker_index`](crate::worker_index) tells
    /// which worker it is. A panic in the hook is caught and printed.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let counter = started.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .on_thread_start(move || {
    ///         assert!(multipool::worker_index().is_some());
    ///         counter.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// drop(rt); // joins the workers, so both have started
    /// assert_eq!(started.load(Ordering::SeqCst), 2);
    /// ```
    pub fn on_thread_start(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.on_thread_start.push(Arc::new(hook));
        self
    }

    /// Runs `hook` on every worker thread after its last task, as it stops
    /// (runtime shut down, or the worker retired). A panic in the hook is
    /// caught and printed.
    pub fn on_thread_stop(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.on_thread_stop.push(Arc::new(hook));
        self
    }

    /// Runs `hook` once the runtime has shut down: its workers stopped and
    /// every unfinished task cancelled. Runs on the thread that shuts the
    /// runtime down (the one dropping it, usually).
    pub fn on_shutdown(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.on_shutdown.push(Arc::new(hook));
        self
    }

    /// Runs every worker thread's whole life, and every
    /// [`Runtime::block_on`]/[`Handle::block_on`] call, inside `wrapper`: the
    /// wrapper gets the body as a closure and must call it exactly once. It
    /// is how a thread-wide context (another runtime's `enter` guard, a
    /// tracing dispatcher, a thread-local arena) is set for everything the
    /// runtime runs; `multipool-compat` gives every thread a tokio context
    /// this way. Wrappers added first run outermost.
    ///
    /// # Panics
    ///
    /// A wrapper that returns without calling its body makes the thread (or
    /// the `block_on`) panic with a message naming this hook.
    ///
    /// ```
    /// use std::cell::Cell;
    ///
    /// thread_local!(static IN_APP: Cell<bool> = const { Cell::new(false) });
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .wrap_thread(|body| {
    ///         IN_APP.with(|flag| flag.set(true));
    ///         body();
    ///         IN_APP.with(|flag| flag.set(false));
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let seen = rt.block_on(async {
    ///     let on_worker = multipool::spawn(async { IN_APP.with(Cell::get) }).await.unwrap();
    ///     (IN_APP.with(Cell::get), on_worker)
    /// });
    /// assert_eq!(seen, (true, true));
    /// ```
    pub fn wrap_thread(
        mut self,
        wrapper: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.wrap_thread.push(Arc::new(wrapper));
        self
    }

    /// Starts the runtime's workers.
    ///
    /// # Errors
    ///
    /// `workers(0)`, an empty thread name, or the operating system refusing
    /// to start a thread.
    ///
    /// ```
    /// let err = multipool::Runtime::builder().workers(0).build().unwrap_err();
    /// assert_eq!(err.setting(), Some("workers"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid runtime setting `workers`: must be at least 1, got 0"
    /// );
    /// ```
    pub fn build(self) -> Result<Runtime, BuildError> {
        let workers = match self.workers {
            Some(0) => return Err(BuildError::invalid("workers", "must be at least 1, got 0")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if workers > MAX_WORKERS {
            return Err(BuildError::invalid(
                "workers",
                format!("must be at most {MAX_WORKERS}, got {workers}"),
            ));
        }
        if self.thread_name.is_empty() {
            return Err(BuildError::invalid("thread_name", "must not be empty"));
        }
        let pool = Pool::start(PoolConfig {
            workers,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            start_paused: self.start_paused,
            hooks: Arc::new(self.hooks),
        })?;
        Ok(Runtime {
            handle: Handle { pool },
        })
    }
}

/// Upper bound on workers per pool (the idle state packs counts in 16 bits).
const MAX_WORKERS: usize = 4096;

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
    handle: Handle,
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
}

impl Drop for Runtime {
    /// Stops the workers and cancels every unfinished task; see the module
    /// docs. Waits for tasks that are being polled to return from `poll`.
    fn drop(&mut self) {
        self.handle.pool.shutdown();
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
            .hooks
            .wrapped(|| block_on::block_on_in(future, &self.pool))
    }

    /// Number of worker threads.
    pub fn num_workers(&self) -> usize {
        self.pool.num_workers()
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

    /// Whether the runtime has shut down; spawns then fail with a shutdown
    /// error on their handle.
    pub fn is_shutdown(&self) -> bool {
        self.pool.is_closed()
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
