//! Retirement churn: an elastic pool (`min_workers(1)`, `max_workers(4)`,
//! `idle_timeout` of 1 ms) grows under bursts of work and shrinks back
//! between them, over and over, with `RoundRobin` and with `LeastLoaded`
//! placement (the policies that put new tasks on a chosen worker, which may
//! be retiring at that moment).
//!
//! Each burst mixes tasks that block their worker for a few milliseconds
//! in a poll (so the monitor adds workers), tasks that sleep on multipool
//! timers (some long enough to outlive the burst's other work, on wheels
//! of workers that then want to retire), tasks that spawn and await
//! children (placed from a worker), pinned tasks and local tasks. Between
//! bursts the test either waits until the pool is back to one worker (a
//! condition, with a bound), or lets a trickle of spawns from another thread
//! land while workers retire, or starts the next burst at once.
//!
//! What it asserts: every task completes with its own value; retirement
//! happened (`workers_retired() > 0`, and the pool was back to one worker
//! between bursts); at rest `workers_started() - workers_retired()` is the
//! number of workers; and at the end `num_timers()` and `num_alive_tasks()`
//! are 0. Real sleeps here only shape the load; no assertion depends on
//! one.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use common::{wait_until, watchdog, Rng};
use multipool::{Handle, JoinHandle, Placement, Priority, Runtime};

/// Bursts per placement policy.
const BURSTS: u64 = 150;
/// The bound on each wait for a condition (the pool back to one worker,
/// gauges back to 0). Far beyond what it takes (a few milliseconds);
/// reaching it fails the test.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A task of a burst with the value it must return.
struct Expected {
    what: &'static str,
    value: u64,
    handle: JoinHandle<u64>,
}

type BoxedTask = Pin<Box<dyn Future<Output = u64> + Send + 'static>>;

/// A task that sleeps `micros` on multipool's timers (twice: the second
/// timer is inserted on whichever worker polls it then), returns `value`.
fn sleeper(value: u64, micros: u64) -> BoxedTask {
    Box::pin(async move {
        multipool::time::sleep(Duration::from_micros(micros / 2)).await;
        // A time-out that never fires: a timer registered, then dropped.
        let inner = multipool::time::sleep(Duration::from_micros(micros - micros / 2));
        multipool::time::timeout(Duration::from_secs(60), inner)
            .await
            .expect("a 60 s time-out does not fire");
        value
    })
}

/// A task that blocks its worker in one poll for `millis` (long enough for
/// the monitor to count it blocked and add a worker), then yields and
/// returns `value`.
fn blocker(value: u64, millis: u64) -> BoxedTask {
    Box::pin(async move {
        thread::sleep(Duration::from_millis(millis));
        multipool::task::yield_now().await;
        value
    })
}

/// A task that spawns `children` (from its worker: placed by the pool's
/// policy; some sleep, some yield, one is pinned to the permanent worker)
/// and a local task, awaits them all and returns the sum of their values.
fn parent(base: u64, children: u64) -> BoxedTask {
    Box::pin(async move {
        let handles: Vec<_> = (0..children)
            .map(|c| {
                let value = base + c;
                let spawn = multipool::spawn(async move {
                    if c % 2 == 0 {
                        multipool::time::sleep(Duration::from_micros(50 * c)).await;
                    } else {
                        multipool::task::yield_now().await;
                    }
                    value
                });
                if c == 0 {
                    spawn.worker(0).start()
                } else {
                    spawn.priority(Priority::Low).start()
                }
            })
            .collect();
        // A local task keeps this worker from retiring until it ends.
        let local = multipool::spawn_local(async move {
            let hops = Rc::new(Cell::new(0u64)); // !Send across the await
            multipool::time::sleep(Duration::from_micros(300)).await;
            hops.set(hops.get() + 1);
            hops.get()
        });
        let mut sum = local.await.expect("the local child completes");
        for handle in handles {
            sum += handle.await.expect("a child completes");
        }
        sum
    })
}

/// The value `parent(base, children)` returns.
fn parent_value(base: u64, children: u64) -> u64 {
    1 + (0..children).map(|c| base + c).sum::<u64>()
}

/// Spawns one burst of mixed tasks from this (foreign) thread.
fn burst(handle: &Handle, burst: u64) -> Vec<Expected> {
    let mut rng = Rng::new(burst);
    let mut tasks = Vec::new();
    let base = burst * 1_000_000;
    for i in 0..40 + rng.below(40) {
        let value = base + i * 1_000;
        let (what, future, expected): (&str, BoxedTask, u64) = match rng.below(10) {
            0 => ("blocker", blocker(value, 2 + rng.below(3)), value),
            1..=3 => ("sleeper", sleeper(value, rng.below(2_000)), value),
            // Outlives the rest of the burst, on some worker's wheel.
            4 => (
                "long sleeper",
                sleeper(value, 3_000 + rng.below(5_000)),
                value,
            ),
            5 | 6 => {
                let children = 1 + rng.below(6);
                (
                    "parent",
                    parent(value, children),
                    parent_value(value, children),
                )
            }
            7 => (
                "yielder",
                Box::pin(async move {
                    for _ in 0..3 {
                        multipool::task::yield_now().await;
                    }
                    value
                }),
                value,
            ),
            _ => ("ready", Box::pin(async move { value }), value),
        };
        let spawn = handle.spawn(future);
        let join = if rng.below(8) == 0 {
            spawn.worker(0).start()
        } else {
            spawn.start()
        };
        tasks.push(Expected {
            what,
            value: expected,
            handle: join,
        });
    }
    tasks
}

