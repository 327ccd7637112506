//! [`Builder`] and [`PoolBuilder`]: how a runtime and its pools are
//! configured. Every setting is validated by [`Builder::build`]; a bad
//! value is a [`BuildError`] naming the setting, never a silent default.

use std::time::Duration;

use super::hooks::Hooks;
use super::shared::{RuntimeShared, DEFAULT_POOL};
use super::{Handle, Runtime};
use crate::blocking::{BlockingConfig, BlockingPool};
use crate::error::BuildError;
use crate::pool::{Pool, PoolConfig, NO_SHARE};
use crate::sync::Arc;
use crate::time::clock::Clock;
use crate::{Placement, Priority, RunQueue, Scheduler};

/// Upper bound on workers per pool (the idle state packs counts in 16 bits).
const MAX_WORKERS: usize = 4096;

/// Largest minimum share. A level's next fairness turn is due `share` ticks
/// ahead, and ticks are compared as signed distances modulo 2^32 (see
/// `tick_reached` and `FairTurns::earliest` in `pool::worker`), so a share
/// must stay below 2^31: one above it would read as already due (the level
/// served on every tick, ahead of High), and one of exactly 2^31 as the
/// earliest turn of all (hiding the other level's turns).
const MAX_SHARE: u32 = i32::MAX as u32;

/// Smallest thread stack size. A worker's own frames need about 100 KiB in
/// a debug build (its stack pre-warming alone touches 64 KiB); below that
/// the first task overflows the stack and the process aborts.
const MIN_STACK_SIZE: usize = 256 * 1024;

/// Largest thread stack size: a quarter of the address space. Above it the
/// C library's size arithmetic can overflow (musl rejects it, and the
/// standard library then panics instead of returning an error).
const MAX_STACK_SIZE: usize = usize::MAX / 4;

/// Default time a worker above `min_workers` stays parked before it retires.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on blocking threads (as in tokio).
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default time an idle blocking thread waits for work before it exits.
const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The settings of one pool of workers: the runtime's default pool (set
/// through [`Builder`]'s methods of the same names) or a named pool (set in
/// [`Builder::pool`]).
///
/// ```
/// use std::time::Duration;
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder()
///     .workers(2)
///     .pool("urgent", |pool| pool.workers(1).priorities([Priority::High]))
///     .pool("batch", |pool| {
///         pool.min_workers(1)
///             .max_workers(4)
///             .idle_timeout(Duration::from_secs(30))
///             .max_queued(10_000)
///     })
///     .build()
///     .unwrap();
/// let urgent = rt.handle().named_pool("urgent").unwrap();
/// assert_eq!(urgent.num_workers(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    min_workers: Option<usize>,
    max_workers: Option<usize>,
    /// Set by `workers(n)`, so errors name the setting the user wrote.
    fixed: bool,
    idle_timeout: Duration,
    thread_name: Option<String>,
    max_queued: Option<usize>,
    priorities: u8,
    /// One poll in this many for Normal and Low; `None`: strict priority.
    min_shares: [Option<u32>; Priority::COUNT],
    placement: Placement,
    pin_workers: bool,
    /// Bit `L` set: level `L`'s local queues are LIFO.
    lifo_levels: u8,
    scheduler: Option<SchedulerBox>,
    queues: [Option<QueueBox>; Priority::COUNT],
}

/// A user's [`RunQueue`], shareable by the pool's workers.
#[derive(Clone)]
struct QueueBox(Arc<dyn RunQueue>);

impl std::fmt::Debug for QueueBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunQueue")
    }
}

/// A user's [`Scheduler`], shareable by the pool's workers.
#[derive(Clone)]
struct SchedulerBox(Arc<dyn Scheduler>);

impl std::fmt::Debug for SchedulerBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

