//! Admission: whether a pool takes a new task, and the bound of its queue.
//!
//! Every new task passes one [`Pool::admit`] call (or, for the two kinds
//! of task that skip part of it, [`Pool::admit_blocking`] and
//! [`Pool::admit_local`]) before it is created; the [`Admission`] it
//! returns is what [`spawn_on`](crate::runtime::task::spawn_on) takes.
//!
//! Invariants:
//! * A pool that stopped accepting (a shutdown began) refuses every new
//!   task here; a shutdown that begins after a task was admitted is caught
//!   where the task is queued (see `push`).
//! * With `max_queued` set, at most that many tasks wait between spawn and
//!   their first poll. The place is taken here and given back by the
//!   task's first poll (or its cancellation), see
//!   [`release_place`](Pool::release_place). Only a forced admission (a
//!   detached task, a local one) may go past the bound, and it is still
//!   counted. Wake-ups of started tasks are never refused: only new work
//!   is held back.

use event_listener::{Event, EventListener};

use super::placement::{self, Home, NO_HOME};
use super::Pool;
use crate::error::SpawnError;
use crate::sync::{AtomicUsize, Ordering};
use crate::Priority;

/// A pool's yes to one new task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    /// The worker the task is pinned to, or [`NO_HOME`].
    pub(crate) home: u32,
    /// Whether the task holds a place in the bounded queue until its first
    /// poll.
    pub(crate) reserved: bool,
}

/// The bound of a pool's queue; see the module docs.
pub(super) struct QueueBound {
    max: usize,
    /// Tasks spawned and not yet started.
    queued: AtomicUsize,
    /// Notified when a place frees up.
    room: Event,
}

impl QueueBound {
    pub(super) fn new(max: usize) -> Self {
        QueueBound {
            max,
            queued: AtomicUsize::new(0),
            room: Event::new(),
        }
    }
}

impl Pool {
    /// Admits a new task of `priority` that asks to run at `home`: the
    /// pool accepts spawns, serves that priority, has that worker, and has
    /// room in its bounded queue (with `force`, a place is taken even
    /// beyond the bound).
    #[inline]
    pub(crate) fn admit(
        &self,
        priority: Priority,
        home: Home,
        force: bool,
    ) -> Result<Admission, SpawnError> {
        self.check_accepting()?;
        if !self.priorities.contains(priority.index()) {
            return Err(self.priority_refused(priority));
        }
        let home = match home {
            Home::None => NO_HOME,
            home => self.home_for(home)?,
        };
        let reserved = self.reserve_place(force)?;
        Ok(Admission { home, reserved })
    }

    /// Admits a `spawn_blocking` call: it runs on the blocking pool, so
    /// neither the priority nor the queue bound of this pool applies.
    pub(crate) fn admit_blocking(&self) -> Result<Admission, SpawnError> {
        self.check_accepting()?;
        Ok(Admission {
            home: NO_HOME,
            reserved: false,
        })
    }

    /// Admits a `spawn_local` task on worker `home`: a local spawn never
    /// waits for room, so its place is taken beyond the bound if need be.
    pub(crate) fn admit_local(&self, home: usize) -> Result<Admission, SpawnError> {
        self.check_accepting()?;
        Ok(Admission {
            home: home as u32,
            reserved: self.reserve_place(true)?,
        })
    }

    #[inline]
    fn check_accepting(&self) -> Result<(), SpawnError> {
        if self.accepts_spawns() {
            Ok(())
        } else {
            Err(SpawnError::shutdown())
        }
    }

    #[cold]
    fn priority_refused(&self, priority: Priority) -> SpawnError {
        SpawnError::rejected(format!(
            "pool `{}` does not take {priority:?} tasks",
            self.name
        ))
    }

    /// The worker a `Spawn::worker`/`Spawn::key` task is pinned to.
    fn home_for(&self, home: Home) -> Result<u32, SpawnError> {
        let permanent = self.min_workers;
        match home {
            Home::None => Ok(NO_HOME),
            Home::Key(hash) => Ok(placement::jump_hash(hash, permanent) as u32),
            Home::Worker(index) if index < permanent => Ok(index as u32),
            Home::Worker(index) => Err(SpawnError::rejected(format!(
                "no worker {index} to pin to in pool `{}`: tasks can be pinned to its \
                 permanent workers 0..{permanent} (`min_workers`)",
                self.name
            ))),
        }
    }

    /// Takes a place in the bounded queue. `Ok(true)`: a place was taken
    /// (given back with [`release_place`](Self::release_place));
    /// `Ok(false)`: the queue is unbounded. With `force`, a place is taken
    /// even beyond the bound.
    #[inline]
    fn reserve_place(&self, force: bool) -> Result<bool, SpawnError> {
        let Some(bound) = &self.bound else {
            return Ok(false);
        };
        if force {
            bound.queued.fetch_add(1, Ordering::AcqRel);
            return Ok(true);
        }
        let mut queued = bound.queued.load(Ordering::Acquire);
        loop {
            if queued >= bound.max {
                return Err(SpawnError::full(bound.max));
            }
            match bound.queued.compare_exchange_weak(
                queued,
                queued + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(true),
                Err(actual) => queued = actual,
            }
        }
    }

    /// Gives back a place taken at admission (`Admission::reserved`).
    pub(crate) fn release_place(&self) {
        if let Some(bound) = &self.bound {
            bound.queued.fetch_sub(1, Ordering::AcqRel);
            // `additional`: every freed place wakes a waiter, even one
            // notified earlier and not yet run.
            bound.room.notify_additional(1);
        }
    }

    /// Waits (asynchronously) for a place: a listener to poll, created
    /// before the caller tries [`admit`](Self::admit) again.
    pub(crate) fn listen_for_room(&self) -> Option<EventListener> {
        self.bound.as_ref().map(|bound| bound.room.listen())
    }

    /// Tasks spawned and not started yet (zero for an unbounded pool, which
    /// does not count them).
    pub(crate) fn num_queued(&self) -> usize {
        self.bound
            .as_ref()
            .map_or(0, |bound| bound.queued.load(Ordering::Acquire))
    }

    pub(crate) fn max_queued(&self) -> Option<usize> {
        self.bound.as_ref().map(|bound| bound.max)
    }
}
