//! `stockade keygen -o NAME`: a fresh Ed25519 key pair in minisign's formats. `NAME.key` is
//! created with `O_EXCL` and mode 0600 in the same `open(2)` (never chmod-after), so the secret
//! is never readable by others; `NAME.pub` is written atomically.
//!
//! `--password-file FILE` encrypts `NAME.key` as `minisign -G` does (random salt, scrypt at
//! minisign's own cost, [`KdfLimits::MINISIGN`]), so stock minisign signs with it and
//! `minisign -C` changes or removes its password. Without it the key is unencrypted, as it has
//! always been: scripts and agents run `keygen -o NAME` with no terminal and no password.

use crate::cli::KeygenArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{create_exclusive, write_atomic};
use crate::keyfile::{fill_random, random_bytes};
use crate::output::Output;
use crate::password::{self, Password};
use serde::Serialize;
use std::path::{Path, PathBuf};
use stockade_trust::minisign::{KdfLimits, SecretKey, SecretText};
use zeroize::Zeroizing;

#[derive(Serialize)]
struct Report {
    #[serde(serialize_with = "crate::output::path_text")]
    secret_key: PathBuf,
    /// Whether `secret_key` is password-encrypted (`--password-file`).
    encrypted: bool,
    #[serde(serialize_with = "crate::output::path_text")]
    public_key: PathBuf,
    key_id: String,
    public_key_base64: String,
}

/// `NAME` + `.ext` (NAME may itself contain dots).
pub fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// The password for a new key, from `--password-file`: refused empty (an empty password
/// encrypts nothing: write an unencrypted key instead, without the flag).
pub fn new_password(file: &Path) -> Result<Password, CmdError> {
    let pw = password::from_file(file).map_err(|e| {
        CmdError::new(Exit::NoInput, "key.password_file", e)
            .hint("pass a readable --password-file (a regular file or a pipe; its first line is the password)")
    })?;
    if pw.is_empty() {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            format!("the first line of {} is empty", file.display()),
        )
        .hint("put the password on the file's first line, or leave out --password-file for an unencrypted key"));
    }
    Ok(pw)
}

/// Generate a key from OS randomness, this process made undumpable first
/// ([`crate::keyfile::guard_secrets`]). The seed is drawn into a wiped buffer and borrowed by
/// the key, which wipes its own copy ([`crate::keyfile`]'s doc).
pub fn fresh_key() -> Result<SecretKey, CmdError> {
    crate::keyfile::guard_secrets().map_err(crate::keyfile::secret_key_error)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    fill_random(&mut seed[..]).map_err(|e| CmdError::new(Exit::OsErr, "random", e))?;
    let id = random_bytes::<8>().map_err(|e| CmdError::new(Exit::OsErr, "random", e))?;
    Ok(SecretKey::from_seed(&seed, id))
}

/// The scrypt cost `keygen --password-file` writes: minisign's. A debug build (the one the
/// tests run) takes `STOCKADE_TEST_KDF=cheapest` for [`KdfLimits::CHEAPEST`], so tests about
/// something else than the cost do not pay 1 GiB and seconds per key; a release build ignores
/// it.
fn kdf_limits() -> KdfLimits {
    if cfg!(debug_assertions)
        && std::env::var_os("STOCKADE_TEST_KDF").is_some_and(|v| v == "cheapest")
    {
        return KdfLimits::CHEAPEST;
    }
    KdfLimits::MINISIGN
}

/// The secret key file's text (wiped when dropped): encrypted with `password` if one is given.
fn secret_text(sk: &SecretKey, password: Option<&[u8]>) -> Result<SecretText, CmdError> {
    let Some(pw) = password else {
        return Ok(sk.to_text());
    };
    let salt = random_bytes::<32>().map_err(|e| CmdError::new(Exit::OsErr, "random", e))?;
    sk.to_encrypted_text(pw, salt, kdf_limits())
        .map_err(|e| CmdError::new(Exit::Software, "internal", e))
}

/// Write `sk` as `key_path` (0600, exclusive; encrypted with `password` if one is given) and
/// `pub_path`.
pub fn write_pair(
    sk: &SecretKey,
    password: Option<&[u8]>,
    key_path: &Path,
    pub_path: &Path,
) -> Result<(), CmdError> {
    let text = secret_text(sk, password)?;
    create_exclusive(key_path, text.as_bytes(), 0o600).map_err(|e| {
        let exists = e.is_exists();
        let err = CmdError::new(Exit::CantCreate, "output", e);
        if exists {
            err.hint(
                "the key file already exists; choose another name or pass --force to replace it",
            )
        } else {
            err.hint("check that the directory exists and is writable")
        }
    })?;
    if let Err(e) = write_atomic(pub_path, sk.public_key().to_text().as_bytes(), 0o644) {
        let _ = std::fs::remove_file(key_path);
        return Err(CmdError::new(Exit::CantCreate, "output", e));
    }
    Ok(())
}

/// Run `stockade keygen`.
pub fn run(a: KeygenArgs, out: Output) -> Result<Exit, CmdError> {
    // Read before anything is removed or written: a password that cannot be had changes nothing.
    let password = match &a.password_file {
        Some(f) => Some(new_password(f)?),
        None => None,
    };
    let key_path = with_ext(&a.output, "key");
    let pub_path = with_ext(&a.output, "pub");
    if a.force {
        for p in [&key_path, &pub_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CmdError::new(Exit::CantCreate, "output", e)
                        .hint("cannot replace the existing key file"))
                }
            }
        }
    } else if pub_path.exists() {
        return Err(CmdError::msg(
            Exit::CantCreate,
            "output",
            format!("{} already exists", pub_path.display()),
        )
        .hint("choose another name or pass --force to replace it"));
    }
    let sk = fresh_key()?;
    write_pair(
        &sk,
        password.as_deref().map(|p| &p[..]),
        &key_path,
        &pub_path,
    )?;
    let pk = sk.public_key();
    let report = Report {
        encrypted: password.is_some(),
        secret_key: key_path,
        public_key: pub_path,
        key_id: pk.key_id.to_string(),
        public_key_base64: pk.to_base64(),
    };
    out.emit(&report, |r| {
        format!(
            "key id {}\nsecret key: {} (mode 0600{}, keep it private)\npublic key: {}\n",
            r.key_id,
            crate::output::term_path(&r.secret_key),
            if r.encrypted {
                ", password-encrypted"
            } else {
                ""
            },
            crate::output::term_path(&r.public_key)
        )
    });
    Ok(Exit::Ok)
}
