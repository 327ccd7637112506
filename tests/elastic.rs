//! Elastic pools: scaling, pre-warming, the blocking pool, named pools,
//! bounded queues, batches and graceful shutdown.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! (under a watchdog) or block tasks on channels the test releases.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{watchdog, Gate};
use multipool::{Handle, Priority, Runtime};

/// Waits until `condition` holds; the watchdog around the test bounds it.
fn wait_until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn a_pool_grows_when_its_workers_block_and_normal_tasks_keep_completing() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(4)
            .build()
            .unwrap();
        let handle = rt.handle();
        assert_eq!(handle.num_workers(), 1);
        let gate = Gate::default();
        let blocked = Arc::new(AtomicUsize::new(0));
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let (gate, blocked) = (gate.clone(), blocked.clone());
                rt.spawn(async move {
                    blocked.fetch_add(1, Ordering::SeqCst);
                    gate.wait(); // blocks its worker thread
                })
                .start()
            })
            .collect();
        // Both blockers end up holding a worker each: the pool had to grow
        // for the second one to start.
        wait_until(|| blocked.load(Ordering::SeqCst) == 2);
        // Normal work still completes while both blockers hold their
        // workers: only possible on a third worker.
        let tasks: Vec<_> = (0..100u64)
            .map(|i| rt.spawn(async move { i }).start())
            .collect();
        let sum: u64 = multipool::block_on(async {
            let mut sum = 0;
            for task in tasks {
                sum += task.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 4950);
        assert!(
            handle.num_workers() >= 3,
            "{} workers",
            handle.num_workers()
        );
        assert!(handle.num_workers() <= 4);
        assert!(handle.workers_started() >= 3);
        gate.open();
        for blocker in blockers {
            multipool::block_on(blocker).unwrap();
        }
    });
}

#[test]
fn a_pool_shrinks_back_to_min_after_the_idle_timeout() {
    watchdog(60, || {
        let stopped = Arc::new(AtomicUsize::new(0));
        let counter = stopped.clone();
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(3)
            .idle_timeout(Duration::from_millis(20))
            .on_thread_stop(move || {
                // Counted only with the worker's index visible in the hook.
                if multipool::worker_index().is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let started = Arc::new(AtomicUsize::new(0));
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let (gate, started) = (gate.clone(), started.clone());
                rt.spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.wait();
                })
                .start()
            })
            .collect();
        wait_until(|| started.load(Ordering::SeqCst) == 2);
        assert!(handle.num_workers() >= 2);
        gate.open();
        for blocker in blockers {
            multipool::block_on(blocker).unwrap();
        }
        wait_until(|| handle.num_workers() == 1);
        assert_eq!(handle.workers_retired(), handle.workers_started() - 1);
        // The retired thread runs its stop hook after it stopped counting.
        wait_until(|| stopped.load(Ordering::SeqCst) == handle.workers_retired());
        // The pool still works, and grows again when needed.
        assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
    });
}

#[test]
fn retiring_and_growing_under_churn_loses_no_task() {
    watchdog(120, || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(4)
            .idle_timeout(Duration::from_millis(1))
            .build()
            .unwrap();
        for round in 0..20u64 {
            let tasks: Vec<_> = (0..200u64)
                .map(|i| {
                    rt.spawn(async move {
                        if i % 50 == 0 {
                            // Long enough to count as blocked.
                            thread::sleep(Duration::from_millis(3));
                        }
                        multipool::time::sleep(Duration::from_micros(i % 7)).await;
                        i + round
                    })
                    .start()
                })
                .collect();
            let sum: u64 = multipool::block_on(async {
                let mut sum = 0;
                for task in tasks {
                    sum += task.await.unwrap();
                }
                sum
            });
            assert_eq!(sum, 19_900 + 200 * round);
            // Let some workers retire between rounds.
            if round % 5 == 4 {
                wait_until(|| rt.handle().num_workers() == 1);
            }
        }
    });
}

#[test]
fn prewarm_starts_min_workers_before_build_returns() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let rt = Runtime::builder()
        .min_workers(3)
        .max_workers(5)
        .prewarm(true)
        .on_thread_start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 3);
    assert_eq!(rt.handle().workers_started(), 3);
}

