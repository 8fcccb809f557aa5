//! Certificates: a signed canonical-JSON body binding a subject's public key to a kind
//! (intermediate or developer), a scope, a capability ceiling and a validity window.
//!
//! File: `{"certificate": {...}, "signature": "<minisign ED signature by the issuer>"}` (see
//! [`crate::signed`]). Parsing checks syntax only ([`Certificate::parse`]); whether the bounds
//! are respected and who signed it is decided in [`crate::chain`], so that `inspect` can show a
//! certificate it would refuse.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use stockade_policy::capability::{Capability, Scope};

/// The envelope field holding the body.
pub const FIELD: &str = "certificate";

/// Which link of the chain a certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    /// Signed by a root; signs developer certificates.
    Intermediate,
    /// Signed by an intermediate; signs packages.
    Developer,
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertKind::Intermediate => "intermediate",
            CertKind::Developer => "developer",
        })
    }
}

/// The signed body, exactly as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertBody {
    /// Format version, 1.
    pub format: u32,
    /// Intermediate or developer.
    pub kind: CertKind,
    /// 128-bit random serial, 32 lowercase hex digits.
    pub serial: String,
    /// Human-readable subject name.
    pub subject: String,
    /// Subject public key, minisign base64 line.
    pub subject_key: String,
    /// Subject key id (must match `subject_key`).
    pub key_id: String,
    /// Where the holder may run plugins.
    pub scope: Scope,
    /// Capability ceiling, sorted, no duplicates.
    pub capabilities: Vec<Capability>,
    /// Valid from (unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (unix seconds, exclusive).
    pub not_after: u64,
    /// Key id of the issuer's key.
    pub issuer_key_id: String,
}

