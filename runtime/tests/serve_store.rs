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

/// [`audited`], with a shutdown grace long enough for a test to look at a plugin while its
/// hanging call keeps it stopping: the default 2 s was too short on a loaded machine for
/// what such a test does meanwhile (a store change, the periodic check, relaunches).
fn audited_slow_stop(log: &Path) -> String {
    format!("{}[protocol]\nshutdown_grace_ms = 8000\n", audited(log))
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

/// A call to `name`'s hook that hangs in it (30 s deadline), sent on `busy` without waiting for
/// its answer: `name` stops slowly (killed after the shutdown grace) while it is in flight.
fn hang_call(busy: &mut Client, c: &mut Client, name: &str) {
    busy.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "hook_invoke",
                      "params": invoke(&format!("on:{name}"), json!({"act": "hang"}),
                                       Some(30_000))}));
    wait_status(c, name, |st| st["in_flight"] == 1);
}

/// The store's registry as it is now.
fn registry(fx: &Fixture) -> Value {
    serde_json::from_slice(&std::fs::read(fx.path("state/store/registry.json")).unwrap()).unwrap()
}

/// The store's registry entry of `name` put back as it was in `before` (a rename over it, as
/// the store writes it), the other entries as they are now.
fn put_back_in_registry(fx: &Fixture, before: &Value, name: &str) {
    let mut after = registry(fx);
    after["plugins"][name] = before["plugins"][name].clone();
    let tmp = fx.path("state/store/registry.json.test");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&after).unwrap()).unwrap();
    std::fs::rename(&tmp, fx.path("state/store/registry.json")).unwrap();
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
    pack_version_with(fx, name, version, key, &["on:x"])
}

