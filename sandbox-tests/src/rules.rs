//! Per-probe rules: how a native run and a sandboxed run become a verdict.
//!
//! Pure functions over [`RunOutput`]s, so that every rule is unit-tested without a kernel.
//! A probe passes when its native control succeeded (the action works on this kernel, so the
//! probe really exercises the mechanism) AND the sandboxed run was blocked.

use crate::run::{Ending, RunOutput};

const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;
const SIGSYS: i32 = 31;

/// Evidence that a resource bomb was stopped by its limit, not by something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BombRule {
    /// `errno=` tokens in the probe line that name the limit.
    pub errnos: &'static [&'static str],
    /// Signals that only a limit sends (OOM kill, SIGXFSZ, SIGXCPU).
    pub signals: &'static [i32],
    /// Whether `count=` must not exceed the expected pids limit.
    pub counts_pids: bool,
}

/// How a probe is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Native: exit 0. Sandboxed: exit 1 (denied) or killed by any signal (seccomp kill).
    Standard,
    /// Native: exit 0 (the call reached the kernel). Sandboxed: killed by SIGSYS only, i.e.
    /// stopped by the seccomp guard before the kernel.
    SigsysOnly,
    /// Native: exit 0 (reached the cap). Sandboxed: stopped early with the limit's evidence.
    Bomb(BombRule),
    /// Native: a marked descendant is alive after the probe exited. Sandboxed: none is alive
    /// after `stockade exec` returned.
    Survival,
    /// As [`Rule::Survival`], but the battery SIGKILLs its direct child (natively the probe,
    /// sandboxed the runtime) once the probe printed READY: the sandbox must die with its
    /// runtime.
    SurvivalAfterKill,
}

/// The rule for a probe name.
pub fn rule_for(name: &str) -> Rule {
    let bomb = |errnos, signals, counts_pids| {
        Rule::Bomb(BombRule {
            errnos,
            signals,
            counts_pids,
        })
    };
    match name {
        "x32-syscall" | "int80" => Rule::SigsysOnly,
        "fork-bomb" => bomb(&["EAGAIN"], &[], true),
        "mem-bomb" => bomb(&["ENOMEM"], &[SIGKILL], false),
        "fd-bomb" => bomb(&["EMFILE", "ENFILE"], &[], false),
        // tmpfs pages are charged to the memory cgroup, so the OOM killer is a limit too
        "fsize-bomb" => bomb(&["EFBIG", "ENOSPC", "EDQUOT"], &[SIGXFSZ, SIGKILL], false),
        "inode-bomb" => bomb(&["ENOSPC", "EDQUOT"], &[SIGKILL], false),
        // the probe measures its share itself (errno=QUOTA) or reports the limit's signal
        "cpu-bomb" => bomb(&["QUOTA", "SIGXCPU", "SIGKILL"], &[SIGXCPU, SIGKILL], false),
        // not in the default seccomp groups (SIGSYS); under `@file-watch` the user
        // namespace's own cap (EMFILE)
        "inotify-bomb" => bomb(&["EMFILE"], &[SIGSYS], false),
        "sigqueue-bomb" => bomb(&["EAGAIN"], &[], false),
        "survive-daemon" | "survive-orphan" => Rule::Survival,
        "survive-runtime-kill" => Rule::SurvivalAfterKill,
        _ => Rule::Standard,
    }
}

/// Limits the sandbox is expected to enforce (from the command line; `None`: not checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// The pids limit (cgroup pids.max or RLIMIT_NPROC).
    pub pids: Option<u64>,
}

/// Verdict of one side of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Native: the control succeeded. Sandboxed: the action was blocked.
    Good(String),
    /// Native: the control failed. Sandboxed: the action escaped.
    Bad(String),
    /// The run could not be judged (probe or runtime error, timeout).
    Error(String),
}

impl Judgement {
    /// Whether this side is as it must be.
    pub fn is_good(&self) -> bool {
        matches!(self, Judgement::Good(_))
    }
}

fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn unjudgeable(out: &RunOutput) -> Option<Judgement> {
    match &out.ending {
        Ending::RuntimeFailed(c) => Some(Judgement::Error(format!(
            "runtime failed ({c}): {}",
            out.summary()
        ))),
        Ending::TimedOut => Some(Judgement::Error("timed out".into())),
        Ending::SpawnFailed(e) => Some(Judgement::Error(e.clone())),
        Ending::Exited(2) => Some(Judgement::Error(format!("probe error: {}", out.summary()))),
        _ => None,
    }
}

