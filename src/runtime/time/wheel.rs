//! A hierarchical timer wheel (Varghese & Lauck), in microseconds.
//!
//! [`NUM_LEVELS`] levels of 64 slots; a slot of level `L` spans `64^L` µs, so
//! level 0 resolves single microseconds and the top level reaches past
//! 30 000 years. Every level keeps a 64-bit occupancy bitmap, so the next
//! expiration is found with a few bit scans, never by walking slots.
//!
//! Entries live in a slab and each slot is a doubly linked list threaded
//! through it, so insertion and removal are O(1). An entry sits at the level
//! given by the highest bit in which its deadline differs from `elapsed`
//! (tokio's rule): entries of lower levels always expire before the current
//! slot of any higher level, so the lowest occupied level holds the earliest
//! expiration. When a slot of level `L > 0` expires, its entries cascade to
//! lower levels (or fire).
//!
//! Invariants:
//! * `elapsed` only grows; every linked entry has `deadline > elapsed`.
//! * an entry is linked into exactly the slot `slot_for(level_for(deadline))`
//!   computed when it was (re)inserted, and its bit is set while the slot is
//!   non-empty.
//! * fired entries stay in the slab (unlinked) until their owner removes
//!   them, so an owner's key never points at someone else's entry.

use std::task::Waker;

use slab::Slab;

/// Bits per level: 64 slots.
const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels; `64^10` µs is about 36 000 years.
pub(crate) const NUM_LEVELS: usize = 10;
/// Largest representable deadline; later ones are clamped to it (and so,
/// in practice, never fire).
pub(crate) const MAX_DEADLINE: u64 = (1 << (LEVEL_BITS as usize * NUM_LEVELS)) - 1;

const NIL: usize = usize::MAX;

/// A slot's linked list: the first and last entry, or `NIL`.
#[derive(Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

struct Level {
    occupied: u64,
    slots: [List; SLOTS],
}

struct Entry {
    deadline: u64,
    waker: Option<Waker>,
    /// Whether the entry is linked in a slot (else it fired).
    linked: bool,
    level: u8,
    slot: u8,
    prev: usize,
    next: usize,
}

/// Outcome of [`Wheel::insert`] and [`Wheel::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// The entry waits in the wheel.
    Pending,
    /// The deadline has already passed: the entry is fired, not linked.
    Expired,
}

pub(crate) struct Wheel {
    /// Time (µs) up to which expirations have been processed.
    elapsed: u64,
    levels: Box<[Level; NUM_LEVELS]>,
    entries: Slab<Entry>,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel::new()
    }
}

impl Wheel {
    pub(crate) fn new() -> Self {
        Wheel {
            elapsed: 0,
            levels: Box::new(std::array::from_fn(|_| Level {
                occupied: 0,
                slots: [EMPTY; SLOTS],
            })),
            entries: Slab::new(),
        }
    }

    #[cfg(test)]
    fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of entries (pending or fired, not yet removed).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry; returns its key and whether it is already expired.
    pub(crate) fn insert(&mut self, deadline: u64, waker: Waker) -> (usize, Inserted) {
        let key = self.entries.insert(Entry {
            deadline: deadline.min(MAX_DEADLINE),
            waker: Some(waker),
            linked: false,
            level: 0,
            slot: 0,
            prev: NIL,
            next: NIL,
        });
        let inserted = self.link(key);
        (key, inserted)
    }

    /// Moves an entry (pending or fired) to a new deadline.
    pub(crate) fn reset(&mut self, key: usize, deadline: u64) -> Inserted {
        self.unlink(key);
        self.entries[key].deadline = deadline.min(MAX_DEADLINE);
        self.link(key)
    }

    /// Whether the entry has fired.
    pub(crate) fn is_fired(&self, key: usize) -> bool {
        !self.entries[key].linked
    }

    /// Replaces the waker of a pending entry; returns the one replaced, for
    /// the caller to drop once it released its lock (a waker's destructor
    /// is user code).
    #[must_use = "drop the old waker outside the wheel's lock"]
    pub(crate) fn set_waker(&mut self, key: usize, waker: &Waker) -> Option<Waker> {
        let entry = &mut self.entries[key];
        match &entry.waker {
            Some(current) if current.will_wake(waker) => None,
            _ => entry.waker.replace(waker.clone()),
        }
    }

