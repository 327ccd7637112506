//! What a starting worker reports: its parts handed over by the slot, the
//! latch a build waits on, and the loud end of a worker loop that unwound.

use crossbeam_deque::Worker as Deque;

use super::local::Local;
use crate::priority::PerLevel;
use crate::runtime::task::Runnable;
use crate::sync::{Arc, Condvar, RtMutex as Mutex};

/// A worker's own ends of its queues and parker, and the user's state of
/// its slot; kept in its slot while no thread runs the worker.
pub(crate) struct WorkerParts {
    pub(crate) index: usize,
    pub(crate) queues: PerLevel<Deque<Runnable>>,
    pub(crate) parker: parking::Parker,
    pub(crate) state: Option<super::state::State>,
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
    pub(super) touch: bool,
}

impl WarmUp {
    pub(crate) fn new(latch: Option<Latch>, touch: bool) -> Self {
        WarmUp { latch, touch }
    }

    pub(super) fn done(&mut self) {
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

/// Touches [`PREWARM_STACK`] bytes of stack, in a frame of its own: inlined
/// into `run`, the array would take that much of every worker's stack for
/// the thread's whole life, pre-warmed or not.
#[inline(never)]
pub(super) fn touch_stack() {
    let mut stack = [0u8; PREWARM_STACK];
    std::hint::black_box(&mut stack);
}

/// The worker loop unwound: report it loudly and shut the pool down, so
/// that every task's handle resolves (with a shutdown error) instead of
/// waiting on a worker that is gone. The caller then cancels its own queues
/// as on any exit.
#[cold]
pub(super) fn worker_panicked(local: &Local, payload: Box<dyn std::any::Any + Send>) {
    let message = crate::error::panic_message(&*payload)
        .unwrap_or("a panic without a message")
        .to_owned();
    crate::runtime::task::drop_quietly(payload);
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
