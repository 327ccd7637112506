//! Task dependencies (`Spawn::after`) and `graph::TaskGraph`.
//!
//! Deterministic: channels and probes decide every order an assertion
//! depends on (a probe is a task pinned to the same worker as a held task,
//! spawned after it: once the probe has run, a held task that had been
//! queued by mistake would have run too). Every test runs under a
//! watchdog; nothing sleeps.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::{watchdog, DropCounter, Rng};
use futures::channel::oneshot;
use multipool::graph::{GraphError, Node, NodeError, OnDependencyFailure, TaskGraph};
use multipool::task::Id;
use multipool::{Priority, Runtime, RuntimeMetrics};

/// A future that counts its polls.
struct CountPolls<T> {
    polls: Arc<AtomicUsize>,
    inner: Pin<Box<dyn Future<Output = T> + Send>>,
}

impl<T> CountPolls<T> {
    fn new(polls: &Arc<AtomicUsize>, inner: impl Future<Output = T> + Send + 'static) -> Self {
        CountPolls {
            polls: polls.clone(),
            inner: Box::pin(inner),
        }
    }
}

impl<T> Future for CountPolls<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

/// Runs a task pinned to `worker` and waits for it: every task queued on
/// that worker before it, at its priority or above, has run by then.
fn probe(rt: &Runtime, worker: usize) {
    rt.block_on(rt.spawn(async {}).worker(worker)).unwrap();
}

/// spawned = the sum of the outcomes + alive (see `RuntimeMetrics`).
fn assert_conservation(metrics: &RuntimeMetrics) {
    let outcomes = metrics.completed_count()
        + metrics.cancelled_count()
        + metrics.panicked_count()
        + metrics.timed_out_count()
        + metrics.rejected_count()
        + metrics.shutdown_count();
    assert_eq!(
        metrics.spawned_tasks_count(),
        outcomes + metrics.num_alive_tasks() as u64,
        "{metrics:?}"
    );
}

#[test]
fn after_orders_tasks_across_workers() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        for round in 1..=100u64 {
            let value = Arc::new(AtomicU64::new(0));
            let (release, released) = oneshot::channel::<()>();
            let written = value.clone();
            let pinned = round % 2 == 0;
            let mut dependency = rt.spawn(async move {
                released.await.unwrap();
                // Relaxed: only `after` orders this store before the load.
                written.store(round, Ordering::Relaxed);
            });
            if pinned {
                dependency = dependency.worker(0);
            }
            let dependency = dependency.start();
            let read = value.clone();
            let mut dependent = rt
                .spawn(async move { read.load(Ordering::Relaxed) })
                .after(&dependency);
            if pinned {
                dependent = dependent.worker(1);
            }
            let dependent = dependent.start();
            probe(&rt, 1);
            assert!(
                !dependent.is_finished(),
                "round {round}: ran before its dependency"
            );
            release.send(()).unwrap();
            assert_eq!(rt.block_on(dependent).unwrap(), round, "round {round}");
            assert!(rt.block_on(dependency).is_ok());
        }
    });
}

