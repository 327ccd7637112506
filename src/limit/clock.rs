//! governor's [`Clock`](governor::clock::Clock) over multipool's runtime
//! clock, so that paused time (`test-util`) drives a limiter as it drives
//! `sleep`.
//!
//! A limiter reads one clock for its whole life (GCRA keeps its state as
//! nanoseconds since the limiter's first reading, so mixing clocks would
//! be meaningless): the clock of the runtime it is bound to. A pool's
//! limiter is bound to its runtime when built; a `RateLimiter::new` is
//! bound when first used, to the runtime entered there, or to real time
//! where none is.

use std::fmt;
use std::ops::Add;
use std::time::{Duration, Instant};

use governor::clock::{Clock as GovernorClock, Reference};
use governor::nanos::Nanos;

use crate::runtime::context;
use crate::runtime::far_future;
use crate::runtime::time::Clock;
use crate::sync::Arc;

/// The longest span GCRA is given, in nanoseconds (2^62, about 146 years):
/// its state is nanoseconds in a `u64`, to which it adds the quota's
/// period and burst span, also held to this (see `rate::gcra_quota`), so
/// nothing overflows. Beyond it a limiter's time stands still: paused time
/// can be advanced that far (`advance(Duration::MAX)`), and governor would
/// panic on the conversion otherwise.
pub(super) const MAX_SPAN_NANOS: u64 = 1 << 62;

/// One reading of a [`RuntimeClock`]: an instant of the runtime's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp(pub(super) Instant);

impl Add<Nanos> for Stamp {
    type Output = Stamp;

    fn add(self, nanos: Nanos) -> Stamp {
        let nanos: Duration = nanos.into();
        // 584 years of nanoseconds never overflow an `Instant` in practice;
        // if they did, the instant is "never", not a panic.
        Stamp(
            self.0
                .checked_add(nanos)
                .unwrap_or_else(|| far_future(self.0)),
        )
    }
}

impl Reference for Stamp {
    fn duration_since(&self, earlier: Self) -> Nanos {
        let nanos = self.0.saturating_duration_since(earlier.0).as_nanos();
        Nanos::from(u64::try_from(nanos).map_or(MAX_SPAN_NANOS, |n| n.min(MAX_SPAN_NANOS)))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Stamp(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// A runtime's clock (real or paused), or real time.
#[derive(Clone)]
pub(super) struct RuntimeClock(Option<Arc<Clock>>);

impl RuntimeClock {
    /// The clock of the runtime entered on this thread, or real time.
    /// Never starts the global runtime.
    pub(super) fn current() -> Self {
        RuntimeClock(
            context::try_current()
                .ok()
                .map(|handle| handle.pool().runtime.clock.clone()),
        )
    }

    /// `clock` itself (a pool's limiter, bound when its runtime is built).
    pub(super) fn of(clock: Arc<Clock>) -> Self {
        RuntimeClock(Some(clock))
    }

    pub(super) fn now_instant(&self) -> Instant {
        match &self.0 {
            Some(clock) => clock.now(),
            None => Instant::now(),
        }
    }
}

impl GovernorClock for RuntimeClock {
    type Instant = Stamp;

    fn now(&self) -> Stamp {
        Stamp(self.now_instant())
    }
}

impl fmt::Debug for RuntimeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(clock) if clock.is_paused() => f.write_str("runtime clock (paused)"),
            Some(_) => f.write_str("runtime clock"),
            None => f.write_str("real time"),
        }
    }
}
