//! [`BuilderExt`] and [`TokioContext`]: what the user sets to give a whole
//! runtime a tokio context.
//!
//! Invariants:
//!
//! * A [`TokioContext`] is plain configuration: making one starts nothing.
//!   Its settings are checked where they are set
//!   ([`TokioContext::worker_threads`] panics on zero). The tokio runtime it
//!   names is created, entered and shut down by the hooks that
//!   [`BuilderExt::tokio_context`] installs (`lifecycle.rs`); an owned
//!   `current_thread` one is driven by the workers (`driver.rs`).
//! * [`BuilderExt`] is sealed: [`Builder`] is its only implementor (the
//!   impl, which installs those hooks, is in `lifecycle.rs`).

use std::fmt;
use std::time::Duration;

use multipool::Builder;
use tokio::runtime::{Handle, Runtime};

/// The tokio runtime a multipool runtime gives its threads: one it owns
/// (the default, [`TokioContext::new`]), or one of yours.
///
/// Pass it to [`BuilderExt::tokio_context`]; the shortcuts
/// [`enable_tokio`](BuilderExt::enable_tokio),
/// [`tokio_handle`](BuilderExt::tokio_handle) and
/// [`tokio_runtime`](BuilderExt::tokio_runtime) cover the common cases.
///
/// ```
/// use multipool_compat::tokio::{BuilderExt, TokioContext};
///
/// // The default: a current-thread runtime driven by idle workers.
/// let rt = multipool::Runtime::builder().workers(2).enable_tokio().build().unwrap();
/// let flavor = rt.block_on(async { tokio::runtime::Handle::current().runtime_flavor() });
/// assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
///
/// // Threads of its own instead.
/// let tokio = TokioContext::new().worker_threads(1);
/// let rt = multipool::Runtime::builder().workers(2).tokio_context(tokio).build().unwrap();
/// let flavor = rt.block_on(async { tokio::runtime::Handle::current().runtime_flavor() });
/// assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
/// ```
pub struct TokioContext {
    pub(super) source: Source,
    pub(super) worker_threads: Option<usize>,
    pub(super) shutdown_timeout: Duration,
}

pub(super) enum Source {
    /// Create a runtime on first need, own it.
    Owned,
    /// The user's handle; its runtime is theirs to shut down.
    Handle(Handle),
    /// The user's runtime, owned from now on.
    Runtime(Runtime),
}

/// How long shutting a tokio runtime down waits for its threads by default.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

impl TokioContext {
    /// A tokio runtime owned by the multipool runtime: a `current_thread`
    /// one with the I/O and time drivers enabled (as far as the tokio
    /// features compiled in allow), driven by the multipool workers while
    /// they are idle and, while none is, by one fallback thread named
    /// `multipool-tokio-io` (see the [module docs](crate::tokio)). Created
    /// when the first thread needs it and shut down with the multipool
    /// runtime. [`worker_threads`](Self::worker_threads) gives it threads
    /// of its own instead.
    pub fn new() -> Self {
        TokioContext {
            source: Source::Owned,
            worker_threads: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// Uses `handle`'s runtime. The handle does not keep its runtime alive,
    /// and multipool never shuts it down: that stays the caller's job.
    ///
    /// ```
    /// use multipool_compat::tokio::{BuilderExt, TokioContext};
    ///
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .tokio_context(TokioContext::from_handle(tokio.handle().clone()))
    ///     .build()
    ///     .unwrap();
    /// let n = rt.block_on(async { tokio::spawn(async { 2 }).await.unwrap() });
    /// assert_eq!(n, 2);
    /// drop(rt);
    /// drop(tokio); // still usable until here
    /// ```
    pub fn from_handle(handle: Handle) -> Self {
        TokioContext {
            source: Source::Handle(handle),
            ..Self::new()
        }
    }

    /// Uses `runtime`, which the multipool runtime then owns and shuts down
    /// with itself.
    pub fn from_runtime(runtime: Runtime) -> Self {
        TokioContext {
            source: Source::Runtime(runtime),
            ..Self::new()
        }
    }

    /// Makes the owned tokio runtime a multi-thread one with `threads`
    /// worker threads named `multipool-tokio-io`, which then run the I/O and
    /// timer drivers and the tasks given to `tokio::spawn` (the behaviour
    /// before 0.3.1). By default the owned runtime has no threads of its
    /// own but the fallback one: idle multipool workers drive it, which is
    /// faster (every I/O wake-up of a task otherwise crosses threads).
    /// Ignored for a runtime or handle of your own.
    ///
    /// # Panics
    ///
    /// Panics if `threads` is zero.
    pub fn worker_threads(mut self, threads: usize) -> Self {
        assert!(
            threads > 0,
            "`TokioContext::worker_threads` must be at least 1"
        );
        self.worker_threads = Some(threads);
        self
    }

    /// How long shutting the tokio runtime down waits for its threads (its
    /// tasks are dropped at once; a `spawn_blocking` closure that is running
    /// is not interrupted and is waited for this long, then left running).
    /// Default: one second. Ignored for a handle of your own.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

impl Default for TokioContext {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TokioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Owned => "owned",
            Source::Handle(_) => "handle",
            Source::Runtime(_) => "runtime",
        };
        f.debug_struct("TokioContext")
            .field("source", &source)
            .field("worker_threads", &self.worker_threads)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Gives a multipool runtime's threads a tokio context; see the
/// [module docs](crate::tokio).
///
/// ```
/// use multipool_compat::tokio::BuilderExt;
///
/// let rt = multipool::Runtime::builder().workers(2).enable_tokio().build().unwrap();
/// rt.block_on(async {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     let accept = multipool::spawn(async move { listener.accept().await.map(|_| ()) });
///     tokio::net::TcpStream::connect(addr).await.unwrap();
///     accept.await.unwrap().unwrap();
/// });
/// ```
///
/// With the `#[multipool::main]`/`#[multipool::test]` attributes, the `tokio`
/// option does the same (the crate must depend on `multipool-compat` with
/// its `tokio` feature):
///
/// ```
/// #[multipool::main(workers = 2, tokio)]
/// async fn main() {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
/// }
/// ```
pub trait BuilderExt: sealed::Sealed + Sized {
    /// A tokio context owned by the runtime: `self.tokio_context(TokioContext::new())`.
    fn enable_tokio(self) -> Builder {
        self.tokio_context(TokioContext::new())
    }

    /// The tokio context of `handle`'s runtime, which stays the caller's to
    /// shut down: `self.tokio_context(TokioContext::from_handle(handle))`.
    fn tokio_handle(self, handle: Handle) -> Builder {
        self.tokio_context(TokioContext::from_handle(handle))
    }

    /// The tokio context of `runtime`, which the multipool runtime then owns:
    /// `self.tokio_context(TokioContext::from_runtime(runtime))`.
    fn tokio_runtime(self, runtime: Runtime) -> Builder {
        self.tokio_context(TokioContext::from_runtime(runtime))
    }

    /// Enters `context` on every worker thread and in every `block_on` of
    /// the runtime, for their whole life. Set more than once, the last one
    /// set is the innermost, so the one tokio sees.
    ///
    /// For the default owned runtime this also sets the builder's park hook
    /// ([`Builder::park_with`]), replacing one set before.
    fn tokio_context(self, context: TokioContext) -> Builder;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for multipool::Builder {}
}