/// [`pack_version`], declaring `hooks`.
fn pack_version_with(
    fx: &Fixture,
    name: &str,
    version: &str,
    key: Option<&str>,
    hooks: &[&str],
) -> String {
    let script = WORKER.replace(
        "\"version\":\"0.1.0\"",
        &format!("\"version\":\"{version}\""),
    );
    let pkg = pack_script_with(fx, name, hooks, &script, json!({"version": version}));
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
    fx.install_list(&["--key", "dev2.pub"]);
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
/// The check judged `app` alone first, while `lib` 0.1.0 still ran: refused for its
/// dependencies, and run once `lib` ran 0.1.1 (the daemon before review-113 never tried
/// `app`'s package again: `app` ran 0.1.0 for good). The updates of a check are now judged
/// together (`updates_that_only_fit_together_are_run_together`): both are run.
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

/// `lib` and `app` updated together where neither fits alone: `lib` 0.2.0 breaks the running
/// `app` 0.1.0 (which needs `lib` ^0.1), and `app` 0.2.0 needs `lib` ^0.2. The check judges
/// the two as one set, as `stockade install` judged them: both are run, with no refusal, each
/// a `restart` record (`reason` `update`). The relaunches are ordered: with `app` 0.1.0 slow to
/// stop (a call hanging in it: killed after the shutdown grace) `lib` 0.2.0 is not launched
/// before it ended; then (0.3.0 over 0.2.0) with `lib` slow to stop, `app` 0.3.0 is not launched
/// before `lib` 0.3.0 is. The old daemon judged each alone against what ran, refused both
/// (`store.breaks_dependent`, `store.dependency`) at every check, and ran the old versions
/// until someone unloaded and loaded them by hand.
#[test]
fn updates_that_only_fit_together_are_run_together() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    store(&fx, &["install", &lib1, &app1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    for (from, to, slow, other) in [
        ("0.1.0", "0.2.0", "app", "lib"),
        ("0.2.0", "0.3.0", "lib", "app"),
    ] {
        let lib = pack_needing(&fx, "lib", to, &[]);
        let req = format!("^{}", &to[..3]);
        let app = pack_needing(&fx, "app", to, &[("lib", &req)]);
        hang_call(&mut busy, &mut c, slow);
        store(&fx, &["install", &lib, &app]);
        // `other` never runs its new version while `slow`'s old one is still stopping (looked
        // at first: `slow`'s old incarnation only ends).
        let mut seen_stopping = false;
        loop {
            let o = c.ok("plugin_status", json!({ "name": other }));
            let s = c.ok("plugin_status", json!({ "name": slow }));
            let stopping = s["version"] == from && s["state"] == "stopping";
            seen_stopping |= stopping;
            assert!(
                !(stopping && o["version"] == to && !o["pid"].is_null()),
                "{other} {to} runs while {slow} {from} is stopping: {o} {s}"
            );
            if o["version"] == to
                && o["state"] == "ready"
                && s["version"] == to
                && s["state"] == "ready"
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(seen_stopping, "{slow} never seen stopping");
        for name in ["lib", "app"] {
            let st = c.ok("plugin_status", json!({ "name": name }));
            assert_eq!(st["store_change"], Value::Null, "{st}");
            assert_eq!(st["from_store"], true, "{st}");
        }
        let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
        assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
        let recs = records(&log);
        for name in ["lib", "app"] {
            assert!(
                recs.iter().any(|r| r["event"] == "restart"
                    && r["plugin"] == name
                    && r["version"] == to
                    && r["detail"]["reason"] == "update"
                    && r["detail"]["from_version"] == from),
                "no restart of {name} onto {to}: {recs:?}"
            );
        }
        assert!(
            !recs
                .iter()
                .any(|r| r["event"] == "denial" && r["detail"]["request"] == "update"),
            "{recs:?}"
        );
    }
}

/// A set of updates that does not fit with what runs: `tool`, loaded from its file (not the
/// store's), needs `lib` ^0.1, so `lib` 0.2.0 — installed with `app` 0.2.0 that needs it —
/// breaks it. Both are refused and the old versions run on: `lib` for `tool`
/// (`store.breaks_dependent`), `app` for the `lib` 0.1.0 that runs on (`store.dependency`),
/// naming the update it was judged with; a `denial` record each. Once `tool` is unloaded the
/// loaded set changed: the two are judged again and run.
#[test]
fn updates_that_do_not_fit_together_leave_the_old_versions_running() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let tool = pack_needing(&fx, "tool", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let app2 = pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2")]);
    store(&fx, &["install", &lib1, &app1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    c.ok("plugin_load", json!({ "package": tool }));
    store(&fx, &["install", &lib2, &app2]);
    let lib = wait_status(&mut c, "lib", |st| !st["store_change"].is_null());
    let app = wait_status(&mut c, "app", |st| !st["store_change"].is_null());
    assert_eq!(
        lib["store_change"]["kind"], "store.breaks_dependent",
        "{lib}"
    );
    assert_eq!(lib["store_change"]["version"], "0.2.0", "{lib}");
    assert_eq!(app["store_change"]["kind"], "store.dependency", "{app}");
    assert_eq!(app["store_change"]["exit"], 101, "{app}");
    let msg = app["store_change"]["message"].as_str().unwrap();
    assert!(
        msg.contains("judged together with the other updates of this check: lib 0.2.0"),
        "{msg}"
    );
    wait_log(
        &s,
        "app 0.2.0 installed in the store is not run (dependencies refused it",
    );
    // Still refused a few checks later, still the old versions, each said once.
    std::thread::sleep(Duration::from_millis(700));
    for (name, st) in [("lib", &lib), ("app", &app)] {
        let now = c.ok("plugin_status", json!({ "name": name }));
        assert_eq!(now["version"], "0.1.0", "{now}");
        assert_eq!(now["state"], "ready", "{now}");
        assert_eq!(now["restarts"], 0, "{now}");
        assert_eq!(now["store_change"], st["store_change"], "{now}");
    }
    let recs = records(&log);
    for (name, kind) in [
        ("lib", "store.breaks_dependent"),
        ("app", "store.dependency"),
    ] {
        let denials = recs
            .iter()
            .filter(|r| {
                r["event"] == "denial"
                    && r["plugin"] == name
                    && r["detail"]["request"] == "update"
                    && r["detail"]["stage"] == "dependencies"
                    && r["detail"]["kind"] == kind
            })
            .count();
        assert_eq!(denials, 1, "{name}: {recs:?}");
    }

    // `tool` gone, the set fits.
    c.ok("plugin_unload", json!({"name": "tool"}));
    for name in ["lib", "app"] {
        let st = wait_status(&mut c, name, |st| {
            st["version"] == "0.2.0" && st["state"] == "ready"
        });
        assert_eq!(st["store_change"], Value::Null, "{st}");
    }
}

/// A refusal for dependencies is judged again once the store's other updates changed, not
/// only the loaded plugins. `lib` 0.2.0 comes with an `app` 0.2.0 the daemon refuses itself
/// (its signer revoked; installed under `warn`): `lib`, judged without it, breaks the running
/// `app` 0.1.0 and is refused. Then a good `app` 0.2.1 is installed: `lib` is judged again with
/// it and both run. The old daemon kept `lib`'s refusal (the loaded set had not changed) and
/// refused `app` 0.2.1 alone against the `lib` 0.1.0 that ran: both for good.
#[test]
fn a_refusal_for_dependencies_is_judged_again_with_a_new_update() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    fx.add_developer("dev2");
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2")]);
    let r = fx.run(&[
        "pack",
        "src-app",
        "--key",
        "dev2.key",
        "--devcert",
        "dev2.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "app-0.2.0-dev2.stockade",
        "--force",
    ]);
    assert_eq!(r.code, 0, "pack: {}", r.stderr);
    let app2 = fx.dir().join("app-0.2.0-dev2.stockade");
    let app3 = pack_needing(&fx, "app", "0.2.1", &[("lib", "^0.2")]);
    store(&fx, &["install", &lib1, &app1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    for args in [
        &[
            "ca",
            "revoke",
            "--ca",
            "root",
            "-o",
            "trust/revocations.json",
            "--key",
            "dev2.pub",
        ][..],
        &[
            "source",
            "repin-author",
            "app",
            "--author-key",
            "dev2.pub",
            "--yes",
            "--state-dir",
            "state",
            "--sources-dir",
            "state",
        ],
    ] {
        let r = fx.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    store(
        &fx,
        &[
            "install",
            &lib2,
            app2.to_str().unwrap(),
            "--trust-mode",
            "warn",
        ],
    );
    let app = wait_status(&mut c, "app", |st| !st["store_change"].is_null());
    assert_eq!(app["store_change"]["kind"], "revocation.key", "{app}");
    let lib = wait_status(&mut c, "lib", |st| !st["store_change"].is_null());
    assert_eq!(
        lib["store_change"]["kind"], "store.breaks_dependent",
        "{lib}"
    );
    assert_eq!(lib["version"], "0.1.0", "{lib}");

    let r = fx.run(&[
        "source",
        "repin-author",
        "app",
        "--author-key",
        "dev.pub",
        "--yes",
        "--state-dir",
        "state",
        "--sources-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "repin-author: {}", r.stderr);
    store(&fx, &["install", &app3]);
    wait_status(&mut c, "lib", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready" && st["store_change"].is_null()
    });
    wait_status(&mut c, "app", |st| {
        st["version"] == "0.2.1" && st["state"] == "ready" && st["store_change"].is_null()
    });
}

/// Review-119: `lib` and `app` updated together (`app` 0.2.0 needs `lib` ^0.2), and `lib`'s
/// update withdrawn before its relaunch (the registry back to the `lib` 0.1.0 loaded, while
/// `lib` 0.1.0 is slow to stop and `app` 0.2.0 waits for it). `app`'s new version no longer
/// fits what is loaded: it is refused at its relaunch (`store_change` `store.dependency`, a
/// `denial` record) and `app` 0.1.0 — still loaded — is relaunched instead, `lib` 0.1.0 under
/// it. The old daemon launched `app` 0.2.0 anyway, beside a `lib` 0.1.0 it does not accept.
#[test]
fn an_update_whose_dependency_update_did_not_happen_is_not_launched() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let app2 = pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2")]);
    store(&fx, &["install", &lib1, &app1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib2, &app2]);
    // Both admitted: `lib` 0.1.0 stopping (the hanging call), `app` 0.1.0 ended, 0.2.0 waiting.
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    // The registry goes back to the loaded `lib` for `lib` (`app` 0.2.0 still installed).
    put_back_in_registry(&fx, &before, "lib");
    wait_log(&s, "no longer installed");
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "ready");
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    let app = wait_status(&mut c, "app", |st| st["state"] == "ready");
    assert_eq!(
        app["version"], "0.1.0",
        "app 0.2.0 runs beside lib 0.1.0: {app}"
    );
    assert_eq!(app["store_change"]["kind"], "store.dependency", "{app}");
    // Judged again at the next checks: still refused, the old version runs on.
    std::thread::sleep(Duration::from_millis(600));
    let app = c.ok("plugin_status", json!({"name": "app"}));
    assert_eq!(app["version"], "0.1.0", "{app}");
    assert_eq!(app["state"], "ready", "{app}");
    assert_eq!(app["store_change"]["kind"], "store.dependency", "{app}");
    let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    let recs = records(&log);
    // Said once: at the relaunch, and not again by the checks that judge it again.
    let denials: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "denial" && r["plugin"] == "app")
        .collect();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0]["detail"]["request"], "update", "{denials:?}");
    assert_eq!(denials[0]["detail"]["stage"], "dependencies", "{denials:?}");
    assert_eq!(
        denials[0]["detail"]["kind"], "store.dependency",
        "{denials:?}"
    );
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "restart" && r["plugin"] == "app" && r["version"] == "0.2.0"),
        "{recs:?}"
    );
    // `app` 0.1.0's relaunch says why it is not the update.
    assert!(
        recs.iter().any(|r| r["event"] == "restart"
            && r["plugin"] == "app"
            && r["version"] == "0.1.0"
            && r["detail"]["reason"] == "update_refused"),
        "{recs:?}"
    );
}

/// `pack_needing`'s package of `name` `version`, signed by developer `key` instead.
fn pack_needing_as(
    fx: &Fixture,
    key: &str,
    name: &str,
    version: &str,
    needs: &[(&str, &str)],
) -> String {
    let out = pack_needing(fx, name, version, needs);
    let (keyf, cert) = (format!("{key}.key"), format!("{key}.cert"));
    let r = fx.run(&[
        "pack",
        &format!("src-{name}"),
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
    out
}

/// Review-119: `lib` and `app` updated together, `app` 0.1.0 slow to stop (a hanging call), so
/// `lib` 0.2.0 waits for it; meanwhile `lib`'s signer (dev2) is revoked and the trust check
/// refuses `lib` 0.1.0. `app` 0.2.0 (needing `lib` ^0.2) must neither run beside a `lib`
/// 0.1.0 nor wait for ever. The old daemon left `app` stopped (`update_waits` waiting on a
/// quarantined plugin's update) until an agent restarted `lib` by hand. Since helper-120 `lib`
/// is relaunched on its update, refused there too (dev2 signed it), quarantined in 0.2.0, and
/// `app` 0.2.0 runs.
#[test]
fn a_dependant_does_not_wait_for_ever_on_a_quarantined_dependency() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    fx.add_developer("dev2");
    let lib1 = pack_needing_as(&fx, "dev2", "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing_as(&fx, "dev2", "lib", "0.2.0", &[]);
    let app2 = pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2")]);
    store(&fx, &["install", &lib1, &app1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    hang_call(&mut busy, &mut c, "app");
    store(&fx, &["install", &lib2, &app2]);
    wait_status(&mut c, "app", |st| st["state"] == "stopping");
    fx.install_list(&["--key", "dev2.pub"]);
    // `lib` 0.1.0's refusal relaunches it on its update (helper-120), which dev2 signed too:
    // refused at that relaunch, `lib` quarantined in 0.2.0. `app` 0.2.0 then fits it and runs
    // (a dependant runs beside a quarantined dependency); it did not wait for ever.
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "quarantined");
    assert_eq!(lib["version"], "0.2.0", "{lib}");
    let app = wait_status(&mut c, "app", |st| st["state"] == "ready");
    assert_eq!(app["version"], "0.2.0", "{app}");
    assert!(app["store_change"].is_null(), "{app}");
}

/// Developer `dev2`, and its key certified a second time as `dev2b` (another serial; the same
/// author key, as the store's author pinning requires): the serial of `dev2`'s certificate.
fn dev2_certified_twice(fx: &Fixture) -> String {
    fx.add_developer("dev2");
    // dev2's key certified a second time (another serial), its copy named for that certificate.
    std::fs::copy(fx.path("dev2.key"), fx.path("dev2b.key")).unwrap();
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev2.pub",
        "--subject",
        "dev2",
        "-o",
        "dev2b.cert",
        "--scope",
        "any",
    ]);
    assert_eq!(r.code, 0, "issue: {}", r.stderr);
    let serial = |cert: &str| -> String {
        let v: Value = serde_json::from_slice(&std::fs::read(fx.path(cert)).unwrap()).unwrap();
        v["certificate"]["serial"].as_str().unwrap().to_string()
    };
    let (old_serial, new_serial) = (serial("dev2.cert"), serial("dev2b.cert"));
    assert_ne!(old_serial, new_serial);
    old_serial
}

/// The start of the two "refused while its update waits" cases: `lib` 0.1.0 (signed under
/// dev2's first certificate) and `app` 0.1.0 loaded from the store under `config`; `lib`
/// 0.2.0 (dev2's second certificate) and `app` 0.2.0 installed and admitted together while
/// `app` 0.1.0 is slow to stop (a hanging call on the client returned third: keep it); then
/// `lib` 0.1.0's certificate revoked. Returns the daemon (audited to the log returned last)
/// and a client. `policy` goes after the `[audit]` table; with `sighup` the update is admitted
/// by a SIGHUP's store check (for a `config` without the periodic check), not the periodic one.
fn lib_revoked_while_its_update_waits(
    fx: &Fixture,
    config: &str,
    policy: &str,
    sighup: bool,
) -> (Serve, Client, Client, std::path::PathBuf) {
    let old_serial = dev2_certified_twice(fx);
    let lib1 = pack_needing_as(fx, "dev2", "lib", "0.1.0", &[]);
    let app1 = pack_needing(fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing_as(fx, "dev2b", "lib", "0.2.0", &[]);
    let app2 = pack_needing(fx, "app", "0.2.0", &[("lib", "^0.2")]);
    store(fx, &["install", &lib1, &app1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(fx, config, Some(&format!("{}{policy}", audited(&log))));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    hang_call(&mut busy, &mut c, "app");
    store(fx, &["install", &lib2, &app2]);
    if sighup {
        signal(s.pid(), "HUP");
    }
    // Admitted: `app` 0.1.0 stopping (the hanging call), `lib` 0.2.0 waiting for it.
    wait_status(&mut c, "app", |st| st["state"] == "stopping");
    fx.install_list(&["--serial", &old_serial]);
    (s, c, busy, log)
}

/// Helper-120: as above, but `lib` 0.2.0 is signed under another certificate (dev2b: the same
/// author key, as the store's author pinning requires, certified again): only the loaded `lib`
/// 0.1.0's certificate (dev2's serial) is revoked while the update waits for its relaunch. The
/// refusal is the old package's: `lib` is relaunched on 0.2.0 (verified again at that
/// relaunch) and `app` 0.2.0 after it. The old daemon quarantined `lib` 0.1.0 with the update
/// kept pending, which only a relaunch takes: the store check skipped it ("admitted
/// already"), `plugin_restart` judged the revoked 0.1.0; the good 0.2.0 never ran.
#[test]
fn a_plugin_refused_while_its_update_waits_is_relaunched_on_the_update() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (s, mut c, _busy, log) = lib_revoked_while_its_update_waits(&fx, CONFIG, "", false);
    let lib = wait_status(&mut c, "lib", |st| {
        st["state"] == "ready" || st["state"] == "quarantined"
    });
    assert_eq!(lib["state"], "ready", "{lib}");
    assert_eq!(lib["version"], "0.2.0", "{lib}");
    wait_log(&s, "relaunched on the update");
    let app = wait_status(&mut c, "app", |st| st["state"] == "ready");
    assert_eq!(app["version"], "0.2.0", "{app}");
    assert!(app["store_change"].is_null(), "{app}");
    let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    let recs = records(&log);
    // The old package's refusal is said (a quarantine record), then the update's relaunch.
    assert!(
        recs.iter()
            .any(|r| r["event"] == "quarantine" && r["plugin"] == "lib" && r["version"] == "0.1.0"),
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|r| r["event"] == "restart"
            && r["plugin"] == "lib"
            && r["version"] == "0.2.0"
            && r["detail"]["reason"] == "update"
            // The quarantine the refusal recorded ends with that relaunch, and the record
            // says so (audit-135).
            && r["detail"]["quarantine_lifted"] == true),
        "{recs:?}"
    );
    // app's update lifted nothing.
    assert!(
        recs.iter()
            .filter(|r| r["event"] == "restart" && r["plugin"] == "app")
            .all(|r| r["detail"].get("quarantine_lifted").is_none()),
        "{recs:?}"
    );
}

/// Review-119: an update refused for a plugin that is being unloaded (`tool`, loaded from its
/// file, needing `lib` ^0.1, slow to stop: a hanging call) is judged again once that plugin is
/// gone. The old daemon judged the update against the unloading `tool` but keyed the refusal
/// to the loaded set without it: once `tool` was gone nothing had changed for the check, and
/// `lib` ran 0.1.0 until SIGHUP or another install.
#[test]
fn an_update_refused_for_an_unloading_plugin_is_run_once_it_is_gone() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let tool = pack_needing(&fx, "tool", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    store(&fx, &["install", &lib1]);
    let s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    let mut busy = s.client();
    let mut unloader = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    c.ok("plugin_load", json!({ "package": tool }));
    hang_call(&mut busy, &mut c, "tool");
    unloader.send(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "plugin_unload",
                          "params": {"name": "tool"}}),
    );
    wait_status(&mut c, "tool", |st| st["state"] == "stopping");
    store(&fx, &["install", &lib2]);
    let lib = wait_status(&mut c, "lib", |st| {
        !st["store_change"].is_null() || st["version"] == "0.2.0"
    });
    // Judged while `tool` stops (2 s: the hanging call is killed after the grace): refused
    // for it.
    assert_eq!(
        lib["store_change"]["kind"], "store.breaks_dependent",
        "{lib}"
    );
    let lib = wait_status(&mut c, "lib", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    assert_eq!(lib["store_change"], Value::Null, "{lib}");
}

/// The start of the two "stays quarantined" cases: `lib` 0.1.0 (needed by `app` 0.1.0)
/// crash-quarantined after 2 crashes; `lib` 0.2.0 and `app` 0.2.0 (needing it) installed and
/// admitted together while `app` 0.1.0 is slow to stop (a hanging call on the client returned
/// third: keep it); then the registry entry of `withdrawn` put back to its 0.1.0, and the
/// daemon has seen it. Returns the daemon (audited to the log returned last) and a client.
fn quarantined_lib_with_an_update_withdrawn(
    fx: &Fixture,
    withdrawn: &str,
) -> (Serve, Client, Client, std::path::PathBuf) {
    let lib1 = pack_needing(fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let lib2 = pack_needing(fx, "lib", "0.2.0", &[]);
    let app2 = pack_needing(fx, "app", "0.2.0", &[("lib", "^0.2")]);
    store(fx, &["install", &lib1, &app1]);
    let before = registry(fx);
    let log = fx.dir().join("audit.log");
    let config = CONFIG.replace("max_crashes = 100", "max_crashes = 2");
    let s = Serve::start(fx, &config, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    for i in 0..2 {
        wait_status(&mut c, "lib", |st| {
            st["state"] == "ready" && st["crashes"] == i
        });
        c.ok(
            "hook_invoke",
            invoke("on:lib", json!({"act": "crash"}), None),
        );
    }
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "quarantined");
    assert_eq!(lib["crashes"], 2, "{lib}");
    hang_call(&mut busy, &mut c, "app");
    store(fx, &["install", &lib2, &app2]);
    // Both admitted: `app` 0.1.0 stopping (the hanging call), `lib` 0.2.0 waiting for it.
    wait_status(&mut c, "app", |st| st["state"] == "stopping");
    put_back_in_registry(fx, &before, withdrawn);
    wait_log(&s, "no longer installed");
    (s, c, busy, log)
}

/// The end of the two "stays quarantined" cases: `lib` is back in its quarantine on 0.1.0 with
/// its crash count (not relaunched), `app` 0.1.0 runs, and the next checks change nothing.
fn lib_stays_quarantined_beside_app_0_1_0(c: &mut Client) {
    let lib = wait_status(c, "lib", |st| {
        st["state"] == "quarantined" || st["state"] == "ready"
    });
    assert_eq!(
        lib["state"], "quarantined",
        "the crash-quarantined lib 0.1.0 relaunched: {lib}"
    );
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    assert_eq!(lib["crashes"], 2, "{lib}");
    let app = wait_status(c, "app", |st| st["state"] == "ready");
    assert_eq!(app["version"], "0.1.0", "{app}");
    // Judged again at the next checks: still refused, still quarantined.
    std::thread::sleep(Duration::from_millis(600));
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["state"], "quarantined", "{lib}");
}

/// Helper-120: a crash-quarantined `lib` 0.1.0 is admitted for its update together with
/// `app`'s (`lib` 0.2.0 breaks `app` 0.1.0, `app` 0.2.0 needs it); `app` 0.1.0 is slow to stop
/// (a hanging call), and meanwhile the registry goes back to `app` 0.1.0: `lib` 0.2.0 no longer
/// fits at its relaunch. `lib` goes back to its quarantine, its crash count kept. The old
/// daemon had cleared the crash count at the admission and relaunched the crash-looping `lib`
/// 0.1.0 instead (a `restart` record with `reason` `update_refused`).
#[test]
fn a_quarantined_plugin_whose_update_does_not_fit_stays_quarantined() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (_serve, mut c, _busy, log) = quarantined_lib_with_an_update_withdrawn(&fx, "app");
    let lib = wait_status(&mut c, "lib", |st| !st["store_change"].is_null());
    assert_eq!(
        lib["store_change"]["kind"], "store.breaks_dependent",
        "{lib}"
    );
    lib_stays_quarantined_beside_app_0_1_0(&mut c);
    let recs = records(&log);
    assert!(
        !recs.iter().any(|r| r["event"] == "restart"
            && r["plugin"] == "lib"
            && r["detail"]["reason"] == "update_refused"),
        "{recs:?}"
    );
}

/// Review-119 (helper-121): `lib`, `util` and `app` updated together (`app` 0.2.0 needs `lib`
/// ^0.2 and `util` ^0.2). `lib` 0.2.0 runs; `util` 0.1.0 is slow to stop (a hanging call), so
/// `app` 0.2.0 waits for it — and meanwhile `app`'s update is withdrawn (the registry back to
/// the `app` 0.1.0 loaded). `app` 0.1.0 needs `lib` ^0.1: it is not relaunched beside `lib`
/// 0.2.0 but held stopped (`plugin_status.held`, kind `store.dependency`, a `denial` record),
/// and run again by itself once what it needs fits — here `lib` 0.1.0 installed again. The old daemon
/// relaunched `app` 0.1.0 as a plain restart, with no dependency check, beside `lib` 0.2.0.
#[test]
fn a_plugin_whose_dependencies_changed_under_it_is_held_until_they_fit() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let util1 = pack_needing(&fx, "util", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1"), ("util", "^0.1")]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let util2 = pack_needing(&fx, "util", "0.2.0", &[]);
    let app2 = pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2"), ("util", "^0.2")]);
    store(&fx, &["install", &lib1, &util1, &app1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited_slow_stop(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib, util
    hang_call(&mut busy, &mut c, "util");
    store(&fx, &["install", &lib2, &util2, &app2]);
    // `lib` 0.2.0 runs (`app` 0.1.0 ended), `util` 0.1.0 still stops, `app` 0.2.0 waits for it.
    let lib = wait_status(&mut c, "lib", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    assert!(lib["store_change"].is_null(), "{lib}");
    let util = c.ok("plugin_status", json!({"name": "util"}));
    assert_eq!(util["state"], "stopping", "{util}");
    put_back_in_registry(&fx, &before, "app");
    wait_log(&s, "no longer installed");
    let app = wait_status(&mut c, "app", |st| {
        !st["held"].is_null() || st["state"] == "ready"
    });
    assert_ne!(
        app["state"], "ready",
        "app 0.1.0 runs beside lib 0.2.0: {app}"
    );
    assert_eq!(app["version"], "0.1.0", "{app}");
    assert_eq!(app["state"], "held", "{app}");
    assert_eq!(app["held"]["kind"], "store.dependency", "{app}");
    assert!(app["store_change"].is_null(), "{app}");
    // Said to the agents as a state of its own, with the reason its status shows (helper-126:
    // the old daemon sent no `plugin_state` for the hold — the last one was app's `exited`).
    let held = held_states(&c, "app");
    assert_eq!(held.len(), 1, "{:?}", c.notes);
    assert_eq!(held[0]["reason"], app["held"], "{held:?}");
    // Held while it does not fit: the checks after it (util's relaunch, the periodic check)
    // do not run it.
    std::thread::sleep(Duration::from_millis(3000));
    let app = c.ok("plugin_status", json!({"name": "app"}));
    assert_eq!(app["state"], "held", "{app}");
    assert_eq!(held_states(&c, "app").len(), 1, "{:?}", c.notes);
    // `util` 0.2.0 breaks the held `app` 0.1.0 (a held plugin is loaded, in its version):
    // refused at its relaunch, `util` 0.1.0 relaunched.
    let util = wait_status(&mut c, "util", |st| st["state"] == "ready");
    assert_eq!(util["version"], "0.1.0", "{util}");
    assert_eq!(
        util["store_change"]["kind"], "store.breaks_dependent",
        "{util}"
    );
    let recs = records(&log);
    let denials: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "denial" && r["plugin"] == "app")
        .collect();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0]["detail"]["request"], "restart", "{denials:?}");
    assert_eq!(denials[0]["detail"]["stage"], "dependencies", "{denials:?}");
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "restart" && r["plugin"] == "app" && r["version"] == "0.1.0"),
        "{recs:?}"
    );
    // `lib` 0.1.0 installed again (a forced downgrade): admitted (the held `app` 0.1.0 accepts
    // it) and relaunched, and then `app` 0.1.0 fits and is launched by itself.
    store(&fx, &["install", "--force", &lib1]);
    let app = wait_status(&mut c, "app", |st| st["state"] == "ready");
    assert_eq!(app["version"], "0.1.0", "{app}");
    assert!(app["held"].is_null(), "{app}");
    // Its relaunch is said as any launch is: `starting`, then `ready`, after the `held`.
    let after: Vec<&Value> = c
        .notes
        .iter()
        .filter(|n| n["method"] == "plugin_state" && n["params"]["plugin"] == "app")
        .map(|n| &n["params"]["state"])
        .skip_while(|s| *s != "held")
        .collect();
    assert_eq!(after, ["held", "starting", "ready"], "{:?}", c.notes);
    // Launched in the turn that relaunched `lib` on 0.1.0, although `app` was looked at first
    // in that turn (name order) and did not fit then: its `starting` comes before `lib`'s
    // `ready` (review-129: the old daemon looked at a held plugin once per turn and launched
    // `app` only at the next event — `lib`'s handshake here; with no process to come and both
    // periodic intervals 0, never).
    let order: Vec<(String, String)> = c
        .notes
        .iter()
        .filter(|n| n["method"] == "plugin_state")
        .map(|n| {
            let p = &n["params"];
            (
                p["plugin"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let app_starting = order
        .iter()
        .rposition(|(p, s)| p == "app" && s == "starting")
        .expect("app starting");
    let lib_ready = order
        .iter()
        .rposition(|(p, s)| p == "lib" && s == "ready")
        .expect("lib ready");
    assert!(app_starting < lib_ready, "{order:?}");
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    let r = c.ok("hook_invoke", invoke("on:app", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    let recs = records(&log);
    assert!(
        recs.iter().any(|r| r["event"] == "restart"
            && r["plugin"] == "app"
            && r["version"] == "0.1.0"
            && r["detail"]["reason"] == "dependencies_fit"),
        "{recs:?}"
    );
}

/// The `plugin_state` notifications `held` of `plugin` that `c` received so far (their params).
fn held_states(c: &Client, plugin: &str) -> Vec<Value> {
    c.notes
        .iter()
        .filter(|n| {
            n["method"] == "plugin_state"
                && n["params"]["plugin"] == plugin
                && n["params"]["state"] == "held"
        })
        .map(|n| n["params"].clone())
        .collect()
}

/// Helper-120 (helper-121): as `a_plugin_refused_while_its_update_waits_is_relaunched_on_the_update`,
/// but an agent's `plugin_restart lib` finds `lib` 0.1.0's
/// certificate revoked before the periodic check does. The restart relaunches `lib` on its
/// update (verified again then), so it is not refused: the answer says so, with the update's
/// version. The old daemon answered `load_failed` with the revocation (and a `denial` of the
/// restart) and then relaunched `lib` on 0.2.0 all the same.
///
/// Review-138: this test failed once under load (`update: null`): `app` 0.1.0, stopping with
/// its hanging call, was killed when the default 2 s shutdown grace ran out, and `lib` was
/// relaunched on its update before the restart came — no update waited any more. Now nothing
/// is left to time: `app` stops only when the test kills it, after the restart's answer, and
/// with no periodic check (the update admitted by a SIGHUP's store check) only the restart can
/// find the revocation.
#[test]
fn plugin_restart_of_a_plugin_refused_while_its_update_waits_answers_the_update() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let config = CONFIG.replace(
        "trust_check_interval_ms = 200",
        "trust_check_interval_ms = 0",
    );
    let (_serve, mut c, _busy, log) = lib_revoked_while_its_update_waits(
        &fx,
        &config,
        "[protocol]\nshutdown_grace_ms = 600000\n",
        true,
    );
    let app_pid: i32 = c.ok("plugin_status", json!({"name": "app"}))["pid"]
        .as_i64()
        .and_then(|p| p.try_into().ok())
        .expect("app's pid");
    let answer = c.ok("plugin_restart", json!({"name": "lib"}));
    // `app` 0.1.0 stopped, as its grace would end it: `lib` 0.2.0 is relaunched, then `app`.
    signal(app_pid, "KILL");
    assert_eq!(answer["restarting"], true, "{answer}");
    assert_eq!(answer["update"]["version"], "0.2.0", "{answer}");
    assert_eq!(answer["update"]["from_version"], "0.1.0", "{answer}");
    let lib = wait_status(&mut c, "lib", |st| {
        st["state"] == "ready" || st["state"] == "quarantined"
    });
    assert_eq!(lib["state"], "ready", "{lib}");
    assert_eq!(lib["version"], "0.2.0", "{lib}");
    let app = wait_status(&mut c, "app", |st| st["state"] == "ready");
    assert_eq!(app["version"], "0.2.0", "{app}");
    let recs = records(&log);
    // The old package's refusal is said (a quarantine record found by the restart); the
    // restart itself was not refused.
    assert!(
        recs.iter().any(|r| r["event"] == "quarantine"
            && r["plugin"] == "lib"
            && r["version"] == "0.1.0"
            && r["detail"]["request"] == "plugin_restart"),
        "{recs:?}"
    );
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "denial" && r["plugin"] == "lib"),
        "{recs:?}"
    );
    // A plain restart answers no update.
    let answer = c.ok("plugin_restart", json!({"name": "app"}));
    assert!(answer["update"].is_null(), "{answer}");
}

/// Review-119 (helper-121): an update admitted at one check and still waiting for its
/// relaunch counts in its new version at the next check. `lib` and `app` are updated together
/// (`app` 0.2.0 needs `lib` ^0.2) and `lib` 0.1.0 is slow to stop (a hanging call); meanwhile
/// `tool` 0.2.0, needing `lib` ^0.2, is installed. It fits the `lib` 0.2.0 about to run: it
/// is admitted at once and relaunched after `lib`. The old daemon judged it against the `lib`
/// 0.1.0 being replaced: refused (a `denial`, `store_change`), then judged again and run once
/// `lib` 0.2.0 ran — and a `tool` update fitting only `lib` 0.1.0 was admitted, to be refused
/// at its relaunch.
#[test]
fn an_update_waiting_for_its_relaunch_counts_in_its_new_version_at_the_next_check() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let app1 = pack_needing(&fx, "app", "0.1.0", &[("lib", "^0.1")]);
    let tool1 = pack_needing(&fx, "tool", "0.1.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let app2 = pack_needing(&fx, "app", "0.2.0", &[("lib", "^0.2")]);
    let tool2 = pack_needing(&fx, "tool", "0.2.0", &[("lib", "^0.2")]);
    store(&fx, &["install", &lib1, &app1, &tool1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib
    c.ok("plugin_load", json!({"package": "tool"}));
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib2, &app2]);
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    store(&fx, &["install", &tool2]);
    let tool = wait_status(&mut c, "tool", |st| {
        !st["store_change"].is_null() || st["state"] != "ready"
    });
    assert!(
        tool["store_change"].is_null(),
        "tool 0.2.0 judged against the lib 0.1.0 being replaced: {tool}"
    );
    // Judged while `lib` 0.1.0 was still stopping.
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    let tool = wait_status(&mut c, "tool", |st| st["state"] == "ready");
    assert_eq!(tool["version"], "0.2.0", "{tool}");
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["version"], "0.2.0", "{lib}");
    let recs = records(&log);
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "denial" && r["plugin"] == "tool"),
        "{recs:?}"
    );
}

