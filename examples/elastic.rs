//! An elastic pool sizing itself to its load: it grows past workers that
//! block, then shrinks back after its idle timeout.
//!
//! ```sh
//! cargo run --release --example elastic
//! ```

use std::time::{Duration, Instant};

fn main() {
    let rt = multipool::Runtime::builder()
        .min_workers(1)
        .max_workers(4)
        .idle_timeout(Duration::from_millis(200))
        .on_thread_start(|| println!("  + worker {:?} started", multipool::worker_index()))
        .on_thread_stop(|| println!("  - worker {:?} stopped", multipool::worker_index()))
        .build()
        .expect("valid configuration");
    let handle = rt.handle();
    println!(
        "built: {} worker(s), at most {}",
        handle.metrics().num_workers(),
        handle.metrics().max_workers()
    );

    // Three tasks that block their worker for 100 ms each (a synchronous
    // call in async code), and work that must not wait behind them.
    let start = Instant::now();
    let blockers: Vec<_> = (0..3)
        .map(|_| {
            rt.spawn(async { std::thread::sleep(Duration::from_millis(100)) })
                .start()
        })
        .collect();
    let quick = rt.spawn(async { "quick task done" }).start();
    println!(
        "{} after {:?}",
        rt.block_on(quick).unwrap(),
        start.elapsed()
    );
    for blocker in blockers {
        rt.block_on(blocker).unwrap();
    }
    println!(
        "blocking tasks done after {:?}; workers: {}, started so far: {}",
        start.elapsed(),
        handle.metrics().num_workers(),
        handle.metrics().workers_started()
    );

    // Idle: the extra workers retire after the idle timeout.
    while handle.metrics().num_workers() > handle.metrics().min_workers() {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "idle again: {} worker(s); {} retired",
        handle.metrics().num_workers(),
        handle.metrics().workers_retired()
    );
}