/// Awaits every task and checks its value.
fn check_all(tasks: Vec<Expected>, context: &str) {
    for task in tasks {
        let got = multipool::block_on(task.handle);
        match got {
            Ok(value) => assert_eq!(
                value, task.value,
                "{context}: a {} returned {value}, not {}",
                task.what, task.value
            ),
            Err(error) => panic!("{context}: a {} failed: {error}", task.what),
        }
    }
}

/// Spawns `count` small tasks from another thread, `gap_micros` apart (the
/// load shape: spawns landing while workers park and retire).
fn trickle(handle: Handle, seed: u64, count: u64) -> thread::JoinHandle<Vec<Expected>> {
    thread::spawn(move || {
        let mut rng = Rng::new(seed);
        (0..count)
            .map(|i| {
                thread::sleep(Duration::from_micros(rng.below(1_500)));
                let value = seed.wrapping_mul(31) % 1_000_000 + i;
                let future: BoxedTask = if i % 2 == 0 {
                    sleeper(value, rng.below(1_000))
                } else {
                    Box::pin(async move { value })
                };
                Expected {
                    what: "trickled task",
                    value,
                    handle: handle.spawn(future).start(),
                }
            })
            .collect()
    })
}

/// The whole churn under one placement policy.
fn churn(placement: Placement) {
    let rt = Runtime::builder()
        .min_workers(1)
        .max_workers(4)
        .idle_timeout(Duration::from_millis(1))
        .placement(placement)
        .build()
        .unwrap();
    let handle = rt.handle();
    let mut full_retirements = 0;
    // The largest pool seen after a burst (for the report).
    let mut most_workers = 1;
    for k in 0..BURSTS {
        let context = format!("{placement:?}, burst {k}");
        let tasks = burst(&handle, k);
        let trickled = (k % 3 == 1).then(|| trickle(handle.clone(), k ^ 0xC0FFEE, 6));
        check_all(tasks, &context);
        most_workers = most_workers.max(handle.metrics().num_workers());
        if let Some(trickled) = trickled {
            check_all(trickled.join().expect("the trickle thread"), &context);
        }
        match k % 3 {
            0 => {
                // Back to the permanent worker: retirement happened.
                let retired_before = handle.metrics().workers_retired();
                assert!(
                    wait_until(WAIT_LIMIT, || handle.metrics().num_workers() == 1),
                    "{context}: still {} workers after {WAIT_LIMIT:?}",
                    handle.metrics().num_workers()
                );
                // At rest the counters agree with the gauge (each moves
                // before `num_workers` does, so wait for them to settle).
                // Retired first: it never exceeds a later read of started.
                assert!(
                    wait_until(WAIT_LIMIT, || {
                        let retired = handle.metrics().workers_retired();
                        handle.metrics().workers_started() - retired
                            == handle.metrics().num_workers()
                    }),
                    "{context}: started {} - retired {} != {} workers",
                    handle.metrics().workers_started(),
                    handle.metrics().workers_retired(),
                    handle.metrics().num_workers()
                );
                if handle.metrics().workers_retired() > retired_before {
                    full_retirements += 1;
                }
            }
            1 => {
                // Load shape only: the next burst lands while workers may
                // be retiring.
                thread::sleep(Duration::from_micros(Rng::new(k).below(3_000)));
            }
            _ => {} // the next burst at once
        }
    }
    assert!(
        handle.metrics().workers_retired() > 0,
        "{placement:?}: no worker ever retired (started {})",
        handle.metrics().workers_started()
    );
    assert!(
        full_retirements > 0,
        "{placement:?}: the pool never shrank back after a burst"
    );
    // Every task has completed, and a task's future (with its timers) is
    // dropped before its handle resolves: both gauges are 0 now, not later.
    let timers = handle.metrics().num_timers();
    if timers != 0 {
        let later = wait_until(WAIT_LIMIT, || handle.metrics().num_timers() == 0);
        panic!(
            "{placement:?}: num_timers() is {timers} after every task completed ({})",
            if later { "0 later" } else { "and stays so" }
        );
    }
    assert_eq!(
        handle.metrics().num_alive_tasks(),
        0,
        "{placement:?}: tasks alive"
    );
    eprintln!(
        "retire churn, {placement:?}: {BURSTS} bursts, workers started {}, retired {}, \
         most at once {}, workers retired during {full_retirements} of {} waits for 1 worker",
        handle.metrics().workers_started(),
        handle.metrics().workers_retired(),
        most_workers,
        BURSTS.div_ceil(3)
    );
    drop(rt);
    assert_eq!(handle.metrics().num_alive_tasks(), 0);
}

#[test]
fn retirement_churn_round_robin() {
    watchdog(120, || churn(Placement::RoundRobin));
}

#[test]
fn retirement_churn_least_loaded() {
    watchdog(120, || churn(Placement::LeastLoaded));
}