/// Helper-121: an update's relaunch put off for the moment — the revocation list made invalid
/// while `lib` 0.1.0 stops for its update (a hanging call), so the relaunch's trust check
/// cannot be made and is tried again after the backoff — is still said as the update once the
/// list is fixed and `lib` 0.2.0 launched: its `restart` record has `reason` `"update"` and
/// `from_version`. The old daemon had taken the update at the first attempt and forgotten the
/// version it replaced: the record said `update` with no `from_version` (after a refusal of
/// the host, uids or cgroups exhausted, no reason at all).
#[test]
fn an_update_relaunch_put_off_is_still_recorded_as_the_update() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    store(&fx, &["install", &lib1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib2]);
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    std::fs::write(fx.path("trust/revocations.json"), b"{ not a list").unwrap();
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "restarting");
    assert_eq!(
        lib["trust_refusal"]["kind"], "revocation.list_invalid",
        "{lib}"
    );
    fx.install_list(&[]);
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "ready");
    assert_eq!(lib["version"], "0.2.0", "{lib}");
    let recs = records(&log);
    let restarts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "restart" && r["plugin"] == "lib")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(restarts[0]["version"], "0.2.0", "{restarts:?}");
    assert_eq!(restarts[0]["detail"]["reason"], "update", "{restarts:?}");
    assert_eq!(
        restarts[0]["detail"]["from_version"], "0.1.0",
        "{restarts:?}"
    );
}

