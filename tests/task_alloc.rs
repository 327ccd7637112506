//! Memory limits: `TaskAlloc` as this binary's global allocator,
//! `Spawn::memory_limit`, the peak in `TaskInfo`, and the outcome counts.
//!
//! Counts are exact where the test controls every allocation of a poll
//! (a poll that pushes one chunk into a `Vec` of known capacity), and
//! bounded where the runtime may allocate a little on the task's behalf.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{watchdog, DropCounter};
use multipool::alloc::{MemoryUsage, TaskAlloc};
use multipool::task::{yield_now, Outcome};
use multipool::Runtime;

#[global_allocator]
static GLOBAL: TaskAlloc = TaskAlloc::system();

const KIB: usize = 1024;
const CHUNK: usize = 64 * KIB;

/// A task that keeps one more `CHUNK` at each poll, `polls` times, counting
/// its polls. The outer `Vec` is allocated up front with room for all
/// chunks, so each poll allocates exactly one chunk.
async fn hog(polls: usize, counted: Arc<AtomicUsize>, dropped: DropCounter) -> usize {
    let _dropped = dropped;
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(polls);
    for _ in 0..polls {
        counted.fetch_add(1, Ordering::SeqCst);
        kept.push(vec![1; CHUNK]);
        yield_now().await;
    }
    kept.iter().map(Vec::len).sum()
}

type Ended = Arc<Mutex<Vec<(Option<String>, Outcome, Option<MemoryUsage>)>>>;

/// A runtime of 2 workers recording each task's end and memory.
fn recording_runtime() -> (Runtime, Ended) {
    let ended: Ended = Arc::default();
    let log = ended.clone();
    let rt = Runtime::builder()
        .workers(2)
        .on_task_terminate(move |task, outcome| {
            log.lock()
                .unwrap()
                .push((task.name().map(String::from), outcome, task.memory()));
        })
        .build()
        .unwrap();
    (rt, ended)
}

fn ended_as(ended: &Ended, name: &str) -> (Outcome, Option<MemoryUsage>) {
    let ended = ended.lock().unwrap();
    let found: Vec<_> = ended
        .iter()
        .filter(|(n, _, _)| n.as_deref() == Some(name))
        .collect();
    assert_eq!(found.len(), 1, "`{name}` ended {} times", found.len());
    (found[0].1, found[0].2)
}

#[test]
fn the_allocator_is_installed() {
    assert!(multipool::alloc::is_installed());
    assert_eq!(multipool::alloc::task_memory(), None);
}

