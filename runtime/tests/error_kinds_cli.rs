//! The agent-facing error contract from outside (docs/exit-codes.md, "Every `error.kind`"): a
//! usage error under `--json` is the JSON error document like any other failure, and a kind
//! comes with one code — each refusal below once shared its kind with another code.
//! runtime/src/kinds.rs checks the whole table against the docs and the source.

mod common;

use common::*;
use serde_json::Value;

/// A failed `--json` run: its code, its kind, and the document's own `exit_code` agreeing.
fn refused(r: &Run, code: i32, kind: &str) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["ok"], false, "{}", r.stdout);
    assert_eq!(j["exit_code"], code, "{}", r.stdout);
    assert_eq!(j["error"]["kind"], kind, "{}", r.stdout);
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.stdout
    );
}

/// clap refused these lines before any command ran; with `--json` (anywhere before `--`, the
/// flag being global) the answer was clap's text on stderr and nothing on stdout.
#[test]
fn a_usage_error_under_json_is_the_json_error_document() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        &["--json", "bogus"][..],
        &["bogus", "--json"],
        &["--json"],
        &["verify", "--json", "--no-such-flag"],
        &["--json", "grant", "issue"],
        &["--json", "exec", "--no-such-flag", "--", "/bin/true"],
    ] {
        let r = stockade(d.path(), args);
        refused(&r, 64, "usage");
        let j = r.json();
        let message = j["error"]["message"].as_str().unwrap();
        assert!(!message.starts_with("error"), "{args:?}: {message}");
        assert!(
            j["error"]["hint"]
                .as_str()
                .is_some_and(|h| h.contains("--help")),
            "{args:?}: {}",
            r.stdout
        );
        assert_eq!(r.stderr, "", "{args:?}: nothing but the document");
    }
    // A command without its subcommand: clap's "error" is the command's help, whose first line
    // ("Facts about this node") was taken for the message.
    for args in [&["--json", "node"][..], &["--json", "ca"]] {
        let r = stockade(d.path(), args);
        refused(&r, 64, "usage");
        let j = r.json();
        assert_eq!(
            j["error"]["message"], "this command needs a subcommand (listed in the hint)",
            "{args:?}"
        );
        assert!(
            j["error"]["hint"].as_str().unwrap().contains("Commands:"),
            "{args:?}: {}",
            r.stdout
        );
    }
    // Without --json, or with it only among a program's own arguments: clap's text, as before.
    for args in [
        &["bogus"][..],
        &["exec", "--no-such-flag", "--", "/bin/true", "--json"],
    ] {
        let r = stockade(d.path(), args);
        assert_eq!(r.code, 64, "{args:?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(r.stderr.starts_with("error:"), "{args:?}: {}", r.stderr);
    }
    // Help and version are no errors.
    let r = stockade(d.path(), &["--json", "--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("stockade "), "{}", r.stdout);
}

/// A CA directory that cannot be read (66) or is corrupt (65) each has its own kind; `ca_dir`
/// is the CA directory that cannot record a revocation list's version (73), as documented.
#[test]
fn a_ca_directory_unreadable_or_corrupt_has_the_kind_of_its_code() {
    let fx = Fixture::new();
    let issue = |ca: &str| {
        fx.run(&[
            "--json", "ca", "issue", "--ca", ca, "--pub", "dev.pub", "-o", "x.cert",
        ])
    };
    refused(&issue("missing"), 66, "ca_dir_unreadable");
    std::fs::write(fx.path("int/ca.json"), b"not json").unwrap();
    refused(&issue("int"), 65, "ca_dir_corrupt");
    refused(
        &fx.run(&["--json", "ca", "revoke", "--ca", "missing", "-o", "l.json"]),
        66,
        "ca_dir_unreadable",
    );
}

/// A CA directory a newer Stockade wrote — `ca.json` or `revocations-issued.json` of a format above
/// 1, with a field this build does not know, as after a downgrade — is refused as such (78
/// `ca_dir_newer_format`, the hint not to restore a backup nor make a new CA), nothing signed or
/// written; it was 65 `ca_dir_corrupt` ("recreate the CA with `stockade ca init`"), and a
/// `ca.json` of format 2 without a new field was used as format 1. `revocations-issued.json` is
/// still written without a `format` (as earlier builds wrote it: absent is 1), and read so.
#[test]
fn a_ca_directory_of_a_newer_stockade_is_refused_as_such() {
    let fx = Fixture::new();
    let revoke = |out: &str| {
        fx.run(&[
            "--json", "ca", "revoke", "--ca", "root", "--key", "dev.pub", "-o", out,
        ])
    };
    let r = revoke("l1.json");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let issued = fx.path("root/revocations-issued.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&issued).unwrap()).unwrap();
    assert!(state.get("format").is_none(), "{state}");
    let snapshot = |dir: &str| {
        let mut out = Vec::new();
        for e in std::fs::read_dir(fx.path(dir)).unwrap().flatten() {
            out.push((e.file_name(), std::fs::read(e.path()).unwrap()));
        }
        out.sort();
        out
    };
    let check = |r: &Run, file: &str| {
        refused(r, 78, "ca_dir_newer_format");
        assert!(
            r.stdout.contains(file) && r.stdout.contains("newer Stockade"),
            "{}",
            r.stdout
        );
    };
    // revocations-issued.json of format 2.
    let mut newer = state.clone();
    newer["format"] = 2.into();
    newer["revoked_subjects"] = serde_json::json!(["mallory"]);
    std::fs::write(&issued, serde_json::to_vec(&newer).unwrap()).unwrap();
    let before = snapshot("root");
    check(&revoke("l2.json"), "revocations-issued.json");
    assert!(!fx.path("l2.json").exists());
    assert_eq!(snapshot("root"), before);
    // `"format": 1` is read as its absence, and the file written back without it: kept, it
    // made the file one that earlier builds (no `format` field) refuse as corrupt.
    let mut one = state.clone();
    one["format"] = 1.into();
    std::fs::write(&issued, serde_json::to_vec(&one).unwrap()).unwrap();
    let r = revoke("l3.json");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let again: Value = serde_json::from_slice(&std::fs::read(&issued).unwrap()).unwrap();
    assert!(again.get("format").is_none(), "{again}");
    std::fs::write(&issued, serde_json::to_vec(&state).unwrap()).unwrap();
    // ca.json of format 2, with and without a field this build does not know.
    let info_path = fx.path("int/ca.json");
    let info: Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    for extra in [None, Some(("max_path_length", Value::from(0)))] {
        let mut newer = info.clone();
        newer["format"] = 2.into();
        if let Some((k, v)) = &extra {
            newer[*k] = v.clone();
        }
        std::fs::write(&info_path, serde_json::to_vec(&newer).unwrap()).unwrap();
        let before = snapshot("int");
        let r = fx.run(&[
            "--json", "ca", "issue", "--ca", "int", "--pub", "dev.pub", "-o", "x.cert",
        ]);
        check(&r, "ca.json");
        assert!(!fx.path("x.cert").exists(), "{extra:?}");
        assert_eq!(snapshot("int"), before);
    }
    // A format no Stockade writes is damage.
    let mut zero = info.clone();
    zero["format"] = 0.into();
    std::fs::write(&info_path, serde_json::to_vec(&zero).unwrap()).unwrap();
    refused(
        &fx.run(&[
            "--json", "ca", "issue", "--ca", "int", "--pub", "dev.pub", "-o", "x.cert",
        ]),
        65,
        "ca_dir_corrupt",
    );
}

/// `pack` of a directory without manifest.json: an input that cannot be read (66 `input`, as
/// for its certificates), not `manifest`, which is the malformed manifest (65).
#[test]
fn pack_without_a_manifest_is_an_unreadable_input() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("empty")).unwrap();
    refused(
        &fx.pack_args(&["--json"], "empty", Some("x.stockade"), &[]),
        66,
        "input",
    );
}

/// `node license install` refuses a license at the verification step whose code it exits with
/// (82 issuer, 83 validity, 85 scope), each with a kind of its own: all were `license`, the kind
/// of a file that does not parse (65).
#[test]
fn a_refused_license_has_the_kind_of_its_step() {
    let fx = Fixture::new();
    let install = |file: &str| install_license(&fx, file);
    let issue = |ca: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["ca", "license", "--ca", ca, "--serial", "S-1", "-o", out];
        args.extend_from_slice(extra);
        ok(fx.dir(), &args);
    };
    ok(fx.dir(), &["ca", "init", "-o", "other-root"]);
    issue("other-root", "foreign.license", &[]);
    refused(&install("foreign.license"), 82, "license.issuer");
    issue(
        "root",
        "old.license",
        &["--now", "1000000000", "--days", "1"],
    );
    refused(&install("old.license"), 83, "license.expired");
    issue(
        "root",
        "elsewhere.license",
        &["--hardware", "not-this-node"],
    );
    refused(&install("elsewhere.license"), 85, "license.hardware");
    std::fs::write(fx.path("bad.license"), b"{}").unwrap();
    refused(&install("bad.license"), 65, "license");
}

