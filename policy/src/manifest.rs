//! The plugin manifest (`manifest.json`, seed 000): parse, validate, hand over a validated type.
//!
//! [`Manifest`] is the wire shape (`deny_unknown_fields`, so a typo is an error rather than a
//! silently ignored field). [`Manifest::validate`] checks every rule and returns a
//! [`ValidatedManifest`]; only that type is accepted by the packer and the launcher, so there is
//! no path where an unchecked manifest reaches a decision.
//!
//! Compatibility: seed 000 calls the runtime bound `min_agent_version`; we accept it as an alias
//! of `min_runtime_version`. `api` (the protocol version) is ours and defaults to 1.

use crate::capability::Capability;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Largest `manifest.json` we parse. A manifest is a few hundred bytes; the cap bounds the work an
/// attacker can make us do before anything is verified.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// The only protocol version this runtime speaks.
pub const SUPPORTED_API: u32 = 1;

fn default_entrypoint() -> String {
    "entrypoint".to_string()
}
fn default_api() -> u32 {
    1
}

/// A dependency on another plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The other plugin's name.
    pub name: String,
    /// A semver requirement, e.g. `^1.2`.
    pub version: String,
}

/// `http` (seed 003): the plugin is a small HTTP service instead of a stdio speaker.
///
/// The runtime starts `interpreter entrypoint` (or the entrypoint itself) inside the sandbox with
/// `PORT` set, waits for `GET /sertone/info` on `127.0.0.1:port` of the plugin's own network
/// namespace, and maps the hooks `on:sertone.pre_request` / `on:sertone.post_response` onto
/// `POST /sertone/pre-request` / `POST /sertone/post-response` (docs/http-plugins.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTransport {
    /// The TCP port the plugin listens on inside its sandbox (each plugin has its own network
    /// namespace, so two plugins may both use the seed's default 4001).
    pub port: u16,
    /// An absolute host path run with the entrypoint as its argument (`/usr/bin/node`), for
    /// plugins that are scripts without a `#!` line. Without it the entrypoint is executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Environment for the plugin (the seed's examples are configured this way: `MAX_REQUESTS`,
    /// `LOG_DIR`, ...). `PORT` is set from `port` and may not be given here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The hooks an `http` plugin may declare, with the path each maps to.
pub const HTTP_HOOKS: &[(&str, &str)] = &[
    ("on:sertone.pre_request", "/sertone/pre-request"),
    ("on:sertone.post_response", "/sertone/post-response"),
];

/// Most `http.env` entries.
pub const MAX_HTTP_ENV: usize = 64;

fn valid_env_name(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

impl HttpTransport {
    fn check(&self, hooks: &BTreeSet<&str>) -> Result<(), &'static str> {
        // The plugin runs as an unprivileged uid without capabilities in its own network
        // namespace, where `ip_unprivileged_port_start` is the kernel's 1024: a lower port can
        // never be bound, and the plugin would only crash-loop at every launch.
        if self.port < 1024 {
            return Err("port must be 1024-65535 (the plugin cannot bind a privileged port)");
        }
        if let Some(i) = &self.interpreter {
            let rel = i.strip_prefix('/').unwrap_or("");
            if !valid_relative_path(rel) || i.contains(char::is_whitespace) {
                return Err("interpreter must be a normalized absolute path");
            }
        }
        if self.env.len() > MAX_HTTP_ENV {
            return Err("env has more than 64 entries");
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) {
                return Err("env names must match [A-Z_][A-Z0-9_]*");
            }
            if k == "PORT" || k.starts_with("STOCKADE_") {
                return Err("env may not set PORT (it comes from `port`) or STOCKADE_*");
            }
            if v.len() > 4096 || v.contains('\0') {
                return Err("env values must be at most 4096 bytes without NUL");
            }
        }
        if hooks
            .iter()
            .any(|h| !HTTP_HOOKS.iter().any(|(n, _)| n == h))
        {
            return Err("an http plugin may only declare on:sertone.pre_request and on:sertone.post_response");
        }
        Ok(())
    }
}

