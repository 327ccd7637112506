//! What the runtime tells user code about a task: [`TaskInfo`], the
//! [`Outcome`] it ended with, and the task hooks that receive them.
//!
//! Invariants:
//! * Hooks cost nothing when none is set: each pool copies, at build, what
//!   it observes ([`Observe`]); each task copies at spawn whether its polls
//!   are observed ([`Observe::polls`], in the wrapper's one byte of poll
//!   extras, checked once per poll), and the lifecycle and panic hooks are
//!   checked where they fire (`Observe::lifecycle`, `Observe::panics`).
//! * For each task, the hooks fire in order: `on_task_spawn` once, before
//!   the task can be polled; `on_before_task_poll`/`on_after_task_poll`
//!   around every poll; `on_task_terminate` once, after its future was
//!   dropped. A panic in a hook is caught and printed (see `guard_user`);
//!   the task is unaffected.
//! * A worker reaches the hooks through the snapshot it holds for its whole
//!   life (see `RuntimeHooks::get`), published on its thread in
//!   [`THREAD_HOOKS`]; any other thread takes a snapshot under the
//!   runtime's hooks lock. After shutdown dropped the hooks, none run.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::ptr;
use std::time::Duration;

use super::{Id, TaskMeta};
use crate::alloc::MemoryUsage;
use crate::runtime::guard::guard_user;
use crate::runtime::hooks::Hooks;
use crate::runtime::shared::RuntimeShared;
use crate::sync::Arc;
use crate::Priority;

/// How a task ended; given to
/// [`Builder::on_task_terminate`](crate::Builder::on_task_terminate) and
/// counted per outcome by [`RuntimeMetrics`](crate::RuntimeMetrics).
///
/// Every task ends with exactly one outcome: spawned = completed +
/// cancelled + panicked + timed out + rejected + shut down + memory
/// exceeded + alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The future returned its output.
    Completed,
    /// [`JoinHandle::abort`](crate::JoinHandle::abort) cancelled it, it
    /// went over a CPU limit set with
    /// [`Spawn::cpu_budget`](crate::Spawn::cpu_budget) or
    /// [`Spawn::max_poll`](crate::Spawn::max_poll) (its
    /// [`JoinError`](crate::JoinError) says which), or it was a
    /// [`TaskGraph`](crate::graph::TaskGraph) node cancelled because an
    /// input failed
    /// ([`JoinError::is_dependency_failed`](crate::JoinError::is_dependency_failed)).
    /// These count here, not as outcomes of their own.
    Cancelled,
    /// The future panicked (in `poll` or in its destructor).
    Panicked,
    /// Its [`Spawn::timeout`](crate::Spawn::timeout) passed.
    TimedOut,
    /// The runtime refused it: a full queue, a zero timeout or CPU limit,
    /// no blocking thread.
    Rejected,
    /// The runtime shut down before it finished.
    Shutdown,
    /// It held more memory than its
    /// [`Spawn::memory_limit`](crate::Spawn::memory_limit) at the end of a
    /// poll.
    MemoryExceeded,
}

impl Outcome {
    /// Number of outcomes, for per-outcome counters.
    pub(crate) const COUNT: usize = 7;

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The outcome whose [`index`](Self::index) is `index`.
    pub(crate) fn from_index(index: usize) -> Outcome {
        const ALL: [Outcome; Outcome::COUNT] = [
            Outcome::Completed,
            Outcome::Cancelled,
            Outcome::Panicked,
            Outcome::TimedOut,
            Outcome::Rejected,
            Outcome::Shutdown,
            Outcome::MemoryExceeded,
        ];
        ALL[index]
    }
}

