//! [`Spawn`]: the one builder every spawn goes through.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use event_listener::EventListener;

use super::{AbortHandle, Id, JoinHandle};
use crate::error::SpawnError;
use crate::limit::{ConcurrencyLimit, ConcurrencyPermit, Gate, Limited, Limits, RateLimiter, Wait};
use crate::runtime::{
    key_hash, spawn_on, with_current_pool, Admission, After, CpuLimits, DependencyGate, Enqueue,
    Handle, Home, Pool, RawTask, SpawnOptions, Spawned,
};
use crate::sync::Arc;
use crate::{JoinError, Priority};

/// Which runtime a [`Spawn`] puts its task on.
enum Target {
    /// The runtime entered on the thread that starts the task, or the global
    /// runtime when none is.
    Current,
    /// A runtime chosen explicitly.
    Handle(Handle),
}

/// A task that has been described but not started yet.
///
/// Returned by [`multipool::spawn`](crate::spawn),
/// [`Runtime::spawn`](crate::Runtime::spawn) and
/// [`Handle::spawn`](crate::Handle::spawn). Set options with
/// [`priority`](Self::priority), [`name`](Self::name),
/// [`timeout`](Self::timeout), [`pool`](Self::pool), the CPU limits
/// ([`cpu_budget`](Self::cpu_budget), [`max_poll`](Self::max_poll),
/// [`cpu_budget_demote`](Self::cpu_budget_demote)),
/// [`memory_limit`](Self::memory_limit), rate and concurrency limits
/// ([`rate_limit`](Self::rate_limit), [`concurrency`](Self::concurrency))
/// and dependencies ([`after`](Self::after)), then use it in one of these
/// ways:
///
/// * `.await` it: the task starts and you get its `Result<T, JoinError>`.
///   If the pool's queue is full (see
///   [`Builder::max_queued`](crate::Builder::max_queued)) this first waits
///   for room: *backpressure*;
/// * [`start`](Self::start) it: the task starts now and you get a
///   [`JoinHandle`]; with the queue full, the handle reports the refusal;
/// * [`try_start`](Self::try_start) it: like `start`, but a refusal is an
///   `Err` at once;
/// * [`detach`](Self::detach) it: the task starts now and runs on its own.
///
/// Nothing runs until one of those happens; a `Spawn` that is dropped unused
/// never runs its future.
///
/// ```
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(async {
///     let urgent = multipool::spawn(async { "now" }).priority(Priority::High).await;
///     assert_eq!(urgent.unwrap(), "now");
///
///     let handle = multipool::spawn(async { 1 + 1 }).name("adder").start();
///     assert_eq!(handle.name(), Some("adder"));
///     assert_eq!(handle.await.unwrap(), 2);
/// });
/// ```
#[must_use = "a Spawn does nothing until it is awaited, started or detached"]
pub struct Spawn<F> {
    future: F,
    target: Target,
    options: SpawnOptions,
    /// The rarely set options, boxed: every builder step and every spawn
    /// moves the `Spawn`, and kept small it is moved in registers rather
    /// than with a `memcpy` call (measured with callgrind on
    /// `hotpath_probe local`).
    extras: Option<Box<Extras>>,
}

/// The options of a [`Spawn`] that most spawns leave unset.
#[derive(Default)]
struct Extras {
    /// Set by [`Spawn::pool`].
    pool: Option<String>,
    /// Set by [`Spawn::rate_limit`] and [`Spawn::concurrency`].
    limits: Limits,
    /// Set by [`Spawn::after`] and `dependency_gate`.
    after: After,
}

/// A [`Spawn`] taken apart for starting: its extras unboxed, with a
/// dependency list that holds nothing dropped.
struct Parts<F> {
    future: F,
    target: Target,
    options: SpawnOptions,
    pool: Option<String>,
    limits: Limits,
    after: Option<After>,
}

impl<F> Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[track_caller]
    pub(crate) fn current(future: F) -> Self {
        Spawn {
            future,
            target: Target::Current,
            options: SpawnOptions::at(std::panic::Location::caller()),
            extras: None,
        }
    }

    #[track_caller]
    pub(crate) fn on(handle: Handle, future: F) -> Self {
        Spawn {
            future,
            target: Target::Handle(handle),
            options: SpawnOptions::at(std::panic::Location::caller()),
            extras: None,
        }
    }

    /// Sets the task's priority (default [`Priority::Normal`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.options.priority = priority;
        self
    }

    /// Names the task. The name is shown by [`JoinHandle::name`] and in the
    /// handle's `Debug` output.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.options.name = Some(std::sync::Arc::from(name.into()));
        self
    }

    /// Gives the task a deadline, `timeout` after it is started: if it has
    /// not completed by then, it is cancelled (its future dropped) and its
    /// handle yields an error with
    /// [`is_timeout`](crate::JoinError::is_timeout). The future is polled
    /// before the deadline is checked, so a task that completes in the poll
    /// during which the deadline passes still succeeds.
    ///
    /// A zero timeout is rejected: the task never runs and its handle yields
    /// an error with [`is_rejected`](crate::JoinError::is_rejected).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let slow = multipool::spawn(multipool::time::sleep(Duration::from_secs(60)))
    ///         .timeout(Duration::from_millis(5))
    ///         .await;
    ///     assert!(slow.unwrap_err().is_timeout());
    /// });
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Limits the heap memory the task may hold, in bytes: once it holds
    /// more than `bytes` at the end of a poll, it is cancelled there (its
    /// future dropped) and its handle yields an error with
    /// [`is_memory_exceeded`](crate::JoinError::is_memory_exceeded); the
    /// outcome is [`Outcome::MemoryExceeded`](crate::task::Outcome::MemoryExceeded).
    /// A task that completes in the poll where it went over still
    /// completes; memory it holds only inside a poll shows in its peak but
    /// never cancels it.
    ///
    /// What it holds is what its polls allocated minus what they freed,
    /// counted by [`TaskAlloc`](crate::alloc::TaskAlloc), which must be
    /// the global allocator: without it the task is refused
    /// ([`is_rejected`](crate::JoinError::is_rejected)), as a limit that
    /// can never trigger would be a silent no-op. See
    /// [`alloc`](crate::alloc) for whose frees count (memory handed to
    /// another task stays charged to the one that allocated it).
    ///
    /// `memory_limit(0)`: the task may not hold any heap memory across a
    /// poll boundary. `memory_limit(usize::MAX)`: never cancelled, only
    /// tracked, so its hooks see its peak
    /// ([`TaskInfo::memory_peak`](crate::task::TaskInfo::memory_peak)).
    /// Tasks without a limit pay nothing for the feature.
    ///
    /// ```
    /// use multipool::alloc::TaskAlloc;
    ///
    /// #[global_allocator]
    /// static GLOBAL: TaskAlloc = TaskAlloc::system();
    ///
    /// fn main() {
    ///     let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    ///     rt.block_on(async {
    ///         let hog = multipool::spawn(async {
    ///             let mut kept: Vec<Vec<u8>> = Vec::new();
    ///             for _ in 0..100 {
    ///                 kept.push(vec![0; 100_000]);
    ///                 multipool::task::yield_now().await; // a poll boundary
    ///             }
    ///         })
    ///         .memory_limit(1_000_000)
    ///         .await;
    ///         assert!(hog.unwrap_err().is_memory_exceeded());
    ///
    ///         let frugal = multipool::spawn(async {
    ///             for _ in 0..100 {
    ///                 drop(vec![0u8; 100_000]); // freed in the same poll
    ///                 multipool::task::yield_now().await;
    ///             }
    ///         })
    ///         .memory_limit(1_000_000)
    ///         .await;
    ///         assert!(frugal.is_ok());
    ///     });
    /// }
    /// ```
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.options.resource_limits().memory = Some(bytes);
        self
    }

    /// Caps the task's poll time: the time its future spends in `poll`,
    /// summed over all its polls. After the poll that takes the sum past
    /// `budget`, the task is cancelled (its future dropped) and its handle
    /// yields an error with
    /// [`is_budget_exceeded`](crate::JoinError::is_budget_exceeded); the
    /// runtime's metrics count it as
    /// [`Outcome::Cancelled`](crate::task::Outcome::Cancelled).
    ///
    /// A poll is never interrupted: a task that blocks inside one poll is
    /// stopped only when that poll returns (and one that completes in the
    /// poll that crossed the budget still succeeds). Poll time is
    /// wall-clock time measured around each poll, so time the OS takes the
    /// thread away inside a poll counts too; time spent waiting between
    /// polls does not. Only pool tasks have CPU limits (not
    /// [`spawn_blocking`](crate::task::spawn_blocking) ones).
    ///
    /// A zero budget is rejected (the task never runs; its handle yields
    /// [`is_rejected`](crate::JoinError::is_rejected)); `Duration::MAX`
    /// never fires. See also [`cpu_budget_demote`](Self::cpu_budget_demote)
    /// to lower a task's priority instead, and [`max_poll`](Self::max_poll)
    /// to bound a single poll.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let hog = multipool::spawn(async {
    ///         loop {
    ///             let start = Instant::now();
    ///             while start.elapsed() < Duration::from_millis(2) {} // 2 ms of work
    ///             multipool::task::yield_now().await;
    ///         }
    ///     })
    ///     .cpu_budget(Duration::from_millis(10))
    ///     .await;
    ///     assert!(hog.unwrap_err().is_budget_exceeded());
    /// });
    /// ```
    pub fn cpu_budget(mut self, budget: Duration) -> Self {
        self.cpu_limits().set_budget(budget);
        self
    }

    /// Lowers the task to [`Priority::Low`] once its poll time (as
    /// [`cpu_budget`](Self::cpu_budget) sums it) passes `threshold`: the
    /// task keeps running, but from its next wake-up it queues behind all
    /// `High` and `Normal` work. A long-running task that turns out to be a
    /// CPU hog thus stops delaying interactive ones. It may be combined
    /// with `cpu_budget` (demote first, cancel later).
    ///
    /// The demotion happens after the poll that crossed the threshold, once;
    /// the task is never raised again. A zero threshold is rejected (spawn
    /// the task at `Priority::Low` instead); `Duration::MAX` never fires.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::{Duration, Instant};
    /// use multipool::Priority;
    ///
    /// let levels = Arc::new(Mutex::new(Vec::new()));
    /// let seen = levels.clone();
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .on_before_task_poll(move |task| seen.lock().unwrap().push(task.priority()))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     multipool::spawn(async {
    ///         for _ in 0..2 {
    ///             let start = Instant::now();
    ///             while start.elapsed() < Duration::from_millis(3) {} // 3 ms of work
    ///             multipool::task::yield_now().await;
    ///         }
    ///     })
    ///     .priority(Priority::High)
    ///     .cpu_budget_demote(Duration::from_millis(1))
    ///     .await
    ///     .unwrap();
    /// });
    /// // Demoted after its first poll.
    /// assert_eq!(*levels.lock().unwrap(), [Priority::High, Priority::Low, Priority::Low]);
    /// ```
    pub fn cpu_budget_demote(mut self, threshold: Duration) -> Self {
        self.cpu_limits().set_demote(threshold);
        self
    }

    /// Bounds each single poll of the task: after a poll that lasted longer
    /// than `max`, the task is cancelled and its handle yields an error
    /// with [`is_poll_too_long`](crate::JoinError::is_poll_too_long)
    /// (counted as [`Outcome::Cancelled`](crate::task::Outcome::Cancelled)).
    /// The offending poll runs to its end: a poll cannot be interrupted,
    /// so this stops a task that blocks its worker from doing it again; it
    /// does not unblock the worker. (To be told about stuck polls while
    /// they last, runtime-wide, see
    /// [`Builder::on_slow_poll`](crate::Builder::on_slow_poll).)
    ///
    /// Poll time is measured as for [`cpu_budget`](Self::cpu_budget). A
    /// zero `max` is rejected; `Duration::MAX` never fires.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     let blocker = multipool::spawn(async {
    ///         std::thread::sleep(Duration::from_millis(20)); // blocks the worker
    ///         multipool::task::yield_now().await;
    ///         unreachable!("cancelled after the first poll");
    ///     })
    ///     .max_poll(Duration::from_millis(5))
    ///     .await;
    ///     assert!(blocker.unwrap_err().is_poll_too_long());
    /// });
    /// ```
    pub fn max_poll(mut self, max: Duration) -> Self {
        self.cpu_limits().set_max_poll(max);
        self
    }

    fn cpu_limits(&mut self) -> &mut CpuLimits {
        &mut self.options.resource_limits().cpu
    }

    /// Runs the task in the runtime's pool called `name` (see
    /// [`Builder::pool`](crate::Builder::pool)) instead of the pool the
    /// spawn would otherwise use. The task stays in that pool for its whole
    /// life, across every wake-up. The pool of the runtime's own settings is
    /// called `"default"`.
    ///
    /// An unknown name is not a panic: the handle reports an error with
    /// [`is_rejected`](crate::JoinError::is_rejected) naming the pools there
    /// are.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .pool("cpu", |pool| pool.workers(2).thread_name("cpu"))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     let thread = multipool::spawn(async { std::thread::current().name().map(str::to_owned) })
    ///         .pool("cpu")
    ///         .await
    ///         .unwrap();
    ///     assert!(thread.unwrap().starts_with("cpu-"));
    ///
    ///     let err = multipool::spawn(async {}).pool("gpu").await.unwrap_err();
    ///     assert!(err.is_rejected());
    /// });
    /// ```
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.extras().pool = Some(name.into());
        self
    }

    /// Pins the task to worker `index` of its pool for its whole life: only
    /// that thread ever polls it, even while other workers are idle (they
    /// never steal it). Shared state touched only by tasks pinned to one
    /// worker needs no lock across threads. A pinned task on a busy worker
    /// waits for that worker: pin only what needs the thread.
    ///
    /// Only the pool's permanent workers (`0..min_workers`, which never
    /// retire) can be pinned to; another index is refused, and the handle
    /// says so ([`is_rejected`](crate::JoinError::is_rejected)).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// let on = rt.block_on(async {
    ///     multipool::spawn(async {
    ///         multipool::task::yield_now().await;
    ///         multipool::worker_index()
    ///     })
    ///     .worker(1)
    ///     .await
    /// });
    /// assert_eq!(on.unwrap(), Some(1));
    /// ```
    pub fn worker(mut self, index: usize) -> Self {
        self.options.home = Home::Worker(index);
        self
    }

    /// Pins the task to the worker that `key` hashes to: all tasks spawned
    /// with equal keys run on one worker (see [`worker`](Self::worker) for
    /// what pinning means), and distinct keys spread over the pool's
    /// permanent workers. The mapping is the same on every call (a jump
    /// consistent hash of the key's `Hash`).
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(4).build().unwrap();
    /// let workers: Vec<_> = (0..3)
    ///     .map(|_| rt.block_on(rt.spawn(async { multipool::worker_index() }).key("user-42")))
    ///     .collect();
    /// assert!(workers.windows(2).all(|w| w[0].as_ref().unwrap() == w[1].as_ref().unwrap()));
    /// ```
    pub fn key(mut self, key: impl std::hash::Hash) -> Self {
        self.options.home = Home::Key(key_hash(&key));
        self
    }

    /// Rate-limits the task: it takes a cell of `limiter` before its future
    /// first runs, in priority order among the limiter's waiters (at this
    /// spawn's [`priority`](Self::priority)). While it waits it costs no
    /// worker time. `.await` waits before the task is created; `start`,
    /// `try_start` and `detach` create it at once and it waits in its first
    /// poll, so its handle can abort it, and reports a shutdown, meanwhile.
    /// See [`limit`](crate::limit).
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] { // paused time: `start_paused`
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use multipool::limit::{Quota, RateLimiter};
    ///
    /// let rt = multipool::Runtime::builder().workers(2).start_paused(true).build().unwrap();
    /// rt.block_on(async {
    ///     let limiter = RateLimiter::new(
    ///         Quota::per_second(NonZeroU32::new(2).unwrap()).allow_burst(NonZeroU32::new(1).unwrap()),
    ///     );
    ///     let start = multipool::time::Instant::now();
    ///     let handles: Vec<_> = (0..3)
    ///         .map(|i| multipool::spawn(async move { i }).rate_limit(&limiter).start())
    ///         .collect();
    ///     for handle in handles {
    ///         handle.await.unwrap();
    ///     }
    ///     assert_eq!(start.elapsed(), Duration::from_secs(1)); // at 0, 0.5 s and 1 s
    /// });
    /// # }
    /// ```
    pub fn rate_limit(mut self, limiter: &RateLimiter) -> Self {
        self.extras().limits.set_rate(limiter);
        self
    }

    /// Limits how many tasks under `limit` run at once: the task takes a
    /// permit before its future first runs (after any rate limit) and holds
    /// it until it ends, however it ends (completed, panicked, aborted,
    /// timed out, cancelled). Waiting for the permit costs no worker time;
    /// it happens where [`rate_limit`](Self::rate_limit)'s waiting does.
    ///
    /// ```
    /// use multipool::limit::ConcurrencyLimit;
    ///
    /// let rt = multipool::Runtime::builder().workers(4).build().unwrap();
    /// let one_at_a_time = ConcurrencyLimit::new(1);
    /// rt.block_on(async {
    ///     let a = multipool::spawn(async { 1 }).concurrency(&one_at_a_time).start();
    ///     let b = multipool::spawn(async { 2 }).concurrency(&one_at_a_time).await;
    ///     assert_eq!(a.await.unwrap() + b.unwrap(), 3);
    /// });
    /// ```
    pub fn concurrency(mut self, limit: &ConcurrencyLimit) -> Self {
        self.extras().limits.set_concurrency(limit);
        self
    }

    /// Starts the task only once `dependency` has finished: it is created
    /// (and counted, and its handle works) when started, but it is not
    /// queued, and its future is not polled, until the task it depends on
    /// has ended, whatever its outcome (completed, panicked, cancelled).
    /// Call it several times to wait for several tasks. While it waits, the
    /// task costs no worker time.
    ///
    /// `dependency` is the [`JoinHandle`] or an [`AbortHandle`] of a task
    /// (borrowed; awaiting it stays the owner's business) or a task's
    /// [`Id`]. A task that has already ended, or an id that names no live
    /// task, does not hold the task back. Everything the dependency did happens before the task's
    /// first poll. (The dependency's own handle may report
    /// [`is_finished`](JoinHandle::is_finished) a moment after that: its
    /// output is stored just after its future was dropped.)
    ///
    /// While it waits, the task can be aborted (it ends at once, cancelled)
    /// and a shutdown cancels it, as any task; it keeps its place in a
    /// bounded queue ([`Builder::max_queued`](crate::Builder::max_queued))
    /// until it first runs. A [`timeout`](Self::timeout) counts from when it
    /// first runs, not from `start`. Its [`rate_limit`](Self::rate_limit)
    /// and [`concurrency`](Self::concurrency) limits are passed after the
    /// wait, in its first poll: a held task takes no cell and holds no
    /// permit while its dependencies run.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let rt = multipool::Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(async {
    ///     let log = Arc::new(AtomicUsize::new(0));
    ///     let (first, second) = (log.clone(), log.clone());
    ///     let write = multipool::spawn(async move { first.store(42, Ordering::SeqCst) }).start();
    ///     let read = multipool::spawn(async move { second.load(Ordering::SeqCst) })
    ///         .after(&write)
    ///         .start();
    ///     assert_eq!(read.await.unwrap(), 42);
    /// });
    /// ```
    pub fn after(mut self, dependency: impl Dependency) -> Self {
        if let Some(id) = sealed::Sealed::dependency_id(&dependency) {
            self.extras().after.push(id);
        }
        self
    }

    /// The rarely set options, made on first use.
    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// Takes the spawn apart for starting it.
    #[inline(always)]
    fn into_parts(self) -> Parts<F> {
        let Spawn {
            future,
            target,
            options,
            extras,
        } = self;
        let (pool, limits, after) = match extras {
            None => (None, Limits::default(), None),
            Some(extras) => {
                let Extras {
                    pool,
                    limits,
                    after,
                } = *extras;
                (pool, limits, Some(after).filter(|after| !after.is_empty()))
            }
        };
        Parts {
            future,
            target,
            options,
            pool,
            limits,
            after,
        }
    }

    /// Where the task runs: [`worker`](Self::worker), [`key`](Self::key),
    /// or anywhere.
    pub(crate) fn home(mut self, home: Home) -> Self {
        self.options.home = home;
        self
    }

    /// Decides, once the dependencies have ended, whether the task is
    /// cancelled ([`JoinError::is_dependency_failed`]) instead of run.
    /// `TaskGraph`'s failure policy.
    pub(crate) fn dependency_gate(mut self, gate: DependencyGate) -> Self {
        self.extras().after.set_gate(gate);
        self
    }

    /// Starts the task now and returns its handle.
    ///
    /// A task that cannot be started ends at once, and its handle says why:
    /// the runtime has shut down
    /// ([`is_shutdown`](crate::JoinError::is_shutdown)), or the task was
    /// refused ([`is_rejected`](crate::JoinError::is_rejected)): its pool's
    /// queue is full, its pool is unknown or does not take its priority.
    /// `start` never waits; `.await` the `Spawn` to wait for room instead.
    pub fn start(self) -> JoinHandle<F::Output> {
        match self.start_with(false) {
            Ok(task) => JoinHandle::new(task),
            Err(error) => JoinHandle::refused(error.into_join_error()),
        }
    }

    /// Starts the task now, or reports at once why it cannot start: the
    /// pool's queue is full ([`SpawnError::is_full`]), the runtime is shut
    /// down, or the task asks for something its runtime does not have. On
    /// error the future is dropped without being polled.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// let handle = rt.spawn(async { 7 }).try_start().expect("unbounded queue");
    /// assert_eq!(multipool::block_on(handle).unwrap(), 7);
    /// ```
    pub fn try_start(self) -> Result<JoinHandle<F::Output>, SpawnError> {
        self.start_with(false).map(JoinHandle::new)
    }

    /// Starts the task now, as [`start`](Self::start) does, except that a
    /// full queue does not refuse it: it is queued beyond
    /// [`Builder::max_queued`](crate::Builder::max_queued), as
    /// [`detach`](Self::detach) queues. For adapters that implement another
    /// crate's spawn trait, whose callers expect a spawn never to be
    /// refused for a full queue and may drop the handle at once (lapin's
    /// `executor_trait` does). Other refusals (shut down, unknown pool,
    /// priority not served) still end the task at once, and its handle
    /// says why.
    ///
    /// ```
    /// let rt = multipool::Runtime::builder()
    ///     .workers(1)
    ///     .max_queued(1)
    ///     .build()
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// // Holds the only worker, so nothing queued starts.
    /// let blocker = rt.spawn(async move { rx.recv().unwrap() }).start();
    /// while rt.handle().metrics().num_queued() != 0 {
    ///     std::thread::yield_now();
    /// }
    /// let first = rt.spawn(async { 1 }).start(); // takes the one place
    /// assert!(rt.spawn(async { 2 }).start().is_finished()); // refused: full
    /// let past = rt.spawn(async { 3 }).start_unbounded(); // queued anyway
    /// tx.send(()).unwrap();
    /// assert_eq!(rt.block_on(blocker).unwrap(), ());
    /// assert_eq!(rt.block_on(first).unwrap(), 1);
    /// assert_eq!(rt.block_on(past).unwrap(), 3);
    /// ```
    pub fn start_unbounded(self) -> JoinHandle<F::Output> {
        match self.start_with(true) {
            Ok(task) => JoinHandle::new(task),
            Err(error) => JoinHandle::refused(error.into_join_error()),
        }
    }

    /// Starts the task now and lets it run on its own; its output is dropped.
    ///
    /// A detached task has no handle to report a refusal to, so a full
    /// queue does not refuse it: it is queued beyond
    /// [`Builder::max_queued`](crate::Builder::max_queued) (library code
    /// such as hyper's executor spawns this way, and dropping its
    /// connection tasks silently would be worse). Use `.await` or
    /// [`try_start`](Self::try_start) where the bound must hold. Other
    /// refusals (shut down, unknown pool, priority not served) still drop
    /// the task.
    pub fn detach(self) {
        if let Ok(task) = self.start_with(true) {
            task.detach();
        }
    }

    /// Every way of starting ends here; `force`: past the queue bound.
    #[inline(always)]
    fn start_with(self, force: bool) -> Result<RawTask<F::Output>, SpawnError> {
        let Spawn {
            future,
            target,
            mut options,
            extras,
        } = self;
        let spawned = if extras.is_some() {
            Spawn {
                future,
                target,
                options,
                extras,
            }
            .start_with_extras(force)
        } else {
            // `extras` is `None`: forgetting it spares a call to its drop
            // glue, which the compiler keeps although it does nothing here
            // (measured with callgrind: ~13 instructions a spawn).
            std::mem::forget(extras);
            // The common case, kept short: no extras, the target's own
            // pool (no limits of its own to move or drop).
            let enqueue = Enqueue::Schedule;
            let spawned = match target {
                Target::Current => with_current_pool(|pool| {
                    spawn_checked(pool, future, &mut options, Limits::NONE, force, enqueue)
                }),
                Target::Handle(handle) => spawn_checked(
                    handle.pool(),
                    future,
                    &mut options,
                    Limits::NONE,
                    force,
                    enqueue,
                ),
            };
            spawned.map(Spawned::finish)
        };
        spawned.map_err(|(error, future)| {
            // Dropped here, outside the runtime context's borrow: its
            // destructor is user code (see `runtime::context`).
            drop(future);
            error
        })
    }

    /// [`start_with`](Self::start_with) of a spawn with extras.
    #[inline(never)]
    fn start_with_extras(self, force: bool) -> Result<RawTask<F::Output>, (SpawnError, F)> {
        let Parts {
            future,
            target,
            mut options,
            pool,
            limits,
            after,
        } = self.into_parts();
        let enqueue = if after.is_some() {
            Enqueue::Held
        } else {
            Enqueue::Schedule
        };
        let spawned = match (pool, target) {
            (None, Target::Current) => with_current_pool(|pool| {
                spawn_checked(pool, future, &mut options, limits, force, enqueue)
            }),
            (None, Target::Handle(handle)) => {
                spawn_checked(handle.pool(), future, &mut options, limits, force, enqueue)
            }
            (Some(name), target) => with_pool(target, Some(&name), |resolved| match resolved {
                Ok(pool) => spawn_checked(pool, future, &mut options, limits, force, enqueue),
                Err(error) => Err((error, future)),
            }),
        };
        spawned.map(|spawned| finish(spawned, after))
    }
}

