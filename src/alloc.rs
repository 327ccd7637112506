//! Per-task memory accounting: [`TaskAlloc`], a global allocator wrapper
//! that charges each allocation and free to the task running on the
//! thread, and what it tells about a task ([`MemoryUsage`]).
//!
//! Opt in by installing it, then give a task a limit with
//! [`Spawn::memory_limit`](crate::Spawn::memory_limit):
//!
//! ```
//! use multipool::alloc::TaskAlloc;
//!
//! #[global_allocator]
//! static GLOBAL: TaskAlloc = TaskAlloc::system();
//!
//! fn main() {
//!     let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//!     let hog = rt.spawn(async {
//!         let mut kept = Vec::new();
//!         for _ in 0..1_000 {
//!             kept.push(vec![0u8; 64 * 1024]); // 64 KiB more each poll
//!             multipool::task::yield_now().await;
//!         }
//!         kept.len()
//!     });
//!     let err = rt.block_on(hog.memory_limit(1 << 20)).unwrap_err();
//!     assert!(err.is_memory_exceeded());
//! }
//! ```
//!
//! # What is charged to whom
//!
//! * A task is *tracked* when it was spawned with a memory limit
//!   (`memory_limit(usize::MAX)` tracks without ever cancelling). While a
//!   tracked task's future is polled, or dropped, the thread's
//!   `ACCOUNT` points at the task's account; every allocation and free
//!   the allocator sees on that thread then moves the account's `held`
//!   bytes up or down, and `peak` follows the highest `held`. Nothing else
//!   is charged: allocations outside a tracked task's poll (the runtime's
//!   own between polls, untracked tasks, other threads) cost one
//!   thread-local read and a branch.
//! * A free is charged to whoever frees: memory a task allocated and handed
//!   to another task or thread stays charged to it (a producer that sends
//!   its buffers away keeps being charged for them), and memory it frees
//!   that another allocated lowers its count. That is the price of not
//!   tagging each allocation with its owner (a header or a side table
//!   touched by every allocation and free). The one correction made for
//!   free: `held` never goes below zero, so freeing foreign memory cannot
//!   build up credit that would let a task later hold more than its limit.
//! * The task's own allocation (its future, header and output, made by the
//!   spawn) is charged to no one: a task that spawns others is not charged
//!   for them.
//! * A task polled inside another's poll (rare: a refused spawn cancelled
//!   at once) is charged to the outer one unless it is tracked itself.
//!
//! # Invariants
//!
//! * The allocator never allocates, locks or panics: `ACCOUNT` is a
//!   `const`-initialised thread-local holding a raw pointer (no lazy
//!   initialisation, no destructor), reached with `try_with`, so it works
//!   while the thread's other thread-locals are being destroyed.
//! * An account is written only by the thread that polls its task, and only
//!   while that thread's `ACCOUNT` points at it, which is only while a
//!   `Charging` guard borrowing it lives on that thread: a task is polled
//!   by one thread at a time, so the account needs no atomics.
//! * Without `TaskAlloc` as the global allocator nothing is ever charged,
//!   so a limit could never trigger: such a spawn is refused instead (see
//!   [`is_installed`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

/// A global allocator that charges each allocation and free to the task
/// running on the thread, for [`Spawn::memory_limit`](crate::Spawn::memory_limit)
/// and the peak in [`TaskInfo::memory_peak`](crate::task::TaskInfo::memory_peak).
/// It wraps another allocator (the system's by default) and forwards
/// every call to it.
///
/// Install it in the binary (a library cannot choose the allocator):
///
/// ```
/// use multipool::alloc::TaskAlloc;
///
/// #[global_allocator]
/// static GLOBAL: TaskAlloc = TaskAlloc::system();
/// # fn main() { assert!(multipool::alloc::is_installed()); }
/// ```
///
/// Another allocator can be wrapped with [`TaskAlloc::new`] (a `const fn`,
/// as a `static` needs).
///
/// Cost: outside a tracked task's poll, one thread-local read and a
/// branch per call; inside, a few more instructions (see the README's
/// "Memory limits" for figures).
pub struct TaskAlloc<A = System> {
    inner: A,
}

