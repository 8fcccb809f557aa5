//! Resource limits and teardown: OOM kill, pids limit, file-size limit, the cgroup removed and
//! no process left behind, even after a double fork and `setsid`. cgroup tests need root mode on
//! this host (rootless callers have no delegated cgroup here).

mod exec_common;
use exec_common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    if !require(is_root(), "the cgroup memory limit needs root mode here") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[resources]\nmemory_max = \"48M\"\n",
    );
    // The shell keeps 200 MB of command substitution output in memory.
    let (o, r) = with_report(
        &["--policy", &pol],
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    assert!(!out(&o).contains("survived"), "{}", err(&o));
    assert!(r["limits_hit"]["oom_kills"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["exit"]["signal"], 9, "{r}");
    assert_eq!(code(&o), 137);
}

#[test]
fn pids_bomb_is_stopped_at_the_limit() {
    if !require(is_root(), "the cgroup pids limit needs root mode here") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[resources]\npids_max = 10\n");
    let (o, r) = with_report(
        &["--policy", &pol],
        "for i in $(seq 1 40); do sleep 2 & done; echo all-started",
    );
    // dash gives up ("Cannot fork") when fork fails with EAGAIN.
    assert!(!out(&o).contains("all-started"), "{}", err(&o));
    assert!(err(&o).contains("fork"), "{}", err(&o));
    assert!(
        r["limits_hit"]["pids_max_events"].as_u64().unwrap() >= 1,
        "{r}"
    );
}

#[test]
fn file_size_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[resources]\nfsize = \"1M\"\n");
    let o = sh(
        &["--policy", &pol],
        "dd if=/dev/zero of=/tmp/big bs=1k count=2048 2>/dev/null; echo $?",
    );
    // dd dies of SIGXFSZ (25): its shell sees 128 + 25.
    assert_eq!(out(&o).trim(), "153", "{}", err(&o));
}

#[test]
fn tmpfs_is_size_limited() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[filesystem]\ntmp_size = \"1M\"\n[resources]\nfsize = \"64M\"\n",
    );
    let o = sh(
        &["--policy", &pol],
        "dd if=/dev/zero of=/tmp/big bs=1k count=4096 2>/dev/null; ls -s /tmp/big | cut -d' ' -f1",
    );
    let kb: u64 = out(&o).trim().parse().unwrap_or(u64::MAX);
    assert!(kb <= 1024, "tmp grew to {kb} KiB; {}", err(&o));
}

#[test]
fn nothing_survives_a_double_fork_and_the_cgroup_is_removed() {
    let marker = format!("{}", 900_000 + std::process::id() % 90_000);
    let (o, r) = with_report(
        &[],
        &format!(
            "(setsid sh -c 'sleep {marker} & sleep {marker}' &) ; sleep 0.2; echo parent-done"
        ),
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "parent-done\n");
    assert_eq!(r["cleaned_up"], true);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("sleep ") && c.contains(&marker))
        .collect();
    assert!(survivors.is_empty(), "{survivors:?}");
    if is_root() {
        let cg = layer(&r, "cgroup");
        for p in cg["details"]["paths"].as_array().unwrap() {
            assert!(
                !Path::new(p.as_str().unwrap()).exists(),
                "cgroup {p} left behind"
            );
        }
    }
}

#[test]
fn cpu_and_rlimits_are_visible_inside() {
    let o = sh(&[], "ulimit -n; ulimit -c; ulimit -f");
    assert_eq!(code(&o), 0, "{}", err(&o));
    // nofile 256, core 0, fsize 16M in 512-byte blocks (dash) or KiB (bash): accept both.
    let text = out(&o);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines[0], "256");
    assert_eq!(lines[1], "0");
    assert!(lines[2] == "32768" || lines[2] == "16384", "{lines:?}");
}

