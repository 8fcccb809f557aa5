//! The host part of the operator's policy file: which capabilities the operator allows, per-hook
//! deadlines and failure modes, protocol limits and key/value quotas.
//!
//! It lives in the same TOML file as the sandbox policy (`stockade run --policy FILE`) as the
//! sections `[capabilities]`, `[protocol]`, `[kv]` and `[hooks."<hook>"]`; [`split_policy`]
//! takes them out and hands the rest to [`crate::sandbox::parse_policy`], so both halves keep
//! `deny_unknown_fields`. Issue 5 brings the complete operator policy; this is its first slice.

use crate::capability::Capability;
use crate::sandbox::{parse_policy, SandboxPolicyError, ValidatedSandboxPolicy, MAX_POLICY_BYTES};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the runtime answers when a hook's plugin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Return the error to the agent (deny by default, also for answers): the default of
    /// every hook but the Sertone ones ([`FailureMode::default_for`]).
    Closed,
    /// Bypass the plugin: answer with the hook's `default` and report the bypass (seed 003).
    Open,
}

impl FailureMode {
    /// The mode of `hook` when the policy does not set `failure`: open for the Sertone hooks,
    /// whose seed promises that a plugin's failure never blocks traffic (seed 003), closed for
    /// every other hook (deny by default). Per hook rather than per section, so that a section
    /// written only to raise `deadline_ms` does not also flip the mode.
    pub fn default_for(hook: &str) -> Self {
        if crate::sertone::is_sertone_hook(hook) {
            Self::Open
        } else {
            Self::Closed
        }
    }
}

/// `[hooks."<hook>"]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookPolicy {
    /// Milliseconds the plugin has to answer (caps an agent's `deadline_ms`).
    pub deadline_ms: Option<u64>,
    /// Fail open or closed. Unset: [`FailureMode::default_for`] the hook (read it through
    /// [`HostPolicy::failure`], never this field alone).
    pub failure: Option<FailureMode>,
    /// The fail-open answer. Absent: the hook's own ([`HostPolicy::fail_open_default`]).
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<toml::Value>,
    /// Keep the plugin's successful answers this long and answer a repeated call from them
    /// without calling the plugin (seed 001's deterministic cache: the key is BLAKE3 over the
    /// plugin's name and version, the hook and the payload as canonical JSON). Only for a hook
    /// whose answer depends on nothing but its payload, which the operator asserts by setting
    /// it. Absent or 0: no cache. At most 86 400 000 (24 h, the seed's longest default TTL).
    pub cache_ttl_ms: Option<u64>,
    /// `on:sertone.pre_request` only: the largest `additional_fee_usdc` a plugin's answer may
    /// ask, a USDC decimal string (at most 6 fractional digits). Unset: no fee above zero is
    /// accepted — a plugin's fee reaches the fields a control center pays from only when the
    /// operator allowed that much. An answer past it is invalid (a failure, under `failure`).
    pub max_fee_usdc: Option<String>,
    /// `on:sertone.pre_request` only: the one EVM address (`0x` + 40 hex digits) a fee may go
    /// to. Unset: the plugin's `fee_destination` is taken as it answers it. An answer naming
    /// another is invalid.
    pub fee_destination: Option<String>,
}

/// `[capabilities]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityPolicy {
    /// When set, only these may be granted.
    pub allow: Option<BTreeSet<Capability>>,
}

/// `[protocol]`: limits on the plugin link.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolLimits {
    /// Largest frame on either link.
    pub max_frame_bytes: usize,
    /// The handshake must arrive within this.
    pub handshake_timeout_ms: u64,
    /// A started frame must be completed within this (slowloris).
    pub frame_timeout_ms: u64,
    /// Deadline of a hook without one in policy or request.
    pub default_deadline_ms: u64,
    /// Grace between `shutdown` and the kill.
    pub shutdown_grace_ms: u64,
    /// Hook invocations in flight per plugin; more are answered `overloaded`.
    pub max_in_flight: usize,
    /// `emit_event` + `log` calls per second (a burst of this many is allowed).
    pub max_events_per_sec: u32,
    /// stderr bytes forwarded per plugin lifetime; the rest is dropped (and said so once).
    pub max_stderr_bytes: usize,
}

