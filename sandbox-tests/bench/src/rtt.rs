//! Hook round trips: agent → runtime → plugin → runtime → agent over `stockade run`, against
//! the physical floor of the same bytes ping-ponged through a pipe pair with one other process.
//!
//! The floor process is this benchmark itself (`stockade-bench echo`): it reads a line and
//! writes it back, with the same line framing the runtime must do, so the difference is what
//! Stockade adds (parsing, checks, the second hop to the plugin and back).

use crate::fixture::Fixture;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A request line carrying a payload of `size` ASCII bytes (the bench plugin echoes it).
pub fn request(id: u64, size: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"hook_invoke\",\"params\":{{\"hook\":\"on:bench.echo\",\"payload\":\""
    )
    .into_bytes();
    v.resize(v.len() + size, b'a');
    v.extend_from_slice(b"\"}}\n");
    v
}

/// A line-echo session: the floor (`stockade-bench echo`) or `stockade run`.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl Session {
    /// Starts the floor echo process.
    pub fn floor() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Self::start(Command::new(exe).arg("echo"), false)
    }

    /// Starts `stockade run` on the fixture's package and waits until the plugin is ready.
    pub fn stockade(f: &Fixture) -> Result<Self, String> {
        let mut c = Command::new(&f.stockade);
        c.args(f.run_args(&f.package, &f.policy));
        Self::start(&mut c, true)
    }

    fn start(cmd: &mut Command, wait_ready: bool) -> Result<Self, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take();
        let stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped"));
        let mut s = Self {
            child,
            stdin,
            stdout,
            line: String::new(),
        };
        if wait_ready {
            loop {
                let l = s.next_line()?;
                let m: serde_json::Value = serde_json::from_str(&l).map_err(|e| e.to_string())?;
                if m["method"] == "plugin_state" && m["params"]["state"] == "ready" {
                    break;
                }
            }
        }
        Ok(s)
    }

    fn next_line(&mut self) -> Result<String, String> {
        self.line.clear();
        let n = self
            .stdout
            .read_line(&mut self.line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the session ended early".into());
        }
        Ok(std::mem::take(&mut self.line))
    }

    /// Reads lines until the answer to `id` and checks it carries `size` payload bytes back
    /// (a notification in between is skipped; an error answer fails the benchmark).
    fn answer(&mut self, id: u64, size: usize) -> Result<(), String> {
        let tag = format!("\"id\":{id},");
        loop {
            let l = self.next_line()?;
            if !l.contains(&tag) {
                continue;
            }
            // The floor echoes the request itself; the runtime answers `{"echo": "aaa…"}`.
            let a = l.bytes().filter(|&b| b == b'a').count();
            if a < size || l.contains("\"error\"") {
                return Err(format!("bad answer to {id}: {}", &l[..l.len().min(200)]));
            }
            return Ok(());
        }
    }

    /// `n` sequential round trips of `size`-byte payloads after `warmup` unmeasured ones.
    pub fn round_trips(
        &mut self,
        size: usize,
        warmup: usize,
        n: usize,
        first_id: u64,
    ) -> Result<Vec<Duration>, String> {
        let mut out = Vec::with_capacity(n);
        for i in 0..warmup + n {
            let id = first_id + i as u64;
            let req = request(id, size);
            let t0 = Instant::now();
            self.stdin
                .as_mut()
                .ok_or("stdin closed")?
                .write_all(&req)
                .map_err(|e| e.to_string())?;
            self.answer(id, size)?;
            if i >= warmup {
                out.push(t0.elapsed());
            }
        }
        Ok(out)
    }

    /// Pipelined throughput: `n` requests of `size` bytes with at most `window` in flight;
    /// returns hooks per second. A writer thread feeds requests as credits come back.
    pub fn pipelined(&mut self, size: usize, n: usize, window: usize) -> Result<f64, String> {
        let mut stdin = self.stdin.take().ok_or("stdin closed")?;
        let (credit_tx, credit_rx) = mpsc::channel::<()>();
        for _ in 0..window {
            credit_tx.send(()).map_err(|e| e.to_string())?;
        }
        let t0 = Instant::now();
        let writer = std::thread::spawn(move || -> Result<ChildStdin, String> {
            for i in 0..n {
                credit_rx.recv().map_err(|e| e.to_string())?;
                stdin
                    .write_all(&request(1_000_000 + i as u64, size))
                    .map_err(|e| e.to_string())?;
            }
            Ok(stdin)
        });
        for _ in 0..n {
            let l = self.next_line()?;
            if l.contains("\"method\"") {
                continue;
            }
            if l.contains("\"error\"") {
                return Err(format!("pipelined call failed: {}", &l[..l.len().min(200)]));
            }
            let _ = credit_tx.send(());
        }
        let secs = t0.elapsed().as_secs_f64();
        let stdin = writer.join().map_err(|_| "writer panicked")??;
        self.stdin = Some(stdin);
        Ok(n as f64 / secs)
    }

    /// Closes stdin (graceful stop) and reaps the process.
    pub fn finish(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        std::io::copy(&mut self.stdout, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let st = self.child.wait().map_err(|e| e.to_string())?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("session exited with {st}"))
        }
    }
}

/// Runs `f` with this process — and every process it starts meanwhile, which inherit the
/// affinity: the floor's echo, `stockade run` and its plugin — on one CPU (the last one), then
/// restores the affinity. Isolates what the processes cost from what waking an idle CPU costs.
pub fn on_one_cpu<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let me = Pid::from_raw(0);
    let saved = sched_getaffinity(me).map_err(|e| format!("sched_getaffinity: {e}"))?;
    let cpu = (0..CpuSet::count())
        .rev()
        .find(|&c| saved.is_set(c).unwrap_or(false))
        .ok_or("no CPU in the affinity mask")?;
    let mut one = CpuSet::new();
    one.set(cpu).map_err(|e| e.to_string())?;
    sched_setaffinity(me, &one).map_err(|e| format!("sched_setaffinity: {e}"))?;
    let r = f();
    sched_setaffinity(me, &saved).map_err(|e| format!("sched_setaffinity: {e}"))?;
    r
}

/// The floor's side: echo every line back (the hidden `echo` subcommand).
pub fn echo_loop() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::with_capacity(1 << 20);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        stdout.write_all(&line)?;
        stdout.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_exactly_the_payload() {
        let r = request(7, 64);
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["params"]["payload"].as_str().unwrap().len(), 64);
        assert!(r.ends_with(b"\n"));
    }
}