/// No priority above the one it starts with, whatever the runtime's own RLIMIT_NICE/RTPRIO
/// (a unit's `LimitNICE=` would hand a raised one down): both 0, soft and hard, and reported.
/// Where root may raise its hard limits (`prlimit`; not in this VM's container, where it is
/// EPERM and the report is what shows the sandbox sets them), the runtime is started with
/// raised ones, with a native control that shows they are inherited without the sandbox.
#[test]
fn priority_limits_are_zero_inside_and_reported() {
    let raise = ["--nice=10:10", "--rtprio=5:5", "--"];
    let grep = "grep -E '^Max (nice|realtime) priority' /proc/self/limits";
    let raised = Command::new("prlimit")
        .args(raise)
        .args(["/bin/sh", "-c", grep])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(control) = raised {
        let control = String::from_utf8_lossy(&control.stdout).into_owned();
        assert!(
            control.contains(" 10 ") && control.contains(" 5 "),
            "{control}"
        );
        let o = Command::new("prlimit")
            .args(raise)
            .args([BIN, "exec", "--", "/bin/sh", "-c", grep])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", err(&o));
        for line in out(&o).lines() {
            let fields: Vec<&str> = line.split_whitespace().rev().take(2).collect();
            assert_eq!(fields, ["0", "0"], "{line}");
        }
    }
    let (o, r) = with_report(
        &[],
        "grep -E '^Max (nice|realtime) priority' /proc/self/limits",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let text = out(&o);
    for name in ["Max nice priority", "Max realtime priority"] {
        let line = text.lines().find(|l| l.starts_with(name)).expect(name);
        let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(fields, ["0", "0"], "{line}");
    }
    let details = &layer(&r, "rlimits")["details"];
    for key in ["nice", "rtprio"] {
        assert_eq!(details[key], serde_json::json!({"max": 0}), "{key}: {r}");
    }
}

#[test]
fn killing_the_runtime_kills_the_sandbox() {
    let marker = format!("{}", 800_000 + std::process::id() % 90_000);
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("pid");
    let script = format!("sleep {marker} & sleep {marker}");
    let mut rt = exec_with_pid_file(&pf, &["/bin/sh", "-c", &script]);
    for _ in 0..1000 {
        if pf.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pf.exists(), "the program never started");
    rt.kill().unwrap();
    rt.wait().unwrap();
    let alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&marker))
            .count()
    };
    let mut left = alive();
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = alive();
    }
    assert_eq!(left, 0, "sandboxed processes survived the runtime");
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    if !require(is_root(), "the cgroup CPU quota needs root mode here") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[resources]\ncpu_max = \"10%\"\n");
    let (o, r) = with_report(
        &["--policy", &pol],
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done",
    );
    assert_eq!(out(&o), "done\n", "{}", err(&o));
    assert!(
        r["limits_hit"]["cpu_throttled_periods"].as_u64().unwrap() > 0,
        "{r}"
    );
}

/// inotify is opt-in (`@file-watch`: not in the default groups, SIGSYS without it) and a
/// sandbox allowed it gets 8 instances of its own, set through its own /proc — with /proc in
/// the sandbox and without (a private procfs is mounted for the write) — and reported.
#[test]
fn file_watch_is_opt_in_and_capped_per_sandbox() {
    let Some(bin) = helper("inotify") else {
        return;
    };
    let bin = bin.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("r.json");
    let run = |extra: &[&str]| {
        let mut args = vec!["exec", "--report", rep.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", bin]);
        let o = stockade(&args, b"");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
        (o, r)
    };
    let (o, _) = run(&[]);
    assert_eq!(code(&o), 128 + 31, "killed by SIGSYS: {}", err(&o));
    let groups = "\"@default\", \"@basic-io\", \"@file-system\", \"@file-watch\", \"@memory\", \
                  \"@process\", \"@signal\"";
    for proc_ in [true, false] {
        let text =
            format!("version = 1\n[filesystem]\nproc = {proc_}\n[seccomp]\ngroups = [{groups}]\n");
        let pol = policy(dir.path(), &text);
        let (o, r) = run(&["--policy", &pol]);
        assert_eq!(code(&o), 0, "proc = {proc_}: {}", err(&o));
        assert_eq!(out(&o).trim(), "count=8 errno=EMFILE", "proc = {proc_}");
        let caps = &layer(&r, "rlimits")["details"]["user_namespace"];
        assert_eq!(caps["max_inotify_instances"], 8, "{r}");
        assert_eq!(caps["max_inotify_watches"], 8192, "{r}");
    }
    // The runtime's own /proc without /proc/sys (systemd's ProcSubset=pid, as the shipped
    // stockade.service has): the caps still go through the sandbox's own procfs.
    if !require(
        Path::new("/usr/bin/unshare").exists(),
        "unshare (util-linux) gives the runtime a pid-only /proc",
    ) {
        return;
    }
    let text = format!("version = 1\n[seccomp]\ngroups = [{groups}]\n");
    let pol = policy(dir.path(), &text);
    let o = std::process::Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t proc -o subset=pid proc /proc && test ! -e /proc/sys && exec \"$@\"")
        .args(["sh", BIN, "exec", "--policy", &pol, "--", bin])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "under a pid-only /proc: {}", err(&o));
    assert_eq!(out(&o).trim(), "count=8 errno=EMFILE");
}

