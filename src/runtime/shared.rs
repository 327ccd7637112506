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
//!   idle and nothing else of the runtime is active (see `time::paused`).

use super::blocking::BlockingPool;
use super::hooks::{Hooks, RuntimeHooks};
use super::scheduler::Pool;
use super::task::Observe;
use super::time::Clock;
#[cfg(feature = "test-util")]
use super::time::PausedTime;
use crate::sync::{Arc, OnceLock, Weak};

/// Name of the pool that the runtime's own builder settings configure.
pub(crate) const DEFAULT_POOL: &str = "default";

/// A pool's name and a reference that does not keep it alive.
type PoolEntry = (Box<str>, Weak<Pool>);

pub(crate) struct RuntimeShared {
    pools: OnceLock<Box<[PoolEntry]>>,
    pub(crate) hooks: RuntimeHooks,
    pub(crate) clock: Arc<Clock>,
    pub(crate) blocking: Arc<BlockingPool>,
    /// What the pools observe of their tasks (hooks, histograms), fixed at
    /// build.
    pub(crate) observe: Observe,
    /// What keeps paused time from moving (see `time::paused`).
    #[cfg(feature = "test-util")]
    pub(crate) paused: PausedTime,
}

impl RuntimeShared {
    pub(crate) fn new(
        hooks: Hooks,
        histograms: Option<u32>,
        clock: Arc<Clock>,
        blocking: BlockingPool,
    ) -> Self {
        let observe = hooks.task.observe(histograms);
        let hooks = RuntimeHooks::new(hooks);
        blocking.set_hooks(hooks.clone());
        let blocking = Arc::new(blocking);
        RuntimeShared {
            pools: OnceLock::new(),
            hooks,
            clock,
            blocking,
            observe,
            #[cfg(feature = "test-util")]
            paused: PausedTime::default(),
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
}

impl RuntimeShared {
    /// Shuts the runtime down from inside (the panic policy, see
    /// `UnhandledPanic::ShutdownRuntime`) without waiting: the pools close
    /// now, refusing spawns and stopping their workers after their current
    /// poll; a thread of its own cancels what is left, as
    /// `Runtime::shutdown_background` does. The `Runtime`, when dropped,
    /// finds it done. Idempotent.
    pub(crate) fn shutdown_in_background(&self) {
        let pools: Vec<Arc<Pool>> = self.pools().collect();
        if pools.iter().all(|pool| pool.is_closed()) {
            return;
        }
        for pool in &pools {
            pool.close();
        }
        let finish = {
            let pools = pools.clone();
            move || {
                for pool in &pools {
                    pool.shutdown();
                }
            }
        };
        if std::thread::Builder::new()
            .name("multipool-shutdown".to_owned())
            .spawn(finish)
            .is_err()
        {
            eprintln!(
                "multipool: no thread to shut the runtime down in the background after a task \
                 panicked; its pools are closed, and the rest happens when the runtime is dropped"
            );
        }
    }
}
