//! [`RuntimeMetrics`]: what a pool has counted, read on demand; and the
//! latency [`Histogram`]s per priority.
//!
//! Invariants:
//! * Reading costs the reader only: every figure is summed from per-worker
//!   counters (see `scheduler::counters`) when asked for; no shared counter
//!   is written on the hot path.
//! * The outcome counts add up: `spawned_tasks_count()` equals the sum of
//!   the seven outcome counts plus the tasks still alive, read at a moment
//!   when nothing spawns or ends (counters are read one after another, so
//!   a busy runtime can be off by the tasks that moved in between).
//! * A histogram's buckets are fixed: four per power of two of nanoseconds
//!   (so a percentile is exact to within 25%), from 0 to 2^40 ns (18
//!   minutes); longer values land in the last bucket. Each worker writes
//!   its own buckets; a [`Histogram`] is a sum of them at one moment.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use super::scheduler::counters::{SlotCounts, SlotHistograms};
use super::scheduler::Pool;
use super::shared::RuntimeShared;
use super::task::Outcome;
use crate::priority::{levels, PerLevel};
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::Priority;

/// The clock of the latency histograms: the CPU's time-stamp counter where
/// it is usable (two stamps per poll and one per wake-up must cost a few
/// nanoseconds, not a clock call each), else the monotonic clock.
/// Calibrated once, when the first runtime with histograms is built.
#[cfg(not(miri))]
pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Under miri, which cannot run quanta's `cpuid`/`rdtsc` assembly: the
/// standard clock, in nanoseconds since the first stamp.
#[cfg(miri)]
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Readies the clock (calibrates it), so the first poll does not pay.
pub(crate) fn calibrate_clock() {
    #[cfg(not(miri))]
    clock();
    #[cfg(miri)]
    epoch();
}

/// A time stamp of [`clock`], in its raw unit.
#[inline]
pub(crate) fn now_ticks() -> u64 {
    #[cfg(not(miri))]
    return clock().raw();
    #[cfg(miri)]
    return epoch().elapsed().as_nanos() as u64;
}

thread_local! {
    /// Wake-ups and spawns this thread makes before its next sample (see
    /// [`sample_due`]).
    static SAMPLE_COUNTDOWN: Cell<u32> = const { Cell::new(0) };
}

/// Whether this wake-up or spawn is sampled for the latency histograms:
/// every `one_in`-th on each thread (the first one included). A
/// per-thread countdown rather than a shared counter: sampling must not
/// add a shared write to the wake path. The countdown is shared by the
/// runtimes a thread serves, so what is left of it is capped at this
/// runtime's period: a runtime that samples every wake-up
/// (`latency_sampling(1)`) stays exact next to one that samples rarely.
#[inline]
pub(crate) fn sample_due(one_in: u32) -> bool {
    let period = one_in.saturating_sub(1);
    SAMPLE_COUNTDOWN
        .try_with(|countdown| match countdown.get().min(period) {
            0 => {
                countdown.set(period);
                true
            }
            left => {
                countdown.set(left - 1);
                false
            }
        })
        .unwrap_or(false)
}

/// A time stamp for [`TaskMeta::scheduled_at`](crate::runtime::task::TaskMeta):
/// never 0, which stands for "this poll is not sampled".
#[inline]
pub(crate) fn now_stamp() -> u64 {
    now_ticks().max(1)
}

/// The time from stamp `start` to stamp `end`, in the clock's raw unit
/// (zero if `end` is earlier: stamps from two cores may be that far
/// apart). The histograms record raw units and convert at read.
#[inline]
pub(crate) fn ticks_between(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}

/// `ticks` of the clock in nanoseconds.
pub(crate) fn ticks_to_nanos(ticks: u64) -> u64 {
    #[cfg(not(miri))]
    return clock().delta_as_nanos(0, ticks);
    #[cfg(miri)]
    return ticks;
}

