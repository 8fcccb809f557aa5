//! CLI tests for revocation (step 5) and scope against this node (step 6): each failing case
//! asserts its distinct error kind and exit code.

mod common;

use common::*;
use serde_json::Value;

fn assert_fail(r: &Run, code: i32, kind: &str) {
    assert_eq!(
        r.code, code,
        "expected exit {code} ({kind}); stdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    assert_eq!(r.kind(), kind, "stdout: {}", r.stdout);
}

#[test]
fn revoked_serial_and_key() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    fx.install_list(&[]);
    let r = fx.verify(&pkg, &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["revocation_version"], 1);
    let serial = fx.dev_serial();
    fx.install_list(&["--serial", &serial]);
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.serial");

    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    fx.install_list(&["--key", "dev.pub"]);
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.key");
}

/// The hello package, verified once with list v2 (so v2 is recorded), then list v1 (a
/// rollback) put in the trust directory; `v1.json` and `v2.json` stay in the fixture.
fn v2_recorded_then_v1(fx: &Fixture) -> String {
    let pkg = fx.pack_hello();
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v1.json"]);
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v2.json"]);
    std::fs::copy(fx.path("v2.json"), fx.path("trust/revocations.json")).unwrap();
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    std::fs::copy(fx.path("v1.json"), fx.path("trust/revocations.json")).unwrap();
    pkg
}

#[test]
fn rolled_back_missing_and_expired_lists() {
    let fx = Fixture::new();
    let pkg = v2_recorded_then_v1(&fx);
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.rollback");
    std::fs::remove_file(fx.path("trust/revocations.json")).unwrap();
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.list_missing");

    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let past = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 40 * 86_400)
        .to_string();
    fx.install_list(&["--days", "30", "--now", &past]);
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.list_expired");
}

/// The rollback memory is refused, not read as "nothing recorded", when someone else than root
/// and the state directory's owner could have written it: another user's file, one writable by
/// group or others, a symlink, a second link. Each such file, emptied to `{}`, used to let a
/// rolled-back list pass (0). Now 78 `revocation.state`, the file named and left as it was, the
/// hint saying what to do; what the runtime writes itself always passes.
#[test]
fn a_revocation_memory_others_could_write_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new();
    let pkg = v2_recorded_then_v1(&fx);
    let state = fx.path("state/revocation-state.json");
    let lowered = fx.path("lowered.json");
    std::fs::write(&lowered, b"{}").unwrap();
    std::fs::set_permissions(&lowered, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cases: [(&str, &dyn Fn()); 4] = [
        ("belongs to uid 65534", &|| {
            std::fs::write(&state, b"{}").unwrap();
            std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        }),
        ("is writable by group or others (mode 666)", &|| {
            std::fs::write(&state, b"{}").unwrap();
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o666)).unwrap();
        }),
        ("is a symlink", &|| {
            std::os::unix::fs::symlink(&lowered, &state).unwrap();
        }),
        ("has another link", &|| {
            std::fs::hard_link(&lowered, &state).unwrap();
        }),
    ];
    for (why, make) in cases {
        std::fs::remove_file(&state).unwrap();
        make();
        let before = std::fs::symlink_metadata(&state).unwrap();
        let r = fx.verify(&pkg, &[]);
        assert_fail(&r, 78, "revocation.state");
        let err = r.json()["error"].clone();
        let text = err.to_string();
        assert!(
            text.contains("revocation-state.json") && text.contains(why),
            "{why}: {err}"
        );
        assert!(text.contains("restore"), "{err}");
        let after = std::fs::symlink_metadata(&state).unwrap();
        assert_eq!(
            (before.uid(), before.mode(), before.ino()),
            (after.uid(), after.mode(), after.ino()),
            "{why}: the file was changed"
        );
        assert_eq!(std::fs::read(&state).unwrap(), b"{}", "{why}");
    }
    // The floor as the runtime writes it (0600, this user's) still refuses the rollback.
    std::fs::remove_file(&state).unwrap();
    std::fs::copy(fx.path("v2.json"), fx.path("trust/revocations.json")).unwrap();
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    std::fs::copy(fx.path("v1.json"), fx.path("trust/revocations.json")).unwrap();
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.rollback");
}

/// Where a list from one root was seen, a list from another is refused for what it is: one
/// signed by a key that is not a pinned root says so (not "missing"), and a valid one from
/// another pinned root does not replace the first.
#[test]
fn a_list_from_another_root_is_refused_for_what_it_is() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    fx.install_list(&[]);
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    ok(
        fx.dir(),
        &["ca", "init", "-o", "root2", "--name", "Other Root"],
    );
    ok(
        fx.dir(),
        &["ca", "revoke", "--ca", "root2", "-o", "other.json"],
    );
    std::fs::copy(fx.path("other.json"), fx.path("trust/revocations.json")).unwrap();
    let r = fx.verify(&pkg, &[]);
    assert_fail(&r, 84, "revocation.list_invalid");
    assert!(!r.stdout.contains("missing"), "{}", r.stdout);
    std::fs::copy(fx.path("root2/ca.pub"), fx.path("trust/root2.pub")).unwrap();
    let r = fx.verify(&pkg, &[]);
    assert_fail(&r, 84, "revocation.other_issuer");
    assert!(r.stdout.contains("does not replace"), "{}", r.stdout);
}