#[test]
fn after_waits_for_every_dependency() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (release_a, released_a) = oneshot::channel::<()>();
        let (release_b, released_b) = oneshot::channel::<()>();
        let (id_tx, id_rx) = std::sync::mpsc::channel::<Id>();
        let log_a = log.clone();
        let mut a = rt
            .spawn(async move {
                released_a.await.unwrap();
                log_a.lock().unwrap().push("a");
            })
            .start();
        let log_b = log.clone();
        let b = rt
            .spawn(async move {
                // Named by the id it hands out itself.
                id_tx.send(multipool::task::id()).unwrap();
                released_b.await.unwrap();
                log_b.lock().unwrap().push("b");
            })
            .start();
        let b_id = id_rx.recv().unwrap();
        assert_eq!(b_id, b.id());
        drop(b); // detached: its id still names it
        let polls = Arc::new(AtomicUsize::new(0));
        let seen = log.clone();
        let dependent = rt
            .spawn(CountPolls::new(&polls, async move {
                seen.lock().unwrap().clone()
            }))
            .after(&a)
            .after(b_id)
            .worker(2)
            .start();
        probe(&rt, 2);
        assert_eq!(polls.load(Ordering::SeqCst), 0);
        release_a.send(()).unwrap();
        rt.block_on(&mut a).unwrap();
        probe(&rt, 2);
        assert_eq!(
            polls.load(Ordering::SeqCst),
            0,
            "ran with one dependency left"
        );
        release_b.send(()).unwrap();
        let seen = rt.block_on(dependent).unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.contains(&"a") && seen.contains(&"b"), "{seen:?}");
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn after_a_finished_or_unknown_task_does_not_wait() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let mut done = rt.spawn(async { 1 }).start();
        assert_eq!(rt.block_on(&mut done).unwrap(), 1);
        let done_id = done.id();
        // A spawn its pool refused: an id that no task has.
        let refused = rt.spawn(async {}).pool("no such pool").start();
        let refused_id = refused.id();
        let ran = rt.block_on(
            rt.spawn(async { "ran" })
                .after(&done)
                .after(done_id)
                .after(&refused)
                .after(refused_id),
        );
        assert_eq!(ran.unwrap(), "ran");
        assert!(rt.block_on(refused).unwrap_err().is_rejected());
        // A dependency that finishes while the dependent is being set up
        // (or before) releases it all the same.
        for _ in 0..100 {
            let quick = rt.spawn(async {}).start();
            let after = rt.spawn(async { 7 }).after(&quick).start();
            assert_eq!(rt.block_on(after).unwrap(), 7);
        }
    });
}

#[test]
fn a_waiting_task_is_not_polled() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let (release, released) = oneshot::channel::<()>();
        let dependency = rt.spawn(async move { released.await.unwrap() }).start();
        let polls = Arc::new(AtomicUsize::new(0));
        let dependent = rt
            .spawn(CountPolls::new(&polls, async {
                multipool::task::yield_now().await;
                "done"
            }))
            .after(&dependency)
            .worker(3)
            .start();
        for _ in 0..10 {
            probe(&rt, 3);
        }
        assert_eq!(polls.load(Ordering::SeqCst), 0);
        assert!(!dependent.is_finished());
        assert!(rt.handle().metrics().num_alive_tasks() >= 2);
        release.send(()).unwrap();
        assert_eq!(rt.block_on(dependent).unwrap(), "done");
        // Exactly the polls after its release: one, then one after the yield.
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        rt.block_on(dependency).unwrap();
    });
}

#[test]
fn abort_while_waiting() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let (release, released) = oneshot::channel::<()>();
        let dependency = rt.spawn(async move { released.await.unwrap() }).start();
        let polls = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter(drops.clone());
        let dependent = rt
            .spawn(CountPolls::new(&polls, async move {
                let _guard = guard;
            }))
            .after(&dependency)
            .start();
        dependent.abort();
        let err = rt.block_on(dependent).unwrap_err();
        assert!(err.is_cancelled() && !err.is_shutdown() && !err.is_dependency_failed());
        assert_eq!(polls.load(Ordering::SeqCst), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // The dependency is unaffected, and its end releases nothing twice.
        release.send(()).unwrap();
        rt.block_on(dependency).unwrap();
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.cancelled_count(), 1);
        assert_conservation(&metrics);
    });
}

#[test]
fn shutdown_while_waiting_reports_shutdown() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let dependency = rt.spawn(std::future::pending::<()>()).start();
        let polls = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter(drops.clone());
        let waiting = rt
            .spawn(CountPolls::new(&polls, async move {
                let _guard = guard;
            }))
            .after(&dependency)
            .start();
        // A long chain of waiting tasks: shutdown cancels it without
        // recursing once per link.
        let mut chain = vec![rt.spawn(async {}).after(&waiting).start()];
        for _ in 0..5_000 {
            let next = rt.spawn(async {}).after(chain.last().unwrap()).start();
            chain.push(next);
        }
        drop(rt);
        assert!(multipool::block_on(waiting).unwrap_err().is_shutdown());
        assert!(multipool::block_on(dependency).unwrap_err().is_shutdown());
        for task in chain {
            assert!(multipool::block_on(task).unwrap_err().is_shutdown());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let metrics = handle.metrics();
        assert_eq!(metrics.num_alive_tasks(), 0);
        assert_eq!(metrics.shutdown_count(), 5_003);
        assert_conservation(&metrics);
    });
}

