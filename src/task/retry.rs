//! [`retry`]: run a fallible future again, with backoff, until it succeeds;
//! then, optionally, a [`fallback`](Retry::fallback).
//!
//! Invariants (spelled out for users in [`Retry`]'s documentation):
//!
//! * the first attempt always runs; after each failure the backoff
//!   iterator is asked for a delay once, and `None` ends the retry, so
//!   there are at most `1 + delays yielded` attempts;
//! * at most one attempt exists at a time: each is a task spawned with
//!   `crate::spawn` (priority, per-attempt timeout, name), made only after
//!   the previous one ended and its delay, slept on multipool's timer,
//!   passed;
//! * `Err`, a panic and a per-attempt timeout are failures; a refused or
//!   cancelled attempt (`AttemptError::Cancelled`) is never retried and
//!   never shown to `when`;
//! * `when` is asked once per other failure, before the backoff; `false`
//!   ends the retry at once;
//! * the fallback runs at most once, after the last failure, inside the
//!   retry's future;
//! * dropping the `Retry` aborts the attempt in flight;
//! * no field is pinned (`Retry: Unpin`), and the `Retry` is `Send` when
//!   its parts are.

use std::error::Error;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use self::backoff::{Backoff, BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use super::SpawnFuture;
use crate::time::{sleep, Sleep};
use crate::{JoinError, Priority};

pub mod backoff {
    //! Backoff policies for [`retry`](super::retry()): iterators of the delays
    //! between attempts, from the [`backon`](https://docs.rs/backon) crate.
    //!
    //! Pass any [`BackoffBuilder`] to [`Retry::backoff`](super::Retry::backoff):
    //!
    //! * [`ExponentialBuilder`] (the default: delays of 1 s, 2 s and 4 s, so
    //!   four attempts at most), with a factor, a minimum and maximum delay, a
    //!   limit on the total delay and optional jitter;
    //! * [`ConstantBuilder`]: the same delay every time;
    //! * [`FibonacciBuilder`]: delays growing as the Fibonacci sequence;
    //! * any iterator of `Duration`s that is `Send + Sync + Unpin` (an array's
    //!   `into_iter()`, say): each item is one delay, and the end of the
    //!   iterator ends the retries.
    //!
    //! Each builder's `with_max_times(n)` allows `n` retries after the first
    //! attempt. Without jitter (or with a seeded one, `with_jitter_seed`) the
    //! delays are the same on every run, so a test with paused time can add
    //! them up. backon computes exponential delays in `f32`: a delay may be a
    //! few nanoseconds off its round figure (10 ms × 4 comes out as
    //! 39.999999 ms), and multipool's timer rounds each deadline up to the
    //! microsecond.
    //!
    //! ```
    //! use std::time::Duration;
    //!
    //! use multipool::task::backoff::{BackoffBuilder, ExponentialBuilder};
    //!
    //! let delays: Vec<_> = ExponentialBuilder::new()
    //!     .with_min_delay(Duration::from_secs(1))
    //!     .with_max_times(3)
    //!     .build()
    //!     .collect();
    //! assert_eq!(delays, [1, 2, 4].map(Duration::from_secs));
    //! ```

    pub use backon::{
        Backoff, BackoffBuilder, ConstantBackoff, ConstantBuilder, ExponentialBackoff,
        ExponentialBuilder, FibonacciBackoff, FibonacciBuilder,
    };
}

/// Runs the future that `make` returns, again for each attempt, until one
/// succeeds or the retries run out; `.await` the returned [`Retry`] for the
/// first `Ok` value or a [`RetryError`] saying how the last attempt failed.
///
/// The defaults: the backoff is [`ExponentialBuilder::default`] (up to three
/// retries, after 1 s, 2 s and 4 s, no jitter); every failure is retried;
/// attempts run at [`Priority::Normal`] with no timeout and no name; there
/// is no fallback. Change them with [`backoff`](Retry::backoff),
/// [`when`](Retry::when), [`priority`](Retry::priority),
/// [`timeout`](Retry::timeout), [`name`](Retry::name) and
/// [`fallback`](Retry::fallback). See [`Retry`] for what the retry
/// guarantees.
///
/// Each attempt is spawned as a task, so the futures `make` returns must be
/// `Send + 'static`, like those given to [`spawn`](crate::spawn()).
///
/// ```
/// use std::time::Duration;
///
/// use multipool::task::backoff::ExponentialBuilder;
/// use multipool::task::retry;
///
/// # multipool::block_on(async {
/// let err = retry(|| async { Err::<(), _>("service unavailable") })
///     .backoff(ExponentialBuilder::new().with_min_delay(Duration::from_millis(1)).with_max_times(2))
///     .await
///     .unwrap_err();
/// assert_eq!(err.attempts(), 3);
/// assert_eq!(err.to_string(), "gave up after 3 attempts: service unavailable");
/// # });
/// ```
pub fn retry<M, Fut, T, E>(make: M) -> Retry<M, Fut, ExponentialBackoff, RetryAll<E>>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    Retry {
        make,
        backoff: ExponentialBuilder::default().build(),
        when: |_| true,
        fallback: NoFallback,
        priority: Priority::Normal,
        timeout: None,
        name: None,
        attempts: 0,
        state: State::Idle,
    }
}

