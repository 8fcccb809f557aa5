//! The battery: run every probe natively (control) and sandboxed, judge, report.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixtures::{BombCaps, Fixtures};
use crate::rules::{judge_native, judge_sandboxed, rule_for, Expected, Judgement, Rule};
use crate::run::{run, run_kill_on, RunOutput, Via};

/// How to launch a command in the sandbox under test.
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// `[PREFIX…] stockade exec [--pid-file F] [--policy FILE] -- CMD…`
    Stockade {
        /// Words run before the binary, e.g. `setpriv --reuid 65534 …` for rootless mode.
        prefix: Vec<OsString>,
        /// The `stockade` binary.
        bin: PathBuf,
        /// Optional policy file.
        policy: Option<PathBuf>,
    },
    /// Any wrapper whose argv ends just before the command (e.g. `bwrap … --`).
    Wrapper(Vec<OsString>),
    /// Run only the native controls.
    None,
}

impl Sandbox {
    /// The argv that runs `cmd` inside this sandbox; `pid_file` is passed to `stockade exec`.
    pub fn command(&self, cmd: Vec<OsString>, pid_file: Option<&Path>) -> Vec<OsString> {
        match self {
            Sandbox::Stockade {
                prefix,
                bin,
                policy,
            } => {
                let mut v: Vec<OsString> = prefix.clone();
                v.push(bin.into());
                v.push("exec".into());
                if let Some(f) = pid_file {
                    v.push("--pid-file".into());
                    v.push(f.into());
                }
                if let Some(p) = policy {
                    v.push("--policy".into());
                    v.push(p.into());
                }
                v.push("--".into());
                v.extend(cmd);
                v
            }
            Sandbox::Wrapper(w) => w.iter().cloned().chain(cmd).collect(),
            Sandbox::None => cmd,
        }
    }
}

/// Battery settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The static probe binary.
    pub probe: PathBuf,
    /// The sandbox under test.
    pub sandbox: Sandbox,
    /// Only these probes (all when empty).
    pub only: Vec<String>,
    /// Bomb caps.
    pub caps: BombCaps,
    /// Limits the sandbox must enforce.
    pub expected: Expected,
    /// Deadline per run.
    pub timeout: Duration,
}

/// A probe as listed by `stockade-probe --list`.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    /// Probe name.
    pub name: String,
    /// Category (creds, namespaces, …).
    pub category: String,
    /// What it attempts.
    pub what: String,
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The probe.
    pub probe: ProbeInfo,
    /// Native run and its judgement.
    pub native: (RunOutput, Judgement),
    /// Sandboxed run and its judgement (absent with [`Sandbox::None`]).
    pub sandboxed: Option<(RunOutput, Judgement)>,
}

impl Outcome {
    /// Control ok AND blocked (or control ok when only controls run).
    pub fn passed(&self) -> bool {
        self.native.1.is_good() && self.sandboxed.as_ref().is_none_or(|s| s.1.is_good())
    }

    /// Short verdict word for the table.
    pub fn verdict(&self) -> &'static str {
        match (&self.native.1, self.sandboxed.as_ref().map(|s| &s.1)) {
            (_, Some(Judgement::Bad(_))) => "ESCAPED",
            (Judgement::Good(_), Some(Judgement::Good(_)) | None) => "ok",
            (Judgement::Bad(_), _) => "CONTROL-FAILED",
            _ => "ERROR",
        }
    }
}

/// Everything a battery run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per-probe outcomes, in list order.
    pub outcomes: Vec<Outcome>,
    /// Problems of the host after the run (cannot fork, survivors, killed fixture).
    pub host_problems: Vec<String>,
}

impl Report {
    /// Number of passed probes.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed()).count()
    }
    /// Number of failed probes.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }
    /// Whether the battery succeeded as a whole.
    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.host_problems.is_empty() && !self.outcomes.is_empty()
    }
}

