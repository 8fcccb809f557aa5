//! The sandbox's cgroup: memory (no swap), CPU quota and pids limits, created *below the
//! runtime's own cgroup* (read from `/proc/self/cgroup`, per controller on v1), on v1, v2 and
//! hybrid hosts; limit hits read back for the report; everything killed and the group removed
//! when the sandbox stops (RAII: also on every error path).
//!
//! ## What `cgroups-rs` does and what stays by hand
//! The control-file work goes through `cgroups-rs` 0.3: the group (`Cgroup::load`, and on v1
//! `Cgroup::create`; its directories, one per v1 controller — one for controllers mounted
//! together — or the one on v2, are made by hand first, see `create_v1` and `create_v2`: the
//! crate's mkdir only logs a failure; the rule that they are made *before* the handle exists,
//! so its Drop only ever removes directories this launch made, lives at `make_own`), the
//! limits (`MemController::set_limit` / `set_memswap_limit`, `PidController::set_pid_max`,
//! `CpuController::set_cfs_quota_and_period`), joining (`Cgroup::add_task_by_tgid`, which
//! writes `cgroup.procs`, so every thread moves), the counters (`memory_stat`, `memswap`, `get_pid_events`, `cpu`),
//! `Cgroup::kill` (v2 `cgroup.kill`), `Cgroup::procs` and `Cgroup::delete`.
//!
//! The crate's own hierarchies do not fit this host, so [`OwnHierarchy`] implements its public
//! `Hierarchy` trait: `hierarchies::V1` returns *every* mounted controller (cpuset, devices,
//! net_cls …; cpuset would need its own `cpus`/`mems` setup) rooted at the mount point, and
//! `new_with_relative_paths` can re-root them per controller but not drop the unwanted ones;
//! `hierarchies::V2` is fixed at `/sys/fs/cgroup`. Ours hands out exactly memory, pids and cpu,
//! each at the runtime's own cgroup of *that* controller (here memory is `/process_api/<id>`
//! while pids and cpu are at `/`).
//!
//! By hand, with the crate limitation named at each place: detecting our own cgroup per
//! controller (the crate's `get_cgroups_relative_paths` returns the paths but not which
//! version/mount applies), the v2 "no internal processes" move of the runtime into a
//! `supervisor` leaf and enabling `cgroup.subtree_control` on our own cgroup (the crate only
//! enables controllers from the hard-coded `/sys/fs/cgroup` root down, ignoring every error),
//! reading v2 `memory.events` (no accessor), the v1 kill loop (the crate's `kill` is v2-only;
//! by pidfd, see `kill_members`),
//! and sweeping stale groups of killed runtimes (no child listing in the crate).

use cgroups_rs::cpu::CpuController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::CgroupPid;
use cgroups_rs::{Cgroup as CrateCgroup, Controller, Hierarchy, MaxValue, Subsystem};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stockade_policy::sandbox::{Limit, Resources};

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The v1 controllers we use.
pub const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The CFS period written with every quota; the policy bounds `cpu_max` by it.
const PERIOD_US: u64 = stockade_policy::sandbox::units::CPU_PERIOD_US;

/// A refused `+ctrl` write to `base`'s `cgroup.subtree_control`, as [`CgroupError::NotOffered`]
/// when `base`'s `cgroup.controllers` does not list `ctrl`; the write's own error back
/// otherwise (listed, or the file unreadable).
fn not_offered(base: &Path, ctrl: &'static str, e: io::Error) -> Result<CgroupError, io::Error> {
    let file = base.join("cgroup.controllers");
    match fs::read_to_string(&file) {
        Ok(offered) if !offered.split_whitespace().any(|c| c == ctrl) => {
            Ok(CgroupError::NotOffered {
                controller: ctrl,
                file,
                source: e,
            })
        }
        _ => Err(e),
    }
}

/// The `not_applied` entry of a refused `+cpu` write to `base`'s `cgroup.subtree_control`:
/// a cpu controller `base`'s `cgroup.controllers` does not list is named as not offered (a
/// kernel booted with `cgroup_disable=cpu`, a parent that does not enable it), as memory and
/// pids are by [`not_offered`], rather than as "not delegated: Invalid argument" (review-158).
fn cpu_refused(base: &Path, e: io::Error) -> String {
    match not_offered(base, "cpu", e) {
        Ok(CgroupError::NotOffered { file, .. }) => format!(
            "cpu_max (cpu controller not offered: not listed in `{}`: disabled at boot with \
             `cgroup_disable=cpu`, or not enabled by the parent group)",
            file.display()
        ),
        Ok(other) => format!("cpu_max (cpu controller not delegated: {other})"),
        Err(e) => format!("cpu_max (cpu controller not delegated: {e})"),
    }
}

/// Where the kernel lists its controllers and whether each is enabled (`cgroup_disable=`).
const PROC_CGROUPS: &str = "/proc/cgroups";

/// The error of a v1 controller the layout lacks (not mounted where `/proc/self/cgroup` puts
/// us): [`CgroupError::Disabled`] when `proc_cgroups` (the text of `/proc/cgroups`) shows it
/// with `enabled` 0 — a kernel booted with `cgroup_disable=`, which no mount can fix —,
/// [`CgroupError::Missing`] otherwise (pure).
fn v1_missing(ctrl: &'static str, proc_cgroups: Option<&str>) -> CgroupError {
    let disabled = proc_cgroups.is_some_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 4 && f[0] == ctrl && f[3] == "0"
        })
    });
    if disabled {
        CgroupError::Disabled {
            controller: ctrl,
            file: PathBuf::from(PROC_CGROUPS),
        }
    } else {
        CgroupError::Missing(ctrl)
    }
}

/// Which cgroup version the host uses for our controllers, and our own cgroup in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// v1 or hybrid: one directory per controller (`None`: controller not mounted).
    V1 {
        /// Own memory cgroup directory.
        memory: Option<PathBuf>,
        /// Own pids cgroup directory.
        pids: Option<PathBuf>,
        /// Own cpu cgroup directory.
        cpu: Option<PathBuf>,
    },
    /// Pure v2: our own cgroup directory.
    V2 {
        /// Own cgroup directory.
        own: PathBuf,
    },
}

/// Why the cgroup layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// `/proc/self/cgroup` could not be read or names no usable controller.
    #[error("cannot find this process's cgroup")]
    Detect(#[source] io::Error),
    /// A control file or directory operation failed.
    #[error("cgroup operation on `{}` failed", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A controller the policy needs is not available.
    #[error("cgroup controller `{0}` is not available")]
    Missing(&'static str),
    /// v2: a controller the limits need cannot be enabled for the sandbox's group because the
    /// runtime's group is not offered it (not in its `cgroup.controllers`): a kernel booted
    /// with `cgroup_disable=`, or a parent that does not enable it. Said by name, rather than
    /// as the `EINVAL` the write to `cgroup.subtree_control` returns.
    #[error("cgroup controller `{controller}` is not offered here (not listed in `{}`: disabled at boot with `cgroup_disable=`, or not enabled by the parent group)", file.display())]
    NotOffered {
        /// The controller.
        controller: &'static str,
        /// The `cgroup.controllers` file read.
        file: PathBuf,
        /// The refused write to `cgroup.subtree_control`.
        #[source]
        source: io::Error,
    },
    /// v1 or hybrid: a controller the limits need is disabled on this kernel (`/proc/cgroups`
    /// shows it with `enabled` 0: booted with `cgroup_disable=`), so no hierarchy of it is
    /// mounted. Said by name, rather than as a controller "not available" whose advice is to
    /// mount it (review-158).
    #[error("cgroup controller `{controller}` is disabled on this kernel (`{}` shows it with enabled 0: booted with `cgroup_disable=`)", file.display())]
    Disabled {
        /// The controller.
        controller: &'static str,
        /// The file read (`/proc/cgroups`).
        file: PathBuf,
    },
    /// The sandbox's group already exists. Never adopted (it may hold another sandbox or carry
    /// someone else's limits) and never a reason to run without cgroups: the launch stops.
    #[error("cgroup `{}` already exists", .0.display())]
    Exists(PathBuf),
    /// `cgroups-rs` failed on a group.
    #[error("cgroup operation in `{}` failed", path.display())]
    Crate {
        /// The group's directory, or the control file that refused (a join: `cgroup.procs`).
        path: PathBuf,
        /// The crate's error.
        #[source]
        source: cgroups_rs::error::Error,
    },
    /// A limit does not fit the control file's signed 64-bit value.
    #[error("cgroup limit {0} is out of range")]
    OutOfRange(u64),
}

impl CgroupError {
    /// The kernel (or the parent group) does not offer a controller the limits need
    /// ([`CgroupError::NotOffered`] on v2, [`CgroupError::Disabled`] on v1): the host's doing,
    /// whoever runs — being root or delegated changes nothing.
    pub fn controller_not_offered(&self) -> bool {
        matches!(
            self,
            CgroupError::NotOffered { .. } | CgroupError::Disabled { .. }
        )
    }
}

fn crate_at(path: &Path) -> impl FnOnce(cgroups_rs::error::Error) -> CgroupError + '_ {
    move |source| CgroupError::Crate {
        path: path.to_path_buf(),
        source,
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where each of our v1 controllers is mounted, from the text of `/proc/self/mountinfo`: the
/// hierarchy path the mount shows (its "root" field, `/` unless a sub-tree is bind-mounted) and
/// the mount point. A controller is looked for where the kernel says it is mounted, not at
/// `/sys/fs/cgroup/<name>`: a hierarchy mounted under another name (`cpu,cpuacct` without the
/// `cpu` symlink) is found, and a path that is no cgroup mount of that controller is never
/// taken for one (pure).
pub fn v1_mounts(mountinfo: &str) -> [Option<(PathBuf, PathBuf)>; 3] {
    let mut found: [Option<(PathBuf, PathBuf)>; 3] = [None, None, None];
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let (Some("cgroup"), Some(_), Some(opts)) = (post.next(), post.next(), post.next()) else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(point)) = (pre.get(3), pre.get(4)) else {
            continue;
        };
        for (i, c) in V1_CONTROLLERS.iter().enumerate() {
            if found[i].is_none() && opts.split(',').any(|o| o == *c) {
                found[i] = Some((unescape_mountinfo(root), unescape_mountinfo(point)));
            }
        }
    }
    found
}

