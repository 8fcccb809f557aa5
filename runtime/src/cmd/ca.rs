//! `stockade ca …`: an operator-run certificate authority (there is no vendor portal).
//!
//! `ca.key` may be password-encrypted (`ca init --new-password-file`, or `minisign -C -s
//! DIR/ca.key` afterwards): every command that signs with it then takes `--password-file` or
//! asks on the terminal (`crate::keyfile::load_secret`).
//!
//! A CA directory holds `ca.key` (0600), `ca.pub`, `ca.json` (`{"format":1, "name", "kind":
//! "root"|"intermediate", "key_id"}`), for an intermediate also `ca.cert` (signed by its root),
//! and for a root that has revoked something `revocations-issued.json` (the accumulated revoked
//! serials and key ids and the last list version, so each `ca revoke` increments the version and
//! re-signs the whole list).
//!
//! `ca issue` and `ca license` refuse an existing output unless `--force` (a certificate or a
//! license handed out, with its random serial or its state, is not replaced by accident);
//! `ca revoke` writes its list over the previous one on purpose: the list is re-issued whole,
//! with a higher version, each time. It records the new version in `revocations-issued.json`
//! before the list is written, so no list is ever out whose version the CA has not recorded
//! (which would let the next `ca revoke` sign another list under the same version).
//!
//! Issuing applies the same bounds as verification (`stockade_trust::chain::check_bounds`), so a
//! CA cannot mint a certificate that every node would refuse: `--capabilities` may narrow the
//! scope's ceiling, never widen it.
//!
//! Both files say their format: `ca.json` its `format` (1), `revocations-issued.json` one only
//! when it is not 1 (absent is 1: the file is written as every earlier build wrote it, so a
//! downgrade reads it; a `"format": 1` found is not written back). A format above 1 is a CA
//! directory a newer Stockade wrote: refused with 78 `ca_dir_newer_format` before its fields
//! are parsed (a newer format may add fields this build refuses), nothing signed or written —
//! not "corrupt", whose way out (a backup, a new CA) would forget what the newer version
//! revoked, or replace the root every node pins.
//!
//! Every command judges its arguments (and refuses an output it will not replace) before it
//! reads the CA key ([`CaDir::unlock`]): a bad `--days`, scope, serial or capability is refused
//! without the key's password being asked for, or the key decrypted, for nothing.

use crate::cli::{CaInitArgs, CaIssueArgs, CaLicenseArgs, CaRevokeArgs};
use crate::cmd::keygen::{fresh_key, new_password, write_pair};
use crate::cmd::valid_until;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, reserve, write_atomic};
use crate::keyfile::{load_public, load_secret, random_bytes, secret_key_error, unix_now};
use crate::output::{term, term_path, Output};
use crate::package::trees::lock_dir_shared;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use stockade_policy::capability::{Capability, Scope};
use stockade_trust::cert::{
    valid_serial, valid_subject, CertBody, CertError, CertKind, Certificate,
};
use stockade_trust::chain::check_bounds;
use stockade_trust::crl::{RevocationBody, RevocationList};
use stockade_trust::license::{License, LicenseBody, LicenseState};
use stockade_trust::minisign::SecretKey;
use stockade_trust::signed::MAX_DOC_BYTES;

/// File recording what this root has revoked so far.
pub const ISSUED_REVOCATIONS: &str = "revocations-issued.json";

/// Root or intermediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaKind {
    /// Signs intermediates, revocation lists and licenses; its `ca.pub` goes in trust dirs.
    Root,
    /// Signs developer certificates.
    Intermediate,
}

/// `ca.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaInfo {
    /// 1.
    pub format: u32,
    /// Human-readable name.
    pub name: String,
    /// Root or intermediate.
    pub kind: CaKind,
    /// The CA key's id.
    pub key_id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedRevocations {
    /// Absent (and not written) for format 1, the only one this build reads ([`newer_format`]);
    /// a `"format": 1` read is dropped, so the file is written back as earlier builds read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<u32>,
    version: u64,
    revoked_serials: BTreeSet<String>,
    revoked_key_ids: BTreeSet<String>,
}

