//! Timers on the real clock: `sleep`, `timeout` and `interval` in
//! `multipool::block_on` without a runtime and in a task of the global
//! runtime, and 1 ms sleeps on an idle runtime, which take at least 1 ms.
//!
//! Real time is only bounded from below: tests assert lower bounds, and
//! lateness is printed, not asserted. Everything runs under a watchdog.

mod common;

use std::time::{Duration, Instant};

use common::time::ms;
use common::watchdog;
use multipool::time::{interval, now, sleep, timeout};
use multipool::{Handle, Runtime};

// ---------------------------------------------------------------------------
// Outside a runtime, and on the global runtime
// ---------------------------------------------------------------------------

#[test]
fn timers_in_block_on_without_a_runtime() {
    watchdog(30, || {
        assert!(Handle::try_current().is_err());
        let before = Instant::now();
        assert!(now() >= before);
        let start = Instant::now();
        multipool::block_on(sleep(ms(2)));
        assert!(start.elapsed() >= ms(2));

        let start = Instant::now();
        let result = multipool::block_on(timeout(ms(2), std::future::pending::<()>()));
        assert!(result.is_err());
        assert!(start.elapsed() >= ms(2));

        let start = Instant::now();
        multipool::block_on(async {
            let mut ticks = interval(ms(1));
            for _ in 0..3 {
                ticks.tick().await;
            }
        });
        assert!(
            start.elapsed() >= ms(2),
            "first tick at once, then 2 periods"
        );
    });
}

#[test]
fn timers_in_a_task_on_the_global_runtime() {
    watchdog(30, || {
        let slept = multipool::block_on(multipool::spawn(async {
            let start = Instant::now();
            sleep(ms(2)).await;
            start.elapsed()
        }))
        .unwrap();
        assert!(slept >= ms(2));

        let start = Instant::now();
        let err =
            multipool::block_on(multipool::spawn(sleep(Duration::from_secs(3600))).timeout(ms(2)))
                .unwrap_err();
        assert!(err.is_timeout());
        assert!(start.elapsed() >= ms(2));
    });
}

// ---------------------------------------------------------------------------
// Lower bounds, and lateness report
// ---------------------------------------------------------------------------

fn median_and_max(mut lateness: Vec<Duration>) -> (Duration, Duration) {
    lateness.sort();
    (lateness[lateness.len() / 2], lateness[lateness.len() - 1])
}

/// 50 sequential 1 ms sleeps on an idle 2-worker runtime each take at least
/// 1 ms. The lateness (wake-up minus deadline) is printed, not asserted:
/// run with `--nocapture` to see it.
#[test]
fn one_millisecond_sleeps_on_an_idle_runtime_take_at_least_a_millisecond() {
    let (in_task, in_block_on) = watchdog(30, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let in_task = rt
            .block_on(rt.spawn(async {
                let mut lateness = Vec::new();
                for _ in 0..50 {
                    let before = Instant::now();
                    let timer = sleep(ms(1));
                    let deadline = timer.deadline();
                    timer.await;
                    let woke = Instant::now();
                    assert!(woke - before >= ms(1));
                    assert!(woke >= deadline);
                    lateness.push(woke - deadline);
                }
                lateness
            }))
            .unwrap();
        let mut in_block_on = Vec::new();
        for _ in 0..50 {
            let before = Instant::now();
            let timer = {
                let _runtime = rt.handle().enter();
                sleep(ms(1))
            };
            let deadline = timer.deadline();
            rt.block_on(timer);
            let woke = Instant::now();
            assert!(woke - before >= ms(1));
            assert!(woke >= deadline);
            in_block_on.push(woke - deadline);
        }
        (in_task, in_block_on)
    });
    let (median, max) = median_and_max(in_task);
    eprintln!("1 ms sleep lateness in a task: median {median:?}, max {max:?}");
    let (median, max) = median_and_max(in_block_on);
    eprintln!("1 ms sleep lateness in Runtime::block_on: median {median:?}, max {max:?}");
}
