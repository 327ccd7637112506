//! [`Builder`]: how a runtime is configured. Every setting is validated
//! by [`Builder::build`](crate::Builder::build); a bad value is a [`BuildError`] naming the
//! setting, never a silent default. The settings of one pool are
//! [`PoolBuilder`]'s (see `pool_builder`); the builder's own methods of
//! the same names set its default pool's.

use std::time::Duration;

use super::blocking::{BlockingConfig, BlockingPool};
use super::hooks::Hooks;
use super::pool_builder::PoolBuilder;
use super::scheduler::Pool;
use super::shared::{RuntimeShared, DEFAULT_POOL};
use super::time::Clock;
use super::{Handle, Runtime};
use crate::error::BuildError;
use crate::sync::Arc;
use crate::task::{Outcome, SlowPoll, TaskInfo, UnhandledPanic};
use crate::{Placement, Priority, RunQueue, Scheduler};

/// Smallest thread stack size. A worker's own frames need about 100 KiB in
/// a debug build (its stack pre-warming alone touches 64 KiB); below that
/// the first task overflows the stack and the process aborts.
const MIN_STACK_SIZE: usize = 256 * 1024;

/// Largest thread stack size: a quarter of the address space. Above it the
/// C library's size arithmetic can overflow (musl rejects it, and the
/// standard library then panics instead of returning an error).
const MAX_STACK_SIZE: usize = usize::MAX / 4;

/// Default cap on blocking threads (as in tokio).
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default time an idle blocking thread waits for work before it exits.
const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// One poll in this many is timed for the latency histograms (see
/// `Builder::latency_sampling`). Go's runtime samples its scheduling
/// latency 1 in 8; at 1 in 16 the histograms still cost 12 to 13% on
/// `yield_many` (polls of a few nanoseconds, three time-stamp reads per
/// sample); 64 keeps that within the 10% issue #13 allows (README
/// "Performance"), and still samples ~100 000 polls a second on a worker
/// busy with such polls.
const DEFAULT_LATENCY_SAMPLING: u32 = 64;

/// Configures and builds a [`Runtime`].
///
/// The runtime's own settings ([`workers`](Self::workers),
/// [`max_queued`](Self::max_queued), ...) configure its *default pool*,
/// where tasks go unless [`Spawn::pool`](crate::Spawn::pool) names another;
/// [`pool`](Self::pool) adds named pools with settings of their own.
///
/// ```
/// let rt = multipool::Runtime::builder()
///     .workers(4)
///     .thread_name("app-worker")
///     .build()
///     .expect("valid configuration");
/// assert_eq!(rt.handle().metrics().num_workers(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    default_pool: PoolBuilder,
    pools: Vec<(String, PoolBuilder)>,
    stack_size: Option<usize>,
    start_paused: bool,
    prewarm: bool,
    pub(super) hooks: Hooks,
    max_blocking_threads: usize,
    blocking_keep_alive: Duration,
    max_blocking_queued: Option<usize>,
    histograms: bool,
    latency_sampling: u32,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            default_pool: PoolBuilder::default(),
            pools: Vec::new(),
            stack_size: None,
            start_paused: false,
            prewarm: false,
            hooks: Hooks::default(),
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            blocking_keep_alive: DEFAULT_BLOCKING_KEEP_ALIVE,
            max_blocking_queued: None,
            histograms: false,
            latency_sampling: DEFAULT_LATENCY_SAMPLING,
        }
    }
}

impl Builder {
    /// A builder with the defaults: one worker per available core, threads
    /// named `multipool-worker-N`, the standard library's stack size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named pool of workers with settings of its own, configured by
    /// `configure`. Tasks go there with [`Spawn::pool`](crate::Spawn::pool)
    /// and stay there for their whole life; a pool's workers only run its
    /// own tasks, so a flood in one pool does not delay another. Names must
    /// be unique, non-empty, free of NUL bytes (a pool's thread names are
    /// made from its name), and not `"default"` (the runtime's own pool).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .pool("cpu", |pool| pool.workers(2))
    ///     .build()
    ///     .unwrap();
    /// let on_cpu = rt.block_on(multipool::spawn(async { 2 + 2 }).pool("cpu"));
    /// assert_eq!(on_cpu.unwrap(), 4);
    /// ```
    pub fn pool(
        mut self,
        name: impl Into<String>,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder,
    ) -> Self {
        self.pools
            .push((name.into(), configure(PoolBuilder::default())));
        self
    }

