//! `stockade keygen -o NAME`: a fresh Ed25519 key pair in minisign's formats. `NAME.key` is
//! created with `O_EXCL` and mode 0600 in the same `open(2)` (never chmod-after), so the secret
//! is never readable by others; `NAME.pub` is written atomically.

use crate::cli::KeygenArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{create_exclusive, write_atomic};
use crate::keyfile::random_bytes;
use crate::output::Output;
use serde::Serialize;
use std::path::{Path, PathBuf};
use stockade_trust::minisign::SecretKey;

#[derive(Serialize)]
struct Report {
    secret_key: PathBuf,
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

/// Generate a key from OS randomness, this process made undumpable first
/// ([`crate::keyfile::guard_secrets`]).
pub fn fresh_key() -> Result<SecretKey, CmdError> {
    crate::keyfile::guard_secrets().map_err(crate::keyfile::secret_key_error)?;
    let seed = random_bytes::<32>().map_err(|e| CmdError::new(Exit::OsErr, "random", e))?;
    let id = random_bytes::<8>().map_err(|e| CmdError::new(Exit::OsErr, "random", e))?;
    Ok(SecretKey::from_seed(seed, id))
}

/// Write `sk` as `key_path` (0600, exclusive) and `pub_path`.
pub fn write_pair(sk: &SecretKey, key_path: &Path, pub_path: &Path) -> Result<(), CmdError> {
    create_exclusive(key_path, sk.to_text().as_bytes(), 0o600).map_err(|e| {
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
    write_pair(&sk, &key_path, &pub_path)?;
    let pk = sk.public_key();
    let report = Report {
        secret_key: key_path,
        public_key: pub_path,
        key_id: pk.key_id.to_string(),
        public_key_base64: pk.to_base64(),
    };
    out.emit(&report, |r| {
        format!(
            "key id {}\nsecret key: {} (mode 0600, keep it private)\npublic key: {}\n",
            r.key_id,
            crate::output::term_path(&r.secret_key),
            crate::output::term_path(&r.public_key)
        )
    });
    Ok(Exit::Ok)
}
