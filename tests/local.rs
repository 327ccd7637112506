//! `spawn_local`: `!Send` tasks pinned to the worker that spawned them. The
//! contract checked here: such a task is polled and dropped on its home
//! thread only, whoever wakes, aborts or shuts it down.

mod common;

use std::cell::Cell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};

use common::watchdog;
use multipool::Runtime;

/// A `!Send` value that records the thread it is dropped on.
struct DropsOn {
    record: Arc<Mutex<Vec<ThreadId>>>,
    _not_send: PhantomData<Rc<()>>,
}

impl DropsOn {
    fn new(record: &Arc<Mutex<Vec<ThreadId>>>) -> Self {
        DropsOn {
            record: record.clone(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for DropsOn {
    fn drop(&mut self) {
        self.record.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn a_local_task_runs_on_one_thread_whoever_wakes_it() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let (wake_tx, wake_rx) = mpsc::channel::<futures::channel::oneshot::Sender<()>>();
        // Another OS thread wakes the local task again and again.
        let waker_thread = thread::spawn(move || {
            for tx in wake_rx {
                let _ = tx.send(());
            }
        });
        let (home, threads) = rt
            .block_on(multipool::spawn(async move {
                let home = thread::current().id();
                let local = multipool::spawn_local(async move {
                    let seen = Rc::new(Cell::new(0)); // !Send across awaits
                    let mut threads = Vec::new();
                    for i in 0..300 {
                        threads.push(thread::current().id());
                        if i % 3 == 0 {
                            let (tx, rx) = futures::channel::oneshot::channel();
                            wake_tx.send(tx).unwrap();
                            rx.await.unwrap();
                        } else if i % 3 == 1 {
                            multipool::time::sleep(std::time::Duration::from_micros(5)).await;
                        } else {
                            multipool::task::yield_now().await;
                        }
                        seen.set(seen.get() + 1);
                    }
                    threads
                });
                (home, local.await.unwrap())
            }))
            .unwrap();
        assert!(threads.iter().all(|&t| t == home));
        waker_thread.join().unwrap();
    });
}

#[test]
fn an_aborted_local_task_is_dropped_on_its_home_thread() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let drops = Arc::new(Mutex::new(Vec::new()));
        let d = drops.clone();
        let (handle_tx, handle_rx) = mpsc::channel();
        let home = rt
            .block_on(multipool::spawn(async move {
                let guard = DropsOn::new(&d);
                let local = multipool::spawn_local(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
                handle_tx.send(local).unwrap();
                thread::current().id()
            }))
            .unwrap();
        let local = handle_rx.recv().unwrap();
        // Aborted from this (foreign) thread.
        local.abort();
        assert!(multipool::block_on(local).unwrap_err().is_cancelled());
        assert_eq!(*drops.lock().unwrap(), vec![home]);
    });
}

#[test]
fn shutdown_drops_waiting_and_queued_local_tasks_on_their_home_thread() {
    for _ in 0..20 {
        watchdog(60, || {
            let rt = Runtime::builder().workers(2).build().unwrap();
            let drops = Arc::new(Mutex::new(Vec::new()));
            let d = drops.clone();
            let (ready_tx, ready_rx) = mpsc::channel();
            // Keep a foreign thread waking local tasks while the runtime
            // shuts down: a wake-up may be on its way as the worker ends.
            let (wakers_tx, wakers_rx) = mpsc::channel::<std::task::Waker>();
            let hammer = thread::spawn(move || {
                let wakers: Vec<_> = wakers_rx.iter().collect();
                for _ in 0..1000 {
                    for waker in &wakers {
                        waker.wake_by_ref();
                    }
                }
            });
            rt.spawn(async move {
                let home = thread::current().id();
                let mut handles = Vec::new();
                for i in 0..50 {
                    let guard = DropsOn::new(&d);
                    let wakers_tx = wakers_tx.clone();
                    handles.push(multipool::spawn_local(async move {
                        let _guard = guard;
                        if i % 2 == 0 {
                            // Waits forever, woken (spuriously) from afar.
                            std::future::poll_fn(|cx| {
                                let _ = wakers_tx.send(cx.waker().clone());
                                std::task::Poll::<()>::Pending
                            })
                            .await;
                        }
                        // Odd ones are still queued when the runtime stops.
                        std::future::pending::<()>().await;
                    }));
                }
                drop(wakers_tx);
                ready_tx.send((home, handles)).unwrap();
            })
            .detach();
            let (home, handles) = ready_rx.recv().unwrap();
            drop(rt);
            hammer.join().unwrap();
            for handle in handles {
                assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
            }
            let drops = drops.lock().unwrap();
            assert_eq!(drops.len(), 50);
            assert!(
                drops.iter().all(|&t| t == home),
                "a local task was dropped off its thread"
            );
        });
    }
}

#[test]
fn a_local_task_may_spawn_local_tasks_and_share_state() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let total = rt
        .block_on(multipool::spawn(async {
            // The `Rc` lives only inside local tasks; the outer task holds
            // just a (Send) handle.
            multipool::spawn_local(async {
                let shared = Rc::new(Cell::new(0u64));
                let inner: Vec<_> = (1..=10u64)
                    .map(|i| {
                        let s = shared.clone();
                        multipool::spawn_local(async move { s.set(s.get() + i) })
                    })
                    .collect();
                for task in inner {
                    task.await.unwrap();
                }
                shared.get()
            })
            .await
            .unwrap()
        }))
        .unwrap();
    assert_eq!(total, 55);
}

#[test]
#[should_panic(expected = "`multipool::spawn_local` called outside a multipool worker")]
fn spawn_local_off_a_worker_panics_with_a_clear_message() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    // `block_on` runs on this thread, not on a worker.
    rt.block_on(async {
        multipool::spawn_local(async {}).detach();
    });
}
