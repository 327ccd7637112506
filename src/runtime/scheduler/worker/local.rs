//! The worker state that the schedule function reaches through the
//! thread-local `CURRENT` while a task runs on this worker: its queues,
//! its LIFO slot, its inboxes.

use std::cell::{Cell, RefCell};
use std::ptr;

use crossbeam_deque::Worker as Deque;
use crossbeam_utils::CachePadded;

use super::super::counters::SlotCounts;
use super::super::placement::Inbox;
use super::super::queues::steal;
use super::super::Pool;
use super::Scheduled;
use crate::priority::PerLevel;
use crate::runtime::task::{run_cancelled, Runnable};
use crate::sync::{Arc, OnceLock, Ordering};

/// The sources of a worker's own work at one level: its queue and its
/// three inboxes (see [`Local::pop_own`]).
const OWN_SOURCES: u8 = 4;

/// A task queued on this worker's own queue between two polls (a yield,
/// a LIFO task that lost its turn: [`Local::push_back_after_poll`]) asks
/// whether to wake a parked sibling ([`Pool::notify_parked`]: a `SeqCst`
/// fence and a load of the idle state) only while fewer tasks than this
/// are queued ahead of it. Every other push asks every time.
///
/// * *What it saves.* Every yield asked, a fence each: a tenth of the time
///   of `hotpath_probe yield` (200 tasks yielding on two workers, each
///   queue about 100 deep). tokio asks at every push.
/// * *Why that is enough.* This worker runs its own queue before it parks
///   (and drains it when the pool closes), and between two polls it runs
///   its own loop, not the user's futures (only the hooks a pool may set:
///   the busy-tick hook, a `Scheduler`, a `RunQueue`, timers' wakers).
///   Asking is for parallelism: a parked sibling is woken as soon as this
///   worker holds a task beyond the one it runs next, by the push that
///   took the queue to two tasks (a push inside a poll, or one between
///   polls onto a shorter queue). Every worker that parks is followed by
///   a fenced scan of every queue (its own re-check, or the last
///   searcher's when that one parks) or by a wake-up from the last
///   searcher that found work, and searchers wake each other in a chain
///   (`idle`).
/// * *Why only between polls.* A push inside a poll (a spawn, a wake-up)
///   may be the last thing this worker does for a long time: the poll
///   may block until what it queued has run, which only a sibling can do
///   (`tests/stress.rs`). Such a push asks, and the two fences then order
///   it against a parker's scan: the scan sees the task, or the pusher
///   sees the parker.
/// * *What is weaker between polls.* A task pushed without asking reaches
///   a sibling's scan when its stores do, not in the fences' order. The
///   length is read after the push, so a thief that takes the tasks
///   counted ahead of it does so after the push: its scans miss the task
///   only while the push's stores are on their way, which on x86 is the
///   store buffer's drain (nanoseconds; the next locked instruction, at
///   the latest the next poll's compare-and-swap of its task's state,
///   ends it). The memory model (and so loom, whose models have every
///   push ask) promises only "eventually". If a later poll blocked until
///   a task queued this way had run, and siblings took the tasks ahead of
///   it and parked on scans in that window, the task would wait for this
///   worker. (The task in the LIFO slot is not in a queue at all: no
///   sibling sees it while the task that filled it runs, see `worker`.)
pub(super) const ANNOUNCED_DEPTH: usize = 2;

/// Pops a task from one of the inboxes (an injector queue) if it holds
/// any. The empty check first: a steal from an empty `Injector` costs a
/// `SeqCst` fence, and a worker with inboxes looks at them most ticks.
#[inline]
fn pop_injector_queue(queue: &crossbeam_deque::Injector<Runnable>) -> Option<Runnable> {
    if queue.is_empty() {
        None
    } else {
        steal(|| queue.steal())
    }
}