/// Why a certificate could not be parsed or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A format above 1: signed by a newer Stockade ([`Envelope::newer_format`]).
    #[error("certificate format {0} is of a newer Stockade (this one reads format 1)")]
    NewerFormat(u64),
    /// The envelope is malformed.
    #[error("malformed certificate file")]
    Envelope(#[source] EnvelopeError),
    /// The body does not have the certificate shape.
    #[error("certificate body has the wrong shape")]
    Body(#[source] serde_json::Error),
    /// Unknown format version.
    #[error("certificate format {0} is not supported (expected 1)")]
    Format(u32),
    /// Serial is not 32 lowercase hex digits.
    #[error("serial `{0}` must be 32 lowercase hex digits")]
    Serial(String),
    /// Subject name empty, too long or with control characters.
    #[error("subject must be 1-128 printable characters")]
    Subject,
    /// The embedded subject key does not parse.
    #[error("subject key is invalid")]
    SubjectKey(#[source] MinisignError),
    /// `key_id` disagrees with the key.
    #[error("key_id {claimed} does not match the subject key's id {actual}")]
    KeyIdMismatch {
        /// What the body says.
        claimed: String,
        /// What the key says.
        actual: KeyId,
    },
    /// `issuer_key_id` is not a key id.
    #[error("issuer_key_id `{0}` is not 16 hex digits")]
    IssuerKeyId(String),
    /// Capabilities not strictly sorted.
    #[error("capabilities must be sorted without duplicates")]
    CapabilityOrder,
    /// Empty or inverted validity window.
    #[error("validity window is empty (not_before {0} >= not_after {1})")]
    Window(u64, u64),
    /// Signing failed.
    #[error("cannot sign the certificate")]
    Sign(#[source] EnvelopeError),
}

/// A syntactically valid certificate with its signature (not yet verified).
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The body.
    pub body: CertBody,
    /// The parsed subject key.
    pub subject_key: PublicKey,
    /// The issuer's key id.
    pub issuer: KeyId,
    envelope: Envelope,
}

impl Certificate {
    /// Parse and syntax-check a certificate file.
    pub fn parse(bytes: &[u8]) -> Result<Self, CertError> {
        let envelope = Envelope::parse(bytes, FIELD).map_err(CertError::Envelope)?;
        if let Some(format) = envelope.newer_format() {
            return Err(CertError::NewerFormat(format));
        }
        let body: CertBody =
            serde_json::from_value(envelope.body.clone()).map_err(CertError::Body)?;
        let (subject_key, issuer) = check_body(&body)?;
        Ok(Self {
            body,
            subject_key,
            issuer,
            envelope,
        })
    }

    /// Verify the issuer's signature over the canonical body.
    pub fn verify_signature(&self, issuer_key: &PublicKey) -> Result<(), MinisignError> {
        self.envelope.verify(issuer_key)
    }

    /// The capability ceiling as a set.
    pub fn capabilities(&self) -> BTreeSet<Capability> {
        self.body.capabilities.iter().copied().collect()
    }

    /// Whether `now` (unix seconds) is inside the validity window, its start widened by
    /// [`crate::MAX_CLOCK_SKEW`] as [`crate::chain::check_validity`] does.
    pub fn valid_at(&self, now: u64) -> bool {
        self.body.not_before <= now.saturating_add(crate::MAX_CLOCK_SKEW)
            && now < self.body.not_after
    }

    /// Sign `body` with the issuer key and render the certificate file. Checks syntax first, so
    /// we never emit a certificate we would not parse.
    pub fn issue(
        body: &CertBody,
        issuer: &SecretKey,
        trusted_comment: &str,
    ) -> Result<Vec<u8>, CertError> {
        check_body(body)?;
        Envelope::sign(body, FIELD, issuer, trusted_comment).map_err(CertError::Sign)
    }
}

/// Whether `s` is 32 lowercase hex digits (a 128-bit serial).
pub fn valid_serial(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` can be a certificate's subject: 1-128 characters, none a control character.
pub fn valid_subject(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
}

impl Certificate {
    /// Check `body` as [`Certificate::issue`] does, without a key: for `ca issue` to refuse a
    /// certificate it could not sign (a subject it cannot carry) before it reads (and perhaps
    /// asks the password of) the CA key.
    pub fn check_body(body: &CertBody) -> Result<(), CertError> {
        check_body(body).map(|_| ())
    }
}

fn check_body(body: &CertBody) -> Result<(PublicKey, KeyId), CertError> {
    if body.format != 1 {
        return Err(CertError::Format(body.format));
    }
    if !valid_serial(&body.serial) {
        return Err(CertError::Serial(body.serial.clone()));
    }
    if !valid_subject(&body.subject) {
        return Err(CertError::Subject);
    }
    let key = PublicKey::from_base64(&body.subject_key).map_err(CertError::SubjectKey)?;
    if key.key_id.to_string() != body.key_id {
        return Err(CertError::KeyIdMismatch {
            claimed: body.key_id.clone(),
            actual: key.key_id,
        });
    }
    let issuer: KeyId = body
        .issuer_key_id
        .parse()
        .map_err(|_| CertError::IssuerKeyId(body.issuer_key_id.clone()))?;
    if body.capabilities.windows(2).any(|w| w[0] >= w[1]) {
        return Err(CertError::CapabilityOrder);
    }
    if body.not_before >= body.not_after {
        return Err(CertError::Window(body.not_before, body.not_after));
    }
    Ok((key, issuer))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn body(
        kind: CertKind,
        subject: &SecretKey,
        issuer: &SecretKey,
        scope: Scope,
    ) -> CertBody {
        let pk = subject.public_key();
        CertBody {
            format: 1,
            kind,
            serial: format!("{:032x}", u128::from(pk.key_id.0[0]) + 1),
            subject: "test".into(),
            subject_key: pk.to_base64(),
            key_id: pk.key_id.to_string(),
            capabilities: scope.ceiling().into_iter().collect(),
            scope,
            not_before: 1000,
            not_after: 5000,
            issuer_key_id: issuer.public_key().key_id.to_string(),
        }
    }

    #[test]
    fn issue_parse_verify() {
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
        let int = SecretKey::from_seed(&[2; 32], [2; 8]);
        let b = body(CertKind::Intermediate, &int, &root, Scope::Any);
        let bytes = Certificate::issue(&b, &root, "t").unwrap();
        let c = Certificate::parse(&bytes).unwrap();
        assert_eq!(c.body, b);
        c.verify_signature(&root.public_key()).unwrap();
        assert!(c.verify_signature(&int.public_key()).is_err());
        assert!(c.valid_at(1000) && !c.valid_at(5000));
        // The start is widened by the clock skew a CA's clock may have over a node's.
        assert!(
            c.valid_at(1000 - crate::MAX_CLOCK_SKEW) && !c.valid_at(999 - crate::MAX_CLOCK_SKEW)
        );
    }

    #[test]
    fn syntax_errors() {
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
        let mut b = body(CertKind::Developer, &root, &root, Scope::Any);
        b.serial = "xyz".into();
        assert!(matches!(
            Certificate::issue(&b, &root, ""),
            Err(CertError::Serial(_))
        ));
        let mut b = body(CertKind::Developer, &root, &root, Scope::Any);
        b.key_id = "0000000000000000".into();
        assert!(matches!(
            Certificate::issue(&b, &root, ""),
            Err(CertError::KeyIdMismatch { .. })
        ));
        let mut b = body(CertKind::Developer, &root, &root, Scope::Any);
        b.capabilities.reverse();
        assert!(matches!(
            Certificate::issue(&b, &root, ""),
            Err(CertError::CapabilityOrder)
        ));
        let mut b = body(CertKind::Developer, &root, &root, Scope::Any);
        b.not_after = 100;
        assert!(matches!(
            Certificate::issue(&b, &root, ""),
            Err(CertError::Window(..))
        ));
        let float = br#"{"certificate":{"format":1.0},"signature":"x"}"#;
        assert!(matches!(
            Certificate::parse(float),
            Err(CertError::Envelope(EnvelopeError::Canonical(_)))
        ));
    }

    /// A scope put in front of the signed one (serde_json reads the signed one, so the signature
    /// holds; a first-wins reader would see `any`) is a malformed certificate.
    #[test]
    fn a_repeated_key_is_a_malformed_certificate() {
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
        let int = SecretKey::from_seed(&[2; 32], [2; 8]);
        let b = body(
            CertKind::Intermediate,
            &int,
            &root,
            Scope::Hardware("abcd".into()),
        );
        let bytes = Certificate::issue(&b, &root, "t").unwrap();
        let dup = crate::signed::tests::prepend_in_body(&bytes, FIELD, r#""scope": "any""#);
        crate::signed::tests::lenient_reading_verifies(&dup, FIELD, &root.public_key());
        assert!(matches!(
            Certificate::parse(&dup),
            Err(CertError::Envelope(EnvelopeError::DuplicateKey(_)))
        ));
    }
}
