//! The package statement: the one document a developer signs for a package (seed 002).
//!
//! `statement.json` is canonical JSON: `{"format":1, "manifest":{...}, "files":{path: entry},
//! "payload":{"sha256":..., "size":...}}`. It covers the canonical manifest **and** a sorted map
//! of every file in the payload, so any changed, added or removed file breaks verification. The
//! developer's signature is the separate `statement.json.minisig` entry beside it.
//!
//! Compatibility: `format` is the package format, read before anything else of the statement —
//! a statement of a format above 1 was made by a newer Stockade and is refused as such
//! ([`StatementError::NewerFormat`]), not as malformed, since its other fields may be ones this
//! build does not know. Likewise a signed manifest this build cannot parse that asks for a newer
//! runtime (`min_runtime_version`) is refused as asking for one
//! ([`Manifest::for_newer_runtime`]). Fields this build does not know are refused, never
//! dropped: a newer field may restrict what the plugin may do.
//!
//! A file entry is either `{"mode":"0644"|"0755","sha256":hex,"size":n}` or
//! `{"symlink":"relative/target"}`.
//!
//! Map rules (checked by [`Statement::check_file_map`], verification step 7): paths are
//! normalized relative paths without control characters ([`valid_file_path`], checked at parse
//! and by the packer); no entry is a directory prefix of another (so every parent of an
//! entry is a real directory, never a symlink); a symlink's target stays inside the tree and
//! names a regular file in the map, so resolving a link never passes through another link;
//! `manifest.json` and the entrypoint are regular files and the entrypoint is executable.

use crate::canonical;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stockade_policy::manifest::{valid_relative_path, Manifest, ManifestError, ValidatedManifest};

/// Largest `statement.json` accepted.
pub const MAX_STATEMENT_BYTES: usize = 4 * 1024 * 1024;
/// Most files a package may hold.
pub const MAX_FILES: usize = 10_000;

/// A file map entry on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntryWire {
    /// `0644` or `0755` for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// SHA-256 of the contents, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
}

/// A validated file map entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEntry {
    /// A regular file.
    File {
        /// 0o644 or 0o755.
        mode: u32,
        /// SHA-256 of the contents.
        sha256: [u8; 32],
        /// Size in bytes.
        size: u64,
    },
    /// A symbolic link to another file in the map.
    Symlink {
        /// The link text.
        target: String,
    },
}

impl FileEntry {
    /// The wire form.
    pub fn to_wire(&self) -> FileEntryWire {
        match self {
            FileEntry::File { mode, sha256, size } => FileEntryWire {
                mode: Some(format!("{mode:04o}")),
                sha256: Some(hex::encode(sha256)),
                size: Some(*size),
                symlink: None,
            },
            FileEntry::Symlink { target } => FileEntryWire {
                mode: None,
                sha256: None,
                size: None,
                symlink: Some(target.clone()),
            },
        }
    }

    fn from_wire(path: &str, w: &FileEntryWire) -> Result<Self, StatementError> {
        let bad = |reason: &'static str| StatementError::Entry {
            path: path.to_string(),
            reason,
        };
        match (
            w.mode.as_deref(),
            w.sha256.as_deref(),
            w.size,
            w.symlink.as_deref(),
        ) {
            (Some(m), Some(h), Some(size), None) => {
                let mode = match m {
                    "0644" => 0o644,
                    "0755" => 0o755,
                    _ => return Err(bad("mode must be \"0644\" or \"0755\"")),
                };
                Ok(FileEntry::File {
                    mode,
                    sha256: parse_sha256(h)
                        .ok_or_else(|| bad("sha256 must be 64 lowercase hex digits"))?,
                    size,
                })
            }
            (None, None, None, Some(t)) if t.chars().any(char::is_control) => {
                Err(bad("symlink target holds a control character"))
            }
            (None, None, None, Some(t)) => Ok(FileEntry::Symlink {
                target: t.to_string(),
            }),
            _ => Err(bad("must be either {mode, sha256, size} or {symlink}")),
        }
    }
}

/// Whether `p` may name a file in a package: a normalized relative path
/// ([`valid_relative_path`]) with no control character (C0, DEL, C1). Paths are printed to
/// operators (`inspect`, error messages), where an escape sequence or a carriage return would
/// repaint the terminal; no plugin needs one in a file name. The packer refuses such a name
/// with this rule, and [`Statement::parse`] a signed map holding one.
pub fn valid_file_path(p: &str) -> bool {
    valid_relative_path(p) && !p.chars().any(char::is_control)
}

/// Parse 64 lowercase hex digits.
pub fn parse_sha256(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64 || h.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// Digest and size of `payload.tar.gz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadDigest {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    manifest: serde_json::Value,
    files: BTreeMap<String, FileEntryWire>,
    payload: PayloadDigest,
}

