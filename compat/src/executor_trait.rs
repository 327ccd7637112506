//! The [executor-trait](https://docs.rs/executor-trait/2) 2.x traits on
//! multipool: [`MultipoolExecutor`].
//!
//! Libraries that take an `executor_trait::FullExecutor` (lapin, the AMQP
//! client, and others from its family) spawn every task, and run every
//! blocking call, on multipool through [`MultipoolExecutor`], at the
//! priority you choose.
//!
//! ```
//! use std::sync::Arc;
//!
//! use executor_trait::FullExecutor;
//! use multipool::Priority;
//! use multipool_compat::executor_trait::MultipoolExecutor;
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! // What lapin's `ConnectionProperties::with_executor` takes.
//! let exec: Arc<dyn FullExecutor + Send + Sync> =
//!     Arc::new(MultipoolExecutor::on(rt.handle().clone()).priority(Priority::High));
//! let (tx, rx) = std::sync::mpsc::channel();
//! let task = exec.spawn(Box::pin(async move { tx.send(6 * 7).unwrap() }));
//! // A `Box<dyn Task>` is not `Unpin`: pin it to await it.
//! exec.block_on(Box::pin(async move { Box::into_pin(task).await }));
//! assert_eq!(rx.recv().unwrap(), 42);
//! ```
//!
//! # Invariants
//!
//! * [`spawn`](Executor::spawn) never blocks and never panics. A full
//!   queue does not refuse it: the task is queued beyond
//!   [`max_queued`](multipool::Builder::max_queued)
//!   ([`Spawn::start_unbounded`](multipool::Spawn::start_unbounded)), since
//!   lapin drops the tasks it spawns and a refusal would end them unseen. A
//!   task its pool refuses otherwise (the runtime shut down) is dropped;
//!   only awaiting its task (`Box<dyn Task>`) reports the refusal (see
//!   below).
//! * Dropping a task (`Box<dyn Task>`) detaches the task: it runs on, as when a
//!   multipool `JoinHandle` is dropped (and as executor-trait's tokio and
//!   async-global-executor adapters do). lapin drops the tasks it spawns
//!   and counts on this.
//! * Awaiting a task (`Box<dyn Task>`) yields `()` once the task has returned.
//!   If the task panicked, the panic is resumed in the awaiter with its
//!   original payload. If the task ended without returning for another
//!   reason (its runtime shut down, its pool refused it), the awaiter
//!   panics with multipool's `JoinError` message: the trait's `()` has no
//!   room for "it did not run", and a silent `()` would claim it did.
//! * [`cancel`](Task::cancel) never panics: it aborts the task, waits until
//!   its future is dropped (or has returned), and gives `Some(())` if the
//!   task had returned first, `None` otherwise (a task that panicked, or
//!   never ran, included).
//! * [`spawn_blocking`](BlockingExecutor::spawn_blocking) runs the closure
//!   on multipool's blocking pool and resolves once it has returned; a
//!   panic in it is resumed in the awaiter, and a refusal (the blocking
//!   queue is full, the runtime shut down) panics with multipool's
//!   message, as above.
//! * Nothing here uses `unsafe`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::executor_trait::{BlockingExecutor, Executor, FullExecutor, LocalExecutorError, Task};
use futures_task::LocalSpawn;
use multipool::{Handle, JoinError, JoinHandle, Priority};

/// The executor-trait 2.x executor (`Executor`, `BlockingExecutor`, hence
/// `FullExecutor`) on multipool.
///
/// By [`Default`]/[`new`](Self::new) onto the runtime current where the
/// task is spawned (the global one outside any runtime, as
/// `multipool::spawn`), or [`on`](Self::on) a given runtime; at
/// [`Priority::Normal`] unless set with [`priority`](Self::priority). The
/// same API as [`HyperExecutor`](crate::hyper::HyperExecutor).
///
/// * [`block_on`](Executor::block_on) runs the future on the calling
///   thread with the runtime entered (`Handle::block_on`; with no runtime
///   given, the current one if any, else `multipool::block_on`). Like
///   those, it panics on a multipool worker thread.
/// * [`spawn`](Executor::spawn) spawns a task at the executor's priority.
/// * [`spawn_local`](Executor::spawn_local) pins a `!Send` task to the
///   calling worker (`multipool::spawn_local`), at [`Priority::Normal`]
///   whatever the executor's priority (multipool's local tasks have no
///   other). It works only when called inside a task, on a worker of the
///   executor's runtime that still takes tasks; anywhere else it hands the
///   future back in a `LocalExecutorError`, as the trait asks of an
///   executor that cannot run it.
/// * [`spawn_blocking`](BlockingExecutor::spawn_blocking) runs the closure
///   on the runtime's blocking pool (`Handle::spawn_blocking`).
///
/// ```
/// use executor_trait::{BlockingExecutor, Executor};
/// use multipool::Priority;
/// use multipool_compat::executor_trait::MultipoolExecutor;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let exec = MultipoolExecutor::on(rt.handle().clone()).priority(Priority::High);
/// let (tx, rx) = std::sync::mpsc::channel();
/// let inner = exec.clone();
/// exec.block_on(Box::pin(async move {
///     let worker = inner.spawn(Box::pin(async move { tx.send(multipool::worker_index()).unwrap() }));
///     Box::into_pin(worker).await;
///     let (btx, brx) = std::sync::mpsc::channel();
///     inner.spawn_blocking(Box::new(move || btx.send("blocking").unwrap())).await;
///     assert_eq!(brx.recv().unwrap(), "blocking");
/// }));
/// assert_eq!(rx.recv().unwrap(), Some(0));
/// ```
#[derive(Clone, Default)]
pub struct MultipoolExecutor {
    handle: Option<Handle>,
    priority: Priority,
}

