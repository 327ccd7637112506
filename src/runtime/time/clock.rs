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
//!
//! # Asking whether a deadline has come
//!
//! Workers ask at every scheduling tick whether their wheel's next
//! expiration has come, and a timer asks at registration whether its
//! deadline already passed: several clock reads a task where timers churn
//! (perf put 12-15% of the timer-churn bench in `clock_gettime`). Most of
//! those deadlines are far off. [`Clock::has_reached`] first asks Linux's
//! coarse monotonic clock, which costs a load instead of a counter read
//! (about 5 ns against 25 here). That clock trails `CLOCK_MONOTONIC` (what
//! `std`'s `Instant` reads on Linux, per its docs' table of system calls)
//! by up to a kernel tick, and by a few ticks when the CPU that keeps time
//! stalls: Linux hands timekeeping to another CPU after 5 missed ticks.
//! So only a deadline more than 8 ticks (the slack) past the coarse
//! clock's present is answered "not yet" from it; nearer ones, and every
//! "yes", come from a full read.
//!
//! A "yes" is never early. A coarse clock that trails by more than the
//! slack (a kernel without the hand-over, a stalled machine) makes a
//! running worker see its timers late, never early, and only until the
//! coarse clock moves again; a parked worker that wakes for a timer checks
//! with a full read ([`OwnWheel::is_due_now`](super::driver::OwnWheel)),
//! so it never spins on a stale answer. Elsewhere, and while time is
//! paused or ahead of real time, every question reads the clock.

use std::time::{Duration, Instant};

#[cfg(feature = "test-util")]
use crate::sync::{AtomicBool, AtomicU64, Ordering, RtMutex as Mutex};

use super::wheel::MAX_DEADLINE;

