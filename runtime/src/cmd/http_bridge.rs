//! `stockade http-bridge` (hidden): the program the runtime starts, *inside* an HTTP plugin's
//! sandbox, in place of a stdio plugin (seed 003, docs/http-plugins.md).
//!
//! ## Why a bridge inside the sandbox
//! The runtime reaches an HTTP plugin only through a socket created inside the plugin's own
//! network namespace, where nothing but `lo` exists. Creating that socket from the daemon would
//! need `setns(CLONE_NEWNET)`, i.e. CAP_SYS_ADMIN, which the capabilities and rootless modes
//! do not have; and parsing the plugin's HTTP answers in the daemon would put an HTTP parser fed
//! by untrusted bytes outside every sandbox layer. So the runtime executes its own binary as the
//! sandbox's program (from a descriptor, like any entrypoint): it inherits every layer the plugin
//! gets — namespaces, seccomp, Landlock, cgroup, no capabilities — starts the plugin as its child,
//! waits for `GET /sertone/info`, and then speaks the ordinary stdio protocol to the runtime,
//! turning each `hook_invoke` into one HTTP request on 127.0.0.1. Everything the runtime receives
//! is a protocol frame it already validates (frame cap, handshake against the signed manifest,
//! deadlines, health pings), and the Sertone answers are validated again outside
//! (`stockade_policy::sertone`). A plugin that attacks the bridge gains nothing: the bridge holds
//! no more than the plugin's own grant, and it is not dumpable, so the plugin (same uid) can
//! neither ptrace it nor open its descriptors through /proc.
//!
//! The bridge is sequential: one HTTP call at a time (the seed's Python servers are
//! single-threaded anyway). A health `ping` is answered only after the plugin answered
//! `GET /sertone/info` (the seed's own liveness check); a hung plugin therefore stops answering
//! pings, and the daemon restarts it — which is what a hung plugin should get.

use crate::error::CmdError;
use crate::exit::Exit;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stockade_policy::manifest::{Manifest, HTTP_HOOKS};

/// Where the package is mounted inside the sandbox.
const PLUGIN_DIR: &str = "/plugin";
/// Largest HTTP answer read from the plugin.
const MAX_ANSWER: usize = 256 * 1024;
/// How long the plugin may take to answer `GET /sertone/info` after start (the runtime's
/// handshake timeout normally ends the wait first).
const START_WAIT: Duration = Duration::from_secs(60);

fn fail(msg: String) -> CmdError {
    CmdError::new(Exit::Software, "http_bridge", std::io::Error::other(msg))
}

/// One HTTP/1.0 exchange with the plugin on 127.0.0.1:`port`: HTTP/1.0 so the answer is never
/// chunked and ends when the plugin closes the connection. Returns (status, body).
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left()))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left()))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_ANSWER {
            return Err(std::io::Error::other("answer larger than 256 KiB"));
        }
        if Instant::now() >= deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let at = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(std::io::Error::other("truncated HTTP answer"))
        }
        Err(e) => return Err(std::io::Error::other(format!("not an HTTP answer: {e}"))),
    };
    let code = resp.code.unwrap_or(0);
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let mut body = buf.split_off(at);
    if let Some(n) = len {
        if body.len() < n {
            return Err(std::io::Error::other(
                "HTTP answer shorter than its Content-Length",
            ));
        }
        body.truncate(n);
    }
    Ok((code, body))
}

