//! hyper on multipool: HTTP/1 and HTTP/2 servers and clients, with every
//! connection task spawned on multipool.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::guard;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::rt::Timer;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use multipool::{Priority, Runtime};
use multipool_compat::hyper::{FuturesIo, HyperExecutor, HyperTimer};
use multipool_compat::tokio::BuilderExt;

const REQUESTS: usize = 1_000;

fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .unwrap()
}

/// Counts the requests handled off multipool's workers (must stay 0).
#[derive(Clone, Default)]
struct OffWorker(Arc<AtomicUsize>);

/// Echoes the request path; records where it ran.
async fn handle(
    request: Request<Incoming>,
    off_worker: OffWorker,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if multipool::worker_index().is_none() {
        off_worker.0.fetch_add(1, Ordering::SeqCst);
    }
    Ok(Response::new(Full::new(Bytes::from(
        request.uri().path().to_owned(),
    ))))
}

fn server_builder() -> hyper_util::server::conn::auto::Builder<HyperExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(HyperExecutor::new());
    builder.http1().timer(HyperTimer::new());
    builder
        .http2()
        .timer(HyperTimer::new())
        .keep_alive_interval(Duration::from_secs(10))
        .max_concurrent_streams(REQUESTS as u32);
    builder
}

/// Serves HTTP/1 and HTTP/2 (auto-detected) on a tokio listener, one
/// multipool task per connection.
async fn serve_tokio(off_worker: OffWorker) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    multipool::spawn(async move {
        let builder = server_builder();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let builder = builder.clone();
            let off_worker = off_worker.clone();
            multipool::spawn(async move {
                let service = service_fn(move |req| handle(req, off_worker.clone()));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            })
            .priority(Priority::High)
            .detach();
        }
    })
    .detach();
    addr
}

async fn many_requests(client: Client<impl Connector, Full<Bytes>>, addr: SocketAddr) {
    let client = Arc::new(client);
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            multipool::spawn(async move {
                let uri = format!("http://{addr}/req/{i}").parse().unwrap();
                let response = client.get(uri).await.unwrap();
                assert!(response.status().is_success());
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("/req/{i}"));
            })
            .start()
        })
        .collect();
    for request in requests {
        request.await.unwrap();
    }
}

/// What `Client<C, _>::get` needs of a connector.
trait Connector: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static {}
impl<C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static> Connector
    for C
{
}

#[test]
fn http1_server_answers_1000_concurrent_requests_from_a_multipool_client() {
    let rt = runtime();
    let off_worker = OffWorker::default();
    rt.block_on(guard(async {
        let addr = serve_tokio(off_worker.clone()).await;
        let client = Client::builder(HyperExecutor::new())
            .timer(HyperTimer::new())
            .pool_timer(HyperTimer::new())
            .build_http();
        many_requests(client, addr).await;
    }));
    assert_eq!(off_worker.0.load(Ordering::SeqCst), 0);
}

#[test]
fn http2_server_answers_1000_concurrent_requests_from_a_multipool_client() {
    let rt = runtime();
    let off_worker = OffWorker::default();
    rt.block_on(guard(async {
        let addr = serve_tokio(off_worker.clone()).await;
        let client = Client::builder(HyperExecutor::new())
            .http2_only(true)
            .timer(HyperTimer::new())
            .pool_timer(HyperTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(10))
            .build_http();
        many_requests(client, addr).await;
    }));
    // HTTP/2 streams run in tasks that hyper spawned through HyperExecutor.
    assert_eq!(off_worker.0.load(Ordering::SeqCst), 0);
}

