use super::layers::{select, Listing, Tier};
use super::*;

fn layer(path: &str, text: &str) -> PolicyLayer {
    PolicyLayer {
        path: path.into(),
        text: text.into(),
    }
}

fn l(tier: Tier, dropin: Option<&str>, masked: bool) -> Listing {
    Listing {
        tier,
        dropin: dropin.map(String::from),
        masked,
        path: format!("{tier:?}/{}", dropin.unwrap_or("policy.toml")),
    }
}

#[test]
fn systemd_precedence_sorting_and_masking() {
    let found = vec![
        l(Tier::UsrLib, None, false),
        l(Tier::Etc, None, false),
        l(Tier::UsrLib, Some("20-net.toml"), false),
        l(Tier::Run, Some("20-net.toml"), false),
        l(Tier::UsrLib, Some("10-base.toml"), false),
        l(Tier::Etc, Some("30-x.toml"), true),
        l(Tier::UsrLib, Some("30-x.toml"), false),
        l(Tier::Etc, Some("README"), false),
    ];
    let got: Vec<String> = select(&found).into_iter().map(|l| l.path).collect();
    assert_eq!(
        got,
        ["Etc/policy.toml", "UsrLib/10-base.toml", "Run/20-net.toml"]
    );
    // A masked main file leaves only drop-ins.
    let got = select(&[l(Tier::Etc, None, true), l(Tier::UsrLib, None, false)]);
    assert!(got.is_empty());
}

#[test]
fn later_layers_win_key_by_key_with_provenance() {
    let m = merge(&[
        layer(
            "/etc/stockade/policy.toml",
            "version = 1\n[resources]\nmemory_max = \"128M\"\npids_max = 32\n",
        ),
        layer(
            "/etc/stockade/policy.d/50-mem.toml",
            "version = 1\n\n[resources]\n# more\nmemory_max = \"64M\"\n",
        ),
    ])
    .unwrap();
    let r = m.resolve(None, None).unwrap();
    assert_eq!(
        r.sandbox.resources.memory_max,
        crate::sandbox::Limit::Max(64 << 20)
    );
    assert_eq!(r.sandbox.resources.pids_max, crate::sandbox::Limit::Max(32));
    assert_eq!(
        r.origin("resources.memory_max").to_string(),
        "/etc/stockade/policy.d/50-mem.toml:5"
    );
    assert_eq!(
        r.origin("resources.pids_max").to_string(),
        "/etc/stockade/policy.toml:4"
    );
    assert_eq!(r.origin("resources.nofile"), Origin::Default);
}

#[test]
fn plugin_and_signer_sections_override_defaults() {
    let text = r#"version = 1
[network]
mode = "none"
[capabilities]
allow = ["log"]
[signer."0011223344556677".capabilities]
allow = ["log", "emit_event"]
[plugin."hello".network]
mode = "loopback"
[plugin.hello.hooks."on:flow.new"]
failure = "open"
default = { allow = true }
"#;
    let m = merge(&[layer("p.toml", text)]).unwrap();
    assert_eq!(m.plugin_names(), ["hello"]);
    let d = m.resolve(None, None).unwrap();
    assert_eq!(d.sandbox.network, crate::sandbox::NetworkMode::None);
    let h = m.resolve(Some("hello"), Some("0011223344556677")).unwrap();
    assert_eq!(h.sandbox.network, crate::sandbox::NetworkMode::Loopback);
    assert_eq!(h.origin("network.mode").to_string(), "p.toml:9");
    assert_eq!(
        h.host.capabilities.allow.as_ref().unwrap().len(),
        2,
        "the signer's allow replaces the default list"
    );
    assert_eq!(
        h.origin("hooks.\"on:flow.new\".failure").to_string(),
        "p.toml:11"
    );
    assert!(h.host.hooks["on:flow.new"].default.is_some());
    m.validate_all().unwrap();
}

/// A policy written for a newer Stockade (`version = 2`, with a section this build does not
/// know) is refused for its version, at its line — not for the unknown section, which sent the
/// operator to fix a key a newer build reads. Unknown keys are still refused, never dropped.
#[test]
fn a_newer_policy_version_is_refused_for_its_version() {
    for text in [
        "version = 2\n[attestation]\nrequire = true\n",
        "new_top_level = true\nversion = 2\n",
    ] {
        let e = merge(&[layer("p.toml", text)]).unwrap_err();
        assert!(
            matches!(&e, OperatorPolicyError::Version { found: 2, .. }),
            "{text}: {e:?}"
        );
    }
    let e = merge(&[layer(
        "p.toml",
        "version = 1\n[attestation]\nrequire = true\n",
    )])
    .unwrap_err();
    assert!(matches!(e, OperatorPolicyError::Syntax { .. }), "{e:?}");
}

