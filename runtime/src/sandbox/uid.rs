//! Per-plugin host uids (root mode): each live sandbox holds an exclusive `flock` on
//! `/run/stockade/uids/<uid>.lock` for its whole life, so no two live plugins share a uid. The
//! kernel drops the lock when the runtime exits, even on a crash, so a uid is never leaked.
//! Lock files are never deleted: unlinking a lock file while another runtime is about to lock it
//! would let two runtimes hold "the same" uid through different inodes.

use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use stockade_policy::sandbox::subids::{overlapping, Delegation};

/// Default lock directory.
pub const LOCK_DIR: &str = "/run/stockade/uids";

/// Why no uid could be allocated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UidError {
    /// The lock directory or a lock file is unusable.
    #[error("cannot use uid lock `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Some ids of the range are delegated to another user ([`foreign_delegations`]) and the
    /// policy does not allow degradation `distinct_uid`.
    #[error("the plugins' uid range {first}–{last} is not theirs alone: {found}; that user can become a plugin's uid with newuidmap (remove the overlap, or move [identity] uid_first, or allow degradation `distinct_uid`)")]
    Delegated {
        /// Range start.
        first: u32,
        /// Range end (inclusive).
        last: u64,
        /// The first delegation found.
        found: Delegated,
    },
    /// The runtime runs in a user namespace (a rootless container: Podman's, Docker's
    /// userns-remap, bubblewrap's, a Kubernetes user namespace) whose `uid_map` or `gid_map`
    /// does not map every id of the range, or that denies `setgroups`: a plugin's uid could not
    /// be mapped into its sandbox, nor the runtime's groups dropped. Found before anything is
    /// made; before audit-167 the launch stopped at the id maps or the groups' drop with a bare
    /// "Operation not permitted".
    #[error("the plugins' uid range {first}–{last} cannot be used in this user namespace: {why} (a rootless container, or one with a user namespace of its own)")]
    Unmapped {
        /// Range start.
        first: u32,
        /// Range end (inclusive).
        last: u64,
        /// What the namespace's maps say.
        why: String,
    },
    /// Every uid of the range is in use.
    #[error("all {count} uids from {first} are held by live sandboxes")]
    Exhausted {
        /// Range start.
        first: u32,
        /// Range size.
        count: u32,
    },
    /// No uid of the range is free, and some of them only because their lock file is not one
    /// ([`allocate`]): the first such file is named.
    #[error("no uid of the {count} from {first} is free: {unusable} of their lock files cannot be used, the first `{}`", path.display())]
    Unusable {
        /// Range start.
        first: u32,
        /// Range size.
        count: u32,
        /// How many lock files were refused.
        unusable: u32,
        /// The first one refused.
        path: PathBuf,
        /// Why (not a regular file, another link, a symlink, not ours to open).
        #[source]
        source: io::Error,
    },
}

/// A range of subordinate ids delegated to another user that reaches into the plugins' range
/// ([`foreign_delegations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated {
    /// `/etc/subuid` or `/etc/subgid`.
    pub file: &'static str,
    /// The delegation.
    pub delegation: Delegation,
}

impl std::fmt::Display for Delegated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.delegation;
        write!(
            f,
            "{} delegates ids {}–{} to `{}`",
            self.file,
            d.start,
            d.start + d.count - 1,
            d.owner.escape_debug()
        )
    }
}

/// The files shadow-utils delegates subordinate ids in.
pub const SUBID_FILES: [&str; 2] = ["/etc/subuid", "/etc/subgid"];

/// The service user the packages register the plugins' range for (`sysusers.d/stockade.conf`,
/// the postinst): the daemon's own user, trusted with those ids as this process is.
pub const SERVICE_USER: &str = "stockade";

/// The delegations of subordinate ids in [`SUBID_FILES`] that reach into `[first, first +
/// count)` and belong to someone other than root, this process's user or [`SERVICE_USER`]:
/// such a user can become a plugin's uid (`newuidmap`) and signal, trace or write as it
/// (policy/src/sandbox/subids.rs says why). A missing file delegates nothing; one that cannot be
/// read is an error (fail closed). Checked at every launch: the files are `stat`ed each time and
/// read again only when one changed (a long-lived daemon sees a `usermod --add-subuids` made
/// after it started), and the names resolved once per reading.
pub fn foreign_delegations(first: u32, count: u32) -> Result<Vec<Delegated>, UidError> {
    delegations_in(SUBID_FILES, first, count)
}