/// Sub-buckets per power of two (as a shift: 2^2 = 4).
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Highest power of two with buckets of its own.
const MAX_POW: u32 = 40;
/// Number of buckets.
pub(crate) const BUCKETS: usize = ((MAX_POW - SUB_BITS + 2) as u64 * SUB) as usize;

/// The bucket of a value of `ns` nanoseconds.
fn bucket_of(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let pow = 63 - ns.leading_zeros(); // >= SUB_BITS
    if pow > MAX_POW {
        return BUCKETS - 1;
    }
    let sub = (ns >> (pow - SUB_BITS)) & (SUB - 1);
    ((pow - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The smallest value of bucket `index`, in nanoseconds.
fn bucket_start(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let pow = (index / SUB) as u32 + SUB_BITS - 1;
    let sub = index % SUB;
    (SUB + sub) << (pow - SUB_BITS)
}

/// The buckets of one histogram, written by one worker, in the raw unit of
/// the histograms' [`clock`] (converted to nanoseconds when read, so a
/// poll pays no conversion).
pub(crate) struct HistogramCells {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
}

impl Default for HistogramCells {
    fn default() -> Self {
        HistogramCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl HistogramCells {
    /// Records one value, in the clock's raw unit. Only the owning worker
    /// calls it.
    #[inline]
    pub(crate) fn record(&self, value: u64) {
        let bucket = &self.buckets[bucket_of(value)];
        bucket.store(bucket.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed).saturating_add(value);
        self.sum.store(sum, Ordering::Relaxed);
    }
}

/// A latency distribution: how many values fell in each of fixed,
/// logarithmic buckets (four per power of two, so within 25%).
///
/// A snapshot, summed over a pool's workers when
/// [`RuntimeMetrics::schedule_latency`] or [`RuntimeMetrics::poll_time`]
/// is called.
///
/// ```
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder()
///     .workers(2)
///     .enable_latency_histograms()
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     for _ in 0..100 {
///         multipool::spawn(async {}).priority(Priority::High).await.unwrap();
///     }
/// });
/// let latency = rt.handle().metrics().schedule_latency(Priority::High).unwrap();
/// // One spawn in 64 of this thread is sampled: spawns 1 and 65.
/// assert_eq!(latency.count(), 2);
/// assert!(latency.percentile(0.5) <= latency.percentile(0.99));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    /// Where each bucket starts, in nanoseconds, and where the last ends
    /// (`u64::MAX`): `BUCKETS + 1` entries.
    starts_ns: Box<[u64]>,
    sum_ns: u64,
}

impl Histogram {
    /// The sum of `cells`, whose raw unit `to_ns` converts to nanoseconds.
    fn sum_of<'a>(
        cells: impl IntoIterator<Item = &'a HistogramCells>,
        to_ns: impl Fn(u64) -> u64,
    ) -> Self {
        let mut counts = vec![0u64; BUCKETS].into_boxed_slice();
        let mut sum = 0u64;
        for cell in cells {
            for (total, bucket) in counts.iter_mut().zip(cell.buckets.iter()) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum = sum.saturating_add(cell.sum.load(Ordering::Relaxed));
        }
        let starts_ns = (0..=BUCKETS)
            .map(|index| {
                if index == BUCKETS {
                    u64::MAX
                } else {
                    to_ns(bucket_start(index))
                }
            })
            .collect();
        Histogram {
            counts,
            starts_ns,
            sum_ns: to_ns(sum),
        }
    }

    /// Number of values recorded: for the runtime's histograms, the number
    /// of sampled polls (see
    /// [`Builder::latency_sampling`](crate::Builder::latency_sampling)).
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the values recorded (saturating at `u64::MAX` ns): the
    /// `_sum` of an exported summary.
    #[cfg(feature = "metrics")]
    pub(crate) fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The mean of the values recorded (zero when there are none).
    pub fn mean(&self) -> Duration {
        match self.count() {
            0 => Duration::ZERO,
            count => Duration::from_nanos(self.sum_ns / count),
        }
    }

    /// The value below which a fraction `q` of the values fall: the upper
    /// end of the bucket that holds the `q`-th value (within 25% of it).
    /// Zero when there are no values.
    ///
    /// # Panics
    ///
    /// If `q` is not within `0.0..=1.0` (NaN included).
    pub fn percentile(&self, q: f64) -> Duration {
        assert!(
            (0.0..=1.0).contains(&q),
            "a percentile is a fraction within 0.0..=1.0, got {q}"
        );
        let count = self.count();
        if count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(self.starts_ns[index + 1].saturating_sub(1).max(1));
            }
        }
        unreachable!("rank is at most the count")
    }

    /// The non-empty buckets, in order: each a range of durations and how
    /// many values fell in it.
    pub fn buckets(&self) -> impl Iterator<Item = (std::ops::Range<Duration>, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(index, &n)| {
                let end = if index + 1 == BUCKETS {
                    Duration::MAX
                } else {
                    Duration::from_nanos(self.starts_ns[index + 1])
                };
                (Duration::from_nanos(self.starts_ns[index])..end, n)
            })
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("mean", &self.mean())
            .field("p50", &self.percentile(0.5))
            .field("p99", &self.percentile(0.99))
            .finish()
    }
}

/// What a pool has counted, read when asked: gauges, counters per worker,
/// per priority and per outcome, and the latency histograms. Names follow
/// tokio's `RuntimeMetrics` where they mean the same; all of it is stable
/// (no `tokio_unstable`).
///
/// Get it from [`Handle::metrics`](crate::Handle::metrics); it describes
/// that handle's pool (the default pool for
/// [`Runtime::handle`](crate::Runtime::handle); see
/// [`Handle::named_pool`](crate::Handle::named_pool)), plus the runtime's
/// blocking pool. It is cheap to clone and to keep; each call reads the
/// counters at that moment.
///
/// With the `metrics` feature, `export` and `export_every` send all of it
/// to the `metrics` crate's facade; see the `metrics_export` module for
/// the names.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     for _ in 0..1_000 {
///         multipool::spawn(async {}).await.unwrap();
///     }
/// });
/// let metrics = rt.handle().metrics();
/// assert_eq!(metrics.spawned_tasks_count(), 1_000);
/// assert_eq!(metrics.completed_count(), 1_000);
/// drop(rt); // workers publish their poll counts as they stop (and when they park)
/// let polls: u64 = (0..metrics.max_workers()).map(|w| metrics.worker_poll_count(w)).sum();
/// assert!(polls >= 1_000);
/// ```
#[derive(Clone)]
pub struct RuntimeMetrics {
    pool: Arc<Pool>,
    shared: Arc<RuntimeShared>,
}

impl RuntimeMetrics {
    pub(crate) fn new(pool: Arc<Pool>, shared: Arc<RuntimeShared>) -> Self {
        RuntimeMetrics { pool, shared }
    }

    /// The name of the pool described: the `pool` label of exported
    /// metrics.
    #[cfg(feature = "metrics")]
    pub(crate) fn pool_name(&self) -> &str {
        &self.pool.name
    }

    /// Whether the runtime has shut down or begun to.
    #[cfg(feature = "metrics")]
    pub(crate) fn is_shutdown(&self) -> bool {
        !self.pool.accepts_spawns()
    }

    fn worker(&self, worker: usize) -> &SlotCounts {
        assert!(
            worker < self.pool.max_workers(),
            "worker index {worker} out of range: the pool has {} worker slots",
            self.pool.max_workers()
        );
        self.pool.slot_counts(worker)
    }

    fn sum(&self, f: impl Fn(&SlotCounts) -> &AtomicU64) -> u64 {
        self.pool.sum_counts(|slot| f(slot).load(Ordering::Acquire))
    }

    // ---- Gauges ----

    /// Worker threads running now (between
    /// [`min_workers`](Self::min_workers) and
    /// [`max_workers`](Self::max_workers)).
    pub fn num_workers(&self) -> usize {
        self.pool.num_workers()
    }

    /// The fewest workers the pool runs.
    pub fn min_workers(&self) -> usize {
        self.pool.min_workers()
    }

    /// The most workers the pool runs: the number of worker slots, and the
    /// bound of every per-worker index.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    /// Tasks spawned and not yet ended (completed or cancelled).
    pub fn num_alive_tasks(&self) -> usize {
        self.pool.num_alive()
    }

    /// Tasks waiting in the pool's shared queues (spawned or woken from
    /// outside its workers and not yet picked up). tokio's name.
    pub fn global_queue_depth(&self) -> usize {
        self.pool.injector_len()
    }

    /// Tasks queued on worker `worker`: its local queues and the tasks
    /// placed on or pinned to it. A dormant slot counts zero.
    ///
    /// # Panics
    ///
    /// If `worker >= max_workers()`.
    pub fn worker_local_queue_depth(&self, worker: usize) -> usize {
        self.worker(worker);
        self.pool.worker_load(worker)
    }

    /// Workers currently parked (idle).
    pub fn num_parked_workers(&self) -> usize {
        self.pool.num_parked()
    }

    /// Workers found stuck in one poll for 2 ms or more at the pool
    /// monitor's last look (only pools with a monitor: elastic ones, and
    /// those with [`Builder::on_slow_poll`](crate::Builder::on_slow_poll);
    /// others report 0).
    pub fn num_blocked_workers(&self) -> usize {
        self.pool.num_blocked_workers()
    }

    /// Workers the pool has started since it was built (the first
    /// `min_workers` included). A worker counts from the moment the pool
    /// decides to start it, before [`num_workers`](Self::num_workers)
    /// includes it. (A start the OS refuses is counted back out.)
    pub fn workers_started(&self) -> usize {
        self.pool.workers_started()
    }

    /// Workers that have retired after the idle timeout. A worker counts
    /// from the moment it decides to retire, before
    /// [`num_workers`](Self::num_workers) drops.
    pub fn workers_retired(&self) -> usize {
        self.pool.workers_retired()
    }

    /// Tasks waiting to start (spawned, not yet polled) in a pool with
    /// [`Builder::max_queued`](crate::Builder::max_queued); 0 for an
    /// unbounded pool, which does not count them.
    pub fn num_queued(&self) -> usize {
        self.pool.num_queued()
    }

    /// The pool's queue bound, if it has one.
    pub fn max_queued(&self) -> Option<usize> {
        self.pool.max_queued()
    }

    /// Timers registered in the pool: sleeps, time-outs, intervals and task
    /// deadlines that have been polled and not yet dropped.
    pub fn num_timers(&self) -> usize {
        self.pool.timers.len()
    }

    /// Threads of the runtime's blocking pool, busy or idle.
    pub fn num_blocking_threads(&self) -> usize {
        self.shared.blocking.num_threads()
    }

    /// `spawn_blocking` calls waiting for a blocking thread.
    pub fn blocking_queue_depth(&self) -> usize {
        self.shared.blocking.queue_depth()
    }

    // ---- Tasks, by priority and by outcome ----

    /// Every spawn the pool received, refused ones included (they count
    /// as rejected or shut down), so that this equals the sum of the
    /// outcome counts plus [`num_alive_tasks`](Self::num_alive_tasks).
    pub fn spawned_tasks_count(&self) -> u64 {
        levels()
            .map(|level| self.sum(|slot| &slot.spawned[level]))
            .sum()
    }

    /// Spawns at `priority` (`spawn_local` and `spawn_blocking` tasks count
    /// as [`Priority::Normal`]).
    pub fn spawned_count(&self, priority: Priority) -> u64 {
        self.sum(|slot| &slot.spawned[priority.index()])
    }

    /// Polls of tasks of `priority`, summed over the workers (as of their
    /// last publication; see [`worker_poll_count`](Self::worker_poll_count)).
    /// Only polls by the pool's workers count: a `spawn_blocking` call runs
    /// on the blocking pool.
    pub fn poll_count(&self, priority: Priority) -> u64 {
        self.sum(|slot| &slot.polls[priority.index()])
    }

    /// Tasks that ended with `outcome`.
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.sum(|slot| &slot.ended[outcome.index()])
    }

    /// Tasks whose future returned its output.
    pub fn completed_count(&self) -> u64 {
        self.outcome_count(Outcome::Completed)
    }

    /// Tasks cancelled by [`JoinHandle::abort`](crate::JoinHandle::abort),
    /// or for going over a CPU limit
    /// ([`Spawn::cpu_budget`](crate::Spawn::cpu_budget),
    /// [`Spawn::max_poll`](crate::Spawn::max_poll)).
    pub fn cancelled_count(&self) -> u64 {
        self.outcome_count(Outcome::Cancelled)
    }

    /// Tasks that panicked.
    pub fn panicked_count(&self) -> u64 {
        self.outcome_count(Outcome::Panicked)
    }

    /// Tasks whose [`Spawn::timeout`](crate::Spawn::timeout) passed.
    pub fn timed_out_count(&self) -> u64 {
        self.outcome_count(Outcome::TimedOut)
    }

    /// Spawns the pool refused (a full queue, a zero timeout or CPU limit,
    /// a full blocking pool).
    pub fn rejected_count(&self) -> u64 {
        self.outcome_count(Outcome::Rejected)
    }

    /// Tasks cancelled, or spawns refused, because the runtime shut down.
    pub fn shutdown_count(&self) -> u64 {
        self.outcome_count(Outcome::Shutdown)
    }

    /// Tasks cancelled for holding more than their
    /// [`Spawn::memory_limit`](crate::Spawn::memory_limit).
    pub fn memory_exceeded_count(&self) -> u64 {
        self.outcome_count(Outcome::MemoryExceeded)
    }

    // ---- Per worker ----

    /// Polls by worker `worker` since the pool was built. A worker
    /// publishes its poll counts when it parks and about every 100 µs
    /// while busy (it counts them in its own state on the hot path), so a
    /// busy worker's figure can lag that much; this holds for
    /// [`poll_count`](Self::poll_count) too.
    ///
    /// # Panics
    ///
    /// If `worker >= max_workers()` (as every per-worker figure).
    pub fn worker_poll_count(&self, worker: usize) -> u64 {
        let slot = self.worker(worker);
        levels()
            .map(|level| slot.polls[level].load(Ordering::Relaxed))
            .sum()
    }

    /// Tasks worker `worker` took from its siblings' queues.
    pub fn worker_steal_count(&self, worker: usize) -> u64 {
        self.worker(worker).stolen.load(Ordering::Relaxed)
    }

    /// Steals by worker `worker` that took at least one task (each takes
    /// a batch).
    pub fn worker_steal_operations(&self, worker: usize) -> u64 {
        self.worker(worker).steals.load(Ordering::Relaxed)
    }

    /// Times worker `worker` parked.
    pub fn worker_park_count(&self, worker: usize) -> u64 {
        self.worker(worker).parks.load(Ordering::Relaxed)
    }

    /// Times worker `worker` woke and parked again without polling a task.
    pub fn worker_noop_count(&self, worker: usize) -> u64 {
        self.worker(worker).noops.load(Ordering::Relaxed)
    }

    /// Time worker `worker` spent awake (polling, searching, firing
    /// timers) since the pool was built, as of its last park.
    pub fn worker_total_busy_duration(&self, worker: usize) -> Duration {
        Duration::from_nanos(self.worker(worker).busy_ns.load(Ordering::Relaxed))
    }

    // ---- Latency histograms ----

    /// The schedule latency of tasks of `priority`: from a spawn or wake-up
    /// to the start of the poll, for the polls sampled (one in 64 by
    /// default, see [`Builder::latency_sampling`](crate::Builder::latency_sampling)).
    /// `None` unless the runtime was built with
    /// [`Builder::enable_latency_histograms`](crate::Builder::enable_latency_histograms).
    /// This is the figure that shows what a priority buys.
    pub fn schedule_latency(&self, priority: Priority) -> Option<Histogram> {
        self.histogram(|slot| &slot.schedule_latency, priority)
    }

    /// The duration of the sampled polls of tasks of `priority`; sampled
    /// and `None` as for [`schedule_latency`](Self::schedule_latency).
    pub fn poll_time(&self, priority: Priority) -> Option<Histogram> {
        self.histogram(|slot| &slot.poll_time, priority)
    }

    fn histogram(
        &self,
        which: impl Fn(&SlotHistograms) -> &PerLevel<crate::runtime::metrics::HistogramCells>,
        priority: Priority,
    ) -> Option<Histogram> {
        let slots = self.pool.histograms()?;
        Some(Histogram::sum_of(
            slots.iter().map(|slot| &which(slot)[priority.index()]),
            ticks_to_nanos,
        ))
    }
}

