//! Compile-time behaviour of `#[resilient]`: every supported shape compiles, and every
//! diagnostic is pinned by a golden `.stderr` (stable toolchain, see `rust-toolchain`
//! of CI). Regenerate with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
