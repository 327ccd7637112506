//! Spawns tasks at three priorities on a two-worker runtime and awaits them.
//!
//! Run with `cargo run --example hello`.

use std::time::Instant;

use multipool::Priority;

#[multipool::main(workers = 2)]
async fn main() {
    let start = Instant::now();
    let mut handles = Vec::new();
    for (i, priority) in Priority::ALL.into_iter().cycle().take(30_000).enumerate() {
        handles.push(
            multipool::spawn(async move {
                multipool::task::yield_now().await;
                (i as u64) * 2
            })
            .priority(priority)
            .start(),
        );
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.expect("task failed");
    }
    println!(
        "30000 tasks across {:?}: sum = {sum} in {:?}",
        Priority::ALL,
        start.elapsed()
    );

    let urgent = multipool::spawn(async { "health: ok" })
        .priority(Priority::High)
        .await
        .unwrap();
    println!("{urgent}");

    let stuck = multipool::spawn(std::future::pending::<()>())
        .name("stuck")
        .start();
    stuck.abort();
    let err = stuck.await.unwrap_err();
    println!("aborted task: {err}");

    let err = multipool::spawn(async { panic!("oops") })
        .await
        .unwrap_err();
    println!("panicking task: {err} (the worker survived)");
}
