//! The sandbox's filesystem view: planned in the parent (pure, testable), applied in the child.
//!
//! ## Layout
//! A fresh tmpfs becomes `/` (read-only once built). On it: the policy's read-only host paths
//! (bind mounts, recursive, made read-only/nosuid/nodev with `mount_setattr(AT_RECURSIVE)` so
//! submounts are covered too and the flags the kernel locked in our user namespace never have to
//! be repeated; before 5.12, a `MS_REMOUNT|MS_BIND` that repeats the locked flags read back with
//! `statvfs`); host symlinks such as merged-/usr `/bin -> usr/bin` recreated as symlinks; the
//! package at `/plugin` read-only; generated `/etc/passwd`, `/etc/group`, `/etc/hostname`,
//! `/etc/hosts`; a size- and inode-limited tmpfs at `/tmp` (nosuid, nodev, noexec); a fresh
//! `/proc` of the new pid namespace with host-revealing files masked and kernel tunables
//! read-only; a minimal read-only tmpfs `/dev` holding binds of null, zero, full, random and
//! urandom and the `fd`/`stdin`/`stdout`/`stderr` symlinks (scripts run through `/dev/fd/N`).
//! Then `pivot_root(".", ".")`, the old root detached, and `/` made read-only.
//!
//! ## Why sources are descriptors
//! The child opens every bind source with `O_PATH` in its new mount namespace (the kernel
//! refuses to bind a mount of another namespace) *before* mounting the staging root over `/tmp`,
//! which may hide a source (a package extracted under `/tmp`), then mounts `/proc/self/fd/N`;
//! the type opened is checked against the plan, so a path swapped since planning is refused.

use super::LaunchStep;
use crate::sys;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};
use stockade_policy::sandbox::ValidatedSandboxPolicy;

/// Where the new root may be assembled inside the child's private mount namespace: the first of
/// these that exists as a directory on the host (a minimal initramfs may lack /tmp). Mounting
/// over it hides it only in our namespace. `/dev`, `/proc` and `/sys` are never used: binds are
/// made from them while staging.
pub const STAGE_CANDIDATES: &[&str] =
    &["/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt"];

fn choose_stage() -> io::Result<&'static str> {
    STAGE_CANDIDATES
        .iter()
        .copied()
        .find(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no directory to stage the new root on",
            )
        })
}

/// /proc files that reveal or control the host kernel: a read-only empty file is bound over them.
/// (`cmdline`: the host's boot parameters, which on VMs and cloud images can carry orchestration
/// arguments and credentials.)
pub const PROC_MASKED_FILES: &[&str] = &[
    "cmdline",
    "kcore",
    "kallsyms",
    "keys",
    "key-users",
    "kmsg",
    "kpagecgroup",
    "kpagecount",
    "kpageflags",
    "latency_stats",
    "sched_debug",
    "sysrq-trigger",
    "timer_list",
    "timer_stats",
    "config.gz",
    "modules",
    "vmallocinfo",
    "slabinfo",
    "iomem",
    "ioports",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
];
/// /proc directories hidden under an empty read-only tmpfs.
pub const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi", "asound", "driver", "tty", "pressure"];
/// /proc subtrees kept visible but read-only (kernel tunables and hardware knobs).
pub const PROC_READ_ONLY: &[&str] = &["sys", "bus", "fs", "irq"];
/// Device nodes bound from the host's /dev.
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// What a host path is, as far as planning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    /// A directory.
    Dir,
    /// A regular file (or another non-directory that can be bound, like a device).
    File,
    /// A symlink with this target.
    Symlink(String),
    /// Nothing there.
    Missing,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// Bind a host path at the same place, read-only.
    BindRo {
        /// Host path (opened by the parent).
        host: PathBuf,
        /// Path inside the sandbox.
        target: String,
        /// Directory (else file).
        dir: bool,
        /// The device and inode the source must be (the package's directory as the runtime
        /// verified it: its path may pass through a directory another user owns).
        id: Option<(u64, u64)>,
    },
    /// Bind a host directory read-write (nosuid, nodev, noexec).
    BindRw {
        /// Host path.
        host: PathBuf,
        /// Path inside the sandbox.
        target: String,
        /// Always true (writable binds are directories); kept for uniform source checks.
        dir: bool,
    },
    /// Recreate a host symlink.
    Symlink {
        /// Path inside the sandbox.
        target: String,
        /// What it points to.
        points_to: String,
    },
}