/// The worker state that the schedule function reaches through the
/// thread-local [`CURRENT`](super::CURRENT) while a task runs on this worker.
pub(super) struct Local {
    pub(super) pool: Arc<Pool>,
    pub(super) index: usize,
    /// This worker slot's counts (the pool's `counters.slots[index]`),
    /// reached without indexing.
    pub(super) counts: Arc<CachePadded<SlotCounts>>,
    pub(super) queues: PerLevel<Deque<Runnable>>,
    /// Only ever holds a task while `run_task` runs on this worker: it is
    /// consumed by `run_task` itself, or pushed to its queue.
    pub(super) lifo: Cell<Option<Runnable>>,
    /// Whether a task woken now may go to the LIFO slot: only while
    /// `run_task` runs a task.
    pub(super) lifo_enabled: Cell<bool>,
    /// Set while the park hook runs on this worker (see `park`).
    pub(super) in_park_hook: Cell<bool>,
    /// This worker's inboxes (its slot's), reached without indexing.
    pub(super) inbox: Arc<OnceLock<Box<Inbox>>>,
    /// Per level, the source of this worker's own work that
    /// [`pop_own`](Self::pop_own) looks at first: 0 its queue, then the
    /// pinned, local and placed inboxes. Per level, as a level's turns come
    /// at its own pace (a level below others is served by its share turns
    /// alone), and one level's picks must not decide another's.
    pub(super) own_next: PerLevel<Cell<u8>>,
    /// Set once the worker ran its last task (its stop hooks run).
    pub(super) stopping: Cell<bool>,
    /// The task being polled (its pointer, which is also its waker's
    /// data), or null: its own waker is trusted (see `runtime::task::waker`).
    pub(super) running: Cell<*const ()>,
    /// Whether the pool reports slow polls: each poll publishes its task
    /// in the slot's `current_poll` (see `monitor`).
    pub(super) publish_polls: bool,
    /// The user's state of this worker slot, if the pool has one (see
    /// `state`); handed back to the slot when the worker retires.
    pub(super) state: RefCell<Option<super::state::State>>,
}

impl Local {
    /// Queues a task scheduled on this worker (see the module docs).
    #[inline]
    pub(super) fn schedule(&self, runnable: Runnable, how: Scheduled) {
        // Only a task woken (or spawned) by the running task goes to the
        // LIFO slot. A yield is a multipool poll's own wake-up, never one
        // to hold; async-task queues it once the poll has returned.
        if how == Scheduled::Yielded {
            self.push_back_after_poll(runnable);
            return;
        }
        if !self.lifo_enabled.get() {
            if how == Scheduled::Woken {
                self.push_back_woken(runnable);
            } else {
                self.push_back(runnable);
            }
            return;
        }
        if let Some(previous) = self.lifo.replace(Some(runnable)) {
            self.push_back(previous);
        }
    }

    /// [`push_back`](Self::push_back) for a woken task, unless this
    /// thread holds wake-ups: woken inside another executor's poll here,
    /// it is queued once that poll has ended (see `hold`).
    #[inline(never)]
    fn push_back_woken(&self, runnable: Runnable) {
        if let Err(runnable) = super::super::hold::try_hold(runnable) {
            self.push_back(runnable);
        }
    }

    /// Pushes a task to the back of its level's queue and makes sure some
    /// worker will look at it.
    #[inline(never)]
    pub(super) fn push_back(&self, runnable: Runnable) {
        self.push_back_quiet(runnable);
        self.announce();
    }

    /// [`push_back`](Self::push_back) for a task queued after a poll has
    /// returned and before the next one starts (a yield, a LIFO task that
    /// lost its turn): a sibling is asked for only while fewer than
    /// [`ANNOUNCED_DEPTH`] tasks are queued ahead of it (see there).
    #[inline(never)]
    pub(super) fn push_back_after_poll(&self, runnable: Runnable) {
        let level = runnable.metadata().level();
        self.push_at(level, runnable);
        // Read after the push (see `ANNOUNCED_DEPTH`): the tasks counted
        // ahead of this one are still there when it is visible.
        if self.queues[level].len() <= ANNOUNCED_DEPTH {
            self.announce();
        }
    }

