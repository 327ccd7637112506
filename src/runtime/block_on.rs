//! [`block_on`]: run a future to completion on the calling thread.

use std::cell::RefCell;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use crate::pool::{worker, Pool};
use crate::sync::{Arc, AtomicU8, Ordering};

/// Runs a future to completion on the calling thread, parking the thread
/// while the future waits. Anything that turns into a future works, a
/// [`Spawn`](crate::Spawn) included.
///
/// It does not enter any runtime: `multipool::spawn` inside it goes to the
/// global runtime unless one is entered. Use
/// [`Runtime::block_on`](crate::Runtime::block_on) to run a future inside a
/// specific runtime.
///
/// # Panics
///
/// Panics when called on a multipool worker thread: blocking a worker would
/// stall every task queued behind it (and could wait forever on a task that
/// only that worker can run). Use `.await` there instead.
///
/// ```
/// let value = multipool::block_on(async {
///     multipool::spawn(async { 21 * 2 }).await.unwrap()
/// });
/// assert_eq!(value, 42);
/// ```
pub fn block_on<F: IntoFuture>(future: F) -> F::Output {
    assert_not_on_worker();
    thread_local! {
        /// One parker per thread, reused across calls; `None` while a
        /// `block_on` on this thread is using it.
        static CACHE: RefCell<Option<(parking::Parker, Waker)>> =
            RefCell::new(Some(new_parker()));
    }
    fn new_parker() -> (parking::Parker, Waker) {
        let (parker, unparker) = parking::pair();
        (parker, Waker::from(unparker))
    }

    // A nested `block_on` (inside a future that another `block_on` is
    // polling) finds the cache empty and makes its own parker.
    let cached = CACHE
        .try_with(|cache| cache.borrow_mut().take())
        .ok()
        .flatten();
    let (parker, waker) = cached.unwrap_or_else(new_parker);
    let mut future = pin!(future.into_future());
    let mut cx = Context::from_waker(&waker);
    // An unparker's wake never panics.
    let trusted = crate::task::trust_waker(waker.data());
    let output = loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            break output;
        }
        park(&parker);
    };
    drop(trusted);
    let _ = CACHE.try_with(|cache| *cache.borrow_mut() = Some((parker, waker)));
    output
}

/// `block_on` for `Runtime::block_on`: the thread counts as busy in `pool`
/// while it polls and from the moment it is woken, so paused time never
/// jumps ahead while it has something to do (see `Pool::try_auto_advance`).
pub(crate) fn block_on_in<F: IntoFuture>(future: F, pool: &Arc<Pool>) -> F::Output {
    assert_not_on_worker();
    let parker = parking::Parker::new();
    let state = Arc::new(BlockOnWaker {
        unparker: parker.unparker(),
        pool: pool.clone(),
        state: AtomicU8::new(0),
    });
    let waker = Waker::from(state.clone());
    let mut cx = Context::from_waker(&waker);
    // `BlockOnWaker::wake` never panics.
    let _trusted = crate::task::trust_waker(waker.data());
    let mut future = pin!(future.into_future());
    // Also when the future panics: a counted wake-up left behind would stop
    // paused time from ever advancing by itself again.
    let _finish = Finish(&state);
    loop {
        let poll = pool.blocker_poll(|| {
            // The poll is counted now; the wake-up that led here need not be.
            state.consume_wake();
            let _outer = CountedPoll::enter(pool);
            future.as_mut().poll(&mut cx)
        });
        if let Poll::Ready(output) = poll {
            return output;
        }
        // With paused time, the last one to go idle moves the clock.
        pool.try_auto_advance();
        park(&parker);
    }
}

/// Calls [`BlockOnWaker::finish`] when dropped.
struct Finish<'a>(&'a BlockOnWaker);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[track_caller]
fn assert_not_on_worker() {
    assert!(
        worker::current_index().is_none(),
        "`block_on` called on a multipool worker thread; this would block the worker \
         and every task queued behind it. Use `.await` instead, or run the blocking \
         part on a thread of its own"
    );
}