impl Default for ProtocolLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: super::DEFAULT_MAX_FRAME,
            handshake_timeout_ms: 5_000,
            frame_timeout_ms: 5_000,
            default_deadline_ms: 1_000,
            shutdown_grace_ms: 2_000,
            max_in_flight: 64,
            max_events_per_sec: 100,
            max_stderr_bytes: 1024 * 1024,
        }
    }
}

/// `[kv]`: the per-plugin store's quotas.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KvQuota {
    /// Most keys.
    pub max_keys: usize,
    /// Longest key (bytes).
    pub max_key_bytes: usize,
    /// Longest value (bytes).
    pub max_value_bytes: usize,
    /// Sum of key and value bytes as stored: JSON-escaped, as the store file holds them.
    pub max_total_bytes: usize,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            max_keys: 1024,
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_total_bytes: 1024 * 1024,
        }
    }
}

/// The validated host policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostPolicy {
    /// `[capabilities]`.
    #[serde(default)]
    pub capabilities: CapabilityPolicy,
    /// `[protocol]`.
    #[serde(default)]
    pub protocol: ProtocolLimits,
    /// `[kv]`.
    #[serde(default)]
    pub kv: KvQuota,
    /// `[hooks."<hook>"]`.
    #[serde(default)]
    pub hooks: BTreeMap<String, HookPolicy>,
}

