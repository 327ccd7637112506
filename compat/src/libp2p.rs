//! libp2p on multipool: [`Libp2pExecutor`], a `libp2p_swarm::Executor`.
//!
//! A libp2p `Swarm` runs every connection in a task of its own (the
//! upgrade of a pending connection, then the established connection) and
//! spawns those tasks through the executor of its `libp2p_swarm::Config`.
//! Built with [`Libp2pExecutor`], they all run on multipool, at the
//! priority you choose; the swarm itself is polled wherever you drive it
//! (a multipool task, typically).
//!
//! ```
//! use libp2p_swarm::Executor;
//! use multipool::Priority;
//! use multipool_compat::libp2p::Libp2pExecutor;
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! let exec = Libp2pExecutor::on(rt.handle()).priority(Priority::High);
//! // What `Swarm::new` takes: every connection task of the swarm on `rt`.
//! let _config = libp2p_swarm::Config::with_executor(exec.clone());
//!
//! let (tx, rx) = std::sync::mpsc::channel();
//! exec.exec(Box::pin(async move { tx.send(multipool::worker_index()).unwrap() }));
//! assert!(rx.recv().unwrap().is_some(), "ran on a worker");
//! ```
//!
//! # Invariants
//!
//! * [`exec`](Executor::exec) never blocks and never panics, and spawns
//!   the future detached: libp2p keeps no handle, and the task runs until
//!   its future returns (libp2p ends a connection task by closing the
//!   channels it holds).
//! * A full queue does not refuse it: the task is queued beyond
//!   [`max_queued`](multipool::Builder::max_queued), as
//!   [`Spawn::detach`](multipool::Spawn::detach) and
//!   [`Spawn::start_unbounded`](multipool::Spawn::start_unbounded) queue,
//!   since libp2p has no way to hear of a refusal and its connection
//!   would hang, neither running nor closed.
//! * A task its pool refuses otherwise (the runtime shut down) is dropped
//!   without being polled, as multipool drops every late spawn, and libp2p
//!   is not told: that connection never makes progress (a pending dial or
//!   upgrade stays pending in the swarm). Only a swarm that outlives the
//!   runtime its executor spawns onto meets this; shut the runtime down
//!   after dropping its swarms.
//! * Nothing here uses `unsafe`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use libp2p_swarm::Executor;
use multipool::{Handle, Priority};

/// Spawns a libp2p `Swarm`'s connection tasks onto multipool.
///
/// By [`Default`]/[`new`](Self::new) onto the runtime current where the
/// task is spawned (the global one outside any runtime, as
/// `multipool::spawn`), or [`on`](Self::on) a given runtime; at
/// [`Priority::Normal`] unless set with [`priority`](Self::priority). The
/// same API as [`HyperExecutor`](crate::hyper::HyperExecutor).
///
/// ```
/// use libp2p_swarm::Executor;
/// use multipool::Priority;
/// use multipool_compat::libp2p::Libp2pExecutor;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let exec = Libp2pExecutor::new().priority(Priority::Low);
/// // Inside `rt`, its tasks go to `rt`.
/// let on_rt = rt.block_on(async move {
///     let (tx, rx) = futures::channel::oneshot::channel();
///     exec.exec(Box::pin(async move {
///         tx.send(multipool::Handle::current().pool_name().to_owned()).unwrap()
///     }));
///     rx.await.unwrap()
/// });
/// assert_eq!(on_rt, "default");
/// assert_eq!(rt.handle().metrics().spawned_count(Priority::Low), 1);
/// ```
#[derive(Clone, Default)]
pub struct Libp2pExecutor {
    handle: Option<Handle>,
    priority: Priority,
}

impl Libp2pExecutor {
    /// An executor spawning onto the current runtime, at normal priority.
    pub fn new() -> Self {
        Self::default()
    }

    /// An executor spawning onto `handle`'s runtime.
    pub fn on(handle: Handle) -> Self {
        Libp2pExecutor {
            handle: Some(handle),
            priority: Priority::Normal,
        }
    }

    /// The priority of the tasks it spawns.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl Executor for Libp2pExecutor {
    #[track_caller]
    fn exec(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let spawn = match &self.handle {
            Some(handle) => handle.spawn(future),
            None => multipool::spawn(future),
        };
        // Past a full queue (as `start_unbounded`, without a handle that
        // nobody would read): libp2p cannot hear of a refusal. A runtime
        // that shut down still refuses, and the future is dropped.
        spawn.priority(self.priority).detach();
    }
}

impl fmt::Debug for Libp2pExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Libp2pExecutor")
            .field("handle", &self.handle)
            .field("priority", &self.priority)
            .finish()
    }
}
