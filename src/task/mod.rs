//! Tasks: spawning them ([`Spawn`], [`spawn_blocking`]), awaiting, aborting
//! and detaching them ([`JoinHandle`], [`AbortHandle`]), awaiting many in
//! the order they finish ([`JoinSet`]), and yielding ([`yield_now`]).
//!
//! Every task completes with `Result<T, JoinError>`: its value, the panic
//! it caught, or why it was cancelled (aborted, timed out, refused, or its
//! runtime shut down). Nothing spawned is dropped without its handle
//! saying why. The machinery behind this is `runtime::task`.

mod abort;
mod blocking;
mod join;
mod join_set;
mod spawn;
mod yield_now;

pub use abort::AbortHandle;
pub use blocking::spawn_blocking;
pub use join::JoinHandle;
pub use join_set::JoinSet;
pub use spawn::{Spawn, SpawnFuture};
pub use yield_now::{yield_now, YieldNow};