/// Review-124: `base`, `lib`, `util` and `tool` updated together (`lib` 0.2.0 needs `base`
/// ^0.2, `tool` 0.2.0 needs `lib` ^0.2 and `util` ^0.2), `base` and `util` slow to stop
/// (hanging calls), and `base`'s update withdrawn meanwhile (the registry back to the `base`
/// 0.1.0 loaded): `lib` 0.2.0 no longer fits and is refused at its relaunch, `lib` 0.1.0
/// relaunched instead — while `tool` 0.2.0 still waits for `util`. `lib` 0.1.0 fits every
/// plugin that runs; `tool` 0.2.0, not running, is checked at its own relaunch (refused then:
/// `lib` 0.1.0; `tool` 0.1.0 held for `util` 0.2.0). The merged daemon of helper-121 held
/// `lib` 0.1.0 stopped for the needs of that waiting `tool` 0.2.0 (a `denial` record, a
/// warning, no process) until `tool`'s own relaunch had been decided.
#[test]
fn a_dependency_is_not_held_for_a_dependant_update_that_still_waits() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let base1 = pack_needing(&fx, "base", "0.1.0", &[]);
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let util1 = pack_needing(&fx, "util", "0.1.0", &[]);
    let tool1 = pack_needing(&fx, "tool", "0.1.0", &[("lib", "^0.1"), ("util", "^0.1")]);
    let base2 = pack_needing(&fx, "base", "0.2.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[("base", "^0.2")]);
    let util2 = pack_needing(&fx, "util", "0.2.0", &[]);
    let tool2 = pack_needing(&fx, "tool", "0.2.0", &[("lib", "^0.2"), ("util", "^0.2")]);
    store(&fx, &["install", &base1, &lib1, &util1, &tool1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited_slow_stop(&log)));
    let mut c = s.client();
    let mut busy_base = s.client();
    let mut busy_util = s.client();
    c.ok("plugin_load", json!({"package": "base"}));
    c.ok("plugin_load", json!({"package": "tool"})); // and lib, util
    hang_call(&mut busy_base, &mut c, "base");
    hang_call(&mut busy_util, &mut c, "util");
    store(&fx, &["install", &base2, &lib2, &util2, &tool2]);
    wait_status(&mut c, "base", |st| st["state"] == "stopping");
    put_back_in_registry(&fx, &before, "base");
    wait_log(&s, "no longer installed");
    let lib = wait_status(&mut c, "lib", |st| {
        !st["held"].is_null() || st["state"] == "ready"
    });
    let util = c.ok("plugin_status", json!({"name": "util"}));
    assert_eq!(util["state"], "stopping", "{util}");
    assert!(
        lib["held"].is_null(),
        "lib 0.1.0 held for the tool 0.2.0 still waiting: {lib}"
    );
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    assert_eq!(lib["store_change"]["kind"], "store.dependency", "{lib}");
    // `tool` 0.2.0, once `util` 0.2.0 ran, does not fit `lib` 0.1.0: refused, and `tool` 0.1.0
    // held for `util` 0.2.0.
    let tool = wait_status(&mut c, "tool", |st| !st["held"].is_null());
    assert_eq!(tool["version"], "0.1.0", "{tool}");
    assert_eq!(tool["store_change"]["kind"], "store.dependency", "{tool}");
    // Said as it is (helper-126): `tool` 0.1.0 does not run on, it is held — in its status and
    // in what the agents were told. The old daemon said "tool 0.1.0 runs on" in both.
    let said = tool["store_change"]["message"].as_str().unwrap();
    assert!(
        said.ends_with("tool 0.1.0 is held stopped (plugin_status.held)"),
        "{tool}"
    );
    let told: Vec<&str> = c
        .notes
        .iter()
        .filter(|n| n["method"] == "log" && n["params"]["plugin"] == "tool")
        .filter_map(|n| n["params"]["message"].as_str())
        .filter(|m| m.contains("is not run"))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(!told[0].contains("runs on"), "{told:?}");
    assert!(told[0].contains("is held stopped"), "{told:?}");
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["state"], "ready", "{lib}");
    let recs = records(&log);
    assert!(
        !recs.iter().any(|r| r["event"] == "denial"
            && r["plugin"] == "lib"
            && r["detail"]["request"] == "restart"),
        "{recs:?}"
    );
    // `lib` 0.2.0 refused once, one record (helper-126): refused at its relaunch, then judged
    // again by the next check with the other updates and refused for the same reason — said
    // once, although the check words it naming the updates judged with it. The old daemon
    // compared the whole messages and wrote a second `denial`, logged and told it again.
    let refusals: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["event"] == "denial" && r["plugin"] == "lib" && r["detail"]["request"] == "update"
        })
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let told = c
        .notes
        .iter()
        .filter(|n| {
            n["method"] == "log"
                && n["params"]["plugin"] == "lib"
                && n["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is not run"))
        })
        .count();
    assert_eq!(told, 1, "{:?}", c.notes);
}

