//! A pool of worker threads with per-priority run-queues and work stealing.
//!
//! # Queues
//!
//! Every worker owns one FIFO run-queue per [`Priority`] level plus a one-task
//! "LIFO slot"; the pool owns one injector per level for work that arrives
//! from outside its workers. A task always goes back to the queues of its own
//! level (the level is read from the task header, never guessed).
//!
//! Where a scheduled task goes:
//! * spawned or woken by the task running on one of this pool's workers:
//!   into that worker's LIFO slot, pushing the slot's previous task to the
//!   back of its queue. A task that yields (woken while running) goes to the
//!   back of its queue instead.
//! * woken on a worker outside a task (a timer it fired): to the back of that
//!   worker's queue.
//! * anywhere else: into the injector of its level.
//!
//! # Invariants
//!
//! * Every queued task is reachable by every worker: local queues can be
//!   stolen from, the injector is shared. The LIFO slot is the one exception;
//!   it holds a single task only while a task runs, and is emptied (run, or
//!   pushed to its queue) before the worker looks for its next task, so a
//!   worker cannot hoard work there.
//! * No wake-up is lost between "a task was queued" and "a worker parks"; see
//!   [`idle`] for the protocol.
//! * Once `closed` is set, workers finish the poll in progress (and may
//!   start at most the one they had already picked) and then stop; every
//!   task left is run once more with its cancel reason set, which drops its
//!   future and completes its handle with a shutdown error.
//!
//! # Shutdown
//!
//! [`Pool::shutdown`] runs these steps, in order:
//! 1. set `closed` (workers stop taking tasks; pushes to the injector from now
//!    on cancel the task themselves, see [`Pool::push_remote`]);
//! 2. unpark every worker and join it; each drains and cancels its own queues
//!    on the way out;
//! 3. cancel whatever is left in the injectors;
//! 4. close the registry and wake every task still registered: those are the
//!    tasks that sat in no queue. Each wake-up reaches the scheduler, which
//!    sees `closed` and cancels the task;
//! 5. drain the injectors once more;
//! 6. fire every timer left (only futures polled outside the pool's tasks,
//!    such as a `block_on` on another thread, can still hold one); their
//!    next poll reports that the runtime is gone.
//!
//! # Elastic worker set
//!
//! A pool has `max_workers` slots and runs a worker thread on between
//! `min_workers` and `max_workers` of them. A slot without a thread is
//! *dormant*: its queues are empty, its timer wheel is empty and closed to
//! new timers, and it is not among the sleepers, so nothing can be queued
//! where no thread will look. Workers are added by the [`monitor`] (when
//! work waits and every worker is busy, or some are blocked in a long poll)
//! and retire themselves after `idle_timeout` parked; see `worker` and
//! `idle` for the two hand-overs.
//!
//! # Bounded queue
//!
//! With `max_queued` set, at most that many tasks may wait between spawn and
//! their first poll; a reservation is taken at spawn and given back when the
//! task first runs (or is cancelled first). Wake-ups of started tasks are
//! never refused: only new work is held back.

mod idle;
pub(crate) mod monitor;
pub(crate) mod park;
pub(crate) mod placement;
pub(crate) mod registry;
pub(crate) mod run_queue;
pub(crate) mod scheduler;
pub(crate) mod worker;

pub use placement::Placement;
pub use run_queue::{QueuedTask, RunQueue};
pub use scheduler::{PriorityFirst, Scheduler, SchedulerContext, WeightedFair};

use std::thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker as Deque};
use crossbeam_utils::CachePadded;
use event_listener::{Event, Listener};

use crate::error::{BuildError, SpawnError};
use crate::runtime::RuntimeShared;
use crate::sync::{
    fence, Arc, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Mutex, OnceLock, Ordering,
};
use crate::task::{run_cancelled, Runnable};
use crate::time::driver::Timers;
use crate::Priority;
use idle::Idle;
use placement::Inbox;
use registry::Registry;

/// `TaskMeta::home` of a task that is not pinned to a worker.
pub(crate) const NO_HOME: u32 = u32::MAX;

/// `min_shares` entry of a level without a minimum share.
pub(crate) const NO_SHARE: u32 = u32::MAX;

/// Most tasks a worker moves from an injector to its own queue at once.
const MAX_INJECT_BATCH: usize = 256;

/// What a pool is built from; validated by the runtime builder.
pub(crate) struct PoolConfig {
    pub(crate) name: Box<str>,
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) max_queued: Option<usize>,
    /// Bit `L` set: the pool takes tasks of priority level `L`.
    pub(crate) priorities: u8,
    /// Per level: a poll at least every this many ticks while it has work,
    /// or `NO_SHARE` (see `worker`).
    pub(crate) min_shares: [u32; Priority::COUNT],
    pub(crate) placement: Placement,
    pub(crate) pin_workers: bool,
    /// Bit `L` set: level `L`'s local queues are LIFO.
    pub(crate) lifo_levels: u8,
    pub(crate) scheduler: Option<Arc<dyn Scheduler>>,
    /// Per level: a user's run-queue replacing the pool's queues.
    pub(crate) custom_queues: [Option<Arc<dyn RunQueue>>; Priority::COUNT],
    pub(crate) prewarm: bool,
}

