//! The plugin store through the real CLI: install / list / verify ID / remove, tamper detection,
//! bad input changing nothing, dependency order / cycle / unsatisfiable, downgrade and conflict,
//! frozen license, the store lock, and the audit records.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn pack(fx: &Fixture, name: &str, version: &str, deps: &[(&str, &str)]) -> String {
    fx.pack_plugin(name, version, deps)
}

fn verify_installed(fx: &Fixture, id: Option<&str>) -> Run {
    let mut args = vec!["--json", "verify"];
    args.extend(id);
    args.extend_from_slice(&STORE_FLAGS);
    fx.run(&args)
}

fn remove(fx: &Fixture, id: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "--json",
        "remove",
        id,
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ];
    args.extend_from_slice(extra);
    fx.run(&args)
}

/// Every path under the store with a digest of its content: "nothing changed" is equality.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
                out.insert(rel, "dir".into());
            } else {
                let b = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, hex::encode(sha2::Sha256::digest(&b)));
            }
        }
    }
    out
}

/// Flip one byte of the payload's data (the payload is the last container entry; its data follows
/// its 512-byte header): verification step 7 must refuse it.
fn flip_payload(bytes: &mut [u8]) {
    let needle = b"payload.tar.gz";
    let hdr = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[hdr + 512 + 20] ^= 0xff;
}

fn setup() -> Fixture {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("policy-root")).unwrap();
    fx
}

#[test]
fn install_list_verify_remove() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    let r = fx.store_install(&[&pkg], &[]);
    expect(&r, 0, "");
    let j = r.json();
    assert_eq!(j["installed"][0]["action"], "installed");
    assert_eq!(j["installed"][0]["signature_status"], "verified");
    let l = fx.installed();
    assert_eq!(l["hello"]["version"], "0.1.0");
    assert_eq!(l["hello"]["signature_status"], "verified");
    assert_eq!(l["hello"]["signer_subject"], "Test Developer");
    assert_eq!(l["hello"]["signer_chain"].as_array().unwrap().len(), 3);
    // The stored package is the one installed, and `run`-able as a file.
    let stored = l["hello"]["package"].as_str().unwrap();
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(fx.path(&pkg)).unwrap()
    );
    let v = verify_installed(&fx, Some("hello"));
    expect(&v, 0, "");
    assert_eq!(v.json()["plugins"][0]["ok"], true);
    expect(&verify_installed(&fx, None), 0, "");
    // Same package again: a no-op.
    let r = fx.store_install(&[&pkg], &[]);
    expect(&r, 0, "");
    assert_eq!(r.json()["installed"][0]["action"], "already installed");
    // Text list.
    let t = ok(fx.dir(), &["list", "--state-dir", "state"]);
    assert!(t.stdout.contains("hello") && t.stdout.contains("verified"));
    // Remove.
    expect(&remove(&fx, "hello", &[]), 0, "");
    assert!(fx.installed().is_empty());
    assert_eq!(
        std::fs::read_dir(fx.path("state/store/plugins"))
            .unwrap()
            .count(),
        0
    );
    expect(&remove(&fx, "hello", &[]), 104, "store.not_installed");
    // A name that is no file and not installed is the store's to answer (104), by `verify`
    // and `run` alike: it said "cannot read hello" (66), as if a file were meant.
    let r = verify_installed(&fx, Some("hello"));
    expect(&r, 104, "store.not_installed");
    assert!(
        r.stdout.contains("neither a file nor an installed plugin"),
        "{}",
        r.stdout
    );
    let mut run = vec!["--json", "run", "hello"];
    run.extend_from_slice(&STORE_FLAGS);
    expect(&fx.run(&run), 104, "store.not_installed");
    // Looked up read-only: no state directory is made for a name that is not there, and
    // --extract-to does not turn it into a usage error.
    let r = fx.run(&[
        "--json",
        "verify",
        "hello",
        "--state-dir",
        "nowhere",
        "--extract-to",
        "out",
    ]);
    expect(&r, 104, "store.not_installed");
    assert!(!fx.path("nowhere").exists() && !fx.path("out").exists());
}

#[test]
fn verify_reports_a_changed_tree_and_a_changed_package() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    let l = fx.installed();
    let obj = Path::new(l["hello"]["package"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let entry = obj.join("tree/entrypoint");
    let orig = std::fs::read(&entry).unwrap();
    let mut changed = orig.clone();
    changed[5] ^= 1;
    std::fs::write(&entry, &changed).unwrap();
    std::fs::write(obj.join("tree/dropped-in"), b"x").unwrap();
    let r = verify_installed(&fx, Some("hello"));
    expect(&r, 105, "");
    let p = &r.json()["plugins"][0];
    assert_eq!(p["ok"], false);
    let probs = p["problems"].as_array().unwrap();
    assert!(probs
        .iter()
        .any(|x| x["path"] == "entrypoint" && x["problem"] == "changed"));
    assert!(probs
        .iter()
        .any(|x| x["path"] == "dropped-in" && x["problem"] == "extra"));
    // Text mode names the file too.
    let t = fx.run(&[
        "verify",
        "hello",
        "--trust",
        "trust",
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ]);
    assert_eq!(t.code, 105);
    assert!(t.stdout.contains("changed: entrypoint"), "{}", t.stdout);
    // Restore the tree; break the stored package instead: the whole verification fails.
    std::fs::write(&entry, &orig).unwrap();
    std::fs::remove_file(obj.join("tree/dropped-in")).unwrap();
    expect(&verify_installed(&fx, Some("hello")), 0, "");
    let mut bytes = std::fs::read(obj.join("package.stockade")).unwrap();
    flip_payload(&mut bytes);
    std::fs::write(obj.join("package.stockade"), &bytes).unwrap();
    let r = verify_installed(&fx, None);
    assert_eq!(r.code, 86, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.json()["plugins"][0]["error"]["kind"],
        "file_map.payload_digest"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let fx = setup();
    let good = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&good], &[]), 0, "");
    let before = snapshot(&fx.path("state/store"));
    // A payload byte flipped: step 7 refuses.
    let mut bytes = std::fs::read(fx.path(&good)).unwrap();
    flip_payload(&mut bytes);
    std::fs::write(fx.path("bad.stockade"), &bytes).unwrap();
    let other = pack(&fx, "other", "1.0.0", &[]);
    let r = fx.store_install(&[&other, "bad.stockade"], &[]);
    expect(&r, 86, "");
    // Not a package at all; missing file; unsigned by a trusted root.
    std::fs::write(fx.path("junk.stockade"), b"not a package").unwrap();
    expect(&fx.store_install(&["junk.stockade"], &[]), 65, "container");
    expect(&fx.store_install(&["missing.stockade"], &[]), 66, "");
    std::fs::remove_file(fx.path("trust/root.pub")).unwrap();
    ok(fx.dir(), &["keygen", "-o", "stranger"]);
    std::fs::copy(fx.path("stranger.pub"), fx.path("trust/root.pub")).unwrap();
    expect(&fx.store_install(&[&other], &[]), 82, "");
    assert_eq!(snapshot(&fx.path("state/store")), before);
}

