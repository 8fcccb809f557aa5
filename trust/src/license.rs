//! Node licenses: a root-signed statement that a node is activated with a serial, optionally
//! bound to one hardware id, with a state (`active` or `frozen`) and an optional expiry.
//!
//! File: `{"license": {format, serial, state, hardware_id?, issued_at, expires_at?,
//! issuer_key_id}, "signature": "..."}`. A `license:<serial>` scope admits a node only if its
//! license verifies, is active, unexpired, bound to this node (if bound) and has that serial.
//!
//! Rollback: a node remembers the highest `issued_at` it installed per serial, and the license
//! it installed last: its serial, `issued_at` and the SHA-256 of its file ([`Floor`]; the
//! runtime keeps both in its state directory). A license is refused
//! ([`License::check_not_rolled_back`]) if it was issued before the newest installed of its own
//! serial, or before the license installed last — of any serial —, or in the same second as
//! that one without being that very file; so is a node with no license once one was installed
//! ([`check_installed`]): otherwise an old active license, of the frozen one's serial or of
//! another serial, or deleting the file, would lift a freeze — as a revocation list may not go
//! back to an older version or disappear. A CA that moves a node to another serial issues that
//! license now, so it is newer than the one installed last. The bound is the license installed
//! last, not the newest ever installed (the same under this rule, as each install must be
//! issued after the last): a node an earlier build let hold a license issued before one of
//! another serial it had (bought earlier, installed later) keeps working with it. With no floor
//! recorded (memory written by an earlier build) the caller decides: the runtime's readers
//! apply the per-serial rule only, its install takes the license in place as the floor.
//! A license issued later than now (beyond [`MAX_CLOCK_SKEW`]) is not valid yet: its
//! `issued_at` would otherwise be remembered and refuse every honest license issued before it.

use crate::minisign::{KeyId, MinisignError, PublicKey, SecretKey};
use crate::signed::{Envelope, EnvelopeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The envelope field holding the body.
pub const FIELD: &str = "license";

/// How far a license's `issued_at` may be ahead of this node's clock (seconds): a CA's clock a
/// little ahead must not make a license it just issued uninstallable, while one issued days
/// ahead (a clock far off, or a license meant for later) is refused as not yet valid. The one
/// margin every signed document's start gets ([`crate::MAX_CLOCK_SKEW`]).
pub use crate::MAX_CLOCK_SKEW;

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
    /// A format above 1: signed by a newer Stockade ([`Envelope::newer_format`]).
    #[error("license format {0} is of a newer Stockade (this one reads format 1)")]
    NewerFormat(u64),
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
    /// Issued before the newest license of its serial installed before, or not after the license
    /// installed last (of any serial) without being that file.
    #[error("license {serial} was issued at {issued_at}, but license {newer} issued at {seen} was installed before (rollback)")]
    Rollback {
        /// Serial.
        serial: String,
        /// Its `issued_at`.
        issued_at: u64,
        /// The serial of the license it does not replace: its own serial's newest, or the
        /// license installed last.
        newer: String,
        /// That license's `issued_at`.
        seen: u64,
    },
    /// No license, but one was installed before.
    #[error("the node license is missing, but license {serial} issued at {issued_at} was installed before (rollback by deletion)")]
    Missing {
        /// The serial installed last (with no floor recorded, the highest `issued_at`
        /// remembered).
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
    file_sha256: [u8; 32],
}

/// The license installed last: no license issued before it, nor another one issued in the same
/// second, may take its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    /// Its serial.
    pub serial: String,
    /// Its `issued_at`.
    pub issued_at: u64,
    /// SHA-256 of its file, as installed ([`License::file_sha256`]).
    pub sha256: [u8; 32],
}

