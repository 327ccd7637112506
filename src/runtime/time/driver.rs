//! Where timers live and who fires them: one wheel per worker.
//!
//! # Why per-worker wheels
//!
//! A timer is registered in the wheel of the worker whose task first polls
//! it, so registering and cancelling (the common pair: a `timeout` around
//! work that finishes in time) take a lock that only that worker normally
//! touches. With one wheel behind one lock for all workers (tokio's default)
//! every registration and cancellation is a lock shared across cores, and
//! every worker parks on that one driver. The timer-churn bench
//! (`benches/time.rs`) measures the result against tokio. Timers registered
//! off the workers (in `block_on`, on foreign threads) are spread over the
//! wheels round-robin.
//!
//! # Who fires them
//!
//! * A running worker checks its own wheel once per scheduling tick (one
//!   relaxed load while the wheel is empty, plus a look at the clock
//!   otherwise: see `Clock::has_reached`) and fires what is due. Woken tasks land in that worker's queues at their own
//!   priority, so a High task woken by a timer runs before queued Normal and
//!   Low work, after at most the poll in progress.
//! * A parking worker parks until its wheel's next expiration
//!   ([`Timers::prepare_park`] publishes it in `parked_until`). A timer
//!   inserted into a parked worker's wheel with an earlier deadline unparks
//!   that worker so it re-parks with the new deadline.
//!
//! The cost of this choice: a worker stuck in one long poll (or descheduled
//! by the OS) would delay the timers in its own wheel. So the other workers
//! look at their siblings' wheels when they search for work and once per
//! injector interval, and fire what is overdue by more than `STEAL_GRACE`
//! ([`Timers::fire_overdue_elsewhere`]).
//!
//! # Paused time (`test-util`)
//!
//! With the clock paused, parked workers sleep without a deadline, and
//! whoever finds the runtime idle (all workers parked, no `block_on` polling)
//! advances the clock straight to the next expiration.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Waker;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::clock::Clock;
use super::wheel::{Inserted, Wheel};
use crate::runtime::scheduler::park::WorkerUnparker;
use crate::sync::{
    Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering, RtMutex as Mutex, RtMutexGuard as MutexGuard,
};

/// How overdue (µs) a timer in another worker's wheel must be before a
/// worker fires it on that worker's behalf.
const STEAL_GRACE: u64 = 50;

/// `parked_until` of a worker that is not parked.
const AWAKE: u64 = 0;
/// `next` of an empty wheel, `parked_until` of a worker parked without deadline.
const NEVER: u64 = u64::MAX;

struct TimerSlot {
    wheel: Mutex<Wheel>,
    /// Set (under `wheel`'s lock) when the pool shuts down; from then on
    /// no timer is inserted and none reports pending.
    shut_down: AtomicBool,
    /// The runtime's clock, for a [`Registration`] that moves its deadline.
    clock: Arc<Clock>,
    /// A time (ticks) at or before the wheel's next expiration, or `NEVER`.
    /// May be early (after a cancellation), never late. Written only under
    /// `wheel`'s lock; read without it.
    next: AtomicU64,
    /// The deadline the worker parked with, `NEVER`, or `AWAKE`.
    parked_until: AtomicU64,
    unparker: WorkerUnparker,
    /// Set (under the wheel's lock, with the wheel empty) while no worker
    /// runs on this slot: no timer may be inserted then.
    closed: AtomicBool,
}

impl TimerSlot {
    /// A timer for `deadline` was just linked into this wheel (still locked
    /// by `guard`): publish the deadline and, if the worker is parked until
    /// later, wake it to re-park earlier.
    fn armed(&self, guard: MutexGuard<'_, Wheel>, deadline: u64) {
        // Only written under the lock, which we hold: a load and a store
        // where needed, not a read-modify-write at every insert.
        if deadline < self.next.load(Ordering::Relaxed) {
            self.next.store(deadline, Ordering::Relaxed);
        }
        // Read under the lock: see `Timers::prepare_park`.
        let parked_until = self.parked_until.load(Ordering::Relaxed);
        drop(guard);
        // `AWAKE` is 0, so this only triggers for a parked worker.
        if deadline < parked_until {
            self.unparker.unpark();
        }
    }
}

/// Wakes the owners of fired timers. A waker may belong to any executor; one
/// that panics must not unwind into the worker that fires timers.
fn wake_all(wake: &mut Vec<Waker>) {
    for waker in wake.drain(..) {
        let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
    }
}

/// A worker's own wheel (see [`Timers::own_wheel`]), which it checks at
/// every tick and before it sleeps: one load away instead of an index
/// into the pool's wheels and its bounds check (callgrind, `hotpath_probe yield`
/// with one worker: 6 instructions a tick).
pub(crate) struct OwnWheel(Arc<CachePadded<TimerSlot>>);

