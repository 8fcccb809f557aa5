//! `stockade serve` and a trust configuration that changes while it runs: a revocation list
//! installed in the trust directory applies to the next `plugin_load`, to every restart and, on
//! SIGHUP, to the plugins already running — without restarting the daemon. Real sandboxes (root).

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;

/// Small backoff, no pings, no periodic trust check: a crash restarts at once and nothing else
/// happens meanwhile (what the tests change is found by the load, restart or SIGHUP they make).
const CONFIG: &str = "[restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\n\
                      [quarantine]\nmax_crashes = 100\nwindow_ms = 600000\n\
                      [health]\nping_interval_ms = 0\ntrust_check_interval_ms = 0\n";

/// [`CONFIG`] with the default periodic trust check (every 5 s).
const CHECKING: &str = "[restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\n\
                        [quarantine]\nmax_crashes = 100\nwindow_ms = 600000\n\
                        [health]\nping_interval_ms = 0\n";

/// Worker `hello` signed by the fixture's developer (`dev`), and worker `other` signed by a
/// second developer (`dev2`), whom no list revokes; both registered for `on:x`.
fn two_workers(fx: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    let hello = pack_worker(fx, "hello", &["on:x"]);
    pack_worker(fx, "other", &["on:x"]);
    fx.add_developer("dev2");
    pack_other_as(fx, "dev2");
    (hello, fx.dir().join("other.stockade"))
}

/// `src-other` (made by `pack_worker(fx, "other", …)`) packed as `other.stockade`, signed by
/// developer `dev` (its `dev.key` and `dev.cert`, the fixture's intermediate above it).
fn pack_other_as(fx: &Fixture, dev: &str) {
    let (key, cert) = (format!("{dev}.key"), format!("{dev}.cert"));
    let r = fx.run(&[
        "pack",
        "src-other",
        "--key",
        &key,
        "--devcert",
        &cert,
        "--intcert",
        "int/ca.cert",
        "-o",
        "other.stockade",
        "--force",
    ]);
    assert_eq!(r.code, 0, "pack: {}", r.stderr);
}

/// Poll `plugin_status` until `name` is ready again (its notifications may have gone by).
fn wait_ready(c: &mut Client, name: &str) {
    let start = std::time::Instant::now();
    while c.ok("plugin_status", json!({"name": name}))["state"] != "ready" {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{name} never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`two_workers`], an empty list installed, the daemon started (CONFIG) and a client: what most
/// tests here start from. Returns the daemon, the client and the two packages.
fn serving(fx: &Fixture) -> (Serve, Client, std::path::PathBuf, std::path::PathBuf) {
    let (hello, other) = two_workers(fx);
    fx.install_list(&[]);
    let s = Serve::start(fx, CONFIG, None);
    let c = s.client();
    (s, c, hello, other)
}

/// Wait until the daemon's log says `needle` (30 s at most).
fn wait_log(s: &Serve, needle: &str) {
    wait_log_count(s, needle, 1);
}

/// Wait until the daemon's log holds `needle` at least `n` times (fail after 30 s).
fn wait_log_count(s: &Serve, needle: &str, n: usize) {
    let start = std::time::Instant::now();
    while s.log().matches(needle).count() < n {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never logged `{needle}` {n} times: {}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `hello` loaded under an empty list (the daemon started with CONFIG), the trust directory
/// then changed by `change`, and `hello` crashed: its restart met the change and was not made.
fn crashed_after(fx: &Fixture, change: impl FnOnce(&Fixture)) -> (Serve, Client) {
    let hello = pack_worker(fx, "hello", &["on:x"]);
    fx.install_list(&[]);
    let s = Serve::start(fx, CONFIG, None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": hello}));
    change(fx);
    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    wait_log(&s, "plugin hello: not restarted");
    (s, c)
}

/// The `load_failed` error of a `plugin_load` that must be refused.
fn refused_load(c: &mut Client, pkg: &std::path::Path) -> Value {
    let r = c.call("plugin_load", json!({"package": pkg}));
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    r["error"].clone()
}

/// A: a revocation list installed while the daemon runs refuses the next load of a package its
/// signer signed (84, `revocation.key`), after `plugin_unload` and after SIGHUP alike; a package
/// of another signer still loads. The old daemon kept the list it read at start and loaded the
/// revoked package until it was restarted.
#[test]
fn a_list_installed_while_serving_refuses_the_next_load() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    assert_eq!(
        c.ok("plugin_load", json!({"package": hello}))["state"],
        "ready"
    );
    c.ok("plugin_unload", json!({"name": "hello"}));

    fx.install_list(&["--key", "dev.pub"]);
    let e = refused_load(&mut c, &hello);
    assert_eq!(e["data"]["kind"], "revocation.key", "{e}");
    assert_eq!(e["data"]["exit"], 84, "{e}");
    signal(s.pid(), "HUP");
    let e = refused_load(&mut c, &hello);
    assert_eq!(e["data"]["kind"], "revocation.key", "{e}");
    assert_eq!(
        c.ok("plugin_load", json!({"package": other}))["state"],
        "ready"
    );
    // The list version the daemon accepted is remembered (rollback memory), as by `verify`.
    let state: Value =
        serde_json::from_slice(&std::fs::read(fx.path("state/revocation-state.json")).unwrap())
            .unwrap();
    assert!(state.to_string().contains("\"version\":2"), "{state}");
    s.stop_and_drain(&mut c);
}

/// B: root's `stockade verify` records the newer list's version in the shared state directory;
/// the daemon, reading the list again at each load, goes on loading what that list does not
/// revoke. The old daemon, still holding the older list, then refused every load as a rollback
/// (`revocation.rollback`) until it was restarted.
#[test]
fn a_newer_list_seen_by_verify_is_no_rollback_for_the_daemon() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    assert_eq!(
        c.ok("plugin_load", json!({"package": hello}))["state"],
        "ready"
    );
    fx.install_list(&["--key", "dev.pub"]);
    let v = fx.verify("hello.stockade", &[]);
    assert_eq!(v.code, 84, "{}", v.stdout);
    assert_eq!(v.kind(), "revocation.key", "{}", v.stdout);

    let r = c.ok("plugin_load", json!({"package": other}));
    assert_eq!(r["state"], "ready", "{r}");
    c.ok("plugin_unload", json!({"name": "hello"}));
    let e = refused_load(&mut c, &hello);
    assert_eq!(e["data"]["kind"], "revocation.key", "{e}");
    s.stop_and_drain(&mut c);
}

/// A list that is no valid list (here: not even JSON) refuses every load, with `run`'s kind and
/// exit code (84, `revocation.list_invalid`): fail closed. Plugins already running keep running
/// (nothing about them is known to have changed), and the log says so at SIGHUP.
#[test]
fn an_invalid_list_refuses_loads_and_leaves_running_plugins_alone() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    let pid = c.ok("plugin_load", json!({"package": hello}))["pid"].clone();
    std::fs::write(fx.path("trust/revocations.json"), b"{ not a list").unwrap();
    let e = refused_load(&mut c, &other);
    assert_eq!(e["data"]["kind"], "revocation.list_invalid", "{e}");
    assert_eq!(e["data"]["exit"], 84, "{e}");
    signal(s.pid(), "HUP");
    wait_log(
        &s,
        "SIGHUP: the trust configuration refuses every load and restart",
    );
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], pid, "{st}");
    s.stop_and_drain(&mut c);
}

