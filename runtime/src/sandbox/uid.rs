//! Per-plugin host uids (root mode): each live sandbox holds an exclusive `flock` on
//! `/run/stockade/uids/<uid>.lock` for its whole life, so no two live plugins share a uid. The
//! kernel drops the lock when the runtime exits, even on a crash, so a uid is never leaked.
//! Lock files are never deleted: unlinking a lock file while another runtime is about to lock it
//! would let two runtimes hold "the same" uid through different inodes.

use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Default lock directory.
pub const LOCK_DIR: &str = "/run/stockade/uids";

/// Why no uid could be allocated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UidError {
    /// The lock directory or a lock file is unusable.
    #[error("cannot use uid lock `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Every uid of the range is in use.
    #[error("all {count} uids from {first} are held by live sandboxes")]
    Exhausted {
        /// Range start.
        first: u32,
        /// Range size.
        count: u32,
    },
}

/// A held uid; dropping it releases the lock.
#[derive(Debug)]
pub struct UidLease {
    /// The host uid (also used as the gid).
    pub uid: u32,
    _lock: OwnedFd,
}

/// Take the first free uid of `[first, first + count)` under `dir`.
pub fn allocate(dir: &Path, first: u32, count: u32) -> Result<UidLease, UidError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UidError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir))?;
    for uid in first..first.saturating_add(count) {
        let path = dir.join(format!("{uid}.lock"));
        let c = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| UidError::Io {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        let fd = sys::open_lock_file(&c).map_err(err(&path))?;
        if sys::try_flock_exclusive(fd.as_fd()).map_err(err(&path))? {
            return Ok(UidLease { uid, _lock: fd });
        }
    }
    Err(UidError::Exhausted { first, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_live_leases_never_share_a_uid_and_release_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let a = allocate(t.path(), 300_000, 2).unwrap();
        let b = allocate(t.path(), 300_000, 2).unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(matches!(
            allocate(t.path(), 300_000, 2),
            Err(UidError::Exhausted { .. })
        ));
        let freed = a.uid;
        drop(a);
        assert_eq!(allocate(t.path(), 300_000, 2).unwrap().uid, freed);
    }
}