/// The whole filesystem plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Binds and symlinks, in order.
    pub steps: Vec<MountStep>,
    /// `read_only` paths missing on the host (reported, not fatal).
    pub skipped: Vec<String>,
    /// `writable` paths the host has no directory at, with what is there instead: the launch
    /// refuses them (`LaunchError::WritableNotDir`). A writable path is a promise the plugin
    /// may keep its data there; skipping it would run the plugin without that place, and the
    /// Landlock step would only fail later, naming a path missing *inside* the sandbox.
    pub writable_not_dirs: Vec<(String, String)>,
    /// Files generated on the root tmpfs: (path, contents).
    pub files: Vec<(String, String)>,
    /// /tmp size in bytes and inode limit.
    pub tmp: (u64, u64),
    /// Mount /proc.
    pub proc: bool,
    /// Bind /sys read-only.
    pub sys: bool,
    /// `/proc/sys/user/<file>` values to set in the sandbox's user namespace ([`user_ns_limits`]).
    pub user_ns_limits: Vec<(&'static str, u64)>,
}

/// inotify instances and watches a sandbox allowed `@file-watch` may hold. They are counted
/// against the quota of the user owning the sandbox's user namespace — the runtime's
/// (`fs.inotify.max_user_instances`, 128 by default, for all of root's processes), as queued
/// signals are (`SIGPENDING`); the namespace's own `max_inotify_*` (unlimited by default) bound
/// this sandbox's share.
pub const INOTIFY_INSTANCES: u64 = 8;
/// See [`INOTIFY_INSTANCES`].
pub const INOTIFY_WATCHES: u64 = 8192;

/// The per-user-namespace caps a policy needs: the inotify ones when its seccomp filter admits
/// inotify at all (`@file-watch`), else none.
pub fn user_ns_limits(policy: &ValidatedSandboxPolicy) -> Vec<(&'static str, u64)> {
    let watches = ["inotify_init", "inotify_init1"]
        .iter()
        .any(|s| policy.seccomp_allow.contains(*s));
    if !watches {
        return Vec::new();
    }
    vec![
        ("max_inotify_instances", INOTIFY_INSTANCES),
        ("max_inotify_watches", INOTIFY_WATCHES),
    ]
}

/// Build the plan from the policy and a view of the host (a fake in tests).
pub fn plan(
    policy: &ValidatedSandboxPolicy,
    package_dir: Option<(&Path, Option<(u64, u64)>)>,
    lookup: impl Fn(&Path) -> HostEntry,
) -> MountPlan {
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for p in &policy.read_only {
        match lookup(Path::new(p)) {
            HostEntry::Dir => steps.push(MountStep::BindRo {
                host: p.into(),
                target: p.clone(),
                dir: true,
                id: None,
            }),
            HostEntry::File => steps.push(MountStep::BindRo {
                host: p.into(),
                target: p.clone(),
                dir: false,
                id: None,
            }),
            HostEntry::Symlink(to) => steps.push(MountStep::Symlink {
                target: p.clone(),
                points_to: to,
            }),
            HostEntry::Missing => skipped.push(p.clone()),
        }
    }
    let mut writable_not_dirs = Vec::new();
    for p in &policy.writable {
        // A link in a parent component redirects the bind as surely as one at the end: the
        // policy's reviewer reads `/srv/data/cache`, and whoever can replace `/srv/data` with a
        // link chooses which directory the plugin may write. So every component is looked at;
        // the open repeats the check (`RESOLVE_NO_SYMLINKS`, [`open_sources`]).
        let parent_link = Path::new(p)
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find_map(|a| match lookup(a) {
                HostEntry::Symlink(to) => Some((a.display().to_string(), to)),
                _ => None,
            });
        if let Some((link, to)) = parent_link {
            writable_not_dirs.push((
                p.clone(),
                format!(
                    "has a symbolic link on the host in its path (`{link}` points to `{to}`): \
                     name the directory itself"
                ),
            ));
            continue;
        }
        let found = match lookup(Path::new(p)) {
            HostEntry::Dir => {
                steps.push(MountStep::BindRw {
                    host: p.into(),
                    target: p.clone(),
                    dir: true,
                });
                continue;
            }
            HostEntry::Missing => "does not exist on the host".to_string(),
            HostEntry::File => "is a file on the host, not a directory".to_string(),
            // Not followed: the bind would be of wherever the link points when the launch
            // opens it, which whoever can change the link chooses.
            HostEntry::Symlink(to) => {
                format!("is a symbolic link on the host (to `{to}`): name the directory itself")
            }
        };
        writable_not_dirs.push((p.clone(), found));
    }
    if let Some((pkg, id)) = package_dir {
        steps.push(MountStep::BindRo {
            host: pkg.to_path_buf(),
            target: "/plugin".into(),
            dir: true,
            id,
        });
    }
    let uid = policy.inside_uid;
    let gid = policy.inside_gid;
    let bound = |f: &str| {
        policy
            .read_only
            .iter()
            .any(|p| stockade_policy::sandbox::is_at_or_under(f, p))
    };
    let mut files = Vec::new();
    let generated = [
        (
            "/etc/passwd",
            format!(
                "root:x:0:0:root:/:/usr/sbin/nologin\nplugin:x:{uid}:{gid}:plugin:/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n"
            ),
        ),
        (
            "/etc/group",
            format!("root:x:0:\nplugin:x:{gid}:\nnogroup:x:65534:\n"),
        ),
        ("/etc/hostname", format!("{}\n", policy.hostname)),
        (
            "/etc/hosts",
            format!("127.0.0.1\tlocalhost {}\n::1\tlocalhost\n", policy.hostname),
        ),
        ("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n".to_string()),
    ];
    for (path, contents) in generated {
        if !bound(path) {
            files.push((path.to_string(), contents));
        }
    }
    MountPlan {
        steps,
        skipped,
        writable_not_dirs,
        files,
        tmp: (policy.tmp_size, policy.tmp_inodes),
        proc: policy.proc,
        sys: policy.sys,
        user_ns_limits: user_ns_limits(policy),
    }
}

