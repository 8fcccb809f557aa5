//! What this host offers each layer, read without launching: the Landlock ABI, whether this
//! caller may make the sandbox's namespaces and, if not, which host switch says no, seccomp
//! filters, the cgroup mode and the controllers offered. `stockade node info` prints them (and,
//! given a policy, which layers a launch would enforce, degrade or refuse, by the names the
//! launch report and `allow_degraded` use); the launch reads the same switches to name the one
//! that refused it ([`UsernsSwitches::restriction`]).
//!
//! Every file is read under a root the tests point at a fake tree (`/proc/sys`,
//! `/sys/kernel/security`); the probes that cannot be faked (the clone, the Landlock ABI) are
//! the launch's own calls.
//!
//! A prediction is not a launch: a cgroup the runtime may not write to, a uid range in use or a
//! path of the policy that is missing still stop the launch that `node` said would pass. Where
//! the host's answer is the launch's (the clone, the Landlock ABI, [`super::landlock::evaluate`],
//! [`super::cgroup::detect`]) it is that answer.

use super::cgroup::{self, HostMode, Layout};
use super::report::LayerStatus;
use serde::Serialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use stockade_policy::sandbox::{Degradation, ValidatedSandboxPolicy};

/// Where the kernel's sysctls are read.
pub const PROC_SYS: &str = "/proc/sys";
/// Where securityfs lists the active LSMs (`lsm` under it).
pub const SECURITYFS: &str = "/sys/kernel/security";
/// This process's AppArmor label (kernels ≥ 5.8; absent or unreadable without AppArmor).
pub const APPARMOR_LABEL: &str = "/proc/self/attr/apparmor/current";
/// The namespaces the sandbox's clone makes (its init then unshares cgroup, network, IPC, UTS).
pub const CLONE_FLAGS: libc::c_int = libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS;

/// The host switches that restrict user namespaces, as read (`None`: absent on this kernel, or
/// unreadable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsernsSwitches {
    /// `user.max_user_namespaces` (0 on RHEL-like hosts that turn user namespaces off; per user
    /// namespace: the runtime's own).
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian's patch, older Debian kernels: 0 = only a
    /// caller with CAP_SYS_ADMIN may make one).
    pub unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu ≥ 23.10: 1 = an unprivileged,
    /// unconfined caller's new user namespace gets no capabilities, so the mount namespace made
    /// with it is refused).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
    /// This process's AppArmor label (`/proc/self/attr/apparmor/current`: `unconfined`, or a
    /// profile's name and mode such as `stockade (unconfined)`); `None` without AppArmor. Only an
    /// `unconfined` process is held by `apparmor_restrict_unprivileged_userns`: under a profile
    /// (the one shipped for Ubuntu, once loaded) that profile's rules decide (review-170).
    pub apparmor_label: Option<String>,
}

/// One switch of [`UsernsSwitches`] that stops this caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsernsSwitch {
    /// `user.max_user_namespaces` is 0: nobody, root included.
    MaxUserNamespaces,
    /// `kernel.unprivileged_userns_clone` is 0: only root.
    UnprivilegedUsernsClone,
    /// `kernel.apparmor_restrict_unprivileged_userns` is 1: only root or an AppArmor profile
    /// granting `userns`.
    AppArmorRestrict,
}

impl UsernsSwitches {
    /// This host's switches, from [`PROC_SYS`], and this process's AppArmor label
    /// ([`APPARMOR_LABEL`]).
    pub fn read() -> Self {
        Self::read_in(Path::new(PROC_SYS), Path::new(APPARMOR_LABEL))
    }

    /// The switches under `proc_sys` (a `/proc/sys` tree), the AppArmor label from the file
    /// `label`.
    pub fn read_in(proc_sys: &Path, label: &Path) -> Self {
        let num = |rel: &str| {
            fs::read_to_string(proc_sys.join(rel))
                .ok()
                .and_then(|v| v.trim().parse().ok())
        };
        UsernsSwitches {
            max_user_namespaces: num("user/max_user_namespaces"),
            unprivileged_userns_clone: num("kernel/unprivileged_userns_clone"),
            apparmor_restrict_unprivileged_userns: num(
                "kernel/apparmor_restrict_unprivileged_userns",
            ),
            apparmor_label: fs::read_to_string(label)
                .ok()
                .map(|l| l.trim_end_matches(['\n', '\0']).to_owned())
                .filter(|l| !l.is_empty()),
        }
    }

