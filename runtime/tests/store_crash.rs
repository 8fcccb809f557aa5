//! Crash consistency of the store: SIGKILL `stockade install` (and `remove`) at well over 100
//! points across the install path, then check the store after each kill:
//! - the set of installed plugins is exactly the old one or exactly the new one (never a mix:
//!   the three packages are committed by one registry rename);
//! - after the next start, no staging directory is left and every object directory is one the
//!   registry names (no half-installed plugin lying around);
//! - every installed plugin passes `stockade verify` (package re-verified, tree == signed map);
//! - the interrupted install, run again, completes.
//!
//! Two kinds of kill, both real SIGKILLs: deterministic ones at each crash point between two
//! filesystem steps (`STOCKADE_TEST_CRASH_AT=N`, honoured by debug builds only: the process kills
//! itself at the N-th point), and timed ones (the test sends SIGKILL after a delay spread over the
//! measured duration of an install, which also lands inside verification and extraction, where
//! there are no crash points).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn versions(fx: &Fixture) -> BTreeMap<String, String> {
    fx.installed()
        .into_iter()
        .map(|(n, p)| (n, p["version"].as_str().unwrap().to_string()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn restore(fx: &Fixture, pristine: &str) {
    let _ = std::fs::remove_dir_all(fx.path("state"));
    let st = Command::new("cp")
        .args(["-a", pristine, "state"])
        .current_dir(fx.dir())
        .status()
        .unwrap();
    assert!(st.success());
}

fn command(fx: &Fixture, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockade"));
    c.args(args)
        .current_dir(fx.dir())
        .env_remove("STOCKADE_TRUST_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .env_remove("STOCKADE_TEST_CRASH_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The store after a kill: old or new, clean after the next start, verifiable.
fn check(fx: &Fixture, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>, at: &str) {
    let v = versions(fx); // `list` is a start: it recovers
    assert!(
        v == *old || v == *new,
        "{at}: store holds {v:?}, neither old {old:?} nor new {new:?}"
    );
    let staging: Vec<_> = std::fs::read_dir(fx.path("state/store/staging"))
        .unwrap()
        .collect();
    assert!(
        staging.is_empty(),
        "{at}: staging left after the next start"
    );
    let reg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("state/store/registry.json")).unwrap())
            .unwrap();
    let mut named: Vec<String> = reg["plugins"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["dir"].as_str().unwrap().to_string())
        .collect();
    named.sort();
    let mut present: Vec<String> = std::fs::read_dir(fx.path("state/store/plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    assert_eq!(named, present, "{at}: object directories vs registry");
    let mut args = vec!["--json", "verify"];
    args.extend_from_slice(&STORE_FLAGS);
    let r = stockade(fx.dir(), &args);
    assert_eq!(
        r.code, 0,
        "{at}: installed plugins do not verify: {}",
        r.stdout
    );
}

#[test]
fn sigkill_anywhere_leaves_old_or_new_state() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("policy-root")).unwrap();
    let lib1 = fx.pack_plugin("lib", "1.0.0", &[]);
    let app1 = fx.pack_plugin("app", "1.0.0", &[("lib", "^1")]);
    let lib2 = fx.pack_plugin("lib", "1.1.0", &[]);
    let app2 = fx.pack_plugin("app", "1.1.0", &[("lib", "^1.1")]);
    let tool = fx.pack_plugin("tool", "1.0.0", &[("app", "^1.1")]);
    let mut args = vec!["install", lib1.as_str(), app1.as_str()];
    args.extend_from_slice(&STORE_FLAGS);
    ok(fx.dir(), &args);
    Command::new("cp")
        .args(["-a", "state", "pristine"])
        .current_dir(fx.dir())
        .status()
        .unwrap();
    let old = map(&[("lib", "1.0.0"), ("app", "1.0.0")]);
    let new = map(&[("lib", "1.1.0"), ("app", "1.1.0"), ("tool", "1.0.0")]);
    let mut install = vec!["install", tool.as_str(), app2.as_str(), lib2.as_str()];
    install.extend_from_slice(&STORE_FLAGS);

    // Uncrashed: how long an install takes here.
    let mut durations = Vec::new();
    for _ in 0..3 {
        restore(&fx, "pristine");
        let t = Instant::now();
        assert!(command(&fx, &install).status().unwrap().success());
        durations.push(t.elapsed());
        assert_eq!(versions(&fx), new);
    }
    let full = *durations.iter().min().unwrap();

    let mut kills = 0;
    // Deterministic: every crash point until one run gets through without reaching N.
    let mut n = 1;
    loop {
        restore(&fx, "pristine");
        let st = command(&fx, &install)
            .env("STOCKADE_TEST_CRASH_AT", n.to_string())
            .status()
            .unwrap();
        if st.signal() != Some(libc::SIGKILL) {
            assert!(st.success(), "crash point {n}: {st:?}");
            break;
        }
        kills += 1;
        check(&fx, &old, &new, &format!("crash point {n}"));
        assert!(command(&fx, &install).status().unwrap().success());
        assert_eq!(versions(&fx), new, "crash point {n}: rerun");
        n += 1;
    }
    assert!(n > 15, "only {n} crash points on the install path");
    // Removal: the registry commit, then the directory.
    restore(&fx, "pristine");
    let mut rm = vec!["remove", "app"];
    rm.extend_from_slice(&STORE_FLAGS[2..]);
    let st = command(&fx, &rm)
        .env("STOCKADE_TEST_CRASH_AT", "1")
        .status()
        .unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    kills += 1;
    check(&fx, &old, &map(&[("lib", "1.0.0")]), "remove");

    // Timed: spread over the install's duration until 120 kills in all have landed.
    let mut i: u32 = 0;
    while kills < 120 {
        assert!(i < 400, "too few timed kills landed ({kills})");
        restore(&fx, "pristine");
        let delay = full.mul_f64(f64::from(i % 40) / 40.0);
        let mut child = command(&fx, &install).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let st = child.wait().unwrap();
        i += 1;
        if st.signal() == Some(libc::SIGKILL) {
            kills += 1;
        }
        check(&fx, &old, &new, &format!("timed kill after {delay:?}"));
    }
    eprintln!(
        "{kills} SIGKILLs ({} at crash points), store consistent after each",
        n - 1
    );
    // The final store is still usable.
    restore(&fx, "pristine");
    assert!(command(&fx, &install).status().unwrap().success());
    assert_eq!(versions(&fx), new);
    assert!(Path::new(&fx.path("state/store/registry.json")).exists());
}
