//! Paused time (feature `test-util`): what keeps it from moving by itself,
//! and the auto-advance.
//!
//! Invariants:
//! * Paused time moves by itself only when every pool of the runtime is
//!   idle, nothing is *active* (no `Runtime::block_on` polling its future
//!   or woken and about to, no `spawn_blocking` call queued or running),
//!   and something *waits* on the runtime: a `Runtime::block_on` (or
//!   `Handle::block_on`) asleep until its future is woken, or a `block_on`
//!   nested in a counted poll or a blocking call. That is tokio's rule: its clock moves only
//!   while the runtime is idle and being driven. Code that runs with the
//!   runtime entered, or threads that wait on tasks by other means (a
//!   channel's blocking `recv`), never see paused time move by itself.
//!   The active and waiting counts live here, and every change to them
//!   goes through this file.
//! * A wake-up of a `Runtime::block_on` is counted once, from the wake
//!   until the poll it leads to has begun, so the thread counts as busy
//!   before it is even scheduled; a wake-up after the `block_on` returned
//!   is not counted.
//! * A `block_on` nested in a counted poll (or in a blocking call) sleeps
//!   uncounted: nothing else could wake it if it kept time from moving.
//! * One auto-advance at a time (`advancing`), held until the wake-ups it
//!   caused are delivered, so the next idleness check sees their effect.
//!
//! Without `test-util` the clock is never paused. Everything here then
//! compiles to nothing: there is no [`PausedTime`], `Runtime::block_on` is the
//! plain `block_on` (no atomic read-modify-write per poll or wake), and
//! [`RuntimeShared::try_auto_advance`] is `false`.

#[cfg(feature = "test-util")]
pub(crate) use counted::{block_on_counted, park_uncounted, BlockingCount};

use crate::runtime::shared::RuntimeShared;

/// What the runtime counts to decide whether paused time may move.
#[cfg(feature = "test-util")]
#[derive(Default)]
pub(crate) struct PausedTime {
    /// Active `block_on` polls and wake-ups, and blocking calls queued or
    /// running.
    active: crate::sync::AtomicUsize,
    /// `Runtime::block_on` calls asleep, waiting for their future's waker.
    waiting: crate::sync::AtomicUsize,
    /// Serialises auto-advances (see the module docs).
    advancing: crate::sync::RtMutex<()>,
}

impl RuntimeShared {
    /// With paused time and nothing left to do anywhere in the runtime,
    /// jumps the clock to the next timer and fires it. Returns whether time
    /// moved. Called by whoever is about to sleep (a parking worker, a
    /// `block_on` thread, a blocking thread that finished its call); only
    /// the last of them finds the runtime idle.
    pub(crate) fn try_auto_advance(&self) -> bool {
        #[cfg(feature = "test-util")]
        if self.clock.is_paused() {
            return self.auto_advance();
        }
        false
    }
}

#[cfg(feature = "test-util")]
mod counted {
    use std::cell::RefCell;
    use std::future::{Future, IntoFuture};
    use std::pin::pin;
    use std::task::{Context, Poll, Wake, Waker};

    use crate::runtime::scheduler::Pool;
    use crate::runtime::shared::RuntimeShared;
    use crate::runtime::task::{trust_waker, Runnable};
    use crate::sync::{Arc, AtomicU8, Ordering};

    impl RuntimeShared {
        fn count_active(&self) {
            self.paused.active.fetch_add(1, Ordering::SeqCst);
        }

        fn uncount_active(&self) {
            self.paused.active.fetch_sub(1, Ordering::SeqCst);
        }

        /// Counts a `block_on` about to sleep (see the module docs): from
        /// here until the guard drops, the runtime is being waited on, and
        /// the last thread to go idle may move paused time.
        fn waiting(&self) -> Waiting<'_> {
            self.paused.waiting.fetch_add(1, Ordering::SeqCst);
            Waiting(self)
        }

        pub(super) fn auto_advance(&self) -> bool {
            let _advancing = self.paused.advancing.lock();
            let pools: Vec<Arc<Pool>> = self.pools().collect();
            let idle = self.paused.active.load(Ordering::SeqCst) == 0
                && self.paused.waiting.load(Ordering::SeqCst) > 0
                && pools.iter().all(|pool| pool.is_idle());
            if !idle {
                return false;
            }
            while let Some(next) = pools
                .iter()
                .filter_map(|pool| pool.timers.next_expiration())
                .min()
            {
                // `next` may be a cascade point that fires nothing: go on to
                // the next one until something fires.
                self.clock.advance_to(next);
                let fired: usize = pools.iter().map(|pool| pool.timers.fire_all_due()).sum();
                if fired > 0 {
                    return true;
                }
            }
            false
        }

        /// Wakes every worker of every pool, so each re-parks with a
        /// deadline that fits the clock's new mode (after `pause`/`resume`).
        pub(crate) fn unpark_all(&self) {
            for pool in self.pools() {
                pool.timers.unpark_all();
            }
        }

