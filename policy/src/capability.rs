//! The fixed host-API capability set (seed 000), certificate scopes and their capability ceilings.
//!
//! Seed 000 fixes six host functions a plugin may be granted and two kinds of certificate scope:
//! `any` (public distribution) and deployment-bound scopes (`license:<serial>`,
//! `hardware:<id>`). The ceiling a scope allows is a table here, not configuration, so that an
//! auditor can read the whole rule on one screen and no policy file can widen it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One host-API function a plugin may be granted. Serde names are the seed's names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Write structured log lines to the host log.
    Log,
    /// Publish an event onto the host's event bus.
    EmitEvent,
    /// Read a small, read-only subset of non-secret configuration values.
    GetConfigValue,
    /// Register for a hook point declared in the manifest.
    RegisterHook,
    /// Read from the plugin's own key/value scratch store.
    KvGet,
    /// Write to the plugin's own key/value scratch store.
    KvPut,
}

impl Capability {
    /// Every capability, in canonical order.
    pub const ALL: [Capability; 6] = [
        Capability::Log,
        Capability::EmitEvent,
        Capability::GetConfigValue,
        Capability::RegisterHook,
        Capability::KvGet,
        Capability::KvPut,
    ];

    /// The wire name (`log`, `emit_event`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::EmitEvent => "emit_event",
            Capability::GetConfigValue => "get_config_value",
            Capability::RegisterHook => "register_hook",
            Capability::KvGet => "kv_get",
            Capability::KvPut => "kv_put",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}` (known: log, emit_event, get_config_value, register_hook, kv_get, kv_put)")]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCapability(s.to_string()))
    }
}

/// Where a certificate's holder may run plugins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Public distribution: any node.
    Any,
    /// Only nodes activated with this license serial.
    License(String),
    /// Only the node with this hardware id.
    Hardware(String),
}

/// Why a scope string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not `any`, `license:<serial>` or `hardware:<id>`.
    #[error("scope `{0}` is not one of any, license:<serial>, hardware:<id>")]
    Syntax(String),
    /// The serial or id part has characters outside `[A-Za-z0-9._-]` or is empty/too long.
    #[error("scope value `{0}` must be 1-64 characters of [A-Za-z0-9._-]")]
    Value(String),
}

fn valid_scope_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ctor, value): (fn(String) -> Scope, &str) = if s == "any" {
            return Ok(Scope::Any);
        } else if let Some(v) = s.strip_prefix("license:") {
            (Scope::License, v)
        } else if let Some(v) = s.strip_prefix("hardware:") {
            (Scope::Hardware, v)
        } else {
            return Err(ScopeError::Syntax(s.to_string()));
        };
        if !valid_scope_value(value) {
            return Err(ScopeError::Value(value.to_string()));
        }
        Ok(ctor(value.to_string()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Any => f.write_str("any"),
            Scope::License(s) => write!(f, "license:{s}"),
            Scope::Hardware(h) => write!(f, "hardware:{h}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Scope {
    /// The most a certificate of this scope may grant (seed 000's table).
    pub fn ceiling(&self) -> BTreeSet<Capability> {
        use Capability::*;
        let mut set: BTreeSet<Capability> = [Log, EmitEvent, GetConfigValue, RegisterHook].into();
        if !matches!(self, Scope::Any) {
            set.extend([KvGet, KvPut]);
        }
        set
    }

    /// Whether a certificate with scope `self` may issue a certificate with scope `child`:
    /// `any` admits every scope; a bound scope admits only itself.
    pub fn admits(&self, child: &Scope) -> bool {
        matches!(self, Scope::Any) || self == child
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert!("exec".parse::<Capability>().is_err());
    }

    #[test]
    fn scope_parse_and_ceiling() {
        assert_eq!("any".parse::<Scope>().unwrap(), Scope::Any);
        assert_eq!(
            "license:ACME-1".parse::<Scope>().unwrap(),
            Scope::License("ACME-1".into())
        );
        assert!("license:".parse::<Scope>().is_err());
        assert!("hardware:a b".parse::<Scope>().is_err());
        assert!("world".parse::<Scope>().is_err());
        assert_eq!(Scope::Any.ceiling().len(), 4);
        assert!(!Scope::Any.ceiling().contains(&Capability::KvPut));
        assert_eq!(Scope::Hardware("x".into()).ceiling().len(), 6);
    }

    #[test]
    fn admits_is_any_or_equal() {
        let l = Scope::License("a".into());
        assert!(Scope::Any.admits(&l));
        assert!(l.admits(&l));
        assert!(!l.admits(&Scope::Any));
        assert!(!l.admits(&Scope::License("b".into())));
    }
}
