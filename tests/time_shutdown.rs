//! Timers racing runtime shutdown: dropping a runtime while a thousand
//! tasks sleep, or while their timers are firing, cancels every task that
//! has not finished (its handle says shutdown), drops every future exactly
//! once and leaves no timer behind.
//!
//! Real time: the outcome holds whatever the interleaving. Everything runs
//! under a watchdog.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::time::{ms, Xorshift64};
use common::{watchdog, DropCounter};
use multipool::time::sleep;
use multipool::Runtime;

#[test]
fn dropping_the_runtime_while_1000_tasks_sleep() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut rng = Xorshift64(0x9e37_79b9_7f4a_7c15);
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                // An hour or more: no timer can fire before the drop.
                let duration = Duration::from_secs(3600) + ms(rng.below(60_000));
                let guard = DropCounter(dropped.clone());
                rt.spawn(async move {
                    let _guard = guard;
                    sleep(duration).await;
                })
                .start()
            })
            .collect();
        while handle.metrics().num_timers() < 1000 {
            thread::yield_now();
        }
        drop(rt);
        for task in tasks {
            let err = multipool::block_on(task).unwrap_err();
            assert!(err.is_shutdown(), "{err:?}");
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1000);
        assert_eq!(handle.metrics().num_timers(), 0);
    });
}

#[test]
fn dropping_the_runtime_while_timers_are_firing() {
    watchdog(60, || {
        let mut rng = Xorshift64(0xdead_beef_cafe_f00d);
        for _ in 0..5 {
            let rt = Runtime::builder().workers(2).build().unwrap();
            let handle = rt.handle();
            let dropped = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    let duration = Duration::from_micros(rng.below(3000));
                    let guard = DropCounter(dropped.clone());
                    rt.spawn(async move {
                        let _guard = guard;
                        sleep(duration).await;
                    })
                    .start()
                })
                .collect();
            thread::sleep(Duration::from_micros(rng.below(2000)));
            drop(rt);
            for task in tasks {
                if let Err(err) = multipool::block_on(task) {
                    assert!(err.is_shutdown(), "{err:?}");
                }
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 1000);
            assert_eq!(handle.metrics().num_timers(), 0);
        }
    });
}
