//! [`HoldWakes`]: the multipool tasks woken on a thread while it runs
//! another executor's tasks are queued only once that executor says its
//! poll has ended.
//!
//! Why: a park hook or a helper thread may run another executor's tasks
//! (`multipool-compat` runs tokio's there). A multipool task woken from
//! inside such a foreign poll would be queued at once, where another
//! worker can take it and run it while the rest of that poll still runs on
//! this thread. tokio puts a task woken by the running task in its worker's
//! LIFO slot, which no other worker can steal, so the woken task runs after
//! the poll that woke it, and libraries rely on that order: hyper-util's
//! connection pool (reqwest's) delivers the end of a response and marks
//! the connection reusable in one poll, and a client that saw the end
//! before the mark opens a new connection. Holding the wake-ups until the
//! foreign poll ends restores tokio's order, on any thread.
//!
//! # Invariants
//!
//! * Only wake-ups are held, and only those that go through this thread's
//!   default routes: a worker's own queue outside its task polls
//!   (`Local::push_back_woken`) and the injector (`Pool::push_remote_woken`).
//!   A task pinned to a worker goes to that worker's inbox unheld, as do
//!   `spawn_local` tasks. Spawns are never held: tokio's spawns are
//!   stealable at once too, and a foreign task that spawns multipool work
//!   and then blocks on it (which it should not) keeps working wherever
//!   another worker is free.
//! * A held task is in no queue, so shutdown does not see it: the hold
//!   owns it. A release queues it through the normal route, where a closed
//!   pool cancels it (the push protocol, see `push`); the guard releases
//!   everything when it is dropped, also by unwinding, and a thread that
//!   ends while holding (a leaked guard) releases in its thread-local
//!   destructor. So no held task is lost, and each is queued once.
//! * A release queues the held tasks in the order they were woken, with
//!   holding off meanwhile (a task the release's pushes wake, or cancel, is
//!   queued at once), then holds again.
//! * The first wake-up held after a release wakes the waker given to that
//!   release (outside the thread-local's borrow): the executor that holds
//!   comes back to release it, within its next turn.
//! * Holds nest: a guard restores the hold that was active when it was
//!   created (with that hold's own tasks and waker).
//! * The check on the push paths is one thread-local `Cell` read.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::task::Waker;

use super::worker::Scheduled;
use super::{worker, Pool};
use crate::runtime::task::Runnable;
use crate::sync::Arc;

thread_local! {
    /// Whether a [`HoldWakes`] holds on this thread (and is not releasing).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// The active hold's tasks and waker.
    static HOLD: RefCell<Option<Hold>> = const { RefCell::new(None) };
}

/// The tasks one [`HoldWakes`] holds, and who to tell about the first.
#[derive(Default)]
struct Hold {
    tasks: Vec<Runnable>,
    waker: Option<Waker>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Only reached with tasks when the thread ends with a guard leaked
        // (the guard itself empties its hold first): queue them.
        for runnable in self.tasks.drain(..) {
            queue(runnable);
        }
    }
}

/// Takes `runnable` into this thread's hold if one is active; hands it
/// back otherwise. Called first thing by the push paths that may be held.
#[inline]
pub(crate) fn try_hold(runnable: Runnable) -> Result<(), Runnable> {
    if !HOLDING.try_with(Cell::get).unwrap_or(false) {
        return Err(runnable);
    }
    hold(runnable)
}

#[cold]
fn hold(runnable: Runnable) -> Result<(), Runnable> {
    let mut runnable = Some(runnable);
    let waker = HOLD
        .try_with(|hold| {
            let mut hold = hold.borrow_mut();
            let hold = hold.as_mut()?;
            hold.tasks.push(runnable.take()?);
            hold.waker.take()
        })
        .ok()
        .flatten();
    if let Some(waker) = waker {
        waker.wake();
    }
    match runnable {
        // Not taken: the thread-local is gone (the thread is ending).
        Some(runnable) => Err(runnable),
        None => Ok(()),
    }
}

/// Queues `runnable` through the route it would have taken unheld.
fn queue(runnable: Runnable) {
    let pool: *const Pool = Arc::as_ptr(&runnable.metadata().pool);
    if let Err(runnable) = worker::try_schedule_local(pool, runnable, Scheduled::Woken) {
        let pool = runnable.metadata().pool.clone();
        pool.push_remote(runnable);
    }
}

/// Queues `tasks` with holding off on this thread, then sets holding to
/// `then`.
fn queue_all(tasks: Vec<Runnable>, then: bool) {
    let _ = HOLDING.try_with(|holding| holding.set(false));
    // Holding stays off if a push panics (it does not: pushes never call
    // user code that unwinds into here), and is restored otherwise.
    for runnable in tasks {
        queue(runnable);
    }
    let _ = HOLDING.try_with(|holding| holding.set(then));
}

