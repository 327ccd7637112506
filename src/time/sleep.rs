//! [`Sleep`]: a future that completes at a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::{coop, far_future, Timer};

/// Waits until `duration` has passed.
///
/// Equivalent to `sleep_until(multipool::time::now() + duration)`. The
/// deadline is exact to the microsecond (not rounded up to a millisecond).
/// A duration that overflows `Instant` (such as `Duration::MAX`) sleeps for
/// thirty years, as in tokio: for ever in practice, without overflow.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// multipool::block_on(async {
///     let start = Instant::now();
///     multipool::time::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let now = super::now();
    Sleep::new(now.checked_add(duration).unwrap_or_else(|| far_future(now)))
}

/// Waits until `deadline`. A deadline in the past completes at the first poll.
///
/// ```
/// use std::time::{Duration, Instant};
///
/// multipool::block_on(async {
///     let deadline = Instant::now() + Duration::from_millis(2);
///     multipool::time::sleep_until(deadline).await;
///     assert!(Instant::now() >= deadline);
/// });
/// ```
pub fn sleep_until(deadline: impl Into<Instant>) -> Sleep {
    Sleep::new(deadline.into())
}

/// A future that completes at its deadline; see [`sleep`].
///
/// The timer is registered with the runtime at the first poll (a `Sleep`
/// that is never polled costs nothing) and removed when the `Sleep` is
/// dropped. It is registered with the runtime entered where it is first
/// polled, or the global runtime outside any. `Sleep` is `Unpin`.
///
/// Inside a task, a `Sleep` that completes spends one unit of the task's
/// cooperative budget; with the budget spent it yields instead, even when
/// its deadline has passed (see
/// [`task::consume_budget`](crate::task::consume_budget)).
///
/// # Panics
///
/// Polling a `Sleep` whose runtime has shut down panics: nothing will ever
/// fire it. (Tasks of that runtime are cancelled at shutdown and never see
/// this; only futures polled elsewhere, such as in a `block_on` on another
/// thread, can.)
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    timer: Timer,
}

impl Sleep {
    pub(crate) fn new(deadline: Instant) -> Self {
        Sleep {
            timer: Timer::new(deadline),
        }
    }

    /// The instant at which this future completes.
    pub fn deadline(&self) -> Instant {
        self.timer.deadline()
    }

    /// Whether the deadline has been reached (as observed by the timer).
    pub fn is_elapsed(&self) -> bool {
        self.timer.is_elapsed()
    }

    /// Moves the deadline, earlier or later, re-arming the timer in place
    /// (also after it completed). The task that last polled this `Sleep` is
    /// the one woken at the new deadline.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// multipool::block_on(async {
    ///     let mut sleep = multipool::time::sleep(Duration::from_secs(3600));
    ///     std::pin::Pin::new(&mut sleep).reset(Instant::now() + Duration::from_millis(1));
    ///     sleep.await; // an hour became a millisecond
    /// });
    /// ```
    pub fn reset(self: Pin<&mut Self>, deadline: impl Into<Instant>) {
        self.get_mut().timer.reset(deadline.into());
    }

    /// Moves the deadline and takes the timer out of its wheel: nothing is
    /// woken until the `Sleep` is polled again (as `Interval` wants after a
    /// tick).
    pub(crate) fn reset_unarmed(&mut self, deadline: Instant) {
        self.timer.reset_unarmed(deadline);
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A leaf of the cooperative budget (see `task::consume_budget`).
        std::task::ready!(coop::poll_proceed(cx));
        let fired = self.get_mut().timer.poll_fired(cx);
        if fired.is_pending() {
            coop::refund();
        }
        fired
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.timer.deadline())
            .field("registered", &self.timer.is_registered())
            .finish()
    }
}
