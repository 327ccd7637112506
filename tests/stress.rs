//! Many tasks, many threads, repeated runs. Each test runs under a generous
//! watchdog so that a lost wake-up fails the test instead of hanging CI; the
//! outcome never depends on how fast the machine is.

mod common;

use common::{hold_worker, watchdog};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use futures::channel::oneshot;
use multipool::{Priority, Runtime};

#[test]
fn hundred_thousand_tasks_across_all_priorities() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let counter = Arc::new(AtomicUsize::new(0));
        let c = counter.clone();
        let sum = rt.block_on(async move {
            // Half spawned from outside the workers, half from inside a task.
            let outside: Vec<_> = (0..50_000usize)
                .map(|i| {
                    let counter = c.clone();
                    multipool::spawn(async move {
                        if i % 7 == 0 {
                            multipool::task::yield_now().await;
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                        i
                    })
                    .priority(Priority::ALL[i % 3])
                    .start()
                })
                .collect();
            let c2 = c.clone();
            let inside = multipool::spawn(async move {
                let handles: Vec<_> = (50_000..100_000usize)
                    .map(|i| {
                        let counter = c2.clone();
                        multipool::spawn(async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            i
                        })
                        .priority(Priority::ALL[i % 3])
                        .start()
                    })
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            })
            .start();
            let mut sum = 0;
            for handle in outside {
                sum += handle.await.unwrap();
            }
            sum + inside.await.unwrap()
        });
        assert_eq!(counter.load(Ordering::Relaxed), 100_000);
        assert_eq!(sum, (0..100_000).sum::<usize>());
    });
}

#[test]
fn many_threads_spawn_remotely_at_once_repeatedly() {
    watchdog(120, || {
        for _round in 0..5 {
            let rt = Runtime::builder().workers(2).build().unwrap();
            let threads = 8;
            let per_thread = 2_000;
            let barrier = Arc::new(Barrier::new(threads));
            let counter = Arc::new(AtomicUsize::new(0));
            let spawners: Vec<_> = (0..threads)
                .map(|t| {
                    let handle = rt.handle();
                    let barrier = barrier.clone();
                    let counter = counter.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        let handles: Vec<_> = (0..per_thread)
                            .map(|i| {
                                let counter = counter.clone();
                                handle
                                    .spawn(async move {
                                        counter.fetch_add(1, Ordering::Relaxed);
                                    })
                                    .priority(Priority::ALL[(t + i) % 3])
                                    .start()
                            })
                            .collect();
                        for h in handles {
                            multipool::block_on(h).unwrap();
                        }
                    })
                })
                .collect();
            for spawner in spawners {
                spawner.join().unwrap();
            }
            assert_eq!(counter.load(Ordering::Relaxed), threads * per_thread);
        }
    });
}

#[test]
fn recursive_fan_out() {
    fn tree(depth: u32) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> {
        Box::pin(async move {
            if depth == 0 {
                return 1;
            }
            let left = multipool::spawn(tree(depth - 1))
                .priority(Priority::ALL[depth as usize % 3])
                .start();
            let right = multipool::spawn(tree(depth - 1)).start();
            left.await.unwrap() + right.await.unwrap()
        })
    }
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        assert_eq!(
            rt.block_on(multipool::spawn(tree(14)).start()).unwrap(),
            1 << 14
        );
    });
}

#[test]
fn ping_pong_pairs() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        for _ in 0..20 {
            rt.block_on(async {
                let handles: Vec<_> = (0..500)
                    .map(|i| {
                        multipool::spawn(async move {
                            let (tx1, rx1) = oneshot::channel::<u32>();
                            let (tx2, rx2) = oneshot::channel::<u32>();
                            multipool::spawn(async move {
                                let v = rx1.await.unwrap();
                                tx2.send(v + 1).unwrap();
                            })
                            .priority(Priority::ALL[i % 3])
                            .detach();
                            tx1.send(i as u32).unwrap();
                            rx2.await.unwrap()
                        })
                        .start()
                    })
                    .collect();
                for (i, handle) in handles.into_iter().enumerate() {
                    assert_eq!(handle.await.unwrap(), i as u32 + 1);
                }
            });
        }
    });
}

