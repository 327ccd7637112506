//! Cost curves (issue #15): how the cost per item grows with the number of
//! items. Each group takes a parameter and reports throughput per element;
//! the goal is a time per item flat within 2× across the range.
//!
//! * `spawn_complete/N`: a task spawns N tasks (local spawns: the spawner
//!   is a worker), each decrementing a shared counter; the last one wakes
//!   the spawner. N = 10^3 … 10^6.
//! * `timers_insert_cancel/N`: a task makes N 10 s sleeps, polls each once
//!   (so all N are in the wheel at once), then drops them all: N
//!   registrations and N cancellations, with N timers pending at the peak.
//! * `timers_insert_fire/N`: the same N sleeps, all due at one deadline far
//!   enough ahead that every one is in the wheel before it comes; the time
//!   reported is the work alone (inserting all, then from the deadline to
//!   the last one woken and seen), not the idle wait up to the deadline
//!   (`iter_custom`).
//! * `yield_many_max_workers/M`: tokio's `yield_many` shape (200 tasks × 100
//!   yields) on an elastic pool with `min_workers(2).max_workers(M)`, M = 2,
//!   64 and 1 024. CPU-bound work grows a pool only up to the number of
//!   cores, so on the 2-core bench machine two workers run in every case:
//!   what this measures is what the dormant slots cost the active workers
//!   (stealing and waking walk the slots).
//!
//! Every runtime has 2 workers (the bench machine's cores). multipool
//! only: the peers' curves are not what the issue asks about.
//!
//! Run with `cargo bench --bench cost_curves` (a minute or two on 2 cores).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use futures::channel::oneshot;
use futures::stream::{FuturesUnordered, StreamExt};

const NUM_WORKERS: usize = 2;
const SIZES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

fn runtime() -> multipool::Runtime {
    multipool::Runtime::builder()
        .workers(NUM_WORKERS)
        .build()
        .unwrap()
}

/// N local spawns and their completion.
async fn spawn_complete(n: usize) {
    let (tx, rx) = oneshot::channel::<()>();
    let done = Arc::new((AtomicUsize::new(n), Mutex::new(Some(tx))));
    for _ in 0..n {
        let done = done.clone();
        multipool::spawn(async move {
            if done.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(tx) = done.1.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        })
        .detach();
    }
    rx.await.unwrap();
}

/// Polls every sleep of `timers` once: each registers in the wheel.
async fn register_all(timers: &mut [multipool::time::Sleep]) {
    std::future::poll_fn(|cx| {
        for timer in timers.iter_mut() {
            assert!(Pin::new(&mut *timer).poll(cx).is_pending());
        }
        Poll::Ready(())
    })
    .await;
}

/// N timers registered, then cancelled.
async fn timers_insert_cancel(n: usize) {
    let mut timers: Vec<_> = (0..n)
        .map(|_| multipool::time::sleep(Duration::from_secs(10)))
        .collect();
    register_all(&mut timers).await;
    drop(black_box(timers));
}

/// N timers due at one deadline, inserted before it: the time spent
/// inserting plus the time from the deadline to the last one seen.
async fn timers_insert_fire(n: usize) -> Duration {
    let start = Instant::now();
    // ~1 µs per timer of margin: inserting takes a fraction of that.
    let deadline = start + Duration::from_millis(2) + Duration::from_micros(n as u64);
    let mut timers: FuturesUnordered<_> = (0..n)
        .map(|_| multipool::time::sleep_until(deadline))
        .collect();
    // The first poll registers every timer.
    std::future::poll_fn(|cx| {
        assert!(timers.poll_next_unpin(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    let inserted = start.elapsed();
    assert!(
        Instant::now() < deadline,
        "inserting took past the deadline"
    );
    let mut left = n;
    while timers.next().await.is_some() {
        left -= 1;
    }
    assert_eq!(left, 0);
    inserted + deadline.elapsed()
}

/// tokio's `yield_many`: 200 tasks × 100 yields.
async fn yield_many() {
    const TASKS: usize = 200;
    const YIELDS: usize = 100;
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            multipool::spawn(async {
                for _ in 0..YIELDS {
                    multipool::task::yield_now().await;
                }
            })
            .start()
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();

    let mut group = c.benchmark_group("spawn_complete");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| rt.block_on(rt.spawn(spawn_complete(n as usize))).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("timers_insert_cancel");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(rt.spawn(timers_insert_cancel(n as usize)))
                    .unwrap()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("timers_insert_fire");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in SIZES {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        rt.block_on(rt.spawn(timers_insert_fire(n as usize)))
                            .unwrap()
                    })
                    .sum()
            })
        });
    }
    group.finish();
    drop(rt);

    let mut group = c.benchmark_group("yield_many_max_workers");
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    group.throughput(Throughput::Elements(200 * 100));
    for max in [2usize, 64, 1_024] {
        let rt = multipool::Runtime::builder()
            .min_workers(NUM_WORKERS)
            .max_workers(max)
            .build()
            .unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(max), &max, |b, _| {
            b.iter(|| rt.block_on(yield_many()))
        });
        // CPU-bound work grows the pool only to the core count.
        eprintln!(
            "yield_many_max_workers/{max}: {} workers running at the end",
            rt.handle().metrics().num_workers()
        );
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500));
    bench(&mut criterion);
    criterion.final_summary();
}
