//! Directories held by descriptor ([`HeldDir`]), and how a missing one is made ([`make_dir_at`]).
//!
//! A directory of the state directory that this process writes and removes things in is opened
//! without following a symlink, checked to be changeable by no one else, and reached through its
//! descriptor from then on (the state directory itself may belong to the daemon's user, who
//! could otherwise swap the directory for a symlink under root's feet). The store's directories
//! and the kept trees' both; one that is missing is made by [`make_dir_at`]: under a temporary
//! name, checked to be the directory made, given its mode and owner, then renamed into place,
//! so that user cannot swap another directory into the name between the `mkdirat` and the
//! `openat` and have this process `chmod` or `chown` it ([`HeldDir`] says what that user can and
//! cannot still do). A crash can leave such a temporary directory: [`sweep_made_dirs`] removes
//! this uid's stale ones where leftovers are swept. [`check_no_other_writer`] is the check for a
//! directory not below one another user owns: that no one else can change the chain above it.
//!
//! The file operations of the rest of Stockade, and the rule that tells a stale leftover from
//! one in the making (`leftover_is_stale`, which the reserved files' sweep shares), are in the
//! parent module [`super`].

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{current_umask, leftover_is_stale, parent_dir};

/// Who may own a directory [`HeldDir`] holds (beside what holds for all of them: no symlink at
/// its name, and from then on reached through its descriptor alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOwner {
    /// This process's user or root, writable by no one else: the store's directories.
    SelfOrRoot,
    /// This process's user alone, writable by no one else: the kept trees' directory
    /// (package/trees.rs), whose trees a sandbox of this uid binds and nobody else may change.
    SelfOnly,
    /// Anyone: a directory in which this process only replaces whole files by rename (the index
    /// cache, which the refresh timer writes as the daemon's user, [`HeldDir::open_shared`]).
    /// Made by root in a parent another user owns, it is handed to that user.
    Shared,
}

/// A directory `NAME` of a parent directory, opened (made first, at `mode`, if asked) without
/// following a symlink at `NAME`, and accepted only if its owner is one [`DirOwner`] allows and
/// nobody else may write it. From then on it is reached through its descriptor
/// ([`HeldDir::path`], `/proc/self/fd/N`), so renaming or replacing `NAME` in the parent —
/// which another user may own: `/var/lib/stockade` belongs to the daemon's user, and root's CLI
/// works in it — changes nothing this process writes or removes. Without it, a `store` that was
/// a symlink (or became one between a check and a use) made root's `stockade list` remove every
/// directory tree it pointed at. The kept trees (package/trees.rs) are held the same way, with
/// the stricter [`DirOwner::SelfOnly`].
///
/// ## Making one: what the parent's owner can and cannot still do
/// A missing directory is made by [`make_dir_at`]: `mkdirat` under a fresh temporary name
/// (`.stockade-mkdir-<pid>-<random>`, mode 0700 and sticky), `openat` of that name without
/// following a symlink, a check that the directory opened is the one just made, as far as
/// anything can tell — this uid's, empty, no subdirectory (`nlink` 2), the mode `mkdirat` gave
/// it (sticky 0700 less the umask: no directory of root's the parent's owner could move there
/// has that mark) — then the mode (and owner) asked for set through the descriptor, and only then
/// `renameat2(RENAME_NOREPLACE)` to `NAME`. Why: the owner of the parent can rename any entry
/// of it. When the directory was made at `NAME` itself and then opened by name, that user could
/// move another directory into `NAME` between the two steps — root's `store` (any directory of
/// root's that is an entry of a directory that user can write), or one of its own — and root
/// `fchmod`ed it 0755, or handed it to that user (the index cache), and used it as its own.
///
/// What that user can still do: swap something into the temporary name between `mkdirat` and
/// `openat` — which the checks refuse (`Unsafe`: 78 for the store and the sources, the
/// temporary name left as it is) unless it is an empty sticky directory of this uid's with that
/// very mode, i.e. one a process of this uid just made the same way and has not changed yet
/// (then this process takes another's fresh, empty directory for its own, and the other one
/// fails its rename: nothing that was not already this uid's to change); rename the directory away after the check — this process works
/// through the descriptor, and a `NAME` that is not the directory made after the rename is
/// refused; and rename or remove `NAME` later, as it always could. What it can no longer do is
/// have this process change the mode or owner of a directory it did not make: the mode and
/// owner are set only through the descriptor of the directory checked, and an existing `NAME`
/// (the rename finds one: `EEXIST`) is opened and checked like any and never changed.
///
/// A crash between the `mkdirat` and the rename leaves the temporary directory, empty; the
/// places that sweep leftovers remove this uid's ([`sweep_made_dirs`]: the store's start, the
/// trees' sweep).
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
    /// It is a directory someone else could change, or the directory made for it was tampered
    /// with before it was in place ([`make_dir_at`]).
    #[error("{} {why}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl From<HeldDirError> for std::io::Error {
    /// For callers that speak `io::Error` (the kept trees): the OS error's kind is kept (a missing
    /// state directory stays `NotFound`), with the whole message.
    fn from(e: HeldDirError) -> Self {
        let kind = match &e {
            HeldDirError::Io { source, .. } => source.kind(),
            HeldDirError::Unsafe { .. } => std::io::ErrorKind::Other,
        };
        let text = match &e {
            HeldDirError::Io { source, .. } => format!("{e}: {source}"),
            HeldDirError::Unsafe { .. } => e.to_string(),
        };
        std::io::Error::new(kind, text)
    }
}

