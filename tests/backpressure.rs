//! Bounded queues (`max_queued`) and batches: a full queue makes an
//! awaited spawn wait for room, `try_start` report `is_full` and `start`
//! be rejected; `detach` queues beyond the bound; many awaiting spawners
//! all get through a tiny bound; `spawn_batch` runs every task, and a
//! bounded pool refuses the excess of a batch.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! (under a watchdog) or hold the worker (`common::hold_worker`) until the test releases it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::{hold_worker, wait_until, watchdog, WATCHDOG_WAIT};
use multipool::Runtime;

#[test]
fn a_full_queue_gives_backpressure_on_await_and_full_on_try_start() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).max_queued(2).build().unwrap();
        let handle = rt.handle();
        let held = hold_worker(&rt);
        assert_eq!(handle.metrics().num_queued(), 0);
        let done = Arc::new(AtomicUsize::new(0));
        let task = |done: &Arc<AtomicUsize>| {
            let done = done.clone();
            async move {
                done.fetch_add(1, Ordering::SeqCst);
            }
        };
        let first = rt.spawn(task(&done)).try_start().unwrap();
        let second = rt.spawn(task(&done)).try_start().unwrap();
        assert_eq!(handle.metrics().num_queued(), 2);
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
            assert!(handle.metrics().num_queued() <= 2);
            thread::yield_now();
        }
        assert_eq!(done.load(Ordering::SeqCst), 0);
        held.release();
        multipool::block_on(first).unwrap();
        multipool::block_on(second).unwrap();
        waiter.join().unwrap().unwrap();
        // Three ran; the two refused never did, and said so.
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(handle.metrics().num_queued(), 0);
    });
}

#[test]
fn detach_queues_beyond_the_bound_and_the_task_still_runs() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).max_queued(1).build().unwrap();
        let held = hold_worker(&rt);
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let done = done.clone();
            rt.spawn(async move {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        }
        assert_eq!(rt.handle().metrics().num_queued(), 3);
        held.release();
        assert!(
            wait_until(WATCHDOG_WAIT, || done.load(Ordering::SeqCst) == 3),
            "the detached tasks did not all run"
        );
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
        assert_eq!(rt.handle().metrics().num_queued(), 0);
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
        let held = hold_worker(&bounded);
        let handles = bounded
            .handle()
            .spawn_batch((0..5).map(|i| async move { i }));
        held.release();
        let results: Vec<_> = handles.into_iter().map(multipool::block_on).collect();
        assert!(results[..3].iter().all(Result::is_ok));
        assert!(results[3..]
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_rejected()));
    });
}
