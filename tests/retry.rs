//! `multipool::task::retry` (issue #13): attempts counted exactly, the
//! backoff's delays slept exactly on the runtime's timer, `when` filtering,
//! per-attempt time-outs and panics as failures, the fallback, attempt
//! priority, and the bad inputs (`Duration::ZERO` and `Duration::MAX`
//! time-outs, a backoff with no retries).
//!
//! Everything runs with paused time (feature `test-util`), where
//! `time::now()` moves exactly from deadline to deadline, so elapsed time
//! is compared with `==`; nothing sleeps for real. Everything that could
//! hang runs under a watchdog.

mod common;

use std::error::Error;
use std::io;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::time::{ms, run_in_task, run_paused};
use common::{watchdog, DropCounter};
use multipool::task::backoff::{
    BackoffBuilder, ConstantBuilder, ExponentialBuilder, FibonacciBuilder,
};
use multipool::task::{retry, AttemptError, RetryError};
use multipool::time::{now, sleep};
use multipool::{Handle, Priority, Runtime};

/// A counter, of attempts or calls.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// `delay` rounded up to the timer's resolution, 1 µs.
fn whole_micros(delay: Duration) -> Duration {
    Duration::from_micros(u64::try_from(delay.as_nanos().div_ceil(1000)).unwrap())
}

/// Counts one more attempt; returns its number, from 1.
fn next(attempts: &AtomicUsize) -> usize {
    attempts.fetch_add(1, Ordering::SeqCst) + 1
}

#[test]
fn n_failures_then_success_sleeps_exactly_the_backoffs_delays() {
    run_paused(2, async {
        let attempts = counter();
        let start = now();
        let counted = attempts.clone();
        let value = retry(move || {
            let counted = counted.clone();
            async move {
                match next(&counted) {
                    n @ 1..=3 => Err(format!("failure {n}")),
                    n => Ok(n),
                }
            }
        })
        .backoff(
            ExponentialBuilder::new()
                .with_min_delay(Duration::from_secs(1))
                .with_factor(2.0)
                .with_max_times(5),
        )
        .await;
        assert_eq!(value.unwrap(), 4);
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        // Three failures, three delays: 1 + 2 + 4 s, and no more.
        assert_eq!(now() - start, Duration::from_secs(7));
        assert_eq!(Handle::current().metrics().num_timers(), 0);

        // The same with the other policies (and an iterator of delays).
        for (backoff, total) in [
            (
                Box::new(ConstantBuilder::new().with_delay(ms(5)).build())
                    as Box<dyn Iterator<Item = Duration> + Send + Sync + Unpin>,
                ms(15),
            ),
            // 10, 10, 20 (Fibonacci from its minimum).
            (
                Box::new(FibonacciBuilder::new().with_min_delay(ms(10)).build()),
                ms(40),
            ),
            (Box::new([ms(1), ms(2), ms(3)].into_iter()), ms(6)),
        ] {
            let attempts = counter();
            let counted = attempts.clone();
            let start = now();
            let value = retry(move || {
                let counted = counted.clone();
                async move {
                    match next(&counted) {
                        1..=3 => Err("not yet"),
                        _ => Ok("done"),
                    }
                }
            })
            .backoff(backoff)
            .await;
            assert_eq!(value.unwrap(), "done");
            assert_eq!(attempts.load(Ordering::SeqCst), 4);
            assert_eq!(now() - start, total);
        }
    });
}

#[test]
fn jittered_delays_are_slept_on_the_runtimes_timer() {
    run_paused(1, async {
        // A seeded jitter: the same builder yields the same delays again.
        let policy = ExponentialBuilder::new()
            .with_min_delay(ms(100))
            .with_max_times(4)
            .with_jitter()
            .with_jitter_seed(13);
        // The timer's resolution is 1 µs: each deadline is rounded up to it.
        let expected: Duration = policy.build().map(whole_micros).sum();
        assert!(expected > ms(100 + 200 + 400 + 800), "jitter adds time");
        let start = now();
        let err = retry(|| async { Err::<(), _>("down") })
            .backoff(policy)
            .await
            .unwrap_err();
        assert_eq!(err.attempts(), 5);
        assert_eq!(now() - start, expected);
    });
}

