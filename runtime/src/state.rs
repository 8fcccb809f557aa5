//! The state directory (`--state-dir`, default `/var/lib/stockade`, env `STOCKADE_STATE_DIR`).
//!
//! - `revocation-state.json`: `{"<issuer key id>": {"version": N, "body_sha256": "<hex>"}}`, the
//!   highest revocation list version seen and the SHA-256 of that list's canonical signed body.
//!   It is what makes rollback detectable: a list older than one seen before is refused, a list
//!   that was seen before but is now missing is refused too (rollback by deletion), and so is a
//!   list of the same version with another body (equivocation: a second list signed under one
//!   version could leave out a serial the first revoked). State written by earlier builds holds
//!   the version alone (`{"<issuer key id>": N}`); it is still read, and the digest is recorded
//!   the next time a list of that version is accepted (until then only versions are compared:
//!   the first list of that version seen after the upgrade is the one remembered). The list is
//!   read when a command starts and this file at step 5, so a verification running beside it
//!   may have recorded a newer list in between: step 5 reads the list again before it calls
//!   the one it holds a rollback (`package/verify.rs`, `check_revocation`). Recording a list is
//!   a read-modify-write, and is done under `revocation-state.lock` ([`RevocationState::lock`]):
//!   the file read again, the list judged again against it, saved only if still newer, so that
//!   the floor never goes down — without the lock, two verifications that both read version N,
//!   holding lists N+1 and N+2, could save N+2 then N+1, and a later rollback to N+1 passed. A
//!   verification that records nothing (the list it holds is the one recorded) takes no lock
//!   and writes nothing, as on a read-only state directory. The lock is 0600 and the state
//!   directory's owner's, as the file is once root has written it (root's `run` and `install`
//!   write it beside the daemon's user): only those two can open it, so no other user can hold
//!   it and stall verifications; the owner can, as it can rewrite the file itself.
//! - `license.json`: this node's license (see `node.rs`).
//! - `license-state.json`: `{"<license serial>": <highest issued_at installed>, ...,
//!   "#installed-last:<serial>:<license sha256>:<entries sha256>": <its issued_at>}`, written by
//!   `stockade node license install` before the license itself. The same memory for licenses:
//!   a license older than the newest installed of its serial, or not newer than the license
//!   installed last (the `#installed-last` entry, the floor) without being that file, is
//!   refused, and so is a missing `license.json` once one was installed (else deleting a frozen
//!   license, or installing an older active one, would lift the freeze). The floor is written as
//!   one more entry of the map, not as a field of its own, because earlier builds read the file
//!   as a map of serial to integer and refuse anything else (exit 78 everywhere): to them it is
//!   a serial no license has, issued when a serial of the map was, so they read the file and
//!   apply their rule as before, and keep the entry when they save it. `<entries sha256>` is the
//!   SHA-256 of the serial entries (compact JSON) as they were when the floor was written: if an
//!   earlier build installed a license since, they changed, and the floor (which that license
//!   may be older than) is not applied — as with no floor at all (state of earlier builds):
//!   the per-serial rule alone, until the next install records one.
//!
//! Across versions: these files (and `quarantine.json`) have no format marker — format 1, which
//! every build so far writes and earlier builds refuse to read with one. A newer format marks
//! itself with a top-level `"format": N` (N from 2 to below 10⁹, below any `issued_at` a license
//! memory keeps under a serial `format`), which [`load_json`] looks at before it parses the file
//! and refuses as [`StateError::NewerFormat`] (78 `state.newer_format`; `"format": 1`, never
//! written, is read as no marker, as every other reader of a `format` reads it), nothing changed: not
//! "corrupt", whose remedy (remove it) would forget the lists and licenses seen or lift the
//! quarantines.
//!
//! Written atomically (temp file + fsync + rename), created 0700/0600: only root needs it. Read
//! only from a file of root's, this user's or the directory owner's that no one else may write,
//! and not through a symlink ([`load_json`]): anyone else who could write one could empty it.
//! The revocation memory's keys must be issuer key ids: a file of another build (a `"format"`
//! field) is corrupt, not a list of another root seen before. The license memory's must be
//! license serials, or its floor entry; one of the words a format is marked with (`format`,
//! `schema`, `version`) only with an `issued_at` as its value, not a small number
//! ([`is_memory_entry`]): `{"format": 2}` is corrupt there too, not a license `format` issued at
//! 2, while an earlier build's entry of a license of serial `format` still reads.

