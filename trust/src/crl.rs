//! Revocation lists: signed by a root key, monotonically versioned, expiring.
//!
//! File (conventionally `revocations.json` in the trust directory):
//! `{"revocations": {format, version, issued_at, expires_at, issuer_key_id, revoked_serials,
//! revoked_key_ids}, "signature": "..."}`. The caller remembers the highest version seen per
//! issuer, with the digest of that list's signed body ([`Seen`]; the runtime keeps it in its
//! state directory), and passes it in, so an attacker who can write the trust directory cannot
//! roll the list back to before a revocation, nor swap in another list signed under the same
//! version (one without the serial — the CA's mistake or a stolen key): a list is never
//! re-issued under a version already used, so the same version with other content is
//! equivocation, refused like a rollback.
//!
//! The digest is of the canonical signed body, not of the file: the file may be re-indented
//! (the signature covers the body's canonical bytes), and a re-indented list is the same list.

use crate::cert::{valid_serial, Certificate};
use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// A format above 1: signed by a newer Stockade ([`Envelope::newer_format`]).
    #[error("revocation list format {0} is of a newer Stockade (this one reads format 1)")]
    NewerFormat(u64),
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
    /// The same version as the list seen before, with another signed body.
    #[error("revocation list version {version} was seen before with other content (signed body sha256 {seen}, now {found}): a list is never re-issued under a version already used")]
    Changed {
        /// The version.
        version: u64,
        /// Hex SHA-256 of the body seen before.
        seen: String,
        /// Hex SHA-256 of this list's body.
        found: String,
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

/// What a node remembers of the latest list accepted from one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its version: a lower one is a rollback.
    pub version: u64,
    /// SHA-256 of its canonical signed body ([`RevocationList::body_sha256`]): the same version
    /// with another digest is refused. `None` where only the version was remembered (state
    /// written before digests were kept); the caller records the digest when it next accepts
    /// that version.
    pub body_sha256: Option<[u8; 32]>,
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
        if let Some(format) = envelope.newer_format() {
            return Err(CrlError::NewerFormat(format));
        }
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

    /// SHA-256 of the canonical bytes of the signed body: what identifies this list's content
    /// (the file around it may be re-indented).
    pub fn body_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.envelope.canonical).into()
    }

    /// Verify signature (by any root with the issuer id), expiry, and freshness against `seen`,
    /// what is remembered of the last list accepted from this issuer: not an older version, and
    /// not the same version with another body.
    pub fn verify(
        &self,
        roots: &[PublicKey],
        now: u64,
        seen: Option<Seen>,
    ) -> Result<(), CrlError> {
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
            if self.body.version < seen.version {
                return Err(CrlError::Rollback {
                    found: self.body.version,
                    seen: seen.version,
                });
            }
            let found = self.body_sha256();
            match seen.body_sha256 {
                Some(d) if self.body.version == seen.version && d != found => {
                    return Err(CrlError::Changed {
                        version: seen.version,
                        seen: hex::encode(d),
                        found: hex::encode(found),
                    });
                }
                _ => {}
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
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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

    fn seen(version: u64) -> Option<Seen> {
        Some(Seen {
            version,
            body_sha256: None,
        })
    }

    #[test]
    fn verify_expiry_rollback() {
        let (root, l) = list(5, vec!["0".repeat(32)]);
        let roots = [root.public_key()];
        l.verify(&roots, 50, seen(5)).unwrap();
        l.verify(&roots, 50, None).unwrap();
        assert!(matches!(
            l.verify(&roots, 50, seen(6)),
            Err(CrlError::Rollback { found: 5, seen: 6 })
        ));
        assert!(matches!(
            l.verify(&roots, 100, None),
            Err(CrlError::Expired { .. })
        ));
        let other = SecretKey::from_seed(&[2; 32], [2; 8]).public_key();
        assert!(matches!(
            l.verify(&[other], 50, None),
            Err(CrlError::UnknownIssuer(_))
        ));
    }

    /// Two lists signed under one version, the second without the serial: once the first is
    /// remembered with its digest, the second is refused (and the first still accepted, even
    /// re-indented); a higher version is accepted whatever its digest; without a remembered
    /// digest (older state) only the version is compared.
    #[test]
    fn same_version_other_content_is_refused() {
        let (root, revoking) = list(5, vec!["0".repeat(32)]);
        let (_, undoing) = list(5, vec![]);
        let roots = [root.public_key()];
        let remembered = Some(Seen {
            version: 5,
            body_sha256: Some(revoking.body_sha256()),
        });
        revoking.verify(&roots, 50, remembered).unwrap();
        match undoing.verify(&roots, 50, remembered) {
            Err(CrlError::Changed {
                version: 5,
                seen,
                found,
            }) => {
                assert_eq!(seen, hex::encode(revoking.body_sha256()));
                assert_eq!(found, hex::encode(undoing.body_sha256()));
            }
            other => panic!("{other:?}"),
        }
        let e = undoing.verify(&roots, 50, remembered).unwrap_err();
        assert!(
            e.to_string().contains("seen before with other content"),
            "{e}"
        );
        // The digest is of the signed body: the same list re-indented is the same list.
        let reindented: serde_json::Value =
            serde_json::from_slice(&RevocationList::issue(&revoking.body, &root, "").unwrap())
                .unwrap();
        let compact = RevocationList::parse(&serde_json::to_vec(&reindented).unwrap()).unwrap();
        assert_eq!(compact.body_sha256(), revoking.body_sha256());
        compact.verify(&roots, 50, remembered).unwrap();
        // A higher version moves on; older state (no digest) compares versions only.
        let (_, next) = list(6, vec![]);
        next.verify(&roots, 50, remembered).unwrap();
        undoing.verify(&roots, 50, seen(5)).unwrap();
    }

    #[test]
    fn unsorted_serials_rejected() {
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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
