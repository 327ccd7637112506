//! [`Spawn`]: the one builder every spawn goes through.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use event_listener::EventListener;

use super::{Id, JoinHandle};
use crate::error::SpawnError;
use crate::runtime::{
    key_hash, spawn_on, with_current_pool, After, Enqueue, Gate, Handle, Home, Pool, RawTask,
    SpawnOptions, Spawned,
};
use crate::sync::Arc;
use crate::{JoinError, Priority};

/// Which runtime a [`Spawn`] puts its task on.
enum Target {
    /// The runtime entered on the thread that starts the task, or the global
    /// runtime when none is.
    Current,
    /// A runtime chosen explicitly.
    Handle(Handle),
}

/// A task that has been described but not started yet.
///
/// Returned by [`multipool::spawn`](crate::spawn),
/// [`Runtime::spawn`](crate::Runtime::spawn) and
/// [`Handle::spawn`](crate::Handle::spawn). Set options with
/// [`priority`](Self::priority), [`name`](Self::name),
/// [`timeout`](Self::timeout) and [`pool`](Self::pool) (and dependencies
/// with [`after`](Self::after)), then use it in one of these ways:
///
/// * `.await` it: the task starts and you get its `Result<T, JoinError>`.
///   If the pool's queue is full (see
///   [`Builder::max_queued`](crate::Builder::max_queued)) this first waits
///   for room: *backpressure*;
/// * [`start`](Self::start) it: the task starts now and you get a
///   [`JoinHandle`]; with the queue full, the handle reports the refusal;
/// * [`try_start`](Self::try_start) it: like `start`, but a refusal is an
///   `Err` at once;
/// * [`detach`](Self::detach) it: the task starts now and runs on its own.
///
/// Nothing runs until one of those happens; a `Spawn` that is dropped unused
/// never runs its future.
///
/// ```
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let urgent = multipool::spawn(async { "now" }).priority(Priority::High).await;
///     assert_eq!(urgent.unwrap(), "now");
///
///     let handle = multipool::spawn(async { 1 + 1 }).name("adder").start();
///     assert_eq!(handle.name(), Some("adder"));
///     assert_eq!(handle.await.unwrap(), 2);
/// });
/// ```
#[must_use = "a Spawn does nothing until it is awaited, started or detached"]
pub struct Spawn<F> {
    future: F,
    target: Target,
    pool: Option<String>,
    options: SpawnOptions,
    /// Set by [`after`](Self::after); boxed, so a spawn without
    /// dependencies carries one null pointer.
    after: Option<Box<After>>,
}