/// Restarts verify the package's trust again: after the list revoking its signer is installed,
/// a crashed plugin is not started again but quarantined for that reason (84's kind, not a
/// crash loop), `plugin_restart` is refused with the kind, while a plugin of another signer
/// restarts as before. Without the check a revoked signer's plugin ran again at every crash.
#[test]
fn a_restart_after_the_signer_was_revoked_is_refused() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    c.ok("plugin_load", json!({"package": hello}));
    c.ok("plugin_load", json!({"package": other}));
    fx.install_list(&["--key", "dev.pub"]);

    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    let q = c.wait_state("hello", "quarantined");
    assert_eq!(q["reason"]["kind"], "revocation.key", "{q}");
    wait_ready(&mut c, "other");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["quarantined"], true, "{st}");
    assert_eq!(st["pid"], Value::Null, "{st}");
    assert_eq!(st["trust_refusal"]["kind"], "revocation.key", "{st}");
    assert_eq!(st["trust_refusal"]["exit"], 84, "{st}");
    // Its hooks are answered as for any plugin that cannot take the call.
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["plugin"], "hello", "{r}");
    assert_eq!(r["results"][0]["error"]["code"], UNAVAILABLE, "{r}");
    assert_eq!(r["results"][1]["result"]["ok"], true, "{r}");

    let r = c.call("plugin_restart", json!({"name": "hello"}));
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "revocation.key", "{r}");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "quarantined", "{st}");
    // Nothing of it is written as a crash-loop quarantine (a daemon restarted later verifies
    // the package again anyway).
    assert!(!fx.path("state/quarantine.json").exists());
    c.ok("plugin_unload", json!({"name": "hello"}));
    s.stop_and_drain(&mut c);
}

/// SIGHUP reads the trust configuration again and checks every loaded plugin against it: one
/// whose signer is now revoked is stopped and quarantined for that reason; the others keep
/// running, undisturbed.
#[test]
fn sighup_stops_a_running_plugin_whose_signer_was_revoked() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    c.ok("plugin_load", json!({"package": hello}));
    let other_pid = c.ok("plugin_load", json!({"package": other}))["pid"].clone();
    fx.install_list(&["--key", "dev.pub"]);
    signal(s.pid(), "HUP");
    let q = c.wait_state("hello", "quarantined");
    assert_eq!(q["reason"]["kind"], "revocation.key", "{q}");
    let st = c.ok("plugin_status", json!({"name": "other"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], other_pid, "{st}");
    assert_eq!(st["trust_refusal"], Value::Null, "{st}");
    let log = s.log();
    assert!(
        log.contains("plugin hello: quarantined (revocation.key"),
        "{log}"
    );
    let pids = s.stop_and_drain(&mut c);
    assert!(alive(&pids).is_empty());
}

