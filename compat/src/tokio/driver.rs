//! [`Driver`]: who drives the owned `current_thread` tokio runtime (its
//! I/O and time drivers, and its tasks), and the worker hooks that do.
//!
//! Invariants:
//!
//! * The owned tokio runtime is, by default, a `current_thread` one (a
//!   [`Driver`]). At most one idle multipool worker at a time drives it
//!   from its park hook
//!   ([`Builder::park_with`](multipool::Builder::park_with); other idle
//!   workers sleep the default way), busy workers take non-blocking turns
//!   between polls
//!   ([`Builder::on_busy_tick`](multipool::Builder::on_busy_tick)), and a
//!   fallback thread drives it when no worker is in the hook and none
//!   entered it or took a turn for [`FALLBACK_LAG`] (up to
//!   [`MAX_FALLBACK_LAG`] after a long stretch of busy turns). A worker entering the hook or taking a turn makes
//!   the fallback let go of the core (its `block_on` future completes);
//!   the worker leaving the hook wakes the fallback to watch again (a
//!   condition variable, checked and signalled under one mutex, so the
//!   hand-over cannot be missed). So tokio's I/O and timers are never left
//!   undriven for much longer than [`MAX_FALLBACK_LAG`].
//! * A worker driving tokio from its park hook also runs tokio's tasks,
//!   which may take long. It counts as busy ([`Park::mark_busy`]) while
//!   tokio may run them: from the first poll of its `block_on` future with
//!   tokio's core (tasks already queued run before tokio's first park)
//!   until tokio parks its driver, and again from each unpark of the
//!   driver (tokio's `on_thread_park`/`on_thread_unpark` callbacks, which
//!   find the hook's [`Park`] through [`Park::with_current`]). So while a
//!   tokio task runs, new multipool work wakes another worker rather than
//!   waiting for that task. While the fallback thread or a busy worker's
//!   turn may hold the core, the first poll does not mark it busy: that
//!   poll may be tokio's wait for the core, which a long tokio task there
//!   could stretch, and a claim must still end it. Leaving `block_on`, the
//!   worker marks itself idle again unless it was unparked. tokio polls a
//!   woken `block_on` future once its queue is empty or after a batch of
//!   its tasks (its event interval), so a worker whose unpark arrived
//!   runs at most that batch before it returns.
//! * Every `block_on` of the owned runtime (the park hook's, a busy turn's,
//!   the fallback thread's) holds the multipool wake-ups made on its thread
//!   ([`HoldWakes`]) and releases them at each poll of its future, and when
//!   it returns: a multipool task that a tokio task wakes is queued only
//!   once that tokio poll has ended, never run by another worker while the
//!   rest of that poll runs. That is tokio's own order (its LIFO slot), and
//!   hyper-util's connection pool relies on it: it delivers the end of a
//!   response and marks the connection reusable in one poll, and a client
//!   that ran in between opened a new connection (reqwest opened 17 to 28
//!   where tokio opens 16, `compat/tests/reqwest.rs`). The first wake-up
//!   held wakes the `block_on` future, so the wait is at most that batch.
//! * [`Driver::stop`] makes the fallback thread return; the last reference
//!   to a [`Driver`] shuts its runtime down in the background if no one took
//!   it first. When that happens is the lifecycle's business
//!   (`lifecycle.rs`).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use multipool::{HoldWakes, Park};

use super::home::Home;
use tokio::runtime::Runtime;

thread_local! {
    /// The driver of the tokio runtime entered on this thread, if it is a
    /// [`Driver`].
    static DRIVER: RefCell<Option<Arc<Driver>>> = const { RefCell::new(None) };
}

/// Sets [`DRIVER`] for the life of a `wrap_thread` body; restores the outer
/// value (a nested runtime's `block_on`) when dropped.
pub(super) struct DriverGuard(Option<Arc<Driver>>);

impl DriverGuard {
    pub(super) fn set(driver: Option<Arc<Driver>>) -> Self {
        DriverGuard(DRIVER.with(|slot| slot.replace(driver)))
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let outer = self.0.take();
        let inner = DRIVER.try_with(|slot| slot.replace(outer)).ok().flatten();
        // Outside the thread-local's borrow: this may be the last reference.
        drop(inner);
    }
}

