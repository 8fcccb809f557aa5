//! Running one command with a deadline and reading how it ended.
//!
//! Output is read by threads that hand chunks over a channel, never by waiting for EOF: a
//! probe's descendant (a survival probe's daemon, a fork bomb's child) may keep the pipe open
//! long after the probe itself has exited.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a run ended, after undoing the `128+N` convention of wrappers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The program exited with this status.
    Exited(i32),
    /// The program was killed by this signal.
    Signaled(i32),
    /// The runtime itself failed (125/126/127 from `stockade exec`).
    RuntimeFailed(i32),
    /// The deadline passed; the run was killed.
    TimedOut,
    /// The command could not be started.
    SpawnFailed(String),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(c) => write!(f, "exit {c}"),
            Ending::Signaled(s) => write!(f, "{}", signal_name(*s)),
            Ending::RuntimeFailed(c) => write!(f, "runtime error {c}"),
            Ending::TimedOut => write!(f, "timeout"),
            Ending::SpawnFailed(e) => write!(f, "spawn failed: {e}"),
        }
    }
}

/// Conventional name of a signal number (for tables).
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Result of one run: how it ended and what it printed.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// How the run ended.
    pub ending: Ending,
    /// Everything read from stdout (the probe prints one line).
    pub stdout: String,
    /// Everything read from stderr (the runtime's diagnostics).
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunOutput {
    /// The probe's result line (the last non-empty stdout line), or the runtime's last
    /// stderr line when the probe printed nothing.
    pub fn summary(&self) -> String {
        let pick = |s: &str| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        };
        pick(&self.stdout)
            .or_else(|| pick(&self.stderr))
            .unwrap_or_default()
    }
}

/// Whether a run goes through a wrapper (`stockade exec`, bwrap) that reports a signal death
/// as `128+N` and its own failures as 125/126/127.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The probe is our direct child.
    Native,
    /// The probe runs under a wrapper.
    Wrapped,
}

/// Interpret a raw exit status according to `via`.
pub fn ending_of(status: std::process::ExitStatus, via: Via) -> Ending {
    if let Some(sig) = status.signal() {
        return Ending::Signaled(sig);
    }
    let code = status.code().unwrap_or(-1);
    match (via, code) {
        (Via::Wrapped, 125..=127) => Ending::RuntimeFailed(code),
        (Via::Wrapped, 129..=192) => Ending::Signaled(code - 128),
        _ => Ending::Exited(code),
    }
}

fn reader(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

fn drain(rx: &mpsc::Receiver<Vec<u8>>, grace: Duration) -> String {
    let mut out = Vec::new();
    let end = Instant::now() + grace;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Run `argv` with stdin from /dev/null, in its own process group (so a timeout can kill a
/// whole native bomb), with a deadline.
pub fn run(argv: &[OsString], via: Via, timeout: Duration) -> RunOutput {
    run_inner(argv, via, timeout, None)
}

/// Like [`run`], but SIGKILL the direct child (only it: the runtime, or natively the probe)
/// as soon as its stdout contains `token`. Models the runtime dying under a running sandbox.
pub fn run_kill_on(argv: &[OsString], via: Via, timeout: Duration, token: &str) -> RunOutput {
    run_inner(argv, via, timeout, Some(token))
}

fn run_inner(argv: &[OsString], via: Via, timeout: Duration, kill_on: Option<&str>) -> RunOutput {
    let start = Instant::now();
    let Some((prog, args)) = argv.split_first() else {
        return RunOutput {
            ending: Ending::SpawnFailed("empty command".into()),
            stdout: String::new(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        };
    };
    let spawned = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return RunOutput {
                ending: Ending::SpawnFailed(format!("{}: {e}", prog.to_string_lossy())),
                stdout: String::new(),
                stderr: String::new(),
                elapsed: start.elapsed(),
            }
        }
    };
    let out_rx = child.stdout.take().map(reader);
    let err_rx = child.stderr.take().map(reader);
    let mut early = Vec::new();
    let mut killed = false;
    let ending = loop {
        if let (Some(token), Some(rx), false) = (kill_on, &out_rx, killed) {
            while let Ok(chunk) = rx.try_recv() {
                early.extend_from_slice(&chunk);
            }
            if String::from_utf8_lossy(&early).contains(token) {
                let _ = child.kill();
                killed = true;
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => break ending_of(status, via),
            Ok(None) if start.elapsed() > timeout => {
                kill_group(child.id());
                let _ = child.wait();
                break Ending::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Ending::SpawnFailed(format!("wait: {e}")),
        }
    };
    let grace = Duration::from_millis(150);
    RunOutput {
        ending,
        stdout: String::from_utf8_lossy(&early).into_owned()
            + &out_rx.map(|r| drain(&r, grace)).unwrap_or_default(),
        stderr: err_rx.map(|r| drain(&r, grace)).unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// SIGKILL the process group led by `pid` (best effort: it may be gone already).
pub fn kill_group(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(raw: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(raw)
    }

    #[test]
    fn wrapped_codes_are_decoded() {
        assert_eq!(
            ending_of(status(159 << 8), Via::Wrapped),
            Ending::Signaled(31)
        );
        assert_eq!(
            ending_of(status(125 << 8), Via::Wrapped),
            Ending::RuntimeFailed(125)
        );
        assert_eq!(ending_of(status(1 << 8), Via::Wrapped), Ending::Exited(1));
        assert_eq!(
            ending_of(status(159 << 8), Via::Native),
            Ending::Exited(159)
        );
        assert_eq!(ending_of(status(9), Via::Native), Ending::Signaled(9));
    }

    #[test]
    fn run_reports_exit_and_output() {
        let argv: Vec<OsString> = ["sh", "-c", "echo hello; exit 3"]
            .iter()
            .map(Into::into)
            .collect();
        let out = run(&argv, Via::Native, Duration::from_secs(10));
        assert_eq!(out.ending, Ending::Exited(3));
        assert_eq!(out.summary(), "hello");
    }

    #[test]
    fn run_kill_on_kills_at_the_token() {
        let argv: Vec<OsString> = ["sh", "-c", "echo READY; sleep 5; echo late"]
            .iter()
            .map(Into::into)
            .collect();
        let out = run_kill_on(&argv, Via::Native, Duration::from_secs(10), "READY");
        assert_eq!(out.ending, Ending::Signaled(9));
        assert!(out.elapsed < Duration::from_secs(4), "{out:?}");
        assert_eq!(out.summary(), "READY");
    }

    #[test]
    fn run_times_out() {
        let argv: Vec<OsString> = ["sleep", "5"].iter().map(Into::into).collect();
        let out = run(&argv, Via::Native, Duration::from_millis(200));
        assert_eq!(out.ending, Ending::TimedOut);
    }
}
