//! A worker thread: the loop that finds tasks, runs them, steals and parks.
//!
//! # Order in which a worker looks for work
//!
//! For each level, High first:
//! 1. every [`GLOBAL_QUEUE_INTERVAL`]th tick, the injector first, so work from
//!    outside the pool cannot be starved by tasks that keep spawning locally;
//! 2. the LIFO slot, if its task is of this level;
//! 3. its own queue;
//! 4. the injector (taking a batch into its own queue);
//! 5. for High and Normal, when the pool's level hint says a sibling may hold
//!    such work: a batch stolen from a sibling, so a busy worker does not run
//!    Low work while a High task waits in another worker's queue.
//!
//! With nothing found it becomes a *searcher* (see `idle`) and steals from
//! its siblings, most urgent level first; failing that it parks until a
//! producer wakes it.
//!
//! # The LIFO slot
//!
//! A task woken by the task running on this worker is run right after it
//! (message passing between two tasks then costs no queue round-trip). At
//! most [`MAX_LIFO_POLLS`] slot tasks run in a row; then the slot is disabled
//! until the worker polls a task from a queue, so two tasks waking each other
//! cannot starve the rest. The slot is also skipped while more urgent work is
//! queued, so it never bends priority order.

use std::cell::Cell;
use std::ptr;

use crossbeam_deque::{Steal, Worker as Deque};

use super::Pool;
use crate::runtime::{context, Handle};
use crate::sync::Arc;
use crate::task::{run_cancelled, Runnable};
use crate::Priority;

/// How often (in ticks) the injector is checked before the local queues.
/// tokio seeds its self-tuning interval at 61; Go uses 61.
const GLOBAL_QUEUE_INTERVAL: u32 = 61;

/// Longest run of LIFO-slot polls before the slot is disabled (as in tokio).
pub(crate) const MAX_LIFO_POLLS: u32 = 3;

/// What a worker thread is started with.
pub(crate) struct WorkerParts {
    pub(crate) index: usize,
    pub(crate) queues: [Deque<Runnable>; Priority::COUNT],
    pub(crate) parker: parking::Parker,
}

/// The worker state that the schedule function reaches through the
/// thread-local [`CURRENT`] while a task runs on this worker.
struct Local {
    pool: Arc<Pool>,
    index: usize,
    queues: [Deque<Runnable>; Priority::COUNT],
    lifo: Cell<Option<Runnable>>,
    lifo_enabled: Cell<bool>,
}

/// State only the worker loop touches.
struct Core {
    tick: u32,
    searching: bool,
    lifo_polls: u32,
    rng: u32,
    parker: parking::Parker,
}

thread_local! {
    /// The worker running on this thread, or null. Set for the whole life of
    /// a worker thread, to a `Local` that outlives the setting.
    static CURRENT: Cell<*const Local> = const { Cell::new(ptr::null()) };
}

/// Calls `f` with the worker running on this thread, if there is one.
fn with_local<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    let ptr = CURRENT.try_with(Cell::get).unwrap_or(ptr::null());
    // SAFETY: a non-null `CURRENT` points to the `Local` on the stack of
    // `run` on this very thread, which resets it to null before that `Local`
    // is dropped (see `CurrentGuard`). The reference does not escape `f`.
    f(unsafe { ptr.as_ref() })
}

/// The index of the worker running on this thread, if any.
pub(crate) fn current_index() -> Option<usize> {
    with_local(|local| local.map(|local| local.index))
}

/// Schedules `runnable` on this thread's worker if that worker belongs to
/// `pool`; hands the task back otherwise.
pub(crate) fn try_schedule_local(
    pool: *const Pool,
    runnable: Runnable,
    is_yield: bool,
) -> Result<(), Runnable> {
    with_local(|local| match local {
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) => {
            local.schedule(runnable, is_yield);
            Ok(())
        }
        _ => Err(runnable),
    })
}

/// Resets [`CURRENT`] when the worker stops, even by unwinding.
struct CurrentGuard;

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(ptr::null()));
    }
}

/// The body of a worker thread.
pub(crate) fn run(pool: Arc<Pool>, parts: WorkerParts) {
    let _enter = context::enter(Handle::from_pool(pool.clone()));
    let local = Local {
        pool,
        index: parts.index,
        queues: parts.queues,
        lifo: Cell::new(None),
        lifo_enabled: Cell::new(true),
    };
    let mut core = Core {
        tick: 0,
        searching: false,
        lifo_polls: 0,
        // Any non-zero seed works for xorshift.
        rng: (parts.index as u32).wrapping_mul(0x9E37_79B9) | 1,
        parker: parts.parker,
    };
    CURRENT.with(|current| current.set(&local));
    let _guard = CurrentGuard;
    core.run(&local);
    local.cancel_all();
}

impl Local {
    /// Queues a task scheduled on this worker (see the module docs).
    fn schedule(&self, runnable: Runnable, is_yield: bool) {
        if is_yield || !self.lifo_enabled.get() {
            self.push_back(runnable);
            return;
        }
        if let Some(previous) = self.lifo.replace(Some(runnable)) {
            self.push_back(previous);
        }
    }

    /// Pushes a task to the back of its level's queue and makes sure some
    /// worker will look at it.
    fn push_back(&self, runnable: Runnable) {
        let level = runnable.metadata().priority().index();
        self.queues[level].push(runnable);
        self.pool.mark_level(level);
        self.pool.notify_parked();
    }