/// The [`when`](Retry::when) of a [`Retry`] until one is set: every
/// failure is retried.
pub type RetryAll<E> = fn(&AttemptError<E>) -> bool;

/// A future that retries an operation; made by [`retry`].
///
/// Awaiting it (or spawning it, like any future) runs the attempts. Its
/// output is `Result<T, RetryError<E>>`, where the attempts' futures output
/// `Result<T, E>`; once a [`fallback`](Self::fallback) is set, it is `T`.
/// Set the options before it is first polled.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use multipool::task::backoff::ConstantBuilder;
/// use multipool::task::retry;
///
/// # multipool::block_on(async {
/// let calls = Arc::new(AtomicUsize::new(0));
/// let reply = retry(|| {
///     let calls = calls.clone();
///     async move {
///         match calls.fetch_add(1, Ordering::SeqCst) {
///             0 | 1 => Err("connection refused"),
///             _ => Ok("pong"),
///         }
///     }
/// })
/// .backoff(ConstantBuilder::new().with_delay(Duration::from_millis(1)))
/// .await;
/// assert_eq!(reply.unwrap(), "pong");
/// assert_eq!(calls.load(Ordering::SeqCst), 3);
/// # });
/// ```
///
/// # Guarantees
///
/// * **The first attempt always runs.** After each failed attempt the
///   backoff (an iterator of delays, see [`backoff`]) is asked
///   for the next delay: `Some(delay)` sleeps that long on multipool's timer
///   (so paused time applies) and starts the next attempt; `None` gives up.
///   A retry makes at most one attempt more than its backoff yields delays:
///   `max_times(0)` is exactly one attempt.
/// * **One attempt at a time.** Each attempt is a future made anew by the
///   closure given to [`retry`], spawned as its own task on the runtime
///   where the [`Retry`] is polled (the global runtime outside any), with
///   the retry's [`priority`](Retry::priority), per-attempt
///   [`timeout`](Retry::timeout) and [`name`](Retry::name). The next
///   attempt is made only after the previous one has ended and its delay
///   has passed.
/// * **What counts as a failure**: an attempt that returns `Err`, panics,
///   or outlives its timeout ([`AttemptError`] says which). An attempt the
///   runtime refused or cancelled ([`AttemptError::Cancelled`]: its pool
///   does not take the priority, the runtime shut down) is never retried.
/// * **[`when`](Retry::when) decides before the backoff.** It sees every
///   failure but `Cancelled`, once; a failure it rejects ends the retry at
///   once, without asking the backoff for a delay.
/// * **The fallback runs at most once**, only after the last attempt
///   failed, and gets that failure ([`RetryError`]). It runs inside the
///   retry's own future, not as a task of its own.
/// * **Dropping the `Retry` aborts the attempt in flight** (as
///   [`JoinHandle::abort`](crate::JoinHandle::abort) does) and makes no
///   further attempt.
/// * A panic in the closures given to `retry`, `when` or `fallback`
///   themselves (not in an attempt's future) unwinds through the retry's
///   future like any panic in a future.
///
/// # Type parameters
///
/// `M` makes each attempt's future, of type `Fut`; `B`
/// is the [`Backoff`]; `W` the [`when`](Self::when) predicate; `F` the
/// fallback ([`NoFallback`] or a [`Fallback`]). The `Retry` is `Send` when
/// they (and the outputs) are, and `Unpin` always.
#[must_use = "a Retry does nothing until it is awaited or spawned"]
pub struct Retry<M, Fut: Future, B, W, F = NoFallback> {
    make: M,
    backoff: B,
    when: W,
    fallback: F,
    priority: Priority,
    timeout: Option<Duration>,
    name: Option<String>,
    /// Attempts started so far.
    attempts: usize,
    state: State<Fut>,
}