/// `--trust-mode warn` lets the restart check's failure pass as it lets the load's: the crashed
/// plugin restarts, and its status says what was let pass (`signature_status: revoked`, the
/// warning); SIGHUP stops nothing.
#[test]
fn in_warn_mode_a_revoked_signer_restarts_with_a_warning() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (hello, _) = two_workers(&fx);
    fx.install_list(&[]);
    let none = fx.path("no-policy-root");
    let mut s = Serve::start_with(
        &fx,
        CONFIG,
        &[
            "--trust-mode",
            "warn",
            "--policy-root",
            none.to_str().unwrap(),
        ],
    );
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": hello}));
    assert_eq!(r["signature_status"], "verified", "{r}");
    fx.install_list(&["--key", "dev.pub"]);
    signal(s.pid(), "HUP");
    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    c.wait_state("hello", "restarting");
    wait_ready(&mut c, "hello");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["signature_status"], "revoked", "{st}");
    assert_eq!(st["restarts"], 1, "{st}");
    assert_eq!(st["trust_refusal"], Value::Null, "{st}");
    assert!(
        st["warnings"].to_string().contains("--trust-mode warn"),
        "{st}"
    );
    s.stop_and_drain(&mut c);
}

/// The daemon need not wait for SIGHUP once it has read a new list: the load that reads it
/// checks the running plugins too, and the one whose signer it revokes is stopped and
/// quarantined, while the package loaded goes on.
#[test]
fn a_load_that_reads_a_new_list_stops_the_revoked_running_plugin() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    c.ok("plugin_load", json!({"package": hello}));
    fx.install_list(&["--key", "dev.pub"]);
    let r = c.ok("plugin_load", json!({"package": other}));
    assert_eq!(r["state"], "ready", "{r}");
    let q = c.wait_state("hello", "quarantined");
    assert_eq!(q["reason"]["kind"], "revocation.key", "{q}");
    let log = s.log();
    assert!(
        log.contains("new trust configuration: plugin hello: revocation.key"),
        "{log}"
    );
    let pids = s.stop_and_drain(&mut c);
    assert!(alive(&pids).is_empty());
}

/// A configuration that cannot be used (here an invalid list) says nothing about the plugin
/// that crashed meanwhile: its restart is refused but it is not quarantined — it stays
/// `restarting`, the refusal in its status, and is tried again after its backoff, so it comes
/// back by itself once the list is fixed. The old daemon quarantined it for the list's kind, and
/// it needed a `plugin_restart` after the fix.
#[test]
fn a_restart_refused_by_an_invalid_list_is_retried_until_the_list_is_fixed() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c) = crashed_after(&fx, |fx| {
        std::fs::write(fx.path("trust/revocations.json"), b"{ not a list").unwrap()
    });
    // Let a few retries go by: still restarting, never quarantined.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "restarting", "{st}");
    assert_eq!(st["quarantined"], false, "{st}");
    assert_eq!(
        st["trust_refusal"]["kind"], "revocation.list_invalid",
        "{st}"
    );
    assert_eq!(st["trust_refusal"]["exit"], 84, "{st}");
    assert!(
        !s.log().contains("plugin hello: quarantined"),
        "{}",
        s.log()
    );

    fx.install_list(&[]);
    wait_ready(&mut c, "hello");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["restarts"], 1, "{st}");
    assert_eq!(st["trust_refusal"], Value::Null, "{st}");
    assert!(!fx.path("state/quarantine.json").exists());
    s.stop_and_drain(&mut c);
}

/// A restart refused because a revocation list seen before is gone (`revocation.list_missing`)
/// waits for the list like one refused by an invalid list, and its message blames the trust
/// configuration, not the package: the old daemon said "the package of `hello` is no longer
/// trusted", sending the operator to look at a package nothing is wrong with.
#[test]
fn a_restart_refused_by_a_deleted_list_names_the_configuration_not_the_package() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c) = crashed_after(&fx, |fx| {
        std::fs::remove_file(fx.path("trust/revocations.json")).unwrap()
    });
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "restarting", "{st}");
    assert_eq!(st["quarantined"], false, "{st}");
    let refusal = &st["trust_refusal"];
    assert_eq!(refusal["kind"], "revocation.list_missing", "{st}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot check the package of `hello`: the trust configuration"),
        "{message}"
    );
    assert!(!message.contains("no longer trusted"), "{message}");
    assert!(!s.log().contains("no longer trusted"), "{}", s.log());

    fx.install_list(&[]);
    wait_ready(&mut c, "hello");
    s.stop_and_drain(&mut c);
}

