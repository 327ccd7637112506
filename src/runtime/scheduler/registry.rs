//! The registry of a pool's live tasks.
//!
//! A task is registered (by a clone of its waker) from the first time it
//! returns `Pending` until its future is dropped; before that it is always
//! in a queue or being polled, or held by `Spawn::after` (registered then
//! too, under the waker of its hold, which releases it cancelled when
//! woken; see `task::dependency`). Shutdown uses the registry to reach tasks
//! that sit in no queue because they wait for a wake-up that may never come:
//! it closes the registry and wakes them all, and the scheduler then cancels
//! each one. An abort uses it to schedule the task it cancels.
//!
//! Invariants:
//! * once a shard is closed it accepts no new task; `insert` fails and the
//!   caller cancels the task instead, so no task can slip in after shutdown
//!   collected the wakers.
//! * wakers are never woken, nor dropped, while a shard lock is held: waking
//!   may cancel a task, dropping a task's future removes it from this
//!   registry, and a waker's destructor is user code.
//! * an entry remembers which task it belongs to (its owner: the address of
//!   the task's metadata, unique among live tasks). A key outlives its
//!   entry in a finished task's header; [`Registry::wake`] checks the owner,
//!   so waking by a stale key never wakes a task that reused the slot.
//!
//! The registry is sharded to keep threads from contending: each worker
//! registers in the shard of its index, other threads in one each (see
//! `next_shard`), and a key encodes its shard in its low bits.

use std::cell::Cell;
use std::task::Waker;

use crossbeam_utils::CachePadded;
use slab::Slab;

use crate::sync::{AtomicUsize, Ordering, RtMutex as Mutex};

/// The registry refused a task because the pool has shut down.
#[derive(Debug)]
pub(crate) struct Closed;

#[derive(Default)]
struct Shard {
    /// Each task's waker, with its owner (see the module docs).
    tasks: Slab<(Waker, usize)>,
    closed: bool,
}

pub(crate) struct Registry {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
}

#[cfg(not(loom))]
thread_local! {
    /// The shard a thread that is no worker registers tasks in.
    /// `usize::MAX` until its first registration, which picks it so such
    /// threads start apart.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Hands each thread that is no worker a different shard.
#[cfg(not(loom))]
static SHARD_SEED: AtomicUsize = AtomicUsize::new(0);

/// The shard of this thread. A thread keeps one: a task is usually removed
/// by the worker that registered it, so the shard's lock and slab stay in
/// that worker's cache. A worker takes the shard of its index, so the
/// workers of a pool never share one (there are 4 shards a worker); other
/// threads (`Spawn::after` holds a task from any thread) take one each in
/// turn. (Each thread used to move on to the next shard at every
/// registration; then both workers wrote every shard, and perf on the
/// timer-churn workload showed the shard locks' lines bouncing.)
#[cfg(not(loom))]
fn next_shard() -> usize {
    if let Some(index) = super::worker::current_index() {
        return index;
    }
    SHARD
        .try_with(|shard| {
            let mut index = shard.get();
            if index == usize::MAX {
                index = SHARD_SEED.fetch_add(1, Ordering::Relaxed).wrapping_mul(7);
                shard.set(index);
            }
            index
        })
        .unwrap_or(0)
}

/// Under loom (the model crate, see `crate::sync`) every task registers in
/// the first shard: a thread-local and a `static` would carry over from one
/// explored execution to the next, and one shard is where tasks meet, slot
/// reuse included.
#[cfg(loom)]
fn next_shard() -> usize {
    0
}

impl Registry {
    pub(crate) fn new(workers: usize) -> Self {
        let count = (workers * 4).next_power_of_two();
        let shards = (0..count)
            .map(|_| CachePadded::new(Mutex::new(Shard::default())))
            .collect();
        Registry {
            shards,
            mask: count - 1,
        }
    }

    fn bits(&self) -> u32 {
        self.mask.count_ones()
    }

    /// Registers the task `owner`; returns its key. `Err(Closed)`: the pool
    /// shut down, and the waker is handed back.
    pub(crate) fn insert(&self, waker: Waker, owner: usize) -> Result<usize, (Closed, Waker)> {
        let shard_index = next_shard() & self.mask;
        let mut shard = self.shards[shard_index].lock();
        if shard.closed {
            return Err((Closed, waker));
        }
        let slot = shard.tasks.insert((waker, owner));
        Ok((slot << self.bits()) | shard_index)
    }

    /// Unregisters a task.
    pub(crate) fn remove(&self, key: usize) {
        let entry = self.shards[key & self.mask]
            .lock()
            .tasks
            .try_remove(key >> self.bits());
        // Dropped after the lock is released.
        drop(entry);
    }

    /// Wakes the task `owner` registered under `key`, if it still is.
    pub(crate) fn wake(&self, key: usize, owner: usize) {
        if key == usize::MAX {
            return;
        }
        let waker = match self.shards[key & self.mask]
            .lock()
            .tasks
            .get(key >> self.bits())
        {
            Some((waker, entry_owner)) if *entry_owner == owner => Some(waker.clone()),
            _ => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes every shard and returns the wakers of all registered tasks.
    pub(crate) fn close(&self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.closed = true;
            wakers.extend(shard.tasks.drain().map(|(waker, _)| waker));
        }
        wakers
    }
}
