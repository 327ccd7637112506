//! Timer benchmarks: multipool's timer wheel against tokio, async-std, smol
//! and (for priorities) async-runtime.
//!
//! Three workloads, every executor with [`NUM_WORKERS`] = 2 worker threads
//! (the core count of the bench machine; see `rt_multi_threaded.rs`):
//!
//! * `timer_churn` (criterion group): 100 000 tasks, each running a 10 s
//!   time-out around a future that completes after one yield. Each timer is
//!   registered at the first poll and cancelled when the time-out is dropped,
//!   so this measures registration + cancellation under contention (the
//!   common "time-out around work that finishes in time" pattern). The tasks
//!   are spawned by a task running on the runtime and awaited by it.
//! * `timer_churn_remote` (criterion group): the same 100 000 tasks spawned
//!   from outside the runtime (the bench's thread, in the executor's
//!   `block_on`), and awaited there: every spawn is a remote one.
//! * `timer_fire` (criterion group, `iter_custom`): 10 000 tasks sleep until
//!   deadlines spread evenly over 1..100 ms after the start; the measured
//!   value is the wall time until the last one has fired and its task has
//!   completed. Ideal: 100 ms; the excess is the timers' lateness.
//! * `priority_latency` (a report, not a criterion benchmark): 1 000 Low
//!   tasks each spin 20 µs per poll and yield, until stopped; one High task
//!   sleeps 1 ms 200 times and records how late each wake-up was (instant
//!   its task ran again − deadline). Prints p50/p99/max lateness per
//!   executor. Executors without priorities spawn every task alike.
//!   `priority_latency_flood` repeats it with [`LAT_FLOOD`] High tasks
//!   that spin the same way without end, so High work floods every worker:
//!   it reports the Low tasks' share of the spinners' polls next to the
//!   sleeper's lateness (multipool's default guarantees Low 1 poll in 64).
//!   The report then repeats the measurement with no spinners at all
//!   (`idle_sleep_lateness`): how precisely a parked worker wakes for a
//!   timer.
//!   The `elsewhere` column is the machine's CPU used by other processes
//!   while that row ran (Linux): the two workers need both cores, so any
//!   other load preempts them and shows up as milliseconds of lateness.
//!
//! # Timers per executor
//!
//! * multipool: `multipool::time::{timeout, sleep_until}` (its own wheel).
//! * tokio: `tokio::time::{timeout, sleep_until}` (its driver; deadlines are
//!   rounded up to the next millisecond).
//! * async-std: `async_std::future::timeout` and `async_std::task::sleep`
//!   (async-io's timers underneath).
//! * smol: `smol::Timer` (= `async_io::Timer`), time-outs via
//!   `smol::future::or`.
//! * async-runtime: it has no reactor and no timers, so it is left out of
//!   `timer_churn`, `timer_churn_remote` and `timer_fire` (it would only
//!   measure async-io again, as smol does). In `priority_latency` it uses `smol::Timer`
//!   (= `async_io::Timer`), driven by the thread waiting in `smol::block_on`
//!   (the bench's main thread) as async-runtime's docs prescribe: the host
//!   drives async-io. Its High priority is used for the sleeper and
//!   `Background` for the spinners; it has no `yield_now` either, so
//!   `smol::future::yield_now` is used.
//!
//! # Runtimes
//!
//! Each executor's runtime is built for its own benchmark and torn down
//! after it (async-std's global pool cannot be: it is left idle), and every
//! spinner task is stopped and joined before the next executor starts, so
//! executors never compete for the two cores.
//!
//! # Running
//!
//! * everything: `cargo bench --bench time` (under a minute on 2 cores);
//! * one part: `cargo bench --bench time -- timer_churn` (both churn
//!   groups; `timer_churn/` for the first alone), or `timer_fire`, or
//!   `priority_latency` for the latency report alone. The report runs
//!   when there is no filter or when a filter is part of
//!   `priority_latency`; criterion's own flags still apply to the groups.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// Worker threads per runtime (see the module docs).
const NUM_WORKERS: usize = 2;

