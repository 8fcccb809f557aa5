//! Plugin sources: signed indexes (seed 004) and the key pins that make them trustworthy. The
//! decisions (index validation, rollback/freeze, platform choice, pin/rotation) are pure, in
//! `stockade_trust::index`; this module fetches bytes, keeps state, and runs the steps in order.
//!
//! State (written atomically, under the store lock held by the caller — by the store's owner:
//! the timer's user takes none of root's store, `Store::lock_existing` says why — and the
//! sources directory's lock where the configuration is in one: [`lock_config`]), in the places
//! [`Places`] says:
//! - `sources.json`: per source, its URL, the pinned operator key, and the highest index version
//!   seen with its digest (the owner's rollback floor) — configuration;
//! - `pins.json`: per plugin id, and per author name an index gives (seed 004: "the first
//!   install of any plugin by an author pins that author's public key"), the pinned author
//!   (developer) key — trust on first use, changed only by a rotation proof or by
//!   `stockade source repin-author` — configuration;
//! - `sources-seen.json`: the highest index version (and digest) seen per source by anyone who
//!   refreshed, the refresh timer's user included (the shared rollback memory), in the state
//!   directory;
//! - `indexes/<source>.index`: the last verified index with its signature, one file
//!   ([`CachedIndex`]: two files written in turn could be read as a pair that does not verify),
//!   which `list` reads to flag delisted plugins without a download, in the state directory.
//!
//! Who decides what: `sources.json` and `pins.json` are the operator's configuration. They are
//! read only if they belong to the running user or root and nobody else may write them
//! ([`read_owned`]: no symlink, FIFO or second link either; 78 `source.unsafe` otherwise), and
//! written only by the user they belong to (root keeps them root's, 0644). Where they are: in
//! the state directory when it is the running user's own, and otherwise in a sources directory
//! that no other user can write or rename in (`/etc/stockade/sources`, [`Places`]): in the
//! packaged layout the state directory belongs to the `stockade` user, whose timer refreshes the
//! indexes and who could rename root's files there — put back an older `pins.json` after root
//! re-pinned a compromised author key, or remove it — which no check of the file itself can tell
//! (an earlier build recorded digests in a `trusted.*` attribute of the state directory, which
//! needed CAP_SYS_ADMIN and a filesystem with such attributes, and protected nothing elsewhere;
//! the sources directory needs neither). That timer, told where root's configuration is
//! (`STOCKADE_SOURCES_DIR` in its unit), reads it and records what it saw only in
//! `sources-seen.json`, which root reads too, but only to raise its floor ([`index::floor`]: the
//! higher version wins, and on a tie root's own digest): a lower version written there lowers
//! nothing. A rotation proof it finds (a new operator key) it cannot pin, so that source's
//! refresh fails (91 `index.rotation_needs_owner`) and keeps the last good index until root's
//! next refresh takes the rotation. Files an earlier build left in the state directory are
//! refused until the operator has checked and moved them ([`SourceError::LeftBehind`]); once
//! the sources directory holds a file of that name, one in the state directory is no leftover
//! and is to be removed, not moved over it ([`SourceError::StrayCopy`]).
//!
//! Install by id, in seed 004's fail-closed order (each step its own error and exit code, 90–99;
//! no plugin code runs in any of them):
//! 1. index signature against the source's pinned operator key (a key change is accepted only
//!    with a rotation proof: the pinned key listed in `previous_operator_pubkeys` and a valid
//!    `index.json.minisig.prev` by it) — then the index's version (rollback) and expiry (freeze);
//! 2. artifact size and SHA-256 against the index entry (before any signature is looked at);
//! 3. the artifact's detached signature against `author.pubkey`;
//! 4. the author pin (rotation: the pinned key in `author.previous_pubkeys` and a valid
//!    `<signature_url>.prev` by it); no first use for a plugin the store already holds, signed
//!    (its pin was recorded, so `pins.json` lost it: [`check_pin_not_lost`]);
//! 5. the package's own fail-closed verification (80–87), then exact agreement of id, version,
//!    tier and signer with the index entry (the store, `cmd/store.rs`);
//! 6. consent: the operator policy and its grants decide at launch what the plugin may do;
//! 7. register: the pin is recorded, then the store commits.
//!
//! URLs: `file://`, `https://` (rustls, webpki roots), and `http://` to loopback only (local
//! mirrors and tests: plain HTTP elsewhere would let anyone on the path withhold or replay — the
//! signatures stop forgery, not freeze or denial). Redirects are not followed. Every download
//! is capped. Artifact and signature URLs may be relative to the index URL, and may not be more
//! local than it ([`check_entry_url`]): an index served from elsewhere must not make this host
//! read its own files (`file:///etc/machine-id`) or its loopback services and report what it got
//! (a size, a SHA-256) in an error and the audit log. Both rules and the download read a URL
//! one way ([`check_url`], [`locality`]: the `url` crate's parse, whose serialization is what
//! ureq is given), so no spelling of a host can mean one thing to a rule and another to the
//! connection.

use crate::exit::Exit;
use crate::fileio::{
    check_no_other_writer, read_capped, read_owned, read_owned_in, write_atomic, write_state_file,
    FileError, HeldDir, HeldDirError,
};
use crate::package::container::MAX_PACKAGE_BYTES;
use crate::state::StateError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stockade_trust::index::{
    self, author_match_key, author_pin_key, check_pin, choose_artifact, describe, fingerprint,
    Entry, Index, IndexError, PinMismatch, PinOutcome, SeenIndex, MAX_INDEX_BYTES,
};
use stockade_trust::minisign::{PublicKey, Signature};

/// Sources file in the state directory.
pub const SOURCES_FILE: &str = "sources.json";
/// Author pins file in the state directory.
pub const PINS_FILE: &str = "pins.json";
/// The shared rollback memory in the state directory (what every refresh saw, the timer's too).
pub const SEEN_FILE: &str = "sources-seen.json";
/// Verified-index cache directory in the state directory.
pub const INDEX_CACHE_DIR: &str = "indexes";
/// Largest signature file fetched.
pub const MAX_SIG_BYTES: u64 = 4096;
/// The index cache file's schema tag ([`CachedIndex`]).
const INDEX_CACHE_SCHEMA: &str = "stockade-index-cache/1";

/// One source's last verified index as cached in `indexes/<source>.index`: the index's exact
/// bytes and the operator's signature over them in one file, written whole by rename.
///
/// Why one file: the cache was two (`<source>.json`, `<source>.json.minisig`), written one after
/// the other, so a kill between the two writes, or a `list` reading while a refresh wrote them,
/// found a pair that did not verify, and `list` showed a delisted plugin as listed, saying
/// nothing, until the next refresh. One file replaced by rename is always a pair that was
/// verified together. A source's name cannot make `<name>.index` collide with an earlier
/// build's `<other>.json` or `<other>.json.minisig`: the suffixes differ.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedIndex {
    /// [`INDEX_CACHE_SCHEMA`].
    schema: String,
    /// The index's bytes (JSON, so text: an index is parsed as UTF-8 JSON before it is cached).
    index: String,
    /// The minisign signature file's text.
    signature: String,
}

/// The cache file of source `name` in `indexes/`.
fn index_cache_file(name: &str) -> String {
    format!("{name}.index")
}

/// An earlier build's two cache files of source `name` (index, signature): read while no
/// [`index_cache_file`] exists, removed by the next refresh.
fn legacy_index_cache_files(name: &str) -> [String; 2] {
    [format!("{name}.json"), format!("{name}.json.minisig")]
}