    /// Makes sure some worker looks at a task just pushed.
    #[inline]
    fn announce(&self) {
        if self.in_park_hook.get() {
            // This worker runs it as soon as its park hook returns; see
            // `park`.
            self.pool.slots[self.index].unparker.unpark();
        } else {
            self.pool.notify_parked();
        }
    }

    /// [`push_back`](Self::push_back) without waking anyone: the task is
    /// in its queue, where siblings may steal it, but none is told. For a
    /// task this worker takes at its next tick anyway (see `run_task`).
    pub(super) fn push_back_quiet(&self, runnable: Runnable) {
        self.push_at(runnable.metadata().level(), runnable);
    }

    #[inline]
    fn push_at(&self, level: usize, runnable: Runnable) {
        self.queues[level].push(runnable);
        self.pool.mark_level(level);
    }

    /// Pops this worker's queue of `level`. The empty check is inlined:
    /// every tick looks at the levels above the one it serves, and those
    /// are empty nearly always.
    #[inline]
    pub(super) fn pop_queue(&self, level: usize) -> Option<Runnable> {
        let queue = &self.queues[level];
        if queue.is_empty() {
            None
        } else {
            queue.pop()
        }
    }

    /// A task of `level` from this worker's own work: its queue and its
    /// inboxes (tasks pinned to it, its `spawn_local` tasks, tasks
    /// placement sent it). Those four take turns, one task each, among the
    /// ones that hold work: no sibling takes from the inboxes while all are
    /// busy, and a task that yields goes back to the same one, so any fixed
    /// order starved the later ones behind a single task yielding in an
    /// earlier one (`tests/fairness.rs`). A worker with no inbox (its pool
    /// never placed, pinned or spawned a local task on it) pays one load.
    #[inline]
    pub(super) fn pop_own(&self, level: usize) -> Option<Runnable> {
        self.pop_own_with(self.inbox(), level)
    }

    /// [`pop_own`](Self::pop_own) with the worker's inboxes looked up
    /// already (once a tick for all levels).
    #[inline]
    pub(super) fn pop_own_with(&self, inbox: Option<&Inbox>, level: usize) -> Option<Runnable> {
        match inbox {
            None => self.pop_queue(level),
            Some(inbox) => self.pop_own_in_turn(inbox, level),
        }
    }

    #[inline(never)]
    fn pop_own_in_turn(&self, inbox: &Inbox, level: usize) -> Option<Runnable> {
        let next = &self.own_next[level];
        let first = next.get();
        for offset in 0..OWN_SOURCES {
            let source = (first + offset) % OWN_SOURCES;
            let task = match source {
                0 => self.pop_queue(level),
                1 => pop_injector_queue(&inbox.pinned[level]),
                2 => pop_injector_queue(&inbox.local[level]),
                _ => self.pop_placed(inbox, level),
            };
            if task.is_some() {
                next.set((source + 1) % OWN_SOURCES);
                return task;
            }
        }
        None
    }

    /// Whether a queue this worker serves holds work more urgent than
    /// `level`: its own queues and inboxes, and the injectors.
    #[inline]
    pub(super) fn more_urgent_queued(&self, level: usize) -> bool {
        let inbox = self.inbox();
        (0..level).any(|l| {
            !self.queues[l].is_empty()
                || !self.pool.injector_is_empty(l)
                || inbox.is_some_and(|inbox| inbox.holds(l))
        })
    }