use crate::fileio::{read_owned_in, write_state_file, FileError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use stockade_trust::crl::Seen;
use stockade_trust::license::{is_valid_serial, Floor};

/// File recording the highest revocation list version seen per issuer, with its body's digest.
pub const REVOCATION_STATE_FILE: &str = "revocation-state.json";

/// The lock under which [`REVOCATION_STATE_FILE`] is read again and written
/// ([`RevocationState::lock`]); never removed.
pub const REVOCATION_LOCK_FILE: &str = "revocation-state.lock";

/// File recording the highest license `issued_at` installed per serial and the license installed
/// last (`stockade_trust::license::License::check_not_rolled_back`).
pub const LICENSE_STATE_FILE: &str = "license-state.json";

/// What to do about a state file a newer Stockade wrote ([`StateError::NewerFormat`]).
pub const NEWER_FORMAT_HINT: &str = "a newer Stockade wrote this state file (the one named): use \
    that version, which reads it; nothing was changed. Do not remove it: it holds what this node \
    must not forget (the revocation lists and licenses seen, the quarantined plugins)";

/// What to do about a state directory this user cannot make ([`StateError::Create`]): every
/// command's hint for it, whichever kind it reports it under (`store.io`, `revocation.state`,
/// `source.state_dir`, `state_dir`). The default, `/var/lib/stockade`, is root's installation's:
/// a user that is not root cannot make it, and before audit-144 it was told nothing (`install`,
/// `source add`) or to restore `revocation-state.json` (`verify`, `run`), which was never there.
pub const CREATE_HINT: &str = "the state directory cannot be made (the cause says why; the \
    default, /var/lib/stockade, is root's installation's, which no other user can make): pass \
    --state-dir DIR (or set STOCKADE_STATE_DIR) naming a directory of this user's, e.g. \
    ~/.local/state/stockade, or run the command as root";

/// What to do about a state directory this user may not make or write (`Permission denied`
/// below it: `run`'s key/value store, 78 `kv_store`): as [`CREATE_HINT`], for a directory that
/// may exist.
pub const DENIED_HINT: &str = "this user may not make or write the state directory (the \
    default, /var/lib/stockade, is root's installation's, closed to other users): pass \
    --state-dir DIR (or set STOCKADE_STATE_DIR) naming a directory of this user's, e.g. \
    ~/.local/state/stockade, or run the command as root";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The directory cannot be created.
    #[error("cannot create state directory {}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock of a state file cannot be taken: made, opened (another user's file, not a
    /// regular file of one link, this user neither root nor the directory's owner) or locked.
    #[error("cannot take the state lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock of a state file stayed held by another process for as long as the caller
    /// would wait ([`RevocationState::lock_within`]: `serve`): nothing was recorded.
    #[error(
        "the state lock {} stayed held by another process for {} ms",
        path.display(),
        waited.as_millis()
    )]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited for it.
        waited: std::time::Duration,
    },
    /// The file says it is of a format above 1 (a top-level `"format": N`): a newer Stockade
    /// wrote it ([`load_json`]).
    #[error(
        "state file {} is of format {format}, written by a newer Stockade (this one reads format 1)",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: u64,
    },
    /// Content is corrupt.
    #[error("state file {} is corrupt", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The last revocation list accepted, per issuer key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationState {
    /// Issuer key id → its version and body digest.
    pub seen: BTreeMap<String, Seen>,
}

/// One issuer's entry as written: a bare version (earlier builds) or the version with the body
/// digest.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SeenWire {
    Record(SeenRecord),
    Version(u64),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeenRecord {
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_sha256: Option<String>,
}

