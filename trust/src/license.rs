//! Node licenses: a root-signed statement that a node is activated with a serial, optionally
//! bound to one hardware id, with a state (`active` or `frozen`) and an optional expiry.
//!
//! File: `{"license": {format, serial, state, hardware_id?, issued_at, expires_at?,
//! issuer_key_id}, "signature": "..."}`. A `license:<serial>` scope admits a node only if its
//! license verifies, is active, unexpired, bound to this node (if bound) and has that serial.
//!
//! Rollback: a node remembers the highest `issued_at` it installed per serial (the runtime keeps
//! that map in its state directory). A license issued before the newest of them — of its own
//! serial or of any other — is refused ([`License::check_not_rolled_back`]), and so is a node
//! with no license once one was installed ([`check_installed`]): otherwise an old active
//! license, of the frozen one's serial or of a serial the node had before, or deleting the
//! file, would lift a freeze — as a revocation list may not go back to an older version or
//! disappear. A CA that moves a node to another serial issues that license now, so it is the
//! newest; the same `issued_at` passes (reinstalling the license in force), whatever the serial.
//! A license issued later than now (beyond [`MAX_CLOCK_SKEW`]) is not valid yet: its
//! `issued_at` would otherwise be remembered and refuse every honest license issued before it.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The envelope field holding the body.
pub const FIELD: &str = "license";

/// How far a license's `issued_at` may be ahead of this node's clock (seconds): a CA's clock a
/// little ahead must not make a license it just issued uninstallable, while one issued days
/// ahead (a clock far off, or a license meant for later) is refused as not yet valid.
pub const MAX_CLOCK_SKEW: u64 = 300;

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
    /// Issued in the future (beyond [`MAX_CLOCK_SKEW`]).
    #[error("license {serial} is not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// Serial.
        serial: String,
        /// Its `issued_at`.
        issued_at: u64,
        /// Now.
        now: u64,
    },
    /// Issued before the newest license installed before (of any serial).
    #[error("license {serial} was issued at {issued_at}, but license {newer} issued at {seen} was installed before (rollback)")]
    Rollback {
        /// Serial.
        serial: String,
        /// Its `issued_at`.
        issued_at: u64,
        /// The serial of the newest license installed before (this one's or another).
        newer: String,
        /// Its `issued_at`: the highest seen.
        seen: u64,
    },
    /// No license, but one was installed before.
    #[error("the node license is missing, but license {serial} issued at {issued_at} was installed before (rollback by deletion)")]
    Missing {
        /// The serial installed last (the highest `issued_at` remembered).
        serial: String,
        /// Its `issued_at`.
        issued_at: u64,
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

    /// Verify the signature by a trusted root, the validity window at `now` (`issued_at` at most
    /// [`MAX_CLOCK_SKEW`] ahead, before `expires_at`), and the hardware binding against
    /// `node_hardware_id`. The state (active/frozen) is reported, not judged, here; rollback is
    /// [`License::check_not_rolled_back`]'s.
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
        if self.body.issued_at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(LicenseError::NotYetValid {
                serial: self.body.serial.clone(),
                issued_at: self.body.issued_at,
                now,
            });
        }
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

    /// Refuse this license if any license in `seen` (serial → highest `issued_at` installed)
    /// was issued later, whatever its serial: an old active license of another serial would
    /// lift a newer one's freeze as surely as one of the same serial. The same `issued_at`
    /// passes: reinstalling the license in force is no rollback.
    pub fn check_not_rolled_back(&self, seen: &BTreeMap<String, u64>) -> Result<(), LicenseError> {
        match newest(seen) {
            Some((newer, s)) if self.body.issued_at < s => Err(LicenseError::Rollback {
                serial: self.body.serial.clone(),
                issued_at: self.body.issued_at,
                newer: newer.to_string(),
                seen: s,
            }),
            _ => Ok(()),
        }
    }

    /// Record this license in `seen`; whether that changed it (then it must be saved).
    pub fn remember(&self, seen: &mut BTreeMap<String, u64>) -> bool {
        match seen.get(&self.body.serial) {
            Some(&s) if s >= self.body.issued_at => false,
            _ => {
                seen.insert(self.body.serial.clone(), self.body.issued_at);
                true
            }
        }
    }
}

/// The newest license in `seen`: its serial and `issued_at` (of several issued in the same
/// second, the last serial in order).
fn newest(seen: &BTreeMap<String, u64>) -> Option<(&str, u64)> {
    seen.iter()
        .max_by_key(|(_, &t)| t)
        .map(|(serial, &t)| (serial.as_str(), t))
}

