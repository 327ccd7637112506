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

mod idle;
pub(crate) mod registry;
pub(crate) mod worker;

use std::thread;

use crossbeam_deque::{Injector, Steal, Stealer, Worker as Deque};
use crossbeam_utils::CachePadded;

use crate::error::BuildError;
use crate::runtime::hooks::Hooks;
use crate::sync::{fence, Arc, AtomicBool, AtomicU8, AtomicUsize, Mutex, Ordering};
use crate::task::{run_cancelled, Runnable};
use crate::time::driver::Timers;
use crate::Priority;
use idle::Idle;
use registry::Registry;

/// Most tasks a worker moves from an injector to its own queue at once.
const MAX_INJECT_BATCH: usize = 256;

/// What a pool is built from; validated by the runtime builder.
pub(crate) struct PoolConfig {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) start_paused: bool,
    pub(crate) hooks: Arc<Hooks>,
}

/// The shared side of one worker: what other threads use to reach it.
struct Slot {
    /// Steal ends of the worker's per-level queues.
    stealers: [Stealer<Runnable>; Priority::COUNT],
    unparker: parking::Unparker,
}

pub(crate) struct Pool {
    /// Work from outside the pool, one queue per level.
    injector: [Injector<Runnable>; Priority::COUNT],
    slots: Box<[Slot]>,
    idle: Idle,
    pub(crate) registry: Registry,
    /// One timer wheel per worker; see `time::driver`.
    pub(crate) timers: Timers,
    /// Number of `Runtime::block_on` calls polling their future right now
    /// or woken and about to; paused time only advances by itself while this
    /// is zero.
    pub(crate) active_blockers: AtomicUsize,
    /// Serialises paused-time auto-advances (see `try_auto_advance`).
    advancing: Mutex<()>,
    closed: AtomicBool,
    /// Bit `L` set: some worker's local queue may hold a task of level `L`
    /// (tracked for the levels above `Low`). A busy worker about to run
    /// lower-level work steals such tasks first; the bit is a hint, cleared
    /// when a scan finds nothing, and idle workers scan regardless of it.
    level_hint: AtomicU8,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    pub(crate) hooks: Arc<Hooks>,
    /// Tasks spawned and completed, counted per worker (the last entry for
    /// other threads) so the hot path writes no shared line; summed on read.
    spawned: Box<[CachePadded<AtomicUsize>]>,
    completed: Box<[CachePadded<AtomicUsize>]>,
}

impl Pool {
    /// Creates the pool and starts its workers.
    pub(crate) fn start(config: PoolConfig) -> Result<Arc<Pool>, BuildError> {
        let mut slots = Vec::with_capacity(config.workers);
        let mut parts = Vec::with_capacity(config.workers);
        let mut unparkers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let queues: [Deque<Runnable>; Priority::COUNT] =
                std::array::from_fn(|_| Deque::new_fifo());
            let stealers = std::array::from_fn(|level| queues[level].stealer());
            let (parker, unparker) = parking::pair();
            unparkers.push(unparker.clone());
            slots.push(Slot { stealers, unparker });
            parts.push(worker::WorkerParts {
                index,
                queues,
                parker,
            });
        }
        let pool = Arc::new(Pool {
            injector: std::array::from_fn(|_| Injector::new()),
            slots: slots.into_boxed_slice(),
            idle: Idle::new(config.workers),
            registry: Registry::new(config.workers),
            timers: Timers::new(unparkers, config.start_paused),
            active_blockers: AtomicUsize::new(0),
            advancing: Mutex::new(()),
            closed: AtomicBool::new(false),
            level_hint: AtomicU8::new(0),
            threads: Mutex::new(Vec::with_capacity(config.workers)),
            hooks: config.hooks,
            spawned: (0..=config.workers)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            completed: (0..=config.workers)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
        });
        for part in parts {
            let mut builder =
                thread::Builder::new().name(format!("{}-{}", config.thread_name, part.index));
            if let Some(size) = config.stack_size {
                builder = builder.stack_size(size);
            }
            let worker_pool = pool.clone();
            let spawned = builder.spawn(move || {
                let hooks = worker_pool.hooks.clone();
                hooks.wrapped(|| worker::run(worker_pool, part));
            });
            match spawned {
                Ok(thread) => pool.threads.lock().push(thread),
                Err(err) => {
                    pool.shutdown();
                    return Err(BuildError::thread_spawn(err));
                }
            }
        }
        Ok(pool)
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Schedules a task that was just spawned on this pool.
    pub(crate) fn schedule_new(self: &Arc<Self>, runnable: Runnable) {
        if let Err(runnable) = worker::try_schedule_local(Arc::as_ptr(self), runnable, false) {
            self.push_remote(runnable);
        }
    }

