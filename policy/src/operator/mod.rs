//! The operator policy: `/etc/stockade/policy.toml` plus `policy.d/*.toml` drop-ins, merged with
//! provenance, resolved per plugin, and intersected with what the developer certificate and the
//! manifest allow.
//!
//! ## Layers ([`layers`])
//! systemd's rules, so that packagers and operators need learn nothing new: the main file and
//! every drop-in name are looked up in `/etc` over `/run` over `/usr/lib` (the same name in a
//! higher directory replaces the lower one whole; a file that is a symlink to `/dev/null` masks
//! its namesake), drop-ins are applied after the main file sorted by file name, and a later layer
//! wins key by key. Reading directories is the runtime's job; this module takes `(path, text)`
//! pairs in application order ([`layers::select`] computes that order from a listing).
//!
//! ## Format
//! One TOML document per file ([`PolicyDocument`], `deny_unknown_fields`, `version = 1` in every
//! file): the sandbox sections of [`crate::sandbox`] (`[filesystem]`, `[network]`,
//! `[resources]`, `[seccomp]`, `[layers]`, `[identity]`), the host sections of
//! [`crate::protocol::host`] (`[capabilities]`, `[protocol]`, `[kv]`, `[hooks."<hook>"]`), and
//! `[trust]`, `[risk]`, `[audit]`; then per-plugin overrides `[plugin."<name>".<section>]` and
//! per-signer overrides `[signer."<key id>".<section>]` (signer first, then plugin name: the more
//! specific wins, wider or not: `policy lint` reports a plugin key wider than its signer's,
//! [`MergedPolicy::plugin_over_signer`]). Lists are leaves: a later layer replaces a list, it does not append to it.
//! A section name no plugin or signer can have (`[plugin."Hello"]`: not a manifest name;
//! `[signer."ee91afadf064d0f4"]`: not the uppercase form the runtime compares) makes the file
//! invalid, because its restrictions would otherwise silently never apply ([`check_signer_id`],
//! [`crate::manifest::valid_name`]); so does a `[hooks."<hook>"]` section whose name no
//! manifest can declare ([`crate::manifest::valid_hook`]).
//!
//! ## Provenance
//! Every leaf remembers the file and line that set it ([`Origin`]); a value no file sets is
//! [`Origin::Default`]. Validation errors name that file and line, and `policy explain` prints it
//! next to every decision.

pub mod effective;
pub mod explain;
pub mod layers;
pub mod lint;
pub mod risk;
pub mod schema;

use crate::capability::Capability;
use crate::protocol::host::{CapabilityPolicy, HookPolicy, KvQuota, ProtocolLimits};
use crate::sandbox::{
    FilesystemSection, IdentitySection, LayersSection, NetworkSection, ResourcesSection,
    SeccompSection,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use layers::{merge, MergedPolicy, PolicyLayer, ResolvedPolicy};
pub use risk::RiskClass;

/// Who decided a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The built-in default (no file sets it).
    Default,
    /// A policy file, at this 1-based line (when it can be located).
    File {
        /// The file's path as handed to [`merge`].
        path: String,
        /// The line of the key.
        line: Option<usize>,
    },
    /// The developer certificate (its scope's ceiling).
    Certificate {
        /// The certificate's scope.
        scope: String,
    },
    /// A manifest field.
    Manifest {
        /// The field, e.g. `requested_capabilities`.
        field: String,
    },
    /// A signed authorization grant (or its absence).
    Grant {
        /// The grant target, e.g. `network:loopback`.
        target: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag.
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(l),
            } => write!(f, "{path}:{l}"),
            Origin::File { path, line: None } => f.write_str(path),
            Origin::Certificate { scope } => write!(f, "certificate (scope {scope})"),
            Origin::Manifest { field } => write!(f, "manifest {field}"),
            Origin::Grant { target } => write!(f, "grant {target}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// Trust modes (seed 002), ordered from strictest to loosest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrustModeName {
    /// Refuse anything that does not verify.
    Strict,
    /// Load, but report.
    Warn,
    /// Skip signature checks.
    Disabled,
}

impl TrustModeName {
    /// The name in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustModeName::Strict => "strict",
            TrustModeName::Warn => "warn",
            TrustModeName::Disabled => "disabled",
        }
    }
}