pub(crate) struct Clock {
    base: Instant,
    /// The coarse clock's view of time (see the module docs), where there
    /// is one.
    coarse: Option<coarse::Coarse>,
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
        // Read before `base`, so that it is not after it.
        let coarse = coarse::Coarse::new();
        let base = Instant::now();
        // Halving: at most 60 steps, and only where `Instant` cannot hold
        // 36 000 years.
        let mut end_ticks = MAX_DEADLINE;
        while base.checked_add(Duration::from_micros(end_ticks)).is_none() {
            end_ticks /= 2;
        }
        Clock {
            base,
            coarse,
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

    /// Whether the present has reached `ticks`: `ticks <= now_ticks()`,
    /// answered without a full clock read where `ticks` is surely still to
    /// come (see the module docs).
    #[inline]
    pub(crate) fn has_reached(&self, ticks: u64) -> bool {
        if let Some(coarse) = &self.coarse {
            if !self.is_ahead_of_real_time() && coarse.surely_before(ticks) {
                return false;
            }
        }
        ticks <= self.now_ticks()
    }

    /// Whether the clock shows something other than real time (paused, or
    /// moved ahead by a pause), which the coarse clock does not know.
    #[inline]
    fn is_ahead_of_real_time(&self) -> bool {
        #[cfg(feature = "test-util")]
        return self.paused.load(Ordering::Acquire) || !self.offset().is_zero();
        #[cfg(not(feature = "test-util"))]
        false
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

/// Linux's coarse monotonic clock, as an upper bound of the present in
/// ticks (see the module docs).
#[cfg(all(target_os = "linux", not(miri)))]
mod coarse {
    /// How many of the coarse clock's ticks it may trail the full clock
    /// by (see the module docs).
    const SLACK_TICKS: u64 = 8;

    /// Reads a clock; `None` if the system refuses.
    fn read(clock: libc::clockid_t) -> Option<libc::timespec> {
        // SAFETY: `timespec` is plain integers (and, on some 32-bit
        // targets, private padding), for which all zeroes is a value.
        let mut time: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `time` is a valid, writable `timespec`, the only thing
        // `clock_gettime` writes; it reads nothing else of ours.
        let read = unsafe { libc::clock_gettime(clock, &mut time) };
        (read == 0).then_some(time)
    }

    fn nanos(time: libc::timespec) -> Option<u64> {
        let secs = u64::try_from(time.tv_sec).ok()?;
        let nanos = u64::try_from(time.tv_nsec).ok()?;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    }

    pub(super) struct Coarse {
        /// `CLOCK_MONOTONIC`, in nanoseconds, read just before the clock's
        /// base: elapsed times measured from it are never short.
        base_nanos: u64,
        /// Ticks (µs) the coarse clock may trail the full one by:
        /// [`SLACK_TICKS`] of its resolution, plus one for rounding.
        slack: u64,
    }

    impl Coarse {
        /// `None` where the coarse clock is missing or coarser than 10 ms
        /// (its slack would be too wide to answer often).
        pub(super) fn new() -> Option<Self> {
            // SAFETY: as in `read`.
            let mut resolution: libc::timespec = unsafe { std::mem::zeroed() };
            // SAFETY: as in `read`, for `clock_getres`.
            let got = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut resolution) };
            if got != 0 {
                return None;
            }
            let resolution = nanos(resolution)?;
            if resolution == 0 || resolution > 10_000_000 {
                return None;
            }
            read(libc::CLOCK_MONOTONIC_COARSE)?;
            Some(Coarse {
                base_nanos: nanos(read(libc::CLOCK_MONOTONIC)?)?,
                slack: (SLACK_TICKS * resolution).div_ceil(1_000) + 1,
            })
        }

        /// Whether the present is surely before `ticks`.
        #[inline]
        pub(super) fn surely_before(&self, ticks: u64) -> bool {
            read(libc::CLOCK_MONOTONIC_COARSE)
                .and_then(nanos)
                .is_some_and(|now| self.latest_ticks(now) < ticks)
        }

        /// The latest the present can be, in ticks, when the coarse clock
        /// reads `coarse_nanos`.
        fn latest_ticks(&self, coarse_nanos: u64) -> u64 {
            coarse_nanos.saturating_sub(self.base_nanos) / 1_000 + self.slack
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The bound covers the slack past any reading, rounding included,
        /// and never underflows before the base.
        #[test]
        fn latest_ticks_adds_the_slack() {
            let coarse = Coarse {
                base_nanos: 5_000_000_999,
                slack: 32_001,
            };
            assert_eq!(coarse.latest_ticks(0), 32_001);
            assert_eq!(coarse.latest_ticks(5_000_000_999), 32_001);
            // 1.5 µs after the base: one whole tick, the half is in the +1.
            assert_eq!(coarse.latest_ticks(5_000_002_499), 32_002);
            assert_eq!(
                coarse.latest_ticks(u64::MAX),
                (u64::MAX - 5_000_000_999) / 1_000 + 32_001
            );
        }
    }
}

/// No coarse clock here: every question reads the clock.
#[cfg(not(all(target_os = "linux", not(miri))))]
mod coarse {
    pub(super) enum Coarse {}

    impl Coarse {
        pub(super) fn new() -> Option<Self> {
            None
        }

        pub(super) fn surely_before(&self, _: u64) -> bool {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `has_reached` answers "yes" for ticks a second past and "no" for
    /// ticks far ahead (an hour; the coarse clock's slack is milliseconds).
    #[test]
    fn has_reached_agrees_with_the_clock() {
        let clock = Clock::new(false);
        for _ in 0..1_000 {
            let now = clock.now_ticks();
            assert!(clock.has_reached(0));
            assert!(clock.has_reached(now.saturating_sub(1_000_000)));
            assert!(!clock.has_reached(now + 3_600_000_000), "an hour ahead");
        }
        assert!(!clock.has_reached(u64::MAX), "past the end of the range");
    }

    /// The coarse clock answers for a deadline a second away, and never
    /// for one a second past (both far outside its slack).
    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn coarse_clock_answers_far_deadlines() {
        let clock = Clock::new(false);
        let coarse = clock.coarse.as_ref().expect("Linux has a coarse clock");
        let now = clock.now_ticks();
        assert!(coarse.surely_before(now + 1_000_000));
        assert!(!coarse.surely_before(now.saturating_sub(1_000_000)));
    }

    /// Once paused time has moved the clock ahead of real time, the coarse
    /// clock (which only knows real time) is not asked: a deadline the
    /// clock shows as reached is reached.
    #[cfg(feature = "test-util")]
    #[test]
    fn has_reached_after_paused_time_moved_ahead() {
        let clock = Clock::new(true);
        assert!(clock.advance(Duration::from_secs(60)));
        assert!(clock.resume());
        let now = clock.now_ticks();
        assert!(now >= 60_000_000);
        assert!(clock.has_reached(now));
        assert!(!clock.has_reached(now + 3_600_000_000));
    }
}
