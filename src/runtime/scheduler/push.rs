//! Routing and the push protocol: where a scheduled task goes, and why a
//! push never strands a task in a queue that shutdown has already drained.
//!
//! # Routing
//!
//! A task always goes back to the queues of its own level (the level is
//! read from the task header, never guessed). Where a scheduled task goes:
//! * spawned or woken by the task running on one of this pool's workers:
//!   into that worker's LIFO slot, pushing the slot's previous task to the
//!   back of its queue. A task that yields (woken while running) goes to the
//!   back of its queue instead.
//! * woken on a worker outside a task (a timer it fired): to the back of that
//!   worker's queue.
//! * pinned (`Spawn::worker`, `Spawn::key`, `spawn_local`): into its home
//!   worker's inbox; placed (`Placement::RoundRobin`/`LeastLoaded`): into
//!   the chosen worker's inbox, where siblings may steal it.
//! * anywhere else (and always with a user's `RunQueue`): into the
//!   injector of its level.
//!
//! # The push protocol
//!
//! Shutdown (`Pool::close`) sets `closed`, then drains every queue that no
//! worker will look at again: the injectors, the inboxes, the users'
//! queues. A push into one of them races with that drain, so every such
//! push is two halves around the push itself:
//! 1. [`open_or_cancel`](Pool::open_or_cancel): a pool already closed
//!    cancels the task at once;
//! 2. [`after_push`](Pool::after_push): wake whoever runs the task, then a
//!    `SeqCst` fence (the one inside `notify_parked`, or its own), then
//!    re-check `closed` and drain if it is set.
//!
//! `close` mirrors it: it sets `closed` with a `SeqCst` swap, then issues
//! a `SeqCst` fence, then drains. Either the pusher's re-check sees
//! `closed` (and drains itself), or the closer's drain sees the task. A
//! push to a worker's own queues needs none of this: a worker drains its
//! own queues on its way out, and a stopping worker refuses pushes
//! (`worker::try_schedule_local`). Model-checked in `loom/`.

use crossbeam_deque::Stealer;

use super::placement::{Inbox, Placement, NO_HOME};
use super::queues::steal;
use super::run_queue::QueuedTask;
use super::worker::Scheduled;
use super::{worker, Pool};
use crate::runtime::guard::guard_user;
use crate::runtime::task::{run_cancelled, Runnable};
use crate::sync::{fence, Arc, Ordering};

/// How a wake-up is scheduled on a worker: a task woken while it runs
/// goes to the back of its queue (a yield).
#[inline]
fn woken(woken_while_running: bool) -> Scheduled {
    if woken_while_running {
        Scheduled::Yielded
    } else {
        Scheduled::Woken
    }
}

impl Pool {
    /// Schedules a task that was just spawned on this pool.
    #[inline]
    pub(crate) fn schedule_new(self: &Arc<Self>, runnable: Runnable) {
        let plain = self.placement == Placement::Local && !self.has_custom_queues;
        if plain && runnable.metadata().home == NO_HOME {
            // The common case: `Placement::Local`, no user queue, unpinned.
            if let Err(runnable) =
                worker::try_schedule_local(Arc::as_ptr(self), runnable, Scheduled::Spawned)
            {
                self.push_remote(runnable);
            }
            return;
        }
        self.schedule_new_placed(runnable);
    }

    /// `schedule_new` for a pinned task, a user's queue or a placement.
    #[inline(never)]
    fn schedule_new_placed(self: &Arc<Self>, runnable: Runnable) {
        let home = runnable.metadata().home;
        if home != NO_HOME {
            self.push_pinned(home as usize, runnable);
            return;
        }
        if self.custom_queues[runnable.metadata().level()].is_some() {
            // The user's queue decides the order, for the whole pool.
            self.push_remote(runnable);
            return;
        }
        match self.placement {
            Placement::Local => {
                if let Err(runnable) =
                    worker::try_schedule_local(Arc::as_ptr(self), runnable, Scheduled::Spawned)
                {
                    self.push_remote(runnable);
                }
            }
            Placement::RoundRobin | Placement::LeastLoaded => {
                let index = self.pick_worker();
                self.push_placed(index, runnable);
            }
        }
    }

