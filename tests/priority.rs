//! Strict priority order between levels, on one worker where order is exact.

mod common;

use std::sync::{mpsc, Arc, Mutex};

use common::hold_worker;
use multipool::{Priority, Runtime};

/// One worker in strict priority order (no minimum shares), where order
/// between levels is exact.
fn one_worker() -> Runtime {
    Runtime::builder()
        .workers(1)
        .strict_priority()
        .build()
        .unwrap()
}

#[test]
fn high_task_queued_behind_1000_low_runs_first() {
    let rt = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let held = hold_worker(&rt);

    let mut handles = Vec::new();
    for i in 0..1000 {
        let order = order.clone();
        handles.push(
            rt.spawn(async move { order.lock().unwrap().push(("low", i)) })
                .priority(Priority::Low)
                .start(),
        );
    }
    let order2 = order.clone();
    let high = rt
        .spawn(async move { order2.lock().unwrap().push(("high", 0)) })
        .priority(Priority::High)
        .start();

    held.release();
    rt.block_on(async {
        high.await.unwrap();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 1001);
    assert_eq!(
        order[0],
        ("high", 0),
        "the High task must run before any Low task"
    );
    let mut lows: Vec<_> = order[1..].iter().map(|&(_, i)| i).collect();
    lows.sort_unstable();
    assert_eq!(
        lows,
        (0..1000).collect::<Vec<_>>(),
        "every Low task ran once"
    );
}

#[test]
fn levels_run_in_order_when_spawned_from_a_worker() {
    let rt = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let order2 = order.clone();
    rt.block_on(async move {
        let order = order2;
        // One task spawns the others while it holds the only worker, so all
        // of them sit in that worker's local queues (and LIFO slot) at once.
        let spawner = multipool::spawn(async move {
            let mut handles = Vec::new();
            for priority in [Priority::Low, Priority::Normal, Priority::High] {
                for i in 0..100 {
                    let order = order.clone();
                    handles.push(
                        multipool::spawn(async move { order.lock().unwrap().push((priority, i)) })
                            .priority(priority)
                            .start(),
                    );
                }
            }
            handles
        });
        for handle in spawner.await.unwrap() {
            handle.await.unwrap();
        }
    });
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 300);
    let levels: Vec<_> = order.iter().map(|&(p, _)| p).collect();
    let mut sorted = levels.clone();
    sorted.sort();
    assert_eq!(
        levels, sorted,
        "every High ran before every Normal, and Normal before Low"
    );
}

#[test]
fn a_woken_task_returns_to_its_own_level() {
    let rt = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));

    // A Low task parks on a channel before the worker is occupied.
    let (wake_tx, wake_rx) = futures::channel::oneshot::channel::<()>();
    let (parked_tx, parked_rx) = mpsc::channel();
    let o = order.clone();
    let low = rt
        .spawn(async move {
            parked_tx.send(()).unwrap();
            wake_rx.await.unwrap();
            o.lock().unwrap().push(Priority::Low);
        })
        .priority(Priority::Low)
        .start();
    parked_rx.recv().unwrap();

    let held = hold_worker(&rt);
    wake_tx.send(()).unwrap(); // queued (again) at Low while the worker is busy
    let o = order.clone();
    let normal = rt
        .spawn(async move { o.lock().unwrap().push(Priority::Normal) })
        .start();
    let o = order.clone();
    let high = rt
        .spawn(async move { o.lock().unwrap().push(Priority::High) })
        .priority(Priority::High)
        .start();
    held.release();

    rt.block_on(async {
        low.await.unwrap();
        normal.await.unwrap();
        high.await.unwrap();
    });
    assert_eq!(
        *order.lock().unwrap(),
        [Priority::High, Priority::Normal, Priority::Low]
    );
}

#[test]
fn yield_sends_a_task_behind_its_queue_mates() {
    let rt = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(async move {
        // Spawned from the worker: `a` and `b` queue in order, `c` (the last
        // spawn) waits in the worker's LIFO slot and runs first.
        let spawner = multipool::spawn(async move {
            ["a", "b", "c"]
                .into_iter()
                .map(|name| {
                    let order = o.clone();
                    multipool::spawn(async move {
                        for round in 0..3 {
                            order.lock().unwrap().push(format!("{name}{round}"));
                            multipool::task::yield_now().await;
                        }
                    })
                    .start()
                })
                .collect::<Vec<_>>()
        });
        for handle in spawner.await.unwrap() {
            handle.await.unwrap();
        }
    });
    assert_eq!(
        *order.lock().unwrap(),
        ["c0", "a0", "b0", "c1", "a1", "b1", "c2", "a2", "b2"]
    );
}

#[test]
fn default_priority_is_normal() {
    assert_eq!(Priority::default(), Priority::Normal);
    assert!(Priority::High < Priority::Normal && Priority::Normal < Priority::Low);
}
