//! [`RateLimiter`]: governor's GCRA, with priority-ordered, timer-driven
//! waiting (see the module docs of `limit` for the protocol).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use slab::Slab;

use super::clock::{RuntimeClock, Stamp, MAX_SPAN_NANOS};
use crate::priority::{levels, PerLevel};
use crate::runtime::time::Clock;
use crate::runtime::{far_future, with_current_task, Pool};
use crate::sync::{Arc, OnceLock, RtMutex as Mutex};
use crate::time::Sleep;
use crate::Priority;

/// governor's direct (un-keyed) limiter over the runtime's clock.
type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, RuntimeClock, NoOpMiddleware<Stamp>>;

/// How many cells a [`RateLimiter`] lets through, and how fast they come
/// back: a wrapper around governor's `Quota` (GCRA's parameters).
///
/// A quota is never zero: its counts are [`NonZeroU32`], and a zero period
/// is refused by [`with_period`](Self::with_period) (`None`). The most it
/// can say is `u32::MAX` cells a second. At the other end, a limiter holds
/// a burst's whole span (period times burst) to about 146 years, taking a
/// longer period as that long: never, in practice, rather than an
/// overflow.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use multipool::limit::Quota;
///
/// // 100 a second, at most one at a time (no burst):
/// let steady = Quota::per_second(NonZeroU32::new(100).unwrap())
///     .allow_burst(NonZeroU32::new(1).unwrap());
/// assert_eq!(steady.replenish_interval(), Duration::from_millis(10));
/// assert_eq!(steady.burst_size().get(), 1);
///
/// // One every 5 minutes, and a zero period is not a quota:
/// assert!(Quota::with_period(Duration::from_secs(300)).is_some());
/// assert!(Quota::with_period(Duration::ZERO).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Quota(governor::Quota);

impl Quota {
    /// `max_burst` cells a second, all of which may go at once (a burst of
    /// `max_burst`; see [`allow_burst`](Self::allow_burst)).
    pub const fn per_second(max_burst: NonZeroU32) -> Quota {
        Quota(governor::Quota::per_second(max_burst))
    }

    /// `max_burst` cells a minute, all of which may go at once.
    pub const fn per_minute(max_burst: NonZeroU32) -> Quota {
        Quota(governor::Quota::per_minute(max_burst))
    }

    /// `max_burst` cells an hour, all of which may go at once.
    pub const fn per_hour(max_burst: NonZeroU32) -> Quota {
        Quota(governor::Quota::per_hour(max_burst))
    }

    /// One cell every `period`, with a burst of 1; `None` for a zero period.
    pub fn with_period(period: Duration) -> Option<Quota> {
        governor::Quota::with_period(period).map(Quota)
    }

    /// The same rate, with at most `max_burst` cells at once.
    pub const fn allow_burst(self, max_burst: NonZeroU32) -> Quota {
        Quota(self.0.allow_burst(max_burst))
    }

    /// The time one cell takes to come back.
    pub const fn replenish_interval(&self) -> Duration {
        self.0.replenish_interval()
    }

    /// The most cells let through at once.
    pub const fn burst_size(&self) -> NonZeroU32 {
        self.0.burst_size()
    }
}

impl Quota {
    /// governor's quota, with the burst's span held to `MAX_SPAN_NANOS`.
    fn gcra_quota(self) -> governor::Quota {
        let burst = u128::from(self.burst_size().get());
        let span = self.replenish_interval().as_nanos() * burst;
        if span <= u128::from(MAX_SPAN_NANOS) {
            return self.0;
        }
        // At least 2^30 ns: the burst is below 2^32.
        let period = Duration::from_nanos((u128::from(MAX_SPAN_NANOS) / burst) as u64);
        governor::Quota::with_period(period)
            .expect("a period of at least 2^30 ns")
            .allow_burst(self.burst_size())
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("replenish_interval", &self.replenish_interval())
            .field("burst_size", &self.burst_size())
            .finish()
    }
}

