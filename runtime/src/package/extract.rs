//! Safe extraction of `payload.tar.gz` into a private directory (verification step 8).
//!
//! The tar crate only *reads* entries; every write is ours: directories with `mkdir` (0755),
//! files with `O_CREAT|O_EXCL|O_NOFOLLOW` and an explicit `fchmod` to the mode in the signed map,
//! symlinks with `symlink(2)` after checking the target. We never call tar's `unpack`, which
//! honours modes, ownership and link types from the archive.
//!
//! Why this is enough against path tricks without `openat2(RESOLVE_BENEATH)`: the destination is
//! a fresh directory no one else can write (0700; `run` makes it 0755 for the plugin's uid to
//! read, still writable by us alone); every parent directory of an entry is one we created in
//! this run (tracked in `dirs`), never a symlink (the signed map forbids an entry being a prefix
//! of another, and we re-check here); and the final component is created with `O_EXCL`, which
//! does not follow symlinks — or, for the one file [`reserve`] made ahead (the entrypoint `run`
//! builds the sandbox around), opened with `O_NOFOLLOW` and accepted only as that same empty
//! inode.
//!
//! Rejected (exit 87, "unsafe archive"): absolute paths, `..`, non-normalized paths, symlinks
//! leaving the tree, hardlinks, devices, FIFOs, directories and other entry types,
//! setuid/setgid/sticky bits, oversized files, too many entries, too many bytes in total, and
//! decompression bombs (decompressed bytes capped absolutely and relative to the compressed
//! size). Disagreement with the signed map (exit 86): an entry not in the map, a digest or size
//! mismatch, a missing file, or a `manifest.json` that differs from the signed manifest.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use stockade_policy::manifest::valid_relative_path;
use stockade_trust::statement::{resolve_symlink, FileEntry};

/// Extraction limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries (files + symlinks).
    pub max_entries: usize,
    /// Largest single file.
    pub max_file_bytes: u64,
    /// Most bytes of file content in total.
    pub max_total_bytes: u64,
    /// Most decompressed bytes of the tar stream (content plus headers and padding).
    pub max_decompressed_bytes: u64,
    /// Largest ratio decompressed/compressed once past `ratio_floor` bytes.
    pub max_ratio: u64,
    /// Below this many decompressed bytes the ratio is not checked (tiny tars compress well).
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: stockade_trust::statement::MAX_FILES,
            max_file_bytes: 64 * 1024 * 1024,
            max_total_bytes: 256 * 1024 * 1024,
            max_decompressed_bytes: 300 * 1024 * 1024,
            max_ratio: 200,
            ratio_floor: 1024 * 1024,
        }
    }
}

