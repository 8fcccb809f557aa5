//! `stockade pack DIR --key K --devcert D --intcert I [-o FILE]`: validate the manifest, build
//! the deterministic payload and its file map, sign the canonical statement with the developer's
//! key and write one container file. An existing output is refused (73) unless `--force`: a
//! package already handed out is not replaced by accident (as `keygen` and `ca issue`).
//!
//! The packer refuses early what verification would refuse later (a key that is not the
//! certificate's, capabilities beyond the certificate, an expired certificate, unsafe files), so
//! a developer learns at pack time rather than from an operator's rejection. All of it that
//! needs no key — the manifest, the files, the certificates, an output it will not replace — is
//! judged before the key is read, so a password is never asked for a package that is refused.

use crate::cli::PackArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{open_regular, read_capped, FileError};
use crate::keyfile::{load_secret, secret_key_error, unix_now};
use crate::output::{term, Output};
use crate::package::build::{build, sha256_hex, BuildError};
use crate::package::container::{self, Container};
use crate::package::extract::Limits;
use crate::package::verify::runtime_version;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use stockade_policy::manifest::{Manifest, ManifestError, MAX_MANIFEST_BYTES};
use stockade_trust::cert::Certificate;
use stockade_trust::chain::{check_bounds, check_validity, ValidityError};
use stockade_trust::statement::{check_file_map, FileEntry, Statement};

#[derive(Serialize)]
struct Report {
    #[serde(serialize_with = "crate::output::path_text")]
    output: PathBuf,
    name: String,
    version: String,
    files: usize,
    payload_sha256: String,
    package_sha256: String,
    signer_key_id: String,
    developer_serial: String,
    /// What verification will refuse for now (a certificate not valid yet), and the files
    /// shipped that are named like credentials (`.env`…); also on stderr.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn load_cert(path: &Path, what: &str) -> Result<(Vec<u8>, Certificate), CmdError> {
    let bytes =
        read_capped(path, 64 * 1024).map_err(|e| CmdError::new(Exit::NoInput, "input", e))?;
    let cert = Certificate::parse(&bytes).map_err(|e| {
        CmdError::new(Exit::DataErr, "certificate", e)
            .hint(format!("pass the {what} certificate file from your CA"))
    })?;
    Ok((bytes, cert))
}

/// What the entrypoint `entry` of the plugin in `dir` needs the kernel to find that every
/// launch will miss (audit-131): a `#!` line ending in CR LF (the kernel looks for an
/// interpreter named `…\r`), or a `#!` interpreter or ELF loader outside what the sandbox shows
/// by default (the policy's default `read_only` — /usr, /bin, /lib… — and the package at
/// /plugin): a virtualenv's python, `/opt/…`, `/nix/store/…`. Warnings only: the package is
/// still made (an operator may add the directory to `[filesystem] read_only`), and the launch
/// says the same (127 `interpreter_not_found`). None for a file that cannot be read here (the
/// payload was built from it just before: it is the packer's own file), nor for anything but a
/// regular file: the file is opened once, without blocking, its type checked on that descriptor
/// and read from it ([`open_regular`]) — a FIFO put at the name after the payload's checks
/// would otherwise have blocked the packer in `open` until some writer came.
fn entrypoint_warnings(dir: &Path, entry: &str) -> Vec<String> {
    use crate::sandbox::Interpreter;
    let Ok((file, _)) = open_regular(&dir.join(entry)) else {
        return Vec::new();
    };
    let Some(interpreter) = Interpreter::of(&std::os::fd::OwnedFd::from(file)) else {
        return Vec::new();
    };
    let shown = |p: &str| {
        let p = Path::new(p);
        p.starts_with("/plugin")
            || stockade_policy::sandbox::DEFAULT_READ_ONLY
                .iter()
                .any(|r| p.starts_with(r))
    };
    let outside = "is outside what the sandbox shows by default (/usr — /bin, /lib through it \
                   —, and the package at /plugin): every launch fails (127 \
                   interpreter_not_found) unless the node's policy adds its directory to \
                   [filesystem] read_only";
    match interpreter {
        Interpreter::Script { path, crlf: true } => vec![format!(
            "{entry}: its `#!` line ends in CR LF (Windows line endings), so the kernel looks \
             for an interpreter named `{path}\\r` and every launch fails (127 \
             interpreter_not_found): convert the file to LF line endings"
        )],
        Interpreter::Script { path, .. } if !shown(&path) => vec![format!(
            "{entry}: its `#!` interpreter `{path}` {outside}; name one under /usr \
             (`#!/usr/bin/python3`, `#!/bin/sh`)"
        )],
        Interpreter::Loader(path) if !shown(&path) => vec![format!(
            "{entry}: its dynamic loader `{path}` (ELF PT_INTERP) {outside}; link it \
             statically, or for the host's C library"
        )],
        _ => Vec::new(),
    }
}

