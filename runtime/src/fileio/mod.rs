//! The ways Stockade reads and writes its own files, each with the property that matters:
//!
//! - [`read_capped`]: open once, `fstat` the same descriptor, read at most a cap. Package bytes
//!   are read through one fd and never re-opened, so what is verified is what is used.
//!   [`read_owned`] is the same for configuration in a directory another user owns: only a
//!   plain file of one link that no other user could have put there or changed.
//! - [`create_exclusive`]: `O_CREAT|O_EXCL` with the final mode given to `open(2)`, for secret
//!   keys: a key file is never, even briefly, readable by others (the `fchmod` after the create
//!   only puts back what the umask took off, for the files other users must read).
//! - [`write_atomic`]: temp file in the same directory, `fsync`, `rename`, `fsync` the
//!   directory: readers see the old file or the new one, never a torn one. The temp file is
//!   owner-only and locked without waiting until it is given its mode ([`reserve`]): another
//!   user who could open it could otherwise lock it first and hang this process.
//!   [`write_atomic_new`] is the same for a file that must not exist yet (an issued certificate,
//!   a signed package): the temp file is linked into place only if the name is free, so an
//!   existing file is never replaced, even by a race.
//! - [`HeldDir`] and [`make_dir_at`] (module [`held`], re-exported here): the directories of the
//!   state directory this process writes and removes things in, held by descriptor and made
//!   under a temporary name, so that the state directory's owner cannot redirect them.
//! - [`lock_as_dir_owner`]: the lock of a file root and the directory's owner both write (the
//!   audit log, the revocation memory), the owner's alone (0600), so that no other user can open
//!   it and hold it for ever, and made for the owner when root comes first.
//!
//! Every file and directory made here has the mode asked for, not that mode less the umask:
//! root's CLI writes into the daemon's state directory, and a hardened root umask (027, 077)
//! would otherwise leave files there that the daemon cannot read. A crash can leave what these
//! made under temporary names: [`sweep_made_dirs`] and [`sweep_reserved`] remove this uid's
//! stale ones where leftovers are swept; what tells a stale leftover from one in the making
//! (`leftover_is_stale`) is shared by both, and by the kept trees' sweep.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub mod held;

pub use held::{
    check_no_other_writer, make_dir_at, sweep_made_dirs, sweep_made_dirs_at, DirOwner, HeldDir,
    HeldDirError, HeldPath, MADE_DIR_PREFIX,
};

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
    /// Whether a read failed because this user may not open the file or a directory on its
    /// way (EACCES, EPERM): not damage, a permission.
    pub fn is_denied(&self) -> bool {
        matches!(self, FileError::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
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
    read_capped_held(path, cap).map(|(_, bytes)| bytes)
}

/// [`read_capped`], keeping the file read open: while it is, its inode is not freed, so no
/// file made later gets its inode number, and a file found later at `path` with the same device
/// and inode is this very file — the store's lockless readers tell so whether the registry was
/// replaced since they read it (`store::StoreView`).
pub fn read_capped_held(path: &Path, cap: u64) -> Result<(File, Vec<u8>), FileError> {
    let (file, len) = open_regular(path)?;
    let bytes = read_all_capped(path, &file, len, cap)?;
    Ok((file, bytes))
}

/// [`read_capped_held`] for a secret (a secret key file): read into one buffer of `cap + 1`
/// bytes allocated before the read ([`read_secret_to_end`]), never grown, and wiped when
/// dropped. A `Vec` that grows while it reads leaves each outgrown copy in freed memory,
/// unwiped.
pub fn read_secret(path: &Path, cap: u64) -> Result<(File, Zeroizing<Vec<u8>>), FileError> {
    let (file, len) = open_regular(path)?;
    let too_large = |size| FileError::TooLarge {
        path: path.to_path_buf(),
        size,
        cap,
    };
    if len > cap {
        return Err(too_large(len));
    }
    // The file may grow between fstat and read; the cap on the read itself is what counts.
    let bytes = read_secret_to_end(&file, cap).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok((file, bytes))
}

/// Read `reader` to its end, or to `cap + 1` bytes (more than `cap` tells the caller it was
/// too much), into one wiped buffer allocated at that size before the first read and never
/// grown: nothing read is left behind in a reallocated buffer (`read_to_end` grows its `Vec`,
/// and reads a last probe through a stack buffer of its own). For secrets only, `cap` small:
/// the whole `cap + 1` is allocated up front.
pub fn read_secret_to_end(mut reader: impl Read, cap: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let size = usize::try_from(cap)
        .ok()
        .and_then(|c| c.checked_add(1))
        .ok_or_else(|| std::io::Error::other("cap beyond memory"))?;
    let mut buf = Zeroizing::new(vec![0u8; size]);
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// `path` opened for [`read_capped`] (without blocking, see there) and its size, if it is a
/// regular file (checked on the opened descriptor, `fstat`: what is read is what was checked).
pub fn open_regular(path: &Path) -> Result<(File, u64), FileError> {
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
    Ok((file, meta.len()))
}

/// [`read_capped`] for a file whose contents this process trusts because of who could have
/// written it: opened without following a symlink at its name, and read only if it is a regular
/// file of one link, belonging to this process's user, root or `also`, and writable by no one
/// else ([`FileError::Unsafe`] otherwise). For configuration kept in a directory another user
/// owns (`/var/lib/stockade` is the daemon's user's): that user can put any file at the name,
/// but not one of root's that says what it wants — a hard link would be one (where
/// `fs.protected_hardlinks` is 0), hence the link count. The checks are of the descriptor read.
pub fn read_owned(path: &Path, cap: u64, also: Option<u32>) -> Result<Vec<u8>, FileError> {
    match read_owned_held(path, cap, also) {
        Ok((_, bytes)) => Ok(bytes),
        Err(FileError::NotRegular { path }) => Err(FileError::Unsafe {
            path,
            why: "is not a regular file".into(),
        }),
        Err(e) => Err(e),
    }
}

/// `dir/name` as [`read_owned`] reads it, `dir`'s owner also accepted as the file's: a state
/// file of a directory whose owner writes it (the daemon's user's state directory, which root's
/// CLI writes too and hands over).
pub fn read_owned_in(dir: &Path, name: impl AsRef<Path>, cap: u64) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir).ok().map(|m| m.uid());
    read_owned(&dir.join(name), cap, owner)
}

