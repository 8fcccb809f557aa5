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

/// `stockade ARGS` in `cwd` in a new session (`setsid -w`): no controlling terminal, as under an
/// agent or CI, whatever terminal the test suite itself was started from; stdin empty.
fn no_tty(cwd: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        // Keys a test writes (keygen, ca init) at the cheapest scrypt cost: a debug build's knob.
        .env("STOCKADE_TEST_KDF", "cheapest")
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setsid stockade");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replace the unencrypted secret key at `p` with the same key encrypted with `password`, at
/// the cheapest scrypt cost (these tests are not about the cost).
fn encrypt_in_place(fx: &Fixture, p: &str, password: &str) {
    use stockade_trust::minisign::KdfLimits;
    let text = fx
        .secret(p)
        .to_encrypted_text(password.as_bytes(), [7; 32], KdfLimits::CHEAPEST)
        .unwrap();
    std::fs::write(fx.path(p), text).unwrap();
    // 0600 as minisign writes it: a wider key is refused before its format is looked at.
    std::fs::set_permissions(fx.path(p), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `grant issue` with the operator key `op.key`, to `g.grant`.
const GRANT: &[&str] = &[
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
];

const PACK: &[&str] = &[
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

#[test]
fn encrypted_keys_sign_with_the_password_file_and_fail_clearly_without() {
    let fx = Fixture::new();
    fx.hello_dir();
    encrypt_in_place(&fx, "dev.key", "dev pass");
    std::fs::write(fx.path("right"), "dev pass\n").unwrap();
    std::fs::write(fx.path("wrong"), "dev pas\n").unwrap();
    // No flag, no terminal: a usage error naming the flag; nothing written.
    let r = no_tty(fx.dir(), PACK);
    expect(&r, 64, "key.password_required");
    assert!(r.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("--password-file"));
    assert!(!fx.path("x.stockade").exists());
    // A wrong password: its own kind and code, not a malformed key.
    let mut with = PACK.to_vec();
    with.extend(["--password-file", "wrong"]);
    expect(&no_tty(fx.dir(), &with), 77, "key.wrong_password");
    assert!(!fx.path("x.stockade").exists());
    // A password file that is not there.
    with.pop();
    with.push("missing");
    expect(&no_tty(fx.dir(), &with), 66, "key.password_file");
    // The right one (a line end after it, as `echo` writes).
    with.pop();
    with.push("right");
    let r = no_tty(fx.dir(), &with);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(fx.verify("x.stockade", &["--pub", "dev.pub"]).code, 0);
    // A pipe, named by the caller: `--password-file /dev/stdin`.
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockade"));
    let mut piped = PACK.to_vec();
    piped.extend(["--force", "--password-file", "/dev/stdin"]);
    let mut child = c
        .args(&piped)
        .current_dir(fx.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"dev pass").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_tampered_encrypted_key_is_refused_as_a_wrong_password() {
    use base64::Engine;
    let fx = Fixture::new();
    fx.hello_dir();
    encrypt_in_place(&fx, "dev.key", "pw");
    std::fs::write(fx.path("pw"), "pw").unwrap();
    let text = std::fs::read_to_string(fx.path("dev.key")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(text.lines().nth(1).unwrap()).unwrap();
    // The last byte: the encrypted checksum.
    *raw.last_mut().unwrap() ^= 1;
    std::fs::write(
        fx.path("dev.key"),
        format!("untrusted comment: x\n{}\n", b64.encode(&raw)),
    )
    .unwrap();
    let mut with = PACK.to_vec();
    with.extend(["--password-file", "pw"]);
    expect(&no_tty(fx.dir(), &with), 77, "key.wrong_password");
    // Scrypt parameters no minisign writes (2^62 bytes): refused as a bad key, at once.
    let mut raw = b64.decode(text.lines().nth(1).unwrap()).unwrap();
    raw[38..54].copy_from_slice(&[0xff; 16]);
    std::fs::write(
        fx.path("dev.key"),
        format!("untrusted comment: x\n{}\n", b64.encode(&raw)),
    )
    .unwrap();
    let r = no_tty(fx.dir(), &with);
    expect(&r, 65, "key");
    assert!(r.json()["error"]["causes"][0]
        .as_str()
        .unwrap()
        .contains("scrypt parameters"));
}

/// `sh -c SCRIPT` in `cwd` on a terminal of its own: `script(1)` gives it a new pseudo-terminal
/// as its controlling terminal (in a new session, `setsid -w`, so never the suite's own). Once
/// `Password for` shows on that terminal, `keys` are typed into it, then nothing more. Returns
/// the exit code of `script -e` (the shell's) and everything the terminal showed.
fn on_a_terminal(cwd: &std::path::Path, sh_script: &str, keys: &[u8]) -> (i32, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let mut child = Command::new("setsid")
        .args(["-w", "script", "-qefc", sh_script, "/dev/null"])
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run script");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let shown = Arc::clone(&shown);
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !String::from_utf8_lossy(&shown.lock().unwrap()).contains("Password for") {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no prompt: {}",
                String::from_utf8_lossy(&shown.lock().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(keys).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let out = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    (status.code().unwrap_or(-1), out)
}

#[test]
fn the_password_is_asked_on_the_terminal_without_echo_and_ctrl_c_restores_it() {
    if !require_tool("script", "a pseudo-terminal for the password prompt") {
        return;
    }
    let fx = Fixture::new();
    fx.hello_dir();
    encrypt_in_place(&fx, "dev.key", "typed pw");
    let bin = env!("CARGO_BIN_EXE_stockade");
    let pack = format!("{bin} pack hello --key dev.key --devcert dev.cert --intcert int/ca.cert");
    // Typed at the prompt: accepted, and not echoed.
    let (code, shown) = on_a_terminal(fx.dir(), &format!("{pack} -o t.stockade"), b"typed pw\n");
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("typed pw"), "echoed: {shown}");
    assert_eq!(fx.verify("t.stockade", &["--pub", "dev.pub"]).code, 0);
    // Ctrl-C at the prompt: the command dies of SIGINT as it would without the prompt (130),
    // writes nothing, and the terminal echoes again for what runs next (the shell survives it
    // with a trap that is a handler, so that stockade keeps SIGINT's default disposition).
    let (code, shown) = on_a_terminal(
        fx.dir(),
        &format!(
            "trap 'echo trapped' INT; {pack} -o c.stockade; echo \"rc=$?\"; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*echo'"
        ),
        b"half\x03",
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("rc=130"), "{shown}");
    assert!(
        shown.lines().any(|l| l.trim() == "echo"),
        "echo not restored: {shown}"
    );
    assert!(!fx.path("c.stockade").exists());
}

#[test]
fn ca_and_grant_commands_read_encrypted_keys() {
    let fx = Fixture::new();
    encrypt_in_place(&fx, "root/ca.key", "root pw");
    encrypt_in_place(&fx, "int/ca.key", "int pw");
    std::fs::write(fx.path("root.pw"), "root pw\n").unwrap();
    std::fs::write(fx.path("int.pw"), "int pw\n").unwrap();
    let issue = [
        "--json", "ca", "issue", "--ca", "int", "--pub", "dev.pub", "-o", "d2.cert",
    ];
    expect(&no_tty(fx.dir(), &issue), 64, "key.password_required");
    let mut with = issue.to_vec();
    with.extend(["--password-file", "root.pw"]);
    expect(&no_tty(fx.dir(), &with), 77, "key.wrong_password");
    with.pop();
    with.push("int.pw");
    assert_eq!(no_tty(fx.dir(), &with).code, 0);
    for args in [
        &["ca", "init", "-o", "int2", "--parent", "root"][..],
        &[
            "ca",
            "revoke",
            "--ca",
            "root",
            "-o",
            "trust/revocations.json",
        ],
        &[
            "ca", "license", "--ca", "root", "--serial", "s1", "-o", "l.json",
        ],
    ] {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        expect(&no_tty(fx.dir(), &a), 64, "key.password_required");
        a.extend(["--password-file", "root.pw"]);
        let r = no_tty(fx.dir(), &a);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stdout);
    }
    // A CA whose key was never on disk unencrypted.
    std::fs::write(fx.path("new.pw"), "new root pw\n").unwrap();
    let r = no_tty(
        fx.dir(),
        &[
            "--json",
            "ca",
            "init",
            "-o",
            "root2",
            "--new-password-file",
            "new.pw",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        std::fs::read_to_string(fx.path("root2/ca.key"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("RWRTY0Iy"),
        "not encrypted (kdf Sc)"
    );
    let revoke2 = ["--json", "ca", "revoke", "--ca", "root2", "-o", "r2.json"];
    expect(&no_tty(fx.dir(), &revoke2), 64, "key.password_required");
    let mut with = revoke2.to_vec();
    with.extend(["--password-file", "new.pw"]);
    assert_eq!(no_tty(fx.dir(), &with).code, 0);
    // An operator key for grants.
    ok(fx.dir(), &["keygen", "-o", "op"]);
    encrypt_in_place(&fx, "op.key", "op pw");
    std::fs::write(fx.path("op.pw"), "op pw").unwrap();
    let grant: Vec<&str> = ["--json"]
        .into_iter()
        .chain(GRANT.iter().copied())
        .collect();
    expect(&no_tty(fx.dir(), &grant), 64, "key.password_required");
    let mut with = grant.to_vec();
    with.extend(["--password-file", "op.pw"]);
    assert_eq!(no_tty(fx.dir(), &with).code, 0);
    ok(
        fx.dir(),
        &[
            "grant",
            "verify",
            "g.grant",
            "--operator-key",
            "op.pub",
            "--plugin",
            "hello",
            "--plugin-version",
            "0.1.0",
            "--target",
            "network:loopback",
        ],
    );
}

/// Every key command judges its arguments, and refuses an output it will not replace, before
/// it reads its key: with the keys encrypted and no password to be had, each bad argument is
/// refused as itself — not `key.password_required` (on a terminal: a password typed, or a key
/// decrypted, for nothing). `grant issue --days 0` used to ask for the key's password first.
#[test]
fn argument_errors_come_before_the_key_is_read() {
    let fx = Fixture::new();
    fx.hello_dir();
    for k in ["root/ca.key", "int/ca.key", "dev.key"] {
        encrypt_in_place(&fx, k, "pw");
    }
    ok(fx.dir(), &["keygen", "-o", "op"]);
    encrypt_in_place(&fx, "op.key", "pw");
    std::fs::write(fx.path("taken"), "not to be replaced\n").unwrap();
    let with = |base: &[&'static str], extra: &[&'static str]| -> Vec<&'static str> {
        let mut a = vec!["--json"];
        a.extend_from_slice(base);
        a.extend_from_slice(extra);
        a
    };
    let grant: Vec<&str> = GRANT[..GRANT.len() - 2].to_vec();
    let init: &[&str] = &["ca", "init", "-o", "i2", "--parent", "root"];
    let issue: &[&str] = &["ca", "issue", "--ca", "int", "--pub", "dev.pub"];
    let revoke: &[&str] = &["ca", "revoke", "--ca", "root", "-o", "r"];
    let license: &[&str] = &["ca", "license", "--ca", "root", "--serial", "s1"];
    let pack: &[&str] = &["pack", "hello", "--key", "dev.key", "-o", "p"];
    // (command, its arguments, exit code, error kind)
    let table: [(&[&str], &[&str], i32, &str); 23] = [
        (&grant, &["-o", "g", "--days", "0"], 64, "usage"),
        (
            &grant,
            &["-o", "g", "--now", "18446744073709551615"],
            64,
            "usage",
        ),
        (
            &grant,
            &["-o", "g", "--scope", "nowhere"],
            64,
            "grant_invalid",
        ),
        (
            &grant,
            &["-o", "g", "--target", "capability:fly"],
            64,
            "grant_invalid",
        ),
        (&grant, &["-o", "taken"], 73, "output"),
        (init, &["--days", "0"], 64, "usage"),
        (init, &["--scope", "nowhere"], 64, "usage"),
        (
            &["ca", "init", "-o", "i2", "--parent", "int"],
            &[],
            64,
            "usage",
        ),
        (issue, &["-o", "c", "--days", "0"], 64, "usage"),
        (issue, &["-o", "c", "--scope", "x"], 64, "usage"),
        (issue, &["-o", "c", "--capabilities", "fly"], 64, "usage"),
        (issue, &["-o", "c", "--intermediate"], 64, "usage"),
        (issue, &["-o", "taken"], 73, "output"),
        (revoke, &["--serial", "nothex"], 64, "usage"),
        (revoke, &["--days", "0"], 64, "usage"),
        (
            &["ca", "revoke", "--ca", "int", "-o", "r"],
            &[],
            64,
            "usage",
        ),
        (
            &["ca", "license", "--ca", "root", "-o", "l"],
            &["--serial", "no spaces"],
            64,
            "usage",
        ),
        (license, &["-o", "l", "--hardware", "a/b"], 64, "usage"),
        (license, &["-o", "l", "--days", "0"], 64, "usage"),
        (license, &["-o", "taken"], 73, "output"),
        (&PACK[1..PACK.len() - 2], &["-o", "taken"], 73, "output"),
        (
            pack,
            &["--devcert", "nothing", "--intcert", "int/ca.cert"],
            66,
            "input",
        ),
        (
            pack,
            &["--devcert", "int/ca.cert", "--intcert", "root/ca.pub"],
            65,
            "certificate",
        ),
    ];
    let cases: Vec<(Vec<&str>, i32, &str)> = table
        .iter()
        .map(|(base, extra, code, kind)| (with(base, extra), *code, *kind))
        .collect();
    for (args, code, kind) in &cases {
        let r = no_tty(fx.dir(), args);
        assert_eq!(
            (r.code, r.kind().as_str()),
            (*code, *kind),
            "{args:?}: {}",
            r.stdout
        );
    }
    assert_eq!(
        std::fs::read_to_string(fx.path("taken")).unwrap(),
        "not to be replaced\n"
    );
    for made in ["g", "i2", "c", "r", "l", "p"] {
        assert!(!fx.path(made).exists(), "{made} written");
    }
    // And with its arguments right, each still gets as far as the key.
    expect(
        &no_tty(fx.dir(), &with(&grant, &["-o", "g"])),
        64,
        "key.password_required",
    );
}

/// A certificate's subject (`ca issue --subject`, an intermediate's `ca init --name`) that a
/// certificate cannot carry — empty, over 128 characters, a control character — was found by
/// the certificate's own check when it was signed, after the CA key was read: a password typed
/// (or, without a terminal, `key.password_required`) for a certificate that is then refused
/// (65 `certificate`). It is judged with the other arguments, before the key.
#[test]
fn a_bad_certificate_subject_is_refused_before_the_key_is_read() {
    let fx = Fixture::new();
    for k in ["root/ca.key", "int/ca.key"] {
        encrypt_in_place(&fx, k, "pw");
    }
    let long = "s".repeat(129);
    let issue = [
        "--json", "ca", "issue", "--ca", "int", "--pub", "dev.pub", "-o", "c",
    ];
    let init = ["--json", "ca", "init", "-o", "i2", "--parent", "root"];
    for args in [
        [&issue[..], &["--subject", ""]].concat(),
        [&issue[..], &["--subject", "bell\u{7}"]].concat(),
        [&issue[..], &["--subject", &long]].concat(),
        [&init[..], &["--name", "line\nbreak"]].concat(),
        [&init[..], &["--name", &long]].concat(),
    ] {
        let r = no_tty(fx.dir(), &args);
        assert_eq!(
            (r.code, r.kind().as_str()),
            (65, "certificate"),
            "{args:?}: {}",
            r.stdout
        );
    }
    assert!(!fx.path("c").exists() && !fx.path("i2").exists());
}

#[test]
fn keygen_encrypts_with_a_password_file_and_minisign_signs_with_it() {
    if !require_tool("minisign", "interop test with the stock minisign tool") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("pw"), "keygen pw\n").unwrap();
    // The cheapest scrypt cost (a debug build's test knob): minisign takes the cost from the
    // file, so it reads this key just as one at its own default cost.
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["--json", "keygen", "-o", "k", "--password-file", "pw"])
        .env("STOCKADE_TEST_KDF", "cheapest")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["encrypted"], true);
    let text = std::fs::read_to_string(d.path().join("k.key")).unwrap();
    assert!(matches!(
        stockade_trust::minisign::SecretKey::parse(&text),
        Err(stockade_trust::minisign::MinisignError::Encrypted)
    ));
    std::fs::write(d.path().join("data"), b"hello").unwrap();
    let sign = |password: &str| {
        let mut child = Command::new("setsid")
            .args([
                "-w",
                "minisign",
                "-S",
                "-s",
                "k.key",
                "-m",
                "data",
                "-t",
                "by minisign",
            ])
            .current_dir(d.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(
        !sign("not it").status.success(),
        "minisign took a wrong password"
    );
    let out = sign("keygen pw");
    assert!(
        out.status.success(),
        "minisign -S rejected our encrypted key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(minisign(d.path(), &["-V", "-p", "k.pub", "-m", "data"])
        .status
        .success());
    // Unreadable or empty password files write nothing.
    let r = stockade(
        d.path(),
        &["--json", "keygen", "-o", "k2", "--password-file", "nope"],
    );
    expect(&r, 66, "key.password_file");
    std::fs::write(d.path().join("empty"), "\n").unwrap();
    let r = stockade(
        d.path(),
        &["--json", "keygen", "-o", "k2", "--password-file", "empty"],
    );
    expect(&r, 64, "usage");
    assert!(!d.path().join("k2.key").exists() && !d.path().join("k2.pub").exists());
    // Without the flag: unencrypted, as before.
    ok(d.path(), &["keygen", "-o", "plain"]);
    stockade_trust::minisign::SecretKey::parse(
        &std::fs::read_to_string(d.path().join("plain.key")).unwrap(),
    )
    .unwrap();
}

/// The one CLI test at minisign's full default cost: a key `minisign -G` encrypted, as a
/// security team keeps a root CA key, used by `ca` with its password.
#[test]
fn a_key_minisign_encrypted_by_default_works_as_a_root_ca_key() {
    if !require_tool("minisign", "interop test with the stock minisign tool") {
        return;
    }
    let fx = Fixture::new();
    let mut child = Command::new("setsid")
        .args(["-w", "minisign", "-G", "-p", "ms.pub", "-s", "ms.key"])
        .current_dir(fx.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"offline root\noffline root\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root_takes_minisigns_key(&fx);
    std::fs::write(fx.path("pw"), "offline root\n").unwrap();
    let r = no_tty(
        fx.dir(),
        &[
            "--json",
            "ca",
            "revoke",
            "--ca",
            "root",
            "-o",
            "trust/revocations.json",
            "--password-file",
            "pw",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    // Signed by minisign's key.
    let pk = stockade_trust::minisign::PublicKey::parse(
        &std::fs::read_to_string(fx.path("ms.pub")).unwrap(),
    )
    .unwrap();
    let crl = stockade_trust::crl::RevocationList::parse(
        &std::fs::read(fx.path("trust/revocations.json")).unwrap(),
    )
    .unwrap();
    crl.verify(&[pk], unix_now(), None).unwrap();
}

/// The `root` CA directory of `fx` takes minisign's key pair `ms.key`/`ms.pub` as its own: the
/// key files replaced and `ca.json`'s key id made the new key's.
fn root_takes_minisigns_key(fx: &Fixture) {
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
    // A minisign key as a root: the CA key files replaced with minisign's, then re-issue.
    root_takes_minisigns_key(&fx);
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
    for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
        chmod("dev.key", mode);
        let r = fx.run(PACK);
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
    ok(fx.dir(), &PACK[1..]);
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
        .args(GRANT)
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

/// `ca init` killed between writing `ca.key` in its private build directory and renaming that
/// directory into place (SIGKILL; a release build's abort on a panic is the same) left
/// `.stockade-ca-*/ca.key` for good. The next `ca init` in the same directory removes such a
/// leftover — this user's real directory named as `ca init` names them, its maker gone — but
/// never one in use (locked by a live `ca init`, however old), a symlink, or a directory merely
/// named like one (an earlier build's `.stockade-ca-<random>` could be a CA someone named so);
/// and a CA cannot be made under such a name.
#[test]
fn a_killed_ca_init_leaves_no_key_behind() {
    use std::path::PathBuf;
    let d = tempfile::tempdir().unwrap();
    let leftovers = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".stockade-ca-"))
            .collect();
        v.sort();
        v
    };
    let age = |p: &PathBuf| {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::open(p).unwrap().set_modified(old).unwrap();
    };
    let point = "ca-init-key-written";
    let killed = stockade_stopped_at(d.path(), &["ca", "init", "-o", "a"], point);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(killed.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    killed.wait_with_output().unwrap();
    let dead = leftovers();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = d.path().join(&dead[0]);
    assert!(dead.join("ca.key").exists());
    age(&dead);
    // Another `ca init` held at the same point, its directory aged too: only its lock keeps it.
    let held = stockade_stopped_at(d.path(), &["ca", "init", "-o", "b"], point);
    let live = leftovers()
        .into_iter()
        .map(|n| d.path().join(n))
        .find(|p| *p != dead)
        .unwrap();
    age(&live);
    // An earlier build's name (no pid) or a CA named alike, aged; and a symlink to a directory.
    let mk = |name: &str| {
        let p = d.path().join(name);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("ca.key"), "k").unwrap();
        p
    };
    let earlier = mk(".stockade-ca-AbCdE1");
    age(&earlier);
    let named = mk(".stockade-ca-12-backup-root");
    age(&named);
    let target = mk("elsewhere");
    std::os::unix::fs::symlink(&target, d.path().join(".stockade-ca-1-link")).unwrap();
    ok(d.path(), &["ca", "init", "-o", "c"]);
    assert!(!dead.exists(), "the killed init's key is still there");
    assert!(earlier.join("ca.key").exists());
    assert!(named.join("ca.key").exists());
    assert!(
        live.join("ca.key").exists(),
        "a live init's directory was removed"
    );
    assert!(target.join("ca.key").exists());
    assert!(std::fs::symlink_metadata(d.path().join(".stockade-ca-1-link")).is_ok());
    let r = resume(held);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(d.path().join("b/ca.key").exists());
    assert!(!live.exists());
    let r = stockade(
        d.path(),
        &["--json", "ca", "init", "-o", ".stockade-ca-7-abc123"],
    );
    expect(&r, 64, "usage");
}

/// `ca init`'s sweep of its killed builds removed a directory named like one with
/// `remove_dir_all`, whatever it held: a directory a user (or another user who can rename
/// entries of a group-writable parent) put at such a name lost every file and subdirectory in
/// it, none of which `ca init` made. It removes only a directory that holds nothing but what a
/// `ca init` writes there (`ca.key`, `ca.pub`, `ca.json`, `ca.cert`, its write temporaries:
/// regular files of this user), file by file through the directory it checked and locked.
#[test]
fn a_ca_init_sweep_removes_only_what_ca_init_makes() {
    let d = tempfile::tempdir().unwrap();
    // A pid no process has: the sweep takes the maker for gone.
    let dead = (1_000_000..u32::MAX)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let mk = |random: &str, files: &[&str]| {
        let p = d.path().join(format!(".stockade-ca-{dead}-{random}"));
        std::fs::create_dir(&p).unwrap();
        for f in files {
            if let Some(sub) = f.strip_suffix('/') {
                std::fs::create_dir(p.join(sub)).unwrap();
                std::fs::write(p.join(sub).join("precious"), "mine").unwrap();
            } else {
                std::fs::write(p.join(f), "x").unwrap();
            }
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
        p
    };
    let leftover = mk("aaaaaa", &["ca.key", "ca.pub", ".stockade-tmp-Xy12Ab"]);
    let with_subdir = mk("bbbbbb", &["ca.key", "photos/"]);
    let with_other_file = mk("cccccc", &["ca.key", "thesis.tex"]);
    let with_symlink = mk("dddddd", &["ca.key"]);
    std::os::unix::fs::symlink("/etc/hostname", with_symlink.join("ca.pub")).unwrap();
    ok(d.path(), &["ca", "init", "-o", "ca"]);
    assert!(
        !leftover.exists(),
        "a killed init's directory is still there"
    );
    assert!(
        with_subdir.join("photos/precious").exists(),
        "a directory ca init did not make was removed"
    );
    assert!(with_subdir.join("ca.key").exists());
    assert!(with_other_file.join("thesis.tex").exists());
    assert!(with_other_file.join("ca.key").exists());
    assert!(std::fs::symlink_metadata(with_symlink.join("ca.pub")).is_ok());
    assert!(with_symlink.join("ca.key").exists());
}

/// audit-171: a report naming a path that is not UTF-8 is valid JSON, the path its lossy text.
/// serde's own form of such a path fails, which lost the whole report: `--json keygen -o` into
/// a directory named in Latin-1 wrote the keys, printed nothing and exited 0.
#[test]
fn a_json_report_names_a_path_not_utf8_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join(std::ffi::OsStr::from_bytes(b"odd-\xff"));
    std::fs::create_dir(&dir).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["--json", "keygen", "-o"])
        .arg(dir.join("me"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON report");
    let shown = dir.to_string_lossy();
    assert_eq!(j["secret_key"], format!("{shown}/me.key").as_str(), "{j}");
    assert_eq!(j["public_key"], format!("{shown}/me.pub").as_str(), "{j}");
    assert!(dir.join("me.key").is_file());
}
