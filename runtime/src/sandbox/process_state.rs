//! What the program's process starts with besides the layers: state every process inherits
//! through fork and exec, which would otherwise be whatever the runtime's caller — a shell, a
//! unit with `OOMScoreAdjust=`/`Nice=`/`CPUSchedulingPolicy=`/`IOSchedulingClass=`, `choom`,
//! `nice`, `chrt`, `ionice` — chose.
//! The init sets it to the runtime's own values before the program is started, so that `exec`,
//! `run`, `serve` and the warm pool's spares (built by the same init under the policy they will
//! serve) all start their program the same way. Here: `oom_score_adj`, the nice value, a
//! real-time scheduling policy and I/O class, KSM's merging of every page, the timer slack
//! ([`apply`], first
//! thing after the go — but a
//! real-time policy, which the launch has the child leave before it joins its cgroup: the cpu
//! controller refuses a real-time task a group without a real-time budget); in `child.rs`: the umask
//! and the personality flags; in `rlimits.rs`: every rlimit no policy key names
//! ([`super::rlimits::fixed`]). The report's `process_state` layer shows the values, with the
//! inherited ones they replaced.
//!
//! ## The values, and why
//! - `oom_score_adj`: at least 0. A negative one (a daemon's `OOMScoreAdjust=-900`) would shield
//!   every plugin from the global OOM killer: a plugin must never be harder to kill than an
//!   ordinary process. A positive one is kept: a plugin more killable than the default harms no
//!   one (under a daemon at +300, a plugin at 0 would be spared by the OOM killer in favour of
//!   the daemon, whose death takes it along anyway: parent-death signal), and a *fixed* 0 could
//!   not be set where the caller's is above 0 — lowering below the floor a privileged writer left
//!   (`oom_score_adj_min`: systemd's `user@.service` sets 100 for every process of a login) is
//!   refused to a process without `CAP_SYS_RESOURCE` in the host's user namespace, which the
//!   init never has, root mode included; raising (to at least that floor) needs no privilege.
//! - nice: at least 0. A negative one (a daemon at nice -10) would give every plugin more CPU
//!   than the host's other processes, which no cpu cgroup bounds in rootless mode; a positive one
//!   (less CPU) is kept — lowering it needs `CAP_SYS_NICE`, which the init has not, and
//!   `RLIMIT_NICE` = 0 (rlimits.rs) keeps the program from lowering it itself.
//! - scheduling policy: `SCHED_FIFO`/`SCHED_RR` (a daemon's `CPUSchedulingPolicy=fifo`,
//!   `chrt -f`) become `SCHED_OTHER`: a real-time plugin could starve the host's processes, and
//!   `RLIMIT_RTPRIO` = 0 only keeps it from *asking* for one. `SCHED_BATCH`/`SCHED_IDLE` are
//!   kept, as a positive nice is (less CPU; leaving `SCHED_IDLE` would need `RLIMIT_NICE` or
//!   `CAP_SYS_NICE`). A `SCHED_DEADLINE` runtime cannot fork a sandbox at all.
//! - I/O priority: the real-time class (a daemon's `IOSchedulingClass=realtime`, `ionice -c1`),
//!   which puts a plugin's disk I/O ahead of every other process's, becomes "none" (derived from
//!   the nice value: the kernel's default); best-effort levels and the idle class are kept.
//! - KSM merging every page (`PR_SET_MEMORY_MERGE`, Linux 6.4; a unit's `MemoryKSM=yes`): off.
//!   The flag survives fork and exec, so every plugin's memory would be offered to the kernel's
//!   same-page merging unasked, where a co-resident process — another plugin, which may itself
//!   `madvise(MADV_MERGEABLE)` its pages — learns by the timing of a write (a merged page is
//!   copied first) whether it holds a page identical to the plugin's: a key, a token, a file.
//!   A plugin that wants merging asks for it itself (`prctl` and `madvise` are allowed); the
//!   runtime's caller does not decide it. Cleared on the init's memory, which the program shares
//!   until its exec and whose flag the exec hands on.
//! - Timer slack (`PR_SET_TIMERSLACK`, a unit's `TimerSlackNSec=`): the kernel's default, 50 µs.
//!   Kept across fork and exec, and copied at fork as the child's *default* too (what its own
//!   `PR_SET_TIMERSLACK` 0 returns to): the caller chose how late the plugin's timers fire.
//!   Set on the init, whose program is forked from it: its slack and its default both. The
//!   runtime sets its own first ([`adopt_kernel_timer_slack`], from `main`), so the init
//!   normally finds the default already; its reset stays, for a library caller and a refused
//!   set.
//!
//! No policy key sets any of them: they are floors the runtime keeps for the host's sake, not a
//! plugin's resources (memory, CPU and processes are the cgroup's and the rlimits' keys).
//!
//! ## Fail closed
//! A value that cannot be set stops the launch at `process_state` (125, `sandbox_setup`). Only
//! calls that change something are made: the current values are read from `/proc/self`, which no
//! seccomp filter of the caller's can refuse (the I/O priority, which no file shows, with
//! `ioprio_get`, which systemd's `@system-service` allows), and `setpriority`,
//! `sched_setscheduler`, `ioprio_set` — which `stockade.service` refuses with its
//! `SystemCallFilter=~@resources` — are called only for a negative nice value or a real-time
//! policy or I/O class, which that unit does not give the daemon. KSM merging is read and
//! cleared with `prctl`, in `@system-service`; a kernel before 6.4, which has no such flag,
//! answers the read EINVAL, taken as off. The timer slack too is read and set with `prctl`.
//!
//! `oom_score_adj` is written before the init stops being dumpable and before it changes its
//! ids: from then on its `/proc/self` files are root's, which it could no longer write.

