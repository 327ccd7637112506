//! Bytes per pending task and per pending timer: multipool next to tokio
//! and smol (issue #15).
//!
//! ```sh
//! cargo run --release --example memory_per_task            # 1 000 000 each
//! cargo run --release --example memory_per_task -- 200000  # fewer
//! ```
//!
//! Each measurement runs in a process of its own (this example starts
//! itself again), so memory one runtime freed cannot make the next look
//! smaller. In it: a runtime with 2 workers; the resident set size
//! (`VmRSS` in `/proc/self/status`) once the runtime is up; then `count`
//! tasks spawned from outside the runtime, each
//!
//! * `tasks`: awaiting a `futures` oneshot whose sender the main thread
//!   keeps (the same channel for every runtime, so its bytes count alike);
//! * `timers`: sleeping for an hour on the runtime's own timer
//!   (`multipool::time::sleep`, `tokio::time::sleep`, `smol::Timer`);
//!
//! and the resident set size again once every task has been polled once
//! (each counts itself in its first poll, before it waits). Bytes per item
//! = the difference / `count`. It includes the allocator's own overhead
//! per allocation (glibc's here), as a user would see it. Linux only.

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;

const RUNTIMES: [&str; 3] = ["multipool", "tokio", "smol"];
const KINDS: [&str; 2] = ["tasks", "timers"];
const HOUR: Duration = Duration::from_secs(3600);

/// One pending item's future.
type Item = Pin<Box<dyn Future<Output = ()> + Send>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let count = args[3].parse().expect("a count");
        child(&args[1], &args[2], count);
        return;
    }
    let count: usize = args
        .first()
        .map_or(1_000_000, |n| n.parse().expect("a count"));
    let exe = std::env::current_exe().expect("the example's own path");
    println!("{count} pending items each, 2 workers, bytes per item (RSS delta / count):");
    println!("| runtime | per task (awaiting a oneshot) | per task with a timer (1 h sleep) |");
    println!("|---|---|---|");
    for runtime in RUNTIMES {
        let mut row = format!("| {runtime} |");
        for kind in KINDS {
            let output = Command::new(&exe)
                .args(["child", runtime, kind, &count.to_string()])
                .output()
                .expect("the child process starts");
            assert!(
                output.status.success(),
                "{runtime} {kind} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let bytes: f64 = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .expect("the child prints bytes per item");
            row += &format!(" {bytes:.0} |");
        }
        println!("{row}");
    }
}

/// The resident set size of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux's /proc");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Waits until `started` reaches `count` (each task counts itself in its
/// first poll).
fn wait_for(started: &AtomicUsize, count: usize) {
    while started.load(Ordering::SeqCst) < count {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pending future of one item, and what keeps it pending.
fn item(
    kind: &str,
    started: &Arc<AtomicUsize>,
    sleep: impl FnOnce() -> Item,
) -> (Item, Option<oneshot::Sender<()>>) {
    let started = started.clone();
    match kind {
        "tasks" => {
            let (tx, rx) = oneshot::channel::<()>();
            let future = Box::pin(async move {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = rx.await;
            });
            (future, Some(tx))
        }
        _ => {
            let sleep = sleep();
            let future = Box::pin(async move {
                started.fetch_add(1, Ordering::SeqCst);
                sleep.await;
            });
            (future, None)
        }
    }
}

/// Spawns `count` items with `spawn` once `before` was taken; prints the
/// bytes per item.
fn measure(kind: &str, count: usize, mut spawn: impl FnMut(Item), sleep: impl Fn() -> Item) {
    let started = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(count);
    let before = rss();
    for _ in 0..count {
        let (future, sender) = item(kind, &started, &sleep);
        spawn(future);
        senders.extend(sender);
    }
    wait_for(&started, count);
    let after = rss();
    println!("{}", after.saturating_sub(before) as f64 / count as f64);
    // Leave without tearing a million tasks down: the process ends.
    std::process::exit(0);
}

fn child(runtime: &str, kind: &str, count: usize) {
    match runtime {
        "multipool" => {
            let rt = multipool::Runtime::builder().workers(2).build().unwrap();
            let handle = rt.handle().clone();
            measure(
                kind,
                count,
                |future| handle.spawn(future).detach(),
                || Box::pin(multipool::time::sleep(HOUR)),
            );
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let handle = rt.handle().clone();
            let sleeper = handle.clone();
            measure(
                kind,
                count,
                |future| drop(handle.spawn(future)),
                // A tokio sleep must be made inside the runtime's context.
                move || {
                    let _enter = sleeper.enter();
                    Box::pin(tokio::time::sleep(HOUR))
                },
            );
        }
        "smol" => {
            let executor = Arc::new(smol::Executor::new());
            for _ in 0..2 {
                let executor = executor.clone();
                std::thread::spawn(move || {
                    smol::block_on(executor.run(std::future::pending::<()>()))
                });
            }
            let spawner = executor.clone();
            measure(
                kind,
                count,
                |future| spawner.spawn(future).detach(),
                || {
                    Box::pin(async {
                        smol::Timer::after(HOUR).await;
                    })
                },
            );
        }
        other => panic!("unknown runtime {other}"),
    }
}
