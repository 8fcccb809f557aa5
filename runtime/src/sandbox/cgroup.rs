//! The sandbox's cgroup: memory (no swap), CPU quota and pids limits, created *below the
//! runtime's own cgroup* (read from `/proc/self/cgroup`, per controller on v1), on v1, v2 and
//! hybrid hosts; limit hits read back for the report; everything killed and the group removed
//! when the sandbox stops (RAII: also on every error path).
//!
//! ## Why by hand and not `cgroups-rs`
//! We need three controllers only, each at its *own* parent path on v1/hybrid hosts (here the
//! memory controller's cgroup is `/process_api/<id>` while pids and cpu sit at `/`), the v2
//! "no internal processes" dance (moving the runtime into `<own>/supervisor` before enabling
//! controllers), and the event counters for the report. `cgroups-rs`' v1 hierarchy creates the
//! group in *every* mounted controller (cpuset, devices, net_cls …, where cpuset needs its own
//! initialisation) and its path handling assumes one relative path for all of them; a few file
//! writes with typed errors were smaller than the workarounds. The kernel interface used here is
//! only `mkdir`, `rmdir` and reading/writing the documented control files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stockade_policy::sandbox::{Limit, Resources};

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The v1 controllers we use.
pub const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
const PERIOD_US: u64 = 100_000;

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
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Derive our own cgroup directories from the text of `/proc/self/cgroup` (pure; `v2_only` says
/// whether `/sys/fs/cgroup` is a cgroup2 mount).
pub fn derive_layout(proc_self_cgroup: &str, root: &Path, v2_only: bool) -> Option<Layout> {
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
                v1[i] = Some(root.join(c).join(rel));
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

/// Detect the layout of this host for this process.
pub fn detect() -> Result<Layout, CgroupError> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::Detect)?;
    let root = Path::new(CGROUP_ROOT);
    let v2_only = root.join("cgroup.controllers").exists();
    derive_layout(&text, root, v2_only).ok_or_else(|| {
        CgroupError::Detect(io::Error::new(
            io::ErrorKind::NotFound,
            "no memory, pids or cpu controller in /proc/self/cgroup",
        ))
    })
}

/// A live sandbox cgroup. Dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct Cgroup {
    version: u8,
    /// The directories created (one per v1 controller, or one on v2).
    dirs: Vec<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    /// Limits that could not be applied (e.g. swap accounting off), for the report.
    pub not_applied: Vec<String>,
    removed: bool,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_at(path))
}

