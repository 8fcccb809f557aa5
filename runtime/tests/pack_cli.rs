//! `stockade pack` refuses at pack time what verification would refuse later.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

fn pack(fx: &Fixture) -> Run {
    fx.pack_dir_with(&["--json"], "hello", "out.stockade")
}

fn refused(fx: &Fixture, kind: &str, needle: &str) {
    let r = pack(fx);
    assert_eq!(r.code, 65, "{}", r.stdout);
    assert_eq!(r.kind(), kind);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(needle)
            || r.stdout.contains(needle),
        "{}",
        r.stdout
    );
    assert!(!fx.path("out.stockade").exists(), "no output on failure");
}

#[test]
fn symlink_leaving_the_tree() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    refused(&fx, "pack", "symlink");
}

#[test]
fn special_files_and_setuid() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    refused(&fx, "pack", "special file");
    std::fs::remove_file(&fifo).unwrap();
    std::fs::set_permissions(
        dir.join("entrypoint"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    refused(&fx, "pack", "setuid");
}

#[test]
fn invalid_manifest_and_non_executable_entrypoint() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let good = std::fs::read(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&good).unwrap();
    m["name"] = "Bad Name".into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    refused(&fx, "manifest", "name");
    // Larger than any manifest may be: the file is wrong (65), not missing (66).
    m["name"] = "x".into();
    m["description"] = "d".repeat(70 * 1024).into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    refused(&fx, "manifest", "-byte limit");
    std::fs::write(dir.join("manifest.json"), &good).unwrap();
    std::fs::set_permissions(
        dir.join("entrypoint"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    refused(&fx, "pack", "entrypoint");
}

/// A manifest whose `entrypoint` names no file of the package is told to fix the path — the
/// hint said to chmod +x a file that is not there; a non-executable one is still told to.
#[test]
fn a_wrong_entrypoint_path_is_told_to_fix_the_path() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let good = std::fs::read(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&good).unwrap();
    m["entrypoint"] = "bin/entrypoint".into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let r = pack(&fx);
    assert_eq!((r.code, r.kind()), (65, "pack".into()), "{}", r.stdout);
    let hint = r.json()["error"]["hint"].as_str().unwrap().to_string();
    assert!(hint.contains("fix it in manifest.json"), "{hint}");
    std::fs::write(dir.join("manifest.json"), &good).unwrap();
    std::fs::set_permissions(
        dir.join("entrypoint"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = pack(&fx);
    let hint = r.json()["error"]["hint"].as_str().unwrap().to_string();
    assert!(hint.contains("chmod +x"), "{hint}");
}

#[test]
fn key_must_match_the_certificate() {
    let fx = Fixture::new();
    fx.hello_dir();
    ok(fx.dir(), &["keygen", "-o", "other"]);
    let r = fx.run(&[
        "--json",
        "pack",
        "hello",
        "--key",
        "other.key",
        "--devcert",
        "dev.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "out.stockade",
    ]);
    assert_eq!((r.code, r.kind().as_str()), (65, "key"));
}

#[test]
fn in_tree_symlink_and_subdirectories_round_trip() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    std::fs::create_dir_all(dir.join("lib/deep")).unwrap();
    std::fs::write(dir.join("lib/deep/data.txt"), b"data").unwrap();
    std::os::unix::fs::symlink("deep/data.txt", dir.join("lib/link")).unwrap();
    let r = pack(&fx);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = fx.verify("out.stockade", &[]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["file_count"], 4);
    let i = fx.run(&["--json", "inspect", "out.stockade"]).json();
    let link = i["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "lib/link")
        .unwrap()
        .clone();
    assert_eq!(link["symlink"], "deep/data.txt");
}

#[test]
fn a_package_for_a_newer_runtime_is_packed_with_a_note_and_refused_where_too_old() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    // The seed's own manifest example: its bound under the seed's name.
    m.as_object_mut().unwrap().remove("min_runtime_version");
    m["min_agent_version"] = "1000.0.0".into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let r = fx.pack_dir("hello", "out.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1000.0.0 or newer"), "{}", r.stderr);
    // This runtime is older than that: verification refuses it.
    let v = fx.verify("out.stockade", &[]);
    assert_ne!(v.code, 0, "{}", v.stdout);
    assert!(v.stdout.contains("1000.0.0"), "{}", v.stdout);
    // A malformed bound is still refused at pack time.
    m["min_agent_version"] = "soon".into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_file(fx.path("out.stockade")).unwrap();
    refused(&fx, "manifest", "min_runtime_version");
}

/// `pack` and `ca issue` refuse an existing output (73, the file unchanged) unless `--force`,
/// as `keygen` does: a package or certificate already handed out is not replaced by accident.
#[test]
fn existing_outputs_are_refused_unless_forced() {
    let fx = Fixture::new();
    fx.hello_dir();
    let before = b"someone else's file".to_vec();
    std::fs::write(fx.path("out.stockade"), &before).unwrap();
    let r = pack(&fx);
    assert_eq!((r.code, r.kind().as_str()), (73, "output"), "{}", r.stdout);
    assert!(r.stdout.contains("--force"), "{}", r.stdout);
    assert_eq!(std::fs::read(fx.path("out.stockade")).unwrap(), before);
    // The default name (NAME-VERSION.stockade) too.
    std::fs::write(fx.path("hello-0.1.0.stockade"), &before).unwrap();
    let r = fx.pack_args(&["--json"], "hello", None, &[]);
    assert_eq!((r.code, r.kind().as_str()), (73, "output"), "{}", r.stdout);
    assert_eq!(
        std::fs::read(fx.path("hello-0.1.0.stockade")).unwrap(),
        before
    );
    // --force replaces it with a package that verifies.
    let r = fx.pack_args(&["--json"], "hello", Some("out.stockade"), &["--force"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(fx.verify("out.stockade", &[]).code, 0);

    let issue = |force: bool| {
        let mut args = vec![
            "--json", "ca", "issue", "--ca", "int", "--pub", "dev.pub", "-o", "dev.cert",
        ];
        if force {
            args.push("--force");
        }
        fx.run(&args)
    };
    let cert = std::fs::read(fx.path("dev.cert")).unwrap();
    let r = issue(false);
    assert_eq!((r.code, r.kind().as_str()), (73, "output"), "{}", r.stdout);
    assert_eq!(std::fs::read(fx.path("dev.cert")).unwrap(), cert);
    assert_eq!(issue(true).code, 0);
    assert_ne!(std::fs::read(fx.path("dev.cert")).unwrap(), cert);
    // Nothing but the outputs was written (no temporary file left beside them).
    assert!(!std::fs::read_dir(fx.dir()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".stockade-tmp")));
}

/// A minisign secret key in the plugin directory — the one `--key` names, kept beside the plugin,
/// or any other, encrypted or not, whatever its name — is refused (65 `pack.secret_key`), nothing
/// written: packed, it went to every node that installed the package, extracted 0644.
/// Other private keys are refused by content as minisign's are (a package is public: every
/// node that installs it gets every file): PEM, OpenSSH, PGP, whatever the file's name, a key
/// appended to a certificate too; a public key, a certificate or a mention of the marker is
/// packed. Files named like credentials (`.env`…) are packed with a warning, on stderr and in
/// the JSON `warnings`; their templates (`.env.example`) without one.
#[test]
fn private_keys_are_never_packed_and_credential_files_are_named() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let pem = |label: &str| {
        format!(
            "-----BEGIN {label}-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END {label}-----\n"
        )
    };
    for (name, text) in [
        ("id_rsa", pem("OPENSSH PRIVATE KEY")),
        (
            "tls/server.pem",
            format!("{}{}", pem("CERTIFICATE"), pem("PRIVATE KEY")),
        ),
        ("data.bin", pem("RSA PRIVATE KEY")),
        ("k.asc", pem("PGP PRIVATE KEY BLOCK")),
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        refused(&fx, "pack.secret_key", name);
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::write(dir.join("ca.pem"), pem("CERTIFICATE")).unwrap();
    std::fs::write(dir.join("op.pub.pem"), pem("PUBLIC KEY")).unwrap();
    std::fs::write(
        dir.join("README"),
        "never ship a -----BEGIN PRIVATE KEY----- file\n",
    )
    .unwrap();
    std::fs::write(dir.join(".env"), "TOKEN=hunter2\n").unwrap();
    std::fs::create_dir(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/.env.production"), "X=1\n").unwrap();
    std::fs::write(dir.join(".env.example"), "TOKEN=\n").unwrap();
    let r = pack(&fx);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let warnings = r.json()["warnings"].clone();
    let warnings: Vec<&str> = warnings
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with(".env "), "{warnings:?}");
    assert!(
        warnings[1].starts_with("conf/.env.production "),
        "{warnings:?}"
    );
    // In text mode, a note on stderr for each.
    let r = fx.pack_dir_replacing("hello", "out.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("stockade: warning: .env is named like")
            && r.stderr
                .contains("warning: conf/.env.production is named like")
            && !r.stderr.contains(".env.example"),
        "{}",
        r.stderr
    );
}

/// A private key the author means to ship (a vendored library's TLS test key) is packed when
/// `--allow-private-key PATH` names it — there was no way past the refusal, so such a plugin
/// could not be packed at all — with a warning that the key is now public; only that file:
/// another key beside it is still refused. An allowance that lets nothing through (no such
/// file, or no key in it) is a usage error, nothing written, and a minisign secret key is
/// never let through.
#[test]
fn a_private_key_named_by_allow_private_key_is_packed_with_a_warning() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
    std::fs::create_dir_all(dir.join("lib/tests")).unwrap();
    std::fs::write(dir.join("lib/tests/test.key"), key).unwrap();
    let allow = |extra: &[&str]| fx.pack_args(&["--json"], "hello", Some("out.stockade"), extra);
    let r = allow(&["--allow-private-key", "lib/tests/test.key"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let w = r.json()["warnings"].to_string();
    assert!(
        w.contains("lib/tests/test.key holds a private key (PEM private key)")
            && w.contains("is public"),
        "{w}"
    );
    std::fs::remove_file(fx.path("out.stockade")).unwrap();
    // Text mode: said on stderr.
    let r = fx.pack_args(
        &[],
        "hello",
        Some("out.stockade"),
        &["--allow-private-key", "lib/tests/test.key"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stockade: warning: lib/tests/test.key holds a private key"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(fx.path("out.stockade")).unwrap();
    // Another key beside it is not let through by that allowance.
    std::fs::write(dir.join("lib/other.key"), key).unwrap();
    let r = allow(&["--allow-private-key", "lib/tests/test.key"]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (65, "pack.secret_key"),
        "{}",
        r.stdout
    );
    std::fs::remove_file(dir.join("lib/other.key")).unwrap();
    // An allowance naming no key: usage, nothing written.
    for unused in ["lib/tests/gone.key", "manifest.json", "/lib/tests/test.key"] {
        let r = allow(&[
            "--allow-private-key",
            "lib/tests/test.key",
            "--allow-private-key",
            unused,
        ]);
        assert_eq!(
            (r.code, r.kind().as_str()),
            (64, "usage"),
            "{unused}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("--allow-private-key"), "{}", r.stdout);
        assert!(!fx.path("out.stockade").exists(), "{unused}");
    }
    // A minisign secret key is never let through.
    std::fs::copy(fx.path("dev.key"), dir.join("dev.key")).unwrap();
    let r = allow(&[
        "--allow-private-key",
        "lib/tests/test.key",
        "--allow-private-key",
        "dev.key",
    ]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (65, "pack.secret_key"),
        "{}",
        r.stdout
    );
    assert!(!fx.path("out.stockade").exists());
}

/// A plugin's documentation that shows where a key goes — its BEGIN and END lines around a
/// placeholder — was refused as a private key (65 `pack.secret_key`, with no way past it): any
/// line at all between the markers counted as a key's body. A body is base64 (with PEM's or
/// PGP's `Name: value` headers and blank lines); a placeholder is not, and is packed. A real
/// key, old-style encrypted PEM and PGP armour with their headers too, is still refused.
#[test]
fn a_document_showing_where_a_key_goes_is_packed() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    std::fs::write(
        dir.join("TLS.md"),
        "Put the node's key in /etc/hello/tls.key:\n\n    -----BEGIN PRIVATE KEY-----\n    \
         <your key, base64>\n    -----END PRIVATE KEY-----\n\nor, for RSA:\n\n```\n\
         -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n...\n-----END RSA PRIVATE KEY-----\n```\n",
    )
    .unwrap();
    let r = pack(&fx);
    assert_eq!(r.code, 0, "{}", r.stdout);
    std::fs::remove_file(fx.path("out.stockade")).unwrap();
    for (name, text) in [
        (
            "legacy.pem",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,\
             0123456789ABCDEF0123456789ABCDEF\n\nMIIEpAIBAAKCAQEA3Tz2\n-----END RSA PRIVATE KEY-----\n",
        ),
        (
            "k.asc",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBF0AAAAB\n=Ab1x\n\
             -----END PGP PRIVATE KEY BLOCK-----\n",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
        refused(&fx, "pack.secret_key", name);
        std::fs::remove_file(dir.join(name)).unwrap();
    }
}

/// A private key kept inside a JSON string — a cloud service account's key file
/// (`"private_key": "-----BEGIN PRIVATE KEY-----\nMIIE…\n-----END PRIVATE KEY-----\n"`), the
/// commonest private key to end up in a directory by mistake — was packed: its lines are
/// joined by `\n` escapes, and only real line ends were looked at. Escaped line ends count as
/// line ends, and a marker may open or close a quoted string; a format string with the markers
/// around `%s` is still no key.
#[test]
fn a_private_key_in_a_json_string_is_never_packed() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    std::fs::write(
        dir.join("service-account.json"),
        "{\n  \"type\": \"service_account\",\n  \"private_key_id\": \"0a1b\",\n  \
         \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n\
         BKcwggSjAgEAAoIBAQC7\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"a@b.c\"\n}\n",
    )
    .unwrap();
    refused(&fx, "pack.secret_key", "service-account.json");
    std::fs::write(
        dir.join("service-account.json"),
        "fmt = \"-----BEGIN PRIVATE KEY-----\\n%s\\n-----END PRIVATE KEY-----\\n\"\n",
    )
    .unwrap();
    let r = pack(&fx);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn a_secret_key_in_the_plugin_directory_is_never_packed() {
    use base64::Engine;
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    std::fs::copy(fx.path("dev.key"), dir.join("dev.key")).unwrap();
    let r = fx.run(&[
        "--json",
        "pack",
        "hello",
        "--key",
        "hello/dev.key",
        "--devcert",
        "dev.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "out.stockade",
    ]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (65, "pack.secret_key"),
        "{}",
        r.stdout
    );
    assert!(!fx.path("out.stockade").exists());
    std::fs::rename(dir.join("dev.key"), dir.join("notes.txt")).unwrap();
    refused(&fx, "pack.secret_key", "notes.txt");
    // An encrypted key (`minisign -G` with a password) is shipped no more.
    let text = std::fs::read_to_string(dir.join("notes.txt")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(text.lines().nth(1).unwrap()).unwrap();
    raw[2..4].copy_from_slice(b"Sc");
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    std::fs::create_dir(dir.join("conf")).unwrap();
    std::fs::write(
        dir.join("conf/k"),
        format!("untrusted comment: x\n{}\n", b64.encode(raw)),
    )
    .unwrap();
    refused(&fx, "pack.secret_key", "conf/k");
    // A public key (an operator's, to check something against) is fine.
    std::fs::remove_dir_all(dir.join("conf")).unwrap();
    std::fs::copy(fx.path("dev.pub"), dir.join("dev.pub")).unwrap();
    assert_eq!(pack(&fx).code, 0);
}

/// An entrypoint every launch would fail to run is warned about at `pack` (audit-131): a `#!`
/// line ending in CR LF, or a `#!` interpreter outside what the sandbox shows by default (a
/// virtualenv's, `/opt/…`). Warnings only: the package is made, and `--json` carries them.
/// `#!/bin/sh` and `#!/usr/bin/env python3` are not warned about. Pack said nothing; the first
/// launch on a node failed with 127 `interpreter_not_found`.
#[test]
fn an_entrypoint_no_launch_can_run_is_warned_about_at_pack() {
    let fx = Fixture::new();
    let dir = fx.hello_dir();
    let entry = dir.join("entrypoint");
    let good = std::fs::read(&entry).unwrap();
    let warnings = |r: &Run| -> Vec<String> {
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
        r.json()["warnings"]
            .as_array()
            .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let crlf = String::from_utf8(good.clone())
        .unwrap()
        .replace('\n', "\r\n");
    std::fs::write(&entry, crlf).unwrap();
    let r = pack(&fx);
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("entrypoint: its `#!` line ends in CR LF"),
        "{w:?}"
    );
    // Said on stderr too, without --json.
    let r = fx.pack_dir_replacing("hello", "out.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: entrypoint: its `#!` line ends in CR LF"),
        "{}",
        r.stderr
    );
    std::fs::write(&entry, "#!/opt/venv/bin/python3\nprint('hi')\n").unwrap();
    let w = warnings(&fx.pack_args(&["--json"], "hello", Some("out.stockade"), &["--force"]));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`#!` interpreter `/opt/venv/bin/python3`"),
        "{w:?}"
    );
    assert!(w[0].contains("[filesystem] read_only"), "{w:?}");
    for fine in ["#!/usr/bin/env python3\n", "#! /bin/sh -e\n"] {
        std::fs::write(&entry, fine).unwrap();
        let w = warnings(&fx.pack_args(&["--json"], "hello", Some("out.stockade"), &["--force"]));
        assert!(w.is_empty(), "{fine}: {w:?}");
    }
}
