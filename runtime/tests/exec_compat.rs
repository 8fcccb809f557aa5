//! Compatibility paths that this host's kernel never takes by itself, forced with a seccomp
//! filter in a small C wrapper (compiled here with gcc; in CI gcc is installed).

mod exec_common;
use exec_common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn without_mount_setattr_the_remount_fallback_still_builds_a_read_only_view() {
    if !require(
        Path::new("/usr/bin/gcc").exists(),
        "gcc compiles the ENOSYS wrapper",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("no_mount_setattr");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/exec_compat/no_mount_setattr.c"
    );
    let cc = Command::new("gcc")
        .args(["-O1", "-o", wrapper.to_str().unwrap(), src])
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let o = Command::new(&wrapper)
        .args([BIN, "exec", "--", "/bin/sh", "-c"])
        .arg(
            "touch /usr/x 2>/dev/null && echo usr-writable; touch /x 2>/dev/null && echo root-writable; \
             echo ok > /tmp/ok && cat /tmp/ok; grep -c ' /usr ro,' /proc/self/mountinfo",
        )
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "ok\n1\n");
}
