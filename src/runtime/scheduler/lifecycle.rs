//! A pool's lifecycle: starting workers on dormant slots, retiring them,
//! and shutting the pool down.
//!
//! # Elastic worker set
//!
//! A pool has `max_workers` slots and runs a worker thread on between
//! `min_workers` and `max_workers` of them. A slot without a thread is
//! *dormant*: its queues are empty, its timer wheel is empty and closed to
//! new timers, and it is not among the sleepers, so nothing can be queued
//! where no thread will look. Workers are added by the `monitor` (when
//! work waits and every worker is busy, or some are blocked in a long poll)
//! and retire themselves after `idle_timeout` parked; see `worker` and
//! `idle` for the two hand-overs. A thread that ends before it runs its
//! worker (a `wrap_thread` hook that panicked) hands its slot back.
//!
//! # Shutdown
//!
//! A graceful shutdown first stops accepting new tasks
//! ([`Pool::stop_accepting`]) and waits for the pool to drain
//! ([`Pool::wait_drained`]). [`Pool::shutdown`] then runs these steps, in
//! order:
//! 1. set `closed` (workers stop taking tasks; pushes to the shared queues
//!    from now on cancel the task themselves, see `push`);
//! 2. unpark every worker and join it; each drains and cancels its own
//!    queues on the way out;
//! 3. cancel whatever is left in the injectors and inboxes;
//! 4. close the registry and wake every task still registered: those are
//!    the tasks that sat in no queue. Each wake-up reaches the scheduler,
//!    which sees `closed` and cancels the task;
//! 5. drain the shared queues once more;
//! 6. fire every timer left (only futures polled outside the pool's tasks,
//!    such as a `block_on` on another thread, can still hold one); their
//!    next poll reports that the runtime is gone.

use std::thread;
use std::time::Duration;

use crossbeam_deque::Steal;
use event_listener::Listener;

use super::{os, worker, Pool};
use crate::sync::{fence, Arc, Ordering};

impl Pool {
    /// Starts a worker on a dormant slot. `Ok(false)`: no slot is free (all
    /// `max_workers` run, or a retiring worker has not handed its slot back
    /// yet).
    pub(super) fn add_worker(
        self: &Arc<Self>,
        latch: Option<worker::Latch>,
    ) -> std::io::Result<bool> {
        if self.is_closed() {
            return Ok(false);
        }
        let Some(index) = self.slots.iter().position(|slot| {
            slot.running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        }) else {
            return Ok(false);
        };
        self.note_slot_used(index);
        let slot = &self.slots[index];
        let counted = self.idle.activate_worker(self.slots.len(), || {
            self.counters.workers_started.fetch_add(1, Ordering::SeqCst);
        });
        if !counted {
            slot.running.store(false, Ordering::Release);
            return Ok(false);
        }
        // A retired thread on this slot has handed its parts back and is
        // only returning; reap it before the slot gets a new one.
        if let Some(previous) = slot.thread.lock().take() {
            let _ = previous.join();
        }
        self.timers.open_wheel(index);
        let mut builder = thread::Builder::new().name(format!("{}-{}", self.thread_name, index));
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        let pool = self.clone();
        let touch = self.prewarm;
        let spawned = builder.spawn(move || {
            // First, before anything can fail: the latch learns how the
            // start went, and a slot whose worker never runs is handed back.
            let mut warm = worker::WarmUp::new(latch, touch);
            let mut unstarted = UnstartedSlot {
                pool: &pool,
                index,
                armed: true,
            };
            crate::fault::hit("worker.start");
            if pool.pin_workers {
                os::pin_to_core(index);
            }
            // Entered before the `wrap_thread` wrappers run, as
            // `block_on` does: a wrapper sees this runtime as current.
            let _enter =
                crate::runtime::context::enter(crate::runtime::Handle::from_pool(pool.clone()));
            pool.runtime.hooks.wrapped(|| {
                unstarted.armed = false;
                let parts = pool.slots[index]
                    .parts
                    .lock()
                    .take()
                    .expect("a running slot's parts are free");
                worker::run(pool.clone(), parts, &mut warm);
            });
        });
        match spawned {
            Ok(thread) => {
                *slot.thread.lock() = Some(thread);
                Ok(true)
            }
            Err(err) => {
                // Only if no timer slipped in meanwhile; one that did is
                // fired by the other workers (see `Timers::fire_overdue_elsewhere`).
                self.timers.close_wheel_if(index, || true);
                self.idle.deactivate_unstarted();
                self.counters.workers_started.fetch_sub(1, Ordering::SeqCst);
                slot.running.store(false, Ordering::Release);
                Err(err)
            }
        }
    }

