//! Authorization grants (seed 001's authorization bundle): an operator's signed permission for
//! one plugin, at one version, under one certificate scope, to receive high-risk items
//! (`capability:<cap>`, `network:loopback`, `writable:<path>`), until an expiry.
//!
//! File (`*.grant` in the policy's `trust.grants` directory): `{"grant": {format, plugin,
//! plugin_version, scope, targets, issued_at, expires_at, issuer_key_id}, "signature": "..."}`,
//! the same canonical-JSON envelope as certificates and licenses ([`crate::signed`]), signed by
//! an operator key from `stockade keygen`. Every refusal has its own variant so that an operator
//! (and a test) can tell a missing grant from an expired, misbound, foreign or tampered one.
//!
//! A grant names only what could ever match ([`check_target`], [`check_binding`]): a plugin
//! name by the manifest's rule, a certificate scope by its parser, a capability of the fixed
//! set, the one network mode that is granted (`loopback`: `none` needs no grant), and writable
//! paths in the absolute, normalised form the sandbox binds. Anything else is refused when the
//! grant is issued (and read), rather than signed and silently never matching.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use stockade_policy::capability::{Capability, Scope};
use stockade_policy::manifest::valid_name;
use stockade_policy::sandbox::is_normalised_absolute;

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
    /// A format above 1: signed by a newer Stockade ([`Envelope::newer_format`]).
    #[error("grant format {0} is of a newer Stockade (this one reads format 1)")]
    NewerFormat(u64),
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
    /// A target that no item could ever match.
    #[error("grant target `{target}` is invalid: {why}")]
    Target {
        /// The target.
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The plugin name, version or scope a grant is bound to could never be a plugin's.
    #[error("grant {field} `{value}` is invalid: {why}")]
    Binding {
        /// `plugin`, `plugin_version` or `scope`.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
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
    /// Issued in the future, beyond [`crate::MAX_CLOCK_SKEW`].
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
            GrantError::Envelope(_)
            | GrantError::NewerFormat(_)
            | GrantError::Body(_)
            | GrantError::Field(_)
            | GrantError::Target { .. }
            | GrantError::Binding { .. } => "grant_malformed",
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

/// Longest target accepted (a writable path).
pub const MAX_TARGET_BYTES: usize = 4096;

/// Whether `target` is one an item could ever need: `capability:<one of the fixed set>`,
/// `network:loopback` (the only network mode the runtime grants: `none` is no risk, and there
/// is no other), or `writable:<absolute, normalised path>` (no `.`, `..`, empty component or
/// trailing `/`: the policy's writable paths have that form, and a grant is matched by exact
/// string).
pub fn check_target(target: &str) -> Result<(), GrantError> {
    let bad = |why| {
        Err(GrantError::Target {
            target: target.to_string(),
            why,
        })
    };
    if target.len() > MAX_TARGET_BYTES {
        return bad("longer than 4096 bytes");
    }
    if let Some(c) = target.strip_prefix("capability:") {
        if c.parse::<Capability>().is_err() {
            return bad("not a capability (log, emit_event, get_config_value, register_hook, kv_get, kv_put)");
        }
        return Ok(());
    }
    if let Some(n) = target.strip_prefix("network:") {
        if n != "loopback" {
            return bad("the only network mode granted is loopback");
        }
        return Ok(());
    }
    if let Some(p) = target.strip_prefix("writable:") {
        if !is_normalised_absolute(p) {
            return bad("a writable path must be absolute and normalised (no `.`, `..`, `//` or trailing `/`)");
        }
        return Ok(());
    }
    bad("a target is capability:<cap>, network:loopback or writable:<absolute path>")
}

/// Whether a binding could be a plugin's: the plugin name by the manifest's rule
/// ([`valid_name`]), the version semver, the scope `any`, `license:<serial>` or
/// `hardware:<id>`.
pub fn check_binding(b: &Binding<'_>) -> Result<(), GrantError> {
    let bad = |field, value: &str, why| {
        Err(GrantError::Binding {
            field,
            value: value.to_string(),
            why,
        })
    };
    if !valid_name(b.plugin) {
        return bad(
            "plugin",
            b.plugin,
            "a plugin name is 1-64 characters of [a-z0-9._-], starting with a letter or digit",
        );
    }
    if semver::Version::parse(b.version).is_err() {
        return bad("plugin_version", b.version, "not a semver version");
    }
    if b.scope.parse::<Scope>().is_err() {
        return bad(
            "scope",
            b.scope,
            "a scope is any, license:<serial> or hardware:<id>",
        );
    }
    Ok(())
}

/// What a grant asks for, checked as [`Grant::issue`] checks it: the binding
/// ([`check_binding`]) and at least one target, each [`check_target`]. For `grant issue` to
/// refuse a bad request before it reads (and perhaps asks the password of) the key that would
/// sign it.
pub fn check_request(binding: &Binding<'_>, targets: &[String]) -> Result<(), GrantError> {
    check_binding(binding)?;
    if targets.is_empty() {
        return Err(GrantError::Field("targets"));
    }
    for t in targets {
        check_target(t)?;
    }
    Ok(())
}

fn check(body: &GrantBody) -> Result<KeyId, GrantError> {
    if body.format != 1 {
        return Err(GrantError::Field("format"));
    }
    check_request(
        &Binding {
            plugin: &body.plugin,
            version: &body.plugin_version,
            scope: &body.scope,
        },
        &body.targets,
    )?;
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
        if let Some(format) = envelope.newer_format() {
            return Err(GrantError::NewerFormat(format));
        }
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
        // The granting machine's clock may run a little ahead of this node's.
        if now.saturating_add(crate::MAX_CLOCK_SKEW) < b.issued_at {
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
    authorised_until(grants, operator_keys, binding, target, now).map(|_| ())
}

/// [`authorise`], with until when: the latest `expires_at` of the grants that verify and name
/// the target (Unix seconds; at that moment no grant in `grants` authorises it any longer).
pub fn authorised_until(
    grants: &[Grant],
    operator_keys: &[PublicKey],
    binding: &Binding<'_>,
    target: &str,
    now: u64,
) -> Result<u64, GrantError> {
    authorising(grants, operator_keys, binding, target, now).map(|g| g.body.expires_at)
}

/// [`authorised_until`], with the grant itself: of the grants that verify and name the target,
/// the one that expires last (the first of those in `grants` on a tie) — the one an audit
/// record names as having authorised it.
pub fn authorising<'a>(
    grants: &'a [Grant],
    operator_keys: &[PublicKey],
    binding: &Binding<'_>,
    target: &str,
    now: u64,
) -> Result<&'a Grant, GrantError> {
    let mut refusal = GrantError::Missing {
        target: target.to_string(),
    };
    let mut best: Option<&Grant> = None;
    for g in grants
        .iter()
        .filter(|g| g.body.targets.iter().any(|t| t == target))
    {
        match g.verify(operator_keys, binding, now) {
            Ok(()) => {
                if best.is_none_or(|b| g.body.expires_at > b.body.expires_at) {
                    best = Some(g);
                }
            }
            Err(e) => refusal = e,
        }
    }
    best.ok_or(refusal)
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
            issued_at: 1000,
            expires_at: 2000,
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
        let op = SecretKey::from_seed(&[3; 32], [3; 8]);
        let keys = [op.public_key()];
        let bytes = Grant::issue(&body(&op), &op).unwrap();
        let g = Grant::parse(&bytes).unwrap();
        let all = [g.clone()];
        authorise(&all, &keys, &B, "network:loopback", 1500).unwrap();
        let kind = |r: Result<(), GrantError>| r.unwrap_err().kind();
        assert_eq!(
            kind(authorise(&all, &keys, &B, "writable:/x", 1500)),
            "grant_missing"
        );
        assert_eq!(
            kind(authorise(&all, &keys, &B, "network:loopback", 2000)),
            "grant_expired"
        );
        // Issued up to MAX_CLOCK_SKEW ahead of our clock (the granting machine's clock ahead of
        // this node's) it counts; a second more and it is not valid yet.
        authorise(
            &all,
            &keys,
            &B,
            "network:loopback",
            1000 - crate::MAX_CLOCK_SKEW,
        )
        .unwrap();
        assert_eq!(
            kind(authorise(
                &all,
                &keys,
                &B,
                "network:loopback",
                999 - crate::MAX_CLOCK_SKEW
            )),
            "grant_not_yet_valid"
        );
        let other = Binding {
            plugin: "other",
            ..B
        };
        assert_eq!(
            kind(authorise(&all, &keys, &other, "network:loopback", 1500)),
            "grant_wrong_plugin"
        );
        let v2 = Binding {
            version: "0.2.0",
            ..B
        };
        assert_eq!(
            kind(authorise(&all, &keys, &v2, "network:loopback", 1500)),
            "grant_wrong_version"
        );
        let stranger = SecretKey::from_seed(&[4; 32], [4; 8]).public_key();
        assert_eq!(
            kind(authorise(&all, &[stranger], &B, "network:loopback", 1500)),
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
            kind(authorise(&t, &keys, &hellp, "network:loopback", 1500)),
            "grant_tampered"
        );
        // Same key id, different key: still tampered/forged, never accepted.
        let forger = SecretKey::from_seed(&[5; 32], [3; 8]);
        let forged = [Grant::parse(&Grant::issue(&body(&forger), &forger).unwrap()).unwrap()];
        assert_eq!(
            kind(authorise(&forged, &keys, &B, "network:loopback", 1500)),
            "grant_tampered"
        );
    }

    #[test]
    fn bad_bodies_are_refused_before_signing() {
        let op = SecretKey::from_seed(&[3; 32], [3; 8]);
        let mut b = body(&op);
        b.targets = vec!["root:everything".into()];
        assert!(matches!(
            Grant::issue(&b, &op),
            Err(GrantError::Target { .. })
        ));
        let mut b = body(&op);
        b.targets = vec![];
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
        let op = SecretKey::from_seed(&[3; 32], [3; 8]);
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

    #[test]
    fn targets_that_could_never_match_are_refused() {
        for good in [
            "capability:kv_put",
            "capability:log",
            "network:loopback",
            "writable:/var/lib/x",
            "writable:/",
        ] {
            check_target(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "capability:bogus",
            "capability:",
            "capability:KV_PUT",
            "network:all",
            "network:none",
            "network:",
            "writable:relative",
            "writable:/a/../etc",
            "writable:/a/./b",
            "writable:/a//b",
            "writable:/a/",
            "writable:",
            "writable:/a\0b",
            "root:everything",
            "loopback",
        ] {
            let e = check_target(bad).unwrap_err();
            assert!(matches!(e, GrantError::Target { .. }), "{bad}: {e:?}");
            assert_eq!(e.kind(), "grant_malformed");
        }
        let long = format!("writable:/{}", "a".repeat(MAX_TARGET_BYTES));
        assert!(check_target(&long).is_err());
    }

    #[test]
    fn bindings_that_could_never_be_a_plugins_are_refused() {
        check_binding(&B).unwrap();
        check_binding(&Binding {
            scope: "license:ACME-1",
            ..B
        })
        .unwrap();
        for (plugin, version, scope, field) in [
            ("Hello World/../x", "0.1.0", "any", "plugin"),
            ("Hello", "0.1.0", "any", "plugin"),
            ("", "0.1.0", "any", "plugin"),
            ("hello", "1", "any", "plugin_version"),
            ("hello", "0.1.0", "nonsense scope", "scope"),
            ("hello", "0.1.0", "license:", "scope"),
            ("hello", "0.1.0", "hardware:a b", "scope"),
        ] {
            let b = Binding {
                plugin,
                version,
                scope,
            };
            match check_binding(&b) {
                Err(GrantError::Binding { field: f, .. }) => assert_eq!(f, field, "{b:?}"),
                other => panic!("{b:?}: {other:?}"),
            }
        }
        // A grant file carrying such a binding or target does not parse either.
        let op = SecretKey::from_seed(&[3; 32], [3; 8]);
        let mut b = body(&op);
        b.scope = "nonsense scope".into();
        assert!(matches!(
            Grant::issue(&b, &op),
            Err(GrantError::Binding { field: "scope", .. })
        ));
    }
}