/// `timer_churn`: tasks per iteration, and the time-out none of them reaches.
const CHURN_TASKS: usize = 100_000;
const CHURN_TIMEOUT: Duration = Duration::from_secs(10);

/// `timer_fire`: tasks per iteration; deadlines from `FIRE_FIRST` to
/// `FIRE_LAST` after the start.
const FIRE_TASKS: usize = 10_000;
const FIRE_FIRST: Duration = Duration::from_millis(1);
const FIRE_LAST: Duration = Duration::from_millis(100);

/// `priority_latency`: spinners, their CPU time per poll, the sleeper's
/// period and sample count, and the time after which an executor's sampling
/// stops early (so one that wakes ~60 ms late cannot stretch the run).
const LAT_SPINNERS: usize = 1_000;
const LAT_SPIN: Duration = Duration::from_micros(20);
const LAT_PERIOD: Duration = Duration::from_millis(1);
const LAT_SAMPLES: usize = 200;
const LAT_BUDGET: Duration = Duration::from_secs(10);
/// `priority_latency_flood`: High spinners that never stop (one per worker
/// keeps every worker's High queue busy), and the Low share multipool's
/// builder guarantees by default (`Builder::min_share`).
const LAT_FLOOD: usize = NUM_WORKERS;
const LOW_MIN_SHARE: u32 = 64;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Task priorities used here; runtimes without priorities ignore them.
#[derive(Clone, Copy, Debug)]
enum Prio {
    High,
    Normal,
    Low,
}

/// Spawns onto one runtime, from any thread, inside or outside it.
trait Spawner: Clone + Send + Sync + 'static {
    /// Starts `fut` now; the returned future yields its output (and panics
    /// if the task failed).
    fn spawn_task<F>(&self, prio: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

/// What the workloads need from an executor.
trait Exec: Sized + 'static {
    /// Benchmark function / report row name.
    const NAME: &'static str;

    type Spawner: Spawner;

    /// Builds (or, for global executors, warms up) the runtime.
    fn build() -> Self;

    fn spawner(&self) -> Self::Spawner;

    /// Runs `fut` to completion on the calling thread.
    fn block_on<F: Future>(&self, fut: F) -> F::Output;

    /// The executor's own `yield_now`.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// Sleeps until `deadline` with the executor's timers.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;

    /// Runs `fut` under a time-out; `None` if it elapsed.
    fn timeout<F>(dur: Duration, fut: F) -> impl Future<Output = Option<F::Output>> + Send
    where
        F: Future + Send;

    /// Stops the runtime's threads (all tasks must have completed).
    fn shutdown(self) {
        drop(self);
    }
}

// ---------------------------------------------------------------------------
// Executors
// ---------------------------------------------------------------------------

struct MultiPool(multipool::Runtime);

#[derive(Clone)]
struct MultiPoolSpawner(multipool::Handle);

impl Spawner for MultiPoolSpawner {
    fn spawn_task<F>(&self, prio: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let prio = match prio {
            Prio::High => multipool::Priority::High,
            Prio::Normal => multipool::Priority::Normal,
            Prio::Low => multipool::Priority::Low,
        };
        let handle = self.0.spawn(fut).priority(prio).start();
        async move { handle.await.unwrap() }
    }
}

impl Exec for MultiPool {
    const NAME: &'static str = "multipool";
    type Spawner = MultiPoolSpawner;

    fn build() -> Self {
        Self(
            multipool::Runtime::builder()
                .workers(NUM_WORKERS)
                .build()
                .unwrap(),
        )
    }

    fn spawner(&self) -> MultiPoolSpawner {
        MultiPoolSpawner(self.0.handle())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        multipool::task::yield_now()
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        multipool::time::sleep_until(deadline)
    }

    async fn timeout<F>(dur: Duration, fut: F) -> Option<F::Output>
    where
        F: Future + Send,
    {
        multipool::time::timeout(dur, fut).await.ok()
    }
}

struct Tokio(tokio::runtime::Runtime);

#[derive(Clone)]
struct TokioSpawner(tokio::runtime::Handle);

impl Spawner for TokioSpawner {
    fn spawn_task<F>(&self, _: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.0.spawn(fut);
        async move { handle.await.unwrap() }
    }
}

