//! Task ids, task hooks, the panic policy and slow-poll reports.
//!
//! Hooks record into shared logs; gates and channels decide every order
//! the assertions depend on, and every test runs under a watchdog.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{watchdog, Gate};
use multipool::task::{Id, Outcome, UnhandledPanic};
use multipool::{Priority, Runtime};

#[test]
fn ids_are_unique_and_stable_across_polls() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let count = if cfg!(miri) { 50 } else { 1_000 };
        let handles: Vec<_> = (0..count)
            .map(|_| {
                rt.spawn(async {
                    let first = multipool::task::id();
                    multipool::task::yield_now().await;
                    multipool::time::sleep(Duration::from_millis(1)).await;
                    (first, multipool::task::id())
                })
                .start()
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            let id = handle.id();
            let (first, last) = multipool::block_on(handle).unwrap();
            assert_eq!(first, id);
            assert_eq!(last, id, "the id changed between polls");
            assert!(seen.insert(id), "id {id} given twice");
        }
        // Off a task: none, in block_on's own future too.
        assert_eq!(multipool::task::try_id(), None);
        assert_eq!(rt.block_on(async { multipool::task::try_id() }), None);
        // Blocking tasks and refused spawns have ids too, all distinct.
        let blocking = rt.handle().spawn_blocking(multipool::task::try_id);
        let blocking_id = blocking.id();
        assert_eq!(multipool::block_on(blocking).unwrap(), Some(blocking_id));
        assert!(seen.insert(blocking_id));
    });
}

#[test]
#[should_panic(expected = "called outside a task")]
fn task_id_outside_a_task_panics() {
    let _ = multipool::task::id();
}

#[test]
fn an_id_displays_as_its_number() {
    // Its own runtime, not the global one: under miri, the global
    // runtime's workers would outlive the test process.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let id = rt
        .block_on(rt.spawn(async { multipool::task::id() }))
        .unwrap();
    assert_eq!(id.to_string(), id.as_u64().to_string());
    assert_ne!(id.as_u64(), 0);
}

/// One event a hook saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Spawn(Id),
    Before(Id),
    After(Id),
    Terminate(Id, Outcome),
}

fn recording_runtime(log: &Arc<Mutex<Vec<Event>>>) -> Runtime {
    let (spawn, before, after, end) = (log.clone(), log.clone(), log.clone(), log.clone());
    Runtime::builder()
        .workers(2)
        .on_task_spawn(move |task| spawn.lock().unwrap().push(Event::Spawn(task.id())))
        .on_before_task_poll(move |task| before.lock().unwrap().push(Event::Before(task.id())))
        .on_after_task_poll(move |task| after.lock().unwrap().push(Event::After(task.id())))
        .on_task_terminate(move |task, outcome| {
            end.lock()
                .unwrap()
                .push(Event::Terminate(task.id(), outcome))
        })
        .build()
        .unwrap()
}

/// The events of task `id`, in order.
fn events_of(log: &Mutex<Vec<Event>>, id: Id) -> Vec<Event> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|event| match event {
            Event::Spawn(of) | Event::Before(of) | Event::After(of) => *of == id,
            Event::Terminate(of, _) => *of == id,
        })
        .cloned()
        .collect()
}

#[test]
fn hooks_fire_once_per_event_in_order_with_the_outcome() {
    watchdog(60, || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let rt = recording_runtime(&log);
        // Completes after three polls.
        let done = rt
            .spawn(async {
                multipool::task::yield_now().await;
                multipool::task::yield_now().await;
            })
            .start();
        let done_id = done.id();
        multipool::block_on(done).unwrap();
        // Panics in its first poll.
        let panicked = rt.spawn(async { panic!("on purpose") }).start();
        let panicked_id = panicked.id();
        assert!(multipool::block_on(panicked).unwrap_err().is_panic());
        // Aborted while idle.
        let gate = Gate::default();
        let (polled_tx, polled) = mpsc::channel();
        let aborted = rt
            .spawn(async move {
                polled_tx.send(()).unwrap();
                std::future::pending::<()>().await
            })
            .start();
        let aborted_id = aborted.id();
        polled.recv().unwrap();
        aborted.abort();
        assert!(multipool::block_on(aborted).unwrap_err().is_cancelled());
        // Rejected at spawn: never polled.
        let rejected = rt.spawn(async {}).timeout(Duration::ZERO).start();
        let rejected_id = rejected.id();
        assert!(multipool::block_on(rejected).unwrap_err().is_rejected());
        gate.open();
        // Alive at shutdown.
        let (polled_tx, polled) = mpsc::channel();
        let stuck = rt
            .spawn(async move {
                polled_tx.send(()).unwrap();
                std::future::pending::<()>().await
            })
            .start();
        let stuck_id = stuck.id();
        polled.recv().unwrap();
        drop(rt);
        assert!(multipool::block_on(stuck).unwrap_err().is_shutdown());

        use Event::*;
        assert_eq!(
            events_of(&log, done_id),
            [
                Spawn(done_id),
                Before(done_id),
                After(done_id),
                Before(done_id),
                After(done_id),
                Before(done_id),
                After(done_id),
                Terminate(done_id, Outcome::Completed),
            ]
        );
        assert_eq!(
            events_of(&log, panicked_id),
            [
                Spawn(panicked_id),
                Before(panicked_id),
                After(panicked_id),
                Terminate(panicked_id, Outcome::Panicked),
            ]
        );
        // The abort runs the task once more to drop its future: that run
        // is not a poll of the future, so no poll hooks fire for it.
        assert_eq!(
            events_of(&log, aborted_id),
            [
                Spawn(aborted_id),
                Before(aborted_id),
                After(aborted_id),
                Terminate(aborted_id, Outcome::Cancelled),
            ]
        );
        assert_eq!(
            events_of(&log, rejected_id),
            [
                Spawn(rejected_id),
                Terminate(rejected_id, Outcome::Rejected)
            ]
        );
        assert_eq!(
            events_of(&log, stuck_id),
            [
                Spawn(stuck_id),
                Before(stuck_id),
                After(stuck_id),
                Terminate(stuck_id, Outcome::Shutdown),
            ]
        );
    });
}

