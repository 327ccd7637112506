//! The blocking pool: threads for `spawn_blocking`, started on demand.
//!
//! One per runtime, shared by its pools. Invariants:
//! * `threads <= max_threads`; a thread is started only when a task is
//!   queued and no thread is idle, so the pool is as small as the load.
//! * An idle thread exits after `keep_alive` without work; a `keep_alive`
//!   too long to be added to the present (`Duration::MAX`) means never, so
//!   no deadline arithmetic can overflow.
//! * The queue holds at most `max_queued` tasks; a task beyond that is
//!   cancelled at once with a rejection its handle reports.
//! * After `shutdown` every queued task is cancelled (its handle reports
//!   the shutdown) and every task pushed later is cancelled on the spot;
//!   running closures cannot be interrupted and are waited for.
//! * A thread runs its tasks inside their runtime (entered at its first
//!   task), so `spawn` and `Handle::current` in a closure are the runtime's.
//! * With feature `test-util`, a task counts as active paused-time work
//!   from the moment it is queued until it has run or was cancelled unrun,
//!   so paused time never jumps ahead of blocking code (tokio behaves the
//!   same; see `runtime::time::paused`).

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use super::run_blocking;
use crate::runtime::hooks::RuntimeHooks;
use crate::runtime::task::{cancel, run_cancelled, Runnable};
#[cfg(feature = "test-util")]
use crate::runtime::time::paused::BlockingCount;
use crate::runtime::{context, EnterGuard, Handle};
use crate::sync::{Arc, Condvar, OnceLock, RtMutex as Mutex};

/// Ends a blocking thread's count, also when a hook panicked or never ran
/// the thread's body, and wakes a shutdown waiting for it.
struct ThreadExit<'a> {
    pool: &'a BlockingPool,
    /// Set when `work` already stopped counting the thread.
    counted_out: bool,
}

impl Drop for ThreadExit<'_> {
    fn drop(&mut self) {
        if !self.counted_out {
            self.pool.state.lock().threads -= 1;
        }
        self.pool.condvar.notify_all();
    }
}

/// Cancels a task taken from the queue unrun.
fn cancel_queued(runnable: Runnable) {
    #[cfg(feature = "test-util")]
    BlockingCount::cancelled(&runnable);
    run_cancelled(runnable);
}

/// How a blocking pool is configured; validated by the runtime builder.
#[derive(Debug, Clone)]
pub(crate) struct BlockingConfig {
    pub(crate) max_threads: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) max_queued: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
}

pub(crate) struct BlockingPool {
    state: Mutex<State>,
    /// Signals idle threads (work queued, shutdown) and the shutdown waiter
    /// (a thread exited).
    condvar: Condvar,
    config: BlockingConfig,
    /// Set once the runtime exists (threads run inside its `wrap_thread`
    /// hooks).
    hooks: OnceLock<RuntimeHooks>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Runnable>,
    threads: usize,
    idle: usize,
    /// Idle threads told to take a task (so two pushes wake two threads).
    notified: usize,
    shutdown: bool,
    next_id: usize,
    /// Threads still running, to join at shutdown.
    handles: Vec<thread::JoinHandle<()>>,
}

impl BlockingPool {
    pub(crate) fn new(config: BlockingConfig) -> Self {
        BlockingPool {
            state: Mutex::new(State::default()),
            condvar: Condvar::new(),
            config,
            hooks: OnceLock::new(),
        }
    }

    pub(crate) fn set_hooks(&self, hooks: RuntimeHooks) {
        let _ = self.hooks.set(hooks);
    }