impl Exec for Tokio {
    const NAME: &'static str = "tokio";
    type Spawner = TokioSpawner;

    fn build() -> Self {
        Self(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(NUM_WORKERS)
                .enable_all()
                .build()
                .unwrap(),
        )
    }

    fn spawner(&self) -> TokioSpawner {
        TokioSpawner(self.0.handle().clone())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    async fn timeout<F>(dur: Duration, fut: F) -> Option<F::Output>
    where
        F: Future + Send,
    {
        tokio::time::timeout(dur, fut).await.ok()
    }
}

/// async-std's global executor (threads: `ASYNC_STD_THREAD_COUNT`, set in
/// `main`). It cannot be torn down; it idles between benchmarks.
struct AsyncStd;

#[derive(Clone)]
struct AsyncStdSpawner;

impl Spawner for AsyncStdSpawner {
    fn spawn_task<F>(&self, _: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        async_std::task::spawn(fut)
    }
}

impl Exec for AsyncStd {
    const NAME: &'static str = "async_std";
    type Spawner = AsyncStdSpawner;

    fn build() -> Self {
        // The pool starts lazily on first spawn; do that outside the timed loop.
        async_std::task::block_on(async_std::task::spawn(async {}));
        AsyncStd
    }

    fn spawner(&self) -> AsyncStdSpawner {
        AsyncStdSpawner
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        async_std::task::block_on(fut)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        async_std::task::yield_now()
    }

    /// async-std has no `sleep_until`: the duration is taken when first polled.
    async fn sleep_until(deadline: Instant) {
        async_std::task::sleep(deadline.saturating_duration_since(Instant::now())).await;
    }

    async fn timeout<F>(dur: Duration, fut: F) -> Option<F::Output>
    where
        F: Future + Send,
    {
        async_std::future::timeout(dur, fut).await.ok()
    }
}

/// An `async_executor::Executor` driven by `NUM_WORKERS` threads, each in
/// `smol::block_on(ex.run(..))`, stopped and joined on drop.
struct Smol {
    ex: Arc<async_executor::Executor<'static>>,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct SmolSpawner(Arc<async_executor::Executor<'static>>);

impl Spawner for SmolSpawner {
    fn spawn_task<F>(&self, _: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(fut)
    }
}

/// smol's sleep: an async-io timer.
async fn smol_sleep_until(deadline: Instant) {
    smol::Timer::at(deadline).await;
}

/// smol's time-out: the future raced against an async-io timer.
async fn smol_timeout<F: Future>(dur: Duration, fut: F) -> Option<F::Output> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(dur).await;
        None
    })
    .await
}

impl Exec for Smol {
    const NAME: &'static str = "smol";
    type Spawner = SmolSpawner;

    fn build() -> Self {
        let ex = Arc::new(async_executor::Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let threads = (0..NUM_WORKERS)
            .map(|i| {
                let ex = ex.clone();
                let stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("smol-worker-{i}"))
                    .spawn(move || {
                        smol::block_on(ex.run(async move {
                            let _ = stopped.recv().await;
                        }))
                    })
                    .unwrap()
            })
            .collect();
        smol::block_on(ex.spawn(async {}));
        Smol {
            ex,
            stop: Some(stop),
            threads,
        }
    }

    fn spawner(&self) -> SmolSpawner {
        SmolSpawner(self.ex.clone())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        smol::block_on(fut)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        smol_sleep_until(deadline)
    }

    fn timeout<F>(dur: Duration, fut: F) -> impl Future<Output = Option<F::Output>> + Send
    where
        F: Future + Send,
    {
        smol_timeout(dur, fut)
    }
}

