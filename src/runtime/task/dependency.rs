//! Task dependencies: a task started with `Spawn::after` is *held*, never
//! queued and never polled, until every task it depends on has ended.
//!
//! # Design
//!
//! * **The waiting task.** Its `Runnable` is kept in a [`Waiting`] with a
//!   countdown: one per dependency still alive, plus one that [`hold`]
//!   keeps while it sets up. Each dependency that ends counts it down; the
//!   one that reaches zero *releases* it: takes the runnable out (exactly
//!   once, under the `Waiting`'s lock) and queues it as a new task. Until
//!   then the task costs no worker time.
//! * **The dependencies.** A process-wide index maps the [`Id`] of every
//!   task that may be depended on to the `Waiting`s of its dependents. A
//!   task enters it the first time its id is handed out (by
//!   `JoinHandle::id`, `task::id`, `TaskInfo::id`, or `Spawn::after` given
//!   its handle: [`watch`]) and leaves it when it ends ([`end`]). A task
//!   whose id was never handed out is in no index and pays for none of
//!   this (its end of life's one read-modify-write of `TaskMeta::life`
//!   serves its `AbortHandle`s too); so an id a user holds always
//!   resolves: to a live task in the index, or to none (ended, or never
//!   created), which `after` does not wait for.
//! * **Abort and shutdown.** While held, the task is registered in its
//!   pool's registry under its own owner id, with its `Waiting` as the
//!   waker. Being woken there means "cancel it now": `abort` sets its
//!   reason first and wakes it by its key; shutdown closes the registry
//!   and wakes every entry (reason: shutdown). The `Waiting` then releases
//!   the task with that reason, and it is run once, cancelled, like any
//!   cancelled task: its handle says why, and it ends with its outcome.
//!
//! # Invariants
//!
//! * A held runnable is released exactly once and never dropped: every
//!   path (the countdown, a registry wake-up, the `Waiting`'s own `Drop` as
//!   a last resort) goes through [`Waiting::release`], which takes it out
//!   under the lock and queues it.
//! * A task's `life` bits `WATCHED` and `ENDED` (see `TaskMeta::life`)
//!   are only ever set. The index has an entry for a task's id while it is
//!   watched and not ended (and from its end's read-modify-write until the
//!   removal that follows): the entry is inserted under the shard lock by
//!   the compare-exchange that sets `WATCHED`, and removed under it by the
//!   task's end, whose `fetch_or` of `ENDED` tells it whether to look. A
//!   compare-exchange that loses to the end sees `ENDED` and inserts
//!   nothing; an end that follows it finds the entry (after the lock).
//! * [`end`] runs once per task, after its future was dropped (in the task
//!   wrapper's end, `future::End`): everything the dependency did
//!   happens-before its dependents' first poll (the shard lock, then the
//!   countdown's `AcqRel`, then the queue).
//! * No lock is held while a `Waiting` is released or dropped: queuing it
//!   may cancel it inline (its pool closed), which ends it, which releases
//!   its own dependents. That queuing is trampolined per thread
//!   ([`queue`]), so a long chain cancelled at shutdown is a loop, not a
//!   recursion.
//!
//! # Cost
//!
//! Per task, two of the bits of `TaskMeta::life` (a byte in the header's
//! former padding) and nothing at its end beyond the `fetch_or` every task does. A task that
//! enters the index pays one short lock then and one when it ends; a
//! dependent, one allocation (its `Waiting`), a registry entry and one
//! lock per dependency. The alternatives were a pointer to a lazily made notifier
//! in every header (8 bytes per task, and no way to find a task by id), or
//! an index of every task (a lock per spawn).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;
use std::task::{Wake, Waker};

use crossbeam_utils::CachePadded;

use super::{cancel, life, Id, Runnable, TaskMeta};
use crate::sync::{Arc, AtomicUsize, Ordering, RtMutex as Mutex, RtMutexGuard as MutexGuard};

/// Decides, when every dependency has ended, whether the held task runs
/// (`false`) or is cancelled because a dependency failed (`true`). Set by
/// `TaskGraph` for its default failure policy; plain `Spawn::after` has
/// none.
pub(crate) type DependencyGate = Box<dyn FnOnce() -> bool + Send + Sync>;

/// What a `Spawn` waits for before its task may be queued.
#[derive(Default)]
pub(crate) struct After {
    ids: Vec<Id>,
    gate: Option<DependencyGate>,
}

impl After {
    /// Waits for the task `id` too (if it is alive when the task starts).
    pub(crate) fn push(&mut self, id: Id) {
        self.ids.push(id);
    }

