//! The executor-trait 2.x adapter, used the way lapin uses it: as an
//! `Arc<dyn FullExecutor + Send + Sync>`. No broker: every check is a
//! spawn, a cancel or a blocking call, ordered by channels, never by time.

mod common;

use std::rc::Rc;
use std::sync::{mpsc, Arc};

use common::{drop_signal, guard, on_thread};
use executor_trait::{FullExecutor, Task};
use multipool::{Priority, Runtime};
use multipool_compat::executor_trait::MultipoolExecutor;

type Exec = Arc<dyn FullExecutor + Send + Sync>;

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

fn exec(rt: &Runtime, priority: Priority) -> Exec {
    Arc::new(MultipoolExecutor::on(rt.handle().clone()).priority(priority))
}

/// Awaits a `Box<dyn Task>` (not `Unpin`).
async fn join(task: Box<dyn Task>) {
    Box::into_pin(task).await
}

#[test]
fn spawn_runs_on_a_worker_at_the_priority_and_await_waits_for_it() {
    on_thread("spawn", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::High);
        let metrics = rt.handle().metrics();
        let before = metrics.spawned_count(Priority::High);
        let (tx, rx) = mpsc::channel();
        let task = exec.spawn(Box::pin(async move {
            let id = multipool::task::try_id();
            tx.send((multipool::worker_index(), id.is_some())).unwrap();
        }));
        exec.block_on(Box::pin(async move { guard(join(task)).await }));
        // Awaited: the task has returned, so its message is there.
        let (worker, in_task) = rx.try_recv().unwrap();
        assert!(worker.is_some(), "ran off the workers");
        assert!(in_task);
        assert_eq!(metrics.spawned_count(Priority::High), before + 1);
    });
}

#[test]
fn default_executor_spawns_onto_the_current_runtime() {
    on_thread("default", || {
        let rt = runtime();
        let exec: Exec = Arc::new(MultipoolExecutor::new().priority(Priority::Low));
        let metrics = rt.handle().metrics();
        let before = metrics.spawned_count(Priority::Low);
        let pool = rt.block_on(async move {
            let (tx, rx) = futures::channel::oneshot::channel();
            let task = exec.spawn(Box::pin(async move {
                tx.send(multipool::Handle::current().pool_name().to_owned())
                    .unwrap();
            }));
            guard(join(task)).await;
            rx.await.unwrap()
        });
        assert_eq!(pool, "default");
        assert_eq!(metrics.spawned_count(Priority::Low), before + 1);
    });
}

#[test]
fn dropping_a_task_detaches_it() {
    on_thread("detach", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);
        let (gate_tx, gate_rx) = futures::channel::oneshot::channel::<()>();
        let (done_tx, done_rx) = futures::channel::oneshot::channel();
        drop(exec.spawn(Box::pin(async move {
            gate_rx.await.unwrap();
            done_tx.send(42).unwrap();
        })));
        // Dropped before it could finish: it still runs once let through.
        gate_tx.send(()).unwrap();
        assert_eq!(rt.block_on(guard(done_rx)).unwrap(), 42);
    });
}

#[test]
fn cancel_of_a_pending_task_drops_it_and_returns_none() {
    on_thread("cancel pending", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);
        let (signal, dropped) = drop_signal();
        let (started_tx, started_rx) = futures::channel::oneshot::channel();
        let task = exec.spawn(Box::pin(async move {
            let _signal = signal;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        }));
        let cancelled = rt.block_on(async move {
            guard(started_rx).await.unwrap(); // it is running, and will never end
            guard(task.cancel()).await
        });
        assert_eq!(cancelled, None);
        // `cancel` returned after the future was dropped.
        dropped.try_recv().unwrap();
    });
}

#[test]
fn cancel_of_a_completed_task_returns_some() {
    on_thread("cancel completed", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);
        let (id_tx, id_rx) = futures::channel::oneshot::channel();
        let task = exec.spawn(Box::pin(async move {
            id_tx.send(multipool::task::id()).unwrap();
        }));
        let cancelled = rt.block_on(async move {
            let id = guard(id_rx).await.unwrap();
            // Runs only once the task has ended (returned).
            guard(multipool::spawn(async {}).after(id)).await.unwrap();
            guard(task.cancel()).await
        });
        assert_eq!(cancelled, Some(()));
    });
}

#[test]
fn awaiting_a_panicked_task_resumes_its_panic() {
    on_thread("panic", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);
        let task = exec.spawn(Box::pin(async { panic!("task boom") }));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(guard(join(task)))
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task boom"));
    });
}