#[test]
fn hardware_scope_mismatch() {
    let fx = Fixture::with_dev_scope(&["--scope", "hardware:00000000000000000000000000000000"]);
    let pkg = fx.pack_hello();
    assert_fail(&fx.verify(&pkg, &[]), 85, "scope.hardware");
}

#[test]
fn hardware_scope_match_on_this_node() {
    let fx = Fixture::new();
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    assert_eq!(info.code, 0);
    let hw = info.json()["hardware_id"].as_str().map(String::from);
    let Some(hw) = hw else {
        require(false, "this machine has no /etc/machine-id");
        return;
    };
    assert_eq!(hw.len(), 32);
    ok(
        fx.dir(),
        &[
            "ca",
            "issue",
            "--ca",
            "int",
            "--pub",
            "dev.pub",
            "--scope",
            &format!("hardware:{hw}"),
            "-o",
            "dev.cert",
            "--force",
        ],
    );
    let pkg = fx.pack_hello();
    let r = fx.verify(&pkg, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn license_scope() {
    let fx = Fixture::with_dev_scope(&["--scope", "license:ACME-1"]);
    let pkg = fx.pack_hello();
    assert_fail(&fx.verify(&pkg, &[]), 85, "scope.license");
    // Wrong license.
    ok(
        fx.dir(),
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "OTHER-2",
            "-o",
            "other.license",
        ],
    );
    ok(
        fx.dir(),
        &[
            "node",
            "license",
            "install",
            "other.license",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ],
    );
    assert_fail(&fx.verify(&pkg, &[]), 85, "scope.license");
    // A license file handed out is not replaced by accident: --force.
    let reissue = |extra: &[&str]| {
        let mut args = vec![
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "OTHER-3",
            "-o",
            "other.license",
        ];
        args.extend_from_slice(extra);
        fx.run(&args)
    };
    let before = std::fs::read(fx.path("other.license")).unwrap();
    let r = reissue(&[]);
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(std::fs::read(fx.path("other.license")).unwrap(), before);
    assert_eq!(reissue(&["--force"]).code, 0);
    assert_ne!(std::fs::read(fx.path("other.license")).unwrap(), before);
    // Right license, issued after the wrong one (a license of the same second as the one
    // installed last is refused).
    ok(
        fx.dir(),
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "ACME-1",
            "--now",
            &fx.next_license_time(),
            "-o",
            "acme.license",
        ],
    );
    ok(
        fx.dir(),
        &[
            "node",
            "license",
            "install",
            "acme.license",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ],
    );
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    let info = fx
        .run(&[
            "--json",
            "node",
            "info",
            "--state-dir",
            "state",
            "--trust",
            "trust",
        ])
        .json();
    assert_eq!(info["license"]["serial"], "ACME-1");
    assert_eq!(info["license"]["signature"], "verified");
    // Frozen license.
    fx.install_frozen_license("ACME-1");
    // Verification still passes (the scope matches the node's license) and says the license is
    // frozen; what is refused is starting a package that is not installed (store_cli tests the
    // installed side).
    let r = fx.verify(&pkg, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("frozen"), "{}", r.stdout);
    let r = stockade(
        fx.dir(),
        &[
            "--json",
            "run",
            &pkg,
            "--trust",
            "trust",
            "--state-dir",
            "state",
            "--policy-root",
            "policy-root",
        ],
    );
    assert_eq!(r.code, 100, "{}", r.stdout);
    assert!(r.stdout.contains("license_frozen"), "{}", r.stdout);
    // A license bound to other hardware is refused at install.
    ok(
        fx.dir(),
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "ACME-1",
            "--hardware",
            "ffff",
            "-o",
            "bound.license",
        ],
    );
    let r = fx.run(&[
        "--json",
        "node",
        "license",
        "install",
        "bound.license",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 85);
    // A license from an untrusted root is refused at install.
    ok(fx.dir(), &["ca", "init", "-o", "root2"]);
    ok(
        fx.dir(),
        &[
            "ca",
            "license",
            "--ca",
            "root2",
            "--serial",
            "ACME-1",
            "-o",
            "rogue.license",
        ],
    );
    assert_eq!(
        fx.run(&[
            "node",
            "license",
            "install",
            "rogue.license",
            "--trust",
            "trust",
            "--state-dir",
            "state"
        ])
        .code,
        82
    );
}

#[test]
fn state_is_written_atomically_and_privately() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    fx.install_list(&[]);
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    let v = revocation_state(&fx);
    let seen = &v[root_key_id(&fx)];
    assert_eq!(seen["version"], 1, "{v}");
    assert_eq!(seen["body_sha256"].as_str().unwrap().len(), 64, "{v}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(fx.path("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

/// `--json ca revoke --ca CA [--serial SERIAL] -o OUT` (without `--json`: `[1..]`).
fn revoke<'a>(ca: &'a str, serial: Option<&'a str>, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--json", "ca", "revoke", "--ca", ca];
    if let Some(s) = serial {
        args.extend(["--serial", s]);
    }
    args.extend(["-o", out]);
    args
}

