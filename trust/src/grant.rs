//! Authorization grants (seed 001's authorization bundle): an operator's signed permission for
//! one plugin, at one version, under one certificate scope, to receive high-risk items
//! (`capability:<cap>`, `network:loopback`, `writable:<path>`), until an expiry.
//!
//! File (`*.grant` in the policy's `trust.grants` directory): `{"grant": {format, plugin,
//! plugin_version, scope, targets, issued_at, expires_at, issuer_key_id}, "signature": "..."}`,
//! the same canonical-JSON envelope as certificates and licenses ([`crate::signed`]), signed by
//! an operator key from `stockade keygen`. Every refusal has its own variant so that an operator
//! (and a test) can tell a missing grant from an expired, misbound, foreign or tampered one.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};

/// The envelope field holding the body.
pub const FIELD: &str = "grant";
/// Largest grant file read.
pub const MAX_GRANT_BYTES: usize = 64 * 1024;

/// The signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Format version, 1.
    pub format: u32,
    /// Plugin name (manifest `name`).
    pub plugin: String,
    /// Plugin version (manifest `version`), exact.
    pub plugin_version: String,
    /// The developer certificate's scope the grant is valid under (`any`, `license:…`, …).
    pub scope: String,
    /// What is authorised: `capability:<cap>`, `network:loopback`, `writable:<path>`.
    pub targets: Vec<String>,
    /// Signing time (unix seconds).
    pub issued_at: u64,
    /// Expiry (unix seconds, exclusive). Grants always expire.
    pub expires_at: u64,
    /// The operator key's id.
    pub issuer_key_id: String,
}

/// Why a grant does not authorise a target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// No grant names the target.
    #[error("no authorization grant for `{target}`")]
    Missing {
        /// The target.
        target: String,
    },
    /// Not a grant file.
    #[error("malformed grant file")]
    Envelope(#[source] EnvelopeError),
    /// Body shape wrong.
    #[error("grant body has the wrong shape")]
    Body(#[source] serde_json::Error),
    /// A field is invalid.
    #[error("grant field `{0}` is invalid")]
    Field(&'static str),
    /// Signed by a key that is not one of the policy's operator keys.
    #[error("grant is signed by key {0}, which is not an operator key of the policy")]
    WrongSigner(KeyId),
    /// The signature does not verify (the body was changed).
    #[error("grant signature does not verify")]
    Tampered(#[source] MinisignError),
    /// Expired.
    #[error("grant expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry.
        expires_at: u64,
        /// Now.
        now: u64,
    },
    /// Issued in the future.
    #[error("grant is not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// Issue time.
        issued_at: u64,
        /// Now.
        now: u64,
    },
    /// For another plugin.
    #[error("grant is for plugin `{granted}`, not `{plugin}`")]
    WrongPlugin {
        /// In the grant.
        granted: String,
        /// The plugin.
        plugin: String,
    },
    /// For another version.
    #[error("grant is for version {granted}, not {version}")]
    WrongVersion {
        /// In the grant.
        granted: String,
        /// The plugin's.
        version: String,
    },
    /// For another scope.
    #[error("grant is for scope `{granted}`, not `{scope}`")]
    WrongScope {
        /// In the grant.
        granted: String,
        /// The certificate's.
        scope: String,
    },
    /// Signing failed.
    #[error("cannot sign the grant")]
    Sign(#[source] EnvelopeError),
}

impl GrantError {
    /// A stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            GrantError::Missing { .. } => "grant_missing",
            GrantError::Envelope(_) | GrantError::Body(_) | GrantError::Field(_) => {
                "grant_malformed"
            }
            GrantError::WrongSigner(_) => "grant_wrong_signer",
            GrantError::Tampered(_) => "grant_tampered",
            GrantError::Expired { .. } => "grant_expired",
            GrantError::NotYetValid { .. } => "grant_not_yet_valid",
            GrantError::WrongPlugin { .. } => "grant_wrong_plugin",
            GrantError::WrongVersion { .. } => "grant_wrong_version",
            GrantError::WrongScope { .. } => "grant_wrong_scope",
            GrantError::Sign(_) => "grant_sign",
        }
    }
}

