//! The monitor thread of an elastic pool: adds workers when work waits;
//! and of any pool with `Builder::on_slow_poll`: reports slow polls.
//!
//! Runs only in pools whose `max_workers` exceeds `min_workers`, or that
//! report slow polls. It samples
//! each worker's activity counter (see `Slot::activity`): a worker whose
//! counter is odd and has not changed for [`BLOCKED_AFTER`] is stuck in one
//! poll: it is *blocked* (a blocking call inside a task, what Go's sysmon
//! and .NET's starvation detection look for). It samples every
//! [`BUSY_SAMPLE`] while no worker is idle, every [`IDLE_SAMPLE`] otherwise,
//! so an idle pool costs 100 wake-ups a second.
//!
//! # When a worker is added
//!
//! Work waits (some queue is non-empty) and no worker is idle (none parked,
//! none searching) at two samples in a row, and either
//! * some workers are blocked and fewer than `min_workers` are not
//!   (compensation, one for one, as ForkJoinPool keeps its parallelism), or
//! * fewer workers are running than the machine has cores, counting
//!   blocked ones out (CPU-bound work gets the cores it can use, no more:
//!   threads beyond the core count only add contention).
//!
//! # Why it does not thrash
//!
//! At most one worker is added per sample. Up to `min_workers + cores`
//! workers come without delay; each one beyond that waits one
//! [`BUSY_SAMPLE`] longer than the one before (at most [`MAX_DELAY`]), so a
//! flood of blocking tasks grows the pool quickly at first and ever more
//! slowly after (the shape of .NET's schedule, with a finer step: its 25 ms
//! step could not help against 10 ms blocks). Workers retire only after the
//! pool's idle timeout (see `worker`), seconds later: a pool does not shrink
//! and regrow within one burst.
//!
//! # When a thread cannot be started
//!
//! The operating system may refuse a new thread (a thread or memory
//! limit). Nothing waits on the worker that was not added: the pool goes
//! on with the workers it has (at least `min_workers`, all started at
//! build), and the monitor retries no sooner than [`MAX_DELAY`] later. The
//! first failure of a streak is printed to stderr (as the blocking pool and
//! the hooks report what they cannot hand back to anyone); the next one is
//! printed only after a worker was added again.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use super::Pool;
use crate::runtime::guard::guard_user;
use crate::runtime::task::{SlowPoll, SlowPollHook};
use crate::sync::{Arc, Ordering};

/// How long one poll must last for its worker to count as blocked. Far
/// above any healthy poll (tokio's guidance is 10 to 100 µs between
/// awaits), and short enough that compensation still helps against
/// blocking calls of 10 ms.
pub(crate) const BLOCKED_AFTER: Duration = Duration::from_millis(2);

/// Sample period while every worker is busy.
const BUSY_SAMPLE: Duration = Duration::from_millis(1);
/// Sample period while some worker is idle.
const IDLE_SAMPLE: Duration = Duration::from_millis(10);

/// Longest delay between two added workers.
const MAX_DELAY: Duration = Duration::from_millis(250);

/// The running monitor thread.
pub(crate) struct MonitorHandle {
    thread: thread::JoinHandle<()>,
    unparker: parking::Unparker,
}

impl MonitorHandle {
    /// Makes the monitor look at the pool now (it exits once closed).
    pub(crate) fn wake(&self) {
        self.unparker.unpark();
    }

    pub(crate) fn join(self) {
        self.unparker.unpark();
        let _ = self.thread.join();
    }
}

/// Whether `pool` reports slow polls (and so has a monitor, and its
/// workers publish what they poll).
pub(crate) fn reports_slow_polls(pool: &Pool) -> bool {
    pool.runtime
        .hooks
        .get()
        .is_some_and(|hooks| hooks.task.slow_poll.is_some())
}

/// Starts the monitor of `pool`.
pub(crate) fn start(pool: &Arc<Pool>) -> io::Result<MonitorHandle> {
    let (parker, unparker) = parking::pair();
    let pool = pool.clone();
    let thread = thread::Builder::new()
        .name(format!("{}-monitor", pool.thread_name))
        .spawn(move || {
            // The monitor only reads the pool and starts workers; a panic
            // here is a bug, reported, and sampling starts over rather than
            // leaving the pool unable to grow.
            while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&pool, &parker)))
                .is_err()
            {
                eprintln!(
                    "multipool: the monitor of pool `{}` panicked; it starts over",
                    pool.name
                );
            }
        })?;
    Ok(MonitorHandle { thread, unparker })
}

