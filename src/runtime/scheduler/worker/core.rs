//! The worker loop: finding the next task in priority order (with the
//! minimum shares and the injector interval), running it and what it put
//! in the LIFO slot, and stealing from siblings. See the module docs of
//! `worker` for the order.

use std::time::{Duration, Instant};

use crossbeam_deque::Steal;

use super::local::{poll_task, Local};
use crate::priority::{levels, PerLevel};
use crate::runtime::guard::guard_user;
use crate::runtime::hooks::{Hook, Hooks, ParkHook};
use crate::runtime::scheduler::counters::bump;
use crate::runtime::scheduler::{SchedulerContext, NO_SHARE};
use crate::runtime::task::Runnable;
use crate::runtime::time::driver::OwnWheel;
use crate::sync::Ordering;
use crate::Priority;

/// How long, at most, work in the injector waits behind local work: the
/// injector interval is this divided by the mean poll time. tokio targets
/// 200 µs; half that keeps a burst of remote spawns from waiting behind long
/// local polls (`spawn_many_remote_busy*` in the benches).
const INJECTOR_TARGET: Duration = Duration::from_micros(100);

/// Upper bound of the injector interval in ticks (tokio seeds its interval
/// at 61, as Go fixes it).
const MAX_INJECTOR_INTERVAL: u32 = 61;

/// Lower bound of the injector interval in ticks, and the least gap
/// between two injector-first ticks of either kind: at 1 every tick could
/// serve the injector first, and a producer that keeps it full would
/// starve the worker's own queue. At 2 the two alternate at worst (tokio's
/// lower bound is 2 as well).
const MIN_INJECTOR_INTERVAL: u32 = 2;

/// How long a nudge (a push that found every worker busy, see
/// `Pool::injector_nudge`) waits at a worker that keeps finding its own
/// work, before that worker serves the injectors first: a tenth of
/// [`INJECTOR_TARGET`]. Polls that short reach the periodic turn sooner;
/// the nudge is for longer ones, where the periodic turn, tuned on the
/// polls of the interval before, may be 61 polls away (see `take_nudge`).
const NUDGE_WAIT: Duration = Duration::from_micros(10);

/// Longest run of LIFO-slot polls after a task (as in tokio).
pub(super) const MAX_LIFO_POLLS: u32 = 3;

/// The LIFO slot only pays off for short polls (message passing); a run of
/// slot polls is cut once it would exceed this much time at the mean poll
/// time, so long polls cannot use the slot to jump ahead of queued work.
const LIFO_BUDGET: Duration = Duration::from_micros(10);

/// Spin hints a searcher waits, after yielding its core, before it looks
/// at the queues again: about 3 µs on an AMD EPYC (longer where a
/// `pause` is, as on recent Intel cores; not measured there). A look
/// reads the injectors' tails, the cache lines a producer writes at each
/// push. With nothing else to run, `sched_yield`
/// returns within a microsecond, so a searcher that looked right after it
/// took those lines from a thread spawning every few hundred nanoseconds
/// at about every other push: `spawn_many_remote_idle` is 0.87-0.89x with
/// 96 hints against 1.00 with none (0.96 with 32; README, "Stop 37,
/// continued").
/// The core is held that long at a time, not for the whole `search_spin`,
/// so a thread that wants it (a client, a producer) waits at most that:
/// hyper's idle p99 stays below tokio's (0.81-0.89x, against 0.80-0.81
/// with none).
const LOOK_PAUSES: u32 = 96;

/// Under miri, where every look costs thousands of times more, a searcher
/// looks at most once more (after one yield), whatever `search_spin` says:
/// that path stays checked without dominating the run.
#[cfg(miri)]
const MIRI_SPIN_ROUNDS: u32 = 1;

/// Whether `tick` has reached `due` (tick counters wrap).
pub(super) fn tick_reached(tick: u32, due: u32) -> bool {
    (tick.wrapping_sub(due) as i32) >= 0
}

/// A nudge a worker waits on (see `Core::take_nudge`), from the first
/// tick that saw it until the worker next looks at the injectors.
pub(super) struct NudgeWait {
    /// Ticks since the first that looked at it.
    looks: u32,
    /// The first reading of the clock since.
    since: Option<Instant>,
}

/// The next fairness turn of each level below High (see `Core::fair_turn`).
pub(super) struct FairTurns {
    /// Whether any level has a minimum share.
    pub(super) enabled: bool,
    /// Per level: the tick its next turn is due.
    pub(super) due: PerLevel<u32>,
    /// The earliest of `due` over the levels with a share.
    pub(super) next: u32,
}

impl FairTurns {
    /// `every_tick`: a user's `Scheduler` is asked at every tick.
    pub(super) fn new(shares: &PerLevel<u32>, every_tick: bool) -> Self {
        let due = shares.map(|share| if share == NO_SHARE { 0 } else { share });
        let mut turns = FairTurns {
            enabled: every_tick || shares.iter().any(|&share| share != NO_SHARE),
            due,
            next: 0,
        };
        turns.next = turns.earliest(shares, 0);
        turns
    }