impl HeldDir {
    /// Open `parent/name` as described on [`HeldDir`] ([`DirOwner::SelfOrRoot`]); `create`: make
    /// it first at this mode when missing — exactly this mode, whatever the umask — (an existing
    /// entry of that name is then opened and checked like any, its mode left as it is).
    pub fn open(parent: &Path, name: &str, create: Option<u32>) -> Result<Self, HeldDirError> {
        Self::open_as(
            parent,
            parent.join(name),
            name,
            create,
            DirOwner::SelfOrRoot,
        )
    }

    /// [`HeldDir::open`] for `name` inside this held directory (reached through it).
    pub fn open_child(&self, name: &str, create: Option<u32>) -> Result<Self, HeldDirError> {
        use std::os::fd::AsFd;
        Self::open_in(
            self.fd.as_fd(),
            self.shown.join(name),
            name,
            create,
            DirOwner::SelfOrRoot,
        )
    }

    /// [`HeldDir::open_child`] with another owner rule: the kept trees' lock directory, this
    /// user's alone ([`DirOwner::SelfOnly`]) like the trees directory it is in.
    pub fn open_child_as(
        &self,
        name: &str,
        create: Option<u32>,
        owner: DirOwner,
    ) -> Result<Self, HeldDirError> {
        use std::os::fd::AsFd;
        Self::open_in(self.fd.as_fd(), self.shown.join(name), name, create, owner)
    }

    /// [`HeldDir::open`] without the owner rule ([`DirOwner::Shared`]), for a directory the
    /// daemon's user may own (the index cache, which the refresh timer writes as that user) and
    /// in which this process only replaces whole files by rename ([`write_state_file`]): a
    /// rename replaces a symlink at the name rather than following it, so all that must not be
    /// followed is `NAME` itself. Made by root in a parent another user owns, it is handed to
    /// that user (set through the descriptor of the directory made, before it has its name); one
    /// found there is left as it is — it may be any directory of root's that user moved to the
    /// name (root's `store`), which root would otherwise give away.
    ///
    /// [`write_state_file`]: super::write_state_file
    pub fn open_shared(
        parent: &Path,
        name: &str,
        create: Option<u32>,
    ) -> Result<Self, HeldDirError> {
        Self::open_as(parent, parent.join(name), name, create, DirOwner::Shared)
    }

