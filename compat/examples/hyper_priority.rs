//! A hyper server on multipool with a priority per route.
//!
//! * `GET /health` runs at `Priority::High`: it answers at once, even while
//!   the workers are busy;
//! * `GET /report?ms=N` runs at `Priority::Low`: about N ms of CPU work
//!   (default 50), in slices with a yield between them;
//! * anything else runs at `Priority::Normal` and echoes the path.
//!
//! ```sh
//! # Serve on 127.0.0.1:3000 until interrupted:
//! cargo run --release -p multipool-compat --example hyper_priority --features hyper,tokio
//! # Serve on a free port, load it from a client thread, print what the
//! # health checks saw while reports kept the workers busy, and exit:
//! cargo run --release -p multipool-compat --example hyper_priority --features hyper,tokio -- --self-test
//! # The same routes on a plain tokio runtime (2 workers, a tokio task per
//! # request), for side-by-side load runs (`compat/benches/load.sh`):
//! cargo run --release -p multipool-compat --example hyper_priority --features hyper,tokio -- --tokio --addr 127.0.0.1:3001
//! ```
//!
//! The server is a tokio program moved to multipool: a `tokio::net`
//! listener and hyper-util's `TokioIo`, unchanged, on a runtime built with
//! `enable_tokio()`; hyper's own tasks (HTTP/2 streams) go through
//! `HyperExecutor`, its timeouts through `HyperTimer`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use multipool::Priority;
use multipool_compat::hyper::{HyperExecutor, HyperTimer};
use multipool_compat::tokio::BuilderExt;

type Body = Full<Bytes>;

/// Routes a request, running its handler at the route's priority.
async fn route(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (priority, handler) = Handler::for_request(&request);
    let response = multipool::spawn(handler.run()).priority(priority).await;
    Ok(response.unwrap_or_else(|err| failed(&err)))
}

fn failed(err: &dyn std::fmt::Display) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("handler failed: {err}")));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

enum Handler {
    Health,
    Report(u64),
    Echo(String),
}

impl Handler {
    fn for_request(request: &Request<Incoming>) -> (Priority, Handler) {
        let path = request.uri().path();
        match path {
            "/health" => (Priority::High, Handler::Health),
            "/report" => (
                Priority::Low,
                Handler::Report(report_ms(request.uri().query().unwrap_or(""))),
            ),
            _ => (Priority::Normal, Handler::Echo(path.to_owned())),
        }
    }

    async fn run(self) -> Response<Body> {
        match self {
            Handler::Health => Response::new(Body::from("ok")),
            Handler::Report(ms) => Response::new(Body::from(report(ms).await)),
            Handler::Echo(path) => Response::new(Body::from(path)),
        }
    }
}

fn report_ms(query: &str) -> u64 {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(50)
}

