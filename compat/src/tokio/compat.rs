//! [`Compat`]: a tokio context for one future, and I/O trait bridging.
//!
//! Invariants: the inner value is polled, and dropped, with a tokio context
//! entered (the thread's own if it has one, else the explicit handle, else
//! the fallback runtime). The I/O bridges do not enter anything: tokio I/O
//! resources only need a context when they are created.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::runtime::{EnterGuard, Handle, Runtime};

pin_project! {
    /// Runs a future (or I/O object) that needs a tokio context on any
    /// executor, and converts between tokio's and futures-io's I/O traits.
    ///
    /// Made by [`CompatExt::compat`] or [`CompatExt::compat_with`]; see the
    /// [module docs](crate::tokio) for which context it enters.
    ///
    /// ```
    /// use multipool_compat::tokio::CompatExt;
    /// use std::time::Duration;
    ///
    /// // A runtime without `enable_tokio`: the wrapper brings the context.
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let done = rt.block_on(
    ///     multipool::spawn(
    ///         async {
    ///             tokio::time::sleep(Duration::from_millis(1)).await;
    ///             "done"
    ///         }
    ///         .compat(),
    ///     )
    ///     .start(),
    /// );
    /// assert_eq!(done.unwrap(), "done");
    /// ```
    ///
    /// Bridging I/O: a tokio stream used through futures-io's traits.
    ///
    /// ```
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    /// use multipool_compat::tokio::CompatExt;
    ///
    /// multipool::block_on(async {
    ///     let (a, b) = tokio::io::duplex(64);
    ///     let (mut a, mut b) = (a.compat(), b.compat());
    ///     a.write_all(b"ping").await.unwrap();
    ///     let mut buf = [0; 4];
    ///     b.read_exact(&mut buf).await.unwrap();
    ///     assert_eq!(&buf, b"ping");
    /// });
    /// ```
    pub struct Compat<T> {
        #[pin]
        inner: Option<T>,
        handle: Option<Handle>,
    }

    impl<T> PinnedDrop for Compat<T> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // tokio resources deregister from their driver when dropped.
            let _enter = enter(this.handle);
            this.inner.set(None);
        }
    }
}

impl<T> Compat<T> {
    /// Wraps `inner`, to run it in the thread's tokio context or, without
    /// one, in the fallback runtime's.
    pub fn new(inner: T) -> Self {
        Compat {
            inner: Some(inner),
            handle: None,
        }
    }

    /// Wraps `inner`, to run it in `handle`'s tokio context, entered around
    /// every poll.
    pub fn with_handle(inner: T, handle: Handle) -> Self {
        Compat {
            inner: Some(inner),
            handle: Some(handle),
        }
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect(TAKEN)
    }

    /// The wrapped value, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect(TAKEN)
    }

    /// The wrapped value, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T> {
        self.project().inner.as_pin_mut().expect(TAKEN)
    }

    /// Unwraps the value (an `Unpin` one: a pinned future cannot move out).
    pub fn into_inner(mut self) -> T
    where
        T: Unpin,
    {
        self.inner.take().expect(TAKEN)
    }
}

/// The inner value is only taken by `into_inner` and the drop, after which
/// nothing can reach it.
const TAKEN: &str = "`Compat`'s inner value is present until it is dropped";

/// Enters the context for a poll: none if the thread has one, else the
/// explicit handle's, else the fallback runtime's.
fn enter(handle: &Option<Handle>) -> Option<EnterGuard<'_>> {
    match handle {
        Some(handle) => Some(handle.enter()),
        None if Handle::try_current().is_ok() => None,
        None => Some(fallback().enter()),
    }
}

/// The runtime behind [`Compat`] on threads without a tokio context.
fn fallback() -> &'static Handle {
    static FALLBACK: OnceLock<Runtime> = OnceLock::new();
    FALLBACK
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("multipool-compat-tokio")
                .enable_all()
                .build()
                .unwrap_or_else(|err| {
                    panic!("multipool-compat: failed to start the fallback tokio runtime: {err}")
                })
        })
        .handle()
}

impl<T: Future> Future for Compat<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.project();
        let _enter = enter(this.handle);
        this.inner.as_pin_mut().expect(TAKEN).poll(cx)
    }
}

impl<T: fmt::Debug> fmt::Debug for Compat<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compat")
            .field("inner", &self.inner)
            .field("handle", &self.handle.is_some())
            .finish()
    }
}

/// Wraps any value in [`Compat`].
pub trait CompatExt: Sized {
    /// Runs `self` in the thread's tokio context or the fallback runtime's,
    /// and bridges its I/O traits; see [`Compat`].
    fn compat(self) -> Compat<Self> {
        Compat::new(self)
    }

    /// Runs `self` in `handle`'s tokio context; see [`Compat::with_handle`].
    ///
    /// ```
    /// use multipool_compat::tokio::CompatExt;
    ///
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// let answer = multipool::block_on(
    ///     async { tokio::spawn(async { 42 }).await.unwrap() }.compat_with(tokio.handle().clone()),
    /// );
    /// assert_eq!(answer, 42);
    /// ```
    fn compat_with(self, handle: Handle) -> Compat<Self> {
        Compat::with_handle(self, handle)
    }
}

impl<T> CompatExt for T {}

// tokio I/O → futures-io.

impl<T: tokio::io::AsyncRead> futures_io::AsyncRead for Compat<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = tokio::io::ReadBuf::new(buf);
        ready!(tokio::io::AsyncRead::poll_read(
            self.get_pin_mut(),
            cx,
            &mut buf
        ))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl<T: tokio::io::AsyncWrite> futures_io::AsyncWrite for Compat<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(self.get_pin_mut(), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(self.get_pin_mut(), cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(self.get_pin_mut(), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(self.get_pin_mut(), cx)
    }
}

impl<T: tokio::io::AsyncBufRead> futures_io::AsyncBufRead for Compat<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        tokio::io::AsyncBufRead::poll_fill_buf(self.get_pin_mut(), cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        tokio::io::AsyncBufRead::consume(self.get_pin_mut(), amt)
    }
}

// futures-io → tokio I/O.

impl<T: futures_io::AsyncRead> tokio::io::AsyncRead for Compat<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // futures-io reads into initialised memory; zeroing the unfilled
        // part once is what `tokio_util::compat` does too.
        let n = ready!(futures_io::AsyncRead::poll_read(
            self.get_pin_mut(),
            cx,
            buf.initialize_unfilled()
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: futures_io::AsyncWrite> tokio::io::AsyncWrite for Compat<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write(self.get_pin_mut(), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write_vectored(self.get_pin_mut(), cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_io::AsyncWrite::poll_flush(self.get_pin_mut(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_io::AsyncWrite::poll_close(self.get_pin_mut(), cx)
    }
}

impl<T: futures_io::AsyncBufRead> tokio::io::AsyncBufRead for Compat<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        futures_io::AsyncBufRead::poll_fill_buf(self.get_pin_mut(), cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        futures_io::AsyncBufRead::consume(self.get_pin_mut(), amt)
    }
}
