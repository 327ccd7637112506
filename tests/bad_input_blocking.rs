//! Bad input never panics, hangs, or silently means something else: one
//! test per row of the README's "Guarantees → Bad input" table. Each
//! setting at 0, 1, its maximum and `Duration::MAX` (or `Duration::ZERO`)
//! either is a [`BuildError`](multipool::BuildError) naming the setting, or
//! builds a runtime that works (a task is spawned and checked) with the
//! documented meaning. Anything that could hang runs under the watchdog.
//!
//! This file: the blocking pool: `max_blocking_threads`,
//! `blocking_keep_alive` and `max_blocking_queued`.

mod common;

use std::time::Duration;

use common::settings::{rejects, works};
use common::watchdog;
use multipool::Runtime;

#[test]
fn max_blocking_threads_zero_one_and_max() {
    rejects(
        Runtime::builder().max_blocking_threads(0),
        "max_blocking_threads",
        "must be at least 1, got 0",
    );
    watchdog(60, || {
        // One thread runs the calls one after the other.
        let rt = works(Runtime::builder().workers(1).max_blocking_threads(1));
        let handle = rt.handle();
        let calls: Vec<_> = (0..10).map(|i| handle.spawn_blocking(move || i)).collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
        assert!(handle.metrics().num_blocking_threads() <= 1);
        // No cap but the load: threads start only when none is idle.
        works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(usize::MAX),
        );
    });
}

#[test]
fn blocking_keep_alive_zero_and_a_nanosecond() {
    rejects(
        Runtime::builder().blocking_keep_alive(Duration::ZERO),
        "blocking_keep_alive",
        "must be longer than zero",
    );
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .blocking_keep_alive(Duration::from_nanos(1)),
        );
        let handle = rt.handle();
        for i in 0..10 {
            assert_eq!(
                multipool::block_on(handle.spawn_blocking(move || i)).unwrap(),
                i
            );
        }
    });
}

/// `Instant + keep_alive` used to overflow once the first blocking thread
/// went idle: it counted itself idle, panicked, and every later call
/// waited for it for ever.
#[test]
fn blocking_keep_alive_max_means_threads_never_expire() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .blocking_keep_alive(Duration::MAX),
        );
        let handle = rt.handle();
        for i in 0..10 {
            assert_eq!(
                multipool::block_on(handle.spawn_blocking(move || i)).unwrap(),
                i
            );
        }
        // The threads stay (how many depends on whether a call came before
        // the previous thread was back to idle).
        assert!(handle.metrics().num_blocking_threads() >= 1);
        drop(rt); // shutdown still ends the idle thread
    });
}

#[test]
fn max_blocking_queued_zero_one_and_max() {
    rejects(
        Runtime::builder().max_blocking_queued(0),
        "max_blocking_queued",
        "must be at least 1",
    );
    watchdog(60, || {
        // One call waits; the next is refused.
        let rt = works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(1)
                .max_blocking_queued(1),
        );
        let handle = rt.handle();
        let gate = common::Gate::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let running = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let queued = handle.spawn_blocking(|| 1);
        let err = multipool::block_on(handle.spawn_blocking(|| 2)).unwrap_err();
        assert!(err.is_rejected(), "{err}");
        gate.open();
        multipool::block_on(running).unwrap();
        assert_eq!(multipool::block_on(queued).unwrap(), 1);
    });
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(1)
                .max_blocking_queued(usize::MAX),
        );
        let handle = rt.handle();
        let calls: Vec<_> = (0..200).map(|i| handle.spawn_blocking(move || i)).collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
    });
}
