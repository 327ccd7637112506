//! The size of a small task's allocation: what each spawn asks the
//! allocator for, measured with a recording global allocator.
//!
//! A task is one allocation (async-task's header, multipool's `TaskMeta`,
//! the wrapped future or its output). For a small future it must stay at
//! or under 120 bytes: glibc rounds a request of n bytes up to a chunk of
//! `(n + 8)` rounded to 16, and serves chunks up to 128 bytes from its
//! fast bins. Past them, a chunk freed by another thread than the one
//! that allocated it (a task spawned on one worker and run on another) is
//! freed under the allocating arena's lock, which the spawning thread's
//! next allocation then waits for: local spawns on two workers took twice
//! as long with the benches' 32-byte countdown future at 160 bytes as at
//! 120 (`spawn_many_in_task`, issue #15), on an AMD EPYC. On an Intel
//! Xeon the same shape runs the other way, 1.9× slower at 120 bytes than
//! past the fast bins, while spawns from `block_on` run 13% faster at 120
//! (README, "Stop 35"; `MULTIPOOL_BENCH_COUNTDOWN_PAD` in the benches
//! compares the two sizes). The size is held here for the bytes, which
//! count on every machine and with every allocator. The task header's
//! rarely used fields live out of line for this (see
//! `runtime::task::side`), and the wrapper around the future adds one
//! word. Memory per task (README, issue #15) moves with it too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

struct Recording;

thread_local! {
    /// Sizes of the allocations this thread made while recording.
    static SIZES: Cell<Option<Vec<usize>>> = const { Cell::new(None) };
}

// SAFETY: forwards to `System`; the bookkeeping never allocates through
// this allocator while recording (the vector is taken out of the cell, so
// a push that grows it records nothing, as the cell is empty meanwhile).
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = SIZES.try_with(|cell| {
            if let Some(mut sizes) = cell.take() {
                sizes.push(layout.size());
                cell.set(Some(sizes));
            }
        });
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Recording = Recording;

/// The size most of `spawns` spawns from this thread allocated: the
/// task's own allocation (the queues' occasional growth is rarer).
fn task_allocation(spawns: impl FnOnce()) -> usize {
    SIZES.with(|cell| cell.set(Some(Vec::with_capacity(4096))));
    spawns();
    let sizes = SIZES.with(|cell| cell.take()).unwrap();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for size in sizes {
        *counts.entry(size).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(_, count)| count)
        .map(|(size, _)| size)
        .expect("the spawns allocated")
}

/// The most an empty task may take: 104 bytes, and 48 more with the
/// `tracing` feature, whose tasks also hold their span and the slot of
/// the waker their future is polled with (see `runtime::task::trace`).
const LIMIT: usize = if cfg!(feature = "tracing") { 152 } else { 104 };

/// The most a task of a 32-byte future (the benches' countdown task: two
/// `Arc`s and a state byte) may take: 120 bytes, the largest request glibc
/// serves from its fast bins (48 more with `tracing`).
const LIMIT_32: usize = if cfg!(feature = "tracing") { 168 } else { 120 };

#[test]
fn a_small_task_is_one_small_allocation() {
    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    let mut handles = Vec::new();
    let size = task_allocation(|| {
        for _ in 0..100 {
            handles.push(rt.spawn(async {}).start());
        }
    });
    assert!(
        size <= LIMIT,
        "a task of an empty future takes {size} bytes, over {LIMIT}"
    );
    rt.block_on(async move {
        for handle in handles {
            handle.await.unwrap();
        }
    });
}

#[test]
fn a_task_of_a_32_byte_future_stays_in_the_fast_bins() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = mpsc::sync_channel::<()>(100);
    let rem = Arc::new(AtomicUsize::new(100));
    let countdown = |tx: mpsc::SyncSender<()>, rem: Arc<AtomicUsize>| async move {
        if rem.fetch_sub(1, Ordering::Relaxed) == 1 {
            tx.send(()).unwrap();
        }
    };
    assert_eq!(
        std::mem::size_of_val(&countdown(tx.clone(), rem.clone())),
        32,
        "the future this test sizes"
    );
    let mut handles = Vec::new();
    let size = task_allocation(|| {
        for _ in 0..100 {
            handles.push(rt.spawn(countdown(tx.clone(), rem.clone())).start());
        }
    });
    assert!(
        size <= LIMIT_32,
        "a task of a 32-byte future takes {size} bytes, over {LIMIT_32} (without `tracing`, at \
         most 120 keep it in glibc's fast bins)"
    );
    rx.recv().unwrap();
    rt.block_on(async move {
        for handle in handles {
            handle.await.unwrap();
        }
    });
}

#[test]
fn a_named_task_and_an_abort_handle_keep_working_with_the_header_out_of_line() {
    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let handle = multipool::spawn(async {
            multipool::time::sleep(std::time::Duration::from_secs(3600)).await;
        })
        .name("side")
        .start();
        assert_eq!(handle.name(), Some("side"));
        let abort = handle.abort_handle();
        assert!(!abort.is_finished());
        abort.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
        assert!(abort.is_finished());
    });
}
