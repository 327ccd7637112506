//! A tokio task that runs long in a worker's park hook must not hide
//! multipool work from the other workers.
//!
//! With `enable_tokio`, an idle worker drives the owned current-thread tokio
//! runtime from its park hook, so `tokio::spawn`ed tasks run there, while
//! the worker has announced that it parks. These tests block such a task on
//! a channel the test controls and check that multipool work queued
//! meanwhile, in each way it can be queued, is run by the other worker
//! before the tokio task is released:
//!
//! * after a notifier claimed the hooked worker (a task pinned to it, whose
//!   push claims it by name): it must not count as the searcher that the
//!   next notifier relies on;
//! * spawned from another thread while the tokio task runs, whichever
//!   sleeper that spawn's notifier picks.
//!
//! (A multipool task that the tokio task itself wakes or spawns goes to the
//! hooked worker's own queue and waits for it, for locality, as a task
//! woken into tokio's LIFO slot waits for its worker.)
//!
//! And the other side of it: after the tokio task, the worker is a sleeper
//! again (a spawn reaches it, an elastic pool retires it), and a worker
//! whose hook waits for tokio's core, held by a tokio task in a busy
//! worker's turn, stays a sleeper that a spawn claims.
//!
//! Each test runs under a hang guard; the waits that decide an outcome wait
//! for an event, never for time to pass (the limits only turn a hang into a
//! failure).

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::on_thread;
use multipool::{JoinHandle, Runtime};
use multipool_compat::tokio::BuilderExt;

/// How long the test waits for work that must run while the tokio task is
/// blocked. Without the fix it never does; the limit only ends the test
/// (well inside `on_thread`'s own hang guard).
const MUST_RUN_WITHIN: Duration = Duration::from_secs(10);

fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .unwrap()
}

/// What the blocked tokio task does on its worker before it blocks.
#[derive(Clone, Copy)]
enum Before {
    /// Nothing.
    Nothing,
    /// Spawns a multipool task pinned to its own worker: the push claims
    /// that worker (it is among the sleepers, or was before the fix).
    PinToOwnWorker,
}

/// A tokio task blocked on a multipool worker, inside that worker's park
/// hook.
struct Blocked {
    worker: usize,
    /// Dropping it releases the task (also when the test fails, so that the
    /// runtime can shut down).
    release: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// The multipool task spawned by [`Before`], if any.
    spawned: Option<JoinHandle<Option<usize>>>,
}

impl Blocked {
    /// Starts a tokio task that blocks on a multipool worker, in its park
    /// hook. The owned tokio runtime is driven by an idle worker or, while
    /// none has entered its hook yet (just after the build), by the fallback
    /// thread: a task that lands there returns at once and is tried again.
    fn start(tokio: &tokio::runtime::Handle, before: Before) -> Self {
        loop {
            let (started_tx, started_rx) = mpsc::channel();
            let (release, release_rx) = mpsc::channel::<()>();
            let task = tokio.spawn(async move {
                let Some(worker) = multipool::worker_index() else {
                    let _ = started_tx.send(None);
                    return;
                };
                let report = || multipool::worker_index();
                let spawned = match before {
                    Before::Nothing => None,
                    Before::PinToOwnWorker => Some(
                        multipool::spawn(async move { report() })
                            .worker(worker)
                            .start(),
                    ),
                };
                let _ = started_tx.send(Some((worker, spawned)));
                // Blocks the worker's thread, inside the tokio poll.
                let _ = release_rx.recv();
            });
            match started_rx
                .recv_timeout(MUST_RUN_WITHIN)
                .expect("the tokio task never ran")
            {
                Some((worker, spawned)) => {
                    return Blocked {
                        worker,
                        release,
                        task,
                        spawned,
                    }
                }
                None => continue,
            }
        }
    }

    /// Releases the tokio task and waits for it and for what it spawned;
    /// returns the worker that ran the spawned task.
    fn release(self, rt: &Runtime) -> Option<usize> {
        drop(self.release);
        rt.block_on(common::guard(self.task)).unwrap();
        self.spawned
            .and_then(|handle| rt.block_on(common::guard(handle)).unwrap())
    }
}

