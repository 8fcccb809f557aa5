//! Policy files with `stockade exec`: custom policies change what the program sees, invalid ones
//! are refused with exit 65 and a message naming the key, and unreadable ones with 66.

mod exec_common;
mod leftovers;
use exec_common::*;
use leftovers::assert_no_sandbox_left;

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

/// A host directory a policy may bind: not under /tmp (the sandbox builds its own /tmp, /dev and
/// /proc, so the runtime refuses binds there). The target dir is preferred; a checkout that
/// itself lives under /tmp (as a CI clone may) falls back to /var/tmp.
fn bindable_base() -> std::path::PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let built_by_sandbox = ["/tmp", "/dev", "/proc"]
        .iter()
        .any(|p| target.starts_with(p));
    if built_by_sandbox {
        std::path::PathBuf::from("/var/tmp")
    } else {
        target.to_path_buf()
    }
}

#[test]
fn custom_policy_changes_the_view_and_limits() {
    let dir = tempfile::tempdir_in(bindable_base()).unwrap();
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

/// A `read_only` path inside a `writable` one read as protected but was writable: the
/// read-write bind of the parent, made after the read-only ones, covered it (and Landlock allows
/// writes beneath a writable path). Such a policy is refused now (65, both paths named, the
/// program not run), and the file stays as it was.
#[test]
fn a_read_only_path_inside_a_writable_one_is_refused_not_made_writable() {
    let dir = tempfile::tempdir_in(bindable_base()).unwrap();
    let app = dir.path().join("app");
    let config = app.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("x"), "orig").unwrap();
    for p in [dir.path(), &app, &config] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(
        config.join("x"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let (a, c) = (app.to_str().unwrap(), config.to_str().unwrap());
    let pol = policy(
        dir.path(),
        &format!(
            "version = 1\n[filesystem]\nread_only = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc/ld.so.cache\", \"{c}\"]\nwritable = [\"{a}\"]\n"
        ),
    );
    let o = sh(
        &["--policy", &pol],
        &format!("echo pwned > {c}/x; echo ran"),
    );
    assert_eq!(code(&o), 65, "{} {}", out(&o), err(&o));
    assert!(!out(&o).contains("ran"), "{}", out(&o));
    let e = err(&o);
    assert!(
        e.contains("policy.toml:4")
            && e.contains("filesystem.writable")
            && e.contains(c)
            && e.contains(a),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(config.join("x")).unwrap(), "orig");
}

/// A `writable` path must be a directory on the host: a file, a missing path, a symbolic link or
/// a path with a symbolic link in a parent component is refused before anything is made (125, `writable_path`, the path and what is there named),
/// not skipped — and not left to the Landlock step, which named the path as missing inside the
/// sandbox ("No such file or directory" for a file that plainly exists).
#[test]
fn writable_path_that_is_no_directory_is_refused_naming_what_is_there() {
    let dir = tempfile::tempdir_in(bindable_base()).unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let link = dir.path().join("a-link");
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), &link).unwrap();
    let missing = dir.path().join("missing");
    std::fs::create_dir(dir.path().join("real/sub")).unwrap();
    let below_link = link.join("sub");
    for (path, said) in [
        (&file, "is a file on the host, not a directory"),
        (&missing, "does not exist on the host"),
        (&link, "is a symbolic link on the host"),
        // A directory reached through a link in a parent component: the link's owner chooses
        // where the plugin may write.
        (&below_link, "has a symbolic link on the host in its path"),
    ] {
        let p = path.to_str().unwrap();
        let pol = policy(
            dir.path(),
            &format!("version = 1\n[filesystem]\nwritable = [\"{p}\"]\n"),
        );
        let (runtime_pid, o) = exec_echo_ran(&["--json"], &pol);
        assert_eq!(code(&o), 125, "{} {}", out(&o), err(&o));
        assert!(!out(&o).contains("ran"), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
        assert_eq!(v["error"]["kind"], "writable_path", "{v}");
        let msg = v["error"]["causes"].to_string();
        assert!(msg.contains(p) && msg.contains(said), "{v}");
        assert_no_sandbox_left(runtime_pid);
    }
}

#[test]
fn loopback_mode_brings_lo_up_and_allows_inet() {
    let Some(net) = helper("net") else { return };
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[network]\nmode = \"loopback\"\n");
    let o = stockade(
        &[
            "exec",
            "--policy",
            &pol,
            "--",
            net.to_str().unwrap(),
            "echo",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{} {}", out(&o), err(&o));
    assert_eq!(out(&o).trim(), "ok");
    // The default policy (mode "none") has no loopback and no inet sockets.
    let o = stockade(&["exec", "--", net.to_str().unwrap(), "echo"], b"");
    assert_eq!(out(&o).trim(), "EAFNOSUPPORT");
}

#[test]
fn seccomp_groups_are_respected() {
    // Without @network-io, connect() is not allowed: a process calling it is killed.
    let Some(net) = helper("net") else { return };
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[seccomp]\ngroups = [\"@default\", \"@basic-io\", \"@file-system\", \"@memory\", \"@process\", \"@signal\", \"@io-event\", \"@timer\"]\n",
    );
    let o = stockade(
        &[
            "exec",
            "--policy",
            &pol,
            "--",
            net.to_str().unwrap(),
            "unix-connect",
        ],
        b"",
    );
    assert_eq!(code(&o), 159, "{} {}", out(&o), err(&o));
    // With the default groups the same program lives.
    let o = stockade(&["exec", "--", net.to_str().unwrap(), "unix-connect"], b"");
    assert_eq!(out(&o).trim(), "alive", "{}", err(&o));
}

/// `stockade GLOBAL… exec --policy POL -- sh -c 'echo ran'`: the runtime's pid (for
/// [`assert_no_sandbox_left`]) and its output.
fn exec_echo_ran(global: &[&str], pol: &str) -> (u32, std::process::Output) {
    let child = std::process::Command::new(BIN)
        .args(global)
        .args(["exec", "--policy", pol, "--", "/bin/sh", "-c", "echo ran"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

#[test]
fn degradation_not_allowed_stops_the_launch_and_leaves_nothing() {
    // Demanding a Landlock ABI no kernel has (and no degradation) must stop before the program,
    // after the uid, the cgroup and the child already exist: all of them must be gone.
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[layers]\nmin_landlock_abi = 9\nallow_degraded = []\n",
    );
    let (runtime_pid, o) = exec_echo_ran(&[], &pol);
    if out(&o).contains("ran") {
        // A kernel with ABI 9 satisfies the policy: nothing to check here.
        assert!(require(false, "the kernel offers Landlock ABI 9"));
        return;
    }
    assert_eq!(code(&o), 125, "{}", err(&o));
    assert!(err(&o).contains("landlock"), "{}", err(&o));
    assert_no_sandbox_left(runtime_pid);
}

#[test]
fn documented_default_policy_is_the_built_in_one() {
    // docs/sandbox.md shows the default policy in full; it must not drift from the code.
    let doc = include_str!("../../docs/sandbox.md");
    let start = doc.find("```toml\n").expect("toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let documented = stockade_policy::sandbox::parse_policy(&doc[start..end]).unwrap();
    let built_in = stockade_policy::sandbox::default_policy();
    let strip = |mut p: stockade_policy::sandbox::ValidatedSandboxPolicy| {
        p.source = Default::default();
        p
    };
    assert_eq!(strip(documented), strip(built_in));
}

#[test]
fn plugin_dir_is_mounted_read_only_at_plugin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("manifest.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let o = sh(
        &["--plugin-dir", d],
        "cat /plugin/manifest.json; echo; touch /plugin/x 2>/dev/null && echo writable; echo end",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "{}\nend\n");
    let o = sh(&["--plugin-dir", "/nonexistent/dir"], "true");
    assert_eq!(code(&o), 66);
}

/// `exec --json` prints its report as one JSON document on stderr: audit records must never
/// land in it. With `audit.stderr = true` they go to the journal socket (here a datagram socket
/// the test binds, named by `STOCKADE_JOURNAL_SOCKET`); with no journal and no other sink the
/// launch is refused (74) rather than left unaudited; without `--json` stderr lines remain.
#[test]
fn exec_json_keeps_audit_records_out_of_its_report() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[audit]\nstderr = true\n");
    let journal = dir.path().join("journal.sock");
    let run = |json: bool, socket: &std::path::Path| {
        let mut args = vec![];
        if json {
            args.push("--json");
        }
        args.extend(["exec", "--policy", &pol, "--", "/bin/true"]);
        std::process::Command::new(BIN)
            .args(&args)
            .env("STOCKADE_JOURNAL_SOCKET", socket)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    let sock = UnixDatagram::bind(&journal).unwrap();
    sock.set_nonblocking(true).unwrap();
    let o = run(true, &journal);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let report: serde_json::Value = serde_json::from_str(&err(&o))
        .unwrap_or_else(|e| panic!("stderr is not one JSON document ({e}): {}", err(&o)));
    assert_eq!(report["schema"], "stockade.sandbox.report/1");
    let mut events = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = sock.recv(&mut buf) {
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        events.extend(
            msg.lines()
                .filter_map(|l| l.strip_prefix("STOCKADE_AUDIT_EVENT="))
                .map(String::from),
        );
    }
    assert_eq!(events, ["launch", "termination"]);

    // No journal and stderr the only sink: refused before anything runs.
    let missing = dir.path().join("no-journal.sock");
    let o = run(true, &missing);
    assert_eq!(code(&o), 74, "{} {}", out(&o), err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["error"]["kind"], "audit");

    // Without --json, stderr is free for the records.
    let o = run(false, &missing);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        err(&o).matches("stockade-audit: ").count(),
        2,
        "{}",
        err(&o)
    );
}

/// With `audit.stderr = true` and no journal, a command's records go to its stderr, and one
/// its stderr does not take (`/dev/full`: ENOSPC; a pipe whose reader is gone: EPIPE) is not
/// written: the launch is refused (74 `audit`) before anything runs, as a file sink's failed
/// write refuses it. The record was printed as a message is, its failure dropped: the program
/// ran unaudited and `exec` exited with its status.
#[test]
fn a_record_stderr_does_not_take_refuses_the_launch() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), "version = 1\n[audit]\nstderr = true\n");
    let missing = dir.path().join("no-journal.sock");
    let exec = |stderr: std::process::Stdio| {
        std::process::Command::new(BIN)
            .args(["exec", "--policy", &pol, "--", "/bin/sh", "-c", "echo ran"])
            .env("STOCKADE_JOURNAL_SOCKET", &missing)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .output()
            .unwrap()
    };
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = exec(full.into());
    assert_eq!(code(&o), 74, "{}", out(&o));
    assert_eq!(out(&o), "", "the program ran");

    // A pipe whose reader is gone: EPIPE (the runtime ignores SIGPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = exec(writer.into());
    assert_eq!(code(&o), 74, "{}", out(&o));
    assert_eq!(out(&o), "", "the program ran");

    // A stderr that takes them: the program runs, both records there.
    let o = exec(std::process::Stdio::piped());
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "ran\n");
    assert_eq!(
        err(&o).matches("stockade-audit: ").count(),
        2,
        "{}",
        err(&o)
    );
}

