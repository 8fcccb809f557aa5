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
//!
//! [`for_launch`] is the one path `stockade run` and `stockade serve` (every load and every
//! restart) take from a verified package to what it is launched with: the effective policy,
//! the `--allow-capability` flags, and the audit records of each grant and each withheld item.

use crate::audit::{self, AuditLog, Event, Record};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::read_capped;
use crate::keyfile::load_public;
use crate::package::PackageView;
use crate::policyfiles::PolicyFilesError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use stockade_policy::capability::Capability;
use stockade_policy::operator::effective::{effective, Ceiling, EffectivePolicy, PluginFacts};
use stockade_policy::operator::explain::explain;
use stockade_policy::operator::risk::{class_of, grant_target, RiskClass};
use stockade_policy::operator::{MergedPolicy, ResolvedPolicy};
use stockade_policy::protocol::host::{HookPolicy, HostPolicy};
use stockade_policy::sandbox::{NetworkMode, ValidatedSandboxPolicy};
use stockade_trust::grant::{authorising, Binding, Grant, GrantError, MAX_GRANT_BYTES};
use stockade_trust::minisign::PublicKey;

/// A high-risk item that was withheld, and why.
#[derive(Debug, Clone, serde::Serialize)]
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
    pub fn from_package(p: PackageView<'_>) -> Self {
        let mut f = Self::from_report(p.report);
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
    /// The grant check of every high-risk item the plugin could get.
    pub grants: Vec<GrantStatus>,
    /// Whether any high-risk item needed a grant (then grant files and the clock were read).
    pub grants_needed: bool,
}

impl PluginPolicy {
    /// When the first grant this policy was decided with expires (Unix seconds; none when no
    /// high-risk item was granted): from then on the decision would withhold that item.
    pub fn grants_expire(&self) -> Option<u64> {
        self.grants.iter().filter_map(|g| g.expires_at).min()
    }
}

/// One high-risk item's grant check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantStatus {
    /// The grant target (`capability:<cap>`, `network:loopback`, `writable:<path>`).
    pub target: String,
    /// `valid`, or the refusal's kind (`grant_missing`, `grant_expired`, …).
    pub status: &'static str,
    /// The refusal in words (empty when valid).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When valid, until when (Unix seconds): `serve` relaunches a plugin then.
    #[serde(skip)]
    pub expires_at: Option<u64>,
    /// When valid, the grant that authorised it, as its `grant` audit record names it
    /// (`issuer_key_id`, `issued_at`, `expires_at`, `scope`): which of the operator's grants
    /// let a high-risk item through.
    #[serde(skip)]
    pub grant: Option<serde_json::Value>,
}

/// Who a grant must be bound to.
#[derive(Debug, Clone)]
pub struct GrantSubject<'a> {
    /// Plugin name.
    pub name: &'a str,
    /// Exact version.
    pub version: &'a str,
    /// Certificate scope (`any`, `license:<serial>`, `hardware:<id>`).
    pub scope: &'a str,
}

/// The grant targets of the high-risk items a plugin could get under `resolved`: the
/// capabilities it requests (`None`: unknown, so every capability) that are high risk, network
/// loopback, and each writable path.
pub fn high_risk_targets(
    resolved: &ResolvedPolicy,
    requested: Option<&BTreeSet<Capability>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for c in Capability::ALL {
        if requested.is_some_and(|r| !r.contains(&c)) {
            continue;
        }
        if class_of(c.as_str(), &resolved.risk) == RiskClass::High {
            out.push(grant_target("capability", c.as_str()));
        }
    }
    if resolved.sandbox.network == NetworkMode::Loopback
        && class_of("network", &resolved.risk) == RiskClass::High
    {
        out.push(grant_target("network", "loopback"));
    }
    if class_of("writable", &resolved.risk) == RiskClass::High {
        for w in &resolved.sandbox.writable {
            out.push(grant_target("writable", w));
        }
    }
    out
}

