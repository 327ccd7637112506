//! Worker-local state (`Builder::worker_state`, `with_worker_state`): one
//! value per worker slot of a pool, reached without a lock by the code
//! running on that worker.
//!
//! Invariants:
//! * A pool's values are made once, by the init closure, for every slot
//!   `0..max_workers` in index order, on the thread that builds the
//!   runtime, before any worker starts; an init that panics fails the
//!   build (no thread has started, so nothing is left running).
//! * A slot's value lives in its `WorkerParts` while no thread runs the
//!   slot, and in the worker's `Local` while one does: a retiring worker
//!   hands it back with its queues, and the slot's next worker takes it
//!   over. It is dropped with the pool (or with the worker, if the worker
//!   loop itself unwound).
//! * Only the slot's own thread reaches it, through the worker's `Local`
//!   (the thread-local `CURRENT`): never shared, so no lock. A `RefCell`
//!   turns a reentrant access (`with_worker_state` inside its own closure)
//!   into a panic instead of two aliasing `&mut`.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::with_local;
use crate::error::BuildError;

/// One slot's value, and the name of its type (for error messages).
pub(crate) struct State {
    value: Box<dyn Any + Send>,
    type_name: &'static str,
}

type Init = dyn Fn(usize) -> Box<dyn Any + Send> + Send + Sync;

/// A pool's init closure, as the builder keeps it.
#[derive(Clone)]
pub(crate) struct StateInit {
    init: Arc<Init>,
    type_name: &'static str,
}

impl StateInit {
    pub(crate) fn new<T: Send + 'static>(
        init: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Self {
        StateInit {
            init: Arc::new(move |index| Box::new(init(index))),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The values of slots `0..slots` of the pool `pool`, made in order;
    /// an init that panics is reported as the build's error.
    pub(crate) fn make_all(&self, slots: usize, pool: &str) -> Result<Vec<State>, BuildError> {
        (0..slots)
            .map(
                |index| match catch_unwind(AssertUnwindSafe(|| (self.init)(index))) {
                    Ok(value) => Ok(State {
                        value,
                        type_name: self.type_name,
                    }),
                    Err(payload) => {
                        let message = crate::error::panic_message(&*payload)
                            .unwrap_or("a panic without a message")
                            .to_owned();
                        crate::runtime::task::drop_quietly(payload);
                        Err(BuildError::invalid(
                            "worker_state",
                            format!(
                                "the init closure panicked for worker slot {index} of pool \
                             `{pool}`: {message}"
                            ),
                        ))
                    }
                },
            )
            .collect()
    }
}

impl fmt::Debug for StateInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerState<{}>", self.type_name)
    }
}

/// Why the state could not be reached.
enum Missing {
    OffWorker,
    NoState {
        pool: Box<str>,
    },
    OtherType {
        pool: Box<str>,
        stored: &'static str,
    },
}

/// Calls `f` with this worker's state, or says why it cannot; panics on a
/// reentrant call.
#[track_caller]
fn access<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> Result<R, Missing> {
    with_local(|local| {
        let Some(local) = local else {
            return Err(Missing::OffWorker);
        };
        let Ok(mut slot) = local.state.try_borrow_mut() else {
            panic!(
                "`multipool::with_worker_state` called inside `with_worker_state` on the same \
                 worker: the state is already borrowed by the outer call (get what the inner \
                 code needs from the outer closure's `&mut` instead)"
            );
        };
        let Some(state) = slot.as_mut() else {
            return Err(Missing::NoState {
                pool: local.pool.name.clone(),
            });
        };
        let stored = state.type_name;
        match state.value.downcast_mut::<T>() {
            Some(value) => Ok(f(value)),
            None => Err(Missing::OtherType {
                pool: local.pool.name.clone(),
                stored,
            }),
        }
    })
}