/// `stockade exec` with `/etc/subuid` replaced by `subuid` and `/etc/subgid` by an empty file,
/// in a private mount namespace of its own (binds of temporary files: the host's delegations
/// play no part, and its files are never changed; one missing is made empty first, as
/// shadow-utils' own packages make them).
fn exec_with_subuid(subuid: &str, policy: &str, report: &std::path::Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (uids, gids) = (dir.path().join("subuid"), dir.path().join("subgid"));
    std::fs::write(&uids, subuid).unwrap();
    std::fs::write(&gids, "").unwrap();
    for f in ["/etc/subuid", "/etc/subgid"] {
        if !std::path::Path::new(f).exists() {
            std::fs::write(f, "").unwrap();
        }
    }
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(
            r#"mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && shift 2 &&
               exec "$@""#,
        )
        .arg("sh")
        .arg(&uids)
        .arg(&gids)
        .args([BIN, "exec", "--policy", policy, "--report"])
        .arg(report)
        .args(["--", "/bin/true"])
        .output()
        .expect("run unshare")
}

/// Subordinate ids another user holds in the plugins' uid range (the auditor's case: `bob`
/// added before the package, 165536–231071, reaching into 200000–265535) let that user become a
/// plugin's uid with `newuidmap`: the launch stops with 125, naming the file, the user and the
/// range, unless the policy allows degradation `distinct_uid` — then it runs and the report says
/// the layer is only partly enforced, and why. The service user's own registration, root's and
/// this user's are trusted. The old runtime ran it with `distinct_uid` fully enforced.
#[test]
fn a_plugin_uid_range_delegated_to_another_user_is_refused_unless_allowed() {
    if !require(
        is_root(),
        "needs root: per-plugin uids and a private mount namespace",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let strict = policy(dir.path(), "version = 1\n");
    let o = exec_with_subuid(
        "alice:100000:65536\nbob:165536:65536\nstockade:200000:65536\n",
        &strict,
        &report,
    );
    assert_eq!(code(&o), 125, "{}", err(&o));
    assert!(
        err(&o).contains("/etc/subuid delegates ids 165536–231071 to `bob`"),
        "{}",
        err(&o)
    );
    assert!(!report.exists(), "nothing ran");

    let o = exec_with_subuid(
        "stockade:200000:65536\nroot:100000:200000\n",
        &strict,
        &report,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));

    let allowing = dir.path().join("allowing.toml");
    std::fs::write(
        &allowing,
        "version = 1\n[layers]\nallow_degraded = [\"distinct_uid\", \"landlock_network\", \"landlock_scope\"]\n",
    )
    .unwrap();
    let o = exec_with_subuid("bob:165536:65536\n", allowing.to_str().unwrap(), &report);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let l = layer(&r, "distinct_uid");
    assert_eq!(l["status"], "partially_enforced", "{l}");
    assert!(
        l["details"]["reason"].as_str().unwrap().contains("`bob`"),
        "{l}"
    );
}

