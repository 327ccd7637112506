//! The workloads of `benches/task_alloc.rs` and
//! `benches/task_alloc_baseline.rs`: three of `rt_multi_threaded`'s
//! (multipool only, same code), built once with `TaskAlloc` as the global
//! allocator and once with the system's, so the two binaries differ in
//! the allocator alone. The `task_alloc` binary also runs each workload
//! with every task tracked (`memory_limit(usize::MAX)`: the per-poll
//! accounting on top of the wrapper).
//!
//! With `TASK_ALLOC_PROBE` set, a binary skips criterion and runs a fixed
//! amount of each workload once on one worker, for an instruction count
//! under `valgrind --tool=callgrind` (see the README's "Memory limits").

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use futures::channel::oneshot;

/// Worker threads (as `rt_multi_threaded`).
const NUM_WORKERS: usize = 2;
const NUM_SPAWN: usize = 10_000;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Whether the workload's tasks are tracked (spawned with a memory limit).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    No,
    Yes,
}

fn runtime(workers: usize) -> multipool::Runtime {
    multipool::Runtime::builder()
        .workers(workers)
        .build()
        .unwrap()
}

/// Spawns on the current runtime, detached.
fn spawn<F>(tracked: Tracked, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let spawn = multipool::spawn(fut);
    match tracked {
        Tracked::No => spawn.detach(),
        Tracked::Yes => spawn.memory_limit(usize::MAX).detach(),
    }
}

/// Spawns on `rt` from outside it, detached.
fn spawn_remote<F>(rt: &multipool::Runtime, tracked: Tracked, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let spawn = rt.spawn(fut);
    match tracked {
        Tracked::No => spawn.detach(),
        Tracked::Yes => spawn.memory_limit(usize::MAX).detach(),
    }
}

/// 10_000 spawns from inside `block_on`; the last task to finish signals.
fn spawn_many_local(rt: &multipool::Runtime, tracked: Tracked) {
    let (tx, rx) = mpsc::sync_channel(1);
    let rem = Arc::new(AtomicUsize::new(NUM_SPAWN));
    rt.block_on(async {
        for _ in 0..NUM_SPAWN {
            let tx = tx.clone();
            let rem = rem.clone();
            spawn(tracked, async move {
                if 1 == rem.fetch_sub(1, Relaxed) {
                    tx.send(()).unwrap();
                }
            });
        }
        rx.recv().unwrap();
    });
}

/// 200 tasks each yield 1_000 times, then report on a std channel.
fn yield_many(rt: &multipool::Runtime, tracked: Tracked) {
    const NUM_YIELD: usize = 1_000;
    const TASKS: usize = 200;
    let (tx, rx) = mpsc::sync_channel(TASKS);
    for _ in 0..TASKS {
        let tx = tx.clone();
        spawn_remote(rt, tracked, async move {
            for _ in 0..NUM_YIELD {
                multipool::task::yield_now().await;
            }
            tx.send(()).unwrap();
        });
    }
    for _ in 0..TASKS {
        rx.recv().unwrap();
    }
}

/// 1_000 ping-pongs over a pair of oneshots between a task and its partner.
fn ping_pong(rt: &multipool::Runtime, tracked: Tracked) {
    const NUM_PINGS: usize = 1_000;
    let (done_tx, done_rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(NUM_PINGS));
    rt.block_on(async {
        spawn(tracked, async move {
            for _ in 0..NUM_PINGS {
                let rem = rem.clone();
                let done_tx = done_tx.clone();
                spawn(tracked, async move {
                    let (tx1, rx1) = oneshot::channel();
                    let (tx2, rx2) = oneshot::channel();
                    spawn(tracked, async move {
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
}

type Workload = fn(&multipool::Runtime, Tracked);

const WORKLOADS: [(&str, Workload); 3] = [
    ("spawn_many_local", spawn_many_local),
    ("yield_many", yield_many),
    ("ping_pong", ping_pong),
];

/// 100_000 allocations and frees of 32 bytes, in one poll of a task.
#[inline(never)]
fn alloc_loop() {
    for i in 0..100_000u64 {
        drop(black_box(Box::new([i; 4])));
    }
}

/// Runs each workload as a criterion group with one function per variant
/// (`name` for untracked tasks; `{name}_tracked` as well with `tracked`),
/// or, with `TASK_ALLOC_PROBE` set, the probe.
pub fn main(name: &str, tracked: bool) {
    if std::env::var_os("TASK_ALLOC_PROBE").is_some() {
        return probe(tracked);
    }
    let variants: &[(Tracked, String)] = &if tracked {
        vec![
            (Tracked::No, name.to_owned()),
            (Tracked::Yes, format!("{name}_tracked")),
        ]
    } else {
        vec![(Tracked::No, name.to_owned())]
    };
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();
    for (workload, run) in WORKLOADS {
        let mut group: Group<'_> = c.benchmark_group(workload);
        if workload == "yield_many" {
            group.sampling_mode(SamplingMode::Flat);
        }
        for (tracked, function) in variants {
            let rt = runtime(NUM_WORKERS);
            group.bench_function(function.as_str(), |b| b.iter(|| run(&rt, *tracked)));
        }
        group.finish();
    }
    c.final_summary();
}

/// Each workload once (after a warm-up run) on a one-worker runtime, and
/// the allocation loop in one task: deterministic enough for callgrind's
/// instruction counts. `TASK_ALLOC_PROBE=alloc` runs only the loop,
/// `=yield_many` (etc.) only that workload; `_tracked` runs tracked tasks.
fn probe(tracked: bool) {
    let which = std::env::var("TASK_ALLOC_PROBE").unwrap();
    let track = if tracked && which.ends_with("_tracked") {
        Tracked::Yes
    } else {
        Tracked::No
    };
    let which = which.trim_end_matches("_tracked");
    let rt = runtime(1);
    for (workload, run) in WORKLOADS {
        if which == workload || which == "all" {
            run(&rt, track);
        }
    }
    if which == "alloc" || which == "all" {
        let spawn = rt.spawn(async { alloc_loop() });
        let task = match track {
            Tracked::No => spawn.start(),
            Tracked::Yes => spawn.memory_limit(usize::MAX).start(),
        };
        rt.block_on(task).unwrap();
    }
}
