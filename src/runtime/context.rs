//! The runtime entered on the current thread.
//!
//! Workers enter their runtime for their whole life; `Runtime::block_on` and
//! `Handle::enter` enter it for a scope. [`with_current_pool`] is how
//! `multipool::spawn` finds where to put a task without cloning a handle.
//!
//! Invariants:
//! * entered runtimes nest: an [`EnterGuard`] is dropped in the reverse
//!   order of its creation, or its drop panics (as tokio's does), naming
//!   the mistake instead of silently restoring the wrong runtime.
//! * no user code runs while [`with_current_pool`] holds its borrow of the
//!   current handle. The one way a spawn could run user code is by
//!   cancelling a task it could not queue (the pool closed meanwhile),
//!   which drops the task's future; such cancellations are deferred (see
//!   [`cancel`]) and run once the borrow is released, so a destructor that
//!   enters a runtime or spawns works as anywhere else.
//! * a cancelled task's future is never dropped inside another one's
//!   drop on the same thread: a cancellation that starts meanwhile (a
//!   destructor that wakes a task of a closed pool) is deferred the same
//!   way and runs once that drop has returned, outside whatever lock the
//!   destructor held. The outermost scope runs the deferred ones, each
//!   in a scope of its own, in a loop (no recursion).

use std::cell::{Cell, RefCell};

use super::scheduler::Pool;
use super::task::{run_one_cancelled, Runnable};
use super::{global, Handle};
use crate::error::TryCurrentError;
use crate::sync::Arc;

/// This thread's runtime context.
struct Context {
    current: RefCell<Option<Handle>>,
    /// Number of live `EnterGuard`s on this thread.
    depth: Cell<usize>,
    /// Set while `with_current_pool` runs its callback (and holds a borrow
    /// of `current`), or while a cancelled task's future is dropped.
    in_spawn: Cell<bool>,
    /// Tasks to cancel once that scope ends; see [`cancel`].
    deferred: RefCell<Vec<Runnable>>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            current: RefCell::new(None),
            depth: Cell::new(0),
            in_spawn: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
        }
    };
}

/// Restores the previously entered runtime when dropped.
///
/// Returned by [`Handle::enter`]. Guards must be dropped in the reverse order
/// of their creation.
///
/// # Panics
///
/// Dropping a guard while a guard created after it is still alive panics
/// (unless the thread is already panicking).
#[derive(Debug)]
#[must_use = "the runtime is only entered while the guard lives"]
pub struct EnterGuard {
    previous: Option<Handle>,
    /// The number of guards alive on this thread once this one was made.
    depth: usize,
    /// `EnterGuard` must stay on the thread that created it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let in_order = CONTEXT
            .try_with(|cx| {
                let in_order = cx.depth.get() == self.depth;
                cx.depth.set(self.depth - 1);
                *cx.current.borrow_mut() = previous;
                in_order
            })
            .unwrap_or(true);
        if !in_order && !std::thread::panicking() {
            panic!(
                "`multipool::EnterGuard` values dropped out of order: the guards returned by \
                 `Handle::enter` must be dropped in the reverse order of their creation"
            );
        }
    }
}

/// Makes `handle` the current runtime of this thread until the guard drops.
pub(crate) fn enter(handle: Handle) -> EnterGuard {
    let (previous, depth) = CONTEXT.with(|cx| {
        let previous = cx.current.borrow_mut().replace(handle);
        let depth = cx.depth.get() + 1;
        cx.depth.set(depth);
        (previous, depth)
    });
    EnterGuard {
        previous,
        depth,
        _not_send: std::marker::PhantomData,
    }
}

pub(crate) fn try_current() -> Result<Handle, TryCurrentError> {
    CONTEXT
        .try_with(|cx| cx.current.borrow().clone())
        .ok()
        .flatten()
        .ok_or_else(TryCurrentError::new)
}

/// Calls `f` with the pool of the current runtime, or of the global runtime
/// when none is entered. `f` must not run user code (see the module docs).
pub(crate) fn with_current_pool<R>(f: impl FnOnce(&Arc<Pool>) -> R) -> R {
    let mut f = Some(f);
    let entered = CONTEXT
        .try_with(|cx| {
            let current = cx.current.borrow();
            let handle = current.as_ref()?;
            let in_spawn = InSpawn {
                cx,
                outer: cx.in_spawn.replace(true),
            };
            let result = (f.take().expect("called once"))(handle.pool());
            drop(in_spawn);
            drop(current);
            run_deferred(cx);
            Some(result)
        })
        .ok()
        .flatten();
    match entered {
        Some(result) => result,
        None => (f.take().expect("called once"))(global::handle().pool()),
    }
}

/// Clears `Context::in_spawn` when the scope ends, or unwinds.
struct InSpawn<'a> {
    cx: &'a Context,
    outer: bool,
}

impl Drop for InSpawn<'_> {
    fn drop(&mut self) {
        self.cx.in_spawn.set(self.outer);
    }
}

/// Cancels the tasks deferred while the scope ran, each in a scope of its
/// own (what they defer in turn is run by this same loop).
#[cold]
fn run_deferred_slow(cx: &Context) {
    loop {
        let Some(runnable) = cx.deferred.borrow_mut().pop() else {
            return;
        };
        cancel_in_scope(cx, runnable);
    }
}

/// Cancels `runnable` in a scope of its own: what its drop cancels in
/// turn is deferred until it is done.
fn cancel_in_scope(cx: &Context, runnable: Runnable) {
    let scope = InSpawn {
        cx,
        outer: cx.in_spawn.replace(true),
    };
    run_one_cancelled(runnable);
    drop(scope);
}

#[inline]
fn run_deferred(cx: &Context) {
    // Only the outermost scope cancels: an inner one still runs under the
    // outer one's borrow, or inside its drop.
    if !cx.in_spawn.get() && !cx.deferred.borrow().is_empty() {
        run_deferred_slow(cx);
    }
}

/// Called by `run_cancelled`: inside a [`with_current_pool`] callback or
/// another cancelled task's drop, the task is kept to be cancelled once
/// that scope ends; elsewhere it is cancelled now, in a scope of its own,
/// and what its drop deferred runs after it (see the module docs).
pub(crate) fn cancel(runnable: Runnable) {
    let mut runnable = Some(runnable);
    let _ = CONTEXT.try_with(|cx| {
        let runnable = runnable.take().expect("taken once");
        if cx.in_spawn.get() {
            cx.deferred.borrow_mut().push(runnable);
            return;
        }
        cancel_in_scope(cx, runnable);
        run_deferred(cx);
    });
    // The thread-local is gone (the thread is ending): at once.
    if let Some(runnable) = runnable {
        run_one_cancelled(runnable);
    }
}
