//! Helpers shared by the crate's unit tests.

/// Whether a test that needs root can run. Outside CI a non-root run skips it (said on
/// stderr); CI runs as root, so there a skip is an error.
pub(crate) fn root_or_skip(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI runs as root: this test must run ({why})"
    );
    eprintln!("skipped: {why}");
    false
}