/// [`read_owned`], keeping the file read open (as [`read_capped_held`] does, for the store's
/// lockless readers), and telling a file that is no regular file ([`FileError::NotRegular`]:
/// a directory or FIFO at the name is damage, the store registry's 106) from one someone else
/// could have put there or changed ([`FileError::Unsafe`]).
pub fn read_owned_held(
    path: &Path,
    cap: u64,
    also: Option<u32>,
) -> Result<(File, Vec<u8>), FileError> {
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
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    } else if has_other_link(&md) {
        "has another link (a hard link to it elsewhere)".to_string()
    } else if md.uid() != me && md.uid() != 0 && Some(md.uid()) != also {
        let also = also.map_or(String::new(), |a| {
            format!(" nor the directory's owner ({a})")
        });
        format!(
            "belongs to uid {}, neither this user ({me}) nor root{also}",
            md.uid()
        )
    } else if md.mode() & 0o022 != 0 {
        format!(
            "is writable by group or others (mode {:o})",
            md.mode() & 0o7777
        )
    } else {
        let bytes = read_all_capped(path, &file, md.len(), cap)?;
        return Ok((file, bytes));
    };
    Err(unsafe_(why))
}

/// Whether a file opened at its name has another name too (a hard link: more than one link).
/// None at all is no other link: the file was replaced (renamed over) or removed since it was
/// opened — an atomic writer beside a lockless reader of the registry (root's install beside the
/// daemon user's `verify NAME`) — and what was read is what the name held when it was opened;
/// that reader takes the replacement up by its own rule. Counting it as a second link refused
/// such reads now and then (78 `store.unsafe`, "has another link").
fn has_other_link(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.nlink() > 1
}

/// The rest of a capped read, on a file already opened and checked.
fn read_all_capped(path: &Path, file: &File, len: u64, cap: u64) -> Result<Vec<u8>, FileError> {
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

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
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
/// ([`Reserved::commit`]). Dropped uncommitted, the temporary file is removed. The temporary
/// file is `flock`ed by its maker for as long as it exists under its name, so a sweep of the
/// directory ([`sweep_reserved`]) never takes one in use for a crash's leftover.
#[derive(Debug)]
pub struct Reserved {
    path: PathBuf,
    dir: PathBuf,
    tmp: tempfile::NamedTempFile,
    /// The mode [`Reserved::commit`] gives the file when it is not told one: the mode asked
    /// for less the umask, as a plain create would have made it.
    default_mode: u32,
}

/// How many temporary names [`reserve`] tries before it gives up: each one found locked by
/// someone else is left for a fresh one.
const RESERVE_ROUNDS: usize = 8;

/// Reserve `path`: create its temporary file in its directory, owner-only (0600) until the
/// commit gives it its mode (`mode` less the umask, unless the commit says one), and lock it
/// (`flock`, released when it is closed: committed, dropped, or its process gone).
///
/// Why 0600 and a lock that does not wait: `flock` needs only a descriptor open for reading, so
/// any user who could read the temporary file could lock it first — the daemon's user, owner of
/// the directory root writes `sources.json` or the audit log's head file in, can watch for
/// `.stockade-tmp-…` names — and a blocking lock would hang root's command forever (for the
/// head file, while it holds the log's lock, and with it every other writer). Owner-only, no
/// other user can open it at all; should the lock still be held (a process of this uid), that
/// file is dropped and another name tried, a few times, then this fails.
pub fn reserve(path: &Path, mode: u32) -> Result<Reserved, FileError> {
    use std::os::fd::AsFd;
    let dir = parent_dir(path);
    let wr = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Read now, not at the commit: the mode a create at this moment would have given. Where the
    // kernel does not say (before 4.7), the owner's bits alone: never more open than asked.
    let default_mode = current_umask().map_or(mode & 0o700, |u| mode & !u);
    for _ in 0..RESERVE_ROUNDS {
        // Opened here rather than by `tempfile_in`, which appends the temporary file's path to
        // the error ("… at path …"): through a held directory that is a `/proc/self/fd/N/…` the
        // reader cannot use, and the error names `path` already.
        let tmp = tempfile::Builder::new()
            .prefix(RESERVED_PREFIX)
            .make_in(&dir, |tmp| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(tmp)
            })
            .map_err(wr)?;
        #[cfg(test)]
        test_hook::after_reserve_create(tmp.path());
        if crate::sys::try_flock_exclusive(tmp.as_file().as_fd()).map_err(wr)? {
            return Ok(Reserved {
                path: path.to_path_buf(),
                dir,
                tmp,
                default_mode,
            });
        }
        // Someone else holds it: this one is dropped (removed), and another name tried.
    }
    Err(wr(std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        format!(
            "each of {RESERVE_ROUNDS} temporary files made for it was locked by another process"
        ),
    )))
}