    /// The worker a new task is placed on (round-robin or least-loaded
    /// among the running workers).
    fn pick_worker(&self) -> usize {
        let len = self.slots.len();
        let cursor = self.place_cursor.fetch_add(1, Ordering::Relaxed);
        let running = |index: &usize| self.slots[*index].running.load(Ordering::Relaxed);
        let next_running = |from: usize| {
            (0..len)
                .map(|offset| (from + offset) % len)
                .find(running)
                .unwrap_or(0)
        };
        match self.placement {
            Placement::LeastLoaded => {
                // Two picks from one counter: a multiplicative hash spreads
                // consecutive values over the slots.
                let mix = cursor.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize);
                let a = next_running(mix % len);
                let b = next_running((mix >> 17) % len);
                if self.worker_load(b) < self.worker_load(a) {
                    b
                } else {
                    a
                }
            }
            _ => next_running(cursor % len),
        }
    }

    /// Tasks queued on worker `index` (its queues and inboxes).
    pub(crate) fn worker_load(&self, index: usize) -> usize {
        let slot = &self.slots[index];
        slot.stealers.iter().map(Stealer::len).sum::<usize>()
            + slot.inbox.get().map_or(0, |inbox| inbox.len())
    }

    fn inbox(&self, index: usize) -> &Inbox {
        self.slots[index].inbox.get_or_init(|| {
            self.note_slot_used(index);
            Box::new(Inbox::new())
        })
    }

    /// Slot `index` gets a worker or an inbox: it is in use from now on
    /// (see `Pool::slots_used`).
    pub(super) fn note_slot_used(&self, index: usize) {
        self.slots_used.fetch_max(index + 1, Ordering::SeqCst);
    }

    /// The slots that ever had a worker or an inbox (see
    /// `Pool::slots_used`); the rest have never held a task.
    #[inline]
    pub(super) fn used_slots(&self) -> &[super::Slot] {
        let used = self.slots_used.load(Ordering::SeqCst);
        &self.slots[..used.min(self.slots.len())]
    }

    /// The schedule function of every task: routes a woken task back to its
    /// own pool.
    #[inline]
    pub(crate) fn schedule_woken(runnable: Runnable, woken_while_running: bool) {
        let meta = runnable.metadata();
        if meta.home != NO_HOME || meta.pool.wake_extras {
            Self::schedule_woken_extras(runnable, woken_while_running);
            return;
        }
        Self::schedule_woken_plain(runnable, woken_while_running);
    }

    /// `schedule_woken` in a pool with latency histograms or a user's
    /// queue, or for a pinned task. Out of line: the usual wake-up keeps
    /// no registers for it (callgrind, `hotpath_probe yield`: the schedule
    /// function went from 33 to 29 instructions a wake-up).
    #[inline(never)]
    fn schedule_woken_extras(runnable: Runnable, woken_while_running: bool) {
        let meta = runnable.metadata();
        if meta.pool.observe.histograms {
            meta.stamp_scheduled();
        }
        if meta.home != NO_HOME || meta.pool.has_custom_queues {
            Self::schedule_woken_special(runnable, woken_while_running);
            return;
        }
        Self::schedule_woken_plain(runnable, woken_while_running);
    }

    /// `schedule_woken` of a task with no home, in a pool without extras.
    #[inline(always)]
    fn schedule_woken_plain(runnable: Runnable, woken_while_running: bool) {
        let pool: *const Pool = Arc::as_ptr(&runnable.metadata().pool);
        if let Err(runnable) =
            worker::try_schedule_local(pool, runnable, woken(woken_while_running))
        {
            // Off this pool's workers: the task keeps its pool alive while we
            // use it, so clone the `Arc` before handing the task over.
            let pool = runnable.metadata().pool.clone();
            pool.push_remote_woken(runnable);
        }
    }

    /// `schedule_woken` for a pinned task, or in a pool with a user's queue.
    #[cold]
    fn schedule_woken_special(runnable: Runnable, woken_while_running: bool) {
        let meta = runnable.metadata();
        let pool = meta.pool.clone();
        if meta.home != NO_HOME {
            if meta.is_local() {
                pool.push_local(meta.home as usize, runnable);
            } else {
                pool.push_pinned(meta.home as usize, runnable);
            }
        } else if pool.custom_queues[meta.level()].is_some() {
            pool.push_remote_woken(runnable);
        } else if let Err(runnable) =
            worker::try_schedule_local(Arc::as_ptr(&pool), runnable, woken(woken_while_running))
        {
            pool.push_remote_woken(runnable);
        }
    }

    /// Queues a task on worker `index`, where idle siblings may steal it.
    fn push_placed(&self, index: usize, runnable: Runnable) {
        let Some(runnable) = self.open_or_cancel(runnable) else {
            return;
        };
        let level = runnable.metadata().level();
        self.inbox(index).placed[level].push(runnable);
        self.after_push(Notify::Placed(index), Drain::All);
    }

    /// Queues a pinned task on its home worker, the only one that runs it.
    fn push_pinned(&self, index: usize, runnable: Runnable) {
        let Some(runnable) = self.open_or_cancel(runnable) else {
            return;
        };
        let level = runnable.metadata().level();
        self.inbox(index).pinned[level].push(runnable);
        self.after_push(Notify::Worker(index), Drain::All);
    }

    /// Queues a task from outside the pool's workers.
    pub(super) fn push_remote(&self, runnable: Runnable) {
        let Some(runnable) = self.open_or_cancel(runnable) else {
            return;
        };
        self.push_injector(runnable);
        self.after_push(Notify::AnyWorker, Drain::All);
    }

    /// [`push_remote`](Self::push_remote) for a woken task, unless this
    /// thread holds wake-ups: woken inside another executor's poll here, it
    /// is queued once that poll has ended (see `hold`).
    fn push_remote_woken(&self, runnable: Runnable) {
        if let Err(runnable) = super::hold::try_hold(runnable) {
            self.push_remote(runnable);
        }
    }

    /// Queues a task of a batch: always to the injector, without waking a
    /// worker; the batch ends with [`finish_batch`](Self::finish_batch).
    pub(crate) fn schedule_quiet(&self, runnable: Runnable) {
        if let Some(runnable) = self.open_or_cancel(runnable) {
            self.push_injector(runnable);
        }
    }

    /// Ends a batch of [`schedule_quiet`](Self::schedule_quiet) pushes: one
    /// wake-up and one shutdown re-check for all of them.
    pub(crate) fn finish_batch(&self) {
        self.after_push(Notify::AnyWorker, Drain::All);
    }

    /// A task a user's queue dropped (cancel reason set): to the pool's own
    /// injector of its level, where a worker runs it, cancelled.
    ///
    /// The queue may drop tasks while it holds its own lock, so this never
    /// calls back into a user's queue: after shutdown it drains only the
    /// pool's own queues.
    pub(crate) fn push_dropped(&self, runnable: Runnable) {
        let level = runnable.metadata().level();
        self.injector[level].push(runnable);
        self.after_push(Notify::AnyWorker, Drain::OwnQueues);
    }

    /// Queues a local (`!Send`) task on its home worker. The one push
    /// outside the protocol: it never cancels the task, even after
    /// shutdown, since only the home worker's thread may drop it, and that
    /// worker drains this inbox before it ends (see
    /// `worker::Local::cancel_everything`).
    pub(crate) fn push_local(&self, index: usize, runnable: Runnable) {
        let level = runnable.metadata().level();
        self.inbox(index).local[level].push(runnable);
        if !self.is_closed() {
            self.wake_worker(index);
        }
    }

    /// The first half of every push to a shared queue: a closed pool
    /// cancels the task on the spot (the cheap check; `after_push` makes
    /// the race with a shutdown that begins later safe).
    #[inline]
    fn open_or_cancel(&self, runnable: Runnable) -> Option<Runnable> {
        if self.is_closed() {
            run_cancelled(runnable);
            None
        } else {
            Some(runnable)
        }
    }

    /// The second half of every push to a queue that shutdown drains (see
    /// the module docs): wakes whoever should run the task, orders the push
    /// before the `closed` check with a `SeqCst` fence, and drains if
    /// shutdown has begun meanwhile.
    #[inline]
    fn after_push(&self, notify: Notify, drain: Drain) {
        let ordered = match notify {
            Notify::AnyWorker => {
                // A `SeqCst` fence (in `Idle::worker_to_notify`), always.
                self.notify_or_nudge();
                true
            }
            Notify::Worker(index) => {
                self.wake_worker(index);
                false
            }
            Notify::Placed(index) => {
                // Its own worker if it sleeps; else whoever may steal it.
                if !self.wake_worker(index) {
                    self.notify_parked();
                    // Pairs with `worker_retired`: the worker may have
                    // retired since `pick_worker` chose it.
                    fence(Ordering::SeqCst);
                    if !self.slots[index].running.load(Ordering::SeqCst) {
                        self.rehome_placed(index);
                    }
                }
                false
            }
        };
        if !ordered {
            fence(Ordering::SeqCst);
        }
        if self.closed.load(Ordering::SeqCst) {
            // Shutdown may have drained the queues before the push landed.
            match drain {
                Drain::All => self.drain_injector(),
                Drain::OwnQueues => self.drain_own_queues(),
            }
        }
    }

    /// Wakes worker `index` if it is parked; returns whether it was.
    pub(super) fn wake_worker(&self, index: usize) -> bool {
        if self.idle.claim_parked(index) {
            self.slots[index].unparker.unpark();
            true
        } else {
            false
        }
    }

    /// Wakes a parked worker if work is waiting and nobody searches for it.
    /// Returns whether it woke one.
    #[inline]
    pub(crate) fn notify_parked(&self) -> bool {
        if let Some(index) = self.idle.worker_to_notify() {
            self.slots[index].unparker.unpark();
            true
        } else {
            false
        }
    }

    /// After a push to an injector: wakes a parked worker, or, while every
    /// worker is busy, nudges them to look at the injectors soon (see
    /// `injector_nudge`). Without the nudge, a task from outside waited
    /// for a worker's periodic turn: up to 61 polls, the interval tuned to
    /// the mean poll time of the interval before, so a worker that had just
    /// run short tasks and then ran 10 µs polls looked after 600 µs
    /// (`spawn_many_remote_busy2`). While the nudge is set, a push only
    /// loads it.
    #[inline]
    fn notify_or_nudge(&self) {
        if !self.notify_parked()
            && self.idle.all_busy()
            && !self.injector_nudge.load(Ordering::Relaxed)
        {
            // Release: a worker that sees the nudge sees the push.
            self.injector_nudge.store(true, Ordering::Release);
        }
    }

    /// Whether a push to an injector found every worker busy since a
    /// worker last served the injectors first.
    #[inline]
    pub(super) fn injector_nudged(&self) -> bool {
        self.injector_nudge.load(Ordering::Acquire)
    }

    /// An injector-first tick: whatever a nudge asked for is served (a
    /// load only, unless the nudge was set). Not atomic with the pops that
    /// follow: a push between them that found the nudge set may go
    /// unnudged, and wait for a periodic turn, as it would without it.
    #[inline]
    pub(super) fn injectors_served(&self) {
        if self.injector_nudge.load(Ordering::Relaxed) {
            self.injector_nudge.store(false, Ordering::Relaxed);
        }
    }

    /// The injector of the task's level, or the user's queue replacing it.
    pub(super) fn push_injector(&self, runnable: Runnable) {
        let level = runnable.metadata().level();
        if !self.has_custom_queues {
            self.injector[level].push(runnable);
            return;
        }
        match &self.custom_queues[level] {
            Some(queue) => {
                // A panic drops the task with the unwinding queue, which
                // reports it (see `QueuedTask`'s `Drop`).
                let task = QueuedTask::new(runnable);
                let _ = guard_user("`RunQueue::push`", || queue.push(task));
            }
            None => self.injector[level].push(runnable),
        }
    }

    /// Cancels what waits in the injectors, in every worker's inbox and in
    /// the users' queues.
    pub(super) fn drain_injector(&self) {
        self.drain_own_queues();
        for queue in self.custom_queues.iter().flatten() {
            while let Some(Some(task)) = guard_user("`RunQueue::pop`", || queue.pop()) {
                run_cancelled(task.into_runnable());
            }
        }
        // What a user's queue dropped meanwhile.
        self.drain_own_queues();
    }

    /// Cancels what waits in the pool's own injectors and in every worker's
    /// inbox, without calling a user's queue.
    pub(super) fn drain_own_queues(&self) {
        for injector in &self.injector {
            while let Some(task) = steal(|| injector.steal()) {
                run_cancelled(task);
            }
        }
        for slot in self.slots.iter() {
            if let Some(inbox) = slot.inbox.get() {
                inbox.drain(run_cancelled);
            }
        }
    }
}

/// Who a push wakes (see [`Pool::after_push`]).
enum Notify {
    /// A parked worker, if nobody searches.
    AnyWorker,
    /// Worker `index` if it is parked: the only one that may run the task.
    Worker(usize),
    /// Worker `index` if it is parked, else any; and the task moves on if
    /// that worker has retired.
    Placed(usize),
}

/// What a push that finds the pool closed drains.
enum Drain {
    /// Everything shutdown drains (`Pool::drain_injector`).
    All,
    /// The pool's own queues only, not a user's (see `push_dropped`).
    OwnQueues,
}
