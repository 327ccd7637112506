//! hyper 1.x on multipool: [`HyperExecutor`], [`HyperTimer`], [`FuturesIo`].
//!
//! * [`HyperExecutor`] implements `hyper::rt::Executor`: every task hyper
//!   (or hyper-util) spawns, an HTTP/2 stream, a client connection, runs
//!   on multipool, at the priority you choose.
//! * [`HyperTimer`] implements `hyper::rt::Timer` on multipool's timer
//!   wheel: HTTP/1 header timeouts, HTTP/2 keep-alive, the client pool's
//!   idle timeout. Its sleeps are `Send + Sync` and `reset` re-arms them in
//!   place, without a new allocation or timer registration.
//! * [`FuturesIo`] turns a futures-io stream (an `async_io::Async<TcpStream>`,
//!   an async-std or smol `TcpStream`) into `hyper::rt::{Read, Write}`. For a
//!   tokio stream use `hyper_util::rt::TokioIo`, with a runtime built with
//!   [`enable_tokio`](crate::tokio::BuilderExt::enable_tokio) (feature
//!   `tokio`).
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper::{service::service_fn, Request, Response};
//! use hyper_util::rt::TokioIo;
//! use multipool_compat::hyper::{HyperExecutor, HyperTimer};
//! use multipool_compat::tokio::BuilderExt;
//!
//! let rt = multipool::Runtime::builder().workers(2).enable_tokio().build().unwrap();
//! rt.block_on(async {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     multipool::spawn(async move {
//!         loop {
//!             let (stream, _) = listener.accept().await.unwrap();
//!             multipool::spawn(async move {
//!                 let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
//!                     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!                 });
//!                 let _ = hyper_util::server::conn::auto::Builder::new(HyperExecutor::new())
//!                     .serve_connection(TokioIo::new(stream), service)
//!                     .await;
//!             })
//!             .detach();
//!         }
//!     })
//!     .detach();
//!
//!     let client = hyper_util::client::legacy::Client::builder(HyperExecutor::new())
//!         .timer(HyperTimer::new())
//!         .pool_timer(HyperTimer::new())
//!         .build_http::<Full<Bytes>>();
//!     let response = client.get(format!("http://{addr}/").parse().unwrap()).await.unwrap();
//!     let body = response.into_body().collect().await.unwrap().to_bytes();
//!     assert_eq!(body, "hello");
//! });
//! ```
//!
//! Invariants: the executor never blocks and never panics (a task spawned
//! after its runtime shut down is dropped, as multipool does for every late
//! spawn); a [`HyperTimer`] sleep registers with the runtime where it is
//! first polled (the global runtime's timers outside any runtime).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use multipool::{Handle, Priority};
use pin_project_lite::pin_project;

/// Spawns hyper's background tasks onto multipool.
///
/// By [`Default`]/[`new`](Self::new) onto the runtime current where the
/// task is spawned (the global one outside any runtime, as
/// `multipool::spawn`), or [`on`](Self::on) a given runtime; at
/// [`Priority::Normal`] unless set with [`priority`](Self::priority).
///
/// ```
/// use multipool::Priority;
/// use multipool_compat::hyper::HyperExecutor;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let exec = HyperExecutor::on(rt.handle()).priority(Priority::High);
/// let (tx, rx) = std::sync::mpsc::channel();
/// hyper::rt::Executor::execute(&exec, async move { tx.send(multipool::worker_index()).unwrap() });
/// assert_eq!(rx.recv().unwrap(), Some(0));
/// ```
#[derive(Clone, Default)]
pub struct HyperExecutor {
    handle: Option<Handle>,
    priority: Priority,
}

impl HyperExecutor {
    /// An executor spawning onto the current runtime, at normal priority.
    pub fn new() -> Self {
        Self::default()
    }

    /// An executor spawning onto `handle`'s runtime.
    pub fn on(handle: Handle) -> Self {
        HyperExecutor {
            handle: Some(handle),
            priority: Priority::Normal,
        }
    }

    /// The priority of the tasks it spawns.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let spawn = match &self.handle {
            Some(handle) => handle.spawn(future),
            None => multipool::spawn(future),
        };
        spawn.priority(self.priority).detach();
    }
}

impl fmt::Debug for HyperExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperExecutor")
            .field("handle", &self.handle)
            .field("priority", &self.priority)
            .finish()
    }
}

/// hyper's timer on multipool's timer wheel.
///
/// Deadlines are exact to the microsecond, and [`now`](hyper::rt::Timer::now)
/// reads the runtime's clock, so paused time (`multipool::time::pause`)
/// applies to hyper's timeouts too.
///
/// ```
/// use std::time::Duration;
/// use hyper::rt::Timer;
/// use multipool_compat::hyper::HyperTimer;
///
/// multipool::block_on(async {
///     let timer = HyperTimer::new();
///     let mut sleep = timer.sleep(Duration::from_secs(3600));
///     let soon = timer.now() + Duration::from_millis(1);
///     timer.reset(&mut sleep, soon); // re-armed in place
///     sleep.await;
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer {
    _private: (),
}

impl HyperTimer {
    /// The timer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(multipool::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(multipool::time::sleep_until(deadline)))
    }

    fn now(&self) -> Instant {
        multipool::time::now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => Pin::new(&mut ours.get_mut().0).reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A multipool sleep, as a `hyper::rt::Sleep`.
#[derive(Debug)]
struct HyperSleep(multipool::time::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

pin_project! {
    /// A futures-io stream as `hyper::rt::Read + hyper::rt::Write`.
    ///
    /// It also implements the futures-io traits itself, passing them
    /// through. Reads go through a buffer of its own (up to 16 KiB, allocated
    /// at the first read) and are copied into hyper's, which keeps this
    /// crate free of `unsafe`; the copy is small next to the system call.
    ///
    /// ```
    /// use multipool_compat::hyper::FuturesIo;
    ///
    /// multipool::block_on(async {
    ///     let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    ///     let addr = listener.get_ref().local_addr().unwrap();
    ///     let stream = async_io::Async::<std::net::TcpStream>::connect(addr).await.unwrap();
    ///     let io = FuturesIo::new(stream);
    ///     fn hyper_io(_: &impl hyper::rt::Read) {}
    ///     hyper_io(&io);
    /// });
    /// ```
    pub struct FuturesIo<T> {
        #[pin]
        inner: T,
        scratch: Vec<u8>,
    }
}

/// The most [`FuturesIo`] reads at once.
const SCRATCH_MAX: usize = 16 * 1024;

impl<T> FuturesIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        FuturesIo {
            inner,
            scratch: Vec::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The wrapped stream, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T> {
        self.project().inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for FuturesIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuturesIo")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: futures_io::AsyncRead> hyper::rt::Read for FuturesIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let want = buf.remaining().min(SCRATCH_MAX);
        if this.scratch.len() < want {
            this.scratch.resize(want, 0);
        }
        let n = ready!(this.inner.poll_read(cx, &mut this.scratch[..want]))?;
        buf.put_slice(&this.scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<T: futures_io::AsyncWrite> hyper::rt::Write for FuturesIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

impl<T: futures_io::AsyncRead> futures_io::AsyncRead for FuturesIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: futures_io::AsyncWrite> futures_io::AsyncWrite for FuturesIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}
