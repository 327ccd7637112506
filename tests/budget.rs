//! Budgets (issue #14): the cooperative budget of multipool's leaf futures
//! (`task::consume_budget`, `task::unconstrained`) and the CPU limits of a
//! task (`Spawn::cpu_budget`, `Spawn::cpu_budget_demote`, `Spawn::max_poll`).
//!
//! Nothing here depends on the machine's speed. Coop tests count polls: a
//! future that counts its own polls ([`CountPolls`]) sees exactly
//! `ceil(n / 128)` polls for `n` always-ready leaf futures. CPU tests spin a
//! known amount per poll *measured inside the task* with `Instant`: the
//! runtime's poll time encloses each spin, so it is at least the task's own
//! sum. That makes "not cancelled too early" exact, and "cancelled in time"
//! exact up to the first poll whose own sum crosses the limit; the other
//! direction (not cancelled much before the own sum crosses) holds with a
//! slack of several milliseconds for scheduling overhead around the spins.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{watchdog, DropCounter};
use multipool::task::{consume_budget, unconstrained, yield_now};
use multipool::time::{interval_at, sleep, sleep_until, timeout};
use multipool::{Priority, Runtime, RuntimeMetrics, Spawn};

/// Wraps a future and counts how often it is polled.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: usize,
}

fn count_polls<F: Future>(inner: F) -> CountPolls<F> {
    CountPolls {
        inner: Box::pin(inner),
        polls: 0,
    }
}

impl<F: Future> Future for CountPolls<F> {
    type Output = (F::Output, usize);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(value) => Poll::Ready((value, self.polls)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Polls a task needs to get through `n` always-ready leaf futures with a
/// budget of 128 per poll.
fn polls_for(n: usize) -> usize {
    n.div_ceil(128).max(1)
}

/// Runs `future` as a task on a one-worker runtime; returns its output.
fn in_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    watchdog(30, move || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        rt.block_on(multipool::spawn(future)).unwrap()
    })
}

/// A timer whose deadline has passed: ready at its first poll (unlike
/// `sleep(ZERO)`, whose deadline is the present, rounded up to the timer
/// wheel's next tick).
fn expired() -> multipool::time::Sleep {
    sleep_until(Instant::now() - Duration::from_secs(1))
}

/// Busy-spins for `d` and returns the time spun, as the task measures it.
fn spin(d: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
    start.elapsed()
}

/// The priority of each poll of every named task, in order.
type PollLog = Arc<Mutex<Vec<(String, Priority)>>>;

/// A one-worker runtime (strict priorities) that logs the priority of each
/// poll of every named task.
fn logging_runtime() -> (Runtime, PollLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let rt = Runtime::builder()
        .workers(1)
        .strict_priority()
        .on_before_task_poll(move |task| {
            if let Some(name) = task.name() {
                seen.lock()
                    .unwrap()
                    .push((name.to_string(), task.priority()));
            }
        })
        .build()
        .unwrap();
    (rt, log)
}

/// The priorities of the polls of task `name`, in order.
fn polls_of(log: &Mutex<Vec<(String, Priority)>>, name: &str) -> Vec<Priority> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(task, _)| task == name)
        .map(|&(_, priority)| priority)
        .collect()
}

/// Every spawn ended with exactly one outcome, or is alive.
fn assert_conserved(metrics: &RuntimeMetrics) {
    let ended = metrics.completed_count()
        + metrics.cancelled_count()
        + metrics.panicked_count()
        + metrics.timed_out_count()
        + metrics.rejected_count()
        + metrics.shutdown_count();
    assert_eq!(
        metrics.spawned_tasks_count(),
        ended + metrics.num_alive_tasks() as u64,
        "{metrics:?}"
    );
}

// ---- Cooperative budget ----

#[test]
fn always_expired_sleeps_yield_every_128() {
    for n in [1, 128, 129, 1000] {
        let ((), polls) = in_task(count_polls(async move {
            for _ in 0..n {
                expired().await;
            }
        }));
        assert_eq!(polls, polls_for(n), "{n} expired sleeps");
    }
}

