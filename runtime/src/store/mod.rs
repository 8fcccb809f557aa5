//! The plugin store under the state directory (`<state>/store`), crash-safe by construction.
//!
//! ```text
//! <state>/store/
//!   lock                         flock: one writer at a time (install, remove, recovery); the
//!                                store owner's alone (0600): anyone who can open a lock can hold it
//!   registry.json                THE commit point: which object directory is installed per name
//!   plugins/<name>-<version>-<sha12>/
//!       package.stockade         the signed package exactly as verified (re-verified by `verify ID`)
//!       tree/                    the verified, extracted tree (the signed file map, nothing else)
//!   staging/<random>/            work in progress; never referenced by the registry
//! ```
//!
//! Why a crash cannot leave a half-installed plugin: an object directory is built completely in
//! `staging/` (package copied, verified, extracted, every file and directory fsynced), then
//! renamed into `plugins/` (atomic on one filesystem), and only then does the registry — written to
//! a temporary file, fsynced and renamed over `registry.json` — name it. A plugin is installed iff
//! the registry names it, and whatever the registry names is complete. Whatever a crash leaves
//! behind (staging directories, object directories the registry does not name, the superseded
//! version's directory) is removed by [`Store::open`] on the next start, under the lock.
//!
//! Removal is the same in reverse: the registry drops the entry first (commit), the directory goes
//! after.
//!
//! Who locks: only the store's owner changes the store, and only it can open the lock
//! ([`open_lock`]: `flock` needs nothing but a descriptor, so a lock others could open — it was
//! 0644 in a state directory the daemon's user and group read — was one they could hold forever,
//! and root's every install waited). Other users read without it ([`Store::view`]); the order
//! above is what makes that safe: a reader without the lock sees a registry naming complete
//! directories, of which one may vanish under its check when a removal or upgrade commits
//! meanwhile — a finding it confirms against the registry read again, with the directory it
//! checked held open meanwhile ([`StoreView::settle`]). The owner's own read-only view reads
//! without the lock too where a read-only file system keeps it from making or narrowing it
//! ([`Store::view`]). Nothing else relies on a reader holding the lock: recovery removes staging directories (never
//! read) and directories the current registry does not name, which a reader without the lock
//! takes for removed when it finds them gone.
//!
//! Who makes the store: only a command that puts something in it (`install`, `update`, `source
//! add`…: [`Store::open`]), and only as root or the state directory's owner
//! ([`check_may_make`]); `list`, `remove` and `verify` read what exists
//! ([`Store::open_existing`], [`Store::view`]). A store is its maker's, and one of any other
//! user's is refused by everyone else ([`HeldDir`]): one made by the daemon's user's `list`
//! denied root its store in the packaged layout.

use crate::fileio::{
    read_capped, read_owned_held, write_state_file, FileError, HeldDir, HeldDirError, HeldPath,
};
use crate::package::container::MAX_PACKAGE_BYTES;
/// The tree check is the kept trees' too (package/trees.rs); `stockade store verify` reports its
/// every finding.
pub use crate::package::trees::{check_tree, check_tree_of, TreeProblem};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockade_policy::capability::Capability;

/// Store directory name inside the state directory.
pub const STORE_DIR: &str = "store";
/// The registry's schema tag.
pub const REGISTRY_SCHEMA: &str = "stockade-store/1";
/// The package file inside an object directory.
pub const PACKAGE_FILE: &str = "package.stockade";
/// The extracted tree inside an object directory.
pub const TREE_DIR: &str = "tree";

/// Why the store cannot do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The state directory cannot be created.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The registry cannot be parsed.
    #[error("the store registry {} is corrupt", path.display())]
    Corrupt {
        /// The registry.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The registry is not a registry: not a regular file (a directory, a FIFO, a device put in
    /// its place), or larger than any registry (64 MiB).
    #[error("the store registry {} {why}", path.display())]
    NotARegistry {
        /// The registry.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// The registry is a file someone other than the store's owner (or root) could have put
    /// there or changed: a symlink, another link to it, another user's, writable by group or
    /// others ([`crate::fileio::read_owned`]). It is the store's commit point — whoever writes
    /// it says what is installed, and an install or removal rewrites it — so it is refused,
    /// untouched, as the state directory's other files are.
    #[error("the store registry {} {why}", path.display())]
    UnsafeRegistry {
        /// The registry.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The registry was written by a newer Stockade: its schema is `stockade-store/N` with N
    /// above this build's ([`REGISTRY_SCHEMA`]). Told apart from damage ([`StoreError::Schema`],
    /// [`StoreError::Corrupt`]) before the fields are parsed, since a newer format may have fields
    /// this build does not know: "restore it from a backup" would forget what the newer version
    /// installed, where the way out is that version (a downgrade does not read its store).
    #[error(
        "the store registry {} has schema `{found}`, written by a newer Stockade; this one reads `{REGISTRY_SCHEMA}`",
        path.display()
    )]
    NewerFormat {
        /// The registry.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The registry has an unknown schema.
    #[error("the store registry {} has schema `{found}`, expected `{REGISTRY_SCHEMA}`", path.display())]
    Schema {
        /// The registry.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// The registry names a directory that is not a plain name (edited by hand?).
    #[error("the store registry names `{0}`, which is not a plain directory name")]
    BadDirName(String),
    /// Another process holds the store lock and `--no-wait` was given.
    #[error("the store is locked by another stockade process ({})", .0.display())]
    Locked(PathBuf),
    /// The store directory cannot be held safely: a symlink, another user's, writable by others
    /// ([`HeldDir`]).
    #[error(transparent)]
    Held(#[from] HeldDirError),
    /// The store's lock file is not one this user may lock: another user's (any user who can
    /// open a lock can hold it forever, so only the store's owner's is taken), or not a regular
    /// file of one link (a FIFO, a device, a hard link planted at its name).
    #[error("the store's lock {} cannot be used", path.display())]
    LockUnsafe {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: std::io::Error,
    },
    /// The store belongs to another user than the one running the command, which would change
    /// it (install, remove, recover): only its owner does, under its owner's private lock.
    #[error("the store {} belongs to uid {owner}, not to this user (uid {me})", path.display())]
    NotOwner {
        /// The store directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The running user.
        me: u32,
    },
    /// There is no store yet, and the state directory is neither this user's nor is this user
    /// root: a store made here would be this user's, which the state directory's users would
    /// then refuse ([`Store::open`]).
    #[error(
        "the state directory {} belongs to uid {owner}: only that user or root makes its store, not this user (uid {me})",
        path.display()
    )]
    NotStateOwner {
        /// The state directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The running user.
        me: u32,
    },
    /// An argument that can only be a plugin name (no such file) names no installed plugin.
    #[error("`{0}` is neither a file nor an installed plugin")]
    NotInstalled(String),
    /// The installed plugin's package was gone each time it was opened, its registry entry
    /// changed every time in between: it was upgraded or removed again while each of the
    /// [`SETTLE_ROUNDS`] attempts ran ([`with_installed`]).
    #[error(
        "`{0}` was installed or removed again while each of the {SETTLE_ROUNDS} attempts to open its stored package ran"
    )]
    Busy(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// One installed plugin, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    /// Plugin name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Object directory name under `plugins/`.
    pub dir: String,
    /// SHA-256 of the package file.
    pub package_sha256: String,
    /// `signature_status` at install time (seed 002).
    pub signature_status: String,
    /// The trust mode it was installed under.
    pub trust_mode: String,
    /// Developer key id (the signer).
    pub signer_key_id: Option<String>,
    /// Key ids: developer, intermediate, root.
    pub signer_chain: Vec<String>,
    /// The developer certificate's subject.
    pub signer_subject: Option<String>,
    /// Capabilities granted by the certificate ceiling ∩ manifest.
    pub granted_capabilities: Vec<Capability>,
    /// The manifest's curation tier, if any.
    #[serde(default)]
    pub tier: Option<String>,
    /// Dependencies: name → semver requirement.
    pub requires: BTreeMap<String, String>,
    /// Where it came from (`file:<absolute path>`).
    pub source: String,
    /// Unix seconds.
    pub installed_at: u64,
}

/// `registry.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Always [`REGISTRY_SCHEMA`].
    pub schema: String,
    /// Name → installed plugin.
    pub plugins: BTreeMap<String, Installed>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            schema: REGISTRY_SCHEMA.into(),
            plugins: BTreeMap::new(),
        }
    }
}

/// What [`Store::open`] cleaned up after an interrupted run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Staging directories removed.
    pub staging: Vec<String>,
    /// Object directories no registry entry named, removed.
    pub orphans: Vec<String>,
    /// Leftovers that could not be removed (an immutable file in one, a read-only bind), each
    /// said as a sentence: left where they are, for a warning. Nothing names them — the
    /// registry is the store's whole truth — so they change nothing installed, and failing
    /// every install, update and removal until someone removed them by hand (as recovery did)
    /// turned one immutable file into a store no one could change; a superseded directory that
    /// cannot be removed after a commit leaves exactly such a leftover
    /// ([`Store::left_behind`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
}

impl Recovery {
    /// Whether anything was cleaned.
    pub fn is_empty(&self) -> bool {
        self.staging.is_empty() && self.orphans.is_empty()
    }
}

/// The store, locked for this process until dropped. Everything it writes or removes goes
/// through the store directory's descriptor ([`HeldDir`]): `<state>/store` replaced by a
/// symlink, before or after the check, cannot send a removal or a write outside it. Every
/// message names the path under `<state>/store` ([`HeldPath::shown`]), never the descriptor's.
#[derive(Debug)]
pub struct Store {
    /// The held store directory: its descriptor for every operation, its shown path (the
    /// canonical `<state>/store`) for messages and for callers (reading through it is safe:
    /// whatever is read there is verified).
    dir: HeldDir,
    /// `staging/` and `plugins/`, held the same way (only this user or root could have made
    /// either a symlink, but a removal that follows one is too costly to leave to that).
    staging: Arc<HeldDir>,
    plugins: Arc<HeldDir>,
    registry: Registry,
    /// Object directories a commit or removal could not remove after the registry stopped
    /// naming them ([`Store::left_behind`]).
    left_behind: Vec<String>,
    _lock: OwnedFd,
}

/// What `list` reads ([`Store::list_registry`]).
#[derive(Debug)]
pub struct Listing {
    /// The registry, read without the lock.
    pub registry: Registry,
    /// `<state>/store`, canonical (the paths `list` prints work from anywhere).
    pub root: PathBuf,
    /// The recovery done first (empty: nothing to recover, or a writer at work), or why it
    /// failed.
    pub recovery: Result<Recovery, StoreError>,
    /// Leftovers not recovered because an earlier `list`'s recovery failed on these very ones
    /// ([`Store::list_registry`]); empty otherwise.
    pub unrecovered: Vec<String>,
}

/// The store's lock without the store ([`Store::lock_existing`]), held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _lock: OwnedFd,
    _held: HeldDir,
}

