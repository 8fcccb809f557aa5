//! Posture check from outside (the model is gVisor's sandboxposture).
//!
//! While a long-running target (`stockade-probe posture-target`: three extra threads, then a
//! sleep) runs under `stockade exec --pid-file P`, the host reads `/proc/<pid>/task/<tid>/…` of
//! EVERY thread and compares with the expected posture. The result is a list of differences;
//! an empty list is the only passing result. The parsers are pure and unit-tested on canned
//! `/proc` text.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::run::{ending_of, Via};

/// Namespaces that must all differ from the runner's own.
pub const NAMESPACES: [&str; 7] = ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"];

/// The posture a sandboxed process must have.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The plugin uid (all four Uid fields); `None`: any non-zero uid, the four equal.
    pub uid: Option<u32>,
    /// The plugin gid, likewise.
    pub gid: Option<u32>,
    /// Half-open range every uid and gid must lie in (the policy's plugin uid range).
    pub id_range: Option<(u32, u32)>,
    /// `/proc/PID/limits` rows that must match: (limit name, soft, hard).
    pub limits: Vec<(String, String, String)>,
    /// The runner's `/proc/self/cgroup` as it was BEFORE the launch; `None`: read it at check
    /// time. On cgroup v2 the runtime moves every process sharing its cgroup (the runner too, when
    /// they share one) into a `supervisor` leaf before it creates the sandbox's cgroup beside it,
    /// so the baseline must be taken before the runtime starts.
    pub own_cgroup: Option<String>,
}

impl Expected {
    /// The rlimits any Stockade policy sets: no core dumps (`core = 0`, set as 1 byte: the
    /// value a pipe core_pattern honours, which ignores 0).
    pub fn with_default_limits(mut self) -> Self {
        self.limits
            .push(("Max core file size".into(), "1".into(), "1".into()));
        self
    }
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

fn ids_diff(
    status: &str,
    name: &str,
    want: Option<u32>,
    range: Option<(u32, u32)>,
    who: &str,
) -> Vec<String> {
    let Some(v) = field(status, name) else {
        return vec![format!("{who}: {name} missing")];
    };
    let ids: Vec<u32> = v
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let ok = ids.len() == 4
        && ids.iter().all(|&i| {
            i != 0
                && Some(i) == want.or(Some(ids[0]))
                && range.is_none_or(|(lo, hi)| (lo..hi).contains(&i))
        });
    if ok {
        Vec::new()
    } else {
        let mut w = want.map_or("four equal non-zero ids".to_owned(), |u| {
            format!("{u} {u} {u} {u}")
        });
        if let Some((lo, hi)) = range {
            w.push_str(&format!(" in [{lo}, {hi})"));
        }
        vec![format!("{who}: {name} expected {w}, got {v}")]
    }
}

/// Differences of one thread's `status` text.
pub fn status_diff(status: &str, exp: &Expected, who: &str) -> Vec<String> {
    let mut d = ids_diff(status, "Uid", exp.uid, exp.id_range, who);
    d.extend(ids_diff(status, "Gid", exp.gid, exp.id_range, who));
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        match field(status, cap) {
            Some(v) if u64::from_str_radix(v, 16) == Ok(0) => {}
            v => d.push(format!("{who}: {cap} expected 0000000000000000, got {v:?}")),
        }
    }
    for (name, want) in [("NoNewPrivs", "1"), ("Seccomp", "2")] {
        match field(status, name) {
            Some(v) if v == want => {}
            v => d.push(format!("{who}: {name} expected {want}, got {v:?}")),
        }
    }
    d
}

/// Differences of one thread's `limits` text.
pub fn limits_diff(limits: &str, exp: &Expected, who: &str) -> Vec<String> {
    let mut d = Vec::new();
    for (name, soft, hard) in &exp.limits {
        let row = limits.lines().find(|l| l.starts_with(name.as_str()));
        let got = row.map(|l| {
            let mut w = l[name.len()..].split_whitespace();
            (
                w.next().unwrap_or("").to_owned(),
                w.next().unwrap_or("").to_owned(),
            )
        });
        match got {
            Some((s, h)) if &s == soft && &h == hard => {}
            g => d.push(format!(
                "{who}: limit '{name}' expected {soft}/{hard}, got {g:?}"
            )),
        }
    }
    d
}