impl<F> Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[track_caller]
    pub(crate) fn current(future: F) -> Self {
        Spawn {
            future,
            target: Target::Current,
            pool: None,
            options: SpawnOptions::at(std::panic::Location::caller()),
            after: None,
        }
    }

    #[track_caller]
    pub(crate) fn on(handle: Handle, future: F) -> Self {
        Spawn {
            future,
            target: Target::Handle(handle),
            pool: None,
            options: SpawnOptions::at(std::panic::Location::caller()),
            after: None,
        }
    }

    /// Sets the task's priority (default [`Priority::Normal`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.options.priority = priority;
        self
    }

    /// Names the task. The name is shown by [`JoinHandle::name`] and in the
    /// handle's `Debug` output.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.options.name = Some(name.into());
        self
    }

    /// Gives the task a deadline, `timeout` after it is started: if it has
    /// not completed by then, it is cancelled (its future dropped) and its
    /// handle yields an error with
    /// [`is_timeout`](crate::JoinError::is_timeout). The future is polled
    /// before the deadline is checked, so a task that completes in the poll
    /// during which the deadline passes still succeeds.
    ///
    /// A zero timeout is rejected: the task never runs and its handle yields
    /// an error with [`is_rejected`](crate::JoinError::is_rejected).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let slow = multipool::spawn(multipool::time::sleep(Duration::from_secs(60)))
    ///         .timeout(Duration::from_millis(5))
    ///         .await;
    ///     assert!(slow.unwrap_err().is_timeout());
    /// });
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Runs the task in the runtime's pool called `name` (see
    /// [`Builder::pool`](crate::Builder::pool)) instead of the pool the
    /// spawn would otherwise use. The task stays in that pool for its whole
    /// life, across every wake-up. The pool of the runtime's own settings is
    /// called `"default"`.
    ///
    /// An unknown name is not a panic: the handle reports an error with
    /// [`is_rejected`](crate::JoinError::is_rejected) naming the pools there
    /// are.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .pool("cpu", |pool| pool.workers(2).thread_name("cpu"))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     let thread = multipool::spawn(async { std::thread::current().name().map(str::to_owned) })
    ///         .pool("cpu")
    ///         .await
    ///         .unwrap();
    ///     assert!(thread.unwrap().starts_with("cpu-"));
    ///
    ///     let err = multipool::spawn(async {}).pool("gpu").await.unwrap_err();
    ///     assert!(err.is_rejected());
    /// });
    /// ```
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = Some(name.into());
        self
    }

    /// Pins the task to worker `index` of its pool for its whole life: only
    /// that thread ever polls it, even while other workers are idle (they
    /// never steal it). Shared state touched only by tasks pinned to one
    /// worker needs no lock across threads. A pinned task on a busy worker
    /// waits for that worker: pin only what needs the thread.
    ///
    /// Only the pool's permanent workers (`0..min_workers`, which never
    /// retire) can be pinned to; another index is refused, and the handle
    /// says so ([`is_rejected`](crate::JoinError::is_rejected)).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// let on = rt.block_on(async {
    ///     multipool::spawn(async {
    ///         multipool::task::yield_now().await;
    ///         multipool::worker_index()
    ///     })
    ///     .worker(1)
    ///     .await
    /// });
    /// assert_eq!(on.unwrap(), Some(1));
    /// ```
    pub fn worker(mut self, index: usize) -> Self {
        self.options.home = Home::Worker(index);
        self
    }

    /// Pins the task to the worker that `key` hashes to: all tasks spawned
    /// with equal keys run on one worker (see [`worker`](Self::worker) for
    /// what pinning means), and distinct keys spread over the pool's
    /// permanent workers. The mapping is the same on every call (a jump
    /// consistent hash of the key's `Hash`).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(4).build().unwrap();
    /// let workers: Vec<_> = (0..3)
    ///     .map(|_| rt.block_on(rt.spawn(async { multipool::worker_index() }).key("user-42")))
    ///     .collect();
    /// assert!(workers.windows(2).all(|w| w[0].as_ref().unwrap() == w[1].as_ref().unwrap()));
    /// ```
    pub fn key(mut self, key: impl std::hash::Hash) -> Self {
        self.options.home = Home::Key(key_hash(&key));
        self
    }

    /// Starts the task only once `dependency` has finished: it is created
    /// (and counted, and its handle works) when started, but it is not
    /// queued, and its future is not polled, until the task it depends on
    /// has ended, whatever its outcome (completed, panicked, cancelled).
    /// Call it several times to wait for several tasks. While it waits, the
    /// task costs no worker time.
    ///
    /// `dependency` is the [`JoinHandle`] of a task (borrowed; awaiting it
    /// stays the owner's business) or a task's [`Id`]. A task that has
    /// already ended, or an id that names no live task, does not hold the
    /// task back. Everything the dependency did happens before the task's
    /// first poll. (The dependency's own handle may report
    /// [`is_finished`](JoinHandle::is_finished) a moment after that: its
    /// output is stored just after its future was dropped.)
    ///
    /// While it waits, the task can be aborted (it ends at once, cancelled)
    /// and a shutdown cancels it, as any task; it keeps its place in a
    /// bounded queue ([`Builder::max_queued`](crate::Builder::max_queued))
    /// until it first runs. A [`timeout`](Self::timeout) counts from when it
    /// first runs, not from `start`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(async {
    ///     let log = Arc::new(AtomicUsize::new(0));
    ///     let (first, second) = (log.clone(), log.clone());
    ///     let write = multipool::spawn(async move { first.store(42, Ordering::SeqCst) }).start();
    ///     let read = multipool::spawn(async move { second.load(Ordering::SeqCst) })
    ///         .after(&write)
    ///         .start();
    ///     assert_eq!(read.await.unwrap(), 42);
    /// });
    /// ```
    pub fn after(mut self, dependency: impl Dependency) -> Self {
        let after = self.after.get_or_insert_with(Default::default);
        if let Some(id) = sealed::Sealed::dependency_id(&dependency) {
            after.push(id);
        }
        self
    }

    /// Where the task runs: [`worker`](Self::worker), [`key`](Self::key),
    /// or anywhere.
    pub(crate) fn home(mut self, home: Home) -> Self {
        self.options.home = home;
        self
    }

    /// Decides, once the dependencies have ended, whether the task is
    /// cancelled ([`JoinError::is_dependency_failed`]) instead of run.
    /// `TaskGraph`'s failure policy.
    pub(crate) fn gate(mut self, gate: Gate) -> Self {
        self.after
            .get_or_insert_with(Default::default)
            .set_gate(gate);
        self
    }

    /// Starts the task now and returns its handle.
    ///
    /// A task that cannot be started ends at once, and its handle says why:
    /// the runtime has shut down
    /// ([`is_shutdown`](crate::JoinError::is_shutdown)), or the task was
    /// refused ([`is_rejected`](crate::JoinError::is_rejected)): its pool's
    /// queue is full, its pool is unknown or does not take its priority.
    /// `start` never waits; `.await` the `Spawn` to wait for room instead.
    pub fn start(self) -> JoinHandle<F::Output> {
        match self.start_with(false) {
            Ok(task) => JoinHandle::new(task),
            Err(error) => JoinHandle::refused(error.into_join_error()),
        }
    }

    /// Starts the task now, or reports at once why it cannot start: the
    /// pool's queue is full ([`SpawnError::is_full`]), the runtime is shut
    /// down, or the task asks for something its runtime does not have. On
    /// error the future is dropped without being polled.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let handle = rt.spawn(async { 7 }).try_start().expect("unbounded queue");
    /// assert_eq!(multipool::block_on(handle).unwrap(), 7);
    /// ```
    pub fn try_start(self) -> Result<JoinHandle<F::Output>, SpawnError> {
        self.start_with(false).map(JoinHandle::new)
    }

    /// Starts the task now and lets it run on its own; its output is dropped.
    ///
    /// A detached task has no handle to report a refusal to, so a full
    /// queue does not refuse it: it is queued beyond
    /// [`Builder::max_queued`](crate::Builder::max_queued) (library code
    /// such as hyper's executor spawns this way, and dropping its
    /// connection tasks silently would be worse). Use `.await` or
    /// [`try_start`](Self::try_start) where the bound must hold. Other
    /// refusals (shut down, unknown pool, priority not served) still drop
    /// the task.
    pub fn detach(self) {
        if let Ok(task) = self.start_with(true) {
            task.detach();
        }
    }

    /// Every way of starting ends here; `force`: past the queue bound.
    #[inline(always)]
    fn start_with(self, force: bool) -> Result<RawTask<F::Output>, SpawnError> {
        let Spawn {
            future,
            target,
            pool,
            options,
            after,
        } = self;
        let after = after.filter(|after| !after.is_empty());
        let enqueue = if after.is_some() {
            Enqueue::Held
        } else {
            Enqueue::Schedule
        };
        let spawned = match (pool, target) {
            // The common case, kept short: the target's own pool.
            (None, Target::Current) => {
                with_current_pool(|pool| spawn_checked(pool, future, options, force, enqueue))
            }
            (None, Target::Handle(handle)) => {
                spawn_checked(handle.pool(), future, options, force, enqueue)
            }
            (Some(name), target) => with_pool(target, Some(&name), |resolved| match resolved {
                Ok(pool) => spawn_checked(pool, future, options, force, enqueue),
                Err(error) => Err((error, future)),
            }),
        };
        match spawned {
            Ok(spawned) => Ok(finish(spawned, after)),
            Err((error, future)) => {
                // Dropped here, outside the runtime context's borrow: its
                // destructor is user code (see `runtime::context`).
                drop(future);
                Err(error)
            }
        }
    }
}

