//! tokio's `time` API where multipool mirrors it (issue #16): the
//! runtime-clock `Instant`, `Interval::reset_*`, an interval that does not
//! wake its task between ticks, `advance` as an `async fn`, `pause` and
//! `resume` that panic when misused, the `time::error::Elapsed` and
//! `time::Duration` paths, and an unwind-safe `Runtime`.

mod common;

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use common::time::{ms, paused_runtime};
use common::watchdog;
use multipool::time::{self, advance, interval, pause, resume, sleep, Duration, Instant};
use multipool::{Handle, Runtime};

/// Counts wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn instant_now_reads_the_paused_clock() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let start = Instant::now();
            let std_start = std::time::Instant::now();
            sleep(Duration::from_secs(3600)).await;
            assert_eq!(start.elapsed(), Duration::from_secs(3600));
            assert_eq!(Instant::now() - start, Duration::from_secs(3600));
            // std's clock did not move an hour: the difference tokio users
            // rely on when they port code to paused time.
            assert!(std_start.elapsed() < Duration::from_secs(3600));
            // Conversions both ways, and deadlines of either kind.
            let deadline = Instant::now() + ms(5);
            time::sleep_until(deadline).await;
            assert_eq!(Instant::now(), deadline);
            time::sleep_until(deadline.into_std() + ms(5)).await;
            assert_eq!(Instant::now(), deadline + ms(5));
            assert_eq!(Instant::from_std(deadline.into_std()), deadline);
            assert_eq!(start.checked_duration_since(Instant::now()), None);
            assert_eq!(
                start.saturating_duration_since(Instant::now()),
                Duration::ZERO
            );
            assert!(start.checked_sub(Duration::MAX).is_none());
        });
    });
}

#[test]
fn interval_resets_as_tokio_defines_them() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let start = Instant::now();
            let mut ticks = interval(ms(100));
            ticks.tick().await; // immediate
            ticks.reset_after(ms(30));
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(30));
            ticks.reset_at(start + ms(50));
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(50));
            ticks.reset_immediately();
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(50));
            ticks.reset();
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(150));
            // After a reset the period goes on from the new tick.
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(250));
            // Bad input: a reset that overflows `Instant` is a tick that
            // never comes (thirty years, as `sleep(Duration::MAX)`), not a
            // panic; a later reset brings the schedule back.
            ticks.reset_after(Duration::MAX);
            assert!(futures::poll!(std::pin::pin!(ticks.tick())).is_pending());
            ticks.reset_at(start + ms(300));
            ticks.tick().await;
            assert_eq!(start.elapsed(), ms(300));
        });
    });
}

/// tokio's `Interval` leaves nothing armed once a tick was returned: a task
/// that stops polling it is not woken at the next tick. multipool used to
/// re-arm the timer in place with the last waker: one spurious wake-up per
/// period.
#[test]
fn a_ticked_interval_does_not_wake_its_task_again() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let counter = Arc::new(CountingWaker::default());
            let waker = Waker::from(counter.clone());
            let mut cx = Context::from_waker(&waker);
            let mut ticks = interval(ms(5));
            assert!(ticks.poll_tick(&mut cx).is_ready()); // at once
            assert!(ticks.poll_tick(&mut cx).is_pending()); // armed, 5 ms
            advance(ms(5)).await;
            assert_eq!(counter.0.load(Ordering::SeqCst), 1);
            assert!(ticks.poll_tick(&mut cx).is_ready());
            assert_eq!(
                Handle::current().metrics().num_timers(),
                0,
                "left in the wheel"
            );
            // Six periods pass without a poll: nobody is woken.
            advance(ms(30)).await;
            assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken between ticks");
            // Polled again, it ticks (the missed ticks burst, as before).
            assert!(ticks.poll_tick(&mut cx).is_ready());
        });
    });
}

/// As in tokio, `advance` is an `async fn`: the clock moves when the future
/// is first polled, not when it is created.
#[test]
fn advance_moves_the_clock_when_awaited() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let start = Instant::now();
            let pending = advance(Duration::from_secs(10));
            assert_eq!(start.elapsed(), Duration::ZERO);
            pending.await;
            assert_eq!(start.elapsed(), Duration::from_secs(10));
            // A future never polled moves nothing.
            drop(advance(Duration::from_secs(10)));
            assert_eq!(start.elapsed(), Duration::from_secs(10));
        });
    });
}

#[test]
fn pausing_twice_or_resuming_real_time_panics_as_in_tokio() {
    watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let _enter = rt.handle().enter();
        let resumed = catch_unwind(resume).unwrap_err();
        assert!(
            resumed
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("not paused")),
            "{:?}",
            resumed.downcast_ref::<&str>()
        );
        pause();
        let paused = catch_unwind(pause).unwrap_err();
        assert!(paused
            .downcast_ref::<&str>()
            .is_some_and(|m| m.contains("already paused")));
        // The failed calls changed nothing: still paused, and resumable.
        resume();
        pause();
        resume();
    });
}

#[test]
fn elapsed_and_duration_live_at_tokios_paths() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        let result: Result<(), time::error::Elapsed> = rt.block_on(time::timeout(
            time::Duration::from_millis(1),
            std::future::pending::<()>(),
        ));
        let error = result.unwrap_err();
        let _: multipool::time::Elapsed = error;
    });
}

/// `Runtime` and `Handle` are unwind-safe, as tokio's are: they can be
/// used inside `catch_unwind` without `AssertUnwindSafe`.
#[test]
fn runtime_and_handle_are_unwind_safe() {
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>(_: &T) {}
    let rt = Runtime::builder().workers(1).build().unwrap();
    unwind_safe(&rt);
    unwind_safe(&rt.handle());
    let seven = catch_unwind(|| rt.block_on(async { 7 })).unwrap();
    assert_eq!(seven, 7);
    // A panic inside `block_on` leaves the runtime serving.
    assert!(catch_unwind(|| rt.block_on(async { panic!("in block_on") })).is_err());
    assert_eq!(rt.block_on(rt.spawn(async { 8 })).unwrap(), 8);
}

/// A documented difference: `MissedTickBehavior::Delay` restarts the
/// schedule only when a whole period was missed. tokio restarts it for any
/// tick observed more than 5 ms late, which would make the second tick
/// here 250 ms, not 200 ms.
#[test]
fn interval_delay_restarts_only_after_a_whole_missed_period() {
    watchdog(30, || {
        let rt = paused_runtime(1);
        rt.block_on(async {
            let start = Instant::now();
            let mut ticks = interval(ms(100));
            ticks.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
            ticks.tick().await;
            advance(ms(150)).await; // the tick due at 100 ms is 50 ms late
            assert_eq!(ticks.tick().await, (start + ms(100)).into_std());
            assert_eq!(ticks.tick().await, (start + ms(200)).into_std());
            assert_eq!(start.elapsed(), ms(200));
        });
    });
}
