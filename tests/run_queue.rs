//! User-written run-queues plugged into a pool.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::{hold_worker, watchdog};
use multipool::{Priority, QueuedTask, RunQueue, Runtime};

/// Serves tasks in the order of their names (unnamed last), and counts.
#[derive(Default)]
struct ByName {
    tasks: Mutex<BTreeMap<(String, usize), QueuedTask>>,
    next: AtomicUsize,
    pushed: Arc<AtomicUsize>,
    popped: Arc<AtomicUsize>,
}

impl RunQueue for ByName {
    fn push(&self, task: QueuedTask) {
        self.pushed.fetch_add(1, Ordering::SeqCst);
        let name = task.name().unwrap_or("~").to_owned();
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.tasks.lock().unwrap().insert((name, seq), task);
    }

    fn pop(&self) -> Option<QueuedTask> {
        let task = self.tasks.lock().unwrap().pop_first().map(|(_, task)| task);
        if task.is_some() {
            self.popped.fetch_add(1, Ordering::SeqCst);
        }
        task
    }

    fn len(&self) -> usize {
        self.tasks.lock().unwrap().len()
    }
}

#[test]
fn a_custom_queue_is_used_and_decides_the_order() {
    watchdog(60, || {
        let queue = ByName::default();
        let (pushed, popped) = (queue.pushed.clone(), queue.popped.clone());
        let rt = Runtime::builder()
            .workers(1)
            .queue(Priority::Low, queue)
            .build()
            .unwrap();
        // Hold the only worker so that every task is queued first.
        let held = hold_worker(&rt);
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = ["delta", "alpha", "charlie", "bravo"]
            .into_iter()
            .map(|name| {
                let order = order.clone();
                rt.spawn(async move {
                    // Woken once: goes back through the custom queue.
                    multipool::task::yield_now().await;
                    order.lock().unwrap().push(name);
                })
                .name(name)
                .priority(Priority::Low)
                .start()
            })
            .collect();
        held.release();
        for handle in handles {
            multipool::block_on(handle).unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["alpha", "bravo", "charlie", "delta"]
        );
        // Four spawns and four wake-ups went through the queue.
        assert_eq!(pushed.load(Ordering::SeqCst), 8);
        assert_eq!(popped.load(Ordering::SeqCst), 8);
        // Other levels keep the built-in queues.
        assert_eq!(rt.block_on(rt.spawn(async { 1 })).unwrap(), 1);
        assert_eq!(pushed.load(Ordering::SeqCst), 8);
    });
}

/// Loses every task pushed to it.
struct Forgetful;

impl RunQueue for Forgetful {
    fn push(&self, task: QueuedTask) {
        drop(task);
    }
    fn pop(&self) -> Option<QueuedTask> {
        None
    }
    fn len(&self) -> usize {
        0
    }
}

#[test]
fn a_task_the_queue_drops_is_reported_not_lost() {
    let rt = Runtime::builder()
        .workers(1)
        .queue(Priority::Normal, Forgetful)
        .build()
        .unwrap();
    let err = rt.block_on(rt.spawn(async { 1 })).unwrap_err();
    assert!(err.is_rejected());
    assert!(
        err.to_string().contains("run-queue dropped the task"),
        "{err}"
    );
}

#[test]
fn shutdown_cancels_what_a_custom_queue_holds() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .queue(Priority::Normal, ByName::default())
            .build()
            .unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let hold = rt
            .spawn(async move {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .start();
        started_rx.recv().unwrap();
        let queued: Vec<_> = (0..10).map(|_| rt.spawn(async {}).start()).collect();
        let releaser = std::thread::spawn(move || release_tx.send(()));
        drop(rt);
        let _ = releaser.join();
        let _ = multipool::block_on(hold);
        for task in queued {
            if let Err(err) = multipool::block_on(task) {
                assert!(err.is_shutdown());
            }
        }
    });
}

/// Keeps one task and drops the oldest, inside its own lock.
struct DropOldest(Mutex<std::collections::VecDeque<QueuedTask>>);

impl RunQueue for DropOldest {
    fn push(&self, task: QueuedTask) {
        let mut queue = self.0.lock().unwrap();
        queue.push_back(task);
        if queue.len() > 1 {
            queue.pop_front(); // dropped with the lock held
        }
    }
    fn pop(&self) -> Option<QueuedTask> {
        self.0.lock().unwrap().pop_front()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn a_queue_dropping_tasks_under_its_lock_does_not_deadlock() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .queue(Priority::Low, DropOldest(Mutex::new(Default::default())))
            .build()
            .unwrap();
        /// Spawns a Low task (into the same queue) when dropped.
        struct SpawnOnDrop(multipool::Handle);
        impl Drop for SpawnOnDrop {
            fn drop(&mut self) {
                self.0.spawn(async {}).priority(Priority::Low).detach();
            }
        }
        let held = hold_worker(&rt);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let guard = SpawnOnDrop(rt.handle());
                rt.spawn(async move {
                    let _guard = guard;
                })
                .priority(Priority::Low)
                .start()
            })
            .collect();
        held.release();
        let results: Vec<_> = handles.into_iter().map(multipool::block_on).collect();
        // The queue keeps one task at a time, and each dropped task spawns
        // another that evicts the one kept: at least two are dropped, and
        // every handle reports what happened.
        let dropped = results.iter().filter(|r| r.is_err()).count();
        assert!(dropped >= 2, "{results:?}");
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.to_string().contains("run-queue dropped")));
    });
}
