//! Helpers shared by the `time_*` tests (and the paused-time half of the
//! bad-input tests).
//!
//! Paused-time bodies mostly run as a task of the runtime, awaited by
//! `rt.block_on` ([`run_in_task`]).

use std::future::Future;
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
/// thread waits in `rt.block_on` on the task's handle: a runtime nobody
/// waits on never moves paused time by itself (tokio's rule), and the
/// handle's poll is only the wait, so the workers do the work.
pub fn run_in_task<T, F>(rt: &Runtime, future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    // `Err`: the task panicked; its handle says how.
    rt.block_on(rt.spawn(future)).unwrap()
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