    fn open_as(
        parent: &Path,
        shown: PathBuf,
        name: &str,
        create: Option<u32>,
        owner: DirOwner,
    ) -> Result<Self, HeldDirError> {
        use std::os::fd::AsFd;
        // The parent is the caller's (the state directory as given: it may be a symlink).
        let parent_fd = nix::fcntl::open(
            parent,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| HeldDirError::Io {
            path: shown.clone(),
            source: e.into(),
        })?;
        Self::open_in(parent_fd.as_fd(), shown, name, create, owner)
    }

    /// `name` in the open directory `parent` (shown as `shown`), made first at `create`'s mode
    /// when missing ([`make_dir_at`]), held when `owner` allows its owner: what [`HeldDir::open`]
    /// does, for a caller that holds the parent already (the kept trees open the state directory
    /// once, to check where a sandbox can bind from).
    pub fn open_in(
        parent: std::os::fd::BorrowedFd<'_>,
        shown: PathBuf,
        name: &str,
        create: Option<u32>,
        owner: DirOwner,
    ) -> Result<Self, HeldDirError> {
        use nix::fcntl::{openat, OFlag};
        use nix::sys::stat::{fstat, Mode};
        let fail = |e: nix::errno::Errno| HeldDirError::Io {
            path: shown.clone(),
            source: e.into(),
        };
        let me = nix::unistd::geteuid().as_raw();
        let made = match create {
            Some(mode) => {
                // A shared directory (the index cache) is the state directory owner's: root's
                // `source add` in the service user's state directory made it root's 0700, and
                // every refresh the timer runs as that user then failed (74).
                let hand_to = if owner == DirOwner::Shared && me == 0 {
                    let parent_st = fstat(parent).map_err(fail)?;
                    (parent_st.st_uid != 0).then_some((parent_st.st_uid, parent_st.st_gid))
                } else {
                    None
                };
                make_dir_at(parent, &shown, name, mode, hand_to)?
            }
            None => None,
        };
        let fd = match made {
            Some(fd) => fd,
            None => openat(
                parent,
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
            })?,
        };
        let st = fstat(&fd).map_err(fail)?;
        let owner_ok = match owner {
            DirOwner::SelfOrRoot => st.st_uid == me || st.st_uid == 0,
            DirOwner::SelfOnly => st.st_uid == me,
            DirOwner::Shared => true,
        };
        if !owner_ok {
            let allowed = if owner == DirOwner::SelfOnly {
                format!("this user ({me}) alone")
            } else {
                format!("neither this user ({me}) nor root")
            };
            let why = if owner == DirOwner::SelfOnly {
                format!("belongs to uid {}, not to {allowed}", st.st_uid)
            } else {
                format!("belongs to uid {}, {allowed}", st.st_uid)
            };
            return Err(HeldDirError::Unsafe { path: shown, why });
        }
        if owner != DirOwner::Shared && st.st_mode & 0o022 != 0 {
            return Err(HeldDirError::Unsafe {
                path: shown,
                why: format!(
                    "is writable by group or others (mode {:o})",
                    st.st_mode & 0o7777
                ),
            });
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

    /// Remove the temporary directories a crashed [`make_dir_at`] left in this directory
    /// ([`sweep_made_dirs`]).
    pub fn sweep_made_dirs(&self) {
        use std::os::fd::AsFd;
        sweep_made_dirs(self.fd.as_fd());
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

/// Refuse ([`HeldDirError::Unsafe`], naming the directory) unless every directory from `/` to
/// `dir` (a canonical path: no symlink in it) belongs to this process's user or root and is
/// writable by no one else, or is sticky (`/tmp`: others may add entries there but not rename
/// or remove this user's or root's). Otherwise another user could rename a directory on the
/// way and put one of its own in its place: what [`HeldDir`] holds below it would then be
/// whatever that user chose, however carefully it is opened. For a directory of configuration
/// that is not in a directory another user owns (the sources directory, `sources/mod.rs`).
pub fn check_no_other_writer(dir: &Path) -> Result<(), HeldDirError> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    for d in dir.ancestors() {
        let md = std::fs::symlink_metadata(d).map_err(|source| HeldDirError::Io {
            path: d.to_path_buf(),
            source,
        })?;
        let why = if !md.is_dir() {
            "is not a directory".to_string()
        } else if md.uid() != me && md.uid() != 0 {
            format!(
                "belongs to uid {}, neither this user ({me}) nor root, who could replace what is below it",
                md.uid()
            )
        } else if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
            format!(
                "is writable by group or others (mode {:o}) and not sticky: they could replace what is below it",
                md.mode() & 0o7777
            )
        } else {
            continue;
        };
        return Err(HeldDirError::Unsafe {
            path: d.to_path_buf(),
            why,
        });
    }
    Ok(())
}

/// The name a directory is made under before it is renamed to its own ([`make_dir_at`]):
/// this prefix, the maker's pid, `-`, a random part. The pid lets a sweep tell a dead maker's
/// leftover at once ([`sweep_made_dirs`]).
pub const MADE_DIR_PREFIX: &str = ".stockade-mkdir-";

/// The mode a directory made by [`make_dir_at`] is made with, before its own is set: 0700 with
/// the sticky bit, which the umask leaves and no directory of root's that the parent's owner
/// could move into the temporary name carries (a store, a trees or an index cache directory
/// never has it), so the check after the `openat` tells the directory made from an empty one
/// of root's (an earlier build's `indexes/`, 0700).
const MADE_DIR_MODE: u32 = 0o1700;

/// Make `name` in `parent` as [`HeldDir`] describes ("Making one"): under a temporary name,
/// opened, checked to be the directory just made, given `mode` (and `owner`, when given)
/// through its descriptor, then renamed to `name` only if that is free. `Some`: the directory
/// made, at `name`, by descriptor. `None`: `name` exists (before or by the rename: another
/// process made it first), and nothing was changed; the caller opens it as it opens any.
/// `shown` is `name`'s path, for messages. The temporary directory is removed on every error
/// but a failed check (then what is at its name is not this process's to remove).
pub fn make_dir_at(
    parent: std::os::fd::BorrowedFd<'_>,
    shown: &Path,
    name: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<Option<std::os::fd::OwnedFd>, HeldDirError> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, renameat2, AtFlags, OFlag, RenameFlags};
    use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode};
    let io = |e: Errno| HeldDirError::Io {
        path: shown.to_path_buf(),
        source: e.into(),
    };
    // Most opens find the directory there: no temporary is made for nothing.
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => return Ok(None),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(io(e)),
    }
    let mut rounds = 0;
    let tmp = loop {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| HeldDirError::Io {
            path: shown.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = format!(
            "{MADE_DIR_PREFIX}{}-{}",
            std::process::id(),
            hex::encode(random)
        );
        match mkdirat(
            parent,
            tmp.as_str(),
            Mode::from_bits_truncate(MADE_DIR_MODE),
        ) {
            Ok(()) => break tmp,
            // Someone made that name first (the parent's owner can): another name, a few times.
            Err(Errno::EEXIST) if rounds < 8 => rounds += 1,
            Err(e) => return Err(io(e)),
        }
    };
    #[cfg(test)]
    test_hook::after_mkdir(parent, &tmp);
    let tmp_shown = parent_dir(shown).join(&tmp);
    let tampered = |why: String| HeldDirError::Unsafe {
        path: tmp_shown.clone(),
        why: format!(
            "{why}: the directory made there for {} was replaced before it was opened (by the \
             owner of its parent directory?); left as it is",
            shown.display()
        ),
    };
    let fd = match openat(
        parent,
        tmp.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(tampered("is a symlink or not a directory".into()))
        }
        Err(Errno::ENOENT) => return Err(tampered("is gone".into())),
        Err(e) => {
            // Not opened, so not checked: removed by name, which only an empty directory can
            // be (nothing anyone could not remove as well: the parent's owner can).
            let _ =
                nix::unistd::unlinkat(parent, tmp.as_str(), nix::unistd::UnlinkatFlags::RemoveDir);
            return Err(io(e));
        }
    };
    let st = match fstat(&fd) {
        Ok(st) => st,
        Err(e) => {
            let _ =
                nix::unistd::unlinkat(parent, tmp.as_str(), nix::unistd::UnlinkatFlags::RemoveDir);
            return Err(io(e));
        }
    };
    let me = nix::unistd::geteuid().as_raw();
    // A parent with the setgid bit passes it on to the directory made, whatever the mode.
    let inherited = fstat(parent).map_or(0, |p| p.st_mode & 0o2000);
    let made_mode = current_umask().map(|u| MADE_DIR_MODE & !u);
    let perm = st.st_mode & 0o7777 & !inherited;
    let why = if st.st_uid != me {
        Some(format!(
            "belongs to uid {}, not this user ({me})",
            st.st_uid
        ))
    } else if made_mode.map_or(perm & !MADE_DIR_MODE != 0 || perm & 0o1000 == 0, |m| {
        perm != m
    }) {
        Some(format!("has mode {perm:o}, not the one it was made with"))
    } else if st.st_nlink > 2 {
        // 2 on most filesystems for an empty directory; 1 where directories do not count their
        // subdirectories (btrfs).
        Some(format!("has {} links: it holds directories", st.st_nlink))
    } else {
        match held_dir_is_empty(&fd) {
            Ok(true) => None,
            Ok(false) => Some("is not empty".into()),
            Err(e) => {
                remove_made(parent, &tmp, &st);
                return Err(HeldDirError::Io {
                    path: tmp_shown,
                    source: e,
                });
            }
        }
    };
    if let Some(why) = why {
        return Err(tampered(why));
    }
    // The mode asked for, exactly (`mkdirat` took the umask off: root's CLI under a hardened
    // umask, 027 or 077, made `store/` 0750 and the daemon, another user, could not read it),
    // and the owner, through the descriptor of the directory checked.
    let set = fchmod(&fd, Mode::from_bits_truncate(mode)).and_then(|()| match owner {
        Some((uid, gid)) => nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into())),
        None => Ok(()),
    });
    if let Err(e) = set {
        remove_made(parent, &tmp, &st);
        return Err(io(e));
    }
    match renameat2(
        parent,
        tmp.as_str(),
        parent,
        name,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // Another process made `name` first: its directory is used, as found.
            remove_made(parent, &tmp, &st);
            return Ok(None);
        }
        Err(e) => {
            remove_made(parent, &tmp, &st);
            return Err(io(e));
        }
    }
    // Renamed by name: what went to `name` must be the directory checked, or `name` is not the
    // directory this process holds (the parent's owner swapped the temporary name again).
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => Ok(Some(fd)),
        _ => Err(HeldDirError::Unsafe {
            path: shown.to_path_buf(),
            why: "is not the directory made for it (replaced while it was being renamed there, \
                  by the owner of its parent directory?)"
                .into(),
        }),
    }
}

