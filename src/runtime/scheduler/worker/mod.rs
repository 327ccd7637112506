//! A worker thread: the loop that finds tasks, runs them, steals and parks.
//!
//! # Order in which a worker looks for work
//!
//! For each level, High first:
//! 1. once per *injector interval*, the injector first, so work from
//!    outside the pool cannot be starved by tasks that keep spawning
//!    locally. The interval adapts to the mean poll time so that the
//!    injector is served about every `core::INJECTOR_TARGET` (every
//!    `core::MIN_INJECTOR_INTERVAL` to `core::MAX_INJECTOR_INTERVAL`
//!    polls), like tokio's self-tuning global queue interval. Such a turn
//!    runs one task and moves a batch more into the worker's own queue, but
//!    only up to 255 tasks at that level (`MAX_INJECT_BATCH`; see
//!    `Pool::pop_injector`). A pop of an
//!    injector that moves a batch, or leaves the injector holding work,
//!    starts a *drain* of that level's backlog (`core::Drain`): a task of
//!    that level woken by the running one goes to the back of its queue,
//!    behind the batch, instead of into the LIFO slot; and once the batch
//!    has been reached (what the queue held after the move, at one pop a
//!    tick, or the queue is empty), the first tick two or more after the
//!    last injector-first one refills the queue from the injector if it
//!    still holds work, nothing more urgent being queued. A burst of
//!    remote spawns is so taken in without a long run of local polls
//!    between two batches, with one look at the injector a batch: looked
//!    at every tick while the worker's queue was below 128, its lines
//!    bounced between the workers and the spawning thread
//!    (`spawn_many_remote_busy1` 15% slower; README, "Performance", stop
//!    37). (No drain under a user's `Scheduler`, nor at a level with a
//!    user's `RunQueue`.)
//!    Injector-first ticks are never two in a row, and the
//!    periodic turn counts from the last one. Neither side starves the
//!    other: however fast a producer spawns, a task in the worker's queue
//!    waits for what is ahead of it there (and their LIFO follow-ups), for
//!    one task of each inbox that holds work between two of them (see 2),
//!    and for at most one injector task between any two of those picks; and
//!    the injector is served at least every `core::MAX_INJECTOR_INTERVAL`
//!    polls (`tests/fairness.rs`). The interval is tuned on the polls of
//!    the interval before, so it is stale when polls turn long: 61 polls of
//!    10 µs after a run of short ones. A push to an injector that finds
//!    every worker busy therefore *nudges* them (`Pool::injector_nudge`): a
//!    worker that sees the nudge and keeps finding its own work makes the
//!    periodic turn due once the nudge has waited `core::NUDGE_WAIT` there,
//!    by its clock, read at the 2nd, 3rd, 5th and 9th look at it and every
//!    8th after (`take_nudge`), unless the batch of its drain is still
//!    ahead.
//!    The nudge is a hint, cleared by the next injector-first tick; no
//!    task relies on it to run;
//! 2. its own work: its queue and its three inboxes (tasks pinned to it,
//!    its `spawn_local` tasks, tasks placement sent it), one task from each
//!    in turn among those that hold work (a rotation per level): no
//!    sibling takes from the inboxes while all are busy, so none may wait
//!    for another to run dry;
//! 3. the injector (taking a batch into its own queue);
//! 4. for High and Normal, when the pool's level hint says a sibling may hold
//!    such work: a batch stolen from a sibling, so a busy worker does not run
//!    Low work while a High task waits in another worker's queue.
//!
//! Before that, *fairness*: each level below High may have a minimum share
//! of one poll in `k` (`PoolBuilder::min_share`; default Normal 1 in 16, Low
//! 1 in 64). Every `k`-th tick of a worker, if more urgent work is queued,
//! that level is served first if its own work or the injector holds some
//! (the two in turn: these turns may be all the level gets), so no level
//! starves under a flood of more urgent work, while a High task waits
//! behind at most one such turn (and only when High work was already
//! queued). With nothing more urgent queued the tick serves the level in
//! the usual order.
//!
//! With nothing found it becomes a *searcher* (see `idle`) and steals from
//! its siblings, most urgent level first; failing that it parks until a
//! producer wakes it.
//!
//! # Retiring
//!
//! In an elastic pool a worker that stays parked for the pool's idle
//! timeout retires, if more than `min_workers` run: it leaves the sleepers
//! (only if no notifier claimed it) and closes its timer wheel (only if it
//! is empty), both under the wheel's lock, then hands its queues (empty: only
//! their owner pushes to them, and it was parked) back to its slot and ends
//! its thread.
//!
//! # The LIFO slot
//!
//! A task woken by the task running on this worker is run right after it
//! (message passing between two tasks then costs no queue round-trip). At
//! most `MAX_LIFO_POLLS` slot tasks run in a row, fewer when polls are long
//! (see `core::LIFO_BUDGET`), so two tasks waking each other cannot starve the
//! rest. A slot task that does not get to run at once (the cap is reached,
//! more urgent work is queued, the injector is due, or a backlog from
//! outside at its level is being drained: see `Core::backlog_waits`) goes
//! to the back of its queue: the slot never holds a task between two
//! ticks, so it never bends priority order. While the current task runs, though, the slot's
//! task cannot be stolen (as in tokio): a task that spawns and then blocks
//! its worker delays what it spawned until it returns.
//!
//! # Hooks
//!
//! With `Builder::park_with`, a worker with nothing to do runs the hook
//! instead of sleeping (see `park` for the protocol); with
//! `Builder::on_busy_tick`, a busy worker runs that hook at each injector
//! check, before it looks at its queues, so tasks the hook wakes onto them
//! are found at once.
//!
//! Files: this one holds the thread body and the thread-local access to
//! the running worker; `local` the worker state the schedule function
//! reaches (its queues, the LIFO slot); `core` the loop that finds, runs
//! and steals work; `sleep` parking, the park hook and retiring; `start`
//! what a starting (or failing) worker reports to the pool; `state` the
//! user's worker-local state (`with_worker_state`).

