//! `stockade policy lint|explain|diff|schema`: the security team's view of the operator policy.
//!
//! Exit codes (docs/exit-codes.md): 0 clean / done; 1 (`lint`) findings at or above
//! `--fail-level`; 64 usage; 65 invalid policy (the message names file:line); 66 unreadable
//! file; 80–87 when `explain PKG` cannot verify the package.

use crate::cli::{PolicyDiffArgs, PolicyExplainArgs, PolicyLintArgs};
use crate::cmd::run::trust_config_with_policy;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::keyfile::unix_now;
use crate::node::NodeIdentity;
use crate::output::{term, Output};
use crate::package::open_verified_in;
use crate::plugin_policy::{
    self, check_grants, grants_dir, high_risk_targets, read_grants, GrantStatus, GrantSubject,
    PackageFacts, Withheld,
};
use crate::policyfiles::{self, PolicyFilesError, PolicySource};
use crate::sandbox::mounts::{host_lookup, HostEntry};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use stockade_policy::operator::effective::{effective, PluginFacts};
use stockade_policy::operator::explain::{
    diff as diff_items, explain as explain_items, Change, Explanation,
};
use stockade_policy::operator::lint::{lint as lint_policy, missing_read_only, Finding, Severity};
use stockade_policy::operator::{MergedPolicy, Origin};

#[derive(Serialize)]
struct LintReport {
    ok: bool,
    layers: Vec<String>,
    fail_level: Severity,
    findings: Vec<Finding>,
}

/// Grant targets present (by file, unverified) per plugin, for the `network-without-grant`
/// lint; and a `grant-malformed` finding for every grant file that cannot be read or parsed.
/// Why the second: a launch withholds such a file whole (`grant_malformed`, every target in
/// it), so a grant deployed before a stricter parser (one target it now refuses) silently stops
/// authorising anything after an upgrade; `policy lint` in the operator's CI says which file
/// and why before a plugin loses its grants.
fn grant_targets(
    m: &MergedPolicy,
    root: &Path,
) -> (BTreeMap<String, BTreeSet<String>>, Vec<Finding>) {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Ok(r) = m.resolve(None, None) else {
        return (out, Vec::new());
    };
    let (grants, bad) = read_grants(&grants_dir(&r, root));
    for g in grants {
        out.entry(g.body.plugin.clone())
            .or_default()
            .extend(g.body.targets.iter().cloned());
    }
    let findings = bad
        .into_iter()
        .map(|w| Finding {
            at: Origin::File {
                path: w.target,
                line: None,
            },
            code: "grant-malformed",
            severity: Severity::Error,
            plugin: None,
            message: format!(
                "cannot be used, so it authorises nothing (a launch withholds it whole, \
                 `grant_malformed`; as this user — the daemon may read what this user cannot): \
                 {}",
                w.message
            ),
        })
        .collect();
    (out, findings)
}

/// `policy lint`.
pub fn lint(a: PolicyLintArgs, out: Output) -> Result<Exit, CmdError> {
    let fail_level: Severity = a
        .fail_level
        .parse()
        .map_err(|e: String| CmdError::msg(Exit::Usage, "usage", e))?;
    let src = if a.files.is_empty() {
        PolicySource::Root(a.root.policy_root.clone())
    } else {
        PolicySource::Files(a.files.clone())
    };
    let m = policyfiles::load(&src).map_err(PolicyFilesError::into_cmd)?;
    let (grants, mut findings) = grant_targets(&m, &a.root.policy_root);
    findings.extend(lint_policy(&m, &grants));
    // What the launch does with a `read_only` path depends on the host, which only the runtime
    // may look at: the same lookup as the mount plan's, so a path reported here is the one a
    // launch skips.
    findings.extend(missing_read_only(&m, &|p| {
        !matches!(host_lookup(Path::new(p)), HostEntry::Missing)
    }));
    let failing = findings.iter().any(|f| f.severity >= fail_level);
    let report = LintReport {
        ok: !failing,
        layers: m.layers.clone(),
        fail_level,
        findings,
    };
    out.emit(&report, |r| {
        let mut t = String::new();
        for f in &r.findings {
            t.push_str(&format!(
                "{}: {}: [{}]{} {}\n",
                term(&f.at.to_string()),
                f.severity.as_str(),
                f.code,
                f.plugin
                    .as_ref()
                    .map(|p| format!(" (plugin {})", term(p)))
                    .unwrap_or_default(),
                term(&f.message)
            ));
        }
        t.push_str(&format!(
            "{} finding(s) in {} file(s)\n",
            r.findings.len(),
            r.layers.len()
        ));
        t
    });
    Ok(if failing { Exit::Findings } else { Exit::Ok })
}

