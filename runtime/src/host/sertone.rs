//! The Sertone HTTP front of `stockade serve` (`--sertone-listen`, seed 003, docs/http-plugins.md).
//!
//! A control center registers Stockade itself as its plugin URL. Each `POST` is rebuilt from the
//! documented metadata fields (`stockade_policy::sertone`), fanned out as the hook
//! `on:sertone.pre_request` / `on:sertone.post_response` to every loaded plugin registered for it
//! — through the same fan-out, deadlines, restarts and quarantine as agent calls — and the answers
//! are combined into one. The answer is sent within `[sertone] deadline_ms` whatever the plugins
//! do: a plugin still silent then is bypassed (fail-open) and named under `bypassed`.
//!
//! Same loop, same thread as the rest of the daemon: connections are non-blocking, requests are
//! parsed with `httparse` (a kept crate; we write no HTTP tokenizer), bodies are capped, one
//! request per connection is in flight at a time (keep-alive is honoured; pipelined requests wait
//! their turn), and a peer that is not loopback is closed at accept unless the config allows
//! more.

use super::daemon::{log_line, Daemon};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stockade_policy::protocol::message::HookInvoke;
use stockade_policy::sertone::{self, Outcome};

/// The listener's token.
pub(crate) const LISTENER: Token = Token(2);
/// HTTP connection tokens (above the agent connections').
pub(crate) const HTTP_BASE: usize = 1 << 41;
/// Largest request head plus body.
const MAX_REQUEST: usize = 64 * 1024;
/// Largest body.
const MAX_BODY: usize = 16 * 1024;

/// A parsed request, or why none is there yet.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// Answer with this status and close.
    Bad(u16, &'static str),
    /// One whole request: method, path, body, keep-alive, bytes used.
    Request {
        method: String,
        path: String,
        body: Vec<u8>,
        keep_alive: bool,
        used: usize,
    },
}

/// Parse one request from the front of `buf` (pure: unit-tested below).
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => {
            return Parsed::Bad(431, "request head too large")
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431, "too many headers"),
        Err(_) => return Parsed::Bad(400, "malformed request"),
    };
    let mut len = 0usize;
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        let v = String::from_utf8_lossy(h.value).trim().to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad(411, "chunked bodies are not accepted; send Content-Length");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match v.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => len = n,
                Ok(_) => return Parsed::Bad(413, "body larger than 16 KiB"),
                Err(_) => return Parsed::Bad(400, "bad Content-Length"),
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v == "close" {
                keep_alive = false;
            } else if v == "keep-alive" {
                keep_alive = true;
            }
        }
    }
    if buf.len() < head + len {
        return Parsed::Partial;
    }
    Parsed::Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: buf[head..head + len].to_vec(),
        keep_alive,
        used: head + len,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// One HTTP connection.
pub(crate) struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// A request is being fanned out; later bytes wait.
    busy: bool,
    keep_alive: bool,
    /// Close once `out` is written.
    closing: bool,
    /// The peer closed its side.
    eof: bool,
}

impl HttpConn {
    fn respond(&mut self, status: u16, body: &Value) {
        let b = body.to_string();
        let conn = if self.keep_alive && !self.closing {
            "keep-alive"
        } else {
            "close"
        };
        self.out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: {conn}\r\n\r\n{b}",
                reason(status),
                b.len()
            )
            .as_bytes(),
        );
        if !self.keep_alive {
            self.closing = true;
        }
        self.busy = false;
    }

    /// Write what is queued; false when the connection is finished.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        !(self.closing || (self.eof && !self.busy))
    }
}

/// The front: its listener, its connections, its limits.
pub struct Front {
    listener: TcpListener,
    conns: BTreeMap<usize, HttpConn>,
    next: usize,
    deadline: Duration,
    allow_remote: bool,
    max_connections: usize,
}

/// Parse and check a listen address: loopback unless `allow_remote`.
pub fn listen_addr(s: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("`{s}` is not IP:PORT (e.g. 127.0.0.1:4000)"))?;
    if !a.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "{a} is not a loopback address; set [sertone] allow_remote = true in the serve config \
             to listen beyond this host"
        ));
    }
    Ok(a)
}

impl Front {
    /// A front on `listener` (already bound by the caller).
    pub fn new(
        listener: std::net::TcpListener,
        cfg: &stockade_policy::serve::SertoneSection,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener: TcpListener::from_std(listener),
            conns: BTreeMap::new(),
            next: HTTP_BASE,
            deadline: Duration::from_millis(cfg.deadline_ms),
            allow_remote: cfg.allow_remote,
            max_connections: cfg.max_connections,
        })
    }

    /// Register the listener with the daemon's poll.
    pub fn register(&mut self, r: &mio::Registry) -> std::io::Result<()> {
        r.register(&mut self.listener, LISTENER, Interest::READABLE)
    }
}

