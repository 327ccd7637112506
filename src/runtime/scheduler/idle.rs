//! Which workers are asleep, which are searching for work, and who to wake.
//!
//! The protocol follows tokio's `multi_thread/idle.rs`:
//!
//! * A worker is *unparked* unless it is in `sleepers`. An unparked worker with
//!   no work may become *searching*; at most half the workers search at once,
//!   so a burst of wake-ups does not turn into a thundering herd.
//! * Whoever makes work available (a push to a queue; between two polls,
//!   a push onto a worker's own queue only while fewer than two tasks are
//!   queued ahead of it: see `worker::local::ANNOUNCED_DEPTH`) calls
//!   [`Idle::worker_to_notify`]. It wakes a sleeper only when nobody is
//!   searching: a searcher will find the work, and a searcher that finds
//!   work wakes the next sleeper itself (see `Worker::run_task`), so
//!   wake-ups chain instead of all happening on the spawning thread.
//! * A worker that parks leaving no searcher behind re-checks every queue
//!   after announcing it parks: the last searcher, and (unlike tokio) a
//!   worker that could not become a searcher while another searched, if
//!   that one has stopped since. Pushers make the work visible, issue a
//!   `SeqCst` fence and then load `state`; parkers update `state`, issue a
//!   `SeqCst` fence and then scan. The two fences are ordered one way or
//!   the other in the single total order of `SeqCst` operations, so either
//!   the pusher's load sees the parker's update (and wakes it) or the
//!   parker's scan sees the work: no wake-up is lost, even for work queued
//!   on a worker that then blocks (model-checked in `loom/`, which models
//!   `SeqCst` fences in full). A worker that moves a batch into its own
//!   queue from one that searchers look at does the same after the move
//!   (`Pool::batch_moved`): the batch is in neither queue while it moves.
//!   (The one task in a worker's LIFO slot is not in any queue, and waits
//!   for that worker, as in tokio: see `worker`. A task a worker queues
//!   on its own queue between two polls, behind two others, asks nobody,
//!   and reaches a scan when its stores do, not in the fences' order: see
//!   `ANNOUNCED_DEPTH`.)
//!
//!   Why a fence and a load rather than tokio's read-modify-write of
//!   `state` at every push: a read-modify-write takes the line exclusive,
//!   so every push, yield and wake-up on every worker (and every push
//!   from outside) bounced it between cores. A load leaves it shared;
//!   only the transitions (search, park, wake) write it.
//! * A notified worker is removed from `sleepers` by the notifier, who also
//!   counts it as unparked and searching; the worker learns it was notified by
//!   no longer finding itself in `sleepers`.
//!
//! # Elastic pools
//!
//! The number of *active* workers (threads running the worker loop) changes
//! while the pool runs; it lives in `state` next to the other two counts, so
//! one atomic read sees all three consistently. A worker is added unparked
//! ([`Idle::activate_worker`]) and only retires while parked and unclaimed
//! ([`Idle::retire_parked`]), both under the `sleepers` lock: `sleepers`
//! never names a worker whose thread has stopped, so a notifier never wakes
//! a worker that is gone.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicU64, Ordering::Relaxed, Ordering::SeqCst, RtMutex as Mutex};

/// Each count in `state` takes 16 bits.
const FIELD_BITS: u32 = 16;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const SEARCH_ONE: u64 = 1;
const UNPARK_ONE: u64 = 1 << FIELD_BITS;
const ACTIVE_ONE: u64 = 1 << (2 * FIELD_BITS);

pub(crate) struct Idle {
    /// Packed: number of searching workers (bits 0..16), of unparked workers
    /// (bits 16..32) and of active workers (bits 32..48). On a cache line
    /// of its own: every push reads it and every transition writes it,
    /// which would take the line from every core that reads what the
    /// compiler happens to lay out next to it (the re-layering of issue #12
    /// once put the slots' pointer there, which every push reads).
    state: CachePadded<AtomicU64>,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
}

fn searching(state: u64) -> usize {
    (state & FIELD_MASK) as usize
}

fn unparked(state: u64) -> usize {
    ((state >> FIELD_BITS) & FIELD_MASK) as usize
}

fn active(state: u64) -> usize {
    ((state >> (2 * FIELD_BITS)) & FIELD_MASK) as usize
}

impl Idle {
    /// No worker is active yet; each one is added by
    /// [`activate_worker`](Self::activate_worker). `max_workers` sizes the
    /// sleepers list.
    pub(crate) fn new(max_workers: usize) -> Self {
        assert!((max_workers as u64) < FIELD_MASK, "too many workers");
        Idle {
            state: CachePadded::new(AtomicU64::new(0)),
            sleepers: Mutex::new(Vec::with_capacity(max_workers)),
        }
    }

    /// Counts one more active worker, unparked and not searching, unless
    /// `max` are active already; `counted` runs under the lock just before
    /// the count moves. Returns whether it was counted.
    pub(crate) fn activate_worker(&self, max: usize, counted: impl FnOnce()) -> bool {
        let _sleepers = self.sleepers.lock();
        if active(self.state.load(SeqCst)) >= max {
            return false;
        }
        counted();
        self.state.fetch_add(ACTIVE_ONE | UNPARK_ONE, SeqCst);
        true
    }

