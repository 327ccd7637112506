//! The cell behind `task::AbortHandle`: aborting a task without owning it.
//!
//! An `AbortHandle` may outlive everything that keeps its task's allocation
//! (and so the task's [`TaskMeta`]) alive: async-task's `Task` cannot be
//! cloned, and it gives out no reference count of its own. So the handle
//! holds an [`AbortCell`], shared through an `Arc`, which points at the
//! task's metadata only while it is valid:
//!
//! * the first `JoinHandle::abort_handle` creates the cell and installs it
//!   in the task's header (`TaskMeta::abort_cell`: one pointer, null in a
//!   task that never had an `AbortHandle`, kept in the header's
//!   out-of-line part, `side`, made then if it was not yet). The header
//!   then owns one count of the `Arc` until it is dropped.
//! * the cell's pointer is set from its creation until it is cleared,
//!   under the cell's lock: at the task's end of life (below), and at the
//!   latest when the task's header is dropped; so the header cannot be
//!   freed while an abort holds the lock and reads the pointer.
//!   Under the lock, the header tells whether the task has ended
//!   (`TaskMeta::has_ended`): an ended task is not aborted, and reports
//!   finished.
//! * the task's end of life also clears the pointer (early: from then on a
//!   handle needs no header), if a cell is installed by then. The two
//!   sides meet in `TaskMeta::life` (see its docs): the creator installs
//!   the cell (a compare-and-swap on the slot), then sets `ABORT_CELL`;
//!   the end sets `ENDED`. Whichever sets its bit second sees the other's
//!   and clears the cell. (Either way the cell is cleared at the latest
//!   with the header.)
//! * an abort never wakes the task under the cell's lock: waking may cancel
//!   the task on the calling thread during shutdown, and that end of life
//!   takes the lock.
//!
//! A task without an `AbortHandle` pays nothing for it in its header (the
//! slot is in the out-of-line `side`, which most tasks never make), and
//! nothing at its end of life beyond the `life` update every task does. (A waker of the task would keep the
//! header alive without any of this, but neither a `Task` nor its metadata
//! can give one out.)

use std::ptr::NonNull;

use super::{cancel, life, Id, TaskMeta};
use crate::sync::{Arc, AtomicPtr, Ordering, RtMutex as Mutex};

/// What every `AbortHandle` of one task shares; see the module docs.
pub(crate) struct AbortCell {
    /// The task's metadata, until cleared (see the module docs); `None`
    /// after.
    meta: Mutex<Option<NonNull<TaskMeta>>>,
    /// The task's id, kept for after the task's end (or for a task that
    /// was never created: its handle's id).
    id: Id,
}

// SAFETY: the pointer is only dereferenced as `&TaskMeta` (which is `Sync`,
// so sharing it across threads is sound) under the lock, while it is valid
// (see the module docs).
unsafe impl Send for AbortCell {}
// SAFETY: as for `Send`: the cell hands out nothing but `&TaskMeta` under its
// lock.
unsafe impl Sync for AbortCell {}

impl AbortCell {
    /// The cell of a task that never existed (its pool refused it), or has
    /// ended: it aborts nothing.
    pub(crate) fn finished(id: Id) -> Arc<AbortCell> {
        Arc::new(AbortCell {
            meta: Mutex::new(None),
            id,
        })
    }

    /// The task's id, as `JoinHandle::id` gives it: a live task's enters
    /// the dependency index (`TaskMeta::public_id`), so `Spawn::after` can
    /// find it.
    pub(crate) fn id(&self) -> Id {
        let meta = self.meta.lock();
        match *meta {
            // SAFETY: as in `abort`: the pointer is set and we hold the
            // lock, so the header is alive. (The index's lock is taken
            // under this one; nothing takes them the other way round.)
            Some(meta) => unsafe { meta.as_ref() }.public_id(),
            None => self.id,
        }
    }

    /// What `Spawn::after` waits for, given this task: its id, entered in
    /// the dependency index, or `None` if it has ended (its end marks it
    /// ended for the index before it clears this cell) or never existed.
    pub(crate) fn dependency_id(&self) -> Option<Id> {
        let meta = self.meta.lock();
        // SAFETY: as in `id`.
        (*meta).and_then(|meta| unsafe { meta.as_ref() }.dependency_id())
    }

