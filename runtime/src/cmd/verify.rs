//! `stockade verify FILE [--trust DIR] [--pub KEY.pub] [--trust-mode M] [--state-dir DIR]`:
//! run the whole fail-closed pipeline (`package::verify`) and print its report. The extracted
//! copy is private and removed when the command ends; no plugin code is run.

use crate::cli::VerifyArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::keyfile::{load_public, unix_now};
use crate::node::NodeIdentity;
use crate::output::Output;
use crate::package::open_verified;
use crate::package::report::{Report, StepStatus};
use crate::trustdir::{TrustConfig, TrustMode};
use stockade_policy::capability::Capability;

/// Load the trust configuration from the shared trust flags.
pub fn trust_config(t: &crate::cli::TrustArgs) -> Result<TrustConfig, CmdError> {
    let mode: TrustMode = t
        .trust_mode
        .parse()
        .map_err(|e| CmdError::new(Exit::Usage, "usage", e))?;
    let mut cfg = TrustConfig::load(&t.trust, mode, &t.state_dir).map_err(|e| {
        CmdError::new(Exit::Config, "trust_dir", e).hint("create the trust directory and copy your root CA's ca.pub into it (or pass --trust DIR)")
    })?;
    if let Some(p) = &t.public_key {
        cfg.pinned_developer = Some(load_public(p).map_err(|e| {
            CmdError::new(Exit::DataErr, "key", e).hint("pass the developer's .pub file")
        })?);
    }
    Ok(cfg)
}

fn caps(c: &[Capability]) -> String {
    if c.is_empty() {
        return "(none)".into();
    }
    c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// Human rendering of a verification report.
pub fn render(r: &Report) -> String {
    let mut t = format!("package: {} {} ({})\n", r.name, r.version, r.file);
    t.push_str(&format!(
        "signature_status: {}   trust mode: {}\n",
        serde_json::to_value(r.signature_status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        serde_json::to_value(r.trust_mode)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    ));
    for s in &r.steps {
        let tag = match s.status {
            StepStatus::Pass => "pass",
            StepStatus::Fail => "FAIL",
            StepStatus::Warn => "WARN",
            StepStatus::Skipped => "skipped",
        };
        t.push_str(&format!(
            "  [{tag:>7}] {} {}: {}\n",
            s.step, s.name, s.detail
        ));
    }
    if let Some(k) = &r.signer_key_id {
        t.push_str(&format!("signer: key {k}"));
        if let Some(c) = &r.trusted_comment {
            t.push_str(&format!(" (trusted comment: {c})"));
        }
        t.push('\n');
    }
    for c in &r.chain {
        t.push_str(&format!(
            "  {:<12} \"{}\" serial {} key {} issuer {} scope {} valid {}..{}\n",
            c.kind,
            c.subject,
            c.serial,
            c.key_id,
            c.issuer_key_id,
            c.scope,
            c.not_before,
            c.not_after
        ));
    }
    if let Some(root) = &r.root_key_id {
        t.push_str(&format!(
            "  {:<12} key {root} (pinned in the trust directory)\n",
            "root"
        ));
    }
    if let Some(s) = &r.scope {
        t.push_str(&format!("scope: {s}\n"));
    }
    t.push_str(&format!(
        "capability ceiling: {}\n",
        caps(&r.capability_ceiling)
    ));
    t.push_str(&format!("requested: {}\n", caps(&r.requested_capabilities)));
    t.push_str(&format!("granted: {}\n", caps(&r.granted_capabilities)));
    t.push_str(&format!(
        "files: {}  payload sha256 {}\npackage sha256 {}\n",
        r.file_count, r.payload_sha256, r.package_sha256
    ));
    for w in &r.warnings {
        t.push_str(&format!("warning: {w}\n"));
    }
    t
}

/// Run `stockade verify`.
pub fn run(a: VerifyArgs, out: Output) -> Result<Exit, CmdError> {
    let cfg = trust_config(&a.trust)?;
    let node = NodeIdentity::load(&cfg.state_dir).map_err(|e| {
        CmdError::new(Exit::Config, "node", e).hint("fix or remove <state-dir>/license.json")
    })?;
    let pkg = open_verified(&a.file, &cfg, &node, unix_now()).map_err(|e| {
        let (exit, kind, hint) = (e.exit(), e.kind(), e.hint());
        CmdError::new(exit, kind, e).hint(hint)
    })?;
    out.emit(&pkg.report, render);
    Ok(Exit::Ok)
}