impl MultipoolExecutor {
    /// An executor spawning onto the current runtime, at normal priority.
    ///
    /// ```
    /// use executor_trait::Executor;
    /// use multipool_compat::executor_trait::MultipoolExecutor;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let exec = MultipoolExecutor::new();
    /// // Inside `rt`, its tasks go to `rt`.
    /// let on_rt = rt.block_on(async move {
    ///     let (tx, rx) = futures::channel::oneshot::channel();
    ///     exec.spawn(Box::pin(async move {
    ///         tx.send(multipool::Handle::current().pool_name().to_owned()).unwrap()
    ///     }));
    ///     rx.await.unwrap()
    /// });
    /// assert_eq!(on_rt, "default");
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// An executor spawning onto `handle`'s runtime.
    pub fn on(handle: Handle) -> Self {
        MultipoolExecutor {
            handle: Some(handle),
            priority: Priority::Normal,
        }
    }

    /// The priority of the tasks it spawns (not of `spawn_local`'s, which
    /// run at [`Priority::Normal`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The runtime's handle: the one given, else the current runtime's.
    fn current(&self) -> Option<Handle> {
        match &self.handle {
            Some(handle) => Some(handle.clone()),
            None => Handle::try_current().ok(),
        }
    }
}

impl fmt::Debug for MultipoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipoolExecutor")
            .field("handle", &self.handle)
            .field("priority", &self.priority)
            .finish()
    }
}

/// Both halves: what lapin's `with_executor` takes.
impl FullExecutor for MultipoolExecutor {}

impl Executor for MultipoolExecutor {
    fn block_on(&self, f: Pin<Box<dyn Future<Output = ()>>>) {
        match self.current() {
            Some(handle) => handle.block_on(f),
            None => multipool::block_on(f),
        }
    }

    fn spawn(&self, f: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn Task> {
        let spawn = match &self.handle {
            Some(handle) => handle.spawn(f),
            None => multipool::spawn(f),
        };
        // Past a full queue, as `HyperExecutor` spawns: lapin drops the
        // tasks it spawns, and a refusal would end them unseen.
        Box::new(MultipoolTask::new(
            spawn.priority(self.priority).start_unbounded(),
        ))
    }

    fn spawn_local(
        &self,
        f: Pin<Box<dyn Future<Output = ()>>>,
    ) -> Result<Box<dyn Task>, LocalExecutorError> {
        // `status_local` checks that this thread is a worker of the
        // handle's pool that still takes tasks: the only place where
        // `spawn_local` neither panics nor pins the task elsewhere.
        match self.current() {
            Some(handle) if handle.status_local().is_ok() => {
                Ok(Box::new(MultipoolTask::new(multipool::spawn_local(f))))
            }
            _ => Err(LocalExecutorError(f)),
        }
    }
}

#[::async_trait::async_trait]
impl BlockingExecutor for MultipoolExecutor {
    async fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send + 'static>) {
        let handle = match &self.handle {
            Some(handle) => handle.spawn_blocking(f),
            None => multipool::task::spawn_blocking(f),
        };
        if let Err(error) = handle.await {
            fail(error);
        }
    }
}

/// A task spawned by [`MultipoolExecutor`], handed out as a
/// `Box<dyn Task>`: multipool's [`JoinHandle`] behind the executor-trait
/// [`Task`], with the behaviour the module invariants state. Dropping it
/// detaches the task (the `JoinHandle`'s drop).
struct MultipoolTask {
    handle: JoinHandle<()>,
}

impl MultipoolTask {
    fn new(handle: JoinHandle<()>) -> Self {
        MultipoolTask { handle }
    }
}

impl fmt::Debug for MultipoolTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipoolTask")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Future for MultipoolTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match ready!(Pin::new(&mut self.handle).poll(cx)) {
            Ok(()) => Poll::Ready(()),
            Err(error) => fail(error),
        }
    }
}

#[::async_trait::async_trait(?Send)]
impl Task for MultipoolTask {
    async fn cancel(self: Box<Self>) -> Option<()> {
        self.handle.abort();
        // Resolves once the future is dropped, or with its output if it
        // returned first.
        self.handle.await.ok()
    }
}

/// Reports a task that did not return: resumes its panic, or panics with
/// why it did not run to the end.
fn fail(error: JoinError) -> ! {
    match error.try_into_panic() {
        Ok(payload) => resume(payload),
        Err(error) => panic!("multipool task did not complete: {error}"),
    }
}

fn resume(payload: Box<dyn Any + Send + 'static>) -> ! {
    std::panic::resume_unwind(payload)
}
