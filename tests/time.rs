//! `multipool::time`: sleeps, time-outs, intervals and task deadlines.
//!
//! Assertions about order or exact elapsed time use paused time (feature
//! `test-util`), where `time::now()` moves exactly from deadline to deadline.
//! Tests that need real time assert lower bounds only. Everything that could
//! hang runs under a watchdog, so a lost wake-up fails instead of hanging.
//!
//! Paused-time bodies mostly run as a task of the runtime, awaited from a
//! thread that does not `block_on` the runtime (`run_in_task`); the tests at
//! the end cover `Runtime::block_on` taking part in auto-advancing the
//! clock.

mod common;

use common::watchdog;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures::poll;
use multipool::time::{
    advance, interval, interval_at, now, pause, resume, sleep, sleep_until, timeout, timeout_at,
    MissedTickBehavior,
};
use multipool::{Handle, Priority, Runtime};

fn paused_runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .start_paused(true)
        .build()
        .unwrap()
}

/// Runs `future` as a task of `rt` and returns its output. The calling
/// thread waits on a channel, not in `rt.block_on`, so that only the workers
/// move paused time.
fn run_in_task<T, F>(rt: &Runtime, future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (done_tx, done_rx) = mpsc::channel();
    let task = rt
        .spawn(async move {
            let output = future.await;
            let _ = done_tx.send(());
            output
        })
        .start();
    // `Err`: the task panicked; its handle says how.
    let _ = done_rx.recv();
    multipool::block_on(task).unwrap()
}

