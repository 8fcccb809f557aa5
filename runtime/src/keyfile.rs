//! Reading minisign key files from disk (parsing lives in `stockade_trust::minisign`).

use crate::fileio::{read_capped, FileError};
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

/// Load an unencrypted secret key file.
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    SecretKey::parse(&read_text(path)?).map_err(|source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
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
