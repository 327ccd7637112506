//! A probe of the hot path for callgrind: one workload per run, shaped
//! like `benches/rt_multi_threaded.rs` and `benches/time.rs`'s
//! timer_churn, with the time-based stalls replaced by fixed yields so
//! instruction counts are comparable between two builds.
//!
//! ```sh
//! cargo build --release --example hotpath_probe
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/hotpath_probe yield 3
//! ```
//!
//! Workloads: `local`, `intask`, `remote`, `busy1`, `busy2`, `yield`, `pingpong`,
//! `chain`, `churn`, `blockon`; the second argument is the number of
//! repetitions (default 3). With `ZZ_HIST` set in the environment the
//! runtime records latency histograms; `ZZ_WORKERS` sets the number of
//! workers (default 2), `ZZ_SPIN_US` the `search_spin` in microseconds
//! (default 0, not the builder's 15: a worker that looks for work until a
//! time passes runs a number of instructions that depends on the clock).
//! (`busy1` and `busy2` keep tasks
//! spinning for as long as the measured work runs, so their counts depend
//! on timing.)
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures::channel::oneshot;

fn main() {
    let which = std::env::args()
        .nth(1)
        .expect("usage: hotpath_probe <workload> [repetitions]");
    // `ZZ_WORKERS=1` (with no spin, the default here) makes the counts
    // repeatable to the instruction (no steals, no wake-ups between
    // workers), for comparing code paths.
    let workers = std::env::var("ZZ_WORKERS").map_or(2, |w| w.parse().unwrap());
    let mut builder = multipool::Runtime::builder().workers(workers);
    if std::env::var_os("ZZ_HIST").is_some() {
        builder = builder.enable_latency_histograms();
    }
    let spin_us = std::env::var("ZZ_SPIN_US").map_or(0, |us| us.parse().unwrap());
    builder = builder.search_spin(Duration::from_micros(spin_us));
    let rt = builder.build().unwrap();
    let reps: usize = std::env::args().nth(2).map_or(3, |s| s.parse().unwrap());
    for _ in 0..reps {
        match which.as_str() {
            "local" => {
                let (tx, rx) = mpsc::sync_channel(1000);
                let rem = Arc::new(AtomicUsize::new(10_000));
                rt.block_on(async {
                    spawn_countdown(&tx, &rem);
                    rx.recv().unwrap();
                });
            }
            "intask" => {
                // As spawn_many_in_task: 10 000 spawns from inside a task
                // (local to its worker), the last to finish signals.
                let (tx, rx) = mpsc::sync_channel(1000);
                let rem = Arc::new(AtomicUsize::new(10_000));
                rt.spawn(async move { spawn_countdown(&tx, &rem) }).detach();
                rx.recv().unwrap();
            }
            "remote" | "busy1" | "busy2" => {
                let flag = Arc::new(AtomicBool::new(true));
                if which == "busy1" {
                    for _ in 0..4 {
                        let flag = flag.clone();
                        rt.spawn(async move {
                            while flag.load(Relaxed) {
                                multipool::task::yield_now().await;
                            }
                        })
                        .detach();
                    }
                }
                if which == "busy2" {
                    fn iter(flag: Arc<AtomicBool>) {
                        multipool::spawn(async move {
                            if flag.load(Relaxed) {
                                iter(flag);
                            }
                        })
                        .detach();
                    }
                    for _ in 0..2 {
                        let flag = flag.clone();
                        rt.spawn(async move { iter(flag) }).detach();
                    }
                }
                let n = if which == "busy2" { 1_000 } else { 10_000 };
                let handles: Vec<_> = (0..n).map(|_| rt.spawn(async {}).start()).collect();
                rt.block_on(async {
                    for h in handles {
                        h.await.unwrap();
                    }
                });
                flag.store(false, Relaxed);
            }
            "yield" => {
                let (tx, rx) = mpsc::sync_channel(200);
                for _ in 0..200 {
                    let tx = tx.clone();
                    rt.spawn(async move {
                        for _ in 0..1_000 {
                            multipool::task::yield_now().await;
                        }
                        tx.send(()).unwrap();
                    })
                    .detach();
                }
                for _ in 0..200 {
                    rx.recv().unwrap();
                }
            }
            "pingpong" => {
                let (done_tx, done_rx) = mpsc::sync_channel(1000);
                let rem = Arc::new(AtomicUsize::new(1_000));
                rt.block_on(async {
                    multipool::spawn(async move {
                        for _ in 0..1_000 {
                            let rem = rem.clone();
                            let done_tx = done_tx.clone();
                            multipool::spawn(async move {
                                let (tx1, rx1) = oneshot::channel::<()>();
                                let (tx2, rx2) = oneshot::channel::<()>();
                                multipool::spawn(async move {
                                    rx1.await.unwrap();
                                    tx2.send(()).unwrap();
                                })
                                .detach();
                                tx1.send(()).unwrap();
                                rx2.await.unwrap();
                                if 1 == rem.fetch_sub(1, Relaxed) {
                                    done_tx.send(()).unwrap();
                                }
                            })
                            .detach();
                        }
                    })
                    .detach();
                    done_rx.recv().unwrap();
                });
            }
            "chain" => {
                fn iter(done_tx: mpsc::SyncSender<()>, n: usize) {
                    if n == 0 {
                        done_tx.send(()).unwrap();
                    } else {
                        multipool::spawn(async move { iter(done_tx, n - 1) }).detach();
                    }
                }
                let (done_tx, done_rx) = mpsc::sync_channel(1000);
                rt.block_on(async {
                    multipool::spawn(async move { iter(done_tx, 1_000) }).detach();
                    done_rx.recv().unwrap();
                });
            }
            "churn" => {
                // As benches/time.rs's timer_churn: spawned from inside a
                // task, each a 10 s timeout around one yield, all awaited.
                let n = 20_000;
                rt.block_on(rt.spawn(async move {
                    let handles: Vec<_> = (0..n)
                        .map(|_| {
                            multipool::spawn(async {
                                multipool::time::timeout(
                                    Duration::from_secs(10),
                                    multipool::task::yield_now(),
                                )
                                .await
                                .unwrap();
                            })
                            .start()
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                }))
                .unwrap();
            }
            "blockon" => {
                // block_on of a ready future, many times: the cost of a
                // `Runtime::block_on` poll itself.
                let mut sum = 0u64;
                for i in 0..100_000u64 {
                    sum += rt.block_on(async move { i });
                }
                std::hint::black_box(sum);
            }
            other => panic!("unknown workload {other}"),
        }
    }
}

/// 10 000 detached spawns on the current runtime, each counting down
/// `rem`; the last to run signals `tx` (as `benches/rt_multi_threaded.rs`).
fn spawn_countdown(tx: &mpsc::SyncSender<()>, rem: &Arc<AtomicUsize>) {
    for _ in 0..10_000 {
        let tx = tx.clone();
        let rem = rem.clone();
        multipool::spawn(async move {
            if 1 == rem.fetch_sub(1, Relaxed) {
                tx.send(()).unwrap();
            }
        })
        .detach();
    }
}