impl Reserved {
    /// Write `bytes`, set the exact `mode` (else the mode asked of [`reserve`] less the umask)
    /// and `owner` when given, fsync, rename into place (over an existing file only when
    /// `replace`), fsync the directory.
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
        // The temporary file is 0600 until now ([`reserve`]); its mode is set on the descriptor,
        // exactly, before it has its name.
        let mode = mode.unwrap_or(self.default_mode);
        self.tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(wr)?;
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

/// A leftover of a process that ended without cleaning up (a work directory among the trees, a
/// directory [`make_dir_at`] had not renamed yet, a file [`reserve`] had not committed) is removed
/// only once older than this when its maker may still be alive: it may be between its making
/// and the step that marks it in use (its lock, its rename).
pub(crate) const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The same, for a leftover whose name says its maker's pid and no process has that pid here: it
/// cannot be between its making and its lock or rename any more, unless its maker runs in
/// another pid namespace (a state directory shared with a container), where this pause covers
/// that moment (microseconds).
pub(crate) const DEAD_MAKER_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The pid a leftover's name carries after its prefix: `<pid>-<random>`; `None` for one named
/// without it (`<random>`, as earlier builds named the trees' work directories).
pub(crate) fn leftover_maker(rest: &str) -> Option<u32> {
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether a leftover whose name after its prefix is `rest`, last changed `age` ago, is stale
/// ([`LEFTOVER_AGE`], [`DEAD_MAKER_AGE`]).
pub(crate) fn leftover_is_stale(rest: &str, age: std::time::Duration) -> bool {
    let dead_maker =
        leftover_maker(rest).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    age > LEFTOVER_AGE || (dead_maker && age > DEAD_MAKER_AGE)
}

/// This process's umask, read without changing it (`umask(2)` can only set it, process-wide):
/// `None` where `/proc/self/status` does not say (Linux before 4.7).
fn current_umask() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// Hooks for tests that play another process: between [`reserve`]'s create and its lock
/// (another may open and lock the temporary file first). This thread's calls only. The one for
/// [`make_dir_at`] is [`held::test_hook`].
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::RefCell;
    use std::path::Path;

    type PathHook = Box<dyn FnMut(&Path)>;

    thread_local! {
        static AFTER_RESERVE_CREATE: RefCell<Option<PathHook>> = RefCell::new(None);
    }

    /// Run `f(temporary)` after every create of this thread's [`super::reserve`], before its
    /// lock, until the guard returned is dropped.
    pub(crate) fn set_after_reserve_create(f: impl FnMut(&Path) + 'static) -> Guard {
        AFTER_RESERVE_CREATE.with(|h| *h.borrow_mut() = Some(Box::new(f)));
        Guard
    }

    /// Clears this thread's hook when dropped.
    pub(crate) struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            AFTER_RESERVE_CREATE.with(|h| *h.borrow_mut() = None);
        }
    }

    pub(super) fn after_reserve_create(tmp: &Path) {
        AFTER_RESERVE_CREATE.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f(tmp);
            }
        });
    }
}

/// The prefix of [`reserve`]'s temporary files.
pub const RESERVED_PREFIX: &str = ".stockade-tmp-";