impl RevocationState {
    /// Load (an absent file is an empty state).
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        let wire: BTreeMap<String, SeenWire> =
            load_json(state_dir, REVOCATION_STATE_FILE, 1024 * 1024)?;
        let mut seen = BTreeMap::new();
        for (issuer, w) in wire {
            // Every key this runtime writes is an issuer key id as `KeyId` displays it. Anything
            // else is not this build's file (a later one's `"format"` field, say): read as an
            // issuer, it was "a list from another root seen before" (84 `other_issuer`), which
            // sends the operator after the trust roots instead of this file.
            if issuer.len() != 16
                || !issuer
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
            {
                return Err(StateError::Corrupt {
                    path: state_dir.join(REVOCATION_STATE_FILE),
                    source: serde::de::Error::custom(format_args!(
                        "`{issuer}` is not an issuer key id (16 uppercase hex digits): not a \
                         file of this build's"
                    )),
                });
            }
            let s = match w {
                SeenWire::Version(version) => Seen {
                    version,
                    body_sha256: None,
                },
                SeenWire::Record(r) => Seen {
                    version: r.version,
                    body_sha256: r
                        .body_sha256
                        .map(|h| {
                            let mut d = [0u8; 32];
                            hex::decode_to_slice(&h, &mut d).map(|()| d).map_err(|e| {
                                StateError::Corrupt {
                                    path: state_dir.join(REVOCATION_STATE_FILE),
                                    source: serde::de::Error::custom(format_args!(
                                        "`{issuer}`: body_sha256 is not 64 hex digits: {e}"
                                    )),
                                }
                            })
                        })
                        .transpose()?,
                },
            };
            seen.insert(issuer, s);
        }
        Ok(Self { seen })
    }

    /// Save atomically (0600), creating the directory (0700) if needed.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let wire: BTreeMap<&String, SeenWire> = self
            .seen
            .iter()
            .map(|(issuer, s)| {
                let record = SeenRecord {
                    version: s.version,
                    body_sha256: s.body_sha256.map(hex::encode),
                };
                (issuer, SeenWire::Record(record))
            })
            .collect();
        save_json(state_dir, REVOCATION_STATE_FILE, &wire)
    }

    /// Take the lock under which a list is recorded — [`RevocationState::load`] again, judge,
    /// [`RevocationState::save`] — waiting for a verification recording one now (one load and
    /// one save). The state directory is made first if missing (0700, as a save would), the
    /// lock file `revocation-state.lock` in it 0600 and the directory's owner's
    /// ([`crate::fileio::lock_as_dir_owner`]: made for it by root, narrowed back if found wider,
    /// another user's or anything but a regular file of one link refused, never removed).
    /// Fails closed: a state directory whose lock cannot be taken records nothing
    /// ([`StateError::Lock`]).
    ///
    /// Waits for the lock's holder however long it holds it: what the CLI does. A `verify` or
    /// `install` is one command, which waits only behind another verification recording a list
    /// (a load and a save) and which its user sees waiting and can interrupt; a bounded wait
    /// would fail it (and an agent's retry loop) only because another ran slowly. `serve`,
    /// whose one event loop answers every agent and plugin, waits a bounded time instead
    /// ([`Self::lock_within`]).
    pub fn lock(state_dir: &Path) -> Result<RevocationLock, StateError> {
        Self::lock_within(state_dir, None)
    }

    /// [`Self::lock`], waiting for the lock's holder `wait` at most (`None`: however long):
    /// [`StateError::LockBusy`] if another process still holds it then, nothing recorded. The
    /// holder may be a root CLI stopped while it records a list (SIGSTOP, a debugger); `serve`
    /// must not wait for it for ever.
    pub fn lock_within(
        state_dir: &Path,
        wait: Option<std::time::Duration>,
    ) -> Result<RevocationLock, StateError> {
        use crate::fileio::OwnerLockError;
        ensure_dir(state_dir)?;
        let path = state_dir.join(REVOCATION_LOCK_FILE);
        match crate::fileio::lock_as_dir_owner(&path, "record revocation lists", wait) {
            Ok(file) => Ok(RevocationLock { _file: file }),
            Err(OwnerLockError::Busy { waited }) => Err(StateError::LockBusy { path, waited }),
            Err(OwnerLockError::Dir(source))
            | Err(OwnerLockError::Refused(source))
            | Err(OwnerLockError::Io(source)) => Err(StateError::Lock { path, source }),
        }
    }

    /// [`Self::lock_within`] with `wait` (`None`: however long), which, once a wait of it ran
    /// out ([`StateError::LockBusy`]), only tries the lock until a take gets it or a while passed
    /// ([`BoundedWait`]).
    pub fn lock_bounded(
        state_dir: &Path,
        wait: Option<&BoundedWait>,
    ) -> Result<RevocationLock, StateError> {
        let Some(bounded) = wait else {
            return Self::lock_within(state_dir, None);
        };
        let taken = Self::lock_within(state_dir, Some(bounded.this_time()));
        match &taken {
            Ok(_) => bounded.took(),
            Err(StateError::LockBusy { .. }) => bounded.ran_out(),
            Err(_) => {}
        }
        taken
    }
}

/// `serve`'s bounded wait for the revocation lock ([`RevocationState::lock_bounded`]), shared
/// with the audit log's.
pub use crate::fileio::BoundedWait;

/// [`RevocationState::lock`] held: recording a list is serialized until it is dropped.
#[derive(Debug)]
pub struct RevocationLock {
    _file: std::fs::File,
}

/// Highest license `issued_at` installed, per license serial, and the license installed last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseMemory {
    /// Serial → `issued_at`.
    pub seen: BTreeMap<String, u64>,
    /// The license installed last; `None` before the first install of this build, or when an
    /// earlier build installed one after it (then it no longer applies).
    pub floor: Option<Floor>,
}

/// Prefix of the floor's entry: `#` is no serial character and sorts before all of them, so an
/// earlier build never names it (of entries with the same `issued_at`, it names the last).
const FLOOR_PREFIX: &str = "#installed-last:";

/// Keys a file of another build may mark its format with (`license.json` has a `format`, the
/// store registry a `schema`, a revocation record a `version`), which are also valid serials.
/// In the license memory such a key is a serial entry only when its value is an `issued_at` a
/// license can have, at or after [`MIN_RESERVED_SERIAL_ISSUED_AT`] ([`is_memory_entry`]): a
/// later build's `{"format": 2, …}` is a file this build cannot read (78), not a license
/// `format` issued at 2, while an earlier build's `{"format": 1765000000}` — it accepted a
/// license of serial `format` and remembered it so — still reads as that license.
pub const RESERVED_MEMORY_KEYS: [&str; 3] = ["format", "schema", "version"];