impl Drop for Smol {
    fn drop(&mut self) {
        // Closing the channel ends every worker's `run`.
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

/// async-runtime's general pool. It has no timers: `sleep_until` and
/// `timeout` use async-io's (see the module docs), and it is only used in
/// `priority_latency`.
struct AsyncRuntime(async_runtime::Runtime);

#[derive(Clone)]
struct AsyncRuntimeSpawner(async_runtime::Spawner);

impl Spawner for AsyncRuntimeSpawner {
    fn spawn_task<F>(&self, prio: Prio, fut: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let prio = match prio {
            Prio::High => async_runtime::Priority::High,
            Prio::Normal => async_runtime::Priority::Normal,
            Prio::Low => async_runtime::Priority::Background,
        };
        self.0.spawn(prio, fut).unwrap()
    }
}

impl Exec for AsyncRuntime {
    const NAME: &'static str = "async_runtime";
    type Spawner = AsyncRuntimeSpawner;

    fn build() -> Self {
        let workers = NonZeroUsize::new(NUM_WORKERS).unwrap();
        Self(async_runtime::RuntimeBuilder::new(workers).build().unwrap())
    }

    fn spawner(&self) -> AsyncRuntimeSpawner {
        AsyncRuntimeSpawner(self.0.spawner())
    }

    /// `smol::block_on`: the waiting thread drives async-io's reactor.
    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        smol::block_on(fut)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        smol_sleep_until(deadline)
    }

    fn timeout<F>(dur: Duration, fut: F) -> impl Future<Output = Option<F::Output>> + Send
    where
        F: Future + Send,
    {
        smol_timeout(dur, fut)
    }

    fn shutdown(self) {
        self.0.shutdown_graceful().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Criterion workloads
// ---------------------------------------------------------------------------

/// Spawns `CHURN_TASKS` tasks through `spawner`, each a time-out that is
/// registered at first poll and cancelled after one yield, and awaits them.
async fn churn<E: Exec>(spawner: &E::Spawner) {
    let handles: Vec<_> = (0..CHURN_TASKS)
        .map(|_| {
            spawner.spawn_task(Prio::Normal, async {
                let done = E::timeout(CHURN_TIMEOUT, E::yield_now()).await;
                assert!(done.is_some(), "a 10 s time-out elapsed");
            })
        })
        .collect();
    for handle in handles {
        handle.await;
    }
}

/// 100 000 time-outs registered at first poll and cancelled after one yield.
fn timer_churn<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();
    let spawner = rt.spawner();

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            let inner = spawner.clone();
            rt.block_on(spawner.spawn_task(Prio::Normal, async move {
                churn::<E>(&inner).await;
            }));
        })
    });

    rt.shutdown();
}

/// `timer_churn`'s tasks, spawned from outside the runtime.
fn timer_churn_remote<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();
    let spawner = rt.spawner();

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            rt.block_on(churn::<E>(&spawner));
        })
    });

    rt.shutdown();
}

/// 10 000 sleeps with deadlines spread over 1..100 ms; wall time until the
/// last has fired (ideal: 100 ms).
fn timer_fire<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();
    let spawner = rt.spawner();
    let span = FIRE_LAST - FIRE_FIRST;

    g.bench_function(E::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let inner = spawner.clone();
                total += rt.block_on(spawner.spawn_task(Prio::Normal, async move {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..FIRE_TASKS)
                        .map(|i| {
                            let offset = span.mul_f64(i as f64 / (FIRE_TASKS - 1) as f64);
                            let deadline = start + FIRE_FIRST + offset;
                            inner.spawn_task(Prio::Normal, E::sleep_until(deadline))
                        })
                        .collect();
                    for handle in handles {
                        handle.await;
                    }
                    start.elapsed()
                }));
            }
            total
        })
    });

    rt.shutdown();
}

macro_rules! compare {
    ($c:expr, $workload:ident, $measurement:expr) => {{
        let mut group = $c.benchmark_group(stringify!($workload));
        group.sampling_mode(SamplingMode::Flat);
        group.measurement_time($measurement);
        $workload::<MultiPool>(&mut group);
        $workload::<Tokio>(&mut group);
        $workload::<AsyncStd>(&mut group);
        $workload::<Smol>(&mut group);
        group.finish();
    }};
}

// ---------------------------------------------------------------------------
// priority_latency report
// ---------------------------------------------------------------------------

/// Burns `LAT_SPIN` of CPU without yielding to the executor.
fn spin() {
    let start = Instant::now();
    while start.elapsed() < LAT_SPIN {
        std::hint::spin_loop();
    }
}

