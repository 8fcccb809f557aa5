//! Signed plugin indexes (seed 004, plus what a signed repository must defend against: TUF's
//! rollback, freeze and key-compromise cases). Pure: the runtime fetches bytes and passes "now";
//! everything decided about an index is decided here.
//!
//! The document is seed 004's `index.json` (hosts ignore unknown fields), with two additions that
//! are required here:
//! - `version`: an integer the operator raises with every change. A host remembers the highest
//!   version (and its digest) seen per source and refuses a lower one (**rollback**: an attacker
//!   replaying an old index that still lists a vulnerable version) or the same version with other
//!   content;
//! - `expires`: an RFC 3339 UTC time (`2026-12-31T00:00:00Z`). An expired index is refused
//!   (**freeze**: an attacker withholding updates by serving a stale but validly signed index).
//!
//! An entry may also carry `"delisted": {"reason": "…"}`: it stays installed where it is, is flagged,
//! gets no updates, and cannot be newly installed.

use crate::minisign::{KeyId, MinisignError, PublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use stockade_policy::manifest::valid_name;

/// The only index format this host reads.
pub const INDEX_FORMAT: u64 = 1;
/// Largest `index.json` read.
pub const MAX_INDEX_BYTES: usize = 8 * 1024 * 1024;

/// Why an index (or a choice from it) is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Not JSON of the expected shape.
    #[error("index.json is malformed")]
    Malformed(#[source] serde_json::Error),
    /// Larger than [`MAX_INDEX_BYTES`].
    #[error("index.json is larger than {MAX_INDEX_BYTES} bytes")]
    TooLarge,
    /// A format this host does not read.
    #[error("index format {0} is not supported (this host reads format {INDEX_FORMAT})")]
    Format(u64),
    /// A key that does not parse.
    #[error("index field {field} is not a minisign public key")]
    Key {
        /// Which field.
        field: String,
        /// Why.
        #[source]
        source: MinisignError,
    },
    /// `expires` is not an RFC 3339 UTC time.
    #[error("index `expires` ({0}) is not an RFC 3339 UTC time such as 2026-12-31T00:00:00Z")]
    Expires(String),
    /// `expires` is an RFC 3339 UTC time before 1970, which this host does not accept (times
    /// are Unix seconds from 1970): told apart from [`IndexError::Expires`] so that the
    /// operator is not sent looking for a syntax error in a well-formed time.
    #[error(
        "index `expires` ({0}) is before 1970-01-01T00:00:00Z: a time before 1970 is not accepted"
    )]
    ExpiresBefore1970(String),
    /// An entry is invalid.
    #[error("index entry `{id}`: {reason}")]
    Entry {
        /// The entry's id as written.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Rollback: an older index than one already seen.
    #[error("index version {found} is older than version {seen} already seen from this source (rollback refused)")]
    Rollback {
        /// Highest version seen.
        seen: u64,
        /// Version offered.
        found: u64,
    },
    /// The same version with other content.
    #[error("index version {version} changed content without a new version number (refused)")]
    Changed {
        /// The version.
        version: u64,
    },
    /// Freeze: the index is past its expiry.
    #[error("index expired at {expires} (a stale index may be withholding updates; refused)")]
    Expired {
        /// As written.
        expires: String,
    },
}

/// One downloadable build.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Artifact {
    /// Where the package is (absolute, or relative to the index's URL).
    pub url: String,
    /// Lowercase hex SHA-256 of the package bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the author's detached minisign signature over the package bytes is.
    pub signature_url: String,
}

/// The author block of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Author {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The author's minisign public key (bare base64 line).
    pub pubkey: String,
    /// Keys this author used before (for rotation proofs).
    #[serde(default)]
    pub previous_pubkeys: Vec<String>,
}

/// Why an entry is delisted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Delisted {
    /// As the curator wrote it.
    #[serde(default)]
    pub reason: String,
}

/// One plugin version in an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// Plugin id (= the package manifest's `name`).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Semantic version (= the manifest's `version`).
    pub version: String,
    /// Curation tier (= the manifest's `tier`).
    #[serde(default)]
    pub tier: Option<String>,
    /// Short description.
    #[serde(default)]
    pub description: String,
    /// Who signs the artifacts.
    pub author: Author,
    /// The bare artifact (counts only as `windows-x86_64`, per seed 004).
    #[serde(default)]
    pub artifact: Option<Artifact>,
    /// Builds per `<os>-<arch>`.
    #[serde(default)]
    pub platforms: BTreeMap<String, Artifact>,
    /// Present when the curator delisted the plugin.
    #[serde(default)]
    pub delisted: Option<Delisted>,
}

