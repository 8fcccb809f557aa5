//! Reading minisign key files from disk (parsing lives in `stockade_trust::minisign`).
//!
//! A secret key file must be its owner's alone: one that its group or others may read or write
//! (any of mode `0o077`) is refused before it is parsed, as `ssh` refuses such a private key
//! (`key.exposed`, exit 77). Anyone who could read it may already have copied it and can sign as
//! its owner; anyone who could write it could have put their own key there. `stockade keygen`,
//! `ca init` and `minisign -G` all write 0600, so only a copy, an archive restore or a
//! `chmod -R` makes one wider; the refusal says to narrow it and to consider the key compromised.
//!
//! A process that holds a secret key — read here ([`load_secret`]) or made (`keygen`, `ca init`:
//! [`guard_secrets`]) — first makes itself undumpable: `PR_SET_DUMPABLE` 0 and `RLIMIT_CORE` 0.
//! A release build aborts on a panic (`panic = "abort"`), and a core file, or systemd-coredump's
//! copy kept for weeks, would hold the key in the clear; and while it runs, no other process of
//! its user may `ptrace` it or read its `/proc/<pid>/mem` (only root, as for `ssh-agent`).

use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, read_capped_held, FileError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use stockade_trust::minisign::{MinisignError, PublicKey, SecretKey, MAX_TEXT_BYTES};

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Not UTF-8 text.
    #[error("{} is not a text file", .0.display())]
    NotText(PathBuf),
    /// A secret key file its group or others may read or write.
    #[error(
        "{} is a secret key that others than its owner may read or write (mode {mode:04o})",
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// This process could not be made undumpable before holding a secret key.
    #[error("cannot keep the secret key out of core dumps and other processes' reach")]
    Unguarded(#[source] std::io::Error),
    /// The content does not parse.
    #[error("{} is not a usable minisign key", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: MinisignError,
    },
}

impl KeyFileError {
    /// Whether the key is password-encrypted (deserves its own hint).
    pub fn is_encrypted(&self) -> bool {
        matches!(
            self,
            KeyFileError::Parse {
                source: MinisignError::Encrypted,
                ..
            }
        )
    }
}

fn read_text(path: &Path) -> Result<String, KeyFileError> {
    let bytes = read_capped(path, MAX_TEXT_BYTES as u64)?;
    String::from_utf8(bytes).map_err(|_| KeyFileError::NotText(path.to_path_buf()))
}

/// Load a `.pub` file.
pub fn load_public(path: &Path) -> Result<PublicKey, KeyFileError> {
    PublicKey::parse(&read_text(path)?).map_err(|source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Load an unencrypted secret key file: its owner's alone ([`KeyFileError::Exposed`] otherwise,
/// judged on the descriptor read, before anything is parsed).
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    guard_secrets()?;
    let (file, bytes) = read_capped_held(path, MAX_TEXT_BYTES as u64)?;
    let mode = file
        .metadata()
        .map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| KeyFileError::NotText(path.to_path_buf()))?;
    let key = SecretKey::parse(&text).map_err(|source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    crate::sys::stop_at("secret-key-held");
    Ok(key)
}

/// Make this process undumpable before it holds a secret key (the module doc says why): no core
/// file, no `ptrace` or `/proc/<pid>/mem` by its user's other processes. For the rest of the
/// process's life; only the short signing commands call it, never `run` or `serve`, whose
/// sandboxes' setup reads and writes `/proc/<pid>` files as the runtime's user.
pub fn guard_secrets() -> Result<(), KeyFileError> {
    crate::sys::setrlimit(libc::RLIMIT_CORE, 0).map_err(KeyFileError::Unguarded)?;
    crate::sys::set_dumpable(false).map_err(KeyFileError::Unguarded)
}

/// The command error for a secret key that cannot be used: `key.exposed` (77) for one others
/// may read or write, else `key` (65), each with its hint.
pub fn secret_key_error(e: KeyFileError) -> CmdError {
    if let KeyFileError::Exposed { path, .. } = &e {
        let hint = format!(
            "run `chmod 600 {}`; whoever could read it may have copied it: if so, make a new \
             key (`stockade keygen`) and have the old one's certificate revoked",
            path.display()
        );
        return CmdError::new(Exit::NoPerm, "key.exposed", e).hint(hint);
    }
    if let KeyFileError::Unguarded(_) = &e {
        return CmdError::new(Exit::OsErr, "key.guard", e);
    }
    let hint = secret_key_hint(&e);
    CmdError::new(Exit::DataErr, "key", e).hint(hint)
}

/// The hint for an unusable secret key.
pub fn secret_key_hint(e: &KeyFileError) -> &'static str {
    if e.is_encrypted() {
        "stockade reads only unencrypted keys: create one with `stockade keygen -o NAME` or `minisign -G -W`, or remove the password with `minisign -C -W`"
    } else {
        "pass a secret key written by `stockade keygen` or `minisign -G -W`"
    }
}

/// Current time in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fill `buf` from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], std::io::Error> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf)
}
