//! Error types: why a runtime could not be built, why a task has no output,
//! and why there is no current runtime.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::sync::{PoisonError, StdMutex};

/// The reason [`Builder::build`](crate::Builder::build) refused a configuration.
///
/// ```
/// let err = multipool::Runtime::builder().workers(0).build().unwrap_err();
/// assert!(err.to_string().contains("workers"));
/// ```
#[derive(Debug)]
pub struct BuildError {
    kind: BuildErrorKind,
}

#[derive(Debug)]
enum BuildErrorKind {
    /// A setting has a value the runtime cannot work with.
    InvalidSetting {
        setting: &'static str,
        message: String,
    },
    /// The operating system refused to start a worker thread.
    ThreadSpawn(io::Error),
}

impl BuildError {
    pub(crate) fn invalid(setting: &'static str, message: impl Into<String>) -> Self {
        BuildError {
            kind: BuildErrorKind::InvalidSetting {
                setting,
                message: message.into(),
            },
        }
    }

    pub(crate) fn thread_spawn(err: io::Error) -> Self {
        BuildError {
            kind: BuildErrorKind::ThreadSpawn(err),
        }
    }

    /// The builder setting that was rejected, if the error is about one.
    pub fn setting(&self) -> Option<&'static str> {
        match &self.kind {
            BuildErrorKind::InvalidSetting { setting, .. } => Some(setting),
            BuildErrorKind::ThreadSpawn(_) => None,
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BuildErrorKind::InvalidSetting { setting, message } => {
                write!(f, "invalid runtime setting `{setting}`: {message}")
            }
            BuildErrorKind::ThreadSpawn(err) => {
                write!(f, "failed to start a worker thread: {err}")
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            BuildErrorKind::ThreadSpawn(err) => Some(err),
            BuildErrorKind::InvalidSetting { .. } => None,
        }
    }
}