impl OwnWheel {
    /// Whether this wheel may have work due; one relaxed load when it is
    /// empty, and a look at the clock otherwise (the coarse clock alone
    /// while the next expiration is far: see `Clock::has_reached`).
    #[inline]
    pub(crate) fn is_due(&self, timers: &Timers) -> bool {
        let next = self.0.next.load(Ordering::Relaxed);
        next != NEVER && timers.clock.has_reached(next)
    }

    /// [`is_due`](Self::is_due) with a full read of the clock, for a worker
    /// that woke from a timed park, which then fires its timers with a full
    /// read too: a coarse clock that trails by more than its slack would
    /// otherwise send it back to park until a deadline already passed, over
    /// and over.
    pub(crate) fn is_due_now(&self, timers: &Timers) -> bool {
        let next = self.0.next.load(Ordering::Relaxed);
        next != NEVER && next <= timers.clock.now_ticks()
    }
}

/// The timers of one pool.
pub(crate) struct Timers {
    /// The runtime's clock, shared by all its pools.
    pub(crate) clock: Arc<Clock>,
    /// Each in an `Arc` that the slot's worker also holds ([`OwnWheel`]).
    slots: Box<[Arc<CachePadded<TimerSlot>>]>,
    /// Round-robin cursor for timers registered off the workers.
    next_remote: AtomicUsize,
}

/// What polling a registered timer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerState {
    Pending,
    Fired,
    /// The runtime shut down before the timer fired.
    ShutDown,
}

/// Outcome of [`Timers::insert`].
///
/// A waker that was not kept comes back, for the caller to drop where it
/// may run user code (its destructor is a foreign executor's code).
pub(crate) enum Registered {
    Armed(Registration),
    /// The deadline has already passed.
    Expired(Option<Waker>),
    /// The runtime shut down.
    ShutDown(Waker),
}

/// A timer linked into one worker's wheel; dropping it removes the timer.
///
/// It holds that wheel's `Arc`, not the pool's: registering and removing a
/// timer then writes only lines of the worker that registered it. (With the
/// pool's `Arc` every timer bumped one reference count that all workers
/// and every `Handle::spawn` share; perf on the timer-churn workload showed
/// 8% of the time on that one `lock inc`.)
pub(crate) struct Registration {
    slot: Arc<CachePadded<TimerSlot>>,
    key: usize,
}

impl Registration {
    /// Whether the timer fired; if not, makes sure `waker` is the one woken.
    pub(crate) fn poll(&self, waker: &Waker) -> TimerState {
        let mut wheel = self.slot.wheel.lock();
        if wheel.is_fired(self.key) {
            return TimerState::Fired;
        }
        if self.slot.shut_down.load(Ordering::Acquire) {
            return TimerState::ShutDown;
        }
        let replaced = wheel.set_waker(self.key, waker);
        drop(wheel);
        drop(replaced);
        TimerState::Pending
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.slot.wheel.lock().is_fired(self.key)
    }

    /// Moves the timer to a new deadline, keeping its waker. A deadline
    /// already passed leaves the timer fired, which the next poll reports.
    pub(crate) fn reset(&self, deadline: Instant) {
        let deadline = self.slot.clock.deadline_ticks(deadline);
        let mut guard = self.slot.wheel.lock();
        if guard.reset(self.key, deadline) == Inserted::Pending {
            self.slot.armed(guard, deadline);
        }
    }

    /// Whether the current thread is a worker of the pool this timer's
    /// wheel belongs to.
    pub(crate) fn polled_by_own_worker(&self) -> bool {
        crate::runtime::scheduler::worker::with_current_worker(|pool, _, _| {
            pool.timers
                .slots
                .iter()
                .any(|slot| Arc::ptr_eq(slot, &self.slot))
        })
        .unwrap_or(false)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let waker = self.slot.wheel.lock().remove(self.key);
        // Dropped once the lock is released.
        drop(waker);
    }
}

impl Timers {
    /// One wheel per worker slot; every wheel starts closed (see
    /// [`open_wheel`](Self::open_wheel)).
    pub(crate) fn new(unparkers: Vec<WorkerUnparker>, clock: Arc<Clock>) -> Self {
        let slots = unparkers
            .into_iter()
            .map(|unparker| {
                Arc::new(CachePadded::new(TimerSlot {
                    wheel: Mutex::new(Wheel::new()),
                    shut_down: AtomicBool::new(false),
                    clock: clock.clone(),
                    next: AtomicU64::new(NEVER),
                    parked_until: AtomicU64::new(AWAKE),
                    unparker,
                    closed: AtomicBool::new(true),
                }))
            })
            .collect();
        Timers {
            clock,
            slots,
            next_remote: AtomicUsize::new(0),
        }
    }