/// The waker of a `Runtime::block_on`; counts a pending wake-up in the
/// pool's `active_blockers`.
struct BlockOnWaker {
    unparker: parking::Unparker,
    pool: Arc<Pool>,
    /// `WOKEN`: a wake-up is counted and not consumed yet; `DONE`: the
    /// `block_on` returned, later wake-ups are not counted.
    state: AtomicU8,
}

const WOKEN: u8 = 1;
const DONE: u8 = 2;

impl BlockOnWaker {
    fn consume_wake(&self) {
        if self.state.fetch_and(!WOKEN, Ordering::SeqCst) & WOKEN != 0 {
            self.pool
                .runtime
                .active_blockers
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn finish(&self) {
        if self.state.fetch_or(DONE, Ordering::SeqCst) & (WOKEN | DONE) == WOKEN {
            self.pool
                .runtime
                .active_blockers
                .fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Wake for BlockOnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.fetch_or(WOKEN, Ordering::SeqCst) & (WOKEN | DONE) == 0 {
            self.pool
                .runtime
                .active_blockers
                .fetch_add(1, Ordering::SeqCst);
        }
        self.unparker.unpark();
    }
}

/// How many times `block_on` yields its time slice, checking for a wake-up,
/// before it sleeps.
const YIELDS_BEFORE_SLEEP: usize = 8;

/// Waits for the future's waker. A future awaited from outside the runtime
/// is often woken within microseconds (a task just spawned completes); a
/// short yield-spin then spares this thread a sleep and the waking worker a
/// futex wake-up. On the 2-core bench machine this took
/// `spawn_many_remote_busy2` from 1.07 ms to 0.3 ms: awaiting 1 000 handles
/// went from ~360 sleeps to about one.
fn park(parker: &parking::Parker) {
    for _ in 0..YIELDS_BEFORE_SLEEP {
        if parker.park_timeout(Duration::ZERO) {
            return;
        }
        thread::yield_now();
    }
    // A `block_on` nested in the poll of a `Runtime::block_on` sleeps while
    // that outer poll is counted as busy; it must not keep paused time from
    // advancing (nothing else could wake it).
    match COUNTED_POLL
        .try_with(|outer| outer.borrow().clone())
        .ok()
        .flatten()
    {
        Some(outer) => {
            outer.runtime.active_blockers.fetch_sub(1, Ordering::SeqCst);
            outer.try_auto_advance();
            parker.park();
            outer.runtime.active_blockers.fetch_add(1, Ordering::SeqCst);
        }
        None => parker.park(),
    }
}

/// Runs a `spawn_blocking` task on a blocking thread.
///
/// With paused time possible (feature `test-util`), the task was counted
/// in its runtime's `active_blockers` when it was queued (see
/// `BlockingPool::push`): paused time does not advance while blocking code
/// runs, as in tokio. A `block_on` nested in the closure sleeps uncounted,
/// as one nested in a counted poll does. Once the task has run, the count
/// drops and this thread tries the advance itself: the workers may all be
/// parked already.
pub(crate) fn run_blocking(runnable: crate::task::Runnable) {
    #[cfg(feature = "test-util")]
    {
        let pool = runnable.metadata().pool.clone();
        {
            let _counted = CountedPoll::enter(&pool);
            runnable.run();
        }
        pool.runtime.active_blockers.fetch_sub(1, Ordering::SeqCst);
        pool.try_auto_advance();
    }
    #[cfg(not(feature = "test-util"))]
    runnable.run();
}

thread_local! {
    /// The runtime whose `Runtime::block_on` is polling its future on this
    /// thread right now (and counts as busy), if any.
    static COUNTED_POLL: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
}

/// Marks a counted poll of `Runtime::block_on` on this thread; restores the
/// previous mark when dropped.
struct CountedPoll {
    previous: Option<Arc<Pool>>,
}

impl CountedPoll {
    fn enter(pool: &Arc<Pool>) -> Self {
        let previous = COUNTED_POLL
            .try_with(|outer| outer.borrow_mut().replace(pool.clone()))
            .ok()
            .flatten();
        CountedPoll { previous }
    }
}

impl Drop for CountedPoll {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = COUNTED_POLL.try_with(|outer| *outer.borrow_mut() = previous);
    }
}
