//! Bad input never panics, hangs, or silently means something else: rows
//! of the README's "Guarantees → Bad input" table for paused time (feature
//! `test-util`): `time::advance` by `Duration::MAX` or past the end of the
//! clock's range stops at its end, and auto-advance to a `Duration::MAX`
//! sleep moves thirty years, in order. Everything runs under the watchdog
//! (`run_paused`).

mod common;

#[cfg(feature = "test-util")]
mod paused {
    use std::time::{Duration, Instant};

    use crate::common::time::{run_paused, YEAR};
    use futures::poll;
    use multipool::time::{advance, now, resume, sleep, sleep_until, timeout};

    /// `time::advance(Duration::MAX)` used to leave the clock where it
    /// was. It now moves to the end of the clock's range: every timer fires,
    /// and time moves no further.
    #[test]
    fn advance_duration_max_moves_to_the_end_of_time() {
        run_paused(2, async {
            let start = now();
            let mut forever = sleep(Duration::MAX);
            let mut far = sleep_until(start + YEAR * 1000);
            assert!(poll!(&mut forever).is_pending());
            assert!(poll!(&mut far).is_pending());
            advance(Duration::MAX).await;
            let end = now();
            assert!(end - start > YEAR * 30_000, "{:?}", end - start);
            assert!(poll!(&mut forever).is_ready());
            assert!(poll!(&mut far).is_ready());
            // Time cannot move past the end: a new timer is due at once.
            sleep(Duration::from_secs(3600)).await;
            assert!(
                timeout(Duration::from_millis(1), std::future::pending::<()>())
                    .await
                    .is_err()
            );
            advance(Duration::from_secs(1)).await;
            advance(Duration::MAX).await;
            assert_eq!(now(), end);
            // Resuming real time there neither overflows nor goes backwards.
            resume();
            assert_eq!(now(), end);
            sleep(Duration::from_millis(1)).await;
            drop((forever, far));
            assert_eq!(multipool::Handle::current().metrics().num_timers(), 0);
        });
    }

    /// A duration that does not overflow `Instant` but passes the end of
    /// the clock's range stops at the end too.
    #[test]
    fn advance_past_the_range_stops_at_its_end() {
        run_paused(2, async {
            let start = now();
            let Some(_) = start.checked_add(YEAR * 100_000) else {
                return; // this platform's Instant cannot hold it
            };
            advance(YEAR * 100_000).await;
            let end = now();
            assert!(end - start < YEAR * 40_000, "{:?}", end - start);
            advance(Duration::MAX).await;
            assert_eq!(now(), end);
        });
    }

    /// Auto-advance (idle runtime) still moves in order at huge distances.
    #[test]
    fn sleep_duration_max_auto_advances_thirty_years() {
        run_paused(2, async {
            let start: Instant = now();
            sleep(Duration::MAX).await;
            let slept = now() - start;
            assert!(slept >= YEAR * 29 && slept <= YEAR * 31, "{slept:?}");
        });
    }
}
