//! What a spawned task passes before its future runs: its pool's rate
//! limit, the spawn's own rate limit, then the spawn's concurrency limit,
//! in that order (a task waiting for a rate holds no concurrency permit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{ConcurrencyLimit, ConcurrencyPermit, RateLimiter};
use crate::runtime::Pool;
use crate::sync::Arc;
use crate::Priority;

/// The limits a [`Spawn`](crate::Spawn) was given; `None` without any.
/// (It lives in the `Spawn`'s boxed extras now, so its own box only keeps
/// an awaited spawn's held state one word smaller; folding `LimitSet` in
/// is a possible simplification.)
#[derive(Clone, Default, Debug)]
pub(crate) struct Limits(Option<Box<LimitSet>>);

/// The limits themselves.
#[derive(Clone, Default, Debug)]
pub(crate) struct LimitSet {
    rate: Option<RateLimiter>,
    concurrency: Option<ConcurrencyLimit>,
}

/// What is left to wait for; yields the concurrency permit, if any.
pub(crate) type Wait = Pin<Box<dyn Future<Output = Option<ConcurrencyPermit>> + Send>>;

/// What a new task must do before its future runs.
pub(crate) enum Gate {
    /// Nothing (no limit, or every limit let it through at once, with no
    /// permit to hold): the future is spawned as it is.
    Open,
    /// Let through at once; the task holds this permit for its life.
    Passed(ConcurrencyPermit),
    /// It must wait first.
    Wait(Wait),
}

impl Limits {
    /// No limits.
    pub(crate) const NONE: Limits = Limits(None);

    /// Takes what is free now of the limits on a task of `priority` spawned
    /// on `pool`, and says what is left. Runs no user code (it may be
    /// called under the runtime context's borrow).
    #[inline]
    pub(crate) fn gate(self, pool: &Pool, priority: Priority) -> Gate {
        if self.none_on(pool) {
            return Gate::Open;
        }
        self.gate_slow(pool, pool.rate_limiter.clone(), priority)
    }

    /// The gate of a task held by `Spawn::after`: nothing is taken now;
    /// the task passes its limits in its first poll, once its dependencies
    /// have ended, as [`gate`](Self::gate) would then (what is free at
    /// once, then the waiting). So a held task takes no rate cell and holds
    /// no concurrency permit while it waits (a permit held there could
    /// deadlock against a dependency under the same limit).
    pub(crate) fn deferred(self, pool: Arc<Pool>, priority: Priority) -> Gate {
        Gate::Wait(Box::pin(async move {
            match self.gate(&pool, priority) {
                Gate::Open => None,
                Gate::Passed(permit) => Some(permit),
                Gate::Wait(wait) => wait.await,
            }
        }))
    }

    /// Whether a task spawned on `pool` with these limits has none at all.
    #[inline]
    pub(crate) fn none_on(&self, pool: &Pool) -> bool {
        self.0.is_none() && pool.rate_limiter.is_none()
    }

    pub(crate) fn set_rate(&mut self, limiter: &RateLimiter) {
        self.0.get_or_insert_with(Default::default).rate = Some(limiter.clone());
    }

    pub(crate) fn set_concurrency(&mut self, limit: &ConcurrencyLimit) {
        self.0.get_or_insert_with(Default::default).concurrency = Some(limit.clone());
    }

    #[inline(never)]
    fn gate_slow(
        self,
        pool: &Pool,
        mut pool_rate: Option<RateLimiter>,
        priority: Priority,
    ) -> Gate {
        let LimitSet {
            mut rate,
            mut concurrency,
        } = self.0.map(|set| *set).unwrap_or_default();
        let level = priority.index();
        // The pool's own limiter given again is passed once.
        if let (Some(pool_rate), Some(own)) = (&pool_rate, &rate) {
            if pool_rate.same(own) {
                rate = None;
            }
        }
        // In order: a stage is tried only once the ones before it passed.
        if pool_rate
            .as_ref()
            .is_some_and(|limiter| limiter.try_acquire(level, Some(pool)).is_ok())
        {
            pool_rate = None;
        }
        if pool_rate.is_none()
            && rate
                .as_ref()
                .is_some_and(|limiter| limiter.try_acquire(level, Some(pool)).is_ok())
        {
            rate = None;
        }
        let mut permit = None;
        if pool_rate.is_none() && rate.is_none() {
            if let Some(limit) = &concurrency {
                permit = limit.try_acquire();
                if permit.is_some() {
                    concurrency = None;
                }
            }
            if concurrency.is_none() {
                return match permit {
                    Some(permit) => Gate::Passed(permit),
                    None => Gate::Open,
                };
            }
        }
        Gate::Wait(Box::pin(async move {
            if let Some(limiter) = pool_rate {
                limiter.until_ready_with(priority).await;
            }
            if let Some(limiter) = rate {
                limiter.until_ready_with(priority).await;
            }
            match concurrency {
                Some(limit) => Some(limit.acquire().await),
                None => None,
            }
        }))
    }
}

impl Gate {
    /// `future`, behind what is left of the gate.
    pub(crate) fn wrap<F>(self, future: F) -> Limited<F> {
        let (permit, wait) = match self {
            Gate::Open => (None, None),
            Gate::Passed(permit) => (Some(permit), None),
            Gate::Wait(wait) => (None, Some(wait)),
        };
        Limited {
            future,
            permit,
            wait,
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's future behind its limits: waits (parked, not polled in a
    /// loop) until they let it through, then runs it while holding the
    /// concurrency permit. Fields drop in order: the future, then the
    /// permit (so the permit outlives everything the task ran), then the
    /// wait (whose drop passes a waiting turn on).
    pub(crate) struct Limited<F> {
        #[pin]
        future: F,
        permit: Option<ConcurrencyPermit>,
        wait: Option<Wait>,
    }
}

impl<F> Limited<F> {
    /// `future`, holding `permit` (taken before the task was created).
    pub(crate) fn holding(future: F, permit: ConcurrencyPermit) -> Self {
        Gate::Passed(permit).wrap(future)
    }
}

impl<F: Future> Future for Limited<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(wait) = this.wait {
            let Poll::Ready(permit) = wait.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            *this.permit = permit;
            *this.wait = None;
        }
        this.future.poll(cx)
    }
}