#[test]
fn every_invalid_policy_names_the_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "version = 1\n[resources]\nmemory_max = \"1K\"\n",
            "p.toml:3",
        ),
        (
            "version = 1\n[resourcez]\n",
            "p.toml:2:2: unknown field `resourcez`",
        ),
        ("version = 2\n", "p.toml:1"),
        ("version = 1\n\n[trust]\nmode = \"lax\"\n", "p.toml:4:8: "),
        ("version = 1\n[risk]\nfly = \"high\"\n", "p.toml:3"),
        (
            "version = 1\n[plugin.x.resources]\npids_max = 0\n",
            "p.toml:3",
        ),
        ("version = 1\n[protocol]\nmax_in_flight = 0\n", "p.toml:3"),
        ("version = 1\n[trust]\nroots = \"rel/dir\"\n", "p.toml:3"),
        // Each operator key too (a relative one was read against the working directory).
        (
            "version = 1\n[trust]\noperator_keys = [\"/etc/stockade/op.pub\", \"keys/op.pub\"]\n",
            "p.toml:3: invalid value for `trust.operator_keys`: `keys/op.pub` must be",
        ),
        (
            "version = 1\n[trust]\noperator_keys = [\"/etc/stockade/../op.pub\"]\n",
            "p.toml:3",
        ),
        (
            "version = 1\n[trust]\nrevocation = \"/etc/stockade/../../tmp/r.json\"\n",
            "p.toml:3",
        ),
        (
            "version = 1\n[audit]\nfile = \"/var/log//a.log\"\n",
            "p.toml:3",
        ),
        ("version = 1\n[audit]\nrotate_size = \"64Q\"\n", "p.toml:3"),
        ("version = 1\n[audit]\nrotate_size = \"0\"\n", "p.toml:3"),
        ("version = 1\n[audit]\nkeep = 0\n", "p.toml:3"),
        (
            "version = 1\n[hooks.\"on:a\"]\ndeadline_ms = 0\n",
            "p.toml:3",
        ),
    ];
    for (text, want) in cases {
        let err = merge(&[layer("p.toml", text)]).and_then(|m| m.validate_all());
        let e = err.expect_err(text);
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        assert!(msg.contains(want), "{text:?}: {msg}");
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[test]
fn sections_no_plugin_or_signer_can_match_are_refused_at_their_line() {
    let long = "a".repeat(65);
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // (text, kind, file:line, what the cause says)
        (
            "version = 1\n[signer.\"ee91afadf064d0f4\".capabilities]\nallow = [\"log\"]\n".into(),
            "signer",
            "p.toml:2",
            "write `EE91AFADF064D0F4`",
        ),
        (
            "version = 1\n\n[signer.\"EE91AFADF064D0F4 \".network]\nmode = \"none\"\n".into(),
            "signer",
            "p.toml:3",
            "`EE91AFADF064D0F4 ` is not a signer key id",
        ),
        (
            "version = 1\n[signer.EE91AFADF064D0F.network]\nmode = \"none\"\n".into(),
            "signer",
            "p.toml:2",
            "16 uppercase hex digits",
        ),
        (
            "version = 1\n# x\nsigner.\"0xE91AFADF064D0F4\".network.mode = \"none\"\n".into(),
            "signer",
            "p.toml:3",
            "is not a signer key id",
        ),
        (
            "version = 1\n[plugin.\"Hello\".network]\nmode = \"loopback\"\n".into(),
            "plugin",
            "p.toml:2",
            "name `Hello` must match [a-z0-9][a-z0-9._-]{0,63}",
        ),
        // An empty section sets nothing, but it still says the operator meant some plugin.
        (
            "version = 1\n[network]\nmode = \"none\"\n[plugin.\"Hello\"]\n".into(),
            "plugin",
            "p.toml:4",
            "must match",
        ),
        (
            "version = 1\n[plugin.\"hello \".resources]\npids_max = 8\n".into(),
            "plugin",
            "p.toml:2",
            "name `hello ` must match",
        ),
        (
            "version = 1\n[plugin]\n\"-x\" = { network = { mode = \"none\" } }\n".into(),
            "plugin",
            "p.toml:3",
            "must match",
        ),
        (
            format!("version = 1\n[plugin.{long}.kv]\nmax_keys = 1\n"),
            "plugin",
            "p.toml:2",
            "must match",
        ),
    ];
    for (text, kind, at, cause) in &cases {
        let e = merge(&[layer("p.toml", text)]).expect_err(text);
        let msg = chain(&e);
        assert!(
            matches!(&e, OperatorPolicyError::SectionName { kind: k, .. } if k == kind),
            "{text:?}: {msg}"
        );
        assert!(
            msg.starts_with(&format!("{at}: [{kind}.\"")),
            "{text:?}: {msg}"
        );
        assert!(msg.contains("can match no"), "{text:?}: {msg}");
        assert!(msg.contains(cause), "{text:?}: {msg}");
    }
}

/// A hook section under a name no manifest can declare was accepted and shown by `explain` as
/// in force, while the real hook kept its default: `[hooks."sertone.pre_request"] failure =
/// "closed"` left the Sertone hook failing open. Refused now, at top level and under a plugin
/// or signer, at the section's line.
#[test]
fn hook_sections_no_plugin_can_declare_are_refused_at_their_line() {
    let cases = [
        (
            "version = 1\n[hooks.\"sertone.pre_request\"]\nfailure = \"closed\"\n",
            "p.toml:2: [hooks.\"sertone.pre_request\"]",
        ),
        (
            "version = 1\n\n[hooks.\"on:sertone.pre-request\"]\nfailure = \"closed\"\n",
            "p.toml:3: [hooks.\"on:sertone.pre-request\"]",
        ),
        (
            "version = 1\n[hooks]\n\"on:Flow.new\" = { deadline_ms = 5 }\n",
            "p.toml:3: [hooks.\"on:Flow.new\"]",
        ),
        (
            "version = 1\n[plugin.hello.hooks.\"on:flow.new \"]\nfailure = \"closed\"\n",
            "p.toml:2: [plugin.hello.hooks.\"on:flow.new \"]",
        ),
        (
            "version = 1\n[signer.\"EE91AFADF064D0F4\".hooks.\"flow.new\"]\ndeadline_ms = 5\n",
            "p.toml:2: [signer.EE91AFADF064D0F4.hooks.\"flow.new\"]",
        ),
    ];
    for (text, want) in cases {
        let e = merge(&[layer("p.toml", text)]).expect_err(text);
        let msg = chain(&e);
        assert!(
            matches!(e, OperatorPolicyError::HookName { .. }),
            "{text:?}: {msg}"
        );
        assert!(msg.starts_with(want), "{text:?}: {msg}");
        assert!(
            msg.contains("names no hook a plugin can declare")
                && msg.contains("must be `on:` followed by"),
            "{text:?}: {msg}"
        );
    }
    // Names a manifest can declare are accepted, wherever the section is.
    let ok = "version = 1\n[hooks.\"on:sertone.pre_request\"]\nfailure = \"closed\"\n\
              [plugin.hello.hooks.\"on:flow.new\"]\ndeadline_ms = 5\n";
    merge(&[layer("p.toml", ok)])
        .unwrap()
        .validate_all()
        .unwrap();
}