/// Ask the probe binary for its probe list.
pub fn list_probes(probe: &std::path::Path) -> Result<Vec<ProbeInfo>, String> {
    let out = std::process::Command::new(probe)
        .arg("--list")
        .output()
        .map_err(|e| format!("cannot run {} --list: {e}", probe.display()))?;
    if !out.status.success() {
        return Err(format!("{} --list failed: {}", probe.display(), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some(ProbeInfo {
                name: f.next()?.to_owned(),
                category: f.next()?.to_owned(),
                what: f.next().unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

/// Run the battery. `progress` is called after each probe (for live output).
pub fn run_battery(cfg: &Config, mut progress: impl FnMut(&Outcome)) -> Result<Report, String> {
    let mut probes = list_probes(&cfg.probe)?;
    if !cfg.only.is_empty() {
        let unknown: Vec<&String> = cfg
            .only
            .iter()
            .filter(|n| !probes.iter().any(|p| &&p.name == n))
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown probe(s): {unknown:?}"));
        }
        probes.retain(|p| cfg.only.contains(&p.name));
    }
    // One battery at a time on a host: two concurrent runs would share the CPU their CPU bombs
    // measure and the marker scans would see each other's processes (cargo runs tests in
    // parallel). The lock is released when the battery returns.
    let _lock = exclusive_lock()?;
    let mut fx = Fixtures::new(&cfg.probe, cfg.caps)?;
    let mut outcomes = Vec::new();
    let mut host_problems = Vec::new();
    for p in probes {
        let rule = rule_for(&p.name);
        let mut cmd: Vec<OsString> = vec![cfg.probe.clone().into(), p.name.clone().into()];
        cmd.extend(fx.probe_args());

        let launch = |argv: &[OsString], via: Via| {
            if rule == Rule::SurvivalAfterKill {
                run_kill_on(argv, via, cfg.timeout, "READY")
            } else {
                run(argv, via, cfg.timeout)
            }
        };
        // Native controls of the file and inode bombs write to a tmpfs (/dev/shm) like the
        // sandbox's own /tmp, not to the host's disk-backed /tmp: the same kind of file system,
        // and 20,000 creates on a busy disk can outlast the timeout (seen on a loaded CI box).
        let mut native_cmd = cmd.clone();
        if native_tmpfs() {
            native_cmd.push("tmp_dir=/dev/shm".into());
        }
        let native_out = launch(&native_cmd, Via::Native);
        let survivors = settle_and_reap(rule, &fx.marker);
        let native = judge_native(rule, &native_out, survivors);

        let sandboxed = match cfg.sandbox {
            Sandbox::None => None,
            ref s => {
                let pid_file = fx.pid_file();
                let _ = std::fs::remove_file(&pid_file);
                let boost = (p.name == "cpu-bomb").then(|| {
                    let find = match s {
                        Sandbox::Stockade { .. } => Find::PidFile(pid_file.clone()),
                        _ => Find::Marker(fx.marker.clone(), cfg.probe.clone()),
                    };
                    std::thread::spawn(move || boost_autogroup(&find))
                });
                let out = launch(&s.command(cmd.clone(), Some(&pid_file)), Via::Wrapped);
                let survivors = settle_and_reap(rule, &fx.marker);
                let mut j = judge_sandboxed(rule, &out, survivors, cfg.expected);
                if let Some(Err(e)) = boost.map(|h| h.join().unwrap_or(Err("panicked".into()))) {
                    if j.is_good() {
                        j = Judgement::Error(format!("inconclusive, CPU bomb not boosted: {e}"));
                    }
                }
                Some((out, j))
            }
        };
        let o = Outcome {
            probe: p,
            native: (native_out, native),
            sandboxed,
        };
        progress(&o);
        outcomes.push(o);
        if !fx.sibling_alive() {
            host_problems.push("the host fixture process died during the battery".into());
            break;
        }
    }
    if let Err(e) = crate::host::can_fork(&cfg.probe) {
        host_problems.push(format!("host cannot fork after the battery: {e}"));
    }
    let left = crate::host::reap_marked(&fx.marker);
    if left > 0 {
        host_problems.push(format!(
            "{left} marked process(es) were still alive at the end"
        ));
    }
    Ok(Report {
        outcomes,
        host_problems,
    })
}

/// How to find the host pid of the sandboxed CPU bomb.
#[derive(Debug)]
enum Find {
    /// `stockade exec --pid-file`.
    PidFile(PathBuf),
    /// Any wrapper: the process running the probe binary as `cpu-bomb` with our marker.
    Marker(String, PathBuf),
}

impl Find {
    fn pid(&self) -> Option<u32> {
        match self {
            Find::PidFile(f) => std::fs::read_to_string(f).ok()?.trim().parse().ok(),
            Find::Marker(marker, probe) => crate::host::processes_with_marker(marker)
                .into_iter()
                .find(|pid| {
                    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let mut words = argv.split(|&b| b == 0);
                    words.next() == Some(probe.as_os_str().as_encoded_bytes())
                        && words.next() == Some(b"cpu-bomb".as_slice())
                })
                .and_then(|pid| u32::try_from(pid).ok()),
        }
    }
}

/// Give the sandboxed CPU bomb the scheduling advantage the native one gives itself, so that
/// host contention cannot pass for a CPU quota and only the quota can hold the bomb: wait for
/// the sandboxed probe, then from the host raise the CPU *weight* (never the quota) of the sandbox's
/// cpu cgroup to its maximum (`cpu.shares` on v1, `cpu.weight` on v2) and the autogroup nice
/// of its session to -20 (autogroups decide only for tasks in the root cpu cgroup, e.g. when a
/// rootless sandbox has no cgroup). Succeeds if either could be raised.
fn boost_autogroup(find: &Find) -> Result<(), String> {
    let start = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = find.pid() {
            break pid;
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "the sandboxed probe was not found within 5 s ({find:?})"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The bomb forks its spinning child at once, and the child may start its own session
    // (a new autogroup): keep boosting the probe and its children for the first half second.
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let until = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < until {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let pids =
            std::iter::once(pid).chain(children.split_whitespace().filter_map(|c| c.parse().ok()));
        for p in pids {
            boost_one(p, &mut done, &mut errors);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if done.is_empty() {
        Err(errors.join("; "))
    } else {
        Ok(())
    }
}

fn boost_one(pid: u32, done: &mut Vec<String>, errors: &mut Vec<String>) {
    let mut write = |file: String, value: &str| match std::fs::write(&file, value) {
        Ok(()) => done.push(file),
        Err(e) => errors.push(format!("{file}: {e}")),
    };
    write(format!("/proc/{pid}/autogroup"), "-20");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if path == "/" {
            continue; // never touch the host's root cgroup
        }
        let candidates: Vec<(String, &str)> = if ctrls.split(',').any(|c| c == "cpu") {
            ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
                .iter()
                .map(|m| (format!("/sys/fs/cgroup/{m}{path}/cpu.shares"), "262144"))
                .collect()
        } else if ctrls.is_empty() {
            vec![(format!("/sys/fs/cgroup{path}/cpu.weight"), "10000")]
        } else {
            continue;
        };
        for (file, max) in candidates {
            if Path::new(&file).exists() {
                write(file, max);
            }
        }
    }
}

fn exclusive_lock() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let path = std::env::temp_dir().join("stockade-battery.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))
}

/// Survivors of a run are looked for after a short settling time (a descendant may still be
/// between fork and exec of its marker-bearing image), then killed.
fn settle_and_reap(rule: Rule, marker: &str) -> usize {
    if matches!(rule, Rule::Survival | Rule::SurvivalAfterKill) {
        std::thread::sleep(Duration::from_millis(300));
    }
    crate::host::reap_marked(marker)
}

fn cell(s: &str, width: usize) -> String {
    let mut t: String = s.chars().take(width).collect();
    while t.chars().count() < width {
        t.push(' ');
    }
    t
}

/// One table row.
pub fn table_row(o: &Outcome) -> String {
    let native = format!("{} {}", o.native.0.ending, judgement_text(&o.native.1));
    let sandboxed = o
        .sandboxed
        .as_ref()
        .map(|(r, j)| format!("{} {}", r.ending, judgement_text(j)))
        .unwrap_or_else(|| "-".into());
    format!(
        "{} {} {} {} {}",
        cell(&o.probe.name, 20),
        cell(&o.probe.category, 10),
        cell(&native, 60),
        cell(&sandboxed, 70),
        o.verdict()
    )
}

/// Header matching [`table_row`].
pub fn table_header() -> String {
    format!(
        "{} {} {} {} verdict",
        cell("probe", 20),
        cell("category", 10),
        cell("native (control)", 60),
        cell("sandboxed", 70)
    )
}

fn judgement_text(j: &Judgement) -> String {
    let s = match j {
        Judgement::Good(s) | Judgement::Bad(s) | Judgement::Error(s) => s,
    };
    // drop the "name: " prefix of probe lines
    s.split_once(": ")
        .map(|(_, r)| r.to_owned())
        .unwrap_or_else(|| s.clone())
}

/// The machine-readable report.
pub fn to_json(r: &Report) -> serde_json::Value {
    let side = |out: &RunOutput, j: &Judgement| {
        let (kind, why) = match j {
            Judgement::Good(s) => ("good", s),
            Judgement::Bad(s) => ("bad", s),
            Judgement::Error(s) => ("error", s),
        };
        serde_json::json!({
            "ending": out.ending.to_string(),
            "judgement": kind,
            "detail": why,
            "stdout": out.stdout,
            "stderr": out.stderr,
            "elapsed_ms": u64::try_from(out.elapsed.as_millis()).unwrap_or(u64::MAX),
        })
    };
    serde_json::json!({
        "probes": r.outcomes.iter().map(|o| serde_json::json!({
            "name": o.probe.name,
            "category": o.probe.category,
            "what": o.probe.what,
            "native": side(&o.native.0, &o.native.1),
            "sandboxed": o.sandboxed.as_ref().map(|(out, j)| side(out, j)),
            "verdict": o.verdict(),
            "passed": o.passed(),
        })).collect::<Vec<_>>(),
        "host_problems": r.host_problems,
        "passed": r.passed(),
        "failed": r.failed(),
    })
}

/// Whether `/dev/shm` is a tmpfs this process can write to (where native bomb controls write).
fn native_tmpfs() -> bool {
    let is_tmpfs = std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next(), f.next(), f.next());
            dir == Some("/dev/shm") && fstype == Some("tmpfs")
        })
    });
    is_tmpfs
        && std::fs::metadata("/dev/shm").is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_dir() && m.permissions().mode() & 0o002 != 0
        })
}