fn list_version(fx: &Fixture, p: &str) -> u64 {
    let v: Value = serde_json::from_slice(&std::fs::read(fx.path(p)).unwrap()).unwrap();
    v["revocations"]["version"].as_u64().unwrap()
}

/// `ca revoke` records the new version in the CA directory before it writes the list: when the
/// record cannot be written, no list is written either (a list of version N out in the world
/// while the CA still believes N-1 would be followed by another list under the same N).
#[test]
fn ca_revoke_writes_no_list_when_it_cannot_record_it() {
    let fx = Fixture::new();
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v1.json"]);
    assert_eq!(list_version(&fx, "v1.json"), 1);
    let serial = fx.dev_serial();
    std::fs::create_dir(fx.path("out")).unwrap();
    {
        let Some(_guard) = Unwritable::new(fx.path("root")) else {
            return;
        };
        let r = fx.run(&revoke("root", Some(&serial), "out/v2.json"));
        assert_eq!(r.code, 73, "{}\n{}", r.stdout, r.stderr);
        // Nothing at the output, and no temporary file left beside it.
        assert_eq!(
            std::fs::read_dir(fx.path("out")).unwrap().count(),
            0,
            "a list was written although the CA did not record its version"
        );
        assert_eq!(r.kind(), "ca_dir", "{}", r.stdout);
        assert!(r.stdout.contains("no list was written"), "{}", r.stdout);
    }
    // The CA still issues version 2, once, with the serial.
    ok(fx.dir(), &revoke("root", Some(&serial), "out/v2.json")[1..]);
    assert_eq!(list_version(&fx, "out/v2.json"), 2);
    let issued: Value =
        serde_json::from_slice(&std::fs::read(fx.path("root/revocations-issued.json")).unwrap())
            .unwrap();
    assert_eq!(issued["version"], 2, "{issued}");
    // An output that cannot be written records nothing either.
    let r = fx.run(&revoke("root", None, "missing/v3.json"));
    assert_eq!(r.code, 73, "{}", r.stdout);
    assert_eq!(r.kind(), "output", "{}", r.stdout);
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v3.json"]);
    assert_eq!(list_version(&fx, "v3.json"), 3);
}

fn root_key_id(fx: &Fixture) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fx.path("root/ca.json")).unwrap()).unwrap();
    v["key_id"].as_str().unwrap().to_string()
}

/// Two lists signed by the root under version 1: `revoking.json` revokes the developer's
/// serial, `undoing.json` does not. (The CA never does this itself; a second copy of its
/// directory, or a CA that lost its record, does.)
fn two_lists_under_one_version(fx: &Fixture) {
    let copy = std::process::Command::new("cp")
        .args(["-a", "root", "root-copy"])
        .current_dir(fx.dir())
        .status()
        .unwrap();
    assert!(copy.success());
    let serial = fx.dev_serial();
    ok(
        fx.dir(),
        &revoke("root", Some(&serial), "revoking.json")[1..],
    );
    ok(
        fx.dir(),
        &["ca", "revoke", "--ca", "root-copy", "-o", "undoing.json"],
    );
    assert_eq!(list_version(fx, "revoking.json"), 1);
    assert_eq!(list_version(fx, "undoing.json"), 1);
}

fn install(fx: &Fixture, list: &str) {
    std::fs::copy(fx.path(list), fx.path("trust/revocations.json")).unwrap();
}

/// A node remembers the digest of the list it accepted with its version: another list under the
/// same version — here one that silently drops a revocation — is refused (84
/// `revocation.list_changed`), while the same list, even re-indented, is still the same list.
#[test]
fn a_second_list_under_the_same_version_is_refused() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    two_lists_under_one_version(&fx);
    install(&fx, "revoking.json");
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.serial");
    install(&fx, "undoing.json");
    let r = fx.verify(&pkg, &[]);
    assert_fail(&r, 84, "revocation.list_changed");
    assert!(
        r.stdout
            .contains("version 1 was seen before with other content"),
        "{}",
        r.stdout
    );
    // The list seen, re-indented: the same signed body, the same list.
    let v: Value =
        serde_json::from_slice(&std::fs::read(fx.path("revoking.json")).unwrap()).unwrap();
    std::fs::write(
        fx.path("trust/revocations.json"),
        serde_json::to_vec(&v).unwrap(),
    )
    .unwrap();
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.serial");
    // A higher version moves on.
    ok(
        fx.dir(),
        &["ca", "revoke", "--ca", "root-copy", "-o", "v2.json"],
    );
    install(&fx, "v2.json");
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    install(&fx, "revoking.json");
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.rollback");
}

/// State written by an earlier build holds the version alone: it still guards against rollback,
/// and the digest is recorded the next time a list of that version is accepted, after which
/// another list of that version is refused. The file stays private.
#[test]
fn version_only_state_of_an_earlier_build_keeps_working() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    two_lists_under_one_version(&fx);
    let issuer = root_key_id(&fx);
    std::fs::create_dir(fx.path("state")).unwrap();
    std::fs::write(
        fx.path("state/revocation-state.json"),
        format!("{{\"{issuer}\": 2}}"),
    )
    .unwrap();
    install(&fx, "revoking.json");
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.rollback");
    std::fs::write(
        fx.path("state/revocation-state.json"),
        format!("{{\"{issuer}\": 1}}"),
    )
    .unwrap();
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.serial");
    let v = revocation_state(&fx);
    assert_eq!(v[&issuer]["version"], 1, "{v}");
    assert_eq!(v[&issuer]["body_sha256"].as_str().unwrap().len(), 64, "{v}");
    install(&fx, "undoing.json");
    assert_fail(&fx.verify(&pkg, &[]), 84, "revocation.list_changed");
}