/// Differences of one thread's `cgroup` text against the runner's own (`own`): for the
/// controllers that enforce limits (memory, pids, cpu on v1; the unified line on v2) the
/// process must sit strictly below the runner's cgroup.
pub fn cgroup_diff(cgroup: &str, own: &str, who: &str) -> Vec<String> {
    let parse = |t: &str| -> Vec<(String, String)> {
        t.lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let _id = f.next()?;
                Some((f.next()?.to_owned(), f.next()?.to_owned()))
            })
            .collect()
    };
    let mine = parse(own);
    let theirs = parse(cgroup);
    let limiting = |ctrls: &str| {
        ctrls
            .split(',')
            .any(|c| matches!(c, "memory" | "pids" | "cpu"))
    };
    let has_v1 = theirs.iter().any(|(c, _)| limiting(c));
    let mut d = Vec::new();
    let mut checked = 0;
    for (ctrls, path) in &theirs {
        if !(limiting(ctrls) || (!has_v1 && ctrls.is_empty())) {
            continue;
        }
        checked += 1;
        let base = mine
            .iter()
            .find(|(c, _)| c == ctrls)
            .map(|(_, p)| p.as_str());
        let below = base.is_some_and(|b| {
            let b = b.trim_end_matches('/');
            path.len() > b.len() + 1 && path.starts_with(b) && path.as_bytes()[b.len()] == b'/'
        });
        if !below || path == "/" {
            d.push(format!(
                "{who}: cgroup '{ctrls}' expected below {:?}, got {path}",
                base.unwrap_or("?")
            ));
        }
    }
    if checked == 0 {
        d.push(format!(
            "{who}: no memory/pids/cpu cgroup line in {cgroup:?}"
        ));
    }
    d
}

/// The runtime's delegated cgroup as seen from the runner's `/proc/self/cgroup` text: on v2 the
/// runtime moves every process that shares its cgroup (the runner too, on an earlier launch) into
/// a `supervisor` leaf and creates sandboxes *beside* it, so a path ending in `/supervisor` stands
/// for its parent (docs/sandbox.md, "What a launch does").
pub fn delegated_baseline(own: &str) -> String {
    own.lines()
        .map(|l| l.strip_suffix("/supervisor").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A sandboxed thread is never harder to OOM-kill nor scheduled ahead of an ordinary process,
/// whatever its runner's settings (`oom_score_adj` ≥ 0, nice ≥ 0, no real-time policy): the
/// kernel matrix runs this check with the runner at `oom_score_adj` -500 and nice -5.
/// `oom` is `/proc/…/oom_score_adj`, `stat` the thread's `/proc/…/stat`.
pub fn priority_diff(oom: &str, stat: &str, who: &str) -> Vec<String> {
    let mut d = Vec::new();
    match oom.trim().parse::<i32>() {
        Ok(v) if v < 0 => d.push(format!(
            "{who}: oom_score_adj {v}: below 0, shielded from the OOM killer"
        )),
        Ok(_) => {}
        Err(e) => d.push(format!("{who}: oom_score_adj {oom:?}: {e}")),
    }
    // Fields after the command name's closing parenthesis (which may hold spaces): field 3 is
    // the first; nice is field 19, the scheduling policy field 41 (proc_pid_stat(5)).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    match (field(19), field(41)) {
        (Some(nice), Some(policy)) => {
            if nice < 0 {
                d.push(format!("{who}: nice {nice}: ahead of ordinary processes"));
            }
            // SCHED_FIFO 1, SCHED_RR 2, SCHED_DEADLINE 6
            if matches!(policy, 1 | 2 | 6) {
                d.push(format!("{who}: real-time scheduling policy {policy}"));
            }
        }
        _ => d.push(format!("{who}: stat without nice/policy fields: {stat:?}")),
    }
    d
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Check one thread directory (`/proc/PID/task/TID`).
pub fn thread_diff(task: &Path, exp: &Expected, who: &str) -> Vec<String> {
    let mut d = Vec::new();
    let mut push = |r: Result<Vec<String>, String>| match r {
        Ok(v) => d.extend(v),
        Err(e) => d.push(format!("{who}: {e}")),
    };
    push(read(&task.join("status")).map(|s| status_diff(&s, exp, who)));
    push(read(&task.join("limits")).map(|s| limits_diff(&s, exp, who)));
    push(
        read(&task.join("oom_score_adj"))
            .and_then(|oom| read(&task.join("stat")).map(|stat| priority_diff(&oom, &stat, who))),
    );
    push(read(&task.join("cgroup")).and_then(|s| {
        let own = match &exp.own_cgroup {
            Some(own) => Ok(own.clone()),
            None => read(Path::new("/proc/self/cgroup")),
        };
        own.map(|own| cgroup_diff(&s, &own, who))
    }));
    for ns in NAMESPACES {
        let theirs = fs::read_link(task.join("ns").join(ns));
        let mine = fs::read_link(Path::new("/proc/self/ns").join(ns));
        match (theirs, mine) {
            (Ok(t), Ok(m)) if t != m => {}
            (Ok(t), Ok(_)) => push(Err(format!(
                "{ns} namespace is the host's ({})",
                t.display()
            ))),
            (t, m) => push(Err(format!("{ns} namespace unreadable: {t:?} / {m:?}"))),
        }
    }
    match fs::read_dir(task.join("fd")) {
        Ok(entries) => {
            let mut fds: Vec<(String, String)> = entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let target = fs::read_link(e.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|e| format!("<{e}>"));
                    (e.file_name().to_string_lossy().into_owned(), target)
                })
                .collect();
            fds.sort();
            let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
            if names != ["0", "1", "2"] {
                push(Err(format!("fds expected [0, 1, 2], got {fds:?}")));
            }
            for (n, t) in &fds {
                if !t.starts_with("pipe:") {
                    push(Err(format!("fd {n} expected a pipe, got {t}")));
                }
            }
        }
        Err(e) => push(Err(format!("cannot list fds: {e}"))),
    }
    d
}

