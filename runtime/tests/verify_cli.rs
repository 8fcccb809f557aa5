//! CLI tests for every verification step's failure, each asserting the distinct error kind and
//! the documented exit code, plus the trust modes and the happy path.

mod common;

use common::*;
use serde_json::json;
use stockade_policy::capability::{Capability, Scope};
use stockade_runtime::package::container::{self, Container};
use stockade_trust::cert::{CertBody, CertKind, Certificate};
use stockade_trust::statement::Statement;

fn assert_fail(r: &Run, code: i32, kind: &str) {
    assert_eq!(
        r.code, code,
        "expected exit {code} ({kind}); stdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    assert_eq!(r.kind(), kind, "stdout: {}", r.stdout);
}

/// Write `t.stockade`: `pkg` with one byte of the payload's data flipped. The payload is the last
/// container entry, so its data follows its 512-byte header.
fn write_tampered_payload(fx: &Fixture, pkg: &str) {
    let mut bytes = std::fs::read(fx.path(pkg)).unwrap();
    let needle = b"payload.tar.gz";
    let hdr = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[hdr + 512 + 20] ^= 0xff;
    std::fs::write(fx.path("t.stockade"), &bytes).unwrap();
}

#[test]
fn hello_verifies_with_full_report() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let r = fx.verify(&pkg, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["signature_status"], "verified");
    assert_eq!(j["steps"].as_array().unwrap().len(), 8);
    assert_eq!(
        j["steps"][4]["status"], "skipped",
        "revocation not configured"
    );
    assert!(j["warnings"][0]
        .as_str()
        .unwrap()
        .contains("revocation: not configured"));
    assert_eq!(j["chain"][0]["subject"], "Test Developer");
    assert_eq!(j["granted_capabilities"], json!(["log", "register_hook"]));
    assert_eq!(j["file_count"], 2);
    // Text mode prints every step.
    let t = fx.run(&["verify", &pkg, "--trust", "trust", "--state-dir", "state"]);
    assert_eq!(t.code, 0);
    for s in [
        "1 size caps",
        "2 signature",
        "3 chain",
        "4 validity",
        "5 revocation",
        "6 scope",
        "7 file map",
        "8 extraction",
    ] {
        assert!(t.stdout.contains(s), "missing {s} in {}", t.stdout);
    }
}

/// Outputs that cannot be written. A result lost to a full disk is no success (74, said on
/// stderr), while a reader that closed the pipe (`| head`) had what it wanted (0); and an error
/// message that cannot be written still leaves the command's own code, never a panic.
#[test]
fn outputs_that_cannot_be_written() {
    use std::process::{Command, Stdio};
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let verify = |stdout: Stdio, stderr: Stdio, file: &str| {
        Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(["--json", "verify", file, "--trust", "trust"])
            .args(["--state-dir", "state"])
            .current_dir(fx.dir())
            .env_remove("STOCKADE_TRUST_DIR")
            .env_remove("STOCKADE_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .unwrap()
    };
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let out = verify(full(), Stdio::piped(), &pkg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("could not be written to stdout"),
        "{stderr}"
    );
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let out = verify(Stdio::from(w), Stdio::piped(), &pkg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(Stdio::null(), full(), "./missing.stockade");
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}

#[test]
fn inspect_shows_without_verifying() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let r = fx.run(&["--json", "inspect", &pkg]);
    assert_eq!(r.code, 0);
    let j = r.json();
    assert_eq!(j["verified"], false);
    assert_eq!(j["name"], "hello");
    assert_eq!(j["files"].as_array().unwrap().len(), 2);
    assert_eq!(j["chain"][1]["kind"], "intermediate");
    std::fs::write(fx.path("junk.stockade"), b"not a package").unwrap();
    assert_fail(
        &fx.run(&["--json", "inspect", "junk.stockade"]),
        65,
        "container",
    );
}

#[test]
fn packing_is_deterministic_in_payload() {
    let fx = Fixture::new();
    fx.pack_hello();
    let a = fx.run(&["--json", "inspect", "hello.stockade"]).json()["payload_sha256"].clone();
    fx.pack_hello();
    let b = fx.run(&["--json", "inspect", "hello.stockade"]).json()["payload_sha256"].clone();
    assert_eq!(a, b);
}

#[test]
fn tampered_statement_byte_fails_signature() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let mut bytes = std::fs::read(fx.path(&pkg)).unwrap();
    let needle = b"Stockade developers";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 1] = b'T';
    std::fs::write(fx.path("t.stockade"), &bytes).unwrap();
    assert_fail(&fx.verify("t.stockade", &[]), 81, "signature.invalid");
}

#[test]
fn tampered_payload_byte_fails_file_map() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    write_tampered_payload(&fx, &pkg);
    assert_fail(&fx.verify("t.stockade", &[]), 86, "file_map.payload_digest");
}

#[test]
fn added_file_fails_file_map() {
    let fx = Fixture::new();
    let (mut entries, map) = hello_parts();
    entries.push(RawEntry::file("extra.sh", 0o755, b"#!/bin/sh\n"));
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(&fx.verify("p.stockade", &[]), 86, "file_map.not_in_map");
}

#[test]
fn removed_file_fails_file_map() {
    let fx = Fixture::new();
    let (entries, mut map) = hello_parts();
    map.insert("lib/helper.sh".into(), entry(0o644, b"x"));
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(&fx.verify("p.stockade", &[]), 86, "file_map.missing");
}

#[test]
fn modified_file_content_fails_digest() {
    let fx = Fixture::new();
    let (mut entries, map) = hello_parts();
    entries[0].data = b"#!/bin/sh\nrm -rf /\n".to_vec();
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(
        &fx.verify("p.stockade", &[]),
        86,
        "file_map.digest_mismatch",
    );
}