/// Queues the task just spawned, or holds it until the tasks of `after`
/// have ended.
#[inline(always)]
fn finish<T>(spawned: Spawned<T>, after: Option<Box<After>>) -> RawTask<T> {
    match after {
        None => spawned.finish(),
        Some(after) => spawned.finish_after(*after),
    }
}

/// Spawns on `pool` if it admits the task. A refused future is handed
/// back, for the caller to drop outside any borrow of the runtime context.
#[inline(always)]
fn spawn_checked<F>(
    pool: &Arc<Pool>,
    future: F,
    options: SpawnOptions,
    force: bool,
    enqueue: Enqueue,
) -> Result<Spawned<F::Output>, (SpawnError, F)>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match pool.admit(options.priority, options.home, force) {
        Ok(admission) => Ok(spawn_on(pool, future, options, admission, enqueue)),
        Err(error) => {
            pool.count_refused(options.priority);
            Err((error, future))
        }
    }
}

/// Calls `f` with the pool a spawn goes to: the named pool of the target
/// runtime, or the target's own pool.
fn with_pool<R>(
    target: Target,
    name: Option<&str>,
    f: impl FnOnce(Result<&Arc<Pool>, SpawnError>) -> R,
) -> R {
    let pick = |pool: &Arc<Pool>| -> R {
        match name {
            None => f(Ok(pool)),
            Some(name) => match pool.runtime.pool(name) {
                Some(named) => f(Ok(&named)),
                None => f(Err(unknown_pool(pool, name))),
            },
        }
    };
    match target {
        Target::Handle(handle) => pick(handle.pool()),
        Target::Current => with_current_pool(pick),
    }
}