/// Why the policy file is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostPolicyError {
    /// Not TOML (or too large).
    #[error("policy file is not valid TOML")]
    Syntax(#[source] crate::TomlSyntax),
    /// A host section is malformed.
    #[error("invalid host section ([capabilities], [protocol], [kv], [hooks])")]
    Host(#[source] toml::de::Error),
    /// A value is out of range.
    #[error("`{0}` is out of range")]
    Range(&'static str),
    /// A key that means something only on one hook is set on another.
    #[error("`{key}` applies only to the hook `{hook}`")]
    OnlyFor {
        /// The key, as `hooks.*.<name>`.
        key: &'static str,
        /// The one hook it applies to.
        hook: &'static str,
    },
    /// The sandbox half is invalid.
    #[error("invalid sandbox policy")]
    Sandbox(#[source] SandboxPolicyError),
}

impl HostPolicy {
    /// The deadline for `hook`, given the agent's wish: the smaller of the wish and the policy's
    /// value, or the policy's (else the default) when the agent has none.
    pub fn deadline_ms(&self, hook: &str, requested: Option<u64>) -> u64 {
        let cap = self
            .hooks
            .get(hook)
            .and_then(|h| h.deadline_ms)
            .unwrap_or(self.protocol.default_deadline_ms);
        requested.map_or(cap, |r| r.min(cap))
    }

    /// The failure mode of `hook`: its section's `failure`, else the hook's default
    /// ([`FailureMode::default_for`]).
    pub fn failure(&self, hook: &str) -> FailureMode {
        self.hooks
            .get(hook)
            .and_then(|h| h.failure)
            .unwrap_or_else(|| FailureMode::default_for(hook))
    }

    /// The answer of a call of `hook` that fails open: its section's `default`, else the
    /// hook's own ([`crate::sertone::fail_open_answer`] for the Sertone hooks), else JSON
    /// `null`.
    pub fn fail_open_default(&self, hook: &str) -> serde_json::Value {
        self.hooks
            .get(hook)
            .and_then(|h| h.default.as_ref())
            .and_then(|v| serde_json::to_value(v).ok())
            .or_else(|| crate::sertone::fail_open_answer(hook))
            .unwrap_or(serde_json::Value::Null)
    }

    /// Range-check the values (used by [`split_policy`] and the operator policy merge).
    pub fn validate(&self) -> Result<(), HostPolicyError> {
        let p = &self.protocol;
        let checks: [(&'static str, bool); 6] = [
            (
                "protocol.max_frame_bytes",
                (256..=16 << 20).contains(&p.max_frame_bytes),
            ),
            (
                "protocol.handshake_timeout_ms",
                (1..=600_000).contains(&p.handshake_timeout_ms),
            ),
            (
                "protocol.frame_timeout_ms",
                (1..=600_000).contains(&p.frame_timeout_ms),
            ),
            (
                "protocol.default_deadline_ms",
                (1..=3_600_000).contains(&p.default_deadline_ms),
            ),
            (
                "protocol.max_in_flight",
                (1..=65_536).contains(&p.max_in_flight),
            ),
            ("protocol.shutdown_grace_ms", p.shutdown_grace_ms <= 600_000),
        ];
        for (k, ok) in checks {
            if !ok {
                return Err(HostPolicyError::Range(k));
            }
        }
        if self
            .hooks
            .values()
            .any(|h| h.deadline_ms.is_some_and(|d| d == 0 || d > 3_600_000))
        {
            return Err(HostPolicyError::Range("hooks.*.deadline_ms"));
        }
        if self
            .hooks
            .values()
            .any(|h| h.cache_ttl_ms.is_some_and(|t| t > 86_400_000))
        {
            return Err(HostPolicyError::Range("hooks.*.cache_ttl_ms"));
        }
        for (hook, h) in &self.hooks {
            // Fee keys on another hook would be silently meaningless: refused as a likely typo.
            if hook != crate::sertone::PRE_REQUEST {
                for (key, set) in [
                    ("hooks.*.max_fee_usdc", h.max_fee_usdc.is_some()),
                    ("hooks.*.fee_destination", h.fee_destination.is_some()),
                ] {
                    if set {
                        return Err(HostPolicyError::OnlyFor {
                            key,
                            hook: crate::sertone::PRE_REQUEST,
                        });
                    }
                }
            }
            if h.max_fee_usdc
                .as_deref()
                .is_some_and(|f| crate::sertone::micro_usdc(f).is_none())
            {
                return Err(HostPolicyError::Range("hooks.*.max_fee_usdc"));
            }
            if h.fee_destination
                .as_deref()
                .is_some_and(|d| !crate::sertone::valid_address(d))
            {
                return Err(HostPolicyError::Range("hooks.*.fee_destination"));
            }
        }
        Ok(())
    }
}

/// Split a policy file into its sandbox and host halves, validating both.
pub fn split_policy(text: &str) -> Result<(ValidatedSandboxPolicy, HostPolicy), HostPolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(HostPolicyError::Sandbox(SandboxPolicyError::TooLarge {
            size: text.len(),
            max: MAX_POLICY_BYTES,
        }));
    }
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| HostPolicyError::Syntax(crate::TomlSyntax::new(text, &e)))?;
    let mut host = toml::Table::new();
    for k in ["capabilities", "protocol", "kv", "hooks"] {
        if let Some(v) = table.remove(k) {
            host.insert(k.into(), v);
        }
    }
    let hp: HostPolicy = host.try_into().map_err(HostPolicyError::Host)?;
    hp.validate()?;
    // Only re-serialise when something was taken out, so that sandbox errors keep the line
    // numbers of the operator's own text whenever possible.
    let sandbox_text = if hp == HostPolicy::default() && !text.contains("[hooks") {
        text.to_string()
    } else {
        toml::to_string(&table).unwrap_or_default()
    };
    let sb = parse_policy(&sandbox_text).map_err(HostPolicyError::Sandbox)?;
    Ok((sb, hp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_sections_from_the_sandbox_policy() {
        let text = r#"
version = 1
[capabilities]
allow = ["log"]
[protocol]
default_deadline_ms = 250
[hooks."on:flow.new"]
deadline_ms = 100
failure = "open"
default = { allow = true }
"#;
        let (_, hp) = split_policy(text).unwrap();
        assert_eq!(hp.capabilities.allow, Some([Capability::Log].into()));
        assert_eq!(hp.deadline_ms("on:flow.new", None), 100);
        assert_eq!(hp.deadline_ms("on:flow.new", Some(50)), 50);
        assert_eq!(hp.deadline_ms("on:flow.new", Some(5000)), 100);
        assert_eq!(hp.deadline_ms("other", None), 250);
        let h = &hp.hooks["on:flow.new"];
        assert_eq!(h.failure, Some(FailureMode::Open));
        assert_eq!(hp.failure("on:flow.new"), FailureMode::Open);
        assert_eq!(
            hp.fail_open_default("on:flow.new"),
            serde_json::json!({"allow": true})
        );
    }

    #[test]
    fn a_hook_section_without_failure_keeps_the_hooks_default_mode() {
        // Raising a Sertone hook's deadline must not also make it fail closed (seed 003:
        // plugin failure never blocks traffic), and other hooks stay deny-by-default.
        let (_, hp) = split_policy(
            "version = 1\n[hooks.\"on:sertone.pre_request\"]\ndeadline_ms = 1200\n\
             [hooks.\"on:flow.new\"]\ndeadline_ms = 1200\n",
        )
        .unwrap();
        assert_eq!(hp.failure(crate::sertone::PRE_REQUEST), FailureMode::Open);
        assert_eq!(hp.failure(crate::sertone::POST_RESPONSE), FailureMode::Open);
        assert_eq!(hp.failure("on:flow.new"), FailureMode::Closed);
        assert_eq!(hp.failure("on:other"), FailureMode::Closed);
        let (_, hp) =
            split_policy("version = 1\n[hooks.\"on:sertone.pre_request\"]\nfailure = \"closed\"\n")
                .unwrap();
        assert_eq!(hp.failure(crate::sertone::PRE_REQUEST), FailureMode::Closed);
    }

    #[test]
    fn a_sertone_hook_fails_open_with_what_the_front_makes_of_a_bypass() {
        use crate::sertone::{POST_RESPONSE, PRE_REQUEST};
        let none = HostPolicy::default();
        assert_eq!(
            none.fail_open_default(PRE_REQUEST),
            serde_json::json!({"allow": true})
        );
        assert_eq!(
            none.fail_open_default(POST_RESPONSE),
            serde_json::json!({"quality_signal": 0})
        );
        assert_eq!(
            none.fail_open_default("on:flow.new"),
            serde_json::Value::Null
        );
        // The operator's `default` wins; a section without one keeps the hook's own.
        let (_, hp) = split_policy(
            "version = 1\n[hooks.\"on:sertone.pre_request\"]\ndefault = { allow = false }\n\
             [hooks.\"on:sertone.post_response\"]\ndeadline_ms = 900\n",
        )
        .unwrap();
        assert_eq!(
            hp.fail_open_default(PRE_REQUEST),
            serde_json::json!({"allow": false})
        );
        assert_eq!(
            hp.fail_open_default(POST_RESPONSE),
            serde_json::json!({"quality_signal": 0})
        );
    }

    #[test]
    fn fee_keys_are_checked_and_only_for_the_pre_request_hook() {
        let pre = "[hooks.\"on:sertone.pre_request\"]";
        let dest = format!("0x{}", "a".repeat(40));
        let ok =
            format!("version = 1\n{pre}\nmax_fee_usdc = \"0.001\"\nfee_destination = \"{dest}\"\n");
        let (_, hp) = split_policy(&ok).unwrap();
        let r = crate::sertone::Rules::of(&hp, crate::sertone::PRE_REQUEST);
        assert_eq!(r.max_fee, Some(1000));
        assert_eq!(r.fee_destination, Some(dest.clone()));
        assert!(!r.closed);
        for (text, key) in [
            (
                format!("{pre}\nmax_fee_usdc = \"0.0000001\""),
                "hooks.*.max_fee_usdc",
            ),
            (
                format!("{pre}\nmax_fee_usdc = \"-1\""),
                "hooks.*.max_fee_usdc",
            ),
            (
                format!("{pre}\nfee_destination = \"0xnothex\""),
                "hooks.*.fee_destination",
            ),
        ] {
            match split_policy(&format!("version = 1\n{text}\n")) {
                Err(HostPolicyError::Range(k)) => assert_eq!(k, key),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            split_policy(
                "version = 1\n[hooks.\"on:sertone.post_response\"]\nmax_fee_usdc = \"1\"\n"
            ),
            Err(HostPolicyError::OnlyFor {
                key: "hooks.*.max_fee_usdc",
                ..
            })
        ));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(matches!(
            split_policy("version = 1\n[capabilities]\nallow = [\"fly\"]\n"),
            Err(HostPolicyError::Host(_))
        ));
        assert!(matches!(
            split_policy("version = 1\n[protocol]\nbogus = 1\n"),
            Err(HostPolicyError::Host(_))
        ));
        assert!(matches!(
            split_policy("version = 1\n[protocol]\nmax_frame_bytes = 1\n"),
            Err(HostPolicyError::Range(_))
        ));
        assert!(matches!(
            split_policy("version = 1\n[sandboxx]\n"),
            Err(HostPolicyError::Sandbox(_))
        ));
    }
}