thread_local! {
    /// The `Shared::id` of the [`Driver`] that a worker drives from its
    /// park hook on this thread (inside [`Driver::drive`]); 0 when none.
    static DRIVING: Cell<usize> = const { Cell::new(0) };
}

/// Sets [`DRIVING`] for the life of a [`Driver::drive`]; restores the
/// previous value when dropped (also by unwinding).
struct DrivingGuard(usize);

impl DrivingGuard {
    fn set(id: usize) -> Self {
        DrivingGuard(DRIVING.with(|driving| driving.replace(id)))
    }
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        let _ = DRIVING.try_with(|driving| driving.set(self.0));
    }
}

/// tokio's park (`busy: false`) and unpark (`true`) callbacks of the owned
/// runtime of `Shared::id` `id`: on a worker driving it from its park hook,
/// the worker counts as busy while tokio runs tasks (see the module docs).
/// Elsewhere (the fallback thread, a busy worker's turn) they do nothing.
pub(super) fn tokio_parks(id: usize, busy: bool) {
    if DRIVING.try_with(Cell::get) != Ok(id) {
        return;
    }
    Park::with_current(|park| {
        if busy {
            park.mark_busy();
        } else {
            park.mark_idle();
        }
    });
}

/// The park hook of a runtime with a [`Driver`]: drive tokio until the
/// worker is unparked.
pub(super) fn park_hook(park: &Park<'_>) {
    match current_driver() {
        Some(driver) => driver.drive(park),
        None => park.park(),
    }
}

/// The busy-tick hook of a runtime with a [`Driver`]: a non-blocking turn
/// of tokio's drivers between two polls.
pub(super) fn busy_tick() {
    if let Some(driver) = current_driver() {
        driver.turn();
    }
}

/// This thread's [`DRIVER`], cloned: tokio tasks run while it is in use
/// may enter (and leave) another runtime's wrapper on this thread.
fn current_driver() -> Option<Arc<Driver>> {
    DRIVER
        .try_with(|driver| driver.borrow().clone())
        .ok()
        .flatten()
}

/// tokio's timers fire on a 1 ms tick (and epoll waits in whole
/// milliseconds), rounding deadlines up; multipool's own timers are exact.
/// A worker whose next timer is closer than this sleeps the default way
/// for that last stretch (the fallback thread drives tokio meanwhile).
const TOKIO_TICK: Duration = Duration::from_millis(1);

/// How long tokio may go without a worker driving it (from its park hook
/// or between polls) before the fallback thread takes over: how long I/O
/// and tokio timers wait when every worker gets stuck in a long poll
/// soon after it was last idle.
const FALLBACK_LAG: Duration = Duration::from_millis(1);

/// The longest they wait: while busy workers keep taking turns, the
/// fallback thread looks less and less often (see [`Driver::fallback`]),
/// down to once per this.
const MAX_FALLBACK_LAG: Duration = Duration::from_millis(4);

/// A `current_thread` tokio runtime driven by idle multipool workers and, when
/// none is idle, by a fallback thread (see the module docs).
pub(super) struct Driver {
    /// `Some` until it is shut down.
    pub(super) runtime: Option<Runtime>,
    /// The `Shared::id` of the owner, which the runtime's park and unpark
    /// callbacks know it by (see [`DRIVING`]).
    id: usize,
    /// The multipool runtime the fallback thread enters while it drives
    /// (see `home`).
    home: Arc<Home>,
    /// Workers inside [`drive`](Self::drive)'s `block_on`: 0 or 1.
    hooked: AtomicUsize,
    /// Bumped whenever a worker enters the park hook or takes a turn: the
    /// fallback thread only takes over once it stops moving.
    activity: AtomicUsize,
    /// Set while the fallback thread is in (or about to enter) its
    /// `block_on`; workers then wake it to let go of the core.
    holding: AtomicBool,
    /// Busy workers inside [`turn`](Self::turn), set before they check
    /// `hooked`: they may hold the core.
    turning: AtomicUsize,
    stop: AtomicBool,
    /// The waker of the fallback thread's `block_on` future.
    fallback_waker: Mutex<Option<Waker>>,
    /// Guards the fallback thread's wait for `hooked` to drop to zero.
    idle: Mutex<()>,
    idle_changed: Condvar,
    /// Notified (under `idle`) by [`stop`](Self::stop): ends a nap of the
    /// fallback thread, which the workers' visits to the hook do not.
    stopped: Condvar,
}