/// A CA directory as its `ca.json` describes it, its key not read yet ([`CaDir::unlock`]).
struct CaDir {
    dir: PathBuf,
    info: CaInfo,
}

/// A CA directory with its key.
struct Ca {
    info: CaInfo,
    key: SecretKey,
}

fn usage(msg: impl Into<String>) -> CmdError {
    CmdError::msg(Exit::Usage, "usage", msg)
}

/// The format of a CA directory file that a newer Stockade wrote (`format` above 1), read
/// before anything else of the file: a newer format may add fields this build refuses.
fn newer_format(bytes: &[u8]) -> Option<u64> {
    stockade_trust::json_format(bytes).filter(|&f| f > 1)
}

fn newer_format_error(file: &str, format: u64) -> CmdError {
    CmdError::msg(
        Exit::Config,
        "ca_dir_newer_format",
        format!(
            "{file} is of format {format}, written by a newer Stockade; this one reads format 1"
        ),
    )
    .hint(
        "use the CA directory with the newer Stockade that wrote it (upgrade this one); nothing \
         was signed or written — do not restore it from a backup nor make a new CA",
    )
}

/// The CA in `dir`, without its key: every command judges its arguments against it (its kind,
/// its id) before it reads the key ([`CaDir::unlock`]), so a bad argument never costs a password
/// typed for nothing.
fn read_ca(dir: &Path) -> Result<CaDir, CmdError> {
    let info_path = dir.join("ca.json");
    let bytes = read_capped(&info_path, 64 * 1024).map_err(|e| {
        CmdError::new(Exit::NoInput, "ca_dir_unreadable", e)
            .hint("pass a directory created by `stockade ca init -o DIR`")
    })?;
    if let Some(format) = newer_format(&bytes) {
        return Err(newer_format_error("ca.json", format));
    }
    let corrupt = || {
        "ca.json is corrupt; restore the CA directory from a backup (a new CA made with `stockade ca init` is another root, which no node trusts yet)"
    };
    let info: CaInfo = serde_json::from_slice(&bytes)
        .map_err(|e| CmdError::new(Exit::DataErr, "ca_dir_corrupt", e).hint(corrupt()))?;
    if info.format != 1 {
        return Err(CmdError::msg(
            Exit::DataErr,
            "ca_dir_corrupt",
            format!(
                "ca.json is of format {}, which no Stockade writes",
                info.format
            ),
        )
        .hint(corrupt()));
    }
    Ok(CaDir {
        dir: dir.to_path_buf(),
        info,
    })
}

impl CaDir {
    /// The CA's key, decrypted with the password in `password_file` (or typed at the terminal)
    /// if `ca.key` is encrypted.
    fn unlock(self, password_file: Option<&Path>) -> Result<Ca, CmdError> {
        let key = load_secret(&self.dir.join("ca.key"), password_file).map_err(secret_key_error)?;
        if key.public_key().key_id.to_string() != self.info.key_id {
            return Err(CmdError::msg(
                Exit::DataErr,
                "ca_dir_corrupt",
                "ca.key does not match the key id in ca.json",
            )
            .hint("the CA directory was modified; restore it from backup"));
        }
        Ok(Ca {
            info: self.info,
            key,
        })
    }
}

/// A certificate `ca` could not issue (65 `certificate`).
fn bad_certificate(e: CertError) -> CmdError {
    CmdError::new(Exit::DataErr, "certificate", e)
}

fn parse_scope(s: &str) -> Result<Scope, CmdError> {
    s.parse().map_err(|e| {
        CmdError::new(Exit::Usage, "usage", e).hint("use any, license:<serial> or hardware:<id>")
    })
}

fn new_serial() -> Result<String, CmdError> {
    Ok(hex::encode(
        random_bytes::<16>().map_err(|e| CmdError::new(Exit::OsErr, "random", e))?,
    ))
}

/// What `ca init`'s private build directory is named with, before `<pid>-<random>`.
const INIT_PREFIX: &str = ".stockade-ca-";

