//! `stockade exec` really launching programs: status passthrough, runtime failure codes, the
//! environment, identity and the posture seen from inside.

mod exec_common;
use exec_common::*;
use std::process::Command;

#[test]
fn exit_status_is_passed_through() {
    assert_eq!(code(&sh(&[], "exit 0")), 0);
    assert_eq!(code(&sh(&[], "exit 7")), 7);
    assert_eq!(code(&sh(&[], "exit 255")), 255);
}

#[test]
fn death_by_signal_is_128_plus_n() {
    // The program is not pid 1 of its namespace, so it can signal itself like anywhere else.
    assert_eq!(code(&sh(&[], "kill -9 $$")), 137);
    assert_eq!(code(&sh(&[], "kill -TERM $$")), 143);
}

#[test]
fn missing_program_is_127_and_non_executable_is_126() {
    let o = stockade(&["exec", "--", "/nonexistent/program"], b"");
    assert_eq!(code(&o), 127, "{}", err(&o));
    assert!(err(&o).contains("not found"));
    let o = stockade(&["exec", "--", "no-such-program-anywhere"], b"");
    assert_eq!(code(&o), 127);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("data");
    std::fs::write(&f, "not a program").unwrap();
    let o = stockade(&["exec", "--", f.to_str().unwrap()], b"");
    assert_eq!(code(&o), 126, "{}", err(&o));
    let o = stockade(&["exec", "--", "/usr"], b"");
    assert_eq!(code(&o), 126);
}

/// A program that exists but whose interpreter does not inside the sandbox is said to be so —
/// it was "program `…` not found" with the hint to give a name found in $PATH on the host,
/// about a file that is there: a virtualenv's python, a `#!` line saved with CR LF endings.
#[test]
fn a_missing_interpreter_is_named_not_the_program() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, content: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, content).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        f.to_str().unwrap().to_string()
    };
    let venv = script("venv", "#!/opt/no-such-venv/bin/python3\nprint(1)\n");
    let o = stockade(&["exec", "--", &venv], b"");
    assert_eq!(code(&o), 127, "{}", err(&o));
    assert!(
        err(&o).contains("its `#!` interpreter `/opt/no-such-venv/bin/python3` does not exist inside the sandbox"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("$PATH on the host"), "{}", err(&o));
    let crlf = script("crlf", "#!/bin/sh\r\necho hi\r\n");
    let o = stockade(&["exec", "--json", "--", &crlf], b"");
    assert_eq!(code(&o), 127, "{}", err(&o));
    let e: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(e["error"]["kind"], "interpreter_not_found", "{e}");
    assert!(
        e["error"]["causes"][0].as_str().unwrap().contains("CR LF"),
        "{e}"
    );
}

#[test]
fn stdio_is_relayed() {
    let o = stockade(&["exec", "--", "/bin/cat"], b"through the pipes\n");
    assert_eq!(code(&o), 0);
    assert_eq!(out(&o), "through the pipes\n");
    let o = sh(&[], "echo to-out; echo to-err >&2");
    assert_eq!(out(&o), "to-out\n");
    assert!(err(&o).contains("to-err"));
}

#[test]
fn environment_is_cleared_except_base_and_env_flags() {
    // A variable in the runtime's environment must not leak into the sandbox.
    let o = std::process::Command::new(BIN)
        .env("STOCKADE_TEST_SECRET", "leaked")
        .args([
            "exec",
            "--env",
            "FOO=bar",
            "--env",
            "PATH=/bin",
            "--",
            "/usr/bin/env",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    let mut vars: Vec<String> = out(&o).lines().map(str::to_string).collect();
    vars.sort();
    assert_eq!(
        vars,
        vec!["FOO=bar", "HOME=/tmp", "PATH=/bin", "TMPDIR=/tmp"]
    );
    let o = stockade(&["exec", "--env", "NOEQUALS", "--", "/bin/true"], b"");
    assert_eq!(code(&o), 64);
}

#[test]
fn runs_unprivileged_with_every_restriction_in_proc_status() {
    let o = sh(&[], "id -u; id -g; cat /proc/self/status");
    assert_eq!(code(&o), 0, "{}", err(&o));
    let text = out(&o);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1000"));
    for (k, v) in [
        ("CapInh:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapEff:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
        ("Seccomp:", "2"),
    ] {
        let line = text.lines().find(|l| l.starts_with(k)).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some(v), "{line}");
    }
    let groups = text.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(
        !groups.split_whitespace().skip(1).any(|g| g == "0"),
        "{groups}"
    );
}

#[test]
fn network_is_empty() {
    let o = sh(&[], "cat /proc/net/dev");
    assert_eq!(code(&o), 0, "{}", err(&o));
    let ifaces: Vec<String> = out(&o)
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    assert!(ifaces.iter().all(|i| i == "lo"), "{ifaces:?}");
    // Only AF_UNIX sockets can be created in network mode "none".
    if let Some(net) = helper("net") {
        let o = stockade(&["exec", "--", net.to_str().unwrap(), "inet"], b"");
        assert_eq!(out(&o).trim(), "EAFNOSUPPORT", "{}", err(&o));
    }
}

#[test]
fn tmp_is_writable_and_everything_else_read_only() {
    let o = sh(
        &[],
        "echo hi > /tmp/f && cat /tmp/f; touch /usr/x 2>/dev/null && echo usr-writable; \
         touch /x 2>/dev/null && echo root-writable; touch /etc/x 2>/dev/null && echo etc-writable; \
         mkdir /dev/x 2>/dev/null && echo dev-writable; echo done",
    );
    assert_eq!(out(&o), "hi\ndone\n", "{}", err(&o));
}

#[test]
fn host_secrets_are_absent() {
    let o = sh(
        &[],
        "test -e /etc/shadow && echo shadow; test -e /root && echo root; test -e /sys && echo sys; \
         test -e /home && echo home; cat /proc/kcore 2>/dev/null | head -c 1 | wc -c; \
         cat /proc/1/environ | tr '\\0' '\\n' | grep -c STOCKADE_TEST; echo end",
    );
    assert_eq!(out(&o), "0\n0\nend\n", "{}", err(&o));
}

#[test]
fn forbidden_syscall_kills_with_sigsys() {
    // unshare(CLONE_NEWUSER) is outside every group: seccomp kills the process (128 + 31).
    let o = stockade(&["exec", "--", "/usr/bin/unshare", "-U", "/bin/true"], b"");
    assert_eq!(code(&o), 159, "{}", err(&o));
}

#[test]
fn scripts_run_through_their_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("script.sh");
    std::fs::write(&s, "#!/bin/sh\necho \"script $# $1\"\n").unwrap();
    std::fs::set_permissions(&s, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = stockade(&["exec", "--", s.to_str().unwrap(), "arg"], b"");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "script 1 arg\n");
}

/// The pid `--pid-file PF` names, once the runtime wrote it (polled: up to 10 s).
fn pid_from(pf: &std::path::Path) -> i32 {
    for _ in 0..1000 {
        if let Ok(t) = std::fs::read_to_string(pf) {
            return t.trim().parse().expect("a pid");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("pid file not written");
}

#[test]
fn pid_file_names_the_running_program_and_signals_are_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("pid");
    let mut child = exec_with_pid_file(&pf, &["/bin/sleep", "60"]);
    let pid = pid_from(&pf);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Name:") && l.contains("sleep")),
        "{status}"
    );
    assert!(status.lines().any(|l| l == "Seccomp:\t2"));
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("2"), "{nspid}");
    if is_root() {
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let host: u32 = uid.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((200_000..265_536).contains(&host), "{uid}");
    }
    // SIGTERM to the runtime is forwarded to the program, which dies of it: 128 + 15.
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(!pf.exists());
}