#[derive(Debug, Deserialize)]
struct Wire {
    format: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    operator: String,
    operator_pubkey: String,
    #[serde(default)]
    previous_operator_pubkeys: Vec<String>,
    version: u64,
    expires: String,
    #[serde(default)]
    plugins: Vec<Entry>,
}

/// An index that parsed and validated (its signature is checked by the caller, first).
#[derive(Debug, Clone)]
pub struct Index {
    /// Display name.
    pub name: String,
    /// Operator handle.
    pub operator: String,
    /// The key the index says it is signed with.
    pub operator_pubkey: PublicKey,
    /// Keys the operator used before.
    pub previous_operator_pubkeys: Vec<PublicKey>,
    /// Monotonic version.
    pub version: u64,
    /// Expiry as written.
    pub expires: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// Entries.
    pub plugins: Vec<Entry>,
    /// SHA-256 of the exact bytes.
    pub sha256: [u8; 32],
}

fn key(field: impl Into<String>, b64: &str) -> Result<PublicKey, IndexError> {
    PublicKey::from_base64(b64.trim()).map_err(|source| IndexError::Key {
        field: field.into(),
        source,
    })
}

/// Whether `s`, which `humantime::parse_rfc3339` refused, is a well-formed RFC 3339 UTC time
/// whose year is before 1970 (humantime refuses those as out of range, like an hour 24): the
/// same text with its year moved to one at or after 1970 of the same leapness (2000 or 2001, so
/// that a 29 February stays valid exactly when it was) parses.
fn before_1970(s: &str) -> bool {
    let Some(year) = s
        .get(..4)
        .filter(|y| y.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|y| y.parse::<u32>().ok())
    else {
        return false;
    };
    if year >= 1970 {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let moved = format!("{}{}", if leap { "2000" } else { "2001" }, &s[4..]);
    humantime::parse_rfc3339(&moved).is_ok()
}

fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl Index {
    /// Parse and validate `index.json` bytes. Unknown fields are ignored (seed 004).
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge);
        }
        let w: Wire = serde_json::from_slice(bytes).map_err(IndexError::Malformed)?;
        if w.format != INDEX_FORMAT {
            return Err(IndexError::Format(w.format));
        }
        let operator_pubkey = key("operator_pubkey", &w.operator_pubkey)?;
        let previous_operator_pubkeys = w
            .previous_operator_pubkeys
            .iter()
            .map(|k| key("previous_operator_pubkeys", k))
            .collect::<Result<_, _>>()?;
        let expires_at = humantime::parse_rfc3339(&w.expires)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .ok_or_else(|| {
                if before_1970(&w.expires) {
                    IndexError::ExpiresBefore1970(w.expires.clone())
                } else {
                    IndexError::Expires(w.expires.clone())
                }
            })?;
        let mut seen = BTreeSet::new();
        for e in &w.plugins {
            let bad = |reason: String| IndexError::Entry {
                id: e.id.clone(),
                reason,
            };
            if !valid_name(&e.id) {
                return Err(bad("id must match [a-z0-9][a-z0-9._-]{0,63}".into()));
            }
            semver::Version::parse(&e.version)
                .map_err(|err| bad(format!("version `{}`: {err}", e.version)))?;
            if !seen.insert((e.id.clone(), e.version.clone())) {
                return Err(bad(format!("version {} is listed twice", e.version)));
            }
            if !allowed_author_name(&e.author.name) {
                return Err(bad(format!(
                    "author.name must be at most {MAX_AUTHOR_NAME_CHARS} characters, none a control \
                     character or a bidirectional override, embedding or isolate"
                )));
            }
            key(format!("{}.author.pubkey", e.id), &e.author.pubkey)?;
            for k in &e.author.previous_pubkeys {
                key(format!("{}.author.previous_pubkeys", e.id), k)?;
            }
            for (p, a) in e
                .artifact
                .iter()
                .map(|a| ("artifact", a))
                .chain(e.platforms.iter().map(|(k, a)| (k.as_str(), a)))
            {
                if !valid_sha256(&a.sha256) {
                    return Err(bad(format!("{p}: sha256 must be 64 lowercase hex digits")));
                }
                if a.url.is_empty() || a.signature_url.is_empty() {
                    return Err(bad(format!("{p}: url and signature_url are required")));
                }
            }
        }
        Ok(Self {
            name: w.name,
            operator: w.operator,
            operator_pubkey,
            previous_operator_pubkeys,
            version: w.version,
            expires: w.expires,
            expires_at,
            plugins: w.plugins,
            sha256: Sha256::digest(bytes).into(),
        })
    }

    /// Rollback and freeze: refuse a version below `seen`, the same version with other content,
    /// and an index at or past its expiry.
    pub fn check_fresh(&self, seen: Option<(u64, [u8; 32])>, now: u64) -> Result<(), IndexError> {
        if let Some((v, digest)) = seen {
            if self.version < v {
                return Err(IndexError::Rollback {
                    seen: v,
                    found: self.version,
                });
            }
            if self.version == v && self.sha256 != digest {
                return Err(IndexError::Changed { version: v });
            }
        }
        if now >= self.expires_at {
            return Err(IndexError::Expired {
                expires: self.expires.clone(),
            });
        }
        Ok(())
    }

    /// Every entry for `id`, highest version first.
    pub fn versions(&self, id: &str) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.plugins.iter().filter(|e| e.id == id).collect();
        v.sort_by_key(|e| std::cmp::Reverse(entry_version(e)));
        v
    }
}