/// Review-124: `lib`'s update withdrawn while `lib` 0.1.0 stops for it (a hanging call; the
/// registry back to the `lib` 0.1.0 loaded): `lib` 0.1.0 is relaunched, and its `restart`
/// record says why — `reason` `"update_withdrawn"`, no `from_version`. The old daemon said
/// `reason` `"update"` (the relaunch it had asked for) with no `from_version`, for a relaunch
/// on the very version that ran.
#[test]
fn a_relaunch_after_its_update_was_withdrawn_is_not_recorded_as_the_update() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    store(&fx, &["install", &lib1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib2]);
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    put_back_in_registry(&fx, &before, "lib");
    wait_log(&s, "no longer installed");
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "ready");
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    let recs = records(&log);
    let restarts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "restart" && r["plugin"] == "lib")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(restarts[0]["version"], "0.1.0", "{restarts:?}");
    assert_eq!(
        restarts[0]["detail"]["reason"], "update_withdrawn",
        "{restarts:?}"
    );
    assert!(
        restarts[0]["detail"].get("from_version").is_none(),
        "{restarts:?}"
    );
    assert_eq!(restarts[0]["detail"]["requested"], false, "{restarts:?}");
}

/// Review-124: as `a_quarantined_plugin_whose_update_does_not_fit_stays_quarantined`, but it is
/// the crash-quarantined `lib`'s own update that is withdrawn (the registry back to the `lib`
/// 0.1.0 loaded) while it waits for `app` 0.1.0 to stop: the update dropped, `lib` goes back
/// to its quarantine (crash count kept, `plugin_state` `quarantined`), as when its update does
/// not fit. The old daemon relaunched the crash-quarantined `lib` 0.1.0 as a plain restart,
/// without any `plugin_restart`.
#[test]
fn a_quarantined_plugin_whose_update_is_withdrawn_stays_quarantined() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (_serve, mut c, _busy, log) = quarantined_lib_with_an_update_withdrawn(&fx, "lib");
    // `app` 0.2.0 does not fit `lib` 0.1.0: refused, `app` 0.1.0 relaunched.
    lib_stays_quarantined_beside_app_0_1_0(&mut c);
    // No launch of `lib` after its quarantine.
    let recs = records(&log);
    let quarantined = recs
        .iter()
        .position(|r| r["event"] == "quarantine" && r["plugin"] == "lib")
        .expect("a quarantine record");
    assert!(
        !recs[quarantined..]
            .iter()
            .any(|r| r["event"] == "restart" && r["plugin"] == "lib"),
        "{recs:?}"
    );
}