mod core;
mod local;
mod sleep;
mod start;
mod state;

pub(crate) use start::{Latch, WarmUp, WorkerParts};
pub(crate) use state::StateInit;
pub use state::{try_with_worker_state, with_worker_state};

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use self::core::Core;
use super::counters::SlotCounts;
use super::Pool;
use crate::runtime::task::{Runnable, ThreadHooks};
use crate::sync::Arc;
use local::Local;
use start::{touch_stack, worker_panicked};

thread_local! {
    /// The worker running on this thread, or null. Set for the whole life of
    /// a worker thread, to a `Local` that outlives the setting.
    static CURRENT: Cell<*const Local> = const { Cell::new(ptr::null()) };
}

/// Calls `f` with the worker running on this thread, if there is one.
fn with_local<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    let ptr = CURRENT.try_with(Cell::get).unwrap_or(ptr::null());
    // SAFETY: a non-null `CURRENT` points to the `Local` on the stack of
    // `run` on this very thread, which resets it to null before that `Local`
    // is dropped (see `CurrentGuard`). The reference does not escape `f`.
    f(unsafe { ptr.as_ref() })
}

/// The index of the worker running on this thread, if any.
#[inline]
pub(crate) fn current_index() -> Option<usize> {
    with_local(|local| local.map(|local| local.index))
}

/// Calls `f` with this thread's worker (its pool and index), if this is a
/// worker thread; `None` otherwise.
/// The `bool` says whether the worker is stopping (its last task ran).
pub(crate) fn with_current_worker<R>(f: impl FnOnce(&Arc<Pool>, usize, bool) -> R) -> Option<R> {
    with_local(|local| local.map(|local| f(&local.pool, local.index, local.stopping.get())))
}

/// Calls `f` with the counts of this thread's worker if it belongs to
/// `pool`; `None` otherwise.
#[inline]
pub(crate) fn with_own_counts<R>(pool: &Pool, f: impl FnOnce(&SlotCounts) -> R) -> Option<R> {
    with_local(|local| match local {
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) => Some(f(&local.counts)),
        _ => None,
    })
}

