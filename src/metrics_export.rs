//! [`RuntimeMetrics`] sent to the [`metrics`] crate's facade (feature
//! `metrics`): [`RuntimeMetrics::export`] records the pool's figures once,
//! [`RuntimeMetrics::export_every`] does it on a period from a thread of its
//! own. Install any `metrics` recorder (Prometheus, StatsD, OpenTelemetry,
//! ...); multipool ships none.
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! rt.block_on(async {
//!     for _ in 0..100 {
//!         multipool::spawn(async {}).await.unwrap();
//!     }
//! });
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // Usually a global recorder; here one for this thread.
//! metrics::with_local_recorder(&recorder, || rt.handle().metrics().export());
//! let spawned = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     let key = key.key();
//!     key.name() == "multipool_spawned_tasks_total"
//!         && key.labels().any(|l| l.key() == "priority" && l.value() == "normal")
//! });
//! assert_eq!(spawned.unwrap().3, DebugValue::Counter(100));
//! ```
//!
//! # What is recorded
//!
//! Every metric has a `pool` label (the pool's name, `"default"` for the
//! runtime's own pool; see [`Handle::named_pool`](crate::Handle::named_pool)),
//! except the blocking pool's two gauges, which belong to the whole runtime.
//! `priority` is `high`, `normal` or `low`; `outcome` is `completed`,
//! `cancelled`, `panicked`, `timed_out`, `rejected` or `shutdown`; `worker`
//! is the worker's index.
//!
//! | name | kind | labels | from |
//! |---|---|---|---|
//! | `multipool_workers` | gauge | pool | [`num_workers`](RuntimeMetrics::num_workers) |
//! | `multipool_min_workers`, `multipool_max_workers` | gauge | pool | [`min_workers`](RuntimeMetrics::min_workers), [`max_workers`](RuntimeMetrics::max_workers) |
//! | `multipool_parked_workers` | gauge | pool | [`num_parked_workers`](RuntimeMetrics::num_parked_workers) |
//! | `multipool_blocked_workers` | gauge | pool | [`num_blocked_workers`](RuntimeMetrics::num_blocked_workers) |
//! | `multipool_workers_started_total` | counter | pool | [`workers_started`](RuntimeMetrics::workers_started) |
//! | `multipool_workers_retired_total` | counter | pool | [`workers_retired`](RuntimeMetrics::workers_retired) |
//! | `multipool_alive_tasks` | gauge | pool | [`num_alive_tasks`](RuntimeMetrics::num_alive_tasks) |
//! | `multipool_global_queue_depth` | gauge | pool | [`global_queue_depth`](RuntimeMetrics::global_queue_depth) |
//! | `multipool_queued_tasks` | gauge | pool | [`num_queued`](RuntimeMetrics::num_queued) |
//! | `multipool_max_queued` | gauge | pool | [`max_queued`](RuntimeMetrics::max_queued) (only for a bounded pool) |
//! | `multipool_timers` | gauge | pool | [`num_timers`](RuntimeMetrics::num_timers) |
//! | `multipool_blocking_threads` | gauge | — | [`num_blocking_threads`](RuntimeMetrics::num_blocking_threads) |
//! | `multipool_blocking_queue_depth` | gauge | — | [`blocking_queue_depth`](RuntimeMetrics::blocking_queue_depth) |
//! | `multipool_spawned_tasks_total` | counter | pool, priority | [`spawned_count`](RuntimeMetrics::spawned_count) |
//! | `multipool_polls_total` | counter | pool, priority | [`poll_count`](RuntimeMetrics::poll_count) |
//! | `multipool_tasks_ended_total` | counter | pool, outcome | [`outcome_count`](RuntimeMetrics::outcome_count) |
//! | `multipool_worker_local_queue_depth` | gauge | pool, worker | [`worker_local_queue_depth`](RuntimeMetrics::worker_local_queue_depth) |
//! | `multipool_worker_polls_total` | counter | pool, worker | [`worker_poll_count`](RuntimeMetrics::worker_poll_count) |
//! | `multipool_worker_stolen_tasks_total` | counter | pool, worker | [`worker_steal_count`](RuntimeMetrics::worker_steal_count) |
//! | `multipool_worker_steals_total` | counter | pool, worker | [`worker_steal_operations`](RuntimeMetrics::worker_steal_operations) |
//! | `multipool_worker_parks_total` | counter | pool, worker | [`worker_park_count`](RuntimeMetrics::worker_park_count) |
//! | `multipool_worker_noops_total` | counter | pool, worker | [`worker_noop_count`](RuntimeMetrics::worker_noop_count) |
//! | `multipool_worker_busy_microseconds_total` | counter | pool, worker | [`worker_total_busy_duration`](RuntimeMetrics::worker_total_busy_duration) |
//! | `multipool_schedule_latency_seconds` | gauge | pool, priority, quantile | [`schedule_latency`](RuntimeMetrics::schedule_latency) |
//! | `multipool_schedule_latency_seconds_count` | counter | pool, priority | its [`count`](crate::Histogram::count) |
//! | `multipool_schedule_latency_seconds_sum` | gauge | pool, priority | the sum of its values |
//! | `multipool_poll_time_seconds` (and `_count`, `_sum`) | as above | as above | [`poll_time`](RuntimeMetrics::poll_time) |
//!
//! Per-worker metrics cover the first `min_workers` slots and every other
//! slot that has done anything (a slot of an elastic pool that never ran a
//! worker records nothing).
//! Counters are recorded with [`Counter::absolute`](metrics::Counter::absolute):
//! multipool's counts only grow, and a recorder keeps the largest value
//! it was given. Busy time is a counter of whole microseconds, because the
//! facade's counters hold integers (a `_seconds` gauge would look like a
//! drop to zero at every restart, where a counter's reset is understood).
//! Each export also describes every name (help text and unit).
//!
//! # Latency histograms as summaries
//!
//! With [`Builder::enable_latency_histograms`](crate::Builder::enable_latency_histograms),
//! each priority's schedule latency and poll time are recorded too. A
//! [`Histogram`] holds counts per bucket, while the
//! facade's histograms take raw samples: replaying the buckets as samples
//! would cost one call per value and count every value again at each
//! export. They are recorded as a Prometheus *summary* is made: the
//! quantiles 0.5, 0.9 and 0.99 as gauges (in seconds, label `quantile`,
//! each within 25% like [`Histogram::percentile`](crate::Histogram::percentile)),
//! with `_count` (a counter) and `_sum` (a gauge in seconds: the facade's
//! counters hold integers). `rate(..._sum) / rate(..._count)` is the mean
//! over a window. The quantiles are over the pool's whole life, not a
//! sliding window, and a priority that has recorded nothing yet has no
//! quantiles (only `_count` and `_sum`, at 0); a pool without histograms
//! records none of these.
//!
//! # Exporting on a period
//!
//! [`RuntimeMetrics::export_every`] starts a plain thread (named
//! `multipool-metrics`) that exports at once and then once per period: it
//! never takes a worker's time, and it exports the pool's figures even
//! when every worker is stuck. It stops when its [`ExportHandle`] is
//! dropped (at once: it is woken, not left to its next tick), and by
//! itself at its first tick after the runtime shut down, after a last
//! export.
//!
//! Two runtimes in one process each have a pool called `"default"`: their
//! metrics would share names and labels, so export one of them only, or
//! name the pools apart.

use std::fmt;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge, Label, SharedString, Unit};

use crate::runtime::Outcome;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::{Histogram, Priority, RuntimeMetrics};

const WORKERS: &str = "multipool_workers";
const MIN_WORKERS: &str = "multipool_min_workers";
const MAX_WORKERS: &str = "multipool_max_workers";
const PARKED_WORKERS: &str = "multipool_parked_workers";
const BLOCKED_WORKERS: &str = "multipool_blocked_workers";
const WORKERS_STARTED: &str = "multipool_workers_started_total";
const WORKERS_RETIRED: &str = "multipool_workers_retired_total";
const ALIVE_TASKS: &str = "multipool_alive_tasks";
const GLOBAL_QUEUE_DEPTH: &str = "multipool_global_queue_depth";
const QUEUED_TASKS: &str = "multipool_queued_tasks";
const MAX_QUEUED: &str = "multipool_max_queued";
const TIMERS: &str = "multipool_timers";
const BLOCKING_THREADS: &str = "multipool_blocking_threads";
const BLOCKING_QUEUE_DEPTH: &str = "multipool_blocking_queue_depth";
const SPAWNED: &str = "multipool_spawned_tasks_total";
const POLLS: &str = "multipool_polls_total";
const ENDED: &str = "multipool_tasks_ended_total";
const WORKER_QUEUE_DEPTH: &str = "multipool_worker_local_queue_depth";
const WORKER_POLLS: &str = "multipool_worker_polls_total";
const WORKER_STOLEN: &str = "multipool_worker_stolen_tasks_total";
const WORKER_STEALS: &str = "multipool_worker_steals_total";
const WORKER_PARKS: &str = "multipool_worker_parks_total";
const WORKER_NOOPS: &str = "multipool_worker_noops_total";
const WORKER_BUSY: &str = "multipool_worker_busy_microseconds_total";

/// A summary's names: the quantiles, `_count`, `_sum`.
struct Summary {
    name: &'static str,
    count: &'static str,
    sum: &'static str,
    help: &'static str,
}

const SCHEDULE_LATENCY: Summary = Summary {
    name: "multipool_schedule_latency_seconds",
    count: "multipool_schedule_latency_seconds_count",
    sum: "multipool_schedule_latency_seconds_sum",
    help: "Time from a task's spawn or wake-up to the start of its poll, per priority",
};

const POLL_TIME: Summary = Summary {
    name: "multipool_poll_time_seconds",
    count: "multipool_poll_time_seconds_count",
    sum: "multipool_poll_time_seconds_sum",
    help: "Duration of each poll, per priority of the polled task",
};

/// The quantiles exported for each latency histogram, and their labels.
const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

const OUTCOMES: [Outcome; 7] = [
    Outcome::Completed,
    Outcome::Cancelled,
    Outcome::Panicked,
    Outcome::TimedOut,
    Outcome::MemoryExceeded,
    Outcome::Rejected,
    Outcome::Shutdown,
];

fn priority_label(priority: Priority) -> &'static str {
    match priority {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Cancelled => "cancelled",
        Outcome::Panicked => "panicked",
        Outcome::TimedOut => "timed_out",
        Outcome::MemoryExceeded => "memory_exceeded",
        Outcome::Rejected => "rejected",
        Outcome::Shutdown => "shutdown",
    }
}