    /// Queues a blocking task, starting a thread for it if none is idle.
    pub(crate) fn push(self: &Arc<Self>, runnable: Runnable) {
        let mut state = self.state.lock();
        if state.shutdown {
            drop(state);
            run_cancelled(runnable);
            return;
        }
        if self
            .config
            .max_queued
            .is_some_and(|max| state.queue.len() >= max)
        {
            drop(state);
            runnable.metadata().set_cancel(cancel::BLOCKING_FULL);
            run_cancelled(runnable);
            return;
        }
        // Counted until it has run (or is cancelled unrun): paused time
        // does not advance meanwhile (see `runtime::time::paused`).
        #[cfg(feature = "test-util")]
        BlockingCount::queued(&runnable);
        state.queue.push_back(runnable);
        if state.idle > state.notified {
            state.notified += 1;
            drop(state);
            self.condvar.notify_one();
            return;
        }
        if state.threads >= self.config.max_threads {
            // Every thread is busy: the task waits its turn.
            return;
        }
        state.threads += 1;
        let id = state.next_id;
        state.next_id += 1;
        let mut builder = thread::Builder::new().name(format!("{}-{id}", self.config.thread_name));
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let pool = self.clone();
        match builder.spawn(move || pool.run_thread()) {
            Ok(handle) => {
                state.handles.retain(|handle| !handle.is_finished());
                state.handles.push(handle);
            }
            Err(err) => {
                state.threads -= 1;
                if state.threads == 0 {
                    // Nobody will ever run what is queued: refuse it, so
                    // the handles say why rather than wait forever.
                    let queued: Vec<Runnable> = state.queue.drain(..).collect();
                    drop(state);
                    eprintln!("multipool: could not start a blocking thread: {err}");
                    for runnable in queued {
                        runnable.metadata().set_cancel(cancel::NO_THREAD);
                        cancel_queued(runnable);
                    }
                }
            }
        }
    }

    fn run_thread(&self) {
        let mut exit = ThreadExit {
            pool: self,
            counted_out: false,
        };
        match self.hooks.get() {
            Some(hooks) => hooks.wrapped(|| self.work(&mut exit.counted_out)),
            None => self.work(&mut exit.counted_out),
        }
    }

    /// Runs queued tasks until shutdown, or `keep_alive` without work. The
    /// thread stops counting in `threads` under the same lock as it decides
    /// to stop, so a `push` either sees it gone (and starts another) or
    /// finds its task taken by it.
    fn work(&self, counted_out: &mut bool) {
        // The runtime this thread's tasks belong to, entered at the first
        // task for the thread's whole life (every blocking task of a
        // runtime belongs to its default pool).
        let mut entered: Option<EnterGuard> = None;
        let mut state = self.state.lock();
        loop {
            if let Some(runnable) = state.queue.pop_front() {
                drop(state);
                if entered.is_none() {
                    let pool = runnable.metadata().pool.clone();
                    entered = Some(context::enter(Handle::from_pool(pool)));
                }
                // The task catches its own panics (see `task`).
                run_blocking(runnable);
                state = self.state.lock();
                continue;
            }
            if state.shutdown {
                state.threads -= 1;
                *counted_out = true;
                return;
            }
            state.idle += 1;
            // `None`: a keep-alive past what `Instant` can hold never ends.
            let deadline = Instant::now().checked_add(self.config.keep_alive);
            let mut timed_out = false;
            while state.notified == 0 && !state.shutdown {
                state = match deadline {
                    None => self.condvar.wait(state).unwrap_or_else(|e| e.into_inner()),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            timed_out = true;
                            break;
                        }
                        self.condvar
                            .wait_timeout(state, deadline - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            state.idle -= 1;
            if state.notified > 0 {
                state.notified -= 1;
            } else if timed_out && state.queue.is_empty() {
                state.threads -= 1;
                *counted_out = true;
                return;
            }
        }
    }

    /// Number of blocking threads running (busy or idle).
    pub(crate) fn num_threads(&self) -> usize {
        self.state.lock().threads
    }

    /// Number of blocking tasks waiting for a thread.
    pub(crate) fn queue_depth(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Cancels every queued task and refuses new ones; waits for the running
    /// closures until `deadline` (`None`: for as long as they run). Returns
    /// whether every thread finished.
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) -> bool {
        let queued: Vec<Runnable> = {
            let mut state = self.state.lock();
            state.shutdown = true;
            state.queue.drain(..).collect()
        };
        self.condvar.notify_all();
        for runnable in queued {
            cancel_queued(runnable);
        }
        let current = thread::current().id();
        let mut state = self.state.lock();
        // A blocking task that shuts the runtime down cannot wait for its
        // own thread.
        let own = usize::from(
            state
                .handles
                .iter()
                .any(|handle| handle.thread().id() == current),
        );
        while state.threads > own {
            state = match deadline {
                None => self.condvar.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.condvar
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        let handles = std::mem::take(&mut state.handles);
        drop(state);
        for handle in handles {
            if handle.thread().id() != current {
                // Each has left `work` and only returns.
                let _ = handle.join();
            }
        }
        true
    }
}
