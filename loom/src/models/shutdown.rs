//! Model 2: `close` against `push_remote`/`push_placed` and a worker's exit.
//!
//! The pool code cannot be built under loom, so this is a hand-written copy
//! of its shutdown paths with the same atomics and orderings, on the real
//! `Idle`. Each function names the one it mirrors in `src/runtime/scheduler/`
//! (`push.rs`, `lifecycle.rs`, `worker/`); a step left out says so.
//!
//! The pool has one worker (slot 0) and these tasks:
//! * `A` sits in the worker's own deque at the start; whoever completes it
//!   (run or cancelled) wakes `B`, which awaits it;
//! * `L` is a local (`spawn_local`) task of the worker, waiting, registered
//!   in the worker's local registry; whoever completes it wakes `C`, a pool
//!   task that awaits it (the pattern of the crate's `spawn_local` docs);
//! * `B` and `C` wait, registered in the pool's registry, in no queue;
//! * `R` is pushed with `push_remote` and `P` with `push_placed`, each by
//!   a thread of its own, racing with `shutdown` on the main thread. The
//!   thread that pushes `R` also wakes `L` (before) and `B` (after) from
//!   outside.
//!
//! So wake-ups arrive during the worker's local cancellation: from `A`'s
//! and `L`'s cancellation on the worker itself (onto its own deque), from
//! the foreign thread (`B` through `push_remote`, `L` into the worker's
//! local inbox), and from shutdown's registry close; and pushes race with
//! `close`, the worker's exit and shutdown's drains.
//!
//! Property: every task is run or cancelled exactly once, a local task only
//! on its worker, and when every thread is done no queue holds a task.

use std::collections::VecDeque;

use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{check, seq_cst_order, Parker, Queue};
use crate::idle::Idle;

const A: usize = 0;
const B: usize = 1;
const R: usize = 2;
const P: usize = 3;
const L: usize = 4;
const C: usize = 5;
const TASKS: usize = 6;

/// A task's scheduling state, as async-task keeps it: a wake-up schedules
/// an idle task once; a finished task ignores wake-ups.
const IDLE: usize = 0;
const SCHEDULED: usize = 1;
const DONE: usize = 2;

struct Task {
    state: AtomicUsize,
    ran: AtomicUsize,
    cancelled: AtomicUsize,
}

/// Where the code runs: on the worker (its deque at hand) or elsewhere.
enum Here<'a> {
    Worker(&'a mut VecDeque<usize>),
    Foreign,
}

/// How `push_remote` orders its push before its `closed` check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RemoteOrder {
    /// The code as it stands, which adds no ordering of its own. What
    /// orders it are two details of crossbeam-deque 0.8: its push claims a
    /// slot with a `SeqCst` read-modify-write of the injector's tail, and
    /// its steal issues `fence(SeqCst)` before it reads the tail. In C11
    /// that forbids the lost task. Say the pusher's `SeqCst` load of
    /// `closed` reads `false`: it then precedes `close`'s `SeqCst` swap in
    /// the total order `S`, so the push (`SeqCst`, sequenced before that
    /// load) precedes the swap, which precedes the drainer's fence. Had
    /// the drainer's tail load read a tail older than the push, C++20
    /// [atomics.order] p4.3 would put that fence before the push in `S`: a
    /// contradiction. So the drain sees the task. loom does not order
    /// `SeqCst` accesses in `S`, so the model marks the push's place in
    /// `S` with a stand-in fence right after it.
    CrossbeamSeqCst,
    /// What `push_remote`'s comment gives as the reason: the `SeqCst` fence
    /// in `notify_parked` (`Idle::worker_to_notify`), and no ordering from
    /// the queue. It pairs with the fence `close` issues after it sets
    /// `closed`: the runtime is correct even with a queue that orders
    /// nothing (see `push_remote_is_ordered_by_the_idle_fence_alone`).
    /// (Before the fences, both sides did a read-modify-write of
    /// `Idle::state`; while `close` did not, loom found the lost task here.)
    IdleFenceOnly,
}

struct Pool {
    idle: Idle,
    injector: Queue,
    /// Worker 0's `inbox.placed`.
    placed: Queue,
    /// Worker 0's `inbox.local`.
    local: Queue,
    /// `Slot::local_alive` of worker 0.
    local_alive: AtomicUsize,
    /// Worker 0's `local_registry`, reduced like `registry`.
    local_registry: Mutex<(bool, Vec<usize>)>,
    parker: Parker,
    closed: AtomicBool,
    /// `Slot::running` of worker 0 (it never retires in this model).
    running: AtomicBool,
    /// The pool's registry, reduced to what shutdown uses: whether it is
    /// closed, and which tasks are registered (`Registry` itself is model 4).
    registry: Mutex<(bool, Vec<usize>)>,
    tasks: [Task; TASKS],
    remote_order: RemoteOrder,
}

