//! Bad input never panics, hangs, or silently means something else: one
//! test per row of the README's "Guarantees → Bad input" table. Each
//! setting at 0, 1, its maximum and `Duration::MAX` (or `Duration::ZERO`)
//! either is a [`BuildError`](multipool::BuildError) naming the setting, or
//! builds a runtime that works (a task is spawned and checked) with the
//! documented meaning. Anything that could hang runs under the watchdog.
//!
//! This file: the worker threads of a pool: `workers`, `min_workers`,
//! `max_workers`, `idle_timeout`, `search_spin`, `thread_stack_size` and
//! `pin_workers`.

mod common;

use std::thread;
use std::time::Duration;

use common::settings::{pool_works, rejects, with_pool, works};
use common::{hold_worker, watchdog};
use multipool::Runtime;

/// Smallest and largest accepted thread stack sizes.
const MIN_STACK: usize = 256 * 1024;
const MAX_STACK: usize = usize::MAX / 4;

// ---------------------------------------------------------------------------
// Worker counts
// ---------------------------------------------------------------------------

#[test]
fn workers_zero_one_and_max() {
    rejects(
        Runtime::builder().workers(0),
        "workers",
        "must be at least 1, got 0",
    );
    let rt = works(Runtime::builder().workers(1));
    assert_eq!(rt.handle().metrics().num_workers(), 1);
    rejects(
        Runtime::builder().workers(usize::MAX),
        "workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    rejects(
        Runtime::builder().workers(4097),
        "workers",
        "must be at most 4096",
    );
    rejects(with_pool(|p| p.workers(0)), "workers", "got 0 (pool `p`)");
    rejects(
        with_pool(|p| p.workers(usize::MAX)),
        "workers",
        "(pool `p`)",
    );
    pool_works(with_pool(|p| p.workers(1)));
}

#[test]
fn min_workers_zero_one_and_max() {
    rejects(
        Runtime::builder().min_workers(0).max_workers(2),
        "min_workers",
        "must be at least 1",
    );
    let rt = works(Runtime::builder().min_workers(1).max_workers(2));
    assert_eq!(rt.handle().metrics().min_workers(), 1);
    // Named for what was set, not for the `max_workers` it implies.
    rejects(
        Runtime::builder().min_workers(usize::MAX),
        "min_workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    rejects(
        Runtime::builder().min_workers(3).max_workers(2),
        "min_workers",
        "must not exceed max_workers (2), got 3",
    );
    rejects(
        with_pool(|p| p.min_workers(usize::MAX)),
        "min_workers",
        "(pool `p`)",
    );
    pool_works(with_pool(|p| p.min_workers(1).max_workers(2)));
}

