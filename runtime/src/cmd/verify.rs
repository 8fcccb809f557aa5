//! `stockade verify FILE [--trust DIR] [--pub KEY.pub] [--trust-mode M] [--state-dir DIR]`:
//! run the whole fail-closed pipeline (`package::verify`) and print its report. Without
//! `--extract-to` every payload entry is checked as extraction would check it but nothing is
//! written (`package::verify_only`); with `--extract-to DIR` the tree is extracted into a private
//! directory beside DIR and moved into place; no plugin code is run either way. The operator policy under
//! `--policy-root` contributes its `[trust]` section and its `[audit]` sinks (one `verification`
//! record per run, refused or not).

use crate::audit::{append_or_fail, for_report, AuditLog, Event, Record};
use crate::cli::VerifyArgs;
use crate::cmd::run::trust_config_with_policy;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::keyfile::{load_public, unix_now};
use crate::node::NodeIdentity;
use crate::output::{term, Output};
use crate::package::report::{Report, StepStatus};
use crate::package::{open_verified_in, verify_only, VerifiedPackage};
use crate::policyfiles::{self, PolicyFilesError, PolicySource};
use crate::trustdir::{TrustConfig, TrustMode};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use stockade_policy::capability::Capability;

/// Load the trust configuration from the shared trust flags.
pub fn trust_config(t: &crate::cli::TrustArgs) -> Result<TrustConfig, CmdError> {
    let mode: TrustMode = t
        .trust_mode
        .parse()
        .map_err(|e| CmdError::new(Exit::Usage, "usage", e))?;
    let mut cfg = TrustConfig::load(&t.trust, mode, &t.state_dir).map_err(|e| {
        let hint = e.hint();
        CmdError::new(Exit::Config, "trust_dir", e).hint(hint)
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

/// Human rendering of a verification report. Names, the trusted comment, certificate subjects
/// and step details come from the package (and its signer, who may be anyone in a trust mode
/// that only warns): each is escaped for the terminal.
pub fn render(r: &Report) -> String {
    let mut t = format!(
        "package: {} {} ({})\n",
        term(&r.name),
        term(&r.version),
        term(&r.file)
    );
    t.push_str(&format!(
        "signature_status: {}   trust mode: {}\n",
        crate::output::enum_str(&r.signature_status),
        crate::output::enum_str(&r.trust_mode),
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
            s.step,
            s.name,
            term(&s.detail)
        ));
    }
    if let Some(k) = &r.signer_key_id {
        t.push_str(&format!("signer: key {}", term(k)));
        if let Some(c) = &r.trusted_comment {
            t.push_str(&format!(" (trusted comment: {})", term(c)));
        }
        t.push('\n');
    }
    for c in &r.chain {
        t.push_str(&format!(
            "  {:<12} \"{}\" serial {} key {} issuer {} scope {} valid {}..{}\n",
            c.kind,
            term(&c.subject),
            term(&c.serial),
            term(&c.key_id),
            term(&c.issuer_key_id),
            term(&c.scope),
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
        t.push_str(&format!("scope: {}\n", term(s)));
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
        t.push_str(&format!("warning: {}\n", term(w)));
    }
    t
}

/// The operator policy's defaults: its `[trust]` section and `[audit]` sinks, which every command
/// that verifies packages (`verify`, `install`, `update`, `remove`) applies.
pub fn operator_defaults(
    root: &Path,
) -> Result<stockade_policy::operator::ResolvedPolicy, CmdError> {
    let merged = policyfiles::load(&PolicySource::Root(root.to_path_buf()))
        .map_err(PolicyFilesError::into_cmd)?;
    merged
        .resolve(None, None)
        .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())
}

/// What verifying needs: the operator policy's audit log, the trust configuration (flags with
/// the policy's `[trust]`), and this node.
pub fn verify_context(
    trust: &crate::cli::TrustArgs,
    policy_root: &Path,
) -> Result<(AuditLog, TrustConfig, NodeIdentity), CmdError> {
    let defaults = operator_defaults(policy_root)?;
    let log = AuditLog::from_policy(&defaults.audit);
    let cfg = trust_config_with_policy(trust, &defaults)?;
    let node = NodeIdentity::load(&cfg.state_dir).map_err(crate::node::NodeError::into_cmd)?;
    Ok((log, cfg, node))
}

/// Run `stockade verify`: a package file, or installed plugins (`cmd::store`).
pub fn run(a: VerifyArgs, out: Output) -> Result<Exit, CmdError> {
    // A name is the store's to answer: not installed 104, a corrupt registry 106 — not
    // "no such file".
    // Looked up read-only (no store is created, locked or recovered for a name that is not
    // there): not installed is 104 at once, before any flag check.
    let installed_id = match a.file.as_deref() {
        Some(f) if crate::store::names_a_plugin(f) => {
            let name = f.to_string_lossy().into_owned();
            let reg = crate::store::read_registry(&a.trust.state_dir)
                .map_err(crate::cmd::store::store_err)?;
            if !reg.plugins.contains_key(&name) {
                return Err(crate::cmd::store::store_err(
                    crate::store::StoreError::NotInstalled(name),
                ));
            }
            true
        }
        _ => false,
    };
    if a.extract_to.is_some() && (a.file.is_none() || installed_id) {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            "--extract-to needs a package file",
        ));
    }
    let file = match &a.file {
        None => return crate::cmd::store::verify_installed(a, None, out),
        Some(f) if installed_id => {
            let id = f.to_string_lossy().into_owned();
            return crate::cmd::store::verify_installed(a, Some(id), out);
        }
        Some(f) => f.clone(),
    };
    let (log, cfg, node) = verify_context(&a.trust, &a.root.policy_root)?;
    // Extract next to the destination so that moving the tree into place is a rename on one
    // filesystem: either the whole verified tree appears at DIR or nothing does.
    let work_parent = match &a.extract_to {
        Some(dest) => {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            if dest.symlink_metadata().is_ok() {
                return Err(CmdError::msg(
                    Exit::CantCreate,
                    "extract_to_exists",
                    format!("{} already exists", dest.display()),
                )
                .hint("pass a path that does not exist yet"));
            }
            // The tree is extracted beside DIR: without a parent directory no output can be
            // created (73), found before the package is read rather than as an OS error (71)
            // from making the private work directory.
            if !parent.is_dir() {
                return Err(CmdError::msg(
                    Exit::CantCreate,
                    "extract_to",
                    format!(
                        "cannot create {}: its parent {} is not an existing directory",
                        term(&dest.display().to_string()),
                        term(&parent.display().to_string())
                    ),
                )
                .hint("create the parent directory first, or pass a path inside an existing one"));
            }
            parent
        }
        None => std::env::temp_dir(),
    };
    // Without --extract-to nothing needs the tree: every entry is checked, none is written.
    let verified = match &a.extract_to {
        Some(_) => open_verified_in(&file, &cfg, &node, unix_now(), &work_parent)
            .map(|p| (p.report.clone(), Some(p))),
        None => verify_only(&file, &cfg, &node, unix_now()).map(|r| (r, None)),
    };
    let (report, pkg) = match verified {
        Ok(v) => v,
        Err(e) => {
            let mut rec = Record::new(Event::Verification, "refused");
            rec.detail = serde_json::json!({"file": file.display().to_string(), "kind": e.kind(), "error": e.to_string()});
            append_or_fail(&log, rec)?;
            return Err(e.into_cmd());
        }
    };
    append_or_fail(&log, for_report(Event::Verification, "ok", &report))?;
    // The tree is in place before the report says so (a failed move reports only the error).
    if let (Some(dest), Some(pkg)) = (&a.extract_to, pkg) {
        move_into_place(pkg, dest)?;
        out.emit(&report, render);
        out.note(format!(
            "verified tree extracted to {}",
            term(&dest.display().to_string())
        ));
    } else {
        out.emit(&report, render);
    }
    Ok(Exit::Ok)
}

/// Move the private 0700 extraction directory to `dest` and open it up to 0755, so that the
/// sandboxed plugin's unprivileged uid can read what was verified (files keep the fixed 0644/0755
/// modes extraction gave them). On any failure the extracted copy is removed.
fn move_into_place(pkg: VerifiedPackage, dest: &Path) -> Result<(), CmdError> {
    // The extraction directory's private parent goes when `kept` is dropped.
    let kept = pkg.dir.keep();
    let tmp = kept.path();
    let moved = std::fs::rename(tmp, dest)
        .and_then(|()| std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = moved {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(CmdError::new(Exit::CantCreate, "extract_to", e)
            .hint("check that the destination's parent directory exists and is writable"));
    }
    Ok(())
}
