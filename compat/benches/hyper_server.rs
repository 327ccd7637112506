//! A hyper HTTP/1 server on multipool vs the same server on tokio, both with
//! two workers (`MULTIPOOL_BENCH_WORKERS` sets another count), loaded from a
//! client in the same process. `MULTIPOOL_BENCH_SEARCH_SPIN_US` sets
//! multipool's `search_spin` (in microseconds).
//!
//! ```sh
//! cargo bench -p multipool-compat --bench hyper_server
//! ```
//!
//! Two scenarios, each run for both servers:
//!
//! * **idle**: the server does nothing but answer; requests/s and p50/p99
//!   latency;
//! * **busy**: two background tasks per worker keep the workers busy with CPU work in
//!   1 ms slices (yielding between slices); on multipool they are spawned at
//!   `Priority::Low` and the connections at `High`, on tokio they are
//!   spawned normally (tokio has no priorities). The request path's latency
//!   shows what priorities buy.
//!
//! The client is a tokio `current_thread` runtime on a thread of its own:
//! 32 keep-alive HTTP/1 connections, each sending one request after the
//! other, for `MEASURE` after `WARM_UP`. The multipool server uses tokio's
//! listener and streams through `enable_tokio()` (hyper-util's `TokioIo`),
//! so the two servers differ only in the scheduler that runs them. Each
//! figure is one run: the machine is shared, expect ±10-20% between runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use multipool::Priority;
use multipool_compat::hyper::HyperTimer;
use multipool_compat::tokio::BuilderExt;

/// Workers of each server: `MULTIPOOL_BENCH_WORKERS`, or 2.
fn workers() -> usize {
    let workers = bench_env("MULTIPOOL_BENCH_WORKERS").unwrap_or(2);
    assert!(
        workers > 0,
        "MULTIPOOL_BENCH_WORKERS=0: a server needs a worker"
    );
    workers
}

/// multipool's `search_spin`: `MULTIPOOL_BENCH_SEARCH_SPIN_US` microseconds,
/// or the default.
fn search_spin() -> Option<Duration> {
    bench_env("MULTIPOOL_BENCH_SEARCH_SPIN_US").map(|us| Duration::from_micros(us as u64))
}

/// A number from the environment variable `name`, if set (as in
/// `benches/rt_multi_threaded.rs`).
fn bench_env(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: not a number")),
    )
}
const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

async fn hello(
    _request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world",
    ))))
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(HyperTimer::new());
    builder
}

/// CPU work in 1 ms slices until `stop`.
fn burn_slice() {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < Duration::from_millis(1) {
        for i in 0..1_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

trait Server {
    const NAME: &'static str;
    /// Starts the server (and the background load, if `busy`); returns its
    /// address. The server stops when `self` is dropped.
    fn start(busy: bool, stop: Arc<AtomicBool>) -> (Self, SocketAddr)
    where
        Self: Sized;
}

struct OnMultipool(#[allow(dead_code)] multipool::Runtime);

impl Server for OnMultipool {
    const NAME: &'static str = "multipool";

    fn start(busy: bool, stop: Arc<AtomicBool>) -> (Self, SocketAddr) {
        let mut builder = multipool::Runtime::builder()
            .workers(workers())
            .enable_tokio();
        if let Some(spin) = search_spin() {
            builder = builder.search_spin(spin);
        }
        let rt = builder.build().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                multipool::spawn(async move {
                    let _ = http1()
                        .serve_connection(TokioIo::new(stream), service_fn(hello))
                        .await;
                })
                .priority(Priority::High)
                .detach();
            }
        })
        .priority(Priority::High)
        .detach();
        if busy {
            for _ in 0..2 * workers() {
                let stop = stop.clone();
                rt.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        burn_slice();
                        multipool::task::yield_now().await;
                    }
                })
                .priority(Priority::Low)
                .detach();
            }
        }
        (OnMultipool(rt), addr)
    }
}

struct OnTokio(#[allow(dead_code)] tokio::runtime::Runtime);

impl Server for OnTokio {
    const NAME: &'static str = "tokio";

    fn start(busy: bool, stop: Arc<AtomicBool>) -> (Self, SocketAddr) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers())
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let _ = http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service_fn(hello))
                        .await;
                });
            }
        });
        if busy {
            for _ in 0..2 * workers() {
                let stop = stop.clone();
                rt.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        burn_slice();
                        tokio::task::yield_now().await;
                    }
                });
            }
        }
        (OnTokio(rt), addr)
    }
}

struct Report {
    requests_per_s: f64,
    p50: Duration,
    p99: Duration,
}

/// Loads `addr` from a client runtime on its own thread.
fn load(addr: SocketAddr) -> Report {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let measure_from = start + WARM_UP;
            let end = measure_from + MEASURE;
            let clients: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    tokio::spawn(async move {
                        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        let (mut sender, conn) =
                            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                                .await
                                .unwrap();
                        tokio::spawn(conn);
                        let mut latencies = Vec::new();
                        loop {
                            let sent = Instant::now();
                            if sent >= end {
                                break;
                            }
                            let request = Request::get("/")
                                .header("host", "localhost")
                                .body(Empty::<Bytes>::new())
                                .unwrap();
                            let response = sender.send_request(request).await.unwrap();
                            response.into_body().collect().await.unwrap();
                            if sent >= measure_from {
                                latencies.push(sent.elapsed());
                            }
                        }
                        latencies
                    })
                })
                .collect();
            let mut all = Vec::new();
            for client in clients {
                all.extend(client.await.unwrap());
            }
            all.sort();
            let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
            Report {
                requests_per_s: all.len() as f64 / MEASURE.as_secs_f64(),
                p50: pct(0.50),
                p99: pct(0.99),
            }
        })
    })
    .join()
    .unwrap()
}

fn run<S: Server>(busy: bool) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, addr) = S::start(busy, stop.clone());
    let report = load(addr);
    stop.store(true, Ordering::Relaxed);
    drop(server);
    report
}

fn print(scenario: &str, name: &str, report: &Report) {
    println!(
        "| {scenario} | {name} | {:.0} | {:.0} µs | {:.0} µs |",
        report.requests_per_s,
        report.p50.as_secs_f64() * 1e6,
        report.p99.as_secs_f64() * 1e6,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know that this builds and starts.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("hyper_server: run with `cargo bench -p multipool-compat --bench hyper_server`");
        return;
    }
    println!(
        "hyper HTTP/1 server, {} workers, {CONNECTIONS} keep-alive connections, \
         {MEASURE:?} per run",
        workers()
    );
    println!("| scenario | server | requests/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (busy, scenario) in [(false, "idle"), (true, "busy (Low CPU work)")] {
        let tokio = run::<OnTokio>(busy);
        print(scenario, OnTokio::NAME, &tokio);
        let multipool = run::<OnMultipool>(busy);
        print(scenario, OnMultipool::NAME, &multipool);
        println!(
            "|   | multipool / tokio | {:.2} | {:.2} | {:.2} |",
            multipool.requests_per_s / tokio.requests_per_s,
            multipool.p50.as_secs_f64() / tokio.p50.as_secs_f64(),
            multipool.p99.as_secs_f64() / tokio.p99.as_secs_f64(),
        );
    }
}
