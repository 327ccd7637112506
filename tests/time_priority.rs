//! Priority of timer wake-ups: a High task woken by a timer runs before Low
//! work already queued, whether the timer fires from outside the worker
//! (paused time, through the High injector) or on the worker's own wheel
//! between polls (real time).
//!
//! Everything runs under a watchdog, so a lost wake-up fails instead of
//! hanging.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::time::{ms, paused_runtime};
use common::watchdog;
use multipool::time::{advance, now, sleep};
use multipool::{Handle, Priority, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Low(usize, usize),
    High,
}

/// One worker kept busy by four Low tasks that log and yield. While Low task
/// 0 is inside its poll, the test advances paused time by 1 ms, which fires
/// the High task's timer (from outside the worker, so the wake-up goes
/// through the High injector). The next poll after Low task 0's must be the
/// High task, ahead of the Low tasks already queued.
#[test]
fn high_task_woken_by_a_timer_runs_before_queued_low_work() {
    const ROUNDS: usize = 20;
    const TRIGGER: usize = 5;
    let log = watchdog(30, || {
        let rt = paused_runtime(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let (advanced_tx, advanced_rx) = mpsc::channel::<()>();
        let l = log.clone();
        let slept = rt.block_on(async move {
            let start = now();
            let log = l;
            let l = log.clone();
            let high = multipool::spawn(async move {
                sleep(ms(1)).await;
                l.lock().unwrap().push(Entry::High);
                now() - start
            })
            .priority(Priority::High)
            .start();
            // The High task has run and is waiting on its timer. This
            // `block_on` poll goes on until after the advance, so paused time
            // cannot move by itself meanwhile.
            while Handle::current().metrics().num_timers() == 0 {
                thread::yield_now();
            }
            let mut trigger = Some((ready_tx, advanced_rx));
            let lows: Vec<_> = (0..4)
                .map(|id| {
                    let log = log.clone();
                    let trigger = if id == 0 { trigger.take() } else { None };
                    multipool::spawn(async move {
                        for round in 0..ROUNDS {
                            log.lock().unwrap().push(Entry::Low(id, round));
                            if let (Some((ready, advanced)), TRIGGER) = (&trigger, round) {
                                ready.send(()).unwrap();
                                // Blocks the worker until the timer fired.
                                advanced.recv().unwrap();
                            }
                            multipool::task::yield_now().await;
                        }
                    })
                    .priority(Priority::Low)
                    .start()
                })
                .collect();
            ready_rx.recv().unwrap();
            // `advance` moves the clock at its first poll (as tokio's);
            // what is left to await after that is its yield.
            let mut yielded = std::pin::pin!(advance(ms(1)));
            assert!(futures::poll!(yielded.as_mut()).is_pending());
            advanced_tx.send(()).unwrap();
            yielded.await;
            for low in lows {
                low.await.unwrap();
            }
            high.await.unwrap()
        });
        assert_eq!(slept, ms(1));
        let log = log.lock().unwrap().clone();
        log
    });
    let trigger = log
        .iter()
        .position(|&e| e == Entry::Low(0, TRIGGER))
        .unwrap();
    assert_eq!(log[trigger + 1], Entry::High, "log: {log:?}");
    assert_eq!(log.len(), 4 * ROUNDS + 1);
    let lows_after = log[trigger + 2..]
        .iter()
        .filter(|e| matches!(e, Entry::Low(id, _) if *id != 0))
        .count();
    assert!(lows_after > 0, "Low work was queued when the timer fired");
}

/// Real time, one worker that never parks: the worker fires its own wheel
/// between polls, and the High task it wakes runs before the next Low poll.
/// Deterministic in outcome: whatever the machine's speed, at most two Low
/// polls may start after the deadline and still run before the High task:
/// the one whose tick checked the wheel just before the deadline, and one
/// fair-share turn of Low (1 tick in 64, see `fairness`) if the tick that
/// fires the timer is one.
#[test]
fn high_task_woken_by_its_workers_wheel_runs_before_queued_low_work() {
    let (log, deadline) = watchdog(30, || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (l, d) = (log.clone(), done.clone());
        let high = rt
            .spawn(async move {
                let timer = sleep(ms(1));
                let deadline = timer.deadline();
                timer.await;
                l.lock().unwrap().push((None, Instant::now()));
                d.store(true, Ordering::SeqCst);
                deadline
            })
            .priority(Priority::High)
            .start();
        let lows: Vec<_> = (0..4)
            .map(|id| {
                let (log, done) = (log.clone(), done.clone());
                rt.spawn(async move {
                    loop {
                        log.lock().unwrap().push((Some(id), Instant::now()));
                        if done.load(Ordering::SeqCst) {
                            break;
                        }
                        multipool::task::yield_now().await;
                    }
                })
                .priority(Priority::Low)
                .start()
            })
            .collect();
        let deadline = rt.block_on(high).unwrap();
        for low in lows {
            rt.block_on(low).unwrap();
        }
        let log = log.lock().unwrap().clone();
        (log, deadline)
    });
    let high = log.iter().position(|(id, _)| id.is_none()).unwrap();
    assert!(log[high].1 >= deadline);
    // A poll that started 2 µs after the deadline (a whole tick of the
    // wheel) was preceded by a check of the wheel that found it due, except
    // the two above: a check just before the deadline followed by a
    // preemption, and Low's fair-share turn taken before the High task.
    let late = log[..high]
        .iter()
        .filter(|(_, at)| *at >= deadline + Duration::from_micros(2))
        .count();
    assert!(late <= 2, "{late} Low polls started after the deadline");
}