#[test]
fn program_has_a_session_keyring_of_its_own_not_the_callers() {
    // The program was attached to the runtime's caller's session keyring (a login's keys):
    // unreachable by keyctl inside, but the kernel searches a possessor's keyrings for it. Now
    // the init joins a new one once its ids are the plugin's: a keyring the plugin uid owns
    // exists while it runs. Before, that uid owned no key at all (the caller's is root's, and
    // nothing inside can make one: keyctl and add_key are refused).
    if !require(
        is_root(),
        "a plugin uid of its own (root mode) owns its keyring",
    ) {
        return;
    }
    // A uid range of this test's own: the default range's uids are every other launch's too
    // (other tests, other runtimes on the host), and a keyring of a launch that just ended there
    // is counted until the kernel collects it — which made this pass without the join.
    const UID: u32 = 3_716_000;
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("pid");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("version = 1\n[identity]\nuid_first = {UID}\nuid_count = 1\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["exec", "--policy", policy.to_str().unwrap()])
        .args(["--pid-file", pf.to_str().unwrap(), "--", "/bin/sleep", "60"])
        .spawn()
        .unwrap();
    let pid = pid_from(&pf);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uid: u32 = uid.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(uid, UID, "{status}");
    // `/proc/key-users`: "UID: usage nkeys/nikeys qnkeys/maxkeys qnbytes/maxbytes".
    let users = std::fs::read_to_string("/proc/key-users").unwrap();
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let keys = users
        .lines()
        .find(|l| l.trim_start().strip_prefix(&format!("{uid}:")).is_some())
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.split('/').next()?.parse::<u32>().ok());
    // At least: this test's previous run's keyring may not be collected yet.
    assert!(keys.is_some_and(|n| n >= 1), "uid {uid}:\n{users}");
}

#[test]
fn a_refused_keyctl_stops_the_launch_and_says_so() {
    // Fail closed, as the other inherited process state does, where the caller's keyring cannot
    // be left (a unit's SystemCallFilter=~@keyring): the program must not run attached to it.
    // ENOSYS too, a container's filter's answer: this kernel has keys (`/proc/key-users`), so
    // it is a refusal, not a kernel without keyrings to inherit.
    assert!(std::path::Path::new("/proc/key-users").exists());
    for errno in [libc::EPERM, libc::ENOSYS] {
        let mut c = Command::new(BIN);
        c.args(["exec", "--", "/bin/echo", "ran"]);
        let o = refusing_with(libc::SYS_keyctl, errno, c);
        assert_eq!(code(&o), 125, "errno {errno}: {}{}", out(&o), err(&o));
        assert_eq!(out(&o), "", "the program must not run");
        let e = err(&o);
        assert!(e.contains("step `process_state`"), "{e}");
        assert!(e.contains("session keyring") && e.contains("keyctl"), "{e}");
    }
}

