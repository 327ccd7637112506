//! Model 1: the idle protocol, on the real `runtime::scheduler::idle` code.
//!
//! Mirrors, in multipool:
//! * the producer: `Pool::push_remote` (push to the injector, then
//!   `Pool::notify_parked`: `Idle::worker_to_notify` and an unpark) and
//!   `Pool::push_pinned` (push to the inbox, then `Pool::wake_worker`:
//!   `Idle::claim_parked` and an unpark);
//! * a worker's own queue, which siblings steal from: `Local::push_back`
//!   (push, then `notify_parked`) and a batch moved into it from a queue
//!   searchers look at (`Pool::pop_injector`, then `Pool::batch_moved`);
//! * the worker: `Core::steal_work` (`transition_worker_to_searching`),
//!   `Core::run_task` (`transition_worker_from_searching`, waking the next
//!   searcher) and `Core::park`: `transition_worker_to_parked`, then
//!   `Pool::notify_if_work_pending` if no searcher is left, the inbox check with
//!   `unpark_worker_by_id`, then the park loop that ends when `is_parked`
//!   turns false (a notifier claimed the worker) or the pool closes.
//!
//! Property: no lost wake-up. A worker parks only through the park loop, so
//! if neither its re-check saw the task nor a producer woke it, the model
//! ends with every thread blocked, which loom reports as a deadlock. The
//! idle counts end consistent.
//!
//! No stand-in fence is needed: the producer's push and the parker's scan
//! are ordered by the `SeqCst` fences on both sides (in
//! `Idle::worker_to_notify` and `Idle::transition_worker_to_parked`), or by
//! the `sleepers` lock, all of which loom models in full. The producer only
//! loads `Idle::state`: a read-modify-write there would order the two
//! sides by itself (`state`'s modification order), and would hide a
//! missing fence.

use loom::sync::atomic::{AtomicBool, Ordering::*};
use loom::sync::Arc;
use loom::thread;

use super::{check, Parker, Queue};
use crate::idle::Idle;

struct Pool {
    idle: Idle,
    /// The injector (`has_queued_work` looks at it).
    injector: Queue,
    /// Worker 0's pinned inbox (`has_inbox_work`; not in `has_queued_work`).
    pinned: Queue,
    /// Worker 0's own queue, which siblings steal from (`has_queued_work`
    /// looks at it). A stand-in for its crossbeam `Worker` deque and
    /// `Stealer`: the push is a `SeqCst` read-modify-write of `tail` (which
    /// loom treats as `AcqRel`) where the deque's is a `Release` store; the
    /// pusher's `fence(SeqCst)` right after it orders either the same way.
    local0: Queue,
    parkers: Vec<Parker>,
    closed: AtomicBool,
}

impl Pool {
    fn new(workers: usize) -> Arc<Self> {
        let idle = Idle::new(workers);
        for _ in 0..workers {
            assert!(idle.activate_worker(workers, || {}));
        }
        Arc::new(Pool {
            idle,
            injector: Queue::new(),
            pinned: Queue::new(),
            local0: Queue::new(),
            parkers: (0..workers).map(|_| Parker::new()).collect(),
            closed: AtomicBool::new(false),
        })
    }

    /// `Pool::notify_parked`. (After a push to an injector that finds
    /// every worker busy, the pool also sets its injector nudge: a hint
    /// that makes busy workers look at the injectors sooner, which no task
    /// relies on to run, the periodic turn unchanged: not modelled.)
    fn notify_parked(&self) {
        if let Some(worker) = self.idle.worker_to_notify() {
            self.parkers[worker].unpark();
        }
    }

    /// `Pool::batch_moved` (which also sets the level hint, a relaxed hint
    /// no protocol here depends on: not modelled).
    fn batch_moved(&self) {
        self.notify_parked();
    }

    /// `Pool::push_remote` while the pool is open.
    fn push_remote(&self, task: usize) {
        self.injector.push(task);
        self.notify_parked();
    }