    /// Opens the wheel of a worker slot that is about to get a thread.
    pub(crate) fn open_wheel(&self, wheel: usize) {
        let slot = &self.slots[wheel];
        let _guard = slot.wheel.lock();
        slot.closed.store(false, Ordering::Relaxed);
    }

    /// Closes the wheel of a worker that retires, if the wheel is empty and
    /// `retire` (run under the wheel's lock) agrees. Returns whether it did.
    pub(crate) fn close_wheel_if(&self, wheel: usize, retire: impl FnOnce() -> bool) -> bool {
        let slot = &self.slots[wheel];
        let guard = slot.wheel.lock();
        if guard.len() > 0 || !retire() {
            return false;
        }
        slot.closed.store(true, Ordering::Relaxed);
        slot.parked_until.store(AWAKE, Ordering::Relaxed);
        true
    }

    /// The wheel a timer polled by `worker` (this pool's worker on this
    /// thread, if any) goes to.
    /// Off the workers, that is preferably the wheel of a parked worker
    /// (it will sleep until the deadline, rather than a busy worker firing
    /// it between polls), round-robin among them; never a closed wheel if
    /// an open one exists ([`insert`](Self::insert) re-checks).
    pub(crate) fn wheel_for(&self, worker: Option<usize>) -> usize {
        worker.unwrap_or_else(|| {
            let len = self.slots.len();
            let start = self.next_remote.fetch_add(1, Ordering::Relaxed) % len;
            let open = |index: &usize| !self.slots[*index].closed.load(Ordering::Relaxed);
            let mut candidates = (0..len).map(|offset| (start + offset) % len).filter(open);
            let first_open = candidates.clone().next();
            candidates
                .find(|&index| self.slots[index].parked_until.load(Ordering::Relaxed) != AWAKE)
                .or(first_open)
                .unwrap_or(start)
        })
    }

    /// Registers a timer, in `wheel` or, if that wheel has been closed
    /// meanwhile (its worker retired), in the next open one.
    pub(crate) fn insert(&self, wheel: usize, deadline: u64, waker: Waker) -> Registered {
        let len = self.slots.len();
        for offset in 0..len {
            let wheel = (wheel + offset) % len;
            let slot = &self.slots[wheel];
            let mut guard = slot.wheel.lock();
            // Checked under the lock `shutdown` takes: no timer can slip in
            // after shutdown collected this wheel's wakers.
            if slot.shut_down.load(Ordering::Acquire) {
                return Registered::ShutDown(waker);
            }
            if slot.closed.load(Ordering::Relaxed) {
                continue;
            }
            let (key, inserted) = guard.insert(deadline, waker);
            if inserted == Inserted::Expired {
                return Registered::Expired(guard.remove(key));
            }
            slot.armed(guard, deadline);
            return Registered::Armed(Registration {
                slot: slot.clone(),
                key,
            });
        }
        // Every wheel closed: only possible while the pool is shutting down.
        Registered::ShutDown(waker)
    }

    /// The wheel of worker slot `wheel`, for that worker's check at every
    /// tick.
    pub(crate) fn own_wheel(&self, wheel: usize) -> OwnWheel {
        OwnWheel(self.slots[wheel].clone())
    }

    /// Fires everything due in `wheel`. Wakers run after the lock is released.
    pub(crate) fn fire_due(&self, wheel: usize, wake: &mut Vec<Waker>) {
        let now = self.clock.now_ticks();
        self.fire_until(wheel, now, wake);
    }

    /// Returns how many timers fired.
    fn fire_until(&self, wheel: usize, now: u64, wake: &mut Vec<Waker>) -> usize {
        crate::fault::hit("timer.fire");
        let slot = &self.slots[wheel];
        {
            let mut guard = slot.wheel.lock();
            guard.advance(now, wake);
            slot.next
                .store(guard.next_expiration().unwrap_or(NEVER), Ordering::Relaxed);
        }
        let fired = wake.len();
        wake_all(wake);
        fired
    }

    /// Whether another worker's wheel has timers overdue by more than
    /// `STEAL_GRACE`. A full read of the clock: a parked worker asks this
    /// when it wakes (see [`OwnWheel::is_due_now`]).
    pub(crate) fn overdue_elsewhere(&self, own: usize) -> bool {
        self.earliest_elsewhere(own)
            .is_some_and(|next| next.saturating_add(STEAL_GRACE) <= self.clock.now_ticks())
    }