/// Review-124 (helper-126): as `a_relaunch_after_its_update_was_withdrawn_is_not_recorded_as_the_update`,
/// but the relaunch's launch is refused by the host for the moment — its `restart` record not
/// written because another writer holds the audit log's lock past the daemon's wait
/// (`audit.busy`) — and tried again once the lock is free. The record of the try that is had
/// still says `reason` `"update_withdrawn"`. The old daemon took the reason for the first try
/// and lost it with it: the record said no reason, a plain restart's.
#[test]
fn a_relaunch_the_host_put_off_keeps_its_reason() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    store(&fx, &["install", &lib1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib2]);
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    put_back_in_registry(&fx, &before, "lib");
    wait_log(&s, "no longer installed");
    // `lib` 0.1.0 still stops (the hanging call, up to the 2 s grace): its relaunch comes
    // under the held lock.
    let lock = std::fs::File::open(fx.dir().join("audit.log.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    wait_log(&s, "not restarted, trying again");
    let lib = c.ok("plugin_status", json!({"name": "lib"}));
    assert_eq!(lib["state"], "restarting", "{lib}");
    drop(held);
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "ready");
    assert_eq!(lib["version"], "0.1.0", "{lib}");
    let recs = records(&log);
    let restarts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "restart" && r["plugin"] == "lib")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(
        restarts[0]["detail"]["reason"], "update_withdrawn",
        "{restarts:?}"
    );
}