#[derive(Serialize)]
struct ExplainReport {
    #[serde(flatten)]
    explanation: Explanation,
    /// High-risk items withheld for lack of a valid grant (explain PKG, or --plugin with
    /// --plugin-version).
    withheld: Vec<Withheld>,
    /// The grant check of every high-risk item (empty when grants were not checked).
    grants: Vec<GrantStatus>,
    /// What the decisions assume.
    basis: String,
}

/// An explained value as text: a string as it is, anything else as JSON.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every string laid out here can come from outside: the package's name and version (explain
/// PKG), the policy layers' file names, paths and plugin names, grant targets and the grant
/// check's refusals; each is escaped with [`term`].
fn render_explain(r: &ExplainReport) -> String {
    let e = &r.explanation;
    let mut t = format!(
        "plugin: {}\nbasis: {}\nlayers: {}\n\n",
        term(e.plugin.as_deref().unwrap_or("(defaults)")),
        term(&r.basis),
        if e.layers.is_empty() {
            "(none: built-in defaults)".to_string()
        } else {
            e.layers
                .iter()
                .map(|l| term(l))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    t.push_str(&format!(
        "{:<11} {:<28} {:<24} {}\n",
        "SECTION", "ITEM", "EFFECTIVE", "DECIDED BY"
    ));
    for i in &e.items {
        let mut v = term(&value_text(&i.value)).into_owned();
        if let (Some(g), false) = (i.granted, i.section == "capability") {
            v = format!("{v} ({})", if g { "yes" } else { "no" });
        }
        t.push_str(&format!(
            "{:<11} {:<28} {:<24} {}",
            term(&i.section),
            term(&i.name),
            v,
            term(&i.decided_by)
        ));
        if !i.note.is_empty() && i.section != "seccomp" {
            t.push_str(&format!("  — {}", term(&i.note)));
        }
        t.push('\n');
    }
    for g in &r.grants {
        t.push_str(&format!("grant {:<32} {}\n", term(&g.target), g.status));
    }
    for w in &r.withheld {
        t.push_str(&format!(
            "withheld {} ({}): {}\n",
            term(&w.target),
            w.kind,
            term(&w.message)
        ));
    }
    t.push_str("\nEXPOSURE ITEM                WEIGHT  CONTRIBUTES\n");
    for x in &e.exposure_items {
        t.push_str(&format!(
            "{:<28} {:>6.2}  {:>6.2}\n",
            term(&x.item),
            x.weight,
            x.contributes
        ));
    }
    t.push_str(&format!("→ exposure {:.1}/10\n", e.exposure));
    t
}

/// `policy explain`.
pub fn explain(a: PolicyExplainArgs, out: Output) -> Result<Exit, CmdError> {
    let src = policyfiles::source(a.policy.as_deref(), &a.root.policy_root);
    let m = policyfiles::load(&src).map_err(PolicyFilesError::into_cmd)?;
    let report = match &a.package {
        Some(pkg) => {
            let defaults = m
                .resolve(None, None)
                .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
            let cfg = trust_config_with_policy(&a.trust, &defaults)?;
            let node =
                NodeIdentity::load(&cfg.state_dir).map_err(crate::node::NodeError::into_cmd)?;
            // An installed plugin's name means its stored package, as for `run` (as installed
            // when it is opened: store::with_package).
            let (_, vp) = crate::store::with_package(
                &cfg.state_dir,
                pkg,
                |p| open_verified_in(p, &cfg, &node, unix_now(), &std::env::temp_dir()),
                crate::package::VerifyError::is_not_found,
            )
            .map_err(crate::cmd::store::store_err)?;
            let vp = vp.map_err(crate::package::VerifyError::into_cmd)?;
            let facts = PackageFacts::from_package(vp.view());
            let pp = plugin_policy::for_package(&m, &facts, &a.root.policy_root, unix_now())
                .map_err(PolicyFilesError::into_cmd)?;
            ExplainReport {
                explanation: explain_items(&pp.resolved, &pp.effective),
                withheld: pp.withheld,
                grants: pp.grants,
                basis: format!(
                    "verified package {} {}: exactly what `stockade run` grants it now",
                    facts.name, facts.version
                ),
            }
        }
        None => {
            let r = m
                .resolve(a.plugin.as_deref(), a.signer.as_deref())
                .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
            let facts = PluginFacts {
                name: a.plugin.clone().unwrap_or_default(),
                version: a.plugin_version.clone(),
                ..PluginFacts::default()
            };
            let (grants, withheld, status, basis) = match (&a.plugin, &a.plugin_version) {
                (Some(p), Some(v)) => {
                    // Requested capabilities unknown: every high-risk item it could get.
                    let targets = high_risk_targets(&r, None);
                    let subject = GrantSubject {
                        name: p,
                        version: v,
                        scope: &a.scope,
                    };
                    let (ok, withheld, status) =
                        check_grants(&r, &a.root.policy_root, &subject, &targets, unix_now());
                    (
                        Some(ok),
                        withheld,
                        status,
                        format!("plugin {p} {v}, scope {}: manifest and certificate unknown (they can only narrow); grants checked now", a.scope),
                    )
                }
                (Some(_), None) => (
                    Some(BTreeSet::new()),
                    Vec::new(),
                    Vec::new(),
                    "plugin name only: manifest and certificate unknown (they can only narrow), grants not checked (high-risk items shown withheld; pass --plugin-version, or the package, to check them)".to_string(),
                ),
                _ => (
                    None,
                    Vec::new(),
                    Vec::new(),
                    "no plugin: the policy as `stockade exec` enforces it (grants apply to plugins only)".to_string(),
                ),
            };
            let e = effective(&r, &facts, grants.as_ref());
            ExplainReport {
                explanation: explain_items(&r, &e),
                withheld,
                grants: status,
                basis,
            }
        }
    };
    out.emit(&report, render_explain);
    Ok(Exit::Ok)
}

fn explain_source(p: &Path, plugin: Option<&str>) -> Result<Explanation, CmdError> {
    let src = if p.is_dir() {
        PolicySource::Root(p.to_path_buf())
    } else {
        PolicySource::File(p.to_path_buf())
    };
    let m = policyfiles::load(&src).map_err(PolicyFilesError::into_cmd)?;
    let r = m
        .resolve(plugin, None)
        .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
    let facts = PluginFacts {
        name: plugin.unwrap_or_default().to_string(),
        ..PluginFacts::default()
    };
    let e = effective(&r, &facts, None);
    Ok(explain_items(&r, &e))
}

#[derive(Serialize)]
struct DiffReport {
    a: String,
    b: String,
    exposure_a: f64,
    exposure_b: f64,
    widens: usize,
    narrows: usize,
    changes: Vec<Change>,
}

/// `policy diff`.
pub fn diff(a: PolicyDiffArgs, out: Output) -> Result<Exit, CmdError> {
    let ea = explain_source(&a.a, a.plugin.as_deref())?;
    let eb = explain_source(&a.b, a.plugin.as_deref())?;
    let changes = diff_items(&ea, &eb);
    let report = DiffReport {
        a: a.a.display().to_string(),
        b: a.b.display().to_string(),
        exposure_a: ea.exposure,
        exposure_b: eb.exposure,
        widens: changes.iter().filter(|c| c.effect == "widens").count(),
        narrows: changes.iter().filter(|c| c.effect == "narrows").count(),
        changes,
    };
    out.emit(&report, |r| {
        let mut t = String::new();
        for c in &r.changes {
            t.push_str(&format!(
                "{:<8} {:<10} {:<28} {} -> {}   ({})\n",
                c.effect,
                term(&c.section),
                term(&c.name),
                term(&c.from.to_string()),
                term(&c.to.to_string()),
                term(&c.decided_by)
            ));
        }
        t.push_str(&format!(
            "{} widen(s), {} narrow(s); exposure {:.1} -> {:.1}\n",
            r.widens, r.narrows, r.exposure_a, r.exposure_b
        ));
        t
    });
    Ok(Exit::Ok)
}

/// `policy schema`.
pub fn schema(out: Output) -> Result<Exit, CmdError> {
    let s = stockade_policy::operator::schema::json_schema();
    // The schema is JSON either way; `--json` only changes nothing.
    let _ = out;
    crate::output::print_stdout(&serde_json::to_string_pretty(&s).unwrap_or_default());
    Ok(Exit::Ok)
}