/// The store as a reader sees it ([`Store::view`]): the held store directory and its registry.
/// Nothing is made, recovered or written: any user who can read the state directory can take
/// it (the daemon's user on root's store), where [`Store::open`] needs the store's owner.
///
/// The store's owner reads under the lock, shared, so no install or removal is half done while
/// it reads. Any other user reads without it (the lock is the owner's alone, [`open_lock`]),
/// which the store's order makes safe: the registry is replaced whole by rename, an object
/// directory is complete before a registry names it and removed only after the registry has
/// dropped it. So the registry it read names only complete directories — but one may be
/// removed (or, removed and made again, changed) while it is checked, by a removal or an
/// upgrade that committed meanwhile. A finding is therefore confirmed against the registry
/// read again ([`StoreView::settle`]) before it is reported as one.
#[derive(Debug)]
pub struct StoreView {
    dir: HeldDir,
    /// The store directory's owner: whose installs these are (each object tree is its).
    owner: u32,
    registry: Registry,
    /// The registry file read, kept open (`None`: there was none).
    read: Option<Identity>,
    /// The shared lock, when this user is the store's owner.
    _lock: Option<OwnedFd>,
}

/// Which file or directory was read: its device and inode, with it kept open (`_file`) so that
/// no later one can get the same inode number (a freed inode is reused). The registry file
/// found again with the identity of the one read means the registry was not replaced since; an
/// object directory's name found again with the identity of the directory held while it was
/// checked means it is still that directory (object directories are made whole, renamed into
/// place and removed, never changed in place or put back — except one a removal stopped in
/// the middle of, which the next install of the same package names again: its damage is then a
/// true finding). An identity only looked up
/// (`_file: None`) is compared with one held.
#[derive(Debug)]
struct Identity {
    id: (u64, u64),
    _file: Option<File>,
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Identity {
    fn of(md: &std::fs::Metadata, file: Option<File>) -> Self {
        Self {
            id: (md.dev(), md.ino()),
            _file: file,
        }
    }
}

/// How many times [`StoreView::settle`] checks a plugin whose own registry entry or object
/// directory changed each time it was checked before giving up on it ([`Settled::Busy`]).
pub const SETTLE_ROUNDS: usize = 3;

/// What the check of an installed plugin came to, once confirmed against the registry
/// ([`StoreView::settle`]).
#[derive(Debug)]
pub enum Settled<T> {
    /// The verdict on the entry the registry names: clean, or a finding the registry still
    /// names the object of — a real one.
    Current(Installed, T),
    /// The plugin was removed while it was checked: the registry no longer names it, and what
    /// the check found (a directory vanishing under it) is that removal, not a problem.
    Removed(Installed),
    /// Its registry entry or its object directory changed while each of its checks ran
    /// ([`SETTLE_ROUNDS`]): it is being installed or removed again and again; nothing is said
    /// of it yet.
    Busy(Installed),
}

impl StoreView {
    /// The registry as first read.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Check the installed plugin `entry` (as [`StoreView::registry`] names it) with `check`,
    /// given the entry and its object directory — held open meanwhile — and confirm a verdict
    /// that is not `clean` against the registry read again ([`settle`]): the registry still
    /// names this very entry and the directory's name is still the directory held (or the
    /// registry file was not replaced at all) — the verdict stands, whatever else was
    /// installed or removed meanwhile; the plugin gone from it — [`Settled::Removed`];
    /// otherwise the entry is checked again as the registry now names it (an upgrade, or a
    /// removal and a new install that came between), at most [`SETTLE_ROUNDS`] times
    /// ([`Settled::Busy`]). A clean verdict needs no confirmation: what it checked was complete
    /// and right when it was checked. Under the owner's shared lock nothing changes: a finding
    /// stands at once.
    pub fn settle<T>(
        &self,
        entry: &Installed,
        mut check: impl FnMut(&Installed, &Path) -> T,
        clean: impl Fn(&T) -> bool,
    ) -> Result<Settled<T>, StoreError> {
        let name = entry.name.clone();
        settle(
            &self.read,
            entry.clone(),
            |p| self.hold_object(p),
            |p| check(p, &self.object_dir(p)),
            clean,
            |p| {
                // The registry first, the name after: see [`settle`] for why.
                let (registry, read) = held_registry(&self.dir)?;
                let at_name = self.object_at_name(p);
                Ok((read, registry.plugins.get(&name).cloned(), at_name))
            },
        )
    }

    /// `plugins/<dir>` of `p` through the held store directory, without following a symlink,
    /// kept open (so its inode number is not reused while it is compared); `None` when there
    /// is no such directory (the check then finds it missing, and the finding stands only on
    /// a registry not replaced since).
    fn hold_object(&self, p: &Installed) -> Option<Identity> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.dir.path().join("plugins").join(&p.dir))
            .ok()?;
        let md = file.metadata().ok()?;
        Some(Identity::of(&md, Some(file)))
    }

    /// What `plugins/<dir>` of `p` is now (looked up, not held), if anything.
    fn object_at_name(&self, p: &Installed) -> Option<Identity> {
        let md = std::fs::symlink_metadata(self.dir.path().join("plugins").join(&p.dir)).ok()?;
        md.is_dir().then(|| Identity::of(&md, None))
    }

    /// The object directory of an installed plugin (as a path: for messages and reading).
    pub fn object_dir(&self, p: &Installed) -> PathBuf {
        object_dir_in(self.dir.shown(), p)
    }

    /// The uid that installed what is here ([`check_tree`]'s owner), whoever reads it.
    pub fn owner(&self) -> u32 {
        self.owner
    }
}

/// `<state>/store` held as it is (nothing made), or `None` when there is no store.
fn held_existing(state_dir: &Path) -> Result<Option<HeldDir>, StoreError> {
    match HeldDir::open(state_dir, STORE_DIR, None) {
        Ok(h) => Ok(Some(h.canonical_shown())),
        Err(HeldDirError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The uid that owns the held store directory: whose installs these are, and whose lock.
fn owner_of(held: &HeldDir) -> Result<u32, StoreError> {
    Ok(std::fs::metadata(held.path())
        .map_err(io("cannot stat", held.shown()))?
        .uid())
}

/// The held store directory's owner, if it is the running user; else [`StoreError::NotOwner`].
fn check_own(held: &HeldDir) -> Result<(), StoreError> {
    let (owner, me) = (owner_of(held)?, nix::unistd::geteuid().as_raw());
    if owner != me {
        return Err(StoreError::NotOwner {
            path: held.shown().to_path_buf(),
            owner,
            me,
        });
    }
    Ok(())
}

/// Whether this user may make the store in `state_dir`, which has none: root may (the packaged
/// layout: root's store in the daemon's user's state directory), and so may the state
/// directory's owner; anyone else who can write there (a group-writable state directory) would
/// make a store of its own there, which the store's rightful users then refuse
/// ([`HeldDir`]: another user's store): [`StoreError::NotStateOwner`], before anything is made.
fn check_may_make(state_dir: &Path) -> Result<(), StoreError> {
    let me = nix::unistd::geteuid().as_raw();
    let owner = std::fs::metadata(state_dir)
        .map_err(io("cannot stat", state_dir))?
        .uid();
    if me != 0 && owner != me {
        return Err(StoreError::NotStateOwner {
            path: state_dir.to_path_buf(),
            owner,
            me,
        });
    }
    Ok(())
}

/// Open the held store directory's lock file (made if missing), which only the store's owner
/// may open: `flock` needs nothing but a descriptor, so any user who could open it — it was
/// 0644, and the packaged state directory is readable by the daemon's user and group — could
/// hold it forever, and every install, removal and recovery of root's waited for ever (or
/// failed with 108 under `--no-wait`). So it is made 0600, one found wider (an earlier build's
/// 0644) is narrowed back, and one of another user refused ([`sys::open_private_lock_file`],
/// as the sources directory's lock). Called by the store's owner only ([`check_own`]); other
/// users read without it ([`Store::view`]).
fn open_lock(held: &HeldDir) -> Result<OwnedFd, StoreError> {
    open_lock_with(held, sys::open_private_lock_file)
}

/// [`open_lock`] for the owner's read-only view ([`Store::view`]), which changes nothing and so
/// must work where nothing can be changed: `None` when the file system is read-only and the
/// lock is missing or an earlier build's 0644 (it can be neither made nor narrowed; root's
/// `verify` on a read-only state directory failed with 74 on that `fchmod`). The view then
/// reads without it, as any other user does: it does not take a lock others might hold for
/// ever. Another user's lock is refused all the same.
fn open_lock_to_read(held: &HeldDir) -> Result<Option<OwnedFd>, StoreError> {
    open_lock_with(held, sys::open_private_lock_file_to_read)
}

fn open_lock_with<T>(
    held: &HeldDir,
    open: impl FnOnce(&Path) -> std::io::Result<T>,
) -> Result<T, StoreError> {
    let lock_path = held.join("lock");
    let shown = lock_path.shown();
    open(lock_path.path()).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidData {
            StoreError::LockUnsafe {
                path: shown.to_path_buf(),
                source,
            }
        } else {
            io("cannot open lock", shown)(source)
        }
    })
}

/// What [`Store::recover`] would remove from the held store, looked at without the lock (for
/// [`Store::list_registry`]): each staging directory (`staging/NAME`) and each object directory
/// the registry does not name (`plugins/NAME`), sorted; empty when there is none. Only the
/// store's owner can recover (and read its 0700 `staging/`): empty for anyone else. A writer at
/// work has both; that is told apart by its lock, not here.
fn leftover_names(held: &HeldDir) -> Result<Vec<String>, StoreError> {
    if owner_of(held)? != nix::unistd::geteuid().as_raw() {
        return Ok(Vec::new());
    }
    let (registry, _) = held_registry(held)?;
    let (staging, orphans) = leftovers(&held.join("staging"), &held.join("plugins"), &registry)?;
    let named = |dir: &'static str, names: Vec<std::ffi::OsString>| {
        names
            .into_iter()
            .map(move |n| format!("{dir}/{}", n.to_string_lossy()))
    };
    let mut all: Vec<String> = named("staging", staging)
        .chain(named("plugins", orphans))
        .collect();
    all.sort();
    Ok(all)
}

/// `<state>/store/recovery-failed.json`: the leftovers (as [`leftover_names`] names them) that
/// the owner's last `list` found and could not recover — an immutable file in one, a read-only
/// bind — so that the next `list`, finding the very same ones within a minute
/// ([`RECOVERY_RETRY`]), does not take the lock to fail again ([`Store::list_registry`]). It
/// only ever spares `list` a recovery: writers recover whatever it says, and the first recovery
/// that leaves nothing removes it.
const RECOVERY_FAILED: &str = "recovery-failed.json";