/// A program that closed its stdout and stderr but runs on still gets the signals the
/// runtime receives (the runtime no longer relays, but must not stop listening).
#[test]
fn signals_are_forwarded_after_the_program_closed_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("pid");
    let command = ["/bin/sh", "-c", "exec >&- 2>&-; exec /bin/sleep 60"];
    let mut child = exec_with_pid_file(&pf, &command);
    // Running as sleep, with its output closed.
    let mut closed = false;
    for _ in 0..1000 {
        let pid = std::fs::read_to_string(&pf).unwrap_or_default();
        let proc = format!("/proc/{}", pid.trim());
        let comm = std::fs::read_to_string(format!("{proc}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" && std::fs::symlink_metadata(format!("{proc}/fd/1")).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(closed, "the program did not start or close its output");
    // The runtime sees the EOFs and is past the relay.
    std::thread::sleep(std::time::Duration::from_millis(200));
    sigterm(&child);
    // Not a timing assertion: a guard so that a regression fails instead of hanging 60 s.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > until {
            child.kill().unwrap();
            panic!("SIGTERM was not forwarded to a program that closed its output");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
}

#[test]
fn json_report_goes_to_stderr_after_the_output() {
    let o = stockade(&["--json", "exec", "--", "/bin/echo", "plain"], b"");
    assert_eq!(code(&o), 0);
    assert_eq!(out(&o), "plain\n", "stdout holds only the program's output");
    let r: serde_json::Value = serde_json::from_str(&err(&o)).expect("stderr is one JSON document");
    assert_eq!(r["schema"], "stockade.sandbox.report/1");
    assert_eq!(r["exit"]["status"], 0);
    assert_eq!(r["cleaned_up"], true);
    for l in r["layers"].as_array().unwrap() {
        let s = l["status"].as_str().unwrap();
        let explained = l["layer"] == "cgroup" && l["details"]["not_applied"].is_array();
        assert!(
            s == "fully_enforced" || l["degradation_allowed"] == true || explained,
            "a layer below full must be an allowed degradation: {l}"
        );
    }
    for name in [
        "user_namespace",
        "pid_namespace",
        "mount_namespace",
        "network_namespace",
        "ipc_namespace",
        "uts_namespace",
        "cgroup_namespace",
        "identity",
        "distinct_uid",
        "filesystem",
        "rlimits",
        "capabilities",
        "no_new_privs",
        "landlock",
        "seccomp",
    ] {
        layer(&r, name);
    }
}

#[test]
fn program_starts_with_default_signal_dispositions_and_mask() {
    let o = stockade(
        &[
            "exec",
            "--",
            "/bin/grep",
            "-E",
            "^Sig(Ign|Blk):",
            "/proc/self/status",
        ],
        b"",
    );
    assert_eq!(
        out(&o),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

/// `sh -c SCRIPT` with `$BIN` the binary under test.
fn shell(script: &str) -> std::process::Output {
    Command::new("/bin/sh")
        .args(["-c", script, "sh", BIN])
        .output()
        .unwrap()
}

#[test]
fn program_umask_is_022_whatever_the_callers() {
    // A caller's umask 000 used to reach the program, whose files in a writable bind were then
    // world-writable on the host (any user, any other plugin given the directory, could rewrite
    // them).
    let probe = "umask; touch /tmp/f; stat -c %a /tmp/f";
    let o = shell(&format!(
        "umask 000; exec \"$1\" exec -- /bin/sh -c '{probe}'"
    ));
    assert_eq!(out(&o), "0022\n644\n", "{}", err(&o));
    let o = shell(&format!(
        "umask 077; exec \"$1\" exec -- /bin/sh -c '{probe}'"
    ));
    assert_eq!(out(&o), "0022\n644\n", "{}", err(&o));
    // Native control: the caller's umask does reach a program it starts.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    let o = shell(&format!(
        "umask 000; umask; touch '{0}'; stat -c %a '{0}'",
        f.display()
    ));
    assert_eq!(out(&o), "0000\n666\n");
}

#[test]
fn program_personality_has_no_flags_of_the_runtime() {
    // `setarch -R` (ADDR_NO_RANDOMIZE) on the runtime used to run the program without ASLR; it
    // cannot undo that itself (`personality` is refused by the seccomp filter).
    if !require(
        Command::new("setarch").arg("--version").output().is_ok(),
        "needs setarch (util-linux)",
    ) {
        return;
    }
    // Native control: the flag survives exec outside a sandbox.
    let native = shell("exec setarch \"$(uname -m)\" -R /bin/cat /proc/self/personality");
    assert_eq!(out(&native), "00040000\n", "{}", err(&native));
    let o = shell("exec setarch \"$(uname -m)\" -R \"$1\" exec -- /bin/cat /proc/self/personality");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "00000000\n", "{}", err(&o));
}

/// `CMD…` run in a new UTS namespace whose NIS domain name is `corp-secret.internal` (root only).
fn with_domain_name(cmd: &[&str]) -> std::process::Output {
    Command::new("unshare")
        .args([
            "-u",
            "/bin/sh",
            "-c",
            "echo corp-secret.internal > /proc/sys/kernel/domainname && exec \"$@\"",
            "sh",
        ])
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn program_sees_no_nis_domain_name_of_the_hosts() {
    // The sandbox's UTS namespace is made with a copy of the runtime's names: the hostname was
    // replaced, the NIS domain name (`domainname`, in every `uname`) was every plugin's.
    if !require(
        is_root(),
        "a domain name set in a new UTS namespace (unshare -u) needs root",
    ) {
        return;
    }
    const NAME: &str = "/proc/sys/kernel/domainname";
    // Native control: a program started there sees it.
    let native = with_domain_name(&["/bin/cat", NAME]);
    assert_eq!(out(&native), "corp-secret.internal\n", "{}", err(&native));
    let o = with_domain_name(&[BIN, "--json", "exec", "--", "/bin/cat", NAME]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "(none)\n", "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let process = &layer(&r, "process")["details"];
    assert_eq!(process["domainname"], "(none)", "{process}");
}

/// `cmd` started under a seccomp filter that refuses `syscall` with EPERM and allows the rest
/// (what a systemd unit's `SystemCallFilter=` without it gives the runtime); stdin closed.
fn refusing(syscall: libc::c_long, cmd: Command) -> std::process::Output {
    refusing_with(syscall, libc::EPERM, cmd)
}

/// [`refusing`] with `errno` as the filter's answer.
fn refusing_with(syscall: libc::c_long, errno: i32, mut cmd: Command) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        [(syscall, vec![])].into_iter().collect(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(errno.unsigned_abs()),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    // SAFETY: between fork and exec only `prctl` and `seccomp` (the filter built before the
    // fork) are called.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            seccompiler::apply_filter(&filter).map_err(std::io::Error::other)
        });
    }
    cmd.stdin(std::process::Stdio::null()).output().unwrap()
}

