//! Compile-fail tests for `#[multipool::main]` and `#[multipool::test]`.
//!
//! Regenerate the expected output with
//! `TRYBUILD=overwrite cargo test --test macros_ui` and review the diff; run
//! it both with `--all-features` and without, for the cases below that
//! depend on multipool's `test-util` feature.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/main_*.rs");
    t.compile_fail("tests/ui/test_*.rs");
    t.pass("tests/ui/pass_*.rs");
    // `start_paused = ...` expands to `Builder::start_paused`, which only
    // exists with `test-util`: these cases' errors depend on the feature.
    if cfg!(feature = "test-util") {
        t.compile_fail("tests/ui/test_util/*.rs");
    } else {
        t.compile_fail("tests/ui/no_test_util/*.rs");
    }
}
