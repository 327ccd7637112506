//! Channels and locks for tasks: [`async-channel`]'s channels and
//! [`async-lock`]'s `Mutex`, `RwLock`, `Semaphore` and `Barrier`,
//! re-exported so that one dependency gives a task everything it usually
//! needs to talk to other tasks. None of them is written here, and none
//! depends on multipool: they work across runtimes and from plain threads
//! too (each has a blocking method besides its `async` one).
//!
//! | need | use |
//! |---|---|
//! | a queue between tasks, with backpressure | [`bounded`] |
//! | a queue that never makes the sender wait | [`unbounded`] |
//! | one value, once (a "oneshot") | [`bounded`]`(1)`: `send` once, `recv` once |
//! | shared state changed across `.await`s | [`Mutex`], [`RwLock`] |
//! | at most `n` tasks doing something at once | [`Semaphore`] |
//! | `n` tasks meeting at a point | [`Barrier`] |
//!
//! For state that is never held across an `.await`, `std::sync::Mutex`
//! is cheaper and fine.
//!
//! # With priorities
//!
//! * Waiting costs no worker time: a task waiting in `recv().await`,
//!   `lock().await`, `acquire().await` or `wait().await` is parked like any
//!   task that waits, and the worker runs other work.
//! * A woken task goes back to its own priority's queue: a `High` receiver
//!   woken by a `Low` sender runs ahead of queued `Normal` and `Low` work,
//!   as any woken `High` task does. Channels and locks wake their waiters
//!   in the order they began waiting, not by priority (async-lock's
//!   `Mutex` is eventually fair: a waiter starved for long is served
//!   before newcomers).
//! * **Priority inversion.** A `Low` task holding a [`Mutex`] or a
//!   [`Semaphore`] permit (or the `Low` consumer of a full [`bounded`]
//!   channel) delays every `High` task that waits for it, and the `Low`
//!   task only runs when the `High` and `Normal` queues leave it a turn
//!   (see [`Builder::min_share`](crate::Builder::min_share)). Keep critical sections short and free of
//!   `.await`s that wait on other work; give a task that holds a lock
//!   others wait on the highest priority of those waiters; or send the
//!   work to a task of the right priority over a channel instead of
//!   sharing a lock.
//!
//! ```
//! use multipool::sync::{bounded, Mutex};
//! use multipool::Priority;
//! use std::sync::Arc;
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! rt.block_on(async {
//!     let (tx, rx) = bounded::<u32>(8); // senders wait while 8 are queued
//!     let total = Arc::new(Mutex::new(0));
//!     let consumer = {
//!         let total = total.clone();
//!         multipool::spawn(async move {
//!             while let Ok(n) = rx.recv().await {
//!                 *total.lock().await += n;
//!             }
//!         })
//!         .priority(Priority::High)
//!         .start()
//!     };
//!     for n in 1..=100 {
//!         tx.send(n).await.unwrap();
//!     }
//!     drop(tx); // the consumer's `recv` now ends with an error
//!     consumer.await.unwrap();
//!     assert_eq!(*total.lock().await, 5050);
//! });
//! ```
//!
//! A oneshot, with [`bounded`]`(1)`:
//!
//! ```
//! let rt = multipool::Runtime::builder().workers(1).build().unwrap();
//! rt.block_on(async {
//!     let (tx, rx) = multipool::sync::bounded(1);
//!     multipool::spawn(async move { tx.send("done").await.unwrap() }).detach();
//!     assert_eq!(rx.recv().await.unwrap(), "done");
//! });
//! ```
//!
//! [`async-channel`]: https://docs.rs/async-channel/2
//! [`async-lock`]: https://docs.rs/async-lock/3

#[cfg(not(loom))]
#[doc(no_inline)]
pub use async_channel::{
    bounded, unbounded, Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError,
};
#[cfg(not(loom))]
#[doc(no_inline)]
pub use async_lock::{
    Barrier, BarrierWaitResult, Mutex, MutexGuard, MutexGuardArc, RwLock, RwLockReadGuard,
    RwLockReadGuardArc, RwLockUpgradableReadGuard, RwLockUpgradableReadGuardArc, RwLockWriteGuard,
    RwLockWriteGuardArc, Semaphore, SemaphoreGuard, SemaphoreGuardArc,
};

// What follows is the crate's own: `pub(crate)`, not part of the API.
//
// The concurrency primitives the runtime is built from, in one place.
//
// Every module takes atomics, `Arc`, `Weak`, the mutex (`RtMutex`, imported
// as `RtMutex as Mutex`), `Condvar` and `OnceLock` from here rather than
// from `std` directly, so that a model-checking build can swap them in one
// spot.
//
// # `cfg(loom)`
//
// Built with `--cfg loom`, this module hands out loom's atomics, `Arc`,
// `Mutex` and `Condvar` instead of `std`'s, so that loom explores every
// interleaving (and every weak-memory outcome it models) of the code that
// uses them. Only the model crate (`loom/` in the workspace) is built that
// way: it includes this file and the protocol modules it checks (`idle`,
// `registry`) by path. The rest of `multipool` is never built with
// `--cfg loom`: it needs `std` where loom cannot follow (thread-locals,
// crossbeam's queues, `std::task::Wake`, whose methods take `std`'s
// `Arc`), so the protocols that live there are modelled by hand in the model
// crate, each model naming the functions it mirrors.
//
// What loom does not have stays `std`'s under loom too: `OnceLock` and
// `Weak` (loom 0.7 has neither), and `StdMutex` (see there).
//
// # Poisoning
//
// `RtMutex` never poisons: a panic inside a task is caught before it can
// unwind through a lock, and a poisoned lock here only means a panic in our
// own bookkeeping, which must not take the whole runtime down with it.
// `Condvar` keeps `std`'s signatures (its waits return a `LockResult`);
// callers take the guard out of a `PoisonError` the same way.
//
// loom: https://docs.rs/loom/0.7

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, MutexGuard as RtMutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, MutexGuard as RtMutexGuard};

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

/// A mutex whose `lock` ignores poisoning (see the notes at the top of the
/// file); `std`'s, or loom's under `cfg(loom)`. Named `RtMutex` so that
/// `multipool::sync::Mutex` can be the public async one; the runtime's
/// files import it as `RtMutex as Mutex`.
pub(crate) struct RtMutex<T>(Inner<T>);

impl<T> RtMutex<T> {
    /// A `const fn` with `std`, so a mutex can sit in a `static`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        RtMutex(Inner::new(value))
    }

    /// Not `const` under loom: a loom mutex registers with the model's
    /// execution when it is created.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        RtMutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> RtMutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free right now.
    pub(crate) fn try_lock(&self) -> Option<RtMutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

impl<T: Default> Default for RtMutex<T> {
    fn default() -> Self {
        RtMutex::new(T::default())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for RtMutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}