    /// The earliest due tick at or after `tick` over the levels with a share.
    pub(super) fn earliest(&self, shares: &PerLevel<u32>, tick: u32) -> u32 {
        levels()
            .filter(|&level| shares[level] != NO_SHARE)
            .map(|level| self.due[level])
            // Signed: a turn already due (both were due on one tick) is
            // the earliest.
            .min_by_key(|&due| due.wrapping_sub(tick) as i32)
            .unwrap_or(tick)
    }
}

/// A backlog from outside that a worker drains at one level: its last
/// pop of that level's injector moved a batch into its queue, or left the
/// injector holding work. The drain lasts while the batch may still be
/// ahead in the queue, and after that while the injector holds work (see
/// [`Core::drain_on`]). Meanwhile:
/// * a task of that level woken by the running one queues behind the
///   batch instead of taking the LIFO slot (see `backlog_waits`);
/// * the worker leaves a nudge to the drain while the batch is ahead (see
///   `take_nudge`);
/// * once the batch is reached, the first tick that is at least
///   [`MIN_INJECTOR_INTERVAL`] ticks after the last injector-first one
///   refills the queue from the injector, if it still holds work and
///   nothing more urgent is queued (see `refill_due`).
///
/// A worker keeps one drain: a pop that starts one at another level
/// replaces it (as a share turn's pop of a lower level does while a batch
/// is ahead), and one that parks ends it.
///
/// Never at a level with a user's `RunQueue`, nor in a pool with a user's
/// `Scheduler` (see `pop_injector_and_drain`).
#[derive(Clone, Copy)]
pub(super) struct Drain {
    pub(super) level: usize,
    /// The tick by which the batch has been reached: the tick of the move
    /// plus what the queue held after it, at one pop a tick. An estimate,
    /// which spares the injector a look at each check until then: ticks
    /// spent on inbox turns, share turns, more urgent levels and LIFO runs
    /// delay the batch, and steals hasten it (a queue found empty has
    /// reached it: see [`Core::batch_ahead`]). Once reached, kept at most
    /// 61 ticks behind the worker's tick (`tune_injector_interval`), so it
    /// never wraps round to look ahead again.
    pub(super) batch_end: u32,
}

/// State only the worker loop touches.
pub(super) struct Core {
    pub(super) tick: u32,
    /// The earliest tick at which the injector interval's tuning, the
    /// periodic injector turn or a fairness turn may be due (see
    /// [`refresh_due`](Self::refresh_due)): the usual tick, with none of
    /// them due, costs one comparison for the three. None of them is due
    /// before it; it may be reached with none due (a deadline moved later,
    /// as when the worker parks), which costs one look at each.
    pub(super) next_due: u32,
    /// Ticks between two injector-first checks; see `INJECTOR_TARGET`.
    pub(super) injector_interval: u32,
    /// LIFO polls allowed in a row at the current mean poll time; see
    /// `LIFO_BUDGET`.
    pub(super) lifo_cap: u32,
    /// A backlog from outside this worker drains (see [`Drain`]).
    pub(super) draining: Option<Drain>,
    /// Per level, whether [`pop_level`](Self::pop_level) looks at the
    /// injector first.
    pub(super) injector_next: PerLevel<bool>,
    /// The tick of the last injector-first tick, from which the next
    /// periodic turn counts.
    pub(super) injector_checked: u32,
    /// The last tick this worker looked at the injectors: an
    /// injector-first tick, or one that took a task from an injector after
    /// finding its own work of that level empty. Each such look serves the
    /// nudge this worker waited on (see [`looked_at_injectors`]).
    ///
    /// [`looked_at_injectors`]: Self::looked_at_injectors
    injector_looked: u32,
    /// A nudge this worker saw and has not served yet (see `take_nudge`).
    pub(super) nudge_wait: Option<NudgeWait>,
    /// Tick and time of the last tuning of the injector interval (once
    /// per interval), to measure the mean poll time; reset after parking
    /// so idle time does not count.
    pub(super) interval_start: (u32, Instant),
    pub(super) searching: bool,
    /// Set when the worker retired (see the module docs): the loop ends.
    pub(super) retired: bool,
    /// Mirror of this worker's `Slot::activity`.
    pub(super) activity: u64,
    /// Whether `Slot::activity` is kept (only elastic pools have a monitor
    /// to read it).
    pub(super) track_activity: bool,
    /// `track_activity || publish_polls || custom_scheduler`: one check
    /// per poll in pools that need none of them.
    pub(super) per_poll_extras: bool,
    /// When each level's next fairness turn is due (see `fair_turn`).
    pub(super) fair: FairTurns,
    /// Polls per level since the worker slot was created: kept here on the
    /// hot path, published to the slot's counters (see `publish_polls`)
    /// for the metrics, and shown to a user's `Scheduler`.
    pub(super) polls: PerLevel<u64>,
    pub(super) custom_scheduler: bool,
    pub(super) lifo_polls: u32,
    pub(super) rng: u32,
    pub(super) parker: parking::Parker,
    /// Reused buffer for the wakers of fired timers.
    pub(super) fired: Vec<std::task::Waker>,
    /// This worker's timer wheel, checked at every tick.
    pub(super) own_wheel: OwnWheel,
    /// The runtime's park hook; dropped if it panics.
    pub(super) park_hook: Option<ParkHook>,
    /// The runtime's busy-tick hook; dropped if it panics.
    pub(super) busy_tick: Option<Hook>,
    /// When the worker last woke, and its poll count then (for the busy
    /// time and no-op parks of the metrics).
    pub(super) awake_since: (Instant, u64),
}

