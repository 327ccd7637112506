//! A worker thread: the loop that finds tasks, runs them, steals and parks.
//!
//! # Order in which a worker looks for work
//!
//! For each level, High first:
//! 1. once per *injector interval*, the injector first, so work from outside
//!    the pool cannot be starved by tasks that keep spawning locally. The
//!    interval adapts to the mean poll time so that the injector is served
//!    about every [`INJECTOR_TARGET`] (every 1 to [`MAX_INJECTOR_INTERVAL`]
//!    polls), like tokio's self-tuning global queue interval; once such a
//!    check finds work, the injector stays first until it is empty
//!    ("draining"), so a burst of remote spawns is not taken in one batch
//!    per long local poll;
//! 2. its own queue;
//! 3. the injector (taking a batch into its own queue);
//! 4. for High and Normal, when the pool's level hint says a sibling may hold
//!    such work: a batch stolen from a sibling, so a busy worker does not run
//!    Low work while a High task waits in another worker's queue.
//!
//! Before that, *fairness*: each level below High may have a minimum share
//! of one poll in `k` (`PoolBuilder::min_share`; default Normal 1 in 16, Low
//! 1 in 64). Every `k`-th tick of a worker, that level is served first if
//! its local queue or injector holds work, so no level starves under a
//! flood of more urgent work, while a High task waits behind at most one
//! such turn (and only when High work was already queued).
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
//! most [`MAX_LIFO_POLLS`] slot tasks run in a row, fewer when polls are long
//! (see [`LIFO_BUDGET`]), so two tasks waking each other cannot starve the
//! rest. A slot task that does not get to run at once (the cap is reached,
//! more urgent work is queued, or the injector is due) goes to the back of
//! its queue: the slot never holds a task between two ticks, so it never
//! bends priority order. While the current task runs, though, the slot's
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

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker as Deque};

use super::park::Park;
use super::placement::Inbox;
use super::{Pool, NO_SHARE};
use crate::runtime::hooks::{Hook, ParkHook};
use crate::runtime::{context, Handle};
use crate::sync::{Arc, Condvar, Mutex, OnceLock, Ordering};
use crate::task::{run_cancelled, Runnable};
use crate::Priority;

/// How long, at most, work in the injector waits behind local work: the
/// injector interval is this divided by the mean poll time. tokio targets
/// 200 µs; half that keeps a burst of remote spawns from waiting behind long
/// local polls (`spawn_many_remote_busy*` in the benches).
const INJECTOR_TARGET: Duration = Duration::from_micros(100);

/// Upper bound of the injector interval in ticks (tokio seeds its interval
/// at 61, as Go fixes it).
const MAX_INJECTOR_INTERVAL: u32 = 61;

/// Longest run of LIFO-slot polls after a task (as in tokio).
pub(crate) const MAX_LIFO_POLLS: u32 = 3;

/// The LIFO slot only pays off for short polls (message passing); a run of
/// slot polls is cut once it would exceed this much time at the mean poll
/// time, so long polls cannot use the slot to jump ahead of queued work.
const LIFO_BUDGET: Duration = Duration::from_micros(10);

/// How many more times a searcher looks at every queue, [`SPIN_PAUSES`]
/// spin hints apart, before it parks. While a worker searches, producers
/// skip the futex wake-up (see `idle`), so a steady stream of remote spawns
/// arriving a few hundred nanoseconds apart is taken in without a park and
/// unpark per task; the cost is a few microseconds of spinning, by at most
/// half the workers, each time the pool runs dry. Under miri, where every
/// look costs thousands of times more, one short spin round keeps that path
/// checked without dominating the run.
#[cfg(not(miri))]
const SEARCH_SPINS: u32 = 16;
#[cfg(not(miri))]
const SPIN_PAUSES: u32 = 64;
#[cfg(miri)]
const SEARCH_SPINS: u32 = 1;
#[cfg(miri)]
const SPIN_PAUSES: u32 = 1;

/// Whether `tick` has reached `due` (tick counters wrap).
fn tick_reached(tick: u32, due: u32) -> bool {
    (tick.wrapping_sub(due) as i32) >= 0
}

/// The next fairness turn of each level below High (see `Core::fair_turn`).
struct FairTurns {
    /// Whether any level has a minimum share.
    enabled: bool,
    /// Per level: the tick its next turn is due.
    due: [u32; Priority::COUNT],
    /// The earliest of `due` over the levels with a share.
    next: u32,
}