fn run(pool: &Arc<Pool>, parker: &parking::Parker) {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    // Per slot: the activity last seen, and since when.
    let mut seen = vec![(0u64, Instant::now()); pool.slots.len()];
    let mut starving_samples = 0u32;
    let mut next_add = Instant::now();
    let mut period = IDLE_SAMPLE;
    let mut failures = SpawnFailures::default();
    let slow_poll: Option<(Duration, SlowPollHook)> = pool
        .runtime
        .hooks
        .get()
        .and_then(|hooks| hooks.task.slow_poll.clone());
    // Sample at least twice per threshold (and at most every millisecond).
    let max_period = slow_poll.as_ref().map_or(IDLE_SAMPLE, |(threshold, _)| {
        (*threshold / 2).max(BUSY_SAMPLE)
    });
    // Per slot: the activity value already reported as a slow poll.
    let mut reported = vec![u64::MAX; pool.slots.len()];
    while !pool.is_closed() {
        parker.park_timeout(period.min(max_period));
        if pool.is_closed() {
            break;
        }
        crate::fault::hit("monitor");
        let now = Instant::now();
        let mut blocked = 0;
        for (index, (slot, (last, since))) in pool.slots.iter().zip(seen.iter_mut()).enumerate() {
            let activity = slot.activity.load(Ordering::Relaxed);
            if activity != *last {
                *last = activity;
                *since = now;
                continue;
            }
            if activity % 2 == 0 {
                continue;
            }
            let stuck_for = now.duration_since(*since);
            if stuck_for >= BLOCKED_AFTER {
                blocked += 1;
            }
            if let Some((threshold, hook)) = &slow_poll {
                if stuck_for >= *threshold && reported[index] != activity {
                    reported[index] = activity;
                    report_slow_poll(pool, index, stuck_for, hook);
                }
            }
        }
        pool.counters
            .blocked_workers
            .store(blocked, Ordering::Relaxed);

        let active = pool.idle.num_active();
        let nobody_idle = pool.idle.num_parked() == 0 && pool.idle.num_searching() == 0;
        period = if nobody_idle {
            BUSY_SAMPLE
        } else {
            IDLE_SAMPLE
        };
        if nobody_idle && pool.has_queued_work() {
            starving_samples += 1;
        } else {
            starving_samples = 0;
            continue;
        }
        let running = active.saturating_sub(blocked);
        let wanted = (blocked > 0 && running < pool.min_workers) || running < cores;
        if starving_samples < 2 || !wanted || active >= pool.slots.len() || now < next_add {
            continue;
        }
        match pool.add_worker(None) {
            Ok(true) => {
                failures.succeeded();
                starving_samples = 0;
                next_add = now + delay_after(active + 1, pool.min_workers, cores);
            }
            // No slot is free right now (one is being handed back).
            Ok(false) => {}
            Err(err) => {
                if let Some(report) = failures.failed(&pool.name, active, &err) {
                    eprintln!("{report}");
                }
                next_add = now + MAX_DELAY;
            }
        }
    }
}

/// Runs the slow-poll hook for the task worker `index` is stuck in.
fn report_slow_poll(pool: &Pool, index: usize, elapsed: Duration, hook: &SlowPollHook) {
    let Some((id, name, priority)) = pool.slots[index].current_poll.lock().clone() else {
        return;
    };
    let slow = SlowPoll {
        id,
        name,
        priority,
        pool: pool.name.clone(),
        worker: index,
        elapsed,
    };
    guard_user("the `Builder::on_slow_poll` hook", || {
        crate::fault::hit("hook");
        hook(&slow)
    });
}

/// Which failures to start a worker are reported: the first of each streak.
#[derive(Default)]
struct SpawnFailures {
    /// Whether the last attempt failed.
    failing: bool,
}

impl SpawnFailures {
    fn succeeded(&mut self) {
        self.failing = false;
    }

    /// The line to print for this failure, if it starts a streak.
    fn failed(&mut self, pool: &str, active: usize, err: &io::Error) -> Option<String> {
        if std::mem::replace(&mut self.failing, true) {
            return None;
        }
        Some(format!(
            "multipool: could not add a worker to pool `{pool}`, which goes on with {active} \
             (retrying every {} ms while work waits): {err}",
            MAX_DELAY.as_millis()
        ))
    }
}

/// How long to wait before adding another worker once `active` run.
fn delay_after(active: usize, min: usize, cores: usize) -> Duration {
    let free = min + cores;
    if active < free {
        return Duration::ZERO;
    }
    let steps = (active - free + 1) as u32;
    (BUSY_SAMPLE * steps).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_delay_schedule() {
        assert_eq!(delay_after(1, 1, 2), Duration::ZERO);
        assert_eq!(delay_after(2, 1, 2), Duration::ZERO);
        assert_eq!(delay_after(3, 1, 2), BUSY_SAMPLE);
        assert_eq!(delay_after(4, 1, 2), BUSY_SAMPLE * 2);
        assert_eq!(delay_after(5, 1, 2), BUSY_SAMPLE * 3);
        assert_eq!(delay_after(10_000, 1, 2), MAX_DELAY);
    }

    #[test]
    fn spawn_failures_are_reported_once_per_streak() {
        let err = io::Error::from(io::ErrorKind::OutOfMemory);
        let mut failures = SpawnFailures::default();
        let first = failures.failed("default", 3, &err).unwrap();
        assert!(
            first.starts_with(
                "multipool: could not add a worker to pool `default`, which goes on with 3"
            ),
            "{first}"
        );
        assert!(first.ends_with(&err.to_string()), "{first}");
        assert_eq!(failures.failed("default", 3, &err), None);
        assert_eq!(failures.failed("default", 3, &err), None);
        failures.succeeded();
        assert!(failures.failed("default", 4, &err).is_some());
    }
}
