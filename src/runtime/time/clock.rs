//! The runtime's clock: real time, or (with the `test-util` feature) paused
//! time that only moves when told to or when the runtime is idle.
//!
//! Timer deadlines are kept in microseconds since the clock's `base`. A
//! deadline converts to ticks rounding *up* and the present converts rounding
//! *down*, so a timer never fires before its deadline.
//!
//! The clock's range ends at `end`: `MAX_DEADLINE` ticks (about 36 000
//! years) past `base`, or the latest tick `Instant` can hold if that is
//! less. Paused time never moves past it (`advance(Duration::MAX)` moves
//! there), so every instant the clock shows converts to ticks, and the
//! offset kept after `resume` always fits its counter. At the end of the
//! range every deadline is due (deadlines are clamped to it too), so
//! auto-advancing to the next timer always fires something.

use std::time::{Duration, Instant};

#[cfg(feature = "test-util")]
use crate::sync::{AtomicBool, AtomicU64, Ordering, RtMutex as Mutex};

use super::wheel::MAX_DEADLINE;

pub(crate) struct Clock {
    base: Instant,
    /// The last instant the clock shows (see the module docs).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    end: Instant,
    /// `end`, in ticks: the clamp for the present and for deadlines.
    end_ticks: u64,
    #[cfg(feature = "test-util")]
    paused: AtomicBool,
    /// The frozen present while paused.
    #[cfg(feature = "test-util")]
    frozen: Mutex<Instant>,
    /// Microseconds (rounded up) that paused time moved ahead of real time;
    /// added to `Instant::now()` after `resume`, so time never goes
    /// backwards. In microseconds so that the whole range of the clock
    /// fits (nanoseconds would overflow past 584 years).
    #[cfg(feature = "test-util")]
    offset_micros: AtomicU64,
}

impl Clock {
    pub(crate) fn new(#[allow(unused_variables)] start_paused: bool) -> Self {
        let base = Instant::now();
        // Halving: at most 60 steps, and only where `Instant` cannot hold
        // 36 000 years.
        let mut end_ticks = MAX_DEADLINE;
        while base.checked_add(Duration::from_micros(end_ticks)).is_none() {
            end_ticks /= 2;
        }
        Clock {
            base,
            end: base + Duration::from_micros(end_ticks),
            end_ticks,
            #[cfg(feature = "test-util")]
            paused: AtomicBool::new(start_paused),
            #[cfg(feature = "test-util")]
            frozen: Mutex::new(base),
            #[cfg(feature = "test-util")]
            offset_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        #[cfg(feature = "test-util")]
        {
            if self.paused.load(Ordering::Acquire) {
                return *self.frozen.lock();
            }
            let offset = self.offset();
            if !offset.is_zero() {
                return self.ahead_of_real_time(offset);
            }
        }
        Instant::now()
    }

    /// The present, in ticks (rounded down).
    pub(crate) fn now_ticks(&self) -> u64 {
        let elapsed = self.now().saturating_duration_since(self.base);
        u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .min(self.end_ticks)
    }

    /// A deadline, in ticks (rounded up).
    pub(crate) fn deadline_ticks(&self, deadline: Instant) -> u64 {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos.div_ceil(1_000))
            .unwrap_or(u64::MAX)
            .min(self.end_ticks)
    }

    /// The instant of a tick, if it is representable.
    pub(crate) fn instant_of(&self, ticks: u64) -> Option<Instant> {
        self.base.checked_add(Duration::from_micros(ticks))
    }

    /// The real (`Instant::now()`) instant at which the clock reads `ticks`:
    /// what a thread that sleeps until `ticks` parks until.
    pub(crate) fn wall_instant_of(&self, ticks: u64) -> Option<Instant> {
        let instant = self.instant_of(ticks)?;
        Some(instant.checked_sub(self.offset()).unwrap_or(instant))
    }

    /// How far paused time moved ahead of real time before it resumed.
    fn offset(&self) -> Duration {
        #[cfg(feature = "test-util")]
        return Duration::from_micros(self.offset_micros.load(Ordering::Acquire));
        #[cfg(not(feature = "test-util"))]
        Duration::ZERO
    }

    pub(crate) fn is_paused(&self) -> bool {
        #[cfg(feature = "test-util")]
        return self.paused.load(Ordering::Acquire);
        #[cfg(not(feature = "test-util"))]
        false
    }
}

#[cfg(feature = "test-util")]
impl Clock {
    /// Real time plus `offset`, at most the end of the clock's range.
    fn ahead_of_real_time(&self, offset: Duration) -> Instant {
        Instant::now()
            .checked_add(offset)
            .map_or(self.end, |now| now.min(self.end))
    }

    /// Freezes the clock; `false` if it was frozen already.
    pub(crate) fn pause(&self) -> bool {
        let mut frozen = self.frozen.lock();
        if self.paused.load(Ordering::Acquire) {
            return false;
        }
        // The clock's present (real time plus what earlier pauses added),
        // rounded up to a whole tick: pausing never moves time backwards,
        // and deadlines a whole number of microseconds away are then
        // reached exactly when time auto-advances.
        let present = self.ahead_of_real_time(self.offset());
        let nanos = present.saturating_duration_since(self.base).as_nanos();
        let ticks = u64::try_from(nanos.div_ceil(1_000)).unwrap_or(MAX_DEADLINE);
        *frozen = self
            .instant_of(ticks)
            .map_or(self.end, |instant| instant.min(self.end));
        self.paused.store(true, Ordering::Release);
        true
    }

    /// Lets real time run again; `false` if the clock was not frozen.
    pub(crate) fn resume(&self) -> bool {
        let frozen = self.frozen.lock();
        if !self.paused.load(Ordering::Acquire) {
            return false;
        }
        // Rounded up: time never goes backwards. At most the clock's range
        // (`frozen <= end`), which fits.
        let ahead = frozen.saturating_duration_since(Instant::now());
        let micros = u64::try_from(ahead.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX);
        self.offset_micros.store(micros, Ordering::Release);
        self.paused.store(false, Ordering::Release);
        true
    }

    /// Moves paused time forward by `duration`, or to the end of the
    /// clock's range if that comes first (`Duration::MAX`, say). Returns
    /// `false` if the clock is not paused.
    pub(crate) fn advance(&self, duration: Duration) -> bool {
        let mut frozen = self.frozen.lock();
        if !self.paused.load(Ordering::Acquire) {
            return false;
        }
        *frozen = frozen
            .checked_add(duration)
            .map_or(self.end, |target| target.min(self.end))
            .max(*frozen);
        true
    }

    /// Moves paused time forward to `ticks`, if that is later than now.
    /// Does nothing if the clock is not paused.
    pub(crate) fn advance_to(&self, ticks: u64) {
        let mut frozen = self.frozen.lock();
        if !self.paused.load(Ordering::Acquire) {
            return;
        }
        let target = self
            .instant_of(ticks)
            .map_or(self.end, |target| target.min(self.end));
        if target > *frozen {
            *frozen = target;
        }
    }
}
