//! Rate and concurrency limits (`multipool::limit`, issue #14): pacing
//! under paused time, priority order among waiters, waiting that costs no
//! worker (a bounded number of polls, parked workers, one timer), the
//! concurrency bound and its permits coming back however a task ends,
//! cancel-safety, shutdown, and bad input.
//!
//! The paused-time tests need the `test-util` feature (on in CI); the
//! others run in real time but never depend on how fast the machine is:
//! the only waits are for state the runtime reaches by itself, bounded by
//! the watchdog.

mod common;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{wait_until, watchdog, WATCHDOG_WAIT};
use multipool::limit::{ConcurrencyLimit, Quota, RateLimiter};
use multipool::{Priority, Runtime};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A limiter whose next cell is an hour away: whoever waits on it waits
/// for the whole test. Its clock is bound to `rt` (first used there).
fn spent_for_an_hour(rt: &Runtime) -> RateLimiter {
    let limiter = RateLimiter::new(Quota::per_hour(nz(1)));
    rt.block_on(async { limiter.check().unwrap() });
    limiter
}

#[cfg(feature = "test-util")]
mod paused {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use multipool::time::{sleep, timeout, Instant};
    use multipool::Handle;

    use super::common::time::run_in_task;
    use super::common::time::run_paused;
    use super::*;

    /// `per_second` cells a second, one at a time.
    fn steady(per_second: u32) -> Quota {
        Quota::per_second(nz(per_second)).allow_burst(nz(1))
    }

    /// Waits (yielding, so paused time stands still) until `limiter` has
    /// `n` waiters.
    async fn until_waiting(limiter: &RateLimiter, n: usize) {
        while limiter.num_waiting() < n {
            multipool::task::yield_now().await;
        }
    }

