//! What a pool counts, and the gauges read from those counts.
//!
//! Invariants:
//! * The hot path writes no shared line: tasks spawned and ended (per
//!   outcome), polls, steals and parks are counted per worker slot (the
//!   last entry for threads that are not the pool's workers) and summed on
//!   read. A worker's own counters are written with a load and a store
//!   (only it writes them); the shared entry with read-modify-writes.
//! * A task is counted spawned before it can end, and ends are read
//!   before spawns, so `num_alive` never underflows; every task ends with
//!   exactly one outcome, so spawned = the sum of the outcomes + alive.
//! * Workers started and retired are counted before `Idle`'s active count
//!   moves, so a reader who sees `num_workers` change also sees the
//!   counter that explains it.

use crossbeam_utils::CachePadded;

use super::{worker, Pool};
use crate::priority::{levels, PerLevel};
use crate::runtime::metrics::HistogramCells;
use crate::runtime::task::Outcome;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};
use crate::Priority;

/// What one worker slot counts. Written by the slot's worker only (the
/// shared entry by any thread that is not a worker: its spawns and
/// ends use read-modify-writes).
#[derive(Default)]
pub(crate) struct SlotCounts {
    /// Tasks spawned, per priority.
    pub(crate) spawned: PerLevel<AtomicU64>,
    /// Tasks ended, per [`Outcome`].
    pub(crate) ended: [AtomicU64; Outcome::COUNT],
    /// Polls, per priority of the polled task.
    pub(crate) polls: PerLevel<AtomicU64>,
    /// Tasks taken from siblings, and the steals that took them.
    pub(crate) stolen: AtomicU64,
    pub(crate) steals: AtomicU64,
    /// Times the worker parked, and of those, the times it had found no
    /// work since it last woke.
    pub(crate) parks: AtomicU64,
    pub(crate) noops: AtomicU64,
    /// Time spent between waking and parking, in nanoseconds.
    pub(crate) busy_ns: AtomicU64,
}

/// Adds `n` to a counter only its owner writes: a plain load and store,
/// no read-modify-write on the hot path.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// The latency histograms of one worker slot, per priority.
pub(crate) struct SlotHistograms {
    pub(crate) schedule_latency: PerLevel<HistogramCells>,
    pub(crate) poll_time: PerLevel<HistogramCells>,
}

/// The counts of one pool.
pub(super) struct Counters {
    /// Per worker slot, plus one shared entry for other threads. Each in
    /// an `Arc` that the slot's worker also holds, so its own counts are
    /// one load away on the hot path (no index, no bounds check:
    /// callgrind, `hotpath_probe intask`, ~4 instructions a count).
    pub(crate) slots: Box<[Arc<CachePadded<SlotCounts>>]>,
    /// Per worker slot, with latency histograms on (see
    /// `Builder::enable_latency_histograms`).
    pub(crate) histograms: Option<Box<[SlotHistograms]>>,
    pub(super) workers_started: AtomicUsize,
    pub(super) workers_retired: AtomicUsize,
    /// Workers found stuck in one poll at the monitor's last sample.
    pub(super) blocked_workers: AtomicUsize,
}

impl Counters {
    pub(super) fn new(max_workers: usize, histograms: bool) -> Self {
        Counters {
            slots: (0..=max_workers)
                .map(|_| Arc::new(CachePadded::new(SlotCounts::default())))
                .collect(),
            histograms: histograms.then(|| {
                (0..max_workers)
                    .map(|_| SlotHistograms {
                        schedule_latency: Default::default(),
                        poll_time: Default::default(),
                    })
                    .collect()
            }),
            workers_started: AtomicUsize::new(0),
            workers_retired: AtomicUsize::new(0),
            blocked_workers: AtomicUsize::new(0),
        }
    }
}

impl Pool {
    #[inline]
    pub(crate) fn count_spawned(&self, priority: Priority) {
        self.count_spawned_many(priority, 1);
    }