#[test]
fn a_task_looping_on_expired_timers_is_polled_once_per_128() {
    // Seen from the runtime: the task's own polls, counted by the hook.
    let (rt, log) = logging_runtime();
    watchdog(30, move || {
        rt.block_on(
            multipool::spawn(async {
                for _ in 0..1000 {
                    expired().await;
                }
            })
            .name("looper"),
        )
        .unwrap();
        assert_eq!(polls_of(&log, "looper").len(), polls_for(1000));
    });
}

#[test]
fn ready_join_handles_yield_every_128() {
    let (_, polls) = in_task(async {
        let handles: Vec<_> = (0..1000u32)
            .map(|i| multipool::spawn(async move { i }).start())
            .collect();
        // Let every task finish first (yield_now spends no budget).
        while !handles.iter().all(|h| h.is_finished()) {
            yield_now().await;
        }
        count_polls(async move {
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            assert_eq!(sum, 999 * 1000 / 2);
        })
        .await
    });
    assert_eq!(polls, polls_for(1000));
}

#[test]
fn interval_bursting_through_missed_ticks_yields() {
    let (_, polls) = in_task(async {
        // Ten thousand ticks behind: `Burst` makes every tick ready at once.
        let start = multipool::time::now() - Duration::from_secs(10);
        let mut ticks = interval_at(start, Duration::from_millis(1));
        count_polls(async move {
            for _ in 0..1000 {
                ticks.tick().await;
            }
        })
        .await
    });
    assert_eq!(polls, polls_for(1000));
}

#[test]
fn a_busy_loop_on_ready_timers_lets_a_sibling_run() {
    // One worker: without the budget, the looper never gives it up and the
    // sibling never sets the flag (the watchdog fails the test).
    let ready_sleeps = in_task(async {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let sibling = multipool::spawn(async move { set.store(true, Ordering::SeqCst) }).start();
        let mut ready_sleeps = 0usize;
        while !flag.load(Ordering::SeqCst) {
            expired().await;
            ready_sleeps += 1;
        }
        sibling.await.unwrap();
        ready_sleeps
    });
    // 128 in the first poll; the 129th yielded, the sibling ran, and the
    // 129th completed in the second poll.
    assert_eq!(
        ready_sleeps, 129,
        "the sibling ran at the first forced yield"
    );
}

#[test]
fn timeout_fires_when_its_future_spends_the_whole_budget() {
    // The inner future spends every unit of every poll; the time-out's own
    // timer is then checked unconstrained, so it still fires.
    let result = in_task(timeout(Duration::from_millis(20), async {
        loop {
            expired().await;
        }
    }));
    assert!(result.is_err());
}

#[test]
fn consume_budget_yields_after_128_calls() {
    for n in [1, 128, 129, 1000] {
        let ((), polls) = in_task(count_polls(async move {
            for _ in 0..n {
                consume_budget().await;
            }
        }));
        assert_eq!(polls, polls_for(n), "{n} calls");
    }
}

#[test]
fn unconstrained_never_yields_for_the_budget() {
    let ((), polls) = in_task(count_polls(unconstrained(async {
        for _ in 0..1000 {
            expired().await;
            consume_budget().await;
        }
    })));
    assert_eq!(polls, 1);
    // And the budget is back afterwards.
    let ((), polls) = in_task(async {
        unconstrained(async {
            for _ in 0..1000 {
                consume_budget().await;
            }
        })
        .await;
        count_polls(async {
            for _ in 0..1000 {
                consume_budget().await;
            }
        })
        .await
    });
    assert_eq!(polls, polls_for(1000));
}

#[test]
fn no_budget_outside_tasks() {
    // `block_on`'s own future.
    let ((), polls) = multipool::block_on(count_polls(async {
        for _ in 0..1000 {
            consume_budget().await;
            expired().await;
        }
    }));
    assert_eq!(polls, 1);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let ((), polls) = rt.block_on(count_polls(async {
        for _ in 0..1000 {
            consume_budget().await;
        }
    }));
    assert_eq!(polls, 1);
    // Another executor's thread.
    let ((), polls) = futures::executor::block_on(count_polls(async {
        for _ in 0..1000 {
            consume_budget().await;
        }
    }));
    assert_eq!(polls, 1);
    // A `spawn_blocking` closure that drives futures with another executor:
    // a budget there would make that executor spin.
    let polls = watchdog(30, move || {
        rt.block_on(multipool::task::spawn_blocking(|| {
            futures::executor::block_on(count_polls(async {
                for _ in 0..1000 {
                    expired().await;
                }
            }))
            .1
        }))
        .unwrap()
    });
    assert_eq!(polls, 1);
}

