//! `stockade serve` and a trust configuration that changes while it runs: a revocation list
//! installed in the trust directory applies to the next `plugin_load` without restarting the
//! daemon. Real sandboxes (root).

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;

/// Small backoff, no pings: a crash restarts at once and nothing else happens meanwhile.
const CONFIG: &str = "[restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 100\n\
                      [quarantine]\nmax_crashes = 100\nwindow_ms = 600000\n\
                      [health]\nping_interval_ms = 0\n";

/// `stockade ca revoke --ca root -o trust/revocations.json EXTRA…`: the root's next list
/// (versions count up from 1), installed in the trust directory.
fn install_list(fx: &Fixture, extra: &[&str]) {
    let mut args = vec![
        "ca",
        "revoke",
        "--ca",
        "root",
        "-o",
        "trust/revocations.json",
    ];
    args.extend_from_slice(extra);
    let r = fx.run(&args);
    assert_eq!(r.code, 0, "ca revoke: {}", r.stderr);
}

/// Worker `hello` signed by the fixture's developer (`dev`), and worker `other` signed by a
/// second developer (`dev2`), whom no list revokes; both registered for `on:x`.
fn two_workers(fx: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    let hello = pack_worker(fx, "hello", &["on:x"]);
    pack_worker(fx, "other", &["on:x"]);
    fx.add_developer("dev2");
    let r = fx.run(&[
        "pack",
        "src-other",
        "--key",
        "dev2.key",
        "--devcert",
        "dev2.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "other.stockade",
        "--force",
    ]);
    assert_eq!(r.code, 0, "pack: {}", r.stderr);
    (hello, fx.dir().join("other.stockade"))
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
    let (hello, other) = two_workers(&fx);
    install_list(&fx, &[]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    assert_eq!(
        c.ok("plugin_load", json!({"package": hello}))["state"],
        "ready"
    );
    c.ok("plugin_unload", json!({"name": "hello"}));

    install_list(&fx, &["--key", "dev.pub"]);
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
    let (hello, other) = two_workers(&fx);
    install_list(&fx, &[]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let mut c = s.client();
    assert_eq!(
        c.ok("plugin_load", json!({"package": hello}))["state"],
        "ready"
    );
    install_list(&fx, &["--key", "dev.pub"]);
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
