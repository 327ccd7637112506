//! Time machinery: the clock, the timer wheels and their driver, the timer
//! a `Sleep` (or a task's deadline) holds, and paused time. The public side
//! (`sleep`, `timeout`, `interval`, `pause`) is `crate::time`.
//!
//! Files: `clock` (real or paused time, deadlines in ticks), `wheel` (one
//! hierarchical timer wheel), `driver` (one wheel per worker, who fires
//! them), `entry` ([`Timer`]), `paused` (what keeps paused time from
//! moving, and the auto-advance).

pub(crate) mod clock;
pub(crate) mod driver;
mod entry;
pub(crate) mod paused;
pub(crate) mod wheel;

pub(crate) use clock::Clock;
pub(crate) use driver::Timers;
pub(crate) use entry::Timer;
#[cfg(feature = "test-util")]
pub(crate) use paused::PausedTime;

use std::time::{Duration, Instant};

/// A deadline that never comes, for durations that overflow `Instant`.
pub(crate) fn far_future(now: Instant) -> Instant {
    // Thirty years, like tokio: far enough, and representable everywhere.
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}