/// The node's revocation state, which must be private (0600).
fn revocation_state(fx: &Fixture) -> Value {
    use std::os::unix::fs::PermissionsExt;
    let path = fx.path("state/revocation-state.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `ca license --serial SERIAL --now AT [--frozen] -o OUT`.
fn issue_license(fx: &Fixture, serial: &str, at: u64, frozen: bool, out: &str) {
    let at = at.to_string();
    let mut args = vec![
        "ca", "license", "--ca", "root", "--serial", serial, "--now", &at, "-o", out,
    ];
    if frozen {
        args.push("--frozen");
    }
    ok(fx.dir(), &args);
}

/// audit-135 row 11: a node license installed (or refused) left no record, though it decides
/// what the node may run. `node license install` writes a `configuration` record
/// (`license_install`, schema `stockade.audit/2`): who (`uid`), the serial, its state and the
/// license it replaces; `begun` before the install and `ok` after, a refused one (a rollback)
/// `refused` with its kind; and a license whose record cannot be written is not installed (74).
#[test]
fn license_installs_are_recorded_and_not_made_unrecorded() {
    let fx = Fixture::new();
    let log = fx.path("audit.log");
    let policy = |file: &std::path::Path| {
        std::fs::create_dir_all(fx.path("policy-root/etc/stockade")).unwrap();
        std::fs::write(
            fx.path("policy-root/etc/stockade/policy.toml"),
            format!("version = 1\n[audit]\nfile = \"{}\"\n", file.display()),
        )
        .unwrap();
    };
    policy(&log);
    let install = |file: &str| {
        fx.run(&[
            "--json",
            "node",
            "license",
            "install",
            file,
            "--trust",
            "trust",
            "--state-dir",
            "state",
            "--policy-root",
            "policy-root",
        ])
    };
    let now = unix_now();
    issue_license(&fx, "L1", now - 2000, false, "active.license");
    issue_license(&fx, "L1", now - 1000, true, "frozen.license");
    issue_license(&fx, "L1", now - 500, false, "renewed.license");
    expect(&install("active.license"), 0, "");
    expect(&install("frozen.license"), 0, "");
    expect(&install("active.license"), 84, "license.rollback");
    let uid = nix::unistd::getuid().as_raw();
    let got: Vec<(String, String, Value, Value, Value)> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["schema"], "stockade.audit/2", "{v}");
            assert_eq!(v["event"], "configuration", "{v}");
            let d = &v["detail"];
            assert_eq!(d["change"], "license_install", "{v}");
            assert_eq!(d["uid"], uid, "{v}");
            assert_eq!(d["serial"], "L1", "{v}");
            (
                v["outcome"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap_or("").to_string(),
                d["state"].clone(),
                d["replaced_state"].clone(),
                d["replaced_serial"].clone(),
            )
        })
        .collect();
    let n = Value::Null;
    let row = |o: &str, k: &str, s: &str, r: Value, rs: Value| {
        (o.to_string(), k.to_string(), Value::from(s), r, rs)
    };
    assert_eq!(
        got,
        vec![
            row("begun", "", "active", n.clone(), n.clone()),
            row("ok", "", "active", n.clone(), n.clone()),
            row("begun", "", "frozen", "active".into(), "L1".into()),
            row("ok", "", "frozen", "active".into(), "L1".into()),
            row(
                "refused",
                "license.rollback",
                "active",
                "frozen".into(),
                "L1".into()
            ),
        ]
    );
    ok(fx.dir(), &["audit", "verify", log.to_str().unwrap()]);
    // A log that cannot take the record: the renewal (which would lift the freeze) is not made.
    std::fs::write(fx.path("not-a-dir"), "").unwrap();
    policy(&fx.path("not-a-dir/audit.log"));
    let frozen = std::fs::read(fx.path("state/license.json")).unwrap();
    expect(&install("renewed.license"), 74, "audit");
    assert_eq!(
        std::fs::read(fx.path("state/license.json")).unwrap(),
        frozen
    );
    policy(&log);
    expect(&install("renewed.license"), 0, "");
}