#[test]
fn no_lost_wakeups_when_workers_idle() {
    // Each round lets the workers park, then wakes the pool with one task
    // from outside; a lost wake-up would hang here.
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        for round in 0..20_000u32 {
            let value = rt.block_on(
                rt.spawn(async move { round })
                    .priority(Priority::ALL[round as usize % 3]),
            );
            assert_eq!(value.unwrap(), round);
        }
    });
}

#[test]
fn wakes_from_foreign_threads() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let mut senders = Vec::new();
        let handles: Vec<_> = (0..2_000u32)
            .map(|i| {
                let (tx, rx) = oneshot::channel::<u32>();
                senders.push(tx);
                rt.spawn(async move { rx.await.unwrap() * 2 })
                    .priority(Priority::ALL[i as usize % 3])
                    .start()
            })
            .collect();
        // Four plain threads wake the tasks concurrently.
        let mut chunks: Vec<Vec<_>> = (0..4).map(|_| Vec::new()).collect();
        for (i, tx) in senders.into_iter().enumerate() {
            chunks[i % 4].push((i as u32, tx));
        }
        let wakers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                thread::spawn(move || {
                    for (i, tx) in chunk {
                        tx.send(i).unwrap();
                    }
                })
            })
            .collect();
        for w in wakers {
            w.join().unwrap();
        }
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(rt.block_on(handle).unwrap(), i as u32 * 2);
        }
    });
}

#[test]
fn every_worker_takes_part_when_work_is_plentiful() {
    // Tasks block their worker until all workers have picked one up, which
    // only finishes if idle workers are woken to take queued work.
    watchdog(120, || {
        for workers in [2usize, 3, 4] {
            let rt = Runtime::builder().workers(workers).build().unwrap();
            let barrier = Arc::new(Barrier::new(workers));
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let barrier = barrier.clone();
                    rt.spawn(async move {
                        barrier.wait();
                        multipool::worker_index().unwrap()
                    })
                    .start()
                })
                .collect();
            let mut seen: Vec<_> = handles
                .into_iter()
                .map(|h| rt.block_on(h).unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..workers).collect::<Vec<_>>());
        }
    });
}

#[test]
fn spawns_from_a_worker_are_stolen_by_idle_siblings() {
    // One task spawns blocking tasks from its worker (they queue locally);
    // they can only all meet at the barrier if a sibling steals one.
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        // Many rounds: the sibling comes and goes between rounds, and a
        // round may catch it between "I may not search" and "I park" (see
        // the loom model `worker_that_could_not_search_parks_while_the_searcher_stops`,
        // whose lost wake-up this test hit about once in 20 runs of 200
        // rounds under valgrind).
        for _ in 0..1000 {
            let barrier = Arc::new(Barrier::new(2));
            let b = barrier.clone();
            let both = rt.block_on(rt.spawn(async move {
                let b2 = b.clone();
                let first = multipool::spawn(async move {
                    b2.wait();
                    multipool::worker_index().unwrap()
                })
                .start();
                let second = multipool::spawn(async move {
                    b.wait();
                    multipool::worker_index().unwrap()
                })
                .start();
                (first, second)
            }));
            let (first, second) = both.unwrap();
            let (a, b) = (rt.block_on(first).unwrap(), rt.block_on(second).unwrap());
            assert_ne!(a, b, "the two blocking tasks ran on different workers");
        }
    });
}

#[test]
fn yielding_tasks_queued_deep_on_one_worker_spread_to_a_sibling() {
    // Once a worker's queue holds two tasks, a push onto it (each yield
    // here) no longer asks whether to wake a sibling (`ANNOUNCED_DEPTH`).
    // A sibling must still join in: parked when the tasks are spawned (the
    // first pushes wake it), or busy (held here) and back to a queue that
    // is already deep (its scan finds them). The yielders stop only once
    // both workers have run one, so a sibling left out hangs the round.
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        for round in 0..200 {
            let held = (round % 2 == 1).then(|| hold_worker(&rt));
            let ran_on = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let on = ran_on.clone();
            let yielders = rt.block_on(rt.spawn(async move {
                (0..8)
                    .map(|_| {
                        let on = on.clone();
                        multipool::spawn(async move {
                            loop {
                                on[multipool::worker_index().unwrap()]
                                    .store(true, Ordering::SeqCst);
                                if on.iter().all(|ran| ran.load(Ordering::SeqCst)) {
                                    break;
                                }
                                multipool::task::yield_now().await;
                            }
                        })
                        .start()
                    })
                    .collect::<Vec<_>>()
            }));
            if let Some(held) = held {
                // The yielders run, on the spawning worker only, and its
                // queue holds the rest, before the held one comes back.
                while !ran_on.iter().any(|ran| ran.load(Ordering::SeqCst)) {
                    thread::yield_now();
                }
                let ran = ran_on.iter().filter(|ran| ran.load(Ordering::SeqCst));
                assert_eq!(ran.count(), 1, "round {round}");
                held.release();
            }
            for yielder in yielders.unwrap() {
                rt.block_on(yielder).unwrap();
            }
        }
    });
}