#[test]
fn max_times_zero_makes_exactly_one_attempt() {
    run_paused(1, async {
        let attempts = counter();
        let counted = attempts.clone();
        let start = now();
        let err = retry(move || {
            next(&counted);
            async { Err::<(), _>("refused") }
        })
        .backoff(ExponentialBuilder::new().with_max_times(0))
        .await
        .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(err.attempts(), 1);
        assert!(err.is_exhausted());
        assert_eq!(err.to_string(), "gave up after 1 attempt: refused");
        assert_eq!(now(), start, "no delay was slept");

        // A success at the first attempt asks nothing of the backoff.
        let value = retry(|| async { Ok::<_, ()>(1) })
            .backoff(ConstantBuilder::new().with_max_times(0))
            .await;
        assert_eq!(value.unwrap(), 1);
    });
}

#[test]
fn the_fallback_gets_the_last_error_after_the_retries_run_out() {
    run_paused(2, async {
        let attempts = counter();
        let counted = attempts.clone();
        let start = now();
        let output = retry(move || {
            let n = next(&counted);
            async move { Err::<&str, _>(n) }
        })
        .backoff(ConstantBuilder::new().with_delay(ms(10)).with_max_times(2))
        .fallback(|err: RetryError<usize>| async move {
            assert_eq!(err.attempts(), 3);
            assert!(err.is_exhausted());
            assert_eq!(err.to_string(), "gave up after 3 attempts: 3");
            match err.into_last_error() {
                AttemptError::Failed(3) => "fallback",
                other => panic!("not the last error: {other:?}"),
            }
        })
        .await;
        assert_eq!(output, "fallback");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(now() - start, ms(20));

        // A success never calls the fallback.
        let output = retry(|| async { Ok::<_, ()>("first try") })
            .fallback(|_| async { panic!("the fallback ran after a success") })
            .await;
        assert_eq!(output, "first try");
    });
}

#[derive(Debug, PartialEq)]
enum Failure {
    Busy,
    Forbidden,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[test]
fn when_retries_only_some_errors_and_a_rejected_one_stops_at_once() {
    run_paused(2, async {
        let attempts = counter();
        let asked = counter();
        let counted = attempts.clone();
        let asked_in_when = asked.clone();
        let start = now();
        let err = retry(move || {
            let n = next(&counted);
            async move {
                match n {
                    1 | 2 => Err::<(), _>(Failure::Busy),
                    _ => Err(Failure::Forbidden),
                }
            }
        })
        .backoff(ConstantBuilder::new().with_delay(ms(10)).with_max_times(10))
        .when(move |err| {
            next(&asked_in_when);
            matches!(err, AttemptError::Failed(Failure::Busy))
        })
        .await
        .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(asked.load(Ordering::SeqCst), 3, "asked once per failure");
        assert_eq!(err.attempts(), 3);
        assert!(!err.is_exhausted());
        assert_eq!(
            err.to_string(),
            "gave up after 3 attempts (error not retried): Forbidden"
        );
        assert!(matches!(
            err.last_error(),
            AttemptError::Failed(Failure::Forbidden)
        ));
        // Two delays, none after the error that is not retried.
        assert_eq!(now() - start, ms(20));

        // A rejected error goes to the fallback at once.
        let start = now();
        let output = retry(|| async { Err::<&str, _>(Failure::Forbidden) })
            .backoff(ConstantBuilder::new().with_delay(ms(10)))
            .when(|err| matches!(err, AttemptError::Failed(Failure::Busy)))
            .fallback(|err| async move {
                assert_eq!(err.attempts(), 1);
                "denied"
            })
            .await;
        assert_eq!(output, "denied");
        assert_eq!(now(), start);
    });
}

#[test]
fn a_hanging_attempt_times_out_and_is_retried() {
    run_paused(2, async {
        let attempts = counter();
        let dropped = counter();
        let counted = attempts.clone();
        let drops = dropped.clone();
        let start = now();
        let value = retry(move || {
            let n = next(&counted);
            let guard = DropCounter(drops.clone());
            async move {
                let _guard = guard;
                if n == 1 {
                    std::future::pending::<()>().await; // hangs
                }
                Ok::<_, ()>(n)
            }
        })
        .timeout(ms(100))
        .backoff(ConstantBuilder::new().with_delay(ms(10)))
        .await;
        assert_eq!(value.unwrap(), 2);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "both futures dropped");
        // The first attempt's 100 ms, then one delay.
        assert_eq!(now() - start, ms(110));

        // Time-outs to the end: the error says so.
        let err = retry(|| async {
            sleep(Duration::from_secs(3600)).await;
            Ok::<(), &str>(())
        })
        .timeout(ms(5))
        .backoff(ConstantBuilder::new().with_delay(ms(1)).with_max_times(1))
        .await
        .unwrap_err();
        assert!(matches!(err.last_error(), AttemptError::TimedOut));
        assert_eq!(
            err.to_string(),
            "gave up after 2 attempts: attempt timed out"
        );
        assert_eq!(Handle::current().metrics().num_timers(), 0);
    });
}

