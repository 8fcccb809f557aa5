//! Layer selection (systemd precedence), key-by-key merging with provenance, and resolution of
//! the merged layers for one plugin into validated sandbox and host policies.

use super::{
    check_signer_id, risk_item_known, AuditSection, OperatorPolicyError, Origin, PolicyDocument,
    RiskClass, TrustSection,
};
use crate::manifest::{valid_hook, valid_name, ManifestError};
use crate::protocol::host::{HostPolicy, HostPolicyError};
use crate::sandbox::{SandboxPolicyError, SandboxPolicyFile, ValidatedSandboxPolicy};
use crate::sandbox::{MAX_POLICY_BYTES, POLICY_VERSION};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Where a file was found; the order is the precedence (a lower tier wins over a higher one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// `/etc/stockade`: the administrator.
    Etc,
    /// `/run/stockade`: runtime, volatile.
    Run,
    /// `/usr/lib/stockade`: the vendor package.
    UsrLib,
}

/// One file found in a policy directory, as the runtime lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Where.
    pub tier: Tier,
    /// `None` for the main `policy.toml`, else the drop-in's file name in `policy.d/`.
    pub dropin: Option<String>,
    /// A symlink to `/dev/null` (or an empty name): masks its namesake in lower tiers.
    pub masked: bool,
    /// The full path (for reading and for provenance).
    pub path: String,
}

/// systemd's selection: per name the highest tier wins (`/etc` > `/run` > `/usr/lib`); a masked
/// winner removes the name; drop-ins (only `*.toml`) sorted by file name come after the main
/// file. Returns the files to read, in application order.
pub fn select(found: &[Listing]) -> Vec<Listing> {
    let mut winners: BTreeMap<Option<String>, &Listing> = BTreeMap::new();
    for l in found {
        if l.dropin.as_ref().is_some_and(|n| !n.ends_with(".toml")) {
            continue;
        }
        let slot = winners.entry(l.dropin.clone()).or_insert(l);
        if l.tier < slot.tier {
            *slot = l;
        }
    }
    // BTreeMap order: `None` (the main file) first, then drop-ins by byte-wise name, as systemd.
    winners
        .into_values()
        .filter(|l| !l.masked)
        .cloned()
        .collect()
}

/// One file's text with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLayer {
    /// Path, for provenance and messages.
    pub path: String,
    /// Contents.
    pub text: String,
}

/// A leaf value and who set it.
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    value: toml::Value,
    origin: Origin,
}

/// All layers merged, not yet resolved for a plugin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergedPolicy {
    /// The files, in application order.
    pub layers: Vec<String>,
    leaves: BTreeMap<Vec<String>, Leaf>,
    /// Every `[capabilities]` section (by full path: top level, or under a plugin or signer)
    /// that sets no `allow`, with its first line. Such a section sets no leaf, so merging alone
    /// would forget it; it is kept because it reads as "none allowed" while it restricts
    /// nothing ([`ResolvedPolicy::capabilities_without_allow`], `policy lint`).
    bare_capabilities: Vec<(Vec<String>, Origin)>,
}

