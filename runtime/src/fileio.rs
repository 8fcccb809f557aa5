//! The three ways Stockade reads and writes its own files, each with the property that matters:
//!
//! - [`read_capped`]: open once, `fstat` the same descriptor, read at most a cap. Package bytes
//!   are read through one fd and never re-opened, so what is verified is what is used.
//! - [`create_exclusive`]: `O_CREAT|O_EXCL` with the final mode given to `open(2)`, for secret
//!   keys: a key file is never, even briefly, readable by others (the `fchmod` after the create
//!   only puts back what the umask took off, for the files other users must read).
//!
//! Every file and directory made here has the mode asked for, not that mode less the umask:
//! root's CLI writes into the daemon's state directory, and a hardened root umask (027, 077)
//! would otherwise leave files there that the daemon cannot read.
//! - [`write_atomic`]: temp file in the same directory, `fsync`, `rename`, `fsync` the
//!   directory: readers see the old file or the new one, never a torn one.
//!   [`write_atomic_new`] is the same for a file that must not exist yet (an issued certificate,
//!   a signed package): the temp file is linked into place only if the name is free, so an
//!   existing file is never replaced, even by a race.
//! - [`HeldDir`]: a directory of the state directory that this process writes and removes
//!   things in, opened without following a symlink, checked to be changeable by no one else,
//!   and reached through its descriptor from then on (the state directory itself may belong to
//!   the daemon's user, who could otherwise swap the directory for a symlink under root's feet).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Opening or reading failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than allowed.
    #[error("{} is {size} bytes, more than the {cap}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Not a regular file.
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// Creating or writing failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file read by [`read_owned`] that someone else could have put there or could change: a
    /// symlink, not a regular file, another link to it, another user's, writable by others.
    #[error("{} {why}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl FileError {
    /// Whether the underlying cause is "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
    /// Whether the underlying cause is "already exists".
    pub fn is_exists(&self) -> bool {
        matches!(self, FileError::Write { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
    }

    /// The same error, naming `shown` as the file: for a file reached through a held
    /// directory's descriptor, whose error would otherwise name `/proc/self/fd/N/…`
    /// ([`HeldPath::shown`]).
    pub fn shown_as(mut self, shown: &Path) -> Self {
        match &mut self {
            FileError::Read { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::NotRegular { path }
            | FileError::Write { path, .. }
            | FileError::Unsafe { path, .. } => *path = shown.to_path_buf(),
        }
        self
    }
}

/// Read a whole regular file through one descriptor, refusing more than `cap` bytes. Opened
/// without blocking (`O_NONBLOCK`): a FIFO given as a package or policy would otherwise hang the
/// open until a writer came — in `serve`, the whole daemon — before its type could be refused.
/// (The flag changes nothing for the regular files read.)
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let rd = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(rd)?;
    let meta = file.metadata().map_err(rd)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    read_all_capped(path, file, meta.len(), cap)
}

/// [`read_capped`] for a file whose contents this process trusts because of who could have
/// written it: opened without following a symlink at its name, and read only if it is a regular
/// file of one link, belonging to this process's user, root or `also`, and writable by no one
/// else ([`FileError::Unsafe`] otherwise). For configuration kept in a directory another user
/// owns (`/var/lib/stockade` is the daemon's user's): that user can put any file at the name,
/// but not one of root's that says what it wants — a hard link would be one (where
/// `fs.protected_hardlinks` is 0), hence the link count. The checks are of the descriptor read.
pub fn read_owned(path: &Path, cap: u64, also: Option<u32>) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_ = |why: String| FileError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    let rd = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => unsafe_("is a symlink".into()),
            _ => rd(e),
        })?;
    let md = file.metadata().map_err(rd)?;
    let me = nix::unistd::geteuid().as_raw();
    let why = if !md.is_file() {
        "is not a regular file".to_string()
    } else if md.nlink() != 1 {
        "has another link (a hard link to it elsewhere)".to_string()
    } else if md.uid() != me && md.uid() != 0 && Some(md.uid()) != also {
        format!(
            "belongs to uid {}, neither this user ({me}) nor root",
            md.uid()
        )
    } else if md.mode() & 0o022 != 0 {
        format!(
            "is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        )
    } else {
        return read_all_capped(path, file, md.len(), cap);
    };
    Err(unsafe_(why))
}

