//! The state directory (`--state-dir`, default `/var/lib/stockade`, env `STOCKADE_STATE_DIR`).
//!
//! - `revocation-state.json`: `{"<issuer key id>": <highest revocation list version seen>}`. It
//!   is what makes rollback detectable: a list older than one seen before is refused, and a list
//!   that was seen before but is now missing is refused too (rollback by deletion).
//! - `license.json`: this node's license (see `node.rs`).
//! - `license-state.json`: `{"<license serial>": <highest issued_at installed>}`, written by
//!   `stockade node license install` before the license itself. The same memory for licenses: an
//!   older license of a serial is refused, and so is a missing `license.json` once one was
//!   installed (else deleting a frozen license, or installing an older active one, would lift
//!   the freeze).
//!
//! Written atomically (temp file + fsync + rename), created 0700/0600: only root needs it.

use crate::fileio::{read_capped, write_state_file, FileError};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// File recording the highest revocation list version seen per issuer.
pub const REVOCATION_STATE_FILE: &str = "revocation-state.json";

/// File recording the highest license `issued_at` installed per serial.
pub const LICENSE_STATE_FILE: &str = "license-state.json";

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

/// Highest revocation list version seen, per issuer key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationState {
    /// Issuer key id → version.
    pub seen: BTreeMap<String, u64>,
}

impl RevocationState {
    /// Load (an absent file is an empty state).
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        Ok(Self {
            seen: load_json(state_dir, REVOCATION_STATE_FILE, 1024 * 1024)?,
        })
    }

    /// Save atomically, creating the directory (0700) if needed.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        save_json(state_dir, REVOCATION_STATE_FILE, &self.seen)
    }
}

/// Highest license `issued_at` installed, per license serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseMemory {
    /// Serial → `issued_at`.
    pub seen: BTreeMap<String, u64>,
}

impl LicenseMemory {
    /// Load (an absent file: nothing installed yet).
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        Ok(Self {
            seen: load_json(state_dir, LICENSE_STATE_FILE, 1024 * 1024)?,
        })
    }

    /// Save atomically (0600), creating the directory (0700) if needed.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        save_json(state_dir, LICENSE_STATE_FILE, &self.seen)
    }
}

/// The JSON state file `name` under `state_dir`, at most `cap` bytes; an absent file is
/// `T::default()`, one that does not parse an error.
pub fn load_json<T: Default + serde::de::DeserializeOwned>(
    state_dir: &Path,
    name: &str,
    cap: u64,
) -> Result<T, StateError> {
    let path = state_dir.join(name);
    match read_capped(&path, cap) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| StateError::Corrupt { path, source }),
        Err(e) if e.is_not_found() => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
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

/// [`save_json`] with the file's `mode`: for state that is no secret and that the operator's
/// tools read without root (the sources' pins and index versions, 0644).
pub fn save_json_mode<T: serde::Serialize>(
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
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| StateError::Create {
            path: state_dir.to_path_buf(),
            source,
        })
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
        s.seen.insert("AB".into(), 3);
        s.save(&sd).unwrap();
        assert_eq!(RevocationState::load(&sd).unwrap(), s);
        std::fs::write(sd.join(REVOCATION_STATE_FILE), b"{").unwrap();
        assert!(matches!(
            RevocationState::load(&sd),
            Err(StateError::Corrupt { .. })
        ));
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
}
