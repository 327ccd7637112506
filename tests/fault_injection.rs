//! Faults injected at named points of the runtime (feature
//! `fault-injection`, see `multipool::fault`): at each one the runtime
//! keeps serving, or fails loudly, and never hangs or loses a task.
//!
//! Armed points are process-wide, so the tests of this binary take turns
//! (see [`serial`]).
#![cfg(feature = "fault-injection")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::{watchdog, DropCounter};
use multipool::{fault, Priority, PriorityFirst, Runtime};

/// One test at a time; every point disarmed before and after.
fn serial() -> impl Drop {
    static LOCK: Mutex<()> = Mutex::new(());
    struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);
    impl Drop for Serial {
        fn drop(&mut self) {
            fault::disarm_all();
        }
    }
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fault::disarm_all();
    Serial(guard)
}

/// Spawns `n` tasks and checks each completes with its value.
fn serves(rt: &Runtime, n: usize) {
    let handles: Vec<_> = (0..n).map(|i| rt.spawn(async move { i }).start()).collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(rt.block_on(handle).unwrap(), i);
    }
}

#[test]
fn a_fault_in_a_poll_or_a_drop_is_reported_on_the_handle() {
    let _serial = serial();
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        for point in ["task.poll", "task.drop"] {
            fault::arm(point, 1);
            let guard = DropCounter(drops.clone());
            let result = rt.block_on(rt.spawn(async move {
                let _guard = guard;
                1
            }));
            assert!(result.unwrap_err().is_panic(), "{point}");
            serves(&rt, 20);
        }
        drop(rt);
        assert_eq!(drops.load(Ordering::SeqCst), 2, "each future dropped once");
    });
}

#[test]
fn a_fault_in_a_hook_is_caught_and_the_runtime_serves_on() {
    let _serial = serial();
    watchdog(60, || {
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        fault::arm("hook", 1);
        // `prewarm`: `build` returns once both start hooks ran, so the
        // second `arm` below cannot reach a start hook.
        let rt = Runtime::builder()
            .workers(2)
            .prewarm(true)
            .on_thread_start(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .on_thread_stop(|| {})
            .build()
            .unwrap();
        serves(&rt, 50);
        fault::arm("hook", 4);
        drop(rt);
        // One of the two start hooks was skipped by the fault.
        assert!(starts.load(Ordering::SeqCst) >= 1);
    });
}

#[test]
fn a_fault_in_a_user_scheduler_falls_back_to_the_built_in_order() {
    let _serial = serial();
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .scheduler(PriorityFirst::new())
            .build()
            .unwrap();
        fault::arm("scheduler", 1);
        for priority in [Priority::High, Priority::Normal, Priority::Low] {
            let handle = rt.spawn(async { 3 }).priority(priority).start();
            assert_eq!(rt.block_on(handle).unwrap(), 3);
        }
        serves(&rt, 20);
    });
}

/// The worker loop itself panics: a bug in the runtime. The pool shuts down
/// loudly: every task's handle resolves, none hangs, each future is dropped
/// once, and later spawns are refused.
fn fails_loudly(point: &'static str, timed: bool) {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    if timed {
        // Before the timers are armed, so the first one due trips it.
        fault::arm(point, 1);
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let pending: Vec<_> = (0..8)
        .map(|_| {
            let (guard, ready) = (DropCounter(drops.clone()), ready_tx.clone());
            rt.spawn(async move {
                let _guard = guard;
                ready.send(()).unwrap();
                if timed {
                    multipool::time::sleep(Duration::from_millis(1)).await;
                }
                std::future::pending::<()>().await
            })
            .start()
        })
        .collect();
    if !timed {
        for _ in 0..8 {
            ready_rx.recv().unwrap();
        }
        fault::arm(point, 1);
        // A tick of any worker: wake one with a task.
        rt.spawn(async {}).detach();
    }
    for handle in pending {
        assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
    }
    assert!(rt.handle().is_shutdown());
    assert!(multipool::block_on(rt.spawn(async {}))
        .unwrap_err()
        .is_shutdown());
    drop(rt);
    assert_eq!(drops.load(Ordering::SeqCst), 8);
}

#[test]
fn a_fault_in_the_worker_loop_shuts_the_pool_down_loudly() {
    let _serial = serial();
    watchdog(60, || fails_loudly("worker.tick", false));
}

#[test]
fn a_fault_while_firing_timers_shuts_the_pool_down_loudly() {
    let _serial = serial();
    watchdog(60, || fails_loudly("timer.fire", true));
}

#[test]
fn a_worker_thread_that_fails_to_start_fails_the_build() {
    let _serial = serial();
    watchdog(60, || {
        fault::arm("worker.start", 1);
        let error = Runtime::builder()
            .workers(2)
            .prewarm(true)
            .build()
            .expect_err("a worker never ran");
        assert!(error.to_string().contains("worker"), "{error}");
        // A worker the monitor adds fails to start: its slot is handed
        // back, and the monitor adds another while work waits.
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(3)
            .prewarm(true)
            .build()
            .unwrap();
        fault::arm("worker.start", 1);
        let held = common::hold_worker(&rt);
        let (ran_tx, ran_rx) = mpsc::channel();
        rt.spawn(async move { ran_tx.send(()).unwrap() }).detach();
        ran_rx.recv().unwrap();
        held.release();
        serves(&rt, 20);
        assert!(rt.handle().metrics().workers_started() >= 2);
    });
}

#[test]
fn a_fault_in_the_monitor_is_caught_and_it_samples_on() {
    let _serial = serial();
    watchdog(60, || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(2)
            .build()
            .unwrap();
        fault::arm("monitor", 2);
        // The monitor still adds a worker while the first one is blocked
        // and work waits.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = rt
            .spawn(async move {
                release_rx.recv().unwrap();
            })
            .start();
        let queued = rt.spawn(async { 5 }).start();
        let start = std::time::Instant::now();
        while rt.handle().metrics().num_workers() < 2 {
            assert!(start.elapsed() < Duration::from_secs(30), "never grew");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rt.block_on(queued).unwrap(), 5);
        assert_eq!(rt.block_on(rt.spawn(async { 4 })).unwrap(), 4);
        release_tx.send(()).unwrap();
        rt.block_on(blocker).unwrap();
    });
}