/// Remove from `dir` the temporary files [`reserve`] (so [`write_atomic`] and
/// [`write_state_file`]) left when their process ended before the rename (a crash, SIGKILL):
/// the audit log calls this on its directory (at its first append, then once a minute), for its
/// head file's; `exec` on the directories of its `--pid-file` and `--report` before reserving
/// them (a report's temporary file lives as long as the program runs). Only what is certainly such a leftover of this uid goes: named
/// `.stockade-tmp-…`, a regular file of one link owned by this uid, unchanged for
/// [`LEFTOVER_AGE`], and not locked — every live one is locked by its maker, across processes
/// and pid namespaces ([`reserve`]), so neither the file being written now nor another
/// process's (the state directory's files, a report being produced) is taken. Opened without
/// following a symlink and without blocking (a FIFO at the name), and removed by name only
/// while the name still leads to the file checked; a name swapped in between by whoever can
/// write `dir` is removed then, which that user could do itself. Best effort: what cannot be
/// checked or removed stays.
pub fn sweep_reserved(dir: &Path) {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstat, fstatat, Mode};
    use std::os::fd::{AsFd, AsRawFd};
    let Ok(d) = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", d.as_raw_fd())) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    let now = std::time::SystemTime::now();
    let id = |st: &nix::sys::stat::FileStat| (st.st_dev, st.st_ino);
    for e in entries.flatten() {
        let name = e.file_name();
        if !name
            .as_encoded_bytes()
            .starts_with(RESERVED_PREFIX.as_bytes())
        {
            continue;
        }
        let Ok(st) = fstatat(&d, &*name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(st.st_mtime).unwrap_or(0),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            );
        let old = now
            .duration_since(changed)
            .is_ok_and(|age| age > LEFTOVER_AGE);
        let candidate = |st: &nix::sys::stat::FileStat| {
            st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_uid == me && st.st_nlink == 1
        };
        if !old || !candidate(&st) {
            continue;
        }
        let Ok(f) = openat(
            &d,
            &*name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(held) = fstat(&f) else { continue };
        if id(&held) != id(&st) || !candidate(&held) {
            continue;
        }
        // In use: its maker holds the lock for as long as the file has this name.
        if !matches!(crate::sys::try_flock_exclusive(f.as_fd()), Ok(true)) {
            continue;
        }
        if fstatat(&d, &*name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|now| id(&now) == id(&held))
        {
            let _ = nix::unistd::unlinkat(&d, &*name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Remove the directory `path` — a build directory a process of this uid made and was killed
/// in before it renamed it into place (`ca init`'s) — only if it is surely that: a real
/// directory (no symlink at its name) of this uid, on its parent's filesystem (not something
/// mounted there), not locked by a live maker (which holds a shared `flock` on it while in use),
/// and holding nothing but regular files of this uid named as its maker names them
/// (`made_here`) or [`reserve`]'s temporaries. Those are unlinked through the descriptor of the
/// directory checked and locked, and the directory itself is `rmdir`ed while its name still
/// leads to it: renaming another directory to `path` — which whoever can write the parent can
/// do, to any entry of it — between the checks and the removal never has this process remove
/// more than that user could remove itself. Anything else in it (a subdirectory, a symlink,
/// another file) and it is not such a leftover: left as it is, whole. `remove_dir_all` by
/// name removed whatever a directory of that name held, and followed the name to whatever was
/// there at the time. Best effort: what cannot be checked or removed stays.
pub fn remove_leftover_dir(path: &Path, made_here: impl Fn(&str) -> bool) {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstat, fstatat, Mode};
    use nix::unistd::{unlinkat, UnlinkatFlags};
    use std::os::fd::{AsFd, AsRawFd};
    let Some(name) = path.file_name() else {
        return;
    };
    let Some(parent) = open_parent(path) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    let Ok(parent_st) = fstat(&parent) else {
        return;
    };
    let Ok(dir) = openat(
        &parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(st) = fstat(&dir) else { return };
    if st.st_uid != me || st.st_dev != parent_st.st_dev {
        return;
    }
    // A live maker holds its shared lock until its directory has its final name.
    if !matches!(crate::sys::try_flock_exclusive(dir.as_fd()), Ok(true)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        return;
    };
    let mut files = Vec::new();
    for e in entries {
        let Ok(e) = e else { return };
        let file = e.file_name();
        let ours = file
            .to_str()
            .is_some_and(|f| made_here(f) || f.starts_with(RESERVED_PREFIX));
        let regular_mine = fstatat(&dir, &*file, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|f| {
            f.st_mode & libc::S_IFMT == libc::S_IFREG && f.st_uid == me && f.st_dev == st.st_dev
        });
        if !ours || !regular_mine {
            return;
        }
        files.push(file);
    }
    for file in &files {
        if unlinkat(&dir, &**file, UnlinkatFlags::NoRemoveDir).is_err() {
            return;
        }
    }
    rmdir_if_still(parent.as_fd(), name, &st);
}

/// Remove the directory `path`, which `dir` (a descriptor of it, opened without following a
/// symlink and checked by the caller: locked, this uid's) is, with all it holds — through
/// descriptors, never by a name looked up again from the top. Each entry is removed at the
/// directory descriptor that holds it (a subdirectory opened `O_NOFOLLOW` at its parent's
/// descriptor, on the same filesystem, emptied the same way), and `path` itself is `rmdir`ed
/// only while its name still leads to `dir`. `remove_dir_all(path)` after the check resolved
/// the name again: whoever can write the parent (a non-sticky shared `$TMPDIR`) could rename
/// another directory to it between the check and the removal, and root's sweep then removed
/// what that directory held. A directory on another filesystem below it (something mounted
/// there) is left, with what leads to it. Best effort: what cannot be removed stays.
pub fn remove_dir_through(path: &Path, dir: std::os::fd::BorrowedFd<'_>) {
    use nix::sys::stat::fstat;
    use std::os::fd::AsFd;
    let Some(name) = path.file_name() else {
        return;
    };
    let Ok(st) = fstat(dir) else { return };
    empty_dir_at(dir, st.st_dev, 0);
    if let Some(parent) = open_parent(path) {
        rmdir_if_still(parent.as_fd(), name, &st);
    }
}

/// The directory holding `path`, opened to act at `path`'s name through it (`*at` calls) —
/// what [`remove_leftover_dir`] and [`remove_dir_through`] remove is judged and removed there.
fn open_parent(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        &parent_dir(path),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

/// `rmdir` of `name` in `parent` while that name still leads to the directory `st` describes
/// (no symlink followed): a directory renamed to it since is left. Best effort.
fn rmdir_if_still(
    parent: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    st: &nix::sys::stat::FileStat,
) {
    use nix::fcntl::AtFlags;
    if nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|now| (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino))
    {
        let _ = nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::RemoveDir);
    }
}

/// How deep [`remove_dir_through`] goes: an extracted tree is far shallower (the package
/// limits), and the recursion holds one descriptor per level.
const REMOVE_DEPTH: usize = 128;

/// Everything in the directory `dir` (on device `dev`) removed at its descriptor, depth first.
fn empty_dir_at(dir: std::os::fd::BorrowedFd<'_>, dev: u64, depth: usize) {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode};
    use nix::unistd::{unlinkat, UnlinkatFlags};
    use std::os::fd::{AsFd, AsRawFd};
    if depth > REMOVE_DEPTH {
        return;
    }
    // Listed through /proc (std reads a directory only by path), then removed: an entry
    // removed while the listing runs could make it skip others.
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        return;
    };
    let names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    for name in names {
        let Ok(st) = fstatat(dir, &*name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            let _ = unlinkat(dir, &*name, UnlinkatFlags::NoRemoveDir);
            continue;
        }
        if st.st_dev != dev {
            continue;
        }
        let Ok(sub) = openat(
            dir,
            &*name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        empty_dir_at(sub.as_fd(), dev, depth + 1);
        let _ = unlinkat(dir, &*name, UnlinkatFlags::RemoveDir);
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

/// A bounded wait for a lock that remembers running out — `serve`'s, for the revocation lock
/// ([`crate::state::RevocationState::lock_bounded`]) and the audit log's
/// ([`crate::audit::AuditLog::waiting_at_most`]): its one event loop answers every agent and
/// plugin, and a holder can be stopped (root's CLI under SIGSTOP, a debugger) while it holds
/// the lock. Once a wait ran out, the following takes only try the lock, without waiting, until
/// one takes it or [`Self::TRY_ONLY_FOR`] has passed: a holder that stays then costs the loop one
/// wait in that time, not one per load, restart retry, SIGHUP check or record (N of them queued
/// behind it stalled every client N waits). Past that time a take waits again — a lock held
/// briefly by an honest writer then (a verification's save) is waited for, not refused for
/// ever after one stall. Clones share what they remember.
#[derive(Debug, Clone)]
pub struct BoundedWait {
    wait: std::time::Duration,
    /// When a wait last ran out, while takes only try (`None`: they wait).
    gave_up: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl BoundedWait {
    /// How long takes only try after a wait ran out.
    pub const TRY_ONLY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

    /// Waits of `wait` at most, none run out yet.
    pub fn new(wait: std::time::Duration) -> Self {
        Self {
            wait,
            gave_up: std::sync::Arc::default(),
        }
    }

    /// The bound itself (what a wait that is no lock's, e.g. a socket send, is given).
    pub fn bound(&self) -> std::time::Duration {
        self.wait
    }

    /// How long the next take waits: the bound, or nothing while only trying.
    pub fn this_time(&self) -> std::time::Duration {
        self.this_time_at(std::time::Instant::now())
    }

    fn this_time_at(&self, now: std::time::Instant) -> std::time::Duration {
        if self.trying_only_at(now) {
            std::time::Duration::ZERO
        } else {
            self.wait
        }
    }

    /// Whether takes only try now (a wait ran out, no take got the lock since, less than
    /// [`Self::TRY_ONLY_FOR`] ago).
    pub fn gave_up(&self) -> bool {
        self.trying_only_at(std::time::Instant::now())
    }

    fn trying_only_at(&self, now: std::time::Instant) -> bool {
        self.gave_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| now.saturating_duration_since(t) < Self::TRY_ONLY_FOR)
    }

    /// A take got the lock: the next ones wait again.
    pub fn took(&self) {
        *self
            .gave_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// A take found the lock held past what it waited: from now on only try — unless only
    /// trying already (that try-only time is not extended: it ends as it began).
    pub fn ran_out(&self) {
        self.ran_out_at(std::time::Instant::now());
    }

    fn ran_out_at(&self, now: std::time::Instant) {
        let mut g = self
            .gave_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !g.is_some_and(|t| now.saturating_duration_since(t) < Self::TRY_ONLY_FOR) {
            *g = Some(now);
        }
    }
}

/// Why [`lock_as_dir_owner`] took no lock.
#[derive(Debug, thiserror::Error)]
pub enum OwnerLockError {
    /// The lock's directory cannot be read: whose it is, and so whose the lock, is not known.
    #[error("cannot read the lock's directory")]
    Dir(#[source] std::io::Error),
    /// Not a lock this process may wait on: it is neither root nor the directory's owner, or
    /// what is at the name is not a lock file of that owner's (another user's, a link, not a
    /// regular file of one link: kind `InvalidData`).
    #[error("not a lock this process may take")]
    Refused(#[source] std::io::Error),
    /// Opening, making or taking it failed.
    #[error("cannot take the lock")]
    Io(#[source] std::io::Error),
    /// Another process still held it when the wait the caller allowed was over.
    #[error("another process held the lock for {} ms", waited.as_millis())]
    Busy {
        /// How long this process waited.
        waited: std::time::Duration,
    },
}

/// How many rounds [`lock_as_dir_owner`] makes before it gives up: one to make the owner's lock
/// file (root in another user's directory), and one for each lock taken on a file that was no
/// longer at its name by then.
const OWNER_LOCK_ROUNDS: usize = 3;

/// Take the lock file `lock` (an exclusive `flock`, waiting for its holder) that serializes the
/// writers of a file both root and the directory's owner write: the audit log
/// (`/var/log/stockade`) and the state directory's revocation memory, where root's CLI writes
/// beside the daemon's user. The lock file is 0600 and the directory's owner's (root's own
/// directory: root's), so only that user and root — the file's only writers — can open it, and
/// no one else can hold it for ever ([`crate::sys::open_private_lock_file_of`]). Made by the
/// owner itself, or by root as a file of the owner's from its making (a temporary file given its
/// owner, then linked to the name without replacing one: [`reserve`]), so no crash leaves a lock
/// of root's the owner could not open. One found wider is narrowed back to 0600; one of another
/// user, or anything but a regular file of one link, is refused ([`OwnerLockError::Refused`]),
/// as is a process that is neither root nor the owner (`writes` says what only those two do, for
/// its message): its lock would be its own, which root would refuse, and it could not open the
/// owner's. Never removed: a lock file unlinked while another writer is about to take it would
/// let both hold "the" lock through two inodes; one removed all the same while this process
/// waited (by hand) is no one's lock, and is made and taken again. Released when the returned
/// file is closed.
///
/// `wait`: `None` waits for the holder however long it holds the lock (a command run by hand,
/// which its user can interrupt); `Some(d)` gives up after `d` in all
/// ([`OwnerLockError::Busy`]; [`crate::sys::flock_exclusive_until`]), for a caller that must
/// never wait for ever — a holder can be stopped (SIGSTOP, a debugger) while it holds the lock.
pub fn lock_as_dir_owner(
    lock: &Path,
    writes: &str,
    wait: Option<std::time::Duration>,
) -> Result<File, OwnerLockError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let started = std::time::Instant::now();
    let dir = std::fs::metadata(parent_dir(lock)).map_err(OwnerLockError::Dir)?;
    let (owner, group) = (dir.uid(), dir.gid());
    let me = nix::unistd::geteuid().as_raw();
    if me != 0 && me != owner {
        return Err(OwnerLockError::Refused(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "its directory belongs to uid {owner}: only that user and root {writes}, and this \
                 is uid {me}"
            ),
        )));
    }
    for _ in 0..OWNER_LOCK_ROUNDS {
        let fd = match crate::sys::open_private_lock_file_of(lock, owner) {
            Ok(fd) => File::from(fd),
            // Root, in another user's directory: the owner's lock is made for it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && me != owner => {
                make_lock_of(lock, (owner, group)).map_err(OwnerLockError::Io)?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(OwnerLockError::Refused(e))
            }
            Err(e) => return Err(OwnerLockError::Io(e)),
        };
        match wait {
            None => crate::sys::flock_exclusive(fd.as_fd()).map_err(OwnerLockError::Io)?,
            Some(d) => {
                if !crate::sys::flock_exclusive_until(fd.as_fd(), started + d)
                    .map_err(OwnerLockError::Io)?
                {
                    return Err(OwnerLockError::Busy {
                        waited: started.elapsed(),
                    });
                }
            }
        }
        // Still the file at the name: one removed while this process waited excludes no one (a
        // writer coming now makes a new one and would write beside this one).
        let held = fd.metadata().map_err(OwnerLockError::Io)?;
        let named = std::fs::symlink_metadata(lock);
        if named.is_ok_and(|n| (n.dev(), n.ino()) == (held.dev(), held.ino())) {
            return Ok(fd);
        }
    }
    Err(OwnerLockError::Io(std::io::Error::other(format!(
        "the lock file was replaced while this process waited for it, {OWNER_LOCK_ROUNDS} times"
    ))))
}

/// Make `path` an empty lock file of `owner`'s, 0600, unless there is one (another writer made
/// it first): a temporary file of root's, given its mode and owner, then linked to the name
/// without replacing anything ([`Reserved::commit`]).
fn make_lock_of(path: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    let made = reserve(path, 0o600).and_then(|r| r.commit(b"", Some(0o600), Some(owner), false));
    match made {
        Ok(()) => Ok(()),
        Err(FileError::Write { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Ok(())
        }
        Err(FileError::Write { source, .. }) => Err(source),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

#[cfg(test)]
mod tests {
    /// [`remove_leftover_dir`] removes a directory holding only what its maker writes, and
    /// leaves whole one it cannot be sure of: locked by a live maker, holding anything else, a
    /// symlink at the name (its target untouched).
    #[test]
    fn a_leftover_dir_is_removed_only_when_surely_one() {
        let d = tempfile::tempdir().unwrap();
        let made = |n: &str| n == "ca.key";
        let mk = |name: &str, files: &[&str]| {
            let p = d.path().join(name);
            std::fs::create_dir(&p).unwrap();
            for f in files {
                std::fs::write(p.join(f), "k").unwrap();
            }
            p
        };
        let gone = mk("a", &["ca.key", ".stockade-tmp-abcdef"]);
        remove_leftover_dir(&gone, made);
        assert!(!gone.exists());
        let empty = mk("b", &[]);
        remove_leftover_dir(&empty, made);
        assert!(!empty.exists());
        let other = mk("c", &["ca.key", "notes"]);
        remove_leftover_dir(&other, made);
        assert!(other.join("ca.key").exists() && other.join("notes").exists());
        let locked = mk("d", &["ca.key"]);
        let lock = crate::package::trees::lock_dir_shared(&locked).unwrap();
        remove_leftover_dir(&locked, made);
        assert!(locked.join("ca.key").exists());
        drop(lock);
        let target = mk("e", &["ca.key"]);
        let link = d.path().join("f");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_leftover_dir(&link, made);
        assert!(target.join("ca.key").exists());
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    /// [`remove_dir_through`] removes the directory it holds, nested content included, and
    /// nothing else: when another directory was renamed to its name after it was opened (what
    /// whoever can write a non-sticky parent can do), the one opened is emptied and the
    /// impostor at the name keeps all it holds. `remove_dir_all` by name removed the impostor's.
    #[test]
    fn a_directory_is_removed_through_its_descriptor_not_its_name() {
        use std::os::fd::AsFd;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stockade-pkg-1-abcdef");
        std::fs::create_dir_all(p.join("tree/a/b")).unwrap();
        std::fs::write(p.join("tree/a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", p.join("tree/l")).unwrap();
        let held = std::fs::File::open(&p).unwrap();
        remove_dir_through(&p, held.as_fd());
        assert!(!p.exists());
        assert!(std::path::Path::new("/etc/passwd").exists());
        // Swapped after the open: the held one is emptied, the impostor left whole.
        std::fs::create_dir_all(p.join("tree/a")).unwrap();
        std::fs::write(p.join("tree/a/f"), "x").unwrap();
        let held = std::fs::File::open(&p).unwrap();
        let moved = d.path().join("moved");
        std::fs::rename(&p, &moved).unwrap();
        std::fs::create_dir_all(p.join("photos")).unwrap();
        std::fs::write(p.join("photos/precious"), "x").unwrap();
        remove_dir_through(&p, held.as_fd());
        assert!(
            p.join("photos/precious").exists(),
            "the impostor's files removed"
        );
        assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 0);
    }

    /// A secret is read into one buffer, allocated before the read and never grown (a grown
    /// `Vec` leaves its outgrown copies unwiped), and of a type that wipes it when dropped.
    #[test]
    fn secrets_are_read_into_one_wiped_buffer() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        for len in [0usize, 1, 300, 4095, 4096] {
            let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            std::fs::write(&f, &data).unwrap();
            let (_, bytes): (_, super::Zeroizing<Vec<u8>>) = super::read_secret(&f, 4096).unwrap();
            assert_eq!(&bytes[..], &data[..]);
            assert_eq!(bytes.capacity(), 4097, "{len}: the buffer was reallocated");
            // A reader handing out a few bytes at a time (a pipe): still the one buffer.
            struct Dribble<'a>(&'a [u8]);
            impl std::io::Read for Dribble<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let n = buf.len().min(self.0.len()).min(3);
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let slow = super::read_secret_to_end(Dribble(&data), 4096).unwrap();
            assert_eq!(&slow[..], &data[..]);
            assert_eq!(slow.capacity(), 4097);
        }
        std::fs::write(&f, vec![0u8; 4097]).unwrap();
        assert!(matches!(
            super::read_secret(&f, 4096),
            Err(super::FileError::TooLarge { .. })
        ));
        assert!(matches!(
            super::read_secret_to_end(&[1u8; 10][..], 4).map(|b| b.len()),
            Ok(5)
        ));
    }

    /// A file replaced or removed after it was opened (no link left) has no *other* link: a
    /// lockless reader of a file an atomic writer replaces (the store's registry) read it as one
    /// with a hard link elsewhere and refused it (78), now and then. A second name still counts.
    #[test]
    fn a_file_unlinked_since_it_was_opened_has_no_other_link() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "x").unwrap();
        let f = File::open(&p).unwrap();
        assert!(!super::has_other_link(&f.metadata().unwrap()));
        std::fs::hard_link(&p, d.path().join("g")).unwrap();
        assert!(super::has_other_link(&f.metadata().unwrap()));
        std::fs::remove_file(d.path().join("g")).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(
            !super::has_other_link(&f.metadata().unwrap()),
            "unlinked: 0 links"
        );
    }

    /// After a wait ran out, takes only try — for [`BoundedWait::TRY_ONLY_FOR`], not for ever
    /// (then an honest writer's brief hold after one stall was refused at every take until one
    /// happened to find the lock free); a try that finds it held does not extend that time; a
    /// take that gets the lock ends it.
    #[test]
    fn a_bounded_wait_only_tries_for_a_while_after_running_out() {
        use std::time::{Duration, Instant};
        let wait = Duration::from_secs(1);
        let b = BoundedWait::new(wait);
        let t0 = Instant::now();
        assert_eq!(b.this_time_at(t0), wait);
        b.ran_out_at(t0);
        let later = |d: Duration| t0 + d;
        assert_eq!(
            b.this_time_at(later(Duration::from_secs(1))),
            Duration::ZERO
        );
        // Still held at a try: the try-only time is not extended.
        b.ran_out_at(later(Duration::from_secs(20)));
        let end = BoundedWait::TRY_ONLY_FOR;
        assert_eq!(
            b.this_time_at(later(end - Duration::from_secs(1))),
            Duration::ZERO
        );
        assert_eq!(b.this_time_at(later(end)), wait, "waits again");
        // A wait that runs out then starts another try-only time; a take ends it.
        b.ran_out_at(later(end));
        assert_eq!(
            b.this_time_at(later(end + Duration::from_secs(1))),
            Duration::ZERO
        );
        b.took();
        assert_eq!(b.this_time(), wait);
        // Clones share it.
        let c = b.clone();
        c.ran_out();
        assert!(b.gave_up());
    }

    use super::*;
    use std::os::unix::fs::MetadataExt;

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

    /// The entries of `dir` whose names start with `prefix`.
    pub(super) fn named(dir: &Path, prefix: &str) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Set `p`'s modification time `age` in the past (a directory or a file).
    pub(super) fn age(p: &Path, age: std::time::Duration) {
        File::open(p)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    }

    /// A crash between a reserved file's create and its rename leaves `.stockade-tmp-…`: the
    /// sweep removes this uid's stale ones, never one in use (locked by its maker, however old),
    /// a fresh one, a second link, a symlink or anything not so named.
    #[test]
    fn the_reserved_sweep_removes_stale_temporaries_and_nothing_in_use() {
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let old = Duration::from_secs(120);
        let tmp = |name: &str, a: Duration| {
            let p = d.path().join(format!("{RESERVED_PREFIX}{name}"));
            std::fs::write(&p, b"x").unwrap();
            age(&p, a);
            p
        };
        let stale = tmp("stale", old);
        let fresh = tmp("fresh", Duration::ZERO);
        let linked = tmp("linked", old);
        std::fs::hard_link(&linked, d.path().join("elsewhere")).unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join(format!("{RESERVED_PREFIX}link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let other = d.path().join("log.head");
        std::fs::write(&other, b"x").unwrap();
        age(&other, old);
        // One being written now: reserved, then aged (a long `exec --report`).
        let in_use = reserve(&d.path().join("report.json"), 0o644).unwrap();
        let in_use_path = named(d.path(), RESERVED_PREFIX)
            .into_iter()
            .map(|n| d.path().join(n))
            .find(|p| ![&stale, &fresh, &linked, &link].contains(&p))
            .unwrap();
        age(&in_use_path, old);
        sweep_reserved(d.path());
        assert!(!stale.exists());
        assert!(fresh.exists() && linked.exists() && other.exists());
        assert!(std::fs::symlink_metadata(&link).is_ok() && target.exists());
        assert!(in_use_path.exists(), "locked by its maker");
        in_use.commit(b"{}", None, None, false).unwrap();
        assert_eq!(std::fs::read(d.path().join("report.json")).unwrap(), b"{}");
    }
    /// Reserve `path` on another thread, with `lock` run on each temporary file made before
    /// reserve locks it; the result (the temporary file's path) comes back on a channel. The
    /// wait for it is only a guard against a hang (the blocking lock this replaced waited
    /// forever), not a measure of anything.
    fn reserve_beside(
        path: PathBuf,
        lock: impl FnMut(&Path) + Send + 'static,
    ) -> Result<PathBuf, FileError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _hook = test_hook::set_after_reserve_create(lock);
            let r = reserve(&path, 0o644);
            let _ = tx.send(r.map(|r| {
                let tmp = r.tmp.path().to_path_buf();
                r.commit(b"done", None, None, true).unwrap();
                tmp
            }));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("reserve blocked on a temporary file another process had locked")
    }

    /// Open `tmp` anew (an open file description of its own, as another process would) and
    /// lock it; the lock lasts as long as the file returned.
    fn lock_elsewhere(tmp: &Path) -> File {
        use std::os::fd::AsFd;
        let f = File::open(tmp).unwrap();
        assert!(crate::sys::try_flock_exclusive(f.as_fd()).unwrap());
        f
    }

    /// The review's finding: `reserve` took its lock blocking, and anyone who could open the
    /// temporary file (another user, in a directory it owns) could lock it first and hang the
    /// command forever. A temporary file locked by another is now left for a fresh name.
    #[test]
    fn a_reserved_temporary_locked_by_another_is_left_for_a_fresh_one() {
        let d = tempfile::tempdir().unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let mut n = 0;
        let made = reserve_beside(d.path().join("report.json"), move |tmp| {
            n += 1;
            if n <= 2 {
                held_tx
                    .send((tmp.to_path_buf(), lock_elsewhere(tmp)))
                    .unwrap();
            }
        })
        .unwrap();
        let held: Vec<(PathBuf, File)> = held_rx.try_iter().collect();
        assert_eq!(held.len(), 2);
        for (tmp, _) in &held {
            assert_ne!(tmp, &made);
            assert!(!tmp.exists(), "a temporary file given up on is removed");
        }
        assert_eq!(
            std::fs::read(d.path().join("report.json")).unwrap(),
            b"done"
        );
    }

    /// Locked every time: an error after a few names, not a wait, and nothing left behind.
    #[test]
    fn a_reservation_whose_temporaries_are_all_locked_fails_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let err = reserve_beside(d.path().join("report.json"), move |tmp| {
            held_tx.send(lock_elsewhere(tmp)).unwrap();
        })
        .unwrap_err();
        assert_eq!(held_rx.try_iter().count(), RESERVE_ROUNDS);
        assert!(
            matches!(&err, FileError::Write { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    /// The temporary file is the owner's alone until the commit, whatever mode is asked for (so
    /// no other user can open it to lock it); the commit gives it the mode asked for less the
    /// umask, or the exact one it is told.
    #[test]
    fn a_reserved_temporary_is_owner_only_until_its_commit() {
        let d = tempfile::tempdir().unwrap();
        let umask = current_umask().unwrap();
        for (told, want) in [(None, 0o666 & !umask), (Some(0o640), 0o640)] {
            let path = d.path().join("out");
            let r = reserve(&path, 0o666).unwrap();
            let tmp = std::fs::metadata(r.tmp.path()).unwrap();
            assert_eq!(tmp.mode() & 0o7777, 0o600);
            r.commit(b"x", told, None, true).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, want);
        }
    }
}
