//! The no-skip rule: a test that cannot run here says why, and in CI (`CI=true`) it fails.

/// True when the environment demands that every test really runs.
pub fn ci_forbids_skips() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Report that a test cannot run. Returns normally (the caller then returns early: a local
/// skip) unless `CI=true`, where it panics so the skip shows up as a failure.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(
        !ci_forbids_skips(),
        "{test}: cannot run ({reason}) and CI=true forbids skipping"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

/// Whether the current process runs as root (native controls need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
