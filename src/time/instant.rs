//! [`Instant`]: a point in time on the runtime's clock.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A measurement of the runtime's clock, as `tokio::time::Instant` is of
/// tokio's: [`Instant::now`] reads the current runtime's clock (the global
/// runtime's outside any), so it moves with paused time (`test-util`)
/// where `std::time::Instant::now()` would silently read real time.
///
/// It converts to and from `std::time::Instant` (the clocks differ only
/// while time is paused or after it was), and every function of
/// `multipool::time` that takes a deadline takes either.
///
/// ```
/// # #[cfg(feature = "test-util")] { // paused time: `start_paused`
/// use std::time::Duration;
/// use multipool::time::Instant;
///
/// let rt = multipool::Runtime::builder().workers(1).start_paused(true).build().unwrap();
/// rt.block_on(async {
///     let start = Instant::now();
///     multipool::time::sleep(Duration::from_secs(3600)).await; // paused: instant
///     assert_eq!(start.elapsed(), Duration::from_secs(3600));
/// });
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    std: std::time::Instant,
}

impl Instant {
    /// The current time of the current runtime's clock; see
    /// [`time::now`](super::now).
    pub fn now() -> Instant {
        Instant { std: super::now() }
    }

    /// The `Instant` of a standard library instant.
    pub fn from_std(std: std::time::Instant) -> Instant {
        Instant { std }
    }

    /// This instant as a standard library instant.
    pub fn into_std(self) -> std::time::Instant {
        self.std
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.std.checked_duration_since(earlier.std)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// Time since this instant on the runtime's clock; zero if it is in
    /// the future.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(*self)
    }

    /// `self + duration`, or `None` if that is not representable.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_add(duration).map(Instant::from_std)
    }

    /// `self - duration`, or `None` if that is not representable.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_sub(duration).map(Instant::from_std)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(std: std::time::Instant) -> Instant {
        Instant::from_std(std)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(instant: Instant) -> std::time::Instant {
        instant.into_std()
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// On overflow, as `std::time::Instant` does; see
    /// [`checked_add`](Instant::checked_add).
    fn add(self, duration: Duration) -> Instant {
        Instant::from_std(self.std + duration)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// On overflow, as `std::time::Instant` does; see
    /// [`checked_sub`](Instant::checked_sub).
    fn sub(self, duration: Duration) -> Instant {
        Instant::from_std(self.std - duration)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, duration: Duration) {
        *self = *self - duration;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Time from `earlier` to `self`; zero if `earlier` is later (as
    /// `std::time::Instant` does since Rust 1.60).
    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.std.fmt(f)
    }
}