#[test]
fn spawn_blocking_runs_the_closure_off_the_workers() {
    on_thread("blocking", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::High);
        let (tx, rx) = mpsc::channel();
        let inner = exec.clone();
        exec.block_on(Box::pin(async move {
            guard(inner.spawn_blocking(Box::new(move || {
                tx.send((6 * 7, multipool::worker_index())).unwrap();
            })))
            .await;
        }));
        // Resolved: the closure has run.
        assert_eq!(rx.try_recv().unwrap(), (42, None));
    });
}

#[test]
fn spawn_blocking_resumes_the_closures_panic() {
    on_thread("blocking panic", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(guard(
                exec.spawn_blocking(Box::new(|| panic!("blocking boom"))),
            ))
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"blocking boom"));
    });
}

#[test]
fn spawn_local_pins_to_the_worker_or_hands_the_future_back() {
    on_thread("local", || {
        let rt = runtime();
        let exec = exec(&rt, Priority::Normal);

        // Off the workers: refused, and the future comes back unrun.
        let (tx, rx) = mpsc::channel();
        let refused = exec
            .spawn_local(Box::pin(async move { tx.send(1).unwrap() }))
            .map(drop)
            .unwrap_err();
        assert!(rx.try_recv().is_err());
        multipool::block_on(refused.0);
        assert_eq!(rx.try_recv().unwrap(), 1);

        // On a worker of its runtime: a `!Send` task, pinned there. (A
        // `Box<dyn Task>` is not `Send`: the task awaiting it is local too.)
        let inner = exec.clone();
        let (worker, local_worker, value) = rt
            .block_on(rt.spawn(async move {
                multipool::spawn_local(async move {
                    let (tx, rx) = futures::channel::oneshot::channel();
                    let not_send = Rc::new(7);
                    let worker = multipool::worker_index();
                    let task = inner
                        .spawn_local(Box::pin(async move {
                            multipool::task::yield_now().await;
                            tx.send((*not_send, multipool::worker_index())).unwrap();
                        }))
                        .map_err(|_| "spawn_local refused on a worker")
                        .unwrap();
                    guard(join(task)).await;
                    let (value, local_worker) = rx.await.unwrap();
                    (worker, local_worker, value)
                })
                .await
                .unwrap()
            }))
            .unwrap();
        assert_eq!(value, 7);
        assert!(worker.is_some());
        assert_eq!(worker, local_worker);

        // On a worker of another runtime: refused too.
        let other = runtime();
        let inner = exec.clone();
        let refused_elsewhere = other
            .block_on(other.spawn(async move { inner.spawn_local(Box::pin(async {})).is_err() }))
            .unwrap();
        assert!(refused_elsewhere);
    });
}

#[test]
fn a_task_refused_after_shutdown_panics_when_awaited_and_cancels_to_none() {
    on_thread("refused", || {
        let rt = runtime();
        let handle = rt.handle().clone();
        let exec: Exec = Arc::new(MultipoolExecutor::on(handle.clone()));
        rt.shutdown_timeout(common::HANG);
        assert!(handle.is_shutdown());
        let task = exec.spawn(Box::pin(async {})); // never panics
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            multipool::block_on(guard(join(task)))
        }));
        let payload = outcome.unwrap_err();
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(message.contains("did not complete"), "{message}");
        let task = exec.spawn(Box::pin(async {}));
        assert_eq!(multipool::block_on(guard(task.cancel())), None);
    });
}

/// A full queue does not refuse the adapter's spawns: lapin drops the
/// tasks it spawns, so a refusal would end them unseen.
#[test]
fn spawn_past_a_full_queue_still_runs_the_task() {
    on_thread("full", || {
        let rt = Runtime::builder().workers(1).max_queued(1).build().unwrap();
        let exec = exec(&rt, Priority::Normal);
        // Hold the only worker, so what is queued stays queued.
        let (release, held) = mpsc::channel::<()>();
        let blocker = rt.spawn(async move { held.recv().unwrap() }).start();
        while rt.handle().metrics().num_queued() != 0 {
            std::thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                exec.spawn(Box::pin(async move { tx.send(i).unwrap() }))
            })
            .collect();
        assert_eq!(rt.handle().metrics().num_queued(), 3, "past the bound of 1");
        // Dropped at once, as lapin does: they run anyway.
        drop(tasks);
        release.send(()).unwrap();
        rt.block_on(blocker).unwrap();
        let mut ran: Vec<i32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        ran.sort_unstable();
        assert_eq!(ran, [0, 1, 2]);
    });
}