    /// Cancels the task as `JoinHandle::abort` does, if it still lives.
    pub(crate) fn abort(&self) {
        let wake = {
            let meta = self.meta.lock();
            let Some(meta) = *meta else {
                return; // finished: nothing to abort
            };
            // SAFETY: the pointer is set, and we hold the lock: the task's
            // header is alive until its drop clears the pointer, which
            // waits for the lock (see the module docs).
            let meta = unsafe { meta.as_ref() };
            if meta.has_ended() {
                return;
            }
            meta.set_cancel(cancel::ABORTED);
            // The same order as `TaskMeta::abort`: the reason, then the key.
            let key = meta.registry_key.load(Ordering::SeqCst);
            if key == usize::MAX {
                // Queued or running: it sees the reason by itself.
                return;
            }
            (
                meta.pool.clone(),
                meta.is_local(),
                meta.home,
                key,
                meta.owner_id(),
            )
        };
        // Outside the lock (see the module docs). The registry checks the
        // owner: a stale key, or an owner address reused by a later task,
        // costs at worst a spurious wake-up, never a cancellation.
        let (pool, local, home, key, owner) = wake;
        let registry = if local {
            pool.local_registry(home as usize)
        } else {
            &pool.registry
        };
        registry.wake(key, owner);
    }

    /// Whether the task's future has been dropped: it completed, panicked or
    /// was cancelled.
    pub(crate) fn is_finished(&self) -> bool {
        let meta = self.meta.lock();
        // SAFETY: as in `abort`.
        (*meta).is_none_or(|meta| unsafe { meta.as_ref() }.has_ended())
    }

    /// The task's end of life, or its header's drop: aborts see no task
    /// from now on.
    fn clear(&self) {
        *self.meta.lock() = None;
    }
}

/// The abort cell slot of a task's header: null (no cell yet), or an
/// `Arc<AbortCell>` turned into a raw pointer, owned by the header.
pub(crate) struct AbortSlot(AtomicPtr<AbortCell>);

impl AbortSlot {
    pub(super) fn new() -> Self {
        AbortSlot(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// The cell of the task whose header holds this slot, created at the
    /// first call. `meta` is that header, and the caller keeps it alive (it
    /// holds the task's `Task` or a `Runnable`).
    pub(super) fn get_or_create(&self, meta: &TaskMeta) -> Arc<AbortCell> {
        let mut current = self.0.load(Ordering::Acquire);
        if current.is_null() {
            if meta.has_ended() {
                return AbortCell::finished(meta.id());
            }
            let fresh = Arc::into_raw(Arc::new(AbortCell {
                meta: Mutex::new(Some(NonNull::from(meta))),
                id: meta.id(),
            }))
            .cast_mut();
            match self.0.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    current = fresh;
                    // Installed; now tell the end of life (see the module
                    // docs). If it came first, it saw no cell: clear it here.
                    let before = meta.life.fetch_or(life::ABORT_CELL, Ordering::AcqRel);
                    if before & life::ENDED != 0 {
                        // SAFETY: installed: the slot owns a count of it.
                        unsafe { &*fresh }.clear();
                    }
                }
                Err(installed) => {
                    // SAFETY: `fresh` came from `Arc::into_raw` above and was
                    // not installed: this is its only owner.
                    drop(unsafe { Arc::from_raw(fresh) });
                    current = installed;
                }
            }
        }
        // SAFETY: `current` is the installed pointer, from `Arc::into_raw`;
        // the slot owns one count of it until the header is dropped, which
        // cannot happen during this call (the caller keeps the header alive).
        unsafe {
            Arc::increment_strong_count(current);
            Arc::from_raw(current)
        }
    }

    /// The task's end of life, which found `ABORT_CELL` set: clears the
    /// installed cell.
    #[cold]
    pub(super) fn clear_cell(&self) {
        let cell = self.0.load(Ordering::Acquire);
        // SAFETY: `ABORT_CELL` is set only after the cell was installed
        // (see the module docs), and an installed cell lives as long as the
        // slot (which owns a count of it); the slot is alive: it is in the
        // header.
        unsafe { &*cell }.clear();
    }
}

impl Drop for AbortSlot {
    #[inline]
    fn drop(&mut self) {
        let cell = *self.0.get_mut();
        if !cell.is_null() {
            release_cell(cell);
        }
    }
}

/// The header's drop: gives up its count of the installed cell, cleared
/// now if the task's end of life did not clear it already.
#[cold]
fn release_cell(cell: *mut AbortCell) {
    // SAFETY: the slot owned one count of the installed `Arc`, given up
    // here, once (its drop calls this).
    let cell = unsafe { Arc::from_raw(cell) };
    cell.clear();
}
