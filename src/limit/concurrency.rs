//! [`ConcurrencyLimit`]: at most `n` at once, on `async-lock`'s semaphore.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_lock::futures::AcquireArc;
use async_lock::{Semaphore, SemaphoreGuardArc};

use crate::sync::Arc;

/// At most `max` holders of a permit at once: tasks spawned with
/// [`Spawn::concurrency`](crate::Spawn::concurrency) (each holds a permit
/// from its first poll of its own future until it ends, however it ends:
/// completed, panicked, aborted, timed out or cancelled at shutdown), or
/// code holding a [`ConcurrencyPermit`] from [`acquire`](Self::acquire).
///
/// Clones share one limit. Waiting for a permit parks the waiter (no
/// worker time); a released permit wakes one waiter. There is no priority
/// order among waiters here: see [`RateLimiter`](super::RateLimiter) for
/// that.
///
/// ```
/// use multipool::limit::ConcurrencyLimit;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// let limit = ConcurrencyLimit::new(3);
/// let results = rt.block_on(async {
///     let tasks: Vec<_> = (0..10)
///         .map(|i| multipool::spawn(async move { i * 2 }).concurrency(&limit).start())
///         .collect();
///     let mut results = Vec::new();
///     for task in tasks {
///         results.push(task.await.unwrap());
///     }
///     results
/// });
/// assert_eq!(results.iter().sum::<i32>(), 90);
/// assert_eq!(limit.in_use(), 0); // every permit came back
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl ConcurrencyLimit {
    /// A limit of `max` at once. `usize::MAX` is as good as no limit.
    ///
    /// # Panics
    ///
    /// Panics if `max` is 0: nothing could ever run under it.
    ///
    /// ```should_panic
    /// let _ = multipool::limit::ConcurrencyLimit::new(0); // panics
    /// ```
    #[track_caller]
    pub fn new(max: usize) -> ConcurrencyLimit {
        assert!(
            max > 0,
            "`ConcurrencyLimit::new(0)`: a limit of 0 would let nothing run; \
             the limit must be at least 1"
        );
        ConcurrencyLimit {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The most permits held at once.
    ///
    /// ```
    /// assert_eq!(multipool::limit::ConcurrencyLimit::new(4).max(), 4);
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many permits are held now.
    ///
    /// ```
    /// let limit = multipool::limit::ConcurrencyLimit::new(4);
    /// let permit = limit.try_acquire().unwrap();
    /// assert_eq!(limit.in_use(), 1);
    /// drop(permit);
    /// assert_eq!(limit.in_use(), 0);
    /// ```
    pub fn in_use(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// A permit now, or `None` if all `max` are held.
    ///
    /// ```
    /// let limit = multipool::limit::ConcurrencyLimit::new(1);
    /// let held = limit.try_acquire().unwrap();
    /// assert!(limit.try_acquire().is_none());
    /// drop(held);
    /// assert!(limit.try_acquire().is_some());
    /// ```
    pub fn try_acquire(&self) -> Option<ConcurrencyPermit> {
        self.semaphore.try_acquire_arc().map(ConcurrencyPermit)
    }

    /// Waits for a permit. Dropping the future gives up its place (a
    /// wake-up it was given passes on to another waiter).
    ///
    /// ```
    /// let limit = multipool::limit::ConcurrencyLimit::new(1);
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let permit = limit.acquire().await;
    ///     assert_eq!(limit.in_use(), 1);
    ///     drop(permit);
    /// });
    /// ```
    pub fn acquire(&self) -> Acquire {
        Acquire {
            inner: self.semaphore.acquire_arc(),
        }
    }
}

impl fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("max", &self.max)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// One of a [`ConcurrencyLimit`]'s permits; given back when dropped.
///
/// ```
/// let limit = multipool::limit::ConcurrencyLimit::new(2);
/// let permit = limit.try_acquire().unwrap();
/// println!("{permit:?}");
/// ```
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct ConcurrencyPermit(#[allow(dead_code)] SemaphoreGuardArc);

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConcurrencyPermit")
    }
}

pin_project_lite::pin_project! {
    /// Waits for a [`ConcurrencyPermit`]: returned by
    /// [`ConcurrencyLimit::acquire`].
    ///
    /// ```
    /// let limit = multipool::limit::ConcurrencyLimit::new(1);
    /// let acquire: multipool::limit::Acquire = limit.acquire();
    /// let permit = multipool::block_on(acquire);
    /// # drop(permit);
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire {
        #[pin]
        inner: AcquireArc,
    }
}

impl Future for Acquire {
    type Output = ConcurrencyPermit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ConcurrencyPermit> {
        self.project().inner.poll(cx).map(ConcurrencyPermit)
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire")
    }
}
