//! `stockade node info` (hardware id, license, what this host offers each sandbox layer and,
//! with `--policy FILE`, which layers a launch under that policy would enforce, degrade or
//! refuse here: [`crate::sandbox::facts`]) and `stockade node license install FILE`
//! (verify a license against the trust roots, refuse a rollback — one issued before the newest
//! of its serial installed, or not after the license installed last unless it is that file —,
//! remember it as the license installed last, then copy it atomically to
//! `<state-dir>/license.json`).

use crate::cli::{NodeInfoArgs, NodeLicenseInstallArgs};
use crate::cmd::config_audit;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, write_state_file};
use crate::keyfile::unix_now;
use crate::node::{hardware_id, load_license, read_license, NodeError, LICENSE_FILE};
use crate::output::{term, term_path, Output};
use crate::package::verify::error_chain;
use crate::policyfiles::{self, PolicyFilesError};
use crate::sandbox::facts::{self, HostFacts, LayerOutcome, Outcome};
use crate::state::{ensure_dir, LicenseMemory};
use crate::trustdir::{TrustConfig, TrustMode};
use serde::Serialize;
use std::path::PathBuf;
use stockade_trust::license::{License, LicenseError, LicenseState};
use stockade_trust::signed::MAX_DOC_BYTES;

#[derive(Serialize)]
struct LicenseInfo {
    serial: String,
    state: LicenseState,
    hardware_id: Option<String>,
    expires_at: Option<u64>,
    issuer_key_id: String,
    /// `verified`, `not_checked` (no --trust) or `invalid`.
    signature: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
struct InfoReport {
    hardware_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hardware_id_error: Option<String>,
    license: Option<LicenseInfo>,
    #[serde(serialize_with = "crate::output::path_text")]
    state_dir: PathBuf,
    /// What this host offers each layer, for this caller (brief-165).
    layer_facts: HostFacts,
    /// With `--policy FILE`: each layer a launch under it would enforce, degrade or refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_layers: Option<Vec<LayerOutcome>>,
}

/// `stockade node info`.
pub fn info(a: NodeInfoArgs, out: Output) -> Result<Exit, CmdError> {
    // The policy first: a bad file is refused (65, as `exec --policy`) before anything is tried.
    let policy = match &a.policy {
        Some(f) => {
            let merged =
                policyfiles::load(&policyfiles::source(Some(f), std::path::Path::new("/")))
                    .map_err(PolicyFilesError::into_cmd)?;
            let resolved = merged
                .resolve(None, None)
                .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
            Some(resolved.sandbox)
        }
        None => None,
    };
    let (hw, hw_err) = match hardware_id() {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // An installed license that cannot be read makes the state directory unusable: 78, as for
    // `verify`, `run` and `serve`, which read the same file; a rolled back one (older than one
    // installed before, or deleted) is 84 everywhere too, with the license to put back named.
    let lic = load_license(&a.state_dir).map_err(NodeError::into_cmd)?;
    let roots = match &a.trust {
        Some(t) => Some(
            TrustConfig::load(t, TrustMode::Strict, &a.state_dir)
                .map_err(trust_dir_err)?
                .root_keys(),
        ),
        None => None,
    };
    let license = lic.map(|l| {
        let (signature, problem) = match &roots {
            None => ("not_checked", None),
            Some(r) => match l.verify(r, unix_now(), hw.as_deref().unwrap_or("")) {
                Ok(()) => ("verified", None),
                Err(e) => ("invalid", Some(error_chain(&e))),
            },
        };
        LicenseInfo {
            serial: l.body.serial.clone(),
            state: l.body.state,
            hardware_id: l.body.hardware_id.clone(),
            expires_at: l.body.expires_at,
            issuer_key_id: l.body.issuer_key_id.clone(),
            signature,
            problem,
        }
    });
    let euid = crate::sys::ids().2;
    let layer_facts = HostFacts::read(euid);
    let rootless = crate::sandbox::identity_mode(euid) == crate::sandbox::MODE_ROOTLESS;
    let policy_layers = policy.map(|p| facts::predict(&p, rootless, &layer_facts));
    let r = InfoReport {
        hardware_id: hw,
        hardware_id_error: hw_err,
        license,
        state_dir: a.state_dir,
        layer_facts,
        policy_layers,
    };
    out.emit(&r, |r| {
        let mut t = match (&r.hardware_id, &r.hardware_id_error) {
            (Some(h), _) => format!("hardware id: {}\n", term(h)),
            (None, e) => format!(
                "hardware id: unavailable ({})\n",
                term(e.as_deref().unwrap_or(""))
            ),
        };
        match &r.license {
            None => t.push_str("license: none\n"),
            Some(l) => {
                t.push_str(&format!(
                    "license: {} ({}){}{} signature: {}\n",
                    term(&l.serial),
                    if l.state == LicenseState::Active {
                        "active"
                    } else {
                        "frozen"
                    },
                    l.hardware_id
                        .as_ref()
                        .map(|h| format!(", bound to {}", term(h)))
                        .unwrap_or_default(),
                    l.expires_at
                        .map(|e| format!(", expires at {e}"))
                        .unwrap_or_default(),
                    l.signature.replace('_', " ")
                ));
                if let Some(p) = &l.problem {
                    t.push_str(&format!("  problem: {}\n", term(p)));
                }
            }
        }
        t.push_str(&facts_text(&r.layer_facts));
        if let Some(v) = &r.policy_layers {
            t.push_str("layers a launch under the policy would have here:\n");
            for o in v {
                let what = match (o.outcome, o.degradation) {
                    (Outcome::Enforced, _) => "enforced".to_owned(),
                    (Outcome::Degraded, Some(d)) => format!("degraded (allowed: `{d}`)"),
                    (Outcome::Degraded, None) => "degraded".to_owned(),
                    (Outcome::Refused, Some(d)) => {
                        format!("refused: the launch stops (unless `{d}` is allowed)")
                    }
                    (Outcome::Refused, None) => {
                        "refused: the launch stops (no policy lets it go)".to_owned()
                    }
                };
                t.push_str(&format!("  {}: {what}\n", o.layer));
                if let Some(why) = &o.reason {
                    t.push_str(&format!("    {}\n", term(why)));
                }
            }
        }
        t
    });
    Ok(Exit::Ok)
}

/// The human form of [`HostFacts`].
fn facts_text(f: &HostFacts) -> String {
    let mut t = String::new();
    let l = &f.landlock;
    let lsm = match l.in_lsm_list {
        Some(true) => ", in the LSM list",
        Some(false) => ", not in the LSM list",
        None => "",
    };
    match &l.unavailable {
        None => t.push_str(&format!("landlock: ABI {}{lsm}\n", l.abi)),
        Some(why) => t.push_str(&format!("landlock: none ({}){lsm}\n", term(why))),
    }
    let u = &f.user_namespaces;
    if u.creatable {
        t.push_str("user namespaces: this caller can make the sandbox's\n");
    } else {
        t.push_str(&format!(
            "user namespaces: this caller cannot make the sandbox's ({}){}\n",
            term(u.error.as_deref().unwrap_or("")),
            u.restricted_by
                .map(|s| format!(": {s} restricts them"))
                .unwrap_or_default()
        ));
        if let Some(w) = u.way_out {
            t.push_str(&format!("  way out: {w}\n"));
        }
    }
    let s = &f.seccomp;
    if s.filter {
        t.push_str(&format!("seccomp: filters ({})\n", s.actions.join(" ")));
    } else {
        t.push_str("seccomp: no filters on this kernel\n");
    }
    let c = &f.cgroup;
    let offered: Vec<&str> = [
        ("memory", c.controllers.memory),
        ("cpu", c.controllers.cpu),
        ("pids", c.controllers.pids),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n)
    .collect();
    t.push_str(&format!(
        "cgroup: {}, controllers offered: {}{}\n",
        c.mode,
        if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        },
        c.error
            .as_ref()
            .map(|e| format!(" ({})", term(e)))
            .unwrap_or_default()
    ));
    t
}

#[derive(Serialize)]
struct InstallReport {
    #[serde(serialize_with = "crate::output::path_text")]
    installed: PathBuf,
    serial: String,
    state: LicenseState,
    /// The install was made but its `ok` audit record could not be written (docs/audit.md).
    audit_error: Option<serde_json::Value>,
}

/// The trust directory could not be loaded (78 `trust_dir`), hinted for its cause as `verify`
/// hints it ([`crate::trustdir::TrustDirError::hint`]): a revocation list too large or
/// unreadable is not "pin the root CA" (what `license install` said of every cause) nor left
/// without a hint (`node info --trust`).
fn trust_dir_err(e: crate::trustdir::TrustDirError) -> CmdError {
    let hint = e.hint();
    CmdError::new(Exit::Config, "trust_dir", e).hint(hint)
}

/// `stockade node license install`.
pub fn license_install(a: NodeLicenseInstallArgs, out: Output) -> Result<Exit, CmdError> {
    let bytes = read_capped(&a.file, MAX_DOC_BYTES as u64)
        .map_err(|e| CmdError::new(Exit::NoInput, "input", e))?;
    let lic = License::parse(&bytes).map_err(|e| {
        CmdError::new(Exit::DataErr, "license", e)
            .hint("pass a license file written by `stockade ca license`")
    })?;
    // Recorded, whatever is decided (docs/audit.md "Configuration changes and bypassed guards"):
    // a license decides what this node may run (a frozen one runs only what is installed).
    let log = config_audit::audit_log(&a.root)?;
    let in_place = read_license(&a.state_dir).ok().flatten();
    let rec = config_audit::config_record(
        "license_install",
        serde_json::json!({
            "serial": lic.body.serial, "state": lic.body.state,
            "issuer_key_id": lic.body.issuer_key_id, "issued_at": lic.body.issued_at,
            "expires_at": lic.body.expires_at, "hardware_bound": lic.body.hardware_id.is_some(),
            "replaced_serial": in_place.as_ref().map(|l| l.body.serial.clone()),
            "replaced_state": in_place.as_ref().map(|l| l.body.state),
        }),
    );
    let memory =
        license_checks(&a, &lic).map_err(|e| config_audit::refused(&log, rec.clone(), e))?;
    let (dest, audit_error) = config_audit::audited(&log, rec, out, "license installed", |step| {
        save_license(&a, &lic, memory, &bytes, step)
    })?;
    let r = InstallReport {
        installed: dest,
        serial: lic.body.serial.clone(),
        state: lic.body.state,
        audit_error,
    };
    out.emit(&r, |r| {
        format!(
            "installed license {} at {}\n",
            term(&r.serial),
            term_path(&r.installed)
        )
    });
    Ok(Exit::Ok)
}

/// `license install`'s checks of `lic` (signature, issuer, validity, hardware, serial,
/// rollback), nothing written: the license memory to save with it.
fn license_checks(a: &NodeLicenseInstallArgs, lic: &License) -> Result<LicenseMemory, CmdError> {
    let cfg =
        TrustConfig::load(&a.trust, TrustMode::Strict, &a.state_dir).map_err(trust_dir_err)?;
    let hw = hardware_id().ok();
    lic.verify(&cfg.root_keys(), unix_now(), hw.as_deref().unwrap_or("")).map_err(|e| {
        // One kind per code: `license` alone is the malformed file (65), as when it does not
        // parse; each refusal of a verification step has the step's code and its own kind.
        let (exit, kind) = match &e {
            LicenseError::Signature(_) => (Exit::Signature, "license.signature"),
            LicenseError::UnknownIssuer(_) => (Exit::Chain, "license.issuer"),
            LicenseError::Expired { .. } => (Exit::Validity, "license.expired"),
            LicenseError::NotYetValid { .. } => (Exit::Validity, "license.not_yet_valid"),
            LicenseError::WrongHardware { .. } => (Exit::Scope, "license.hardware"),
            _ => (Exit::DataErr, "license"),
        };
        CmdError::new(exit, kind, e).hint("ask your CA for a license for this node (`stockade node info` prints its hardware id)")
    })?;
    // A serial spelled as a file format marker (`state::RESERVED_MEMORY_KEYS`) is remembered
    // only with an `issued_at` no marker has (`state::is_memory_entry`): a license of such a
    // serial issued earlier, once remembered, would make the memory unreadable (78 from every
    // command), so it is refused here, nothing written. Every license a CA issued with its clock
    // set passes, as an earlier build's memory of one still reads.
    if !crate::state::is_memory_entry(&lic.body.serial, lic.body.issued_at) {
        return Err(CmdError::msg(
            Exit::DataErr,
            "license",
            format!(
                "license serial `{}` is one of {:?}, which this node's license memory keeps \
                 for a file format marker unless issued at {} or later; this one is issued at {}",
                lic.body.serial,
                crate::state::RESERVED_MEMORY_KEYS,
                crate::state::MIN_RESERVED_SERIAL_ISSUED_AT,
                lic.body.issued_at
            ),
        )
        .hint("ask your CA for a license under another serial, or issued at the current time"));
    }
    // Rollback: a license older than the newest of its serial, or not newer than the license
    // installed last (of any serial) unless it is that file, would undo what replaced it (a
    // freeze). The currently installed file is not needed for this (installing is how a deleted
    // one is put back), only the memory.
    let memory = LicenseMemory::load(&a.state_dir).map_err(|e| NodeError::Memory(e).into_cmd())?;
    // Memory an earlier build wrote records no license installed last: the license in place
    // (if it passes the per-serial rule) is that one. Else an old active license of another
    // serial would be installed over a frozen one on the first install after an upgrade.
    let floor = memory.floor.clone().or_else(|| {
        let in_place = read_license(&a.state_dir).ok().flatten()?;
        in_place
            .check_not_rolled_back(&memory.seen, None)
            .ok()
            .map(|()| in_place.floor())
    });
    lic.check_not_rolled_back(&memory.seen, floor.as_ref())
        .map_err(|e| NodeError::Rollback(e).into_cmd())?;
    Ok(memory)
}

/// Install `lic` (its file `bytes`) that passed [`license_checks`]: its memory, then the file.
fn save_license(
    a: &NodeLicenseInstallArgs,
    lic: &License,
    mut memory: LicenseMemory,
    bytes: &[u8],
    step: &mut config_audit::Step,
) -> Result<PathBuf, CmdError> {
    step.at("license_memory");
    ensure_dir(&a.state_dir).map_err(|e| {
        CmdError::new(Exit::CantCreate, "state_dir", e).hint(crate::state::CREATE_HINT)
    })?;
    // Remembered, with this license as the one installed last, before the license is written
    // (one atomic write of the memory): a crash between the two leaves a node that refuses the
    // older file still in place (fail closed, fixed by installing again), never a new license
    // that is not remembered.
    let changed = lic.remember(&mut memory.seen);
    let floor = Some(lic.floor());
    if changed || memory.floor != floor {
        memory.floor = floor;
        memory
            .save(&a.state_dir)
            .map_err(|e| CmdError::new(Exit::CantCreate, "state_dir", e))?;
    }
    step.at("license_json");
    let dest = a.state_dir.join(LICENSE_FILE);
    write_state_file(&dest, bytes, 0o644)
        .map_err(|e| CmdError::new(Exit::CantCreate, "state_dir", e))?;
    Ok(dest)
}