fn unknown_pool(pool: &Pool, name: &str) -> SpawnError {
    SpawnError::rejected(format!(
        "the runtime has no pool named `{name}` (its pools: {})",
        pool.runtime
            .pool_names()
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl<F> IntoFuture for Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, JoinError>;
    type IntoFuture = SpawnFuture<F>;

    /// Starts the task, first waiting for room if its pool's queue is full;
    /// awaiting yields its output.
    fn into_future(self) -> SpawnFuture<F> {
        let Spawn {
            future,
            target,
            pool,
            options,
            after,
        } = self;
        let resolved = with_pool(target, pool.as_deref(), |resolved| resolved.cloned());
        let state = match resolved {
            Ok(pool) => State::Waiting {
                pool,
                spawn: Some((future, options, after.filter(|after| !after.is_empty()))),
                listener: None,
            },
            Err(error) => State::Running(JoinHandle::refused(SpawnError::into_join_error(error))),
        };
        SpawnFuture { state }
    }
}

/// The future of an awaited [`Spawn`]: waits for room in the pool's queue,
/// starts the task, then yields its output. Dropping it after the task has
/// started detaches the task (as dropping a [`JoinHandle`] does); dropping
/// it while it waits for room drops the future unstarted.
#[must_use = "futures do nothing unless polled"]
pub struct SpawnFuture<F: Future> {
    state: State<F>,
}

enum State<F: Future> {
    Waiting {
        pool: Arc<Pool>,
        spawn: Option<(F, SpawnOptions, Option<Box<After>>)>,
        listener: Option<EventListener>,
    },
    Running(JoinHandle<F::Output>),
}

// The user's future is only moved, never pinned, before it is spawned.
impl<F: Future> Unpin for SpawnFuture<F> {}

impl<F: Future> SpawnFuture<F> {
    /// Aborts the task if it has started and not finished, as
    /// [`JoinHandle::abort`] does; a task still waiting for room has nothing
    /// to abort (dropping the `SpawnFuture` drops its future unstarted).
    /// Used by `task::retry`, whose attempts end with it.
    pub(crate) fn abort(&self) {
        if let State::Running(handle) = &self.state {
            if !handle.is_finished() {
                handle.abort();
            }
        }
    }
}

impl<F> SpawnFuture<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Waits for room and starts the task; `Ready` once it has a handle
    /// (which may report a refusal).
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let State::Waiting {
                pool,
                spawn,
                listener,
            } = &mut self.state
            else {
                return Poll::Ready(());
            };
            let (_, options, _) = spawn.as_ref().expect("a waiting spawn holds its future");
            match pool.admit(options.priority, options.home, false) {
                Ok(admission) => {
                    let (future, options, after) = spawn.take().expect("spawned once");
                    let enqueue = if after.is_some() {
                        Enqueue::Held
                    } else {
                        Enqueue::Schedule
                    };
                    let spawned = spawn_on(pool, future, options, admission, enqueue);
                    self.state = State::Running(JoinHandle::new(finish(spawned, after)));
                }
                Err(error) if error.is_full() => match listener {
                    // Listen first, then re-check: a place freed in
                    // between is not missed.
                    None => *listener = pool.listen_for_room(),
                    Some(waiting) => {
                        if Pin::new(waiting).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        *listener = None;
                    }
                },
                Err(error) => {
                    pool.count_refused(options.priority);
                    self.state = State::Running(JoinHandle::refused(error.into_join_error()));
                }
            }
        }
    }

    /// Waits for room, starts the task and hands its handle over (which
    /// may report a refusal): `.await` with backpressure, but keeping the
    /// handle. Used by `TaskGraph`.
    pub(crate) async fn started(mut self) -> JoinHandle<F::Output> {
        std::future::poll_fn(|cx| self.poll_start(cx)).await;
        match self.state {
            State::Running(handle) => handle,
            State::Waiting { .. } => unreachable!("`poll_start` returned once started"),
        }
    }
}