/// Poll `plugin_status` until `name` is in `state` (its notifications may have gone by).
fn wait_status(c: &mut Client, name: &str, state: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let st = c.ok("plugin_status", json!({"name": name}));
        if st["state"] == state {
            return st;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{name} never {state}: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A package a `warn` load let pass with a failure (here its developer certificate's scope is
/// another machine's hardware) is refused once the policy says strict: at SIGHUP the scope is
/// checked again and it is stopped and quarantined (`scope.hardware`, 85), `plugin_restart` is
/// refused, and a verified plugin runs on. The old daemon only checked the chain and the list
/// again and kept running — and restarting — it under strict. (A signature failure, which no
/// recheck decides again, is refused as `trust_mode.unverified`: `unverified_at_load`.)
#[test]
fn sighup_to_strict_stops_a_plugin_that_only_warn_let_load() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    pack_worker(&fx, "other", &["on:x"]);
    let r = fx.run(&["keygen", "-o", "dev3"]);
    assert_eq!(r.code, 0, "keygen: {}", r.stderr);
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev3.pub",
        "--subject",
        "dev3",
        "-o",
        "dev3.cert",
        "--scope",
        "hardware:00000000000000000000000000000000",
    ]);
    assert_eq!(r.code, 0, "ca issue: {}", r.stderr);
    pack_other_as(&fx, "dev3");
    let other = fx.dir().join("other.stockade");
    fx.install_list(&[]);
    let mut s = serve_in_trust_mode(&fx, "warn");
    let mut c = s.client();
    let hello_pid = c.ok("plugin_load", json!({"package": hello}))["pid"].clone();
    let r = c.ok("plugin_load", json!({"package": other}));
    assert_eq!(r["state"], "ready", "{r}");
    assert_eq!(r["signature_status"], "out_of_scope", "{r}");

    to_strict_by_sighup(&fx, &s);
    let mut st = wait_status(&mut c, "other", "quarantined");
    // Stopped gracefully: its process is gone soon after.
    let start = std::time::Instant::now();
    while st["pid"] != Value::Null {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "{st}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        st = c.ok("plugin_status", json!({"name": "other"}));
    }
    assert_eq!(st["state"], "quarantined", "{st}");
    assert_eq!(st["trust_refusal"]["kind"], "scope.hardware", "{st}");
    assert_eq!(st["trust_refusal"]["exit"], 85, "{st}");
    assert!(
        st["trust_refusal"]["message"]
            .to_string()
            .contains("scoped to hardware 00000000000000000000000000000000"),
        "{st}"
    );
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], hello_pid, "{st}");

    let r = c.call("plugin_restart", json!({"name": "other"}));
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "scope.hardware", "{r}");
    assert_eq!(
        c.ok("plugin_status", json!({"name": "other"}))["state"],
        "quarantined"
    );
    s.stop_and_drain(&mut c);
}

/// A plugin still starting its first launch when SIGHUP finds its signer revoked is unloaded,
/// and its `plugin_load` fails with the refusal's kind and exit (`data`), as a load refused at
/// once does. The old daemon answered with no `data`.
#[test]
fn a_plugin_revoked_before_it_was_ready_fails_its_load_with_the_kind() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let slow = pack_script(
        &fx,
        "slow",
        &["on:x"],
        &WORKER.replacen("#!/bin/sh\n", "#!/bin/sh\nsleep 3\n", 1),
    );
    fx.install_list(&[]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    let mut loader = s.client();
    loader.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "plugin_load",
                        "params": {"package": slow}}));
    let start = std::time::Instant::now();
    while c.call("plugin_status", json!({"name": "slow"}))["result"]["state"] != "starting" {
        assert!(start.elapsed() < std::time::Duration::from_secs(3));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fx.install_list(&["--key", "dev.pub"]);
    signal(s.pid(), "HUP");
    let r = loop {
        let m = loader.recv().expect("an answer to plugin_load");
        if m["id"] == 1 {
            break m;
        }
    };
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "revocation.key", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 84, "{r}");
    s.stop_and_drain(&mut c);
}

/// A restart is a launch, and `run` would refuse a license-scoped package once the node's
/// license no longer covers it: the restart checks the license read then. A license of another
/// serial installed while the plugin runs stops nothing (the plugin keeps running), but its
/// restart after a crash is refused — not quarantined: the license is the node's to fix, so
/// the plugin stays `restarting` (`scope.license`, 85) and comes back by itself once the
/// right license is installed again. The old daemon checked only chain and revocation at a
/// restart and ran it again under any license.
#[test]
fn a_restart_under_a_license_that_no_longer_covers_the_plugin_waits_for_the_right_one() {
    if !require_root() {
        return;
    }
    let fx = Fixture::with_dev_scope(&["--scope", "license:ACME-1"]);
    fx.install_license("ACME-1", false);
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    fx.install_list(&[]);
    let audit = fx.dir().join("audit.log");
    let policy = format!("[audit]\nfile = {audit:?}\n");
    let mut s = Serve::start(&fx, CONFIG, Some(&policy));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": hello}));
    fx.install_license("ACME-2", false);
    // SIGHUP reads the new license: the running plugin is not stopped for it.
    signal(s.pid(), "HUP");
    wait_log(&s, "SIGHUP: plugin hello: scope.license");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "ready", "{st}");

    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    wait_log(&s, "plugin hello: not restarted");
    let st = wait_status(&mut c, "hello", "restarting");
    assert_eq!(st["quarantined"], false, "{st}");
    assert_eq!(st["trust_refusal"]["kind"], "scope.license", "{st}");
    assert_eq!(st["trust_refusal"]["exit"], 85, "{st}");
    // Three refusals in a row (the daemon logs each retry it refuses): one denial on record for
    // them, not one each.
    wait_log_count(&s, "plugin hello: not restarted, trying again", 3);
    let denials = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "denial" && r["detail"]["request"] == "restart")
        .collect::<Vec<_>>();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0]["detail"]["kind"], "scope.license", "{denials:?}");

    fx.install_license("ACME-1", false);
    wait_ready(&mut c, "hello");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["trust_refusal"], Value::Null, "{st}");
    s.stop_and_drain(&mut c);
}

