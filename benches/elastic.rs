//! Benchmarks of multipool's elastic pools, blocking pool and batch
//! spawning, side by side with tokio (multi-thread scheduler) where tokio has
//! an equivalent.
//!
//! Criterion groups (every runtime is built once per benchmark function,
//! outside the timed loop, and dropped before the next one is built):
//!
//! * `blocking_mix`: [`BLOCKING_TASKS`] tasks that each block their thread
//!   for [`BLOCK_FOR`] (`std::thread::sleep`), interleaved with
//!   [`SHORT_TASKS`] short tasks, all spawned from the bench thread; the time
//!   until every task has completed. Variants: `multipool_max8` (elastic:
//!   `min_workers(2).max_workers(8)`), `multipool_fixed2` (`workers(2)`),
//!   `tokio_2_workers` (the blocking tasks spawned with plain `spawn`) and
//!   `tokio_spawn_blocking` (the blocking ones on tokio's blocking pool, the
//!   usual tokio remedy). The elastic pool keeps the workers it added for its
//!   idle timeout (10 s), so after warm-up this measures its steady state;
//!   the printed `blocking_mix_cold` report below shows a fresh pool.
//! * `spawn_blocking`: tokio's `spawn_blocking` bench shape: each of
//!   [`SB_TASKS`] async tasks runs [`SB_ROUNDS`] rounds of [`SB_BATCH`]
//!   `spawn_blocking(|| black_box(..))` calls, awaiting each round; multipool
//!   vs tokio, 2 workers each, default blocking-pool settings.
//! * `remote_spawn`: [`REMOTE_SPAWNS`] trivial tasks spawned from 1 and 4
//!   external threads (each spawns its share through a cloned handle, then
//!   waits for its handles), multipool vs tokio with 2 workers; plus
//!   `multipool_spawn_batch_10000` vs `multipool_single_10000`: 10 000 tasks
//!   from the bench thread through one `Handle::spawn_batch` call vs 10 000
//!   `spawn(..).start()` calls, then waiting for all of them; the
//!   `_enqueue` variants time the spawning thread's side alone, until the
//!   call(s) return (the wait is not timed).
//!
//! Printed reports (plain timings, not criterion), after the groups:
//!
//! * `first_task_latency`: builds a `workers(2)` runtime and at once measures
//!   the time from `spawn` to the task's first poll (the task sends
//!   `Instant::now()` through a channel); [`LATENCY_REPS`] fresh runtimes
//!   each with `prewarm(false)` and `prewarm(true)` (tokio for reference);
//!   p50 and p99 in µs.
//! * `blocking_mix_cold`: one `blocking_mix` round on freshly built runtimes
//!   (so the elastic pool starts with 2 workers and must grow during the
//!   round), median of a few repetitions.
//!
//! Run with `cargo bench --bench elastic` (about a minute on 2 cores);
//! criterion's usual CLI flags (a filter, `--sample-size`, ...) apply to the
//! groups. With `MULTIPOOL_BENCH_SEARCH_SPIN_US` set, multipool's runtimes
//! get `.search_spin(..)` of that many microseconds instead of the default
//! (as in `rt_multi_threaded`: to measure the trade-off, issue #15).

use std::future::Future;
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// Worker threads of every fixed runtime, and `min_workers` of the elastic
/// one: the core count of the machine the numbers are taken on.
const NUM_WORKERS: usize = 2;
/// `max_workers` of the elastic runtime in `blocking_mix`.
const MAX_WORKERS: usize = 8;

/// `blocking_mix`: tasks that block their thread, for how long, and the
/// short tasks they are interleaved with.
const BLOCKING_TASKS: usize = 20;
const BLOCK_FOR: Duration = Duration::from_millis(10);
const SHORT_TASKS: usize = 10_000;

/// `spawn_blocking`: async tasks x rounds x calls per round.
const SB_TASKS: usize = 4;
const SB_ROUNDS: usize = 100;
const SB_BATCH: usize = 16;

/// `remote_spawn`: tasks per iteration, split over the spawning threads.
const REMOTE_SPAWNS: usize = 12_800;
/// `remote_spawn`: tasks of the `spawn_batch` vs single-spawn comparison.
const BATCH_SPAWNS: usize = 10_000;