/// Why a source operation or an install by id stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A download failed.
    #[error("cannot fetch {url}")]
    Fetch {
        /// What.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A download is larger than allowed.
    #[error("{url} is larger than {cap} bytes")]
    TooLarge {
        /// What.
        url: String,
        /// The cap.
        cap: u64,
    },
    /// A URL this host does not fetch.
    #[error("refusing URL {url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        why: &'static str,
    },
    /// A URL the WHATWG URL parser cannot read (an IPv6 zone, a bad port, an empty host…).
    #[error("refusing URL {url}: not a WHATWG URL")]
    UrlSyntax {
        /// The URL.
        url: String,
        /// What the parser said.
        #[source]
        source: url::ParseError,
    },
    /// Step 1: the index signature does not verify against the pinned operator key.
    #[error(
        "the index of source `{source_name}` is not signed by its pinned operator key {pinned}"
    )]
    IndexSignature {
        /// Source.
        source_name: String,
        /// The pinned key, described.
        pinned: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Step 1: the operator key changed without a rotation proof.
    #[error("the operator key of source `{source_name}` changed")]
    OperatorKey {
        /// Source.
        source_name: String,
        /// The mismatch.
        #[source]
        source: PinMismatch,
    },
    /// Step 1: the index is malformed, rolled back or expired.
    #[error("the index of source `{source_name}` is refused")]
    Index {
        /// Source.
        source_name: String,
        /// Why.
        #[source]
        source: IndexError,
    },
    /// No source lists the plugin (at that version).
    #[error("no source lists {id}{}", version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())]
    NotFound {
        /// Plugin id.
        id: String,
        /// Requested version or requirement.
        version: Option<String>,
    },
    /// The plugin is delisted.
    #[error("{id} is delisted by source `{source_name}`: {reason}")]
    Delisted {
        /// Plugin id.
        id: String,
        /// Source.
        source_name: String,
        /// Curator's reason.
        reason: String,
    },
    /// No build for this platform.
    #[error("{id} {version} is unavailable for {platform} (builds: {})", if have.is_empty() { "none".to_string() } else { have.join(", ") })]
    Unavailable {
        /// Plugin id.
        id: String,
        /// Version.
        version: String,
        /// This host's platform.
        platform: String,
        /// What exists.
        have: Vec<String>,
    },
    /// Step 2: size or digest differs from the index.
    #[error("artifact {url}: {what}")]
    ArtifactDigest {
        /// The artifact.
        url: String,
        /// What differs.
        what: String,
    },
    /// Step 3: the artifact signature does not verify against the author key.
    #[error("artifact {url} is not signed by the author key {author}")]
    ArtifactSignature {
        /// The artifact.
        url: String,
        /// The author key, described.
        author: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Step 4: the author key changed without a rotation proof.
    #[error("the author key of {id} changed")]
    AuthorPin {
        /// Plugin id.
        id: String,
        /// The mismatch.
        #[source]
        source: PinMismatch,
    },
    /// Step 4: no author key is pinned for a plugin the store holds, signed: the pin was
    /// recorded when it was installed, so `pins.json` lost it.
    #[error("no author key is pinned for {id}, yet {id} is installed (signed by key {signer}): pins.json lost its pin")]
    PinLost {
        /// Plugin id.
        id: String,
        /// The installed package's signer key id.
        signer: String,
    },
    /// Step 5: the package disagrees with its index entry.
    #[error("the package disagrees with its index entry: {0}")]
    Mismatch(String),
    /// An unknown source name.
    #[error("no source named `{0}`")]
    UnknownSource(String),
    /// A source of that name exists.
    #[error("a source named `{0}` already exists")]
    SourceExists(String),
    /// A bad source name.
    #[error("source name `{0}` must match [a-z0-9][a-z0-9._-]{{0,63}}")]
    BadName(String),
    /// State files.
    #[error(transparent)]
    File(#[from] FileError),
    /// A state file (`sources.json`, `pins.json`) cannot be read, parsed or written, or the
    /// state directory cannot be made.
    #[error(transparent)]
    State(#[from] StateError),
    /// The index cache directory is a symlink or not a directory.
    #[error(transparent)]
    Held(#[from] HeldDirError),
    /// A configuration file (`sources.json`, `pins.json`) of root's, or, while there is none,
    /// the sources directory it would be written in ([`check_owner`]), and a user other than
    /// root would change it: only its owner does.
    #[error("{} belongs to uid {owner}: only its owner changes the sources and pins", path.display())]
    NotOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// Step 1 as a user that does not own the configuration (the refresh timer's): the index
    /// proves a rotation of the operator key, which only the configuration's owner may pin.
    #[error("the operator key of source `{source_name}` rotated to {key} (with a proof); only the owner of {} (uid {owner}) can pin it", path.display())]
    RotationNeedsOwner {
        /// Source.
        source_name: String,
        /// The new key, described.
        key: String,
        /// `sources.json`.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A configuration file (`sources.json`, `pins.json`) still in the state directory, where
    /// an earlier build kept it, now that the configuration is in a sources directory
    /// ([`Places`]): neither read (the state directory's owner could have replaced it) nor
    /// ignored (its pins would be dropped without a word).
    #[error("{} is where an earlier build kept the sources' configuration, which is read only from {} now", path.display(), config_dir.display())]
    LeftBehind {
        /// The file left behind.
        path: PathBuf,
        /// The sources directory.
        config_dir: PathBuf,
    },
    /// A configuration file (`sources.json`, `pins.json`) in the state directory while the
    /// sources directory holds one of that name: not a leftover of an earlier build (the
    /// operator moved that one, or root wrote the current one since), so perhaps one the state
    /// directory's owner put there — an older copy of root's own file, which moving into place
    /// would restore ([`refuse_left_behind`]).
    #[error("{} (uid {owner}) is a second copy of {}, which is the configuration: not a file an earlier build left behind", path.display(), current.display())]
    StrayCopy {
        /// The copy in the state directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The configuration file of that name in the sources directory.
        current: PathBuf,
    },
    /// `--no-wait`, and another command is changing the configuration in the sources
    /// directory ([`lock_config`]).
    #[error("{} is held by another command changing the sources' configuration", path.display())]
    ConfigLocked {
        /// The lock file.
        path: PathBuf,
    },
    /// The sources directory's lock file cannot be opened or taken.
    #[error("cannot lock {}", path.display())]
    ConfigLock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `sources.json`, `pins.json` or `sources-seen.json` of a `format` above 1: written by a
    /// newer Stockade ([`parse_state`]).
    #[error(
        "{} is of format {format}, written by a newer Stockade (this one reads format 1)",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: u64,
    },
    /// A state file is corrupt.
    #[error("{} is corrupt", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SourceError {
    /// The documented exit code (`docs/exit-codes.md`, "Sources and indexes").
    pub fn exit(&self) -> Exit {
        match self {
            SourceError::Fetch { .. } | SourceError::TooLarge { .. } => Exit::IndexFetch,
            SourceError::Url { .. }
            | SourceError::UrlSyntax { .. }
            | SourceError::BadName(_)
            | SourceError::UnknownSource(_) => Exit::Usage,
            SourceError::IndexSignature { .. }
            | SourceError::OperatorKey { .. }
            | SourceError::RotationNeedsOwner { .. } => Exit::IndexSignature,
            SourceError::Index { source, .. } => match source {
                IndexError::Rollback { .. } | IndexError::Changed { .. } => Exit::IndexRollback,
                IndexError::Expired { .. } => Exit::IndexExpired,
                _ => Exit::DataErr,
            },
            SourceError::NotFound { .. } | SourceError::Delisted { .. } => Exit::IndexNotFound,
            SourceError::Unavailable { .. } => Exit::IndexUnavailable,
            SourceError::ArtifactDigest { .. } => Exit::ArtifactDigest,
            SourceError::ArtifactSignature { .. } => Exit::ArtifactSignature,
            SourceError::AuthorPin { .. } | SourceError::PinLost { .. } => Exit::AuthorPin,
            SourceError::Mismatch(_) => Exit::IndexMismatch,
            SourceError::SourceExists(_) => Exit::CantCreate,
            // A planted or foreign file (symlink, FIFO, hard link, another user's): the state
            // directory is unusable as it is (78), as for the store (`store.unsafe`).
            SourceError::File(FileError::Unsafe { .. })
            | SourceError::State(StateError::File(FileError::Unsafe { .. }))
            | SourceError::NotOwner { .. }
            | SourceError::LeftBehind { .. }
            | SourceError::StrayCopy { .. } => Exit::Config,
            SourceError::ConfigLocked { .. } => Exit::StoreLocked,
            SourceError::ConfigLock { .. } => Exit::IoErr,
            SourceError::File(_) => Exit::IoErr,
            // docs/exit-codes.md: 78 is "the state directory is unusable" (as for the
            // revocation state); a file that cannot be read or written stays 74, as before.
            SourceError::State(StateError::Corrupt { .. } | StateError::Create { .. }) => {
                Exit::Config
            }
            SourceError::State(_) => Exit::IoErr,
            SourceError::Held(HeldDirError::Unsafe { .. }) => Exit::Config,
            SourceError::Held(_) => Exit::IoErr,
            SourceError::Corrupt { .. } | SourceError::NewerFormat { .. } => Exit::Config,
        }
    }

    /// A stable kind for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Fetch { .. } => "index.fetch",
            SourceError::TooLarge { .. } => "index.too_large",
            SourceError::Url { .. } | SourceError::UrlSyntax { .. } => "index.url",
            SourceError::IndexSignature { .. } => "index.signature",
            SourceError::OperatorKey { .. } => "index.operator_key",
            SourceError::Index { source, .. } => match source {
                IndexError::Rollback { .. } => "index.rollback",
                IndexError::Changed { .. } => "index.changed",
                IndexError::Expired { .. } => "index.expired",
                _ => "index.malformed",
            },
            SourceError::NotFound { .. } => "index.not_found",
            SourceError::Delisted { .. } => "index.delisted",
            SourceError::Unavailable { .. } => "index.unavailable",
            SourceError::ArtifactDigest { .. } => "index.artifact_digest",
            SourceError::ArtifactSignature { .. } => "index.artifact_signature",
            SourceError::AuthorPin { .. } => "index.author_pin",
            SourceError::PinLost { .. } => "index.author_pin_lost",
            SourceError::Mismatch(_) => "index.mismatch",
            SourceError::UnknownSource(_) => "source.unknown",
            SourceError::SourceExists(_) => "source.exists",
            SourceError::BadName(_) => "source.name",
            SourceError::RotationNeedsOwner { .. } => "index.rotation_needs_owner",
            SourceError::File(FileError::Unsafe { .. })
            | SourceError::State(StateError::File(FileError::Unsafe { .. })) => "source.unsafe",
            SourceError::NotOwner { .. } => "source.not_owner",
            SourceError::LeftBehind { .. } => "source.left_behind",
            SourceError::StrayCopy { .. } => "source.stray_copy",
            SourceError::ConfigLocked { .. } => "source.locked",
            SourceError::ConfigLock { .. } => "source.io",
            SourceError::File(_) => "source.io",
            SourceError::State(StateError::Corrupt { .. }) => "source.corrupt",
            // 78 as the exit says, so not `source.io` (74): a kind has one code.
            SourceError::State(StateError::Create { .. }) => "source.state_dir",
            SourceError::State(_) => "source.io",
            SourceError::Held(HeldDirError::Unsafe { .. }) => "source.unsafe",
            SourceError::Held(_) => "source.io",
            SourceError::Corrupt { .. } => "source.corrupt",
            SourceError::NewerFormat { .. } => "source.newer_format",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            SourceError::OperatorKey { .. } => "if the operator really rotated keys without a proof, verify the new key out of band and run `stockade source repin NAME --operator-key KEY.pub --yes`",
            SourceError::AuthorPin { .. } => "if the author really changed keys without a proof, verify the new key out of band and run `stockade source repin-author ID --author-key KEY.pub --yes` (with `--author NAME` when the author's name is what refused it)",
            SourceError::PinLost { .. } => "pins.json was removed or replaced; check the key the package is signed with out of band, then `stockade source repin-author ID --author-key KEY.pub --yes`",
            SourceError::Index { .. } => "the source is serving an old, changed or expired index; ask its operator, or wait for a fresh one",
            SourceError::Unavailable { .. } => "ask the author for a build for this platform",
            SourceError::NotFound { .. } => "`stockade source list` shows the sources; check the id and version",
            // A directory on the way: the files' advice (chown, chmod 644 them) does not fit.
            SourceError::Held(HeldDirError::Unsafe { .. }) => "the sources directory must be a directory (not a symlink) of this user or root that no one else may write, below directories of this user or root that no one else may write unless sticky (packaged layout: /etc/stockade/sources, root:root 0755); the state directory's indexes/ may also be its owner's, and is a cache that may be moved aside. Fix the directory named (`chown root:root`, `chmod go-w`), or name another sources directory with --sources-dir (docs/sources.md, \"Who decides what\")",
            SourceError::File(FileError::Unsafe { .. })
            | SourceError::State(StateError::File(FileError::Unsafe { .. })) => "sources.json and pins.json must be regular files of this user or root that no one else may write, in a directory of this user or root that no one else may write, below directories no other user may write either (sources-seen.json and indexes/ may also be the state directory's owner's). Earlier builds gave the files to the state directory's owner (the `stockade` user), who could have changed them: check the URLs, operator keys and author pins in them, then `chown root:root` and `chmod 644` them, or move them aside and add the sources again (docs/sources.md, \"Upgrading from an earlier build\"). A bad sources-seen.json may be moved aside: root's own floor is in sources.json",
            SourceError::NotOwner { .. } => "run the command as root, whose file it is",
            SourceError::LeftBehind { .. } => "the state directory's owner could have replaced it: check the URLs, operator keys and author pins in it, then move it into the sources directory, which has no file of that name yet (packaged layout: `mv -n /var/lib/stockade/sources.json /var/lib/stockade/pins.json /etc/stockade/sources/`) and, if it is not root's, `chown root:root` and `chmod 644` it; or move it aside and add the sources again (docs/sources.md, \"Upgrading from an earlier build\")",
            SourceError::StrayCopy { .. } => "remove it, do not move it: it may have been planted by the state directory's owner (an older copy of root's own file, which moving it would put back over the current one); the file in the sources directory is the configuration, and stays as it is (docs/sources.md, \"Upgrading from an earlier build\")",
            SourceError::NewerFormat { .. } => "use it with the Stockade that wrote it (upgrade this one); nothing was changed. Do not move it aside: the author pins (pins.json) and rollback floors (sources.json, sources-seen.json) it holds would be forgotten, and the next install would pin whatever key it meets",
            SourceError::ConfigLocked { .. } => "another command (on this or another state directory) is changing the sources or pins; retry, or drop --no-wait to queue",
            SourceError::State(StateError::Create { .. }) => crate::state::CREATE_HINT,
            SourceError::RotationNeedsOwner { .. } => "run `stockade source refresh` as root to take the rotation (after checking the new key's fingerprint); until then the last verified index is kept",
            _ => "",
        }
    }

    /// As the command's error: its exit code, kind and hint.
    pub fn into_cmd(self) -> crate::error::CmdError {
        let (exit, kind, hint) = (self.exit(), self.kind(), self.hint());
        let c = crate::error::CmdError::new(exit, kind, self);
        if hint.is_empty() {
            c
        } else {
            c.hint(hint)
        }
    }

    fn fetch(url: &str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SourceError::Fetch {
            url: url.to_string(),
            source: Box::new(e),
        }
    }
}

/// One configured source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The URL of `index.json` (its signature is `<url>.minisig`).
    pub url: String,
    /// The pinned operator key (bare base64 line).
    pub operator_pubkey: String,
    /// Unix seconds.
    pub added_at: u64,
    /// Highest index version seen.
    #[serde(default)]
    pub seen_version: Option<u64>,
    /// Digest of that version's bytes.
    #[serde(default)]
    pub seen_sha256: Option<String>,
    /// Last successful refresh.
    #[serde(default)]
    pub refreshed_at: Option<u64>,
}

/// `sources.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Name → source.
    pub sources: BTreeMap<String, Source>,
}

/// One author pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The pinned key (bare base64 line).
    pub pubkey: String,
    /// Its key id.
    pub key_id: String,
    /// Its fingerprint (hex SHA-256).
    pub fingerprint: String,
    /// Unix seconds.
    pub pinned_at: u64,
    /// `first-use`, `rotation` or `manual`.
    pub how: String,
}

/// `pins.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// Plugin id → pin.
    pub plugins: BTreeMap<String, Pin>,
    /// Author name (an index entry's `author.name`) → pin: a new plugin under a known author's
    /// name must be signed by that author's key. Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authors: BTreeMap<String, Pin>,
}

/// Which pin: a plugin id's or an author name's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// Keyed by plugin id.
    Plugin,
    /// Keyed by author name.
    Author,
}

/// Cap on `sources.json`, `pins.json` and `sources-seen.json` (one entry per source or id).
const STATE_FILE_CAP: u64 = 16 * 1024 * 1024;

/// The default of `--sources-dir` (`STOCKADE_SOURCES_DIR`): where root's configuration lives
/// when the state directory belongs to another user ([`Places`]).
pub const DEFAULT_SOURCES_DIR: &str = "/etc/stockade/sources";

/// Where the sources' files are. The shared state (`sources-seen.json`, `indexes/`) is always
/// in the state directory. The configuration (`sources.json`, `pins.json`) is in the state
/// directory only when that is this user's own — the tests', a user's private store, root's own
/// directory: this user's, below directories no one else may write or rename in
/// ([`own_state_dir`]), so no one else can rename anything in it — and otherwise in a sources
/// directory
/// (`/etc/stockade/sources` unless `--sources-dir` says another): in the packaged layout the
/// state directory is the `stockade` user's, who could rename root's files in it (put an older
/// `pins.json` back after root re-pinned a compromised author key, or remove it), and nothing in
/// a file tells an older copy of root's from the current one. A sources directory given
/// explicitly is used whoever owns the state directory: that is how the refresh timer, in its
/// own state directory, reads root's configuration (the unit sets `STOCKADE_SOURCES_DIR`).
///
/// The sources directory is held like the files in it: every directory above it this user's or
/// root's and writable by no one else unless sticky ([`check_no_other_writer`]), the directory
/// itself this user's or root's, writable by no one else, opened without following a symlink and
/// reached through its descriptor ([`HeldDir`]); root makes it, 0755, when it writes the first
/// file ([`crate::fileio::make_dir_at`]). Files an earlier build left in the state directory are
/// refused, never read and never ignored, until the operator has checked and moved them
/// ([`SourceError::LeftBehind`]): ignored, a `pins.json` would drop every pin silently.
#[derive(Debug, Clone)]
pub struct Places {
    state_dir: PathBuf,
    /// `None`: the configuration is in the state directory.
    config_dir: Option<PathBuf>,
}

impl Places {
    /// The places for state directory `state_dir` and the `--sources-dir` given (`None`: not
    /// given, [`DEFAULT_SOURCES_DIR`] where the state directory is not this user's own). A
    /// sources directory given that is the state directory (the same inode) is the state
    /// directory when that is this user's own, and refused (78 `source.unsafe`) otherwise: the
    /// configuration would be where another user can rename it, which is what the sources
    /// directory is for.
    pub fn new(state_dir: &Path, sources_dir: Option<&Path>) -> Result<Self, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let own = own_state_dir(state_dir);
        let config_dir = match sources_dir {
            Some(d) => Some(d.to_path_buf()),
            None => (own.is_err()).then(|| PathBuf::from(DEFAULT_SOURCES_DIR)),
        };
        let same = |d: &PathBuf| match (std::fs::metadata(d), std::fs::metadata(state_dir)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        let config_dir = match config_dir {
            Some(d) if same(&d) => match own {
                Ok(()) => None,
                Err(why) => {
                    let why = format!(
                        "is the state directory, which {why}: no place for the configuration"
                    );
                    return Err(HeldDirError::Unsafe { path: d, why }.into());
                }
            },
            d => d,
        };
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            config_dir,
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The sources directory, when the configuration is not in the state directory.
    pub fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// Where configuration file `name` is.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.config_dir
            .as_deref()
            .unwrap_or(&self.state_dir)
            .join(name)
    }
}

