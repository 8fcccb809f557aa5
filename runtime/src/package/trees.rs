//! Verified trees kept between runs (`trust.keep_trees`), so that `stockade run` of a package it
//! ran before checks the files it extracted then instead of inflating the payload again.
//!
//! Why: inflating is the longest step of a `run` (≈ 3 ms of ≈ 8 for the benchmark's 340 KB
//! package, docs/PERFORMANCE.md) and an agent runs the same plugins on every event. Hashing the
//! kept files costs a fraction of it (SHA-256 runs at > 1 GB/s here, inflate at ≈ 0.3).
//!
//! What is kept is exactly what step 8 wrote for a package that verified and launched, under
//! `<state-dir>/trees/<statement sha256>` (the signed statement commits to the payload, the map
//! and the manifest); `trees-<uid>` instead of `trees` for a uid other than the state
//! directory's owner ([`Trees::open_anchor`]), and nothing at all when a sandbox of this uid
//! could not bind from there (root on the service user's 0750 state directory). A kept tree is
//! never trusted as it is: every use checks it against the signed map of the package being
//! run, as extraction checks the payload ([`check_kept`]: the
//! [`check_tree`] that `stockade store verify` makes of installed trees, and the manifest):
//! the same set of paths, no other entry, regular files owned by this uid with the signed mode,
//! one link, the signed size and digest, symlinks with the signed target, directories owned by
//! this uid and writable by no one else, `manifest.json` equal to the signed manifest. One that
//! does not match is set aside and the package extracted again (the report says so). The
//! trees directory is this uid's alone (0711), opened once and reached only through its
//! descriptor (`/proc/self/fd/N/…`, a [`crate::fileio::HeldDir`] whose owner must be this uid
//! alone): the state directory above it may belong to another user (the service's, in the
//! packaged layout), who could otherwise rename `trees` between the check and the sandbox's
//! bind. It is made the way every held directory is ([`crate::fileio::make_dir_at`]): under a
//! temporary name, checked, given 0711, then renamed to its name, so that user cannot move
//! another directory into `trees` between the `mkdir` and the `open` and have this process
//! `chmod` it 0711 and take it for its own. So only this uid (root for a root `run`) can
//! change a tree between the check and the plugin's reads — the principal that can change the
//! runtime itself.
//!
//! Concurrency: every user of a tree (a run on a kept one, a run or a daemon extracting into a
//! work directory here) holds a shared lock on it for as long as its plugin may read it; the
//! eviction of the least recently used trees beyond the limit takes it exclusively without
//! waiting and skips what is in use. That lock is not a `flock` of the tree's directory but of
//! its lock file, `.locks/<dev>-<ino>` in the trees directory ([`TreeLock`]): a kept tree is
//! 0755 (the plugin's uid reads it; a work directory too once `run` opened it up) and its name
//! (the statement's SHA-256) is no secret, and `flock` needs nothing but a descriptor — so
//! any user who can search the state directory could open a tree and hold a shared lock on it
//! for ever, and eviction never removed it: `keep_trees` and `keep_trees_max_mib` exceeded by
//! as many trees as packages are run, on root's disk. The lock files are 0600 in a 0700
//! directory of this uid's alone, opened as the store's lock is
//! ([`crate::sys::open_private_lock_file`]): only this uid (and root) can open one, so only
//! this uid's processes can hold one, and a run may wait for a tree's lock. Named by the
//! directory's inode, a lock follows its directory through its renames (work directory → kept
//! tree → set aside) as a `flock` on the directory did. A tree is made visible by one
//! `renameat2(RENAME_NOREPLACE)` of a complete work directory, so a kept name never shows a
//! partial tree.
//!
//! Upgrades: an earlier build's trees and work directories have no lock file; the first use
//! makes one, and a sweep or eviction takes theirs like any. An earlier build's `flock`s on the
//! directories are not looked at (they are what another user could hold): during an upgrade a
//! run of the earlier build still in progress may see its tree evicted under it — its plugin
//! then fails to read or its check refuses the tree — but nothing ever writes into a tree, so
//! no tree is left changed. A lock file goes with its directory (when the lock of a directory
//! this process removed is dropped, [`TreeLock`]); one a crash left is removed by the sweep of
//! leftovers once no one holds it.
//!
//! Bounds: at most `trust.keep_trees` trees, and at most `trust.keep_trees_max_mib` of their
//! files together (the sum of the files' sizes: the signed map's for the tree being kept, and
//! measured by walking the others, an `lstat` per file, once per new package while its plugin
//! starts). A tree
//! larger than the whole budget is not kept at all; a tree in use stays even beyond either
//! bound, and goes at a later eviction.

use super::extract::Extracted;
use crate::fileio::{leftover_is_stale, DirOwner, HeldDir};
use nix::fcntl::{Flock, FlockArg, RenameFlags};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use stockade_trust::statement::FileEntry;

/// The directory under the state directory.
pub const TREES_DIR: &str = "trees";

/// The kept trees of one state directory.
#[derive(Debug, Clone)]
pub struct Trees {
    state_dir: PathBuf,
    keep: usize,
    max_bytes: u64,
    /// The operator asked for trees (`trust.keep_trees` set): say so when none can be kept
    /// where no sandbox could bind from ([`Trees::explicit`]).
    explicit: bool,
}

/// The trees directory, opened once (`openat` from the state directory, not following a
/// symlink, checked to be this uid's and writable by it alone: [`HeldDir`] with
/// [`DirOwner::SelfOnly`], made by [`crate::fileio::make_dir_at`] when missing) and then reached
/// only through its descriptor: every path handed out is `/proc/self/fd/N/…`. Why: in the
/// packaged layout the state directory belongs to the service's user, not to root, and a path
/// through it could be redirected between the check of a tree and its use (a rename of
/// `trees`); a descriptor cannot. Its shown path ([`HeldDir::shown`]) is the real path of the
/// state directory joined with its name: what the sandbox's init binds from (a bind must come
/// from a mount of its own mount namespace), and only if it opens there the very inode checked
/// here (`LaunchSpec::package_dir_id`, [`KeptTree::bind_source`]).
type Anchor = HeldDir;

/// The directory of the trees' lock files, in the trees directory ([`TreeLock`]).
const LOCKS_DIR: &str = ".locks";

/// How many times a lock whose file was removed while it was taken is taken again (a sweep
/// removes the file of a directory that is gone; one reused inode number is a new directory).
const LOCK_ROUNDS: usize = 3;

/// The lock that marks one directory among the trees in use (a kept tree, a work directory, a
/// set-aside tree): a `flock` of `.locks/<dev>-<ino>` (its device and inode), 0600, in a 0700
/// directory of this uid's alone (see the module's Concurrency). Released when dropped, and its
/// file removed then if the directory is gone (removed by this process: an eviction, a work
/// directory's drop) and no other process holds the file.
#[derive(Debug)]
struct TreeLock(Option<Box<HeldLock>>);

/// A lock file held, where it is, and the directory it marks.
#[derive(Debug)]
struct HeldLock {
    fd: OwnedFd,
    locks: HeldDir,
    name: String,
    dir: File,
}

impl Drop for TreeLock {
    fn drop(&mut self) {
        let Some(h) = &self.0 else { return };
        // A directory removed has no link left. Its inode number may already be a new
        // directory's, whose user then holds the file (shared): it stays. Unlinked only while
        // held exclusively, and only if still the file at the name: a process that opened it
        // before and is granted it after finds it unlinked, and takes a new one ([`lock_tree`]).
        if h.dir.metadata().is_ok_and(|m| m.nlink() == 0) {
            unlink_if_unheld(h.locks.join(&h.name).path(), &h.fd);
        }
    }
}