/// Runs `future` as a task of a fresh runtime whose clock starts paused,
/// under a watchdog, and returns its output.
fn run_paused<T, F>(workers: usize, future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    watchdog(60, move || run_in_task(&paused_runtime(workers), future))
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// xorshift64: deterministic "random" durations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Counts drops, to prove a future was dropped (exactly once).
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Order of many timers
// ---------------------------------------------------------------------------

/// 1 000 tasks sleep "random" durations (many ties, some not whole
/// milliseconds) and log when they woke: the log is sorted by deadline and
/// each task woke exactly at its deadline.
fn timers_fire_in_deadline_order(workers: usize) {
    let (start, log) = run_paused(workers, async {
        let start = now();
        let log = Arc::new(Mutex::new(Vec::with_capacity(1000)));
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                let duration = if i % 4 == 0 {
                    Duration::from_micros(1 + rng.below(250_000))
                } else {
                    ms(1 + rng.below(250))
                };
                let log = log.clone();
                multipool::spawn(async move {
                    sleep(duration).await;
                    log.lock().unwrap().push((duration, now()));
                })
                .start()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let log = std::mem::take(&mut *log.lock().unwrap());
        (start, log)
    });
    assert_eq!(log.len(), 1000);
    for &(duration, woke) in &log {
        assert_eq!(woke - start, duration, "a timer fired off its deadline");
    }
    for pair in log.windows(2) {
        assert!(
            pair[0].0 <= pair[1].0,
            "woke out of deadline order: {:?} after {:?}",
            pair[1].0,
            pair[0].0
        );
    }
}

#[test]
fn many_timers_fire_in_deadline_order_on_one_worker() {
    timers_fire_in_deadline_order(1);
}

#[test]
fn many_timers_fire_in_deadline_order_on_four_workers() {
    timers_fire_in_deadline_order(4);
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

#[test]
fn dropping_a_sleep_before_its_deadline_removes_its_timer() {
    run_paused(1, async {
        let handle = Handle::current();
        let start = now();
        let mut long = sleep(Duration::from_secs(10));
        assert_eq!(handle.num_timers(), 0, "registered at first poll only");
        assert!(poll!(&mut long).is_pending());
        assert_eq!(handle.num_timers(), 1);
        assert!(!long.is_elapsed());
        drop(long);
        assert_eq!(handle.num_timers(), 0);

        // Many at once, dropped in an interleaved order.
        let mut sleeps: Vec<_> = (1..=100).map(|i| sleep(ms(i))).collect();
        for s in &mut sleeps {
            assert!(poll!(s).is_pending());
        }
        assert_eq!(handle.num_timers(), 100);
        let mut i = 0;
        sleeps.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        assert_eq!(handle.num_timers(), 50);
        // Dropped on another thread than the one that registered them.
        thread::spawn(move || drop(sleeps)).join().unwrap();
        assert_eq!(handle.num_timers(), 0);

        // The clock never stopped at a cancelled deadline.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(now() - start, Duration::from_secs(1));
    });
}

#[test]
fn dropping_a_sleep_after_its_deadline_removes_its_timer() {
    run_paused(1, async {
        let handle = Handle::current();
        let mut short = sleep(ms(1));
        assert!(poll!(&mut short).is_pending());
        advance(ms(1)).await;
        assert!(short.is_elapsed());
        assert!(poll!(&mut short).is_ready());
        drop(short);
        assert_eq!(handle.num_timers(), 0);

        // Awaited to completion: gone as well.
        sleep(ms(1)).await;
        assert_eq!(handle.num_timers(), 0);
    });
}

#[test]
fn aborting_a_sleeping_task_or_finishing_a_timeout_early_removes_the_timer() {
    run_paused(2, async {
        let handle = Handle::current();
        let start = now();
        let sleeper = multipool::spawn(sleep(Duration::from_secs(10))).start();
        while handle.num_timers() == 0 {
            multipool::task::yield_now().await;
        }
        sleeper.abort();
        assert!(sleeper.await.unwrap_err().is_cancelled());
        assert_eq!(handle.num_timers(), 0);
        assert_eq!(now(), start, "no time passed");

        assert_eq!(timeout(Duration::from_secs(10), async { 3 }).await, Ok(3));
        assert_eq!(timeout(Duration::from_secs(10), sleep(ms(5))).await, Ok(()));
        assert_eq!(handle.num_timers(), 0);
        assert_eq!(now() - start, ms(5));
    });
}

// ---------------------------------------------------------------------------
// Sleep::reset
// ---------------------------------------------------------------------------

#[test]
fn sleep_reset_to_a_later_deadline() {
    run_paused(1, async {
        let start = now();
        let mut s = sleep(ms(10));
        assert!(poll!(&mut s).is_pending());
        Pin::new(&mut s).reset(start + ms(30));
        assert_eq!(s.deadline(), start + ms(30));
        (&mut s).await;
        assert_eq!(
            now() - start,
            ms(30),
            "fired at the new deadline, not the old"
        );
        assert!(s.is_elapsed());
    });
}

#[test]
fn sleep_reset_to_an_earlier_deadline() {
    run_paused(1, async {
        let handle = Handle::current();
        let start = now();
        let mut s = sleep(Duration::from_secs(3600));
        assert!(poll!(&mut s).is_pending());
        Pin::new(&mut s).reset(start + ms(5));
        assert_eq!(handle.num_timers(), 1, "moved in place, not duplicated");
        (&mut s).await;
        assert_eq!(now() - start, ms(5));
        drop(s);
        // The old deadline is gone: the next sleep ends at 5 ms + 1 s, not
        // after an hour.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(now() - start, ms(5) + Duration::from_secs(1));
        assert_eq!(handle.num_timers(), 0);
    });
}

#[test]
fn sleep_reset_after_completion_rearms() {
    run_paused(1, async {
        let start = now();
        // Completed through the timer.
        let mut s = sleep(ms(5));
        (&mut s).await;
        assert_eq!(now() - start, ms(5));
        Pin::new(&mut s).reset(start + ms(12));
        assert!(!s.is_elapsed());
        assert!(poll!(&mut s).is_pending());
        (&mut s).await;
        assert_eq!(now() - start, ms(12));
        assert!(s.is_elapsed());

        // Completed at its first poll, never registered.
        let mut zero = sleep(Duration::ZERO);
        (&mut zero).await;
        assert!(zero.is_elapsed());
        Pin::new(&mut zero).reset(now() + ms(3));
        assert!(!zero.is_elapsed());
        assert!(poll!(&mut zero).is_pending());
        (&mut zero).await;
        assert_eq!(now() - start, ms(15));
    });
}

#[test]
fn sleep_reset_before_first_poll_and_into_the_past() {
    run_paused(1, async {
        let start = now();
        let mut s = sleep(Duration::from_secs(3600));
        Pin::new(&mut s).reset(start + ms(2));
        (&mut s).await;
        assert_eq!(now() - start, ms(2));

        let mut s = sleep(Duration::from_secs(3600));
        assert!(poll!(&mut s).is_pending());
        Pin::new(&mut s).reset(start);
        assert!(
            poll!(&mut s).is_ready(),
            "a passed deadline completes at once"
        );
        assert_eq!(now() - start, ms(2), "no time passed");
    });
}

// ---------------------------------------------------------------------------
// timeout and timeout_at
// ---------------------------------------------------------------------------

#[test]
fn timeout_with_zero_duration() {
    run_paused(1, async {
        let start = now();
        assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Ok(7));
        let err = timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "deadline has elapsed");
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::TimedOut
        );
        assert_eq!(now(), start);
        assert_eq!(Handle::current().num_timers(), 0);
    });
}

