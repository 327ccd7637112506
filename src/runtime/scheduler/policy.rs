//! User-written scheduling policies: the [`Scheduler`] trait and the two
//! policies that ship with it.
//!
//! A pool without a scheduler (the default) uses the built-in policy of
//! `worker`: priority first, plus the minimum shares of
//! `PoolBuilder::min_share`, at the cost of one comparison per poll. A pool
//! given a [`Scheduler`] asks it, before every poll, which level to serve
//! first; the worker then looks for a task of that level (its own work
//! and the injector, one after the other while both hold some; then its
//! siblings) and falls back to priority order if there is none. Only the
//! periodic injector turn (at most one tick in 2 to 61) is not the
//! scheduler's. Invariants either way:
//! * a worker never idles while a queue it may take from holds work: the
//!   scheduler only chooses the order in which the worker looks;
//! * the built-in minimum shares are off under a custom scheduler (the
//!   scheduler is the whole policy).

use crate::priority::PerLevel;
use crate::Priority;

/// What a worker knows when it asks its pool's [`Scheduler`] which level to
/// serve next.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerContext {
    pub(crate) worker: usize,
    pub(crate) tick: u32,
    pub(crate) queued: PerLevel<usize>,
    pub(crate) polls: PerLevel<u64>,
}

impl SchedulerContext {
    /// The index of the worker asking.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The worker's tick: how many times it has looked for work (wraps).
    pub fn tick(&self) -> u32 {
        self.tick
    }

    /// Tasks of `priority` this worker could take right now without
    /// stealing: its own queue and inboxes, and the pool's injector.
    pub fn queued(&self, priority: Priority) -> usize {
        self.queued[priority.index()]
    }

    /// The polls this worker has given tasks of `priority` so far: its
    /// recent history, as counts (compare two contexts for a window).
    pub fn polls(&self, priority: Priority) -> u64 {
        self.polls[priority.index()]
    }
}

/// A scheduling policy: which priority level a worker serves next.
///
/// Set it with [`PoolBuilder::scheduler`](crate::PoolBuilder::scheduler)
/// (or `Builder::scheduler`). It is called by every worker before every
/// poll, so keep it cheap; it is shared by the pool's workers (`&self`), and
/// the [`SchedulerContext`] carries each worker's own history.
///
/// ```
/// use multipool::{Priority, Scheduler, SchedulerContext};
///
/// /// Lowest priority first: a deliberately odd policy.
/// struct Backwards;
///
/// impl Scheduler for Backwards {
///     fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
///         [Priority::Low, Priority::Normal, Priority::High]
///             .into_iter()
///             .find(|&p| cx.queued(p) > 0)
///     }
/// }
///
/// let rt = multipool::Runtime::builder()
///     .workers(1)
///     .scheduler(Backwards)
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
/// ```
pub trait Scheduler: Send + Sync + 'static {
    /// The level to serve first, or `None` for plain priority order. If
    /// the worker finds no task of that level it serves the others in
    /// priority order.
    fn next_level(&self, cx: &SchedulerContext) -> Option<Priority>;
}

/// The default policy, as a [`Scheduler`]: the highest level with work,
/// except that a lower level whose share of this worker's polls fell below
/// its minimum is served first. The same guarantee as the built-in policy
/// (which keeps its state in the worker and costs less); use it to build
/// on.
///
/// ```
/// use multipool::{PriorityFirst, Priority};
///
/// let policy = PriorityFirst::new().min_share(Priority::Low, 10);
/// let rt = multipool::Runtime::builder().workers(2).scheduler(policy).build().unwrap();
/// # drop(rt);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PriorityFirst {
    /// Per level: at least one poll in this many; 0 for none.
    one_in: PerLevel<u64>,
}

impl PriorityFirst {
    /// Normal at least one poll in 16, Low one in 64, as the built-in
    /// policy.
    pub fn new() -> Self {
        PriorityFirst {
            one_in: [0, 16, 64],
        }
    }

    /// Sets `priority`'s minimum share to one poll in `one_in` (0: none).
    ///
    /// Every value has a meaning: 1 serves the level first whenever it has
    /// work and fewer polls than the others together (ahead of High), and
    /// the counts are compared exactly, without overflow, up to
    /// `u64::MAX`. A share for High is ignored: High is served first
    /// anyway.
    pub fn min_share(mut self, priority: Priority, one_in: u64) -> Self {
        self.one_in[priority.index()] = one_in;
        self
    }
}