/// A frozen license may not be lifted by rolling it back: installing an older active license of
/// the same serial is refused (84, `license.rollback`), and deleting (or replacing by hand)
/// `license.json` makes every reader refuse (84, `license.missing` / `license.rollback`) instead
/// of taking it for "no license"; installing the latest license again is the way back.
#[test]
fn a_frozen_license_cannot_be_rolled_back() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    issue_license(&fx, "L1", now - 2000, false, "active.license");
    issue_license(&fx, "L1", now - 1000, true, "frozen.license");
    expect(&install_license(&fx, "active.license"), 0, "");
    expect(&install_license(&fx, "frozen.license"), 0, "");
    let frozen = std::fs::read(fx.path("state/license.json")).unwrap();
    // The older active license of the same serial is refused, and nothing changes.
    let r = install_license(&fx, "active.license");
    expect(&r, 84, "license.rollback");
    assert!(r.stdout.contains("L1"), "{}", r.stdout);
    assert_eq!(
        std::fs::read(fx.path("state/license.json")).unwrap(),
        frozen
    );
    let run = |target: &str| {
        let mut args = vec!["--json", "run", target];
        args.extend_from_slice(&STORE_FLAGS);
        fx.run(&args)
    };
    expect(&run(&pkg), 100, "license_frozen");
    // Deleting the frozen license does not lift the freeze: every reader refuses.
    std::fs::remove_file(fx.path("state/license.json")).unwrap();
    expect(&fx.verify(&pkg, &[]), 84, "license.missing");
    expect(&run(&pkg), 84, "license.missing");
    expect(&fx.store_install(&[&pkg], &[]), 84, "license.missing");
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    expect(&info, 84, "license.missing");
    assert!(info.stdout.contains("L1"), "{}", info.stdout);
    // Nor does copying the older license in place by hand.
    std::fs::copy(fx.path("active.license"), fx.path("state/license.json")).unwrap();
    expect(&fx.verify(&pkg, &[]), 84, "license.rollback");
    expect(&run(&pkg), 84, "license.rollback");
    // The older one still cannot be installed; the latest one can, and the node works again
    // (frozen).
    expect(
        &install_license(&fx, "active.license"),
        84,
        "license.rollback",
    );
    expect(&install_license(&fx, "frozen.license"), 0, "");
    expect(&fx.verify(&pkg, &[]), 0, "");
    expect(&run(&pkg), 100, "license_frozen");
    // A newer active license of the serial lifts the freeze, as the CA meant.
    issue_license(&fx, "L1", now - 500, false, "renewed.license");
    expect(&install_license(&fx, "renewed.license"), 0, "");
    assert_eq!(
        fx.run(&["--json", "node", "info", "--state-dir", "state"])
            .json()["license"]["state"],
        "active"
    );
    // The memory is private, as the revocation state.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fx.path("state/license-state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Nor by a license of another serial: an old active license the node had before, or one of a
/// serial it never had, issued before the frozen one, is refused (84, `license.rollback`, naming
/// the frozen license) at install and, put in place by hand, by every reader; a replacement the
/// CA issues after the freeze, under a new serial, installs and lifts it.
#[test]
fn a_frozen_license_is_not_lifted_by_another_serial() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    issue_license(&fx, "L2", now - 3000, false, "old-active.license");
    issue_license(&fx, "L1", now - 1000, true, "frozen.license");
    issue_license(&fx, "L3", now - 2000, false, "stale-other.license");
    expect(&install_license(&fx, "old-active.license"), 0, "");
    expect(&install_license(&fx, "frozen.license"), 0, "");
    let frozen = std::fs::read(fx.path("state/license.json")).unwrap();
    let run = |target: &str| {
        let mut args = vec!["--json", "run", target];
        args.extend_from_slice(&STORE_FLAGS);
        fx.run(&args)
    };
    expect(&run(&pkg), 100, "license_frozen");
    for file in ["old-active.license", "stale-other.license"] {
        let r = install_license(&fx, file);
        expect(&r, 84, "license.rollback");
        assert!(r.stdout.contains("license L1"), "{file}: {}", r.stdout);
        assert_eq!(
            std::fs::read(fx.path("state/license.json")).unwrap(),
            frozen
        );
        expect(&run(&pkg), 100, "license_frozen");
        // Copied in by hand: every reader refuses it.
        std::fs::copy(fx.path(file), fx.path("state/license.json")).unwrap();
        expect(&fx.verify(&pkg, &[]), 84, "license.rollback");
        expect(&run(&pkg), 84, "license.rollback");
        expect(&fx.store_install(&[&pkg], &[]), 84, "license.rollback");
        std::fs::write(fx.path("state/license.json"), &frozen).unwrap();
    }
    // The CA's replacement under a new serial, issued after the freeze, lifts it.
    issue_license(&fx, "L3", now - 500, false, "replacement.license");
    expect(&install_license(&fx, "replacement.license"), 0, "");
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    assert_eq!(info.json()["license"]["serial"], "L3");
    assert_eq!(info.json()["license"]["state"], "active");
    expect(&fx.verify(&pkg, &[]), 0, "");
    // And from then on the frozen L1 is the old one.
    expect(
        &install_license(&fx, "frozen.license"),
        84,
        "license.rollback",
    );
}

