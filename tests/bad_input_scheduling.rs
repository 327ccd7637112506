//! Bad input never panics, hangs, or silently means something else: one
//! test per row of the README's "Guarantees → Bad input" table. Each
//! setting at 0, 1, its maximum and `Duration::MAX` (or `Duration::ZERO`)
//! either is a [`BuildError`](multipool::BuildError) naming the setting, or
//! builds a runtime that works (a task is spawned and checked) with the
//! documented meaning. Anything that could hang runs under the watchdog.
//!
//! This file: what a pool queues and in which order it serves it:
//! `max_queued`, `priorities`, `min_share` and the scheduler policies'
//! shares and weights.

mod common;

use common::settings::{pool_works, rejects, with_pool, works};
use common::{hold_worker, watchdog};
use multipool::{Priority, PriorityFirst, Runtime, WeightedFair};

/// The largest share the worker's wrapping tick arithmetic handles.
const MAX_SHARE: u32 = i32::MAX as u32;

// ---------------------------------------------------------------------------
// Queue bounds and priorities
// ---------------------------------------------------------------------------

#[test]
fn max_queued_zero_one_and_max() {
    rejects(
        Runtime::builder().max_queued(0),
        "max_queued",
        "must be at least 1",
    );
    rejects(with_pool(|p| p.max_queued(0)), "max_queued", "(pool `p`)");
    watchdog(60, || {
        // One task waits; the next is refused.
        let rt = works(Runtime::builder().workers(1).max_queued(1));
        assert_eq!(rt.handle().metrics().max_queued(), Some(1));
        let held = hold_worker(&rt);
        let queued = rt.spawn(async { 1 }).try_start().unwrap();
        assert!(rt.spawn(async {}).try_start().unwrap_err().is_full());
        let refused = rt.block_on(rt.spawn(async {}).start()).unwrap_err();
        assert!(refused.is_rejected(), "{refused}");
        held.release();
        assert_eq!(multipool::block_on(queued).unwrap(), 1);
    });
    // As good as unbounded.
    let rt = works(Runtime::builder().workers(1).max_queued(usize::MAX));
    let handles: Vec<_> = (0..1000)
        .map(|i| rt.spawn(async move { i }).try_start().unwrap())
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(rt.block_on(handle).unwrap(), i);
    }
}

#[test]
fn priorities_empty_is_rejected() {
    rejects(
        Runtime::builder().priorities([]),
        "priorities",
        "at least one priority",
    );
    rejects(with_pool(|p| p.priorities([])), "priorities", "(pool `p`)");
    pool_works(with_pool(|p| p.priorities([Priority::Normal])));
    // One level: tasks of the others are refused.
    let rt = with_pool(|p| p.priorities([Priority::Normal]))
        .build()
        .unwrap();
    let err = rt
        .block_on(rt.spawn(async {}).pool("p").priority(Priority::High))
        .unwrap_err();
    assert!(err.is_rejected(), "{err}");
}

// ---------------------------------------------------------------------------
// min_share
// ---------------------------------------------------------------------------

#[test]
fn min_share_zero_and_one_are_rejected() {
    for level in [Priority::Normal, Priority::Low] {
        rejects(
            Runtime::builder().min_share(level, 0),
            "min_share",
            "must be at least 2",
        );
        rejects(Runtime::builder().min_share(level, 1), "min_share", "got 1");
        rejects(
            with_pool(|p| p.min_share(level, 1)),
            "min_share",
            "(pool `p`)",
        );
        works(Runtime::builder().workers(1).min_share(level, 2));
    }
}

#[test]
fn min_share_for_high_is_rejected() {
    for one_in in [0, 1, 2, u32::MAX] {
        rejects(
            Runtime::builder().min_share(Priority::High, one_in),
            "min_share",
            "High is always served first",
        );
    }
}

#[test]
fn min_share_normal_and_low_both_one_in_two_is_rejected() {
    rejects(
        Runtime::builder()
            .min_share(Priority::Normal, 2)
            .min_share(Priority::Low, 2),
        "min_share",
        "leaving High none",
    );
    works(
        Runtime::builder()
            .workers(1)
            .min_share(Priority::Normal, 2)
            .min_share(Priority::Low, 3),
    );
}

/// Above `2^31 - 1` the worker's wrapping tick comparison read the turn as
/// already due, so the level was served on every tick, ahead of High;
/// `u32::MAX` silently meant "no share".
#[test]
fn min_share_above_two_to_the_31_is_rejected() {
    for one_in in [MAX_SHARE + 1, MAX_SHARE + 2, u32::MAX] {
        for level in [Priority::Normal, Priority::Low] {
            rejects(
                Runtime::builder().min_share(level, one_in),
                "min_share",
                &format!("must be at most 2147483647 (2^31 - 1), got {one_in}"),
            );
        }
    }
}

/// The largest share is a rare turn, not one on every tick: a Low task
/// queued before a burst of High tasks still runs after all of them.
#[test]
fn min_share_at_its_maximum_keeps_high_first() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .min_share(Priority::Low, MAX_SHARE),
        );
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = hold_worker(&rt);
        let push = |label: &'static str| {
            let order = order.clone();
            async move { order.lock().unwrap().push(label) }
        };
        let low = rt.spawn(push("low")).priority(Priority::Low).start();
        let highs: Vec<_> = (0..32)
            .map(|_| rt.spawn(push("high")).priority(Priority::High).start())
            .collect();
        held.release();
        multipool::block_on(low).unwrap();
        for high in highs {
            multipool::block_on(high).unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 33);
        assert_eq!(order.last(), Some(&"low"), "{order:?}");
    });
}

/// `PriorityFirst` and `WeightedFair` take any value; the arithmetic is
/// exact in `u128` (the overflow itself is tested in `pool::scheduler`).
#[test]
fn scheduler_policies_take_any_share_or_weight() {
    for one_in in [0, 1, u64::MAX] {
        works(
            Runtime::builder()
                .workers(1)
                .scheduler(PriorityFirst::new().min_share(Priority::Low, one_in)),
        );
    }
    for weight in [0, 1, u32::MAX] {
        works(
            Runtime::builder()
                .workers(1)
                .scheduler(WeightedFair::new(weight, weight, weight)),
        );
    }
}