    /// Hands back the slot of a worker whose thread started but never ran
    /// the worker (a `wrap_thread` hook panicked or did not call its body):
    /// the slot becomes dormant again, so no notifier counts on it and
    /// nothing placed on it is stranded.
    #[cold]
    fn worker_never_ran(&self, index: usize) {
        eprintln!(
            "multipool: worker {index} of pool `{}` never ran: a `Builder::wrap_thread` hook \
             panicked or returned without calling its body",
            self.name
        );
        let slot = &self.slots[index];
        self.timers.close_wheel_if(index, || true);
        self.idle.deactivate_unstarted();
        self.counters.workers_started.fetch_sub(1, Ordering::SeqCst);
        slot.running.store(false, Ordering::SeqCst);
        // Pairs with `push_placed` (see `worker_retired`).
        self.rehome_placed(index);
    }

    /// Called by a worker that just retired (see `Idle::retire_parked`): its
    /// slot becomes dormant again.
    pub(super) fn worker_retired(&self, parts: worker::WorkerParts) {
        let index = parts.index;
        let slot = &self.slots[index];
        *slot.parts.lock() = Some(parts);
        slot.running.store(false, Ordering::SeqCst);
        // A producer that picked this worker before it stopped counting as
        // running may have placed a task on it: move it where others look.
        self.rehome_placed(index);
    }

    /// Moves the tasks placed on a worker that no longer runs to the
    /// injector. Run by the retiring worker after it stops counting as
    /// running, and by a producer that placed a task on a worker it then
    /// finds stopped: whichever comes second moves the task.
    pub(super) fn rehome_placed(&self, index: usize) {
        let Some(inbox) = self.slots[index].inbox.get() else {
            return;
        };
        let mut moved = false;
        for placed in &inbox.placed {
            while let Steal::Success(task) = placed.steal() {
                self.push_injector(task);
                moved = true;
            }
        }
        if moved {
            self.notify_parked();
        }
    }

    /// Retires the worker `index` if it may (see `Idle::retire_parked`):
    /// its wheel must be empty, and is closed to new timers if it retires.
    pub(super) fn try_retire(&self, index: usize) -> bool {
        // Workers `0..min_workers` are permanent: tasks may be pinned to
        // them. Another worker stays while it has local tasks alive.
        if index < self.min_workers || self.slots[index].local_alive.load(Ordering::SeqCst) > 0 {
            return false;
        }
        self.timers.close_wheel_if(index, || {
            self.idle.retire_parked(index, self.min_workers, || {
                // Last check passed: the worker retires. Counted before
                // the active count drops (see `counters`).
                self.counters.workers_retired.fetch_add(1, Ordering::SeqCst);
                true
            })
        })
    }

    /// Starts a graceful shutdown: from now on new spawns are refused with a
    /// shutdown error, while tasks already spawned keep running.
    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        // Wake a waiter that checked `num_alive` before the flag was set.
        self.drained.notify(usize::MAX);
    }

    /// Waits until no task is alive or `deadline` passes; returns whether
    /// the pool drained. Only meaningful after `stop_accepting`.
    pub(crate) fn wait_drained(&self, deadline: std::time::Instant) -> bool {
        loop {
            let listener = self.drained.listen();
            if self.num_alive() == 0 {
                return true;
            }
            // Also look again every 10 ms: the completion's notification is
            // ordered with our check only by this bound on weakly ordered
            // machines (the hot path pays for no fence).
            let wake_at = deadline.min(std::time::Instant::now() + Duration::from_millis(10));
            if listener.wait_deadline(wake_at).is_none() && wake_at >= deadline {
                return self.num_alive() == 0;
            }
        }
    }

    /// Marks the pool closed and wakes its workers, without waiting for
    /// them; [`shutdown`](Self::shutdown) does the rest. Idempotent.
    pub(crate) fn close(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // The closer's half of the push protocol (see `push`): pairs with
        // the fence every push to a shared queue issues before it
        // re-checks `closed` (in `Idle::worker_to_notify`, or its own):
        // either the pusher sees `closed`, or the drains that follow see
        // its task.
        fence(Ordering::SeqCst);
        for slot in self.slots.iter() {
            slot.unparker.unpark();
        }
        if let Some(monitor) = &*self.monitor.lock() {
            monitor.wake();
        }
    }

    /// Stops the pool and cancels every task it holds; see the module docs.
    /// Idempotent. Called from a worker of this pool, it does not wait for
    /// that worker, which stops once its current poll returns.
    pub(crate) fn shutdown(&self) {
        self.close();
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(monitor) = self.monitor.lock().take() {
            monitor.join();
        }
        let current = thread::current().id();
        for slot in self.slots.iter() {
            let thread = slot.thread.lock().take();
            if let Some(thread) = thread {
                if thread.thread().id() != current {
                    // A worker only ends by returning; its tasks' panics are
                    // caught inside the tasks.
                    let _ = thread.join();
                }
            }
        }
        self.drain_injector();
        for waker in self.registry.close() {
            waker.wake();
        }
        self.drain_injector();
        self.timers.shutdown();
    }
}

/// Hands a slot back if its thread ends before running the worker; see
/// [`Pool::worker_never_ran`].
struct UnstartedSlot<'a> {
    pool: &'a Pool,
    index: usize,
    /// Cleared once the worker runs.
    armed: bool,
}

impl Drop for UnstartedSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.worker_never_ran(self.index);
        }
    }
}