/// Whether state directory `dir` is this user's own, where the configuration may stay: this
/// user's, and neither it nor a directory above it writable by another user (unless sticky) or
/// another user's but root's ([`check_no_other_writer`], on its canonical path): a group
/// member of a group-writable directory (root:nogroup 2770, say) could rename root's files in
/// it as the owner of a foreign one could. A missing one is judged by the nearest directory
/// above it that exists: this user makes it there. `Err`: why not, to be said when it is named
/// as the sources directory.
fn own_state_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mut at = dir;
    let md = loop {
        match std::fs::metadata(at) {
            Ok(md) => break md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && at != Path::new(".") => {
                at = at
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
            }
            Err(e) => return Err(format!("cannot be read ({e})")),
        }
    };
    if at == dir && md.uid() != me {
        return Err(format!("belongs to uid {}, not this user ({me})", md.uid()));
    }
    let canonical = std::fs::canonicalize(at).map_err(|e| format!("cannot be resolved ({e})"))?;
    // Judged on the canonical path but used by the path given: a symbolic link (or `..`) on
    // the way is a turn another user may move — a link in a directory of theirs repointed, mid-
    // command or at another directory of this user's holding an older pins.json — so a state
    // directory reached that way is not where the configuration may stay.
    let given = std::path::absolute(at).map_err(|e| format!("cannot be resolved ({e})"))?;
    if given != canonical {
        return Err(format!(
            "is reached through a symbolic link or `..` ({} is {})",
            given.display(),
            canonical.display()
        ));
    }
    check_no_other_writer(&canonical).map_err(|e| match e {
        HeldDirError::Unsafe { path, why } if path == canonical => why,
        HeldDirError::Unsafe { path, why } => format!("is below {}, which {why}", path.display()),
        e => e.to_string(),
    })
}

/// The JSON file `name` of the state directory, read only as [`read_owned`] allows (owned by
/// this user, root or `also`; no symlink, FIFO or second link; writable by no one else);
/// absent: the default.
fn load_checked<T: Default + serde::de::DeserializeOwned>(
    state_dir: &Path,
    name: &str,
    also: Option<u32>,
) -> Result<T, SourceError> {
    let path = state_dir.join(name);
    parse_state(&path, read_present(&path, &path, also)?)
}

/// Configuration file `name` (`sources.json`, `pins.json`) as [`load_checked`] reads it, this
/// user's or root's alone, from where [`Places`] keeps it; absent: the default.
fn load_config<T: Default + serde::de::DeserializeOwned>(
    p: &Places,
    name: &str,
) -> Result<T, SourceError> {
    let Some(dir) = &p.config_dir else {
        return load_checked(&p.state_dir, name, None);
    };
    refuse_left_behind(p, dir)?;
    let Some(held) = hold_config_dir(dir, false)? else {
        return Ok(T::default());
    };
    let at = held.join(name);
    parse_state(at.shown(), read_present(at.path(), at.shown(), None)?)
}

/// The bytes of state file `path` as JSON (`None`: the default).
///
/// The files say their format in `format`, absent for format 1, the only one this build reads
/// and writes (so it writes them as earlier builds did, and they read what it writes). One of
/// a format above 1 was written by a newer Stockade: it is told apart before its other fields
/// are parsed (a newer format may add fields this build refuses) and refused as such
/// ([`SourceError::NewerFormat`]), not as corrupt, whose hint (move it aside) would forget
/// the author pins and rollback floors it holds. `"format": 1` is read as its absence.
fn parse_state<T: Default + serde::de::DeserializeOwned>(
    path: &Path,
    bytes: Option<Vec<u8>>,
) -> Result<T, SourceError> {
    let corrupt = |source| -> SourceError {
        let path = path.to_path_buf();
        StateError::Corrupt { path, source }.into()
    };
    let Some(b) = bytes else {
        return Ok(T::default());
    };
    match stockade_trust::json_format(&b) {
        Some(format) if format > 1 => Err(SourceError::NewerFormat {
            path: path.to_path_buf(),
            format,
        }),
        Some(1) => {
            let mut v: serde_json::Value = serde_json::from_slice(&b).map_err(corrupt)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("format");
            }
            serde_json::from_value(v).map_err(corrupt)
        }
        _ => serde_json::from_slice(&b).map_err(corrupt),
    }
}

/// `path` as [`read_owned`] reads it (errors naming `shown`), `None` when there is none.
fn read_present(
    path: &Path,
    shown: &Path,
    also: Option<u32>,
) -> Result<Option<Vec<u8>>, SourceError> {
    match read_owned(path, STATE_FILE_CAP, also) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.shown_as(shown).into()),
    }
}

