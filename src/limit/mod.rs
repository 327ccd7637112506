//! Rate and concurrency limits: how often, and how many at once.
//!
//! * [`RateLimiter`]: at most a [`Quota`] of cells per period (GCRA, from
//!   the `governor` crate, which this module wraps rather than
//!   re-implements). Wait in a task with
//!   [`until_ready`](RateLimiter::until_ready), try with
//!   [`check`](RateLimiter::check), gate spawns with
//!   [`Spawn::rate_limit`](crate::Spawn::rate_limit), or a whole pool with
//!   [`PoolBuilder::rate_limit`](crate::PoolBuilder::rate_limit).
//! * [`ConcurrencyLimit`]: at most `n` at once (`async-lock`'s semaphore);
//!   gate spawns with [`Spawn::concurrency`](crate::Spawn::concurrency), or
//!   hold a [`ConcurrencyPermit`] yourself.
//!
//! ```
//! # #[cfg(feature = "test-util")] { // paused time: `start_paused`
//! use std::num::NonZeroU32;
//! use multipool::limit::{ConcurrencyLimit, Quota, RateLimiter};
//! use multipool::Priority;
//!
//! let rt = multipool::Runtime::builder().workers(2).start_paused(true).build().unwrap();
//! rt.block_on(async {
//!     let api = RateLimiter::new(Quota::per_second(NonZeroU32::new(20).unwrap()));
//!     let db = ConcurrencyLimit::new(4);
//!     let calls: Vec<_> = (0..50)
//!         .map(|i| {
//!             multipool::spawn(async move { i })
//!                 .priority(if i % 10 == 0 { Priority::High } else { Priority::Low })
//!                 .rate_limit(&api) // 20 a second; waiting High ones go first
//!                 .concurrency(&db) // and at most 4 at once
//!                 .start()
//!         })
//!         .collect();
//!     for call in calls {
//!         call.await.unwrap();
//!     }
//! });
//! # }
//! ```
//!
//! # Invariants
//!
//! * **Priority order.** Among the tasks waiting on one [`RateLimiter`],
//!   cells go to waiting [`Priority::High`](crate::Priority::High) ones before `Normal`, and to
//!   `Normal` before `Low`; within a level, in arrival order. A newcomer
//!   takes a free cell at once only if nobody of its level or above waits
//!   (so it never overtakes an equal or more urgent waiter).
//! * **Waiting costs no worker.** Of the waiters of one limiter only the
//!   first (the *head*) sleeps, on one multipool timer, until GCRA says its
//!   cell is free; the others are parked until they become the head. A
//!   waiter is polled a bounded number of times (see [`UntilReady`]).
//!   [`ConcurrencyLimit`] waiters are parked on the semaphore's event.
//! * **Cancel-safe.** A waiter dropped (its task aborted, timed out or cancelled at
//!   shutdown, or an `until_ready` future dropped) leaves the queue and
//!   wakes the next one if it was first: no turn is lost, and a cell is
//!   taken only by a waiter that completes. A concurrency permit is held
//!   until its task ends, however it ends.
//! * **One clock.** A limiter reads the clock of the runtime it is bound
//!   to: a pool's limiter its runtime's, a [`RateLimiter::new`] the
//!   runtime it is first used in (by a spawn: the runtime the task goes
//!   to; real time outside any). So paused time
//!   (`test-util`) drives it exactly, and the head sleeps on multipool's
//!   timer, never blocking a thread.
//! * **Nothing spawned is lost.** See below.
//!
//! # Limited spawns
//!
//! A [`Spawn`](crate::Spawn) given limits (or spawned on a pool with a
//! rate limit) passes them in order: the pool's rate limit, its own rate
//! limit (at the spawn's priority), then its concurrency limit. What is free
//! at once is taken at once, at no cost beyond the limiter's check. If it
//! must wait:
//!
//! * `.await` waits in the awaiting task, before the task is created (as
//!   it waits for room in a bounded queue): the task is not queued, and
//!   does not exist, until the limits let it through;
//! * [`start`](crate::Spawn::start), [`try_start`](crate::Spawn::try_start)
//!   and [`detach`](crate::Spawn::detach) must not wait, so the task is
//!   created at once and waits in its own first poll: one poll to join the
//!   queue, then it is parked (no worker time) until its turn, when its
//!   future starts. The handle is a real task's, so everything works while
//!   it waits: [`abort`](crate::JoinHandle::abort) (the handle reports
//!   aborted, the turn passes on), shutdown (the handle reports shutdown),
//!   a [`timeout`](crate::Spawn::timeout) (which counts from the start,
//!   the wait included). The alternative, a waiting list outside any task
//!   that queues the task when its turn comes, would need every
//!   cancellation path of the runtime to reach into it; this design reuses
//!   them.
//! * a task held by [`after`](crate::Spawn::after) is held first and passes
//!   its limits once released, in its first poll, however it was started:
//!   it takes no cell and holds no permit while its dependencies run.
//!
//! [`task::spawn_blocking`](crate::task::spawn_blocking) calls run on the
//! blocking pool and pass no pool rate limit.

mod clock;
mod concurrency;
mod gate;
mod rate;

pub use concurrency::{Acquire, ConcurrencyLimit, ConcurrencyPermit};
pub use rate::{Quota, RateLimited, RateLimiter, UntilReady};

pub(crate) use gate::{Gate, Limited, Limits, Wait};
