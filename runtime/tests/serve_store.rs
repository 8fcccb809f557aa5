//! `stockade serve` and the store changing under it: `stockade remove NAME` unloads the plugin
//! the daemon loaded by that name, an install of another version relaunches it on that version
//! once verified and admitted, and a version the daemon's trust refuses leaves the loaded one
//! running and says why. Noticed by the periodic check (`[health] trust_check_interval_ms`).
//! Real sandboxes (root).

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A quick periodic check; small backoff, no pings.
const CONFIG: &str = "[restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\n\
                      [quarantine]\nmax_crashes = 100\nwindow_ms = 600000\n\
                      [health]\nping_interval_ms = 0\ntrust_check_interval_ms = 200\n";

/// `stockade ARGS… --state-dir state --policy-root no-policy-root` (and `--trust trust` for an
/// install), which must succeed.
fn store(fx: &Fixture, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--state-dir", "state", "--policy-root", "no-policy-root"]);
    if args[0] == "install" {
        all.extend(["--trust", "trust"]);
    }
    let r = fx.run(&all);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
}

/// The daemon's policy: only an audit log.
fn audited(log: &Path) -> String {
    format!("[audit]\nfile = {log:?}\n")
}

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Poll `plugin_status` of `name` until `done` holds (30 s at most); the status.
fn wait_status(c: &mut Client, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = c.ok("plugin_status", json!({ "name": name }));
        if done(&st) {
            return st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the daemon's log says `needle` (30 s at most).
fn wait_log(s: &Serve, needle: &str) {
    let start = Instant::now();
    while !s.log().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never logged `{needle}`: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plugin removed from the store while loaded by its name is stopped and unloaded (its
/// `unloaded` says `reason.kind` `removed`, a `removal` record `unloaded`); a plugin loaded
/// from its file is not the store's and runs on. A removed plugin a loaded one depends on is
/// kept (status and log say why) until that one is unloaded, then unloaded too. The old daemon
/// ran a removed plugin until it was unloaded or the daemon restarted.
#[test]
fn a_plugin_removed_from_the_store_is_unloaded_once_nothing_loaded_needs_it() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let solo = pack_worker(&fx, "solo", &["on:solo"]);
    let lib = pack_worker(&fx, "lib", &["on:lib"]);
    let needs = json!({"dependencies": [{"name": "lib", "version": "^0.1"}]});
    let app = pack_script_with(&fx, "app", &["on:app"], WORKER, needs);
    let file = pack_worker(&fx, "file", &["on:file"]);
    for p in [&solo, &lib, &app, &file] {
        store(&fx, &["install", p.to_str().unwrap()]);
    }
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "solo"}));
    c.ok("plugin_load", json!({"package": "app"})); // and lib, from the store
    c.ok("plugin_load", json!({"package": file}));
    assert_eq!(
        c.ok("plugin_status", json!({"name": "solo"}))["from_store"],
        true
    );
    assert_eq!(
        c.ok("plugin_status", json!({"name": "lib"}))["from_store"],
        true
    );
    assert_eq!(
        c.ok("plugin_status", json!({"name": "file"}))["from_store"],
        false
    );

    store(&fx, &["remove", "solo"]);
    let gone = c.wait_state("solo", "unloaded");
    assert_eq!(gone["reason"]["kind"], "removed", "{gone}");
    assert_eq!(
        c.err("plugin_status", json!({"name": "solo"})),
        UNKNOWN_PLUGIN
    );
    assert!(s
        .log()
        .contains("plugin solo 0.1.0: removed from the store; unloading it"));

    // A file the operator loaded is the operator's: removing its namesake changes nothing.
    store(&fx, &["remove", "file"]);
    // lib, forced out of the store under app: kept while app runs, and said so.
    store(&fx, &["remove", "lib", "--force"]);
    wait_log(
        &s,
        "`lib` was removed from the store but is kept loaded while app depend(s)",
    );
    let st = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["store_change"]["change"], "removed", "{st}");
    assert_eq!(
        c.ok("plugin_status", json!({"name": "file"}))["state"],
        "ready"
    );
    let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");

    c.ok("plugin_unload", json!({"name": "app"}));
    let gone = c.wait_state("lib", "unloaded");
    assert_eq!(gone["reason"]["kind"], "removed", "{gone}");
    assert_eq!(
        c.ok("plugin_status", json!({"name": "file"}))["state"],
        "ready"
    );

    let recs = records(&log);
    for name in ["solo", "lib"] {
        assert!(
            recs.iter().any(|r| r["event"] == "removal"
                && r["outcome"] == "unloaded"
                && r["plugin"] == name
                && r["detail"]["reason"] == "removed"),
            "no removal record for {name}: {recs:?}"
        );
    }
    assert!(!recs
        .iter()
        .any(|r| r["event"] == "removal" && r["plugin"] == "file"));
}