// As `Handle`'s (see `Runtime`'s): reading counters leaves nothing half-done.
impl std::panic::UnwindSafe for RuntimeMetrics {}
impl std::panic::RefUnwindSafe for RuntimeMetrics {}

impl fmt::Debug for RuntimeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeMetrics")
            .field("pool", &self.pool.name)
            .field("num_workers", &self.num_workers())
            .field("num_alive_tasks", &self.num_alive_tasks())
            .field("spawned_tasks_count", &self.spawned_tasks_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        assert_eq!(bucket_of(0), 0);
        for index in 0..BUCKETS - 1 {
            let start = bucket_start(index);
            assert_eq!(bucket_of(start), index, "start of bucket {index}");
            let next = bucket_start(index + 1);
            assert!(next > start);
            assert_eq!(bucket_of(next - 1), index, "end of bucket {index}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let cells = HistogramCells::default();
        // 1..=1000 µs, uniformly (in a raw unit of nanoseconds).
        for us in 1..=1000u64 {
            cells.record(us * 1000);
        }
        let histogram = Histogram::sum_of([&cells], |ns| ns);
        assert_eq!(histogram.count(), 1000);
        assert_eq!(histogram.mean(), Duration::from_nanos(500_500));
        for (q, exact) in [(0.5, 500u64), (0.9, 900), (0.99, 990), (1.0, 1000)] {
            let got = histogram.percentile(q).as_nanos() as f64;
            let exact = (exact * 1000) as f64;
            assert!(
                got >= exact && got <= exact * 1.25,
                "p{q}: {got} ns, exact {exact} ns"
            );
        }
        assert_eq!(histogram.buckets().map(|(_, n)| n).sum::<u64>(), 1000);
    }

    #[test]
    fn empty_and_extreme_values() {
        let cells = HistogramCells::default();
        let histogram = Histogram::sum_of([&cells], |ns| ns);
        assert_eq!(histogram.percentile(0.99), Duration::ZERO);
        assert_eq!(histogram.mean(), Duration::ZERO);
        cells.record(u64::MAX);
        cells.record(0);
        let histogram = Histogram::sum_of([&cells], |ns| ns);
        assert_eq!(histogram.count(), 2);
        assert!(histogram.percentile(1.0) > Duration::from_secs(60));
        // A raw unit of a third of a nanosecond (a 3 GHz counter).
        let histogram = Histogram::sum_of([&cells], |ticks| ticks / 3);
        assert_eq!(histogram.count(), 2);
    }

    #[test]
    #[should_panic(expected = "within 0.0..=1.0")]
    fn a_percentile_outside_zero_to_one_panics() {
        Histogram::sum_of([], |ns| ns).percentile(f64::NAN);
    }
}