#[test]
fn a_cycle_is_an_error() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let node = |name: &str| {
            let ran = ran.clone();
            Node::new(move |_| async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .name(name)
        };
        let mut graph: TaskGraph<()> = TaskGraph::new();
        let free = graph.add(node("free"));
        let a = graph.add(node("a").after([free]));
        let b = graph.add(node("b").after([a]));
        let c = graph.add(node("c").after([b]));
        graph.edge(c, a);
        let err = rt.block_on(graph.run()).unwrap_err();
        match &err {
            GraphError::Cycle { nodes, names } => {
                assert_eq!(nodes, &[a, b, c]);
                assert_eq!(names, &["a", "b", "c"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "the task graph has a cycle: `a` → `b` → `c` → `a`"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 0, "nothing runs");

        let mut graph: TaskGraph<()> = TaskGraph::new();
        let lonely = graph.add(node("x"));
        graph.edge(lonely, lonely);
        let err = graph.validate().unwrap_err();
        assert!(matches!(err, GraphError::Cycle { ref nodes, .. } if nodes == &[lonely]));

        // A node of another graph.
        let mut other: TaskGraph<()> = TaskGraph::new();
        let stranger = other.add(node("stranger"));
        let mut graph: TaskGraph<()> = TaskGraph::new();
        graph.add(node("y").after([stranger]));
        let err = rt.block_on(graph.run()).unwrap_err();
        assert_eq!(err, GraphError::UnknownNode { node: stranger });
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_failed_node_cancels_its_dependents() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let mark = |name: &'static str| {
            let ran = ran.clone();
            move || ran.lock().unwrap().push(name)
        };
        let mut graph: TaskGraph<u64, String> = TaskGraph::new();
        let failed = {
            let mark = mark("failed");
            graph.add(
                Node::new(move |_| async move {
                    mark();
                    Err("boom".to_string())
                })
                .name("failed"),
            )
        };
        let panics = {
            let mark = mark("panics");
            graph.add(Node::new(move |_| async move {
                mark();
                multipool::task::yield_now().await;
                panic!("kaboom")
            }))
        };
        let fine = graph.add(Node::new(|_| async { Ok(5) }));
        let mut dependents = Vec::new();
        for (name, input) in [("b", failed), ("g", panics)] {
            let mark_first = mark(name);
            let first = graph.add(
                Node::new(move |_| async move {
                    mark_first();
                    Ok(0)
                })
                .after([input, fine]),
            );
            let mark_second = mark(name);
            let second = graph.add(
                Node::new(move |_| async move {
                    mark_second();
                    Ok(0)
                })
                .after([first]),
            );
            dependents.extend([first, second]);
        }
        // Runs anyway: counts its failed inputs, and says what they were.
        let anyway = graph.add(
            Node::new(move |inputs| async move {
                assert_eq!(inputs.len(), 3);
                assert_eq!(inputs.values().copied().collect::<Vec<_>>(), [5]);
                let failures: Vec<_> = inputs.failures().collect();
                assert_eq!(failures[0].0, failed);
                assert_eq!(failures[0].1.error().map(String::as_str), Some("boom"));
                assert_eq!(failures[1].0, panics);
                let panic = failures[1].1.join_error().unwrap();
                assert!(panic.is_panic());
                assert_eq!(panic.to_string(), "task panicked: kaboom");
                Ok(failures.len() as u64)
            })
            .after([failed, panics, fine])
            .on_dependency_failure(OnDependencyFailure::Run),
        );
        // Transitively: after a cancelled node, with `run_anyway`, it sees
        // the cancellation.
        let sees_cancel = graph.add(
            Node::new(move |inputs| async move {
                let (_, output) = inputs.iter().next().unwrap();
                Ok(u64::from(output.unwrap_err().is_dependency_failed()))
            })
            .after([dependents[1]])
            .run_anyway(),
        );

        let result = rt.block_on(graph.run()).unwrap();
        assert!(!result.is_ok());
        assert_eq!(result.value(fine), Some(&5));
        assert_eq!(result.value(anyway), Some(&2));
        assert_eq!(result.value(sees_cancel), Some(&1));
        assert!(matches!(result.error(failed), Some(NodeError::Failed(e)) if **e == "boom"));
        for &node in &dependents {
            let err = result.error(node).unwrap();
            assert!(err.is_dependency_failed(), "{node}: {err}");
            assert!(err.join_error().unwrap().is_cancelled());
        }
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, ["failed", "panics"], "no dependent of a failure ran");
        // The handle's own error, with the panic's payload.
        let (_, output) = result.into_outputs().swap_remove(panics.index());
        let NodeError::Task(error) = output.unwrap_err() else {
            panic!("a panic is a task error")
        };
        let payload = Arc::try_unwrap(error).unwrap().into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"kaboom"));

        let metrics = rt.handle().metrics();
        assert_eq!(metrics.cancelled_count(), 4);
        assert_eq!(metrics.panicked_count(), 1);
        assert_eq!(metrics.completed_count(), 4);
        assert_conservation(&metrics);
    });
}

