//! The cost of `TaskAlloc`: three `rt_multi_threaded` workloads with
//! `TaskAlloc` as the global allocator, with untracked tasks (function
//! `task_alloc`: the wrapper alone) and with every task tracked
//! (`task_alloc_tracked`: `memory_limit(usize::MAX)`, so each poll sets the
//! thread's account and every allocation is charged). Compare with
//! `benches/task_alloc_baseline.rs`, the same workloads on the system
//! allocator (function `system`); run the two alternately, the machine is
//! noisy:
//!
//! ```text
//! cargo bench --bench task_alloc_baseline && cargo bench --bench task_alloc
//! ```

use multipool::alloc::TaskAlloc;

#[global_allocator]
static GLOBAL: TaskAlloc = TaskAlloc::system();

#[path = "task_alloc/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("task_alloc", true);
}