impl<F> Future for SpawnFuture<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.poll_start(cx).is_pending() {
            return Poll::Pending;
        }
        match &mut this.state {
            State::Running(handle) => Pin::new(handle).poll(cx),
            State::Waiting { .. } => unreachable!("`poll_start` returned once started"),
        }
    }
}

impl<F> fmt::Debug for Spawn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawn")
            .field("priority", &self.options.priority)
            .field("name", &self.options.name)
            .field("timeout", &self.options.timeout)
            .field("pool", &self.pool)
            .field("home", &self.options.home)
            .field("after", &self.after.as_ref().map(|after| after.len()))
            .finish_non_exhaustive()
    }
}

impl<F: Future> fmt::Debug for SpawnFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting for room",
            State::Running(_) => "started",
        };
        f.debug_struct("SpawnFuture")
            .field("state", &state)
            .finish()
    }
}

/// What [`Spawn::after`] waits for: a task named by its [`JoinHandle`]
/// (borrowed) or its [`Id`].
///
/// Sealed: the crate implements it for the handles that name a task.
pub trait Dependency: sealed::Sealed {}

impl<D: sealed::Sealed> Dependency for D {}

pub(crate) mod sealed {
    use super::{Id, JoinHandle};

    /// Implemented by what names a task; a new kind of handle needs one
    /// line here.
    pub trait Sealed {
        /// The id of the task to wait for, entered in the dependency index;
        /// `None` if there is nothing to wait for (it has ended, or was
        /// never created).
        fn dependency_id(&self) -> Option<Id>;
    }

    impl<T> Sealed for &JoinHandle<T> {
        fn dependency_id(&self) -> Option<Id> {
            JoinHandle::dependency_id(self)
        }
    }

    impl Sealed for Id {
        fn dependency_id(&self) -> Option<Id> {
            Some(*self)
        }
    }
}