/// `manifest.json` as written by the plugin author, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name: `[a-z0-9][a-z0-9._-]{0,63}`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Oldest runtime version able to run the plugin (semver).
    #[serde(default, alias = "min_agent_version")]
    pub min_runtime_version: Option<String>,
    /// Executable path relative to the package root.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Host functions the plugin asks for.
    #[serde(default)]
    pub requested_capabilities: Vec<Capability>,
    /// Hook points, e.g. `on:flow.new`.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Other plugins this one needs.
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// Curation tier (seed 004), e.g. `A`, `B`, `C`: set by the index curator, and a package
    /// installed from an index must declare the same tier as its index entry. 1–16 characters of
    /// `[A-Za-z0-9]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Protocol version spoken on stdin/stdout.
    #[serde(default = "default_api")]
    pub api: u32,
    /// Set for an HTTP plugin (seed 003); absent for a stdio plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTransport>,
}

/// Why a manifest was rejected. Each variant names the field so the author knows what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON, wrong types, or unknown fields.
    #[error("manifest is not valid JSON of the expected shape")]
    Parse(#[source] serde_json::Error),
    /// Name outside the allowed charset.
    #[error("name `{0}` must match [a-z0-9][a-z0-9._-]{{0,63}}")]
    Name(String),
    /// A field that must be semver is not.
    #[error("{field} `{value}` is not a semantic version")]
    Version {
        /// Which field.
        field: &'static str,
        /// The offending value.
        value: String,
        /// The parser's complaint.
        #[source]
        source: semver::Error,
    },
    /// The runtime is older than the plugin requires.
    #[error("plugin requires runtime {required} or newer")]
    RuntimeTooOld {
        /// What the manifest asks for.
        required: String,
    },
    /// Entrypoint is absolute, contains `..`/`.`/empty components or odd characters.
    #[error("entrypoint `{0}` must be a normalized relative path inside the package")]
    Entrypoint(String),
    /// Malformed hook name.
    #[error("hook `{0}` must be `on:` followed by dot-separated lowercase segments")]
    Hook(String),
    /// The same hook twice.
    #[error("hook `{0}` is declared twice")]
    DuplicateHook(String),
    /// The same capability twice.
    #[error("capability `{0}` is requested twice")]
    DuplicateCapability(Capability),
    /// Hooks declared without `register_hook`.
    #[error("hooks are declared but `register_hook` is not requested")]
    HooksWithoutRegister,
    /// Malformed dependency.
    #[error("dependency `{name}` is invalid: {reason}")]
    Dependency {
        /// The dependency's name as written.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A protocol version this runtime does not speak.
    #[error("api version {0} is not supported (this runtime speaks {SUPPORTED_API})")]
    Api(u32),
    /// A tier that is not 1–16 characters of `[A-Za-z0-9]`.
    #[error("tier `{0}` must be 1-16 characters of [A-Za-z0-9]")]
    Tier(String),
    /// An invalid `http` section.
    #[error("http: {0}")]
    Http(&'static str),
    /// Author/description unreasonably long.
    #[error("field `{0}` is longer than 1024 characters")]
    FieldTooLong(&'static str),
}

/// A manifest that passed every check. Fields are read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatedManifest {
    inner: Manifest,
    version: semver::Version,
    capabilities: BTreeSet<Capability>,
}

impl ValidatedManifest {
    /// The manifest as written.
    pub fn manifest(&self) -> &Manifest {
        &self.inner
    }
    /// Plugin name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// Parsed version.
    pub fn version(&self) -> &semver::Version {
        &self.version
    }
    /// Entrypoint path relative to the package root.
    pub fn entrypoint(&self) -> &str {
        &self.inner.entrypoint
    }
    /// Requested capabilities as a set.
    pub fn requested_capabilities(&self) -> &BTreeSet<Capability> {
        &self.capabilities
    }
    /// The HTTP transport, for an HTTP plugin.
    pub fn http(&self) -> Option<&HttpTransport> {
        self.inner.http.as_ref()
    }
    /// `NAME-VERSION.stockade`, the conventional package file name.
    pub fn package_file_name(&self) -> String {
        format!("{}-{}.stockade", self.inner.name, self.version)
    }
    /// This plugin as a node of the dependency graph ([`crate::deps`]). `validate` checked
    /// every requirement, so none is dropped here.
    pub fn dep_node(&self) -> crate::deps::DepNode {
        crate::deps::DepNode::new(
            self.inner.name.clone(),
            self.version.clone(),
            self.inner.dependencies.iter().filter_map(|d| {
                let req = semver::VersionReq::parse(&d.version).ok()?;
                Some((d.name.clone(), req))
            }),
        )
    }
}

/// Whether `name` matches `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Whether `p` is a normalized relative path: non-empty `/`-separated components, none empty,
/// `.` or `..`, no NUL or backslash, at most 255 bytes. Shared with the package file map.
pub fn valid_relative_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 255
        && !p.starts_with('/')
        && !p.contains(['\0', '\\'])
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= 255)
}

