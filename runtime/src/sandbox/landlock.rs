//! Landlock: the second wall behind the mount namespace. Read and execute beneath `/`, write only
//! beneath `/tmp`, the policy's writable directories and the device nodes in `/dev`; with ABI ≥ 4
//! no TCP bind/connect (network mode "none"); with ABI ≥ 6 no abstract unix sockets or signals
//! outside the sandbox's domain.
//!
//! The ruleset is best-effort (rust-landlock's default): the kernel enforces the subset it knows
//! and we report which ABI that was. Whether that subset is enough is the policy's decision
//! (`layers.min_landlock_abi` and the `landlock*` degradations), checked in [`evaluate`], which
//! is pure so the decision table is unit-tested.

use super::report::{LayerReport, LayerStatus};
use landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, PathBeneath, PathFd, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde_json::json;
use std::os::fd::BorrowedFd;
use stockade_policy::sandbox::{Degradation, NetworkMode, ValidatedSandboxPolicy};

/// The ABI whose rights we request: the newest one vetted against this code.
const REQUESTED: ABI = ABI::V6;

/// Why Landlock stopped the launch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandlockError {
    /// The crate or kernel refused the ruleset.
    #[error("cannot build or apply the Landlock ruleset")]
    Ruleset(#[source] landlock::RulesetError),
    /// A path the rules name cannot be opened.
    #[error("cannot open `{0}` for a Landlock rule")]
    Path(String, #[source] std::io::Error),
    /// The kernel offers less than the policy demands.
    #[error("Landlock {what} is not available (kernel ABI {abi}) and the policy does not allow degradation `{}`", degradation.as_str())]
    Insufficient {
        /// What is missing.
        what: &'static str,
        /// Kernel ABI (0 = none).
        abi: u32,
        /// The degradation that would allow it.
        degradation: Degradation,
    },
}

impl LandlockError {
    /// The degradation the policy would have to allow for this launch to run: `Some` for a
    /// kernel that offers less than the policy demands (a refusal, `layer_unavailable`), `None`
    /// for a ruleset that could not be built or applied (a setup failure).
    pub fn refused(&self) -> Option<Degradation> {
        match self {
            LandlockError::Insufficient { degradation, .. } => Some(*degradation),
            _ => None,
        }
    }
}

/// Decide whether the enforced ABI satisfies the policy; returns the layer report.
pub fn evaluate(
    policy: &ValidatedSandboxPolicy,
    rootless: bool,
    abi: u32,
    ruleset: LayerStatus,
) -> Result<Vec<LayerReport>, LandlockError> {
    let allows = |d| policy.allows(d, rootless);
    let mut out = Vec::new();
    if abi < u32::from(policy.min_landlock_abi) && !allows(Degradation::Landlock) {
        return Err(LandlockError::Insufficient {
            what: "at the required ABI",
            abi,
            degradation: Degradation::Landlock,
        });
    }
    let mut fs_details =
        json!({"abi": abi, "min_abi": policy.min_landlock_abi, "ruleset": ruleset});
    // What the kernel's ABI leaves out of the rights requested, so a partial layer says what
    // it lacks (the report's `not_applied`, the warning, the audit record's `degraded`).
    let missing = missing_fs_rights(abi);
    if abi > 0 && !missing.is_empty() {
        fs_details["not_applied"] = json!(missing);
    }
    let below_min = abi < u32::from(policy.min_landlock_abi);
    out.push(match (abi, ruleset) {
        (0, _) => {
            let mut d = fs_details;
            d["reason"] = json!(format!(
                "this kernel has no Landlock (not built, or left out of the boot's `lsm=` list): \
                 no filesystem rule applies beyond the mounts; allowed by {}",
                if policy.min_landlock_abi == 0 {
                    "the policy's min_landlock_abi 0"
                } else {
                    "the degradation `landlock`"
                }
            ));
            LayerReport::degraded("landlock", LayerStatus::NotEnforced, d)
        }
        // Below the policy's minimum and tolerated (`landlock` allowed): a degradation, said as
        // one even when the kernel enforced the whole ruleset of its older ABI — the policy
        // asked for more than that ABI can give.
        (_, status) if below_min => {
            let mut d = fs_details;
            d["reason"] = json!(format!(
                "kernel Landlock ABI {abi} is below the policy's min_landlock_abi {}; \
                 allowed by the degradation `landlock`",
                policy.min_landlock_abi
            ));
            let status = match status {
                LayerStatus::FullyEnforced => LayerStatus::PartiallyEnforced,
                other => other,
            };
            LayerReport::degraded("landlock", status, d)
        }
        (_, LayerStatus::FullyEnforced) => LayerReport::full("landlock", fs_details),
        // Partial is the normal best-effort outcome on an older kernel; accepted because the
        // ABI is at least the policy's minimum (or the policy allows less).
        (_, status) => LayerReport::degraded("landlock", status, fs_details),
    });
    if policy.network == NetworkMode::None {
        if abi >= 4 {
            out.push(LayerReport::full(
                "landlock_network",
                json!({"tcp_bind_connect": "denied"}),
            ));
        } else if allows(Degradation::LandlockNetwork) {
            out.push(LayerReport::degraded(
                "landlock_network",
                LayerStatus::NotEnforced,
                json!({"reason": "kernel Landlock ABI < 4; the empty network namespace still applies"}),
            ));
        } else {
            return Err(LandlockError::Insufficient {
                what: "TCP restriction",
                abi,
                degradation: Degradation::LandlockNetwork,
            });
        }
    }
    if abi >= 6 {
        out.push(LayerReport::full(
            "landlock_scope",
            json!({"abstract_unix_socket": "scoped", "signal": "scoped"}),
        ));
    } else if allows(Degradation::LandlockScope) {
        out.push(LayerReport::degraded(
            "landlock_scope",
            LayerStatus::NotEnforced,
            json!({"reason": "kernel Landlock ABI < 6; the network and pid namespaces still isolate abstract sockets and signals"}),
        ));
    } else {
        return Err(LandlockError::Insufficient {
            what: "scoping",
            abi,
            degradation: Degradation::LandlockScope,
        });
    }
    Ok(out)
}

/// The filesystem rights of [`REQUESTED`] that a kernel of Landlock ABI `abi` (≥ 1) does not
/// know, each named with the ABI that brought it. TCP (ABI 4) and scoping (ABI 6) are layers
/// of their own (`landlock_network`, `landlock_scope`).
fn missing_fs_rights(abi: u32) -> Vec<&'static str> {
    [
        (
            2,
            "refer (ABI 2: linking or renaming a file into another directory)",
        ),
        (3, "truncate (ABI 3)"),
        (5, "ioctl on device files (ABI 5)"),
    ]
    .into_iter()
    .filter(|(since, _)| abi < *since)
    .map(|(_, right)| right)
    .collect()
}

