//! The rarely used part of a task's header, kept out of line: the task's
//! name, the stamp of the latency histograms, and the slot of its
//! `AbortHandle`s' cell; and, sharing the header's word with the pointer
//! to it, the task's spawn location.
//!
//! Why: every task pays for every byte of its header, and most tasks use
//! none of these. Inline they took 32 bytes, and with them (and a
//! `JoinError` of 40 bytes, now 24) a small task's allocation (async-task's
//! header, [`TaskMeta`](super::TaskMeta), the wrapped future or its
//! output) took 152 bytes: three cache lines, and past
//! 128 bytes, the largest chunk glibc's allocator serves from its fast
//! bins. Out of line, the header kept one pointer for them, an empty task
//! took 120 bytes, and a pending task 33 bytes less of resident memory
//! (`examples/memory_per_task.rs`: 337 → 304).
//!
//! The spawn location shares that word (issue #15): until the side is
//! made, the word holds the location's address with its low bit set (a
//! `Location` is aligned to at least 2, so that bit is free), and a side,
//! once made, holds the location itself. Eight bytes fewer in every
//! header keep a task of a 32-byte future (two `Arc`s and a flag: the
//! benches' countdown task) at a 120-byte allocation, within the fast
//! bins: a chunk past them is freed under its arena's lock, and a task
//! that one worker spawns and another runs is freed by the other, so
//! local spawns on two workers spent a fifth of their time in that lock
//! (`perf`, `spawn_many_in_task`).
//!
//! Invariants:
//! * [`SideSlot`] holds either the task's spawn location, tagged (low bit
//!   set), or a pointer to a [`TaskSide`] it owns (made with
//!   `Box::into_raw`, low bit clear), freed when the slot is dropped, with
//!   the header. It is never null.
//! * Once the side is set it never changes: a reference obtained from
//!   [`get`](SideSlot::get) or [`get_or_create`](SideSlot::get_or_create)
//!   is valid for as long as the header is. The location never changes.
//! * The side is made at the spawn when the task is named or its spawn is
//!   sampled for the histograms; otherwise at the first need (an
//!   `AbortHandle`, a sampled wake-up), with a compare-and-swap: of two
//!   threads that race, the loser frees its own and uses the winner's.
//! * The name is set only when the side is made at the spawn, and never
//!   changes after.

use std::panic::Location;

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
    /// Where the task was spawned (moved here from the slot's word).
    location: &'static Location<'static>,
}

impl TaskSide {
    fn new(
        name: Option<std::sync::Arc<str>>,
        scheduled_at: u64,
        location: &'static Location<'static>,
    ) -> Box<TaskSide> {
        Box::new(TaskSide {
            name,
            scheduled_at: AtomicU64::new(scheduled_at),
            abort: AbortSlot::new(),
            location,
        })
    }
}

/// The low bit of a [`SideSlot`] word that holds a location, not a side.
const LOCATION_TAG: usize = 1;

/// `location`'s address, tagged (see the module docs).
fn tagged(location: &'static Location<'static>) -> *mut TaskSide {
    const { assert!(std::mem::align_of::<Location<'static>>() > LOCATION_TAG) };
    let location: *const Location<'static> = location;
    location
        .cast_mut()
        .cast::<TaskSide>()
        .map_addr(|addr| addr | LOCATION_TAG)
}

/// The location a tagged word holds, if it holds one.
#[inline]
fn untagged(word: *mut TaskSide) -> Option<&'static Location<'static>> {
    if word.addr() & LOCATION_TAG == 0 {
        return None;
    }
    let location = word
        .map_addr(|addr| addr & !LOCATION_TAG)
        .cast_const()
        .cast::<Location<'static>>();
    // SAFETY: a tagged word was made by `tagged` from a
    // `&'static Location` (see the module docs); clearing the tag gives
    // back its address, with its provenance.
    Some(unsafe { &*location })
}

/// The header's word for its [`TaskSide`] or, until that is made, its
/// spawn location (see the module docs).
pub(crate) struct SideSlot(AtomicPtr<TaskSide>);

impl SideSlot {
    /// The slot of a new task spawned at `location`: its side made now if
    /// the task has a name or a stamp (nonzero), else left for later.
    #[inline]
    pub(super) fn new(
        name: Option<std::sync::Arc<str>>,
        scheduled_at: u64,
        location: &'static Location<'static>,
    ) -> SideSlot {
        let word = if name.is_some() || scheduled_at != 0 {
            Box::into_raw(TaskSide::new(name, scheduled_at, location))
        } else {
            tagged(location)
        };
        SideSlot(AtomicPtr::new(word))
    }

    /// The side, if it was made.
    #[inline]
    pub(super) fn get(&self) -> Option<&TaskSide> {
        let word = self.0.load(Ordering::Acquire);
        if word.addr() & LOCATION_TAG != 0 {
            return None;
        }
        // SAFETY: untagged, the word came from `Box::into_raw` and is
        // freed only when the slot is dropped, which the borrow of `self`
        // rules out (see the module docs).
        Some(unsafe { &*word })
    }

    /// Where the task was spawned.
    pub(super) fn location(&self) -> &'static Location<'static> {
        let word = self.0.load(Ordering::Acquire);
        match untagged(word) {
            Some(location) => location,
            // SAFETY: as in `get`.
            None => unsafe { &*word }.location,
        }
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
        let word = self.0.load(Ordering::Acquire);
        let Some(location) = untagged(word) else {
            // SAFETY: as in `get`.
            return unsafe { &*word };
        };
        let fresh = Box::into_raw(TaskSide::new(None, 0, location));
        let side = match self
            .0
            .compare_exchange(word, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
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
        let word = *self.0.get_mut();
        if word.addr() & LOCATION_TAG == 0 {
            free_side(word);
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