/// What a host remembers of a source's index: the highest version seen and that version's
/// SHA-256.
pub type SeenIndex = (u64, [u8; 32]);

/// The rollback floor a host enforces from two memories of one source: `own`, kept where only
/// the configuration's owner writes, and `shared`, which a less trusted user (the refresh timer's)
/// may write too. The higher version wins, and on a tie `own` (its digest): `shared` can raise the
/// floor, never lower it or swap the digest of a version `own` saw. Raising it too high withholds
/// updates, as the index operator could by a freeze; it lets nothing older in.
pub fn floor(own: Option<SeenIndex>, shared: Option<SeenIndex>) -> Option<SeenIndex> {
    match (own, shared) {
        (Some(o), Some(s)) if s.0 > o.0 => Some(s),
        (Some(o), _) => Some(o),
        (None, s) => s,
    }
}

/// The entry's version (validated by [`Index::parse`]).
pub fn entry_version(e: &Entry) -> semver::Version {
    semver::Version::parse(&e.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

/// This host's platform key, `<os>-<arch>` as seed 004 spells it (`linux-x86_64`).
pub fn platform(os: &str, arch: &str) -> String {
    format!("{os}-{arch}")
}

/// The build for `platform`: its `platforms` entry, else the bare artifact when the platform is
/// `windows-x86_64` (seed 004); `Err` lists what exists, for the "unavailable" message.
pub fn choose_artifact<'a>(e: &'a Entry, platform: &str) -> Result<&'a Artifact, Vec<String>> {
    if let Some(a) = e.platforms.get(platform) {
        return Ok(a);
    }
    if platform == "windows-x86_64" {
        if let Some(a) = &e.artifact {
            return Ok(a);
        }
    }
    let mut have: Vec<String> = e.platforms.keys().cloned().collect();
    if e.artifact.is_some() && !have.iter().any(|h| h == "windows-x86_64") {
        have.push("windows-x86_64".into());
    }
    Err(have)
}

/// A key's fingerprint as shown to people: hex SHA-256 of the raw minisign public key (algorithm
/// tag, key id, key), which unlike the 8-byte key id cannot be chosen to collide.
pub fn fingerprint(k: &PublicKey) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(k.to_base64())
        .unwrap_or_default();
    hex::encode(Sha256::digest(&raw))
}

/// `KEYID (sha256 abcd…)`: what messages print.
pub fn describe(k: &PublicKey) -> String {
    format!("{} (sha256 {})", k.key_id, &fingerprint(k)[..16])
}

/// The longest `author.name` an index entry may carry: it keys a pin in the host's state.
pub const MAX_AUTHOR_NAME_CHARS: usize = 128;

