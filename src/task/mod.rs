//! Tasks: spawning them ([`Spawn`], [`spawn_blocking`]), awaiting, aborting
//! and detaching them ([`JoinHandle`]), yielding ([`yield_now`]), and
//! retrying a fallible one with backoff and a fallback ([`retry`]).
//!
//! Every task completes with `Result<T, JoinError>`: its value, the panic
//! it caught, or why it was cancelled (aborted, timed out, refused, or its
//! runtime shut down). Nothing spawned is dropped without its handle
//! saying why. The machinery behind this is `runtime::task`.

mod blocking;
mod id;
mod join;
mod retry;
mod spawn;
mod yield_now;

pub use crate::runtime::{Id, Outcome, SlowPoll, TaskInfo, UnhandledPanic};
pub use blocking::spawn_blocking;
pub use id::{id, try_id};
pub use join::JoinHandle;
pub use retry::{backoff, retry, AttemptError, Fallback, NoFallback, Retry, RetryAll, RetryError};
pub use spawn::{Dependency, Spawn, SpawnFuture};
pub use yield_now::{yield_now, YieldNow};
