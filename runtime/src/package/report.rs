//! The verification report: what `stockade verify --json` prints and what the launcher keeps.
//! Built once and rendered either as JSON or as text, so the two never disagree.

use super::extract::Extracted;
use crate::trustdir::TrustMode;
use serde::{Deserialize, Serialize};
use stockade_policy::capability::Capability;
use stockade_trust::cert::Certificate;

/// Signature status of the report (seed 002), one documented set:
/// `verified` (every trust step passed), `invalid` (signature), `untrusted` (chain),
/// `expired` (validity), `revoked` (revocation), `out_of_scope` (scope), `skipped` (disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// All trust steps passed.
    Verified,
    /// Step 2 failed.
    Invalid,
    /// Step 3 failed.
    Untrusted,
    /// Step 4 failed.
    Expired,
    /// Step 5 failed.
    Revoked,
    /// Step 6 failed.
    OutOfScope,
    /// Trust mode disabled.
    Skipped,
}

impl SignatureStatus {
    /// The status a report or the store's registry names (`verified`, `out_of_scope`, …);
    /// `None` for a name this build does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::from(name)).ok()
    }
}

/// Outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Passed.
    Pass,
    /// Failed (verification stopped).
    Fail,
    /// Failed but downgraded by `--trust-mode warn`, or passed with a caveat.
    Warn,
    /// Not run.
    Skipped,
}

/// One step of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-8.
    pub step: u8,
    /// Short name.
    pub name: &'static str,
    /// Outcome.
    pub status: StepStatus,
    /// Details.
    pub detail: String,
}

/// A certificate as shown in reports.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// intermediate/developer.
    pub kind: String,
    /// Subject name.
    pub subject: String,
    /// Serial.
    pub serial: String,
    /// Subject key id.
    pub key_id: String,
    /// Issuer key id.
    pub issuer_key_id: String,
    /// Scope.
    pub scope: String,
    /// Capability ceiling.
    pub capabilities: Vec<Capability>,
    /// Validity start.
    pub not_before: u64,
    /// Validity end.
    pub not_after: u64,
}

impl From<&Certificate> for CertInfo {
    fn from(c: &Certificate) -> Self {
        let b = &c.body;
        CertInfo {
            kind: b.kind.to_string(),
            subject: b.subject.clone(),
            serial: b.serial.clone(),
            key_id: b.key_id.clone(),
            issuer_key_id: b.issuer_key_id.clone(),
            scope: b.scope.to_string(),
            capabilities: b.capabilities.clone(),
            not_before: b.not_before,
            not_after: b.not_after,
        }
    }
}

/// The verification report (printed by `stockade verify`, kept by the launcher).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The package path as given.
    pub file: String,
    /// Trust mode.
    pub trust_mode: TrustMode,
    /// Overall status.
    pub signature_status: SignatureStatus,
    /// Each step.
    pub steps: Vec<Step>,
    /// Warnings (downgraded failures, unconfigured revocation).
    pub warnings: Vec<String>,
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// SHA-256 of the whole package file.
    pub package_sha256: String,
    /// SHA-256 of the signed statement.
    pub statement_sha256: String,
    /// SHA-256 of the payload.
    pub payload_sha256: String,
    /// Files in the signed map.
    pub file_count: usize,
    /// Signer key id (from the signature).
    pub signer_key_id: Option<String>,
    /// The signature's trusted comment.
    pub trusted_comment: Option<String>,
    /// Developer then intermediate.
    pub chain: Vec<CertInfo>,
    /// The root that anchors the chain.
    pub root_key_id: Option<String>,
    /// Revocation list version used, if any.
    pub revocation_version: Option<u64>,
    /// Developer certificate scope.
    pub scope: Option<String>,
    /// Developer certificate capability ceiling.
    pub capability_ceiling: Vec<Capability>,
    /// Requested by the manifest.
    pub requested_capabilities: Vec<Capability>,
    /// Requested ∩ ceiling: what the plugin may use.
    pub granted_capabilities: Vec<Capability>,
    /// Extraction summary.
    pub extracted: Option<Extracted>,
}

impl Report {
    /// How verification admitted the package, for an agent: `{"signature_status", "warnings"}`
    /// (the `ready` `plugin_state`'s, as `serve`'s plugin status carries them): anything but
    /// `verified`, and any warning, says a trust mode below strict let it pass.
    pub fn admitted(&self) -> serde_json::Value {
        serde_json::json!({
            "signature_status": self.signature_status,
            "warnings": self.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SignatureStatus as S;

    /// The store's registry keeps a package's status by name; reading it back must give the
    /// status a report serialized, and a name this build does not know must give none (the
    /// store's removal record then names the signers as only claimed).
    #[test]
    fn a_status_is_read_back_from_its_name() {
        for s in [
            S::Verified,
            S::Invalid,
            S::Untrusted,
            S::Expired,
            S::Revoked,
            S::OutOfScope,
            S::Skipped,
        ] {
            let name = serde_json::to_value(s).unwrap();
            assert_eq!(S::from_name(name.as_str().unwrap()), Some(s), "{name}");
        }
        assert_eq!(S::from_name("Verified"), None);
        assert_eq!(S::from_name("compromised"), None);
        assert_eq!(S::from_name(""), None);
    }
}