/// Queues the task just spawned, or holds it until the tasks of `after`
/// have ended.
#[inline(always)]
fn finish<T>(spawned: Spawned<T>, after: Option<After>) -> RawTask<T> {
    match after {
        None => spawned.finish(),
        Some(after) => spawned.finish_after(after),
    }
}

/// Spawns on `pool` if it admits the task. A refused future is handed
/// back, for the caller to drop outside any borrow of the runtime context.
/// An admitted task behind limits that are not free yet waits for them in
/// its first poll (see `limit`).
#[inline(always)]
fn spawn_checked<F>(
    pool: &Arc<Pool>,
    future: F,
    options: &mut SpawnOptions,
    limits: Limits,
    force: bool,
    enqueue: Enqueue,
) -> Result<Spawned<F::Output>, (SpawnError, F)>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match pool.admit(options.priority, options.home, force) {
        // Without limits (the common case) nothing of them is touched, not
        // even a `Gate` to drop.
        Ok(admission) if limits.none_on(pool) => {
            Ok(spawn_on(pool, future, options, admission, enqueue))
        }
        Ok(admission) => Ok(spawn_limited(
            pool, future, options, limits, admission, enqueue,
        )),
        Err(error) => {
            pool.count_refused(options.priority);
            Err((error, future))
        }
    }
}

