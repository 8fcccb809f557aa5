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
//! ## Threads: a reader that never waits for the plugin
//! Hook calls go to the plugin one at a time, in arrival order, from one HTTP worker thread (the
//! seed's Python servers are single-threaded anyway). The reader (the main thread) only queues
//! them, so a slow plugin with calls piling up never delays what the runtime says next:
//! * `ping` goes to a pinger thread, which answers once the plugin answered
//!   `GET /sertone/info` (the seed's own liveness check) — at most behind the one call the plugin
//!   is busy with, never behind the queue. A hung plugin stops answering pings and the daemon
//!   restarts it, which is what a hung plugin should get; a slow, healthy one is not taken for
//!   hung (and, after N such "crashes", quarantined) merely because calls queued up.
//! * `$/cancel` drops a waiting call unanswered (the runtime answered the agent already and drops
//!   a late answer, docs/protocol.md §3.4), or keeps the running call's answer from being sent.
//! * a call whose deadline (`deadline_ms`, counted from when the reader took it in) passed while
//!   it waited is answered `deadline_exceeded` at once, without asking the plugin: the agent has
//!   its answer, and asking would only delay the calls behind it. A running call gets what is left
//!   of its deadline, not a fresh one — and the worker waits a little past it ([`OVERRUN`]) rather
//!   than leave the plugin a request it would still work on while the next one queues behind.
//!
//! The queue is bounded ([`MAX_QUEUED`]; past it, `overloaded` at once). The plugin's exit status
//! is the bridge's (128+N for signal N), so `run` passes the plugin's own status through. On
//! `shutdown` the bridge sends the plugin SIGTERM (an HTTP server has no stdin to read it from)
//! and exits once the plugin has ended: 0 when that SIGTERM ended it, the plugin's own status
//! otherwise — never 0 at once, which lost the status of a plugin that ended just before.

use crate::error::CmdError;
use crate::exit::Exit;
use crate::host::sertone::content_length;
use crate::sandbox::report::ExitInfo;
use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use stockade_policy::manifest::{Manifest, HTTP_HOOKS};
use stockade_policy::protocol::message::{codes, response_err, response_ok, RpcError};
use stockade_policy::sertone;

/// Where the package is mounted inside the sandbox.
const PLUGIN_DIR: &str = "/plugin";
/// Largest HTTP answer read from the plugin.
const MAX_ANSWER: usize = 256 * 1024;
/// How long the plugin may take to answer `GET /sertone/info` after start (the runtime's
/// handshake timeout normally ends the wait first).
const START_WAIT: Duration = Duration::from_secs(60);
/// How long a health check's `GET /sertone/info` may take. The runtime's `ping_timeout_ms` is
/// the judge, and the bridge does not know it: a shorter wait here would withhold the pong of a
/// healthy single-threaded plugin busy with a call longer than this (docs/protocol.md tells
/// operators to keep `ping_timeout_ms` above the longest hook deadline), and the runtime would
/// take it for hung. One ping at a time is checked; the runtime sends no other meanwhile.
const PING_WAIT: Duration = START_WAIT;
/// How long past a call's deadline the worker still waits for the plugin's answer (which is
/// then dropped). Closing the connection at the deadline would not stop the plugin's work on
/// it — an HTTP server carries on with a request whose client left — it would only stack the
/// next request behind it, and with each abandoned request the plugin falls further behind
/// (and so does its `GET /sertone/info`, the health check). Waiting keeps at most one hook
/// request in the plugin; a plugin hung on one is the health check's to find.
const OVERRUN: Duration = Duration::from_secs(2);
/// Most hook calls waiting for the plugin; past it a call is answered `overloaded` at once.
/// The runtime keeps at most `max_in_flight` calls open per plugin (64 by default), so only a
/// runtime configured for more reaches it; the bound keeps the bridge's memory bounded anyway.
const MAX_QUEUED: usize = 256;
/// The error code of a hook call the plugin did not answer usably (HTTP error, not JSON,
/// no connection): JSON-RPC's generic server error; the runtime reports it as `plugin_error`.
const HTTP_FAILED: i64 = -32000;