/// Characters an author's name may not hold at all: control characters, and the bidirectional
/// embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069), which reorder how the
/// rest of the name is displayed ("Trojan Source"): a reviewer reading a pin prompt or `store
/// show` must see the name the pin is kept under. Other format characters (a ZWNJ in a Persian
/// spelling) are allowed and left out of the pin key ([`author_pin_key`]).
pub fn refused_in_name(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether an index may carry `name` as an author's name: at most [`MAX_AUTHOR_NAME_CHARS`]
/// characters, none [`refused_in_name`]. (An empty or blank name is allowed: it names no
/// author.)
pub fn allowed_author_name(name: &str) -> bool {
    name.chars().count() <= MAX_AUTHOR_NAME_CHARS && !name.chars().any(refused_in_name)
}

/// Characters that show nothing, so that two names differing only in them look the same: every
/// format character (general category Cf: zero-width space/joiners, soft hyphen, BOM, tags…)
/// and the rest of Unicode's default-ignorable code points (the variation selectors, the
/// combining grapheme joiner, the Khmer inherent vowels, the Mongolian variation selectors,
/// U+2065, U+FFF0–U+FFF8, the whole U+E0000 block), the Hangul fillers and the blank braille
/// pattern. The category comes from the Unicode tables of `unicode-properties` (which has no
/// Default_Ignorable_Code_Point property: the non-Cf part of it is listed here).
fn invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{034F}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2065}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{E0000}'..='\u{E0FFF}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{FFA0}'
                | '\u{2800}'
        )
}

/// The form of an author's name that its pin is kept under (readable: what pins.json shows):
/// characters that show nothing dropped, surrounding white space dropped, inner runs of it made
/// one space, lower case. "Alice", " alice ", "ALICE" and "Ali\u{200B}ce" are one author, so a
/// changed spelling cannot pass for a new author with a new key. An empty key (a name of only
/// white space or invisible characters) names no author: no pin is kept for it. Names are
/// compared by [`author_match_key`], which also folds look-alike letters.
pub fn author_pin_key(name: &str) -> String {
    visible_words(name).to_lowercase()
}

/// `name` without what shows nothing, its white space trimmed and collapsed.
fn visible_words(name: &str) -> String {
    let visible: String = name.chars().filter(|c| !invisible(*c)).collect();
    words(&visible)
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What two author names are compared by: the visible name taken to its UTS #39 skeleton
/// (`unicode-security`: the Unicode confusables table), lower-cased, and taken to its skeleton
/// again, with `i` read as `l` — so names that look alike are one author whatever their case:
/// a Cyrillic "Аcme" or "АСМЕ", a Greek "ΝΟΚΙΑ", a mathematical "𝐀𝐜𝐦𝐞", "PayPaI" with a capital
/// I, "Micr0soft" all match their Latin spelling and must come with its key. Skeletons are
/// case-sensitive (a capital I is an l, a small i is not; a capital Cyrillic М is an M, a
/// small м is not an m), hence the two passes around the lower-casing and the `i`. The table
/// folds some look-alikes within a script too ("rn" and "m", "l", "I" and "i"): two real authors
/// whose names differ only so are taken for one, and the second needs `source repin-author`
/// (the safe side of the mistake; the first's pin is then replaced, which repin-author says).
pub fn author_match_key(name: &str) -> String {
    use unicode_security::confusable_detection::skeleton;
    let once: String = skeleton(&visible_words(name)).collect();
    let twice: String = skeleton(&once.to_lowercase()).collect();
    words(&twice.to_lowercase().replace('i', "l"))
}

/// What a pin check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOutcome {
    /// Nothing pinned yet: trust on first use; pin this key.
    FirstUse,
    /// The pinned key.
    Match,
    /// A new key with a valid rotation proof from the pinned one: re-pin.
    Rotated {
        /// The key that was pinned.
        from: KeyId,
    },
}

/// A key change without a rotation proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key changed from the pinned {pinned} to {offered} without a rotation proof ({why})")]
pub struct PinMismatch {
    /// The pinned key, described.
    pub pinned: String,
    /// The offered key, described.
    pub offered: String,
    /// What the proof lacked.
    pub why: &'static str,
}