/// What one `priority_latency` run measured.
struct Latency {
    /// Lateness of each of the High sleeper's wake-ups.
    late: Vec<Duration>,
    /// Polls the Low spinners and the High flood got while the sleeper ran.
    low_polls: u64,
    flood_polls: u64,
}

/// Lateness of each of the High sleeper's wake-ups among `spinners` busy Low
/// spinners (none: the lateness of a sleep on an idle runtime), and, with
/// `flood` High spinners besides, how the polls were shared between Low
/// and High.
fn priority_latency<E: Exec>(samples: usize, spinners: usize, flood: usize) -> Latency {
    let rt = E::build();
    let spawner = rt.spawner();
    let stop = Arc::new(AtomicBool::new(false));
    // Counted only while the sleeper samples.
    let counting = Arc::new(AtomicBool::new(false));
    let low_polls = Arc::new(AtomicU64::new(0));
    let flood_polls = Arc::new(AtomicU64::new(0));

    let spin_task = |prio: Prio, polls: &Arc<AtomicU64>| {
        let (stop, counting, polls) = (stop.clone(), counting.clone(), polls.clone());
        spawner.spawn_task(prio, async move {
            while !stop.load(Relaxed) {
                spin();
                if counting.load(Relaxed) {
                    polls.fetch_add(1, Relaxed);
                }
                E::yield_now().await;
            }
        })
    };
    let spinners: Vec<_> = (0..spinners)
        .map(|_| spin_task(Prio::Low, &low_polls))
        .chain((0..flood).map(|_| spin_task(Prio::High, &flood_polls)))
        .collect();
    if !spinners.is_empty() {
        // Let the spinners fill the queues first.
        std::thread::sleep(Duration::from_millis(20));
    }

    counting.store(true, Relaxed);
    let sleeper = spawner.spawn_task(Prio::High, async move {
        let budget = Instant::now() + LAT_BUDGET;
        let mut late = Vec::with_capacity(samples);
        while late.len() < samples && Instant::now() < budget {
            let deadline = Instant::now() + LAT_PERIOD;
            E::sleep_until(deadline).await;
            late.push(Instant::now().saturating_duration_since(deadline));
        }
        late
    });
    let late = rt.block_on(sleeper);
    counting.store(false, Relaxed);

    stop.store(true, Relaxed);
    rt.block_on(async {
        for spinner in spinners {
            spinner.await;
        }
    });
    rt.shutdown();
    Latency {
        late,
        low_polls: low_polls.load(Relaxed),
        flood_polls: flood_polls.load(Relaxed),
    }
}

/// `d` as µs below a millisecond, ms above.
fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn report_row<E: Exec>(samples: usize, spinners: usize, flood: usize) {
    let before = cpu_ticks();
    let Latency {
        mut late,
        low_polls,
        flood_polls,
    } = priority_latency::<E>(samples, spinners, flood);
    let elsewhere = match (before, cpu_ticks()) {
        (Some(a), Some(b)) if b.total > a.total => {
            let others = (b.busy - a.busy).saturating_sub(b.ours - a.ours);
            format!("{:.0}%", 100.0 * others as f64 / (b.total - a.total) as f64)
        }
        _ => "-".to_string(),
    };
    late.sort_unstable();
    let pct = |p: usize| late[(late.len() - 1) * p / 100];
    let low_share = if flood > 0 {
        let polls = (low_polls + flood_polls).max(1);
        format!(
            "{:.2}% ({low_polls})",
            100.0 * low_polls as f64 / polls as f64
        )
    } else {
        String::new()
    };
    println!(
        "{:<14} {:>5} {:>12} {:>12} {:>12} {:>10} {:>16}",
        E::NAME,
        late.len(),
        fmt_dur(pct(50)),
        fmt_dur(pct(99)),
        fmt_dur(pct(100)),
        elsewhere,
        low_share,
    );
}

/// CPU time counters (Linux, in clock ticks): busy and total time of the
/// whole machine, and this process's own time.
struct CpuTicks {
    busy: u64,
    total: u64,
    ours: u64,
}

