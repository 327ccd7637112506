//! `JoinSet` and `AbortHandle` (issue #14): results in completion order,
//! each exactly once; aborting from the set, from an `AbortHandle` on
//! another thread, and by dropping the set; panics and refusals surface as
//! that task's `Err`; `is_finished` on an `AbortHandle`.
//!
//! Nothing here sleeps to "let things happen": tasks wait on channels the
//! test opens in the order it chooses, a worker is held with
//! `common::hold_worker`, and the only polling loops wait (under a watchdog)
//! for a state the runtime reaches by itself.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::{hold_worker, wait_until, watchdog, DropCounter, WATCHDOG_WAIT};
use futures::channel::oneshot;
use multipool::task::{AbortHandle, JoinSet};
use multipool::{Priority, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn handles_and_sets_have_the_expected_traits() {
    fn clone_send_sync_debug<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    fn send_sync_debug_default<T: Send + Sync + std::fmt::Debug + Default + Unpin>() {}
    clone_send_sync_debug::<AbortHandle>();
    send_sync_debug_default::<JoinSet<String>>();
}

#[test]
fn join_next_returns_tasks_in_the_order_they_finish() {
    watchdog(60, || {
        let rt = runtime(2);
        let mut set = JoinSet::new();
        let mut gates = Vec::new();
        for i in 0..5usize {
            let (open, gate) = oneshot::channel::<()>();
            gates.push(Some(open));
            set.spawn(rt.spawn(async move {
                gate.await.unwrap();
                i
            }));
        }
        assert_eq!(set.len(), 5);
        for i in [3, 0, 4, 1, 2] {
            gates[i].take().unwrap().send(()).unwrap();
            let finished = multipool::block_on(set.join_next()).unwrap().unwrap();
            assert_eq!(
                finished, i,
                "spawn order is 0..5, completion order 3 0 4 1 2"
            );
        }
        assert!(set.is_empty());
        assert!(multipool::block_on(set.join_next()).is_none());
    });
}

#[test]
fn join_next_works_under_a_foreign_executor() {
    watchdog(60, || {
        let rt = runtime(2);
        let mut set = JoinSet::new();
        let (open, gate) = oneshot::channel::<()>();
        set.spawn(rt.spawn(async move {
            gate.await.unwrap();
            "late"
        }));
        set.spawn(rt.spawn(async { "early" }));
        // futures' block_on parks this thread until the set's waker (not a
        // multipool one) is woken.
        assert_eq!(
            futures::executor::block_on(set.join_next())
                .unwrap()
                .unwrap(),
            "early"
        );
        open.send(()).unwrap();
        assert_eq!(
            futures::executor::block_on(set.join_next())
                .unwrap()
                .unwrap(),
            "late"
        );
    });
}

#[test]
fn dropping_the_set_aborts_every_task_once() {
    watchdog(60, || {
        let rt = runtime(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let mut aborts = Vec::new();
        for _ in 0..50 {
            let guard = DropCounter(dropped.clone());
            aborts.push(set.spawn(rt.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })));
        }
        assert!(aborts.iter().all(|abort| !abort.is_finished()));
        drop(set);
        // The futures never complete: being dropped means being cancelled.
        assert!(
            wait_until(WATCHDOG_WAIT, || aborts
                .iter()
                .all(AbortHandle::is_finished)),
            "a task of the dropped set was not aborted"
        );
        assert_eq!(dropped.load(Ordering::SeqCst), 50);
        assert!(wait_until(WATCHDOG_WAIT, || rt
            .handle()
            .metrics()
            .num_alive_tasks()
            == 0));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            50,
            "each future dropped once"
        );
    });
}

