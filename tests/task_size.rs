//! The size of a small task's allocation: what each spawn asks the
//! allocator for, measured with a recording global allocator.
//!
//! A task is one allocation (async-task's header, multipool's `TaskMeta`,
//! the wrapped future or its output). Spawned from outside the pool, a
//! small future's task must stay at or under 120 bytes: glibc rounds a
//! request of n bytes up to a chunk of `(n + 8)` rounded to 16, and
//! serves chunks up to 128 bytes from its fast bins, which run spawns from
//! outside 2 to 10% faster than past them (on an Intel Xeon). Spawned on a
//! worker, the same task is floored to a 128-byte request on glibc, past
//! the fast bins: a sibling that steals it frees it onto the spawning
//! worker's fast bin, and both cores then fight over the bin's head
//! (`spawn_many_in_task` 1.9× slower at 120 bytes there; see
//! `runtime::task::floor` and README "Stop 36"). Other allocators have no
//! such bins, and nothing is floored there. The size is held here for the
//! bytes, which count on every machine and with every allocator. The task
//! header's rarely used fields live out of line for this (see
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

/// The task's own allocation, from `spawns` (100 spawns on this thread):
/// the biggest size allocated at least once a spawn. The queues'
/// occasional growth is rarer; with `tracing`, a spawn may also allocate
/// smaller things (48 bytes, in some runs).
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
        .filter(|&(_, count)| count >= 100)
        .map(|(size, _)| size)
        .max()
        .expect("every spawn allocated its task")
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

/// The request of a small task spawned on a worker on glibc: one size
/// class past the fast bins (see `runtime::task::floor`).
const FLOORED: usize = 128;

/// Whether this build floors small tasks spawned on a worker: glibc's
/// allocator, and no `tracing` (whose span makes every task bigger than
/// the floor already).
const FLOORS: bool =
    cfg!(all(target_os = "linux", target_env = "gnu")) && !cfg!(feature = "tracing");

/// What 100 calls of `spawn` (each spawning one task) allocate from a
/// task on a worker; every task is awaited.
fn on_a_worker(
    rt: &multipool::Runtime,
    spawn: impl Fn() -> multipool::JoinHandle<()> + Send + 'static,
) -> usize {
    rt.block_on(async move {
        multipool::spawn(async move {
            let mut handles = Vec::new();
            let size = task_allocation(|| handles.extend((0..100).map(|_| spawn())));
            for handle in handles {
                handle.await.unwrap();
            }
            size
        })
        .await
        .unwrap()
    })
}

/// What 100 calls of `spawn` allocate from outside the pool; every task
/// is awaited.
fn from_outside(
    rt: &multipool::Runtime,
    spawn: impl Fn(&multipool::Runtime) -> multipool::JoinHandle<()>,
) -> usize {
    let mut handles = Vec::new();
    let size = task_allocation(|| handles.extend((0..100).map(|_| spawn(rt))));
    rt.block_on(async move {
        for handle in handles {
            handle.await.unwrap();
        }
    });
    size
}

/// What `on_a_worker` and `from_outside` spawn: a pool task of `make()`'s
/// future.
fn pool_task<F>(make: fn() -> F) -> impl Fn() -> multipool::JoinHandle<()> + Send + 'static
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    move || multipool::spawn(make()).start()
}

fn pool_task_on<F>(make: fn() -> F) -> impl Fn(&multipool::Runtime) -> multipool::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    move |rt| rt.spawn(make()).start()
}

async fn empty() {}

fn sixteen_bytes() -> impl std::future::Future<Output = ()> + Send {
    let pair = [1u64, 2];
    async move {
        std::hint::black_box(&pair);
    }
}

fn big() -> impl std::future::Future<Output = ()> + Send {
    let bytes = [7u8; 256];
    async move {
        std::hint::black_box(&bytes);
    }
}

#[test]
// Spawns from a worker grow its local deque, whose old buffers
// crossbeam-epoch keeps until the process ends; allocated through this
// file's recording allocator, miri reports them at std's allocation site,
// outside `.ci/miri`'s allowance for crossbeam-epoch's own. The union
// itself runs under miri in `runtime::task::floor`'s unit tests.
#[cfg_attr(
    miri,
    ignore = "crossbeam-epoch's kept buffers, seen through the recording allocator"
)]
fn a_small_task_spawned_on_a_worker_is_floored_past_the_fast_bins() {
    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    let outside = (
        from_outside(&rt, pool_task_on(empty)),
        from_outside(&rt, pool_task_on(sixteen_bytes)),
    );
    let inside = (
        on_a_worker(&rt, pool_task(empty)),
        on_a_worker(&rt, pool_task(sixteen_bytes)),
    );
    assert!(
        outside.0 <= LIMIT && outside.1 <= LIMIT_32,
        "from outside: {outside:?}"
    );
    if FLOORS {
        assert_eq!(
            inside,
            (FLOORED, FLOORED),
            "on a worker (from outside: {outside:?})"
        );
    } else {
        assert_eq!(inside, outside, "on a worker: no floor in this build");
    }
    // A big future is past the floor already: its task keeps its size.
    assert_eq!(
        on_a_worker(&rt, pool_task(big)),
        from_outside(&rt, pool_task_on(big))
    );
}

#[test]
// Not under miri: as above.
#[cfg_attr(
    miri,
    ignore = "crossbeam-epoch's kept buffers, seen through the recording allocator"
)]
fn a_blocking_task_spawned_on_a_worker_keeps_its_size() {
    // The blocking pool's threads free what they ran; no sibling steals
    // there, so the floor is only for pool tasks.
    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    // Warm the blocking pool, so that the spawns measured start no thread.
    rt.block_on(rt.handle().spawn_blocking(|| ())).unwrap();
    let outside = from_outside(&rt, |rt| rt.handle().spawn_blocking(|| ()));
    let inside = on_a_worker(&rt, || multipool::task::spawn_blocking(|| ()));
    assert_eq!(inside, outside, "a blocking task spawned on a worker");
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
