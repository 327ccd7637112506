//! Time: sleeping, time-outs and intervals, on a hierarchical timer wheel.
//!
//! Names and semantics follow `tokio::time`: [`sleep()`], [`sleep_until`],
//! [`timeout()`], [`timeout_at`], [`interval()`], [`interval_at`]. Differences
//! worth knowing:
//!
//! * deadlines are exact to the microsecond; tokio rounds up to the next
//!   millisecond, so a 1 ms sleep here wakes about 1 ms after it started, not
//!   up to 2 ms;
//! * [`Sleep`] is `Unpin`;
//! * a timer that completes spends one unit of multipool's cooperative
//!   budget (see [`task::consume_budget`](crate::task::consume_budget)),
//!   not tokio's;
//! * deadlines are `std::time::Instant`s or [`Instant`]s (every function
//!   taking one takes either); [`Instant::now`] and [`now`] read the
//!   runtime's clock, which differs from `std::time::Instant::now()` only
//!   while time is paused (or after it was).
//!
//! Timers work in tasks on any runtime, in `multipool::block_on` (they then
//! use the global runtime's timers) and with paused time in tests (feature
//! `test-util`: `time::pause`, `time::advance`, `time::resume`, and
//! `#[multipool::test(start_paused = true)]`).
//!
//! A task can also be given a deadline when spawned, with
//! [`Spawn::timeout`](crate::Spawn::timeout).

mod instant;
mod interval;
mod sleep;
mod timeout;

pub use instant::Instant;
pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use std::time::Duration;
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};

/// Errors of the time functions, at tokio's path (`time::error::Elapsed`).
pub mod error {
    pub use super::timeout::Elapsed;
}

/// The current time of the current runtime's clock (the global runtime's
/// outside any runtime). Equal to `Instant::now()` unless time is paused.
///
/// ```
/// let before = std::time::Instant::now();
/// assert!(multipool::time::now() >= before);
/// ```
pub fn now() -> std::time::Instant {
    // Without `test-util` no clock can be paused, and every runtime's clock
    // is `Instant::now()`: no need to find the current runtime (or start
    // the global one). `sleep` and `timeout` call this for every timer.
    #[cfg(feature = "test-util")]
    return crate::runtime::with_current_pool(|pool| pool.timers.clock.now());
    #[cfg(not(feature = "test-util"))]
    std::time::Instant::now()
}

#[cfg(feature = "test-util")]
mod test_util {
    use std::time::Duration;

    use crate::runtime::Handle;

    /// Pauses the current runtime's clock.
    ///
    /// While paused, time moves only through [`advance`], or by itself when
    /// the runtime is idle (every worker parked, no `block_on` polling and
    /// no [`spawn_blocking`](crate::task::spawn_blocking) call queued or
    /// running) while something waits on it (a `Runtime::block_on` or
    /// `Handle::block_on` asleep until its future is woken, as tokio's
    /// clock moves only while `block_on` drives its runtime): it then
    /// jumps to the next timer's deadline. So `sleep(1 hour)` in a
    /// paused test completes at once, yet in order with every other timer.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime, or if time is already paused (as tokio's
    /// does).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     multipool::time::pause();
    ///     let start = multipool::time::now();
    ///     multipool::time::sleep(Duration::from_secs(3600)).await; // instant
    ///     assert_eq!(multipool::time::now() - start, Duration::from_secs(3600));
    /// });
    /// ```
    #[track_caller]
    pub fn pause() {
        let handle = Handle::current();
        let runtime = handle.shared();
        assert!(
            runtime.clock.pause(),
            "`time::pause` called while time is already paused"
        );
        // Parked workers re-park without a deadline; the last to do so
        // advances the clock if the runtime is idle.
        runtime.unpark_all();
    }

    /// Resumes real time on the current runtime's clock. Paused time already
    /// added stays added.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime, or if time is not paused (as tokio's
    /// does).
    #[track_caller]
    pub fn resume() {
        let handle = Handle::current();
        let runtime = handle.shared();
        assert!(
            runtime.clock.resume(),
            "`time::resume` called while time is not paused"
        );
        // Workers parked without a deadline re-park until their next timer.
        runtime.unpark_all();
    }

    /// Moves paused time forward by `duration`, firing every timer that
    /// becomes due, then yields so the woken tasks can run. As in tokio,
    /// this is an `async fn`: time moves when the future is first polled,
    /// not when it is created.
    ///
    /// The clock's range ends about 36 000 years after the runtime started.
    /// A `duration` that reaches past that end (`Duration::MAX`, say) moves
    /// time to the end and no further: every timer fires, including those
    /// of `sleep(Duration::MAX)` (thirty years), and from then on every new
    /// timer is due at once, as time cannot move past the end. (tokio
    /// panics on such a duration instead.)
    ///
    /// # Panics
    ///
    /// The first poll panics outside a runtime or if time is not paused.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).start_paused(true).build().unwrap();
    /// rt.block_on(async {
    ///     let timer = multipool::spawn(multipool::time::sleep(Duration::from_secs(10))).start();
    ///     multipool::time::advance(Duration::from_secs(10)).await;
    ///     timer.await.unwrap();
    /// });
    /// ```
    pub async fn advance(duration: Duration) {
        {
            let handle = Handle::current();
            let runtime = handle.shared();
            assert!(
                runtime.clock.advance(duration),
                "`time::advance` needs paused time: call `time::pause()` first"
            );
            runtime.fire_all_due();
        }
        crate::task::yield_now().await;
    }
}

#[cfg(feature = "test-util")]
pub use test_util::{advance, pause, resume};
