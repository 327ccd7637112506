//! Elastic pools: a pool grows when its workers block and shrinks back to
//! `min_workers` after the idle timeout, losing no task while workers
//! retire and start; `prewarm`; bad elastic settings are clear build
//! errors; the metrics that describe a pool.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! (under a watchdog) or block tasks on channels the test releases.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{wait_until, watchdog, Gate, WATCHDOG_WAIT};
use multipool::{Handle, Runtime};

#[test]
fn a_pool_grows_when_its_workers_block_and_normal_tasks_keep_completing() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(4)
            .build()
            .unwrap();
        let handle = rt.handle();
        assert_eq!(handle.metrics().num_workers(), 1);
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
        assert!(
            wait_until(WATCHDOG_WAIT, || blocked.load(Ordering::SeqCst) == 2),
            "both blockers never held a worker: the pool did not grow"
        );
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
            handle.metrics().num_workers() >= 3,
            "{} workers",
            handle.metrics().num_workers()
        );
        assert!(handle.metrics().num_workers() <= 4);
        assert!(handle.metrics().workers_started() >= 3);
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
        assert!(
            wait_until(WATCHDOG_WAIT, || started.load(Ordering::SeqCst) == 2),
            "the two blockers never both started"
        );
        assert!(handle.metrics().num_workers() >= 2);
        gate.open();
        for blocker in blockers {
            multipool::block_on(blocker).unwrap();
        }
        assert!(
            wait_until(WATCHDOG_WAIT, || handle.metrics().num_workers() == 1),
            "the pool did not shrink back to one worker"
        );
        assert_eq!(
            handle.metrics().workers_retired(),
            handle.metrics().workers_started() - 1
        );
        // The retired thread runs its stop hook after it stopped counting.
        let hooks_ran = wait_until(WATCHDOG_WAIT, || {
            stopped.load(Ordering::SeqCst) == handle.metrics().workers_retired()
        });
        assert!(
            hooks_ran,
            "the retired workers did not all run their stop hook"
        );
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
                assert!(
                    wait_until(WATCHDOG_WAIT, || rt.handle().metrics().num_workers() == 1),
                    "the pool did not shrink back to one worker between rounds"
                );
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
    assert_eq!(rt.handle().metrics().workers_started(), 3);
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
            handle.metrics().min_workers(),
            handle.metrics().max_workers(),
            handle.metrics().num_workers()
        ),
        (1, 3, 1)
    );
    assert_eq!(handle.metrics().max_queued(), Some(10));
    assert_eq!(handle.metrics().num_blocked_workers(), 0);
    assert_eq!(handle.metrics().workers_retired(), 0);
}
