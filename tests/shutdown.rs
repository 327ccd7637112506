//! Dropping a runtime: every unfinished task is dropped, every handle
//! resolves, nothing hangs.

mod common;

use common::DropCounter;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use futures::channel::oneshot;
use multipool::{Priority, Runtime};

#[test]
fn drop_with_parked_queued_and_running_tasks() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();

    // Parked: waiting for a wake-up that never comes.
    for _ in 0..100 {
        let guard = DropCounter(dropped.clone());
        handles.push(
            rt.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .start(),
        );
    }
    // Parked on channels whose senders live in other parked tasks.
    let mut senders = Vec::new();
    for _ in 0..100 {
        let (tx, rx) = oneshot::channel::<()>();
        senders.push(tx);
        let guard = DropCounter(dropped.clone());
        handles.push(
            rt.spawn(async move {
                let _guard = guard;
                let _ = rx.await;
                std::future::pending::<()>().await;
            })
            .priority(Priority::Low)
            .start(),
        );
    }
    let keeper = DropCounter(dropped.clone());
    handles.push(
        rt.spawn(async move {
            let _keeper = keeper;
            let _senders = senders;
            std::future::pending::<()>().await;
        })
        .start(),
    );
    // Running: tasks that keep yielding, so some are always queued.
    let (spinning_tx, spinning_rx) = mpsc::channel();
    for _ in 0..4 {
        let guard = DropCounter(dropped.clone());
        let spinning_tx = spinning_tx.clone();
        handles.push(
            rt.spawn(async move {
                let _guard = guard;
                let _ = spinning_tx.send(());
                loop {
                    multipool::task::yield_now().await;
                }
            })
            .priority(Priority::High)
            .start(),
        );
    }
    for _ in 0..4 {
        spinning_rx.recv().unwrap();
    }

    drop(rt);

    assert_eq!(
        dropped.load(Ordering::SeqCst),
        205,
        "every future was dropped once"
    );
    for handle in handles {
        let err = multipool::block_on(handle).unwrap_err();
        assert!(err.is_cancelled() && err.is_shutdown(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "task was cancelled because its runtime shut down"
        );
    }
}

#[test]
fn drop_waits_for_a_poll_in_progress() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let finished_poll = Arc::new(AtomicBool::new(false));
    let f = finished_poll.clone();
    let handle = rt
        .spawn(async move {
            inside_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            f.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        })
        .start();
    inside_rx.recv().unwrap();
    let dropper = thread::spawn(move || drop(rt));
    release_tx.send(()).unwrap();
    dropper.join().unwrap();
    assert!(finished_poll.load(Ordering::SeqCst));
    assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
}

#[test]
fn spawning_after_shutdown_fails_with_a_clear_error() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle();
    drop(rt);
    assert!(handle.is_shutdown());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let err = multipool::block_on(handle.spawn(async move { r.store(true, Ordering::SeqCst) }))
        .unwrap_err();
    assert!(err.is_shutdown());
    assert!(!ran.load(Ordering::SeqCst));

    use futures::task::SpawnExt;
    let err = handle.spawn(async {}).start();
    assert!(multipool::block_on(err).unwrap_err().is_shutdown());
    let spawn_error = SpawnExt::spawn(&handle, async {}).unwrap_err();
    assert!(spawn_error.is_shutdown());
}

#[test]
fn wakes_after_shutdown_cancel_the_task() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = rt
        .spawn(async move {
            let _ = rx.await;
        })
        .start();
    drop(rt);
    // The task was cancelled at shutdown; a late wake-up is harmless.
    let _ = tx.send(());
    assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
}

/// Two tasks whose futures, as they are dropped, each lock one mutex and
/// wake the other task while they hold it (quinn's endpoint driver does
/// this with its endpoint's lock). At shutdown, the first one dropped
/// wakes the other, whose runtime has closed: that cancels it, and its
/// destructor takes the same mutex. It is dropped only once the first
/// destructor has returned, not inside it (that deadlocked).
#[test]
fn a_task_cancelled_inside_another_tasks_destructor_is_dropped_after_it() {
    use std::sync::Mutex;
    use std::task::{Poll, Waker};

    struct WakeTheOtherOnDrop {
        wakers: Arc<Mutex<[Option<Waker>; 2]>>,
        me: usize,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for WakeTheOtherOnDrop {
        fn drop(&mut self) {
            let wakers = self.wakers.lock().unwrap();
            if let Some(other) = &wakers[1 - self.me] {
                other.wake_by_ref();
            }
            drop(wakers);
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    common::watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let wakers = Arc::new(Mutex::new([None, None]));
        let drops = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|me| {
                let guard = WakeTheOtherOnDrop {
                    wakers: wakers.clone(),
                    drops: drops.clone(),
                    me,
                };
                rt.spawn(async move {
                    let _guard = &guard;
                    std::future::poll_fn(|cx| {
                        guard.wakers.lock().unwrap()[guard.me] = Some(cx.waker().clone());
                        Poll::<()>::Pending
                    })
                    .await
                })
                .start()
            })
            .collect();
        // Both have registered their wakers (and are idle) once a later
        // task has run on the one worker.
        common::wait_until(common::WATCHDOG_WAIT, || {
            wakers.lock().unwrap().iter().all(Option::is_some)
        });
        rt.block_on(rt.spawn(async {})).unwrap();
        drop(rt);
        assert_eq!(drops.load(Ordering::SeqCst), 2, "each future dropped once");
        for handle in handles {
            assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
        }
    });
}

#[test]
fn a_runtime_dropped_inside_its_own_task_does_not_deadlock() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let (done_tx, done_rx) = mpsc::channel();
    handle
        .spawn(async move {
            drop(rt);
            done_tx.send(()).unwrap();
        })
        .detach();
    done_rx.recv().unwrap();
    assert!(handle.is_shutdown());
}

#[test]
#[cfg_attr(miri, ignore = "50 runtimes and 10 000 tasks: too slow under miri")]
fn repeated_build_and_drop_under_load() {
    for round in 0..50 {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let counter = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let counter = counter.clone();
                rt.spawn(async move {
                    for _ in 0..(i % 5) {
                        multipool::task::yield_now().await;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                })
                .start()
            })
            .collect();
        if round % 2 == 0 {
            // Let half the rounds finish some work first.
            rt.block_on(async { multipool::task::yield_now().await });
        }
        drop(rt);
        let mut completed = 0;
        for handle in handles {
            match multipool::block_on(handle) {
                Ok(()) => completed += 1,
                Err(err) => assert!(err.is_shutdown(), "{err:?}"),
            }
        }
        assert_eq!(completed, counter.load(Ordering::SeqCst));
    }
}