    /// The schedule function of every task: routes a woken task back to its
    /// own pool.
    pub(crate) fn schedule_woken(runnable: Runnable, woken_while_running: bool) {
        let pool: *const Pool = Arc::as_ptr(&runnable.metadata().pool);
        if let Err(runnable) = worker::try_schedule_local(pool, runnable, woken_while_running) {
            // Off this pool's workers: the task keeps its pool alive while we
            // use it, so clone the `Arc` before handing the task over.
            let pool = runnable.metadata().pool.clone();
            pool.push_remote(runnable);
        }
    }

    /// Queues a task from outside the pool's workers.
    fn push_remote(&self, runnable: Runnable) {
        if self.is_closed() {
            run_cancelled(runnable);
            return;
        }
        let level = runnable.metadata().priority().index();
        self.injector[level].push(runnable);
        // Contains a SeqCst read-modify-write, ordering the push before the
        // `closed` check below (see `shutdown`).
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
    fn pop_injector(&self, level: usize, dest: &Deque<Runnable>) -> Option<Runnable> {
        let injector = &self.injector[level];
        if injector.is_empty() {
            return None;
        }
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
    fn notify_parked(&self) {
        if let Some(index) = self.idle.worker_to_notify() {
            self.slots[index].unparker.unpark();
        }
    }

    /// Whether any queue of the pool holds work.
    fn has_queued_work(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.stealers.iter().any(|s| !s.is_empty()))
            || self.injector.iter().any(|injector| !injector.is_empty())
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

    fn drain_injector(&self) {
        for injector in &self.injector {
            loop {
                match injector.steal() {
                    Steal::Success(task) => run_cancelled(task),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
    }

    /// Number of tasks waiting in the injectors.
    pub(crate) fn injector_len(&self) -> usize {
        self.injector.iter().map(Injector::len).sum()
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

    /// Runs `poll` as a `block_on` poll of this runtime (see `active_blockers`).
    pub(crate) fn blocker_poll<R>(&self, poll: impl FnOnce() -> R) -> R {
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.active_blockers.fetch_add(1, Ordering::SeqCst);
        let _done = Done(&self.active_blockers);
        poll()
    }

    /// With paused time and nothing left to do anywhere in the runtime,
    /// jumps the clock to the next timer and fires it. Returns whether time
    /// moved. Called by whoever is about to sleep (a parking worker, a
    /// `block_on` thread); only the last of them finds the runtime idle.
    pub(crate) fn try_auto_advance(&self) -> bool {
        if !self.timers.clock.is_paused() {
            return false;
        }
        // Held until the wake-ups are delivered: the next idleness check
        // must see the tasks they queued and the `block_on`s they woke.
        let _advancing = self.advancing.lock();
        let idle = self.idle.num_parked() == self.num_workers()
            && self.active_blockers.load(Ordering::SeqCst) == 0
            && !self.has_queued_work();
        if !idle {
            return false;
        }
        #[cfg(feature = "test-util")]
        while let Some(next) = self.timers.next_expiration() {
            // `next` may be a cascade point that fires nothing: go on to the
            // next one until something fires.
            self.timers.clock.advance_to(next);
            if self.timers.fire_all_due() > 0 {
                return true;
            }
        }
        false
    }

    /// Stops the pool and cancels every task it holds; see the module docs.
    /// Idempotent. Called from a worker of this pool, it does not wait for
    /// that worker, which stops once its current poll returns.
    pub(crate) fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Pairs with the read-modify-write in `push_remote`: either the
        // pusher sees `closed`, or our drains below see its task.
        fence(Ordering::SeqCst);
        for slot in self.slots.iter() {
            slot.unparker.unpark();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        let current = thread::current().id();
        for thread in threads {
            if thread.thread().id() != current {
                // A worker only ends by returning; its tasks' panics are
                // caught inside the tasks.
                let _ = thread.join();
            }
        }
        self.drain_injector();
        for waker in self.registry.close() {
            waker.wake();
        }
        self.drain_injector();
        self.timers.shutdown();
        self.hooks.shut_down();
    }
}
