//! Every probe's native control succeeds on this kernel (so a "denied" under the sandbox
//! means the sandbox stopped it), the probe count meets the floor of 60, and the host
//! is unaffected afterwards.

mod common;
use common::*;

#[test]
fn every_native_control_succeeds() {
    if !is_root() {
        skip_or_fail("every_native_control_succeeds", "native controls need root");
        return;
    }
    let out = battery()
        .arg("--native-only")
        .output()
        .expect("run battery");
    let text = stdout(&out);
    let (passed, failed) = closing(&text);
    assert!(passed >= 60, "only {passed} probes:\n{text}");
    assert_eq!(
        failed,
        0,
        "failed controls:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
}

#[test]
fn unknown_probe_is_a_usage_failure() {
    let out = battery()
        .args(["--native-only", "--only", "no-such-probe"])
        .output()
        .expect("run battery");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown probe"));
}

#[test]
fn missing_mode_is_rejected_with_usage() {
    let out = battery().output().expect("run battery");
    assert_eq!(out.status.code(), Some(64));
}
