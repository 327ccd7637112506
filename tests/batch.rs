//! `Handle::spawn_batch` counts and queues its tasks a group at a time
//! (`runtime::task::spawn::Batch`): every task is counted before it
//! can end, seen by the spawn hook before its first poll, and queued even
//! when the caller's iterator panics half-way through a group. Bad input:
//! an empty batch, a batch after shutdown, a panicking spawn hook.
//!
//! Nothing here sleeps to "let things happen": tests wait for a condition
//! under a watchdog.

mod common;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{wait_until, watchdog, WATCHDOG_WAIT};
use multipool::Runtime;

/// A group is 64 tasks: these sizes end on a group's edge, just past it,
/// and in the middle of the third.
const SIZES: [usize; 4] = [1, 64, 65, 150];

#[test]
fn a_batch_whose_iterator_panics_runs_and_counts_every_task_it_made() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let metrics = rt.handle().metrics();
        let mut made_in_all = 0;
        for made in SIZES {
            let ran = Arc::new(AtomicUsize::new(0));
            let counter = ran.clone();
            let handle = rt.handle();
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                handle.spawn_batch((0..=made).map(move |i| {
                    if i == made {
                        panic!("the iterator gives up after {made} futures");
                    }
                    let ran = counter.clone();
                    async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }
                }))
            }));
            assert!(unwound.is_err());
            made_in_all += made as u64;
            // Every task made before the panic runs, though no handle is
            // left to await it (they were dropped by the unwind: detached).
            assert!(wait_until(WATCHDOG_WAIT, || ran.load(Ordering::SeqCst) == made));
            assert!(wait_until(WATCHDOG_WAIT, || metrics.num_alive_tasks() == 0));
            assert_eq!(ran.load(Ordering::SeqCst), made, "no task ran twice");
            assert_eq!(metrics.spawned_tasks_count(), made_in_all);
            assert_eq!(metrics.completed_count(), made_in_all);
        }
    });
}

#[test]
fn the_spawn_hook_sees_every_task_of_a_batch_before_its_first_poll() {
    watchdog(60, || {
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let hook_seen = seen.clone();
        let rt = Runtime::builder()
            .workers(2)
            .on_task_spawn(move |info| {
                hook_seen.lock().unwrap().insert(info.id());
            })
            .build()
            .unwrap();
        for size in SIZES {
            seen.lock().unwrap().clear();
            let handles = rt.handle().spawn_batch((0..size).map(|_| {
                let seen = seen.clone();
                async move { seen.lock().unwrap().contains(&multipool::task::id()) }
            }));
            let seen_first = multipool::block_on(async {
                let mut all = true;
                for handle in handles {
                    all &= handle.await.unwrap();
                }
                all
            });
            assert!(
                seen_first,
                "a task of a {size}-task batch ran before its hook"
            );
            assert_eq!(seen.lock().unwrap().len(), size);
        }
    });
}

/// The counting order under load: a thread reads the completed count and
/// then the spawned count (in that order, as `num_alive_tasks` does) while
/// batches of every size are spawned and run. A task queued before its
/// group was counted could end first, and the reader would see more
/// completed than spawned.
#[test]
fn no_task_of_a_batch_ends_before_it_is_counted() {
    watchdog(120, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let metrics = rt.handle().metrics();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            let metrics = metrics.clone();
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let completed = metrics.completed_count();
                    let spawned = metrics.spawned_tasks_count();
                    assert!(
                        completed <= spawned,
                        "{completed} tasks completed, {spawned} counted spawned"
                    );
                    reads += 1;
                }
                reads
            })
        };
        let mut spawned = 0u64;
        for round in 0..200 {
            let size = SIZES[round % SIZES.len()] + round;
            let handles = rt.handle().spawn_batch((0..size).map(|i| async move { i }));
            spawned += size as u64;
            let sum: usize = multipool::block_on(async {
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            });
            assert_eq!(sum, size * (size - 1) / 2);
        }
        stop.store(true, Ordering::SeqCst);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
        assert!(wait_until(WATCHDOG_WAIT, || metrics.num_alive_tasks() == 0));
        assert_eq!(metrics.spawned_tasks_count(), spawned);
        assert_eq!(metrics.completed_count(), spawned);
    });
}

#[test]
fn an_empty_batch_makes_no_task_and_counts_none() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handles = rt
            .handle()
            .spawn_batch(std::iter::empty::<std::future::Ready<()>>());
        assert!(handles.is_empty());
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.spawned_tasks_count(), 0);
        assert_eq!(metrics.num_alive_tasks(), 0);
        // The pool still serves spawns after it.
        assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
    });
}

#[test]
fn a_batch_after_shutdown_reports_shutdown_on_every_handle_and_counts_it() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle().clone();
        let metrics = handle.metrics();
        drop(rt);
        let dropped = Arc::new(AtomicUsize::new(0));
        let handles = handle.spawn_batch((0..150).map(|_| {
            let guard = common::DropCounter(dropped.clone());
            async move {
                let _guard = guard;
            }
        }));
        assert_eq!(handles.len(), 150);
        for handle in handles {
            assert!(multipool::block_on(handle).unwrap_err().is_shutdown());
        }
        // Every future was dropped, once, and every spawn is accounted for.
        assert_eq!(dropped.load(Ordering::SeqCst), 150);
        assert_eq!(metrics.spawned_tasks_count(), 150);
        assert_eq!(
            metrics.outcome_count(multipool::task::Outcome::Shutdown),
            150
        );
        assert_eq!(metrics.num_alive_tasks(), 0);
    });
}

#[test]
fn a_panicking_spawn_hook_does_not_stop_a_batch() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .on_task_spawn(|_| panic!("the spawn hook fails"))
            .build()
            .unwrap();
        let handles = rt
            .handle()
            .spawn_batch((0..150u64).map(|i| async move { i }));
        let sum: u64 = rt.block_on(async {
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 150 * 149 / 2);
        assert_eq!(rt.handle().metrics().spawned_tasks_count(), 150);
    });
}