use crate::sys;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// `SCHED_RESET_ON_FORK`, or-ed into a policy (`sched_getscheduler`; not in `/proc/self/stat`).
const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;

/// The inherited value, and the one the program starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<T> {
    /// The runtime's (and so the init's, until now).
    pub inherited: T,
    /// The program's.
    pub set: T,
}

/// What [`apply`] found and set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessState {
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Change<i32>,
    /// The nice value.
    pub nice: Change<i32>,
    /// The scheduling policy (`SCHED_*`).
    pub policy: Change<i32>,
    /// The I/O priority (`class << 13 | level`).
    pub io: Change<i32>,
    /// KSM merging every anonymous page (`PR_GET_MEMORY_MERGE`).
    pub memory_merge: Change<bool>,
    /// The timer slack in nanoseconds (`PR_GET_TIMERSLACK`).
    pub timer_slack_ns: Change<u64>,
}

/// The timer slack the program starts with, and returns to with `PR_SET_TIMERSLACK` 0: the
/// kernel's own default (`init_task`'s 50 µs), not the runtime's caller's.
pub const TIMER_SLACK_NS: u64 = 50_000;

/// The caller's timer slack, read by [`adopt_kernel_timer_slack`] before the runtime set its own;
/// 0 where it was not (a library caller, or a real-time runtime: its slack reads 0 and cannot be
/// set, Linux 6.9+), and the init reads its own after leaving the policy. The init forked from
/// the runtime has a copy.
static CALLER_TIMER_SLACK_NS: AtomicU64 = AtomicU64::new(0);

/// The runtime's own timer slack set to the kernel's default ([`TIMER_SLACK_NS`]), the caller's
/// remembered for the report's `timer_slack_ns_inherited`: the `stockade` binary's first step,
/// before any thread (which would start with the caller's). The runtime's waits are short
/// sleeps in polling loops (a child's exit, a cgroup emptying, the log queue draining), each
/// late by up to the slack: under a caller's 2 s every `exec` took 2 s, under 2^63 ns it never
/// returned. An error leaves the slack as it was (only a caller's seccomp filter can refuse
/// `prctl`); a launch then stops at `process_state`, which sets it again.
pub fn adopt_kernel_timer_slack() -> std::io::Result<()> {
    let caller = sys::timer_slack();
    if caller == 0 || caller == TIMER_SLACK_NS {
        return Ok(());
    }
    sys::set_timer_slack(TIMER_SLACK_NS)?;
    CALLER_TIMER_SLACK_NS.store(caller, Ordering::Relaxed);
    Ok(())
}