    /// `Pool::push_pinned` while the pool is open (`wake_worker` inlined).
    fn push_pinned(&self, worker: usize, task: usize) {
        self.pinned.push(task);
        if self.idle.claim_parked(worker) {
            self.parkers[worker].unpark();
        }
    }

    /// `Pool::close`, as far as parked workers see it.
    fn close(&self) {
        self.closed.store(true, SeqCst);
        for parker in &self.parkers {
            parker.unpark();
        }
    }

    /// Worker `index`'s loop until it has run one task or the pool closed;
    /// returns the task it ran.
    fn worker(&self, index: usize) -> Option<usize> {
        self.worker_searching(index, false)
    }

    /// [`worker`](Self::worker) for a worker that starts out counted as
    /// searching (`searching`: a notifier claimed it).
    fn worker_searching(&self, index: usize, mut searching: bool) -> Option<usize> {
        while !self.closed.load(Acquire) {
            // `next_task`: the inbox (worker 0 only), then the injector.
            let found = if index == 0 { self.pinned.pop() } else { None };
            if let Some(task) = found.or_else(|| self.injector.pop()) {
                // `run_task`.
                if searching && self.idle.transition_worker_from_searching() {
                    self.notify_parked();
                }
                return Some(task);
            }
            // `steal_work`: become a searcher and look again.
            if !searching {
                searching = self.idle.transition_worker_to_searching();
            }
            if searching {
                // Siblings' queues (`steal_level`), then the injector.
                let stolen = if index == 0 { None } else { self.local0.pop() };
                if let Some(task) = stolen.or_else(|| self.injector.pop()) {
                    if self.idle.transition_worker_from_searching() {
                        self.notify_parked();
                    }
                    return Some(task);
                }
            }
            self.park(index, &mut searching);
        }
        None
    }

    /// `Core::park`, without timers, hooks and retirement.
    fn park(&self, index: usize, searching: &mut bool) {
        if self.idle.transition_worker_to_parked(index, *searching) {
            // `notify_if_work_pending`: `has_queued_work` counts the
            // injector and the workers' own queues, not pinned inboxes.
            if !self.injector.is_empty() || !self.local0.is_empty() {
                self.notify_parked();
            }
        }
        *searching = false;
        if index == 0 && !self.pinned.is_empty() {
            *searching = !self.idle.unpark_worker_by_id(index);
            return;
        }
        loop {
            if self.closed.load(Acquire) {
                self.idle.unpark_worker_by_id(index);
                return;
            }
            self.parkers[index].park();
            if !self.idle.is_parked(index) {
                *searching = true;
                return;
            }
        }
    }
}

/// One worker, the last searcher, parks while a remote producer pushes.
#[test]
fn push_vs_last_searcher_parks() {
    check(
        "idle: push_remote vs the last searcher parking",
        None,
        || {
            let pool = Pool::new(1);
            let producer = {
                let pool = pool.clone();
                thread::spawn(move || pool.push_remote(7))
            };
            assert_eq!(pool.worker(0), Some(7));
            producer.join().unwrap();
            assert_eq!(pool.idle.num_parked(), 0);
            assert_eq!(pool.idle.num_searching(), 0);
        },
    );
}

/// Two workers search and park while a remote producer pushes one task;
/// whoever runs it closes the pool so the other one ends too.
#[test]
fn push_vs_two_searchers_park() {
    check(
        "idle: push_remote vs two searchers parking",
        Some(3),
        || {
            let pool = Pool::new(2);
            let workers: Vec<_> = (0..2)
                .map(|index| {
                    let pool = pool.clone();
                    thread::spawn(move || {
                        let ran = pool.worker(index);
                        if ran.is_some() {
                            pool.close();
                        }
                        ran
                    })
                })
                .collect();
            pool.push_remote(7);
            let ran: Vec<_> = workers
                .into_iter()
                .filter_map(|worker| worker.join().unwrap())
                .collect();
            assert_eq!(ran, [7], "the task must run exactly once");
            assert_eq!(pool.idle.num_parked(), 0);
        },
    );
}

