//! The host protocol as data: NDJSON framing ([`frame`]), JSON-RPC messages and params
//! ([`message`]), and the decisions the runtime enforces on the plugin link: what a handshake
//! may claim ([`check_handshake`]) and what is granted ([`grant`]), plus the host part of the
//! operator's policy file ([`host`]). No I/O here; `stockade-runtime`'s `host` module moves
//! bytes and applies these decisions.

pub mod frame;
pub mod host;
pub mod message;

use crate::capability::Capability;
use crate::manifest::ValidatedManifest;
use message::Handshake;
use std::collections::BTreeSet;

/// The largest frame accepted on either link (bytes, without the newline).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// What is granted: the plugin's request ∩ the developer certificate's ceiling ∩ the operator's
/// allowlist (`None` = the operator does not restrict). Never more than any of the three.
pub fn grant(
    request: &BTreeSet<Capability>,
    ceiling: &BTreeSet<Capability>,
    operator: Option<&BTreeSet<Capability>>,
) -> BTreeSet<Capability> {
    request
        .iter()
        .filter(|c| ceiling.contains(c) && operator.is_none_or(|o| o.contains(c)))
        .copied()
        .collect()
}

/// How a handshake disagrees with the verified manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// `name` differs.
    #[error("handshake name `{got}` is not the manifest's `{want}`")]
    Name {
        /// Claimed.
        got: String,
        /// Manifest.
        want: String,
    },
    /// `version` differs.
    #[error("handshake version `{got}` is not the manifest's `{want}`")]
    Version {
        /// Claimed.
        got: String,
        /// Manifest.
        want: String,
    },
    /// `api` differs.
    #[error("handshake api {got} is not the manifest's {want}")]
    Api {
        /// Claimed.
        got: u32,
        /// Manifest.
        want: u32,
    },
    /// A capability the manifest does not request (or no capability at all).
    #[error("handshake claims capability `{0}`, which the manifest does not request")]
    Capability(String),
    /// A hook the manifest does not declare.
    #[error("handshake claims hook `{0}`, which the manifest does not declare")]
    Hook(String),
}

/// Check a handshake against the verified manifest; on success return the capabilities it asks
/// for (⊆ the manifest's request).
pub fn check_handshake(
    m: &ValidatedManifest,
    h: &Handshake,
) -> Result<BTreeSet<Capability>, HandshakeError> {
    if h.name != m.name() {
        return Err(HandshakeError::Name {
            got: h.name.clone(),
            want: m.name().to_string(),
        });
    }
    let want = m.version().to_string();
    if h.version != want {
        return Err(HandshakeError::Version {
            got: h.version.clone(),
            want,
        });
    }
    if h.api != m.manifest().api {
        return Err(HandshakeError::Api {
            got: h.api,
            want: m.manifest().api,
        });
    }
    let mut caps = BTreeSet::new();
    for c in &h.capabilities {
        let cap: Capability = c
            .parse()
            .map_err(|_| HandshakeError::Capability(c.clone()))?;
        if !m.requested_capabilities().contains(&cap) {
            return Err(HandshakeError::Capability(c.clone()));
        }
        caps.insert(cap);
    }
    for hook in &h.hooks {
        if !m.manifest().hooks.contains(hook) {
            return Err(HandshakeError::Hook(hook.clone()));
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(bits: u8) -> BTreeSet<Capability> {
        Capability::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    proptest! {
        #[test]
        fn grant_never_exceeds_any_of_the_three(r in 0u8..64, c in 0u8..64, o in proptest::option::of(0u8..64)) {
            let op = o.map(set);
            let g = grant(&set(r), &set(c), op.as_ref());
            for cap in &g {
                prop_assert!(set(r).contains(cap) && set(c).contains(cap));
                if let Some(op) = &op { prop_assert!(op.contains(cap)); }
            }
            // …and is exactly the intersection (nothing that all three allow is lost).
            for cap in Capability::ALL {
                let all = set(r).contains(&cap) && set(c).contains(&cap) && op.as_ref().is_none_or(|o| o.contains(&cap));
                prop_assert_eq!(all, g.contains(&cap));
            }
        }
    }

    fn manifest() -> ValidatedManifest {
        let m = crate::manifest::Manifest::parse(
            br#"{"name":"hello","version":"0.1.0","author":"a","description":"d","entrypoint":"entrypoint",
            "requested_capabilities":["log","register_hook"],"hooks":["on:flow.new"],"api":1}"#,
        )
        .unwrap();
        m.validate(&semver::Version::new(9, 9, 9)).unwrap()
    }

    fn hs(caps: &[&str], hooks: &[&str]) -> Handshake {
        Handshake {
            name: "hello".into(),
            version: "0.1.0".into(),
            api: 1,
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            hooks: hooks.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn handshake_must_match_the_manifest() {
        let m = manifest();
        assert_eq!(
            check_handshake(&m, &hs(&["log"], &["on:flow.new"])).unwrap(),
            [Capability::Log].into()
        );
        assert!(matches!(
            check_handshake(&m, &hs(&["kv_put"], &[])),
            Err(HandshakeError::Capability(_))
        ));
        assert!(matches!(
            check_handshake(&m, &hs(&["no_such"], &[])),
            Err(HandshakeError::Capability(_))
        ));
        assert!(matches!(
            check_handshake(&m, &hs(&[], &["on:other"])),
            Err(HandshakeError::Hook(_))
        ));
        let mut h = hs(&[], &[]);
        h.name = "other".into();
        assert!(matches!(
            check_handshake(&m, &h),
            Err(HandshakeError::Name { .. })
        ));
        let mut h = hs(&[], &[]);
        h.version = "0.2.0".into();
        assert!(matches!(
            check_handshake(&m, &h),
            Err(HandshakeError::Version { .. })
        ));
        let mut h = hs(&[], &[]);
        h.api = 2;
        assert!(matches!(
            check_handshake(&m, &h),
            Err(HandshakeError::Api { .. })
        ));
    }
}