enum State<Fut: Future> {
    /// The next attempt is to be made.
    Idle,
    Running(Attempt<Fut>),
    /// Between a failed attempt and the next.
    Sleeping(Sleep),
    /// The output was returned.
    Done,
}

/// An attempt's task; aborted if dropped before it has ended.
struct Attempt<Fut: Future>(SpawnFuture<Fut>);

impl<Fut: Future> Drop for Attempt<Fut> {
    fn drop(&mut self) {
        // A task that has ended ignores the abort.
        self.0.abort();
    }
}

// No field is ever pinned: the attempt's future is moved into its task, the
// fallback's future is boxed, and `SpawnFuture` and `Sleep` are `Unpin`.
impl<M, Fut: Future, B, W, F> Unpin for Retry<M, Fut, B, W, F> {}

impl<M, Fut, T, E, B, W, F> Retry<M, Fut, B, W, F>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    /// Sets the backoff policy: the delays between attempts, and how many
    /// retries there are (see [`backoff`]). The first
    /// attempt always runs; a backoff that yields no delay at all
    /// (`with_max_times(0)`) means exactly one attempt.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use multipool::task::backoff::ConstantBuilder;
    /// use multipool::task::retry;
    ///
    /// # multipool::block_on(async {
    /// let err = retry(|| async { Err::<(), _>("no") })
    ///     .backoff(ConstantBuilder::new().with_max_times(0))
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.attempts(), 1);
    ///
    /// // Any iterator of delays will do.
    /// let err = retry(|| async { Err::<(), _>("no") })
    ///     .backoff([Duration::from_millis(1), Duration::from_millis(2)].into_iter())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.attempts(), 3);
    /// # });
    /// ```
    pub fn backoff<Builder: BackoffBuilder>(
        self,
        backoff: Builder,
    ) -> Retry<M, Fut, Builder::Backoff, W, F> {
        Retry {
            make: self.make,
            backoff: backoff.build(),
            when: self.when,
            fallback: self.fallback,
            priority: self.priority,
            timeout: self.timeout,
            name: self.name,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Retries only the failures for which `when` returns `true`; a failure
    /// it rejects ends the retry at once (then the fallback runs, if there
    /// is one). `when` sees each failure once, before the backoff is asked
    /// for a delay; it is not asked about [`AttemptError::Cancelled`], which
    /// is never retried. By default every other failure is retried.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use multipool::task::backoff::ConstantBuilder;
    /// use multipool::task::{retry, AttemptError};
    ///
    /// #[derive(Debug)]
    /// enum Error { Busy, NotFound }
    ///
    /// # multipool::block_on(async {
    /// let err = retry(|| async { Err::<(), _>(Error::NotFound) })
    ///     .backoff(ConstantBuilder::new().with_delay(Duration::from_millis(1)))
    ///     .when(|err| matches!(err, AttemptError::Failed(Error::Busy)))
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.attempts(), 1);
    /// assert!(!err.is_exhausted());
    /// assert!(matches!(err.into_last_error(), AttemptError::Failed(Error::NotFound)));
    /// # });
    /// ```
    pub fn when<W2>(self, when: W2) -> Retry<M, Fut, B, W2, F>
    where
        W2: FnMut(&AttemptError<E>) -> bool,
    {
        Retry {
            make: self.make,
            backoff: self.backoff,
            when,
            fallback: self.fallback,
            priority: self.priority,
            timeout: self.timeout,
            name: self.name,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Sets what to do when the retry gives up: `fallback` gets the
    /// [`RetryError`] and its future's output becomes the retry's output,
    /// which is then `T` rather than `Result<T, RetryError<E>>`. It runs
    /// after the last attempt failed (the backoff ran out, or
    /// [`when`](Self::when) rejected the failure, or the runtime cancelled
    /// the attempt), at most once, inside the retry's own future.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use multipool::task::backoff::ConstantBuilder;
    /// use multipool::task::retry;
    ///
    /// # multipool::block_on(async {
    /// let price = retry(|| async { Err::<u32, _>("quote service down") })
    ///     .backoff(ConstantBuilder::new().with_delay(Duration::from_millis(1)).with_max_times(2))
    ///     .fallback(|err| async move {
    ///         assert_eq!(err.attempts(), 3);
    ///         100 // the cached price
    ///     })
    ///     .await;
    /// assert_eq!(price, 100);
    /// # });
    /// ```
    pub fn fallback<G, GFut>(self, fallback: G) -> Retry<M, Fut, B, W, Fallback<G, GFut>>
    where
        G: FnOnce(RetryError<E>) -> GFut,
        GFut: Future<Output = T>,
    {
        Retry {
            make: self.make,
            backoff: self.backoff,
            when: self.when,
            fallback: Fallback {
                state: FallbackState::Waiting(fallback),
            },
            priority: self.priority,
            timeout: self.timeout,
            name: self.name,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Gives each attempt a deadline, `timeout` after it is started (see
    /// [`Spawn::timeout`](crate::Spawn::timeout)): an attempt still running
    /// then is cancelled and counts as a failure,
    /// [`AttemptError::TimedOut`]. `Duration::MAX` never fires. Default:
    /// none. To bound the whole retry instead, wrap it in
    /// [`time::timeout`](crate::time::timeout) or spawn it with a timeout.
    ///
    /// # Panics
    ///
    /// Panics if `timeout` is zero: every attempt would be cancelled before
    /// it could run.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use multipool::task::backoff::ConstantBuilder;
    /// use multipool::task::{retry, AttemptError};
    ///
    /// # multipool::block_on(async {
    /// let err = retry(|| async {
    ///     multipool::time::sleep(Duration::from_secs(60)).await;
    ///     Ok::<(), String>(())
    /// })
    /// .timeout(Duration::from_millis(1))
    /// .backoff(ConstantBuilder::new().with_delay(Duration::from_millis(1)).with_max_times(1))
    /// .await
    /// .unwrap_err();
    /// assert!(matches!(err.last_error(), AttemptError::TimedOut));
    /// assert_eq!(err.to_string(), "gave up after 2 attempts: attempt timed out");
    /// # });
    /// ```
    #[track_caller]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "`Retry::timeout` must be greater than zero: every attempt would be cancelled \
             before it could run"
        );
        self.timeout = Some(timeout);
        self
    }

    /// Sets the priority of the attempts' tasks (default
    /// [`Priority::Normal`], whatever the priority of the task that awaits
    /// the retry). The retry itself runs at the priority of whatever polls
    /// it: spawn it with `multipool::spawn(retry(..)).priority(..)` to
    /// choose that too.
    ///
    /// ```
    /// use multipool::task::retry;
    /// use multipool::Priority;
    ///
    /// # multipool::block_on(async {
    /// let health = multipool::spawn(retry(|| async { Ok::<_, String>("ok") }).priority(Priority::High))
    ///     .priority(Priority::High)
    ///     .await
    ///     .unwrap(); // the retry's own task completed
    /// assert_eq!(health.unwrap(), "ok");
    /// # });
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Names the attempts' tasks `"{name} attempt {n}"`, `n` counting from
    /// 1 (see [`Spawn::name`](crate::Spawn::name)). Default: unnamed.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<M, Fut, T, E, B, W, F> Retry<M, Fut, B, W, F>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    B: Backoff,
    W: FnMut(&AttemptError<E>) -> bool,
{
    /// Runs attempts until one succeeds or the retry gives up.
    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RetryError<E>>> {
        loop {
            match &mut self.state {
                State::Idle => {
                    self.attempts += 1;
                    let mut spawn = crate::spawn((self.make)()).priority(self.priority);
                    if let Some(timeout) = self.timeout {
                        spawn = spawn.timeout(timeout);
                    }
                    if let Some(name) = &self.name {
                        spawn = spawn.name(format!("{name} attempt {}", self.attempts));
                    }
                    self.state = State::Running(Attempt(spawn.into_future()));
                }
                State::Running(attempt) => {
                    let ended = ready!(Pin::new(&mut attempt.0).poll(cx));
                    self.state = State::Done;
                    let error = match ended {
                        Ok(Ok(value)) => return Poll::Ready(Ok(value)),
                        Ok(Err(error)) => AttemptError::Failed(error),
                        Err(error) if error.is_timeout() => AttemptError::TimedOut,
                        Err(error) if error.is_panic() => AttemptError::Panicked(error),
                        Err(error) => AttemptError::Cancelled(error),
                    };
                    let retried =
                        !matches!(error, AttemptError::Cancelled(_)) && (self.when)(&error);
                    match retried.then(|| self.backoff.next()).flatten() {
                        Some(delay) if delay.is_zero() => self.state = State::Idle,
                        Some(delay) => self.state = State::Sleeping(sleep(delay)),
                        None => {
                            return Poll::Ready(Err(RetryError {
                                attempts: self.attempts,
                                exhausted: retried,
                                last: error,
                            }))
                        }
                    }
                }
                State::Sleeping(delay) => {
                    ready!(Pin::new(delay).poll(cx));
                    self.state = State::Idle;
                }
                State::Done => panic!("`Retry` polled after it completed"),
            }
        }
    }
}

impl<M, Fut, T, E, B, W> Future for Retry<M, Fut, B, W, NoFallback>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    B: Backoff,
    W: FnMut(&AttemptError<E>) -> bool,
{
    type Output = Result<T, RetryError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_attempts(cx)
    }
}

impl<M, Fut, T, E, B, W, G, GFut> Future for Retry<M, Fut, B, W, Fallback<G, GFut>>
where
    M: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    B: Backoff,
    W: FnMut(&AttemptError<E>) -> bool,
    G: FnOnce(RetryError<E>) -> GFut,
    GFut: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        loop {
            match &mut this.fallback.state {
                FallbackState::Waiting(_) => {
                    let error = match ready!(this.poll_attempts(cx)) {
                        Ok(value) => return Poll::Ready(value),
                        Err(error) => error,
                    };
                    let FallbackState::Waiting(fallback) =
                        std::mem::replace(&mut this.fallback.state, FallbackState::Done)
                    else {
                        unreachable!("the fallback is still waiting")
                    };
                    this.fallback.state = FallbackState::Running(Box::pin(fallback(error)));
                }
                FallbackState::Running(future) => {
                    let output = ready!(future.as_mut().poll(cx));
                    this.fallback.state = FallbackState::Done;
                    return Poll::Ready(output);
                }
                FallbackState::Done => panic!("`Retry` polled after it completed"),
            }
        }
    }
}

/// The fallback slot of a [`Retry`] that has none: awaiting it yields
/// `Result<T, RetryError<E>>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

/// The fallback of a [`Retry`], set with [`Retry::fallback`]: a closure
/// `G` and, once it has been called, its future `GFut`.
pub struct Fallback<G, GFut> {
    state: FallbackState<G, GFut>,
}

enum FallbackState<G, GFut> {
    Waiting(G),
    /// Boxed: the `Retry` is `Unpin`, and this is the rare path.
    Running(Pin<Box<GFut>>),
    Done,
}

/// How one attempt of a [`retry`] failed; what [`Retry::when`] looks at.
///
/// `Display` shows the error, or says the attempt panicked or timed out;
/// `Error::source` is the source of the attempt's own error (whose
/// message `Display` already shows).
#[derive(Debug)]
#[non_exhaustive]
pub enum AttemptError<E> {
    /// The attempt's future returned `Err`.
    Failed(E),
    /// The attempt's future panicked;
    /// [`JoinError::into_panic`] gives the payload, to re-raise with
    /// [`std::panic::resume_unwind`].
    Panicked(JoinError),
    /// The attempt outlived its [`Retry::timeout`] and was cancelled.
    TimedOut,
    /// The runtime refused the attempt (its pool does not take the retry's
    /// priority, say: [`JoinError::is_rejected`]) or cancelled it (it shut
    /// down: [`JoinError::is_shutdown`]). Never retried: trying again would
    /// fail the same way.
    Cancelled(JoinError),
}

impl<E: fmt::Display> fmt::Display for AttemptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Failed(error) => error.fmt(f),
            AttemptError::Panicked(error) | AttemptError::Cancelled(error) => error.fmt(f),
            AttemptError::TimedOut => f.write_str("attempt timed out"),
        }
    }
}