/// `[trust]`: where trust comes from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// Trust mode. Default "strict". `run` and `verify` use the stricter of this and
    /// `--trust-mode`.
    pub mode: Option<TrustModeName>,
    /// Directory of pinned root keys (`*.pub`). Default `/etc/stockade/trust`.
    pub roots: Option<String>,
    /// Revocation list file, used instead of `<trust dir>/revocations.json` (unreadable: the
    /// command stops). Default: the trust directory's.
    pub revocation: Option<String>,
    /// Refuse to verify without a revocation list (the revocation step fails instead of being
    /// `skipped`). Default false: a node that never had a list verifies without one, but once
    /// a list was seen its disappearance always fails (rollback by deletion).
    pub require_revocation: Option<bool>,
    /// Directory of signed authorization grants (`*.grant`). Default `/etc/stockade/grants`.
    pub grants: Option<String>,
    /// Operator public keys (minisign `.pub` files) whose grants are accepted. Default none: no
    /// grant is accepted, so nothing high-risk is granted.
    pub operator_keys: Option<Vec<String>>,
    /// How many verified package trees `stockade run` keeps under `<state-dir>/trees`, most
    /// recently used first, so that a package it ran before is checked file by file against
    /// its signed map instead of extracted again. Default 8; 0 keeps none.
    pub keep_trees: Option<u32>,
    /// Largest total size, in MiB, of the files of the trees `stockade run` keeps; the least
    /// recently used beyond it are removed, and a tree larger than all of it is not kept.
    /// Default 1024; 0 keeps none.
    pub keep_trees_max_mib: Option<u32>,
}

/// `trust.keep_trees` when unset.
pub const DEFAULT_KEEP_TREES: u32 = 8;

/// `trust.keep_trees_max_mib` when unset.
pub const DEFAULT_KEEP_TREES_MAX_MIB: u32 = 1024;

/// `[audit]`: where audit records go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Append records to this file (hash-chained, fsynced, locked). Default none. Rotated only
    /// by `stockade audit rotate`, which keeps the chain across files (logrotate's rename or
    /// copytruncate leaves a log shorter than its head, which writers refuse to extend).
    pub file: Option<String>,
    /// The system log: each record as one journal entry through the native journal socket
    /// (`/run/systemd/journal/socket`) when it exists, else one `stockade-audit: {json}` line on
    /// stderr — never on a stream that carries a command's machine-readable output (`exec
    /// --json`'s report). Default false.
    pub stderr: Option<bool>,
    /// Each record as one journal entry through the native journal socket, which must exist (a
    /// record that cannot be sent stops the command, as for `file`). Default false.
    pub journal: Option<bool>,
    /// Rotate `file` (as `stockade audit rotate` does, the chain kept across files) when an
    /// append leaves it at least this big: bytes, or a number with `K`, `M` or `G` (powers of
    /// 1024), e.g. `"64M"`. Default none (the packages' timer, or `stockade audit rotate`).
    pub rotate_size: Option<String>,
    /// How many rotated files of `file` a rotation keeps (at least 1): older ones are removed,
    /// oldest first, and the new log's rotation record names them (`detail.removed`). Default:
    /// every rotated file is kept.
    pub keep: Option<u32>,
}

impl AuditSection {
    /// Whether `other` sets up the same sinks and rotation as this one, each value compared as
    /// it applies rather than as written: a size parsed (`rotate_size = "1K"` is `"1024"`), a
    /// sink flag unset as `false`. `serve` keeps the sinks read at start and says at a SIGHUP
    /// whether the reloaded policy changes them (`detail.not_applied`); compared as written,
    /// a reload that rewrote a size or spelled out a default was said to change them (review-146).
    pub fn same_in_effect(&self, other: &AuditSection) -> bool {
        let size = |s: &Option<String>| s.as_deref().map(parse_size);
        self.file == other.file
            && self.stderr.unwrap_or(false) == other.stderr.unwrap_or(false)
            && self.journal.unwrap_or(false) == other.journal.unwrap_or(false)
            && size(&self.rotate_size) == size(&other.rotate_size)
            && self.keep == other.keep
    }
}