/// How long `list` leaves leftovers its recovery failed on to the writers before it tries them
/// once more ([`RECOVERY_FAILED`]): a polling agent's `list` takes the store's lock for them at
/// most once a minute, and an obstacle removed by hand (`chattr -i`) is recovered by `list`
/// alone within a minute.
const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `left` are the leftovers [`RECOVERY_FAILED`] names, recorded less than
/// [`RECOVERY_RETRY`] ago (`false` when there is no such file, it is not one a `list` wrote,
/// or it is one someone other than the store's owner or root could have written: then `list`
/// tries, as without it).
fn failed_recently(held: &HeldDir, left: &[String]) -> bool {
    let at = held.join(RECOVERY_FAILED);
    // Read as the registry is: a record someone else could have written spares nothing.
    let Ok((file, bytes)) = read_owned_held(at.path(), 1 << 20, owner_of(held).ok()) else {
        return false;
    };
    let recent = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < RECOVERY_RETRY);
    recent && serde_json::from_slice::<Vec<String>>(&bytes).is_ok_and(|named| named == left)
}

/// Record that `list`'s recovery of `left` failed ([`RECOVERY_FAILED`]). Best effort: not
/// written (a read-only store), the next `list` tries again, as before.
fn note_failed_recovery(held: &HeldDir, left: &[String]) {
    let at = held.join(RECOVERY_FAILED);
    if let Ok(bytes) = serde_json::to_vec(left) {
        let _ = write_state_file(at.path(), &bytes, 0o644);
    }
}