#[test]
fn manifest_json_differs_from_signed_manifest() {
    let fx = Fixture::new();
    let (mut entries, mut map) = hello_parts();
    let mut other = hello_manifest();
    other["description"] = json!("something else");
    let bytes = serde_json::to_vec(&other).unwrap();
    entries[1].data = bytes.clone();
    map.insert("manifest.json".into(), entry(0o644, &bytes));
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(
        &fx.verify("p.stockade", &[]),
        86,
        "file_map.manifest_mismatch",
    );
}

/// A payload `manifest.json` other than the signed manifest is a file-map failure (86) and is
/// named as one, also when found while extracting and when a trust mode below strict let a
/// tampered statement's signature through with a warning.
#[test]
fn manifest_mismatch_is_named_as_the_file_map_step() {
    let fx = Fixture::new();
    ok(fx.dir(), &["keygen", "-o", "other"]);
    let (mut entries, mut map) = hello_parts();
    let mut other = hello_manifest();
    other["description"] = json!("something else");
    let bytes = serde_json::to_vec(&other).unwrap();
    entries[1].data = bytes.clone();
    map.insert("manifest.json".into(), entry(0o644, &bytes));
    fx.craft_with(
        "p.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "other.key",
        "dev.cert",
        "int/ca.cert",
    );
    for (i, extract) in [false, true].into_iter().enumerate() {
        let out = format!("out{i}");
        let mut extra = vec!["--trust-mode", "warn"];
        if extract {
            extra.extend(["--extract-to", &out]);
        }
        let r = fx.verify("p.stockade", &extra);
        assert_fail(&r, 86, "file_map.manifest_mismatch");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("file map") && !msg.contains("extraction"),
            "{msg}"
        );
        let mut args = vec![
            "verify",
            "p.stockade",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ];
        args.extend(&extra);
        let r = fx.run(&args);
        assert_eq!(r.code, 86, "{}", r.stderr);
        assert!(
            r.stderr.contains("file map check failed") && !r.stderr.contains("extraction refused"),
            "{}",
            r.stderr
        );
        assert!(!fx.path(&out).exists());
    }
}

#[test]
fn wrong_key_fails_signature() {
    let fx = Fixture::new();
    ok(fx.dir(), &["keygen", "-o", "other"]);
    let (entries, map) = hello_parts();
    fx.craft_with(
        "p.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "other.key",
        "dev.cert",
        "int/ca.cert",
    );
    assert_fail(&fx.verify("p.stockade", &[]), 81, "signature.invalid");
    // --pub pins the developer key.
    let pkg = fx.pack_hello();
    assert_fail(
        &fx.verify(&pkg, &["--pub", "other.pub"]),
        81,
        "signature.not_pinned",
    );
    assert_eq!(fx.verify(&pkg, &["--pub", "dev.pub"]).code, 0);
}

#[test]
fn untrusted_root_fails_chain() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    ok(fx.dir(), &["ca", "init", "-o", "root2"]);
    std::fs::copy(fx.path("root2/ca.pub"), fx.path("trust/root.pub")).unwrap();
    assert_fail(&fx.verify(&pkg, &[]), 82, "chain.unknown_root");
    // Several roots: any match is enough.
    std::fs::copy(fx.path("root/ca.pub"), fx.path("trust/good.pub")).unwrap();
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
}

#[test]
fn expired_and_not_yet_valid_certificates() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let past = (now - 10 * 86_400).to_string();
    let fx = Fixture::with_dev_scope(&["--days", "1"]);
    // Re-issue the developer certificate as if it were 10 days ago, valid for one day. The
    // intermediate must also cover that time, so rebuild it back-dated too.
    std::fs::remove_dir_all(fx.path("int")).unwrap();
    ok(
        fx.dir(),
        &[
            "ca", "init", "-o", "int", "--parent", "root", "--now", &past,
        ],
    );
    ok(
        fx.dir(),
        &[
            "ca", "issue", "--ca", "int", "--pub", "dev.pub", "--days", "1", "--now", &past, "-o",
            "dev.cert", "--force",
        ],
    );
    // The packer refuses an expired certificate (83, as every node would)...
    fx.hello_dir();
    let r = fx.pack_dir_with(&["--json"], "hello", "expired.stockade");
    assert_fail(&r, 83, "validity.expired");
    assert!(
        r.json()["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("stockade ca issue"),
        "{}",
        r.stdout
    );
    assert!(!fx.path("expired.stockade").exists());
    // ...and a package signed under one anyway is refused at verification.
    let (entries, map) = hello_parts();
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(&fx.verify("p.stockade", &[]), 83, "validity.expired");

    let future = (now + 10 * 86_400).to_string();
    ok(
        fx.dir(),
        &[
            "ca", "issue", "--ca", "int", "--pub", "dev.pub", "--now", &future, "-o", "dev.cert",
            "--force",
        ],
    );
    // A certificate not valid yet may be by the time the package is installed: packed, with a
    // warning on stderr; refused until then.
    let r = fx.pack_dir_with(&[], "hello", "future.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("not valid before"),
        "{}",
        r.stderr
    );
    assert_fail(
        &fx.verify("future.stockade", &[]),
        83,
        "validity.not_yet_valid",
    );
}