/// A size as `[audit] rotate_size` and `stockade audit rotate --min-size` take it: bytes, or a
/// number with a `K`, `M` or `G` suffix (powers of 1024, either case). `None`: not a size, or one
/// past `u64` ([`try_parse_size`] says which).
pub fn parse_size(s: &str) -> Option<u64> {
    try_parse_size(s).ok()
}

/// [`parse_size`], saying why a value is refused: not a size, or a size past `u64`.
pub fn try_parse_size(s: &str) -> Result<u64, SizeError> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::NotASize(s.to_string()));
    }
    let too_large = || SizeError::TooLarge(s.to_string());
    digits
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(1u64 << shift)
        .ok_or_else(too_large)
}

/// Why [`try_parse_size`] refused a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Not digits with an optional K, M or G.
    #[error("`{0}` is not a size (bytes, or a number with K, M or G)")]
    NotASize(String),
    /// More bytes than 64 bits hold.
    #[error("`{0}` is too large: a size is at most {max} bytes ({g}G)", max = u64::MAX, g = u64::MAX >> 30)]
    TooLarge(String),
}

/// Why an `[audit]` rotation value is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditValueError {
    /// `rotate_size` is not a size, or is 0.
    #[error("`{0}` is not a size above 0 (bytes, or a number with K, M or G)")]
    Size(String),
    /// `rotate_size` is a size past the largest one.
    #[error(transparent)]
    SizeTooLarge(SizeError),
    /// `keep = 0` would remove each rotated file at once.
    #[error("keep must be at least 1 (0 would remove every rotated file as it is made)")]
    KeepZero,
}

/// The sections a `[plugin."<name>"]` or `[signer."<key id>"]` table may override.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginOverride {
    /// See [`crate::sandbox::FilesystemSection`].
    pub filesystem: Option<FilesystemSection>,
    /// See [`crate::sandbox::NetworkSection`].
    pub network: Option<NetworkSection>,
    /// See [`crate::sandbox::ResourcesSection`].
    pub resources: Option<ResourcesSection>,
    /// See [`crate::sandbox::SeccompSection`].
    pub seccomp: Option<SeccompSection>,
    /// See [`crate::sandbox::LayersSection`].
    pub layers: Option<LayersSection>,
    /// See [`crate::protocol::host::CapabilityPolicy`].
    pub capabilities: Option<CapabilityPolicy>,
    /// See [`crate::protocol::host::KvQuota`].
    pub kv: Option<KvQuota>,
    /// See [`crate::protocol::host::HookPolicy`].
    pub hooks: Option<BTreeMap<String, HookPolicy>>,
    /// Risk class overrides.
    pub risk: Option<BTreeMap<String, RiskClass>>,
}

/// One policy file as written. Only used to check shape (with the TOML parser's line numbers);
/// merging works on the raw tables so that "set" and "defaulted" stay distinguishable.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Format version; must be 1 in every file.
    pub version: u32,
    /// Sandbox: filesystem view.
    pub filesystem: Option<FilesystemSection>,
    /// Sandbox: network namespace.
    pub network: Option<NetworkSection>,
    /// Sandbox: cgroup limits and rlimits.
    pub resources: Option<ResourcesSection>,
    /// Sandbox: seccomp groups.
    pub seccomp: Option<SeccompSection>,
    /// Sandbox: required layers and tolerated degradations.
    pub layers: Option<LayersSection>,
    /// Sandbox: uids and hostname.
    pub identity: Option<IdentitySection>,
    /// Host: capabilities the operator allows.
    pub capabilities: Option<CapabilityPolicy>,
    /// Host: protocol limits.
    pub protocol: Option<ProtocolLimits>,
    /// Host: key/value quotas.
    pub kv: Option<KvQuota>,
    /// Host: per-hook deadline and failure mode.
    pub hooks: Option<BTreeMap<String, HookPolicy>>,
    /// Trust configuration.
    pub trust: Option<TrustSection>,
    /// Risk class overrides: `<capability> | network | writable = "low" | "medium" | "high"`.
    pub risk: Option<BTreeMap<String, RiskClass>>,
    /// Audit sinks.
    pub audit: Option<AuditSection>,
    /// Per-plugin overrides by plugin name (a manifest name, `[a-z0-9][a-z0-9._-]{0,63}`; any
    /// other name is refused, since no plugin could ever match it).
    pub plugin: Option<BTreeMap<String, PluginOverride>>,
    /// Per-plugin overrides by signer key id: 16 uppercase hex digits, exactly as `stockade
    /// inspect` prints it (any other spelling is refused, since no signer could ever match it).
    pub signer: Option<BTreeMap<String, PluginOverride>>,
}