/// Whether `h` is a hook name a manifest may declare: `on:` followed by dot-separated segments
/// of `[a-z][a-z0-9_]*`, at most 128 characters after `on:`. The operator policy holds its
/// `[hooks."<hook>"]` sections to the same rule, since a section under another name could never
/// apply.
pub fn valid_hook(h: &str) -> bool {
    let Some(rest) = h.strip_prefix("on:") else {
        return false;
    };
    rest.len() <= 128
        && rest.split('.').all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        })
}

impl Manifest {
    /// Parse `manifest.json` bytes (size-capped). Does not validate; call [`Manifest::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(ManifestError::Parse)
    }

    /// Parse from an already-parsed JSON value (the copy inside a signed statement).
    pub fn from_value(v: serde_json::Value) -> Result<Manifest, ManifestError> {
        serde_json::from_value(v).map_err(ManifestError::Parse)
    }

    /// The refusal of a manifest this build could not parse ([`Manifest::from_value`] failed
    /// with `err`) that asks for a newer runtime than `runtime_version`: its
    /// `min_runtime_version` (or `min_agent_version`) is a semantic version above it, and what
    /// failed is something this build does not know — a field (`unknown field`), or a value of
    /// a closed set such as a capability (`unknown variant`). A manifest for a newer Stockade
    /// may carry those; "not valid JSON of the expected shape" would send the operator to its
    /// author, where the way out is to upgrade. `None` otherwise: a known field of the wrong
    /// type or value (`"version": 1`), or one missing, is the author's mistake whatever
    /// runtime it asks for, and its parse error stands (review-130: it was "requires runtime
    /// X" too).
    pub fn for_newer_runtime(
        v: &serde_json::Value,
        err: &ManifestError,
        runtime_version: &semver::Version,
    ) -> Option<ManifestError> {
        let ManifestError::Parse(e) = err else {
            return None;
        };
        // serde's own words for these two (`de::Error::unknown_field`/`unknown_variant`); a
        // type error says `invalid type`/`invalid value`/`missing field`.
        let what = e.to_string();
        if !(what.starts_with("unknown field") || what.starts_with("unknown variant")) {
            return None;
        }
        let min = v
            .get("min_runtime_version")
            .or_else(|| v.get("min_agent_version"))?
            .as_str()?;
        let min_v = semver::Version::parse(min).ok()?;
        (&min_v > runtime_version).then(|| ManifestError::RuntimeTooOld {
            required: min.to_string(),
        })
    }

    /// Check every rule. `runtime_version` is this runtime's version, compared with
    /// `min_runtime_version`.
    pub fn validate(
        self,
        runtime_version: &semver::Version,
    ) -> Result<ValidatedManifest, ManifestError> {
        if !valid_name(&self.name) {
            return Err(ManifestError::Name(self.name));
        }
        let version =
            semver::Version::parse(&self.version).map_err(|source| ManifestError::Version {
                field: "version",
                value: self.version.clone(),
                source,
            })?;
        if let Some(min) = &self.min_runtime_version {
            let min_v = semver::Version::parse(min).map_err(|source| ManifestError::Version {
                field: "min_runtime_version",
                value: min.clone(),
                source,
            })?;
            if &min_v > runtime_version {
                return Err(ManifestError::RuntimeTooOld {
                    required: min.clone(),
                });
            }
        }
        if self.author.chars().count() > 1024 {
            return Err(ManifestError::FieldTooLong("author"));
        }
        if self.description.chars().count() > 1024 {
            return Err(ManifestError::FieldTooLong("description"));
        }
        if !valid_relative_path(&self.entrypoint) {
            return Err(ManifestError::Entrypoint(self.entrypoint));
        }
        let mut capabilities = BTreeSet::new();
        for c in &self.requested_capabilities {
            if !capabilities.insert(*c) {
                return Err(ManifestError::DuplicateCapability(*c));
            }
        }
        let mut hooks = BTreeSet::new();
        for h in &self.hooks {
            if !valid_hook(h) {
                return Err(ManifestError::Hook(h.clone()));
            }
            if !hooks.insert(h.as_str()) {
                return Err(ManifestError::DuplicateHook(h.clone()));
            }
        }
        if !hooks.is_empty() && !capabilities.contains(&Capability::RegisterHook) {
            return Err(ManifestError::HooksWithoutRegister);
        }
        let mut dep_names = BTreeSet::new();
        for d in &self.dependencies {
            let bad = |reason| ManifestError::Dependency {
                name: d.name.clone(),
                reason,
            };
            if !valid_name(&d.name) {
                return Err(bad("name must match [a-z0-9][a-z0-9._-]{0,63}"));
            }
            if d.name == self.name {
                return Err(bad("a plugin cannot depend on itself"));
            }
            if semver::VersionReq::parse(&d.version).is_err() {
                return Err(bad("version is not a semver requirement"));
            }
            if !dep_names.insert(d.name.as_str()) {
                return Err(bad("listed twice"));
            }
        }
        if self.api != SUPPORTED_API {
            return Err(ManifestError::Api(self.api));
        }
        if let Some(t) = &self.tier {
            if t.is_empty() || t.len() > 16 || !t.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ManifestError::Tier(t.clone()));
            }
        }
        if let Some(h) = &self.http {
            h.check(&hooks).map_err(ManifestError::Http)?;
        }
        Ok(ValidatedManifest {
            inner: self,
            version,
            capabilities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> semver::Version {
        semver::Version::new(0, 1, 0)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "my-plugin", "version": "1.0.0", "author": "Acme", "description": "d",
            "min_agent_version": "0.1.0", "entrypoint": "entrypoint",
            "requested_capabilities": ["log", "emit_event", "register_hook"],
            "hooks": ["on:flow.new"], "dependencies": []
        })
    }

    fn check(v: serde_json::Value) -> Result<ValidatedManifest, ManifestError> {
        Manifest::parse(&serde_json::to_vec(&v).unwrap())?.validate(&rt())
    }

    #[test]
    fn http_plugins_declare_a_port_an_interpreter_and_only_sertone_hooks() {
        let http = |h: serde_json::Value, hooks: serde_json::Value| {
            let mut v = base();
            v["http"] = h;
            v["hooks"] = hooks;
            Manifest::from_value(v).and_then(|m| m.validate(&rt()))
        };
        let sertone = serde_json::json!(["on:sertone.pre_request", "on:sertone.post_response"]);
        let m = http(
            serde_json::json!({"port": 4001, "interpreter": "/usr/bin/node", "env": {"MAX_REQUESTS": "3"}}),
            sertone.clone(),
        )
        .unwrap();
        assert_eq!(m.http().unwrap().port, 4001);
        // Serialized back without the section when absent (the signed statement is unchanged).
        let plain = Manifest::from_value(base()).unwrap();
        assert!(serde_json::to_value(&plain).unwrap().get("http").is_none());
        for (h, hooks, why) in [
            (serde_json::json!({"port": 0}), sertone.clone(), "port"),
            (
                serde_json::json!({"port": 1023}),
                sertone.clone(),
                "1024-65535",
            ),
            (
                serde_json::json!({"port": 4001, "interpreter": "node"}),
                sertone.clone(),
                "absolute",
            ),
            (
                serde_json::json!({"port": 4001, "interpreter": "/usr/../bin/sh"}),
                sertone.clone(),
                "absolute",
            ),
            (
                serde_json::json!({"port": 4001, "env": {"PORT": "1"}}),
                sertone.clone(),
                "PORT",
            ),
            (
                serde_json::json!({"port": 4001, "env": {"lower": "1"}}),
                sertone.clone(),
                "names",
            ),
            (
                serde_json::json!({"port": 4001, "env": {"STOCKADE_X": "1"}}),
                sertone.clone(),
                "STOCKADE_",
            ),
            (
                serde_json::json!({"port": 4001}),
                serde_json::json!(["on:flow.new"]),
                "only declare",
            ),
        ] {
            let e = http(h.clone(), hooks).unwrap_err().to_string();
            assert!(e.contains(why), "{h}: {e}");
        }
        assert!(http(serde_json::json!({"port": 4001, "extra": 1}), sertone).is_err());
    }

    #[test]
    fn seed_example_is_valid() {
        let m = check(base()).unwrap();
        assert_eq!(m.name(), "my-plugin");
        assert_eq!(m.manifest().api, 1);
        assert_eq!(m.package_file_name(), "my-plugin-1.0.0.stockade");
    }

    #[test]
    fn entrypoint_defaults() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("entrypoint");
        assert_eq!(check(v).unwrap().entrypoint(), "entrypoint");
    }

    fn with(key: &str, val: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        v[key] = val;
        v
    }

    #[test]
    fn rejections() {
        use serde_json::json;
        assert!(matches!(
            check(with("name", json!("My"))),
            Err(ManifestError::Name(_))
        ));
        assert!(matches!(
            check(with("name", json!("-a"))),
            Err(ManifestError::Name(_))
        ));
        assert!(matches!(
            check(with("version", json!("1.0"))),
            Err(ManifestError::Version { .. })
        ));
        assert!(matches!(
            check(with("min_agent_version", json!("9.0.0"))),
            Err(ManifestError::RuntimeTooOld { .. })
        ));
        for e in ["../x", "/bin/sh", "a/./b", "a//b", ""] {
            assert!(
                matches!(
                    check(with("entrypoint", json!(e))),
                    Err(ManifestError::Entrypoint(_))
                ),
                "{e}"
            );
        }
        for h in ["flow.new", "on:", "on:Flow", "on:a..b", "on:a.b-c"] {
            assert!(
                matches!(
                    check(with("hooks", json!([h]))),
                    Err(ManifestError::Hook(_))
                ),
                "{h}"
            );
        }
        assert!(matches!(
            check(with("hooks", json!(["on:a", "on:a"]))),
            Err(ManifestError::DuplicateHook(_))
        ));
        assert!(matches!(
            check(with(
                "requested_capabilities",
                json!(["log", "log", "register_hook"])
            )),
            Err(ManifestError::DuplicateCapability(_))
        ));
        assert!(matches!(
            check(with("requested_capabilities", json!(["exec"]))),
            Err(ManifestError::Parse(_))
        ));
        assert!(matches!(
            check(with("requested_capabilities", json!(["log"]))),
            Err(ManifestError::HooksWithoutRegister)
        ));
        assert!(matches!(
            check(with("surprise", json!(1))),
            Err(ManifestError::Parse(_))
        ));
        assert!(matches!(
            check(with("api", json!(2))),
            Err(ManifestError::Api(2))
        ));
        assert!(matches!(
            check(with(
                "dependencies",
                json!([{"name": "x", "version": "not"}])
            )),
            Err(ManifestError::Dependency { .. })
        ));
        let m = check(with(
            "dependencies",
            json!([{"name": "x", "version": "^1.2"}, {"name": "y", "version": ">=2, <3"}]),
        ))
        .unwrap();
        let node = m.dep_node();
        assert_eq!(node.name, m.name());
        assert_eq!(&node.version, m.version());
        assert_eq!(
            node.requires
                .iter()
                .map(|(n, r)| (n.as_str(), r.to_string()))
                .collect::<Vec<_>>(),
            [("x", "^1.2".to_string()), ("y", ">=2, <3".to_string())]
        );
        assert!(check(with("tier", json!("B"))).is_ok());
        for bad in ["", "B C", "../x", "ABCDEFGHIJKLMNOPQ"] {
            assert!(matches!(
                check(with("tier", json!(bad))),
                Err(ManifestError::Tier(_))
            ));
        }
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(m) = Manifest::parse(&bytes) { let _ = m.validate(&rt()); }
        }
    }
}