/// `first_task_latency`: fresh runtimes per setting.
const LATENCY_REPS: usize = 50;
/// `blocking_mix_cold`: fresh runtimes per variant.
const COLD_REPS: usize = 5;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

// ---------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------

fn multipool_fixed() -> multipool::Runtime {
    with_search_spin(multipool::Runtime::builder().workers(NUM_WORKERS))
        .build()
        .unwrap()
}

fn multipool_elastic() -> multipool::Runtime {
    with_search_spin(
        multipool::Runtime::builder()
            .min_workers(NUM_WORKERS)
            .max_workers(MAX_WORKERS),
    )
    .build()
    .unwrap()
}

/// `builder` with `MULTIPOOL_BENCH_SEARCH_SPIN_US`'s `search_spin`, if set.
fn with_search_spin(builder: multipool::Builder) -> multipool::Builder {
    let Ok(value) = std::env::var("MULTIPOOL_BENCH_SEARCH_SPIN_US") else {
        return builder;
    };
    let us: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("MULTIPOOL_BENCH_SEARCH_SPIN_US={value:?}: not a number"));
    builder.search_spin(Duration::from_micros(us))
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits for `handles` on the calling thread, with an executor that is
/// neither of the runtimes compared.
fn wait_all<H, T, E>(handles: Vec<H>)
where
    H: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    futures::executor::block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// blocking_mix
// ---------------------------------------------------------------------------

/// The work of a short task: a few dozen arithmetic operations.
fn short_work(seed: usize) -> u64 {
    let mut x = black_box(seed as u64);
    for _ in 0..32 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
    x
}

/// The work of a blocking task: sleeps, blocking its thread.
fn blocking_work() {
    std::thread::sleep(BLOCK_FOR);
}

/// Calls `short(i)` for each short task and `blocking()` for each blocking
/// one, in the interleaved order of `blocking_mix`: one blocking task in
/// the middle of every run of `SHORT_TASKS / BLOCKING_TASKS` short ones.
fn for_each_mixed<H>(mut short: impl FnMut(usize) -> H, mut blocking: impl FnMut() -> H) -> Vec<H> {
    let per_block = SHORT_TASKS / BLOCKING_TASKS;
    let mut handles = Vec::with_capacity(SHORT_TASKS + BLOCKING_TASKS);
    for chunk in 0..BLOCKING_TASKS {
        for i in 0..per_block {
            if i == per_block / 2 {
                handles.push(blocking());
            }
            handles.push(short(chunk * per_block + i));
        }
    }
    handles
}

/// One `blocking_mix` round on a multipool runtime.
fn mix_multipool(rt: &multipool::Runtime) {
    let handles = for_each_mixed(
        |i| {
            rt.spawn(async move {
                black_box(short_work(i));
            })
            .start()
        },
        || rt.spawn(async { blocking_work() }).start(),
    );
    wait_all(handles);
}

/// One `blocking_mix` round on a tokio runtime; the blocking tasks go to
/// tokio's blocking pool when `spawn_blocking`.
fn mix_tokio(rt: &tokio::runtime::Runtime, spawn_blocking: bool) {
    let handles = for_each_mixed(
        |i| {
            rt.spawn(async move {
                black_box(short_work(i));
            })
        },
        || {
            if spawn_blocking {
                rt.spawn_blocking(blocking_work)
            } else {
                rt.spawn(async { blocking_work() })
            }
        },
    );
    wait_all(handles);
}

fn blocking_mix(g: &mut Group) {
    let rt = multipool_elastic();
    g.bench_function("multipool_max8", |b| b.iter(|| mix_multipool(&rt)));
    let handle = rt.handle();
    println!(
        "    multipool_max8: {} workers now, {} started in all",
        handle.metrics().num_workers(),
        handle.metrics().workers_started()
    );
    drop(rt);

    let rt = multipool_fixed();
    g.bench_function("multipool_fixed2", |b| b.iter(|| mix_multipool(&rt)));
    drop(rt);

    let rt = tokio_rt();
    g.bench_function("tokio_2_workers", |b| b.iter(|| mix_tokio(&rt, false)));
    g.bench_function("tokio_spawn_blocking", |b| b.iter(|| mix_tokio(&rt, true)));
    drop(rt);
}