#[test]
fn abort_handles_abort_from_other_threads() {
    watchdog(60, || {
        let rt = runtime(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let (_never, gate) = oneshot::channel::<()>();
        let guard = DropCounter(dropped.clone());
        let abort = set.spawn(rt.spawn(async move {
            let _guard = guard;
            gate.await.ok();
            "not aborted"
        }));
        set.spawn(rt.spawn(async { "kept" }));
        let clones: Vec<_> = (0..4).map(|_| abort.clone()).collect();
        for clone in clones {
            thread::spawn(move || clone.abort()).join().unwrap();
        }
        let mut results: Vec<_> = multipool::block_on(async {
            let mut results = Vec::new();
            while let Some(result) = set.join_next().await {
                results.push(result);
            }
            results
        });
        results.sort_by_key(Result::is_ok);
        let err = results.remove(0).unwrap_err();
        assert!(err.is_cancelled() && !err.is_shutdown(), "{err:?}");
        assert_eq!(results.remove(0).unwrap(), "kept");
        assert!(abort.is_finished());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn an_abort_handle_outlives_its_join_handle() {
    watchdog(60, || {
        let rt = runtime(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter(dropped.clone());
        let handle = rt
            .spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .start();
        let abort = handle.abort_handle();
        drop(handle); // detached
        assert!(!abort.is_finished());
        thread::spawn(move || {
            abort.abort();
            assert!(wait_until(WATCHDOG_WAIT, || abort.is_finished()));
        })
        .join()
        .unwrap();
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn abort_handle_is_finished_and_aborting_a_finished_task_does_nothing() {
    watchdog(60, || {
        let rt = runtime(2);
        let (open, gate) = oneshot::channel::<()>();
        let handle = rt
            .spawn(async move {
                gate.await.unwrap();
                "done"
            })
            .start();
        let abort = handle.abort_handle();
        let twin = abort.clone();
        assert!(!abort.is_finished() && !twin.is_finished());
        assert!(format!("{abort:?}").contains("finished: false"));
        open.send(()).unwrap();
        assert_eq!(multipool::block_on(handle).unwrap(), "done");
        assert!(abort.is_finished() && twin.is_finished());
        abort.abort(); // finished: nothing happens
        assert!(format!("{abort:?}").contains("finished: true"));

        // Made after the task finished: finished from the start.
        let handle = rt.spawn(async { 1 }).start();
        while !handle.is_finished() {
            thread::yield_now();
        }
        let late = handle.abort_handle();
        assert!(late.is_finished());
        late.abort();
        assert_eq!(multipool::block_on(handle).unwrap(), 1);
    });
}

#[test]
fn abort_all_cancels_what_has_not_finished() {
    watchdog(60, || {
        let rt = runtime(2);
        let mut set = JoinSet::new();
        let quick = set.spawn(rt.spawn(async { Some(7) }));
        assert!(wait_until(WATCHDOG_WAIT, || quick.is_finished()));
        for _ in 0..100 {
            set.spawn(rt.spawn(async {
                std::future::pending::<()>().await;
                None
            }));
        }
        set.abort_all();
        assert_eq!(set.len(), 101, "aborted tasks stay until joined");
        let (mut cancelled, mut completed) = (0, 0);
        multipool::block_on(async {
            while let Some(result) = set.join_next().await {
                match result {
                    Ok(value) => {
                        assert_eq!(value, Some(7));
                        completed += 1;
                    }
                    Err(err) => {
                        assert!(err.is_cancelled(), "{err:?}");
                        cancelled += 1;
                    }
                }
            }
        });
        assert_eq!((completed, cancelled), (1, 100));
    });
}

#[test]
fn len_is_empty_and_detach_all() {
    watchdog(60, || {
        let rt = runtime(2);
        let mut set: JoinSet<u32> = JoinSet::default();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert!(set.try_join_next().is_none());
        let (open, gate) = oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        set.spawn(rt.spawn(async move {
            gate.await.unwrap();
            done_tx.send("ran to completion").unwrap();
            1
        }));
        set.spawn(rt.spawn(async { 2 }));
        set.spawn(rt.spawn(async { 3 }));
        assert_eq!(set.len(), 3);
        assert_eq!(format!("{set:?}"), "JoinSet { len: 3 }");
        let first = multipool::block_on(set.join_next()).unwrap().unwrap();
        assert!(first == 2 || first == 3);
        assert_eq!(set.len(), 2);
        set.detach_all();
        assert!(set.is_empty());
        assert!(multipool::block_on(set.join_next()).is_none());
        // Detached, not aborted: the gated task still runs.
        open.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), "ran to completion");
        // The set is usable again.
        set.spawn(rt.spawn(async { 4 }));
        assert_eq!(multipool::block_on(set.join_next()).unwrap().unwrap(), 4);
    });
}

#[test]
fn a_panic_is_that_tasks_error_and_the_others_go_on() {
    watchdog(60, || {
        let rt = runtime(2);
        let mut set = JoinSet::new();
        let (open, gate) = oneshot::channel::<()>();
        let gate = futures::future::FutureExt::shared(gate);
        for i in 0..4 {
            let gate = gate.clone();
            set.spawn(rt.spawn(async move {
                gate.await.unwrap();
                i
            }));
        }
        set.spawn(rt.spawn(async { panic!("task 4 failed") }));
        let err = multipool::block_on(set.join_next()).unwrap().unwrap_err();
        assert!(err.is_panic(), "{err:?}");
        assert_eq!(err.to_string(), "task panicked: task 4 failed");
        open.send(()).unwrap();
        let mut rest: Vec<i32> = multipool::block_on(async {
            let mut rest = Vec::new();
            while let Some(result) = set.join_next().await {
                rest.push(result.unwrap());
            }
            rest
        });
        rest.sort();
        assert_eq!(rest, [0, 1, 2, 3]);
    });
}

#[test]
fn a_refused_spawn_is_that_tasks_error() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).max_queued(1).build().unwrap();
        let held = hold_worker(&rt);
        let mut set = JoinSet::new();
        let queued = set.spawn(rt.spawn(async { "ran" }).priority(Priority::High));
        let refused = set.spawn(rt.spawn(async { "never" }));
        assert_eq!(set.len(), 2, "a refused task is in the set too");
        assert!(refused.is_finished() && !queued.is_finished());
        // The worker is held: only the refusal can be ready.
        let err = set.try_join_next().unwrap().unwrap_err();
        assert!(
            err.is_rejected() && err.to_string().contains("queue is full"),
            "{err}"
        );
        assert!(set.try_join_next().is_none());
        held.release();
        assert_eq!(
            multipool::block_on(set.join_next()).unwrap().unwrap(),
            "ran"
        );
        assert!(set.is_empty());
    });
}

#[test]
fn ten_thousand_tasks_each_returned_once() {
    watchdog(120, || {
        let rt = runtime(2);
        let results = rt.block_on(async {
            let mut set = JoinSet::new();
            for i in 0..10_000u32 {
                let priority = [Priority::High, Priority::Normal, Priority::Low][i as usize % 3];
                set.spawn(
                    multipool::spawn(async move {
                        if i % 2 == 0 {
                            multipool::task::yield_now().await;
                        }
                        i
                    })
                    .priority(priority),
                );
            }
            let mut seen = vec![0u8; 10_000];
            while let Some(result) = set.join_next().await {
                seen[result.unwrap() as usize] += 1;
            }
            seen
        });
        assert!(results.iter().all(|&count| count == 1));
    });
}

#[test]
fn shutdown_aborts_and_waits() {
    watchdog(60, || {
        let rt = runtime(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..20 {
            let guard = DropCounter(dropped.clone());
            set.spawn(rt.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }));
        }
        multipool::block_on(set.shutdown());
        assert!(set.is_empty());
        // Every task's future is dropped before its result reaches the set.
        assert_eq!(dropped.load(Ordering::SeqCst), 20);
    });
}

#[test]
fn join_all_collects_and_resumes_a_panic_after_aborting_the_rest() {
    watchdog(60, || {
        let rt = runtime(2);
        let set: JoinSet<u64> = (1..=5u64).map(|i| rt.spawn(async move { i })).collect();
        let mut all = multipool::block_on(set.join_all());
        all.sort();
        assert_eq!(all, [1, 2, 3, 4, 5]);

        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let mut aborts = Vec::new();
        for _ in 0..3 {
            let guard = DropCounter(dropped.clone());
            aborts.push(set.spawn(rt.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })));
        }
        set.spawn(rt.spawn(async { panic!("join_all sees this") }));
        let payload = panic::catch_unwind(AssertUnwindSafe(|| {
            multipool::block_on(set.join_all());
        }))
        .unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"join_all sees this"));
        assert!(wait_until(WATCHDOG_WAIT, || aborts
            .iter()
            .all(AbortHandle::is_finished)));
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn insert_takes_started_tasks_and_extend_takes_spawns() {
    watchdog(60, || {
        let rt = runtime(2);
        let total = rt.block_on(async {
            let mut set = JoinSet::new();
            set.insert(multipool::task::spawn_blocking(|| 100));
            set.insert(multipool::spawn(async { 20 }).start());
            set.extend((0..3).map(|i| multipool::spawn(async move { i })));
            assert_eq!(set.len(), 5);
            set.join_all().await.into_iter().sum::<i32>()
        });
        assert_eq!(total, 123);
    });
}

#[test]
fn abort_handles_made_and_used_while_tasks_finish() {
    watchdog(120, || {
        let rt = runtime(2);
        let (mut completed, mut cancelled) = (0, 0);
        for round in 0..2_000u32 {
            let handle = rt
                .spawn(async move {
                    if round % 2 == 0 {
                        multipool::task::yield_now().await;
                    }
                    round
                })
                .start();
            // Made while the task may be finishing; used from another thread
            // while it may be finishing, or after its memory is gone.
            let abort = handle.abort_handle();
            let aborter = thread::spawn(move || {
                abort.abort();
                abort
            });
            match rt.block_on(handle) {
                Ok(value) => {
                    assert_eq!(value, round);
                    completed += 1;
                }
                Err(err) => {
                    assert!(err.is_cancelled(), "{err:?}");
                    cancelled += 1;
                }
            }
            let abort = aborter.join().unwrap();
            assert!(abort.is_finished());
            abort.abort(); // the task may be freed by now: still harmless
        }
        assert_eq!(completed + cancelled, 2_000);
    });
}
