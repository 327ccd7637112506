//! The shared queues as the workers see them: taking work from the
//! injectors, asking whether any queue holds work, and the level hint.
//!
//! Invariants:
//! * The injector of a level is replaced by the user's `RunQueue` for that
//!   level when there is one; the injector then only holds tasks that
//!   queue dropped (to be run cancelled), which are taken first.
//! * `level_hint` is a hint: a set bit may be stale (cleared by the next
//!   scan that finds nothing), and a push racing with such a scan may stay
//!   unmarked (its owner still runs it after its current poll). Exact
//!   marking would cost a `SeqCst` fence on every push.

use crossbeam_deque::{Steal, Worker as Deque};

use super::run_queue::QueuedTask;
use super::Pool;
use crate::priority::{levels, LevelSet};
use crate::runtime::guard::guard_user;
use crate::runtime::task::Runnable;
use crate::sync::Ordering;
use crate::Priority;

/// Most tasks a worker takes from an injector at once (the one it runs and
/// the batch it moves), and the bound on moving: a batch moved from an
/// injector brings the worker's queue at that level to at most one less
/// than this. Past that, an injector turn takes the one task it runs, so a
/// worker never takes in more remote work than it can start soon (see
/// [`Pool::pop_injector`]). Local spawns, wake-ups and yields still queue
/// without bound.
const MAX_INJECT_BATCH: usize = 256;

/// Runs a steal operation until it gives a definite answer: the task, or
/// `None` for an empty queue. (`Steal::Retry` means it lost a race with
/// another thief and the queue may still hold work.)
#[inline]
pub(super) fn steal<T>(mut op: impl FnMut() -> Steal<T>) -> Option<T> {
    loop {
        match op() {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => {}
        }
    }
}

impl Pool {
    /// Pops one task from the injector at `level` and moves a batch more
    /// into `dest` (the caller's own queue for that level): this worker's
    /// fair share of what waits, `len / workers + 1`, but no more than
    /// brings `dest` to `MAX_INJECT_BATCH - 1`. Taking many at once is what
    /// keeps a burst of remote spawns from trickling in while the worker
    /// also has local work.
    ///
    /// Why the fill bound: a worker that took a full share at every
    /// injector turn, from a producer faster than the pool, grew its own
    /// queue without bound. Every task that queue held had been started
    /// (its timers armed, its registry entry made) and waited behind all
    /// the others, so its memory was cold by its next poll: timer churn
    /// spawned from outside cost 4 to 10 times more per timer than spawned
    /// inside (`timer_churn_remote`; README, "Performance", stop 30). The
    /// rest waits in the injector, where siblings take it too.
    ///
    /// With the task comes whether the injector held more than was taken,
    /// by the length read to size the batch: a worker that drains it needs
    /// no second look at lines producers write (see `worker::core`). Always
    /// `false` at a level with a user's queue.
    ///
    /// The empty check is inlined: every tick looks at the levels above the
    /// one it serves, and those are empty nearly always.
    #[inline]
    pub(super) fn pop_injector(
        &self,
        level: usize,
        dest: &Deque<Runnable>,
    ) -> Option<(Runnable, bool)> {
        if !self.has_custom_queues && self.injector[level].is_empty() {
            return None;
        }
        self.pop_injector_slow(level, dest)
    }

    #[inline(never)]
    fn pop_injector_slow(&self, level: usize, dest: &Deque<Runnable>) -> Option<(Runnable, bool)> {
        if let Some(queue) = &self.custom_queues[level] {
            // Tasks the queue dropped first (they only need cancelling),
            // then one at a time: the user's queue keeps deciding the order.
            if let Some(task) = steal(|| self.injector[level].steal()) {
                return Some((task, false));
            }
            return guard_user("`RunQueue::pop`", || queue.pop())
                .flatten()
                .map(|task| (QueuedTask::into_runnable(task), false));
        }
        let injector = &self.injector[level];
        if injector.is_empty() {
            return None;
        }
        // Shared among the slots in use rather than the workers running
        // now: no read of the contended idle state on this path, and no
        // share for the dormant slots of an elastic pool.
        let len = injector.len();
        let share = len / self.used_slots().len().max(1) + 1;
        let room = MAX_INJECT_BATCH.saturating_sub(dest.len()).max(1);
        let want = share.min(room);
        // The popped task counts towards `want`.
        let start = dest.len();
        let target = start + want - 1;
        let task = steal(|| injector.steal_batch_with_limit_and_pop(dest, want))?;
        // crossbeam moves at most half the queue (and one block) per call.
        while dest.len() < target {
            let before = dest.len();
            match injector.steal_batch_with_limit(dest, target - before) {
                Steal::Success(()) if dest.len() > before => {}
                Steal::Retry => {}
                _ => break,
            }
        }
        if dest.len() > start {
            self.batch_moved(level);
        }
        Some((task, len > want))
    }