impl TaskAlloc<System> {
    /// The system allocator, wrapped.
    pub const fn system() -> Self {
        TaskAlloc { inner: System }
    }
}

impl<A> TaskAlloc<A> {
    /// Wraps `inner`, which serves every allocation.
    pub const fn new(inner: A) -> Self {
        TaskAlloc { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A> fmt::Debug for TaskAlloc<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskAlloc").finish_non_exhaustive()
    }
}

// SAFETY: every method forwards to the wrapped allocator with the caller's
// own arguments, so the wrapper meets `GlobalAlloc`'s contract exactly when
// `A` does. The accounting around the calls only does arithmetic on the
// current thread's account: it never allocates, unwinds or touches the
// memory being allocated or freed.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TaskAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            charge(Change::Grow(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            charge(Change::Grow(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this
        // allocator (so by `inner`) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        charge(Change::Shrink(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, and `ptr` came
        // from `inner` (every allocation of this allocator does).
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let old = layout.size();
            if new_size >= old {
                charge(Change::Grow(new_size - old));
            } else {
                charge(Change::Shrink(old - new_size));
            }
        }
        new
    }
}

/// How a call moves the running task's count.
#[derive(Clone, Copy)]
enum Change {
    Grow(usize),
    Shrink(usize),
}

thread_local! {
    /// The account of the tracked task being polled (or dropped) on this
    /// thread, or null. See the module docs.
    static ACCOUNT: Cell<*const MemoryAccount> = const { Cell::new(ptr::null()) };
}

/// Charges `change` to this thread's account, if any. Never allocates.
#[inline(always)]
fn charge(change: Change) {
    let _ = ACCOUNT.try_with(|account| {
        let account = account.get();
        if !account.is_null() {
            // SAFETY: a non-null `ACCOUNT` was set by a `Charging` guard
            // that borrows the account and lives on this thread; it resets
            // the pointer before the borrow ends. Only this thread reaches
            // the account meanwhile (see the module docs), and `apply` only
            // reads and writes its cells.
            unsafe { (*account).apply(change) }
        }
    });
}

/// The memory of one tracked task: what it holds, the most it held, and
/// its limit. Lives in the task's wrapper (only tasks spawned with a limit
/// have one).
pub(crate) struct MemoryAccount {
    held: Cell<usize>,
    peak: Cell<usize>,
    limit: usize,
}

impl MemoryAccount {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryAccount {
            held: Cell::new(0),
            peak: Cell::new(0),
            limit,
        }
    }

    #[inline(always)]
    fn apply(&self, change: Change) {
        match change {
            Change::Grow(size) => {
                let held = self.held.get().saturating_add(size);
                self.held.set(held);
                if held > self.peak.get() {
                    self.peak.set(held);
                }
            }
            // Never below zero: see "What is charged to whom".
            Change::Shrink(size) => self.held.set(self.held.get().saturating_sub(size)),
        }
    }

    /// Whether the task holds more than its limit.
    #[inline]
    pub(crate) fn exceeded(&self) -> bool {
        self.held.get() > self.limit
    }

    pub(crate) fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            held: self.held.get(),
            peak: self.peak.get(),
            limit: self.limit,
        }
    }
}

/// Charges what this thread allocates and frees to an account, until
/// dropped (then the previous account, if any, is charged again).
pub(crate) struct Charging<'a> {
    previous: *const MemoryAccount,
    /// Whether the thread-local was reachable (it is, but while the
    /// thread's thread-locals are destroyed).
    set: bool,
    _account: PhantomData<&'a MemoryAccount>,
}

impl<'a> Charging<'a> {
    #[inline]
    pub(crate) fn enter(account: &'a MemoryAccount) -> Self {
        let previous = ACCOUNT.try_with(|current| current.replace(account));
        Charging {
            set: previous.is_ok(),
            previous: previous.unwrap_or(ptr::null()),
            _account: PhantomData,
        }
    }
}