impl<E: Error + 'static> Error for AttemptError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AttemptError::Failed(error) => error.source(),
            _ => None,
        }
    }
}

/// Why a [`retry`] gave up: how many attempts it made, and how the last
/// one failed.
///
/// `Display` reads "gave up after 5 attempts: " and the last failure, or
/// "gave up after 2 attempts (error not retried): " and the last failure
/// when [`Retry::when`] rejected it or the runtime cancelled the attempt.
/// `Error::source` is the source of the last failure (whose message
/// `Display` already shows).
///
/// ```
/// use multipool::task::backoff::ConstantBuilder;
/// use multipool::task::{retry, AttemptError};
///
/// # multipool::block_on(async {
/// let err = retry(|| async { Err::<(), _>("disk full") })
///     .backoff(ConstantBuilder::new().with_max_times(0))
///     .await
///     .unwrap_err();
/// assert_eq!(err.attempts(), 1);
/// assert!(err.is_exhausted());
/// assert_eq!(err.to_string(), "gave up after 1 attempt: disk full");
/// assert!(matches!(err.into_last_error(), AttemptError::Failed("disk full")));
/// # });
/// ```
#[derive(Debug)]
pub struct RetryError<E> {
    attempts: usize,
    exhausted: bool,
    last: AttemptError<E>,
}