#[test]
fn nodes_run_by_priority() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .strict_priority()
            .build()
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut graph: TaskGraph<()> = TaskGraph::new();
        let root = graph.add(Node::new(|_| async { Ok(()) }));
        for (name, priority) in [
            ("low", Priority::Low),
            ("normal", Priority::Normal),
            ("high", Priority::High),
        ] {
            let order = order.clone();
            graph.add(
                Node::new(move |_| async move {
                    order.lock().unwrap().push(name);
                    Ok(())
                })
                .priority(priority)
                .after([root]),
            );
        }
        assert!(rt.block_on(graph.run()).unwrap().is_ok());
        assert_eq!(*order.lock().unwrap(), ["high", "normal", "low"]);
    });
}

#[test]
fn a_thousand_node_random_dag() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let count = 1_000;
        let mut rng = Rng::new(14);
        let mut inputs: Vec<Vec<usize>> = Vec::with_capacity(count);
        let mut graph: TaskGraph<u64> = TaskGraph::new();
        let mut ids = Vec::with_capacity(count);
        let levels = [Priority::High, Priority::Normal, Priority::Low];
        for index in 0..count {
            let mut list: Vec<usize> = if index == 0 {
                Vec::new()
            } else {
                (0..rng.usize_below(5))
                    .map(|_| rng.usize_below(index))
                    .collect()
            };
            list.sort_unstable();
            list.dedup();
            let node = Node::new(|inputs: multipool::graph::Inputs<u64>| async move {
                if inputs.len() % 2 == 1 {
                    multipool::task::yield_now().await;
                }
                Ok(inputs
                    .values()
                    .fold(1u64, |sum, value| sum.wrapping_add(*value)))
            })
            .priority(rng.pick(&levels));
            // Half the edges through `Node::after`, half through `edge`.
            let (before, later) = list.split_at(list.len() / 2);
            let id = graph.add(node.after(before.iter().map(|&input| ids[input])));
            for &input in later {
                graph.edge(ids[input], id);
            }
            ids.push(id);
            inputs.push(list);
        }
        let mut expected = vec![0u64; count];
        for index in 0..count {
            expected[index] = inputs[index]
                .iter()
                .fold(1u64, |sum, &input| sum.wrapping_add(expected[input]));
        }
        let result = rt.block_on(graph.run()).unwrap();
        assert!(result.is_ok());
        for (index, id) in ids.iter().enumerate() {
            assert_eq!(result.value(*id), Some(&expected[index]), "node {index}");
        }
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.completed_count(), count as u64);
        assert_conservation(&metrics);
    });
}

#[test]
fn after_an_abort_handle() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let (release, released) = oneshot::channel::<()>();
        let dependency = rt
            .spawn(async move {
                released.await.unwrap();
                5
            })
            .start();
        let abort = dependency.abort_handle();
        // The same id as the `JoinHandle`'s; taken here first, through the
        // abort handle's cell.
        assert_eq!(abort.id(), dependency.id());
        let dependent = rt.spawn(async { "after" }).after(&abort).worker(0).start();
        let by_id = rt
            .spawn(async { "by id" })
            .after(abort.id())
            .worker(0)
            .start();
        // A held task's own abort handle cancels it while it waits.
        let aborted = rt.spawn(async {}).after(&abort).start();
        aborted.abort_handle().abort();
        assert!(rt.block_on(aborted).unwrap_err().is_cancelled());
        probe(&rt, 0);
        assert!(!dependent.is_finished() && !by_id.is_finished());
        release.send(()).unwrap();
        assert_eq!(rt.block_on(dependent).unwrap(), "after");
        assert_eq!(rt.block_on(by_id).unwrap(), "by id");
        let id = dependency.id();
        assert_eq!(rt.block_on(dependency).unwrap(), 5);
        // Ended: the abort handle keeps the id and holds nothing back.
        assert!(abort.is_finished());
        assert_eq!(abort.id(), id);
        assert_eq!(rt.block_on(rt.spawn(async { 1 }).after(&abort)).unwrap(), 1);
        // A spawn its pool refused: its id, and nothing to wait for.
        let refused = rt.spawn(async {}).pool("no such pool").start();
        let refused_abort = refused.abort_handle();
        assert_eq!(refused_abort.id(), refused.id());
        assert!(refused_abort.is_finished());
        refused_abort.abort(); // does nothing
        assert_eq!(
            rt.block_on(rt.spawn(async { 2 }).after(&refused_abort))
                .unwrap(),
            2
        );
        assert!(rt.block_on(refused).unwrap_err().is_rejected());
        assert_conservation(&rt.handle().metrics());
    });
}