/// Remove the temporary directory `tmp` of [`make_dir_at`] if its name still leads to the
/// directory made (`made`), and only while empty (`rmdir`): nothing at that name is removed that
/// the parent's owner could not remove itself.
fn remove_made(parent: std::os::fd::BorrowedFd<'_>, tmp: &str, made: &nix::sys::stat::FileStat) {
    if let Ok(now) = nix::sys::stat::fstatat(parent, tmp, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
    {
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino) {
            let _ = nix::unistd::unlinkat(parent, tmp, nix::unistd::UnlinkatFlags::RemoveDir);
        }
    }
}

/// Whether the directory open at `fd` has no entry but `.` and `..`.
fn held_dir_is_empty(fd: &std::os::fd::OwnedFd) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    Ok(
        std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?
            .next()
            .is_none(),
    )
}

/// Remove the temporary directories [`make_dir_at`] left in `parent` when its process ended
/// between the `mkdirat` and the rename (a crash, SIGKILL): those of this uid, stale
/// ([`leftover_is_stale`]: a maker that is gone, or older than [`LEFTOVER_AGE`]) and empty —
/// removed by `rmdir`, which removes nothing else, so a name the parent's owner swapped in the
/// meantime costs nothing that user could not remove itself. Best effort: what cannot be
/// listed or removed stays.
///
/// [`LEFTOVER_AGE`]: super::LEFTOVER_AGE
pub fn sweep_made_dirs(parent: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", parent.as_raw_fd())) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(MADE_DIR_PREFIX)) else {
            continue;
        };
        let Ok(st) =
            nix::sys::stat::fstatat(parent, &*name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_uid != me {
            continue;
        }
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(st.st_mtime).unwrap_or(0),
                u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            );
        let age = now.duration_since(changed).unwrap_or_default();
        if leftover_is_stale(rest, age) {
            let _ = nix::unistd::unlinkat(parent, &*name, nix::unistd::UnlinkatFlags::RemoveDir);
        }
    }
}

