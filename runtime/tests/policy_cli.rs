//! The policy tools, grants and the audit log through the real binary: `policy lint` exit codes
//! and file:line findings, layer precedence under `--policy-root`, `diff`, `schema`, `grant
//! issue|verify` refusals (each with its own kind), `policy explain PKG` with and without a
//! grant, and `audit verify` catching an edited, deleted or reordered record.

mod common;
use common::{ok, stockade, Fixture};
use serde_json::Value;
use std::path::Path;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn lint_exit_codes_severities_and_lines() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(
        &d.join("clean.toml"),
        "version = 1\n[resources]\nmemory_max = \"64M\"\n",
    );
    let r = ok(d, &["--json", "policy", "lint", "clean.toml"]);
    let v = r.json();
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "info"),
        "{v}"
    );

    write(
        &d.join("bad.toml"),
        "version = 1\n[resources]\nmemory_max = \"unlimited\"\npids_max = \"unlimited\"\n[trust]\nmode = \"disabled\"\n[layers]\nallow_degraded = [\"landlock\"]\n[hooks.\"on:pre_request\"]\nfailure = \"open\"\n[filesystem]\nwritable = [\"/srv/shared\"]\n[plugin.scanner.network]\nmode = \"loopback\"\n",
    );
    let found = lint_findings(d, "bad.toml");
    for (code, sev, line) in [
        ("memory-unlimited", "error", 3),
        ("pids-unlimited", "error", 4),
        ("trust-not-strict", "error", 6),
        ("degradation-allowed", "error", 8),
        ("hook-fail-open", "warning", 10),
        ("writable-outside-plugin", "warning", 12),
        ("network-without-grant", "error", 14),
    ] {
        assert!(
            found
                .iter()
                .any(|f| f.0 == code && f.1 == sev && f.2 == line),
            "{code} {sev} line {line} missing in {found:?}"
        );
    }
    // One file each, warned at the line:
    // - a bounded memory_max with unlimited swap bounds neither (the swap_max line);
    // - an rlimit written "unlimited" is a bound gone, one code for all of them (nproc and
    //   memlock too, where the host's hard limits let them be unlimited);
    // - an empty [capabilities] restricts nothing (the section's line);
    // - no CPU quota (a warning: the scheduler still shares the CPUs, and CPU time comes back).
    for (text, code, lines) in [
        (
            "[resources]\nswap_max = \"unlimited\"\n",
            "swap-unlimited",
            &[3][..],
        ),
        (
            "[resources]\nfsize = \"unlimited\"\ncpu_time_secs = \"unlimited\"\n",
            "rlimit-unlimited",
            &[3, 4][..],
        ),
        ("[capabilities]\n", "capabilities-without-allow", &[2][..]),
        (
            "[resources]\ncpu_max = \"unlimited\"\n",
            "cpu-unlimited",
            &[3][..],
        ),
    ] {
        write(&d.join("one.toml"), &format!("version = 1\n{text}"));
        let found = lint_findings(d, "one.toml");
        for line in lines {
            assert!(
                found
                    .iter()
                    .any(|f| f.0 == code && f.1 == "warning" && f.2 == *line),
                "{code} line {line}: {found:?}"
            );
        }
    }
    // A read_only entry the host lacks is skipped at launch: lint names it, with the trailing
    // space that hides it; the one that exists, and the default entries written out (/lib32,
    // /libx32: a host need not have them), are no finding.
    // (Host paths outside /tmp, which the sandbox builds itself.)
    let present = "/usr/share";
    write(
        &d.join("ro.toml"),
        &format!(
            "version = 1\n[filesystem]\nread_only = [\"/usr\", \"/lib32\", \"/libx32\", \
             \"{present}\", \"{present} \", \"{present}-gone-h94\"]\n"
        ),
    );
    let r = stockade(d, &["--json", "policy", "lint", "ro.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let missing: Vec<String> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "read-only-missing")
        .inspect(|f| {
            assert_eq!(
                (&f["severity"], &f["at"]["line"]),
                (&"warning".into(), &3.into())
            )
        })
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(missing.len(), 2, "{missing:#?}");
    assert!(
        missing
            .iter()
            .any(|m| m.contains(&format!("{present:?} exists"))),
        "{missing:#?}"
    );
    assert!(
        missing
            .iter()
            .any(|m| m.contains(&format!("\"{present}-gone-h94\" is not on this host"))),
        "{missing:#?}"
    );
    // A plugin section and a signer section valid alone, invalid together (the signer's
    // read_only inside the plugin's writable): the file loads, the pair's launches are refused,
    // and lint says so as an error at the plugin section's line — at any fail level.
    write(
        &d.join("pair.toml"),
        "version = 1\n[signer.\"ABCDEF0123456789\".filesystem]\n\
         read_only = [\"/srv/app/config\"]\n[plugin.hello.filesystem]\n\
         writable = [\"/srv/app\"]\n",
    );
    let r = stockade(
        d,
        &[
            "--json",
            "policy",
            "lint",
            "pair.toml",
            "--fail-level",
            "error",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let pair: Vec<Value> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "pair-invalid")
        .cloned()
        .collect();
    assert_eq!(pair.len(), 1, "{}", r.stdout);
    assert_eq!(
        (
            &pair[0]["severity"],
            &pair[0]["at"]["line"],
            &pair[0]["plugin"]
        ),
        (&"error".into(), &5.into(), &"hello".into())
    );
    // Only warnings at or above the fail level count.
    write(
        &d.join("warn.toml"),
        "version = 1\n[filesystem]\nsys = true\n",
    );
    assert_eq!(
        stockade(d, &["policy", "lint", "warn.toml", "--fail-level", "error"]).code,
        0
    );
    assert_eq!(stockade(d, &["policy", "lint", "warn.toml"]).code, 1);
    assert_eq!(
        stockade(d, &["policy", "lint", "warn.toml", "--fail-level", "bogus"]).code,
        64
    );

    // Invalid: 65, naming file and line; unreadable: 66.
    for (text, want) in [
        (
            "version = 1\n\n[resources]\nmemory_max = \"2K\"\n",
            "bad2.toml:4",
        ),
        (
            "version = 1\n[network]\nmdoe = \"none\"\n",
            "bad2.toml:3:1: unknown field `mdoe`",
        ),
        ("version = 1\n[risk]\nteleport = \"low\"\n", "bad2.toml:3"),
    ] {
        write(&d.join("bad2.toml"), text);
        let r = stockade(d, &["policy", "lint", "bad2.toml"]);
        assert_eq!(r.code, 65, "{text}");
        assert!(r.stderr.contains(want), "{text}: {}", r.stderr);
    }
    assert_eq!(stockade(d, &["policy", "lint", "missing.toml"]).code, 66);
}

/// Operator TOML that does not parse is refused with one line, `FILE:LINE:COLUMN: message`,
/// from the parser's message and span: not its multi-line snippet, which the error printer's
/// escaping of control characters (text_escaping_cli.rs) turned into one line of `\x0a`. For
/// a policy file, a drop-in under a policy root, and `serve --config`.
#[test]
fn toml_that_does_not_parse_is_one_line_at_file_line_column() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let header = "invalid table header, expected `.`, `]`";
    write(&d.join("bad.toml"), "version = 1\n[resources\n");
    let r = stockade(d, &["policy", "lint", "bad.toml"]);
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("caused by: bad.toml:2:11: {header}\n")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("\\x0a"), "{}", r.stderr);
    let v = stockade(d, &["--json", "policy", "lint", "bad.toml"]).json();
    assert_eq!(v["error"]["kind"], "invalid_policy", "{v}");
    assert_eq!(
        v["error"]["causes"],
        serde_json::json!([format!("bad.toml:2:11: {header}")]),
        "{v}"
    );

    // A shape error (an unknown key) in a drop-in: its line and column, in characters.
    write(
        &d.join("root-fs/etc/stockade/policy.d/10-x.toml"),
        "version = 1\n# é\n[resources]\n  bogus = 1\n",
    );
    let r = stockade(d, &["policy", "explain", "--policy-root", "root-fs"]);
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "caused by: root-fs/etc/stockade/policy.d/10-x.toml:4:3: unknown field `bogus`, expected one of"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("\\x0a"), "{}", r.stderr);

    // The serve config, read before anything is bound.
    write(&d.join("serve.toml"), "version = 1\n[serve\n");
    let r = stockade(
        d,
        &["serve", "--socket", "agent.sock", "--config", "serve.toml"],
    );
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("caused by: serve.toml:2:7: {header}\n")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("\\x0a"), "{}", r.stderr);
    assert!(!d.join("agent.sock").exists());
}

