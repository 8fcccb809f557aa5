//! Reading minisign key files from disk (parsing lives in `stockade_trust::minisign`), and
//! the password of an encrypted secret key ([`crate::password`]).
//!
//! A secret key file must be its owner's alone: one that its group or others may read or write
//! (any of mode `0o077`) is refused before it is parsed, as `ssh` refuses such a private key
//! (`key.exposed`, exit 77) — encrypted or not (an encrypted key others may read can be taken
//! away and guessed at offline). Anyone who could read it may already have copied it and can
//! sign as its owner; anyone who could write it could have put their own key there. `stockade
//! keygen`, `ca init` and `minisign -G` all write 0600, so only a copy, an archive restore or a
//! `chmod -R` makes one wider; the refusal says to narrow it and to consider the key compromised.
//!
//! A process that holds a secret key — read here ([`load_secret`]) or made (`keygen`, `ca init`:
//! [`guard_secrets`]) — first makes itself undumpable: `PR_SET_DUMPABLE` 0 and `RLIMIT_CORE` 0.
//! A release build aborts on a panic (`panic = "abort"`), and a core file, or systemd-coredump's
//! copy kept for weeks, would hold the key (or its password) in the clear; and while it runs, no
//! other process of its user may `ptrace` it or read its `/proc/<pid>/mem` (only root, as for
//! `ssh-agent`).
//!
//! And the key's bytes in this process's own memory are wiped once used: the file read into one
//! wiped buffer ([`crate::fileio::read_secret`]) and parsed in place, never copied into a
//! `String`; the decoded and decrypted bytes, the [`SecretKey`] (its `SigningKey`) and the text
//! `keygen` writes all wipe themselves when dropped (`stockade_trust::minisign` checks those
//! types when it is built), as the password does ([`crate::password`]). Freed memory is
//! otherwise handed out again as it was: a later allocation in this process, a swap-out, or a
//! core file of a crash (which [`guard_secrets`] also keeps out) would meet the key. What
//! libraries keep on the stack while they work (the hash state of a checksum, scrypt's work
//! area, `ed25519-dalek`'s signing) is theirs, and not wiped.

use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, read_secret, FileError};
use crate::password::{self, PasswordError};
use std::os::unix::fs::PermissionsExt;
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

/// Load a secret key file: its owner's alone ([`KeyFileError::Exposed`] otherwise, judged on
/// the descriptor read, before anything is parsed); an encrypted one is decrypted with the
/// password read from `password_file` or, without one, asked for on the controlling terminal
/// ([`crate::password`]).
pub fn load_secret(path: &Path, password_file: Option<&Path>) -> Result<SecretKey, KeyFileError> {
    guard_secrets()?;
    let (file, bytes) = read_secret(path, MAX_TEXT_BYTES as u64)?;
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
    // Parsed where it was read: `String::from_utf8` would take the buffer out of its wiping.
    let text =
        std::str::from_utf8(&bytes).map_err(|_| KeyFileError::NotText(path.to_path_buf()))?;
    let parse = |source| KeyFileError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let encrypted = match SecretKeyFile::parse(text).map_err(parse)? {
        SecretKeyFile::Plain(k) => {
            crate::sys::stop_at("secret-key-held");
            return Ok(k);
        }
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
    let key = encrypted.decrypt(&pw).map_err(|source| match source {
        MinisignError::WrongPassword => KeyFileError::WrongPassword {
            path: path.to_path_buf(),
            source,
        },
        other => parse(other),
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

/// The command error for an unusable secret key: kind `key` (65), except a key file others
/// may read or write (`key.exposed`, 77), a process that cannot be made undumpable
/// (`key.guard`, 71), a password that is needed and cannot be asked for
/// (`key.password_required`, 64), a wrong password (`key.wrong_password`, 77) and a password
/// file that cannot be read (`key.password_file`, 66).
pub fn secret_key_error(e: KeyFileError) -> CmdError {
    if let KeyFileError::Exposed { path, .. } = &e {
        let hint = format!(
            "run `chmod 600 {}`; whoever could read it may have copied it: if so, make a new \
             key (`stockade keygen`) and have the old one's certificate revoked",
            path.display()
        );
        return CmdError::new(Exit::NoPerm, "key.exposed", e).hint(hint);
    }
    let hint = secret_key_hint(&e);
    let (exit, kind) = match &e {
        KeyFileError::Unguarded(_) => (Exit::OsErr, "key.guard"),
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

/// `N` bytes from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], std::io::Error> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// Fill `buf` from the OS random source (in place: a secret's buffer, which wipes itself).
pub fn fill_random(buf: &mut [u8]) -> Result<(), std::io::Error> {
    getrandom::getrandom(buf).map_err(|e| std::io::Error::other(e.to_string()))
}
