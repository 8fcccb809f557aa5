//! Cold launch: from `spawn` to the plugin's handshake having arrived, for Stockade and for
//! what a user would pick instead, each started the same way with the same static plugin.
//!
//! For the peers and `stockade exec` the launch ends when the plugin's first line (its
//! `handshake` request) reaches us through the launcher. For `stockade run` it ends when the
//! runtime reports `plugin_state: ready`, i.e. after verifying the package, building the sandbox,
//! receiving the handshake, checking it against the manifest and answering it — strictly more
//! work than the peers do, which is what a user of `run` pays.

use crate::fixture::{which, Fixture};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One way of starting the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Plain `execve` of the binary: the floor.
    Bare,
    /// `unshare -Upmn` (util-linux): namespaces only.
    Unshare,
    /// `bwrap --unshare-all` (Debian's bubblewrap) with a minimal root.
    Bwrap,
    /// `runc run` on an OCI bundle holding only the plugin.
    Runc,
    /// `firejail --noprofile --net=none`.
    Firejail,
    /// `stockade exec` with the built-in strict policy (every layer).
    StockadeExec,
    /// `stockade run PKG`: verification + every layer + the handshake, the package's tree kept
    /// from its earlier runs (checked file by file).
    StockadeRun,
    /// The same with no tree kept (`trust.keep_trees = 0`): the payload extracted, as in a
    /// package's first run.
    StockadeRunFirst,
}

impl Launcher {
    /// Every launcher, peers first.
    pub const ALL: [Launcher; 8] = [
        Launcher::Bare,
        Launcher::Unshare,
        Launcher::Bwrap,
        Launcher::Runc,
        Launcher::Firejail,
        Launcher::StockadeExec,
        Launcher::StockadeRun,
        Launcher::StockadeRunFirst,
    ];

    /// Display name (the command line a user would type).
    pub fn name(self) -> &'static str {
        match self {
            Launcher::Bare => "bare exec",
            Launcher::Unshare => "unshare -Upmn",
            Launcher::Bwrap => "bwrap --unshare-all",
            Launcher::Runc => "runc run",
            Launcher::Firejail => "firejail --noprofile --net=none",
            Launcher::StockadeExec => "stockade exec",
            Launcher::StockadeRun => "stockade run (to ready)",
            Launcher::StockadeRunFirst => "stockade run, package extracted",
        }
    }

    /// The external tool this launcher needs, if any.
    pub fn tool(self) -> Option<&'static str> {
        match self {
            Launcher::Unshare => Some("unshare"),
            Launcher::Bwrap => Some("bwrap"),
            Launcher::Runc => Some("runc"),
            Launcher::Firejail => Some("firejail"),
            _ => None,
        }
    }

    /// Whether it can run on this machine (its tool is installed).
    pub fn available(self) -> bool {
        self.tool().is_none_or(|t| which(t).is_some())
    }

    fn command(self, f: &Fixture, run: usize) -> Command {
        let entry = f.plugin_dir.join("entrypoint");
        match self {
            Launcher::Bare => Command::new(&entry),
            Launcher::Unshare => {
                let mut c = Command::new("unshare");
                c.arg("-Upmn").arg(&entry);
                c
            }
            Launcher::Bwrap => {
                let mut c = Command::new("bwrap");
                c.args(["--unshare-all", "--die-with-parent", "--ro-bind"])
                    .arg(&f.plugin_dir)
                    .args([
                        "/plugin",
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                        "/plugin/entrypoint",
                    ]);
                c
            }
            Launcher::Runc => {
                let mut c = Command::new("runc");
                c.arg("run")
                    .arg("--bundle")
                    .arg(&f.runc_bundle)
                    .arg(format!("stockade-bench-{}-{run}", std::process::id()));
                c
            }
            Launcher::Firejail => {
                let mut c = Command::new("firejail");
                c.args(["--quiet", "--noprofile", "--net=none"]).arg(&entry);
                c
            }
            Launcher::StockadeExec => {
                let mut c = Command::new(&f.stockade);
                c.arg("exec")
                    .arg("--plugin-dir")
                    .arg(&f.plugin_dir)
                    .arg("--")
                    .arg(&entry);
                c
            }
            Launcher::StockadeRun | Launcher::StockadeRunFirst => {
                let policy = if self == Launcher::StockadeRun {
                    &f.policy
                } else {
                    &f.policy_no_trees
                };
                let mut c = Command::new(&f.stockade);
                c.args(f.run_args(&f.package, policy));
                c
            }
        }
    }

    /// Whether `line` (from the launcher's stdout) marks the end of the launch.
    fn is_ready(self, line: &str) -> bool {
        match self {
            Launcher::StockadeRun | Launcher::StockadeRunFirst => {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|m| m["method"] == "plugin_state" && m["params"]["state"] == "ready")
            }
            _ => line.contains("\"method\":\"handshake\""),
        }
    }

    /// Starts the plugin once and returns the time to ready; the plugin is then stopped (stdin
    /// closed) and reaped outside the measured interval.
    pub fn measure(self, f: &Fixture, run: usize) -> Result<Duration, String> {
        let mut cmd = self.command(f, run);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", self.name()))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let took = loop {
            line.clear();
            let n = out.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                drop(child.stdin.take());
                let o = child.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!(
                    "{}: no handshake ({}): {}",
                    self.name(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            if self.is_ready(&line) {
                break t0.elapsed();
            }
        };
        drop(child.stdin.take());
        // Drain what is left (the runtime's final notifications) so nothing blocks on a pipe.
        std::io::copy(&mut out, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{}: exited with {status}", self.name()));
        }
        Ok(took)
    }
}