/// The Sertone hooks fail open by default (seed 003), so a policy that never mentions them has
/// them open: lint says so, as a note naming each hook (the file weakens nothing), and no more
/// once a section closes it. A section that sets `failure = "open"` is the file's doing: a
/// warning, as for any hook.
#[test]
fn lint_notes_the_sertone_hooks_that_fail_open_by_default() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let notes = |file: &str| -> Vec<(String, String, String)> {
        let r = stockade(d, &["--json", "policy", "lint", file]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        r.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "hook-fail-open")
            .map(|f| {
                (
                    f["severity"].as_str().unwrap().to_string(),
                    f["at"].to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    write(&d.join("none.toml"), "version = 1\n");
    let found = notes("none.toml");
    assert_eq!(found.len(), 2, "{found:?}");
    for (hook, (sev, _, msg)) in ["on:sertone.post_response", "on:sertone.pre_request"]
        .iter()
        .zip(&found)
    {
        assert_eq!(sev, "info", "{found:?}");
        assert!(
            msg.contains(&format!("hook `{hook}` fails open by default")),
            "{found:?}"
        );
    }
    // A deadline-only section leaves the default mode, and says so the same way.
    write(
        &d.join("deadline.toml"),
        "version = 1\n[hooks.\"on:sertone.pre_request\"]\ndeadline_ms = 900\n",
    );
    assert_eq!(notes("deadline.toml").len(), 2);
    assert!(notes("deadline.toml").iter().all(|f| f.0 == "info"));
    // Closed: no longer reported.
    write(
        &d.join("closed.toml"),
        "version = 1\n[hooks.\"on:sertone.pre_request\"]\nfailure = \"closed\"\n",
    );
    let found = notes("closed.toml");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].2.contains("on:sertone.post_response"), "{found:?}");
    // Opened by the file: a warning at its line.
    write(
        &d.join("open.toml"),
        "version = 1\n[hooks.\"on:sertone.pre_request\"]\nfailure = \"open\"\n",
    );
    let r = stockade(d, &["--json", "policy", "lint", "open.toml"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.json()["findings"].as_array().unwrap().iter().any(|f| {
            f["code"] == "hook-fail-open" && f["severity"] == "warning" && f["at"]["line"] == 3
        }),
        "{}",
        r.stdout
    );
    // Its built-in answer written out as the default weakens nothing more: a warning too, not
    // the error of a default that allows where the hook would not (the old lint said error).
    write(
        &d.join("open-default.toml"),
        "version = 1\n[hooks.\"on:sertone.pre_request\"]\nfailure = \"open\"\n\
         default = { allow = true }\n",
    );
    let r = stockade(d, &["--json", "policy", "lint", "open-default.toml"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let sev: Vec<Value> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "hook-fail-open" && f["at"]["line"] == 3)
        .map(|f| f["severity"].clone())
        .collect();
    assert_eq!(sev, ["warning"], "{}", r.stdout);
    // Any other allowing default on a hook is still an error.
    write(
        &d.join("allow.toml"),
        "version = 1\n[hooks.\"on:pre_request\"]\nfailure = \"open\"\ndefault = { allow = true }\n",
    );
    let r = stockade(d, &["--json", "policy", "lint", "allow.toml"]);
    assert!(
        r.json()["findings"].as_array().unwrap().iter().any(|f| {
            f["code"] == "hook-fail-open" && f["severity"] == "error" && f["at"]["line"] == 3
        }),
        "{}",
        r.stdout
    );
}

/// A grant file in the policy's grants directory that cannot be parsed (hand-edited, truncated,
/// or deployed before a stricter parser) authorises nothing at launch (withheld whole): `policy
/// lint` names it as an error, `grant-malformed`, so the operator learns it before a plugin
/// loses its grants; likewise a grants directory it cannot read. Files that are not `*.grant`
/// are not grants and are not looked at.
#[test]
fn lint_names_a_grant_file_that_is_refused_when_read() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let policy = format!(
        "version = 1\n[resources]\nmemory_max = \"64M\"\n[trust]\ngrants = \"{}\"\n",
        d.join("grants").display()
    );
    write(&d.join("p.toml"), &policy);
    write(&d.join("grants/README"), "not a grant\n");
    // The grant findings (the others: the notes on the Sertone hooks' default mode).
    let grant_findings = |v: &Value| -> usize {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "grant-malformed")
            .count()
    };
    let r = ok(d, &["--json", "policy", "lint", "p.toml"]);
    assert_eq!(grant_findings(&r.json()), 0, "{}", r.stdout);

    write(
        &d.join("grants/old.grant"),
        "{\"body\": {\"plugin\": \"x\"}}\n",
    );
    let r = stockade(d, &["--json", "policy", "lint", "p.toml"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = r.json();
    let f = &v["findings"][0];
    assert_eq!(f["code"], "grant-malformed", "{v:#}");
    assert_eq!(f["severity"], "error", "{v:#}");
    assert_eq!(
        f["at"]["path"],
        d.join("grants/old.grant").display().to_string(),
        "{v:#}"
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("authorises nothing"),
        "{v:#}"
    );
    assert_eq!(grant_findings(&v), 1, "{v:#}");

    // A grants directory that cannot be read is said too, not taken for one without grants.
    std::fs::remove_dir_all(d.join("grants")).unwrap();
    write(&d.join("grants"), "a file, not a directory\n");
    let r = stockade(d, &["--json", "policy", "lint", "p.toml"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["findings"][0]["code"], "grant-malformed", "{v:#}");
    assert_eq!(
        v["findings"][0]["at"]["path"],
        d.join("grants").display().to_string(),
        "{v:#}"
    );
}

/// The policy files we ship or print as "the built-in default" lint clean: an operator's CI that
/// runs `stockade policy lint /etc/stockade/policy.toml` must not fail on a fresh install. They
/// spell the default degradations out, which is no weakening; one beyond the default still is.
#[test]
fn shipped_and_documented_default_policies_lint_clean() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let doc = std::fs::read_to_string(repo.join("docs/sandbox.md")).unwrap();
    // The example under "## The policy file" (the one fenced ```toml block that claims to be
    // the built-in default).
    let section = &doc[doc
        .find("## The policy file")
        .expect("docs/sandbox.md section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    assert!(
        section[..start].contains("this example *is* the built-in default"),
        "docs/sandbox.md no longer says which block is the default"
    );
    write(&d.join("doc-default.toml"), example);
    let shipped = repo.join("packaging/policy.toml");
    for file in [shipped.to_str().unwrap(), "doc-default.toml"] {
        let r = stockade(d, &["--json", "policy", "lint", file]);
        assert_eq!(r.code, 0, "{file}: {}{}", r.stdout, r.stderr);
        let v = r.json();
        let loud: Vec<&Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .collect();
        assert!(loud.is_empty(), "{file}: {loud:?}");
    }
    // A degradation beyond the built-in default is still reported, in either mode.
    for (text, code, sev) in [
        (
            "version = 1\n[layers]\nallow_degraded = [\"landlock_network\", \"cgroup_partial\"]\n",
            "cgroup_partial",
            "warning",
        ),
        (
            "version = 1\n[layers]\nallow_degraded = [\"cgroup\"]\n",
            "cgroup",
            "error",
        ),
        (
            "version = 1\n[layers]\nallow_degraded_rootless = [\"distinct_uid\", \"landlock\"]\n",
            "landlock",
            "warning",
        ),
    ] {
        write(&d.join("weaker.toml"), text);
        let r = stockade(d, &["--json", "policy", "lint", "weaker.toml"]);
        assert_eq!(r.code, 1, "{text}");
        let v = r.json();
        let found: Vec<&Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "degradation-allowed")
            .collect();
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        assert_eq!(found[0]["severity"], sev, "{text}");
        assert!(
            found[0]["message"].as_str().unwrap().contains(code),
            "{text}: {found:?}"
        );
    }
}

#[test]
fn layers_under_a_root_precedence_masking_and_provenance() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    write(
        &root.join("usr/lib/stockade/policy.toml"),
        "version = 1\n[resources]\npids_max = 10\n",
    );
    write(
        &root.join("usr/lib/stockade/policy.d/10-vendor.toml"),
        "version = 1\n[resources]\nnofile = 99\n",
    );
    write(
        &root.join("run/stockade/policy.d/20-mem.toml"),
        "version = 1\n[resources]\nmemory_max = \"96M\"\n",
    );
    write(
        &root.join("etc/stockade/policy.d/20-mem.toml"),
        "version = 1\n\n[resources]\nmemory_max = \"32M\"\n",
    );
    std::fs::create_dir_all(root.join("etc/stockade/policy.d")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        root.join("etc/stockade/policy.d/10-vendor.toml"),
    )
    .unwrap();
    let r = ok(root, &["--json", "policy", "explain", "--policy-root", "."]);
    let v = r.json();
    let item = |name: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["section"] == "resource" && i["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(item("memory_max")["value"], 32 << 20);
    assert_eq!(
        item("memory_max")["decided_by"],
        "./etc/stockade/policy.d/20-mem.toml:4"
    );
    assert_eq!(
        item("pids_max")["decided_by"],
        "./usr/lib/stockade/policy.toml:3"
    );
    assert_eq!(
        item("nofile")["decided_by"],
        "default",
        "the vendor drop-in is masked"
    );
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    // STOCKADE_POLICY_ROOT is the same as the flag.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["--json", "policy", "lint"])
        .env("STOCKADE_POLICY_ROOT", root)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn diff_says_what_widens_and_narrows_and_schema_is_json_schema() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(&d.join("a.toml"), "version = 1\n[resources]\nmemory_max = \"64M\"\n[seccomp]\ngroups = [\"@default\", \"@basic-io\", \"@file-system\", \"@memory\"]\n");
    write(&d.join("b.toml"), "version = 1\n[resources]\nmemory_max = \"32M\"\n[trust]\nmode = \"warn\"\n[network]\nmode = \"loopback\"\n");
    let v = ok(d, &["--json", "policy", "diff", "a.toml", "b.toml"]).json();
    let effect = |s: &str, n: &str| {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["section"] == s && c["name"] == n)
            .map(|c| c["effect"].as_str().unwrap().to_string())
    };
    assert_eq!(effect("resource", "memory_max").as_deref(), Some("narrows"));
    assert_eq!(effect("trust", "mode").as_deref(), Some("widens"));
    assert_eq!(effect("network", "mode").as_deref(), Some("widens"));
    assert_eq!(effect("seccomp", "@timer").as_deref(), Some("widens"));
    assert_eq!(effect("resource", "nofile"), None);
    assert!(v["exposure_b"].as_f64().unwrap() > v["exposure_a"].as_f64().unwrap());

    let s: Value = serde_json::from_str(&ok(d, &["policy", "schema"]).stdout).unwrap();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(s["properties"]["trust"].is_object());
}

/// `grant issue` signs only what could ever match: a capability of the fixed set, the network
/// mode the runtime grants (loopback), an absolute normalised writable path, a manifest plugin
/// name and a parseable scope; anything else, and `--days 0`, is 64 with nothing written.
/// `grant verify` refuses the same inputs the same way (64, `grant_invalid`), before it reads
/// the grant.
#[test]
fn grant_issue_and_verify_refuse_what_could_never_match() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["keygen", "-o", "op"]);
    let issue = |plugin: &str, scope: &str, target: &str, days: &str, out: &str| {
        stockade(
            d,
            &[
                "--json",
                "grant",
                "issue",
                "--key",
                "op.key",
                "--plugin",
                plugin,
                "--plugin-version",
                "0.1.0",
                "--scope",
                scope,
                "--target",
                target,
                "--days",
                days,
                "-o",
                out,
            ],
        )
    };
    let good = issue("hello", "any", "capability:kv_put", "1", "good.grant");
    assert_eq!(good.code, 0, "{}", good.stdout);
    let verify = |plugin: &str, scope: &str, target: &str| {
        stockade(
            d,
            &[
                "--json",
                "grant",
                "verify",
                "good.grant",
                "--operator-key",
                "op.pub",
                "--plugin",
                plugin,
                "--plugin-version",
                "0.1.0",
                "--scope",
                scope,
                "--target",
                target,
            ],
        )
    };
    assert_eq!(verify("hello", "any", "capability:kv_put").code, 0);
    for (plugin, scope, target) in [
        ("hello", "any", "capability:bogus"),
        ("hello", "any", "network:all"),
        ("hello", "any", "writable:relative"),
        ("hello", "any", "writable:/a/../etc"),
        ("hello", "any", "writable:/srv/"),
        ("Hello World/../x", "any", "network:loopback"),
        ("hello", "nonsense scope", "network:loopback"),
    ] {
        let r = issue(plugin, scope, target, "1", "bad.grant");
        assert_eq!(r.code, 64, "{plugin} {scope} {target}: {}", r.stdout);
        assert_eq!(r.kind(), "grant_invalid", "{}", r.stdout);
        assert!(!d.join("bad.grant").exists(), "{plugin} {scope} {target}");
        let r = verify(plugin, scope, target);
        assert_eq!(r.code, 64, "verify {plugin} {scope} {target}: {}", r.stdout);
        assert_eq!(r.kind(), "grant_invalid", "{}", r.stdout);
    }
    // --days 0 is refused as `ca` refuses it (it was silently one day).
    let r = issue("hello", "any", "network:loopback", "0", "zero.grant");
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(r.stdout.contains("--days"), "{}", r.stdout);
    assert!(!d.join("zero.grant").exists());
}