    /// The earliest `next` among the other wheels, if any has a timer; lets
    /// the callers skip reading the clock when no sibling has timers.
    fn earliest_elsewhere(&self, own: usize) -> Option<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(index, _)| index != own)
            .map(|(_, slot)| slot.next.load(Ordering::Relaxed))
            .filter(|&next| next != NEVER)
            .min()
    }

    /// Fires the timers of other workers' wheels that are overdue by more
    /// than [`STEAL_GRACE`] ticks: their worker is stuck in a long poll or
    /// descheduled by the OS. Skips wheels whose lock is taken.
    pub(crate) fn fire_overdue_elsewhere(&self, own: usize, wake: &mut Vec<Waker>) {
        // Every search for work and every injector interval ask this; the
        // coarse clock answers while every sibling's timer is far off.
        let Some(earliest) = self.earliest_elsewhere(own) else {
            return;
        };
        if self.clock.has_reached(earliest.saturating_add(STEAL_GRACE)) {
            self.fire_overdue_elsewhere_now(own, wake);
        }
    }

    /// [`fire_overdue_elsewhere`](Self::fire_overdue_elsewhere) with a full
    /// read of the clock, for a worker that woke from a timed park (see
    /// [`OwnWheel::is_due_now`]).
    pub(crate) fn fire_overdue_elsewhere_now(&self, own: usize, wake: &mut Vec<Waker>) {
        let now = self.clock.now_ticks();
        for (index, slot) in self.slots.iter().enumerate() {
            let next = slot.next.load(Ordering::Relaxed);
            if index == own || next == NEVER || next.saturating_add(STEAL_GRACE) > now {
                continue;
            }
            crate::fault::hit("timer.fire");
            if let Some(mut guard) = slot.wheel.try_lock() {
                guard.advance(now, wake);
                slot.next
                    .store(guard.next_expiration().unwrap_or(NEVER), Ordering::Relaxed);
            }
            wake_all(wake);
        }
    }

    /// Fires everything due in every wheel (used when paused time moves);
    /// returns how many timers fired.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn fire_all_due(&self) -> usize {
        let now = self.clock.now_ticks();
        let mut wake = Vec::new();
        (0..self.slots.len())
            .map(|wheel| self.fire_until(wheel, now, &mut wake))
            .sum()
    }

    /// Publishes that `wheel`'s worker is about to park; returns the instant
    /// to wake up at (`None`: sleep until unparked). That is its own next
    /// expiration, or a sibling's plus `STEAL_GRACE` if earlier: a sibling
    /// stuck in a long poll then gets its timers fired by this worker.
    pub(crate) fn prepare_park(&self, wheel: usize) -> Option<Instant> {
        let slot = &self.slots[wheel];
        let guard = slot.wheel.lock();
        let next = guard.next_expiration().unwrap_or(NEVER);
        // `next` may be a cascade point before any deadline; publishing it
        // makes `is_due` agree, so waking there processes the cascade
        // instead of re-parking for an instant already past.
        slot.next.store(next, Ordering::Relaxed);
        let siblings = self
            .earliest_elsewhere(wheel)
            .map_or(NEVER, |next| next.saturating_add(STEAL_GRACE));
        let wake_at = next.min(siblings);
        let parked_until = if self.clock.is_paused() {
            NEVER
        } else {
            wake_at
        };
        slot.parked_until.store(parked_until, Ordering::Relaxed);
        drop(guard);
        if parked_until == NEVER {
            None
        } else {
            // An unrepresentable instant is "never" too.
            self.clock.wall_instant_of(parked_until)
        }
    }

    /// Wakes every worker, so each re-parks with a deadline that fits the
    /// clock's new mode (after `pause`/`resume`).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn unpark_all(&self) {
        for slot in self.slots.iter() {
            slot.unparker.unpark();
        }
    }

    /// The worker of `wheel` is running again.
    pub(crate) fn unparked(&self, wheel: usize) {
        self.slots[wheel]
            .parked_until
            .store(AWAKE, Ordering::Relaxed);
    }

    /// The earliest expiration over all wheels.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|slot| slot.wheel.lock().next_expiration())
            .min()
    }

    /// Wakes everyone waiting on a timer: the pool has shut down and its
    /// workers are gone, so they must find out (see `Sleep`).
    pub(crate) fn shutdown(&self) {
        let mut wake = Vec::new();
        for slot in self.slots.iter() {
            let wheel = slot.wheel.lock();
            slot.shut_down.store(true, Ordering::Release);
            wheel.wakers(&mut wake);
        }
        wake_all(&mut wake);
    }

    /// Number of registered timers.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().map(|slot| slot.wheel.lock().len()).sum()
    }
}