/// The rest of a capped read, on a file already opened and checked.
fn read_all_capped(path: &Path, file: File, len: u64, cap: u64) -> Result<Vec<u8>, FileError> {
    if len > cap {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: len,
            cap,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow between fstat and read; the cap on the read itself is what counts.
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > cap {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            cap,
        });
    }
    Ok(buf)
}

/// Create `path` with `O_EXCL` at exactly `mode` (the umask does not apply), write `bytes`,
/// fsync. Fails if it exists.
pub fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let wr = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(wr)?;
    // `open` took the umask off `mode` (which can only remove bits: a key stays 0600 at most);
    // set it exactly on the descriptor, or a package root stores under umask 077 would be 0600
    // and the daemon, another user, could not read it.
    let result = f
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(wr(e));
    }
    Ok(())
}

/// Replace `path` atomically with `bytes` at `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], but fails with `AlreadyExists` ([`FileError::is_exists`]) when `path`
/// exists, leaving it untouched.
pub fn write_atomic_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    write_atomic_inner(path, bytes, mode, None, false)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), FileError> {
    write_atomic_inner(path, bytes, mode, owner, true)
}

fn write_atomic_inner(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    replace: bool,
) -> Result<(), FileError> {
    reserve(path, mode)?.commit(bytes, Some(mode), owner, replace)
}

/// A file to be written atomically whose temporary file already exists in its directory
/// ([`reserve`]): a path that cannot be written fails at the reservation, before whatever
/// produces the contents runs (`exec --report`), and the path appears only complete
/// ([`Reserved::commit`]). Dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub struct Reserved {
    path: PathBuf,
    dir: PathBuf,
    tmp: tempfile::NamedTempFile,
}

/// Reserve `path`: create its temporary file (`mode` less the umask) in its directory.
pub fn reserve(path: &Path, mode: u32) -> Result<Reserved, FileError> {
    let dir = parent_dir(path);
    // Opened here rather than by `tempfile_in`, which appends the temporary file's path to the
    // error ("… at path …"): through a held directory that is a `/proc/self/fd/N/…` the reader
    // cannot use, and the error names `path` already.
    let tmp = tempfile::Builder::new()
        .prefix(".stockade-tmp-")
        .make_in(&dir, |tmp| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_CLOEXEC)
                .open(tmp)
        })
        .map_err(|source| FileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Reserved {
        path: path.to_path_buf(),
        dir,
        tmp,
    })
}

impl Reserved {
    /// Write `bytes`, set the exact `mode` (else the umask's) and `owner` when given, fsync,
    /// rename into place (over an existing file only when `replace`), fsync the directory.
    pub fn commit(
        mut self,
        bytes: &[u8],
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
        replace: bool,
    ) -> Result<(), FileError> {
        let path = self.path;
        let wr = |source| FileError::Write {
            path: path.clone(),
            source,
        };
        // Through the file, not the `NamedTempFile`: its writes append the temporary path.
        self.tmp.as_file_mut().write_all(bytes).map_err(wr)?;
        if let Some(mode) = mode {
            // tempfile's mode is filtered by the umask; set it on the descriptor: exact.
            self.tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(wr)?;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(self.tmp.as_file(), Some(uid), Some(gid)).map_err(wr)?;
        }
        self.tmp.as_file().sync_all().map_err(wr)?;
        if replace {
            self.tmp.persist(&path).map_err(|e| wr(e.error))?;
        } else {
            self.tmp.persist_noclobber(&path).map_err(|e| wr(e.error))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(wr)?;
        Ok(())
    }
}

/// A directory `NAME` of a parent directory, opened (created first, at `mode`, if asked)
/// without following a symlink at `NAME`, and accepted only if it belongs to this process's
/// user or to root and nobody else may write it. From then on it is reached through its
/// descriptor ([`HeldDir::path`], `/proc/self/fd/N`), so renaming or replacing `NAME` in the
/// parent — which another user may own: `/var/lib/stockade` belongs to the daemon's user, and
/// root's CLI works in it — changes nothing this process writes or removes. Without it, a
/// `store` that was a symlink (or became one between a check and a use) made root's
/// `stockade list` remove every directory tree it pointed at. The kept trees' anchor
/// (package/trees.rs) is the same idea with a stricter owner rule.
#[derive(Debug)]
pub struct HeldDir {
    fd: std::os::fd::OwnedFd,
    shown: PathBuf,
}

/// Why a directory cannot be held ([`HeldDir::open`]).
#[derive(Debug, thiserror::Error)]
pub enum HeldDirError {
    /// Creating, opening or checking it failed.
    #[error("cannot open {}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error (ELOOP/ENOTDIR: a symlink or not a directory).
        #[source]
        source: std::io::Error,
    },
    /// It is a directory someone else could change.
    #[error("{} {why}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl HeldDir {
    /// Open `parent/name` as described on [`HeldDir`]; `create`: make it first at this mode
    /// when missing — exactly this mode, whatever the umask — (an existing entry of that name
    /// is then opened and checked like any, its mode left as it is).
    pub fn open(parent: &Path, name: &str, create: Option<u32>) -> Result<Self, HeldDirError> {
        Self::open_as(parent, parent.join(name), name, create, true)
    }