/// Check `targets` against the grants in force for `resolved` (files in its grants directory,
/// signatures by its operator keys) at `now`: the authorised targets, the refusals (also
/// unreadable keys and malformed grant files), and one status per target.
pub fn check_grants(
    resolved: &ResolvedPolicy,
    root: &Path,
    subject: &GrantSubject<'_>,
    targets: &[String],
    now: u64,
) -> (BTreeSet<String>, Vec<Withheld>, Vec<GrantStatus>) {
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut withheld = Vec::new();
    let mut status = Vec::new();
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
    let mut authorised = BTreeSet::new();
    if targets.is_empty() {
        return (authorised, withheld, status);
    }
    let (grants, bad) = read_grants(&grants_dir(resolved, root));
    withheld.extend(bad);
    let binding = Binding {
        plugin: subject.name,
        version: subject.version,
        scope: subject.scope,
    };
    for t in targets {
        match authorising(&grants, &keys, &binding, t, now) {
            Ok(g) => {
                authorised.insert(t.clone());
                status.push(GrantStatus {
                    target: t.clone(),
                    status: "valid",
                    message: String::new(),
                    expires_at: Some(g.body.expires_at),
                    grant: Some(serde_json::json!({
                        "issuer_key_id": g.body.issuer_key_id,
                        "issued_at": g.body.issued_at,
                        "expires_at": g.body.expires_at,
                        "scope": g.body.scope,
                    })),
                });
            }
            Err(e) => {
                status.push(GrantStatus {
                    target: t.clone(),
                    status: e.kind(),
                    message: e.to_string(),
                    expires_at: None,
                    grant: None,
                });
                withheld.push(withheld_from(t, &e));
            }
        }
    }
    (authorised, withheld, status)
}

/// The grants directory in force.
pub fn grants_dir(r: &ResolvedPolicy, root: &Path) -> PathBuf {
    match &r.trust.grants {
        Some(g) => PathBuf::from(g),
        None => root.join("etc/stockade/grants"),
    }
}

/// The grant files (`*.grant`) of `dir`, parsed (signatures not checked yet), and one
/// `grant_malformed` [`Withheld`] for each that cannot be read or parsed (its `target` is the
/// file's path), or for the directory when it cannot be read. A missing directory holds none.
pub(crate) fn read_grants(dir: &Path) -> (Vec<Grant>, Vec<Withheld>) {
    let mut grants = Vec::new();
    let mut bad = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (grants, bad),
        // Not silently "no grants": `policy lint` must say it could not look (a launch
        // withholds the same, as it would without the directory).
        Err(e) => {
            bad.push(Withheld {
                target: dir.display().to_string(),
                kind: "grant_malformed",
                message: format!("cannot read the grants directory: {e}"),
            });
            return (grants, bad);
        }
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
    // Only the high-risk items this plugin could get need a grant.
    let targets = high_risk_targets(&resolved, Some(&facts.requested));
    let scope = facts.scope.clone().unwrap_or_default();
    let subject = GrantSubject {
        name: &facts.name,
        version: &facts.version,
        scope: &scope,
    };
    let (authorised, withheld, grants) = check_grants(&resolved, root, &subject, &targets, now);
    let grants_needed = !targets.is_empty();
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
        grants,
        grants_needed,
    })
}