/// The sources directory `dir` held ([`Places`]): its parent's chain checked, then the
/// directory itself, made (0755) when `create` and missing. `None` when it is missing and not
/// to be made (no configuration yet).
fn hold_config_dir(dir: &Path, create: bool) -> Result<Option<HeldDir>, SourceError> {
    let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound && !create;
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(HeldDirError::Unsafe {
            path: dir.to_path_buf(),
            why: "does not end in a directory name".into(),
        }
        .into());
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Canonical, so that the chain checked is the one the directory is reached through.
    let parent = match std::fs::canonicalize(parent) {
        Ok(p) => p,
        Err(e) if missing(&e) => return Ok(None),
        // Its parent missing too (a host without the package has no `/etc/stockade`): made the
        // same way first, each level checked and made 0755 by this user, who may make the
        // sources directory there (`check_owner` found the nearest existing directory to be its own).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && parent.parent().is_some() => {
            drop(hold_config_dir(parent, true)?);
            std::fs::canonicalize(parent).map_err(|source| HeldDirError::Io {
                path: dir.to_path_buf(),
                source,
            })?
        }
        Err(source) => {
            let path = dir.to_path_buf();
            return Err(HeldDirError::Io { path, source }.into());
        }
    };
    check_no_other_writer(&parent)?;
    match HeldDir::open(&parent, name, create.then_some(0o755)) {
        Ok(held) => Ok(Some(held)),
        Err(HeldDirError::Io { source, .. }) if missing(&source) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Refuse to work while `sources.json` or `pins.json` is in the state directory, where an
/// earlier build kept it, now that the configuration is in the sources directory `dir`: reading
/// the new place alone would drop those sources and pins without a word, and reading the old one
/// would trust a file the state directory's owner could have replaced. Where the sources
/// directory already holds a file of that name, the one in the state directory is no leftover
/// (an upgrade leaves the state directory's copy alone only while there is no other): that
/// owner may have put back an older copy of root's own file (readable, and still root's after a
/// rename), and moving it into place as [`SourceError::LeftBehind`] advises would restore it,
/// so it is [`SourceError::StrayCopy`], checked first, whose advice is to remove it.
fn refuse_left_behind(p: &Places, dir: &Path) -> Result<(), SourceError> {
    use std::os::unix::fs::MetadataExt;
    let found = |name: &str| {
        let path = p.state_dir.join(name);
        std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (path, m.uid()))
    };
    for name in [SOURCES_FILE, PINS_FILE] {
        let current = dir.join(name);
        if let (Some((path, owner)), true) = (found(name), current.symlink_metadata().is_ok()) {
            return Err(SourceError::StrayCopy {
                path,
                owner,
                current,
            });
        }
    }
    for name in [SOURCES_FILE, PINS_FILE] {
        if let Some((path, _)) = found(name) {
            return Err(SourceError::LeftBehind {
                path,
                config_dir: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Who, other than this process's user, decides configuration file `name` (its path and uid):
/// the owner of the file where it exists, else of the sources directory it would be written in,
/// else of that directory's parent (where it would be made); `None` when this user may write it.
fn foreign_config(p: &Places, name: &str) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let file = p.config_path(name);
    let mut candidates = vec![file];
    if let Some(dir) = &p.config_dir {
        // Up to the nearest directory that exists: where the sources directory would be made
        // (none of `/etc/stockade` on a host without the package). Stopping at its parent took
        // "nothing there" for "this user may write it", and the refresh timer tried to make the
        // directory, failing with 74 where it has nothing to do.
        candidates.extend(
            dir.ancestors()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
        if dir.is_relative() {
            candidates.push(PathBuf::from("."));
        }
    }
    let (path, md) = candidates
        .into_iter()
        .find_map(|c| std::fs::symlink_metadata(&c).ok().map(|m| (c, m)))?;
    (md.uid() != nix::unistd::geteuid().as_raw()).then_some((path, md.uid()))
}

/// Refuse a change of configuration file `name` by a user it does not belong to. Checked
/// before anything else (the store lock included: the refresh timer's user cannot open root's
/// store for writing, and that refusal, 74 then, `store.not_owner` now, says nothing of the
/// configuration). Root's file (or directory) is
/// [`SourceError::NotOwner`]: run the command as root. Any other user's is no configuration at
/// all — neither this user's nor root's, it is refused wherever it is read (78
/// `source.unsafe`) — so it is refused as that, naming its owner, with the hint that fits a
/// file or a directory: "run it as the owner" would tell root to run it as the service user.
pub fn check_owner(p: &Places, name: &str) -> Result<(), SourceError> {
    let Some((path, owner)) = foreign_config(p, name) else {
        return Ok(());
    };
    if owner == 0 {
        return Err(SourceError::NotOwner { path, owner });
    }
    let me = nix::unistd::geteuid().as_raw();
    let why = format!("belongs to uid {owner}, neither this user ({me}) nor root");
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
        return Err(HeldDirError::Unsafe { path, why }.into());
    }
    Err(FileError::Unsafe { path, why }.into())
}

/// The default sources directory's `sources.json` when this command reads another place and
/// finds nothing there: no sources directory given (`sources_dir`), the configuration in the
/// state directory (this user's own) and no `sources.json` in it, while
/// [`DEFAULT_SOURCES_DIR`] has one. A refresh unit run as the `stockade` user without
/// `STOCKADE_SOURCES_DIR` does exactly that: its own state directory, nothing configured in it,
/// "no sources configured" and exit 0 every six hours while root's sources go unrefreshed.
/// Said, not acted on: which configuration to read is the caller's to name.
pub fn unread_default_config(p: &Places, sources_dir: Option<&Path>) -> Option<PathBuf> {
    let default = Path::new(DEFAULT_SOURCES_DIR).join(SOURCES_FILE);
    let unread = sources_dir.is_none()
        && p.config_dir.is_none()
        && std::fs::symlink_metadata(p.state_dir.join(SOURCES_FILE)).is_err()
        && std::fs::symlink_metadata(&default).is_ok();
    unread.then_some(default)
}

/// The name of the sources directory's lock file ([`lock_config`]).
pub const CONFIG_LOCK_FILE: &str = ".lock";

/// The lock of a sources directory, held by a command that may change the configuration in it
/// ([`lock_config`]); released when dropped.
#[derive(Debug)]
pub struct ConfigLock {
    _lock: std::os::fd::OwnedFd,
    _held: HeldDir,
}

/// Take the sources directory's lock (waiting unless `no_wait`: then 108 `source.locked`) for
/// a command that may load, change and save the configuration; held until dropped. Commands on
/// different state directories share one sources directory but each locks only its own store,
/// so without it two of them could both load `pins.json`, each add a pin and save, and the
/// second save would drop the first's pin. Taken after the store's lock (always in that order,
/// so no two commands wait on each other), and only where a sources directory is used and this
/// user may write it (it is this user's, or is to be made by it): a user that cannot change the
/// configuration (the timer's) has nothing to lose and takes none — and could not: the lock file
/// is its owner's, 0600, so that no other user can take it and hold root's commands forever.
/// Made with the directory when this user may make it (root, where the packages did not).
pub fn lock_config(p: &Places, no_wait: bool) -> Result<Option<ConfigLock>, SourceError> {
    let Some(dir) = &p.config_dir else {
        return Ok(None);
    };
    if foreign_config(p, SOURCES_FILE).is_some() || foreign_config(p, PINS_FILE).is_some() {
        return Ok(None);
    }
    // Nothing made while an earlier build's files wait to be moved.
    refuse_left_behind(p, dir)?;
    let Some(held) = hold_config_dir(dir, true)? else {
        return Ok(None);
    };
    let at = held.join(CONFIG_LOCK_FILE);
    let path = at.shown().to_path_buf();
    let err = |source| SourceError::ConfigLock {
        path: path.clone(),
        source,
    };
    let lock = crate::sys::open_private_lock_file(at.path()).map_err(err)?;
    use std::os::fd::AsFd;
    if no_wait {
        if !crate::sys::try_flock_exclusive(lock.as_fd()).map_err(err)? {
            return Err(SourceError::ConfigLocked { path });
        }
    } else {
        crate::sys::flock_exclusive(lock.as_fd()).map_err(err)?;
    }
    Ok(Some(ConfigLock {
        _lock: lock,
        _held: held,
    }))
}

/// Save configuration file `name` atomically (0644: no secret in it, and the timer's user
/// reads it) where [`Places`] keeps it, making the state or sources directory if needed. Only
/// the user it belongs to replaces it ([`check_owner`], nothing written otherwise), and it stays
/// that user's: root's file is never handed to the state directory's owner, unlike the state
/// files both share ([`write_state_file`]).
fn save_config<T: Serialize>(p: &Places, name: &str, value: &T) -> Result<(), SourceError> {
    check_owner(p, name)?;
    let path = p.config_path(name);
    let bytes = to_json(&path, value)?;
    let Some(dir) = &p.config_dir else {
        crate::state::ensure_dir(&p.state_dir)?;
        write_atomic(&path, &bytes, 0o644)?;
        return Ok(());
    };
    refuse_left_behind(p, dir)?;
    let held = hold_config_dir(dir, true)?.ok_or_else(|| HeldDirError::Io {
        path: dir.clone(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let at = held.join(name);
    write_atomic(at.path(), &bytes, 0o644).map_err(|e| e.shown_as(at.shown()))?;
    Ok(())
}

/// `value` as the bytes of JSON file `path`.
fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, SourceError> {
    serde_json::to_vec_pretty(value).map_err(|source| {
        let path = path.to_path_buf();
        StateError::Corrupt { path, source }.into()
    })
}

/// Write `value` as the JSON file `name` of the state directory (0644), through `write` (which
/// decides the owner), creating the directory if needed.
fn save_json<T: Serialize>(
    state_dir: &Path,
    name: &str,
    value: &T,
    write: fn(&Path, &[u8], u32) -> Result<(), FileError>,
) -> Result<(), SourceError> {
    let path = state_dir.join(name);
    let bytes = to_json(&path, value)?;
    crate::state::ensure_dir(state_dir)?;
    write(&path, &bytes, 0o644)?;
    Ok(())
}

impl Sources {
    /// Load `sources.json` (absent: none), only from a file of this user or root that no one
    /// else may write, where [`Places`] keeps it ([`load_config`]).
    pub fn load(p: &Places) -> Result<Self, SourceError> {
        load_config(p, SOURCES_FILE)
    }
    /// Save atomically, as its owner only ([`save_config`]).
    pub fn save(&self, p: &Places) -> Result<(), SourceError> {
        save_config(p, SOURCES_FILE, self)
    }
}

/// One source's entry in `sources-seen.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenEntry {
    /// Highest index version seen.
    pub version: u64,
    /// SHA-256 of that version's bytes (hex).
    pub sha256: String,
    /// When (Unix seconds).
    pub refreshed_at: u64,
}

/// `sources-seen.json`: the rollback memory every refresh writes, whoever runs it. Root's
/// commands read it to raise their floor, never to lower it ([`index::floor`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenIndexes {
    /// Source name → what was seen.
    pub sources: BTreeMap<String, SeenEntry>,
}

impl SeenIndexes {
    /// Load `<state>/sources-seen.json` (absent: nothing seen): a file of this user, root or
    /// the state directory's owner (the timer's user), with no symlink, FIFO or second link.
    pub fn load(state_dir: &Path) -> Result<Self, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let dir_owner = std::fs::metadata(state_dir).ok().map(|m| m.uid());
        load_checked(state_dir, SEEN_FILE, dir_owner)
    }
    /// Save atomically (0644); written by root, it is the state directory owner's, so the
    /// timer can go on raising it.
    pub fn save(&self, state_dir: &Path) -> Result<(), SourceError> {
        save_json(state_dir, SEEN_FILE, self, write_state_file)
    }
    /// What was seen of source `name`.
    pub fn seen(&self, state_dir: &Path, name: &str) -> Result<Option<SeenIndex>, SourceError> {
        self.sources
            .get(name)
            .map(|e| {
                Ok((
                    e.version,
                    hex_digest(&state_dir.join(SEEN_FILE), &e.sha256)?,
                ))
            })
            .transpose()
    }
}

/// A hex SHA-256 of state file `path`.
fn hex_digest(path: &Path, h: &str) -> Result<[u8; 32], SourceError> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(h, &mut d).map_err(|e| SourceError::Corrupt {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(d)
}

impl Pins {
    /// Load `pins.json` (absent: none), only from a file of this user or root that no one else
    /// may write, where [`Places`] keeps it ([`load_config`]).
    pub fn load(p: &Places) -> Result<Self, SourceError> {
        load_config(p, PINS_FILE)
    }
    /// Save atomically, as its owner only ([`save_config`]).
    pub fn save(&self, p: &Places) -> Result<(), SourceError> {
        save_config(p, PINS_FILE, self)
    }
    /// The pinned key of `id`.
    pub fn key(&self, id: &str) -> Result<Option<PublicKey>, SourceError> {
        self.key_of(PinKind::Plugin, id)
    }
    /// The pinned key of plugin id or author name `k` (an author by [`author_match_key`]: a
    /// pin written under another spelling, or a look-alike of it, counts).
    pub fn key_of(&self, kind: PinKind, k: &str) -> Result<Option<PublicKey>, SourceError> {
        let pin = match kind {
            PinKind::Plugin => self.plugins.get(k),
            PinKind::Author => {
                // Every pin of a look-alike spelling counts; an earlier build (before names were
                // compared by skeleton) may have pinned two of them to different keys: refused
                // until one is re-pinned, whichever the name at hand is.
                let want = author_match_key(k);
                let mut found: Option<&Pin> = None;
                for (_, p) in self
                    .authors
                    .iter()
                    .filter(|(n, _)| author_match_key(n) == want)
                {
                    match found {
                        Some(f) if f.pubkey != p.pubkey => {
                            let show = |p: &Pin| {
                                format!(
                                    "{} (sha256 {})",
                                    p.key_id,
                                    p.fingerprint.get(..16).unwrap_or(&p.fingerprint)
                                )
                            };
                            return Err(SourceError::AuthorPin {
                                id: format!("author `{k}`"),
                                source: PinMismatch {
                                    pinned: show(f),
                                    offered: show(p),
                                    why: "look-alike author names are pinned to different keys \
                                          (kept by an earlier build): keep one with \
                                          `stockade source repin-author`",
                                },
                            });
                        }
                        _ => found = Some(p),
                    }
                }
                found
            }
        };
        pin.map(|p| {
            PublicKey::from_base64(&p.pubkey).map_err(|e| SourceError::Corrupt {
                path: PathBuf::from(PINS_FILE),
                source: Box::new(e),
            })
        })
        .transpose()
    }
    /// The spellings pinned apart from `k`'s own that look like it (the pins `set_of` for `k`
    /// replaces).
    pub fn lookalikes(&self, k: &str) -> Vec<String> {
        let (own, want) = (author_pin_key(k), author_match_key(k));
        self.authors
            .keys()
            .filter(|n| **n != own && author_match_key(n) == want)
            .cloned()
            .collect()
    }
    /// Pin `key` for `id`.
    pub fn set(&mut self, id: &str, key: &PublicKey, how: &str, now: u64) {
        self.set_of(PinKind::Plugin, id, key, how, now);
    }
    /// Pin `key` for plugin id or author name `k`.
    pub fn set_of(&mut self, kind: PinKind, k: &str, key: &PublicKey, how: &str, now: u64) {
        let (map, k) = match kind {
            PinKind::Plugin => (&mut self.plugins, k.to_string()),
            PinKind::Author => {
                // One entry per author: other spellings (and look-alikes) kept before go.
                let want = author_match_key(k);
                self.authors.retain(|n, _| author_match_key(n) != want);
                (&mut self.authors, author_pin_key(k))
            }
        };
        map.insert(
            k,
            Pin {
                pubkey: key.to_base64(),
                key_id: key.key_id.to_string(),
                fingerprint: fingerprint(key),
                pinned_at: now,
                how: how.into(),
            },
        );
    }
}

/// Validate a source name.
pub fn check_name(name: &str) -> Result<(), SourceError> {
    if stockade_policy::manifest::valid_name(name) {
        Ok(())
    } else {
        Err(SourceError::BadName(name.into()))
    }
}

/// A URL parsed once, the one way both rules below and the download read it: the WHATWG URL
/// standard (the `url` crate), as a browser does. That reading takes every spelling of a host
/// apart before anything looks at it — percent-encoding (`%31%32%37.0.0.1`), IDNA (a fullwidth
/// `ｌｏｃａｌｈｏｓｔ`), case, every IPv4 form `inet_aton(3)` knows (`127.1`, `2130706433`,
/// `0x7f.1`, `0177.0.0.1`, a trailing dot), userinfo, `?` and `#` — and refuses what it cannot
/// read (an IPv6 zone, `[::1%251]`, which the standard has no place for). What is fetched is
/// this parse's serialization, never the string given, so the host checked is the host
/// connected to.
fn parse_url(url: &str) -> Result<url::Url, SourceError> {
    url::Url::parse(url).map_err(|source| SourceError::UrlSyntax {
        url: without_userinfo(url),
        source,
    })
}

/// `url` as a refusal may repeat it: everything between the scheme's `://` (or the start) and
/// the last `@` replaced by `***`. A URL with credentials is refused ([`check_url`]), and its
/// refusal goes to stderr, `--json` output, CI logs and the journal: the password must not go
/// with it. Read as text, not parsed — the URL refused may not parse (a `/` in a password ends
/// the authority for the parser) — and from the last `@` anywhere, so an `@` in a path or query
/// only hides more of the message, never shows a password.
pub fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

/// Whether this host fetches `url` at all, and the URL to fetch: `file:///absolute/path` (no
/// host, query or fragment), `https://` anywhere, `http://` only where [`locality`] says
/// loopback and no DNS server is asked (an address, or `localhost`); no credentials in any.
pub fn check_url(url: &str) -> Result<url::Url, SourceError> {
    let refuse = |why| {
        Err(SourceError::Url {
            url: without_userinfo(url),
            why,
        })
    };
    let u = parse_url(url)?;
    if !u.username().is_empty() || u.password().is_some() {
        return refuse("credentials in URLs are not accepted");
    }
    // Plain HTTP only where no DNS server gives the answer: a loopback (or unspecified)
    // address, or `localhost` itself (`/etc/hosts`). `a.localhost` and `localhost.` are
    // loopback to [`check_entry_url`] (refused from a remote index) but may be asked of DNS.
    let no_dns = !matches!(u.host(), Some(url::Host::Domain(d)) if d != "localhost");
    match (u.scheme(), locality_of(&u)) {
        ("file", _) => {
            // `file://relative` reads as the host `relative`; `file:///a#b` would read `/a`.
            if u.host().is_some() || u.to_file_path().is_err() {
                return refuse("file:// URLs must be absolute (file:///path)");
            }
            if u.query().is_some() || u.fragment().is_some() {
                return refuse(
                    "a file:// URL has no query or fragment (percent-encode `?` and `#` in a path)",
                );
            }
            Ok(u)
        }
        ("https", _) => Ok(u),
        ("http", Locality::Loopback) if no_dns => Ok(u),
        ("http", _) => refuse("plain http:// is only allowed to loopback addresses; use https://"),
        _ => refuse("only file://, https:// and loopback http:// URLs are fetched"),
    }
}

/// How close to this host a URL's target is; ordered, so that "more local" is `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Locality {
    /// Another host (https, or http that [`check_url`] refuses anyway).
    Remote,
    /// A loopback (or unspecified) address, or a `localhost` name: this host's services.
    Loopback,
    /// A `file://` URL: this host's files.
    File,
}

/// Where `url` points ([`Locality`]), as [`check_url`] and the download read it ([`parse_url`]).
/// A host counts as loopback if it is `localhost` or a `.localhost` name (RFC 6761; a trailing
/// dot or upper case changes nothing), or an address in any spelling — `127.1`, `0x7f000001`,
/// `2130706433`, `[::ffff:127.0.0.1]` — in the loopback ranges or unspecified (`0.0.0.0`,
/// `[::]`, which connect to this host). Names that resolve to loopback through DNS or
/// `/etc/hosts` cannot be told without resolving them, and are not.
pub fn locality(url: &str) -> Result<Locality, SourceError> {
    parse_url(url).map(|u| locality_of(&u))
}

/// The one host rule, on a parsed URL (a scheme other than `file` with no host — which the
/// standard leaves to `data:` and the like, never fetched — is [`Locality::Remote`]).
fn locality_of(u: &url::Url) -> Locality {
    use std::net::IpAddr;
    let local_ip = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    };
    if u.scheme() == "file" {
        return Locality::File;
    }
    let local = match u.host() {
        // Lower case and IDNA-mapped by the parse; only the root's dot(s) are left to drop.
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(v4)) => local_ip(v4.into()),
        Some(url::Host::Ipv6(v6)) => local_ip(v6.into()),
        None => false,
    };
    if local {
        Locality::Loopback
    } else {
        Locality::Remote
    }
}

/// An artifact or signature URL of an index entry (already resolved against `index_url`): not
/// more local than the index it came from. A `file://` index may name files (local mirrors and
/// tests); an index from loopback may name loopback, not files; an index from another host
/// neither. Otherwise a signed entry could make `install ID` read `/etc/machine-id` or a local
/// service and print its digest. A URL that does not parse is refused here too.
pub fn check_entry_url(index_url: &str, url: &str) -> Result<(), SourceError> {
    let (from, to) = (locality(index_url)?, locality(url)?);
    if to <= from {
        return Ok(());
    }
    Err(SourceError::Url {
        url: without_userinfo(url),
        why: match to {
            Locality::File => {
                "an index that is not itself a file:// URL may not point at file:// URLs"
            }
            _ => "an index from another host may not point at a loopback address",
        },
    })
}

/// `rel` relative to the URL `base` (an absolute URL is returned as is): a plain path below the
/// index's directory, as the URL parser reads it — no `..` or `.` segment in any spelling
/// (`%2e%2e`, `..\`), no absolute path, no other host.
pub fn resolve(base: &str, rel: &str) -> Result<String, SourceError> {
    if rel.contains("://") {
        return Ok(rel.to_string());
    }
    let refuse = || SourceError::Url {
        url: without_userinfo(rel),
        why: "a relative artifact URL must be a plain path below the index's directory",
    };
    if rel.is_empty() || rel.starts_with(['/', '\\']) {
        return Err(refuse());
    }
    let base = parse_url(base)?;
    let joined = base.join(rel).map_err(|_| refuse())?;
    let dir = base.join(".").map_err(|_| refuse())?;
    // The joined URL is normalised (dot segments removed, `\` read as `/`): one that climbed out
    // of the directory, or stood for it, no longer starts below it.
    // An encoded separator is one too once a file:// URL becomes a path (`to_file_path`
    // decodes `%2F`), where the parser's check below does not see it: refused in any case.
    let lower = rel.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(refuse());
    }
    let dot_segment = rel.split(['/', '\\']).any(|s| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    });
    if dot_segment || joined.path() == dir.path() || !joined.as_str().starts_with(dir.as_str()) {
        return Err(refuse());
    }
    Ok(joined.into())
}