/// Why the inherited process state could not be replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessStateError {
    /// `/proc/self/oom_score_adj` or `/proc/self/stat` could not be read (or made no sense).
    #[error("cannot read this process's {what}")]
    Read {
        /// Which.
        what: &'static str,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// `oom_score_adj` could not be raised.
    #[error("cannot raise the inherited oom_score_adj {inherited} to {wanted}")]
    OomScoreAdj {
        /// The runtime's.
        inherited: i32,
        /// The value wanted.
        wanted: i32,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// The nice value could not be raised.
    #[error(
        "cannot raise the inherited nice value {inherited} to {wanted} (a seccomp filter \
         refusing `setpriority`, as stockade.service's SystemCallFilter=~@resources does: do \
         not give the runtime a negative Nice=)"
    )]
    Nice {
        /// The runtime's.
        inherited: i32,
        /// The value wanted.
        wanted: i32,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// The I/O priority could not be read.
    #[error("cannot read this process's I/O priority")]
    ReadIo(#[source] std::io::Error),
    /// A real-time I/O class could not be left.
    #[error(
        "cannot leave the inherited real-time I/O class (a seccomp filter refusing `ioprio_set`, \
         as stockade.service's SystemCallFilter=~@resources does: do not give the runtime \
         IOSchedulingClass=realtime)"
    )]
    IoPriority(#[source] std::io::Error),
    /// Whether KSM merges every page could not be read, or that could not be turned off.
    #[error(
        "cannot turn off KSM's merging of every page (PR_SET_MEMORY_MERGE, as systemd's \
         MemoryKSM=yes sets) inherited from the runtime's caller"
    )]
    MemoryMerge(#[source] std::io::Error),
    /// The timer slack could not be set back to the kernel's default.
    #[error(
        "cannot set the timer slack inherited from the runtime's caller (PR_SET_TIMERSLACK, \
         `prctl` or a unit's TimerSlackNSec=) back to the kernel's default of {TIMER_SLACK_NS} ns"
    )]
    TimerSlack(#[source] std::io::Error),
    /// A real-time policy could not be left.
    #[error(
        "cannot leave the inherited real-time scheduling policy {} for SCHED_OTHER (a seccomp \
         filter refusing `sched_setscheduler`, as stockade.service's \
         SystemCallFilter=~@resources does: do not give the runtime CPUSchedulingPolicy=fifo \
         or rr)",
        policy_name(*.inherited)
    )]
    Scheduling {
        /// The runtime's.
        inherited: i32,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
}

/// The program's `oom_score_adj` for an inherited one: never below 0 (see the module doc).
pub fn oom_score_adj_for(inherited: i32) -> i32 {
    inherited.max(0)
}

/// The program's nice value for an inherited one: never below 0 (see the module doc).
pub fn nice_for(inherited: i32) -> i32 {
    inherited.max(0)
}

/// The program's scheduling policy for an inherited one: a real-time one becomes
/// `SCHED_OTHER`, any other is kept (see the module doc).
pub fn policy_for(inherited: i32) -> i32 {
    match inherited & !SCHED_RESET_ON_FORK {
        libc::SCHED_FIFO | libc::SCHED_RR => libc::SCHED_OTHER,
        _ => inherited,
    }
}

/// The I/O class of a priority (`IOPRIO_PRIO_CLASS`).
fn io_class(prio: i32) -> i32 {
    (prio >> 13) & 0x7
}

/// `IOPRIO_CLASS_RT`.
const IOPRIO_CLASS_RT: i32 = 1;

/// The program's I/O priority for an inherited one: the real-time class becomes "none"
/// (0: derived from the nice value, the kernel's default), any other is kept.
pub fn io_priority_for(inherited: i32) -> i32 {
    if io_class(inherited) == IOPRIO_CLASS_RT {
        0
    } else {
        inherited
    }
}

/// An I/O priority as `ionice` shows it (`best-effort: prio 4`).
pub fn io_priority_name(prio: i32) -> String {
    let class = match io_class(prio) {
        0 => "none",
        1 => "realtime",
        2 => "best-effort",
        3 => "idle",
        _ => "unknown",
    };
    format!("{class}: prio {}", prio & 0x1fff)
}

/// A policy's kernel name, for the report and messages.
pub fn policy_name(policy: i32) -> String {
    match policy & !SCHED_RESET_ON_FORK {
        libc::SCHED_OTHER => "SCHED_OTHER".into(),
        libc::SCHED_FIFO => "SCHED_FIFO".into(),
        libc::SCHED_RR => "SCHED_RR".into(),
        libc::SCHED_BATCH => "SCHED_BATCH".into(),
        libc::SCHED_IDLE => "SCHED_IDLE".into(),
        6 => "SCHED_DEADLINE".into(),
        7 => "SCHED_EXT".into(),
        n => format!("policy {n}"),
    }
}