/// Judge the native control. `survivors`: marked processes found after the run.
pub fn judge_native(rule: Rule, out: &RunOutput, survivors: usize) -> Judgement {
    if let Some(j) = unjudgeable(out) {
        return j;
    }
    match (&out.ending, rule) {
        (_, Rule::SurvivalAfterKill) if survivors > 0 => Judgement::Good(format!(
            "{survivors} marked descendant(s) outlived the killed probe"
        )),
        (_, Rule::SurvivalAfterKill) => Judgement::Bad(format!(
            "no marked descendant after killing the probe: {}",
            out.summary()
        )),
        (Ending::Exited(0), Rule::Survival) if survivors == 0 => {
            Judgement::Bad("no marked descendant found after the run".into())
        }
        (Ending::Exited(0), _) => Judgement::Good(out.summary()),
        (e, _) => Judgement::Bad(format!("{e}: {}", out.summary())),
    }
}

/// Judge the sandboxed run.
pub fn judge_sandboxed(rule: Rule, out: &RunOutput, survivors: usize, exp: Expected) -> Judgement {
    if let Some(j) = unjudgeable(out) {
        return j;
    }
    let line = out.summary();
    match rule {
        Rule::Standard => match out.ending {
            Ending::Exited(0) => Judgement::Bad(line),
            // exit 1 counts only with the probe's own verdict line (not a runtime's exit 1)
            Ending::Exited(1) if line.contains(": DENIED") => Judgement::Good(line),
            Ending::Signaled(s) => {
                Judgement::Good(format!("killed by {}", crate::run::signal_name(s)))
            }
            ref e => Judgement::Error(format!("{e}: {line}")),
        },
        Rule::SigsysOnly => match out.ending {
            Ending::Signaled(SIGSYS) => Judgement::Good("killed by SIGSYS (seccomp)".into()),
            Ending::Exited(_) => Judgement::Bad(format!("not killed by the seccomp guard: {line}")),
            ref e => Judgement::Error(format!("{e}, not SIGSYS: {line}")),
        },
        Rule::Bomb(b) => judge_bomb(b, out, &line, exp),
        Rule::Survival | Rule::SurvivalAfterKill => {
            if survivors > 0 {
                Judgement::Bad(format!("{survivors} marked process(es) outlived the run"))
            } else {
                Judgement::Good(format!("{}; nothing survived", out.ending))
            }
        }
    }
}

