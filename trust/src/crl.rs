//! Revocation lists: signed by a root key, monotonically versioned, expiring.
//!
//! File (conventionally `revocations.json` in the trust directory):
//! `{"revocations": {format, version, issued_at, expires_at, issuer_key_id, revoked_serials,
//! revoked_key_ids}, "signature": "..."}`. The caller remembers the highest version seen per
//! issuer (the runtime keeps it in its state directory) and passes it in, so an attacker who can
//! write the trust directory cannot roll the list back to before a revocation.

use crate::cert::{valid_serial, Certificate};
use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};

/// The envelope field holding the body.
pub const FIELD: &str = "revocations";

/// The signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    /// Format version, 1.
    pub format: u32,
    /// Monotonic version; each re-issue increments it.
    pub version: u64,
    /// When it was signed (unix seconds).
    pub issued_at: u64,
    /// When it stops being acceptable (unix seconds, exclusive).
    pub expires_at: u64,
    /// Key id of the signing root.
    pub issuer_key_id: String,
    /// Revoked certificate serials, sorted.
    pub revoked_serials: Vec<String>,
    /// Revoked subject key ids, sorted.
    pub revoked_key_ids: Vec<String>,
}

/// Why a revocation list or a certificate against it fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Envelope malformed.
    #[error("malformed revocation list")]
    Envelope(#[source] EnvelopeError),
    /// Body shape wrong.
    #[error("revocation list body has the wrong shape")]
    Body(#[source] serde_json::Error),
    /// Bad field.
    #[error("revocation list field `{0}` is invalid")]
    Field(&'static str),
    /// No trusted root has the issuer id.
    #[error("revocation list is signed by key {0}, which is not a trusted root")]
    UnknownIssuer(KeyId),
    /// Signature fails.
    #[error("revocation list signature does not verify")]
    Signature(#[source] MinisignError),
    /// Past `expires_at`.
    #[error("revocation list version {version} expired at {expires_at} (now {now})")]
    Expired {
        /// List version.
        version: u64,
        /// Expiry.
        expires_at: u64,
        /// Time checked.
        now: u64,
    },
    /// Lower version than one seen before.
    #[error("revocation list version {found} is older than version {seen} seen before (rollback)")]
    Rollback {
        /// Version in the file.
        found: u64,
        /// Highest version remembered.
        seen: u64,
    },
    /// A certificate's serial is revoked.
    #[error("{kind} certificate serial {serial} is revoked")]
    RevokedSerial {
        /// Which certificate.
        kind: String,
        /// Its serial.
        serial: String,
    },
    /// A certificate's key is revoked.
    #[error("{kind} certificate key {key_id} is revoked")]
    RevokedKey {
        /// Which certificate.
        kind: String,
        /// The key id.
        key_id: String,
    },
    /// Signing failed.
    #[error("cannot sign the revocation list")]
    Sign(#[source] EnvelopeError),
}

/// A syntactically valid list whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct RevocationList {
    /// The body.
    pub body: RevocationBody,
    /// Issuer id.
    pub issuer: KeyId,
    envelope: Envelope,
}

fn check(body: &RevocationBody) -> Result<KeyId, CrlError> {
    if body.format != 1 {
        return Err(CrlError::Field("format"));
    }
    if body.expires_at <= body.issued_at {
        return Err(CrlError::Field("expires_at"));
    }
    if body.revoked_serials.windows(2).any(|w| w[0] >= w[1])
        || !body.revoked_serials.iter().all(|s| valid_serial(s))
    {
        return Err(CrlError::Field("revoked_serials"));
    }
    if body.revoked_key_ids.windows(2).any(|w| w[0] >= w[1])
        || !body
            .revoked_key_ids
            .iter()
            .all(|k| k.parse::<KeyId>().is_ok_and(|id| id.to_string() == *k))
    {
        return Err(CrlError::Field("revoked_key_ids"));
    }
    body.issuer_key_id
        .parse()
        .map_err(|_| CrlError::Field("issuer_key_id"))
}

impl RevocationList {
    /// Parse and syntax-check.
    pub fn parse(bytes: &[u8]) -> Result<Self, CrlError> {
        let envelope = Envelope::parse(bytes, FIELD).map_err(CrlError::Envelope)?;
        let body: RevocationBody =
            serde_json::from_value(envelope.body.clone()).map_err(CrlError::Body)?;
        let issuer = check(&body)?;
        Ok(Self {
            body,
            issuer,
            envelope,
        })
    }

    /// Sign a list body with a root key.
    pub fn issue(
        body: &RevocationBody,
        key: &SecretKey,
        trusted_comment: &str,
    ) -> Result<Vec<u8>, CrlError> {
        check(body)?;
        Envelope::sign(body, FIELD, key, trusted_comment).map_err(CrlError::Sign)
    }

    /// Verify signature (by any root with the issuer id), expiry and monotonicity against
    /// `seen`, the highest version remembered for this issuer.
    pub fn verify(&self, roots: &[PublicKey], now: u64, seen: Option<u64>) -> Result<(), CrlError> {
        let mut candidates = roots.iter().filter(|r| r.key_id == self.issuer).peekable();
        if candidates.peek().is_none() {
            return Err(CrlError::UnknownIssuer(self.issuer));
        }
        let mut last = None;
        if !candidates.any(|r| match self.envelope.verify(r) {
            Ok(()) => true,
            Err(e) => {
                last = Some(e);
                false
            }
        }) {
            return Err(CrlError::Signature(
                last.unwrap_or(MinisignError::Layout("no key")),
            ));
        }
        if now >= self.body.expires_at {
            return Err(CrlError::Expired {
                version: self.body.version,
                expires_at: self.body.expires_at,
                now,
            });
        }
        if let Some(seen) = seen {
            if self.body.version < seen {
                return Err(CrlError::Rollback {
                    found: self.body.version,
                    seen,
                });
            }
        }
        Ok(())
    }

    /// Fail if any certificate's serial or subject key id is listed.
    pub fn check_certs(&self, certs: &[&Certificate]) -> Result<(), CrlError> {
        for c in certs {
            if self
                .body
                .revoked_serials
                .binary_search(&c.body.serial)
                .is_ok()
            {
                return Err(CrlError::RevokedSerial {
                    kind: c.body.kind.to_string(),
                    serial: c.body.serial.clone(),
                });
            }
            let id = c.subject_key.key_id.to_string();
            if self.body.revoked_key_ids.binary_search(&id).is_ok() {
                return Err(CrlError::RevokedKey {
                    kind: c.body.kind.to_string(),
                    key_id: id,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(version: u64, serials: Vec<String>) -> (SecretKey, RevocationList) {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = RevocationBody {
            format: 1,
            version,
            issued_at: 10,
            expires_at: 100,
            issuer_key_id: root.public_key().key_id.to_string(),
            revoked_serials: serials,
            revoked_key_ids: vec![],
        };
        let l = RevocationList::parse(&RevocationList::issue(&body, &root, "").unwrap()).unwrap();
        (root, l)
    }

    #[test]
    fn verify_expiry_rollback() {
        let (root, l) = list(5, vec!["0".repeat(32)]);
        let roots = [root.public_key()];
        l.verify(&roots, 50, Some(5)).unwrap();
        l.verify(&roots, 50, None).unwrap();
        assert!(matches!(
            l.verify(&roots, 50, Some(6)),
            Err(CrlError::Rollback { found: 5, seen: 6 })
        ));
        assert!(matches!(
            l.verify(&roots, 100, None),
            Err(CrlError::Expired { .. })
        ));
        let other = SecretKey::from_seed([2; 32], [2; 8]).public_key();
        assert!(matches!(
            l.verify(&[other], 50, None),
            Err(CrlError::UnknownIssuer(_))
        ));
    }

    #[test]
    fn unsorted_serials_rejected() {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = RevocationBody {
            format: 1,
            version: 1,
            issued_at: 1,
            expires_at: 2,
            issuer_key_id: root.public_key().key_id.to_string(),
            revoked_serials: vec!["1".repeat(32), "0".repeat(32)],
            revoked_key_ids: vec![],
        };
        assert!(matches!(
            RevocationList::issue(&body, &root, ""),
            Err(CrlError::Field("revoked_serials"))
        ));
    }

    /// An empty serial list put in front of the signed one (a first-wins reader would see
    /// nothing revoked) is a malformed list.
    #[test]
    fn a_repeated_key_is_a_malformed_list() {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = RevocationBody {
            format: 1,
            version: 2,
            issued_at: 10,
            expires_at: 100,
            issuer_key_id: root.public_key().key_id.to_string(),
            revoked_serials: vec!["0".repeat(32)],
            revoked_key_ids: vec![],
        };
        let bytes = RevocationList::issue(&body, &root, "").unwrap();
        let dup = crate::signed::tests::prepend_in_body(&bytes, FIELD, r#""revoked_serials": []"#);
        crate::signed::tests::lenient_reading_verifies(&dup, FIELD, &root.public_key());
        assert!(matches!(
            RevocationList::parse(&dup),
            Err(CrlError::Envelope(EnvelopeError::DuplicateKey(_)))
        ));
    }
}