/// A controller's directory that is not a cgroup mount of it (here a tmpfs over
/// `/sys/fs/cgroup/cpu`, in a mount namespace of the test's own) is no controller: the launch
/// stops (125, fail closed) instead of writing the group and its limits as plain files on the
/// tmpfs and reporting the CPU quota as enforced while nothing throttled the program.
#[test]
fn a_controller_directory_that_is_no_cgroup_mount_is_not_taken_for_one() {
    if !require(
        is_root(),
        "mounting over /sys/fs/cgroup in a private mount namespace needs root",
    ) {
        return;
    }
    if !require(
        Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists(),
        "this test fakes the v1 cpu controller of a hybrid host (CI's is one)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[resources]\ncpu_max = \"50%\"\n");
    let report = dir.path().join("r.json");
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs none /sys/fs/cgroup/cpu && exec \"$0\" \"$@\"")
        .args([BIN, "exec", "--policy", &pol, "--report"])
        .arg(&report)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 125, "{}", err(&o));
    assert!(
        err(&o).contains("cgroup controller `cpu` is not available"),
        "{}",
        err(&o)
    );
}

/// A v1 memory group starts with its parent's `oom_kill_disable`: launched from a group whose
/// OOM killer is off, a sandbox over its memory_max is still OOM-killed (and reported so), not
/// left stalled at the limit. `timeout` only bounds the run should it stall (its SIGTERM is
/// then the program's end, which the assertions refuse).
#[test]
fn a_parent_group_with_the_oom_killer_off_does_not_stall_the_sandbox() {
    if !require(is_root(), "making a v1 memory group needs root") {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
    let Some(own) = own.map(|p| format!("/sys/fs/cgroup/memory{p}")) else {
        require(
            false,
            "no v1 memory controller here (CI's hybrid host has one)",
        );
        return;
    };
    if !require(
        Path::new(&own).join("memory.oom_control").exists(),
        "no v1 memory controller mounted at /sys/fs/cgroup/memory (CI's hybrid host has one)",
    ) {
        return;
    }
    /// The parent group, removed at the end (once the runtime in it has exited).
    struct Group(std::path::PathBuf);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let parent = Group(Path::new(&own).join(format!("stockade-test-oom-{}", std::process::id())));
    std::fs::create_dir(&parent.0).unwrap();
    std::fs::write(parent.0.join("memory.oom_control"), "1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[resources]\nmemory_max = \"48M\"\n",
    );
    let rep = dir.path().join("r.json");
    let o = std::process::Command::new("timeout")
        .args([
            "60",
            "sh",
            "-c",
            "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"",
        ])
        .arg(&parent.0)
        .args([BIN, "exec", "--policy", &pol, "--report"])
        .arg(&rep)
        .args(["--", "/bin/sh", "-c"])
        .arg("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&rep)
            .unwrap_or_else(|e| panic!("no report ({e}); stderr: {}", err(&o))),
    )
    .unwrap();
    assert!(!out(&o).contains("survived"), "{}", err(&o));
    assert_eq!(
        r["exit"]["signal"], 9,
        "stalled at the limit, not OOM-killed: {r}"
    );
    assert!(r["limits_hit"]["oom_kills"].as_u64().unwrap() >= 1, "{r}");
}