/// `(nice, policy)` from the text of `/proc/<pid>/stat`: fields 19 and 41 (proc(5)), counted
/// after the command name, which is in parentheses and may itself hold spaces and `)`.
pub fn nice_and_policy(stat: &str) -> Option<(i32, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let field = |n: usize| fields.get(n - 3)?.parse().ok();
    Some((field(19)?, field(41)?))
}

/// The runtime's own scheduling policy (`/proc/self/stat`), read by the launch before it
/// clones: a real-time one is left by the child before it joins its cgroup
/// ([`super::prepare`], step 7), and [`apply`] reports it as the policy inherited.
pub fn runtime_policy() -> std::io::Result<i32> {
    let stat = sys::own_stat()?;
    nice_and_policy(&stat)
        .map(|(_, policy)| policy)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, stat))
}

/// Replace the inherited `oom_score_adj`, nice value, real-time policy and I/O class, KSM's
/// merging of every page and the timer slack of this process (the
/// init, single-threaded; the program inherits them). Changes only what must change.
/// `runtime_policy`: the runtime's policy, read before the clone ([`runtime_policy`]) — a
/// real-time one was left already, before the cgroup join, and is reported as the inherited one.
pub fn apply(runtime_policy: i32) -> Result<ProcessState, ProcessStateError> {
    let read = |what| move |cause| ProcessStateError::Read { what, cause };
    let oom = sys::oom_score_adj().map_err(read("oom_score_adj"))?;
    let stat = sys::own_stat().map_err(read("/proc/self/stat"))?;
    let (nice, policy_now) = nice_and_policy(&stat).ok_or_else(|| ProcessStateError::Read {
        what: "/proc/self/stat",
        cause: std::io::Error::new(std::io::ErrorKind::InvalidData, stat.clone()),
    })?;
    let oom_score_adj = Change {
        inherited: oom,
        set: oom_score_adj_for(oom),
    };
    if oom_score_adj.set != oom {
        sys::set_oom_score_adj(oom_score_adj.set).map_err(|cause| {
            ProcessStateError::OomScoreAdj {
                inherited: oom,
                wanted: oom_score_adj.set,
                cause,
            }
        })?;
    }
    // The policy first: leaving a real-time one keeps the nice value, which comes last. A
    // real-time runtime's child left it before joining its cgroup (the cpu controller refuses a
    // real-time task a group without a real-time budget, EINVAL): left here only if it was not.
    let policy = Change {
        inherited: runtime_policy,
        set: policy_for(runtime_policy),
    };
    if policy_for(policy_now) != policy_now {
        sys::set_sched_other().map_err(|cause| ProcessStateError::Scheduling {
            inherited: policy_now,
            cause,
        })?;
    }
    // Read after the policy is left: a recent kernel reports the "none" class of a real-time
    // task as real-time (derived from its policy).
    let io = sys::io_priority().map_err(ProcessStateError::ReadIo)?;
    let io = Change {
        inherited: io,
        set: io_priority_for(io),
    };
    if io.set != io.inherited {
        sys::set_io_priority(io.set).map_err(ProcessStateError::IoPriority)?;
    }
    // Off whatever the caller chose (the module doc says why); only a flag that is on is cleared.
    let merge = sys::memory_merge().map_err(ProcessStateError::MemoryMerge)?;
    if merge {
        sys::clear_memory_merge().map_err(ProcessStateError::MemoryMerge)?;
    }
    let memory_merge = Change {
        inherited: merge,
        set: false,
    };
    // After the policy: a real-time task's slack reads 0 (Linux 6.9+), left above.
    // Already the default where the runtime set its own ([`adopt_kernel_timer_slack`]): the
    // report shows the caller's, remembered there.
    let slack = sys::timer_slack();
    if slack != TIMER_SLACK_NS {
        sys::set_timer_slack(TIMER_SLACK_NS).map_err(ProcessStateError::TimerSlack)?;
    }
    let timer_slack_ns = Change {
        inherited: match CALLER_TIMER_SLACK_NS.load(Ordering::Relaxed) {
            0 => slack,
            caller => caller,
        },
        set: TIMER_SLACK_NS,
    };
    let nice = Change {
        inherited: nice,
        set: nice_for(nice),
    };
    if nice.set != nice.inherited {
        sys::set_nice(nice.set).map_err(|cause| ProcessStateError::Nice {
            inherited: nice.inherited,
            wanted: nice.set,
            cause,
        })?;
    }
    Ok(ProcessState {
        oom_score_adj,
        nice,
        policy,
        io,
        memory_merge,
        timer_slack_ns,
    })
}