fn send(out: &mut impl Write, v: &serde_json::Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Run the bridge (inside the sandbox). Never returns while the plugin is alive and stdin open.
pub fn run() -> Result<Exit, CmdError> {
    // Not dumpable: the plugin runs as the same uid and must not reach into the bridge.
    nix::sys::prctl::set_dumpable(false).map_err(|e| fail(format!("PR_SET_DUMPABLE: {e}")))?;
    let raw = std::fs::read(format!("{PLUGIN_DIR}/manifest.json"))
        .map_err(|e| fail(format!("cannot read {PLUGIN_DIR}/manifest.json: {e}")))?;
    // The runtime verified this manifest before the launch; it is parsed again here only to
    // read the transport, never trusted for a decision (the handshake is checked outside).
    let m = Manifest::parse(&raw).map_err(|e| fail(format!("manifest: {e}")))?;
    let http = m
        .http
        .clone()
        .ok_or_else(|| fail("the manifest has no http section".into()))?;
    let entry = format!("{PLUGIN_DIR}/{}", m.entrypoint);
    let mut cmd = match &http.interpreter {
        Some(i) => {
            let mut c = Command::new(i);
            c.arg(&entry);
            c
        }
        None => Command::new(&entry),
    };
    // The plugin's stdout is not the protocol link: its prints go to stderr, the runtime's log.
    let stdout_to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| fail(format!("dup stderr: {e}")))?;
    cmd.current_dir(PLUGIN_DIR)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| !k.starts_with("STOCKADE_")))
        .envs(&http.env)
        .env("PORT", http.port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_to_stderr));
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start {entry}: {e}")))?;
    let pid = child.id();
    // The plugin's end is the bridge's end: the runtime sees a crash and restarts it.
    std::thread::spawn(move || {
        let status = child.wait();
        eprintln!("stockade http-bridge: the plugin (pid {pid}) ended: {status:?}");
        std::process::exit(1);
    });

    // Ready = `GET /sertone/info` answers 200 with a JSON object.
    let started = Instant::now();
    let info = loop {
        match exchange(
            http.port,
            "GET",
            "/sertone/info",
            b"",
            Duration::from_secs(2),
        ) {
            Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v.is_object() => break v,
                _ => {
                    return Err(fail(
                        "GET /sertone/info did not answer a JSON object".into(),
                    ))
                }
            },
            Ok((code, _)) => return Err(fail(format!("GET /sertone/info answered {code}"))),
            Err(_) if started.elapsed() < START_WAIT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                return Err(fail(format!(
                    "the plugin never answered GET /sertone/info: {e}"
                )))
            }
        }
    };
    eprintln!(
        "stockade http-bridge: ready on 127.0.0.1:{} ({})",
        http.port,
        info.get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("unnamed")
    );

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| fail(format!("protocol link: {e}"));
    send(
        &mut out,
        &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "handshake", "params": {
            "name": m.name, "version": m.version, "api": m.api,
            "capabilities": m.requested_capabilities, "hooks": m.hooks}}),
    )
    .map_err(io)?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(io)?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let id = msg.get("id").cloned();
        match msg.get("method").and_then(|m| m.as_str()) {
            Some("shutdown") => return Ok(Exit::Ok),
            Some("ping") => {
                // Alive means the plugin answers `GET /sertone/info` (seed 003's liveness check),
                // not merely that the bridge runs: otherwise no pong, and the daemon's ping
                // deadline restarts the plugin as hung.
                let alive = matches!(
                    exchange(
                        http.port,
                        "GET",
                        "/sertone/info",
                        b"",
                        Duration::from_secs(2)
                    ),
                    Ok((200, _))
                );
                if let (Some(id), true) = (id, alive) {
                    send(
                        &mut out,
                        &serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                    )
                    .map_err(io)?;
                }
            }
            Some("hook_invoke") => {
                let Some(id) = id else { continue };
                let p = &msg["params"];
                let hook = p["hook"].as_str().unwrap_or("");
                let deadline = Duration::from_millis(p["deadline_ms"].as_u64().unwrap_or(1000));
                let answer = match HTTP_HOOKS.iter().find(|(h, _)| *h == hook) {
                    None => Err(format!("{hook} has no HTTP endpoint")),
                    Some((_, path)) => {
                        let body = serde_json::to_vec(&p["payload"]).unwrap_or_default();
                        match exchange(http.port, "POST", path, &body, deadline) {
                            Ok((200, b)) => serde_json::from_slice::<serde_json::Value>(&b)
                                .map_err(|_| format!("POST {path}: the answer is not JSON")),
                            Ok((code, _)) => Err(format!("POST {path} answered HTTP {code}")),
                            Err(e) => Err(format!("POST {path}: {e}")),
                        }
                    }
                };
                let reply = match answer {
                    Ok(v) => serde_json::json!({"jsonrpc": "2.0", "id": id, "result": v}),
                    Err(m) => serde_json::json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32000, "message": m}}),
                };
                send(&mut out, &reply).map_err(io)?;
            }
            // Answers to nothing we asked, `$/cancel` (calls are short and sequential).
            _ => {}
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot fake plugin: accepts one connection, reads the request, writes `answer`.
    fn fake(answer: &'static [u8], delay: Duration) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request, body included: closing with unread bytes would reset the
            // connection before the client reads the answer.
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            let complete = |req: &[u8]| {
                let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                req.len() >= end + 4 + len
            };
            while !complete(&req) {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            std::thread::sleep(delay);
            let _ = s.write_all(answer);
            req
        });
        (port, t)
    }

    #[test]
    fn exchanges_parse_status_and_body_and_honour_content_length() {
        let (port, t) = fake(
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"allow\":true}trailing",
            Duration::ZERO,
        );
        let (code, body) = exchange(
            port,
            "POST",
            "/sertone/pre-request",
            b"{}",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(code, 200);
        assert_eq!(body, b"{\"allow\":true");
        let req = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(
            req.starts_with("POST /sertone/pre-request HTTP/1.0\r\n"),
            "{req}"
        );
        assert!(req.contains("Content-Length: 2\r\n"), "{req}");
    }

    #[test]
    fn bad_short_and_slow_answers_are_errors() {
        let (port, _t) = fake(b"<html>not http", Duration::ZERO);
        assert!(exchange(port, "GET", "/sertone/info", b"", Duration::from_secs(5)).is_err());
        let (port, _t) = fake(
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",
            Duration::ZERO,
        );
        let e = exchange(port, "GET", "/sertone/info", b"", Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("shorter"), "{e}");
        let (port, _t) = fake(b"HTTP/1.1 200 OK\r\n\r\n{}", Duration::from_secs(3));
        let t0 = Instant::now();
        assert!(exchange(
            port,
            "GET",
            "/sertone/info",
            b"",
            Duration::from_millis(200)
        )
        .is_err());
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the deadline bounds the wait"
        );
        let (port, _t) = fake(b"HTTP/1.1 503 Busy\r\n\r\n", Duration::ZERO);
        let (code, _) =
            exchange(port, "GET", "/sertone/info", b"", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 503);
    }
}
