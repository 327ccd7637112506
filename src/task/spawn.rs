//! [`Spawn`]: the one builder every spawn goes through.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use super::{spawn_on, JoinHandle};
use crate::runtime::{context, Handle};
use crate::Priority;

/// Options of one task, collected by [`Spawn`].
#[derive(Debug, Default)]
pub(crate) struct SpawnOptions {
    pub(crate) priority: Priority,
    pub(crate) name: Option<String>,
    pub(crate) timeout: Option<Duration>,
}

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
/// [`priority`](Self::priority) and [`name`](Self::name), then use it in one of
/// three ways:
///
/// * `.await` it: the task starts and you get its `Result<T, JoinError>`;
/// * [`start`](Self::start) it: the task starts now and you get a
///   [`JoinHandle`];
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
    options: SpawnOptions,
}

impl<F> Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn current(future: F) -> Self {
        Spawn {
            future,
            target: Target::Current,
            options: SpawnOptions::default(),
        }
    }

    pub(crate) fn on(handle: Handle, future: F) -> Self {
        Spawn {
            future,
            target: Target::Handle(handle),
            options: SpawnOptions::default(),
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

    /// Starts the task now and returns its handle.
    ///
    /// A task spawned onto a runtime that has shut down ends at once: its
    /// handle yields an error with [`is_shutdown`](crate::JoinError::is_shutdown).
    pub fn start(self) -> JoinHandle<F::Output> {
        let Spawn {
            future,
            target,
            options,
        } = self;
        let spawned = match target {
            Target::Handle(handle) => spawn_on(handle.pool(), future, options),
            Target::Current => context::with_current_pool(|pool| spawn_on(pool, future, options)),
        };
        JoinHandle::new(spawned.finish())
    }

    /// Starts the task now and lets it run on its own; its output is dropped.
    pub fn detach(self) {
        self.start().detach();
    }
}

impl<F> IntoFuture for Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, crate::JoinError>;
    type IntoFuture = JoinHandle<F::Output>;

    /// Starts the task; awaiting yields its output.
    fn into_future(self) -> JoinHandle<F::Output> {
        self.start()
    }
}

impl<F> fmt::Debug for Spawn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawn")
            .field("priority", &self.options.priority)
            .field("name", &self.options.name)
            .field("timeout", &self.options.timeout)
            .finish_non_exhaustive()
    }
}