#[test]
fn a_panicking_attempt_is_a_failure_and_is_retried() {
    run_paused(2, async {
        let attempts = counter();
        let counted = attempts.clone();
        let value = retry(move || {
            let n = next(&counted);
            async move {
                if n == 1 {
                    panic!("boom");
                }
                Ok::<_, ()>(n)
            }
        })
        .backoff(ConstantBuilder::new().with_delay(ms(1)))
        .await;
        assert_eq!(value.unwrap(), 2);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);

        // Every attempt panics: the payload is there to re-raise.
        let err = retry(|| async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), &str>(())
        })
        .backoff(ConstantBuilder::new().with_delay(ms(1)).with_max_times(2))
        .await
        .unwrap_err();
        assert_eq!(err.attempts(), 3);
        assert_eq!(
            err.to_string(),
            "gave up after 3 attempts: task panicked: boom"
        );
        let AttemptError::Panicked(join) = err.into_last_error() else {
            panic!("not a panic");
        };
        assert!(join.is_panic());
        assert_eq!(join.into_panic().downcast_ref::<&str>(), Some(&"boom"));

        // `when` sees panics and may refuse to retry them.
        let attempts = counter();
        let counted = attempts.clone();
        let err = retry(move || {
            let n = next(&counted);
            async move {
                assert_eq!(n, 0, "bug");
                Ok::<(), ()>(())
            }
        })
        .backoff(ConstantBuilder::new().with_delay(ms(1)))
        .when(|err| !matches!(err, AttemptError::Panicked(_)))
        .await
        .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(!err.is_exhausted());
    });
}