/// Merge layers (in application order: main file first, then drop-ins). Each file must be a
/// valid [`PolicyDocument`] on its own; values are range-checked by [`MergedPolicy::resolve`].
pub fn merge(layers: &[PolicyLayer]) -> Result<MergedPolicy, OperatorPolicyError> {
    let mut merged = MergedPolicy::default();
    for layer in layers {
        let path = layer.path.clone();
        if layer.text.len() > MAX_POLICY_BYTES {
            return Err(OperatorPolicyError::TooLarge {
                path,
                size: layer.text.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let syntax = |e: toml::de::Error| OperatorPolicyError::Syntax {
            path: layer.path.clone(),
            syntax: crate::TomlSyntax::new(&layer.text, &e).in_file(layer.path.clone()),
        };
        if let Some(found) = crate::newer_toml_version(&layer.text) {
            return Err(OperatorPolicyError::Version {
                at: Origin::File {
                    line: key_lines(&layer.text)
                        .get(&vec!["version".to_string()])
                        .copied(),
                    path,
                },
                found: found.into(),
            });
        }
        let doc: PolicyDocument = toml::from_str(&layer.text).map_err(syntax)?;
        let lines = key_lines(&layer.text);
        if doc.version != POLICY_VERSION {
            return Err(OperatorPolicyError::Version {
                at: Origin::File {
                    path,
                    line: lines.get(&vec!["version".to_string()]).copied(),
                },
                found: doc.version.into(),
            });
        }
        check_section_names(&doc, &lines, &path)?;
        check_hook_names(&doc, &lines, &path)?;
        let table: toml::Table = toml::from_str(&layer.text).map_err(syntax)?;
        for at in capabilities_without_allow(&table) {
            let origin = Origin::File {
                path: path.clone(),
                line: first_line_of(&lines, &at),
            };
            merged.bare_capabilities.push((at, origin));
        }
        let mut flat = Vec::new();
        flatten(&table, &mut Vec::new(), &mut flat);
        for (key, value) in flat {
            let origin = Origin::File {
                path: path.clone(),
                line: lines.get(&key).copied(),
            };
            merged.leaves.insert(key, Leaf { value, origin });
        }
        merged.layers.push(path);
    }
    Ok(merged)
}

/// Refuse a `[plugin."<name>"]` or `[signer."<key id>"]` section that no plugin or signer can
/// match: resolution compares names exactly, so such a section would be accepted and then never
/// apply — the restriction an operator wrote would silently not exist. Plugin names follow the
/// manifest's own rule; signer ids the form the runtime prints ([`check_signer_id`]).
fn check_section_names(
    doc: &PolicyDocument,
    lines: &BTreeMap<Vec<String>, usize>,
    path: &str,
) -> Result<(), OperatorPolicyError> {
    for (kind, sections) in [("plugin", &doc.plugin), ("signer", &doc.signer)] {
        for name in sections.iter().flat_map(|m| m.keys()) {
            let cause: Box<dyn std::error::Error + Send + Sync> = match kind {
                "plugin" if !valid_name(name) => Box::new(ManifestError::Name(name.clone())),
                "signer" => match check_signer_id(name) {
                    Err(e) => Box::new(e),
                    Ok(()) => continue,
                },
                _ => continue,
            };
            return Err(OperatorPolicyError::SectionName {
                kind,
                name: name.clone(),
                at: Origin::File {
                    path: path.to_string(),
                    line: first_line_of(lines, &[kind.to_string(), name.clone()]),
                },
                cause,
            });
        }
    }
    Ok(())
}

/// Refuse a `[hooks."<hook>"]` section, at top level or under a `[plugin."<name>"]` or
/// `[signer."<key id>"]` section, whose hook no manifest can declare ([`valid_hook`]): the
/// runtime looks hook sections up by the exact name a plugin registers, so such a section —
/// `[hooks."sertone.pre_request"] failure = "closed"` — would leave the real hook failing open
/// while the file reads as closing it.
fn check_hook_names(
    doc: &PolicyDocument,
    lines: &BTreeMap<Vec<String>, usize>,
    path: &str,
) -> Result<(), OperatorPolicyError> {
    let mut sections: Vec<(Vec<String>, &String)> = Vec::new();
    for hook in doc.hooks.iter().flat_map(|h| h.keys()) {
        sections.push((vec!["hooks".into(), hook.clone()], hook));
    }
    for (kind, named) in [("plugin", &doc.plugin), ("signer", &doc.signer)] {
        for (name, o) in named.iter().flatten() {
            for hook in o.hooks.iter().flat_map(|h| h.keys()) {
                let at = vec![kind.into(), name.clone(), "hooks".into(), hook.clone()];
                sections.push((at, hook));
            }
        }
    }
    match sections.into_iter().find(|(_, hook)| !valid_hook(hook)) {
        None => Ok(()),
        Some((section, hook)) => Err(OperatorPolicyError::HookName {
            at: Origin::File {
                path: path.to_string(),
                line: first_line_of(lines, &section),
            },
            section: dotted(&section),
            cause: ManifestError::Hook(hook.clone()),
        }),
    }
}

/// The paths of the `[capabilities]` tables of one file that have no `allow` key: at top level
/// and under each `[plugin."<name>"]` and `[signer."<key id>"]`.
fn capabilities_without_allow(table: &toml::Table) -> Vec<Vec<String>> {
    let bare = |t: Option<&toml::Value>| {
        t.and_then(toml::Value::as_table)
            .is_some_and(|c| !c.contains_key("allow"))
    };
    let mut out = Vec::new();
    if bare(table.get("capabilities")) {
        out.push(vec!["capabilities".to_string()]);
    }
    for kind in ["plugin", "signer"] {
        let named = table.get(kind).and_then(toml::Value::as_table);
        for (name, o) in named.into_iter().flatten() {
            if bare(o.get("capabilities")) {
                out.push(vec![kind.into(), name.clone(), "capabilities".into()]);
            }
        }
    }
    out
}

/// The first line of the section at `prefix`: its header or first key, else the line of the
/// nearest enclosing key that holds it inline.
fn first_line_of(lines: &BTreeMap<Vec<String>, usize>, prefix: &[String]) -> Option<usize> {
    (1..=prefix.len()).rev().find_map(|n| {
        lines
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix[..n]))
            .map(|(_, l)| *l)
            .min()
    })
}

/// A table value that is one setting, not a section: a hook's fail-open `default` answer.
fn is_leaf_table(path: &[String]) -> bool {
    path.last().is_some_and(|k| k == "default") && path.iter().any(|k| k == "hooks")
}

fn flatten(t: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, toml::Value)>) {
    for (k, v) in t {
        prefix.push(k.clone());
        match v {
            toml::Value::Table(sub) if !is_leaf_table(prefix) => flatten(sub, prefix, out),
            _ => out.push((prefix.clone(), v.clone())),
        }
        prefix.pop();
    }
}