/// Help text and units for every name, given to the recorder at each
/// export (a recorder keeps the last; it costs a map insert per name).
fn describe() {
    describe_gauge!(WORKERS, Unit::Count, "Worker threads running now");
    describe_gauge!(MIN_WORKERS, Unit::Count, "The fewest workers the pool runs");
    describe_gauge!(MAX_WORKERS, Unit::Count, "The most workers the pool runs");
    describe_gauge!(PARKED_WORKERS, Unit::Count, "Workers parked (idle)");
    describe_gauge!(
        BLOCKED_WORKERS,
        Unit::Count,
        "Workers stuck in one poll for 2 ms or more at the monitor's last look"
    );
    describe_counter!(WORKERS_STARTED, Unit::Count, "Workers started");
    describe_counter!(
        WORKERS_RETIRED,
        Unit::Count,
        "Workers retired after the idle timeout"
    );
    describe_gauge!(ALIVE_TASKS, Unit::Count, "Tasks spawned and not yet ended");
    describe_gauge!(
        GLOBAL_QUEUE_DEPTH,
        Unit::Count,
        "Tasks waiting in the pool's shared queues"
    );
    describe_gauge!(
        QUEUED_TASKS,
        Unit::Count,
        "Tasks spawned and not yet polled, in a pool with a queue bound"
    );
    describe_gauge!(MAX_QUEUED, Unit::Count, "The pool's queue bound");
    describe_gauge!(TIMERS, Unit::Count, "Timers registered in the pool");
    describe_gauge!(
        BLOCKING_THREADS,
        Unit::Count,
        "Threads of the runtime's blocking pool"
    );
    describe_gauge!(
        BLOCKING_QUEUE_DEPTH,
        Unit::Count,
        "spawn_blocking calls waiting for a thread"
    );
    describe_counter!(SPAWNED, Unit::Count, "Spawns, refused ones included");
    describe_counter!(POLLS, Unit::Count, "Polls of tasks");
    describe_counter!(ENDED, Unit::Count, "Tasks ended, per outcome");
    describe_gauge!(WORKER_QUEUE_DEPTH, Unit::Count, "Tasks queued on a worker");
    describe_counter!(WORKER_POLLS, Unit::Count, "Polls by a worker");
    describe_counter!(
        WORKER_STOLEN,
        Unit::Count,
        "Tasks a worker took from its siblings"
    );
    describe_counter!(
        WORKER_STEALS,
        Unit::Count,
        "Steals by a worker that took at least one task"
    );
    describe_counter!(WORKER_PARKS, Unit::Count, "Times a worker parked");
    describe_counter!(
        WORKER_NOOPS,
        Unit::Count,
        "Times a worker woke and parked again without polling"
    );
    describe_counter!(
        WORKER_BUSY,
        Unit::Microseconds,
        "Time a worker spent awake, as of its last park"
    );
    for summary in [&SCHEDULE_LATENCY, &POLL_TIME] {
        describe_gauge!(summary.name, Unit::Seconds, summary.help);
        describe_counter!(summary.count, Unit::Count, summary.help);
        describe_gauge!(summary.sum, Unit::Seconds, summary.help);
    }
}

