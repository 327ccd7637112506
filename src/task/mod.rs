//! Tasks: spawning them ([`Spawn`], [`spawn_blocking`]), awaiting, aborting
//! and detaching them ([`JoinHandle`], [`AbortHandle`]), awaiting many in
//! the order they finish ([`JoinSet`]), yielding ([`yield_now()`], the
//! cooperative budget: [`consume_budget`], [`unconstrained`]), limiting the
//! CPU time they take ([`Spawn::cpu_budget`], [`Spawn::max_poll`],
//! [`Spawn::cpu_budget_demote`]), and retrying a fallible one with backoff
//! and a fallback ([`retry()`]).
//!
//! Every task completes with `Result<T, JoinError>`: its value, the panic
//! it caught, or why it was cancelled (aborted, timed out, refused, or its
//! runtime shut down). Nothing spawned is dropped without its handle
//! saying why. The machinery behind this is `runtime::task`.

mod abort;
mod blocking;
mod coop;
mod id;
mod join;
mod join_set;
mod retry;
mod spawn;
mod yield_now;

pub use crate::runtime::{Id, Outcome, SlowPoll, TaskInfo, UnhandledPanic};
pub use abort::AbortHandle;
pub use blocking::spawn_blocking;
pub use coop::{consume_budget, unconstrained, Unconstrained};
pub use id::{id, try_id};
pub use join::JoinHandle;
pub use join_set::JoinSet;
pub use retry::{backoff, retry, AttemptError, Fallback, NoFallback, Retry, RetryAll, RetryError};
pub use spawn::{Dependency, Spawn, SpawnFuture};
pub use yield_now::{yield_now, YieldNow};
