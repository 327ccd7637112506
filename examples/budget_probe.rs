//! The probe behind the README's cost figures for budgets: `TASKS` tasks
//! that each yield `YIELDS` times, on one worker, for counting instructions
//! with callgrind before and after a change to the poll path.
//!
//! ```text
//! cargo build --release --example budget_probe
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/budget_probe 10000 100 0
//! ```
//!
//! Arguments: `TASKS YIELDS MODE`; mode 0 awaits the handles in `block_on`
//! (no cooperative budget), 1 inside a task (each handle spends a unit),
//! 2 like 1 with every task spawned with CPU limits (`cpu_budget(MAX)`:
//! its polls are timed but never stopped).

use std::time::Duration;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("TASKS YIELDS MODE: numbers"))
        .collect();
    let tasks = args.first().copied().unwrap_or(100_000);
    let yields = args.get(1).copied().unwrap_or(1);
    let mode = args.get(2).copied().unwrap_or(0);
    let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    let run = async move {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let spawn = multipool::spawn(async move {
                    for _ in 0..yields {
                        multipool::task::yield_now().await;
                    }
                });
                if mode == 2 {
                    spawn.cpu_budget(Duration::MAX).start()
                } else {
                    spawn.start()
                }
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    };
    if mode == 0 {
        rt.block_on(run);
    } else {
        rt.block_on(rt.spawn(run)).unwrap();
    }
}