/// Review-138: a record longer than the tail an append reads back to chain the next one
/// (256 KiB) — here an `exec` whose command line is 300 KB, any user's to choose — was written
/// all the same; the next append found no whole last record and refused ("the last record …
/// is not a valid audit record"), so its termination and every later launch under that log
/// failed until someone repaired it by hand, while `audit verify` said the log was fine. Now
/// such a record is refused before it is written (74 `audit`, the launch undone) and the log
/// goes on.
#[test]
fn a_record_too_long_to_chain_is_refused_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let pol = policy(
        dir.path(),
        &format!("version = 1\n[audit]\nfile = {:?}\n", log.to_str().unwrap()),
    );
    let big = "a".repeat(100_000);
    let o = stockade(
        &[
            "--json",
            "exec",
            "--policy",
            &pol,
            "--",
            "/bin/true",
            &big,
            &big,
            &big,
        ],
        b"",
    );
    let said = format!("{}{}", out(&o), err(&o));
    assert_eq!(code(&o), 74, "{said}");
    assert!(said.contains("\"kind\":\"audit\""), "{said}");
    let o = stockade(&["exec", "--policy", &pol, "--", "/bin/true"], b"");
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = stockade(&["--json", "audit", "verify", log.to_str().unwrap()], b"");
    assert_eq!(code(&o), 0, "{}", out(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(
        v["records"], 2,
        "launch and termination of the second exec: {v}"
    );
}

/// Review-158: a launch the policy refused was audited with `detail.kind` alone
/// (`layer_unavailable`): the log said neither which layer nor why, which the CLI's error did. The
/// `failed` launch record now carries `detail.error` (the chain the CLI prints) and
/// `detail.refused` (the degradation the policy would have to allow). Forced here by a
/// `min_landlock_abi` of 9, above every kernel's ABI known today (7 on this build's hosts).
#[test]
fn a_refused_launch_is_audited_with_its_cause_and_the_degradation_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let pol = policy(
        dir.path(),
        &format!(
            "version = 1\n[layers]\nmin_landlock_abi = 9\n[audit]\nfile = {:?}\n",
            log.to_str().unwrap()
        ),
    );
    let o = stockade(
        &["--json", "exec", "--policy", &pol, "--", "/bin/true"],
        b"",
    );
    if code(&o) == 0 {
        // A kernel of Landlock ABI 9 or above: nothing to refuse; the layer says so.
        let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
        let abi = r["layers"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["layer"] == "landlock"))
            .map(|l| l["details"]["abi"].as_u64().unwrap_or(0));
        assert!(abi >= Some(9), "{r}");
        return;
    }
    assert_eq!(code(&o), 125, "{}{}", out(&o), err(&o));
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j["error"]["kind"], "layer_unavailable", "{j}");
    let text = std::fs::read_to_string(&log).unwrap();
    let rec: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "launch")
        .unwrap_or_else(|| panic!("no launch record: {text}"));
    assert_eq!(rec["outcome"], "failed", "{rec}");
    let d = &rec["detail"];
    assert_eq!(d["kind"], "layer_unavailable", "{rec}");
    assert_eq!(d["refused"], "landlock", "{rec}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("layer `landlock` cannot be enforced") && error.contains("kernel ABI"),
        "{rec}"
    );
    assert_eq!(d["command"], serde_json::json!(["/bin/true"]), "{rec}");
    let o = stockade(&["--json", "audit", "verify", log.to_str().unwrap()], b"");
    assert_eq!(code(&o), 0, "{}", out(&o));
}