/// A developer certificate issued on a CA machine whose clock runs a little ahead of the node's
/// (`ca issue` stamps its own "now" as `not_before`) is valid at once: up to five minutes ahead
/// the start counts as reached (`trust::MAX_CLOCK_SKEW`, as for licenses). It was refused 83
/// `validity.not_yet_valid` for those seconds, so a package signed and deployed at once failed
/// on every node whose clock lagged the CA's. Further ahead it is still not valid yet.
#[test]
fn a_certificate_from_a_ca_clock_a_little_ahead_is_valid() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fx = Fixture::with_dev_scope(&[]);
    fx.hello_dir();
    for (ahead, code) in [(120u64, 0), (900, 83)] {
        let at = (now + ahead).to_string();
        ok(
            fx.dir(),
            &[
                "ca", "issue", "--ca", "int", "--pub", "dev.pub", "--now", &at, "-o", "dev.cert",
                "--force",
            ],
        );
        let out = format!("ahead-{ahead}.stockade");
        let r = fx.pack_dir_with(&[], "hello", &out);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = fx.verify(&out, &[]);
        if code == 0 {
            assert_eq!(r.code, 0, "{ahead} s ahead: {}{}", r.stdout, r.stderr);
        } else {
            assert_fail(&r, code, "validity.not_yet_valid");
        }
    }
}

#[test]
fn capability_beyond_ceiling() {
    let fx = Fixture::new();
    let mut m = hello_manifest();
    m["requested_capabilities"] = json!(["log", "register_hook", "kv_put"]);
    // The packer refuses...
    let dir = fx.hello_dir();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let r = fx.pack_dir_with(&["--json"], "hello", "x.stockade");
    assert_eq!(r.code, 65);
    assert_eq!(r.kind(), "capability");
    // ...and a package signed anyway is refused at verification.
    let (mut entries, mut map) = hello_parts();
    let bytes = serde_json::to_vec(&m).unwrap();
    entries[1].data = bytes.clone();
    map.insert("manifest.json".into(), entry(0o644, &bytes));
    fx.craft("p.stockade", &m, &map, raw_tar_gz(&entries));
    assert_fail(
        &fx.verify("p.stockade", &[]),
        85,
        "scope.capability_beyond_ceiling",
    );
}

#[test]
fn ca_refuses_to_widen() {
    let fx = Fixture::new();
    let r = fx.run(&[
        "--json",
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev.pub",
        "--scope",
        "any",
        "--capabilities",
        "log,kv_get",
        "-o",
        "w.cert",
    ]);
    assert_eq!(r.code, 65);
    assert_eq!(r.kind(), "bounds");
    let r = fx.run(&[
        "--json",
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev.pub",
        "--capabilities",
        "log",
        "-o",
        "n.cert",
    ]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["capabilities"], json!(["log"]));
    assert!(!fx.path("w.cert").exists());
}

#[test]
fn intermediate_exceeding_root_bounds() {
    let fx = Fixture::new();
    // Forge what `ca init --parent` refuses to make: an `any`-scoped intermediate granting kv_put,
    // properly signed by the root key.
    let root = fx.secret("root/ca.key");
    let int = fx.secret("int/ca.key");
    let pk = int.public_key();
    let mut caps: Vec<Capability> = Scope::Any.ceiling().into_iter().collect();
    caps.push(Capability::KvPut);
    caps.sort();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = CertBody {
        format: 1,
        kind: CertKind::Intermediate,
        serial: "ab".repeat(16),
        subject: "greedy".into(),
        subject_key: pk.to_base64(),
        key_id: pk.key_id.to_string(),
        scope: Scope::Any,
        capabilities: caps,
        not_before: now - 10,
        not_after: now + 86_400,
        issuer_key_id: root.public_key().key_id.to_string(),
    };
    std::fs::write(
        fx.path("greedy.cert"),
        Certificate::issue(&body, &root, "").unwrap(),
    )
    .unwrap();
    let (entries, map) = hello_parts();
    fx.craft_with(
        "p.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "dev.key",
        "dev.cert",
        "greedy.cert",
    );
    assert_fail(&fx.verify("p.stockade", &[]), 82, "chain.bounds");
}

#[test]
fn developer_exceeding_intermediate_bounds() {
    let fx = Fixture::new();
    // A license-scoped intermediate, and a developer cert it signs for another license.
    std::fs::remove_dir_all(fx.path("int")).unwrap();
    ok(
        fx.dir(),
        &[
            "ca",
            "init",
            "-o",
            "int",
            "--parent",
            "root",
            "--scope",
            "license:A",
        ],
    );
    let r = fx.run(&[
        "--json",
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev.pub",
        "--scope",
        "license:B",
        "-o",
        "dev.cert",
    ]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (65, "bounds"),
        "ca issue refuses"
    );
    let int = fx.secret("int/ca.key");
    let dev = fx.secret("dev.key").public_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = CertBody {
        format: 1,
        kind: CertKind::Developer,
        serial: "cd".repeat(16),
        subject: "outside".into(),
        subject_key: dev.to_base64(),
        key_id: dev.key_id.to_string(),
        scope: "license:B".parse().unwrap(),
        capabilities: vec![Capability::Log],
        not_before: now - 10,
        not_after: now + 86_400,
        issuer_key_id: int.public_key().key_id.to_string(),
    };
    std::fs::write(
        fx.path("dev.cert"),
        Certificate::issue(&body, &int, "").unwrap(),
    )
    .unwrap();
    let (entries, map) = hello_parts();
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    assert_fail(&fx.verify("p.stockade", &[]), 82, "chain.bounds");
}