    /// The switch set here that stops a caller of effective uid `euid` from making a user
    /// namespace it can use, the one that stops everyone first; `None` when none does (a
    /// refusal then has another cause: a seccomp filter around the runtime, an LSM rule of
    /// another kind). Root is not held by the two switches for unprivileged callers, nor a
    /// process under an AppArmor profile by AppArmor's switch (for unconfined programs: the
    /// profile decides; a refusal there is not the switch's, and loading the profile shipped is
    /// no way out of it — review-170).
    pub fn restriction(&self, euid: u32) -> Option<UsernsSwitch> {
        if self.max_user_namespaces == Some(0) {
            return Some(UsernsSwitch::MaxUserNamespaces);
        }
        if euid == 0 {
            return None;
        }
        if self.unprivileged_userns_clone == Some(0) {
            return Some(UsernsSwitch::UnprivilegedUsernsClone);
        }
        if self.apparmor_restrict_unprivileged_userns == Some(1)
            && self
                .apparmor_label
                .as_deref()
                .is_none_or(|l| l == "unconfined")
        {
            return Some(UsernsSwitch::AppArmorRestrict);
        }
        None
    }
}

impl UsernsSwitch {
    /// The sysctl's name.
    pub fn sysctl(self) -> &'static str {
        match self {
            UsernsSwitch::MaxUserNamespaces => "user.max_user_namespaces",
            UsernsSwitch::UnprivilegedUsernsClone => "kernel.unprivileged_userns_clone",
            UsernsSwitch::AppArmorRestrict => "kernel.apparmor_restrict_unprivileged_userns",
        }
    }

    /// What it does to this caller, for an error's cause.
    pub fn why(self) -> &'static str {
        match self {
            UsernsSwitch::MaxUserNamespaces => {
                "sysctl user.max_user_namespaces is 0 (set so, as RHEL-like hosts do to turn user \
                 namespaces off, or by a kernel command line's sysctl.user.max_user_namespaces=0): \
                 no user namespace may be made here, by root either"
            }
            UsernsSwitch::UnprivilegedUsernsClone => {
                "sysctl kernel.unprivileged_userns_clone is 0 (Debian's switch): only root may \
                 make a user namespace"
            }
            UsernsSwitch::AppArmorRestrict => {
                "sysctl kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and \
                 later): an unprivileged program without an AppArmor profile granting `userns` \
                 gets a user namespace without capabilities, in which the sandbox's mount \
                 namespace and mounts are refused"
            }
        }
    }

    /// The way out, for an error's hint.
    pub fn way_out(self) -> &'static str {
        match self {
            UsernsSwitch::MaxUserNamespaces => {
                "allow user namespaces on this host: `sysctl -w user.max_user_namespaces=15000` \
                 (and a file in /etc/sysctl.d to keep it; or remove \
                 sysctl.user.max_user_namespaces=0 from the kernel command line); the sandbox is \
                 built in them and no policy lets them go (docs/sandbox.md \"Hosts that restrict \
                 user namespaces\")"
            }
            UsernsSwitch::UnprivilegedUsernsClone => {
                "run through stockade.service (root), or allow unprivileged user namespaces: \
                 `sysctl -w kernel.unprivileged_userns_clone=1` (and a file in /etc/sysctl.d to \
                 keep it) (docs/sandbox.md \"Hosts that restrict user namespaces\")"
            }
            UsernsSwitch::AppArmorRestrict => {
                "load the AppArmor profile that grants `userns` to /usr/bin/stockade, as \
                 Ubuntu's bwrap profile does for bwrap: `cp \
                 /usr/share/stockade/apparmor/stockade /etc/apparmor.d/ && apparmor_parser -r \
                 /etc/apparmor.d/stockade`; or run through stockade.service (root); or \
                 `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (for every program) \
                 (docs/sandbox.md \"Hosts that restrict user namespaces\")"
            }
        }
    }
}

/// Landlock on this host.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockFacts {
    /// The ABI the kernel offers (0: none).
    pub abi: u32,
    /// Whether `landlock` is in the active LSM list (`None`: securityfs not mounted or
    /// unreadable here).
    pub in_lsm_list: Option<bool>,
    /// Why the ABI is 0, when the kernel said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// User namespaces for this caller.
#[derive(Debug, Clone, Serialize)]
pub struct UsernsFacts {
    /// Whether this caller could make the sandbox's user, pid and mount namespaces (one clone,
    /// as the launch makes them).
    pub creatable: bool,
    /// The clone's error when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The switch that stops this caller ([`UsernsSwitches::restriction`]), by its sysctl.
    pub restricted_by: Option<&'static str>,
    /// The way out, when a switch stops this caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub way_out: Option<&'static str>,
    /// The switches as read.
    pub switches: UsernsSwitches,
}

