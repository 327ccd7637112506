//! User-written scheduling policies, and the two that ship: counted in
//! polls on one worker, never in time.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{hold_worker, watchdog};
use multipool::{Priority, PriorityFirst, Runtime, Scheduler, SchedulerContext, WeightedFair};

/// Floods one worker with four yielding tasks per level until `enough`
/// polls were made in all; returns the polls per level. The worker is held
/// until all twelve are queued, so no level gets a head start.
fn flood(rt: &Runtime, enough: u64) -> [u64; 3] {
    let held = hold_worker(rt);
    let stop = Arc::new(AtomicBool::new(false));
    let polls: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let tasks: Vec<_> = Priority::ALL
        .into_iter()
        .flat_map(|level| std::iter::repeat_n(level, 4))
        .map(|level| {
            let (stop, polls) = (stop.clone(), polls.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    polls[level as usize].fetch_add(1, Ordering::SeqCst);
                    let total: u64 = polls.iter().map(|p| p.load(Ordering::SeqCst)).sum();
                    if total >= enough {
                        stop.store(true, Ordering::SeqCst);
                    }
                    multipool::task::yield_now().await;
                }
            })
            .priority(level)
            .start()
        })
        .collect();
    held.release();
    for task in tasks {
        multipool::block_on(task).unwrap();
    }
    std::array::from_fn(|i| polls[i].load(Ordering::SeqCst))
}

#[test]
fn weighted_fair_gives_levels_polls_by_weight() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .scheduler(WeightedFair::new(8, 4, 1))
            .build()
            .unwrap();
        let [high, normal, low] = flood(&rt, 13_000);
        // 8 : 4 : 1, up to the tasks' start and end.
        assert!((7_700..=8_300).contains(&high), "{high} {normal} {low}");
        assert!((3_700..=4_300).contains(&normal), "{high} {normal} {low}");
        assert!((900..=1_300).contains(&low), "{high} {normal} {low}");
    });
}

#[test]
fn priority_first_as_a_scheduler_keeps_the_minimum_shares() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .scheduler(PriorityFirst::new())
            .build()
            .unwrap();
        let [high, normal, low] = flood(&rt, 64_000);
        assert!(low * 64 >= 64_000 - 640, "{high} {normal} {low}");
        assert!(normal * 16 >= 64_000 - 640, "{high} {normal} {low}");
        assert!(high > normal + low, "{high} {normal} {low}");
    });
}

/// Records each context it is asked with, and serves the lowest level.
struct Backwards {
    asked: Mutex<Vec<SchedulerContext>>,
}

impl Scheduler for Backwards {
    fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
        self.asked.lock().unwrap().push(*cx);
        [Priority::Low, Priority::Normal, Priority::High]
            .into_iter()
            .find(|&p| cx.queued(p) > 0)
    }
}

#[test]
fn a_custom_scheduler_decides_the_order() {
    let policy = Arc::new(Backwards {
        asked: Mutex::new(Vec::new()),
    });
    struct Shared(Arc<Backwards>);
    impl Scheduler for Shared {
        fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
            self.0.next_level(cx)
        }
    }
    let rt = Runtime::builder()
        .workers(1)
        .scheduler(Shared(policy.clone()))
        .build()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(rt.spawn(async move {
        // All queued on this worker while this task holds it.
        let handles: Vec<_> = [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .flat_map(|p| std::iter::repeat_n(p, 3))
            .map(|p| {
                let o = o.clone();
                multipool::spawn(async move { o.lock().unwrap().push(p) })
                    .priority(p)
                    .start()
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    }))
    .unwrap();
    let order = order.lock().unwrap();
    // The LIFO slot's task (the last spawned, Low) runs first; then the
    // policy serves Low, Normal, High.
    let levels: Vec<_> = order.iter().copied().collect();
    let mut sorted = levels.clone();
    sorted.sort_by_key(|p| std::cmp::Reverse(*p));
    assert_eq!(levels, sorted, "{levels:?}");
    let asked = policy.asked.lock().unwrap();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|cx| cx.worker() == 0));
    assert!(asked
        .iter()
        .any(|cx| cx.queued(Priority::High) == 3 && cx.queued(Priority::Low) >= 1));
}