impl FairTurns {
    /// `every_tick`: a user's `Scheduler` is asked at every tick.
    fn new(shares: &[u32; Priority::COUNT], every_tick: bool) -> Self {
        let due = shares.map(|share| if share == NO_SHARE { 0 } else { share });
        let mut turns = FairTurns {
            enabled: every_tick || shares.iter().any(|&share| share != NO_SHARE),
            due,
            next: 0,
        };
        turns.next = turns.earliest(shares, 0);
        turns
    }

    /// The earliest due tick at or after `tick` over the levels with a share.
    fn earliest(&self, shares: &[u32; Priority::COUNT], tick: u32) -> u32 {
        (0..Priority::COUNT)
            .filter(|&level| shares[level] != NO_SHARE)
            .map(|level| self.due[level])
            // Signed: a turn already due (both were due on one tick) is
            // the earliest.
            .min_by_key(|&due| due.wrapping_sub(tick) as i32)
            .unwrap_or(tick)
    }
}

/// A worker's own ends of its queues and parker; kept in its slot while no
/// thread runs the worker.
pub(crate) struct WorkerParts {
    pub(crate) index: usize,
    pub(crate) queues: [Deque<Runnable>; Priority::COUNT],
    pub(crate) parker: parking::Parker,
}

/// Counts down the workers a pre-warmed build waits for; remembers whether
/// one of them failed to start.
#[derive(Clone)]
pub(crate) struct Latch(Arc<(Mutex<(usize, bool)>, Condvar)>);

impl Latch {
    pub(crate) fn new(count: usize) -> Self {
        Latch(Arc::new((Mutex::new((count, false)), Condvar::new())))
    }

    fn count_down(&self, failed: bool) {
        let (state, ready) = &*self.0;
        let mut state = state.lock();
        state.0 = state.0.saturating_sub(1);
        state.1 |= failed;
        if state.0 == 0 {
            ready.notify_all();
        }
    }

    /// Waits until every worker counted down; returns whether all started.
    pub(crate) fn wait(&self) -> bool {
        let (state, ready) = &*self.0;
        let mut state = state.lock();
        while state.0 > 0 {
            state = ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.1
    }
}

/// A starting worker's part of the [`Latch`] a build waits on (with
/// `prewarm`, or with `wrap_thread` hooks, which may fail to run the
/// worker): counted down once the worker is ready, or as failed if its
/// thread ends first (a `wrap_thread` hook that panicked or never ran the
/// worker), so `build` never waits forever. Made first thing on the new
/// thread, so nothing that fails before it can leave the latch waiting.
pub(crate) struct WarmUp {
    latch: Option<Latch>,
    /// `prewarm`: touch the stack and buffers before reporting ready.
    touch: bool,
}

impl WarmUp {
    pub(crate) fn new(latch: Option<Latch>, touch: bool) -> Self {
        WarmUp { latch, touch }
    }