    /// Whether a queue this worker serves holds work more urgent than `level`.
    fn more_urgent_queued(&self, level: usize) -> bool {
        (0..level).any(|l| !self.queues[l].is_empty() || !self.pool.injector[l].is_empty())
    }

    fn has_local_work(&self) -> bool {
        // SAFETY-free peek: take and put back.
        let lifo = self.lifo.take();
        let has = lifo.is_some();
        self.lifo.set(lifo);
        has || self.queues.iter().any(|q| !q.is_empty())
    }

    /// Cancels every task in this worker's queues; the pool is closed.
    fn cancel_all(&self) {
        loop {
            let mut cancelled = false;
            if let Some(task) = self.lifo.take() {
                run_cancelled(task);
                cancelled = true;
            }
            for queue in &self.queues {
                while let Some(task) = queue.pop() {
                    run_cancelled(task);
                    cancelled = true;
                }
            }
            // Cancelling a task can wake others onto this worker's queues.
            if !cancelled {
                return;
            }
        }
    }
}

impl Core {
    fn run(&mut self, local: &Local) {
        while !local.pool.is_closed() {
            self.tick = self.tick.wrapping_add(1);
            if let Some(task) = self.next_task(local) {
                self.run_task(local, task);
            } else if let Some(task) = self.steal_work(local) {
                self.run_task(local, task);
            } else {
                self.park(local);
            }
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: cheap, and good enough to pick a steal victim.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Finds the next task without becoming a searcher (see the module docs).
    fn next_task(&mut self, local: &Local) -> Option<Runnable> {
        let pool = &*local.pool;
        let injector_first = self.tick % GLOBAL_QUEUE_INTERVAL == 0;
        for level in 0..Priority::COUNT {
            if injector_first {
                if let Some(task) = pool.pop_injector(level, &local.queues[level]) {
                    return Some(task);
                }
            }
            if let Some(task) = local.lifo.take() {
                if task.metadata().priority().index() == level {
                    return Some(task);
                }
                local.lifo.set(Some(task));
            }
            if let Some(task) = local.queues[level].pop() {
                return Some(task);
            }
            if !injector_first {
                if let Some(task) = pool.pop_injector(level, &local.queues[level]) {
                    return Some(task);
                }
            }
            if level < Priority::Low.index() && pool.level_marked(level) {
                if let Some(task) = self.steal_level(local, level) {
                    return Some(task);
                }
            }
        }
        None
    }

    /// Steals a batch of `level` tasks from a sibling, starting at a random
    /// one. Clears the pool's hint for the level when every sibling is empty.
    fn steal_level(&mut self, local: &Local, level: usize) -> Option<Runnable> {
        let slots = &local.pool.slots;
        let start = self.next_random() as usize % slots.len();
        loop {
            let mut retry = false;
            for offset in 0..slots.len() {
                let victim = (start + offset) % slots.len();
                if victim == local.index {
                    continue;
                }
                match slots[victim].stealers[level].steal_batch_and_pop(&local.queues[level]) {
                    Steal::Success(task) => return Some(task),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                if level < Priority::Low.index() {
                    local.pool.clear_level(level);
                }
                return None;
            }
        }
    }

    /// Becomes a searcher (if not too many are) and steals, most urgent level
    /// first, from siblings and then the injector.
    fn steal_work(&mut self, local: &Local) -> Option<Runnable> {
        if !self.searching {
            self.searching = local.pool.idle.transition_worker_to_searching();
            if !self.searching {
                return None;
            }
        }
        for level in 0..Priority::COUNT {
            if let Some(task) = self.steal_level(local, level) {
                return Some(task);
            }
            if let Some(task) = local.pool.pop_injector(level, &local.queues[level]) {
                return Some(task);
            }
        }
        None
    }

    /// Polls `task`, then whatever it put in the LIFO slot (bounded).
    fn run_task(&mut self, local: &Local, task: Runnable) {
        if self.searching {
            self.searching = false;
            // The last searcher to find work wakes another worker to search
            // on: there may be more where this came from.
            if local.pool.idle.transition_worker_from_searching() {
                local.pool.notify_parked();
            }
        }
        local.lifo_enabled.set(true);
        self.lifo_polls = 0;
        task.run();
        while let Some(task) = local.lifo.take() {
            let level = task.metadata().priority().index();
            if self.lifo_polls >= MAX_LIFO_POLLS {
                local.lifo_enabled.set(false);
                local.push_back(task);
                return;
            }
            if local.more_urgent_queued(level) || local.pool.is_closed() {
                // Leave it for `next_task`, which serves levels in order.
                local.lifo.set(Some(task));
                return;
            }
            self.lifo_polls += 1;
            task.run();
        }
    }

    /// Sleeps until a producer wakes this worker or the pool closes.
    fn park(&mut self, local: &Local) {
        if local.has_local_work() {
            return;
        }
        let pool = &*local.pool;
        if pool
            .idle
            .transition_worker_to_parked(local.index, self.searching)
        {
            // Last searcher: re-check everything (see `idle`).
            pool.notify_if_work_pending();
        }
        self.searching = false;
        loop {
            if pool.is_closed() {
                pool.idle.unpark_worker_by_id(local.index);
                return;
            }
            self.parker.park();
            if !pool.idle.is_parked(local.index) {
                // A notifier claimed us and counted us as searching.
                self.searching = true;
                return;
            }
        }
    }
}
