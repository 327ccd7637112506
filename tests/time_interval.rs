//! `multipool::time::interval` and `interval_at`: the three
//! `MissedTickBehavior`s after missed ticks, `reset`, a first tick at
//! `start`, and the extreme periods (zero panics, `Duration::MAX` ticks
//! once).
//!
//! Assertions about order or exact elapsed time use paused time (feature
//! `test-util`), where `time::now()` moves exactly from deadline to deadline.
//! Everything that could hang runs under a watchdog, so a lost wake-up fails
//! instead of hanging.

mod common;

use std::time::{Duration, Instant};

use common::time::run_paused;
use multipool::time::{advance, interval, interval_at, now, timeout, MissedTickBehavior};

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
// Regression test for a bug found while writing the time tests.
// ---------------------------------------------------------------------------

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