#[test]
fn trust_modes_warn_and_disabled() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    ok(fx.dir(), &["ca", "init", "-o", "root2"]);
    std::fs::copy(fx.path("root2/ca.pub"), fx.path("trust/root.pub")).unwrap();
    let r = fx.verify(&pkg, &["--trust-mode", "warn"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = r.json();
    assert_eq!(j["signature_status"], "untrusted");
    assert_eq!(j["steps"][2]["status"], "warn");
    assert!(!j["warnings"].as_array().unwrap().is_empty());
    let t = fx.run(&[
        "verify",
        &pkg,
        "--trust",
        "trust",
        "--state-dir",
        "state",
        "--trust-mode",
        "warn",
    ]);
    assert!(
        t.stdout.contains("warning: step 3 (chain) failed"),
        "{}",
        t.stdout
    );

    let r = fx.run(&[
        "--json",
        "verify",
        &pkg,
        "--trust-mode",
        "disabled",
        "--trust",
        "/nonexistent",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["signature_status"], "skipped");

    // Host-protecting steps are never downgraded.
    let (mut entries, map) = hello_parts();
    entries.push(RawEntry::special("evil", tar::EntryType::Fifo, ""));
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    for mode in ["warn", "disabled"] {
        assert_fail(
            &fx.verify("p.stockade", &["--trust-mode", mode]),
            87,
            "unsafe_archive.fifo",
        );
    }
    assert_eq!(fx.verify(&pkg, &["--trust-mode", "bogus"]).code, 64);
}

#[test]
fn size_caps_and_container_layout() {
    let fx = Fixture::new();
    let (entries, map) = hello_parts();
    let payload = raw_tar_gz(&entries);
    let sha: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&payload)).into();
    let statement = stockade_trust::statement::Statement::to_canonical(
        &hello_manifest(),
        &map,
        &sha,
        payload.len() as u64,
    )
    .unwrap();
    let c = stockade_runtime::package::container::Container {
        statement,
        signature: vec![b'x'; 5000],
        developer_cert: std::fs::read(fx.path("dev.cert")).unwrap(),
        intermediate_cert: std::fs::read(fx.path("int/ca.cert")).unwrap(),
        payload,
    };
    std::fs::write(
        fx.path("big.stockade"),
        stockade_runtime::package::container::write(&c).unwrap(),
    )
    .unwrap();
    assert_fail(&fx.verify("big.stockade", &[]), 80, "size_cap.entry");
    std::fs::write(fx.path("junk.stockade"), vec![7u8; 4096]).unwrap();
    assert_fail(&fx.verify("junk.stockade", &[]), 65, "container");
    assert_eq!(fx.verify("./missing.stockade", &[]).code, 66);
    // Without a path separator it could be a plugin's name: not installed either (104).
    assert_fail(
        &fx.verify("missing.stockade", &[]),
        104,
        "store.not_installed",
    );
}

/// The container is exactly the six ustar entries and the end-of-archive marker: bytes hidden
/// after the marker (which `install` would store byte for byte), a file without the marker, a
/// GNU-format header, and the zero padding to a 10 KiB record other tar writers add are all
/// refused as container errors (65) — by `verify`, `inspect` and `install` alike, which then
/// stores nothing.
#[test]
fn only_the_exact_container_is_accepted() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let good = std::fs::read(fx.path(&pkg)).unwrap();
    assert_eq!(fx.verify(&pkg, &[]).code, 0);
    let mut hidden = good.clone();
    hidden.extend(std::iter::repeat_n(0u8, 1536));
    hidden.extend(b"HIDDEN".repeat(2500));
    let mut record = good.clone();
    record.resize(good.len().div_ceil(10240) * 10240 + 10240, 0);
    let no_marker = good[..good.len() - 1024].to_vec();
    // The first entry's header in GNU's format (magic `ustar  \0`), checksum made valid again.
    let mut gnu = good.clone();
    let mut h = tar::Header::from_byte_slice(&gnu[..512]).clone();
    h.as_mut_bytes()[257..265].copy_from_slice(b"ustar  \0");
    h.set_cksum();
    gnu[..512].copy_from_slice(h.as_bytes());
    std::fs::create_dir_all(fx.path("policy-root")).unwrap();
    for (name, bytes, needle) in [
        (
            "hidden.stockade",
            hidden,
            "follow the end-of-archive marker",
        ),
        (
            "record.stockade",
            record,
            "follow the end-of-archive marker",
        ),
        ("no-marker.stockade", no_marker, "end-of-archive marker"),
        ("gnu.stockade", gnu, "ustar header"),
    ] {
        std::fs::write(fx.path(name), &bytes).unwrap();
        let r = fx.verify(name, &[]);
        assert_fail(&r, 65, "container");
        assert!(r.stdout.contains(needle), "{name}: {}", r.stdout);
        assert_fail(&fx.run(&["--json", "inspect", name]), 65, "container");
        assert_fail(&fx.store_install(&[name], &[]), 65, "container");
    }
    let plugins = fx.path("state/store/plugins");
    assert_eq!(
        std::fs::read_dir(plugins).unwrap().count(),
        0,
        "nothing stored"
    );
}

#[test]
fn missing_trust_dir_is_a_config_error() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let r = fx.run(&[
        "--json",
        "verify",
        &pkg,
        "--trust",
        "nope",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 78);
    assert!(r.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("ca.pub"));
}