/// The lowest value a [`RESERVED_MEMORY_KEYS`] key of the license memory may hold to be a
/// serial entry: 2001-09-09 (Unix time 10⁹). A format marker is a small count (1, 2, …); an
/// `issued_at` is a time `ca license` took from a clock, so every license issued by a CA whose
/// clock was set is well above it. A license of such a serial issued before it (`ca license
/// --now` with a made-up time) is refused at install (65, `license`): remembered, its entry
/// would read as a marker.
pub const MIN_RESERVED_SERIAL_ISSUED_AT: u64 = 1_000_000_000;

/// Whether `key` holding `value` is a serial entry of the license memory: a license serial
/// ([`is_valid_serial`]), and if it is one of [`RESERVED_MEMORY_KEYS`], a value of at least
/// [`MIN_RESERVED_SERIAL_ISSUED_AT`] (an `issued_at`, not a format number).
pub fn is_memory_entry(key: &str, value: u64) -> bool {
    is_valid_serial(key)
        && (!RESERVED_MEMORY_KEYS.contains(&key) || value >= MIN_RESERVED_SERIAL_ISSUED_AT)
}

/// SHA-256 of the serial entries, compact JSON in key order (a map of strings to integers always
/// serializes).
fn entries_sha256(seen: &BTreeMap<String, u64>) -> [u8; 32] {
    Sha256::digest(serde_json::to_vec(seen).unwrap_or_default()).into()
}

/// `<serial>:<license sha256>:<entries sha256>` of a floor entry of value `issued_at` (its serial
/// one [`is_memory_entry`] accepts with that value, as the serial's own entry).
fn parse_floor_key(rest: &str, issued_at: u64) -> Option<(String, [u8; 32], [u8; 32])> {
    let mut parts = rest.split(':');
    let (serial, file, entries) = (parts.next()?, parts.next()?, parts.next()?);
    let digest = |h: &str| {
        let mut d = [0u8; 32];
        hex::decode_to_slice(h, &mut d).ok().map(|()| d)
    };
    match (parts.next(), is_memory_entry(serial, issued_at)) {
        (None, true) => Some((serial.to_string(), digest(file)?, digest(entries)?)),
        _ => None,
    }
}

impl LicenseMemory {
    /// Load (an absent file: nothing installed yet). A floor entry that does not parse, or more
    /// than one, makes the file corrupt; one written with other serial entries than the file
    /// holds now is dropped (an earlier build installed a license since). So does any other key
    /// that is not a license serial, or is a serial a format marker is spelled with holding no
    /// `issued_at` ([`is_memory_entry`]): not a file of this build's. It used to be read as a
    /// serial, so a later build's `{"format": 2}` was "license `format` issued at 2", and its
    /// real entries (under keys this build does not know) were lost at the next install. An
    /// earlier build's entry of a license of serial `format` (a time) still reads: refusing it
    /// made every command of an upgraded node 78, and a reinstall too (it reads this first).
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        let mut seen: BTreeMap<String, u64> =
            load_json(state_dir, LICENSE_STATE_FILE, 1024 * 1024)?;
        let corrupt = |msg: String| StateError::Corrupt {
            path: state_dir.join(LICENSE_STATE_FILE),
            source: serde::de::Error::custom(msg),
        };
        if let Some((key, value)) = seen
            .iter()
            .find(|(k, v)| !k.starts_with('#') && !is_memory_entry(k, **v))
        {
            return Err(corrupt(format!(
                "`{key}` = {value} is not a license serial entry ([A-Za-z0-9._-], at most 64; \
                 one of {RESERVED_MEMORY_KEYS:?} only with an issued_at of at least \
                 {MIN_RESERVED_SERIAL_ISSUED_AT}, else a format marker): not a file of this \
                 build's"
            )));
        }
        let keys: Vec<String> = seen
            .keys()
            .filter(|k| k.starts_with('#'))
            .cloned()
            .collect();
        let floor = match keys.as_slice() {
            [] => None,
            [key] => {
                let issued_at = seen.remove(key).unwrap_or_default();
                let (serial, sha256, entries) = key
                    .strip_prefix(FLOOR_PREFIX)
                    .and_then(|rest| parse_floor_key(rest, issued_at))
                    .ok_or_else(|| corrupt(format!("`{key}` is not a floor entry")))?;
                (entries == entries_sha256(&seen)).then_some(Floor {
                    serial,
                    issued_at,
                    sha256,
                })
            }
            _ => return Err(corrupt(format!("more than one floor entry: {keys:?}"))),
        };
        Ok(Self { seen, floor })
    }

    /// Save atomically (0600), creating the directory (0700) if needed: the serial entries and,
    /// if there is a floor, its entry.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let mut wire = self.seen.clone();
        if let Some(f) = &self.floor {
            let key = format!(
                "{FLOOR_PREFIX}{}:{}:{}",
                f.serial,
                hex::encode(f.sha256),
                hex::encode(entries_sha256(&self.seen))
            );
            wire.insert(key, f.issued_at);
        }
        save_json(state_dir, LICENSE_STATE_FILE, &wire)
    }
}