    /// Whether this worker's queues or inboxes hold work (the LIFO slot is
    /// always empty between ticks).
    #[inline]
    pub(super) fn has_local_work(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty()) || self.has_inbox_work()
    }

    /// Number of tasks in this worker's queues.
    pub(super) fn local_len(&self) -> usize {
        self.queues.iter().map(Deque::len).sum()
    }

    #[inline]
    pub(super) fn inbox(&self) -> Option<&Inbox> {
        self.inbox.get().map(|inbox| &**inbox)
    }

    #[inline]
    pub(super) fn has_inbox_work(&self) -> bool {
        self.inbox().is_some_and(|inbox| !inbox.is_empty())
    }

    /// A task of `level` placed on this worker, and a batch more moved to
    /// its queue.
    fn pop_placed(&self, inbox: &Inbox, level: usize) -> Option<Runnable> {
        let placed = &inbox.placed[level];
        if placed.is_empty() {
            return None;
        }
        let queue = &self.queues[level];
        let start = queue.len();
        let task = steal(|| placed.steal_batch_and_pop(queue))?;
        if queue.len() > start {
            // Siblings steal from the placed inbox too (see `batch_moved`).
            self.pool.batch_moved(level);
        }
        Some(task)
    }

    /// Cancels every task this worker holds, on its way out; the pool is
    /// closed. Local (`!Send`) tasks are cancelled here, on their own
    /// thread: the ones that wait are woken (each wake-up puts the task in
    /// the local inbox, see `Pool::push_local`). Cancelling a task can wake
    /// others onto this worker's queues (a task awaiting a local task's
    /// handle, a future whose destructor wakes another), so the queues and
    /// the local inbox are drained together until both stay empty and
    /// every local task's future is dropped (a wake-up from another thread
    /// may still be on its way into the inbox).
    pub(super) fn cancel_everything(&self) {
        let slot = &self.pool.slots[self.index];
        // Only set while a task runs; an unwind out of `run_task` may have
        // left it set, and a task in the slot.
        self.lifo_enabled.set(false);
        for waker in slot.local_registry.close() {
            waker.wake();
        }
        loop {
            let mut cancelled = false;
            let mut cancel = |task| {
                run_cancelled(task);
                cancelled = true;
            };
            if let Some(task) = self.lifo.take() {
                cancel(task);
            }
            for queue in &self.queues {
                while let Some(task) = queue.pop() {
                    cancel(task);
                }
            }
            if let Some(inbox) = self.inbox() {
                inbox.drain(&mut cancel);
                inbox.drain_local(&mut cancel);
            }
            if !cancelled {
                if slot.local_alive.load(Ordering::SeqCst) == 0 {
                    return;
                }
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `task` on `local`'s worker. While it runs, its own waker is
/// trusted (see `runtime::task::waker`): a task awaiting a `JoinHandle` then costs no
/// guard. Two plain stores per poll. (The caller publishes the poll for
/// the slow-poll report first, see [`Local::publish_poll`]: it knows
/// whether the pool needs any such extra.)
#[inline]
pub(super) fn poll_task(local: &Local, task: Runnable) {
    let raw = task.into_raw();
    // SAFETY: `raw` comes from `Runnable::into_raw` just above and is
    // turned back into exactly one `Runnable`.
    let task = unsafe { Runnable::from_raw(raw) };
    // async-task's waker for this task has the task pointer as its data.
    local.running.set(raw.as_ptr().cast_const());
    task.run();
    local.running.set(ptr::null());
}

impl Local {
    /// Publishes the task about to be polled, for the monitor's slow-poll
    /// report (only in pools that report slow polls). Called in pools with
    /// per-poll extras (see `Core::per_poll_extras`).
    #[inline]
    pub(super) fn publish_poll(&self, task: &Runnable) {
        if self.publish_polls {
            self.publish_poll_now(task);
        }
    }

    #[cold]
    fn publish_poll_now(&self, task: &Runnable) {
        let meta = task.metadata();
        *self.pool.slots[self.index].current_poll.lock() =
            Some((meta.id(), meta.name().cloned(), meta.priority()));
    }
}
