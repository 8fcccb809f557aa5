//! The real thing: the battery and the posture check against the workspace's `stockade exec`
//! with the built-in default policy. Needs the `stockade` binary (see `common::stockade`).

mod common;
use common::*;

#[test]
fn battery_against_stockade_exec_has_no_escape() {
    if !is_root() {
        skip_or_fail(
            "battery_against_stockade_exec_has_no_escape",
            "native controls need root",
        );
        return;
    }
    let bin = stockade();
    // 64 = pids_max of the default policy
    let out = battery()
        .arg("--stockade")
        .arg(&bin)
        .args(["--expect-pids", "64"])
        .output()
        .expect("run battery");
    let text = stdout(&out);
    let (passed, failed) = closing(&text);
    assert!(
        out.status.success() && failed == 0 && passed >= 60,
        "battery against {}:\n{text}\n{}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn posture_of_every_thread_is_as_expected() {
    if !is_root() {
        skip_or_fail(
            "posture_of_every_thread_is_as_expected",
            "reading another uid's /proc needs root",
        );
        return;
    }
    let bin = stockade();
    let out = battery()
        .arg("--posture")
        .arg("--stockade")
        .arg(&bin)
        .output()
        .expect("run posture check");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "posture check:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no differences"), "{text}");
}
