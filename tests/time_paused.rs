//! Paused time (feature `test-util`): `pause` makes long sleeps instant and
//! exact, `advance` fires exactly the timers that become due (and needs
//! paused time), `resume` and pausing again keep the clock monotonic, and
//! auto-advance works with `Runtime::block_on` (idle, woken by its own
//! timer, nested) and around blocking code, which counts as work until it
//! returns.
//!
//! Paused time moves by itself only while the runtime is idle and a
//! `Runtime::block_on` waits on it (tokio's rule): never while nobody
//! drives it, whatever the workers do.
//!
//! Everything that could hang runs under a watchdog, so a lost wake-up
//! fails instead of hanging. Most bodies run as a task of the runtime,
//! awaited by `rt.block_on` (`run_in_task`); the regression tests cover
//! `Runtime::block_on` taking part in auto-advancing the clock.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::time::{ms, paused_runtime, run_in_task, run_paused};
use common::watchdog;
use multipool::time::{advance, now, pause, resume, sleep};
use multipool::{Handle, Runtime};

// ---------------------------------------------------------------------------
// auto-advance: only while driven
// ---------------------------------------------------------------------------

/// The workers all park with a timer pending, and nobody waits on the
/// runtime: the clock stays put (the old rule moved it as the last worker
/// parked, before this test could look). Once `block_on` waits, it moves
/// straight to the timer.
#[test]
fn paused_time_does_not_move_while_nobody_drives_the_runtime() {
    watchdog(60, || {
        let rt = paused_runtime(2);
        let clock = || {
            let _entered = rt.handle().enter();
            multipool::time::Instant::now()
        };
        let start = clock();
        let sleeper = rt
            .spawn(async {
                sleep(Duration::from_secs(3600)).await;
                multipool::time::Instant::now()
            })
            .start();
        // Both workers park only after trying to move the clock, and fail.
        let metrics = rt.handle().metrics();
        // (The old rule fired the timer here: then the loop ends with the
        // sleeper finished, and the assertion below fails.)
        while !sleeper.is_finished()
            && (metrics.num_timers() != 1 || metrics.num_parked_workers() != 2)
        {
            thread::yield_now();
        }
        assert!(!sleeper.is_finished());
        assert_eq!(clock(), start);
        // Driven now: idle, so the clock jumps to the timer, exactly.
        let woke = rt.block_on(sleeper).unwrap();
        assert_eq!(woke - start, Duration::from_secs(3600));
    });
}

/// tokio's `tickspace` shape: a timer made and reset while paused, awaited
/// in `block_on`, fires at exactly the reset deadline; 100 runs in a row
/// while two threads keep both cores busy.
#[test]
fn a_timer_reset_while_paused_fires_exactly_100_times_under_load() {
    watchdog(120, || {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            let rt = paused_runtime(2);
            let (start, elapsed) = {
                let _entered = rt.handle().enter();
                let start = multipool::time::Instant::now();
                let mut timer = Box::pin(sleep(ms(10)));
                // Polled once: the timer is in the wheel, and the workers
                // are idle.
                assert!(futures::FutureExt::now_or_never(timer.as_mut()).is_none());
                // Code that runs with the runtime entered, undriven: the
                // clock must not move under it.
                for _ in 0..1_000 {
                    thread::yield_now();
                }
                assert_eq!(multipool::time::Instant::now(), start);
                timer.as_mut().reset(start + ms(25));
                rt.block_on(async move {
                    timer.await;
                    (start, start.elapsed())
                })
            };
            assert_eq!(elapsed, ms(25), "from {start:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in load {
            thread.join().unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// pause / advance
// ---------------------------------------------------------------------------

#[test]
fn pause_makes_long_sleeps_instant_and_exact() {
    watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let slept = run_in_task(&rt, async {
            pause();
            let start = now();
            sleep(Duration::from_secs(3600)).await;
            now() - start
        });
        assert_eq!(slept, Duration::from_secs(3600));
    });
}

#[test]
fn advance_fires_exactly_the_timers_that_become_due() {
    run_paused(2, async {
        let start = now();
        let early = multipool::spawn(sleep(ms(10))).start();
        let late = multipool::spawn(sleep(ms(20))).start();
        while Handle::current().metrics().num_timers() < 2 {
            multipool::task::yield_now().await;
        }
        advance(ms(10)).await;
        early.await.unwrap();
        assert_eq!(now() - start, ms(10));
        assert!(!late.is_finished());
        late.await.unwrap();
        assert_eq!(now() - start, ms(20));
    });
}

#[test]
#[should_panic(expected = "needs paused time")]
fn advance_without_pause_panics() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        advance(ms(1)).await;
    });
}

// ---------------------------------------------------------------------------
// Regression tests for bugs found while writing the time tests.
// ---------------------------------------------------------------------------

/// `block_on` on a paused runtime whose workers are all parked: its
/// auto-advance used to move the clock only to the wheel's next cascade
/// point (960 µs, the start of the level-1 slot holding the 1 ms deadline),
/// fire nothing, and park for ever.
#[test]
fn block_on_sleep_on_an_idle_paused_runtime_completes() {
    watchdog(10, || {
        let rt = paused_runtime(1);
        while rt.handle().metrics().num_parked_workers() < 1 {
            thread::yield_now();
        }
        // Makes it likely that the worker has finished its own (empty)
        // auto-advance, the case this test is about; the assertion holds
        // either way.
        thread::sleep(ms(10));
        let slept = rt.block_on(async {
            let start = now();
            sleep(ms(1)).await;
            now() - start
        });
        assert_eq!(slept, ms(1));
    });
}