    fn done(&mut self) {
        if let Some(latch) = self.latch.take() {
            latch.count_down(false);
        }
    }
}

impl Drop for WarmUp {
    fn drop(&mut self) {
        if let Some(latch) = self.latch.take() {
            latch.count_down(true);
        }
    }
}

/// How much stack a pre-warmed worker touches, so the first tasks do not
/// pay its page faults.
const PREWARM_STACK: usize = 64 * 1024;

/// The worker state that the schedule function reaches through the
/// thread-local [`CURRENT`] while a task runs on this worker.
struct Local {
    pool: Arc<Pool>,
    index: usize,
    queues: [Deque<Runnable>; Priority::COUNT],
    /// Only ever holds a task while `run_task` runs on this worker: it is
    /// consumed by `run_task` itself, or pushed to its queue.
    lifo: Cell<Option<Runnable>>,
    /// Whether a task woken now may go to the LIFO slot: only while
    /// `run_task` runs a task.
    lifo_enabled: Cell<bool>,
    /// Set while the park hook runs on this worker (see `park`).
    in_park_hook: Cell<bool>,
    /// This worker's inboxes (its slot's), reached without indexing.
    inbox: Arc<OnceLock<Box<Inbox>>>,
    /// Set once the worker ran its last task (its stop hooks run).
    stopping: Cell<bool>,
    /// The task being polled (its pointer, which is also its waker's
    /// data), or null: its own waker is trusted (see `task::join`).
    running: Cell<*const ()>,
}

/// State only the worker loop touches.
struct Core {
    tick: u32,
    /// Ticks between two injector-first checks; see `INJECTOR_TARGET`.
    injector_interval: u32,
    /// LIFO polls allowed in a row at the current mean poll time; see
    /// `LIFO_BUDGET`.
    lifo_cap: u32,
    /// Set when an injector-first check found work: the injector stays
    /// first until it is empty, so a burst of remote work is taken in
    /// without a long local poll between each batch.
    draining: bool,
    /// Tick and time of the last injector-first check, to measure the mean
    /// poll time; reset after parking so idle time does not count.
    interval_start: (u32, Instant),
    searching: bool,
    /// Set when the worker retired (see the module docs): the loop ends.
    retired: bool,
    /// Mirror of this worker's `Slot::activity`.
    activity: u64,
    /// Whether `Slot::activity` is kept (only elastic pools have a monitor
    /// to read it).
    track_activity: bool,
    /// `track_activity || custom_scheduler`: one check per poll in pools
    /// that need neither.
    per_poll_extras: bool,
    /// When each level's next fairness turn is due (see `fair_turn`).
    fair: FairTurns,
    /// Polls given to each level, kept for a user's `Scheduler` only.
    polls: [u64; Priority::COUNT],
    custom_scheduler: bool,
    lifo_polls: u32,
    rng: u32,
    parker: parking::Parker,
    /// Reused buffer for the wakers of fired timers.
    fired: Vec<std::task::Waker>,
    /// The runtime's park hook; dropped if it panics.
    park_hook: Option<ParkHook>,
    /// The runtime's busy-tick hook; dropped if it panics.
    busy_tick: Option<Hook>,
}

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
pub(crate) fn current_index() -> Option<usize> {
    with_local(|local| local.map(|local| local.index))
}

/// Calls `f` with this thread's worker (its pool and index), if this is a
/// worker thread; `None` otherwise.
/// The `bool` says whether the worker is stopping (its last task ran).
pub(crate) fn with_current_worker<R>(f: impl FnOnce(&Arc<Pool>, usize, bool) -> R) -> Option<R> {
    with_local(|local| local.map(|local| f(&local.pool, local.index, local.stopping.get())))
}

/// The index of this thread's worker if it belongs to `pool`.
pub(crate) fn index_in(pool: &Pool) -> Option<usize> {
    with_local(|local| match local {
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) => Some(local.index),
        _ => None,
    })
}