    /// Removes an entry, pending or fired; returns its waker, for the
    /// caller to drop once it released its lock.
    #[must_use = "drop the waker outside the wheel's lock"]
    pub(crate) fn remove(&mut self, key: usize) -> Option<Waker> {
        self.unlink(key);
        self.entries.remove(key).waker
    }

    /// The earliest time at which an expiration must be processed, if any.
    /// It may be the start of a higher-level slot whose entries then cascade.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, deadline)| deadline)
    }

    /// Processes every expiration up to `now`: fired entries' wakers are
    /// pushed to `wake` (to be woken after the caller releases its lock).
    pub(crate) fn advance(&mut self, now: u64, wake: &mut Vec<Waker>) {
        while let Some((level, slot, deadline)) = self.next_slot() {
            if deadline > now {
                break;
            }
            self.elapsed = deadline;
            let mut list = std::mem::replace(&mut self.levels[level].slots[slot], EMPTY);
            self.levels[level].occupied &= !(1 << slot);
            while list.head != NIL {
                let key = list.head;
                let entry = &mut self.entries[key];
                list.head = entry.next;
                entry.linked = false;
                entry.prev = NIL;
                entry.next = NIL;
                if entry.deadline <= now {
                    // Cloned, not taken: a fired entry keeps its waker so
                    // that `Sleep::reset` can re-arm it in place.
                    wake.extend(entry.waker.clone());
                } else {
                    // Cascade: `elapsed` moved, so the entry now belongs to a
                    // lower level (or fires, if its deadline is now due).
                    if self.link(key) == Inserted::Expired {
                        wake.extend(self.entries[key].waker.clone());
                    }
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Collects the wakers of every pending entry (used at shutdown, to tell
    /// their owners that nobody will advance the wheel any more).
    pub(crate) fn wakers(&self, wake: &mut Vec<Waker>) {
        wake.extend(
            self.entries
                .iter()
                .filter(|(_, entry)| entry.linked)
                .filter_map(|(_, entry)| entry.waker.clone()),
        );
    }

    /// The level an entry with `deadline` belongs to, relative to `elapsed`.
    fn level_for(&self, deadline: u64) -> usize {
        let masked = (self.elapsed ^ deadline) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        ((significant / LEVEL_BITS) as usize).min(NUM_LEVELS - 1)
    }

    fn link(&mut self, key: usize) -> Inserted {
        let deadline = self.entries[key].deadline;
        if deadline <= self.elapsed {
            self.entries[key].linked = false;
            return Inserted::Expired;
        }
        let level = self.level_for(deadline);
        let slot = ((deadline >> (level as u32 * LEVEL_BITS)) as usize) & (SLOTS - 1);
        let list = &mut self.levels[level].slots[slot];
        let old_tail = list.tail;
        if old_tail == NIL {
            list.head = key;
        }
        list.tail = key;
        self.levels[level].occupied |= 1 << slot;
        if old_tail != NIL {
            self.entries[old_tail].next = key;
        }
        let entry = &mut self.entries[key];
        entry.linked = true;
        entry.level = level as u8;
        entry.slot = slot as u8;
        entry.prev = old_tail;
        entry.next = NIL;
        Inserted::Pending
    }

    fn unlink(&mut self, key: usize) {
        let entry = &mut self.entries[key];
        if !entry.linked {
            return;
        }
        entry.linked = false;
        let (level, slot, prev, next) = (
            entry.level as usize,
            entry.slot as usize,
            entry.prev,
            entry.next,
        );
        entry.prev = NIL;
        entry.next = NIL;
        match prev {
            NIL => self.levels[level].slots[slot].head = next,
            prev => self.entries[prev].next = next,
        }
        match next {
            NIL => self.levels[level].slots[slot].tail = prev,
            next => self.entries[next].prev = prev,
        }
        if self.levels[level].slots[slot].head == NIL {
            self.levels[level].occupied &= !(1 << slot);
        }
    }

    /// The next slot to expire: `(level, slot, the time it expires)`.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level_index, level) in self.levels.iter().enumerate() {
            if level.occupied == 0 {
                continue;
            }
            let shift = level_index as u32 * LEVEL_BITS;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << LEVEL_BITS;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            // Slots at or after the current one, in wheel order.
            let rotated = level.occupied.rotate_right(now_slot as u32);
            let distance = rotated.trailing_zeros() as usize;
            let slot = (now_slot + distance) & (SLOTS - 1);
            // Start of the current level window, then of the chosen slot.
            let level_start = self.elapsed & !(level_range.wrapping_sub(1));
            let mut deadline = level_start + slot as u64 * slot_range;
            if slot < now_slot {
                // Wrapped past the end of this window.
                deadline += level_range;
            }
            return Some((level_index, slot, deadline.max(self.elapsed)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Arc, AtomicUsize, Ordering};
    use std::task::Wake;

    struct Flag(AtomicUsize);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicUsize::new(0)));
        (flag.clone(), Waker::from(flag))
    }

    /// Advances in small steps and records at which step each key fired.
    fn fire_times(wheel: &mut Wheel, deadlines: &[u64], step: u64, until: u64) -> Vec<u64> {
        let flags: Vec<_> = deadlines
            .iter()
            .map(|&d| {
                let (flag, w) = waker();
                wheel.insert(d, w);
                flag
            })
            .collect();
        let mut fired = vec![u64::MAX; deadlines.len()];
        let mut now = wheel.elapsed();
        let mut wake = Vec::new();
        while now <= until {
            wheel.advance(now, &mut wake);
            for w in wake.drain(..) {
                w.wake();
            }
            for (i, flag) in flags.iter().enumerate() {
                if fired[i] == u64::MAX && flag.0.load(Ordering::SeqCst) > 0 {
                    fired[i] = now;
                }
            }
            now += step;
        }
        fired
    }

    // Sizes: miri runs these tests thousands of times slower, so under it
    // they shrink to what still crosses every path of the wheel.

    /// How far `fires_each_entry_exactly_at_its_deadline` steps, one tick at
    /// a time: past the start of level 3 natively; under miri just past the
    /// start of level 2, which still cascades an entry down two levels.
    #[cfg(not(miri))]
    const STEP_UNTIL: u64 = 1_000_000;
    #[cfg(miri)]
    const STEP_UNTIL: u64 = 4_100;

    /// Entries in `coarse_steps_fire_everything_due_and_nothing_early` (it
    /// looks at every one at each of its 400 steps).
    #[cfg(not(miri))]
    const COARSE_ENTRIES: u64 = 500;
    #[cfg(miri)]
    const COARSE_ENTRIES: u64 = 40;

    /// Entries in `many_random_entries_in_order` (it looks at every one at
    /// each expiration).
    #[cfg(not(miri))]
    const RANDOM_ENTRIES: usize = 2_000;
    #[cfg(miri)]
    const RANDOM_ENTRIES: usize = 30;

    #[test]
    fn fires_each_entry_exactly_at_its_deadline() {
        let mut wheel = Wheel::new();
        let deadlines: Vec<u64> = [
            1, 2, 63, 64, 65, 100, 4095, 4096, 4097, 70_000, 262_143, 262_144, 1_000_000,
        ]
        .into_iter()
        .filter(|&deadline| deadline <= STEP_UNTIL)
        .collect();
        let fired = fire_times(&mut wheel, &deadlines, 1, STEP_UNTIL + 1);
        assert_eq!(fired, deadlines);
    }

    #[test]
    fn coarse_steps_fire_everything_due_and_nothing_early() {
        let mut wheel = Wheel::new();
        let deadlines: Vec<u64> = (0..COARSE_ENTRIES)
            .map(|i| (i * 7919) % 300_000 + 1)
            .collect();
        let fired = fire_times(&mut wheel, &deadlines, 997, 400_000);
        for (deadline, fired) in deadlines.iter().zip(&fired) {
            assert!(fired >= deadline, "fired early: {deadline} at {fired}");
            assert!(fired - deadline < 997, "fired late: {deadline} at {fired}");
        }
    }

    #[test]
    fn next_expiration_finds_the_earliest() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.next_expiration(), None);
        let (_, w) = waker();
        wheel.insert(50, w.clone());
        assert_eq!(wheel.next_expiration(), Some(50));
        let (k2, _) = wheel.insert(10, w.clone());
        assert_eq!(wheel.next_expiration(), Some(10));
        let _ = wheel.remove(k2);
        assert_eq!(wheel.next_expiration(), Some(50));
        // A far entry: the next expiration is its slot's start (<= deadline).
        let mut far = Wheel::new();
        far.insert(10_000_000, w);
        let next = far.next_expiration().unwrap();
        assert!(next <= 10_000_000 && next > 0);
    }

    #[test]
    fn remove_and_reset() {
        let mut wheel = Wheel::new();
        let (flag, w) = waker();
        let (key, _) = wheel.insert(100, w);
        assert_eq!(wheel.reset(key, 5_000), Inserted::Pending);
        let mut wake = Vec::new();
        wheel.advance(4_999, &mut wake);
        assert!(wake.is_empty());
        wheel.advance(5_000, &mut wake);
        assert_eq!(wake.len(), 1);
        wake.pop().unwrap().wake();
        assert_eq!(flag.0.load(Ordering::SeqCst), 1);
        assert!(wheel.is_fired(key));
        // Reset a fired entry into the past: expired at once.
        assert_eq!(wheel.reset(key, 10), Inserted::Expired);
        assert_eq!(wheel.reset(key, 6_000), Inserted::Pending);
        let _ = wheel.remove(key);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn extreme_deadlines_do_not_overflow() {
        let mut wheel = Wheel::new();
        let (_, w) = waker();
        let (a, _) = wheel.insert(u64::MAX, w.clone());
        let (b, _) = wheel.insert(MAX_DEADLINE, w.clone());
        let (c, _) = wheel.insert(365 * 24 * 3600 * 1_000_000, w); // a year
        let mut wake = Vec::new();
        wheel.advance(10 * 365 * 24 * 3600 * 1_000_000, &mut wake);
        assert_eq!(wake.len(), 1, "only the one-year entry fired");
        assert!(!wheel.is_fired(a) && !wheel.is_fired(b) && wheel.is_fired(c));
        assert!(wheel.next_expiration().unwrap() <= MAX_DEADLINE);
    }

    #[test]
    fn inserting_in_the_past_is_expired() {
        let mut wheel = Wheel::new();
        let mut wake = Vec::new();
        wheel.advance(1_000, &mut wake);
        let (_, w) = waker();
        assert_eq!(wheel.insert(999, w.clone()).1, Inserted::Expired);
        assert_eq!(wheel.insert(1_000, w.clone()).1, Inserted::Expired);
        assert_eq!(wheel.insert(1_001, w).1, Inserted::Pending);
    }

    #[test]
    fn many_random_entries_in_order() {
        let mut wheel = Wheel::new();
        let mut x: u64 = 88172645463325252;
        let mut deadlines = Vec::new();
        for _ in 0..RANDOM_ENTRIES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            deadlines.push(x % 50_000_000 + 1);
        }
        let (_, w) = waker();
        let keys: Vec<_> = deadlines
            .iter()
            .map(|&d| wheel.insert(d, w.clone()).0)
            .collect();
        // Jump from expiration to expiration, as a driver would.
        let mut fired_at = vec![0u64; keys.len()];
        let mut wake = Vec::new();
        while let Some(next) = wheel.next_expiration() {
            wheel.advance(next, &mut wake);
            wake.clear();
            for (i, &key) in keys.iter().enumerate() {
                if fired_at[i] == 0 && wheel.is_fired(key) {
                    fired_at[i] = next;
                }
            }
            if keys.iter().all(|&k| wheel.is_fired(k)) {
                break;
            }
        }
        assert_eq!(
            fired_at, deadlines,
            "each entry fires exactly at its deadline"
        );
    }
}