/// Why extraction stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// Absolute path.
    #[error("entry `{0}` has an absolute path")]
    AbsolutePath(String),
    /// `..` component.
    #[error("entry `{0}` contains `..`")]
    DotDot(String),
    /// Otherwise unusable path.
    #[error("entry `{0}` is not a normalized relative UTF-8 path")]
    BadPath(String),
    /// Symlink escaping the tree.
    #[error("symlink `{path}` -> `{target}` leaves the package directory")]
    SymlinkEscape {
        /// Link.
        path: String,
        /// Target.
        target: String,
    },
    /// Hardlink.
    #[error("entry `{0}` is a hard link")]
    Hardlink(String),
    /// Character or block device.
    #[error("entry `{0}` is a device node")]
    Device(String),
    /// FIFO.
    #[error("entry `{0}` is a FIFO")]
    Fifo(String),
    /// Directory or other type.
    #[error("entry `{path}` has unsupported type {kind}")]
    UnsupportedType {
        /// Entry.
        path: String,
        /// Type description.
        kind: String,
    },
    /// setuid/setgid/sticky.
    #[error("entry `{0}` has a setuid, setgid or sticky bit")]
    SpecialBits(String),
    /// A file too large.
    #[error("entry `{path}` is {size} bytes, more than {cap}")]
    Oversized {
        /// Entry.
        path: String,
        /// Size.
        size: u64,
        /// Cap.
        cap: u64,
    },
    /// Too many entries.
    #[error("more than {0} entries")]
    TooManyEntries(usize),
    /// Too many bytes in total.
    #[error("more than {0} bytes of content in total")]
    TooLarge(u64),
    /// Decompression bomb.
    #[error("decompressed stream exceeds the limit ({0})")]
    Bomb(String),
    /// Same path twice.
    #[error("entry `{0}` appears twice")]
    Duplicate(String),
    /// Tar/gzip structure broken.
    #[error("payload is not a readable tar.gz")]
    Corrupt(#[source] std::io::Error),
    /// Writing failed.
    #[error("cannot write `{path}` into the extraction directory")]
    Write {
        /// Entry.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Entry not in the signed map.
    #[error("entry `{0}` is not in the signed file map")]
    NotInMap(String),
    /// Entry type differs from the map.
    #[error("entry `{0}` has a different type than in the signed file map")]
    TypeMismatch(String),
    /// Digest or size differs.
    #[error("entry `{0}` does not match the signed digest or size")]
    DigestMismatch(String),
    /// Symlink target differs.
    #[error("symlink `{0}` does not match the signed target")]
    TargetMismatch(String),
    /// Map lists a file the payload lacks.
    #[error("`{0}` is in the signed file map but not in the payload")]
    Missing(String),
    /// `manifest.json` differs from the signed manifest.
    #[error("the payload's manifest.json differs from the signed manifest")]
    ManifestMismatch,
}

impl ExtractError {
    /// Whether this is a disagreement with the signed map (step 7, exit 86) rather than an
    /// unsafe archive (step 8, exit 87).
    pub fn is_file_map(&self) -> bool {
        matches!(
            self,
            ExtractError::NotInMap(_)
                | ExtractError::TypeMismatch(_)
                | ExtractError::DigestMismatch(_)
                | ExtractError::TargetMismatch(_)
                | ExtractError::Missing(_)
                | ExtractError::ManifestMismatch
        )
    }

    /// Whether writing the tree failed for a reason of this host, not of the package: no space,
    /// a quota, the runtime's file-size limit (`EFBIG`: `RLIMIT_FSIZE`, whose SIGXFSZ the runtime
    /// ignores, `sys::ignore_file_size_signal`), a read-only file system, an I/O error, out of
    /// descriptors or memory. The
    /// package was not judged (the same one extracts where there is room), so this is not step
    /// 8's refusal (87, "do not use this package") but an I/O error (74). A write the package
    /// itself causes (a path through one of its own files) stays 87.
    pub fn is_host_io(&self) -> bool {
        matches!(
            self,
            ExtractError::Write { source, .. } if matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG | libc::EROFS | libc::EIO
                    | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
            )
        )
    }

    /// A stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        if self.is_host_io() {
            return "extract.io";
        }
        match self {
            ExtractError::AbsolutePath(_) => "unsafe_archive.absolute_path",
            ExtractError::DotDot(_) => "unsafe_archive.dotdot",
            ExtractError::BadPath(_) => "unsafe_archive.bad_path",
            ExtractError::SymlinkEscape { .. } => "unsafe_archive.symlink_escape",
            ExtractError::Hardlink(_) => "unsafe_archive.hardlink",
            ExtractError::Device(_) => "unsafe_archive.device",
            ExtractError::Fifo(_) => "unsafe_archive.fifo",
            ExtractError::UnsupportedType { .. } => "unsafe_archive.entry_type",
            ExtractError::SpecialBits(_) => "unsafe_archive.setuid",
            ExtractError::Oversized { .. } => "unsafe_archive.oversized",
            ExtractError::TooManyEntries(_) => "unsafe_archive.too_many_entries",
            ExtractError::TooLarge(_) => "unsafe_archive.too_large",
            ExtractError::Bomb(_) => "unsafe_archive.decompression_bomb",
            ExtractError::Duplicate(_) => "unsafe_archive.duplicate",
            ExtractError::Corrupt(_) => "unsafe_archive.corrupt",
            ExtractError::Write { .. } => "unsafe_archive.write",
            ExtractError::NotInMap(_) => "file_map.not_in_map",
            ExtractError::TypeMismatch(_) => "file_map.type_mismatch",
            ExtractError::DigestMismatch(_) => "file_map.digest_mismatch",
            ExtractError::TargetMismatch(_) => "file_map.target_mismatch",
            ExtractError::Missing(_) => "file_map.missing",
            ExtractError::ManifestMismatch => "file_map.manifest_mismatch",
        }
    }
}