#[test]
fn timeout_elapses_exactly_at_its_deadline() {
    run_paused(2, async {
        let start = now();
        let pending = timeout(ms(5), std::future::pending::<()>());
        assert_eq!(pending.deadline(), start + ms(5));
        assert!(pending.await.is_err());
        assert_eq!(now() - start, ms(5));

        // A future ready in the poll in which the deadline passes wins.
        assert_eq!(timeout(ms(10), sleep(ms(10))).await, Ok(()));
        assert_eq!(now() - start, ms(15));
        // A slower one loses, and is dropped at the deadline.
        assert!(timeout(ms(10), sleep(ms(11))).await.is_err());
        assert_eq!(now() - start, ms(25));
        assert_eq!(Handle::current().num_timers(), 0);
    });
}

#[test]
fn timeout_at_a_deadline_in_the_past() {
    run_paused(1, async {
        let past = now();
        advance(ms(10)).await;
        assert_eq!(timeout_at(past, async { 1 }).await, Ok(1));
        assert!(timeout_at(past, std::future::pending::<()>())
            .await
            .is_err());
        assert!(timeout_at(past, sleep(ms(1))).await.is_err());
        assert_eq!(now() - past, ms(10), "no time passed");
        assert_eq!(Handle::current().num_timers(), 0);
    });
}

// ---------------------------------------------------------------------------
// Intervals
// ---------------------------------------------------------------------------

const PERIOD: Duration = Duration::from_millis(10);

/// Ticks twice on time, then misses the ticks due at 2, 3 and 4 periods by
/// advancing 3.5 periods before polling again, then ticks five more times.
/// Returns, for every tick, the instant it returned and the time it returned
/// at, both relative to the start.
fn missed_ticks(behavior: MissedTickBehavior) -> Vec<(Duration, Duration)> {
    run_paused(1, async move {
        let start = now();
        let mut ticks = interval(PERIOD);
        assert_eq!(ticks.missed_tick_behavior(), MissedTickBehavior::Burst);
        ticks.set_missed_tick_behavior(behavior);
        assert_eq!(ticks.missed_tick_behavior(), behavior);
        assert_eq!(ticks.period(), PERIOD);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let tick = ticks.tick().await;
            seen.push((tick - start, now() - start));
        }
        advance(PERIOD * 7 / 2).await;
        for _ in 0..5 {
            let tick = ticks.tick().await;
            seen.push((tick - start, now() - start));
        }
        seen
    })
}

fn periods(tenths: &[u32]) -> Vec<Duration> {
    tenths.iter().map(|&t| PERIOD * t / 10).collect()
}

#[test]
fn interval_burst_fires_missed_ticks_at_once_then_keeps_its_schedule() {
    let seen = missed_ticks(MissedTickBehavior::Burst);
    let (ticks, at): (Vec<_>, Vec<_>) = seen.into_iter().unzip();
    assert_eq!(ticks, periods(&[0, 10, 20, 30, 40, 50, 60]));
    assert_eq!(at, periods(&[0, 10, 45, 45, 45, 50, 60]));
}

#[test]
fn interval_delay_restarts_the_schedule_from_the_late_tick() {
    let seen = missed_ticks(MissedTickBehavior::Delay);
    let (ticks, at): (Vec<_>, Vec<_>) = seen.into_iter().unzip();
    assert_eq!(ticks, periods(&[0, 10, 20, 55, 65, 75, 85]));
    assert_eq!(at, periods(&[0, 10, 45, 55, 65, 75, 85]));
}

#[test]
fn interval_skip_drops_missed_ticks_and_keeps_the_grid() {
    let seen = missed_ticks(MissedTickBehavior::Skip);
    let (ticks, at): (Vec<_>, Vec<_>) = seen.into_iter().unzip();
    assert_eq!(ticks, periods(&[0, 10, 20, 50, 60, 70, 80]));
    assert_eq!(at, periods(&[0, 10, 45, 50, 60, 70, 80]));
}