/// The pin decision (seed 004 "Key pinning"), for an author or an operator key. `listed`: the
/// pinned key appears in the `previous_*` list; `prove` checks the second, `.prev` signature by
/// the pinned key (called only when it can matter, so a host fetches it only then).
pub fn check_pin(
    pinned: Option<&PublicKey>,
    offered: &PublicKey,
    previous: &[PublicKey],
    prove: impl FnOnce(&PublicKey) -> bool,
) -> Result<PinOutcome, PinMismatch> {
    let Some(pinned) = pinned else {
        return Ok(PinOutcome::FirstUse);
    };
    if pinned == offered {
        return Ok(PinOutcome::Match);
    }
    let mismatch = |why| PinMismatch {
        pinned: describe(pinned),
        offered: describe(offered),
        why,
    };
    if !previous.contains(pinned) {
        return Err(mismatch("the pinned key is not listed as a previous key"));
    }
    if !prove(pinned) {
        return Err(mismatch(
            "no valid .prev signature by the pinned key over the same bytes",
        ));
    }
    Ok(PinOutcome::Rotated {
        from: pinned.key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minisign::SecretKey;
    use serde_json::json;

    fn sk(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32], [n; 8])
    }

    fn doc(extra: serde_json::Value) -> serde_json::Value {
        let mut d = json!({
            "format": 1, "name": "Test", "operator": "op",
            "operator_pubkey": sk(1).public_key().to_base64(),
            "version": 3, "expires": "2030-01-01T00:00:00Z",
            "some_future_field": {"ignored": true},
            "plugins": [{
                "id": "hello", "version": "1.2.0", "tier": "B",
                "author": {"name": "a", "pubkey": sk(2).public_key().to_base64()},
                "platforms": {"linux-x86_64": {"url": "hello.stockade", "sha256": "00".repeat(32), "size": 10, "signature_url": "hello.stockade.minisig"}},
                "icon_url": "https://example.org/i.png"
            }, {
                "id": "hello", "version": "1.10.0",
                "author": {"pubkey": sk(2).public_key().to_base64()},
                "artifact": {"url": "w.stockade", "sha256": "11".repeat(32), "size": 10, "signature_url": "w.minisig"}
            }]
        });
        if let (Some(o), Some(e)) = (d.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        d
    }

    fn parse(v: &serde_json::Value) -> Result<Index, IndexError> {
        Index::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn parses_ignoring_unknown_fields_and_orders_versions() {
        let i = parse(&doc(json!({}))).unwrap();
        assert_eq!(i.version, 3);
        assert_eq!(i.expires_at, 1_893_456_000);
        let v: Vec<&str> = i
            .versions("hello")
            .iter()
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(v, ["1.10.0", "1.2.0"]);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            parse(&doc(json!({"format": 2}))),
            Err(IndexError::Format(2))
        ));
        assert!(matches!(
            parse(&doc(json!({"expires": "tomorrow"}))),
            Err(IndexError::Expires(_))
        ));
        // A well-formed time before 1970 is refused as such, not as a syntax error; one
        // before 1970 that is not well formed (no 29 February 1900, no hour 24) is still
        // "not an RFC 3339 time".
        for early in [
            "1969-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "1968-02-29T00:00:00Z",
            "1600-02-29T12:00:00.5+00:00",
        ] {
            let e = parse(&doc(json!({ "expires": early }))).unwrap_err();
            assert!(
                matches!(e, IndexError::ExpiresBefore1970(_)),
                "{early}: {e:?}"
            );
            assert!(e.to_string().contains("before 1970"), "{e}");
            assert!(!e.to_string().contains("not an RFC 3339"), "{e}");
        }
        for bad in [
            "1900-02-29T00:00:00Z",
            "1969-12-31T24:00:00Z",
            "1969-13-01T00:00:00Z",
            "1969-12-31",
            "-001-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(
                    parse(&doc(json!({ "expires": bad }))),
                    Err(IndexError::Expires(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse(&doc(json!({"expires": "1970-01-01T00:00:00Z"})))
                .unwrap()
                .expires_at,
            0
        );
        assert!(matches!(
            parse(&doc(json!({"operator_pubkey": "RWnope"}))),
            Err(IndexError::Key { .. })
        ));
        let mut d = doc(json!({}));
        d["plugins"][0]["platforms"]["linux-x86_64"]["sha256"] = json!("XYZ");
        assert!(matches!(parse(&d), Err(IndexError::Entry { .. })));
        let mut d = doc(json!({}));
        d["plugins"][1]["version"] = json!("1.2.0");
        assert!(parse(&d).unwrap_err().to_string().contains("listed twice"));
        let mut d = doc(json!({}));
        d["plugins"][0]["id"] = json!("../etc");
        assert!(matches!(parse(&d), Err(IndexError::Entry { .. })));
        for name in ["a\u{7}b".to_string(), "x".repeat(MAX_AUTHOR_NAME_CHARS + 1)] {
            let mut d = doc(json!({}));
            d["plugins"][0]["author"]["name"] = json!(name);
            let e = parse(&d).unwrap_err();
            assert!(e.to_string().contains("author.name"), "{e}");
        }
        let mut d = doc(json!({}));
        d["plugins"][0]["author"]["name"] = json!("é".repeat(MAX_AUTHOR_NAME_CHARS));
        assert!(parse(&d).is_ok());
        assert!(matches!(Index::parse(b"{"), Err(IndexError::Malformed(_))));
    }

    #[test]
    fn author_names_pin_by_one_spelling() {
        for n in ["Alice Smith", " alice  smith ", "ALICE\tSMITH"] {
            assert_eq!(author_pin_key(n), "alice smith");
        }
        assert_ne!(author_pin_key("Alice"), author_pin_key("Alicia"));
        assert_eq!(author_pin_key("ÉLODIE"), "élodie");
        // What shows nothing is not part of the name.
        for n in [
            "Ali\u{200B}ce Smith",
            "\u{FEFF}Alice\u{00AD} Smith",
            "Alice\u{FE0F} \u{2800}Smith",
            "Alice \u{3164} Smith\u{E0041}",
            "Al\u{034F}ice\u{200D} Smith",
            "Ali\u{17B4}ce Smith\u{E0FFF}\u{FFF0}",
        ] {
            assert_eq!(author_pin_key(n), "alice smith", "{n:?}");
        }
        for n in ["", "   ", "\u{200B}", " \u{3164}\u{FEFF} ", "\u{2800}"] {
            assert_eq!(author_pin_key(n), "", "{n:?}");
        }
    }

    #[test]
    fn look_alike_author_names_match() {
        let acme = author_match_key("Acme");
        for n in [
            "\u{0410}\u{0441}m\u{0435}", // Cyrillic А, с and е around a Latin m
            "\u{0410}cme",               // a Cyrillic capital A
            "\u{1D400}\u{1D41C}\u{1D426}\u{1D41E}", // mathematical bold
            " ACME ",
            "Ac\u{200B}me",
        ] {
            assert_eq!(author_match_key(n), acme, "{n:?}");
        }
        assert_eq!(author_match_key("Micr0soft"), author_match_key("microsoft"));
        // Capitals of other scripts, and a capital I for an l, whatever the case.
        for (a, b) in [
            ("\u{0410}\u{0421}\u{041C}\u{0415}", "ACME"), // Cyrillic capitals
            ("\u{0410}\u{0421}\u{041C}\u{0415}", "acme"),
            ("\u{0412}\u{041C}W", "BMW"),
            ("\u{039D}\u{039F}\u{039A}\u{0399}\u{0391}", "Nokia"), // Greek capitals
            ("\u{0397}\u{0395}\u{03A1}\u{0391}", "HEPA"),
            ("PayPaI", "PayPal"),
            ("ALICE", "alice"),
        ] {
            assert_eq!(author_match_key(a), author_match_key(b), "{a:?} {b:?}");
        }
        // All-Cyrillic "раура" and a Latin "l": PayPal.
        assert_eq!(
            author_match_key("\u{0440}\u{0430}\u{0443}\u{0440}\u{0430}l"),
            author_match_key("PayPal")
        );
        assert_ne!(author_match_key("Acme"), author_match_key("Acne"));
        assert_ne!(author_match_key("Alice"), author_match_key("Alicia"));
        // Composed and decomposed accents are one name.
        assert_eq!(
            author_match_key("\u{00C9}lodie"),
            author_match_key("E\u{0301}lodie")
        );
        assert_eq!(author_match_key("\u{200B}"), "");
    }

    #[test]
    fn author_names_refuse_controls_and_bidi_reordering_only() {
        for bad in [
            "Alice\u{202E}htims",
            "\u{202A}Alice",
            "\u{2066}Alice\u{2069}",
            "Ali\u{7}ce",
        ] {
            let mut d = doc(json!({}));
            d["plugins"][0]["author"]["name"] = json!(bad);
            let e = parse(&d).unwrap_err();
            assert!(e.to_string().contains("bidirectional"), "{bad:?}: {e}");
        }
        // A ZWNJ is part of Persian spelling: accepted (and left out of the pin key).
        let mut d = doc(json!({}));
        d["plugins"][0]["author"]["name"] = json!("می\u{200C}خواهم");
        assert!(parse(&d).is_ok());
    }

    #[test]
    fn rollback_changed_and_freeze() {
        let i = parse(&doc(json!({}))).unwrap();
        assert!(i.check_fresh(None, 0).is_ok());
        assert!(i.check_fresh(Some((3, i.sha256)), 0).is_ok());
        assert!(i.check_fresh(Some((2, [0; 32])), 0).is_ok());
        assert!(matches!(
            i.check_fresh(Some((4, [0; 32])), 0),
            Err(IndexError::Rollback { seen: 4, found: 3 })
        ));
        assert!(matches!(
            i.check_fresh(Some((3, [0; 32])), 0),
            Err(IndexError::Changed { version: 3 })
        ));
        assert!(matches!(
            i.check_fresh(None, i.expires_at),
            Err(IndexError::Expired { .. })
        ));
    }

    #[test]
    fn the_shared_memory_only_raises_the_floor() {
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(floor(None, None), None);
        assert_eq!(floor(Some((5, a)), None), Some((5, a)));
        assert_eq!(floor(None, Some((5, b))), Some((5, b)));
        // Lower, or the same version with another digest: the owner's own memory stands.
        assert_eq!(floor(Some((5, a)), Some((1, b))), Some((5, a)));
        assert_eq!(floor(Some((5, a)), Some((5, b))), Some((5, a)));
        // Higher: raised.
        assert_eq!(floor(Some((5, a)), Some((6, b))), Some((6, b)));
    }

    #[test]
    fn platform_choice() {
        let i = parse(&doc(json!({}))).unwrap();
        let v = i.versions("hello");
        let (newest, older) = (v[0], v[1]);
        assert_eq!(
            choose_artifact(older, "linux-x86_64").unwrap().url,
            "hello.stockade"
        );
        assert_eq!(
            choose_artifact(older, "linux-aarch64").unwrap_err(),
            ["linux-x86_64"]
        );
        // The bare artifact is windows-x86_64 only.
        assert_eq!(
            choose_artifact(newest, "linux-x86_64").unwrap_err(),
            ["windows-x86_64"]
        );
        assert!(choose_artifact(newest, "windows-x86_64").is_ok());
        assert_eq!(platform("linux", "x86_64"), "linux-x86_64");
    }

    #[test]
    fn pinning_and_rotation() {
        let (old, new, other) = (sk(2).public_key(), sk(3).public_key(), sk(4).public_key());
        assert_eq!(
            check_pin(None, &new, &[], |_| false),
            Ok(PinOutcome::FirstUse)
        );
        assert_eq!(
            check_pin(Some(&new), &new, &[], |_| false),
            Ok(PinOutcome::Match)
        );
        assert_eq!(
            check_pin(Some(&old), &new, std::slice::from_ref(&old), |k| *k == old),
            Ok(PinOutcome::Rotated { from: old.key_id })
        );
        // Listed but no proof; proof but not listed; a third key.
        let e = check_pin(Some(&old), &new, std::slice::from_ref(&old), |_| false).unwrap_err();
        assert!(e.to_string().contains(&old.key_id.to_string()));
        assert!(e.to_string().contains(&new.key_id.to_string()));
        assert!(check_pin(Some(&old), &new, &[], |_| true).is_err());
        assert!(check_pin(Some(&old), &other, std::slice::from_ref(&new), |_| true).is_err());
        assert_eq!(fingerprint(&old).len(), 64);
        assert_ne!(fingerprint(&old), fingerprint(&new));
    }
}
