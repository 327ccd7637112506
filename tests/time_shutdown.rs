//! Timers racing runtime shutdown: dropping a runtime while a thousand
//! tasks sleep, or while their timers are firing, cancels every task that
//! has not finished (its handle says shutdown), drops every future exactly
//! once and leaves no timer behind. A timer that outlives its runtime says
//! so when polled.
//!
//! Real time: the outcome holds whatever the interleaving. Everything runs
//! under a watchdog.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
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

/// A `Sleep` registered from `block_on` keeps only its wheel alive, not the
/// runtime. Polled after the runtime is gone, off its workers, it panics
/// and says why, since nothing will ever fire it. Dropped afterwards, it
/// removes itself from the wheel that outlived the runtime.
#[test]
fn a_sleep_that_outlives_its_runtime_says_so_and_drops_cleanly() {
    watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let mut sleep = sleep(Duration::from_secs(3600));
        // Registered at its first poll, in the runtime `block_on` entered.
        rt.block_on(async {
            assert!(futures::poll!(&mut sleep).is_pending(), "registered");
        });
        drop(rt);
        assert!(!sleep.is_elapsed());
        let waker = futures::task::noop_waker();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Pin::new(&mut sleep).poll(&mut Context::from_waker(&waker))
        }));
        let payload = polled.expect_err("a timer of a dropped runtime cannot complete");
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            message.contains("polled after its runtime shut down"),
            "{message}"
        );
        drop(sleep);
    });
}
