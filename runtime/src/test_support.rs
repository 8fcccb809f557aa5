//! Helpers shared by the crate's unit tests.

// The integration tests' no-skip rule, the one copy of it (`tests/skip/mod.rs`).
// A test's SKIPPED line is for the person running the tests (no runtime code runs there).
#[allow(clippy::print_stderr)]
#[path = "../tests/skip/mod.rs"]
mod skip;

// Another user holding a lock, the one copy of it (`tests/hold/mod.rs`).
#[path = "../tests/hold/mod.rs"]
pub(crate) mod hold;

/// Whether a test that needs root can run. Outside CI a non-root run skips it (said on
/// stderr); CI runs as root, so there a skip is an error.
pub(crate) fn root_or_skip(why: &str) -> bool {
    skip::require(skip::is_root(), why)
}

/// Whether a test that needs something this host may lack (`ok`) can run; the same skip rule.
pub(crate) fn require(ok: bool, why: &str) -> bool {
    skip::require(ok, why)
}
