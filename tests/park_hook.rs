//! `Builder::park_with`: idle workers driving an outside "reactor".
//!
//! The reactor here is a toy: a list of wakers that an outside thread marks
//! ready, and that the park hook wakes on the worker's own thread, as an
//! I/O driver would. Everything that could hang runs under a watchdog.

mod common;

use common::watchdog;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use multipool::{Park, Runtime};

/// A toy reactor: "sources" are wakers waiting for an event; `fire` marks
/// them ready from any thread, and `drive` (run in a park hook) wakes them
/// on the calling thread.
#[derive(Default)]
struct Reactor {
    state: Mutex<ReactorState>,
    changed: Condvar,
    /// Worker index of every thread that dispatched a wake-up.
    dispatched_on: Mutex<Vec<Option<usize>>>,
    /// Workers inside `drive` (parked in their hook) right now.
    driving: AtomicUsize,
}

#[derive(Default)]
struct ReactorState {
    waiting: Vec<Waker>,
    ready: bool,
}

/// The waker of one hook call's `unparked()` future. Its flag is per call:
/// the reactor is shared by every worker, and one worker starting a new
/// wait must not clear a wake-up meant for another.
struct HookWake {
    reactor: Arc<Reactor>,
    woken: AtomicBool,
}

impl Wake for HookWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        // Under the lock: `drive` checks the flag under it before waiting.
        let _state = self.reactor.state.lock().unwrap();
        self.reactor.changed.notify_all();
    }
}

impl Reactor {
    /// Runs the reactor until the worker is unparked or the deadline passes.
    fn drive(self: &Arc<Self>, park: &Park<'_>) {
        self.driving.fetch_add(1, Ordering::SeqCst);
        self.drive_until_unparked(park);
        self.driving.fetch_sub(1, Ordering::SeqCst);
    }

    fn drive_until_unparked(self: &Arc<Self>, park: &Park<'_>) {
        let hook = Arc::new(HookWake {
            reactor: self.clone(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(hook.clone());
        let mut cx = Context::from_waker(&waker);
        let mut unparked = pin!(park.unparked());
        loop {
            hook.woken.store(false, Ordering::SeqCst);
            if unparked.as_mut().poll(&mut cx).is_ready() {
                return;
            }
            let mut state = self.state.lock().unwrap();
            if state.ready {
                state.ready = false;
                let wakers = std::mem::take(&mut state.waiting);
                drop(state);
                self.dispatched_on
                    .lock()
                    .unwrap()
                    .push(multipool::worker_index());
                // On this thread: the woken tasks land on this worker.
                wakers.into_iter().for_each(Waker::wake);
                continue;
            }
            if hook.woken.load(Ordering::SeqCst) {
                continue;
            }
            match park.deadline() {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return;
                    }
                    drop(self.changed.wait_timeout(state, deadline - now).unwrap());
                }
                None => drop(self.changed.wait(state).unwrap()),
            }
        }
    }

    fn fire(&self) {
        self.state.lock().unwrap().ready = true;
        self.changed.notify_all();
    }

    /// Waits until `fire`.
    fn readable(self: &Arc<Self>) -> impl Future<Output = ()> {
        let reactor = self.clone();
        let mut registered = false;
        std::future::poll_fn(move |cx| {
            if registered {
                // Woken only by the reactor in these tests.
                return Poll::Ready(());
            }
            registered = true;
            reactor
                .state
                .lock()
                .unwrap()
                .waiting
                .push(cx.waker().clone());
            Poll::Pending
        })
    }
}

fn runtime(workers: usize, reactor: &Arc<Reactor>, hooks: &Arc<AtomicUsize>) -> Runtime {
    let reactor = reactor.clone();
    let hooks = hooks.clone();
    Runtime::builder()
        .workers(workers)
        .park_with(move |park| {
            hooks.fetch_add(1, Ordering::Relaxed);
            reactor.drive(park);
        })
        .build()
        .unwrap()
}

#[test]
fn remote_spawns_reach_workers_in_their_hook() {
    watchdog(60, || {
        let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
        let rt = runtime(2, &reactor, &hooks);
        for round in 0..200u64 {
            // Both workers parked in their hook: the spawns below must wake
            // them there (an idle worker spins a little before it parks, and
            // could otherwise catch every spawn while still searching).
            while reactor.driving.load(Ordering::SeqCst) < 2 {
                thread::yield_now();
            }
            let tasks: Vec<_> = (0..8u64)
                .map(|i| rt.spawn(async move { round * i }).start())
                .collect();
            let sum: u64 = tasks.into_iter().map(|t| rt.block_on(t).unwrap()).sum();
            assert_eq!(sum, round * 28);
        }
        assert!(hooks.load(Ordering::Relaxed) > 0);
    });
}

#[test]
fn a_wake_up_dispatched_in_the_hook_runs_the_task() {
    watchdog(60, || {
        let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
        // One worker: if the wake-up inside the hook did not end the hook,
        // nothing else would, and the test would hang.
        let rt = runtime(1, &reactor, &hooks);
        for _ in 0..100 {
            let readable = reactor.readable();
            let task = rt
                .spawn(async move {
                    readable.await;
                    multipool::worker_index()
                })
                .start();
            // Fire once the task waits in the reactor.
            while reactor.state.lock().unwrap().waiting.is_empty() {
                thread::yield_now();
            }
            reactor.fire();
            assert_eq!(rt.block_on(task).unwrap(), Some(0));
        }
        let dispatched = reactor.dispatched_on.lock().unwrap();
        assert!(dispatched.iter().all(|&on| on == Some(0)));
        assert!(!dispatched.is_empty());
    });
}

#[test]
fn many_wake_ups_in_one_hook_turn_are_shared_with_siblings() {
    watchdog(60, || {
        let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
        let rt = runtime(2, &reactor, &hooks);
        for _ in 0..20 {
            let started = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let readable = reactor.readable();
                    let started = started.clone();
                    rt.spawn(async move {
                        readable.await;
                        started.fetch_add(1, Ordering::SeqCst);
                        // Blocks its worker until both tasks run: the worker
                        // whose hook woke both must let its sibling take one.
                        let give_up = Instant::now() + Duration::from_secs(30);
                        while started.load(Ordering::SeqCst) < 2 && Instant::now() < give_up {
                            std::hint::spin_loop();
                        }
                        started.load(Ordering::SeqCst) == 2
                    })
                    .start()
                })
                .collect();
            while reactor.state.lock().unwrap().waiting.len() < 2 {
                thread::yield_now();
            }
            reactor.fire();
            for task in tasks {
                assert!(rt.block_on(task).unwrap());
            }
        }
    });
}

