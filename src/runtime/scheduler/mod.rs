//! The scheduler: a pool of worker threads with per-priority run-queues
//! and work stealing. `runtime` holds one pool per named pool of a runtime.
//!
//! This file holds the [`Pool`] struct and its invariants; each concern
//! lives in a file of its own:
//!
//! | file | concern |
//! |---|---|
//! | `admission` | whether a new task is taken; the bounded queue |
//! | `push` | routing a scheduled task; the push protocol against shutdown |
//! | `queues` | the shared queues as workers read them; the level hint |
//! | `worker` | a worker thread: finding, running and stealing work, parking |
//! | `idle` | who is parked, who searches, whom to wake |
//! | `park` | the park hook (`Builder::park_with`) |
//! | `hold` | wake-ups held while another executor's task runs (`HoldWakes`) |
//! | `lifecycle` | starting and retiring workers; shutdown |
//! | `monitor` | the thread that grows an elastic pool |
//! | `counters` | tasks and workers counted, and the gauges |
//! | `placement` | where a new task starts; pinned and placed tasks |
//! | `registry` | tasks that wait for a wake-up, found at shutdown |
//! | `policy`, `run_queue` | a user's `Scheduler` and `RunQueue` |
//! | `os` | pinning to a core, timer slack (the `unsafe` calls) |
//!
//! # Queues
//!
//! Every worker owns one FIFO run-queue per [`Priority`] level plus a one-task
//! "LIFO slot"; the pool owns one injector per level for work that arrives
//! from outside its workers; each worker slot has an inbox of tasks placed
//! on it or pinned to it (see `placement`).
//!
//! # Invariants
//!
//! * Every queued task is reachable by every worker that may run it: local
//!   queues can be stolen from, the injector is shared, a placed task can
//!   be stolen from its inbox; a pinned task is run by its home worker,
//!   which is woken by name. The LIFO slot is the one exception; it holds a
//!   single task only while a task runs, and is emptied (run, or pushed to
//!   its queue) before the worker looks for its next task, so a worker
//!   cannot hoard work there.
//! * No wake-up is lost between "a task was queued" and "a worker parks"; see
//!   [`idle`] for the protocol.
//! * No task is stranded by shutdown: a push into a queue that shutdown
//!   drains follows the push protocol (see `push`).
//! * Once `closed` is set, workers finish the poll in progress (and may
//!   start at most the one they had already picked) and then stop; every
//!   task left is run once more with its cancel reason set, which drops its
//!   future and completes its handle with a shutdown error (see
//!   `lifecycle`).

mod admission;
pub(crate) mod counters;
mod hold;
mod idle;
mod lifecycle;
pub(crate) mod monitor;
mod os;
pub(crate) mod park;
pub(crate) mod placement;
pub(crate) mod policy;
mod push;
mod queues;
pub(crate) mod registry;
pub(crate) mod run_queue;
pub(crate) mod worker;

pub(crate) use admission::Admission;
pub use hold::HoldWakes;
pub(crate) use placement::Home;
pub use placement::Placement;
pub use policy::{PriorityFirst, Scheduler, SchedulerContext, WeightedFair};
pub use run_queue::{QueuedTask, RunQueue};

use std::thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer, Worker as Deque};
use crossbeam_utils::CachePadded;
use event_listener::Event;

use crate::error::BuildError;
use crate::priority::{LevelSet, PerLevel};
use crate::runtime::shared::RuntimeShared;
use crate::runtime::task::{Observe, Runnable};
use crate::runtime::time::Timers;
use crate::sync::{
    Arc, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, OnceLock, Ordering, RtMutex as Mutex,
};
use crate::Priority;
use admission::QueueBound;
use counters::Counters;
use idle::Idle;
use placement::Inbox;
use registry::Registry;

/// `min_shares` entry of a level without a minimum share.
pub(crate) const NO_SHARE: u32 = u32::MAX;