/// Remove the lock file `path`, open as `fd`, if no other process holds it (taken exclusively
/// here, without waiting) and it is still the file at the name. The drop of a [`TreeLock`]
/// whose directory is gone and [`sweep_stale_locks`] both end so.
fn unlink_if_unheld(path: &Path, fd: &OwnedFd) {
    if crate::sys::try_flock_exclusive(fd.as_fd()).unwrap_or(false) && names(path, fd) {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether `path` (not followed) names the file open as `fd`: a lock file still at its name, a
/// directory not renamed or replaced since it was opened.
fn names(path: &Path, fd: impl AsFd) -> bool {
    match (std::fs::symlink_metadata(path), nix::sys::stat::fstat(fd)) {
        (Ok(l), Ok(h)) => (l.dev(), l.ino()) == (h.st_dev, h.st_ino),
        _ => false,
    }
}

/// The name of the lock file of the directory whose metadata is `m`.
fn lock_name(m: &std::fs::Metadata) -> String {
    format!("{}-{}", m.dev(), m.ino())
}

/// Take the lock of `dir`, a directory among the trees opened by the caller: shared, waiting
/// for an eviction in progress (only this uid's processes can hold it), or exclusive without
/// waiting (`Ok(None)`: in use). The lock file and its directory are made when missing (an
/// earlier build's tree has none). A shared lock on a read-only file system, where neither can
/// be made, is no lock (`TreeLock(None)`): nothing can be removed there either. A lock file that
/// is not one ([`crate::sys::open_private_lock_file`]: another user's, a symlink, not a regular
/// file of one link) is an error of kind `InvalidData`: the tree is not used, or not removed.
fn lock_tree(anchor: &Anchor, dir: &File, exclusive: bool) -> std::io::Result<Option<TreeLock>> {
    let name = lock_name(&dir.metadata()?);
    let locks = match anchor.open_child_as(LOCKS_DIR, Some(0o700), DirOwner::SelfOnly) {
        Ok(l) => l,
        Err(crate::fileio::HeldDirError::Io { source, .. })
            if !exclusive && source.raw_os_error() == Some(libc::EROFS) =>
        {
            return Ok(Some(TreeLock(None)));
        }
        Err(e) => return Err(e.into()),
    };
    let path = locks.join(&name);
    for _ in 0..LOCK_ROUNDS {
        let fd = if exclusive {
            let fd = crate::sys::open_private_lock_file(path.path())?;
            if !crate::sys::try_flock_exclusive(fd.as_fd())? {
                return Ok(None);
            }
            fd
        } else {
            let Some(fd) = crate::sys::open_private_lock_file_to_read(path.path())? else {
                return Ok(Some(TreeLock(None)));
            };
            crate::sys::flock_shared(fd.as_fd())?;
            fd
        };
        // Still the file at the name: one removed while this process waited for it (a gone
        // directory's, by its last holder or a sweep) is no one's lock any more.
        if names(path.path(), &fd) {
            return Ok(Some(TreeLock(Some(Box::new(HeldLock {
                fd,
                locks,
                name,
                dir: dir.try_clone()?,
            })))));
        }
    }
    Err(std::io::Error::other(format!(
        "the lock file {} was replaced while it was taken, {LOCK_ROUNDS} times",
        path.shown().display()
    )))
}

/// A kept tree in use: its path and the shared lock that keeps eviction off it.
#[derive(Debug)]
pub struct KeptTree {
    path: PathBuf,
    key: String,
    id: (u64, u64),
    host: PathBuf,
    _lock: TreeLock,
    anchor: Arc<Anchor>,
}

impl KeptTree {
    /// The tree's directory (through the trees directory's descriptor).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path the sandbox binds the tree from, and the device and inode it must be there.
    pub fn bind_source(&self) -> (&Path, Option<(u64, u64)>) {
        (&self.host, Some(self.id))
    }

    /// Set this tree aside (it did not match its package's signed map): renamed out of its name
    /// at once, removed when no run uses it any more (now or at a later eviction); then a new
    /// work directory to extract the package into instead.
    pub fn discard_for_work(self) -> std::io::Result<WorkDir> {
        let anchor = self.anchor.clone();
        let aside = anchor
            .path()
            .join(format!(".discard-{}-{}", self.key, std::process::id()));
        let renamed = std::fs::rename(&self.path, &aside).is_ok();
        drop(self);
        if renamed {
            remove_if_unused(&anchor, &aside);
        }
        work_dir_in(anchor)
    }
}

/// A fresh work directory among the trees, locked like a kept tree.
#[derive(Debug)]
pub struct WorkDir {
    /// The directory (removed on drop unless kept; dropped first, while the anchor is open).
    pub dir: tempfile::TempDir,
    id: (u64, u64),
    host: PathBuf,
    /// The directory, open (its modification time marks its use: [`evict`] goes by it).
    handle: File,
    lock: TreeLock,
    anchor: Arc<Anchor>,
}

impl WorkDir {
    /// The path the sandbox binds the directory from, and the device and inode it must be there.
    pub fn bind_source(&self) -> (&Path, Option<(u64, u64)>) {
        (&self.host, Some(self.id))
    }
}

impl Trees {
    /// The trees under `state_dir`, at most `keep` of them (0: none are kept). Nothing is made
    /// on disk before a tree is needed.
    pub fn new(state_dir: &Path, keep: usize) -> Trees {
        Trees {
            state_dir: state_dir.to_path_buf(),
            keep,
            max_bytes: u64::MAX,
            explicit: false,
        }
    }

    /// The same, marked as asked for by the operator (`trust.keep_trees` set, not the
    /// default): then a state directory no sandbox of this uid can bind from is a warning at
    /// every run. By default it is not — root's `run` on the service user's 0750 state
    /// directory is the packaged layout's normal case, and a warning on every normal run
    /// teaches operators to ignore warnings.
    pub fn explicit(self, explicit: bool) -> Trees {
        Trees { explicit, ..self }
    }

    /// Whether the operator asked for trees ([`Trees::explicit`]).
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// The same, with the kept trees' files at most `max_bytes` together (0: none are kept).
    pub fn with_max_bytes(self, max_bytes: u64) -> Trees {
        Trees { max_bytes, ..self }
    }

    /// Whether trees are kept at all.
    pub fn enabled(&self) -> bool {
        self.keep > 0 && self.max_bytes > 0
    }

    /// This uid's trees directory, made when `create` and missing, once a sandbox of this uid
    /// can reach it (else `PermissionDenied`, and nothing is made: a tree there could never be
    /// bound). `NotFound` when the state directory is missing.
    fn anchor(&self, create: bool) -> std::io::Result<Arc<Anchor>> {
        let state = open_state_dir(&self.state_dir)?;
        // The sandbox binds from the state directory's real path, the one checked here: through
        // a symlink the init would also walk the directories above the link, which a check of
        // the target's ancestors does not see (a link in a 0700 home of another user: 125).
        // The path of the directory opened, not the name resolved again (one object decides).
        let real = std::fs::read_link(format!("/proc/self/fd/{}", state.as_raw_fd()))?;
        if !reachable_by_sandboxes(&real) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} (or a directory above it) is another user's and not searchable by \
                     others, so a sandbox of this uid cannot bind from it",
                    real.display()
                ),
            ));
        }
        self.open_anchor(&state, &real, create)
    }

    /// This uid's trees directory under the open state directory, whether or not a sandbox can
    /// reach it (what [`Trees::sweep_leftovers`] needs).
    ///
    /// Its name: `trees` for the state directory's owner, `trees-<uid>` for any other uid (root's
    /// `run` on the service user's state directory in the packaged layout). Why one per uid: the
    /// directory must be its uid's alone, and two uids using one state directory (root's `run`
    /// and the service user's `serve`) would otherwise take it from each other — whoever made it
    /// first kept it, the other extracted into `$TMPDIR` with a warning on every load or run.
    /// The owner's name stays `trees`, as it was before there were two: when it finds a
    /// `trees` of another uid there (an earlier build's root `run` made it), it renames it to
    /// that uid's name and makes its own; it never touches what is inside.
    fn open_anchor(&self, state: &File, real: &Path, create: bool) -> std::io::Result<Arc<Anchor>> {
        let me = nix::unistd::geteuid().as_raw();
        let owner = state.metadata()?.uid();
        let name = trees_dir_name(owner, me);
        if create && owner == me {
            move_foreign_trees_aside(state, me);
        }
        // 0711 exactly when made: the umask (the shipped units' 077, a hardened root's) would
        // leave it 0700, and no sandbox's uid could reach the trees it binds.
        let held = HeldDir::open_in(
            state.as_fd(),
            real.join(&name),
            &name,
            create.then_some(0o711),
            DirOwner::SelfOnly,
        )?;
        Ok(Arc::new(held))
    }

    /// The kept tree for `key` (a statement digest), locked and its use recorded; `None` when
    /// there is none, or its lock cannot be taken. Not checked yet: [`check_kept`] is the
    /// caller's.
    ///
    /// The shared lock ([`TreeLock`]) may be waited for: only this uid's processes can hold it,
    /// exclusively only an eviction, which renames the tree away at once (then this lookup finds
    /// it gone). What another user does to the tree's directory (it is 0755: a `flock` of it,
    /// shared or exclusive, held for ever) changes nothing here: that lock is not looked at.
    pub fn find(&self, key: &str) -> Option<KeptTree> {
        if !self.enabled() || !is_key(key) {
            return None;
        }
        let anchor = self.anchor(false).ok()?;
        let path = anchor.path().join(key);
        let dir = open_dir(&path).ok()?;
        let lock = lock_tree(&anchor, &dir, false).ok()??;
        // Still under its name (an eviction may have renamed it before this lock was granted).
        let linked = std::fs::symlink_metadata(&path).ok()?;
        let held = dir.metadata().ok()?;
        if (linked.dev(), linked.ino()) != (held.dev(), held.ino()) {
            return None;
        }
        // Most recently used first when evicting.
        let _ = dir.set_modified(SystemTime::now());
        Some(KeptTree {
            path,
            key: key.to_string(),
            id: (held.dev(), held.ino()),
            host: anchor.shown().join(key),
            _lock: lock,
            anchor,
        })
    }

    /// A new private (0700) work directory among the trees, locked (`.work-<pid>-…`). Also
    /// what `stockade serve` extracts each loaded package into, whether or not trees are kept:
    /// the lock is held for as long as the package is loaded, so [`Trees::sweep_leftovers`]
    /// finds a SIGKILLed daemon's directories unlocked and removes them.
    pub fn work_dir(&self) -> std::io::Result<WorkDir> {
        work_dir_in(self.anchor(true)?)
    }

    /// Remove the leftovers of runs and daemons that ended without cleaning up (SIGKILL, a
    /// crash): work and set-aside directories no process holds a lock on (see [`evict`]).
    /// `stockade serve` calls this at start; a `run` that keeps a tree does it on the way.
    pub fn sweep_leftovers(&self) {
        let Ok(state) = open_state_dir(&self.state_dir) else {
            return;
        };
        // A trees directory whose making a crash cut short (between its `mkdirat` and its
        // rename) is an empty temporary directory in the state directory.
        crate::fileio::sweep_made_dirs(state.as_fd());
        if let Ok(anchor) = self.open_anchor(&state, &self.state_dir, false) {
            sweep_leftovers(&anchor);
        }
    }

    /// Keep `work` (a verified, launched package's tree, `bytes` of files by its signed map) as
    /// the tree for `key`, then evict the least recently used trees beyond the limits. `Err` gives `work` back when the name is
    /// taken (another run kept the same package first) or the rename fails: it stays a
    /// temporary directory.
    pub fn keep(&self, key: &str, work: WorkDir, bytes: u64) -> Result<KeptTree, WorkDir> {
        if !self.enabled() || !is_key(key) || bytes > self.max_bytes {
            return Err(work);
        }
        let path = work.anchor.path().join(key);
        let renamed = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            work.dir.path(),
            nix::fcntl::AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        );
        if renamed.is_err() {
            return Err(work);
        }
        let WorkDir {
            dir,
            id,
            handle,
            lock,
            anchor,
            ..
        } = work;
        // Renamed: the temporary directory's path is gone; nothing to remove on its drop.
        let _ = dir.keep();
        let _ = handle.set_modified(SystemTime::now());
        evict(&anchor, self.keep, self.max_bytes);
        Ok(KeptTree {
            path,
            key: key.to_string(),
            id,
            host: anchor.shown().join(key),
            _lock: lock,
            anchor,
        })
    }
}