/// Counts decompressed bytes and fails the read once a limit is crossed, so a bomb is stopped
/// while inflating rather than after.
struct Counting<R> {
    inner: R,
    count: u64,
    cap: u64,
    tripped: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.cap {
            self.tripped = true;
            return Err(std::io::Error::other("decompression limit exceeded"));
        }
        Ok(n)
    }
}

/// Summary of a successful extraction.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Extracted {
    /// Regular files written.
    pub files: usize,
    /// Symlinks written.
    pub symlinks: usize,
    /// Content bytes written.
    pub bytes: u64,
}

fn classify_path(raw: &[u8]) -> Result<String, ExtractError> {
    let s = String::from_utf8_lossy(raw).into_owned();
    if s.starts_with('/') {
        return Err(ExtractError::AbsolutePath(s));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(ExtractError::DotDot(s));
    }
    if std::str::from_utf8(raw).is_err() || !valid_relative_path(&s) {
        return Err(ExtractError::BadPath(s));
    }
    Ok(s)
}

/// A file made empty ahead of extraction, with its parent directories, so that a launch can
/// open it while extraction runs (`stockade run` builds the sandbox meanwhile, cmd/run.rs).
/// [`extract`] writes the signed content into this same inode: it opens the path without
/// `O_CREAT`, with `O_NOFOLLOW`, and refuses it unless it is still the empty regular file made
/// here (same device and inode). Its parents count as directories this run made.
#[derive(Debug)]
pub struct Reserved {
    path: String,
    dirs: BTreeSet<String>,
    dev: u64,
    ino: u64,
    /// The read-only descriptor `reserve` created it with keeps the inode alive, so its number
    /// cannot be reused by another file (it is no writer: exec is not refused with `ETXTBSY`).
    _pin: std::fs::File,
}

