//! Worker-local state: `Builder::worker_state`, `PoolBuilder::worker_state`,
//! `with_worker_state` and `try_with_worker_state`.
//!
//! Every test runs under a watchdog; where a test needs tasks on distinct
//! workers it pins them (`Spawn::worker`) or holds each worker in a
//! blocking call until all have started.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, watchdog, Gate, WATCHDOG_WAIT};
use multipool::{try_with_worker_state, with_worker_state, Runtime};

/// A worker's state in these tests: its slot, and how often it was used.
#[derive(Debug)]
struct Shard {
    index: usize,
    uses: u64,
}

/// Uses the running worker's shard once; returns (worker index, shard
/// index, uses so far).
fn use_shard() -> (Option<usize>, usize, u64) {
    with_worker_state(|shard: &mut Shard| {
        shard.uses += 1;
        (multipool::worker_index(), shard.index, shard.uses)
    })
}

#[test]
fn each_worker_has_its_own_state_made_once_per_slot_with_its_index() {
    watchdog(60, || {
        let inits = Arc::new(Mutex::new(Vec::new()));
        let log = inits.clone();
        let started = Arc::new(Mutex::new(Vec::new()));
        let seen_at_start = started.clone();
        let rt = Runtime::builder()
            .workers(4)
            .worker_state(move |index| {
                log.lock().unwrap().push(index);
                Shard { index, uses: 0 }
            })
            .on_thread_start(move || {
                // The thread hooks run on the worker: its state is there.
                let index = try_with_worker_state(|shard: &mut Shard| shard.index);
                seen_at_start
                    .lock()
                    .unwrap()
                    .push((multipool::worker_index(), index));
            })
            .build()
            .unwrap();
        // Made at build, in order, before any worker ran.
        assert_eq!(*inits.lock().unwrap(), [0, 1, 2, 3]);
        for round in 1..=3 {
            for worker in 0..4 {
                let (on, index, uses) = rt
                    .block_on(multipool::spawn(async { use_shard() }).worker(worker))
                    .unwrap();
                assert_eq!((on, index, uses), (Some(worker), worker, round));
            }
        }
        drop(rt);
        assert_eq!(*inits.lock().unwrap(), [0, 1, 2, 3], "made once per slot");
        let mut started = started.lock().unwrap().clone();
        started.sort();
        assert_eq!(
            started,
            (0..4).map(|i| (Some(i), Some(i))).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_slot_keeps_its_state_across_its_workers_retirement_and_restart() {
    watchdog(60, || {
        let inits = Arc::new(AtomicUsize::new(0));
        let counter = inits.clone();
        let stopped = Arc::new(Mutex::new(Vec::new()));
        let log = stopped.clone();
        let rt = Runtime::builder()
            .min_workers(1)
            .max_workers(2)
            .idle_timeout(Duration::from_millis(20))
            .worker_state(move |index| {
                counter.fetch_add(1, Ordering::SeqCst);
                Shard { index, uses: 0 }
            })
            .on_thread_stop(move || {
                let shard = try_with_worker_state(|shard: &mut Shard| (shard.index, shard.uses));
                log.lock().unwrap().push(shard);
            })
            .build()
            .unwrap();
        let metrics = rt.handle().metrics();
        // Two tasks that each hold a worker until both started: the pool
        // grows to its second slot to run the second.
        let round = |expected_uses: u64| {
            let gate = Gate::default();
            let started = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, started) = (gate.clone(), started.clone());
                    rt.spawn(async move {
                        let used = use_shard();
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.wait();
                        used
                    })
                    .start()
                })
                .collect();
            assert!(wait_until(WATCHDOG_WAIT, || started.load(Ordering::SeqCst) == 2));
            gate.open();
            let mut used: Vec<_> = tasks
                .into_iter()
                .map(|task| multipool::block_on(task).unwrap())
                .collect();
            used.sort();
            assert_eq!(
                used,
                [(Some(0), 0, expected_uses), (Some(1), 1, expected_uses)]
            );
            assert!(
                wait_until(WATCHDOG_WAIT, || metrics.num_workers() == 1),
                "the added worker did not retire"
            );
        };
        round(1);
        assert_eq!(metrics.workers_retired(), 1);
        round(2); // slot 1's new worker finds the value its last one left
        assert_eq!(metrics.workers_started(), 3);
        assert_eq!(metrics.workers_retired(), 2);
        assert_eq!(
            inits.load(Ordering::SeqCst),
            2,
            "made once per slot, at build"
        );
        // The retiring workers' stop hooks saw their state too.
        assert!(wait_until(WATCHDOG_WAIT, || stopped.lock().unwrap().len() == 2));
        assert_eq!(*stopped.lock().unwrap(), [Some((1, 1)), Some((1, 2))]);
    });
}

#[test]
fn a_per_key_counter_needs_no_lock() {
    watchdog(120, || {
        const WORKERS: usize = 4;
        const TASKS: u64 = 10_000;
        const USERS: u64 = 97;
        let rt = Runtime::builder()
            .workers(WORKERS)
            .worker_state(|_| HashMap::<u64, u64>::new())
            .build()
            .unwrap();
        let totals = rt.block_on(async {
            let visits: Vec<_> = (0..TASKS)
                .map(|visit| {
                    let user = visit % USERS;
                    multipool::spawn(async move {
                        // Half the visits yield first: they may be polled
                        // again later, still on the same worker.
                        if visit % 2 == 0 {
                            multipool::task::yield_now().await;
                        }
                        with_worker_state(|counts: &mut HashMap<u64, u64>| {
                            *counts.entry(user).or_default() += 1;
                        });
                        multipool::worker_index().unwrap()
                    })
                    .key(user)
                    .start()
                })
                .collect();
            let mut worker_of_user = HashMap::new();
            for (visit, handle) in visits.into_iter().enumerate() {
                let worker = handle.await.unwrap();
                let user = visit as u64 % USERS;
                assert_eq!(*worker_of_user.entry(user).or_insert(worker), worker);
            }
            let mut totals = HashMap::new();
            for worker in 0..WORKERS {
                let shard = multipool::spawn(async {
                    with_worker_state(|counts: &mut HashMap<u64, u64>| std::mem::take(counts))
                })
                .worker(worker)
                .await
                .unwrap();
                for (user, count) in shard {
                    assert_eq!(worker_of_user[&user], worker);
                    assert!(
                        totals.insert(user, count).is_none(),
                        "user {user} on two workers"
                    );
                }
            }
            totals
        });
        assert_eq!(totals.len() as u64, USERS);
        assert_eq!(totals.values().sum::<u64>(), TASKS);
        for (user, count) in totals {
            let expected = TASKS / USERS + u64::from(user < TASKS % USERS);
            assert_eq!(count, expected, "user {user}");
        }
    });
}

#[test]
#[should_panic(expected = "`multipool::with_worker_state` called outside a multipool worker")]
fn off_a_worker_it_panics() {
    with_worker_state(|_: &mut Shard| ());
}

#[test]
fn try_with_worker_state_says_none_where_there_is_no_such_state() {
    watchdog(60, || {
        assert_eq!(try_with_worker_state(|shard: &mut Shard| shard.index), None);
        let rt = Runtime::builder()
            .workers(1)
            .worker_state(|index| Shard { index, uses: 0 })
            .pool("plain", |pool| pool.workers(1))
            .build()
            .unwrap();
        // Blocking threads are not workers.
        let blocking = rt
            .handle()
            .spawn_blocking(|| try_with_worker_state(|shard: &mut Shard| shard.index));
        assert_eq!(multipool::block_on(blocking).unwrap(), None);
        let (shard, other_type) = rt
            .block_on(multipool::spawn(async {
                (
                    try_with_worker_state(|shard: &mut Shard| shard.index),
                    try_with_worker_state(|_: &mut u64| ()),
                )
            }))
            .unwrap();
        assert_eq!((shard, other_type), (Some(0), None));
        let plain = rt
            .block_on(
                multipool::spawn(async { try_with_worker_state(|shard: &mut Shard| shard.index) })
                    .pool("plain"),
            )
            .unwrap();
        assert_eq!(plain, None);
    });
}

#[test]
fn a_wrong_type_or_a_pool_without_state_panics_clearly() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .worker_state(|index| Shard { index, uses: 0 })
            .pool("plain", |pool| pool.workers(1))
            .pool("strings", |pool| {
                pool.workers(1).worker_state(|i| i.to_string())
            })
            .build()
            .unwrap();
        let err = rt
            .block_on(multipool::spawn(async {
                with_worker_state(|n: &mut u64| *n)
            }))
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("asked for a `u64`")
                && message.contains("pool `default` is a `worker_state::Shard`"),
            "{message}"
        );
        let err = rt
            .block_on(
                multipool::spawn(async { with_worker_state(|shard: &mut Shard| shard.index) })
                    .pool("plain"),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("pool `plain`, which has no worker state"),
            "{err}"
        );
        // Each pool has its own.
        let name = rt
            .block_on(
                multipool::spawn(async { with_worker_state(|name: &mut String| name.clone()) })
                    .pool("strings"),
            )
            .unwrap();
        assert_eq!(name, "0");
    });
}

