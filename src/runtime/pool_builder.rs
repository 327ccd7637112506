//! [`PoolBuilder`]: the settings of one pool of workers, and their
//! validation into the scheduler's `PoolConfig`.

use std::time::Duration;

use super::scheduler::worker::StateInit;
use super::scheduler::{PoolConfig, NO_SHARE};
use super::shared::DEFAULT_POOL;
use crate::error::BuildError;
use crate::limit::Quota;
use crate::priority::{LevelSet, PerLevel};
use crate::sync::Arc;
use crate::{Placement, Priority, RunQueue, Scheduler};

/// Upper bound on workers per pool (the idle state packs counts in 16 bits).
const MAX_WORKERS: usize = 4096;

/// Largest minimum share. A level's next fairness turn is due `share` ticks
/// ahead, and ticks are compared as signed distances modulo 2^32 (see
/// `tick_reached` and `FairTurns::earliest` in `scheduler::worker`), so a
/// share must stay below 2^31: one above it would read as already due (the
/// level served on every tick, ahead of High), and one of exactly 2^31 as
/// the earliest turn of all (hiding the other level's turns).
const MAX_SHARE: u32 = i32::MAX as u32;

/// Default time a worker above `min_workers` stays parked before it retires.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`PoolBuilder::search_spin`]; see there for the trade-off and
/// the README's performance section for the measurements it was chosen
/// from.
const DEFAULT_SEARCH_SPIN: Duration = Duration::from_micros(15);

/// Longest [`PoolBuilder::search_spin`]: a park and unpark costs tens of
/// microseconds, so spinning longer than this never pays for itself; it
/// only burns a core.
const MAX_SEARCH_SPIN: Duration = Duration::from_millis(1);

/// The settings of one pool of workers: the runtime's default pool (set
/// through [`Builder`](crate::Builder)'s methods of the same names) or a named pool (set in
/// [`Builder::pool`](crate::Builder::pool)).
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
/// assert_eq!(urgent.metrics().num_workers(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    min_workers: Option<usize>,
    max_workers: Option<usize>,
    /// Set by `workers(n)`, so errors name the setting the user wrote.
    fixed: bool,
    idle_timeout: Duration,
    search_spin: Duration,
    thread_name: Option<String>,
    max_queued: Option<usize>,
    priorities: LevelSet,
    /// One poll in this many for Normal and Low; `None`: strict priority.
    min_shares: PerLevel<Option<u32>>,
    placement: Placement,
    pin_workers: bool,
    /// Bit `L` set: level `L`'s local queues are LIFO.
    lifo_levels: LevelSet,
    scheduler: Option<SchedulerBox>,
    queues: PerLevel<Option<QueueBox>>,
    rate_limit: Option<Quota>,
    worker_state: Option<StateInit>,
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
const DEFAULT_MIN_SHARES: PerLevel<Option<u32>> = [None, Some(16), Some(64)];

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            min_workers: None,
            max_workers: None,
            fixed: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            search_spin: DEFAULT_SEARCH_SPIN,
            thread_name: None,
            max_queued: None,
            priorities: LevelSet::ALL,
            min_shares: DEFAULT_MIN_SHARES,
            placement: Placement::Local,
            pin_workers: false,
            lifo_levels: LevelSet::EMPTY,
            scheduler: None,
            queues: [None, None, None],
            rate_limit: None,
            worker_state: None,
        }
    }
}

impl PoolBuilder {
    /// A fixed number of workers: `min_workers` and `max_workers` both
    /// `workers`. Zero, and more than 4096, are rejected by
    /// [`Builder::build`](crate::Builder::build).
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
    /// [`RuntimeMetrics::num_workers`](crate::RuntimeMetrics::num_workers) and
    /// [`RuntimeMetrics::num_blocked_workers`](crate::RuntimeMetrics::num_blocked_workers)
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

