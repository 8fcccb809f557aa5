//! What a launch enforced, layer by layer, and how the program ended. This is the `--json`
//! document of `stockade exec` (schema `stockade.sandbox.report/1`) and what `stockade run` will
//! log; layers carry a status in rust-landlock's vocabulary so every degradation is visible.
//!
//! ## Schema `stockade.sandbox.report/1`
//! ```text
//! {
//!   "schema": "stockade.sandbox.report/1",
//!   "mode": "root" | "capabilities" | "rootless",
//!   "pid": <host pid of the program> | null,
//!   "host_uid": u32, "host_gid": u32, "inside_uid": u32,
//!   "layers": [ { "layer": <name>,
//!                 "status": "fully_enforced" | "partially_enforced" | "not_enforced",
//!                 "degradation_allowed": true,        // only present when true
//!                 "details": { … layer-specific facts … } }, … ],
//!   "limits_hit": { "oom_kills": u64, "memory_max_events": u64, "pids_max_events": u64,
//!                   "cpu_throttled_periods": u64, "memory_peak_bytes": u64 | null },
//!   "exit": { "code": i32 | null, "signal": i32 | null, "status": i32 } | null,
//!   "cleaned_up": bool            // every process gone, cgroup removed
//! }
//! ```
//! Layer names, in launch order: `distinct_uid`, `user_namespace`, `pid_namespace`,
//! `mount_namespace`, `network_namespace`, `ipc_namespace`, `uts_namespace`, `cgroup_namespace`,
//! `identity`, `cgroup`, `filesystem_root`, `process_state`, `rlimits`, `capabilities`, `no_new_privs`, `landlock`,
//! `landlock_network` (network mode "none" only), `landlock_scope`, `filesystem`, `seccomp`,
//! `process`. A layer whose status is below `fully_enforced` always has
//! `degradation_allowed: true` (otherwise the launch would have stopped): `cgroup`
//! `partially_enforced` lists the limits it lacks in `details.not_applied` and needs the
//! `cgroup_partial` degradation (implied by `cgroup`); `landlock` `partially_enforced` lists the
//! filesystem rights the kernel's ABI lacks there too, and `not_enforced` says why in `reason`.

use serde::{Deserialize, Serialize};

/// Report schema identifier (bump on incompatible change).
pub const REPORT_SCHEMA: &str = "stockade.sandbox.report/1";

/// How completely a layer was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    /// Everything the policy asked for is in force.
    FullyEnforced,
    /// Some of it is (the details say what is missing).
    PartiallyEnforced,
    /// None of it is.
    NotEnforced,
}

/// One isolation layer's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Stable layer name: `user_namespace`, `distinct_uid`, `filesystem`, `landlock`, …
    pub layer: String,
    /// How completely it applies.
    pub status: LayerStatus,
    /// True when the status is below full and the policy allowed that degradation.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub degradation_allowed: bool,
    /// Human-readable facts (ABI number, limits, uid …).
    pub details: serde_json::Value,
}

impl LayerReport {
    /// A fully enforced layer.
    pub fn full(layer: &str, details: serde_json::Value) -> Self {
        Self {
            layer: layer.into(),
            status: LayerStatus::FullyEnforced,
            degradation_allowed: false,
            details,
        }
    }

    /// A layer below full strength that the policy tolerates.
    pub fn degraded(layer: &str, status: LayerStatus, details: serde_json::Value) -> Self {
        Self {
            layer: layer.into(),
            status,
            degradation_allowed: true,
            details,
        }
    }
}