#[test]
fn a_pair_that_wakes_each_other_and_yields_spreads_to_a_parked_sibling() {
    // Each task of the pair wakes the other (into the LIFO slot, which asks
    // no sibling) and then yields: the yield, queued once the poll has
    // returned onto a queue shorter than `ANNOUNCED_DEPTH`, must ask for a
    // parked sibling, or the pair alternates on one worker for ever. The
    // first task starts only once both workers are parked, and waits in
    // its first poll until the sibling has parked again (the wake-up that
    // brought the first task in may have woken it too), so only a push
    // after a poll (a yield) can wake it. The pair stops once it has run on both workers.
    use futures::channel::mpsc::unbounded;
    use futures::StreamExt;
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let metrics = rt.handle().metrics();
        for _ in 0..50 {
            let ran_on = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let both = |ran_on: &[AtomicBool; 2]| {
                ran_on[multipool::worker_index().unwrap()].store(true, Ordering::SeqCst);
                ran_on.iter().all(|ran| ran.load(Ordering::SeqCst))
            };
            let (start, started) = oneshot::channel::<()>();
            let (to_second, mut from_first) = unbounded::<bool>();
            let (to_first, mut from_second) = unbounded::<()>();
            let on = ran_on.clone();
            let sibling_parked = {
                let metrics = metrics.clone();
                move || {
                    while metrics.num_parked_workers() < 1 {
                        thread::yield_now();
                    }
                }
            };
            let first = rt
                .spawn(async move {
                    started.await.unwrap();
                    sibling_parked();
                    loop {
                        let done = both(&on);
                        to_second.unbounded_send(done).unwrap();
                        if done {
                            return;
                        }
                        multipool::task::yield_now().await;
                        from_second.next().await.unwrap();
                    }
                })
                .start();
            let on = ran_on.clone();
            let second = rt
                .spawn(async move {
                    while let Some(done) = from_first.next().await {
                        both(&on);
                        if done {
                            return;
                        }
                        to_first.unbounded_send(()).unwrap();
                        multipool::task::yield_now().await;
                    }
                })
                .start();
            while metrics.num_parked_workers() < 2 {
                thread::yield_now();
            }
            start.send(()).unwrap();
            rt.block_on(first).unwrap();
            rt.block_on(second).unwrap();
        }
    });
}

#[test]
fn a_worker_that_blocks_never_strands_what_it_spawned() {
    // A wider shape of `spawns_from_a_worker_are_stolen_by_idle_siblings`:
    // a task spawns onto its own worker's queue, then blocks that worker
    // until every task it spawned runs, which only siblings can do. Three
    // of the four spawned tasks must be stolen, in batches that may land two
    // on one sibling, so siblings must also steal from each other, and
    // every sibling that parks must be woken for what is left.
    const WORKERS: usize = 4;
    watchdog(120, || {
        let rt = Runtime::builder().workers(WORKERS).build().unwrap();
        for round in 0..300 {
            let barrier = Arc::new(Barrier::new(WORKERS));
            let ran = rt.block_on(rt.spawn(async move {
                let handles: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let barrier = barrier.clone();
                        multipool::spawn(async move {
                            barrier.wait();
                            multipool::worker_index().unwrap()
                        })
                        .start()
                    })
                    .collect();
                handles
            }));
            let mut workers: Vec<usize> = ran
                .unwrap()
                .into_iter()
                .map(|handle| rt.block_on(handle).unwrap())
                .collect();
            workers.sort_unstable();
            workers.dedup();
            assert_eq!(workers.len(), WORKERS, "round {round}: one task a worker");
        }
    });
}