/// Helper-126 (review-124's "held, then trust-quarantined"): as
/// `a_plugin_whose_dependencies_changed_under_it_is_held_until_they_fit`, `app` 0.1.0 is held
/// for `lib` 0.2.0 — and then its signer's certificate is revoked. The quarantine wins: the
/// trust check quarantines the held plugin (`plugin_state` `quarantined` after its `held`,
/// status `quarantined`, `held` null), and it is not relaunched when what it needs fits again
/// (`lib` 0.1.0 back): a quarantine is lifted only by `plugin_restart`, which is refused while
/// the package is. Pins the order of the two (no `restart` of `app` after the hold).
#[test]
fn a_held_plugin_whose_package_is_revoked_is_quarantined_and_stays_so_when_it_fits() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    fx.add_developer("dev2");
    let cert: Value =
        serde_json::from_slice(&std::fs::read(fx.path("dev2.cert")).unwrap()).unwrap();
    let serial = cert["certificate"]["serial"].as_str().unwrap().to_string();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let util1 = pack_needing(&fx, "util", "0.1.0", &[]);
    let app1 = pack_needing_as(
        &fx,
        "dev2",
        "app",
        "0.1.0",
        &[("lib", "^0.1"), ("util", "^0.1")],
    );
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let util2 = pack_needing(&fx, "util", "0.2.0", &[]);
    let app2 = pack_needing_as(
        &fx,
        "dev2",
        "app",
        "0.2.0",
        &[("lib", "^0.2"), ("util", "^0.2")],
    );
    store(&fx, &["install", &lib1, &util1, &app1]);
    let before = registry(&fx);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "app"})); // and lib, util
    hang_call(&mut busy, &mut c, "util");
    store(&fx, &["install", &lib2, &util2, &app2]);
    wait_status(&mut c, "lib", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    put_back_in_registry(&fx, &before, "app");
    let app = wait_status(&mut c, "app", |st| st["state"] == "held");
    assert_eq!(app["version"], "0.1.0", "{app}");
    fx.install_list(&["--serial", &serial]);
    let app = wait_status(&mut c, "app", |st| st["state"] == "quarantined");
    assert_eq!(app["quarantined"], true, "{app}");
    assert!(app["held"].is_null(), "{app}");
    assert_eq!(app["trust_refusal"]["kind"], "revocation.serial", "{app}");
    let states: Vec<&Value> = c
        .notes
        .iter()
        .filter(|n| n["method"] == "plugin_state" && n["params"]["plugin"] == "app")
        .map(|n| &n["params"]["state"])
        .skip_while(|s| *s != "held")
        .collect();
    assert_eq!(states, ["held", "quarantined"], "{:?}", c.notes);
    // What it needs back: `util` 0.1.0 (its 0.2.0 breaks the quarantined `app` 0.1.0) and
    // `lib` 0.1.0 (installed again). `app` fits, and stays quarantined.
    let util = wait_status(&mut c, "util", |st| st["state"] == "ready");
    assert_eq!(util["version"], "0.1.0", "{util}");
    store(&fx, &["install", "--force", &lib1]);
    wait_status(&mut c, "lib", |st| {
        st["version"] == "0.1.0" && st["state"] == "ready"
    });
    std::thread::sleep(Duration::from_millis(1500));
    let app = c.ok("plugin_status", json!({"name": "app"}));
    assert_eq!(app["state"], "quarantined", "{app}");
    assert!(app["held"].is_null(), "{app}");
    let r = c.call("plugin_restart", json!({"name": "app"}));
    assert_eq!(r["error"]["data"]["kind"], "revocation.serial", "{r}");
    let recs = records(&log);
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "restart" && r["plugin"] == "app"),
        "{recs:?}"
    );
}

