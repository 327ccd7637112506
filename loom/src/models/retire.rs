//! Model 3: retiring a worker against `push_placed`, and timer inserts
//! against closing the retiring worker's wheel.
//!
//! Hand-written copies (same atomics, orderings and locks) of, in
//! multipool: `Pool::try_retire` (`Timers::close_wheel_if` around
//! `Idle::retire_parked`, the real `Idle`), `Pool::worker_retired`
//! (`running` cleared, then `rehome_placed`), the retiring worker's
//! `Core::park` loop, `Pool::push_placed` (`wake_worker`, else
//! `notify_parked`, `fence(SeqCst)`, the `running` check and
//! `rehome_placed`), and `Timers::insert`.
//!
//! Two slots: worker 0 is permanent (`min_workers` 1) and busy, worker 1 is
//! parked and its idle timeout has passed.

use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{check, Parker, Queue};
use crate::idle::Idle;

const MIN_WORKERS: usize = 1;
const TASK: usize = 7;

/// A worker's timer wheel: its timers, and whether it is closed.
struct Wheel {
    timers: Mutex<Vec<usize>>,
    closed: AtomicBool,
}

struct Pool {
    idle: Idle,
    injector: Queue,
    /// `inbox.placed` of worker 1.
    placed: Queue,
    parkers: [Parker; 2],
    running: [AtomicBool; 2],
    wheels: [Wheel; 2],
    workers_retired: AtomicUsize,
}

impl Pool {
    fn new() -> Arc<Self> {
        let idle = Idle::new(2);
        for _ in 0..2 {
            assert!(idle.activate_worker(2, || {}));
        }
        // Worker 1 parked (not searching) before the model starts; the
        // re-check it is asked for (nobody searches) finds nothing queued.
        assert!(idle.transition_worker_to_parked(1, false));
        Arc::new(Pool {
            idle,
            injector: Queue::new(),
            placed: Queue::new(),
            parkers: [Parker::new(), Parker::new()],
            running: [AtomicBool::new(true), AtomicBool::new(true)],
            wheels: std::array::from_fn(|_| Wheel {
                timers: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
            workers_retired: AtomicUsize::new(0),
        })
    }

    /// `Pool::notify_parked`.
    fn notify_parked(&self) {
        if let Some(worker) = self.idle.worker_to_notify() {
            self.parkers[worker].unpark();
        }
    }

    /// `Timers::close_wheel_if`.
    fn close_wheel_if(&self, wheel: usize, retire: impl FnOnce() -> bool) -> bool {
        let wheel = &self.wheels[wheel];
        let timers = wheel.timers.lock().unwrap();
        if !timers.is_empty() || !retire() {
            return false;
        }
        wheel.closed.store(true, Relaxed);
        true
    }

    /// `Pool::try_retire` (worker 1 has no local tasks).
    fn try_retire(&self, index: usize) -> bool {
        if index < MIN_WORKERS {
            return false;
        }
        self.close_wheel_if(index, || {
            self.idle.retire_parked(index, MIN_WORKERS, || {
                self.workers_retired.fetch_add(1, SeqCst);
                true
            })
        })
    }

    /// `Pool::worker_retired` (the parts hand-back is left out).
    fn worker_retired(&self, index: usize) {
        self.running[index].store(false, SeqCst);
        self.rehome_placed(index);
    }

    /// `Pool::rehome_placed`.
    fn rehome_placed(&self, _index: usize) {
        let mut moved = false;
        while let Some(task) = self.placed.pop() {
            self.injector.push(task);
            moved = true;
        }
        if moved {
            self.notify_parked();
        }
    }

    /// `Pool::push_placed(1, ..)` on an open pool (the re-check of
    /// `after_push` is model 2's).
    fn push_placed(&self, task: usize) {
        self.placed.push(task);
        // `wake_worker`.
        if self.idle.claim_parked(1) {
            self.parkers[1].unpark();
        } else {
            self.notify_parked();
            fence(SeqCst);
            if !self.running[1].load(SeqCst) {
                self.rehome_placed(1);
            }
        }
    }

    /// Worker 1 from its park's idle timeout on: the rest of `Core::park`'s
    /// loop (no timers are due), `Core::run` taking its inbox, or the exit
    /// of `worker::run` into `worker_retired`. Returns whether it retired,
    /// and the task it ran.
    fn retiring_worker(&self) -> (bool, Option<usize>) {
        // Woken by the timeout: `is_parked` first, then `try_retire`.
        let mut claimed = !self.idle.is_parked(1);
        if !claimed {
            if self.try_retire(1) {
                self.worker_retired(1);
                return (true, None);
            }
            // A notifier claimed it first (`retire_parked` found it gone):
            // the loop parks again, and its unpark is on the way.
            self.parkers[1].park();
            claimed = !self.idle.is_parked(1);
        }
        assert!(claimed, "worker 1 neither retired nor was claimed");
        // Claimed, so counted as searching: the run loop takes the inbox.
        let task = self.placed.pop();
        if task.is_some() && self.idle.transition_worker_from_searching() {
            self.notify_parked();
        }
        (false, task)
    }

    /// `Timers::insert` from a thread that is not a worker: the wheel
    /// `wheel_for` picked, or the next open one.
    fn insert_timer(&self, first: usize, timer: usize) -> Option<usize> {
        for offset in 0..2 {
            let index = (first + offset) % 2;
            let wheel = &self.wheels[index];
            let mut timers = wheel.timers.lock().unwrap();
            if wheel.closed.load(Relaxed) {
                continue;
            }
            timers.push(timer);
            return Some(index);
        }
        None
    }
}

/// `try_retire` and `worker_retired` against `push_placed` choosing the
/// retiring worker: the task is run by that worker (it was claimed) or
/// moved to the injector, never left in a retired worker's inbox.
#[test]
fn retire_vs_push_placed() {
    check("retire: try_retire + rehome vs push_placed", None, || {
        let pool = Pool::new();
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.retiring_worker())
        };
        pool.push_placed(TASK);
        let (retired, ran) = worker.join().unwrap();
        let rehomed = pool.injector.pop();
        assert!(
            pool.placed.is_empty(),
            "a task stranded in worker 1's inbox"
        );
        assert!(pool.injector.is_empty());
        match (retired, ran, rehomed) {
            (true, None, Some(TASK)) | (false, Some(TASK), None) => {}
            other => panic!("retired, ran, rehomed: {other:?}"),
        }
        assert_eq!(pool.idle.num_active(), if retired { 1 } else { 2 });
        assert_eq!(pool.idle.num_parked(), 0);
        assert_eq!(pool.workers_retired.load(Relaxed), usize::from(retired));
    });
}

/// A timer inserted (aimed at the retiring worker's wheel) against that
/// worker closing its wheel as it retires: the timer lands in an open
/// wheel, or the wheel stays open and the worker does not retire.
#[test]
fn timer_insert_vs_close_wheel() {
    check("retire: timer insert vs close_wheel_if", None, || {
        let pool = Pool::new();
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.try_retire(1))
        };
        let wheel = pool.insert_timer(1, 9);
        let retired = worker.join().unwrap();
        let wheel = wheel.expect("worker 0's wheel is always open");
        assert!(!pool.wheels[wheel].closed.load(Relaxed));
        assert_eq!(*pool.wheels[wheel].timers.lock().unwrap(), [9]);
        if retired {
            assert!(pool.wheels[1].closed.load(Relaxed));
            assert!(pool.wheels[1].timers.lock().unwrap().is_empty());
        } else {
            assert_eq!(wheel, 1, "worker 1 stays only for its timer");
        }
    });
}