impl Driver {
    pub(super) fn new(runtime: Runtime, id: usize, home: Arc<Home>) -> Self {
        Driver {
            runtime: Some(runtime),
            id,
            home,
            hooked: AtomicUsize::new(0),
            activity: AtomicUsize::new(0),
            holding: AtomicBool::new(false),
            turning: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            fallback_waker: Mutex::new(None),
            idle: Mutex::new(()),
            idle_changed: Condvar::new(),
            stopped: Condvar::new(),
        }
    }

    pub(super) fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("a driver's runtime is only taken once nothing else uses it")
    }

    /// A worker wants to drive tokio: counts it as activity, and makes the
    /// fallback thread let go of the core if it holds it. The caller has
    /// already made its reason visible (`hooked`), or bumps `activity`
    /// here, before reading `holding`: the fallback thread sets `holding`
    /// before it checks both (all `SeqCst`), so either it sees the change
    /// or this sees `holding` and wakes it.
    fn claim(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) {
            if let Some(waker) = lock(&self.fallback_waker).take() {
                waker.wake();
            }
        }
    }

    /// The park hook's body, on a worker thread.
    fn drive(&self, park: &Park<'_>) {
        let until = match park.deadline() {
            Some(deadline) => match deadline.checked_sub(TOKIO_TICK) {
                Some(until) if until > Instant::now() => Some(until),
                _ => return park.park(),
            },
            None => None,
        };
        if self
            .hooked
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Another idle worker drives tokio: sleep the default way, like
            // tokio's idle workers that do not hold its driver. Queuing on
            // tokio's core instead would hand the core to this worker each
            // time the other one leaves, a thread wake-up for nothing while
            // that one runs what it woke (and takes turns between polls).
            return park.park();
        }
        self.claim();
        let _leave = LeaveHook(self);
        let _driving = DrivingGuard::set(self.id);
        let mut unparked = pin!(park.unparked());
        // Multipool tasks that tokio's tasks wake here are queued between
        // two of tokio's polls, not inside one (see `HoldWakes`).
        let hold = HoldWakes::new();
        let wait = poll_fn(|cx| {
            hold.release(cx.waker());
            if unparked.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // tokio polls this future first whenever it takes its core,
            // before it runs the tasks already queued: busy from here (see
            // the module docs). Unless the core may be held elsewhere: then
            // this may be tokio's wait for the core, during which the worker
            // must stay a sleeper that a notifier can claim (and so wake).
            if !self.core_held_elsewhere() {
                park.mark_busy();
            }
            Poll::Pending
        });
        // Holds tokio's core (driving I/O and timers, running tokio tasks)
        // or waits for it, until unparked or `until`; returning early is
        // fine, the worker calls the hook again.
        self.runtime().block_on(async {
            match until {
                Some(until) => {
                    let until = ::tokio::time::Instant::from_std(until);
                    let _ = ::tokio::time::timeout_at(until, wait).await;
                }
                None => wait.await,
            }
        });
        // Queued while still in the hook: the worker finds them at once.
        drop(hold);
        // No tokio task runs any more. Unless unparked, the worker goes back
        // to counting as parked, so that at `until` it sees its timers and
        // idle timeout as it would after a plain park.
        park.mark_idle();
    }

    /// Whether the fallback thread or a busy worker's turn may hold tokio's
    /// core. Each makes that visible before it checks `hooked` (`SeqCst`),
    /// and a worker in the hook has set `hooked` before it asks: so a
    /// holder that this misses has seen `hooked` and lets go of the core
    /// without running a task (its `block_on` future completes at its first
    /// poll, which comes first).
    fn core_held_elsewhere(&self) -> bool {
        self.holding.load(Ordering::SeqCst) || self.turning.load(Ordering::SeqCst) > 0
    }

    /// The busy-tick hook's body: one non-blocking turn, on a busy worker.
    fn turn(&self) {
        // Before the check of `hooked`: see `core_held_elsewhere`.
        self.turning.fetch_add(1, Ordering::SeqCst);
        let _turned = Turned(self);
        if self.hooked.load(Ordering::SeqCst) > 0 {
            // An idle worker drives tokio.
            return;
        }
        self.claim();
        // With the core free: polls the future (which wakes itself), runs
        // the tokio tasks that are ready (a bounded batch), turns the
        // drivers without blocking, polls the future again and returns.
        // With the core taken (another worker's turn, or the fallback
        // thread until it notices `claim`): returns at the second poll
        // without driving anything.
        let mut yielded = false;
        let hold = HoldWakes::new();
        self.runtime().block_on(poll_fn(|cx| {
            hold.release(cx.waker());
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }));
    }

    /// The fallback thread: holds tokio's core while no worker drives it.
    pub(super) fn fallback(&self) {
        let mut lag = FALLBACK_LAG;
        loop {
            {
                let mut idle = lock(&self.idle);
                while self.hooked.load(Ordering::SeqCst) > 0 && !self.stop.load(Ordering::SeqCst) {
                    idle = self
                        .idle_changed
                        .wait(idle)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            // No worker is idle in the hook. Busy workers take turns between
            // polls, and a worker that just left the hook usually returns to
            // it soon: only take over once none of that happens for a lag.
            // While they keep doing it, each wake-up of this thread is one
            // for nothing, which on a machine whose cores are all busy also
            // preempts a worker (or whatever else runs there): the lag
            // doubles, up to `MAX_FALLBACK_LAG`, for as long as they do, and
            // the naps go on through their visits to the hook (which do not
            // wake a nap). Once they go quiet, the lag starts over.
            let seen = loop {
                let seen = self.activity.load(Ordering::SeqCst);
                if self.nap(lag) {
                    return;
                }
                if self.activity.load(Ordering::SeqCst) != seen {
                    lag = (lag * 2).min(MAX_FALLBACK_LAG);
                    continue;
                }
                break seen;
            };
            lag = FALLBACK_LAG;
            if self.hooked.load(Ordering::SeqCst) > 0 {
                // Quiet, with a worker in the hook (an idle runtime): wait
                // for it to leave.
                continue;
            }
            self.holding.store(true, Ordering::SeqCst);
            // The tokio tasks it runs see the multipool runtime they belong
            // to (see `home`).
            let home = self.home.get();
            let _home = home.as_ref().map(multipool::Handle::enter);
            let hold = HoldWakes::new();
            self.runtime().block_on(poll_fn(|cx| {
                hold.release(cx.waker());
                // Register, then check (see `claim` and `stop`).
                *lock(&self.fallback_waker) = Some(cx.waker().clone());
                if self.hooked.load(Ordering::SeqCst) > 0
                    || self.activity.load(Ordering::SeqCst) != seen
                    || self.stop.load(Ordering::SeqCst)
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            drop(hold);
            self.holding.store(false, Ordering::SeqCst);
            drop(lock(&self.fallback_waker).take());
        }
    }

    /// Sleeps for `lag` unless [`stop`](Self::stop) is called meanwhile;
    /// returns whether it was.
    fn nap(&self, lag: Duration) -> bool {
        let deadline = Instant::now() + lag;
        let mut idle = lock(&self.idle);
        loop {
            // Checked under the lock `stop` notifies under: never missed.
            if self.stop.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            idle = match self.stopped.wait_timeout(idle, deadline - now) {
                Ok((idle, _)) => idle,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Makes the fallback thread return (at once).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(waker) = lock(&self.fallback_waker).take() {
            waker.wake();
        }
        let _idle = lock(&self.idle);
        self.idle_changed.notify_all();
        self.stopped.notify_all();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only reached with nothing inside the runtime's `block_on`: every
        // reference is gone. Normally `Shared::shut_down_if_unused` took the
        // runtime already; otherwise this is the fallback thread, after its
        // last `block_on`, outside any runtime context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Ends a busy worker's turn (see [`Driver::turn`]), also by unwinding.
struct Turned<'a>(&'a Driver);

impl Drop for Turned<'_> {
    fn drop(&mut self) {
        self.0.turning.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A worker leaves the park hook; the last one out wakes the fallback
/// thread to watch over tokio.
struct LeaveHook<'a>(&'a Driver);

impl Drop for LeaveHook<'_> {
    fn drop(&mut self) {
        let driver = self.0;
        if driver.hooked.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock the fallback thread checks `hooked` with.
            let _idle = lock(&driver.idle);
            driver.idle_changed.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment: a panic while
    // one is held leaves nothing half-done.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