/// Whether `s` is a valid license serial (or hardware id): `[A-Za-z0-9._-]{1,64}`.
pub fn is_valid_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check(body: &LicenseBody) -> Result<KeyId, LicenseError> {
    if body.format != 1 {
        return Err(LicenseError::Field("format"));
    }
    if !is_valid_serial(&body.serial) {
        return Err(LicenseError::Field("serial"));
    }
    if body
        .hardware_id
        .as_deref()
        .is_some_and(|h| !is_valid_serial(h))
    {
        return Err(LicenseError::Field("hardware_id"));
    }
    body.issuer_key_id
        .parse()
        .map_err(|_| LicenseError::Field("issuer_key_id"))
}

impl License {
    /// Check `body` as [`License::issue`] does, without a key: for `ca license` to refuse a bad
    /// serial or hardware id before it reads (and perhaps asks the password of) the CA key.
    pub fn check_body(body: &LicenseBody) -> Result<(), LicenseError> {
        check(body).map(|_| ())
    }

    /// Parse and syntax-check.
    pub fn parse(bytes: &[u8]) -> Result<Self, LicenseError> {
        let envelope = Envelope::parse(bytes, FIELD).map_err(LicenseError::Envelope)?;
        if let Some(format) = envelope.newer_format() {
            return Err(LicenseError::NewerFormat(format));
        }
        let body: LicenseBody =
            serde_json::from_value(envelope.body.clone()).map_err(LicenseError::Body)?;
        let issuer = check(&body)?;
        Ok(Self {
            body,
            issuer,
            envelope,
            file_sha256: Sha256::digest(bytes).into(),
        })
    }

    /// SHA-256 of the file this license was parsed from: the same license file installed again
    /// is no rollback, another one issued in the same second is.
    pub fn file_sha256(&self) -> [u8; 32] {
        self.file_sha256
    }