/// Why a task ended without producing its output: it panicked, was aborted,
/// timed out, held more memory than its limit, went over a CPU limit, was
/// rejected, a task it depended on failed, or its runtime shut down.
///
/// Returned by awaiting a [`JoinHandle`](crate::JoinHandle) (or a
/// [`Spawn`](crate::Spawn)). A task either completes, or its handle says which
/// of these happened to it.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     let err = multipool::spawn(async { panic!("boom") }).await.unwrap_err();
///     assert!(err.is_panic());
///     assert_eq!(err.to_string(), "task panicked: boom");
/// });
/// ```
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    /// [`JoinHandle::abort`](crate::JoinHandle::abort) was called.
    Aborted,
    /// The runtime shut down (or had shut down) before the task completed.
    Shutdown,
    /// The deadline set with `Spawn::timeout` passed first.
    TimedOut,
    /// The task held more than its `Spawn::memory_limit` at the end of a
    /// poll.
    MemoryExceeded { held: usize, limit: usize },
    /// Its poll time went over `Spawn::cpu_budget`: (used, budget), in
    /// nanoseconds (as the limits count them; see `CpuLimits`). Nanoseconds
    /// rather than `Duration`s keep `JoinError`, and so every task's output
    /// slot, at 24 bytes.
    BudgetExceeded(u64, u64),
    /// One of its polls lasted longer than `Spawn::max_poll`: (took, max),
    /// in nanoseconds.
    PollTooLong(u64, u64),
    /// The task was refused before it ran; the message says why.
    Rejected(Cow<'static, str>),
    /// A task it depended on failed, so it was cancelled before it ran
    /// (a [`TaskGraph`](crate::graph::TaskGraph) node).
    DependencyFailed,
    /// The task's future panicked. The payload sits in a mutex only so that
    /// `JoinError` is `Sync` (panic payloads are `Send` but not `Sync`);
    /// boxed, so the rare panic pays for the mutex's bytes rather than
    /// every task's output slot.
    Panic(Box<StdMutex<Box<dyn Any + Send + 'static>>>),
}

impl JoinError {
    pub(crate) fn aborted() -> Self {
        JoinError {
            repr: Repr::Aborted,
        }
    }

    pub(crate) fn shutdown() -> Self {
        JoinError {
            repr: Repr::Shutdown,
        }
    }

    pub(crate) fn timed_out() -> Self {
        JoinError {
            repr: Repr::TimedOut,
        }
    }

    pub(crate) fn memory_exceeded(held: usize, limit: usize) -> Self {
        JoinError {
            repr: Repr::MemoryExceeded { held, limit },
        }
    }

    /// `used` and `budget` in nanoseconds.
    pub(crate) fn budget_exceeded(used: u64, budget: u64) -> Self {
        JoinError {
            repr: Repr::BudgetExceeded(used, budget),
        }
    }

    /// `took` and `max` in nanoseconds.
    pub(crate) fn poll_too_long(took: u64, max: u64) -> Self {
        JoinError {
            repr: Repr::PollTooLong(took, max),
        }
    }

    pub(crate) fn rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        JoinError {
            repr: Repr::Rejected(reason.into()),
        }
    }

    pub(crate) fn dependency_failed() -> Self {
        JoinError {
            repr: Repr::DependencyFailed,
        }
    }

    // Cold and out of line: it boxes, and a caller on the task's hot path
    // (the wrapper's drop of the future) must stay small enough to inline.
    #[cold]
    #[inline(never)]
    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        JoinError {
            repr: Repr::Panic(Box::new(StdMutex::new(payload))),
        }
    }

    /// Whether the task was cancelled: aborted through its handle, dropped
    /// because its runtime shut down (see [`is_shutdown`](Self::is_shutdown)),
    /// or cancelled because a task it depended on failed (see
    /// [`is_dependency_failed`](Self::is_dependency_failed)).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self.repr,
            Repr::Aborted | Repr::Shutdown | Repr::DependencyFailed
        )
    }

    /// Whether the task was cancelled before it ran because a task it
    /// depended on failed: a [`TaskGraph`](crate::graph::TaskGraph) node
    /// whose input completed with an error, panicked or was cancelled
    /// (transitively). It ended with [`Outcome::Cancelled`], as an aborted
    /// task does; [`is_cancelled`](Self::is_cancelled) is true too.
    ///
    /// [`Outcome::Cancelled`]: crate::task::Outcome::Cancelled
    pub fn is_dependency_failed(&self) -> bool {
        matches!(self.repr, Repr::DependencyFailed)
    }

    /// Whether the task was dropped because its runtime shut down, or was
    /// spawned onto a runtime that had already shut down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.repr, Repr::Shutdown)
    }

    /// Whether the task was cancelled because the deadline given with
    /// [`Spawn::timeout`](crate::Spawn::timeout) passed first.
    pub fn is_timeout(&self) -> bool {
        matches!(self.repr, Repr::TimedOut)
    }

    /// Whether the task was cancelled because it held more memory than
    /// its [`Spawn::memory_limit`](crate::Spawn::memory_limit) at the end
    /// of a poll. `Display` gives the bytes it held and its limit.
    pub fn is_memory_exceeded(&self) -> bool {
        matches!(self.repr, Repr::MemoryExceeded { .. })
    }

    /// Whether the task was cancelled because its poll time, summed over
    /// its polls, went over the budget given with
    /// [`Spawn::cpu_budget`](crate::Spawn::cpu_budget).
    pub fn is_budget_exceeded(&self) -> bool {
        matches!(self.repr, Repr::BudgetExceeded(..))
    }

    /// Whether the task was cancelled because one of its polls lasted
    /// longer than [`Spawn::max_poll`](crate::Spawn::max_poll).
    pub fn is_poll_too_long(&self) -> bool {
        matches!(self.repr, Repr::PollTooLong(..))
    }

    /// Whether the task was refused before it ran: a zero
    /// [`Spawn::timeout`](crate::Spawn::timeout) (or CPU limit), a full queue (see
    /// [`Builder::max_queued`](crate::Builder::max_queued)), an unknown
    /// [`Spawn::pool`](crate::Spawn::pool) name, a priority its pool does
    /// not serve, or a [`Spawn::memory_limit`](crate::Spawn::memory_limit)
    /// without [`TaskAlloc`](crate::alloc::TaskAlloc) installed; `Display`
    /// says which.
    pub fn is_rejected(&self) -> bool {
        matches!(self.repr, Repr::Rejected(_))
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic payload, to re-raise with [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// Panics if the error is not a panic; see [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("`JoinError::into_panic` called on an error that is not a panic")
    }

    /// The panic payload, or the error itself if the task did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => {
                Ok(payload.into_inner().unwrap_or_else(PoisonError::into_inner))
            }
            repr => Err(JoinError { repr }),
        }
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Aborted => f.write_str("task was cancelled"),
            Repr::Shutdown => f.write_str("task was cancelled because its runtime shut down"),
            Repr::TimedOut => f.write_str("task timed out"),
            Repr::MemoryExceeded { held, limit } => write!(
                f,
                "task exceeded its memory limit: it held {held} bytes after a poll, \
                 over its limit of {limit}"
            ),
            Repr::BudgetExceeded(used, budget) => write!(
                f,
                "task went over its CPU budget: polled for {:?}, budget {:?}",
                Duration::from_nanos(*used),
                Duration::from_nanos(*budget)
            ),
            Repr::PollTooLong(took, max) => write!(
                f,
                "task was cancelled after a poll of {:?}, longer than its `max_poll` of {:?}",
                Duration::from_nanos(*took),
                Duration::from_nanos(*max)
            ),
            Repr::Rejected(reason) => write!(f, "task was rejected: {reason}"),
            Repr::DependencyFailed => {
                f.write_str("task was cancelled because a task it depends on failed")
            }
            Repr::Panic(payload) => {
                let payload = payload.lock().unwrap_or_else(PoisonError::into_inner);
                match panic_message(&**payload) {
                    Some(message) => write!(f, "task panicked: {message}"),
                    None => f.write_str("task panicked"),
                }
            }
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Aborted => f.write_str("JoinError::Cancelled(Aborted)"),
            Repr::Shutdown => f.write_str("JoinError::Cancelled(Shutdown)"),
            Repr::TimedOut => f.write_str("JoinError::TimedOut"),
            Repr::MemoryExceeded { held, limit } => {
                write!(
                    f,
                    "JoinError::MemoryExceeded {{ held: {held}, limit: {limit} }}"
                )
            }
            Repr::BudgetExceeded(used, budget) => {
                write!(
                    f,
                    "JoinError::BudgetExceeded {{ used: {:?}, budget: {:?} }}",
                    Duration::from_nanos(*used),
                    Duration::from_nanos(*budget)
                )
            }
            Repr::PollTooLong(took, max) => {
                write!(
                    f,
                    "JoinError::PollTooLong {{ took: {:?}, max: {:?} }}",
                    Duration::from_nanos(*took),
                    Duration::from_nanos(*max)
                )
            }
            Repr::Rejected(reason) => write!(f, "JoinError::Rejected({reason:?})"),
            Repr::DependencyFailed => f.write_str("JoinError::Cancelled(DependencyFailed)"),
            Repr::Panic(_) => write!(f, "JoinError::Panic({self})"),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(err: JoinError) -> io::Error {
        io::Error::other(err)
    }
}

