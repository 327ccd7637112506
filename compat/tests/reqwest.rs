//! reqwest inside multipool tasks, on a runtime built with `enable_tokio()`:
//! every request succeeds, and reqwest's connection pool (hyper-util's
//! legacy client, whose connection tasks and pool returns go through
//! `tokio::spawn`) opens exactly as many connections as on tokio for the
//! same load.
//!
//! Why the count is exact: the server holds the first `CLIENTS` requests
//! until all of them have arrived, so the first round needs `CLIENTS`
//! connections on any runtime; after it, a client reading a body to its
//! end waits until hyper-util has put the connection back in the pool (it
//! delays the body's end until then), so a request never finds every
//! connection busy and never opens another. A runtime that ran the pool's
//! returns late, or lost them, would show more connections, or a hang.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::guard;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use multipool::{Priority, Runtime};
use multipool_compat::tokio::BuilderExt;

/// Client tasks, each sending its requests one after another.
const CLIENTS: usize = 16;
/// Requests per client task (800 in all).
const PER_CLIENT: usize = 50;
/// Runs of the comparison, each on fresh runtimes and a fresh server.
const RUNS: usize = 5;

/// An HTTP/1 server on a tokio runtime of its own (a new one for each side
/// of a comparison), counting the connections it accepts.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

/// Holds the first `CLIENTS` requests until all of them have arrived.
struct FirstRound {
    arrivals: AtomicUsize,
    barrier: tokio::sync::Barrier,
}

impl Server {
    fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let first_round = Arc::new(FirstRound {
            arrivals: AtomicUsize::new(0),
            barrier: tokio::sync::Barrier::new(CLIENTS),
        });
        let count = accepted.clone();
        rt.spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let first_round = first_round.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let first_round = first_round.clone();
                        async move {
                            if first_round.arrivals.fetch_add(1, Ordering::SeqCst) < CLIENTS {
                                first_round.barrier.wait().await;
                            }
                            let reply = format!("hello{}", req.uri().path());
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(reply))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            accepted,
            _rt: rt,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `PER_CLIENT` sequential GETs, each body read to its end and checked.
async fn client_loop(client: reqwest::Client, addr: SocketAddr, c: usize) {
    for i in 0..PER_CLIENT {
        let response = client
            .get(format!("http://{addr}/{c}/{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.expect("body"),
            format!("hello/{c}/{i}")
        );
    }
}

/// The load on a tokio multi-thread runtime with 2 workers; returns the
/// connections the server accepted.
fn connections_on_tokio() -> usize {
    let server = Server::start();
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client_loop(client.clone(), addr, c)))
            .collect();
        tokio::time::timeout(common::HANG, async {
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await
        .expect("hang guard: the tokio side did not finish");
    });
    server.connections()
}

/// The same load in multipool tasks (half `High`, half `Low`) on 2 workers
/// with `enable_tokio()`.
fn connections_on_multipool() -> usize {
    let server = Server::start();
    let addr = server.addr;
    let rt = Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let priority = if c % 2 == 0 {
                    Priority::High
                } else {
                    Priority::Low
                };
                multipool::spawn(client_loop(client.clone(), addr, c))
                    .priority(priority)
                    .start()
            })
            .collect();
        guard(async {
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await;
    });
    server.connections()
}

#[test]
fn reqwest_opens_as_many_connections_as_on_tokio() {
    for run in 0..RUNS {
        let on_tokio = connections_on_tokio();
        let on_multipool = connections_on_multipool();
        assert_eq!(
            (on_tokio, on_multipool),
            (CLIENTS, CLIENTS),
            "run {run}: connections opened (tokio, multipool)"
        );
    }
}

/// The per-future way, on a runtime built without `enable_tokio()`: each
/// client future wrapped in `Compat` (reqwest needs a tokio reactor where
/// its futures are polled). Every request succeeds. The connection count
/// is not exact here: the connection tasks run on the threads of the
/// compat layer's own tokio runtime, where a client task they wake is
/// queued at once (multipool cannot hold it until their poll ends, see
/// `multipool::HoldWakes`), so now and then a client sees the end of a
/// response before hyper-util has marked its connection reusable, and
/// opens another.
#[test]
fn reqwest_in_a_compat_future_on_a_plain_runtime() {
    use multipool_compat::tokio::CompatExt;

    let server = Server::start();
    let addr = server.addr;
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| multipool::spawn(client_loop(client.clone(), addr, c).compat()).start())
            .collect();
        guard(async {
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await;
    });
    assert!(server.connections() >= CLIENTS);
}