/// A rate limit shared by the tasks that use it: a GCRA (governor's) with
/// the waiting done on multipool's timer, permits going to waiting tasks in
/// priority order, then in arrival order.
///
/// Clones share one limit (it is an `Arc` inside). Use it in a task with
/// [`until_ready`](Self::until_ready), without waiting with
/// [`check`](Self::check), or on spawns with
/// [`Spawn::rate_limit`](crate::Spawn::rate_limit); a whole pool takes one
/// with [`PoolBuilder::rate_limit`](crate::PoolBuilder::rate_limit).
///
/// The limiter reads the clock of the runtime it is first used in (for a
/// spawn, the runtime the task goes to; real time outside any), so paused
/// time drives it; use it within that runtime. See the [module docs](crate::limit) for the guarantees.
///
/// ```
/// # #[cfg(feature = "test-util")] { // paused time: `start_paused`
/// use std::num::NonZeroU32;
/// use multipool::limit::{Quota, RateLimiter};
///
/// let rt = multipool::Runtime::builder().workers(2).start_paused(true).build().unwrap();
/// rt.block_on(async {
///     // 10 a second, no burst.
///     let quota = Quota::per_second(NonZeroU32::new(10).unwrap())
///         .allow_burst(NonZeroU32::new(1).unwrap());
///     let limiter = RateLimiter::new(quota);
///     let start = multipool::time::Instant::now();
///     for _ in 0..5 {
///         limiter.until_ready().await;
///     }
///     // The first goes at once, then one every 100 ms (of paused time).
///     assert_eq!(start.elapsed(), std::time::Duration::from_millis(400));
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    quota: Quota,
    /// Made at the first use, with the clock of the runtime entered there
    /// (see `clock`); set at once for a pool's limiter.
    gcra: OnceLock<Gcra>,
    waiters: Mutex<Waiters>,
}

/// The tasks waiting for a permit. The *head* (the first of the most
/// urgent non-empty level) is the only waiter that asks GCRA for a cell
/// or sleeps on a timer; the others only wait to be woken when they
/// become the head.
#[derive(Default)]
struct Waiters {
    queues: PerLevel<VecDeque<usize>>,
    slots: Slab<Slot>,
    /// When the head expects its cell (on the limiter's clock), for what
    /// [`RateLimiter::check`] reports while others wait ahead.
    next_at: Option<Instant>,
}

struct Slot {
    level: usize,
    waker: Waker,
}

impl Waiters {
    fn head(&self) -> Option<usize> {
        levels().find_map(|level| self.queues[level].front().copied())
    }

    /// Whether a waiter of `level` or a more urgent one is queued.
    fn any_ahead_of(&self, level: usize) -> bool {
        self.queues[..=level].iter().any(|queue| !queue.is_empty())
    }

    fn push(&mut self, level: usize, waker: Waker) -> usize {
        let key = self.slots.insert(Slot { level, waker });
        self.queues[level].push_back(key);
        key
    }

    fn set_waker(&mut self, key: usize, waker: &Waker) {
        let slot = &mut self.slots[key];
        if !slot.waker.will_wake(waker) {
            slot.waker = waker.clone();
        }
    }

    /// Takes `key` out. Returns its waker (to drop outside the lock) and,
    /// if it was the head, the waker of the new head, which must be woken
    /// to take over.
    fn remove(&mut self, key: usize) -> (Waker, Option<Waker>) {
        let was_head = self.head() == Some(key);
        let slot = self.slots.remove(key);
        let queue = &mut self.queues[slot.level];
        if queue.front() == Some(&key) {
            queue.pop_front();
        } else if let Some(at) = queue.iter().position(|&queued| queued == key) {
            queue.remove(at);
        }
        let next = if was_head {
            self.next_at = None;
            self.head().map(|head| self.slots[head].waker.clone())
        } else {
            None
        };
        (slot.waker, next)
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// A cell was not free: returned by [`RateLimiter::check`].
///
/// ```
/// use std::num::NonZeroU32;
/// use multipool::limit::{Quota, RateLimiter};
///
/// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
/// assert!(limiter.check().is_ok());
/// let err = limiter.check().unwrap_err();
/// assert!(err.wait_time() <= std::time::Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    wait: Duration,
}

impl RateLimited {
    /// How long from the check until a cell is free: exact when nobody
    /// waits ahead of the caller, else a lower bound (the cell the first
    /// waiter expects).
    pub fn wait_time(&self) -> Duration {
        self.wait
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: no cell for another {:?}", self.wait)
    }
}

impl std::error::Error for RateLimited {}

/// The priority a waiter uses when none is given: that of the task being
/// polled on this thread, or Normal outside any task.
fn current_level() -> usize {
    with_current_task(|task| task.map(|meta| meta.priority()))
        .unwrap_or(Priority::Normal)
        .index()
}

impl RateLimiter {
    /// A limiter letting cells through at `quota`. Its clock is bound at
    /// its first use (see the type docs).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(50).unwrap()));
    /// let shared = limiter.clone(); // the same limit
    /// assert_eq!(shared.quota().burst_size().get(), 50);
    /// ```
    pub fn new(quota: Quota) -> RateLimiter {
        RateLimiter {
            shared: Arc::new(Shared {
                quota,
                gcra: OnceLock::new(),
                waiters: Mutex::new(Waiters::default()),
            }),
        }
    }