fn fail(msg: String) -> CmdError {
    CmdError::new(Exit::Software, "http_bridge", std::io::Error::other(msg))
}

/// The head of an HTTP answer: its status, where its body starts, its Content-Length if any.
pub(crate) struct Head {
    pub(crate) code: u16,
    pub(crate) body_at: usize,
    pub(crate) len: Option<usize>,
}

/// The head of the answer in `buf`, once complete (`None`: more bytes are needed).
pub(crate) fn head_of(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let body_at = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(std::io::Error::other(format!("not an HTTP answer: {e}"))),
    };
    if resp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        // Never sent in answer to an HTTP/1.0 request; its length could not be trusted.
        return Err(std::io::Error::other(
            "a Transfer-Encoding answer to an HTTP/1.0 request",
        ));
    }
    // As strict as the front is with its requests, by the same function.
    let len = content_length(resp.headers).map_err(std::io::Error::other)?;
    Ok(Some(Head {
        code: resp.code.unwrap_or(0),
        body_at,
        len,
    }))
}

/// One HTTP/1.0 exchange with the plugin on 127.0.0.1:`port`: HTTP/1.0 so the answer is never
/// chunked. The answer ends after its Content-Length — a server that keeps the connection open
/// anyway (keep-alive) is not waited for past it — or, without one, when the plugin closes the
/// connection (`Connection: close`). Returns (status, body). Running out of `timeout` is an
/// error of kind `TimedOut` that says after how long: a socket's own timeout reads as EAGAIN,
/// "Resource temporarily unavailable", which reached the bypass reasons as such.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    talk(port, method, path, body, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
        _ => e,
    })
}

/// [`exchange`], its timeouts still as the socket reports them.
fn talk(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)))?;
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
    let mut head = None;
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
        if head.is_none() {
            head = head_of(&buf)?;
        }
        if let Some(Head {
            body_at,
            len: Some(len),
            ..
        }) = head
        {
            if buf.len() >= body_at.saturating_add(len) {
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
    let Some(head) = head.map_or_else(|| head_of(&buf), |h| Ok(Some(h)))? else {
        return Err(std::io::Error::other("truncated HTTP answer"));
    };
    let mut body = buf.split_off(head.body_at);
    if let Some(n) = head.len {
        if body.len() < n {
            return Err(std::io::Error::other(
                "HTTP answer shorter than its Content-Length",
            ));
        }
        body.truncate(n);
    }
    Ok((head.code, body))
}

/// One frame to the runtime. The reader, the HTTP worker and the pinger all write: each frame
/// is written whole under stdout's lock, so two threads' frames never interleave.
fn send(v: &serde_json::Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&line)?;
    out.flush()
}

/// A hook call taken in from the runtime, waiting for the HTTP worker.
#[derive(Debug)]
struct Call {
    id: serde_json::Value,
    hook: String,
    payload: serde_json::Value,
    /// When its `deadline_ms` runs out, counted from when the reader took it in (which reads
    /// as the runtime writes: the runtime's own deadline ends no later than this).
    due: Instant,
}

/// The calls between the reader and the HTTP worker, in arrival order. Pure: no I/O, the clock
/// passed in, so the queue, cancel and expiry rules are unit-tested on their own.
#[derive(Debug, Default)]
struct Pending {
    waiting: VecDeque<Call>,
    /// The call the worker has now, and whether the runtime cancelled it since.
    running: Option<(serde_json::Value, bool)>,
}

impl Pending {
    /// Queue a call; a full queue hands it back, to be answered `overloaded` at once.
    fn push(&mut self, call: Call) -> Result<(), Call> {
        if self.waiting.len() >= MAX_QUEUED {
            return Err(call);
        }
        self.waiting.push_back(call);
        Ok(())
    }

