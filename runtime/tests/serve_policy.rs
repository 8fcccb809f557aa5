//! `stockade serve` on the operator policy, as `run` enforces it: layers under `--policy-root`
//! (vendor file, operator drop-in, a masked vendor drop-in), per-plugin sections, signed grants
//! for high-risk items (network loopback: granted to the plugin with a grant, withheld from the
//! one without, each observed from inside the sandbox and checked against `policy explain`), the
//! policy's `[trust]` refusing a load (answered with an error and a denial record), and the
//! audit records of a whole life under serve — verification, grant, denial, launch, termination,
//! crash restart, quarantine — in one chain that `audit verify --require-head` accepts. Real
//! sandboxes (root); the network probe uses the host's python3 through the sandbox's read-only
//! /usr, as the differential test does. A hook's deadline, failure mode and fail-open answer, per
//! plugin, are timed and read from the answers and checked against `policy explain PKG`.

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;
use std::path::Path;

/// Answers each `probe` hook with whether a TCP connection over loopback works inside its
/// sandbox (a private network namespace: only when `lo` is up, i.e. network mode loopback).
const NET: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"hook_invoke"'*)
      if /usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1); socket.create_connection(s.getsockname())" 2>/dev/null
      then net=true; else net=false; fi
      printf '{"jsonrpc":"2.0","id":%s,"result":{"net":%s}}\n' "$id" "$net" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(recs: &[Value], event: &str, plugin: &str) -> usize {
    recs.iter()
        .filter(|r| r["event"] == event && r["plugin"] == plugin)
        .count()
}

fn result_of<'a>(r: &'a Value, plugin: &str) -> &'a Value {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no entry for {plugin} in {r}"))
}

/// `forged.stockade`: the hello example signed by a key (`other`) its developer certificate
/// does not name, so its signature step fails (refused in strict mode, admitted below).
fn craft_forged(fx: &Fixture) {
    fx.run(&["keygen", "-o", "other"]);
    let (entries, map) = hello_parts();
    fx.craft_with(
        "forged.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "other.key",
        "dev.cert",
        "int/ca.cert",
    );
}

/// The policy root: a vendor main file, an operator drop-in with per-plugin sections, trust
/// (operator key, grants) and audit, and a vendor drop-in masked by the operator.
fn policy_root(fx: &Fixture, audit: &Path) {
    let d = fx.dir();
    let root = d.join("root");
    write(
        &root.join("usr/lib/stockade/policy.toml"),
        "version = 1\n[resources]\npids_max = 32\n[trust]\nmode = \"strict\"\n",
    );
    // Would leave no room for the probe's python3 if it applied: masked below.
    write(
        &root.join("usr/lib/stockade/policy.d/60-tight.toml"),
        "version = 1\n[resources]\npids_max = 2\n",
    );
    std::fs::create_dir_all(root.join("etc/stockade/policy.d")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        root.join("etc/stockade/policy.d/60-tight.toml"),
    )
    .unwrap();
    write(
        &root.join("etc/stockade/policy.d/10-operator.toml"),
        &format!(
            "version = 1\n[trust]\noperator_keys = [\"{}\"]\ngrants = \"{}\"\n\
             [audit]\nfile = \"{}\"\n\
             [plugin.netok.network]\nmode = \"loopback\"\n\
             [plugin.netno.network]\nmode = \"loopback\"\n",
            d.join("op.pub").display(),
            d.join("grants").display(),
            audit.display()
        ),
    );
    std::fs::create_dir_all(d.join("grants")).unwrap();
}

/// A fixture with an operator key, the policy root (audit log `audit.log`) and a loopback
/// grant for `netok`.
fn root_with_netok_grant() -> Fixture {
    let fx = Fixture::new();
    fx.run(&["keygen", "-o", "op"]);
    policy_root(&fx, &fx.dir().join("audit.log"));
    grant_loopback(&fx, "netok");
    fx
}

