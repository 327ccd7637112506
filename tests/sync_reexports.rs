//! `multipool::sync` (issue #14): async-channel's channels and async-lock's
//! locks, re-exported, used by tasks of different priorities on two
//! workers. Each test waits for its tasks, under a watchdog; none sleeps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::watchdog;
use multipool::sync::{
    bounded, unbounded, Barrier, Mutex, RecvError, RwLock, Semaphore, TryRecvError, TrySendError,
};
use multipool::{Priority, Runtime};

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn a_bounded_channel_between_a_high_producer_and_a_low_consumer() {
    watchdog(60, || {
        let rt = runtime();
        let (tx, rx) = bounded::<u32>(4);
        let consumer = rt
            .spawn(async move {
                let mut received = Vec::new();
                while let Ok(n) = rx.recv().await {
                    received.push(n);
                }
                received
            })
            .priority(Priority::Low)
            .start();
        let producer = rt
            .spawn(async move {
                for n in 0..1_000 {
                    // Waits (without holding its worker) while 4 are queued.
                    tx.send(n).await.unwrap();
                }
            })
            .priority(Priority::High)
            .start();
        rt.block_on(producer).unwrap();
        let received = rt.block_on(consumer).unwrap();
        assert_eq!(
            received,
            (0..1_000).collect::<Vec<_>>(),
            "in order, none lost"
        );
    });
}

#[test]
fn channel_errors_and_a_oneshot() {
    let (tx, rx) = bounded::<&str>(1);
    tx.try_send("one").unwrap();
    assert!(matches!(tx.try_send("two"), Err(TrySendError::Full("two"))));
    assert_eq!(rx.try_recv(), Ok("one"));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(tx);
    assert_eq!(multipool::block_on(rx.recv()), Err(RecvError));

    watchdog(60, || {
        let rt = runtime();
        let (tx, rx) = unbounded();
        let (reply_tx, reply_rx) = bounded(1); // a oneshot
        rt.spawn(async move {
            let question: u32 = rx.recv().await.unwrap();
            reply_tx.send(question * 2).await.unwrap();
        })
        .priority(Priority::High)
        .detach();
        tx.send_blocking(21).unwrap();
        assert_eq!(rt.block_on(reply_rx.recv()).unwrap(), 42);
    });
}

#[test]
fn a_mutex_shared_by_tasks_of_every_priority() {
    watchdog(60, || {
        let rt = runtime();
        let counter = Arc::new(Mutex::new(0u32));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let counter = counter.clone();
                let priority = [Priority::High, Priority::Normal, Priority::Low][i % 3];
                rt.spawn(async move {
                    for _ in 0..200 {
                        let mut guard = counter.lock().await;
                        let seen = *guard;
                        // Held across an `.await`: others wait, without
                        // holding a worker.
                        multipool::task::yield_now().await;
                        *guard = seen + 1;
                    }
                })
                .priority(priority)
                .start()
            })
            .collect();
        rt.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(*counter.lock().await, 1_600);
        });
    });
}

#[test]
fn a_semaphore_bounds_how_many_run_at_once() {
    watchdog(60, || {
        let rt = runtime();
        let permits = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (permits, inside, most) = (permits.clone(), inside.clone(), most.clone());
                rt.spawn(async move {
                    let _permit = permits.acquire().await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..5 {
                        multipool::task::yield_now().await;
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
                .start()
            })
            .collect();
        rt.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "{most} tasks held a permit at once"
        );
    });
}

#[test]
fn a_barrier_of_more_tasks_than_workers() {
    watchdog(60, || {
        let rt = runtime();
        let barrier = Arc::new(Barrier::new(6));
        let arrived = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (barrier, arrived) = (barrier.clone(), arrived.clone());
                rt.spawn(async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let leader = barrier.wait().await.is_leader();
                    // Nobody passes before all six arrived.
                    assert_eq!(arrived.load(Ordering::SeqCst), 6);
                    leader
                })
                .start()
            })
            .collect();
        let leaders = rt.block_on(async {
            let mut leaders = 0;
            for task in tasks {
                leaders += task.await.unwrap() as usize;
            }
            leaders
        });
        assert_eq!(leaders, 1);
    });
}

#[test]
fn a_rwlock_lets_readers_share() {
    watchdog(60, || {
        let rt = runtime();
        let lock = Arc::new(RwLock::new(vec![1, 2, 3]));
        rt.block_on(async {
            let first = lock.read().await;
            let second = lock.read().await; // two readers at once
            assert_eq!(first.len() + second.len(), 6);
            drop((first, second));
            let writer = {
                let lock = lock.clone();
                multipool::spawn(async move { lock.write().await.push(4) }).start()
            };
            writer.await.unwrap();
            assert_eq!(*lock.read().await, [1, 2, 3, 4]);
        });
    });
}
