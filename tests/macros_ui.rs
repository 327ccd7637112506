//! Compile-fail tests for `#[multipool::main]` and `#[multipool::test]`.
//!
//! Regenerate the expected output with
//! `TRYBUILD=overwrite cargo test --test macros_ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/main_*.rs");
    t.compile_fail("tests/ui/test_*.rs");
    t.pass("tests/ui/pass_*.rs");
}