/// seccomp on this host.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompFacts {
    /// Whether the kernel takes seccomp filters (`kernel/seccomp/actions_avail` exists).
    pub filter: bool,
    /// The filter actions it offers.
    pub actions: Vec<String>,
}

/// The cgroup controllers the launch uses, offered to this process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Controllers {
    /// memory
    pub memory: bool,
    /// cpu
    pub cpu: bool,
    /// pids
    pub pids: bool,
}

/// cgroups on this host, for this process.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupFacts {
    /// `v2` (unified), `hybrid` (the controllers on v1, a v2 `unified` beside them), `v1` or
    /// `none`.
    pub mode: &'static str,
    /// The controllers a group below this process's own would get ([`cgroup::detect`]: on v1
    /// each controller's own hierarchy; on v2 the own group's `cgroup.controllers`).
    pub controllers: Controllers,
    /// This process's own cgroup directory (v2) or memory's (v1), below which the launch makes
    /// its groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::output::opt_path_text")]
    pub own: Option<PathBuf>,
    /// Whether this process may make a group below `own` (`access(W_OK)`: root's, or delegated
    /// to this user); `None` without one.
    pub writable: Option<bool>,
    /// Why no layout was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the kernel accounts swap in the groups the launch makes (v1: the memory group's
    /// `memory.memsw.limit_in_bytes`; v2: `memory.swap.max` in this process's own group);
    /// `None` where that cannot be told (v2's root group, memory not offered to it). Without it
    /// a `swap_max` is not applied (`cgroup_partial`).
    pub swap_accounting: Option<bool>,
    /// On a v1 layout, the memory group's files the launch's limits depend on (the launch's
    /// own reading, [`cgroup::V1MemoryFiles`]).
    #[serde(skip)]
    pub v1_files: Option<cgroup::V1MemoryFiles>,
}

/// Everything above.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    /// Landlock.
    pub landlock: LandlockFacts,
    /// User namespaces.
    pub user_namespaces: UsernsFacts,
    /// seccomp.
    pub seccomp: SeccompFacts,
    /// cgroups.
    pub cgroup: CgroupFacts,
}

impl HostFacts {
    /// This host's facts, for a caller of effective uid `euid`. Clones a child to try the
    /// namespaces: the caller must be single-threaded.
    pub fn read(euid: u32) -> Self {
        let landlock = {
            let lsm = fs::read_to_string(Path::new(SECURITYFS).join("lsm")).ok();
            let (abi, unavailable) = match crate::sys::landlock_abi() {
                Ok(abi) => (abi, None),
                Err(e) => (0, Some(landlock_unavailable(&e))),
            };
            LandlockFacts {
                abi,
                in_lsm_list: lsm.map(|l| lsm_has(&l, "landlock")),
                unavailable,
            }
        };
        let probe = crate::sys::probe_clone(CLONE_FLAGS);
        HostFacts {
            landlock,
            user_namespaces: userns_facts(probe, UsernsSwitches::read(), euid),
            seccomp: seccomp_in(Path::new(PROC_SYS)),
            cgroup: cgroup_facts(
                cgroup::detect(),
                &cgroup::read_mountinfo().unwrap_or_default(),
            ),
        }
    }
}

fn landlock_unavailable(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel is built without Landlock".into(),
        Some(libc::EOPNOTSUPP) => {
            "this kernel has Landlock but it is left out of the boot's `lsm=` list".into()
        }
        _ => e.to_string(),
    }
}

/// Whether the comma-separated LSM list `list` names `lsm`.
fn lsm_has(list: &str, lsm: &str) -> bool {
    list.trim().split(',').any(|l| l == lsm)
}