/// A `grant issue --now` so late that `--days` ends past `u64::MAX` is a usage error (64) with
/// nothing written, as for `ca`: the expiry was saturated at `u64::MAX`, a grant silently valid
/// for less than `--days` (and at `--now u64::MAX` refused as `grant_invalid`, an argument it
/// did not name). The last day that fits is still issued.
#[test]
fn a_grant_past_the_largest_time_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["keygen", "-o", "op"]);
    let issue = |now: u64, days: &str, out: &str| {
        stockade(
            d,
            &[
                "--json",
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
                "--days",
                days,
                "-o",
                out,
                "--now",
                &now.to_string(),
            ],
        )
    };
    for now in [u64::MAX, u64::MAX - 30 * 86_400 + 1] {
        let r = issue(now, "30", "late.grant");
        assert_eq!(r.code, 64, "--now {now}: {}", r.stdout);
        assert_eq!(r.kind(), "usage", "{}", r.stdout);
        assert!(r.stdout.contains("past the largest time"), "{}", r.stdout);
        assert!(!d.join("late.grant").exists(), "--now {now}");
    }
    let r = issue(u64::MAX - 30 * 86_400, "30", "last.grant");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["grant"]["expires_at"], u64::MAX, "{}", r.stdout);
}

#[test]
fn grant_refusals_each_have_their_own_kind() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["keygen", "-o", "op"]);
    ok(d, &["keygen", "-o", "other"]);
    let issue = |out: &str, now: &str| {
        ok(
            d,
            &[
                "grant",
                "issue",
                "--key",
                "op.key",
                "--plugin",
                "hello",
                "--plugin-version",
                "0.1.0",
                "--scope",
                "any",
                "--target",
                "network:loopback",
                "--days",
                "1",
                "-o",
                out,
                "--now",
                now,
            ],
        )
    };
    issue("g.grant", "1000000");
    let verify = |file: &str, key: &str, plugin: &str, target: &str, now: &str| {
        stockade(
            d,
            &[
                "--json",
                "grant",
                "verify",
                file,
                "--operator-key",
                key,
                "--plugin",
                plugin,
                "--plugin-version",
                "0.1.0",
                "--scope",
                "any",
                "--target",
                target,
                "--now",
                now,
            ],
        )
    };
    assert_eq!(
        verify("g.grant", "op.pub", "hello", "network:loopback", "1000010").code,
        0
    );
    // Issued up to five minutes ahead of the checking clock (the granting machine's clock a
    // little ahead of the node's) it counts; a second further, not yet (below).
    assert_eq!(
        verify("g.grant", "op.pub", "hello", "network:loopback", "999700").code,
        0
    );
    for (r, kind) in [
        (
            verify("g.grant", "op.pub", "hello", "network:loopback", "999699"),
            "grant_not_yet_valid",
        ),
        (
            verify("g.grant", "op.pub", "hello", "writable:/srv", "1000010"),
            "grant_missing",
        ),
        (
            verify("g.grant", "op.pub", "hello", "network:loopback", "9999999"),
            "grant_expired",
        ),
        (
            verify("g.grant", "op.pub", "other", "network:loopback", "1000010"),
            "grant_wrong_plugin",
        ),
        (
            verify(
                "g.grant",
                "other.pub",
                "hello",
                "network:loopback",
                "1000010",
            ),
            "grant_wrong_signer",
        ),
    ] {
        assert_eq!(r.code, 65, "{kind}: {}", r.stdout);
        assert_eq!(r.kind(), kind);
    }
    let text = std::fs::read_to_string(d.join("g.grant")).unwrap();
    std::fs::write(d.join("t.grant"), text.replace("\"hello\"", "\"hellp\"")).unwrap();
    let r = verify("t.grant", "op.pub", "hellp", "network:loopback", "1000010");
    assert_eq!((r.code, r.kind().as_str()), (65, "grant_tampered"));
    // A key named twice in the body (targets in front of the signed ones, which serde_json
    // would overwrite, leaving the signature intact) is a malformed grant.
    std::fs::write(
        d.join("dup.grant"),
        text.replacen(
            "\"grant\": {",
            "\"grant\": {\n    \"targets\": [\"writable:/srv\"],",
            1,
        ),
    )
    .unwrap();
    let r = verify(
        "dup.grant",
        "op.pub",
        "hello",
        "network:loopback",
        "1000010",
    );
    assert_eq!(
        (r.code, r.kind().as_str()),
        (65, "grant_malformed"),
        "{}",
        r.stdout
    );
    // Existing output is not overwritten unless --force (renewal); a bad target is a usage error.
    let issue_h = |target: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "grant",
            "issue",
            "--key",
            "op.key",
            "--plugin",
            "h",
            "--plugin-version",
            "1.0.0",
            "--target",
            target,
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        stockade(d, &args)
    };
    let renew = |extra: &[&str]| issue_h("network:loopback", "g.grant", extra);
    let r = renew(&[]);
    assert_eq!(r.code, 73, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(d.join("g.grant")).unwrap(), text);
    assert_eq!(renew(&["--force"]).code, 0);
    assert!(std::fs::read_to_string(d.join("g.grant"))
        .unwrap()
        .contains("\"h\""));
    assert_eq!(issue_h("root:all", "x.grant", &[]).code, 64);
}

