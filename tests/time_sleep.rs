//! `multipool::time::sleep` and `sleep_until`: many timers fire in deadline
//! order and each exactly at its deadline; a dropped (or aborted) sleep
//! removes its timer; `Sleep::reset` moves a deadline later, earlier, into
//! the past or re-arms a completed sleep; extreme deadlines (now, a
//! microsecond, a year, `Duration::MAX`) are exact or clamped, never a
//! panic; a hundred thousand concurrent sleeps all fire.
//!
//! Assertions about order or exact elapsed time use paused time (feature
//! `test-util`), where `time::now()` moves exactly from deadline to deadline.
//! Everything that could hang runs under a watchdog, so a lost wake-up fails
//! instead of hanging.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::time::{ms, run_paused, Xorshift64, YEAR};
use futures::poll;
use multipool::time::{advance, interval, now, sleep, sleep_until, timeout};
use multipool::Handle;

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
        let mut rng = Xorshift64(0x2545_f491_4f6c_dd1d);
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
        assert_eq!(
            handle.metrics().num_timers(),
            0,
            "registered at first poll only"
        );
        assert!(poll!(&mut long).is_pending());
        assert_eq!(handle.metrics().num_timers(), 1);
        assert!(!long.is_elapsed());
        drop(long);
        assert_eq!(handle.metrics().num_timers(), 0);

        // Many at once, dropped in an interleaved order.
        let mut sleeps: Vec<_> = (1..=100).map(|i| sleep(ms(i))).collect();
        for s in &mut sleeps {
            assert!(poll!(s).is_pending());
        }
        assert_eq!(handle.metrics().num_timers(), 100);
        let mut i = 0;
        sleeps.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        assert_eq!(handle.metrics().num_timers(), 50);
        // Dropped on another thread than the one that registered them.
        thread::spawn(move || drop(sleeps)).join().unwrap();
        assert_eq!(handle.metrics().num_timers(), 0);

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
        assert_eq!(handle.metrics().num_timers(), 0);

        // Awaited to completion: gone as well.
        sleep(ms(1)).await;
        assert_eq!(handle.metrics().num_timers(), 0);
    });
}

#[test]
fn aborting_a_sleeping_task_or_finishing_a_timeout_early_removes_the_timer() {
    run_paused(2, async {
        let handle = Handle::current();
        let start = now();
        let sleeper = multipool::spawn(sleep(Duration::from_secs(10))).start();
        while handle.metrics().num_timers() == 0 {
            multipool::task::yield_now().await;
        }
        sleeper.abort();
        assert!(sleeper.await.unwrap_err().is_cancelled());
        assert_eq!(handle.metrics().num_timers(), 0);
        assert_eq!(now(), start, "no time passed");

        assert_eq!(timeout(Duration::from_secs(10), async { 3 }).await, Ok(3));
        assert_eq!(timeout(Duration::from_secs(10), sleep(ms(5))).await, Ok(()));
        assert_eq!(handle.metrics().num_timers(), 0);
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
        assert_eq!(
            handle.metrics().num_timers(),
            1,
            "moved in place, not duplicated"
        );
        (&mut s).await;
        assert_eq!(now() - start, ms(5));
        drop(s);
        // The old deadline is gone: the next sleep ends at 5 ms + 1 s, not
        // after an hour.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(now() - start, ms(5) + Duration::from_secs(1));
        assert_eq!(handle.metrics().num_timers(), 0);
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
        assert_eq!(handle.metrics().num_timers(), 0);
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
        assert_eq!(handle.metrics().num_timers(), 0);
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
        let mut rng = Xorshift64(0x0123_4567_89ab_cdef);
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
        assert_eq!(Handle::current().metrics().num_timers(), 0);
        (counter.load(Ordering::Relaxed), now() - start, longest)
    });
    assert_eq!(count, 100_000);
    assert_eq!(slept, longest, "the clock stopped at the last deadline");
}
