//! An axum app on multipool, with a priority per route.
//!
//! The recipe: keep the axum `Router` and its handlers as they are, and
//! serve it with hyper-util's `server::conn::auto::Builder` instead of
//! `axum::serve`, so that
//!
//! * every connection is a multipool task (here at `Priority::High`, so a
//!   connection's I/O and request parsing never queue behind Low work);
//! * hyper's own tasks (HTTP/2 streams) go through `HyperExecutor` and its
//!   timeouts through `HyperTimer`;
//! * a handler runs its work at the route's priority with
//!   `multipool::spawn(work).priority(p).await`: `GET /health` at
//!   `Priority::High`, `GET /report/{ms}` (about `ms` ms of CPU work, in
//!   1 ms slices with a yield between them) at `Priority::Low`. Each of
//!   those tasks is named after its route, so it can be told apart in task
//!   hooks, slow-poll reports and metrics.
//!
//! The listener is a `tokio::net::TcpListener` and the streams are wrapped
//! in hyper-util's `TokioIo`, unchanged, on a runtime built with
//! `enable_tokio()`. (`axum::serve(listener, router)` itself also runs
//! unchanged on such a runtime, see `axum_serve_unchanged_on_multipool` in
//! `compat/tests/axum.rs`, but it gives each connection to `tokio::spawn`:
//! its connections then run wherever tokio is driven, with no priority.)
//!
//! ```sh
//! cargo run -p multipool-compat --example axum_priority --features hyper,tokio
//! ```
//!
//! It binds a free port on 127.0.0.1, makes a few requests with hyper-util's
//! client (on multipool too, through `HyperExecutor`): health checks while
//! Low reports keep both workers busy, prints the responses and exits.
//! `compat/tests/axum.rs` (`axum_through_hyper_util_with_per_route_priorities`)
//! serves this same router and checks the priorities.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use multipool::Priority;
use multipool_compat::hyper::{HyperExecutor, HyperTimer};
use multipool_compat::tokio::BuilderExt;

/// The app: plain axum routing; each handler picks its priority.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/report/{ms}", get(report))
}

/// Answers at once, at High priority: it gets a worker within a slice of
/// whatever Low work is running.
async fn health() -> &'static str {
    multipool::spawn(async { "ok" })
        .name("health")
        .priority(Priority::High)
        .await
        .expect("health task")
}

/// Heavier work, at Low priority: it runs when nothing more urgent waits.
async fn report(Path(ms): Path<u64>) -> String {
    multipool::spawn(crunch(ms))
        .name("report")
        .priority(Priority::Low)
        .await
        .expect("report task")
}

/// About `ms` milliseconds of CPU work, in 1 ms slices with a yield between
/// them, so that higher-priority work gets a worker within a slice.
async fn crunch(ms: u64) -> String {
    let mut acc = 0u64;
    for _ in 0..ms {
        let slice = Instant::now();
        while slice.elapsed() < Duration::from_millis(1) {
            for i in 0..1_000u64 {
                acc = acc.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        multipool::task::yield_now().await;
    }
    format!("report of {ms} ms: {acc:016x}")
}

/// Accepts connections for ever, one High-priority multipool task each,
/// serving `router` over HTTP/1 or HTTP/2 (auto-detected).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(HyperExecutor::new());
    builder
        .http1()
        .timer(HyperTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(HyperTimer::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept failed: {err}");
                continue;
            }
        };
        let builder = builder.clone();
        // A Router is a tower service; hyper wants a hyper one.
        let service = TowerToHyperService::new(router.clone());
        multipool::spawn(async move {
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {err}");
            }
        })
        .name("connection")
        .priority(Priority::High)
        .detach();
    }
}

/// GETs `path` and returns the body as text.
pub async fn get_text(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    addr: std::net::SocketAddr,
    path: &str,
) -> (hyper::StatusCode, String) {
    let uri = format!("http://{addr}{path}").parse().expect("uri");
    let response = client.get(uri).await.expect("request");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

/// The hyper-util client, on multipool.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(HyperExecutor::new())
        .timer(HyperTimer::new())
        .pool_timer(HyperTimer::new())
        .build_http()
}

fn main() {
    let rt = multipool::Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .expect("multipool runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        multipool::spawn(serve(listener, router())).detach();
        println!("serving on http://{addr}");

        let client = client();
        let (status, body) = get_text(&client, addr, "/health").await;
        println!("GET /health -> {status} {body:?}");

        // Four 100 ms reports (Low) keep both workers busy; health checks
        // (High) meanwhile.
        let started = Instant::now();
        let reports: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                multipool::spawn(async move { get_text(&client, addr, "/report/100").await })
                    .start()
            })
            .collect();
        for _ in 0..5 {
            let sent = Instant::now();
            let (status, body) = get_text(&client, addr, "/health").await;
            println!(
                "GET /health -> {status} {body:?} in {:?}, while reports run",
                sent.elapsed()
            );
        }
        for report in reports {
            let (status, body) = report.await.expect("report request");
            println!("GET /report/100 -> {status} {body:?}");
        }
        println!("the four reports took {:?} in all", started.elapsed());
    });
}