fn judge_bomb(b: BombRule, out: &RunOutput, line: &str, exp: Expected) -> Judgement {
    match out.ending {
        Ending::Exited(0) => Judgement::Bad(format!("reached its cap: {line}")),
        Ending::Signaled(s) if b.signals.contains(&s) => {
            Judgement::Good(format!("killed by {} (limit)", crate::run::signal_name(s)))
        }
        Ending::Exited(1) => {
            let errno = value_of(line, "errno");
            let by_limit = errno.is_some_and(|e| b.errnos.contains(&e));
            if !by_limit {
                return Judgement::Error(format!("stopped, but not by a limit: {line}"));
            }
            if b.counts_pids {
                let count = value_of(line, "count").and_then(|c| c.parse::<u64>().ok());
                if let (Some(max), Some(n)) = (exp.pids, count) {
                    if n > max {
                        return Judgement::Bad(format!(
                            "{n} processes exceed the pids limit {max}"
                        ));
                    }
                }
            }
            Judgement::Good(line.to_owned())
        }
        ref e => Judgement::Error(format!("{e}, not a limit: {line}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn out(ending: Ending, line: &str) -> RunOutput {
        RunOutput {
            ending,
            stdout: format!("{line}\n"),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        }
    }
    const NONE: Expected = Expected { pids: None };

    #[test]
    fn standard_rule() {
        let r = rule_for("unshare-user");
        assert!(judge_native(r, &out(Ending::Exited(0), "x: ESCAPED"), 0).is_good());
        assert!(!judge_native(r, &out(Ending::Exited(1), "x: DENIED"), 0).is_good());
        assert!(judge_sandboxed(r, &out(Ending::Exited(1), "x: DENIED"), 0, NONE).is_good());
        assert!(!judge_sandboxed(r, &out(Ending::Exited(1), "stockade: error"), 0, NONE).is_good());
        assert!(judge_sandboxed(r, &out(Ending::Signaled(31), ""), 0, NONE).is_good());
        assert!(matches!(
            judge_sandboxed(r, &out(Ending::Exited(0), "x: ESCAPED"), 0, NONE),
            Judgement::Bad(_)
        ));
        assert!(matches!(
            judge_sandboxed(r, &out(Ending::Exited(2), "x: ERROR"), 0, NONE),
            Judgement::Error(_)
        ));
        assert!(matches!(
            judge_sandboxed(r, &out(Ending::RuntimeFailed(125), ""), 0, NONE),
            Judgement::Error(_)
        ));
    }

    #[test]
    fn arch_probes_need_sigsys() {
        let r = rule_for("x32-syscall");
        assert!(judge_native(r, &out(Ending::Exited(0), "ENOSYS"), 0).is_good());
        assert!(judge_sandboxed(r, &out(Ending::Signaled(31), ""), 0, NONE).is_good());
        assert!(!judge_sandboxed(r, &out(Ending::Exited(0), ""), 0, NONE).is_good());
        assert!(!judge_sandboxed(r, &out(Ending::Signaled(11), ""), 0, NONE).is_good());
    }

    #[test]
    fn bombs_need_the_limit_as_evidence() {
        let fork = rule_for("fork-bomb");
        let stopped = "fork-bomb: DENIED count=60 cap=1024 unit=processes errno=EAGAIN (x)";
        assert!(judge_sandboxed(fork, &out(Ending::Exited(1), stopped), 0, NONE).is_good());
        assert!(judge_sandboxed(
            fork,
            &out(Ending::Exited(1), stopped),
            0,
            Expected { pids: Some(64) }
        )
        .is_good());
        assert!(!judge_sandboxed(
            fork,
            &out(Ending::Exited(1), stopped),
            0,
            Expected { pids: Some(32) }
        )
        .is_good());
        let other = "fork-bomb: DENIED count=3 cap=1024 unit=processes errno=EPERM (x)";
        assert!(!judge_sandboxed(fork, &out(Ending::Exited(1), other), 0, NONE).is_good());
        assert!(!judge_sandboxed(fork, &out(Ending::Exited(0), "count=1024"), 0, NONE).is_good());
        let mem = rule_for("mem-bomb");
        assert!(judge_sandboxed(mem, &out(Ending::Signaled(9), ""), 0, NONE).is_good());
        assert!(!judge_sandboxed(mem, &out(Ending::Signaled(31), ""), 0, NONE).is_good());
        let cpu = rule_for("cpu-bomb");
        assert!(judge_sandboxed(
            cpu,
            &out(Ending::Exited(1), "share=0.4 errno=QUOTA"),
            0,
            NONE
        )
        .is_good());
        assert!(!judge_sandboxed(cpu, &out(Ending::Exited(1), "share=0.4"), 0, NONE).is_good());
    }

    #[test]
    fn survival_is_judged_by_the_marker_scan() {
        let r = rule_for("survive-daemon");
        assert!(judge_native(r, &out(Ending::Exited(0), "ESCAPED"), 1).is_good());
        assert!(!judge_native(r, &out(Ending::Exited(0), "ESCAPED"), 0).is_good());
        assert!(judge_sandboxed(r, &out(Ending::Exited(0), "ESCAPED"), 0, NONE).is_good());
        assert!(!judge_sandboxed(r, &out(Ending::Exited(0), "ESCAPED"), 2, NONE).is_good());
        let k = rule_for("survive-runtime-kill");
        assert!(judge_native(k, &out(Ending::Signaled(9), "READY"), 1).is_good());
        assert!(!judge_native(k, &out(Ending::Signaled(9), "READY"), 0).is_good());
        assert!(judge_sandboxed(k, &out(Ending::Signaled(9), "READY"), 0, NONE).is_good());
        assert!(!judge_sandboxed(k, &out(Ending::Signaled(9), "READY"), 1, NONE).is_good());
    }
}
