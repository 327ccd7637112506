//! Regression tests from the reliability audit: each pins down one way the
//! runtime used to strand a task, hang, or take the process down. Each
//! could hang, so each runs under the watchdog; each that used to abort the
//! process runs in a child process (see [`in_child`]).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{hold_worker, wait_until, watchdog, DropCounter};
use multipool::{JoinHandle, Priority, QueuedTask, RunQueue, Runtime};

/// Runs the test `name` of this binary in a child process (with `CHILD`
/// set, the test runs its body instead of spawning) and asserts that the
/// child exited successfully: a bug that aborts the process fails the test
/// instead of the whole binary.
fn in_child(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "MULTIPOOL_REGRESSION_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child process failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The child really ran the test (the filter matched it).
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
}

/// Accepts either way a pool task can end when its runtime shuts down
/// while it awaits another task: cancelled itself, or woken with the other
/// task's shutdown error and returning it.
fn assert_shut_down<T: std::fmt::Debug>(
    result: Result<Result<T, multipool::JoinError>, multipool::JoinError>,
) {
    match result {
        Err(error) => assert!(error.is_shutdown(), "{error}"),
        Ok(inner) => assert!(inner.unwrap_err().is_shutdown()),
    }
}

#[test]
fn a_task_awaiting_a_local_task_resolves_at_shutdown() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let (awaiting_tx, awaiting_rx) = mpsc::channel();
        let guard = DropCounter(drops.clone());
        let outer = rt
            .spawn(async move {
                let _guard = guard;
                let local = multipool::spawn_local(std::future::pending::<()>());
                awaiting_tx.send(()).unwrap();
                local.await
            })
            .start();
        awaiting_rx.recv().unwrap();
        drop(rt);
        assert_shut_down(multipool::block_on(outer));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// A waker a pool task leaves behind, for a hook or a destructor to wake.
type WakerSlot = Arc<Mutex<Option<Waker>>>;

/// A pool task that parks its waker in `slot` and waits to be woken.
fn waiting_task(rt: &Runtime, slot: &WakerSlot, drops: &Arc<AtomicUsize>) -> JoinHandle<()> {
    let (slot, guard) = (slot.clone(), DropCounter(drops.clone()));
    rt.spawn(async move {
        let _guard = guard;
        std::future::poll_fn(move |cx| {
            *slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
        .await
    })
    .start()
}

#[test]
fn a_wake_from_an_on_thread_stop_hook_is_not_stranded() {
    watchdog(60, || {
        let slot = WakerSlot::default();
        let hook_slot = slot.clone();
        let rt = Runtime::builder()
            .workers(1)
            .on_thread_stop(move || {
                if let Some(waker) = hook_slot.lock().unwrap().take() {
                    waker.wake();
                }
            })
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let task = waiting_task(&rt, &slot, &drops);
        assert!(wait_until(Duration::from_secs(30), || slot
            .lock()
            .unwrap()
            .is_some()));
        drop(rt);
        assert!(multipool::block_on(task).unwrap_err().is_shutdown());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// Wakes a waker when dropped.
struct WakeOnDrop(WakerSlot);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(waker) = self.0.lock().unwrap().take() {
            waker.wake();
        }
    }
}

#[test]
fn a_local_future_waking_a_pool_task_as_it_drops_strands_nothing() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let slot = WakerSlot::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let waiting = waiting_task(&rt, &slot, &drops);
        assert!(wait_until(Duration::from_secs(30), || slot
            .lock()
            .unwrap()
            .is_some()));
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let local_slot = slot.clone();
        rt.spawn(async move {
            let waker = WakeOnDrop(local_slot);
            multipool::spawn_local(async move {
                let _waker = waker;
                std::future::pending::<()>().await
            })
            .detach();
            spawned_tx.send(()).unwrap();
        })
        .detach();
        spawned_rx.recv().unwrap();
        drop(rt);
        assert!(multipool::block_on(waiting).unwrap_err().is_shutdown());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn an_elastic_pool_with_an_endless_idle_timeout_keeps_serving() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(2)
            .idle_timeout(Duration::MAX)
            .build()
            .unwrap();
        for round in 0..3 {
            // Every worker parked in between: each spawn meets a sleeper.
            assert!(wait_until(Duration::from_secs(30), || rt
                .handle()
                .metrics()
                .num_parked_workers()
                == rt.handle().metrics().num_workers()));
            assert_eq!(rt.block_on(rt.spawn(async move { round })).unwrap(), round);
        }
        assert_eq!(rt.handle().metrics().workers_retired(), 0);
    });
}