    /// [`HeldDir::open`] for `name` inside this held directory (reached through it).
    pub fn open_child(&self, name: &str, create: Option<u32>) -> Result<Self, HeldDirError> {
        Self::open_as(&self.path(), self.shown.join(name), name, create, true)
    }

    /// [`HeldDir::open`] without the owner rule, for a directory the daemon's user may own (the
    /// index cache, which the refresh timer writes as that user) and in which this process only
    /// replaces whole files by rename ([`write_state_file`]): a rename replaces a symlink at the
    /// name rather than following it, so all that must not be followed is `NAME` itself. Opened
    /// by root in a parent another user owns, it is handed to that user (made, or found root's).
    pub fn open_shared(
        parent: &Path,
        name: &str,
        create: Option<u32>,
    ) -> Result<Self, HeldDirError> {
        Self::open_as(parent, parent.join(name), name, create, false)
    }

    fn open_as(
        parent: &Path,
        shown: PathBuf,
        name: &str,
        create: Option<u32>,
        owner_rule: bool,
    ) -> Result<Self, HeldDirError> {
        use nix::fcntl::{openat, OFlag};
        use nix::sys::stat::{fstat, mkdirat, Mode};
        let fail = |e: nix::errno::Errno| HeldDirError::Io {
            path: shown.clone(),
            source: e.into(),
        };
        // The parent is the caller's (the state directory as given: it may be a symlink).
        let parent_fd = nix::fcntl::open(
            parent,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail)?;
        let mut created = None;
        if let Some(mode) = create {
            match mkdirat(&parent_fd, name, Mode::from_bits_truncate(mode)) {
                Ok(()) => created = Some(mode),
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        let fd = openat(
            &parent_fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => HeldDirError::Unsafe {
                path: shown.clone(),
                why: "is a symlink or not a directory".into(),
            },
            e => fail(e),
        })?;
        let st = fstat(&fd).map_err(fail)?;
        let me = nix::unistd::geteuid().as_raw();
        if owner_rule && st.st_uid != me && st.st_uid != 0 {
            return Err(HeldDirError::Unsafe {
                path: shown,
                why: format!(
                    "belongs to uid {}, neither this user ({me}) nor root",
                    st.st_uid
                ),
            });
        }
        if owner_rule && st.st_mode & 0o022 != 0 {
            return Err(HeldDirError::Unsafe {
                path: shown,
                why: format!(
                    "is writable by group or others (mode {:o})",
                    st.st_mode & 0o7777
                ),
            });
        }
        // A shared directory (the index cache) is the state directory owner's, whoever made it:
        // root's `source add` in the service user's state directory made it root's 0700, and
        // every refresh the timer runs as that user then failed (74). Through the descriptor:
        // nothing at the name can be swapped in between.
        if !owner_rule && me == 0 && st.st_uid == 0 {
            let parent_st = fstat(&parent_fd).map_err(fail)?;
            if parent_st.st_uid != 0 {
                nix::unistd::fchown(
                    &fd,
                    Some(parent_st.st_uid.into()),
                    Some(parent_st.st_gid.into()),
                )
                .map_err(fail)?;
            }
        }
        if let Some(mode) = created.filter(|_| st.st_uid == me) {
            // `mkdirat` takes the umask off the mode: root's CLI under a hardened umask (027,
            // 077) made `store/` and `store/plugins/` 0750 root's, and the daemon, another
            // user, could no longer read the registry. The mode asked for, exactly, through
            // the descriptor (never a directory this process did not just make).
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(fail)?;
        }
        let held = Self { fd, shown };
        // The descriptor's path must lead to the very directory (no /proc, or a foreign one,
        // would send every later path elsewhere).
        let via = std::fs::metadata(held.path()).map_err(|source| HeldDirError::Io {
            path: held.shown.clone(),
            source,
        })?;
        {
            use std::os::unix::fs::MetadataExt;
            if (via.dev(), via.ino()) != (st.st_dev, st.st_ino) {
                return Err(HeldDirError::Unsafe {
                    path: held.shown.clone(),
                    why: "cannot be reached through its descriptor (is /proc mounted?)".into(),
                });
            }
        }
        Ok(held)
    }

    /// The directory through its descriptor (`/proc/self/fd/N`): for every operation.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The path it was opened as: for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The same directory, shown as its parent's canonical path (absolute, no symlink) and its
    /// name, so that what is printed reads the same from any working directory; as before when
    /// the parent cannot be resolved. For messages only: nothing is reached through it.
    pub fn canonical_shown(mut self) -> Self {
        if let (Ok(parent), Some(name)) = (
            std::fs::canonicalize(parent_dir(&self.shown)),
            self.shown.file_name(),
        ) {
            self.shown = parent.join(name);
        }
        self
    }

    /// The directory itself as a [`HeldPath`].
    pub fn at(&self) -> HeldPath {
        HeldPath {
            path: self.path(),
            shown: self.shown.clone(),
        }
    }

    /// `name` inside the directory, reached through its descriptor ([`HeldPath`]).
    pub fn join(&self, name: impl AsRef<Path>) -> HeldPath {
        self.at().join(name)
    }
}

/// A path inside a [`HeldDir`], twice: [`HeldPath::path`] goes through the directory's
/// descriptor, for every operation; [`HeldPath::shown`] is the same place under the path the
/// directory was opened as, for every message — a `/proc/self/fd/N/…` tells whoever reads it
/// nothing (least of all once this process has exited). Keeping both together is what keeps an
/// error from naming the one meant for the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPath {
    path: PathBuf,
    shown: PathBuf,
}

