//! Building the payload from a plugin directory: walk it in sorted order, refuse anything we
//! would refuse at extraction, record each file's digest, and write a deterministic tar.gz
//! (entries sorted, mtime 0, uid/gid 0, no user/group names, modes normalized to 0644/0755,
//! gzip header without timestamp or name). The same directory always yields the same bytes, so
//! a package can be rebuilt and compared.
//!
//! A file that is a minisign secret key is refused ([`BuildError::SecretKey`]): the easiest key
//! to pass to `pack --key` is one kept beside the plugin, and packed it would be shipped — 0644,
//! like every file — to every node that installs the package, its signature then worth nothing.
//! Told by content ([`stockade_trust::minisign::looks_like_secret_key`]), whatever its name, encrypted keys included (a password
//! guessed offline is as good).
//!
//! So is any other private key its content names for one ([`private_key_format`],
//! [`BuildError::PrivateKey`]): PEM (`-----BEGIN … PRIVATE KEY-----` to its `-----END …` line:
//! PKCS #8, encrypted or not, PKCS #1 RSA, SEC 1 EC, DSA), OpenSSH's own, PGP's private key
//! block, PuTTY's `.ppk`. Refused rather than warned about, because such a file is never a
//! plugin's business to ship: a package is public — every node that installs it gets every
//! file, 0644 — so a private key in it is one handed to everyone, and a plugin that needs a key
//! gets it from its node (its configuration), not from its author. The markers are exact, whole
//! lines (or a quoted string's, lines joined by `\n` escapes: a service account's JSON key
//! file), framed by their end line around a base64 body, so a file that merely mentions them,
//! or shows where a key goes (a placeholder between them), is packed; a public key or a
//! certificate is too.
//!
//! Files named like the usual homes of credentials (`.env` and `.env.*` other than the
//! `.example`/`.sample`/`.template`/`.dist` kinds, `.netrc`, `.pgpass`, `.git-credentials`,
//! `.npmrc`, `.pypirc`: [`secret_looking_name`]) are only warned about
//! ([`Payload::secret_looking`]; `pack` prints a note and lists them in its JSON `warnings`):
//! their content cannot be told apart from harmless settings (a `.env` of defaults, an
//! `.npmrc` naming a registry), and a refusal by name alone, with no way past it, would stop
//! packages that are fine.
//!
//! A private key of those formats that the author means to ship — a test fixture of a vendored
//! library (a TLS test key beside an HTTP library's tests), a key made public on purpose — is
//! packed when `pack --allow-private-key PATH` names it, file by file ([`build`]'s `allowed`;
//! listed in [`Payload::allowed_keys`], and `pack` warns about each): without a way past the
//! refusal such a plugin could not be packed at all. A minisign secret key has none: it is the
//! key format stockade signs with, and the one a plugin directory holds by mistake.

use super::extract::Limits;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use stockade_trust::statement::{valid_file_path, FileEntry};

/// Why a directory cannot be packed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Reading the tree failed.
    #[error("cannot read {}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A name (or symlink target) that is not a clean UTF-8 relative path.
    #[error("{} has a name or link target that cannot be packaged (must be UTF-8, no backslash or control character, at most 255 bytes)", .0.display())]
    Name(PathBuf),
    /// Device, FIFO or socket.
    #[error("{} is a special file (device, FIFO or socket); only regular files, directories and symlinks can be packaged", .0.display())]
    Special(PathBuf),
    /// setuid/setgid/sticky bit.
    #[error("{} has a setuid, setgid or sticky bit", .0.display())]
    SpecialBits(PathBuf),
    /// Symlink that leaves the tree or does not point at a packaged regular file.
    #[error("symlink {} -> {target} leaves the plugin directory or does not point to a regular file in it", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
        /// Its target.
        target: String,
    },
    /// Too big or too many.
    #[error("the plugin directory exceeds the package limits: {0}")]
    Limit(String),
    /// A minisign secret key (encrypted or not): packed, it would go to every node that installs
    /// the package, extracted world-readable.
    #[error("{} is a minisign secret key; a package ships every file of its directory to every node that installs it", .0.display())]
    SecretKey(PathBuf),
    /// A PEM, OpenSSH, PGP or PuTTY private key ([`private_key_format`]): the same.
    #[error("{} holds a private key ({format}); a package ships every file of its directory to every node that installs it", path.display())]
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// What kind of key its content says it is.
        format: &'static str,
    },
}