impl Default for PriorityFirst {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler for PriorityFirst {
    fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
        // In u128: a product of two u64s, and a sum of three, always fit,
        // so huge shares and long-lived workers compare exactly.
        let total: u128 = cx.polls.iter().map(|&polls| u128::from(polls)).sum();
        // The most starved level below its share goes first.
        let starved = [Priority::Low, Priority::Normal].into_iter().find(|&p| {
            let one_in = self.one_in[p.index()];
            one_in > 0 && cx.queued(p) > 0 && u128::from(cx.polls(p)) * u128::from(one_in) < total
        });
        starved.or_else(|| Priority::ALL.into_iter().find(|&p| cx.queued(p) > 0))
    }
}

/// Weighted fair sharing between levels: each level with work gets polls
/// in proportion to its weight (stride scheduling over this worker's
/// history), so no level waits behind another for long, at the cost of
/// High latency under load (async-runtime's 8:4:1 is this policy).
///
/// ```
/// use multipool::WeightedFair;
///
/// let rt = multipool::Runtime::builder()
///     .workers(2)
///     .scheduler(WeightedFair::new(8, 4, 1))
///     .build()
///     .unwrap();
/// # drop(rt);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WeightedFair {
    weights: PerLevel<u64>,
}

impl WeightedFair {
    /// Weights of High, Normal and Low; a zero weight is treated as 1.
    pub fn new(high: u32, normal: u32, low: u32) -> Self {
        WeightedFair {
            weights: [high, normal, low].map(|w| u64::from(w.max(1))),
        }
    }
}

impl Scheduler for WeightedFair {
    fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
        // The level with work whose polls per unit of weight are fewest;
        // ties go to the more urgent level. Cross-multiplied: no division.
        Priority::ALL
            .into_iter()
            .filter(|&p| cx.queued(p) > 0)
            .min_by(|&a, &b| {
                let (wa, wb) = (self.weights[a.index()], self.weights[b.index()]);
                (u128::from(cx.polls(a)) * u128::from(wb))
                    .cmp(&(u128::from(cx.polls(b)) * u128::from(wa)))
                    .then(a.index().cmp(&b.index()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(queued: [usize; 3], polls: [u64; 3]) -> SchedulerContext {
        SchedulerContext {
            worker: 0,
            tick: 0,
            queued,
            polls,
        }
    }

    #[test]
    fn weighted_fair_follows_the_weights() {
        let policy = WeightedFair::new(8, 4, 1);
        let mut polls = [0u64; 3];
        for _ in 0..1300 {
            let level = policy.next_level(&cx([1, 1, 1], polls)).unwrap();
            polls[level.index()] += 1;
        }
        assert_eq!(polls, [800, 400, 100]);
        // An empty level is skipped.
        assert_eq!(
            policy.next_level(&cx([0, 0, 3], polls)),
            Some(Priority::Low)
        );
        assert_eq!(policy.next_level(&cx([0, 0, 0], polls)), None);
    }

    #[test]
    fn priority_first_keeps_minimum_shares() {
        let policy = PriorityFirst::new();
        let mut polls = [0u64; 3];
        for _ in 0..6400 {
            let level = policy.next_level(&cx([1, 1, 1], polls)).unwrap();
            polls[level.index()] += 1;
        }
        // Low at least 1/64, Normal at least 1/16, High the rest.
        assert!(polls[2] * 64 >= 6400 - 64, "{polls:?}");
        assert!(polls[1] * 16 >= 6400 - 16, "{polls:?}");
        assert!(polls[0] > polls[1] + polls[2], "{polls:?}");
    }

    #[test]
    fn priority_first_does_not_overflow() {
        // `polls * one_in` and the sum of the polls both exceed u64 here.
        let policy = PriorityFirst::new()
            .min_share(Priority::Low, u64::MAX)
            .min_share(Priority::Normal, u64::MAX);
        let huge = u64::MAX / 2;
        // Low has 1 poll in about 2^63 + 1: far above its 1 in 2^64 share.
        assert_eq!(
            policy.next_level(&cx([1, 1, 1], [huge, huge, 1])),
            Some(Priority::High)
        );
        // Low has none yet, so it is below its share, however small.
        assert_eq!(
            policy.next_level(&cx([1, 1, 1], [u64::MAX, u64::MAX, 0])),
            Some(Priority::Low)
        );
        // A share of 1 serves a level while it has fewer polls than the rest.
        let eager = PriorityFirst::new().min_share(Priority::Low, 1);
        assert_eq!(
            eager.next_level(&cx([1, 1, 1], [u64::MAX, 0, u64::MAX - 1])),
            Some(Priority::Low)
        );
        // A share for High is ignored: High comes first anyway.
        let high = PriorityFirst::new().min_share(Priority::High, 2);
        for polls in [[0, 100, 100], [100, 0, 0], [u64::MAX, u64::MAX, u64::MAX]] {
            let context = cx([1, 1, 1], polls);
            assert_eq!(
                high.next_level(&context),
                PriorityFirst::new().next_level(&context)
            );
        }
    }
}