    /// Counts `n` tasks spawned at `priority` at once (a batch's group).
    #[inline]
    pub(crate) fn count_spawned_many(&self, priority: Priority, n: u64) {
        let counted = worker::with_own_counts(self, |own| bump(&own.spawned[priority.index()], n));
        if counted.is_none() {
            self.shared_counts().spawned[priority.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counter entry shared by the threads that are not the pool's
    /// workers (the last one).
    #[cold]
    fn shared_counts(&self) -> &SlotCounts {
        &self.counters.slots[self.counters.slots.len() - 1]
    }

    /// A spawn the pool refused before a task existed (a full queue, a
    /// shutdown): counted as spawned and rejected, or shut down, so the
    /// outcome counts add up to the spawns.
    #[cold]
    pub(crate) fn count_refused(&self, priority: Priority) {
        self.count_spawned(priority);
        let outcome = if self.accepts_spawns() {
            Outcome::Rejected
        } else {
            Outcome::Shutdown
        };
        self.count_ended(outcome);
    }

    #[inline]
    pub(crate) fn count_ended(&self, outcome: Outcome) {
        let counted = worker::with_own_counts(self, |own| {
            // `Release`, as the shared entry's: see `num_alive`.
            let counter = &own.ended[outcome.index()];
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Release,
            );
        });
        if counted.is_none() {
            self.shared_counts().ended[outcome.index()].fetch_add(1, Ordering::Release);
        }
        if !self.accepts_spawns() {
            // A graceful shutdown may be waiting for the last task.
            self.drained.notify(usize::MAX);
        }
    }

    /// Records one poll's schedule latency and poll time (in the raw unit of
    /// `metrics::clock`) in the histograms of this worker (polls off the pool's workers are not recorded).
    #[inline]
    pub(crate) fn record_poll(&self, priority: Priority, latency: u64, poll_time: u64) {
        let (Some(histograms), Some(index)) = (&self.counters.histograms, worker::index_in(self))
        else {
            return;
        };
        let slot = &histograms[index];
        slot.schedule_latency[priority.index()].record(latency);
        slot.poll_time[priority.index()].record(poll_time);
    }

    /// The counts of worker slot `index` (the shared entry at
    /// `max_workers`).
    pub(crate) fn slot_counts(&self, index: usize) -> &SlotCounts {
        &self.counters.slots[index]
    }

    pub(crate) fn histograms(&self) -> Option<&[SlotHistograms]> {
        self.counters.histograms.as_deref()
    }

    /// `f` summed over every counter slot.
    pub(crate) fn sum_counts(&self, f: impl Fn(&SlotCounts) -> u64) -> u64 {
        self.counters
            .slots
            .iter()
            .map(|slot| f(slot))
            .fold(0, u64::wrapping_add)
    }

    /// Tasks spawned and not yet completed or cancelled.
    pub(crate) fn num_alive(&self) -> usize {
        // Ends first (see the module docs).
        let ended = self.sum_counts(|slot| {
            slot.ended
                .iter()
                .map(|count| count.load(Ordering::Acquire))
                .sum()
        });
        let spawned = self.sum_counts(|slot| {
            levels()
                .map(|level| slot.spawned[level].load(Ordering::Acquire))
                .sum()
        });
        spawned.saturating_sub(ended) as usize
    }

    /// Number of parked workers.
    pub(crate) fn num_parked(&self) -> usize {
        self.idle.num_parked()
    }

    /// Number of workers running now.
    pub(crate) fn num_workers(&self) -> usize {
        self.idle.num_active()
    }

    pub(crate) fn workers_started(&self) -> usize {
        self.counters.workers_started.load(Ordering::SeqCst)
    }

    pub(crate) fn workers_retired(&self) -> usize {
        self.counters.workers_retired.load(Ordering::SeqCst)
    }

    /// Workers found stuck in one poll at the monitor's last sample.
    pub(crate) fn num_blocked_workers(&self) -> usize {
        self.counters.blocked_workers.load(Ordering::Relaxed)
    }

    /// Number of tasks waiting in the injectors.
    pub(crate) fn injector_len(&self) -> usize {
        levels().map(|level| self.injector_len_at(level)).sum()
    }

    /// A local task of worker `index` was spawned; the worker does not
    /// retire while it has one.
    pub(crate) fn local_task_spawned(&self, index: usize) {
        self.slots[index].local_alive.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn local_task_dropped(&self, index: usize) {
        self.slots[index].local_alive.fetch_sub(1, Ordering::SeqCst);
    }
}