    /// `$/cancel`: the runtime has answered the agent already and drops any later answer
    /// (docs/protocol.md §3.4), so a waiting call is dropped without an answer and never reaches
    /// the plugin; the running one is marked, and its answer is not sent.
    fn cancel(&mut self, id: &serde_json::Value) {
        if let Some(i) = self.waiting.iter().position(|c| &c.id == id) {
            self.waiting.remove(i);
        } else if let Some((running, cancelled)) = &mut self.running {
            if running == id {
                *cancelled = true;
            }
        }
    }

    /// The worker's next call, and whether its deadline had passed by `now` (then it is
    /// answered `deadline_exceeded` at once instead of being sent to the plugin).
    fn next(&mut self, now: Instant) -> Option<(Call, bool)> {
        let call = self.waiting.pop_front()?;
        self.running = Some((call.id.clone(), false));
        let expired = now >= call.due;
        Some((call, expired))
    }

    /// The worker is done with call `id`: whether its answer is still wanted.
    fn finish(&mut self, id: &serde_json::Value) -> bool {
        match self.running.take() {
            Some((running, cancelled)) if &running == id => !cancelled,
            other => {
                self.running = other;
                true
            }
        }
    }
}

/// [`Pending`] shared by the reader (push, cancel) and the HTTP worker (take, finish).
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    added: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panicking holder left the queue consistent (every change is one call).
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, call: Call) -> Result<(), Call> {
        self.lock().push(call)?;
        self.added.notify_one();
        Ok(())
    }

    fn cancel(&self, id: &serde_json::Value) {
        self.lock().cancel(id);
    }

    /// Wait for the next call.
    fn take(&self) -> (Call, bool) {
        let mut p = self.lock();
        loop {
            if let Some(next) = p.next(Instant::now()) {
                return next;
            }
            p = self.added.wait(p).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn finish(&self, id: &serde_json::Value) -> bool {
        self.lock().finish(id)
    }
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
    // Taken before the waiter below can reap the plugin: the stop signal sent through it can
    // reach no other process that got the plugin's pid since.
    let plugin = i32::try_from(pid)
        .map_err(std::io::Error::other)
        .and_then(crate::sys::pidfd_open)
        .map_err(|e| fail(format!("pidfd_open of the plugin: {e}")))?;
    let stop_sent = Arc::new(AtomicBool::new(false));
    let stopped = stop_sent.clone();
    // The plugin's end is the bridge's end: the runtime sees a crash and restarts it. The
    // plugin's status is the bridge's, as any program's is the sandbox's (docs/exit-codes.md:
    // `run` passes it through, 128+N for signal N). This thread is the only one that exits
    // while the plugin runs, so the status is never lost to a `shutdown` read meanwhile.
    std::thread::spawn(move || {
        let status = child.wait();
        crate::output::print_stderr(&format!(
            "stockade http-bridge: the plugin (pid {pid}) ended: {status:?}"
        ));
        std::process::exit(match status {
            Ok(s) => exit_status(s.into_raw(), stopped.load(Ordering::SeqCst)),
            Err(_) => i32::from(Exit::Software.code()),
        });
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
    crate::output::print_stderr(&format!(
        "stockade http-bridge: ready on 127.0.0.1:{} ({})",
        http.port,
        info.get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("unnamed")
    ));

    let io = |e: std::io::Error| fail(format!("protocol link: {e}"));
    send(
        &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "handshake", "params": {
            "name": m.name, "version": m.version, "api": m.api,
            "capabilities": m.requested_capabilities, "hooks": m.hooks}}),
    )
    .map_err(io)?;

    let queue = Arc::new(Queue::default());
    let port = http.port;
    let worker = queue.clone();
    spawn("http worker", move || work(&worker, port))?;
    // One ping at a time is ever outstanding (the runtime waits for its pong or its timeout);
    // a second one while the first is still checked is dropped rather than queued without end.
    let (pings, pinged) = std::sync::mpsc::sync_channel::<serde_json::Value>(1);
    spawn("ping", move || {
        for id in pinged {
            // Alive means the plugin answers `GET /sertone/info` (seed 003's liveness check),
            // not merely that the bridge runs: otherwise no pong, and the daemon's ping
            // deadline restarts the plugin as hung.
            let alive = matches!(
                exchange(port, "GET", "/sertone/info", b"", PING_WAIT),
                Ok((200, _))
            );
            if alive {
                let _ = send(&response_ok(&id, serde_json::json!({})));
            }
        }
    })?;

    // The reader: never waits for the plugin, so a ping or a `$/cancel` is taken in as soon as
    // the runtime sends it, whatever the HTTP worker is busy with.
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(io)?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let id = msg.get("id").cloned();
        match msg.get("method").and_then(|m| m.as_str()) {
            Some("shutdown") => stop(&plugin, &stop_sent),
            Some("ping") => {
                if let Some(id) = id {
                    let _ = pings.try_send(id);
                }
            }
            Some("$/cancel") => queue.cancel(&msg["params"]["id"]),
            Some("hook_invoke") => {
                let Some(id) = id else { continue };
                let p = &msg["params"];
                let deadline = Duration::from_millis(p["deadline_ms"].as_u64().unwrap_or(1000));
                let now = Instant::now();
                let call = Call {
                    id,
                    hook: p["hook"].as_str().unwrap_or("").to_string(),
                    payload: p["payload"].clone(),
                    // The runtime caps deadlines far below any overflow; an absurd one is a day.
                    due: now
                        .checked_add(deadline)
                        .unwrap_or(now + Duration::from_secs(86_400)),
                };
                if let Err(c) = queue.push(call) {
                    send(&error(
                        &c.id,
                        codes::OVERLOADED,
                        format!("{MAX_QUEUED} calls already wait for the plugin"),
                    ))
                    .map_err(io)?;
                }
            }
            // Answers to nothing we asked.
            _ => {}
        }
    }
    // The runtime's end of the link closed: it is gone or stopping the plugin.
    stop(&plugin, &stop_sent)
}

