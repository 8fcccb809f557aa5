//! Untrusted strings in the human text output of `ca`, `grant`, `node`, `audit verify` and the
//! policy tools (`policy explain|lint|diff`) are escaped where they are laid out
//! (`output::term`): a newline inside one cannot start a line that reads as the tool's own (a
//! forged `signature: ok`), an escape sequence cannot clear the screen, a bidi override cannot
//! reorder what follows. `--json` keeps the strings as they are (serde escapes them).
//!
//! What each command can be handed: a CA's name (`ca.json`), a grant's writable path, the
//! policy's paths (which grants then name), file and directory names. Certificate subjects with
//! control characters and license serials or hardware ids outside `[A-Za-z0-9._-]` are refused
//! when issued and when parsed, so they never reach the text output (checked below too).

mod common;
use common::{ok, stockade, Fixture};
use std::path::Path;

/// A newline that would start a forged line, an escape sequence (clear the screen) and a right-
/// to-left override.
const EVIL: &str = "Evil\nsignature: ok\u{1b}[2J\u{202e}X";
/// [`EVIL`] as `output::term` shows it.
const SHOWN: &str = "Evil\\x0asignature: ok\\x1b[2J\\u{202e}X";

/// `text` shows [`EVIL`] escaped, and nothing of it raw: no ESC, no bidi override, no line
/// started by its newline.
fn assert_escaped(text: &str) {
    assert!(!text.contains('\u{1b}'), "a raw ESC in {text:?}");
    assert!(
        !text.contains('\u{202e}'),
        "a raw bidi override in {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("signature: ok")),
        "a line started inside the value: {text:?}"
    );
    assert!(text.contains(SHOWN), "{text:?}");
}

#[test]
fn ca_text_output_escapes_names_and_paths() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // The CA's name (kept in ca.json) and its directory's name.
    let r = ok(d, &["ca", "init", "-o", "root", "--name", EVIL]);
    assert_escaped(&r.stdout);
    let r = ok(d, &["ca", "init", "-o", EVIL]);
    assert_escaped(&r.stdout);
    let j = ok(d, &["--json", "ca", "init", "-o", "root2", "--name", EVIL]).json();
    assert_eq!(j["name"], EVIL);
    // An output file's name.
    let out = format!("{EVIL}.license");
    let r = ok(
        d,
        &[
            "ca", "license", "--ca", "root", "--serial", "S-1", "-o", &out,
        ],
    );
    assert_escaped(&r.stdout);
    ok(d, &["keygen", "-o", "dev"]);
    let r = ok(
        d,
        &[
            "ca",
            "issue",
            "--intermediate",
            "--ca",
            "root",
            "--pub",
            "dev.pub",
            "-o",
            &format!("{EVIL}.cert"),
        ],
    );
    assert_escaped(&r.stdout);
    // A certificate subject, a license serial or hardware id with a control character: never
    // issued (nor parsed).
    for args in [
        &[
            "ca",
            "issue",
            "--intermediate",
            "--ca",
            "root",
            "--pub",
            "dev.pub",
            "--subject",
            EVIL,
            "-o",
            "s.cert",
        ][..],
        &[
            "ca", "init", "-o", "int", "--parent", "root", "--name", EVIL,
        ],
        &[
            "ca", "license", "--ca", "root", "--serial", EVIL, "-o", "l1",
        ],
        &[
            "ca",
            "license",
            "--ca",
            "root",
            "--serial",
            "S-2",
            "--hardware",
            EVIL,
            "-o",
            "l2",
        ],
    ] {
        let r = stockade(d, args);
        assert_ne!(r.code, 0, "{args:?} was issued: {}", r.stdout);
        assert!(!r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{202e}'));
    }
}