/// What a task hook learns about a task.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// let names = Arc::new(Mutex::new(Vec::new()));
/// let seen = names.clone();
/// let rt = multipool::Runtime::builder()
///     .workers(1)
///     .on_task_spawn(move |task| {
///         seen.lock().unwrap().push((task.name().map(String::from), task.priority()));
///     })
///     .build()
///     .unwrap();
/// rt.block_on(multipool::spawn(async {}).name("job").priority(multipool::Priority::High))
///     .unwrap();
/// assert_eq!(
///     *names.lock().unwrap(),
///     [(Some("job".to_string()), multipool::Priority::High)]
/// );
/// ```
pub struct TaskInfo<'a> {
    meta: &'a TaskMeta,
    schedule_latency: Option<Duration>,
    poll_time: Option<Duration>,
    memory: Option<MemoryUsage>,
}

impl<'a> TaskInfo<'a> {
    pub(crate) fn new(meta: &'a TaskMeta) -> Self {
        TaskInfo {
            meta,
            schedule_latency: None,
            poll_time: None,
            memory: None,
        }
    }

    pub(crate) fn with_latency(
        meta: &'a TaskMeta,
        schedule_latency: Option<Duration>,
        poll_time: Option<Duration>,
    ) -> Self {
        TaskInfo {
            meta,
            schedule_latency,
            poll_time,
            memory: None,
        }
    }

    pub(crate) fn with_memory(mut self, memory: Option<MemoryUsage>) -> Self {
        self.memory = memory;
        self
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.meta.public_id()
    }

    /// The name given with [`Spawn::name`](crate::Spawn::name).
    pub fn name(&self) -> Option<&str> {
        self.meta.name().map(|name| &**name)
    }

    /// The task's priority.
    pub fn priority(&self) -> Priority {
        self.meta.priority()
    }

    /// The name of the pool the task runs in (`"default"` unless
    /// [`Spawn::pool`](crate::Spawn::pool) chose another).
    pub fn pool(&self) -> &str {
        &self.meta.pool.name
    }

    /// Where the task was spawned (the caller of `spawn`, `spawn_local`,
    /// `spawn_blocking`, ...).
    pub fn location(&self) -> &'static Location<'static> {
        self.meta.location()
    }

    /// How long the task waited between its spawn or wake-up and the start
    /// of this poll. Only in the poll hooks, only with
    /// [`Builder::enable_latency_histograms`](crate::Builder::enable_latency_histograms),
    /// and only for the polls it samples (all of them with
    /// [`Builder::latency_sampling(1)`](crate::Builder::latency_sampling)).
    pub fn schedule_latency(&self) -> Option<Duration> {
        self.schedule_latency
    }

    /// How long this poll took. Only in `on_after_task_poll`, with the same
    /// conditions as [`schedule_latency`](Self::schedule_latency).
    pub fn poll_time(&self) -> Option<Duration> {
        self.poll_time
    }

    /// The task's memory: what it holds, the most it held, its limit. Only
    /// for a task spawned with
    /// [`Spawn::memory_limit`](crate::Spawn::memory_limit), and only in
    /// the poll hooks (as the poll begins, or ends) and in
    /// `on_task_terminate` (final: its future was dropped, so `held` is
    /// what it never freed, usually what it handed to others). See
    /// [`alloc`](crate::alloc) for what is charged.
    pub fn memory(&self) -> Option<MemoryUsage> {
        self.memory
    }

    /// The most memory the task held at any moment, in bytes: `memory()`'s
    /// `peak`. In `on_task_terminate`, the task's peak over its whole life.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use multipool::alloc::TaskAlloc;
    ///
    /// #[global_allocator]
    /// static GLOBAL: TaskAlloc = TaskAlloc::system();
    ///
    /// fn main() {
    ///     let peaks = Arc::new(Mutex::new(Vec::new()));
    ///     let seen = peaks.clone();
    ///     let rt = multipool::Runtime::builder()
    ///         .workers(1)
    ///         .on_task_terminate(move |task, _| seen.lock().unwrap().push(task.memory_peak()))
    ///         .build()
    ///         .unwrap();
    ///     rt.block_on(async {
    ///         multipool::spawn(async { drop(vec![0u8; 100_000]) })
    ///             .memory_limit(1 << 20)
    ///             .await
    ///             .unwrap();
    ///         multipool::spawn(async {}).await.unwrap(); // untracked
    ///     });
    ///     let peaks = peaks.lock().unwrap();
    ///     assert!(peaks[0].unwrap() >= 100_000);
    ///     assert_eq!(peaks[1], None);
    /// }
    /// ```
    pub fn memory_peak(&self) -> Option<usize> {
        self.memory.map(|usage| usage.peak)
    }
}