#[test]
fn spawn_blocking_honours_its_cap_and_runs_everything() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(2)
            .build()
            .unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..10usize)
            .map(|i| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                handle.spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    gate.wait();
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        wait_until(|| running.load(Ordering::SeqCst) == 2 && handle.blocking_queue_depth() == 8);
        assert_eq!(handle.num_blocking_threads(), 2);
        gate.open();
        let results: Vec<usize> = multipool::block_on(async {
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.unwrap());
            }
            results
        });
        assert_eq!(results, (0..10).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn spawn_blocking_beyond_its_queue_bound_is_refused_and_says_so() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .max_blocking_queued(2)
            .build()
            .unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let running = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let queued: Vec<_> = (0..2).map(|i| handle.spawn_blocking(move || i)).collect();
        let refused = handle.spawn_blocking(|| 99);
        let err = multipool::block_on(refused).unwrap_err();
        assert!(err.is_rejected(), "{err}");
        assert!(
            err.to_string().contains("blocking pool's queue is full"),
            "{err}"
        );
        gate.open();
        multipool::block_on(running).unwrap();
        for (i, call) in queued.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
    });
}

#[test]
fn a_panic_in_spawn_blocking_is_reported_and_an_unstarted_call_can_be_aborted() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let handle = rt.handle();
        let err =
            multipool::block_on(handle.spawn_blocking(|| panic!("blocking boom"))).unwrap_err();
        assert!(err.is_panic());
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let first = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let second = handle.spawn_blocking(move || r.store(true, Ordering::SeqCst));
        second.abort();
        gate.open();
        multipool::block_on(first).unwrap();
        assert!(multipool::block_on(second).unwrap_err().is_cancelled());
        assert!(!ran.load(Ordering::SeqCst));
    });
}

/// Blocking code runs inside its runtime, as in tokio: `Handle::current`
/// works there and `multipool::spawn` goes to the same runtime, not the
/// global one.
#[test]
fn blocking_code_runs_inside_its_runtime() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .thread_name("inside")
            .build()
            .unwrap();
        let handle = rt.handle();
        let (pool, worker_name) = multipool::block_on(handle.spawn_blocking(|| {
            let pool = multipool::Handle::current().pool_name().to_owned();
            let task = multipool::spawn(async { std::thread::current().name().map(str::to_owned) });
            (pool, multipool::block_on(task).unwrap())
        }))
        .unwrap();
        assert_eq!(pool, "default");
        assert!(worker_name.unwrap().starts_with("inside"));
    });
}

#[test]
fn pools_isolate_a_flood_in_one_from_the_other() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .pool("cpu", |pool| pool.workers(1))
            .pool("io", |pool| pool.workers(1))
            .build()
            .unwrap();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        // Occupy the only "cpu" worker, then queue a flood behind it.
        let hog = rt
            .spawn(async move {
                started_tx.send(()).unwrap();
                g.wait();
            })
            .pool("cpu")
            .start();
        started_rx.recv().unwrap();
        let flood: Vec<_> = (0..1000)
            .map(|i| rt.spawn(async move { i }).pool("cpu").start())
            .collect();
        // "io" (and the default pool) are untouched by it.
        let io = rt.block_on(
            rt.spawn(async { thread::current().name().unwrap().to_owned() })
                .pool("io"),
        );
        assert!(io.unwrap().starts_with("multipool-io-"));
        assert!(rt.block_on(rt.spawn(async { 1 })).is_ok());
        assert!(flood.iter().all(|task| !task.is_finished()));
        gate.open();
        multipool::block_on(hog).unwrap();
        for (i, task) in flood.into_iter().enumerate() {
            assert_eq!(multipool::block_on(task).unwrap(), i);
        }
    });
}

#[test]
fn a_task_stays_in_its_pool_across_wake_ups() {
    let rt = Runtime::builder()
        .workers(2)
        .pool("cpu", |pool| pool.workers(2).thread_name("cpu"))
        .build()
        .unwrap();
    let names = rt
        .block_on(
            rt.spawn(async {
                let mut names = HashSet::new();
                for i in 0..200u64 {
                    names.insert(thread::current().name().unwrap().to_owned());
                    if i % 2 == 0 {
                        multipool::task::yield_now().await;
                    } else {
                        multipool::time::sleep(Duration::from_micros(10)).await;
                    }
                }
                // A child spawned inside goes to the same pool.
                let child =
                    multipool::spawn(async { thread::current().name().unwrap().to_owned() })
                        .await
                        .unwrap();
                names.insert(child);
                names
            })
            .pool("cpu"),
        )
        .unwrap();
    assert!(
        names.iter().all(|name| name.starts_with("cpu-")),
        "{names:?}"
    );
}