/// What an interrupted run left in the store: every entry of `staging`, and each entry of
/// `plugins` that `registry` does not name (the names, as listed). [`Store::recover`] removes
/// them; `list` looks for them first without the lock ([`leftover_names`]) — one rule for both,
/// so `list` never tries to recover what recovery would not remove. A directory that is not
/// there holds none.
fn leftovers(
    staging: &HeldPath,
    plugins: &HeldPath,
    registry: &Registry,
) -> Result<(Vec<std::ffi::OsString>, Vec<std::ffi::OsString>), StoreError> {
    let names = |dir: &HeldPath| -> Result<Vec<std::ffi::OsString>, StoreError> {
        match std::fs::read_dir(dir.path()) {
            Ok(rd) => rd
                .map(|e| {
                    e.map(|e| e.file_name())
                        .map_err(io("cannot list", dir.shown()))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io("cannot list", dir.shown())(e)),
        }
    };
    let live: BTreeSet<&str> = registry.plugins.values().map(|p| p.dir.as_str()).collect();
    let orphans = names(plugins)?
        .into_iter()
        .filter(|n| !live.contains(n.to_string_lossy().as_ref()))
        .collect();
    Ok((names(staging)?, orphans))
}

/// Open the held store directory's lock file and take it (waiting unless `no_wait`).
fn take_lock(held: &HeldDir, no_wait: bool) -> Result<OwnedFd, StoreError> {
    let lock = open_lock(held)?;
    let shown = held.join("lock");
    let shown = shown.shown();
    if no_wait {
        if !sys::try_flock_exclusive(lock.as_fd()).map_err(io("cannot lock", shown))? {
            return Err(StoreError::Locked(shown.to_path_buf()));
        }
    } else {
        sys::flock_exclusive(lock.as_fd()).map_err(io("cannot lock", shown))?;
    }
    Ok(lock)
}

/// A package being installed: its private staging directory.
#[derive(Debug)]
pub struct Staged {
    /// `staging/<random>`, through the held staging directory.
    dir: HeldPath,
    /// Keeps the descriptor `dir` goes through open until the directory is gone.
    _held: Arc<HeldDir>,
}

/// A refused install removes its staging directory at once (after a commit the directory has been
/// renamed away and this finds nothing); a crash leaves it to the next start's recovery.
impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Staged {
    /// The staging directory (`path()` to work in it, `shown()` to name it).
    pub fn dir(&self) -> &HeldPath {
        &self.dir
    }

    /// The staged copy of the package.
    pub fn package(&self) -> HeldPath {
        self.dir.join(PACKAGE_FILE)
    }
}

/// Test hook for the crash-consistency test: with `STOCKADE_TEST_CRASH_AT=N` in a debug build,
/// the N-th crash point reached kills the process with SIGKILL (no destructor, no cleanup: what a
/// power cut or the OOM killer does). Release builds compile it to nothing.
fn crash_point() {
    if !cfg!(debug_assertions) {
        return;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Some(at) = std::env::var("STOCKADE_TEST_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
        let _ = sys::kill_self();
    }
}

fn fsync_dir(dir: &HeldPath) -> Result<(), StoreError> {
    File::open(dir.path())
        .and_then(|d| d.sync_all())
        .map_err(io("cannot fsync", dir.shown()))
}

/// A registry `dir` must be one plain path component (never `..`, never a path).
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

impl Store {
    /// Create the layout if needed, take the lock (waiting for it unless `no_wait`), and clean up
    /// after any interrupted run.
    pub fn open(state_dir: &Path, no_wait: bool) -> Result<(Self, Recovery), StoreError> {
        crate::state::ensure_dir(state_dir)?;
        let held = match held_existing(state_dir)? {
            Some(held) => held,
            None => {
                // A store this user made would be this user's, and then no one else's
                // (another's store is refused: [`HeldDir`]): refused before it is made.
                check_may_make(state_dir)?;
                // Shown absolute, so the paths `list` and `install` print work from anywhere
                // (and so are `staging/` and `plugins/`, opened through it).
                HeldDir::open(state_dir, STORE_DIR, Some(0o755))?.canonical_shown()
            }
        };
        Self::open_held(state_dir, held, no_wait)
    }

    /// [`Store::open`] of a store that exists, making nothing (`None`: there is none, so
    /// nothing is installed): for `list` and `remove`, which have nothing to put in a new one
    /// — `list` as the daemon's user made a store of that user's in the packaged layout, which
    /// root's commands then refused (78 `store.unsafe`).
    pub fn open_existing(
        state_dir: &Path,
        no_wait: bool,
    ) -> Result<Option<(Self, Recovery)>, StoreError> {
        let Some(held) = held_existing(state_dir)? else {
            return Ok(None);
        };
        Self::open_held(state_dir, held, no_wait).map(Some)
    }

    /// The registry for `list`, read without the lock (`None`: there is no store), after
    /// recovering only when there is something to recover and the lock is free at once.
    ///
    /// Why not the lock: agents poll `list`, and a reader holding the lock — exclusively, as
    /// `list` once did to recover, or even shared — made an `install --no-wait` or `remove
    /// --no-wait` beside it fail with 108 `store.locked` though only a reader was there
    /// (flock's `LOCK_EX|LOCK_NB` fails beside any holder). Reading without it is what every
    /// other user's `list` does: the registry is replaced whole by rename and names only
    /// complete directories (the module doc). The lock is tried (never waited for) only when
    /// a lockless look finds a staging directory or an object directory the registry does
    /// not name; one that a writer at work holds means those are its own, and it or the next
    /// writer recovers them. Recovery then runs as [`Store::open`]'s, on the registry read
    /// again under the lock. Its errors are returned, for the caller to judge; the listing is
    /// read afterwards in any case.
    ///
    /// Nor is it tried again, for a minute ([`RECOVERY_RETRY`]), for the very leftovers an
    /// earlier `list`'s recovery failed on (an immutable file in one, a read-only bind:
    /// [`RECOVERY_FAILED`]): each try took the lock exclusively, so agents polling `list` made
    /// an `install --no-wait` or `remove --no-wait` landing in that moment fail 108
    /// `store.locked` again and again, for a recovery that would fail once more. Those
    /// leftovers are returned in [`Listing::unrecovered`] instead (for a warning), and left to
    /// the writers, which recover first (and leave them too, said: [`Recovery::left`]). Any
    /// other set of leftovers — one more, one gone — is tried at once.
    pub fn list_registry(state_dir: &Path) -> Result<Option<Listing>, StoreError> {
        let Some(held) = held_existing(state_dir)? else {
            return Ok(None);
        };
        if owner_of(&held)? == nix::unistd::geteuid().as_raw() {
            // Opened, never locked: an earlier build's 0644 lock, which any user who can read
            // the state directory could hold for ever, is narrowed back by the owner's `list`
            // as by its every other store command ([`open_lock`]). Best effort: one that
            // cannot be opened (a read-only file system, another user's file) does not keep
            // the owner from reading, and the next writer refuses it, saying why.
            let _ = open_lock(&held);
        }
        let mut unrecovered = Vec::new();
        let recovery = match leftover_names(&held) {
            Ok(left) if left.is_empty() => Ok(Recovery::default()),
            Ok(left) if failed_recently(&held, &left) => {
                unrecovered = left;
                Ok(Recovery::default())
            }
            Ok(_) => match held_existing(state_dir)? {
                Some(again) => match Self::open_held(state_dir, again, true) {
                    Ok((_store, r)) => {
                        // Some could not be removed: not tried again for a minute.
                        if !r.left.is_empty() {
                            if let Ok(still) = leftover_names(&held) {
                                note_failed_recovery(&held, &still);
                            }
                        }
                        Ok(r)
                    }
                    Err(StoreError::Locked(_)) => Ok(Recovery::default()),
                    Err(e) => {
                        // What is left now (a recovery removes what it can before it fails).
                        if let Ok(still) = leftover_names(&held) {
                            note_failed_recovery(&held, &still);
                        }
                        Err(e)
                    }
                },
                None => Ok(Recovery::default()),
            },
            Err(e) => Err(e),
        };
        let (registry, _) = held_registry(&held)?;
        sys::stop_at("list");
        Ok(Some(Listing {
            registry,
            root: held.shown().to_path_buf(),
            recovery,
            unrecovered,
        }))
    }

    /// [`Store::open`] once the store directory is held: its owner's check, the lock, the
    /// layout and recovery.
    fn open_held(
        state_dir: &Path,
        held: HeldDir,
        no_wait: bool,
    ) -> Result<(Self, Recovery), StoreError> {
        // Only the owner changes the store (another user could not clean root's 0700 staging,
        // nor open its lock): said before anything is touched.
        check_own(&held)?;
        let lock = take_lock(&held, no_wait)?;
        // Read first: a registry that cannot be used (damaged, unsafe, a newer Stockade's) is
        // refused with nothing swept or made — `staging/` and `plugins/` were made, and
        // temporaries removed, before a newer Stockade's store was refused "nothing changed".
        let registry = held.join("registry.json");
        let registry = load_registry(registry.path(), registry.shown(), Some(owner_of(&held)?))?;
        // The leftovers of a directory's making cut short by a crash (between its `mkdirat` and
        // its rename, `fileio::make_dir_at`): this uid's empty temporaries, in the two
        // directories the store makes its own in.
        crate::fileio::sweep_made_dirs_at(state_dir);
        held.sweep_made_dirs();
        // And the temporary files of an atomic write a kill cut short (`fileio::reserve`):
        // the registry's here, the state directory's (the revocation memory, the sources'
        // files). Nothing else removed them: each kill left one for good.
        crate::fileio::sweep_reserved(&held.path());
        crate::fileio::sweep_reserved(state_dir);
        let plugins = Arc::new(held.open_child("plugins", Some(0o755))?);
        let staging = Arc::new(held.open_child("staging", Some(0o700))?);
        let mut store = Self {
            dir: held,
            staging,
            plugins,
            registry,
            left_behind: Vec::new(),
            _lock: lock,
        };
        sys::stop_at("recover");
        let recovery = store.recover()?;
        Ok((store, recovery))
    }

    /// The store's lock alone, for a command that changes only the state directory's source
    /// files (`source refresh`, which the shipped timer runs as the daemon's user): the store is
    /// neither created — root would then find a store of another user's and refuse to work in it
    /// ([`HeldDir`]) — nor recovered (root's staging is not that user's to clean). `None`: there
    /// is no store yet, so nothing is installed and nothing to wait for; or the store is another
    /// user's (root's, and this is the timer's user), whose lock is its owner's alone and not
    /// this user's to take ([`open_lock`]). That user loses nothing by it: what its refresh
    /// writes (`sources-seen.json`, `indexes/`) are files of its own in its own directory, each
    /// replaced whole by rename, which it could rewrite at any moment anyway, and it reads the
    /// registry as any lockless reader does (replaced by rename, never seen half written).
    pub fn lock_existing(state_dir: &Path, no_wait: bool) -> Result<Option<StoreLock>, StoreError> {
        let Some(held) = held_existing(state_dir)? else {
            return Ok(None);
        };
        if owner_of(&held)? != nix::unistd::geteuid().as_raw() {
            return Ok(None);
        }
        let lock = take_lock(&held, no_wait)?;
        Ok(Some(StoreLock {
            _lock: lock,
            _held: held,
        }))
    }

    /// The store for reading ([`StoreView`]), or `None` when there is none (nothing is
    /// installed). The store's owner takes its lock shared, waiting for a writer in progress
    /// (unless a read-only file system keeps the lock from being made or narrowed:
    /// [`open_lock_to_read`]); any other user reads without it (the lock is the owner's alone:
    /// [`open_lock`]), and [`StoreView::settle`] tells a finding from an install or removal
    /// done meanwhile.
    pub fn view(state_dir: &Path) -> Result<Option<StoreView>, StoreError> {
        let Some(held) = held_existing(state_dir)? else {
            return Ok(None);
        };
        let owner = owner_of(&held)?;
        let lock = if owner == nix::unistd::geteuid().as_raw() {
            let lock = open_lock_to_read(&held)?;
            if let Some(lock) = &lock {
                let shown = held.join("lock");
                sys::flock_shared(lock.as_fd()).map_err(io("cannot lock", shown.shown()))?;
            }
            lock
        } else {
            None
        };
        let (registry, read) = held_registry(&held)?;
        Ok(Some(StoreView {
            dir: held,
            owner,
            registry,
            read,
            _lock: lock,
        }))
    }

    /// The registry as loaded (and as changed by [`Store::commit`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `<state>/store` (as a path: for messages and reading).
    pub fn root(&self) -> &Path {
        self.dir.shown()
    }

    /// The object directory of an installed plugin (as a path: for messages and reading).
    pub fn object_dir(&self, p: &Installed) -> PathBuf {
        object_dir_in(self.root(), p)
    }

    fn recover(&mut self) -> Result<Recovery, StoreError> {
        let mut r = Recovery::default();
        let (staging, plugins) = (self.staging.at(), self.plugins.at());
        let (left, orphans) = leftovers(&staging, &plugins, &self.registry)?;
        // One that cannot be removed is left, said ([`Recovery::left`]), and the rest go on.
        for (dir, names, removed) in [
            (&staging, left, &mut r.staging),
            (&plugins, orphans, &mut r.orphans),
        ] {
            for name in names {
                match remove_any(&dir.join(&name)) {
                    Ok(()) => removed.push(name.to_string_lossy().into_owned()),
                    Err(e) => r.left.push(format!(
                        "{e} (a leftover of an interrupted run, which nothing names: left where \
                         it is until it can be removed)"
                    )),
                }
            }
        }
        if !r.is_empty() {
            fsync_dir(&staging)?;
            fsync_dir(&plugins)?;
        }
        // Nothing is left: a `list`'s record of a recovery that failed is stale. Best effort:
        // one left only spares `list` a recovery of those very leftovers, never a writer.
        if r.left.is_empty() {
            let _ = std::fs::remove_file(self.dir.join(RECOVERY_FAILED).path());
        }
        Ok(r)
    }

    /// Copy the package file into a fresh staging directory (read once, capped, fsynced), so that
    /// what is verified is exactly what is kept.
    pub fn stage(&self, package: &Path) -> Result<Staged, StoreError> {
        let bytes = read_capped(package, MAX_PACKAGE_BYTES)?;
        // `make_in` with our own mkdir rather than `tempdir_in`, whose error would end in the
        // descriptor's path ("… at path \"/proc/self/fd/N/install-…\"").
        let made = tempfile::Builder::new()
            .prefix("install-")
            .disable_cleanup(true)
            .make_in(self.staging.path(), |dir| {
                std::fs::DirBuilder::new().mode(0o700).create(dir)
            })
            .map_err(io("cannot create a directory in", self.staging.shown()))?;
        let name = made.path().file_name().unwrap_or_default().to_owned();
        let staged = Staged {
            dir: self.staging.join(name),
            _held: Arc::clone(&self.staging),
        };
        crash_point();
        let package = staged.package();
        crate::fileio::create_exclusive(package.path(), &bytes, 0o644)
            .map_err(|e| e.shown_as(package.shown()))?;
        crash_point();
        Ok(staged)
    }

    /// Move the verified extraction directory to `tree/` in the staging directory, open the
    /// modes up (0755 directories: the sandboxed uid must read it) and fsync everything.
    /// `extracted` is a directory inside the staging directory, reached through it
    /// ([`Staged::dir`]'s `path()`).
    pub fn finish_staging(&self, staged: &Staged, extracted: PathBuf) -> Result<(), StoreError> {
        let tree = staged.dir.join(TREE_DIR);
        std::fs::rename(&extracted, tree.path()).map_err(io("cannot move into", tree.shown()))?;
        crash_point();
        for d in [&tree, &staged.dir] {
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(io("cannot chmod", d.shown()))?;
        }
        fsync_tree(&tree)?;
        fsync_dir(&staged.dir)?;
        crash_point();
        Ok(())
    }

    /// Install staged packages: rename each into `plugins/`, then write the registry (the commit
    /// point), then remove the directories the new entries superseded. Idempotent for an entry
    /// whose object directory is already the installed one (the registry names it).
    ///
    /// An object directory of that name the registry does *not* name is a leftover recovery
    /// could not remove (an immutable file in it: `recovered.left`, `recovery-failed.json`) —
    /// perhaps half removed, its files partly gone. It is neither taken for the package (it was:
    /// the install succeeded and named a tree without its `package.stockade`, which every later
    /// `verify` and `run` refused) nor removed here (recovery just failed to): the package goes
    /// to a fresh name beside it ([`move_in_fresh`]), which the registry records.
    pub fn commit(&mut self, items: Vec<(Staged, Installed)>) -> Result<(), StoreError> {
        let plugins = self.plugins.at();
        let mut next = self.registry.clone();
        let mut superseded = Vec::new();
        for (staged, mut entry) in items {
            if !plain_name(&entry.dir) {
                return Err(StoreError::BadDirName(entry.dir));
            }
            // The same package (same name, version and digest) is installed already, in the
            // directory the registry names for it.
            let installed = next
                .plugins
                .get(&entry.name)
                .filter(|p| {
                    p.version == entry.version
                        && p.package_sha256 == entry.package_sha256
                        && plain_name(&p.dir)
                })
                .filter(|p| plugins.join(&p.dir).path().symlink_metadata().is_ok())
                .map(|p| p.dir.clone());
            if let Some(dir) = installed {
                entry.dir = dir;
                remove_any(&staged.dir)?;
            } else {
                entry.dir = move_in_fresh(&staged.dir, &plugins, &entry.dir)?;
            }
            crash_point();
            if let Some(old) = next.plugins.insert(entry.name.clone(), entry) {
                superseded.push(old.dir);
            }
        }
        fsync_dir(&plugins)?;
        fsync_dir(&self.staging.at())?;
        crash_point();
        self.save(next)?;
        crash_point();
        let live: BTreeSet<String> = self
            .registry
            .plugins
            .values()
            .map(|p| p.dir.clone())
            .collect();
        for d in superseded.into_iter().filter(|d| !live.contains(d)) {
            self.remove_superseded(&plugins.join(d));
            crash_point();
        }
        Ok(())
    }

    /// Remove an object directory the registry no longer names, after the commit that made it
    /// so. Best effort: the change is made once the registry is replaced, so a directory that
    /// cannot go now (an immutable file in it, an I/O error) must not fail the command — the
    /// agent would be told its committed install or removal failed, and its audit would say
    /// `failed`. It is kept in [`Store::left_behind`] for the command to warn of, and the next
    /// recovery of the store's owner removes it (a directory the registry does not name).
    fn remove_superseded(&mut self, dir: &HeldPath) {
        if let Err(e) = remove_any(dir) {
            self.left_behind.push(format!(
                "{e} (left for the next store command's recovery: the registry no longer names it)"
            ));
        }
    }

    /// What [`Store::commit`] and [`Store::remove`] could not remove after their commit (each
    /// said as a sentence): the change is made, the directories wait for the next recovery.
    pub fn left_behind(&self) -> &[String] {
        &self.left_behind
    }

    /// Remove plugins: the registry drops them (commit), then their directories go.
    pub fn remove(&mut self, names: &[String]) -> Result<Vec<Installed>, StoreError> {
        let mut next = self.registry.clone();
        let removed: Vec<Installed> = names
            .iter()
            .filter_map(|n| next.plugins.remove(n))
            .collect();
        self.save(next)?;
        crash_point();
        for p in &removed {
            let dir = self.plugins.join(&p.dir);
            self.remove_superseded(&dir);
        }
        Ok(removed)
    }

    fn save(&mut self, next: Registry) -> Result<(), StoreError> {
        let path = self.dir.join("registry.json");
        let bytes = serde_json::to_vec_pretty(&next).map_err(|source| StoreError::Corrupt {
            path: path.shown().to_path_buf(),
            source,
        })?;
        write_state_file(path.path(), &bytes, 0o644).map_err(|e| e.shown_as(path.shown()))?;
        self.registry = next;
        Ok(())
    }
}

/// [`StoreView::settle`] with the store's parts given, so the rule can be tested against a
/// fake store that changes between the check and the re-read: `read`, the identity of the
/// registry `entry` was taken from; `hold`, the entry's object directory held open before it is
/// checked (`None`: there is none); `reread`, the identity of the registry read now, what it
/// names for the plugin, and then what the entry's directory name is now.
///
/// A finding stands when the registry read again names this very entry and the directory's
/// name is still the directory held: the directory was at its name from before the check until
/// after that registry named it (a directory replaced at its name never comes back: object
/// directories are made new and removed, never put back; the one held keeps its inode number
/// from being reused), so what the check read is what that registry names — whatever else was
/// committed meanwhile, for other plugins. It used to stand only on the very registry file
/// read first, so any commit, even another plugin's, sent it round again, and a tampered
/// plugin beside a busy one was reported as busy (108) instead of tampered. The order matters:
/// a name looked up before the registry is re-read could be the held directory still being
/// emptied by a removal that committed before the registry was read first, and then re-installed
/// under the same entry once the name was looked up. A missing directory (nothing held) has
/// nothing to compare: its finding stands only on a registry file not replaced since.
fn settle<T, K: PartialEq, D: PartialEq>(
    read: &K,
    mut entry: Installed,
    mut hold: impl FnMut(&Installed) -> Option<D>,
    mut check: impl FnMut(&Installed) -> T,
    clean: impl Fn(&T) -> bool,
    mut reread: impl FnMut(&Installed) -> Result<(K, Option<Installed>, Option<D>), StoreError>,
) -> Result<Settled<T>, StoreError> {
    // The registry the entry at hand came from (kept, so its identity stays its own).
    let mut from: Option<K> = None;
    for _ in 0..SETTLE_ROUNDS {
        // Held until the end of the round: compared after the re-read.
        let held = hold(&entry);
        let verdict = check(&entry);
        if clean(&verdict) {
            return Ok(Settled::Current(entry, verdict));
        }
        let (now, named, at_name) = reread(&entry)?;
        let unreplaced = from.as_ref().unwrap_or(read) == &now;
        let same_object = named.as_ref() == Some(&entry) && held.is_some() && at_name == held;
        if unreplaced || same_object {
            return Ok(Settled::Current(entry, verdict));
        }
        match named {
            None => return Ok(Settled::Removed(entry)),
            Some(e) => {
                entry = e;
                from = Some(now);
            }
        }
    }
    Ok(Settled::Busy(entry))
}

/// The held store's registry, with which file it was (`None`: there is none yet).
fn held_registry(held: &HeldDir) -> Result<(Registry, Option<Identity>), StoreError> {
    let at = held.join("registry.json");
    let (registry, file) = load_registry_held(at.path(), at.shown(), Some(owner_of(held)?))?;
    let id = file
        .map(|f| f.metadata().map(|m| Identity::of(&m, Some(f))))
        .transpose()
        .map_err(io("cannot stat", at.shown()))?;
    Ok((registry, id))
}

/// No registry is larger (one entry is well under 4 KiB): a larger file is not one.
const MAX_REGISTRY_BYTES: u64 = 64 << 20;

/// The registry file: read at `path` (through the held store directory's descriptor, or the
/// plain path of a read-only lookup), named `shown` in every error — never a `/proc/self/fd/N`
/// that means nothing once we exit.
///
/// Read only as the state directory's other files are ([`read_owned_held`]): a regular file of
/// one link, not through a symlink, belonging to this user, root or `owner` (the store
/// directory's owner, who writes it) and writable by no one else; anything else is
/// [`StoreError::UnsafeRegistry`] (78), the file left as it is. It was read whoever's it was
/// and whatever its mode, and the next install or removal replaced it with what it said plus
/// the change: a registry left 0666, or a third user's, was an install list anyone with that
/// access could write for root's `run NAME` and `serve` to load.
fn load_registry(path: &Path, shown: &Path, owner: Option<u32>) -> Result<Registry, StoreError> {
    load_registry_held(path, shown, owner).map(|(registry, _)| registry)
}

/// [`load_registry`], with the file it read kept open (`None`: there is none yet).
fn load_registry_held(
    path: &Path,
    shown: &Path,
    owner: Option<u32>,
) -> Result<(Registry, Option<File>), StoreError> {
    let (file, bytes) = match read_owned_held(path, MAX_REGISTRY_BYTES, owner) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok((Registry::default(), None)),
        // Not the operator's input: the store's own file, damaged (106, not 66 "no input").
        Err(e @ (FileError::NotRegular { .. } | FileError::TooLarge { .. })) => {
            return Err(StoreError::NotARegistry {
                path: shown.to_path_buf(),
                why: match e {
                    FileError::NotRegular { .. } => "is not a regular file".into(),
                    _ => format!("is larger than {} MiB", MAX_REGISTRY_BYTES >> 20),
                },
            })
        }
        Err(FileError::Unsafe { why, .. }) => {
            return Err(StoreError::UnsafeRegistry {
                path: shown.to_path_buf(),
                why,
            })
        }
        Err(e) => return Err(e.shown_as(shown).into()),
    };
    let path = shown.to_path_buf();
    if let Some(found) = newer_schema(&bytes) {
        return Err(StoreError::NewerFormat { path, found });
    }
    let reg: Registry = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
        path: path.clone(),
        source,
    })?;
    if reg.schema != REGISTRY_SCHEMA {
        return Err(StoreError::Schema {
            path,
            found: reg.schema,
        });
    }
    if let Some(p) = reg.plugins.values().find(|p| !plain_name(&p.dir)) {
        return Err(StoreError::BadDirName(p.dir.clone()));
    }
    Ok((reg, Some(file)))
}

