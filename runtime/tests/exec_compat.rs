//! Compatibility paths that this host's kernel never takes by itself, forced with a seccomp
//! filter in a small C wrapper (`tests/exec_helpers/no_mount_setattr.c`, built with gcc), and
//! the filters container engines put around the runtime (`tests/exec_helpers/container_seccomp.c`:
//! what Docker's default profile refuses of what a launch needs, or `clone3` alone).

mod exec_common;
mod leftovers;
use exec_common::*;
use std::process::{Command, Stdio};

/// `container_seccomp MODE stockade ARGS…` as root; the output and the runtime's pid (the
/// wrapper execs it, so the child's pid is the runtime's).
fn in_container_seccomp(mode: &str, args: &[&str]) -> Option<(std::process::Output, u32)> {
    if !require(
        is_root(),
        "the sandbox runs in root mode under the filter or user namespace",
    ) {
        return None;
    }
    let wrapper = helper("container_seccomp")?;
    Some(output_and_pid(
        Command::new(&wrapper).arg(mode).arg(BIN).args(args),
    ))
}

/// Run `cmd` (which execs the runtime in the end: the same pid) without input; its output and
/// pid.
fn output_and_pid(cmd: &mut Command) -> (std::process::Output, u32) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// A seccomp filter around the runtime that lets the clone's namespace flags through (here
/// `clone3` → ENOSYS alone; the shipped stockade.service's SystemCallFilter= and
/// RestrictNamespaces= likewise put `Seccomp: 2` around every serve), while the kernel refuses
/// the user namespace with EPERM (here: the caller's uid unmapped in the user namespace it runs
/// in; for the unit's `stockade` user, Ubuntu's AppArmor rule or Debian's
/// kernel.unprivileged_userns_clone = 0): the hint is the kernel's refusal's, not "a seccomp
/// filter around stockade refuses the sandbox's namespaces … give the container a profile"
/// (review-168: `Seccomp: 2` alone was taken for the cause).
#[test]
fn a_kernel_refusal_of_the_namespaces_under_a_permissive_filter_is_not_blamed_on_the_filter() {
    let Some(wrapper) = helper("container_seccomp") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[layers]\nallow_degraded_rootless = [\"distinct_uid\", \"cgroup\", \
         \"cgroup_partial\", \"landlock\", \"landlock_network\", \"landlock_scope\"]\n",
    )
    .unwrap();
    // `unshare --user` without maps: the runtime is uid 65534 there, rootless, and the kernel
    // refuses a user namespace to an owner its own namespace does not map.
    let (o, pid) = output_and_pid(Command::new("unshare").args([
        "--user",
        "--",
        wrapper.to_str().unwrap(),
        "no_clone3",
        BIN,
        "--json",
        "exec",
        "--policy",
        policy.to_str().unwrap(),
        "--",
        "/bin/true",
    ]));
    assert_eq!(code(&o), 125, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["error"]["kind"], "layer_unavailable", "{doc}");
    assert!(
        doc["error"]["causes"]
            .to_string()
            .contains("Operation not permitted"),
        "{doc}"
    );
    let hint = doc["error"]["hint"].as_str().unwrap();
    assert!(!hint.contains("seccomp filter around stockade"), "{hint}");
    assert!(hint.contains("kernel.unprivileged_userns_clone"), "{hint}");
    leftovers::assert_no_sandbox_left(pid);
}

/// `clone3` answering ENOSYS (Docker's, Podman's and Kubernetes' default seccomp profiles,
/// systemd's `RestrictNamespaces=`: libc falls back to `clone`, whose flags they can read): the
/// launch makes the sandbox with `clone(2)`, every namespace and the cgroup as usual, the child
/// joining its group by `cgroup.procs`. It stopped with "sandbox setup failed at step `clone`:
/// Function not implemented" (audit-167).
#[test]
fn where_clone3_answers_enosys_the_sandbox_is_made_with_clone_and_joins_its_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("report.json");
    let Some((o, pid)) = in_container_seccomp(
        "no_clone3",
        &[
            "exec",
            "--report",
            rep.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "echo ok",
        ],
    ) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "ok\n");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    for ns in ["user", "pid", "mount", "network", "ipc", "uts", "cgroup"] {
        let l = layer(&report, &format!("{ns}_namespace"));
        assert_eq!(l["status"], "fully_enforced", "{l}");
    }
    let cg = layer(&report, "cgroup");
    assert_eq!(cg["status"], "fully_enforced", "{cg}");
    assert_eq!(
        cg["details"]["joined"], "cgroup.procs before the child runs",
        "{cg}"
    );
    leftovers::assert_no_sandbox_left(pid);
}

/// review-170: `node info`'s probe of the namespaces is the launch's own clone, `clone(2)`'s
/// fallback included: where `clone3` answers ENOSYS (and the launch above succeeds) it says this
/// caller can make them and predicts `user_namespace` enforced. It probed with `clone3` alone
/// and said "cannot make the sandbox's (Function not implemented)", the policy's launch refused.
#[test]
fn where_clone3_answers_enosys_node_info_says_the_namespaces_can_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "version = 1\n").unwrap();
    let Some((o, _)) = in_container_seccomp(
        "no_clone3",
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let u = &doc["layer_facts"]["user_namespaces"];
    assert_eq!(u["creatable"], true, "{u}");
    let layers = doc["policy_layers"].as_array().unwrap();
    let userns = layers
        .iter()
        .find(|l| l["layer"] == "user_namespace")
        .unwrap();
    assert_eq!(userns["outcome"], "enforced", "{userns}");
}