    /// A pool's limiter, bound to its runtime's clock from the start.
    pub(crate) fn with_clock(quota: Quota, clock: Arc<Clock>) -> RateLimiter {
        let limiter = RateLimiter::new(quota);
        let _ = limiter.shared.gcra.set(Gcra::direct_with_clock(
            quota.gcra_quota(),
            RuntimeClock::of(clock),
        ));
        limiter
    }

    /// The quota this limiter enforces.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let quota = Quota::per_minute(NonZeroU32::new(6).unwrap());
    /// assert_eq!(RateLimiter::new(quota).quota(), quota);
    /// ```
    pub fn quota(&self) -> Quota {
        self.shared.quota
    }

    /// How many tasks wait for a cell now (in [`until_ready`](Self::until_ready)
    /// or a rate-limited spawn).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// assert_eq!(limiter.num_waiting(), 0);
    /// ```
    pub fn num_waiting(&self) -> usize {
        self.shared.waiters.lock().len()
    }

    /// Takes a cell if one is free now and nobody of the current task's
    /// priority or above waits for one; never waits. Outside any task the
    /// priority is [`Priority::Normal`].
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Quota::per_hour(NonZeroU32::new(2).unwrap()));
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_err()); // the burst of 2 is spent
    /// ```
    pub fn check(&self) -> Result<(), RateLimited> {
        self.try_acquire(current_level(), None)
    }

    /// [`check`](Self::check) at `priority`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    /// use multipool::Priority;
    ///
    /// let limiter = RateLimiter::new(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    /// assert!(limiter.check_with(Priority::Low).is_ok());
    /// assert!(limiter.check_with(Priority::High).is_err());
    /// ```
    pub fn check_with(&self, priority: Priority) -> Result<(), RateLimited> {
        self.try_acquire(priority.index(), None)
    }

    /// Waits until a cell is free and takes it, at the current task's
    /// priority ([`Priority::Normal`] outside any task). See
    /// [`UntilReady`] for what waiting costs and how it ends.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1000).unwrap()));
    /// rt.block_on(async {
    ///     limiter.until_ready().await; // a burst of 1000: at once
    /// });
    /// ```
    pub fn until_ready(&self) -> UntilReady {
        UntilReady::new(self.clone(), None)
    }

    /// [`until_ready`](Self::until_ready) at `priority`: a waiting `High`
    /// gets its cell before any waiting `Normal`, which gets it before any
    /// waiting `Low`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use multipool::limit::{Quota, RateLimiter};
    /// use multipool::Priority;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1000).unwrap()));
    /// rt.block_on(limiter.until_ready_with(Priority::High));
    /// ```
    pub fn until_ready_with(&self, priority: Priority) -> UntilReady {
        UntilReady::new(self.clone(), Some(priority))
    }

    /// Whether `self` and `other` are the same limit (clones of one).
    pub(crate) fn same(&self, other: &RateLimiter) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A cell now, for a newcomer of `level`, or how long to wait. A spawn
    /// passes its target `pool`: a limiter first used there is bound to
    /// that pool's runtime, wherever `start` was called.
    pub(crate) fn try_acquire(&self, level: usize, pool: Option<&Pool>) -> Result<(), RateLimited> {
        let gcra = match pool {
            Some(pool) => self
                .shared
                .gcra_with(|| RuntimeClock::of(pool.runtime.clock.clone())),
            None => self.shared.gcra(),
        };
        let waiters = self.shared.waiters.lock();
        if waiters.any_ahead_of(level) {
            let now = gcra.clock().now_instant();
            let wait = waiters
                .next_at
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            return Err(RateLimited { wait });
        }
        gcra.check().map_err(|not_until| RateLimited {
            wait: not_until.wait_time_from(gcra.clock().now()),
        })
    }
}

impl Shared {
    /// The GCRA, bound (at the first use) to the runtime entered here.
    fn gcra(&self) -> &Gcra {
        self.gcra_with(RuntimeClock::current)
    }

    /// The GCRA, bound (at the first use) to `clock()`.
    fn gcra_with(&self, clock: impl FnOnce() -> RuntimeClock) -> &Gcra {
        self.gcra
            .get_or_init(|| Gcra::direct_with_clock(self.quota.gcra_quota(), clock()))
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RateLimiter");
        d.field("quota", &self.shared.quota);
        if let Some(gcra) = self.shared.gcra.get() {
            d.field("clock", gcra.clock());
        }
        d.field("waiting", &self.num_waiting()).finish()
    }
}