/// The schema of a registry written by a newer Stockade (`stockade-store/N`, N > 1), looked at
/// before anything else of the file: a newer format may add fields this build refuses
/// (`deny_unknown_fields`), which would make it "corrupt". `None` for anything else, judged by
/// the full parse.
fn newer_schema(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag {
        schema: String,
    }
    let tag: Tag = serde_json::from_slice(bytes).ok()?;
    let n: u32 = tag.schema.strip_prefix("stockade-store/")?.parse().ok()?;
    (n > 1 && tag.schema == format!("stockade-store/{n}")).then_some(tag.schema)
}

/// Read the registry without locking or recovering (for read-only listing by anyone, and every
/// name's lookup: `run NAME`, `verify NAME`, `serve`'s `plugin_load NAME` and its dependencies).
/// The store directory is held as the store's writers hold it — opened without following a
/// symlink at its name (`O_NOFOLLOW | O_DIRECTORY`), the registry read relative to it — so a
/// `store` that is a symlink is refused ([`HeldDirError::Unsafe`]: 78 `store.unsafe`), nothing
/// read through it. The registry was read by its path, and only its last component refused as
/// a symlink: a `store` symlink (the state directory's owner can make one) had every lookup
/// take whatever install list it pointed at for the store's. Whoever owns the store may own
/// the directory (the daemon's user's store, read by root: `DirOwner::Shared`); its registry
/// must be that owner's, root's or this user's ([`load_registry`]). No store: no registry.
pub fn read_registry(state_dir: &Path) -> Result<Registry, StoreError> {
    let Some(held) = held_to_read(state_dir)? else {
        return Ok(Registry::default());
    };
    let at = held.join("registry.json");
    load_registry(at.path(), at.shown(), Some(owner_of(&held)?))
}

/// What a reader can tell of the registry file without reading it: its device, inode, size,
/// and modification and change times (`None`: no store, or no registry yet). The registry is
/// only ever replaced whole by a rename (a new inode) and never changed in place, so an equal
/// stamp is the same install list: `serve`'s periodic store check
/// (`host::fleet::installed`) reads and parses the registry only when its stamp changed. The
/// store directory is held as [`read_registry`] holds it (a `store` symlink is refused, 78).
pub fn registry_stamp(state_dir: &Path) -> Result<Option<[i64; 6]>, StoreError> {
    let Some(held) = held_to_read(state_dir)? else {
        return Ok(None);
    };
    let at = held.join("registry.json");
    match at.path().symlink_metadata() {
        Ok(md) => Ok(Some([
            i64::try_from(md.dev()).unwrap_or(i64::MAX),
            i64::try_from(md.ino()).unwrap_or(i64::MAX),
            i64::try_from(md.size()).unwrap_or(i64::MAX),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime_nsec(),
        ])),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot stat", at.shown())(e)),
    }
}