/// What private key, if any, `data` holds: a PEM block whose label ends in `PRIVATE KEY`
/// (`-----BEGIN RSA PRIVATE KEY-----`, `… OPENSSH PRIVATE KEY-----`, PKCS #8's plain and
/// `ENCRYPTED` ones…) or is PGP's `PRIVATE KEY BLOCK`, its BEGIN and END lines each a whole line
/// (surrounding blanks and a `\r` aside) with a body between them that is a key's: base64 lines
/// (at least one), beside the `Name: value` headers (RFC 1421's `Proc-Type`/`DEK-Info`, PGP
/// armour's `Version`/`Comment`) and blank lines keys carry — so a document that shows where a
/// key goes, a placeholder between the markers (`<your key>`, `MIIE...`), is not one — anywhere
/// in the file (a certificate bundle with its key appended counts), its lines real ones or
/// `\n` escapes in a quoted string ([`key_lines`]); or a PuTTY key file (its
/// first line `PuTTY-User-Key-File-<version>: `). Read as bytes: a binary file is searched the
/// same way.
pub fn private_key_format(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"PuTTY-User-Key-File-") {
        return Some("PuTTY private key");
    }
    // The block opened: its label, whether a base64 line came after its BEGIN line, and
    // whether every line so far could be a key's.
    struct Open<'a> {
        label: &'a [u8],
        base64: bool,
        key_like: bool,
    }
    let mut open: Option<Open<'_>> = None;
    for line in key_lines(data) {
        if let Some(o) = &mut open {
            if end_label(line) == Some(o.label) {
                if o.base64 && o.key_like {
                    return Some(pem_format(o.label));
                }
                open = None;
            } else if is_base64_line(line) {
                o.base64 = true;
            } else if !(line.is_empty() || is_header_line(line)) {
                o.key_like = false;
            }
            continue;
        }
        let Some(label) = begin_label(line) else {
            continue;
        };
        if label.ends_with(b"PRIVATE KEY") || label == b"PGP PRIVATE KEY BLOCK" {
            open = Some(Open {
                label,
                base64: false,
                key_like: true,
            });
        }
    }
    None
}

/// The lines of `data` for [`private_key_format`], each trimmed of surrounding blanks (a `\r`
/// among them): split at line ends, and at the `\n` escapes of a key kept in a JSON or source
/// string (a service account's `"private_key": "-----BEGIN PRIVATE KEY-----\nMIIE…"`), after
/// which an escaped `\r` is dropped too.
fn key_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        let next = d.iter().enumerate().find_map(|(i, &b)| match b {
            b'\n' => Some((i, 1)),
            b'\\' if d.get(i + 1) == Some(&b'n') => Some((i, 2)),
            _ => None,
        });
        let line = match next {
            Some((at, len)) => {
                rest = Some(&d[at + len..]);
                &d[..at]
            }
            None => {
                rest = None;
                d
            }
        };
        let line = line.trim_ascii();
        Some(line.strip_suffix(b"\\r").unwrap_or(line).trim_ascii())
    })
}

/// The label of a `-----BEGIN <label>-----` line: the whole line, or the end of one where the
/// marker opens a quoted string (`"private_key": "-----BEGIN PRIVATE KEY-----`).
fn begin_label(line: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let rest = line.strip_prefix(BEGIN).or_else(|| {
        let at = line
            .windows(BEGIN.len() + 1)
            .rposition(|w| matches!(w[0], b'"' | b'\'') && &w[1..] == BEGIN)?;
        Some(&line[at + 1 + BEGIN.len()..])
    })?;
    rest.strip_suffix(b"-----")
}