/// What a grant must be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Plugin name.
    pub plugin: &'a str,
    /// Plugin version.
    pub version: &'a str,
    /// Certificate scope.
    pub scope: &'a str,
}

/// A syntactically valid grant (signature not yet checked).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The body.
    pub body: GrantBody,
    /// Issuer id.
    pub issuer: KeyId,
    envelope: Envelope,
}

fn check(body: &GrantBody) -> Result<KeyId, GrantError> {
    if body.format != 1 {
        return Err(GrantError::Field("format"));
    }
    if body.plugin.is_empty() || body.plugin.len() > 128 {
        return Err(GrantError::Field("plugin"));
    }
    if semver::Version::parse(&body.plugin_version).is_err() {
        return Err(GrantError::Field("plugin_version"));
    }
    let target_ok = |t: &String| {
        t.len() <= 4096
            && ["capability:", "network:", "writable:"]
                .iter()
                .any(|p| t.strip_prefix(p).is_some_and(|v| !v.is_empty()))
    };
    if body.targets.is_empty() || !body.targets.iter().all(target_ok) {
        return Err(GrantError::Field("targets"));
    }
    if body.expires_at <= body.issued_at {
        return Err(GrantError::Field("expires_at"));
    }
    body.issuer_key_id
        .parse()
        .map_err(|_| GrantError::Field("issuer_key_id"))
}

impl Grant {
    /// Parse and syntax-check.
    pub fn parse(bytes: &[u8]) -> Result<Self, GrantError> {
        if bytes.len() > MAX_GRANT_BYTES {
            return Err(GrantError::Envelope(EnvelopeError::TooLarge(bytes.len())));
        }
        let envelope = Envelope::parse(bytes, FIELD).map_err(GrantError::Envelope)?;
        let body: GrantBody =
            serde_json::from_value(envelope.body.clone()).map_err(GrantError::Body)?;
        let issuer = check(&body)?;
        Ok(Self {
            body,
            issuer,
            envelope,
        })
    }

    /// Sign a grant body with an operator key.
    pub fn issue(body: &GrantBody, key: &SecretKey) -> Result<Vec<u8>, GrantError> {
        check(body)?;
        let comment = format!("stockade grant for {} {}", body.plugin, body.plugin_version);
        Envelope::sign(body, FIELD, key, &comment).map_err(GrantError::Sign)
    }

    /// Check signer, signature, validity window and binding, in that order (the signature
    /// before anything the body says is believed).
    pub fn verify(
        &self,
        operator_keys: &[PublicKey],
        binding: &Binding<'_>,
        now: u64,
    ) -> Result<(), GrantError> {
        let candidates: Vec<&PublicKey> = operator_keys
            .iter()
            .filter(|k| k.key_id == self.issuer)
            .collect();
        if candidates.is_empty() {
            return Err(GrantError::WrongSigner(self.issuer));
        }
        let mut result = Ok(());
        for k in candidates {
            result = self.envelope.verify(k);
            if result.is_ok() {
                break;
            }
        }
        result.map_err(GrantError::Tampered)?;
        let b = &self.body;
        if now >= b.expires_at {
            return Err(GrantError::Expired {
                expires_at: b.expires_at,
                now,
            });
        }
        if now < b.issued_at {
            return Err(GrantError::NotYetValid {
                issued_at: b.issued_at,
                now,
            });
        }
        if b.plugin != binding.plugin {
            return Err(GrantError::WrongPlugin {
                granted: b.plugin.clone(),
                plugin: binding.plugin.into(),
            });
        }
        if b.plugin_version != binding.version {
            return Err(GrantError::WrongVersion {
                granted: b.plugin_version.clone(),
                version: binding.version.into(),
            });
        }
        if b.scope != binding.scope {
            return Err(GrantError::WrongScope {
                granted: b.scope.clone(),
                scope: binding.scope.into(),
            });
        }
        Ok(())
    }
}

