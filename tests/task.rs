//! JoinHandle, abort, detach, panics and the Spawn builder.

mod common;

use common::DropCounter;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use futures::channel::oneshot;
use multipool::{JoinError, Priority, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn spawn_builder_await_start_detach() {
    let rt = runtime(2);
    rt.block_on(async {
        assert_eq!(multipool::spawn(async { 1 }).await.unwrap(), 1);
        let handle = multipool::spawn(async { 2 })
            .priority(Priority::Low)
            .start();
        assert_eq!(handle.await.unwrap(), 2);

        let (tx, rx) = oneshot::channel();
        multipool::spawn(async move { tx.send(3).unwrap() }).detach();
        assert_eq!(rx.await.unwrap(), 3);
    });
}

#[test]
fn unused_spawn_never_runs_its_future() {
    let rt = runtime(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (r, guard) = (ran.clone(), DropCounter(dropped.clone()));
    let spawn = rt.spawn(async move {
        let _guard = guard;
        r.fetch_add(1, Ordering::SeqCst);
    });
    drop(spawn);
    // A task spawned afterwards completes; had the first one been started,
    // it would have been queued (and so run) before this one.
    rt.block_on(rt.spawn(async {})).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_the_handle_detaches_the_task() {
    let rt = runtime(2);
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = rt
        .spawn(async move {
            go_rx.await.unwrap();
            done_tx.send("finished").unwrap();
        })
        .start();
    drop(handle);
    go_tx.send(()).unwrap();
    assert_eq!(done_rx.recv().unwrap(), "finished");
}

#[test]
fn abort_cancels_a_pending_task_and_drops_its_future() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let guard = DropCounter(dropped.clone());
    let handle = rt
        .spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
        .name("forever")
        .start();
    assert_eq!(handle.name(), Some("forever"));
    handle.abort();
    handle.abort(); // idempotent
    let err = rt.block_on(handle).unwrap_err();
    assert!(err.is_cancelled() && !err.is_shutdown() && !err.is_panic());
    assert_eq!(err.to_string(), "task was cancelled");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn abort_after_completion_keeps_the_output() {
    let rt = runtime(1);
    let handle = rt.spawn(async { "done" }).start();
    while !handle.is_finished() {
        thread::yield_now();
    }
    handle.abort();
    assert_eq!(rt.block_on(handle).unwrap(), "done");
}

#[test]
fn abort_of_a_running_task_takes_effect_at_its_next_await() {
    let rt = runtime(2);
    let (running_tx, running_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let handle = rt
        .spawn(async move {
            p.fetch_add(1, Ordering::SeqCst);
            running_tx.send(()).unwrap();
            release_rx.recv().unwrap(); // blocks inside the first poll
            multipool::task::yield_now().await;
            p.fetch_add(1, Ordering::SeqCst); // never reached
        })
        .start();
    running_rx.recv().unwrap();
    handle.abort();
    release_tx.send(()).unwrap();
    assert!(rt.block_on(handle).unwrap_err().is_cancelled());
    assert_eq!(polls.load(Ordering::SeqCst), 1);
}

#[test]
#[cfg_attr(miri, ignore = "5 000 rounds: too slow under miri")]
fn abort_racing_completion() {
    let rt = runtime(2);
    let (mut completed, mut cancelled) = (0, 0);
    for round in 0..5_000usize {
        let handle = rt
            .spawn(async move {
                for _ in 0..round % 3 {
                    multipool::task::yield_now().await;
                }
                round
            })
            .start();
        if round % 2 == 0 {
            thread::yield_now();
        }
        handle.abort();
        match rt.block_on(handle) {
            Ok(value) => {
                assert_eq!(value, round);
                completed += 1;
            }
            Err(err) => {
                assert!(err.is_cancelled() && !err.is_shutdown(), "{err:?}");
                cancelled += 1;
            }
        }
    }
    assert_eq!(completed + cancelled, 5_000);
    assert!(
        cancelled > 0,
        "an abort right after spawn cancels most tasks"
    );
}

#[test]
#[cfg_attr(miri, ignore = "2 000 rounds: too slow under miri")]
fn abort_from_another_task_races_completion() {
    let rt = runtime(2);
    rt.block_on(async {
        for round in 0..2_000u32 {
            let handle = multipool::spawn(async move {
                multipool::task::yield_now().await;
                round
            })
            .start();
            let handle = Arc::new(handle);
            let aborter = {
                let handle = handle.clone();
                multipool::spawn(async move { handle.abort() }).start()
            };
            aborter.await.unwrap();
            let handle = Arc::try_unwrap(handle).unwrap();
            match handle.await {
                Ok(value) => assert_eq!(value, round),
                Err(err) => assert!(err.is_cancelled()),
            }
        }
    });
}

#[test]
fn panics_are_reported_and_workers_survive() {
    let rt = runtime(2);
    rt.block_on(async {
        // Far more panics than workers: none of them may kill a worker.
        for i in 0..100 {
            let err = multipool::spawn(async move {
                if i >= 0 {
                    panic!("boom {i}");
                }
            })
            .await
            .unwrap_err();
            assert!(err.is_panic() && !err.is_cancelled());
            assert_eq!(err.to_string(), format!("task panicked: boom {i}"));
            let payload = err.into_panic();
            assert_eq!(
                payload.downcast_ref::<String>().unwrap(),
                &format!("boom {i}")
            );
        }
        // The workers still run tasks.
        let results: Vec<_> = (0..100)
            .map(|i| multipool::spawn(async move { i }).start())
            .collect();
        for (i, handle) in results.into_iter().enumerate() {
            assert_eq!(handle.await.unwrap(), i);
        }
    });
    assert_eq!(rt.handle().metrics().num_workers(), 2);
}

#[test]
fn panic_payloads_that_are_not_strings() {
    let rt = runtime(1);
    let err = rt
        .block_on(rt.spawn(async { panic::panic_any(7u32) }))
        .unwrap_err();
    assert_eq!(err.to_string(), "task panicked");
    assert_eq!(*err.into_panic().downcast::<u32>().unwrap(), 7);
    let err = rt.block_on(rt.spawn(async {})).map(|()| 0);
    assert_eq!(err.unwrap(), 0);
}

#[test]
fn a_panicking_destructor_is_caught_too() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panicked");
        }
    }
    let rt = runtime(1);
    // Completed, then the destructor panics.
    let err = rt
        .block_on(rt.spawn(async {
            let _bomb = PanicOnDrop;
            1
        }))
        .unwrap_err();
    assert!(err.is_panic());
    // Aborted while pending: dropping it panics.
    let (started_tx, started_rx) = mpsc::channel();
    let handle = rt
        .spawn(async move {
            let _bomb = PanicOnDrop;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        })
        .start();
    started_rx.recv().unwrap();
    handle.abort();
    assert!(rt.block_on(handle).unwrap_err().is_panic());
    assert_eq!(rt.block_on(rt.spawn(async { 5 })).unwrap(), 5);
}

#[test]
fn try_into_panic_returns_other_errors() {
    let rt = runtime(1);
    let handle = rt.spawn(std::future::pending::<()>()).start();
    handle.abort();
    let err: JoinError = rt.block_on(handle).unwrap_err();
    let err = err.try_into_panic().unwrap_err();
    assert!(err.is_cancelled());
    let io: std::io::Error = err.into();
    assert_eq!(io.to_string(), "task was cancelled");
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let handle = rt.spawn(std::future::pending::<()>()).start();
        handle.abort();
        rt.block_on(handle).unwrap_err().into_panic()
    }));
    assert!(result.is_err(), "into_panic on a cancellation panics");
}