impl Core {
    /// The loop state of the worker `local`, with its parker and the
    /// runtime's hooks.
    pub(super) fn new(local: &Local, parker: parking::Parker, hooks: &Hooks) -> Self {
        let mut core = Core {
            tick: 0,
            next_due: 0,
            injector_interval: MAX_INJECTOR_INTERVAL,
            lifo_cap: MAX_LIFO_POLLS,
            draining: None,
            injector_next: [false; Priority::COUNT],
            injector_checked: 0,
            injector_looked: 0,
            nudge_wait: None,
            interval_start: (0, Instant::now()),
            searching: false,
            retired: false,
            activity: local.pool.slots[local.index]
                .activity
                .load(Ordering::Relaxed),
            fair: FairTurns::new(&local.pool.min_shares, local.pool.scheduler.is_some()),
            // Continues the slot's count across a worker's retirement.
            polls: std::array::from_fn(|level| local.counts.polls[level].load(Ordering::Relaxed)),
            custom_scheduler: local.pool.scheduler.is_some(),
            track_activity: local.pool.max_workers() > local.pool.min_workers()
                || local.publish_polls,
            per_poll_extras: local.pool.max_workers() > local.pool.min_workers()
                || local.publish_polls
                || local.pool.scheduler.is_some(),
            lifo_polls: 0,
            // Any non-zero seed works for xorshift.
            rng: (local.index as u32).wrapping_mul(0x9E37_79B9) | 1,
            parker,
            fired: Vec::new(),
            own_wheel: local.pool.timers.own_wheel(local.index),
            park_hook: hooks.park.clone(),
            busy_tick: hooks.busy_tick.clone(),
            awake_since: (Instant::now(), 0),
        };
        core.refresh_due();
        core
    }

    /// Re-derives [`next_due`](Self::next_due) after one of its deadlines
    /// moved: the end of the injector interval (its tuning), the periodic
    /// injector turn, and the next fairness turn (where any level has a
    /// share). Run wherever one of them may move earlier.
    pub(super) fn refresh_due(&mut self) {
        let tick = self.tick;
        let tuning = self.interval_start.0.wrapping_add(self.injector_interval);
        let periodic = self.injector_checked.wrapping_add(self.injector_interval);
        let fair = self.fair.enabled.then_some(self.fair.next);
        self.next_due = [Some(tuning), Some(periodic), fair]
            .into_iter()
            .flatten()
            // Signed, as `tick_reached`: a deadline already passed is the
            // earliest.
            .min_by_key(|&at| at.wrapping_sub(tick) as i32)
            .unwrap_or(tuning);
    }

    /// Whether [`next_due`](Self::next_due) is reached: one of the
    /// deadlines it stands for may be due.
    #[inline]
    fn deadline_reached(&self) -> bool {
        tick_reached(self.tick, self.next_due)
    }

    pub(super) fn run(&mut self, local: &Local) {
        while !local.pool.is_closed() && !self.retired {
            self.tick = self.tick.wrapping_add(1);
            crate::fault::hit("worker.tick");
            if self.own_wheel.is_due(&local.pool.timers) {
                local.pool.timers.fire_due(local.index, &mut self.fired);
            }
            self.heed_nudge(local);
            if let Some(task) = self.next_task(local) {
                self.run_task(local, task);
            } else if let Some(task) = self.steal_work(local) {
                self.run_task(local, task);
            } else {
                self.park(local);
            }
        }
    }