fn path(p: &str) -> Result<PathFd, LandlockError> {
    PathFd::new(p).map_err(|e| LandlockError::Path(p.into(), open_cause(e)))
}

/// The OS error under a failed `PathFd::new`: the crate's error repeats its cause in its own
/// message (`failed to open "…": <cause>`) and names it as its source as well, so kept as it
/// is the cause would be printed twice in every error chain.
fn open_cause(e: landlock::PathFdError) -> std::io::Error {
    match e {
        landlock::PathFdError::OpenCall { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Build and apply the ruleset to the calling thread (after pivot_root; `exec_fd` is the
/// program, which may live outside the sandbox's tree; None for a sealed in-memory copy of it,
/// on the kernel's internal mount, which Landlock takes no rule for and does not restrict).
/// Returns (kernel ABI, ruleset status).
pub fn apply(
    policy: &ValidatedSandboxPolicy,
    exec_fd: Option<BorrowedFd<'_>>,
) -> Result<(u32, LayerStatus), LandlockError> {
    let e = LandlockError::Ruleset;
    let all = AccessFs::from_all(REQUESTED);
    let read = AccessFs::from_read(REQUESTED);
    let mut rs = landlock::Ruleset::default().handle_access(all).map_err(e)?;
    if policy.network == NetworkMode::None {
        rs = rs
            .handle_access(AccessNet::from_all(REQUESTED))
            .map_err(e)?;
    }
    rs = rs.scope(Scope::from_all(REQUESTED)).map_err(e)?;
    let mut c = rs.create().map_err(e)?;
    c = c.add_rule(PathBeneath::new(path("/")?, read)).map_err(e)?;
    c = c
        .add_rule(PathBeneath::new(path("/tmp")?, all))
        .map_err(e)?;
    for w in &policy.writable {
        c = c.add_rule(PathBeneath::new(path(w)?, all)).map_err(e)?;
    }
    c = c
        .add_rule(PathBeneath::new(
            path("/dev")?,
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::ReadDir,
        ))
        .map_err(e)?;
    // The program itself may sit outside every bound tree (it is executed from its descriptor).
    if let Some(exec_fd) = exec_fd {
        c = c
            .add_rule(PathBeneath::new(
                exec_fd,
                AccessFs::Execute | AccessFs::ReadFile,
            ))
            .map_err(e)?;
    }
    let st = c.restrict_self().map_err(e)?;
    let abi = match st.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        _ => 0,
    };
    let status = match st.ruleset {
        RulesetStatus::FullyEnforced => LayerStatus::FullyEnforced,
        RulesetStatus::PartiallyEnforced => LayerStatus::PartiallyEnforced,
        RulesetStatus::NotEnforced => LayerStatus::NotEnforced,
    };
    Ok((abi, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::{default_policy, parse_policy};

    #[test]
    fn an_unopenable_rule_path_names_its_cause_once() {
        let e = path("/nonexistent/stockade-landlock-rule").unwrap_err();
        let chain = crate::package::verify::error_chain(&e);
        let cause = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
        assert!(
            chain.contains("/nonexistent/stockade-landlock-rule"),
            "{chain}"
        );
    }

    #[test]
    fn default_policy_accepts_abi_2_with_reported_degradations() {
        let r = evaluate(&default_policy(), false, 2, LayerStatus::PartiallyEnforced).unwrap();
        let names: Vec<_> = r.iter().map(|l| (l.layer.as_str(), l.status)).collect();
        assert_eq!(
            names,
            vec![
                ("landlock", LayerStatus::PartiallyEnforced),
                ("landlock_network", LayerStatus::NotEnforced),
                ("landlock_scope", LayerStatus::NotEnforced),
            ]
        );
        assert!(r.iter().all(|l| l.degradation_allowed));
    }

    #[test]
    fn missing_landlock_stops_the_default_policy() {
        assert!(evaluate(&default_policy(), true, 0, LayerStatus::NotEnforced).is_err());
    }

    #[test]
    fn strict_policy_demands_abi_and_features() {
        let p = parse_policy("version = 1\n[layers]\nmin_landlock_abi = 6\nallow_degraded = []\n")
            .unwrap();
        assert!(evaluate(&p, false, 2, LayerStatus::PartiallyEnforced).is_err());
        let r = evaluate(&p, false, 7, LayerStatus::FullyEnforced).unwrap();
        assert!(r.iter().all(|l| l.status == LayerStatus::FullyEnforced));
    }

    #[test]
    fn an_abi_below_the_minimum_that_is_tolerated_is_reported_degraded() {
        // audit-134: ABI 7 under `min_landlock_abi = 8` with `landlock` allowed ran and was
        // reported fully enforced, the degradation unsaid.
        let p = parse_policy(
            "version = 1\n[layers]\nmin_landlock_abi = 8\nallow_degraded = [\"landlock\"]\n",
        )
        .unwrap();
        let r = evaluate(&p, false, 7, LayerStatus::FullyEnforced).unwrap();
        assert_eq!(r[0].layer, "landlock");
        assert_eq!(r[0].status, LayerStatus::PartiallyEnforced);
        assert!(r[0].degradation_allowed);
        let reason = r[0].details["reason"].as_str().unwrap();
        assert!(reason.contains("min_landlock_abi 8"), "{reason}");
        // At the minimum it is no degradation.
        let r = evaluate(&p, false, 8, LayerStatus::FullyEnforced).unwrap();
        assert_eq!(r[0].status, LayerStatus::FullyEnforced);
        assert!(!r[0].degradation_allowed);
    }

    #[test]
    fn landlock_optional_when_policy_says_so() {
        let p = parse_policy("version = 1\n[layers]\nmin_landlock_abi = 0\nallow_degraded = [\"landlock_network\", \"landlock_scope\"]\n")
            .unwrap();
        let r = evaluate(&p, false, 0, LayerStatus::NotEnforced).unwrap();
        assert_eq!(r[0].status, LayerStatus::NotEnforced);
    }

    /// audit-154: on Debian's 6.1 (ABI 2) the default policy's launch said only "layer
    /// `landlock` is only partly enforced", and on a kernel without Landlock "is not enforced",
    /// in the warning, the report and the audit record alike: not what the plugin runs without.
    #[test]
    fn a_partial_or_missing_landlock_names_what_it_lacks() {
        let r = evaluate(&default_policy(), false, 2, LayerStatus::PartiallyEnforced).unwrap();
        let missing = r[0].details["not_applied"].to_string();
        assert!(
            missing.contains("truncate (ABI 3)")
                && missing.contains("ioctl on device files (ABI 5)"),
            "{missing}"
        );
        assert!(!missing.contains("refer"), "{missing}");
        let report = |layers| super::super::report::Report {
            schema: super::super::report::REPORT_SCHEMA.into(),
            mode: "root".into(),
            pid: None,
            host_uid: 0,
            host_gid: 0,
            inside_uid: 1000,
            layers,
            limits_hit: Default::default(),
            exit: None,
            cleaned_up: true,
        };
        let warning = &report(r.clone()).degradations()[0];
        assert!(
            warning.contains("not applied: refer") || warning.contains("not applied: truncate"),
            "{warning}"
        );
        assert_eq!(
            report(r).degraded()[0]["not_applied"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        // ABI 1 lacks refer too; at ABI 5 and above nothing of the filesystem rights.
        let r = evaluate(&default_policy(), false, 1, LayerStatus::PartiallyEnforced).unwrap();
        assert_eq!(
            r[0].details["not_applied"].as_array().map(Vec::len),
            Some(3)
        );
        let r = evaluate(&default_policy(), false, 6, LayerStatus::FullyEnforced).unwrap();
        assert!(r[0].details.get("not_applied").is_none());
        // No Landlock at all, tolerated: the reason says so, for either way of tolerating it.
        for text in [
            "version = 1\n[layers]\nmin_landlock_abi = 0\n",
            "version = 1\n[layers]\nallow_degraded = [\"landlock\", \"landlock_network\", \"landlock_scope\"]\n",
        ] {
            let r = evaluate(&parse_policy(text).unwrap(), false, 0, LayerStatus::NotEnforced)
                .unwrap();
            let reason = r[0].details["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("no Landlock"), "{text}: {reason}");
            let warning = &report(r).degradations()[0];
            assert!(warning.contains("no Landlock"), "{warning}");
        }
    }
}