/// Look a host path up without following a final symlink.
pub fn host_lookup(p: &Path) -> HostEntry {
    match fs::symlink_metadata(p) {
        Err(_) => HostEntry::Missing,
        Ok(m) if m.file_type().is_symlink() => match fs::read_link(p) {
            Ok(t) => HostEntry::Symlink(t.to_string_lossy().into_owned()),
            Err(_) => HostEntry::Missing,
        },
        Ok(m) if m.is_dir() => HostEntry::Dir,
        Ok(_) => HostEntry::File,
    }
}

/// Open every bind source with `O_PATH`, in step order (`None` for symlink steps).
pub fn open_sources(plan: &MountPlan) -> io::Result<Vec<Option<OwnedFd>>> {
    plan.steps
        .iter()
        .map(|s| match s {
            MountStep::BindRo { host, dir, id, .. } => {
                open_source(host, *dir, *id, sys::open).map(Some)
            }
            MountStep::BindRw { host, dir, .. } => {
                match open_source(host, *dir, None, sys::open_no_symlinks) {
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                        Err(io::Error::other(format!(
                            "`{}`: a symbolic link appeared in its path since the launch was \
                             planned",
                            host.display()
                        )))
                    }
                    r => r.map(Some),
                }
            }
            MountStep::Symlink { .. } => Ok(None),
        })
        .collect()
}

/// One bind source, opened and checked: the planned type, and the planned file when `id` says.
/// `open` is [`sys::open`], or [`sys::open_no_symlinks`] for a writable bind (a link in any
/// component refused, as the plan did).
fn open_source(
    host: &Path,
    dir: bool,
    id: Option<(u64, u64)>,
    open: fn(&CStr, libc::c_int) -> io::Result<OwnedFd>,
) -> io::Result<OwnedFd> {
    // The path's own bytes: a lossy form of a name that is not UTF-8 named another file (one
    // with U+FFFD where the byte was) — another directory bound, or none (audit-171).
    let c = path_cstr(host)?;
    let fd = open(&c, libc::O_PATH | libc::O_NOFOLLOW)?;
    let is_dir = sys::fstat_mode(fd.as_fd())? & libc::S_IFMT == libc::S_IFDIR;
    if is_dir != dir {
        return Err(io::Error::other(format!(
            "`{}` changed type since the launch was planned",
            host.display()
        )));
    }
    if id.is_some_and(|id| sys::file_id(fd.as_fd()).ok() != Some(id)) {
        return Err(io::Error::other(format!(
            "`{}` is no longer the directory that was verified",
            host.display()
        )));
    }
    Ok(fd)
}

/// Whether a program's file (owner, group, mode as the host sees them) is one a sandbox whose host
/// ids are `uid`/`gid` could change through a path to it: its owner may `chmod`, `chown` to its
/// groups, set times and `user.*` attributes; anyone with a write bit may truncate a script
/// where Landlock does not handle truncation (ABI < 3). The program reaches the runtime's
/// descriptor's file — on the host's mount, writable, not on the sandbox's read-only binds —
/// as `/proc/self/exe`, and a `#!` script also as `/dev/fd/N`, which stays open for its
/// interpreter: `chmod 4777 /proc/self/exe` (or `"$0"` from a script) run rootless (the
/// program's host uid is the caller's, the file's owner) used to change the caller's own file
/// on the host. `groups`: every group the sandbox has on the host (rootless, the caller's
/// supplementary groups too, which it keeps).
pub fn program_changeable(owner: u32, group: u32, mode: u32, uid: u32, groups: &[u32]) -> bool {
    owner == uid || (groups.contains(&group) && mode & 0o020 != 0) || mode & 0o002 != 0
}