#[test]
fn interval_reset_and_interval_at() {
    run_paused(1, async {
        let start = now();
        let mut ticks = interval(PERIOD);
        assert_eq!(ticks.tick().await, start);
        assert_eq!(ticks.tick().await, start + PERIOD);
        advance(PERIOD / 2).await;
        ticks.reset();
        assert_eq!(ticks.tick().await, start + PERIOD * 5 / 2);
        assert_eq!(now() - start, PERIOD * 5 / 2);
        assert_eq!(ticks.tick().await, start + PERIOD * 7 / 2);
        drop(ticks);

        let begin = now() + PERIOD * 3;
        let mut later = interval_at(begin, PERIOD);
        assert_eq!(later.tick().await, begin, "first tick at `start`");
        assert_eq!(now(), begin);
        assert_eq!(later.tick().await, begin + PERIOD);
        assert_eq!(now(), begin + PERIOD);
    });
}

#[test]
#[should_panic(expected = "period must be greater than zero")]
fn interval_with_zero_period_panics() {
    let _ = interval_at(Instant::now(), Duration::ZERO);
}

// ---------------------------------------------------------------------------
// Extreme deadlines
// ---------------------------------------------------------------------------

#[test]
fn deadline_now_completes_at_the_first_poll_without_a_timer() {
    run_paused(1, async {
        let handle = Handle::current();
        let mut zero = sleep(Duration::ZERO);
        assert!(poll!(&mut zero).is_ready());
        assert!(zero.is_elapsed());
        let mut until_now = sleep_until(now());
        assert!(poll!(&mut until_now).is_ready());
        assert_eq!(handle.num_timers(), 0);
    });
}

#[test]
fn deadlines_of_a_microsecond_and_a_millisecond_are_exact() {
    run_paused(1, async {
        let start = now();
        sleep(Duration::from_micros(1)).await;
        assert_eq!(now() - start, Duration::from_micros(1));
        sleep(ms(1)).await;
        assert_eq!(now() - start, Duration::from_micros(1001));
        // Below the wheel's resolution: rounded up, never early.
        sleep(Duration::from_nanos(1)).await;
        let slept = now() - start - Duration::from_micros(1001);
        assert!(slept >= Duration::from_nanos(1) && slept <= Duration::from_micros(1));
    });
}

#[test]
fn a_deadline_a_year_away_completes_and_moves_the_clock_a_year() {
    run_paused(2, async {
        let start = now();
        sleep(YEAR).await;
        assert_eq!(now() - start, YEAR);
        sleep_until(start + YEAR * 2).await;
        assert_eq!(now() - start, YEAR * 2);
        let mut ticks = interval(YEAR);
        ticks.tick().await;
        assert_eq!(ticks.tick().await, start + YEAR * 3);
    });
}

#[test]
fn duration_max_neither_panics_nor_completes() {
    run_paused(2, async {
        let handle = Handle::current();
        let start = now();
        assert_eq!(timeout(Duration::MAX, async { 5 }).await, Ok(5));
        assert!(timeout(Duration::ZERO, sleep(Duration::MAX)).await.is_err());
        assert_eq!(timeout(Duration::MAX, sleep(ms(1))).await, Ok(()));
        assert_eq!(now() - start, ms(1));

        let mut forever = sleep(Duration::MAX);
        assert!(forever.deadline() > now() + YEAR * 10);
        assert!(poll!(&mut forever).is_pending());
        assert!(!forever.is_elapsed());
        Pin::new(&mut forever).reset(now() + ms(1));
        (&mut forever).await;
        assert_eq!(now() - start, ms(2));
        drop(forever);

        // A task sleeping for ever does not disturb other timers.
        let sleeper = multipool::spawn(sleep(Duration::MAX)).start();
        sleep(Duration::from_secs(1)).await;
        assert_eq!(now() - start, ms(2) + Duration::from_secs(1));
        assert!(!sleeper.is_finished());
        sleeper.abort();
        assert!(sleeper.await.unwrap_err().is_cancelled());

        // A deadline past the wheel's range is clamped, not overflowed.
        if let Some(far) = now().checked_add(YEAR * 100_000) {
            let mut far = sleep_until(far);
            assert!(poll!(&mut far).is_pending());
        }
        assert_eq!(handle.num_timers(), 0);
    });
}