/// Review-98 L4: a verification that meets a newer list records it under
/// `<state>/revocation-state.lock`, which root's CLI takes too. A holder that keeps it — here
/// this test, as a `stockade verify` stopped (SIGSTOP) while it recorded a list would — stalled
/// the daemon's one event loop for ever: no other client was answered. Now the load waits a
/// bounded time and fails closed (`revocation.state_busy`, 75), the list not recorded, while
/// another client is answered meanwhile; the loads after it only try the lock (review-103 L5:
/// each waited 1 s again); a SIGHUP check under the held lock still stops the plugin the
/// unrecorded list revokes; and once the lock is released loads record the list.
#[test]
fn a_held_revocation_lock_fails_the_load_without_stalling_the_daemon() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, mut c, hello, other) = serving(&fx);
    assert_eq!(
        c.ok("plugin_load", json!({"package": other}))["state"],
        "ready"
    );
    // The version recorded (one issuer).
    let floor = || -> u64 {
        let v: Value =
            serde_json::from_slice(&std::fs::read(fx.path("state/revocation-state.json")).unwrap())
                .unwrap();
        let seen = v.as_object().unwrap();
        assert_eq!(seen.len(), 1, "{v}");
        seen.values().next().unwrap()["version"].as_u64().unwrap()
    };
    assert_eq!(floor(), 1);
    fx.install_list(&[]);
    let (held, status, r) = load_beside_held_lock(
        &s,
        &fx.path("state/revocation-state.lock"),
        hello.as_ref(),
        "other",
    );
    assert_eq!(status["result"]["state"], "ready", "{status}");
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "revocation.state_busy", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 75, "{r}");
    assert_eq!(floor(), 1, "not recorded");
    // Review-103 L5: the loads queued after it do not wait the second again each (N loads
    // stalled every client N s): the daemon only tries the lock until it takes it once. Three
    // sent together are all answered well within two waits (the old code took three, ≥ 3 s);
    // the bound leaves a loaded machine 2.5 s for three failing verifications.
    let mut loader = s.client();
    let sent = std::time::Instant::now();
    for id in [2, 3, 4] {
        loader.send(&json!({"jsonrpc": "2.0", "id": id, "method": "plugin_load",
                            "params": {"package": hello}}));
    }
    for id in [2, 3, 4] {
        let r = loop {
            let m = loader
                .recv_within(std::time::Duration::from_secs(10))
                .expect("an answer to plugin_load");
            if m["id"] == id {
                break m;
            }
        };
        assert_eq!(r["error"]["data"]["kind"], "revocation.state_busy", "{r}");
    }
    let took = sent.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2500),
        "three loads under the held lock took {took:?}: each waited for it again"
    );
    assert_eq!(floor(), 1, "not recorded");

    // A list revoking `other`'s signer, SIGHUP, the lock still held: not recorded, but `other`
    // is stopped all the same.
    fx.install_list(&["--key", "dev2.pub"]);
    signal(s.pid(), "HUP");
    wait_log(&s, "plugin other: quarantined (revocation.key");
    assert_eq!(floor(), 1, "not recorded");

    drop(held);
    assert_eq!(
        c.ok("plugin_load", json!({"package": hello}))["state"],
        "ready"
    );
    assert_eq!(floor(), 3);
    s.stop_and_drain(&mut c);
}

/// A plugin whose developer certificate expires while it runs is stopped and quarantined at that
/// moment (`validity.expired`, 83, `detail.request` `"expiry"`), without a SIGHUP, a restart or
/// a load; a plugin of another signer runs on. The old daemon let it run, expired, until its
/// next restart or a SIGHUP — for ever, for a plugin that never crashes.
#[test]
fn a_plugin_whose_certificate_expires_while_it_runs_is_stopped_then() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    pack_worker(&fx, "other", &["on:x"]);
    let r = fx.run(&["keygen", "-o", "dev4"]);
    assert_eq!(r.code, 0, "keygen: {}", r.stderr);
    fx.install_list(&[]);
    let audit = fx.path("audit.log");
    let policy = format!("[audit]\nfile = \"{}\"\n", audit.display());
    let mut s = Serve::start(&fx, CONFIG, Some(&policy));
    let mut c = s.client();
    let hello_pid = c.ok("plugin_load", json!({"package": hello}))["pid"].clone();
    // Issued a day minus 10 s ago for a day: it expires 10 s from now. Only the issue, the
    // pack and one launch come between (the daemon already runs): a loaded 2-core CI machine
    // took more than the 6 s it once had for the daemon's start and two launches as well.
    let now = unix_now();
    let expires = now + 10;
    let issued = (expires - 86_400).to_string();
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev4.pub",
        "--subject",
        "dev4",
        "-o",
        "dev4.cert",
        "--scope",
        "any",
        "--days",
        "1",
        "--now",
        &issued,
    ]);
    assert_eq!(r.code, 0, "ca issue: {}", r.stderr);
    pack_other_as(&fx, "dev4");
    let other = fx.dir().join("other.stockade");
    let r = c.ok("plugin_load", json!({"package": other}));
    assert_eq!(r["state"], "ready", "{r}");

    let mut st = wait_status(&mut c, "other", "quarantined");
    let stopped = unix_now();
    assert!(stopped >= expires, "stopped before it expired: {st}");
    // At most a second late (whole seconds), and the polling's own time on a loaded machine.
    assert!(
        stopped <= expires + 5,
        "stopped {} s late",
        stopped - expires
    );
    assert_eq!(st["trust_refusal"]["kind"], "validity.expired", "{st}");
    assert_eq!(st["trust_refusal"]["exit"], 83, "{st}");
    let start = std::time::Instant::now();
    while st["pid"] != Value::Null {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "{st}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        st = c.ok("plugin_status", json!({"name": "other"}));
    }
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], hello_pid, "{st}");
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    assert_eq!(r["results"][1]["plugin"], "other", "{r}");
    assert_eq!(r["results"][1]["error"]["code"], UNAVAILABLE, "{r}");
    let r = c.call("plugin_restart", json!({"name": "other"}));
    assert_eq!(r["error"]["data"]["kind"], "validity.expired", "{r}");
    assert!(
        s.log().contains("certificate expiry: plugin other"),
        "{}",
        s.log()
    );
    s.stop_and_drain(&mut c);
    let audit = std::fs::read_to_string(&audit).unwrap();
    let q = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "quarantine")
        .expect("a quarantine record");
    assert_eq!(q["outcome"], "validity.expired", "{q}");
    assert_eq!(q["detail"]["request"], "expiry", "{q}");
}