/// Review-129: an update admitted and waiting for its relaunch (`lib` 0.1.1, `lib` slow to
/// stop) is no longer installed once another package is installed over it (`lib` 0.2.0): it
/// is dropped, as when the registry goes back to the loaded package, and the package named now
/// is judged in its place — here refused (it breaks `tool` 0.1.0, loaded from its file). `lib`
/// is relaunched on the version that ran (`reason` `"update_withdrawn"`), as its
/// `store_change` says ("lib 0.1.0 runs on"). The old daemon kept the replaced update and
/// relaunched `lib` on 0.1.1, a package the store no longer held, while the status said
/// 0.1.0 ran on.
#[test]
fn an_update_installed_over_while_it_waits_for_its_relaunch_is_not_run() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let lib11 = pack_needing(&fx, "lib", "0.1.1", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let tool = pack_needing(&fx, "tool", "0.1.0", &[("lib", "^0.1")]);
    store(&fx, &["install", &lib1]);
    let log = fx.dir().join("audit.log");
    let s = Serve::start(&fx, CONFIG, Some(&audited(&log)));
    let mut c = s.client();
    let mut busy = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    c.ok("plugin_load", json!({ "package": tool }));
    hang_call(&mut busy, &mut c, "lib");
    store(&fx, &["install", &lib11]);
    wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    // Installed over 0.1.1 while `lib` 0.1.0 stops (the hanging call, up to the 2 s grace).
    store(&fx, &["install", &lib2]);
    let lib = wait_status(&mut c, "lib", |st| !st["store_change"].is_null());
    assert_eq!(lib["store_change"]["version"], "0.2.0", "{lib}");
    assert_eq!(
        lib["store_change"]["kind"], "store.breaks_dependent",
        "{lib}"
    );
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "ready");
    assert_eq!(
        lib["version"], "0.1.0",
        "lib runs a package no longer installed: {lib}"
    );
    let said = lib["store_change"]["message"].as_str().unwrap_or_default();
    assert!(said.ends_with("; lib 0.1.0 runs on"), "{lib}");
    let recs = records(&log);
    let restarts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "restart" && r["plugin"] == "lib")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(restarts[0]["version"], "0.1.0", "{restarts:?}");
    assert_eq!(
        restarts[0]["detail"]["reason"], "update_withdrawn",
        "{restarts:?}"
    );
}

/// Review-129: a refused update's `store_change` says what the loaded version does as of the
/// status (helper-126) — also while the plugin is being unloaded: "is being unloaded", not
/// "runs on" (`lib` 0.2.0 refused for `tool` 0.1.0, then `lib` unloaded by force while a
/// call hangs in it, so that it stops for the 2 s grace).
#[test]
fn a_refused_update_of_a_plugin_being_unloaded_does_not_say_it_runs_on() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let lib1 = pack_needing(&fx, "lib", "0.1.0", &[]);
    let lib2 = pack_needing(&fx, "lib", "0.2.0", &[]);
    let tool = pack_needing(&fx, "tool", "0.1.0", &[("lib", "^0.1")]);
    store(&fx, &["install", &lib1]);
    let s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    let mut busy = s.client();
    let mut unloader = s.client();
    c.ok("plugin_load", json!({"package": "lib"}));
    c.ok("plugin_load", json!({ "package": tool }));
    store(&fx, &["install", &lib2]);
    let lib = wait_status(&mut c, "lib", |st| !st["store_change"].is_null());
    let said = lib["store_change"]["message"].as_str().unwrap_or_default();
    assert!(said.ends_with("; lib 0.1.0 runs on"), "{lib}");
    hang_call(&mut busy, &mut c, "lib");
    unloader.send(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "plugin_unload",
                          "params": {"name": "lib", "force": true}}),
    );
    let lib = wait_status(&mut c, "lib", |st| st["state"] == "stopping");
    let said = lib["store_change"]["message"].as_str().unwrap_or_default();
    assert!(said.ends_with("; lib 0.1.0 is being unloaded"), "{lib}");
}

/// Review-138: an agent's `plugin_load` reads the trust configuration again and, finding it
/// changed (here a revocation of `lib`'s certificate, with no periodic check to find it first),
/// quarantines the loaded plugins it now refuses. That quarantine is the trust change's, not the
/// agent's request: audit-135 named the loading agent (`detail.agent_uid`) on every record
/// written while its load was handled, `lib`'s quarantine included — an auditor read that agent
/// as having acted on `lib`. Only the load's own records name it.
#[test]
fn a_quarantine_a_load_finds_is_not_recorded_as_the_loading_agents() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let old_serial = dev2_certified_twice(&fx);
    let lib = pack_needing_as(&fx, "dev2", "lib", "0.1.0", &[]);
    let tool = pack_needing(&fx, "tool", "0.1.0", &[]);
    let log = fx.dir().join("audit.log");
    let config = CONFIG.replace(
        "trust_check_interval_ms = 200",
        "trust_check_interval_ms = 0",
    );
    let s = Serve::start(&fx, &config, Some(&audited(&log)));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": lib}));
    fx.install_list(&["--serial", &old_serial]);
    c.ok("plugin_load", json!({"package": tool}));
    wait_status(&mut c, "lib", |st| st["state"] == "quarantined");
    let recs = records(&log);
    let q = recs
        .iter()
        .find(|r| r["event"] == "quarantine" && r["plugin"] == "lib")
        .unwrap_or_else(|| panic!("no quarantine of lib: {recs:?}"));
    assert_eq!(q["detail"]["request"], "trust_change", "{q}");
    assert!(q["detail"].get("agent_uid").is_none(), "{q}");
    let launch = recs
        .iter()
        .find(|r| r["event"] == "launch" && r["plugin"] == "tool")
        .unwrap_or_else(|| panic!("no launch of tool: {recs:?}"));
    assert_eq!(launch["detail"]["agent_uid"], 0, "{launch}");
}

/// review-147: a hook failing open that an update's version no longer declares ends its run at
/// the update's relaunch — an `unloaded` `bypass` record counting the calls let through, as
/// when the plugin goes. It stayed marked failing open (whatever the new version's policy
/// said of a hook it does not have) until the plugin's unload or the daemon's stop, which
/// counted it then as still failing open.
#[test]
fn an_update_dropping_a_hook_that_failed_open_counts_its_bypasses_at_the_relaunch() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let v1 = pack_version_with(&fx, "w", "0.1.0", None, &["on:x", "on:y"]);
    let v2 = pack_version_with(&fx, "w", "0.2.0", None, &["on:x"]);
    store(&fx, &["install", &v1]);
    let log = fx.dir().join("audit.log");
    let policy = format!("{}[hooks.\"on:y\"]\nfailure = \"open\"\n", audited(&log));
    let mut s = Serve::start(&fx, CONFIG, Some(&policy));
    let mut c = s.client();
    assert_eq!(
        c.ok("plugin_load", json!({"package": "w"}))["version"],
        "0.1.0"
    );
    let r = c.ok("hook_invoke", invoke("on:y", json!({"act": "crash"}), None));
    assert!(r["results"][0].get("bypassed").is_some(), "{r}");
    wait_status(&mut c, "w", |st| {
        st["restarts"] == 1 && st["state"] == "ready"
    });
    let bypasses = || -> Vec<Value> {
        records(&log)
            .into_iter()
            .filter(|r| r["event"] == "bypass")
            .collect()
    };
    assert_eq!(bypasses().len(), 1, "{:#?}", bypasses());
    store(&fx, &["install", &v2]);
    wait_status(&mut c, "w", |st| {
        st["version"] == "0.2.0" && st["state"] == "ready"
    });
    let b = bypasses();
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[0]["outcome"], "failing_open", "{:#}", b[0]);
    assert_eq!(b[1]["outcome"], "unloaded", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["hook"], "on:y", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["bypassed_calls"], 1, "{:#}", b[1]);
    s.stop_and_drain(&mut c);
    assert_eq!(
        bypasses().len(),
        2,
        "nothing left for the stop: {:#?}",
        bypasses()
    );
}