#[test]
fn a_task_over_its_limit_is_cancelled_at_the_next_poll_boundary_and_its_siblings_complete() {
    watchdog(60, || {
        let (rt, ended) = recording_runtime();
        // 8 chunks plus the outer `Vec` fit; the 9th chunk does not.
        let limit = 8 * CHUNK + 4 * KIB;
        let polls = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let hog_task = rt
            .spawn(hog(16, polls.clone(), DropCounter(drops.clone())))
            .name("hog")
            .memory_limit(limit)
            .start();
        // Siblings, concurrently on both workers: tracked ones under their
        // limits (one keeping, one allocating and freeing), and an untracked
        // one keeping far more than the hog's limit, which must not be
        // charged to the hog when it runs between the hog's polls or on the
        // other worker at the same time.
        let keeper = rt
            .spawn(hog(4, Arc::default(), DropCounter(Arc::default())))
            .name("keeper")
            .memory_limit(8 * CHUNK)
            .start();
        let churner = rt
            .spawn(async {
                let mut total = 0;
                for _ in 0..50 {
                    let buffer = vec![1u8; 4 * CHUNK];
                    total += buffer.len();
                    drop(buffer);
                    yield_now().await;
                }
                total
            })
            .name("churner")
            .memory_limit(5 * CHUNK)
            .start();
        let untracked = rt
            .spawn(hog(64, Arc::default(), DropCounter(Arc::default())))
            .name("untracked")
            .start();

        let err = rt.block_on(hog_task).unwrap_err();
        assert!(err.is_memory_exceeded(), "{err:?}");
        assert!(!err.is_cancelled() && !err.is_rejected() && !err.is_panic());
        assert!(
            err.to_string()
                .contains(&format!("over its limit of {limit}")),
            "{err}"
        );
        // Cancelled at the end of the first poll that went over: the 9th.
        assert_eq!(polls.load(Ordering::SeqCst), 9);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future is dropped once"
        );

        assert_eq!(rt.block_on(keeper).unwrap(), 4 * CHUNK);
        assert_eq!(rt.block_on(churner).unwrap(), 50 * 4 * CHUNK);
        assert_eq!(rt.block_on(untracked).unwrap(), 64 * CHUNK);

        let metrics = rt.handle().metrics();
        assert_eq!(metrics.memory_exceeded_count(), 1);
        assert_eq!(metrics.completed_count(), 3);
        let outcomes: u64 = [
            Outcome::Completed,
            Outcome::Cancelled,
            Outcome::Panicked,
            Outcome::TimedOut,
            Outcome::Rejected,
            Outcome::Shutdown,
            Outcome::MemoryExceeded,
        ]
        .into_iter()
        .map(|outcome| metrics.outcome_count(outcome))
        .sum();
        assert_eq!(
            metrics.spawned_tasks_count(),
            outcomes + metrics.num_alive_tasks() as u64
        );
        drop(rt); // every hook has run

        let (outcome, memory) = ended_as(&ended, "hog");
        assert_eq!(outcome, Outcome::MemoryExceeded);
        let memory = memory.expect("a tracked task reports its memory");
        assert_eq!(memory.limit, limit);
        assert!(
            memory.peak > limit && memory.peak < limit + 2 * CHUNK,
            "{memory:?}"
        );
        // Its future was dropped (charged to it): it holds nothing now.
        assert!(memory.held < KIB, "{memory:?}");

        let (outcome, memory) = ended_as(&ended, "keeper");
        assert_eq!(outcome, Outcome::Completed);
        let memory = memory.unwrap();
        assert!(
            memory.peak >= 4 * CHUNK && memory.peak < 5 * CHUNK,
            "{memory:?}"
        );

        let (outcome, memory) = ended_as(&ended, "churner");
        assert_eq!(outcome, Outcome::Completed);
        let memory = memory.unwrap();
        assert!(
            memory.peak >= 4 * CHUNK && memory.peak < 5 * CHUNK,
            "{memory:?}"
        );

        let (outcome, memory) = ended_as(&ended, "untracked");
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(memory, None, "an untracked task reports no memory");
    });
}

#[test]
fn a_task_that_frees_what_it_allocates_stays_under_its_limit() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                rt.spawn(async {
                    let mut peak_seen = 0;
                    for round in 0..100 {
                        // Up to 512 KiB inside a poll, freed before its end.
                        let buffer = vec![round as u8; 8 * CHUNK];
                        peak_seen = peak_seen.max(multipool::alloc::task_memory().unwrap().held);
                        drop(buffer);
                        yield_now().await;
                    }
                    peak_seen
                })
                .memory_limit(CHUNK)
                .start()
            })
            .collect();
        for task in tasks {
            let held_inside_a_poll = rt.block_on(task).unwrap();
            assert!(held_inside_a_poll >= 8 * CHUNK, "{held_inside_a_poll}");
        }
        assert_eq!(rt.handle().metrics().memory_exceeded_count(), 0);
    });
}

