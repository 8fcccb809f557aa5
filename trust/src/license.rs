//! Node licenses: a root-signed statement that a node is activated with a serial, optionally
//! bound to one hardware id, with a state (`active` or `frozen`) and an optional expiry.
//!
//! File: `{"license": {format, serial, state, hardware_id?, issued_at, expires_at?,
//! issuer_key_id}, "signature": "..."}`. A `license:<serial>` scope admits a node only if its
//! license verifies, is active, unexpired, bound to this node (if bound) and has that serial.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};

/// The envelope field holding the body.
pub const FIELD: &str = "license";

/// License state (seed 000: installs are blocked while frozen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseState {
    /// In good standing.
    Active,
    /// Frozen: no new plugin may be admitted under it.
    Frozen,
}

/// The signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseBody {
    /// Format version, 1.
    pub format: u32,
    /// License serial (`[A-Za-z0-9._-]{1,64}`).
    pub serial: String,
    /// Active or frozen.
    pub state: LicenseState,
    /// Bound hardware id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// Signing time.
    pub issued_at: u64,
    /// Expiry, if any (unix seconds, exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Signing root's key id.
    pub issuer_key_id: String,
}

/// Why a license is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseError {
    /// Envelope malformed.
    #[error("malformed license file")]
    Envelope(#[source] EnvelopeError),
    /// Body shape wrong.
    #[error("license body has the wrong shape")]
    Body(#[source] serde_json::Error),
    /// Bad field.
    #[error("license field `{0}` is invalid")]
    Field(&'static str),
    /// Unknown signer.
    #[error("license is signed by key {0}, which is not a trusted root")]
    UnknownIssuer(KeyId),
    /// Bad signature.
    #[error("license signature does not verify")]
    Signature(#[source] MinisignError),
    /// Expired.
    #[error("license {serial} expired at {expires_at}")]
    Expired {
        /// Serial.
        serial: String,
        /// Expiry.
        expires_at: u64,
    },
    /// Bound to another node.
    #[error("license {serial} is bound to hardware id {bound}, not this node ({node})")]
    WrongHardware {
        /// Serial.
        serial: String,
        /// Bound id.
        bound: String,
        /// This node's id.
        node: String,
    },
    /// Signing failed.
    #[error("cannot sign the license")]
    Sign(#[source] EnvelopeError),
}

/// A syntactically valid license (signature not yet checked).
#[derive(Debug, Clone)]
pub struct License {
    /// The body.
    pub body: LicenseBody,
    /// Issuer id.
    pub issuer: KeyId,
    envelope: Envelope,
}

fn check(body: &LicenseBody) -> Result<KeyId, LicenseError> {
    if body.format != 1 {
        return Err(LicenseError::Field("format"));
    }
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !ok(&body.serial) {
        return Err(LicenseError::Field("serial"));
    }
    if body.hardware_id.as_deref().is_some_and(|h| !ok(h)) {
        return Err(LicenseError::Field("hardware_id"));
    }
    body.issuer_key_id
        .parse()
        .map_err(|_| LicenseError::Field("issuer_key_id"))
}

impl License {
    /// Parse and syntax-check.
    pub fn parse(bytes: &[u8]) -> Result<Self, LicenseError> {
        let envelope = Envelope::parse(bytes, FIELD).map_err(LicenseError::Envelope)?;
        let body: LicenseBody =
            serde_json::from_value(envelope.body.clone()).map_err(LicenseError::Body)?;
        let issuer = check(&body)?;
        Ok(Self {
            body,
            issuer,
            envelope,
        })
    }

    /// Sign a license body with a root key.
    pub fn issue(
        body: &LicenseBody,
        key: &SecretKey,
        trusted_comment: &str,
    ) -> Result<Vec<u8>, LicenseError> {
        check(body)?;
        Envelope::sign(body, FIELD, key, trusted_comment).map_err(LicenseError::Sign)
    }

    /// Verify the signature by a trusted root, expiry at `now`, and the hardware binding against
    /// `node_hardware_id`. The state (active/frozen) is reported, not judged, here.
    pub fn verify(
        &self,
        roots: &[PublicKey],
        now: u64,
        node_hardware_id: &str,
    ) -> Result<(), LicenseError> {
        let candidates: Vec<&PublicKey> =
            roots.iter().filter(|r| r.key_id == self.issuer).collect();
        if candidates.is_empty() {
            return Err(LicenseError::UnknownIssuer(self.issuer));
        }
        let mut result = Ok(());
        for r in candidates {
            result = self.envelope.verify(r);
            if result.is_ok() {
                break;
            }
        }
        result.map_err(LicenseError::Signature)?;
        if let Some(exp) = self.body.expires_at {
            if now >= exp {
                return Err(LicenseError::Expired {
                    serial: self.body.serial.clone(),
                    expires_at: exp,
                });
            }
        }
        if let Some(bound) = &self.body.hardware_id {
            if bound != node_hardware_id {
                return Err(LicenseError::WrongHardware {
                    serial: self.body.serial.clone(),
                    bound: bound.clone(),
                    node: node_hardware_id.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_checks() {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = LicenseBody {
            format: 1,
            serial: "ACME-1".into(),
            state: LicenseState::Active,
            hardware_id: Some("abcd".into()),
            issued_at: 1,
            expires_at: Some(100),
            issuer_key_id: root.public_key().key_id.to_string(),
        };
        let l = License::parse(&License::issue(&body, &root, "").unwrap()).unwrap();
        let roots = [root.public_key()];
        l.verify(&roots, 50, "abcd").unwrap();
        assert!(matches!(
            l.verify(&roots, 50, "ffff"),
            Err(LicenseError::WrongHardware { .. })
        ));
        assert!(matches!(
            l.verify(&roots, 100, "abcd"),
            Err(LicenseError::Expired { .. })
        ));
        let other = SecretKey::from_seed([2; 32], [2; 8]).public_key();
        assert!(matches!(
            l.verify(&[other], 50, "abcd"),
            Err(LicenseError::UnknownIssuer(_))
        ));
    }

    /// `"state": "active"` put in front of a frozen license's signed state is a malformed
    /// license, not a second reading of it.
    #[test]
    fn a_repeated_key_is_a_malformed_license() {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = LicenseBody {
            format: 1,
            serial: "ACME-1".into(),
            state: LicenseState::Frozen,
            hardware_id: None,
            issued_at: 1,
            expires_at: None,
            issuer_key_id: root.public_key().key_id.to_string(),
        };
        let bytes = License::issue(&body, &root, "").unwrap();
        let dup = crate::signed::tests::prepend_in_body(&bytes, FIELD, r#""state": "active""#);
        crate::signed::tests::lenient_reading_verifies(&dup, FIELD, &root.public_key());
        assert!(matches!(
            License::parse(&dup),
            Err(LicenseError::Envelope(EnvelopeError::DuplicateKey(_)))
        ));
    }
}