/// What a pool is built from; validated by the runtime builder.
pub(crate) struct PoolConfig {
    pub(crate) name: Box<str>,
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) idle_timeout: Duration,
    /// How long a worker out of work spins before it parks.
    pub(crate) search_spin: Duration,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) max_queued: Option<usize>,
    /// The levels the pool takes tasks of.
    pub(crate) priorities: LevelSet,
    /// Per level: a poll at least every this many ticks while it has work,
    /// or `NO_SHARE` (see `worker`).
    pub(crate) min_shares: PerLevel<u32>,
    pub(crate) placement: Placement,
    pub(crate) pin_workers: bool,
    /// The levels whose local queues are LIFO.
    pub(crate) lifo_levels: LevelSet,
    pub(crate) scheduler: Option<Arc<dyn Scheduler>>,
    /// Per level: a user's run-queue replacing the pool's queues.
    pub(crate) custom_queues: PerLevel<Option<Arc<dyn RunQueue>>>,
    pub(crate) prewarm: bool,
    /// `PoolBuilder::rate_limit`: every task spawned on the pool passes it.
    pub(crate) rate_limit: Option<crate::limit::Quota>,
    /// The user's worker-local state, made for every slot at start.
    pub(crate) worker_state: Option<worker::StateInit>,
}

/// The shared side of one worker: what other threads use to reach it.
struct Slot {
    /// Steal ends of the worker's per-level queues.
    stealers: PerLevel<Stealer<Runnable>>,
    unparker: park::WorkerUnparker,
    /// The waker of the park hook's `Unparked` future, if the runtime has a
    /// park hook.
    hook_waker: Option<Arc<park::HookWaker>>,
    /// Bumped before and after every `run_task`: odd while the worker polls.
    /// The monitor reads it to find workers stuck in one poll.
    activity: CachePadded<AtomicU64>,
    /// The task the worker polls (or polled last), published only in pools
    /// that report slow polls, for the monitor to name.
    current_poll: Mutex<Option<CurrentPoll>>,
    /// The worker's own ends while no thread holds them.
    parts: Mutex<Option<worker::WorkerParts>>,
    /// Set while a thread runs (or is about to run) the slot's worker.
    running: AtomicBool,
    /// The slot's current (or last) thread.
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// Tasks placed on or pinned to this worker; see `placement`.
    /// Shared with the worker's `Local`, which reads it on its hot path
    /// without indexing the slots.
    inbox: Arc<OnceLock<Box<Inbox>>>,
    /// Where this worker's local (`spawn_local`) tasks register; see
    /// `TaskMeta::registry`.
    local_registry: Registry,
    /// Local tasks of this worker whose future is not dropped yet.
    local_alive: AtomicUsize,
}

/// What a worker publishes about the task it polls: id, name, priority.
type CurrentPoll = (
    crate::runtime::task::Id,
    Option<std::sync::Arc<str>>,
    Priority,
);

