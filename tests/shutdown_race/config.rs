//! What a seed decides before a round starts: the race's own draws on the
//! shared RNG, how the runtime goes away, and the round's configuration.

use std::time::Duration;

use multipool::{Placement, Priority};

use crate::common::Rng;
use crate::tracking::Work;

/// The shutdown race's own draws, on the shared RNG.
pub(crate) trait RaceDraws {
    fn priority(&mut self) -> Priority;
    fn work(&mut self) -> Work;
    fn fork(&mut self) -> u64;
}

impl RaceDraws for Rng {
    fn priority(&mut self) -> Priority {
        self.pick(&[Priority::High, Priority::Normal, Priority::Low])
    }

    /// What a task body does; never `Panic` (only panickers panic).
    fn work(&mut self) -> Work {
        match self.below(10) {
            0..=2 => Work::Ready,
            3 | 4 => Work::Yield(1 + self.below(3) as u32),
            5 | 6 => Work::Sleep(self.below(1_500)),
            7 | 8 => Work::Foreign,
            _ => Work::Pending,
        }
    }

    /// A seed for a thread or a task of its own.
    fn fork(&mut self) -> u64 {
        self.next()
    }
}

// ---------------------------------------------------------------------------
// Round configuration.

/// How the runtime of a round goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shutdown {
    /// `drop(rt)` on the test's (plain) thread.
    Drop,
    /// `rt.shutdown_background()` on the test's thread.
    Background,
    /// `rt.shutdown_timeout(d)` on the test's thread.
    Timeout(Duration),
    /// Moved into a pool task and dropped there.
    DropInTask,
    /// Moved into a local task (`spawn_local`) and dropped there.
    DropInLocalTask,
    /// Moved into a `spawn_blocking` closure and dropped there.
    DropInBlocking,
    /// Moved into a pool task, which calls `shutdown_background` (what the
    /// crate documents for shutting down from inside a task).
    BackgroundInTask,
}

impl Shutdown {
    /// Whether the runtime is moved into a task of its own.
    pub(crate) fn is_inside(self) -> bool {
        matches!(
            self,
            Shutdown::DropInTask
                | Shutdown::DropInLocalTask
                | Shutdown::DropInBlocking
                | Shutdown::BackgroundInTask
        )
    }
}

/// Everything a seed decides before the round starts.
#[derive(Debug)]
pub(crate) struct Config {
    /// Permanent workers (`min_workers`).
    pub(crate) workers: usize,
    /// An elastic pool (one more worker allowed, 1 ms idle timeout).
    pub(crate) elastic: bool,
    pub(crate) placement: Placement,
    pub(crate) shutdown: Shutdown,
    pub(crate) spawners: usize,
    /// Top-level spawns per spawner thread.
    pub(crate) per_spawner: usize,
    /// The shutdown starts once this many top-level spawns have begun.
    pub(crate) shutdown_after: usize,
    /// Actions of the waker thread before the shutdown is over.
    pub(crate) waker_steps: usize,
}

impl Config {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let workers = 1 + rng.usize_below(3);
        let elastic = rng.one_in(4);
        let placement = rng.pick(&[
            Placement::Local,
            Placement::RoundRobin,
            Placement::LeastLoaded,
        ]);
        let shutdown = match rng.below(9) {
            0 | 1 => Shutdown::Drop,
            2 => Shutdown::Background,
            3 => Shutdown::Timeout(Duration::from_micros(rng.pick(&[0, 300, 1_500]))),
            4 | 5 => Shutdown::DropInTask,
            6 => Shutdown::DropInLocalTask,
            7 => Shutdown::DropInBlocking,
            _ => Shutdown::BackgroundInTask,
        };
        let spawners = 1 + rng.usize_below(2);
        let per_spawner = 4 + rng.usize_below(17);
        let shutdown_after = rng.usize_below(spawners * per_spawner + 1);
        let waker_steps = rng.usize_below(40);
        Config {
            workers,
            elastic,
            placement,
            shutdown,
            spawners,
            per_spawner,
            shutdown_after,
            waker_steps,
        }
    }
}