#[test]
fn explain_a_package_withholds_network_until_granted_and_verify_is_audited() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let d = fx.dir();
    ok(d, &["keygen", "-o", "op"]);
    let root = d.join("root-fs");
    let audit = d.join("audit.log");
    write(
        &root.join("etc/stockade/policy.toml"),
        &format!(
            "version = 1\n[network]\nmode = \"loopback\"\n[trust]\noperator_keys = [\"{}\"]\ngrants = \"{}\"\n[audit]\nfile = \"{}\"\n",
            d.join("op.pub").display(),
            d.join("grants").display(),
            audit.display()
        ),
    );
    std::fs::create_dir(d.join("grants")).unwrap();
    let explain = || {
        ok(
            d,
            &[
                "--json",
                "policy",
                "explain",
                &pkg,
                "--policy-root",
                "root-fs",
                "--trust",
                "trust",
                "--state-dir",
                "state",
            ],
        )
        .json()
    };
    let net = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["section"] == "network")
            .unwrap()
            .clone()
    };
    let v = explain();
    assert_eq!(net(&v)["granted"], false);
    assert_eq!(net(&v)["decided_by"], "grant network:loopback");
    assert_eq!(v["withheld"][0]["kind"], "grant_missing");
    // Without the package: --plugin-version makes explain check the grants too.
    let explain_name = |version: &str| {
        ok(
            d,
            &[
                "--json",
                "policy",
                "explain",
                "--plugin",
                "hello",
                "--plugin-version",
                version,
                "--policy-root",
                "root-fs",
            ],
        )
        .json()
    };
    let vn = explain_name("0.1.0");
    assert_eq!(net(&vn)["granted"], false, "{vn:#}");
    assert_eq!(
        vn["grants"],
        serde_json::json!([{"target": "network:loopback", "status": "grant_missing",
                            "message": vn["grants"][0]["message"]}])
    );
    // Without --plugin-version grants are not checked (and none is reported).
    let vn = ok(
        d,
        &[
            "--json",
            "policy",
            "explain",
            "--plugin",
            "hello",
            "--policy-root",
            "root-fs",
        ],
    )
    .json();
    assert_eq!(vn["grants"], serde_json::json!([]));
    assert!(vn["basis"].as_str().unwrap().contains("--plugin-version"));
    // The manifest's hooks are explained even when the policy does not configure them.
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["section"] == "hook"
            && i["name"] == "on:flow.new failure"
            && i["value"] == "closed"));
    // A capability above the scope is decided by the certificate; one not requested by the manifest.
    let cap = |v: &Value, c: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["section"] == "capability" && i["name"] == c)
            .unwrap()["decided_by"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        cap(&v, "kv_put").starts_with("manifest") || cap(&v, "kv_put").starts_with("certificate")
    );

    ok(
        d,
        &[
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
            "grants/hello.grant",
        ],
    );
    let v = explain();
    assert_eq!(net(&v)["granted"], true, "{v:#}");
    assert!(v["exposure"].as_f64().unwrap() >= 2.0);
    assert_eq!(v["grants"][0]["status"], "valid", "{v:#}");
    let v = explain_name("0.1.0");
    assert_eq!(net(&v)["granted"], true, "{v:#}");
    assert_eq!(v["grants"][0]["status"], "valid", "{v:#}");
    // The grant is bound to the version: another one is refused with its own kind.
    let v = explain_name("0.2.0");
    assert_eq!(net(&v)["granted"], false, "{v:#}");
    assert_eq!(v["grants"][0]["status"], "grant_wrong_version", "{v:#}");

    // `verify` writes one record per verification into the configured log.
    for _ in 0..3 {
        let r = verify_audited(d, &pkg, false);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = ok(d, &["--json", "audit", "verify", "audit.log"]);
    assert_eq!(r.json()["records"], 3);
    let text = std::fs::read_to_string(&audit).unwrap();
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(rec["event"], "verification");
    assert_eq!(rec["plugin"], "hello");
    assert_eq!(rec["signer_chain"].as_array().unwrap().len(), 3);
    assert_eq!(rec["package_sha256"].as_str().unwrap().len(), 64);

    let lines: Vec<&str> = text.lines().collect();
    for (name, bad, record) in [
        (
            "edited",
            text.replacen("\"verification\"", "\"launch\"", 1),
            "record 1",
        ),
        ("deleted", [lines[0], lines[2]].join("\n"), "record 2"),
        (
            "reordered",
            [lines[1], lines[0], lines[2]].join("\n"),
            "record 1",
        ),
    ] {
        std::fs::write(d.join("bad.log"), bad).unwrap();
        let r = stockade(d, &["audit", "verify", "bad.log"]);
        assert_eq!(r.code, 65, "{name}");
        assert!(r.stderr.contains(record), "{name}: {}", r.stderr);
    }

    // Truncation at the tail: the chain alone is still valid, the head file says what is gone.
    let r = ok(
        d,
        &["--json", "audit", "verify", "audit.log", "--require-head"],
    );
    assert_eq!(r.json()["head"], "checked");
    std::fs::copy(d.join("audit.log.head"), d.join("cut.log.head")).unwrap();
    std::fs::write(d.join("cut.log"), format!("{}\n", lines[0])).unwrap();
    let r = stockade(d, &["audit", "verify", "cut.log"]);
    assert_eq!(r.code, 65, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("truncated") && r.stderr.contains("seq 1..=2"),
        "{}",
        r.stderr
    );
    // A writer refuses to extend it (that would hide the loss): verify with the cut log as the
    // audit file fails with 74 and leaves it as it was.
    let cut_root = d.join("cut-root");
    write(
        &cut_root.join("etc/stockade/policy.toml"),
        &format!(
            "version = 1\n[audit]\nfile = \"{}\"\n",
            d.join("cut.log").display()
        ),
    );
    let r = stockade(
        d,
        &[
            "verify",
            &pkg,
            "--trust",
            "trust",
            "--state-dir",
            "state",
            "--policy-root",
            "cut-root",
        ],
    );
    assert_eq!(r.code, 74, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("cut.log")).unwrap(),
        format!("{}\n", lines[0])
    );
    // No head at all: accepted with a note, refused with --require-head.
    std::fs::write(d.join("nohead.log"), &text).unwrap();
    let r = ok(d, &["--json", "audit", "verify", "nohead.log"]);
    assert_eq!(r.json()["head"], "missing");
    let r = stockade(d, &["audit", "verify", "nohead.log", "--require-head"]);
    assert_eq!(r.code, 65, "{}", r.stderr);
}