#[test]
fn join_error_is_send_sync_and_an_error() {
    fn assert_traits<T: Send + Sync + std::error::Error + 'static>() {}
    assert_traits::<JoinError>();
    fn assert_handle<T: Send + Sync + Unpin>() {}
    assert_handle::<multipool::JoinHandle<u8>>();
    assert_handle::<multipool::Handle>();
}

#[test]
fn awaiting_a_handle_by_reference_is_cancel_safe() {
    let rt = runtime(2);
    rt.block_on(async {
        let (tx, rx) = oneshot::channel::<u8>();
        let mut handle = multipool::spawn(async move { rx.await.unwrap() }).start();
        // Poll once through a reference, give up, then finish later.
        let first = futures::future::select(&mut handle, futures::future::ready(())).await;
        assert!(matches!(first, futures::future::Either::Right(_)));
        tx.send(9).unwrap();
        assert_eq!(handle.await.unwrap(), 9);
    });
}

#[test]
fn yield_now_lets_other_tasks_run() {
    let rt = runtime(1);
    let flag = Arc::new(AtomicUsize::new(0));
    let f = flag.clone();
    rt.block_on(async move {
        let waiter = multipool::spawn(async move {
            // Spin with yields until the other task ran on the same worker.
            while f.load(Ordering::SeqCst) == 0 {
                multipool::task::yield_now().await;
            }
        })
        .start();
        let setter = multipool::spawn({
            let flag = flag.clone();
            async move { flag.store(1, Ordering::SeqCst) }
        })
        .start();
        waiter.await.unwrap();
        setter.await.unwrap();
    });
}

#[test]
fn a_refused_task_may_enter_the_runtime_while_it_is_dropped() {
    struct EnterOnDrop(multipool::Handle);
    impl Drop for EnterOnDrop {
        fn drop(&mut self) {
            let _guard = self.0.enter();
        }
    }
    let rt = runtime(1);
    rt.block_on(async {
        let guard = EnterOnDrop(multipool::Handle::current());
        let err = multipool::spawn(async move {
            let _guard = guard;
        })
        .timeout(std::time::Duration::ZERO)
        .await
        .unwrap_err();
        assert!(err.is_rejected(), "{err:?}");
    });
}
