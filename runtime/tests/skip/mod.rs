//! The no-skip rule for every integration-test crate of `stockade-runtime`, written once: a
//! test that cannot run here says why on stderr and returns early; with `CI=true` (CI runs as
//! root, with every tool installed) the skip is a failure instead. Each helper module
//! (`common`, `exec_common`, `protocol_common`, …) and the crate's unit tests
//! (`src/test_support.rs`) include this file by `#[path]`: test crates are separate crates and
//! cannot share a module any other way without a support crate.
#![allow(dead_code)]

/// Go on (true) when `ok`; otherwise skip, saying `why` — or fail under `CI=true`.
pub fn require(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    // The same values sandbox-tests' ci.rs accepts: CI=true (what CI sets) or CI=1.
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "test cannot run but CI forbids skips: {why}"
    );
    eprintln!("SKIPPED: {why}");
    false
}

/// Whether this process runs as root (root mode: per-plugin uids, cgroups, native controls).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// [`require`] root, for tests that launch real sandboxes in root mode.
pub fn require_root() -> bool {
    require(is_root(), "these tests launch real sandboxes as root")
}
