//! [`BuilderExt`] and [`TokioContext`]: a tokio context for a whole runtime.
//!
//! Invariants:
//!
//! * The owned tokio runtime is, by default, a `current_thread` one (a
//!   [`Driver`]). At most one idle multipool worker at a time drives it
//!   from its park hook ([`Builder::park_with`]; other idle workers sleep
//!   the default way), busy workers take non-blocking turns between polls
//!   ([`Builder::on_busy_tick`]), and a fallback thread drives it when no
//!   worker is in the hook and none entered it or took a turn for
//!   [`FALLBACK_LAG`]. A worker entering the hook or taking a turn makes
//!   the fallback let go of the core (its `block_on` future completes);
//!   the worker leaving the hook wakes the fallback to watch again (a
//!   condition variable, checked and signalled under one mutex, so the
//!   hand-over cannot be missed). So tokio's I/O and timers are never left
//!   undriven for much longer than [`FALLBACK_LAG`].
//! * A worker driving tokio from its park hook also runs tokio's tasks,
//!   which may take long. It counts as busy ([`Park::mark_busy`]) while
//!   tokio may run them: from the first poll of its `block_on` future with
//!   tokio's core (tasks already queued run before tokio's first park)
//!   until tokio parks its driver, and again from each unpark of the
//!   driver (tokio's `on_thread_park`/`on_thread_unpark` callbacks, which
//!   find the hook's [`Park`] through [`Park::with_current`]). So while a
//!   tokio task runs, new multipool work wakes another worker rather than
//!   waiting for that task. While the fallback thread or a busy worker's
//!   turn may hold the core, the first poll does not mark it busy: that
//!   poll may be tokio's wait for the core, which a long tokio task there
//!   could stretch, and a claim must still end it. Leaving `block_on`, the
//!   worker marks itself idle again unless it was unparked. tokio polls a
//!   woken `block_on` future before its tasks, so a worker whose unpark
//!   arrived runs no more tokio tasks before it returns.
//! * The fallback thread stops when the owned runtime is shut down; the
//!   runtime is shut down only once no thread is inside its `block_on`
//!   (tokio requires its core back): by the shutting-down thread after the
//!   fallback thread exited, or else by the fallback thread itself as it
//!   leaves (in the background).
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

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use multipool::{Builder, Park};
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

impl BuilderExt for Builder {
    fn tokio_context(self, context: TokioContext) -> Builder {
        let driven = matches!(context.source, Source::Owned) && context.worker_threads.is_none();
        let shared = Arc::new(Shared::new(context));
        let on_shutdown = shared.clone();
        let builder = self
            .wrap_thread(move |body| {
                let (handle, driver) = shared.acquire();
                let _leave = Leave(&shared);
                let _enter = handle.enter();
                let _driver = DriverGuard::set(driver);
                body();
            })
            .on_shutdown(move || on_shutdown.runtime_shut_down());
        if driven {
            builder.park_with(park_hook).on_busy_tick(busy_tick)
        } else {
            builder
        }
    }
}

thread_local! {
    /// The driver of the tokio runtime entered on this thread, if it is a
    /// [`Driver`].
    static DRIVER: RefCell<Option<Arc<Driver>>> = const { RefCell::new(None) };
}

/// Sets [`DRIVER`] for the life of a `wrap_thread` body; restores the outer
/// value (a nested runtime's `block_on`) when dropped.
struct DriverGuard(Option<Arc<Driver>>);

impl DriverGuard {
    fn set(driver: Option<Arc<Driver>>) -> Self {
        DriverGuard(DRIVER.with(|slot| slot.replace(driver)))
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let outer = self.0.take();
        let inner = DRIVER.try_with(|slot| slot.replace(outer)).ok().flatten();
        // Outside the thread-local's borrow: this may be the last reference.
        drop(inner);
    }
}

thread_local! {
    /// The `Shared::id` of the [`Driver`] that a worker drives from its
    /// park hook on this thread (inside [`Driver::drive`]); 0 when none.
    static DRIVING: Cell<usize> = const { Cell::new(0) };
}

/// Sets [`DRIVING`] for the life of a [`Driver::drive`]; restores the
/// previous value when dropped (also by unwinding).
struct DrivingGuard(usize);

impl DrivingGuard {
    fn set(id: usize) -> Self {
        DrivingGuard(DRIVING.with(|driving| driving.replace(id)))
    }
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        let _ = DRIVING.try_with(|driving| driving.set(self.0));
    }
}

/// tokio's park (`busy: false`) and unpark (`true`) callbacks of the owned
/// runtime of `Shared::id` `id`: on a worker driving it from its park hook,
/// the worker counts as busy while tokio runs tasks (see the module docs).
/// Elsewhere (the fallback thread, a busy worker's turn) they do nothing.
fn tokio_parks(id: usize, busy: bool) {
    if DRIVING.try_with(Cell::get) != Ok(id) {
        return;
    }
    Park::with_current(|park| {
        if busy {
            park.mark_busy();
        } else {
            park.mark_idle();
        }
    });
}