/// Download `url`, at most `cap` bytes (more is an error, not a truncation).
pub fn fetch(url: &str, cap: u64) -> Result<Vec<u8>, SourceError> {
    let u = check_url(url)?;
    let too_large = || SourceError::TooLarge {
        url: url.into(),
        cap,
    };
    if u.scheme() == "file" {
        // check_url took it only with a path.
        let path = u.to_file_path().map_err(|()| SourceError::Url {
            url: without_userinfo(url),
            why: "file:// URLs must be absolute (file:///path)",
        })?;
        return read_capped(&path, cap).map_err(|e| match e {
            FileError::TooLarge { .. } => too_large(),
            e => SourceError::fetch(url, e),
        });
    }
    // A proxy from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, less `NO_PROXY`:
    // ureq's default) serves https, which a node without a direct route may need. Never a
    // loopback URL: plain http is allowed there only because the request stays on this host,
    // and through a proxy it would cross the network in the clear, to be answered by whatever
    // listens on the proxy's own loopback.
    let proxy = match locality_of(&u) {
        Locality::Loopback => None,
        _ => ureq::Proxy::try_from_env(),
    };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(proxy)
            .max_redirects(0)
            .http_status_as_error(true)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    // The parse's serialization, not `url`: ureq reads it with another parser (`http::Uri`),
    // which must see the host checked (it does, given a serialization: no userinfo, no `%`,
    // `\` or non-ASCII in the host, one canonical spelling of an address).
    let mut resp = agent
        .get(u.as_str())
        .call()
        .map_err(|e| SourceError::fetch(url, e))?;
    resp.body_mut()
        .with_config()
        .limit(cap)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => too_large(),
            e => SourceError::fetch(url, e),
        })
}

pub(crate) fn parse_sig(
    bytes: &[u8],
) -> Result<Signature, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Signature::parse(&String::from_utf8_lossy(bytes))?)
}

/// The rotation proof's second half (seed 004): whether `prev`, the text of the detached
/// signature published at `<signature URL>.prev` (fetched only when a key changed), is a valid
/// signature by the pinned (old) key `old` over the same `bytes`.
fn prev_vouches(prev: &[u8], old: &PublicKey, bytes: &[u8]) -> bool {
    parse_sig(prev).is_ok_and(|s| old.verify(bytes, &s).is_ok())
}

/// A verified index of one source.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    /// Source name.
    pub source: String,
    /// The index URL (base for relative artifact URLs).
    pub url: String,
    /// The document.
    pub index: Index,
    /// Whether the operator key was re-pinned by a rotation proof during this refresh.
    pub rotated_operator: bool,
}

/// Step 1 for one source: fetch, verify against the pinned key (or a rotation proof), validate,
/// refuse rollback and freeze (below the higher of the configuration's own floor and the shared
/// memory); then remember the version and cache the verified bytes. A user that does not own
/// `sources.json` (the refresh timer's, on root's configuration) records the version in the
/// shared memory only, and refuses an index that rotates the operator key: it cannot pin it,
/// and must not take it silently.
pub fn refresh(p: &Places, name: &str, now: u64) -> Result<VerifiedIndex, SourceError> {
    let state_dir = p.state_dir();
    let mut sources = Sources::load(p)?;
    let src = sources
        .sources
        .get(name)
        .cloned()
        .ok_or_else(|| SourceError::UnknownSource(name.into()))?;
    let mut seen = SeenIndexes::load(state_dir)?;
    let shared = seen.seen(state_dir, name)?;
    let checked = check_index(p, name, src, shared, now)?;
    let foreign = foreign_config(p, SOURCES_FILE);
    if let (Some((path, owner)), true) = (&foreign, checked.vi.rotated_operator) {
        return Err(SourceError::RotationNeedsOwner {
            source_name: name.into(),
            key: describe(&checked.vi.index.operator_pubkey),
            path: path.clone(),
            owner: *owner,
        });
    }
    remember(
        p,
        foreign.is_none().then_some(&mut sources),
        &mut seen,
        checked,
        &mut |_| {},
    )
}

/// `source add`: step 1 for a source that is not configured yet, verified as given (in memory)
/// and saved only once its index passed (docs/sources.md: "the index must verify right then or
/// the source is not added"). Nothing is written before: a failure, or a crash or kill while
/// the index is fetched, leaves `sources.json` as it was (it used to be saved first, and a
/// killed add left a source with no verified index that failed every later install closed).
pub fn add(p: &Places, name: &str, src: Source, now: u64) -> Result<VerifiedIndex, SourceError> {
    check_add(p, name, src, now)?.save(p, &mut |_| {})
}

/// [`add`]'s checks, nothing saved: the source's index fetched and verified against the key
/// given. `stockade source add` records the change between this and [`PendingAdd::save`]
/// (docs/audit.md "Configuration changes").
pub fn check_add(p: &Places, name: &str, src: Source, now: u64) -> Result<PendingAdd, SourceError> {
    // Only the configuration's owner adds a source: refused before anything is fetched.
    check_owner(p, SOURCES_FILE)?;
    let sources = Sources::load(p)?;
    if sources.sources.contains_key(name) {
        return Err(SourceError::SourceExists(name.into()));
    }
    let seen = SeenIndexes::load(p.state_dir())?;
    // A new source starts with no floor, as it always did: an entry of that name in the shared
    // memory (a source removed, or one the timer's user wrote) says nothing about this index.
    let checked = check_index(p, name, src, None, now)?;
    Ok(PendingAdd {
        sources,
        seen,
        checked,
    })
}

/// A source whose index verified ([`check_add`]), not yet saved.
pub struct PendingAdd {
    sources: Sources,
    seen: SeenIndexes,
    checked: CheckedIndex,
}

impl PendingAdd {
    /// The index that verified.
    pub fn index(&self) -> &VerifiedIndex {
        &self.checked.vi
    }