/// The text of `/proc/self/mountinfo`, every byte that is not UTF-8 written as `\ooo` (octal),
/// the way the kernel already writes space, tab, newline and backslash in it: a path is bytes,
/// and one mount anywhere on the host whose path is not UTF-8 (a user's FUSE mount, a USB
/// stick's Latin-1 label) made `read_to_string` fail, which refused every launch needing a
/// cgroup (audit-171). The kernel escapes every backslash, so a `\ooo` here is never a path's
/// own text, and [`unescape_mountinfo`] gives back the path's exact bytes.
pub(crate) fn read_mountinfo() -> io::Result<String> {
    fs::read("/proc/self/mountinfo").map(|b| escape_non_utf8(&b))
}

/// `bytes` as text, each byte of an invalid UTF-8 sequence written as `\ooo` (pure).
fn escape_non_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// A path field of mountinfo: `\ooo` (octal) back to its byte — the kernel's escapes of space,
/// tab, newline and backslash, and [`read_mountinfo`]'s of bytes that are not UTF-8 — so the
/// path is the file system's, byte for byte, never a lossy look-alike.
pub(crate) fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Derive our own cgroup directories from the text of `/proc/self/cgroup` (pure; `v2_only` says
/// whether `root` is a cgroup2 mount; `mounts` is [`v1_mounts`]: a v1 controller with no mount
/// there, or whose mount shows a hierarchy path our own cgroup is not below, is `None`).
pub fn derive_layout(
    proc_self_cgroup: &str,
    root: &Path,
    v2_only: bool,
    mounts: &[Option<(PathBuf, PathBuf)>; 3],
) -> Option<Layout> {
    let mut v1: [Option<PathBuf>; 3] = [None, None, None];
    let mut unified = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            unified = Some(rel.to_string());
            continue;
        }
        for c in ctrls.split(',') {
            if let Some(i) = V1_CONTROLLERS.iter().position(|x| *x == c) {
                v1[i] = mounts[i].as_ref().and_then(|(mroot, point)| {
                    let below = Path::new(path).strip_prefix(mroot).ok()?;
                    Some(point.join(below))
                });
            }
        }
    }
    if v2_only {
        let rel = unified?;
        return Some(Layout::V2 {
            own: root.join(rel),
        });
    }
    if v1.iter().all(Option::is_none) {
        return None;
    }
    let [memory, pids, cpu] = v1;
    Some(Layout::V1 { memory, pids, cpu })
}

/// Why [`derive_layout`] found no layout (pure): a controller of ours that `proc_self_cgroup`
/// lists and that is mounted, but whose mount shows a hierarchy path our cgroup is not below —
/// a cgroup namespace over a cgroup filesystem mounted outside it (a container given the host's
/// `/sys` by a bind: its mounts' roots read `/..`) — is named so; before audit-167 that case
/// too said "no memory, pids or cpu controller in /proc/self/cgroup", which lists them.
fn no_layout_reason(proc_self_cgroup: &str, mounts: &[Option<(PathBuf, PathBuf)>; 3]) -> String {
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        for c in ctrls.split(',') {
            let Some(i) = V1_CONTROLLERS.iter().position(|x| *x == c) else {
                continue;
            };
            if let Some((mroot, point)) = &mounts[i] {
                return format!(
                    "the {c} hierarchy mounted at `{}` shows `{mroot}`, which does not contain \
                     this process's cgroup `{path}` (/proc/self/cgroup): a cgroup namespace over \
                     a cgroup filesystem mounted outside it, such as a container's bind of the \
                     host's /sys — mount the cgroup filesystem inside the namespace",
                    point.display(),
                    mroot = mroot.display()
                );
            }
        }
    }
    "no memory, pids or cpu controller in /proc/self/cgroup".to_string()
}

/// How this host mounts the cgroups this layer uses, for advice (a refusal's hint), not for a
/// launch, which uses [`detect`]; read from the same `/proc/self/mountinfo` the launch reads
/// ([`v1_mounts`]), so a hierarchy mounted elsewhere than `/sys/fs/cgroup/<controller>` counts,
/// and a `/sys/fs/cgroup` holding only a v2 `unified` does not pass for v2 (review-156).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// Pure cgroup v2 (unified): a cgroup2 filesystem at the root.
    V2,
    /// cgroup v1, legacy or hybrid (v1 hierarchies of memory, pids or cpu, perhaps a v2
    /// `unified` beside them): the controllers this layer uses are on v1.
    V1,
    /// Neither a cgroup2 filesystem at `/sys/fs/cgroup` nor a v1 hierarchy of memory, pids or
    /// cpu anywhere.
    None,
}

/// This host's [`HostMode`], from `/proc/self/mountinfo` (unreadable: [`HostMode::None`], as
/// the launch then finds no cgroup either).
pub fn host_mode() -> HostMode {
    host_mode_in(&read_mountinfo().unwrap_or_default())
}

/// [`host_mode`] of the text of `/proc/self/mountinfo` (pure): v2 when the mount visible at
/// [`CGROUP_ROOT`] (the last listed there: later mounts cover earlier ones) is a cgroup2
/// filesystem, v1 when [`v1_mounts`] finds a hierarchy of one of our controllers.
pub fn host_mode_in(mountinfo: &str) -> HostMode {
    let top = mountinfo.lines().rev().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let point = pre.split(' ').nth(4)?;
        (unescape_mountinfo(point) == Path::new(CGROUP_ROOT)).then(|| post.split(' ').next())?
    });
    if top == Some("cgroup2") {
        HostMode::V2
    } else if v1_mounts(mountinfo).iter().any(Option::is_some) {
        HostMode::V1
    } else {
        HostMode::None
    }
}

/// The v1 memory group's files a launch's limits depend on (each of a group's is its
/// parent's: the kernel makes the same set in every v1 memory group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1MemoryFiles {
    /// `memory.memsw.limit_in_bytes`: the kernel accounts swap.
    pub memsw: bool,
    /// `memory.oom_control`.
    pub oom_control: bool,
}

impl V1MemoryFiles {
    /// Those of the v1 memory group `dir`.
    pub fn of(dir: &Path) -> Self {
        V1MemoryFiles {
            memsw: dir.join("memory.memsw.limit_in_bytes").exists(),
            oom_control: dir.join("memory.oom_control").exists(),
        }
    }
}

/// The limits of `r` a v1 group with `files` cannot take (its `not_applied`): `swap_max`
/// without swap accounting or without `memory_max` (v1 limits swap only together with memory),
/// the OOM killer without `memory.oom_control`. The launch's decision, and `node info`'s
/// prediction of it ([`super::facts::predict`]; review-170: the prediction said a v1 group
/// enforced that the launch refused as `cgroup_partial`).
pub fn v1_not_applied(r: &Resources, files: V1MemoryFiles) -> Vec<String> {
    let mut out = Vec::new();
    if r.memory_max.max().is_some() {
        if !files.memsw && r.swap_max != Limit::Unlimited {
            out.push("swap_max (kernel has no swap accounting; swappiness set to 0)".into());
        }
        if !files.oom_control {
            out.push(
                "memory OOM killer (no memory.oom_control: the parent group's setting stands)"
                    .into(),
            );
        }
    } else if r.swap_max != Limit::Unlimited {
        // v1 limits memory and swap together (memsw): with memory unlimited, so is swap.
        out.push("swap_max (cgroup v1 limits swap only together with memory_max)".into());
    }
    out
}