    /// Undoes [`activate_worker`](Self::activate_worker) for a worker whose
    /// thread could not be started (it never parked or searched).
    pub(crate) fn deactivate_unstarted(&self) {
        let _sleepers = self.sleepers.lock();
        self.state.fetch_sub(ACTIVE_ONE | UNPARK_ONE, SeqCst);
    }

    /// Retires `worker` if it is still parked and unclaimed and more than
    /// `min` workers are active; `may_retire` runs under the lock as a last
    /// check and must return `true`. Returns whether the worker retired.
    pub(crate) fn retire_parked(
        &self,
        worker: usize,
        min: usize,
        may_retire: impl FnOnce() -> bool,
    ) -> bool {
        let mut sleepers = self.sleepers.lock();
        if active(self.state.load(SeqCst)) <= min {
            return false;
        }
        let Some(position) = sleepers.iter().position(|&w| w == worker) else {
            return false;
        };
        if !may_retire() {
            return false;
        }
        sleepers.swap_remove(position);
        // A parked worker is not counted as unparked: only `active` drops.
        self.state.fetch_sub(ACTIVE_ONE, SeqCst);
        true
    }

    /// Claims `worker` if it is parked, as `worker_to_notify` claims a
    /// sleeper: it is counted unparked and searching. Returns whether it was
    /// parked (the caller then unparks its thread).
    pub(crate) fn claim_parked(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock();
        match sleepers.iter().position(|&w| w == worker) {
            Some(position) => {
                sleepers.swap_remove(position);
                self.state.fetch_add(UNPARK_ONE | SEARCH_ONE, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Number of active workers.
    pub(crate) fn num_active(&self) -> usize {
        active(self.state.load(SeqCst))
    }

    /// Number of searching workers.
    pub(crate) fn num_searching(&self) -> usize {
        searching(self.state.load(SeqCst))
    }

    /// Returns the index of a parked worker to wake, having already counted
    /// it as unparked and searching, or `None` if no wake-up is needed.
    ///
    /// Always issues a `SeqCst` fence first, whatever it returns: every
    /// pusher's half of the protocol is that fence (see the module docs),
    /// and `Pool::after_push` and `Pool::batch_moved` rely on it being
    /// here. A fast path that returned before it would lose wake-ups.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        if !self.notify_should_wakeup() {
            return None;
        }
        let mut sleepers = self.sleepers.lock();
        if !self.notify_should_wakeup() {
            return None;
        }
        self.state.fetch_add(UNPARK_ONE | SEARCH_ONE, SeqCst);
        let worker = sleepers.pop();
        debug_assert!(worker.is_some(), "unparked count and sleepers disagree");
        worker
    }

    fn notify_should_wakeup(&self) -> bool {
        // Orders the caller's preceding push before this read, against a
        // parker's update, fence and scan (see the module docs), and a
        // closer's `closed`, fence and drain (`Pool::close`).
        fence(SeqCst);
        let state = self.state.load(SeqCst);
        searching(state) == 0 && unparked(state) < active(state)
    }

    /// Whether every active worker is unparked and none searches, as read
    /// right after [`worker_to_notify`](Self::worker_to_notify) found no
    /// one to wake: work just pushed to an injector then waits until a busy
    /// worker looks (see `Pool::injector_nudge`). A hint: a relaxed load of
    /// the line that call has just read, kept off the path of local
    /// pushes, which never ask.
    pub(crate) fn all_busy(&self) -> bool {
        let state = self.state.load(Relaxed);
        searching(state) == 0 && unparked(state) >= active(state)
    }

    /// Tries to become a searcher; fails when half the workers already are.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let state = self.state.load(SeqCst);
        if 2 * searching(state) >= active(state) {
            return false;
        }
        self.state.fetch_add(SEARCH_ONE, SeqCst);
        true
    }

    /// A searcher found work. Returns whether it was the last searcher, in
    /// which case it must wake another worker to keep searching.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(SEARCH_ONE, SeqCst);
        debug_assert!(searching(prev) > 0);
        searching(prev) == 1
    }

    /// Records that `worker` parks. Returns whether it leaves no searcher
    /// behind, in which case it must re-check every queue before sleeping.
    ///
    /// That is the last searcher, and also a worker that was not searching
    /// while nobody searches: one that could not become a searcher (another
    /// was searching) and parks after that searcher stopped. The searcher
    /// that stopped woke nobody (this worker still counted as unparked), nor
    /// did a push since (same reason); without the re-check, work queued on
    /// a worker that then blocks would wait for it forever.
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock();
        let dec = UNPARK_ONE + u64::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        // Between the update and the caller's scan of the queues (when
        // this returns `true`): pairs with the pushers' fence (see the
        // module docs). Parking is rare; no branch to skip it.
        fence(SeqCst);
        sleepers.push(worker);
        searching(prev) == usize::from(is_searching)
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
        let state = self.state.load(SeqCst);
        active(state).saturating_sub(unparked(state))
    }
}