// ---- CPU limits ----

#[test]
fn cpu_budget_cancels_after_the_poll_that_crossed_it() {
    const SPIN: Duration = Duration::from_millis(4);
    const BUDGET: Duration = Duration::from_millis(10);
    const SLACK: Duration = Duration::from_millis(5);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let spins = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (record, guard) = (spins.clone(), DropCounter(dropped.clone()));
    let err = watchdog(30, move || {
        let err = rt
            .block_on(
                multipool::spawn(async move {
                    let _guard = guard;
                    loop {
                        let spun = spin(SPIN);
                        record.lock().unwrap().push(spun);
                        yield_now().await;
                    }
                })
                .cpu_budget(BUDGET),
            )
            .unwrap_err();
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.cancelled_count(), 1);
        assert_conserved(&metrics);
        err
    });
    assert!(err.is_budget_exceeded(), "{err:?}");
    assert!(!err.is_cancelled() && !err.is_timeout() && !err.is_poll_too_long());
    assert!(err.to_string().contains("CPU budget"), "{err}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the future was dropped");
    let spins = spins.lock().unwrap();
    let polls = spins.len();
    let sum = |n: usize| spins[..n].iter().sum::<Duration>();
    // Not too early: the task was polled again after poll `polls - 1`, so
    // the runtime's sum, at least the task's own, was within the budget.
    assert!(sum(polls - 1) <= BUDGET, "{spins:?}");
    // Not late: cancelled at the latest after the first poll whose own sum
    // is past the budget (nothing ran after it), and not much earlier.
    assert!(sum(polls) + SLACK > BUDGET, "{spins:?}");
    let crossed = (1..=polls).find(|&n| sum(n) > BUDGET);
    assert!(crossed.is_none_or(|n| n == polls), "{spins:?}");
}

#[test]
fn a_task_completing_in_the_poll_that_crossed_its_budget_succeeds() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let value = rt.block_on(
        multipool::spawn(async {
            spin(Duration::from_millis(5));
            7
        })
        .cpu_budget(Duration::from_millis(1)),
    );
    assert_eq!(value.unwrap(), 7);
}

#[test]
fn cpu_budget_demote_lowers_the_priority_after_the_crossing_poll() {
    const SPIN: Duration = Duration::from_millis(4);
    const THRESHOLD: Duration = Duration::from_millis(6);
    const SLACK: Duration = Duration::from_millis(5);
    let (rt, log) = logging_runtime();
    let spins = Arc::new(Mutex::new(Vec::new()));
    let record = spins.clone();
    watchdog(30, move || {
        rt.block_on(
            multipool::spawn(async move {
                for _ in 0..4 {
                    record.lock().unwrap().push(spin(SPIN));
                    yield_now().await;
                }
            })
            .name("hog")
            .priority(Priority::High)
            .cpu_budget_demote(THRESHOLD),
        )
        .expect("demoted, not cancelled");
        assert_conserved(&rt.handle().metrics());
    });
    let levels = polls_of(&log, "hog");
    let spins = spins.lock().unwrap();
    assert_eq!(levels.len(), 5);
    let high = levels.iter().take_while(|&&p| p == Priority::High).count();
    assert!(
        levels[high..].iter().all(|&p| p == Priority::Low),
        "{levels:?}"
    );
    let sum = |n: usize| spins[..n].iter().sum::<Duration>();
    // Poll `high` ran at High: the sum before it was within the threshold.
    assert!(
        high >= 1 && sum(high - 1) <= THRESHOLD,
        "{levels:?} {spins:?}"
    );
    // Demoted after the first poll whose own sum crossed, not much before.
    assert!(sum(high) + SLACK > THRESHOLD, "{levels:?} {spins:?}");
    let crossed = (1..=spins.len()).find(|&n| sum(n) > THRESHOLD).unwrap();
    assert!(high <= crossed, "{levels:?} {spins:?}");
}