/// The swap limit of `r` a v2 group cannot take without `memory.swap.max` (no swap
/// accounting): the launch's decision and `node info`'s prediction of it.
pub fn v2_swap_not_applied(r: &Resources, swap_file: bool) -> Option<String> {
    (!swap_file && r.swap_max != Limit::Unlimited).then(|| "swap_max (no memory.swap.max)".into())
}

/// Detect the layout of this host for this process. Every directory handed out is checked to
/// be on a cgroup filesystem of the right version (`statfs`): on a directory that is not (a
/// tmpfs where a controller should be mounted), `cgroups-rs` would create the group and its
/// control files as plain files, and the launch would report limits that nothing enforces.
/// A v1 controller that fails the check is absent (the launch stops unless the policy allows
/// running without it); a v2 own cgroup that fails it is an error.
pub fn detect() -> Result<Layout, CgroupError> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let text = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::Detect)?;
    let mountinfo = read_mountinfo().map_err(CgroupError::Detect)?;
    let root = Path::new(CGROUP_ROOT);
    let is = |p: &Path, magic| statfs(p).is_ok_and(|s| s.filesystem_type() == magic);
    let v2_only = is(root, CGROUP2_SUPER_MAGIC);
    let mounts = v1_mounts(&mountinfo);
    let layout = derive_layout(&text, root, v2_only, &mounts).ok_or_else(|| {
        CgroupError::Detect(io::Error::new(
            io::ErrorKind::NotFound,
            no_layout_reason(&text, &mounts),
        ))
    })?;
    Ok(match layout {
        Layout::V1 { memory, pids, cpu } => {
            let real = |d: Option<PathBuf>| d.filter(|d| is(d, CGROUP_SUPER_MAGIC));
            Layout::V1 {
                memory: real(memory),
                pids: real(pids),
                cpu: real(cpu),
            }
        }
        Layout::V2 { own } if is(&own, CGROUP2_SUPER_MAGIC) => Layout::V2 { own },
        Layout::V2 { own } => {
            return Err(CgroupError::Io {
                path: own,
                source: io::Error::other("not on a cgroup2 filesystem"),
            })
        }
    })
}

/// A live sandbox cgroup. Dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct Cgroup {
    /// The crate's handle on the group (one subsystem per controller we use).
    cg: CrateCgroup,
    version: u8,
    /// The directories created, memory's first: one per v1 hierarchy (controllers mounted
    /// together share one), or the one on v2.
    dirs: Vec<PathBuf>,
    /// Limits that could not be applied (e.g. swap accounting off), for the report.
    pub not_applied: Vec<String>,
    removed: bool,
    /// `stockade-<name>`, registered in `HELD` while this handle lives.
    leaf: String,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_at(path))
}

/// The crate's view of "no limit" / a limit, for the files that take `max`.
fn max_value(l: Limit) -> Result<MaxValue, CgroupError> {
    match l.max() {
        None => Ok(MaxValue::Max),
        Some(v) => i64::try_from(v)
            .map(MaxValue::Value)
            .map_err(|_| CgroupError::OutOfRange(v)),
    }
}

fn to_i64(v: u64) -> Result<i64, CgroupError> {
    i64::try_from(v).map_err(|_| CgroupError::OutOfRange(v))
}

/// Limit hits read from the control files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    /// OOM kills in the group.
    pub oom_kills: u64,
    /// Times the memory limit was hit.
    pub memory_max: u64,
    /// Forks refused by pids.max.
    pub pids_max: u64,
    /// CPU periods in which the quota throttled the group.
    pub cpu_throttled: u64,
    /// Peak memory use (bytes) where the kernel reports it.
    pub memory_peak: Option<u64>,
}

/// A `cgroups-rs` hierarchy holding exactly our three controllers, each rooted at the runtime's
/// own cgroup of that controller (see the module docs for why the crate's `V1`/`V2` don't fit).
#[derive(Debug, Clone)]
pub struct OwnHierarchy {
    v2: bool,
    /// v2: our own cgroup directory; v1: unused by the crate for our operations (the memory
    /// controller's own directory is reported).
    root: PathBuf,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
}

impl OwnHierarchy {
    /// v1: one directory per controller (each must be present).
    pub fn v1(memory: PathBuf, pids: PathBuf, cpu: PathBuf) -> OwnHierarchy {
        OwnHierarchy {
            v2: false,
            root: memory.clone(),
            memory: Some(memory),
            pids: Some(pids),
            cpu: Some(cpu),
        }
    }

    /// v2: all three controllers share `base` (only those in `enabled`).
    pub fn v2(base: PathBuf, enabled: &[&str]) -> OwnHierarchy {
        let has = |c: &str| enabled.contains(&c).then(|| base.clone());
        OwnHierarchy {
            v2: true,
            memory: has("memory"),
            pids: has("pids"),
            cpu: has("cpu"),
            root: base,
        }
    }
}