/// The index of this thread's worker if it belongs to `pool`.
#[inline]
pub(crate) fn index_in(pool: &Pool) -> Option<usize> {
    with_local(|local| match local {
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) => Some(local.index),
        _ => None,
    })
}

/// Why a task is being scheduled: where it may go on this worker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scheduled {
    /// Just spawned: the LIFO slot inside a task poll, else the back of
    /// the queue (never held, see `hold`: tokio's spawns are stealable).
    Spawned,
    /// Woken by someone else: the LIFO slot inside a task poll, else the
    /// back of the queue, or this thread's hold (see `hold`).
    Woken,
    /// Woken by itself while it runs (a yield): the back of the queue.
    Yielded,
}

/// Schedules `runnable` on this thread's worker if that worker belongs to
/// `pool`; hands the task back otherwise.
#[inline]
pub(crate) fn try_schedule_local(
    pool: *const Pool,
    runnable: Runnable,
    how: Scheduled,
) -> Result<(), Runnable> {
    with_local(|local| match local {
        // A stopping worker's queues are never looked at again.
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) && !local.stopping.get() => {
            local.schedule(runnable, how);
            Ok(())
        }
        _ => Err(runnable),
    })
}

/// Resets [`CURRENT`] when the worker stops, even by unwinding.
struct CurrentGuard;

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(ptr::null()));
    }
}

/// The body of a worker thread.
pub(crate) fn run(pool: Arc<Pool>, parts: WorkerParts, prewarm: &mut WarmUp) {
    super::os::exact_timer_slack();
    let publish_polls = super::monitor::reports_slow_polls(&pool);
    let local = Local {
        inbox: pool.slots[parts.index].inbox.clone(),
        counts: pool.counters.slots[parts.index].clone(),
        pool,
        index: parts.index,
        queues: parts.queues,
        lifo: Cell::new(None),
        lifo_enabled: Cell::new(false),
        in_park_hook: Cell::new(false),
        own_next: Default::default(),
        stopping: Cell::new(false),
        running: Cell::new(ptr::null()),
        publish_polls,
        state: RefCell::new(parts.state),
    };
    // For the thread's whole life: shutdown drops the runtime's hooks, and
    // this worker may be the thread running that shutdown (see `hooks`).
    let hooks = local.pool.runtime.hooks.get().unwrap_or_default();
    // Unpublished before `hooks` is dropped (declared after it).
    let _thread_hooks = ThreadHooks::publish(&local.pool.runtime, &hooks);
    let mut core = Core::new(&local, parts.parker, &hooks);
    CURRENT.with(|current| current.set(&local));
    let guard = CurrentGuard;
    hooks.thread_started();
    if prewarm.touch {
        core.fired.reserve(64);
        touch_stack();
    }
    prewarm.done();
    // User code is guarded where it is called; an unwind here is a bug in
    // the runtime itself (or an overflow it missed). It must not end the
    // thread with tasks in its queues and the idle counts naming it.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| core.run(&local))) {
        worker_panicked(&local, payload);
        core.retired = false;
    }
    core.publish_polls(&local);
    if !core.retired {
        local.cancel_everything();
    }
    // From here on, wake-ups on this thread go to the injector (where
    // shutdown cancels them), not to this worker's queues, which nobody
    // looks at again. `worker_index()` still works in the stop hooks; a
    // `spawn_local` there is refused: this worker's local tasks are gone.
    local.stopping.set(true);
    hooks.thread_stopping();
    drop(guard);
    if core.retired {
        let Local {
            pool,
            index,
            queues,
            state,
            ..
        } = local;
        pool.worker_retired(WorkerParts {
            index,
            queues,
            parker: core.parker,
            state: state.into_inner(),
        });
    }
}

/// Whether `data` is the waker data of the task this thread's worker is
/// polling right now.
#[inline]
pub(crate) fn is_running_task(data: *const ()) -> bool {
    with_local(|local| local.is_some_and(|local| ptr::eq(local.running.get(), data)))
}
