//! Multi-threaded scheduler benchmarks, ported from tokio's
//! `benches/rt_multi_threaded.rs`, run side by side on four executors.
//!
//! Every workload is a criterion benchmark group (`spawn_many_local`,
//! `spawn_many_remote_idle`, ...) with one function per executor (plus
//! `spawn_many_in_task`, which is not upstream: the spawns of
//! `spawn_many_local`, made from inside a task):
//! `multipool`, `tokio`, `async_std` and `smol`. Like upstream, these are
//! scheduler regression benchmarks, not a demonstration of real-world
//! performance.
//!
//! # Worker count
//!
//! Upstream tokio runs these with 4 worker threads. We use
//! 2 (see [`num_workers`]), the core count of the machine the numbers are
//! taken on: with more workers than cores the workers time-slice against each
//! other and against the bench thread, so the results measure the OS
//! scheduler more than the executor (and the `busy` workloads, which burn CPU
//! on purpose, become noise). Raise it on a bigger machine with the
//! environment variable `MULTIPOOL_BENCH_WORKERS` (every runtime gets that
//! many workers).
//!
//! # Runtimes
//!
//! Each runtime is built once per group, outside the timed loop, and torn
//! down (or, for the global ones, left idle) before the next executor runs:
//!
//! * multipool: `Runtime::builder().workers(num_workers())`; with the
//!   environment variable `MULTIPOOL_BENCH_HISTOGRAMS` set, also
//!   `.enable_latency_histograms()` (the cost of the histograms, issue #13),
//!   and with `MULTIPOOL_BENCH_LATENCY_SAMPLING=n` too, `.latency_sampling(n)`;
//!   with `MULTIPOOL_BENCH_SEARCH_SPIN_US` set, `.search_spin(..)` of that
//!   many microseconds (the spin's trade-off, issue #15).
//! * tokio: `Builder::new_multi_thread().worker_threads(num_workers()).enable_all()`.
//! * async-std: its global executor, sized by `ASYNC_STD_THREAD_COUNT`, which
//!   `main` sets before anything touches async-std.
//! * smol: a static `async_executor::Executor` driven by `num_workers()`
//!   threads, each in `smol::block_on(EX.run(pending()))`.
//!
//! With `MULTIPOOL_BENCH_COUNTDOWN_PAD` set, every runtime's countdown future
//! (`spawn_many_local`, `spawn_many_in_task`) carries that many bytes more
//! (see [`countdown_pad`]).
//!
//! All executors use `futures::channel::oneshot` in `ping_pong` so the channel
//! is the same everywhere.
//!
//! Run with `cargo bench --bench rt_multi_threaded`; criterion's usual CLI
//! flags (a filter, `--measurement-time`, `--sample-size`, ...) apply.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc, Once};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use futures::channel::oneshot;

/// Worker threads per runtime: `MULTIPOOL_BENCH_WORKERS`, or 2 (upstream
/// uses 4; see the module docs).
fn num_workers() -> usize {
    static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WORKERS.get_or_init(|| {
        let workers = bench_env("MULTIPOOL_BENCH_WORKERS").unwrap_or(2);
        assert!(
            workers > 0,
            "MULTIPOOL_BENCH_WORKERS=0: a runtime needs a worker"
        );
        workers
    })
}

/// multipool's `search_spin` in microseconds: `MULTIPOOL_BENCH_SEARCH_SPIN_US`,
/// or the default (to measure the trade-off, issue #15).
fn search_spin() -> Option<Duration> {
    bench_env("MULTIPOOL_BENCH_SEARCH_SPIN_US").map(|us| Duration::from_micros(us as u64))
}

/// A number from the environment variable `name`, if set.
fn bench_env(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: not a number")),
    )
}

const NUM_SPAWN: usize = 10_000;
const STALL_DUR: Duration = Duration::from_micros(10);

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// What the workloads need from an executor.
trait Exec: Sized + 'static {
    /// Benchmark function name inside each group.
    const NAME: &'static str;

    /// Builds (or, for global executors, warms up) the runtime.
    fn build() -> Self;

    /// Runs `fut` to completion on the calling thread.
    fn block_on<F: Future>(&self, fut: F) -> F::Output;

    /// Spawns from outside the runtime and keeps a handle; the returned
    /// future waits for the task (and panics if it failed).
    fn spawn_remote<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static;

    /// Spawns from outside the runtime without keeping a handle.
    fn spawn_remote_detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Spawns onto the current runtime from inside it (`tokio::spawn`),
    /// without keeping a handle.
    fn spawn<F>(fut: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// The executor's own `yield_now`.
    fn yield_now() -> impl Future<Output = ()> + Send;
}

