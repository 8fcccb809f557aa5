//! Compatibility paths that this host's kernel never takes by itself, forced with a seccomp
//! filter in a small C wrapper (`tests/exec_helpers/no_mount_setattr.c`, built with gcc).

mod exec_common;
use exec_common::*;
use std::process::Command;

#[test]
fn without_mount_setattr_the_remount_fallback_still_builds_a_read_only_view() {
    let Some(wrapper) = helper("no_mount_setattr") else {
        return;
    };
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
