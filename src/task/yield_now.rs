//! [`yield_now`]: give the worker to other tasks for one turn.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields once to the scheduler.
///
/// The task goes to the back of its priority's run-queue (never into the
/// worker's "run next" slot), so every task queued at its level runs before it
/// is polled again.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(async {
///     for _ in 0..3 {
///         multipool::task::yield_now().await;
///     }
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // Woken while running: the scheduler sends the task to the back of
        // its queue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