#[test]
fn grant_text_output_escapes_targets() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["keygen", "-o", "op"]);
    // A writable path may hold any character but NUL: the grant names it as it is.
    let target = format!("writable:/srv/{EVIL}");
    let issue = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "grant",
            "issue",
            "--key",
            "op.key",
            "--plugin",
            "hello",
            "--plugin-version",
            "1.0.0",
            "--target",
            &target,
            "--force",
            "-o",
            "g.grant",
        ]);
        ok(d, &args)
    };
    assert_escaped(&issue(&[]).stdout);
    assert_eq!(
        issue(&["--json"]).json()["grant"]["targets"][0],
        target.as_str()
    );
    let r = ok(
        d,
        &[
            "grant",
            "verify",
            "g.grant",
            "--operator-key",
            "op.pub",
            "--plugin",
            "hello",
            "--plugin-version",
            "1.0.0",
            "--target",
            &target,
        ],
    );
    assert_escaped(&r.stdout);
    // The grant file's own name.
    let file = format!("{EVIL}.grant");
    let r = ok(
        d,
        &[
            "grant",
            "issue",
            "--key",
            "op.key",
            "--plugin",
            "hello",
            "--plugin-version",
            "1.0.0",
            "--target",
            "network:loopback",
            "-o",
            &file,
        ],
    );
    assert_escaped(&r.stdout);
}

#[test]
fn node_text_output_escapes_paths() {
    let fx = Fixture::new();
    ok(
        fx.dir(),
        &[
            "ca", "license", "--ca", "root", "--serial", "S-1", "-o", "l",
        ],
    );
    // The state directory's name (the license's own fields are refused at parse unless
    // `[A-Za-z0-9._-]`).
    let state = fx.path(EVIL);
    let state = state.to_str().unwrap();
    let r = ok(
        fx.dir(),
        &[
            "node",
            "license",
            "install",
            "l",
            "--trust",
            "trust",
            "--state-dir",
            state,
        ],
    );
    assert_escaped(&r.stdout);
    // `node info` prints no path: it only has to work in such a state directory.
    let r = ok(fx.dir(), &["node", "info", "--state-dir", state]);
    assert!(r.stdout.contains("license: S-1"), "{}", r.stdout);
}

#[test]
fn audit_verify_text_output_escapes_the_file_name() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // An empty log is an intact chain of 0 records.
    let file = format!("{EVIL}.log");
    std::fs::write(d.join(&file), b"").unwrap();
    let r = ok(d, &["audit", "verify", &file]);
    assert_escaped(&r.stdout);
    let j = ok(d, &["--json", "audit", "verify", &file]).json();
    assert_eq!(j["file"], file.as_str());
}

/// A policy whose writable path holds [`EVIL`] (TOML escapes: `\n`, `\u001b`, `\u202e`); a
/// writable path is high risk, so a plugin's explain also names it as a grant target, missing
/// and withheld.
fn evil_policy(p: &Path) {
    std::fs::write(
        p,
        "version = 1\n[filesystem]\nwritable = [\"/srv/Evil\\nsignature: ok\\u001b[2J\\u202eX\"]\n",
    )
    .unwrap();
}

#[test]
fn policy_text_output_escapes_paths_and_grant_targets() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    evil_policy(&d.join("p.toml"));
    std::fs::write(d.join("plain.toml"), "version = 1\n").unwrap();
    let explain = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "policy",
            "explain",
            "--policy",
            "p.toml",
            "--plugin",
            "hello",
            "--plugin-version",
            "1.0.0",
        ]);
        ok(d, &args)
    };
    let r = explain(&[]);
    assert_escaped(&r.stdout);
    for line in ["grant writable:/srv/", "withheld writable:/srv/"] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(line)),
            "{line}: {}",
            r.stdout
        );
    }
    let j = explain(&["--json"]).json();
    assert_eq!(
        j["withheld"][0]["target"],
        format!("writable:/srv/{EVIL}").as_str()
    );
    // Without a plugin, `lint` and `diff` on the same file.
    assert_escaped(&ok(d, &["policy", "explain", "--policy", "p.toml"]).stdout);
    let r = stockade(d, &["policy", "lint", "p.toml"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    assert_escaped(&r.stdout);
    assert_escaped(&ok(d, &["policy", "diff", "plain.toml", "p.toml"]).stdout);
}
