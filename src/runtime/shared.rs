//! What the pools of one runtime share: each other, the hooks, the clock,
//! the blocking pool, and the bookkeeping of paused time.
//!
//! Invariants:
//! * `pools` is set once, right after every pool was started, and never
//!   changes; it holds `Weak`s (pools hold this struct), so a pool that
//!   every handle and task let go of is freed even while its siblings live.
//!   The default pool is first.
//! * One clock for the whole runtime: a deadline means the same instant in
//!   every pool, and paused time pauses every pool at once.
//! * Paused time moves by itself only when every pool of the runtime is
//!   idle and no `block_on` of the runtime is polling.

use super::hooks::{Hooks, RuntimeHooks};
use crate::blocking::BlockingPool;
use crate::pool::Pool;
use crate::sync::{Arc, AtomicUsize, Mutex, OnceLock, Ordering, Weak};
use crate::time::clock::Clock;

/// Name of the pool that the runtime's own builder settings configure.
pub(crate) const DEFAULT_POOL: &str = "default";

/// A pool's name and a reference that does not keep it alive.
type PoolEntry = (Box<str>, Weak<Pool>);

pub(crate) struct RuntimeShared {
    pools: OnceLock<Box<[PoolEntry]>>,
    pub(crate) hooks: RuntimeHooks,
    pub(crate) clock: Arc<Clock>,
    pub(crate) blocking: Arc<BlockingPool>,
    /// Number of `Runtime::block_on` calls polling their future right now
    /// or woken and about to; paused time only advances by itself while this
    /// is zero.
    pub(crate) active_blockers: AtomicUsize,
    /// Serialises paused-time auto-advances (see `try_auto_advance`).
    advancing: Mutex<()>,
}

impl RuntimeShared {
    pub(crate) fn new(hooks: Hooks, clock: Arc<Clock>, blocking: BlockingPool) -> Self {
        let hooks = RuntimeHooks::new(hooks);
        blocking.set_hooks(hooks.clone());
        let blocking = Arc::new(blocking);
        RuntimeShared {
            pools: OnceLock::new(),
            hooks,
            clock,
            blocking,
            active_blockers: AtomicUsize::new(0),
            advancing: Mutex::new(()),
        }
    }

    /// Records the runtime's pools, the default one first. Called once.
    pub(crate) fn set_pools(&self, pools: &[Arc<Pool>]) {
        let pools = pools
            .iter()
            .map(|pool| (pool.name.clone(), Arc::downgrade(pool)))
            .collect();
        assert!(self.pools.set(pools).is_ok(), "pools are set once");
    }

    /// The pool called `name`, if the runtime has one and it is still alive.
    pub(crate) fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools
            .get()?
            .iter()
            .find(|(pool_name, _)| &**pool_name == name)
            .and_then(|(_, pool)| pool.upgrade())
    }

    /// The names of the runtime's pools, the default one first.
    pub(crate) fn pool_names(&self) -> Vec<&str> {
        self.pools
            .get()
            .map(|pools| pools.iter().map(|(name, _)| &**name).collect())
            .unwrap_or_default()
    }

    /// The runtime's default pool, if it is still alive.
    pub(crate) fn default_pool(&self) -> Option<Arc<Pool>> {
        self.pools.get()?.first()?.1.upgrade()
    }

    /// Every pool of the runtime that is still alive.
    pub(crate) fn pools(&self) -> impl Iterator<Item = Arc<Pool>> + '_ {
        self.pools
            .get()
            .into_iter()
            .flat_map(|pools| pools.iter())
            .filter_map(|(_, pool)| pool.upgrade())
    }

    /// With paused time and nothing left to do anywhere in the runtime,
    /// jumps the clock to the next timer and fires it. Returns whether time
    /// moved. Called by whoever is about to sleep (a parking worker, a
    /// `block_on` thread); only the last of them finds the runtime idle.
    pub(crate) fn try_auto_advance(&self) -> bool {
        if !self.clock.is_paused() {
            return false;
        }
        // Held until the wake-ups are delivered: the next idleness check
        // must see the tasks they queued and the `block_on`s they woke.
        let _advancing = self.advancing.lock();
        let pools: Vec<Arc<Pool>> = self.pools().collect();
        let idle = self.active_blockers.load(Ordering::SeqCst) == 0
            && pools.iter().all(|pool| pool.is_idle());
        if !idle {
            return false;
        }
        #[cfg(feature = "test-util")]
        while let Some(next) = pools
            .iter()
            .filter_map(|pool| pool.timers.next_expiration())
            .min()
        {
            // `next` may be a cascade point that fires nothing: go on to the
            // next one until something fires.
            self.clock.advance_to(next);
            let fired: usize = pools.iter().map(|pool| pool.timers.fire_all_due()).sum();
            if fired > 0 {
                return true;
            }
        }
        false
    }

    /// Wakes every worker of every pool, so each re-parks with a deadline
    /// that fits the clock's new mode (after `pause`/`resume`).
    #[cfg(feature = "test-util")]
    pub(crate) fn unpark_all(&self) {
        for pool in self.pools() {
            pool.timers.unpark_all();
        }
    }

    /// Fires every timer due in every pool (after `advance`).
    #[cfg(feature = "test-util")]
    pub(crate) fn fire_all_due(&self) {
        for pool in self.pools() {
            pool.timers.fire_all_due();
        }
    }
}