#[test]
fn a_reentrant_call_panics_clearly_and_releases_the_state() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .worker_state(|index| Shard { index, uses: 0 })
            .build()
            .unwrap();
        let err = rt
            .block_on(multipool::spawn(async {
                with_worker_state(|outer: &mut Shard| {
                    outer.uses += 1;
                    with_worker_state(|inner: &mut Shard| inner.uses += 1);
                })
            }))
            .unwrap_err();
        assert!(err.is_panic());
        assert!(
            err.to_string()
                .contains("called inside `with_worker_state` on the same worker"),
            "{err}"
        );
        // `try_` too: a reentrant call is a bug, not an absence.
        let err = rt
            .block_on(multipool::spawn(async {
                with_worker_state(|_: &mut Shard| try_with_worker_state(|_: &mut Shard| ()))
            }))
            .unwrap_err();
        assert!(err.to_string().contains("already borrowed"), "{err}");
        // The panics unwound out of both closures: the state is free again,
        // with what the outer closure changed before the inner call.
        let (_, _, uses) = rt
            .block_on(multipool::spawn(async { use_shard() }))
            .unwrap();
        assert_eq!(uses, 2);
    });
}

#[test]
fn a_panicking_init_fails_the_build_without_hanging() {
    watchdog(60, || {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        let err = Runtime::builder()
            .workers(3)
            .on_thread_start(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .worker_state(|index| {
                if index == 2 {
                    panic!("no shard for 2");
                }
                index
            })
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), Some("worker_state"));
        let message = err.to_string();
        assert!(
            message.contains("worker slot 2") && message.contains("no shard for 2"),
            "{message}"
        );
        // In a named pool, after the default pool started: the default
        // pool is shut down again, and the error names the pool.
        let err = Runtime::builder()
            .workers(1)
            .pool("shards", |pool| {
                pool.workers(2).worker_state(|_| -> u8 { panic!("boom") })
            })
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("pool `shards`"), "{err}");
        // No worker of the first runtime ever started.
        assert_eq!(started.load(Ordering::SeqCst), 0);
    });
}
