//! `spawn_local`: `!Send` tasks pinned to the worker that spawned them. The
//! contract checked here: such a task is polled and dropped on its home
//! thread only, whoever wakes, aborts or shuts it down.

mod common;

use std::cell::{Cell, RefCell};
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
#[cfg_attr(miri, ignore = "20 rounds of 25 000 wake-ups: too slow under miri")]
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

/// What the local tasks of one worker share through an `Rc`.
struct Shared {
    /// Which of them were dropped, in order (pushed by each one's `Drop`).
    dropped: RefCell<Vec<usize>>,
    /// Records the thread the `Rc`'s value is freed on, once its strong
    /// count reaches zero.
    _freed: DropsOn,
}

/// One local task's future state: its share of the `Rc`, and a record of
/// the thread it is dropped on.
struct Member {
    index: usize,
    shared: Rc<Shared>,
    drops: Arc<Mutex<Vec<(usize, ThreadId)>>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Drops of one worker's local tasks run one after the other on its
        // thread: the `RefCell` is never borrowed twice.
        self.shared.dropped.borrow_mut().push(self.index);
        self.drops
            .lock()
            .unwrap()
            .push((self.index, thread::current().id()));
    }
}

#[test]
fn local_tasks_sharing_an_rc_are_cancelled_at_shutdown_on_their_home_thread() {
    const WORKERS: usize = 2;
    const PER_WORKER: usize = 8;
    let rounds = if cfg!(miri) { 1 } else { 20 };
    for _ in 0..rounds {
        watchdog(60, || {
            let rt = Runtime::builder().workers(WORKERS).build().unwrap();
            let drops = Arc::new(Mutex::new(Vec::new()));
            let freed = Arc::new(Mutex::new(Vec::new()));
            let (ready_tx, ready_rx) = mpsc::channel();
            for worker in 0..WORKERS {
                let (drops, freed, ready_tx) = (drops.clone(), freed.clone(), ready_tx.clone());
                rt.spawn(async move {
                    let home = thread::current().id();
                    let shared = Rc::new(Shared {
                        dropped: RefCell::new(Vec::new()),
                        _freed: DropsOn::new(&freed),
                    });
                    let handles: Vec<_> = (0..PER_WORKER)
                        .map(|i| {
                            let member = Member {
                                index: worker * PER_WORKER + i,
                                shared: shared.clone(),
                                drops: drops.clone(),
                            };
                            multipool::spawn_local(async move {
                                let _member = member;
                                // Pending for good: only shutdown ends it.
                                std::future::pending::<()>().await;
                            })
                        })
                        .collect();
                    // Only the local tasks hold the `Rc` from here on.
                    drop(shared);
                    ready_tx.send((worker, home, handles)).unwrap();
                })
                .worker(worker)
                .detach();
            }
            drop(ready_tx);
            let mut spawned: Vec<_> = ready_rx.iter().collect();
            spawned.sort_by_key(|&(worker, _, _)| worker);
            assert_eq!(spawned.len(), WORKERS);
            drop(rt);
            // Shutdown is synchronous: every handle has resolved already.
            for (_, _, handles) in &spawned {
                assert!(handles.iter().all(|handle| handle.is_finished()));
            }
            let homes: Vec<ThreadId> = spawned.iter().map(|&(_, home, _)| home).collect();
            for (_, _, handles) in spawned {
                for handle in handles {
                    assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
                }
            }
            // Each future dropped exactly once, on its home worker's thread.
            let mut drops = drops.lock().unwrap().clone();
            drops.sort_by_key(|&(index, _)| index);
            let indices: Vec<usize> = drops.iter().map(|&(index, _)| index).collect();
            assert_eq!(indices, (0..WORKERS * PER_WORKER).collect::<Vec<_>>());
            for (index, thread) in drops {
                assert_eq!(
                    thread,
                    homes[index / PER_WORKER],
                    "task {index} dropped off its home"
                );
            }
            // Each worker's `Rc` reached a strong count of zero, on its home.
            let mut freed = freed.lock().unwrap().clone();
            let mut expected = homes.clone();
            freed.sort_by_key(|id| format!("{id:?}"));
            expected.sort_by_key(|id| format!("{id:?}"));
            assert_eq!(
                freed, expected,
                "each shared `Rc` is freed once, on its home"
            );
        });
    }
}

#[test]
// Plumbing over `spawn_local`, whose unsafe path the tests above cover
// under miri; two runtimes there cost CI time for nothing new.
#[cfg_attr(miri, ignore)]
fn local_spawn_through_futures_runs_on_the_calling_worker_or_is_refused() {
    use futures::task::LocalSpawnExt;
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let other = Runtime::builder().workers(1).build().unwrap();
        let other_handle = other.handle().clone();
        let (spawner, ran_on, refused) = rt
            .block_on(rt.spawn(async move {
                let (tx, rx) = futures::channel::oneshot::channel();
                multipool::Handle::current()
                    .spawn_local(async move {
                        let not_send = Rc::new(thread::current().id());
                        multipool::task::yield_now().await;
                        tx.send(*not_send).unwrap();
                    })
                    .unwrap();
                // A worker of another runtime's pool cannot run it.
                let refused = other_handle.spawn_local(async {}).is_err();
                (thread::current().id(), rx.await.unwrap(), refused)
            }))
            .unwrap();
        assert_eq!(ran_on, spawner, "the local task left its worker");
        assert!(refused, "a handle of another pool accepted a local task");
        // Off any worker, and after shutdown: refused, not a panic.
        assert!(rt.handle().spawn_local(async {}).is_err());
        let handle = rt.handle().clone();
        drop(rt);
        assert!(handle.spawn_local(async {}).is_err());
    });
}
