//! The trust directory (`--trust DIR`, default `/etc/stockade/trust`) and the trust mode.
//!
//! Layout:
//! - `*.pub`: pinned root public keys (minisign format). Several are allowed; a certificate chain
//!   is trusted if any of them signed its intermediate. A `.pub` file that does not parse is an
//!   error, not skipped: a typo in the trust store must not silently change what is trusted.
//! - `revocations.json` (optional): the signed revocation list from `stockade ca revoke`.
//!
//! Trust modes (seed 002): `strict` refuses on any trust failure; `warn` loads anyway but reports
//! a non-`verified` `signature_status` and a warning; `disabled` skips the trust steps
//! (`signature_status: skipped`). Steps that protect the host (size caps and container syntax,
//! file map, safe extraction) run in every mode.

use crate::fileio::{read_capped, FileError};
use crate::keyfile::{load_public, KeyFileError};
use std::path::{Path, PathBuf};
use stockade_trust::minisign::PublicKey;
use stockade_trust::signed::MAX_DOC_BYTES;

/// File name of the revocation list inside the trust directory.
pub const REVOCATIONS_FILE: &str = "revocations.json";

/// How trust failures are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Refuse (default).
    Strict,
    /// Load, but report and warn.
    Warn,
    /// Skip trust checks.
    Disabled,
}

impl std::str::FromStr for TrustMode {
    type Err = TrustDirError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(TrustMode::Strict),
            "warn" => Ok(TrustMode::Warn),
            "disabled" => Ok(TrustMode::Disabled),
            _ => Err(TrustDirError::Mode(s.to_string())),
        }
    }
}

/// Why the trust configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustDirError {
    /// Unknown mode.
    #[error("trust mode `{0}` is not one of strict, warn, disabled")]
    Mode(String),
    /// The directory cannot be listed.
    #[error("cannot read trust directory {}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No root keys in it.
    #[error("trust directory {} holds no root keys (*.pub)", .0.display())]
    NoRoots(PathBuf),
    /// A root key file is unusable.
    #[error("a root key in the trust directory is unusable")]
    Root(#[source] KeyFileError),
    /// The revocation list cannot be read.
    #[error("cannot read the revocation list")]
    Revocations(#[source] FileError),
}

impl TrustDirError {
    /// What to do about it, for the `trust_dir` error (78) of the commands that load the trust
    /// directory: the advice for a missing directory ("create it"), said of a revocation list
    /// too large or unreadable, sent an operator to recreate what was there.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Revocations(FileError::TooLarge { .. }) => {
                "the revocation list is larger than nodes read (1 MiB, about 25,000 serials): have \
                 its root issue a smaller one — revoking a signing intermediate or key (`ca revoke \
                 --key`) instead of each serial; `ca revoke` refuses to write a larger one"
            }
            Self::Revocations(_) => {
                "make <trust dir>/revocations.json a readable regular file: put back the list its \
                 root issued (`stockade ca revoke -o`)"
            }
            // Readable to its owner only: "replace" sent a user that is not root to swap out
            // a good key (review-148; audit-144 fixed the same for the directory below).
            Self::Root(KeyFileError::File(f)) if f.is_denied() => {
                "this user may not read a root key in the trust directory (another user's, closed \
                 to this one): make it readable to this user (the pinned keys are public: 0644), \
                 or pass --trust DIR (or set STOCKADE_TRUST_DIR) naming a trust directory of this \
                 user's"
            }
            Self::Root(_) => {
                "replace the unusable *.pub in the trust directory with your root CA's ca.pub"
            }
            // It exists: "create it" sent a user that is not root, reading root's 0700
            // directory, to make one that is there.
            Self::Dir { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "this user may not read the trust directory (it, or a directory above it, is \
                 another user's and closed to this one): make it readable to this user (the \
                 pinned keys are public: 0755, its files 0644), or pass --trust DIR (or set \
                 STOCKADE_TRUST_DIR) naming a trust directory of this user's"
            }
            _ => {
                "create the trust directory and copy your root CA's ca.pub into it (or pass --trust \
                 DIR)"
            }
        }
    }
}

/// The bytes of the revocation list at `path`, `None` when there is none: read by
/// [`TrustConfig::load`] (`<dir>/revocations.json`), and again by step 5 from
/// [`TrustConfig::revocations_path`] when the list read then turns out older than one a
/// concurrent verification has recorded since (`package/verify.rs`, `check_revocation`).
pub fn read_revocations(path: &Path) -> Result<Option<Vec<u8>>, TrustDirError> {
    match read_capped(path, MAX_DOC_BYTES as u64) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(TrustDirError::Revocations(e)),
    }
}