/// Creates an admitted task behind `limits`. A task held by `Spawn::after`
/// (`Enqueue::Held`) is held first, then passes them in its first poll, so
/// it takes no cell or permit while it waits; another takes what is free
/// now and waits for the rest in its first poll (see `limit`).
#[inline(never)]
fn spawn_limited<F>(
    pool: &Arc<Pool>,
    future: F,
    options: &mut SpawnOptions,
    limits: Limits,
    admission: Admission,
    enqueue: Enqueue,
) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if limits.none_on(pool) {
        return spawn_on(pool, future, options, admission, enqueue);
    }
    let gate = if enqueue == Enqueue::Held {
        limits.deferred(pool.clone(), options.priority)
    } else {
        limits.gate(pool, options.priority)
    };
    match gate {
        Gate::Open => spawn_on(pool, future, options, admission, enqueue),
        gate => spawn_on(pool, gate.wrap(future), options, admission, enqueue),
    }
}

/// Calls `f` with the pool a spawn goes to: the named pool of the target
/// runtime, or the target's own pool.
fn with_pool<R>(
    target: Target,
    name: Option<&str>,
    f: impl FnOnce(Result<&Arc<Pool>, SpawnError>) -> R,
) -> R {
    let pick = |pool: &Arc<Pool>| -> R {
        match name {
            None => f(Ok(pool)),
            Some(name) => match pool.runtime.pool(name) {
                Some(named) => f(Ok(&named)),
                None => f(Err(unknown_pool(pool, name))),
            },
        }
    };
    match target {
        Target::Handle(handle) => pick(handle.pool()),
        Target::Current => with_current_pool(pick),
    }
}