/// Calls `f` with the state of the worker running the current task (or
/// hook), set with [`Builder::worker_state`](crate::Builder::worker_state)
/// (or [`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state) for
/// a named pool). Each worker has its own value, so the state needs no
/// lock and `f` gets it as `&mut T`; `f` is synchronous, so the borrow
/// cannot be held across an `.await` (the task may move to another worker
/// there, unless it is pinned).
///
/// Pinning makes it *per-key* state: every task spawned with the same
/// [`Spawn::key`](crate::Spawn::key) runs on one worker, so a value keyed
/// by it lives in one worker's state only, and is only ever touched by one
/// thread. A sharded counter by user id, with no lock anywhere:
///
/// ```
/// use std::collections::HashMap;
///
/// let rt = multipool::Runtime::builder()
///     .workers(4)
///     .worker_state(|_worker| HashMap::<u64, u64>::new())
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let visits: Vec<_> = (0..1_000u64)
///         .map(|visit| {
///             let user = visit % 10;
///             multipool::spawn(async move {
///                 multipool::with_worker_state(|visits: &mut HashMap<u64, u64>| {
///                     *visits.entry(user).or_default() += 1;
///                 })
///             })
///             .key(user) // every visit of `user` runs on one worker
///             .start()
///         })
///         .collect();
///     for visit in visits {
///         visit.await.unwrap();
///     }
///     // Read each worker's shard on that worker, and merge.
///     let mut totals = HashMap::new();
///     for worker in 0..4 {
///         let shard = multipool::spawn(async {
///             multipool::with_worker_state(|visits: &mut HashMap<u64, u64>| visits.clone())
///         })
///         .worker(worker)
///         .await
///         .unwrap();
///         for (user, count) in shard {
///             assert!(totals.insert(user, count).is_none(), "a user on two workers");
///         }
///     }
///     assert!(totals.len() == 10 && totals.values().all(|&count| count == 100));
/// });
/// ```
///
/// # Panics
///
/// * Off the workers (outside a task or a worker's thread hooks) or on a
///   pool without worker state, or when `T` is not the state's type; see
///   [`try_with_worker_state`] for an `Option` instead.
/// * When called inside `f` (a reentrant call): the outer call holds the
///   state. A panic inside `f` releases it (the state keeps whatever `f`
///   had changed, as with a `RefCell`).
#[track_caller]
pub fn with_worker_state<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> R {
    match access(f) {
        Ok(value) => value,
        Err(Missing::OffWorker) => panic!(
            "`multipool::with_worker_state` called outside a multipool worker: worker state \
             lives on the workers; call it from inside a task (or a worker's thread hook)"
        ),
        Err(Missing::NoState { pool }) => panic!(
            "`multipool::with_worker_state` called on a worker of pool `{pool}`, which has no \
             worker state; set one with `Builder::worker_state` (or `PoolBuilder::worker_state` \
             for a named pool)"
        ),
        Err(Missing::OtherType { pool, stored }) => panic!(
            "`multipool::with_worker_state` asked for a `{}`, but the worker state of pool \
             `{pool}` is a `{stored}`",
            std::any::type_name::<T>()
        ),
    }
}

/// Like [`with_worker_state`], but `None` instead of a panic off the
/// workers, on a pool without worker state, or when `T` is not the state's
/// type. A reentrant call still panics: it is a bug, not an absence.
///
/// ```
/// assert_eq!(multipool::try_with_worker_state(|count: &mut u32| *count), None);
/// let rt = multipool::Runtime::builder()
///     .workers(1)
///     .worker_state(|_| 0u32)
///     .build()
///     .unwrap();
/// let seen = rt.block_on(multipool::spawn(async {
///     let counted = multipool::try_with_worker_state(|count: &mut u32| {
///         *count += 1;
///         *count
///     });
///     (counted, multipool::try_with_worker_state(|_: &mut String| ()))
/// }));
/// assert_eq!(seen.unwrap(), (Some(1), None)); // not a `String`
/// ```
#[track_caller]
pub fn try_with_worker_state<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
    access(f).ok()
}