/// Run `stockade pack`.
pub fn run(a: PackArgs, out: Output) -> Result<Exit, CmdError> {
    if !a.dir.is_dir() {
        return Err(CmdError::msg(
            Exit::NoInput,
            "input",
            format!("{} is not a directory", a.dir.display()),
        )
        .hint("pass the plugin directory (manifest.json plus the entrypoint)"));
    }
    let manifest_bytes = read_capped(&a.dir.join("manifest.json"), MAX_MANIFEST_BYTES as u64)
        .map_err(|e| match e {
            // There, but no manifest (as verification's size cap would refuse it): the file's
            // content is wrong, not the input missing.
            FileError::TooLarge { .. } => CmdError::new(Exit::DataErr, "manifest", e).hint(
                format!("manifest.json may hold at most {MAX_MANIFEST_BYTES} bytes"),
            ),
            e => CmdError::new(Exit::NoInput, "input", e)
                .hint("the plugin directory must contain manifest.json"),
        })?;
    // Every rule is checked, but the minimum runtime version against no runtime in particular:
    // a package may well be built for a newer runtime than the packer's own (the seed's example
    // asks for 1.0.0). The runtime that verifies it enforces the bound; the packer says so.
    let parsed = Manifest::parse(&manifest_bytes).map_err(|e| {
        CmdError::new(Exit::DataErr, "manifest", e)
            .hint("fix manifest.json (see the field named above)")
    })?;
    let newer_than_this = matches!(
        parsed.clone().validate(&runtime_version()),
        Err(ManifestError::RuntimeTooOld { .. })
    );
    let min = parsed.min_runtime_version.clone().unwrap_or_default();
    let any_runtime = semver::Version::new(u64::MAX, u64::MAX, u64::MAX);
    let manifest = parsed.validate(&any_runtime).map_err(|e| {
        CmdError::new(Exit::DataErr, "manifest", e)
            .hint("fix manifest.json (see the field named above)")
    })?;
    if newer_than_this {
        out.note(format!(
            "the manifest asks for runtime {min} or newer: this runtime ({}) will refuse to run it",
            runtime_version()
        ));
    }
    let manifest_value: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| CmdError::new(Exit::DataErr, "manifest", e))?;
    let allowed: BTreeSet<String> = a.allow_private_key.iter().cloned().collect();
    let payload = build(&a.dir, &Limits::default(), &allowed).map_err(|e| match e {
        BuildError::SecretKey(_) => CmdError::new(Exit::DataErr, "pack.secret_key", e).hint(
            "move the key out of the plugin directory (keep secret keys outside what you ship); \
             if a package with it was ever published, make a new key and have the old one's \
             certificate revoked",
        ),
        BuildError::PrivateKey { .. } => CmdError::new(Exit::DataErr, "pack.secret_key", e).hint(
            "move the key out of the plugin directory (a plugin gets the keys it needs from its \
             node's configuration, not from its package); if a package with it was ever \
             published, consider the key public: replace it wherever it is used; a key meant to \
             be public (a vendored library's test key) is packed with --allow-private-key PATH",
        ),
        e => CmdError::new(Exit::DataErr, "pack", e).hint("remove or replace the offending file"),
    })?;
    // An allowance that let nothing through is refused: a stale one (the file gone, moved, or
    // no key any more) would otherwise silently let a key through later under that name.
    if let Some(unused) = allowed
        .iter()
        .find(|p| !payload.allowed_keys.iter().any(|(rel, _)| rel == *p))
    {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            format!(
                "--allow-private-key {}: no file of that path in the plugin directory holds a \
                 private key",
                term(unused)
            ),
        )
        .hint(
            "name the file as inside the plugin directory (lib/tests/test.key), or drop the flag",
        ));
    }
    let mut warnings = Vec::new();
    // Allowed private keys: packed, and said each time.
    for (rel, format) in &payload.allowed_keys {
        let w = format!(
            "{rel} holds a private key ({format}) and is shipped (--allow-private-key), readable \
             by all, to every node that installs the package: the key is public"
        );
        // One line whatever the file's name (a newline in it would forge another).
        out.note(format!("warning: {}", term(&w)));
        warnings.push(w);
    }
    // Named like a store of credentials: packed (the content cannot tell), but said.
    for rel in &payload.secret_looking {
        let w = format!(
            "{rel} is named like a file of credentials and is shipped, readable by all, to every \
             node that installs the package: leave it out if it holds secrets"
        );
        out.note(format!("warning: {}", term(&w)));
        warnings.push(w);
    }
    check_file_map(&payload.files, manifest.entrypoint()).map_err(|e| {
        // The hint for what the error is about: a wrong `entrypoint` path was told to chmod.
        let hint = match payload.files.get(manifest.entrypoint()) {
            None => {
                "the manifest's `entrypoint` is a path relative to the plugin directory (e.g. \
                 \"entrypoint\" or \"bin/plugin\"): fix it in manifest.json, or put the \
                 program there"
            }
            Some(FileEntry::File { mode: 0o755, .. }) => {
                "a package holds regular files, directories, and symlinks to regular files \
                 inside it: fix the entry named above"
            }
            Some(_) => "the entrypoint must be a regular file with the executable bit (chmod +x)",
        };
        CmdError::new(Exit::DataErr, "pack", e).hint(hint)
    })?;

    // What the kernel must find inside the sandbox to run the entrypoint: said now, not at
    // the first launch on a node (127 `interpreter_not_found`).
    for w in entrypoint_warnings(&a.dir, manifest.entrypoint()) {
        out.note(format!("warning: {}", term(&w)));
        warnings.push(w);
    }

    let (dev_bytes, dev) = load_cert(&a.devcert, "developer")?;
    let (int_bytes, int) = load_cert(&a.intcert, "intermediate")?;
    if dev.issuer != int.subject_key.key_id || dev.verify_signature(&int.subject_key).is_err() {
        return Err(CmdError::msg(Exit::DataErr, "certificate", "the developer certificate was not issued by the given intermediate certificate")
            .hint("pass the intermediate certificate (ca.cert) of the CA that issued your developer certificate"));
    }
    check_bounds(&dev.body, Some(&int.body))
        .map_err(|e| CmdError::new(Exit::DataErr, "certificate", e))?;
    // As `ca issue` refuses to mint a certificate every node would refuse: a package signed
    // under an expired certificate is refused by every node (83, step 4), so it is not made.
    // One not yet valid may well become valid before it is installed: made, with a warning.
    let now = unix_now();
    for cert in [&dev, &int] {
        match check_validity(&[cert], now) {
            Ok(()) => {}
            Err(e @ ValidityError::Expired { .. }) => {
                return Err(CmdError::new(Exit::Validity, "validity.expired", e).hint(
                    "every node refuses a package whose certificate has expired: renew it with `stockade ca issue` (an intermediate: `stockade ca init --parent`) and pack again",
                ));
            }
            Err(e) => {
                let w = format!("{e}: every node refuses this package until then");
                out.note(format!("warning: {w}"));
                warnings.push(w);
            }
        }
    }
    let ceiling = dev.capabilities();
    if let Some(c) = manifest
        .requested_capabilities()
        .iter()
        .find(|c| !ceiling.contains(c))
    {
        return Err(CmdError::msg(Exit::DataErr, "capability", format!("capability beyond ceiling: the manifest requests `{c}`, which the developer certificate (scope {}) does not grant", dev.body.scope))
            .hint("request fewer capabilities, or get a certificate whose scope allows them (kv_get/kv_put need a license: or hardware: scope)"));
    }

    let payload_sha: [u8; 32] = sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&payload.bytes),
    )
    .into();
    let statement = Statement::to_canonical(
        &manifest_value,
        &payload.files,
        &payload_sha,
        payload.bytes.len() as u64,
    )
    .map_err(|e| {
        CmdError::new(Exit::DataErr, "manifest", e)
            .hint("manifest.json must not contain floating-point numbers")
    })?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(manifest.package_file_name()));
    // Everything judged without the key is judged before it is read: a bad certificate or an
    // output that will not be replaced never costs a password typed for nothing.
    crate::cmd::refuse_existing_output(&output, a.force)?;
    let key = load_secret(&a.key, a.password_file.as_deref()).map_err(secret_key_error)?;
    if dev.subject_key != key.public_key() {
        return Err(CmdError::msg(
            Exit::DataErr,
            "key",
            format!(
                "--key is key {}, but the developer certificate is for key {}",
                key.key_id, dev.subject_key.key_id
            ),
        )
        .hint("sign with the key the certificate was issued for"));
    }
    let sig = key
        .sign(
            &statement,
            &format!(
                "stockade package {} {} timestamp:{now}",
                manifest.name(),
                manifest.version()
            ),
        )
        .map_err(|e| CmdError::new(Exit::Software, "internal", e))?;
    let c = Container {
        statement,
        signature: sig.to_text().into_bytes(),
        developer_cert: dev_bytes,
        intermediate_cert: int_bytes,
        payload: payload.bytes,
    };
    let bytes = container::write(&c).map_err(|e| CmdError::new(Exit::Software, "internal", e))?;
    crate::cmd::write_output(&output, &bytes, a.force)?;
    let r = Report {
        output,
        name: manifest.name().to_string(),
        version: manifest.version().to_string(),
        files: payload.files.len(),
        payload_sha256: hex::encode(payload_sha),
        package_sha256: sha256_hex(&bytes),
        signer_key_id: key.key_id.to_string(),
        developer_serial: dev.body.serial.clone(),
        warnings,
    };
    out.emit(&r, |r| {
        format!(
            "packed {} {} ({} files) signed by key {}\npackage sha256 {}\nwritten to {}\n",
            r.name,
            r.version,
            r.files,
            r.signer_key_id,
            r.package_sha256,
            crate::output::term_path(&r.output)
        )
    });
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::entrypoint_warnings;

    /// A FIFO at the entrypoint's name (put there after the payload's checks) is not waited on:
    /// `File::open` blocked until a writer came, and the packer with it (a hung test is ended
    /// by nextest: .config/nextest.toml). A regular file there is still read.
    #[test]
    fn a_fifo_at_the_entrypoint_is_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let entry = d.path().join("entrypoint");
        nix::unistd::mkfifo(&entry, nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
        assert!(entrypoint_warnings(d.path(), "entrypoint").is_empty());
        std::fs::remove_file(&entry).unwrap();
        std::fs::write(&entry, b"#!/bin/sh\r\necho hi\r\n").unwrap();
        let w = entrypoint_warnings(d.path(), "entrypoint");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("CR LF"), "{w:?}");
    }
}
