//! What `multipool::limit` costs a spawn (issue #14).
//!
//! Group `spawn_limit`: 10 000 spawns from inside a task (as
//! `spawn_many_in_task` in `rt_multi_threaded`), each task decrementing a
//! counter, the last signalling; throughput is per spawn. Functions:
//!
//! * `plain`: no limit, the baseline;
//! * `rate_limit`: `Spawn::rate_limit` with a quota that never runs out
//!   (`u32::MAX` a second, burst `u32::MAX`): the limiter's check on every
//!   spawn, no waiting;
//! * `pool_rate_limit`: the same quota as `PoolBuilder::rate_limit`;
//! * `concurrency`: `Spawn::concurrency` with `ConcurrencyLimit::new(usize::MAX)`:
//!   a permit taken at the spawn and held by the task, no waiting;
//! * `concurrency_contended`: a limit of 2 (= workers): most spawns wait in
//!   their first poll for a permit, the waiting path.
//!
//! Group `check`: one `RateLimiter::check` (uncontended, never limited).
//!
//! Run with `cargo bench --bench limit`; criterion's usual flags apply.

use std::num::NonZeroU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use multipool::limit::{ConcurrencyLimit, Quota, RateLimiter};
use multipool::{Runtime, Spawn};

const NUM_WORKERS: usize = 2;
const NUM_SPAWN: usize = 10_000;

/// A quota that never runs out in a benchmark.
fn unlimited() -> Quota {
    Quota::per_second(NonZeroU32::MAX)
}

fn runtime(pool_quota: Option<Quota>) -> Runtime {
    let builder = Runtime::builder().workers(NUM_WORKERS);
    match pool_quota {
        Some(quota) => builder.rate_limit(quota),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Times `NUM_SPAWN` spawns made from inside a task, each shaped by
/// `shape` before it is detached.
fn bench_spawns<S>(c: &mut Criterion, name: &str, rt: &Runtime, shape: S)
where
    S: Fn(Spawn<CountDown>) -> Spawn<CountDown> + Send + Sync + Clone + 'static,
{
    let mut group = c.benchmark_group("spawn_limit");
    group.throughput(Throughput::Elements(NUM_SPAWN as u64));
    let (tx, rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));
    group.bench_function(name, |b| {
        b.iter(|| {
            rem.store(NUM_SPAWN, Relaxed);
            let (tx, rem, shape) = (tx.clone(), rem.clone(), shape.clone());
            rt.spawn(async move {
                for _ in 0..NUM_SPAWN {
                    let task = CountDown {
                        tx: tx.clone(),
                        rem: rem.clone(),
                    };
                    shape(multipool::spawn(task)).detach();
                }
            })
            .detach();
            rx.recv().unwrap();
        })
    });
    group.finish();
}

/// A task that decrements the counter and, if last, signals.
struct CountDown {
    tx: mpsc::SyncSender<()>,
    rem: Arc<AtomicUsize>,
}

impl std::future::Future for CountDown {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if 1 == self.rem.fetch_sub(1, Relaxed) {
            self.tx.send(()).unwrap();
        }
        std::task::Poll::Ready(())
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();

    let rt = runtime(None);
    bench_spawns(&mut c, "plain", &rt, |spawn| spawn);
    let limiter = RateLimiter::new(unlimited());
    bench_spawns(&mut c, "rate_limit", &rt, move |spawn| {
        spawn.rate_limit(&limiter)
    });
    let limit = ConcurrencyLimit::new(usize::MAX);
    bench_spawns(&mut c, "concurrency", &rt, move |spawn| {
        spawn.concurrency(&limit)
    });
    let limit = ConcurrencyLimit::new(NUM_WORKERS);
    bench_spawns(&mut c, "concurrency_contended", &rt, move |spawn| {
        spawn.concurrency(&limit)
    });
    drop(rt);

    let paced = runtime(Some(unlimited()));
    bench_spawns(&mut c, "pool_rate_limit", &paced, |spawn| spawn);
    drop(paced);

    let limiter = RateLimiter::new(unlimited());
    c.bench_function("check", |b| b.iter(|| limiter.check().unwrap()));

    c.final_summary();
}