/// The JSON state file `name` under `state_dir`, at most `cap` bytes; an absent file is
/// `T::default()`, one that does not parse an error.
///
/// Read only from a regular file of one link, not a symlink, belonging to this user, root or
/// the state directory's owner and writable by no one else ([`read_owned_in`]; 78 with the file
/// named, [`FileError::Unsafe`]). These files are rollback memory and quarantines: whoever can
/// write one can empty it (`{}`, "nothing recorded"), after which an older revocation list or
/// license passes, or a crash-looping plugin runs again. They used to be read whoever's they
/// were and whatever their mode (or wherever a symlink pointed), so a file of a third user, or
/// one left group- or world-writable, was a floor anyone with that access could lower. What
/// the runtime writes (`write_state_file`: 0600, the directory owner's) always passes.
pub fn load_json<T: Default + serde::de::DeserializeOwned>(
    state_dir: &Path,
    name: &str,
    cap: u64,
) -> Result<T, StateError> {
    let path = state_dir.join(name);
    match read_owned_in(state_dir, name, cap) {
        Ok(b) => {
            if let Some(format) = newer_format(&b) {
                return Err(StateError::NewerFormat { path, format });
            }
            let corrupt = |source| StateError::Corrupt {
                path: path.clone(),
                source,
            };
            // `"format": 1` marks this build's format, which no build writes: read as absent,
            // as the sources' and the CA's files read it, not as an entry (a license `format`
            // issued at 1, an issuer `format`, a quarantine that is no object: corrupt).
            if stockade_trust::json_format(&b) == Some(1) {
                let mut fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&b).map_err(corrupt)?;
                fields.remove("format");
                return serde_json::from_value(serde_json::Value::Object(fields)).map_err(corrupt);
            }
            serde_json::from_slice(&b).map_err(corrupt)
        }
        Err(e) if e.is_not_found() => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// The format a newer Stockade marks one of these files with: a top-level `"format": N`, N from
/// 2 to below 10⁹ (`"format": 1`, this build's, is read as absent: [`load_json`]) (a license memory's `format` entry at or above it is the `issued_at` of a
/// license of serial `format`, [`is_memory_entry`]; a quarantined plugin named `format` has an
/// object). Files of format 1 have none — every build so far writes them so, and earlier builds
/// refuse one. Looked at before the file is parsed: such a file is the newer build's to read,
/// not damage to fix or remove (removing the quarantines would run what they hold back,
/// removing a memory would let an older list or license pass again).
fn newer_format(bytes: &[u8]) -> Option<u64> {
    stockade_trust::json_format(bytes).filter(|f| (2..1_000_000_000).contains(f))
}

/// Write the JSON state file `name` under `state_dir` atomically (0600), creating the directory
/// (0700) if needed.
pub fn save_json<T: serde::Serialize>(
    state_dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), StateError> {
    save_json_mode(state_dir, name, value, 0o600)
}

/// [`save_json`] with the file's `mode`.
fn save_json_mode<T: serde::Serialize>(
    state_dir: &Path,
    name: &str,
    value: &T,
    mode: u32,
) -> Result<(), StateError> {
    let path = state_dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    ensure_dir(state_dir)?;
    write_state_file(&path, &bytes, mode)?;
    Ok(())
}

/// Create the state directory with mode 0700 if it does not exist.
pub fn ensure_dir(state_dir: &Path) -> Result<(), StateError> {
    make_dir(state_dir).map_err(|source| StateError::Create {
        path: state_dir.to_path_buf(),
        source,
    })
}

/// [`ensure_dir`] for callers with an I/O error of their own (`serve`, the key/value store):
/// made 0700 (and its missing parents), never with the umask's mode — it holds keys, rollback
/// memory and the trees sandboxes bind from.
pub fn make_dir(state_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        assert_eq!(
            RevocationState::load(&sd).unwrap(),
            RevocationState::default()
        );
        let mut s = RevocationState::default();
        s.seen.insert(
            "00000000000000AB".into(),
            Seen {
                version: 3,
                body_sha256: Some([0xab; 32]),
            },
        );
        s.seen.insert(
            "00000000000000CD".into(),
            Seen {
                version: 1,
                body_sha256: None,
            },
        );
        s.save(&sd).unwrap();
        assert_eq!(RevocationState::load(&sd).unwrap(), s);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sd.join(REVOCATION_STATE_FILE)).unwrap())
                .unwrap();
        assert_eq!(
            written,
            serde_json::json!({
                "00000000000000AB": {"version": 3, "body_sha256": "ab".repeat(32)},
                "00000000000000CD": {"version": 1},
            })
        );
        std::fs::write(sd.join(REVOCATION_STATE_FILE), b"{").unwrap();
        assert!(matches!(
            RevocationState::load(&sd),
            Err(StateError::Corrupt { .. })
        ));
        for bad in [
            r#"{"00000000000000AB": {"version": 3, "body_sha256": "xyz"}}"#,
            r#"{"00000000000000AB": {"version": 3, "extra": 1}}"#,
            r#"{"00000000000000AB": "3"}"#,
            r#"{"format": 0}"#,
            r#"{"6bec33ba59258d54": 2}"#,
        ] {
            std::fs::write(sd.join(REVOCATION_STATE_FILE), bad).unwrap();
            assert!(
                matches!(RevocationState::load(&sd), Err(StateError::Corrupt { .. })),
                "{bad}"
            );
        }
        // A newer build's file says so: not corrupt, its own refusal.
        std::fs::write(sd.join(REVOCATION_STATE_FILE), r#"{"format": 2}"#).unwrap();
        assert!(matches!(
            RevocationState::load(&sd),
            Err(StateError::NewerFormat { format: 2, .. })
        ));
    }

    /// Every state file read through [`load_json`] (the revocation memory, the license memory,
    /// the quarantines) is refused when another user than root or the directory's owner could
    /// have written it, naming the file, instead of being read: emptied, it said "nothing
    /// recorded". The runtime's own files (0600) pass.
    #[test]
    fn state_files_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for name in [REVOCATION_STATE_FILE, LICENSE_STATE_FILE, "quarantine.json"] {
            let path = d.path().join(name);
            save_json(d.path(), name, &BTreeMap::<String, u64>::new()).unwrap();
            load_json::<BTreeMap<String, u64>>(d.path(), name, 1024).unwrap();
            for mode in [0o620, 0o602] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
                let e = load_json::<BTreeMap<String, u64>>(d.path(), name, 1024).unwrap_err();
                let StateError::File(FileError::Unsafe { path: named, why }) = &e else {
                    panic!("{name} {mode:o}: {e:?}");
                };
                assert_eq!(named, &path);
                assert!(why.contains("writable by group or others"), "{why}");
            }
            std::fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink("/dev/null", &path).unwrap();
            let e = load_json::<BTreeMap<String, u64>>(d.path(), name, 1024).unwrap_err();
            assert!(
                matches!(&e, StateError::File(FileError::Unsafe { why, .. }) if why == "is a symlink"),
                "{name}: {e:?}"
            );
        }
    }

    /// State written by earlier builds (a bare version per issuer) is read as that version with
    /// no digest.
    #[test]
    fn version_only_state_of_earlier_builds_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(REVOCATION_STATE_FILE),
            br#"{"00000000000000AB": 7}"#,
        )
        .unwrap();
        let s = RevocationState::load(d.path()).unwrap();
        assert_eq!(
            s.seen.get("00000000000000AB"),
            Some(&Seen {
                version: 7,
                body_sha256: None
            })
        );
    }

    /// The revocation memory's lock is made in the state directory (made first, 0700), 0600
    /// and the directory's owner's — root's own, or, in another user's state directory (the
    /// daemon's, where root's `run` records lists too), that user's, so the daemon can still
    /// take it — and is left in place when released.
    #[test]
    fn the_revocation_lock_is_the_state_directorys_owners() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        drop(RevocationState::lock(&sd).unwrap());
        let lock = sd.join(REVOCATION_LOCK_FILE);
        let m = std::fs::metadata(&lock).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(std::fs::metadata(&sd).unwrap().mode() & 0o777, 0o700);
        if nix::unistd::geteuid().is_root() {
            let other = d.path().join("daemons");
            std::fs::create_dir(&other).unwrap();
            std::fs::set_permissions(&other, PermissionsExt::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
            drop(RevocationState::lock(&other).unwrap());
            let m = std::fs::metadata(other.join(REVOCATION_LOCK_FILE)).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o600));
        }
    }

    /// The revocation lock excludes: while one is held, no other open description of the
    /// file can take it, and once dropped one can (with the `flock` gone from `lock`, every
    /// revocation test still passed: review-98 M2).
    #[test]
    fn the_revocation_lock_excludes_until_dropped() {
        use std::os::fd::AsFd;
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        let held = RevocationState::lock(&sd).unwrap();
        let other = std::fs::File::open(sd.join(REVOCATION_LOCK_FILE)).unwrap();
        assert!(!crate::sys::try_flock_exclusive(other.as_fd()).unwrap());
        drop(held);
        assert!(crate::sys::try_flock_exclusive(other.as_fd()).unwrap());
    }

    /// Review-103 L5: `serve`'s bounded wait, once it ran out, only tries the lock: a second
    /// take under the same holder fails at once (it waited 1 s again before, per load and per
    /// restart retry), and once a take gets the lock the next one waits again.
    #[test]
    fn a_bounded_wait_that_ran_out_only_tries_until_the_lock_is_taken() {
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        let wait = Duration::from_millis(1000);
        let bounded = BoundedWait::new(wait);
        let busy = |e: StateError| match e {
            StateError::LockBusy { waited, .. } => waited,
            e => panic!("{e:?}"),
        };
        let held = RevocationState::lock(&sd).unwrap();
        let waited = busy(RevocationState::lock_bounded(&sd, Some(&bounded)).unwrap_err());
        assert!(waited >= wait, "{waited:?}");
        assert!(bounded.gave_up() && bounded.this_time() == Duration::ZERO);
        // A clone (the daemon's trust configuration read again) remembers it too.
        let again = bounded.clone();
        for b in [&bounded, &again] {
            let waited = busy(RevocationState::lock_bounded(&sd, Some(b)).unwrap_err());
            assert!(waited < wait / 2, "waited again: {waited:?}");
        }
        drop(held);
        drop(RevocationState::lock_bounded(&sd, Some(&again)).unwrap());
        assert!(!bounded.gave_up() && bounded.this_time() == wait);
        let held = RevocationState::lock(&sd).unwrap();
        let waited = busy(RevocationState::lock_bounded(&sd, Some(&bounded)).unwrap_err());
        assert!(waited >= wait, "{waited:?}");
        drop(held);
    }

    #[test]
    fn license_memory_round_trip_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        assert_eq!(LicenseMemory::load(&sd).unwrap(), LicenseMemory::default());
        let mut m = LicenseMemory::default();
        m.seen.insert("L1".into(), 7);
        m.save(&sd).unwrap();
        assert_eq!(LicenseMemory::load(&sd).unwrap(), m);
        let mode = std::fs::metadata(sd.join(LICENSE_STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn floor(serial: &str, issued_at: u64) -> Floor {
        Floor {
            serial: serial.into(),
            issued_at,
            sha256: [0xab; 32],
        }
    }

    /// The floor is one more integer entry of the map, so that an earlier build, which reads a
    /// map of serial to integer, still reads the file, and takes it for a serial no license has.
    #[test]
    fn license_floor_round_trip_readable_by_earlier_builds() {
        let d = tempfile::tempdir().unwrap();
        let mut m = LicenseMemory::default();
        m.seen.insert("A".into(), 500);
        m.seen.insert("B".into(), 300);
        m.floor = Some(floor("B", 300));
        m.save(d.path()).unwrap();
        assert_eq!(LicenseMemory::load(d.path()).unwrap(), m);
        let bytes = std::fs::read(d.path().join(LICENSE_STATE_FILE)).unwrap();
        let earlier: BTreeMap<String, u64> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(earlier.len(), 3);
        let (key, &at) = earlier.iter().next().unwrap();
        assert!(key.starts_with("#installed-last:B:abab"), "{key}");
        assert_eq!(at, 300);
    }

    /// State of earlier builds (no floor) reads with none; so does a floor written with other
    /// serial entries than the file holds now (an earlier build installed a license after it).
    /// A floor entry that does not parse, or two, make the file corrupt.
    #[test]
    fn license_floor_absent_stale_or_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LICENSE_STATE_FILE);
        std::fs::write(&path, r#"{"A": 500, "B": 300}"#).unwrap();
        let m = LicenseMemory::load(d.path()).unwrap();
        assert_eq!((m.seen.len(), m.floor), (2, None));
        let mut m = LicenseMemory::default();
        m.seen.insert("A".into(), 500);
        m.floor = Some(floor("A", 500));
        m.save(d.path()).unwrap();
        // What an earlier build does when it installs B: add the serial, keep the rest.
        let mut earlier: BTreeMap<String, u64> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        earlier.insert("B".into(), 300);
        std::fs::write(&path, serde_json::to_vec(&earlier).unwrap()).unwrap();
        let m = LicenseMemory::load(d.path()).unwrap();
        assert_eq!(m.floor, None);
        assert_eq!(m.seen, [("A".into(), 500), ("B".into(), 300)].into());
        let hex = "ab".repeat(32);
        for bad in [
            r##"{"#installed-last:A": 5}"##.to_string(),
            format!(r##"{{"#installed-last:A:{hex}:xyz": 5}}"##),
            format!(r##"{{"#installed-last:A/B:{hex}:{hex}": 5}}"##),
            format!(r##"{{"#installed-last:A:{hex}:{hex}:": 5}}"##),
            format!(r##"{{"#other:A:{hex}:{hex}": 5}}"##),
            format!(
                r##"{{"#installed-last:A:{hex}:{hex}": 5, "#installed-last:B:{hex}:{hex}": 5}}"##
            ),
            format!(r##"{{"#installed-last:format:{hex}:{hex}": 5}}"##),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(
                    LicenseMemory::load(d.path()),
                    Err(StateError::Corrupt { .. })
                ),
                "{bad}"
            );
        }
    }

    /// A key a later build marks its file with (`{"format": 2}`), or any other key that is not
    /// a license serial, makes the license memory a file this build cannot read (corrupt: 78,
    /// as a revocation memory's key that is no issuer key id), instead of a license named
    /// `format` issued at 2 — which the next install wrote back, dropping whatever else that
    /// build kept there. Serials next to them (`formats`, `Format`) still read.
    #[test]
    fn a_later_builds_marker_is_no_license_serial() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LICENSE_STATE_FILE);
        for newer in [r#"{"format": 2}"#, r#"{"format": 2, "A": 500}"#] {
            std::fs::write(&path, newer).unwrap();
            let e = LicenseMemory::load(d.path()).unwrap_err();
            assert!(
                matches!(&e, StateError::NewerFormat { path: p, format: 2 } if p == &path),
                "{newer}: {e:?}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), newer, "changed");
        }
        // `"format": 1` is this build's marker, read as absent (`format_1_is_read_as_absent_…`).
        std::fs::write(&path, r#"{"format": 1}"#).unwrap();
        assert!(LicenseMemory::load(d.path()).unwrap().seen.is_empty());
        for bad in [
            r#"{"schema": 1}"#,
            r#"{"version": 3, "A": 500}"#,
            r#"{"": 1}"#,
            r#"{"a b": 1}"#,
            r#"{"format:2": 1}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = LicenseMemory::load(d.path()).unwrap_err();
            let StateError::Corrupt {
                path: named,
                source,
            } = &e
            else {
                panic!("{bad}: {e:?}");
            };
            assert_eq!(named, &path);
            assert!(
                source.to_string().contains("not a file of this build's"),
                "{source}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad, "changed");
        }
        std::fs::write(&path, r#"{"formats": 2, "Format": 3, "S-1.x_y": 4}"#).unwrap();
        assert_eq!(LicenseMemory::load(d.path()).unwrap().seen.len(), 3);
    }

    /// The previous build accepted a license of serial `format`, `schema` or `version` and
    /// remembered it as any other (serial → `issued_at`, and the floor entry naming it): such a
    /// memory still reads after the upgrade, as those licenses — refusing it made every command
    /// 78 with no way back, since a reinstall reads it first (review-103 L1). The markers (small
    /// numbers) next to it stay refused, as does a floor entry of such a serial issued before
    /// [`MIN_RESERVED_SERIAL_ISSUED_AT`].
    #[test]
    fn an_earlier_builds_license_of_a_marker_serial_still_reads() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LICENSE_STATE_FILE);
        let t = 1_765_000_000u64;
        // As 55f1293 wrote it after installing license `format` issued at t, then `schema`.
        let entries: BTreeMap<String, u64> = [("format".into(), t), ("schema".into(), t + 5)]
            .into_iter()
            .collect();
        let earlier = format!(
            r##"{{"format": {t}, "schema": {}, "#installed-last:schema:{}:{}": {}}}"##,
            t + 5,
            "cd".repeat(32),
            hex::encode(entries_sha256(&entries)),
            t + 5
        );
        std::fs::write(&path, &earlier).unwrap();
        let m = LicenseMemory::load(d.path()).unwrap();
        assert_eq!(m.seen, entries);
        assert_eq!(
            m.floor,
            Some(Floor {
                serial: "schema".into(),
                issued_at: t + 5,
                sha256: [0xcd; 32],
            })
        );
        // Saved again (the next install), it reads the same.
        m.save(d.path()).unwrap();
        assert_eq!(LicenseMemory::load(d.path()).unwrap(), m);
        std::fs::write(&path, r#"{"version": 1000000000}"#).unwrap();
        assert_eq!(LicenseMemory::load(d.path()).unwrap().seen.len(), 1);
        let hex = "ab".repeat(32);
        for bad in [
            format!(r#"{{"version": 999999999, "A": {t}}}"#),
            format!(r#"{{"format": {t}, "schema": 1}}"#),
            format!(r##"{{"#installed-last:version:{hex}:{hex}": 999999999}}"##),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(
                    LicenseMemory::load(d.path()),
                    Err(StateError::Corrupt { .. })
                ),
                "{bad}"
            );
        }
    }

    /// `"format": 1` (this build's format, which no build writes) is read as absent in every
    /// state file, as the sources' and the CA's files read it: the revocation memory, the
    /// license memory and the quarantines read their entries (review-130: all three were
    /// corrupt, 78). Other values are as before: 2 and up newer, 0 corrupt.
    #[test]
    fn format_1_is_read_as_absent_in_every_state_file() {
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("state");
        std::fs::create_dir(&sd).unwrap();
        std::fs::write(
            sd.join(REVOCATION_STATE_FILE),
            br#"{"format": 1, "00000000000000AB": 7}"#,
        )
        .unwrap();
        let r = RevocationState::load(&sd).unwrap();
        assert_eq!(r.seen.len(), 1);
        std::fs::write(
            sd.join(LICENSE_STATE_FILE),
            br#"{"format": 1, "ACME-1": 1765000000}"#,
        )
        .unwrap();
        let l = LicenseMemory::load(&sd).unwrap();
        assert_eq!(l.seen, BTreeMap::from([("ACME-1".to_string(), 1765000000)]));
        std::fs::write(sd.join("quarantine.json"), br#"{"format": 1}"#).unwrap();
        let q: BTreeMap<String, serde_json::Value> =
            load_json(&sd, "quarantine.json", 1024).unwrap();
        assert!(q.is_empty(), "{q:?}");
        crate::host::quarantine::Quarantines::load(&sd).unwrap();
    }
}
