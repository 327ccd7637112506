//! Parking a worker through a hook ([`Builder::park_with`]): an idle worker
//! drives an outside reactor (tokio's I/O driver, say) instead of sleeping.
//!
//! # Invariants
//!
//! * A worker's unpark path ([`WorkerUnparker::unpark`]: producers'
//!   notifications, an earlier timer, `close`, paused time moving) sets the
//!   worker's parker token and then, only if the runtime has a park hook and
//!   the token was not already set, takes and wakes the waker registered by
//!   [`Unparked`]. [`Unparked`] registers its waker and then consumes the
//!   token (`park_timeout(0)`). Both sides go through the waker slot's
//!   mutex, so either the unparker finds the waker, or the future's token
//!   check (after the unparker's token store) sees the token: no wake-up is
//!   lost. Without a park hook the unpark path is exactly
//!   `parking::Unparker::unpark`.
//! * While a worker is inside its hook, a task queued on its own queues
//!   (an I/O wake-up processed by the hook on this thread lands there) does
//!   not notify other workers: it unparks the worker itself, so the hook
//!   returns and the worker runs the task, like tokio's worker that parks on
//!   the I/O driver. After the hook returns with more than one task queued,
//!   the worker wakes a sibling to share them.
//! * The hook runs while the worker counts as parked (see `idle`): it must
//!   return once [`Park::unparked`] completes, and by [`Park::deadline`].
//!   It may return earlier: the worker re-checks its state and calls the
//!   hook again.
//! * A panic in the hook is caught; the worker then parks the default way
//!   for the rest of its life.
//! * With the clock paused (`test-util`), workers park the default way and
//!   the hook is not called (paused time advances when every worker is
//!   parked, which needs the runtime's own parking).
//!
//! [`Builder::park_with`]: crate::Builder::park_with

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{Arc, Mutex};

/// How a worker is woken: its parker, and with a park hook, the waker of the
/// hook's [`Unparked`] future.
#[derive(Clone)]
pub(crate) struct WorkerUnparker {
    unparker: parking::Unparker,
    /// Only present when the runtime has a park hook.
    hook: Option<Arc<HookWaker>>,
}

/// The waker of a worker's [`Unparked`] future, while its hook runs.
#[derive(Default)]
pub(crate) struct HookWaker {
    waker: Mutex<Option<Waker>>,
}

impl HookWaker {
    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(current) if current.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        let waker = self.waker.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Forgets the registered waker: the hook returned.
    pub(crate) fn clear(&self) {
        drop(self.waker.lock().take());
    }
}

impl WorkerUnparker {
    pub(crate) fn new(unparker: parking::Unparker, hook: Option<Arc<HookWaker>>) -> Self {
        WorkerUnparker { unparker, hook }
    }

    /// Wakes the worker: from a default park, or out of its park hook.
    pub(crate) fn unpark(&self) {
        // `false`: the token was already set, and whoever set it wakes the
        // hook's waker (or the future sees the token when it registers).
        if self.unparker.unpark() {
            if let Some(hook) = &self.hook {
                hook.wake();
            }
        }
    }
}

/// An idle worker about to sleep, as seen by a park hook
/// ([`Builder::park_with`](crate::Builder::park_with)).
///
/// The hook must return once [`unparked`](Self::unparked) completes or the
/// [`deadline`](Self::deadline) passes, whichever comes first; it may return
/// earlier (the worker then looks for work and calls the hook again).
/// [`park`](Self::park) sleeps the way a worker without a hook does.
///
/// It stays on the worker's thread (it is neither `Send` nor `Sync`).
pub struct Park<'a> {
    pub(crate) deadline: Option<Instant>,
    pub(crate) parker: &'a parking::Parker,
    pub(crate) waker: &'a HookWaker,
}

impl Park<'_> {
    /// When the worker must be running again (its next timer, or an elastic
    /// pool's idle timeout); `None`: only an unpark ends the wait.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A future that completes when the worker is unparked: new work for it,
    /// a timer earlier than [`deadline`](Self::deadline), shutdown, or a task
    /// queued on this worker while the hook runs (such as one woken by I/O
    /// that the hook processed on this thread). It does not complete at the
    /// deadline by itself.
    pub fn unparked(&self) -> Unparked<'_> {
        Unparked {
            park: self,
            done: false,
        }
    }

    /// Sleeps until unparked or the deadline, as a worker without a park
    /// hook does: for a hook that has nothing to drive this time, or whose
    /// own timers are too coarse for a deadline close by.
    pub fn park(&self) {
        match self.deadline {
            Some(deadline) => {
                self.parker.park_deadline(deadline);
            }
            None => self.parker.park(),
        }
    }
}

impl fmt::Debug for Park<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Completes when the parked worker is unparked; see [`Park::unparked`].
#[must_use = "futures do nothing unless polled"]
pub struct Unparked<'a> {
    park: &'a Park<'a>,
    done: bool,
}

impl Future for Unparked<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        // Register first, then look at the token (see the module docs).
        self.park.waker.register(cx.waker());
        if self.park.parker.park_timeout(Duration::ZERO) {
            self.done = true;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl fmt::Debug for Unparked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unparked")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