/// Remove the build directories of this user's `ca init`s killed in `parent` (SIGKILL, or a
/// release build's abort on a panic, skips the cleanup between `ca.key` written and the
/// rename): each held a CA key (0600 in a 0700 directory, but a secret key all the same, on
/// disk for nothing). Only what is surely such a leftover, by the extraction directories' rules
/// (`package::verify`'s sweep): named exactly as `ca init` names them ([`is_init_leftover_name`]),
/// a real directory (not a symlink) of this user, stale by `fileio::leftover_is_stale` (its
/// maker's pid gone, or older than a minute), and not locked by its maker (a live `ca init`
/// holds its directory's lock until the rename); and removed only if it holds nothing but the
/// files a `ca init` writes there ([`is_init_file`]), file by file through the directory
/// checked (`fileio::remove_leftover_dir`): a directory someone put at such a name, or renamed
/// there (whoever can write `parent` can), is left whole. An earlier build's `.stockade-ca-<random>` is
/// left: six letters could be a CA someone named so (`-o .stockade-ca-backup`, its root key
/// the only copy), which no sweep may guess away. Errors are ignored: tidying, never a reason
/// to fail.
fn sweep_init_leftovers(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    crate::package::trees::sweep_unlocked(
        parent,
        &[INIT_PREFIX],
        |name, age, m| {
            is_init_leftover_name(name)
                && m.is_dir()
                && m.uid() == me
                && name
                    .strip_prefix(INIT_PREFIX)
                    .is_some_and(|rest| crate::fileio::leftover_is_stale(rest, age))
        },
        |path| crate::fileio::remove_leftover_dir(path, is_init_file),
    );
}

/// Whether `name` is a file `ca init` writes in its build directory (beside its write
/// temporaries): only a directory holding nothing else is taken for its leftover.
fn is_init_file(name: &str) -> bool {
    matches!(name, "ca.key" | "ca.pub" | "ca.json" | "ca.cert")
}

/// Whether `name` is one `ca init` gives its build directory: [`INIT_PREFIX`], a pid, `-`, and
/// tempfile's six random letters or digits. `ca init -o` refuses to make a CA of such a name.
fn is_init_leftover_name(name: &str) -> bool {
    name.strip_prefix(INIT_PREFIX).is_some_and(|rest| {
        crate::fileio::leftover_maker(rest).is_some()
            && rest.split_once('-').is_some_and(|(_, random)| {
                random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())
            })
    })
}

#[derive(Serialize)]
struct InitReport {
    #[serde(serialize_with = "crate::output::path_text")]
    dir: PathBuf,
    kind: CaKind,
    name: String,
    key_id: String,
    #[serde(serialize_with = "crate::output::opt_path_text")]
    certificate: Option<PathBuf>,
}

