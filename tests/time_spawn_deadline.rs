//! Task deadlines (`Spawn::timeout`): a task that runs late is cancelled
//! (its future dropped) and reports a time-out; one that finishes in time,
//! even in the poll in which its deadline passes, completes; a zero
//! time-out is rejected and the task never polled.
//!
//! Assertions about order or exact elapsed time use paused time (feature
//! `test-util`), where `time::now()` moves exactly from deadline to deadline.
//! Everything that could hang runs under a watchdog, so a lost wake-up fails
//! instead of hanging.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::time::run_paused;
use common::DropCounter;
use multipool::time::{now, sleep};
use multipool::Handle;

#[test]
fn spawn_timeout_cancels_a_task_that_runs_late() {
    run_paused(2, async {
        let start = now();
        let dropped = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter(dropped.clone());
        let err = multipool::spawn(async move {
            let _guard = guard;
            sleep(Duration::from_secs(10)).await;
        })
        .timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(!err.is_cancelled() && !err.is_rejected() && !err.is_panic());
        assert_eq!(err.to_string(), "task timed out");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the future was dropped");
        assert_eq!(now() - start, Duration::from_secs(1));
        assert_eq!(Handle::current().metrics().num_timers(), 0);
    });
}

#[test]
fn spawn_timeout_lets_a_task_that_finishes_in_time_complete() {
    run_paused(2, async {
        let start = now();
        let value = multipool::spawn(async {
            sleep(Duration::from_secs(1)).await;
            5
        })
        .timeout(Duration::from_secs(10))
        .await;
        assert_eq!(value.unwrap(), 5);
        assert_eq!(now() - start, Duration::from_secs(1));
        // Completing in the poll in which the deadline passes still counts.
        let tie = multipool::spawn(sleep(Duration::from_secs(1)))
            .timeout(Duration::from_secs(1))
            .await;
        assert!(tie.is_ok(), "{tie:?}");
        let forever = multipool::spawn(async { 6 }).timeout(Duration::MAX).await;
        assert_eq!(forever.unwrap(), 6);
        assert_eq!(now() - start, Duration::from_secs(2));
        assert_eq!(Handle::current().metrics().num_timers(), 0);
    });
}

#[test]
fn spawn_timeout_of_zero_is_rejected_and_never_polled() {
    run_paused(1, async {
        let polled = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (p, guard) = (polled.clone(), DropCounter(dropped.clone()));
        let handle = multipool::spawn(async move {
            let _guard = guard;
            p.store(true, Ordering::SeqCst);
        })
        .timeout(Duration::ZERO)
        .start();
        assert!(handle.is_finished(), "rejected at once");
        let err = handle.await.unwrap_err();
        assert!(err.is_rejected(), "{err:?}");
        assert!(!err.is_timeout() && !err.is_cancelled());
        assert!(err.to_string().contains("zero"), "{err}");
        assert!(!polled.load(Ordering::SeqCst));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    });
}