    #[test]
    fn a_thousand_tasks_at_100_per_second_take_ten_seconds() {
        let (elapsed, mut starts) = run_paused(2, async {
            let limiter = RateLimiter::new(steady(100));
            let start = Instant::now();
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    multipool::spawn(async { Instant::now() })
                        .rate_limit(&limiter)
                        .start()
                })
                .collect();
            let mut starts = Vec::new();
            for task in tasks {
                starts.push(task.await.unwrap());
            }
            (start.elapsed(), starts)
        });
        // The first at once, then one every 10 ms: 9.99 s.
        let ten = Duration::from_secs(10).as_secs_f64();
        assert!(
            (elapsed.as_secs_f64() - ten).abs() <= ten / 100.0,
            "took {elapsed:?}"
        );
        starts.sort();
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(10), "{pair:?}");
        }
    }

    #[test]
    fn waiting_high_tasks_get_cells_before_normal_before_low() {
        let order = run_paused(2, async {
            let limiter = RateLimiter::new(steady(10));
            limiter.check().unwrap(); // the next cell is 100 ms away
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            // Least urgent first, all waiting before any cell comes.
            for (priority, name) in [
                (Priority::Low, "low"),
                (Priority::Normal, "normal"),
                (Priority::High, "high"),
            ] {
                for i in 0..3 {
                    let order = order.clone();
                    tasks.push(
                        multipool::spawn(async move {
                            order.lock().unwrap().push(format!("{name}{i}"))
                        })
                        .priority(priority)
                        .rate_limit(&limiter)
                        .start(),
                    );
                    until_waiting(&limiter, tasks.len()).await;
                }
            }
            for task in tasks {
                task.await.unwrap();
            }
            Arc::try_unwrap(order).unwrap().into_inner().unwrap()
        });
        assert_eq!(
            order,
            ["high0", "high1", "high2", "normal0", "normal1", "normal2", "low0", "low1", "low2"]
        );
    }

    /// `until_ready()` waits at the priority of the task that awaits it.
    #[test]
    fn until_ready_waits_at_the_current_tasks_priority() {
        let order = run_paused(1, async {
            let limiter = RateLimiter::new(steady(10));
            limiter.check().unwrap();
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for (priority, name) in [(Priority::Low, "low"), (Priority::High, "high")] {
                let (limiter2, order) = (limiter.clone(), order.clone());
                tasks.push(
                    multipool::spawn(async move {
                        limiter2.until_ready().await;
                        order.lock().unwrap().push(name);
                    })
                    .priority(priority)
                    .start(),
                );
                until_waiting(&limiter, tasks.len()).await;
            }
            for task in tasks {
                task.await.unwrap();
            }
            Arc::try_unwrap(order).unwrap().into_inner().unwrap()
        });
        assert_eq!(order, ["high", "low"]);
    }

    /// A future that counts its polls.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        polls: Arc<AtomicUsize>,
    }

    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.inner.as_mut().poll(cx)
        }
    }

    /// Waiting is not polling: each waiter is polled when it queues, when
    /// it comes first, and when its timer fires; never in a loop.
    #[test]
    fn each_waiter_is_polled_a_bounded_number_of_times() {
        let polls = run_paused(2, async {
            let limiter = RateLimiter::new(steady(100));
            let counters: Vec<_> = (0..200).map(|_| Arc::new(AtomicUsize::new(0))).collect();
            let tasks: Vec<_> = counters
                .iter()
                .map(|polls| {
                    let limiter = limiter.clone();
                    multipool::spawn(Counted {
                        inner: Box::pin(async move { limiter.until_ready().await }),
                        polls: polls.clone(),
                    })
                    .start()
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            counters
                .iter()
                .map(|polls| polls.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        });
        assert!(polls.iter().all(|&n| n <= 3), "polls per waiter: {polls:?}");
    }

    #[test]
    fn dropping_a_waiting_until_ready_passes_its_turn_on() {
        run_paused(2, async {
            let limiter = RateLimiter::new(steady(1));
            limiter.check().unwrap(); // the next cell is 1 s away
            let start = Instant::now();
            // The first waiter gives up after 100 ms (its `until_ready` is
            // dropped), the second must then get the cell at 1 s, not wait
            // a turn more.
            let first =
                multipool::spawn(timeout(Duration::from_millis(100), limiter.until_ready()))
                    .start();
            until_waiting(&limiter, 1).await;
            let limiter2 = limiter.clone();
            let second = multipool::spawn(async move {
                limiter2.until_ready().await;
                Instant::now()
            })
            .start();
            until_waiting(&limiter, 2).await;
            assert!(first.await.unwrap().is_err(), "the first waiter timed out");
            assert_eq!(second.await.unwrap() - start, Duration::from_secs(1));
            assert_eq!(limiter.num_waiting(), 0);
        });
    }

    #[test]
    fn abort_of_a_waiting_rate_limited_spawn_reports_aborted_and_passes_the_turn() {
        run_paused(2, async {
            let limiter = RateLimiter::new(steady(1));
            limiter.check().unwrap();
            let start = Instant::now();
            let ran = Arc::new(AtomicUsize::new(0));
            let ran2 = ran.clone();
            let aborted = multipool::spawn(async move {
                ran2.fetch_add(1, Ordering::SeqCst);
            })
            .rate_limit(&limiter)
            .start();
            until_waiting(&limiter, 1).await;
            let next = multipool::spawn(async { Instant::now() })
                .rate_limit(&limiter)
                .start();
            until_waiting(&limiter, 2).await;
            aborted.abort();
            let err = aborted.await.unwrap_err();
            assert!(err.is_cancelled() && !err.is_shutdown(), "{err:?}");
            assert_eq!(ran.load(Ordering::SeqCst), 0, "an aborted task never ran");
            assert_eq!(next.await.unwrap() - start, Duration::from_secs(1));
        });
    }

    /// `.await` waits before the task exists: nothing is queued or alive
    /// for it until its cell comes.
    #[test]
    fn an_awaited_spawn_is_created_only_once_its_limits_let_it_through() {
        run_paused(2, async {
            let limiter = RateLimiter::new(steady(1));
            limiter.check().unwrap();
            let start = Instant::now();
            let limiter2 = limiter.clone();
            let awaiting = multipool::spawn(async move {
                multipool::spawn(async { Instant::now() })
                    .rate_limit(&limiter2)
                    .await
                    .unwrap()
            })
            .start();
            until_waiting(&limiter, 1).await;
            // This task and `awaiting`: the limited one does not exist yet.
            assert_eq!(Handle::current().metrics().num_alive_tasks(), 2);
            assert_eq!(awaiting.await.unwrap() - start, Duration::from_secs(1));
        });
    }

    #[test]
    fn a_pool_rate_limit_paces_every_spawn_on_the_pool() {
        let rt = Runtime::builder()
            .workers(2)
            .start_paused(true)
            .rate_limit(steady(100))
            .build()
            .unwrap();
        let elapsed = watchdog(60, move || {
            // The body is a task of the pool too: it takes the first cell.
            run_in_task(&rt, async {
                let start = Instant::now();
                let mut handles: Vec<_> = (0..90)
                    .map(|_| multipool::spawn(async {}).start())
                    .collect();
                handles.extend(Handle::current().spawn_batch((0..10).map(|_| async {})));
                for handle in handles {
                    handle.await.unwrap();
                }
                start.elapsed()
            })
        });
        assert_eq!(elapsed, Duration::from_secs(1));
    }

    /// A limiter first used by a spawn made from a thread outside any
    /// runtime reads the clock of the runtime the task goes to (paused
    /// here): the cells come exactly 100 ms of paused time apart.
    #[test]
    fn a_limiter_first_used_by_a_spawn_reads_the_target_runtimes_clock() {
        watchdog(60, || {
            let rt = super::common::time::paused_runtime(2);
            let limiter = RateLimiter::new(steady(10));
            let handles: Vec<_> = (0..11)
                .map(|_| {
                    rt.spawn(async { Instant::now() })
                        .rate_limit(&limiter)
                        .start()
                })
                .collect();
            let mut times: Vec<_> = handles
                .into_iter()
                .map(|handle| rt.block_on(handle).unwrap())
                .collect();
            times.sort();
            for pair in times.windows(2) {
                assert_eq!(pair[1] - pair[0], Duration::from_millis(100));
            }
        });
    }

    /// `timeout` of a limited `start` counts from the start, the wait
    /// included; a timed-out waiter gives its turn back.
    #[test]
    fn a_spawn_timeout_covers_the_wait_for_limits() {
        run_paused(1, async {
            let limiter = RateLimiter::new(steady(1));
            limiter.check().unwrap();
            let timed_out = multipool::spawn(async {})
                .rate_limit(&limiter)
                .timeout(Duration::from_millis(500))
                .start();
            assert!(timed_out.await.unwrap_err().is_timeout());
            assert_eq!(limiter.num_waiting(), 0);
            sleep(Duration::from_millis(500)).await;
            limiter.check().unwrap(); // the cell nobody took
        });
    }
}

// ---------------------------------------------------------------------------
// Real time: parked workers, concurrency, shutdown, bad input
// ---------------------------------------------------------------------------

/// While rate-limited spawns wait, every worker parks and only one timer
/// (the first waiter's) is armed; aborting them all empties the queue.
#[test]
fn waiting_spawns_leave_the_workers_parked() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let limiter = spent_for_an_hour(&rt);
        let handles: Vec<_> = (0..100)
            .map(|_| rt.spawn(async {}).rate_limit(&limiter).start())
            .collect();
        assert!(wait_until(WATCHDOG_WAIT, || limiter.num_waiting() == 100
            && rt.handle().metrics().num_parked_workers() == 2));
        assert_eq!(
            rt.handle().metrics().num_timers(),
            1,
            "only the first waiter sleeps"
        );
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let err = multipool::block_on(handle).unwrap_err();
            assert!(err.is_cancelled() && !err.is_shutdown());
        }
        assert_eq!(limiter.num_waiting(), 0);
    });
}