/// The labels of one export: `pool`, and one more.
struct Labels {
    pool: SharedString,
}

impl Labels {
    fn pool(&self) -> Vec<Label> {
        vec![Label::new("pool", self.pool.clone())]
    }

    fn with(&self, key: &'static str, value: impl Into<SharedString>) -> Vec<Label> {
        vec![
            Label::new("pool", self.pool.clone()),
            Label::new(key, value.into()),
        ]
    }
}

fn as_f64(n: usize) -> f64 {
    n as f64
}

fn export_summary(summary: &Summary, histogram: &Histogram, labels: Vec<Label>) {
    // An empty histogram has no quantiles (a Prometheus client would say
    // NaN); 0 would read as "no latency".
    let quantiles = if histogram.count() == 0 {
        &[][..]
    } else {
        &QUANTILES[..]
    };
    for &(q, label) in quantiles {
        let mut with_quantile = labels.clone();
        with_quantile.push(Label::new("quantile", label));
        gauge!(summary.name, with_quantile).set(histogram.percentile(q).as_secs_f64());
    }
    counter!(summary.count, labels.clone()).absolute(histogram.count());
    gauge!(summary.sum, labels).set(histogram.sum().as_secs_f64());
}

impl RuntimeMetrics {
    /// Records the pool's figures now, through the `metrics` facade's
    /// recorder (the global one, or the thread's local one): counters with
    /// [`absolute`](metrics::Counter::absolute), gauges with
    /// [`set`](metrics::Gauge::set), latency histograms as summaries. See
    /// [`metrics_export`](crate::metrics_export) for the names, and the
    /// example there. Feature `metrics`.
    ///
    /// Call it before each scrape, or let
    /// [`export_every`](Self::export_every) call it. It reads the counters
    /// as the getters do (the cost of reading them, plus one recorder call
    /// per metric).
    pub fn export(&self) {
        describe();
        let labels = Labels {
            pool: SharedString::from(self.pool_name().to_owned()),
        };

        gauge!(WORKERS, labels.pool()).set(as_f64(self.num_workers()));
        gauge!(MIN_WORKERS, labels.pool()).set(as_f64(self.min_workers()));
        gauge!(MAX_WORKERS, labels.pool()).set(as_f64(self.max_workers()));
        gauge!(PARKED_WORKERS, labels.pool()).set(as_f64(self.num_parked_workers()));
        gauge!(BLOCKED_WORKERS, labels.pool()).set(as_f64(self.num_blocked_workers()));
        counter!(WORKERS_STARTED, labels.pool()).absolute(self.workers_started() as u64);
        counter!(WORKERS_RETIRED, labels.pool()).absolute(self.workers_retired() as u64);
        gauge!(ALIVE_TASKS, labels.pool()).set(as_f64(self.num_alive_tasks()));
        gauge!(GLOBAL_QUEUE_DEPTH, labels.pool()).set(as_f64(self.global_queue_depth()));
        gauge!(QUEUED_TASKS, labels.pool()).set(as_f64(self.num_queued()));
        if let Some(max) = self.max_queued() {
            gauge!(MAX_QUEUED, labels.pool()).set(as_f64(max));
        }
        gauge!(TIMERS, labels.pool()).set(as_f64(self.num_timers()));
        gauge!(BLOCKING_THREADS).set(as_f64(self.num_blocking_threads()));
        gauge!(BLOCKING_QUEUE_DEPTH).set(as_f64(self.blocking_queue_depth()));

        for priority in Priority::ALL {
            let name = priority_label(priority);
            counter!(SPAWNED, labels.with("priority", name)).absolute(self.spawned_count(priority));
            counter!(POLLS, labels.with("priority", name)).absolute(self.poll_count(priority));
        }
        for outcome in OUTCOMES {
            counter!(ENDED, labels.with("outcome", outcome_label(outcome)))
                .absolute(self.outcome_count(outcome));
        }

        for worker in 0..self.max_workers() {
            let polls = self.worker_poll_count(worker);
            let parks = self.worker_park_count(worker);
            let depth = self.worker_local_queue_depth(worker);
            if worker >= self.min_workers() && polls == 0 && parks == 0 && depth == 0 {
                continue; // a slot of an elastic pool that never ran a worker
            }
            let labels = labels.with("worker", worker.to_string());
            gauge!(WORKER_QUEUE_DEPTH, labels.clone()).set(as_f64(depth));
            counter!(WORKER_POLLS, labels.clone()).absolute(polls);
            counter!(WORKER_STOLEN, labels.clone()).absolute(self.worker_steal_count(worker));
            counter!(WORKER_STEALS, labels.clone()).absolute(self.worker_steal_operations(worker));
            counter!(WORKER_PARKS, labels.clone()).absolute(parks);
            counter!(WORKER_NOOPS, labels.clone()).absolute(self.worker_noop_count(worker));
            let busy = self.worker_total_busy_duration(worker).as_micros();
            counter!(WORKER_BUSY, labels).absolute(u64::try_from(busy).unwrap_or(u64::MAX));
        }

        for priority in Priority::ALL {
            let name = priority_label(priority);
            if let Some(histogram) = self.schedule_latency(priority) {
                export_summary(&SCHEDULE_LATENCY, &histogram, labels.with("priority", name));
            }
            if let Some(histogram) = self.poll_time(priority) {
                export_summary(&POLL_TIME, &histogram, labels.with("priority", name));
            }
        }
    }