// ---------------------------------------------------------------------------
// Executors
// ---------------------------------------------------------------------------

struct MultiPool(multipool::Runtime);

impl Exec for MultiPool {
    const NAME: &'static str = "multipool";

    fn build() -> Self {
        let mut builder = multipool::Runtime::builder().workers(num_workers());
        if std::env::var_os("MULTIPOOL_BENCH_HISTOGRAMS").is_some() {
            builder = builder.enable_latency_histograms();
            if let Some(one_in) = bench_env("MULTIPOOL_BENCH_LATENCY_SAMPLING") {
                builder = builder.latency_sampling(one_in as u32);
            }
        }
        if let Some(spin) = search_spin() {
            builder = builder.search_spin(spin);
        }
        Self(builder.build().unwrap())
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    fn spawn_remote<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.0.spawn(fut).start();
        async move { handle.await.unwrap() }
    }

    fn spawn_remote_detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.spawn(fut).detach();
    }

    fn spawn<F>(fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        multipool::spawn(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        multipool::task::yield_now()
    }
}

struct Tokio(tokio::runtime::Runtime);

impl Exec for Tokio {
    const NAME: &'static str = "tokio";

    fn build() -> Self {
        Self(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(num_workers())
                .enable_all()
                .build()
                .unwrap(),
        )
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    fn spawn_remote<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.0.spawn(fut);
        async move { handle.await.unwrap() }
    }

    fn spawn_remote_detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.0.spawn(fut));
    }

    fn spawn<F>(fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(fut));
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }
}

/// async-std's global executor (threads: `ASYNC_STD_THREAD_COUNT`, set in
/// `main`).
struct AsyncStd;

impl Exec for AsyncStd {
    const NAME: &'static str = "async_std";

    fn build() -> Self {
        // The pool starts lazily on first spawn; do that outside the timed loop.
        async_std::task::block_on(async_std::task::spawn(async {}));
        AsyncStd
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        async_std::task::block_on(fut)
    }

    fn spawn_remote<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        async_std::task::spawn(fut)
    }

    fn spawn_remote_detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping an async-std `JoinHandle` detaches the task.
        drop(async_std::task::spawn(fut));
    }

    fn spawn<F>(fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(async_std::task::spawn(fut));
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        async_std::task::yield_now()
    }
}

/// Shared executor for the smol benchmarks, driven by `num_workers()` threads.
static SMOL_EX: async_executor::Executor<'static> = async_executor::Executor::new();

struct Smol;

impl Exec for Smol {
    const NAME: &'static str = "smol";

    fn build() -> Self {
        static START: Once = Once::new();
        START.call_once(|| {
            for i in 0..num_workers() {
                std::thread::Builder::new()
                    .name(format!("smol-worker-{i}"))
                    .spawn(|| smol::block_on(SMOL_EX.run(smol::future::pending::<()>())))
                    .unwrap();
            }
        });
        smol::block_on(SMOL_EX.spawn(async {}));
        Smol
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        smol::block_on(fut)
    }