#[test]
fn developer_sanity_check_without_trust_dir_in_warn_mode() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let r = fx.run(&[
        "--json",
        "verify",
        &pkg,
        "--pub",
        "dev.pub",
        "--trust-mode",
        "warn",
        "--trust",
        "absent",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = r.json();
    assert_eq!(
        j["steps"][1]["status"], "pass",
        "signature checked against --pub"
    );
    assert_eq!(j["signature_status"], "untrusted");
    // Strict mode still requires the trust directory.
    assert_eq!(
        fx.run(&[
            "verify",
            &pkg,
            "--pub",
            "dev.pub",
            "--trust",
            "absent",
            "--state-dir",
            "state"
        ])
        .code,
        78
    );
}

#[test]
fn extract_to_moves_exactly_the_verified_tree_into_place() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let r = fx.verify(&pkg, &["--extract-to", "out"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = fx.path("out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["entrypoint", "manifest.json"]);
    // Readable and traversable by the sandbox's unprivileged uid.
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    assert_eq!(
        std::fs::read(out.join("entrypoint")).unwrap(),
        std::fs::read(fx.hello_dir().join("entrypoint")).unwrap()
    );

    // An existing destination is refused (73) and left as it was.
    let again = fx.verify(&pkg, &["--extract-to", "out"]);
    assert_fail(&again, 73, "extract_to_exists");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
}

/// A package extracted by a runtime under a file-size limit (`LimitFSIZE=`, `ulimit -f`) below
/// one of its files: the host's limit, not the package's fault — 74 `extract.io`, "File too
/// large", nothing left at the destination, and the same file extracts without the limit. The
/// kernel's SIGXFSZ ended the runtime mid-write; since it is ignored (review-169: a half-written
/// audit record), the write fails with EFBIG, which must not read as 87
/// `unsafe_archive.write` ("do not use this package").
#[test]
fn extraction_past_the_runtimes_file_size_limit_is_the_hosts_io_error() {
    if !require_tool("prlimit", "it sets the runtime's file-size limit") {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    // The example's entrypoint is 1748 bytes, its manifest less than 1024.
    let o = command_under(
        &[
            "prlimit".into(),
            "--fsize=1024:unlimited".into(),
            "--".into(),
        ],
        env!("CARGO_BIN_EXE_stockade"),
    )
    .args([
        "--json",
        "verify",
        &pkg,
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ])
    .args(["--extract-to", "out"])
    .current_dir(fx.dir())
    .output()
    .unwrap();
    let text = format!("{:?} {}", o.status, String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(74), "{text}");
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["error"]["kind"], "extract.io", "{e}");
    assert!(e.to_string().contains("File too large"), "{e}");
    assert!(!fx.path("out").exists());
    let r = fx.verify(&pkg, &["--extract-to", "out"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// An output that cannot be created is 73 (docs/exit-codes.md), also when the destination's
/// parent is missing or is not a directory: said before anything is read, nothing left behind.
#[test]
fn extract_to_under_a_missing_parent_is_cant_create() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    std::fs::write(fx.path("plain"), b"x").unwrap();
    for dest in ["/nonexistent-parent/sub", "missing/sub", "plain/sub"] {
        let r = fx.verify(&pkg, &["--extract-to", dest]);
        assert_fail(&r, 73, "extract_to");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("not an existing directory"), "{msg}");
    }
    assert!(!fx.path("missing").exists());
}

#[test]
fn extract_to_leaves_nothing_when_verification_fails() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    write_tampered_payload(&fx, &pkg);
    let before: Vec<_> = std::fs::read_dir(fx.dir()).unwrap().collect();
    let r = fx.verify("t.stockade", &["--extract-to", "out"]);
    assert_fail(&r, 86, "file_map.payload_digest");
    assert!(!fx.path("out").exists());
    // No staging directory left behind next to the destination either.
    let after: Vec<_> = std::fs::read_dir(fx.dir()).unwrap().collect();
    assert_eq!(before.len(), after.len());
}

/// The package's and the payload's digests are computed in turn for a small package and on two
/// threads from 16 MiB on (`verify.rs`, `PARALLEL_DIGESTS_MIN`): both ways report the digest of
/// the exact file and the signed payload digest.
#[test]
fn digests_are_right_whichever_way_they_are_computed() {
    use sha2::{Digest, Sha256};
    let fx = Fixture::new();
    fx.pack_hello();
    let dir = fx.hello_dir();
    // 17 MiB that do not compress (xorshift), so the package itself is past 16 MiB.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let filler: Vec<u8> = (0..17 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::create_dir_all(fx.path("big")).unwrap();
    for f in ["manifest.json", "entrypoint"] {
        std::fs::copy(dir.join(f), fx.path("big").join(f)).unwrap();
    }
    std::fs::write(fx.path("big/filler.bin"), &filler).unwrap();
    let r = fx.pack_dir("big", "big.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (pkg, large) in [("hello.stockade", false), ("big.stockade", true)] {
        let bytes = std::fs::read(fx.path(pkg)).unwrap();
        assert_eq!(
            bytes.len() >= 16 << 20,
            large,
            "{pkg}: {} bytes",
            bytes.len()
        );
        let r = fx.verify(pkg, &[]);
        assert_eq!(r.code, 0, "{pkg}: {}{}", r.stdout, r.stderr);
        let j = r.json();
        assert_eq!(
            j["package_sha256"],
            hex::encode(Sha256::digest(&bytes)),
            "{pkg}"
        );
        let signed = fx.run(&["--json", "inspect", pkg]).json()["payload_sha256"].clone();
        assert_eq!(j["payload_sha256"], signed, "{pkg}");
    }
}

/// A `--state-dir` that exists but is not a directory is refused by name (64), not reported as
/// whichever file under it was read first; an empty one too.
#[test]
fn a_state_dir_that_is_a_file_is_refused_by_name() {
    let fx = Fixture::new();
    std::fs::write(fx.path("not-a-dir"), "x").unwrap();
    let r = fx.run(&["node", "info", "--state-dir", "not-a-dir"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`not-a-dir` exists and is not a directory"),
        "{}",
        r.stderr
    );
    let r = fx.run(&[
        "verify",
        "x.stockade",
        "--trust",
        "trust",
        "--state-dir",
        "not-a-dir",
    ]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);
    // Nor is an empty one (it would put the state in the working directory).
    let r = fx.run(&["node", "info", "--state-dir", ""]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("cannot be empty"), "{}", r.stderr);
}

/// An installed license that cannot be parsed makes the state directory unusable: every command
/// that reads it says so with the same code (78), `node info` included (it said 65).
#[test]
fn a_malformed_installed_license_is_78_everywhere() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::write(fx.path("state/license.json"), "{not json").unwrap();
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    assert_eq!(info.code, 78, "{}", info.stdout);
    assert_eq!(info.kind(), "node");
    let r = fx.verify(&pkg, &[]);
    assert_eq!(r.code, 78, "{}", r.stdout);
}

/// Write `out`: `manifest` and `map` over `payload`, signed by the fixture's developer key with
/// `comment` as the trusted comment (set after signing when the signer refuses it, as a forger
/// would write it).
fn craft_commented(
    fx: &Fixture,
    out: &str,
    manifest: &serde_json::Value,
    map: &std::collections::BTreeMap<String, stockade_trust::statement::FileEntry>,
    payload: Vec<u8>,
    comment: &str,
) {
    use stockade_runtime::package::container::{self, Container};
    let sha: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&payload)).into();
    let statement = stockade_trust::statement::Statement::to_canonical(
        manifest,
        map,
        &sha,
        payload.len() as u64,
    )
    .unwrap();
    let key = fx.secret("dev.key");
    let sig = key.sign(&statement, comment).unwrap_or_else(|_| {
        let mut s = key.sign(&statement, "x").unwrap();
        s.trusted_comment = comment.into();
        s
    });
    let c = Container {
        statement,
        signature: sig.to_text().into_bytes(),
        developer_cert: std::fs::read(fx.path("dev.cert")).unwrap(),
        intermediate_cert: std::fs::read(fx.path("int/ca.cert")).unwrap(),
        payload,
    };
    std::fs::write(fx.path(out), container::write(&c).unwrap()).unwrap();
}

/// Nothing a package says reaches the terminal raw in text output: no escape sequence, carriage
/// return or bidi override from a trusted comment, a file name or the manifest (`inspect`,
/// `verify`, error messages); control characters in file names and trusted comments are refused
/// outright (pack 65, verify 65 / 81); `--json` keeps the strings as they are.
#[test]
fn text_output_never_prints_a_package_string_raw() {
    let raw = |r: &Run| {
        let all = format!("{}{}", r.stdout, r.stderr);
        all.contains('\u{1b}') || all.contains('\r') || all.contains('\u{202e}')
    };
    let fx = Fixture::new();
    let verify_text =
        |file: &str| fx.run(&["verify", file, "--trust", "trust", "--state-dir", "state"]);
    let (entries, map) = hello_parts();

    // A trusted comment with a bidi override (a character minisign may carry): escaped.
    craft_commented(
        &fx,
        "bidi.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "ok \u{202e}txt.exe",
    );
    for r in [
        fx.run(&["inspect", "bidi.stockade"]),
        verify_text("bidi.stockade"),
    ] {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(!raw(&r), "{:?}", r.stdout);
        assert!(
            r.stdout.contains("(trusted comment: ok \\u{202e}txt.exe)"),
            "{}",
            r.stdout
        );
    }
    let j = fx.verify("bidi.stockade", &[]).json();
    assert_eq!(j["trusted_comment"], "ok \u{202e}txt.exe");

    // An escape sequence or carriage return in the trusted comment: refused at parse.
    craft_commented(
        &fx,
        "esc.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
        "x\u{1b}[2J\rsigned by root",
    );
    let r = verify_text("esc.stockade");
    assert_eq!(r.code, 81, "{}", r.stderr);
    assert!(r.stderr.contains("control character"), "{}", r.stderr);
    let r = fx.run(&["inspect", "esc.stockade"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!raw(&r), "{:?}", r.stdout);

    // A manifest author with a bidi override: inspect escapes it (JSON leaves it as it is).
    let mut m = hello_manifest();
    m["author"] = json!("Mallory \u{202e}srepoleved edakcotS");
    let bytes = serde_json::to_vec(&m).unwrap();
    let (mut e2, mut map2) = hello_parts();
    e2[1].data = bytes.clone();
    map2.insert("manifest.json".into(), entry(0o644, &bytes));
    craft_commented(&fx, "author.stockade", &m, &map2, raw_tar_gz(&e2), "tc");
    let r = fx.run(&["inspect", "author.stockade"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!raw(&r), "{:?}", r.stdout);
    assert!(
        r.stdout.contains("Mallory \\u{202e}srepoleved"),
        "{}",
        r.stdout
    );
    let j = fx.run(&["--json", "inspect", "author.stockade"]).json();
    assert_eq!(j["manifest"]["author"], m["author"]);

    // A payload file named with an escape sequence and a carriage return: the packer refuses
    // it, and a package that lists it anyway is malformed (65) for verify and inspect alike.
    let evil = "x\u{1b}[31mRED\u{1b}[0m\rentrypoint";
    let dir = fx.hello_dir();
    std::fs::write(dir.join(evil), b"x").unwrap();
    let r = fx.pack_dir_with(&[], "hello", "evil.stockade");
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(!raw(&r), "{:?}", r.stderr);
    assert!(r.stderr.contains("x\\x1b[31mRED"), "{}", r.stderr);
    std::fs::remove_file(dir.join(evil)).unwrap();
    let (mut e3, mut map3) = hello_parts();
    e3.push(RawEntry::file(evil, 0o644, b"x"));
    map3.insert(evil.into(), entry(0o644, b"x"));
    craft_commented(
        &fx,
        "path.stockade",
        &hello_manifest(),
        &map3,
        raw_tar_gz(&e3),
        "tc",
    );
    for r in [
        verify_text("path.stockade"),
        fx.run(&["inspect", "path.stockade"]),
    ] {
        assert_eq!(r.code, 65, "{}", r.stderr);
        assert!(!raw(&r), "{:?}", r.stderr);
        assert!(r.stderr.contains("control character"), "{}", r.stderr);
    }
    assert_fail(&fx.verify("path.stockade", &[]), 65, "statement");
}

/// `path` (a signed document as the CLI writes it) with `key_value` put first in the body object
/// under `field`: serde_json keeps the last of a repeated key, so the signature still holds, and
/// a reader that keeps the first sees `key_value` instead.
fn prepend_in_body(fx: &Fixture, path: &str, field: &str, key_value: &str, out: &str) {
    let text = std::fs::read_to_string(fx.path(path)).unwrap();
    let open = format!("\"{field}\": {{");
    assert!(text.contains(&open), "{text}");
    let dup = text.replacen(&open, &format!("{open}\n    {key_value},"), 1);
    std::fs::write(fx.path(out), dup).unwrap();
}

/// A key named twice in one object of a signed document (certificate, revocation list, license)
/// is a malformed document, refused with that document's own code and kind — never read as the
/// last value while other tools read the first.
#[test]
fn a_key_named_twice_in_a_signed_document_is_malformed() {
    let fx = Fixture::new();
    let (entries, map) = hello_parts();
    let payload = raw_tar_gz(&entries);
    // Developer certificate: 81, as any malformed developer certificate.
    prepend_in_body(
        &fx,
        "dev.cert",
        "certificate",
        r#""subject": "Someone Else""#,
        "dev-dup.cert",
    );
    fx.craft_with(
        "dev-dup.stockade",
        &hello_manifest(),
        &map,
        payload.clone(),
        "dev.key",
        "dev-dup.cert",
        "int/ca.cert",
    );
    let r = fx.verify("dev-dup.stockade", &[]);
    assert_fail(&r, 81, "signature.developer_cert");
    assert!(r.stdout.contains("duplicate key `subject`"), "{}", r.stdout);
    // Intermediate certificate: 82.
    prepend_in_body(
        &fx,
        "int/ca.cert",
        "certificate",
        r#""capabilities": []"#,
        "int-dup.cert",
    );
    fx.craft_with(
        "int-dup.stockade",
        &hello_manifest(),
        &map,
        payload.clone(),
        "dev.key",
        "dev.cert",
        "int-dup.cert",
    );
    assert_fail(&fx.verify("int-dup.stockade", &[]), 82, "chain.certificate");
    // The package itself is fine.
    fx.craft("good.stockade", &hello_manifest(), &map, payload.clone());
    assert_eq!(fx.verify("good.stockade", &[]).code, 0);

    // Revocation list: 84 revocation.list_invalid; an empty list of serials in front of the
    // signed one would read as "nothing revoked" to a first-wins reader.
    let serial = fx.dev_serial();
    ok(
        fx.dir(),
        &[
            "ca",
            "revoke",
            "--ca",
            "root",
            "-o",
            "list.json",
            "--serial",
            &serial,
        ],
    );
    prepend_in_body(
        &fx,
        "list.json",
        "revocations",
        r#""revoked_serials": []"#,
        "trust/revocations.json",
    );
    let r = fx.verify("good.stockade", &[]);
    assert_fail(&r, 84, "revocation.list_invalid");
    assert!(r.stdout.contains("duplicate key"), "{}", r.stdout);
    // The repeated key may be the body field itself, in the outer object.
    let text = std::fs::read_to_string(fx.path("list.json")).unwrap();
    let outer = text.replacen("{\n", "{\n  \"revocations\": {},\n", 1);
    std::fs::write(fx.path("trust/revocations.json"), outer).unwrap();
    assert_fail(
        &fx.verify("good.stockade", &[]),
        84,
        "revocation.list_invalid",
    );
    std::fs::remove_file(fx.path("trust/revocations.json")).unwrap();

    // License: refused at install (65 `license`), and one already installed makes the state
    // directory unusable (78), as any malformed installed license.
    ok(
        fx.dir(),
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "ACME-1",
            "--frozen",
            "-o",
            "f.license",
        ],
    );
    prepend_in_body(
        &fx,
        "f.license",
        "license",
        r#""state": "active""#,
        "dup.license",
    );
    let r = fx.run(&[
        "--json",
        "node",
        "license",
        "install",
        "dup.license",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_fail(&r, 65, "license");
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::copy(fx.path("dup.license"), fx.path("state/license.json")).unwrap();
    assert_eq!(fx.verify("good.stockade", &[]).code, 78);
}

/// A package a newer Stockade made is refused as one — kind and hint say to upgrade, nothing is
/// installed — by `verify`, `inspect` and `install`: a statement of `format` 2 with a field this
/// build does not know (65 `statement.newer_format`; it was 65 `statement`, "rebuild it with
/// `stockade pack`"), and a signed manifest with such a field whose `min_runtime_version` is
/// above this runtime (65 `manifest`, "requires runtime 99.0.0 or newer"; it was "not valid JSON
/// of the expected shape", with the same hint to rebuild).
#[test]
fn a_package_of_a_newer_stockade_is_refused_as_such() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("policy-root")).unwrap();
    let (entries, map) = hello_parts();
    let payload = raw_tar_gz(&entries);
    let mut manifest = hello_manifest();
    manifest["min_runtime_version"] = "99.0.0".into();
    manifest["sandbox_profile"] = "strict".into();
    fx.craft("newer-runtime.stockade", &manifest, &map, payload.clone());
    // A statement of format 2, signed as it is.
    let sha: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&payload)).into();
    let statement =
        Statement::to_canonical(&hello_manifest(), &map, &sha, payload.len() as u64).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&statement).unwrap();
    v["format"] = 2.into();
    v["attestations"] = json!([]);
    let statement = stockade_trust::canonical::to_vec(&v).unwrap();
    let sig = fx.secret("dev.key").sign(&statement, "newer").unwrap();
    let c = Container {
        statement,
        signature: sig.to_text().into_bytes(),
        developer_cert: std::fs::read(fx.path("dev.cert")).unwrap(),
        intermediate_cert: std::fs::read(fx.path("int/ca.cert")).unwrap(),
        payload,
    };
    std::fs::write(
        fx.path("newer-format.stockade"),
        container::write(&c).unwrap(),
    )
    .unwrap();
    for (pkg, kind, says) in [
        (
            "newer-runtime.stockade",
            "manifest",
            "requires runtime 99.0.0 or newer",
        ),
        (
            "newer-format.stockade",
            "statement.newer_format",
            "statement format 2",
        ),
    ] {
        for r in [
            fx.verify(pkg, &[]),
            fx.run(&["--json", "inspect", pkg]),
            fx.store_install(&[pkg], &[]),
        ] {
            assert_fail(&r, 65, kind);
            let j = r.json();
            let all = format!("{} {}", j["error"]["message"], j["error"]["causes"]);
            assert!(all.contains(says), "{pkg}: {}", r.stdout);
            assert!(
                j["error"]["hint"]
                    .as_str()
                    .is_some_and(|h| h.contains("upgrade Stockade")),
                "{pkg}: {}",
                r.stdout
            );
        }
    }
    assert!(
        !fx.path("state/store/registry.json").exists(),
        "nothing installed"
    );
}