fn unknown_pool(pool: &Pool, name: &str) -> SpawnError {
    SpawnError::rejected(format!(
        "the runtime has no pool named `{name}` (its pools: {})",
        pool.runtime
            .pool_names()
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl<F> IntoFuture for Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, JoinError>;
    type IntoFuture = SpawnFuture<F>;

    /// Starts the task, first waiting for room if its pool's queue is full;
    /// awaiting yields its output.
    fn into_future(self) -> SpawnFuture<F> {
        let Parts {
            future,
            target,
            options,
            pool,
            limits,
            after,
        } = self.into_parts();
        let resolved = with_pool(target, pool.as_deref(), |resolved| resolved.cloned());
        let state = match resolved {
            // A held task passes its limits after its hold, in its first
            // poll (see `Spawn::after`): none are taken here.
            Ok(pool) if after.is_some() => State::Waiting {
                pool,
                spawn: Some((future, options)),
                listener: None,
                wait: None,
                permit: None,
                held: after.map(|after| Box::new((after, limits))),
            },
            Ok(pool) => {
                // Limits first, in this task: the task is created once they
                // let it through.
                let (permit, wait) = match limits.gate(&pool, options.priority) {
                    Gate::Open => (None, None),
                    Gate::Passed(permit) => (Some(permit), None),
                    Gate::Wait(wait) => (None, Some(wait)),
                };
                State::Waiting {
                    pool,
                    spawn: Some((future, options)),
                    listener: None,
                    wait,
                    permit,
                    held: None,
                }
            }
            Err(error) => State::Running(JoinHandle::refused(SpawnError::into_join_error(error))),
        };
        SpawnFuture { state }
    }
}

/// The future of an awaited [`Spawn`]: waits for its limits (see
/// [`Spawn::rate_limit`]), then for room in the pool's queue, starts the
/// task, then yields its output. Dropping it after the task has started
/// detaches the task (as dropping a [`JoinHandle`] does); dropping it while
/// it waits drops the future unstarted (and gives a waiting turn back).
#[must_use = "futures do nothing unless polled"]
pub struct SpawnFuture<F: Future> {
    state: State<F>,
}

enum State<F: Future> {
    Waiting {
        pool: Arc<Pool>,
        spawn: Option<(F, SpawnOptions)>,
        listener: Option<EventListener>,
        /// The limits still to pass, before anything else.
        wait: Option<Wait>,
        /// The concurrency permit the task will hold.
        permit: Option<ConcurrencyPermit>,
        /// A task held by `Spawn::after`: what it waits for, and the limits
        /// it passes once released (in its first poll).
        held: Option<Box<(After, Limits)>>,
    },
    Running(JoinHandle<F::Output>),
}

// The user's future is only moved, never pinned, before it is spawned.
impl<F: Future> Unpin for SpawnFuture<F> {}

impl<F: Future> SpawnFuture<F> {
    /// Aborts the task if it has started and not finished, as
    /// [`JoinHandle::abort`] does; a task still waiting for room has nothing
    /// to abort (dropping the `SpawnFuture` drops its future unstarted).
    /// Used by `task::retry`, whose attempts end with it.
    pub(crate) fn abort(&self) {
        if let State::Running(handle) = &self.state {
            if !handle.is_finished() {
                handle.abort();
            }
        }
    }
}

impl<F> SpawnFuture<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Waits for its limits (unless it is held by `Spawn::after`), then
    /// for room, and starts the task; `Ready` once it has a handle (which
    /// may report a refusal).
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let State::Waiting {
                pool,
                spawn,
                listener,
                wait,
                permit,
                held,
            } = &mut self.state
            else {
                return Poll::Ready(());
            };
            if let Some(waiting) = wait {
                let Poll::Ready(taken) = waiting.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                *permit = taken;
                *wait = None;
            }
            let (_, options) = spawn.as_ref().expect("a waiting spawn holds its future");
            match pool.admit(options.priority, options.home, false) {
                Ok(admission) => {
                    let (future, mut options) = spawn.take().expect("spawned once");
                    let task = match (held.take(), permit.take()) {
                        // Held: its limits were left for its first poll.
                        (Some(held), _) => {
                            let (after, limits) = *held;
                            let enqueue = Enqueue::Held;
                            spawn_limited(pool, future, &mut options, limits, admission, enqueue)
                                .finish_after(after)
                        }
                        (None, None) => {
                            spawn_on(pool, future, &mut options, admission, Enqueue::Schedule)
                                .finish()
                        }
                        (None, Some(permit)) => spawn_on(
                            pool,
                            Limited::holding(future, permit),
                            &mut options,
                            admission,
                            Enqueue::Schedule,
                        )
                        .finish(),
                    };
                    self.state = State::Running(JoinHandle::new(task));
                }
                Err(error) if error.is_full() => match listener {
                    // Listen first, then re-check: a place freed in
                    // between is not missed.
                    None => *listener = pool.listen_for_room(),
                    Some(waiting) => {
                        if Pin::new(waiting).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        *listener = None;
                    }
                },
                Err(error) => {
                    pool.count_refused(options.priority);
                    self.state = State::Running(JoinHandle::refused(error.into_join_error()));
                }
            }
        }
    }

    /// Waits for room, starts the task and hands its handle over (which
    /// may report a refusal): `.await` with backpressure, but keeping the
    /// handle. Used by `TaskGraph`.
    pub(crate) async fn started(mut self) -> JoinHandle<F::Output> {
        std::future::poll_fn(|cx| self.poll_start(cx)).await;
        match self.state {
            State::Running(handle) => handle,
            State::Waiting { .. } => unreachable!("`poll_start` returned once started"),
        }
    }
}