/// Split a TOML key or header (`a."b.c".d`) into its parts. Whitespace counts only inside
/// quotes (bare keys cannot hold it), so `"x "` stays `x ` as the TOML parser reads it.
fn split_key(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => parts.push(std::mem::take(&mut cur)),
            (None, c) if c.is_whitespace() => {}
            (_, c) => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// The 1-based line of every `key = …` and of every `[header]` in the text, by full key path.
/// Understands headers, quoted and dotted keys; lines inside multi-line arrays carry no `=`
/// outside strings and are skipped.
fn key_lines(text: &str) -> BTreeMap<Vec<String>, usize> {
    let mut out = BTreeMap::new();
    let mut section: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            if let Some(end) = h.find(']') {
                section = split_key(&h[..end]);
                out.entry(section.clone()).or_insert(i + 1);
                continue;
            }
        }
        let Some(eq) = first_unquoted_eq(line) else {
            continue;
        };
        let mut key = section.clone();
        key.extend(split_key(&line[..eq]));
        out.entry(key).or_insert(i + 1);
    }
    out
}

fn first_unquoted_eq(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, ch) in line.char_indices() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some(i),
            (None, '#' | ',' | '[' | '{') => return None,
            _ => {}
        }
    }
    None
}

/// The dotted display form of a key path (parts with dots or colons quoted).
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                p.clone()
            } else {
                format!("\"{p}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The policy in force for one plugin (or the defaults), every value validated and every value
/// tied to its origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedPolicy {
    /// The plugin name it was resolved for.
    pub plugin: Option<String>,
    /// The signer key id it was resolved for.
    pub signer: Option<String>,
    /// Files, in application order.
    pub layers: Vec<String>,
    /// The sandbox half.
    pub sandbox: ValidatedSandboxPolicy,
    /// The host half.
    #[serde(skip)]
    pub host: HostPolicy,
    /// `[trust]`.
    pub trust: TrustSection,
    /// `[risk]` overrides.
    pub risk: BTreeMap<String, RiskClass>,
    /// `[audit]`.
    pub audit: AuditSection,
    /// Origin of every key set by some file (dotted key → origin); absent keys are defaults.
    pub origins: BTreeMap<String, Origin>,
    /// The first line of each `[capabilities]` section that applies here (top level, this
    /// signer's, this plugin's) and sets no `allow`. Without `allow` the section restricts
    /// nothing — `host.capabilities.allow` stays whatever another section set, or unset: no
    /// operator restriction — while an empty section reads as "none allowed".
    pub capabilities_without_allow: Vec<Origin>,
}

impl ResolvedPolicy {
    /// Who decided `key` (dotted, e.g. `resources.memory_max`): a file:line or the default.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Whether some file sets `key`.
    pub fn is_set(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }
}

const SANDBOX_SECTIONS: [&str; 6] = [
    "filesystem",
    "network",
    "resources",
    "seccomp",
    "layers",
    "identity",
];
const HOST_SECTIONS: [&str; 4] = ["capabilities", "protocol", "kv", "hooks"];

impl MergedPolicy {
    /// What the merged policy sets, as one text: every leaf (`a.b.c = value`, in key order) and
    /// every `[capabilities]` section without `allow`, without the file each came from. Equal
    /// texts, equal merged policy — for a fingerprint (serve's SIGHUP reload record names the
    /// policy in force before and after by the SHA-256 of this text). Keys are quoted as TOML
    /// strings, so no key can pass for a path of others.
    pub fn canonical_text(&self) -> String {
        let key = |path: &[String]| {
            path.iter()
                .map(|k| toml::Value::String(k.clone()).to_string())
                .collect::<Vec<_>>()
                .join(".")
        };
        let mut out = String::new();
        for (path, leaf) in &self.leaves {
            out.push_str(&format!("{} = {}\n", key(path), leaf.value));
        }
        for (path, _) in &self.bare_capabilities {
            out.push_str(&format!("[{}] no allow\n", key(path)));
        }
        out
    }

    /// Plugin names with a `[plugin."<name>"]` section.
    pub fn plugin_names(&self) -> Vec<String> {
        self.named("plugin")
    }

    /// Signer key ids with a `[signer."<id>"]` section.
    pub fn signer_ids(&self) -> Vec<String> {
        self.named("signer")
    }

    fn named(&self, kind: &str) -> Vec<String> {
        // A section whose only content is a `[capabilities]` without `allow` sets no leaf, and
        // is named all the same, so that lint resolves (and reports) it.
        let mut v: Vec<String> = self
            .leaves
            .keys()
            .chain(self.bare_capabilities.iter().map(|(k, _)| k))
            .filter(|k| k.len() > 2 && k[0] == kind)
            .map(|k| k[1].clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Resolve for a plugin: the defaults, then the signer's overrides, then the plugin name's.
    pub fn resolve(
        &self,
        plugin: Option<&str>,
        signer: Option<&str>,
    ) -> Result<ResolvedPolicy, OperatorPolicyError> {
        self.resolve_with(plugin, signer, None)
    }

    /// The keys (dotted) that both `[signer."<signer>"]` and `[plugin."<plugin>"]` set, each
    /// with two resolutions: the signer's alone, and the signer's with that one key of the
    /// plugin's section on top — what a plugin of that name signed by that key gets for it
    /// (the plugin's section wins key by key, "the more specific wins"). The policy does not
    /// tie a plugin name to a signer (the package's certificate does, at launch), so every
    /// pair of sections is a pair that may meet. A key whose resolution is invalid is left
    /// out: loading reports that. For `policy lint`, which compares the two.
    pub fn plugin_over_signer(
        &self,
        plugin: &str,
        signer: &str,
    ) -> Vec<(String, ResolvedPolicy, ResolvedPolicy)> {
        let under = |kind: &str, who: &str| -> BTreeSet<Vec<String>> {
            self.section_leaves(kind, who)
                .map(|(k, _)| k[2..].to_vec())
                .collect()
        };
        let signer_keys = under("signer", signer);
        let both: Vec<Vec<String>> = under("plugin", plugin)
            .into_iter()
            .filter(|k| signer_keys.contains(k))
            .collect();
        // Most pairs share no key: nothing to resolve for them.
        if both.is_empty() {
            return Vec::new();
        }
        let Ok(alone) = self.resolve(None, Some(signer)) else {
            return Vec::new();
        };
        both.into_iter()
            .filter_map(|k| {
                let over = self
                    .resolve_with(Some(plugin), Some(signer), Some(&k))
                    .ok()?;
                Some((dotted(&k), alone.clone(), over))
            })
            .collect()
    }

    /// Each `[plugin."P"]` and `[signer."K"]` pair whose sections are valid alone and invalid
    /// together, with the plugin section's first line and the error: a launch of P signed by K
    /// resolves the pair and refuses it (65 `invalid_policy`), while loading checks each section
    /// alone ([`Self::validate_all_with`]) — e.g. a signer's `read_only` path inside a plugin's
    /// `writable` one. Loading does not refuse such a file (the pair may never meet: the policy
    /// does not tie a name to a key); for `policy lint`, which reports each pair.
    pub fn invalid_pairs(&self) -> Vec<(String, String, Origin, OperatorPolicyError)> {
        let mut out = Vec::new();
        // Each section valid alone (an invalid one is loading's to report), each resolved once.
        let signers: Vec<String> = self
            .signer_ids()
            .into_iter()
            .filter(|s| self.resolve(None, Some(s)).is_ok())
            .collect();
        for p in self.plugin_names() {
            if self.resolve(Some(&p), None).is_err() {
                continue;
            }
            let first = self
                .section_leaves("plugin", &p)
                .map(|(_, leaf)| leaf.origin.clone())
                .min()
                .unwrap_or(Origin::Default);
            for s in &signers {
                if let Err(e) = self.resolve(Some(&p), Some(s)) {
                    out.push((p.clone(), s.clone(), first.clone(), e));
                }
            }
        }
        out
    }

    /// The leaves of `[<kind>."<who>"]` (`kind` is `plugin` or `signer`), keys in full: one
    /// range of the sorted map, so that a resolution reads its two sections and not every
    /// section of the policy. A walk of all the leaves per resolution made loading, which
    /// resolves every section, quadratic in the number of sections (16 drop-ins of 1200
    /// sections: 21.7 s before every `run`, `serve` start and `verify`), and `policy lint`,
    /// which resolves every plugin and signer pair, cubic.
    fn section_leaves<'a: 'b, 'b>(
        &'a self,
        kind: &'b str,
        who: &'b str,
    ) -> impl Iterator<Item = (&'a Vec<String>, &'a Leaf)> + 'b {
        self.leaves
            .range(vec![kind.to_string(), who.to_string()]..)
            .take_while(move |(k, _)| k.len() >= 2 && k[0] == kind && k[1] == who)
            .filter(|(k, _)| k.len() > 2)
    }

    /// The leaves outside the `plugin`, `signer` sections and `version`: what every
    /// resolution starts from. Each of those three is one range of the sorted map, skipped
    /// whole (keys starting with `"<name>\0"` sort after every key under `<name>`).
    fn base_leaves(&self) -> impl Iterator<Item = (&Vec<String>, &Leaf)> {
        let skipped = ["plugin", "signer", "version"];
        let mut from: Bound<Vec<String>> = Bound::Unbounded;
        std::iter::from_fn(move || loop {
            let (k, v) = self.leaves.range((from.clone(), Bound::Unbounded)).next()?;
            match skipped.iter().find(|s| k[0] == **s) {
                Some(s) => from = Bound::Included(vec![format!("{s}\0")]),
                None => {
                    from = Bound::Excluded(k.clone());
                    return Some((k, v));
                }
            }
        })
    }

    /// The leaves a resolution applies, keys relative to the section they came from: the base
    /// ([`Self::base_leaves`]), the signer's section over it, then the plugin's (only its key
    /// `only` when given). The differential tests compare it with the walk of every leaf it
    /// replaced (`layers::diff_tests`).
    fn effective_leaves(
        &self,
        plugin: Option<&str>,
        signer: Option<&str>,
        only: Option<&[String]>,
    ) -> BTreeMap<Vec<String>, &Leaf> {
        let mut eff: BTreeMap<Vec<String>, &Leaf> = BTreeMap::new();
        for (k, v) in self.base_leaves() {
            eff.insert(k.clone(), v);
        }
        for (kind, who) in [("signer", signer), ("plugin", plugin)] {
            let Some(who) = who else { continue };
            for (k, v) in self.section_leaves(kind, who) {
                if kind == "signer" || only.is_none_or(|o| k[2..] == *o) {
                    eff.insert(k[2..].to_vec(), v);
                }
            }
        }
        eff
    }

    /// [`Self::resolve`], with only the plugin section's key `only` applied when given.
    fn resolve_with(
        &self,
        plugin: Option<&str>,
        signer: Option<&str>,
        only: Option<&[String]>,
    ) -> Result<ResolvedPolicy, OperatorPolicyError> {
        let eff = self.effective_leaves(plugin, signer, only);
        let origins: BTreeMap<String, Origin> = eff
            .iter()
            .map(|(k, v)| (dotted(k), v.origin.clone()))
            .collect();
        let capabilities_without_allow = self
            .bare_capabilities
            .iter()
            .filter(|(at, _)| match at.as_slice() {
                [_] => true,
                [kind, who, _] => {
                    (kind == "signer" && signer == Some(who.as_str()))
                        || (kind == "plugin" && plugin == Some(who.as_str()))
                }
                _ => false,
            })
            .map(|(_, o)| o.clone())
            .collect();
        let origin_of = |key: &str| -> Origin {
            if let Some(o) = origins.get(key) {
                return o.clone();
            }
            // `hooks.*.deadline_ms` and the like: the first key matching the pattern.
            let (head, tail) = key.split_once(".*.").unwrap_or((key, ""));
            origins
                .iter()
                .find(|(k, _)| k.starts_with(head) && k.ends_with(tail))
                .map(|(_, o)| o.clone())
                .unwrap_or(Origin::Default)
        };
        let mut root = toml::Table::new();
        for (k, leaf) in &eff {
            insert(&mut root, k, leaf.value.clone());
        }
        let mut sandbox_t = toml::Table::new();
        sandbox_t.insert(
            "version".into(),
            toml::Value::Integer(POLICY_VERSION.into()),
        );
        let mut host_t = toml::Table::new();
        for (k, v) in &root {
            if SANDBOX_SECTIONS.contains(&k.as_str()) {
                sandbox_t.insert(k.clone(), v.clone());
            } else if HOST_SECTIONS.contains(&k.as_str()) {
                host_t.insert(k.clone(), v.clone());
            }
        }
        let shape = |key: &str, e: toml::de::Error| OperatorPolicyError::Value {
            key: key.to_string(),
            at: origin_of(key),
            cause: Box::new(e),
        };
        let sfile: SandboxPolicyFile = toml::Value::Table(sandbox_t)
            .try_into()
            .map_err(|e| shape("sandbox", e))?;
        let sandbox = sfile.validate().map_err(|e| match e {
            SandboxPolicyError::Invalid { key, cause, .. } => OperatorPolicyError::Value {
                at: origin_of(&key),
                key,
                cause: Box::new(cause),
            },
            other => OperatorPolicyError::Value {
                key: "version".into(),
                at: Origin::Default,
                cause: Box::new(other),
            },
        })?;
        let host: HostPolicy = toml::Value::Table(host_t)
            .try_into()
            .map_err(|e| shape("host", e))?;
        host.validate().map_err(|e| {
            let key = match &e {
                HostPolicyError::Range(k) | HostPolicyError::OnlyFor { key: k, .. } => {
                    (*k).to_string()
                }
                _ => "host".to_string(),
            };
            OperatorPolicyError::Value {
                at: origin_of(&key),
                key,
                cause: Box::new(e),
            }
        })?;
        let section = |name: &str| root.get(name).cloned();
        let trust: TrustSection = match section("trust") {
            Some(v) => v.try_into().map_err(|e| shape("trust", e))?,
            None => TrustSection::default(),
        };
        let audit: AuditSection = match section("audit") {
            Some(v) => v.try_into().map_err(|e| shape("audit", e))?,
            None => AuditSection::default(),
        };
        let audit_value = |key: &str, cause: super::AuditValueError| OperatorPolicyError::Value {
            at: origin_of(key),
            key: key.to_string(),
            cause: Box::new(cause),
        };
        if let Some(size) = &audit.rotate_size {
            let e = match super::try_parse_size(size) {
                Ok(0) | Err(super::SizeError::NotASize(_)) => {
                    Some(super::AuditValueError::Size(size.clone()))
                }
                Err(e) => Some(super::AuditValueError::SizeTooLarge(e)),
                Ok(_) => None,
            };
            if let Some(e) = e {
                return Err(audit_value("audit.rotate_size", e));
            }
        }
        if audit.keep == Some(0) {
            return Err(audit_value("audit.keep", super::AuditValueError::KeepZero));
        }
        let risk: BTreeMap<String, RiskClass> = match section("risk") {
            Some(v) => v.try_into().map_err(|e| shape("risk", e))?,
            None => BTreeMap::new(),
        };
        for item in risk.keys() {
            if !risk_item_known(item) {
                let key = format!("risk.{item}");
                return Err(OperatorPolicyError::Value {
                    at: origin_of(&key),
                    key,
                    cause: Box::new(crate::capability::UnknownCapability(item.clone())),
                });
            }
        }
        for (k, p) in [
            ("trust.roots", &trust.roots),
            ("trust.revocation", &trust.revocation),
            ("trust.grants", &trust.grants),
            ("audit.file", &audit.file),
        ] {
            // Normalised, as `writable` paths are: `/etc/stockade/../../tmp/roots` reads as a
            // directory under /etc/stockade to whoever reviews the file.
            if p.as_ref()
                .is_some_and(|p| !crate::sandbox::is_normalised_absolute(p))
            {
                return Err(OperatorPolicyError::Value {
                    key: k.into(),
                    at: origin_of(k),
                    cause: Box::new(crate::sandbox::FieldError::BadPath(
                        p.clone().unwrap_or_default(),
                    )),
                });
            }
        }
        // So is each operator key: a relative one was read against the daemon's working
        // directory (`/` under systemd, wherever the CLI was started otherwise), so the key
        // that signs grants depended on where the command ran.
        let k = "trust.operator_keys";
        if let Some(p) = trust
            .operator_keys
            .iter()
            .flatten()
            .find(|p| !crate::sandbox::is_normalised_absolute(p))
        {
            return Err(OperatorPolicyError::Value {
                key: k.into(),
                at: origin_of(k),
                cause: Box::new(crate::sandbox::FieldError::BadPath(p.clone())),
            });
        }
        Ok(ResolvedPolicy {
            plugin: plugin.map(String::from),
            signer: signer.map(String::from),
            layers: self.layers.clone(),
            sandbox,
            host,
            trust,
            risk,
            audit,
            origins,
            capabilities_without_allow,
        })
    }

    /// Resolve the defaults and every named plugin and signer section, so that an error in any
    /// of them is found (what `policy lint` and the loaders use).
    pub fn validate_all(&self) -> Result<ResolvedPolicy, OperatorPolicyError> {
        self.validate_all_with(|_| Ok(()))
    }

    /// [`Self::validate_all`], with `check` run on each resolution: how the runtime adds what
    /// only the host can know (its architecture's system calls, the limits it can hand down),
    /// so that those errors too stop every loader and name the file:line of the value
    /// ([`ResolvedPolicy::origin`]). Every value a plugin can get comes from the defaults, its
    /// signer's section or its name's, so checking each of those resolutions covers them all
    /// — each value, not a rule between a plugin section's values and a signer section's (a
    /// `read_only` path inside a `writable` one): the launch refuses such a pair when it
    /// resolves it, and lint reports it ([`Self::invalid_pairs`]).
    pub fn validate_all_with(
        &self,
        check: impl Fn(&ResolvedPolicy) -> Result<(), OperatorPolicyError>,
    ) -> Result<ResolvedPolicy, OperatorPolicyError> {
        for p in self.plugin_names() {
            check(&self.resolve(Some(&p), None)?)?;
        }
        for s in self.signer_ids() {
            check(&self.resolve(None, Some(&s))?)?;
        }
        let defaults = self.resolve(None, None)?;
        check(&defaults)?;
        Ok(defaults)
    }
}

fn insert(root: &mut toml::Table, path: &[String], value: toml::Value) {
    let mut t = root;
    for p in &path[..path.len() - 1] {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(path[path.len() - 1].clone(), value);
}

#[cfg(test)]
#[path = "layers_diff_tests.rs"]
mod diff_tests;

#[cfg(test)]
mod canonical_tests {
    use super::*;

    fn merged(layers: &[(&str, &str)]) -> MergedPolicy {
        let l: Vec<PolicyLayer> = layers
            .iter()
            .map(|(p, t)| PolicyLayer {
                path: (*p).into(),
                text: (*t).into(),
            })
            .collect();
        merge(&l).unwrap()
    }

    /// serve's reload record fingerprints the merged policy by this text: the same settings
    /// in other files give the same text, another value or a bare `[capabilities]` another.
    #[test]
    fn canonical_text_is_what_is_set_not_where() {
        let one = merged(&[("a.toml", "version = 1\n[resources]\nmemory_max = \"64M\"\n")]);
        let two = merged(&[
            ("a.toml", "version = 1\n"),
            ("b.toml", "version = 1\n[resources]\nmemory_max = \"64M\"\n"),
        ]);
        assert_eq!(one.canonical_text(), two.canonical_text());
        let other = merged(&[("a.toml", "version = 1\n[resources]\nmemory_max = \"65M\"\n")]);
        assert_ne!(one.canonical_text(), other.canonical_text());
        let bare = merged(&[(
            "a.toml",
            "version = 1\n[resources]\nmemory_max = \"64M\"\n[capabilities]\n",
        )]);
        assert_ne!(one.canonical_text(), bare.canonical_text());
    }
}