impl ProcessState {
    /// The report's `process_state` details (with the umask and personality set in child.rs).
    pub fn details(&self, umask: u32) -> serde_json::Value {
        json!({
            "oom_score_adj": self.oom_score_adj.set,
            "oom_score_adj_inherited": self.oom_score_adj.inherited,
            "nice": self.nice.set,
            "nice_inherited": self.nice.inherited,
            "scheduling": policy_name(self.policy.set),
            "scheduling_inherited": policy_name(self.policy.inherited),
            "io_priority": io_priority_name(self.io.set),
            "io_priority_inherited": io_priority_name(self.io.inherited),
            "umask": format!("{umask:04o}"),
            "personality_flags": 0,
            "ksm_merge_any": self.memory_merge.set,
            "ksm_merge_any_inherited": self.memory_merge.inherited,
            "timer_slack_ns": self.timer_slack_ns.set,
            "timer_slack_ns_inherited": self.timer_slack_ns.inherited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_and_nice_are_never_below_zero_and_a_higher_one_is_kept() {
        for (inherited, set) in [
            (-1000, 0),
            (-900, 0),
            (-1, 0),
            (0, 0),
            (100, 100),
            (1000, 1000),
        ] {
            assert_eq!(oom_score_adj_for(inherited), set, "{inherited}");
        }
        for (inherited, set) in [(-20, 0), (-5, 0), (0, 0), (10, 10), (19, 19)] {
            assert_eq!(nice_for(inherited), set, "{inherited}");
        }
    }

    #[test]
    fn only_a_real_time_policy_is_replaced() {
        assert_eq!(policy_for(libc::SCHED_FIFO), libc::SCHED_OTHER);
        assert_eq!(policy_for(libc::SCHED_RR), libc::SCHED_OTHER);
        assert_eq!(
            policy_for(libc::SCHED_RR | SCHED_RESET_ON_FORK),
            libc::SCHED_OTHER
        );
        for kept in [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_IDLE] {
            assert_eq!(policy_for(kept), kept);
        }
        assert_eq!(policy_name(libc::SCHED_FIFO), "SCHED_FIFO");
        assert_eq!(policy_name(libc::SCHED_IDLE), "SCHED_IDLE");
    }

    #[test]
    fn only_the_real_time_io_class_is_replaced() {
        let prio = |class: i32, level: i32| (class << 13) | level;
        assert_eq!(io_priority_for(prio(1, 0)), 0);
        assert_eq!(io_priority_for(prio(1, 7)), 0);
        for kept in [0, prio(2, 4), prio(2, 0), prio(3, 0)] {
            assert_eq!(io_priority_for(kept), kept);
        }
        assert_eq!(io_priority_name(prio(2, 4)), "best-effort: prio 4");
        assert_eq!(io_priority_name(0), "none: prio 0");
    }

    #[test]
    fn nice_and_policy_are_read_past_a_command_name_with_spaces_and_parentheses() {
        // A real line of `chrt -f 1 nice -n -5 cat /proc/self/stat`, the name made awkward.
        let stat = "4242 (a b) (c)) R 4200 4242 4200 34816 4242 4194304 92 0 0 0 0 0 0 0 -2 -5 1 \
                    0 123456 5640192 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 1 1 0 \
                    0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(nice_and_policy(stat), Some((-5, libc::SCHED_FIFO)));
        assert_eq!(nice_and_policy("1 (x) R 0"), None);
        assert_eq!(nice_and_policy("no parenthesis"), None);
    }

    #[test]
    fn this_process_stat_is_read() {
        let stat = sys::own_stat().unwrap();
        let (nice, policy) = nice_and_policy(&stat).unwrap();
        assert!((-20..=19).contains(&nice), "{stat}");
        assert!(!policy_name(policy).starts_with("policy "), "{stat}");
    }
}