/// Why an operator policy is invalid. Every variant names the file (and line when known).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorPolicyError {
    /// A file is larger than [`crate::sandbox::MAX_POLICY_BYTES`].
    #[error("{path}: {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not TOML or not the format's shape: `FILE:LINE:COLUMN: ` and the parser's message, on
    /// one line.
    #[error("{syntax}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's error, said of the file (with line and column).
        syntax: crate::TomlSyntax,
    },
    /// `version` missing or not 1.
    #[error("{at}: policy version {found} is not supported (this build reads version 1)")]
    Version {
        /// file:line.
        at: Origin,
        /// The version found.
        found: i64,
    },
    /// A `[plugin."<name>"]` or `[signer."<key id>"]` section whose name no plugin or signer can
    /// have: left alone, its settings would silently never apply.
    #[error("{at}: [{kind}.{name:?}] can match no {kind}, so its settings would never apply")]
    SectionName {
        /// `plugin` or `signer`.
        kind: &'static str,
        /// The name as written.
        name: String,
        /// The file and the line where the section starts.
        at: Origin,
        /// Why no plugin or signer has that name.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A `[hooks."<hook>"]` section (at top level or under a plugin or signer) whose name no
    /// manifest can declare (`sertone.pre_request` without `on:`, a `-` for `_`, capitals):
    /// left alone, its `failure = "closed"` or deadline would silently never apply, while
    /// `policy explain` listed it as if it did.
    #[error(
        "{at}: [{section}] names no hook a plugin can declare, so its settings would never apply"
    )]
    HookName {
        /// The section's dotted name, e.g. `hooks."sertone.pre_request"`.
        section: String,
        /// The file and the line where the section starts.
        at: Origin,
        /// Why no plugin can declare that hook.
        #[source]
        cause: crate::manifest::ManifestError,
    },
    /// A value is out of range or malformed; `at` is the file:line that set it.
    #[error("{at}: invalid value for `{key}`")]
    Value {
        /// The dotted key.
        key: String,
        /// Where it was set.
        at: Origin,
        /// What is wrong.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a string is not a signer key id as the runtime compares them.
///
/// The runtime looks `[signer."<key id>"]` up by the exact text of the developer key's id, which
/// it prints (as `minisign` does) as 16 uppercase hex digits; so any other spelling can never
/// match. A lowercase id is refused rather than folded: one spelling means the id an operator
/// reads in `stockade inspect`, `policy explain` and the audit log is the one in the file, and
/// `grep` finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerIdError {
    /// Right digits, wrong case.
    #[error("signer key ids are uppercase, as `stockade inspect` prints them: write `{upper}`")]
    Case {
        /// The id as it must be written.
        upper: String,
    },
    /// Not 16 hex digits at all (wrong length, spaces, other characters).
    #[error(
        "`{0}` is not a signer key id: 16 uppercase hex digits, as `stockade inspect` prints it"
    )]
    Syntax(String),
}

/// Check that `id` is a signer key id as `stockade inspect` prints it: exactly 16 characters of
/// `0-9A-F`.
pub fn check_signer_id(id: &str) -> Result<(), SignerIdError> {
    let hex16 = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex16 {
        return Err(SignerIdError::Syntax(id.to_string()));
    }
    if id.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(SignerIdError::Case {
            upper: id.to_ascii_uppercase(),
        });
    }
    Ok(())
}

/// A validated capability name or risk item.
pub fn risk_item_known(item: &str) -> bool {
    item == "network" || item == "writable" || item.parse::<Capability>().is_ok()
}

#[cfg(test)]
mod tests;