    /// Decides at release whether the task is cancelled instead of run.
    pub(crate) fn set_gate(&mut self, gate: DependencyGate) {
        self.gate = Some(gate);
    }

    /// How many tasks it may wait for.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Nothing to wait for and nothing to decide: the task is queued as
    /// usual.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.gate.is_none()
    }
}

/// The dependents of one task, waiting for it to end.
type Dependents = Vec<Arc<Waiting>>;

/// Number of shards of the index (a power of two).
const SHARDS: usize = 64;

type Shard = HashMap<Id, Dependents, BuildHasherDefault<IdHasher>>;

/// The index (see the module docs), sharded by id. Process-wide: ids are.
static INDEX: LazyLock<Box<[CachePadded<Mutex<Shard>>]>> = LazyLock::new(|| {
    (0..SHARDS)
        .map(|_| CachePadded::new(Mutex::new(Shard::default())))
        .collect()
});

fn shard(id: Id) -> MutexGuard<'static, Shard> {
    // Ids are handed out consecutively per thread: the low bits spread.
    INDEX[id.as_u64() as usize & (SHARDS - 1)].lock()
}

/// Hashes an id (unique, consecutive) with one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Makes `meta`'s task findable by its id until it ends; returns whether
/// it is still alive (has not ended). Cheap after the first call.
pub(crate) fn watch(meta: &TaskMeta) -> bool {
    let mut state = meta.life.load(Ordering::Acquire);
    if state & (life::WATCHED | life::ENDED) != 0 {
        return state & life::ENDED == 0;
    }
    let mut shard = shard(meta.id());
    loop {
        if state & (life::WATCHED | life::ENDED) != 0 {
            return state & life::ENDED == 0;
        }
        match meta.life.compare_exchange_weak(
            state,
            state | life::WATCHED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                shard.insert(meta.id(), Vec::new());
                return true;
            }
            // Another bit was set meanwhile (or a spurious failure).
            Err(now) => state = now,
        }
    }
}

/// The dependents of a task that just ended; released by
/// [`release`](Self::release).
#[must_use = "the dependents wait until released"]
pub(crate) struct Ended(Option<Dependents>);

/// Takes the dependents of `meta`'s task out of the index, if it was in
/// it: `before` is its `life` before its end of life set `ENDED`
/// (`TaskMeta::mark_ended`, once, after its future was dropped, and
/// before the `on_task_terminate` hook, so a hook that takes the id does
/// not enter the task again).
#[inline]
pub(crate) fn end(meta: &TaskMeta, before: u8) -> Ended {
    if before & life::WATCHED == 0 {
        return Ended(None);
    }
    end_watched(meta)
}

#[cold]
fn end_watched(meta: &TaskMeta) -> Ended {
    let dependents = shard(meta.id()).remove(&meta.id());
    Ended(dependents)
}

impl Ended {
    /// Counts down each dependent; the last dependency of one queues it.
    #[inline]
    pub(crate) fn release(self) {
        if let Some(dependents) = self.0 {
            for waiting in dependents {
                waiting.dependency_ended();
            }
        }
    }
}

/// A task held until its dependencies have ended; see the module docs.
pub(crate) struct Waiting {
    /// Dependencies not ended yet, plus one while [`hold`] sets up.
    remaining: AtomicUsize,
    /// The task, until released.
    held: Mutex<Option<Held>>,
}

struct Held {
    runnable: Runnable,
    gate: Option<DependencyGate>,
}

/// Holds a new task until the tasks named in `after` have ended. `meta` is
/// the task's header (borrowed from its handle, which the caller keeps
/// until this returns); `runnable` its runnable, not yet queued.
pub(crate) fn hold(meta: &TaskMeta, runnable: Runnable, after: After) {
    let After { ids, gate } = after;
    let waiting = Arc::new(Waiting {
        remaining: AtomicUsize::new(1),
        held: Mutex::new(Some(Held { runnable, gate })),
    });
    // Findable by abort and shutdown from here on.
    match meta
        .registry()
        .insert(Waker::from(waiting.clone()), meta.owner_id())
    {
        Ok(key) => {
            // As in `future::register`: `abort` sets the reason, then
            // reads the key; this stores the key, then reads the reason.
            // (A shutdown that wakes the entry before the key is stored
            // leaves a key in a closed registry, which wakes nothing.)
            meta.registry_key.store(key, Ordering::SeqCst);
            if meta.cancel.load(Ordering::SeqCst) != cancel::NONE {
                waiting.release(Some(cancel::SHUTDOWN));
            }
        }
        Err((_closed, waker)) => {
            // Shutdown has collected the registry already.
            drop(waker);
            waiting.release(Some(cancel::SHUTDOWN));
        }
    }
    for id in ids {
        let mut shard = shard(id);
        // Not in the index: ended (or never a task); nothing to wait for.
        if let Some(dependents) = shard.get_mut(&id) {
            waiting.remaining.fetch_add(1, Ordering::Relaxed);
            dependents.push(waiting.clone());
        }
    }
    waiting.dependency_ended();
}