/// `claim_parked` (a pinned push) against the worker announcing that it
/// parks and then checking its inbox.
#[test]
fn claim_parked_vs_park_and_inbox_check() {
    check("idle: claim_parked vs park + inbox check", None, || {
        let pool = Pool::new(1);
        let producer = {
            let pool = pool.clone();
            thread::spawn(move || pool.push_pinned(0, 7))
        };
        assert_eq!(pool.worker(0), Some(7));
        producer.join().unwrap();
        assert_eq!(pool.idle.num_parked(), 0);
        assert_eq!(pool.idle.num_searching(), 0);
    });
}

/// Worker 0, the only searcher, finds a task and runs it; the task spawns
/// another onto worker 0's own queue and then blocks its worker (a
/// `std` barrier, a long computation). Worker 1 had just found nothing and
/// tried to become a searcher, which it may not while worker 0 searches,
/// so it parks. Worker 0 stops searching (waking nobody: worker 1 still
/// counts as unparked), then its push wakes nobody either (same reason).
/// The task must still reach worker 1: a worker that parks leaving no
/// searcher behind re-checks the queues, searching or not (the CI run that
/// found this: `tests/stress.rs::spawns_from_a_worker_are_stolen_by_idle_siblings`
/// under valgrind).
#[test]
fn worker_that_could_not_search_parks_while_the_searcher_stops() {
    check(
        "idle: a non-searcher parks as the last searcher finds work",
        None,
        || {
            let pool = Pool::new(2);
            // Worker 0 searches (a notifier claimed it, say).
            assert!(pool.idle.transition_worker_to_searching());
            let sibling = {
                let pool = pool.clone();
                thread::spawn(move || pool.worker(1))
            };
            // Worker 0 found a task (`run_task`): the last searcher wakes
            // the next one, if any is parked.
            if pool.idle.transition_worker_from_searching() {
                pool.notify_parked();
            }
            // The task spawns onto worker 0's queue (`Local::push_back`),
            // then blocks worker 0: only worker 1 can run what it spawned.
            pool.local0.push(7);
            pool.notify_parked();
            assert_eq!(sibling.join().unwrap(), Some(7));
            assert_eq!(pool.idle.num_searching(), 0);
        },
    );
}

/// A worker that is not searching moves a batch from the injector into its
/// own queue (`Pool::pop_injector`) while its sibling, the only searcher,
/// looks: the batch is in neither queue while it moves, so the searcher
/// finds both empty and parks as the last one, and its re-check may be as
/// early. The mover then runs the batch's first task, which blocks it until
/// the rest has run. The fence in `notify_parked` after the move
/// (`Pool::batch_moved`) is what makes the rest reach the sibling.
/// (crossbeam takes the batch off the injector with one compare-exchange;
/// two pops here allow more interleavings, not fewer.)
#[test]
fn batch_moved_while_the_last_searcher_parks() {
    check(
        "idle: a batch moves between queues as the last searcher parks",
        None,
        || {
            let pool = Pool::new(2);
            pool.injector.push(7);
            pool.injector.push(8);
            // Worker 1 searches (it was woken for the injector's tasks).
            assert!(pool.idle.transition_worker_to_searching());
            let sibling = {
                let pool = pool.clone();
                thread::spawn(move || pool.worker_searching(1, true))
            };
            // Worker 0, not searching, takes a batch: the first task to
            // run, the rest into its own queue.
            let first = pool.injector.pop();
            if let Some(rest) = pool.injector.pop() {
                pool.local0.push(rest);
                pool.batch_moved();
            }
            // Worker 0 runs `first`, which blocks it until the sibling has
            // run a task: only the sibling can run the rest.
            let ran = sibling.join().unwrap();
            assert!(ran.is_some());
            assert_ne!(ran, first);
            assert!(pool.injector.is_empty() && pool.local0.is_empty());
        },
    );
}
