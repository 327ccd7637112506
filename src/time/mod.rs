//! Time: sleeping, time-outs and intervals, on a hierarchical timer wheel.
//!
//! Names and semantics follow `tokio::time`: [`sleep`], [`sleep_until`],
//! [`timeout`], [`timeout_at`], [`interval`], [`interval_at`]. Differences
//! worth knowing:
//!
//! * deadlines are exact to the microsecond; tokio rounds up to the next
//!   millisecond, so a 1 ms sleep here wakes about 1 ms after it started, not
//!   up to 2 ms;
//! * [`Sleep`] is `Unpin`;
//! * deadlines are `std::time::Instant`s; [`now`] reads the runtime's clock
//!   (which differs from `Instant::now()` only while paused).
//!
//! Timers work in tasks on any runtime, in `multipool::block_on` (they then
//! use the global runtime's timers) and with paused time in tests (feature
//! `test-util`: `time::pause`, `time::advance`, `time::resume`, and
//! `#[multipool::test(start_paused = true)]`).
//!
//! A task can also be given a deadline when spawned, with
//! [`Spawn::timeout`](crate::Spawn::timeout).

mod interval;
mod sleep;
mod timeout;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};

use std::time::Instant;

use crate::runtime::with_current_pool;

/// The current time of the current runtime's clock (the global runtime's
/// outside any runtime). Equal to `Instant::now()` unless time is paused.
///
/// ```
/// let before = std::time::Instant::now();
/// assert!(multipool::time::now() >= before);
/// ```
pub fn now() -> Instant {
    with_current_pool(|pool| pool.timers.clock.now())
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
    /// running):
    /// it then jumps to the next timer's deadline. So `sleep(1 hour)` in a
    /// paused test completes at once, yet in order with every other timer.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime.
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
        runtime.clock.pause();
        // Parked workers re-park without a deadline; the last to do so
        // advances the clock if the runtime is idle.
        runtime.unpark_all();
    }

    /// Resumes real time on the current runtime's clock. Paused time already
    /// added stays added.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime.
    #[track_caller]
    pub fn resume() {
        let handle = Handle::current();
        let runtime = handle.shared();
        runtime.clock.resume();
        // Workers parked without a deadline re-park until their next timer.
        runtime.unpark_all();
    }

    /// Moves paused time forward by `duration`, firing every timer that
    /// becomes due, then yields so the woken tasks can run.
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
    /// Panics outside a runtime or if time is not paused.
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
    #[track_caller]
    pub fn advance(duration: Duration) -> impl std::future::Future<Output = ()> {
        let handle = Handle::current();
        let runtime = handle.shared();
        assert!(
            runtime.clock.advance(duration),
            "`time::advance` needs paused time: call `time::pause()` first"
        );
        runtime.fire_all_due();
        crate::task::yield_now()
    }
}

#[cfg(feature = "test-util")]
pub use test_util::{advance, pause, resume};