impl Pool {
    fn new(remote_order: RemoteOrder) -> Arc<Self> {
        let idle = Idle::new(1);
        assert!(idle.activate_worker(1, || {}));
        let pool = Pool {
            idle,
            injector: Queue::new(),
            placed: Queue::new(),
            local: Queue::new(),
            local_alive: AtomicUsize::new(1),
            local_registry: Mutex::new((false, vec![L])),
            parker: Parker::new(),
            closed: AtomicBool::new(false),
            running: AtomicBool::new(true),
            registry: Mutex::new((false, vec![B, C])),
            tasks: std::array::from_fn(|_| Task {
                state: AtomicUsize::new(IDLE),
                ran: AtomicUsize::new(0),
                cancelled: AtomicUsize::new(0),
            }),
            remote_order,
        };
        // `A` is queued on the worker; `R` and `P` are being spawned.
        for task in [A, R, P] {
            pool.tasks[task].state.store(SCHEDULED, Relaxed);
        }
        Arc::new(pool)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// A waker's `wake`: async-task schedules an idle task once
    /// (`schedule` → `Pool::schedule_woken`).
    fn wake(&self, task: usize, here: Here<'_>) {
        if self.tasks[task]
            .state
            .compare_exchange(IDLE, SCHEDULED, AcqRel, Acquire)
            .is_ok()
        {
            self.schedule_woken(task, here);
        }
    }

    /// `Pool::schedule_woken`: a local task to its worker's local inbox
    /// (`schedule_woken_special`); on this pool's worker (not yet stopping:
    /// nothing runs on it after `cancel_everything` here),
    /// `try_schedule_local` (`Local::schedule` → `push_back`: the worker's
    /// own deque, then `notify_parked`); elsewhere `push_remote`.
    fn schedule_woken(&self, task: usize, here: Here<'_>) {
        if task == L {
            self.push_local(task);
            return;
        }
        match here {
            Here::Worker(deque) => {
                deque.push_back(task);
                self.notify_parked();
            }
            Here::Foreign => self.push_remote(task),
        }
    }

    /// Ends a task: it ran, or `run_cancelled` dropped it. Its future is
    /// dropped, so it leaves the registry (`Registration::drop`), and its
    /// completion wakes the task awaiting it.
    fn complete(&self, task: usize, cancelled: bool, here: Here<'_>) {
        let previous = self.tasks[task].state.swap(DONE, AcqRel);
        assert_eq!(previous, SCHEDULED, "task {task} ran while not scheduled");
        let count = if cancelled {
            &self.tasks[task].cancelled
        } else {
            &self.tasks[task].ran
        };
        count.fetch_add(1, Relaxed);
        if task == L {
            assert!(
                matches!(here, Here::Worker(_)),
                "a local task completed off its worker"
            );
            self.local_registry.lock().unwrap().1.retain(|&t| t != task);
            // `Pool::local_task_dropped`.
            self.local_alive.fetch_sub(1, SeqCst);
            self.wake(C, here);
        } else {
            self.registry.lock().unwrap().1.retain(|&t| t != task);
            if task == A {
                self.wake(B, here);
            }
        }
    }

    fn run_cancelled(&self, task: usize, here: Here<'_>) {
        self.complete(task, true, here);
    }

    /// `Pool::notify_parked`.
    fn notify_parked(&self) {
        if self.idle.worker_to_notify().is_some() {
            self.parker.unpark();
        }
    }

    /// `Pool::push_remote` (its callers are off the worker).
    fn push_remote(&self, task: usize) {
        if self.is_closed() {
            self.run_cancelled(task, Here::Foreign);
            return;
        }
        self.injector.push(task);
        if self.remote_order == RemoteOrder::CrossbeamSeqCst {
            // The push's place in `S` (see `RemoteOrder::CrossbeamSeqCst`).
            seq_cst_order();
        }
        self.notify_parked();
        if self.closed.load(SeqCst) {
            self.drain_injector(Here::Foreign);
        }
    }

    /// `Pool::push_placed` on worker 0, from a foreign thread.
    fn push_placed(&self, task: usize) {
        if self.is_closed() {
            self.run_cancelled(task, Here::Foreign);
            return;
        }
        self.placed.push(task);
        // `Pool::after_push(Notify::Placed(0), Drain::All)`: `wake_worker`.
        if self.idle.claim_parked(0) {
            self.parker.unpark();
        } else {
            self.notify_parked();
            fence(SeqCst);
            // Always running here; `rehome_placed` is model 3.
            assert!(self.running.load(SeqCst));
        }
        self.recheck_closed();
    }

    /// `Pool::push_local`: never cancels (only the worker may drop a local
    /// task), and wakes the worker only while the pool is open.
    fn push_local(&self, task: usize) {
        self.local.push(task);
        if !self.is_closed() && self.idle.claim_parked(0) {
            self.parker.unpark();
        }
    }

    /// The end of `Pool::after_push` after a wake that issued no fence of
    /// its own (`claim_parked` takes the `sleepers` lock): a fence, then
    /// `closed`.
    fn recheck_closed(&self) {
        fence(SeqCst);
        if self.closed.load(SeqCst) {
            self.drain_injector(Here::Foreign);
        }
    }

    /// `Pool::drain_injector` without users' queues: one pass of
    /// `drain_own_queues` (the injector, then every inbox: `placed`;
    /// `pinned` is empty here). Its second pass only matters for what a
    /// user's `RunQueue` dropped meanwhile, and is left out.
    fn drain_injector(&self, here: Here<'_>) {
        let mut here = here;
        while let Some(task) = self.injector.pop() {
            self.run_cancelled(task, reborrow(&mut here));
        }
        while let Some(task) = self.placed.pop() {
            self.run_cancelled(task, reborrow(&mut here));
        }
    }

    /// `Pool::close` (without the monitor).
    fn close(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        fence(SeqCst);
        self.parker.unpark();
    }

    /// `Pool::shutdown`, joining `worker` (the monitor is left out; the
    /// timers are model 3's).
    fn shutdown(&self, worker: thread::JoinHandle<VecDeque<usize>>) -> VecDeque<usize> {
        self.close();
        let deque = worker.join().unwrap();
        self.drain_injector(Here::Foreign);
        // `Registry::close`, then the wake-ups outside its lock.
        let registered = {
            let mut registry = self.registry.lock().unwrap();
            registry.0 = true;
            std::mem::take(&mut registry.1)
        };
        for task in registered {
            self.wake(task, Here::Foreign);
        }
        self.drain_injector(Here::Foreign);
        deque
    }

    /// `worker::run` for worker 0: `Core::run` until closed, then
    /// `Local::cancel_everything`. Returns its deque, which must be empty.
    fn worker(&self) -> VecDeque<usize> {
        let mut deque = VecDeque::from([A]);
        let mut searching = false;
        while !self.is_closed() {
            // `next_task`: own deque, inboxes, injector.
            let task = deque
                .pop_front()
                .or_else(|| self.local.pop())
                .or_else(|| self.placed.pop())
                .or_else(|| self.injector.pop());
            match task {
                Some(task) => {
                    // `run_task`.
                    if searching {
                        searching = false;
                        if self.idle.transition_worker_from_searching() {
                            self.notify_parked();
                        }
                    }
                    self.complete(task, false, Here::Worker(&mut deque));
                }
                // One worker: `steal_work` looks where `next_task` did.
                None => self.park(&mut searching),
            }
        }
        self.cancel_everything(&mut deque);
        deque
    }

    /// `Core::park` without timers, hooks and retirement.
    fn park(&self, searching: &mut bool) {
        if self.idle.transition_worker_to_parked(0, *searching) && !self.injector.is_empty() {
            self.notify_parked();
        }
        *searching = false;
        if !self.placed.is_empty() || !self.local.is_empty() {
            *searching = !self.idle.unpark_worker_by_id(0);
            return;
        }
        loop {
            if self.is_closed() {
                self.idle.unpark_worker_by_id(0);
                return;
            }
            self.parker.park();
            if !self.idle.is_parked(0) {
                *searching = true;
                return;
            }
        }
    }

    /// `Local::cancel_everything`: close the local registry and wake what
    /// it held, then cancel the deque and the inboxes until a pass cancels
    /// nothing (a cancellation can wake tasks onto this worker's deque) and
    /// no local task is alive (a foreign wake-up may still be on its way
    /// into the local inbox).
    fn cancel_everything(&self, deque: &mut VecDeque<usize>) {
        let waiting = {
            let mut registry = self.local_registry.lock().unwrap();
            registry.0 = true;
            std::mem::take(&mut registry.1)
        };
        for task in waiting {
            self.wake(task, Here::Worker(deque));
        }
        loop {
            let mut cancelled = false;
            while let Some(task) = deque.pop_front() {
                self.run_cancelled(task, Here::Worker(deque));
                cancelled = true;
            }
            // `inbox.drain` (placed; pinned is empty), then `drain_local`.
            while let Some(task) = self.placed.pop().or_else(|| self.local.pop()) {
                self.run_cancelled(task, Here::Worker(deque));
                cancelled = true;
            }
            if !cancelled {
                if self.local_alive.load(SeqCst) == 0 {
                    return;
                }
                thread::yield_now();
            }
        }
    }

    fn assert_all_done(&self, deque: &VecDeque<usize>, pushed: &[usize]) {
        assert!(deque.is_empty(), "left in the worker's deque: {deque:?}");
        assert!(self.injector.is_empty(), "left in the injector");
        assert!(self.placed.is_empty(), "left in the placed inbox");
        assert!(self.local.is_empty(), "left in the local inbox");
        for &task in [A, B, L, C].iter().chain(pushed) {
            let ran = self.tasks[task].ran.load(Relaxed);
            let cancelled = self.tasks[task].cancelled.load(Relaxed);
            assert_eq!(
                ran + cancelled,
                1,
                "task {task}: ran {ran} times, cancelled {cancelled} times"
            );
        }
    }
}

fn reborrow<'a>(here: &'a mut Here<'_>) -> Here<'a> {
    match here {
        Here::Worker(deque) => Here::Worker(deque),
        Here::Foreign => Here::Foreign,
    }
}

/// `shutdown` against a foreign thread that spawns `R` with `push_remote`
/// and wakes `L` and `B`, while the worker runs and cancels.
fn close_vs_push_remote(order: RemoteOrder) {
    let pool = Pool::new(order);
    let worker = {
        let pool = pool.clone();
        thread::spawn(move || pool.worker())
    };
    let foreign = {
        let pool = pool.clone();
        thread::spawn(move || {
            pool.wake(L, Here::Foreign);
            pool.push_remote(R);
            pool.wake(B, Here::Foreign);
        })
    };
    let deque = pool.shutdown(worker);
    foreign.join().unwrap();
    pool.assert_all_done(&deque, &[R]);
}

#[test]
fn close_vs_push_remote_and_foreign_wakes() {
    check(
        "shutdown: close vs push_remote + foreign wakes",
        Some(3),
        || {
            close_vs_push_remote(RemoteOrder::CrossbeamSeqCst);
        },
    );
}

/// Just the ordering of `push_remote` against `close` and the drain that
/// follows it, with no worker running (none needs waking).
fn bare_push_remote_vs_close(order: RemoteOrder) {
    let pool = Pool::new(order);
    let pusher = {
        let pool = pool.clone();
        thread::spawn(move || pool.push_remote(R))
    };
    pool.close();
    pool.drain_injector(Here::Foreign);
    pusher.join().unwrap();
    assert!(pool.injector.is_empty(), "left in the injector");
    assert_eq!(pool.tasks[R].cancelled.load(Relaxed), 1);
}

#[test]
fn bare_push_remote_vs_close_and_drain() {
    check("shutdown: push_remote vs close + drain", None, || {
        bare_push_remote_vs_close(RemoteOrder::CrossbeamSeqCst);
    });
}

/// `push_remote` against `close` with a queue that orders nothing: the
/// fences on both sides are enough (see `RemoteOrder::IdleFenceOnly`).
#[test]
fn push_remote_is_ordered_by_the_idle_fence_alone() {
    check(
        "shutdown: push_remote vs close, idle fence only",
        None,
        || {
            bare_push_remote_vs_close(RemoteOrder::IdleFenceOnly);
        },
    );
}

#[test]
fn close_vs_push_placed() {
    check("shutdown: close vs push_placed", Some(3), || {
        let pool = Pool::new(RemoteOrder::CrossbeamSeqCst);
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.worker())
        };
        let placer = {
            let pool = pool.clone();
            thread::spawn(move || pool.push_placed(P))
        };
        let deque = pool.shutdown(worker);
        placer.join().unwrap();
        pool.assert_all_done(&deque, &[P]);
    });
}