fn withheld_from(target: &str, e: &GrantError) -> Withheld {
    Withheld {
        target: target.to_string(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// What one launch of a verified package runs with.
#[derive(Debug, Clone)]
pub struct LaunchPolicy {
    /// The sandbox policy (network and writable paths reduced to what is granted).
    pub sandbox: ValidatedSandboxPolicy,
    /// The host policy (`capabilities.allow` = the granted set ∩ the `--allow-capability` flags).
    pub host: HostPolicy,
    /// The fields every audit record about this launch shares: plugin, version, package digest,
    /// signer chain, effective-policy hash (event and outcome are the caller's).
    pub base: Record,
    /// High-risk items withheld (already audited; the caller says them on its log).
    pub withheld: Vec<Withheld>,
    /// The decision depends only on the operator policy, the package and the flags: no
    /// high-risk item needed a grant (no grant file, no clock, no record written) and nothing
    /// was withheld. `serve`'s warm pool reuses such a decision until the policy is reloaded.
    pub reusable: bool,
    /// When the first grant the decision honoured expires ([`PluginPolicy::grants_expire`]):
    /// `serve` relaunches the plugin then, under a decision that withholds it.
    pub grants_expire: Option<u64>,
    /// The grant targets a valid grant authorised for this decision: `serve` checks them
    /// again while the plugin runs and relaunches it when one is authorised no longer.
    pub granted_targets: BTreeSet<String>,
    /// What the grant check read, when it authorised a target: the grants directory and the
    /// operator keys. `serve`'s periodic check decides again only once one of them changed
    /// ([`grant_inputs_stamp`]), not every few seconds for every granted plugin.
    pub grant_inputs: Vec<PathBuf>,
}

/// What the files a grant decision read look like now ([`LaunchPolicy::grant_inputs`]): for each
/// path, its metadata (device, inode, size, modification and change times, mode), and for a
/// directory the same of each of its entries, or the error reading it. A grant file written,
/// replaced (a rename: the directory's times and the entry's inode), removed, made unreadable
/// (its change time), or an operator key replaced changes it; reading it opens no file.
pub fn grant_inputs_stamp<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => format!(
            "{} {} {} {} {}.{} {}.{} {:o}",
            p.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.mode()
        ),
        Err(e) => format!("{}: {e}", p.display()),
    };
    let mut out = Vec::new();
    let unique: BTreeSet<&PathBuf> = paths.into_iter().collect();
    for p in unique {
        out.push(meta(p));
        if std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut names: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    names.sort();
                    out.extend(names.iter().map(|n| meta(n)));
                }
                Err(e) => out.push(format!("{}: {e}", p.display())),
            }
        }
    }
    out
}

/// The `--allow-capability` flags as a set (`None`: not given).
pub fn flag_allowlist(flags: &[String]) -> Result<Option<BTreeSet<Capability>>, CmdError> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for c in flags {
        let cap: Capability = c
            .parse()
            .map_err(|e| CmdError::new(Exit::Usage, "usage", e))?;
        out.insert(cap);
    }
    Ok(Some(out))
}

/// The effective policy of `pkg` at `now` under `merged` (grants read under `root`), narrowed by
/// the `--allow-capability` flags; one `denial` record per withheld item and one `grant` record
/// per high-risk item granted. Errors: the plugin's policy sections are invalid (65), or a
/// record cannot be written (74).
pub fn for_launch(
    merged: &MergedPolicy,
    pkg: PackageView<'_>,
    root: &Path,
    flags: Option<&BTreeSet<Capability>>,
    log: &AuditLog,
    now: u64,
) -> Result<LaunchPolicy, CmdError> {
    let (lp, records) = decide(merged, pkg, root, flags, now)?;
    record(log, records)?;
    Ok(lp)
}

/// Append the records [`decide`] returned, in order (exit 74 when one cannot be written).
pub fn record(log: &AuditLog, records: Vec<Record>) -> Result<(), CmdError> {
    records
        .into_iter()
        .try_for_each(|r| audit::append_or_fail(log, r))
}

/// The hook sections (`[hooks."<hook>"]`: failure mode, fail-open default, Sertone fee limits)
/// a launch of `pkg` under `merged` would run with, without the rest of the decision: they come
/// from the policy's resolution for the plugin's name and signer alone (no grant, no clock, no
/// record). `serve` answers by them the calls of a plugin none of whose incarnations runs
/// (restarting, quarantined, held) once a SIGHUP changed the policy: its last launch's would let
/// a hook the operator made fail closed go on failing open until someone relaunched it.
pub fn hooks_for(
    merged: &MergedPolicy,
    pkg: PackageView<'_>,
) -> Result<BTreeMap<String, HookPolicy>, stockade_policy::operator::OperatorPolicyError> {
    let r = pkg.report;
    merged
        .resolve(Some(&r.name), r.signer_key_id.as_deref())
        .map(|resolved| resolved.host.hooks)
}

