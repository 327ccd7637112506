//! A small gRPC service, written by hand: what `tonic-build` would generate
//! from the `.proto` below, without `protoc` or a build script.
//!
//! ```proto
//! syntax = "proto3";
//! package multipool.demo;
//!
//! message Number { uint64 value = 1; }
//! message Reply {
//!   uint64 value = 1;
//!   bool handler_on_multipool = 2; // the handler ran in a multipool task
//!   bool work_on_multipool = 3;    // the work it spawned did
//! }
//!
//! service Demo {
//!   rpc Square(Number) returns (Reply);               // unary
//!   rpc Count(Number) returns (stream Reply);         // server streaming
//!   rpc Sum(stream Number) returns (Reply);           // client streaming
//!   rpc Echo(stream Number) returns (stream Reply);   // bidirectional
//! }
//! ```
//!
//! Three parts, each on tonic's public API:
//!
//! * the messages: structs with `#[derive(prost::Message)]`;
//! * the server: a trait [`Demo`] for the application to implement, and
//!   [`DemoServer`], a `tower::Service<http::Request<_>>` that dispatches on
//!   the path to `tonic::server::Grpc` with a `tonic_prost::ProstCodec`
//!   (plus `tonic::server::NamedService`, for `Server::add_service` and
//!   `tonic::service::Routes`);
//! * the client: [`DemoClient`], on `tonic::client::Grpc` over a `Channel`.
//!
//! This file is shared by `examples/tonic_priority.rs` and `tests/tonic.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use hyper::http;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{IntoRequest, IntoStreamingRequest, Request, Response, Status};
use tonic_prost::ProstCodec;

/// The fully qualified service name: `package.Service`.
pub const SERVICE: &str = "multipool.demo.Demo";
const SQUARE: &str = "/multipool.demo.Demo/Square";
const COUNT: &str = "/multipool.demo.Demo/Count";
const SUM: &str = "/multipool.demo.Demo/Sum";
const ECHO: &str = "/multipool.demo.Demo/Echo";

// ---------------------------------------------------------------- messages

/// `message Number`: a request (or one item of a request stream).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Number {
    /// The number.
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `message Reply`: a response (or one item of a response stream).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Reply {
    /// The result.
    #[prost(uint64, tag = "1")]
    pub value: u64,
    /// Whether the handler itself ran in a multipool task.
    #[prost(bool, tag = "2")]
    pub handler_on_multipool: bool,
    /// Whether the work the handler spawned ran in a multipool task.
    #[prost(bool, tag = "3")]
    pub work_on_multipool: bool,
}

// ------------------------------------------------------------------ server

/// A boxed stream of replies, for the streaming methods.
pub type ReplyStream = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send + 'static>>;

/// The service, as the application implements it (what `tonic-build`
/// generates as `demo_server::Demo`, with `impl Future` instead of
/// `async_trait`).
pub trait Demo: Send + Sync + 'static {
    /// `rpc Square(Number) returns (Reply)`.
    fn square(
        &self,
        request: Request<Number>,
    ) -> impl Future<Output = Result<Response<Reply>, Status>> + Send;

    /// `rpc Count(Number) returns (stream Reply)`.
    fn count(
        &self,
        request: Request<Number>,
    ) -> impl Future<Output = Result<Response<ReplyStream>, Status>> + Send;

    /// `rpc Sum(stream Number) returns (Reply)`.
    fn sum(
        &self,
        request: Request<Streaming<Number>>,
    ) -> impl Future<Output = Result<Response<Reply>, Status>> + Send;

    /// `rpc Echo(stream Number) returns (stream Reply)`.
    fn echo(
        &self,
        request: Request<Streaming<Number>>,
    ) -> impl Future<Output = Result<Response<ReplyStream>, Status>> + Send;
}

/// The server side of [`Demo`]: a tower service of HTTP requests, to give
/// to `tonic::transport::Server::add_service`, to `tonic::service::Routes`
/// or, through hyper-util's `TowerToHyperService`, to hyper itself.
pub struct DemoServer<T> {
    inner: Arc<T>,
}

impl<T: Demo> DemoServer<T> {
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {
        DemoServer {
            inner: Arc::new(inner),
        }
    }
}

// Not derived: that would ask for `T: Clone`.
impl<T> Clone for DemoServer<T> {
    fn clone(&self) -> Self {
        DemoServer {
            inner: self.inner.clone(),
        }
    }
}