/// `stockade ca init`.
pub fn init(a: CaInitArgs, out: Output) -> Result<Exit, CmdError> {
    let now = a.now.unwrap_or_else(unix_now);
    if a.output.exists()
        && std::fs::read_dir(&a.output)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CmdError::msg(
            Exit::CantCreate,
            "output",
            format!(
                "{} already exists and is not an empty directory",
                a.output.display()
            ),
        )
        .hint("choose a new directory for the CA"));
    }
    if a.output
        .file_name()
        .is_some_and(|n| n.to_str().is_some_and(is_init_leftover_name))
    {
        return Err(usage(format!(
            "{} is named as ca init's build directories are, which a later ca init here removes",
            a.output.display()
        ))
        .hint("choose another name for the CA directory"));
    }
    let new_pw = a
        .new_password_file
        .as_deref()
        .map(new_password)
        .transpose()?;
    let parent_dir_ca = a.parent.as_deref().map(read_ca).transpose()?;
    // An intermediate's certificate arguments, judged before the root's key is read.
    let mut cert_args = None;
    if let Some(p) = &parent_dir_ca {
        if p.info.kind != CaKind::Root {
            return Err(
                usage(format!("--parent {} is not a root CA", p.dir.display()))
                    .hint("intermediates are certified by a root CA directory"),
            );
        }
        cert_args = Some((parse_scope(&a.scope)?, valid_until(now, a.days)?));
        // The name is the certificate's subject (the default one always fits).
        if a.name.as_deref().is_some_and(|n| !valid_subject(n)) {
            return Err(bad_certificate(CertError::Subject));
        }
    }
    let parent_ca = parent_dir_ca
        .map(|p| p.unlock(a.password_file.as_deref()))
        .transpose()?;
    let kind = if parent_ca.is_some() {
        CaKind::Intermediate
    } else {
        CaKind::Root
    };
    let key = fresh_key()?;
    let key_id = key.public_key().key_id.to_string();
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "stockade {} CA {key_id}",
            if kind == CaKind::Root {
                "root"
            } else {
                "intermediate"
            }
        )
    });
    // Build everything in a private sibling directory and rename it into place, so a failure
    // never leaves a half-made CA behind; a kill can, and the next `ca init` here sweeps it.
    let parent_dir = match a.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sweep_init_leftovers(&parent_dir);
    let cant_create = |e| {
        CmdError::new(Exit::CantCreate, "output", e)
            .hint("check that the parent directory exists and is writable")
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{INIT_PREFIX}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&parent_dir)
        .map_err(cant_create)?;
    // Held until the CA is in place: a sweep meanwhile (another `ca init` here) leaves it be.
    let _in_use = lock_dir_shared(tmp.path()).map_err(cant_create)?;
    write_pair(
        &key,
        new_pw.as_deref().map(|p| &p[..]),
        &tmp.path().join("ca.key"),
        &tmp.path().join("ca.pub"),
    )?;
    let info = CaInfo {
        format: 1,
        name: name.clone(),
        kind,
        key_id: key_id.clone(),
    };
    let mut info_bytes = serde_json::to_vec_pretty(&info)
        .map_err(|e| CmdError::new(Exit::Software, "internal", e))?;
    info_bytes.push(b'\n');
    crate::sys::stop_at("ca-init-key-written");
    crate::cmd::write_output(&tmp.path().join("ca.json"), &info_bytes, true)?;
    if let (Some(root), Some((scope, not_after))) = (&parent_ca, cert_args) {
        let pk = key.public_key();
        let body = CertBody {
            format: 1,
            kind: CertKind::Intermediate,
            serial: new_serial()?,
            subject: name.clone(),
            subject_key: pk.to_base64(),
            key_id: key_id.clone(),
            capabilities: scope.ceiling().into_iter().collect(),
            scope,
            not_before: now,
            not_after,
            issuer_key_id: root.info.key_id.clone(),
        };
        let cert = Certificate::issue(
            &body,
            &root.key,
            &format!(
                "stockade intermediate certificate {} timestamp:{now}",
                body.serial
            ),
        )
        .map_err(|e| CmdError::new(Exit::DataErr, "certificate", e))?;
        crate::cmd::write_output(&tmp.path().join("ca.cert"), &cert, true)?;
    }
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, &a.output) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(CmdError::new(Exit::CantCreate, "output", e)
            .hint("the output directory must not exist or be empty"));
    }
    let report = InitReport {
        certificate: parent_ca.as_ref().map(|_| a.output.join("ca.cert")),
        dir: a.output,
        kind,
        name,
        key_id,
    };
    out.emit(&report, |r| {
        let kind = if r.kind == CaKind::Root {
            "root"
        } else {
            "intermediate"
        };
        let mut t = format!(
            "created {kind} CA \"{}\" (key id {}) in {}\n",
            term(&r.name),
            term(&r.key_id),
            term_path(&r.dir)
        );
        if r.kind == CaKind::Root {
            t.push_str(&format!(
                "pin it on nodes: copy {} into the trust directory\n",
                term_path(&r.dir.join("ca.pub"))
            ));
        } else if let Some(c) = &r.certificate {
            t.push_str(&format!("intermediate certificate: {}\n", term_path(c)));
        }
        t
    });
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct IssueReport {
    #[serde(serialize_with = "crate::output::path_text")]
    output: PathBuf,
    kind: CertKind,
    serial: String,
    subject: String,
    key_id: String,
    scope: String,
    capabilities: Vec<Capability>,
    not_before: u64,
    not_after: u64,
    issuer_key_id: String,
}