/// One pool of a runtime. The fields are grouped by the file that owns
/// them (see the module docs); the rest are the settings, fixed at build.
pub(crate) struct Pool {
    pub(crate) name: Box<str>,
    pub(crate) runtime: Arc<RuntimeShared>,
    /// Work from outside the pool, one queue per level.
    injector: PerLevel<Injector<Runnable>>,
    slots: Box<[Slot]>,
    /// One past the highest slot that ever had a worker or an inbox:
    /// slots from here on are dormant and have never held a task, so the
    /// walks over queues (stealing, the idle check) and the injector's
    /// batch size stop here (measured: with `max_workers(1024)` and two
    /// workers running, walking every slot made `yield_many` 45% slower).
    /// Only grows (`fetch_max`), before a worker starts on the slot or an
    /// inbox is made for it.
    slots_used: AtomicUsize,
    idle: Idle,
    pub(crate) registry: Registry,
    /// One timer wheel per worker slot; see `runtime::time::driver`.
    pub(crate) timers: Timers,
    closed: AtomicBool,
    /// Set by the one `shutdown` call that joins and cancels.
    shutting_down: AtomicBool,
    /// Cleared when a graceful shutdown begins: new spawns are refused while
    /// the tasks already spawned run on.
    accepting: AtomicBool,
    /// A `LevelSet`: the levels above `Low` of which some worker's local
    /// queue may hold a task. A busy worker about to run lower-level work
    /// steals such tasks first; idle workers scan regardless of it. A hint
    /// only; see `queues`.
    level_hint: AtomicU8,
    /// The nudge: set by a push to an injector while every worker is busy
    /// (none parked to wake, none searching), cleared by the next tick
    /// that serves the injectors first. A worker that sees it serves them
    /// first once it has waited `NUDGE_WAIT` there, rather than at its
    /// periodic turn, which comes after up to 61 polls of whatever length
    /// (see `worker::core`). A hint: no task relies on it to run. On a line
    /// of its own: every worker reads it at every tick, and producers
    /// write it.
    injector_nudge: CachePadded<AtomicBool>,
    min_workers: usize,
    idle_timeout: Duration,
    /// `PoolConfig::search_spin`.
    pub(crate) search_spin: Duration,
    thread_name: String,
    stack_size: Option<usize>,
    priorities: LevelSet,
    /// See `PoolConfig::min_shares`.
    min_shares: PerLevel<u32>,
    placement: Placement,
    /// A user's policy; `None`: the built-in one (see `policy`).
    pub(crate) scheduler: Option<Arc<dyn Scheduler>>,
    /// See `PoolConfig::custom_queues` and `run_queue`.
    custom_queues: PerLevel<Option<Arc<dyn RunQueue>>>,
    /// Whether any level has a user's queue (one check on the wake path).
    has_custom_queues: bool,
    /// Cursor of round-robin placement, and seed of least-loaded's picks.
    place_cursor: AtomicUsize,
    pin_workers: bool,
    /// `PoolConfig::prewarm`.
    prewarm: bool,
    bound: Option<QueueBound>,
    monitor: Mutex<Option<monitor::MonitorHandle>>,
    counters: Counters,
    /// What the pool observes of its tasks (`RuntimeShared::observe`).
    pub(crate) observe: Observe,
    /// `has_custom_queues || observe.histograms`: the one check of the wake
    /// path for both.
    wake_extras: bool,
    /// Notified when a task completes while a graceful shutdown waits.
    drained: Event,
    /// The pool's rate limit (`PoolBuilder::rate_limit`), on the runtime's
    /// clock; see `limit::Limits::gate`.
    pub(crate) rate_limiter: Option<crate::limit::RateLimiter>,
}