/// Why [`Spawn::try_start`](crate::Spawn::try_start) could not start a task.
/// The task's future was dropped without being polled.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).max_queued(1).build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// // Occupy the only worker, then fill the one queue place.
/// let busy = rt.spawn(async move { rx.recv().unwrap() }).start();
/// while rt.handle().metrics().num_alive_tasks() == 0 || rt.handle().metrics().num_queued() > 0 {
///     std::thread::yield_now();
/// }
/// let queued = rt.spawn(async {}).try_start().unwrap();
/// let err = rt.spawn(async {}).try_start().unwrap_err();
/// assert!(err.is_full());
/// tx.send(()).unwrap();
/// # multipool::block_on(async { busy.await.unwrap(); queued.await.unwrap(); });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    /// Boxed: spawning returns `Result<_, SpawnError>` on its hot path, and
    /// a one-word error keeps that result small.
    kind: Box<SpawnErrorKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SpawnErrorKind {
    Full { max_queued: usize },
    Shutdown,
    Rejected(Cow<'static, str>),
}

impl SpawnError {
    pub(crate) fn full(max_queued: usize) -> Self {
        SpawnError {
            kind: Box::new(SpawnErrorKind::Full { max_queued }),
        }
    }

    pub(crate) fn shutdown() -> Self {
        SpawnError {
            kind: Box::new(SpawnErrorKind::Shutdown),
        }
    }

    pub(crate) fn rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        SpawnError {
            kind: Box::new(SpawnErrorKind::Rejected(reason.into())),
        }
    }

    /// Whether the pool's queue was full (see
    /// [`Builder::max_queued`](crate::Builder::max_queued)); trying again
    /// later may succeed.
    pub fn is_full(&self) -> bool {
        matches!(*self.kind, SpawnErrorKind::Full { .. })
    }

    /// Whether the runtime has shut down or is shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(*self.kind, SpawnErrorKind::Shutdown)
    }

    /// Whether the task was refused for what it asked for (an unknown pool,
    /// a priority its pool does not serve, a zero timeout); trying again
    /// will fail the same way.
    pub fn is_rejected(&self) -> bool {
        matches!(*self.kind, SpawnErrorKind::Rejected(_))
    }

    /// The `JoinError` a handle reports for the same refusal.
    pub(crate) fn into_join_error(self) -> JoinError {
        match *self.kind {
            SpawnErrorKind::Shutdown => JoinError::shutdown(),
            _ => JoinError::rejected(self.to_string()),
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            SpawnErrorKind::Full { max_queued } => write!(
                f,
                "the pool's queue is full ({max_queued} tasks waiting to start, see `Builder::max_queued`)"
            ),
            SpawnErrorKind::Shutdown => f.write_str("the runtime has shut down"),
            SpawnErrorKind::Rejected(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for SpawnError {}

/// There is no multipool runtime entered on this thread.
///
/// Returned by [`Handle::try_current`](crate::Handle::try_current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryCurrentError(());

impl TryCurrentError {
    pub(crate) fn new() -> Self {
        TryCurrentError(())
    }
}

impl fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no multipool runtime is entered on this thread: \
             call this from a task, from `Runtime::block_on`, or inside `Handle::enter`",
        )
    }
}

impl std::error::Error for TryCurrentError {}