impl Reserved {
    /// The entry's path, relative to the extraction directory.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Make `path` (a normalized relative path) under `dest` (the fresh, empty extraction
/// directory) an empty 0600 file, creating its parents as extraction would.
pub fn reserve(dest: &Path, path: &str) -> Result<Reserved, ExtractError> {
    let path = classify_path(path.as_bytes())?;
    let mut dirs = BTreeSet::new();
    make_parents(Some(dest), &path, &mut dirs, &BTreeSet::new())?;
    // One open creates the file (0600) and keeps it: read-only, so no writer that would make
    // its exec fail with `ETXTBSY`, and holding the inode so that its number is not reused.
    let pinned = std::ffi::CString::new(dest.join(&path).into_os_string().into_encoded_bytes())
        .map_err(std::io::Error::other)
        .and_then(|c| {
            crate::sys::open(
                &c,
                libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            )
        })
        .map(std::fs::File::from)
        .and_then(|pin| Ok((pin.metadata()?, pin)));
    let (m, pin) = pinned.map_err(|source| ExtractError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Reserved {
        path,
        dirs,
        dev: m.dev(),
        ino: m.ino(),
        _pin: pin,
    })
}

/// The file an entry's content goes to: a new one (`O_EXCL`, so never through a symlink or over
/// anything), or the one [`reserve`] made for it.
fn create(dest: &Path, path: &str, reserved: Option<&Reserved>) -> std::io::Result<std::fs::File> {
    let mut o = OpenOptions::new();
    o.write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    let Some(r) = reserved.filter(|r| r.path == path) else {
        return o.create_new(true).mode(0o600).open(dest.join(path));
    };
    let f = o.open(dest.join(path))?;
    let md = f.metadata()?;
    if (md.dev(), md.ino()) != (r.dev, r.ino) || !md.is_file() || md.len() != 0 {
        return Err(std::io::Error::other(
            "the file reserved for this entry is no longer the empty file made for it",
        ));
    }
    Ok(f)
}

/// Extract `payload` (tar.gz) into `dest` (an existing, private directory, empty but for what
/// `reserved` made), checking every entry against `map` and `manifest_canonical` (the canonical
/// bytes of the signed manifest). `dest` `None`: every check, nothing written (the conflicts a
/// write would meet — duplicates, an entry below a file or symlink — are refused from the
/// bookkeeping alone, as they are before any write when `dest` is given).
pub fn extract(
    payload: &[u8],
    map: &BTreeMap<String, FileEntry>,
    manifest_canonical: &[u8],
    dest: Option<&Path>,
    reserved: Option<&Reserved>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let ratio_cap = (payload.len() as u64)
        .saturating_mul(limits.max_ratio)
        .max(limits.ratio_floor);
    let cap = limits.max_decompressed_bytes.min(ratio_cap);
    let counting = Counting {
        inner: flate2::read::GzDecoder::new(payload),
        count: 0,
        cap,
        tripped: false,
    };
    let mut archive = tar::Archive::new(counting);
    let result = extract_entries(
        &mut archive,
        map,
        manifest_canonical,
        dest,
        reserved,
        limits,
    );
    let counting = archive.into_inner();
    if counting.tripped {
        return Err(ExtractError::Bomb(format!(
            "more than {cap} decompressed bytes from {} compressed",
            payload.len()
        )));
    }
    result
}

fn extract_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    map: &BTreeMap<String, FileEntry>,
    manifest_canonical: &[u8],
    dest: Option<&Path>,
    reserved: Option<&Reserved>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let mut dirs: BTreeSet<String> = reserved.map(|r| r.dirs.clone()).unwrap_or_default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut summary = Extracted {
        files: 0,
        symlinks: 0,
        bytes: 0,
    };
    for entry in archive.entries().map_err(ExtractError::Corrupt)? {
        let mut entry = entry.map_err(ExtractError::Corrupt)?;
        if seen.len() >= limits.max_entries {
            return Err(ExtractError::TooManyEntries(limits.max_entries));
        }
        let path = classify_path(&entry.path_bytes())?;
        let header = entry.header();
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Symlink => {}
            tar::EntryType::Link => return Err(ExtractError::Hardlink(path)),
            tar::EntryType::Char | tar::EntryType::Block => return Err(ExtractError::Device(path)),
            tar::EntryType::Fifo => return Err(ExtractError::Fifo(path)),
            other => {
                return Err(ExtractError::UnsupportedType {
                    path,
                    kind: format!("{other:?}"),
                })
            }
        }
        let mode = header.mode().map_err(ExtractError::Corrupt)?;
        if mode & 0o7000 != 0 {
            return Err(ExtractError::SpecialBits(path));
        }
        if !seen.insert(path.clone()) {
            return Err(ExtractError::Duplicate(path));
        }
        // An entry where an earlier one's parent directory was made (a write would meet the
        // directory; refused here so that checking without writing refuses it too).
        if dirs.contains(&path) {
            return Err(ExtractError::BadPath(path));
        }
        make_parents(dest, &path, &mut dirs, &seen)?;
        let wr = |p: &str| {
            let p = p.to_string();
            move |source| ExtractError::Write { path: p, source }
        };
        if kind == tar::EntryType::Symlink {
            let target_raw = entry
                .link_name_bytes()
                .map(|b| b.into_owned())
                .unwrap_or_default();
            let target = String::from_utf8_lossy(&target_raw).into_owned();
            if std::str::from_utf8(&target_raw).is_err()
                || resolve_symlink(&path, &target).is_none()
            {
                return Err(ExtractError::SymlinkEscape { path, target });
            }
            match map.get(&path) {
                None => return Err(ExtractError::NotInMap(path)),
                Some(FileEntry::File { .. }) => return Err(ExtractError::TypeMismatch(path)),
                Some(FileEntry::Symlink { target: t }) if *t != target => {
                    return Err(ExtractError::TargetMismatch(path))
                }
                Some(FileEntry::Symlink { .. }) => {}
            }
            if let Some(dest) = dest {
                std::os::unix::fs::symlink(&target, dest.join(&path)).map_err(wr(&path))?;
            }
            summary.symlinks += 1;
            continue;
        }
        // `Entry::size` is the effective size (a PAX `size` record overrides the header), which is
        // what the reader will yield; checking the header field alone could be bypassed.
        let size = entry.size();
        if size > limits.max_file_bytes {
            return Err(ExtractError::Oversized {
                path,
                size,
                cap: limits.max_file_bytes,
            });
        }
        summary.bytes += size;
        if summary.bytes > limits.max_total_bytes {
            return Err(ExtractError::TooLarge(limits.max_total_bytes));
        }
        let (want_mode, want_sha, want_size) = match map.get(&path) {
            None => return Err(ExtractError::NotInMap(path)),
            Some(FileEntry::Symlink { .. }) => return Err(ExtractError::TypeMismatch(path)),
            Some(FileEntry::File { mode, sha256, size }) => (*mode, *sha256, *size),
        };
        if size != want_size {
            return Err(ExtractError::DigestMismatch(path));
        }
        let mut f = match dest {
            Some(dest) => Some(create(dest, &path, reserved).map_err(wr(&path))?),
            None => None,
        };
        let mut hasher = Sha256::new();
        let mut manifest_bytes = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let mut written = 0u64;
        let mut limited = (&mut entry).take(size);
        loop {
            let n = limited.read(&mut buf).map_err(ExtractError::Corrupt)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if path == "manifest.json" {
                manifest_bytes.extend_from_slice(&buf[..n]);
            }
            if let Some(f) = f.as_mut() {
                f.write_all(&buf[..n]).map_err(wr(&path))?;
            }
            written += n as u64;
        }
        if written != size || <[u8; 32]>::from(hasher.finalize()) != want_sha {
            return Err(ExtractError::DigestMismatch(path));
        }
        if let Some(f) = &f {
            f.set_permissions(std::fs::Permissions::from_mode(want_mode))
                .map_err(wr(&path))?;
        }
        if path == "manifest.json" && !same_manifest(&manifest_bytes, manifest_canonical) {
            return Err(ExtractError::ManifestMismatch);
        }
        summary.files += 1;
    }
    if let Some(missing) = map.keys().find(|k| !seen.contains(*k)) {
        return Err(ExtractError::Missing(missing.clone()));
    }
    Ok(summary)
}