/// The outcome of checking every grant file for one target: authorised by the first grant
/// that verifies and names it, else the most specific refusal (a grant that names the target
/// but fails says why; with none naming it, [`GrantError::Missing`]).
pub fn authorise(
    grants: &[Grant],
    operator_keys: &[PublicKey],
    binding: &Binding<'_>,
    target: &str,
    now: u64,
) -> Result<(), GrantError> {
    let mut refusal = GrantError::Missing {
        target: target.to_string(),
    };
    for g in grants
        .iter()
        .filter(|g| g.body.targets.iter().any(|t| t == target))
    {
        match g.verify(operator_keys, binding, now) {
            Ok(()) => return Ok(()),
            Err(e) => refusal = e,
        }
    }
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(key: &SecretKey) -> GrantBody {
        GrantBody {
            format: 1,
            plugin: "hello".into(),
            plugin_version: "0.1.0".into(),
            scope: "any".into(),
            targets: vec!["network:loopback".into()],
            issued_at: 10,
            expires_at: 100,
            issuer_key_id: key.public_key().key_id.to_string(),
        }
    }

    const B: Binding<'static> = Binding {
        plugin: "hello",
        version: "0.1.0",
        scope: "any",
    };

    #[test]
    fn each_refusal_has_its_own_kind() {
        let op = SecretKey::from_seed([3; 32], [3; 8]);
        let keys = [op.public_key()];
        let bytes = Grant::issue(&body(&op), &op).unwrap();
        let g = Grant::parse(&bytes).unwrap();
        let all = [g.clone()];
        authorise(&all, &keys, &B, "network:loopback", 50).unwrap();
        let kind = |r: Result<(), GrantError>| r.unwrap_err().kind();
        assert_eq!(
            kind(authorise(&all, &keys, &B, "writable:/x", 50)),
            "grant_missing"
        );
        assert_eq!(
            kind(authorise(&all, &keys, &B, "network:loopback", 100)),
            "grant_expired"
        );
        let other = Binding {
            plugin: "other",
            ..B
        };
        assert_eq!(
            kind(authorise(&all, &keys, &other, "network:loopback", 50)),
            "grant_wrong_plugin"
        );
        let v2 = Binding {
            version: "0.2.0",
            ..B
        };
        assert_eq!(
            kind(authorise(&all, &keys, &v2, "network:loopback", 50)),
            "grant_wrong_version"
        );
        let stranger = SecretKey::from_seed([4; 32], [4; 8]).public_key();
        assert_eq!(
            kind(authorise(&all, &[stranger], &B, "network:loopback", 50)),
            "grant_wrong_signer"
        );
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"hello\"", "\"hellp\"");
        let t = [Grant::parse(tampered.as_bytes()).unwrap()];
        let hellp = Binding {
            plugin: "hellp",
            ..B
        };
        assert_eq!(
            kind(authorise(&t, &keys, &hellp, "network:loopback", 50)),
            "grant_tampered"
        );
        // Same key id, different key: still tampered/forged, never accepted.
        let forger = SecretKey::from_seed([5; 32], [3; 8]);
        let forged = [Grant::parse(&Grant::issue(&body(&forger), &forger).unwrap()).unwrap()];
        assert_eq!(
            kind(authorise(&forged, &keys, &B, "network:loopback", 50)),
            "grant_tampered"
        );
    }

    #[test]
    fn bad_bodies_are_refused_before_signing() {
        let op = SecretKey::from_seed([3; 32], [3; 8]);
        let mut b = body(&op);
        b.targets = vec!["root:everything".into()];
        assert!(matches!(
            Grant::issue(&b, &op),
            Err(GrantError::Field("targets"))
        ));
        let mut b = body(&op);
        b.expires_at = 5;
        assert!(matches!(
            Grant::issue(&b, &op),
            Err(GrantError::Field("expires_at"))
        ));
    }

    /// Targets put in front of the signed ones are a malformed grant (`grant_malformed`).
    #[test]
    fn a_repeated_key_is_a_malformed_grant() {
        let op = SecretKey::from_seed([3; 32], [3; 8]);
        let bytes = Grant::issue(&body(&op), &op).unwrap();
        let dup =
            crate::signed::tests::prepend_in_body(&bytes, FIELD, r#""targets": ["network:host"]"#);
        crate::signed::tests::lenient_reading_verifies(&dup, FIELD, &op.public_key());
        let e = Grant::parse(&dup).unwrap_err();
        assert!(
            matches!(e, GrantError::Envelope(EnvelopeError::DuplicateKey(_))),
            "{e:?}"
        );
        assert_eq!(e.kind(), "grant_malformed");
    }
}