impl<F> Future for SpawnFuture<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.poll_start(cx).is_pending() {
            return Poll::Pending;
        }
        match &mut this.state {
            State::Running(handle) => Pin::new(handle).poll(cx),
            State::Waiting { .. } => unreachable!("`poll_start` returned once started"),
        }
    }
}

impl<F> fmt::Debug for Spawn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawn")
            .field("priority", &self.options.priority)
            .field("name", &self.options.name)
            .field("timeout", &self.options.timeout)
            .field("limits", &self.options.limits)
            .field(
                "pool",
                &self.extras.as_ref().and_then(|extras| extras.pool.as_ref()),
            )
            .field("home", &self.options.home)
            .field("limits", &self.extras.as_ref().map(|extras| &extras.limits))
            .field(
                "after",
                &self.extras.as_ref().map(|extras| extras.after.len()),
            )
            .finish_non_exhaustive()
    }
}

impl<F: Future> fmt::Debug for SpawnFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { wait: Some(_), .. } => "waiting for its limits",
            State::Waiting { .. } => "waiting for room",
            State::Running(_) => "started",
        };
        f.debug_struct("SpawnFuture")
            .field("state", &state)
            .finish()
    }
}

/// What [`Spawn::after`] waits for: a task named by its [`JoinHandle`] or
/// an [`AbortHandle`] (borrowed), or by its [`Id`].
///
/// Sealed: the crate implements it for the handles that name a task.
pub trait Dependency: sealed::Sealed {}

impl<D: sealed::Sealed> Dependency for D {}

pub(crate) mod sealed {
    use super::{AbortHandle, Id, JoinHandle};

    /// Implemented by what names a task; a new kind of handle needs one
    /// line here.
    pub trait Sealed {
        /// The id of the task to wait for, entered in the dependency index;
        /// `None` if there is nothing to wait for (it has ended, or was
        /// never created).
        fn dependency_id(&self) -> Option<Id>;
    }

    impl<T> Sealed for &JoinHandle<T> {
        fn dependency_id(&self) -> Option<Id> {
            JoinHandle::dependency_id(self)
        }
    }

    impl Sealed for &AbortHandle {
        fn dependency_id(&self) -> Option<Id> {
            AbortHandle::dependency_id(self)
        }
    }

    impl Sealed for Id {
        fn dependency_id(&self) -> Option<Id> {
            Some(*self)
        }
    }
}