/// The label of an `-----END <label>-----` line: the whole line, or its start where the marker
/// closes a quoted string (`-----END PRIVATE KEY-----",`).
fn end_label(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"-----END ")?;
    rest.strip_suffix(b"-----").or_else(|| {
        let at = rest
            .windows(6)
            .position(|w| &w[..5] == b"-----" && matches!(w[5], b'"' | b'\''))?;
        Some(&rest[..at])
    })
}

/// A line of base64 (PGP armour's `=` checksum line too).
fn is_base64_line(line: &[u8]) -> bool {
    !line.is_empty()
        && line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// A `Name: value` header line of a PEM (RFC 1421) or PGP armour block: a name of letters,
/// digits and `-`, then `: `.
fn is_header_line(line: &[u8]) -> bool {
    line.windows(2).position(|w| w == b": ").is_some_and(|at| {
        at > 0
            && line[..at]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// A name for the PEM label `label` (one [`private_key_format`] matched).
fn pem_format(label: &[u8]) -> &'static str {
    match label {
        b"OPENSSH PRIVATE KEY" => "OpenSSH private key",
        b"RSA PRIVATE KEY" => "PEM RSA private key",
        b"EC PRIVATE KEY" => "PEM EC private key",
        b"DSA PRIVATE KEY" => "PEM DSA private key",
        b"ENCRYPTED PRIVATE KEY" => "PEM encrypted private key",
        b"PGP PRIVATE KEY BLOCK" => "PGP private key",
        _ => "PEM private key",
    }
}

/// Whether a file named `name` (its last component) is one of the usual homes of credentials,
/// which `pack` warns about (the module doc says why not refused).
pub fn secret_looking_name(name: &str) -> bool {
    const NAMES: &[&str] = &[
        ".env",
        ".netrc",
        ".pgpass",
        ".git-credentials",
        ".npmrc",
        ".pypirc",
    ];
    const SAFE_ENV: &[&str] = &["example", "sample", "template", "dist"];
    NAMES.contains(&name)
        || name
            .strip_prefix(".env.")
            .is_some_and(|rest| !rest.is_empty() && !SAFE_ENV.contains(&rest))
}

/// The built payload.
#[derive(Debug)]
pub struct Payload {
    /// The file map for the statement.
    pub files: BTreeMap<String, FileEntry>,
    /// The tar.gz bytes.
    pub bytes: Vec<u8>,
    /// The packed files named like the usual homes of credentials ([`secret_looking_name`]),
    /// as in the file map: `pack` warns about each.
    pub secret_looking: Vec<String>,
    /// The private keys packed because `allowed` named them (path as in the file map, and the
    /// key's format, as [`private_key_format`] names it): `pack` warns about each.
    pub allowed_keys: Vec<(String, &'static str)>,
}

enum Item {
    File {
        rel: String,
        path: PathBuf,
        mode: u32,
        size: u64,
    },
    Link {
        rel: String,
        target: String,
    },
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    out: &mut Vec<Item>,
    limits: &Limits,
) -> Result<(), BuildError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let name = name
            .to_str()
            .ok_or_else(|| BuildError::Name(path.clone()))?;
        let r = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        if !valid_file_path(&r) {
            return Err(BuildError::Name(path));
        }
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = meta.file_type();
        if meta.mode() & 0o7000 != 0 {
            return Err(BuildError::SpecialBits(path));
        }
        if ft.is_dir() {
            walk(root, &path, &r, out, limits)?;
        } else if ft.is_file() {
            if meta.len() > limits.max_file_bytes {
                return Err(BuildError::Limit(format!(
                    "{} is larger than {} bytes",
                    path.display(),
                    limits.max_file_bytes
                )));
            }
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(Item::File {
                rel: r,
                path,
                mode,
                size: meta.len(),
            });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            let target = target
                .to_str()
                .filter(|t| !t.chars().any(char::is_control))
                .ok_or_else(|| BuildError::Name(path.clone()))?
                .to_string();
            out.push(Item::Link { rel: r, target });
        } else {
            return Err(BuildError::Special(path));
        }
        if out.len() > limits.max_entries {
            return Err(BuildError::Limit(format!(
                "more than {} files",
                limits.max_entries
            )));
        }
    }
    let _ = root;
    Ok(())
}

/// Walk `root` and build the payload and file map. A file in `allowed` (its path as in the file
/// map) is packed although it holds a PEM, OpenSSH, PGP or PuTTY private key (never a minisign
/// secret key); the caller checks that each one it allowed is in [`Payload::allowed_keys`].
pub fn build(
    root: &Path,
    limits: &Limits,
    allowed: &BTreeSet<String>,
) -> Result<Payload, BuildError> {
    let mut items = Vec::new();
    walk(root, root, "", &mut items, limits)?;
    // Sort by the relative path string (the walk sorts per directory by OsString, which orders
    // "a/b" vs "a.b" differently from the file map's string order).
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let mut files = BTreeMap::new();
    let mut secret_looking = Vec::new();
    let mut allowed_keys = Vec::new();
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::best()));
    let mut total = 0u64;
    for item in &items {
        match item {
            Item::File {
                rel,
                path,
                mode,
                size,
            } => {
                let mut data =
                    crate::fileio::read_capped(path, limits.max_file_bytes).map_err(|e| {
                        BuildError::Io {
                            path: path.clone(),
                            source: std::io::Error::other(e),
                        }
                    })?;
                if stockade_trust::minisign::looks_like_secret_key(&data) {
                    // Someone's key, refused: not left in freed memory either.
                    zeroize::Zeroize::zeroize(&mut data);
                    return Err(BuildError::SecretKey(path.clone()));
                }
                if let Some(format) = private_key_format(&data) {
                    if allowed.contains(rel) {
                        allowed_keys.push((rel.clone(), format));
                    } else {
                        zeroize::Zeroize::zeroize(&mut data);
                        return Err(BuildError::PrivateKey {
                            path: path.clone(),
                            format,
                        });
                    }
                }
                if rel.rsplit('/').next().is_some_and(secret_looking_name) {
                    secret_looking.push(rel.clone());
                }
                if data.len() as u64 != *size {
                    return Err(BuildError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("file changed while packing"),
                    });
                }
                total += *size;
                if total > limits.max_total_bytes {
                    return Err(BuildError::Limit(format!(
                        "more than {} bytes in total",
                        limits.max_total_bytes
                    )));
                }
                let mut h = header(tar::EntryType::Regular, *mode);
                h.set_size(*size);
                tar.append_data(&mut h, rel, data.as_slice())
                    .map_err(io_err(path))?;
                files.insert(
                    rel.clone(),
                    FileEntry::File {
                        mode: *mode,
                        sha256: Sha256::digest(&data).into(),
                        size: *size,
                    },
                );
            }
            Item::Link { rel, target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777);
                h.set_size(0);
                tar.append_link(&mut h, rel, target)
                    .map_err(io_err(Path::new(rel)))?;
                files.insert(
                    rel.clone(),
                    FileEntry::Symlink {
                        target: target.clone(),
                    },
                );
            }
        }
    }
    // Symlink targets must name packaged regular files; checked here with the real map so the
    // error names the offending link (the full map rules run again before signing).
    for (rel, e) in &files {
        if let FileEntry::Symlink { target } = e {
            let ok = stockade_trust::statement::resolve_symlink(rel, target)
                .is_some_and(|r| matches!(files.get(&r), Some(FileEntry::File { .. })));
            if !ok {
                return Err(BuildError::Symlink {
                    path: root.join(rel),
                    target: target.clone(),
                });
            }
        }
    }
    let gz = tar.into_inner().map_err(io_err(root))?;
    let bytes = gz.finish().map_err(io_err(root))?;
    Ok(Payload {
        files,
        bytes,
        secret_looking,
        allowed_keys,
    })
}

