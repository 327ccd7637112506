//! Which workers are asleep, which are searching for work, and who to wake.
//!
//! The protocol follows tokio's `multi_thread/idle.rs`:
//!
//! * A worker is *unparked* unless it is in `sleepers`. An unparked worker with
//!   no work may become *searching*; at most half the workers search at once,
//!   so a burst of wake-ups does not turn into a thundering herd.
//! * Whoever makes work available (a push to a local queue or the injector)
//!   calls [`Idle::worker_to_notify`]. It wakes a sleeper only when nobody is
//!   searching: a searcher will find the work, and a searcher that finds work
//!   wakes the next sleeper itself (see `Worker::run_task`), so wake-ups chain
//!   instead of all happening on the spawning thread.
//! * The last searcher to park re-checks every queue after announcing it
//!   parks. Pushers make the work visible and then read `state` with a
//!   `SeqCst` read-modify-write; parkers update `state` with one and then
//!   scan. So either the pusher sees the parker still searching (and the
//!   parker's scan sees the work) or the pusher sees it parked (and wakes it):
//!   no wake-up is lost.
//! * A notified worker is removed from `sleepers` by the notifier, who also
//!   counts it as unparked and searching; the worker learns it was notified by
//!   no longer finding itself in `sleepers`.

use crate::sync::{AtomicUsize, Mutex, Ordering::SeqCst};

/// Bits of `state` holding the number of searching workers.
const SEARCH_BITS: usize = 16;
const SEARCH_MASK: usize = (1 << SEARCH_BITS) - 1;
const UNPARK_ONE: usize = 1 << SEARCH_BITS;

pub(crate) struct Idle {
    /// Packed: number of searching workers (low bits), number of unparked
    /// workers (high bits).
    state: AtomicUsize,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

fn searching(state: usize) -> usize {
    state & SEARCH_MASK
}

fn unparked(state: usize) -> usize {
    state >> SEARCH_BITS
}

impl Idle {
    /// All `num_workers` workers start unparked and not searching.
    pub(crate) fn new(num_workers: usize) -> Self {
        assert!(num_workers < SEARCH_MASK, "too many workers");
        Idle {
            state: AtomicUsize::new(num_workers * UNPARK_ONE),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// Returns the index of a parked worker to wake, having already counted
    /// it as unparked and searching, or `None` if no wake-up is needed.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        if !self.notify_should_wakeup() {
            return None;
        }
        let mut sleepers = self.sleepers.lock();
        if !self.notify_should_wakeup() {
            return None;
        }
        self.state.fetch_add(UNPARK_ONE | 1, SeqCst);
        let worker = sleepers.pop();
        debug_assert!(worker.is_some(), "unparked count and sleepers disagree");
        worker
    }

    fn notify_should_wakeup(&self) -> bool {
        // An RMW rather than a load: it orders the caller's preceding push
        // before this read (see the module docs).
        let state = self.state.fetch_add(0, SeqCst);
        searching(state) == 0 && unparked(state) < self.num_workers
    }

    /// Tries to become a searcher; fails when half the workers already are.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let state = self.state.load(SeqCst);
        if 2 * searching(state) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// A searcher found work. Returns whether it was the last searcher, in
    /// which case it must wake another worker to keep searching.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        debug_assert!(searching(prev) > 0);
        searching(prev) == 1
    }

    /// Records that `worker` parks. Returns whether it was the last searcher,
    /// in which case it must re-check every queue before sleeping.
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock();
        let dec = UNPARK_ONE + usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(worker);
        is_searching && searching(prev) == 1
    }

    /// Whether `worker` is still parked (not yet claimed by a notifier).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        self.sleepers.lock().contains(&worker)
    }

    /// Unparks `worker` by itself (it woke for a reason of its own, such as
    /// shutdown). Returns `false` if a notifier had already claimed it, in
    /// which case it counts as searching.
    pub(crate) fn unpark_worker_by_id(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock();
        match sleepers.iter().position(|&w| w == worker) {
            Some(index) => {
                sleepers.swap_remove(index);
                self.state.fetch_add(UNPARK_ONE, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Number of workers currently parked.
    pub(crate) fn num_parked(&self) -> usize {
        self.num_workers - unparked(self.state.load(SeqCst))
    }
}
