//! [`block_on`]: run a future to completion on the calling thread.

use std::cell::RefCell;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::pool::worker;

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
    assert!(
        worker::current_index().is_none(),
        "`block_on` called on a multipool worker thread; this would block the worker \
         and every task queued behind it. Use `.await` instead, or run the blocking \
         part on a thread of its own"
    );
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
    let output = loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            break output;
        }
        parker.park();
    };
    let _ = CACHE.try_with(|cache| *cache.borrow_mut() = Some((parker, waker)));
    output
}