fn key(i: &Item) -> &str {
    match i {
        Item::File { rel, .. } | Item::Link { rel, .. } => rel,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Hex SHA-256 helper for reports.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::{private_key_format, secret_looking_name};

    #[test]
    fn private_keys_are_told_by_their_framed_markers() {
        let pem = |label: &str| format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n");
        for (label, format) in [
            ("PRIVATE KEY", "PEM private key"),
            ("ENCRYPTED PRIVATE KEY", "PEM encrypted private key"),
            ("RSA PRIVATE KEY", "PEM RSA private key"),
            ("EC PRIVATE KEY", "PEM EC private key"),
            ("DSA PRIVATE KEY", "PEM DSA private key"),
            ("OPENSSH PRIVATE KEY", "OpenSSH private key"),
            ("PGP PRIVATE KEY BLOCK", "PGP private key"),
        ] {
            assert_eq!(private_key_format(pem(label).as_bytes()), Some(format));
        }
        // CRLF, indentation, and a key after a certificate (a bundle).
        let crlf = "  -----BEGIN PRIVATE KEY-----\r\nMIIB\r\n-----END PRIVATE KEY-----  \r\n";
        assert!(private_key_format(crlf.as_bytes()).is_some());
        // Old-style encrypted PEM and PGP armour, with their headers.
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,0A1B\n\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        assert!(private_key_format(legacy.as_bytes()).is_some());
        let pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBF0A\n=Ab1x\n\
                   -----END PGP PRIVATE KEY BLOCK-----\n";
        assert!(private_key_format(pgp.as_bytes()).is_some());
        // In a JSON string (a service account's key file), escaped line ends and all.
        let json = r#"{"private_key": "-----BEGIN PRIVATE KEY-----\r\nMIIE\r\n-----END PRIVATE KEY-----"}"#;
        assert!(private_key_format(json.as_bytes()).is_some());
        let bundle = format!("{}{}", pem("CERTIFICATE"), pem("PRIVATE KEY"));
        assert!(private_key_format(bundle.as_bytes()).is_some());
        assert_eq!(
            private_key_format(b"PuTTY-User-Key-File-3: ssh-ed25519\n"),
            Some("PuTTY private key")
        );
        // Not keys: public halves, certificates, a mention in a sentence, an unframed marker,
        // a block with no body, mismatched ends.
        for not in [
            pem("PUBLIC KEY"),
            pem("RSA PUBLIC KEY"),
            pem("CERTIFICATE"),
            pem("PGP PUBLIC KEY BLOCK"),
            "keys look like -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----\n".into(),
            "-----BEGIN PRIVATE KEY-----\nMIIB\n".into(),
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".into(),
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n".into(),
            "fmt = \"-----BEGIN %s-----\"\n".into(),
            r#"f = "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n""#.into(),
            r#"x = "a-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----""#.into(),
            "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----\n".into(),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END RSA PRIVATE KEY-----\n"
                .into(),
            "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n-----END PRIVATE KEY-----\n"
                .into(),
        ] {
            assert_eq!(private_key_format(not.as_bytes()), None, "{not:?}");
        }
    }

    #[test]
    fn credential_file_names_are_told_from_their_templates() {
        for yes in [
            ".env",
            ".env.local",
            ".env.production",
            ".netrc",
            ".npmrc",
            ".pgpass",
        ] {
            assert!(secret_looking_name(yes), "{yes}");
        }
        for no in [
            ".env.example",
            ".env.sample",
            ".env.template",
            ".env.dist",
            "env",
            ".env.",
            "x.env",
            "README",
        ] {
            assert!(!secret_looking_name(no), "{no}");
        }
    }
}