// ---------------------------------------------------------------------------
// spawn_blocking
// ---------------------------------------------------------------------------

fn spawn_blocking(g: &mut Group) {
    let rt = multipool_fixed();
    g.bench_function("multipool", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..SB_TASKS)
                    .map(|_| {
                        multipool::spawn(async {
                            for _ in 0..SB_ROUNDS {
                                let calls: Vec<_> = (0..SB_BATCH)
                                    .map(|i| multipool::task::spawn_blocking(move || black_box(i)))
                                    .collect();
                                for call in calls {
                                    call.await.unwrap();
                                }
                            }
                        })
                        .start()
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    drop(rt);

    let rt = tokio_rt();
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..SB_TASKS)
                    .map(|_| {
                        tokio::spawn(async {
                            for _ in 0..SB_ROUNDS {
                                let calls: Vec<_> = (0..SB_BATCH)
                                    .map(|i| tokio::task::spawn_blocking(move || black_box(i)))
                                    .collect();
                                for call in calls {
                                    call.await.unwrap();
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    drop(rt);
}

// ---------------------------------------------------------------------------
// remote_spawn
// ---------------------------------------------------------------------------

/// Spawns `REMOTE_SPAWNS` trivial tasks from `threads` scoped threads, each
/// calling `spawn_share` with its share, and waits for them.
fn remote_from_threads(threads: usize, spawn_share: impl Fn(usize) + Sync) {
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| spawn_share(REMOTE_SPAWNS / threads));
        }
    });
}

/// `BATCH_SPAWNS` single remote spawns through `handle`.
fn single_spawns(handle: &multipool::Handle) -> Vec<multipool::JoinHandle<()>> {
    (0..BATCH_SPAWNS)
        .map(|i| {
            handle
                .spawn(async move {
                    black_box(i);
                })
                .start()
        })
        .collect()
}

/// Times `iters` calls of `enqueue` alone, waiting for each call's tasks
/// outside the timed part.
fn timed_enqueue(
    iters: u64,
    mut enqueue: impl FnMut() -> Vec<multipool::JoinHandle<()>>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let handles = enqueue();
        total += start.elapsed();
        wait_all(handles);
    }
    total
}

fn remote_spawn(g: &mut Group) {
    let rt = multipool_fixed();
    for threads in [1, 4] {
        let handle = rt.handle();
        g.bench_function(format!("multipool_{threads}_threads"), |b| {
            b.iter(|| {
                remote_from_threads(threads, |count| {
                    let handle = handle.clone();
                    let handles: Vec<_> = (0..count)
                        .map(|i| {
                            handle
                                .spawn(async move {
                                    black_box(i);
                                })
                                .start()
                        })
                        .collect();
                    wait_all(handles);
                })
            })
        });
    }
    let handle = rt.handle();
    g.bench_function(format!("multipool_spawn_batch_{BATCH_SPAWNS}"), |b| {
        b.iter(|| {
            let handles = handle.spawn_batch((0..BATCH_SPAWNS).map(|i| async move {
                black_box(i);
            }));
            wait_all(handles);
        })
    });
    g.bench_function(format!("multipool_single_{BATCH_SPAWNS}"), |b| {
        b.iter(|| wait_all(single_spawns(&handle)))
    });
    // The spawning thread's side alone: until the call(s) return; the wait
    // for the tasks is not timed.
    g.bench_function(
        format!("multipool_spawn_batch_{BATCH_SPAWNS}_enqueue"),
        |b| {
            b.iter_custom(|iters| {
                timed_enqueue(iters, || {
                    handle.spawn_batch((0..BATCH_SPAWNS).map(|i| async move {
                        black_box(i);
                    }))
                })
            })
        },
    );
    g.bench_function(format!("multipool_single_{BATCH_SPAWNS}_enqueue"), |b| {
        b.iter_custom(|iters| timed_enqueue(iters, || single_spawns(&handle)))
    });
    drop(rt);

    let rt = tokio_rt();
    for threads in [1, 4] {
        let handle = rt.handle();
        g.bench_function(format!("tokio_{threads}_threads"), |b| {
            b.iter(|| {
                remote_from_threads(threads, |count| {
                    let handle = handle.clone();
                    let handles: Vec<_> = (0..count)
                        .map(|i| {
                            handle.spawn(async move {
                                black_box(i);
                            })
                        })
                        .collect();
                    wait_all(handles);
                })
            })
        });
    }
    drop(rt);
}

// ---------------------------------------------------------------------------
// Printed reports
// ---------------------------------------------------------------------------

/// The `q` quantile (0..=1) of `samples`, sorted in place (nearest rank).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn print_quantiles(name: &str, mut samples: Vec<Duration>) {
    let p50 = quantile(&mut samples, 0.50);
    let p99 = quantile(&mut samples, 0.99);
    println!(
        "  {name:<26} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} runs)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.len()
    );
}

/// Time from `spawn` on a just-built multipool runtime to the task's first
/// poll.
fn first_poll_multipool(prewarm: bool) -> Duration {
    let rt = multipool::Runtime::builder()
        .workers(NUM_WORKERS)
        .prewarm(prewarm)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let spawned = Instant::now();
    let task = rt
        .spawn(async move {
            tx.send(Instant::now()).unwrap();
        })
        .start();
    let polled = rx.recv().unwrap();
    wait_all(vec![task]);
    polled - spawned
}

/// The same on a just-built tokio runtime (reference).
fn first_poll_tokio() -> Duration {
    let rt = tokio_rt();
    let (tx, rx) = mpsc::channel();
    let spawned = Instant::now();
    let task = rt.spawn(async move {
        tx.send(Instant::now()).unwrap();
    });
    let polled = rx.recv().unwrap();
    wait_all(vec![task]);
    polled - spawned
}

fn first_task_latency() {
    println!(
        "first_task_latency (spawn -> first poll on a just-built {NUM_WORKERS}-worker runtime)"
    );
    let runs = |f: &dyn Fn() -> Duration| (0..LATENCY_REPS).map(|_| f()).collect::<Vec<_>>();
    print_quantiles(
        "multipool prewarm(false)",
        runs(&|| first_poll_multipool(false)),
    );
    print_quantiles(
        "multipool prewarm(true)",
        runs(&|| first_poll_multipool(true)),
    );
    print_quantiles("tokio (reference)", runs(&first_poll_tokio));
}

fn blocking_mix_cold() {
    println!(
        "blocking_mix_cold (one blocking_mix round on a fresh runtime; median of {COLD_REPS})"
    );
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let report = |name: &str, mut samples: Vec<Duration>| {
        let median = quantile(&mut samples, 0.5);
        println!("  {name:<26} {:>8.2} ms", median.as_secs_f64() * 1e3);
    };
    let mut grown = Vec::new();
    let elastic: Vec<_> = (0..COLD_REPS)
        .map(|_| {
            let rt = multipool_elastic();
            let elapsed = time(&|| mix_multipool(&rt));
            grown.push(rt.handle().metrics().workers_started());
            elapsed
        })
        .collect();
    report("multipool_max8", elastic);
    println!("    workers started per fresh runtime: {grown:?}");
    let fixed: Vec<_> = (0..COLD_REPS)
        .map(|_| {
            let rt = multipool_fixed();
            time(&|| mix_multipool(&rt))
        })
        .collect();
    report("multipool_fixed2", fixed);
    let tokio: Vec<_> = (0..COLD_REPS)
        .map(|_| {
            let rt = tokio_rt();
            time(&|| mix_tokio(&rt, false))
        })
        .collect();
    report("tokio_2_workers", tokio);
}

// ---------------------------------------------------------------------------

fn main() {
    // Small samples and short measurements keep the whole run around a
    // minute on 2 cores; CLI flags still override these. No HTML report.
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args();

    {
        let mut group = c.benchmark_group("blocking_mix");
        // Iterations take 10-100+ ms: a flat sampling plan fits the budget.
        group.sampling_mode(SamplingMode::Flat);
        blocking_mix(&mut group);
        group.finish();
    }
    {
        let mut group = c.benchmark_group("spawn_blocking");
        group.sampling_mode(SamplingMode::Flat);
        spawn_blocking(&mut group);
        group.finish();
    }
    {
        let mut group = c.benchmark_group("remote_spawn");
        remote_spawn(&mut group);
        group.finish();
    }

    c.final_summary();

    first_task_latency();
    blocking_mix_cold();
}
