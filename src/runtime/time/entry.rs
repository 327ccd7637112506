//! [`Timer`]: one timer as its owner holds it. The public `time::Sleep` is
//! a `Timer`, and so is the deadline of a task spawned with
//! `Spawn::timeout`.
//!
//! Invariants:
//! * A timer is registered in a wheel at its first poll, with the runtime
//!   entered there (the global runtime outside any), and removed from the
//!   wheel when the `Timer` is dropped: an unpolled timer costs nothing.
//! * A deadline at or before the present completes at the first poll
//!   without touching a wheel.
//! * A timer of a runtime that has shut down never completes silently:
//!   polled by one of that runtime's workers (a task about to be
//!   cancelled) it stays pending; polled anywhere else it panics, since
//!   nothing will ever fire it.

use std::task::{Context, Poll};
use std::time::Instant;

use super::driver::{Registered, Registration, TimerState};
use crate::runtime::context;
use crate::runtime::scheduler::worker;

/// One timer: a deadline and where it is registered.
pub(crate) struct Timer {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not in any wheel yet.
    Unregistered,
    /// In a wheel (possibly fired already); dropping the registration
    /// removes it.
    Registered(Registration),
    /// Completed without ever being registered.
    Elapsed,
}

impl Timer {
    pub(crate) fn new(deadline: Instant) -> Self {
        Timer {
            deadline,
            state: State::Unregistered,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has been reached (as observed by the wheel).
    pub(crate) fn is_elapsed(&self) -> bool {
        match &self.state {
            State::Unregistered => false,
            State::Registered(timer) => timer.is_fired(),
            State::Elapsed => true,
        }
    }

    /// Whether the timer is in a wheel.
    pub(crate) fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered(_))
    }

    /// Moves the deadline, re-arming the timer in place (also after it
    /// fired).
    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        match &self.state {
            State::Registered(timer) => timer.reset(deadline),
            State::Elapsed => self.state = State::Unregistered,
            State::Unregistered => {}
        }
    }

    /// Moves the deadline and takes the timer out of its wheel, so that
    /// nothing is woken until it is polled again.
    pub(crate) fn reset_unarmed(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.state = State::Unregistered;
    }

    /// `Ready` once the deadline has passed; otherwise `cx` is woken when
    /// it does.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.state {
            State::Elapsed => Poll::Ready(()),
            State::Registered(timer) => match timer.poll(cx.waker()) {
                TimerState::Fired => Poll::Ready(()),
                TimerState::Pending => Poll::Pending,
                TimerState::ShutDown => {
                    assert_own_worker(timer.polled_by_own_worker());
                    Poll::Pending
                }
            },
            State::Unregistered => self.register(cx),
        }
    }

    /// Registers the timer with the current runtime, or completes.
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Cloned, and dropped if unused, outside `with_current_pool`: a
        // waker's clone and drop are its executor's code, which must not
        // run while that holds the current runtime (see `context`).
        let mut waker = Some(cx.waker().clone());
        // Set if the runtime shut down: whether one of its workers polls
        // (see `dead_runtime`).
        let mut dead = None;
        let state = context::with_current_pool(|pool| {
            if pool.is_closed() {
                dead = Some(worker::index_in(pool).is_some());
                return State::Unregistered;
            }
            let timers = &pool.timers;
            let ticks = timers.clock.deadline_ticks(self.deadline);
            if timers.clock.has_reached(ticks) {
                return State::Elapsed;
            }
            let wheel = timers.wheel_for(worker::index_in(pool));
            let Some(keep) = waker.take() else {
                unreachable!("taken once")
            };
            match timers.insert(wheel, ticks, keep) {
                Registered::Armed(timer) => State::Registered(timer),
                Registered::Expired(unused) => {
                    waker = unused;
                    State::Elapsed
                }
                Registered::ShutDown(unused) => {
                    waker = Some(unused);
                    dead = Some(worker::index_in(pool).is_some());
                    State::Unregistered
                }
            }
        });
        drop(waker);
        self.state = match dead {
            Some(own_worker) => dead_runtime(own_worker),
            None => state,
        };
        match self.state {
            State::Elapsed => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// What a timer of a runtime that has shut down does (see the module
/// docs): it stays pending, if `own_worker` (one of that runtime's
/// workers polls it).
#[track_caller]
fn dead_runtime(own_worker: bool) -> State {
    assert_own_worker(own_worker);
    State::Unregistered
}

/// Panics unless a timer of a runtime that shut down is polled by one of
/// that runtime's workers (a task about to be cancelled).
#[track_caller]
fn assert_own_worker(own_worker: bool) {
    assert!(
        own_worker,
        "a multipool timer was polled after its runtime shut down; \
         timers only work while their runtime is alive"
    );
}