/// [`UsernsFacts`] of a clone's result and the switches.
pub fn userns_facts(probe: io::Result<()>, switches: UsernsSwitches, euid: u32) -> UsernsFacts {
    let (creatable, error) = match probe {
        Ok(()) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    // A switch is named only when it is why the clone failed: a caller it does not hold (root
    // under AppArmor's rule) is not said to be restricted.
    let switch = (!creatable).then(|| switches.restriction(euid)).flatten();
    UsernsFacts {
        creatable,
        error,
        restricted_by: switch.map(UsernsSwitch::sysctl),
        way_out: switch.map(UsernsSwitch::way_out),
        switches,
    }
}

/// [`SeccompFacts`] under `proc_sys`.
pub fn seccomp_in(proc_sys: &Path) -> SeccompFacts {
    match fs::read_to_string(proc_sys.join("kernel/seccomp/actions_avail")) {
        Ok(a) => SeccompFacts {
            filter: true,
            actions: a.split_whitespace().map(str::to_owned).collect(),
        },
        Err(_) => SeccompFacts {
            filter: false,
            actions: Vec::new(),
        },
    }
}

/// [`CgroupFacts`] of the launch's [`cgroup::detect`] and `/proc/self/mountinfo`'s text.
pub fn cgroup_facts(layout: Result<Layout, cgroup::CgroupError>, mountinfo: &str) -> CgroupFacts {
    let mode = match cgroup::host_mode_in(mountinfo) {
        HostMode::V2 => "v2",
        HostMode::V1 if has_cgroup2(mountinfo) => "hybrid",
        HostMode::V1 => "v1",
        HostMode::None => "none",
    };
    match layout {
        Ok(Layout::V1 { memory, pids, cpu }) => {
            let files = memory.as_deref().map(cgroup::V1MemoryFiles::of);
            CgroupFacts {
                mode,
                controllers: Controllers {
                    memory: memory.is_some(),
                    cpu: cpu.is_some(),
                    pids: pids.is_some(),
                },
                writable: memory.as_deref().map(writable),
                own: memory,
                error: None,
                swap_accounting: files.map(|f| f.memsw),
                // Without a memory group the whole group fails first: its files are moot.
                v1_files: Some(files.unwrap_or(cgroup::V1MemoryFiles {
                    memsw: true,
                    oom_control: true,
                })),
            }
        }
        Ok(Layout::V2 { own }) => {
            let offered = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
            let has = |c| offered.split_whitespace().any(|o| o == c);
            // A group's `memory.swap.max` is there with swap accounting once its parent
            // enabled memory for it (then listed in its `cgroup.controllers`); the root group
            // has none either way.
            let swap_accounting = (has("memory") && own != Path::new(cgroup::CGROUP_ROOT))
                .then(|| own.join("memory.swap.max").exists());
            CgroupFacts {
                mode,
                controllers: Controllers {
                    memory: has("memory"),
                    cpu: has("cpu"),
                    pids: has("pids"),
                },
                writable: Some(writable(&own)),
                swap_accounting,
                own: Some(own),
                error: None,
                v1_files: None,
            }
        }
        Err(e) => CgroupFacts {
            mode,
            controllers: Controllers::default(),
            own: None,
            writable: None,
            error: Some(crate::package::verify::error_chain(&e)),
            swap_accounting: None,
            v1_files: None,
        },
    }
}

/// Whether this process may create entries in `dir`.
fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Whether a cgroup2 filesystem is mounted anywhere (mountinfo's filesystem type field).
fn has_cgroup2(mountinfo: &str) -> bool {
    mountinfo.lines().any(|line| {
        line.split_once(" - ")
            .and_then(|(_, post)| post.split(' ').next())
            == Some("cgroup2")
    })
}

/// What a launch of a policy would do with one layer here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// In force as the policy asks.
    Enforced,
    /// Less than the policy asks, which it allows (the degradation named).
    Degraded,
    /// Less than the policy asks, which it does not allow: the launch stops (125
    /// `layer_unavailable`).
    Refused,
}

/// One layer's predicted outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LayerOutcome {
    /// The layer, by the launch report's name.
    pub layer: &'static str,
    /// What a launch would do with it.
    pub outcome: Outcome,
    /// The `allow_degraded` name that governs it, when it is not enforced (`None` for a base
    /// no policy lets go: the namespaces, seccomp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degradation: Option<&'static str>,
    /// Why, when it is not enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LayerOutcome {
    fn enforced(layer: &'static str) -> Self {
        LayerOutcome {
            layer,
            outcome: Outcome::Enforced,
            degradation: None,
            reason: None,
        }
    }
}

