//! The certificate chain: pinned root key → intermediate certificate → developer certificate.
//!
//! Three separate checks, matching three fail-closed verification steps, so each failure gets its
//! own error and exit code: [`verify_chain`] (who signed what, kinds, bounds),
//! [`check_validity`] (time windows) — revocation lives in [`crate::crl`].
//!
//! Bounds ("root bounds" are seed 000's scope table, which no certificate may exceed):
//! - every certificate's capabilities ⊆ the ceiling of its own scope;
//! - the intermediate's scope admits the developer's (`any` admits all, a bound scope only
//!   itself);
//! - the developer's capabilities ⊆ the intermediate's.
//!
//! The same [`check_bounds`] runs when `ca issue` signs, so a CA cannot mint a certificate that
//! verification would later refuse.

use crate::cert::{CertBody, CertKind, Certificate};
use crate::minisign::{KeyId, MinisignError, PublicKey};

/// Why the chain does not lead to a trusted root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A certificate of the wrong kind in a slot.
    #[error("the {slot} certificate has kind `{found}`")]
    Kind {
        /// Which slot (developer/intermediate).
        slot: &'static str,
        /// What it says it is.
        found: CertKind,
    },
    /// The developer certificate names a different issuer than the intermediate's key.
    #[error("developer certificate was issued by key {issuer}, but the intermediate's key is {intermediate}")]
    IssuerMismatch {
        /// `issuer_key_id` of the developer certificate.
        issuer: KeyId,
        /// `key_id` of the intermediate.
        intermediate: KeyId,
    },
    /// The intermediate's signature on the developer certificate fails.
    #[error("the intermediate's signature on the developer certificate does not verify")]
    DeveloperSignature(#[source] MinisignError),
    /// No pinned root has the intermediate's issuer key id.
    #[error(
        "no trusted root key {0} (the intermediate's issuer) is pinned in the trust directory"
    )]
    UnknownRoot(KeyId),
    /// A root with the right id exists but its signature fails.
    #[error("the root's signature on the intermediate certificate does not verify")]
    IntermediateSignature(#[source] MinisignError),
    /// A certificate exceeds a bound.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
}

/// A certificate exceeds what its issuer or scope allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// Capabilities beyond the ceiling of the certificate's own scope (the root's bounds).
    #[error("{kind} certificate grants `{capability}`, beyond the ceiling of its scope `{scope}`")]
    BeyondScopeCeiling {
        /// Which certificate.
        kind: CertKind,
        /// The offending capability.
        capability: String,
        /// Its scope.
        scope: String,
    },
    /// Scope not admitted by the issuer's scope.
    #[error("developer scope `{child}` is outside the intermediate's scope `{parent}`")]
    Scope {
        /// Issuer scope.
        parent: String,
        /// Subject scope.
        child: String,
    },
    /// Capability not held by the issuer.
    #[error("developer certificate grants `{0}`, which the intermediate does not hold")]
    Capability(String),
}

/// What a successful chain check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOk {
    /// The root key that signed the intermediate.
    pub root: KeyId,
}

/// Check that `body` stays within its own scope and, if given, within `issuer`'s bounds.
pub fn check_bounds(body: &CertBody, issuer: Option<&CertBody>) -> Result<(), BoundsError> {
    let ceiling = body.scope.ceiling();
    if let Some(c) = body.capabilities.iter().find(|c| !ceiling.contains(c)) {
        return Err(BoundsError::BeyondScopeCeiling {
            kind: body.kind,
            capability: c.to_string(),
            scope: body.scope.to_string(),
        });
    }
    if let Some(parent) = issuer {
        if !parent.scope.admits(&body.scope) {
            return Err(BoundsError::Scope {
                parent: parent.scope.to_string(),
                child: body.scope.to_string(),
            });
        }
        if let Some(c) = body
            .capabilities
            .iter()
            .find(|c| !parent.capabilities.contains(c))
        {
            return Err(BoundsError::Capability(c.to_string()));
        }
    }
    Ok(())
}

