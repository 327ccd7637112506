//! [`BuilderExt`] and [`TokioContext`]: a tokio context for a whole runtime.
//!
//! Invariants:
//!
//! * The `wrap_thread` wrapper counts the threads inside it (`users`). The
//!   tokio runtime this crate owns (or was given) is shut down once the
//!   multipool runtime has shut down *and* no thread is inside a wrapper any
//!   more; so a builder cloned and built twice shares one tokio runtime,
//!   stopped after the last of them, and a `Handle::block_on` still running
//!   when the runtime is dropped keeps its tokio context until it returns.
//! * An owned tokio runtime that was shut down is created again if a thread
//!   needs it later (a second build of a cloned builder, a `block_on` through
//!   a `Handle` that outlived its runtime), and shut down again when that
//!   thread leaves.
//! * Shutting a tokio runtime down never panics and never waits for the
//!   calling thread itself: on one of that runtime's threads, or in any tokio
//!   task, it is stopped in the background; elsewhere a plain thread waits
//!   for it, at most [`TokioContext::shutdown_timeout`].

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
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
/// let tokio = TokioContext::new().worker_threads(1);
/// let rt = multipool::Runtime::builder().workers(2).tokio_context(tokio).build().unwrap();
/// let flavor = rt.block_on(async { tokio::runtime::Handle::current().runtime_flavor() });
/// assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
/// ```
pub struct TokioContext {
    source: Source,
    worker_threads: Option<usize>,
    shutdown_timeout: Duration,
}

enum Source {
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
    /// A tokio runtime owned by the multipool runtime: multi-thread, two
    /// worker threads (one on a single-core machine) named
    /// `multipool-tokio-io`, I/O and time drivers enabled (as far as the
    /// tokio features compiled in allow), created when the first thread
    /// needs it and shut down with the multipool runtime.
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

    /// Worker threads of the owned tokio runtime (default: 2, or 1 on a
    /// single-core machine). They run the I/O and timer drivers and the
    /// tasks given to `tokio::spawn`. Ignored for a runtime or handle of
    /// your own.
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
    fn tokio_context(self, context: TokioContext) -> Builder;
}

impl BuilderExt for Builder {
    fn tokio_context(self, context: TokioContext) -> Builder {
        let shared = Arc::new(Shared::new(context));
        let on_shutdown = shared.clone();
        self.wrap_thread(move |body| {
            let handle = shared.acquire();
            let _leave = Leave(&shared);
            let _enter = handle.enter();
            body();
        })
        .on_shutdown(move || on_shutdown.runtime_shut_down())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for multipool::Builder {}
}

/// What the hooks of one builder share.
struct Shared {
    state: Mutex<State>,
    worker_threads: usize,
    shutdown_timeout: Duration,
    /// Marks the threads of the runtime this owns (see [`OWN_THREADS`]).
    id: usize,
}

struct State {
    /// Whether to create a runtime when there is none.
    owned: bool,
    /// The runtime to shut down, if this one owns it.
    runtime: Option<Runtime>,
    /// The handle entered on the threads.
    handle: Option<Handle>,
    /// Threads inside the `wrap_thread` wrapper right now.
    users: usize,
    /// The multipool runtime has shut down (at least once: the builder may
    /// have been cloned and built again).
    closed: bool,
}

thread_local! {
    /// On a thread of a tokio runtime created here, the `Shared::id` that
    /// created it; 0 elsewhere.
    static OWN_THREADS: Cell<usize> = const { Cell::new(0) };
}

/// Source of `Shared::id`s; 0 means "none".
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl Shared {
    fn new(context: TokioContext) -> Self {
        let (owned, runtime, handle) = match context.source {
            Source::Owned => (true, None, None),
            Source::Handle(handle) => (false, None, Some(handle)),
            Source::Runtime(runtime) => {
                let handle = runtime.handle().clone();
                (false, Some(runtime), Some(handle))
            }
        };
        let default_threads = thread::available_parallelism().map_or(1, |n| n.get().min(2));
        Shared {
            state: Mutex::new(State {
                owned,
                runtime,
                handle,
                users: 0,
                closed: false,
            }),
            worker_threads: context.worker_threads.unwrap_or(default_threads),
            shutdown_timeout: context.shutdown_timeout,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent if a holder panicked: every update is a
        // single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle to enter on a thread that is starting; counts the thread.
    ///
    /// # Panics
    ///
    /// Panics if an owned tokio runtime has to be created and cannot be.
    fn acquire(&self) -> Handle {
        let mut state = self.lock();
        let handle = match &state.handle {
            Some(handle) => handle.clone(),
            None => {
                let runtime = self.build_runtime();
                let handle = runtime.handle().clone();
                state.runtime = Some(runtime);
                state.handle = Some(handle.clone());
                handle
            }
        };
        state.users += 1;
        handle
    }

    fn build_runtime(&self) -> Runtime {
        let id = self.id;
        ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .thread_name("multipool-tokio-io")
            .enable_all()
            .on_thread_start(move || OWN_THREADS.with(|own| own.set(id)))
            .build()
            .unwrap_or_else(|err| {
                panic!("multipool-compat: failed to start a tokio runtime: {err}")
            })
    }

    /// A thread leaves the wrapper.
    fn release(&self) {
        let mut state = self.lock();
        state.users -= 1;
        self.shut_down_if_unused(state);
    }

    /// The `on_shutdown` hook.
    fn runtime_shut_down(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.shut_down_if_unused(state);
    }

    fn shut_down_if_unused(&self, mut state: MutexGuard<'_, State>) {
        if !state.closed || state.users > 0 {
            return;
        }
        let runtime = state.runtime.take();
        if state.owned {
            // Created again if a thread needs it later.
            state.handle = None;
        }
        drop(state);
        if let Some(runtime) = runtime {
            self.shut_down(runtime);
        }
    }

    /// Shuts `runtime` down without panicking, whatever this thread is.
    fn shut_down(&self, runtime: Runtime) {
        let on_own_thread = OWN_THREADS.with(Cell::get) == self.id;
        if on_own_thread || ::tokio::task::try_id().is_some() {
            // Waiting here would wait for this very thread, or block a tokio
            // worker; tokio allows this one in any context.
            runtime.shutdown_background();
            return;
        }
        // `shutdown_timeout` panics on a thread running a tokio runtime
        // (inside its `block_on`, say), so it runs on a plain thread.
        let timeout = self.shutdown_timeout;
        let slot = Arc::new(Mutex::new(Some(runtime)));
        let taken = slot.clone();
        let waiter = thread::Builder::new()
            .name("multipool-tokio-shutdown".into())
            .spawn(move || {
                if let Some(runtime) = take(&taken) {
                    runtime.shutdown_timeout(timeout);
                }
            });
        match waiter {
            Ok(waiter) => {
                let _ = waiter.join();
            }
            Err(_) => {
                if let Some(runtime) = take(&slot) {
                    runtime.shutdown_background();
                }
            }
        }
    }
}

fn take(slot: &Mutex<Option<Runtime>>) -> Option<Runtime> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Calls [`Shared::release`] when the thread leaves the wrapper, also by
/// unwinding.
struct Leave<'a>(&'a Shared);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}