/// Which layers a launch of `policy` by a caller in `rootless` mode would enforce, degrade or
/// refuse on a host of `facts`.
pub fn predict(
    policy: &ValidatedSandboxPolicy,
    rootless: bool,
    facts: &HostFacts,
) -> Vec<LayerOutcome> {
    let mut out = Vec::new();
    let lacking = |layer, d: Option<Degradation>, reason: String| LayerOutcome {
        layer,
        outcome: match d {
            Some(d) if policy.allows(d, rootless) => Outcome::Degraded,
            _ => Outcome::Refused,
        },
        degradation: d.map(Degradation::as_str),
        reason: Some(reason),
    };
    out.push(if facts.user_namespaces.creatable {
        LayerOutcome::enforced("user_namespace")
    } else {
        let why = facts.user_namespaces.restricted_by.map_or_else(
            || facts.user_namespaces.error.clone().unwrap_or_default(),
            |s| format!("{s} stops this caller"),
        );
        lacking("user_namespace", None, why)
    });
    out.push(if rootless {
        lacking(
            "distinct_uid",
            Some(Degradation::DistinctUid),
            "not root: the plugin runs as the caller's own host uid".into(),
        )
    } else {
        LayerOutcome::enforced("distinct_uid")
    });
    // As the launch decides: a missing memory or pids controller (or any on v1, where each is a
    // hierarchy of its own) fails the whole group (`cgroup`); cpu not offered on v2 leaves only
    // `cpu_max` unapplied (`cgroup_partial`), and nothing when the policy sets no CPU quota.
    let c = &facts.cgroup.controllers;
    // The layout the launch uses (a hybrid host may keep every controller on v2).
    let v1 = facts.cgroup.v1_files.is_some();
    let missing = |names: &[(&'static str, bool)]| -> Vec<&'static str> {
        names
            .iter()
            .filter(|(_, has)| !has)
            .map(|(n, _)| *n)
            .collect()
    };
    let whole = missing(&[("memory", c.memory), ("pids", c.pids)]);
    let cpu_quota = policy
        .resources
        .cpu_max
        .quota_us(stockade_policy::sandbox::units::CPU_PERIOD_US)
        .is_some();
    // The limits the group would not take (`cgroup_partial`), by the launch's own decision
    // (review-170: on v1 a `swap_max` without `memory_max` — the default policy's 0 under
    // `memory_max = "unlimited"` — or without swap accounting was predicted enforced).
    let mut partial = Vec::new();
    if !v1 && !c.cpu && cpu_quota {
        partial.push("cpu_max (the cpu controller is not offered here)".to_owned());
    }
    match facts.cgroup.v1_files {
        Some(files) => partial.extend(cgroup::v1_not_applied(&policy.resources, files)),
        None => partial.extend(cgroup::v2_swap_not_applied(
            &policy.resources,
            facts.cgroup.swap_accounting.unwrap_or(true),
        )),
    }
    out.push(match &facts.cgroup.error {
        Some(e) => lacking("cgroup", Some(Degradation::Cgroup), e.clone()),
        None if facts.cgroup.writable == Some(false) => lacking(
            "cgroup",
            Some(Degradation::Cgroup),
            "this caller may not make a group below its own (not delegated to it)".into(),
        ),
        None if !whole.is_empty() || (v1 && !c.cpu) => {
            let mut all = whole;
            if !c.cpu {
                all.push("cpu");
            }
            lacking(
                "cgroup",
                Some(Degradation::Cgroup),
                format!("controllers not offered here: {}", all.join(", ")),
            )
        }
        None if !partial.is_empty() => lacking(
            "cgroup",
            Some(Degradation::CgroupPartial),
            format!("limits not applicable here: {}", partial.join("; ")),
        ),
        None => LayerOutcome::enforced("cgroup"),
    });
    out.push(if facts.seccomp.filter {
        LayerOutcome::enforced("seccomp")
    } else {
        lacking(
            "seccomp",
            None,
            "this kernel takes no seccomp filter".into(),
        )
    });
    // The launch's own decision, on the ABI it would get (the crate's `effective_abi`: the
    // kernel's, capped at the newest it knows, 9): the whole ruleset of the ABI requested (6) is
    // enforced only from ABI 6 on (best effort below).
    let abi = facts.landlock.abi.min(9);
    let ruleset = match abi {
        0 => LayerStatus::NotEnforced,
        1..=5 => LayerStatus::PartiallyEnforced,
        _ => LayerStatus::FullyEnforced,
    };
    match super::landlock::evaluate(policy, rootless, abi, ruleset) {
        Ok(reports) => {
            for r in reports {
                let layer = landlock_layer(&r.layer);
                out.push(if r.status == LayerStatus::FullyEnforced {
                    LayerOutcome::enforced(layer)
                } else {
                    LayerOutcome {
                        layer,
                        outcome: Outcome::Degraded,
                        degradation: Some(layer),
                        reason: r
                            .details
                            .get("reason")
                            .and_then(|v| v.as_str())
                            .map_or_else(
                                || Some(format!("kernel Landlock ABI {abi}")),
                                |s| Some(s.to_owned()),
                            ),
                    }
                });
            }
        }
        Err(e) => {
            let d = e.refused();
            out.push(LayerOutcome {
                layer: d.map_or("landlock", |d| landlock_layer(d.as_str())),
                outcome: Outcome::Refused,
                degradation: d.map(Degradation::as_str),
                reason: Some(crate::package::verify::error_chain(&e)),
            });
        }
    }
    out
}

/// The launch report's Landlock layer names, as `'static`.
fn landlock_layer(name: &str) -> &'static str {
    match name {
        "landlock_network" => "landlock_network",
        "landlock_scope" => "landlock_scope",
        _ => "landlock",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::parse_policy;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (rel, v) in files {
            let p = t.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, v).unwrap();
        }
        t
    }

    /// Each host's switch is read from a fake /proc/sys and named for the caller it stops:
    /// RHEL's `user.max_user_namespaces = 0` for everyone, Debian's and Ubuntu's rules only for
    /// a caller other than root.
    #[test]
    fn each_hosts_switch_is_read_and_named_for_the_callers_it_stops() {
        for (files, user, root) in [
            (
                vec![("user/max_user_namespaces", "0\n")],
                Some(UsernsSwitch::MaxUserNamespaces),
                Some(UsernsSwitch::MaxUserNamespaces),
            ),
            (
                vec![
                    ("user/max_user_namespaces", "63000\n"),
                    ("kernel/unprivileged_userns_clone", "0\n"),
                ],
                Some(UsernsSwitch::UnprivilegedUsernsClone),
                None,
            ),
            (
                vec![
                    ("user/max_user_namespaces", "63000\n"),
                    ("kernel/unprivileged_userns_clone", "1\n"),
                    ("kernel/apparmor_restrict_unprivileged_userns", "1\n"),
                ],
                Some(UsernsSwitch::AppArmorRestrict),
                None,
            ),
            (
                vec![
                    ("user/max_user_namespaces", "63000\n"),
                    ("kernel/apparmor_restrict_unprivileged_userns", "0\n"),
                ],
                None,
                None,
            ),
            (vec![], None, None),
        ] {
            let t = tree(&files);
            let s = UsernsSwitches::read_in(t.path(), &t.path().join("no-label"));
            assert_eq!(s.restriction(1000), user, "{files:?}");
            assert_eq!(s.restriction(0), root, "{files:?}");
        }
        let t = tree(&[("kernel/apparmor_restrict_unprivileged_userns", "1\n")]);
        let s = UsernsSwitches::read_in(t.path(), &t.path().join("no-label"));
        assert_eq!(s.apparmor_restrict_unprivileged_userns, Some(1));
        assert_eq!(s.max_user_namespaces, None);
        for sw in [
            UsernsSwitch::MaxUserNamespaces,
            UsernsSwitch::UnprivilegedUsernsClone,
            UsernsSwitch::AppArmorRestrict,
        ] {
            assert!(sw.why().contains(sw.sysctl()), "{sw:?}");
            assert!(sw.way_out().contains(sw.sysctl()), "{sw:?}");
        }
        assert!(UsernsSwitch::AppArmorRestrict
            .way_out()
            .contains("/usr/share/stockade/apparmor/stockade"));
    }

    /// A switch is named only when the clone failed: root under Ubuntu's rule makes its
    /// namespaces and is not said to be restricted.
    #[test]
    fn a_switch_is_named_only_when_the_clone_failed() {
        let t = tree(&[("kernel/apparmor_restrict_unprivileged_userns", "1\n")]);
        let s = UsernsSwitches::read_in(t.path(), &t.path().join("no-label"));
        let f = userns_facts(Ok(()), s.clone(), 1000);
        assert!(f.creatable && f.restricted_by.is_none());
        let f = userns_facts(Err(io::Error::from_raw_os_error(libc::EPERM)), s, 1000);
        assert!(!f.creatable);
        assert_eq!(
            f.restricted_by,
            Some("kernel.apparmor_restrict_unprivileged_userns")
        );
    }

    #[test]
    fn seccomp_and_the_lsm_list_are_read() {
        let t = tree(&[(
            "kernel/seccomp/actions_avail",
            "kill_process kill_thread trap errno user_notif trace log allow\n",
        )]);
        let s = seccomp_in(t.path());
        assert!(s.filter && s.actions.iter().any(|a| a == "kill_process"));
        let none = tree(&[]);
        assert!(!seccomp_in(none.path()).filter);
        assert!(lsm_has("lockdown,capability,landlock,yama\n", "landlock"));
        assert!(!lsm_has("lockdown,capability,yama\n", "landlock"));
        assert_eq!(
            landlock_unavailable(&io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
            "this kernel has Landlock but it is left out of the boot's `lsm=` list"
        );
    }

    /// The mode tells hybrid (v1 controllers, a v2 `unified` beside them) from v1 and v2.
    #[test]
    fn the_cgroup_mode_tells_hybrid_from_v1() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let hybrid = format!("{v1}32 30 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        let v2 = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let layout = || {
            Ok(Layout::V1 {
                memory: Some("/sys/fs/cgroup/memory/x".into()),
                pids: None,
                cpu: Some("/sys/fs/cgroup/cpu/x".into()),
            })
        };
        let f = cgroup_facts(layout(), v1);
        assert_eq!(f.mode, "v1");
        assert!(f.controllers.memory && f.controllers.cpu && !f.controllers.pids);
        assert_eq!(cgroup_facts(layout(), &hybrid).mode, "hybrid");
        assert_eq!(cgroup_facts(layout(), v2).mode, "v2");
        assert_eq!(cgroup_facts(layout(), "").mode, "none");
    }

    fn facts(creatable: bool, abi: u32, pids: bool) -> HostFacts {
        HostFacts {
            landlock: LandlockFacts {
                abi,
                in_lsm_list: Some(abi > 0),
                unavailable: None,
            },
            user_namespaces: UsernsFacts {
                creatable,
                error: None,
                restricted_by: (!creatable).then_some("user.max_user_namespaces"),
                way_out: None,
                switches: UsernsSwitches::default(),
            },
            seccomp: SeccompFacts {
                filter: true,
                actions: vec![],
            },
            cgroup: CgroupFacts {
                mode: "v2",
                controllers: Controllers {
                    memory: true,
                    cpu: true,
                    pids,
                },
                own: None,
                writable: Some(true),
                error: None,
                swap_accounting: Some(true),
                v1_files: None,
            },
        }
    }

    fn outcome<'a>(v: &'a [LayerOutcome], layer: &str) -> &'a LayerOutcome {
        v.iter()
            .find(|o| o.layer == layer)
            .unwrap_or_else(|| panic!("{layer}: {v:?}"))
    }

    /// The prediction uses the launch's names and its decision: a degradation the policy
    /// allows is `degraded` (named as in `allow_degraded`), one it does not is `refused`, and
    /// the namespaces no policy lets go are refused without a degradation.
    #[test]
    fn the_prediction_says_each_layer_by_the_launchs_names() {
        let strict = parse_policy(
            "version = 1\n[layers]\nmin_landlock_abi = 6\nallow_degraded = []\n\
             allow_degraded_rootless = []\n",
        )
        .unwrap();
        let v = predict(&strict, false, &facts(true, 6, true));
        assert!(v.iter().all(|o| o.outcome == Outcome::Enforced), "{v:?}");
        let v = predict(&strict, true, &facts(true, 3, false));
        let d = outcome(&v, "distinct_uid");
        assert_eq!(
            (d.outcome, d.degradation),
            (Outcome::Refused, Some("distinct_uid"))
        );
        // No pids controller: the whole group fails, as the launch's does (`cgroup`).
        let c = outcome(&v, "cgroup");
        assert_eq!(
            (c.outcome, c.degradation),
            (Outcome::Refused, Some("cgroup"))
        );
        let l = outcome(&v, "landlock");
        assert_eq!(
            (l.outcome, l.degradation),
            (Outcome::Refused, Some("landlock"))
        );

        let lenient = parse_policy(
            "version = 1\n[layers]\nmin_landlock_abi = 6\nallow_degraded = [\"landlock\", \
             \"landlock_network\", \"landlock_scope\", \"cgroup\", \"distinct_uid\"]\n",
        )
        .unwrap();
        let v = predict(&lenient, true, &facts(false, 3, false));
        let u = outcome(&v, "user_namespace");
        assert_eq!((u.outcome, u.degradation), (Outcome::Refused, None));
        for layer in ["distinct_uid", "cgroup", "landlock", "landlock_scope"] {
            assert_eq!(
                outcome(&v, layer).outcome,
                Outcome::Degraded,
                "{layer}: {v:?}"
            );
        }
        assert_eq!(outcome(&v, "cgroup").degradation, Some("cgroup"));
        // cpu not offered on v2: only a CPU quota is lost (`cgroup_partial`), nothing without
        // one; on v1 (a hierarchy of its own) the whole group.
        let mut f = facts(true, 6, true);
        f.cgroup.controllers.cpu = false;
        let quota = parse_policy(
            "version = 1\n[layers]\nallow_degraded = []\n[resources]\ncpu_max = \"50%\"\n",
        )
        .unwrap();
        let c = outcome(&predict(&quota, false, &f), "cgroup").clone();
        assert_eq!(
            (c.outcome, c.degradation),
            (Outcome::Refused, Some("cgroup_partial"))
        );
        let no_quota = parse_policy(
            "version = 1\n[layers]\nallow_degraded = []\n[resources]\ncpu_max = \"unlimited\"\n",
        )
        .unwrap();
        assert_eq!(
            outcome(&predict(&no_quota, false, &f), "cgroup").outcome,
            Outcome::Enforced
        );
        f.cgroup.mode = "hybrid";
        f.cgroup.v1_files = Some(cgroup::V1MemoryFiles {
            memsw: true,
            oom_control: true,
        });
        let c = outcome(&predict(&no_quota, false, &f), "cgroup").clone();
        assert_eq!(
            (c.outcome, c.degradation),
            (Outcome::Refused, Some("cgroup"))
        );
        // v2 cpu not offered with a quota: `cgroup_partial`, as before.
        let mut f = facts(true, 6, true);
        f.cgroup.controllers.cpu = false;
        let c = outcome(&predict(&quota, false, &f), "cgroup").clone();
        assert!(c.reason.unwrap().contains("cpu_max"));
        // A group this caller may not make below its own (not delegated): `cgroup`.
        let mut f = facts(true, 6, true);
        f.cgroup.writable = Some(false);
        let c = outcome(&predict(&strict, true, &f), "cgroup").clone();
        assert_eq!(
            (c.outcome, c.degradation),
            (Outcome::Refused, Some("cgroup"))
        );
        let c = outcome(&predict(&lenient, true, &f), "cgroup").clone();
        assert_eq!(
            (c.outcome, c.degradation),
            (Outcome::Degraded, Some("cgroup"))
        );
    }
    /// review-170: the limits a group would not take are predicted by the launch's own
    /// decision ([`cgroup::v1_not_applied`], [`cgroup::v2_swap_not_applied`]): on v1 a
    /// `swap_max` (the default 0) with `memory_max = "unlimited"`, or any without swap
    /// accounting, is `cgroup_partial`, refused unless allowed — the launch's 125 — where the
    /// prediction said `enforced`; on v2 a group without `memory.swap.max` likewise, and nothing
    /// where it cannot be told.
    #[test]
    fn the_limits_a_group_would_not_take_are_predicted_as_the_launch_decides() {
        let policy = |text: &str| parse_policy(&format!("version = 1\n{text}")).unwrap();
        let unlimited = policy("[resources]\nmemory_max = \"unlimited\"\n");
        let limited = policy("[resources]\nmemory_max = \"256M\"\n");
        let no_swap_limit =
            policy("[resources]\nmemory_max = \"unlimited\"\nswap_max = \"unlimited\"\n");
        let allowed = policy(
            "[resources]\nmemory_max = \"unlimited\"\n[layers]\nallow_degraded = [\"cgroup_partial\"]\n",
        );
        let v1 = |memsw: bool| {
            let mut f = facts(true, 6, true);
            f.cgroup.mode = "hybrid";
            f.cgroup.v1_files = Some(cgroup::V1MemoryFiles {
                memsw,
                oom_control: true,
            });
            f.cgroup.swap_accounting = Some(memsw);
            f
        };
        let cg = |p: &ValidatedSandboxPolicy, f: &HostFacts| {
            let o = outcome(&predict(p, false, f), "cgroup").clone();
            (o.outcome, o.degradation, o.reason.unwrap_or_default())
        };
        let (o, d, why) = cg(&unlimited, &v1(true));
        assert_eq!((o, d), (Outcome::Refused, Some("cgroup_partial")), "{why}");
        assert!(why.contains("only together with memory_max"), "{why}");
        assert_eq!(cg(&limited, &v1(true)).0, Outcome::Enforced);
        let (o, d, why) = cg(&limited, &v1(false));
        assert_eq!((o, d), (Outcome::Refused, Some("cgroup_partial")), "{why}");
        assert!(why.contains("no swap accounting"), "{why}");
        assert_eq!(cg(&no_swap_limit, &v1(false)).0, Outcome::Enforced);
        assert_eq!(
            cg(&allowed, &v1(true)).0,
            Outcome::Degraded,
            "allowed: degraded"
        );
        // v2: no memory.swap.max is `cgroup_partial`; unknown (the root group) is not said.
        let mut f = facts(true, 6, true);
        assert_eq!(cg(&limited, &f).0, Outcome::Enforced);
        f.cgroup.swap_accounting = Some(false);
        let (o, d, why) = cg(&limited, &f);
        assert_eq!((o, d), (Outcome::Refused, Some("cgroup_partial")), "{why}");
        assert!(why.contains("memory.swap.max"), "{why}");
        f.cgroup.swap_accounting = None;
        assert_eq!(cg(&limited, &f).0, Outcome::Enforced);
    }
}