/// [`foreign_delegations`] in `files` (the tests' own).
fn delegations_in(
    files: [&'static str; 2],
    first: u32,
    count: u32,
) -> Result<Vec<Delegated>, UidError> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    /// What identifies a version of each file: device, inode, size, change time (ns).
    type Stamp = [Option<(u64, u64, u64, i64, i64)>; 2];
    type Key = ([&'static str; 2], u32, u32, Stamp);
    static CACHE: Mutex<Option<(Key, Vec<Delegated>)>> = Mutex::new(None);
    let stamp: Stamp = files.map(|f| {
        fs::metadata(f)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.size(), m.ctime(), m.ctime_nsec()))
    });
    let key = (files, first, count, stamp);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, found)) = cache.as_ref().filter(|(k, _)| *k == key) {
        return Ok(found.clone());
    }
    let euid = nix::unistd::geteuid();
    let me = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let service = nix::unistd::User::from_name(SERVICE_USER)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw().to_string());
    let trusted = |owner: &str| {
        owner == "root"
            || owner == "0"
            || owner == SERVICE_USER
            || owner == euid.as_raw().to_string()
            || me.as_deref() == Some(owner)
            || service.as_deref() == Some(owner)
    };
    let mut found = Vec::new();
    for file in files {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(UidError::Io {
                    path: file.into(),
                    source,
                })
            }
        };
        found.extend(
            overlapping(&text, first, count, trusted)
                .into_iter()
                .map(|delegation| Delegated { file, delegation }),
        );
    }
    *cache = Some((key, found.clone()));
    Ok(found)
}

/// Where this process's user namespace lists its id maps and whether `setgroups` is allowed.
const ID_MAPS: [&str; 3] = [
    "/proc/self/uid_map",
    "/proc/self/gid_map",
    "/proc/self/setgroups",
];

/// Why the range `[first, first + count)` cannot be used from this process's user namespace
/// ([`UidError::Unmapped`]), `None` when it can: the initial namespace maps every id, a
/// container's may map a few (rootless Podman: 65536 from 0, bubblewrap: 0 alone). Files that
/// cannot be read say nothing (a kernel without user namespaces has the initial one only).
pub fn unmapped(first: u32, count: u32) -> Option<String> {
    let read = |p: &str| fs::read_to_string(p).ok();
    let [uid_map, gid_map, setgroups] = ID_MAPS.map(read);
    unmapped_in(
        first,
        count,
        [
            (ID_MAPS[0], uid_map.as_deref()),
            (ID_MAPS[1], gid_map.as_deref()),
        ],
        setgroups.as_deref(),
    )
}

/// [`unmapped`] of the texts of `uid_map` and `gid_map` (each with its path) and `setgroups`
/// (pure). A map's line is `INSIDE OUTSIDE COUNT`; the range must lie inside the union of the
/// lines' inside ranges (the kernel lists at most 340, none overlapping).
fn unmapped_in(
    first: u32,
    count: u32,
    maps: [(&str, Option<&str>); 2],
    setgroups: Option<&str>,
) -> Option<String> {
    let end = u64::from(first) + u64::from(count);
    for (path, text) in maps {
        let Some(text) = text else { continue };
        let mut lines: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (f.len() == 3).then(|| (f[0], f[0] + f[2]))
            })
            .collect();
        lines.sort_unstable();
        // Walk the range from its first id through the lines that cover it, in order.
        let mut next = u64::from(first);
        for (from, to) in &lines {
            if *from <= next && next < *to {
                next = *to;
            }
        }
        if next < end {
            let shown: Vec<String> = lines
                .iter()
                .map(|(f, t)| format!("{f}–{}", t - 1))
                .collect();
            return Some(format!(
                "`{path}` does not map id {next} (it maps {})",
                if shown.is_empty() {
                    "nothing".to_string()
                } else {
                    shown.join(", ")
                }
            ));
        }
    }
    if setgroups.is_some_and(|s| s.trim() == "deny") {
        return Some(format!(
            "`{}` is `deny`: the runtime's supplementary groups cannot be dropped",
            ID_MAPS[2]
        ));
    }
    None
}

/// A held uid; dropping it releases the lock.
#[derive(Debug)]
pub struct UidLease {
    /// The host uid (also used as the gid).
    pub uid: u32,
    _lock: OwnedFd,
}

/// Close `dir` to other users (0700) if it was found wider (made by hand, or by an older build
/// under a permissive umask): the uid locks in it are 0644 — root and the daemon's user both
/// open them — so any user who could reach them could `flock` every one and hold it, and every
/// launch would fail as out of uids. Best effort: a directory this process may not change stays
/// as it is (a denial of service at worst, never a shared uid: a held lock is a busy uid).
fn close_to_others(dir: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Through a descriptor of the directory itself: a name swapped for a link meanwhile (by the
    // owner of the directory above) never has its target's mode changed.
    let Ok(d) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
    else {
        return;
    };
    if let Ok(m) = d.metadata() {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = d.set_permissions(fs::Permissions::from_mode(mode & 0o700));
        }
    }
}