/// Pack worker `name` in `version` (signed by `dev`, or by `key` when given).
fn pack_version(fx: &Fixture, name: &str, version: &str, key: Option<&str>) -> String {
    let script = WORKER.replace(
        "\"version\":\"0.1.0\"",
        &format!("\"version\":\"{version}\""),
    );
    let pkg = pack_script_with(fx, name, &["on:x"], &script, json!({"version": version}));
    let out = format!("{name}-{version}.stockade");
    match key {
        None => std::fs::rename(&pkg, fx.dir().join(&out)).unwrap(),
        Some(k) => {
            let (keyf, cert) = (format!("{k}.key"), format!("{k}.cert"));
            let src = format!("src-{name}");
            let r = fx.run(&[
                "pack",
                &src,
                "--key",
                &keyf,
                "--devcert",
                &cert,
                "--intcert",
                "int/ca.cert",
                "-o",
                &out,
                "--force",
            ]);
            assert_eq!(r.code, 0, "pack: {}", r.stderr);
        }
    }
    fx.dir().join(out).to_str().unwrap().to_string()
}

/// An install of a newer version of a plugin loaded by its name relaunches it on that version
/// (as a restart: a `restart` record with `reason` `update` and `from_version`). A newer one
/// the daemon's trust refuses (its signer revoked after the install) is not run: the loaded
/// version runs on, untouched, and its status, the log and a `denial` record say why. The old
/// daemon ran the version it loaded until it was unloaded, with no word.
#[test]
fn an_update_relaunches_the_loaded_plugin_on_the_new_version_once_it_verifies() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    fx.add_developer("dev2");
    let v1 = pack_version(&fx, "w", "0.1.0", None);
    let v2 = pack_version(&fx, "w", "0.2.0", None);
    let v3 = pack_version(&fx, "w", "0.3.0", Some("dev2"));
    store(&fx, &["install", &v1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let st = c.ok("plugin_load", json!({"package": "w"}));
    assert_eq!(st["version"], "0.1.0", "{st}");
    let old_pid = st["pid"].clone();

    store(&fx, &["install", &v2]);
    let st = wait_status(&mut c, "w", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    assert_eq!(st["restarts"], 1, "{st}");
    assert_ne!(st["pid"], old_pid, "{st}");
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    let recs = records(&log);
    assert!(
        recs.iter().any(|r| r["event"] == "restart"
            && r["version"] == "0.2.0"
            && r["detail"]["reason"] == "update"
            && r["detail"]["from_version"] == "0.1.0"),
        "{recs:?}"
    );

    // 0.3.0's signer (another developer, pinned for `w` in its place) revoked, then 0.3.0
    // installed under `warn` (the CLI lets it in with a warning): the daemon, strict, verifies it as a load would and refuses it.
    let r = fx.run(&[
        "ca",
        "revoke",
        "--ca",
        "root",
        "-o",
        "trust/revocations.json",
        "--key",
        "dev2.pub",
    ]);
    assert_eq!(r.code, 0, "ca revoke: {}", r.stderr);
    let r = fx.run(&[
        "source",
        "repin-author",
        "w",
        "--author-key",
        "dev2.pub",
        "--yes",
        "--state-dir",
        "state",
        "--sources-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "repin-author: {}", r.stderr);
    store(&fx, &["install", &v3, "--trust-mode", "warn"]);
    let st = wait_status(&mut c, "w", |st| !st["store_change"].is_null());
    assert_eq!(st["store_change"]["change"], "update", "{st}");
    assert_eq!(st["store_change"]["kind"], "revocation.key", "{st}");
    assert_eq!(st["store_change"]["exit"], 84, "{st}");
    assert_eq!(st["store_change"]["version"], "0.3.0", "{st}");
    assert_eq!(st["version"], "0.2.0", "{st}");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["restarts"], 1, "{st}");
    wait_log(&s, "w 0.3.0 installed in the store is not run");
    let recs = records(&log);
    assert!(
        recs.iter().any(|r| r["event"] == "denial"
            && r["detail"]["request"] == "update"
            && r["detail"]["kind"] == "revocation.key"),
        "{recs:?}"
    );
}

/// With `trust_check_interval_ms = 0` the daemon does not look at the store by itself: a
/// removal waits for SIGHUP (`systemctl reload`), which reads the registry and applies it.
#[test]
fn without_the_periodic_check_sighup_applies_a_removal() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let solo = pack_worker(&fx, "solo", &["on:solo"]);
    store(&fx, &["install", solo.to_str().unwrap()]);
    let config = CONFIG.replace(
        "trust_check_interval_ms = 200",
        "trust_check_interval_ms = 0",
    );
    let s = Serve::start(&fx, &config, None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "solo"}));
    store(&fx, &["remove", "solo"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        c.ok("plugin_status", json!({"name": "solo"}))["state"],
        "ready"
    );
    signal(s.pid(), "HUP");
    let gone = c.wait_state("solo", "unloaded");
    assert_eq!(gone["reason"]["kind"], "removed", "{gone}");
}

/// Pack worker `name` in `version`, depending on `needs` (name, requirement), as
/// `NAME-VERSION.stockade`.
fn pack_needing(fx: &Fixture, name: &str, version: &str, needs: &[(&str, &str)]) -> String {
    let script = WORKER.replace(
        "\"version\":\"0.1.0\"",
        &format!("\"version\":\"{version}\""),
    );
    let deps: Vec<Value> = needs
        .iter()
        .map(|(n, v)| json!({"name": n, "version": v}))
        .collect();
    let pkg = pack_script_with(
        fx,
        name,
        &[&format!("on:{name}")],
        &script,
        json!({"version": version, "dependencies": deps}),
    );
    let out = fx.dir().join(format!("{name}-{version}.stockade"));
    std::fs::rename(&pkg, &out).unwrap();
    out.to_str().unwrap().to_string()
}

/// Review-113: `app` and the `lib` it needs updated together (`app` 0.1.1 needs `lib` ^0.1.1).
/// The check tries `app` first, while `lib` 0.1.0 still runs: refused for its dependencies.
/// Once `lib` runs 0.1.1 the refusal no longer holds and `app` is updated too. The old daemon
/// never tried `app`'s package again (only another package or SIGHUP did): `app` ran 0.1.0 for
/// good although everything it needs was loaded.
#[test]
fn an_update_refused_for_its_dependencies_is_tried_again_once_they_are_updated() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.1.1", &[]);
    let app2 = pack_needing(&fx, "app", "0.1.1", &[("lib", "^0.1.1")]);
    store(&fx, &["install", &lib1, &app1]);
    let s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    store(&fx, &["install", &lib2, &app2]);
    wait_status(&mut c, "lib", |st| {
        st["version"] == "0.1.1" && st["state"] == "ready"
    });
    let st = wait_status(&mut c, "app", |st| {
        st["version"] == "0.1.1" && st["state"] == "ready"
    });
    assert_eq!(st["store_change"], Value::Null, "{st}");
    let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
}

