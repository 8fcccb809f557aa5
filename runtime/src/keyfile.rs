//! Reading minisign key files from disk (parsing lives in `stockade_trust::minisign`), and
//! the password of an encrypted secret key ([`crate::password`]).

use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, FileError};
use crate::password::{self, PasswordError};
use std::path::{Path, PathBuf};
use stockade_trust::minisign::{
    MinisignError, PublicKey, SecretKey, SecretKeyFile, MAX_TEXT_BYTES,
};

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
    /// The key is encrypted, no `--password-file` was given and there is no terminal to ask on.
    #[error("{} is password-encrypted, and there is no terminal to ask for its password", .0.display())]
    PasswordRequired(PathBuf),
    /// The password could not be had (its file, the terminal).
    #[error("no password for {}", path.display())]
    Password {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PasswordError,
    },
    /// The password does not decrypt the key.
    #[error("{} cannot be decrypted", path.display())]
    WrongPassword {
        /// The key file.
        path: PathBuf,
        /// [`MinisignError::WrongPassword`].
        #[source]
        source: MinisignError,
    },
}

impl KeyFileError {
    /// Whether the key is password-encrypted and was read where no password is taken.
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

/// Load a secret key file; an encrypted one is decrypted with the password read from
/// `password_file` or, without one, asked for on the controlling terminal ([`crate::password`]).
pub fn load_secret(path: &Path, password_file: Option<&Path>) -> Result<SecretKey, KeyFileError> {
    let parse = |source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let encrypted = match SecretKeyFile::parse(&read_text(path)?).map_err(parse)? {
        SecretKeyFile::Plain(k) => return Ok(k),
        SecretKeyFile::Encrypted(e) => e,
    };
    let no_password = |source| KeyFileError::Password {
        path: path.to_path_buf(),
        source,
    };
    let pw = match password_file {
        Some(f) => password::from_file(f).map_err(no_password)?,
        None => password::prompt(&format!(
            "Password for {}: ",
            crate::output::term_path(path)
        ))
        .map_err(no_password)?
        .ok_or_else(|| KeyFileError::PasswordRequired(path.to_path_buf()))?,
    };
    encrypted.decrypt(&pw).map_err(|source| match source {
        MinisignError::WrongPassword => KeyFileError::WrongPassword {
            path: path.to_path_buf(),
            source,
        },
        other => parse(other),
    })
}

/// The hint for an unusable secret key.
pub fn secret_key_hint(e: &KeyFileError) -> &'static str {
    match e {
        _ if e.is_encrypted() => {
            "the key is password-encrypted: pass --password-file FILE (its first line is the password)"
        }
        KeyFileError::PasswordRequired(_) => {
            "pass --password-file FILE (its first line is the password), or run the command on a terminal to be asked for it"
        }
        KeyFileError::WrongPassword { .. } => {
            "check the password (the first line of --password-file, without its newline, or what was typed); a key file changed after it was encrypted fails the same way"
        }
        KeyFileError::Password { .. } => {
            "pass a readable --password-file (a regular file or a pipe; its first line is the password)"
        }
        KeyFileError::Parse {
            source: MinisignError::KdfLimits { .. },
            ..
        } => {
            "the key's scrypt parameters exceed what minisign writes (at most 1 GiB of memory): re-encrypt it with `minisign -C`"
        }
        _ => "pass a secret key written by `stockade keygen` or `minisign -G`",
    }
}

/// The command error for an unusable secret key: kind `key` (65), except a password that is
/// needed and cannot be asked for (`key.password_required`, 64), a wrong password
/// (`key.wrong_password`, 77) and a password file that cannot be read (`key.password_file`, 66).
pub fn secret_key_error(e: KeyFileError) -> CmdError {
    let hint = secret_key_hint(&e);
    let (exit, kind) = match &e {
        KeyFileError::PasswordRequired(_) => (Exit::Usage, "key.password_required"),
        KeyFileError::WrongPassword { .. } => (Exit::NoPerm, "key.wrong_password"),
        KeyFileError::Password {
            source:
                PasswordError::Read { .. } | PasswordError::NotFile(_) | PasswordError::TooLong(_),
            ..
        } => (Exit::NoInput, "key.password_file"),
        KeyFileError::Password { .. } => (Exit::OsErr, "key.terminal"),
        _ => (Exit::DataErr, "key"),
    };
    CmdError::new(exit, kind, e).hint(hint)
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
