//! CLI tests for every verification step's failure, each asserting the distinct error kind and
//! the documented exit code, plus the trust modes and the happy path.

mod common;

use common::*;
use serde_json::json;
use stockade_policy::capability::{Capability, Scope};
use stockade_trust::cert::{CertBody, CertKind, Certificate};

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
    let pkg = fx.pack_hello();
    assert_fail(&fx.verify(&pkg, &[]), 83, "validity.expired");

    let future = (now + 10 * 86_400).to_string();
    ok(
        fx.dir(),
        &[
            "ca", "issue", "--ca", "int", "--pub", "dev.pub", "--now", &future, "-o", "dev.cert",
            "--force",
        ],
    );
    let pkg = fx.pack_hello();
    assert_fail(&fx.verify(&pkg, &[]), 83, "validity.not_yet_valid");
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