/// The park hook of a runtime with a [`Driver`]: drive tokio until the
/// worker is unparked.
fn park_hook(park: &Park<'_>) {
    match current_driver() {
        Some(driver) => driver.drive(park),
        None => park.park(),
    }
}

/// The busy-tick hook of a runtime with a [`Driver`]: a non-blocking turn
/// of tokio's drivers between two polls.
fn busy_tick() {
    if let Some(driver) = current_driver() {
        driver.turn();
    }
}

/// This thread's [`DRIVER`], cloned: tokio tasks run while it is in use
/// may enter (and leave) another runtime's wrapper on this thread.
fn current_driver() -> Option<Arc<Driver>> {
    DRIVER
        .try_with(|driver| driver.borrow().clone())
        .ok()
        .flatten()
}

/// tokio's timers fire on a 1 ms tick (and epoll waits in whole
/// milliseconds), rounding deadlines up; multipool's own timers are exact.
/// A worker whose next timer is closer than this sleeps the default way
/// for that last stretch (the fallback thread drives tokio meanwhile).
const TOKIO_TICK: Duration = Duration::from_millis(1);

/// How long tokio may go without a worker driving it (from its park hook
/// or between polls) before the fallback thread takes over: the longest
/// I/O and tokio timers wait when every worker is stuck in a long poll.
const FALLBACK_LAG: Duration = Duration::from_millis(1);

/// A `current_thread` tokio runtime driven by idle multipool workers and, when
/// none is idle, by a fallback thread (see the module docs).
struct Driver {
    /// `Some` until it is shut down.
    runtime: Option<Runtime>,
    /// The `Shared::id` of the owner, which the runtime's park and unpark
    /// callbacks know it by (see [`DRIVING`]).
    id: usize,
    /// Workers inside [`drive`](Self::drive)'s `block_on`: 0 or 1.
    hooked: AtomicUsize,
    /// Bumped whenever a worker enters the park hook or takes a turn: the
    /// fallback thread only takes over once it stops moving.
    activity: AtomicUsize,
    /// Set while the fallback thread is in (or about to enter) its
    /// `block_on`; workers then wake it to let go of the core.
    holding: AtomicBool,
    /// Busy workers inside [`turn`](Self::turn), set before they check
    /// `hooked`: they may hold the core.
    turning: AtomicUsize,
    stop: AtomicBool,
    /// The waker of the fallback thread's `block_on` future.
    fallback_waker: Mutex<Option<Waker>>,
    /// Guards the fallback thread's wait for `hooked` to drop to zero.
    idle: Mutex<()>,
    idle_changed: Condvar,
}

