//! The cooperative budget: how many times multipool's own leaf futures may
//! complete in one poll of a task before they make it yield (the design of
//! tokio's `coop`).
//!
//! A future that loops over futures which are always ready (a `JoinHandle`
//! of a finished task, an expired timer, an `Interval` catching up on
//! missed ticks) never returns `Pending` by itself and would hold its
//! worker for ever, starving every task queued behind it. The budget bounds
//! that: each leaf future spends one unit when it completes, and once the
//! poll has spent them all, the next leaf future wakes its task and returns
//! `Pending` instead, so the task goes to the back of its queue.
//!
//! Invariants:
//! * This thread's budget (kept in `scope`'s thread-local, beside the
//!   task being polled) holds its remaining units: [`INITIAL`] at the
//!   start of each poll of a pool task (set by the task wrapper, which
//!   makes it unconstrained again after the poll: such polls never nest,
//!   see `scope`), and unconstrained everywhere else: outside any task, in
//!   `spawn_blocking` closures, inside `block_on`, inside
//!   `task::unconstrained` (which restore what they replaced).
//! * A leaf future spends a unit only when it returns `Ready` (a `Pending`
//!   result gives it back, see [`refund`]), and at zero it never returns
//!   `Ready`: it wakes its task and returns `Pending`. Its state is left as
//!   it was, so the next poll (with a fresh budget) completes it.
//! * Unconstrained code never yields for the budget, and spends nothing.
//!
//! Leaf futures taking part: `time::Sleep` (and so `Timeout`'s timer,
//! `Interval::tick`, `task::retry`'s waits) and `JoinHandle` (and so an
//! awaited `Spawn`), plus `task::consume_budget`. A task's own deadline
//! (`Spawn::timeout`) does not: it is checked after the poll, by the
//! wrapper.
//!
//! Cost: set with the current task, in one thread-local store at the
//! start of a task's poll and one at its end (see `scope`), and one load
//! and store per leaf future that completes.

use std::task::{Context, Poll};

use super::scope;

/// The units each poll of a task starts with (tokio's number).
pub(crate) const INITIAL: u8 = 128;

/// Remaining units, or [`UNCONSTRAINED`](Self::UNCONSTRAINED). One byte
/// with a sentinel rather than an `Option<u8>`: the task wrapper saves and
/// restores it around every poll, and one byte is one load and one store
/// (measured with callgrind: two fewer of each per poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget(u8);

impl Budget {
    /// A fresh budget, for the start of a task's poll.
    pub(crate) const INITIAL: Budget = Budget(INITIAL);
    /// No budget: nothing yields. Never reached by counting: a budget
    /// counts down from [`INITIAL`], and a refund never takes it past that.
    pub(crate) const UNCONSTRAINED: Budget = Budget(u8::MAX);
}

/// Sets this thread's budget until dropped, then restores the one before.
pub(crate) struct BudgetGuard(Budget);

impl BudgetGuard {
    #[inline]
    pub(crate) fn enter(budget: Budget) -> BudgetGuard {
        BudgetGuard(scope::replace_budget(budget))
    }
}

impl Drop for BudgetGuard {
    #[inline]
    fn drop(&mut self) {
        scope::replace_budget(self.0);
    }
}

/// Runs `f` with no budget (see `task::unconstrained`).
#[inline]
pub(crate) fn unconstrained<R>(f: impl FnOnce() -> R) -> R {
    let _guard = BudgetGuard::enter(Budget::UNCONSTRAINED);
    f()
}

/// Whether a leaf future may complete now: `false` only when this thread is
/// in a budgeted poll that has spent every unit.
pub(crate) fn has_budget_remaining() -> bool {
    scope::budget().0 != 0
}

/// Takes one unit for a leaf future about to see whether it can complete;
/// with none left, wakes `cx` and returns `Pending` (the leaf must then
/// return `Pending` without doing anything else). A leaf that turns out
/// `Pending` after all gives the unit back with [`refund`]. (No guard
/// does that on unwind: a panic ends the task's poll, and with it the
/// budget.)
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    // Unconstrained (outside a task's poll, or a thread being torn down):
    // proceed, with nothing written.
    match scope::budget() {
        Budget::UNCONSTRAINED => Poll::Ready(()),
        Budget(0) => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Budget(units) => {
            scope::set_budget(Budget(units - 1));
            Poll::Ready(())
        }
    }
}

/// Gives back the unit [`poll_proceed`] took, for a leaf future that
/// returned `Pending` after all (unconstrained: nothing to give back).
#[inline]
pub(crate) fn refund() {
    // Below `INITIAL` after a unit was taken; at most `INITIAL` again.
    // (`UNCONSTRAINED` is above `INITIAL`: left alone.)
    let budget = scope::budget();
    if budget.0 < INITIAL {
        scope::set_budget(Budget(budget.0 + 1));
    }
}