/// `stockade ca issue`.
pub fn issue(a: CaIssueArgs, out: Output) -> Result<Exit, CmdError> {
    let now = a.now.unwrap_or_else(unix_now);
    let ca = read_ca(&a.ca)?;
    let subject_key = load_public(&a.public_key).map_err(|e| {
        CmdError::new(Exit::DataErr, "key", e)
            .hint("pass a public key written by `stockade keygen` or `minisign -G`")
    })?;
    let scope = parse_scope(&a.scope)?;
    let requested: Option<BTreeSet<Capability>> = a
        .capabilities
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|c| c.trim().parse::<Capability>())
                .collect::<Result<_, _>>()
        })
        .transpose()
        .map_err(|e| CmdError::new(Exit::Usage, "usage", e))?;
    let (kind, parent) = if a.intermediate {
        if ca.info.kind != CaKind::Root {
            return Err(usage("`ca issue --intermediate` needs a root CA directory")
                .hint("pass --ca ROOT_DIR (created by `stockade ca init` without --parent)"));
        }
        (CertKind::Intermediate, None)
    } else {
        if ca.info.kind != CaKind::Intermediate {
            return Err(usage("developer certificates are issued by an intermediate CA").hint("create one with `stockade ca init -o INT_DIR --parent ROOT_DIR` and pass --ca INT_DIR, or pass --intermediate"));
        }
        let bytes = read_capped(&ca.dir.join("ca.cert"), 64 * 1024)
            .map_err(|e| CmdError::new(Exit::NoInput, "ca_dir_unreadable", e))?;
        let cert = Certificate::parse(&bytes)
            .map_err(|e| CmdError::new(Exit::DataErr, "certificate", e))?;
        (CertKind::Developer, Some(cert))
    };
    let mut not_before = now;
    let mut not_after = valid_until(now, a.days)?;
    let default_caps: BTreeSet<Capability> = match &parent {
        Some(p) => scope
            .ceiling()
            .intersection(&p.capabilities())
            .copied()
            .collect(),
        None => scope.ceiling(),
    };
    if let Some(p) = &parent {
        // A developer certificate cannot outlive (or predate) the intermediate that vouches for it.
        not_before = not_before.max(p.body.not_before);
        not_after = not_after.min(p.body.not_after);
        if not_before >= not_after {
            return Err(CmdError::msg(
                Exit::DataErr,
                "validity",
                "the intermediate certificate's validity window does not overlap the requested one",
            )
            .hint("renew the intermediate CA (`stockade ca init --parent`) or adjust --days"));
        }
    }
    let pk_id = subject_key.key_id.to_string();
    let body = CertBody {
        format: 1,
        kind,
        serial: new_serial()?,
        subject: a
            .subject
            .clone()
            .unwrap_or_else(|| format!("{kind} {pk_id}")),
        subject_key: subject_key.to_base64(),
        key_id: pk_id,
        capabilities: requested.unwrap_or(default_caps).into_iter().collect(),
        scope,
        not_before,
        not_after,
        issuer_key_id: ca.info.key_id.clone(),
    };
    check_bounds(&body, parent.as_ref().map(|p| &p.body)).map_err(|e| {
        CmdError::new(Exit::DataErr, "bounds", e).hint(
            "--capabilities may only narrow what the scope (and the issuing intermediate) allows",
        )
    })?;
    Certificate::check_body(&body).map_err(bad_certificate)?;
    crate::cmd::refuse_existing_output(&a.output, a.force)?;
    let ca = ca.unlock(a.password_file.as_deref())?;
    let cert = Certificate::issue(
        &body,
        &ca.key,
        &format!(
            "stockade {kind} certificate {} timestamp:{now}",
            body.serial
        ),
    )
    .map_err(bad_certificate)?;
    crate::cmd::write_output(&a.output, &cert, a.force)?;
    let r = IssueReport {
        output: a.output,
        kind,
        serial: body.serial,
        subject: body.subject,
        key_id: body.key_id,
        scope: body.scope.to_string(),
        capabilities: body.capabilities,
        not_before,
        not_after,
        issuer_key_id: body.issuer_key_id,
    };
    out.emit(&r, |r| {
        format!(
            "issued {} certificate {} for {} (key {})\nscope: {}\ncapabilities: {}\nvalid: {} .. {}\nwritten to {}\n",
            r.kind,
            term(&r.serial),
            term(&r.subject),
            term(&r.key_id),
            term(&r.scope),
            r.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
            r.not_before,
            r.not_after,
            term_path(&r.output)
        )
    });
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct RevokeReport {
    #[serde(serialize_with = "crate::output::path_text")]
    output: PathBuf,
    version: u64,
    issued_at: u64,
    expires_at: u64,
    issuer_key_id: String,
    revoked_serials: Vec<String>,
    revoked_key_ids: Vec<String>,
}