/// The license a node reads (`installed`, `None` when there is no file) against what it
/// installed before (`seen`): one issued before the newest installed (of any serial) is a
/// rollback, none at all after one was installed a rollback by deletion (named by the serial
/// with the latest `issued_at`).
pub fn check_installed(
    installed: Option<&License>,
    seen: &BTreeMap<String, u64>,
) -> Result<(), LicenseError> {
    match installed {
        Some(l) => l.check_not_rolled_back(seen),
        None => match newest(seen) {
            Some((serial, issued_at)) => Err(LicenseError::Missing {
                serial: serial.to_string(),
                issued_at,
            }),
            None => Ok(()),
        },
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

    fn issued(serial: &str, state: LicenseState, issued_at: u64) -> License {
        let root = SecretKey::from_seed([1; 32], [1; 8]);
        let body = LicenseBody {
            format: 1,
            serial: serial.into(),
            state,
            hardware_id: None,
            issued_at,
            expires_at: None,
            issuer_key_id: root.public_key().key_id.to_string(),
        };
        License::parse(&License::issue(&body, &root, "").unwrap()).unwrap()
    }

    #[test]
    fn a_license_from_the_future_is_not_valid_yet() {
        let roots = [SecretKey::from_seed([1; 32], [1; 8]).public_key()];
        let l = issued("L1", LicenseState::Active, 10_000);
        // Within the allowed skew: a CA clock a little ahead.
        l.verify(&roots, 10_000 - MAX_CLOCK_SKEW, "").unwrap();
        assert!(matches!(
            l.verify(&roots, 10_000 - MAX_CLOCK_SKEW - 1, ""),
            Err(LicenseError::NotYetValid {
                issued_at: 10_000,
                ..
            })
        ));
        // No overflow at the end of time.
        issued("L1", LicenseState::Active, u64::MAX)
            .verify(&roots, u64::MAX, "")
            .unwrap();
    }

    #[test]
    fn an_older_license_of_a_serial_seen_is_a_rollback() {
        let mut seen = BTreeMap::new();
        let active = issued("L1", LicenseState::Active, 100);
        let frozen = issued("L1", LicenseState::Frozen, 200);
        assert!(active.remember(&mut seen));
        frozen.check_not_rolled_back(&seen).unwrap();
        assert!(frozen.remember(&mut seen));
        assert!(!frozen.remember(&mut seen), "nothing new to save");
        assert_eq!(seen.get("L1"), Some(&200));
        // The older active license may not lift the freeze ...
        assert!(matches!(
            active.check_not_rolled_back(&seen),
            Err(LicenseError::Rollback {
                issued_at: 100,
                seen: 200,
                ..
            })
        ));
        // ... nor does remembering it lower the mark.
        assert!(!active.remember(&mut seen));
        assert_eq!(seen.get("L1"), Some(&200));
        // The same license again and a newer one pass.
        frozen.check_not_rolled_back(&seen).unwrap();
        issued("L1", LicenseState::Active, 300)
            .check_not_rolled_back(&seen)
            .unwrap();
        // A first license of serial with issued_at 0 is remembered too.
        let mut empty = BTreeMap::new();
        assert!(issued("L0", LicenseState::Active, 0).remember(&mut empty));
    }

    /// An old active license of another serial lifts a freeze as well as one of the frozen
    /// license's serial would: refused too, whether the node had that serial before or never.
    /// A replacement the CA issues now, of any serial, passes.
    #[test]
    fn an_older_license_of_another_serial_is_a_rollback_too() {
        let mut seen = BTreeMap::new();
        let old_active = issued("L2", LicenseState::Active, 100);
        assert!(old_active.remember(&mut seen));
        let frozen = issued("L1", LicenseState::Frozen, 200);
        frozen.check_not_rolled_back(&seen).unwrap();
        assert!(frozen.remember(&mut seen));
        for (serial, at) in [("L2", 100), ("L3", 150), ("L3", 199)] {
            match issued(serial, LicenseState::Active, at).check_not_rolled_back(&seen) {
                Err(LicenseError::Rollback {
                    serial: s,
                    issued_at,
                    newer,
                    seen: 200,
                }) => assert_eq!((s.as_str(), issued_at, newer.as_str()), (serial, at, "L1")),
                other => panic!("{serial}@{at}: {other:?}"),
            }
            // Put in place by hand, the reader refuses it too.
            assert!(matches!(
                check_installed(Some(&issued(serial, LicenseState::Active, at)), &seen),
                Err(LicenseError::Rollback { .. })
            ));
        }
        // The same second is not older; a later license of any serial is the CA's word.
        for serial in ["L1", "L2", "L3"] {
            for at in [200, 201] {
                issued(serial, LicenseState::Active, at)
                    .check_not_rolled_back(&seen)
                    .unwrap();
            }
        }
        // A state file of an earlier build (one entry per serial) is read the same way.
        let earlier: BTreeMap<String, u64> =
            serde_json::from_str(r#"{"L2": 100, "L1": 200}"#).unwrap();
        assert!(old_active.check_not_rolled_back(&earlier).is_err());
    }

    #[test]
    fn no_license_after_one_was_installed_is_a_rollback_by_deletion() {
        let none = BTreeMap::new();
        check_installed(None, &none).unwrap();
        let mut seen = BTreeMap::new();
        seen.insert("L1".to_string(), 200);
        seen.insert("L0".to_string(), 50);
        match check_installed(None, &seen) {
            Err(LicenseError::Missing { serial, issued_at }) => {
                assert_eq!((serial.as_str(), issued_at), ("L1", 200));
            }
            other => panic!("{other:?}"),
        }
        check_installed(Some(&issued("L1", LicenseState::Frozen, 200)), &seen).unwrap();
        assert!(matches!(
            check_installed(Some(&issued("L1", LicenseState::Active, 199)), &seen),
            Err(LicenseError::Rollback { .. })
        ));
    }
}
