//! multipool's tasks in tokio-console: a mixed workload of named tasks at
//! three priorities, with the `tracing` feature's task spans and waker
//! events sent to `console-subscriber`.
//!
//! ```sh
//! cargo install --locked tokio-console          # once
//! RUSTFLAGS="--cfg console_without_tokio_unstable" \
//!     cargo run --example console --features console
//! tokio-console                                 # in another terminal
//! ```
//!
//! `console-subscriber` refuses to start unless it was built with
//! `--cfg tokio_unstable` (which tokio needs to instrument its own tasks)
//! or `--cfg console_without_tokio_unstable` (its switch for other
//! runtimes, which is all multipool needs). The `console` feature pulls
//! `console-subscriber` and turns `tracing` on. The example runs until
//! stopped, or for `MULTIPOOL_CONSOLE_SECS` seconds; the subscriber's
//! server listens on `127.0.0.1:6669` (`TOKIO_CONSOLE_BIND` changes it; see
//! `console_subscriber::Builder::with_default_env` for the rest).

use std::time::Duration;

use multipool::Priority;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() {
    if !cfg!(any(tokio_unstable, console_without_tokio_unstable)) {
        eprintln!(
            "console-subscriber needs a cfg to start; run this example with\n  \
             RUSTFLAGS=\"--cfg console_without_tokio_unstable\" \
             cargo run --example console --features console"
        );
        std::process::exit(2);
    }
    // The console's layer, with its gRPC server on a thread of its own
    // (a tokio runtime, which it keeps to itself).
    let console = console_subscriber::ConsoleLayer::builder()
        .with_default_env()
        .spawn();
    tracing_subscriber::registry().with(console).init();

    let secs = std::env::var("MULTIPOOL_CONSOLE_SECS")
        .ok()
        .and_then(|secs| secs.parse::<u64>().ok());
    let rt = multipool::Runtime::builder()
        .workers(4)
        .build()
        .expect("valid configuration");
    rt.block_on(async move {
        let work = multipool::spawn(workload()).name("workload").start();
        match secs {
            Some(secs) => {
                multipool::time::sleep(Duration::from_secs(secs)).await;
                work.abort();
            }
            None => {
                let _ = work.await;
            }
        }
    });
    println!("done");
}

/// Runs until aborted: a steady high-priority heartbeat and ingest, normal
/// requests that come and go, low-priority batch reports that yield often,
/// blocking calls, and one worker-local cache.
async fn workload() {
    multipool::spawn(async {
        let mut tick = multipool::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
        }
    })
    .name("heartbeat")
    .priority(Priority::High)
    .detach();

    let (sender, receiver) = std::sync::mpsc::channel::<u64>();
    multipool::spawn(async move {
        let mut processed = 0u64;
        loop {
            // Take what arrived, then wait for more.
            processed += receiver.try_iter().sum::<u64>();
            std::hint::black_box(processed);
            multipool::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .name("ingest")
    .priority(Priority::High)
    .detach();

    // One worker-local task: its state is an `Rc`, so it stays on the
    // worker that spawned it (`kind=local` in the console).
    multipool::spawn(async {
        let cache = multipool::spawn_local(async {
            let hits = std::rc::Rc::new(std::cell::Cell::new(0u64));
            loop {
                hits.set(hits.get() + 1);
                multipool::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let _ = cache.await;
    })
    .name("cache-owner")
    .detach();

    for round in 0u64.. {
        // Requests: short tasks that each wait a little, then end.
        for request in 0..8u64 {
            let sender = sender.clone();
            multipool::spawn(async move {
                multipool::time::sleep(Duration::from_millis(5 + request * 7)).await;
                let _ = sender.send(request);
            })
            .name(format!("request-{round}-{request}"))
            .detach();
        }
        // Every few rounds, a batch report: CPU work in slices.
        if round % 4 == 0 {
            multipool::spawn(async move {
                let mut sum = 0u64;
                for slice in 0..50u64 {
                    for i in 0..20_000u64 {
                        sum = sum.wrapping_add(i * slice);
                    }
                    multipool::task::yield_now().await;
                }
                std::hint::black_box(sum);
            })
            .name(format!("report-{round}"))
            .priority(Priority::Low)
            .detach();
        }
        // And a blocking call.
        if round % 3 == 0 {
            multipool::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(50));
            })
            .detach();
        }
        multipool::time::sleep(Duration::from_millis(500)).await;
    }
}