/// `stockade ca revoke`.
pub fn revoke(a: CaRevokeArgs, out: Output) -> Result<Exit, CmdError> {
    let now = a.now.unwrap_or_else(unix_now);
    let ca = read_ca(&a.ca)?;
    if ca.info.kind != CaKind::Root {
        return Err(usage("revocation lists are signed by a root CA").hint("pass --ca ROOT_DIR"));
    }
    let state_path = ca.dir.join(ISSUED_REVOCATIONS);
    let mut state: IssuedRevocations = match read_capped(&state_path, 16 * 1024 * 1024) {
        Ok(b) => {
            if let Some(format) = newer_format(&b) {
                return Err(newer_format_error(ISSUED_REVOCATIONS, format));
            }
            let mut state: IssuedRevocations = serde_json::from_slice(&b).map_err(|e| {
                CmdError::new(Exit::DataErr, "ca_dir_corrupt", e)
                    .hint("revocations-issued.json is corrupt; restore it from backup")
            })?;
            if state.format.is_some_and(|f| f != 1) {
                return Err(CmdError::msg(
                    Exit::DataErr,
                    "ca_dir_corrupt",
                    format!("{ISSUED_REVOCATIONS} is of a format no Stockade writes"),
                )
                .hint("revocations-issued.json is corrupt; restore it from backup"));
            }
            // `"format": 1` is its absence, and written back so: earlier builds, which know no
            // `format`, refused a file that kept it.
            state.format = None;
            state
        }
        Err(e) if e.is_not_found() => IssuedRevocations::default(),
        Err(e) => return Err(CmdError::new(Exit::NoInput, "ca_dir_unreadable", e)),
    };
    for s in &a.serials {
        if !valid_serial(s) {
            return Err(
                usage(format!("serial `{s}` is not 32 lowercase hex digits"))
                    .hint("copy the serial from `stockade inspect` or the `ca issue` output"),
            );
        }
        state.revoked_serials.insert(s.clone());
    }
    for k in &a.keys {
        let pk = load_public(k).map_err(|e| CmdError::new(Exit::DataErr, "key", e))?;
        state.revoked_key_ids.insert(pk.key_id.to_string());
    }
    state.version += 1;
    let body = RevocationBody {
        format: 1,
        version: state.version,
        issued_at: now,
        expires_at: valid_until(now, a.days)?,
        issuer_key_id: ca.info.key_id.clone(),
        revoked_serials: state.revoked_serials.iter().cloned().collect(),
        revoked_key_ids: state.revoked_key_ids.iter().cloned().collect(),
    };
    let ca = ca.unlock(a.password_file.as_deref())?;
    let list = RevocationList::issue(
        &body,
        &ca.key,
        &format!(
            "stockade revocation list version {} timestamp:{now}",
            body.version
        ),
    )
    .map_err(|e| CmdError::new(Exit::DataErr, "revocation", e))?;
    // Every node reads the list capped (trustdir: MAX_DOC_BYTES) and fails closed on a larger
    // one: issued, it would stop every verification on every node it reached. Refused here,
    // before any version is recorded.
    if list.len() > MAX_DOC_BYTES {
        return Err(CmdError::msg(
            Exit::DataErr,
            "revocation.too_large",
            format!(
                "the list would be {} bytes ({} serials, {} keys), more than the {MAX_DOC_BYTES}-byte \
                 limit every node reads a revocation list within: nothing was issued",
                list.len(),
                body.revoked_serials.len(),
                body.revoked_key_ids.len()
            ),
        )
        .hint(
            "revoke the intermediate or the developer key that signed the certificates instead \
             of each serial (--key), or start a new root for what is left",
        ));
    }
    let state_bytes = serde_json::to_vec_pretty(&state)
        .map_err(|e| CmdError::new(Exit::Software, "internal", e))?;
    // The CA records a version before any list of that version exists: a list out in the world
    // whose version the CA has not recorded would be followed by another list under the same
    // version, perhaps without the serials revoked by the first. So: reserve the output (an unwritable one fails here,
    // with nothing recorded), commit the state (a failure drops the reservation: no list), then
    // commit the list. A failure at that last step leaves a version recorded and no list of it,
    // which costs only the number: the next `ca revoke` issues the one after it.
    let reserved = reserve(&a.output, 0o644).map_err(crate::cmd::output_error)?;
    write_atomic(&state_path, &state_bytes, 0o600).map_err(|e| {
        CmdError::new(Exit::CantCreate, "ca_dir", e).hint(format!(
            "nothing was issued: {} is unchanged and no list was written; make the CA directory \
             writable and run `ca revoke` again",
            ISSUED_REVOCATIONS
        ))
    })?;
    reserved
        .commit(&list, Some(0o644), None, true)
        .map_err(|e| {
            crate::cmd::output_error(e).hint(format!(
                "version {} is recorded in {ISSUED_REVOCATIONS} but no list of it was written; \
                 run `ca revoke` again (it issues version {}, with the same revocations)",
                body.version,
                body.version + 1
            ))
        })?;
    let r = RevokeReport {
        output: a.output,
        version: body.version,
        issued_at: body.issued_at,
        expires_at: body.expires_at,
        issuer_key_id: body.issuer_key_id,
        revoked_serials: body.revoked_serials,
        revoked_key_ids: body.revoked_key_ids,
    };
    out.emit(&r, |r| {
        format!(
            "revocation list version {} ({} serials, {} keys), expires at {}\nwritten to {}; install it on nodes as <trust dir>/revocations.json\n",
            r.version,
            r.revoked_serials.len(),
            r.revoked_key_ids.len(),
            r.expires_at,
            term_path(&r.output)
        )
    });
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct LicenseReport {
    #[serde(serialize_with = "crate::output::path_text")]
    output: PathBuf,
    serial: String,
    state: LicenseState,
    hardware_id: Option<String>,
    expires_at: Option<u64>,
}

/// `stockade ca license`.
pub fn license(a: CaLicenseArgs, out: Output) -> Result<Exit, CmdError> {
    let now = a.now.unwrap_or_else(unix_now);
    let ca = read_ca(&a.ca)?;
    if ca.info.kind != CaKind::Root {
        return Err(usage("licenses are signed by a root CA").hint("pass --ca ROOT_DIR"));
    }
    let body = LicenseBody {
        format: 1,
        serial: a.serial.clone(),
        state: if a.frozen {
            LicenseState::Frozen
        } else {
            LicenseState::Active
        },
        hardware_id: a.hardware.clone(),
        issued_at: now,
        expires_at: a.days.map(|d| valid_until(now, d)).transpose()?,
        issuer_key_id: ca.info.key_id.clone(),
    };
    let bad_license = |e| {
        CmdError::new(Exit::Usage, "usage", e)
            .hint("serial and hardware id are 1-64 characters of [A-Za-z0-9._-]")
    };
    License::check_body(&body).map_err(bad_license)?;
    crate::cmd::refuse_existing_output(&a.output, a.force)?;
    let ca = ca.unlock(a.password_file.as_deref())?;
    let bytes = License::issue(
        &body,
        &ca.key,
        &format!("stockade license {} timestamp:{now}", body.serial),
    )
    .map_err(bad_license)?;
    crate::cmd::write_output(&a.output, &bytes, a.force)?;
    let r = LicenseReport {
        output: a.output,
        serial: body.serial,
        state: body.state,
        hardware_id: body.hardware_id,
        expires_at: body.expires_at,
    };
    out.emit(&r, |r| {
        format!(
            "license {} ({:?}{}) written to {}\ninstall it on the node with `stockade node license install {}`\n",
            term(&r.serial),
            r.state,
            r.hardware_id.as_ref().map(|h| format!(", bound to hardware {}", term(h))).unwrap_or_default(),
            term_path(&r.output),
            term_path(&r.output)
        )
    });
    Ok(Exit::Ok)
}
