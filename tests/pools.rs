//! Named pools (`Builder::pool`): a flood in one pool leaves the others
//! untouched, a task (and the children it spawns) stays in its pool across
//! wake-ups, a pool limited to some priorities refuses the others, and an
//! unknown pool is a clear error.

mod common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{watchdog, Gate};
use multipool::{Priority, Runtime};

#[test]
fn pools_isolate_a_flood_in_one_from_the_other() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .pool("cpu", |pool| pool.workers(1))
            .pool("io", |pool| pool.workers(1))
            .build()
            .unwrap();
        let gate = Gate::default();
        let (started_tx, started_rx) = mpsc::channel();
        let g = gate.clone();
        // Occupy the only "cpu" worker, then queue a flood behind it.
        let hog = rt
            .spawn(async move {
                started_tx.send(()).unwrap();
                g.wait();
            })
            .pool("cpu")
            .start();
        started_rx.recv().unwrap();
        let flood: Vec<_> = (0..1000)
            .map(|i| rt.spawn(async move { i }).pool("cpu").start())
            .collect();
        // "io" (and the default pool) are untouched by it.
        let io = rt.block_on(
            rt.spawn(async { thread::current().name().unwrap().to_owned() })
                .pool("io"),
        );
        assert!(io.unwrap().starts_with("multipool-io-"));
        assert!(rt.block_on(rt.spawn(async { 1 })).is_ok());
        assert!(flood.iter().all(|task| !task.is_finished()));
        gate.open();
        multipool::block_on(hog).unwrap();
        for (i, task) in flood.into_iter().enumerate() {
            assert_eq!(multipool::block_on(task).unwrap(), i);
        }
    });
}

#[test]
fn a_task_stays_in_its_pool_across_wake_ups() {
    let rt = Runtime::builder()
        .workers(2)
        .pool("cpu", |pool| pool.workers(2).thread_name("cpu"))
        .build()
        .unwrap();
    let names = rt
        .block_on(
            rt.spawn(async {
                let mut names = HashSet::new();
                for i in 0..200u64 {
                    names.insert(thread::current().name().unwrap().to_owned());
                    if i % 2 == 0 {
                        multipool::task::yield_now().await;
                    } else {
                        multipool::time::sleep(Duration::from_micros(10)).await;
                    }
                }
                // A child spawned inside goes to the same pool.
                let child =
                    multipool::spawn(async { thread::current().name().unwrap().to_owned() })
                        .await
                        .unwrap();
                names.insert(child);
                names
            })
            .pool("cpu"),
        )
        .unwrap();
    assert!(
        names.iter().all(|name| name.starts_with("cpu-")),
        "{names:?}"
    );
}

#[test]
fn a_high_only_pool_serves_only_high_tasks() {
    let rt = Runtime::builder()
        .workers(1)
        .pool("urgent", |pool| {
            pool.workers(1).priorities([Priority::High])
        })
        .build()
        .unwrap();
    rt.block_on(async {
        let high = multipool::spawn(async { thread::current().name().unwrap().to_owned() })
            .priority(Priority::High)
            .pool("urgent")
            .await
            .unwrap();
        assert!(high.starts_with("multipool-urgent-"));
        for priority in [Priority::Normal, Priority::Low] {
            let err = multipool::spawn(async {})
                .priority(priority)
                .pool("urgent")
                .await
                .unwrap_err();
            assert!(err.is_rejected());
            assert!(err.to_string().contains("does not take"), "{err}");
            let err = multipool::spawn(async {})
                .priority(priority)
                .pool("urgent")
                .try_start()
                .unwrap_err();
            assert!(err.is_rejected());
        }
    });
}

#[test]
fn an_unknown_pool_is_a_clear_error_on_the_handle() {
    let rt = Runtime::builder()
        .workers(1)
        .pool("cpu", |pool| pool.workers(1))
        .build()
        .unwrap();
    let err = rt.block_on(rt.spawn(async {}).pool("gpu")).unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(
        err.to_string(),
        "task was rejected: the runtime has no pool named `gpu` (its pools: `default`, `cpu`)"
    );
    assert!(rt.handle().named_pool("gpu").is_none());
    assert_eq!(rt.handle().named_pool("cpu").unwrap().pool_name(), "cpu");
    assert_eq!(rt.handle().pool_name(), "default");
}
