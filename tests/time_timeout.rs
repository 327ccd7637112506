//! `multipool::time::timeout` and `timeout_at`: a zero duration, a
//! time-out elapsing exactly at its deadline (a future ready in that very
//! poll wins), and a deadline already in the past.
//!
//! Assertions about order or exact elapsed time use paused time (feature
//! `test-util`), where `time::now()` moves exactly from deadline to deadline.
//! Everything that could hang runs under a watchdog, so a lost wake-up fails
//! instead of hanging.

mod common;

use std::time::Duration;

use common::time::{ms, run_paused};
use multipool::time::{advance, now, sleep, timeout, timeout_at};
use multipool::Handle;

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
        assert_eq!(Handle::current().metrics().num_timers(), 0);
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
        assert_eq!(Handle::current().metrics().num_timers(), 0);
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
        assert_eq!(Handle::current().metrics().num_timers(), 0);
    });
}