/// A revocation list put in the trust directory while plugins run, with no load, restart or
/// SIGHUP after it: the periodic trust check (default 5 s) finds it and stops the revoked
/// signer's plugin (`revocation.key`, `detail.request` `"trust_change"`); the other runs on.
/// A list that cannot be used is said, and stops nothing. The old daemon
/// ran the revoked plugin until a `systemctl reload` or another load, for ever if none came.
#[test]
fn a_list_put_in_place_while_plugins_run_stops_the_revoked_one_without_a_reload() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (hello, other) = two_workers(&fx);
    fx.install_list(&[]);
    let mut s = Serve::start(&fx, CHECKING, None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": hello}));
    let other_pid = c.ok("plugin_load", json!({"package": other}))["pid"].clone();

    // A list that cannot be used says nothing about either plugin: both run on.
    // Each put in place by a rename: a write in place could be read half done (an empty
    // file, another error, logged a second time).
    let list = fx.path("trust/revocations.json");
    let put = |bytes: &[u8]| {
        let tmp = fx.path("trust/.revocations.json.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &list).unwrap();
    };
    let good = std::fs::read(&list).unwrap();
    put(b"{");
    wait_log(
        &s,
        "trust check: the trust configuration refuses every load and restart",
    );
    put(&good);
    for name in ["hello", "other"] {
        let st = c.ok("plugin_status", json!({"name": name}));
        assert_eq!(st["state"], "ready", "{st}");
    }

    fx.install_list(&["--key", "dev.pub"]);
    // Timed from the list in place (not from the start of `ca revoke`, a CLI run of its own):
    // the next check comes within the 5-s interval; the rest is slack for a loaded machine.
    let listed = std::time::Instant::now();
    let st = wait_status(&mut c, "hello", "quarantined");
    assert!(
        listed.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        listed.elapsed()
    );
    assert_eq!(st["trust_refusal"]["kind"], "revocation.key", "{st}");
    let st = c.ok("plugin_status", json!({"name": "other"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["pid"], other_pid, "{st}");
    let log = s.log();
    assert!(
        log.contains("trust check: plugin hello: revocation.key"),
        "{log}"
    );
    assert_eq!(
        log.matches("trust check: the trust configuration refuses")
            .count(),
        1,
        "{log}"
    );
    s.stop_and_drain(&mut c);
}

/// A package a load with trust `disabled` let in is refused once the policy says strict
/// (`trust_mode.unverified`, 81, `unverified_at_load`): at SIGHUP it is stopped and quarantined,
/// and `plugin_restart` answers `load_failed` with that kind and exit. The kind was not in the
/// kinds table: a debug daemon stopped on its `load_failed` (the table's assertion), and an
/// agent got a kind docs/exit-codes.md did not list.
#[test]
fn a_plugin_disabled_trust_let_in_is_refused_as_unverified_under_strict() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    fx.install_list(&[]);
    let mut s = serve_in_trust_mode(&fx, "disabled");
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": hello}));
    assert_eq!(r["state"], "ready", "{r}");
    to_strict_by_sighup(&fx, &s);
    let st = wait_status(&mut c, "hello", "quarantined");
    assert_eq!(st["trust_refusal"]["kind"], "trust_mode.unverified", "{st}");
    assert_eq!(st["trust_refusal"]["exit"], 81, "{st}");
    assert!(
        st["trust_refusal"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("plugin_load")),
        "{st}"
    );
    let r = c.call("plugin_restart", json!({"name": "hello"}));
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "trust_mode.unverified", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 81, "{r}");
    assert!(
        r["error"]["data"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("plugin_load")),
        "{r}"
    );
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "quarantined", "{st}");
    s.stop_and_drain(&mut c);
}