/// Schedules `runnable` on this thread's worker if that worker belongs to
/// `pool`; hands the task back otherwise.
pub(crate) fn try_schedule_local(
    pool: *const Pool,
    runnable: Runnable,
    is_yield: bool,
) -> Result<(), Runnable> {
    with_local(|local| match local {
        // A stopping worker's queues are never looked at again.
        Some(local) if ptr::eq(Arc::as_ptr(&local.pool), pool) && !local.stopping.get() => {
            local.schedule(runnable, is_yield);
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
    exact_timer_slack();
    let _enter = context::enter(Handle::from_pool(pool.clone()));
    let local = Local {
        inbox: pool.slots[parts.index].inbox.clone(),
        pool,
        index: parts.index,
        queues: parts.queues,
        lifo: Cell::new(None),
        lifo_enabled: Cell::new(false),
        in_park_hook: Cell::new(false),
        stopping: Cell::new(false),
        running: Cell::new(ptr::null()),
    };
    // For the thread's whole life: shutdown drops the runtime's hooks, and
    // this worker may be the thread running that shutdown (see `hooks`).
    let hooks = local.pool.runtime.hooks.get().unwrap_or_default();
    let mut core = Core {
        tick: 0,
        injector_interval: MAX_INJECTOR_INTERVAL,
        lifo_cap: MAX_LIFO_POLLS,
        draining: false,
        interval_start: (0, Instant::now()),
        searching: false,
        retired: false,
        activity: local.pool.slots[parts.index]
            .activity
            .load(Ordering::Relaxed),
        fair: FairTurns::new(&local.pool.min_shares, local.pool.scheduler.is_some()),
        polls: [0; Priority::COUNT],
        custom_scheduler: local.pool.scheduler.is_some(),
        track_activity: local.pool.max_workers() > local.pool.min_workers(),
        per_poll_extras: local.pool.max_workers() > local.pool.min_workers()
            || local.pool.scheduler.is_some(),
        lifo_polls: 0,
        // Any non-zero seed works for xorshift.
        rng: (parts.index as u32).wrapping_mul(0x9E37_79B9) | 1,
        parker: parts.parker,
        fired: Vec::new(),
        park_hook: hooks.park.clone(),
        busy_tick: hooks.busy_tick.clone(),
    };
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
            ..
        } = local;
        pool.worker_retired(WorkerParts {
            index,
            queues,
            parker: core.parker,
        });
    }
}

/// Runs `task` on `local`'s worker. While it runs, its own waker is
/// trusted (see `task::join`): a task awaiting a `JoinHandle` then costs no
/// guard. Two plain stores per poll.
#[inline]
fn poll_task(local: &Local, task: Runnable) {
    let raw = task.into_raw();
    // SAFETY: `raw` comes from `Runnable::into_raw` just above and is
    // turned back into exactly one `Runnable`.
    let task = unsafe { Runnable::from_raw(raw) };
    // async-task's waker for this task has the task pointer as its data.
    local.running.set(raw.as_ptr().cast_const());
    task.run();
    local.running.set(ptr::null());
}

/// Whether `data` is the waker data of the task this thread's worker is
/// polling right now.
pub(crate) fn is_running_task(data: *const ()) -> bool {
    with_local(|local| local.is_some_and(|local| ptr::eq(local.running.get(), data)))
}

/// Touches [`PREWARM_STACK`] bytes of stack, in a frame of its own: inlined
/// into `run`, the array would take that much of every worker's stack for
/// the thread's whole life, pre-warmed or not.
#[inline(never)]
fn touch_stack() {
    let mut stack = [0u8; PREWARM_STACK];
    std::hint::black_box(&mut stack);
}

/// The worker loop unwound: report it loudly and shut the pool down, so
/// that every task's handle resolves (with a shutdown error) instead of
/// waiting on a worker that is gone. The caller then cancels its own queues
/// as on any exit.
#[cold]
fn worker_panicked(local: &Local, payload: Box<dyn std::any::Any + Send>) {
    let message = crate::error::panic_message(&*payload)
        .unwrap_or("a panic without a message")
        .to_owned();
    crate::task::drop_quietly(payload);
    eprintln!(
        "multipool: worker {} of pool `{}` panicked in the runtime's own code ({message}); \
         this is a bug in multipool. The pool shuts down: its tasks are cancelled and their \
         handles report a shutdown error",
        local.index, local.pool.name
    );
    local.pool.close();
    // The rest of the shutdown (the injector, the tasks that wait for a
    // wake-up, the timers) joins the workers, so it runs elsewhere.
    let pool = local.pool.clone();
    let shutdown = std::thread::Builder::new()
        .name("multipool-shutdown".to_owned())
        .spawn(move || pool.shutdown());
    if let Err(err) = shutdown {
        eprintln!("multipool: no thread to finish the shutdown ({err}); aborting");
        std::process::abort();
    }
}

/// Asks Linux to wake this thread on time from timed sleeps. The default
/// timer slack of a thread is 50 µs, which a worker parked until a timer's
/// deadline would add to every timer it fires. Measured on an idle 2-worker
/// runtime, lateness of a 1 ms sleep: p50 31 µs, p99 134 µs (max 573 µs)
/// with the default slack; p50 23 µs, p99 58 µs (max 75 µs) with 1 ns.
fn exact_timer_slack() {
    // miri cannot run foreign calls such as `prctl`.
    #[cfg(all(target_os = "linux", not(miri)))]
    // SAFETY: `prctl(PR_SET_TIMERSLACK, n)` takes an integer argument,
    // touches no memory of ours and only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

impl Local {
    /// Queues a task scheduled on this worker (see the module docs).
    fn schedule(&self, runnable: Runnable, is_yield: bool) {
        // Only a task woken by the running task goes to the LIFO slot.
        if is_yield || !self.lifo_enabled.get() {
            self.push_back(runnable);
            return;
        }
        if let Some(previous) = self.lifo.replace(Some(runnable)) {
            self.push_back(previous);
        }
    }

    /// Pushes a task to the back of its level's queue and makes sure some
    /// worker will look at it.
    fn push_back(&self, runnable: Runnable) {
        let level = runnable.metadata().priority().index();
        self.queues[level].push(runnable);
        self.pool.mark_level(level);
        if self.in_park_hook.get() {
            // This worker runs it as soon as its park hook returns; see
            // `park`.
            self.pool.slots[self.index].unparker.unpark();
        } else {
            self.pool.notify_parked();
        }
    }

    /// Pops this worker's queue of `level`. The empty check is inlined:
    /// every tick looks at the levels above the one it serves, and those
    /// are empty nearly always.
    #[inline]
    fn pop_queue(&self, level: usize) -> Option<Runnable> {
        let queue = &self.queues[level];
        if queue.is_empty() {
            None
        } else {
            queue.pop()
        }
    }

    /// Whether a queue this worker serves holds work more urgent than `level`.
    fn more_urgent_queued(&self, level: usize) -> bool {
        (0..level).any(|l| !self.queues[l].is_empty() || !self.pool.injector_is_empty(l))
    }

    /// Whether this worker's queues or inboxes hold work (the LIFO slot is
    /// always empty between ticks).
    fn has_local_work(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty()) || self.has_inbox_work()
    }

    /// Number of tasks in this worker's queues.
    fn local_len(&self) -> usize {
        self.queues.iter().map(Deque::len).sum()
    }

    #[inline]
    fn inbox(&self) -> Option<&Inbox> {
        self.inbox.get().map(|inbox| &**inbox)
    }

    fn has_inbox_work(&self) -> bool {
        self.inbox().is_some_and(|inbox| !inbox.is_empty())
    }

    /// A task of `level` from this worker's inboxes: pinned ones first
    /// (nobody else can run them), then a batch of placed ones.
    #[inline]
    fn pop_inbox(&self, level: usize) -> Option<Runnable> {
        let inbox = self.inbox()?;
        Self::pop_inbox_from(inbox, &self.queues[level], level)
    }

    #[inline(never)]
    fn pop_inbox_from(inbox: &Inbox, queue: &Deque<Runnable>, level: usize) -> Option<Runnable> {
        for pinned in [&inbox.pinned[level], &inbox.local[level]] {
            loop {
                match pinned.steal() {
                    Steal::Success(task) => return Some(task),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
        loop {
            match inbox.placed[level].steal_batch_and_pop(queue) {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// Cancels every task this worker holds, on its way out; the pool is
    /// closed. Local (`!Send`) tasks are cancelled here, on their own
    /// thread: the ones that wait are woken (each wake-up puts the task in
    /// the local inbox, see `Pool::push_local`). Cancelling a task can wake
    /// others onto this worker's queues (a task awaiting a local task's
    /// handle, a future whose destructor wakes another), so the queues and
    /// the local inbox are drained together until both stay empty and
    /// every local task's future is dropped (a wake-up from another thread
    /// may still be on its way into the inbox).
    fn cancel_everything(&self) {
        let slot = &self.pool.slots[self.index];
        // Only set while a task runs; an unwind out of `run_task` may have
        // left it set, and a task in the slot.
        self.lifo_enabled.set(false);
        for waker in slot.local_registry.close() {
            waker.wake();
        }
        loop {
            let mut cancelled = false;
            let mut cancel = |task| {
                run_cancelled(task);
                cancelled = true;
            };
            if let Some(task) = self.lifo.take() {
                cancel(task);
            }
            for queue in &self.queues {
                while let Some(task) = queue.pop() {
                    cancel(task);
                }
            }
            if let Some(inbox) = self.inbox() {
                inbox.drain(&mut cancel);
                inbox.drain_local(&mut cancel);
            }
            if !cancelled {
                if slot.local_alive.load(Ordering::SeqCst) == 0 {
                    return;
                }
                std::thread::yield_now();
            }
        }
    }
}

impl Core {
    fn run(&mut self, local: &Local) {
        while !local.pool.is_closed() && !self.retired {
            self.tick = self.tick.wrapping_add(1);
            crate::fault::hit("worker.tick");
            if local.pool.timers.is_due(local.index) {
                local.pool.timers.fire_due(local.index, &mut self.fired);
            }
            if let Some(task) = self.next_task(local) {
                self.run_task(local, task);
            } else if let Some(task) = self.steal_work(local) {
                self.run_task(local, task);
            } else {
                self.park(local);
            }
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: cheap, and good enough to pick a steal victim.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Finds the next task without becoming a searcher (see the module docs).
    fn next_task(&mut self, local: &Local) -> Option<Runnable> {
        let pool = &*local.pool;
        let injector_first = self.injector_due();
        if injector_first && !self.draining {
            self.tune_injector_interval(local);
        }
        self.draining = false;
        // An injector-first tick is never given away: a share due now is
        // served on the next tick (its credit keeps counting).
        if !injector_first {
            // Also where a user's `Scheduler` is asked (its turn is due at
            // every tick): one check per tick for both.
            if let Some(task) = self.fair_turn(local) {
                return Some(task);
            }
        }
        for level in 0..Priority::COUNT {
            if injector_first {
                if let Some(task) = pool.pop_injector(level, &local.queues[level]) {
                    self.draining = true;
                    return Some(task);
                }
            }
            if let Some(task) = local.pop_queue(level) {
                return Some(task);
            }
            if let Some(task) = local.pop_inbox(level) {
                return Some(task);
            }
            if !injector_first {
                if let Some(task) = pool.pop_injector(level, &local.queues[level]) {
                    return Some(task);
                }
            }
            if level < Priority::Low.index() && pool.level_marked(level) {
                if let Some(task) = self.steal_level(local, level) {
                    return Some(task);
                }
            }
        }
        None
    }

    /// The minimum shares (see the module docs): a level whose share is due
    /// is served first this tick, from the local queue or the injector. A
    /// due level is served, or finds nothing, and its next turn is `share`
    /// ticks later either way; so a level that keeps work waiting gets one
    /// poll every `share` ticks, whatever floods the levels above it. The
    /// common case, no turn due, costs one comparison.
    #[inline]
    fn fair_turn(&mut self, local: &Local) -> Option<Runnable> {
        if !self.fair.enabled || !tick_reached(self.tick, self.fair.next) {
            return None;
        }
        self.fair_turn_due(local)
    }

    #[cold]
    fn fair_turn_due(&mut self, local: &Local) -> Option<Runnable> {
        if self.custom_scheduler {
            self.fair.next = self.tick.wrapping_add(1);
            return self.scheduled_turn(local);
        }
        let shares = &local.pool.min_shares;
        // Low first: when both are due on one tick, the rarer turn goes
        // first and Normal takes the next tick.
        let due = (Priority::Normal.index()..Priority::COUNT)
            .rev()
            .find(|&level| {
                shares[level] != NO_SHARE && tick_reached(self.tick, self.fair.due[level])
            });
        let task = due.and_then(|level| {
            self.fair.due[level] = self.tick.wrapping_add(shares[level]);
            local
                .pop_queue(level)
                .or_else(|| local.pop_inbox(level))
                .or_else(|| local.pool.pop_injector(level, &local.queues[level]))
        });
        self.fair.next = self.fair.earliest(shares, self.tick);
        task
    }

    /// Asks the pool's `Scheduler` which level to serve, and looks for a
    /// task of that level (see `pool::scheduler`).
    #[inline(never)]
    fn scheduled_turn(&mut self, local: &Local) -> Option<Runnable> {
        let pool = &*local.pool;
        let scheduler = pool.scheduler.as_ref()?;
        let inbox = local.inbox();
        let queued = std::array::from_fn(|level| {
            local.queues[level].len()
                + pool.injector_len_at(level)
                + inbox.map_or(0, |inbox| {
                    inbox.placed[level].len() + inbox.pinned[level].len() + inbox.local[level].len()
                })
        });
        let cx = super::SchedulerContext {
            worker: local.index,
            tick: self.tick,
            queued,
            polls: self.polls,
        };
        let level = match super::guard_user("Scheduler::next_level", || {
            crate::fault::hit("scheduler");
            scheduler.next_level(&cx)
        }) {
            Some(level) => level?.index(),
            None => {
                // A panicking policy is dropped for this worker: the
                // built-in order takes over.
                self.custom_scheduler = false;
                return None;
            }
        };
        local
            .pop_queue(level)
            .or_else(|| local.pop_inbox(level))
            .or_else(|| pool.pop_injector(level, &local.queues[level]))
            .or_else(|| self.steal_level(local, level))
    }

    /// Whether the injector interval has passed since the last
    /// injector-first check.
    fn injector_due(&self) -> bool {
        self.draining || self.tick.wrapping_sub(self.interval_start.0) >= self.injector_interval
    }

    /// Re-derives the injector interval from the mean poll time since the
    /// last check.
    fn tune_injector_interval(&mut self, local: &Local) {
        // Also the moment to look after siblings' overdue timers, and to
        // run the busy-tick hook.
        local
            .pool
            .timers
            .fire_overdue_elsewhere(local.index, &mut self.fired);
        self.run_busy_tick(local);
        let now = Instant::now();
        let (start_tick, start) = self.interval_start;
        let ticks = self.tick.wrapping_sub(start_tick).max(1);
        let mean_poll = now.saturating_duration_since(start) / ticks;
        let interval = INJECTOR_TARGET.as_nanos() / mean_poll.as_nanos().max(1);
        self.injector_interval = (interval as u32).clamp(1, MAX_INJECTOR_INTERVAL);
        let lifo_polls = LIFO_BUDGET.as_nanos() / mean_poll.as_nanos().max(1);
        self.lifo_cap = (lifo_polls as u32).min(MAX_LIFO_POLLS);
        self.interval_start = (self.tick, now);
    }

    /// Steals a batch of `level` tasks from a sibling, starting at a random
    /// one. Clears the pool's hint for the level when every sibling is empty.
    fn steal_level(&mut self, local: &Local, level: usize) -> Option<Runnable> {
        let slots = &local.pool.slots;
        let start = self.next_random() as usize % slots.len();
        loop {
            let mut retry = false;
            for offset in 0..slots.len() {
                let victim = (start + offset) % slots.len();
                if victim == local.index {
                    continue;
                }
                match slots[victim].stealers[level].steal_batch_and_pop(&local.queues[level]) {
                    Steal::Success(task) => return Some(task),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
                if let Some(inbox) = slots[victim].inbox.get() {
                    match inbox.placed[level].steal_batch_and_pop(&local.queues[level]) {
                        Steal::Success(task) => return Some(task),
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
            }
            if !retry {
                if level < Priority::Low.index() {
                    local.pool.clear_level(level);
                }
                return None;
            }
        }
    }

    /// Becomes a searcher (if not too many are) and steals, most urgent level
    /// first, from siblings and then the injector.
    fn steal_work(&mut self, local: &Local) -> Option<Runnable> {
        local
            .pool
            .timers
            .fire_overdue_elsewhere(local.index, &mut self.fired);
        if local.has_local_work() {
            // A sibling's timer woke tasks onto our queues.
            return None;
        }
        if !self.searching {
            self.searching = local.pool.idle.transition_worker_to_searching();
            if !self.searching {
                return None;
            }
        }
        for round in 0..=SEARCH_SPINS {
            if round > 0 {
                // Nothing anywhere: wait a moment and look again before
                // parking (see `SEARCH_SPINS`).
                for _ in 0..SPIN_PAUSES {
                    std::hint::spin_loop();
                }
                if !local.pool.has_queued_work() {
                    if local.pool.is_closed() {
                        return None;
                    }
                    continue;
                }
            }
            for level in 0..Priority::COUNT {
                if let Some(task) = self.steal_level(local, level) {
                    return Some(task);
                }
                if let Some(task) = local.pool.pop_injector(level, &local.queues[level]) {
                    return Some(task);
                }
            }
        }
        None
    }

    /// Polls `task`, then whatever it put in the LIFO slot (bounded).
    fn run_task(&mut self, local: &Local, task: Runnable) {
        if self.searching {
            self.searching = false;
            // The last searcher to find work wakes another worker to search
            // on: there may be more where this came from.
            if local.pool.idle.transition_worker_from_searching() {
                local.pool.notify_parked();
            }
        }
        self.lifo_polls = 0;
        local.lifo_enabled.set(true);
        if self.per_poll_extras {
            self.bump_activity(local);
            if self.custom_scheduler {
                self.polls[task.metadata().priority().index()] += 1;
            }
        }
        poll_task(local, task);
        while let Some(task) = local.lifo.take() {
            let level = task.metadata().priority().index();
            if self.lifo_polls >= self.lifo_cap
                || local.more_urgent_queued(level)
                || self.injector_due()
                || local.pool.is_closed()
            {
                // The task loses its turn: to the back of its queue, where
                // `next_task` serves levels (and the injector) in order.
                local.push_back(task);
                break;
            }
            self.lifo_polls += 1;
            // A LIFO poll is a tick too, for the injector interval.
            self.tick = self.tick.wrapping_add(1);
            poll_task(local, task);
        }
        local.lifo_enabled.set(false);
        if self.per_poll_extras {
            self.bump_activity(local);
        }
    }

    /// Counts a poll starting or ending: odd while polling; see `monitor`.
    #[inline]
    fn bump_activity(&mut self, local: &Local) {
        if self.track_activity {
            self.activity = self.activity.wrapping_add(1);
            local.pool.slots[local.index]
                .activity
                .store(self.activity, Ordering::Relaxed);
        }
    }

    /// Sleeps until a producer wakes this worker, its next timer is due, or
    /// the pool closes; or retires the worker after the idle timeout.
    fn park(&mut self, local: &Local) {
        if local.has_local_work() {
            return;
        }
        let pool = &*local.pool;
        if pool
            .idle
            .transition_worker_to_parked(local.index, self.searching)
        {
            // Last searcher: re-check everything (see `idle`).
            pool.notify_if_work_pending();
        }
        self.searching = false;
        if local.has_inbox_work() {
            // Placed or pinned here before we announced that we park; a
            // producer after that would have found us among the sleepers.
            self.searching = !pool.idle.unpark_worker_by_id(local.index);
            return;
        }
        if pool.try_auto_advance() {
            // Paused time moved; the timers it fired woke tasks onto this
            // worker's queues.
            self.searching = !pool.idle.unpark_worker_by_id(local.index);
            return;
        }
        // `None`: never (a fixed pool, or an idle timeout too long to
        // represent, which means the same).
        let mut retire_at = (pool.max_workers() > pool.min_workers())
            .then(|| Instant::now().checked_add(pool.idle_timeout))
            .flatten();
        loop {
            if pool.is_closed() {
                pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            let deadline = match (pool.timers.prepare_park(local.index), retire_at) {
                (Some(timer), Some(retire)) => Some(timer.min(retire)),
                (timer, retire) => timer.or(retire),
            };
            let hooked = self.park_hook.is_some() && !pool.runtime.clock.is_paused();
            if hooked {
                if self.park_in_hook(local, deadline) {
                    // The hook returned while running work of its own
                    // (`Park::mark_busy`): unparked, not searching.
                    break;
                }
            } else if let Some(deadline) = deadline {
                self.parker.park_deadline(deadline);
            } else {
                self.parker.park();
            }
            if !pool.idle.is_parked(local.index) {
                // A notifier claimed us and counted us as searching.
                self.searching = true;
                break;
            }
            if hooked && local.has_local_work() {
                // The hook woke tasks onto our queues (see `park`).
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            if pool.timers.is_due(local.index) || pool.timers.overdue_elsewhere(local.index) {
                // Woken for a timer (ours, or a busy sibling's): unpark
                // ourselves (unless a notifier claimed us meanwhile) and let
                // the loop fire it.
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            if pool.try_auto_advance() {
                // Woken because time was paused: paused time moved.
                self.searching = !pool.idle.unpark_worker_by_id(local.index);
                break;
            }
            if retire_at.is_some_and(|at| Instant::now() >= at) {
                if pool.try_retire(local.index) {
                    self.retired = true;
                    return;
                }
                // At `min_workers`, or our wheel holds timers: stay, and
                // look again after another idle timeout.
                retire_at = Instant::now().checked_add(pool.idle_timeout);
            }
        }
        pool.timers.unparked(local.index);
        self.interval_start = (self.tick, Instant::now());
        if self.park_hook.is_some() && local.local_len() > 1 {
            // The hook woke several tasks onto our queues: let a sibling
            // take some (as tokio's worker does after a driver turn).
            pool.notify_parked();
        }
    }

    /// Runs the busy-tick hook, if any (see `Builder::on_busy_tick`).
    fn run_busy_tick(&mut self, local: &Local) {
        let Some(hook) = &self.busy_tick else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| hook())).is_err() {
            eprintln!(
                "multipool: the `Builder::on_busy_tick` hook panicked on worker {}; \
                 the panic was caught and the worker no longer calls it",
                local.index
            );
            self.busy_tick = None;
        }
    }

    /// Runs the park hook instead of sleeping (see `park`). A hook that
    /// panics is dropped: the worker parks the default way from then on.
    /// Returns whether the hook left the worker unparked (see
    /// `Park::mark_busy`).
    fn park_in_hook(&mut self, local: &Local, deadline: Option<Instant>) -> bool {
        let Some(hook) = &self.park_hook else {
            return false;
        };
        let slot = &local.pool.slots[local.index];
        let waker = slot
            .hook_waker
            .as_deref()
            .expect("a runtime with a park hook gives every worker a hook waker");
        let park = Park::new(deadline, &self.parker, waker, &local.pool, local.index);
        local.in_park_hook.set(true);
        let result = park.run_hook(&**hook);
        local.in_park_hook.set(false);
        waker.clear();
        if result.is_err() {
            eprintln!(
                "multipool: the `Builder::park_with` hook panicked on worker {}; \
                 the panic was caught and the worker parks without the hook from now on",
                local.index
            );
            self.park_hook = None;
        }
        park.is_busy()
    }
}