/// Take the first free uid of `[first, first + count)` under `dir`.
///
/// A uid whose lock file cannot be used — a FIFO, device, symlink or hard link planted at its
/// name, or a file this user may not open — is passed over like a busy one
/// ([`sys::open_lock_file`] refuses it without blocking). That fails closed: the uid is not
/// taken, so no two sandboxes can come to share it through it. And it does not let the owner
/// of `dir` (the daemon's user, in the packaged layout) deny root every sandbox with one file,
/// as refusing the allocation would; that user can keep uids busy anyway, by holding their
/// locks. When no uid is left and some were passed over, the error names the first such file.
pub fn allocate(dir: &Path, first: u32, count: u32) -> Result<UidLease, UidError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UidError::Io { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir))?;
    close_to_others(dir);
    let mut unusable: Option<(u32, PathBuf, io::Error)> = None;
    for uid in first..first.saturating_add(count) {
        let path = dir.join(format!("{uid}.lock"));
        let c = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| UidError::Io {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        let fd = match sys::open_lock_file(&c) {
            Ok(fd) => fd,
            Err(e) if passed_over(&e) => {
                match &mut unusable {
                    Some((n, ..)) => *n += 1,
                    None => unusable = Some((1, path, e)),
                }
                continue;
            }
            Err(e) => return Err(err(&path)(e)),
        };
        if sys::try_flock_exclusive(fd.as_fd()).map_err(err(&path))? {
            return Ok(UidLease { uid, _lock: fd });
        }
    }
    Err(match unusable {
        None => UidError::Exhausted { first, count },
        Some((unusable, path, source)) => UidError::Unusable {
            first,
            count,
            unusable,
            path,
            source,
        },
    })
}