/// `verify PKG --trust trust` as `nobody` (65534) in the fixture's directory, with a state
/// directory of its own (so only the trust directory can be what it may not read).
fn verify_as_nobody(fx: &Fixture, pkg: &str) -> Run {
    std::fs::create_dir(fx.path("own-state")).unwrap();
    std::os::unix::fs::chown(fx.path("own-state"), Some(65534), Some(65534)).unwrap();
    stockade_as(
        65534,
        fx.dir(),
        &[
            "--json",
            "verify",
            pkg,
            "--trust",
            "trust",
            "--state-dir",
            "own-state",
        ],
    )
}

/// A trust directory this user may not read (root's, closed: what a user other than root meets
/// at /etc/stockade/trust made 0700) is refused with the cause, `Permission denied`, and a hint
/// that says so (make it readable, or pass --trust), kind and code as before (78 `trust_dir`).
/// Before audit-144 the hint was "create the trust directory", which exists.
#[test]
fn a_trust_directory_this_user_may_not_read_is_hinted_as_that() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fx.path("trust"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = verify_as_nobody(&fx, &pkg);
    assert_fail(&r, 78, "trust_dir");
    let e = &r.json()["error"];
    assert!(e["causes"].to_string().contains("Permission denied"), "{e}");
    let hint = e["hint"].as_str().unwrap();
    assert!(hint.contains("may not read the trust directory"), "{e}");
    assert!(!hint.contains("create the trust directory"), "{e}");
}

