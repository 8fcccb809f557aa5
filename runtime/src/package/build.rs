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

use super::extract::Limits;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
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
}

/// The built payload.
#[derive(Debug)]
pub struct Payload {
    /// The file map for the statement.
    pub files: BTreeMap<String, FileEntry>,
    /// The tar.gz bytes.
    pub bytes: Vec<u8>,
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

/// Walk `root` and build the payload and file map.
pub fn build(root: &Path, limits: &Limits) -> Result<Payload, BuildError> {
    let mut items = Vec::new();
    walk(root, root, "", &mut items, limits)?;
    // Sort by the relative path string (the walk sorts per directory by OsString, which orders
    // "a/b" vs "a.b" differently from the file map's string order).
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let mut files = BTreeMap::new();
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
                let data =
                    crate::fileio::read_capped(path, limits.max_file_bytes).map_err(|e| {
                        BuildError::Io {
                            path: path.clone(),
                            source: std::io::Error::other(e),
                        }
                    })?;
                if stockade_trust::minisign::looks_like_secret_key(&data) {
                    return Err(BuildError::SecretKey(path.clone()));
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
    Ok(Payload { files, bytes })
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