/// Review-113: an update found while the node's license cannot be used (here deleted after
/// its install: `license.missing`, 84) is refused as a load is then, and the loaded version runs
/// on; once the license is back the update is run. The old daemon verified it under the
/// license it still held, stopped the running version, and then refused the relaunch for the
/// license: the plugin was left stopped (`restarting`) until the license was fixed.
#[test]
fn an_update_waits_while_the_license_cannot_be_used_and_the_loaded_version_runs_on() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    fx.install_license("ACME-1", false);
    let v1 = pack_version(&fx, "w", "0.1.0", None);
    let v2 = pack_version(&fx, "w", "0.2.0", None);
    store(&fx, &["install", &v1]);
    let log = fx.dir().join("audit.log");
    // No periodic check: SIGHUP decides when the daemon looks.
    let config = CONFIG.replace(
        "trust_check_interval_ms = 200",
        "trust_check_interval_ms = 0",
    );
    let s = Serve::start(&fx, &config, Some(&audited(&log)));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "w"}));
    store(&fx, &["install", &v2]);
    let license = fx.path("state/license.json");
    let saved = std::fs::read(&license).unwrap();
    std::fs::remove_file(&license).unwrap();
    signal(s.pid(), "HUP");
    let st = wait_status(&mut c, "w", |st| !st["store_change"].is_null());
    assert_eq!(st["store_change"]["kind"], "license.missing", "{st}");
    assert_eq!(st["store_change"]["exit"], 84, "{st}");
    assert_eq!(st["version"], "0.1.0", "{st}");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["restarts"], 0, "{st}");
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");

    std::fs::write(&license, saved).unwrap();
    signal(s.pid(), "HUP");
    let st = wait_status(&mut c, "w", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    assert_eq!(st["store_change"], Value::Null, "{st}");
}