/// Waits for a cell of a [`RateLimiter`]: returned by
/// [`until_ready`](RateLimiter::until_ready) and
/// [`until_ready_with`](RateLimiter::until_ready_with).
///
/// * If nobody of its priority or above waits and a cell is free, the first
///   poll takes it.
/// * Otherwise it queues behind the waiters of its priority and above. Only
///   the first of the queue sleeps, on a multipool timer, until GCRA says
///   its cell is free; the others are not polled at all until they come
///   first. A waiter is polled a bounded number of times (when it queues,
///   when it comes first, when its timer fires, and once more each time a
///   more urgent newcomer overtakes it while it sleeps), never in a loop.
/// * Dropping it (cancelling) takes it out of the queue, and wakes the next
///   waiter if it was first: its turn passes on, nothing is lost. A cell is
///   taken only by a poll that returns `Ready`.
/// * As in any fair queue, a waiter that is first in line but no longer
///   polled (kept alive in a finished `select`, say) holds up the waiters
///   behind it: drop a waiter you stop polling.
///
/// ```
/// # #[cfg(feature = "test-util")] { // paused time: `start_paused`
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use multipool::limit::{Quota, RateLimiter};
///
/// let rt = multipool::Runtime::builder().workers(1).start_paused(true).build().unwrap();
/// rt.block_on(async {
///     let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
///     limiter.until_ready().await; // the burst
///     // The next cell is a second away: a timeout of 10 ms gives up,
///     // and dropping the waiter gives its turn back.
///     let waited = multipool::time::timeout(Duration::from_millis(10), limiter.until_ready()).await;
///     assert!(waited.is_err());
///     assert_eq!(limiter.num_waiting(), 0);
/// });
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct UntilReady {
    limiter: RateLimiter,
    /// `None`: the current task's, read at the first poll.
    priority: Option<Priority>,
    /// Its place in the queue, while it waits there.
    key: Option<usize>,
    /// The head's timer, kept to be re-armed rather than re-registered.
    sleep: Option<Sleep>,
    done: bool,
}

impl UntilReady {
    fn new(limiter: RateLimiter, priority: Option<Priority>) -> Self {
        UntilReady {
            limiter,
            priority,
            key: None,
            sleep: None,
            done: false,
        }
    }
}

impl Future for UntilReady {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(());
        }
        let level = match this.priority {
            Some(priority) => priority.index(),
            None => {
                let level = current_level();
                this.priority = Some(Priority::from_index(level as u8));
                level
            }
        };
        let shared = &*this.limiter.shared;
        let gcra = shared.gcra();
        loop {
            // Under the lock: take a cell, or queue, or (as the head) learn
            // how long to sleep.
            let wait = {
                let mut waiters = shared.waiters.lock();
                let outcome = match this.key {
                    None if waiters.any_ahead_of(level) => {
                        this.key = Some(waiters.push(level, cx.waker().clone()));
                        return Poll::Pending;
                    }
                    None => gcra.check().inspect_err(|_| {
                        this.key = Some(waiters.push(level, cx.waker().clone()));
                    }),
                    Some(key) => {
                        waiters.set_waker(key, cx.waker());
                        if waiters.head() != Some(key) {
                            return Poll::Pending;
                        }
                        gcra.check()
                    }
                };
                match outcome {
                    Ok(()) => {
                        this.done = true;
                        let Some(key) = this.key.take() else {
                            return Poll::Ready(());
                        };
                        let (own, next) = waiters.remove(key);
                        drop(waiters);
                        drop(own);
                        // Its timer's entry goes now, not when the future does.
                        this.sleep = None;
                        if let Some(next) = next {
                            next.wake();
                        }
                        return Poll::Ready(());
                    }
                    Err(not_until) => {
                        let now = gcra.clock().now_instant();
                        let wait = not_until.wait_time_from(Stamp(now));
                        waiters.next_at = now.checked_add(wait);
                        wait
                    }
                }
            };
            // The head sleeps on the timer of the runtime it runs in (the
            // wait measured there, so it means the same on either clock).
            let now = crate::time::now();
            let deadline = now.checked_add(wait).unwrap_or_else(|| far_future(now));
            let sleep = match &mut this.sleep {
                Some(sleep) => {
                    Pin::new(&mut *sleep).reset(deadline);
                    sleep
                }
                None => this.sleep.insert(Sleep::new(deadline)),
            };
            if Pin::new(sleep).poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The deadline has passed already: ask again.
        }
    }
}

impl Drop for UntilReady {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let (own, next) = self.limiter.shared.waiters.lock().remove(key);
            drop(own);
            if let Some(next) = next {
                next.wake();
            }
        }
    }
}

impl fmt::Debug for UntilReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.done {
            "done"
        } else if self.key.is_some() {
            "waiting"
        } else {
            "not polled"
        };
        f.debug_struct("UntilReady")
            .field("priority", &self.priority)
            .field("state", &state)
            .finish()
    }
}