// ---------------------------------------------------------------------------
// Timers racing runtime shutdown
// ---------------------------------------------------------------------------

#[test]
fn dropping_the_runtime_while_1000_tasks_sleep() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                // An hour or more: no timer can fire before the drop.
                let duration = Duration::from_secs(3600) + ms(rng.below(60_000));
                let guard = DropCounter(dropped.clone());
                rt.spawn(async move {
                    let _guard = guard;
                    sleep(duration).await;
                })
                .start()
            })
            .collect();
        while handle.num_timers() < 1000 {
            thread::yield_now();
        }
        drop(rt);
        for task in tasks {
            let err = multipool::block_on(task).unwrap_err();
            assert!(err.is_shutdown(), "{err:?}");
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1000);
        assert_eq!(handle.num_timers(), 0);
    });
}

#[test]
fn dropping_the_runtime_while_timers_are_firing() {
    watchdog(60, || {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for _ in 0..5 {
            let rt = Runtime::builder().workers(2).build().unwrap();
            let handle = rt.handle();
            let dropped = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    let duration = Duration::from_micros(rng.below(3000));
                    let guard = DropCounter(dropped.clone());
                    rt.spawn(async move {
                        let _guard = guard;
                        sleep(duration).await;
                    })
                    .start()
                })
                .collect();
            thread::sleep(Duration::from_micros(rng.below(2000)));
            drop(rt);
            for task in tasks {
                if let Err(err) = multipool::block_on(task) {
                    assert!(err.is_shutdown(), "{err:?}");
                }
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 1000);
            assert_eq!(handle.num_timers(), 0);
        }
    });
}

// ---------------------------------------------------------------------------
// Many timers
// ---------------------------------------------------------------------------