/// The program's file as the init found it in its own mount namespace ([`open_program_source`]),
/// for [`apply`] to execute it from a read-only place.
pub enum ProgramSource {
    /// Found at its path (the same file: device and inode checked).
    Path {
        /// `O_PATH` descriptor of it in this mount namespace (the runtime's is of the host's,
        /// which the kernel does not bind from): the source of a bind of the file alone.
        fd: OwnedFd,
        /// Where the sandbox shows it, if it does: under one of the plan's read-only binds
        /// (`/plugin/…` for a program of the package). Its path inside the sandbox.
        inside: Option<String>,
        /// Its path on the host, for errors.
        host: PathBuf,
    },
    /// Deleted or replaced since the runtime opened it, so no path reaches it any more: a
    /// sealed in-memory copy of it ([`sys::sealed_copy`]), made from the runtime's descriptor.
    Copy(OwnedFd),
}

/// The program's file found again in the sandbox's own mount namespace, where the runtime's
/// descriptor (`exec_fd`) says it is, and refused unless it is that same file. `sources` are the
/// plan's bind sources ([`open_sources`]): when the file is under one of the read-only ones, the
/// sandbox shows it, and [`apply`] opens it there — so `/proc/self/exe` names a path that
/// exists inside (glibc's `$ORIGIN`, Rust's `current_exe`, Go's `os.Executable` find the
/// program's own files through it).
///
/// A file deleted, or renamed over, since the runtime opened it (the link reads `… (deleted)`,
/// or its path now names another file) has no path left to bind: a sealed copy of it is
/// executed instead — what the runtime opened, never what the path names now. Where no copy
/// can be made, the error names the file and says it was deleted or replaced.
pub fn open_program_source(
    exec_fd: BorrowedFd<'_>,
    plan: &MountPlan,
    sources: &[Option<OwnedFd>],
) -> io::Result<ProgramSource> {
    let link = fs::read_link(format!("/proc/self/fd/{}", exec_fd.as_raw_fd()))?;
    let id = sys::file_id(exec_fd)?;
    let found = if sys::link_count(exec_fd)? == 0 || link.to_string_lossy().ends_with(" (deleted)")
    {
        None
    } else {
        let c = path_cstr(&link)?;
        match sys::open(&c, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) if sys::file_id(fd.as_fd())? == id => Some(fd),
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "the program `{}` cannot be opened again: {e}",
                        link.display()
                    ),
                ))
            }
        }
    };
    let Some(fd) = found else {
        let shown = link.to_string_lossy();
        let shown = shown.strip_suffix(" (deleted)").unwrap_or(&shown);
        return sys::sealed_copy(exec_fd, c"stockade-program")
            .map(ProgramSource::Copy)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "the program `{shown}` was deleted or replaced since it was opened, and \
                         no copy of it could be made to execute: {e}"
                    ),
                )
            });
    };
    let inside = inside_path(&link, plan, sources);
    Ok(ProgramSource::Path {
        fd,
        inside,
        host: link,
    })
}

/// Where the sandbox shows the host file `host` (a path without symbolic links, as the kernel
/// names an open file): under the read-only bind whose source (as the kernel names it) is its
/// longest parent. None when no read-only bind holds it.
fn inside_path(host: &Path, plan: &MountPlan, sources: &[Option<OwnedFd>]) -> Option<String> {
    plan.steps
        .iter()
        .zip(sources)
        .filter_map(|(step, src)| match (step, src) {
            (MountStep::BindRo { target, .. }, Some(fd)) => {
                let source = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
                let rest = host.strip_prefix(&source).ok()?;
                let depth = source.components().count();
                let inside = Path::new(target).join(rest);
                Some((depth, inside.to_str()?.to_string()))
            }
            _ => None,
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, inside)| inside)
}