        /// Fires every timer due in every pool (after `advance`).
        pub(crate) fn fire_all_due(&self) {
            for pool in self.pools() {
                pool.timers.fire_all_due();
            }
        }
    }

    /// A blocking call's place in the active count: taken when it is
    /// queued, given back once it has run or was cancelled unrun.
    pub(crate) struct BlockingCount;

    impl BlockingCount {
        /// Counts a blocking task just queued.
        pub(crate) fn queued(runnable: &Runnable) {
            runnable.metadata().pool.runtime.count_active();
        }

        /// Gives back the count of a queued task cancelled unrun.
        pub(crate) fn cancelled(runnable: &Runnable) {
            runnable.metadata().pool.runtime.uncount_active();
        }

        /// Runs a queued blocking task, counted (a `block_on` inside it
        /// sleeps uncounted), then gives the count back and tries the
        /// advance: the workers may all be parked already.
        pub(crate) fn run(runnable: Runnable) {
            let pool = runnable.metadata().pool.clone();
            {
                let _counted = CountedPoll::enter(&pool);
                runnable.run();
            }
            pool.runtime.uncount_active();
            pool.runtime.try_auto_advance();
        }
    }

    /// `Runtime::block_on` with paused time possible: the thread counts as
    /// active while it polls and from the moment it is woken.
    pub(crate) fn block_on_counted<F: IntoFuture>(
        future: F,
        pool: &Arc<Pool>,
        park: impl Fn(&parking::Parker),
    ) -> F::Output {
        let parker = parking::Parker::new();
        let state = Arc::new(BlockOnWaker {
            unparker: parker.unparker(),
            pool: pool.clone(),
            state: AtomicU8::new(0),
        });
        let waker = Waker::from(state.clone());
        let mut cx = Context::from_waker(&waker);
        // `BlockOnWaker::wake` never panics.
        let _trusted = trust_waker(waker.data());
        let mut future = pin!(future.into_future());
        // Also when the future panics: a counted wake-up left behind would
        // stop paused time from ever advancing by itself again.
        let _finish = Finish(&state);
        let runtime = &pool.runtime;
        loop {
            runtime.count_active();
            let poll = {
                let _uncount = Uncount(runtime);
                // The poll is counted now; the wake-up that led here need
                // not be.
                state.consume_wake();
                let _outer = CountedPoll::enter(pool);
                // No cooperative budget, as in the plain `block_on`.
                crate::runtime::task::coop::unconstrained(|| future.as_mut().poll(&mut cx))
            };
            if let Poll::Ready(output) = poll {
                return output;
            }
            // Waited on from here: with paused time, the last one to go
            // idle moves the clock.
            let _waiting = runtime.waiting();
            runtime.try_auto_advance();
            park(&parker);
        }
    }

    /// Gives back one waiting count when dropped.
    struct Waiting<'a>(&'a RuntimeShared);

    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.paused.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Gives back one active count when dropped.
    struct Uncount<'a>(&'a RuntimeShared);

    impl Drop for Uncount<'_> {
        fn drop(&mut self) {
            self.0.uncount_active();
        }
    }

    /// Parks with `park`; a thread inside a counted poll stops counting as
    /// active meanwhile (see the module docs).
    pub(crate) fn park_uncounted(park: impl FnOnce()) {
        match COUNTED_POLL
            .try_with(|outer| outer.borrow().clone())
            .ok()
            .flatten()
        {
            Some(outer) => {
                outer.runtime.uncount_active();
                {
                    // A nested `block_on` waits on the runtime too.
                    let _waiting = outer.runtime.waiting();
                    outer.runtime.try_auto_advance();
                    park();
                }
                outer.runtime.count_active();
            }
            None => park(),
        }
    }

    /// Calls [`BlockOnWaker::finish`] when dropped.
    struct Finish<'a>(&'a BlockOnWaker);

    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.finish();
        }
    }

    /// The waker of a counted `Runtime::block_on`: counts a pending
    /// wake-up.
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
                self.pool.runtime.uncount_active();
            }
        }

        fn finish(&self) {
            if self.state.fetch_or(DONE, Ordering::SeqCst) & (WOKEN | DONE) == WOKEN {
                self.pool.runtime.uncount_active();
                // That count may have been all that kept another waiting
                // `block_on` (and the parked workers) from moving the
                // clock; they checked already, so check for them.
                self.pool.runtime.try_auto_advance();
            }
        }
    }

    impl Wake for BlockOnWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            if self.state.fetch_or(WOKEN, Ordering::SeqCst) & (WOKEN | DONE) == 0 {
                self.pool.runtime.count_active();
            }
            self.unparker.unpark();
        }
    }

    thread_local! {
        /// The runtime whose counted poll (of a `Runtime::block_on`, or a
        /// blocking call) runs on this thread right now, if any.
        static COUNTED_POLL: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
    }

    /// Marks a counted poll on this thread; restores the previous mark
    /// when dropped.
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
}