#[test]
fn a_high_only_pool_serves_only_high_tasks() {
    let rt = Runtime::builder()
        .workers(1)
        .pool("urgent", |pool| {
            pool.workers(1).priorities([Priority::High])
        })
        .build()
        .unwrap();
    rt.block_on(async {
        let high = multipool::spawn(async { thread::current().name().unwrap().to_owned() })
            .priority(Priority::High)
            .pool("urgent")
            .await
            .unwrap();
        assert!(high.starts_with("multipool-urgent-"));
        for priority in [Priority::Normal, Priority::Low] {
            let err = multipool::spawn(async {})
                .priority(priority)
                .pool("urgent")
                .await
                .unwrap_err();
            assert!(err.is_rejected());
            assert!(err.to_string().contains("does not take"), "{err}");
            let err = multipool::spawn(async {})
                .priority(priority)
                .pool("urgent")
                .try_start()
                .unwrap_err();
            assert!(err.is_rejected());
        }
    });
}

#[test]
fn an_unknown_pool_is_a_clear_error_on_the_handle() {
    let rt = Runtime::builder()
        .workers(1)
        .pool("cpu", |pool| pool.workers(1))
        .build()
        .unwrap();
    let err = rt.block_on(rt.spawn(async {}).pool("gpu")).unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(
        err.to_string(),
        "task was rejected: the runtime has no pool named `gpu` (its pools: `default`, `cpu`)"
    );
    assert!(rt.handle().named_pool("gpu").is_none());
    assert_eq!(rt.handle().named_pool("cpu").unwrap().pool_name(), "cpu");
    assert_eq!(rt.handle().pool_name(), "default");
}

/// Occupies the only worker of `rt` until the returned gate opens.
fn occupy_the_worker(rt: &Runtime) -> (Gate, multipool::JoinHandle<()>) {
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let hog = rt
        .spawn(async move {
            started_tx.send(()).unwrap();
            g.wait();
        })
        .start();
    started_rx.recv().unwrap();
    (gate, hog)
}

#[test]
fn a_full_queue_gives_backpressure_on_await_and_full_on_try_start() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).max_queued(2).build().unwrap();
        let handle = rt.handle();
        let (gate, hog) = occupy_the_worker(&rt);
        assert_eq!(handle.num_queued(), 0);
        let done = Arc::new(AtomicUsize::new(0));
        let task = |done: &Arc<AtomicUsize>| {
            let done = done.clone();
            async move {
                done.fetch_add(1, Ordering::SeqCst);
            }
        };
        let first = rt.spawn(task(&done)).try_start().unwrap();
        let second = rt.spawn(task(&done)).try_start().unwrap();
        assert_eq!(handle.num_queued(), 2);
        let err = rt.spawn(task(&done)).try_start().unwrap_err();
        assert!(err.is_full(), "{err}");
        let refused = rt.spawn(task(&done)).start();
        let refusal = multipool::block_on(refused).unwrap_err();
        assert!(refusal.is_rejected() && refusal.to_string().contains("queue is full"));

        // An awaited spawn waits for room instead of failing.
        let waiter_handle = handle.clone();
        let waiter_task = task(&done);
        let waiter = thread::spawn(move || multipool::block_on(waiter_handle.spawn(waiter_task)));
        // It cannot get in while the queue is full.
        for _ in 0..100 {
            assert!(handle.num_queued() <= 2);
            thread::yield_now();
        }
        assert_eq!(done.load(Ordering::SeqCst), 0);
        gate.open();
        multipool::block_on(hog).unwrap();
        multipool::block_on(first).unwrap();
        multipool::block_on(second).unwrap();
        waiter.join().unwrap().unwrap();
        // Three ran; the two refused never did, and said so.
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(handle.num_queued(), 0);
    });
}