/// Stop the plugin because the runtime asked (`shutdown`, or the link's end), and leave the
/// bridge's exit to the waiter, which passes the plugin's status on. Exiting 0 here at once, as
/// the bridge did, lost the status of a plugin that had died (during the last call, say) just
/// before the `shutdown`: `run` ended 0 instead of with the plugin's code.
///
/// A plugin already ended is not signalled, so its own status (even 128+15) stands. One still
/// running gets SIGTERM, an HTTP server's stop signal (it has no stdin to read `shutdown` from);
/// dying of it is the clean stop, 0 ([`exit_status`]), and any other end its own status. One
/// that ignores it is killed with the whole sandbox when the runtime's shutdown grace ends
/// (137), as a stdio plugin that ignores `shutdown` is.
fn stop(plugin: &std::os::fd::OwnedFd, stop_sent: &AtomicBool) -> ! {
    // A poll that fails (a policy without it) counts as running: SIGTERM to a process that
    // has just ended changes nothing of its status.
    if !crate::sys::pidfd_exited(plugin.as_fd()).unwrap_or(false) {
        // Before the signal: the waiter reads it after the plugin's end, which follows.
        stop_sent.store(true, Ordering::SeqCst);
        let _ = crate::sys::pidfd_kill(plugin.as_fd(), libc::SIGTERM);
    }
    loop {
        std::thread::park();
    }
}

/// The bridge's exit status for the plugin's raw wait status: the plugin's own (128+N for
/// signal N), except 0 for the death by the SIGTERM [`stop`] sent it, which is the clean end
/// of a session (docs/exit-codes.md: `run` exits 0 after a clean shutdown).
fn exit_status(raw: i32, stop_sent: bool) -> i32 {
    let info = ExitInfo::from_wait_status(raw);
    if stop_sent && info.signal == Some(libc::SIGTERM) {
        return 0;
    }
    info.status
}