#[test]
fn timers_fire_while_workers_wait_in_their_hook() {
    watchdog(60, || {
        let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
        let rt = runtime(2, &reactor, &hooks);
        let elapsed = rt.block_on(rt.spawn(async {
            let start = Instant::now();
            multipool::time::sleep(Duration::from_millis(20)).await;
            start.elapsed()
        }));
        assert!(elapsed.unwrap() >= Duration::from_millis(20));
        // A timer armed from outside, earlier than the hook's deadline.
        let late = rt.spawn(multipool::time::sleep(Duration::from_secs(3600)));
        let late = late.start();
        let early = rt.block_on(async {
            let start = Instant::now();
            rt.spawn(multipool::time::sleep(Duration::from_millis(5)))
                .await
                .unwrap();
            start.elapsed()
        });
        assert!(early >= Duration::from_millis(5));
        late.abort();
    });
}

#[test]
fn a_panicking_hook_is_dropped_and_the_worker_parks_as_usual() {
    watchdog(60, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let rt = Runtime::builder()
            .workers(2)
            .park_with(move |_park| {
                counter.fetch_add(1, Ordering::SeqCst);
                panic!("hook failure");
            })
            .build()
            .unwrap();
        for i in 0..50u32 {
            let task = rt.spawn(async move {
                multipool::time::sleep(Duration::from_millis(1)).await;
                i
            });
            assert_eq!(rt.block_on(task).unwrap(), i);
        }
        // At most once per worker.
        assert!(calls.load(Ordering::SeqCst) <= 2);
    });
}

#[test]
fn shutdown_unparks_workers_in_their_hook() {
    watchdog(60, || {
        for _ in 0..20 {
            let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
            let rt = runtime(3, &reactor, &hooks);
            let never = rt.spawn(reactor.readable()).start();
            while hooks.load(Ordering::Relaxed) == 0 {
                thread::yield_now();
            }
            drop(rt);
            assert!(never.is_finished());
        }
    });
}

