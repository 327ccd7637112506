//! A tonic (gRPC) server and client on multipool, with priorities.
//!
//! The recipe, on a runtime built with `enable_tokio()`:
//!
//! * **server**, either way:
//!   - [`serve`]: hyper's HTTP/2 server (`hyper::server::conn::http2`)
//!     serving tonic's `Routes` (any number of tonic services) through
//!     hyper-util's `TowerToHyperService`. Every connection is a multipool
//!     task, and every gRPC call (an HTTP/2 stream, which hyper spawns
//!     through `HyperExecutor`) too, at the listener's priority: here
//!     `Priority::High`, so calls never queue behind Low work; services
//!     meant to run at different priorities get a listener each. Handlers
//!     run in multipool tasks;
//!   - [`serve_unchanged`]: `tonic::transport::Server::builder()` as in a
//!     tokio program, unchanged. It gives connections and calls to
//!     `tokio::spawn`, so handlers run wherever tokio is driven (on a
//!     multipool worker, outside any multipool task), with no priority;
//! * **handlers** (`DemoService`) run their work with
//!   `multipool::spawn(work).priority(p)`, named after the method: `Square`
//!   at High, the producer of `Count`'s stream at Low, `Sum` and `Echo` at
//!   Normal. They use tokio freely (`tokio::time`), which the runtime's
//!   tokio context makes work in every task;
//! * **client**: a tonic `Channel` from `Endpoint::from_shared(..)` (or
//!   `from_static`) with
//!   `.executor(HyperExecutor::on(handle).priority(Priority::High))`, so
//!   its tasks (its connection, its request buffer, hyper's per-call
//!   tasks) run on multipool at that priority; tonic's own timeouts use
//!   tokio's timer, which `enable_tokio()` provides.
//!
//! The service and client glue (`tonic_demo/mod.rs`) is written by hand on
//! tonic's public codegen API, so no `protoc` or build script is needed; with
//! `tonic-build`, use its generated `DemoServer`/`DemoClient` the same way.
//!
//! ```sh
//! cargo run -p multipool-compat --example tonic_priority --features hyper,tokio
//! ```
//!
//! It serves both ways on two free ports of 127.0.0.1, calls every method
//! of each, prints the replies and exits. `compat/tests/tonic.rs` checks
//! the same under load.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use multipool::Priority;
use multipool_compat::hyper::{HyperExecutor, HyperTimer};
use multipool_compat::tokio::BuilderExt;
use tonic::codec::Streaming;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// The hand-written service and client glue.
#[path = "tonic_demo/mod.rs"]
pub mod demo;

use demo::{Demo, DemoClient, DemoServer, Number, Reply, ReplyStream};

/// How long `Count` waits for a client that does not read its stream.
const STALLED_CLIENT: Duration = Duration::from_secs(10);

/// The application: each method spawns its work at its own priority.
#[derive(Debug, Default)]
pub struct DemoService;

/// Whether the caller is a multipool task.
fn on_multipool() -> bool {
    multipool::task::try_id().is_some()
}

/// A join error (the work panicked) as a gRPC status.
fn internal(err: multipool::JoinError) -> Status {
    Status::internal(format!("handler work failed: {err}"))
}

impl Demo for DemoService {
    /// `n * n`, at High priority; past `u32::MAX`, OUT_OF_RANGE.
    async fn square(&self, request: Request<Number>) -> Result<Response<Reply>, Status> {
        let handler_on_multipool = on_multipool();
        let n = request.into_inner().value;
        if n > u64::from(u32::MAX) {
            return Err(Status::out_of_range(format!("{n} squared overflows")));
        }
        let (value, work_on_multipool) = multipool::spawn(async move {
            // tokio's timer, in a multipool task (standing for a database
            // call or a request to another service).
            tokio::time::sleep(Duration::from_millis(1)).await;
            (n * n, on_multipool())
        })
        .name("square")
        .priority(Priority::High)
        .await
        .map_err(internal)?;
        Ok(Response::new(Reply {
            value,
            handler_on_multipool,
            work_on_multipool,
        }))
    }

    /// `0..n`, produced by a Low task: bulk work that yields to everything
    /// else. The stream is bounded (16 replies), so a slow client slows
    /// the producer; one that stops reading for [`STALLED_CLIENT`], or
    /// goes, ends it.
    async fn count(&self, request: Request<Number>) -> Result<Response<ReplyStream>, Status> {
        let handler_on_multipool = on_multipool();
        let n = request.into_inner().value;
        let (mut tx, rx) = futures::channel::mpsc::channel(16);
        multipool::spawn(async move {
            for value in 0..n {
                let reply = Reply {
                    value,
                    handler_on_multipool,
                    work_on_multipool: on_multipool(),
                };
                match tokio::time::timeout(STALLED_CLIENT, tx.send(Ok(reply))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return, // the client went
                    Err(_) => {
                        let _ = tx.try_send(Err(Status::deadline_exceeded("client stalled")));
                        return;
                    }
                }
            }
        })
        .name("count")
        .priority(Priority::Low)
        .detach();
        Ok(Response::new(Box::pin(rx)))
    }