#[test]
fn detach_queues_beyond_the_bound_and_the_task_still_runs() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).max_queued(1).build().unwrap();
        let (gate, hog) = occupy_the_worker(&rt);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let done = done.clone();
            rt.spawn(async move {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        }
        assert_eq!(rt.handle().num_queued(), 3);
        gate.open();
        multipool::block_on(hog).unwrap();
        wait_until(|| done.load(Ordering::SeqCst) == 3);
    });
}

#[test]
fn many_awaiting_spawners_on_a_tiny_bound_all_get_through() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).max_queued(4).build().unwrap();
        let total = Arc::new(AtomicUsize::new(0));
        let spawners: Vec<_> = (0..4)
            .map(|_| {
                let handle = rt.handle();
                let total = total.clone();
                thread::spawn(move || {
                    multipool::block_on(async {
                        for _ in 0..500 {
                            let total = total.clone();
                            handle
                                .spawn(async move {
                                    total.fetch_add(1, Ordering::SeqCst);
                                })
                                .await
                                .unwrap();
                        }
                    })
                })
            })
            .collect();
        for spawner in spawners {
            spawner.join().unwrap();
        }
        assert_eq!(total.load(Ordering::SeqCst), 2000);
        assert_eq!(rt.handle().num_queued(), 0);
    });
}

#[test]
fn spawn_batch_runs_every_task_and_bounded_pools_refuse_the_excess() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handles = rt
            .handle()
            .spawn_batch((0..10_000u64).map(|i| async move { i }));
        let sum: u64 = multipool::block_on(async {
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 49_995_000);

        let bounded = Runtime::builder().workers(1).max_queued(3).build().unwrap();
        let (gate, hog) = occupy_the_worker(&bounded);
        let handles = bounded
            .handle()
            .spawn_batch((0..5).map(|i| async move { i }));
        gate.open();
        multipool::block_on(hog).unwrap();
        let results: Vec<_> = handles.into_iter().map(multipool::block_on).collect();
        assert!(results[..3].iter().all(Result::is_ok));
        assert!(results[3..]
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_rejected()));
    });
}

#[test]
fn shutdown_timeout_lets_running_work_finish_and_cancels_the_rest() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let finishing = rt
            .spawn(async move {
                started_tx.send(()).unwrap();
                multipool::time::sleep(Duration::from_millis(5)).await;
                "finished"
            })
            .start();
        let (blocking_tx, blocking_rx) = mpsc::channel();
        let blocking = handle.spawn_blocking(move || {
            blocking_tx.send(()).unwrap();
            g.wait();
            "blocking finished"
        });
        let forever = rt.spawn(std::future::pending::<()>()).start();
        // Both running (not queued) before the shutdown starts.
        started_rx.recv().unwrap();
        blocking_rx.recv().unwrap();
        let opener = {
            let gate = gate.clone();
            thread::spawn(move || gate.open())
        };
        // Long enough for a loaded machine to finish both; the pending task
        // makes it wait the whole timeout.
        let all_done = rt.shutdown_timeout(Duration::from_secs(1));
        opener.join().unwrap();
        assert!(!all_done, "the pending task cannot finish");
        assert_eq!(multipool::block_on(finishing).unwrap(), "finished");
        assert_eq!(multipool::block_on(blocking).unwrap(), "blocking finished");
        assert!(multipool::block_on(forever).unwrap_err().is_shutdown());
        assert!(handle.is_shutdown());
        let late = multipool::block_on(handle.spawn(async {})).unwrap_err();
        assert!(late.is_shutdown());
    });
}

#[test]
fn spawns_during_a_graceful_shutdown_are_refused() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let handle = rt.handle();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let inner = rt
            .spawn(async move {
                started_tx.send(()).unwrap();
                // Blocks until the shutdown has begun.
                go_rx.recv().unwrap();
                multipool::spawn(async {}).await
            })
            .start();
        started_rx.recv().unwrap();
        let shutter = thread::spawn(move || rt.shutdown_timeout(Duration::from_secs(30)));
        wait_until(|| handle.is_shutdown());
        go_tx.send(()).unwrap();
        assert!(shutter.join().unwrap(), "everything finished in time");
        let child = multipool::block_on(inner).unwrap();
        assert!(child.unwrap_err().is_shutdown());
    });
}