/// About `ms` milliseconds of CPU work, in 1 ms slices with a yield between
/// them, so that higher-priority work gets a worker within a slice.
async fn report(ms: u64) -> String {
    let mut acc = 0u64;
    for _ in 0..ms {
        let slice = Instant::now();
        while slice.elapsed() < Duration::from_millis(1) {
            for i in 0..1_000u64 {
                acc = acc.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        // Each runtime's own yield: this also runs on tokio (`--tokio`).
        if multipool::task::try_id().is_some() {
            multipool::task::yield_now().await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    format!("report {acc:x}")
}

/// Accepts connections for ever, one `Normal` task per connection; each
/// request's handler then runs at its route's priority. The connection's
/// I/O is never queued behind `Low` work (reports), and a `/health` check
/// waits behind no `Normal` handler.
///
/// Not `High`: a connection task above its handlers' level runs whenever
/// any of them wakes it, ahead of the others. Over HTTP/2 that means one
/// write per response instead of one per batch (measured with h2load: one
/// `writev` per response, against eight on tokio, and 0.7x tokio's
/// requests/s); over HTTP/1 the handler that each request spawns waits
/// behind every other connection's I/O, so a sibling worker steals it and
/// it runs cold. Give a connection the level of its usual request.
async fn serve(listener: tokio::net::TcpListener) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(HyperExecutor::new());
    builder
        .http1()
        .timer(HyperTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(HyperTimer::new());
    loop {
        let stream = next_connection(&listener).await;
        let builder = builder.clone();
        multipool::spawn(async move {
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await
            {
                eprintln!("connection error: {err}");
            }
        })
        .priority(Priority::Normal)
        .detach();
    }
}

/// The next connection; a failed accept is reported and skipped.
async fn next_connection(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(err) => eprintln!("accept failed: {err}"),
        }
    }
}

/// The baseline for load runs: the same routes served the plain tokio way,
/// hyper-util's `TokioExecutor` and `TokioTimer`, a `tokio::spawn`ed task
/// per connection and per request (tokio has no priorities: the reports'
/// slices run beside everything else).
async fn serve_tokio(listener: tokio::net::TcpListener) {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let route = |request: Request<Incoming>| async move {
        let (_, handler) = Handler::for_request(&request);
        let response = tokio::spawn(handler.run()).await;
        Ok::<_, Infallible>(response.unwrap_or_else(|err| failed(&err)))
    };
    loop {
        let stream = next_connection(&listener).await;
        let builder = builder.clone();
        tokio::spawn(async move {
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await
            {
                eprintln!("connection error: {err}");
            }
        });
    }
}

/// Loads the server from a thread of its own (a small tokio runtime, so the
/// client does not compete inside the server's scheduler): reports keep
/// both workers busy while health checks measure how long they wait.
fn self_test(addr: SocketAddr) {
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client_rt.block_on(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Body>();
        let get = |path: &str| {
            let client = client.clone();
            let uri = format!("http://{addr}{path}").parse().expect("uri");
            async move {
                let response = client.get(uri).await.expect("request");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body");
                (status, body.to_bytes())
            }
        };

        let (status, body) = get("/hello").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"/hello"[..]));

        // Eight 200 ms reports: more Low work than two workers can do.
        let started = Instant::now();
        let reports: Vec<_> = (0..8)
            .map(|_| tokio::spawn(get("/report?ms=200")))
            .collect();
        let mut health = Vec::new();
        while health.len() < 50 {
            let sent = Instant::now();
            let (status, body) = get("/health").await;
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
            health.push(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for report in reports {
            let (status, _) = report.await.expect("report task");
            assert_eq!(status, StatusCode::OK);
        }
        let reports_took = started.elapsed();
        health.sort();
        let pct = |p: usize| health[(health.len() * p / 100).min(health.len() - 1)];
        println!(
            "50 health checks (High) while 8 x 200 ms reports (Low) ran on 2 workers:\n  \
             p50 {:?}, p99 {:?}, max {:?}; the reports took {:?} in all",
            pct(50),
            pct(99),
            health[health.len() - 1],
            reports_took,
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let self_test_mode = args.iter().any(|arg| arg == "--self-test");
    let on_tokio = args.iter().any(|arg| arg == "--tokio");
    let addr_arg = args.iter().position(|arg| arg == "--addr").map(|at| {
        args.get(at + 1)
            .expect("--addr needs an address, as in --addr 127.0.0.1:3000")
    });
    let addr: SocketAddr = match (addr_arg, self_test_mode) {
        (Some(addr), _) => addr
            .parse()
            .unwrap_or_else(|err| panic!("--addr {addr:?}: {err}")),
        (None, true) => "127.0.0.1:0".parse().expect("address"),
        (None, false) => "127.0.0.1:3000".parse().expect("address"),
    };

    if on_tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        rt.spawn(serve_tokio(listener));
        if self_test_mode {
            self_test(addr);
        } else {
            println!("tokio: listening on http://{addr}");
            rt.block_on(std::future::pending::<()>());
        }
        return;
    }

    let rt = multipool::Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .expect("multipool runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    rt.spawn(serve(listener)).detach();

    if self_test_mode {
        self_test(addr);
    } else {
        println!("multipool: listening on http://{addr} (try /health, /report?ms=100, /anything)");
        rt.block_on(std::future::pending::<()>());
    }
}