/// Whether a sandbox's init can reach a trees directory in the state directory `real` (its real
/// path) to bind a tree from it: every directory from `/` to it this uid's or searchable by
/// others (the init opens the bind source with this process's host uid, without its groups and
/// without capabilities over the host's files, see `sandbox::child`). In the packaged layout
/// the state directory is the service user's and 0750 (docs/store.md): a daemon of that user
/// reaches it, root's does not.
fn reachable_by_sandboxes(real: &Path) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    real.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.uid() == me || m.mode() & 0o001 != 0))
}

/// The name of uid `me`'s trees directory in a state directory `owner` owns
/// ([`Trees::open_anchor`]).
fn trees_dir_name(owner: u32, me: u32) -> String {
    if owner == me {
        TREES_DIR.to_string()
    } else {
        format!("{TREES_DIR}-{me}")
    }
}

/// In a state directory of uid `me`'s, rename a `trees` directory of another uid to that uid's
/// name (`trees-<uid>`), unless that name is taken; anything else (this uid's, a symlink, a
/// file) stays, and the open that follows decides.
fn move_foreign_trees_aside(state: &File, me: u32) {
    let Ok(st) =
        nix::sys::stat::fstatat(state, TREES_DIR, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
    else {
        return;
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_uid != me {
        let _ = nix::fcntl::renameat2(
            state,
            TREES_DIR,
            state,
            format!("{TREES_DIR}-{}", st.st_uid).as_str(),
            RenameFlags::RENAME_NOREPLACE,
        );
    }
}

fn work_dir_in(anchor: Arc<Anchor>) -> std::io::Result<WorkDir> {
    // The maker's pid in the name lets a sweep tell a dead process's leftover at once.
    let dir = tempfile::Builder::new()
        .prefix(&format!(".work-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(anchor.path())?;
    let handle = open_dir(dir.path())?;
    // Shared: `None` only for an exclusive lock.
    let lock = lock_tree(&anchor, &handle, false)?
        .ok_or_else(|| std::io::Error::other("a shared lock was not granted"))?;
    let m = handle.metadata()?;
    let host = anchor
        .shown()
        .join(dir.path().file_name().unwrap_or_default());
    Ok(WorkDir {
        dir,
        id: (m.dev(), m.ino()),
        host,
        handle,
        lock,
        anchor,
    })
}

/// Remove the least recently used trees beyond `keep` trees or `max_bytes` of files, and the
/// leftovers of runs that ended without cleaning up (killed): whatever no run holds a lock on.
fn evict(anchor: &Anchor, keep: usize, max_bytes: u64) {
    let dir = anchor.path();
    sweep_leftovers(anchor);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut kept = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(m) = e.metadata() else { continue };
        if is_key(&name) {
            kept.push((m.modified().unwrap_or(now), name));
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    // Most recent first: a tree stays while both bounds hold with it.
    let mut total: u64 = 0;
    for (i, (_, name)) in kept.into_iter().enumerate() {
        let path = dir.join(&name);
        let bytes = if max_bytes == u64::MAX {
            0
        } else {
            tree_bytes(&path)
        };
        if i < keep && total.saturating_add(bytes) <= max_bytes {
            total = total.saturating_add(bytes);
            continue;
        }
        // In use (or its lock not one this uid may take): left for a later eviction (its files
        // still take their room).
        let Some((f, lock)) = lock_unused(anchor, &path) else {
            total = total.saturating_add(bytes);
            continue;
        };
        let aside = dir.join(format!(".discard-{name}-{}", std::process::id()));
        if std::fs::rename(&path, &aside).is_ok() {
            // Another eviction and a keep between the check and the rename: what was renamed
            // aside is left to a later sweep, which takes its own lock.
            if names(&aside, &f) {
                let _ = std::fs::remove_dir_all(&aside);
            }
            // Its file goes with it ([`TreeLock`]'s drop).
            drop(lock);
        }
    }
}

/// The directory at `path` among the trees and its lock, taken exclusively; `None` when some
/// process holds it (in use), when it cannot be taken, or when `path` no longer names the
/// directory locked (another eviction removed it first).
fn lock_unused(anchor: &Anchor, path: &Path) -> Option<(File, TreeLock)> {
    let f = open_dir(path).ok()?;
    let lock = lock_tree(anchor, &f, true).ok()??;
    names(path, &f).then_some((f, lock))
}

/// Remove the lock files of directories that are no longer among the trees (a work directory
/// removed on its drop, a crash between a removal and its lock file's), unless held: a process
/// that just made a directory whose inode number the file names holds it, or finds it removed
/// once granted and takes a new one ([`lock_tree`]).
fn sweep_stale_locks(anchor: &Anchor) {
    let Ok(locks) = anchor.open_child_as(LOCKS_DIR, None, DirOwner::SelfOnly) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(anchor.path()) else {
        return;
    };
    let live: HashSet<String> = entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| lock_name(&m))
        .collect();
    let Ok(files) = std::fs::read_dir(locks.path()) else {
        return;
    };
    for e in files.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if live.contains(&name) {
            continue;
        }
        let path = locks.join(&name);
        if let Ok(fd) = crate::sys::open_private_lock_file(path.path()) {
            unlink_if_unheld(path.path(), &fd);
        }
    }
}

/// Remove the set-aside trees and the work directories left by processes that ended without
/// cleaning up, unless some process holds a lock on them. A work directory is a leftover once
/// older than [`crate::fileio::LEFTOVER_AGE`], or [`crate::fileio::DEAD_MAKER_AGE`] when the
/// pid its name carries is gone ([`leftover_is_stale`]).
fn sweep_leftovers(anchor: &Anchor) {
    sweep_unlocked(
        &anchor.path(),
        &[".work-", ".discard-"],
        |name, age, _| match name.strip_prefix(".work-") {
            Some(rest) => leftover_is_stale(rest, age),
            None => name.starts_with(".discard-"),
        },
        |path| remove_if_unused(anchor, path),
    );
    sweep_stale_locks(anchor);
    // The lock directory's making cut short by a crash.
    anchor.sweep_made_dirs();
}

/// Hand to `remove` each entry of `dir` named with one of `prefixes` that `leftover` (given its
/// name, its age since last changed, and its metadata, symlinks not followed) calls a leftover:
/// `remove` removes it unless some process holds its lock ([`remove_if_unused`] for the trees,
/// the extraction directories' own for those). The one walk of the trees' and the extraction
/// directories' sweeps; only the names are read of the others (a busy `$TMPDIR` is walked at
/// every extraction into it).
pub(crate) fn sweep_unlocked(
    dir: &Path,
    prefixes: &[&str],
    leftover: impl Fn(&str, std::time::Duration, &std::fs::Metadata) -> bool,
    remove: impl Fn(&Path),
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        let age = now
            .duration_since(m.modified().unwrap_or(now))
            .unwrap_or_default();
        if leftover(&name, age, &m) {
            remove(&e.path());
        }
    }
}

/// The sum of the sizes of the regular files under `root` (symlinks not followed; what cannot be
/// read counts as nothing).
fn tree_bytes(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .fold(0, u64::saturating_add)
}

/// Remove `path`, a directory among the trees, and its lock file unless some run holds its
/// lock ([`TreeLock`]).
fn remove_if_unused(anchor: &Anchor, path: &Path) {
    if let Some((_, lock)) = lock_unused(anchor, path) {
        let _ = std::fs::remove_dir_all(path);
        // Its file goes with it.
        drop(lock);
    }
}

/// The state directory (a symlink to it is followed: the operator may place it anywhere).
fn open_state_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

/// Open the directory `path` and take a shared lock on it: what marks an extraction directory
/// in use for [`remove_dir_if_unlocked`] (`verify::FreshDir`). Waits for an exclusive lock, so
/// only for a directory this process made 0700 and keeps so, which no other user can open (and
/// lock for ever). Not for the trees: they are opened up to others ([`TreeLock`]).
pub(crate) fn lock_dir_shared(path: &Path) -> std::io::Result<Flock<File>> {
    Flock::lock(open_dir(path)?, FlockArg::LockShared).map_err(|(_, e)| std::io::Error::from(e))
}

/// Remove the directory `path` unless some process holds a lock on it ([`lock_dir_shared`]):
/// the directory locked is the one removed, through its descriptor
/// ([`crate::fileio::remove_dir_through`]), whatever is renamed to its name meanwhile.
pub(super) fn remove_dir_if_unlocked(path: &Path) {
    if let Ok(f) = open_dir(path) {
        if let Ok(lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            crate::fileio::remove_dir_through(path, lock.as_fd());
            drop(lock);
        }
    }
}

fn open_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// A statement digest in hex: the only names a kept tree has.
fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One difference between a tree (an installed plugin's, a kept one) and its signed file map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum TreeProblem {
    /// A file of the map is gone.
    Missing {
        /// Path in the tree.
        path: String,
    },
    /// A file of the map, or a directory above one, differs.
    Changed {
        /// Path in the tree (`.`: the tree's own directory).
        path: String,
        /// What differs.
        what: String,
    },
    /// Something not in the map.
    Extra {
        /// Path in the tree.
        path: String,
    },
}

impl TreeProblem {
    /// The entry concerned.
    pub fn path(&self) -> &str {
        match self {
            TreeProblem::Missing { path }
            | TreeProblem::Changed { path, .. }
            | TreeProblem::Extra { path } => path,
        }
    }
}

impl std::fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeProblem::Missing { path } => write!(f, "missing: {path}"),
            TreeProblem::Changed { path, what } => write!(f, "changed: {path} ({what})"),
            TreeProblem::Extra { path } => write!(f, "extra: {path}"),
        }
    }
}

