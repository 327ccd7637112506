//! Where a new task starts: [`Placement`] policies, key hashing, and the
//! per-worker inboxes that placed and pinned tasks wait in.
//!
//! Invariants:
//! * A *placed* task (round-robin, least-loaded) waits in its worker's
//!   `placed` inbox, which idle siblings steal from like any queue:
//!   placement decides where work starts, stealing still balances it.
//! * A *pinned* task (`Spawn::worker`, `Spawn::key`) lives in its worker's
//!   `pinned` inbox whenever it is queued, for its whole life, and only that
//!   worker ever takes it. Producers wake that worker by name (see
//!   `Idle::claim_parked`); the worker looks at its inbox again after it
//!   announces that it parks, under the same lock, so no wake-up is lost.
//! * Only workers `0..min_workers` take pinned tasks: they never retire.
//! * A *local* task (`spawn_local`, `!Send`) is pinned too, and more: its
//!   runnable only ever waits in the `local` inbox of its worker, which only
//!   that worker's thread takes from, also at shutdown (the worker cancels
//!   its local tasks itself before its thread ends). So a local task's
//!   future is polled and dropped on one thread only.

use std::hash::{Hash, Hasher};

use crossbeam_deque::{Injector, Steal};

use crate::priority::PerLevel;
use crate::runtime::task::Runnable;

/// Where new tasks start (set with
/// [`Builder::placement`](crate::Builder::placement)). Whatever the policy,
/// idle workers steal queued work from busy ones, so placement decides
/// where work *starts*; only [`Spawn::worker`](crate::Spawn::worker) and
/// [`Spawn::key`](crate::Spawn::key) decide where a task *runs*.
///
/// ```
/// use multipool::Placement;
///
/// let rt = multipool::Runtime::builder()
///     .workers(4)
///     .placement(Placement::LeastLoaded)
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(rt.spawn(async { 1 })).unwrap(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Placement {
    /// The default: a task spawned on a worker starts on that worker (right
    /// after the spawning task, if it is a message for it: cache-warm); a
    /// task spawned from outside goes to the shared injection queue, which
    /// every worker takes from.
    #[default]
    Local,
    /// Each new task goes to the next running worker in turn.
    RoundRobin,
    /// Each new task goes to the less loaded of two running workers picked
    /// at random ("power of two choices"), load being the number of tasks
    /// queued on the worker.
    LeastLoaded,
}

/// A worker's inboxes, one queue per level for each kind; created the first
/// time something is placed on or pinned to the worker.
pub(crate) struct Inbox {
    pub(crate) placed: PerLevel<Injector<Runnable>>,
    pub(crate) pinned: PerLevel<Injector<Runnable>>,
    /// `spawn_local` tasks: taken only by this worker, on its own thread,
    /// even at shutdown (never by [`drain`](Self::drain)).
    pub(crate) local: PerLevel<Injector<Runnable>>,
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Inbox {
            placed: std::array::from_fn(|_| Injector::new()),
            pinned: std::array::from_fn(|_| Injector::new()),
            local: std::array::from_fn(|_| Injector::new()),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Injector<Runnable>> {
        self.placed.iter().chain(&self.pinned).chain(&self.local)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.all().all(Injector::is_empty)
    }

    /// Whether any of the inboxes holds a task of `level`.
    pub(crate) fn holds(&self, level: usize) -> bool {
        !self.pinned[level].is_empty()
            || !self.local[level].is_empty()
            || !self.placed[level].is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.all().map(Injector::len).sum()
    }

    /// Takes every placed and pinned task out (shutdown); local tasks stay
    /// for their own worker (see [`drain_local`](Self::drain_local)).
    pub(crate) fn drain(&self, each: impl FnMut(Runnable)) {
        drain_queues(self.placed.iter().chain(&self.pinned), each);
    }

    /// Takes every local task out; only on the inbox's own worker thread.
    pub(crate) fn drain_local(&self, each: impl FnMut(Runnable)) {
        drain_queues(self.local.iter(), each);
    }
}

fn drain_queues<'a>(
    queues: impl Iterator<Item = &'a Injector<Runnable>>,
    mut each: impl FnMut(Runnable),
) {
    for queue in queues {
        loop {
            match queue.steal() {
                Steal::Success(task) => each(task),
                Steal::Empty => break,
                Steal::Retry => {}
            }
        }
    }
}

/// The hash of a `Spawn::key`: the same for equal keys in every call and
/// every process of one build (SipHash with fixed keys).
pub(crate) fn key_hash(key: &impl Hash) -> u64 {
    #[allow(deprecated)] // `SipHasher` is the stable, fixed-key hasher we want
    let mut hasher = std::hash::SipHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Jump consistent hash (Lamping and Veach, 2014): maps `key` to one of
/// `buckets` buckets, moving only about 1/n of the keys when a bucket is
/// added.
pub(crate) fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

/// `TaskMeta::home` of a task that is not pinned to a worker.
pub(crate) const NO_HOME: u32 = u32::MAX;

/// Where a task asked to run (`Spawn::worker`, `Spawn::key`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// Anywhere (the pool's placement decides where it starts).
    #[default]
    None,
    /// Pinned to this worker.
    Worker(usize),
    /// Pinned to the worker this key hashes to.
    Key(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_and_spreads() {
        let mut counts = [0usize; 4];
        for key in 0..4_000u64 {
            let bucket = jump_hash(key_hash(&key), 4);
            assert_eq!(bucket, jump_hash(key_hash(&key), 4));
            counts[bucket] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        // Growing from 4 to 5 buckets moves about a fifth of the keys, all
        // of them to the new bucket.
        let moved = (0..4_000u64)
            .filter(|key| jump_hash(key_hash(key), 4) != jump_hash(key_hash(key), 5))
            .inspect(|key| assert_eq!(jump_hash(key_hash(key), 5), 4))
            .count();
        assert!((600..1000).contains(&moved), "{moved}");
    }
}
