//! The size floor of a task spawned on a worker: [`Floored`] keeps a
//! small future's task out of glibc's fast bins.
//!
//! A task is one allocation, made by the thread that spawns it and freed
//! by the thread that drops its last reference: for a detached task, the
//! worker that ran it. glibc serves requests of up to 120 bytes (128-byte
//! chunks) from its fast bins, and a multipool task of a future of up to
//! 32 bytes is such a request (`tests/task_size.rs`).
//! How a fast-bin chunk travels between threads decides what a spawn
//! costs:
//! * Spawned on a worker and stolen by a sibling, the task is freed on the
//!   sibling, onto the spawning worker's arena's fast bin (a
//!   compare-and-swap on the bin's head), and the spawning worker refills
//!   its thread cache from that same head, one compare-and-swap a chunk:
//!   both cores take the head's cache line at every task. On an Intel
//!   Xeon, `spawn_many_in_task` (10 000 spawns from a task, two workers)
//!   ran 1.9× as long at 120 bytes as past the fast bins (README, "Stop
//!   36"), where a free from another thread takes the arena's lock and
//!   the spawner refills its cache in batches.
//! * Spawned from outside the pool (`block_on`, another thread), the same
//!   fast-bin tasks ran 2 to 10% *faster* than past them on that machine
//!   (`spawn_many_local`, `spawn_many_remote_*`).
//!
//! So only a task spawned on a worker thread (of any runtime: a spawn
//! there is the one a sibling may steal, a guess the code does not check
//! further) is floored, to a 128-byte request (the future's part of the
//! task at least [`TASK_FUTURE_FLOOR`] bytes); one spawned elsewhere, or
//! onto the blocking pool, keeps its size. The choice is made per spawn,
//! at run time, from the thread; for a future whose task is past the fast
//! bins anyway the floored path is not compiled in (the size test is a
//! `const` block).
//!
//! What it costs: a floored task asks for up to 24 bytes more (an empty
//! future's task 128 bytes instead of 104; a future aligned to more than
//! 16 bytes is never floored, as rounding would cost it more), and a small
//! future's spawn is compiled twice (async-task's functions for the
//! future and for its floored form). It is glibc's boundary: on targets
//! whose system allocator is not glibc's (musl, other platforms, which
//! have no such bins) the floor is 0 and nothing is floored. The test is
//! of the target, not of the global allocator: a `linux`/`gnu` program
//! that installs jemalloc or mimalloc still floors, for nothing. An AMD
//! EPYC (stop 27) measured the opposite for worker-to-worker frees (past
//! the fast bins, the arena's lock made the spawner sleep in the kernel);
//! on both machines, a floored task has the size every task had before
//! stop 27.
//!
//! Invariant: the future is always initialised (only [`Floored::new`]
//! makes one), pinned structurally, and dropped exactly once, by
//! `Floored`'s own drop.

use std::future::Future;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The fewest bytes the future's part of a task spawned on a worker takes:
/// with async-task's header and multipool's `TaskMeta` (80 bytes), a
/// 128-byte request, one size class past glibc's fast bins. 0 on targets
/// whose system allocator is not glibc's.
pub(super) const TASK_FUTURE_FLOOR: usize = if cfg!(all(target_os = "linux", target_env = "gnu")) {
    48
} else {
    0
};

/// Whether a task of future `Fut` and output slot `Out` (async-task's
/// `Result` of the output) would take less than the floor, and `Fut` is
/// aligned to at most 16 bytes: a constant for each task type.
pub(super) const fn below_floor<Fut, Out>() -> bool {
    let part = if size_of::<Fut>() > size_of::<Out>() {
        size_of::<Fut>()
    } else {
        size_of::<Out>()
    };
    part < TASK_FUTURE_FLOOR && align_of::<Fut>() <= 16
}

/// A task's future in at least [`TASK_FUTURE_FLOOR`] bytes (see the
/// module docs).
pub(super) union Floored<Fut> {
    future: ManuallyDrop<Fut>,
    _floor: MaybeUninit<[u8; TASK_FUTURE_FLOOR]>,
}

impl<Fut> Floored<Fut> {
    #[inline(always)]
    pub(super) fn new(future: Fut) -> Self {
        Floored {
            future: ManuallyDrop::new(future),
        }
    }
}

impl<Fut: Future> Future for Floored<Fut> {
    type Output = Fut::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        // SAFETY: structural pinning: the future is initialised (see the
        // module's invariant), never moved out, and dropped in place by
        // `Floored`'s drop.
        let future = unsafe { self.map_unchecked_mut(|floored| &mut *floored.future) };
        future.poll(cx)
    }
}

impl<Fut> Drop for Floored<Fut> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the future is initialised (only `new` makes a
        // `Floored`), and this drop runs once: it is dropped exactly once.
        unsafe { ManuallyDrop::drop(&mut self.future) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::task::Waker;

    /// Ready with its value after `pending` polls; counts its drops.
    struct Counted<'a> {
        drops: &'a Cell<u32>,
        pending: u32,
        value: u8,
    }

    impl Future for Counted<'_> {
        type Output = u8;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            if self.pending == 0 {
                return Poll::Ready(self.value);
            }
            self.pending -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn a_floored_future_polls_through_and_drops_its_future_once() {
        let mut cx = Context::from_waker(Waker::noop());
        for pending in [0, 2] {
            let drops = Cell::new(0);
            let mut floored = Box::pin(Floored::new(Counted {
                drops: &drops,
                pending,
                value: 7,
            }));
            for _ in 0..pending {
                assert!(floored.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(floored.as_mut().poll(&mut cx), Poll::Ready(7));
            assert_eq!(drops.get(), 0);
            drop(floored);
            assert_eq!(drops.get(), 1, "after {pending} pending polls");
        }
    }

    #[test]
    fn a_floored_future_dropped_unpolled_is_dropped_once() {
        let drops = Cell::new(0);
        drop(Floored::new(Counted {
            drops: &drops,
            pending: 1,
            value: 0,
        }));
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn the_floor_takes_the_small_futures_and_leaves_the_big_ones() {
        assert!(size_of::<Floored<Counted<'_>>>() >= TASK_FUTURE_FLOOR);
        assert!(size_of::<Floored<[u64; 16]>>() == 128);
        assert_eq!(below_floor::<u8, ()>(), TASK_FUTURE_FLOOR > 1);
        assert!(!below_floor::<[u8; 48], ()>());
        assert!(!below_floor::<u8, [u8; 48]>());
        #[repr(align(32))]
        struct Wide;
        assert!(!below_floor::<Wide, ()>(), "over-aligned: never floored");
    }
}