/// [`sweep_made_dirs`] in the directory at `parent` (a symlink to it is followed, as the state
/// directory's is everywhere).
pub fn sweep_made_dirs_at(parent: &Path) {
    use std::os::fd::AsFd;
    if let Ok(dir) = File::open(parent) {
        sweep_made_dirs(dir.as_fd());
    }
}

/// A hook for tests that play another process: between [`make_dir_at`]'s `mkdirat` and `openat`
/// (the parent's owner may swap something into the name just made). This thread's calls only.
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::RefCell;
    use std::os::fd::BorrowedFd;

    type Hook = Box<dyn FnMut(BorrowedFd<'_>, &str)>;

    thread_local! {
        static AFTER_MKDIR: RefCell<Option<Hook>> = RefCell::new(None);
    }

    /// Run `f(parent, name)` after every `mkdirat` of this thread's [`super::make_dir_at`] until
    /// the guard returned is dropped.
    pub(crate) fn set_after_mkdir(f: impl FnMut(BorrowedFd<'_>, &str) + 'static) -> Guard {
        AFTER_MKDIR.with(|h| *h.borrow_mut() = Some(Box::new(f)));
        Guard
    }

    /// Clears this thread's hook when dropped.
    pub(crate) struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            AFTER_MKDIR.with(|h| *h.borrow_mut() = None);
        }
    }

    pub(super) fn after_mkdir(parent: BorrowedFd<'_>, name: &str) {
        AFTER_MKDIR.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f(parent, name);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileio::tests::{age, named};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A directory below one others may write (and rename in) is refused, naming the one on the
    /// way; a sticky one (`/tmp`) or one of this user's alone is fine, and so is every directory
    /// above (the temporary directory's own chain).
    #[test]
    fn only_a_chain_no_one_else_may_change_is_accepted() {
        let d = tempfile::tempdir().unwrap();
        let (open, deep) = (d.path().join("open"), d.path().join("open/deep"));
        std::fs::create_dir_all(&deep).unwrap();
        check_no_other_writer(&deep).unwrap();
        for (mode, refused) in [
            (0o777, true),
            (0o775, true),
            (0o1777, false),
            (0o755, false),
        ] {
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).unwrap();
            match check_no_other_writer(&deep) {
                Err(e @ HeldDirError::Unsafe { .. }) if refused => {
                    let text = e.to_string();
                    assert!(text.starts_with(&open.display().to_string()), "{text}");
                    assert!(text.contains("writable by group or others"), "{text}");
                }
                Ok(()) if !refused => {}
                r => panic!("mode {mode:o}: {r:?}"),
            }
        }
        assert!(matches!(
            check_no_other_writer(&d.path().join("absent")),
            Err(HeldDirError::Io { .. })
        ));
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// The race this primitive closes: the parent's owner moves another directory (one it
    /// prepared, or root's `store`) into the name just made, between the `mkdirat` and the
    /// `openat`. Made at its own name and opened by it, that directory was `fchmod`ed 0755 and
    /// held as if made here; made under a temporary name and checked, it is refused and left as
    /// it was, and nothing appears at the name.
    #[test]
    fn a_directory_swapped_in_between_mkdir_and_open_is_neither_changed_nor_held() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("theirs"), b"x").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o750)).unwrap();
        let swapped_into = std::rc::Rc::new(std::cell::RefCell::new(None));
        let seen = swapped_into.clone();
        let _hook = test_hook::set_after_mkdir(move |parent, name| {
            // What the parent's owner can do: rename a directory over the empty one just made.
            nix::fcntl::renameat(parent, "victim", parent, name).unwrap();
            *seen.borrow_mut() = Some(name.to_string());
        });
        let opened = HeldDir::open(d.path(), "store", Some(0o755));
        let name = swapped_into.borrow().clone().unwrap();
        let moved = d.path().join(&name);
        assert_eq!(
            mode_of(&moved),
            0o750,
            "the swapped-in directory was chmodded ({})",
            moved.display()
        );
        let e = opened.unwrap_err();
        let HeldDirError::Unsafe { path, why } = &e else {
            panic!("{e:?}")
        };
        assert!(why.contains("replaced"), "{why}");
        assert_eq!(path, &moved);
        assert!(moved.join("theirs").exists(), "left as it is");
        assert!(!d.path().join("store").exists());
    }

    /// The same race against root's handing a shared directory (the index cache) to the
    /// parent's owner: a directory of root's moved into the name is not given away.
    #[test]
    fn a_root_directory_swapped_in_is_not_handed_to_the_parents_owner() {
        use std::os::unix::fs::MetadataExt;
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(d.path(), Some(4242), Some(4242)).unwrap();
        let victim = d.path().join("store");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
        let _hook = test_hook::set_after_mkdir(|parent, name| {
            nix::fcntl::renameat(parent, "store", parent, name).unwrap();
        });
        let e = HeldDir::open_shared(d.path(), "indexes", Some(0o700)).unwrap_err();
        assert!(matches!(e, HeldDirError::Unsafe { .. }), "{e:?}");
        let moved = named(d.path(), MADE_DIR_PREFIX);
        assert_eq!(moved.len(), 1, "{moved:?}");
        let md = std::fs::metadata(d.path().join(&moved[0])).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
        assert!(!d.path().join("indexes").exists());
        // Made here, it is handed over (set on the directory made, before it has its name).
        drop(_hook);
        let held = HeldDir::open_shared(d.path(), "indexes", Some(0o700)).unwrap();
        let md = std::fs::metadata(d.path().join("indexes")).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (4242, 4242, 0o700)
        );
        drop(held);
        // Found root's, it is left root's: it may be any directory of root's moved there.
        std::fs::remove_dir(d.path().join("indexes")).unwrap();
        std::fs::create_dir(d.path().join("indexes")).unwrap();
        HeldDir::open_shared(d.path(), "indexes", Some(0o700)).unwrap();
        assert_eq!(
            std::fs::metadata(d.path().join("indexes")).unwrap().uid(),
            0
        );
    }

    /// A directory made here has exactly the mode asked for (whatever the umask), at its name,
    /// and no temporary is left; one found there is held as it is, its mode not changed.
    #[test]
    fn made_at_the_mode_asked_and_found_left_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        let held = HeldDir::open(d.path(), "store", Some(0o755)).unwrap();
        assert_eq!(mode_of(&d.path().join("store")), 0o755);
        assert_eq!(held.shown(), d.path().join("store"));
        let child = held.open_child("staging", Some(0o700)).unwrap();
        assert_eq!(mode_of(&d.path().join("store/staging")), 0o700);
        assert_eq!(child.shown(), d.path().join("store/staging"));
        std::fs::set_permissions(
            d.path().join("store"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        HeldDir::open(d.path(), "store", Some(0o755)).unwrap();
        assert_eq!(
            mode_of(&d.path().join("store")),
            0o750,
            "found: not changed"
        );
        assert!(named(d.path(), MADE_DIR_PREFIX).is_empty());
        assert!(named(&d.path().join("store"), MADE_DIR_PREFIX).is_empty());
        // A setgid parent passes its bit on to whatever is made in it: not a tampered one.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o2755)).unwrap();
        HeldDir::open(d.path(), "indexes", Some(0o700)).unwrap();
    }

    /// Another process makes the name between this one's `mkdirat` and its rename: the rename
    /// finds it (`EEXIST`), the temporary directory is removed, and the directory at the name
    /// is opened and checked like any found there — its mode not changed.
    #[test]
    fn a_name_made_meanwhile_is_used_as_found_and_the_temporary_removed() {
        let d = tempfile::tempdir().unwrap();
        let _hook = test_hook::set_after_mkdir(|parent, _| {
            nix::sys::stat::mkdirat(parent, "store", nix::sys::stat::Mode::empty()).unwrap();
            nix::sys::stat::fchmodat(
                parent,
                "store",
                nix::sys::stat::Mode::from_bits_truncate(0o700),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .unwrap();
        });
        let held = HeldDir::open(d.path(), "store", Some(0o755)).unwrap();
        assert_eq!(mode_of(&d.path().join("store")), 0o700);
        assert_eq!(
            std::fs::metadata(held.path()).unwrap().ino(),
            std::fs::metadata(d.path().join("store")).unwrap().ino()
        );
        assert!(named(d.path(), MADE_DIR_PREFIX).is_empty());
    }

    /// A symlink put at the name meanwhile: the temporary directory is removed and the symlink
    /// refused as it is when found (nothing through it is touched).
    #[test]
    fn a_symlink_put_at_the_name_meanwhile_is_refused_and_the_temporary_removed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let target = elsewhere.path().to_path_buf();
        let _hook = test_hook::set_after_mkdir(move |parent, _| {
            nix::unistd::symlinkat(&target, parent, "store").unwrap();
        });
        let e = HeldDir::open(d.path(), "store", Some(0o755)).unwrap_err();
        assert!(
            matches!(&e, HeldDirError::Unsafe { why, .. } if why.contains("symlink")),
            "{e:?}"
        );
        assert!(named(d.path(), MADE_DIR_PREFIX).is_empty());
        assert_eq!(mode_of(elsewhere.path()), 0o750);
    }

    /// A crash between the `mkdirat` and the rename leaves an empty temporary directory: the
    /// sweep removes this uid's once their maker is gone (or they are old), and nothing else.
    #[test]
    fn the_sweep_removes_stale_made_directories_and_nothing_else() {
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let made = |name: &str, old: Duration| {
            let p = d.path().join(format!("{MADE_DIR_PREFIX}{name}"));
            std::fs::create_dir(&p).unwrap();
            age(&p, old);
            p
        };
        // No pid is ever above pid_max (at most 2^22).
        let dead = made("999999999-a", Duration::from_secs(2));
        let dead_fresh = made("999999998-a", Duration::ZERO);
        let live = made(&format!("{}-a", std::process::id()), Duration::from_secs(2));
        let live_old = made(
            &format!("{}-b", std::process::id()),
            Duration::from_secs(120),
        );
        let full = made("999999997-a", Duration::from_secs(2));
        std::fs::write(full.join("f"), b"x").unwrap();
        age(&full, Duration::from_secs(2));
        let other_name = d.path().join(".stockade-other-999999999-a");
        std::fs::create_dir(&other_name).unwrap();
        age(&other_name, Duration::from_secs(120));
        sweep_made_dirs_at(d.path());
        assert!(!dead.exists() && !live_old.exists());
        assert!(
            dead_fresh.exists(),
            "may be between its mkdir and its rename"
        );
        assert!(live.exists(), "its maker lives: younger than LEFTOVER_AGE");
        assert!(full.exists(), "not empty: not a made directory");
        assert!(other_name.exists());
    }

    /// Another uid's temporary directories are not this process's to sweep.
    #[test]
    fn the_sweep_leaves_another_uids_made_directories() {
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(format!("{MADE_DIR_PREFIX}999999999-a"));
        std::fs::create_dir(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
        age(&p, std::time::Duration::from_secs(120));
        sweep_made_dirs_at(d.path());
        assert!(p.exists());
    }
}