#[test]
fn max_workers_zero_one_and_max() {
    rejects(
        Runtime::builder().max_workers(0),
        "max_workers",
        "must be at least 1, got 0",
    );
    let rt = works(Runtime::builder().max_workers(1));
    assert_eq!(
        (
            rt.handle().metrics().min_workers(),
            rt.handle().metrics().max_workers()
        ),
        (1, 1)
    );
    rejects(
        Runtime::builder().max_workers(usize::MAX),
        "max_workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    // The idle state packs counts in 16 bits: 100 000 used to panic there.
    rejects(
        Runtime::builder().max_workers(100_000),
        "max_workers",
        "at most 4096",
    );
    rejects(with_pool(|p| p.max_workers(0)), "max_workers", "(pool `p`)");
}

// ---------------------------------------------------------------------------
// idle_timeout
// ---------------------------------------------------------------------------

/// Makes the elastic pool of `rt` (min 1, max 2) add its second worker:
/// the only worker is held in a blocking call while a task waits.
fn grow_to_two(rt: &Runtime) {
    let held = hold_worker(rt);
    let waiting = rt.spawn(async { 1 }).start();
    // Only an added worker can run it.
    assert_eq!(multipool::block_on(waiting).unwrap(), 1);
    assert_eq!(rt.handle().metrics().workers_started(), 2);
    held.release();
}

#[test]
fn idle_timeout_zero_is_rejected() {
    rejects(
        Runtime::builder().idle_timeout(Duration::ZERO),
        "idle_timeout",
        "must be longer than zero",
    );
    rejects(
        with_pool(|p| p.idle_timeout(Duration::ZERO)),
        "idle_timeout",
        "(pool `p`)",
    );
}

#[test]
fn search_spin_zero_one_ms_and_beyond() {
    // Zero (look once, then park), the default (15 µs) and the
    // longest: each pool takes in a stream of remote spawns and a stream of
    // local ones.
    for spin in [
        Duration::ZERO,
        Duration::from_micros(15),
        Duration::from_millis(1),
    ] {
        watchdog(60, move || {
            let rt = works(Runtime::builder().workers(2).search_spin(spin));
            let handles: Vec<_> = (0..1_000u64)
                .map(|i| rt.spawn(async move { i }).start())
                .collect();
            let sum: u64 = handles.into_iter().map(|h| rt.block_on(h).unwrap()).sum();
            assert_eq!(sum, 999 * 1_000 / 2, "{spin:?}");
            let local = rt.block_on(rt.spawn(async {
                let handles: Vec<_> = (0..1_000u64)
                    .map(|i| multipool::spawn(async move { i }).start())
                    .collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            }));
            assert_eq!(local.unwrap(), 999 * 1_000 / 2, "{spin:?}");
        });
    }
    watchdog(60, || {
        drop(works(
            Runtime::builder().search_spin(Duration::from_nanos(1)),
        ));
        drop(works(
            Runtime::builder().search_spin(Duration::from_millis(1)),
        ));
        pool_works(with_pool(|p| p.search_spin(Duration::from_millis(1))));
    });
    rejects(
        Runtime::builder().search_spin(Duration::from_millis(1) + Duration::from_nanos(1)),
        "search_spin",
        "must be at most 1 ms",
    );
    rejects(
        Runtime::builder().search_spin(Duration::MAX),
        "search_spin",
        "only burn a core",
    );
    rejects(
        with_pool(|p| p.search_spin(Duration::MAX)),
        "search_spin",
        "(pool `p`)",
    );
}

#[test]
fn idle_timeout_of_a_nanosecond_retires_added_workers_at_once() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .min_workers(1)
                .max_workers(2)
                .idle_timeout(Duration::from_nanos(1)),
        );
        grow_to_two(&rt);
        let handle = rt.handle();
        while handle.metrics().workers_retired() == 0 {
            thread::yield_now();
        }
        for i in 0..20 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
    });
}

/// `Instant + idle_timeout` used to overflow at the added worker's first
/// park: it panicked, stayed listed as a sleeper, and later spawns were
/// never served.
#[test]
fn idle_timeout_max_means_added_workers_never_retire() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .min_workers(1)
                .max_workers(2)
                .idle_timeout(Duration::MAX),
        );
        grow_to_two(&rt);
        let handle = rt.handle();
        // Both park; the added one computes its retirement deadline.
        while handle.metrics().num_parked_workers() < 2 {
            thread::yield_now();
        }
        for i in 0..20 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
        assert_eq!(handle.metrics().workers_retired(), 0);
        assert_eq!(handle.metrics().num_workers(), 2);
    });
}

// ---------------------------------------------------------------------------
// Thread stack size
// ---------------------------------------------------------------------------

#[test]
fn thread_stack_size_zero_one_and_max() {
    // Below the minimum a worker overflows its stack: the process aborted.
    for size in [0, 1, 4096, MIN_STACK - 1] {
        rejects(
            Runtime::builder().thread_stack_size(size),
            "thread_stack_size",
            &format!("must be at least {MIN_STACK} bytes"),
        );
    }
    works(Runtime::builder().workers(1).thread_stack_size(MIN_STACK));
    // The C library's size arithmetic overflows near usize::MAX (musl then
    // makes std panic).
    for size in [MAX_STACK + 1, usize::MAX] {
        rejects(
            Runtime::builder().thread_stack_size(size),
            "thread_stack_size",
            "must be at most",
        );
    }
}

/// A size in range that the OS cannot map is the OS's error, returned.
#[cfg(target_pointer_width = "64")]
#[test]
fn thread_stack_size_the_os_cannot_map_is_a_thread_spawn_error() {
    // 2^62 bytes: more than any 64-bit address space holds.
    let err = Runtime::builder()
        .workers(1)
        .thread_stack_size(MAX_STACK)
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.setting(), None, "{err}");
    assert!(
        err.to_string()
            .starts_with("failed to start a worker thread: "),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the io::Error");
    assert!(source.downcast_ref::<std::io::Error>().is_some());
}

// ---------------------------------------------------------------------------
// Settings without a bad value
// ---------------------------------------------------------------------------

/// Pinning more workers than there are CPUs wraps around the CPUs.
#[cfg(target_os = "linux")]
#[test]
fn pin_workers_with_more_workers_than_cpus_wraps() {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    works(Runtime::builder().workers(cpus + 1).pin_workers(true));
}
