//! The effective policy of one verified package, as `stockade run` enforces it and `stockade
//! policy explain PKG` reports it: the operator layers resolved for the plugin's name and signer,
//! the grants read from the policy's grants directory and checked against its operator keys,
//! then `stockade_policy::operator::effective::effective`.
//!
//! Grant files are `*.grant` in `trust.grants` (default `<policy root>/etc/stockade/grants`);
//! operator keys are the `.pub` files listed in `trust.operator_keys`. A high-risk item with no
//! grant that verifies is withheld and the refusal (with its kind: `grant_missing`,
//! `grant_expired`, `grant_wrong_plugin`, `grant_wrong_signer`, `grant_tampered` …) is returned
//! for the caller to report.

use crate::fileio::read_capped;
use crate::keyfile::load_public;
use crate::policyfiles::PolicyFilesError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use stockade_policy::capability::Capability;
use stockade_policy::operator::effective::{effective, Ceiling, EffectivePolicy, PluginFacts};
use stockade_policy::operator::risk::{class_of, grant_target, RiskClass};
use stockade_policy::operator::{MergedPolicy, ResolvedPolicy};
use stockade_policy::sandbox::NetworkMode;
use stockade_trust::grant::{authorise, Binding, Grant, GrantError, MAX_GRANT_BYTES};
use stockade_trust::minisign::PublicKey;

/// A high-risk item that was withheld, and why.
#[derive(Debug, serde::Serialize)]
pub struct Withheld {
    /// The grant target.
    pub target: String,
    /// The refusal's stable kind.
    pub kind: &'static str,
    /// The refusal in words.
    pub message: String,
}

/// What a package is, for the policy.
#[derive(Debug, Clone)]
pub struct PackageFacts {
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// Certificate scope (`None`: trust mode disabled and no certificate).
    pub scope: Option<String>,
    /// Signer key id.
    pub signer: Option<String>,
    /// Requested capabilities.
    pub requested: BTreeSet<Capability>,
    /// The capability ceiling the verification computed (empty when no chain verified).
    pub ceiling: BTreeSet<Capability>,
    /// Manifest hooks.
    pub hooks: Vec<String>,
}

impl PackageFacts {
    /// From a verified package (report and manifest).
    pub fn from_package(p: &crate::package::VerifiedPackage) -> Self {
        let mut f = Self::from_report(&p.report);
        f.hooks = p.manifest.manifest().hooks.clone();
        f
    }

    /// From a verification report (no hooks: the report does not list them).
    pub fn from_report(r: &crate::package::report::Report) -> Self {
        PackageFacts {
            name: r.name.clone(),
            version: r.version.clone(),
            scope: r.scope.clone(),
            signer: r.signer_key_id.clone(),
            requested: r.requested_capabilities.iter().copied().collect(),
            ceiling: r.capability_ceiling.iter().copied().collect(),
            hooks: Vec::new(),
        }
    }
}

/// The result.
#[derive(Debug)]
pub struct PluginPolicy {
    /// Resolved operator policy.
    pub resolved: ResolvedPolicy,
    /// Effective policy.
    pub effective: EffectivePolicy,
    /// Withheld high-risk items.
    pub withheld: Vec<Withheld>,
}

/// The grants directory in force.
pub fn grants_dir(r: &ResolvedPolicy, root: &Path) -> PathBuf {
    match &r.trust.grants {
        Some(g) => PathBuf::from(g),
        None => root.join("etc/stockade/grants"),
    }
}

fn read_grants(dir: &Path) -> (Vec<Grant>, Vec<Withheld>) {
    let mut grants = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (grants, bad);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "grant"))
        .collect();
    paths.sort();
    for p in paths {
        match read_capped(&p, MAX_GRANT_BYTES as u64)
            .map_err(|e| e.to_string())
            .and_then(|b| Grant::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(g) => grants.push(g),
            Err(message) => bad.push(Withheld {
                target: p.display().to_string(),
                kind: "grant_malformed",
                message,
            }),
        }
    }
    (grants, bad)
}

/// Compute a package's effective policy at time `now`.
pub fn for_package(
    merged: &MergedPolicy,
    facts: &PackageFacts,
    root: &Path,
    now: u64,
) -> Result<PluginPolicy, PolicyFilesError> {
    let resolved = merged
        .resolve(Some(&facts.name), facts.signer.as_deref())
        .map_err(PolicyFilesError::Invalid)?;
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut withheld = Vec::new();
    for k in resolved.trust.operator_keys.iter().flatten() {
        match load_public(Path::new(k)) {
            Ok(pk) => keys.push(pk),
            Err(e) => withheld.push(Withheld {
                target: k.clone(),
                kind: "operator_key_unreadable",
                message: e.to_string(),
            }),
        }
    }
    // Only the high-risk items this plugin could get need a grant.
    let mut candidates: Vec<String> = Vec::new();
    for c in &facts.requested {
        if class_of(c.as_str(), &resolved.risk) == RiskClass::High {
            candidates.push(grant_target("capability", c.as_str()));
        }
    }
    if resolved.sandbox.network == NetworkMode::Loopback
        && class_of("network", &resolved.risk) == RiskClass::High
    {
        candidates.push(grant_target("network", "loopback"));
    }
    if class_of("writable", &resolved.risk) == RiskClass::High {
        for w in &resolved.sandbox.writable {
            candidates.push(grant_target("writable", w));
        }
    }
    let mut authorised = BTreeSet::new();
    if !candidates.is_empty() {
        let (grants, bad) = read_grants(&grants_dir(&resolved, root));
        withheld.extend(bad);
        let scope = facts.scope.clone().unwrap_or_default();
        let binding = Binding {
            plugin: &facts.name,
            version: &facts.version,
            scope: &scope,
        };
        for t in candidates {
            match authorise(&grants, &keys, &binding, &t, now) {
                Ok(()) => {
                    authorised.insert(t);
                }
                Err(e) => withheld.push(withheld_from(&t, &e)),
            }
        }
    }
    let pf = PluginFacts {
        name: facts.name.clone(),
        version: Some(facts.version.clone()),
        ceiling: Some(Ceiling {
            scope: facts.scope.clone().unwrap_or_else(|| "(none)".into()),
            capabilities: facts.ceiling.clone(),
        }),
        requested: Some(facts.requested.clone()),
        hooks: facts.hooks.clone(),
    };
    let effective = effective(&resolved, &pf, Some(&authorised));
    Ok(PluginPolicy {
        resolved,
        effective,
        withheld,
    })
}

fn withheld_from(target: &str, e: &GrantError) -> Withheld {
    Withheld {
        target: target.to_string(),
        kind: e.kind(),
        message: e.to_string(),
    }
}