/// Verify developer ← intermediate ← one of `roots` (any match), kinds and bounds.
pub fn verify_chain(
    dev: &Certificate,
    int: &Certificate,
    roots: &[PublicKey],
) -> Result<ChainOk, ChainError> {
    if dev.body.kind != CertKind::Developer {
        return Err(ChainError::Kind {
            slot: "developer",
            found: dev.body.kind,
        });
    }
    if int.body.kind != CertKind::Intermediate {
        return Err(ChainError::Kind {
            slot: "intermediate",
            found: int.body.kind,
        });
    }
    if dev.issuer != int.subject_key.key_id {
        return Err(ChainError::IssuerMismatch {
            issuer: dev.issuer,
            intermediate: int.subject_key.key_id,
        });
    }
    dev.verify_signature(&int.subject_key)
        .map_err(ChainError::DeveloperSignature)?;
    // Several roots may share an id only by accident or attack; trying each keeps "any match"
    // semantics without letting a colliding id hide the real root.
    let mut last_err = None;
    let mut root_ok = None;
    for root in roots.iter().filter(|r| r.key_id == int.issuer) {
        match int.verify_signature(root) {
            Ok(()) => {
                root_ok = Some(root.key_id);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let root = match (root_ok, last_err) {
        (Some(r), _) => r,
        (None, Some(e)) => return Err(ChainError::IntermediateSignature(e)),
        (None, None) => return Err(ChainError::UnknownRoot(int.issuer)),
    };
    check_bounds(&int.body, None)?;
    check_bounds(&dev.body, Some(&int.body))?;
    Ok(ChainOk { root })
}

/// A certificate outside its validity window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidityError {
    /// `now` is before `not_before` by more than [`crate::MAX_CLOCK_SKEW`].
    #[error("{kind} certificate {serial} is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Which certificate.
        kind: CertKind,
        /// Its serial.
        serial: String,
        /// Start of validity.
        not_before: u64,
        /// The time checked.
        now: u64,
    },
    /// `now` is at or after `not_after`.
    #[error("{kind} certificate {serial} expired at {not_after} (now {now})")]
    Expired {
        /// Which certificate.
        kind: CertKind,
        /// Its serial.
        serial: String,
        /// End of validity.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
}

/// Check each certificate's window at `now` (unix seconds): its start may be up to
/// [`crate::MAX_CLOCK_SKEW`] ahead of `now` (the issuing CA's clock a little ahead of this
/// node's), its end is exact.
pub fn check_validity(certs: &[&Certificate], now: u64) -> Result<(), ValidityError> {
    for c in certs {
        let b = &c.body;
        if now.saturating_add(crate::MAX_CLOCK_SKEW) < b.not_before {
            return Err(ValidityError::NotYetValid {
                kind: b.kind,
                serial: b.serial.clone(),
                not_before: b.not_before,
                now,
            });
        }
        if now >= b.not_after {
            return Err(ValidityError::Expired {
                kind: b.kind,
                serial: b.serial.clone(),
                not_after: b.not_after,
                now,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::body;
    use crate::minisign::SecretKey;
    use stockade_policy::capability::{Capability, Scope};

    fn k(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32], [n; 8])
    }

    fn certs(
        int_body: CertBody,
        dev_body: CertBody,
        root: &SecretKey,
        int: &SecretKey,
    ) -> (Certificate, Certificate) {
        let i = Certificate::parse(&Certificate::issue(&int_body, root, "").unwrap()).unwrap();
        let d = Certificate::parse(&Certificate::issue(&dev_body, int, "").unwrap()).unwrap();
        (d, i)
    }

    #[test]
    fn good_chain_and_failures() {
        let (root, int, dev) = (k(1), k(2), k(3));
        let ib = body(
            CertKind::Intermediate,
            &int,
            &root,
            Scope::License("L1".into()),
        );
        let db = body(CertKind::Developer, &dev, &int, Scope::License("L1".into()));
        let (d, i) = certs(ib.clone(), db.clone(), &root, &int);
        assert_eq!(
            verify_chain(&d, &i, &[k(9).public_key(), root.public_key()])
                .unwrap()
                .root,
            root.public_key().key_id
        );
        assert!(matches!(
            verify_chain(&d, &i, &[k(9).public_key()]),
            Err(ChainError::UnknownRoot(_))
        ));
        assert!(matches!(
            verify_chain(&i, &d, &[root.public_key()]),
            Err(ChainError::Kind { .. })
        ));

        // Developer scope outside the intermediate's.
        let mut db2 = db.clone();
        db2.scope = Scope::License("L2".into());
        let (d2, i2) = certs(ib.clone(), db2, &root, &int);
        assert!(matches!(
            verify_chain(&d2, &i2, &[root.public_key()]),
            Err(ChainError::Bounds(BoundsError::Scope { .. }))
        ));

        // Intermediate with `any` scope claiming kv_put: beyond the root bounds.
        let mut ib3 = body(CertKind::Intermediate, &int, &root, Scope::Any);
        ib3.capabilities.push(Capability::KvPut);
        let (d3, i3) = certs(
            ib3,
            body(CertKind::Developer, &dev, &int, Scope::Any),
            &root,
            &int,
        );
        assert!(matches!(
            verify_chain(&d3, &i3, &[root.public_key()]),
            Err(ChainError::Bounds(BoundsError::BeyondScopeCeiling {
                kind: CertKind::Intermediate,
                ..
            }))
        ));

        // Developer signed by someone else than the intermediate.
        let (d4, i4) = certs(ib, db, &root, &k(7));
        assert!(matches!(
            verify_chain(&d4, &i4, &[root.public_key()]),
            Err(ChainError::DeveloperSignature(_))
        ));
    }

    #[test]
    fn validity_windows() {
        let (root, int) = (k(1), k(2));
        let i = Certificate::parse(
            &Certificate::issue(
                &body(CertKind::Intermediate, &int, &root, Scope::Any),
                &root,
                "",
            )
            .unwrap(),
        )
        .unwrap();
        assert!(check_validity(&[&i], 2000).is_ok());
        // Up to MAX_CLOCK_SKEW before its start (the CA's clock ahead of ours) it is valid;
        // a second more and it is not yet.
        assert!(check_validity(&[&i], 1000 - crate::MAX_CLOCK_SKEW).is_ok());
        assert!(matches!(
            check_validity(&[&i], 999 - crate::MAX_CLOCK_SKEW),
            Err(ValidityError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_validity(&[&i], 5000),
            Err(ValidityError::Expired { .. })
        ));
    }
}