#[test]
fn a_bad_section_name_in_a_drop_in_names_the_drop_in() {
    let e = merge(&[
        layer("/etc/stockade/policy.toml", "version = 1\n"),
        layer(
            "/etc/stockade/policy.d/50-x.toml",
            "version = 1\n\n[signer.\"abcdef0123456789\".kv]\nmax_keys = 1\n",
        ),
    ])
    .unwrap_err();
    assert!(
        chain(&e).starts_with("/etc/stockade/policy.d/50-x.toml:3: [signer.\"abcdef0123456789\"]"),
        "{e}"
    );
}

#[test]
fn names_a_plugin_or_signer_can_have_are_accepted() {
    let long = "a".repeat(64);
    let text = format!(
        "version = 1\n[plugin.\"a.b-c_d\".kv]\nmax_keys = 1\n[plugin.{long}.kv]\nmax_keys = 2\n\
         [plugin.0x.kv]\nmax_keys = 3\n[signer.\"0123456789ABCDEF\".kv]\nmax_keys = 4\n"
    );
    let m = merge(&[layer("p.toml", &text)]).unwrap();
    m.validate_all().unwrap();
    assert_eq!(m.signer_ids(), ["0123456789ABCDEF"]);
}

#[test]
fn signer_ids_are_exactly_the_printed_form() {
    assert_eq!(check_signer_id("0123456789ABCDEF"), Ok(()));
    assert_eq!(
        check_signer_id("0123456789abcdef"),
        Err(SignerIdError::Case {
            upper: "0123456789ABCDEF".into()
        })
    );
    for bad in [
        "",
        "0123456789ABCDE",
        "0123456789ABCDEF0",
        " 123456789ABCDEF",
        "0123456789ABCDEG",
    ] {
        assert_eq!(
            check_signer_id(bad),
            Err(SignerIdError::Syntax(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn host_checks_see_every_resolution_and_name_the_line_of_the_value() {
    let text = "version = 1\n[resources]\nmemlock = \"1M\"\n[signer.\"0011223344556677\".resources]\nmemlock = \"2M\"\n[plugin.p.resources]\nmemlock = \"unlimited\"\n";
    let m = merge(&[layer("p.toml", text)]).unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    m.validate_all_with(|r| {
        seen.borrow_mut().push(r.sandbox.resources.memlock);
        Ok(())
    })
    .unwrap();
    use crate::sandbox::Limit;
    assert_eq!(
        seen.into_inner(),
        [Limit::Unlimited, Limit::Max(2 << 20), Limit::Max(1 << 20)],
        "plugin, signer, defaults"
    );
    // A host that cannot apply unlimited memlock: the error names the plugin section's line.
    let e = m
        .validate_all_with(|r| match r.sandbox.resources.memlock {
            Limit::Unlimited => Err(OperatorPolicyError::Value {
                key: "resources.memlock".into(),
                at: r.origin("resources.memlock"),
                cause: "above the hard limit".into(),
            }),
            _ => Ok(()),
        })
        .unwrap_err();
    assert_eq!(
        chain(&e),
        "p.toml:7: invalid value for `resources.memlock`: above the hard limit"
    );
}

#[test]
fn sandbox_values_no_kernel_can_apply_name_their_file_and_line() {
    let e = merge(&[layer(
        "p.toml",
        "version = 1\n[plugin.x.resources]\nnofile = \"unlimited\"\n",
    )])
    .and_then(|m| m.validate_all())
    .unwrap_err();
    assert!(
        chain(&e).starts_with("p.toml:3: invalid value for `resources.nofile`"),
        "{}",
        chain(&e)
    );
}

/// `[risk] network = "low"` lets loopback through without a grant (the effective policy grants
/// it), but lint said "no grant … it will be withheld" and nothing named the move: a reviewer
/// saw either nothing or the opposite of what runs. The move out of the high class is now the
/// finding (an error, at its line, also under a plugin), and the grant lints keep quiet when
/// there is no grant to need.
#[test]
fn lint_names_a_high_risk_item_moved_down_and_says_nothing_false_about_grants() {
    use super::effective::{effective, PluginFacts};
    use super::lint::{lint, Severity};
    let text = "version = 1\n[network]\nmode = \"loopback\"\n[risk]\nnetwork = \"low\"\n\
                [plugin.hello.network]\nmode = \"loopback\"\n\
                [plugin.other.risk]\nwritable = \"medium\"\nkv_put = \"low\"\n";
    let m = merge(&[layer("p.toml", text)]).unwrap();
    let findings = lint(&m, &BTreeMap::new());
    let at = |f: &super::lint::Finding| f.at.to_string();
    let lowered: Vec<(String, Option<String>, String)> = findings
        .iter()
        .filter(|f| f.code == "risk-lowered")
        .inspect(|f| assert_eq!(f.severity, Severity::Error, "{f:?}"))
        .map(|f| (at(f), f.plugin.clone(), f.message.clone()))
        .collect();
    assert!(
        lowered.iter().any(|(a, p, msg)| a == "p.toml:5"
            && p.is_none()
            && msg.contains("`network` moved from high to low")),
        "{lowered:?}"
    );
    assert!(
        lowered.iter().any(|(a, p, msg)| a == "p.toml:9"
            && p.as_deref() == Some("other")
            && msg.contains("`writable` moved from high to medium")),
        "{lowered:?}"
    );
    // kv_put is medium built in: moving it to low changes no grant.
    assert!(
        !lowered.iter().any(|(_, _, msg)| msg.contains("kv_put")),
        "{lowered:?}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.code == "network-without-grant" || f.code == "network-needs-grant"),
        "{findings:?}"
    );
    // What lint no longer contradicts: no grant, and network is granted.
    let r = m.resolve(Some("hello"), None).unwrap();
    let facts = PluginFacts {
        name: "hello".into(),
        ..PluginFacts::default()
    };
    let e = effective(&r, &facts, Some(&std::collections::BTreeSet::new()));
    assert!(e.network.granted, "{:?}", e.network);
}

/// The findings of `code` when linting `text` as p.toml (no grants).
fn lint_code(text: &str, code: &str) -> Vec<super::lint::Finding> {
    let m = merge(&[layer("p.toml", text)]).unwrap();
    super::lint::lint(&m, &BTreeMap::new())
        .into_iter()
        .filter(|f| f.code == code)
        .collect()
}

/// `nproc`, `fsize`, `memlock` and `cpu_time_secs` = "unlimited" read as bounds that are gone,
/// yet lint said nothing (audit-90 L2): one `rlimit-unlimited` warning per key, at its line,
/// naming the key — and, as `swap-unlimited`, none for `nproc`/`memlock` while the cgroup limit
/// they back is itself unlimited (`pids-unlimited` / `memory-unlimited` already say it).
#[test]
fn lint_warns_of_each_unlimited_rlimit_once() {
    use super::lint::Severity;
    let found = |text: &str| -> Vec<(String, String)> {
        lint_code(text, "rlimit-unlimited")
            .into_iter()
            .inspect(|f| assert_eq!(f.severity, Severity::Warning, "{f:?}"))
            .map(|f| (f.at.to_string(), f.message))
            .collect()
    };
    let all = found(
        "version = 1\n[resources]\nnproc = \"unlimited\"\nfsize = \"unlimited\"\n\
         memlock = \"unlimited\"\ncpu_time_secs = \"unlimited\"\n",
    );
    for (line, key) in [
        (3, "nproc"),
        (4, "fsize"),
        (5, "memlock"),
        (6, "cpu_time_secs"),
    ] {
        assert!(
            all.iter().any(|(at, msg)| *at == format!("p.toml:{line}")
                && msg.starts_with(&format!("no `{key}` limit"))),
            "{key}: {all:?}"
        );
    }
    assert_eq!(all.len(), 4, "{all:?}");
    // Under a plugin section too.
    let plugin = found("version = 1\n[plugin.hello.resources]\nfsize = \"unlimited\"\n");
    let at: Vec<&str> = plugin.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(at, ["p.toml:3"], "{plugin:?}");
    // Said once per unbounded resource: the cgroup lints already cover these two.
    let covered = found(
        "version = 1\n[resources]\npids_max = \"unlimited\"\nmemory_max = \"unlimited\"\n\
         nproc = \"unlimited\"\nmemlock = \"unlimited\"\n",
    );
    assert!(covered.is_empty(), "{covered:?}");
    // The defaults bound all four.
    assert!(found("version = 1\n").is_empty());
}

/// `[capabilities]` restricts only through `allow`; without it the section restricts nothing,
/// yet an empty one reads as "none allowed" (audit-90 L6). Lint warns at the section's line —
/// a section that sets no key, also under a plugin that has no other section — saying what is
/// in force; `allow = []` (none allowed) is no finding.
#[test]
fn lint_warns_of_a_capabilities_section_without_allow() {
    use super::lint::Severity;
    let found = |text: &str| -> Vec<(String, Option<String>, String)> {
        lint_code(text, "capabilities-without-allow")
            .into_iter()
            .inspect(|f| assert_eq!(f.severity, Severity::Warning, "{f:?}"))
            .map(|f| (f.at.to_string(), f.plugin, f.message))
            .collect()
    };
    let top = found("version = 1\n# none, the reader thinks\n[capabilities]\n");
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(top[0].0, "p.toml:3");
    assert!(top[0].2.contains("does not restrict"), "{top:?}");
    // Under a plugin, with an allowlist at top level: the section changes nothing.
    let plugin = found(
        "version = 1\n[capabilities]\nallow = [\"log\"]\n[plugin.hello.capabilities]\n\
         [plugin.solo]\ncapabilities = {}\n",
    );
    assert!(
        plugin.iter().any(|(at, p, msg)| at == "p.toml:4"
            && p.as_deref() == Some("hello")
            && msg.contains("the allowlist set at p.toml:3 applies")),
        "{plugin:?}"
    );
    assert!(
        plugin
            .iter()
            .any(|(at, p, _)| at == "p.toml:6" && p.as_deref() == Some("solo")),
        "{plugin:?}"
    );
    assert_eq!(plugin.len(), 2, "{plugin:?}");
    assert!(found("version = 1\n[capabilities]\nallow = []\n").is_empty());
    assert!(found("version = 1\n").is_empty());
    // What the warning says is what resolution does: no operator restriction.
    let m = merge(&[layer("p.toml", "version = 1\n[capabilities]\n")]).unwrap();
    assert_eq!(m.resolve(None, None).unwrap().host.capabilities.allow, None);
}

/// A `[plugin."X"]` key beats the same key of a `[signer."K"]` section, wider or not, and lint
/// looked at each section alone: a plugin section could undo what its signer's section
/// restricted with no finding (audit-90 L5). Now each such key is a warning at the plugin's
/// line, naming the signer's line and what widens; a key that narrows, or that the signer's
/// section does not set, is none.
#[test]
fn lint_warns_when_a_plugin_key_widens_its_signers() {
    use super::lint::Severity;
    let text = "version = 1\n\
                [signer.\"ABCDEF0123456789\".resources]\n\
                memory_max = \"128M\"\n\
                pids_max = 16\n\
                [signer.\"ABCDEF0123456789\".risk]\n\
                kv_put = \"high\"\n\
                [plugin.hello.resources]\n\
                memory_max = \"1G\"\n\
                pids_max = 8\n\
                [plugin.hello.network]\n\
                mode = \"loopback\"\n\
                [plugin.hello.risk]\n\
                kv_put = \"medium\"\n\
                [plugin.other.resources]\n\
                swap_max = \"64M\"\n";
    let found: Vec<(String, Option<String>, String)> = lint_code(text, "plugin-widens-signer")
        .into_iter()
        .inspect(|f| assert_eq!(f.severity, Severity::Warning, "{f:?}"))
        .map(|f| (f.at.to_string(), f.plugin, f.message))
        .collect();
    let at: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    // memory_max (line 8) and kv_put's class (line 13) widen; pids_max (9) narrows; network
    // (11) and other's swap_max (15) are keys the signer's section does not set.
    assert_eq!(at, ["p.toml:8", "p.toml:13"], "{found:?}");
    for (_, plugin, msg) in &found {
        assert_eq!(plugin.as_deref(), Some("hello"));
        assert!(
            msg.contains("when `hello` is signed by ABCDEF0123456789"),
            "{msg}"
        );
    }
    assert!(found[0].2.contains("at p.toml:3"), "{found:?}");
    assert!(
        found[0]
            .2
            .contains("resource memory_max: 134217728 -> 1073741824"),
        "{found:?}"
    );
    assert!(
        found[1].2.contains("at p.toml:6")
            && found[1]
                .2
                .contains("capability kv_put: \"withheld\" -> \"granted\""),
        "{found:?}"
    );
    // And it is what the launch resolves for that pair.
    let m = merge(&[layer("p.toml", text)]).unwrap();
    let r = m.resolve(Some("hello"), Some("ABCDEF0123456789")).unwrap();
    assert_eq!(
        r.sandbox.resources.memory_max,
        crate::sandbox::Limit::Max(1 << 30)
    );
}

/// A `read_only` entry the host lacks is skipped at launch (audit-90 L9): `missing_read_only`
/// names each one a file wrote, with what makes it hard to see (trailing space, non-ASCII
/// look-alike, the trimmed path that does exist), under a plugin too; the built-in default
/// entries, which no host has all of, are not reported even when a file writes them out.
#[test]
fn missing_read_only_entries_are_named_with_why() {
    use super::lint::{missing_read_only, Severity};
    let host = ["/usr", "/srv/app"];
    let exists = |p: &str| host.contains(&p);
    let text = "version = 1\n[filesystem]\n\
                read_only = [\"/usr\", \"/lib32\", \"/libx32\", \"/srv/app \", \"/srv/\u{0430}pp\", \"/srv/gone\"]\n\
                [plugin.hello.filesystem]\nread_only = [\"/srv/other\"]\n";
    let m = merge(&[layer("p.toml", text)]).unwrap();
    let found = missing_read_only(&m, &exists);
    let msgs: Vec<String> = found
        .iter()
        .inspect(|f| {
            assert_eq!(
                (f.code, f.severity),
                ("read-only-missing", Severity::Warning)
            )
        })
        .map(|f| format!("{} {:?} {}", f.at, f.plugin, f.message))
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    let has = |s: &str| msgs.iter().any(|m| m.contains(s));
    assert!(
        has("p.toml:3 None read_only entry \"/srv/app \" is not on this host"),
        "{msgs:#?}"
    );
    assert!(
        has("it ends in whitespace, \"/srv/app\" exists"),
        "{msgs:#?}"
    );
    assert!(
        has("\"/srv/\u{0430}pp\" is not on this host")
            && has("it has non-ASCII characters (U+0430)"),
        "{msgs:#?}"
    );
    assert!(
        has("p.toml:3 None read_only entry \"/srv/gone\""),
        "{msgs:#?}"
    );
    assert!(
        has("p.toml:5 Some(\"hello\") read_only entry \"/srv/other\""),
        "{msgs:#?}"
    );
    assert!(!has("/lib32") && !has("/libx32"), "{msgs:#?}");
    // Nothing written, nothing reported (the default list is not checked against the host).
    let m = merge(&[layer("p.toml", "version = 1\n")]).unwrap();
    assert!(missing_read_only(&m, &|_| false).is_empty());
}

/// Loading checks each section alone and a launch resolves the plugin with its signer: a
/// signer's `read_only` path inside a plugin's `writable` one is valid in either section and
/// invalid together, so `policy lint` passed clean and every launch of the plugin signed by
/// that key was refused (65). Now an error finding at the plugin section's first line, naming
/// the pair and the error; a pair that resolves is none.
#[test]
fn lint_reports_a_plugin_and_signer_pair_invalid_together() {
    use super::lint::Severity;
    let text = "version = 1\n\
                [signer.\"ABCDEF0123456789\".filesystem]\n\
                read_only = [\"/srv/app/config\"]\n\
                [plugin.hello.resources]\n\
                pids_max = 8\n\
                [plugin.hello.filesystem]\n\
                writable = [\"/srv/app\"]\n\
                [plugin.other.filesystem]\n\
                writable = [\"/srv/other\"]\n";
    let m = merge(&[layer("p.toml", text)]).unwrap();
    m.validate_all().unwrap();
    let launch = m.resolve(Some("hello"), Some("ABCDEF0123456789"));
    assert!(launch.is_err(), "the launch refuses the pair");
    let found = lint_code(text, "pair-invalid");
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.plugin.as_deref(), Some("hello"));
    assert_eq!(
        f.at.to_string(),
        "p.toml:5",
        "the plugin section's first line"
    );
    assert!(
        f.message.contains("[signer.\"ABCDEF0123456789\"]")
            && f.message
                .contains("every launch of `hello` signed by ABCDEF0123456789")
            && f.message.contains(&launch.unwrap_err().to_string()),
        "{f:?}"
    );
    m.resolve(Some("other"), Some("ABCDEF0123456789")).unwrap();
}

/// `cpu_max = "unlimited"` counted only in `policy diff` as a widening; lint said nothing
/// (helper-94): a warning at its line, under a plugin section too; a quota is none.
#[test]
fn lint_warns_of_no_cpu_quota() {
    use super::lint::Severity;
    let at = |text: &str| -> Vec<String> {
        lint_code(text, "cpu-unlimited")
            .into_iter()
            .inspect(|f| assert_eq!(f.severity, Severity::Warning, "{f:?}"))
            .map(|f| f.at.to_string())
            .collect()
    };
    assert_eq!(
        at("version = 1\n[resources]\ncpu_max = \"unlimited\"\n"),
        ["p.toml:3"]
    );
    assert_eq!(
        at("version = 1\n[plugin.hello.resources]\ncpu_max = \"unlimited\"\n"),
        ["p.toml:3"]
    );
    assert!(at("version = 1\n[resources]\ncpu_max = \"250%\"\n").is_empty());
    assert!(at("version = 1\n").is_empty());
}

/// Lint ran on each section alone: a signer section's bounded `memory_max` and a plugin
/// section's unlimited `swap_max` (or the reverse), over defaults without a memory limit, lint
/// clean as sections, and the launch of the plugin signed by that key has a bounded memory
/// and unbounded swap (helper-94's leftover). Now the pair is linted as the launch resolves
/// it: `swap-unlimited` once, at the swap line, naming both sections; a pair that adds
/// nothing (`other`) is silent, and so is what a section alone already reported.
#[test]
fn lint_reports_what_only_a_plugin_and_signer_pair_produces() {
    use super::lint::Severity;
    let k = "ABCDEF0123456789";
    let found = |text: &str, code: &str| -> Vec<(String, Option<String>, String)> {
        lint_code(text, code)
            .into_iter()
            .map(|f| (f.at.to_string(), f.plugin, f.message))
            .collect()
    };
    let text = format!(
        "version = 1\n\
         [resources]\n\
         memory_max = \"unlimited\"\n\
         [signer.\"{k}\".resources]\n\
         memory_max = \"128M\"\n\
         [plugin.hello.resources]\n\
         swap_max = \"unlimited\"\n\
         [plugin.other.resources]\n\
         pids_max = 8\n"
    );
    let swap = found(&text, "swap-unlimited");
    assert_eq!(swap.len(), 1, "{swap:?}");
    assert_eq!(swap[0].0, "p.toml:7");
    assert_eq!(swap[0].1.as_deref(), Some("hello"));
    assert!(
        swap[0]
            .2
            .contains(&format!("when `hello` is signed by {k}"))
            && swap[0].2.contains("[plugin.\"hello\"]")
            && swap[0].2.contains(&format!("[signer.\"{k}\"]"))
            && swap[0].2.contains("no swap limit"),
        "{swap:?}"
    );
    assert!(lint_code(&text, "swap-unlimited")
        .iter()
        .all(|f| f.severity == Severity::Warning));
    // The defaults' own finding is not repeated for each pair.
    assert_eq!(found(&text, "memory-unlimited").len(), 1);
    // The reverse: the signer leaves swap unlimited, the plugin bounds memory.
    let text = format!(
        "version = 1\n\
         [resources]\n\
         memory_max = \"unlimited\"\n\
         [signer.\"{k}\".resources]\n\
         swap_max = \"unlimited\"\n\
         [plugin.hello.resources]\n\
         memory_max = \"64M\"\n"
    );
    let swap = found(&text, "swap-unlimited");
    assert_eq!(swap.len(), 1, "{swap:?}");
    assert_eq!(
        (swap[0].0.as_str(), swap[0].1.as_deref()),
        ("p.toml:5", Some("hello"))
    );
    // Another rule: a signer's loopback network is a plugin's network without a grant.
    let text = format!(
        "version = 1\n[signer.\"{k}\".network]\nmode = \"loopback\"\n\
         [plugin.hello.resources]\npids_max = 8\n"
    );
    let net = lint_code(&text, "network-without-grant");
    assert_eq!(net.len(), 1, "{net:?}");
    assert_eq!(net[0].severity, Severity::Error);
    assert_eq!(net[0].at.to_string(), "p.toml:3");
    assert!(
        net[0].message.contains("when `hello` is signed by"),
        "{net:?}"
    );
    // And a rule's severity the pair raises: the signer's fail-open hook is a warning alone,
    // an error with the plugin's allowing default.
    let text = format!(
        "version = 1\n[signer.\"{k}\".hooks.\"on:flow.new\"]\nfailure = \"open\"\n\
         [plugin.hello.hooks.\"on:flow.new\"]\ndefault = {{ allow = true }}\n"
    );
    let open: Vec<(String, Severity, Option<String>)> = lint_code(&text, "hook-fail-open")
        .into_iter()
        .filter(|f| f.at.to_string() == "p.toml:3")
        .map(|f| (f.at.to_string(), f.severity, f.plugin))
        .collect();
    assert_eq!(
        open,
        [
            (
                "p.toml:3".to_string(),
                Severity::Warning,
                Some(k.to_string())
            ),
            (
                "p.toml:3".to_string(),
                Severity::Error,
                Some("hello".to_string())
            ),
        ],
        "{open:?}"
    );
    // Nothing new in a pair: nothing more.
    let text = format!(
        "version = 1\n[signer.\"{k}\".resources]\nmemory_max = \"128M\"\n\
         [plugin.hello.resources]\npids_max = 8\n"
    );
    let m = merge(&[layer("p.toml", &text)]).unwrap();
    let all = super::lint::lint(&m, &BTreeMap::new());
    assert!(
        all.iter()
            .all(|f| !f.message.contains("when `hello` is signed")),
        "{all:?}"
    );
}

/// `plugin-widens-signer` compared only what `policy explain` ranks, and the `[kv]` quotas,
/// hook `deadline_ms` and a hook's fail-open `default` were unranked or not explained at all:
/// a plugin section raising its signer's kv quota or hook deadline, or making a fail-open
/// hook's answer allow, was no finding. Now each is, at the plugin's line; lowering is none.
#[test]
fn lint_warns_when_a_plugin_raises_its_signers_kv_quota_or_hook_deadline() {
    let k = "ABCDEF0123456789";
    let text = format!(
        "version = 1\n\
         [signer.\"{k}\".kv]\n\
         max_keys = 100\n\
         max_value_bytes = 4096\n\
         [signer.\"{k}\".hooks.\"on:flow.new\"]\n\
         deadline_ms = 500\n\
         failure = \"open\"\n\
         default = {{ allow = false }}\n\
         [plugin.hello.kv]\n\
         max_keys = 5000\n\
         max_value_bytes = 1024\n\
         [plugin.hello.hooks.\"on:flow.new\"]\n\
         deadline_ms = 9000\n\
         default = {{ allow = true }}\n"
    );
    let found: Vec<(String, String)> = lint_code(&text, "plugin-widens-signer")
        .into_iter()
        .map(|f| (f.at.to_string(), f.message))
        .collect();
    let at: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    // max_keys (10), deadline_ms (13), default (14) widen; max_value_bytes (11) narrows.
    assert_eq!(at, ["p.toml:10", "p.toml:13", "p.toml:14"], "{found:?}");
    assert!(found[0].1.contains("kv max_keys: 100 -> 5000"), "{found:?}");
    assert!(
        found[1]
            .1
            .contains("hook on:flow.new deadline_ms: 500 -> 9000"),
        "{found:?}"
    );
    assert!(
        found[2]
            .1
            .contains("hook on:flow.new default: {\"allow\":false} -> {\"allow\":true}"),
        "{found:?}"
    );
    // `policy explain` shows the quotas, and `diff` ranks them.
    let m = merge(&[layer("p.toml", &text)]).unwrap();
    let r = m.resolve(Some("hello"), Some(k)).unwrap();
    let facts = super::effective::PluginFacts {
        name: "hello".into(),
        ..Default::default()
    };
    let e = super::explain::explain(&r, &super::effective::effective(&r, &facts, None));
    let kv: Vec<(&str, &serde_json::Value, Option<f64>)> = e
        .items
        .iter()
        .filter(|i| i.section == "kv")
        .map(|i| (i.name.as_str(), &i.value, i.width))
        .collect();
    assert_eq!(kv.len(), 4, "{kv:?}");
    assert_eq!(kv[0].0, "max_keys");
    assert_eq!(kv[0].1, &serde_json::json!(5000));
}

/// `[audit] rotate_size` takes bytes or K/M/G (powers of 1024), as `audit rotate --min-size`.
#[test]
fn audit_sizes_parse_as_documented() {
    use super::parse_size;
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("2g"), Some(2 << 30));
    assert_eq!(parse_size("1K"), Some(1024));
    for bad in ["", "M", "-1", "1.5M", "64MB", " 1", "99999999999999999999G"] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
}

/// A size past the largest is said to be too large, with the largest: not "not a size above
/// 0", which sent the operator looking for a typo in `99999999999G`. The same for the CLI's
/// `--min-size` (the same parser) and the sandbox's sizes (`memory_max`, `pids_max` …).
#[test]
fn a_size_too_large_is_said_to_be_too_large() {
    assert_eq!(
        try_parse_size("99999999999G"),
        Err(SizeError::TooLarge("99999999999G".into()))
    );
    assert_eq!(
        try_parse_size("99999999999999999999"),
        Err(SizeError::TooLarge("99999999999999999999".into()))
    );
    assert_eq!(try_parse_size("17179869183G"), Ok(17_179_869_183 << 30));
    assert_eq!(
        try_parse_size("64Q"),
        Err(SizeError::NotASize("64Q".into()))
    );
    for (key, text, want) in [
        (
            "rotate_size",
            "version = 1\n[audit]\nrotate_size = \"99999999999G\"\n",
            "too large: a size is at most 18446744073709551615 bytes (17179869183G)",
        ),
        (
            "memory_max",
            "version = 1\n[resources]\nmemory_max = \"99999999999G\"\n",
            "too large: at most 18446744073709551615 (16777215T)",
        ),
    ] {
        let e = merge(&[layer("p.toml", text)])
            .and_then(|m| m.validate_all())
            .expect_err(key);
        let msg = chain(&e);
        assert!(msg.contains("p.toml:3"), "{msg}");
        assert!(msg.contains(want), "{msg}");
        assert!(!msg.contains("above 0"), "{msg}");
    }
}

/// Many sections over several layers (a fleet's drop-ins): each resolution takes exactly its
/// own sections over the top-level keys, whatever sorts around them — `a` beside `a.b` and
/// `a-1`, the top-level keys sorting before `plugin`, between it and `signer` (`resources`),
/// and after it (`trust`) — and no other section's values. Resolutions read their two
/// sections' ranges of the merged map, not every leaf (`MergedPolicy::section_leaves`).
#[test]
fn many_sections_each_resolve_to_their_own_values() {
    let mut layers = vec![layer(
        "/etc/stockade/policy.toml",
        "version = 1\n[capabilities]\nallow = [\"log\"]\n[resources]\npids_max = 48\n\
         [trust]\nkeep_trees = 3\n",
    )];
    for f in 0..4 {
        let mut text = String::from("version = 1\n");
        for i in 0..500 {
            let mib = 8 + f * 500 + i;
            text.push_str(&format!(
                "[plugin.\"p{f}-{i}\".resources]\nmemory_max = \"{mib}M\"\n"
            ));
        }
        layers.push(layer(&format!("/etc/stockade/policy.d/{f}.toml"), &text));
    }
    layers.push(layer(
        "/etc/stockade/policy.d/9.toml",
        "version = 1\n[plugin.\"a\".resources]\nmemory_max = \"10M\"\n\
         [plugin.\"a.b\".resources]\npids_max = 7\n[plugin.\"a-1\".resources]\npids_max = 5\n\
         [signer.\"00000000000000AA\".resources]\nmemory_max = \"20M\"\npids_max = 9\n",
    ));
    let m = merge(&layers).unwrap();
    m.validate_all_with(|_| Ok(())).unwrap();
    let mib = |n: u64| crate::sandbox::Limit::Max(n << 20);
    for (f, i) in [(0, 0), (1, 250), (3, 499)] {
        let r = m.resolve(Some(&format!("p{f}-{i}")), None).unwrap();
        assert_eq!(r.sandbox.resources.memory_max, mib(8 + f * 500 + i));
        assert_eq!(r.sandbox.resources.pids_max, crate::sandbox::Limit::Max(48));
        assert_eq!(r.trust.keep_trees, Some(3));
    }
    let a = m.resolve(Some("a"), None).unwrap();
    assert_eq!(a.sandbox.resources.memory_max, mib(10));
    assert_eq!(a.sandbox.resources.pids_max, crate::sandbox::Limit::Max(48));
    let ab = m.resolve(Some("a.b"), None).unwrap();
    assert_eq!(ab.sandbox.resources.pids_max, crate::sandbox::Limit::Max(7));
    assert_eq!(
        ab.sandbox.resources.memory_max,
        m.resolve(None, None).unwrap().sandbox.resources.memory_max
    );
    let a1 = m.resolve(Some("a-1"), None).unwrap();
    assert_eq!(a1.sandbox.resources.pids_max, crate::sandbox::Limit::Max(5));
    assert_eq!(a1.trust.keep_trees, Some(3));
    // The plugin's section over the signer's, key by key.
    let pair = m.resolve(Some("a"), Some("00000000000000AA")).unwrap();
    assert_eq!(pair.sandbox.resources.memory_max, mib(10));
    assert_eq!(
        pair.sandbox.resources.pids_max,
        crate::sandbox::Limit::Max(9)
    );
    let allow = pair.host.capabilities.allow.unwrap();
    assert_eq!(allow.len(), 1);
    assert_eq!(allow.iter().next().unwrap().to_string(), "log");
    assert_eq!(m.plugin_names().len(), 2003);
}

/// `trust.keep_trees` and `trust.keep_trees_max_mib` bound the trees `stockade run` keeps; a
/// daemon extracts each package once per load and keeps that tree until the unload, whatever
/// they say (audit-145 asked whether `serve` ignoring them was a defect: it is not, but nothing
/// told the operator). A file setting either is an info finding at its line, once (not again
/// for every plugin section), and `explain` notes both run-only; the built-in default is no
/// finding.
#[test]
fn keep_trees_are_said_to_apply_to_run_only() {
    use super::lint::Severity;
    let text = "version = 1\n[trust]\nkeep_trees = 3\nkeep_trees_max_mib = 64\n\
                [plugin.hello.resources]\npids_max = 7\n";
    let found: Vec<(String, Severity, String)> = lint_code(text, "keep-trees-run-only")
        .into_iter()
        .map(|f| (f.at.to_string(), f.severity, f.message))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    for ((at, sev, msg), (line, key)) in found
        .iter()
        .zip([(3, "keep_trees"), (4, "keep_trees_max_mib")])
    {
        assert_eq!(at, &format!("p.toml:{line}"));
        assert_eq!(*sev, Severity::Info);
        assert!(msg.starts_with(&format!("`trust.{key}` bounds")), "{msg}");
        assert!(msg.contains("`stockade serve` ignores it"), "{msg}");
    }
    assert!(lint_code("version = 1\n", "keep-trees-run-only").is_empty());
    let m = merge(&[layer("p.toml", text)]).unwrap();
    let r = m.resolve(None, None).unwrap();
    let facts = super::effective::PluginFacts::default();
    let e = super::explain::explain(&r, &super::effective::effective(&r, &facts, None));
    for key in ["keep_trees", "keep_trees_max_mib"] {
        let item = e
            .items
            .iter()
            .find(|i| i.section == "trust" && i.name == key)
            .unwrap();
        assert!(item.note.starts_with("stockade run only"), "{item:?}");
    }
}

/// Two `[audit]` sections are the same in effect when each value applies alike, whatever its
/// spelling: `serve` compares them at a SIGHUP to say whether the sinks read at start are
/// changed (review-146: compared as written, `rotate_size = "1K"` against `"1024"`, or a
/// `stderr = false` spelled out, warned of a change that was none).
#[test]
fn audit_sections_compare_as_they_apply() {
    use super::AuditSection;
    let base = AuditSection {
        file: Some("/var/log/stockade/audit.log".into()),
        rotate_size: Some("1024".into()),
        keep: Some(3),
        ..AuditSection::default()
    };
    let same = AuditSection {
        rotate_size: Some("1K".into()),
        stderr: Some(false),
        journal: Some(false),
        ..base.clone()
    };
    assert!(base.same_in_effect(&same) && same.same_in_effect(&base));
    for other in [
        AuditSection {
            rotate_size: Some("2K".into()),
            ..base.clone()
        },
        AuditSection {
            rotate_size: None,
            ..base.clone()
        },
        AuditSection {
            stderr: Some(true),
            ..base.clone()
        },
        AuditSection {
            journal: Some(true),
            ..base.clone()
        },
        AuditSection {
            keep: None,
            ..base.clone()
        },
        AuditSection {
            file: None,
            ..base.clone()
        },
    ] {
        assert!(!base.same_in_effect(&other), "{other:?}");
    }
}