/// Spawns a task on `rt` from this (non-worker) thread, through the
/// injector, and waits until it runs; returns the worker that ran it.
fn spawn_remote_and_wait(rt: &Runtime, blocked: &Blocked, what: &str) -> usize {
    let (tx, rx) = mpsc::channel();
    let handle = rt
        .spawn(async move {
            let _ = tx.send(multipool::worker_index());
        })
        .start();
    let ran_on = rx.recv_timeout(MUST_RUN_WITHIN).unwrap_or_else(|_| {
        panic!(
            "{what} did not run while a tokio task was blocked in worker {}'s park hook",
            blocked.worker
        )
    });
    drop(handle);
    let ran_on = ran_on.expect("tasks run on workers");
    assert_ne!(ran_on, blocked.worker, "the blocked worker cannot run it");
    ran_on
}

#[test]
fn a_claimed_worker_running_a_tokio_task_does_not_hide_injector_work() {
    on_thread("claimed", || {
        let rt = runtime();
        let tokio = rt.block_on(async { tokio::runtime::Handle::current() });
        // The pinned spawn claims the blocked worker (removes it from the
        // sleepers). Before the fix that made it the one searcher every
        // later notifier relied on, while it sat in the tokio poll.
        let blocked = Blocked::start(&tokio, Before::PinToOwnWorker);
        spawn_remote_and_wait(&rt, &blocked, "a remote spawn");
        let worker = blocked.worker;
        // The pinned task waited for its worker, which runs it once out of
        // the hook.
        assert_eq!(blocked.release(&rt), Some(worker));
    });
}

#[test]
fn remote_spawns_run_while_a_tokio_task_blocks_a_worker() {
    // Whichever sleeper each spawn's notifier picks, the work runs on the
    // free worker. Several rounds: each runtime's workers park in their own
    // order.
    on_thread("remote", || {
        for _ in 0..8 {
            let rt = runtime();
            let tokio = rt.block_on(async { tokio::runtime::Handle::current() });
            let blocked = Blocked::start(&tokio, Before::Nothing);
            for i in 0..4 {
                spawn_remote_and_wait(&rt, &blocked, &format!("remote spawn {i}"));
            }
            blocked.release(&rt);
        }
    });
}

#[test]
fn the_hooked_worker_serves_again_after_the_tokio_task() {
    // After a long tokio task the worker goes back to its hook as a parked
    // worker that notifiers can claim: with the other worker held, a remote
    // spawn must reach it.
    on_thread("again", || {
        let rt = runtime();
        let tokio = rt.block_on(async { tokio::runtime::Handle::current() });
        let blocked = Blocked::start(&tokio, Before::Nothing);
        let worker = blocked.worker;
        // Hold the other worker.
        let (held_tx, held_rx) = mpsc::channel();
        let (free_tx, free_rx) = mpsc::channel::<()>();
        let hold = rt
            .spawn(async move {
                let _ = held_tx.send(multipool::worker_index());
                let _ = free_rx.recv();
            })
            .start();
        let held = held_rx
            .recv_timeout(MUST_RUN_WITHIN)
            .expect("the other worker did not take the holding task");
        assert_ne!(held, Some(worker));
        blocked.release(&rt);
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(multipool::worker_index());
        })
        .detach();
        let ran_on = rx
            .recv_timeout(MUST_RUN_WITHIN)
            .expect("the worker back in its hook was not woken");
        assert_eq!(ran_on, Some(worker));
        drop(free_tx);
        rt.block_on(common::guard(hold)).unwrap();
    });
}

#[test]
fn an_elastic_pool_driving_tokio_still_shrinks_after_its_idle_timeout() {
    // A worker that wakes in its hook at its idle timeout goes back to
    // counting as parked (tokio ran its timer, which counts as busy) and
    // retires like the others.
    on_thread("elastic", || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(3)
            .idle_timeout(Duration::from_millis(20))
            .enable_tokio()
            .build()
            .unwrap();
        let handle = rt.handle();
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        // Two tasks that block their workers: the monitor adds workers.
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let (started_tx, released) = (started_tx.clone(), released.clone());
                rt.spawn(async move {
                    let _ = started_tx.send(());
                    let _ = released.lock().unwrap().recv();
                })
                .start()
            })
            .collect();
        for _ in 0..2 {
            started
                .recv_timeout(MUST_RUN_WITHIN)
                .expect("the pool did not grow for a blocked worker");
        }
        assert!(handle.metrics().num_workers() >= 2);
        drop(release);
        for blocker in blockers {
            rt.block_on(common::guard(blocker)).unwrap();
        }
        let give_up = std::time::Instant::now() + MUST_RUN_WITHIN;
        while handle.metrics().num_workers() > 1 {
            assert!(
                std::time::Instant::now() < give_up,
                "{} workers still active",
                handle.metrics().num_workers()
            );
            thread::sleep(Duration::from_millis(1));
        }
        // tokio is still driven.
        let slept = rt.block_on(common::guard(multipool::spawn(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            7
        })));
        assert_eq!(slept.unwrap(), 7);
    });
}

