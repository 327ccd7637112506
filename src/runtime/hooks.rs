//! User code that a runtime runs at fixed points in its threads' lives.
//!
//! Set on the [`Builder`](super::Builder); shared by every pool of the
//! runtime. Invariants:
//!
//! * `wrap_thread` wrappers run outermost, in the order they were added (the
//!   first added is the outermost), around a worker thread's whole life and
//!   around every `Runtime::block_on`/`Handle::block_on`. A wrapper must call
//!   the body it is given exactly once; one that does not is reported with a
//!   panic naming the hook, never a silent hang.
//! * `on_thread_start` runs on a worker thread inside the wrappers, before
//!   the worker takes its first task, with `multipool::worker_index()`
//!   already set; `on_thread_stop` runs on it after its last task. A panic in
//!   either is caught and printed: a hook cannot take a worker down.
//! * `on_shutdown` runs once, after the runtime's workers have stopped and
//!   every task was cancelled.
//! * Shutdown drops every hook right after the `on_shutdown` hooks ran (see
//!   [`RuntimeHooks`]). A hook may own what keeps the runtime alive (a
//!   reactor holding a cancelled task's waker, a `Handle`): the runtime
//!   holds its hooks, so keeping them past shutdown would leak the runtime
//!   through that cycle. A thread still running then (a blocking call past
//!   a shutdown timeout, a worker that dropped its own runtime) keeps the
//!   hooks it started with until it ends.
//! * `park` (at most one) runs on an idle worker instead of its default
//!   sleep; see `scheduler::park` for its contract. `busy_tick` (at most one)
//!   runs on a busy worker between two polls, once per injector check
//!   (about every 100 µs of polling, or after every poll longer than that);
//!   a panic in either is caught and printed, and that worker stops calling
//!   the hook.

use std::fmt;

use crate::runtime::guard::guard_user;
use crate::runtime::scheduler::park::Park;
use crate::runtime::task::TaskHooks;
use crate::sync::{Arc, RtMutex as Mutex};

type Wrapper = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;
pub(crate) type ParkHook = Arc<dyn Fn(&Park<'_>) + Send + Sync>;

/// The hooks of one runtime, as the builder collects them.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) wrap_thread: Vec<Wrapper>,
    pub(crate) on_thread_start: Vec<Hook>,
    pub(crate) on_thread_stop: Vec<Hook>,
    pub(crate) on_shutdown: Vec<Hook>,
    pub(crate) park: Option<ParkHook>,
    pub(crate) busy_tick: Option<Hook>,
    /// Hooks around tasks' lives (see `task::info`).
    pub(crate) task: TaskHooks,
}

impl Hooks {
    /// Runs `body` inside every `wrap_thread` wrapper.
    ///
    /// # Panics
    ///
    /// Panics if a wrapper returns without calling its body.
    pub(crate) fn wrapped<R>(&self, body: impl FnOnce() -> R) -> R {
        if self.wrap_thread.is_empty() {
            return body();
        }
        let mut body = Some(body);
        let mut output = None;
        let mut run = || {
            if let Some(body) = body.take() {
                output = Some(body());
            }
        };
        wrap(&self.wrap_thread, &mut run);
        output
            .expect("a `Builder::wrap_thread` hook returned without calling the body it was given")
    }

    pub(crate) fn thread_started(&self) {
        run_all("on_thread_start", &self.on_thread_start);
    }

    pub(crate) fn thread_stopping(&self) {
        run_all("on_thread_stop", &self.on_thread_stop);
    }

    pub(crate) fn shut_down(&self) {
        run_all("on_shutdown", &self.on_shutdown);
    }
}

/// The hooks of a running runtime, until its shutdown drops them.
///
/// Clones share one set: the runtime holds one, its blocking pool another,
/// and [`shut_down`](Self::shut_down) empties it for both. Each use takes a
/// snapshot (an `Arc` of the set) under a short lock and runs the hooks
/// outside it, so a hook may spawn, block or shut a runtime down; a thread
/// that holds a snapshot keeps those hooks alive until it lets go, and
/// after shutdown new users find no hooks at all.
#[derive(Clone)]
pub(crate) struct RuntimeHooks(Arc<Mutex<Option<Arc<Hooks>>>>, bool);

impl RuntimeHooks {
    pub(crate) fn new(hooks: Hooks) -> Self {
        // Whether there are `wrap_thread` wrappers, fixed at build: every
        // `block_on` asks, and without wrappers it need not lock.
        let wraps = !hooks.wrap_thread.is_empty();
        RuntimeHooks(Arc::new(Mutex::new(Some(Arc::new(hooks)))), wraps)
    }

    /// The hooks, unless the runtime has shut down. A worker takes this
    /// once for its whole life, so that it runs its `on_thread_stop` hooks
    /// even if it is the thread that shut the runtime down.
    pub(crate) fn get(&self) -> Option<Arc<Hooks>> {
        self.0.lock().clone()
    }

    /// Whether the runtime has a park hook (always `false` after shutdown).
    pub(crate) fn has_park(&self) -> bool {
        self.0
            .lock()
            .as_ref()
            .is_some_and(|hooks| hooks.park.is_some())
    }

    /// Runs `body` inside every `wrap_thread` wrapper, or bare after
    /// shutdown; see [`Hooks::wrapped`].
    pub(crate) fn wrapped<R>(&self, body: impl FnOnce() -> R) -> R {
        if !self.1 {
            return body();
        }
        match self.get() {
            Some(hooks) => hooks.wrapped(body),
            None => body(),
        }
    }

    /// Runs the `on_shutdown` hooks, then drops every hook this runtime
    /// holds. Called once, last in shutdown: after every worker stopped and
    /// every task was cancelled, so nothing runs a hook any more except
    /// threads that took a snapshot earlier. Later calls do nothing.
    pub(crate) fn shut_down(&self) {
        // Taken under the lock, run and dropped outside it: dropping a
        // hook runs user code (the `Drop` of what it captured), which may
        // wake tasks or drop the last handle of this very runtime.
        let Some(hooks) = self.0.lock().take() else {
            return;
        };
        hooks.shut_down();
        guard_user("dropping a `Builder` hook", move || drop(hooks));
    }
}

/// Calls `body` inside `wrappers[0]`, inside `wrappers[1]`, and so on.
fn wrap(wrappers: &[Wrapper], body: &mut dyn FnMut()) {
    match wrappers.split_first() {
        None => body(),
        Some((outer, inner)) => outer(&mut || wrap(inner, body)),
    }
}

fn run_all(name: &str, hooks: &[Hook]) {
    for hook in hooks {
        guard_user(format_args!("a `Builder::{name}` hook"), || {
            crate::fault::hit("hook");
            hook()
        });
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("wrap_thread", &self.wrap_thread.len())
            .field("on_thread_start", &self.on_thread_start.len())
            .field("on_thread_stop", &self.on_thread_stop.len())
            .field("on_shutdown", &self.on_shutdown.len())
            .field("park", &self.park.is_some())
            .field("busy_tick", &self.busy_tick.is_some())
            .field("task", &self.task)
            .finish()
    }
}