/// Compare the tree at `root` with the signed file map, as extraction wrote it: every entry
/// present with its kind, mode, size and digest (or link target), each file owned by this uid
/// with one link (read through a descriptor opened without following a symlink), the tree's
/// directories this uid's and writable by it alone, and nothing else but the directories the
/// map implies. Every difference found is returned.
pub fn check_tree(root: &Path, files: &BTreeMap<String, FileEntry>) -> Vec<TreeProblem> {
    check_tree_of(root, files, nix::unistd::geteuid().as_raw())
}

/// [`check_tree`] of a tree `uid` made: an installed plugin's tree checked by another user
/// than the store's owner (`verify NAME` as the daemon's user on root's store).
pub fn check_tree_of(
    root: &Path,
    files: &BTreeMap<String, FileEntry>,
    uid: u32,
) -> Vec<TreeProblem> {
    let mut out = Vec::new();
    if let Some(what) = std::fs::symlink_metadata(root)
        .map_err(|e| e.to_string())
        .and_then(|m| dir_problem(&m, uid).map_or(Ok(()), Err))
        .err()
    {
        out.push(TreeProblem::Changed {
            path: ".".into(),
            what,
        });
        return out;
    }
    for (rel, entry) in files {
        let p = root.join(rel);
        let changed = |what: String| TreeProblem::Changed {
            path: rel.clone(),
            what,
        };
        match entry {
            FileEntry::File { mode, sha256, size } => {
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(&p);
                let (f, md) = match f.and_then(|f| Ok((f.metadata()?, f))) {
                    Ok((md, f)) => (f, md),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        out.push(TreeProblem::Missing { path: rel.clone() });
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                        out.push(changed("no longer a regular file".into()));
                        continue;
                    }
                    Err(e) => {
                        out.push(changed(format!("unreadable: {e}")));
                        continue;
                    }
                };
                if !md.file_type().is_file() {
                    out.push(changed("no longer a regular file".into()));
                    continue;
                }
                if md.mode() & 0o7777 != *mode {
                    out.push(changed(format!(
                        "mode {:04o}, signed {mode:04o}",
                        md.mode() & 0o7777
                    )));
                }
                if md.uid() != uid {
                    out.push(changed(format!("owner uid {}, not {uid}", md.uid())));
                }
                if md.nlink() != 1 {
                    out.push(changed(format!("{} hard links", md.nlink())));
                }
                if md.size() != *size {
                    out.push(changed(format!("size {}, signed {size}", md.size())));
                    continue;
                }
                match sha256_of(f) {
                    Ok(d) if d == *sha256 => {}
                    Ok(d) => out.push(changed(format!(
                        "sha256 {}, signed {}",
                        hex::encode(d),
                        hex::encode(sha256)
                    ))),
                    Err(e) => out.push(changed(format!("unreadable: {e}"))),
                }
            }
            FileEntry::Symlink { target } => match std::fs::read_link(&p) {
                Ok(t) if t.as_os_str().as_encoded_bytes() == target.as_bytes() => {}
                Ok(t) => out.push(changed(format!(
                    "link to `{}`, signed `{target}`",
                    t.display()
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    out.push(TreeProblem::Missing { path: rel.clone() })
                }
                Err(_) => out.push(changed("no longer a symlink".into())),
            },
        }
    }
    let dirs: BTreeSet<String> = files
        .keys()
        .flat_map(|k| {
            k.match_indices('/')
                .map(|(i, _)| k[..i].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    walk_extras(root, "", files, &dirs, uid, &mut out);
    out
}

/// Why a directory of a tree is not one extraction made, if it is not.
fn dir_problem(m: &std::fs::Metadata, uid: u32) -> Option<String> {
    if !m.is_dir() {
        Some("no longer a directory".into())
    } else if m.uid() != uid {
        Some(format!("directory owned by uid {}, not {uid}", m.uid()))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "directory mode {:04o}: writable by others",
            m.mode() & 0o7777
        ))
    } else {
        None
    }
}

fn walk_extras(
    root: &Path,
    prefix: &str,
    files: &BTreeMap<String, FileEntry>,
    dirs: &BTreeSet<String>,
    uid: u32,
    out: &mut Vec<TreeProblem>,
) {
    let Ok(rd) = std::fs::read_dir(root.join(prefix)) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // `DirEntry::metadata` does not follow a symlink.
        let md = e.metadata();
        if md.as_ref().is_ok_and(|m| m.is_dir()) && dirs.contains(&rel) {
            if let Some(what) = md.ok().and_then(|m| dir_problem(&m, uid)) {
                out.push(TreeProblem::Changed {
                    path: rel.clone(),
                    what,
                });
            }
            walk_extras(root, &rel, files, dirs, uid, out);
        } else if !files.contains_key(&rel) {
            out.push(TreeProblem::Extra { path: rel });
        }
    }
}

fn sha256_of(mut f: File) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Step 8 on a kept tree: [`check_tree`] must find nothing, and `manifest.json` must be the signed
/// manifest (`manifest_canonical`: its canonical bytes), as extraction requires. The first
/// difference found is the answer; the summary is extraction's, from the map.
pub fn check_kept(
    root: &Path,
    map: &BTreeMap<String, FileEntry>,
    manifest_canonical: &[u8],
) -> Result<Extracted, TreeProblem> {
    if let Some(p) = check_tree(root, map).into_iter().next() {
        return Err(p);
    }
    let manifest = std::fs::read(root.join("manifest.json")).unwrap_or_default();
    if !super::extract::same_manifest(&manifest, manifest_canonical) {
        return Err(TreeProblem::Changed {
            path: "manifest.json".into(),
            what: "not the signed manifest".into(),
        });
    }
    Ok(summary_of(map))
}

/// What extraction reports for a tree it wrote from `map`: its files, symlinks and bytes.
pub fn summary_of(map: &BTreeMap<String, FileEntry>) -> Extracted {
    let mut summary = Extracted {
        files: 0,
        symlinks: 0,
        bytes: 0,
    };
    for e in map.values() {
        match e {
            FileEntry::File { size, .. } => {
                summary.files += 1;
                summary.bytes += size;
            }
            FileEntry::Symlink { .. } => summary.symlinks += 1,
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    const MANIFEST: &[u8] = br#"{"name":"t"}"#;

    /// A tree as extraction writes it (files of the signed mode, a directory, a symlink) and
    /// its signed map.
    fn tree(root: &Path) -> BTreeMap<String, FileEntry> {
        let files: [(&str, &[u8], u32); 3] = [
            ("manifest.json", MANIFEST, 0o644),
            ("bin/run", b"#!/bin/sh\n", 0o755),
            ("data/x", b"payload", 0o644),
        ];
        let mut map = BTreeMap::new();
        for (p, content, mode) in files {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, content).unwrap();
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
            let sha256 = Sha256::digest(content).into();
            let size = content.len() as u64;
            map.insert(p.to_string(), FileEntry::File { mode, sha256, size });
        }
        std::os::unix::fs::symlink("run", root.join("bin/link")).unwrap();
        map.insert(
            "bin/link".into(),
            FileEntry::Symlink {
                target: "run".into(),
            },
        );
        map
    }

    fn canonical() -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_slice(MANIFEST).unwrap();
        stockade_trust::canonical::to_vec(&v).unwrap()
    }

    #[test]
    fn a_tree_as_written_matches_and_is_summed_like_extraction() {
        let d = tempfile::tempdir().unwrap();
        let map = tree(d.path());
        let s = check_kept(d.path(), &map, &canonical()).unwrap();
        assert_eq!((s.files, s.symlinks, s.bytes), (3, 1, 29));
    }

    /// Each way a kept tree can differ from its map is found, and names the entry.
    #[test]
    fn every_difference_from_the_signed_map_is_found() {
        type Change = fn(&Path);
        let changes: [(&str, Change, &str); 10] = [
            (
                "content, same size",
                |r| std::fs::write(r.join("data/x"), b"PAYLOAD").unwrap(),
                "data/x",
            ),
            (
                "content, longer",
                |r| {
                    let mut f = OpenOptions::new()
                        .append(true)
                        .open(r.join("data/x"))
                        .unwrap();
                    f.write_all(b"!").unwrap();
                },
                "data/x",
            ),
            (
                "mode",
                |r| {
                    std::fs::set_permissions(
                        r.join("bin/run"),
                        std::fs::Permissions::from_mode(0o775),
                    )
                    .unwrap()
                },
                "bin/run",
            ),
            (
                "an extra file",
                |r| std::fs::write(r.join("data/y"), b"").unwrap(),
                "data/y",
            ),
            (
                "an extra directory",
                |r| std::fs::create_dir(r.join("extra")).unwrap(),
                "extra",
            ),
            (
                "a missing file",
                |r| std::fs::remove_file(r.join("data/x")).unwrap(),
                "data/x",
            ),
            (
                "a second link",
                |r| std::fs::hard_link(r.join("data/x"), r.join("data/x2")).unwrap(),
                "data/x|data/x2",
            ),
            (
                "a symlink's target",
                |r| {
                    std::fs::remove_file(r.join("bin/link")).unwrap();
                    std::os::unix::fs::symlink("../data/x", r.join("bin/link")).unwrap();
                },
                "bin/link",
            ),
            (
                "a directory made a symlink",
                |r| {
                    std::fs::rename(r.join("data"), r.join("elsewhere")).unwrap();
                    std::os::unix::fs::symlink("elsewhere", r.join("data")).unwrap();
                },
                "data|elsewhere",
            ),
            (
                "a group-writable directory",
                |r| {
                    std::fs::set_permissions(r.join("bin"), std::fs::Permissions::from_mode(0o775))
                        .unwrap()
                },
                "bin",
            ),
        ];
        for (what, change, entry) in changes {
            let d = tempfile::tempdir().unwrap();
            let map = tree(d.path());
            change(d.path());
            match check_kept(d.path(), &map, &canonical()) {
                // The walk's order is the directory's: either of two entries may come first.
                Err(m) => assert!(entry.split('|').any(|e| m.path() == e), "{what}: {m}"),
                Ok(_) => panic!("{what}: not found"),
            }
        }
    }

    fn entry(content: &[u8], mode: u32) -> FileEntry {
        FileEntry::File {
            mode,
            sha256: Sha256::digest(content).into(),
            size: content.len() as u64,
        }
    }

    #[test]
    fn tree_check_reports_each_difference() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("lib")).unwrap();
        for (p, c, m) in [
            ("a", &b"alpha"[..], 0o644),
            ("lib/b", b"beta", 0o755),
            ("c", b"gamma", 0o644),
        ] {
            std::fs::write(root.join(p), c).unwrap();
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink("a", root.join("l")).unwrap();
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), entry(b"alpha", 0o644));
        files.insert("lib/b".to_string(), entry(b"beta", 0o755));
        files.insert("c".to_string(), entry(b"gamma", 0o644));
        files.insert("l".to_string(), FileEntry::Symlink { target: "a".into() });
        assert!(check_tree(root, &files).is_empty());
        std::fs::write(root.join("a"), b"ALPHA").unwrap();
        std::fs::set_permissions(root.join("lib/b"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::fs::remove_file(root.join("c")).unwrap();
        std::fs::write(root.join("lib/extra"), b"x").unwrap();
        std::fs::create_dir(root.join("newdir")).unwrap();
        let p = check_tree(root, &files);
        let s: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            s.iter().any(|s| s.starts_with("changed: a (sha256")),
            "{s:?}"
        );
        assert!(
            s.contains(&"changed: lib/b (mode 4755, signed 0755)".to_string()),
            "{s:?}"
        );
        assert!(s.contains(&"missing: c".to_string()), "{s:?}");
        assert!(s.contains(&"extra: lib/extra".to_string()), "{s:?}");
        assert!(s.contains(&"extra: newdir".to_string()), "{s:?}");
        assert_eq!(p.len(), 5, "{s:?}");
    }

    /// A file or directory given to another uid is not the tree extraction wrote (root can
    /// give it away; as another user the case cannot be made and is left out).
    #[test]
    fn another_owner_is_found() {
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        for entry in ["data/x", "data"] {
            let d = tempfile::tempdir().unwrap();
            let map = tree(d.path());
            std::os::unix::fs::chown(d.path().join(entry), Some(4242), None).unwrap();
            let problems = check_tree(d.path(), &map);
            assert!(
                problems
                    .iter()
                    .any(|p| p.path() == entry && p.to_string().contains("4242")),
                "{entry}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_manifest_other_than_the_signed_one_is_found() {
        let d = tempfile::tempdir().unwrap();
        let map = tree(d.path());
        let other = br#"{"name":"u"}"#;
        let e = check_kept(d.path(), &map, other).unwrap_err();
        assert_eq!(e.path(), "manifest.json", "{e}");
    }

    fn work_with_tree(trees: &Trees) -> (WorkDir, BTreeMap<String, FileEntry>) {
        let w = trees.work_dir().unwrap();
        let map = tree(w.dir.path());
        (w, map)
    }

    /// A state directory with one tree kept, under `KEY_A` (at most 4 kept), and its map.
    fn with_a_kept() -> (tempfile::TempDir, Trees, BTreeMap<String, FileEntry>) {
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 4);
        let (w, map) = work_with_tree(&trees);
        drop(trees.keep(KEY_A, w, TREE_BYTES).unwrap());
        (state, trees, map)
    }

    /// The names in the trees directory of `state` (its lock directory left out).
    fn tree_names(state: &Path) -> Vec<String> {
        std::fs::read_dir(state.join(TREES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCKS_DIR)
            .collect()
    }

    /// The lock files in the trees directory of `state`.
    fn lock_files(state: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(state.join(TREES_DIR).join(LOCKS_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// The bytes of files `tree` writes.
    const TREE_BYTES: u64 = 29;

    const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const KEY_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    #[test]
    fn a_kept_tree_is_found_again_and_its_name_is_never_replaced() {
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 4);
        assert!(trees.find(KEY_A).is_none());
        let (w, map) = work_with_tree(&trees);
        let kept = trees.keep(KEY_A, w, TREE_BYTES).unwrap();
        assert_eq!(
            std::fs::canonicalize(kept.path()).unwrap(),
            std::fs::canonicalize(state.path().join("trees").join(KEY_A)).unwrap()
        );
        let mode = std::fs::metadata(state.path().join("trees"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o711);
        drop(kept);
        let found = trees.find(KEY_A).unwrap();
        check_kept(found.path(), &map, &canonical()).unwrap();
        // A second run that kept the same package later: its directory stays temporary.
        let (w2, _) = work_with_tree(&trees);
        let back = trees.keep(KEY_A, w2, TREE_BYTES).unwrap_err();
        assert!(back.dir.path().exists());
        // Not a statement digest: never looked up, never kept under that name.
        assert!(trees.find("../x").is_none());
        let (w3, _) = work_with_tree(&trees);
        assert!(trees.keep("../x", w3, TREE_BYTES).is_err());
        // Off: nothing is found or kept.
        let off = Trees::new(state.path(), 0);
        assert!(off.find(KEY_A).is_none());
    }

    /// A kept tree is 0755 and its name public, so any user who can search the state directory
    /// can open it and `flock` it: a lookup that waited for an exclusive lock on it stalled
    /// every run of the package, and then one that passed it over extracted the package afresh
    /// for as long as the lock was held. The directory's lock is no one's concern now (the
    /// tree's lock is its lock file's, [`TreeLock`]): the tree is found, used and evicted all
    /// the same. Here the holder is this process on a descriptor of its own, which conflicts as
    /// another process's would; the wait for the lookup is bounded only so that one still
    /// waiting fails the test instead of hanging it.
    #[test]
    fn a_lock_on_a_kept_trees_directory_changes_nothing() {
        let (state, trees, _map) = with_a_kept();
        let tree = open_dir(&state.path().join(TREES_DIR).join(KEY_A)).unwrap();
        let held = Flock::lock(tree, FlockArg::LockExclusiveNonblock).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = trees.clone();
        std::thread::spawn(move || {
            // The tree found is dropped (unlocked) before the answer is sent.
            let found = other.find(KEY_A).is_some();
            let _ = tx.send(found);
        });
        let found = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the lookup waited for the lock on the directory");
        assert!(found, "a tree whose directory is locked was passed over");
        // Not in use by any run: evicted beyond the limit, the lock notwithstanding.
        let one = Trees::new(state.path(), 1);
        let (w, _) = work_with_tree(&one);
        drop(one.keep(KEY_B, w, TREE_BYTES).unwrap());
        assert_eq!(tree_names(state.path()), vec![KEY_B.to_string()]);
        drop(held);
    }

    /// The lever this closes: another user holding a shared `flock` on a kept tree (0755, its
    /// name public, in a state directory others may search) for ever. Eviction skipped it as in
    /// use, so `keep_trees` and `keep_trees_max_mib` could be exceeded by as many trees as
    /// packages are run, on the state directory owner's disk. Now it goes as any unused tree,
    /// and the lock file that does mark a tree in use cannot be opened by that user.
    #[test]
    fn another_users_lock_keeps_no_tree_past_eviction() {
        if !crate::test_support::root_or_skip("holding a lock as another uid needs root")
            || !crate::test_support::require(
                Path::new("/usr/bin/flock").exists(),
                "holding a lock as another user needs flock(1) (util-linux)",
            )
        {
            return;
        }
        let nobody = 65534;
        let (state, trees, _map) = with_a_kept();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // What `run` does for the plugin's uid.
        let tree = state.path().join(TREES_DIR).join(KEY_A);
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (held, _holder) = crate::test_support::hold::hold_lock_as(
            state.path(),
            nobody,
            nobody,
            &format!("{TREES_DIR}/{KEY_A}"),
            false,
        );
        assert!(held, "the other user could not lock the kept tree");
        let one = Trees::new(state.path(), 1);
        let (w, _) = work_with_tree(&one);
        let b = one.keep(KEY_B, w, TREE_BYTES).unwrap();
        assert_eq!(tree_names(state.path()), vec![KEY_B.to_string()]);
        // B's lock, the one that marks it in use, is not the other user's to open.
        let locks = lock_files(state.path());
        assert_eq!(locks.len(), 1, "{locks:?}");
        for l in &locks {
            let m = std::fs::symlink_metadata(l).unwrap();
            assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 0), "{l:?}");
            let rel = l.strip_prefix(state.path()).unwrap().to_str().unwrap();
            let (held, _h) =
                crate::test_support::hold::hold_lock_as(state.path(), nobody, nobody, rel, false);
            assert!(!held, "the other user locked the tree's lock file {rel}");
        }
        let m = std::fs::metadata(state.path().join(TREES_DIR).join(LOCKS_DIR)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        drop((b, trees));
    }

    /// A lock file goes with its directory: at the drop of the work directory, at an
    /// eviction, and (one a crash left, its directory gone) at the sweep of leftovers; one whose
    /// directory is still there stays.
    #[test]
    fn lock_files_go_with_their_directories() {
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 1);
        drop(trees.work_dir().unwrap());
        assert!(lock_files(state.path()).is_empty());
        let (w, _) = work_with_tree(&trees);
        drop(trees.keep(KEY_A, w, TREE_BYTES).unwrap());
        let (w, _) = work_with_tree(&trees);
        drop(trees.keep(KEY_B, w, TREE_BYTES).unwrap());
        assert_eq!(tree_names(state.path()), vec![KEY_B.to_string()]);
        let live = lock_files(state.path());
        assert_eq!(live.len(), 1, "{live:?}");
        let crashed = state.path().join(TREES_DIR).join(LOCKS_DIR).join("1-2");
        std::fs::write(&crashed, b"").unwrap();
        trees.sweep_leftovers();
        assert_eq!(lock_files(state.path()), live);
    }

    /// The lock files are opened as the store's lock is (`sys::open_private_lock_file`): one
    /// that is not a private regular file of this uid's — a symlink, a FIFO (which must not hang
    /// the lookup), another user's — is refused, so the tree is neither used (extracted afresh)
    /// nor evicted; one found wider than 0600 is narrowed back; a lock directory that is a
    /// symlink is refused, and nothing is made where it points.
    #[test]
    fn a_lock_file_that_is_not_a_private_one_is_refused() {
        let (state, trees, _map) = with_a_kept();
        let locks = state.path().join(TREES_DIR).join(LOCKS_DIR);
        let name = lock_name(&std::fs::metadata(state.path().join(TREES_DIR).join(KEY_A)).unwrap());
        let lock = locks.join(&name);
        let evicted = |state: &Path| {
            let one = Trees::new(state, 1);
            let (w, _) = work_with_tree(&one);
            drop(one.keep(KEY_B, w, TREE_BYTES).unwrap());
            !tree_names(state).contains(&KEY_A.to_string())
        };
        // Wider: narrowed back, and the tree used.
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(trees.find(KEY_A).is_some());
        let mode = std::fs::metadata(&lock).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600);

        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        std::fs::write(&target, b"").unwrap();
        let target_mode = || std::fs::metadata(&target).unwrap().mode() & 0o7777;
        let mode_before = target_mode();
        let fifo = |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let symlink = |p: &Path| std::os::unix::fs::symlink(&target, p).unwrap();
        type Plant<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>);
        let mut plants: Vec<Plant> =
            vec![("a symlink", Box::new(symlink)), ("a FIFO", Box::new(fifo))];
        if crate::test_support::root_or_skip("a lock file of another uid needs root") {
            plants.push((
                "another user's file",
                Box::new(|p: &Path| {
                    std::fs::write(p, b"").unwrap();
                    std::os::unix::fs::chown(p, Some(4242), None).unwrap();
                }),
            ));
        }
        for (what, plant) in &plants {
            std::fs::remove_file(&lock).unwrap();
            plant(&lock);
            assert!(trees.find(KEY_A).is_none(), "{what}: the tree was used");
            assert!(!evicted(state.path()), "{what}: the tree was evicted");
            // Keep A the least recently used, and B's tree out of the next round.
            for n in tree_names(state.path()) {
                if n != KEY_A {
                    std::fs::remove_dir_all(state.path().join(TREES_DIR).join(n)).unwrap();
                }
            }
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        // What the symlink pointed at was neither locked for nor narrowed.
        assert_eq!(target_mode(), mode_before);
        // Made right again: used and evicted as any tree.
        std::fs::remove_file(&lock).unwrap();
        assert!(trees.find(KEY_A).is_some());
        assert!(evicted(state.path()));

        // The lock directory itself a symlink: refused, nothing made where it points.
        let (state, trees, _map) = with_a_kept();
        let locks = state.path().join(TREES_DIR).join(LOCKS_DIR);
        std::fs::remove_dir_all(&locks).unwrap();
        let away = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(away.path(), &locks).unwrap();
        assert!(trees.find(KEY_A).is_none());
        assert!(trees.work_dir().is_err());
        assert_eq!(std::fs::read_dir(away.path()).unwrap().count(), 0);
    }

    #[test]
    fn eviction_removes_the_least_recently_used_unless_in_use() {
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 1);
        let (w, _) = work_with_tree(&trees);
        let a = trees.keep(KEY_A, w, TREE_BYTES).unwrap();
        // A is in use (locked) while B is kept beyond the limit of one: A stays.
        let (w, _) = work_with_tree(&trees);
        let b = trees.keep(KEY_B, w, TREE_BYTES).unwrap();
        assert!(a.path().exists() && b.path().exists());
        drop((a, b));
        // Now nothing is in use: keeping C leaves only C, the most recent.
        let (w, _) = work_with_tree(&trees);
        let c = trees.keep(KEY_C, w, TREE_BYTES).unwrap();
        let names = tree_names(state.path());
        assert_eq!(names, vec![KEY_C.to_string()], "{names:?}");
        drop(c);
    }

    #[test]
    fn the_size_bound_evicts_the_least_recently_used_and_refuses_a_tree_too_large() {
        // Each test tree holds TREE_BYTES = 29 bytes of files.
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 8).with_max_bytes(40);
        let (w, map) = work_with_tree(&trees);
        assert_eq!(tree_bytes(w.dir.path()), TREE_BYTES);
        assert_eq!(summary_of(&map).bytes, TREE_BYTES);
        drop(trees.keep(KEY_A, w, TREE_BYTES).unwrap());
        let (w, _) = work_with_tree(&trees);
        let b = trees.keep(KEY_B, w, TREE_BYTES).unwrap();
        // A and B would take 58 > 40: A, the older and unused, goes.
        assert_eq!(tree_names(state.path()), vec![KEY_B.to_string()]);
        // In use, B stays even when C alone fills the budget.
        let (w, _) = work_with_tree(&trees);
        let c = trees.keep(KEY_C, w, TREE_BYTES).unwrap();
        let mut names = tree_names(state.path());
        names.sort();
        assert_eq!(names, vec![KEY_B.to_string(), KEY_C.to_string()]);
        drop((b, c));
        // Larger than the whole budget: not kept, it stays a temporary directory.
        let small = Trees::new(state.path(), 8).with_max_bytes(20);
        let (w, _) = work_with_tree(&small);
        let back = small.keep(KEY_A, w, TREE_BYTES).unwrap_err();
        assert!(back.dir.path().exists());
        // A budget of 0 keeps nothing, like `keep_trees = 0`.
        assert!(!Trees::new(state.path(), 8).with_max_bytes(0).enabled());
    }

    #[test]
    fn a_discarded_tree_leaves_its_name_and_goes_when_unused() {
        let (state, trees, _) = with_a_kept();
        let user = trees.find(KEY_A).unwrap();
        let other = trees.find(KEY_A).unwrap();
        // Another run still uses it: renamed aside at once, removed later.
        let work = user.discard_for_work().unwrap();
        assert!(trees.find(KEY_A).is_none());
        let aside = |n: &str| n.starts_with(".discard-");
        let names = || tree_names(state.path());
        assert!(names().iter().any(|n| aside(n)), "{:?}", names());
        drop(other);
        // The next keep evicts what no one holds.
        let (w2, _) = work_with_tree(&trees);
        drop(trees.keep(KEY_B, w2, TREE_BYTES).unwrap());
        assert!(!names().iter().any(|n| aside(n)), "{:?}", names());
        drop(work);
    }

    /// The paths handed out go through the trees directory's descriptor: renaming the
    /// directory away and putting another in its place (what the owner of the state directory
    /// could do) changes nothing for a tree in use.
    #[test]
    fn a_tree_in_use_cannot_be_redirected_by_renaming_the_trees_directory() {
        let (state, trees, map) = with_a_kept();
        let found = trees.find(KEY_A).unwrap();
        let dir = state.path().join(TREES_DIR);
        std::fs::rename(&dir, state.path().join("moved")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let decoy = dir.join(KEY_A);
        std::fs::create_dir(&decoy).unwrap();
        std::fs::write(decoy.join("manifest.json"), b"{}").unwrap();
        check_kept(found.path(), &map, &canonical()).unwrap();
        assert_eq!(
            std::fs::read(found.path().join("data/x")).unwrap(),
            b"payload"
        );
    }

    #[test]
    fn a_trees_directory_that_is_a_symlink_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), state.path().join(TREES_DIR)).unwrap();
        let trees = Trees::new(state.path(), 4);
        assert!(trees.work_dir().is_err());
        assert!(trees.find(KEY_A).is_none());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_trees_directory_writable_by_others_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join(TREES_DIR);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Trees::new(state.path(), 4).work_dir().is_err());
    }

    /// Two uids on one state directory (root's `run` and the service user's `serve` in the
    /// packaged layout) each get a trees directory of their own: `trees` is the owner's,
    /// `trees-<uid>` another's; an owner finding a `trees` of another uid (an earlier build's)
    /// renames it to that uid's name, contents untouched, and makes its own.
    #[test]
    fn each_uid_has_its_own_trees_directory() {
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        let me = nix::unistd::geteuid().as_raw();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(other.path(), Some(4242), None).unwrap();
        std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = Trees::new(other.path(), 4).work_dir().unwrap();
        assert_eq!(tree_names_in(other.path()), [format!("trees-{me}")]);
        assert!(w.dir.path().starts_with("/proc/self/fd/"));
        assert_eq!(
            w.bind_source().0.parent().unwrap(),
            other.path().join(format!("trees-{me}"))
        );

        let mine = tempfile::tempdir().unwrap();
        let foreign = mine.path().join(TREES_DIR);
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("theirs"), b"x").unwrap();
        std::os::unix::fs::chown(&foreign, Some(4242), None).unwrap();
        let w = Trees::new(mine.path(), 4).work_dir().unwrap();
        assert_eq!(
            tree_names_in(mine.path()),
            [TREES_DIR.to_string(), "trees-4242".to_string()]
        );
        assert!(mine.path().join("trees-4242/theirs").exists());
        assert_eq!(
            w.bind_source().0.parent().unwrap(),
            mine.path().join(TREES_DIR)
        );
    }

    /// A state directory a sandbox of this uid cannot search (root's `run` on the service user's
    /// 0750 one): no tree is kept or made there — the sandbox's bind would fail (125) — and the
    /// error says why.
    #[test]
    fn nothing_is_made_where_no_sandbox_could_bind_from() {
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        let state = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(state.path(), Some(4242), None).unwrap();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let trees = Trees::new(state.path(), 4);
        let e = trees.work_dir().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("not searchable by others"), "{e}");
        assert!(trees.find(KEY_A).is_none());
        assert!(tree_names_in(state.path()).is_empty());
        // A missing state directory is still `NotFound` (nothing is kept, silently).
        let gone = Trees::new(&state.path().join("missing"), 4)
            .work_dir()
            .unwrap_err();
        assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    }

    /// A state directory named through a symlink that sits in a directory the sandbox cannot
    /// search: the tree is bound from the state directory's real path, whose every directory
    /// was checked, not through the link (the init's open failed there: 125).
    #[test]
    fn trees_are_bound_from_the_state_directorys_real_path() {
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("state");
        std::fs::create_dir(&real).unwrap();
        let private = t.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::os::unix::fs::symlink(&real, private.join("link")).unwrap();
        std::os::unix::fs::chown(&private, Some(4242), None).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let w = Trees::new(&private.join("link"), 4).work_dir().unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(w.bind_source().0.parent().unwrap(), real.join(TREES_DIR));
    }

    /// A crash between the making of the trees directory and its rename into place leaves an
    /// empty temporary directory in the state directory (`fileio::make_dir_at`): the sweep of
    /// leftovers removes this uid's once stale.
    #[test]
    fn the_sweep_removes_a_trees_directory_whose_making_a_crash_cut_short() {
        let state = tempfile::tempdir().unwrap();
        let left = state
            .path()
            .join(format!("{}999999999-a", crate::fileio::MADE_DIR_PREFIX));
        std::fs::create_dir(&left).unwrap();
        open_dir(&left)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(2))
            .unwrap();
        Trees::new(state.path(), 4).sweep_leftovers();
        assert!(!left.exists());
    }

    /// The trees directory is made as every held directory is: a directory the state
    /// directory's owner moves into the temporary name between the `mkdirat` and the `openat`
    /// is refused, not `chmod`ed 0711 and used for trees.
    #[test]
    fn a_directory_swapped_in_while_the_trees_directory_is_made_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let victim = state.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
        let _hook = crate::fileio::held::test_hook::set_after_mkdir(|parent, name| {
            nix::fcntl::renameat(parent, "victim", parent, name).unwrap();
        });
        assert!(Trees::new(state.path(), 4).work_dir().is_err());
        assert!(!state.path().join(TREES_DIR).exists());
        let moved: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(std::fs::metadata(&moved[0]).unwrap().mode() & 0o7777, 0o700);
    }

    /// The names of the trees directories in a state directory.
    fn tree_names_in(state: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TREES_DIR))
            .collect();
        v.sort();
        v
    }

    /// A work directory unlocked whose maker is gone is a leftover after a moment, not after
    /// [`crate::fileio::LEFTOVER_AGE`]; one in use (locked) stays; one of a live maker waits for the age.
    #[test]
    fn leftovers_of_dead_makers_are_swept_and_those_in_use_kept() {
        let state = tempfile::tempdir().unwrap();
        let trees = Trees::new(state.path(), 0);
        let mine = trees.work_dir().unwrap();
        let name = mine
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!(".work-{}-", std::process::id())),
            "{name}"
        );
        let dir = state.path().join(TREES_DIR);
        let aged = |n: &str, age: Duration| {
            let p = dir.join(n);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("f"), b"x").unwrap();
            open_dir(&p)
                .unwrap()
                .set_modified(SystemTime::now() - age)
                .unwrap();
            p
        };
        // No pid is ever above pid_max (at most 2^22).
        let dead = aged(".work-999999999-abc", Duration::from_secs(2));
        let dead_fresh = aged(".work-999999998-abc", Duration::ZERO);
        let live = aged(
            &format!(".work-{}-xyz", std::process::id()),
            Duration::from_secs(2),
        );
        let old_style = aged(".work-abcdef", Duration::from_secs(2));
        trees.sweep_leftovers();
        assert!(!dead.exists());
        assert!(dead_fresh.exists(), "may be between its mkdir and its lock");
        assert!(
            live.exists() && old_style.exists(),
            "younger than LEFTOVER_AGE"
        );
        assert!(mine.dir.path().exists(), "in use");
        use crate::fileio::leftover_maker;
        assert_eq!(leftover_maker("12-x"), Some(12));
        assert_eq!(leftover_maker("abc"), None);
        assert_eq!(leftover_maker("0-x"), None);
    }
}