impl HeldPath {
    /// Through the held directory's descriptor: for every operation.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Under the held directory's shown path: for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// `name` below this path (a plain name or a relative path: an absolute one would leave
    /// the held directory).
    pub fn join(&self, name: impl AsRef<Path>) -> Self {
        let name = name.as_ref();
        debug_assert!(name.is_relative(), "{}", name.display());
        Self {
            path: self.path.join(name),
            shown: self.shown.join(name),
        }
    }
}

/// [`write_atomic`] for a file in the state directory: when root writes it (an admin's
/// `stockade node license install`, `stockade install`), the file takes the owner and group of
/// the directory it lands in (set before the rename, so the daemon never sees it root-owned), so
/// the daemon — which the shipped unit runs as `stockade`, owner of `/var/lib/stockade` — can
/// still read and replace it. Anyone else writes as themselves.
pub fn write_state_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let owner = if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(parent_dir(path)).map_err(|source| FileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Some((md.uid(), md.gid()))
    } else {
        None
    };
    write_atomic_owned(path, bytes, mode, owner)
}

/// Refuse an opened file that is not a regular file of one link (`InvalidData`): for a file
/// opened at a name in a directory another user may change (the audit log in the daemon's
/// `/var/log/stockade`), where a FIFO or device would block or misbehave and a hard link to
/// some other file — possible where `fs.protected_hardlinks` is 0 — would have root write to,
/// or hand over, that file.
pub fn single_regular(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = f.metadata()?;
    let why = if !md.is_file() {
        "is not a regular file"
    } else if md.nlink() != 1 {
        "has another link (a hard link to it elsewhere): refusing to write to it"
    } else {
        return Ok(());
    };
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}