#[test]
fn the_policys_trust_section_reaches_verification() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let d = fx.dir();
    let serial = fx.dev_serial();
    ok(
        d,
        &[
            "ca",
            "revoke",
            "--ca",
            "root",
            "--serial",
            &serial,
            "-o",
            "revoked.json",
        ],
    );
    let root = d.join("root-fs");
    let policy = root.join("etc/stockade/policy.toml");
    let verify = || {
        stockade(
            d,
            &[
                "--json",
                "verify",
                &pkg,
                "--trust",
                "trust",
                "--state-dir",
                "state",
                "--policy-root",
                "root-fs",
            ],
        )
    };
    // No revocation list in the trust dir: verification passes ...
    write(&policy, "version = 1\n");
    assert_eq!(verify().code, 0);
    // ... unless the policy requires one.
    write(&policy, "version = 1\n[trust]\nrequire_revocation = true\n");
    let r = verify();
    assert_eq!(r.code, 84, "{}", r.stdout);
    assert!(r.stdout.contains("revocation.list_missing"), "{}", r.stdout);
    // The policy's trust.revocation names one that revokes the developer certificate: 84.
    write(
        &policy,
        &format!(
            "version = 1\n[trust]\nrevocation = \"{}\"\n",
            d.join("revoked.json").display()
        ),
    );
    let r = verify();
    assert_eq!(r.code, 84, "{}", r.stdout);
    // With the list there, the requirement is met (the same developer is revoked by it).
    write(
        &policy,
        &format!(
            "version = 1\n[trust]\nrequire_revocation = true\nrevocation = \"{}\"\n",
            d.join("revoked.json").display()
        ),
    );
    let r = verify();
    assert_eq!(r.code, 84, "{}", r.stdout);
    assert!(
        r.stdout.contains("revocation.serial") || r.stdout.contains("revocation.key"),
        "{}",
        r.stdout
    );
    // A revocation list the policy names but that is missing: 78, naming the policy line.
    write(
        &policy,
        "version = 1\n[trust]\nrevocation = \"/nonexistent/revocations.json\"\n",
    );
    let r = stockade(
        d,
        &[
            "verify",
            &pkg,
            "--trust",
            "trust",
            "--state-dir",
            "state",
            "--policy-root",
            "root-fs",
        ],
    );
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("policy.toml:3"), "{}", r.stderr);
    // trust.mode: the stricter of flag and policy wins (a flag cannot loosen a strict policy).
    write(&policy, "version = 1\n[trust]\nmode = \"strict\"\n");
    std::fs::write(
        d.join("trust/root.pub"),
        std::fs::read(d.join("dev.pub")).unwrap(),
    )
    .unwrap();
    let loose = |root: &str| {
        stockade(
            d,
            &[
                "--json",
                "verify",
                &pkg,
                "--trust",
                "trust",
                "--state-dir",
                "state",
                "--trust-mode",
                "warn",
                "--policy-root",
                root,
            ],
        )
    };
    assert_eq!(
        loose("root-fs").code,
        82,
        "strict policy, warn flag: the chain failure stops it"
    );
    assert_eq!(
        loose("nonexistent").code,
        0,
        "no policy: the flag's warn applies"
    );
    // A policy that says nothing about trust is strict (as `policy explain` reports it).
    write(&policy, "version = 1\n[resources]\npids_max = 32\n");
    let r = loose("root-fs");
    assert_eq!(
        r.code, 82,
        "a silent policy, warn flag: strict wins: {}",
        r.stdout
    );
    let r = stockade(
        d,
        &["--json", "policy", "explain", "--policy-root", "root-fs"],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let mode = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["section"] == "trust" && i["name"] == "mode")
        .unwrap();
    assert_eq!(mode["value"], "strict", "{mode}");
    // Loosening is the policy's to say: mode = "warn" lets the flag's warn through.
    write(&policy, "version = 1\n[trust]\nmode = \"warn\"\n");
    assert_eq!(loose("root-fs").code, 0, "the policy allows warn");
}

