//! The foreign threads of a round: spawners that spawn top-level tasks of
//! every kind, and the waker that completes oneshots and aborts handles.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use multipool::Handle;

use crate::bodies::{blocking_call, nest, task};
use crate::common::Rng;
use crate::config::RaceDraws;
use crate::tracking::{Kind, Round, Work};

/// Spawns `count` top-level tasks of every kind from a foreign thread.
pub(crate) fn spawner(round: Arc<Round>, handle: Handle, seed: u64, count: usize) {
    let mut rng = Rng::new(seed);
    for _ in 0..count {
        round.top_level.fetch_add(1, SeqCst);
        spawn_one(&round, &handle, &mut rng);
        if rng.one_in(4) {
            thread::yield_now();
        }
    }
}

fn spawn_one(round: &Arc<Round>, handle: &Handle, rng: &mut Rng) {
    match rng.below(18) {
        0..=3 => {
            let (entry, future) = task(round, Kind::Remote, rng.work(), false);
            let spawn = handle.spawn(future).priority(rng.priority());
            round.keep(&entry, spawn.start());
        }
        4 => {
            let (entry, future) = task(round, Kind::Pinned, rng.work(), false);
            let spawn = handle.spawn(future).worker(rng.usize_below(round.workers));
            round.keep(&entry, spawn.start());
        }
        5 => {
            let (entry, future) = task(round, Kind::Keyed, rng.work(), false);
            let spawn = handle.spawn(future).key(rng.next());
            round.keep(&entry, spawn.start());
        }
        6 | 7 => {
            let sleep = Work::Sleep(rng.below(2_000));
            let work = rng.pick(&[sleep, Work::Pending, Work::Foreign]);
            let (entry, future) = task(round, Kind::Timed, work, true);
            let timeout = Duration::from_micros(1 + rng.below(2_000));
            let spawn = handle.spawn(future).timeout(timeout);
            round.keep(&entry, spawn.start());
        }
        8 => {
            let (entry, call) = blocking_call(round, rng.fork());
            round.keep(&entry, handle.spawn_blocking(call));
        }
        9..=11 => {
            let (entry, future) = nest(round, rng.fork(), 1);
            let spawn = handle.spawn(future);
            let handle = match rng.below(3) {
                0 => spawn.worker(rng.usize_below(round.workers)).start(),
                _ => spawn.start(),
            };
            round.keep(&entry, handle);
        }
        12 => {
            let (entry, future) = task(round, Kind::Panicker, Work::Panic, false);
            round.keep(&entry, handle.spawn(future).start());
        }
        13 => {
            let (entry, future) = task(round, Kind::Refused, Work::Ready, false);
            let spawn = handle.spawn(future);
            let handle = match rng.below(3) {
                0 => spawn.worker(round.workers + rng.usize_below(3)).start(),
                1 => spawn.timeout(Duration::ZERO).start(),
                _ => spawn.pool("no-such-pool").start(),
            };
            round.keep(&entry, handle);
        }
        14 => {
            let (entry, future) = task(round, Kind::TryStart, rng.work(), false);
            match handle.spawn(future).try_start() {
                Ok(handle) => round.keep(&entry, handle),
                Err(error) => round.settle_refusal(&entry, error),
            }
        }
        15 => {
            let tasks: Vec<_> = (0..1 + rng.below(4))
                .map(|_| {
                    let work = rng.pick(&[Work::Ready, Work::Yield(1), Work::Foreign]);
                    task(round, Kind::Batch, work, false)
                })
                .collect();
            let (entries, futures): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
            let handles = handle.spawn_batch(futures);
            for (entry, handle) in entries.iter().zip(handles) {
                round.keep(entry, handle);
            }
        }
        _ => {
            let (entry, future) = task(round, Kind::Remote, Work::Foreign, false);
            round.keep(
                &entry,
                handle.spawn(future).priority(rng.priority()).start(),
            );
        }
    }
}

/// Completes (or drops) the oneshots tasks wait on and aborts handles,
/// `steps` times while the round runs; once `done` says the shutdown is
/// over, lets every remaining oneshot go.
pub(crate) fn waker(round: Arc<Round>, seed: u64, steps: usize, done: mpsc::Receiver<()>) {
    let mut rng = Rng::new(seed);
    for _ in 0..steps {
        match rng.below(4) {
            0 => {
                let sender = {
                    let mut senders = round.senders.lock().unwrap();
                    let n = senders.len();
                    (n > 0).then(|| senders.swap_remove(rng.usize_below(n)))
                };
                if let Some(sender) = sender {
                    if rng.one_in(4) {
                        drop(sender); // the receiver sees `Canceled`: also a wake-up
                    } else {
                        let _ = sender.send(());
                    }
                }
            }
            1 => {
                // Out of the list while it is aborted: `abort` may cancel
                // the task on this thread (after shutdown it does), and a
                // cancelled nest hands its awaited handle to the list.
                let picked = {
                    let mut handles = round.handles.lock().unwrap();
                    let n = handles.len();
                    (n > 0).then(|| handles.swap_remove(rng.usize_below(n)))
                };
                if let Some((entry, handle)) = picked {
                    if entry.abortable {
                        entry.abort_requested.store(true, SeqCst);
                        handle.abort();
                    }
                    round.keep(&entry, handle);
                }
            }
            _ => thread::yield_now(),
        }
    }
    let _ = done.recv();
    let senders = std::mem::take(&mut *round.senders.lock().unwrap());
    for sender in senders {
        if rng.one_in(2) {
            let _ = sender.send(());
        }
    }
}
