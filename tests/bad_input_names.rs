//! Bad input never panics, hangs, or silently means something else: one
//! test per row of the README's "Guarantees → Bad input" table. Each
//! setting at 0, 1, its maximum and `Duration::MAX` (or `Duration::ZERO`)
//! either is a [`BuildError`](multipool::BuildError) naming the setting, or
//! builds a runtime that works (a task is spawned and checked) with the
//! documented meaning. Anything that could hang runs under the watchdog.
//!
//! This file: names: `thread_name` and pool names (empty, taken, with a
//! NUL byte, longer than the OS keeps).

mod common;

use std::thread;

use common::settings::{pool_works, rejects, with_pool, works};
use multipool::Runtime;

#[test]
fn thread_names_empty_nul_and_long() {
    rejects(
        Runtime::builder().thread_name(""),
        "thread_name",
        "must not be empty",
    );
    // std's thread builder panics on a NUL byte; `build` used to reach it.
    rejects(
        Runtime::builder().thread_name("app\0worker"),
        "thread_name",
        "must not contain a NUL byte, got \"app\\0worker\"",
    );
    rejects(
        with_pool(|p| p.thread_name("\0")),
        "thread_name",
        "NUL byte, got \"\\0\" (pool `p`)",
    );
    // A name longer than the OS keeps is truncated by the OS, not refused.
    let long = "w".repeat(1000);
    let rt = works(Runtime::builder().workers(1).thread_name(long.clone()));
    let name = rt.block_on(rt.spawn(async { thread::current().name().map(str::to_owned) }));
    assert_eq!(name.unwrap().unwrap(), format!("{long}-0"));
}

#[test]
fn pool_names_empty_default_duplicate_and_nul() {
    rejects(
        Runtime::builder().pool("", |p| p),
        "pool",
        "must not be empty",
    );
    rejects(
        Runtime::builder().pool("default", |p| p),
        "pool",
        "already a pool named `default`",
    );
    rejects(
        Runtime::builder().pool("a", |p| p).pool("a", |p| p),
        "pool",
        "already a pool named `a`",
    );
    // The pool's default thread names are made from its name.
    rejects(
        Runtime::builder().pool("a\0b", |p| p.workers(1)),
        "pool",
        "must not contain a NUL byte, got \"a\\0b\"",
    );
    // Refused even with a thread name of its own: names are shown in errors.
    rejects(
        Runtime::builder().pool("\0", |p| p.workers(1).thread_name("fine")),
        "pool",
        "NUL byte",
    );
    pool_works(with_pool(|p| p.workers(1)));
}
