//! Model 5: a task's end of life against the first `AbortHandle` being
//! made and its id being handed out, through the `life` bits of its
//! header.
//!
//! Hand-written copies (same atomics and orderings) of, in multipool
//! (`src/runtime/task/`): `TaskMeta::mark_ended` and `TaskMeta::ended` (its `fetch_or` of
//! `ENDED`, then the cell's clear if `ABORT_CELL` was set, then
//! `dependency::end`), `AbortSlot::get_or_create` (the slot's
//! compare-and-swap, then the `fetch_or` of `ABORT_CELL`), `dependency::watch`
//! (the shard lock, then the compare-exchange loop setting `WATCHED`, then
//! the insert) and `AbortSlot`'s drop. The dependency index is one shard: a
//! set of ids under a lock. An `AbortCell`'s pointer is a flag under its lock
//! (set: it points at the header).
//!
//! What must hold in every interleaving:
//! * the end of life finds an installed cell whenever it sees `ABORT_CELL`;
//! * once the end of life and every creator have returned, each installed
//!   cell is cleared (before the header's drop clears it anyway), and a
//!   cell a creator made but lost with is never handed out;
//! * once the end of life and every watcher have returned, the index holds
//!   no entry for the task; a watcher that said "alive" did put one there
//!   first, and the end of life found it.

use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::check;

const WATCHED: u8 = 1;
const ABORT_CELL: u8 = 2;
const ENDED: u8 = 4;

/// `AbortCell`: whether its pointer is still set.
struct Cell {
    points: Mutex<bool>,
}

impl Cell {
    fn clear(&self) {
        *self.points.lock().unwrap() = false;
    }

    fn points(&self) -> bool {
        *self.points.lock().unwrap()
    }
}

/// What of `TaskMeta` the protocol uses, plus the index.
struct Header {
    life: AtomicU8,
    /// `AbortSlot`: 0 (null), or `k + 1` for `cells[k]` installed.
    slot: AtomicUsize,
    cells: [Cell; 2],
    /// The dependency index's shard: whether it has the task's entry.
    index: Mutex<bool>,
}

impl Header {
    fn new() -> Self {
        Header {
            life: AtomicU8::new(0),
            slot: AtomicUsize::new(0),
            cells: [0, 1].map(|_| Cell {
                points: Mutex::new(true),
            }),
            index: Mutex::new(false),
        }
    }

    /// `TaskMeta::mark_ended` and `TaskMeta::ended`, with `AbortSlot::clear_cell` and
    /// `dependency::end`.
    fn end_of_life(&self) {
        let before = self.life.fetch_or(ENDED, AcqRel);
        if before & ABORT_CELL != 0 {
            let cell = self.slot.load(Acquire);
            assert_ne!(cell, 0, "ABORT_CELL set with no cell installed");
            self.cells[cell - 1].clear();
        }
        if before & WATCHED != 0 {
            let mut index = self.index.lock().unwrap();
            assert!(*index, "a watched task has no entry at its end");
            *index = false;
        }
    }

    /// `AbortSlot::get_or_create`, making `cells[mine]` if none is
    /// installed: the cell handed out, or `None` for a finished task's.
    fn abort_cell(&self, mine: usize) -> Option<usize> {
        let current = self.slot.load(Acquire);
        if current != 0 {
            return Some(current - 1);
        }
        if self.life.load(Acquire) & ENDED != 0 {
            return None;
        }
        match self.slot.compare_exchange(0, mine + 1, AcqRel, Acquire) {
            Ok(_) => {
                let before = self.life.fetch_or(ABORT_CELL, AcqRel);
                if before & ENDED != 0 {
                    self.cells[mine].clear();
                }
                Some(mine)
            }
            Err(installed) => Some(installed - 1),
        }
    }

    /// `dependency::watch`: whether the task is alive (and now indexed).
    fn watch(&self) -> bool {
        let mut state = self.life.load(Acquire);
        if state & (WATCHED | ENDED) != 0 {
            return state & ENDED == 0;
        }
        let mut index = self.index.lock().unwrap();
        loop {
            if state & (WATCHED | ENDED) != 0 {
                return state & ENDED == 0;
            }
            match self
                .life
                .compare_exchange_weak(state, state | WATCHED, AcqRel, Acquire)
            {
                Ok(_) => {
                    *index = true;
                    return true;
                }
                Err(now) => state = now,
            }
        }
    }
}

/// Checks what must hold once the end of life, and every thread that
/// made a cell (`handed`) or watched, have returned.
fn check_after(header: &Header, handed: Vec<Option<usize>>) {
    let installed = header.slot.load(Acquire);
    for cell in handed.into_iter().flatten() {
        assert_eq!(cell + 1, installed, "a cell that lost was handed out");
    }
    if installed != 0 {
        assert!(
            !header.cells[installed - 1].points(),
            "an installed cell outlived the end of life uncleared"
        );
    }
    assert!(
        !*header.index.lock().unwrap(),
        "the index kept an ended task"
    );
}

/// Two `abort_handle()` calls racing each other and the end of life.
#[test]
fn end_of_life_vs_two_abort_cells() {
    check("life: end of life vs two abort cells", None, || {
        let header = Arc::new(Header::new());
        let other = {
            let header = header.clone();
            thread::spawn(move || header.abort_cell(1))
        };
        let mine = header.abort_cell(0);
        header.end_of_life();
        let theirs = other.join().unwrap();
        check_after(&header, vec![mine, theirs]);
    });
}

/// An `abort_handle()` call and an id handed out, against the end of life
/// on a third thread.
#[test]
fn end_of_life_vs_abort_cell_and_watch() {
    check("life: end of life vs abort cell + watch", None, || {
        let header = Arc::new(Header::new());
        let creator = {
            let header = header.clone();
            thread::spawn(move || header.abort_cell(0))
        };
        let watcher = {
            let header = header.clone();
            thread::spawn(move || header.watch())
        };
        header.end_of_life();
        let handed = creator.join().unwrap();
        watcher.join().unwrap();
        check_after(&header, vec![handed]);
    });
}
