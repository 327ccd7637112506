//! The workloads of `benches/task_alloc.rs` on the system allocator: the
//! baseline `TaskAlloc`'s cost is measured against (see there).

#[path = "task_alloc/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("system", false);
}