/// The store directory held for a reader ([`read_registry`], [`registry_stamp`]); `None` when
/// there is none.
fn held_to_read(state_dir: &Path) -> Result<Option<HeldDir>, StoreError> {
    use nix::fcntl::OFlag;
    let shown = state_dir.join(STORE_DIR);
    // The state directory only searched (`O_PATH`), as the path it replaces was: a reader who
    // may traverse it but not list it (mode 0711) still looks names up.
    let parent = nix::fcntl::open(
        state_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| HeldDirError::Io {
        path: shown.clone(),
        source: e.into(),
    });
    let held = parent.and_then(|p| {
        use std::os::fd::AsFd;
        HeldDir::open_in(
            p.as_fd(),
            shown,
            STORE_DIR,
            None,
            crate::fileio::DirOwner::Shared,
        )
    });
    match held {
        Ok(h) => Ok(Some(h)),
        Err(HeldDirError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn remove_any(at: &HeldPath) -> Result<(), StoreError> {
    let md = match at.path().symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("cannot stat", at.shown())(e)),
    };
    let r = if md.is_dir() {
        std::fs::remove_dir_all(at.path())
    } else {
        std::fs::remove_file(at.path())
    };
    r.map_err(io("cannot remove", at.shown()))
}

/// fsync every file and directory under `root` (directories after their entries).
fn fsync_tree(root: &HeldPath) -> Result<(), StoreError> {
    for e in std::fs::read_dir(root.path()).map_err(io("cannot list", root.shown()))? {
        let e = e.map_err(io("cannot list", root.shown()))?;
        let at = root.join(e.file_name());
        let ft = e.file_type().map_err(io("cannot stat", at.shown()))?;
        if ft.is_dir() {
            fsync_tree(&at)?;
        } else if ft.is_file() {
            File::open(at.path())
                .and_then(|f| f.sync_all())
                .map_err(io("cannot fsync", at.shown()))?;
        }
    }
    fsync_dir(root)
}

/// How many fresh names [`move_in_fresh`] tries beside leftovers of the same name.
const FRESH_NAMES: u32 = 100;

/// Rename the staged directory `from` into `plugins` as `name`, never over anything there
/// (`renameat2(RENAME_NOREPLACE)`: `rename` replaces an empty directory); when an entry of that
/// name is there — a leftover recovery could not remove, which nothing names — as `name-1`,
/// `name-2`, … instead, the first that is free. The name it got.
fn move_in_fresh(from: &HeldPath, plugins: &HeldPath, name: &str) -> Result<String, StoreError> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let candidates =
        std::iter::once(name.to_string()).chain((1..=FRESH_NAMES).map(|n| format!("{name}-{n}")));
    for cand in candidates {
        let dest = plugins.join(&cand);
        match renameat2(
            AT_FDCWD,
            from.path(),
            AT_FDCWD,
            dest.path(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => return Ok(cand),
            Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => continue,
            Err(e) => return Err(io("cannot move into", dest.shown())(e.into())),
        }
    }
    Err(io("cannot move into", plugins.join(name).shown())(
        std::io::Error::other(format!(
            "it and {FRESH_NAMES} fresh names beside it are taken by leftovers nothing names \
             (remove them)"
        )),
    ))
}

/// Whether `stockade verify ARG` means an installed plugin: ARG is not an existing file (a
/// directory of the same name in the working directory does not count: it cannot be a package)
/// and is a valid plugin name. The store answers from there: a name it does not have is
/// [`StoreError::NotInstalled`] (104), a registry that cannot be read is the error (106) —
/// never "cannot read ARG" about a file nobody meant.
pub fn names_a_plugin(arg: &Path) -> bool {
    candidate_name(arg).is_some()
}

/// ARG as a plugin name, unless it is an existing file (which always wins) or not a valid name.
fn candidate_name(arg: &Path) -> Option<&str> {
    if arg.metadata().is_ok_and(|m| !m.is_dir()) {
        return None;
    }
    arg.to_str()
        .filter(|n| stockade_policy::manifest::valid_name(n))
}

/// The object directory of `p` under the store directory `root` (`<state>/store`).
pub fn object_dir_in(root: &Path, p: &Installed) -> PathBuf {
    root.join("plugins").join(&p.dir)
}

/// The registry's entry for `name`, read without the lock (a name's lookup never waits for an
/// install), if there is one.
fn lookup(state_dir: &Path, name: &str) -> Result<Option<Installed>, StoreError> {
    let entry = read_registry(state_dir)?.plugins.remove(name);
    sys::stop_at("lookup");
    Ok(entry)
}

/// The package path [`with_package`] or [`with_installed`] used, and what the caller's use of
/// it made.
pub type Used<T, E> = (PathBuf, Result<T, E>);

/// For `stockade run ARG`, `inspect`, `policy explain` and serve's `plugin_load`: `use_it(path)`
/// with ARG's stored package when ARG is an installed plugin's name (same rule as `verify`;
/// looked up, and looked up again, as [`with_installed`] does; [`StoreError::NotInstalled`]
/// when it is not installed, or was removed meanwhile), with ARG itself otherwise. An existing
/// file is used as it is, without reading the registry; a registry that cannot be read is the
/// error (not "cannot read ARG", which would send the operator looking for a file). Returns the
/// path used with what `use_it` made of it.
pub fn with_package<T, E>(
    state_dir: &Path,
    arg: &Path,
    use_it: impl FnMut(&Path) -> Result<T, E>,
    gone: impl Fn(&E) -> bool,
) -> Result<Used<T, E>, StoreError> {
    match candidate_name(arg) {
        Some(name) => with_installed(state_dir, name, use_it, gone)?
            .ok_or_else(|| StoreError::NotInstalled(name.to_string())),
        None => {
            let mut use_it = use_it;
            Ok((arg.to_path_buf(), use_it(arg)))
        }
    }
}

/// `use_it(path)` with the stored package of the installed plugin `name` (by name only: no
/// file of that name is looked for, as serve's dependency lookup needs; a registry that cannot
/// be read is the error: a corrupt store is not an empty one); `None` when it is not installed. `gone(err)`: `use_it` found no file
/// at the path.
///
/// Why more than a lookup: the registry is read, then the package opened at the path it names,
/// and an upgrade or removal that commits in between removes that object directory (an
/// upgrade removes the version it supersedes right after its commit: docs/store.md). A `run
/// NAME` beside an `update` then failed with 66 `input`, "cannot read
/// …/plugins/NAME-OLD-…/package.stockade", a path the agent never gave, telling it its input was
/// wrong. So a package found gone is looked up again: the plugin is used as it is installed
/// now, or is `None` when it was removed meanwhile (104 to the caller, as after the removal).
/// The entry named again unchanged means the store itself lacks the file: that error is the
/// answer (`verify NAME` tells the damage). An entry that changed again each of
/// [`SETTLE_ROUNDS`] times is [`StoreError::Busy`] (108) rather than a verdict. Nothing is lost
/// by trying again: a package opened is read whole through its descriptor (the directory
/// removed after the open changes nothing of it), so `gone` only ever comes before any work.
pub fn with_installed<T, E>(
    state_dir: &Path,
    name: &str,
    mut use_it: impl FnMut(&Path) -> Result<T, E>,
    gone: impl Fn(&E) -> bool,
) -> Result<Option<Used<T, E>>, StoreError> {
    let root = state_dir.join(STORE_DIR);
    let Some(mut entry) = lookup(state_dir, name)? else {
        return Ok(None);
    };
    for _ in 0..SETTLE_ROUNDS {
        let path = object_dir_in(&root, &entry).join(PACKAGE_FILE);
        let r = use_it(&path);
        if !matches!(&r, Err(e) if gone(e)) {
            return Ok(Some((path, r)));
        }
        match lookup(state_dir, name)? {
            None => return Ok(None),
            Some(now) if now == entry => return Ok(Some((path, r))),
            Some(now) => entry = now,
        }
    }
    Err(StoreError::Busy(name.to_string()))
}

/// The frozen-license rule for starting a plugin (seed 000: installs are blocked while the
/// node's license is frozen; already running plugins keep going). A frozen node admits nothing
/// new: only a package installed before the freeze — this very package, by name and SHA-256 —
/// may still be started (by `run` or a `serve` load; a loaded plugin's restarts are no
/// admission). `Err` names the frozen license. An unreadable registry counts as "not
/// installed": refused.
pub fn frozen_admission(
    state_dir: &Path,
    node: &crate::node::NodeIdentity,
    name: &str,
    package_sha256: &str,
) -> Result<(), String> {
    let Some(l) = node
        .license
        .as_ref()
        .filter(|l| l.body.state == stockade_trust::license::LicenseState::Frozen)
    else {
        return Ok(());
    };
    if is_installed(state_dir, name, package_sha256) {
        Ok(())
    } else {
        Err(l.body.serial.clone())
    }
}

/// Whether this very package (name and SHA-256) is the one installed under its name. An
/// unreadable registry counts as "no".
pub fn is_installed(state_dir: &Path, name: &str, package_sha256: &str) -> bool {
    read_registry(state_dir).is_ok_and(|r| {
        r.plugins
            .get(name)
            .is_some_and(|p| p.package_sha256 == package_sha256)
    })
}

/// What to do about a start refused by [`frozen_admission`] (`run`'s hint, `serve`'s
/// `load_failed` `data.hint`).
pub const FROZEN_HINT: &str = "install an active license with `stockade node license install FILE`";

/// What a start refused by [`frozen_admission`] says (`run`, `serve`).
pub fn frozen_refusal(serial: &str, name: &str) -> String {
    format!(
        "this node's license {serial} is frozen: no new plugin may be admitted, and this package \
         is not the installed `{name}` (installed plugins keep running)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry entry for `name` in the object directory `dir`.
    fn entry(name: &str, version: &str, dir: &str) -> Installed {
        Installed {
            name: name.into(),
            version: version.into(),
            dir: dir.into(),
            package_sha256: String::new(),
            signature_status: "verified".into(),
            trust_mode: "strict".into(),
            signer_key_id: None,
            signer_chain: vec![],
            signer_subject: None,
            granted_capabilities: vec![],
            tier: None,
            requires: BTreeMap::new(),
            source: String::new(),
            installed_at: 0,
        }
    }

    #[test]
    fn registry_rejects_bad_dir_names_and_schema() {
        let d = tempfile::tempdir().unwrap();
        let (mut st, rec) = Store::open(d.path(), true).unwrap();
        assert!(rec.is_empty());
        let reg = d.path().join("store/registry.json");
        let mut r = Registry::default();
        r.plugins
            .insert("x".into(), entry("x", "1.0.0", "../../etc"));
        assert!(matches!(st.save(r), Ok(())));
        drop(st);
        assert!(matches!(
            Store::open(d.path(), true),
            Err(StoreError::BadDirName(_))
        ));
        std::fs::write(&reg, br#"{"schema":"other/9","plugins":{}}"#).unwrap();
        assert!(matches!(
            Store::open(d.path(), true),
            Err(StoreError::Schema { .. })
        ));
    }

    /// A crash between the making of `store/` (or `staging/`, `plugins/`) and its rename into
    /// place leaves an empty temporary directory (`fileio::make_dir_at`): the store's start
    /// removes this uid's stale ones, in the state directory and in `store/`.
    #[test]
    fn the_start_sweeps_directories_whose_making_a_crash_cut_short() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), true).unwrap());
        // No pid is ever above pid_max (at most 2^22): a maker that is gone.
        let name = format!("{}999999999-a", crate::fileio::MADE_DIR_PREFIX);
        let left = [d.path().join(&name), d.path().join("store").join(&name)];
        for p in &left {
            std::fs::create_dir(p).unwrap();
            File::open(p)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2))
                .unwrap();
        }
        drop(Store::open(d.path(), true).unwrap());
        for p in &left {
            assert!(!p.exists(), "{}", p.display());
        }
    }

    /// A kill inside an atomic write (the registry's, in the store; the revocation memory's or
    /// a source file's, in the state directory) leaves its `.stockade-tmp-…` file: the store's
    /// start removes a stale one, as it does a staging directory. Nothing did: each such kill
    /// left one for good.
    #[test]
    fn the_start_sweeps_files_a_killed_atomic_write_left() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), true).unwrap());
        let name = format!("{}killed", crate::fileio::RESERVED_PREFIX);
        let left = [d.path().join(&name), d.path().join("store").join(&name)];
        for p in &left {
            std::fs::write(p, b"{\"schema\": \"stockade-st").unwrap();
            File::open(p)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - 2 * crate::fileio::LEFTOVER_AGE)
                .unwrap();
        }
        drop(Store::open(d.path(), true).unwrap());
        for p in &left {
            assert!(!p.exists(), "{}", p.display());
        }
    }

    #[test]
    fn recovery_removes_staging_and_orphans_and_lock_excludes() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), true).unwrap());
        std::fs::create_dir(d.path().join("store/staging/install-x")).unwrap();
        std::fs::create_dir(d.path().join("store/plugins/ghost-1.0.0-abc")).unwrap();
        let (st, rec) = Store::open(d.path(), true).unwrap();
        assert_eq!(rec.staging, ["install-x"]);
        assert_eq!(rec.orphans, ["ghost-1.0.0-abc"]);
        assert!(matches!(
            Store::open(d.path(), true),
            Err(StoreError::Locked(_))
        ));
        drop(st);
        assert!(Store::open(d.path(), true).is_ok());
    }

    /// A store, `staging/` or `plugins/` that is a symlink is refused before anything is
    /// listed or removed through it: recovery used to empty whatever directory it pointed at
    /// (the daemon's user owns the state directory and can plant one for root's CLI).
    #[test]
    fn symlinked_store_directories_are_refused_and_their_targets_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir_all(victim.join("tree")).unwrap();
        std::fs::write(victim.join("file.conf"), "x").unwrap();
        let unsafe_open = |state: &Path| {
            matches!(
                Store::open(state, true),
                Err(StoreError::Held(HeldDirError::Unsafe { .. }))
            )
        };
        // store -> victim
        let a = d.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::os::unix::fs::symlink(&victim, a.join(STORE_DIR)).unwrap();
        assert!(unsafe_open(&a));
        // store/staging -> victim, store/plugins -> victim
        for sub in ["staging", "plugins"] {
            let b = d.path().join(format!("b-{sub}"));
            std::fs::create_dir_all(b.join(STORE_DIR)).unwrap();
            std::os::unix::fs::symlink(&victim, b.join(STORE_DIR).join(sub)).unwrap();
            assert!(unsafe_open(&b), "{sub}");
        }
        assert!(victim.join("file.conf").exists() && victim.join("tree").exists());
    }

    /// A store that others may write, or that belongs to another user, is refused: whoever can
    /// change it could redirect what this process removes or writes there.
    #[test]
    fn a_store_others_may_change_is_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(Store::open(d.path(), true).unwrap());
        let store = d.path().join(STORE_DIR);
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = Store::open(d.path(), true).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Store::open(d.path(), true).is_ok());
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        std::os::unix::fs::chown(&store, Some(65534), None).unwrap();
        let e = Store::open(d.path(), true).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    }

    /// The store's lock is its owner's alone: made 0600 (any user who can open a lock can hold
    /// it forever, and root's installs waited for it), an earlier build's 0644 narrowed back when
    /// the owner opens the store, and one of another user refused (`LockUnsafe`: 78
    /// `store.unsafe`), the store untouched.
    #[test]
    fn the_store_lock_is_its_owners_alone() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("store/lock");
        let mode = || std::fs::metadata(&lock).unwrap().mode() & 0o7777;
        drop(Store::open(d.path(), true).unwrap());
        assert_eq!(mode(), 0o600);
        // An earlier build's lock.
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(d.path(), true).unwrap());
        assert_eq!(mode(), 0o600, "narrowed back by Store::open");
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::view(d.path()).unwrap());
        assert_eq!(mode(), 0o600, "narrowed back by the owner's view");
        if !crate::test_support::root_or_skip("chown to another uid needs root") {
            return;
        }
        std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
        std::fs::create_dir(d.path().join("store/staging/install-x")).unwrap();
        let e = Store::open(d.path(), true).unwrap_err();
        assert!(matches!(e, StoreError::LockUnsafe { .. }), "{e:?}");
        assert!(
            crate::package::verify::error_chain(&e).contains("belongs to uid 65534"),
            "{e:?}"
        );
        assert!(
            d.path().join("store/staging/install-x").exists(),
            "recovered"
        );
        assert!(matches!(
            Store::view(d.path()),
            Err(StoreError::LockUnsafe { .. })
        ));
        assert!(matches!(
            Store::lock_existing(d.path(), true),
            Err(StoreError::LockUnsafe { .. })
        ));
    }

    /// What a lockless reader compares: the registry file read, kept open. The same file read
    /// again is the same registry; one a commit replaced is another, even after several
    /// commits (a freed inode's number is reused; the one held is not freed).
    #[test]
    fn a_registry_replaced_since_it_was_read_is_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let (mut st, _) = Store::open(d.path(), true).unwrap();
        let held = || HeldDir::open(d.path(), STORE_DIR, None).unwrap();
        // No registry yet, then none again: the same.
        assert!(held_registry(&held()).unwrap().1 == held_registry(&held()).unwrap().1);
        st.save(Registry::default()).unwrap();
        let (_, first) = held_registry(&held()).unwrap();
        assert!(first == held_registry(&held()).unwrap().1);
        for v in ["1.0.0", "2.0.0", "3.0.0", "4.0.0"] {
            let mut r = Registry::default();
            r.plugins.insert("p".into(), entry("p", v, "p-dir"));
            st.save(r).unwrap();
            let (reg, now) = held_registry(&held()).unwrap();
            assert!(first != now, "{v}");
            assert_eq!(reg.plugins["p"].version, v);
        }
    }

    /// The lockless reader's rule ([`settle`]) against a store that changes between a check
    /// and its re-read: a finding in the object directory the registry still names for the
    /// entry — the very directory held during the check — stands, however many other commits
    /// came between; one made by a removal or an upgrade committed meanwhile (the directory
    /// gone under the check) is that removal (`Removed`) or is checked again as the registry
    /// now names it, and reported only if it is found again there; a clean check is reported at
    /// once; a plugin installed anew at every check is `Busy` after [`SETTLE_ROUNDS`] checks.
    /// `K`: which registry was read, `D`: which directory is at an object's name (numbers the
    /// fake changes with every commit and every directory made).
    #[test]
    fn a_lockless_check_reports_only_findings_the_registry_still_names() {
        use std::cell::{Cell, RefCell};
        let v1 = entry("p", "1.0.0", "p-1.0.0-aaa");
        let v2 = entry("p", "2.0.0", "p-2.0.0-bbb");
        // The fake store: which registry is current and what it names for `p`, and which
        // directory (an inode number) is at each object's name.
        let registry = RefCell::new((1u32, Some(v1.clone())));
        let inodes: RefCell<BTreeMap<String, u32>> = RefCell::new(BTreeMap::new());
        let next_inode = Cell::new(100u32);
        let make = |dir: &str| {
            next_inode.set(next_inode.get() + 1);
            inodes
                .borrow_mut()
                .insert(dir.to_string(), next_inode.get());
        };
        let hold = |p: &Installed| inodes.borrow().get(&p.dir).copied();
        let rereads = Cell::new(0);
        let reread = |p: &Installed| {
            rereads.set(rereads.get() + 1);
            let (k, named) = registry.borrow().clone();
            Ok::<_, StoreError>((k, named, inodes.borrow().get(&p.dir).copied()))
        };
        // A check that finds the object directory gone when `gone` names it (a removal or an
        // upgrade removed it after its commit), and otherwise a clean tree — or a tampered one,
        // for the directories in `tampered`.
        let checks = RefCell::new(Vec::new());
        let tampered: RefCell<Vec<String>> = RefCell::new(vec![]);
        let gone: RefCell<Vec<String>> = RefCell::new(vec![]);
        let commit_during_check: RefCell<Option<(u32, Option<Installed>)>> = RefCell::new(None);
        let check = |p: &Installed| {
            checks.borrow_mut().push(p.dir.clone());
            let missing = gone.borrow().contains(&p.dir);
            // A commit while this check ran: what is gone is gone for good (no longer named)
            // or made again (named anew: another directory at the name).
            if let Some(next) = commit_during_check.borrow_mut().take() {
                for d in gone.borrow_mut().drain(..) {
                    if next.1.as_ref().is_some_and(|e| e.dir == d) {
                        make(&d);
                    } else {
                        inodes.borrow_mut().remove(&d);
                    }
                }
                if let Some(e) = &next.1 {
                    if !inodes.borrow().contains_key(&e.dir) {
                        make(&e.dir);
                    }
                }
                *registry.borrow_mut() = next;
            }
            if missing {
                "missing"
            } else if tampered.borrow().contains(&p.dir) {
                "tampered"
            } else {
                "ok"
            }
        };
        let clean = |v: &&str| *v == "ok";
        let reset = |reg: (u32, Option<Installed>)| {
            inodes.borrow_mut().clear();
            if let Some(e) = &reg.1 {
                make(&e.dir);
            }
            *registry.borrow_mut() = reg;
            checks.borrow_mut().clear();
            rereads.set(0);
        };

        // Clean: reported without a re-read.
        reset((1, Some(v1.clone())));
        let r = settle(&1, v1.clone(), hold, check, clean, reread).unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "ok") if p == &v1),
            "{r:?}"
        );
        assert_eq!(rereads.get(), 0);

        // A real finding: the registry that named it was not replaced since.
        reset((1, Some(v1.clone())));
        *tampered.borrow_mut() = vec![v1.dir.clone()];
        let r = settle(&1, v1.clone(), hold, check, clean, reread).unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "tampered") if p == &v1),
            "{r:?}"
        );
        tampered.borrow_mut().clear();

        // Removed while checked: the registry dropped it (commit), then its directory went.
        reset((1, Some(v1.clone())));
        *gone.borrow_mut() = vec![v1.dir.clone()];
        *commit_during_check.borrow_mut() = Some((2, None));
        let r = settle(&1, v1.clone(), hold, check, clean, reread).unwrap();
        assert!(matches!(r, Settled::Removed(ref p) if p == &v1), "{r:?}");

        // Upgraded while checked: v1's directory removed after v2's commit; v2 checked, clean.
        reset((1, Some(v1.clone())));
        *gone.borrow_mut() = vec![v1.dir.clone()];
        *commit_during_check.borrow_mut() = Some((2, Some(v2.clone())));
        let r = settle(&1, v1.clone(), hold, check, clean, reread).unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "ok") if p == &v2),
            "{r:?}"
        );
        assert_eq!(*checks.borrow(), [v1.dir.clone(), v2.dir.clone()]);

        // Removed and installed again (the same entry, the same directory name) while checked:
        // another directory at the name, so checked again, clean.
        reset((1, Some(v1.clone())));
        *gone.borrow_mut() = vec![v1.dir.clone()];
        *commit_during_check.borrow_mut() = Some((3, Some(v1.clone())));
        let r = settle(&1, v1.clone(), hold, check, clean, reread).unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "ok") if p == &v1),
            "{r:?}"
        );
        assert_eq!(checks.borrow().len(), 2);

        // Tampered, while another plugin's install or removal replaces the registry at every
        // check: the registry still names the entry and its name is the directory checked, so
        // the finding stands at once. (It was checked again each time and reported `Busy`:
        // 108 instead of the tampering, to an agent that retries on 108 for ever.)
        reset((1, Some(v1.clone())));
        *tampered.borrow_mut() = vec![v1.dir.clone()];
        let r = settle(
            &1,
            v1.clone(),
            hold,
            |p| {
                let n = registry.borrow().0 + 1;
                registry.borrow_mut().0 = n;
                check(p)
            },
            clean,
            reread,
        )
        .unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "tampered") if p == &v1),
            "{r:?}"
        );
        assert_eq!(checks.borrow().len(), 1);
        tampered.borrow_mut().clear();

        // A directory missing (nothing to hold) while the registry keeps being replaced: no
        // identity to confirm it by, so not a finding yet; once a registry is read twice
        // unreplaced, it stands.
        reset((1, Some(v1.clone())));
        inodes.borrow_mut().clear();
        let r = settle(
            &1,
            v1.clone(),
            hold,
            |p| {
                if checks.borrow().is_empty() {
                    registry.borrow_mut().0 = 2;
                }
                checks.borrow_mut().push(p.dir.clone());
                "missing"
            },
            clean,
            reread,
        )
        .unwrap();
        assert!(
            matches!(r, Settled::Current(ref p, "missing") if p == &v1),
            "{r:?}"
        );
        assert_eq!(checks.borrow().len(), 2);

        // Installed anew at every check: nothing said after SETTLE_ROUNDS checks — a new
        // version, or the same one in a new directory.
        for same in [false, true] {
            reset((1, Some(v1.clone())));
            let n = Cell::new(1);
            let r = settle(
                &1,
                v1.clone(),
                hold,
                |p| {
                    n.set(n.get() + 1);
                    let next = if n.get() % 2 == 0 && !same { &v2 } else { &v1 };
                    *gone.borrow_mut() = vec![p.dir.clone()];
                    *commit_during_check.borrow_mut() = Some((n.get(), Some(next.clone())));
                    check(p)
                },
                clean,
                reread,
            )
            .unwrap();
            assert!(matches!(r, Settled::Busy(_)), "same {same}: {r:?}");
            assert_eq!(checks.borrow().len(), SETTLE_ROUNDS, "same {same}");
        }
    }

    /// `source refresh`'s lock neither creates a store nor recovers one.
    #[test]
    fn lock_existing_creates_nothing_and_recovers_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(Store::lock_existing(d.path(), true).unwrap().is_none());
        assert!(!d.path().join(STORE_DIR).exists());
        drop(Store::open(d.path(), true).unwrap());
        std::fs::create_dir(d.path().join("store/staging/install-x")).unwrap();
        let l = Store::lock_existing(d.path(), true).unwrap();
        assert!(l.is_some());
        assert!(matches!(
            Store::open(d.path(), true),
            Err(StoreError::Locked(_))
        ));
        drop(l);
        assert!(d.path().join("store/staging/install-x").exists());
    }

    /// An error as the CLI prints it: the message and every cause.
    /// The error names `shown` and no path through a descriptor.
    fn assert_names(e: &StoreError, shown: &Path) {
        let text = crate::package::verify::error_chain(e);
        assert!(
            text.contains(&shown.display().to_string()) && !text.contains("/proc/self/fd"),
            "expected {}: {text}",
            shown.display()
        );
    }

    /// The one entry of `dir` (the directory a `stage` made in `staging/`).
    fn only_entry(dir: &Path) -> PathBuf {
        let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// The store works through `/proc/self/fd/N/…` (its held directories), but what it says names
    /// `<state>/store/…`: a descriptor's path tells the reader nothing, least of all once the
    /// command has exited. Staging, moving the tree into place, committing and the registry's
    /// write and read each fail here for real, and each error names the store's path.
    #[test]
    fn io_errors_name_the_store_path_not_its_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let store = std::fs::canonicalize(d.path()).unwrap().join("state/store");
        let pkg = d.path().join("pkg.stockade");
        std::fs::write(&pkg, "not verified here").unwrap();
        // Staging: the staging directory is gone, nothing can be made in it.
        let (st, _) = Store::open(&state, true).unwrap();
        std::fs::remove_dir(store.join("staging")).unwrap();
        assert_names(&st.stage(&pkg).unwrap_err(), &store.join("staging"));
        drop(st);
        // Moving the extracted tree into the staging directory: a file is where `tree` goes.
        let (mut st, _) = Store::open(&state, true).unwrap();
        let staged = st.stage(&pkg).unwrap();
        let dir = only_entry(&store.join("staging"));
        std::fs::write(dir.join(TREE_DIR), "").unwrap();
        let extracted = d.path().join("extracted");
        std::fs::create_dir(&extracted).unwrap();
        let e = st.finish_staging(&staged, extracted).unwrap_err();
        assert_names(&e, &dir.join(TREE_DIR));
        // Committing: the staging directory is gone before it is moved into `plugins/`.
        std::fs::remove_dir_all(&dir).unwrap();
        let e = st
            .commit(vec![(staged, entry("p", "1.0.0", "p-1.0.0-abc"))])
            .unwrap_err();
        assert_names(&e, &store.join("plugins/p-1.0.0-abc"));
        // The registry cannot be replaced (a directory is in its place)…
        std::fs::create_dir(store.join("registry.json")).unwrap();
        assert_names(&st.remove(&[]).unwrap_err(), &store.join("registry.json"));
        drop(st);
        // … nor read.
        let e = Store::open(&state, true).unwrap_err();
        assert_names(&e, &store.join("registry.json"));
    }

    /// Recovery that cannot remove a leftover (an immutable file in it: root's `chattr +i`)
    /// leaves it, names it under `<state>/store/staging`, removes the others and opens the
    /// store: it used to fail every install, update and removal (74) until the leftover was
    /// removed by hand.
    #[test]
    fn a_leftover_recovery_cannot_remove_is_named_by_its_store_path() {
        if !crate::test_support::root_or_skip("chattr +i needs root") {
            return;
        }
        /// Lifts the immutable flag again, whatever the test does, so the tempdir can go.
        struct Immutable(PathBuf);
        impl Drop for Immutable {
            fn drop(&mut self) {
                let _ = std::process::Command::new("chattr")
                    .arg("-i")
                    .arg(&self.0)
                    .status();
            }
        }
        let d = tempfile::tempdir().unwrap();
        let store = std::fs::canonicalize(d.path()).unwrap().join(STORE_DIR);
        drop(Store::open(d.path(), true).unwrap());
        let left = store.join("staging/install-x");
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("f"), "").unwrap();
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .arg(left.join("f"))
            .status();
        let _undo = Immutable(left.join("f"));
        if !crate::test_support::require(
            chattr.is_ok_and(|s| s.success()),
            "chattr +i is not available here (e2fsprogs, a filesystem with the flag)",
        ) {
            return;
        }
        // The store opens (nothing names the leftover), the leftover is left and said, by its
        // path under `<state>/store`, never the descriptor's; another one goes.
        let other = store.join("plugins/ghost-1.0.0-abc");
        std::fs::create_dir(&other).unwrap();
        let (_store, rec) = Store::open(d.path(), true).unwrap();
        assert_eq!(rec.orphans, ["ghost-1.0.0-abc"]);
        assert!(rec.staging.is_empty() && !other.exists() && left.exists());
        let [said] = rec.left.as_slice() else {
            panic!("one leftover said: {rec:?}")
        };
        assert!(
            said.contains(&left.display().to_string()) && !said.contains("/proc/self/fd"),
            "{said}"
        );
    }

    /// What a store directory holds, file by file with contents ("nothing changed" is equality).
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if p.is_dir() {
                    todo.push(p);
                    out.insert(rel, b"<dir>".to_vec());
                } else {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    /// The descriptor claim, proved: once [`Store::open`] has returned, `store` — or `staging`
    /// and `plugins` in it — replaced by a symlink to another directory (the daemon's user owns
    /// the state directory and can do that at any moment) changes nothing the store does. Stage,
    /// finish, commit (an upgrade, so a superseded directory is removed), recover and remove
    /// all go to the directories opened at the start; the symlinks' target, which holds an
    /// entry of every name those operations write or remove, is left exactly as it was.
    #[test]
    fn directories_swapped_for_symlinks_after_open_redirect_nothing() {
        for swap in ["store", "staging and plugins"] {
            let d = tempfile::tempdir().unwrap();
            let state = d.path().join("state");
            let store = state.join(STORE_DIR);
            // The target: a store-like tree whose every entry would be hit by an operation
            // that followed a path instead of a descriptor.
            let victim = d.path().join("victim");
            for f in [
                "registry.json",
                "lock",
                "staging/install-left/f",
                "plugins/p-1.0.0-aaa/f",
                "plugins/p-2.0.0-bbb/f",
                "plugins/ghost-1.0.0-ccc/f",
            ] {
                let f = victim.join(f);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, "the victim's").unwrap();
            }
            let before = snapshot(&victim);
            let pkg = d.path().join("pkg.stockade");
            std::fs::write(&pkg, "package bytes").unwrap();

            let (mut st, _) = Store::open(&state, true).unwrap();
            // Where the held directories are now.
            let moved = state.join("store.moved");
            let (held_store, held_staging, held_plugins) = if swap == "store" {
                std::fs::rename(&store, &moved).unwrap();
                std::os::unix::fs::symlink(&victim, &store).unwrap();
                (moved.clone(), moved.join("staging"), moved.join("plugins"))
            } else {
                let mut held = vec![];
                for sub in ["staging", "plugins"] {
                    let to = store.join(format!("{sub}.moved"));
                    std::fs::rename(store.join(sub), &to).unwrap();
                    std::os::unix::fs::symlink(victim.join(sub), store.join(sub)).unwrap();
                    held.push(to);
                }
                (store.clone(), held[0].clone(), held[1].clone())
            };
            let install = |st: &mut Store, version: &str, dir: &str| {
                let staged = st.stage(&pkg).unwrap();
                let staging_dir = only_entry(&held_staging);
                assert!(
                    staging_dir.join(PACKAGE_FILE).is_file(),
                    "{swap}: staged there"
                );
                let extracted = staging_dir.join("x");
                std::fs::create_dir(&extracted).unwrap();
                std::fs::write(extracted.join("main"), "tree").unwrap();
                st.finish_staging(&staged, extracted).unwrap();
                st.commit(vec![(staged, entry("p", version, dir))]).unwrap();
                assert!(held_plugins.join(dir).join("tree/main").is_file(), "{swap}");
            };
            install(&mut st, "1.0.0", "p-1.0.0-aaa");
            // The upgrade removes the superseded p-1.0.0-aaa: the held one.
            install(&mut st, "2.0.0", "p-2.0.0-bbb");
            assert!(!held_plugins.join("p-1.0.0-aaa").exists(), "{swap}");
            let reg: Registry =
                serde_json::from_slice(&std::fs::read(held_store.join("registry.json")).unwrap())
                    .unwrap();
            assert_eq!(reg.plugins["p"].dir, "p-2.0.0-bbb", "{swap}");
            // Recovery removes the held leftovers.
            std::fs::create_dir(held_staging.join("install-left")).unwrap();
            std::fs::create_dir(held_plugins.join("ghost-1.0.0-ccc")).unwrap();
            let r = st.recover().unwrap();
            assert_eq!(r.staging, ["install-left"], "{swap}");
            assert_eq!(r.orphans, ["ghost-1.0.0-ccc"], "{swap}");
            // Removal: registry first, then the held object directory.
            st.remove(&["p".to_string()]).unwrap();
            assert!(!held_plugins.join("p-2.0.0-bbb").exists(), "{swap}");
            let reg: Registry =
                serde_json::from_slice(&std::fs::read(held_store.join("registry.json")).unwrap())
                    .unwrap();
            assert!(reg.plugins.is_empty(), "{swap}");
            drop(st);
            assert_eq!(
                snapshot(&victim),
                before,
                "{swap}: the symlinks' target changed"
            );
            // And the next start refuses the symlinks rather than follow them.
            assert!(
                matches!(
                    Store::open(&state, true),
                    Err(StoreError::Held(HeldDirError::Unsafe { .. }))
                ),
                "{swap}"
            );
            assert_eq!(snapshot(&victim), before, "{swap}");
        }
    }
}