/// The HTTP worker: one call at a time, in arrival order (the seed's Python servers are
/// single-threaded anyway), each with what is left of its deadline (and [`OVERRUN`]).
fn work(queue: &Queue, port: u16) {
    loop {
        let (call, expired) = queue.take();
        let reply = if expired {
            // Its deadline passed while it waited: the runtime has answered the agent already,
            // and asking the plugin now would only delay the calls behind it.
            error(
                &call.id,
                codes::DEADLINE_EXCEEDED,
                "the deadline passed before the plugin was asked".into(),
            )
        } else {
            let left = call.due.saturating_duration_since(Instant::now());
            match invoke(port, &call.hook, &call.payload, left + OVERRUN) {
                Ok(v) => response_ok(&call.id, v),
                Err(m) => error(&call.id, HTTP_FAILED, m),
            }
        };
        // A call cancelled while the plugin had it: its answer would be dropped anyway.
        if queue.finish(&call.id) {
            let _ = send(&reply);
        }
    }
}

/// One hook call as one HTTP request; the answer's JSON, or why there is none.
fn invoke(
    port: u16,
    hook: &str,
    payload: &serde_json::Value,
    left: Duration,
) -> Result<serde_json::Value, String> {
    let Some((_, path)) = HTTP_HOOKS.iter().find(|(h, _)| *h == hook) else {
        return Err(format!("{hook} has no HTTP endpoint"));
    };
    // The last hop before the plugin: metadata only here too, whatever path the call took (the
    // runtime's entry points rebuild it already; a future one that forgot cannot undo it).
    let payload = sertone::metadata_only(hook, payload).map_err(|e| format!("{hook}: {e}"))?;
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    match exchange(port, "POST", path, &body, left) {
        Ok((200, b)) => serde_json::from_slice::<serde_json::Value>(&b)
            .map_err(|_| format!("POST {path}: the answer is not JSON")),
        Ok((code, _)) => Err(format!("POST {path} answered HTTP {code}")),
        Err(e) => Err(format!("POST {path}: {e}")),
    }
}