#[test]
fn shutdown_while_spawns_wait_reports_shutdown() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let limiter = spent_for_an_hour(&rt);
        let limit = ConcurrencyLimit::new(1);
        let hold = limit.try_acquire().unwrap();
        let mut handles: Vec<_> = (0..10)
            .map(|_| rt.spawn(async {}).rate_limit(&limiter).start())
            .collect();
        handles.extend((0..10).map(|_| rt.spawn(async {}).concurrency(&limit).start()));
        assert!(wait_until(WATCHDOG_WAIT, || limiter.num_waiting() == 10
            && rt.handle().metrics().num_parked_workers() == 2));
        drop(rt);
        for handle in handles {
            assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
        }
        assert_eq!(limiter.num_waiting(), 0);
        drop(hold);
        assert_eq!(limit.in_use(), 0);
    });
}

#[test]
fn the_concurrency_limit_is_never_exceeded() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let limit = ConcurrencyLimit::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let body = {
            let (running, most) = (running.clone(), most.clone());
            move || {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..3 {
                        multipool::task::yield_now().await;
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }
        };
        // `start` (waits in the task) and `.await` (waits before it).
        let mut handles: Vec<_> = (0..150)
            .map(|i| {
                let priority = Priority::ALL[i % 3];
                rt.spawn(body())
                    .priority(priority)
                    .concurrency(&limit)
                    .start()
            })
            .collect();
        let (limit2, body2) = (limit.clone(), body.clone());
        handles.push(
            rt.spawn(async move {
                for _ in 0..50 {
                    multipool::spawn(body2())
                        .concurrency(&limit2)
                        .await
                        .unwrap();
                }
            })
            .start(),
        );
        for handle in handles {
            rt.block_on(handle).unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!((2..=3).contains(&most), "at most {most} ran at once");
        assert_eq!(running.load(Ordering::SeqCst), 0);
        assert_eq!(limit.in_use(), 0);
    });
}