/// A daemon whose policy (`policy.toml`, no policy root) and command line set trust `mode`.
fn serve_in_trust_mode(fx: &Fixture, mode: &str) -> Serve {
    std::fs::write(
        fx.path("policy.toml"),
        format!("version = 1\n[trust]\nmode = \"{mode}\"\n"),
    )
    .unwrap();
    let none = fx.path("no-policy-root");
    Serve::start_with(
        fx,
        CONFIG,
        &[
            "--policy",
            "policy.toml",
            "--trust-mode",
            mode,
            "--policy-root",
            none.to_str().unwrap(),
        ],
    )
}

/// Its policy rewritten to trust mode `strict`, then SIGHUP: the loaded plugins are checked
/// again under it.
fn to_strict_by_sighup(fx: &Fixture, s: &Serve) {
    std::fs::write(
        fx.path("policy.toml"),
        "version = 1\n[trust]\nmode = \"strict\"\n",
    )
    .unwrap();
    signal(s.pid(), "HUP");
}

/// Re-sign `file` (a certificate `issuer_key` signed) with `not_after` set to `u64::MAX`: what a
/// CA outside stockade writes for "never expires" (`ca` itself counts days from now).
fn never_expiring(fx: &Fixture, file: &str, issuer_key: &str) {
    use stockade_trust::cert::Certificate;
    let c = Certificate::parse(&std::fs::read(fx.path(file)).unwrap()).unwrap();
    let mut body = c.body.clone();
    body.not_after = u64::MAX;
    let bytes = Certificate::issue(&body, &fx.secret(issuer_key), "").unwrap();
    std::fs::write(fx.path(file), bytes).unwrap();
}

/// A chain whose certificates never expire (`not_after` `u64::MAX`) loads and runs, and the
/// daemon serves on: it woke for the chain's expiry at `Instant::now()` plus the seconds left
/// to `u64::MAX`, an overflow that panicked the daemon's loop at the load (every plugin of
/// the daemon stopped with it). The wake-up for an expiry is now at most a minute ahead.
#[test]
fn a_chain_that_never_expires_does_not_stop_the_daemon() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack_worker(&fx, "other", &["on:x"]);
    fx.add_developer("dev2");
    never_expiring(&fx, "int/ca.cert", "root/ca.key");
    never_expiring(&fx, "dev2.cert", "int/ca.key");
    pack_other_as(&fx, "dev2");
    fx.install_list(&[]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    let r = c.call(
        "plugin_load",
        json!({"package": fx.dir().join("other.stockade")}),
    );
    assert_eq!(r["result"]["state"], "ready", "{r}: {}", s.log());
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    let st = c.ok("plugin_status", json!({"name": "other"}));
    assert_eq!(st["state"], "ready", "{st}");
    s.stop_and_drain(&mut c);
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// The daemon's wall clock set back a year (as an NTP step or `date -s` would; libfaketime
/// here, the host's clock untouched) puts it before the start of the certificates its plugin
/// was loaded under: the plugin that runs keeps running (a SIGHUP's check says so and stops
/// nothing), and its restart after a crash is not
/// made but tried again (`restarting`, `validity.not_yet_valid`) — not quarantined, the
/// package is not at fault — and made once the clock is right again. The old daemon
/// quarantined it for good: a `plugin_restart` by hand was needed after the clock was fixed.
#[test]
fn a_clock_set_back_holds_a_restart_until_it_is_right_and_quarantines_nothing() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    fx.install_list(&[]);
    let clock = fx.path("clock");
    let Some(mut s) = serve_with_clock(&fx, CONFIG, &clock) else {
        return;
    };
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": hello}));
    std::fs::write(&clock, "-1y\n").unwrap();
    signal(s.pid(), "HUP");
    wait_log(&s, "SIGHUP: plugin hello: validity.not_yet_valid");
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "still running: {r}");
    c.call("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    wait_log(&s, "plugin hello: not restarted, trying again");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "restarting", "{st}");
    assert_eq!(st["quarantined"], false, "{st}");
    assert_eq!(
        st["trust_refusal"]["kind"], "validity.not_yet_valid",
        "{st}"
    );
    assert!(
        s.log()
            .contains("the node's clock went back since its load"),
        "{}",
        s.log()
    );
    std::fs::write(&clock, "+0\n").unwrap();
    wait_ready(&mut c, "hello");
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    s.stop_and_drain(&mut c);
    assert!(!s.log().contains("quarantined"), "{}", s.log());
}