/// A `[signer."…"]` or `[plugin."…"]` section under a name no signer or plugin can have was
/// accepted and then never applied: the restriction it wrote silently did not exist. Every
/// command that loads the operator policy now stops with 65 at its file:line; the id exactly
/// as `stockade inspect` prints it is the one that applies.
#[test]
fn policy_sections_no_plugin_or_signer_can_match_stop_every_command() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let d = fx.dir();
    let signer = ok(d, &["--json", "inspect", &pkg]).json()["signer_key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = d.join("root-fs/etc/stockade/policy.toml");
    let section = |id: &str| format!("version = 1\n[signer.\"{id}\".resources]\npids_max = 7\n");
    let explain = || {
        stockade(
            d,
            &[
                "--json",
                "policy",
                "explain",
                &pkg,
                "--policy-root",
                "root-fs",
                "--trust",
                "trust",
                "--state-dir",
                "state",
            ],
        )
    };
    // The printed form applies to the package it signed.
    write(&policy, &section(&signer));
    let r = explain();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pids = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["section"] == "resource" && i["name"] == "pids_max")
        .unwrap()
        .clone();
    assert_eq!(pids["value"], 7, "{pids}");

    // The same id in lowercase: refused by every loader, naming file:line and the section.
    // (A key id of digits only, 1 in ~1800 fixtures, has no lowercase: another id stands in.)
    let mut lower = signer.to_ascii_lowercase();
    if lower == signer {
        lower = "ee91afadf064d0f4".into();
    }
    write(&policy, &section(&lower));
    let at = "root-fs/etc/stockade/policy.toml:2";
    let want = format!("[signer.\"{lower}\"] can match no signer");
    let hint = format!("write `{}`", lower.to_ascii_uppercase());
    let root = ["--policy-root", "root-fs"];
    let commands: Vec<Vec<&str>> = vec![
        vec!["policy", "lint", root[0], root[1]],
        vec!["policy", "explain", root[0], root[1]],
        vec!["exec", root[0], root[1], "--", "/bin/true"],
        vec!["run", &pkg, root[0], root[1]],
        vec!["verify", &pkg, root[0], root[1]],
        vec!["serve", "--socket", "s.sock", root[0], root[1]],
    ];
    for args in &commands {
        let r = stockade(d, args);
        assert_eq!(r.code, 65, "{args:?}: {}", r.stderr);
        for w in [at, &want, &hint] {
            assert!(r.stderr.contains(w), "{args:?}: no {w:?} in {}", r.stderr);
        }
    }
    let r = explain();
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert_eq!(r.kind(), "invalid_policy");

    // A plugin section under a name no manifest can have, as a whole policy file.
    write(
        &d.join("p.toml"),
        "version = 1\n\n[plugin.\"Hello\".network]\nmode = \"none\"\n",
    );
    for args in [
        vec!["policy", "lint", "p.toml"],
        vec!["exec", "--policy", "p.toml", "--", "/bin/true"],
    ] {
        let r = stockade(d, &args);
        assert_eq!(r.code, 65, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("p.toml:3: [plugin.\"Hello\"] can match no plugin")
                && r.stderr.contains("must match [a-z0-9][a-z0-9._-]{0,63}"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // The explain flags follow the same rules (usage error).
    for args in [
        vec!["policy", "explain", "--plugin", "hello", "--signer", &lower],
        vec!["policy", "explain", "--plugin", "Hello"],
        vec!["policy", "diff", "p.toml", "p.toml", "--plugin", "Hello"],
    ] {
        assert_eq!(stockade(d, &args).code, 64, "{args:?}");
    }
}

/// `[hooks."sertone.pre_request"] failure = "closed"` (no `on:`) was accepted, `explain` listed
/// that "hook" as failing closed and `lint` passed, while the real Sertone hook kept failing open.
/// A hook section no manifest can declare is an invalid policy for every loader now (65,
/// `invalid_policy`, the file:line of the section).
#[test]
fn hook_sections_no_plugin_can_declare_stop_the_loaders() {
    let fx = Fixture::new();
    let d = fx.dir();
    write(
        &d.join("p.toml"),
        "version = 1\n\n[hooks.\"sertone.pre_request\"]\nfailure = \"closed\"\n",
    );
    for args in [
        vec!["--json", "policy", "lint", "p.toml"],
        vec!["--json", "policy", "explain", "--policy", "p.toml"],
        vec!["--json", "exec", "--policy", "p.toml", "--", "/bin/true"],
    ] {
        let r = stockade(d, &args);
        assert_eq!(
            (r.code, r.kind().as_str()),
            (65, "invalid_policy"),
            "{args:?}: {}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("p.toml:3: [hooks.\\\"sertone.pre_request\\\"] names no hook"),
            "{args:?}: {}",
            r.stdout
        );
    }
}

/// Values that passed validation and `lint` but that no launch here could enforce (an unknown
/// system call, an rlimit above the runtime's hard limit or fs.nr_open, a CPU quota or pid limit
/// above the kernel's maxima) failed only at launch, with 125. They are invalid policies now:
/// 65 with their file:line, before anything launches, for every command that loads the policy.
#[test]
fn policy_values_no_launch_here_could_enforce_are_invalid_policies() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // The runtime's hard limits, lowered for this run only (always allowed): the policy is
    // checked against the limits of the process that loads it.
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", script, env!("CARGO_BIN_EXE_stockade")])
            .current_dir(d)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let limits = "ulimit -l 1024 && ulimit -n 4096 &&";
    let mut cases = vec![
        (
            "[seccomp]\nallow = [\"foobar\"]",
            "seccomp.allow",
            "`foobar` is not a system call",
        ),
        (
            "[resources]\nnofile = \"unlimited\"",
            "resources.nofile",
            "cannot be unlimited",
        ),
        (
            "[resources]\nnofile = \"1T\"",
            "resources.nofile",
            "fs.nr_open",
        ),
        (
            "[resources]\nnofile = 5000",
            "resources.nofile",
            "hard limit (4096)",
        ),
        (
            "[resources]\nmemlock = \"unlimited\"",
            "resources.memlock",
            "RLIMIT_MEMLOCK unlimited is above this process's hard limit (1M)",
        ),
        (
            "[resources]\ncpu_max = \"99999999999999999%\"",
            "resources.cpu_max",
            "at most",
        ),
        (
            "[resources]\npids_max = 5000000",
            "resources.pids_max",
            "at most 4194304",
        ),
    ];
    if cfg!(target_arch = "x86_64") {
        cases.push((
            "[seccomp]\nallow = [\"vm86\"]",
            "seccomp.allow",
            "not a system call on x86_64",
        ));
    }
    for (section, key, why) in &cases {
        write(
            &d.join("p.toml"),
            &format!("version = 1\n# {key}\n{section}\n"),
        );
        for cmd in [
            "\"$0\" exec --policy p.toml -- /bin/true",
            "\"$0\" policy lint p.toml",
            "\"$0\" policy explain --policy p.toml",
            "\"$0\" run --policy p.toml missing.stockade",
        ] {
            let (code, stderr) = sh(&format!("{limits} {cmd}"));
            assert_eq!(code, 65, "{section} / {cmd}: {stderr}");
            let at = format!("p.toml:4: invalid value for `{key}`");
            assert!(
                stderr.contains(&at) && stderr.contains(why),
                "{section} / {cmd}: want {at:?} and {why:?} in {stderr}"
            );
        }
    }
    // At the ceilings themselves the policy is valid.
    write(
        &d.join("p.toml"),
        "version = 1\n[resources]\nmemlock = \"1M\"\nnofile = 4096\n[seccomp]\nallow = [\"getdents64\"]\n",
    );
    let (code, stderr) = sh(&format!(
        "{limits} \"$0\" policy lint p.toml --fail-level error"
    ));
    assert_eq!(code, 0, "{stderr}");

    // Under a policy root, a plugin's section: the drop-in's file:line.
    write(&d.join("root/etc/stockade/policy.toml"), "version = 1\n");
    write(
        &d.join("root/etc/stockade/policy.d/50-x.toml"),
        "version = 1\n\n[plugin.x.seccomp]\nallow = [\"foobar\"]\n",
    );
    let (code, stderr) = sh("\"$0\" policy lint --policy-root root");
    assert_eq!(code, 65, "{stderr}");
    assert!(
        stderr
            .contains("root/etc/stockade/policy.d/50-x.toml:4: invalid value for `seccomp.allow`"),
        "{stderr}"
    );
}

/// stockade-policy(5) is written by hand (packaging/build.sh copies it; the clap tree does not
/// know the policy format): every key of a `[hooks."HOOK"]` table, as the policy's JSON Schema
/// names them, has its entry in the page's section for it.
#[test]
fn man_page_documents_every_hook_key() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let page = std::fs::read_to_string(repo.join("docs/man/stockade-policy.5")).unwrap();
    let start = page
        .find(".SS [hooks.\"HOOK\"]")
        .expect("the hooks section");
    let section = &page[start + 1..];
    let section = &section[..section.find("\n.SS ").unwrap_or(section.len())];
    let t = tempfile::tempdir().unwrap();
    let schema = ok(t.path(), &["policy", "schema"]).json();
    let hook = schema["$defs"]["HookPolicy"]["properties"]
        .as_object()
        .expect("HookPolicy in the schema");
    assert!(hook.contains_key("default"));
    // An entry is a `.TP` paragraph tagged `.B key` (a `.B key` inside another entry's text
    // is a mention, not its documentation).
    let lines: Vec<&str> = section.lines().collect();
    for key in hook.keys() {
        assert!(
            lines
                .windows(2)
                .any(|w| w[0] == ".TP" && w[1] == format!(".B {key}")),
            "stockade-policy(5) [hooks.\"HOOK\"] does not document `{key}`"
        );
    }
}

