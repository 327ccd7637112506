//! The overhead of `graph::TaskGraph` per node, against doing the same by
//! hand with spawns and awaits, on a `workers(2)` runtime.
//!
//! Criterion groups (each iteration builds and runs the whole graph inside
//! one driver task on the runtime, which the bench thread `block_on`s, so
//! the by-hand variants await on a worker, not across threads):
//!
//! * `chain_1000`: 1 000 nodes, each one's input the one before it, each
//!   adding 1 to its input. `task_graph`: a `TaskGraph<u64>`;
//!   `spawn_await`: by hand, spawn a task with the value so far, await it,
//!   spawn the next; `spawn_after`: 1 000 plain tasks chained with
//!   `Spawn::after` (no values passed; the dependency machinery alone),
//!   awaiting the last.
//! * `fan_in_1000`: 999 independent nodes and one that sums them.
//!   `task_graph`: a `TaskGraph<u64>`; `spawn_await`: spawn 999 tasks,
//!   await each, then spawn the sum.
//!
//! Run with `cargo bench --bench task_graph`; criterion's usual flags (a
//! filter, `--sample-size`, ...) apply.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use multipool::graph::{Node, TaskGraph};
use multipool::Runtime;

const NODES: usize = 1_000;

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

fn chain_graph() -> TaskGraph<u64> {
    let mut graph = TaskGraph::new();
    let mut last = graph.add(Node::new(|_| async { Ok(0) }));
    for _ in 1..NODES {
        last = graph.add(
            Node::new(|inputs| async move { Ok(inputs.values().next().copied().unwrap_or(0) + 1) })
                .after([last]),
        );
    }
    graph
}

fn fan_in_graph() -> TaskGraph<u64> {
    let mut graph = TaskGraph::new();
    let sources: Vec<_> = (0..NODES as u64 - 1)
        .map(|value| graph.add(Node::new(move |_| async move { Ok(value) })))
        .collect();
    graph.add(Node::new(|inputs| async move { Ok(inputs.values().sum()) }).after(sources));
    graph
}

/// Runs `future` in a task of `rt`, from the bench thread.
fn drive<F>(rt: &Runtime, future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(future)).unwrap()
}

fn chain(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("chain_1000");
    group.bench_function("task_graph", |b| {
        b.iter(|| {
            let result = drive(&rt, chain_graph().run()).unwrap();
            black_box(result.len())
        })
    });
    group.bench_function("spawn_await", |b| {
        b.iter(|| {
            drive(&rt, async {
                let mut value = 0u64;
                for _ in 1..NODES {
                    value = multipool::spawn(async move { value + 1 }).await.unwrap();
                }
                black_box(value)
            })
        })
    });
    group.bench_function("spawn_after", |b| {
        b.iter(|| {
            drive(&rt, async {
                let mut last = multipool::spawn(async {}).start();
                for _ in 1..NODES {
                    last = multipool::spawn(async {}).after(&last).start();
                }
                last.await.unwrap()
            })
        })
    });
    group.finish();
}

fn fan_in(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fan_in_1000");
    group.bench_function("task_graph", |b| {
        b.iter(|| {
            let result = drive(&rt, fan_in_graph().run()).unwrap();
            black_box(result.len())
        })
    });
    group.bench_function("spawn_await", |b| {
        b.iter(|| {
            drive(&rt, async {
                let handles: Vec<_> = (0..NODES as u64 - 1)
                    .map(|value| multipool::spawn(async move { value }).start())
                    .collect();
                let mut values = Vec::with_capacity(handles.len());
                for handle in handles {
                    values.push(handle.await.unwrap());
                }
                let sum = multipool::spawn(async move { values.iter().sum::<u64>() })
                    .await
                    .unwrap();
                black_box(sum)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, chain, fan_in);
criterion_main!(benches);
