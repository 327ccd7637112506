//! Behaviour of `#[multipool::main]` and `#[multipool::test]` at run time.
//! The compile errors are covered by `tests/macros_ui.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A crate that re-exports multipool under another name, as a facade crate
/// would.
mod reexport {
    pub use multipool as mp;
}

#[multipool::test]
async fn spawned_tasks_run_and_can_be_awaited() {
    let counter = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..32_usize {
        let counter = Arc::clone(&counter);
        handles.push(multipool::spawn(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            i * 2
        }));
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.expect("task failed");
    }
    assert_eq!(sum, (0..32).map(|i| i * 2).sum::<usize>());
    assert_eq!(counter.load(Ordering::SeqCst), 32);
}

#[multipool::test]
async fn the_body_runs_inside_a_runtime_with_default_workers() {
    let handle = multipool::Handle::try_current().expect("the body must run inside the runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(handle.metrics().num_workers(), cores);
    // The body itself runs on the test thread, not on a worker.
    assert_eq!(multipool::worker_index(), None);
}

#[multipool::test(workers = 1)]
async fn workers_option_sets_the_number_of_workers() {
    assert_eq!(multipool::Handle::current().metrics().num_workers(), 1);
    let mut handles = Vec::new();
    for _ in 0..16 {
        handles.push(
            multipool::spawn(async {
                let workers = multipool::Handle::try_current().map(|h| h.metrics().num_workers());
                (workers.ok(), multipool::worker_index())
            })
            .start(),
        );
    }
    for handle in handles {
        let (workers, index) = handle.await.expect("task failed");
        assert_eq!(workers, Some(1), "tasks run on the test's runtime");
        assert_eq!(index, Some(0), "the only worker has index 0");
    }
}

#[multipool::test]
async fn test_can_return_a_result() -> Result<(), String> {
    let n: u32 = "21".parse().map_err(|e| format!("{e}"))?;
    let doubled = multipool::spawn(async move { n * 2 })
        .await
        .map_err(|e| e.to_string())?;
    if doubled != 42 {
        return Err(format!("expected 42, got {doubled}"));
    }
    Ok(())
}

#[multipool::test]
#[should_panic(expected = "boom")]
async fn a_panic_in_the_body_fails_the_test() {
    panic!("boom");
}

#[multipool::test(crate = "reexport::mp")]
async fn crate_option_names_a_reexport() {
    let value = reexport::mp::spawn(async { 7 }).await.expect("task failed");
    assert_eq!(value, 7);
}

// The attribute itself can be reached through the re-export too.
#[reexport::mp::test(crate = "reexport::mp", workers = 2)]
async fn attribute_through_a_reexport() {
    assert_eq!(reexport::mp::spawn(async { 1 }).await.ok(), Some(1));
}

#[multipool::test]
async fn inner_attributes_are_kept() {
    #![allow(unused_variables)]
    let unused = 1;
}

#[multipool::test]
#[ignore = "checks that other attributes are kept: this test must not run"]
async fn other_attributes_are_kept() {
    panic!("an #[ignore]d test ran");
}

// `start_paused` needs multipool's `test-util` feature (on in CI, which
// runs this file with `--all-features`).
#[cfg(feature = "test-util")]
#[multipool::test(start_paused = true)]
async fn start_paused_starts_with_the_clock_paused() {
    let start = multipool::time::now();
    multipool::time::sleep(std::time::Duration::from_secs(3600)).await;
    assert_eq!(
        multipool::time::now() - start,
        std::time::Duration::from_secs(3600)
    );
}

#[cfg(feature = "test-util")]
#[multipool::main(workers = 1, start_paused = true)]
async fn slept_on_a_paused_main(secs: u64) -> std::time::Duration {
    let start = multipool::time::now();
    multipool::time::sleep(std::time::Duration::from_secs(secs)).await;
    multipool::time::now() - start
}

#[cfg(feature = "test-util")]
#[test]
fn main_accepts_start_paused() {
    assert_eq!(
        slept_on_a_paused_main(86_400),
        std::time::Duration::from_secs(86_400)
    );
}

/// `main` also works on an ordinary function with arguments: they are moved
/// into the `async` body, which runs on its own runtime.
#[multipool::main(workers = 2)]
async fn add_on_a_runtime(a: u64, b: String) -> u64 {
    let b: u64 = b.parse().expect("not a number");
    multipool::spawn(async move { a + b })
        .await
        .expect("task failed")
}

#[test]
fn main_on_a_function_with_arguments() {
    assert_eq!(add_on_a_runtime(40, "2".to_owned()), 42);
    // Each call builds and shuts down its own runtime.
    assert_eq!(add_on_a_runtime(1, "1".to_owned()), 2);
}

#[multipool::main]
async fn early_return(flag: bool) -> &'static str {
    if flag {
        return "early";
    }
    "late"
}

#[test]
fn return_in_the_body_returns_from_the_function() {
    assert_eq!(early_return(true), "early");
    assert_eq!(early_return(false), "late");
}