#[test]
fn task_info_carries_name_priority_pool_and_location() {
    watchdog(60, || {
        let infos = Arc::new(Mutex::new(Vec::new()));
        let seen = infos.clone();
        let rt = Runtime::builder()
            .workers(1)
            .pool("io", |pool| pool.workers(1))
            .on_task_spawn(move |task| {
                seen.lock().unwrap().push((
                    task.name().map(String::from),
                    task.priority(),
                    task.pool().to_string(),
                    task.location().file().to_string(),
                    task.location().line(),
                ))
            })
            .build()
            .unwrap();
        let line = line!() + 2;
        rt.block_on(
            rt.spawn(async {})
                .name("a\0name with a NUL")
                .priority(Priority::Low)
                .pool("io"),
        )
        .unwrap();
        let infos = infos.lock().unwrap();
        assert_eq!(
            *infos,
            [(
                Some("a\0name with a NUL".to_string()),
                Priority::Low,
                "io".to_string(),
                file!().to_string(),
                line,
            )]
        );
    });
}

#[test]
fn a_panicking_hook_is_contained_and_the_task_still_runs() {
    watchdog(60, || {
        let terminated = Arc::new(AtomicUsize::new(0));
        let count = terminated.clone();
        let rt = Runtime::builder()
            .workers(1)
            .on_task_spawn(|_| panic!("spawn hook"))
            .on_before_task_poll(|_| panic!("before hook"))
            .on_after_task_poll(|_| panic!("after hook"))
            .on_task_panic(|_, _| panic!("panic hook"))
            .on_task_terminate(move |_, _| {
                count.fetch_add(1, Ordering::SeqCst);
                panic!("terminate hook")
            })
            .build()
            .unwrap();
        assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
        assert!(rt
            .block_on(rt.spawn(async { panic!("task") }))
            .unwrap_err()
            .is_panic());
        drop(rt);
        assert_eq!(terminated.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn the_panic_hook_sees_detached_panics_with_their_message() {
    watchdog(60, || {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rt = Runtime::builder()
            .workers(1)
            .on_task_panic(move |task, message| {
                let _ = tx
                    .lock()
                    .unwrap()
                    .send((task.name().map(String::from), message.to_string()));
            })
            .build()
            .unwrap();
        let code = 42;
        rt.spawn(async move { panic!("failed with {code}") })
            .name("detached")
            .detach();
        assert_eq!(
            rx.recv().unwrap(),
            (Some("detached".to_string()), "failed with 42".to_string())
        );
        // The runtime goes on (the default policy is `Ignore`).
        assert_eq!(rt.block_on(rt.spawn(async { 1 })).unwrap(), 1);
    });
}

#[test]
// The policy cancels the rest on a background thread, which may still be
// finishing when the test process exits; miri reports that as an error.
#[cfg_attr(miri, ignore = "the background shutdown thread can outlive the test")]
fn shutdown_runtime_policy_shuts_down_on_the_first_panic() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .unhandled_panic(UnhandledPanic::ShutdownRuntime)
            .build()
            .unwrap();
        // Some tasks are idle when the panic happens.
        let (polled_tx, polled) = mpsc::channel();
        let idle: Vec<_> = (0..10)
            .map(|_| {
                let polled_tx = polled_tx.clone();
                rt.spawn(async move {
                    polled_tx.send(()).unwrap();
                    std::future::pending::<()>().await
                })
                .start()
            })
            .collect();
        for _ in 0..10 {
            polled.recv().unwrap();
        }
        assert!(!rt.handle().is_shutdown());
        let panicked = rt.spawn(async { panic!("fatal") }).start();
        assert!(multipool::block_on(panicked).unwrap_err().is_panic());
        for task in idle {
            assert!(multipool::block_on(task).unwrap_err().is_shutdown());
        }
        assert!(rt.handle().is_shutdown());
        let late = multipool::block_on(rt.spawn(async {})).unwrap_err();
        assert!(late.is_shutdown());
        // Dropping the runtime after it shut itself down is fine.
        drop(rt);
    });
}

#[test]
fn ignore_policy_keeps_the_runtime_serving() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .unhandled_panic(UnhandledPanic::Ignore)
            .build()
            .unwrap();
        for _ in 0..10 {
            assert!(rt
                .block_on(rt.spawn(async { panic!("again") }))
                .unwrap_err()
                .is_panic());
        }
        assert!(!rt.handle().is_shutdown());
        assert_eq!(rt.handle().metrics().panicked_count(), 10);
    });
}

