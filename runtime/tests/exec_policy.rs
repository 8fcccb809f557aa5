//! Policy files with `stockade exec`: custom policies change what the program sees, invalid ones
//! are refused with exit 65 and a message naming the key, and unreadable ones with 66.

mod exec_common;
use exec_common::*;

#[test]
fn invalid_policy_is_rejected_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[resources]\nmemory_max = \"lots\"\n",
    );
    let o = sh(&["--policy", &pol], "echo should-not-run");
    assert_eq!(code(&o), 65, "{}", err(&o));
    assert!(err(&o).contains("resources.memory_max"), "{}", err(&o));
    assert!(out(&o).is_empty());

    let pol = policy(dir.path(), "version = 1\n[network]\nmdoe = \"none\"\n");
    let o = sh(&["--policy", &pol], "true");
    assert_eq!(code(&o), 65);
    assert!(err(&o).contains("mdoe"), "{}", err(&o));

    let pol = policy(dir.path(), "version = 1\n[seccomp]\nallow = [\"ptrace\"]\n");
    let o = sh(&["--policy", &pol], "true");
    assert_eq!(code(&o), 65);
    assert!(err(&o).contains("seccomp.allow"), "{}", err(&o));

    let o = sh(&["--policy", "/nonexistent/policy.toml"], "true");
    assert_eq!(code(&o), 66);
}

#[test]
fn invalid_policy_with_json_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 2\n");
    let o = stockade(
        &["--json", "exec", "--policy", &pol, "--", "/bin/true"],
        b"",
    );
    assert_eq!(code(&o), 65);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["error"]["kind"], "invalid_policy");
}

#[test]
fn custom_policy_changes_the_view_and_limits() {
    // Not under /tmp: the sandbox builds its own /tmp, so policies cannot bind paths there.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "hello").unwrap();
    // World-writable so the sandbox uid (a distinct host uid in root mode) may write there.
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = data.to_str().unwrap();
    let pol = policy(
        dir.path(),
        &format!(
            "version = 1\n[filesystem]\nwritable = [\"{d}\"]\n[identity]\nhostname = \"custom-box\"\ninside_uid = 4242\n[resources]\nnofile = 64\n"
        ),
    );
    let o = sh(
        &["--policy", &pol],
        &format!("hostname; id -u; ulimit -n; cat {d}/in.txt; echo; echo out > {d}/out.txt && echo wrote"),
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "custom-box\n4242\n64\nhello\nwrote\n");
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).unwrap(),
        "out\n"
    );
}

#[test]
fn loopback_mode_brings_lo_up_and_allows_inet() {
    if !require(
        std::path::Path::new("/usr/bin/python3").exists(),
        "python3 runs the TCP echo over loopback",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[network]\nmode = \"loopback\"\n");
    let o = stockade(
        &["exec", "--policy", &pol, "--", "/usr/bin/python3", "-c",
          "import socket\ns=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\nc=socket.create_connection(s.getsockname()); a,_=s.accept(); c.send(b'ok'); print(a.recv(2).decode())"],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o).trim(), "ok");
}

#[test]
fn seccomp_groups_are_respected() {
    // Without @network-io, connect() is not allowed: a process calling it is killed.
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[seccomp]\ngroups = [\"@default\", \"@basic-io\", \"@file-system\", \"@memory\", \"@process\", \"@signal\", \"@io-event\", \"@timer\"]\n",
    );
    if !require(
        std::path::Path::new("/usr/bin/python3").exists(),
        "python3 calls connect()",
    ) {
        return;
    }
    let o = stockade(
        &["exec", "--policy", &pol, "--", "/usr/bin/python3", "-c",
          "import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect('/nonexistent')\nexcept OSError:\n pass\nprint('alive')"],
        b"",
    );
    assert_eq!(code(&o), 159, "{} {}", out(&o), err(&o));
}

#[test]
fn degradation_not_allowed_stops_the_launch() {
    // Demanding a Landlock ABI no kernel has (and no degradation) must stop before the program.
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[layers]\nmin_landlock_abi = 9\nallow_degraded = []\n",
    );
    let o = sh(&["--policy", &pol], "echo ran");
    if out(&o).contains("ran") {
        // A kernel with ABI 9 satisfies the policy: nothing to check here.
        assert!(require(false, "the kernel offers Landlock ABI 9"));
        return;
    }
    assert_eq!(code(&o), 125, "{}", err(&o));
    assert!(err(&o).contains("landlock"), "{}", err(&o));
    // Nothing is left behind: no sandbox cgroup of ours remains.
    let own = std::process::id().to_string();
    for ctrl in ["pids", "cpu"] {
        let d = format!("/sys/fs/cgroup/{ctrl}");
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !(n.starts_with("stockade-") && n.contains(&own)),
                    "{n} left behind"
                );
            }
        }
    }
}
