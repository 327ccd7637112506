//! The blocking pool (`spawn_blocking`): its thread cap and queue bound,
//! panics and aborts of blocking calls, blocking code running inside its
//! runtime, and a call pushed while the last blocking thread leaves.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! (under a watchdog) or block calls on gates the test opens.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{wait_until, watchdog, Gate, WATCHDOG_WAIT};
use multipool::Runtime;

#[test]
fn spawn_blocking_honours_its_cap_and_runs_everything() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(2)
            .build()
            .unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..10usize)
            .map(|i| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                handle.spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    gate.wait();
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        let settled = wait_until(WATCHDOG_WAIT, || {
            running.load(Ordering::SeqCst) == 2 && handle.metrics().blocking_queue_depth() == 8
        });
        assert!(settled, "never two calls running and eight queued");
        assert_eq!(handle.metrics().num_blocking_threads(), 2);
        gate.open();
        let results: Vec<usize> = multipool::block_on(async {
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.unwrap());
            }
            results
        });
        assert_eq!(results, (0..10).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn spawn_blocking_beyond_its_queue_bound_is_refused_and_says_so() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .max_blocking_queued(2)
            .build()
            .unwrap();
        let handle = rt.handle();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let running = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let queued: Vec<_> = (0..2).map(|i| handle.spawn_blocking(move || i)).collect();
        let refused = handle.spawn_blocking(|| 99);
        let err = multipool::block_on(refused).unwrap_err();
        assert!(err.is_rejected(), "{err}");
        assert!(
            err.to_string().contains("blocking pool's queue is full"),
            "{err}"
        );
        gate.open();
        multipool::block_on(running).unwrap();
        for (i, call) in queued.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
    });
}

#[test]
fn a_panic_in_spawn_blocking_is_reported_and_an_unstarted_call_can_be_aborted() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let handle = rt.handle();
        let err =
            multipool::block_on(handle.spawn_blocking(|| panic!("blocking boom"))).unwrap_err();
        assert!(err.is_panic());
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        let first = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let second = handle.spawn_blocking(move || r.store(true, Ordering::SeqCst));
        second.abort();
        gate.open();
        multipool::block_on(first).unwrap();
        assert!(multipool::block_on(second).unwrap_err().is_cancelled());
        assert!(!ran.load(Ordering::SeqCst));
    });
}

/// Blocking code runs inside its runtime, as in tokio: `Handle::current`
/// works there and `multipool::spawn` goes to the same runtime, not the
/// global one.
#[test]
fn blocking_code_runs_inside_its_runtime() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .thread_name("inside")
            .build()
            .unwrap();
        let handle = rt.handle();
        let (pool, worker_name) = multipool::block_on(handle.spawn_blocking(|| {
            let pool = multipool::Handle::current().pool_name().to_owned();
            let task = multipool::spawn(async { std::thread::current().name().map(str::to_owned) });
            (pool, multipool::block_on(task).unwrap())
        }))
        .unwrap();
        assert_eq!(pool, "default");
        assert!(worker_name.unwrap().starts_with("inside"));
    });
}

#[test]
fn a_blocking_call_pushed_as_the_last_blocking_thread_leaves_still_runs() {
    watchdog(60, || {
        let (leaving_tx, leaving_rx) = mpsc::channel::<()>();
        let leaving_tx = Mutex::new(leaving_tx);
        let gate = Gate::default();
        let g = gate.clone();
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(1)
            .blocking_keep_alive(Duration::from_millis(1))
            .wrap_thread(move |body| {
                body();
                let blocking = thread::current()
                    .name()
                    .is_some_and(|name| name.contains("-blocking-"));
                if blocking {
                    // The thread has left its work loop; hold it here until
                    // the test has pushed another call.
                    let _ = leaving_tx.lock().unwrap().send(());
                    g.wait();
                }
            })
            .build()
            .unwrap();
        let handle = rt.handle();
        assert_eq!(multipool::block_on(handle.spawn_blocking(|| 1)).unwrap(), 1);
        leaving_rx.recv().unwrap();
        // The only blocking thread is on its way out: this call must get a
        // thread of its own rather than wait for that one.
        assert_eq!(multipool::block_on(handle.spawn_blocking(|| 7)).unwrap(), 7);
        gate.open();
    });
}
