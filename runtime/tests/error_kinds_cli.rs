//! The agent-facing error contract from outside (docs/exit-codes.md): a usage error under
//! `--json` is the JSON error document like any other failure.

mod common;

use common::*;

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