impl Waiting {
    fn dependency_ended(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release(None);
        }
    }

    /// Takes the task out, if it is still held, and queues it. `reason`:
    /// cancel it with that reason (unless it has one already); `None`: its
    /// dependencies have ended, and its gate decides.
    fn release(&self, reason: Option<u8>) {
        let Some(Held { runnable, gate }) = self.held.lock().take() else {
            return;
        };
        let meta = runnable.metadata();
        // Out of the registry first: once it runs, the task registers there
        // itself (`future::register`).
        let key = meta.registry_key.swap(usize::MAX, Ordering::SeqCst);
        if key != usize::MAX {
            meta.registry().remove(key);
        }
        match reason {
            Some(reason) => meta.set_cancel(reason),
            None => {
                if gate.is_some_and(|gate| gate()) {
                    meta.set_cancel(cancel::DEPENDENCY_FAILED);
                }
            }
        }
        queue(runnable);
    }
}

/// The registry wakes a held task only to cancel it: `abort` set its
/// reason first; shutdown did not, and the reason is shutdown.
impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.release(Some(cancel::SHUTDOWN));
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.release(Some(cancel::SHUTDOWN));
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Every path releases the task before the last reference goes (see
        // the module docs); should one not, the task is cancelled rather
        // than lost.
        self.release(Some(cancel::SHUTDOWN));
    }
}

thread_local! {
    /// Tasks released while this thread was already queuing one; see
    /// [`queue`].
    static RELEASED: RefCell<Option<Vec<Runnable>>> = const { RefCell::new(None) };
}

/// Queues a released task as a new one. Queuing may cancel it inline (its
/// pool closed), which ends it and releases its own dependents: those are
/// queued by the outermost call, in a loop.
fn queue(runnable: Runnable) {
    let mut runnable = Some(runnable);
    let outermost = RELEASED.try_with(|released| {
        let mut released = released.borrow_mut();
        match &mut *released {
            Some(later) => {
                later.extend(runnable.take());
                false
            }
            None => {
                *released = Some(Vec::new());
                true
            }
        }
    });
    match (runnable, outermost) {
        (Some(runnable), Ok(true)) => {
            let _drain = Drain;
            schedule(runnable);
            while let Some(next) = next_released() {
                schedule(next);
            }
        }
        // A thread being torn down: no trampoline.
        (Some(runnable), Err(_)) => schedule(runnable),
        _ => {}
    }
}

fn next_released() -> Option<Runnable> {
    RELEASED
        .try_with(|released| released.borrow_mut().as_mut().and_then(Vec::pop))
        .ok()
        .flatten()
}

/// Ends the outermost [`queue`]: whatever is left (only if scheduling
/// unwound) is queued, and the trampoline is reset.
struct Drain;

impl Drop for Drain {
    fn drop(&mut self) {
        let left = RELEASED
            .try_with(|released| released.borrow_mut().take())
            .ok()
            .flatten();
        for runnable in left.into_iter().flatten() {
            schedule(runnable);
        }
    }
}

fn schedule(runnable: Runnable) {
    let meta = runnable.metadata();
    let pool = meta.pool.clone();
    if pool.observe.histograms {
        meta.restamp_released();
    }
    pool.schedule_new(runnable);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn life_byte_sits_in_task_meta_padding() {
        // What this test guards is that `life` costs no byte: four words
        // of fields (the pool, id, registry key and the side's word, which
        // holds the location until a side is made), then `home` (4 bytes)
        // and four single bytes (`priority`, `cancel`, `life`, `run`) fill
        // the fifth word exactly. With async-task's own 33 bytes of header
        // that makes 80, and a task of a 32-byte future 120, the largest
        // allocation glibc serves from its fast bins (see `side`);
        // `tests/task_size.rs` guards that.
        assert_eq!(std::mem::size_of::<TaskMeta>(), 40);
    }
}