/// Panics when dropped (unless the thread is already panicking).
struct PanicOnDrop(Option<mpsc::Sender<()>>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if let Some(dropping) = self.0.take() {
            let _ = dropping.send(());
        }
        if !thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

#[test]
fn a_detached_task_whose_output_panics_on_drop_does_not_abort() {
    in_child(
        "a_detached_task_whose_output_panics_on_drop_does_not_abort",
        || {
            watchdog(60, || {
                let rt = Runtime::builder().workers(1).build().unwrap();
                let (dropped_tx, dropped_rx) = mpsc::channel();
                rt.spawn(async move { PanicOnDrop(Some(dropped_tx)) })
                    .detach();
                dropped_rx.recv().unwrap();
                // The worker survived and serves on.
                assert_eq!(rt.block_on(rt.spawn(async { 5 })).unwrap(), 5);
            })
        },
    );
}

#[test]
fn a_detached_task_whose_panic_payload_panics_on_drop_does_not_abort() {
    in_child(
        "a_detached_task_whose_panic_payload_panics_on_drop_does_not_abort",
        || {
            watchdog(60, || {
                let rt = Runtime::builder().workers(1).build().unwrap();
                let (dropped_tx, dropped_rx) = mpsc::channel();
                rt.spawn(async move {
                    std::panic::panic_any(PanicOnDrop(Some(dropped_tx)));
                })
                .detach();
                dropped_rx.recv().unwrap();
                assert_eq!(rt.block_on(rt.spawn(async { 6 })).unwrap(), 6);
                // A handle that gets such a payload can drop it too.
                let handle = rt.spawn(async { std::panic::panic_any(PanicOnDrop(None)) });
                let error = rt.block_on(handle).unwrap_err();
                assert!(error.is_panic());
                let payload = error.into_panic();
                let dropped =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
                assert!(dropped.is_err(), "the payload's own destructor panics");
            })
        },
    );
}

/// A waker that panics when woken or dropped.
struct PanickingWaker(mpsc::Sender<()>);

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(());
        panic!("PanickingWaker woken");
    }
}

#[test]
fn a_panicking_waker_awaiting_a_join_handle_does_not_abort() {
    in_child(
        "a_panicking_waker_awaiting_a_join_handle_does_not_abort",
        || {
            watchdog(60, || {
                let rt = Runtime::builder().workers(1).build().unwrap();
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let mut handle = rt
                    .spawn(async move {
                        release_rx.recv().unwrap();
                        7
                    })
                    .start();
                let (woken_tx, woken_rx) = mpsc::channel();
                let waker = Waker::from(Arc::new(PanickingWaker(woken_tx)));
                let mut cx = Context::from_waker(&waker);
                assert!(Pin::new(&mut handle).poll(&mut cx).is_pending());
                drop(waker);
                release_tx.send(()).unwrap();
                woken_rx.recv().unwrap();
                // The worker survived the waker's panic; the output waits.
                assert_eq!(multipool::block_on(handle).unwrap(), 7);
                assert_eq!(rt.block_on(rt.spawn(async { 8 })).unwrap(), 8);
            })
        },
    );
}

#[test]
fn a_wrap_thread_hook_that_never_runs_its_worker_fails_the_build() {
    watchdog(60, || {
        let skipped = Runtime::builder()
            .workers(1)
            .wrap_thread(|_body| {})
            .build();
        let error = skipped.expect_err("no worker ever ran");
        assert!(error.to_string().contains("wrap_thread"), "{error}");
        let panicked = Runtime::builder()
            .workers(2)
            .wrap_thread(|_body| panic!("wrap_thread hook fails"))
            .build();
        assert!(panicked.is_err());
        // A wrapper that runs its body still works.
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let rt = Runtime::builder()
            .workers(2)
            .wrap_thread(move |body| {
                counted.fetch_add(1, Ordering::SeqCst);
                body()
            })
            .build()
            .unwrap();
        assert_eq!(rt.block_on(rt.spawn(async { 9 })).unwrap(), 9);
        assert!(runs.load(Ordering::SeqCst) >= 2);
    });
}

/// A run-queue that drops tasks named "stale" while it holds its lock.
#[derive(Default)]
struct DropsStale(Mutex<std::collections::VecDeque<QueuedTask>>);

impl RunQueue for DropsStale {
    fn push(&self, task: QueuedTask) {
        self.0.lock().unwrap().push_back(task);
    }

    fn pop(&self) -> Option<QueuedTask> {
        let mut tasks = self.0.lock().unwrap();
        loop {
            let task = tasks.pop_front()?;
            if task.name() != Some("stale") {
                return Some(task);
            }
            drop(task); // under our lock
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn a_run_queue_dropping_tasks_under_its_lock_at_shutdown_does_not_deadlock() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .queue(Priority::Normal, DropsStale::default())
            .build()
            .unwrap();
        let handle = rt.handle();
        let held = hold_worker(&rt);
        let stale = rt.spawn(async { 1 }).name("stale").start();
        let fresh = rt.spawn(async { 2 }).start();
        let dropper = thread::spawn(move || drop(rt));
        assert!(wait_until(Duration::from_secs(30), || handle.is_shutdown()));
        held.release();
        dropper.join().unwrap();
        let stale = multipool::block_on(stale).unwrap_err();
        assert!(stale.is_rejected() || stale.is_shutdown(), "{stale}");
        assert!(multipool::block_on(fresh).unwrap_err().is_shutdown());
    });
}