#[test]
fn dependencies_order_cycle_unsatisfied_and_removal() {
    let fx = setup();
    let lib1 = pack(&fx, "lib", "1.0.0", &[]);
    let lib2 = pack(&fx, "lib", "2.0.0", &[]);
    let app = pack(&fx, "app", "1.0.0", &[("lib", "^1")]);
    let tool = pack(&fx, "tool", "1.0.0", &[("app", "^1")]);
    // Alone, app's dependency is missing: the chain is named.
    let r = fx.store_install(&[&tool, &app], &[]);
    expect(&r, 101, "store.dependency");
    let msg = r.json()["error"].to_string();
    assert!(msg.contains("tool 1.0.0 -> app 1.0.0 -> lib ^1"), "{msg}");
    assert!(fx.installed().is_empty());
    // Together, in any order on the command line: installed dependencies first.
    let r = fx.store_install(&[&tool, &app, &lib1], &[]);
    expect(&r, 0, "");
    let j = r.json();
    let names: Vec<String> = j["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["lib", "app", "tool"]);
    assert_eq!(fx.installed()["lib"]["required_by"][0], "app 1.0.0");
    // lib 2 would break app (^1).
    let r = fx.store_install(&[&lib2], &[]);
    expect(&r, 103, "store.breaks_dependent");
    assert!(r.json()["error"].to_string().contains("app 1.0.0"));
    // Removing a needed plugin is refused unless forced.
    let r = remove(&fx, "lib", &[]);
    expect(&r, 103, "store.in_use");
    assert!(r.json()["error"].to_string().contains("app 1.0.0"));
    let r = remove(&fx, "lib", &["--force"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["broken_dependents"].as_array().unwrap().len(), 1);
    // Unsatisfiable: the only lib on offer is 2.x.
    expect(&remove(&fx, "tool", &[]), 0, "");
    expect(&remove(&fx, "app", &[]), 0, "");
    let r = fx.store_install(&[&app, &lib2], &[]);
    expect(&r, 101, "store.dependency");
    assert!(r.json()["error"]
        .to_string()
        .contains("lib 2.0.0 does not match"));
    // A cycle.
    let a = pack(&fx, "a", "1.0.0", &[("b", "*")]);
    let b = pack(&fx, "b", "1.0.0", &[("c", "*")]);
    let c = pack(&fx, "c", "1.0.0", &[("a", "*")]);
    let r = fx.store_install(&[&a, &b, &c], &[]);
    expect(&r, 102, "store.dependency_cycle");
    assert!(r.json()["error"]
        .to_string()
        .contains("a 1.0.0 -> b 1.0.0 -> c 1.0.0 -> a 1.0.0"));
    assert!(fx.installed().is_empty());
    assert_eq!(
        std::fs::read_dir(fx.path("state/store/staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn upgrade_downgrade_and_conflict() {
    let fx = setup();
    let v1 = pack(&fx, "lib", "1.0.0", &[]);
    let v11 = pack(&fx, "lib", "1.1.0", &[]);
    expect(&fx.store_install(&[&v1], &[]), 0, "");
    let r = fx.store_install(&[&v11], &[]);
    expect(&r, 0, "");
    assert_eq!(r.json()["installed"][0]["action"], "upgraded from 1.0.0");
    // Only the new version's directory remains.
    let dirs: Vec<String> = std::fs::read_dir(fx.path("state/store/plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].starts_with("lib-1.1.0-"));
    expect(&fx.store_install(&[&v1], &[]), 107, "store.conflict");
    assert_eq!(fx.installed()["lib"]["version"], "1.1.0");
    let r = fx.store_install(&[&v1], &["--force"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["installed"][0]["action"], "downgraded from 1.1.0");
    // Same version, other content (repacked with another description).
    let rebuilt = fx.pack_custom(
        "lib",
        "1.0.0",
        &[],
        serde_json::json!({"description": "rebuilt"}),
        "dev",
        "lib-rebuilt.stockade",
    );
    expect(&fx.store_install(&[&rebuilt], &[]), 107, "store.conflict");
}

#[test]
fn frozen_license_blocks_installs_only() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    let before = snapshot(&fx.path("state/store"));
    fx.install_frozen_license("ACME-1");
    let other = pack(&fx, "other", "1.0.0", &[]);
    let r = fx.store_install(&[&other], &[]);
    expect(&r, 100, "store.license_frozen");
    assert!(r.json()["error"].to_string().contains("ACME-1"));
    assert_eq!(snapshot(&fx.path("state/store")), before);
    // What is installed stays installed and verifiable (scope `any`).
    expect(&verify_installed(&fx, Some("hello")), 0, "");
    assert!(fx.installed().contains_key("hello"));
    // `run` admits nothing new either: a package that is not installed is refused before any
    // of it runs (and the refusal is audited) ...
    let run = |target: &str| {
        let mut args = vec!["--json", "run", target];
        args.extend_from_slice(&STORE_FLAGS);
        fx.run(&args)
    };
    let r = run(&other);
    expect(&r, 100, "license_frozen");
    assert!(r.stdout.contains("ACME-1"), "{}", r.stdout);
    assert!(!r.stderr.contains("plugin_state"), "{}", r.stderr);
    // ... nor a copy of an installed plugin's name with other bytes ...
    let hello2 = fx.pack_custom(
        "hello",
        "0.1.0",
        &[],
        serde_json::json!({"description": "not the installed one"}),
        "dev",
        "hello-other.stockade",
    );
    expect(&run(&hello2), 100, "license_frozen");
    // ... while the installed plugin itself still runs (to ready and back: stdin is at EOF).
    let r = run("hello");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("\"state\":\"ready\""), "{}", r.stdout);
}

#[test]
fn the_store_lock_serialises_installs() {
    let fx = setup();
    let a = pack(&fx, "a", "1.0.0", &[]);
    let b = pack(&fx, "b", "1.0.0", &[]);
    expect(&fx.store_install(&[&a], &[]), 0, "");
    // Hold the lock as another installer would.
    let f = std::fs::File::open(fx.path("state/store/lock")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    expect(
        &fx.store_install(&[&b], &["--no-wait"]),
        108,
        "store.locked",
    );
    // Without --no-wait it queues, and goes through once the lock is released.
    let mut args: Vec<String> = ["--json", "install", &b]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(STORE_FLAGS.iter().map(|s| s.to_string()));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!fx.installed().contains_key("b"), "installed while locked");
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(fx.installed().contains_key("b"));
    // Two installers racing: both succeed, the registry has both.
    let c = pack(&fx, "c", "1.0.0", &[]);
    let d = pack(&fx, "d", "1.0.0", &[]);
    let spawn = |p: &str| {
        let mut args: Vec<String> = vec!["install".into(), p.into()];
        args.extend(STORE_FLAGS.iter().map(|s| s.to_string()));
        std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(&args)
            .current_dir(fx.dir())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut x, mut y) = (spawn(&c), spawn(&d));
    assert!(x.wait().unwrap().success() && y.wait().unwrap().success());
    let l = fx.installed();
    assert!(["a", "b", "c", "d"].iter().all(|n| l.contains_key(*n)));
}

/// The fixture's operator policy with an `[audit]` file sink: the log's path.
fn audit_to_file(fx: &Fixture) -> std::path::PathBuf {
    let log = fx.path("audit.log");
    std::fs::create_dir_all(fx.path("policy-root/etc/stockade")).unwrap();
    std::fs::write(
        fx.path("policy-root/etc/stockade/policy.toml"),
        format!("version = 1\n[audit]\nfile = \"{}\"\n", log.display()),
    )
    .unwrap();
    log
}

#[test]
fn install_and_removal_are_audited() {
    let fx = setup();
    let log = audit_to_file(&fx);
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    expect(&remove(&fx, "hello", &[]), 0, "");
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_str().unwrap().to_string(),
                v["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Each change's `begun` record before its commit, its outcome after.
    let want = [
        ("install", "begun"),
        ("install", "ok"),
        ("removal", "begun"),
        ("removal", "ok"),
    ];
    assert_eq!(events, want.map(|(e, o)| (e.to_string(), o.to_string())));
    assert!(text.contains("\"package_sha256\""));
    ok(fx.dir(), &["audit", "verify", log.to_str().unwrap()]);
}

#[test]
fn run_takes_an_installed_plugins_name() {
    use std::io::Write;
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    std::fs::remove_file(fx.path(&pkg)).unwrap();
    let mut args = vec!["run", "hello"];
    args.extend_from_slice(&STORE_FLAGS);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"jsonrpc":"2.0","id":1,"method":"hook_invoke","params":{"hook":"on:flow.new","payload":{}}}
"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(r#""id":1"#) && l.contains(r#""allow":true"#)),
        "{stdout}"
    );
}

/// A registry that cannot be read is said as such (106) whenever a name needs it — by `run`,
/// `verify` and `list` alike — and never taken for an empty store, which made `run NAME` report
/// "cannot read NAME" (66) about a file nobody meant. A package file is still used as a file
/// (the registry is not read for it), and nothing is changed.
#[test]
fn a_corrupt_registry_is_reported_by_name_lookups() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    let reg = fx.path("state/store/registry.json");
    let good: Value = serde_json::from_slice(&std::fs::read(&reg).unwrap()).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let corrupt: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{x".to_vec()),
        (
            "unknown schema",
            with(&|v| v["schema"] = "other-store/1".into()),
        ),
        (
            "unknown field",
            with(&|v| v["plugins"]["hello"]["extra"] = true.into()),
        ),
        (
            "dir with ..",
            with(&|v| v["plugins"]["hello"]["dir"] = "../../x".into()),
        ),
        (
            "absolute dir",
            with(&|v| v["plugins"]["hello"]["dir"] = "/etc".into()),
        ),
    ];
    // `hello` is also a directory in the working directory: not a package, so still a name.
    fx.hello_dir();
    for (what, bytes) in corrupt {
        std::fs::write(&reg, &bytes).unwrap();
        let before = snapshot(&fx.path("state"));
        let mut run = vec!["--json", "run", "hello"];
        run.extend_from_slice(&STORE_FLAGS);
        let r = fx.run(&run);
        assert_eq!(r.code, 106, "run, {what}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(r.kind(), "store.corrupt", "run, {what}");
        assert!(
            !r.stdout.contains("cannot read hello"),
            "{what}: {}",
            r.stdout
        );
        let r = verify_installed(&fx, Some("hello"));
        assert_eq!(r.code, 106, "verify, {what}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(r.kind(), "store.corrupt", "verify, {what}");
        let r = fx.run(&["--json", "list", "--state-dir", "state"]);
        assert_eq!(r.code, 106, "list, {what}: {}", r.stdout);
        // Named by its path, not by the descriptor the store is reached through.
        assert!(!r.stdout.contains("/proc/self/fd"), "{what}: {}", r.stdout);
        // A package file is a file: the registry is not needed, and not read.
        let mut args = vec!["--json", "verify", pkg.as_str()];
        args.extend_from_slice(&STORE_FLAGS);
        expect(&fx.run(&args), 0, "");
        assert_eq!(snapshot(&fx.path("state")), before, "{what}");
    }
    // Neither a file nor a valid name: a missing file, as before (the registry is not asked).
    std::fs::write(&reg, b"{x").unwrap();
    expect(&verify_installed(&fx, Some("./absent.stockade")), 66, "");
}

/// A registry a newer Stockade wrote (`stockade-store/2`, with a field this build does not know,
/// as a downgraded node has) is not "corrupt": every command that reads it says it is of a newer
/// Stockade (78 `store.newer_format`, the hint to upgrade and not to restore a backup), and
/// reads, recovers and changes nothing. It was 106 `store.corrupt`, "restore registry.json from a
/// backup", which forgets what the newer version installed.
#[test]
fn a_registry_of_a_newer_stockade_is_refused_as_such_and_left_alone() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    let other = pack(&fx, "other", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    let reg = fx.path("state/store/registry.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&reg).unwrap()).unwrap();
    v["schema"] = "stockade-store/2".into();
    v["plugins"]["hello"]["sandbox_profile"] = "strict".into();
    std::fs::write(&reg, serde_json::to_vec(&v).unwrap()).unwrap();
    // A leftover a recovery would remove, to show none runs.
    std::fs::create_dir_all(fx.path("state/store/plugins/orphan-0.1.0-000000000000")).unwrap();
    // And no `staging/` (a newer layout's store may have none): the refusal makes none either.
    std::fs::remove_dir(fx.path("state/store/staging")).unwrap();
    fx.hello_dir();
    let before = snapshot(&fx.path("state"));
    let mut run = vec!["--json", "run", "hello"];
    run.extend_from_slice(&STORE_FLAGS);
    let cases: Vec<(&str, Run)> = vec![
        ("run", fx.run(&run)),
        ("verify", verify_installed(&fx, Some("hello"))),
        ("verify all", verify_installed(&fx, None)),
        ("list", fx.run(&["--json", "list", "--state-dir", "state"])),
        ("install", fx.store_install(&[&other], &[])),
        ("remove", remove(&fx, "hello", &[])),
    ];
    for (what, r) in cases {
        assert_eq!(r.code, 78, "{what}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(r.kind(), "store.newer_format", "{what}");
        assert!(
            r.stdout.contains("stockade-store/2") && r.stdout.contains("upgrade Stockade"),
            "{what}: {}",
            r.stdout
        );
        assert_eq!(snapshot(&fx.path("state")), before, "{what}");
    }
}

/// The store is worked on through its directories' descriptors, but what the commands say names
/// `<state>/store/…`, not the `/proc/self/fd/N/…` the process reached it through (which tells
/// the operator nothing, least of all once the command has exited): a registry that cannot be
/// read, and a staging directory nothing can be made in.
#[test]
fn store_errors_name_the_store_not_its_descriptor() {
    let fx = setup();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    let names = |r: &Run, path: &str| {
        assert!(
            r.code != 0 && r.stdout.contains(path) && !r.stdout.contains("/proc/self/fd"),
            "expected {path}: {}\n{}",
            r.stdout,
            r.stderr
        );
    };
    // The registry is a directory.
    let reg = fx.path("state/store/registry.json");
    std::fs::rename(&reg, fx.path("registry.saved")).unwrap();
    std::fs::create_dir(&reg).unwrap();
    let r = fx.store_install(&[&pkg], &[]);
    // The store's own file damaged: 106, not 66 "no input" (that is for the operator's file).
    expect(&r, 106, "store.corrupt");
    names(&r, "/state/store/registry.json");
    std::fs::remove_dir(&reg).unwrap();
    // Larger than any registry (a sparse file): 106 too, not 80 (a package's size cap).
    std::fs::File::create(&reg)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let r = fx.store_install(&[&pkg], &[]);
    expect(&r, 106, "store.corrupt");
    names(&r, "/state/store/registry.json");
    std::fs::remove_file(&reg).unwrap();
    std::fs::rename(fx.path("registry.saved"), &reg).unwrap();
    // Staging cannot make the install's directory.
    let Some(_guard) = Unwritable::new(fx.path("state/store/staging")) else {
        return;
    };
    let r = fx.store_install(&[&pkg], &[]);
    expect(&r, 74, "store.io");
    names(&r, "/state/store/staging");
}

/// `registry.json` is read as the state directory's other files are: a registry another user
/// than the store's owner or root owns, one others may write (0666, 0620), a symlink to a good
/// registry or a second link to it is refused by every command that reads it (78
/// `store.unsafe`, naming the file and saying why) and left as it is — nothing installed,
/// removed or recovered. It used to be read, and an install rewrote it with the new plugin.
#[test]
fn a_registry_others_could_have_written_is_refused_and_left_alone() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = setup();
    let hello = pack(&fx, "hello", "0.1.0", &[]);
    let other = pack(&fx, "other", "0.1.0", &[]);
    expect(&fx.store_install(&[&hello], &[]), 0, "");
    let reg = fx.path("state/store/registry.json");
    let saved = fx.path("registry.saved");
    std::fs::copy(&reg, &saved).unwrap();
    let restore = || {
        let _ = std::fs::remove_file(&reg);
        std::fs::copy(&saved, &reg).unwrap();
        std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let me = nix::unistd::geteuid().as_raw();
    type Damage<'a> = (&'a str, &'a str, Box<dyn Fn() + 'a>);
    let kinds: Vec<Damage> = vec![
        (
            "mode 0666",
            "writable by group or others",
            Box::new(|| {
                std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o666)).unwrap()
            }),
        ),
        (
            "mode 0620",
            "writable by group or others",
            Box::new(|| {
                std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o620)).unwrap()
            }),
        ),
        (
            "a symlink to a good registry",
            "is a symlink",
            Box::new(|| {
                std::fs::remove_file(&reg).unwrap();
                std::os::unix::fs::symlink(&saved, &reg).unwrap();
            }),
        ),
        (
            "a second link",
            "another link",
            Box::new(|| {
                std::fs::hard_link(&reg, fx.path("state/registry.link")).unwrap();
            }),
        ),
    ];
    let mut kinds = kinds;
    // Another uid's file: only root can hand one over (and a user's store is read by root too,
    // so the test needs root to mean "neither root, this user nor the store's owner").
    if me == 0 {
        kinds.push((
            "another uid's",
            "belongs to uid 54321",
            Box::new(|| std::os::unix::fs::chown(&reg, Some(54321), None).unwrap()),
        ));
    } else {
        eprintln!("skipping the other-uid case: not root");
    }
    for (what, why, make) in &kinds {
        make();
        let before = snapshot(&fx.path("state"));
        let md = std::fs::symlink_metadata(&reg).unwrap();
        let refused = |r: &Run, cmd: &str| {
            assert_eq!(r.code, 78, "{cmd}, {what}: {}\n{}", r.stdout, r.stderr);
            assert_eq!(r.kind(), "store.unsafe", "{cmd}, {what}: {}", r.stdout);
            assert!(
                r.stdout.contains("state/store/registry.json") && r.stdout.contains(why),
                "{cmd}, {what}: {}",
                r.stdout
            );
        };
        refused(&fx.store_install(&[&other], &[]), "install");
        refused(&remove(&fx, "hello", &[]), "remove");
        refused(&fx.run(&["--json", "list", "--state-dir", "state"]), "list");
        refused(&verify_installed(&fx, Some("hello")), "verify NAME");
        let mut run = vec!["--json", "run", "hello"];
        run.extend_from_slice(&STORE_FLAGS);
        refused(&fx.run(&run), "run NAME");
        assert_eq!(snapshot(&fx.path("state")), before, "{what}");
        let now = std::fs::symlink_metadata(&reg).unwrap();
        assert_eq!(
            (now.ino(), now.uid(), now.mode(), now.nlink()),
            (md.ino(), md.uid(), md.mode(), md.nlink()),
            "{what}: the registry was replaced or changed"
        );
        let _ = std::fs::remove_file(fx.path("state/registry.link"));
        restore();
    }
    // The registry as the store writes it is read, and the store works on.
    expect(&fx.store_install(&[&other], &[]), 0, "");
    let installed = fx.installed();
    assert!(installed.contains_key("hello") && installed.contains_key("other"));
}

/// A name's lookup (`verify NAME`, `run NAME`: the store's lockless `read_registry`) refuses a
/// `store` that is a symlink as the store's writers and `list` do (78 `store.unsafe`), reading
/// nothing through it. It read `<state>/store/registry.json` by its path, refusing only a
/// symlink at the last component: a crafted store behind a `store` symlink was taken for the
/// store, its install list trusted (here a `planted` plugin the real store never had).
#[test]
fn a_symlinked_store_is_refused_by_name_lookups_and_nothing_is_read_through_it() {
    let fx = setup();
    let hello = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&hello], &[]), 0, "");
    let store = fx.path("state/store");
    let crafted = fx.path("crafted");
    std::fs::rename(&store, &crafted).unwrap();
    let reg = crafted.join("registry.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&reg).unwrap()).unwrap();
    let mut planted = v["plugins"]["hello"].clone();
    planted["name"] = "planted".into();
    v["plugins"]["planted"] = planted;
    std::fs::write(&reg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    std::os::unix::fs::symlink(&crafted, &store).unwrap();
    let before = snapshot(&crafted);
    let refused = |r: &Run, what: &str| {
        expect(r, 78, "store.unsafe");
        assert!(
            r.stdout.contains("state/store") && r.stdout.contains("is a symlink"),
            "{what}: {}",
            r.stdout
        );
        assert!(!r.stdout.contains("planted\","), "{what}: {}", r.stdout);
    };
    for name in ["hello", "planted"] {
        refused(
            &verify_installed(&fx, Some(name)),
            &format!("verify {name}"),
        );
        let mut run = vec!["--json", "run", name];
        run.extend_from_slice(&STORE_FLAGS);
        refused(&fx.run(&run), &format!("run {name}"));
    }
    assert_eq!(snapshot(&crafted), before);
    // The real store back: its names are found again, and `planted` is not one.
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&crafted, &store).unwrap();
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(store.join("registry.json")).unwrap()).unwrap();
    v["plugins"].as_object_mut().unwrap().remove("planted");
    std::fs::write(
        store.join("registry.json"),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
    expect(&verify_installed(&fx, Some("hello")), 0, "");
    expect(
        &verify_installed(&fx, Some("planted")),
        104,
        "store.not_installed",
    );
}

/// The packaged layout: the state directory belongs to the daemon's user, and root's CLI works
/// in it. That user must not be able to turn root's store commands against the host: a store
/// of its own holding a `staging` symlink made root's `list` empty the directory it pointed at
/// (recovery removes whatever staging holds), and a `store` symlink likewise. Both are refused
/// now (78 `store.unsafe`), the target untouched. And `source refresh`, which the shipped timer
/// runs as that user, neither recovers root's staging (it failed with 74 on a store root had
/// created) nor creates a store of its own; it takes no lock of root's store (root's alone).
#[test]
fn the_daemons_user_cannot_turn_roots_store_commands_against_the_host() {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    if !require_root() {
        return;
    }
    let fx = setup();
    let nobody = 65534;
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = fx.path("victim");
    std::fs::create_dir_all(victim.join("important")).unwrap();
    std::fs::write(victim.join("file.conf"), "x").unwrap();
    let state = fx.path("state");
    std::fs::create_dir(&state).unwrap();
    chown(&state, Some(nobody), Some(nobody)).unwrap();
    let list = || fx.run(&["--json", "list", "--state-dir", "state"]);
    // Its own store, with staging pointing at the victim.
    std::fs::create_dir(state.join("store")).unwrap();
    symlink(&victim, state.join("store/staging")).unwrap();
    chown(state.join("store"), Some(nobody), Some(nobody)).unwrap();
    expect(&list(), 78, "store.unsafe");
    // The store itself a symlink.
    std::fs::remove_file(state.join("store/staging")).unwrap();
    std::fs::remove_dir(state.join("store")).unwrap();
    symlink(&victim, state.join("store")).unwrap();
    let r = list();
    expect(&r, 78, "store.unsafe");
    assert!(r.stdout.contains("is a symlink"), "{}", r.stdout);
    assert!(victim.join("file.conf").exists() && victim.join("important").exists());
    // Root's store (made by an install: `list` makes none); a leftover of an interrupted
    // install of root's in staging.
    std::fs::remove_file(state.join("store")).unwrap();
    expect(&list(), 0, "");
    assert!(!state.join("store").exists(), "list made a store");
    let p = pack(&fx, "p", "1.0.0", &[]);
    expect(&fx.store_install(&[&p], &[]), 0, "");
    std::fs::create_dir(state.join("store/staging/install-x")).unwrap();
    let as_nobody = |args: &[&str]| stockade_as(nobody, fx.dir(), args);
    let o = as_nobody(&["source", "refresh", "--state-dir", "state"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(state.join("store/staging/install-x").exists());
    // Without a store, it creates none.
    let fresh = fx.path("fresh");
    std::fs::create_dir(&fresh).unwrap();
    chown(&fresh, Some(nobody), Some(nobody)).unwrap();
    let o = as_nobody(&["source", "refresh", "--state-dir", "fresh"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!fresh.join("store").exists());
}

/// The packaged layout: the fixture's `state` directory is the daemon's user's (here nobody,
/// 65534), 0750, and the fixture readable by that user. Returns the fixture, `state` and the uid.
fn packaged_layout() -> (Fixture, std::path::PathBuf, u32) {
    use std::os::unix::fs::{chown, PermissionsExt};
    let fx = setup();
    let nobody = 65534;
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = fx.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    chown(&state, Some(nobody), Some(nobody)).unwrap();
    (fx, state, nobody)
}

/// Root's CLI under a hardened umask (077) still makes the store the daemon's user must read
/// with the modes the store asks for: `store/`, `store/plugins/` and an object directory
/// 0755, the registry and the stored package 0644 (`store/lock` 0600: root's alone, which that
/// user has no need of). The umask used to be taken off them (0700 and 0600 here), and the
/// daemon's user could neither `list` the store nor read a stored package. Root's sources
/// directory, made by the install's first pin, is 0755 and the pins 0644 as well.
#[test]
fn the_store_root_makes_under_a_restrictive_umask_is_the_daemons_to_read() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    if !require_root() {
        return;
    }
    let (fx, state, nobody) = packaged_layout();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    let mut args = vec!["--json", "install", &pkg];
    args.extend_from_slice(&STORE_FLAGS);
    let mut root = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"));
    root.args(&args)
        .current_dir(fx.dir())
        .env_remove("STOCKADE_TRUST_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .env("STOCKADE_SOURCES_DIR", fx.path(SOURCES_DIR));
    // SAFETY: `umask` is async-signal-safe and touches nothing but the child's own mask.
    unsafe {
        root.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let o = root.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let l = fx.installed();
    let object = Path::new(l["hello"]["package"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    for (p, want) in [
        (state.join("store"), 0o755),
        (state.join("store/plugins"), 0o755),
        (state.join("store/staging"), 0o700),
        (state.join("store/lock"), 0o600),
        (state.join("store/registry.json"), 0o644),
        (object.clone(), 0o755),
        (object.join("package.stockade"), 0o644),
        (object.join("tree"), 0o755),
        // Root's sources directory (made with the first pin) and its pins, which the timer reads.
        (fx.path(SOURCES_DIR), 0o755),
        (fx.path(SOURCES_DIR).join("pins.json"), 0o644),
    ] {
        assert_eq!(mode(&p), want, "{}: {:o}", p.display(), mode(&p));
    }
    let as_nobody = |args: &[&str]| stockade_as(nobody, fx.dir(), args);
    let o = as_nobody(&["--json", "list", "--state-dir", "state"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.contains("\"hello\""), "{}", o.stdout);
    let o = as_nobody(&["source", "refresh", "--state-dir", "state"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // What the daemon loads from: the stored package and its tree.
    let o = std::process::Command::new("cat")
        .arg(object.join("package.stockade"))
        .arg(object.join("tree/manifest.json"))
        .uid(nobody)
        .gid(nobody)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The daemon's user (or any user who can read the state directory) verifies what root
/// installed, by name and all at once, without changing the store: `verify NAME` used to open
/// the store to install into it — made, locked, recovered — and failed with 74 on root's
/// `store/staging` (0700), and its recovery would have removed root's staging leftovers.
/// `inspect NAME` and `policy explain NAME` take an installed name as `run` and `verify` do
/// (they said "cannot read hello", 66).
#[test]
fn another_user_verifies_inspects_and_explains_what_root_installed() {
    if !require_root() {
        return;
    }
    let (fx, state, nobody) = packaged_layout();
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    // An interrupted install of root's: only root's own next store command may clean it.
    std::fs::create_dir(state.join("store/staging/install-x")).unwrap();
    let before = snapshot(&state.join("store"));
    let as_nobody = |args: &[&str]| stockade_as(nobody, fx.dir(), args);
    for id in [Some("hello"), None] {
        let mut args = vec!["--json", "verify"];
        args.extend(id);
        args.extend_from_slice(&STORE_FLAGS);
        let r = as_nobody(&args);
        expect(&r, 0, "");
        assert_eq!(r.json()["plugins"][0]["ok"], true, "{}", r.stdout);
    }
    assert_eq!(snapshot(&state.join("store")), before);
    let r = as_nobody(&["--json", "inspect", "hello", "--state-dir", "state"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["name"], "hello", "{}", r.stdout);
    let mut args = vec!["--json", "policy", "explain", "hello"];
    args.extend_from_slice(&STORE_FLAGS);
    let r = as_nobody(&args);
    expect(&r, 0, "");
    assert!(
        r.stdout.contains("verified package hello 0.1.0"),
        "{}",
        r.stdout
    );
    // A name nothing is installed under is the store's answer, as for `verify` and `run`.
    expect(
        &fx.run(&["--json", "inspect", "absent", "--state-dir", "state"]),
        104,
        "store.not_installed",
    );
    assert_eq!(snapshot(&state.join("store")), before);
}

/// A state directory that fills up while an update extracts: the staged copy of the package
/// fits, its tree does not. That is this host's failure, not the package's: 74 `extract.io`,
/// not 87 `unsafe_archive.write` with "do not use this package"; the store is as it was (the
/// old version installed and verifying, no staging left), and with room the same file installs.
#[test]
fn an_update_that_runs_out_of_space_is_an_io_error_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let fx = setup();
    let space = Tmpfs::mount(&fx.path("state"), "2m", "0700");
    let old = pack(&fx, "big", "1.0.0", &[]);
    expect(&fx.store_install(&[&old], &[]), 0, "");
    // 1.1.0 carries 1.2 MB that does not compress.
    let dir = fx.path("big-1.1.0");
    std::fs::create_dir(&dir).unwrap();
    for f in ["entrypoint", "manifest.json"] {
        std::fs::copy(fx.path(&format!("src-{old}/{f}")), dir.join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        manifest.replace("\"1.0.0\"", "\"1.1.0\""),
    )
    .unwrap();
    let mut noise = vec![0u8; 1_200_000];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(dir.join("noise.bin"), &noise).unwrap();
    let r = fx.pack_dir(dir.to_str().unwrap(), "big-1.1.0.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = snapshot(&fx.path("state/store"));
    let r = fx.store_install(&["big-1.1.0.stockade"], &[]);
    expect(&r, 74, "extract.io");
    assert!(r.stdout.contains("No space left"), "{}", r.stdout);
    assert_eq!(
        snapshot(&fx.path("state/store")),
        before,
        "the store changed"
    );
    assert_eq!(fx.installed()["big"]["version"], "1.0.0");
    expect(&verify_installed(&fx, Some("big")), 0, "");
    space.resize("8m");
    let r = fx.store_install(&["big-1.1.0.stockade"], &[]);
    expect(&r, 0, "");
    assert_eq!(fx.installed()["big"]["version"], "1.1.0");
}

/// The store's lock is root's alone. It was 0644, and `flock` needs only a descriptor: any user
/// who can read the state directory (the daemon's user and group in the packaged layout)
/// opened it read-only and held it forever, and every install, removal and recovery of root's
/// waited for it — 108 `store.locked` with `--no-wait`. Now it is 0600: that user cannot open
/// it, and root's install goes through. An earlier build's 0644 lock is narrowed back by root's
/// next store command, and a lock of that user's is refused (78 `store.unsafe`, nothing
/// changed, the staging leftover of root's not even recovered); that user's own install into
/// root's store is refused as not the owner's (78 `store.not_owner`, where it failed with 74
/// on root's staging). Its `verify` takes no lock at all: it works while root holds it.
#[test]
fn another_user_cannot_hold_roots_store_lock() {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    if !require_root() || !require_tool("flock", "holding the lock as the other user") {
        return;
    }
    let (fx, state, nobody) = packaged_layout();
    let a = pack(&fx, "a", "1.0.0", &[]);
    let b = pack(&fx, "b", "1.0.0", &[]);
    let c = pack(&fx, "c", "1.0.0", &[]);
    expect(&fx.store_install(&[&a], &[]), 0, "");
    let lock = state.join("store/lock");
    let mode = || std::fs::metadata(&lock).unwrap().mode() & 0o7777;
    let (held, holder) = hold_lock_as(fx.dir(), nobody, nobody, "state/store/lock", false);
    let r = fx.store_install(&[&b], &["--no-wait"]);
    drop(holder);
    expect(&r, 0, "");
    assert!(!held, "another user held root's store lock");
    assert_eq!(mode(), 0o600);

    // An earlier build's lock: narrowed back by root's next store command (`list` here).
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(fx.installed().contains_key("b"));
    assert_eq!(mode(), 0o600);
    let (held, holder) = hold_lock_as(fx.dir(), nobody, nobody, "state/store/lock", false);
    drop(holder);
    assert!(!held, "the narrowed lock was still open to another user");

    // A lock of that user's (its own, put at the name): refused, nothing changed.
    std::fs::create_dir(state.join("store/staging/install-x")).unwrap();
    chown(&lock, Some(nobody), Some(nobody)).unwrap();
    let before = snapshot(&state.join("store"));
    let r = fx.store_install(&[&c], &["--no-wait"]);
    expect(&r, 78, "store.unsafe");
    assert!(r.stdout.contains("belongs to uid 65534"), "{}", r.stdout);
    assert_eq!(snapshot(&state.join("store")), before);
    // Removed, as the hint says: made again, root's, and the install goes through.
    std::fs::remove_file(&lock).unwrap();
    expect(&fx.store_install(&[&c], &["--no-wait"]), 0, "");
    assert_eq!(std::fs::metadata(&lock).unwrap().uid(), 0);
    assert_eq!(mode(), 0o600);

    // That user's install into root's store: not its to change, said before anything is read.
    let as_nobody = |args: &[&str]| stockade_as(nobody, fx.dir(), args);
    let mut args = vec!["--json", "install", &a];
    args.extend_from_slice(&STORE_FLAGS);
    let r = as_nobody(&args);
    expect(&r, 78, "store.not_owner");
    assert!(r.stdout.contains("belongs to uid 0"), "{}", r.stdout);

    // Its verify reads without the lock: done while root holds it, every plugin ok.
    let f = std::fs::File::open(&lock).unwrap();
    let _held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let mut args = vec!["--json", "verify"];
    args.extend_from_slice(&STORE_FLAGS);
    let r = as_nobody(&args);
    expect(&r, 0, "");
    let plugins = r.json()["plugins"].as_array().unwrap().clone();
    assert_eq!(plugins.len(), 3, "{}", r.stdout);
    assert!(plugins.iter().all(|p| p["ok"] == true), "{}", r.stdout);
}

/// Run root's store commands in `script` (sh) in the fixture in the background — each line of
/// `script`'s loop sees `$bin` (the runtime) and `$flags` (the store flags) — and meanwhile
/// `uid`'s lockless `verify ARGS…` again and again, each run handed to `check`, until the
/// writer ends; it must have succeeded and the reader have raced it more than once.
fn verify_as_while_root_writes(
    fx: &Fixture,
    uid: u32,
    script: &str,
    args: &[&str],
    check: impl Fn(&Run),
) {
    let mut writer = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(fx.dir())
        .env_remove("STOCKADE_STATE_DIR")
        .env_remove("STOCKADE_TRUST_DIR")
        .env("STOCKADE_SOURCES_DIR", fx.path(SOURCES_DIR))
        .env("bin", env!("CARGO_BIN_EXE_stockade"))
        .env("flags", STORE_FLAGS.join(" "))
        .spawn()
        .unwrap();
    let mut all = vec!["--json", "verify"];
    all.extend_from_slice(args);
    all.extend_from_slice(&STORE_FLAGS);
    let mut runs = 0;
    let done = loop {
        let finished = writer.try_wait().unwrap();
        check(&stockade_as(uid, fx.dir(), &all));
        runs += 1;
        if let Some(status) = finished {
            break status;
        }
    };
    assert!(done.success(), "root's installs and removals failed");
    assert!(runs > 1);
}

/// The daemon's user verifies root's store without its lock while root upgrades, removes and
/// installs again, over and over: no verify reports a problem — a directory removed under its
/// check is confirmed against the registry read again, and is the removal or upgrade it is.
/// Each run's status is 0 (or 108 for a plugin installed anew at every check of it), and every
/// plugin it reports is ok.
#[test]
fn a_lockless_verify_racing_installs_and_removals_reports_no_false_problem() {
    if !require_root() {
        return;
    }
    let (fx, _state, nobody) = packaged_layout();
    let v1 = pack(&fx, "p", "1.0.0", &[]);
    let v2 = pack(&fx, "p", "2.0.0", &[]);
    expect(&fx.store_install(&[&v1], &[]), 0, "");
    let script = format!(
        "for i in $(seq 1 12); do \"$bin\" install {v2} $flags >/dev/null && \
         \"$bin\" remove p --state-dir state --policy-root policy-root >/dev/null && \
         \"$bin\" install {v1} $flags >/dev/null || exit 1; done"
    );
    verify_as_while_root_writes(&fx, nobody, &script, &[], |r| {
        assert!(r.code == 0 || r.code == 108, "{}\n{}", r.stdout, r.stderr);
        let j = r.json();
        for p in j["plugins"].as_array().unwrap() {
            let busy = p["error"]["kind"] == "store.locked";
            assert!(p["ok"] == true || busy, "{}", r.stdout);
        }
    });
}

/// Root's `verify` of its installed plugins only reads, so it works on a read-only state
/// directory — also with the 0644 lock an earlier build left, which it can then not narrow
/// (EROFS): it reads without the lock, as another user does, rather than fail with 74
/// `store.io` (it did, since the owner's view narrowed the lock).
#[test]
fn the_owners_verify_reads_a_read_only_store_with_an_earlier_builds_lock() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() || !require_tool("mount", "a read-only bind mount of the state directory") {
        return;
    }
    let fx = setup();
    let p = pack(&fx, "p", "1.0.0", &[]);
    expect(&fx.store_install(&[&p], &[]), 0, "");
    let lock = fx.path("state/store/lock");
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = fx.path("state");
    let s = state.to_str().unwrap();
    let mount = |a: &[&str]| {
        std::process::Command::new("mount")
            .args(a)
            .status()
            .unwrap()
            .success()
    };
    /// Unmounts whatever the test does.
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    assert!(mount(&["--bind", s, s]));
    let _unmount = Unmount(state.clone());
    assert!(mount(&["-o", "remount,bind,ro", s]));
    let r = verify_installed(&fx, None);
    expect(&r, 0, "");
    assert_eq!(r.json()["plugins"][0]["ok"], true, "{}", r.stdout);
    let r = verify_installed(&fx, Some("p"));
    expect(&r, 0, "");
    drop(_unmount);
    // Nothing was changed: the lock is still the earlier build's, until a writer narrows it.
    let mode = || std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(), 0o644);
    expect(&remove(&fx, "p", &[]), 0, "");
    assert_eq!(mode(), 0o600);
}

/// Where there is no store yet, the daemon's user's `list` (and `remove`) make none: `list`
/// shows nothing and exits 0, and root's install then makes root's store. `list` opened the
/// store as an install does and made `state/store` that user's, after which root's `list` and
/// `install` failed with 78 `store.unsafe` ("belongs to uid 65534"). And a user who may write a
/// state directory that is neither its own nor does it run as root cannot make the store there
/// with an `install` (78 `store.not_owner`, nothing made).
#[test]
fn another_users_list_remove_and_install_make_no_store() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !require_root() {
        return;
    }
    let (fx, state, nobody) = packaged_layout();
    let as_nobody = |args: &[&str]| stockade_as(nobody, fx.dir(), args);
    let r = as_nobody(&["--json", "list", "--state-dir", "state"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["plugins"], serde_json::json!([]), "{}", r.stdout);
    assert!(!state.join("store").exists(), "list made a store");
    let r = as_nobody(&[
        "--json",
        "remove",
        "p",
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ]);
    expect(&r, 104, "store.not_installed");
    assert!(!state.join("store").exists(), "remove made a store");
    let p = pack(&fx, "p", "1.0.0", &[]);
    expect(&fx.store_install(&[&p], &[]), 0, "");
    assert!(fx.installed().contains_key("p"));
    let r = as_nobody(&["--json", "list", "--state-dir", "state"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["plugins"][0]["name"], "p", "{}", r.stdout);

    // A state directory of root's that others may write: not that user's to make a store in.
    let shared = fx.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    chown(&shared, Some(0), Some(0)).unwrap();
    let r = as_nobody(&[
        "--json",
        "install",
        &p,
        "--trust",
        "trust",
        "--state-dir",
        "shared",
        "--policy-root",
        "policy-root",
    ]);
    expect(&r, 78, "store.not_owner");
    assert!(r.stdout.contains("belongs to uid 0"), "{}", r.stdout);
    assert!(!shared.join("store").exists(), "install made a store");
}

/// A plugin whose tree really was changed is reported as tampered (105) by every lockless
/// verify of it, however busy root keeps the store with another plugin meanwhile. A finding
/// used to stand only if the registry file was the one first read, so every commit of the
/// other plugin sent it round again, and after 3 rounds it was reported "installed anew" with
/// 108: 8 of 13 runs here, and an agent retrying on 108 never saw the tampering.
#[test]
fn a_tampered_plugin_is_reported_while_root_changes_another() {
    if !require_root() {
        return;
    }
    let (fx, _state, nobody) = packaged_layout();
    let t = pack(&fx, "t", "1.0.0", &[]);
    let q = pack(&fx, "q", "1.0.0", &[]);
    expect(&fx.store_install(&[&t], &[]), 0, "");
    let obj = Path::new(fx.installed()["t"]["package"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::write(obj.join("tree/entrypoint"), b"#!/bin/sh\necho evil\n").unwrap();
    let script = format!(
        "for i in $(seq 1 25); do \"$bin\" install {q} $flags >/dev/null && \
         \"$bin\" remove q --state-dir state --policy-root policy-root >/dev/null || exit 1; done"
    );
    verify_as_while_root_writes(&fx, nobody, &script, &["t"], |r| {
        expect(r, 105, "");
        let j = r.json();
        assert!(
            j["plugins"][0]["problems"]
                .as_array()
                .is_some_and(|p| !p.is_empty()),
            "{}",
            r.stdout
        );
    });
}

/// `hello` VERSION, runnable (its handshake says that version) and saying so when ready
/// (`hello VERSION is ready`), packed into `hello-VERSION.stockade`.
fn pack_hello_version(fx: &Fixture, version: &str) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let dir = fx.path(&format!("hello-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(src.join("manifest.json")).unwrap()).unwrap();
    m["version"] = version.into();
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let entry = std::fs::read_to_string(src.join("entrypoint"))
        .unwrap()
        .replace(r#""version":"0.1.0""#, &format!(r#""version":"{version}""#))
        .replace("hello is ready", &format!("hello {version} is ready"));
    std::fs::write(dir.join("entrypoint"), entry).unwrap();
    std::fs::set_permissions(
        dir.join("entrypoint"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = format!("hello-{version}.stockade");
    expect(&fx.pack_dir(dir.to_str().unwrap(), &out), 0, "");
    out
}

/// `run hello` held right after it read the registry and before it opened the stored package.
fn run_held_after_lookup(fx: &Fixture) -> std::process::Child {
    let mut args = vec!["--json", "run", "hello"];
    args.extend_from_slice(&STORE_FLAGS);
    stockade_stopped_at(fx.dir(), &args, "lookup")
}

/// `run NAME` reads the registry, then opens the stored package at the path it names; an
/// upgrade or removal that committed in between had removed that directory, and the run failed
/// with 66 `input`, "cannot read …/plugins/hello-0.1.0-…/package.stockade" — a path the agent
/// never gave, telling it its input was wrong. Held right there while the store changes: after
/// an upgrade it runs the version installed now; after a removal it answers 104, as a run after
/// the removal does.
#[test]
fn a_run_by_name_beside_an_upgrade_or_removal_takes_the_store_as_it_is_now() {
    let fx = setup();
    let (old, new) = (
        pack_hello_version(&fx, "0.1.0"),
        pack_hello_version(&fx, "0.2.0"),
    );
    expect(&fx.store_install(&[&old], &[]), 0, "");

    let held = run_held_after_lookup(&fx);
    expect(&fx.store_install(&[&new], &[]), 0, "");
    let r = resume(held);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("hello 0.2.0 is ready"), "{}", r.stdout);

    let held = run_held_after_lookup(&fx);
    expect(&remove(&fx, "hello", &[]), 0, "");
    expect(&resume(held), 104, "store.not_installed");
}

/// Agents poll `list`. It took the store's lock exclusively whenever it could (to recover), so
/// an `install --no-wait` or `remove --no-wait` beside it failed with 108 `store.locked` though
/// only a reader was there. Held where it has read the registry: both succeed beside it, and it
/// lists what it read. With a leftover of an interrupted install it still recovers (the lock was
/// free): the leftover is gone by the time it is held, and the lock free again.
#[test]
fn a_list_beside_an_install_or_removal_with_no_wait_does_not_make_it_fail() {
    let fx = setup();
    let (a, b) = (pack(&fx, "a", "1.0.0", &[]), pack(&fx, "b", "1.0.0", &[]));
    expect(&fx.store_install(&[&a], &[]), 0, "");
    let list = || {
        stockade_stopped_at(
            fx.dir(),
            &["--json", "list", "--state-dir", "state"],
            "list",
        )
    };

    let held = list();
    expect(&fx.store_install(&[&b], &["--no-wait"]), 0, "");
    expect(&remove(&fx, "a", &["--no-wait"]), 0, "");
    let r = resume(held);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let doc = r.json();
    let names: Vec<&str> = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"], "it lists the registry it read");

    let leftover = fx.path("state/store/staging/install-x");
    std::fs::create_dir(&leftover).unwrap();
    let held = list();
    assert!(!leftover.exists(), "list recovers when the lock is free");
    expect(&remove(&fx, "b", &["--no-wait"]), 0, "");
    expect(&resume(held), 0, "");
    assert!(fx.installed().is_empty());
}

/// An install (and a removal) committed, then its audit record appended: a log that could not
/// be written there made the command exit 74 although the plugin was installed (or removed) —
/// the agent told of a failure the store contradicts — and a kill there left the change with no
/// record. Held right after the commit with the log made unwritable: the command succeeds,
/// says that the record is missing (`audit_error`, a warning on stderr), and the log holds the
/// change's `begun` record, appended before the commit; the log still verifies.
#[test]
fn a_committed_change_whose_audit_record_cannot_be_written_is_not_reported_failed() {
    let fx = setup();
    let log = audit_to_file(&fx);
    let pkg = pack(&fx, "hello", "0.1.0", &[]);
    let records = || -> Vec<(String, String)> {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                (s("event"), s("outcome"))
            })
            .collect()
    };
    let last = || records().last().cloned().unwrap();

    let mut args = vec!["--json", "install", pkg.as_str()];
    args.extend_from_slice(&STORE_FLAGS);
    let held = stockade_stopped_at(fx.dir(), &args, "committed");
    assert_eq!(last(), ("install".into(), "begun".into()));
    let Some(guard) = Unwritable::new(log.clone()) else {
        resume(held);
        return;
    };
    let r = resume(held);
    drop(guard);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["audit_error"]["kind"], "audit", "{}", r.stdout);
    assert!(fx.installed().contains_key("hello"));
    assert_eq!(last(), ("install".into(), "begun".into()));

    // In text, a warning on stderr says so.
    let args = [
        "remove",
        "hello",
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ];
    let held = stockade_stopped_at(fx.dir(), &args, "committed");
    assert_eq!(last(), ("removal".into(), "begun".into()));
    let guard = Unwritable::new(log.clone()).unwrap();
    let r = resume(held);
    drop(guard);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("removed hello 0.1.0"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("removed, but its audit record could not be written"),
        "{}",
        r.stderr
    );
    assert!(fx.installed().is_empty());
    ok(fx.dir(), &["audit", "verify", log.to_str().unwrap()]);
}

/// Once the registry names the new version (or no longer names a removed plugin), the change
/// is made: a superseded or removed object directory that cannot be removed then (here
/// immutable) is left for the next owner's store command, whose recovery removes a directory
/// the registry does not name. Before, the upgrade or removal failed (74) although it had
/// taken effect, and its audit said `failed` (noted by helper-95). The command warns on
/// stderr.
#[test]
fn a_directory_left_after_the_commit_does_not_fail_the_change() {
    let fx = setup();
    let v1 = pack(&fx, "lib", "1.0.0", &[]);
    let v11 = pack(&fx, "lib", "1.1.0", &[]);
    expect(&fx.store_install(&[&v1], &[]), 0, "");
    let dirs = |fx: &Fixture| -> Vec<String> {
        let mut d: Vec<String> = std::fs::read_dir(fx.path("state/store/plugins"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        d.sort();
        d
    };
    let old = fx.path("state/store/plugins").join(&dirs(&fx)[0]);
    let Some(stuck) = Unwritable::new(old.clone()) else {
        return;
    };
    let r = fx.store_install(&[&v11], &[]);
    expect(&r, 0, "");
    assert!(
        r.stderr
            .contains("left for the next store command's recovery"),
        "{}",
        r.stderr
    );
    assert_eq!(fx.installed()["lib"]["version"], "1.1.0");
    assert_eq!(dirs(&fx).len(), 2, "the old directory is still there");
    drop(stuck);
    // The next store command of the owner's recovers it — a `list` too, once a minute has gone
    // since an earlier `list` failed to (`fx.installed()` above: the very same leftover is
    // otherwise left to the writers, a_list_takes_no_lock_again_for_leftovers_it_could_not_remove).
    age_recovery_record(&fx);
    expect(&fx.run(&["--json", "list", "--state-dir", "state"]), 0, "");
    let left = dirs(&fx);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("lib-1.1.0-"), "{left:?}");

    // The same for a removal.
    let now = fx.path("state/store/plugins").join(&left[0]);
    let Some(stuck) = Unwritable::new(now) else {
        return;
    };
    let r = remove(&fx, "lib", &[]);
    expect(&r, 0, "");
    assert!(r.stderr.contains("cannot remove"), "{}", r.stderr);
    assert!(!fx.installed().contains_key("lib"));
    drop(stuck);
    age_recovery_record(&fx);
    expect(&fx.run(&["--json", "list", "--state-dir", "state"]), 0, "");
    assert!(dirs(&fx).is_empty());
}

/// Set the store's record of a `list` recovery that failed (if any) back two minutes: the next
/// `list` tries those leftovers again.
fn age_recovery_record(fx: &Fixture) {
    let p = fx.path("state/store/recovery-failed.json");
    if let Ok(f) = std::fs::File::options().write(true).open(&p) {
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
    }
}

/// An owner's `list` that finds leftovers takes the store's lock to recover them; one it cannot
/// remove (here an object directory made immutable) stays, and every later `list` took the
/// lock again to fail again — so agents polling `list` made an `install --no-wait` landing in
/// that moment fail 108 `store.locked`, again and again. Now the first `list` records the
/// leftovers it could not remove, and the next ones, finding the very same, neither take the
/// lock (held at `recover`, the lock taken: they never get there) nor fail a writer beside
/// them; they still warn. The writer's own recovery leaves the leftover too, says so, and
/// installs (nothing names it: it used to fail every install, update and removal, 74, until
/// removed by hand). Another set of leftovers is tried again; once the obstacle is gone, the
/// next writer recovers them all and the record goes.
#[test]
fn a_list_takes_no_lock_again_for_leftovers_it_could_not_remove() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::io::Read;
    let fx = setup();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| pack(&fx, n, "1.0.0", &[]));
    expect(&fx.store_install(&[&a], &[]), 0, "");
    let ghost = fx.path("state/store/plugins/ghost-1.0.0-abc");
    std::fs::create_dir(&ghost).unwrap();
    std::fs::write(ghost.join("f"), "").unwrap();
    let Some(stuck) = Unwritable::new(ghost.clone()) else {
        return;
    };
    // Text: its warnings are on stderr (`--json` says nothing there).
    let list = ["list", "--state-dir", "state"];
    let r = fx.run(&list);
    expect(&r, 0, "");
    assert!(
        r.stderr.contains("cannot remove") && r.stderr.contains("plugins/ghost-1.0.0-abc"),
        "{}",
        r.stderr
    );

    // A `list` that would stop once it holds the lock to recover, and an install beside it.
    let list_beside_install = |fx: &Fixture, package: &str| -> (bool, Run, Run) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(list)
            .current_dir(fx.dir())
            .env("STOCKADE_TEST_STOP_AT", "recover")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let st = waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap();
        let stopped = matches!(st, WaitStatus::Stopped(_, _));
        let install = fx.store_install(&[package], &["--no-wait"]);
        let listed = if stopped {
            resume(child)
        } else {
            // Reaped already by the `waitpid` above: this only says so (ECHILD).
            let _ = child.wait();
            let WaitStatus::Exited(_, code) = st else {
                panic!("{st:?}")
            };
            let (mut out, mut err) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            Run {
                code,
                stdout: out,
                stderr: err,
            }
        };
        (stopped, install, listed)
    };
    let (stopped, install, listed) = list_beside_install(&fx, &b);
    assert!(
        !stopped,
        "list took the lock again for the leftover it could not remove; the install beside it \
         exited {}: {}",
        install.code, install.stdout
    );
    expect(&listed, 0, "");
    assert!(
        listed.stderr.contains("earlier recovery could not remove")
            && listed.stderr.contains("plugins/ghost-1.0.0-abc"),
        "{}",
        listed.stderr
    );
    // The install meets no lock held by a reader; its own recovery leaves the leftover, says
    // so, and the install is made.
    expect(&install, 0, "");
    assert!(
        install.stderr.contains("cannot remove") && install.stderr.contains("ghost-1.0.0-abc"),
        "{}",
        install.stderr
    );
    assert!(fx.installed().contains_key("b"), "{:?}", fx.installed());

    // One leftover more: tried again (and failed again, on the immutable one).
    let staging = fx.path("state/store/staging/install-x");
    std::fs::create_dir(&staging).unwrap();
    let (stopped, install, listed) = list_beside_install(&fx, &c);
    assert!(stopped, "another set of leftovers is tried");
    expect(&install, 108, "store.locked");
    expect(&listed, 0, "");
    assert!(
        listed.stderr.contains("cannot remove") && !staging.exists(),
        "{}",
        listed.stderr
    );

    // A minute later the very same leftover is tried again.
    age_recovery_record(&fx);
    let (stopped, install, _) = list_beside_install(&fx, &d);
    assert!(stopped, "tried again a minute later");
    expect(&install, 108, "store.locked");

    // The obstacle gone: the next writer recovers everything, and the record goes with it.
    drop(stuck);
    expect(&fx.store_install(&[&d], &["--no-wait"]), 0, "");
    assert!(!ghost.exists() && !staging.exists());
    assert!(!fx.path("state/store/recovery-failed.json").exists());
    let r = fx.run(&list);
    expect(&r, 0, "");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

/// A leftover recovery cannot remove, at the very name a later install of the same package
/// needs (`plugins/<name>-<version>-<sha12>`: a removal whose directory could not go, here its
/// `tree` made unwritable, so only `package.stockade` went), is neither taken for the package
/// nor removed by the install: the package goes to a fresh name beside it, which the registry
/// records, and is whole. The install used to skip its rename on finding the name taken and
/// name the half-removed leftover: it said 0, and every `verify` and `run` of the plugin then
/// failed (66: no `package.stockade`) until the leftover was removed by hand.
#[test]
fn an_install_does_not_take_a_half_removed_leftover_of_its_name_for_its_package() {
    let fx = setup();
    let dir_of = |fx: &Fixture| -> String {
        let reg = std::fs::read(fx.path("state/store/registry.json")).unwrap();
        let v: Value = serde_json::from_slice(&reg).unwrap();
        v["plugins"]["lib"]["dir"].as_str().unwrap().to_string()
    };
    let v1 = pack(&fx, "lib", "1.0.0", &[]);
    expect(&fx.store_install(&[&v1], &[]), 0, "");
    let dir = dir_of(&fx);
    let old = fx.path("state/store/plugins").join(&dir);
    let Some(stuck) = Unwritable::new(old.join("tree")) else {
        return;
    };
    let r = remove(&fx, "lib", &[]);
    expect(&r, 0, "");
    assert!(r.stderr.contains("cannot remove"), "{}", r.stderr);
    assert!(old.join("tree").exists() && !old.join("package.stockade").exists());
    let before = snapshot(&old);
    let r = fx.store_install(&[&v1], &[]);
    expect(&r, 0, "");
    // Recovery said the leftover; the install went beside it.
    assert!(
        r.stderr.contains("a leftover of an interrupted run"),
        "{}",
        r.stderr
    );
    let fresh = dir_of(&fx);
    assert_eq!(fresh, format!("{dir}-1"));
    // The report says where it is.
    let path = r.json()["installed"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        path.ends_with(&format!("/{fresh}/package.stockade")),
        "{path}"
    );
    assert!(fx
        .path("state/store/plugins")
        .join(&fresh)
        .join("package.stockade")
        .is_file());
    expect(&verify_installed(&fx, Some("lib")), 0, "");
    assert_eq!(snapshot(&old), before, "the leftover was changed");
    // Once it can go, the owner's next recovery removes it; the installed one stays.
    drop(stuck);
    age_recovery_record(&fx);
    expect(&fx.run(&["--json", "list", "--state-dir", "state"]), 0, "");
    assert!(!old.exists());
    expect(&verify_installed(&fx, Some("lib")), 0, "");
    // The same package installed again is the installed one (no third directory).
    expect(&fx.store_install(&[&v1], &[]), 0, "");
    assert_eq!(dir_of(&fx), fresh);
    let n = std::fs::read_dir(fx.path("state/store/plugins"))
        .unwrap()
        .count();
    assert_eq!(n, 1);
}

/// A user other than root whose state directory cannot be made (as the default,
/// /var/lib/stockade, root's installation's, cannot): `verify` (as `run`), `install` and
/// `source add` name the directory and the cause, and the hint says to pass --state-dir —
/// each with its kind and code as before. Before audit-144 `verify` and `run` told it to restore
/// `revocation-state.json`, which was never there, and `install` and `source add` said nothing.
#[test]
fn a_state_directory_this_user_cannot_make_is_hinted_as_that() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() {
        return;
    }
    let fx = setup();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A revocation list: verification then records what it saw in the state directory.
    fx.install_list(&[]);
    let p = pack(&fx, "p", "1.0.0", &[]);
    // Root's, 0755: another user can read below it but make nothing there.
    std::fs::create_dir(fx.path("roots")).unwrap();
    let state = "roots/state";
    // The user's own sources directory: `source add` gets as far as the state directory.
    std::fs::create_dir(fx.path("own-sources")).unwrap();
    std::os::unix::fs::chown(fx.path("own-sources"), Some(65534), Some(65534)).unwrap();
    let common = ["--state-dir", state, "--policy-root", "policy-root"];
    let verify = [&["--json", "verify", &p, "--trust", "trust"][..], &common].concat();
    let install = [&["--json", "install", &p, "--trust", "trust"][..], &common].concat();
    let source = [
        &[
            "--json",
            "source",
            "add",
            "s",
            "file:///nonexistent/index.json",
        ][..],
        &["--operator-key", "dev.pub"],
        &common,
        &["--sources-dir", "own-sources"],
    ]
    .concat();
    for (args, code, kind) in [
        (verify, 78, "revocation.state"),
        (install, 74, "store.io"),
        (source, 74, "store.io"),
    ] {
        let r = stockade_as(65534, fx.dir(), &args);
        expect(&r, code, kind);
        let e = &r.json()["error"];
        assert!(
            e.to_string()
                .contains("cannot create state directory roots/state")
                && e["causes"].to_string().contains("Permission denied"),
            "{e}"
        );
        let hint = e["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("--state-dir DIR"), "{}: {e}", args[1]);
        assert!(!hint.contains("revocation-state.json"), "{e}");
    }
    assert!(!fx.path("roots/state").exists());
}