/// Under `--trust-mode warn` a check that fails again — at each restart, SIGHUP, or the
/// certificate's expiry — is one warning in the plugin's status and its `ready`: the latest
/// check's. An expired certificate's message carries the time of the check (`(now T)`), and
/// the old daemon appended every check's: a plugin checked at every restart and SIGHUP for
/// months carried one more warning each time in `plugin_status`, `plugin_list` and every
/// `ready` it announced. Here the daemon's wall clock (libfaketime, the host's untouched) is
/// stepped a day further past the developer certificate's expiry before each SIGHUP.
#[test]
fn in_warn_mode_checks_that_fail_again_leave_one_warning_not_one_each() {
    if !require_root() {
        return;
    }
    let Some(lib) = faketime_lib() else {
        require(
            false,
            "libfaketime is not installed (Debian package `faketime`)",
        );
        return;
    };
    let fx = Fixture::new();
    let hello = pack_worker(&fx, "hello", &["on:x"]);
    let clock = fx.path("clock");
    std::fs::write(&clock, "+0\n").unwrap();
    std::fs::write(
        fx.path("policy.toml"),
        "version = 1\n[trust]\nmode = \"warn\"\n",
    )
    .unwrap();
    let none = fx.path("no-policy-root");
    let wrapper: Vec<String> = [
        "env".to_string(),
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME_TIMESTAMP_FILE={}", clock.display()),
        "FAKETIME_NO_CACHE=1".to_string(),
        "DONT_FAKE_MONOTONIC=1".to_string(),
    ]
    .into();
    let mut s = Serve::start_with_under(
        &fx,
        CONFIG,
        &[
            "--policy",
            "policy.toml",
            "--trust-mode",
            "warn",
            "--policy-root",
            none.to_str().unwrap(),
        ],
        &wrapper,
    );
    let mut c = s.client();
    let st = c.ok("plugin_load", json!({"package": hello}));
    let at_load = st["warnings"].as_array().unwrap().len();
    let rechecks = |w: &Value| {
        w.as_array()
            .unwrap()
            .iter()
            .filter(|w| w.as_str().unwrap().starts_with("trust check again failed"))
            .count()
    };
    assert_eq!(rechecks(&st["warnings"]), 0, "{st}");
    for day in 1..=6 {
        // The developer certificate is valid for 365 days: each step is a day past its end.
        std::fs::write(&clock, format!("+{}d\n", 365 + day)).unwrap();
        signal(s.pid(), "HUP");
        wait_log_count(&s, "trust check again failed", day);
    }
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(st["state"], "ready", "runs on under warn: {st}");
    assert_eq!(st["signature_status"], "expired", "{st}");
    assert_eq!(rechecks(&st["warnings"]), 1, "{st}");
    assert_eq!(
        st["warnings"].as_array().unwrap().len(),
        at_load + 1,
        "{st}"
    );
    // Its restart is checked again too, and its `ready` says the one warning.
    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    c.wait_state("hello", "restarting");
    let ready = c.wait_state("hello", "ready");
    assert_eq!(rechecks(&ready["warnings"]), 1, "{ready}");
    let st = c.ok("plugin_status", json!({"name": "hello"}));
    assert_eq!(rechecks(&st["warnings"]), 1, "{st}");
    s.stop_and_drain(&mut c);
}

/// review-138 L1: under `--trust-mode warn` a package whose chain is proven but whose signer
/// is revoked keeps its `signer_chain` in the launch and restart records — which said nothing
/// of the revocation (a revoked key may be a stolen one): they carry `detail.signature_status`,
/// and so does the termination record of its crash (helper-143), and every other record that
/// names those signers: the `bypass` records of the call its crash let through (its hook fails
/// open here) and the `removal` of its unload (review-147: they named the signers alone).
#[test]
fn in_warn_mode_launch_and_restart_records_of_a_revoked_signer_say_so() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (hello, _) = two_workers(&fx);
    fx.install_list(&["--key", "dev.pub"]);
    let audit = fx.dir().join("audit.log");
    std::fs::write(
        fx.dir().join("policy.toml"),
        format!(
            "version = 1\n[trust]\nmode = \"warn\"\n[audit]\nfile = {audit:?}\n\
             [hooks.\"on:x\"]\nfailure = \"open\"\n"
        ),
    )
    .unwrap();
    let mut s = Serve::start_with(
        &fx,
        CONFIG,
        &["--policy", "policy.toml", "--trust-mode", "warn"],
    );
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": hello}));
    assert_eq!(r["signature_status"], "revoked", "{r}");
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    assert!(r["results"][0].get("bypassed").is_some(), "{r}");
    c.wait_state("hello", "restarting");
    wait_ready(&mut c, "hello");
    c.ok("plugin_unload", json!({"name": "hello"}));
    s.stop_and_drain(&mut c);
    let recs: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // helper-143: the termination record of the crash names the same signers, and said
    // nothing of the revocation either.
    for ev in ["launch", "restart", "termination"] {
        let r = recs
            .iter()
            .find(|r| r["event"] == ev && (ev == "termination" || r["outcome"] == "ok"))
            .unwrap_or_else(|| panic!("a {ev} record: {recs:#?}"));
        assert!(!r["signer_chain"].as_array().unwrap().is_empty(), "{r:#}");
        assert_eq!(r["detail"]["signature_status"], "revoked", "{ev}: {r:#}");
    }
    // review-147: so do the bypass records (begun at the crash, counted at the unload) and the
    // removal.
    let named: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "bypass" || r["event"] == "removal")
        .collect();
    assert_eq!(named.len(), 3, "{recs:#?}");
    for r in named {
        assert!(!r["signer_chain"].as_array().unwrap().is_empty(), "{r:#}");
        assert_eq!(r["detail"]["signature_status"], "revoked", "{r:#}");
    }
}