    pub(super) fn next_random(&mut self) -> u32 {
        // xorshift32: cheap, and good enough to pick a steal victim.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Finds the next task without becoming a searcher (see the module docs).
    #[inline]
    pub(super) fn next_task(&mut self, local: &Local) -> Option<Runnable> {
        let pool = &*local.pool;
        // The tuning, the periodic turn and the fairness turns: one
        // comparison for the three on the usual tick.
        let deadline = self.deadline_reached();
        if deadline {
            if self.tick.wrapping_sub(self.interval_start.0) >= self.injector_interval {
                // Re-derives `next_due` as it ends.
                self.tune_injector_interval(local);
            } else {
                // A turn due is re-derived when served; one reached with
                // none due (a deadline moved later) here.
                self.refresh_due();
            }
        }
        let injector_first = (deadline && self.periodic_due()) || self.refill_due(local);
        if injector_first {
            self.injector_checked = self.tick;
            self.refresh_due();
            self.looked_at_injectors();
            // This tick serves what a nudge asked for.
            pool.injectors_served();
        }
        // An injector-first tick is never given away: a share due now is
        // served on the next tick (its credit keeps counting).
        if deadline && !injector_first {
            // Also where a user's `Scheduler` is asked (its turn is due at
            // every tick): one check per tick for both.
            if let Some(task) = self.fair_turn(local) {
                return Some(task);
            }
        }
        let inbox = local.inbox();
        for level in levels() {
            if injector_first {
                if let Some(task) = self.pop_injector_and_drain(local, level) {
                    return Some(self.took(level, task));
                }
                self.injector_found_empty(level);
            }
            if let Some(task) = local.pop_own_with(inbox, level) {
                return Some(self.took(level, task));
            }
            if !injector_first {
                if let Some(task) = self.pop_injector_and_drain(local, level) {
                    self.looked_at_injectors();
                    return Some(self.took(level, task));
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

    /// The minimum shares (see the module docs): a level whose share is due
    /// is served first this tick, from the local queue or the injector. A
    /// due level is served, or finds nothing, and its next turn is `share`
    /// ticks later either way; so a level that keeps work waiting gets one
    /// poll every `share` ticks, whatever floods the levels above it. The
    /// common case, no turn due, costs nothing here: it is only asked once
    /// the worker's [`next_due`](Self::next_due) is reached.
    #[inline]
    pub(super) fn fair_turn(&mut self, local: &Local) -> Option<Runnable> {
        if !self.fair.enabled || !tick_reached(self.tick, self.fair.next) {
            return None;
        }
        self.fair_turn_due(local)
    }

    #[cold]
    pub(super) fn fair_turn_due(&mut self, local: &Local) -> Option<Runnable> {
        if self.custom_scheduler {
            self.fair.next = self.tick.wrapping_add(1);
            self.refresh_due();
            return self.scheduled_turn(local);
        }
        let shares = &local.pool.min_shares;
        // Low first: when both are due on one tick, the rarer turn goes
        // first and Normal takes the next tick.
        let due = (Priority::Normal.index()..Priority::COUNT)
            .rev()
            .find(|&level| {
                shares[level] != NO_SHARE && tick_reached(self.tick, self.fair.due[level])
            });
        let task = due.and_then(|level| {
            self.fair.due[level] = self.tick.wrapping_add(shares[level]);
            // With nothing more urgent queued, this tick serves the level
            // anyway, in the usual order (the injector on its own turns).
            if !local.more_urgent_queued(level) {
                return None;
            }
            let task = self.pop_level(local, level)?;
            Some(self.took(level, task))
        });
        self.fair.next = self.fair.earliest(shares, self.tick);
        self.refresh_due();
        task
    }

    /// A task of `level` for a share turn or a user `Scheduler`'s pick:
    /// from this worker's own work ([`Local::pop_own`]) or the injector,
    /// one after the other while both hold work. Those turns may be all a
    /// level gets while more urgent work keeps the worker busy (the
    /// injector-first ticks stop at the first level with work), so neither
    /// side may wait there for the other to run dry: own work first only
    /// starved the injector behind a task yielding in the queue
    /// (`tests/fairness.rs`).
    fn pop_level(&mut self, local: &Local, level: usize) -> Option<Runnable> {
        if self.injector_next[level] {
            if let Some(task) = self.pop_injector_and_drain(local, level) {
                self.injector_next[level] = false;
                return Some(task);
            }
            return local.pop_own(level);
        }
        if let Some(task) = local.pop_own(level) {
            self.injector_next[level] = true;
            return Some(task);
        }
        self.pop_injector_and_drain(local, level)
    }

    /// Pops the injector of `level` (moving a batch), and starts a drain
    /// (see [`Drain`]) if that moved a batch or left the injector holding
    /// work (by the length the pop read to size the batch: no second look
    /// at lines producers write); if neither, that injector is empty (see
    /// [`injector_found_empty`](Self::injector_found_empty)). Every pop of
    /// an injector in `next_task` goes through here, also the one made when
    /// the worker's own work runs out: the batch that one moves is just as
    /// much ahead of a task woken next. (A searcher's pop in `steal_work`
    /// starts none, as before drains began at that pop too, which is what
    /// the benches measured: the worker's next pop of that injector starts
    /// one.)
    ///
    /// Not in a pool with a user's `Scheduler`, which is the whole policy
    /// there. Nor at a level with a user's queue, which hands out one task
    /// a turn and orders every task of its level (this worker's queue
    /// there stays empty): no batch is ahead of a woken task, so a drain
    /// would only turn the LIFO slot off.
    #[inline]
    fn pop_injector_and_drain(&mut self, local: &Local, level: usize) -> Option<Runnable> {
        let pool = &*local.pool;
        let queue = &local.queues[level];
        let before = queue.len();
        let (task, rest) = pool.pop_injector(level, queue)?;
        if !self.custom_scheduler && pool.custom_queues[level].is_none() {
            let queued = queue.len();
            if queued > before || rest {
                self.draining = Some(Drain {
                    level,
                    batch_end: self.tick.wrapping_add(queued as u32),
                });
            } else {
                self.injector_found_empty(level);
            }
        }
        Some(task)
    }

    /// Asks the pool's `Scheduler` which level to serve, and looks for a
    /// task of that level (see `scheduler::policy`).
    #[inline(never)]
    pub(super) fn scheduled_turn(&mut self, local: &Local) -> Option<Runnable> {
        let pool = &*local.pool;
        let scheduler = pool.scheduler.as_ref()?;
        let inbox = local.inbox();
        let queued = std::array::from_fn(|level| {
            local.queues[level].len()
                + pool.injector_len_at(level)
                + inbox.map_or(0, |inbox| {
                    inbox.placed[level].len() + inbox.pinned[level].len() + inbox.local[level].len()
                })
        });
        let cx = SchedulerContext {
            worker: local.index,
            tick: self.tick,
            queued,
            polls: self.polls,
        };
        let level = match guard_user("`Scheduler::next_level`", || {
            crate::fault::hit("scheduler");
            scheduler.next_level(&cx)
        }) {
            Some(level) => level?.index(),
            None => {
                // A panicking policy is dropped for this worker: the
                // built-in order takes over.
                self.custom_scheduler = false;
                return None;
            }
        };
        match self.pop_level(local, level) {
            Some(task) => Some(self.took(level, task)),
            None => self.steal_level(local, level),
        }
    }

    /// Whether this tick serves the injector first (see the module docs):
    /// the periodic turn or a refill turn is due. Never two ticks in a row.
    #[inline]
    pub(super) fn injector_due(&mut self, local: &Local) -> bool {
        (self.deadline_reached() && self.periodic_due()) || self.refill_due(local)
    }

    /// Whether the drain's batch has been reached (see [`Drain`]) while its
    /// injector still holds work, at least [`MIN_INJECTOR_INTERVAL`] ticks
    /// after the last injector-first tick: the worker then takes what came
    /// in meanwhile, rather than wait for the periodic turn with nothing
    /// from outside left in its queue (a task that polls for 10 µs
    /// between, as in `spawn_many_remote_busy2`, made that turn 10 ticks
    /// and 100 µs away, and the backlog waited). One look at the injector
    /// per batch: a look at every tick, while the queue was below 128,
    /// made the injector's lines bounce between the workers and the thread
    /// that spawned (`spawn_many_remote_busy1` 15% slower).
    ///
    /// Not while more urgent work is queued: a refill tick serves levels in
    /// order, so it would run that work, yet count as the injector's turn
    /// (the periodic one would never come, and the injector of the more
    /// urgent level would wait behind its queue).
    #[inline]
    fn refill_due(&mut self, local: &Local) -> bool {
        let Some(drain) = self.draining else {
            return false;
        };
        tick_reached(self.tick, drain.batch_end)
            && self.tick.wrapping_sub(self.injector_checked) >= MIN_INJECTOR_INTERVAL
            && !local.more_urgent_queued(drain.level)
            && self.drain_on(local)
    }

    /// Whether a backlog from outside waits at `level` (see
    /// [`drain_on`](Self::drain_on)). A task of that level woken now then
    /// queues behind the batch of remote work taken in, rather than take
    /// the LIFO slot ahead
    /// of up to 255 tasks that have waited longer: a chain of local spawns
    /// took 4 polls to every 128 to 255 remote tasks
    /// (`spawn_many_remote_busy2`; README, "Performance", stop 31). A task
    /// of a more urgent level keeps the slot; one of a less urgent level
    /// is outranked anyway.
    #[inline]
    fn backlog_waits(&mut self, local: &Local, level: usize) -> bool {
        matches!(self.draining, Some(drain) if drain.level == level) && self.drain_on(local)
    }

    /// The injector of `level` was found empty: a drain of it whose batch
    /// has been reached ends. (A drain of another level goes on.)
    #[inline]
    fn injector_found_empty(&mut self, level: usize) {
        if self
            .draining
            .is_some_and(|drain| drain.level == level && tick_reached(self.tick, drain.batch_end))
        {
            self.draining = None;
        }
    }

    /// Whether the batch of `drain` may still be ahead in this worker's
    /// queue: its tick is not reached, and the queue at that level holds
    /// work (siblings may have stolen it all).
    #[inline]
    fn batch_ahead(&self, local: &Local, drain: Drain) -> bool {
        !tick_reached(self.tick, drain.batch_end) && !local.queues[drain.level].is_empty()
    }

    /// Whether the drain (if any) is still on: its batch may still be
    /// ahead in the queue, or its injector holds work. Found empty past
    /// the batch, the injector ends the drain here.
    #[inline]
    fn drain_on(&mut self, local: &Local) -> bool {
        let Some(drain) = self.draining else {
            return false;
        };
        if self.batch_ahead(local, drain) {
            return true;
        }
        let holds = !local.pool.injector_is_empty(drain.level);
        if !holds {
            self.draining = None;
        }
        holds
    }

    /// Whether the injector interval has passed since the last
    /// injector-first tick (of either kind).
    #[inline]
    fn periodic_due(&self) -> bool {
        self.tick.wrapping_sub(self.injector_checked) >= self.injector_interval
    }

    /// This tick looked at the injectors: it serves the nudge this worker
    /// waited on, if any (and restarts the wait for a nudge set since).
    #[inline]
    fn looked_at_injectors(&mut self) {
        self.injector_looked = self.tick;
        self.nudge_wait = None;
    }

    /// At each tick and each LIFO poll: one load while no nudge is set
    /// (see [`take_nudge`](Self::take_nudge)).
    #[inline]
    fn heed_nudge(&mut self, local: &Local) {
        if local.pool.injector_nudged() && self.nudge_may_wait() {
            self.take_nudge(local);
        }
    }

    /// Whether a nudge seen now may be waiting here: not while this worker
    /// looked at the injectors at this tick or the one before. A worker
    /// whose own work runs dry every few ticks, as while it keeps up with
    /// a burst of remote spawns, looks at the injectors that often, and so
    /// never pays for the wait's bookkeeping and clock reads (they cost
    /// `spawn_many_remote_idle` 5%).
    #[inline]
    fn nudge_may_wait(&self) -> bool {
        self.tick.wrapping_sub(self.injector_looked) >= MIN_INJECTOR_INTERVAL
    }

    /// A push found every worker busy (see `Pool::injector_nudge`): makes
    /// the periodic turn due now once the nudge has waited at least
    /// [`NUDGE_WAIT`] at this worker, which looked at no injector meanwhile.
    /// Run at each tick, and at each poll of a LIFO run (which the due
    /// turn then ends), while the nudge is set. The clock is read at the
    /// 2nd, 3rd, 5th and 9th of those looks and every 8th after (at most 9
    /// reads before the periodic turn; polls that turn long in the middle
    /// of a wait are seen within 8 looks), so polls of 10 µs serve the
    /// nudge at the third tick (the fourth, should a LIFO run's last look
    /// and the next tick's bracket no poll), where the periodic turn could
    /// be 61 polls away (its interval is tuned on the polls of the interval
    /// before), and short polls pay a few clock reads before their periodic
    /// turn comes. The wait restarts at each injector-first tick and when
    /// the worker parks.
    ///
    /// Never before the third look at the nudge, two ticks or more after
    /// the worker last looked at the injectors, so a producer that keeps
    /// nudging gets one tick in three at most. Waits on at a worker that
    /// drains a backlog from outside while the batch it took is still
    /// ahead in its queue (see [`Drain`]), unless more urgent work is
    /// queued: the batch waited longer than the push, and once the batch is
    /// reached a refill turn comes anyway. (Served there too, in a variant
    /// with no refill turns, it cost `spawn_many_remote_busy1` 14%: more
    /// injector-first ticks, each moving a smaller batch.) Ignored under a
    /// user's `Scheduler`, which decides every tick and reaches the
    /// injectors on its own (see `pop_level`).
    ///
    /// (Served at the first tick that saw it, the nudge made the line
    /// bounce between producer and workers at every other tick of a worker
    /// running short tasks: `spawn_many_remote_idle` +13%. Checked in
    /// `next_task`, next to the periodic turn, it cost `yield_many` 13 to
    /// 20% in criterion's runs for 4 instructions a tick, and 2 to 3% in a
    /// harness of its own; checked at the top of the worker loop, nothing
    /// measurable. Code layout, as far as this machine can tell without
    /// hardware counters.)
    #[cold]
    fn take_nudge(&mut self, local: &Local) {
        let tick = self.tick;
        let Some(wait) = &mut self.nudge_wait else {
            // First seen now (or first since this worker last looked at
            // the injectors, which served the one seen before).
            self.nudge_wait = Some(NudgeWait {
                looks: 0,
                since: None,
            });
            return;
        };
        // Bounded: the periodic turn, at most 61 ticks away, restarts it.
        wait.looks = wait.looks.saturating_add(1);
        if !(wait.looks.is_power_of_two() || wait.looks % 8 == 0) {
            return;
        }
        let now = Instant::now();
        let Some(since) = wait.since else {
            wait.since = Some(now);
            return;
        };
        if self.custom_scheduler || now.saturating_duration_since(since) < NUDGE_WAIT {
            return;
        }
        let batch_waits = self.draining.is_some_and(|drain| {
            self.batch_ahead(local, drain) && !local.more_urgent_queued(drain.level)
        });
        if batch_waits {
            return;
        }
        self.nudge_wait = None;
        // Due whatever the interval, should `next_task` tune it longer
        // first.
        self.injector_checked = tick.wrapping_sub(MAX_INJECTOR_INTERVAL);
        self.refresh_due();
    }

    /// Re-derives the injector interval from the mean poll time since the
    /// last tuning.
    pub(super) fn tune_injector_interval(&mut self, local: &Local) {
        // Also the moment to look after siblings' overdue timers, and to
        // run the busy-tick hook.
        local
            .pool
            .timers
            .fire_overdue_elsewhere(local.index, &mut self.fired);
        self.run_busy_tick(local);
        if let Some(drain) = &mut self.draining {
            if tick_reached(self.tick, drain.batch_end) {
                // Reached stays reached (see `Drain::batch_end`).
                drain.batch_end = self.tick;
            }
        }
        let now = Instant::now();
        let (start_tick, start) = self.interval_start;
        let ticks = self.tick.wrapping_sub(start_tick).max(1);
        let mean_poll = now.saturating_duration_since(start) / ticks;
        let interval = INJECTOR_TARGET.as_nanos() / mean_poll.as_nanos().max(1);
        self.injector_interval =
            (interval as u32).clamp(MIN_INJECTOR_INTERVAL, MAX_INJECTOR_INTERVAL);
        self.publish_polls(local);
        let lifo_polls = LIFO_BUDGET.as_nanos() / mean_poll.as_nanos().max(1);
        self.lifo_cap = (lifo_polls as u32).min(MAX_LIFO_POLLS);
        self.interval_start = (self.tick, now);
        self.refresh_due();
    }

    /// Steals a batch of `level` tasks from a sibling, starting at a random
    /// one. Clears the pool's hint for the level when every sibling is empty.
    pub(super) fn steal_level(&mut self, local: &Local, level: usize) -> Option<Runnable> {
        // Dormant slots that never had a worker hold nothing to steal.
        let slots = local.pool.used_slots();
        if slots.is_empty() {
            return None;
        }
        let start = self.next_random() as usize % slots.len();
        loop {
            let mut retry = false;
            for offset in 0..slots.len() {
                let victim = (start + offset) % slots.len();
                if victim == local.index {
                    continue;
                }
                match slots[victim].stealers[level].steal_batch_and_pop(&local.queues[level]) {
                    Steal::Success(task) => {
                        self.count_steal(local, level);
                        return Some(self.took(level, task));
                    }
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
                if let Some(inbox) = slots[victim].inbox.get() {
                    match inbox.placed[level].steal_batch_and_pop(&local.queues[level]) {
                        Steal::Success(task) => {
                            self.count_steal(local, level);
                            return Some(self.took(level, task));
                        }
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
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

    /// Counts a steal that took the task it returned plus the rest of a
    /// batch, now in our queue of `level` (which was empty: a worker steals
    /// a level only once its own queue of it is).
    #[cold]
    fn count_steal(&self, local: &Local, level: usize) {
        let counts = &local.counts;
        let rest = local.queues[level].len();
        bump(&counts.steals, 1);
        bump(&counts.stolen, 1 + rest as u64);
        if rest > 0 {
            // The rest of the batch was on its way between two queues that
            // searchers look at (see `Pool::batch_moved`).
            local.pool.batch_moved(level);
        }
    }

    /// Becomes a searcher (if not too many are) and steals, most urgent level
    /// first, from siblings and then the injector.
    pub(super) fn steal_work(&mut self, local: &Local) -> Option<Runnable> {
        local
            .pool
            .timers
            .fire_overdue_elsewhere(local.index, &mut self.fired);
        if local.has_local_work() {
            // A sibling's timer woke tasks onto our queues.
            return None;
        }
        if !self.searching {
            self.searching = local.pool.idle.transition_worker_to_searching();
            if !self.searching {
                return None;
            }
        }
        // Look once; then, until `search_spin` has passed, give the core
        // away and look again before parking. While a worker searches,
        // producers skip the futex wake-up (see `idle`), so a stream of
        // remote spawns a few microseconds apart is taken in without a park
        // and unpark per task. Between looks the searcher yields its core
        // (`sched_yield`) rather than spin on it with pause hints: a thread
        // that wants the core (a client on the same machine, a producer, a
        // sibling) runs at once, and with none the call returns in about a
        // microsecond. Spinning with pause hints held the core for the
        // whole spin: the hyper bench's idle p99 went from 1.00-1.08x
        // tokio's to 1.53-1.72x; yielding, to 0.57-0.78x (README, "`search_spin`:
        // the idle-latency trade-off"). After the yield, a few microseconds
        // of pause hints space the looks out (`LOOK_PAUSES`).
        let spin = local.pool.search_spin;
        let mut spin_until = None;
        for round in 0u32.. {
            if round > 0 {
                // No spin (`search_spin(Duration::ZERO)`): no clock read either.
                if spin.is_zero() {
                    break;
                }
                #[cfg(miri)]
                if round > MIRI_SPIN_ROUNDS {
                    break;
                }
                let now = Instant::now();
                if now >= *spin_until.get_or_insert_with(|| now + spin) {
                    break;
                }
                std::thread::yield_now();
                // Then a few microseconds on the core before the next look
                // (see `LOOK_PAUSES`).
                for _ in 0..LOOK_PAUSES {
                    std::hint::spin_loop();
                }
                if local.has_local_work() {
                    // Work for this worker alone (a pinned or `spawn_local`
                    // task, a placed batch in its inbox), which no steal
                    // takes and no producer wakes a searcher for: back to
                    // the run loop, which takes it.
                    return None;
                }
                if !local.pool.has_queued_work() {
                    if local.pool.is_closed() {
                        return None;
                    }
                    continue;
                }
            }
            for level in levels() {
                if let Some(task) = self.steal_level(local, level) {
                    return Some(task);
                }
                if let Some((task, _)) = local.pool.pop_injector(level, &local.queues[level]) {
                    return Some(self.took(level, task));
                }
            }
        }
        None
    }

    /// Polls `task`, then whatever it put in the LIFO slot (bounded).
    // Always inlined into `run`'s two call sites: out of line it costs a
    // frame per poll (measured with callgrind: +4% on `yield_many`).
    #[inline(always)]
    pub(super) fn run_task(&mut self, local: &Local, task: Runnable) {
        if self.searching {
            self.searching = false;
            // The last searcher to find work wakes another worker to search
            // on: there may be more where this came from.
            if local.pool.idle.transition_worker_from_searching() {
                local.pool.notify_parked();
            }
        }
        self.lifo_polls = 0;
        local.lifo_enabled.set(true);
        if self.per_poll_extras {
            self.bump_activity(local);
            local.publish_poll(&task);
        }
        poll_task(local, task);
        while let Some(task) = local.lifo.take() {
            let level = task.metadata().level();
            // More urgent work goes first: a sibling may take this task
            // meanwhile.
            let outranked = local.more_urgent_queued(level) || local.pool.is_closed();
            // A LIFO poll is a tick too: the nudge may end the run.
            self.heed_nudge(local);
            if outranked
                || self.injector_due(local)
                || self.lifo_polls >= self.lifo_cap
                || self.backlog_waits(local, level)
            {
                // The task loses its turn: to the back of its queue, where
                // `next_task` serves levels (and the injector) in order.
                if outranked || !local.queues[level].is_empty() {
                    local.push_back_after_poll(task);
                } else {
                    // Only the cap, the injector's turn or a backlog from
                    // outside stopped it, and its queue is empty: it is the
                    // only work this worker holds at its level, which it takes
                    // up again once the injector's turn (or a fairness turn, or
                    // a user's `Scheduler`) has been served, and which
                    // searching siblings may still steal; so no parked sibling
                    // is woken for it. Waking one would only move a chain of
                    // spawns to another core and back, or wake a sibling that
                    // finds the task gone and parks again: a futex wake for
                    // nothing every few polls, or every injector interval
                    // (`chained_spawn`: 8 no-op parks per chain of 1 000 with
                    // the injector's turn waking; +4 to 9% in wall time with
                    // the cap waking, README "Performance"). Work queued behind
                    // it was announced when it was pushed, or rides on the
                    // tasks pushed before it (see `ANNOUNCED_DEPTH`). Whatever
                    // runs first (an injector task) was announced too: a
                    // sibling that searched for it, found it gone and parks,
                    // sees this task in its re-check.
                    local.push_back_quiet(task);
                }
                break;
            }
            self.lifo_polls += 1;
            // A LIFO poll is a tick too, for the injector interval.
            self.tick = self.tick.wrapping_add(1);
            self.polls[level] += 1;
            if self.per_poll_extras {
                local.publish_poll(&task);
            }
            poll_task(local, task);
        }
        local.lifo_enabled.set(false);
        if self.per_poll_extras {
            self.bump_activity(local);
        }
    }

    /// Counts the poll of `task`, just taken from a queue of `level` (every
    /// task the loop takes is polled): counted where the level is known,
    /// rather than read back from the task.
    #[inline(always)]
    fn took(&mut self, level: usize, task: Runnable) -> Runnable {
        self.polls[level] += 1;
        task
    }

    /// Makes this worker's poll counts visible to the metrics: done when it
    /// parks and at each injector-first check (about every 100 µs while
    /// busy), so the hot path only adds to `polls`.
    pub(super) fn publish_polls(&self, local: &Local) {
        let counts = &local.counts.polls;
        for level in levels() {
            counts[level].store(self.polls[level], Ordering::Relaxed);
        }
    }

    /// This worker's polls since its slot was created.
    pub(super) fn total_polls(&self) -> u64 {
        self.polls.iter().sum()
    }

    /// Counts a poll starting or ending: odd while polling; see `monitor`.
    #[inline]
    pub(super) fn bump_activity(&mut self, local: &Local) {
        if self.track_activity {
            self.activity = self.activity.wrapping_add(1);
            local.pool.slots[local.index]
                .activity
                .store(self.activity, Ordering::Relaxed);
        }
    }
}