fn path_cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Open the program to execute it (`O_RDONLY`; an execute-only file `O_PATH`, as the runtime
/// opened it: program.rs).
fn open_program(
    c: &CStr,
    open: fn(&CStr, libc::c_int) -> io::Result<OwnedFd>,
) -> io::Result<OwnedFd> {
    open(c, libc::O_RDONLY | libc::O_NOFOLLOW).or_else(|e| match e.raw_os_error() {
        Some(libc::EACCES) => open(c, libc::O_PATH | libc::O_NOFOLLOW),
        _ => Err(e),
    })
}

/// The program opened through the sandbox's own read-only bind of it (`staged` is its staged
/// path), or None when that is not the same file, on a read-only mount it may be executed from
/// (a writable bind or a later mount may cover the path). No symbolic link is followed: the
/// path is the kernel's name of the file, which has none.
fn open_inside(staged: &str, id: (u64, u64)) -> Option<OwnedFd> {
    let fd = open_program(&cstr(staged).ok()?, sys::open_no_symlinks).ok()?;
    let flags = sys::fstatvfs_flags(fd.as_fd()).ok()?;
    let read_only = flags & libc::ST_RDONLY != 0 && flags & libc::ST_NOEXEC == 0;
    (read_only && sys::file_id(fd.as_fd()).ok()? == id).then_some(fd)
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn mkdirs(p: &str) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(p)
}

fn make_target(p: &str, dir: bool) -> io::Result<()> {
    if dir {
        mkdirs(p)
    } else {
        if let Some(parent) = Path::new(p).parent() {
            mkdirs(&parent.to_string_lossy())?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .map(drop)
    }
}

const RO: u64 = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;

fn bind(source: &str, target: &str, attrs: u64) -> io::Result<()> {
    let t = cstr(target)?;
    sys::mount(
        Some(&cstr(source)?),
        &t,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    set_attrs(&t, true, attrs)
}

/// Add mount attributes (`mount_setattr`, or the remount fallback on kernels without it).
fn set_attrs(target: &std::ffi::CStr, recursive: bool, attrs: u64) -> io::Result<()> {
    match sys::mount_setattr(target, recursive, attrs, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => remount_bind(target, attrs),
        r => r,
    }
}

/// `MOUNT_ATTR_*` → `MS_*` for the attributes we set.
pub fn ms_flags_for(attrs: u64) -> libc::c_ulong {
    [
        (libc::MOUNT_ATTR_RDONLY, libc::MS_RDONLY),
        (libc::MOUNT_ATTR_NOSUID, libc::MS_NOSUID),
        (libc::MOUNT_ATTR_NODEV, libc::MS_NODEV),
        (libc::MOUNT_ATTR_NOEXEC, libc::MS_NOEXEC),
    ]
    .iter()
    .filter(|(a, _)| attrs & a != 0)
    .fold(0, |acc, (_, m)| acc | m)
}

/// `ST_*` (statvfs) → `MS_*`: the flags a user namespace locks on a mount and that a remount must
/// repeat, or the kernel answers EPERM.
pub fn locked_ms_flags(st_flags: u64) -> libc::c_ulong {
    [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ]
    .iter()
    .filter(|(st, _)| st_flags & st != 0)
    .fold(0, |acc, (_, m)| acc | m)
}

/// Kernels before 5.12 have no `mount_setattr`: remount the bind itself with the requested flags
/// plus the locked ones read back with `statvfs`. Only the top mount is changed (submounts of a
/// recursive bind keep their flags), which is why `mount_setattr` is preferred.
fn remount_bind(target: &std::ffi::CStr, attrs: u64) -> io::Result<()> {
    let flags = ms_flags_for(attrs) | locked_ms_flags(sys::statvfs_flags(target)?);
    sys::mount(
        None,
        target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | flags,
        None,
    )
}

fn tmpfs(target: &str, flags: libc::c_ulong, opts: &str) -> io::Result<()> {
    sys::mount(
        Some(c"tmpfs"),
        &cstr(target)?,
        Some(c"tmpfs"),
        flags,
        Some(&cstr(opts)?),
    )
}

/// Apply the plan in the child (in its new mount namespace, before dropping capabilities).
/// `program`, from [`open_program_source`]: the program's file, to be opened again through a
/// read-only bind of its own (returned; the bind is detached from the tree at once and lives as
/// long as the descriptor). Returns the error tagged with the step that failed.
pub fn apply(
    plan: &MountPlan,
    sources: &[Option<OwnedFd>],
    program: Option<ProgramSource>,
) -> Result<(Applied, Option<OwnedFd>), (LaunchStep, io::Error)> {
    let at = |step: LaunchStep| move |e: io::Error| (step, e);
    // Nothing we mount may propagate back to the host.
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(at(LaunchStep::MountPrivate))?;
    let stage = choose_stage().map_err(at(LaunchStep::MountRoot))?;
    let staged = |p: &str| format!("{stage}{p}");
    tmpfs(
        stage,
        libc::MS_NOSUID | libc::MS_NODEV,
        "size=4m,nr_inodes=4096,mode=0755",
    )
    .map_err(at(LaunchStep::MountRoot))?;

    for (step, src) in plan.steps.iter().zip(sources) {
        let r = match (step, src) {
            (MountStep::BindRo { target, dir, .. }, Some(fd)) => {
                let t = staged(target);
                make_target(&t, *dir)
                    .and_then(|_| bind(&format!("/proc/self/fd/{}", fd.as_raw_fd()), &t, RO))
            }
            (MountStep::BindRw { target, .. }, Some(fd)) => {
                let t = staged(target);
                make_target(&t, true).and_then(|_| {
                    bind(
                        &format!("/proc/self/fd/{}", fd.as_raw_fd()),
                        &t,
                        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
                    )
                })
            }
            (MountStep::Symlink { target, points_to }, _) => {
                let t = staged(target);
                Path::new(&t)
                    .parent()
                    .map_or(Ok(()), |p| mkdirs(&p.to_string_lossy()))
                    .and_then(|_| symlink(points_to, &t))
            }
            _ => Err(io::Error::other("mount source descriptor missing")),
        };
        r.map_err(at(LaunchStep::MountBind))?;
    }

    for (path, contents) in &plan.files {
        let t = staged(path);
        make_target(&t, false)
            .and_then(|_| fs::write(&t, contents))
            .map_err(at(LaunchStep::MountFiles))?;
    }

    let (size, inodes) = plan.tmp;
    let tmp = staged("/tmp");
    mkdirs(&tmp)
        .and_then(|_| {
            tmpfs(
                &tmp,
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                &format!("size={size},nr_inodes={inodes},mode=1777"),
            )
        })
        .map_err(at(LaunchStep::MountTmp))?;

    let missing_dev = build_dev(&staged("/dev")).map_err(at(LaunchStep::MountDev))?;
    if plan.proc {
        build_proc(&staged("/proc"), &staged("/dev/null"), &plan.user_ns_limits)
            .map_err(at(LaunchStep::MountProc))?;
    } else if !plan.user_ns_limits.is_empty() {
        // No /proc for the program, but the caps need one: a private instance, removed again.
        let t = staged("/.proc-limits");
        mkdirs(&t)
            .and_then(|_| mount_proc(&t))
            .and_then(|_| set_user_ns_limits(&t, &plan.user_ns_limits))
            .and_then(|_| sys::umount_detach(&cstr(&t)?))
            .and_then(|_| fs::remove_dir(&t))
            .map_err(at(LaunchStep::UserNamespaceLimits))?;
    }
    if plan.sys {
        let t = staged("/sys");
        mkdirs(&t)
            .and_then(|_| bind("/sys", &t, RO | libc::MOUNT_ATTR_NOEXEC))
            .map_err(at(LaunchStep::MountSys))?;
    }

    // The program, opened again where it is read-only (see [`ProgramSource`]): through the
    // sandbox's bind that shows it, once every mount is in place (so `/proc/self/exe` names a
    // path that resolves to it inside); else through a bind of the file alone, read-only,
    // nosuid, nodev (not noexec: it is executed), detached from the tree at once. Through
    // either the program can neither change the file (EROFS) nor its metadata.
    let program = match program {
        None => None,
        Some(ProgramSource::Copy(fd)) => Some(fd),
        Some(ProgramSource::Path {
            fd: src,
            inside,
            host,
        }) => {
            let id = sys::file_id(src.as_fd()).map_err(at(LaunchStep::MountBind))?;
            let shown = inside.and_then(|inside| open_inside(&staged(&inside), id));
            let fd = match shown {
                Some(fd) => fd,
                None => (|| -> io::Result<OwnedFd> {
                    let t = staged("/.program");
                    make_target(&t, false)?;
                    bind(&format!("/proc/self/fd/{}", src.as_raw_fd()), &t, RO)?;
                    let c = cstr(&t)?;
                    let fd = open_program(&c, sys::open)?;
                    sys::umount_detach(&c)?;
                    fs::remove_file(&t)?;
                    Ok(fd)
                })()
                .map_err(|e| {
                    (
                        LaunchStep::MountBind,
                        io::Error::new(e.kind(), format!("the program `{}`: {e}", host.display())),
                    )
                })?,
            };
            Some(fd)
        }
    };

    sys::chdir(&cstr(stage).map_err(at(LaunchStep::PivotRoot))?)
        .and_then(|_| sys::pivot_root_here())
        .and_then(|_| sys::umount_detach(c"."))
        .and_then(|_| sys::chdir(c"/"))
        .map_err(at(LaunchStep::PivotRoot))?;
    // Only the root mount itself: /tmp and writable binds stay writable.
    set_attrs(c"/", false, RO).map_err(at(LaunchStep::RootReadOnly))?;
    Ok((Applied { stage, missing_dev }, program))
}

/// Facts about the applied plan, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Where the root was staged.
    pub stage: &'static str,
    /// Device nodes the host lacks (not bound).
    pub missing_dev: Vec<String>,
}

/// Build /dev at `dev`; returns the nodes the host does not have (skipped, reported; /dev/null
/// is required).
fn build_dev(dev: &str) -> io::Result<Vec<String>> {
    mkdirs(dev)?;
    tmpfs(
        dev,
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "size=64k,nr_inodes=64,mode=0755",
    )?;
    let mut missing = Vec::new();
    for node in DEV_NODES {
        let host = format!("/dev/{node}");
        if *node != "null" && !Path::new(&host).exists() {
            missing.push(host);
            continue;
        }
        let t = format!("{dev}/{node}");
        make_target(&t, false)?;
        bind(
            &format!("/dev/{node}"),
            &t,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC,
        )?;
    }
    symlink("/proc/self/fd", format!("{dev}/fd"))?;
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        symlink(format!("/proc/self/fd/{i}"), format!("{dev}/{name}"))?;
    }
    // The tmpfs itself read-only: no new nodes, files or sockets in /dev.
    set_attrs(&cstr(dev)?, false, libc::MOUNT_ATTR_RDONLY)?;
    Ok(missing)
}

fn mount_proc(target: &str) -> io::Result<()> {
    sys::mount(
        Some(c"proc"),
        &cstr(target)?,
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

/// Write the user namespace's caps through `proc_`, a procfs of this (the sandbox's) mount
/// namespace: `/proc/sys/user/*` are per user namespace and writable with our namespace's
/// `CAP_SYS_RESOURCE`. Not through the /proc inherited from the runtime, which may be no full
/// procfs (systemd's `ProcSubset=pid`: no /proc/sys) or read-only (`ProtectKernelTunables=`,
/// containers).
fn set_user_ns_limits(proc_: &str, limits: &[(&str, u64)]) -> io::Result<()> {
    for (file, n) in limits {
        fs::write(format!("{proc_}/sys/user/{file}"), n.to_string())?;
    }
    Ok(())
}

fn build_proc(proc_: &str, null: &str, user_ns_limits: &[(&str, u64)]) -> io::Result<()> {
    mkdirs(proc_)?;
    mount_proc(proc_)?;
    // Before /proc/sys is made read-only below.
    set_user_ns_limits(proc_, user_ns_limits)?;
    for f in PROC_MASKED_FILES {
        let t = format!("{proc_}/{f}");
        if Path::new(&t).exists() {
            bind(null, &t, RO | libc::MOUNT_ATTR_NOEXEC)?;
        }
    }
    for d in PROC_MASKED_DIRS {
        let t = format!("{proc_}/{d}");
        if Path::new(&t).is_dir() {
            tmpfs(
                &t,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                "size=0,nr_inodes=2,mode=0555",
            )?;
        }
    }
    for d in PROC_READ_ONLY {
        let t = format!("{proc_}/{d}");
        if Path::new(&t).exists() {
            bind(&t, &t, RO | libc::MOUNT_ATTR_NOEXEC)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::{default_policy, parse_policy};

    /// Owner, or a write bit that reaches the sandbox's ids: the program could change the file
    /// through its descriptor. Someone else's file without such a bit: it could not.
    #[test]
    fn program_changeable_when_owned_or_writable_by_the_sandbox() {
        let (uid, gid) = (200_000, 200_000);
        let gids = &[gid];
        assert!(program_changeable(uid, 0, 0o100_755, uid, gids));
        assert!(program_changeable(uid, 0, 0o100_500, uid, gids));
        assert!(program_changeable(0, 0, 0o100_757, uid, gids));
        assert!(program_changeable(0, gid, 0o100_775, uid, gids));
        assert!(!program_changeable(0, 0, 0o100_775, uid, gids));
        assert!(!program_changeable(0, gid, 0o100_755, uid, gids));
        assert!(!program_changeable(1000, 1000, 0o100_755, uid, gids));
    }

    /// Rootless, the sandbox keeps the caller's supplementary groups: a `root:users` 0775
    /// script, the caller in `users`, is one it could truncate (Landlock ABI < 3), so it is
    /// re-opened too. Only the primary gid used to count.
    #[test]
    fn program_changeable_through_a_supplementary_group() {
        let (uid, gid, users) = (1000, 1000, 100);
        assert!(program_changeable(0, users, 0o100_775, uid, &[gid, users]));
        assert!(!program_changeable(0, users, 0o100_755, uid, &[gid, users]));
        assert!(!program_changeable(0, 27, 0o100_775, uid, &[gid, users]));
    }

    fn fake(p: &Path) -> HostEntry {
        match p.to_str().unwrap() {
            "/usr" | "/lib" | "/etc/ld.so.conf.d" | "/srv/data" => HostEntry::Dir,
            "/bin" => HostEntry::Symlink("usr/bin".into()),
            "/etc/ld.so.cache" | "/etc/passwd" => HostEntry::File,
            _ => HostEntry::Missing,
        }
    }

    /// The package's directory is bound only if it is the one the runtime verified: a path
    /// that leads elsewhere now is refused, whatever is there.
    #[test]
    fn a_source_that_is_not_the_verified_directory_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let m = std::fs::metadata(d.path()).unwrap();
        let id = (m.dev(), m.ino());
        assert!(open_source(d.path(), true, Some(id), sys::open).is_ok());
        let other = tempfile::tempdir().unwrap();
        let e = open_source(other.path(), true, Some(id), sys::open).unwrap_err();
        assert!(e.to_string().contains("no longer the directory"), "{e}");
        assert!(open_source(other.path(), true, None, sys::open).is_ok());
    }

    #[test]
    fn default_plan_binds_system_paths_and_recreates_symlinks() {
        let p = plan(
            &default_policy(),
            Some((Path::new("/var/pkg"), Some((7, 9)))),
            fake,
        );
        assert!(p.steps.contains(&MountStep::BindRo {
            host: "/usr".into(),
            target: "/usr".into(),
            dir: true,
            id: None,
        }));
        assert!(p.steps.contains(&MountStep::Symlink {
            target: "/bin".into(),
            points_to: "usr/bin".into()
        }));
        assert!(p.steps.contains(&MountStep::BindRo {
            host: "/var/pkg".into(),
            target: "/plugin".into(),
            dir: true,
            id: Some((7, 9)),
        }));
        assert!(p.skipped.contains(&"/lib64".to_string()));
        // No host /etc/passwd or shadow: a generated stub instead.
        assert!(p
            .files
            .iter()
            .any(|(f, c)| f == "/etc/passwd" && c.contains(":1000:")));
        assert!(!p.steps.iter().any(
            |s| matches!(s, MountStep::BindRo { target, .. } if target.starts_with("/etc/shadow"))
        ));
        assert_eq!(p.tmp, (16 << 20, 1024));
        assert!(p.proc && !p.sys);
    }

    #[test]
    fn remount_fallback_repeats_locked_flags() {
        let locked = locked_ms_flags(libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RELATIME);
        assert_eq!(locked, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RELATIME);
        assert_eq!(
            ms_flags_for(RO),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV
        );
        assert_eq!(ms_flags_for(0), 0);
    }

    #[test]
    fn generated_files_are_the_ones_policy_explain_lists() {
        let p = stockade_policy::sandbox::default_policy();
        let plan = plan(&p, None, fake);
        let mut got: Vec<&str> = plan.files.iter().map(|(f, _)| f.as_str()).collect();
        let mut want = stockade_policy::sandbox::GENERATED_ETC.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn binding_passwd_suppresses_the_stub_and_writable_needs_a_dir() {
        let pol = parse_policy(
            "version = 1\n[filesystem]\nread_only = [\"/etc/passwd\"]\nwritable = [\"/srv/data\", \"/srv/none\", \"/etc/ld.so.cache\", \"/bin\", \"/bin/x/y\"]\n",
        )
        .unwrap();
        let p = plan(&pol, None, fake);
        assert!(!p.files.iter().any(|(f, _)| f == "/etc/passwd"));
        assert!(p.steps.contains(&MountStep::BindRw {
            host: "/srv/data".into(),
            target: "/srv/data".into(),
            dir: true
        }));
        // Not skipped like a missing read-only path: each is named with what the host has there,
        // for the launch to refuse.
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        let refused: Vec<(&str, &str)> = p
            .writable_not_dirs
            .iter()
            .map(|(p, f)| (p.as_str(), f.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("/srv/none", "does not exist on the host"),
                ("/etc/ld.so.cache", "is a file on the host, not a directory"),
                (
                    "/bin",
                    "is a symbolic link on the host (to `usr/bin`): name the directory itself"
                ),
                // A link in a parent component is refused too, naming that component.
                (
                    "/bin/x/y",
                    "has a symbolic link on the host in its path (`/bin` points to `usr/bin`): \
                     name the directory itself"
                ),
            ]
        );
    }

    /// The open of a writable bind source repeats the plan's check: a link that appeared in a
    /// parent component since the plan fails it (the read-only opener follows it).
    #[test]
    fn a_writable_source_is_opened_without_following_any_link() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/sub")).unwrap();
        symlink(d.path().join("real"), d.path().join("link")).unwrap();
        let via_link = d.path().join("link/sub");
        assert!(open_source(&via_link, true, None, sys::open).is_ok());
        let e = open_source(&via_link, true, None, sys::open_no_symlinks).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let direct = d.path().join("real/sub");
        assert!(open_source(&direct, true, None, sys::open_no_symlinks).is_ok());
        // Through `open_sources`, the refusal says what happened.
        let plan = MountPlan {
            steps: vec![MountStep::BindRw {
                host: via_link.clone(),
                target: "/data".into(),
                dir: true,
            }],
            skipped: Vec::new(),
            writable_not_dirs: Vec::new(),
            files: Vec::new(),
            tmp: (0, 0),
            proc: false,
            sys: false,
            user_ns_limits: Vec::new(),
        };
        let e = open_sources(&plan).unwrap_err();
        assert!(
            e.to_string().contains("symbolic link appeared in its path"),
            "{e}"
        );
    }
}
