//! [`timeout`]: bound the time a future may take.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::sleep::{sleep, sleep_until, Sleep};
use crate::runtime::coop;

/// Runs `future`, giving up once `duration` has passed.
///
/// The future is polled before the timer is checked, so a future that is
/// ready at its first poll wins even with a zero duration. On time-out the
/// future is dropped and [`Elapsed`] returned. A future that spends the
/// whole cooperative budget of its task (see
/// [`task::consume_budget`](crate::task::consume_budget)) does not keep
/// its time-out from firing: the timer is then checked without a budget.
///
/// ```
/// use std::time::Duration;
/// use multipool::time::{sleep, timeout};
///
/// multipool::block_on(async {
///     assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Ok(7));
///     let slow = timeout(Duration::from_millis(1), sleep(Duration::from_secs(60))).await;
///     assert!(slow.is_err());
/// });
/// ```
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    Timeout {
        future: future.into_future(),
        delay: sleep(duration),
    }
}

/// Like [`timeout`], with a deadline instead of a duration.
pub fn timeout_at<F: IntoFuture>(
    deadline: impl Into<Instant>,
    future: F,
) -> Timeout<F::IntoFuture> {
    Timeout {
        future: future.into_future(),
        delay: sleep_until(deadline),
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`] and [`timeout_at`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        delay: Sleep,
    }
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The wrapped future, mutably.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.future
    }

    /// The wrapped future, dropping the timer.
    pub fn into_inner(self) -> F {
        self.future
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.delay.deadline()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let had_budget = coop::has_budget_remaining();
        if let Poll::Ready(value) = this.future.poll(cx) {
            return Poll::Ready(Ok(value));
        }
        let delay = Pin::new(this.delay);
        // A future that spent the rest of the task's budget must not keep
        // its own time-out from firing (it would again at every poll): the
        // timer is then checked unconstrained, as in tokio.
        let elapsed = if had_budget && !coop::has_budget_remaining() {
            coop::unconstrained(|| delay.poll(cx))
        } else {
            delay.poll(cx)
        };
        match elapsed {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}