/// Everything verification needs to know about whom to trust.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// Mode.
    pub mode: TrustMode,
    /// The trust directory.
    pub dir: PathBuf,
    /// Pinned roots with the files they came from.
    pub roots: Vec<(PathBuf, PublicKey)>,
    /// Raw bytes of `revocations.json`, if present.
    pub revocations: Option<Vec<u8>>,
    /// The file `revocations` was read from: `<dir>/revocations.json`, or the policy's
    /// `trust.revocation` (`cmd::run::trust_config_with_policy`). Step 5 reads this one again
    /// — never another — when the list turns out older than the one recorded.
    pub revocations_path: PathBuf,
    /// The policy's `trust.require_revocation`: no list fails the revocation step.
    pub require_revocations: bool,
    /// With `--pub`: the developer key the package must be signed by.
    pub pinned_developer: Option<PublicKey>,
    /// State directory (revocation versions, license).
    pub state_dir: PathBuf,
    /// How long step 5 waits for the state directory's revocation lock to record a newer list
    /// ([`crate::state::RevocationState::lock_within`]): `None` (what [`Self::load`] gives: a
    /// CLI command) for as long as its holder holds it; `serve` sets a bounded wait, after which
    /// the verification fails (`revocation.state_busy`) rather than stall its event loop — and
    /// which, once it ran out, only tries the lock until a verification takes it or a while passed
    /// ([`crate::state::BoundedWait`]).
    pub revocation_lock_wait: Option<crate::state::BoundedWait>,
}

impl TrustConfig {
    /// Load the trust directory. Only `strict` requires it to exist and hold a root: in `warn`
    /// mode a missing or empty directory makes the chain step fail as a warning (useful for a
    /// developer's `verify --pub KEY --trust-mode warn` sanity check before shipping), and in
    /// `disabled` mode nothing from it is used.
    pub fn load(dir: &Path, mode: TrustMode, state_dir: &Path) -> Result<Self, TrustDirError> {
        let mut cfg = TrustConfig {
            mode,
            dir: dir.to_path_buf(),
            roots: Vec::new(),
            revocations: None,
            revocations_path: dir.join(REVOCATIONS_FILE),
            require_revocations: false,
            pinned_developer: None,
            state_dir: state_dir.to_path_buf(),
            revocation_lock_wait: None,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if mode != TrustMode::Strict && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(cfg)
            }
            Err(source) => {
                return Err(TrustDirError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|source| TrustDirError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        {
            let key = load_public(&p).map_err(TrustDirError::Root)?;
            cfg.roots.push((p, key));
        }
        if cfg.roots.is_empty() && mode == TrustMode::Strict {
            return Err(TrustDirError::NoRoots(dir.to_path_buf()));
        }
        cfg.revocations = read_revocations(&cfg.revocations_path)?;
        Ok(cfg)
    }

    /// The root keys alone.
    pub fn root_keys(&self) -> Vec<PublicKey> {
        self.roots.iter().map(|(_, k)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_trust::minisign::SecretKey;

    #[test]
    fn load_rules() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("trust");
        let s = d.path().join("state");
        // Missing directory: only strict refuses.
        assert!(matches!(
            TrustConfig::load(&t, TrustMode::Strict, &s),
            Err(TrustDirError::Dir { .. })
        ));
        assert!(TrustConfig::load(&t, TrustMode::Warn, &s)
            .unwrap()
            .roots
            .is_empty());
        assert!(TrustConfig::load(&t, TrustMode::Disabled, &s).is_ok());
        std::fs::create_dir(&t).unwrap();
        assert!(matches!(
            TrustConfig::load(&t, TrustMode::Strict, &s),
            Err(TrustDirError::NoRoots(_))
        ));
        let k = SecretKey::from_seed(&[3; 32], [3; 8]).public_key();
        std::fs::write(t.join("a.pub"), k.to_text()).unwrap();
        std::fs::write(t.join("notes.txt"), "ignored").unwrap();
        let cfg = TrustConfig::load(&t, TrustMode::Strict, &s).unwrap();
        assert_eq!(cfg.root_keys(), vec![k]);
        assert!(cfg.revocations.is_none());
        std::fs::write(t.join(REVOCATIONS_FILE), b"{}").unwrap();
        assert!(TrustConfig::load(&t, TrustMode::Strict, &s)
            .unwrap()
            .revocations
            .is_some());
        // A broken .pub is an error, never silently skipped.
        std::fs::write(t.join("b.pub"), "garbage").unwrap();
        assert!(matches!(
            TrustConfig::load(&t, TrustMode::Strict, &s),
            Err(TrustDirError::Root(_))
        ));
        assert!("lenient".parse::<TrustMode>().is_err());
    }
}
