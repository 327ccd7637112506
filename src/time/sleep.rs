//! [`Sleep`]: a future that completes at a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::driver::{Registered, TimerKey, TimerState};
use crate::pool::{worker, Pool};
use crate::runtime::context;
use crate::sync::Arc;

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
    Sleep::new(
        now.checked_add(duration)
            .unwrap_or_else(|| super::far_future(now)),
    )
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
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(deadline)
}

/// A future that completes at its deadline; see [`sleep`].
///
/// The timer is registered with the runtime at the first poll (a `Sleep`
/// that is never polled costs nothing) and removed when the `Sleep` is
/// dropped. It is registered with the runtime entered where it is first
/// polled, or the global runtime outside any. `Sleep` is `Unpin`.
///
/// # Panics
///
/// Polling a `Sleep` whose runtime has shut down panics: nothing will ever
/// fire it. (Tasks of that runtime are cancelled at shutdown and never see
/// this; only futures polled elsewhere, such as in a `block_on` on another
/// thread, can.)
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not in any wheel yet.
    Unregistered,
    /// In a wheel (possibly fired already).
    Registered { pool: Arc<Pool>, timer: TimerKey },
    /// Completed without ever being registered.
    Elapsed,
}

impl Sleep {
    pub(crate) fn new(deadline: Instant) -> Self {
        Sleep {
            deadline,
            state: State::Unregistered,
        }
    }

    /// The instant at which this future completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has been reached (as observed by the timer).
    pub fn is_elapsed(&self) -> bool {
        match &self.state {
            State::Unregistered => false,
            State::Registered { pool, timer } => pool.timers.is_fired(*timer),
            State::Elapsed => true,
        }
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
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.deadline = deadline;
        match &this.state {
            State::Registered { pool, timer } => {
                let ticks = pool.timers.clock.deadline_ticks(deadline);
                // A deadline already passed leaves the timer fired, which
                // the next poll reports.
                pool.timers.reset(*timer, ticks);
            }
            State::Elapsed => this.state = State::Unregistered,
            State::Unregistered => {}
        }
    }

    /// Registers the timer with the current runtime, or completes.
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let state = context::with_current_pool(|pool| {
            if pool.is_closed() {
                return dead_runtime(pool);
            }
            let timers = &pool.timers;
            let ticks = timers.clock.deadline_ticks(self.deadline);
            if ticks <= timers.clock.now_ticks() {
                return State::Elapsed;
            }
            let wheel = timers.wheel_for(worker::index_in(pool));
            match timers.insert(wheel, ticks, cx.waker().clone()) {
                Registered::Armed(timer) => State::Registered {
                    pool: pool.clone(),
                    timer,
                },
                Registered::Expired => State::Elapsed,
                Registered::ShutDown => dead_runtime(pool),
            }
        });
        self.state = state;
        match self.state {
            State::Elapsed => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// What a timer of a runtime that has shut down does. Polled by one of that
/// runtime's workers (a task polled in the moment between shutdown starting
/// and its worker stopping), it stays pending: the task is about to be
/// cancelled. Anywhere else nothing will ever fire it, so waiting would hang
/// and completing would lie about the time: it panics.
#[track_caller]
fn dead_runtime(pool: &Pool) -> State {
    assert!(
        worker::index_in(pool).is_some(),
        "a multipool timer was polled after its runtime shut down; \
         timers only work while their runtime is alive"
    );
    State::Unregistered
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &this.state {
            State::Elapsed => Poll::Ready(()),
            State::Registered { pool, timer } => match pool.timers.poll(*timer, cx.waker()) {
                TimerState::Fired => Poll::Ready(()),
                TimerState::Pending => Poll::Pending,
                TimerState::ShutDown => match dead_runtime(pool) {
                    State::Elapsed => Poll::Ready(()),
                    _ => Poll::Pending,
                },
            },
            State::Unregistered => this.register(cx),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let State::Registered { pool, timer } = &self.state {
            pool.timers.remove(*timer);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field(
                "registered",
                &matches!(self.state, State::Registered { .. }),
            )
            .finish()
    }
}