impl Pool {
    /// Creates the pool and starts its first `min_workers` workers.
    pub(crate) fn start(
        config: PoolConfig,
        runtime: Arc<RuntimeShared>,
    ) -> Result<Arc<Pool>, BuildError> {
        let max = config.max_workers;
        let runtime_observe = runtime.observe;
        let has_custom_queues = config.custom_queues.iter().any(Option::is_some);
        // User code, before any thread starts: a panic fails the build.
        let mut states = match &config.worker_state {
            Some(init) => init
                .make_all(max, &config.name)?
                .into_iter()
                .map(Some)
                .collect(),
            None => Vec::new(),
        }
        .into_iter();
        let mut slots = Vec::with_capacity(max);
        let mut unparkers = Vec::with_capacity(max);
        for index in 0..max {
            let queues: PerLevel<Deque<Runnable>> = std::array::from_fn(|level| {
                if config.lifo_levels.contains(level) {
                    Deque::new_lifo()
                } else {
                    Deque::new_fifo()
                }
            });
            let stealers = std::array::from_fn(|level| queues[level].stealer());
            let (parker, unparker) = parking::pair();
            let hook_waker = runtime
                .hooks
                .has_park()
                .then(|| Arc::new(park::HookWaker::default()));
            let unparker = park::WorkerUnparker::new(unparker, hook_waker.clone());
            unparkers.push(unparker.clone());
            slots.push(Slot {
                stealers,
                unparker,
                hook_waker,
                activity: CachePadded::new(AtomicU64::new(0)),
                current_poll: Mutex::new(None),
                parts: Mutex::new(Some(worker::WorkerParts {
                    index,
                    queues,
                    parker,
                    state: states.next().flatten(),
                })),
                running: AtomicBool::new(false),
                thread: Mutex::new(None),
                inbox: Arc::new(OnceLock::new()),
                local_registry: Registry::new(1),
                local_alive: AtomicUsize::new(0),
            });
        }
        let rate_limiter = config
            .rate_limit
            .map(|quota| crate::limit::RateLimiter::with_clock(quota, runtime.clock.clone()));
        let pool = Arc::new(Pool {
            name: config.name,
            timers: Timers::new(unparkers, runtime.clock.clone()),
            runtime,
            injector: std::array::from_fn(|_| Injector::new()),
            slots: slots.into_boxed_slice(),
            slots_used: AtomicUsize::new(0),
            idle: Idle::new(max),
            registry: Registry::new(max),
            closed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            level_hint: AtomicU8::new(0),
            injector_nudge: CachePadded::new(AtomicBool::new(false)),
            min_workers: config.min_workers,
            idle_timeout: config.idle_timeout,
            search_spin: config.search_spin,
            thread_name: config.thread_name,
            stack_size: config.stack_size,
            priorities: config.priorities,
            // A user's scheduler is the whole policy.
            min_shares: if config.scheduler.is_some() {
                [NO_SHARE; Priority::COUNT]
            } else {
                config.min_shares
            },
            placement: config.placement,
            scheduler: config.scheduler,
            has_custom_queues,
            custom_queues: config.custom_queues,
            place_cursor: AtomicUsize::new(0),
            pin_workers: config.pin_workers,
            prewarm: config.prewarm,
            bound: config.max_queued.map(QueueBound::new),
            monitor: Mutex::new(None),
            counters: Counters::new(max, runtime_observe.histograms),
            observe: runtime_observe,
            wake_extras: runtime_observe.histograms || has_custom_queues,
            drained: Event::new(),
            rate_limiter,
        });
        // A build waits for its workers to start with `prewarm`, and with
        // `wrap_thread` hooks, which may fail to run a worker: a worker that
        // never runs fails the build instead of leaving a pool that hangs.
        let wait_for_start = config.prewarm
            || pool
                .runtime
                .hooks
                .get()
                .is_some_and(|hooks| !hooks.wrap_thread.is_empty());
        let latch = wait_for_start.then(|| worker::Latch::new(config.min_workers));
        for _ in 0..config.min_workers {
            if let Err(err) = pool.add_worker(latch.clone()) {
                pool.shutdown();
                return Err(BuildError::thread_spawn(err));
            }
        }
        if let Some(latch) = latch {
            if !latch.wait() {
                pool.shutdown();
                return Err(BuildError::thread_spawn(std::io::Error::other(
                    "a worker thread ended before it started work: a `wrap_thread` hook \
                     panicked or did not run its body",
                )));
            }
        }
        if config.max_workers > config.min_workers || monitor::reports_slow_polls(&pool) {
            match monitor::start(&pool) {
                Ok(handle) => *pool.monitor.lock() = Some(handle),
                Err(err) => {
                    pool.shutdown();
                    return Err(BuildError::thread_spawn(err));
                }
            }
        }
        Ok(pool)
    }

    pub(crate) fn min_workers(&self) -> usize {
        self.min_workers
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether new tasks may be spawned (false once shutdown began).
    #[inline]
    pub(crate) fn accepts_spawns(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    pub(crate) fn local_registry(&self, index: usize) -> &Registry {
        &self.slots[index].local_registry
    }
}