/// Why a statement is malformed or its file map inconsistent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    /// Larger than [`MAX_STATEMENT_BYTES`].
    #[error("statement is {0} bytes, more than the {MAX_STATEMENT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the right shape.
    #[error("statement is not JSON of the expected shape")]
    Json(#[source] serde_json::Error),
    /// Not byte-for-byte canonical.
    #[error("statement is not in canonical JSON form")]
    NotCanonical,
    /// Unknown format.
    #[error("statement format {0} is not supported (expected 1)")]
    Format(u32),
    /// A format above 1: a package made by a newer Stockade.
    #[error("statement format {0} is of a newer Stockade (this one reads format 1)")]
    NewerFormat(u64),
    /// The embedded manifest is invalid.
    #[error("the signed manifest is invalid")]
    Manifest(#[source] ManifestError),
    /// Too many files.
    #[error("the file map lists {0} files, more than {MAX_FILES}")]
    TooManyFiles(usize),
    /// Malformed path.
    #[error("file map path `{0}` is not a normalized relative path")]
    Path(String),
    /// A path holding a control character (shown escaped).
    #[error("file map path {0:?} holds a control character")]
    PathControl(String),
    /// Malformed entry.
    #[error("file map entry `{path}`: {reason}")]
    Entry {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Payload digest malformed.
    #[error("payload sha256 must be 64 lowercase hex digits")]
    PayloadDigest,
    /// Canonicalization failed while building.
    #[error("cannot canonicalize the statement")]
    Canonical(#[source] canonical::CanonicalError),
}

/// A parsed statement: syntax checked, manifest validated.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The manifest exactly as signed.
    pub manifest_value: serde_json::Value,
    /// The validated manifest.
    pub manifest: ValidatedManifest,
    /// The file map.
    pub files: BTreeMap<String, FileEntry>,
    /// Payload digest.
    pub payload_sha256: [u8; 32],
    /// Payload size.
    pub payload_size: u64,
}

impl Statement {
    /// Parse `statement.json` bytes: size cap, exact canonical form, shape, manifest validity,
    /// path and entry syntax.
    pub fn parse(bytes: &[u8], runtime_version: &semver::Version) -> Result<Self, StatementError> {
        if bytes.len() > MAX_STATEMENT_BYTES {
            return Err(StatementError::TooLarge(bytes.len()));
        }
        if let Some(format) = crate::json_format(bytes).filter(|&f| f > 1) {
            return Err(StatementError::NewerFormat(format));
        }
        let wire: Wire = serde_json::from_slice(bytes).map_err(StatementError::Json)?;
        if !canonical::is_canonical(bytes) {
            return Err(StatementError::NotCanonical);
        }
        if wire.format != 1 {
            return Err(StatementError::Format(wire.format));
        }
        let manifest = Manifest::from_value(wire.manifest.clone())
            .map_err(|e| {
                Manifest::for_newer_runtime(&wire.manifest, &e, runtime_version).unwrap_or(e)
            })
            .and_then(|m| m.validate(runtime_version))
            .map_err(StatementError::Manifest)?;
        if wire.files.len() > MAX_FILES {
            return Err(StatementError::TooManyFiles(wire.files.len()));
        }
        let mut files = BTreeMap::new();
        for (p, w) in &wire.files {
            if p.chars().any(char::is_control) {
                return Err(StatementError::PathControl(p.clone()));
            }
            if !valid_relative_path(p) {
                return Err(StatementError::Path(p.clone()));
            }
            files.insert(p.clone(), FileEntry::from_wire(p, w)?);
        }
        let payload_sha256 =
            parse_sha256(&wire.payload.sha256).ok_or(StatementError::PayloadDigest)?;
        Ok(Self {
            manifest_value: wire.manifest,
            manifest,
            files,
            payload_sha256,
            payload_size: wire.payload.size,
        })
    }

    /// The canonical bytes of a statement (what the packer writes and signs).
    pub fn to_canonical(
        manifest: &serde_json::Value,
        files: &BTreeMap<String, FileEntry>,
        payload_sha256: &[u8; 32],
        payload_size: u64,
    ) -> Result<Vec<u8>, StatementError> {
        let wire = Wire {
            format: 1,
            manifest: manifest.clone(),
            files: files
                .iter()
                .map(|(k, v)| (k.clone(), v.to_wire()))
                .collect(),
            payload: PayloadDigest {
                sha256: hex::encode(payload_sha256),
                size: payload_size,
            },
        };
        canonical::to_vec_of(&wire).map_err(StatementError::Canonical)
    }

    /// The map's structural rules (see the module docs).
    pub fn check_file_map(&self) -> Result<(), StatementError> {
        check_file_map(&self.files, self.manifest.entrypoint())
    }
}

/// Where a symlink at `link_path` with text `target` points, as a normalized path relative to
/// the package root, or `None` if it is absolute or leaves the tree.
pub fn resolve_symlink(link_path: &str, target: &str) -> Option<String> {
    if target.is_empty() || target.starts_with('/') || target.contains(['\0', '\\']) {
        return None;
    }
    let mut parts: Vec<&str> = link_path.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => return None,
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The file map rules, shared by the packer (before signing) and verification.
pub fn check_file_map(
    files: &BTreeMap<String, FileEntry>,
    entrypoint: &str,
) -> Result<(), StatementError> {
    let bad = |path: &str, reason: &'static str| StatementError::Entry {
        path: path.to_string(),
        reason,
    };
    for (p, e) in files {
        // Any entry that is a directory prefix of this one would make this path's parent a file
        // or a symlink; BTreeMap order lets us test only proper prefixes.
        let mut prefix = String::new();
        for comp in p
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, init)| init.to_vec())
            .unwrap_or_default()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if files.contains_key(&prefix) {
                return Err(bad(
                    p,
                    "its parent directory is also listed as a file or symlink",
                ));
            }
        }
        if let FileEntry::Symlink { target } = e {
            let resolved = resolve_symlink(p, target)
                .ok_or_else(|| bad(p, "symlink target leaves the package tree"))?;
            if !matches!(files.get(&resolved), Some(FileEntry::File { .. })) {
                return Err(bad(
                    p,
                    "symlink target is not a regular file in the package",
                ));
            }
        }
    }
    match files.get("manifest.json") {
        Some(FileEntry::File { .. }) => {}
        _ => {
            return Err(bad(
                "manifest.json",
                "manifest.json must be a regular file in the package",
            ))
        }
    }
    match files.get(entrypoint) {
        Some(FileEntry::File { mode: 0o755, .. }) => Ok(()),
        Some(_) => Err(bad(
            entrypoint,
            "the entrypoint must be a regular executable (0755) file",
        )),
        None => Err(bad(entrypoint, "the entrypoint is not in the package")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32) -> FileEntry {
        FileEntry::File {
            mode,
            sha256: [0; 32],
            size: 0,
        }
    }

    #[test]
    fn symlink_resolution() {
        assert_eq!(resolve_symlink("a/b", "c").as_deref(), Some("a/c"));
        assert_eq!(resolve_symlink("a/b", "../c").as_deref(), Some("c"));
        assert_eq!(resolve_symlink("b", "../c"), None);
        assert_eq!(resolve_symlink("a/b", "/etc/passwd"), None);
        assert_eq!(resolve_symlink("a/b", "./c"), None);
        assert_eq!(resolve_symlink("a/b", ".."), None);
    }

    #[test]
    fn file_map_rules() {
        let mut m = BTreeMap::new();
        m.insert("manifest.json".to_string(), file(0o644));
        m.insert("entrypoint".to_string(), file(0o755));
        check_file_map(&m, "entrypoint").unwrap();
        assert!(check_file_map(&m, "bin/run").is_err());
        m.insert(
            "lib".to_string(),
            FileEntry::Symlink {
                target: "entrypoint".into(),
            },
        );
        check_file_map(&m, "entrypoint").unwrap();
        m.insert("lib/x".to_string(), file(0o644));
        assert!(check_file_map(&m, "entrypoint").is_err());
        m.remove("lib/x");
        m.insert(
            "esc".to_string(),
            FileEntry::Symlink {
                target: "../../etc/passwd".into(),
            },
        );
        assert!(check_file_map(&m, "entrypoint").is_err());
        m.insert(
            "esc".to_string(),
            FileEntry::Symlink {
                target: "lib".into(),
            },
        );
        assert!(check_file_map(&m, "entrypoint").is_err(), "link to a link");
        m.remove("esc");
        m.insert("entrypoint".to_string(), file(0o644));
        assert!(check_file_map(&m, "entrypoint").is_err(), "not executable");
    }

    #[test]
    fn control_characters_in_paths_and_link_targets_are_refused() {
        let manifest = serde_json::json!({"name": "p", "version": "1.0.0"});
        let rt = semver::Version::new(0, 1, 0);
        for bad in [
            "x\u{1b}[31mRED\u{1b}[0m\rentrypoint",
            "a\tb",
            "a\u{7f}",
            "a\u{85}",
        ] {
            assert!(!valid_file_path(bad));
            let mut m = BTreeMap::new();
            m.insert("manifest.json".to_string(), file(0o644));
            m.insert("entrypoint".to_string(), file(0o755));
            m.insert(bad.to_string(), file(0o644));
            let bytes = Statement::to_canonical(&manifest, &m, &[1; 32], 5).unwrap();
            assert!(matches!(
                Statement::parse(&bytes, &rt),
                Err(StatementError::PathControl(_))
            ));
            let mut m = BTreeMap::new();
            m.insert("manifest.json".to_string(), file(0o644));
            m.insert("entrypoint".to_string(), file(0o755));
            m.insert(
                "link".to_string(),
                FileEntry::Symlink {
                    target: format!("{bad}/../entrypoint"),
                },
            );
            let bytes = Statement::to_canonical(&manifest, &m, &[1; 32], 5).unwrap();
            assert!(matches!(
                Statement::parse(&bytes, &rt),
                Err(StatementError::Entry { .. })
            ));
        }
        // Other Unicode (a bidi override included) is a name, shown escaped, not refused.
        assert!(valid_file_path("caf\u{e9}/\u{202e}txt"));
    }

    #[test]
    fn parse_round_trip_and_canonical_required() {
        let manifest = serde_json::json!({"name": "p", "version": "1.0.0"});
        let mut m = BTreeMap::new();
        m.insert("manifest.json".to_string(), file(0o644));
        m.insert("entrypoint".to_string(), file(0o755));
        let bytes = Statement::to_canonical(&manifest, &m, &[1; 32], 5).unwrap();
        let rt = semver::Version::new(0, 1, 0);
        let s = Statement::parse(&bytes, &rt).unwrap();
        assert_eq!(s.files, m);
        assert_eq!(s.payload_size, 5);
        s.check_file_map().unwrap();
        let mut spaced = bytes.clone();
        spaced.insert(1, b' ');
        assert!(matches!(
            Statement::parse(&spaced, &rt),
            Err(StatementError::NotCanonical)
        ));
    }

    /// A package a newer Stockade made is refused as such, not as malformed: a statement of
    /// format 2 with a field this build does not know is `NewerFormat` (it was `Json`, "not
    /// JSON of the expected shape"), and a signed manifest with a field this build does not know
    /// and a `min_runtime_version` above this runtime is `RuntimeTooOld` (it was `Parse`). A
    /// manifest with an unknown field for this runtime, or a newer one's version that does not
    /// parse, stays a parse error: an unknown field is never dropped. So does a known field of
    /// the wrong type, whatever runtime it asks for (review-130).
    #[test]
    fn a_package_of_a_newer_stockade_is_refused_as_such() {
        let rt = semver::Version::new(0, 1, 0);
        let mut m = BTreeMap::new();
        m.insert("manifest.json".to_string(), file(0o644));
        m.insert("entrypoint".to_string(), file(0o755));
        let manifest = serde_json::json!({"name": "p", "version": "1.0.0"});
        let bytes = Statement::to_canonical(&manifest, &m, &[1; 32], 5).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["format"] = 2.into();
        v["sandbox"] = serde_json::json!({"network": "none"});
        let newer = canonical::to_vec(&v).unwrap();
        assert!(matches!(
            Statement::parse(&newer, &rt),
            Err(StatementError::NewerFormat(2))
        ));
        // A field this build does not know, a capability it does not know, and (review-130) a
        // known field of the wrong type, which is no newer runtime's: a parse error whatever
        // runtime the manifest asks for (it was RuntimeTooOld with 0.2.0).
        let unknown_field =
            serde_json::json!({"name": "p", "version": "1.0.0", "seccomp_profile": "strict"});
        let unknown_capability = serde_json::json!({"name": "p", "version": "1.0.0",
            "requested_capabilities": ["log", "teleport"]});
        let wrong_type = serde_json::json!({"name": "p", "version": 1});
        let wrong_type_nested = serde_json::json!({"name": "p", "version": "1.0.0",
            "dependencies": [{"name": "q", "version": 2}]});
        for (base, min, newer_runtime) in [
            (&unknown_field, Some("0.2.0"), true),
            (&unknown_field, Some("0.1.0"), false),
            (&unknown_field, Some("not a version"), false),
            (&unknown_field, None, false),
            (&unknown_capability, Some("0.2.0"), true),
            (&wrong_type, Some("0.2.0"), false),
            (&wrong_type_nested, Some("0.2.0"), false),
        ] {
            let mut manifest = base.clone();
            if let Some(min) = min {
                manifest["min_runtime_version"] = min.into();
            }
            let bytes = Statement::to_canonical(&manifest, &m, &[1; 32], 5).unwrap();
            let r = Statement::parse(&bytes, &rt);
            if newer_runtime {
                assert!(
                    matches!(&r, Err(StatementError::Manifest(ManifestError::RuntimeTooOld { required })) if required == "0.2.0"),
                    "{base} {min:?}: {r:?}"
                );
            } else {
                assert!(
                    matches!(&r, Err(StatementError::Manifest(ManifestError::Parse(_)))),
                    "{base} {min:?}: {r:?}"
                );
            }
        }
    }
}