/// Limits the program ran into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsHit {
    /// Processes killed by the OOM killer inside the sandbox's memory cgroup.
    pub oom_kills: u64,
    /// Times the memory limit was reached (v1 failcnt, v2 memory.events `max`).
    pub memory_max_events: u64,
    /// Times a fork failed because pids.max was reached.
    pub pids_max_events: u64,
    /// CPU periods in which the CPU quota throttled the sandbox.
    pub cpu_throttled_periods: u64,
    /// Peak memory use in bytes, where the kernel reports it.
    pub memory_peak_bytes: Option<u64>,
    /// The program was killed (SIGKILL) with its CPU time at its `cpu_time_secs`: RLIMIT_CPU,
    /// set soft = hard, kills with SIGKILL, which alone would not say why (review-137).
    #[serde(default)]
    pub cpu_time_secs_reached: bool,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// What `stockade exec` exits with: the code, or 128 + signal.
    pub status: i32,
}

impl ExitInfo {
    /// From a raw `wait` status.
    pub fn from_wait_status(raw: i32) -> Self {
        if libc::WIFSIGNALED(raw) {
            let s = libc::WTERMSIG(raw);
            Self {
                code: None,
                signal: Some(s),
                status: 128 + s,
            }
        } else {
            let c = libc::WEXITSTATUS(raw);
            Self {
                code: Some(c),
                signal: None,
                status: c,
            }
        }
    }
}

/// Why the program ended, in words, when its exit status and the limits it hit say more than
/// the number does: a kill by the seccomp filter (SIGSYS), by the OOM killer, by an rlimit's
/// signal, any other signal, and a fork refused at `pids_max` or the memory limit reached on
/// the way. `None` for a normal exit that hit no limit (the program's own code and stderr say
/// why). A plugin author reading `plugin_state`, `serve`'s log or `exec`'s stderr would
/// otherwise have only `"signal": 31` or `status 137` to go on — and no way to tell the
/// sandbox's verdict from a crash of their own.
///
/// The kernel does not tell the parent which system call the filter refused
/// (`SECCOMP_RET_KILL_PROCESS` leaves only the signal; `SECCOMP_RET_TRAP` would say it, but
/// lets the program catch the signal and carry on, a weaker layer): where the host audits, its
/// audit or kernel log names it, and the message says where to look.
pub fn ending(exit: &ExitInfo, limits: &LimitsHit) -> Option<String> {
    let mut m = match exit.signal {
        Some(libc::SIGSYS) => "killed by the seccomp filter (SIGSYS): it made a system call its \
                               sandbox policy does not allow — the kernel does not tell the \
                               runtime which; where the host audits, its audit or kernel log \
                               names it (type=SECCOMP, syscall=N). Avoid the call, or have the \
                               operator allow it in the policy's [seccomp] (some, e.g. ptrace \
                               or mount, are never allowed)"
            .to_string(),
        Some(libc::SIGKILL) if limits.oom_kills > 0 => {
            let peak = limits
                .memory_peak_bytes
                .map(|b| format!(", peak {b} bytes"))
                .unwrap_or_default();
            format!(
                "killed by the OOM killer (SIGKILL): the sandbox reached its memory limit \
                 ([resources] memory_max{peak}); use less memory, or have the operator raise it"
            )
        }
        Some(libc::SIGKILL) if limits.cpu_time_secs_reached => {
            "killed at its CPU time limit (SIGKILL): it used up its CPU time over its whole \
             life ([resources] cpu_time_secs, RLIMIT_CPU); a long-lived plugin needs it raised"
                .to_string()
        }
        // Only from a kill(2): at `cpu_time_secs` the kernel sends SIGKILL, not SIGXCPU (the
        // init sets RLIMIT_CPU soft = hard, and the hard limit is checked first).
        Some(libc::SIGXCPU) => "killed by SIGXCPU: it used up its CPU time over its whole life \
                                ([resources] cpu_time_secs, RLIMIT_CPU); a long-lived plugin \
                                needs it raised"
            .to_string(),
        Some(libc::SIGXFSZ) => "killed by SIGXFSZ: a file it wrote reached the file-size limit \
                                ([resources] fsize, RLIMIT_FSIZE)"
            .to_string(),
        Some(s) => format!("killed by signal {s}{}", signal_name(s)),
        None if limits.pids_max_events > 0 || limits.oom_kills > 0 => {
            format!("exited with code {}", exit.code.unwrap_or_default())
        }
        None => return None,
    };
    if limits.oom_kills > 0 && exit.signal != Some(libc::SIGKILL) {
        let n = limits.oom_kills;
        m.push_str(&format!(
            "; the OOM killer killed {n} of its processes at the memory limit ([resources] \
             memory_max)"
        ));
    }
    if limits.pids_max_events > 0 {
        let n = limits.pids_max_events;
        m.push_str(&format!(
            "; {n} fork or thread creation(s) failed at the process limit ([resources] pids_max)"
        ));
    }
    Some(m)
}