/// Whether a lock file's open failed because of what is at its name (passed over), not
/// because of this host (the allocation ends): every error but those of the host as a whole —
/// out of descriptors or memory, a read-only, full or failing filesystem. A socket (ENXIO), a
/// device without a driver (ENODEV), a busy executable (ETXTBSY) or anything else another user
/// can put at one uid's name must cost that uid, not every sandbox root starts.
fn passed_over(e: &io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOSPC | libc::EROFS | libc::EIO)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range must lie in the maps of the runtime's user namespace: the initial one's maps
    /// everything; rootless Podman's (65536 ids from 0) not the default 200000–265535, but a
    /// range moved inside it; bubblewrap's (0 alone, setgroups denied) none.
    #[test]
    fn the_range_must_be_mapped_in_the_runtime_s_user_namespace() {
        let init = "         0          0 4294967295\n";
        let podman = "         0       1000          1\n         1     100000      65536\n";
        let maps = |t: &'static str| [("uid_map", Some(t)), ("gid_map", Some(t))];
        assert_eq!(
            unmapped_in(200_000, 65_536, maps(init), Some("allow\n")),
            None
        );
        assert_eq!(
            unmapped_in(200_000, 65_536, maps(podman), Some("allow\n")).as_deref(),
            Some("`uid_map` does not map id 200000 (it maps 0–0, 1–65536)")
        );
        // Covered by two adjacent lines, in any order.
        assert_eq!(unmapped_in(0, 60_000, maps(podman), Some("allow")), None);
        assert_eq!(unmapped_in(10_000, 50_000, maps(podman), None), None);
        // One id past the end is enough to refuse.
        assert!(unmapped_in(10_000, 55_538, maps(podman), None)
            .unwrap()
            .contains("does not map id 65537"));
        // The gid map is checked too.
        assert!(unmapped_in(
            10_000,
            10,
            [("uid_map", Some(podman)), ("gid_map", Some("0 0 1\n"))],
            None
        )
        .unwrap()
        .starts_with("`gid_map` does not map id 10000"));
        let bwrap = "         0          0          1\n";
        assert!(unmapped_in(200_000, 1, maps(bwrap), Some("deny\n"))
            .unwrap()
            .contains("(it maps 0–0)"));
        assert!(unmapped_in(0, 1, maps(bwrap), Some("deny\n"))
            .unwrap()
            .contains("`/proc/self/setgroups` is `deny`"));
        // Unreadable maps say nothing.
        assert_eq!(
            unmapped_in(200_000, 1, [("uid_map", None), ("gid_map", None)], None),
            None
        );
    }

    /// A delegation added while the process runs (a daemon started before a `usermod
    /// --add-subuids`) is seen at the next launch, and one removed is forgotten: the files are
    /// read again whenever one changed. They were read once per process.
    #[test]
    fn delegations_are_read_again_when_the_files_change() {
        let d = tempfile::tempdir().unwrap();
        let leak = |p: std::path::PathBuf| -> &'static str {
            Box::leak(p.to_str().unwrap().to_string().into_boxed_str())
        };
        let (uids, gids) = (leak(d.path().join("subuid")), leak(d.path().join("subgid")));
        fs::write(uids, "alice:100000:65536\n").unwrap();
        let owners = || -> Vec<String> {
            delegations_in([uids, gids], 200_000, 65_536)
                .unwrap()
                .into_iter()
                .map(|d| d.delegation.owner)
                .collect()
        };
        assert!(owners().is_empty());
        fs::write(uids, "alice:100000:65536\nbob:165536:65536\n").unwrap();
        assert_eq!(owners(), ["bob"]);
        fs::write(gids, "carol:260000:10\n").unwrap();
        assert_eq!(owners(), ["bob", "carol"]);
        fs::remove_file(uids).unwrap();
        assert_eq!(owners(), ["carol"]);
    }

    /// A uid directory found open to others (0755: its 0644 locks reachable, so anyone could
    /// hold every uid) is closed to 0700 before a uid is taken from it.
    #[test]
    fn a_uid_directory_open_to_others_is_closed() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let _lease = allocate(t.path(), 300_000, 2).unwrap();
        let mode = fs::metadata(t.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn two_live_leases_never_share_a_uid_and_release_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let a = allocate(t.path(), 300_000, 2).unwrap();
        let b = allocate(t.path(), 300_000, 2).unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(matches!(
            allocate(t.path(), 300_000, 2),
            Err(UidError::Exhausted { .. })
        ));
        let freed = a.uid;
        drop(a);
        assert_eq!(allocate(t.path(), 300_000, 2).unwrap().uid, freed);
    }

    /// `allocate` on a thread: a regression that blocks fails the test after 10 s instead of
    /// hanging the run (the stuck open is then released by opening the FIFO for writing).
    fn allocate_within_10s(
        dir: &Path,
        first: u32,
        count: u32,
        fifo: &Path,
    ) -> Result<UidLease, UidError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.to_path_buf();
        std::thread::spawn(move || tx.send(allocate(&d, first, count)).unwrap());
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(r) => r,
            Err(_) => {
                let _ = fs::OpenOptions::new().write(true).open(fifo);
                panic!("allocate blocked on the FIFO at {}", fifo.display());
            }
        }
    }

    /// A FIFO at a uid's lock file (the lock directory's owner can make one) is passed over at
    /// once: it hung root's `exec` in `open` for good. So is a hard link to another file; with
    /// no other uid left, the error names the file.
    #[test]
    fn a_fifo_or_a_hard_link_at_a_lock_file_is_passed_over_without_blocking() {
        use nix::sys::stat::Mode;
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("300000.lock");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
        let lease = allocate_within_10s(t.path(), 300_000, 2, &fifo).unwrap();
        assert_eq!(lease.uid, 300_001);
        match allocate_within_10s(t.path(), 300_000, 1, &fifo) {
            Err(UidError::Unusable {
                unusable: 1, path, ..
            }) => assert_eq!(path, fifo),
            other => panic!("{other:?}"),
        }
        // Busy and unusable together: still the unusable one named.
        assert!(matches!(
            allocate_within_10s(t.path(), 300_000, 2, &fifo),
            Err(UidError::Unusable { unusable: 1, .. })
        ));
        drop(lease);
        let other = t.path().join("elsewhere");
        fs::write(&other, "").unwrap();
        fs::remove_file(t.path().join("300001.lock")).unwrap();
        fs::hard_link(&other, t.path().join("300001.lock")).unwrap();
        assert!(matches!(
            allocate_within_10s(t.path(), 300_000, 2, &fifo),
            Err(UidError::Unusable { unusable: 2, .. })
        ));
        // A socket (its open fails with ENXIO) is passed over too, not the end of allocation.
        fs::remove_file(t.path().join("300001.lock")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(t.path().join("300001.lock")).unwrap();
        fs::remove_file(&fifo).unwrap();
        let lease = allocate_within_10s(t.path(), 300_000, 2, &fifo).unwrap();
        assert_eq!(lease.uid, 300_000);
        assert!(matches!(
            allocate_within_10s(t.path(), 300_000, 2, &fifo),
            Err(UidError::Unusable { unusable: 1, .. })
        ));
    }
}
