//! What this thread knows about the task whose future it is polling: which
//! task (`task::id`, a cancelled task's reason, the rate limiter's
//! priority) and the poll's cooperative budget (`coop`).
//!
//! Why one thread-local for both: the task wrapper sets both at the start
//! of every poll and restores both after it, and a thread-local access is
//! not free. Kept apart they cost 16 instructions a poll (callgrind,
//! `hotpath_probe yield`, measured by leaving both out); together, one
//! load and one store each way.
//!
//! Invariants:
//! * `task` points at the metadata of the task whose future is being
//!   polled (or dropped) on this thread, and is null otherwise.
//! * `budget` is as `coop` describes: [`Budget::INITIAL`] at the start of
//!   each poll of a pool task, unconstrained everywhere else.
//! * A task's usual poll ([`PollScope`]) never runs inside another one on
//!   the same thread: tasks are polled only by the worker loop, the
//!   blocking threads and paused time's driver, none of which runs inside
//!   a task's poll. (`block_on` inside a task polls a plain future, not a
//!   task.) So [`PollScope`] starts from [`Scope::OUTSIDE`] and returns to
//!   it, with no value saved: two stores a poll instead of two loads, two
//!   spills and four stores (callgrind, `hotpath_probe yield`: 6
//!   instructions a poll). A debug build checks the claim.
//! * What can run inside a poll, a cancelled task's drop (`CurrentTask`)
//!   and `coop::unconstrained` (`BudgetGuard`), saves and restores what it
//!   replaced, so those guards nest inside a poll and inside each other.

use std::cell::Cell;
use std::{mem, ptr};

use super::coop::Budget;
use super::TaskMeta;

#[derive(Clone, Copy)]
struct Scope {
    task: *const TaskMeta,
    budget: Budget,
}

impl Scope {
    /// Outside any task's poll.
    const OUTSIDE: Scope = Scope {
        task: ptr::null(),
        budget: Budget::UNCONSTRAINED,
    };
}

thread_local! {
    /// See the module docs. `const`-initialised and without a destructor,
    /// so every access is a plain load or store.
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::OUTSIDE) };
}

/// The task and the budget of one poll of a task, set until dropped; then
/// this thread is outside any task again (see the module docs: such polls
/// never nest).
pub(crate) struct PollScope {
    // Not `Send`: it must be dropped on the thread it entered.
    _thread: std::marker::PhantomData<*const ()>,
}

impl PollScope {
    #[inline]
    pub(crate) fn enter(task: &TaskMeta, budget: Budget) -> PollScope {
        // (A thread being torn down has no scope to set.)
        let _ = SCOPE.try_with(|cell| {
            debug_assert!(
                cell.get().task.is_null(),
                "a task's poll inside another task's poll on one thread"
            );
            cell.set(Scope { task, budget });
        });
        PollScope {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for PollScope {
    #[inline]
    fn drop(&mut self) {
        let _ = SCOPE.try_with(|cell| cell.set(Scope::OUTSIDE));
    }
}

/// Applies `f` to this thread's scope, in one access to the
/// thread-local; `torn_down` is what a thread being torn down (its
/// thread-locals gone) gets instead.
#[inline]
fn update<R>(torn_down: R, f: impl FnOnce(&mut Scope) -> R) -> R {
    SCOPE
        .try_with(|cell| {
            let mut scope = cell.get();
            let result = f(&mut scope);
            cell.set(scope);
            result
        })
        .unwrap_or(torn_down)
}

/// The task polled on this thread (null if none).
#[inline]
pub(super) fn task() -> *const TaskMeta {
    SCOPE
        .try_with(|cell| cell.get().task)
        .unwrap_or(ptr::null())
}

/// Sets the task polled on this thread; returns the one before.
#[inline]
pub(super) fn replace_task(task: *const TaskMeta) -> *const TaskMeta {
    update(ptr::null(), |scope| mem::replace(&mut scope.task, task))
}

/// This thread's budget, unconstrained on a thread being torn down.
#[inline]
pub(super) fn budget() -> Budget {
    SCOPE
        .try_with(|cell| cell.get().budget)
        .unwrap_or(Budget::UNCONSTRAINED)
}

/// Applies `f` to this thread's budget in one access (a leaf future taking
/// or giving back a unit); `torn_down` as for [`update`].
#[inline]
pub(super) fn update_budget<R>(torn_down: R, f: impl FnOnce(&mut Budget) -> R) -> R {
    update(torn_down, |scope| f(&mut scope.budget))
}

/// Sets this thread's budget; returns the one before.
#[inline]
pub(super) fn replace_budget(budget: Budget) -> Budget {
    update_budget(Budget::UNCONSTRAINED, |current| {
        mem::replace(current, budget)
    })
}