#[test]
fn a_worker_waiting_for_tokio_held_by_a_busy_turn_stays_claimable() {
    // A tokio task blocks a busy worker inside its turn of tokio (between
    // two polls), holding tokio's core. The other worker goes idle and
    // enters its hook, where tokio's `block_on` waits for the core: it must
    // still count as a sleeper that a remote spawn claims and wakes.
    on_thread("turn", || {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;

        const NONE: usize = usize::MAX;
        let rt = runtime();
        let tokio = rt.block_on(async { tokio::runtime::Handle::current() });
        let (worker, release, task) = loop {
            // Keep both workers busy with tasks that poll for 20 µs at a
            // time: no worker is in its hook, so tokio's tasks run in busy
            // workers' turns.
            let stop = Arc::new(AtomicBool::new(false));
            let seen: Arc<[AtomicUsize; 2]> =
                Arc::new([AtomicUsize::new(NONE), AtomicUsize::new(NONE)]);
            let spinners: Vec<_> = (0..2)
                .map(|i| {
                    let (stop, seen) = (stop.clone(), seen.clone());
                    rt.spawn(async move {
                        while !stop.load(SeqCst) {
                            seen[i].store(multipool::worker_index().unwrap(), SeqCst);
                            let start = std::time::Instant::now();
                            while start.elapsed() < Duration::from_micros(20) {}
                            multipool::task::yield_now().await;
                        }
                    })
                    .start()
                })
                .collect();
            let give_up = std::time::Instant::now() + MUST_RUN_WITHIN;
            loop {
                let (a, b) = (seen[0].load(SeqCst), seen[1].load(SeqCst));
                if a != NONE && b != NONE && a != b {
                    break;
                }
                assert!(
                    std::time::Instant::now() < give_up,
                    "the spinners never spread"
                );
                thread::yield_now();
            }
            let (started_tx, started_rx) = mpsc::channel();
            let (release, release_rx) = mpsc::channel::<()>();
            let task = tokio.spawn(async move {
                let worker = multipool::worker_index();
                let _ = started_tx.send(worker);
                if worker.is_some() {
                    let _ = release_rx.recv();
                }
            });
            let worker = started_rx
                .recv_timeout(MUST_RUN_WITHIN)
                .expect("the tokio task never ran");
            stop.store(true, SeqCst);
            match worker {
                Some(worker) => {
                    // The free worker finishes both spinners (it steals the
                    // blocked worker's) and parks in its hook.
                    for spinner in spinners {
                        rt.block_on(common::guard(spinner)).unwrap();
                    }
                    break (worker, release, task);
                }
                None => {
                    for spinner in spinners {
                        rt.block_on(common::guard(spinner)).unwrap();
                    }
                    rt.block_on(common::guard(task)).unwrap();
                }
            }
        };
        let give_up = std::time::Instant::now() + MUST_RUN_WITHIN;
        while rt.handle().metrics().num_parked_workers() != 1 {
            assert!(
                std::time::Instant::now() < give_up,
                "the free worker, waiting for tokio's core in its hook, never counted as parked"
            );
            thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(multipool::worker_index());
        })
        .detach();
        let ran_on = rx.recv_timeout(MUST_RUN_WITHIN).unwrap_or_else(|_| {
            panic!("a remote spawn did not run while worker {worker}'s turn held tokio")
        });
        assert_ne!(ran_on, Some(worker));
        drop(release);
        rt.block_on(common::guard(task)).unwrap();
    });
}