#[test]
#[cfg_attr(miri, ignore = "real-time sampling by the monitor thread")]
fn a_slow_poll_is_reported_while_it_still_runs() {
    for workers in [1, 2] {
        // With one worker (a fixed pool) and with an elastic pool.
        watchdog(60, move || {
            let (tx, rx) = mpsc::channel();
            let tx = Mutex::new(tx);
            let builder = Runtime::builder().on_slow_poll(Duration::from_millis(5), move |slow| {
                let _ = tx.lock().unwrap().send((
                    slow.id(),
                    slow.name().map(String::from),
                    slow.priority(),
                    slow.pool().to_string(),
                    slow.elapsed(),
                ));
            });
            let builder = if workers == 1 {
                builder.workers(1)
            } else {
                builder.min_workers(1).max_workers(2)
            };
            let rt = builder.build().unwrap();
            let gate = Gate::default();
            let inside = gate.clone();
            let task = rt
                .spawn(async move { inside.wait() })
                .name("stuck")
                .priority(Priority::High)
                .start();
            let id = task.id();
            // The report arrives while the gate is still closed: the task is
            // still inside its poll.
            let (reported_id, name, priority, pool, elapsed) = rx.recv().unwrap();
            assert!(!task.is_finished());
            assert_eq!(reported_id, id);
            assert_eq!(name.as_deref(), Some("stuck"));
            assert_eq!(priority, Priority::High);
            assert_eq!(pool, "default");
            assert!(elapsed >= Duration::from_millis(5));
            gate.open();
            multipool::block_on(task).unwrap();
            // Reported once per slow poll.
            drop(rt);
            assert!(rx.try_recv().is_err());
        });
    }
}

#[test]
fn a_zero_slow_poll_threshold_is_rejected() {
    let err = Runtime::builder()
        .on_slow_poll(Duration::ZERO, |_| {})
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("on_slow_poll"));
    // The longest threshold is accepted: no poll is ever that slow.
    let rt = Runtime::builder()
        .workers(1)
        .on_slow_poll(Duration::MAX, |_| panic!("never"))
        .build()
        .unwrap();
    assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
}

#[test]
fn poll_hooks_see_latency_with_histograms_on() {
    watchdog(60, || {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let rt = Runtime::builder()
            .workers(1)
            .enable_latency_histograms()
            .latency_sampling(1)
            .on_after_task_poll(move |task| {
                log.lock()
                    .unwrap()
                    .push((task.schedule_latency(), task.poll_time()))
            })
            .build()
            .unwrap();
        rt.block_on(rt.spawn(async {})).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].0.is_some() && seen[0].1.is_some());
    });
}

#[test]
fn each_retry_attempt_is_a_task_the_hooks_see() {
    use multipool::task::backoff::ConstantBuilder;

    watchdog(60, || {
        let names = Arc::new(Mutex::new(Vec::new()));
        let seen = names.clone();
        let rt = Runtime::builder()
            .workers(1)
            .on_task_spawn(move |task| seen.lock().unwrap().push(task.name().map(String::from)))
            .build()
            .unwrap();
        let tries = Arc::new(AtomicUsize::new(0));
        let counter = tries.clone();
        let result = rt.block_on(
            multipool::task::retry(move || {
                let attempt = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        Err("not yet")
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .backoff(
                ConstantBuilder::default()
                    .with_delay(Duration::ZERO)
                    .with_max_times(5),
            )
            .name("fetch"),
        );
        assert_eq!(result.unwrap(), 2);
        assert_eq!(
            *names.lock().unwrap(),
            [
                Some("fetch attempt 1".to_string()),
                Some("fetch attempt 2".to_string()),
                Some("fetch attempt 3".to_string()),
            ]
        );
    });
}