fn limit_str(l: Limit) -> String {
    l.max().map_or("max".to_string(), |v| v.to_string())
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

/// Remove empty `stockade-<pid>-<uid>` groups left by a runtime that was killed before it could
/// clean up (SIGKILL skips every destructor). Only groups whose runtime pid no longer exists and
/// which hold no process are touched; errors are ignored (another runtime may race us).
pub fn sweep_stale(layout: &Layout) {
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
            if empty && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

impl Cgroup {
    /// Create `stockade-<name>` below our own cgroup and apply the limits.
    pub fn create(layout: &Layout, name: &str, r: &Resources) -> Result<Cgroup, CgroupError> {
        sweep_stale(layout);
        let leaf = format!("stockade-{name}");
        match layout {
            Layout::V1 { memory, pids, cpu } => Self::create_v1(memory, pids, cpu, &leaf, r),
            Layout::V2 { own } => Self::create_v2(own, &leaf, r),
        }
    }

    fn create_v1(
        memory: &Option<PathBuf>,
        pids: &Option<PathBuf>,
        cpu: &Option<PathBuf>,
        leaf: &str,
        r: &Resources,
    ) -> Result<Cgroup, CgroupError> {
        let mut cg = Cgroup {
            version: 1,
            dirs: vec![],
            memory: None,
            pids: None,
            cpu: None,
            not_applied: vec![],
            removed: false,
        };
        let mk = |cg: &mut Cgroup, parent: &Option<PathBuf>, ctrl: &'static str| {
            let parent = parent.as_ref().ok_or(CgroupError::Missing(ctrl))?;
            let d = parent.join(leaf);
            fs::create_dir(&d).map_err(io_at(&d))?;
            cg.dirs.push(d.clone());
            Ok::<PathBuf, CgroupError>(d)
        };
        let m = mk(&mut cg, memory, "memory")?;
        if let Some(max) = r.memory_max.max() {
            write(&m.join("memory.limit_in_bytes"), &max.to_string())?;
            let memsw = m.join("memory.memsw.limit_in_bytes");
            let swap = r.swap_max.max().unwrap_or(u64::MAX - max);
            if memsw.exists() {
                write(&memsw, &max.saturating_add(swap).to_string())?;
            } else if r.swap_max != Limit::Unlimited {
                // Without swap accounting we can only discourage swapping.
                let _ = fs::write(m.join("memory.swappiness"), "0");
                cg.not_applied
                    .push("swap_max (kernel has no swap accounting; swappiness set to 0)".into());
            }
        }
        cg.memory = Some(m);
        let p = mk(&mut cg, pids, "pids")?;
        write(&p.join("pids.max"), &limit_str(r.pids_max))?;
        cg.pids = Some(p);
        let c = mk(&mut cg, cpu, "cpu")?;
        if let Some(q) = r.cpu_max.quota_us(PERIOD_US) {
            write(&c.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&c.join("cpu.cfs_quota_us"), &q.to_string())?;
        }
        cg.cpu = Some(c);
        Ok(cg)
    }

    fn create_v2(own: &Path, leaf: &str, r: &Resources) -> Result<Cgroup, CgroupError> {
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
            // Delegate= users do).
            let sup = base.join("supervisor");
            match fs::create_dir(&sup) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_at(&sup)(e)),
            }
            write(&sup.join("cgroup.procs"), &std::process::id().to_string())?;
        }
        let sc = base.join("cgroup.subtree_control");
        let mut cg = Cgroup {
            version: 2,
            dirs: vec![],
            memory: None,
            pids: None,
            cpu: None,
            not_applied: vec![],
            removed: false,
        };
        for ctrl in ["memory", "pids", "cpu"] {
            let mut r = fs::write(&sc, format!("+{ctrl}"));
            if r.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
            {
                // Other processes share our cgroup (e.g. the shell or test harness that started
                // us): they move into the supervisor leaf too. They stay below the same parent,
                // so every limit that applied to them still does.
                move_all(&base, &base.join("supervisor"))?;
                r = fs::write(&sc, format!("+{ctrl}"));
            }
            if let Err(e) = r {
                if ctrl == "cpu" {
                    cg.not_applied
                        .push(format!("cpu_max (cpu controller not delegated: {e})"));
                } else {
                    return Err(io_at(&sc)(e));
                }
            }
        }
        let d = base.join(leaf);
        fs::create_dir(&d).map_err(io_at(&d))?;
        cg.dirs.push(d.clone());
        write(&d.join("memory.max"), &limit_str(r.memory_max))?;
        let swap = d.join("memory.swap.max");
        if swap.exists() {
            write(&swap, &limit_str(r.swap_max))?;
        } else {
            cg.not_applied.push("swap_max (no memory.swap.max)".into());
        }
        write(&d.join("pids.max"), &limit_str(r.pids_max))?;
        if let Some(q) = r.cpu_max.quota_us(PERIOD_US) {
            let f = d.join("cpu.max");
            if f.exists() {
                write(&f, &format!("{q} {PERIOD_US}"))?;
            } else if !cg.not_applied.iter().any(|n| n.starts_with("cpu_max")) {
                cg.not_applied.push("cpu_max (no cpu.max)".into());
            }
        }
        cg.memory = Some(d.clone());
        cg.pids = Some(d.clone());
        cg.cpu = Some(d);
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

    /// Move a process (by host pid) into every directory of the group.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Limit hits so far.
    pub fn events(&self) -> Events {
        let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        let key = |text: &str, k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|v| v.trim().parse::<u64>().ok()))
                .unwrap_or(0)
        };
        let (mut oom, mut mem, mut pids, mut peak) = (0, 0, 0, None);
        if let Some(m) = &self.memory {
            if self.version == 2 {
                let ev = read(m.join("memory.events"));
                oom = key(&ev, "oom_kill ");
                mem = key(&ev, "max ");
                peak = read(m.join("memory.peak")).trim().parse().ok();
            } else {
                oom = key(&read(m.join("memory.oom_control")), "oom_kill ");
                // With swap accounting the memory+swap limit is the one that fails first.
                let fc = |f: &str| read(m.join(f)).trim().parse::<u64>().unwrap_or(0);
                mem = fc("memory.failcnt").max(fc("memory.memsw.failcnt"));
                peak = read(m.join("memory.max_usage_in_bytes"))
                    .trim()
                    .parse()
                    .ok();
            }
        }
        if let Some(p) = &self.pids {
            pids = key(&read(p.join("pids.events")), "max ");
        }
        let cpu_throttled = self
            .cpu
            .as_ref()
            .map_or(0, |c| key(&read(c.join("cpu.stat")), "nr_throttled "));
        Events {
            oom_kills: oom,
            memory_max: mem,
            pids_max: pids,
            cpu_throttled,
            memory_peak: peak,
        }
    }

    fn procs(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kill every process in the group and remove it. Idempotent; returns whether the group is
    /// gone (no process left, directories removed).
    pub fn kill_and_remove(&mut self) -> bool {
        if self.removed {
            return true;
        }
        if self.version == 2 {
            if let Some(d) = self.dirs.first() {
                let _ = fs::write(d.join("cgroup.kill"), "1");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        // v1 has no cgroup.kill: SIGKILL every member until none is left. The pid namespace
        // means no member can escape by forking during the loop for long: its init is killed
        // first by the caller, after which the kernel kills the rest of the namespace.
        loop {
            let left = self.procs();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // rmdir fails with EBUSY until the last zombie is released; retry briefly.
        for d in self.dirs.iter().rev() {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return false,
                }
            }
        }
        self.removed = true;
        true
    }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn hybrid_host_uses_each_controllers_own_path() {
        let l = derive_layout(HYBRID, Path::new("/sys/fs/cgroup"), false).unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: Some("/sys/fs/cgroup/memory/process_api/abc".into()),
                pids: Some("/sys/fs/cgroup/pids/".into()),
                cpu: Some("/sys/fs/cgroup/cpu/".into()),
            }
        );
    }

    #[test]
    fn pure_v2_uses_the_unified_line() {
        let l = derive_layout(
            "0::/user.slice/session-1.scope\n",
            Path::new("/sys/fs/cgroup"),
            true,
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                own: "/sys/fs/cgroup/user.slice/session-1.scope".into()
            }
        );
    }

    #[test]
    fn no_controllers_is_none() {
        assert_eq!(derive_layout("0::/\n", Path::new("/x"), false), None);
        assert_eq!(derive_layout("garbage", Path::new("/x"), true), None);
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
    }

    #[test]
    fn v1_group_in_a_fake_tree_gets_limits_and_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let mk = |c: &str| {
            let d = t.path().join(c);
            fs::create_dir_all(&d).unwrap();
            Some(d)
        };
        let layout = Layout::V1 {
            memory: mk("memory"),
            pids: mk("pids"),
            cpu: mk("cpu"),
        };
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
        // A plain directory with files is not removable by rmdir; clean the fake files first.
        for d in cg.dirs().to_vec() {
            for f in fs::read_dir(&d).unwrap() {
                fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        assert!(cg.kill_and_remove());
        assert!(!m.exists());
    }
}