fn pending_why(deadline: Duration) -> String {
    format!(
        "no answer within the front's {} ms deadline",
        deadline.as_millis()
    )
}

impl Daemon {
    pub(crate) fn sertone_accept(&mut self) {
        let Some(f) = self.front.as_mut() else { return };
        loop {
            let (mut stream, peer) = match f.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log_line(&format!("sertone: accept failed: {e}"));
                    return;
                }
            };
            if !peer.ip().is_loopback() && !f.allow_remote {
                log_line(&format!("sertone: refused {peer}: not loopback"));
                continue;
            }
            if f.conns.len() >= f.max_connections {
                log_line(&format!("sertone: refused {peer}: too many connections"));
                continue;
            }
            let t = f.next;
            f.next += 1;
            if self
                .sup
                .registry()
                .register(
                    &mut stream,
                    Token(t),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let _ = stream.set_nodelay(true);
            f.conns.insert(
                t,
                HttpConn {
                    stream,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    busy: false,
                    keep_alive: true,
                    closing: false,
                    eof: false,
                },
            );
        }
    }

    /// Readable or writable: read, answer what can be answered, write, close when done.
    pub(crate) fn sertone_event(&mut self, t: usize, now: Instant) {
        let Some(f) = self.front.as_mut() else { return };
        let Some(c) = f.conns.get_mut(&t) else { return };
        let mut chunk = [0u8; 8192];
        while !c.eof && c.inbuf.len() < MAX_REQUEST + 8192 {
            match c.stream.read(&mut chunk) {
                Ok(0) => c.eof = true,
                Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.eof = true;
                    c.closing = true;
                }
            }
        }
        self.sertone_next_request(t, now);
        self.sertone_flush(t);
    }

    fn sertone_flush(&mut self, t: usize) {
        let Some(f) = self.front.as_mut() else { return };
        let alive = f.conns.get_mut(&t).is_some_and(HttpConn::flush);
        if !alive {
            if let Some(mut c) = f.conns.remove(&t) {
                let _ = self.sup.registry().deregister(&mut c.stream);
            }
        }
    }

    /// Take the next whole request off the connection's buffer, if it is not busy.
    fn sertone_next_request(&mut self, t: usize, now: Instant) {
        loop {
            let Some(f) = self.front.as_mut() else { return };
            let deadline = f.deadline;
            let Some(c) = f.conns.get_mut(&t) else { return };
            if c.busy || c.closing {
                return;
            }
            let (method, path, body) = match parse(&c.inbuf) {
                Parsed::Partial => return,
                Parsed::Bad(status, why) => {
                    c.closing = true;
                    c.respond(status, &json!({"error": why}));
                    return;
                }
                Parsed::Request {
                    method,
                    path,
                    body,
                    keep_alive,
                    used,
                } => {
                    c.inbuf.drain(..used);
                    c.keep_alive = keep_alive;
                    (method, path, body)
                }
            };
            let route = match (method.as_str(), path.as_str()) {
                ("GET", "/sertone/info") => None,
                ("POST", "/sertone/pre-request") => Some((sertone::PRE_REQUEST, true)),
                ("POST", "/sertone/post-response") => Some((sertone::POST_RESPONSE, false)),
                (_, "/sertone/info" | "/sertone/pre-request" | "/sertone/post-response") => {
                    c.respond(405, &json!({"error": "method not allowed"}));
                    continue;
                }
                _ => {
                    c.respond(404, &json!({"error": "not found"}));
                    continue;
                }
            };
            let Some((hook, pre)) = route else {
                let info = self.sertone_info();
                if let Some(c) = self.front.as_mut().and_then(|f| f.conns.get_mut(&t)) {
                    c.respond(200, &info);
                }
                continue;
            };
            // Metadata only: the plugins get a body rebuilt from the documented fields.
            let parsed = serde_json::from_slice::<Value>(&body)
                .map_err(|_| sertone::Invalid("the body is not JSON".into()))
                .and_then(|v| {
                    if pre {
                        sertone::pre_request(&v)
                    } else {
                        sertone::post_response(&v)
                    }
                });
            let payload = match parsed {
                Ok(p) => p,
                Err(e) => {
                    c.respond(400, &json!({"error": e.0}));
                    continue;
                }
            };
            c.busy = true;
            // Every plugin whose manifest declares the hook, ready or not: one not ready is
            // bypassed by name rather than silently absent from the answer. (A handshake can
            // only register hooks its manifest declares, so this includes every ready one.)
            let targets: Vec<String> = self
                .plugins
                .iter()
                .filter(|(_, e)| e.declares(hook))
                .map(|(n, _)| n.clone())
                .collect();
            if targets.is_empty() {
                self.sertone_answer(t, hook, &[]);
                continue;
            }
            let call = HookInvoke {
                hook: hook.to_string(),
                payload,
                deadline_ms: Some(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
            };
            self.fan_out_to(t, Value::Null, call, targets, now, Some(now + deadline));
            return;
        }
    }

    fn sertone_info(&self) -> Value {
        let plugins: Vec<Value> = self
            .plugins
            .iter()
            .filter(|(_, e)| e.declares(sertone::PRE_REQUEST) || e.declares(sertone::POST_RESPONSE))
            .map(|(n, e)| json!({"name": n, "state": e.state_name(&self.sup)}))
            .collect();
        json!({
            "name": "Stockade",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs each registered plugin in its own sandbox and combines their answers.",
            "author": "Stockade",
            "fee_model": self.cfg.serve.sertone.fee_model.as_str(),
            "plugins": plugins,
        })
    }

    /// A fan-out for connection `t` finished (all answered, or the deadline passed): combine.
    pub(crate) fn sertone_finish(
        &mut self,
        t: usize,
        hook: &str,
        results: Vec<(String, Option<Value>)>,
    ) {
        let deadline = self.front.as_ref().map_or(Duration::ZERO, |f| f.deadline);
        let outcomes: Vec<sertone::PluginOutcome> = results
            .into_iter()
            .map(|(name, entry)| {
                // The plugin's own effective hook policy: its failure mode (which also decides
                // an invalid answer) and fee limits.
                let rules = self
                    .plugins
                    .get(&name)
                    .map(|e| sertone::Rules::of(&e.host, hook))
                    .unwrap_or_else(|| sertone::Rules::of(&Default::default(), hook));
                let out = match entry {
                    None => Outcome::Failed(pending_why(deadline)),
                    Some(e) => match (e.get("bypassed"), e.get("result"), e.get("error")) {
                        (Some(b), _, _) => {
                            Outcome::Failed(b["message"].as_str().unwrap_or("bypassed").to_string())
                        }
                        (None, Some(r), _) => Outcome::Answer(r.clone()),
                        (None, None, err) => Outcome::Failed(
                            err.and_then(|x| x["message"].as_str())
                                .unwrap_or("no answer")
                                .to_string(),
                        ),
                    },
                };
                (name, rules, out)
            })
            .collect();
        self.sertone_answer(t, hook, &outcomes);
    }

    fn sertone_answer(&mut self, t: usize, hook: &str, outcomes: &[sertone::PluginOutcome]) {
        let v = if hook == sertone::PRE_REQUEST {
            sertone::combine_pre(outcomes)
        } else {
            sertone::combine_post(outcomes)
        };
        if let Some(b) = v["bypassed"].as_array() {
            for x in b {
                log_line(&format!(
                    "sertone: {}: plugin {} bypassed (fail-open): {}",
                    crate::output::term(hook),
                    crate::output::term(x["plugin"].as_str().unwrap_or("?")),
                    crate::output::term(x["why"].as_str().unwrap_or("?"))
                ));
            }
        }
        if let Some(c) = self.front.as_mut().and_then(|f| f.conns.get_mut(&t)) {
            c.respond(200, &v);
        }
        self.sertone_flush(t);
        // A keep-alive connection may already hold its next request.
        self.sertone_next_request(t, Instant::now());
        self.sertone_flush(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_their_limits() {
        let r = parse(b"POST /sertone/pre-request HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET");
        assert_eq!(
            r,
            Parsed::Request {
                method: "POST".into(),
                path: "/sertone/pre-request".into(),
                body: b"{}".to_vec(),
                keep_alive: true,
                used: 59
            }
        );
        assert_eq!(
            parse(b"GET /sertone/info HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}"),
            Parsed::Partial
        );
        assert!(matches!(
            parse(b"GET / HTTP/1.0\r\n\r\n"),
            Parsed::Request {
                keep_alive: false,
                ..
            }
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
            Parsed::Request {
                keep_alive: false,
                ..
            }
        ));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Bad(411, "chunked bodies are not accepted; send Content-Length")
        );
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"),
            Parsed::Bad(413, _)
        ));
        assert!(matches!(
            parse(b"\x00\x01 nonsense\r\n\r\n"),
            Parsed::Bad(400, _)
        ));
        let huge = vec![b'a'; MAX_REQUEST];
        assert!(matches!(parse(&huge), Parsed::Bad(_, _)));
    }

    #[test]
    fn listen_addresses_are_loopback_unless_allowed() {
        assert!(listen_addr("127.0.0.1:4000", false).is_ok());
        assert!(listen_addr("[::1]:4000", false).is_ok());
        assert!(listen_addr("0.0.0.0:4000", false).is_err());
        assert!(listen_addr("0.0.0.0:4000", true).is_ok());
        assert!(listen_addr("localhost:4000", false).is_err());
    }
}