/// `with_domain_name`'s command under a filter refusing `setdomainname` (a unit whose
/// `SystemCallFilter=` lacks it, or `ProtectHostname=yes`); writing
/// `/proc/sys/kernel/domainname` is no `setdomainname`.
fn with_domain_name_unsettable(cmd: &[&str]) -> std::process::Output {
    let mut c = Command::new("unshare");
    c.args([
        "-u",
        "/bin/sh",
        "-c",
        "echo corp-secret.internal > /proc/sys/kernel/domainname && exec \"$@\"",
        "sh",
    ])
    .args(cmd);
    refusing(libc::SYS_setdomainname, c)
}

#[test]
fn a_refused_setdomainname_stops_the_launch_and_says_so() {
    // Fail closed where the copied domain name cannot be hidden, and say which call and which
    // unit setting: the step alone (`hostname`, whose sethostname was allowed) said only
    // "Operation not permitted".
    if !require(
        is_root(),
        "a domain name set in a new UTS namespace (unshare -u) needs root",
    ) {
        return;
    }
    let o = with_domain_name_unsettable(&[BIN, "exec", "--", "/bin/echo", "ran"]);
    assert_eq!(code(&o), 125, "{}{}", out(&o), err(&o));
    assert_eq!(out(&o), "", "the program must not run");
    let e = err(&o);
    assert!(e.contains("step `hostname`"), "{e}");
    assert!(
        e.contains("setdomainname") && e.contains("SystemCallFilter="),
        "{e}"
    );
}

/// A command whose process ran `prctl(option, value)` first (state fork and exec keep); stdin
/// closed. The kernel must know the option (the test host's does).
fn with_prctl(option: libc::c_int, value: libc::c_ulong, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    // SAFETY: between fork and exec only `prctl`, async-signal-safe, is called.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(option, value, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdin(std::process::Stdio::null()).output().unwrap()
}

/// A command with KSM merging every page (`PR_SET_MEMORY_MERGE` 1, Linux 6.4, no privilege
/// needed: what systemd's `MemoryKSM=yes` gives a unit).
fn with_ksm_merge_any(args: &[&str]) -> std::process::Output {
    with_prctl(libc::PR_SET_MEMORY_MERGE, 1, args)
}

#[test]
fn program_memory_is_not_merged_by_ksm_unasked_whatever_the_callers() {
    // A runtime under `MemoryKSM=yes` handed every plugin KSM's merging of all its pages, which
    // exposes their contents to a co-resident process's page-deduplication timing probe.
    const STAT: &str = "/proc/self/ksm_stat";
    // Native control: the flag survives exec outside a sandbox.
    let native = with_ksm_merge_any(&["/bin/cat", STAT]);
    assert!(
        out(&native).contains("ksm_merge_any: yes"),
        "{}{}",
        out(&native),
        err(&native)
    );
    let o = with_ksm_merge_any(&[BIN, "--json", "exec", "--", "/bin/cat", STAT]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("ksm_merge_any: no"), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["ksm_merge_any"], false, "{ps}");
    assert_eq!(ps["ksm_merge_any_inherited"], true, "{ps}");
}

/// A command with a timer slack of 123456789 ns (a caller's `PR_SET_TIMERSLACK`, a unit's
/// `TimerSlackNSec=`).
fn with_timer_slack(args: &[&str]) -> std::process::Output {
    with_prctl(libc::PR_SET_TIMERSLACK, 123_456_789, args)
}

#[test]
fn program_timer_slack_is_the_kernels_default_not_the_callers() {
    // The caller's slack was the program's, and its default too (what its own
    // `PR_SET_TIMERSLACK` 0 returns to): the runtime's caller chose the plugin's timer precision.
    const SLACK: &str = "/proc/self/timerslack_ns";
    // Native control: the slack survives exec outside a sandbox.
    let native = with_timer_slack(&["/bin/cat", SLACK]);
    assert_eq!(out(&native), "123456789\n", "{}", err(&native));
    let o = with_timer_slack(&[BIN, "--json", "exec", "--", "/bin/cat", SLACK]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "50000\n", "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["timer_slack_ns"], 50_000, "{ps}");
    assert_eq!(ps["timer_slack_ns_inherited"], 123_456_789, "{ps}");
}

#[test]
fn runtime_waits_are_not_as_late_as_the_callers_timer_slack() {
    // The runtime kept its caller's slack for its own waits (sleep-polls for the init's exit,
    // the cgroup's emptying, the log queue): each was up to the slack late, so a caller's 2^40
    // ns (18 min) made `exec -- /bin/true` hang, and 2^63 ns for good. The child is killed
    // after 60 s (the watchdog: no timing is asserted, a launch takes well under a second).
    use std::os::unix::process::CommandExt;
    const SLACK: libc::c_ulong = 1 << 40;
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "exec", "--", "/bin/true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec only `prctl`, async-signal-safe, is called.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_TIMERSLACK, SLACK, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let o = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill takes no pointer; `pid` is the child spawned above, not yet reaped
            // (the waiting thread has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("`stockade exec -- /bin/true` under a timer slack of 2^40 ns hung (killed)");
        }
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["timer_slack_ns"], 50_000, "{ps}");
    assert_eq!(ps["timer_slack_ns_inherited"], SLACK, "{ps}");
}

