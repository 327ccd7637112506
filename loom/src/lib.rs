//! loom models of multipool's synchronisation protocols.
//!
//! Built only with `--cfg loom` (see `.ci/loom`); without it this crate is
//! empty, so `cargo test --workspace` and clippy see nothing here.
//!
//! The crate does not depend on `multipool`: the runtime as a whole cannot
//! run under loom (its thread-locals, crossbeam's queues on `std`'s
//! atomics, `std::task::Wake`). Instead it compiles the real code of the
//! protocols that can, by path: `src/sync.rs` (which hands out loom's
//! primitives under `cfg(loom)`), `src/runtime/scheduler/idle.rs` and
//! `src/runtime/scheduler/registry.rs`. Protocols that live in code loom cannot build
//! are modelled by hand in `models`, each model naming the functions it
//! mirrors, with the same atomics and orderings.
#![cfg(loom)]

#[allow(dead_code, unused_imports)]
#[path = "../../src/sync.rs"]
mod sync;

/// `crate::runtime::scheduler::idle` in multipool, the real file.
#[allow(dead_code)]
#[path = "../../src/runtime/scheduler/idle.rs"]
pub(crate) mod idle;

/// `crate::runtime::scheduler::registry` in multipool, the real file. (Under loom its
/// shard-spreading thread-local and the imports it uses are compiled out.)
#[allow(dead_code, unused_imports)]
#[path = "../../src/runtime/scheduler/registry.rs"]
pub(crate) mod registry;

#[cfg(test)]
mod models;