/// `stockade ARGS` in `d`, failing the test (and killing it) if it has not ended in 30 s: a
/// FIFO planted in the audit log's directory hung root's commands for good.
fn stockade_within_30s(d: &Path, args: &[&str]) -> common::Run {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .current_dir(d)
        .env_remove("STOCKADE_TRUST_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stockade {args:?} blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `d/logs`, 0750 and `owner`'s (as the packaged `/var/log/stockade` is the daemon's user's),
/// and the policy under `d/root-fs` appending to the audit log `logs/audit.log`, returned.
fn audit_log_in_a_directory_of(d: &Path, owner: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&logs, Some(owner), Some(owner)).unwrap();
    let log = logs.join("audit.log");
    write(
        &d.join("root-fs/etc/stockade/policy.toml"),
        &format!("version = 1\n[audit]\nfile = \"{}\"\n", log.display()),
    );
    log
}

/// Nothing named as a writer's temporary file (`.stockade-tmp-…`) is left in `dir`.
fn no_temporary_file_in(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".stockade-tmp-")),
        "{names:?}"
    );
}

/// Root's `verify` of `pkg` in `d` with the trust, state and policy-root directories the audit
/// tests lay out (`root-fs`: its policy names the audit log; with `--json` when `json`), killed
/// if it has not ended in 30 s.
fn verify_audited(d: &Path, pkg: &str, json: bool) -> common::Run {
    let args = [
        "verify",
        pkg,
        "--trust",
        "trust",
        "--state-dir",
        "state",
        "--policy-root",
        "root-fs",
    ];
    let json = json.then_some("--json");
    let all: Vec<&str> = json.into_iter().chain(args).collect();
    stockade_within_30s(d, &all)
}