#[test]
fn hundred_thousand_concurrent_sleeps_all_fire() {
    let (count, slept, longest) = run_paused(2, async {
        let start = now();
        let counter = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut longest = Duration::ZERO;
        let handles: Vec<_> = (0..100_000)
            .map(|_| {
                let duration = ms(1 + rng.below(999));
                longest = longest.max(duration);
                let counter = counter.clone();
                multipool::spawn(async move {
                    sleep(duration).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .start()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(Handle::current().num_timers(), 0);
        (counter.load(Ordering::Relaxed), now() - start, longest)
    });
    assert_eq!(count, 100_000);
    assert_eq!(slept, longest, "the clock stopped at the last deadline");
}

// ---------------------------------------------------------------------------
// Spawn::timeout
// ---------------------------------------------------------------------------

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
        assert_eq!(Handle::current().num_timers(), 0);
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
        assert_eq!(Handle::current().num_timers(), 0);
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

// ---------------------------------------------------------------------------
// Outside a runtime, and on the global runtime (real time)
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
// Priority of timer wake-ups
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Low(usize, usize),
    High,
}

/// One worker kept busy by four Low tasks that log and yield. While Low task
/// 0 is inside its poll, the test advances paused time by 1 ms, which fires
/// the High task's timer (from outside the worker, so the wake-up goes
/// through the High injector). The next poll after Low task 0's must be the
/// High task, ahead of the Low tasks already queued.
#[test]
fn high_task_woken_by_a_timer_runs_before_queued_low_work() {
    const ROUNDS: usize = 20;
    const TRIGGER: usize = 5;
    let log = watchdog(30, || {
        let rt = paused_runtime(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let (advanced_tx, advanced_rx) = mpsc::channel::<()>();
        let l = log.clone();
        let slept = rt.block_on(async move {
            let start = now();
            let log = l;
            let l = log.clone();
            let high = multipool::spawn(async move {
                sleep(ms(1)).await;
                l.lock().unwrap().push(Entry::High);
                now() - start
            })
            .priority(Priority::High)
            .start();
            // The High task has run and is waiting on its timer. This
            // `block_on` poll goes on until after the advance, so paused time
            // cannot move by itself meanwhile.
            while Handle::current().num_timers() == 0 {
                thread::yield_now();
            }
            let mut trigger = Some((ready_tx, advanced_rx));
            let lows: Vec<_> = (0..4)
                .map(|id| {
                    let log = log.clone();
                    let trigger = if id == 0 { trigger.take() } else { None };
                    multipool::spawn(async move {
                        for round in 0..ROUNDS {
                            log.lock().unwrap().push(Entry::Low(id, round));
                            if let (Some((ready, advanced)), TRIGGER) = (&trigger, round) {
                                ready.send(()).unwrap();
                                // Blocks the worker until the timer fired.
                                advanced.recv().unwrap();
                            }
                            multipool::task::yield_now().await;
                        }
                    })
                    .priority(Priority::Low)
                    .start()
                })
                .collect();
            ready_rx.recv().unwrap();
            let yielded = advance(ms(1));
            advanced_tx.send(()).unwrap();
            yielded.await;
            for low in lows {
                low.await.unwrap();
            }
            high.await.unwrap()
        });
        assert_eq!(slept, ms(1));
        let log = log.lock().unwrap().clone();
        log
    });
    let trigger = log
        .iter()
        .position(|&e| e == Entry::Low(0, TRIGGER))
        .unwrap();
    assert_eq!(log[trigger + 1], Entry::High, "log: {log:?}");
    assert_eq!(log.len(), 4 * ROUNDS + 1);
    let lows_after = log[trigger + 2..]
        .iter()
        .filter(|e| matches!(e, Entry::Low(id, _) if *id != 0))
        .count();
    assert!(lows_after > 0, "Low work was queued when the timer fired");
}

/// Real time, one worker that never parks: the worker fires its own wheel
/// between polls, and the High task it wakes runs before the next Low poll.
/// Deterministic in outcome: whatever the machine's speed, at most two Low
/// polls may start after the deadline and still run before the High task:
/// the one whose tick checked the wheel just before the deadline, and one
/// fair-share turn of Low (1 tick in 64, see `fairness`) if the tick that
/// fires the timer is one.
#[test]
fn high_task_woken_by_its_workers_wheel_runs_before_queued_low_work() {
    let (log, deadline) = watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (l, d) = (log.clone(), done.clone());
        let high = rt
            .spawn(async move {
                let timer = sleep(ms(1));
                let deadline = timer.deadline();
                timer.await;
                l.lock().unwrap().push((None, Instant::now()));
                d.store(true, Ordering::SeqCst);
                deadline
            })
            .priority(Priority::High)
            .start();
        let lows: Vec<_> = (0..4)
            .map(|id| {
                let (log, done) = (log.clone(), done.clone());
                rt.spawn(async move {
                    loop {
                        log.lock().unwrap().push((Some(id), Instant::now()));
                        if done.load(Ordering::SeqCst) {
                            break;
                        }
                        multipool::task::yield_now().await;
                    }
                })
                .priority(Priority::Low)
                .start()
            })
            .collect();
        let deadline = rt.block_on(high).unwrap();
        for low in lows {
            rt.block_on(low).unwrap();
        }
        let log = log.lock().unwrap().clone();
        (log, deadline)
    });
    let high = log.iter().position(|(id, _)| id.is_none()).unwrap();
    assert!(log[high].1 >= deadline);
    // A poll that started 2 µs after the deadline (a whole tick of the
    // wheel) was preceded by a check of the wheel that found it due, except
    // the two above: a check just before the deadline followed by a
    // preemption, and Low's fair-share turn taken before the High task.
    let late = log[..high]
        .iter()
        .filter(|(_, at)| *at >= deadline + Duration::from_micros(2))
        .count();
    assert!(late <= 2, "{late} Low polls started after the deadline");
}

// ---------------------------------------------------------------------------
// Real time: lower bounds, and lateness report
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
        while Handle::current().num_timers() < 2 {
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
// Regression tests for bugs found while writing this file.
// ---------------------------------------------------------------------------

/// `block_on` on a paused runtime whose workers are all parked: its
/// auto-advance used to move the clock only to the wheel's next cascade
/// point (960 µs, the start of the level-1 slot holding the 1 ms deadline),
/// fire nothing, and park for ever.
#[test]
fn block_on_sleep_on_an_idle_paused_runtime_completes() {
    watchdog(10, || {
        let rt = paused_runtime(1);
        while rt.handle().num_parked_workers() < 1 {
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

/// `Interval::poll_tick` and `reset` used to compute `instant + period`
/// unchecked.
#[test]
fn interval_of_duration_max_ticks_once() {
    run_paused(1, async {
        let mut ticks = interval(Duration::MAX);
        ticks.tick().await;
        assert!(timeout(Duration::ZERO, ticks.tick()).await.is_err());
        ticks.reset();
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