impl<E> RetryError<E> {
    /// How many attempts were made (at least 1).
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// Whether the retry gave up because its backoff allowed no more
    /// retries; `false` when [`Retry::when`] rejected the last failure or
    /// the runtime cancelled the attempt ([`AttemptError::Cancelled`]).
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// How the last attempt failed.
    pub fn last_error(&self) -> &AttemptError<E> {
        &self.last
    }

    /// How the last attempt failed, by value.
    pub fn into_last_error(self) -> AttemptError<E> {
        self.last
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = self.attempts;
        let plural = if attempts == 1 { "" } else { "s" };
        let why = if self.exhausted {
            ""
        } else {
            " (error not retried)"
        };
        write!(
            f,
            "gave up after {attempts} attempt{plural}{why}: {}",
            self.last
        )
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.last.source()
    }
}

impl<M, Fut: Future, B, W, F> fmt::Debug for Retry<M, Fut, B, W, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Idle => "idle",
            State::Running(_) => "attempt running",
            State::Sleeping(_) => "waiting to retry",
            State::Done => "done",
        };
        f.debug_struct("Retry")
            .field("attempts", &self.attempts)
            .field("state", &state)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<G, GFut> fmt::Debug for Fallback<G, GFut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            FallbackState::Waiting(_) => "waiting",
            FallbackState::Running(_) => "running",
            FallbackState::Done => "done",
        };
        f.debug_struct("Fallback").field("state", &state).finish()
    }
}