    /// This license as the one installed last.
    pub fn floor(&self) -> Floor {
        Floor {
            serial: self.body.serial.clone(),
            issued_at: self.body.issued_at,
            sha256: self.file_sha256,
        }
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

    /// Refuse this license if it was issued before the newest license of its serial in `seen`
    /// (serial → highest `issued_at` installed), or if `floor` (the license installed last) is
    /// set and this one is not issued after it, unless it is that very file. An old active
    /// license of another serial would lift a newer one's freeze as surely as one of the same
    /// serial; one of the same second is another license (an active and a frozen one can be
    /// issued in one second); the same file again is no rollback (reinstalling the license in
    /// force). Bounding by the license installed last rather than the newest of `seen` keeps a
    /// node working that was given a license of a serial issued before one of another serial it
    /// had earlier.
    pub fn check_not_rolled_back(
        &self,
        seen: &BTreeMap<String, u64>,
        floor: Option<&Floor>,
    ) -> Result<(), LicenseError> {
        let rollback = |newer: &str, s: u64| LicenseError::Rollback {
            serial: self.body.serial.clone(),
            issued_at: self.body.issued_at,
            newer: newer.to_string(),
            seen: s,
        };
        match seen.get(&self.body.serial) {
            Some(&s) if self.body.issued_at < s => return Err(rollback(&self.body.serial, s)),
            _ => {}
        }
        match floor {
            Some(f)
                if self.body.issued_at < f.issued_at
                    || (self.body.issued_at == f.issued_at && self.file_sha256 != f.sha256) =>
            {
                Err(rollback(&f.serial, f.issued_at))
            }
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
/// installed before (`seen`, and `floor`, the license installed last): one that is a rollback
/// by [`License::check_not_rolled_back`] is refused, and none at all after one was installed is
/// a rollback by deletion (named by the floor, else by the serial with the latest `issued_at`).
pub fn check_installed(
    installed: Option<&License>,
    seen: &BTreeMap<String, u64>,
    floor: Option<&Floor>,
) -> Result<(), LicenseError> {
    match installed {
        Some(l) => l.check_not_rolled_back(seen, floor),
        None => match floor
            .map(|f| (f.serial.as_str(), f.issued_at))
            .or_else(|| newest(seen))
        {
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
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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
        let other = SecretKey::from_seed(&[2; 32], [2; 8]).public_key();
        assert!(matches!(
            l.verify(&[other], 50, "abcd"),
            Err(LicenseError::UnknownIssuer(_))
        ));
    }

    /// `"state": "active"` put in front of a frozen license's signed state is a malformed
    /// license, not a second reading of it.
    #[test]
    fn a_repeated_key_is_a_malformed_license() {
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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
        let root = SecretKey::from_seed(&[1; 32], [1; 8]);
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
        let roots = [SecretKey::from_seed(&[1; 32], [1; 8]).public_key()];
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

    /// What `node license install` does: check, then remember the license and make it the
    /// floor.
    fn install(
        l: &License,
        seen: &mut BTreeMap<String, u64>,
        floor: &mut Option<Floor>,
    ) -> Result<(), LicenseError> {
        l.check_not_rolled_back(seen, floor.as_ref())?;
        l.remember(seen);
        *floor = Some(l.floor());
        Ok(())
    }

    fn assert_rollback(r: Result<(), LicenseError>, newer_serial: &str, newer_at: u64) {
        match r {
            Err(LicenseError::Rollback { newer, seen, .. }) => {
                assert_eq!((newer.as_str(), seen), (newer_serial, newer_at));
            }
            other => panic!("expected a rollback past {newer_serial}@{newer_at}: {other:?}"),
        }
    }

    #[test]
    fn an_older_license_of_a_serial_seen_is_a_rollback() {
        let mut seen = BTreeMap::new();
        let active = issued("L1", LicenseState::Active, 100);
        let frozen = issued("L1", LicenseState::Frozen, 200);
        assert!(active.remember(&mut seen));
        frozen.check_not_rolled_back(&seen, None).unwrap();
        assert!(frozen.remember(&mut seen));
        assert!(!frozen.remember(&mut seen), "nothing new to save");
        assert_eq!(seen.get("L1"), Some(&200));
        // The older active license may not lift the freeze, with or without a floor ...
        for floor in [None, Some(&frozen.floor())] {
            assert!(matches!(
                active.check_not_rolled_back(&seen, floor),
                Err(LicenseError::Rollback {
                    issued_at: 100,
                    seen: 200,
                    ..
                })
            ));
        }
        // ... nor does remembering it lower the mark.
        assert!(!active.remember(&mut seen));
        assert_eq!(seen.get("L1"), Some(&200));
        // The same license again and a newer one pass.
        frozen
            .check_not_rolled_back(&seen, Some(&frozen.floor()))
            .unwrap();
        issued("L1", LicenseState::Active, 300)
            .check_not_rolled_back(&seen, Some(&frozen.floor()))
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
        let (mut seen, mut floor) = (BTreeMap::new(), None);
        let old_active = issued("L2", LicenseState::Active, 100);
        install(&old_active, &mut seen, &mut floor).unwrap();
        let frozen = issued("L1", LicenseState::Frozen, 200);
        install(&frozen, &mut seen, &mut floor).unwrap();
        for (serial, at) in [("L2", 100), ("L3", 150), ("L3", 199)] {
            let l = issued(serial, LicenseState::Active, at);
            assert_rollback(l.check_not_rolled_back(&seen, floor.as_ref()), "L1", 200);
            // Put in place by hand, the reader refuses it too.
            assert_rollback(check_installed(Some(&l), &seen, floor.as_ref()), "L1", 200);
        }
        // A later license of any serial is the CA's word.
        for serial in ["L1", "L2", "L3"] {
            issued(serial, LicenseState::Active, 201)
                .check_not_rolled_back(&seen, floor.as_ref())
                .unwrap();
        }
        // The original hole: L2 active, then L1 frozen, then L2 again — still refused once the
        // memory holds the floor, and the floor only moves forward.
        assert_rollback(install(&old_active, &mut seen, &mut floor), "L1", 200);
        assert_eq!(floor, Some(frozen.floor()));
    }

    /// Another license issued in the same second as the one installed last is not that license:
    /// of another serial or of the same one (an active and a frozen license can be issued in
    /// one second), it is refused; the very file installed last is accepted again.
    #[test]
    fn a_license_of_the_same_second_is_refused_unless_it_is_the_same_file() {
        let (mut seen, mut floor) = (BTreeMap::new(), None);
        let frozen = issued("L1", LicenseState::Frozen, 200);
        install(&frozen, &mut seen, &mut floor).unwrap();
        for l in [
            issued("L3", LicenseState::Active, 200),
            issued("L1", LicenseState::Active, 200),
        ] {
            assert_rollback(l.check_not_rolled_back(&seen, floor.as_ref()), "L1", 200);
            assert_rollback(check_installed(Some(&l), &seen, floor.as_ref()), "L1", 200);
        }
        // The same file, parsed again, is the license in force.
        let again = License::parse(
            &License::issue(&frozen.body, &SecretKey::from_seed(&[1; 32], [1; 8]), "").unwrap(),
        )
        .unwrap();
        assert_eq!(again.file_sha256(), frozen.file_sha256());
        install(&again, &mut seen, &mut floor).unwrap();
        check_installed(Some(&again), &seen, floor.as_ref()).unwrap();
    }

    /// A node that an earlier build (per-serial rule only) let install license A issued at 500,
    /// then license B issued at 300, holds `{"A": 500, "B": 300}` and B: it keeps working. With
    /// no floor the per-serial rule alone applies; installing B again records B as the floor,
    /// and A's latest license still installs over it (it is newer than B).
    #[test]
    fn the_bound_is_the_license_installed_last_not_the_newest_serial() {
        let mut seen: BTreeMap<String, u64> =
            serde_json::from_str(r#"{"A": 500, "B": 300}"#).unwrap();
        let mut floor = None;
        let a = issued("A", LicenseState::Active, 500);
        let b = issued("B", LicenseState::Active, 300);
        check_installed(Some(&b), &seen, None).unwrap();
        install(&b, &mut seen, &mut floor).unwrap();
        assert_eq!(
            seen,
            serde_json::from_str(r#"{"A": 500, "B": 300}"#).unwrap()
        );
        assert_eq!(floor, Some(b.floor()));
        check_installed(Some(&b), &seen, floor.as_ref()).unwrap();
        // Older than the floor, or than A's newest, is refused; A's latest is not.
        assert_rollback(
            issued("C", LicenseState::Active, 299).check_not_rolled_back(&seen, floor.as_ref()),
            "B",
            300,
        );
        assert_rollback(
            issued("A", LicenseState::Active, 400).check_not_rolled_back(&seen, floor.as_ref()),
            "A",
            500,
        );
        install(&a, &mut seen, &mut floor).unwrap();
        // From then on B is the older one.
        assert_rollback(install(&b, &mut seen, &mut floor), "A", 500);
        // With no floor (an earlier build's memory), only the per-serial rule applies.
        issued("C", LicenseState::Active, 1)
            .check_not_rolled_back(&seen, None)
            .unwrap();
    }

    #[test]
    fn no_license_after_one_was_installed_is_a_rollback_by_deletion() {
        let none = BTreeMap::new();
        check_installed(None, &none, None).unwrap();
        let mut seen = BTreeMap::new();
        seen.insert("L1".to_string(), 200);
        seen.insert("L0".to_string(), 50);
        // Named by the newest serial without a floor, by the floor with one.
        let l0 = issued("L0", LicenseState::Active, 50);
        for (floor, named) in [(None, ("L1", 200)), (Some(l0.floor()), ("L0", 50))] {
            match check_installed(None, &seen, floor.as_ref()) {
                Err(LicenseError::Missing { serial, issued_at }) => {
                    assert_eq!((serial.as_str(), issued_at), named);
                }
                other => panic!("{other:?}"),
            }
        }
        check_installed(Some(&issued("L1", LicenseState::Frozen, 200)), &seen, None).unwrap();
        assert!(matches!(
            check_installed(Some(&issued("L1", LicenseState::Active, 199)), &seen, None),
            Err(LicenseError::Rollback { .. })
        ));
    }
}