#[test]
fn busy_workers_dispatch_wake_ups_in_the_busy_tick_hook() {
    watchdog(60, || {
        let reactor = Arc::new(Reactor::default());
        let ticks = Arc::new(AtomicUsize::new(0));
        let (dispatch, counter) = (reactor.clone(), ticks.clone());
        // No park hook: only the busy tick dispatches events.
        let rt = Runtime::builder()
            .workers(1)
            .on_busy_tick(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                let mut state = dispatch.state.lock().unwrap();
                if std::mem::take(&mut state.ready) {
                    let wakers = std::mem::take(&mut state.waiting);
                    drop(state);
                    wakers.into_iter().for_each(Waker::wake);
                }
            })
            .build()
            .unwrap();
        let readable = reactor.readable();
        let woken = Arc::new(AtomicUsize::new(0));
        let flag = woken.clone();
        let waiter = rt
            .spawn(async move {
                readable.await;
                flag.store(1, Ordering::SeqCst);
            })
            .start();
        // Keeps the only worker busy (it never parks) until the waiter ran.
        let spinner = rt
            .spawn(async move {
                while woken.load(Ordering::SeqCst) == 0 {
                    multipool::task::yield_now().await;
                }
            })
            .start();
        while reactor.state.lock().unwrap().waiting.is_empty() {
            thread::yield_now();
        }
        reactor.fire();
        rt.block_on(waiter).unwrap();
        rt.block_on(spinner).unwrap();
        assert!(ticks.load(Ordering::Relaxed) > 0);
    });
}

#[test]
fn a_panicking_busy_tick_hook_is_dropped() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .on_busy_tick(|| panic!("tick failure"))
            .build()
            .unwrap();
        let sum = rt.block_on(rt.spawn(async {
            let mut sum = 0u64;
            for i in 0..1000 {
                sum += i;
                multipool::task::yield_now().await;
            }
            sum
        }));
        assert_eq!(sum.unwrap(), 499_500);
    });
}

#[cfg(feature = "test-util")]
#[test]
fn paused_time_parks_without_the_hook_and_still_advances() {
    watchdog(60, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let rt = Runtime::builder()
            .workers(2)
            .start_paused(true)
            .park_with(move |park| {
                counter.fetch_add(1, Ordering::SeqCst);
                park.park();
            })
            .build()
            .unwrap();
        // Paused time only moves once every worker is parked (and a
        // `block_on` waits), which the hook would hide from the runtime:
        // it is not called.
        rt.block_on(rt.spawn(async move {
            multipool::time::sleep(Duration::from_secs(3600)).await;
        }))
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn pinned_tasks_reach_their_worker_in_its_hook() {
    watchdog(60, || {
        let (reactor, hooks) = (Arc::new(Reactor::default()), Arc::default());
        let rt = runtime(3, &reactor, &hooks);
        for round in 0..100usize {
            let target = round % 3;
            let ran_on = rt.block_on(rt.spawn(async { multipool::worker_index() }).worker(target));
            assert_eq!(ran_on.unwrap(), Some(target));
        }
    });
}

/// Sets its flag when dropped.
struct DropProbe(Arc<AtomicBool>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_drops_the_hooks_even_when_their_reactor_keeps_a_task_waker() {
    watchdog(60, || {
        // The cycle: the hook owns the reactor, the reactor the waker of a
        // task that shutdown cancels, the task its pool, the pool the
        // runtime's hooks. Shutdown must cut it by dropping the hooks.
        let reactor = Arc::new(Reactor::default());
        let (hooks, dropped) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let probe = DropProbe(dropped.clone());
        let (in_hook, counter) = (reactor.clone(), hooks.clone());
        let rt = Runtime::builder()
            .workers(1)
            .park_with(move |park| {
                let _owned = &probe;
                counter.fetch_add(1, Ordering::Relaxed);
                in_hook.drive(park);
            })
            .build()
            .unwrap();
        let never = rt.spawn(reactor.readable()).start();
        while reactor.state.lock().unwrap().waiting.is_empty() || hooks.load(Ordering::Relaxed) == 0
        {
            thread::yield_now();
        }
        // From here only the hook holds the reactor (and the waker in it).
        drop(reactor);
        drop(rt);
        assert!(never.is_finished());
        assert!(
            dropped.load(Ordering::SeqCst),
            "the park hook outlived its runtime's shutdown"
        );
    });
}
