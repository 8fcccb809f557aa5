//! Capabilities mode: the binary run as a non-root user holding exactly CAP_SETUID, CAP_SETGID
//! and CAP_KILL (ambient), in a cgroup delegated to that user — what the shipped
//! `stockade.service` gives the `stockade` user (`User=`, `AmbientCapabilities=`, `Delegate=`).
//! Every plugin must still get its own host uid and every layer must be enforced, exactly as in
//! root mode; with one of the three capabilities missing the runtime is plainly rootless.
//!
//! The service environment is imitated with a private mount namespace (`unshare -m`), in which a
//! directory owned by the test user stands in for `/run/stockade` (the uid-lock directory the
//! package's tmpfiles.d snippet gives to `stockade`), a cgroup per v1 controller created below
//! our own and chowned to the user (what `Delegate=yes` does), and `setpriv`.

mod exec_common;
use exec_common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The unprivileged user the runtime runs as (nobody: exists everywhere, owns nothing).
const USER: u32 = 65534;
/// A uid range of its own, so these sandboxes never meet the root-mode tests' locks.
const UID_FIRST: u32 = 330000;

/// The v1 controllers the runtime limits (memory, cpu, pids) and our own cgroup in each, or
/// `None` when they are not all v1 (pure v2: the runtime's delegation path there is the
/// unit's `Delegate=yes`, which this test cannot imitate without moving the test harness
/// itself out of its cgroup).
fn own_v1_cgroups() -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut out = Vec::new();
    for ctrl in ["memory", "cpu", "pids"] {
        let line = text.lines().find(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next();
            f.next().is_some_and(|c| c.split(',').any(|c| c == ctrl))
        })?;
        let (list, path) = line.split_once(':').map(|(_, r)| r.split_once(':'))??;
        let mount = [ctrl, list]
            .iter()
            .map(|n| Path::new("/sys/fs/cgroup").join(n))
            .find(|p| p.join("cgroup.procs").exists())?;
        out.push(mount.join(path.trim_start_matches('/')));
    }
    Some(out)
}

/// A delegated cgroup per controller; removed on drop (the runtime removes its own children).
struct Delegated(Vec<PathBuf>);

impl Delegated {
    fn new(tag: &str) -> Option<Self> {
        let own = own_v1_cgroups()?;
        let mut made = Vec::new();
        for base in own {
            let d = base.join(format!("stockade-captest-{}-{tag}", std::process::id()));
            std::fs::create_dir(&d).ok()?;
            for f in ["", "cgroup.procs", "tasks"] {
                let p = if f.is_empty() { d.clone() } else { d.join(f) };
                std::os::unix::fs::chown(&p, Some(USER), Some(USER)).ok()?;
            }
            made.push(d);
        }
        Some(Delegated(made))
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for d in &self.0 {
            // Our wrapper process has exited; the directory is empty once the runtime has
            // removed the sandbox's cgroup (asserted by the tests through `cleaned_up`).
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Run `stockade ARGS` as [`USER`] with the given ambient capabilities, in the imitated service
/// environment. `None` when the host cannot (the reason printed; a failure under CI=true).
fn run_as_service(caps: &str, tag: &str, args: &[&str]) -> Option<(Output, tempfile::TempDir)> {
    if !require(
        is_root(),
        "imitating the service's user and cgroup needs root",
    ) {
        return None;
    }
    for tool in ["/usr/bin/setpriv", "/usr/bin/unshare"] {
        if !require(
            Path::new(tool).exists(),
            "setpriv and unshare (util-linux) are needed",
        ) {
            return None;
        }
    }
    let cg = Delegated::new(tag);
    if !require(
        cg.is_some(),
        "memory, cpu and pids must be cgroup v1 controllers (hybrid host) to imitate Delegate=yes",
    ) {
        return None;
    }
    let cg = cg.unwrap();
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    // The stand-in for /run/stockade: 0755, with uids/ owned by the service user (tmpfiles.d).
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("uids")).unwrap();
    std::fs::set_permissions(&run, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(run.join("uids"), PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(run.join("uids"), Some(USER), Some(USER)).unwrap();
    std::fs::create_dir_all("/run/stockade").unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("version = 1\n[identity]\nuid_first = {UID_FIRST}\nuid_count = 64\n[resources]\npids_max = 16\n"),
    )
    .unwrap();
    std::fs::set_permissions(&policy, PermissionsExt::from_mode(0o644)).unwrap();

    let join: String =
        cg.0.iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs' && ", d.display()))
            .collect();
    let script = format!(
        "set -e; mount --bind '{run}' /run/stockade; {join} exec /usr/bin/setpriv \
         --reuid={USER} --regid={USER} --clear-groups --inh-caps={caps} --ambient-caps={caps} \
         --bounding-set=-all,{caps} \"$@\"",
        run = run.display()
    );
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(BIN)
    .args(["--json", "exec", "--policy"])
    .arg(&policy)
    .arg("--")
    .args(args)
    .current_dir("/");
    let out = cmd.output().unwrap();
    drop(cg);
    Some((out, dir))
}

const ALL: &str = "+setuid,+setgid,+kill";

#[test]
fn capabilities_mode_gives_a_distinct_uid_and_every_layer() {
    let Some((o, _d)) = run_as_service(
        ALL,
        "full",
        &[
            "/bin/sh",
            "-c",
            "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             (sleep 60 &); echo left-a-child",
        ],
    ) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "1000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nleft-a-child\n"
    );
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    assert_eq!(r["mode"], "capabilities");
    let uid = r["host_uid"].as_u64().unwrap();
    assert!(
        (UID_FIRST as u64..UID_FIRST as u64 + 64).contains(&uid),
        "host uid {uid} is not from the policy's range"
    );
    assert_eq!(layer(&r, "distinct_uid")["status"], "fully_enforced");
    assert_eq!(layer(&r, "cgroup")["status"], "fully_enforced");
    assert_eq!(
        layer(&r, "identity")["details"]["supplementary_groups_cleared"],
        true
    );
    for l in r["layers"].as_array().unwrap() {
        assert_ne!(l["status"], "not_enforced", "{l}");
        assert!(l.get("degradation_allowed").is_none(), "{l}");
    }
    // The orphaned `sleep` ran under another host uid: killing it needed CAP_KILL, and the
    // sandbox's cgroup is gone.
    assert_eq!(r["cleaned_up"], true, "{r}");
}

#[test]
fn capabilities_mode_enforces_the_pids_limit() {
    let Some((o, _d)) = run_as_service(
        ALL,
        "pids",
        &[
            "/bin/sh",
            "-c",
            "n=0; for i in $(seq 40); do sleep 30 & n=$((n+1)); done 2>/dev/null; echo done",
        ],
    ) else {
        return;
    };
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    assert_eq!(r["mode"], "capabilities");
    assert!(
        r["limits_hit"]["pids_max_events"].as_u64().unwrap_or(0) > 0,
        "16 pids at most, 40 forks tried: {r}"
    );
    assert_eq!(r["cleaned_up"], true, "{r}");
}

#[test]
fn one_capability_short_is_rootless_not_a_mix() {
    let Some((o, _d)) = run_as_service("+setuid,+setgid", "short", &["/bin/true"]) else {
        return;
    };
    let r: serde_json::Value = serde_json::from_str(&err(&o)).unwrap();
    assert_eq!(r["mode"], "rootless", "{r}");
    assert_eq!(r["host_uid"], USER);
    assert_eq!(layer(&r, "distinct_uid")["status"], "not_enforced");
    assert_eq!(code(&o), 0, "{}", err(&o));
}