    fn spawn_remote<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        SMOL_EX.spawn(fut)
    }

    fn spawn_remote_detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping a smol `Task` would cancel it.
        SMOL_EX.spawn(fut).detach();
    }

    fn spawn<F>(fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        SMOL_EX.spawn(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// Spins the worker (without yielding to the executor) for `STALL_DUR`.
fn stall() {
    let now = Instant::now();
    while now.elapsed() < STALL_DUR {
        std::thread::yield_now();
    }
}

/// Spawns `NUM_SPAWN` tasks on the current runtime; each decrements `rem`,
/// and the one that takes it to zero signals on `tx`. The future is
/// upstream's (32 bytes), or that many bytes larger with
/// `MULTIPOOL_BENCH_COUNTDOWN_PAD` (see [`countdown_pad`]).
fn spawn_countdown<E: Exec>(tx: &mpsc::SyncSender<()>, rem: &Arc<AtomicUsize>) {
    match countdown_pad() {
        0 => spawn_countdown_padded::<E, 0>(tx, rem),
        8 => spawn_countdown_padded::<E, 8>(tx, rem),
        16 => spawn_countdown_padded::<E, 16>(tx, rem),
        32 => spawn_countdown_padded::<E, 32>(tx, rem),
        64 => spawn_countdown_padded::<E, 64>(tx, rem),
        _ => unreachable!("checked by countdown_pad"),
    }
}

fn spawn_countdown_padded<E: Exec, const PAD: usize>(
    tx: &mpsc::SyncSender<()>,
    rem: &Arc<AtomicUsize>,
) {
    for _ in 0..NUM_SPAWN {
        let tx = tx.clone();
        let rem = rem.clone();
        let pad = [0u8; PAD];

        E::spawn(async move {
            // Kept in the future: the bytes are part of every task.
            std::hint::black_box(&pad);
            if 1 == rem.fetch_sub(1, Relaxed) {
                tx.send(()).unwrap();
            }
        });
    }
}

/// Bytes added to the countdown future of the `spawn_many_local` and
/// `spawn_many_in_task` workloads: `MULTIPOOL_BENCH_COUNTDOWN_PAD` (0, 8,
/// 16, 32 or 64; default 0). A task's allocation size decides which of
/// glibc's paths serves it (its fast bins take requests up to 120 bytes),
/// and a task run by another worker than the one that spawned it is freed
/// across threads, so these workloads can measure the allocator's class
/// more than the scheduler: with a pad, two builds whose tasks differ by a
/// few bytes can be compared at the same class (issue #15).
fn countdown_pad() -> usize {
    static PAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAD.get_or_init(|| {
        let pad = bench_env("MULTIPOOL_BENCH_COUNTDOWN_PAD").unwrap_or(0);
        assert!(
            [0, 8, 16, 32, 64].contains(&pad),
            "MULTIPOOL_BENCH_COUNTDOWN_PAD={pad}: one of 0, 8, 16, 32 or 64"
        );
        pad
    })
}

/// 10_000 spawns from inside `block_on`; the last task to finish signals.
fn spawn_many_local<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();

    let (tx, rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            rem.store(NUM_SPAWN, Relaxed);

            rt.block_on(async {
                spawn_countdown::<E>(&tx, &rem);
                rx.recv().unwrap();
            });
        })
    });
}

/// 10_000 spawns from inside a task, so each is a spawn local to a worker
/// (the shape of issue #15); each task decrements a shared counter and the
/// last one signals. The bench thread only starts the spawner and waits.
/// `spawn_many_local` spawns from `block_on`, which is not a worker.
fn spawn_many_in_task<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();

    let (tx, rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            rem.store(NUM_SPAWN, Relaxed);
            let tx = tx.clone();
            let rem = rem.clone();

            rt.spawn_remote_detach(async move { spawn_countdown::<E>(&tx, &rem) });

            rx.recv().unwrap();
        })
    });
}

/// 10_000 spawns from the bench thread into an idle runtime, then await all.
fn spawn_many_remote_idle<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();

    bench_remote_spawns(g, &rt, NUM_SPAWN);
}

/// The timed part of the `spawn_many_remote_*` workloads: `count` empty
/// tasks spawned from the bench thread, then all awaited.
fn bench_remote_spawns<E: Exec>(g: &mut Group<'_>, rt: &E, count: usize) {
    let mut handles = Vec::with_capacity(count);
    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            for _ in 0..count {
                handles.push(rt.spawn_remote(async {}));
            }
            rt.block_on(async {
                for handle in handles.drain(..) {
                    handle.await;
                }
            });
        })
    });
}

/// Remote spawns while the runtime is busy with tasks that consume CPU time
/// and yield. Yielding is a lower notification priority than spawning /
/// regular notification.
fn spawn_many_remote_busy1<E: Exec>(g: &mut Group<'_>) {
    let rt = E::build();

    let flag = Arc::new(AtomicBool::new(true));

    // Keep the runtime busy.
    for _ in 0..(2 * num_workers()) {
        let flag = flag.clone();
        rt.spawn_remote_detach(async move {
            while flag.load(Relaxed) {
                E::yield_now().await;
                stall();
            }
        });
    }

    bench_remote_spawns(g, &rt, NUM_SPAWN);

    flag.store(false, Relaxed);
}

/// Remote spawns while the runtime is busy with tasks that consume CPU time
/// and spawn new high-CPU tasks. Spawning goes via a higher notification
/// priority than yielding.
fn spawn_many_remote_busy2<E: Exec>(g: &mut Group<'_>) {
    const NUM_SPAWN: usize = 1_000;

    fn iter<E: Exec>(flag: Arc<AtomicBool>) {
        E::spawn(async move {
            if flag.load(Relaxed) {
                stall();
                iter::<E>(flag);
            }
        });
    }

    let rt = E::build();

    let flag = Arc::new(AtomicBool::new(true));

    // Keep the runtime busy with self-respawning chains.
    for _ in 0..num_workers() {
        let flag = flag.clone();
        rt.spawn_remote_detach(async move {
            iter::<E>(flag);
        });
    }

    bench_remote_spawns(g, &rt, NUM_SPAWN);

    flag.store(false, Relaxed);
}