/// The audit log's directory is another user's in the packaged layout (`/var/log/stockade`, the
/// daemon's), and root's CLI writes there. What that user can put at the log's names must
/// neither hang root's command nor have root write to, or give away, another file:
/// - a FIFO at the old fixed temporary name `<log>.head.tmp` (which root opened for writing
///   and blocked on, holding the log's lock) is not used at all: the head is written through a
///   fresh `O_EXCL` temporary file;
/// - a hard link to a file of root's there (root truncated it and gave it to the directory's
///   owner) is not touched either;
/// - a FIFO at the log itself is refused at once, 74 (the audit failure code, docs/audit.md);
/// - a hard link at the log itself (root appended to the linked file and gave it away) too.
#[test]
fn what_the_log_directorys_owner_plants_neither_hangs_nor_redirects_roots_audit_writes() {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    if !common::require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let d = fx.dir();
    let nobody = 65534;
    let log = audit_log_in_a_directory_of(d, nobody);
    let logs = d.join("logs");
    let verify = || verify_audited(d, &pkg, false);
    let fifo = |p: &Path| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        chown(p, Some(nobody), Some(nobody)).unwrap();
    };
    // Root's files the directory's owner links in (as that owner could where
    // fs.protected_hardlinks is 0; root makes the links here).
    let victim = d.join("victim");
    std::fs::write(&victim, "root's own\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let untouched = |why: &str| {
        let md = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root's own\n",
            "{why}"
        );
        assert_eq!((md.uid(), md.gid()), (0, 0), "{why}");
    };

    // The old temporary name: a FIFO, then a hard link.
    let tmp = logs.join("audit.log.head.tmp");
    fifo(&tmp);
    let r = verify();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &tmp.symlink_metadata().unwrap().file_type()
    ));
    std::fs::remove_file(&tmp).unwrap();
    std::fs::hard_link(&victim, &tmp).unwrap();
    let r = verify();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    untouched("a hard link at <log>.head.tmp");
    let r = ok(d, &["--json", "audit", "verify", log.to_str().unwrap()]);
    assert_eq!(r.json()["records"], 2);
    assert_eq!(r.json()["head"], "checked");
    // The log and its head were given to the directory's owner, 0640 whatever the umask.
    for p in [log.clone(), logs.join("audit.log.head")] {
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.mode() & 0o777),
            (nobody, 0o640),
            "{}",
            p.display()
        );
    }
    // No temporary file left behind.
    no_temporary_file_in(&logs);

    // The log itself: a FIFO, then a hard link.
    std::fs::remove_file(&log).unwrap();
    std::fs::remove_file(logs.join("audit.log.head")).unwrap();
    fifo(&log);
    let r = verify();
    assert_eq!(r.code, 74, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&victim, &log).unwrap();
    let r = verify();
    untouched("a hard link at the log");
    assert_eq!(r.code, 74, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("another link"), "{}", r.stderr);
}

/// The audit log is 0640 and its directory's owner's (the daemon's user in the packaged layout),
/// so every member of the log's group (there the `stockade` group, which gates the daemon's
/// socket: the agents) can open it read-only — and `flock` needs no more. The writers locked the
/// log itself: such a member held that lock for ever, and every audited command of root's hung
/// (here `verify`, killed after 30 s), as did the daemon's loop. Writers now lock `<log>.lock`:
/// 0600 and the directory's owner's (root hands over the one it makes), which that member
/// cannot open. A lock file of another user's is refused (78 `audit.unsafe`, nothing written);
/// the owner's, found wider, is narrowed back; one removed is made again.
#[test]
fn a_member_of_the_logs_group_cannot_stall_the_audit_writers() {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    if !common::require_root()
        || !common::require_tool("flock", "holding a lock as a member of the log's group")
    {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let d = fx.dir();
    // The daemon's user, and a user of its group only (an agent).
    let (owner, member) = (65534, 65533);
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = audit_log_in_a_directory_of(d, owner);
    let logs = d.join("logs");
    let lock = logs.join("audit.log.lock");
    let verify = || verify_audited(d, &pkg, true);
    let owned = |p: &Path| {
        let md = std::fs::metadata(p).unwrap();
        (md.uid(), md.gid(), md.mode() & 0o7777)
    };
    let r = verify();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(owned(&log), (owner, owner, 0o640));

    // The member locks the log (it can: the test would prove nothing otherwise); root's
    // command still appends.
    let (held, holder) = common::hold_lock_as(d, member, owner, "logs/audit.log", true);
    let r = verify();
    drop(holder);
    assert!(held, "the group's member could not lock the log");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    // Root made the writers' lock as the directory's owner's, 0600.
    assert_eq!(owned(&lock), (owner, owner, 0o600));
    // The writers' lock it cannot even open.
    let (held, holder) = common::hold_lock_as(d, member, owner, "logs/audit.log.lock", true);
    drop(holder);
    assert!(!held, "the group's member held the audit writers' lock");
    let r = ok(d, &["--json", "audit", "verify", log.to_str().unwrap()]);
    assert_eq!(r.json()["records"], 2);
    assert_eq!(r.json()["head"], "checked");

    // A lock file of another user's (the member's): refused, the log and its head untouched.
    chown(&lock, Some(member), Some(owner)).unwrap();
    let before = (
        std::fs::read(&log).unwrap(),
        std::fs::read(logs.join("audit.log.head")).unwrap(),
    );
    let r = verify();
    assert_eq!(r.code, 78, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.kind(), "audit.unsafe", "{}", r.stdout);
    assert!(r.stdout.contains("belongs to uid 65533"), "{}", r.stdout);
    let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
    assert!(
        hint.contains(&format!("remove {}", lock.display())),
        "{hint}"
    );
    // A writer that is neither root nor the directory's owner is refused for who it is: told
    // so, not to remove a lock file (here there is one, but removing it would change nothing).
    let r = common::stockade_as(
        member,
        d,
        &["--json", "audit", "rotate", log.to_str().unwrap()],
    );
    assert_eq!(r.code, 78, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.kind(), "audit.unsafe", "{}", r.stdout);
    let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
    assert!(hint.contains("run this as one of them"), "{hint}");
    assert!(!hint.contains("remove"), "{hint}");
    let after = (
        std::fs::read(&log).unwrap(),
        std::fs::read(logs.join("audit.log.head")).unwrap(),
    );
    assert!(before == after, "the log or its head changed");
    // The owner's, made wider since (a recursive chmod): narrowed back by the next append.
    chown(&lock, Some(owner), Some(owner)).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = verify();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(owned(&lock), (owner, owner, 0o600));
    // Removed, as the hint says: made again, the owner's.
    std::fs::remove_file(&lock).unwrap();
    let r = verify();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(owned(&lock), (owner, owner, 0o600));
    let r = ok(d, &["--json", "audit", "verify", log.to_str().unwrap()]);
    assert_eq!(r.json()["records"], 4);
    // No temporary file of the lock's making left behind.
    no_temporary_file_in(&logs);
}

/// `policy lint --json FILE` in `d`, which must exit 1 (a finding at the default fail level):
/// each finding's code, severity and line.
fn lint_findings(d: &Path, file: &str) -> Vec<(String, String, Value)> {
    let r = stockade(d, &["--json", "policy", "lint", file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["at"]["line"].clone(),
            )
        })
        .collect()
}