impl Hierarchy for OwnHierarchy {
    fn subsystems(&self) -> Vec<Subsystem> {
        // The controllers' `base` (mount root) is only used by the crate for reporting; `point`
        // is the directory the group's path is appended to.
        let mut subs = Vec::new();
        if let Some(p) = &self.memory {
            subs.push(Subsystem::Mem(MemController::new(p.clone(), self.v2)));
        }
        if let Some(p) = &self.pids {
            subs.push(Subsystem::Pid(PidController::new(p.clone(), self.v2)));
        }
        if let Some(p) = &self.cpu {
            subs.push(Subsystem::Cpu(CpuController::new(p.clone(), self.v2)));
        }
        subs
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> CrateCgroup {
        CrateCgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, _path: &str) -> CrateCgroup {
        // Our groups are one level below our own cgroup: their parent is the hierarchy root.
        self.root_control_group()
    }

    fn v2(&self) -> bool {
        self.v2
    }
}

/// The groups this process made and has not dropped. A runtime SIGKILLed before it could clean
/// up leaves `stockade-<its pid>-…` behind; once that pid is reused by a later runtime, the pid
/// is alive (it is ours) and only this registry tells our live groups from the dead one's. It is
/// locked across a sweep and the registration of the next group, so no sweep of one thread takes
/// a group another thread just made (empty until its process joins) for a leftover.
static HELD: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remove empty `stockade-<pid>-<uid>-<n>` groups left by a runtime that was killed before it could
/// clean up (SIGKILL skips every destructor): those whose runtime pid no longer exists, and those
/// named with this process's own pid (a dead runtime's, whose pid we now have) that this process
/// does not hold. A group holding a process is never touched; errors are ignored (another
/// runtime may race us). By hand: `cgroups-rs` has no way to list the child groups of a cgroup.
fn sweep_stale(layout: &Layout, held: &std::collections::BTreeSet<String>) {
    let me = std::process::id();
    let parents: Vec<&PathBuf> = match layout {
        Layout::V1 { memory, pids, cpu } => [memory, pids, cpu].into_iter().flatten().collect(),
        Layout::V2 { own } => vec![own],
    };
    for parent in parents {
        let base = if parent.file_name().is_some_and(|n| n == "supervisor") {
            parent.parent().unwrap_or(parent)
        } else {
            parent.as_path()
        };
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("stockade-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let empty = fs::read_to_string(e.path().join("cgroup.procs"))
                .map(|t| t.trim().is_empty())
                .unwrap_or(false);
            let dead = if pid == me {
                !held.contains(&name)
            } else {
                !Path::new(&format!("/proc/{pid}")).exists()
            };
            if empty && dead {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

/// Remove the empty groups killed runtimes left ([`sweep_stale`]) without making one: for a
/// process that may launch nothing for a long time after its start (`serve` whose plugins are
/// all quarantined, or none loaded), which would otherwise leave a SIGKILLed predecessor's
/// groups until its first launch. A host without a usable cgroup layout has nothing to sweep.
pub fn sweep_leftovers() {
    if let Ok(layout) = detect() {
        sweep_stale(&layout, &held());
    }
}

impl Cgroup {
    /// Create `stockade-<name>` below our own cgroup and apply the limits.
    pub fn create(layout: &Layout, name: &str, r: &Resources) -> Result<Cgroup, CgroupError> {
        Self::create_with(layout, name, r, &|d| fs::create_dir(d))
    }

    /// `create`, its group directories made by `mkdir` (a test's fake makes them race).
    fn create_with(
        layout: &Layout,
        name: &str,
        r: &Resources,
        mkdir: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<Cgroup, CgroupError> {
        let leaf = format!("stockade-{name}");
        // Registered before it exists, under the same lock as the sweep (see `HELD`).
        let fresh = {
            let mut held = held();
            sweep_stale(layout, &held);
            held.insert(leaf.clone())
        };
        let made = match layout {
            Layout::V1 { memory, pids, cpu } => Self::create_v1(memory, pids, cpu, &leaf, r, mkdir),
            Layout::V2 { own } => Self::create_v2(own, &leaf, r, mkdir),
        };
        if made.is_err() && fresh {
            held().remove(&leaf);
        }
        made
    }

    fn mem(&self) -> Option<&MemController> {
        self.cg.controller_of::<MemController>()
    }

    fn pid_ctl(&self) -> Option<&PidController> {
        self.cg.controller_of::<PidController>()
    }

    fn cpu(&self) -> Option<&CpuController> {
        self.cg.controller_of::<CpuController>()
    }

    fn create_v1(
        memory: &Option<PathBuf>,
        pids: &Option<PathBuf>,
        cpu: &Option<PathBuf>,
        leaf: &str,
        r: &Resources,
        mkdir: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<Cgroup, CgroupError> {
        let missing = |ctrl| v1_missing(ctrl, fs::read_to_string(PROC_CGROUPS).ok().as_deref());
        let m = memory.clone().ok_or_else(|| missing("memory"))?;
        let p = pids.clone().ok_or_else(|| missing("pids"))?;
        let c = cpu.clone().ok_or_else(|| missing("cpu"))?;
        let dirs = vec![m.join(leaf), p.join(leaf), c.join(leaf)];
        // Refuse an existing directory: `create` (create_dir_all) would silently adopt it, and
        // the name (runtime pid + host uid + sandbox number) is ours alone while we run.
        if let Some(d) = dirs.iter().find(|d| d.exists()) {
            return Err(CgroupError::Exists(d.clone()));
        }
        // Each controller's directory is made by hand, as on v2: the crate's controller
        // `create()` returns `()` and only logs a failed mkdir (cgroups-rs 0.3), after which the
        // first limit written failed with ENOENT on a control file — a rootless caller's EACCES
        // (the hierarchy not delegated to it) was reported as "No such file or directory" on
        // `memory.limit_in_bytes`, and an ENOSPC, ENOMEM or EAGAIN (a resource out at that
        // moment, which stops the launch whatever the policy allows) was taken for a host
        // without usable cgroups. Made before the handle exists, so its Drop only ever removes
        // directories this launch made (see `make_own`).
        make_own(&dirs, mkdir)?;
        // One entry per hierarchy: controllers mounted together share a directory, which the
        // launch report listed once per controller (review-148) and removal looked at as often.
        let mut dirs = dirs;
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        let hier = OwnHierarchy::v1(m, p, c);
        let cg = CrateCgroup::load(Box::new(hier), leaf);
        // From here on, Drop removes (and kills what is in) the directories made above.
        let mut cg = Cgroup {
            cg,
            version: 1,
            dirs,
            not_applied: vec![],
            removed: false,
            leaf: leaf.to_string(),
        };
        cg.cg.create().map_err(crate_at(&cg.dirs[0]))?;
        let mem = cg.mem().ok_or(CgroupError::Missing("memory"))?;
        let md = mem.path().to_path_buf();
        let oom = md.join("memory.oom_control");
        let files = V1MemoryFiles::of(&md);
        if let Some(max) = r.memory_max.max() {
            mem.set_limit(to_i64(max)?).map_err(crate_at(&md))?;
            // v1 gives a new group its parent's `oom_kill_disable`: under a parent whose OOM
            // killer is off (a manager's choice for its own group), a sandbox at memory_max would
            // stall at the limit for good instead of being OOM-killed, as the report's
            // `limits_hit` and docs/sandbox.md say it is. By hand: the crate can only disable it.
            // A memory group without the file (a kernel or tree that does not offer it) keeps
            // whatever its parent set, which this layer cannot vouch for: said, not assumed.
            if files.oom_control {
                write(&oom, "0")?;
            }
            let swap = r.swap_max.max().unwrap_or(u64::MAX - max);
            // Checked by hand: the crate's setters create missing files (a fake tree would
            // pass), and the kernel offers memsw only with swap accounting.
            if files.memsw {
                mem.set_memswap_limit(to_i64(max.saturating_add(swap)).unwrap_or(i64::MAX))
                    .map_err(crate_at(&md))?;
            } else if r.swap_max != Limit::Unlimited {
                // Without swap accounting we can only discourage swapping.
                let _ = mem.set_swappiness(0);
            }
        }
        cg.not_applied.extend(v1_not_applied(r, files));
        let pc = cg.pid_ctl().ok_or(CgroupError::Missing("pids"))?;
        pc.set_pid_max(max_value(r.pids_max)?)
            .map_err(crate_at(pc.path()))?;
        let cc = cg.cpu().ok_or(CgroupError::Missing("cpu"))?;
        if let Some(q) = r.cpu_max.quota_us(PERIOD_US) {
            cc.set_cfs_quota_and_period(Some(to_i64(q)?), Some(PERIOD_US))
                .map_err(crate_at(cc.path()))?;
        }
        Ok(cg)
    }

    fn create_v2(
        own: &Path,
        leaf: &str,
        r: &Resources,
        mkdir: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<Cgroup, CgroupError> {
        // A runtime already moved into `<own>/supervisor` by an earlier launch uses the parent.
        let base = if own.file_name().is_some_and(|n| n == "supervisor") {
            own.parent().unwrap_or(own).to_path_buf()
        } else {
            own.to_path_buf()
        };
        let procs = base.join("cgroup.procs");
        let has_procs = fs::read_to_string(&procs)
            .map_err(io_at(&procs))?
            .lines()
            .any(|l| !l.trim().is_empty());
        if has_procs && base != Path::new(CGROUP_ROOT) {
            // "No internal processes": controllers can be enabled for children only once this
            // cgroup holds no process itself, so the runtime moves into a leaf (as systemd
            // Delegate= users do). By hand: cgroups-rs has no notion of this rule.
            let sup = base.join("supervisor");
            match fs::create_dir(&sup) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_at(&sup)(e)),
            }
            write(&sup.join("cgroup.procs"), &std::process::id().to_string())?;
        }
        // By hand: the crate's v2 `Cgroup::create` checks the controllers against, and enables
        // them from, the hard-coded `/sys/fs/cgroup` root downwards and ignores every write
        // error; we must enable them on *our* cgroup and know which ones failed.
        let sc = base.join("cgroup.subtree_control");
        let mut not_applied = vec![];
        let mut enabled = vec![];
        for ctrl in ["memory", "pids", "cpu"] {
            let mut w = fs::write(&sc, format!("+{ctrl}"));
            if w.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
            {
                // Other processes share our cgroup (e.g. the shell or test harness that started
                // us): they move into the supervisor leaf too. They stay below the same parent,
                // so every limit that applied to them still does.
                move_all(&base, &base.join("supervisor"))?;
                w = fs::write(&sc, format!("+{ctrl}"));
            }
            match w {
                Ok(()) => enabled.push(ctrl),
                // Missing only matters when there is a quota to enforce.
                Err(_) if ctrl == "cpu" && r.cpu_max.quota_us(PERIOD_US).is_none() => {}
                Err(e) if ctrl == "cpu" => not_applied.push(cpu_refused(&base, e)),
                Err(e) => return Err(not_offered(&base, ctrl, e).unwrap_or_else(io_at(&sc))),
            }
        }
        let d = base.join(leaf);
        if d.exists() {
            return Err(CgroupError::Exists(d));
        }
        // Every v2 subsystem shares the one directory, made by hand: the crate's controller
        // `create()` returns `()` and only logs a failure (cgroups-rs 0.3), and we must fail
        // closed. Made before the handle exists, as on v1 (see `make_own`).
        make_own(std::slice::from_ref(&d), mkdir)?;
        let hier = OwnHierarchy::v2(base.clone(), &enabled);
        let cg = CrateCgroup::load(Box::new(hier), leaf);
        // From here on, Drop removes (and kills what is in) the directory made above.
        let mut cg = Cgroup {
            cg,
            version: 2,
            dirs: vec![d.clone()],
            not_applied,
            removed: false,
            leaf: leaf.to_string(),
        };
        let mem = cg.mem().ok_or(CgroupError::Missing("memory"))?;
        let m = match r.memory_max.max() {
            Some(v) => to_i64(v)?,
            None => -1, // the crate writes `max`
        };
        mem.set_limit(m).map_err(crate_at(&d))?;
        let swap_file = d.join("memory.swap.max").exists();
        if swap_file {
            let s = match r.swap_max.max() {
                Some(v) => to_i64(v)?,
                None => -1,
            };
            mem.set_memswap_limit(s).map_err(crate_at(&d))?;
        }
        cg.not_applied.extend(v2_swap_not_applied(r, swap_file));
        let pc = cg.pid_ctl().ok_or(CgroupError::Missing("pids"))?;
        pc.set_pid_max(max_value(r.pids_max)?)
            .map_err(crate_at(&d))?;
        if let Some(q) = r.cpu_max.quota_us(PERIOD_US) {
            match cg.cpu() {
                Some(cc) if d.join("cpu.max").exists() => cc
                    .set_cfs_quota_and_period(Some(to_i64(q)?), Some(PERIOD_US))
                    .map_err(crate_at(&d))?,
                _ if cg.not_applied.iter().any(|n| n.starts_with("cpu_max")) => {}
                _ => cg.not_applied.push("cpu_max (no cpu.max)".into()),
            }
        }
        Ok(cg)
    }

    /// cgroup version in use (1 or 2).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The directories, for the report.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// On v2, the group's directory opened for `clone3(CLONE_INTO_CGROUP)`, so the sandbox is
    /// born in it (no `add` then); on v1 `None`: the flag only knows the unified hierarchy.
    pub fn clone_target(&self) -> Result<Option<std::os::fd::OwnedFd>, CgroupError> {
        if self.version != 2 {
            return Ok(None);
        }
        let d = &self.dirs[0];
        // A read-only open of a directory (O_DIRECTORY implied by what it is; close-on-exec by
        // std): what CLONE_INTO_CGROUP takes.
        let f = fs::File::open(d).map_err(io_at(d))?;
        Ok(Some(f.into()))
    }

    /// Move a process (by host pid) and all its threads into the group (every controller's
    /// directory on v1). `add_task_by_tgid` writes `cgroup.procs`; `add_task` would write
    /// `cgroup.threads`, which v2 refuses for a domain group. An error names the
    /// `cgroup.procs` that refused: on v1 each controller is joined here, one by one, because
    /// the crate's own loop says only "cgroup.procs" when a write fails, and naming the first
    /// directory blamed the memory hierarchy for a refusal of the cpu or pids one.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        let tgid = CgroupPid::from(u64::try_from(pid).map_err(|_| CgroupError::OutOfRange(0))?);
        if self.version == 2 {
            // One directory; the crate refuses a group without a controller (never Ok).
            return self
                .cg
                .add_task_by_tgid(tgid)
                .map_err(crate_at(&self.dirs[0].join("cgroup.procs")));
        }
        for sub in self.cg.subsystems() {
            let c = sub.to_controller();
            c.add_task_by_tgid(&tgid)
                .map_err(crate_at(&c.path().join("cgroup.procs")))?;
        }
        Ok(())
    }

    /// Limit hits so far.
    pub fn events(&self) -> Events {
        let (mut oom, mut mem, mut peak) = (0, 0, None);
        if let Some(m) = self.mem() {
            let st = m.memory_stat();
            peak = Some(st.max_usage_in_bytes).filter(|&p| p > 0);
            if self.version == 2 {
                // By hand: the crate's v2 `memory_stat` leaves the OOM and limit-hit counters
                // at zero and has no `memory.events` accessor.
                let ev = fs::read_to_string(m.path().join("memory.events")).unwrap_or_default();
                oom = flat_key(&ev, "oom_kill");
                mem = flat_key(&ev, "max");
            } else {
                oom = st.oom_control.oom_kill;
                // With swap accounting the memory+swap limit is the one that fails first.
                mem = st.fail_cnt.max(m.memswap().fail_cnt);
            }
        }
        let pids = self
            .pid_ctl()
            .and_then(|p| p.get_pid_events().ok())
            .unwrap_or(0);
        let cpu_throttled = self
            .cpu()
            .map_or(0, |c| flat_key(&c.cpu().stat, "nr_throttled"));
        Events {
            oom_kills: oom,
            memory_max: mem,
            pids_max: pids,
            cpu_throttled,
            memory_peak: peak,
        }
    }

    /// SIGKILL every process in the group, once, without waiting for them to end.
    pub fn signal_all(&mut self) {
        if self.removed {
            return;
        }
        if self.version == 2 {
            let _ = self.cg.kill();
        } else {
            kill_members(|| self.members());
        }
    }

    /// The pids in the group now.
    fn members(&self) -> Vec<i32> {
        self.cg
            .procs()
            .into_iter()
            .filter_map(|p| i32::try_from(p.pid).ok())
            .collect()
    }

    /// Kill every process in the group and remove it. Idempotent; returns whether the group is
    /// gone (no process left, directories removed).
    pub fn kill_and_remove(&mut self) -> bool {
        if self.removed {
            return true;
        }
        if self.version == 2 {
            // `cgroup.kill` (5.14+); the loop below covers older kernels.
            let _ = self.cg.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        // v1 has no cgroup.kill (the crate's `kill` is v2-only): SIGKILL every member until none
        // is left. The pid namespace means no member can escape by forking during the loop for
        // long: its init is killed first by the caller, after which the kernel kills the rest
        // of the namespace.
        loop {
            if !kill_members(|| self.members()) {
                break;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // rmdir fails with EBUSY until the last zombie is released; `delete` retries briefly
        // itself on v1, we retry up to the deadline on both.
        while self.dirs.iter().any(|d| d.exists()) {
            if self.cg.delete().is_ok() && !self.dirs.iter().any(|d| d.exists()) {
                break;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.removed = true;
        true
    }
}

/// Make a group's directories with `mkdir`, in order, each once (v1 controllers mounted
/// together in one hierarchy, `-o memory,pids,cpu`, share one directory: met again it is not
/// another's group). On the first failure the ones this call made are removed (empty, just
/// made) and the mkdir's error returned — `Exists` for EEXIST, a name someone else took since
/// the caller's check — and nothing else is touched: not a directory it failed to make, which
/// someone else may make the next moment, nor one of a later controller. The caller makes the
/// `Cgroup` handle only after this succeeds, so the handle's Drop (which kills every process
/// listed in its directories' `cgroup.procs`, then removes them) only ever reaches directories
/// this launch made. Before helper-152 v2 made its handle first: a mkdir failing with anything
/// but EEXIST (EACCES, ENOSPC …) left Drop to kill and remove whatever group of that name
/// stood there by then.
fn make_own(dirs: &[PathBuf], mkdir: &dyn Fn(&Path) -> io::Result<()>) -> Result<(), CgroupError> {
    let mut made: Vec<&PathBuf> = Vec::with_capacity(dirs.len());
    for d in dirs {
        if made.contains(&d) {
            continue;
        }
        if let Err(e) = mkdir(d) {
            for m in made.iter().rev() {
                let _ = fs::remove_dir(m);
            }
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                CgroupError::Exists(d.clone())
            } else {
                io_at(d)(e)
            });
        }
        made.push(d);
    }
    Ok(())
}

/// SIGKILL every process `members` lists (a group's `cgroup.procs`); false when it listed none.
///
/// By pidfd, not by number: a member may exit between the listing and the signal, and its pid
/// be reused by a process outside the group — which a `kill(pid)` would then hit (`serve` is
/// long-lived and holds CAP_KILL). So each listed pid is first pinned with a pidfd, the group
/// listed again, and only a process listed again *and* not exited since is signalled: alive
/// from its pidfd's opening to after the second listing, it held that pid all along, so the
/// second listing named it.
fn kill_members(members: impl Fn() -> Vec<i32>) -> bool {
    let listed = members();
    if listed.is_empty() {
        return false;
    }
    // A pid that is already gone (ESRCH) needs no signal.
    let pinned: Vec<(i32, std::os::fd::OwnedFd)> = listed
        .into_iter()
        .filter_map(|pid| Some((pid, crate::sys::pidfd_open(pid).ok()?)))
        .collect();
    let again = members();
    for (pid, fd) in pinned {
        use std::os::fd::AsFd;
        if again.contains(&pid) && !crate::sys::pidfd_exited(fd.as_fd()).unwrap_or(true) {
            let _ = crate::sys::pidfd_kill(fd.as_fd(), libc::SIGKILL);
        }
    }
    true
}

/// A value from a flat-keyed control file (`key value` lines).
fn flat_key(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// Move every process of `from` into `to` (v2, same subtree).
fn move_all(from: &Path, to: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_at(to)(e)),
    }
    let procs = from.join("cgroup.procs");
    let text = fs::read_to_string(&procs).map_err(io_at(&procs))?;
    for pid in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // A process may have exited meanwhile (ESRCH): nothing to move.
        match fs::write(to.join("cgroup.procs"), pid) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(io_at(to)(e)),
        }
    }
    Ok(())
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_and_remove();
        // Removed or not, it is no longer this process's: a later sweep may take it if empty.
        held().remove(&self.leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::CpuQuota;

    /// A v1 layout over plain directories `memory`, `pids`, `cpu` below `root`.
    fn fake_v1(root: &Path) -> Layout {
        let mk = |c: &str| {
            let d = root.join(c);
            fs::create_dir_all(&d).unwrap();
            Some(d)
        };
        Layout::V1 {
            memory: mk("memory"),
            pids: mk("pids"),
            cpu: mk("cpu"),
        }
    }

    const HYBRID: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";

    /// This host's mounts (one controller each, `cpu` and `cpuacct` apart).
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_uses_each_controllers_own_path() {
        let m = v1_mounts(HYBRID_MOUNTS);
        let l = derive_layout(HYBRID, Path::new("/sys/fs/cgroup"), false, &m).unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: Some("/sys/fs/cgroup/memory/process_api/abc".into()),
                pids: Some("/sys/fs/cgroup/pids/".into()),
                cpu: Some("/sys/fs/cgroup/cpu/".into()),
            }
        );
    }

    /// A controller is where the kernel mounted it, whatever the directory is called; one not
    /// mounted (or a directory of that name that is no cgroup mount of it) is absent, and a
    /// bind mount of a sub-tree maps our path below it.
    #[test]
    fn controllers_are_found_by_their_mounts_not_by_name() {
        let mounts = "\
1 0 0:1 / /sys/fs/cgroup rw - tmpfs tmpfs rw
2 1 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
3 1 0:3 /process_api /mnt/my\\040mem rw - cgroup cgroup rw,memory
4 1 0:4 / /sys/fs/cgroup/pids rw - tmpfs none rw
";
        let m = v1_mounts(mounts);
        assert_eq!(m[0], Some(("/process_api".into(), "/mnt/my mem".into())));
        assert_eq!(m[1], None, "a tmpfs named pids is not the pids controller");
        let l = derive_layout(HYBRID, Path::new("/sys/fs/cgroup"), false, &m).unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: Some("/mnt/my mem/abc".into()),
                pids: None,
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct/".into()),
            }
        );
        // Our cgroup outside the bind-mounted sub-tree: not reachable there.
        let other = "4:memory:/elsewhere\n";
        assert_eq!(
            derive_layout(other, Path::new("/sys/fs/cgroup"), false, &m),
            None
        );
    }

    #[test]
    fn pure_v2_uses_the_unified_line() {
        let l = derive_layout(
            "0::/user.slice/session-1.scope\n",
            Path::new("/sys/fs/cgroup"),
            true,
            &[None, None, None],
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                own: "/sys/fs/cgroup/user.slice/session-1.scope".into()
            }
        );
    }

    /// A cgroup namespace over the host's cgroup fs bound in (a rootless container given the
    /// host's /sys): our controllers are listed and mounted, but the mounts show `/..`, outside
    /// our cgroup — named so, not as "no controller in /proc/self/cgroup" (audit-167).
    #[test]
    fn mounts_outside_our_cgroup_namespace_are_named() {
        let mounts = "\
82 81 0:29 /.. /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
84 81 0:31 /.. /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
        let own = "8:pids:/\n4:memory:/\n1:cpu:/\n0::/\n";
        let m = v1_mounts(mounts);
        assert_eq!(
            derive_layout(own, Path::new("/sys/fs/cgroup"), false, &m),
            None
        );
        let why = no_layout_reason(own, &m);
        assert!(
            why.starts_with(
                "the memory hierarchy mounted at `/sys/fs/cgroup/memory` shows `/..`, which does \
                 not contain this process's cgroup `/`"
            ),
            "{why}"
        );
        // Nothing of ours listed or mounted: the old words.
        assert_eq!(
            no_layout_reason("0::/\n", &[None, None, None]),
            "no memory, pids or cpu controller in /proc/self/cgroup"
        );
    }

    #[test]
    fn no_controllers_is_none() {
        let none = [None, None, None];
        assert_eq!(derive_layout("0::/\n", Path::new("/x"), false, &none), None);
        assert_eq!(derive_layout("garbage", Path::new("/x"), true, &none), None);
    }

    #[test]
    fn own_hierarchy_hands_out_exactly_our_controllers_at_their_own_paths() {
        let h = OwnHierarchy::v1("/m/own".into(), "/p".into(), "/c".into());
        let cg = CrateCgroup::load(Box::new(h), "stockade-x");
        let got: Vec<(String, PathBuf)> = cg
            .subsystems()
            .iter()
            .map(|s| (s.controller_name(), s.to_controller().path().to_path_buf()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("memory".into(), "/m/own/stockade-x".into()),
                ("pids".into(), "/p/stockade-x".into()),
                ("cpu".into(), "/c/stockade-x".into()),
            ]
        );
        assert!(!cg.v2());
        let h2 = OwnHierarchy::v2("/u/own".into(), &["memory", "pids"]);
        let cg2 = CrateCgroup::load(Box::new(h2), "stockade-y");
        assert!(cg2.v2());
        let names: Vec<String> = cg2
            .subsystems()
            .iter()
            .map(|s| s.controller_name())
            .collect();
        assert_eq!(
            names,
            ["memory", "pids"],
            "cpu not delegated: not handed out"
        );
    }

    #[test]
    fn flat_keyed_values_match_whole_keys_only() {
        let ev = "low 0\nhigh 0\nmax 7\noom 2\noom_kill 3\noom_group_kill 9\n";
        assert_eq!(flat_key(ev, "max"), 7);
        assert_eq!(flat_key(ev, "oom_kill"), 3);
        assert_eq!(flat_key(ev, "absent"), 0);
    }

    /// audit-154: on a v2 kernel booted with `cgroup_disable=memory` (or `=pids`) the launch
    /// stopped, or ran without its cgroup, with "cgroup operation on
    /// `…/cgroup.subtree_control` failed: Invalid argument" as the only reason: not which
    /// controller was missing.
    #[test]
    fn a_v2_controller_the_kernel_does_not_offer_is_named() {
        let r = stockade_policy::sandbox::default_policy().resources;
        let fake = |offered: &str| {
            let t = tempfile::tempdir().unwrap();
            let own = t.path().join("own");
            fs::create_dir(&own).unwrap();
            fs::write(own.join("cgroup.procs"), "").unwrap();
            fs::write(own.join("cgroup.controllers"), format!("{offered}\n")).unwrap();
            // A directory: every `+ctrl` write is refused, as the kernel refuses one not offered.
            fs::create_dir(own.join("cgroup.subtree_control")).unwrap();
            (t, own)
        };
        let (_t, own) = fake("cpuset cpu io pids");
        let e = Cgroup::create(&Layout::V2 { own: own.clone() }, "t", &r).unwrap_err();
        match &e {
            CgroupError::NotOffered {
                controller, file, ..
            } => {
                assert_eq!(*controller, "memory");
                assert_eq!(file, &own.join("cgroup.controllers"));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("`memory` is not offered"), "{e}");
        assert!(!own.join("stockade-t").exists());
        // Listed but refused (a cgroup not delegated to this user): the write's own error.
        let (_t, own) = fake("cpu memory pids");
        let e = Cgroup::create(&Layout::V2 { own: own.clone() }, "t", &r).unwrap_err();
        assert!(matches!(e, CgroupError::Io { .. }), "{e:?}");
    }

    /// review-158: a cpu controller the runtime's group is not offered is named as such in
    /// the partial group's `not_applied`, as memory and pids are refused by name; one that is
    /// offered but refused (not delegated) keeps the write's own error.
    #[test]
    fn a_v2_cpu_controller_not_offered_is_named_not_undelegated() {
        let t = tempfile::tempdir().unwrap();
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        fs::write(t.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let n = cpu_refused(t.path(), einval());
        assert!(n.starts_with("cpu_max (cpu controller not offered"), "{n}");
        assert!(n.contains("cgroup_disable=cpu"), "{n}");
        fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let n = cpu_refused(t.path(), einval());
        assert!(
            n.starts_with("cpu_max (cpu controller not delegated"),
            "{n}"
        );
        assert!(!n.contains("cgroup_disable"), "{n}");
    }

    /// review-158: on a v1 or hybrid kernel booted with `cgroup_disable=memory`, no memory
    /// hierarchy is mounted and the launch said only "not available" (hinted: check it is
    /// mounted); `/proc/cgroups` tells the case, and the error names it.
    #[test]
    fn a_v1_controller_disabled_at_boot_is_named() {
        let proc_cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                            cpu\t1\t3\t1\nmemory\t0\t1\t0\npids\t8\t3\t1\n";
        let e = v1_missing("memory", Some(proc_cgroups));
        assert!(
            matches!(
                e,
                CgroupError::Disabled {
                    controller: "memory",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("cgroup_disable="), "{e}");
        // Enabled but not mounted, or /proc/cgroups unreadable: not available, as before.
        assert!(matches!(
            v1_missing("pids", Some(proc_cgroups)),
            CgroupError::Missing("pids")
        ));
        assert!(matches!(
            v1_missing("memory", None),
            CgroupError::Missing("memory")
        ));
    }

    /// audit-171: mountinfo as read keeps a path's bytes that are not UTF-8 (escaped as the
    /// kernel escapes space, tab, newline and backslash), and the paths given back are the
    /// file system's bytes, not a look-alike with U+FFFD.
    #[test]
    fn mount_paths_not_utf8_are_read_byte_for_byte() {
        use std::os::unix::ffi::OsStrExt;
        let raw: &[u8] = b"\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
73 50 0:40 / /tmp/m\xff rw - tmpfs x rw
39 31 0:36 /sub\xfe\\134x /mnt/p\\040\xff rw - cgroup cgroup rw,pids
";
        let text = escape_non_utf8(raw);
        assert!(text.contains("/tmp/m\\377 rw"), "{text}");
        let m = v1_mounts(&text);
        let (root, point) = m[1].clone().unwrap();
        assert_eq!(root.as_os_str().as_bytes(), b"/sub\xfe\\x");
        assert_eq!(point.as_os_str().as_bytes(), b"/mnt/p \xff");
        assert_eq!(host_mode_in(&text), HostMode::V1);
        // Valid UTF-8 (a multi-byte name) is kept as it is.
        assert_eq!(escape_non_utf8("/mnt/é".as_bytes()), "/mnt/é");
    }

    /// review-156: the hint's host mode is read from mountinfo, as the launch finds its
    /// controllers, not from `/sys/fs/cgroup/<controller>`: v1 hierarchies mounted elsewhere
    /// are v1, a `/sys/fs/cgroup` holding only `unified` is neither v2 nor v1.
    #[test]
    fn the_hosts_cgroup_mode_is_read_from_mountinfo() {
        let line = |id: u32, point: &str, fs: &str, opts: &str| {
            format!("{id} 1 0:{id} / {point} rw,relatime shared:{id} - {fs} {fs} {opts}\n")
        };
        let tmpfs = line(30, "/sys/fs/cgroup", "tmpfs", "ro,mode=755");
        let v2 = line(31, "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate");
        let unified = line(32, "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate");
        let memory_elsewhere = line(33, "/cgroup/mem", "cgroup", "rw,memory");
        let memory = line(34, "/sys/fs/cgroup/memory", "cgroup", "rw,memory");
        assert_eq!(host_mode_in(&v2), HostMode::V2);
        assert_eq!(
            host_mode_in(&format!("{tmpfs}{unified}{memory}")),
            HostMode::V1
        );
        assert_eq!(host_mode_in(&format!("{tmpfs}{unified}")), HostMode::None);
        assert_eq!(host_mode_in(&memory_elsewhere), HostMode::V1);
        // A tmpfs mounted over an earlier cgroup2 hides it, as statfs would see.
        assert_eq!(host_mode_in(&format!("{v2}{tmpfs}")), HostMode::None);
        assert_eq!(host_mode_in(""), HostMode::None);
    }

    #[test]
    fn v2_group_moves_the_runtime_to_a_supervisor_leaf_first() {
        let t = tempfile::tempdir().unwrap();
        let own = t.path().join("own");
        fs::create_dir(&own).unwrap();
        fs::write(own.join("cgroup.procs"), "4242\n").unwrap();
        let r = stockade_policy::sandbox::default_policy().resources;
        let cg = Cgroup::create(&Layout::V2 { own: own.clone() }, "t2", &r).unwrap();
        assert_eq!(
            fs::read_to_string(own.join("supervisor/cgroup.procs")).unwrap(),
            std::process::id().to_string()
        );
        // The last controller written wins in a plain file; the real file accumulates them.
        assert_eq!(
            fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
        let leaf = own.join("stockade-t2");
        assert_eq!(
            fs::read_to_string(leaf.join("memory.max")).unwrap(),
            (256u64 << 20).to_string()
        );
        assert_eq!(fs::read_to_string(leaf.join("pids.max")).unwrap(), "64");
        assert_eq!(cg.version(), 2);
        // The fake has no memory.swap.max / cpu.max: both are reported, not silently skipped.
        assert_eq!(cg.not_applied.len(), 2, "{:?}", cg.not_applied);
        std::mem::forget(cg); // the fake's files make rmdir fail; the tempdir cleans up
                              // Nothing to enforce, nothing missing: unlimited swap and CPU need neither file (a root
                              // launch would otherwise be refused for want of `cgroup_partial`).
        let unlimited = Resources {
            swap_max: Limit::Unlimited,
            cpu_max: CpuQuota::Unlimited,
            ..r
        };
        let cg = Cgroup::create(&Layout::V2 { own: own.clone() }, "t3", &unlimited).unwrap();
        assert_eq!(cg.not_applied, Vec::<String>::new());
        std::mem::forget(cg);
    }

    #[test]
    fn v1_swap_without_a_memory_limit_is_reported_not_assumed() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_v1(t.path());
        let r = Resources {
            memory_max: Limit::Unlimited,
            ..stockade_policy::sandbox::default_policy().resources
        };
        assert_eq!(r.swap_max, Limit::Max(0));
        let cg = Cgroup::create(&layout, "s1", &r).unwrap();
        assert!(
            cg.not_applied.iter().any(|n| n.starts_with("swap_max")),
            "{:?}",
            cg.not_applied
        );
        std::mem::forget(cg);
        let both = Resources {
            swap_max: Limit::Unlimited,
            ..r
        };
        let cg = Cgroup::create(&layout, "s2", &both).unwrap();
        assert_eq!(cg.not_applied, Vec::<String>::new());
        std::mem::forget(cg);
    }

    /// On this host's real hierarchy (cgroupfs allows rmdir of an empty group, a fake tree
    /// does not): a runtime SIGKILLed with groups left, whose pid the kernel then gives to this
    /// process. Its leftover is swept by the next create; this process's own live group is not.
    #[test]
    fn a_leftover_named_with_our_own_pid_is_swept_but_not_our_live_groups() {
        if !crate::test_support::root_or_skip("making cgroups on the host's hierarchy needs root") {
            return;
        }
        let layout = detect().expect("this host has cgroups (CI's does)");
        let r = stockade_policy::sandbox::default_policy().resources;
        let me = std::process::id();
        let live = Cgroup::create(&layout, &format!("{me}-0-900001"), &r).unwrap();
        let bases: Vec<PathBuf> = live
            .dirs()
            .iter()
            .map(|d| d.parent().unwrap().to_path_buf())
            .collect();
        let dead = format!("stockade-{me}-0-900002");
        for b in &bases {
            fs::create_dir(b.join(&dead)).unwrap();
        }
        let next = Cgroup::create(&layout, &format!("{me}-0-900003"), &r).unwrap();
        let left: Vec<_> = bases.iter().filter(|b| b.join(&dead).exists()).collect();
        // Cleaned up before asserting, so a failure leaves nothing on the host.
        for b in &left {
            let _ = fs::remove_dir(b.join(&dead));
        }
        assert!(left.is_empty(), "the leftover stayed in {left:?}");
        assert!(
            live.dirs().iter().all(|d| d.is_dir()),
            "our own group was swept"
        );
        drop((live, next));
    }

    /// A v1 group directory that cannot be made is refused with the mkdir's own error, naming
    /// that directory, and the ones made before it are removed. Before audit-144 the crate
    /// swallowed the mkdir's error and the launch failed later on a control file with another
    /// errno (a rootless caller's EACCES read as ENOENT on `memory.limit_in_bytes`; an ENOSPC
    /// or ENOMEM, which must stop the launch, taken for a host without cgroups). Here the pids
    /// hierarchy is a regular file (ENOTDIR, what a fake tree can give a root test).
    #[test]
    fn a_v1_directory_that_cannot_be_made_is_refused_with_its_own_error() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_v1(t.path());
        fs::remove_dir(t.path().join("pids")).unwrap();
        fs::write(t.path().join("pids"), "").unwrap();
        let r = stockade_policy::sandbox::default_policy().resources;
        let e = Cgroup::create(&layout, "nodir", &r).unwrap_err();
        match &e {
            CgroupError::Io { path, source } => {
                assert_eq!(path, &t.path().join("pids/stockade-nodir"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR), "{e:?}");
            }
            other => panic!("not the mkdir's error: {other:?}"),
        }
        for c in ["memory", "cpu"] {
            assert!(
                !t.path().join(c).join("stockade-nodir").exists(),
                "{c} group left behind"
            );
        }
    }

    /// v1 controllers mounted together in one hierarchy (`mount -t cgroup -o memory,pids,cpu`,
    /// or one mount of every controller) share one directory for the sandbox's group: it is
    /// made once, carries every limit, and is removed at the end. Before review-148 the
    /// by-hand mkdir (audit-144) made it for memory, met it again for pids (EEXIST), took
    /// that for another's group and stopped every launch on such a host with `cgroup_clash`.
    #[test]
    fn v1_controllers_mounted_together_share_one_group() {
        let t = tempfile::tempdir().unwrap();
        let all = t.path().join("memory,pids,cpu");
        fs::create_dir(&all).unwrap();
        let layout = Layout::V1 {
            memory: Some(all.clone()),
            pids: Some(all.clone()),
            cpu: Some(all.clone()),
        };
        let r = stockade_policy::sandbox::default_policy().resources;
        let mut cg = Cgroup::create(&layout, "shared", &r).unwrap();
        let d = all.join("stockade-shared");
        // Listed once (the launch report's `paths`), not once per controller.
        assert_eq!(cg.dirs(), std::slice::from_ref(&d));
        assert_eq!(
            fs::read_to_string(d.join("memory.limit_in_bytes")).unwrap(),
            (256u64 << 20).to_string()
        );
        assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap(), "64");
        assert_eq!(
            fs::read_to_string(d.join("cpu.cfs_quota_us")).unwrap(),
            "100000"
        );
        for f in fs::read_dir(&d).unwrap() {
            fs::remove_file(f.unwrap().path()).unwrap();
        }
        assert!(cg.kill_and_remove());
        assert!(!d.exists());
        // Two controllers together, the third apart: a failure on the third removes the one
        // shared directory made, once.
        let two = t.path().join("memory,pids");
        fs::create_dir(&two).unwrap();
        fs::write(t.path().join("cpu"), "").unwrap();
        let layout = Layout::V1 {
            memory: Some(two.clone()),
            pids: Some(two.clone()),
            cpu: Some(t.path().join("cpu")),
        };
        let e = Cgroup::create(&layout, "apart", &r).unwrap_err();
        match &e {
            CgroupError::Io { path, source } => {
                assert_eq!(path, &t.path().join("cpu/stockade-apart"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR), "{e:?}");
            }
            other => panic!("not the mkdir's error: {other:?}"),
        }
        assert!(
            !two.join("stockade-apart").exists(),
            "shared group left behind"
        );
    }

    /// A launch whose mkdir fails (EACCES, ENOSPC …) while someone else makes a group of the
    /// same name the next moment leaves that group alone: its process is not killed, its
    /// directory not removed nor written to — on v2 as on v1. Before helper-152 v2 made its
    /// handle before the mkdir, and the handle's Drop wrote `cgroup.kill`, SIGKILLed every pid
    /// in the other group's `cgroup.procs` and tried to remove it. The fake mkdir plays the
    /// race: it makes the other's group (one live process listed) and fails with EACCES.
    #[test]
    fn a_failed_mkdir_leaves_a_group_made_by_someone_else_alone() {
        let t = tempfile::tempdir().unwrap();
        let r = stockade_policy::sandbox::default_policy().resources;
        let own = t.path().join("own");
        fs::create_dir(&own).unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = other.id();
        let racing = |d: &Path| -> io::Result<()> {
            fs::create_dir(d)?;
            fs::write(d.join("cgroup.procs"), format!("{pid}\n"))?;
            fs::write(d.join("cgroup.kill"), "")?;
            Err(io::Error::from_raw_os_error(libc::EACCES))
        };
        let v1 = fake_v1(t.path());
        let cases = [
            (Layout::V2 { own: own.clone() }, own.join("stockade-race")),
            (v1, t.path().join("memory/stockade-race")),
        ];
        let mut failures = vec![];
        for (layout, d) in cases {
            let e = Cgroup::create_with(&layout, "race", &r, &racing).unwrap_err();
            match &e {
                CgroupError::Io { path, source } if path == &d => {
                    assert_eq!(source.raw_os_error(), Some(libc::EACCES), "{e:?}");
                }
                other => panic!("not the mkdir's error on {}: {other:?}", d.display()),
            }
            if other.try_wait().unwrap().is_some() {
                failures.push(format!("{}: the other's process was killed", d.display()));
                break;
            }
            if fs::read_to_string(d.join("cgroup.kill")).unwrap() != "" {
                failures.push(format!("{}: the other's cgroup.kill written", d.display()));
            }
            fs::remove_file(d.join("cgroup.kill")).unwrap();
            fs::remove_file(d.join("cgroup.procs")).unwrap();
            fs::remove_dir(&d).unwrap();
        }
        let _ = other.kill();
        let _ = other.wait();
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn an_existing_group_is_a_clash_never_adopted_nor_removed() {
        let t = tempfile::tempdir().unwrap();
        let r = stockade_policy::sandbox::default_policy().resources;
        let v1 = fake_v1(t.path());
        let first = Cgroup::create(&v1, "same", &r).unwrap();
        let e = Cgroup::create(&v1, "same", &r).unwrap_err();
        assert!(matches!(e, CgroupError::Exists(_)), "{e:?}");
        assert!(
            t.path().join("memory/stockade-same").is_dir(),
            "the first group stays"
        );
        std::mem::forget(first);
        let own = t.path().join("own");
        fs::create_dir(&own).unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        fs::create_dir(own.join("stockade-same")).unwrap();
        let e = Cgroup::create(&Layout::V2 { own: own.clone() }, "same", &r).unwrap_err();
        assert!(matches!(e, CgroupError::Exists(_)), "{e:?}");
        assert!(own.join("stockade-same").is_dir());
    }

    #[test]
    fn v1_group_in_a_fake_tree_gets_limits_and_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_v1(t.path());
        let r = stockade_policy::sandbox::default_policy().resources;
        let mut cg = Cgroup::create(&layout, "t1", &r).unwrap();
        let m = t.path().join("memory/stockade-t1");
        assert_eq!(
            fs::read_to_string(m.join("memory.limit_in_bytes")).unwrap(),
            (256u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(t.path().join("pids/stockade-t1/pids.max")).unwrap(),
            "64"
        );
        assert_eq!(
            fs::read_to_string(t.path().join("cpu/stockade-t1/cpu.cfs_quota_us")).unwrap(),
            "100000"
        );
        assert!(
            !cg.not_applied.is_empty(),
            "no memsw file in the fake: reported"
        );
        // Nor a memory.oom_control: the OOM killer is the parent's to decide, which is said
        // rather than reported enforced.
        assert!(
            cg.not_applied
                .iter()
                .any(|n| n.starts_with("memory OOM killer")),
            "{:?}",
            cg.not_applied
        );
        // A plain directory with files is not removable by rmdir; clean the fake files first.
        for d in cg.dirs().to_vec() {
            for f in fs::read_dir(&d).unwrap() {
                fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        assert!(cg.kill_and_remove());
        assert!(!m.exists());
    }

    /// A v1 join refused by one controller names that controller's `cgroup.procs`, not the
    /// memory directory whichever refused (an EINVAL from cpu was reported against memory).
    /// The fake's `cgroup.procs` of the refusing controller is `/dev/full`: it opens, and the
    /// write fails, as a kernel refusal does (the crate's error then names no directory).
    #[test]
    fn a_refused_v1_join_names_the_controller_file_that_refused() {
        let t = tempfile::tempdir().unwrap();
        let layout = fake_v1(t.path());
        let r = stockade_policy::sandbox::default_policy().resources;
        for refusing in ["cpu", "pids", "memory"] {
            let cg = Cgroup::create(&layout, &format!("j-{refusing}"), &r).unwrap();
            let file = t
                .path()
                .join(refusing)
                .join(format!("stockade-j-{refusing}"))
                .join("cgroup.procs");
            std::os::unix::fs::symlink("/dev/full", &file).unwrap();
            let e = cg.add(4242).unwrap_err();
            match &e {
                CgroupError::Crate { path, .. } => assert_eq!(path, &file, "{refusing}"),
                other => panic!("{refusing}: {other:?}"),
            }
            assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
            std::mem::forget(cg); // the fake's files make rmdir fail; the tempdir cleans up
        }
        // Accepted by all three: the pid is in each controller's cgroup.procs.
        let cg = Cgroup::create(&layout, "j-ok", &r).unwrap();
        cg.add(4242).unwrap();
        for c in ["memory", "pids", "cpu"] {
            let procs = t.path().join(c).join("stockade-j-ok/cgroup.procs");
            assert_eq!(fs::read_to_string(procs).unwrap(), "4242", "{c}");
        }
        std::mem::forget(cg);
    }

    fn sleeper() -> (std::process::Child, i32) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        (child, pid)
    }

    #[test]
    fn a_member_listed_both_times_is_killed() {
        use std::os::unix::process::ExitStatusExt;
        let (mut child, pid) = sleeper();
        assert!(kill_members(|| vec![pid]));
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!kill_members(Vec::new), "an empty group: nothing left");
    }

    #[test]
    fn a_pid_no_longer_listed_is_not_signalled() {
        // Listed once, then gone from the group (exited, its number reused by this process
        // outside the group): not signalled.
        let (mut child, pid) = sleeper();
        let calls = std::cell::Cell::new(0);
        let members = || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                vec![pid]
            } else {
                Vec::new()
            }
        };
        assert!(kill_members(members));
        assert_eq!(calls.get(), 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(child.try_wait().unwrap().is_none(), "still running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
