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
//! * `park` (at most one) runs on an idle worker instead of its default
//!   sleep; see `pool::park` for its contract. `busy_tick` (at most one)
//!   runs on a busy worker between two polls, once per injector check
//!   (about every 100 µs of polling, or after every poll longer than that);
//!   a panic in either is caught and printed, and that worker stops calling
//!   the hook.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::pool::park::Park;
use crate::sync::Arc;

type Wrapper = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;
pub(crate) type ParkHook = Arc<dyn Fn(&Park<'_>) + Send + Sync>;

/// The hooks of one runtime.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) wrap_thread: Vec<Wrapper>,
    pub(crate) on_thread_start: Vec<Hook>,
    pub(crate) on_thread_stop: Vec<Hook>,
    pub(crate) on_shutdown: Vec<Hook>,
    pub(crate) park: Option<ParkHook>,
    pub(crate) busy_tick: Option<Hook>,
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

/// Calls `body` inside `wrappers[0]`, inside `wrappers[1]`, and so on.
fn wrap(wrappers: &[Wrapper], body: &mut dyn FnMut()) {
    match wrappers.split_first() {
        None => body(),
        Some((outer, inner)) => outer(&mut || wrap(inner, body)),
    }
}

fn run_all(name: &str, hooks: &[Hook]) {
    for hook in hooks {
        if catch_unwind(AssertUnwindSafe(|| hook())).is_err() {
            eprintln!("multipool: a `Builder::{name}` hook panicked; the panic was caught");
        }
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
            .finish()
    }
}
