//! Helpers shared by the `time_*` tests (and the paused-time half of the
//! bad-input tests).
//!
//! Paused-time bodies mostly run as a task of the runtime, awaited from a
//! thread that does not `block_on` the runtime ([`run_in_task`]).

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use multipool::Runtime;

#[cfg(feature = "test-util")]
use super::watchdog;

/// A runtime of `workers` workers whose clock starts paused.
#[cfg(feature = "test-util")]
pub fn paused_runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .start_paused(true)
        .build()
        .unwrap()
}

/// Runs `future` as a task of `rt` and returns its output. The calling
/// thread waits on a channel, not in `rt.block_on`, so that only the workers
/// move paused time.
pub fn run_in_task<T, F>(rt: &Runtime, future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (done_tx, done_rx) = mpsc::channel();
    let task = rt
        .spawn(async move {
            let output = future.await;
            let _ = done_tx.send(());
            output
        })
        .start();
    // `Err`: the task panicked; its handle says how.
    let _ = done_rx.recv();
    multipool::block_on(task).unwrap()
}

/// Runs `future` as a task of a fresh runtime whose clock starts paused,
/// under a watchdog, and returns its output.
#[cfg(feature = "test-util")]
pub fn run_paused<T, F>(workers: usize, future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    watchdog(60, move || run_in_task(&paused_runtime(workers), future))
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// xorshift64: deterministic "random" durations. (Not [`super::Rng`]:
/// these tests keep the draws they were written with.)
pub struct Xorshift64(pub u64);

impl Xorshift64 {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