/// An operator grant of `network:loopback` to `plugin` 0.1.0, under `grants/`.
fn grant_loopback(fx: &Fixture, plugin: &str) {
    let out = format!("grants/{plugin}.grant");
    let r = fx.run(&[
        "grant",
        "issue",
        "--key",
        "op.key",
        "--plugin",
        plugin,
        "--plugin-version",
        "0.1.0",
        "--target",
        "network:loopback",
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// What `policy explain PKG` says about the network for this package under the root.
fn explained_network(fx: &Fixture, pkg: &Path) -> bool {
    let r = fx.run(&[
        "--json",
        "policy",
        "explain",
        pkg.to_str().unwrap(),
        "--policy-root",
        "root",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["section"] == "network")
        .unwrap()["granted"]
        .as_bool()
        .unwrap()
}

#[test]
fn serve_enforces_the_operator_policy_per_plugin_with_grants_and_audits_it() {
    if !require_root() || !require_tool("python3", "the network probe inside the sandbox") {
        return;
    }
    let fx = root_with_netok_grant();
    let d = fx.dir().to_path_buf();
    let audit = d.join("audit.log");
    let ok_pkg = pack_script(&fx, "netok", &["on:probe"], NET);
    let no_pkg = pack_script(&fx, "netno", &["on:probe"], NET);
    let plain = pack_script(&fx, "plain", &["on:probe"], NET);
    // Signed by a key the certificate does not name: refused in strict mode. The flag asks for
    // warn; the policy's strict mode (the stricter) must win under serve as under run.
    craft_forged(&fx);

    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\n",
        &["--policy-root", "root", "--trust-mode", "warn"],
    );
    let mut c = s.client();
    for p in [&ok_pkg, &no_pkg, &plain] {
        c.ok("plugin_load", json!({"package": p}));
    }
    let r = c.ok("hook_invoke", invoke("on:probe", json!({}), Some(30_000)));
    let observed = |n: &str| {
        result_of(&r, n)["result"]["net"]
            .as_bool()
            .unwrap_or_else(|| panic!("{n}: {r}"))
    };
    assert!(observed("netok"), "granted loopback, yet no network: {r}");
    assert!(!observed("netno"), "network without a grant: {r}");
    assert!(!observed("plain"), "network without a policy section: {r}");
    // What serve enforced is what `policy explain` says `run` would.
    for (n, p) in [("netok", &ok_pkg), ("netno", &no_pkg), ("plain", &plain)] {
        assert_eq!(observed(n), explained_network(&fx, p), "{n}");
    }
    let log = s.log();
    assert!(
        // The only grant naming the target is netok's.
        log.contains("plugin netno: withheld network:loopback (grant_wrong_plugin)"),
        "{log}"
    );

    // Refused by the policy's trust mode: a clear error to the agent and a denial record.
    let e = c.call("plugin_load", json!({"package": d.join("forged.stockade")}));
    assert_eq!(e["error"]["code"], LOAD_FAILED, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed verification"),
        "{e}"
    );

    // A restart computes the policy afresh: a grant issued since is honoured.
    grant_loopback(&fx, "netno");
    let restart_and_probe = |c: &mut Client, n: &str| {
        c.notes.clear();
        c.ok("plugin_restart", json!({"name": n}));
        c.wait_state(n, "ready");
        let r = c.ok("hook_invoke", invoke("on:probe", json!({}), Some(30_000)));
        result_of(&r, n)["result"]["net"].as_bool().unwrap()
    };
    assert!(
        restart_and_probe(&mut c, "netno"),
        "grant issued, restart, no network"
    );
    // A policy change applies after SIGHUP (to later launches), not before.
    write(
        &d.join("root/etc/stockade/policy.d/20-plain.toml"),
        "version = 1
[plugin.plain.network]
mode = \"loopback\"
[plugin.plain.risk]
network = \"low\"
",
    );
    assert!(
        !restart_and_probe(&mut c, "plain"),
        "policy applied before SIGHUP"
    );
    signal(s.pid(), "HUP");
    let start = std::time::Instant::now();
    while !s.log().contains("SIGHUP: policy reloaded") {
        assert!(start.elapsed().as_secs() < 30, "no reload: {}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        restart_and_probe(&mut c, "plain"),
        "policy reloaded, restart, no network"
    );
    // An invalid policy is not taken: the one in force stays.
    write(
        &d.join("root/etc/stockade/policy.d/30-bad.toml"),
        "version = 1
[resources]
memory_max = \"lots\"
",
    );
    signal(s.pid(), "HUP");
    while !s.log().contains("SIGHUP: policy not reloaded") {
        assert!(start.elapsed().as_secs() < 30, "no refusal: {}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(s.log().contains("30-bad.toml:3"), "{}", s.log());
    assert!(
        restart_and_probe(&mut c, "plain"),
        "the valid policy must stay in force"
    );
    assert_eq!(s.stop(), 0);

    let recs = records(&audit);
    for n in ["netok", "netno", "plain"] {
        assert_eq!(count(&recs, "verification", n), 1, "{n}");
        assert_eq!(count(&recs, "launch", n), 1, "{n}");
    }
    for (n, restarts) in [("netok", 0), ("netno", 1), ("plain", 3)] {
        assert_eq!(count(&recs, "restart", n), restarts, "{n}");
        assert_eq!(count(&recs, "termination", n), restarts + 1, "{n}");
    }
    assert_eq!(count(&recs, "grant", "netok"), 1);
    // netno: withheld at its launch, granted at its restart.
    assert_eq!(count(&recs, "denial", "netno"), 1);
    assert_eq!(count(&recs, "grant", "netno"), 1);
    assert_eq!(
        count(&recs, "grant", "plain") + count(&recs, "denial", "plain"),
        0
    );
    let launch = recs
        .iter()
        .find(|r| r["event"] == "launch" && r["plugin"] == "netok")
        .unwrap();
    assert_eq!(
        launch["package_sha256"].as_str().unwrap().len(),
        64,
        "{launch}"
    );
    assert_eq!(
        launch["signer_chain"].as_array().unwrap().len(),
        3,
        "{launch}"
    );
    assert_eq!(
        launch["policy_sha256"].as_str().unwrap().len(),
        64,
        "{launch}"
    );
    assert!(launch["layers"].as_array().unwrap().len() >= 5, "{launch}");
    // The policies differ (network granted or not), and so do their hashes.
    let hash = |n: &str| {
        recs.iter()
            .find(|r| r["event"] == "launch" && r["plugin"] == n)
            .unwrap()["policy_sha256"]
            .clone()
    };
    assert_ne!(hash("netok"), hash("netno"));
    // audit-135 row 9: each SIGHUP reload is a `configuration` record (`policy_reload`): who
    // sent it, the policy in force before and the one read; the invalid one refused, with why,
    // the policy in force unchanged.
    let reloads: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "configuration" && r["detail"]["change"] == "policy_reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    let (applied, refused_reload) = (reloads[0], reloads[1]);
    assert_eq!(applied["schema"], "stockade.audit/2", "{applied}");
    assert_eq!(applied["outcome"], "ok", "{applied}");
    assert_eq!(
        applied["detail"]["uid"],
        nix::unistd::getuid().as_raw(),
        "{applied}"
    );
    let (before, after) = (
        &applied["detail"]["policy_sha256_before"],
        &applied["detail"]["policy_sha256_after"],
    );
    assert_eq!(before.as_str().unwrap().len(), 64, "{applied}");
    assert_eq!(after.as_str().unwrap().len(), 64, "{applied}");
    assert_ne!(before, after, "{applied}");
    assert_eq!(refused_reload["outcome"], "refused", "{refused_reload}");
    assert_eq!(refused_reload["detail"]["policy_sha256_before"], *after);
    assert_eq!(refused_reload["detail"]["policy_sha256_after"], Value::Null);
    assert!(
        refused_reload["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("30-bad.toml:3"),
        "{refused_reload}"
    );
    let refused = recs
        .iter()
        .find(|r| r["event"] == "verification" && r["outcome"] == "refused")
        .expect("verification refused");
    assert!(refused["detail"]["file"]
        .as_str()
        .unwrap()
        .ends_with("forged.stockade"));
    let denial = recs
        .iter()
        .find(|r| r["event"] == "denial" && r["detail"]["request"] == "plugin_load")
        .expect("load denial");
    assert_eq!(denial["outcome"], "refused");
    assert_eq!(denial["detail"]["stage"], "verification", "{denial}");
    let v = fx.run(&["--json", "audit", "verify", "audit.log", "--require-head"]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert_eq!(v.json()["records"], recs.len());
}

/// A fixture whose policy root (`root/`) sends the audit records to `audit.log` in it, and
/// that file's path.
fn audited_fixture() -> (Fixture, std::path::PathBuf) {
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    write(
        &fx.dir().join("root/etc/stockade/policy.toml"),
        &format!("version = 1\n[audit]\nfile = \"{}\"\n", audit.display()),
    );
    (fx, audit)
}

/// Quick restarts, a quarantine at the second crash, no health pings.
const CRASH_LOOP_CONFIG: &str = "[restart]\nbackoff_base_ms = 20\nbackoff_max_ms = 40\n\
                                 jitter_percent = 0\n[quarantine]\nmax_crashes = 2\n\
                                 window_ms = 600000\n[health]\nping_interval_ms = 0\n";

#[test]
fn crash_restart_and_quarantine_under_serve_are_audited_in_one_chain() {
    if !require_root() {
        return;
    }
    let (fx, audit) = audited_fixture();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let mut s = Serve::start_with(&fx, CRASH_LOOP_CONFIG, &["--policy-root", "root"]);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    c.wait_state("a", "restarting");
    c.wait_state("a", "ready");
    c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    c.wait_state("a", "quarantined");
    // An agent's plugin_restart out of quarantine is a restart too.
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "ready");
    assert_eq!(s.stop(), 0);

    let recs = records(&audit);
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "verification",
            "launch",
            "termination",
            "restart",
            "termination",
            "quarantine",
            "restart",
            "termination"
        ],
        "{recs:#?}"
    );
    assert_eq!(recs[2]["outcome"], "exited", "{:#}", recs[2]);
    assert_eq!(recs[3]["outcome"], "ok");
    assert_eq!(recs[3]["detail"]["restarts"], 1, "{:#}", recs[3]);
    assert!(recs[3]["layers"].as_array().unwrap().len() >= 5);
    assert_eq!(recs[5]["outcome"], "crash_loop");
    assert_eq!(recs[5]["detail"]["crashes"], 2);
    assert_eq!(recs[6]["detail"]["restarts"], 2, "{:#}", recs[6]);
    for r in &recs {
        assert_eq!(r["plugin"], "a");
        assert_eq!(r["package_sha256"].as_str().unwrap().len(), 64, "{r}");
    }
    let v = fx.run(&["--json", "audit", "verify", "audit.log", "--require-head"]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert_eq!(v.json()["records"], 8);
}

/// The daemon's log rotated under it by root's `stockade audit rotate` (the packages' timer):
/// the daemon's next records go to the new log, after its rotation record — no load or launch
/// fails for a log shorter than its head, as they all did after a logrotate rotation — and the
/// rotated file and the log verify as one chain.
#[test]
fn a_rotation_under_a_running_serve_keeps_its_records_in_one_chain() {
    if !require_root() {
        return;
    }
    let (fx, audit) = audited_fixture();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let b = pack_worker(&fx, "b", &["on:x"]);
    let mut s = Serve::start_with(&fx, CRASH_LOOP_CONFIG, &["--policy-root", "root"]);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let r = fx.run(&["--json", "audit", "rotate", "--policy-root", "root"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let rotated = r.json()["rotated_to"].as_str().unwrap().to_string();
    // An audited load after the rotation: its verification and launch records.
    c.ok("plugin_load", json!({"package": b}));
    assert_eq!(s.stop(), 0);
    let old: Vec<Value> = records(Path::new(&rotated));
    let old_events: Vec<&str> = old.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(old_events, ["verification", "launch"], "{old:#?}");
    let new = records(&audit);
    let events: Vec<&str> = new.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events[..3],
        ["rotation", "verification", "launch"],
        "{new:#?}"
    );
    assert_eq!(new[1]["plugin"], "b");
    // Then each plugin's end at the daemon's stop, in whatever order.
    assert!(events[3..].iter().all(|e| *e == "termination"), "{new:#?}");
    let v = fx.run(&[
        "--json",
        "audit",
        "verify",
        "--require-head",
        &rotated,
        "audit.log",
    ]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert_eq!(v.json()["records"], old.len() + new.len());
}

/// The warm pool keeps a launch decision only when no grant went into it: a plugin whose
/// network needs a grant gets its decision computed afresh at every restart, so a revoked
/// grant is not honoured by the spare built under it; a plugin without any grant restarts in
/// its spare with the decision kept.
#[test]
fn warm_restarts_recompute_a_decision_that_needed_a_grant() {
    if !require_root() || !require_tool("python3", "the network probe inside the sandbox") {
        return;
    }
    let fx = root_with_netok_grant();
    let d = fx.dir().to_path_buf();
    let ok_pkg = pack_script(&fx, "netok", &["on:probe"], NET);
    let plain = pack_script(&fx, "plain", &["on:probe"], NET);
    let mut s = Serve::start_with(
        &fx,
        // No periodic check: the grant removed below must be met by the test's own restart,
        // not by the daemon's relaunch (after which a spare without the grant would be warm).
        "[serve]\nwarm = true\n[health]\nping_interval_ms = 0\ntrust_check_interval_ms = 0\n",
        &["--policy-root", "root"],
    );
    let mut c = s.client();
    for p in [&ok_pkg, &plain] {
        c.ok("plugin_load", json!({"package": p}));
    }
    let probe = |c: &mut Client, n: &str| {
        let r = c.ok("hook_invoke", invoke("on:probe", json!({}), Some(30_000)));
        result_of(&r, n)["result"]["net"].as_bool().unwrap()
    };
    let restart = |c: &mut Client, n: &str| {
        c.notes.clear();
        c.ok("plugin_restart", json!({"name": n}));
        c.wait_state(n, "ready");
        c.ok("plugin_status", json!({"name": n}))
    };
    assert!(probe(&mut c, "netok"), "granted loopback, yet no network");
    // No grant involved: the spare's decision is reused and the restart is warm.
    let st = restart(&mut c, "plain");
    assert_eq!(st["warm"], true, "{st}");
    assert!(!probe(&mut c, "plain"));
    // The grant is revoked (its file removed) while netok's spare holds a granted network.
    std::fs::remove_file(d.join("grants/netok.grant")).unwrap();
    let st = restart(&mut c, "netok");
    assert_eq!(
        st["warm"], false,
        "the spare was built with the revoked grant: {st}"
    );
    assert!(!probe(&mut c, "netok"), "a revoked grant was honoured");
    assert!(
        s.log().contains("plugin netok: withheld network:loopback"),
        "{}",
        s.log()
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_package_admitted_in_warn_mode_says_so_in_status_log_and_audit() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let d = fx.dir().to_path_buf();
    // Signed by a key its developer certificate does not name: admitted only below strict.
    craft_forged(&fx);
    let audit = d.join("audit.log");
    write(
        &d.join("policy.toml"),
        &format!(
            "version = 1\n[trust]\nmode = \"warn\"\n[audit]\nfile = \"{}\"\n",
            audit.display()
        ),
    );
    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\n",
        &["--policy", "policy.toml", "--trust-mode", "warn"],
    );
    let mut c = s.client();
    let st = c.ok("plugin_load", json!({"package": d.join("forged.stockade")}));
    assert_eq!(st["signature_status"], "invalid", "{st}");
    assert!(!st["warnings"].as_array().unwrap().is_empty(), "{st}");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["signature_status"], "invalid", "{st}");
    assert_eq!(s.stop(), 0);
    assert!(s.log().contains("plugin hello: warning:"), "{}", s.log());
    let text = std::fs::read_to_string(&audit).unwrap();
    let rec: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "verification")
        .expect("a verification record");
    assert_eq!(rec["detail"]["signature_status"], "invalid", "{rec}");
    assert_eq!(rec["detail"]["trust_mode"], "warn", "{rec}");
    assert!(
        !rec["detail"]["warnings"].as_array().unwrap().is_empty(),
        "{rec}"
    );
}

/// The daemon's audit appends waited without limit on the log's lock (`<log>.lock`), which
/// root's CLI takes too for its own appends (`install`, `verify`, …): a CLI stopped mid-append
/// (SIGSTOP, a debugger) — here this test, holding the lock — stalled the daemon's one event
/// loop for ever, and no agent or plugin was answered. Now an append waits 1 s at most: a
/// `plugin_load`, whose verification record is required, fails closed (`audit.busy`, 75,
/// nothing launched) while another client is answered; a record that is best-effort (a
/// termination) is logged as not written, the unload made all the same; once the lock is
/// released, loads are audited again in one unbroken chain.
#[test]
fn a_held_audit_lock_fails_a_required_record_closed_without_stalling_the_daemon() {
    if !require_root() {
        return;
    }
    let (fx, audit) = audited_fixture();
    let d = fx.dir().to_path_buf();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let b = pack_worker(&fx, "b", &["on:x"]);
    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\n",
        &["--policy-root", "root"],
    );
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let written = records(&audit).len();
    assert_eq!(written, 2, "verification, launch");
    let (held, status, r) = load_beside_held_lock(&s, &d.join("audit.log.lock"), &b, "a");
    assert_eq!(status["result"]["state"], "ready", "{status}");
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "audit.busy", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 75, "{r}");
    assert_eq!(c.err("plugin_status", json!({"name": "b"})), UNKNOWN_PLUGIN);

    // A best-effort record (the termination): not written, logged; the unload is made.
    let r = c.ok("plugin_unload", json!({"name": "a"}));
    assert_eq!(r["state"], "unloaded", "{r}");
    let started = std::time::Instant::now();
    while !s.log().contains("audit record not written") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(s.log().contains("lock"), "{}", s.log());
    assert_eq!(
        records(&audit).len(),
        written,
        "nothing written under the held lock"
    );

    drop(held);
    c.ok("plugin_load", json!({"package": b}));
    assert_eq!(s.stop(), 0, "{}", s.log());
    let v = fx.run(&["--json", "audit", "verify", "audit.log", "--require-head"]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    // a: verification, launch; b: verification, launch, termination.
    assert_eq!(v.json()["records"], 5, "{}", s.log());
}

/// A restart whose `restart` record cannot be written because another writer holds the audit
/// log's lock past the daemon's wait (`audit.busy`) is the host's passing refusal, not the
/// plugin's crash: counted as one, a root CLI stopped mid-append crash-looped a plugin into a
/// quarantine (recorded in the state directory, kept across daemons) for a lock it never
/// touched. Now it is put off on the backoff (`restarting`, `reason.kind` `audit.busy`) until
/// the lock is free, and then made and audited.
#[test]
fn a_restart_refused_by_a_held_audit_lock_is_not_counted_as_a_crash() {
    if !require_root() {
        return;
    }
    let (fx, audit) = audited_fixture();
    let d = fx.dir().to_path_buf();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let mut s = Serve::start_with(&fx, CRASH_LOOP_CONFIG, &["--policy-root", "root"]);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let lock = std::fs::File::open(d.join("audit.log.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    // Refused again and again on the backoff (the first after the 1 s wait, then at once).
    let started = std::time::Instant::now();
    loop {
        let m = c.recv().expect("the daemon closed the connection");
        if m["method"] != "plugin_state" || m["params"]["plugin"] != "a" {
            continue;
        }
        let st = &m["params"];
        assert_ne!(
            st["state"], "quarantined",
            "a held audit lock crash-looped the plugin: {st}"
        );
        if st["state"] == "restarting"
            && st["reason"]["kind"] == "audit.busy"
            && started.elapsed().as_millis() > 1500
        {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "{st}");
    }
    assert!(
        !s.log().contains("quarantined"),
        "a held audit lock crash-looped the plugin: {}",
        s.log()
    );
    drop(held);
    c.notes.clear();
    c.wait_state("a", "ready");
    let st = c.ok("plugin_status", json!({"name": "a"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(s.stop(), 0, "{}", s.log());
    let recs = records(&audit);
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    // The termination under the held lock is not written (best effort, logged).
    assert_eq!(
        events,
        ["verification", "launch", "restart", "termination"],
        "{recs:#?}"
    );
    let v = fx.run(&["--json", "audit", "verify", "audit.log", "--require-head"]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
}

/// Wait until the daemon's log says `needle` (fail after 30 s).
fn wait_logged(s: &Serve, needle: &str) {
    let start = std::time::Instant::now();
    while !s.log().contains(needle) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never logged `{needle}`: {}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A daemon that is not root (here `nobody`, through `setpriv`) and whose policy root has a
/// `policy.d` drop-in it could read at start: once that directory is made unreadable to it
/// (`chmod 0700`, root's), a SIGHUP is refused and the policy in force — drop-in included —
/// kept, with a log line naming the directory. The old daemon reloaded without the drop-in,
/// "policy reloaded (1 layer(s))", and every later restart ran under the weaker vendor file.
/// Readable again, the next SIGHUP reloads both layers.
#[test]
fn a_sighup_that_cannot_read_a_policy_directory_read_at_start_keeps_the_policy() {
    if !require_root() || !require_tool("setpriv", "to run the daemon as another user") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let nobody = 65534;
    std::os::unix::fs::chown(fx.dir(), Some(nobody), Some(nobody)).unwrap();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = fx.path("proot/etc/stockade");
    std::fs::create_dir_all(etc.join("policy.d")).unwrap();
    std::fs::write(
        etc.join("policy.toml"),
        "version = 1\n[resources]\npids_max = 64\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("policy.d/10-tight.toml"),
        "version = 1\n[resources]\npids_max = 16\n",
    )
    .unwrap();
    let state = fx.path("state");
    let _ = std::fs::create_dir(&state);
    std::os::unix::fs::chown(&state, Some(nobody), Some(nobody)).unwrap();
    let wrapper = as_nobody();
    let root = fx.path("proot");
    let mut s = Serve::start_with_under(
        &fx,
        "",
        &["--policy-root", root.to_str().unwrap()],
        &wrapper,
    );

    std::fs::set_permissions(etc.join("policy.d"), std::fs::Permissions::from_mode(0o700)).unwrap();
    signal(s.pid(), "HUP");
    wait_logged(&s, "SIGHUP: policy not reloaded, keeping the one in force");
    let log = s.log();
    assert!(
        log.contains("policy.d cannot be read by this user any longer"),
        "{log}"
    );
    assert!(!log.contains("policy reloaded"), "{log}");

    std::fs::set_permissions(etc.join("policy.d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    signal(s.pid(), "HUP");
    wait_logged(&s, "SIGHUP: policy reloaded (2 layer(s))");
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A grant that expires while the plugin it let have a network runs: the daemon relaunches
/// the plugin then (a `restart` record with `detail.reason` `"grant_expiry"`, not an agent's
/// request, no crash counted), under a decision that withholds the network (a `denial`
/// `withheld` record). The old daemon let the plugin keep the loopback network no grant
/// authorised any longer until something else restarted it.
#[test]
fn a_plugin_whose_grant_expires_while_it_runs_is_relaunched_without_the_item() {
    if !require_root() || !require_tool("python3", "the network probe inside the sandbox") {
        return;
    }
    let fx = Fixture::new();
    fx.run(&["keygen", "-o", "op"]);
    let audit = fx.dir().join("audit.log");
    policy_root(&fx, &audit);
    let pkg = pack_script(&fx, "netok", &["on:probe"], NET);
    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\ntrust_check_interval_ms = 0\n",
        &["--policy-root", "root"],
    );
    let mut c = s.client();
    // Issued a day minus 10 s ago for a day: it expires 10 s from now. Only the issue, one
    // launch and one probe come between (the daemon already runs): a loaded 2-core CI machine
    // took more than the 6 s it once had for the pack and the daemon's start as well.
    let now = unix_now();
    let expires = now + 10;
    let issued = (expires - 86_400).to_string();
    let r = fx.run(&[
        "grant",
        "issue",
        "--key",
        "op.key",
        "--plugin",
        "netok",
        "--plugin-version",
        "0.1.0",
        "--target",
        "network:loopback",
        "--days",
        "1",
        "--now",
        &issued,
        "-o",
        "grants/netok.grant",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    c.ok("plugin_load", json!({"package": pkg}));
    assert!(has_network(&mut c), "granted loopback, yet no network");

    let st = wait_relaunched(&mut c, "netok");
    assert_eq!(st["crashes"], 0, "{st}");
    let relaunched = unix_now();
    assert!(relaunched >= expires, "relaunched before the grant expired");
    assert!(!has_network(&mut c), "an expired grant's network was kept");
    let log = s.log();
    assert!(log.contains("grant expiry: plugin netok"), "{log}");
    assert!(
        log.contains("plugin netok: withheld network:loopback"),
        "{log}"
    );
    assert_eq!(s.stop(), 0);
    let recs = records(&audit);
    let restart = recs
        .iter()
        .find(|r| r["event"] == "restart" && r["plugin"] == "netok")
        .expect("a restart record");
    assert_eq!(restart["detail"]["reason"], "grant_expiry", "{restart}");
    assert_eq!(restart["detail"]["requested"], false, "{restart}");
    assert!(
        recs.iter().any(|r| r["event"] == "denial"
            && r["outcome"] == "withheld"
            && r["plugin"] == "netok"),
        "no withheld record"
    );
}

/// A grant file removed while the plugin it let have a network runs: the periodic trust check
/// finds the target authorised no longer and relaunches the plugin at once (a `restart` record
/// with `detail.reason` `"grant_withdrawn"`, no crash counted) without the network. The old
/// daemon let it keep the network until something else restarted it.
#[test]
fn a_grant_removed_while_its_plugin_runs_is_withdrawn_by_the_periodic_check() {
    if !require_root() || !require_tool("python3", "the network probe inside the sandbox") {
        return;
    }
    let fx = root_with_netok_grant();
    let pkg = pack_script(&fx, "netok", &["on:probe"], NET);
    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\ntrust_check_interval_ms = 300\n",
        &["--policy-root", "root"],
    );
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    assert!(has_network(&mut c), "granted loopback, yet no network");
    // Checked again and again while the grant holds: nothing is relaunched.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(
        c.ok("plugin_status", json!({"name": "netok"}))["restarts"],
        0
    );

    std::fs::remove_file(fx.path("grants/netok.grant")).unwrap();
    let st = wait_relaunched(&mut c, "netok");
    assert_eq!(st["crashes"], 0, "{st}");
    assert!(!has_network(&mut c), "a removed grant's network was kept");
    let log = s.log();
    assert!(
        log.contains("grant check: plugin netok: no grant authorises network:loopback"),
        "{log}"
    );
    // Relaunched once, not at every check.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(
        c.ok("plugin_status", json!({"name": "netok"}))["restarts"],
        1
    );
    assert_eq!(s.stop(), 0);
    let recs = records(&fx.dir().join("audit.log"));
    let restart = recs
        .iter()
        .find(|r| r["event"] == "restart" && r["plugin"] == "netok")
        .expect("a restart record");
    assert_eq!(restart["detail"]["reason"], "grant_withdrawn", "{restart}");
}

/// Bytes this process has read (`rchar` of `/proc/PID/io`: every `read`, files and sockets).
/// Whether the `netok` plugin's probe hook found a network inside its sandbox.
fn has_network(c: &mut Client) -> bool {
    let r = c.ok("hook_invoke", invoke("on:probe", json!({}), Some(30_000)));
    result_of(&r, "netok")["result"]["net"].as_bool().unwrap()
}

/// The plugin's status once it has been relaunched once and is ready again (30 s at most).
fn wait_relaunched(c: &mut Client, name: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let st = c.ok("plugin_status", json!({ "name": name }));
        if st["restarts"] == 1 && st["state"] == "ready" {
            return st;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never relaunched: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn read_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rchar in {io}"))
}

/// The periodic check decides a granted plugin's grants again only when something that decision
/// reads changed: with nothing changed it reads no grant file (here 200 of them, each read and
/// its signature checked for every granted plugin at every check by the old daemon — a million
/// reads and signature checks every 5 s with a thousand plugins granted the network). A grant
/// withdrawn is still found at the next check.
#[test]
fn the_periodic_check_reads_no_grant_file_while_none_changed() {
    if !require_root() || !require_tool("python3", "the network probe inside the sandbox") {
        return;
    }
    let fx = root_with_netok_grant();
    let grant = std::fs::read(fx.path("grants/netok.grant")).unwrap();
    let copies = 200;
    for i in 0..copies {
        std::fs::write(fx.path(&format!("grants/copy-{i}.grant")), &grant).unwrap();
    }
    let all = (copies + 1) * grant.len() as u64;
    let pkg = pack_script(&fx, "netok", &["on:probe"], NET);
    let mut s = Serve::start_with(
        &fx,
        "[health]\nping_interval_ms = 0\ntrust_check_interval_ms = 100\n",
        &["--policy-root", "root"],
    );
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    // The first check after the launch reads them (once).
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let before = read_bytes(s.pid());
    // Longer than one pass of the old daemon over these files took here (~3 s, a debug build).
    std::thread::sleep(std::time::Duration::from_millis(5000));
    let read = read_bytes(s.pid()) - before;
    eprintln!("{read} bytes read in 5 s ({all} bytes of grants)");
    assert!(
        read < all / 2,
        "{read} bytes read in 5 s with nothing changed ({all} bytes of grants)"
    );
    assert_eq!(
        c.ok("plugin_status", json!({"name": "netok"}))["restarts"],
        0
    );

    // Withdrawn (every file naming it removed): found at the next check, as before.
    for i in 0..copies {
        std::fs::remove_file(fx.path(&format!("grants/copy-{i}.grant"))).unwrap();
    }
    std::fs::remove_file(fx.path("grants/netok.grant")).unwrap();
    wait_relaunched(&mut c, "netok");
    assert!(
        s.log()
            .contains("grant check: plugin netok: no grant authorises network:loopback"),
        "{}",
        s.log()
    );
    assert_eq!(s.stop(), 0);
}

/// explain's item `name` of section `hook` for `pkg` under the policy file `policy.toml`.
fn explained_hook(fx: &Fixture, pkg: &Path, name: &str) -> Value {
    let r = fx.run(&[
        "--json",
        "policy",
        "explain",
        pkg.to_str().unwrap(),
        "--policy",
        "policy.toml",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["section"] == "hook" && i["name"] == name)
        .unwrap_or_else(|| panic!("no hook item {name}"))["value"]
        .clone()
}

/// audit-134: a hook's `deadline_ms`, `failure` and `default` under serve are what `policy
/// explain PKG` says for each plugin (a `[plugin."a".hooks]` section over the top-level one):
/// a plugin that hangs is answered for at its own deadline, in milliseconds, failing open with
/// the policy's answer or closed.
#[test]
fn hook_deadline_failure_and_default_under_serve_are_explains_per_plugin() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let b = pack_worker(&fx, "b", &["on:x"]);
    let policy = "[hooks.\"on:x\"]\ndeadline_ms = 1500\nfailure = \"closed\"\n\
        [plugin.\"a\".hooks.\"on:x\"]\ndeadline_ms = 300\nfailure = \"open\"\n\
        default = { from = \"policy\" }\n";
    let mut s = Serve::start(&fx, "[health]\nping_interval_ms = 0\n", Some(policy));
    let mut c = s.client();
    for p in [&a, &b] {
        assert_eq!(c.ok("plugin_load", json!({"package": p}))["state"], "ready");
    }
    for (name, pkg) in [("a", &a), ("b", &b)] {
        let deadline = explained_hook(&fx, pkg, "on:x deadline_ms")
            .as_u64()
            .unwrap();
        let open = explained_hook(&fx, pkg, "on:x failure") == "open";
        let default = explained_hook(&fx, pkg, "on:x default");
        let t = std::time::Instant::now();
        let r = c.ok("hook_invoke", invoke("on:x", json!({ name: "hang" }), None));
        let took = u64::try_from(t.elapsed().as_millis()).unwrap();
        assert!(
            (deadline..deadline + 1000).contains(&took),
            "{name}: answered after {took} ms, explain says deadline_ms {deadline}"
        );
        let e = result_of(&r, name);
        if open {
            assert_eq!(e["result"], default, "{name}: {r}");
        } else {
            assert!(e.get("error").is_some(), "{name}: fails closed: {r}");
        }
    }
    // The two plugins' explanations do differ: the per-plugin section applied to a alone.
    assert_eq!(explained_hook(&fx, &a, "on:x deadline_ms"), 300);
    assert_eq!(explained_hook(&fx, &b, "on:x deadline_ms"), 1500);
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// The pids.max of the cgroup the process `pid` is in (v1 `pids` controller or v2).
fn pids_max_of(pid: i64) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = cg
        .lines()
        .find_map(|l| {
            l.split_once(":pids:")
                .map(|(_, p)| format!("/sys/fs/cgroup/pids{p}"))
        })
        .or_else(|| {
            cg.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| format!("/sys/fs/cgroup{p}")))
        })
        .unwrap();
    std::fs::read_to_string(format!("{dir}/pids.max"))
        .unwrap()
        .trim()
        .to_string()
}

/// audit-134: a `[signer."KEYID"]` section applies at launch to the plugins that key signs —
/// under its plugin's own section, key by key — as `policy explain PKG` says: read back from
/// the running plugins' cgroups under serve.
#[test]
fn a_signer_section_applies_under_serve_as_explain_says() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let b = pack_worker(&fx, "b", &["on:x"]);
    let r = fx.run(&["--json", "inspect", a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.json()["signer_key_id"].as_str().unwrap().to_string();
    let policy = format!(
        "[resources]\npids_max = 40\n[signer.\"{key}\".resources]\npids_max = 17\n\
         [plugin.\"b\".resources]\npids_max = 23\n"
    );
    let mut s = Serve::start(&fx, "[health]\nping_interval_ms = 0\n", Some(&policy));
    let mut c = s.client();
    for (name, pkg, want) in [("a", &a, "17"), ("b", &b, "23")] {
        let r = c.ok("plugin_load", json!({"package": pkg}));
        assert_eq!(r["state"], "ready", "{r}");
        let e = fx.run(&[
            "--json",
            "policy",
            "explain",
            pkg.to_str().unwrap(),
            "--policy",
            "policy.toml",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ]);
        assert_eq!(e.code, 0, "{}", e.stderr);
        let explained = e.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["section"] == "resource" && i["name"] == "pids_max")
            .unwrap()["value"]
            .to_string();
        assert_eq!(explained, want, "{name}: explain");
        assert_eq!(
            pids_max_of(r["pid"].as_i64().unwrap()),
            want,
            "{name}: enforced"
        );
    }
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A plugin killed at its `cpu_time_secs` is named as such — in the `exited` notification's
/// message and `limits_hit`, `plugin_status.last_exit` and serve's log — not as a bare
/// SIGKILL (review-137: RLIMIT_CPU soft = hard kills with SIGKILL; the init's wait4 gives the
/// program's CPU time, which is at the limit).
#[test]
fn a_plugin_killed_at_its_cpu_time_secs_is_named_as_that_limit() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let spin = WORKER.replace(
        "*'\"act\":\"hang\"'*",
        "*'\"act\":\"spin\"'*) while :; do :; done ;;\n        *'\"act\":\"hang\"'*",
    );
    let a = pack_script(&fx, "a", &["on:x"], &spin);
    let policy = "[resources]\ncpu_time_secs = 1\n[hooks.\"on:x\"]\ndeadline_ms = 30000\n";
    let mut s = Serve::start(
        &fx,
        "[health]\nping_interval_ms = 0\n[restart]\nbackoff_base_ms = 20\n",
        Some(policy),
    );
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": a}));
    assert_eq!(r["state"], "ready", "{r}");
    c.ok("hook_invoke", invoke("on:x", json!({"act": "spin"}), None));
    let ex = c.wait_state("a", "exited");
    let reason = &ex["reason"];
    assert_eq!(reason["sandbox"]["exit"]["signal"], 9, "{ex}");
    assert_eq!(
        reason["sandbox"]["limits_hit"]["cpu_time_secs_reached"], true,
        "{ex}"
    );
    let m = reason["message"].as_str().unwrap_or_default();
    assert!(m.contains("cpu_time_secs"), "{ex}");
    c.wait_state("a", "ready");
    let st = c.ok("plugin_status", json!({"name": "a"}));
    assert_eq!(
        st["last_exit"]["sandbox"]["limits_hit"]["cpu_time_secs_reached"], true,
        "{st}"
    );
    assert!(
        s.log().contains("killed at its CPU time limit (SIGKILL)"),
        "{}",
        s.log()
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// helper-141: a hook that fails open is in the audit log — not once per call (a hanging
/// plugin would flood a log fsynced per record), but as transitions: one `bypass` record when
/// it begins failing open (the reason, the call's method), and one counting the calls let
/// through when the plugin unloads (or answers again, or the daemon stops).
#[test]
fn a_hook_failing_open_is_one_bypass_record_begun_and_one_with_its_count() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let a = pack_worker(&fx, "a", &["on:x"]);
    let policy = hook_x_policy(&audit, "deadline_ms = 200\n", "open");
    let mut s = Serve::start(&fx, "[health]\nping_interval_ms = 0\n", Some(&policy));
    let mut c = s.client();
    let bypasses = || bypass_records(&audit);
    assert_eq!(c.ok("plugin_load", json!({"package": a}))["state"], "ready");
    for _ in 0..3 {
        let r = c.ok("hook_invoke", invoke("on:x", json!({"a": "hang"}), None));
        assert!(result_of(&r, "a").get("bypassed").is_some(), "{r}");
    }
    let b = bypasses();
    assert_eq!(b.len(), 1, "one record for three bypassed calls: {b:#?}");
    assert_eq!(b[0]["outcome"], "failing_open", "{:#}", b[0]);
    assert_eq!(b[0]["plugin"], "a");
    assert_eq!(b[0]["detail"]["hook"], "on:x");
    assert_eq!(b[0]["detail"]["reason"], "deadline_exceeded", "{:#}", b[0]);
    assert_eq!(b[0]["detail"]["method"], "hook_invoke");
    c.ok("plugin_unload", json!({"name": "a"}));
    let b = bypasses();
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[1]["outcome"], "unloaded", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["bypassed_calls"], 3, "{:#}", b[1]);

    // Loaded again: its calls let through when the daemon stops are counted as it stops.
    assert_eq!(c.ok("plugin_load", json!({"package": a}))["state"], "ready");
    for _ in 0..2 {
        c.ok("hook_invoke", invoke("on:x", json!({"a": "hang"}), None));
    }
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    let b = bypasses();
    assert_eq!(b.len(), 4, "{b:#?}");
    assert_eq!(b[2]["outcome"], "failing_open");
    assert_eq!(b[3]["outcome"], "stopped", "{:#}", b[3]);
    assert_eq!(b[3]["detail"]["bypassed_calls"], 2, "{:#}", b[3]);
    // review-142: each names the package whose hook was bypassed, as its launch record does.
    let launch = records(&audit)
        .into_iter()
        .find(|r| r["event"] == "launch" && r["outcome"] == "ok")
        .expect("a launch record");
    for r in &b {
        for field in ["version", "package_sha256", "signer_chain", "policy_sha256"] {
            assert!(!launch[field].is_null(), "{field}: {launch:#}");
            assert_eq!(r[field], launch[field], "{field}: {r:#}");
        }
    }
    let v = fx.run(&["--json", "audit", "verify", "audit.log", "--require-head"]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
}

/// audit-145: the audit sinks stay as read at start, so a SIGHUP whose policy changes `[audit]`
/// (here `keep`, then `file` moved away) applies everything else and says that this is not
/// applied — a log warning and the reload record's `detail.not_applied` — instead of
/// "policy reloaded" alone, which read as the new sinks being in force. A reload that leaves
/// `[audit]` as it was — its defaults spelled out included — says nothing of it; one that
/// changes `protocol.max_frame_bytes` says that only the agent connections keep the cap read at start (review-146).
#[test]
fn a_sighup_that_changes_the_audit_sinks_says_they_stay_as_read_at_start() {
    if !require_root() {
        return;
    }
    let (fx, audit) = audited_fixture();
    let policy = fx.dir().join("root/etc/stockade/policy.toml");
    let mut s = Serve::start_with(&fx, "", &["--policy-root", "root"]);
    let at_start = format!("version = 1\n[audit]\nfile = \"{}\"\n", audit.display());
    let moved = fx.dir().join("elsewhere.log");
    for (n, text) in [
        format!("{at_start}keep = 3\n"),
        format!("version = 1\n[audit]\nfile = \"{}\"\n", moved.display()),
        format!("{at_start}[resources]\npids_max = 32\n"),
        format!("{at_start}[protocol]\nmax_frame_bytes = 131072\n"),
        // The sinks' defaults spelled out: the same sinks, no warning (review-146: compared as
        // written, `stderr = false` against unset was a change).
        format!("{at_start}stderr = false\njournal = false\n"),
    ]
    .into_iter()
    .enumerate()
    {
        write(&policy, &text);
        signal(s.pid(), "HUP");
        let start = std::time::Instant::now();
        while s.log().matches("SIGHUP: policy reloaded").count() <= n {
            assert!(start.elapsed().as_secs() < 30, "{}", s.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let log = s.log();
    assert_eq!(s.stop(), 0, "{log}");
    let warning = "SIGHUP: warning: the reloaded policy changes `audit`, which stays as read at \
                   start until the daemon restarts";
    assert_eq!(log.matches(warning).count(), 2, "{log}");
    // The frame cap stays for agent connections only: a plugin's next launch takes the new
    // one, so the warning says which (review-146: it said the cap stayed, for all).
    let frame = "SIGHUP: warning: the reloaded policy changes `protocol.max_frame_bytes`, \
                 which stays as read at start for agent connections until the daemon restarts \
                 (plugins take it at their next launch or restart)";
    assert_eq!(log.matches(frame).count(), 1, "{log}");
    assert!(!moved.exists(), "the sinks stayed as read at start");
    let reloads: Vec<Value> = records(&audit)
        .into_iter()
        .filter(|r| r["event"] == "configuration" && r["detail"]["change"] == "policy_reload")
        .collect();
    assert_eq!(reloads.len(), 5, "{reloads:?}");
    assert!(reloads.iter().all(|r| r["outcome"] == "ok"), "{reloads:?}");
    assert_eq!(reloads[0]["detail"]["not_applied"], json!(["audit"]));
    assert_eq!(reloads[1]["detail"]["not_applied"], json!(["audit"]));
    assert_eq!(
        reloads[2]["detail"].get("not_applied"),
        None,
        "{}",
        reloads[2]
    );
    assert_eq!(
        reloads[3]["detail"]["not_applied"],
        json!(["protocol.max_frame_bytes"])
    );
    assert_eq!(
        reloads[4]["detail"].get("not_applied"),
        None,
        "{}",
        reloads[4]
    );
}

/// audit-145: a plugin's store written under the default quota (here 900 KB), then the
/// operator lowers that plugin's `[kv]` (`[plugin.a.kv] max_total_bytes = 65536`): the
/// daemon loads it and the data is there — before, every load and restart was refused
/// (`load_failed` `kv_store`, the store's bound computed from the lowered quota). A store that
/// cannot be read (plugin `b`'s, not JSON) is still refused, its cause in the message, which
/// said "cannot load key/value store `…`" and not why.
#[test]
fn a_plugins_store_loads_under_a_lowered_kv_quota_and_an_unreadable_one_says_why() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // Only a plugin that requests kv has a store (audit-166).
    if !fx.bind_to_this_machine() {
        return;
    }
    let dev = fx.secret("dev.key").public_key();
    let kv = fx.path(&format!(
        "state/kv/{}",
        stockade_trust::index::fingerprint(&dev)
    ));
    std::fs::create_dir_all(&kv).unwrap();
    let value = "v".repeat(1000);
    let full: serde_json::Map<String, Value> = (0..900)
        .map(|i| (format!("k{i:03}"), json!(value)))
        .collect();
    std::fs::write(kv.join("a.json"), Value::Object(full).to_string()).unwrap();
    std::fs::write(kv.join("b.json"), "not json").unwrap();
    let asked = json!({"requested_capabilities": ["log", "register_hook", "kv_get"]});
    let (a, b) = (
        pack_script_with(&fx, "a", &["on:x"], WORKER, asked.clone()),
        pack_script_with(&fx, "b", &["on:x"], WORKER, asked),
    );
    let mut s = Serve::start(
        &fx,
        "[health]\nping_interval_ms = 0\n",
        Some("[plugin.a.kv]\nmax_total_bytes = 65536\nmax_keys = 100\n"),
    );
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    c.wait_state("a", "ready");
    let r = c.call("plugin_load", json!({"package": b}));
    assert_eq!(r["error"]["data"]["kind"], "kv_store", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("b.json"), "{message}");
    assert!(
        message.contains("expected"),
        "the parser's cause: {message}"
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
    let kept: Value = serde_json::from_slice(&std::fs::read(kv.join("a.json")).unwrap()).unwrap();
    assert_eq!(kept["k899"], json!(value), "the store intact");
}

/// helper-143: a SIGHUP reload that makes a hook failing open fail closed ends its failing run
/// when the plugin is launched under it (a running plugin keeps its policy until then): one
/// `fail_closed` `bypass` record counting the calls let through. The hook stayed marked failing
/// open — nothing more was recorded until the plugin answered it again, and its `unloaded`
/// record said `failing_open: true` of a hook whose calls had failed closed since.
#[test]
fn a_reload_making_a_failing_open_hook_fail_closed_ends_its_run_at_the_relaunch() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let a = pack_worker(&fx, "a", &["on:x"]);
    let policy = |failure: &str| hook_x_policy(&audit, "deadline_ms = 200\n", failure);
    let mut s = Serve::start(
        &fx,
        "[health]\nping_interval_ms = 0\n",
        Some(&policy("open")),
    );
    let mut c = s.client();
    let bypasses = || bypass_records(&audit);
    assert_eq!(c.ok("plugin_load", json!({"package": a}))["state"], "ready");
    for _ in 0..3 {
        let r = c.ok("hook_invoke", invoke("on:x", json!({"a": "hang"}), None));
        assert!(result_of(&r, "a").get("bypassed").is_some(), "{r}");
    }
    assert_eq!(bypasses().len(), 1, "{:#?}", bypasses());
    reload(&fx, &s, &policy("closed"));
    c.ok("plugin_restart", json!({"name": "a"}));
    // Its stop, then the new incarnation's `ready` (the first load's may be waiting in `c`).
    c.wait_state("a", "stopping");
    c.wait_state("a", "ready");
    let b = bypasses();
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[1]["outcome"], "fail_closed", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["hook"], "on:x", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["bypassed_calls"], 3, "{:#}", b[1]);
    assert_eq!(b[1]["version"], "0.1.0", "{:#}", b[1]);
    // Failing closed now: an error, not a bypass, and nothing left to count at the unload.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"a": "hang"}), None));
    assert_eq!(
        result_of(&r, "a")["error"]["code"],
        DEADLINE_EXCEEDED,
        "{r}"
    );
    c.ok("plugin_unload", json!({"name": "a"}));
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(bypasses().len(), 2, "{:#?}", bypasses());
}

/// review-147: a reload making a failing-open hook fail closed reaches a plugin none of whose
/// incarnations runs — here one crash-looped into quarantine, whose calls were answered with
/// the hook's fail-open default. At the reload its run ends (one `fail_closed` `bypass` record
/// counting the calls let through), and its calls fail closed from then on (an `unavailable`
/// error, not a bypass) without a `plugin_restart`. Before, its entry kept the host policy of its
/// last launch: the quarantined guard went on being bypassed under the policy that said not to.
#[test]
fn a_reload_making_a_failing_open_hook_fail_closed_reaches_a_quarantined_plugin() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let a = pack_worker(&fx, "a", &["on:x"]);
    let policy = |failure: &str| hook_x_policy(&audit, "", failure);
    let mut s = Serve::start(&fx, CRASH_LOOP_CONFIG, Some(&policy("open")));
    let mut c = s.client();
    let bypasses = || bypass_records(&audit);
    quarantine_failing_open(&mut c, &a);
    let before = bypasses();
    assert!(
        before.iter().all(|b| b["outcome"] != "fail_closed"),
        "{before:#?}"
    );
    reload(&fx, &s, &policy("closed"));
    // Still quarantined, no restart: its calls fail closed now, and its failing run ended with
    // the reload, counting every call let through.
    let (b, closed) = quarantined_calls_fail_closed(&mut c, &audit, &before);
    assert_eq!(closed["plugin"], "a", "{closed:#}");
    assert_eq!(closed["version"], "0.1.0", "{closed:#}");
    // Nothing left failing open: the unload counts nothing more.
    c.ok("plugin_unload", json!({"name": "a"}));
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(bypasses().len(), b.len(), "{:#?}", bypasses());
}

/// review-147, the other way round: the reload comes while the plugin runs (it keeps its launch's
/// policy: its crashing call fails open), then it crashes and waits for its restart (a long
/// backoff): with no incarnation running, its calls fail closed under the policy in force, and
/// the failing run that crash began ends at the first of them (`fail_closed`). Before, it kept
/// failing open under its last launch's policy until the backoff ended.
#[test]
fn a_plugin_that_crashes_after_a_reload_answers_by_the_reloaded_policy_while_restarting() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let a = pack_worker(&fx, "a", &["on:x"]);
    let policy = |failure: &str| hook_x_policy(&audit, "", failure);
    // A restart that waits (ten minutes: the test ends long before).
    let config = "[restart]\nbackoff_base_ms = 600000\nbackoff_max_ms = 600000\n\
                  jitter_percent = 0\n[health]\nping_interval_ms = 0\n";
    let mut s = Serve::start(&fx, config, Some(&policy("open")));
    let mut c = s.client();
    let bypasses = || bypass_records(&audit);
    assert_eq!(c.ok("plugin_load", json!({"package": a}))["state"], "ready");
    reload(&fx, &s, &policy("closed"));
    // Running: its launch's policy, so the crash fails open.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    assert!(result_of(&r, "a").get("bypassed").is_some(), "{r}");
    c.wait_state("a", "restarting");
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    let e = result_of(&r, "a");
    assert!(e.get("bypassed").is_none(), "{r}");
    assert_eq!(e["error"]["code"], UNAVAILABLE, "{r}");
    let b = bypasses();
    let outcomes: Vec<&str> = b.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failing_open", "fail_closed"], "{b:#?}");
    assert_eq!(b[1]["detail"]["bypassed_calls"], 1, "{:#}", b[1]);
    c.ok("plugin_unload", json!({"name": "a"}));
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(bypasses().len(), 2, "{:#?}", bypasses());
}

/// helper-151's path, untested until helper-152: a reload after which the policy no longer
/// resolves for a plugin none of whose incarnations runs (its `[plugin."a"]` and the
/// `[signer."K"]` of its signing key each valid alone and invalid together — a reload accepts
/// that, as loading does, and the next launch of `a` would be refused) makes every hook of it
/// fail closed — even the one its own section still says fails open — until its next launch:
/// its quarantined calls get an `unavailable` error instead of the fail-open default, its
/// failing run ends at the reload (`fail_closed`), and the daemon's log says why.
#[test]
fn a_reload_the_policy_no_longer_resolves_under_fails_every_hook_of_an_idle_plugin_closed() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let a = pack_worker(&fx, "a", &["on:x"]);
    let r = fx.run(&["--json", "inspect", a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.json()["signer_key_id"].as_str().unwrap().to_string();
    let open = hook_x_policy(&audit, "", "open");
    let mut s = Serve::start(&fx, CRASH_LOOP_CONFIG, Some(&open));
    let mut c = s.client();
    let bypasses = || bypass_records(&audit);
    quarantine_failing_open(&mut c, &a);
    let before = bypasses();
    // The hook still fails open by its own section; the pair no longer resolves.
    let unresolvable = format!(
        "{open}[plugin.\"a\".filesystem]\nwritable = [\"/srv/app\"]\n\
         [signer.\"{key}\".filesystem]\nread_only = [\"/srv/app/config\"]\n"
    );
    reload(&fx, &s, &unresolvable);
    let (b, _) = quarantined_calls_fail_closed(&mut c, &audit, &before);
    assert!(
        s.log().contains(
            "plugin a: every hook fails closed until its next launch: the policy in force \
             does not resolve for it"
        ),
        "{}",
        s.log()
    );
    c.ok("plugin_unload", json!({"name": "a"}));
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(bypasses().len(), b.len(), "{:#?}", bypasses());
}

/// A daemon that is not root (here `nobody`, through `setpriv`) whose state directory it may not
/// write (root's, 0755 — as the default, /var/lib/stockade, is to any other user once made, and
/// which it cannot make at all otherwise): with no revocation list in the trust directory the
/// plugin's key/value store is the first thing a `plugin_load` makes there, and it is refused
/// `load_failed` 78 `kv_store`, the cause (`Permission denied`) in the message and a
/// `data.hint` saying to pass --state-dir, as `run`'s. Before review-148 `data` held no hint:
/// audit-144 documented that `serve` runs without such a state directory, but not that no
/// plugin loads then. Only a plugin that requests kv has such a store (audit-166): one that
/// does not loads, making nothing there.
#[test]
fn a_daemon_that_may_not_write_its_state_directory_says_so_on_plugin_load() {
    if !require_root() || !require_tool("setpriv", "to run the daemon as another user") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let Some(pkg) = fx.pack_kv_hello() else {
        return;
    };
    let pkg = fx.path(&pkg);
    let plain = fx.path(&fx.pack_hello());
    assert!(!fx.path("trust/revocations.json").exists());
    let nobody = 65534;
    std::os::unix::fs::chown(fx.dir(), Some(nobody), Some(nobody)).unwrap();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's, 0755: the daemon can read it but make nothing in it.
    std::fs::create_dir(fx.path("state")).unwrap();
    std::fs::set_permissions(fx.path("state"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper = as_nobody();
    let none = fx.path("no-policy-root");
    let mut s = Serve::start_with_under(
        &fx,
        "",
        &["--policy-root", none.to_str().unwrap()],
        &wrapper,
    );
    let mut c = s.client();
    let e = c.call("plugin_load", json!({"package": pkg}));
    assert_eq!(e["error"]["code"], LOAD_FAILED, "{e}");
    let data = &e["error"]["data"];
    assert_eq!(data["kind"], "kv_store", "{e}");
    assert_eq!(data["exit"], 78, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{e}"
    );
    assert!(
        data["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("--state-dir DIR"),
        "{e}"
    );
    assert!(!fx.path("state/kv").exists());
    let e = c.call("plugin_load", json!({"package": plain}));
    assert_eq!(e["result"]["state"], "ready", "{e}");
    assert!(!fx.path("state/kv").exists());
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// The wrapper that starts a daemon as `nobody` (65534, no supplementary groups).
fn as_nobody() -> Vec<String> {
    [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The `bypass` records in the audit log at `audit`, in order.
fn bypass_records(audit: &Path) -> Vec<Value> {
    records(audit)
        .into_iter()
        .filter(|r| r["event"] == "bypass")
        .collect()
}

/// A policy logging to `audit` whose section for plugin `a`'s hook `on:x` holds `extra` (whole
/// lines), `failure` and a fail-open default `{"from": "policy"}`.
fn hook_x_policy(audit: &Path, extra: &str, failure: &str) -> String {
    format!(
        "[audit]\nfile = \"{}\"\n[plugin.\"a\".hooks.\"on:x\"]\n{extra}\
         failure = \"{failure}\"\ndefault = {{ from = \"policy\" }}\n",
        audit.display()
    )
}

/// Write `policy` as the daemon's policy file and SIGHUP it; back once it says it reloaded.
/// Write `policy` as the daemon's policy file, send SIGHUP and wait for the reload it causes:
/// one more "policy reloaded" line than before the signal (a second reload in one test waits
/// for its own, not the first's).
fn reload(fx: &Fixture, s: &Serve, policy: &str) {
    const RELOADED: &str = "SIGHUP: policy reloaded";
    let before = s.log().matches(RELOADED).count();
    write(
        &fx.dir().join("policy.toml"),
        &format!("version = 1\n{policy}"),
    );
    signal(s.pid(), "HUP");
    while s.log().matches(RELOADED).count() <= before {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// After a reload that makes the quarantined plugin `a` (see [`quarantine_failing_open`]) fail
/// closed: a call gets an `unavailable` error, not a bypass; `a` stays quarantined (no restart);
/// exactly one `fail_closed` record of `on:x` ended its failing run, counting with the runs
/// `before` ended the three calls let through (two crashed, one while quarantined). Returns
/// every bypass record and that one.
fn quarantined_calls_fail_closed(
    c: &mut Client,
    audit: &Path,
    before: &[Value],
) -> (Vec<Value>, Value) {
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    let e = result_of(&r, "a");
    assert!(e.get("bypassed").is_none(), "{r}");
    assert_eq!(e["error"]["code"], UNAVAILABLE, "{r}");
    assert_eq!(
        c.ok("plugin_status", json!({"name": "a"}))["state"],
        "quarantined"
    );
    let b = bypass_records(audit);
    let closed: Vec<&Value> = b.iter().filter(|b| b["outcome"] == "fail_closed").collect();
    assert_eq!(closed.len(), 1, "{b:#?}");
    let closed = closed[0].clone();
    assert_eq!(closed["detail"]["hook"], "on:x", "{closed:#}");
    let let_through: u64 = before
        .iter()
        .filter(|b| b["outcome"] != "failing_open")
        .map(|b| b["detail"]["bypassed_calls"].as_u64().unwrap())
        .sum();
    assert_eq!(
        closed["detail"]["bypassed_calls"].as_u64().unwrap() + let_through,
        3,
        "two crashed calls and one while quarantined: {b:#?}"
    );
    (b, closed)
}

/// Load the package `a` (plugin `a`, hook `on:x` failing open) and crash it into quarantine
/// (two crashes under [`CRASH_LOOP_CONFIG`]); quarantined, its calls get the policy's fail-open
/// default.
fn quarantine_failing_open(c: &mut Client, a: &Path) {
    c.ok("plugin_load", json!({"package": a}));
    c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    c.wait_state("a", "restarting");
    c.wait_state("a", "ready");
    c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    c.wait_state("a", "quarantined");
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    let e = result_of(&r, "a");
    assert!(e.get("bypassed").is_some(), "{r}");
    assert_eq!(e["result"], json!({"from": "policy"}), "{r}");
}