    /// How long a worker that ran out of work keeps looking for more before
    /// it parks. The default is 15 µs; zero makes it look once and park, as
    /// tokio's workers do. Longer than 1 ms is rejected by
    /// [`Builder::build`](crate::Builder::build).
    ///
    /// Between two looks the worker yields its core to the OS
    /// (`sched_yield`), so a thread that wants the core, a client on the
    /// same machine or a producer, runs at once; with none, the yield
    /// returns within a microsecond or so, and the worker waits a few
    /// microseconds more on pause hints before it looks again (each look
    /// reads the lines producers write).
    ///
    /// The trade-off: while a worker looks, producers skip the `futex`
    /// wake-up, and the worker picks new work up within microseconds
    /// instead of after a wake-up (tens of microseconds on a VM), which
    /// helps a lightly loaded server, a stream of spawns from outside the
    /// pool and chains of tasks that hop between workers. The cost is a
    /// core busy in system calls for up to that long each time the pool
    /// runs dry, and a request that arrives just after the worker gave up
    /// waits for the full wake-up. Measured on a 2-vCPU machine against 0
    /// (the README's "`search_spin`: the idle-latency trade-off" has the
    /// runs): the hyper bench's idle p99 from 1.00–1.08× tokio's to 0.57–0.78×,
    /// `spawn_many_remote_idle` −32%, `chained_spawn` and `ping_pong` −4%,
    /// the other workloads of `rt_multi_threaded` within noise. (Spinning
    /// on the core with pause hints instead of yielding it took that p99 to
    /// 1.5–1.7× tokio's: the spinner held the core the client needed.)
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(2)
    ///     .search_spin(Duration::ZERO) // park as soon as the queues are empty
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    ///
    /// let err = multipool::Runtime::builder()
    ///     .search_spin(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), Some("search_spin"));
    /// ```
    pub fn search_spin(mut self, spin: Duration) -> Self {
        self.search_spin = spin;
        self
    }

    /// Prefix of the pool's worker thread names; worker `N` is called
    /// `{name}-{N}`. Default: `multipool-worker` for the default pool,
    /// `multipool-{pool}` for a named one. An empty name, or one with a NUL
    /// byte (which no thread name can hold), is rejected by
    /// [`Builder::build`](crate::Builder::build).
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
        self.priorities = priorities.into_iter().collect();
        self
    }

    /// Guarantees `priority` at least one poll in every `one_in` polls of
    /// each worker while it has work waiting, however much more urgent work
    /// there is (default: Normal 1 in 16, Low 1 in 64). High is always
    /// served first and takes no share.
    ///
    /// [`Builder::build`](crate::Builder::build) rejects a share for High, and a `one_in` of 0, of
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
    /// migrations. Linux only; elsewhere [`Builder::build`](crate::Builder::build) reports an
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
        self.lifo_levels = self.lifo_levels.with(priority);
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

    /// Rate-limits the pool: every task spawned on it (with
    /// [`Spawn`](crate::Spawn), [`Handle::spawn_batch`](crate::Handle::spawn_batch)
    /// or [`spawn_local`](crate::spawn_local)) first takes a cell of one
    /// [`RateLimiter`](crate::limit::RateLimiter) of `quota`, shared by the
    /// pool, in priority order; see [`limit`](crate::limit) for how tasks
    /// wait (parked, on the runtime's timer and clock). Default: no limit.
    /// A quota is never zero ([`Quota`]'s counts are `NonZeroU32`), so
    /// there is nothing to reject.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::Quota;
    ///
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .pool("api", |pool| {
    ///         pool.workers(1)
    ///             .rate_limit(Quota::per_second(NonZeroU32::new(1000).unwrap()))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let ok = rt.block_on(multipool::spawn(async { "called" }).pool("api"));
    /// assert_eq!(ok.unwrap(), "called");
    /// ```
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = Some(quota);
        self
    }

    /// Gives each worker slot of the pool a value of its own, made by
    /// `init(index)`, that code running on that worker reaches without a
    /// lock through [`with_worker_state`](crate::with_worker_state) (see
    /// there, with [`Spawn::key`](crate::Spawn::key) for per-key state).
    ///
    /// `init` runs once per slot, for slots `0..max_workers` in order, on
    /// the thread calling [`Builder::build`](crate::Builder::build), before
    /// any worker starts (so keep it cheap in an elastic pool with many
    /// slots). A slot keeps its value across its worker's retirement and
    /// restart; it is dropped with the runtime. A panic in `init` fails
    /// the build with a [`BuildError`] whose `setting()` is
    /// `"worker_state"`. Set again, the last one wins.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .pool("io", |pool| pool.workers(2).worker_state(|index| format!("io shard {index}")))
    ///     .build()
    ///     .unwrap();
    /// let shard = rt
    ///     .block_on(
    ///         multipool::spawn(async { multipool::with_worker_state(|name: &mut String| name.clone()) })
    ///             .pool("io")
    ///             .worker(1),
    ///     )
    ///     .unwrap();
    /// assert_eq!(shard, "io shard 1");
    /// ```
    pub fn worker_state<T: Send + 'static>(
        mut self,
        init: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Self {
        self.worker_state = Some(StateInit::new(init));
        self
    }

    /// Checks the settings of the pool `name`.
    pub(super) fn config(
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
        if self.priorities.is_empty() {
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
        if self.search_spin > MAX_SEARCH_SPIN {
            return Err(invalid(
                "search_spin",
                format!(
                    "must be at most 1 ms (longer spins only burn a core), got {:?}",
                    self.search_spin
                ),
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
            search_spin: self.search_spin,
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
            rate_limit: self.rate_limit,
            worker_state: self.worker_state.clone(),
        })
    }
}
