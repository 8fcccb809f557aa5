//! Risk classes (seed 001): every capability, network access and every writable host path has a
//! class, low / medium / high. High-risk items are granted only with a signed authorization
//! grant for that plugin, version, scope and target ([`grant_target`]); without one they are
//! withheld, whatever the operator's allowlist says.
//!
//! The built-in table is here, in code, so a reviewer reads it on one screen. An operator may
//! move an item to another class with `[risk]` (seed 001: "risk classes may be overridden only
//! by administrators" — the policy files are root's).

use crate::capability::Capability;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How dangerous an item is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// Cannot affect anything outside the plugin's own output.
    Low,
    /// Affects host state the plugin owns (its store, the event bus).
    Medium,
    /// Reaches outside the sandbox (network, host files): needs a signed grant.
    High,
}

impl RiskClass {
    /// The name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Low => "low",
            RiskClass::Medium => "medium",
            RiskClass::High => "high",
        }
    }
}

/// The risk item a capability is classed under (its wire name).
pub fn capability_item(c: Capability) -> &'static str {
    c.as_str()
}

/// Built-in class of an item: `log`, `get_config_value`, `register_hook`, `kv_get` are low
/// (they only read what the host chose to expose or write the plugin's own log); `emit_event`
/// and `kv_put` are medium (they change host-visible state); `network` (any network namespace
/// with an interface up) and `writable` (any host path bound read-write) are high.
pub fn builtin_class(item: &str) -> RiskClass {
    match item {
        "network" | "writable" => RiskClass::High,
        "emit_event" | "kv_put" => RiskClass::Medium,
        _ => RiskClass::Low,
    }
}

/// The class in force: the operator's `[risk]` override, else the built-in one.
pub fn class_of(item: &str, overrides: &BTreeMap<String, RiskClass>) -> RiskClass {
    overrides
        .get(item)
        .copied()
        .unwrap_or_else(|| builtin_class(item))
}

/// The target string a grant must name to authorise an item: `capability:<cap>`,
/// `network:<mode>` or `writable:<path>`.
pub fn grant_target(kind: &str, value: &str) -> String {
    format!("{kind}:{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_and_overrides() {
        assert_eq!(builtin_class("network"), RiskClass::High);
        assert_eq!(builtin_class("kv_put"), RiskClass::Medium);
        assert_eq!(builtin_class("log"), RiskClass::Low);
        let o: BTreeMap<String, RiskClass> = [("kv_put".to_string(), RiskClass::High)].into();
        assert_eq!(class_of("kv_put", &o), RiskClass::High);
        assert_eq!(class_of("log", &o), RiskClass::Low);
    }
}