    /// Called by a worker that has moved tasks from a queue siblings
    /// search (the injector, its placed inbox, a sibling's queue) into its
    /// own, after the move. While a batch is on its way it is in neither
    /// queue, and a searcher that looks then finds both empty and may park
    /// as the last one, its re-check as blind as its search. The fence in
    /// `notify_parked` orders the move before the read of the idle state,
    /// against whatever parks after it (whose re-check then sees the
    /// batch), and wakes a sleeper if nobody searches any more: otherwise
    /// a task of the batch could wait behind one that blocks this worker.
    /// (tokio has the same window and no such call; model-checked in
    /// `loom/`.) One fence a batch.
    ///
    /// The batch is marked in the level hint too, as a push is: a busy
    /// sibling serving a lower level then steals it if this worker stays
    /// in one poll.
    #[cold]
    pub(super) fn batch_moved(&self, level: usize) {
        self.mark_level(level);
        self.notify_parked();
    }

    /// Whether the injector of `level` (or the user's queue) is empty.
    #[inline]
    pub(crate) fn injector_is_empty(&self, level: usize) -> bool {
        self.injector[level].is_empty()
            && (!self.has_custom_queues || self.custom_queue_is_empty(level))
    }

    /// The user's queue of `level` (if it has one) is empty; out of line,
    /// so the callers of [`injector_is_empty`](Self::injector_is_empty)
    /// on the hot path stay small enough to inline.
    #[cold]
    fn custom_queue_is_empty(&self, level: usize) -> bool {
        self.custom_queues[level].as_ref().is_none_or(|queue| {
            guard_user("`RunQueue::is_empty`", || queue.is_empty()).unwrap_or(true)
        })
    }

    /// Tasks in the injector of `level` (or the user's queue).
    pub(crate) fn injector_len_at(&self, level: usize) -> usize {
        self.injector[level].len()
            + self.custom_queues[level].as_ref().map_or(0, |queue| {
                guard_user("`RunQueue::len`", || queue.len()).unwrap_or(0)
            })
    }

    /// Whether any queue of the pool holds work that any worker may take
    /// (pinned tasks wait for their own worker, which is woken by name).
    pub(super) fn has_queued_work(&self) -> bool {
        self.used_slots().iter().any(|slot| {
            slot.stealers.iter().any(|s| !s.is_empty())
                || slot
                    .inbox
                    .get()
                    .is_some_and(|inbox| inbox.placed.iter().any(|q| !q.is_empty()))
        }) || levels().any(|level| !self.injector_is_empty(level))
    }

    /// Whether every worker is parked and no queue holds work.
    #[cfg(feature = "test-util")]
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.num_parked() == self.idle.num_active()
            && !self.has_queued_work()
            && self
                .slots
                .iter()
                .all(|slot| slot.inbox.get().is_none_or(|inbox| inbox.is_empty()))
    }

    /// Wakes a worker if any queue holds work. Run by a worker that parks
    /// leaving no searcher behind (see `idle`), so work queued while it
    /// searched, or while it could not search, is not left behind.
    pub(super) fn notify_if_work_pending(&self) {
        if self.has_queued_work() {
            self.notify_parked();
        }
    }

    /// Notes that a local queue may hold a task of `level`.
    #[inline]
    pub(super) fn mark_level(&self, level: usize) {
        if level < Priority::Low.index() && !self.level_marked(level) {
            self.level_hint
                .fetch_or(LevelSet::level(level).bits(), Ordering::Relaxed);
        }
    }

    #[inline]
    pub(super) fn level_marked(&self, level: usize) -> bool {
        LevelSet::from_bits(self.level_hint.load(Ordering::Relaxed)).contains(level)
    }

    pub(super) fn clear_level(&self, level: usize) {
        self.level_hint
            .fetch_and(!LevelSet::level(level).bits(), Ordering::Relaxed);
    }
}