#[test]
fn the_poll_hooks_see_the_memory_so_far() {
    watchdog(60, || {
        let after: Arc<Mutex<Vec<MemoryUsage>>> = Arc::default();
        let log = after.clone();
        let rt = Runtime::builder()
            .workers(1)
            .on_after_task_poll(move |task| {
                if let Some(memory) = task.memory() {
                    log.lock().unwrap().push(memory);
                }
            })
            .build()
            .unwrap();
        rt.block_on(
            rt.spawn(hog(3, Arc::default(), DropCounter(Arc::default())))
                .memory_limit(usize::MAX),
        )
        .unwrap();
        let after = after.lock().unwrap();
        // Three polls that each keep a chunk, and the last that completes.
        assert_eq!(after.len(), 4, "{after:?}");
        for (poll, memory) in after.iter().take(3).enumerate() {
            let kept = (poll + 1) * CHUNK;
            assert!(memory.held >= kept && memory.held < kept + KIB, "{after:?}");
            assert_eq!(memory.peak, memory.held, "{after:?}");
        }
        assert!(after[3].held < KIB, "dropped at completion: {after:?}");
        assert!(after[3].peak >= 3 * CHUNK, "{after:?}");
        assert_eq!(after[3].limit, usize::MAX);
    });
}

#[test]
fn a_zero_limit_allows_no_memory_across_a_poll_boundary() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        rt.block_on(async {
            // Holds nothing across its yields: runs to the end.
            let ok = multipool::spawn(async {
                for _ in 0..3 {
                    drop(vec![0u8; 100]);
                    yield_now().await;
                }
                "done"
            })
            .memory_limit(0)
            .await;
            assert_eq!(ok.unwrap(), "done");

            // Allocates its output in its only poll: the completed poll
            // wins over the limit.
            let output = multipool::spawn(async { vec![7u8; 1000] })
                .memory_limit(0)
                .await;
            assert_eq!(output.unwrap().len(), 1000);

            // Keeps one byte across a yield: cancelled there.
            let err = multipool::spawn(async {
                let kept = Box::new(1u8);
                yield_now().await;
                *kept
            })
            .memory_limit(0)
            .await
            .unwrap_err();
            assert!(err.is_memory_exceeded(), "{err:?}");
        });
    });
}

#[test]
fn an_unbounded_limit_only_tracks() {
    watchdog(60, || {
        let (rt, ended) = recording_runtime();
        let kept = rt
            .block_on(
                rt.spawn(hog(64, Arc::default(), DropCounter(Arc::default())))
                    .name("big")
                    .memory_limit(usize::MAX),
            )
            .unwrap();
        assert_eq!(kept, 64 * CHUNK);
        drop(rt);
        let (outcome, memory) = ended_as(&ended, "big");
        assert_eq!(outcome, Outcome::Completed);
        assert!(memory.unwrap().peak >= 64 * CHUNK);
    });
}

#[test]
fn spawning_does_not_charge_the_new_task_to_its_parent() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let spawned = rt.block_on(
            rt.spawn(async {
                for _ in 0..100 {
                    // A 16 KiB future each: 1.6 MB in task allocations.
                    let payload = [1u8; 16 * KIB];
                    let sum = multipool::spawn(async move {
                        yield_now().await;
                        payload.iter().map(|&b| b as usize).sum::<usize>()
                    })
                    .await
                    .unwrap();
                    assert_eq!(sum, 16 * KIB);
                }
                multipool::alloc::task_memory().unwrap()
            })
            .memory_limit(4 * KIB),
        );
        let usage = spawned.unwrap();
        assert!(usage.peak < 4 * KIB, "{usage:?}");
    });
}

#[test]
fn a_limited_task_is_still_aborted_and_timed_out_as_usual() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let stuck = rt
            .spawn(std::future::pending::<()>())
            .memory_limit(CHUNK)
            .start();
        stuck.abort();
        assert!(rt.block_on(stuck).unwrap_err().is_cancelled());
        let slow = rt
            .spawn(multipool::time::sleep(std::time::Duration::from_secs(60)))
            .memory_limit(CHUNK)
            .timeout(std::time::Duration::from_millis(5));
        assert!(rt.block_on(slow).unwrap_err().is_timeout());
        let metrics = rt.handle().metrics();
        assert_eq!(metrics.cancelled_count(), 1);
        assert_eq!(metrics.timed_out_count(), 1);
        assert_eq!(metrics.num_timers(), 0);
    });
}