impl fmt::Debug for TaskInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskInfo")
            .field("id", &self.meta.id())
            .field("name", &self.name())
            .field("priority", &self.priority())
            .field("pool", &self.pool())
            .field("location", &self.location())
            .field("schedule_latency", &self.schedule_latency)
            .field("poll_time", &self.poll_time)
            .field("memory", &self.memory)
            .finish()
    }
}

/// What the runtime does when a task panics; see
/// [`Builder::unhandled_panic`](crate::Builder::unhandled_panic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnhandledPanic {
    /// The panic is caught and reported through the task's
    /// [`JoinHandle`](crate::JoinHandle) (and the `on_task_panic` hook);
    /// the runtime goes on. The default, as in tokio.
    #[default]
    Ignore,
    /// The first task panic shuts the runtime down, as
    /// [`Runtime::shutdown_background`](crate::Runtime::shutdown_background)
    /// would: new spawns are refused, and every unfinished task is cancelled
    /// with a shutdown error. The panicking task's handle still reports the
    /// panic.
    ShutdownRuntime,
}

/// A task stuck in one poll, as
/// [`Builder::on_slow_poll`](crate::Builder::on_slow_poll) reports it,
/// while it is still running.
#[derive(Debug, Clone)]
pub struct SlowPoll {
    pub(crate) id: Id,
    pub(crate) name: Option<std::sync::Arc<str>>,
    pub(crate) priority: Priority,
    pub(crate) pool: Box<str>,
    pub(crate) worker: usize,
    pub(crate) elapsed: Duration,
}