/// Default minimum shares: Normal gets one poll in 16, Low one in 64.
const DEFAULT_MIN_SHARES: [Option<u32>; Priority::COUNT] = [None, Some(16), Some(64)];

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            min_workers: None,
            max_workers: None,
            fixed: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            thread_name: None,
            max_queued: None,
            priorities: (1 << Priority::COUNT) - 1,
            min_shares: DEFAULT_MIN_SHARES,
            placement: Placement::Local,
            pin_workers: false,
            lifo_levels: 0,
            scheduler: None,
            queues: [None, None, None],
        }
    }
}

impl PoolBuilder {
    /// A fixed number of workers: `min_workers` and `max_workers` both
    /// `workers`. Zero, and more than 4096, are rejected by
    /// [`Builder::build`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.min_workers = Some(workers);
        self.max_workers = Some(workers);
        self.fixed = true;
        self
    }

    /// The fewest workers the pool runs; they start with the runtime and
    /// never retire. Default: the available parallelism, or `max_workers`
    /// if that is lower. Must be at least 1 and at most `max_workers`
    /// (and so at most 4096).
    pub fn min_workers(mut self, workers: usize) -> Self {
        self.min_workers = Some(workers);
        self.fixed = false;
        self
    }

    /// The most workers the pool runs. Default: the available parallelism,
    /// or `min_workers` if that is higher (a fixed pool). Must be at least
    /// 1 and at most 4096 (a slot per possible worker is made at start).
    ///
    /// Between `min_workers` and `max_workers` the pool grows when work
    /// waits while every worker is busy: up to the number of cores for
    /// CPU-bound work, and beyond it only to stand in for workers *blocked*
    /// in one poll for 2 ms or more (a blocking call inside a task), one new
    /// worker per blocked one. Beyond `min_workers` plus the number of cores,
    /// each further worker comes a millisecond later than the one before
    /// (at most 250 ms apart), so a flood of blocking tasks cannot explode
    /// the thread count. Added workers retire after
    /// [`idle_timeout`](Self::idle_timeout) without work. See
    /// [`Handle::num_workers`](crate::Handle::num_workers) and
    /// [`Handle::num_blocked_workers`](crate::Handle::num_blocked_workers)
    /// for what the pool does, and `Builder::on_thread_start` /
    /// `on_thread_stop` to log it.
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.max_workers = Some(workers);
        self.fixed = false;
        self
    }

    /// How long a worker above `min_workers` stays parked before it retires
    /// (default 10 s). Zero is rejected. A timeout too long to be added to
    /// the present (`Duration::MAX`, say) means added workers never retire.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Prefix of the pool's worker thread names; worker `N` is called
    /// `{name}-{N}`. Default: `multipool-worker` for the default pool,
    /// `multipool-{pool}` for a named one. An empty name, or one with a NUL
    /// byte (which no thread name can hold), is rejected by
    /// [`Builder::build`].
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = Some(name.into());
        self
    }

    /// Bounds the tasks waiting to start (spawned and not yet polled) in
    /// this pool. When the bound is reached, awaiting a
    /// [`Spawn`](crate::Spawn) waits for room, [`Spawn::try_start`]
    /// returns an error with [`SpawnError::is_full`](crate::SpawnError::is_full),
    /// [`Spawn::start`] returns a handle reporting the refusal, and
    /// [`Spawn::detach`] queues beyond the bound (see there for why).
    /// Wake-ups of tasks already started are never held back. Default:
    /// unbounded. Zero is rejected; `usize::MAX` is as good as unbounded.
    ///
    /// [`Spawn::try_start`]: crate::Spawn::try_start
    /// [`Spawn::start`]: crate::Spawn::start
    /// [`Spawn::detach`]: crate::Spawn::detach
    pub fn max_queued(mut self, max: usize) -> Self {
        self.max_queued = Some(max);
        self
    }

    /// The priorities the pool takes (default: all). A task of another
    /// priority spawned onto the pool is refused: its handle reports an
    /// error with [`is_rejected`](crate::JoinError::is_rejected). A pool
    /// that takes only [`Priority::High`] keeps its workers for urgent work.
    /// An empty set is rejected.
    pub fn priorities(mut self, priorities: impl IntoIterator<Item = Priority>) -> Self {
        self.priorities = priorities
            .into_iter()
            .fold(0, |mask, priority| mask | (1 << priority.index()));
        self
    }

    /// Guarantees `priority` at least one poll in every `one_in` polls of
    /// each worker while it has work waiting, however much more urgent work
    /// there is (default: Normal 1 in 16, Low 1 in 64). High is always
    /// served first and takes no share.
    ///
    /// [`Builder::build`] rejects a share for High, and a `one_in` of 0, of
    /// 1 (every poll: High would get none), or above `2^31 - 1` (turns are
    /// counted in ticks that wrap at `2^32`), as well as Normal and Low both
    /// at 1 in 2 (they would take every poll between them).
    ///
    /// The cost to High latency is bounded: a High task waits behind at
    /// most one such turn, and only while High work is already queued.
    ///
    /// ```
    /// use multipool::Priority;
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .min_share(Priority::Low, 10) // Low: at least 10% of the polls
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn min_share(mut self, priority: Priority, one_in: u32) -> Self {
        self.min_shares[priority.index()] = Some(one_in);
        self
    }

    /// Turns minimum shares off: levels are served in strict priority
    /// order, so a permanent flood of High work starves Normal and Low.
    pub fn strict_priority(mut self) -> Self {
        self.min_shares = [None; Priority::COUNT];
        self
    }

    /// Where new tasks start; see [`Placement`] (default
    /// [`Placement::Local`]).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Pins worker `N` to the `N`-th CPU the process may run on (modulo
    /// their number; under `taskset` or a cgroup CPU set that is not CPU
    /// `N`), so the operating system never moves it: warm caches, no
    /// migrations. Linux only; elsewhere [`Builder::build`] reports an
    /// error.
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.pin_workers = pin;
        self
    }

    /// Serves `priority`'s local queues newest first (LIFO) instead of
    /// oldest first (FIFO, the default): depth-first order for
    /// fork-join style work, where the newest task's data is the warmest.
    /// Thieves still take the oldest. Beware: in a LIFO level a task that
    /// yields runs again at once if nothing newer was queued, so same-level
    /// fairness is not guaranteed there.
    pub fn lifo(mut self, priority: Priority) -> Self {
        self.lifo_levels |= 1 << priority.index();
        self
    }

    /// Replaces the built-in policy with `scheduler`, which picks the level
    /// each worker serves next; see [`Scheduler`]. The built-in minimum
    /// shares are then off ([`PriorityFirst`](crate::PriorityFirst) has
    /// them as a `Scheduler`).
    pub fn scheduler(mut self, scheduler: impl Scheduler) -> Self {
        self.scheduler = Some(SchedulerBox(Arc::new(scheduler)));
        self
    }

    /// Replaces the pool's queues for `priority` with `queue`, shared by all
    /// its workers, which then serve that level in the queue's order; see
    /// [`RunQueue`]. Tasks pinned to a worker keep their worker's inbox.
    pub fn queue(mut self, priority: Priority, queue: impl RunQueue) -> Self {
        self.queues[priority.index()] = Some(QueueBox(Arc::new(queue)));
        self
    }

    /// Checks the settings of the pool `name`.
    fn config(
        &self,
        name: &str,
        stack_size: Option<usize>,
        prewarm: bool,
    ) -> Result<PoolConfig, BuildError> {
        let invalid = |setting: &'static str, message: String| {
            let message = if name == DEFAULT_POOL {
                message
            } else {
                format!("{message} (pool `{name}`)")
            };
            BuildError::invalid(setting, message)
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Checked first, so the error names what was set rather than the
        // `max_workers` it implies.
        if let (false, Some(min)) = (self.fixed, self.min_workers) {
            if min > MAX_WORKERS {
                return Err(invalid(
                    "min_workers",
                    format!("must be at most {MAX_WORKERS}, got {min}"),
                ));
            }
        }
        let (min, max) = match (self.min_workers, self.max_workers) {
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, min.max(cores)),
            (None, Some(max)) => (cores.min(max), max),
            (None, None) => (cores, cores),
        };
        if self.fixed {
            if max == 0 {
                return Err(invalid("workers", "must be at least 1, got 0".into()));
            }
            if max > MAX_WORKERS {
                return Err(invalid(
                    "workers",
                    format!("must be at most {MAX_WORKERS}, got {max}"),
                ));
            }
        }
        if max == 0 {
            return Err(invalid("max_workers", "must be at least 1, got 0".into()));
        }
        if max > MAX_WORKERS {
            return Err(invalid(
                "max_workers",
                format!("must be at most {MAX_WORKERS}, got {max}"),
            ));
        }
        if min == 0 {
            return Err(invalid(
                "min_workers",
                "must be at least 1 (a pool needs a worker to take its work and fire its \
                 timers), got 0"
                    .into(),
            ));
        }
        if min > max {
            return Err(invalid(
                "min_workers",
                format!("must not exceed max_workers ({max}), got {min}"),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(invalid("idle_timeout", "must be longer than zero".into()));
        }
        if self.max_queued == Some(0) {
            return Err(invalid(
                "max_queued",
                "must be at least 1 (a bound of 0 would refuse every task)".into(),
            ));
        }
        if self.priorities == 0 {
            return Err(invalid(
                "priorities",
                "must name at least one priority".into(),
            ));
        }
        if self.min_shares[Priority::High.index()].is_some() {
            return Err(invalid(
                "min_share",
                "High is always served first; a minimum share applies to Normal and Low".into(),
            ));
        }
        for share in self.min_shares.iter().flatten() {
            if *share < 2 {
                return Err(invalid(
                    "min_share",
                    format!(
                        "must be at least 2 (one poll in N; 1 would be every poll, leaving \
                         High none), got {share}"
                    ),
                ));
            }
            if *share > MAX_SHARE {
                return Err(invalid(
                    "min_share",
                    format!("must be at most {MAX_SHARE} (2^31 - 1), got {share}"),
                ));
            }
        }
        if self.min_shares[Priority::Normal.index()] == Some(2)
            && self.min_shares[Priority::Low.index()] == Some(2)
        {
            return Err(invalid(
                "min_share",
                "Normal and Low at one poll in 2 each would take every poll between them, \
                 leaving High none"
                    .into(),
            ));
        }
        if self.pin_workers && !cfg!(target_os = "linux") {
            return Err(invalid(
                "pin_workers",
                "pinning workers to cores is only supported on Linux".into(),
            ));
        }
        let thread_name = match &self.thread_name {
            Some(thread_name) if thread_name.is_empty() => {
                return Err(invalid("thread_name", "must not be empty".into()));
            }
            Some(thread_name) if thread_name.contains('\0') => {
                return Err(invalid(
                    "thread_name",
                    format!("must not contain a NUL byte, got {thread_name:?}"),
                ));
            }
            Some(thread_name) => thread_name.clone(),
            None if name == DEFAULT_POOL => "multipool-worker".to_owned(),
            None => format!("multipool-{name}"),
        };
        Ok(PoolConfig {
            name: name.into(),
            min_workers: min,
            max_workers: max,
            idle_timeout: self.idle_timeout,
            thread_name,
            stack_size,
            max_queued: self.max_queued,
            priorities: self.priorities,
            min_shares: self.min_shares.map(|share| share.unwrap_or(NO_SHARE)),
            placement: self.placement,
            pin_workers: self.pin_workers,
            lifo_levels: self.lifo_levels,
            scheduler: self.scheduler.as_ref().map(|boxed| boxed.0.clone()),
            custom_queues: self.queues.clone().map(|queue| queue.map(|boxed| boxed.0)),
            prewarm,
        })
    }
}

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
/// assert_eq!(rt.handle().num_workers(), 4);
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
        }
    }
}