fn error(id: &serde_json::Value, code: i64, message: String) -> serde_json::Value {
    response_err(id, &RpcError::new(code, message))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), CmdError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| fail(format!("cannot start the {name} thread: {e}")))
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
    fn a_plugin_too_slow_to_answer_is_said_to_have_timed_out() {
        let (port, _t) = fake(b"HTTP/1.1 200 OK\r\n\r\n{}", Duration::from_secs(3));
        let e = exchange(
            port,
            "POST",
            "/sertone/pre-request",
            b"{}",
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert_eq!(e.to_string(), "no answer within 200 ms");
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

    /// A fake plugin that answers with a complete Content-Length body and then keeps the
    /// connection open until the client closes it (keep-alive, `Connection: close` ignored).
    fn keep_alive(answer: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            // Held open until the bridge closes its end (read returns 0 or fails).
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        port
    }

    #[test]
    fn an_answer_ends_at_its_content_length_even_on_a_connection_kept_open() {
        let port = keep_alive(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 14\r\n\r\n{\"allow\":true}",
        );
        // The server never closes: only the Content-Length ends this read before the deadline
        // (reading to EOF, as the bridge once did, ends it at the deadline, with an error).
        let (code, body) = exchange(
            port,
            "POST",
            "/sertone/pre-request",
            b"{}",
            Duration::from_secs(10),
        )
        .expect("the answer, read to its Content-Length");
        assert_eq!((code, body.as_slice()), (200, &b"{\"allow\":true}"[..]));
    }

    #[test]
    fn chunked_and_conflicting_length_answers_are_errors() {
        let (port, _t) = fake(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            Duration::ZERO,
        );
        let e = exchange(port, "GET", "/sertone/info", b"", Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("Transfer-Encoding"), "{e}");
        let (port, _t) = fake(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
            Duration::ZERO,
        );
        let e = exchange(port, "GET", "/sertone/info", b"", Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("more than one"), "{e}");
    }

    /// The front refuses these lengths in requests; the bridge took `+5` (and two equal
    /// headers) in answers. One strict reader for both now.
    #[test]
    fn answer_lengths_are_one_run_of_digits() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        ] {
            assert!(
                head_of(bad).is_err(),
                "accepted: {}",
                String::from_utf8_lossy(bad)
            );
        }
        let h = head_of(b"HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!((h.code, h.len), (200, Some(2)));
    }

    #[test]
    fn the_plugins_status_is_the_bridges_but_for_the_stop_it_was_sent() {
        let exited = |code: i32| code << 8;
        let killed = |sig: i32| sig;
        assert_eq!(exit_status(exited(7), false), 7);
        assert_eq!(
            exit_status(exited(7), true),
            7,
            "its own end, even when stopped"
        );
        assert_eq!(exit_status(exited(0), true), 0);
        assert_eq!(
            exit_status(killed(libc::SIGTERM), true),
            0,
            "the clean stop"
        );
        assert_eq!(
            exit_status(killed(libc::SIGTERM), false),
            128 + libc::SIGTERM
        );
        assert_eq!(
            exit_status(killed(libc::SIGKILL), true),
            128 + libc::SIGKILL
        );
    }

    fn call(id: u64, due: Instant) -> Call {
        Call {
            id: id.into(),
            hook: "on:sertone.pre_request".into(),
            payload: serde_json::json!({}),
            due,
        }
    }

    #[test]
    fn queued_calls_run_in_order_and_expired_ones_are_marked() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Pending::default();
        p.push(call(1, t0 + s)).unwrap();
        p.push(call(2, t0 + s)).unwrap();
        p.push(call(3, t0 + 3 * s)).unwrap();
        let (c, expired) = p.next(t0).unwrap();
        assert_eq!((c.id, expired), (1.into(), false));
        assert!(p.finish(&1.into()), "not cancelled: answered");
        // Call 1 took the plugin past call 2's deadline: 2 is not sent, 3 still is.
        let (c, expired) = p.next(t0 + 2 * s).unwrap();
        assert_eq!((c.id, expired), (2.into(), true));
        assert!(p.finish(&2.into()));
        let (c, expired) = p.next(t0 + 2 * s).unwrap();
        assert_eq!((c.id, expired), (3.into(), false));
        assert!(p.next(t0).is_none());
    }

    #[test]
    fn a_cancelled_call_is_dropped_or_its_answer_withheld() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_secs(1);
        let mut p = Pending::default();
        for id in 1..=3 {
            p.push(call(id, due)).unwrap();
        }
        let (c, _) = p.next(t0).unwrap();
        assert_eq!(c.id, 1);
        // The running call: its answer is not sent.
        p.cancel(&1.into());
        // A waiting call: never reaches the plugin.
        p.cancel(&2.into());
        // An id nobody has: nothing happens.
        p.cancel(&9.into());
        assert!(!p.finish(&1.into()), "cancelled while running: no answer");
        let (c, _) = p.next(t0).unwrap();
        assert_eq!(c.id, 3, "call 2 was dropped");
        assert!(p.finish(&3.into()));
        assert!(p.next(t0).is_none());
    }

    #[test]
    fn a_full_queue_hands_the_call_back() {
        let due = Instant::now();
        let mut p = Pending::default();
        for id in 0..MAX_QUEUED as u64 {
            p.push(call(id, due)).unwrap();
        }
        let back = p.push(call(999, due)).unwrap_err();
        assert_eq!(back.id, 999);
    }

    #[test]
    fn the_worker_takes_what_the_reader_queues() {
        let q = Arc::new(Queue::default());
        let w = q.clone();
        let t = std::thread::spawn(move || w.take());
        q.push(call(5, Instant::now() + Duration::from_secs(3600)))
            .unwrap();
        let (c, expired) = t.join().unwrap();
        assert_eq!((c.id, expired), (5.into(), false));
    }
}
