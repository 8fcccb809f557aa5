//! What a runtime that has exited must not leave behind (shared by the tests that check it).
#![allow(dead_code)] // each test crate uses its own subset

/// The cgroups the runtime with pid `runtime_pid` made below ours (v1 memory/pids/cpu, or the
/// v2 unified hierarchy at its hybrid or pure-v2 mount point) that are still there.
pub fn sandbox_cgroups(runtime_pid: u32) -> Vec<String> {
    let prefix = format!("stockade-{runtime_pid}-");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let parents: Vec<String> = if ctrls.is_empty() {
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(|m| format!("{m}{path}"))
                .collect()
        } else {
            ctrls
                .split(',')
                .filter(|c| ["memory", "pids", "cpu"].contains(c))
                .map(|c| format!("/sys/fs/cgroup/{c}{path}"))
                .collect()
        };
        for parent in parents {
            for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    found.push(format!("{parent}/{n}"));
                }
            }
        }
    }
    found
}

/// Nothing of the runtime with pid `runtime_pid` (which has exited) is left: no cgroup it made
/// below ours ([`sandbox_cgroups`]), no process it was the parent of.
pub fn assert_no_sandbox_left(runtime_pid: u32) {
    let left = sandbox_cgroups(runtime_pid);
    assert!(left.is_empty(), "{left:?} left behind");
    let survivors = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|s| s.lines().any(|l| l == format!("PPid:\t{runtime_pid}")))
        .count();
    assert_eq!(survivors, 0, "a child of the runtime survived it");
}