impl Builder {
    /// A builder with the defaults: one worker per available core, threads
    /// named `multipool-worker-N`, the standard library's stack size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of worker threads of the default pool, fixed (default:
    /// `std::thread::available_parallelism`); see [`PoolBuilder::workers`].
    /// Zero is rejected by [`build`](Self::build).
    pub fn workers(mut self, workers: usize) -> Self {
        self.default_pool = self.default_pool.workers(workers);
        self
    }

    /// The fewest workers of the default pool; see
    /// [`PoolBuilder::min_workers`].
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .min_workers(1)
    ///     .max_workers(8)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.handle().num_workers(), 1); // grows when work waits
    /// assert_eq!(rt.handle().max_workers(), 8);
    ///
    /// let err = multipool::Runtime::builder().min_workers(4).max_workers(2).build().unwrap_err();
    /// assert_eq!(err.setting(), Some("min_workers"));
    /// ```
    pub fn min_workers(mut self, workers: usize) -> Self {
        self.default_pool = self.default_pool.min_workers(workers);
        self
    }

    /// The most workers of the default pool; see
    /// [`PoolBuilder::max_workers`] for when the pool grows.
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.default_pool = self.default_pool.max_workers(workers);
        self
    }

    /// How long a worker of the default pool above `min_workers` stays
    /// parked before it retires; see [`PoolBuilder::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.default_pool = self.default_pool.idle_timeout(timeout);
        self
    }

    /// Prefix of the default pool's worker thread names; worker `N` is
    /// called `{name}-{N}`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.default_pool = self.default_pool.thread_name(name);
        self
    }

    /// Bounds the tasks waiting to start in the default pool; see
    /// [`PoolBuilder::max_queued`].
    pub fn max_queued(mut self, max: usize) -> Self {
        self.default_pool = self.default_pool.max_queued(max);
        self
    }

    /// The priorities the default pool takes; see
    /// [`PoolBuilder::priorities`].
    pub fn priorities(mut self, priorities: impl IntoIterator<Item = Priority>) -> Self {
        self.default_pool = self.default_pool.priorities(priorities);
        self
    }

    /// Guarantees `priority` a minimum share of the default pool's polls;
    /// see [`PoolBuilder::min_share`].
    pub fn min_share(mut self, priority: Priority, one_in: u32) -> Self {
        self.default_pool = self.default_pool.min_share(priority, one_in);
        self
    }

    /// The default pool's scheduling policy; see [`PoolBuilder::scheduler`].
    pub fn scheduler(mut self, scheduler: impl Scheduler) -> Self {
        self.default_pool = self.default_pool.scheduler(scheduler);
        self
    }

    /// A user's run-queue for one level of the default pool; see
    /// [`PoolBuilder::queue`].
    pub fn queue(mut self, priority: Priority, queue: impl RunQueue) -> Self {
        self.default_pool = self.default_pool.queue(priority, queue);
        self
    }

    /// Where the default pool's new tasks start; see [`Placement`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.default_pool = self.default_pool.placement(placement);
        self
    }

    /// Pins the default pool's workers to cores; see
    /// [`PoolBuilder::pin_workers`].
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.default_pool = self.default_pool.pin_workers(pin);
        self
    }

    /// LIFO order for a level of the default pool; see [`PoolBuilder::lifo`].
    pub fn lifo(mut self, priority: Priority) -> Self {
        self.default_pool = self.default_pool.lifo(priority);
        self
    }

    /// Strict priority order in the default pool; see
    /// [`PoolBuilder::strict_priority`].
    pub fn strict_priority(mut self) -> Self {
        self.default_pool = self.default_pool.strict_priority();
        self
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
    /// while rt.handle().num_parked_workers() < 2 {
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

    /// Starts the runtime with its clock paused (see
    /// [`time::pause`](crate::time::pause)). Needs the `test-util` feature.
    #[cfg(feature = "test-util")]
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
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
        let clock = Arc::new(Clock::new(self.start_paused));
        let shared = Arc::new(RuntimeShared::new(self.hooks, clock, blocking));
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