/// A node as an earlier build (per-serial memory, no license installed last recorded) left it:
/// `license-state.json` holding `seen` (serial → highest `issued_at`), `license` in place.
fn earlier_builds_node(fx: &Fixture, seen: &[(&str, u64)], license: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::set_permissions(fx.path("state"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let memory: std::collections::BTreeMap<&str, u64> = seen.iter().copied().collect();
    std::fs::write(
        fx.path("state/license-state.json"),
        serde_json::to_vec(&memory).unwrap(),
    )
    .unwrap();
    std::fs::copy(fx.path(license), fx.path("state/license.json")).unwrap();
}

/// A later build's `license-state.json` (`{"format": 2, …}`) is one this build cannot read —
/// 78 `state.newer_format` from every reader and from an install, naming the file and saying a
/// newer Stockade wrote it, with the hint not to remove it (it was 78 `node`, "fix
/// license-state.json"), the file left as it is — not a license `format` issued at 2 next to
/// the real serials. And since `format` with a small
/// number is kept for that, a license of serial `format` issued before 2001-09-09 (10⁹, which
/// no marker reaches) is refused at install (65 `license`), nothing written; one issued now is
/// installed (an_upgraded_node_keeps_a_license_of_a_marker_serial).
#[test]
fn a_later_builds_license_memory_is_not_read_as_serials() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    issue_license(&fx, "A", now - 2000, false, "a.license");
    earlier_builds_node(&fx, &[("A", now - 2000)], "a.license");
    let memory = fx.path("state/license-state.json");
    let later = format!(r#"{{"format": 2, "A": {}}}"#, now - 2000);
    std::fs::write(&memory, &later).unwrap();
    let refused = |r: &Run, what: &str| {
        assert_eq!(r.code, 78, "{what}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(r.kind(), "state.newer_format", "{what}: {}", r.stdout);
        assert!(
            r.stdout.contains("license-state.json")
                && r.stdout.contains("newer Stockade")
                && r.stdout.contains("Do not remove it"),
            "{what}: {}",
            r.stdout
        );
    };
    refused(
        &fx.run(&["--json", "node", "info", "--state-dir", "state"]),
        "info",
    );
    refused(&fx.verify(&pkg, &[]), "verify");
    refused(&install_license(&fx, "a.license"), "license install");
    assert_eq!(std::fs::read_to_string(&memory).unwrap(), later);
    // A license whose serial is the marker's name, issued at a marker's value, cannot be
    // remembered: refused first.
    std::fs::remove_file(&memory).unwrap();
    std::fs::remove_file(fx.path("state/license.json")).unwrap();
    issue_license(&fx, "format", 2, false, "format.license");
    let r = install_license(&fx, "format.license");
    expect(&r, 65, "license");
    assert!(r.stdout.contains("`format`"), "{}", r.stdout);
    assert!(!memory.exists() && !fx.path("state/license.json").exists());
}

/// The previous build (55f1293) installed a license of any serial, `format` too, and remembered
/// it as `{"format": T, "#installed-last:format:<license sha256>:<entries sha256>": T}`. After
/// the upgrade that node keeps working: `node info` and `verify` read the memory (they were 78
/// `node`, and so was the reinstall the hint proposed: review-103 L1), the CA's renewal of that
/// license installs, and the rollback rule still holds for the serial.
#[test]
fn an_upgraded_node_keeps_a_license_of_a_marker_serial() {
    use sha2::{Digest, Sha256};
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    issue_license(&fx, "format", now - 2000, false, "old.license");
    issue_license(&fx, "format", now - 1000, false, "installed.license");
    issue_license(&fx, "format", now - 500, false, "renewed.license");
    earlier_builds_node(&fx, &[], "installed.license");
    let t = now - 1000;
    let file = Sha256::digest(std::fs::read(fx.path("state/license.json")).unwrap());
    let entries = Sha256::digest(format!(r#"{{"format":{t}}}"#));
    let earlier = format!(
        r##"{{"format": {t}, "#installed-last:format:{}:{}": {t}}}"##,
        hex::encode(file),
        hex::encode(entries)
    );
    std::fs::write(fx.path("state/license-state.json"), &earlier).unwrap();
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    expect(&info, 0, "");
    assert_eq!(info.json()["license"]["serial"], "format");
    expect(&fx.verify(&pkg, &[]), 0, "");
    // The floor entry was read: the older license of the serial is a rollback.
    expect(&install_license(&fx, "old.license"), 84, "license.rollback");
    assert_eq!(
        std::fs::read_to_string(fx.path("state/license-state.json")).unwrap(),
        earlier
    );
    expect(&install_license(&fx, "renewed.license"), 0, "");
    assert_eq!(
        std::fs::read(fx.path("state/license.json")).unwrap(),
        std::fs::read(fx.path("renewed.license")).unwrap()
    );
    expect(
        &fx.run(&["--json", "node", "info", "--state-dir", "state"]),
        0,
        "",
    );
    expect(
        &install_license(&fx, "installed.license"),
        84,
        "license.rollback",
    );
    expect(&fx.verify(&pkg, &[]), 0, "");
}

/// An earlier build (per-serial rule only) let a node install license A renewed at T, then
/// license B of another serial issued before T (bought earlier, installed later): its
/// `license-state.json` is `{"A": T, "B": T-1000}` and `license.json` is B. After the upgrade the
/// node keeps working with B — every reader accepts it and B installs again, which records B as
/// the license installed last —, A's latest license still installs over it, and from then on B
/// is the older one.
#[test]
fn a_license_installed_after_a_newer_one_by_an_earlier_build_keeps_working() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    let (a_at, b_at) = (now - 2000, now - 3000);
    issue_license(&fx, "A", a_at, false, "a.license");
    issue_license(&fx, "B", b_at, false, "b.license");
    earlier_builds_node(&fx, &[("A", a_at), ("B", b_at)], "b.license");
    let info = || fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    expect(&fx.verify(&pkg, &[]), 0, "");
    let r = info();
    expect(&r, 0, "");
    assert_eq!(r.json()["license"]["serial"], "B");
    expect(&install_license(&fx, "b.license"), 0, "");
    expect(&fx.verify(&pkg, &[]), 0, "");
    expect(&fx.store_install(&[&pkg], &[]), 0, "");
    // The floor is one more integer entry: the earlier build still reads the file.
    let memory: std::collections::BTreeMap<String, u64> =
        serde_json::from_slice(&std::fs::read(fx.path("state/license-state.json")).unwrap())
            .unwrap();
    assert_eq!(memory.len(), 3, "{memory:?}");
    expect(&install_license(&fx, "a.license"), 0, "");
    assert_eq!(info().json()["license"]["serial"], "A");
    let r = install_license(&fx, "b.license");
    expect(&r, 84, "license.rollback");
    assert!(r.stdout.contains("license A"), "{}", r.stdout);
}

/// A node whose memory an earlier build wrote (no license installed last recorded) and whose
/// license in place is a frozen one: the first install after the upgrade must not put an older
/// active license of another serial over it. The license in place stands for the one installed
/// last until an install records one.
#[test]
fn after_an_upgrade_an_older_license_of_another_serial_does_not_lift_the_freeze() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let now = unix_now();
    let (l2_at, l1_at) = (now - 3000, now - 2000);
    issue_license(&fx, "L2", l2_at, false, "l2-active.license");
    issue_license(&fx, "L1", l1_at, true, "l1-frozen.license");
    earlier_builds_node(&fx, &[("L2", l2_at), ("L1", l1_at)], "l1-frozen.license");
    let r = install_license(&fx, "l2-active.license");
    expect(&r, 84, "license.rollback");
    assert!(r.stdout.contains("license L1"), "{}", r.stdout);
    expect(&fx.store_install(&[&pkg], &[]), 100, "store.license_frozen");
    // The frozen license itself installs again (and is then recorded as the last).
    expect(&install_license(&fx, "l1-frozen.license"), 0, "");
    expect(
        &install_license(&fx, "l2-active.license"),
        84,
        "license.rollback",
    );
}

/// A license of the same second as the license installed last is another license unless it is
/// that very file: of another serial, or an active one of the frozen one's serial, it is refused
/// at install and, copied in by hand, by every reader; the same file installs again.
#[test]
fn a_license_of_the_same_second_as_the_last_one_is_refused() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let at = unix_now() - 1000;
    issue_license(&fx, "L1", at, true, "frozen.license");
    issue_license(&fx, "L3", at, false, "other.license");
    issue_license(&fx, "L1", at, false, "active.license");
    expect(&install_license(&fx, "frozen.license"), 0, "");
    let frozen = std::fs::read(fx.path("state/license.json")).unwrap();
    for file in ["other.license", "active.license"] {
        let r = install_license(&fx, file);
        expect(&r, 84, "license.rollback");
        assert!(r.stdout.contains("license L1"), "{file}: {}", r.stdout);
        assert_eq!(
            std::fs::read(fx.path("state/license.json")).unwrap(),
            frozen
        );
        std::fs::copy(fx.path(file), fx.path("state/license.json")).unwrap();
        expect(&fx.verify(&pkg, &[]), 84, "license.rollback");
        expect(&fx.store_install(&[&pkg], &[]), 84, "license.rollback");
        std::fs::write(fx.path("state/license.json"), &frozen).unwrap();
    }
    expect(&install_license(&fx, "frozen.license"), 0, "");
    expect(&fx.verify(&pkg, &[]), 0, "");
    expect(&fx.store_install(&[&pkg], &[]), 100, "store.license_frozen");
}

/// A license issued later than now (beyond the 300 s clock-skew allowance) is not valid yet:
/// 83 at install, and nothing is written or remembered (its `issued_at` would otherwise refuse
/// every honest license of the serial issued before it).
#[test]
fn a_license_from_the_future_is_refused() {
    let fx = Fixture::new();
    let now = unix_now();
    issue_license(&fx, "L1", now + 3600, false, "future.license");
    let r = install_license(&fx, "future.license");
    expect(&r, 83, "license.not_yet_valid");
    assert!(r.stdout.contains("not valid before"), "{}", r.stdout);
    assert!(!fx.path("state/license.json").exists());
    assert!(!fx.path("state/license-state.json").exists());
    // An honest license issued now still installs; a CA clock a minute ahead is tolerated.
    issue_license(&fx, "L1", now, false, "now.license");
    expect(&install_license(&fx, "now.license"), 0, "");
    issue_license(&fx, "L1", now + 60, false, "skewed.license");
    expect(&install_license(&fx, "skewed.license"), 0, "");
}

/// A `--now` so late that `--days` ends past `u64::MAX` is a usage error (64) of `ca init
/// --parent`, `ca issue`, `ca revoke` and `ca license`, and nothing is written: the sum
/// overflowed — a panic (101) in a debug build, a validity window wrapped round to 1970 in a
/// release one. The last day that fits is still issued.
#[test]
fn a_validity_past_the_largest_time_is_a_usage_error() {
    let fx = Fixture::new();
    ok(fx.dir(), &["keygen", "-o", "late"]);
    let max = u64::MAX.to_string();
    let cases: [&[&str]; 4] = [
        &["ca", "init", "-o", "late-int", "--parent", "root"],
        &[
            "ca",
            "issue",
            "--ca",
            "int",
            "--pub",
            "late.pub",
            "--subject",
            "late",
            "-o",
            "late.cert",
        ],
        &["ca", "revoke", "--ca", "root", "-o", "late.json"],
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "L9",
            "--days",
            "1",
            "-o",
            "late.license",
        ],
    ];
    for case in cases {
        let mut args = vec!["--json"];
        args.extend_from_slice(case);
        args.extend(["--now", max.as_str()]);
        let r = fx.run(&args);
        assert_fail(&r, 64, "usage");
        assert!(r.stdout.contains("past the largest time"), "{}", r.stdout);
    }
    for out in ["late-int", "late.cert", "late.json", "late.license"] {
        assert!(!fx.path(out).exists(), "{out} written");
    }
    let last = (u64::MAX - 86_400).to_string();
    let r = fx.run(&[
        "--json",
        "ca",
        "license",
        "--ca",
        "root",
        "--serial",
        "L9",
        "--days",
        "1",
        "-o",
        "last.license",
        "--now",
        &last,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["expires_at"], u64::MAX, "{}", r.stdout);
}

/// A list larger than nodes read (1 MiB, `signed::MAX_DOC_BYTES`) is not issued: `ca revoke`
/// wrote it (41,000 serials: 1.7 MB; 42 bytes each), and every node given it failed every verification closed
/// (78 `trust_dir`, "more than the 1048576-byte limit"). Refused with its kind, nothing written
/// or recorded: the next list is still version 1, and verifies.
#[test]
fn a_revocation_list_larger_than_nodes_read_is_not_issued() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let serials: Vec<String> = (0..26_000u32).map(|i| format!("{i:032x}")).collect();
    let mut args = vec![
        "--json",
        "ca",
        "revoke",
        "--ca",
        "root",
        "-o",
        "trust/revocations.json",
    ];
    for s in &serials {
        args.extend(["--serial", s.as_str()]);
    }
    let before = std::fs::read_dir(fx.path("root")).unwrap().count();
    assert_fail(&fx.run(&args), 65, "revocation.too_large");
    assert!(!fx.path("trust/revocations.json").exists());
    assert_eq!(std::fs::read_dir(fx.path("root")).unwrap().count(), before);
    // Under the limit it is issued, as version 1, and nodes read it.
    let r = fx.run(&args[..args.len() - 2 * 6_000]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["version"], 1, "{}", r.stdout);
    let v = fx.verify(&pkg, &[]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["revocation_version"], 1);
}

/// A revocation list nodes cannot read is said as such, with what to do about it: larger than
/// the 1 MiB they read, or not a regular file. The hint was the one for a missing trust
/// directory ("create the trust directory and copy your root CA's ca.pub into it"), sending an
/// operator to recreate what was there (audit-127).
#[test]
fn an_unreadable_revocation_list_is_hinted_as_itself() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let list = fx.path("trust/revocations.json");
    std::fs::write(&list, vec![b' '; (1 << 20) + 1]).unwrap();
    let v = fx.verify(&pkg, &[]);
    assert_fail(&v, 78, "trust_dir");
    let hint = v.json()["error"]["hint"].as_str().unwrap().to_string();
    assert!(hint.contains("larger than nodes read"), "{hint}");
    std::fs::remove_file(&list).unwrap();
    std::fs::create_dir(&list).unwrap();
    let v = fx.verify(&pkg, &[]);
    assert_fail(&v, 78, "trust_dir");
    let hint = v.json()["error"]["hint"].as_str().unwrap().to_string();
    assert!(hint.contains("readable regular file"), "{hint}");
}