/// Enters `handle` when dropped, as a destructor that uses the runtime.
struct EntersOnDrop(multipool::Handle, Arc<AtomicBool>);

impl Drop for EntersOnDrop {
    fn drop(&mut self) {
        let _guard = self.0.enter();
        self.1.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_refused_future_whose_drop_enters_the_runtime_does_not_panic() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let handle = rt.handle();
        rt.shutdown_timeout(Duration::ZERO);
        let _entered = handle.enter();
        let dropped = Arc::new(AtomicBool::new(false));
        let future = {
            let guard = EntersOnDrop(handle.clone(), dropped.clone());
            async move {
                let _guard = guard;
            }
        };
        let refused = multipool::spawn(future).start();
        assert!(dropped.load(Ordering::SeqCst));
        assert!(multipool::block_on(refused).unwrap_err().is_shutdown());
    });
}

#[test]
fn aborting_a_finished_task_never_wakes_another() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            // Registered (it returned `Pending` once), then finished.
            let finished = rt
                .spawn(async { multipool::task::yield_now().await })
                .start();
            while !finished.is_finished() {
                thread::yield_now();
            }
            // Registered tasks on every registry shard: one of them takes
            // the finished task's key.
            let (registered_tx, registered_rx) = mpsc::channel();
            let strangers: Vec<_> = (0..8)
                .map(|_| {
                    let (counted, registered) = (polls.clone(), registered_tx.clone());
                    rt.spawn(async move {
                        multipool::task::yield_now().await;
                        std::future::poll_fn(move |_cx| {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let _ = registered.send(());
                            Poll::<()>::Pending
                        })
                        .await
                    })
                    .start()
                })
                .collect();
            for _ in 0..8 {
                registered_rx.recv().unwrap();
            }
            let before = polls.load(Ordering::SeqCst);
            finished.abort();
            // A wake-up the abort caused is queued before this task.
            rt.block_on(rt.spawn(async {})).unwrap();
            assert_eq!(
                polls.load(Ordering::SeqCst),
                before,
                "a stranger was polled"
            );
            for stranger in strangers {
                stranger.abort();
                assert!(rt.block_on(stranger).unwrap_err().is_cancelled());
            }
        }
    });
}

/// A waker whose destructor reads the runtime's timers (which locks every
/// timer wheel).
struct ReadsTimersOnDrop(multipool::Handle, Arc<AtomicUsize>);

impl Wake for ReadsTimersOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for ReadsTimersOnDrop {
    fn drop(&mut self) {
        let _ = self.0.metrics().num_timers();
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_timer_drops_its_old_waker_outside_the_wheel_lock() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let _entered = rt.handle().enter();
        let mut sleep = Box::pin(multipool::time::sleep(Duration::from_secs(3600)));
        for _ in 0..2 {
            let waker = Waker::from(Arc::new(ReadsTimersOnDrop(rt.handle(), dropped.clone())));
            // Each poll with a new waker replaces (and drops) the previous.
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        // Cancelling the timer drops the last one.
        drop(sleep);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn enter_guards_dropped_out_of_order_panic() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let first = rt.handle().enter();
    let second = rt.handle().enter();
    let out_of_order = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(first)));
    assert!(out_of_order.is_err());
    // The nesting is broken for good now: the inner guard's drop is out
    // of order too.
    let after = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(second)));
    assert!(after.is_err());
    // A new guard starts over.
    let _again = rt.handle().enter();
}

/// A waker's `clone` is its executor's code, and it may enter a multipool
/// runtime. A timer's registration clones the waker without holding the
/// current runtime; it used to clone it inside that borrow, and this
/// waker's `enter` then panicked "already borrowed".
#[test]
fn a_timer_whose_waker_enters_a_runtime_when_cloned_registers() {
    use std::sync::OnceLock;
    use std::task::{RawWaker, RawWakerVTable};

    static HANDLE: OnceLock<multipool::Handle> = OnceLock::new();
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    fn clone(_: *const ()) -> RawWaker {
        let _entered = HANDLE.get().expect("set before any poll").enter();
        CLONES.fetch_add(1, Ordering::SeqCst);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}

    watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        assert!(HANDLE.set(rt.handle()).is_ok());
        let _entered = rt.handle().enter();
        // SAFETY: the vtable's functions ignore the data pointer (null)
        // and only touch statics, so any thread may call them any time.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
        let mut sleep = multipool::time::sleep(Duration::from_secs(3600));
        let polled = Pin::new(&mut sleep).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending(), "registered, an hour to go");
        assert_eq!(
            CLONES.load(Ordering::SeqCst),
            1,
            "the wheel keeps one clone"
        );
        drop(sleep);
    });
}
