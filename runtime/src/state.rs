//! The state directory (`--state-dir`, default `/var/lib/stockade`, env `STOCKADE_STATE_DIR`).
//!
//! - `revocation-state.json`: `{"<issuer key id>": <highest revocation list version seen>}`. It
//!   is what makes rollback detectable: a list older than one seen before is refused, and a list
//!   that was seen before but is now missing is refused too (rollback by deletion).
//! - `license.json`: this node's license (see `node.rs`).
//!
//! Written atomically (temp file + fsync + rename), created 0700/0600: only root needs it.

use crate::fileio::{read_capped, write_state_file, FileError};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// File recording the highest revocation list version seen per issuer.
pub const REVOCATION_STATE_FILE: &str = "revocation-state.json";

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
        let path = state_dir.join(REVOCATION_STATE_FILE);
        match read_capped(&path, 1024 * 1024) {
            Ok(b) => Ok(Self {
                seen: serde_json::from_slice(&b)
                    .map_err(|source| StateError::Corrupt { path, source })?,
            }),
            Err(e) if e.is_not_found() => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Save atomically, creating the directory (0700) if needed.
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        ensure_dir(state_dir)?;
        let bytes =
            serde_json::to_vec_pretty(&self.seen).map_err(|source| StateError::Corrupt {
                path: state_dir.join(REVOCATION_STATE_FILE),
                source,
            })?;
        write_state_file(&state_dir.join(REVOCATION_STATE_FILE), &bytes, 0o600)?;
        Ok(())
    }
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
}
