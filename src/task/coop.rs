//! The cooperative budget: [`consume_budget`] and [`unconstrained`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::runtime::coop;

/// Spends one unit of the current task's cooperative budget, yielding to
/// the scheduler first if the budget is spent.
///
/// Each poll of a task starts with a budget of 128 units. multipool's own
/// leaf futures spend one unit each time they complete:
/// [`JoinHandle`](crate::JoinHandle) (and an awaited
/// [`Spawn`](crate::Spawn)), [`time::Sleep`](crate::time::Sleep) (and so
/// [`time::timeout`](crate::time::timeout)'s timer and
/// [`Interval::tick`](crate::time::Interval::tick)). Once the budget is
/// spent, the next of them yields instead: it wakes the task and returns
/// `Pending`, so the task goes to the back of its queue and the worker
/// serves others, even when the task loops over futures that are always
/// ready (handles of finished tasks, expired timers, an interval catching
/// up). The next poll starts with a fresh budget. This is tokio's
/// cooperative scheduling (`tokio::task::consume_budget`), applied to
/// multipool's futures; tokio's own futures spend tokio's budget, not this
/// one.
///
/// Call `consume_budget` in a loop whose work never awaits a multipool
/// future (CPU work, a channel that is always ready) to give it the same
/// behaviour: it yields once every 128 calls. Outside a task (in
/// [`block_on`](crate::block_on), on another executor's threads, in
/// [`spawn_blocking`](crate::task::spawn_blocking)) there is no budget, and
/// it completes at once.
///
/// A foreign executor that drives multipool futures inside a task's poll
/// (say, `futures::executor::block_on` inside a task) spends that task's
/// budget and, once it is spent, would spin; wrap such code in
/// [`unconstrained`].
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(multipool::spawn(async {
///     let mut sum = 0u64;
///     for i in 0..10_000u64 {
///         sum += i;
///         multipool::task::consume_budget().await; // yields every 128 items
///     }
///     assert_eq!(sum, 49_995_000);
/// }))
/// .unwrap();
/// ```
pub async fn consume_budget() {
    poll_fn(coop::poll_proceed).await
}

/// Runs `future` with no cooperative budget: the multipool futures it
/// awaits never yield for the budget (see [`consume_budget`]), and spend
/// none of the task's.
///
/// Use it sparingly: a loop over always-ready futures inside it holds its
/// worker until the loop ends. It is meant for code that must not be
/// interrupted between two ready futures, or for a foreign executor nested
/// inside a task.
///
/// ```
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(multipool::spawn(multipool::task::unconstrained(async {
///     let done = multipool::spawn(async {}).start();
///     while !done.is_finished() {
///         multipool::task::yield_now().await;
///     }
///     let past = std::time::Instant::now() - std::time::Duration::from_secs(1);
///     for _ in 0..1_000 {
///         // Always ready, and never yields: no budget inside `unconstrained`.
///         multipool::time::sleep_until(past).await;
///     }
///     done.await.unwrap();
/// })))
/// .unwrap();
/// ```
pub fn unconstrained<F: Future>(future: F) -> Unconstrained<F> {
    Unconstrained { future }
}

pin_project_lite::pin_project! {
    /// The future returned by [`unconstrained`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Unconstrained<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Unconstrained<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self.project().future;
        coop::unconstrained(|| future.poll(cx))
    }
}