#[test]
fn concurrency_permits_come_back_on_panic_and_abort() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let limit = ConcurrencyLimit::new(1);
        // A panic gives the permit back.
        let panicked = rt
            .spawn(async { panic!("boom") })
            .concurrency(&limit)
            .start();
        assert!(rt.block_on(panicked).unwrap_err().is_panic());
        assert_eq!(limit.in_use(), 0);
        // An abort of the holder gives it back, to the next waiter.
        let holder = rt
            .spawn(std::future::pending::<()>())
            .concurrency(&limit)
            .start();
        assert_eq!(limit.in_use(), 1);
        let next = rt.spawn(async { 7 }).concurrency(&limit).start();
        holder.abort();
        assert!(rt.block_on(holder).unwrap_err().is_cancelled());
        assert_eq!(rt.block_on(next).unwrap(), 7);
        // An abort of a waiter leaves the holder alone and takes nothing.
        let holder = rt
            .spawn(std::future::pending::<()>())
            .concurrency(&limit)
            .start();
        let waiter = rt.spawn(async {}).concurrency(&limit).start();
        waiter.abort();
        assert!(rt.block_on(waiter).unwrap_err().is_cancelled());
        assert_eq!(limit.in_use(), 1);
        holder.abort();
        assert!(rt.block_on(holder).unwrap_err().is_cancelled());
        assert_eq!(limit.in_use(), 0);
    });
}

#[test]
#[should_panic(expected = "`ConcurrencyLimit::new(0)`")]
fn a_concurrency_limit_of_zero_panics_clearly() {
    let _ = ConcurrencyLimit::new(0);
}

#[test]
fn a_concurrency_limit_of_usize_max_never_waits() {
    watchdog(60, || {
        let limit = ConcurrencyLimit::new(usize::MAX);
        let permits: Vec<_> = (0..1000).map(|_| limit.try_acquire().unwrap()).collect();
        assert_eq!(limit.in_use(), 1000);
        drop(permits);
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handles: Vec<_> = (0..100)
            .map(|i| rt.spawn(async move { i }).concurrency(&limit).start())
            .collect();
        let total: i32 = handles.into_iter().map(|h| rt.block_on(h).unwrap()).sum();
        assert_eq!(total, 4950);
        assert_eq!(limit.in_use(), 0);
    });
}

#[test]
fn quota_extremes_neither_panic_nor_mean_something_else() {
    // A zero period is not a quota.
    assert!(Quota::with_period(std::time::Duration::ZERO).is_none());
    // `u32::MAX` a second: a burst that never runs out here.
    let flood = RateLimiter::new(Quota::per_second(NonZeroU32::MAX));
    assert!((0..10_000).all(|_| flood.check().is_ok()));
    // A period of `Duration::MAX`: the burst goes through, then nothing
    // for decades (the burst's span is held to about 146 years) rather
    // than an overflow or a panic; with the largest burst too.
    let never = RateLimiter::new(
        Quota::with_period(std::time::Duration::MAX)
            .unwrap()
            .allow_burst(nz(3)),
    );
    assert!((0..3).all(|_| never.check().is_ok()));
    let err = never.check().unwrap_err();
    assert!(err.wait_time() > std::time::Duration::from_secs(40 * 365 * 86_400));
    let widest = RateLimiter::new(
        Quota::with_period(std::time::Duration::MAX)
            .unwrap()
            .allow_burst(NonZeroU32::MAX),
    );
    assert!(widest.check().is_ok());
    // `check_with` at every level, and `Debug` output.
    for priority in Priority::ALL {
        assert!(flood.check_with(priority).is_ok());
    }
    assert!(format!("{flood:?}").contains("RateLimiter"));
    assert!(format!("{:?}", ConcurrencyLimit::new(2)).contains("max: 2"));
}