/// Reads [`CpuTicks`]; `None` where `/proc` is not available.
fn cpu_ticks() -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = cpu.get(0..3)?.iter().sum::<u64>() + cpu.get(5..8)?.iter().sum::<u64>();
    let total = busy + cpu.get(3..5)?.iter().sum::<u64>();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = own.get(own.rfind(')')? + 2..)?.split(' ').collect();
    let ours = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(CpuTicks { busy, total, ours })
}

fn latency_report(samples: usize) {
    println!(
        "\npriority_latency: High task sleeps {} {samples}x among {LAT_SPINNERS} Low tasks \
         spinning {} per poll, {NUM_WORKERS} workers; lateness = wake - deadline \
         (sampling stops after {} s); elsewhere = CPU used by other processes \
         meanwhile, share of the machine (over a few % skews the row)",
        fmt_dur(LAT_PERIOD),
        fmt_dur(LAT_SPIN),
        LAT_BUDGET.as_secs(),
    );
    report_table(samples, LAT_SPINNERS, 0);
    println!(
        "\npriority_latency_flood: the same, plus {LAT_FLOOD} High tasks spinning \
         {} per poll without end; low share = the Low tasks' share of the spinners' \
         polls (Low polls in brackets). multipool guarantees Low 1 poll in {} \
         ({:.2}%) by default; runtimes without priorities share alike",
        fmt_dur(LAT_SPIN),
        LOW_MIN_SHARE,
        100.0 / LOW_MIN_SHARE as f64,
    );
    report_table(samples, LAT_SPINNERS, LAT_FLOOD);
    println!(
        "\nidle_sleep_lateness: the same sleeper alone on an idle runtime \
         (how precisely a parked worker wakes for a timer)"
    );
    report_table(samples, 0, 0);
}

fn report_table(samples: usize, spinners: usize, flood: usize) {
    println!(
        "{:<14} {:>5} {:>12} {:>12} {:>12} {:>10} {:>16}",
        "executor",
        "n",
        "p50",
        "p99",
        "max",
        "elsewhere",
        if flood > 0 { "low share" } else { "" },
    );
    report_row::<MultiPool>(samples, spinners, flood);
    report_row::<Tokio>(samples, spinners, flood);
    report_row::<AsyncStd>(samples, spinners, flood);
    report_row::<Smol>(samples, spinners, flood);
    report_row::<AsyncRuntime>(samples, spinners, flood);
}

/// Whether the command line selects the latency report: no filter, or a
/// filter that is part of `priority_latency`. Values of criterion's options
/// are not filters.
fn wants_latency_report(args: &[String]) -> bool {
    const WITH_VALUE: &[&str] = &[
        "-b",
        "-c",
        "-s",
        "--baseline",
        "--baseline-lenient",
        "--color",
        "--confidence-level",
        "--format",
        "--load-baseline",
        "--measurement-time",
        "--noise-threshold",
        "--nresamples",
        "--output-format",
        "--plotting-backend",
        "--profile-time",
        "--sample-size",
        "--save-baseline",
        "--significance-level",
        "--warm-up-time",
    ];
    if args.iter().any(|a| a == "--list") {
        return false;
    }
    let mut filters = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
        } else if arg.starts_with('-') {
            skip_value = WITH_VALUE.contains(&arg.as_str());
        } else {
            filters.push(arg.as_str());
        }
    }
    filters.is_empty() || filters.iter().any(|f| "priority_latency".contains(f))
}

fn main() {
    // Must happen before the first async-std call: the global pool reads it
    // once, when it starts.
    std::env::set_var("ASYNC_STD_THREAD_COUNT", NUM_WORKERS.to_string());

    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // criterion runs each benchmark once, and the report is kept short too.
    let bench_mode = args.iter().any(|a| a == "--bench");

    // Ten samples keep the groups to ~1 minute on 2 cores; CLI flags still
    // override this. No HTML report: its plots cost seconds per function.
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .without_plots()
        .configure_from_args();

    compare!(c, timer_churn, Duration::from_secs(3));
    compare!(c, timer_churn_remote, Duration::from_secs(3));
    compare!(c, timer_fire, Duration::from_secs(2));

    if wants_latency_report(&args) {
        latency_report(if bench_mode { LAT_SAMPLES } else { 10 });
    }

    c.final_summary();
}
