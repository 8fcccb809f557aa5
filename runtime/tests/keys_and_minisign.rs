//! `stockade keygen` and interoperability with the stock `minisign` tool (Debian package
//! `minisign`), both ways: its keys work for our `ca`/`pack`, our signatures pass `minisign -V`,
//! our secret keys sign with `minisign -S`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn minisign(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run minisign")
}

#[test]
fn keygen_writes_private_key_exclusively() {
    let d = tempfile::tempdir().unwrap();
    let r = ok(d.path(), &["--json", "keygen", "-o", "me"]);
    let j = r.json();
    assert_eq!(j["key_id"].as_str().unwrap().len(), 16);
    let mode = std::fs::metadata(d.path().join("me.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(d.path().join("me.pub"))
        .unwrap()
        .starts_with("untrusted comment: minisign public key "));
    let before = std::fs::read(d.path().join("me.key")).unwrap();
    let r = stockade(d.path(), &["--json", "keygen", "-o", "me"]);
    assert_eq!(r.code, 73, "refuses to overwrite");
    assert_eq!(
        std::fs::read(d.path().join("me.key")).unwrap(),
        before,
        "unchanged"
    );
    ok(d.path(), &["keygen", "-o", "me", "--force"]);
    assert_ne!(std::fs::read(d.path().join("me.key")).unwrap(), before);
}

#[test]
fn encrypted_secret_keys_are_refused_with_a_hint() {
    use base64::Engine;
    let fx = Fixture::new();
    let text = std::fs::read_to_string(fx.path("dev.key")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(text.lines().nth(1).unwrap()).unwrap();
    raw[2..4].copy_from_slice(b"Sc");
    std::fs::write(
        fx.path("enc.key"),
        format!(
            "untrusted comment: minisign encrypted secret key\n{}\n",
            b64.encode(raw)
        ),
    )
    .unwrap();
    // 0600 as minisign writes it: a wider key is refused before its format is looked at.
    std::fs::set_permissions(fx.path("enc.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    fx.hello_dir();
    let r = fx.run(&[
        "--json",
        "pack",
        "hello",
        "--key",
        "enc.key",
        "--devcert",
        "dev.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "x.stockade",
    ]);
    assert_eq!(r.code, 65);
    assert!(r.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("minisign -G -W"));
}

#[test]
fn minisign_keys_work_for_ca_and_pack() {
    if !require_tool("minisign", "interop test with the stock minisign tool") {
        return;
    }
    let fx = Fixture::new();
    let out = minisign(fx.dir(), &["-G", "-W", "-p", "ms.pub", "-s", "ms.key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A minisign key as developer key.
    ok(
        fx.dir(),
        &[
            "ca", "issue", "--ca", "int", "--pub", "ms.pub", "-o", "ms.cert",
        ],
    );
    fx.hello_dir();
    ok(
        fx.dir(),
        &[
            "pack",
            "hello",
            "--key",
            "ms.key",
            "--devcert",
            "ms.cert",
            "--intcert",
            "int/ca.cert",
            "-o",
            "ms.stockade",
        ],
    );
    let r = fx.verify("ms.stockade", &["--pub", "ms.pub"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // A minisign key as a root: replace the CA key files with minisign's and re-issue.
    std::fs::remove_file(fx.path("root/ca.key")).unwrap();
    std::fs::copy(fx.path("ms.key"), fx.path("root/ca.key")).unwrap();
    std::fs::copy(fx.path("ms.pub"), fx.path("root/ca.pub")).unwrap();
    // minisign prints key ids without zero padding; take ours (16 digits) from the parsed key.
    let id = stockade_trust::minisign::PublicKey::parse(
        &std::fs::read_to_string(fx.path("ms.pub")).unwrap(),
    )
    .unwrap()
    .key_id
    .to_string();
    let info = std::fs::read_to_string(fx.path("root/ca.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&info).unwrap();
    v["key_id"] = serde_json::Value::String(id);
    std::fs::write(fx.path("root/ca.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    ok(fx.dir(), &["ca", "init", "-o", "int2", "--parent", "root"]);
    ok(
        fx.dir(),
        &[
            "ca",
            "issue",
            "--ca",
            "int2",
            "--pub",
            "dev.pub",
            "-o",
            "dev2.cert",
        ],
    );
    ok(
        fx.dir(),
        &[
            "pack",
            "hello",
            "--key",
            "dev.key",
            "--devcert",
            "dev2.cert",
            "--intcert",
            "int2/ca.cert",
            "-o",
            "r.stockade",
        ],
    );
    std::fs::copy(fx.path("ms.pub"), fx.path("trust/root.pub")).unwrap();
    assert_eq!(fx.verify("r.stockade", &[]).code, 0);
}

#[test]
fn our_signatures_pass_minisign_and_our_keys_sign_with_minisign() {
    if !require_tool("minisign", "interop test with the stock minisign tool") {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    // The container is plain ustar: extract the statement and its detached signature.
    let x = fx.path("x");
    std::fs::create_dir(&x).unwrap();
    let mut ar = tar::Archive::new(std::fs::File::open(fx.path(&pkg)).unwrap());
    ar.unpack(&x).unwrap(); // our own freshly made package, in a test tempdir
    let out = minisign(
        &x,
        &[
            "-V",
            "-p",
            "../dev.pub",
            "-m",
            "statement.json",
            "-x",
            "statement.json.minisig",
        ],
    );
    assert!(
        out.status.success(),
        "minisign -V rejected our signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stockade package hello"));
    // A tampered statement fails minisign too.
    std::fs::write(x.join("statement.json"), b"{}").unwrap();
    assert!(!minisign(
        &x,
        &[
            "-V",
            "-p",
            "../dev.pub",
            "-m",
            "statement.json",
            "-x",
            "statement.json.minisig"
        ]
    )
    .status
    .success());

    // minisign signs with our secret key, and verifies with our public key.
    std::fs::write(fx.path("data"), b"hello").unwrap();
    let out = minisign(
        fx.dir(),
        &[
            "-S",
            "-s",
            "dev.key",
            "-m",
            "data",
            "-t",
            "signed by minisign",
        ],
    );
    assert!(
        out.status.success(),
        "minisign -S rejected our key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = minisign(fx.dir(), &["-V", "-p", "dev.pub", "-m", "data"]);
    assert!(out.status.success());
    // And our verifier accepts minisign's signature.
    let pk = stockade_trust::minisign::PublicKey::parse(
        &std::fs::read_to_string(fx.path("dev.pub")).unwrap(),
    )
    .unwrap();
    let sig = stockade_trust::minisign::Signature::parse(
        &std::fs::read_to_string(fx.path("data.minisig")).unwrap(),
    )
    .unwrap();
    pk.verify(b"hello", &sig).unwrap();
    assert_eq!(sig.trusted_comment, "signed by minisign");
}

/// A secret key its group or others may read or write is refused by every command that signs
/// with one (`pack`, `grant issue`, `ca` through its `ca.key`), before it is parsed: 77
/// `key.exposed`, nothing written; narrowed back to 0600 it signs again.
#[test]
fn secret_keys_others_may_read_or_write_are_refused() {
    let fx = Fixture::new();
    fx.hello_dir();
    let chmod = |p: &str, mode: u32| {
        std::fs::set_permissions(fx.path(p), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let pack = [
        "--json",
        "pack",
        "hello",
        "--key",
        "dev.key",
        "--devcert",
        "dev.cert",
        "--intcert",
        "int/ca.cert",
        "-o",
        "x.stockade",
    ];
    for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
        chmod("dev.key", mode);
        let r = fx.run(&pack);
        assert_eq!(r.code, 77, "mode {mode:o}: {}", r.stdout);
        assert_eq!(r.kind(), "key.exposed");
        assert!(
            r.json()["error"]["hint"]
                .as_str()
                .unwrap()
                .contains("chmod 600"),
            "{}",
            r.stdout
        );
        assert!(!fx.path("x.stockade").exists(), "nothing written");
    }
    chmod("root/ca.key", 0o644);
    let r = fx.run(&["--json", "ca", "init", "-o", "int2", "--parent", "root"]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (77, "key.exposed"),
        "{}",
        r.stdout
    );
    assert!(!fx.path("int2").exists());
    let r = fx.run(&[
        "--json",
        "grant",
        "issue",
        "--key",
        "dev.key",
        "--plugin",
        "hello",
        "--plugin-version",
        "0.1.0",
        "--target",
        "network:loopback",
        "-o",
        "g.grant",
    ]);
    assert_eq!(
        (r.code, r.kind().as_str()),
        (77, "key.exposed"),
        "{}",
        r.stdout
    );
    assert!(!fx.path("g.grant").exists());
    chmod("dev.key", 0o600);
    chmod("root/ca.key", 0o400);
    ok(fx.dir(), &pack[1..]);
    ok(fx.dir(), &["ca", "init", "-o", "int2", "--parent", "root"]);
}

/// A command holding a secret key is undumpable: no core file (a release build aborts on a
/// panic) and no `ptrace` or `/proc/<pid>/mem` by its user's other processes. Seen from outside
/// while `grant issue`, run as a non-root user, holds its key: the kernel gives an undumpable
/// process's `/proc/<pid>` to root, and its core limit is 0.
#[test]
fn a_command_holding_a_secret_key_is_undumpable() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let d = tempfile::tempdir().unwrap();
    nix::unistd::chown(d.path(), Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let r = stockade_as(NOBODY, d.path(), &["keygen", "-o", "op"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args([
            "grant",
            "issue",
            "--key",
            "op.key",
            "--plugin",
            "hello",
            "--plugin-version",
            "0.1.0",
            "--target",
            "network:loopback",
            "-o",
            "g.grant",
        ])
        .current_dir(d.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .env("STOCKADE_TEST_STOP_AT", "secret-key-held")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(child.id(), "secret-key-held");
    let proc_dir = format!("/proc/{}", child.id());
    let owner = std::fs::metadata(format!("{proc_dir}/status"))
        .unwrap()
        .uid();
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap();
    let r = resume(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(owner, 0, "an undumpable process's /proc files are root's");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
}