/// An unreadable audit log is named: the message was the OS error alone ("No such file or
/// directory (os error 2)"), which says nothing of which file.
#[test]
fn an_unreadable_audit_log_is_named() {
    let d = tempfile::tempdir().unwrap();
    let r = stockade(d.path(), &["--json", "audit", "verify", "missing.log"]);
    refused(&r, 66, "audit_unreadable");
    let j = r.json();
    assert_eq!(
        j["error"]["message"], "cannot read missing.log",
        "{}",
        r.stdout
    );
    assert!(j["error"]["causes"][0].is_string(), "{}", r.stdout);
}

/// A command line that is wrong is a usage error (64) said before any file is read: not the
/// trust directory's 78 or the policy's 65 that a correct line would have met first (`serve`
/// without `--socket` reported the missing trust directory). Each line below names a policy
/// that does not parse and a trust directory that does not exist.
#[test]
fn a_usage_error_comes_before_any_file_is_read() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("bad.toml"), "version = 1\n[resources\n").unwrap();
    let files = ["--policy", "bad.toml", "--trust", "no-trust-dir"];
    let line = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        all.extend_from_slice(&files);
        stockade(d, &all)
    };
    refused(&line(&["serve"]), 64, "usage");
    let r = line(&["serve", "--socket", "a.sock", "--allow-capability", "fly"]);
    refused(&r, 64, "usage");
    let r = line(&["run", "p.spkg", "--allow-capability", "fly"]);
    refused(&r, 64, "usage");
    let r = line(&["run", "p.spkg", "--trust-mode", "bogus"]);
    refused(&r, 64, "usage");
    let r = stockade(
        d,
        &[
            "--json",
            "exec",
            "--policy",
            "bad.toml",
            "--env",
            "=x",
            "--",
            "/bin/true",
        ],
    );
    refused(&r, 64, "bad_env");
    let r = stockade(
        d,
        &[
            "--json",
            "verify",
            "p.spkg",
            "--trust",
            "no-trust-dir",
            "--trust-mode",
            "bogus",
        ],
    );
    refused(&r, 64, "usage");
    assert!(!d.join("a.sock").exists());
}