/// The shared side of one worker: what other threads use to reach it.
struct Slot {
    /// Steal ends of the worker's per-level queues.
    stealers: [Stealer<Runnable>; Priority::COUNT],
    unparker: park::WorkerUnparker,
    /// The waker of the park hook's `Unparked` future, if the runtime has a
    /// park hook.
    hook_waker: Option<Arc<park::HookWaker>>,
    /// Bumped before and after every `run_task`: odd while the worker polls.
    /// The monitor reads it to find workers stuck in one poll.
    activity: CachePadded<AtomicU64>,
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

/// The bound of a pool's queue; see the module docs.
struct QueueBound {
    max: usize,
    /// Tasks spawned and not yet started.
    queued: AtomicUsize,
    /// Notified when a place frees up.
    room: Event,
}

pub(crate) struct Pool {
    pub(crate) name: Box<str>,
    pub(crate) runtime: Arc<RuntimeShared>,
    /// Work from outside the pool, one queue per level.
    injector: [Injector<Runnable>; Priority::COUNT],
    slots: Box<[Slot]>,
    idle: Idle,
    pub(crate) registry: Registry,
    /// One timer wheel per worker slot; see `time::driver`.
    pub(crate) timers: Timers,
    closed: AtomicBool,
    /// Set by the one `shutdown` call that joins and cancels.
    shutting_down: AtomicBool,
    /// Cleared when a graceful shutdown begins: new spawns are refused while
    /// the tasks already spawned run on.
    accepting: AtomicBool,
    /// Bit `L` set: some worker's local queue may hold a task of level `L`
    /// (tracked for the levels above `Low`). A busy worker about to run
    /// lower-level work steals such tasks first; the bit is a hint, cleared
    /// when a scan finds nothing, and idle workers scan regardless of it.
    /// A push that races with a scan clearing the bit can stay unmarked:
    /// its owner still runs the task after its current poll, and the next
    /// push of that level marks the bit again. Exact marking would cost a
    /// SeqCst fence on every push.
    level_hint: AtomicU8,
    min_workers: usize,
    idle_timeout: Duration,
    thread_name: String,
    stack_size: Option<usize>,
    priorities: u8,
    /// See `PoolConfig::min_shares`.
    min_shares: [u32; Priority::COUNT],
    placement: Placement,
    /// A user's policy; `None`: the built-in one (see `scheduler`).
    pub(crate) scheduler: Option<Arc<dyn Scheduler>>,
    /// See `PoolConfig::custom_queues` and `run_queue`.
    custom_queues: [Option<Arc<dyn RunQueue>>; Priority::COUNT],
    /// Whether any level has a user's queue (one check on the wake path).
    has_custom_queues: bool,
    /// Cursor of round-robin placement, and seed of least-loaded's picks.
    place_cursor: AtomicUsize,
    pin_workers: bool,
    /// `PoolConfig::prewarm`.
    prewarm: bool,
    bound: Option<QueueBound>,
    monitor: Mutex<Option<monitor::MonitorHandle>>,
    /// Workers started and retired since the pool was built, each counted
    /// before `Idle`'s active count moves, so that a reader who sees
    /// `num_workers` change also sees the counter that explains it.
    workers_started: AtomicUsize,
    workers_retired: AtomicUsize,
    /// Workers found stuck in one poll at the monitor's last sample.
    pub(crate) blocked_workers: AtomicUsize,
    /// Tasks spawned and completed, counted per worker slot (the last entry
    /// for other threads) so the hot path writes no shared line; summed on
    /// read.
    spawned: Box<[CachePadded<AtomicUsize>]>,
    completed: Box<[CachePadded<AtomicUsize>]>,
    /// Notified when a task completes while a graceful shutdown waits.
    drained: Event,
}

impl Pool {
    /// Creates the pool and starts its first `min_workers` workers.
    pub(crate) fn start(
        config: PoolConfig,
        runtime: Arc<RuntimeShared>,
    ) -> Result<Arc<Pool>, BuildError> {
        let max = config.max_workers;
        let mut slots = Vec::with_capacity(max);
        let mut unparkers = Vec::with_capacity(max);
        for index in 0..max {
            let queues: [Deque<Runnable>; Priority::COUNT] = std::array::from_fn(|level| {
                if config.lifo_levels & (1 << level) != 0 {
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
                parts: Mutex::new(Some(worker::WorkerParts {
                    index,
                    queues,
                    parker,
                })),
                running: AtomicBool::new(false),
                thread: Mutex::new(None),
                inbox: Arc::new(OnceLock::new()),
                local_registry: Registry::new(1),
                local_alive: AtomicUsize::new(0),
            });
        }
        let pool = Arc::new(Pool {
            name: config.name,
            timers: Timers::new(unparkers, runtime.clock.clone()),
            runtime,
            injector: std::array::from_fn(|_| Injector::new()),
            slots: slots.into_boxed_slice(),
            idle: Idle::new(max),
            registry: Registry::new(max),
            closed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            level_hint: AtomicU8::new(0),
            min_workers: config.min_workers,
            idle_timeout: config.idle_timeout,
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
            has_custom_queues: config.custom_queues.iter().any(Option::is_some),
            custom_queues: config.custom_queues,
            place_cursor: AtomicUsize::new(0),
            pin_workers: config.pin_workers,
            prewarm: config.prewarm,
            bound: config.max_queued.map(|max| QueueBound {
                max,
                queued: AtomicUsize::new(0),
                room: Event::new(),
            }),
            monitor: Mutex::new(None),
            workers_started: AtomicUsize::new(0),
            workers_retired: AtomicUsize::new(0),
            blocked_workers: AtomicUsize::new(0),
            spawned: (0..=max)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            completed: (0..=max)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            drained: Event::new(),
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
        if config.max_workers > config.min_workers {
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

    /// Starts a worker on a dormant slot. `Ok(false)`: no slot is free (all
    /// `max_workers` run, or a retiring worker has not handed its slot back
    /// yet).
    fn add_worker(self: &Arc<Self>, latch: Option<worker::Latch>) -> std::io::Result<bool> {
        if self.is_closed() {
            return Ok(false);
        }
        let Some(index) = self.slots.iter().position(|slot| {
            slot.running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        }) else {
            return Ok(false);
        };
        let slot = &self.slots[index];
        let counted = self.idle.activate_worker(self.slots.len(), || {
            self.workers_started.fetch_add(1, Ordering::SeqCst);
        });
        if !counted {
            slot.running.store(false, Ordering::Release);
            return Ok(false);
        }
        // A retired thread on this slot has handed its parts back and is
        // only returning; reap it before the slot gets a new one.
        if let Some(previous) = slot.thread.lock().take() {
            let _ = previous.join();
        }
        self.timers.open_wheel(index);
        let mut builder = thread::Builder::new().name(format!("{}-{}", self.thread_name, index));
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        let pool = self.clone();
        let touch = self.prewarm;
        let spawned = builder.spawn(move || {
            // First, before anything can fail: the latch learns how the
            // start went, and a slot whose worker never runs is handed back.
            let mut warm = worker::WarmUp::new(latch, touch);
            let mut unstarted = UnstartedSlot {
                pool: &pool,
                index,
                armed: true,
            };
            crate::fault::hit("worker.start");
            if pool.pin_workers {
                pin_to_core(index);
            }
            pool.runtime.hooks.wrapped(|| {
                unstarted.armed = false;
                let parts = pool.slots[index]
                    .parts
                    .lock()
                    .take()
                    .expect("a running slot's parts are free");
                worker::run(pool.clone(), parts, &mut warm);
            });
        });
        match spawned {
            Ok(thread) => {
                *slot.thread.lock() = Some(thread);
                Ok(true)
            }
            Err(err) => {
                // Only if no timer slipped in meanwhile; one that did is
                // fired by the other workers (see `Timers::fire_overdue_elsewhere`).
                self.timers.close_wheel_if(index, || true);
                self.idle.deactivate_unstarted();
                self.workers_started.fetch_sub(1, Ordering::SeqCst);
                slot.running.store(false, Ordering::Release);
                Err(err)
            }
        }
    }

    /// Hands back the slot of a worker whose thread started but never ran
    /// the worker (a `wrap_thread` hook panicked or did not call its body):
    /// the slot becomes dormant again, so no notifier counts on it and
    /// nothing placed on it is stranded.
    #[cold]
    fn worker_never_ran(&self, index: usize) {
        eprintln!(
            "multipool: worker {index} of pool `{}` never ran: a `Builder::wrap_thread` hook \
             panicked or returned without calling its body",
            self.name
        );
        let slot = &self.slots[index];
        self.timers.close_wheel_if(index, || true);
        self.idle.deactivate_unstarted();
        self.workers_started.fetch_sub(1, Ordering::SeqCst);
        slot.running.store(false, Ordering::SeqCst);
        // Pairs with `push_placed` (see `worker_retired`).
        self.rehome_placed(index);
    }

    /// Called by a worker that just retired (see `Idle::retire_parked`): its
    /// slot becomes dormant again.
    fn worker_retired(&self, parts: worker::WorkerParts) {
        let index = parts.index;
        let slot = &self.slots[index];
        *slot.parts.lock() = Some(parts);
        slot.running.store(false, Ordering::SeqCst);
        // A producer that picked this worker before it stopped counting as
        // running may have placed a task on it: move it where others look.
        self.rehome_placed(index);
    }

    /// Moves the tasks placed on a worker that no longer runs to the
    /// injector. Run by the retiring worker after it stops counting as
    /// running, and by a producer that placed a task on a worker it then
    /// finds stopped: whichever comes second moves the task.
    fn rehome_placed(&self, index: usize) {
        let Some(inbox) = self.slots[index].inbox.get() else {
            return;
        };
        let mut moved = false;
        for placed in &inbox.placed {
            while let Steal::Success(task) = placed.steal() {
                self.push_injector(task);
                moved = true;
            }
        }
        if moved {
            self.notify_parked();
        }
    }

    /// Retires the worker `index` if it may (see `Idle::retire_parked`):
    /// its wheel must be empty, and is closed to new timers if it retires.
    fn try_retire(&self, index: usize) -> bool {
        // Workers `0..min_workers` are permanent: tasks may be pinned to
        // them. Another worker stays while it has local tasks alive.
        if index < self.min_workers || self.slots[index].local_alive.load(Ordering::SeqCst) > 0 {
            return false;
        }
        self.timers.close_wheel_if(index, || {
            self.idle.retire_parked(index, self.min_workers, || {
                // Last check passed: the worker retires. Counted before
                // the active count drops (see `workers_started`).
                self.workers_retired.fetch_add(1, Ordering::SeqCst);
                true
            })
        })
    }

    /// Number of workers running now.
    pub(crate) fn num_workers(&self) -> usize {
        self.idle.num_active()
    }

    pub(crate) fn min_workers(&self) -> usize {
        self.min_workers
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn workers_started(&self) -> usize {
        self.workers_started.load(Ordering::SeqCst)
    }

    pub(crate) fn workers_retired(&self) -> usize {
        self.workers_retired.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether new tasks may be spawned (false once shutdown began).
    #[inline]
    pub(crate) fn accepts_spawns(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Whether a new task of `priority` may be spawned here.
    #[inline]
    pub(crate) fn check_spawn(&self, priority: Priority) -> Result<(), SpawnError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(SpawnError::shutdown());
        }
        if self.priorities & (1 << priority.index()) == 0 {
            return Err(self.priority_refused(priority));
        }
        Ok(())
    }

    #[cold]
    fn priority_refused(&self, priority: Priority) -> SpawnError {
        SpawnError::rejected(format!(
            "pool `{}` does not take {priority:?} tasks",
            self.name
        ))
    }

    /// Takes a place in the bounded queue. `Ok(true)`: a place was taken
    /// (give it back with [`release_place`](Self::release_place));
    /// `Ok(false)`: the queue is unbounded. With `force`, a place is taken
    /// even beyond the bound.
    #[inline]
    pub(crate) fn reserve_place(&self, force: bool) -> Result<bool, SpawnError> {
        let Some(bound) = &self.bound else {
            return Ok(false);
        };
        if force {
            bound.queued.fetch_add(1, Ordering::AcqRel);
            return Ok(true);
        }
        let mut queued = bound.queued.load(Ordering::Acquire);
        loop {
            if queued >= bound.max {
                return Err(SpawnError::full(bound.max));
            }
            match bound.queued.compare_exchange_weak(
                queued,
                queued + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(true),
                Err(actual) => queued = actual,
            }
        }
    }

    /// Gives back a place taken by [`reserve_place`](Self::reserve_place).
    pub(crate) fn release_place(&self) {
        if let Some(bound) = &self.bound {
            bound.queued.fetch_sub(1, Ordering::AcqRel);
            // `additional`: every freed place wakes a waiter, even one
            // notified earlier and not yet run.
            bound.room.notify_additional(1);
        }
    }

    /// Waits (asynchronously) for a place: a listener to poll, created
    /// before the caller re-checks with `reserve_place`.
    pub(crate) fn listen_for_room(&self) -> Option<event_listener::EventListener> {
        self.bound.as_ref().map(|bound| bound.room.listen())
    }

    /// Tasks spawned and not started yet (zero for an unbounded pool, which
    /// does not count them).
    pub(crate) fn num_queued(&self) -> usize {
        self.bound
            .as_ref()
            .map_or(0, |bound| bound.queued.load(Ordering::Acquire))
    }

    pub(crate) fn max_queued(&self) -> Option<usize> {
        self.bound.as_ref().map(|bound| bound.max)
    }

    /// Schedules a task that was just spawned on this pool.
    #[inline]
    pub(crate) fn schedule_new(self: &Arc<Self>, runnable: Runnable) {
        let plain = self.placement == Placement::Local && !self.has_custom_queues;
        if plain && runnable.metadata().home == NO_HOME {
            // The common case: `Placement::Local`, no user queue, unpinned.
            if let Err(runnable) = worker::try_schedule_local(Arc::as_ptr(self), runnable, false) {
                self.push_remote(runnable);
            }
            return;
        }
        self.schedule_new_placed(runnable);
    }

    /// `schedule_new` for a pinned task, a user's queue or a placement.
    #[inline(never)]
    fn schedule_new_placed(self: &Arc<Self>, runnable: Runnable) {
        let home = runnable.metadata().home;
        if home != NO_HOME {
            self.push_pinned(home as usize, runnable);
            return;
        }
        if self.custom_queues[runnable.metadata().priority().index()].is_some() {
            // The user's queue decides the order, for the whole pool.
            self.push_remote(runnable);
            return;
        }
        match self.placement {
            Placement::Local => {
                if let Err(runnable) =
                    worker::try_schedule_local(Arc::as_ptr(self), runnable, false)
                {
                    self.push_remote(runnable);
                }
            }
            Placement::RoundRobin | Placement::LeastLoaded => {
                let index = self.pick_worker();
                self.push_placed(index, runnable);
            }
        }
    }

    /// The worker a new task is placed on (round-robin or least-loaded
    /// among the running workers).
    fn pick_worker(&self) -> usize {
        let len = self.slots.len();
        let cursor = self.place_cursor.fetch_add(1, Ordering::Relaxed);
        let running = |index: &usize| self.slots[*index].running.load(Ordering::Relaxed);
        let next_running = |from: usize| {
            (0..len)
                .map(|offset| (from + offset) % len)
                .find(running)
                .unwrap_or(0)
        };
        match self.placement {
            Placement::LeastLoaded => {
                // Two picks from one counter: a multiplicative hash spreads
                // consecutive values over the slots.
                let mix = cursor.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize);
                let a = next_running(mix % len);
                let b = next_running((mix >> 17) % len);
                if self.worker_load(b) < self.worker_load(a) {
                    b
                } else {
                    a
                }
            }
            _ => next_running(cursor % len),
        }
    }

    /// Tasks queued on worker `index` (its queues and inboxes).
    fn worker_load(&self, index: usize) -> usize {
        let slot = &self.slots[index];
        slot.stealers.iter().map(Stealer::len).sum::<usize>()
            + slot.inbox.get().map_or(0, |inbox| inbox.len())
    }

    /// Tasks queued on each worker slot, in slot order: its local queues and
    /// inboxes (the injector is shared and not counted).
    pub(crate) fn worker_queue_depths(&self) -> Vec<usize> {
        (0..self.slots.len())
            .map(|index| self.worker_load(index))
            .collect()
    }

    fn inbox(&self, index: usize) -> &Inbox {
        self.slots[index]
            .inbox
            .get_or_init(|| Box::new(Inbox::new()))
    }

    /// Queues a task on worker `index`, where idle siblings may steal it.
    fn push_placed(&self, index: usize, runnable: Runnable) {
        if self.is_closed() {
            run_cancelled(runnable);
            return;
        }
        let level = runnable.metadata().priority().index();
        self.inbox(index).placed[level].push(runnable);
        // Its own worker if it sleeps; else whoever may steal it.
        if !self.wake_worker(index) {
            self.notify_parked();
            // Pairs with `worker_retired`: the worker may have retired
            // since `pick_worker` chose it.
            fence(Ordering::SeqCst);
            if !self.slots[index].running.load(Ordering::SeqCst) {
                self.rehome_placed(index);
            }
        }
        self.drain_if_closed();
    }

    /// Queues a pinned task on its home worker, the only one that runs it.
    fn push_pinned(&self, index: usize, runnable: Runnable) {
        if self.is_closed() {
            run_cancelled(runnable);
            return;
        }
        let level = runnable.metadata().priority().index();
        self.inbox(index).pinned[level].push(runnable);
        self.wake_worker(index);
        self.drain_if_closed();
    }

    /// Queues a local (`!Send`) task on its home worker. Never cancels it
    /// here, even after shutdown: only the home worker's thread may drop
    /// it, and that worker drains this inbox before it ends (see
    /// `worker::Local::cancel_local_tasks`).
    pub(crate) fn push_local(&self, index: usize, runnable: Runnable) {
        let level = runnable.metadata().priority().index();
        self.inbox(index).local[level].push(runnable);
        if !self.is_closed() {
            self.wake_worker(index);
        }
    }

    pub(crate) fn local_registry(&self, index: usize) -> &Registry {
        &self.slots[index].local_registry
    }

    pub(crate) fn local_task_spawned(&self, index: usize) {
        self.slots[index].local_alive.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn local_task_dropped(&self, index: usize) {
        self.slots[index].local_alive.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes worker `index` if it is parked; returns whether it was.
    fn wake_worker(&self, index: usize) -> bool {
        if self.idle.claim_parked(index) {
            self.slots[index].unparker.unpark();
            true
        } else {
            false
        }
    }

    /// After a push: shutdown may have drained the queues before the push
    /// landed (see `push_remote`).
    fn drain_if_closed(&self) {
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.drain_injector();
        }
    }

    /// The worker a `Spawn::worker`/`Spawn::key` task is pinned to.
    pub(crate) fn home_for(&self, home: crate::task::Home) -> Result<u32, SpawnError> {
        use crate::task::Home;
        let permanent = self.min_workers;
        match home {
            Home::None => Ok(NO_HOME),
            Home::Key(hash) => Ok(placement::jump_hash(hash, permanent) as u32),
            Home::Worker(index) if index < permanent => Ok(index as u32),
            Home::Worker(index) => Err(SpawnError::rejected(format!(
                "no worker {index} to pin to in pool `{}`: tasks can be pinned to its \
                 permanent workers 0..{permanent} (`min_workers`)",
                self.name
            ))),
        }
    }

    /// Queues a task of a batch: always to the injector, without waking a
    /// worker; the batch ends with [`finish_batch`](Self::finish_batch).
    pub(crate) fn schedule_quiet(&self, runnable: Runnable) {
        if self.is_closed() {
            run_cancelled(runnable);
            return;
        }
        self.push_injector(runnable);
    }

    /// The injector of the task's level, or the user's queue replacing it.
    fn push_injector(&self, runnable: Runnable) {
        let level = runnable.metadata().priority().index();
        if !self.has_custom_queues {
            self.injector[level].push(runnable);
            return;
        }
        match &self.custom_queues[level] {
            Some(queue) => {
                // A panic drops the task with the unwinding queue, which
                // reports it (see `QueuedTask`'s `Drop`).
                let task = QueuedTask::new(runnable);
                let _ = guard_user("RunQueue::push", || queue.push(task));
            }
            None => self.injector[level].push(runnable),
        }
    }

    /// A task a user's queue dropped (cancel reason set): to the pool's own
    /// injector of its level, where a worker runs it, cancelled.
    ///
    /// The queue may drop tasks while it holds its own lock, so this never
    /// calls back into a user's queue: after shutdown it drains only the
    /// pool's own queues.
    pub(crate) fn push_dropped(&self, runnable: Runnable) {
        let level = runnable.metadata().priority().index();
        self.injector[level].push(runnable);
        self.notify_parked();
        if self.closed.load(Ordering::SeqCst) {
            self.drain_own_queues();
        }
    }

    /// Whether the injector of `level` (or the user's queue) is empty.
    pub(crate) fn injector_is_empty(&self, level: usize) -> bool {
        self.injector[level].is_empty()
            && self.custom_queues[level].as_ref().is_none_or(|queue| {
                guard_user("RunQueue::is_empty", || queue.is_empty()).unwrap_or(true)
            })
    }

    /// Tasks in the injector of `level` (or the user's queue).
    pub(crate) fn injector_len_at(&self, level: usize) -> usize {
        self.injector[level].len()
            + self.custom_queues[level].as_ref().map_or(0, |queue| {
                guard_user("RunQueue::len", || queue.len()).unwrap_or(0)
            })
    }

    /// Ends a batch of [`schedule_quiet`](Self::schedule_quiet) pushes: one
    /// wake-up for all of them, and the shutdown check of `push_remote`.
    pub(crate) fn finish_batch(&self) {
        self.notify_parked();
        if self.closed.load(Ordering::SeqCst) {
            self.drain_injector();
        }
    }

    /// The schedule function of every task: routes a woken task back to its
    /// own pool.
    pub(crate) fn schedule_woken(runnable: Runnable, woken_while_running: bool) {
        let meta = runnable.metadata();
        if meta.home != NO_HOME || meta.pool.has_custom_queues {
            Self::schedule_woken_special(runnable, woken_while_running);
            return;
        }
        let pool: *const Pool = Arc::as_ptr(&runnable.metadata().pool);
        if let Err(runnable) = worker::try_schedule_local(pool, runnable, woken_while_running) {
            // Off this pool's workers: the task keeps its pool alive while we
            // use it, so clone the `Arc` before handing the task over.
            let pool = runnable.metadata().pool.clone();
            pool.push_remote(runnable);
        }
    }

    /// `schedule_woken` for a pinned task, or in a pool with a user's queue.
    #[cold]
    fn schedule_woken_special(runnable: Runnable, woken_while_running: bool) {
        let meta = runnable.metadata();
        let pool = meta.pool.clone();
        if meta.home != NO_HOME {
            if meta.local {
                pool.push_local(meta.home as usize, runnable);
            } else {
                pool.push_pinned(meta.home as usize, runnable);
            }
        } else if pool.custom_queues[meta.priority().index()].is_some() {
            pool.push_remote(runnable);
        } else if let Err(runnable) =
            worker::try_schedule_local(Arc::as_ptr(&pool), runnable, woken_while_running)
        {
            pool.push_remote(runnable);
        }
    }

    /// Queues a task from outside the pool's workers.
    fn push_remote(&self, runnable: Runnable) {
        if self.is_closed() {
            run_cancelled(runnable);
            return;
        }
        self.push_injector(runnable);
        // Contains a SeqCst read-modify-write of the idle state, ordering
        // the push before the `closed` check below; `close` does one too
        // (see `Idle::sync_with_pushers`).
        self.notify_parked();
        if self.closed.load(Ordering::SeqCst) {
            // Shutdown may have drained the injector before our push landed.
            self.drain_injector();
        }
    }

    /// Pops one task from the injector at `level` and moves a batch more
    /// into `dest` (the caller's own queue for that level): this worker's
    /// fair share of what waits, `len / workers + 1`, at most
    /// [`MAX_INJECT_BATCH`]. Taking many at once is what keeps a burst of
    /// remote spawns from trickling in while the worker also has local work.
    ///
    /// The empty check is inlined: every tick looks at the levels above the
    /// one it serves, and those are empty nearly always.
    #[inline]
    fn pop_injector(&self, level: usize, dest: &Deque<Runnable>) -> Option<Runnable> {
        if !self.has_custom_queues && self.injector[level].is_empty() {
            return None;
        }
        self.pop_injector_slow(level, dest)
    }

    #[inline(never)]
    fn pop_injector_slow(&self, level: usize, dest: &Deque<Runnable>) -> Option<Runnable> {
        if let Some(queue) = &self.custom_queues[level] {
            // Tasks the queue dropped first (they only need cancelling),
            // then one at a time: the user's queue keeps deciding the order.
            loop {
                match self.injector[level].steal() {
                    Steal::Success(task) => return Some(task),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
            return guard_user("RunQueue::pop", || queue.pop())
                .flatten()
                .map(QueuedTask::into_runnable);
        }
        let injector = &self.injector[level];
        if injector.is_empty() {
            return None;
        }
        // Shared among the slots rather than the workers running now: no
        // read of the contended idle state on this path.
        let want = (injector.len() / self.slots.len() + 1).min(MAX_INJECT_BATCH);
        // The popped task counts towards `want`.
        let target = dest.len() + want - 1;
        let task = loop {
            match injector.steal_batch_with_limit_and_pop(dest, want) {
                Steal::Success(task) => break task,
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        };
        // crossbeam moves at most half the queue (and one block) per call.
        while dest.len() < target {
            let before = dest.len();
            match injector.steal_batch_with_limit(dest, target - before) {
                Steal::Success(()) if dest.len() > before => {}
                Steal::Retry => {}
                _ => break,
            }
        }
        Some(task)
    }

    /// Wakes a parked worker if work is waiting and nobody searches for it.
    pub(crate) fn notify_parked(&self) {
        if let Some(index) = self.idle.worker_to_notify() {
            self.slots[index].unparker.unpark();
        }
    }

    /// Whether any queue of the pool holds work that any worker may take
    /// (pinned tasks wait for their own worker, which is woken by name).
    fn has_queued_work(&self) -> bool {
        self.slots.iter().any(|slot| {
            slot.stealers.iter().any(|s| !s.is_empty())
                || slot
                    .inbox
                    .get()
                    .is_some_and(|inbox| inbox.placed.iter().any(|q| !q.is_empty()))
        }) || (0..Priority::COUNT).any(|level| !self.injector_is_empty(level))
    }

    /// Whether every worker is parked and no queue holds work.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.num_parked() == self.idle.num_active()
            && !self.has_queued_work()
            && self
                .slots
                .iter()
                .all(|slot| slot.inbox.get().is_none_or(|inbox| inbox.is_empty()))
    }

    /// Wakes a worker if any queue holds work. Run by the last searcher to
    /// park, so work queued while it searched is not left behind.
    fn notify_if_work_pending(&self) {
        if self.has_queued_work() {
            self.notify_parked();
        }
    }

    /// Notes that a local queue may hold a task of `level`.
    fn mark_level(&self, level: usize) {
        if level < Priority::Low.index() {
            let bit = 1 << level;
            if self.level_hint.load(Ordering::Relaxed) & bit == 0 {
                self.level_hint.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    fn level_marked(&self, level: usize) -> bool {
        self.level_hint.load(Ordering::Relaxed) & (1 << level) != 0
    }

    fn clear_level(&self, level: usize) {
        self.level_hint.fetch_and(!(1 << level), Ordering::Relaxed);
    }

    /// Cancels what waits in the injectors, in every worker's inbox and in
    /// the users' queues.
    fn drain_injector(&self) {
        self.drain_own_queues();
        for queue in self.custom_queues.iter().flatten() {
            while let Some(Some(task)) = guard_user("RunQueue::pop", || queue.pop()) {
                run_cancelled(task.into_runnable());
            }
        }
        // What a user's queue dropped meanwhile.
        self.drain_own_queues();
    }

    /// Cancels what waits in the pool's own injectors and in every worker's
    /// inbox, without calling a user's queue.
    fn drain_own_queues(&self) {
        for injector in &self.injector {
            loop {
                match injector.steal() {
                    Steal::Success(task) => run_cancelled(task),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        for slot in self.slots.iter() {
            if let Some(inbox) = slot.inbox.get() {
                inbox.drain(run_cancelled);
            }
        }
    }

    /// Number of tasks waiting in the injectors.
    pub(crate) fn injector_len(&self) -> usize {
        (0..Priority::COUNT)
            .map(|level| self.injector_len_at(level))
            .sum()
    }

    /// The counter slot of the current thread: its worker's, or the shared
    /// one for threads that are not this pool's workers.
    fn counter_slot(&self) -> usize {
        worker::index_in(self).unwrap_or(self.slots.len())
    }

    pub(crate) fn count_spawned(&self) {
        self.spawned[self.counter_slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_completed(&self) {
        self.completed[self.counter_slot()].fetch_add(1, Ordering::Relaxed);
        if !self.accepting.load(Ordering::Relaxed) {
            // A graceful shutdown may be waiting for the last task.
            self.drained.notify(usize::MAX);
        }
    }

    /// Tasks spawned and not yet completed or cancelled.
    pub(crate) fn num_alive(&self) -> usize {
        // Completions are read first: a task counted completed was counted
        // spawned before, so the difference never underflows.
        let completed: usize = self
            .completed
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .sum();
        let spawned: usize = self.spawned.iter().map(|c| c.load(Ordering::Acquire)).sum();
        spawned.saturating_sub(completed)
    }

    /// Number of parked workers.
    pub(crate) fn num_parked(&self) -> usize {
        self.idle.num_parked()
    }

    /// Runs `poll` as a `block_on` poll of this runtime (see
    /// `RuntimeShared::active_blockers`).
    pub(crate) fn blocker_poll<R>(&self, poll: impl FnOnce() -> R) -> R {
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let blockers = &self.runtime.active_blockers;
        blockers.fetch_add(1, Ordering::SeqCst);
        let _done = Done(blockers);
        poll()
    }

    /// See [`RuntimeShared::try_auto_advance`].
    pub(crate) fn try_auto_advance(&self) -> bool {
        self.runtime.try_auto_advance()
    }

    /// Starts a graceful shutdown: from now on new spawns are refused with a
    /// shutdown error, while tasks already spawned keep running.
    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        // Wake a waiter that checked `num_alive` before the flag was set.
        self.drained.notify(usize::MAX);
    }

    /// Waits until no task is alive or `deadline` passes; returns whether
    /// the pool drained. Only meaningful after `stop_accepting`.
    pub(crate) fn wait_drained(&self, deadline: std::time::Instant) -> bool {
        loop {
            let listener = self.drained.listen();
            if self.num_alive() == 0 {
                return true;
            }
            // Also look again every 10 ms: the completion's notification is
            // ordered with our check only by this bound on weakly ordered
            // machines (the hot path pays for no fence).
            let wake_at = deadline.min(std::time::Instant::now() + Duration::from_millis(10));
            if listener.wait_deadline(wake_at).is_none() && wake_at >= deadline {
                return self.num_alive() == 0;
            }
        }
    }

    /// Marks the pool closed and wakes its workers, without waiting for
    /// them; [`shutdown`](Self::shutdown) does the rest. Idempotent.
    pub(crate) fn close(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Pairs with the read-modify-write in `push_remote` (see
        // `Idle::sync_with_pushers`): either the pusher sees `closed`, or
        // the drains that follow see its task. The fence does the same for
        // the pushes that re-check with a fence (`drain_if_closed`).
        self.idle.sync_with_pushers();
        fence(Ordering::SeqCst);
        for slot in self.slots.iter() {
            slot.unparker.unpark();
        }
        if let Some(monitor) = &*self.monitor.lock() {
            monitor.wake();
        }
    }

    /// Stops the pool and cancels every task it holds; see the module docs.
    /// Idempotent. Called from a worker of this pool, it does not wait for
    /// that worker, which stops once its current poll returns.
    pub(crate) fn shutdown(&self) {
        self.close();
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(monitor) = self.monitor.lock().take() {
            monitor.join();
        }
        let current = thread::current().id();
        for slot in self.slots.iter() {
            let thread = slot.thread.lock().take();
            if let Some(thread) = thread {
                if thread.thread().id() != current {
                    // A worker only ends by returning; its tasks' panics are
                    // caught inside the tasks.
                    let _ = thread.join();
                }
            }
        }
        self.drain_injector();
        for waker in self.registry.close() {
            waker.wake();
        }
        self.drain_injector();
        self.timers.shutdown();
    }
}

/// Hands a slot back if its thread ends before running the worker; see
/// [`Pool::worker_never_ran`].
struct UnstartedSlot<'a> {
    pool: &'a Pool,
    index: usize,
    /// Cleared once the worker runs.
    armed: bool,
}

impl Drop for UnstartedSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.worker_never_ran(self.index);
        }
    }
}

/// Pins the calling thread to the `index`-th core (modulo their number) of
/// those this process may run on. Best effort: a refusal by the OS leaves
/// the thread unpinned.
fn pin_to_core(index: usize) {
    // Not under miri: it runs every thread on one host thread, so pinning
    // means nothing there, and it does not model these calls fully.
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `cpu_set_t` is plain data (all-zero is the empty set);
        // `sched_getaffinity`/`sched_setaffinity` with pid 0 read or write
        // `size` bytes of sets we own and affect only the calling thread;
        // `CPU_ISSET`/`CPU_SET` stay inside the set for CPUs below
        // `CPU_SETSIZE`.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
                return;
            }
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &allowed))
                .collect();
            if cpus.is_empty() {
                return;
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpus[index % cpus.len()], &mut set);
            libc::sched_setaffinity(0, size, &set);
        }
    }
    // Off Linux, pinning is refused by the builder.
    #[cfg(any(not(target_os = "linux"), miri))]
    let _ = index;
}

/// Runs user code (a `RunQueue`, a `Scheduler`) that the runtime calls on
/// its own threads; a panic in it is caught and printed, never unwinds into
/// a worker. `None`: it panicked.
pub(crate) fn guard_user<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("multipool: `{what}` panicked; the panic was caught");
            None
        }
    }
}