/// As [`an_unreadable_revocation_list_is_hinted_as_itself`], for the node commands that load
/// the trust directory: `node info --trust` gave no hint at all, `node license install` told
/// to "pin the root CA that signed the license" of every cause (audit-127 leftover). Each
/// cause now gets `verify`'s hint.
#[test]
fn the_node_commands_hint_an_unreadable_revocation_list_as_itself() {
    let fx = Fixture::new();
    issue_license(&fx, "ACME-1", 1_000, false, "a.license");
    let info = || {
        fx.run(&[
            "--json",
            "node",
            "info",
            "--state-dir",
            "state",
            "--trust",
            "trust",
        ])
    };
    let list = fx.path("trust/revocations.json");
    std::fs::write(&list, vec![b' '; (1 << 20) + 1]).unwrap();
    for r in [info(), install_license(&fx, "a.license")] {
        assert_fail(&r, 78, "trust_dir");
        let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
        assert!(hint.contains("larger than nodes read"), "{hint}");
    }
    std::fs::remove_file(&list).unwrap();
    std::fs::create_dir(&list).unwrap();
    for r in [info(), install_license(&fx, "a.license")] {
        assert_fail(&r, 78, "trust_dir");
        let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
        assert!(hint.contains("readable regular file"), "{hint}");
    }
    // Nothing was installed.
    assert!(!fx.path("state/license.json").exists());
}
