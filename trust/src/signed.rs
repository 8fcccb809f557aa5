//! The signed-document envelope shared by certificates, revocation lists and licenses:
//! `{"<body field>": {...}, "signature": "<minisign signature text>"}`.
//!
//! The signature is a minisign `ED` signature over the *canonical* bytes of the body value, so
//! the file itself may be pretty-printed or re-indented without breaking it, while any change of
//! meaning does. The signature sits beside the body it signs, never inside it, so nothing is
//! self-referential (seed 004).
//!
//! The whole document, body and outer object alike, is read with
//! [`canonical::from_slice_unique`]: a key named twice in one object is refused
//! ([`EnvelopeError::DuplicateKey`]), because serde_json keeps the last value while other readers
//! keep the first — a key put in front of a signed one would leave the signature intact and make
//! another tool read another document.

use crate::canonical::{self, CanonicalError};
use crate::minisign::{MinisignError, PublicKey, SecretKey, Signature};
use serde_json::{Map, Value};

/// Largest signed document we parse (certificates are under 2 KiB; revocation lists may list
/// many serials).
pub const MAX_DOC_BYTES: usize = 1024 * 1024;

/// Why an envelope could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Larger than [`MAX_DOC_BYTES`].
    #[error("document is {0} bytes, more than the {MAX_DOC_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON.
    #[error("document is not JSON")]
    Json(#[source] serde_json::Error),
    /// An object names the same key twice (the cause names it and where).
    #[error(
        "document names a key twice in one object: JSON readers disagree on which value counts"
    )]
    DuplicateKey(#[source] serde_json::Error),
    /// Not an object with exactly the body field and `signature`.
    #[error("document must be an object with exactly the fields `{0}` and `signature`")]
    Shape(&'static str),
    /// The body has no canonical form (e.g. it holds a float).
    #[error("body cannot be canonicalized")]
    Canonical(#[source] CanonicalError),
    /// The signature text is malformed.
    #[error("signature is malformed")]
    Signature(#[source] MinisignError),
}

/// A parsed envelope: the body value, its canonical bytes and the detached signature.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The body as JSON.
    pub body: Value,
    /// The canonical bytes the signature covers.
    pub canonical: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

impl Envelope {
    /// The body's `format` when it is above 1: a document (certificate, revocation list,
    /// grant, license) a newer Stockade signed. Looked at before the body is parsed
    /// (`deny_unknown_fields`): a newer format may carry fields this build does not know,
    /// which would be reported as a malformed body instead of as a newer format. Such a
    /// document is refused either way — a field that restricts (a new revocation attribute, a
    /// narrower scope) is never dropped.
    pub fn newer_format(&self) -> Option<u64> {
        self.body
            .get("format")
            .and_then(Value::as_u64)
            .filter(|&f| f > 1)
    }

    /// Parse an envelope whose body lives under `field`.
    pub fn parse(bytes: &[u8], field: &'static str) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_DOC_BYTES {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        let v = canonical::from_slice_unique(bytes).map_err(|e| {
            if e.is_data() {
                EnvelopeError::DuplicateKey(e)
            } else {
                EnvelopeError::Json(e)
            }
        })?;
        let Value::Object(mut m) = v else {
            return Err(EnvelopeError::Shape(field));
        };
        if m.len() != 2 {
            return Err(EnvelopeError::Shape(field));
        }
        let (Some(body), Some(Value::String(sig))) = (m.remove(field), m.remove("signature"))
        else {
            return Err(EnvelopeError::Shape(field));
        };
        let canonical = canonical::to_vec(&body).map_err(EnvelopeError::Canonical)?;
        let signature = Signature::parse(&sig).map_err(EnvelopeError::Signature)?;
        Ok(Self {
            body,
            canonical,
            signature,
        })
    }

    /// Verify the signature with `key` (strict, including the trusted comment).
    pub fn verify(&self, key: &PublicKey) -> Result<(), MinisignError> {
        key.verify(&self.canonical, &self.signature)
    }

    /// Sign `body` with `key` and render the envelope file (pretty JSON, trailing newline).
    pub fn sign(
        body: &impl serde::Serialize,
        field: &'static str,
        key: &SecretKey,
        trusted_comment: &str,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let value = serde_json::to_value(body)
            .map_err(|e| EnvelopeError::Canonical(CanonicalError::Serialize(e)))?;
        let canonical = canonical::to_vec(&value).map_err(EnvelopeError::Canonical)?;
        let sig = key
            .sign(&canonical, trusted_comment)
            .map_err(EnvelopeError::Signature)?;
        let mut m = Map::new();
        m.insert(field.to_string(), value);
        m.insert("signature".into(), Value::String(sig.to_text()));
        let mut out = serde_json::to_vec_pretty(&Value::Object(m))
            .map_err(|e| EnvelopeError::Canonical(CanonicalError::Serialize(e)))?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A certificate, revocation list, grant or license a newer Stockade signed (`format` 2 and
    /// a field this build does not know — a new revocation attribute, say) is refused as of a
    /// newer format, not as a malformed body (the `deny_unknown_fields` error it was), and
    /// never read without the field. Format 2 without a new field too.
    #[test]
    fn documents_of_a_newer_format_are_refused_as_such() {
        let key = SecretKey::from_seed(&[7; 32], [7; 8]);
        for extra in [
            None,
            Some(("revoked_subjects", serde_json::json!(["mallory"]))),
        ] {
            let mut body = serde_json::json!({"format": 2, "serial": "0".repeat(32)});
            if let Some((k, v)) = &extra {
                body[*k] = v.clone();
            }
            let doc = |field| Envelope::sign(&body, field, &key, "newer").unwrap();
            let cert = crate::cert::Certificate::parse(&doc(crate::cert::FIELD));
            assert!(
                matches!(cert, Err(crate::cert::CertError::NewerFormat(2))),
                "{cert:?}"
            );
            let crl = crate::crl::RevocationList::parse(&doc(crate::crl::FIELD));
            assert!(
                matches!(crl, Err(crate::crl::CrlError::NewerFormat(2))),
                "{crl:?}"
            );
            let grant = crate::grant::Grant::parse(&doc(crate::grant::FIELD));
            assert!(
                matches!(grant, Err(crate::grant::GrantError::NewerFormat(2))),
                "{grant:?}"
            );
            let license = crate::license::License::parse(&doc(crate::license::FIELD));
            assert!(
                matches!(license, Err(crate::license::LicenseError::NewerFormat(2))),
                "{license:?}"
            );
        }
    }

    /// `doc` (as [`Envelope::sign`] writes it) with `key_value` (`"key": value`) put first in
    /// the body object under `field`: what an attacker does to leave the signature intact.
    pub(crate) fn prepend_in_body(doc: &[u8], field: &str, key_value: &str) -> Vec<u8> {
        let text = String::from_utf8(doc.to_vec()).unwrap();
        let open = format!("\"{field}\": {{");
        assert!(text.contains(&open), "{text}");
        text.replacen(&open, &format!("{open}\n    {key_value},"), 1)
            .into_bytes()
    }

    /// What a reader that keeps the last of a repeated key (serde_json) makes of `doc`: the
    /// signature over its body verifies with `key` — the duplicate does not break it.
    pub(crate) fn lenient_reading_verifies(doc: &[u8], field: &str, key: &PublicKey) {
        let v: Value = serde_json::from_slice(doc).unwrap();
        let canonical = canonical::to_vec(&v[field]).unwrap();
        let sig = Signature::parse(v["signature"].as_str().unwrap()).unwrap();
        key.verify(&canonical, &sig).unwrap();
    }

    #[test]
    fn sign_parse_verify_and_tamper() {
        let sk = SecretKey::from_seed(&[7; 32], [7; 8]);
        let bytes =
            Envelope::sign(&serde_json::json!({"b": 1, "a": "x"}), "doc", &sk, "t").unwrap();
        let env = Envelope::parse(&bytes, "doc").unwrap();
        env.verify(&sk.public_key()).unwrap();
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"b\": 1", "\"b\": 2");
        let env = Envelope::parse(tampered.as_bytes(), "doc").unwrap();
        assert!(env.verify(&sk.public_key()).is_err());
        assert!(matches!(
            Envelope::parse(b"{\"doc\":{}}", "doc"),
            Err(EnvelopeError::Shape(_))
        ));
        assert!(matches!(
            Envelope::parse(b"[", "doc"),
            Err(EnvelopeError::Json(_))
        ));
    }

    /// A key put in front of a signed one leaves the canonical bytes (last value wins) and so the
    /// signature intact; it is refused, in the body and in the outer object.
    #[test]
    fn a_repeated_key_is_refused_in_the_body_and_the_envelope() {
        let sk = SecretKey::from_seed(&[7; 32], [7; 8]);
        let bytes =
            Envelope::sign(&serde_json::json!({"b": 1, "a": "x"}), "doc", &sk, "t").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let body_dup = text.replacen("\"a\": \"x\"", "\"a\": \"evil\", \"a\": \"x\"", 1);
        let outer_dup = text.replacen("{\n", "{\n  \"doc\": {\"a\": \"evil\", \"b\": 1},\n", 1);
        for doc in [&body_dup, &outer_dup] {
            assert_ne!(doc, &text);
            // What serde_json alone makes of it: the signed document, signature intact.
            let lenient: Value = serde_json::from_str(doc).unwrap();
            let canonical = canonical::to_vec(&lenient["doc"]).unwrap();
            let sig = Signature::parse(lenient["signature"].as_str().unwrap()).unwrap();
            sk.public_key().verify(&canonical, &sig).unwrap();
            match Envelope::parse(doc.as_bytes(), "doc") {
                Err(EnvelopeError::DuplicateKey(e)) => {
                    assert!(e.to_string().contains("duplicate key"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        let sig_dup = text.replacen("{\n", "{\n  \"signature\": \"x\",\n", 1);
        assert!(matches!(
            Envelope::parse(sig_dup.as_bytes(), "doc"),
            Err(EnvelopeError::DuplicateKey(_))
        ));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::parse(&bytes, "certificate");
            let _ = crate::cert::Certificate::parse(&bytes);
            let _ = crate::crl::RevocationList::parse(&bytes);
            let _ = crate::license::License::parse(&bytes);
            let _ = crate::statement::Statement::parse(&bytes, &semver::Version::new(0, 1, 0));
            let text = String::from_utf8_lossy(&bytes);
            let _ = crate::minisign::PublicKey::parse(&text);
            let _ = crate::minisign::SecretKey::parse(&text);
            let _ = crate::minisign::Signature::parse(&text);
        }
    }
}
