//! What a pool counts, and the gauges read from those counts.
//!
//! Invariants:
//! * The hot path writes no shared line: tasks spawned and completed are
//!   counted per worker slot (the last entry for threads that are not the
//!   pool's workers), with `Relaxed` adds, and summed on read.
//! * A task is counted spawned before it can complete, and completions
//!   are read before spawns, so `num_alive` never underflows.
//! * Workers started and retired are counted before `Idle`'s active count
//!   moves, so a reader who sees `num_workers` change also sees the
//!   counter that explains it.

use crossbeam_utils::CachePadded;

use super::{worker, Pool};
use crate::priority::levels;
use crate::sync::{AtomicUsize, Ordering};

/// The counts of one pool.
pub(super) struct Counters {
    /// Tasks spawned and completed, per worker slot plus one shared entry.
    spawned: Box<[CachePadded<AtomicUsize>]>,
    completed: Box<[CachePadded<AtomicUsize>]>,
    pub(super) workers_started: AtomicUsize,
    pub(super) workers_retired: AtomicUsize,
    /// Workers found stuck in one poll at the monitor's last sample.
    pub(super) blocked_workers: AtomicUsize,
}

impl Counters {
    pub(super) fn new(max_workers: usize) -> Self {
        let per_slot = || {
            (0..=max_workers)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect()
        };
        Counters {
            spawned: per_slot(),
            completed: per_slot(),
            workers_started: AtomicUsize::new(0),
            workers_retired: AtomicUsize::new(0),
            blocked_workers: AtomicUsize::new(0),
        }
    }
}

impl Pool {
    /// The counter slot of the current thread: its worker's, or the shared
    /// one for threads that are not this pool's workers.
    #[inline]
    fn counter_slot(&self) -> usize {
        worker::index_in(self).unwrap_or(self.slots.len())
    }

    #[inline]
    pub(crate) fn count_spawned(&self) {
        self.counters.spawned[self.counter_slot()].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn count_completed(&self) {
        self.counters.completed[self.counter_slot()].fetch_add(1, Ordering::Relaxed);
        if !self.accepts_spawns() {
            // A graceful shutdown may be waiting for the last task.
            self.drained.notify(usize::MAX);
        }
    }

    /// Tasks spawned and not yet completed or cancelled.
    pub(crate) fn num_alive(&self) -> usize {
        let sum = |counts: &[CachePadded<AtomicUsize>]| -> usize {
            counts.iter().map(|c| c.load(Ordering::Acquire)).sum()
        };
        // Completions first (see the module docs).
        let completed = sum(&self.counters.completed);
        let spawned = sum(&self.counters.spawned);
        spawned.saturating_sub(completed)
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

    /// Tasks queued on each worker slot, in slot order: its local queues and
    /// inboxes (the injector is shared and not counted).
    pub(crate) fn worker_queue_depths(&self) -> Vec<usize> {
        (0..self.slots.len())
            .map(|index| self.worker_load(index))
            .collect()
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
