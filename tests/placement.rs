//! Placement policies, key placement, pinning to a worker, LIFO levels and
//! pinning workers to cores.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{watchdog, Gate};
use multipool::{Placement, Priority, Runtime};

/// Blocks every worker of `rt` (`workers` of them) on `gate`, one task per
/// worker; returns their handles once all are blocked.
fn block_all_workers(rt: &Runtime, workers: usize, gate: &Gate) -> Vec<multipool::JoinHandle<()>> {
    let blocked = Arc::new(AtomicUsize::new(0));
    let handles = (0..workers)
        .map(|_| {
            let (gate, blocked) = (gate.clone(), blocked.clone());
            rt.spawn(async move {
                blocked.fetch_add(1, Ordering::SeqCst);
                gate.wait();
            })
            .start()
        })
        .collect();
    // A blocked worker cannot take a second gate task, so each of the
    // `workers` gate tasks ends up on a worker of its own.
    while blocked.load(Ordering::SeqCst) < workers {
        thread::yield_now();
    }
    handles
}

/// Spawns 400 tasks from outside onto 4 blocked workers under `placement`,
/// hands the per-worker queue depths to `check` while they are all still
/// queued, then lets everything run and checks that every task completed.
fn place_400(placement: Placement, check: impl FnOnce(Vec<usize>) + Send + 'static) {
    watchdog(60, move || {
        let rt = Runtime::builder()
            .workers(4)
            .placement(placement)
            .build()
            .unwrap();
        let gate = Gate::default();
        let blockers = block_all_workers(&rt, 4, &gate);
        let tasks: Vec<_> = (0..400u64)
            .map(|i| rt.spawn(async move { i }).start())
            .collect();
        let metrics = rt.handle().metrics();
        check(
            (0..4)
                .map(|w| metrics.worker_local_queue_depth(w))
                .collect(),
        );
        gate.open();
        let sum: u64 = tasks
            .into_iter()
            .map(|t| multipool::block_on(t).unwrap())
            .sum();
        assert_eq!(sum, 79_800);
        for blocker in blockers {
            multipool::block_on(blocker).unwrap();
        }
    });
}

#[test]
fn round_robin_spreads_new_tasks_evenly() {
    place_400(Placement::RoundRobin, |depths| {
        assert_eq!(depths, vec![100; 4]);
    });
}

#[test]
fn least_loaded_keeps_queues_balanced() {
    place_400(Placement::LeastLoaded, |depths| {
        assert_eq!(depths.iter().sum::<usize>(), 400);
        let (min, max) = (depths.iter().min().unwrap(), depths.iter().max().unwrap());
        // Two random choices keep the spread small (one choice would give
        // a spread of tens at this size).
        assert!(max - min <= 12, "{depths:?}");
    });
}

#[test]
fn placed_tasks_are_stolen_by_idle_workers() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .placement(Placement::RoundRobin)
            .build()
            .unwrap();
        let gate = Gate::default();
        // Worker-blocking tasks on both, then release one worker only by
        // finishing its gate: the other stays blocked, and all placed work
        // (half of it on the blocked worker) still completes.
        let g = gate.clone();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let stuck = rt
            .spawn(async move {
                s.fetch_add(1, Ordering::SeqCst);
                g.wait();
            })
            .start();
        while started.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        let tasks: Vec<_> = (0..100u64)
            .map(|i| rt.spawn(async move { i }).start())
            .collect();
        let sum: u64 = tasks
            .into_iter()
            .map(|t| multipool::block_on(t).unwrap())
            .sum();
        assert_eq!(sum, 4950);
        gate.open();
        multipool::block_on(stuck).unwrap();
    });
}

#[test]
fn equal_keys_go_to_one_worker_and_distinct_keys_spread() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        for key in ["alice", "bob", "carol"] {
            let workers: HashSet<_> = (0..50)
                .map(|_| {
                    rt.block_on(
                        rt.spawn(async { multipool::worker_index().unwrap() })
                            .key(key),
                    )
                    .unwrap()
                })
                .collect();
            assert_eq!(workers.len(), 1, "key {key} ran on {workers:?}");
        }
        let spread: HashSet<_> = (0..64u32)
            .map(|key| {
                rt.block_on(
                    rt.spawn(async { multipool::worker_index().unwrap() })
                        .key(key),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(spread.len(), 4, "64 keys used workers {spread:?}");
    });
}