/// `sh -c SCRIPT` with `$1` the binary under test and `$2` a probe (a script for `sh -c`).
fn shell_probe(script: &str, probe: &str) -> std::process::Output {
    Command::new("/bin/sh")
        .args(["-c", script, "sh", BIN, probe])
        .output()
        .unwrap()
}

/// The nice value and scheduling policy (fields 19 and 41 of `/proc/self/stat`), the soft and
/// hard values of the limits no policy key names (stack, rss, as, locks, msgqueue, rttime), and
/// the I/O priority.
const PRIORITY_PROBE: &str = "cut -d' ' -f19,41 /proc/self/stat; sed -nE 's/^Max (stack size|\
     resident set|address space|file locks|msgqueue size|realtime timeout) +([^ ]+) +([^ ]+).*/\\1 \
     \\2 \\3/p' /proc/self/limits; ionice -p $$";

/// A caller at nice -5 in the real-time I/O class, with limits raised (soft, up to the hard ones) and lowered.
const PRIORITY_CALLER: &str = "nice -n -5 ionice -c1 -n0 prlimit --stack=unlimited: --rss=4096: \
     --as=3221225472 --locks=100: --msgqueue=1000: --rttime=5000:";

#[test]
fn program_priority_and_rlimits_are_the_runtimes_whatever_the_callers() {
    // A runtime started at nice -5 (a unit's Nice=-5) gave every plugin nice -5 (and the
    // real-time I/O class of IOSchedulingClass=realtime), and every
    // rlimit no policy key names (a shell's `ulimit -s unlimited`, a unit's LimitMSGQUEUE=) was
    // the caller's. Needs root for the negative nice value.
    if !require(is_root(), "a negative nice value needs root")
        || !require(
            Command::new("prlimit").arg("--version").output().is_ok(),
            "needs prlimit (util-linux)",
        )
    {
        return;
    }
    // Native control: all of it reaches a program the caller starts.
    let native = shell_probe(
        &format!("exec {PRIORITY_CALLER} /bin/sh -c \"$2\""),
        PRIORITY_PROBE,
    );
    let text = out(&native);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"-5 0"), "{text}{}", err(&native));
    for line in [
        "stack size unlimited unlimited",
        "resident set 4096 unlimited",
        "address space 3221225472 3221225472",
        "file locks 100 unlimited",
        "realtime timeout 5000 unlimited",
    ] {
        assert!(lines.contains(&line), "{line}: {text}");
    }
    assert!(text.contains("\nmsgqueue size 1000 "), "{text}");
    assert_eq!(lines.last(), Some(&"realtime: prio 0"), "{text}");
    let o = shell_probe(
        &format!("exec {PRIORITY_CALLER} \"$1\" --json exec -- /bin/sh -c \"$2\""),
        PRIORITY_PROBE,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    // nice 0, SCHED_OTHER; the runtime's values, but never above the caller's hard limit (the
    // address space: 3 GiB), which a sandbox cannot raise.
    let text = out(&o);
    let (text, io) = text.trim_end().rsplit_once('\n').unwrap_or_default();
    // Out of the real-time class ("none" here; a kernel may show it derived: "best-effort").
    assert!(!io.starts_with("realtime"), "{io}");
    assert_eq!(
        format!("{text}\n"),
        "0 0\nstack size 8388608 8388608\nresident set unlimited unlimited\naddress space \
         3221225472 3221225472\nfile locks unlimited unlimited\nmsgqueue size 0 0\nrealtime \
         timeout unlimited unlimited\n",
        "{}",
        err(&o)
    );
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["nice"], 0, "{ps}");
    assert_eq!(ps["nice_inherited"], -5, "{ps}");
    assert_eq!(ps["scheduling"], "SCHED_OTHER", "{ps}");
    assert_eq!(ps["umask"], "0022", "{ps}");
    assert_eq!(ps["io_priority_inherited"], "realtime: prio 0", "{ps}");
    let rl = &layer(&r, "rlimits")["details"];
    assert_eq!(rl["stack"], serde_json::json!({"max": 8 << 20}), "{rl}");
    assert_eq!(
        rl["as"],
        serde_json::json!({"max": 3_221_225_472_u64}),
        "{rl}"
    );
    assert_eq!(rl["msgqueue"], serde_json::json!({"max": 0}), "{rl}");
    for key in ["locks", "rss", "rttime", "data"] {
        assert_eq!(rl[key], "unlimited", "{key}: {rl}");
    }
}

