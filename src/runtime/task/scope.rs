//! What this thread knows about the task whose future it is polling: which
//! task (`task::id`, a cancelled task's reason, the rate limiter's
//! priority) and the poll's cooperative budget (`coop`).
//!
//! Why one thread-local for both: the task wrapper sets both at the start
//! of every poll and resets both after it, and finding a thread-local is
//! not free. Kept apart, each saved and restored, they cost 16
//! instructions a poll (callgrind, `hotpath_probe yield`, measured by
//! leaving both out); now two stores at each end (see the invariants).
//! Two cells rather than one: a leaf future's budget unit reads and
//! writes the budget's byte alone.
//!
//! Invariants:
//! * `task` points at the metadata of the task whose future is being
//!   polled (or dropped) on this thread, and is null otherwise.
//! * `budget` is as `coop` describes: [`Budget::INITIAL`] at the start of
//!   each poll of a pool task, unconstrained everywhere else.
//! * A task's usual poll ([`PollScope`]) never runs inside another one on
//!   the same thread: tasks are polled only by the worker loop, the
//!   blocking threads and paused time's driver, none of which runs inside a
//!   task's poll. (`block_on` inside a task polls a plain future, not a
//!   task.) So [`PollScope`] starts from the outside state (no task,
//!   [`Budget::UNCONSTRAINED`]) and returns to it, with no value saved: two
//!   stores a poll instead of two loads, two spills and four stores
//!   (callgrind, `hotpath_probe yield`: 6 instructions a poll). A debug
//!   build checks the claim.
//! * What can run inside a poll, a cancelled task's drop (`CurrentTask`)
//!   and `coop::unconstrained` (`BudgetGuard`), saves and restores what it
//!   replaced, so those guards nest inside a poll and inside each other.

use std::cell::Cell;
use std::ptr;

use super::coop::Budget;
use super::TaskMeta;

/// This thread's scope: two cells in one thread-local, so each is read
/// and written on its own (a leaf future's budget unit is one byte loaded
/// and stored, not the whole scope).
struct Scope {
    task: Cell<*const TaskMeta>,
    budget: Cell<Budget>,
}

thread_local! {
    /// See the module docs. `const`-initialised and without a destructor,
    /// so every access is a plain load or store.
    static SCOPE: Scope = const {
        Scope {
            task: Cell::new(ptr::null()),
            budget: Cell::new(Budget::UNCONSTRAINED),
        }
    };
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
        let _ = SCOPE.try_with(|scope| {
            debug_assert!(
                scope.task.get().is_null(),
                "a task's poll inside another task's poll on one thread"
            );
            scope.task.set(task);
            scope.budget.set(budget);
        });
        PollScope {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for PollScope {
    #[inline]
    fn drop(&mut self) {
        let _ = SCOPE.try_with(|scope| {
            scope.task.set(ptr::null());
            scope.budget.set(Budget::UNCONSTRAINED);
        });
    }
}

/// The task polled on this thread (null if none).
#[inline]
pub(super) fn task() -> *const TaskMeta {
    SCOPE
        .try_with(|scope| scope.task.get())
        .unwrap_or(ptr::null())
}

/// Sets the task polled on this thread; returns the one before.
#[inline]
pub(super) fn replace_task(task: *const TaskMeta) -> *const TaskMeta {
    SCOPE
        .try_with(|scope| scope.task.replace(task))
        .unwrap_or(ptr::null())
}

/// This thread's budget, unconstrained on a thread being torn down.
#[inline]
pub(super) fn budget() -> Budget {
    SCOPE
        .try_with(|scope| scope.budget.get())
        .unwrap_or(Budget::UNCONSTRAINED)
}

/// Sets this thread's budget (a thread being torn down keeps none).
#[inline]
pub(super) fn set_budget(budget: Budget) {
    let _ = SCOPE.try_with(|scope| scope.budget.set(budget));
}

/// Sets this thread's budget; returns the one before.
#[inline]
pub(super) fn replace_budget(budget: Budget) -> Budget {
    SCOPE
        .try_with(|scope| scope.budget.replace(budget))
        .unwrap_or(Budget::UNCONSTRAINED)
}