/// For a file root just created in a directory someone else owns (the audit log in
/// `/var/log/stockade`, which the daemon writes as `stockade`): hand it to the directory's owner,
/// so root's CLI and the daemon can keep appending to the same file. No-op for anyone but root,
/// and for a file that is not root's; refused ([`single_regular`]) for anything but a regular
/// file of one link, so a planted hard link never gives another file of root's away.
pub fn adopt_dir_owner(f: &File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() || f.metadata()?.uid() != 0 {
        return Ok(());
    }
    single_regular(f)?;
    let md = std::fs::metadata(parent_dir(path))?;
    if md.uid() == 0 && md.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(f, Some(md.uid()), Some(md.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_read_exclusive_create_atomic_replace() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        create_exclusive(&p, b"secret", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(create_exclusive(&p, b"x", 0o600).unwrap_err().is_exists());
        assert_eq!(read_capped(&p, 6).unwrap(), b"secret");
        assert!(matches!(
            read_capped(&p, 5),
            Err(FileError::TooLarge { .. })
        ));
        assert!(read_capped(&d.path().join("nope"), 5)
            .unwrap_err()
            .is_not_found());
        assert!(matches!(
            read_capped(d.path(), 5),
            Err(FileError::NotRegular { .. })
        ));
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(read_capped(&p, 3).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        // A new file: written when the name is free, never over an existing one.
        assert!(write_atomic_new(&p, b"other", 0o644)
            .unwrap_err()
            .is_exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let q = d.path().join("fresh");
        write_atomic_new(&q, b"fresh", 0o644).unwrap();
        assert_eq!(std::fs::read(&q).unwrap(), b"fresh");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    /// A write that fails names the file, and only the file: `tempfile` appends the temporary
    /// file's path to its errors ("… at path …"), which through a held directory is a
    /// `/proc/self/fd/N/…` path; a held directory's file is named by its shown path.
    #[test]
    fn a_failed_write_names_the_file_not_a_temporary_or_a_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let text = |e: FileError| format!("{e}: {}", std::error::Error::source(&e).unwrap());
        let p = d.path().join("missing/f");
        let e = text(write_atomic(&p, b"x", 0o644).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!e.contains(".stockade-tmp-"), "{e}");
        std::fs::create_dir(d.path().join("held")).unwrap();
        let held = HeldDir::open(d.path(), "held", None).unwrap();
        let at = held.join("missing/f");
        assert!(at.path().starts_with("/proc/self/fd/"));
        let e = write_state_file(at.path(), b"x", 0o644).unwrap_err();
        let e = text(e.shown_as(at.shown()));
        assert!(
            e.contains(&d.path().join("held/missing/f").display().to_string()),
            "{e}"
        );
        assert!(
            !e.contains("/proc/self/fd") && !e.contains(".stockade-tmp-"),
            "{e}"
        );
    }

    /// What [`read_owned`] refuses, each as [`FileError::Unsafe`] saying why, without following
    /// or waiting: a symlink (to a good file), a FIFO, a second link, a file others may write.
    #[test]
    fn read_owned_takes_only_a_plain_file_no_one_else_can_change() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good");
        std::fs::write(&good, b"{}").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_owned(&good, 2, None).unwrap(), b"{}");
        assert!(matches!(
            read_owned(&good, 1, None),
            Err(FileError::TooLarge { .. })
        ));
        assert!(read_owned(&d.path().join("absent"), 2, None)
            .unwrap_err()
            .is_not_found());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let second = d.path().join("second");
        std::fs::write(&second, b"{}").unwrap();
        std::fs::hard_link(&second, d.path().join("second-link")).unwrap();
        let open = d.path().join("open");
        std::fs::write(&open, b"{}").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o664)).unwrap();
        for (p, why) in [
            (&link, "symlink"),
            (&fifo, "not a regular file"),
            (&second, "another link"),
            (&open, "writable by group or others"),
        ] {
            match read_owned(p, 1 << 20, None) {
                Err(e @ FileError::Unsafe { .. }) => {
                    assert!(e.to_string().contains(why), "{e}");
                    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
                }
                r => panic!("{}: {r:?}", p.display()),
            }
        }
    }

    /// A FIFO is refused at once, not waited on for a writer (the read runs on a thread so a
    /// regression fails here instead of hanging the test run).
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pkg.stockade");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || tx.send(read_capped(&q, 1 << 20)).unwrap());
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(r) => assert!(matches!(r, Err(FileError::NotRegular { .. })), "{r:?}"),
            Err(_) => {
                // Unblock the stuck open so the thread ends, then fail.
                let _ = std::fs::OpenOptions::new().write(true).open(&p);
                panic!("read_capped blocked on a FIFO");
            }
        }
    }
}