/// A root-mode runtime under a real-time policy (`chrt -f 10`, a unit's
/// `CPUSchedulingPolicy=fifo`) launches: its child leaves the policy before it joins its
/// cgroup, which the cpu controller refuses a real-time task (EINVAL on `cgroup.procs`, v1's
/// `cpu.rt_runtime_us` 0 in every new group) — the launch failed at `cgroup_join` (125). The
/// program runs `SCHED_OTHER` and the report still names the runtime's `SCHED_FIFO` as the
/// policy it replaced.
#[test]
fn a_real_time_runtime_launches_with_its_program_out_of_the_real_time_policy() {
    if !require(is_root(), "a real-time policy needs CAP_SYS_NICE (root)")
        || !require(
            Command::new("chrt").arg("--version").output().is_ok(),
            "needs chrt (util-linux)",
        )
    {
        return;
    }
    let probe = "cut -d' ' -f19,41 /proc/self/stat";
    // Native control: root here may run a program under SCHED_FIFO (policy 1), which keeps it.
    let native = shell_probe("exec chrt -f 10 /bin/sh -c \"$2\"", probe);
    if !require(
        out(&native) == "0 1\n",
        "root here may not set SCHED_FIFO (no CAP_SYS_NICE, or no real-time budget for its \
         cgroup): nothing to test",
    ) {
        return;
    }
    let o = shell_probe(
        "exec chrt -f 10 \"$1\" --json exec -- /bin/sh -c \"$2\"",
        probe,
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "0 0\n", "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["scheduling"], "SCHED_OTHER", "{ps}");
    assert_eq!(ps["scheduling_inherited"], "SCHED_FIFO", "{ps}");
    let cg = layer(&r, "cgroup");
    assert_ne!(cg["status"], "not_enforced", "{cg}");
}

#[test]
fn program_oom_score_adj_is_never_below_zero() {
    if !require(
        Command::new("choom").arg("--version").output().is_ok(),
        "needs choom (util-linux)",
    ) {
        return;
    }
    let probe = "cat /proc/self/oom_score_adj";
    // A positive value is kept: a plugin more killable than the default harms no one (and a
    // value above the floor a privileged writer left could not be lowered anyway).
    let o = shell_probe(
        "exec choom -n 300 -- \"$1\" --json exec -- /bin/sh -c \"$2\"",
        probe,
    );
    assert_eq!(out(&o), "300\n", "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    assert_eq!(layer(&r, "process_state")["details"]["oom_score_adj"], 300);
    // A negative one (a unit's OOMScoreAdjust=-900) shielded every plugin from the OOM killer.
    let can_lower = Command::new("choom")
        .args(["-n", "-500", "--", "/bin/true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_lower {
        // Giving the runtime a negative value takes CAP_SYS_RESOURCE, which root lacks on the
        // CI host (a container's bounding set). Not a skip: the kernel matrix's posture check
        // runs with its runner at -500 (sandbox-tests/qemu/guest/battery.sh) and fails on any
        // sandboxed thread below 0 (`posture::priority_diff`).
        eprintln!("the -500 half runs in the kernel matrix: this root cannot lower oom_score_adj");
        return;
    }
    // Native control: it reaches a program the caller starts.
    let native = shell_probe("exec choom -n -500 -- /bin/sh -c \"$2\"", probe);
    assert_eq!(out(&native), "-500\n", "{}", err(&native));
    let o = shell_probe(
        "exec choom -n -500 -- \"$1\" --json exec -- /bin/sh -c \"$2\"",
        probe,
    );
    assert_eq!(out(&o), "0\n", "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let ps = &layer(&r, "process_state")["details"];
    assert_eq!(ps["oom_score_adj"], 0, "{ps}");
    assert_eq!(ps["oom_score_adj_inherited"], -500, "{ps}");
}

#[test]
fn a_closed_output_reaches_the_program_as_sigpipe() {
    // `stockade exec -- yes | head -1` must end: when our stdout is gone, the program's is too.
    let o = Command::new("/bin/sh")
        .args(["-c", &format!("{BIN} exec -- /usr/bin/yes | head -1")])
        .output()
        .unwrap();
    assert_eq!(out(&o), "y\n");
}

#[test]
fn init_command_line_does_not_reveal_the_runtime_arguments() {
    // /proc/1/cmdline is world-readable in the pid namespace; the init is a fork of the runtime,
    // so without care it would show the runtime's argv (host paths, --env values).
    let o = stockade(
        &[
            "exec",
            "--env",
            "MARKER=cmdline-canary-4711",
            "--",
            "/bin/cat",
            "/proc/1/cmdline",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let shown = out(&o);
    assert!(shown.starts_with("stockade-init\0"), "{shown:?}");
    assert!(!shown.contains("canary"), "{shown:?}");
    assert!(!shown.contains("exec"), "{shown:?}");
    // Native control: the same read outside a sandbox does show a process's own arguments.
    let native = Command::new("/bin/cat")
        .args(["/proc/self/cmdline", "cmdline-canary-4711"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&native.stdout).contains("canary"));
}

/// The runtime may hold many descriptors (`stockade serve` holds three pipes per plugin): none of
/// them reaches the sandbox, and they do not count against the sandbox's `nofile` limit (256 by
/// default), which used to make the Landlock step fail with EMFILE past ~250 plugins.
#[test]
fn inherited_descriptors_are_closed_before_the_limits() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let held: Vec<std::fs::File> = (0..400)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let raws: Vec<i32> = held.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(BIN);
    cmd.args(["exec", "--", "/bin/sh", "-c", "ls /proc/self/fd | wc -l"]);
    // SAFETY: between fork and exec only `fcntl` is called, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raws {
                // Clear FD_CLOEXEC: the runtime starts with 400 extra open descriptors.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let o = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    // 0, 1, 2 and the directory `ls` reads.
    assert_eq!(out(&o).trim(), "4", "{}", out(&o));
    drop(held);
}

/// `--pid-file` and `--report` that cannot be written refuse with 73 before anything runs (the
/// report used to be refused after the program ran, the pid file skipped without a word), and
/// leave nothing behind.
#[test]
fn outputs_that_cannot_be_written_refuse_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let sub = sub.to_str().unwrap();
    for (flag, path) in [
        ("--pid-file", "/nonexistent/d/pid"),
        ("--report", "/nonexistent/d/r.json"),
        ("--pid-file", sub),
        ("--report", sub),
    ] {
        let o = stockade(&["exec", flag, path, "--", "/bin/echo", "RAN"], b"");
        assert_eq!(code(&o), 73, "{flag} {path}: {}", err(&o));
        assert_eq!(out(&o), "", "{flag} {path}: the program ran");
        assert!(err(&o).contains(path), "{}", err(&o));
    }
    // Nothing left in the directories that exist (no temporary file, no output).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(sub).unwrap().count(), 0);
}

/// An exec SIGKILLed while its program runs cannot clean up: its report's temporary file (held
/// from before the launch until the report is written) and its pid file stay. The next exec
/// writing an output in that directory sweeps the stale temporary (this uid's, unlocked,
/// unchanged for a minute: never one in use), and replaces the pid file, which it removes at
/// its end as always; so nothing of the killed one is left.
#[test]
fn a_killed_execs_leftovers_go_with_the_next_exec_of_that_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (pf, rep) = (dir.path().join("pid"), dir.path().join("r.json"));
    let (pf_s, rep_s) = (pf.to_str().unwrap(), rep.to_str().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["exec", "--pid-file", pf_s, "--report", rep_s, "--"])
        .args(["/bin/sleep", "60"])
        .spawn()
        .unwrap();
    for _ in 0..1000 {
        if pf.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pf.exists(), "pid file written");
    child.kill().unwrap();
    child.wait().unwrap();
    let temporaries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".stockade-tmp-")
            })
            .map(|e| e.path())
            .collect()
    };
    let left = temporaries();
    assert_eq!(left.len(), 1, "the report's temporary: {left:?}");
    // Stale: unchanged for longer than a live writer ever leaves it.
    std::fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
        .unwrap();
    let o = stockade(
        &[
            "exec",
            "--pid-file",
            pf_s,
            "--report",
            rep_s,
            "--",
            "/bin/true",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(temporaries(), Vec::<std::path::PathBuf>::new());
    assert!(!pf.exists(), "the pid file is removed at the end");
    assert!(rep.exists());
}

/// A program that ends at once still has its host pid known (the kernel names its process at
/// the launch): the pid file asked for is written and the report says the pid, where the /proc
/// lookup alone found nothing once the init had reaped it.
#[test]
fn a_program_that_ends_at_once_still_has_its_pid() {
    let Some(quick) = helper("quick_exit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("pid");
    let rep = dir.path().join("report.json");
    for _ in 0..12 {
        let o = stockade(
            &[
                "exec",
                "--pid-file",
                pf.to_str().unwrap(),
                "--report",
                rep.to_str().unwrap(),
                "--",
                quick.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(code(&o), 0, "{}", err(&o));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
        assert!(
            report["pid"].as_i64().is_some_and(|p| p > 1),
            "no pid in the report: {report}"
        );
        // Written, and removed again when the program ended.
        assert!(!pf.exists());
    }
    // Only the report: no temporary file left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `--env KEY` passes KEY's value from stockade's own environment, so a secret never sits on
/// the command line (`/proc/<pid>/cmdline`, readable by every local user); a KEY that is not set
/// is refused (64 `bad_env`); the refusal of a malformed `--env` never repeats its value.
#[test]
fn env_by_name_takes_the_value_from_the_callers_environment() {
    let o = std::process::Command::new(BIN)
        .env("STOCKADE_TEST_TOKEN", "s3cr3t-value")
        .env("STOCKADE_TEST_OTHER", "not passed")
        .args([
            "exec",
            "--env",
            "STOCKADE_TEST_TOKEN",
            "--",
            "/bin/sh",
            "-c",
            "echo \"$STOCKADE_TEST_TOKEN\"; echo \"${STOCKADE_TEST_OTHER:-unset}\"",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "s3cr3t-value\nunset\n");
    let o = std::process::Command::new(BIN)
        .env_remove("STOCKADE_TEST_UNSET")
        .args(["exec", "--env", "STOCKADE_TEST_UNSET", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 64, "{}", err(&o));
    let o = stockade(&["exec", "--env", "=hunter2", "--", "/bin/true"], b"");
    assert_eq!(code(&o), 64);
    assert!(!err(&o).contains("hunter2"), "{}", err(&o));
}

/// A directory whose name is the byte 0xFF (not UTF-8), made in `parent`.
fn not_utf8_dir(parent: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let d = parent.join(std::ffi::OsStr::from_bytes(b"odd-\xff"));
    std::fs::create_dir(&d).unwrap();
    d
}

/// `BIN ARGS` in a private mount namespace where a tmpfs is mounted at `at` first (root only).
fn with_mount_at(at: &std::path::Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
        .arg("mount -t tmpfs audit171 \"$1\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(at)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// audit-171: `/proc/self/mountinfo` writes a mount point's bytes as they are but for space,
/// tab, newline and backslash; one mount anywhere whose path is not UTF-8 (a user's FUSE mount
/// in a directory of their own, a USB stick's Latin-1 label) made the runtime's
/// `read_to_string` of it fail, which refused every launch needing a cgroup (125, "stream did
/// not contain valid UTF-8") and made the refusal's hint say the host mounts no cgroup fs.
#[test]
fn a_mount_whose_path_is_not_utf8_stops_no_launch() {
    if !require(is_root(), "a mount in a private mount namespace needs root") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let at = not_utf8_dir(t.path());
    // Native control: the namespace has the mount, and it is listed with its raw byte.
    let native = with_mount_at(&at, &["/bin/cat".as_ref(), "/proc/self/mountinfo".as_ref()]);
    assert_eq!(code(&native), 0, "{}", err(&native));
    assert!(
        native.stdout.windows(5).any(|w| w == b"odd-\xff"),
        "the mount is not listed: {}",
        out(&native)
    );
    let o = with_mount_at(
        &at,
        &[
            BIN.as_ref(),
            "exec".as_ref(),
            "--".as_ref(),
            "/bin/true".as_ref(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
}

/// audit-171: on a v1 host the controllers are found through mountinfo; one mounted at a path
/// that is not UTF-8 is used there, byte for byte (not a lossy look-alike with U+FFFD), and the
/// report names it in valid JSON (lossy: serde's own form of such a path panicked the launch).
#[test]
fn a_v1_controller_mounted_at_a_path_not_utf8_is_used_there() {
    let hybrid = std::fs::read_to_string("/proc/self/cgroup")
        .is_ok_and(|c| c.lines().any(|l| l.split(':').nth(1) == Some("pids")));
    if !require(
        is_root() && hybrid,
        "a v1 pids hierarchy remounted in a private mount namespace needs root on a v1 host",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let at = not_utf8_dir(t.path());
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
        .arg(
            "umount /sys/fs/cgroup/pids && mount -t cgroup -o pids audit171 \"$1\" && \
             mkdir \"$1/audit171\" && echo $$ > \"$1/audit171/cgroup.procs\" && \
             \"$2\" exec --json -- /bin/true; s=$?; echo $$ > \"$1/cgroup.procs\"; \
             ls \"$1/audit171\" | grep -c stockade; rmdir \"$1/audit171\"; exit $s",
        )
        .arg("sh")
        .arg(&at)
        .arg(BIN)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "0\n", "the group was not removed: {}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let cg = &layer(&r, "cgroup")["details"];
    let want = format!("{}/audit171/stockade-", at.to_string_lossy());
    assert!(
        cg["paths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&want)),
        "{cg}"
    );
}

/// audit-171: a `$PATH` that is not UTF-8 is searched as it is. It was replaced by the default
/// `/usr/local/bin:/usr/bin:/bin` (`env::var` fails on it): another program than the shell's
/// ran, or none.
#[test]
fn a_path_entry_not_utf8_is_searched() {
    let t = tempfile::tempdir().unwrap();
    let bin = not_utf8_dir(t.path());
    let prog = bin.join("audit171-probe");
    std::fs::write(&prog, "#!/bin/sh\necho found\n").unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":/usr/bin:/bin");
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .env("PATH", &path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Native control: the shell finds it.
    let native = run("/bin/sh", &["-c", "audit171-probe"]);
    assert_eq!(out(&native), "found\n", "{}", err(&native));
    let o = run(BIN, &["exec", "--json", "--", "audit171-probe"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "found\n");
    // The report names it in valid JSON, lossily.
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let shown = prog.to_string_lossy();
    assert_eq!(layer(&r, "process")["details"]["program"], *shown);
}

/// An empty `$PATH` entry is not the current directory (as it is to `execvp`): a stray `::`
/// would run a file planted wherever the runtime was started (docs/sandbox.md, audit-171).
#[test]
fn an_empty_path_entry_is_not_the_current_directory() {
    let t = tempfile::tempdir().unwrap();
    let prog = t.path().join("audit171-cwd");
    std::fs::write(&prog, "#!/bin/sh\necho planted\n").unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for path in ["/usr/bin::/bin", "/usr/bin:", ""] {
        let o = Command::new(BIN)
            .args(["exec", "--", "audit171-cwd"])
            .env("PATH", path)
            .current_dir(t.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&o), 127, "PATH={path:?}: {}", out(&o));
    }
}

/// audit-171: `--plugin-dir` not UTF-8 is bound itself. Its bind source was opened by its lossy
/// text, which names another directory — the one with U+FFFD where the byte is, bound instead
/// when it exists — and the report names it in valid JSON.
#[test]
fn a_plugin_dir_not_utf8_is_bound_not_its_lookalike() {
    let t = tempfile::tempdir().unwrap();
    let real = not_utf8_dir(t.path());
    let lookalike = t.path().join("odd-\u{fffd}");
    std::fs::create_dir(&lookalike).unwrap();
    std::fs::write(real.join("f"), "real\n").unwrap();
    std::fs::write(lookalike.join("f"), "lookalike\n").unwrap();
    let o = Command::new(BIN)
        .args(["exec", "--json", "--plugin-dir"])
        .arg(&real)
        .args(["--", "/bin/cat", "/plugin/f"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "real\n");
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let fs = &layer(&r, "filesystem")["details"];
    assert_eq!(fs["package"], *real.to_string_lossy(), "{fs}");
}