impl Drop for Charging<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.set {
            let _ = ACCOUNT.try_with(|current| current.set(self.previous));
        }
    }
}

/// Charges nothing on this thread until dropped: a spawn inside a tracked
/// task does not charge the new task's allocation to it.
pub(crate) struct Uncharged(*const MemoryAccount);

impl Uncharged {
    #[inline]
    pub(crate) fn enter() -> Self {
        let current = ACCOUNT.try_with(Cell::get).unwrap_or(ptr::null());
        if !current.is_null() {
            let _ = ACCOUNT.try_with(|account| account.set(ptr::null()));
        }
        Uncharged(current)
    }
}

impl Drop for Uncharged {
    #[inline]
    fn drop(&mut self) {
        if !self.0.is_null() {
            let _ = ACCOUNT.try_with(|account| account.set(self.0));
        }
    }
}

/// What a tracked task holds: given by [`task_memory`] inside the task and
/// by [`TaskInfo::memory`](crate::task::TaskInfo::memory) to the task
/// hooks.
///
/// Counts are of bytes requested from the allocator (`Layout::size`), not
/// of what the allocator reserves for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Bytes allocated minus bytes freed while the task ran (never below
    /// zero; see the [module docs](self) for whose frees count).
    pub held: usize,
    /// The most `held` has been at any moment, inside a poll included.
    pub peak: usize,
    /// The limit given with [`Spawn::memory_limit`](crate::Spawn::memory_limit).
    pub limit: usize,
}

/// The memory of the task running on this thread, if it is tracked (it was
/// spawned with [`Spawn::memory_limit`](crate::Spawn::memory_limit));
/// `None` in an untracked task and outside tasks.
///
/// ```
/// use multipool::alloc::TaskAlloc;
///
/// #[global_allocator]
/// static GLOBAL: TaskAlloc = TaskAlloc::system();
///
/// fn main() {
///     let rt = multipool::Runtime::builder().workers(1).build().unwrap();
///     let usage = rt
///         .block_on(rt.spawn(async {
///             let buffer = vec![0u8; 4096];
///             let usage = multipool::alloc::task_memory().unwrap();
///             drop(buffer);
///             usage
///         })
///         .memory_limit(usize::MAX)) // track only
///         .unwrap();
///     assert!(usage.held >= 4096);
///     assert!(multipool::alloc::task_memory().is_none()); // not in a task
/// }
/// ```
pub fn task_memory() -> Option<MemoryUsage> {
    let account = ACCOUNT.try_with(Cell::get).ok()?;
    // SAFETY: as in `charge`: a non-null pointer is borrowed by a live
    // `Charging` guard on this thread, and the usage is copied out before
    // this returns.
    unsafe { account.as_ref() }.map(MemoryAccount::usage)
}

/// Whether [`TaskAlloc`] is the process's global allocator. Found out once,
/// by charging a probe allocation to a scratch account, then remembered.
///
/// [`Spawn::memory_limit`](crate::Spawn::memory_limit) refuses a task
/// when it is not: nothing would be counted, so the limit could never
/// trigger.
///
/// ```
/// // This program keeps the default allocator.
/// assert!(!multipool::alloc::is_installed());
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let err = rt.block_on(rt.spawn(async {}).memory_limit(1 << 20)).unwrap_err();
/// assert!(err.is_rejected());
/// assert!(err.to_string().contains("TaskAlloc"));
/// ```
pub fn is_installed() -> bool {
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;
    static INSTALLED: AtomicU8 = AtomicU8::new(UNKNOWN);
    match INSTALLED.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let probe = MemoryAccount::new(usize::MAX);
            let charging = Charging::enter(&probe);
            if !charging.set {
                // This thread is being torn down: ask again another time.
                return false;
            }
            drop(std::hint::black_box(Box::new(0u64)));
            drop(charging);
            let installed = probe.peak.get() > 0;
            INSTALLED.store(if installed { YES } else { NO }, Ordering::Relaxed);
            installed
        }
    }
}