#[test]
fn a_pinned_task_never_changes_thread_though_others_are_idle() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let threads = rt
            .block_on(
                rt.spawn(async {
                    let mut threads = HashSet::new();
                    let mut workers = HashSet::new();
                    for i in 0..5_000u32 {
                        threads.insert(thread::current().id());
                        workers.insert(multipool::worker_index());
                        if i % 10 == 0 {
                            multipool::time::sleep(std::time::Duration::from_micros(1)).await;
                        } else {
                            multipool::task::yield_now().await;
                        }
                    }
                    (threads.len(), workers)
                })
                .worker(2),
            )
            .unwrap();
        assert_eq!(threads.0, 1);
        assert_eq!(threads.1, HashSet::from([Some(2)]));
    });
}

#[test]
fn a_pinned_task_waits_for_its_busy_worker() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let gate = Gate::default();
        let g = gate.clone();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let hog = rt
            .spawn(async move {
                s.fetch_add(1, Ordering::SeqCst);
                g.wait();
            })
            .worker(0)
            .start();
        while started.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        let pinned = rt
            .spawn(async { multipool::worker_index() })
            .worker(0)
            .start();
        let free = rt.spawn(async { multipool::worker_index() }).start();
        assert_eq!(multipool::block_on(free).unwrap(), Some(1));
        assert!(!pinned.is_finished());
        gate.open();
        multipool::block_on(hog).unwrap();
        assert_eq!(multipool::block_on(pinned).unwrap(), Some(0));
    });
}

#[test]
fn pinning_to_a_worker_that_may_retire_is_refused() {
    let rt = Runtime::builder()
        .min_workers(1)
        .max_workers(4)
        .build()
        .unwrap();
    let err = rt.block_on(rt.spawn(async {}).worker(2)).unwrap_err();
    assert!(err.is_rejected());
    assert!(err.to_string().contains("permanent workers 0..1"), "{err}");
    // Keys only ever map to the permanent workers.
    for key in 0..20 {
        let on = rt
            .block_on(rt.spawn(async { multipool::worker_index() }).key(key))
            .unwrap();
        assert_eq!(on, Some(0));
    }
}

#[test]
fn shutdown_cancels_pinned_and_placed_tasks() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .placement(Placement::RoundRobin)
            .build()
            .unwrap();
        let gate = Gate::default();
        let _blockers = block_all_workers(&rt, 2, &gate);
        let placed: Vec<_> = (0..10).map(|_| rt.spawn(async {}).start()).collect();
        let pinned: Vec<_> = (0..10)
            .map(|i| rt.spawn(async {}).worker(i % 2).start())
            .collect();
        let opener = {
            let gate = gate.clone();
            thread::spawn(move || gate.open())
        };
        drop(rt);
        opener.join().unwrap();
        for task in placed.into_iter().chain(pinned) {
            // Each either ran before the shutdown or reports it.
            if let Err(err) = multipool::block_on(task) {
                assert!(err.is_shutdown());
            }
        }
    });
}

#[test]
fn a_lifo_level_serves_the_newest_task_first() {
    let rt = Runtime::builder()
        .workers(1)
        .lifo(Priority::Normal)
        .build()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(rt.spawn(async move {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let o = o.clone();
                multipool::spawn(async move { o.lock().unwrap().push(i) }).start()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    }))
    .unwrap();
    // The newest (9) ran first: straight from the LIFO slot; then the rest
    // newest first from the LIFO queue.
    assert_eq!(*order.lock().unwrap(), vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
}

#[test]
fn a_fifo_level_serves_the_oldest_task_first() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(rt.spawn(async move {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let o = o.clone();
                multipool::spawn(async move { o.lock().unwrap().push(i) }).start()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    }))
    .unwrap();
    // The LIFO slot holds the newest (9), which runs first; the queue is
    // then served oldest first.
    assert_eq!(*order.lock().unwrap(), vec![9, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: reads this thread's affinity into a set we own; `CPU_ISSET`
    // stays inside it for CPUs below `CPU_SETSIZE`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(target_os = "linux")]
#[test]
fn pinned_workers_run_on_one_core_each() {
    let cpus = allowed_cpus();
    let workers = cpus.len().min(2);
    let rt = Runtime::builder()
        .workers(workers)
        .pin_workers(true)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for (worker, &cpu) in cpus.iter().enumerate().take(workers) {
        let allowed = rt
            .block_on(rt.spawn(async { allowed_cpus() }).worker(worker))
            .unwrap();
        assert_eq!(allowed, vec![cpu], "worker {worker}");
        seen.push(allowed[0]);
    }
    seen.dedup();
    assert_eq!(seen.len(), workers, "each worker has a core of its own");
}