/// A held task passes its concurrency limit only once released: holding a
/// permit while it waits would deadlock here, where its dependency needs
/// that permit to finish. Both with `start` and with `.await`.
#[test]
fn a_held_task_takes_no_permit_while_it_waits() {
    use multipool::limit::ConcurrencyLimit;
    use std::future::IntoFuture;

    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let limit = ConcurrencyLimit::new(1);
        let (release, released) = oneshot::channel::<()>();
        let inner_limit = limit.clone();
        let dependency = rt
            .spawn(async move {
                released.await.unwrap();
                multipool::spawn(async { "inner" })
                    .concurrency(&inner_limit)
                    .await
                    .unwrap()
            })
            .start();
        let held = rt
            .spawn(async { "held" })
            .concurrency(&limit)
            .after(&dependency)
            .start();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let (awaited_limit, dependency_id) = (limit.clone(), dependency.id());
        let awaiting = rt
            .spawn(async move {
                let spawn = multipool::spawn(async { "awaited" })
                    .concurrency(&awaited_limit)
                    .after(dependency_id)
                    .into_future();
                ready.send(()).unwrap();
                spawn.await.unwrap()
            })
            .start();
        is_ready.recv().unwrap();
        assert_eq!(limit.in_use(), 0);
        release.send(()).unwrap();
        assert_eq!(rt.block_on(dependency).unwrap(), "inner");
        assert_eq!(rt.block_on(held).unwrap(), "held");
        assert_eq!(rt.block_on(awaiting).unwrap(), "awaited");
        assert_eq!(limit.in_use(), 0);
    });
}

/// A held task's `timeout` counts from its first poll, and its rate limit
/// is passed then, not at `start` (paused time: exact instants).
#[cfg(feature = "test-util")]
#[test]
fn a_held_task_counts_its_timeout_and_takes_its_rate_cell_once_released() {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use multipool::limit::{Quota, RateLimiter};
    use multipool::time::{sleep, Instant};

    watchdog(60, || {
        let rt = common::time::paused_runtime(2);
        common::time::run_in_task(&rt, async {
            let start = Instant::now();
            let secs = Duration::from_secs;
            let dependency = multipool::spawn(sleep(secs(10))).start();
            let fits = multipool::spawn(async move {
                sleep(secs(4)).await;
                Instant::now()
            })
            .timeout(secs(5))
            .after(&dependency)
            .start();
            // (The sleep made in the task: `sleep(d)` counts from its call.)
            let too_long = multipool::spawn(async move { sleep(secs(6)).await })
                .timeout(secs(5))
                .after(&dependency)
                .start();
            // One cell a second, no burst: the held task takes its cell at
            // 10 s, so the free one at 0 goes to the task started after it.
            let one = NonZeroU32::new(1).unwrap();
            let limiter = RateLimiter::new(Quota::per_second(one).allow_burst(one));
            let held = multipool::spawn(async { Instant::now() })
                .rate_limit(&limiter)
                .after(&dependency)
                .start();
            let free = multipool::spawn(async { Instant::now() })
                .rate_limit(&limiter)
                .start();
            assert_eq!(free.await.unwrap() - start, secs(0));
            assert_eq!(fits.await.unwrap() - start, secs(14));
            assert!(too_long.await.unwrap_err().is_timeout());
            assert_eq!(start.elapsed(), secs(15));
            assert_eq!(held.await.unwrap() - start, secs(10));
            dependency.await.unwrap();
        });
    });
}
