//! `HoldWakes`: tasks woken on a thread while it holds are queued at the
//! next release (or when the guard drops), never lost, never queued
//! twice; the release's waker hears of the first held wake-up; holds nest;
//! shutdown cancels a held task when it is released.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use common::watchdog;
use multipool::{HoldWakes, Runtime};

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

/// A task waiting on a channel, and a flag it sets once it has received.
/// `rt` has one worker: once a second task has run there, the first one's
/// poll has returned, so a wake-up from this thread schedules it here.
fn waiting_task(
    rt: &Runtime,
) -> (
    multipool::sync::Sender<u32>,
    multipool::JoinHandle<u32>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = multipool::sync::bounded(4);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let received = Arc::new(AtomicBool::new(false));
    let flag = received.clone();
    let handle = rt
        .spawn(async move {
            // Polled once (registered on the channel) before the test sends.
            let recv = rx.recv();
            let mut recv = std::pin::pin!(recv);
            std::future::poll_fn(|cx| {
                let poll = recv.as_mut().poll(cx);
                if poll.is_pending() {
                    let _ = ready_tx.send(());
                }
                poll
            })
            .await
            .inspect(|_| flag.store(true, Ordering::SeqCst))
            .unwrap()
        })
        .start();
    ready_rx.recv().unwrap();
    rt.block_on(rt.spawn(async {})).unwrap();
    (tx, handle, received)
}

#[test]
fn a_task_woken_under_a_hold_runs_only_after_the_release() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (tx, handle, received) = waiting_task(&rt);
        let hold = HoldWakes::new();
        tx.try_send(7).unwrap();
        // Held: in no queue, so no worker can have run it.
        assert_eq!(hold.held(), 1);
        assert!(!received.load(Ordering::SeqCst));
        let (_counter, waker) = counting_waker();
        hold.release(&waker);
        assert_eq!(hold.held(), 0);
        drop(hold);
        assert_eq!(rt.block_on(handle).unwrap(), 7);
    });
}

#[test]
fn the_release_waker_hears_of_the_first_held_wake_up_once() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (tx_a, a, _) = waiting_task(&rt);
        let (tx_b, b, _) = waiting_task(&rt);
        let hold = HoldWakes::new();
        let (counter, waker) = counting_waker();
        hold.release(&waker);
        tx_a.try_send(1).unwrap();
        tx_b.try_send(2).unwrap();
        assert_eq!(hold.held(), 2);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "woken once, at the first"
        );
        hold.release(&waker);
        assert_eq!(rt.block_on(a).unwrap(), 1);
        assert_eq!(rt.block_on(b).unwrap(), 2);
        // Nothing held since: the waker is not woken again.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        drop(hold);
    });
}

#[test]
fn dropping_the_guard_releases_what_it_holds() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (tx, handle, _) = waiting_task(&rt);
        {
            let hold = HoldWakes::new();
            tx.try_send(3).unwrap();
            assert_eq!(hold.held(), 1);
        }
        assert_eq!(rt.block_on(handle).unwrap(), 3);
    });
}

#[test]
fn holds_nest_and_the_outer_one_holds_again_after_the_inner_one() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (tx_a, a, _) = waiting_task(&rt);
        let (tx_b, b, received_b) = waiting_task(&rt);
        let outer = HoldWakes::new();
        {
            let inner = HoldWakes::new();
            tx_a.try_send(1).unwrap();
            assert_eq!(inner.held(), 1);
        }
        // The inner guard queued its task; the outer hold holds again.
        assert_eq!(rt.block_on(a).unwrap(), 1);
        tx_b.try_send(2).unwrap();
        assert_eq!(outer.held(), 1);
        assert!(!received_b.load(Ordering::SeqCst));
        drop(outer);
        assert_eq!(rt.block_on(b).unwrap(), 2);
    });
}

#[test]
fn a_task_held_through_shutdown_is_cancelled_when_released() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let handle = rt.handle().clone();
        let (tx, task, received) = waiting_task(&rt);
        let hold = HoldWakes::new();
        tx.try_send(5).unwrap();
        assert_eq!(hold.held(), 1);
        // Shutdown does not wait for the held task (it is in no queue).
        drop(rt);
        assert!(handle.is_shutdown());
        drop(hold);
        let err = multipool::block_on(task).unwrap_err();
        assert!(err.is_shutdown(), "{err:?}");
        assert!(!received.load(Ordering::SeqCst));
        // Counted once, as shut down (beside `waiting_task`'s empty task,
        // completed): nothing lost, nothing alive.
        let metrics = handle.metrics();
        assert_eq!(metrics.num_alive_tasks(), 0);
        assert_eq!(metrics.spawned_tasks_count(), 2);
        assert_eq!(metrics.completed_count(), 1);
        assert_eq!(metrics.shutdown_count(), 1);
    });
}

#[test]
fn a_hold_on_a_thread_that_ends_is_released_by_the_thread() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (tx, handle, _) = waiting_task(&rt);
        std::thread::spawn(move || {
            // Leaked: only the thread's end releases it.
            std::mem::forget(HoldWakes::new());
            tx.try_send(9).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(rt.block_on(handle).unwrap(), 9);
    });
}

#[test]
fn many_held_tasks_all_run_once_and_spawns_are_not_held() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let waiting: Vec<_> = (0..200).map(|_| waiting_task(&rt)).collect();
        let hold = HoldWakes::new();
        for (i, (tx, _, _)) in waiting.iter().enumerate() {
            tx.try_send(i as u32).unwrap();
        }
        assert_eq!(hold.held(), 200);
        // A spawn under the hold is queued at once (as tokio's spawns are)
        // and runs while the wake-ups are still held.
        let spawned = rt.spawn(async { 42 }).start();
        assert_eq!(hold.held(), 200);
        assert_eq!(futures::executor::block_on(spawned).unwrap(), 42);
        assert!(waiting
            .iter()
            .all(|(_, _, received)| !received.load(Ordering::SeqCst)));
        drop(hold);
        for (i, (_, handle, received)) in waiting.into_iter().enumerate() {
            assert_eq!(rt.block_on(handle).unwrap(), i as u32);
            assert!(received.load(Ordering::SeqCst));
        }
        let metrics = rt.handle().metrics();
        // 200 waiting tasks, 200 of `waiting_task`'s empty ones, one spawn.
        assert_eq!(metrics.completed_count(), 401);
        assert_eq!(metrics.num_alive_tasks(), 0);
    });
}