#[test]
fn a_demoted_task_queues_behind_normal_work() {
    // On one worker with strict priorities, a `High` task that spawns a
    // `Normal` one and yields is polled again before it; once demoted to
    // `Low`, after it.
    for demote in [false, true] {
        let (rt, _log) = logging_runtime();
        let order = Arc::new(Mutex::new(Vec::new()));
        let log = order.clone();
        let spawn = multipool::spawn(async move {
            spin(Duration::from_millis(3));
            let log2 = log.clone();
            let other = multipool::spawn(async move { log2.lock().unwrap().push("normal") })
                .priority(Priority::Normal)
                .start();
            yield_now().await;
            log.lock().unwrap().push("hog");
            other.await.unwrap();
        })
        .priority(Priority::High);
        let spawn = if demote {
            spawn.cpu_budget_demote(Duration::from_micros(1))
        } else {
            spawn
        };
        watchdog(30, move || rt.block_on(spawn).unwrap());
        let expected = if demote {
            ["normal", "hog"]
        } else {
            ["hog", "normal"]
        };
        assert_eq!(*order.lock().unwrap(), expected, "demote: {demote}");
    }
}

#[test]
fn max_poll_cancels_after_the_poll_that_ran_too_long() {
    const MAX: Duration = Duration::from_millis(50);
    let rt = Runtime::builder().workers(1).build().unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let count = polls.clone();
    let err = watchdog(30, move || {
        let err = rt
            .block_on(
                multipool::spawn(async move {
                    // Two short polls, then one that blocks for longer than
                    // `MAX`, then more that never come.
                    for _ in 0..2 {
                        count.fetch_add(1, Ordering::SeqCst);
                        yield_now().await;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    assert!(spin(MAX + Duration::from_millis(10)) > MAX);
                    yield_now().await;
                    count.fetch_add(1, Ordering::SeqCst);
                    unreachable!("polled after the long poll");
                })
                .max_poll(MAX),
            )
            .unwrap_err();
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.cancelled_count(), 1);
        assert_conserved(&metrics);
        err
    });
    assert!(err.is_poll_too_long(), "{err:?}");
    assert!(!err.is_budget_exceeded() && !err.is_cancelled());
    assert!(err.to_string().contains("max_poll"), "{err}");
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

#[test]
fn zero_limits_are_rejected_and_the_task_never_runs() {
    type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
    type SetLimit = fn(Spawn<BoxFuture>) -> Spawn<BoxFuture>;
    let cases: [(&str, SetLimit); 3] = [
        ("cpu_budget", |s| s.cpu_budget(Duration::ZERO)),
        ("cpu_budget_demote", |s| s.cpu_budget_demote(Duration::ZERO)),
        ("max_poll", |s| s.max_poll(Duration::ZERO)),
    ];
    let rt = Runtime::builder().workers(1).build().unwrap();
    for (setting, set) in cases {
        let polled = Arc::new(AtomicBool::new(false));
        let flag = polled.clone();
        let future: BoxFuture = Box::pin(async move { flag.store(true, Ordering::SeqCst) });
        let err = rt
            .block_on(set(rt.spawn(future).cpu_budget(Duration::from_secs(1))))
            .unwrap_err();
        assert!(err.is_rejected(), "{setting}: {err:?}");
        assert!(err.to_string().contains(setting), "{err}");
        assert!(!polled.load(Ordering::SeqCst), "{setting}: never polled");
    }
    let metrics = rt.handle().metrics();
    assert_eq!(metrics.rejected_count(), 3);
    assert_conserved(&metrics);
}

#[test]
fn max_limits_never_fire() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let value = watchdog(30, move || {
        rt.block_on(
            multipool::spawn(async {
                for _ in 0..3 {
                    spin(Duration::from_millis(1));
                    yield_now().await;
                }
                multipool::task::id()
            })
            .priority(Priority::High)
            .cpu_budget(Duration::MAX)
            .cpu_budget_demote(Duration::MAX)
            .max_poll(Duration::MAX)
            .timeout(Duration::MAX),
        )
    });
    assert!(value.is_ok());
}

#[test]
fn limits_and_a_deadline_together() {
    // The deadline still fires for a task with CPU limits it stays within.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let err = watchdog(30, move || {
        rt.block_on(
            multipool::spawn(sleep(Duration::from_secs(60)))
                .cpu_budget(Duration::from_secs(10))
                .max_poll(Duration::from_secs(10))
                .timeout(Duration::from_millis(5)),
        )
        .unwrap_err()
    });
    assert!(err.is_timeout(), "{err:?}");
}
