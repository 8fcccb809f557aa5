//! `stockade serve` under load: fan-out of one hook to 8 plugins, and scale — 1, 10, 100, 1000
//! supervised plugins in one daemon, with the daemon's RSS and the round trip of a hook that one
//! plugin answers while all the others are loaded and idle.
//!
//! The client speaks the agent protocol (NDJSON JSON-RPC over the Unix socket, docs/protocol.md
//! §5); notifications (`plugin_state`, `log`) interleaved with answers are skipped.

use crate::fixture::Fixture;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running daemon and one agent connection to it.
pub struct Serve {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    line: String,
}

/// A `hook_invoke` request whose payload is `size` ASCII bytes.
fn invoke(id: u64, hook: &str, size: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"hook_invoke\",\"params\":{{\"hook\":\"{hook}\",\"deadline_ms\":10000,\"payload\":\""
    )
    .into_bytes();
    v.resize(v.len() + size, b'a');
    v.extend_from_slice(b"\"}}\n");
    v
}

impl Serve {
    /// Start `stockade serve` on a socket in the fixture and connect.
    pub fn start(f: &Fixture) -> Result<Self, String> {
        Self::start_with(f, "")
    }

    /// Start with these serve-config lines.
    pub fn start_with(f: &Fixture, config_lines: &str) -> Result<Self, String> {
        let sock: PathBuf = f.root.join("serve.sock");
        let _ = std::fs::remove_file(&sock);
        let config = f.root.join("serve.toml");
        std::fs::write(&config, format!("version = 1\n{config_lines}"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&f.stockade)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&sock)
            .arg("--trust")
            .arg(&f.trust)
            .arg("--state-dir")
            .arg(&f.state)
            .arg("--policy")
            .arg(&f.policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("serve did not listen: {e}")),
            }
        };
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            reader: BufReader::with_capacity(1 << 20, stream),
            writer,
            next_id: 1,
            line: String::new(),
        })
    }

    fn next_line(&mut self) -> Result<String, String> {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("serve closed the connection".into());
        }
        Ok(std::mem::take(&mut self.line))
    }

    /// The answer line to `id` (notifications skipped).
    fn answer(&mut self, id: u64) -> Result<String, String> {
        let tag = format!("\"id\":{id},");
        let tag_end = format!("\"id\":{id}}}");
        loop {
            let l = self.next_line()?;
            if l.contains(&tag) || l.contains(&tag_end) {
                if l.contains("\"error\"") && !l.contains("\"results\"") {
                    return Err(format!("call {id} failed: {}", &l[..l.len().min(300)]));
                }
                return Ok(l);
            }
        }
    }

    /// One request; its `result`.
    fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.writer, "{req}").map_err(|e| e.to_string())?;
        let l = self.answer(id)?;
        let v: serde_json::Value = serde_json::from_str(&l).map_err(|e| e.to_string())?;
        Ok(v["result"].clone())
    }

    /// `plugin_restart` of `name`, then wait for the new incarnation to be ready: the daemon's
    /// own launch → ready time of it (`plugin_status.launch_us`), and whether it ran in a warm
    /// spare.
    pub fn restart_launch(&mut self, name: &str) -> Result<(Duration, bool), String> {
        let st = self.call("plugin_status", serde_json::json!({"name": name}))?;
        let before = st["restarts"].as_u64().unwrap_or(0);
        self.call("plugin_restart", serde_json::json!({"name": name}))?;
        self.wait_status(name, "did not come back", |st| {
            st["restarts"].as_u64().unwrap_or(0) > before && st["state"] == "ready"
        })?;
        // `launch_us` is set in the loop turn that saw the handshake; ask once more after it.
        std::thread::sleep(Duration::from_millis(2));
        let st = self.call("plugin_status", serde_json::json!({"name": name}))?;
        let us = st["launch_us"]
            .as_u64()
            .ok_or_else(|| format!("no launch_us: {st}"))?;
        Ok((Duration::from_micros(us), st["warm"] == true))
    }

    /// Wait until `name` holds a spare again (the daemon builds it after each ready): nothing
    /// of the daemon's is then running beside what is measured next.
    pub fn wait_spare(&mut self, name: &str) -> Result<(), String> {
        self.wait_status(name, "holds no spare", |st| st["spare"] == true)
    }

    /// Poll `plugin_status` of `name` every millisecond until `done` says so (20 s at most;
    /// then the error says `name` `what` and shows the last status).
    fn wait_status(
        &mut self,
        name: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            let st = self.call("plugin_status", serde_json::json!({"name": name}))?;
            if done(&st) {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Err(format!("{name} {what}: {st}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Load a package and wait until its plugin is ready.
    pub fn load(&mut self, package: &std::path::Path) -> Result<(), String> {
        let st = self.call("plugin_load", serde_json::json!({"package": package}))?;
        if st["state"] != "ready" {
            return Err(format!(
                "load of {} did not reach ready: {st}",
                package.display()
            ));
        }
        Ok(())
    }

    /// The daemon's resident set size, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// `n` sequential `hook_invoke`s of `hook` after `warmup` unmeasured ones; every answer must
    /// carry `expect` results, none of them an error.
    pub fn round_trips(
        &mut self,
        hook: &str,
        expect: usize,
        warmup: usize,
        n: usize,
    ) -> Result<Vec<Duration>, String> {
        let mut out = Vec::with_capacity(n);
        for i in 0..warmup + n {
            let id = self.next_id;
            self.next_id += 1;
            let t0 = Instant::now();
            self.writer
                .write_all(&invoke(id, hook, 64))
                .map_err(|e| e.to_string())?;
            let l = self.answer(id)?;
            if i >= warmup {
                out.push(t0.elapsed());
            }
            let got = l.matches("\"plugin\":").count();
            if got != expect || l.contains("\"bypassed\"") || l.contains("\"code\"") {
                return Err(format!(
                    "hook {hook}: expected {expect} clean results: {}",
                    &l[..l.len().min(300)]
                ));
            }
        }
        Ok(out)
    }

    /// Pipelined fan-out calls: `n` with at most `window` in flight; calls per second.
    pub fn pipelined(&mut self, hook: &str, n: usize, window: usize) -> Result<f64, String> {
        let mut w = self.writer.try_clone().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel::<()>();
        for _ in 0..window {
            tx.send(()).map_err(|e| e.to_string())?;
        }
        let first = self.next_id;
        self.next_id += n as u64;
        let hook = hook.to_string();
        let t0 = Instant::now();
        let writer = std::thread::spawn(move || -> Result<(), String> {
            for i in 0..n {
                rx.recv().map_err(|e| e.to_string())?;
                w.write_all(&invoke(first + i as u64, &hook, 64))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let mut done = 0;
        while done < n {
            let l = self.next_line()?;
            if !l.contains("\"results\"") {
                if l.contains("\"error\"") {
                    return Err(format!("pipelined call failed: {}", &l[..l.len().min(300)]));
                }
                continue;
            }
            done += 1;
            let _ = tx.send(());
        }
        let secs = t0.elapsed().as_secs_f64();
        writer.join().map_err(|_| "writer panicked")??;
        Ok(n as f64 / secs)
    }

    /// SIGTERM (graceful stop of every plugin) and reap.
    pub fn stop(mut self) -> Result<(), String> {
        // The benchmark may not link the runtime's sys module: use kill(1).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let st = self.child.wait().map_err(|e| e.to_string())?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("serve exited with {st}"))
        }
    }
}

/// A daemon left running by an error path would outlive the harness (and hold its output open).
impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
