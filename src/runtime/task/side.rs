//! The rarely used part of a task's header, kept out of line: the task's
//! name, the stamp of the latency histograms, and the slot of its
//! `AbortHandle`s' cell.
//!
//! Why: every task pays for every byte of its header, and most tasks use
//! none of these. Inline they took 32 bytes, and with them (and a
//! `JoinError` of 40 bytes, now 24) a small task's allocation (async-task's
//! header, [`TaskMeta`](super::TaskMeta), the wrapped future or its
//! output) took 152 bytes: three cache lines, and past
//! 128 bytes, the largest chunk glibc's allocator serves from its fast
//! bins. Out of line, the header keeps one pointer for them, an empty task
//! takes 120 bytes (`tests/task_size.rs`), and a pending task 33 bytes
//! less of resident memory (`examples/memory_per_task.rs`: 337 → 304).
//!
//! Invariants:
//! * [`SideSlot`] is null, or points at a [`TaskSide`] it owns (made with
//!   `Box::into_raw`), freed when the slot is dropped, with the header.
//!   Once set it never changes: a reference obtained from
//!   [`get`](SideSlot::get) or [`get_or_create`](SideSlot::get_or_create)
//!   is valid for as long as the header is.
//! * The side is made at the spawn when the task is named or its spawn is
//!   sampled for the histograms; otherwise at the first need (an
//!   `AbortHandle`, a sampled wake-up), with a compare-and-swap: of two
//!   threads that race, the loser frees its own and uses the winner's.
//! * The name is set only when the side is made at the spawn, and never
//!   changes after.

use crate::sync::{AtomicPtr, AtomicU64, Ordering};

use super::abort::AbortSlot;

/// The out-of-line part of a task's header (see the module docs).
pub(crate) struct TaskSide {
    /// The name given with `Spawn::name`. An `Arc` (std's: the name is
    /// never shared under loom) so a slow-poll report can hold it.
    pub(super) name: Option<std::sync::Arc<str>>,
    /// When the task was last spawned or woken, a stamp of
    /// `metrics::now_stamp`, if that spawn or wake-up was sampled for the
    /// latency histograms; 0 otherwise, and once its poll started (see
    /// `Observe::histograms`).
    pub(super) scheduled_at: AtomicU64,
    /// The cell shared by the task's `AbortHandle`s; null until the first
    /// is made (see `abort`).
    pub(super) abort: AbortSlot,
}

impl TaskSide {
    fn new(name: Option<std::sync::Arc<str>>, scheduled_at: u64) -> Box<TaskSide> {
        Box::new(TaskSide {
            name,
            scheduled_at: AtomicU64::new(scheduled_at),
            abort: AbortSlot::new(),
        })
    }
}

/// The header's pointer to its [`TaskSide`] (see the module docs).
pub(crate) struct SideSlot(AtomicPtr<TaskSide>);

impl SideSlot {
    /// The slot of a new task: its side made now if the task has a name or
    /// a stamp (nonzero), else left for later.
    #[inline]
    pub(super) fn new(name: Option<std::sync::Arc<str>>, scheduled_at: u64) -> SideSlot {
        let side = if name.is_some() || scheduled_at != 0 {
            Box::into_raw(TaskSide::new(name, scheduled_at))
        } else {
            std::ptr::null_mut()
        };
        SideSlot(AtomicPtr::new(side))
    }

    /// The side, if it was made.
    #[inline]
    pub(super) fn get(&self) -> Option<&TaskSide> {
        let side = self.0.load(Ordering::Acquire);
        // SAFETY: non-null, it came from `Box::into_raw` and is freed only
        // when the slot is dropped, which the borrow of `self` rules out
        // (see the module docs).
        unsafe { side.as_ref() }
    }

    /// The side, made now if it was not yet.
    pub(super) fn get_or_create(&self) -> &TaskSide {
        if let Some(side) = self.get() {
            return side;
        }
        self.create()
    }

    #[cold]
    fn create(&self) -> &TaskSide {
        let fresh = Box::into_raw(TaskSide::new(None, 0));
        let side = match self.0.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(installed) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // not installed: this is its only owner.
                drop(unsafe { Box::from_raw(fresh) });
                installed
            }
        };
        // SAFETY: installed (by us or the winner of the race), so valid
        // until the slot is dropped, as for `get`.
        unsafe { &*side }
    }
}

impl Drop for SideSlot {
    #[inline(always)]
    fn drop(&mut self) {
        let side = *self.0.get_mut();
        if !side.is_null() {
            free_side(side);
        }
    }
}

/// The header's drop, for a task that had a side.
#[cold]
#[inline(never)]
fn free_side(side: *mut TaskSide) {
    // SAFETY: the slot owns the side it points at (see the module docs),
    // and calls this once, from its drop.
    drop(unsafe { Box::from_raw(side) });
}
