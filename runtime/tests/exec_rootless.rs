//! Rootless mode: the same binary run by an unprivileged user (via `setpriv`), with
//! unprivileged user namespaces. The default policy allows running without a distinct uid and
//! without a cgroup in this mode and the report must say so.

mod exec_common;
use exec_common::*;
use std::path::Path;
use std::process::Command;

fn rootless(args: &[&str]) -> Option<std::process::Output> {
    rootless_with(&[], args)
}

/// [`rootless`], with `prefix` (a command taking the runtime's command line as its arguments)
/// run before the runtime.
fn rootless_with(prefix: &[&str], args: &[&str]) -> Option<std::process::Output> {
    rootless_under(&[], prefix, args)
}

/// [`rootless_with`], with `outer` (a command taking the rest as its arguments) run as root
/// before the switch to the unprivileged user.
fn rootless_under(outer: &[&str], prefix: &[&str], args: &[&str]) -> Option<std::process::Output> {
    rootless_as(&["--clear-groups"], outer, prefix, args)
}

/// [`rootless_under`], the unprivileged user's supplementary groups set by `groups` (setpriv's
/// `--clear-groups` or `--groups LIST`).
fn rootless_as(
    groups: &[&str],
    outer: &[&str],
    prefix: &[&str],
    args: &[&str],
) -> Option<std::process::Output> {
    if !require(is_root(), "switching to an unprivileged user needs root") {
        return None;
    }
    if !require(
        Path::new("/usr/bin/setpriv").exists(),
        "setpriv (util-linux) is needed",
    ) {
        return None;
    }
    let userns = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .map(|s| s.trim() != "0")
        .unwrap_or(true);
    if !require(userns, "unprivileged user namespaces are disabled") {
        return None;
    }
    // The host's /etc/stockade (an installed package's policy allows no rootless degradation)
    // must not decide these tests: an empty policy root, readable by the unprivileged user.
    let empty = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(
        empty.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = Command::new(outer.first().copied().unwrap_or("/usr/bin/setpriv"));
    if !outer.is_empty() {
        cmd.args(&outer[1..]).arg("/usr/bin/setpriv");
    }
    cmd.env("STOCKADE_POLICY_ROOT", empty.path());
    cmd.args(["--reuid", "65534", "--regid", "65534"])
        .args(groups);
    cmd.args(prefix).arg(BIN);
    cmd.args(args).current_dir("/");
    Some(cmd.output().unwrap())
}

#[test]
fn rootless_launch_works_and_reports_what_it_cannot_enforce() {
    let Some(o) = rootless(&[
        "--json", "exec", "--", "/bin/sh", "-c",
        "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; echo hi > /tmp/t && cat /tmp/t",
    ]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "1000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nhi\n"
    );
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    assert_eq!(r["mode"], "rootless");
    assert_eq!(r["host_uid"], 65534);
    let d = layer(&r, "distinct_uid");
    assert_eq!(d["status"], "not_enforced");
    assert_eq!(d["degradation_allowed"], true);
    // Fully on a recent kernel, partially (older ABI, reported) on Debian's 6.1.
    assert_ne!(layer(&r, "landlock")["status"], "not_enforced");
    assert_eq!(layer(&r, "seccomp")["status"], "fully_enforced");
}

#[test]
fn rootless_launch_without_json_warns_of_each_degradation_on_stderr() {
    let Some(o) = rootless(&["exec", "--", "/bin/echo", "out"]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    // The program's stdout is untouched; the warnings go to stderr, one line per layer.
    assert_eq!(out(&o), "out\n");
    let e = err(&o);
    assert!(
        e.lines().any(|l| l.starts_with(
            "stockade: warning: layer `distinct_uid` is not enforced (rootless mode; \
             the policy allows this degradation): rootless:"
        )),
        "{e}"
    );
    assert!(
        e.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with("stockade: warning: layer `")),
        "{e}"
    );
}

/// The audit log says what a degraded launch ran without, not only that a layer was below full
/// strength: the mode, and each degraded layer with its reason (`detail.degraded`, as the
/// agent's `ready` state has it). Before audit-135 the record held `distinct_uid:not_enforced`
/// alone, and nothing said the launch was rootless or why the cgroup was missing.
#[test]
fn rootless_launch_record_says_the_mode_and_why_each_layer_is_degraded() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    // The log's directory is the unprivileged user's: only its owner appends to it.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    if is_root() {
        chown(&logs, Some(65534), Some(65534)).unwrap();
    }
    let log = logs.join("audit.log");
    let pol = policy(
        dir.path(),
        &format!("version = 1\n[audit]\nfile = \"{}\"\n", log.display()),
    );
    std::fs::set_permissions(&pol, PermissionsExt::from_mode(0o644)).unwrap();
    let Some(o) = rootless(&["exec", "--policy", &pol, "--", "/bin/true"]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let launch = &records[0];
    assert_eq!(launch["event"], "launch", "{text}");
    assert!(
        launch["layers"]
            .as_array()
            .unwrap()
            .contains(&"distinct_uid:not_enforced".into()),
        "{text}"
    );
    assert_eq!(launch["detail"]["mode"], "rootless", "{text}");
    let degraded = launch["detail"]["degraded"].as_array().unwrap();
    let uid = degraded
        .iter()
        .find(|d| d["layer"] == "distinct_uid")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(uid["status"], "not_enforced");
    assert!(
        uid["reason"].as_str().unwrap().starts_with("rootless"),
        "{text}"
    );
    // Every layer below full strength is there with its status, and no layer at full strength.
    let below: Vec<&str> = launch["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .filter(|l| !l.ends_with(":fully_enforced"))
        .collect();
    assert_eq!(below.len(), degraded.len(), "{text}");
}

/// A rootless program keeps the caller's supplementary groups (setgroups is denied in the
/// user namespace), and the host checks its files against them: the `distinct_uid`
/// degradation names them (`details.supplementary_groups`, and its reason: the warning on
/// stderr, the agent's `degraded`, the audit record's `detail.degraded`). Before audit-135
/// only the `identity` layer's `supplementary_groups_cleared: false` said it, under
/// `fully_enforced`.
#[test]
fn rootless_degradation_names_the_supplementary_groups_kept() {
    let Some(o) = rootless_as(
        &["--groups", "4,24"],
        &[],
        &[],
        &["--json", "exec", "--", "/bin/true"],
    ) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let d = layer(&r, "distinct_uid");
    assert_eq!(
        d["details"]["supplementary_groups"],
        serde_json::json!([4, 24]),
        "{d}"
    );
    let reason = d["details"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("supplementary host groups (4, 24)"),
        "{reason}"
    );
    // Without groups, nothing is claimed.
    let Some(o) = rootless(&["--json", "exec", "--", "/bin/true"]) else {
        return;
    };
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let d = layer(&r, "distinct_uid");
    assert_eq!(
        d["details"]["supplementary_groups"],
        serde_json::json!([]),
        "{d}"
    );
}

#[test]
fn rootless_policy_without_the_degradation_is_refused() {
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[layers]\nallow_degraded_rootless = []\n",
    );
    std::fs::set_permissions(&pol, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let Some(o) = rootless(&["exec", "--policy", &pol, "--", "/bin/true"]) else {
        return;
    };
    assert_eq!(code(&o), 125, "{}", err(&o));
    assert!(err(&o).contains("distinct_uid"), "{}", err(&o));
}

#[test]
fn rootless_program_cannot_read_the_runtimes_memory_or_environment() {
    let Some(o) = rootless(&[
        "exec",
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/1/environ >/dev/null 2>&1 && echo environ-readable; \
         head -c1 /proc/1/mem >/dev/null 2>&1 && echo mem-readable; echo end",
    ]) else {
        return;
    };
    assert_eq!(out(&o), "end\n", "{}", err(&o));
}

#[test]
fn rootless_without_a_memory_cgroup_still_bounds_memory_with_rlimit_data() {
    let alloc = "import sys\ntry:\n    b = bytearray(400 * 1024 * 1024)\nexcept MemoryError:\n    sys.exit(3)\nprint('allocated')";
    // Native control: the allocation itself works on this machine.
    let native = Command::new("python3")
        .args(["-c", alloc])
        .output()
        .unwrap();
    assert_eq!(native.status.code(), Some(0), "native control failed");
    let Some(o) = rootless(&["--json", "exec", "--", "/usr/bin/python3", "-c", alloc]) else {
        return;
    };
    assert_eq!(code(&o), 3, "{}{}", out(&o), err(&o));
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    let cg = layer(&r, "cgroup");
    if cg["status"] == "not_enforced" {
        let data = &layer(&r, "rlimits")["details"]["data"];
        assert_eq!(data["bytes"], 256 * 1024 * 1024, "{r}");
    }
}

/// A `#!` script is read by its interpreter through `/dev/fd/N`, a descriptor the runtime opened
/// on the host. Rootless, the program's host uid is the caller's, the script's owner: through
/// that descriptor it used to `chmod` (even 4777), re-date and set attributes on the caller's
/// own file on the host, outside every writable bind. It is now a descriptor of a read-only
/// bind of the file: each such change fails with EROFS and the file is left as it was.
#[test]
fn rootless_script_cannot_change_its_own_file_on_the_host() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("tool.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nchmod 4777 \"$0\" && echo chmod-changed\n\
         touch -d 2001-01-01 \"$0\" && echo time-changed\necho ran\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&script, Some(65534), Some(65534)).unwrap();
    let before = std::fs::metadata(&script).unwrap();
    let Some(o) = rootless(&["exec", "--", script.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "ran\n", "{}", err(&o));
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    let after = std::fs::metadata(&script).unwrap();
    assert_eq!(after.mode(), before.mode(), "the host file's mode changed");
    assert_eq!(
        after.mtime(),
        before.mtime(),
        "the host file's times changed"
    );
    assert_eq!(std::fs::read(&script).unwrap().len() as u64, before.len());
    // Native control: the same script run by its owner outside a sandbox does change the file.
    let native = Command::new("/usr/bin/setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        "chmod-changed\ntime-changed\nran\n"
    );
    assert_eq!(std::fs::metadata(&script).unwrap().mode() & 0o7777, 0o4777);
}

/// The same through `/proc/self/exe`, for any program: rootless, `chmod 4777 /proc/self/exe`
/// used to make the caller's own binary setuid and world-writable on the host.
#[test]
fn rootless_program_cannot_change_its_own_binary_on_the_host() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = dir.path().join("chmod");
    std::fs::copy("/bin/chmod", &own).unwrap();
    std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
    for mode in [0o755, 0o111] {
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(mode)).unwrap();
        let Some(o) = rootless(&[
            "exec",
            "--",
            own.to_str().unwrap(),
            "4777",
            "/proc/self/exe",
        ]) else {
            return;
        };
        assert_ne!(code(&o), 0, "{}", err(&o));
        assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
        let now = std::fs::metadata(&own).unwrap().mode() & 0o7777;
        assert_eq!(now, mode, "the host binary's mode changed ({mode:o})");
    }
    // Native control: run by its owner outside a sandbox, it does change itself.
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let native = Command::new("/usr/bin/setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&own)
        .args(["4777", "/proc/self/exe"])
        .output()
        .unwrap();
    assert!(native.status.success(), "{native:?}");
    assert_eq!(std::fs::metadata(&own).unwrap().mode() & 0o7777, 0o4777);
}

/// Build `app/bin/tool`, linked with `-rpath $ORIGIN/../lib` to `app/lib/libf.so`, printing
/// `f()` and its `/proc/self/exe`; owned by the rootless caller (65534). None without gcc.
fn origin_app(app: &Path) -> Option<()> {
    if !require(
        Path::new("/usr/bin/gcc").exists(),
        "gcc builds the $ORIGIN program",
    ) {
        return None;
    }
    let (bin, lib) = (app.join("bin"), app.join("lib"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(app.join("f.c"), "int f(void) { return 42; }\n").unwrap();
    std::fs::write(
        app.join("main.c"),
        "#include <stdio.h>\n#include <unistd.h>\nint f(void);\n\
         int main(void) { char b[4096]; ssize_t n = readlink(\"/proc/self/exe\", b, sizeof b - 1);\n\
         b[n < 0 ? 0 : n] = 0; printf(\"f=%d exe=%s\\n\", f(), b); return 0; }\n",
    )
    .unwrap();
    let cc = |args: &[&str]| {
        let o = Command::new("/usr/bin/gcc")
            .args(args)
            .current_dir(app)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    cc(&["-shared", "-fPIC", "-o", "lib/libf.so", "f.c"]);
    cc(&[
        "-o",
        "bin/tool",
        "main.c",
        "-Llib",
        "-lf",
        "-Wl,-rpath,$ORIGIN/../lib",
    ]);
    std::fs::copy("/bin/chmod", bin.join("chmod")).unwrap();
    for p in [
        app,
        &bin,
        &lib,
        &bin.join("tool"),
        &bin.join("chmod"),
        &lib.join("libf.so"),
    ] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    Some(())
}

/// A program the caller owns is executed from a read-only place, and when the sandbox shows
/// it (here under a `read_only` bind) that place is the sandbox's own bind: `/proc/self/exe`
/// names its path inside, so glibc's `$ORIGIN` finds the program's library. It used to be a
/// detached bind of the file alone, whose `/proc/self/exe` reads `/`: the loader failed with
/// `libf.so: cannot open shared object file`. Changing the file through it still fails.
#[test]
fn rootless_origin_program_finds_its_library_through_its_own_path() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Not under /tmp: the sandbox's own /tmp covers that.
    let dir = tempfile::Builder::new().tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = dir.path().join("app");
    if origin_app(&app).is_none() {
        return;
    }
    let pol = policy(
        dir.path(),
        &format!(
            "version = 1\n[filesystem]\nread_only = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \
             \"/etc/ld.so.cache\", \"{}\"]\n",
            app.display()
        ),
    );
    std::fs::set_permissions(&pol, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tool = app.join("bin/tool");
    let Some(o) = rootless(&["exec", "--policy", &pol, "--", tool.to_str().unwrap()]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        format!("f=42 exe={}\n", tool.display()),
        "{}",
        err(&o)
    );
    let own = app.join("bin/chmod");
    let before = std::fs::metadata(&own).unwrap().mode();
    let o = rootless(&[
        "exec",
        "--policy",
        &pol,
        "--",
        own.to_str().unwrap(),
        "4777",
        "/proc/self/exe",
    ])
    .unwrap();
    assert_ne!(code(&o), 0, "{}", err(&o));
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    assert_eq!(std::fs::metadata(&own).unwrap().mode(), before);
}

/// A program the caller owns, deleted since the runtime opened it (an upgraded binary a
/// rootless `serve` runs through `/proc/self/exe`), has no path left to bind read-only: it runs
/// from a sealed in-memory copy of what the runtime opened. It used to fail with 125 at
/// `mount_sources`, "No such file or directory", naming no file.
#[test]
fn rootless_program_deleted_since_it_was_opened_runs_from_a_sealed_copy() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let own = dir.path().join("readlink");
    std::fs::copy("/usr/bin/readlink", &own).unwrap();
    std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
    // Open it as fd 3, delete it, and have the runtime execute that descriptor.
    let Some(o) = rootless_with(
        &[
            "/bin/sh",
            "-c",
            "exec 3<\"$0\" && rm \"$0\" && exec \"$@\"",
            own.to_str().unwrap(),
        ],
        &["exec", "--", "/proc/self/fd/3", "/proc/self/exe"],
    ) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        out(&o).starts_with("/memfd:stockade-program"),
        "{}",
        out(&o)
    );
    assert!(!own.exists());
    // Renamed over (an upgrade): the path names another file now; what runs is still the one
    // the runtime opened.
    std::fs::copy("/usr/bin/readlink", &own).unwrap();
    std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
    let o = rootless_with(
        &[
            "/bin/sh",
            "-c",
            "exec 3<\"$0\" && cp /bin/true \"$0.new\" && mv \"$0.new\" \"$0\" && exec \"$@\"",
            own.to_str().unwrap(),
        ],
        &["exec", "--", "/proc/self/fd/3", "/proc/self/exe"],
    )
    .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        out(&o).starts_with("/memfd:stockade-program"),
        "{}",
        out(&o)
    );
}

/// A rootless runtime started by a caller at nice -5 under `SCHED_FIFO` in the real-time I/O
/// class (root's `chrt -f 1`, `ionice -c1` before the switch), with limits raised and lowered:
/// the program used to get all of it. It gets nice 0, `SCHED_OTHER`, I/O class "none", the
/// runtime's limits — bounded by the caller's hard ones, which
/// the sandbox cannot raise, and the launch still works.
#[test]
fn rootless_program_gets_the_runtimes_priority_and_rlimits() {
    let probe = "cut -d' ' -f19,41 /proc/self/stat; grep -E '^Max (stack size|msgqueue size|\
                 address space)' /proc/self/limits | tr -s ' ' | cut -d' ' -f4,5; ionice -p $$ \
                 | cut -d: -f1";
    let outer = [
        "/usr/bin/chrt",
        "-f",
        "1",
        "/usr/bin/nice",
        "-n",
        "-5",
        "/usr/bin/ionice",
        "-c1",
        "-n0",
    ];
    let prefix = [
        "/usr/bin/prlimit",
        "--stack=unlimited:",
        "--msgqueue=1000:",
        "--as=3221225472",
    ];
    let Some(o) = rootless_under(&outer, &prefix, &["exec", "--", "/bin/sh", "-c", probe]) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "0 0\n8388608 8388608\n3221225472 3221225472\n0 0\nnone\n",
        "{}",
        err(&o)
    );
    // Native control: all of it reaches a program the unprivileged caller starts.
    let native = Command::new(outer[0])
        .args(&outer[1..])
        .arg("/usr/bin/setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(prefix)
        .args(["/bin/sh", "-c", probe])
        .output()
        .unwrap();
    let text = out(&native);
    assert!(
        text.starts_with("-5 1\nunlimited unlimited\n3221225472 3221225472\n1000 ")
            && text.ends_with("\nrealtime\n"),
        "{text}{}",
        err(&native)
    );
}

/// A rootless launch whose policy does not allow running without a cgroup, in a cgroup not
/// delegated to the caller, stops with 125 `layer_unavailable`, the cause the refused operation's
/// own error (`Permission denied`), and a hint that names delegation (on cgroup v2; on a v1 or
/// hybrid host, that it does not give a user these controllers). Before audit-144 the cause
/// on a cgroup v1 host was ENOENT on `memory.limit_in_bytes` (the crate swallowed the mkdir's
/// EACCES) and the hint said only "run as root, or allow the degradation".
#[test]
fn rootless_launch_without_an_allowed_cgroup_degradation_names_the_cause_and_delegation() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let pol = policy(
        dir.path(),
        "version = 1\n[layers]\nallow_degraded_rootless = [\"distinct_uid\"]\n",
    );
    std::fs::set_permissions(&pol, PermissionsExt::from_mode(0o644)).unwrap();
    let Some(o) = rootless(&["--json", "exec", "--policy", &pol, "--", "/bin/true"]) else {
        return;
    };
    if code(&o) == 0 {
        // The caller's cgroup is delegated to it here: the limits were enforced, nothing to refuse.
        let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
        assert_eq!(layer(&r, "cgroup")["status"], "fully_enforced", "{r}");
        return;
    }
    assert_eq!(code(&o), 125, "{}{}", out(&o), err(&o));
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let e = &j["error"];
    assert_eq!(e["kind"], "layer_unavailable", "{j}");
    assert!(
        e["causes"].to_string().contains("Permission denied"),
        "the refused operation's own error: {j}"
    );
    // Delegation where it gives a user the controllers (cgroup v2); on a v1 or hybrid host, why
    // it does not (helper-152: the v2 advice was given there too).
    let hint = e["hint"].as_str().unwrap();
    match stockade_runtime::sandbox::cgroup::host_mode() {
        stockade_runtime::sandbox::cgroup::HostMode::V2 => {
            assert!(
                hint.contains("systemd-run --user --scope -p Delegate=yes"),
                "{j}"
            )
        }
        _ => {
            assert!(hint.contains("cgroup v2 subtree only"), "{j}");
            assert!(!hint.contains("systemd-run"), "{j}");
        }
    }
}