/// Check every thread of `pid`; requires at least `min_threads`.
pub fn process_diff(pid: u32, exp: &Expected, min_threads: usize) -> Vec<String> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let mut tids: Vec<String> = match fs::read_dir(&tasks) {
        Ok(e) => e
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return vec![format!("cannot list {}: {e}", tasks.display())],
    };
    tids.sort();
    let mut d = Vec::new();
    if tids.len() < min_threads {
        d.push(format!(
            "expected at least {min_threads} threads, found {}",
            tids.len()
        ));
    }
    for tid in &tids {
        d.extend(thread_diff(&tasks.join(tid), exp, &format!("tid {tid}")));
    }
    d
}

fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |e| e.count())
}

/// How the sandbox joined its cgroup, from the launch report (`stockade exec --report`): on
/// cgroup v2 it must be born there (`clone3` with `CLONE_INTO_CGROUP`), on v1 moved through
/// `cgroup.procs` before it runs. No cgroup layer (an allowed degradation): nothing to check.
pub fn cgroup_join_diff(report: &str) -> Vec<String> {
    let v: serde_json::Value = match serde_json::from_str(report) {
        Ok(v) => v,
        Err(e) => return vec![format!("launch report: not JSON: {e}")],
    };
    let Some(layer) = v["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["layer"] == "cgroup"))
    else {
        return Vec::new();
    };
    let d = &layer["details"];
    let want = match d["version"].as_u64() {
        Some(2) => "at clone (CLONE_INTO_CGROUP)",
        Some(1) => "cgroup.procs before the child runs",
        _ => {
            return vec![format!(
                "launch report: cgroup layer without a version: {d}"
            )]
        }
    };
    if d["joined"] == want {
        Vec::new()
    } else {
        vec![format!(
            "cgroup v{}: joined {}, expected {want:?}",
            d["version"], d["joined"]
        )]
    }
}

/// Launch the posture target under `sandbox_argv_prefix` (a `stockade exec … --pid-file P --`
/// prefix built by the caller with `pid_file`), check it, kill it. Returns the differences
/// (empty: the posture is as expected) or an error when the target never ran.
pub fn run_posture(
    prefix: &[OsString],
    probe: &Path,
    pid_file: &Path,
    exp: &Expected,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let _ = fs::remove_file(pid_file);
    let mut exp = exp.clone();
    if exp.own_cgroup.is_none() {
        exp.own_cgroup = Some(delegated_baseline(&read(Path::new("/proc/self/cgroup"))?));
    }
    let exp = &exp;
    let mut argv: Vec<OsString> = prefix.to_vec();
    argv.push(probe.into());
    argv.push("posture-target".into());
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", prog.to_string_lossy()))?;
    let start = Instant::now();
    let pid = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = child.stderr.take().map(|mut s| {
                let mut t = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut t);
                t
            });
            return Err(format!(
                "the target ended ({}) before the check: {}",
                ending_of(status, Via::Wrapped),
                err.unwrap_or_default().trim()
            ));
        }
        let pid = fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(p) = pid.filter(|&p| thread_count(p) >= 4) {
            break p;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no 4-thread target appeared (pid file {}: {pid:?})",
                pid_file.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let diff = process_diff(pid, exp, 4);
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    let _ = child.wait();
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    #[test]
    fn cgroup_join_is_checked_per_version() {
        let r = |v: u8, joined: &str| {
            format!(
                r#"{{"layers":[{{"layer":"cgroup","details":{{"version":{v},"joined":"{joined}"}}}}]}}"#
            )
        };
        assert!(cgroup_join_diff(&r(2, "at clone (CLONE_INTO_CGROUP)")).is_empty());
        assert!(cgroup_join_diff(&r(1, "cgroup.procs before the child runs")).is_empty());
        assert_eq!(
            cgroup_join_diff(&r(2, "cgroup.procs before the child runs")).len(),
            1
        );
        assert_eq!(
            cgroup_join_diff(&r(1, "at clone (CLONE_INTO_CGROUP)")).len(),
            1
        );
        assert!(cgroup_join_diff(r#"{"layers":[]}"#).is_empty());
        assert_eq!(cgroup_join_diff("nope").len(), 1);
    }

    #[test]
    fn clean_status_has_no_diff() {
        assert!(status_diff(GOOD, &Expected::default(), "t").is_empty());
        let exp = Expected {
            uid: Some(1000),
            gid: Some(1000),
            ..Default::default()
        };
        assert!(status_diff(GOOD, &exp, "t").is_empty());
    }

    #[test]
    fn each_status_problem_is_reported() {
        let exp = Expected {
            uid: Some(1001),
            ..Default::default()
        };
        assert_eq!(status_diff(GOOD, &exp, "t").len(), 1);
        let root = GOOD.replace("Uid:\t1000\t1000\t1000\t1000", "Uid:\t1000\t0\t1000\t1000");
        assert_eq!(status_diff(&root, &Expected::default(), "t").len(), 1);
        let caps = GOOD.replace("CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff");
        assert_eq!(status_diff(&caps, &Expected::default(), "t").len(), 1);
        let nnp = GOOD
            .replace("NoNewPrivs:\t1", "NoNewPrivs:\t0")
            .replace("Seccomp:\t2", "Seccomp:\t0");
        assert_eq!(status_diff(&nnp, &Expected::default(), "t").len(), 2);
    }

    #[test]
    fn limits_rows_are_compared() {
        let text =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
Max core file size        1                    1                    bytes     \n\
Max open files            64                   64                   files     \n";
        let exp = Expected::default().with_default_limits();
        assert!(limits_diff(text, &exp, "t").is_empty());
        let mut exp2 = exp.clone();
        exp2.limits
            .push(("Max open files".into(), "128".into(), "128".into()));
        assert_eq!(limits_diff(text, &exp2, "t").len(), 1);
    }

    #[test]
    fn priority_rows_are_compared() {
        // A thread of a command whose name holds ") (": only the last parenthesis ends it.
        let stat = |nice: i32, policy: u32| {
            let mut f = vec!["0".to_owned(); 39];
            f[16] = nice.to_string(); // field 19
            f[38] = policy.to_string(); // field 41
            format!("42 (a) (b) {}", f.join(" "))
        };
        assert!(priority_diff("0\n", &stat(0, 0), "t").is_empty());
        assert!(priority_diff("300\n", &stat(5, 3), "t").is_empty());
        assert_eq!(priority_diff("-500\n", &stat(0, 0), "t").len(), 1);
        assert_eq!(priority_diff("0\n", &stat(-5, 0), "t").len(), 1);
        assert_eq!(priority_diff("0\n", &stat(0, 1), "t").len(), 1);
        assert_eq!(priority_diff("-1\n", &stat(-1, 2), "t").len(), 3);
        assert_eq!(priority_diff("x", "garbage", "t").len(), 2);
    }

    #[test]
    fn supervisor_leaf_stands_for_its_parent() {
        let own = "0::/payload.scope/supervisor\n";
        let base = delegated_baseline(own);
        assert_eq!(base, "0::/payload.scope");
        assert!(cgroup_diff("0::/payload.scope/stockade-1\n", &base, "t").is_empty());
        assert_eq!(cgroup_diff("0::/other/stockade-1\n", &base, "t").len(), 1);
    }

    #[test]
    fn cgroup_must_be_below_the_runner() {
        let own = "4:memory:/svc\n8:pids:/\n1:cpu:/\n0::/\n";
        let good = "4:memory:/svc/stockade-1\n8:pids:/stockade-1\n1:cpu:/stockade-1\n0::/\n";
        assert!(cgroup_diff(good, own, "t").is_empty());
        let root = "4:memory:/svc\n8:pids:/stockade-1\n1:cpu:/stockade-1\n0::/\n";
        assert_eq!(cgroup_diff(root, own, "t").len(), 1);
        let sibling = "4:memory:/svcx/a\n8:pids:/a\n1:cpu:/a\n";
        assert_eq!(cgroup_diff(sibling, own, "t").len(), 1);
        let v2_own = "0::/user.slice/battery\n";
        assert!(cgroup_diff("0::/user.slice/battery/stockade-9\n", v2_own, "t").is_empty());
        assert_eq!(cgroup_diff("0::/\n", v2_own, "t").len(), 1);
    }

    #[test]
    fn own_process_fails_the_posture() {
        // the test runner itself is not sandboxed: the check must say so
        let d = process_diff(std::process::id(), &Expected::default(), 1);
        assert!(
            d.iter().any(|l| l.contains("namespace is the host's")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.contains("NoNewPrivs")), "{d:?}");
    }
}
