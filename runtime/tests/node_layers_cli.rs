//! `stockade node info`'s layer facts and policy prediction, and the launch's hint on a host
//! that restricts user namespaces (brief-165), with the real binary.
//!
//! The restricted host is made for real without changing this one: `unshare --user` gives the
//! test a private user namespace, in which `user.max_user_namespaces` (a per-user-namespace
//! limit) is set to 0 — RHEL's switch — before the binary runs there as a rootless caller.
//! Debian's `kernel.unprivileged_userns_clone` and Ubuntu's
//! `kernel.apparmor_restrict_unprivileged_userns` do not exist on this kernel: those are unit
//! tests against a fake /proc/sys (`sandbox::facts`, `sandbox::tests`).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_stockade");

/// Run `stockade args…`, in a private user namespace whose `user.max_user_namespaces` is 0 when
/// `restricted`. Returns (exit code, stdout, stderr).
fn stockade(restricted: bool, args: &[&str]) -> (i32, String, String) {
    let out = if restricted {
        // uid 1000 inside (a rootless caller: root mode would want the plugins' uid range,
        // which is not mapped here), with the namespace's capabilities kept for the write, then
        // dropped before the binary runs.
        Command::new("unshare")
            .args([
                "--user",
                "--map-user=1000",
                "--map-group=1000",
                "--keep-caps",
                "sh",
                "-c",
            ])
            .arg(
                "echo 0 > /proc/sys/user/max_user_namespaces && \
                 exec setpriv --inh-caps=-all --ambient-caps=-all \"$0\" \"$@\"",
            )
            .arg(BIN)
            .args(args)
            .output()
    } else {
        Command::new(BIN).args(args).output()
    }
    .expect("run stockade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn policy_file(dir: &Path, text: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `node info` reports each layer's facts as this host has them, read as the launch reads
/// them: the seccomp actions the kernel lists, the cgroup mode and the namespaces this caller
/// can make.
#[test]
fn node_info_reports_the_hosts_layer_facts() {
    let state = tempfile::tempdir().unwrap();
    let (code, out, err) = stockade(
        false,
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let f = &v["layer_facts"];
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").ok();
    assert_eq!(f["seccomp"]["filter"], actions.is_some(), "{f}");
    if let Some(a) = actions {
        let listed: Vec<&str> = a.split_whitespace().collect();
        assert_eq!(f["seccomp"]["actions"], serde_json::json!(listed));
    }
    // What `unshare` says of the same namespaces, made by one clone as the launch makes them.
    let native = Command::new("unshare")
        .args(["--user", "--pid", "--mount", "--fork", "true"])
        .status()
        .unwrap()
        .success();
    assert_eq!(f["user_namespaces"]["creatable"], native, "{f}");
    assert!(
        ["v1", "v2", "hybrid", "none"].contains(&f["cgroup"]["mode"].as_str().unwrap()),
        "{f}"
    );
    assert!(f["landlock"]["abi"].is_u64(), "{f}");
    assert!(v.get("policy_layers").is_none(), "{v}");
    // The human form names each.
    let (code, text, err) = stockade(
        false,
        &[
            "node",
            "info",
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for line in ["landlock: ", "user namespaces: ", "seccomp: ", "cgroup: "] {
        assert!(text.contains(line), "{text}");
    }
}

/// On a host whose `user.max_user_namespaces` is 0, `node info` says the namespaces cannot be
/// made, names the switch and its way out, and, given a policy, that a launch would be refused
/// at `user_namespace` whatever the policy allows; a launch is refused (125
/// `layer_unavailable`) with the same switch and way out in its hint.
#[test]
fn a_host_without_user_namespaces_is_said_before_and_at_launch() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        dir.path(),
        "version = 1\n[layers]\nmin_landlock_abi = 0\nallow_degraded = [\"landlock\", \
         \"landlock_network\", \"landlock_scope\", \"cgroup\", \"distinct_uid\"]\n",
    );
    let st = state.path().to_str().unwrap();
    let (code, out, err) = stockade(
        true,
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            st,
            "--policy",
            &policy,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let u = &v["layer_facts"]["user_namespaces"];
    assert_eq!(u["creatable"], false, "{u}");
    assert_eq!(u["restricted_by"], "user.max_user_namespaces", "{u}");
    assert_eq!(u["switches"]["max_user_namespaces"], 0, "{u}");
    assert!(
        u["way_out"]
            .as_str()
            .unwrap()
            .contains("sysctl -w user.max_user_namespaces="),
        "{u}"
    );
    let layers = v["policy_layers"].as_array().unwrap();
    let userns = layers
        .iter()
        .find(|l| l["layer"] == "user_namespace")
        .unwrap();
    assert_eq!(userns["outcome"], "refused", "{userns}");
    assert!(userns.get("degradation").is_none(), "{userns}");

    // The launch: refused with the switch named and its way out.
    let (code, out, err) = stockade(
        true,
        &["--json", "exec", "--policy", &policy, "--", "/bin/true"],
    );
    assert_eq!(code, 125, "{out} {err}");
    let e = out
        .lines()
        .chain(err.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j.get("error").is_some())
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(e["error"]["kind"], "layer_unavailable", "{e}");
    assert!(
        e["error"]["causes"]
            .to_string()
            .contains("user.max_user_namespaces is 0"),
        "{e}"
    );
    assert!(
        e["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("sysctl -w user.max_user_namespaces="),
        "{e}"
    );

    // Without the switch, the same caller's namespaces are made and the layer is enforced.
    let (code, out, err) = stockade(
        false,
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            st,
            "--policy",
            &policy,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    if v["layer_facts"]["user_namespaces"]["creatable"] == true {
        let layers = v["policy_layers"].as_array().unwrap();
        let userns = layers
            .iter()
            .find(|l| l["layer"] == "user_namespace")
            .unwrap();
        assert_eq!(userns["outcome"], "enforced", "{userns}");
    }
}

/// A policy that is not a policy is refused before anything is tried (65, as `exec --policy`).
#[test]
fn node_info_refuses_a_bad_policy() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), "version = 1\n[layers]\nno_such_key = 1\n");
    let (code, _, err) = stockade(
        false,
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--policy",
            &policy,
        ],
    );
    assert_eq!(code, 65, "{err}");
}

/// review-170: `node info` started with SIGCHLD ignored (a disposition inherited across exec:
/// `env --ignore-signal=CHLD`, some process supervisors), under which the launch runs, says the
/// namespaces can be made: the kernel reaps the probe's child itself. The probe took
/// `waitpid`'s ECHILD for the clone's failure: "cannot make the sandbox's (No child
/// processes)", `user_namespace` predicted refused.
#[test]
fn node_info_under_an_ignored_sigchld_says_the_namespaces_can_be_made() {
    let state = tempfile::tempdir().unwrap();
    let policy = policy_file(state.path(), "version = 1\n");
    let run = |args: &[&str]| {
        let o = Command::new("env")
            .arg("--ignore-signal=CHLD")
            .arg(BIN)
            .args(args)
            .output()
            .expect("run env");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // The launch, under the same disposition, makes its namespaces.
    let (code, _, err) = run(&["exec", "--", "/bin/true"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&[
        "--json",
        "node",
        "info",
        "--state-dir",
        state.path().join("state").to_str().unwrap(),
        "--policy",
        &policy,
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let u = &v["layer_facts"]["user_namespaces"];
    assert_eq!(u["creatable"], true, "{u}");
    let p = v["policy_layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "user_namespace")
        .cloned()
        .unwrap();
    assert_eq!(p["outcome"], "enforced", "{p}");
}

/// review-170: `node info --policy`'s `cgroup` outcome is the launch's, on this host, for a
/// policy whose `swap_max` (the default, 0) a v1 or hybrid host cannot apply without
/// `memory_max`: the launch is refused `cgroup_partial` there (and runs on v2), and the
/// prediction says the same. It said `enforced` on this CI host (hybrid) while the launch was
/// refused.
#[test]
fn node_infos_cgroup_prediction_agrees_with_the_launch() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(
        dir.path(),
        "version = 1\n[resources]\nmemory_max = \"unlimited\"\n",
    );
    let (code, out, err) = stockade(
        false,
        &[
            "--json",
            "node",
            "info",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--policy",
            &policy,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let predicted = v["policy_layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "cgroup")
        .cloned()
        .unwrap();
    let (code, out, err) = stockade(
        false,
        &["--json", "exec", "--policy", &policy, "--", "/bin/true"],
    );
    if code == 125 && out.contains("cgroup_partial") {
        assert_eq!(predicted["outcome"], "refused", "{predicted} {out}");
        assert_eq!(predicted["degradation"], "cgroup_partial", "{predicted}");
    } else {
        assert_eq!(code, 0, "{out} {err}");
        assert_ne!(predicted["outcome"], "refused", "{predicted}");
    }
}