impl SlowPoll {
    /// The stuck task's id, for reports. Unlike the other ways of taking an
    /// id, this one does not make the task findable by
    /// [`Spawn::after`](crate::Spawn::after) (the monitor must not touch a
    /// task that may have ended meanwhile): `after` waits for it only if its
    /// id was also taken another way.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The stuck task's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The stuck task's priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The pool of the worker that polls it.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The index of the worker that polls it (see
    /// [`worker_index`](crate::worker_index)).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// How long the poll had lasted when the monitor saw it (at least the
    /// threshold).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

pub(crate) type TaskHook = Arc<dyn Fn(&TaskInfo<'_>) + Send + Sync>;
pub(crate) type TerminateHook = Arc<dyn Fn(&TaskInfo<'_>, Outcome) + Send + Sync>;
pub(crate) type PanicHook = Arc<dyn Fn(&TaskInfo<'_>, &str) + Send + Sync>;
pub(crate) type SlowPollHook = Arc<dyn Fn(&SlowPoll) + Send + Sync>;

/// The task hooks of a runtime, part of its [`Hooks`].
#[derive(Clone, Default)]
pub(crate) struct TaskHooks {
    pub(crate) spawn: Option<TaskHook>,
    pub(crate) terminate: Option<TerminateHook>,
    pub(crate) before_poll: Option<TaskHook>,
    pub(crate) after_poll: Option<TaskHook>,
    pub(crate) panic: Option<PanicHook>,
    pub(crate) slow_poll: Option<(Duration, SlowPollHook)>,
    pub(crate) unhandled_panic: UnhandledPanic,
}

impl TaskHooks {
    /// What the pools of a runtime with these hooks must observe.
    /// `histograms`: with latency histograms, sampling one poll in this many.
    pub(crate) fn observe(&self, histograms: Option<u32>) -> Observe {
        let polls = self.before_poll.is_some() || self.after_poll.is_some();
        Observe {
            histograms: histograms.is_some(),
            sample_one_in: histograms.unwrap_or(1),
            poll_hooks: polls,
            lifecycle: self.spawn.is_some() || self.terminate.is_some(),
            panics: self.panic.is_some() || self.unhandled_panic != UnhandledPanic::Ignore,
        }
    }
}

/// What a pool observes of its tasks, fixed at build. (A task copies
/// [`polls`](Self::polls) into its wrapper at spawn, for the one check of
/// its poll's extras: see `future::extras`.)
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observe {
    pub(crate) histograms: bool,
    /// With `histograms`: one wake-up or spawn in this many is sampled
    /// (see `metrics::sample_due`); at least 1.
    pub(crate) sample_one_in: u32,
    pub(crate) poll_hooks: bool,
    /// `on_task_spawn` or `on_task_terminate`.
    pub(crate) lifecycle: bool,
    /// `on_task_panic` or a panic policy.
    pub(crate) panics: bool,
}

impl Observe {
    /// Whether a poll may need more than the poll: hooks around it, or
    /// timing for the histograms.
    pub(crate) fn polls(&self) -> bool {
        self.poll_hooks || self.histograms
    }
}

thread_local! {
    /// The runtime whose worker runs on this thread, and that worker's
    /// snapshot of its hooks (see the module docs).
    static THREAD_HOOKS: Cell<(*const RuntimeShared, *const Hooks)> =
        const { Cell::new((ptr::null(), ptr::null())) };
}

/// Publishes a worker's hooks on its thread until dropped.
pub(crate) struct ThreadHooks;

impl ThreadHooks {
    /// `hooks` must outlive the returned guard.
    pub(crate) fn publish(runtime: &RuntimeShared, hooks: &Hooks) -> ThreadHooks {
        THREAD_HOOKS.with(|cell| cell.set((runtime, hooks)));
        ThreadHooks
    }
}

impl Drop for ThreadHooks {
    fn drop(&mut self) {
        let _ = THREAD_HOOKS.try_with(|cell| cell.set((ptr::null(), ptr::null())));
    }
}

/// Calls `f` with the task hooks of `runtime`, unless it has shut down.
pub(crate) fn with_task_hooks(runtime: &RuntimeShared, f: impl FnOnce(&TaskHooks)) {
    let (published, hooks) = THREAD_HOOKS
        .try_with(Cell::get)
        .unwrap_or((ptr::null(), ptr::null()));
    if ptr::eq(published, runtime) {
        // SAFETY: a worker publishes its snapshot only while it holds it
        // (the `ThreadHooks` guard is dropped before the snapshot).
        f(unsafe { &(*hooks).task });
    } else if let Some(hooks) = runtime.hooks.get() {
        f(&hooks.task);
    }
}

/// Runs one task hook, containing its panic.
pub(crate) fn run_task_hook(name: &str, f: impl FnOnce()) {
    guard_user(format_args!("a `Builder::{name}` hook"), || {
        crate::fault::hit("hook");
        f()
    });
}

/// The message of a panic payload, as the standard library prints it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "Box<dyn Any>"
    }
}

impl fmt::Debug for TaskHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHooks")
            .field("spawn", &self.spawn.is_some())
            .field("terminate", &self.terminate.is_some())
            .field("before_poll", &self.before_poll.is_some())
            .field("after_poll", &self.after_poll.is_some())
            .field("panic", &self.panic.is_some())
            .field("slow_poll", &self.slow_poll.as_ref().map(|(d, _)| d))
            .field("unhandled_panic", &self.unhandled_panic)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcome_from_index_inverts_index() {
        for index in 0..Outcome::COUNT {
            assert_eq!(Outcome::from_index(index).index(), index);
        }
    }
}