#[test]
fn shutdown_background_returns_at_once_and_everything_is_cancelled() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let blocking = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let pending: Vec<_> = (0..100)
            .map(|_| rt.spawn(std::future::pending::<()>()).start())
            .collect();
        let start = Instant::now();
        rt.shutdown_background(); // the blocking call still runs
        assert!(start.elapsed() < Duration::from_secs(10));
        for task in pending {
            assert!(multipool::block_on(task).unwrap_err().is_shutdown());
        }
        gate.open();
        multipool::block_on(blocking).unwrap();
    });
}

#[test]
fn bad_elastic_settings_are_clear_build_errors() {
    let cases: Vec<(multipool::Builder, &str, &str)> = vec![
        (
            Runtime::builder().min_workers(4).max_workers(2),
            "min_workers",
            "must not exceed max_workers (2), got 4",
        ),
        (
            Runtime::builder().max_workers(0),
            "max_workers",
            "must be at least 1, got 0",
        ),
        (
            Runtime::builder().min_workers(0).max_workers(2),
            "min_workers",
            "must be at least 1",
        ),
        (
            Runtime::builder().idle_timeout(Duration::ZERO),
            "idle_timeout",
            "must be longer than zero",
        ),
        (
            Runtime::builder().max_queued(0),
            "max_queued",
            "must be at least 1",
        ),
        (
            Runtime::builder().pool("default", |p| p),
            "pool",
            "already a pool named `default`",
        ),
        (
            Runtime::builder().pool("a", |p| p).pool("a", |p| p),
            "pool",
            "already a pool named `a`",
        ),
        (
            Runtime::builder().pool("", |p| p),
            "pool",
            "must not be empty",
        ),
        (
            Runtime::builder().pool("x", |p| p.priorities([])),
            "priorities",
            "(pool `x`)",
        ),
        (
            Runtime::builder().pool("x", |p| p.workers(0)),
            "workers",
            "must be at least 1, got 0 (pool `x`)",
        ),
        (
            Runtime::builder().max_blocking_threads(0),
            "max_blocking_threads",
            "must be at least 1",
        ),
        (
            Runtime::builder().blocking_keep_alive(Duration::ZERO),
            "blocking_keep_alive",
            "must be longer than zero",
        ),
        (
            Runtime::builder().max_blocking_queued(0),
            "max_blocking_queued",
            "must be at least 1",
        ),
    ];
    for (builder, setting, message) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.setting(), Some(setting), "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn metrics_describe_the_pool() {
    let rt = Runtime::builder()
        .min_workers(1)
        .max_workers(3)
        .max_queued(10)
        .build()
        .unwrap();
    let handle: Handle = rt.handle();
    assert_eq!(
        (
            handle.min_workers(),
            handle.max_workers(),
            handle.num_workers()
        ),
        (1, 3, 1)
    );
    assert_eq!(handle.max_queued(), Some(10));
    assert_eq!(handle.num_blocked_workers(), 0);
    assert_eq!(handle.workers_retired(), 0);
}

#[test]
fn a_blocking_call_pushed_as_the_last_blocking_thread_leaves_still_runs() {
    watchdog(60, || {
        let (leaving_tx, leaving_rx) = mpsc::channel::<()>();
        let leaving_tx = Mutex::new(leaving_tx);
        let gate = Gate::default();
        let g = gate.clone();
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .blocking_keep_alive(Duration::from_millis(1))
            .wrap_thread(move |body| {
                body();
                let blocking = thread::current()
                    .name()
                    .is_some_and(|name| name.contains("-blocking-"));
                if blocking {
                    // The thread has left its work loop; hold it here until
                    // the test has pushed another call.
                    let _ = leaving_tx.lock().unwrap().send(());
                    g.wait();
                }
            })
            .build()
            .unwrap();
        let handle = rt.handle();
        assert_eq!(multipool::block_on(handle.spawn_blocking(|| 1)).unwrap(), 1);
        leaving_rx.recv().unwrap();
        // The only blocking thread is on its way out: this call must get a
        // thread of its own rather than wait for that one.
        assert_eq!(multipool::block_on(handle.spawn_blocking(|| 7)).unwrap(), 7);
        gate.open();
    });
}