/// ` (SIGSEGV)` for the signals a program commonly dies of; empty for the others.
fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGTRAP => " (SIGTRAP)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGALRM => " (SIGALRM)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_SCHEMA`].
    pub schema: String,
    /// `root`, `capabilities` (non-root with CAP_SETUID/SETGID/KILL: per-plugin uids as in root
    /// mode) or `rootless`.
    pub mode: String,
    /// The program's pid as seen from the host.
    pub pid: Option<i32>,
    /// Host uid/gid the program runs as.
    pub host_uid: u32,
    /// Host gid.
    pub host_gid: u32,
    /// The uid it sees for itself.
    pub inside_uid: u32,
    /// Every layer, in the order the launch applied them.
    pub layers: Vec<LayerReport>,
    /// Limits hit while it ran.
    pub limits_hit: LimitsHit,
    /// How it ended (absent until it has).
    pub exit: Option<ExitInfo>,
    /// Whether the sandbox was torn down completely (no process left, cgroup removed).
    pub cleaned_up: bool,
}

impl Report {
    /// Each layer below full strength, for an agent: `{"layer", "status", "reason"?,
    /// "not_applied"?}` (the `plugin_state` notification's `degraded` when ready), so a program
    /// that launched the plugin can tell what it runs without, as a person reads it in
    /// [`Self::degradations`], without parsing stderr or the audit log. Empty at full strength.
    pub fn degraded(&self) -> Vec<serde_json::Value> {
        self.layers
            .iter()
            .filter(|l| l.status != LayerStatus::FullyEnforced)
            .map(|l| {
                let mut d = serde_json::json!({"layer": l.layer, "status": l.status});
                for key in ["reason", "not_applied"] {
                    if let Some(v) = l.details.get(key) {
                        d[key] = v.clone();
                    }
                }
                d
            })
            .collect()
    }

    /// One sentence per layer below full strength, for a person: `stockade exec` and `run` print
    /// them on stderr, `serve` on its log, so a degradation the policy allowed is never visible
    /// only to whoever parses the JSON report or the audit log.
    pub fn degradations(&self) -> Vec<String> {
        self.layers
            .iter()
            .filter(|l| l.status != LayerStatus::FullyEnforced)
            .map(|l| {
                let how = match l.status {
                    LayerStatus::PartiallyEnforced => "is only partly enforced",
                    _ => "is not enforced",
                };
                let mut m = format!(
                    "layer `{}` {how} ({} mode; the policy allows this degradation)",
                    l.layer, self.mode
                );
                if let Some(r) = l.details.get("reason").and_then(|r| r.as_str()) {
                    m.push_str(": ");
                    m.push_str(r);
                }
                if let Some(missing) = l.details.get("not_applied").and_then(|n| n.as_array()) {
                    let missing: Vec<&str> = missing.iter().filter_map(|n| n.as_str()).collect();
                    m.push_str("; not applied: ");
                    m.push_str(&missing.join(", "));
                }
                m
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(layers: Vec<LayerReport>) -> Report {
        Report {
            schema: REPORT_SCHEMA.into(),
            mode: "rootless".into(),
            pid: None,
            host_uid: 1000,
            host_gid: 1000,
            inside_uid: 0,
            layers,
            limits_hit: LimitsHit::default(),
            exit: None,
            cleaned_up: false,
        }
    }

    #[test]
    fn degradations_name_each_weakened_layer_with_its_reason() {
        let r = report(vec![
            LayerReport::full("seccomp", json!({})),
            LayerReport::degraded(
                "distinct_uid",
                LayerStatus::NotEnforced,
                json!({"reason": "rootless: the program runs as the caller's own host uid"}),
            ),
            LayerReport::degraded(
                "cgroup",
                LayerStatus::PartiallyEnforced,
                json!({"not_applied": ["pids_max (no pids controller)", "swap_max"]}),
            ),
        ]);
        assert_eq!(
            r.degradations(),
            [
                "layer `distinct_uid` is not enforced (rootless mode; the policy allows this \
                 degradation): rootless: the program runs as the caller's own host uid",
                "layer `cgroup` is only partly enforced (rootless mode; the policy allows this \
                 degradation); not applied: pids_max (no pids controller), swap_max",
            ]
        );
        assert!(report(vec![LayerReport::full("seccomp", json!({}))])
            .degradations()
            .is_empty());
    }

    #[test]
    fn exit_info_maps_signals_to_128_plus_n() {
        // Raw wait statuses: exit(3) is 3 << 8; killed by SIGSYS (31) is 31.
        assert_eq!(ExitInfo::from_wait_status(3 << 8).status, 3);
        let s = ExitInfo::from_wait_status(31);
        assert_eq!((s.signal, s.status), (Some(31), 159));
    }

    #[test]
    fn ending_names_the_layer_that_killed_the_program() {
        let limits = LimitsHit::default();
        let sys = ending(&ExitInfo::from_wait_status(libc::SIGSYS), &limits).unwrap();
        assert!(
            sys.starts_with("killed by the seccomp filter (SIGSYS)"),
            "{sys}"
        );
        assert!(sys.contains("[seccomp]"), "{sys}");
        let oom = LimitsHit {
            oom_kills: 1,
            memory_peak_bytes: Some(33554432),
            ..LimitsHit::default()
        };
        let m = ending(&ExitInfo::from_wait_status(libc::SIGKILL), &oom).unwrap();
        assert!(m.starts_with("killed by the OOM killer (SIGKILL)"), "{m}");
        assert!(m.contains("memory_max, peak 33554432 bytes"), "{m}");
        // A SIGKILL the OOM killer did not send is not said to be one.
        let m = ending(&ExitInfo::from_wait_status(libc::SIGKILL), &limits).unwrap();
        assert_eq!(m, "killed by signal 9 (SIGKILL)");
        // At cpu_time_secs: the init's wait4 said the CPU time reached it (review-137).
        let cpu = LimitsHit {
            cpu_time_secs_reached: true,
            ..LimitsHit::default()
        };
        let m = ending(&ExitInfo::from_wait_status(libc::SIGKILL), &cpu).unwrap();
        assert!(
            m.starts_with("killed at its CPU time limit (SIGKILL)"),
            "{m}"
        );
        assert!(m.contains("cpu_time_secs"), "{m}");
        let m = ending(&ExitInfo::from_wait_status(libc::SIGXCPU), &limits).unwrap();
        assert!(m.contains("cpu_time_secs"), "{m}");
        let m = ending(&ExitInfo::from_wait_status(libc::SIGXFSZ), &limits).unwrap();
        assert!(m.contains("fsize"), "{m}");
        // A normal exit says nothing more than its code — unless a limit was hit on the way.
        assert_eq!(ending(&ExitInfo::from_wait_status(1 << 8), &limits), None);
        let pids = LimitsHit {
            pids_max_events: 2,
            ..LimitsHit::default()
        };
        let m = ending(&ExitInfo::from_wait_status(1 << 8), &pids).unwrap();
        assert_eq!(
            m,
            "exited with code 1; 2 fork or thread creation(s) failed at the process limit \
             ([resources] pids_max)"
        );
        // The OOM killer may kill a child while the program itself exits.
        let m = ending(&ExitInfo::from_wait_status(0), &oom).unwrap();
        assert!(
            m.starts_with("exited with code 0; the OOM killer killed 1"),
            "{m}"
        );
    }
}
