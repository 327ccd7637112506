//! One round: build the runtime a seed describes, start the threads, shut
//! it down at the shutdown point, resolve every handle and check every
//! promise (conservation, drops, gauges, resolution).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use multipool::Runtime;

use crate::bodies::killer;
use crate::common::{wait_until, Rng};
use crate::config::{Config, RaceDraws, Shutdown};
use crate::threads::{spawner, waker};
use crate::tracking::{Counts, Round};
use crate::RESOLVE_LIMIT;

/// Polls `future` on this thread until it is ready or `deadline` passes.
/// (`multipool::block_on` with a bound, so that a handle that never
/// resolves is reported by name instead of hanging the round.)
fn resolve_by<F: Future + Unpin>(mut future: F, deadline: Instant) -> Option<F::Output> {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

/// What a round did, for the totals.
pub(crate) struct RoundReport {
    pub(crate) shutdown: Shutdown,
    pub(crate) counts: Counts,
}

/// Where a round is, so that a round the watchdog gives up on says where
/// it hung.
pub(crate) type Phase = Arc<Mutex<&'static str>>;

fn enter(phase: &Phase, name: &'static str) {
    *phase.lock().unwrap() = name;
}

/// Runs the round of `seed`; `Err` describes every broken promise.
pub(crate) fn run_round(seed: u64, phase: &Phase) -> Result<RoundReport, String> {
    enter(phase, "building the runtime");
    let config = Config::new(seed);
    let builder = Runtime::builder()
        .placement(config.placement)
        .max_blocking_threads(2);
    let builder = if config.elastic {
        builder
            .min_workers(config.workers)
            .max_workers(config.workers + 1)
            .idle_timeout(Duration::from_millis(1))
    } else {
        builder.workers(config.workers)
    };
    let rt = builder.build().map_err(|e| format!("build: {e}"))?;
    let handle = rt.handle();
    let round = Arc::new(Round::new(config.workers));
    let mut rng = Rng::new(seed ^ 0xA5A5_A5A5);

    // From inside: the runtime moves into one of its own tasks now, and is
    // shut down there when the test says so.
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let mut rt = Some(rt);
    if config.shutdown.is_inside() {
        let rt = rt.take().expect("not moved yet");
        let (entry, future) = killer(&round, rt, kill_rx, config.shutdown);
        let spawn = handle.spawn(future);
        let killer = if rng.one_in(2) {
            spawn.worker(rng.usize_below(config.workers)).start()
        } else {
            spawn.start()
        };
        round.keep(&entry, killer);
    } else {
        drop(kill_rx);
    }

    let spawners: Vec<_> = (0..config.spawners)
        .map(|_| {
            let (round, handle, seed) = (round.clone(), handle.clone(), rng.fork());
            let count = config.per_spawner;
            thread::spawn(move || spawner(round, handle, seed, count))
        })
        .collect();
    let (done_tx, done_rx) = mpsc::channel();
    let waker = {
        let (round, seed, steps) = (round.clone(), rng.fork(), config.waker_steps);
        thread::spawn(move || waker(round, seed, steps, done_rx))
    };

    // The shutdown point: a number of spawns begun, not a time.
    enter(phase, "waiting for the shutdown point");
    while round.top_level.load(SeqCst) < config.shutdown_after {
        thread::yield_now();
    }
    enter(phase, "shutting down");
    match config.shutdown {
        Shutdown::Drop => drop(rt.take()),
        Shutdown::Background => rt.take().expect("here").shutdown_background(),
        Shutdown::Timeout(limit) => {
            let _ = rt.take().expect("here").shutdown_timeout(limit);
        }
        _ => {
            let _ = kill_tx.send(());
        }
    }
    enter(phase, "joining the spawner threads");
    let mut failures = Vec::new();
    for spawner in spawners {
        if spawner.join().is_err() {
            failures.push("a spawner thread panicked".to_owned());
        }
    }
    enter(phase, "joining the waker thread");
    let _ = done_tx.send(());
    if waker.join().is_err() {
        failures.push("the waker thread panicked".to_owned());
    }

    // Every handle resolves; handles forwarded by cancelled nests may still
    // arrive while shutdown goes on, so loop until every attempt settled.
    enter(phase, "resolving the handles");
    let deadline = Instant::now() + RESOLVE_LIMIT;
    let mut stuck = Vec::new();
    loop {
        let batch = std::mem::take(&mut *round.handles.lock().unwrap());
        if batch.is_empty() {
            if round.settled.load(SeqCst) + stuck.len() >= round.attempts() {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_micros(100));
            continue;
        }
        for (entry, handle) in batch {
            match resolve_by(handle, deadline) {
                Some(result) => round.settle(&entry, result),
                None => stuck.push(entry),
            }
        }
    }
    for entry in &stuck {
        failures.push(format!("{entry:?}: its handle never resolved"));
    }
    enter(phase, "checking");
    let attempts = round.attempts();
    let counts = round.counts.lock().unwrap().clone();
    if counts.total() + stuck.len() != attempts {
        let unsettled: Vec<_> = round
            .entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.outcomes.load(SeqCst) == 0)
            .map(|e| format!("{e:?}"))
            .collect();
        failures.push(format!(
            "conservation: {attempts} spawn attempts, {} outcomes {:?}; unsettled: {unsettled:?}",
            counts.total(),
            counts.0
        ));
    }

    // Gauges: a task is counted out before its handle resolves, so both
    // are 0 once every handle has (and a stranded task shows up here too).
    let alive = handle.metrics().num_alive_tasks();
    if alive != 0 {
        let later = stuck.is_empty()
            && wait_until(Duration::from_secs(1), || {
                handle.metrics().num_alive_tasks() == 0
            });
        failures.push(format!(
            "num_alive_tasks() is {alive} after the handles resolved ({} a second later)",
            if later { "0" } else { "still not 0" }
        ));
    }
    if stuck.is_empty() {
        let timers = handle.metrics().num_timers();
        if timers != 0 {
            failures.push(format!("num_timers() is {timers} after shutdown"));
        }
        // Drops: exactly once, and local futures on their home thread.
        for entry in round.entries.lock().unwrap().iter() {
            let drops = entry.drops.load(SeqCst);
            if drops != 1 {
                failures.push(format!("{entry:?}: dropped {drops} times"));
            }
            if let Some(panic) = entry.drop_enter_failed.lock().unwrap().as_ref() {
                failures.push(format!(
                    "{entry:?}: `Handle::enter` in its destructor panicked: {panic}"
                ));
            }
            if let Some(home) = entry.home {
                if let Some(&first) = entry.first_poll_thread.get() {
                    if first != home {
                        failures.push(format!("{entry:?}: first polled off its home thread"));
                    }
                }
                let dropped_on = *entry.drop_thread.lock().unwrap();
                if dropped_on.is_some_and(|thread| thread != home) {
                    failures.push(format!("{entry:?}: dropped off its home thread"));
                }
            }
        }
    }
    if !handle.is_shutdown() {
        failures.push("the handle does not report the shutdown".to_owned());
    }
    failures.extend(round.failures.lock().unwrap().drain(..));
    // Let whatever is left of the round go (senders of cancelled tasks).
    drop(std::mem::take(&mut *round.senders.lock().unwrap()));
    if failures.is_empty() {
        Ok(RoundReport {
            shutdown: config.shutdown,
            counts,
        })
    } else {
        failures.truncate(12);
        Err(format!("{config:?}\n  {}", failures.join("\n  ")))
    }
}