/// Whether `bytes` (a `manifest.json` read from a payload or a kept tree) is the signed manifest
/// (`canonical`: its canonical bytes).
pub fn same_manifest(bytes: &[u8], canonical: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| stockade_trust::canonical::to_vec(&v).ok())
        .is_some_and(|c| c == canonical)
}

/// Create the parent directories of `path` under `dest`, each exactly once, refusing a parent
/// that is an entry we already wrote (a file or symlink).
fn make_parents(
    dest: Option<&Path>,
    path: &str,
    dirs: &mut BTreeSet<String>,
    seen: &BTreeSet<String>,
) -> Result<(), ExtractError> {
    let comps: Vec<&str> = path.split('/').collect();
    let mut prefix = String::new();
    for c in &comps[..comps.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(c);
        if dirs.contains(&prefix) {
            continue;
        }
        if seen.contains(&prefix) {
            return Err(ExtractError::BadPath(path.to_string()));
        }
        let Some(dest) = dest else {
            dirs.insert(prefix.clone());
            continue;
        };
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dest.join(&prefix))
            .map_err(|source| ExtractError::Write {
                path: prefix.clone(),
                source,
            })?;
        // Fix the mode regardless of the umask.
        std::fs::set_permissions(dest.join(&prefix), std::fs::Permissions::from_mode(0o755))
            .map_err(|source| ExtractError::Write {
                path: prefix.clone(),
                source,
            })?;
        dirs.insert(prefix.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    fn map(files: &[(&str, &[u8])]) -> BTreeMap<String, FileEntry> {
        files
            .iter()
            .map(|(n, d)| {
                (
                    n.to_string(),
                    FileEntry::File {
                        mode: 0o644,
                        sha256: Sha256::digest(d).into(),
                        size: d.len() as u64,
                    },
                )
            })
            .collect()
    }

    /// Extract into a fresh directory and check without writing: both must reach the same
    /// verdict (the same error variant, or the same summary).
    fn run(files: &[(&str, &[u8])], limits: Limits) -> Result<Extracted, ExtractError> {
        let d = tempfile::tempdir().unwrap();
        let (payload, m) = (tar_gz(files), map(files));
        let written = extract(&payload, &m, b"", Some(d.path()), None, &limits);
        let checked = extract(&payload, &m, b"", None, None, &limits);
        match (&written, &checked) {
            (Ok(a), Ok(b)) => assert_eq!((a.files, a.bytes), (b.files, b.bytes)),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{a} / {b}"
            ),
            _ => panic!("written {written:?}, checked {checked:?}"),
        }
        if checked.is_ok() {
            assert!(std::fs::read_dir(d.path()).unwrap().next().is_some());
        }
        written
    }

    #[test]
    fn an_entry_where_a_directory_was_made_is_refused_written_or_not() {
        let files: &[(&str, &[u8])] = &[("a/b", b"x"), ("a", b"y")];
        assert!(matches!(
            run(files, Limits::default()),
            Err(ExtractError::BadPath(p)) if p == "a"
        ));
    }

    #[test]
    fn checking_writes_nothing() {
        let files: &[(&str, &[u8])] = &[("a/b/c.txt", b"hi"), ("a/d", b"x")];
        let s = extract(
            &tar_gz(files),
            &map(files),
            b"",
            None,
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((s.files, s.bytes), (2, 3));
        // A wrong digest is still found.
        let mut m = map(files);
        m.insert(
            "a/d".into(),
            FileEntry::File {
                mode: 0o644,
                sha256: [0; 32],
                size: 1,
            },
        );
        assert!(matches!(
            extract(&tar_gz(files), &m, b"", None, None, &Limits::default()),
            Err(ExtractError::DigestMismatch(p)) if p == "a/d"
        ));
    }

    #[test]
    fn extracts_with_fixed_modes_and_nested_dirs() {
        let d = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("a/b/c.txt", b"hi"), ("a/d", b"x")];
        let s = extract(
            &tar_gz(files),
            &map(files),
            b"",
            Some(d.path()),
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((s.files, s.bytes), (2, 3));
        assert_eq!(std::fs::read(d.path().join("a/b/c.txt")).unwrap(), b"hi");
        let m = std::fs::metadata(d.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(m, 0o755);
    }

    #[test]
    fn limits_are_enforced() {
        let files: &[(&str, &[u8])] = &[("a", b"12345"), ("b", b"67890")];
        let small = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        assert!(matches!(
            run(files, small(|l| l.max_entries = 1)),
            Err(ExtractError::TooManyEntries(1))
        ));
        assert!(matches!(
            run(files, small(|l| l.max_file_bytes = 4)),
            Err(ExtractError::Oversized { .. })
        ));
        assert!(matches!(
            run(files, small(|l| l.max_total_bytes = 9)),
            Err(ExtractError::TooLarge(9))
        ));
        assert!(matches!(
            run(
                files,
                small(|l| {
                    l.max_decompressed_bytes = 1024;
                })
            ),
            Err(ExtractError::Bomb(_))
        ));
        let zeros = vec![0u8; 200_000];
        let big: &[(&str, &[u8])] = &[("z", &zeros)];
        assert!(matches!(
            run(
                big,
                small(|l| {
                    l.ratio_floor = 0;
                    l.max_ratio = 10;
                })
            ),
            Err(ExtractError::Bomb(_))
        ));
        assert!(run(big, Limits::default()).is_ok());
    }

    #[test]
    fn paths_are_classified() {
        assert!(matches!(
            classify_path(b"/etc/x"),
            Err(ExtractError::AbsolutePath(_))
        ));
        assert!(matches!(
            classify_path(b"a/../b"),
            Err(ExtractError::DotDot(_))
        ));
        assert!(matches!(
            classify_path(b"a//b"),
            Err(ExtractError::BadPath(_))
        ));
        assert!(matches!(
            classify_path(b"./a"),
            Err(ExtractError::BadPath(_))
        ));
        assert!(matches!(
            classify_path(b"\xff"),
            Err(ExtractError::BadPath(_))
        ));
        assert_eq!(classify_path(b"a/b").unwrap(), "a/b");
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let r = extract(
            b"\x1f\x8bnot gzip",
            &BTreeMap::new(),
            b"",
            Some(d.path()),
            None,
            &Limits::default(),
        );
        assert!(matches!(
            r,
            Err(ExtractError::Corrupt(_)) | Err(ExtractError::Bomb(_))
        ));
    }

    fn into_reserved(
        files: &[(&str, &[u8])],
        m: &BTreeMap<String, FileEntry>,
        dest: &Path,
        r: &Reserved,
    ) -> Result<Extracted, ExtractError> {
        extract(
            &tar_gz(files),
            m,
            b"",
            Some(dest),
            Some(r),
            &Limits::default(),
        )
    }

    #[test]
    fn a_reserved_file_receives_its_content_in_place() {
        let d = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("bin/tool", b"\x7fELF..."), ("bin/x", b"y")];
        let r = reserve(d.path(), "bin/tool").unwrap();
        let before = std::fs::metadata(d.path().join("bin/tool")).unwrap();
        assert_eq!(
            (before.len(), before.permissions().mode() & 0o777),
            (0, 0o600)
        );
        let s = into_reserved(files, &map(files), d.path(), &r).unwrap();
        assert_eq!((s.files, s.bytes), (2, 8));
        let after = std::fs::metadata(d.path().join("bin/tool")).unwrap();
        assert_eq!(after.ino(), before.ino(), "written into the reserved inode");
        assert_eq!(after.permissions().mode() & 0o777, 0o644, "the signed mode");
        assert_eq!(
            std::fs::read(d.path().join("bin/tool")).unwrap(),
            b"\x7fELF..."
        );
    }

    #[test]
    fn a_reserved_file_that_changed_is_refused() {
        let files: &[(&str, &[u8])] = &[("tool", b"content")];
        // Replaced by another file (another inode), or no longer empty.
        for tamper in [
            |p: &Path| {
                std::fs::remove_file(p).unwrap();
                std::fs::write(p, b"").unwrap();
            },
            |p: &Path| std::fs::write(p, b"x").unwrap(),
        ] {
            let d = tempfile::tempdir().unwrap();
            let r = reserve(d.path(), "tool").unwrap();
            tamper(&d.path().join("tool"));
            let e = into_reserved(files, &map(files), d.path(), &r);
            assert!(
                matches!(e, Err(ExtractError::Write { ref path, .. }) if path == "tool"),
                "{e:?}"
            );
        }
        // Replaced by a symlink: O_NOFOLLOW refuses it before anything is written through it.
        let d = tempfile::tempdir().unwrap();
        let r = reserve(d.path(), "tool").unwrap();
        std::fs::remove_file(d.path().join("tool")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("tool")).unwrap();
        let e = into_reserved(files, &map(files), d.path(), &r);
        assert!(matches!(e, Err(ExtractError::Write { .. })), "{e:?}");
        // The path is checked like an archive's.
        assert!(matches!(
            reserve(d.path(), "../x"),
            Err(ExtractError::DotDot(_))
        ));
    }

    #[test]
    fn a_reserved_file_the_payload_lacks_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("a", b"1")];
        let mut m = map(files);
        m.insert(
            "tool".into(),
            FileEntry::File {
                mode: 0o755,
                sha256: Sha256::digest(b"").into(),
                size: 0,
            },
        );
        let r = reserve(d.path(), "tool").unwrap();
        let e = into_reserved(files, &m, d.path(), &r);
        assert!(
            matches!(e, Err(ExtractError::Missing(ref p)) if p == "tool"),
            "{e:?}"
        );
    }
}