/// Holds back the multipool tasks woken on this thread while another
/// executor's task runs here, until that poll has ended.
///
/// For a park hook ([`Builder::park_with`](crate::Builder::park_with)), a
/// busy-tick hook or a thread of your own that runs another executor's
/// tasks: a multipool task woken from inside one of those polls is queued
/// only at the next [`release`](Self::release) (or when the guard is
/// dropped), not at once, so no other worker runs it while the rest of the
/// poll that woke it still runs. Tasks spawned meanwhile are queued at once,
/// as tokio queues its spawns. That is the order tokio's LIFO slot gives
/// on tokio, and some libraries rely on it (hyper-util's connection pool
/// hands a connection back in the same poll that delivers the end of its
/// response). `multipool-compat` holds wake-ups this way wherever it runs
/// tokio's tasks.
///
/// Call [`release`](Self::release) between two of the other executor's
/// polls: each time it looks at a future of yours (a `block_on` future),
/// say. The waker given there is woken at the first wake-up held after it,
/// so the executor comes back to that future soon. Dropping the guard
/// releases what it holds and ends the hold on this thread (restoring a
/// hold it was created inside). Holding covers a worker's own queue and the
/// runtime's shared queue; tasks pinned to a worker are queued at once. A held task is never lost: at shutdown it is cancelled when it is
/// released, like any task queued late.
///
/// The guard belongs to the thread that created it (`!Send`).
///
/// ```
/// use std::future::poll_fn;
/// use std::task::Poll;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let (tx, rx) = multipool::sync::bounded(1);
/// let waiting = rt.spawn(async move { rx.recv().await.unwrap() }).start();
///
/// // Another executor's loop on this thread (here `futures`' `block_on`):
/// // each time it polls its own future, that future releases what the
/// // executor's tasks woke since the last poll.
/// let hold = multipool::HoldWakes::new();
/// let mut polls = 0;
/// futures::executor::block_on(poll_fn(|cx| {
///     hold.release(cx.waker());
///     polls += 1;
///     if polls == 1 {
///         // The other executor's "task" sends: the multipool task it
///         // wakes (once it waits on the channel) is held until the next
///         // release, which the first held wake-up asks for.
///         tx.try_send(7).unwrap();
///         cx.waker().wake_by_ref();
///         Poll::Pending
///     } else {
///         Poll::Ready(())
///     }
/// }));
/// drop(hold);
/// assert_eq!(rt.block_on(waiting).unwrap(), 7);
/// ```
#[must_use = "the hold ends when the guard is dropped"]
pub struct HoldWakes {
    /// The hold active when this one started, restored on drop.
    outer: Option<Option<Hold>>,
    /// Whether the outer hold was holding.
    outer_holding: bool,
    _not_send: PhantomData<*const ()>,
}

impl HoldWakes {
    /// Starts holding wake-ups on this thread (see the type's docs).
    pub fn new() -> HoldWakes {
        let outer = HOLD
            .try_with(|hold| hold.replace(Some(Hold::default())))
            .ok();
        let outer_holding = HOLDING
            .try_with(|holding| holding.replace(outer.is_some()))
            .unwrap_or(false);
        HoldWakes {
            outer,
            outer_holding,
            _not_send: PhantomData,
        }
    }

    /// Queues every task held so far, in the order they were woken, and
    /// goes on holding; `waker` is woken at the next wake-up held (once).
    pub fn release(&self, waker: &Waker) {
        let tasks = HOLD
            .try_with(|hold| {
                let mut hold = hold.borrow_mut();
                let hold = hold.as_mut()?;
                match &mut hold.waker {
                    Some(current) => current.clone_from(waker),
                    none => *none = Some(waker.clone()),
                }
                Some(std::mem::take(&mut hold.tasks))
            })
            .ok()
            .flatten();
        if let Some(tasks) = tasks {
            if !tasks.is_empty() {
                queue_all(tasks, true);
            }
        }
    }

    /// How many tasks this thread's hold holds now.
    pub fn held(&self) -> usize {
        HOLD.try_with(|hold| hold.borrow().as_ref().map_or(0, |hold| hold.tasks.len()))
            .unwrap_or(0)
    }
}

impl Default for HoldWakes {
    fn default() -> Self {
        HoldWakes::new()
    }
}

impl Drop for HoldWakes {
    fn drop(&mut self) {
        let Some(outer) = self.outer.take() else {
            // The thread-local was gone when this started: nothing held.
            return;
        };
        let mine = HOLD.try_with(|hold| hold.replace(outer)).ok().flatten();
        let tasks = mine.map(|mut hold| std::mem::take(&mut hold.tasks));
        queue_all(tasks.unwrap_or_default(), self.outer_holding);
    }
}

impl fmt::Debug for HoldWakes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldWakes")
            .field("held", &self.held())
            .finish()
    }
}