/// Docker's default profile without CAP_SYS_ADMIN (clone3 ENOSYS; clone with a namespace flag,
/// unshare, setns, mount EPERM): the launch is refused as the namespaces' refusal, 125
/// `layer_unavailable`, the cause naming a seccomp filter around the runtime — not a broken
/// `clone` step, "Function not implemented" — and nothing is left behind (the cgroup made
/// before the clone is removed).
#[test]
fn under_a_docker_like_seccomp_profile_the_launch_is_refused_naming_the_filter() {
    let Some((o, pid)) = in_container_seccomp("docker", &["--json", "exec", "--", "/bin/true"])
    else {
        return;
    };
    assert_eq!(code(&o), 125, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["error"]["kind"], "layer_unavailable", "{doc}");
    let causes = doc["error"]["causes"].to_string();
    assert!(
        causes.contains("seccomp filter around the runtime"),
        "{doc}"
    );
    assert!(causes.contains("Operation not permitted"), "{doc}");
    // The advice is the container's profile, not a sysctl nor root (which it is).
    let hint = doc["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("Seccomp: 2"), "{hint}");
    assert!(hint.contains("--security-opt seccomp="), "{hint}");
    // Or a unit's own filter: systemd's RestrictNamespaces=yes answers clone3 ENOSYS and clone
    // with a namespace flag EPERM just so (seen under systemd 252, review-168).
    assert!(hint.contains("RestrictNamespaces="), "{hint}");
    assert!(!hint.contains("run as root"), "{hint}");
    leftovers::assert_no_sandbox_left(pid);
}

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

/// Root of a user namespace that maps only itself and denies `setgroups` (`unshare -r`, as
/// bubblewrap's or a rootless container's root): the plugins' range cannot be mapped, so the
/// launch is refused before anything is made, 125 `uid_unmapped`, the cause naming the map and
/// the first id missing. It stopped at the groups' drop, "sandbox setup failed at step
/// `supplementary_groups`: Operation not permitted" (audit-167).
#[test]
fn root_of_a_user_namespace_that_does_not_map_the_uid_range_is_refused_by_name() {
    if !require(
        is_root(),
        "the sandbox runs in root mode under the filter or user namespace",
    ) {
        return;
    }
    let (o, pid) = output_and_pid(Command::new("unshare").args([
        "--user",
        "--map-root-user",
        BIN,
        "--json",
        "exec",
        "--",
        "/bin/true",
    ]));
    assert_eq!(code(&o), 125, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["error"]["kind"], "uid_unmapped", "{doc}");
    let causes = doc["error"]["causes"].to_string();
    assert!(
        causes.contains("`/proc/self/uid_map` does not map id 200000 (it maps 0–0)"),
        "{doc}"
    );
    assert!(
        doc["error"]["hint"].to_string().contains("uid_first"),
        "{doc}"
    );
    leftovers::assert_no_sandbox_left(pid);
}

/// The Landlock calls refused by a seccomp filter around the runtime (a container's profile
/// older than Landlock, EPERM): the launch fails closed, 125 `layer_unavailable`, and the hint
/// names the filter and the calls to allow, not only "use a kernel that offers it" — this kernel
/// does (audit-167).
#[test]
fn landlock_hidden_by_a_container_s_seccomp_filter_is_hinted_as_such() {
    let Some((o, pid)) =
        in_container_seccomp("no_landlock", &["--json", "exec", "--", "/bin/true"])
    else {
        return;
    };
    assert_eq!(code(&o), 125, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["error"]["kind"], "layer_unavailable", "{doc}");
    let hint = doc["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("Seccomp: 2"), "{hint}");
    assert!(hint.contains("landlock_create_ruleset"), "{hint}");
    leftovers::assert_no_sandbox_left(pid);
}

/// A Landlock refusal under a seccomp filter that lets the Landlock calls through (here
/// `clone3` → ENOSYS alone; stockade.service's SystemCallFilter= lists them): the kernel answered
/// its ABI, which is below the policy's minimum, so the hint is the kernel's and the policy's,
/// not "hidden by the seccomp filter around stockade … the cause's ABI 0 then says nothing of
/// the kernel" (review-168: `Seccomp: 2` alone was taken for the cause).
#[test]
fn a_landlock_below_the_minimum_under_a_permissive_filter_is_not_blamed_on_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[layers]\nmin_landlock_abi = 9\nallow_degraded = []\n",
    )
    .unwrap();
    let Some((o, pid)) = in_container_seccomp(
        "no_clone3",
        &[
            "--json",
            "exec",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
    ) else {
        return;
    };
    if code(&o) == 0 {
        assert!(require(false, "the kernel offers Landlock ABI 9"));
        return;
    }
    assert_eq!(code(&o), 125, "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["error"]["kind"], "layer_unavailable", "{doc}");
    let hint = doc["error"]["hint"].as_str().unwrap();
    assert!(!hint.contains("seccomp filter"), "{hint}");
    assert!(hint.contains("min_landlock_abi"), "{hint}");
    leftovers::assert_no_sandbox_left(pid);
}