    /// Stack size of the worker and blocking threads, in bytes (default:
    /// the standard library's, 2 MiB unless `RUST_MIN_STACK` says
    /// otherwise).
    ///
    /// [`build`](Self::build) rejects a size below 256 KiB (the runtime's
    /// own frames would overflow it, which aborts the process) or above
    /// `usize::MAX / 4`. A size the operating system cannot map makes
    /// `build` fail with the thread-start error it reports.
    ///
    /// ```
    /// let err = multipool::Runtime::builder().thread_stack_size(4096).build().unwrap_err();
    /// assert_eq!(err.setting(), Some("thread_stack_size"));
    /// ```
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// With `true`, [`build`](Self::build) returns only once every pool's
    /// `min_workers` threads are running and have touched their stack, so
    /// the first tasks pay no thread start-up (default `false`: `build`
    /// returns as soon as the threads are spawned).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(2).prewarm(true).build().unwrap();
    /// // Both workers are up: they park as soon as they find nothing to do.
    /// while rt.handle().metrics().num_parked_workers() < 2 {
    ///     std::thread::yield_now();
    /// }
    /// ```
    pub fn prewarm(mut self, prewarm: bool) -> Self {
        self.prewarm = prewarm;
        self
    }

    /// The most threads the blocking pool of
    /// [`spawn_blocking`](crate::task::spawn_blocking) runs at once
    /// (default 512). Zero is rejected. Threads start only when a call
    /// finds none idle, so `usize::MAX` means no cap but the load.
    pub fn max_blocking_threads(mut self, threads: usize) -> Self {
        self.max_blocking_threads = threads;
        self
    }

