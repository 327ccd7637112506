//! Shutting a runtime down on purpose, rather than dropping it (that is
//! `tests/shutdown.rs`): `shutdown_timeout` lets running work (tasks and
//! blocking calls) finish and cancels the rest, spawns during a graceful
//! shutdown are refused, and `shutdown_background` returns at once and
//! cancels everything.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! (under a watchdog) or block work on gates the test opens.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, watchdog, Gate, WATCHDOG_WAIT};
use multipool::Runtime;

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
        assert!(
            wait_until(WATCHDOG_WAIT, || handle.is_shutdown()),
            "the shutdown never began"
        );
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