/// [`for_launch`] with its denial and grant records returned rather than written: `run`
/// decides before the package's files are extracted and writes them once they are, after the
/// verification's own record (cmd/run.rs).
pub fn decide(
    merged: &MergedPolicy,
    pkg: PackageView<'_>,
    root: &Path,
    flags: Option<&BTreeSet<Capability>>,
    now: u64,
) -> Result<(LaunchPolicy, Vec<Record>), CmdError> {
    let facts = PackageFacts::from_package(pkg);
    let pp = for_package(merged, &facts, root, now).map_err(PolicyFilesError::into_cmd)?;
    let mut base = audit::for_report(Event::Launch, "", pkg.report);
    base.policy_sha256 = Some(audit::policy_hash(&explain(&pp.resolved, &pp.effective)));
    let mut records = Vec::new();
    for w in &pp.withheld {
        let mut rec = base.clone();
        rec.event = Event::Denial;
        rec.outcome = "withheld".into();
        rec.set_detail(serde_json::json!(w));
        records.push(rec);
    }
    // Each high-risk item granted, with its grant target and the grant that authorised it
    // (`detail.grant`; null where no grant was asked for).
    let eff = &pp.effective;
    let targeted = eff
        .capabilities
        .iter()
        // A capability the `--allow-capability` flags leave out is not given: no record says
        // it was granted (the launch record's `granted` is what the plugin got).
        .filter(|d| flags.is_none_or(|f| f.iter().any(|c| c.as_str() == d.item)))
        .map(|d| (d, grant_target("capability", &d.item)))
        .chain(std::iter::once((
            &eff.network,
            grant_target("network", "loopback"),
        )))
        .chain(
            eff.writable
                .iter()
                .map(|d| (d, grant_target("writable", &d.item))),
        );
    for (d, target) in targeted.filter(|(d, _)| d.granted && d.risk == RiskClass::High) {
        let grant = pp
            .grants
            .iter()
            .find(|g| g.target == target)
            .and_then(|g| g.grant.clone());
        let mut rec = base.clone();
        rec.event = Event::Grant;
        rec.outcome = "granted".into();
        rec.set_detail(
            serde_json::json!({"item": d.item, "decided_by": d.decided_by.to_string(),
                                        "target": target, "grant": grant}),
        );
        records.push(rec);
    }
    let mut host = pp.effective.host.clone();
    if let Some(flags) = flags {
        // Both given: the stricter (their intersection) wins.
        let allow = host
            .capabilities
            .allow
            .take()
            .unwrap_or_default()
            .intersection(flags)
            .copied()
            .collect();
        host.capabilities.allow = Some(allow);
    }
    let lp = LaunchPolicy {
        sandbox: pp.effective.sandbox.clone(),
        host,
        base,
        reusable: !pp.grants_needed && pp.withheld.is_empty(),
        grants_expire: pp.grants_expire(),
        granted_targets: pp
            .grants
            .iter()
            .filter(|g| g.expires_at.is_some())
            .map(|g| g.target.clone())
            .collect(),
        grant_inputs: if pp.grants.iter().any(|g| g.expires_at.is_some()) {
            std::iter::once(grants_dir(&pp.resolved, root))
                .chain(
                    pp.resolved
                        .trust
                        .operator_keys
                        .iter()
                        .flatten()
                        .map(PathBuf::from),
                )
                .collect()
        } else {
            Vec::new()
        },
        withheld: pp.withheld,
    };
    Ok((lp, records))
}

