//! [`Interval`]: ticks at a fixed period.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::sleep::{sleep_until, Sleep};

/// Ticks every `period`, the first tick completing at once.
///
/// # Panics
///
/// Panics if `period` is zero: such an interval would never wait.
///
/// ```
/// use std::time::Duration;
///
/// multipool::block_on(async {
///     let mut ticks = multipool::time::interval(Duration::from_millis(2));
///     let first = ticks.tick().await; // at once
///     let second = ticks.tick().await;
///     assert_eq!(second - first, Duration::from_millis(2));
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    interval_at(super::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
///
/// Panics if `period` is zero.
#[track_caller]
pub fn interval_at(start: impl Into<Instant>, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "`interval` period must be greater than zero"
    );
    Interval {
        delay: sleep_until(start.into()),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when ticks were missed (the task came back
/// later than a whole period after a tick was due).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks as fast as possible, then return to the
    /// original schedule (the default, as in tokio).
    #[default]
    Burst,
    /// Start a new schedule: the next tick is one period after now.
    Delay,
    /// Drop the missed ticks: the next tick is the next one of the original
    /// schedule that is still in the future.
    Skip,
}

impl MissedTickBehavior {
    /// The deadline after a tick that was due at `due` and observed at `now`.
    fn next(self, due: Instant, now: Instant, period: Duration) -> Instant {
        match self {
            MissedTickBehavior::Burst => add(due, period),
            MissedTickBehavior::Delay => add(now, period),
            MissedTickBehavior::Skip => {
                let behind = now.saturating_duration_since(due).as_nanos();
                let period_nanos = period.as_nanos();
                let periods = behind / period_nanos + 1;
                let offset = period_nanos * periods;
                add(
                    due,
                    Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX)),
                )
            }
        }
    }
}

/// `instant + duration`, or a deadline that never comes if that overflows.
fn add(instant: Instant, duration: Duration) -> Instant {
    instant
        .checked_add(duration)
        .unwrap_or_else(|| crate::runtime::far_future(instant))
}

/// A stream of ticks; see [`interval`].
#[derive(Debug)]
pub struct Interval {
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick; returns the instant it was due.
    ///
    /// A tick that is ready spends a unit of the task's cooperative budget
    /// (see [`task::consume_budget`](crate::task::consume_budget)), so a
    /// loop bursting through missed ticks yields every 128 of them.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; see [`tick`](Self::tick).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.delay).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let due = self.delay.deadline();
        let now = super::now();
        let next = if now >= add(due, self.period) {
            self.missed_tick_behavior.next(due, now, self.period)
        } else {
            add(due, self.period)
        };
        // Out of the wheel until the next poll: a timer left armed would
        // wake this task once per tick whether it awaits the next tick or
        // not (tokio's `Interval` does not either).
        self.delay.reset_unarmed(next);
        Poll::Ready(due)
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.reset_after(self.period);
    }

    /// Restarts the schedule with a tick due now.
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] { // paused time: `start_paused`
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).start_paused(true).build().unwrap();
    /// rt.block_on(async {
    ///     let start = multipool::time::Instant::now();
    ///     let mut ticks = multipool::time::interval(Duration::from_secs(10));
    ///     ticks.tick().await; // the first tick is immediate
    ///     ticks.reset_immediately();
    ///     ticks.tick().await; // and so is this one
    ///     assert_eq!(start.elapsed(), Duration::ZERO);
    /// });
    /// # }
    /// ```
    pub fn reset_immediately(&mut self) {
        self.reset_at(super::now());
    }

    /// Restarts the schedule with the next tick `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        self.reset_at(add(super::now(), after));
    }

    /// Restarts the schedule with the next tick at `deadline`.
    pub fn reset_at(&mut self, deadline: impl Into<Instant>) {
        Pin::new(&mut self.delay).reset(deadline.into());
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The missed-tick policy.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets the missed-tick policy.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}