/// A `block_on` woken by its timer used not to count as busy until it
/// polled again, so the last worker to park advanced the clock to the next
/// timer (20 ms) first.
#[test]
fn block_on_woken_by_a_timer_sees_its_own_deadline() {
    watchdog(10, || {
        let rt = paused_runtime(1);
        let seen = rt.block_on(async {
            let start = now();
            let other = multipool::spawn(sleep(ms(20))).start();
            sleep(ms(10)).await;
            let seen = now() - start;
            other.await.unwrap();
            seen
        });
        assert_eq!(seen, ms(10));
    });
}

/// `resume` used to drop the paused offset (`now()` jumped back) while the
/// wheels stayed advanced, so later sleeps completed at once.
#[test]
fn sleeps_after_resume_take_real_time() {
    watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        run_in_task(&rt, async {
            pause();
            advance(Duration::from_secs(3600)).await;
            resume();
            let start = Instant::now();
            sleep(ms(20)).await;
            assert!(start.elapsed() >= ms(20));
        });
    });
}

/// Pausing again after `resume` used to restart from real time, moving the
/// clock back by everything paused time had added; the next sleep then
/// completed at once.
#[test]
fn pausing_again_never_moves_the_clock_backwards() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            sleep(Duration::from_secs(3600)).await; // auto-advanced
            resume();
            let resumed = now();
            pause();
            let repaused = now();
            assert!(repaused >= resumed);
            sleep(Duration::from_secs(60)).await;
            assert_eq!(now() - repaused, Duration::from_secs(60));
        });
    });
}

/// A worker parked without a deadline (paused time) used to stay parked
/// after `resume`, stranding its timers.
#[test]
fn resume_wakes_workers_parked_without_deadline() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let timer = multipool::spawn(sleep(ms(50))).start();
            resume();
            timer.await.unwrap();
        });
    });
}

/// A `block_on` nested in a paused runtime's `block_on` used to keep the
/// outer poll counted as busy while it slept, so time never advanced.
#[test]
fn nested_block_on_under_paused_time_completes() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        let handle = rt.handle();
        let slept = rt.block_on(async move {
            let start = now();
            handle.block_on(sleep(Duration::from_secs(1)));
            multipool::block_on(sleep(Duration::from_secs(1)));
            now() - start
        });
        assert_eq!(slept, Duration::from_secs(2));
    });
}

/// Paused time used to jump ahead while `spawn_blocking` code ran, so a
/// time-out around blocking work could elapse at once. Now a blocking task
/// counts as work until it returns, as in tokio: the sleeper below cannot
/// complete while the closure runs. The closure waits (up to half a second
/// of real time) for the sleeper to finish; with the bug the clock jumped an
/// hour and the sleeper finished first.
#[test]
fn paused_time_does_not_advance_while_blocking_code_runs() {
    run_paused(1, async {
        let start = now();
        let (slept_tx, slept_rx) = mpsc::channel();
        let sleeper = multipool::spawn(async move {
            sleep(Duration::from_secs(3600)).await;
            let _ = slept_tx.send(());
        })
        .start();
        let blocking = multipool::task::spawn_blocking(move || {
            let sleeper_done = slept_rx.recv_timeout(ms(500)).is_ok();
            (sleeper_done, now())
        });
        let (sleeper_done, returned_at) = blocking.await.unwrap();
        assert!(
            !sleeper_done,
            "paused time advanced while blocking code ran"
        );
        assert_eq!(returned_at, start);
        sleeper.await.unwrap();
        assert_eq!(now() - start, Duration::from_secs(3600));
    });
}

/// Once blocking code returns, paused time advances again even if nothing
/// awaits its handle: the blocking thread itself tries the advance, since
/// the workers may all be parked by then.
#[test]
fn paused_time_advances_after_detached_blocking_code_returns() {
    run_paused(1, async {
        let start = now();
        let (sleeping_tx, sleeping_rx) = mpsc::channel::<()>();
        multipool::task::spawn_blocking(move || {
            let _ = sleeping_rx.recv();
            // Give the worker time to park; the outcome does not depend on it.
            thread::sleep(ms(20));
        })
        .detach();
        sleeping_tx.send(()).unwrap();
        sleep(Duration::from_secs(60)).await;
        assert_eq!(now() - start, Duration::from_secs(60));
    });
}

/// A `block_on` nested in blocking code sleeps uncounted, so paused time
/// still advances for it.
#[test]
fn block_on_inside_blocking_code_under_paused_time_completes() {
    run_paused(1, async {
        let start = now();
        let handle = Handle::current();
        let slept = multipool::task::spawn_blocking(move || {
            handle.block_on(sleep(Duration::from_secs(5)));
            now()
        })
        .await
        .unwrap();
        assert_eq!(slept - start, Duration::from_secs(5));
    });
}