#[test]
fn futures_io_streams_serve_hyper() {
    // No tokio anywhere on the server side: async-io's listener, FuturesIo.
    let rt = Runtime::builder().workers(2).build().unwrap();
    let off_worker = OffWorker::default();
    let served = off_worker.clone();
    rt.block_on(guard(async move {
        let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        multipool::spawn(async move {
            let builder = server_builder();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let builder = builder.clone();
                let off_worker = served.clone();
                multipool::spawn(async move {
                    let service = service_fn(move |req| handle(req, off_worker.clone()));
                    let _ = builder
                        .serve_connection(FuturesIo::new(stream), service)
                        .await;
                })
                .detach();
            }
        })
        .detach();

        // A hyper client connection over async-io too.
        for http2 in [false, true] {
            let stream = async_io::Async::<std::net::TcpStream>::connect(addr)
                .await
                .unwrap();
            let body = if http2 {
                let (mut sender, conn) =
                    hyper::client::conn::http2::Builder::new(HyperExecutor::new())
                        .timer(HyperTimer::new())
                        .handshake(FuturesIo::new(stream))
                        .await
                        .unwrap();
                multipool::spawn(conn).detach();
                let request = Request::get("/h2").body(Full::<Bytes>::default()).unwrap();
                let response = sender.send_request(request).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            } else {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(FuturesIo::new(stream))
                        .await
                        .unwrap();
                multipool::spawn(conn).detach();
                let request = Request::get("/h1")
                    .header("host", "localhost")
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            };
            assert_eq!(body, if http2 { "/h2" } else { "/h1" });
        }
    }));
    assert_eq!(off_worker.0.load(Ordering::SeqCst), 0);
}

#[test]
fn hyper_timer_drives_the_http1_header_timeout() {
    let rt = runtime();
    rt.block_on(guard(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = multipool::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(|req| handle(req, OffWorker::default()));
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer::new())
                .header_read_timeout(Duration::from_millis(20))
                .serve_connection(TokioIo::new(stream), service)
                .await
        })
        .start();
        // Connect and send nothing: the server gives up at the timeout.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let result = server.await.unwrap();
        assert!(result.unwrap_err().is_timeout());
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut buf)
            .await
            .unwrap();
    }));
}

#[test]
fn hyper_timer_resets_in_place() {
    multipool::block_on(guard(async {
        let timer = HyperTimer::new();
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        let before: *const dyn hyper::rt::Sleep = &*sleep;
        // Registered with the timer wheel, then moved a long way earlier.
        assert!(futures::poll!(sleep.as_mut()).is_pending());
        timer.reset(&mut sleep, timer.now() + Duration::from_millis(1));
        assert!(std::ptr::addr_eq(before, &*sleep), "re-armed in place");
        sleep.as_mut().await;
        // Also after it fired.
        timer.reset(&mut sleep, timer.now() + Duration::from_millis(1));
        sleep.await;
    }));
}

/// A `hyper::rt::Sleep` that is not the timer's own.
struct Foreign(multipool::time::Sleep);

impl std::future::Future for Foreign {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for Foreign {}

#[test]
fn hyper_timer_replaces_a_foreign_sleep_on_reset() {
    multipool::block_on(guard(async {
        let timer = HyperTimer::new();
        let mut sleep: std::pin::Pin<Box<dyn hyper::rt::Sleep>> =
            Box::pin(Foreign(multipool::time::sleep(Duration::from_secs(3600))));
        timer.reset(&mut sleep, timer.now() + Duration::from_millis(1));
        assert!(!sleep.is::<Foreign>());
        sleep.await;
    }));
}

#[test]
fn hyper_executor_spawns_on_the_given_runtime_at_its_priority() {
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("hyper-exec")
        .build()
        .unwrap();
    let exec = HyperExecutor::on(rt.handle()).priority(Priority::Low);
    let (tx, rx) = std::sync::mpsc::channel();
    hyper::rt::Executor::execute(&exec, async move {
        tx.send(std::thread::current().name().map(str::to_owned))
            .unwrap();
    });
    let name = rx.recv_timeout(common::HANG).unwrap();
    assert_eq!(name.as_deref(), Some("hyper-exec-0"));
}