    /// How long an idle blocking thread waits for work before it exits
    /// (default 10 s). Zero is rejected. A keep-alive too long to be added
    /// to the present (`Duration::MAX`, say) means idle blocking threads
    /// never exit before the runtime shuts down.
    pub fn blocking_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Bounds the `spawn_blocking` calls waiting for a blocking thread;
    /// one beyond the bound is refused and its handle says so (default:
    /// unbounded). Zero is rejected; `usize::MAX` is as good as unbounded.
    pub fn max_blocking_queued(mut self, max: usize) -> Self {
        self.max_blocking_queued = Some(max);
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
    ///
    /// Right after the `on_shutdown` hooks, the runtime drops all its hooks
    /// (this one, the thread hooks, `wrap_thread`, `park_with`,
    /// `on_busy_tick`), so a hook may own what keeps the runtime alive (a
    /// reactor holding task wakers, a `Handle`) without leaking it. A
    /// `Handle::block_on` after shutdown runs without the `wrap_thread`
    /// wrappers.
    pub fn on_shutdown(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.on_shutdown.push(Arc::new(hook));
        self
    }

    /// Runs every worker thread's whole life, and every
    /// [`Runtime::block_on`](crate::Runtime::block_on)/[`Handle::block_on`] call, inside `wrapper`: the
    /// wrapper gets the body as a closure and must call it exactly once. It
    /// is how a thread-wide context (another runtime's `enter` guard, a
    /// tracing dispatcher, a thread-local arena) is set for everything the
    /// runtime runs; `multipool-compat` gives every thread a tokio context
    /// this way. Wrappers added first run outermost. On workers and in
    /// `block_on` the runtime is entered before the wrappers run, so
    /// `Handle::current()` inside a wrapper is this runtime there (a
    /// blocking-pool thread enters it at its first task, inside them).
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

    /// Lets an idle worker run `hook` instead of sleeping: the hook can
    /// drive an outside reactor (an I/O driver, say) on the worker's thread
    /// while the worker has nothing to do, so the tasks that reactor wakes
    /// land on that worker's own queues and run there, without a wake-up
    /// crossing threads. This is how `multipool-compat`'s `enable_tokio`
    /// drives tokio's I/O, the way smol's executors run inside
    /// `async_io::block_on`.
    ///
    /// The hook gets a [`Park`](crate::Park) and must return once
    /// [`Park::unparked`](crate::Park::unparked) completes (new work, an
    /// earlier timer, shutdown, or a task queued on this worker by the hook
    /// itself) or the [`Park::deadline`](crate::Park::deadline) passes,
    /// whichever comes first. Returning earlier is allowed: the worker
    /// looks for work and calls it again. [`Park::park`](crate::Park::park)
    /// sleeps the default way. Set more than once, the last hook wins.
    ///
    /// The hook runs while the worker counts as parked, so it must not run
    /// long work of its own without marking it with
    /// [`Park::mark_busy`](crate::Park::mark_busy). A panic in it is caught
    /// and printed; that worker then parks without the hook. While the
    /// clock is paused (`test-util`), workers park the default way without
    /// calling it.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let parks = Arc::new(AtomicUsize::new(0));
    /// let counter = parks.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .park_with(move |park| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///         match park.deadline() {
    ///             // Nothing to drive here that would wake us in time.
    ///             Some(_) => park.park(),
    ///             // A real hook would drive its reactor until unparked.
    ///             None => futures::executor::block_on(park.unparked()),
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let answer = rt.block_on(multipool::spawn(async {
    ///     // The worker has nothing to do meanwhile: it parks in the hook.
    ///     multipool::time::sleep(std::time::Duration::from_millis(5)).await;
    ///     6 * 7
    /// }));
    /// assert_eq!(answer.unwrap(), 42);
    /// drop(rt);
    /// assert!(parks.load(Ordering::Relaxed) > 0);
    /// ```
    pub fn park_with(mut self, hook: impl Fn(&crate::Park<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.park = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` on a busy worker between two polls: once per check of
    /// the injector, that is about every 100 µs of polling (after every poll,
    /// when polls take longer). With [`park_with`](Self::park_with) driving
    /// an outside reactor on idle workers, this lets busy workers take a
    /// non-blocking turn of it too, so its events are not left to another
    /// thread while every worker is busy. Tasks the hook wakes on this
    /// worker go to its own queues, and the worker looks at them right
    /// after. Set more than once, the last hook wins.
    ///
    /// The hook must be short and must not block. A panic in it is caught
    /// and printed; that worker then stops calling it.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let ticks = Arc::new(AtomicUsize::new(0));
    /// let counter = ticks.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .on_busy_tick(move || {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(multipool::spawn(async {
    ///     // 200 polls of 20 µs: the hook runs between some of them.
    ///     for _ in 0..200 {
    ///         let start = std::time::Instant::now();
    ///         while start.elapsed() < std::time::Duration::from_micros(20) {}
    ///         multipool::task::yield_now().await;
    ///     }
    /// }))
    /// .unwrap();
    /// drop(rt);
    /// assert!(ticks.load(Ordering::Relaxed) > 0);
    /// ```
    pub fn on_busy_tick(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.hooks.busy_tick = Some(Arc::new(hook));
        self
    }

    /// Gives each worker slot of the default pool a value of its own, made
    /// by `init(index)`, reached without a lock through
    /// [`with_worker_state`](crate::with_worker_state) by the code running
    /// on that worker; see
    /// [`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state) for
    /// when `init` runs and what a panic in it does.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .worker_state(|index| (index, 0u64)) // (worker, tasks it ran)
    ///     .build()
    ///     .unwrap();
    /// let (worker, ran) = rt
    ///     .block_on(multipool::spawn(async {
    ///         multipool::with_worker_state(|(worker, ran): &mut (usize, u64)| {
    ///             *ran += 1;
    ///             (*worker, *ran)
    ///         })
    ///     }))
    ///     .unwrap();
    /// assert!(worker < 2 && ran == 1);
    ///
    /// let err = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .worker_state(|index| if index == 1 { panic!("no shard 1") } else { index })
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), Some("worker_state"));
    /// assert!(err.to_string().contains("no shard 1"));
    /// ```
    pub fn worker_state<T: Send + 'static>(
        mut self,
        init: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Self {
        self.default_pool = self.default_pool.worker_state(init);
        self
    }

    /// Starts the runtime with its clock paused (see
    /// [`time::pause`](crate::time::pause)). Needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Records, per priority, the schedule latency (from the task's spawn
    /// or wake-up to the start of the poll) and the duration of a sample of
    /// the polls, in the histograms of [`RuntimeMetrics::schedule_latency`]
    /// and [`RuntimeMetrics::poll_time`]; the poll hooks then see both in
    /// [`TaskInfo`] for the sampled polls. Off by default.
    ///
    /// By default one wake-up (or spawn) in
    /// 64 on each thread is sampled, and the poll it leads to is timed
    /// (see [`latency_sampling`](Self::latency_sampling)): a timed poll
    /// costs three clock reads, which on a runtime whose polls take tens
    /// of nanoseconds would add half to each; sampled, the histograms cost
    /// a few percent. Percentiles and the mean estimate those of every
    /// poll; [`Histogram::count`] counts the sampled polls.
    ///
    /// [`RuntimeMetrics::schedule_latency`]: crate::RuntimeMetrics::schedule_latency
    /// [`RuntimeMetrics::poll_time`]: crate::RuntimeMetrics::poll_time
    /// [`Histogram::count`]: crate::Histogram::count
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .enable_latency_histograms()
    ///     .latency_sampling(1) // every poll, for the exact count below
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(multipool::spawn(async {})).unwrap();
    /// let polls = rt.handle().metrics().poll_time(multipool::Priority::Normal).unwrap();
    /// assert_eq!(polls.count(), 1);
    /// ```
    pub fn enable_latency_histograms(mut self) -> Self {
        self.histograms = true;
        self
    }

    /// With [`enable_latency_histograms`](Self::enable_latency_histograms):
    /// time one poll in `one_in` (default 64). Each thread that wakes or
    /// spawns tasks samples every `one_in`-th of its wake-ups and spawns;
    /// the poll that follows a sampled one is timed and recorded. `1` times
    /// every poll (exact counts, for tests, at the full cost). Zero is
    /// refused by [`build`](Self::build); without histograms the setting
    /// does nothing.
    ///
    /// ```
    /// let err = multipool::Runtime::builder()
    ///     .enable_latency_histograms()
    ///     .latency_sampling(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), Some("latency_sampling"));
    /// ```
    pub fn latency_sampling(mut self, one_in: u32) -> Self {
        self.latency_sampling = one_in;
        self
    }

    /// Calls `hook` for every task spawned on the runtime (blocking and
    /// local tasks included), once, before the task can be polled, on the
    /// spawning thread. See [`TaskInfo`] for what it learns, and the example
    /// there. A panic in the hook is caught and printed; the task runs
    /// anyway. Setting it again replaces the hook.
    pub fn on_task_spawn(mut self, hook: impl Fn(&TaskInfo<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.task.spawn = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` once for every task when it ends, after its future was
    /// dropped, with the [`Outcome`]; on the thread that ran it last (a
    /// task cancelled at shutdown: the thread that shut the runtime down).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use multipool::task::Outcome;
    ///
    /// let ended = Arc::new(Mutex::new(Vec::new()));
    /// let seen = ended.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .on_task_terminate(move |_, outcome| seen.lock().unwrap().push(outcome))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     multipool::spawn(async {}).await.unwrap();
    ///     let stuck = multipool::spawn(std::future::pending::<()>()).start();
    ///     stuck.abort();
    ///     let _ = stuck.await;
    /// });
    /// assert_eq!(*ended.lock().unwrap(), [Outcome::Completed, Outcome::Cancelled]);
    /// ```
    pub fn on_task_terminate(
        mut self,
        hook: impl Fn(&TaskInfo<'_>, Outcome) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.task.terminate = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` before every poll of every task, on the polling thread.
    /// With [`enable_latency_histograms`](Self::enable_latency_histograms),
    /// [`TaskInfo::schedule_latency`] is set for the sampled polls (every
    /// poll with [`latency_sampling(1)`](Self::latency_sampling)). Keep it
    /// short: it runs on the hot path.
    pub fn on_before_task_poll(
        mut self,
        hook: impl Fn(&TaskInfo<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.task.before_poll = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` after every poll of every task, on the polling thread
    /// (also after a poll that panicked). With
    /// [`enable_latency_histograms`](Self::enable_latency_histograms),
    /// [`TaskInfo::poll_time`] is set for the sampled polls (as
    /// `schedule_latency` in [`on_before_task_poll`](Self::on_before_task_poll)).
    pub fn on_after_task_poll(
        mut self,
        hook: impl Fn(&TaskInfo<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.task.after_poll = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` when a task's poll panics, with the panic's message,
    /// before the panic is handed to the task's
    /// [`JoinHandle`](crate::JoinHandle). This is where the panic of a
    /// detached task, which nobody awaits, can be reported.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// let panics = Arc::new(Mutex::new(Vec::new()));
    /// let seen = panics.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .on_task_panic(move |task, message| {
    ///         seen.lock().unwrap().push(format!("{}: {message}", task.name().unwrap_or("?")));
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let result = rt.block_on(multipool::spawn(async { panic!("boom") }).name("job"));
    /// assert!(result.unwrap_err().is_panic());
    /// assert_eq!(*panics.lock().unwrap(), ["job: boom"]);
    /// ```
    pub fn on_task_panic(
        mut self,
        hook: impl Fn(&TaskInfo<'_>, &str) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.task.panic = Some(Arc::new(hook));
        self
    }

    /// What the runtime does when a task panics (default:
    /// [`UnhandledPanic::Ignore`]); as tokio's `unhandled_panic`.
    ///
    /// ```
    /// use multipool::task::UnhandledPanic;
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .unhandled_panic(UnhandledPanic::ShutdownRuntime)
    ///     .build()
    ///     .unwrap();
    /// let stuck = rt.spawn(std::future::pending::<()>()).start();
    /// let panicked = rt.block_on(rt.spawn(async { panic!("fatal") }));
    /// assert!(panicked.unwrap_err().is_panic());
    /// // The runtime shut down: the other task was cancelled.
    /// assert!(rt.block_on(stuck).unwrap_err().is_shutdown());
    /// assert!(rt.handle().is_shutdown());
    /// ```
    pub fn unhandled_panic(mut self, policy: UnhandledPanic) -> Self {
        self.hooks.task.unhandled_panic = policy;
        self
    }

    /// Reports a task whose single poll has lasted `threshold` or longer,
    /// while it is still stuck in it: `hook` runs on the pool's monitor
    /// thread with the task's id, name, priority and worker (see
    /// [`SlowPoll`]), once per slow poll. Every pool with this hook gets a
    /// monitor thread (elastic pools have one anyway); it looks every
    /// millisecond while all workers are busy, every 10 ms otherwise, and
    /// at least every `threshold / 2`, so a report comes within about
    /// that much after the threshold.
    ///
    /// A zero threshold is rejected by [`build`](Self::build).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = mpsc::sync_channel(1);
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .on_slow_poll(Duration::from_millis(20), move |slow| {
    ///         let _ = tx.try_send(slow.name().map(String::from));
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let (release, stuck) = mpsc::channel::<()>();
    /// let task = rt
    ///     .spawn(async move {
    ///         // A blocking call inside a task: the poll is stuck until released.
    ///         let _ = stuck.recv();
    ///     })
    ///     .name("stuck")
    ///     .start();
    /// assert_eq!(rx.recv().unwrap().as_deref(), Some("stuck")); // still stuck here
    /// release.send(()).unwrap();
    /// rt.block_on(task).unwrap();
    /// ```
    pub fn on_slow_poll(
        mut self,
        threshold: Duration,
        hook: impl Fn(&SlowPoll) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.task.slow_poll = Some((threshold, Arc::new(hook)));
        self
    }

    /// Checks the settings and starts the runtime's workers.
    ///
    /// # Errors
    ///
    /// A setting the runtime cannot work with (zero workers, `min_workers`
    /// above `max_workers`, a zero timeout or bound, a minimum share out of
    /// range, an empty, duplicate or NUL-holding name, a stack too small or
    /// too large, ...): [`BuildError::setting`] names it. Or the operating
    /// system refusing to start a thread (`setting()` is then `None` and
    /// the error's `source` is the `io::Error`). Building never panics on a
    /// setting; the README's "Guarantees → Bad input" table lists what each
    /// setting accepts.
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
        if self.latency_sampling == 0 {
            return Err(BuildError::invalid(
                "latency_sampling",
                "must be at least 1 (1 times every poll), got 0",
            ));
        }
        if let Some(size) = self.stack_size {
            if size < MIN_STACK_SIZE {
                return Err(BuildError::invalid(
                    "thread_stack_size",
                    format!(
                        "must be at least {MIN_STACK_SIZE} bytes (a worker's own frames would \
                         overflow a smaller stack), got {size}"
                    ),
                ));
            }
            if size > MAX_STACK_SIZE {
                return Err(BuildError::invalid(
                    "thread_stack_size",
                    format!("must be at most {MAX_STACK_SIZE} bytes (usize::MAX / 4), got {size}"),
                ));
            }
        }
        let mut configs =
            vec![self
                .default_pool
                .config(DEFAULT_POOL, self.stack_size, self.prewarm)?];
        for (index, (name, pool)) in self.pools.iter().enumerate() {
            if name.is_empty() {
                return Err(BuildError::invalid("pool", "a pool name must not be empty"));
            }
            if name.contains('\0') {
                return Err(BuildError::invalid(
                    "pool",
                    format!("a pool name must not contain a NUL byte, got {name:?}"),
                ));
            }
            if name == DEFAULT_POOL || self.pools[..index].iter().any(|(other, _)| other == name) {
                return Err(BuildError::invalid(
                    "pool",
                    format!("there is already a pool named `{name}`"),
                ));
            }
            configs.push(pool.config(name, self.stack_size, self.prewarm)?);
        }
        if self.max_blocking_threads == 0 {
            return Err(BuildError::invalid(
                "max_blocking_threads",
                "must be at least 1, got 0",
            ));
        }
        if self.blocking_keep_alive.is_zero() {
            return Err(BuildError::invalid(
                "blocking_keep_alive",
                "must be longer than zero",
            ));
        }
        if self
            .hooks
            .task
            .slow_poll
            .as_ref()
            .is_some_and(|(threshold, _)| threshold.is_zero())
        {
            return Err(BuildError::invalid(
                "on_slow_poll",
                "the threshold must be longer than zero (every poll would be slow)",
            ));
        }
        if self.max_blocking_queued == Some(0) {
            return Err(BuildError::invalid(
                "max_blocking_queued",
                "must be at least 1 (a bound of 0 would refuse every call)",
            ));
        }
        let blocking = BlockingPool::new(BlockingConfig {
            max_threads: self.max_blocking_threads,
            keep_alive: self.blocking_keep_alive,
            max_queued: self.max_blocking_queued,
            thread_name: format!("{}-blocking", configs[0].thread_name),
            stack_size: self.stack_size,
        });
        if self.histograms {
            // Calibrated here, not in the first poll.
            super::metrics::calibrate_clock();
        }
        let clock = Arc::new(Clock::new(self.start_paused));
        let shared = Arc::new(RuntimeShared::new(
            self.hooks,
            self.histograms.then_some(self.latency_sampling),
            clock,
            blocking,
        ));
        let mut pools: Vec<Arc<Pool>> = Vec::with_capacity(configs.len());
        for config in configs {
            match Pool::start(config, shared.clone()) {
                Ok(pool) => pools.push(pool),
                Err(err) => {
                    for pool in &pools {
                        pool.shutdown();
                    }
                    return Err(err);
                }
            }
        }
        shared.set_pools(&pools);
        Ok(Runtime {
            handle: Handle::from_pool(pools[0].clone()),
            pools,
            shut_down: false,
        })
    }
}

/// Generates [`Builder`]'s settings of its default pool: each forwards to
/// the [`PoolBuilder`] method of the same name, so the two cannot drift.
macro_rules! default_pool_settings {
    ($($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),*);)*) => {
        impl Builder {
            $(
                $(#[$attr])*
                pub fn $name(mut self, $($arg: $ty),*) -> Self {
                    self.default_pool = self.default_pool.$name($($arg),*);
                    self
                }
            )*
        }
    };
}

default_pool_settings! {
    /// Number of worker threads of the default pool, fixed (default:
    /// `std::thread::available_parallelism`); see [`PoolBuilder::workers`](crate::PoolBuilder::workers).
    /// Zero is rejected by [`build`](Self::build).
    fn workers(workers: usize);

    /// The fewest workers of the default pool; see
    /// [`PoolBuilder::min_workers`](crate::PoolBuilder::min_workers).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .min_workers(1)
    ///     .max_workers(8)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.handle().metrics().num_workers(), 1); // grows when work waits
    /// assert_eq!(rt.handle().metrics().max_workers(), 8);
    ///
    /// let err = multipool::Runtime::builder().min_workers(4).max_workers(2).build().unwrap_err();
    /// assert_eq!(err.setting(), Some("min_workers"));
    /// ```
    fn min_workers(workers: usize);

    /// The most workers of the default pool; see
    /// [`PoolBuilder::max_workers`](crate::PoolBuilder::max_workers) for when the pool grows.
    fn max_workers(workers: usize);

    /// How long a worker of the default pool above `min_workers` stays
    /// parked before it retires; see [`PoolBuilder::idle_timeout`](crate::PoolBuilder::idle_timeout).
    fn idle_timeout(timeout: Duration);

    /// How long a worker of the default pool that ran out of work keeps
    /// looking, yielding its core between looks, before it parks (default:
    /// 15 µs; zero parks at once); see
    /// [`PoolBuilder::search_spin`](crate::PoolBuilder::search_spin) for the trade-off.
    fn search_spin(spin: Duration);

    /// Prefix of the default pool's worker thread names; worker `N` is
    /// called `{name}-{N}`.
    fn thread_name(name: impl Into<String>);

    /// Bounds the tasks waiting to start in the default pool; see
    /// [`PoolBuilder::max_queued`](crate::PoolBuilder::max_queued).
    fn max_queued(max: usize);

    /// The priorities the default pool takes; see
    /// [`PoolBuilder::priorities`](crate::PoolBuilder::priorities).
    fn priorities(priorities: impl IntoIterator<Item = Priority>);

    /// Guarantees `priority` a minimum share of the default pool's polls;
    /// see [`PoolBuilder::min_share`](crate::PoolBuilder::min_share).
    fn min_share(priority: Priority, one_in: u32);

    /// The default pool's scheduling policy; see [`PoolBuilder::scheduler`](crate::PoolBuilder::scheduler).
    fn scheduler(scheduler: impl Scheduler);

    /// A user's run-queue for one level of the default pool; see
    /// [`PoolBuilder::queue`](crate::PoolBuilder::queue).
    fn queue(priority: Priority, queue: impl RunQueue);

    /// Where the default pool's new tasks start; see [`Placement`].
    fn placement(placement: Placement);

    /// Pins the default pool's workers to cores; see
    /// [`PoolBuilder::pin_workers`](crate::PoolBuilder::pin_workers).
    fn pin_workers(pin: bool);

    /// LIFO order for a level of the default pool; see [`PoolBuilder::lifo`](crate::PoolBuilder::lifo).
    fn lifo(priority: Priority);

    /// Strict priority order in the default pool; see
    /// [`PoolBuilder::strict_priority`](crate::PoolBuilder::strict_priority).
    fn strict_priority();

    /// Rate-limits every task spawned on the default pool; see
    /// [`PoolBuilder::rate_limit`](crate::PoolBuilder::rate_limit).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::Quota;
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .rate_limit(Quota::per_second(NonZeroU32::new(500).unwrap()))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
    /// ```
    fn rate_limit(quota: crate::limit::Quota);
}