    /// Calls [`export`](Self::export) now and then once every `period`,
    /// on a thread of its own (named `multipool-metrics`), through the
    /// global recorder (a thread-local one is not seen there), until the
    /// returned handle is dropped or the runtime shuts down; see
    /// [Exporting on a period](crate::metrics_export#exporting-on-a-period).
    /// Feature `metrics`.
    ///
    /// The thread keeps this pool's bookkeeping alive (not its workers)
    /// until it stops.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// // With a recorder installed (`metrics::set_global_recorder`):
    /// let exporter = rt.handle().metrics().export_every(Duration::from_secs(10)).unwrap();
    /// // ...
    /// drop(exporter); // stops the thread
    /// ```
    ///
    /// # Errors
    ///
    /// The operating system refused to start the thread.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn export_every(&self, period: Duration) -> io::Result<ExportHandle> {
        assert!(
            !period.is_zero(),
            "`RuntimeMetrics::export_every` needs a period greater than zero"
        );
        let (parker, unparker) = parking::pair();
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = self.clone();
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("multipool-metrics".into())
            .spawn(move || {
                let mut next = Some(Instant::now());
                loop {
                    metrics.export();
                    if metrics.is_shutdown() {
                        return;
                    }
                    // `None`: a period too long for the clock, no next tick.
                    next = next.and_then(|tick| tick.checked_add(period));
                    let now = Instant::now();
                    if next.is_some_and(|tick| tick <= now) {
                        // Fell behind (a slow recorder, a suspended
                        // process): skip the missed ticks.
                        next = now.checked_add(period);
                    }
                    loop {
                        let woken = match next {
                            Some(tick) => parker.park_deadline(tick),
                            None => {
                                parker.park();
                                true
                            }
                        };
                        if stopped.load(Ordering::Acquire) {
                            return;
                        }
                        if !woken {
                            break; // the tick
                        }
                    }
                }
            })?;
        Ok(ExportHandle {
            thread: Some(thread),
            stop,
            unparker,
        })
    }
}

/// The thread started by [`RuntimeMetrics::export_every`]; dropping this
/// handle stops it (and waits for an export in progress to end).
#[must_use = "dropping the handle stops the exports"]
pub struct ExportHandle {
    thread: Option<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    unparker: parking::Unparker,
}

impl ExportHandle {
    /// Whether the thread has stopped by itself: the runtime shut down (or
    /// the recorder panicked).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for ExportHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.unparker.unpark();
        if let Some(thread) = self.thread.take() {
            // A panic there (in the recorder) was already printed.
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for ExportHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