/// `run` by a user other than root whose state directory cannot be made (as the default,
/// /var/lib/stockade, root's installation's, cannot), with no revocation list in the trust
/// directory (revocation is optional): the first thing in the state directory is the plugin's
/// key/value store, refused 78 `kv_store` with the cause (`Permission denied`) and a hint that
/// says to pass --state-dir. Before review-148 the hint was null: audit-144 hinted the state
/// directory only where `verify`'s revocation memory is made, which this `run` never reaches.
/// Only a plugin that requests kv has such a store (audit-166): one that does not runs, and
/// makes nothing there either.
#[test]
fn run_with_a_state_directory_this_user_cannot_make_is_hinted_as_that() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let Some(pkg) = fx.pack_kv_hello() else {
        return;
    };
    let plain = fx.pack_hello();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's, 0755: another user can read below it but make nothing there.
    std::fs::create_dir(fx.path("roots")).unwrap();
    std::fs::create_dir(fx.path("policy-root")).unwrap();
    assert!(!fx.path("trust/revocations.json").exists());
    let r = stockade_as(
        65534,
        fx.dir(),
        &[
            "--json",
            "run",
            &pkg,
            "--trust",
            "trust",
            "--state-dir",
            "roots/state",
            "--policy-root",
            "policy-root",
        ],
    );
    assert_fail(&r, 78, "kv_store");
    let e = &r.json()["error"];
    assert!(e["causes"].to_string().contains("Permission denied"), "{e}");
    let hint = e["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("--state-dir DIR"), "{e}");
    assert!(!fx.path("roots/state").exists());
    let r = stockade_as(
        65534,
        fx.dir(),
        &[
            "--json",
            "run",
            &plain,
            "--trust",
            "trust",
            "--state-dir",
            "roots/state",
            "--policy-root",
            "policy-root",
        ],
    );
    // It runs (its agent, stdin, at its end: a clean stop once ready).
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(r#""state":"ready""#), "{}", r.stdout);
    assert!(!fx.path("roots/state").exists());
}

/// A root key in the trust directory this user may not read (root's, 0600, in a directory it
/// may list) is refused 78 `trust_dir` with the cause, `Permission denied`, and a hint that says
/// so (make it readable, or pass --trust). Before review-148 the hint was "replace the unusable
/// *.pub … with your root CA's ca.pub": a good key, only closed to this user; audit-144 fixed
/// the same hint for the directory, not for its keys.
#[test]
fn a_root_key_this_user_may_not_read_is_hinted_as_that() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fx.path("trust"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = fx.path("trust/root.pub");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = verify_as_nobody(&fx, &pkg);
    assert_fail(&r, 78, "trust_dir");
    let e = &r.json()["error"];
    assert!(e["causes"].to_string().contains("Permission denied"), "{e}");
    let hint = e["hint"].as_str().unwrap();
    assert!(hint.contains("may not read a root key"), "{e}");
    assert!(!hint.contains("replace the unusable"), "{e}");
}
