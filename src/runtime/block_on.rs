//! [`block_on`]: run a future to completion on the calling thread.

use std::cell::RefCell;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use crate::runtime::scheduler::{worker, Pool};
use crate::runtime::task::trust_waker;
use crate::sync::Arc;

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
    let trusted = trust_waker(waker.data());
    let output = loop {
        // No cooperative budget outside tasks: a budget here would make
        // this loop spin instead of parking (see `task::coop`).
        let polled = crate::runtime::coop::unconstrained(|| future.as_mut().poll(&mut cx));
        if let Poll::Ready(output) = polled {
            break output;
        }
        park(&parker);
    };
    drop(trusted);
    let _ = CACHE.try_with(|cache| *cache.borrow_mut() = Some((parker, waker)));
    output
}

/// `block_on` for `Runtime::block_on`. With `test-util` the thread counts
/// as busy in `pool`'s runtime while it polls and from the moment it is
/// woken, so paused time never jumps ahead while it has something to do
/// (see `runtime::time::paused`); without, it is the plain `block_on`.
pub(crate) fn block_on_in<F: IntoFuture>(future: F, pool: &Arc<Pool>) -> F::Output {
    #[cfg(feature = "test-util")]
    {
        assert_not_on_worker();
        crate::runtime::time::paused::block_on_counted(future, pool, park)
    }
    #[cfg(not(feature = "test-util"))]
    {
        let _ = pool;
        block_on(future)
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
    // A `block_on` nested in a counted poll sleeps uncounted (see
    // `runtime::time::paused`).
    #[cfg(feature = "test-util")]
    crate::runtime::time::paused::park_uncounted(|| parker.park());
    #[cfg(not(feature = "test-util"))]
    parker.park();
}
