//! The concurrency primitives the runtime is built from, in one place.
//!
//! Every module takes atomics, `Arc`, `Weak`, `Mutex`, `Condvar` and
//! `OnceLock` from here rather than from `std` directly, so that a
//! model-checking build can swap them in one spot.
//!
//! # `cfg(loom)`
//!
//! Built with `--cfg loom`, this module hands out [loom]'s atomics, `Arc`,
//! `Mutex` and `Condvar` instead of `std`'s, so that loom explores every
//! interleaving (and every weak-memory outcome it models) of the code that
//! uses them. Only the model crate (`loom/` in the workspace) is built that
//! way: it includes this file and the protocol modules it checks (`idle`,
//! `registry`) by path. The rest of `multipool` is never built with
//! `--cfg loom`: it needs `std` where loom cannot follow (thread-locals,
//! crossbeam's queues, [`std::task::Wake`], whose methods take `std`'s
//! `Arc`), so the protocols that live there are modelled by hand in the model
//! crate, each model naming the functions it mirrors.
//!
//! What loom does not have stays `std`'s under loom too: [`OnceLock`] and
//! [`Weak`] (loom 0.7 has neither), and [`StdMutex`] (see there).
//!
//! # Poisoning
//!
//! [`Mutex`] never poisons: a panic inside a task is caught before it can
//! unwind through a lock, and a poisoned lock here only means a panic in our
//! own bookkeeping, which must not take the whole runtime down with it.
//! [`Condvar`] keeps `std`'s signatures (its waits return a `LockResult`);
//! callers take the guard out of a `PoisonError` the same way.
//!
//! [loom]: https://docs.rs/loom/0.7

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, MutexGuard};

/// `std`'s in every build: loom 0.7 has no `OnceLock` and no `Weak`. Neither
/// is part of a protocol that a model checks: a `OnceLock` here is written
/// once before it is shared (or under its own internal synchronisation, for
/// lazily created inboxes, whose contents are what the models follow), and
/// a `Weak` only lets a runtime's pools name each other without a cycle.
pub(crate) use std::sync::{OnceLock, Weak};

/// `std`'s mutex, with `std`'s poisoning API, in every build: for a value
/// that is not runtime state and may outlive a loom model's execution (the
/// panic payload inside a `JoinError`, which the lock only makes `Sync`).
/// It orders nothing the runtime relies on, so a model has nothing to check
/// in it.
pub(crate) use std::sync::{Mutex as StdMutex, PoisonError};

#[cfg(loom)]
use loom::sync::Mutex as Inner;
#[cfg(not(loom))]
use std::sync::Mutex as Inner;

/// A mutex whose `lock` ignores poisoning (see the module docs); `std`'s, or
/// loom's under `cfg(loom)`.
pub(crate) struct Mutex<T>(Inner<T>);

impl<T> Mutex<T> {
    /// A `const fn` with `std`, so a mutex can sit in a `static`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    /// Not `const` under loom: a loom mutex registers with the model's
    /// execution when it is created.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free right now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}