    /// The sum of the stream, read by a Normal task.
    async fn sum(&self, request: Request<Streaming<Number>>) -> Result<Response<Reply>, Status> {
        let handler_on_multipool = on_multipool();
        let mut numbers = request.into_inner();
        let (value, work_on_multipool) = multipool::spawn(async move {
            let mut total = 0u64;
            while let Some(number) = numbers.message().await? {
                total = total
                    .checked_add(number.value)
                    .ok_or_else(|| Status::out_of_range("the sum overflows"))?;
            }
            Ok::<_, Status>((total, on_multipool()))
        })
        .name("sum")
        .priority(Priority::Normal)
        .await
        .map_err(internal)??;
        Ok(Response::new(Reply {
            value,
            handler_on_multipool,
            work_on_multipool,
        }))
    }

    /// Each number back as it comes, through a Normal task.
    async fn echo(
        &self,
        request: Request<Streaming<Number>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let handler_on_multipool = on_multipool();
        let mut numbers = request.into_inner();
        let (mut tx, rx) = futures::channel::mpsc::channel(16);
        multipool::spawn(async move {
            loop {
                let reply = match numbers.message().await {
                    Ok(Some(number)) => Ok(Reply {
                        value: number.value,
                        handler_on_multipool,
                        work_on_multipool: on_multipool(),
                    }),
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        })
        .name("echo")
        .priority(Priority::Normal)
        .detach();
        Ok(Response::new(Box::pin(rx)))
    }
}

/// The gRPC services this server offers (one here; `Routes::add_service`
/// adds more).
pub fn routes() -> Routes {
    Routes::new(DemoServer::new(DemoService))
}

/// Accepts connections for ever and serves `routes` over HTTP/2 (gRPC's
/// transport): each connection, and each call on it, a multipool task at
/// `priority`.
pub async fn serve(listener: tokio::net::TcpListener, routes: Routes, priority: Priority) {
    let mut http2 =
        hyper::server::conn::http2::Builder::new(HyperExecutor::new().priority(priority));
    http2
        .timer(HyperTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept failed: {err}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let http2 = http2.clone();
        // `Routes` is a tower service; hyper wants a hyper one.
        let service = TowerToHyperService::new(routes.clone());
        multipool::spawn(async move {
            if let Err(err) = http2.serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {err}");
            }
        })
        .name("grpc-connection")
        .priority(priority)
        .detach();
    }
}

/// `tonic::transport::Server`, as in a tokio program: it runs unchanged on
/// an `enable_tokio()` runtime, its connections and calls on tokio's tasks.
pub async fn serve_unchanged(
    listener: tokio::net::TcpListener,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(DemoServer::new(DemoService))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
}

/// A channel to the server at `addr`, its tasks (the HTTP/2 connection,
/// the request buffer) on the current multipool runtime at High priority.
/// Clones share the connection; wrap it in a `DemoClient`.
pub async fn channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    let executor = HyperExecutor::on(multipool::Handle::current()).priority(Priority::High);
    Endpoint::from_shared(format!("http://{addr}"))?
        .executor(executor)
        .connect()
        .await
}

/// Calls every method once and prints what comes back.
async fn tour(client: &mut DemoClient) -> Result<(), Status> {
    let reply = client.square(Number { value: 12 }).await?.into_inner();
    println!("  Square(12) -> {reply:?}");

    let counted: Vec<u64> = client
        .count(Number { value: 5 })
        .await?
        .into_inner()
        .map(|reply| reply.map(|reply| reply.value))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("  Count(5) -> {counted:?}");

    let numbers = futures::stream::iter((1..=10).map(|value| Number { value }));
    let reply = client.sum(numbers).await?.into_inner();
    println!("  Sum(1..=10) -> {reply:?}");

    let numbers = futures::stream::iter([7, 8, 9].map(|value| Number { value }));
    let mut echoed = client.echo(numbers).await?.into_inner();
    while let Some(reply) = echoed.message().await? {
        println!("  Echo -> {reply:?}");
    }

    let status = client
        .square(Number { value: 1 << 40 })
        .await
        .expect_err("2^40 squared overflows");
    println!(
        "  Square(2^40) -> {:?}: {}",
        status.code(),
        status.message()
    );
    Ok(())
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
        let prioritized = listener.local_addr().expect("local address");
        multipool::spawn(serve(listener, routes(), Priority::High)).detach();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let unchanged = listener.local_addr().expect("local address");
        multipool::spawn(async move { serve_unchanged(listener).await.expect("tonic server") })
            .detach();

        for (what, addr) in [
            ("hyper + HyperExecutor (High)", prioritized),
            ("tonic::transport::Server", unchanged),
        ] {
            println!("{what} on {addr}:");
            let mut client = DemoClient::new(channel(addr).await.expect("connect"));
            tour(&mut client).await.expect("gRPC call");
        }
    });
}
