//! A user-written scheduling policy: earliest deadline first over the three
//! priority levels.
//!
//! Each level is treated as a stream of jobs with a relative deadline (in
//! polls): High 1, Normal 4, Low 16. A worker's next job at level `L` is due
//! at `(polls given to L + 1) * deadline(L)`; the policy serves the level
//! with work whose next job is due first. Under a flood of all three levels
//! that gives them polls in proportion 16 : 4 : 1, and no level starves.
//!
//! ```sh
//! cargo run --release --example custom_scheduler
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use multipool::{Priority, Scheduler, SchedulerContext};

/// Earliest deadline first over the levels.
struct EarliestDeadlineFirst {
    /// Relative deadline of each level's jobs, in polls (High, Normal, Low).
    deadline: [u64; 3],
}

impl Scheduler for EarliestDeadlineFirst {
    fn next_level(&self, cx: &SchedulerContext) -> Option<Priority> {
        Priority::ALL
            .into_iter()
            .filter(|&level| cx.queued(level) > 0)
            .min_by_key(|&level| {
                let index = level as usize;
                (cx.polls(level) + 1) * self.deadline[index]
            })
    }
}

fn main() {
    let rt = multipool::Runtime::builder()
        .workers(1)
        .scheduler(EarliestDeadlineFirst {
            deadline: [1, 4, 16],
        })
        .build()
        .expect("valid configuration");

    let stop = Arc::new(AtomicBool::new(false));
    let polls: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let tasks: Vec<_> = Priority::ALL
        .into_iter()
        .flat_map(|level| std::iter::repeat_n(level, 4))
        .map(|level| {
            let (stop, polls) = (stop.clone(), polls.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    polls[level as usize].fetch_add(1, Ordering::Relaxed);
                    multipool::task::yield_now().await;
                }
            })
            .priority(level)
            .start()
        })
        .collect();

    // Let the flood run for a while, then stop it.
    while polls.iter().map(|p| p.load(Ordering::Relaxed)).sum::<u64>() < 210_000 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        rt.block_on(task).expect("task completes");
    }

    let counts: Vec<u64> = polls.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    println!("polls under a flood of all three levels, earliest deadline first:");
    for (level, count) in Priority::ALL.iter().zip(&counts) {
        println!(
            "  {level:?}: {count:>7} ({:.1}%)",
            100.0 * *count as f64 / total as f64
        );
    }
    println!("expected about 16 : 4 : 1 (76.2% / 19.0% / 4.8%)");
}