/// The program a verified package runs as, with its argv: the entrypoint for a stdio plugin; for
/// an HTTP plugin (seed 003) this very binary as `stockade http-bridge`, which starts the plugin
/// inside the same sandbox (cmd/http_bridge.rs says why). An HTTP plugin needs the policy's
/// network mode `loopback` — its own namespace where only `lo` is up — and is refused otherwise
/// rather than given a network it was not granted; its interpreter must be a host file the
/// sandbox's read-only binds show.
pub fn program_for(
    pkg: PackageView<'_>,
    sandbox: &ValidatedSandboxPolicy,
) -> Result<(crate::sandbox::Program, Vec<String>), crate::sandbox::LaunchError> {
    use crate::sandbox::{LaunchError, Program};
    let Some(http) = pkg.manifest.http() else {
        let entry = pkg.dir.join(pkg.manifest.entrypoint());
        let shown = entry_shown(pkg);
        let program = Program::open(&entry, "")
            .map_err(|e| e.naming(&shown))?
            .named(shown);
        return Ok((program, entry_argv(pkg)));
    };
    if sandbox.network != NetworkMode::Loopback {
        return Err(LaunchError::HttpTransport(format!(
            "{} listens on a TCP port, so its policy must set [network] mode = \"loopback\" \
             (now: {:?})",
            pkg.manifest.name(),
            sandbox.network
        )));
    }
    if let Some(i) = &http.interpreter {
        let shown = sandbox
            .read_only
            .iter()
            .any(|r| Path::new(i).starts_with(r));
        if !shown || !Path::new(i).is_file() {
            return Err(LaunchError::HttpTransport(format!(
                "interpreter {i} is not a file under the policy's [filesystem] read_only paths"
            )));
        }
    }
    if http.interpreter.is_none() {
        // The bridge executes a native entrypoint by its path under /plugin, inside the
        // sandbox, where an EACCES said only "cannot start /plugin/…: Permission denied" (exit
        // 70): a package on a `noexec` mount (a hardened `/var` or `/tmp` holding the state
        // directory or TMPDIR), whose bind at /plugin the kernel runs nothing from. Checked here
        // as a stdio plugin's entrypoint is (executable regular file, its mount named when
        // `noexec`: 126 `cannot_execute`), before anything is built (review-169 L7).
        let entry = pkg.dir.join(pkg.manifest.entrypoint());
        Program::open(&entry, "").map_err(|e| e.naming(&entry_shown(pkg)))?;
    }
    let program = Program::open("/proc/self/exe", "")?;
    Ok((program, vec!["stockade".into(), "http-bridge".into()]))
}

/// The launch of a verified package under `policy`, as `run` and `serve` (and serve's warm
/// pool) do it: the program and argv of [`program_for`], the base environment, the package at
/// /plugin, the system uid lock directory.
pub fn launch_spec<'a>(
    pkg: PackageView<'_>,
    policy: &'a ValidatedSandboxPolicy,
) -> Result<crate::sandbox::LaunchSpec<'a>, crate::sandbox::LaunchError> {
    Ok(spec_with(pkg, policy, program_for(pkg, policy)?))
}

/// What a stdio plugin's program is called in messages and the report: its manifest's
/// `entrypoint` (package-relative), the path its author wrote — not the
/// `/proc/self/fd/N/.work-…` the runtime reaches the extracted file through (audit-131).
pub fn entry_shown(pkg: PackageView<'_>) -> PathBuf {
    PathBuf::from(pkg.manifest.entrypoint())
}

/// A stdio plugin's argv: its entrypoint as the sandbox sees it.
pub fn entry_argv(pkg: PackageView<'_>) -> Vec<String> {
    vec![format!("/plugin/{}", pkg.manifest.entrypoint())]
}

/// The [`launch_spec`] of `pkg` with this program and argv.
pub fn spec_with<'a>(
    pkg: PackageView<'_>,
    policy: &'a ValidatedSandboxPolicy,
    (program, argv): (crate::sandbox::Program, Vec<String>),
) -> crate::sandbox::LaunchSpec<'a> {
    use crate::sandbox;
    sandbox::LaunchSpec {
        policy,
        program,
        argv,
        env: sandbox::BASE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        package_dir: Some(pkg.bind.0.to_path_buf()),
        package_dir_id: pkg.bind.1,
        // The pid from /proc: a plugin that ended before it was found has nothing to signal.
        pid_required: false,
        uid_lock_dir: PathBuf::from(sandbox::uid::LOCK_DIR),
    }
}
