//! A worker with nothing to do: parking (with the runtime's park hook if
//! it has one), waking for timers and paused time, and retiring after the
//! pool's idle timeout.

use std::time::Instant;

use super::core::Core;
use super::local::Local;
use crate::runtime::guard::guard_user;
use crate::runtime::scheduler::counters::bump;
use crate::runtime::scheduler::park::Park;

impl Core {
    /// Sleeps until a producer wakes this worker, its next timer is due, or
    /// the pool closes; or retires the worker after the idle timeout.
    pub(super) fn park(&mut self, local: &Local) {
        // A nudge waited on before parking is stale by the time this
        // worker runs again (see `take_nudge`); so is a drain: the worker
        // found no work anywhere.
        self.nudge_wait = None;
        self.draining = None;
        // Before the worker counts as parked: a reader who sees it parked
        // sees its polls.
        self.publish_polls(local);
        if local.has_local_work() {
            return;
        }
        let pool = &*local.pool;
        if pool
            .idle
            .transition_worker_to_parked(local.index, self.searching)
        {
            // No searcher left: re-check everything (see `idle`).
            pool.notify_if_work_pending();
        }
        self.searching = false;
        if local.has_inbox_work() {
            // Placed or pinned here before we announced that we park; a
            // producer after that would have found us among the sleepers.
            self.searching = !pool.idle.unpark_worker_by_id(local.index);
            return;
        }
        if pool.runtime.try_auto_advance() {
            // Paused time moved; the timers it fired woke tasks onto this
            // worker's queues.
            self.searching = !pool.idle.unpark_worker_by_id(local.index);
            return;
        }
        self.count_park(local);
        // `None`: never (a fixed pool, or an idle timeout too long to
        // represent, which means the same).
        let mut woke_for_timers = false;
        let mut retire_at = (pool.max_workers() > pool.min_workers())
            .then(|| Instant::now().checked_add(pool.idle_timeout))
            .flatten();
        loop {
            if pool.is_closed() {
                pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            let deadline = match (pool.timers.prepare_park(local.index), retire_at) {
                (Some(timer), Some(retire)) => Some(timer.min(retire)),
                (timer, retire) => timer.or(retire),
            };
            let hooked = self.park_hook.is_some() && !pool.runtime.clock.is_paused();
            if hooked {
                if self.park_in_hook(local, deadline) {
                    // The hook returned while running work of its own
                    // (`Park::mark_busy`): unparked, not searching.
                    break;
                }
            } else if let Some(deadline) = deadline {
                self.parker.park_deadline(deadline);
            } else {
                self.parker.park();
            }
            if !pool.idle.is_parked(local.index) {
                // A notifier claimed us and counted us as searching.
                self.searching = true;
                break;
            }
            if hooked && local.has_local_work() {
                // The hook woke tasks onto our queues (see `park`).
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            if self.own_wheel.is_due_now(&pool.timers) || pool.timers.overdue_elsewhere(local.index)
            {
                // Woken for a timer (ours, or a busy sibling's): unpark
                // ourselves (unless a notifier claimed us meanwhile) and
                // fire it below.
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                woke_for_timers = true;
                break;
            }
            if pool.runtime.try_auto_advance() {
                // Woken because time was paused: paused time moved.
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            if retire_at.is_some_and(|at| Instant::now() >= at) {
                if pool.try_retire(local.index) {
                    self.retired = true;
                    return;
                }
                // At `min_workers`, or our wheel holds timers: stay, and
                // look again after another idle timeout.
                retire_at = Instant::now().checked_add(pool.idle_timeout);
            }
        }
        pool.timers.unparked(local.index);
        if woke_for_timers {
            // With full reads of the clock: the run loop's checks ask the
            // coarse one first, which may trail (see `Clock::has_reached`).
            pool.timers.fire_due(local.index, &mut self.fired);
            pool.timers
                .fire_overdue_elsewhere_now(local.index, &mut self.fired);
        }
        let now = Instant::now();
        self.interval_start = (self.tick, now);
        self.refresh_due();
        self.awake_since = (now, self.total_polls());
        if self.park_hook.is_some() && local.local_len() > 1 {
            // The hook woke several tasks onto our queues: let a sibling
            // take some (as tokio's worker does after a driver turn).
            pool.notify_parked();
        }
    }

    /// Counts a park, whether it follows a wake-up without polls (a no-op),
    /// and the time awake before it.
    fn count_park(&self, local: &Local) {
        let counts = &local.counts;
        let (since, polls) = self.awake_since;
        bump(&counts.parks, 1);
        if self.total_polls() == polls {
            bump(&counts.noops, 1);
        }
        let busy = Instant::now().saturating_duration_since(since);
        bump(&counts.busy_ns, busy.as_nanos() as u64);
    }

    /// Runs the busy-tick hook, if any (see `Builder::on_busy_tick`).
    pub(super) fn run_busy_tick(&mut self, local: &Local) {
        let Some(hook) = &self.busy_tick else {
            return;
        };
        if guard_user(
            format_args!(
                "the `Builder::on_busy_tick` hook (on worker {}, which no longer calls it)",
                local.index
            ),
            || hook(),
        )
        .is_none()
        {
            self.busy_tick = None;
        }
    }

    /// Runs the park hook instead of sleeping (see `park`). A hook that
    /// panics is dropped: the worker parks the default way from then on.
    /// Returns whether the hook left the worker unparked (see
    /// `Park::mark_busy`).
    pub(super) fn park_in_hook(&mut self, local: &Local, deadline: Option<Instant>) -> bool {
        let Some(hook) = &self.park_hook else {
            return false;
        };
        let slot = &local.pool.slots[local.index];
        let waker = slot
            .hook_waker
            .as_deref()
            .expect("a runtime with a park hook gives every worker a hook waker");
        let park = Park::new(deadline, &self.parker, waker, &local.pool, local.index);
        local.in_park_hook.set(true);
        let result = park.run_hook(&**hook);
        local.in_park_hook.set(false);
        waker.clear();
        if result.is_none() {
            self.park_hook = None;
        }
        park.is_busy()
    }
}