impl Driver {
    fn new(runtime: Runtime, id: usize) -> Self {
        Driver {
            runtime: Some(runtime),
            id,
            hooked: AtomicUsize::new(0),
            activity: AtomicUsize::new(0),
            holding: AtomicBool::new(false),
            turning: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            fallback_waker: Mutex::new(None),
            idle: Mutex::new(()),
            idle_changed: Condvar::new(),
        }
    }

    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("a driver's runtime is only taken once nothing else uses it")
    }

    /// A worker wants to drive tokio: counts it as activity, and makes the
    /// fallback thread let go of the core if it holds it. The caller has
    /// already made its reason visible (`hooked`), or bumps `activity`
    /// here, before reading `holding`: the fallback thread sets `holding`
    /// before it checks both (all `SeqCst`), so either it sees the change
    /// or this sees `holding` and wakes it.
    fn claim(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) {
            if let Some(waker) = lock(&self.fallback_waker).take() {
                waker.wake();
            }
        }
    }

    /// The park hook's body, on a worker thread.
    fn drive(&self, park: &Park<'_>) {
        let until = match park.deadline() {
            Some(deadline) => match deadline.checked_sub(TOKIO_TICK) {
                Some(until) if until > Instant::now() => Some(until),
                _ => return park.park(),
            },
            None => None,
        };
        if self
            .hooked
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Another idle worker drives tokio: sleep the default way, like
            // tokio's idle workers that do not hold its driver. Queuing on
            // tokio's core instead would hand the core to this worker each
            // time the other one leaves, a thread wake-up for nothing while
            // that one runs what it woke (and takes turns between polls).
            return park.park();
        }
        self.claim();
        let _leave = LeaveHook(self);
        let _driving = DrivingGuard::set(self.id);
        let mut unparked = pin!(park.unparked());
        let wait = poll_fn(|cx| {
            if unparked.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // tokio polls this future first whenever it takes its core,
            // before it runs the tasks already queued: busy from here (see
            // the module docs). Unless the core may be held elsewhere: then
            // this may be tokio's wait for the core, during which the worker
            // must stay a sleeper that a notifier can claim (and so wake).
            if !self.core_held_elsewhere() {
                park.mark_busy();
            }
            Poll::Pending
        });
        // Holds tokio's core (driving I/O and timers, running tokio tasks)
        // or waits for it, until unparked or `until`; returning early is
        // fine, the worker calls the hook again.
        self.runtime().block_on(async {
            match until {
                Some(until) => {
                    let until = ::tokio::time::Instant::from_std(until);
                    let _ = ::tokio::time::timeout_at(until, wait).await;
                }
                None => wait.await,
            }
        });
        // No tokio task runs any more. Unless unparked, the worker goes back
        // to counting as parked, so that at `until` it sees its timers and
        // idle timeout as it would after a plain park.
        park.mark_idle();
    }

    /// Whether the fallback thread or a busy worker's turn may hold tokio's
    /// core. Each makes that visible before it checks `hooked` (`SeqCst`),
    /// and a worker in the hook has set `hooked` before it asks: so a
    /// holder that this misses has seen `hooked` and lets go of the core
    /// without running a task (its `block_on` future completes at its first
    /// poll, which comes first).
    fn core_held_elsewhere(&self) -> bool {
        self.holding.load(Ordering::SeqCst) || self.turning.load(Ordering::SeqCst) > 0
    }

    /// The busy-tick hook's body: one non-blocking turn, on a busy worker.
    fn turn(&self) {
        // Before the check of `hooked`: see `core_held_elsewhere`.
        self.turning.fetch_add(1, Ordering::SeqCst);
        let _turned = Turned(self);
        if self.hooked.load(Ordering::SeqCst) > 0 {
            // An idle worker drives tokio.
            return;
        }
        self.claim();
        // With the core free: polls the future (which wakes itself), runs
        // the tokio tasks that are ready (a bounded batch), turns the
        // drivers without blocking, polls the future again and returns.
        // With the core taken (another worker's turn, or the fallback
        // thread until it notices `claim`): returns at the second poll
        // without driving anything.
        let mut yielded = false;
        self.runtime().block_on(poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
    }

    /// The fallback thread: holds tokio's core while no worker drives it.
    fn fallback(&self) {
        loop {
            {
                let mut idle = lock(&self.idle);
                while self.hooked.load(Ordering::SeqCst) > 0 && !self.stop.load(Ordering::SeqCst) {
                    idle = self
                        .idle_changed
                        .wait(idle)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            // No worker is idle in the hook. Busy workers take turns between
            // polls, and a worker that just left the hook usually returns to
            // it soon: only take over if none of that happens for a while.
            let seen = self.activity.load(Ordering::SeqCst);
            thread::sleep(FALLBACK_LAG);
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if self.activity.load(Ordering::SeqCst) != seen {
                continue;
            }
            self.holding.store(true, Ordering::SeqCst);
            self.runtime().block_on(poll_fn(|cx| {
                // Register, then check (see `claim` and `stop`).
                *lock(&self.fallback_waker) = Some(cx.waker().clone());
                if self.hooked.load(Ordering::SeqCst) > 0
                    || self.activity.load(Ordering::SeqCst) != seen
                    || self.stop.load(Ordering::SeqCst)
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            self.holding.store(false, Ordering::SeqCst);
            drop(lock(&self.fallback_waker).take());
        }
    }

    /// Makes the fallback thread return (within [`FALLBACK_LAG`]).
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(waker) = lock(&self.fallback_waker).take() {
            waker.wake();
        }
        let _idle = lock(&self.idle);
        self.idle_changed.notify_all();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only reached with nothing inside the runtime's `block_on`: every
        // reference is gone. Normally `Shared::shut_down_if_unused` took the
        // runtime already; otherwise this is the fallback thread, after its
        // last `block_on`, outside any runtime context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Ends a busy worker's turn (see [`Driver::turn`]), also by unwinding.
struct Turned<'a>(&'a Driver);

impl Drop for Turned<'_> {
    fn drop(&mut self) {
        self.0.turning.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A worker leaves the park hook; the last one out wakes the fallback
/// thread to watch over tokio.
struct LeaveHook<'a>(&'a Driver);

impl Drop for LeaveHook<'_> {
    fn drop(&mut self) {
        let driver = self.0;
        if driver.hooked.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock the fallback thread checks `hooked` with.
            let _idle = lock(&driver.idle);
            driver.idle_changed.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment: a panic while
    // one is held leaves nothing half-done.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for multipool::Builder {}
}

/// What the hooks of one builder share.
struct Shared {
    state: Mutex<State>,
    /// `Some`: the owned runtime is a multi-thread one with this many
    /// workers; `None`: it is a [`Driver`].
    worker_threads: Option<usize>,
    shutdown_timeout: Duration,
    /// Marks the threads of the runtime this owns (see [`OWN_THREADS`]).
    id: usize,
}

struct State {
    /// Whether to create a runtime when there is none.
    owned: bool,
    /// The runtime to shut down, if this one owns it.
    runtime: Option<Owned>,
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

/// A tokio runtime a [`Shared`] owns.
enum Owned {
    /// Runs on threads of its own (or is the user's to drive).
    Plain(Runtime),
    /// Driven by idle workers and a fallback thread, which sends on the
    /// channel as it exits.
    Driven {
        driver: Arc<Driver>,
        fallback: thread::Thread,
        exited: mpsc::Receiver<()>,
    },
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
                (false, Some(Owned::Plain(runtime)), Some(handle))
            }
        };
        Shared {
            state: Mutex::new(State {
                owned,
                runtime,
                handle,
                users: 0,
                closed: false,
            }),
            worker_threads: context.worker_threads,
            shutdown_timeout: context.shutdown_timeout,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent if a holder panicked: every update is a
        // single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle to enter on a thread that is starting, and the driver of
    /// its runtime if it is a [`Driver`]; counts the thread.
    ///
    /// # Panics
    ///
    /// Panics if an owned tokio runtime has to be created and cannot be.
    fn acquire(&self) -> (Handle, Option<Arc<Driver>>) {
        let mut state = self.lock();
        let handle = match &state.handle {
            Some(handle) => handle.clone(),
            None => {
                let runtime = self.build_runtime();
                let handle = match &runtime {
                    Owned::Plain(runtime) => runtime.handle().clone(),
                    Owned::Driven { driver, .. } => driver.runtime().handle().clone(),
                };
                state.runtime = Some(runtime);
                state.handle = Some(handle.clone());
                handle
            }
        };
        let driver = match &state.runtime {
            Some(Owned::Driven { driver, .. }) => Some(driver.clone()),
            _ => None,
        };
        state.users += 1;
        (handle, driver)
    }

    fn build_runtime(&self) -> Owned {
        let id = self.id;
        let failed = |err: std::io::Error| -> ! {
            panic!("multipool-compat: failed to start a tokio runtime: {err}")
        };
        let Some(threads) = self.worker_threads else {
            let runtime = ::tokio::runtime::Builder::new_current_thread()
                .thread_name("multipool-tokio-io")
                .enable_all()
                .on_thread_start(move || OWN_THREADS.with(|own| own.set(id)))
                // A worker driving tokio from its park hook is busy while
                // tokio runs tasks, idle while it waits for events (see the
                // module docs). Elsewhere (the fallback thread, a busy
                // worker's turn) these do nothing.
                .on_thread_park(move || tokio_parks(id, false))
                .on_thread_unpark(move || tokio_parks(id, true))
                .build()
                .unwrap_or_else(|err| failed(err));
            let driver = Arc::new(Driver::new(runtime, id));
            let (exit_tx, exited) = mpsc::channel();
            let fallback = driver.clone();
            let thread = thread::Builder::new()
                .name("multipool-tokio-io".into())
                .spawn(move || {
                    OWN_THREADS.with(|own| own.set(id));
                    fallback.fallback();
                    // Possibly the last reference: see `Driver`'s drop.
                    drop(fallback);
                    let _ = exit_tx.send(());
                })
                .unwrap_or_else(|err| failed(err));
            return Owned::Driven {
                driver,
                fallback: thread.thread().clone(),
                exited,
            };
        };
        let runtime = ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("multipool-tokio-io")
            .enable_all()
            .on_thread_start(move || OWN_THREADS.with(|own| own.set(id)))
            .build()
            .unwrap_or_else(|err| failed(err));
        Owned::Plain(runtime)
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
        match runtime {
            None => {}
            Some(Owned::Plain(runtime)) => self.shut_down(runtime),
            Some(Owned::Driven {
                driver,
                fallback,
                exited,
            }) => {
                driver.stop();
                // No worker is in the park hook any more (none is inside
                // the wrapper); once the fallback thread has left its
                // `block_on`, nothing else uses the runtime. Wait for that
                // only where blocking is fine, and not for ever.
                let may_wait =
                    fallback.id() != thread::current().id() && ::tokio::task::try_id().is_none();
                if may_wait && exited.recv_timeout(self.shutdown_timeout).is_ok() {
                    if let Ok(mut driver) = Arc::try_unwrap(driver) {
                        if let Some(runtime) = driver.runtime.take() {
                            self.shut_down(runtime);
                        }
                    }
                }
                // Otherwise the fallback thread, holding the last reference,
                // shuts the runtime down in the background as it leaves.
            }
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