/// 200 tasks each yield 1_000 times, then report on a std channel.
fn yield_many<E: Exec>(g: &mut Group<'_>) {
    const NUM_YIELD: usize = 1_000;
    const TASKS: usize = 200;

    let rt = E::build();

    let (tx, rx) = mpsc::sync_channel(TASKS);

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            for _ in 0..TASKS {
                let tx = tx.clone();

                rt.spawn_remote_detach(async move {
                    for _ in 0..NUM_YIELD {
                        E::yield_now().await;
                    }

                    tx.send(()).unwrap();
                });
            }

            for _ in 0..TASKS {
                rx.recv().unwrap();
            }
        })
    });
}

/// 1_000 ping-pongs over a pair of oneshots between a task and its partner.
fn ping_pong<E: Exec>(g: &mut Group<'_>) {
    const NUM_PINGS: usize = 1_000;

    let rt = E::build();

    let (done_tx, done_rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            let done_tx = done_tx.clone();
            let rem = rem.clone();
            rem.store(NUM_PINGS, Relaxed);

            rt.block_on(async {
                E::spawn(async move {
                    for _ in 0..NUM_PINGS {
                        let rem = rem.clone();
                        let done_tx = done_tx.clone();

                        E::spawn(async move {
                            let (tx1, rx1) = oneshot::channel();
                            let (tx2, rx2) = oneshot::channel();

                            E::spawn(async move {
                                rx1.await.unwrap();
                                tx2.send(()).unwrap();
                            });

                            tx1.send(()).unwrap();
                            rx2.await.unwrap();

                            if 1 == rem.fetch_sub(1, Relaxed) {
                                done_tx.send(()).unwrap();
                            }
                        });
                    }
                });

                done_rx.recv().unwrap();
            });
        })
    });
}

/// A chain of 1_000 tasks, each spawning the next.
fn chained_spawn<E: Exec>(g: &mut Group<'_>) {
    const ITER: usize = 1_000;

    fn iter<E: Exec>(done_tx: mpsc::SyncSender<()>, n: usize) {
        if n == 0 {
            done_tx.send(()).unwrap();
        } else {
            E::spawn(async move {
                iter::<E>(done_tx, n - 1);
            });
        }
    }

    let rt = E::build();

    let (done_tx, done_rx) = mpsc::sync_channel(1000);

    g.bench_function(E::NAME, |b| {
        b.iter(|| {
            let done_tx = done_tx.clone();

            rt.block_on(async {
                E::spawn(async move {
                    iter::<E>(done_tx, ITER);
                });

                done_rx.recv().unwrap();
            });
        })
    });
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

/// Runs one workload as a group with a function per executor. Each
/// executor's runtime lives only while its own function runs.
///
/// Workloads whose iterations take milliseconds use `SamplingMode::Flat`:
/// it fits their 20 samples into the measurement time, where linear sampling
/// would overrun it.
macro_rules! compare {
    ($c:expr, $workload:ident, $mode:expr) => {{
        let mut group = $c.benchmark_group(stringify!($workload));
        group.sampling_mode($mode);
        $workload::<MultiPool>(&mut group);
        $workload::<Tokio>(&mut group);
        $workload::<AsyncStd>(&mut group);
        $workload::<Smol>(&mut group);
        group.finish();
    }};
}

fn main() {
    // Must happen before the first async-std call: the global pool reads it
    // once, when it starts.
    std::env::set_var("ASYNC_STD_THREAD_COUNT", num_workers().to_string());

    // Small samples keep the whole run under ~3 minutes on 2 cores; CLI flags
    // still override these. No HTML report: rendering its plots costs about
    // as much as measuring (~4 s per function), so it would double the run.
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();

    compare!(c, spawn_many_local, SamplingMode::Auto);
    compare!(c, spawn_many_in_task, SamplingMode::Auto);
    compare!(c, spawn_many_remote_idle, SamplingMode::Auto);
    compare!(c, spawn_many_remote_busy1, SamplingMode::Flat);
    compare!(c, spawn_many_remote_busy2, SamplingMode::Flat);
    compare!(c, yield_many, SamplingMode::Flat);
    compare!(c, ping_pong, SamplingMode::Auto);
    compare!(c, chained_spawn, SamplingMode::Auto);

    c.final_summary();
}