    /// Save the source (the index cache, its configuration, the shared memory), telling `step`
    /// the name of each before it is written ([`ADD_STEPS`]): a failure after the first leaves
    /// what was written before it (the `failed` record's `detail.step`).
    pub fn save(
        mut self,
        p: &Places,
        step: &mut dyn FnMut(&'static str),
    ) -> Result<VerifiedIndex, SourceError> {
        remember(
            p,
            Some(&mut self.sources),
            &mut self.seen,
            self.checked,
            step,
        )
    }
}

/// An index that passed step 1, not yet remembered.
struct CheckedIndex {
    /// The source with what this index makes of it (version seen, a rotated key).
    src: Source,
    bytes: Vec<u8>,
    sig_bytes: Vec<u8>,
    vi: VerifiedIndex,
}

/// A source's index as fetched: the document, its detached signature and, when the pinned key
/// did not verify that signature (perhaps a rotation), the rotation proof's `.prev` signature
/// (`None` when the pinned key verified, or when there is no `.prev` to fetch).
struct FetchedIndex {
    bytes: Vec<u8>,
    sig: Vec<u8>,
    prev: Option<Vec<u8>>,
}

impl FetchedIndex {
    /// Whether the files agree as one publication's would: the pinned key signed the index, or
    /// the key the index names signed it and the pinned key's `.prev` is over these very bytes.
    /// Only to decide whether to fetch again: what is fetched is judged by [`check_index`] all
    /// the same, which trusts nothing for this.
    fn agrees(&self, pinned: &PublicKey) -> bool {
        let Ok(sig) = parse_sig(&self.sig) else {
            return false;
        };
        if pinned.verify(&self.bytes, &sig).is_ok() {
            return true;
        }
        let vouched = self
            .prev
            .as_deref()
            .is_some_and(|p| prev_vouches(p, pinned, &self.bytes));
        vouched
            && Index::parse(&self.bytes)
                .is_ok_and(|c| c.operator_pubkey.verify(&self.bytes, &sig).is_ok())
    }
}

/// A source's index, its detached signature and, if the pinned key does not verify them, the
/// rotation proof's `index.json.minisig.prev`: fetched one after the other. A publisher that
/// replaced them between two fetches (a new version published while an `update` or a refresh
/// read them) gave files that do not match: an index its operator did sign, which was refused
/// as not signed by the pinned key (91, `index.signature`), or — with a rotated key — as a
/// rotation without a proof (91, `index.operator_key`, the `.prev` over the newer bytes): a
/// false tamper report, and a failed update. So files that do not agree
/// ([`FetchedIndex::agrees`]) are fetched once more, the `.prev` with the pair, and the files
/// fetched then are the ones judged (the first, if that fetch fails). Nothing is trusted more
/// for it: they go through every check the first would have (signature or rotation proof,
/// rollback, freeze); only files that still fail are refused.
fn fetch_index(url: &str, sig_url: &str, pinned: &PublicKey) -> Result<FetchedIndex, SourceError> {
    let fetch_all = || -> Result<FetchedIndex, SourceError> {
        let bytes = fetch(url, MAX_INDEX_BYTES as u64)?;
        crate::sys::stop_at("index-signature");
        let sig = fetch(sig_url, MAX_SIG_BYTES)?;
        let pinned_signed = parse_sig(&sig).is_ok_and(|s| pinned.verify(&bytes, &s).is_ok());
        let prev = if pinned_signed {
            None
        } else {
            crate::sys::stop_at("index-prev");
            // None when it cannot be fetched: no proof, which the rotation check says.
            fetch(&format!("{sig_url}.prev"), MAX_SIG_BYTES).ok()
        };
        Ok(FetchedIndex { bytes, sig, prev })
    };
    let first = fetch_all()?;
    if first.agrees(pinned) {
        return Ok(first);
    }
    Ok(fetch_all().unwrap_or(first))
}

/// Step 1 against the source `src` as given: fetch, signature (or rotation proof), parse,
/// rollback and freeze against the higher of its own floor and `shared` ([`index::floor`]).
/// Writes nothing.
fn check_index(
    p: &Places,
    name: &str,
    mut src: Source,
    shared: Option<SeenIndex>,
    now: u64,
) -> Result<CheckedIndex, SourceError> {
    let pinned =
        PublicKey::from_base64(&src.operator_pubkey).map_err(|e| SourceError::Corrupt {
            path: p.config_path(SOURCES_FILE),
            source: Box::new(e),
        })?;
    let sig_url = format!("{}.minisig", src.url);
    let FetchedIndex {
        bytes,
        sig: sig_bytes,
        prev,
    } = fetch_index(&src.url, &sig_url, &pinned)?;
    let sig_err = |source| SourceError::IndexSignature {
        source_name: name.into(),
        pinned: describe(&pinned),
        source,
    };
    let sig = parse_sig(&sig_bytes).map_err(sig_err)?;
    let mut rotated = None;
    if let Err(e) = pinned.verify(&bytes, &sig) {
        // Perhaps a rotation. The document is parsed (not trusted) only to learn the key it
        // claims; it is accepted only if that key signed it AND the pinned key vouches for the
        // change (listed as previous, and a `.prev` signature by it over the same bytes: the
        // one fetched with the pair, [`fetch_index`]).
        let claimed = Index::parse(&bytes).ok();
        let Some(claimed) = claimed.filter(|c| c.operator_pubkey != pinned) else {
            return Err(sig_err(Box::new(e)));
        };
        claimed
            .operator_pubkey
            .verify(&bytes, &sig)
            .map_err(|e| sig_err(Box::new(e)))?;
        check_pin(
            Some(&pinned),
            &claimed.operator_pubkey,
            &claimed.previous_operator_pubkeys,
            |old| {
                prev.as_deref()
                    .is_some_and(|p| prev_vouches(p, old, &bytes))
            },
        )
        .map_err(|source| SourceError::OperatorKey {
            source_name: name.into(),
            source,
        })?;
        rotated = Some(claimed.operator_pubkey.clone());
    }
    let index = Index::parse(&bytes).map_err(|source| SourceError::Index {
        source_name: name.into(),
        source,
    })?;
    let own = match (src.seen_version, src.seen_sha256.as_deref()) {
        (Some(v), Some(h)) => Some((v, hex_digest(&p.config_path(SOURCES_FILE), h)?)),
        _ => None,
    };
    index
        .check_fresh(index::floor(own, shared), now)
        .map_err(|source| SourceError::Index {
            source_name: name.into(),
            source,
        })?;
    src.seen_version = Some(index.version);
    src.seen_sha256 = Some(hex::encode(index.sha256));
    src.refreshed_at = Some(now);
    if let Some(k) = &rotated {
        src.operator_pubkey = k.to_base64();
    }
    Ok(CheckedIndex {
        vi: VerifiedIndex {
            source: name.into(),
            url: src.url.clone(),
            index,
            rotated_operator: rotated.is_some(),
        },
        src,
        bytes,
        sig_bytes,
    })
}

/// Remember a checked index: the cache first, then the source in `sources.json` (the commit;
/// `sources` is `None` for a user that does not own it), then the shared memory. A crash
/// between the first two leaves, for `add`, a cache no configured source reads (`cached`
/// reads only a configured source's, verified against its pinned key) and, for a refresh, one
/// the next refresh replaces — never a source without its verified index; one before the
/// shared memory is written leaves it lower than the owner's floor, which it never lowers.
///
/// `step` is told each one's name before it is written ([`ADD_STEPS`]).
fn remember(
    p: &Places,
    sources: Option<&mut Sources>,
    seen: &mut SeenIndexes,
    c: CheckedIndex,
    step: &mut dyn FnMut(&'static str),
) -> Result<VerifiedIndex, SourceError> {
    let (name, state_dir) = (&c.vi.source, p.state_dir());
    step(ADD_STEPS[0]);
    // Through the directory's descriptor, opened without following a symlink: the daemon's
    // user owns the state directory and could make `indexes` point anywhere root can write.
    crate::state::ensure_dir(state_dir)?;
    // Errors name `<state>/indexes/…`, not the descriptor's `/proc/self/fd/N/…`.
    let held = HeldDir::open_shared(state_dir, INDEX_CACHE_DIR, Some(0o700))?;
    // What a killed refresh left half-written here and beside `sources-seen.json`: nothing
    // else removes it (crate::fileio::sweep_reserved takes only this uid's stale, unlocked
    // ones).
    crate::fileio::sweep_reserved(&held.path());
    crate::fileio::sweep_reserved(state_dir);
    // One file, replaced whole ([`CachedIndex`] says why). The checked bytes were parsed as
    // JSON, so they are UTF-8; a signature file that is not (its parse read it lossily, as
    // `cached` does) is kept as that parse read it.
    let doc = CachedIndex {
        schema: INDEX_CACHE_SCHEMA.into(),
        index: String::from_utf8_lossy(&c.bytes).into_owned(),
        signature: String::from_utf8_lossy(&c.sig_bytes).into_owned(),
    };
    let at = held.join(index_cache_file(name));
    let bytes = to_json(at.shown(), &doc)?;
    write_state_file(at.path(), &bytes, 0o644).map_err(|e| e.shown_as(at.shown()))?;
    crate::sys::stop_at("index-cached");
    // An earlier build's two files, now superseded: never read again once the file above
    // exists, removed so that they cannot outlive it (what cannot be removed is harmless).
    for f in legacy_index_cache_files(name) {
        let _ = std::fs::remove_file(held.path().join(f));
    }
    let entry = SeenEntry {
        version: c.vi.index.version,
        sha256: hex::encode(c.vi.index.sha256),
        refreshed_at: c.src.refreshed_at.unwrap_or_default(),
    };
    if let Some(sources) = sources {
        step(ADD_STEPS[1]);
        sources.sources.insert(name.clone(), c.src);
        sources.save(p)?;
    }
    step(ADD_STEPS[2]);
    seen.sources.insert(name.clone(), entry);
    seen.save(state_dir)?;
    Ok(c.vi)
}

/// The files a source's index is remembered in, in the order [`remember`] writes them: the
/// names a `source add` whose save failed says it reached (`detail.step`, docs/audit.md).
pub const ADD_STEPS: [&str; 3] = ["index_cache", "sources_json", "index_memory"];

/// The index cache's directory held for removing `name`'s cached index ([`IndexCache::forget`]),
/// or `None` when there is no cache. Opened first, before anything changes, without following a
/// symlink: the daemon's user owns the state directory and could make `indexes` point at a
/// directory of root's, whose `<name>.json` root's `source remove` would then delete.
pub struct IndexCache(Option<HeldDir>);

impl IndexCache {
    /// Hold the cache of `state_dir` (78 `source.unsafe` when `indexes` is a symlink).
    pub fn hold(state_dir: &Path) -> Result<IndexCache, SourceError> {
        match HeldDir::open_shared(state_dir, INDEX_CACHE_DIR, None) {
            Ok(h) => Ok(IndexCache(Some(h))),
            Err(HeldDirError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(IndexCache(None))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Remove `name`'s cached index (and an earlier build's two files; what is not there is
    /// fine).
    pub fn forget(&self, name: &str) {
        let Some(held) = &self.0 else { return };
        let [index, sig] = legacy_index_cache_files(name);
        for f in [index_cache_file(name), index, sig] {
            let _ = std::fs::remove_file(held.path().join(f));
        }
    }
}

/// Why a source's cached index cannot be used ([`cached`]): it is there, but does not read,
/// parse or verify against the key the source pins — or this user may not read it
/// ([`Self::denied`]).
#[derive(Debug, thiserror::Error)]
#[error("the cached index of source `{name}` ({}) {why}", path.display())]
pub struct CacheUnreadable {
    /// The source.
    pub name: String,
    /// The cache file (the index's, for an earlier build's pair).
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
    /// The cache (its directory or file) is there, but this user may not read it (EACCES,
    /// EPERM): a member of the state directory's group in the packaged layout, where `indexes`
    /// is 0700 the daemon's user's. Nothing is wrong with it, and a refresh by this user
    /// cannot change that: the caller says so, not "damaged".
    pub denied: bool,
}

/// The last verified index of source `name` of `sources` (loaded by the caller, who says when
/// that fails), from the cache of `state_dir`, re-verified against the pinned key (no download;
/// for flagging delisted plugins in `list`). `Ok(None)` if the source is not configured or was
/// never refreshed (no cache directory, no cache file); a cache that is there but cannot be
/// read, does not parse or does not verify is [`CacheUnreadable`], for the caller to say: it
/// used to be `None` as well, and `list` showed a plugin its source had delisted as listed,
/// saying nothing. So is one older than the floor a refresh keeps for the source (or another
/// index of its version): the state directory's owner writes the cache, and could put an older
/// index, still signed, in place of the current one — holding `indexes` (below) does not stop
/// that, the floor does, as far as root's own configuration recorded it.
///
/// Read through the cache directory held as a refresh writes it ([`HeldDir::open_shared`]:
/// `indexes` itself not followed if a symlink), not by path: the daemon's user owns the state
/// directory, and a symlink it planted at `indexes` made root's `list` read the cache of any
/// directory root can read (an older index there, still signed, hid a delisting) where a
/// refresh ([`remember`]) and `source remove` ([`IndexCache::hold`]) refuse it. Such a
/// directory is [`CacheUnreadable`] too. So is a cache this user may not read (a member of the
/// state directory's group, `indexes` being 0700 its owner's): [`CacheUnreadable::denied`],
/// said as such, not as damage a refresh would repair.
pub fn cached(
    state_dir: &Path,
    sources: &Sources,
    name: &str,
) -> Result<Option<Index>, CacheUnreadable> {
    let Some(src) = sources.sources.get(name) else {
        return Ok(None);
    };
    let bad = |path: &Path, why: String| CacheUnreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        why,
        denied: false,
    };
    // This user may not read it: its own error, naming the user ([`CacheUnreadable::denied`]).
    let denied = |path: &Path, cause: &dyn std::fmt::Display| CacheUnreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        why: format!(
            "cannot be read by this user (uid {}): {cause}",
            nix::unistd::geteuid()
        ),
        denied: true,
    };
    let held = match HeldDir::open_shared(state_dir, INDEX_CACHE_DIR, None) {
        Ok(held) => held,
        Err(HeldDirError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(HeldDirError::Io { path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Err(denied(&path, &source))
        }
        Err(HeldDirError::Io { path, source }) => {
            return Err(bad(&path, format!("cannot be opened: {source}")))
        }
        Err(HeldDirError::Unsafe { path, why }) => return Err(bad(&path, why)),
    };
    // Each file read through the held directory (`at.path()`), named as the user knows it
    // (`at.shown()`).
    let at = held.join(index_cache_file(name));
    // The OS error of a failed read (the path is said already), or what else it was.
    let unread = |e: &FileError| {
        std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
    };
    // JSON escaping at most doubles the text (a quote or a backslash per byte), plus the frame.
    let cap = 2 * (MAX_INDEX_BYTES as u64 + MAX_SIG_BYTES) + 4096;
    // Read as the state directory's other files are (no symlink at the name, one link, this
    // user's, root's or the directory's owner's — whose refresh timer writes it — and writable
    // by no one else): the floor below judges what it says, this who could have put it there.
    // An earlier build's pair (below) is read as that build wrote it.
    let (bytes, sig, shown) = match read_owned_in(&held.path(), index_cache_file(name), cap)
        .map_err(|e| e.shown_as(at.shown()))
    {
        Ok(doc) => {
            let doc: CachedIndex = serde_json::from_slice(&doc)
                .map_err(|e| bad(at.shown(), format!("is not an index cache: {e}")))?;
            if doc.schema != INDEX_CACHE_SCHEMA {
                return Err(bad(
                    at.shown(),
                    format!(
                        "has schema `{}`, expected `{INDEX_CACHE_SCHEMA}`",
                        doc.schema
                    ),
                ));
            }
            (
                doc.index.into_bytes(),
                doc.signature,
                at.shown().to_path_buf(),
            )
        }
        // An earlier build's cache, until the next refresh replaces it: still two files, so
        // still a pair that may not verify. Neither there: never refreshed.
        Err(e) if e.is_not_found() => {
            let [index, sig] = legacy_index_cache_files(name);
            let (index, sig) = (held.join(index), held.join(sig));
            let bytes = match read_capped(index.path(), MAX_INDEX_BYTES as u64) {
                Ok(b) => b,
                Err(e) if e.is_not_found() && !sig.path().exists() => return Ok(None),
                Err(e) if e.is_denied() => return Err(denied(index.shown(), &unread(&e))),
                Err(e) => {
                    return Err(bad(
                        index.shown(),
                        format!("cannot be read: {}", unread(&e)),
                    ))
                }
            };
            let sig = read_capped(sig.path(), MAX_SIG_BYTES).map_err(|e| {
                if e.is_denied() {
                    return denied(sig.shown(), &unread(&e));
                }
                bad(
                    index.shown(),
                    format!("has no signature that can be read: {}", unread(&e)),
                )
            })?;
            (
                bytes,
                String::from_utf8_lossy(&sig).into_owned(),
                index.shown().to_path_buf(),
            )
        }
        Err(e) if e.is_denied() => return Err(denied(at.shown(), &unread(&e))),
        Err(e) => return Err(bad(at.shown(), format!("cannot be read: {}", unread(&e)))),
    };
    let pinned = PublicKey::from_base64(&src.operator_pubkey).map_err(|e| {
        bad(
            &shown,
            format!("cannot be checked: the pinned key is invalid: {e}"),
        )
    })?;
    let sig = Signature::parse(&sig)
        .map_err(|e| bad(&shown, format!("has a signature that does not parse: {e}")))?;
    pinned.verify(&bytes, &sig).map_err(|e| {
        bad(
            &shown,
            format!("does not verify against the source's pinned key: {e}"),
        )
    })?;
    let index = Index::parse(&bytes).map_err(|e| bad(&shown, format!("holds no index: {e}")))?;
    // Not older than what this node recorded for the source: the floor a refresh keeps
    // ([`index::floor`] of the configuration's own, which only its owner writes, and the shared
    // memory, which may only raise it). The cache is the state directory owner's to write, and
    // an older index of the source, still signed by its key, put there hid a delisting from
    // root's `list` — the pinned key cannot tell it from the current one. A refresh writes the
    // cache before either floor, so a cache is never older than they are, unless put there.
    let own = match (src.seen_version, src.seen_sha256.as_deref()) {
        (Some(v), Some(h)) => {
            let mut d = [0u8; 32];
            hex::decode_to_slice(h, &mut d).ok().map(|()| (v, d))
        }
        _ => None,
    };
    let shared = SeenIndexes::load(state_dir)
        .ok()
        .and_then(|s| s.seen(state_dir, name).ok().flatten());
    if let Some((version, digest)) = index::floor(own, shared) {
        if index.version < version {
            return Err(bad(
                &shown,
                format!(
                    "is index version {}, older than version {version} this node has seen of \
                     the source (an older index put in place of the cache)",
                    index.version
                ),
            ));
        }
        if index.version == version && index.sha256 != digest {
            return Err(bad(
                &shown,
                format!(
                    "is another index of version {version} than the one this node has seen of \
                     the source"
                ),
            ));
        }
    }
    Ok(Some(index))
}

/// Whether a source delists `id`: the reason, or "no longer listed" when the entry is gone.
pub fn delisted_in(index: &Index, id: &str) -> Option<String> {
    let entries = index.versions(id);
    if entries.is_empty() {
        return Some("no longer listed by its source".into());
    }
    entries.iter().find_map(|e| e.delisted.as_ref()).map(|d| {
        if d.reason.is_empty() {
            "delisted (no reason given)".to_string()
        } else {
            d.reason.clone()
        }
    })
}

/// All sources refreshed once per command.
#[derive(Debug, Default)]
pub struct Session {
    indexes: Vec<VerifiedIndex>,
}

/// What to install from an index.
#[derive(Debug, Clone)]
pub enum Want {
    /// Exactly this version.
    Exact(semver::Version),
    /// The highest version matching.
    Req(semver::VersionReq),
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Exact(v) => write!(f, "{v}"),
            Want::Req(r) => write!(f, "{r}"),
        }
    }
}

/// A package fetched and checked through steps 2–4, ready for the store (steps 5 and 7).
#[derive(Debug)]
pub struct Fetched {
    _dir: tempfile::TempDir,
    /// The downloaded package file.
    pub path: PathBuf,
    /// Source name.
    pub source: String,
    /// The index entry it was chosen from.
    pub entry: Entry,
    /// The author key it verified against.
    pub author: PublicKey,
    /// What the pin check decided (recorded at step 7).
    pub pin: PinOutcome,
    /// The index's author name and what its pin check decided (None: the entry names none).
    pub author_pin: Option<(String, PinOutcome)>,
}

impl Session {
    /// Refresh every configured source (step 1 for each; any failure stops: fail closed).
    pub fn open(p: &Places, now: u64) -> Result<Self, SourceError> {
        let names: Vec<String> = Sources::load(p)?.sources.into_keys().collect();
        let mut indexes = Vec::new();
        for n in names {
            indexes.push(refresh(p, &n, now)?);
        }
        Ok(Self { indexes })
    }

    /// The verified indexes.
    pub fn indexes(&self) -> &[VerifiedIndex] {
        &self.indexes
    }

    /// The best entry for `id`: the highest version matching `want` across sources (ties: the
    /// first source by name); a delisted plugin is refused. `source` restricts the search.
    pub fn find(
        &self,
        id: &str,
        want: Option<&Want>,
        source: Option<&str>,
    ) -> Result<(&VerifiedIndex, &Entry), SourceError> {
        let mut best: Option<(&VerifiedIndex, &Entry)> = None;
        for vi in self
            .indexes
            .iter()
            .filter(|v| source.is_none_or(|s| s == v.source))
        {
            for e in vi.index.versions(id) {
                let v = index::entry_version(e);
                let ok = match want {
                    None => true,
                    Some(Want::Exact(x)) => v == *x,
                    Some(Want::Req(r)) => r.matches(&v),
                };
                if ok && best.is_none_or(|(_, b)| v > index::entry_version(b)) {
                    best = Some((vi, e));
                }
            }
        }
        let (vi, e) = best.ok_or_else(|| SourceError::NotFound {
            id: id.into(),
            version: want.map(|w| w.to_string()),
        })?;
        if let Some(reason) = delisted_in(&vi.index, id) {
            return Err(SourceError::Delisted {
                id: id.into(),
                source_name: vi.source.clone(),
                reason,
            });
        }
        Ok((vi, e))
    }

    /// Steps 2–4 for one entry: choose the build, check size and digest, the author signature,
    /// and the author pin. Nothing is recorded yet.
    pub fn fetch(
        &self,
        p: &Places,
        vi: &VerifiedIndex,
        e: &Entry,
        platform: &str,
    ) -> Result<Fetched, SourceError> {
        let art = choose_artifact(e, platform).map_err(|have| SourceError::Unavailable {
            id: e.id.clone(),
            version: e.version.clone(),
            platform: platform.into(),
            have,
        })?;
        // Step 2: size and digest, before any signature is read. Both URLs are checked against
        // the index's own before anything is fetched, so a digest in an error is always of
        // something the index may point at.
        let url = resolve(&vi.url, &art.url)?;
        check_entry_url(&vi.url, &url)?;
        let sig_url = resolve(&vi.url, &art.signature_url)?;
        check_entry_url(&vi.url, &sig_url)?;
        if art.size > MAX_PACKAGE_BYTES {
            return Err(SourceError::ArtifactDigest {
                url,
                what: format!("the index says {} bytes, over the package cap", art.size),
            });
        }
        let bytes = match fetch(&url, art.size) {
            Ok(b) => b,
            Err(SourceError::TooLarge { .. }) => {
                return Err(SourceError::ArtifactDigest {
                    url,
                    what: format!("larger than the {} bytes the index says", art.size),
                })
            }
            Err(e) => return Err(e),
        };
        if bytes.len() as u64 != art.size {
            return Err(SourceError::ArtifactDigest {
                url,
                what: format!("{} bytes, the index says {}", bytes.len(), art.size),
            });
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != art.sha256 {
            return Err(SourceError::ArtifactDigest {
                url,
                what: format!("sha256 {digest}, the index says {}", art.sha256),
            });
        }
        // Step 3: the author's detached signature.
        let author = PublicKey::from_base64(&e.author.pubkey).map_err(|err| {
            SourceError::ArtifactSignature {
                url: url.clone(),
                author: e.author.pubkey.clone(),
                source: Box::new(err),
            }
        })?;
        let sig_bytes = fetch(&sig_url, MAX_SIG_BYTES)?;
        let sig_fail = |source| SourceError::ArtifactSignature {
            url: url.clone(),
            author: describe(&author),
            source,
        };
        let sig = parse_sig(&sig_bytes).map_err(sig_fail)?;
        author
            .verify(&bytes, &sig)
            .map_err(|err| sig_fail(Box::new(err)))?;
        // Step 4: the author pin.
        let previous: Vec<PublicKey> = e
            .author
            .previous_pubkeys
            .iter()
            .filter_map(|k| PublicKey::from_base64(k).ok())
            .collect();
        let pins = Pins::load(p)?;
        let pinned = pins.key(&e.id)?;
        // The rotation proof, `<signature_url>.prev`: fetched once, when a pin first needs it,
        // and the same for the plugin's pin and its author name's. No second fetch as for the
        // index's (`fetch_index`): the bytes it signs are fixed by the index's digest (step 2),
        // so a republish in between leaves a `.prev` over these very bytes.
        let prev = std::cell::OnceCell::new();
        let vouches = |old: &PublicKey| {
            prev.get_or_init(|| fetch(&format!("{sig_url}.prev"), MAX_SIG_BYTES).ok())
                .as_deref()
                .is_some_and(|b| prev_vouches(b, old, &bytes))
        };
        let pin = check_pin(pinned.as_ref(), &author, &previous, vouches).map_err(|source| {
            SourceError::AuthorPin {
                id: e.id.clone(),
                source,
            }
        })?;
        // The same rule for the author's name, so that a new plugin published under a known
        // author's name with another key is refused (seed 004 pins per author).
        // A name with nothing visible in it names no author: no pin (else every such entry
        // would share the one empty key).
        let author_pin = match e.author.name.as_str() {
            name if author_pin_key(name).is_empty() => None,
            name => {
                let pinned = pins.key_of(PinKind::Author, name)?;
                let o =
                    check_pin(pinned.as_ref(), &author, &previous, vouches).map_err(|source| {
                        SourceError::AuthorPin {
                            id: format!("author `{name}` (plugin {})", e.id),
                            source,
                        }
                    })?;
                Some((name.to_string(), o))
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("stockade-fetch-")
            .tempdir()
            .map_err(|err| SourceError::fetch(&url, err))?;
        let path = dir.path().join(format!("{}-{}.stockade", e.id, e.version));
        std::fs::write(&path, &bytes).map_err(|err| SourceError::fetch(&url, err))?;
        Ok(Fetched {
            _dir: dir,
            path,
            source: vi.source.clone(),
            entry: e.clone(),
            author,
            pin,
            author_pin,
        })
    }
}

/// This host's platform, `linux-x86_64` etc.
pub fn this_platform() -> String {
    index::platform(std::env::consts::OS, std::env::consts::ARCH)
}

/// Step 5's agreement check: the verified package against its index entry.
pub fn check_agreement(
    f: &Fetched,
    manifest: &stockade_policy::manifest::ValidatedManifest,
    developer_key: Option<&PublicKey>,
) -> Result<(), SourceError> {
    let e = &f.entry;
    if manifest.name() != e.id {
        return Err(SourceError::Mismatch(format!(
            "manifest name `{}`, index id `{}`",
            manifest.name(),
            e.id
        )));
    }
    if manifest.version().to_string() != e.version {
        return Err(SourceError::Mismatch(format!(
            "manifest version {}, index version {}",
            manifest.version(),
            e.version
        )));
    }
    if manifest.manifest().tier != e.tier {
        return Err(SourceError::Mismatch(format!(
            "manifest tier {:?}, index tier {:?}",
            manifest.manifest().tier,
            e.tier
        )));
    }
    if developer_key != Some(&f.author) {
        return Err(SourceError::Mismatch(format!(
            "the package is signed by developer key {}, the index names author key {}",
            developer_key.map_or("(none)".into(), |k| k.key_id.to_string()),
            f.author.key_id
        )));
    }
    Ok(())
}

/// Step 4 within one command: the pins of `pins.json` are written when the command commits, so
/// two packages it fetches under one author's name must carry the same key — else the first
/// use of that name would pin whichever came last.
pub fn check_name_pin_within<'a>(
    f: &Fetched,
    staged: impl IntoIterator<Item = (&'a str, &'a PublicKey)>,
) -> Result<(), SourceError> {
    let Some((name, _)) = &f.author_pin else {
        return Ok(());
    };
    let want = author_match_key(name);
    for (other, key) in staged {
        if author_match_key(other) == want && *key != f.author {
            return Err(SourceError::AuthorPin {
                id: format!("author `{name}` (plugin {})", f.entry.id),
                source: PinMismatch {
                    pinned: describe(key),
                    offered: describe(&f.author),
                    why: "another package of this command names the same author with that key",
                },
            });
        }
    }
    Ok(())
}

/// The author pin check for a package installed from a file: its developer key against the
/// pin for its name (no rotation proof can come with a file: a change needs `repin-author`).
pub fn check_file_pin(
    p: &Places,
    id: &str,
    developer_key: &PublicKey,
) -> Result<PinOutcome, SourceError> {
    let pinned = Pins::load(p)?.key(id)?;
    check_pin(pinned.as_ref(), developer_key, &[], |_| false).map_err(|source| {
        SourceError::AuthorPin {
            id: id.into(),
            source,
        }
    })
}

/// Step 4 for a pin decided as first use: refused when the store already holds `id`, signed by
/// key `installed_signer`. Every install records the signer's pin before it commits and nothing
/// removes one, so an installed plugin without a pin means `pins.json` was removed or replaced
/// — which the owner of the state directory (the daemon's user, in the packaged layout) can
/// do, though it cannot write a pin root reads — and taking the package's key on first use
/// would hand that user the author pin after all.
pub fn check_pin_not_lost(id: &str, installed_signer: Option<&str>) -> Result<(), SourceError> {
    match installed_signer {
        Some(signer) => Err(SourceError::PinLost {
            id: id.into(),
            signer: signer.into(),
        }),
        None => Ok(()),
    }
}

/// Step 7's first half: record the pins (by plugin id and by author name) decided for the
/// plugins about to be committed.
pub fn record_pins(
    p: &Places,
    pins: &[(PinKind, String, PublicKey, PinOutcome)],
    now: u64,
) -> Result<(), SourceError> {
    let mut all = Pins::load(p)?;
    let mut changed = false;
    for (kind, k, key, outcome) in pins {
        let how = match outcome {
            PinOutcome::Match => continue,
            PinOutcome::FirstUse => "first-use",
            PinOutcome::Rotated { .. } => "rotation",
        };
        all.set_of(*kind, k, key, how, now);
        changed = true;
    }
    if changed {
        all.save(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind comes with one code (runtime/src/kinds.rs): a state directory that cannot be
    /// made is 78, as the exit says, so its kind is not `source.io` (74, a file that cannot be
    /// read or written), which it was.
    #[test]
    fn each_state_error_has_the_kind_of_its_code() {
        let errors = [
            StateError::Create {
                path: PathBuf::from("/x"),
                source: std::io::Error::other("no"),
            },
            StateError::Corrupt {
                path: PathBuf::from("/x"),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            },
        ];
        for e in errors {
            let e = SourceError::State(e);
            assert_eq!(
                crate::kinds::exit_of(e.kind()),
                Some(e.exit()),
                "{} with {}",
                e.kind(),
                e.exit().code()
            );
        }
    }

    /// The configuration is in the state directory when that is this user's own, in the
    /// default sources directory when it is another user's or others may write it, and in the
    /// one given whenever one is — unless that is the state directory itself: then it is the
    /// state directory if that is this user's own, and refused if not.
    /// Root making its sources directory where its parent is missing too (no `/etc/stockade`
    /// on a host without the package) makes the chain, 0755 each; reading makes nothing; and
    /// the nearest existing directory above decides who may change the configuration (it
    /// stopped at the parent: "nothing there" read as "this user's to write").
    #[test]
    fn a_sources_directory_whose_parents_are_missing_is_made_with_them() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("etc/stockade/sources");
        assert!(hold_config_dir(&dir, false).unwrap().is_none());
        assert!(!d.path().join("etc").exists(), "a read makes nothing");
        let p = Places::new(d.path(), Some(&dir)).unwrap();
        assert_eq!(
            foreign_config(&p, PINS_FILE),
            None,
            "this user's tempdir decides"
        );
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
            assert_eq!(
                foreign_config(&p, PINS_FILE),
                Some((d.path().to_path_buf(), 65534)),
                "the nearest existing directory is another user's"
            );
            std::os::unix::fs::chown(d.path(), Some(0), Some(0)).unwrap();
        }
        assert!(hold_config_dir(&dir, true).unwrap().is_some());
        for made in ["etc", "etc/stockade", "etc/stockade/sources"] {
            let md = std::fs::metadata(d.path().join(made)).unwrap();
            assert!(md.is_dir(), "{made}");
            assert_eq!(md.mode() & 0o777, 0o755, "{made}");
        }
    }

    #[test]
    fn the_configuration_is_kept_out_of_another_users_state_directory() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let own = Places::new(d.path(), None).unwrap();
        assert_eq!(own.config_dir(), None);
        assert_eq!(own.config_path(PINS_FILE), d.path().join(PINS_FILE));
        let given = d.path().join("cfg");
        let p = Places::new(d.path(), Some(&given)).unwrap();
        assert_eq!(p.config_dir(), Some(given.as_path()));
        assert_eq!(p.config_path(PINS_FILE), given.join(PINS_FILE));
        let same = Places::new(d.path(), Some(d.path())).unwrap();
        assert_eq!(same.config_dir(), None);
        // Missing: judged by where it would be made.
        let missing = d.path().join("new/state");
        assert_eq!(Places::new(&missing, None).unwrap().config_dir(), None);
        // Another user's: made so as root; `/` is root's, another user's for anyone else.
        let foreign = if nix::unistd::geteuid().is_root() {
            let f = d.path().join("foreign");
            std::fs::create_dir(&f).unwrap();
            std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
            f
        } else {
            PathBuf::from("/")
        };
        // This user's, but a group's to write (root:nogroup 2770): a member could rename the
        // configuration in it as the owner of a foreign one could (before: kept there).
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2770)).unwrap();
        // This user's, below a directory others may write.
        let open = d.path().join("open");
        std::fs::create_dir_all(open.join("state")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // This user's, reached through a symbolic link: judged on where it leads but used by
        // the link, which whoever may change the link's directory can repoint (before: kept).
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for dir in [foreign.clone(), shared.clone(), open.join("state"), link] {
            let p = Places::new(&dir, None).unwrap();
            assert_eq!(
                p.config_dir(),
                Some(Path::new(DEFAULT_SOURCES_DIR)),
                "{dir:?}"
            );
            assert_eq!(p.state_dir(), dir);
            let p = Places::new(&dir, Some(&given)).unwrap();
            assert_eq!(p.config_dir(), Some(given.as_path()), "{dir:?}");
            // Named as the sources directory too: refused (before: taken for the state
            // directory, and the configuration kept where others could rename it).
            let e = Places::new(&dir, Some(&dir)).unwrap_err();
            assert_eq!(
                (e.exit(), e.kind()),
                (Exit::Config, "source.unsafe"),
                "{dir:?}"
            );
            assert!(e.to_string().contains("is the state directory"), "{e}");
        }
    }

    /// Where a URL points, as both rules (and the download) must read it.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum At {
        Remote,
        Loopback,
        File,
        /// Not a URL the parser reads: refused by both rules.
        Unreadable,
    }

    /// Every spelling of a host the two rules once read apart: the URL, whether [`check_url`]
    /// fetches it, and where it points. Rows marked OLD were wrong before there was one host
    /// function; BYPASS ones let a remote index reach this host (ureq 3 connected to loopback:
    /// `http::Uri` keeps an IPv6 zone, std's `SocketAddr` parser reads a numeric one, and
    /// Linux ignores a zone on a loopback address).
    const SPELLINGS: &[(&str, bool, At)] = &[
        ("https://example.org/index.json", true, At::Remote),
        ("file:///srv/index.json", true, At::File),
        ("http://127.0.0.1:8080/index.json", true, At::Loopback),
        ("http://[::1]:8080/index.json", true, At::Loopback),
        ("http://localhost/x", true, At::Loopback),
        ("http://LocalHost:80/x", true, At::Loopback), // OLD: check_url refused
        ("http://LOCALHOST./x", false, At::Loopback),  // may ask DNS: no plain http
        ("https://LOCALHOST./x", true, At::Loopback),
        ("http://a.localhost/x", false, At::Loopback), // may ask DNS: no plain http
        ("https://a.localhost/x", true, At::Loopback),
        ("https://localhost.example/x", true, At::Remote),
        ("http://[::ffff:127.0.0.1]/x", true, At::Loopback), // OLD: check_url refused
        ("https://[::ffff:7f00:1]/x", true, At::Loopback),
        ("http://0.0.0.0/", true, At::Loopback), // OLD: check_url refused (it is this host)
        ("https://[::]/x", true, At::Loopback),
        ("http://127.1/", true, At::Loopback), // OLD: check_url refused
        ("https://127.1/x", true, At::Loopback),
        ("http://2130706433/", true, At::Loopback), // OLD: check_url refused
        ("https://0x7f000001/x", true, At::Loopback),
        ("https://0177.0.0.1/x", true, At::Loopback),
        ("https://127.0x.0x.1/x", true, At::Loopback), // OLD: Remote
        ("https://0x/x", true, At::Loopback),          // OLD: Remote (0.0.0.0)
        ("https://0/x", true, At::Loopback),
        ("https://127.0.0.1./x", true, At::Loopback),
        ("https://127.255.255.254?q", true, At::Loopback),
        ("http://evil@127.0.0.1/", false, At::Loopback),
        ("https://evil@127.0.0.1/", false, At::Loopback), // OLD: check_url fetched it
        ("https://evil.example@127.0.0.1/x", false, At::Loopback), // OLD: check_url fetched it
        ("https://127.0.0.1@evil.example/x", false, At::Remote), // OLD: check_url fetched it
        ("https://127.0.0.1:443@example.com/", false, At::Remote), // OLD: check_url fetched it
        ("https://:pw@example.org/x", false, At::Remote), // OLD: check_url fetched it
        ("https://127.0.0.1#@example.com/", true, At::Loopback),
        ("http://127.0.0.1#@example.com/", true, At::Loopback), // OLD: check_url refused
        ("https://127.0.0.1?@example.com/", true, At::Loopback),
        ("https://example.org#127.0.0.1", true, At::Remote),
        ("https://%31%32%37.0.0.1/x", true, At::Loopback), // OLD: Remote
        ("https://%6c%6fcalhost/x", true, At::Loopback),   // OLD: Remote
        (
            "https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/x",
            true,
            At::Loopback,
        ), // OLD: Remote (fullwidth)
        (
            "https://\u{2460}\u{2461}\u{2466}.0.0.1/x",
            true,
            At::Loopback,
        ), // OLD: Remote (circled digits)
        ("https://127.0.0.1\\@example.com/", true, At::Loopback), // OLD: Remote (`\` is `/`)
        ("https://example.com\\@127.0.0.1/", true, At::Remote), // OLD: Loopback
        ("https://[::1%251]:631/x", false, At::Unreadable), // OLD: BYPASS (fetched ::1)
        ("https://[::1%25]/x", false, At::Unreadable),     // OLD: BYPASS (scope 25)
        ("https://[::ffff:127.0.0.1%251]/x", false, At::Unreadable), // OLD: BYPASS
        ("https://1.2.3.4.5/x", false, At::Unreadable),    // OLD: fetched (as a DNS name)
        ("https://[::127.0.0.1]/x", true, At::Remote),     // IPv4-compatible: not routed here
        ("https://128.0.0.1/x", true, At::Remote),
        ("https://10.0.0.1/x", true, At::Remote), // private ranges are not this host
        ("http://10.0.0.1/index.json", false, At::Remote),
        ("http://127.0.0.1.evil.example/x", false, At::Remote),
        ("FILE:///etc/machine-id", true, At::File), // OLD: Remote (not fetched)
        ("HTTPS://127.0.0.1/x", true, At::Loopback), // OLD: Remote (not fetched)
        ("file:///srv/a#b", false, At::File),       // OLD: read `/srv/a#b`
        ("file:///srv/a?b", false, At::File),       // OLD: read `/srv/a?b`
        ("file://relative", false, At::File),
        ("ftp://x/y", false, At::Remote),
    ];

    #[test]
    fn check_url_reads_every_spelling() {
        let mut wrong = Vec::new();
        for &(u, fetched, _) in SPELLINGS {
            match check_url(u) {
                Ok(_) if fetched => {}
                Err(e) if !fetched && (e.exit(), e.kind()) == (Exit::Usage, "index.url") => {}
                r => wrong.push(format!("{u}: {:?}", r.map(drop))),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        // What the parser could not read is said, as the error's cause.
        let e = check_url("https://[::1%251]:631/x").unwrap_err();
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        assert!(
            cause.as_deref().is_some_and(|c| c.contains("IPv6")),
            "{e}: {cause:?}"
        );
    }

    #[test]
    fn the_entry_rule_reads_every_spelling() {
        let from = [
            (At::Remote, "https://plugins.example.org/index.json"),
            (At::Loopback, "http://127.0.0.1:8080/index.json"),
            (At::File, "file:///srv/repo/index.json"),
        ];
        let mut wrong = Vec::new();
        for &(u, _, at) in SPELLINGS {
            for (index_at, index) in from {
                let ok = at != At::Unreadable && at as u8 <= index_at as u8;
                match check_entry_url(index, u) {
                    Ok(()) if ok => {}
                    Err(e) if !ok && (e.exit(), e.kind()) == (Exit::Usage, "index.url") => {}
                    r => wrong.push(format!("{u} from {index:?}: {r:?}")),
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn locality_reads_every_spelling() {
        let mut wrong = Vec::new();
        for &(u, _, at) in SPELLINGS {
            let want = match at {
                At::Remote => Some(Locality::Remote),
                At::Loopback => Some(Locality::Loopback),
                At::File => Some(Locality::File),
                At::Unreadable => None,
            };
            if locality(u).ok() != want {
                wrong.push(format!("{u}: {:?}", locality(u).ok()));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// What is fetched is what was checked: the parse's serialization, one spelling of the host.
    #[test]
    fn the_url_fetched_is_the_url_checked() {
        for (u, fetched) in [
            ("https://%31%32%37.0.0.1/x", "https://127.0.0.1/x"),
            ("http://LocalHost:8080/x", "http://localhost:8080/x"),
            ("http://127.1:8080/a/../x", "http://127.0.0.1:8080/x"),
            (
                "https://example.com\\@127.0.0.1/",
                "https://example.com/@127.0.0.1/",
            ),
        ] {
            assert_eq!(check_url(u).unwrap().as_str(), fetched, "{u}");
        }
        let u = check_url("file:///srv/my%20repo/index.json").unwrap();
        assert_eq!(
            u.to_file_path().unwrap(),
            Path::new("/srv/my repo/index.json")
        );
    }

    /// The bypass itself: an entry of a remote index naming this host's loopback with an IPv6
    /// zone passed the entry rule (its hand parser read no address), and ureq connected to it
    /// (a TCP connection, then rustls refused the name: an open port and a closed one gave
    /// different errors). Now nothing connects.
    #[test]
    fn a_zoned_loopback_address_reaches_no_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let u = format!("https://[::ffff:127.0.0.1%251]:{port}/x.stockade");
        let r = check_entry_url("https://plugins.example.org/index.json", &u)
            .and_then(|()| fetch(&u, 10).map(drop));
        assert!(
            matches!(l.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{u} reached the loopback listener ({r:?})"
        );
        let e = r.unwrap_err();
        assert_eq!((e.exit(), e.kind()), (Exit::Usage, "index.url"), "{e}");
    }

    #[test]
    fn relative_urls_stay_below_the_index() {
        let base = "https://h/a/index.json";
        for (rel, want) in [
            ("p/x.stockade", "https://h/a/p/x.stockade"),
            ("x.stockade?v=1", "https://h/a/x.stockade?v=1"),
            ("https://o/x", "https://o/x"),
        ] {
            assert_eq!(resolve(base, rel).unwrap(), want, "{rel}");
        }
        for rel in [
            "../x",
            "/etc/x",
            "",
            ".",
            "p/../../x",
            "%2e%2e/x",   // OLD: accepted (the parser reads it as `..`)
            "%2E./x",     // OLD: accepted
            "..\\x",      // OLD: accepted (`\` is `/` to the parser)
            "\\\\evil/x", // OLD: accepted
            "//evil.example/x",
            "http:evil.example/x", // another scheme: absolute to the parser
            "..%2F..%2Fetc%2Fmachine-id", // a file:// path decodes `%2F` to `/`
            "a%5c..%5c..%5cx",
        ] {
            let e = resolve(base, rel).unwrap_err();
            assert_eq!((e.exit(), e.kind()), (Exit::Usage, "index.url"), "{rel}");
        }
    }

    #[test]
    fn a_refused_url_is_repeated_without_its_credentials() {
        for (url, shown) in [
            (
                "https://alice:hunter2@example.com/i.json",
                "https://***@example.com/i.json",
            ),
            (
                "https://alice@example.com/i.json",
                "https://***@example.com/i.json",
            ),
            // The parser ends the authority at the `/`: unparsable, still hidden.
            (
                "https://alice:hun/ter2@example.com/i.json",
                "https://***@example.com/i.json",
            ),
            ("https://a:b@c@exa mple.com/", "https://***@exa mple.com/"),
            ("alice:hunter2@example.com", "***@example.com"),
            ("https://example.com/i.json", "https://example.com/i.json"),
        ] {
            assert_eq!(without_userinfo(url), shown, "{url}");
            if let Err(e) = check_url(url) {
                let text = format!("{e} {:?}", std::error::Error::source(&e));
                assert!(
                    !text.contains("hunter2") && !text.contains("ter2"),
                    "{text}"
                );
            }
        }
        let e = check_url("http://alice:hunter2@10.0.0.1/i.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing URL http://***@10.0.0.1/i.json: credentials in URLs are not accepted"
        );
    }

    #[test]
    fn entry_urls_are_not_more_local_than_their_index() {
        let remote = "https://plugins.example.org/index.json";
        let lo = "http://127.0.0.1:8080/index.json";
        let file = "file:///srv/repo/index.json";
        // From a file index: anything (local mirrors and tests).
        for u in [
            "file:///srv/repo/x",
            "http://127.0.0.1/x",
            "https://o.example/x",
        ] {
            check_entry_url(file, u).unwrap();
        }
        // From loopback: loopback and remote, no files.
        check_entry_url(lo, "http://localhost:9/x").unwrap();
        check_entry_url(lo, "https://o.example/x").unwrap();
        assert!(matches!(
            check_entry_url(lo, "file:///etc/machine-id"),
            Err(SourceError::Url { .. })
        ));
        // From another host: neither files nor this host's services.
        check_entry_url(remote, "https://cdn.example.net/x.stockade").unwrap();
        for u in [
            "file:///etc/machine-id",
            "http://127.0.0.1:631/x",
            "https://localhost/x",
            "https://[::1]/x",
            "https://2130706433/x",
        ] {
            let e = check_entry_url(remote, u).unwrap_err();
            assert_eq!((e.exit(), e.kind()), (Exit::Usage, "index.url"), "{u}");
        }
        // A relative URL resolves under the index, so it is as local as the index.
        let r = resolve(remote, "p/x.stockade").unwrap();
        check_entry_url(remote, &r).unwrap();
    }
}