impl<T> tonic::server::NamedService for DemoServer<T> {
    const NAME: &'static str = SERVICE;
}

/// The codec of every method here: it decodes `Number`s, encodes `Reply`s.
fn server_codec() -> tonic::server::Grpc<ProstCodec<Reply, Number>> {
    tonic::server::Grpc::new(ProstCodec::default())
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<T, B> tower::Service<http::Request<B>> for DemoServer<T>
where
    T: Demo,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        // `Grpc` decodes the request, calls the method (any tower service
        // of `tonic::Request`s: here a closure) and encodes its answer or
        // its `Status`. Each arm clones the `Arc` into a future it owns.
        match request.uri().path() {
            SQUARE => Box::pin(async move {
                let method = tower::service_fn(move |r| {
                    let inner = inner.clone();
                    async move { inner.square(r).await }
                });
                Ok(server_codec().unary(method, request).await)
            }),
            COUNT => Box::pin(async move {
                let method = tower::service_fn(move |r| {
                    let inner = inner.clone();
                    async move { inner.count(r).await }
                });
                Ok(server_codec().server_streaming(method, request).await)
            }),
            SUM => Box::pin(async move {
                let method = tower::service_fn(move |r| {
                    let inner = inner.clone();
                    async move { inner.sum(r).await }
                });
                Ok(server_codec().client_streaming(method, request).await)
            }),
            ECHO => Box::pin(async move {
                let method = tower::service_fn(move |r| {
                    let inner = inner.clone();
                    async move { inner.echo(r).await }
                });
                Ok(server_codec().streaming(method, request).await)
            }),
            // An unknown method of this service: gRPC's UNIMPLEMENTED.
            _ => Box::pin(async { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

// ------------------------------------------------------------------ client

/// The client of [`Demo`] (what `tonic-build` generates as
/// `demo_client::DemoClient`). Cheap to clone: clones share the channel.
#[derive(Clone, Debug)]
pub struct DemoClient {
    inner: tonic::client::Grpc<Channel>,
}

/// A request to `method`, tagged as `tonic-build`'s clients tag theirs (for
/// interceptors and tracing).
fn tagged<M>(mut request: Request<M>, method: &'static str) -> Request<M> {
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new(SERVICE, method));
    request
}

impl DemoClient {
    /// A client over `channel`.
    pub fn new(channel: Channel) -> Self {
        DemoClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// Waits until the channel can take a request.
    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|err| Status::unknown(format!("service was not ready: {err}")))
    }

    /// `Square`: one request, one reply.
    pub async fn square(
        &mut self,
        request: impl IntoRequest<Number>,
    ) -> Result<Response<Reply>, Status> {
        self.ready().await?;
        let request = tagged(request.into_request(), "Square");
        let path = http::uri::PathAndQuery::from_static(SQUARE);
        self.inner.unary(request, path, ProstCodec::default()).await
    }

    /// `Count`: one request, a stream of replies.
    pub async fn count(
        &mut self,
        request: impl IntoRequest<Number>,
    ) -> Result<Response<Streaming<Reply>>, Status> {
        self.ready().await?;
        let request = tagged(request.into_request(), "Count");
        let path = http::uri::PathAndQuery::from_static(COUNT);
        self.inner
            .server_streaming(request, path, ProstCodec::default())
            .await
    }

    /// `Sum`: a stream of requests, one reply.
    pub async fn sum(
        &mut self,
        request: impl IntoStreamingRequest<Message = Number>,
    ) -> Result<Response<Reply>, Status> {
        self.ready().await?;
        let request = tagged(request.into_streaming_request(), "Sum");
        let path = http::uri::PathAndQuery::from_static(SUM);
        self.inner
            .client_streaming(request, path, ProstCodec::default())
            .await
    }

    /// `Echo`: a stream of requests, a stream of replies.
    pub async fn echo(
        &mut self,
        request: impl IntoStreamingRequest<Message = Number>,
    ) -> Result<Response<Streaming<Reply>>, Status> {
        self.ready().await?;
        let request = tagged(request.into_streaming_request(), "Echo");
        let path = http::uri::PathAndQuery::from_static(ECHO);
        self.inner
            .streaming(request, path, ProstCodec::default())
            .await
    }
}