/// A runtime whose pool "urgent" takes only High tasks, with paused time.
fn runtime_with_a_high_only_pool() -> Runtime {
    Runtime::builder()
        .workers(1)
        .pool("urgent", |pool| {
            pool.workers(1).priorities([Priority::High])
        })
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn a_retry_spawned_with_a_priority_runs_its_attempts_at_theirs() {
    watchdog(60, || {
        let rt = runtime_with_a_high_only_pool();
        run_in_task(&rt, async {
            // The retry is a High task of "urgent"; its attempts are spawned
            // where it runs, and at the priority it gives them.
            let attempts = counter();
            let counted = attempts.clone();
            let thread = multipool::spawn(
                retry(move || {
                    let n = next(&counted);
                    async move {
                        if n == 1 {
                            return Err(String::from("warming up"));
                        }
                        Ok(std::thread::current().name().unwrap().to_owned())
                    }
                })
                .priority(Priority::High)
                .backoff(ConstantBuilder::new().with_delay(ms(1)))
                .name("probe"),
            )
            .priority(Priority::High)
            .pool("urgent")
            .await
            .unwrap()
            .unwrap();
            assert!(thread.starts_with("multipool-urgent-"), "{thread}");
            assert_eq!(attempts.load(Ordering::SeqCst), 2);

            // Attempts at the default priority, Normal, are refused there:
            // a refusal is never retried, and `when` is not asked.
            let asked = counter();
            let asked_in_when = asked.clone();
            let err = multipool::spawn(
                retry(|| async { Ok::<_, String>(()) })
                    .backoff(ConstantBuilder::new().with_delay(ms(1)))
                    .when(move |_| {
                        next(&asked_in_when);
                        true
                    }),
            )
            .priority(Priority::High)
            .pool("urgent")
            .await
            .unwrap()
            .unwrap_err();
            assert_eq!(err.attempts(), 1);
            assert!(!err.is_exhausted());
            assert_eq!(asked.load(Ordering::SeqCst), 0);
            let AttemptError::Cancelled(join) = err.last_error() else {
                panic!("not a refusal: {err}");
            };
            assert!(join.is_rejected(), "{join}");
            assert!(
                err.to_string()
                    .starts_with("gave up after 1 attempt (error not retried): task was rejected"),
                "{err}"
            );
        });
    });
}

#[test]
fn a_duration_max_timeout_never_fires() {
    run_paused(1, async {
        let start = now();
        let value = retry(|| async {
            sleep(Duration::from_secs(3600)).await;
            Ok::<_, ()>("slow but fine")
        })
        .timeout(Duration::MAX)
        .await;
        assert_eq!(value.unwrap(), "slow but fine");
        assert_eq!(now() - start, Duration::from_secs(3600));
        assert_eq!(Handle::current().metrics().num_timers(), 0);
    });
}

#[test]
fn a_zero_timeout_panics_when_set() {
    let set = panic::catch_unwind(|| {
        drop(retry(|| async { Ok::<(), ()>(()) }).timeout(Duration::ZERO));
    });
    let payload = set.unwrap_err();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap();
    assert_eq!(
        message,
        "`Retry::timeout` must be greater than zero: every attempt would be cancelled \
         before it could run"
    );
    // One microsecond is allowed (and times the attempt out at once here).
    run_paused(1, async {
        let err = retry(|| async {
            sleep(ms(1)).await;
            Ok::<(), ()>(())
        })
        .timeout(Duration::from_micros(1))
        .backoff(ConstantBuilder::new().with_max_times(0))
        .await
        .unwrap_err();
        assert!(matches!(err.last_error(), AttemptError::TimedOut));
    });
}

#[test]
fn dropping_the_retry_aborts_the_attempt_in_flight() {
    run_paused(1, async {
        let dropped = counter();
        let drops = dropped.clone();
        let attempts = counter();
        let counted = attempts.clone();
        let outcome = multipool::time::timeout(
            ms(50),
            retry(move || {
                next(&counted);
                let guard = DropCounter(drops.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<Result<(), ()>>().await
                }
            }),
        )
        .await;
        assert!(outcome.is_err(), "timed out");
        // The abort takes effect when the attempt's task is next scheduled.
        while dropped.load(Ordering::SeqCst) == 0 {
            multipool::task::yield_now().await;
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        // And no further attempt is made.
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_retry_is_send_and_static_and_its_errors_are_errors() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: &F) {}
    let plain = retry(|| async { Ok::<_, io::Error>(1) });
    spawnable(&plain);
    let full = retry(|| async { Ok::<_, io::Error>(1) })
        .backoff(ExponentialBuilder::new().with_jitter())
        .when(|_| true)
        .timeout(Duration::from_secs(1))
        .name("job")
        .priority(Priority::Low)
        .fallback(|_| async { 0 });
    spawnable(&full);
    assert!(format!("{full:?}").contains("\"job\""));

    // The error chain: "gave up ..." shows the last error's message, and
    // `source` goes on from there, never repeating it.
    let err = run_paused(1, async {
        retry(|| async { Err::<(), _>(io::Error::other(Wrapped(io::ErrorKind::NotFound.into()))) })
            .backoff(ConstantBuilder::new().with_delay(ms(1)).with_max_times(1))
            .await
            .unwrap_err()
    });
    let err: Box<dyn Error + Send + Sync> = Box::new(err);
    assert_eq!(err.to_string(), "gave up after 2 attempts: wrapped");
    assert_eq!(err.source().unwrap().to_string(), "entity not found");
}

/// An error with a source.
#[derive(Debug)]
struct Wrapped(io::Error);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}
