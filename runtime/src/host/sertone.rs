//! The Sertone HTTP front of `stockade serve` (`--sertone-listen`, seed 003, docs/http-plugins.md).
//!
//! A control center registers Stockade itself as its plugin URL. Each `POST` is rebuilt from the
//! documented metadata fields (`stockade_policy::sertone`), fanned out as the hook
//! `on:sertone.pre_request` / `on:sertone.post_response` to every loaded plugin registered for it
//! — through the same fan-out, deadlines, restarts and quarantine as agent calls — and the answers
//! are combined into one. The answer is sent within `[sertone] deadline_ms` whatever the plugins
//! do: a plugin still silent then, or whose answer is invalid, has failed, and the hook's failure
//! mode decides — bypassed and named under `bypassed` by default (fail-open, seed 003), a denial
//! where the operator set `failure = "closed"`.
//!
//! Same loop, same thread as the rest of the daemon: connections are non-blocking, requests are
//! parsed with `httparse` (a kept crate; we write no HTTP tokenizer), heads and bodies are capped
//! and read strictly (one `Content-Length`, digits only), one request per connection is in
//! flight at a time (keep-alive is honoured; pipelined requests wait their turn), and a peer that
//! is not loopback is closed at accept unless the config allows more.
//!
//! What one connection can take, whatever its peer does:
//! - memory: at most [`MAX_INPUT`] bytes read ahead, and answers are queued only while less than
//!   [`MAX_OUT`] wait to be written (back-pressure: a peer that pipelines requests and never
//!   reads the answers stops being read; one that takes no byte for [`DRAIN_TIMEOUT`], or
//!   takes its waiting answers slower than [`DRAIN_RATE`] on average past that grace, is
//!   dropped). Without this, pipelined 404s never read took the daemon past a gigabyte.
//! - time: a request head must arrive within [`HEAD_TIMEOUT`], its body within
//!   [`BODY_TIMEOUT`], and a keep-alive connection idle for [`IDLE_TIMEOUT`] is closed, so
//!   connections holding partial requests (slowloris) cannot keep `max_connections` full.
//! - the loop: a connection with more to do than one turn allows (input left in the socket
//!   behind the read cap, requests held back by a full answer queue) is served again on the next
//!   turn ([`Front::hot`]): its socket is edge-triggered and would not wake the loop again.
//!
//! Browsers: the front is reachable from any web page the operator opens (loopback is no
//! boundary to a browser), and a DNS name can be rebound to 127.0.0.1. So a request carrying
//! `Origin` (what browsers add to cross-site requests) is refused (403), a `POST` must say
//! `Content-Type: application/json` (which a page cannot send without a CORS preflight, which
//! the front never approves: 415), and unless `allow_remote` the `Host` must name a loopback
//! address or `localhost` with the listening port (421), which a rebound name does not.
//!
//! Logs: refusals and drops, and plugins bypassed, are logged at most once per
//! [`super::admit::REFUSAL_LOG_INTERVAL`] per reason (per plugin and hook for bypasses), the
//! rest counted in one line when the interval ends ([`super::admit::RefusalLog`]): a request
//! flood must not become a log flood.

use super::admit::{RefusalLog, REFUSAL_LOG_INTERVAL};
use super::daemon::{log_line, Daemon};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use stockade_policy::protocol::message::HookInvoke;
use stockade_policy::sertone::{self, Outcome};

/// The listener's token.
pub(crate) const LISTENER: Token = Token(2);
/// HTTP connection tokens (above the agent connections').
pub(crate) const HTTP_BASE: usize = 1 << 41;
/// Largest request head (request line and headers), complete or not.
const MAX_HEAD: usize = 48 * 1024;
/// Largest body.
const MAX_BODY: usize = 16 * 1024;
/// Largest request, head plus body.
const MAX_REQUEST: usize = MAX_HEAD + MAX_BODY;
/// Input read ahead of the requests taken: one whole request and a read's worth more.
const MAX_INPUT: usize = MAX_REQUEST + READ_CHUNK;
/// One read.
const READ_CHUNK: usize = 8192;
/// Answers queued for one connection past which no further request of it is taken until they
/// drain. An answer is a few hundred bytes (the combined one grows with the plugins), so this
/// holds hundreds of pipelined answers; the queue is at most this plus one answer.
pub(crate) const MAX_OUT: usize = 64 * 1024;
/// Answers waiting with not one byte taken for this long: the peer stopped reading, dropped.
/// Generous next to any live client's pause, short next to what it would hold.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per second a peer must take, on average, of answers that keep waiting, past a first
/// [`DRAIN_TIMEOUT`] of grace: each byte taken buys it 1/`DRAIN_RATE` s more. Without it, a
/// peer that took one byte every 9 s restarted the stall timer each time and kept its slot
/// (and [`MAX_OUT`] of memory) forever. 4 KiB/s drains a full queue in 16 s; a control center
/// on this host takes it in microseconds.
const DRAIN_RATE: u64 = 4096;
/// From a request's first byte to its whole head. A control center writes a head in one go;
/// ten seconds is for a loaded host, not for a client that trickles a header a minute.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// From a whole head to the whole body (at most 16 KiB).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection (or a fresh one) with no request started: closed after this. Long
/// enough for a control center's connection pool to reuse it between bursts; a closed idle
/// connection costs the client only a reconnect.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// One whole request.
#[derive(Debug, PartialEq)]
pub(crate) struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    keep_alive: bool,
    /// Bytes of input it took.
    used: usize,
    /// `Host`, lowercased.
    host: Option<String>,
    /// An `Origin` header was sent.
    origin: bool,
    /// `Content-Type`, lowercased.
    content_type: Option<String>,
}

/// A parsed request, or why none is there yet.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// More bytes of the head are needed.
    Partial,
    /// The head is whole; more bytes of the body are needed.
    Body,
    /// Answer with this status and close.
    Bad(u16, &'static str),
    /// One whole request.
    Request(Request),
}

/// Why a `Content-Length` is refused ([`content_length`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadLength {
    /// Two headers, equal or not: which one ends the body is a guess two readers may make
    /// differently (request smuggling).
    #[error("more than one Content-Length")]
    Repeated,
    /// Anything but a run of ASCII digits: `+5`, `0x5`, `5, 5`, empty. Rust's `parse` takes a
    /// leading `+`, which another reader of the same bytes may not.
    #[error("a Content-Length that is not only digits")]
    NotDigits,
    /// Digits only, but beyond any size this process can hold.
    #[error("a Content-Length too large")]
    TooLarge,
}

/// The one `Content-Length` among `headers`, read strictly: at most one such header, its value
/// digits only (surrounding blanks aside). The front's requests and the HTTP bridge's answers
/// (cmd/http_bridge.rs) are read by this one function, so neither is more lenient.
pub(crate) fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, BadLength> {
    let mut len = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        if len.is_some() {
            return Err(BadLength::Repeated);
        }
        let v = h.value.trim_ascii();
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return Err(BadLength::NotDigits);
        }
        // Digits only: the one error left is a number too large for usize.
        let n = std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or(BadLength::TooLarge)?;
        len = Some(n);
    }
    Ok(len)
}

/// Parse one request from the front of `buf` (pure: unit-tested below). Strict where leniency
/// lets two readers of one request disagree: one `Content-Length` of digits only, one `Host`,
/// one `Content-Type`, no `Transfer-Encoding`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => {
            return Parsed::Bad(431, "request head too large")
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Bad(431, "request head too large")
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431, "too many headers"),
        Err(_) => return Parsed::Bad(400, "malformed request"),
    };
    let mut keep_alive = req.version == Some(1);
    let (mut host, mut origin, mut content_type) = (None, false, None);
    for h in req.headers.iter() {
        let v = String::from_utf8_lossy(h.value).trim().to_ascii_lowercase();
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "transfer-encoding" => {
                return Parsed::Bad(411, "chunked bodies are not accepted; send Content-Length")
            }
            "host" if host.is_some() => return Parsed::Bad(400, "more than one Host"),
            "host" => host = Some(v),
            "content-type" if content_type.is_some() => {
                return Parsed::Bad(400, "more than one Content-Type")
            }
            "content-type" => content_type = Some(v),
            "origin" => origin = true,
            "connection" if v == "close" => keep_alive = false,
            "connection" if v == "keep-alive" => keep_alive = true,
            _ => {}
        }
    }
    let len = match content_length(req.headers) {
        Ok(n) => n.unwrap_or(0),
        Err(BadLength::Repeated) => return Parsed::Bad(400, "more than one Content-Length"),
        Err(BadLength::NotDigits) => return Parsed::Bad(400, "bad Content-Length"),
        Err(BadLength::TooLarge) => return Parsed::Bad(413, "body larger than 16 KiB"),
    };
    if len > MAX_BODY {
        return Parsed::Bad(413, "body larger than 16 KiB");
    }
    if buf.len() < head + len {
        return Parsed::Body;
    }
    Parsed::Request(Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: buf[head..head + len].to_vec(),
        keep_alive,
        used: head + len,
        host,
        origin,
        content_type,
    })
}

/// The front's reading of one connection's bytes, for the `http` fuzz target
/// ([`crate::fuzzing`]): each whole request in turn, as [`HttpConn`] drains them, with its
/// admission verdict on `port` (loopback only, and remote allowed). Returns each request's
/// (bytes used, body), and the status that ended the connection if one did.
#[cfg(any(test, fuzzing))]
pub(crate) fn read_all(mut buf: &[u8], port: u16) -> (Vec<(usize, Vec<u8>)>, Option<u16>) {
    let mut out = Vec::new();
    loop {
        match parse(buf) {
            Parsed::Partial | Parsed::Body => return (out, None),
            Parsed::Bad(status, _) => return (out, Some(status)),
            Parsed::Request(r) => {
                let _ = admissible(&r, port, false);
                let _ = admissible(&r, port, true);
                buf = buf.get(r.used..).unwrap_or_default();
                out.push((r.used, r.body));
            }
        }
    }
}

/// Whether a request may be served at all (the module doc's browser checks), else its status
/// and why. `port` is the listening port; `allow_remote` leaves `Host` unchecked, as the names
/// a remote control center uses for this host are not known here.
fn admissible(r: &Request, port: u16, allow_remote: bool) -> Result<(), (u16, &'static str)> {
    if r.origin {
        return Err((
            403,
            "requests from web pages (with an Origin header) are refused",
        ));
    }
    let json = r
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim() == "application/json");
    if r.method == "POST" && !json {
        return Err((415, "a POST needs Content-Type: application/json"));
    }
    if allow_remote {
        return Ok(());
    }
    match r.host.as_deref() {
        None => Err((400, "no Host header")),
        Some(h) if loopback_host(h, port) => Ok(()),
        Some(_) => Err((421, "Host is not this front's loopback address and port")),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with `port` (no port: 80).
fn loopback_host(h: &str, port: u16) -> bool {
    let (name, p) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, p)) => match p.strip_prefix(':') {
                Some(p) => (ip, Some(p)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    let port_ok = match p {
        None => port == 80,
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse() == Ok(port),
    };
    let name_ok = name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    port_ok && name_ok
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What a connection waits for (its deadline's kind; see [`HttpConn::deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// No request started (fresh, or keep-alive between requests): [`IDLE_TIMEOUT`].
    Idle,
    /// A request head: [`HEAD_TIMEOUT`].
    Head,
    /// A request body: [`BODY_TIMEOUT`].
    Body,
    /// Its request's fan-out, which has its own deadline: none.
    Busy,
    /// Its answers to drain before more requests are taken: [`DRAIN_TIMEOUT`] only.
    Held,
    /// Its last answer to be written: [`DRAIN_TIMEOUT`] only.
    Closing,
}

/// Why a connection was refused or dropped (the key of its rate-limited log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Refused {
    NotLoopback,
    Full,
    Head,
    Body,
    Drain,
}

impl Refused {
    fn message(self) -> &'static str {
        match self {
            Refused::NotLoopback => "peer not loopback",
            Refused::Full => "max_connections open",
            Refused::Head => "request head not whole in time",
            Refused::Body => "request body not whole in time",
            Refused::Drain => "answers not read in time",
        }
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
    /// The last read stopped at [`MAX_INPUT`], not at an empty socket: more may be there.
    more_input: bool,
    /// Requests were held back for `out` to drain ([`MAX_OUT`]).
    held: bool,
    /// What it waits for, since when.
    wait: (Wait, Instant),
    /// Since when `out` has waited without a byte written; none while it is empty.
    stalled_since: Option<Instant>,
    /// Since when `out` has waited (a write left some of it), and the bytes taken since; none
    /// while it is empty. Bounds the drain as a whole ([`DRAIN_RATE`]), not only its pauses.
    draining: Option<(Instant, u64)>,
}

impl HttpConn {
    fn new(stream: TcpStream, now: Instant) -> Self {
        Self {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            busy: false,
            keep_alive: true,
            closing: false,
            eof: false,
            more_input: false,
            held: false,
            wait: (Wait::Idle, now),
            stalled_since: None,
            draining: None,
        }
    }

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

    /// Answer with `status` and close.
    fn refuse(&mut self, status: u16, why: &str) {
        self.closing = true;
        self.respond(status, &json!({"error": why}));
    }

    /// Read what the socket has, up to [`MAX_INPUT`] buffered.
    fn read_input(&mut self) {
        let mut chunk = [0u8; READ_CHUNK];
        self.more_input = false;
        while !self.eof {
            if self.inbuf.len() >= MAX_INPUT {
                self.more_input = true;
                break;
            }
            // Never past MAX_INPUT: the last read takes only what is left of it.
            let room = (MAX_INPUT - self.inbuf.len()).min(READ_CHUNK);
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    self.closing = true;
                }
            }
        }
    }

    fn set_wait(&mut self, w: Wait, now: Instant) {
        if self.wait.0 != w {
            self.wait = (w, now);
        }
    }

    /// The next whole request, if the connection may take one now: not while one is in flight
    /// or it is closing, nor while [`MAX_OUT`] bytes of answers wait (back-pressure). A bad one
    /// is answered here and closes the connection. Sets what the connection waits for next.
    fn next_request(&mut self, now: Instant) -> Option<Request> {
        self.held = false;
        if self.closing {
            self.set_wait(Wait::Closing, now);
            return None;
        }
        if self.busy {
            self.set_wait(Wait::Busy, now);
            return None;
        }
        if self.out.len() >= MAX_OUT {
            self.held = true;
            self.set_wait(Wait::Held, now);
            return None;
        }
        match parse(&self.inbuf) {
            Parsed::Partial if self.inbuf.is_empty() => self.set_wait(Wait::Idle, now),
            Parsed::Partial => self.set_wait(Wait::Head, now),
            Parsed::Body => self.set_wait(Wait::Body, now),
            Parsed::Bad(status, why) => {
                self.refuse(status, why);
                self.set_wait(Wait::Closing, now);
            }
            Parsed::Request(r) => {
                self.inbuf.drain(..r.used);
                self.keep_alive = r.keep_alive;
                // The next request's clock starts now, not at this one's first byte.
                self.wait = (Wait::Busy, now);
                return Some(r);
            }
        }
        None
    }

    /// When the connection is to be closed whatever else happens, and what it waited for.
    fn deadline(&self) -> Option<(Instant, Wait)> {
        let (w, since) = self.wait;
        let phase = match w {
            Wait::Idle => Some(since + IDLE_TIMEOUT),
            Wait::Head => Some(since + HEAD_TIMEOUT),
            Wait::Body => Some(since + BODY_TIMEOUT),
            Wait::Busy | Wait::Held | Wait::Closing => None,
        };
        let phase = phase.map(|at| (at, w));
        let drain = self.stalled_since.map(|s| (s + DRAIN_TIMEOUT, Wait::Held));
        // Too slow on average, however often it takes a byte.
        let rate = self.draining.map(|(since, taken)| {
            let earned = Duration::from_millis(taken.saturating_mul(1000) / DRAIN_RATE);
            (since + DRAIN_TIMEOUT + earned, Wait::Held)
        });
        [phase, drain, rate]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Whether it has more to do than its last turn did: input left in the socket or requests
    /// held back, and room to take them now. Its socket is edge-triggered: nothing else would
    /// bring it back.
    fn wants_turn(&self) -> bool {
        !self.busy && !self.closing && self.out.len() < MAX_OUT && (self.more_input || self.held)
    }

    /// Write what is queued; false when the connection is finished.
    fn flush(&mut self, now: Instant) -> bool {
        let before = self.out.len();
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.out.is_empty() {
            self.stalled_since = None;
            self.draining = None;
        } else {
            if self.out.len() < before || self.stalled_since.is_none() {
                self.stalled_since = Some(now);
            }
            let taken = u64::try_from(before - self.out.len()).unwrap_or(u64::MAX);
            match &mut self.draining {
                Some((_, sum)) => *sum = sum.saturating_add(taken),
                // The wait begins now: what this write took came before it.
                None => self.draining = Some((now, 0)),
            }
            return true;
        }
        // Finished: its last answer written, or the peer's input ended with nothing in flight
        // and nothing held back (requests held back are still answered after the end of input).
        let finished = self.closing || (self.eof && !self.busy && !self.held);
        !finished
    }
}

/// The front: its listener, its connections, its limits.
pub struct Front {
    listener: TcpListener,
    /// The listening port (what `Host` must name).
    port: u16,
    conns: BTreeMap<usize, HttpConn>,
    next: usize,
    deadline: Duration,
    allow_remote: bool,
    max_connections: usize,
    /// Connections to serve again on the next turn ([`HttpConn::wants_turn`]).
    pub(crate) hot: Vec<usize>,
    refusals: RefusalLog<Refused>,
    /// Bypasses by (hook, plugin).
    bypasses: RefusalLog<(String, String)>,
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
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener: TcpListener::from_std(listener),
            port,
            conns: BTreeMap::new(),
            next: HTTP_BASE,
            deadline: Duration::from_millis(cfg.deadline_ms),
            allow_remote: cfg.allow_remote,
            max_connections: cfg.max_connections,
            hot: Vec::new(),
            refusals: RefusalLog::default(),
            bypasses: RefusalLog::default(),
        })
    }

    /// Register the listener with the daemon's poll.
    pub fn register(&mut self, r: &mio::Registry) -> std::io::Result<()> {
        r.register(&mut self.listener, LISTENER, Interest::READABLE)
    }

    /// When the loop must wake for the front: a connection's deadline, a held log count.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let conns = self
            .conns
            .values()
            .filter_map(|c| c.deadline().map(|d| d.0));
        conns
            .chain(self.refusals.next_due())
            .chain(self.bypasses.next_due())
            .min()
    }

    fn refused(&mut self, why: Refused, now: Instant, detail: impl FnOnce() -> String) {
        if self.refusals.note(why, now) {
            log_line(&format!(
                "sertone: {}: {} (logged once per {} s for this reason)",
                why.message(),
                detail(),
                REFUSAL_LOG_INTERVAL.as_secs()
            ));
        }
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
            let now = Instant::now();
            if !peer.ip().is_loopback() && !f.allow_remote {
                f.refused(Refused::NotLoopback, now, || format!("refused {peer}"));
                continue;
            }
            if f.conns.len() >= f.max_connections {
                f.refused(Refused::Full, now, || format!("refused {peer}"));
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
            f.conns.insert(t, HttpConn::new(stream, now));
        }
    }

    /// Readable or writable (or its turn again: [`Front::hot`]): read, answer what can be
    /// answered, write, close when done.
    pub(crate) fn sertone_event(&mut self, t: usize, now: Instant) {
        let Some(f) = self.front.as_mut() else { return };
        let Some(c) = f.conns.get_mut(&t) else { return };
        c.read_input();
        self.sertone_next_request(t, now);
        self.sertone_flush(t, now);
    }

    /// Write what connection `t` has queued; close it when it is finished, or put it on the
    /// next turn's list when it has more to do.
    fn sertone_flush(&mut self, t: usize, now: Instant) {
        let Some(f) = self.front.as_mut() else { return };
        let Some(c) = f.conns.get_mut(&t) else { return };
        if !c.flush(now) {
            if let Some(mut c) = f.conns.remove(&t) {
                let _ = self.sup.registry().deregister(&mut c.stream);
            }
        } else if c.wants_turn() && !f.hot.contains(&t) {
            f.hot.push(t);
        }
    }

    /// The front's timers: connections past their deadline (a request head or body not whole
    /// in time: `408` and closed; idle: closed; answers not read: dropped), and the log counts
    /// held back.
    pub(crate) fn sertone_timers(&mut self, now: Instant) {
        let Some(f) = self.front.as_mut() else { return };
        let due: Vec<(usize, Wait)> = f
            .conns
            .iter()
            .filter_map(|(t, c)| c.deadline().filter(|d| d.0 <= now).map(|d| (*t, d.1)))
            .collect();
        for (t, w) in due {
            let Some(c) = f.conns.get_mut(&t) else {
                continue;
            };
            let why = match w {
                Wait::Head => Some(Refused::Head),
                Wait::Body => Some(Refused::Body),
                _ => None,
            };
            if let Some(why) = why.filter(|_| c.out.is_empty()) {
                // Best effort: a fresh answer to a peer reading nothing is never waited for.
                c.refuse(408, why.message());
                let _ = c.flush(now);
            }
            if let Some(mut c) = f.conns.remove(&t) {
                let _ = self.sup.registry().deregister(&mut c.stream);
            }
            f.hot.retain(|h| *h != t);
            match (w, why) {
                (_, Some(why)) => f.refused(why, now, || "connection closed".into()),
                (Wait::Held, None) => {
                    f.refused(Refused::Drain, now, || "connection dropped".into())
                }
                _ => {}
            }
        }
        for (why, n) in f.refusals.due(now) {
            log_line(&format!(
                "sertone: {}: {n} more connection(s) refused or dropped in the last {} s, not \
                 logged one by one",
                why.message(),
                REFUSAL_LOG_INTERVAL.as_secs()
            ));
        }
        for ((hook, plugin), n) in f.bypasses.due(now) {
            log_line(&format!(
                "sertone: {}: plugin {} bypassed (fail-open) {n} more time(s) in the last {} s, \
                 not logged one by one",
                crate::output::term(&hook),
                crate::output::term(&plugin),
                REFUSAL_LOG_INTERVAL.as_secs()
            ));
        }
    }

    /// Take the next whole requests off the connection's buffer while it may take them.
    fn sertone_next_request(&mut self, t: usize, now: Instant) {
        loop {
            let Some(f) = self.front.as_mut() else { return };
            let (deadline, port, allow_remote) = (f.deadline, f.port, f.allow_remote);
            let Some(c) = f.conns.get_mut(&t) else { return };
            let Some(r) = c.next_request(now) else { return };
            if let Err((status, why)) = admissible(&r, port, allow_remote) {
                c.refuse(status, why);
                continue;
            }
            let route = match (r.method.as_str(), r.path.as_str()) {
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
            let parsed = serde_json::from_slice::<Value>(&r.body)
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
                            let why = b["message"].as_str().unwrap_or("bypassed").to_string();
                            if b["invalid_answer"] == true {
                                Outcome::Invalid(why)
                            } else {
                                Outcome::Failed(why)
                            }
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

    /// The front's bypasses (`v["bypassed"]`) and answers, for the hook's `bypass` audit
    /// records ([`super::bypass`]).
    fn note_front_bypasses(
        &mut self,
        hook: &str,
        outcomes: &[sertone::PluginOutcome],
        v: &Value,
        now: Instant,
    ) {
        let bypassed: Vec<(&str, &str)> = v["bypassed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                (
                    x["plugin"].as_str().unwrap_or("?"),
                    x["why"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let mut recs = Vec::new();
        for (name, _, out) in outcomes {
            let rec = match bypassed.iter().find(|(p, _)| p == name) {
                Some((_, why)) => {
                    let reason = sertone::BypassReason::of(out).as_str();
                    self.bypasses
                        .bypassed(name, hook, (reason, why), "sertone", now)
                }
                None if matches!(out, Outcome::Answer(_)) => {
                    self.bypasses.answered(name, hook, now)
                }
                None => None,
            };
            recs.extend(rec);
        }
        self.audit_bypasses(recs);
    }

    fn sertone_answer(&mut self, t: usize, hook: &str, outcomes: &[sertone::PluginOutcome]) {
        let v = if hook == sertone::PRE_REQUEST {
            sertone::combine_pre(outcomes)
        } else {
            sertone::combine_post(outcomes)
        };
        let now = Instant::now();
        self.note_front_bypasses(hook, outcomes, &v, now);
        let Some(f) = self.front.as_mut() else { return };
        for x in v["bypassed"].as_array().into_iter().flatten() {
            let plugin = x["plugin"].as_str().unwrap_or("?");
            // One line per plugin and hook per interval: the first bypass says why, the count
            // of the others follows (`sertone_timers`).
            if f.bypasses.note((hook.to_string(), plugin.to_string()), now) {
                log_line(&format!(
                    "sertone: {}: plugin {} bypassed (fail-open): {} (logged once per {} s for \
                     this plugin and hook)",
                    crate::output::term(hook),
                    crate::output::term(plugin),
                    crate::output::term(x["why"].as_str().unwrap_or("?")),
                    REFUSAL_LOG_INTERVAL.as_secs()
                ));
            }
        }
        if let Some(c) = f.conns.get_mut(&t) {
            c.respond(200, &v);
        }
        self.sertone_flush(t, now);
        // A keep-alive connection may already hold its next request: it is taken on the next
        // turn (`hot`), not here. Taken here, a fan-out that finishes at once (no plugin ready:
        // all bypassed) answered from inside `sertone_next_request` would recurse once per
        // pipelined request — thousands of frames from one write of a local client.
        if let Some(f) = self.front.as_mut() {
            if f.conns.contains_key(&t) && !f.hot.contains(&t) {
                f.hot.push(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(buf: &[u8]) -> Request {
        match parse(buf) {
            Parsed::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn requests_parse_with_their_limits() {
        let r = request(b"POST /sertone/pre-request HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET");
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/sertone/pre-request")
        );
        assert_eq!(
            (r.body.as_slice(), r.keep_alive, r.used),
            (&b"{}"[..], true, 59)
        );
        assert_eq!(
            parse(b"GET /sertone/info HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}"),
            Parsed::Body
        );
        assert!(!request(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(!request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
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
    fn lengths_are_one_run_of_digits_and_heads_are_capped_whole_or_not() {
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nContent-Length: 0x2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nHost: evil.example\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Bad(400, _)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Parsed::Bad(413, _)
        ));
        // One whole 70 KB header: as refused as one that never ends.
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 70_000));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parsed::Bad(431, "request head too large"));
    }

    #[test]
    fn browsers_and_rebound_names_are_refused() {
        let port = 4000;
        let ok = |raw: &str| admissible(&request(raw.as_bytes()), port, false);
        let json = "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            ok(&format!(
                "POST /p HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n{json}"
            )),
            Ok(())
        );
        for host in [
            "localhost:4000",
            "[::1]:4000",
            "127.0.0.2:4000",
            "LOCALHOST:4000",
        ] {
            assert_eq!(
                ok(&format!("GET /p HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                Ok(())
            );
        }
        assert_eq!(
            ok(
                "POST /p HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nContent-Type: application/json; \
                charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
            ),
            Ok(())
        );
        // The auditor's simple POST from a page.
        let simple = "POST /p HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nOrigin: http://evil.example\r\n\
                      Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(ok(simple).unwrap_err().0, 403);
        let plain = "POST /p HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nContent-Type: text/plain\r\n\
                     Content-Length: 2\r\n\r\n{}";
        assert_eq!(ok(plain).unwrap_err().0, 415);
        assert_eq!(
            ok("POST /p HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nContent-Length: 0\r\n\r\n")
                .unwrap_err()
                .0,
            415
        );
        assert_eq!(ok("GET /p HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
        for host in [
            "evil.example:4000",
            "127.0.0.1:4001",
            "127.0.0.1",
            "localhost.evil.example:4000",
            "[::1]4000",
            "10.0.0.1:4000",
            "x",
        ] {
            assert_eq!(
                ok(&format!("GET /p HTTP/1.1\r\nHost: {host}\r\n\r\n"))
                    .unwrap_err()
                    .0,
                421,
                "{host}"
            );
        }
        // Remote allowed: any Host, never a page's request.
        let remote = |raw: &str| admissible(&request(raw.as_bytes()), port, true);
        assert_eq!(
            remote("GET /p HTTP/1.1\r\nHost: cc.example\r\n\r\n"),
            Ok(())
        );
        assert_eq!(remote(simple).unwrap_err().0, 403);
        assert_eq!(remote(plain).unwrap_err().0, 415);
    }

    /// A connected pair: the front's side (non-blocking) and a peer that never reads.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours), peer)
    }

    #[test]
    fn answers_never_read_hold_the_requests_back_and_the_connection_is_dropped() {
        let (stream, _peer) = pair();
        let now = Instant::now();
        let mut c = HttpConn::new(stream, now);
        // The auditor's flood: pipelined requests whose answers are never read.
        c.inbuf = b"GET /x HTTP/1.1\r\n\r\n".repeat(20_000);
        let mut answered = 0;
        while c.next_request(now).is_some() {
            c.respond(404, &json!({"error": "not found"}));
            answered += 1;
        }
        let one = c.out.len() / answered;
        assert!(c.out.len() < MAX_OUT + one, "{} bytes queued", c.out.len());
        assert!(c.held && !c.wants_turn());
        assert!(!c.inbuf.is_empty(), "the rest wait unread");
        assert_eq!(
            c.deadline(),
            None,
            "no timer while the answers have not met the socket"
        );
        // Written out, it takes requests again (its next turn).
        assert!(c.flush(now));
        assert!(c.out.len() < MAX_OUT, "the socket took one answer at least");
        assert!(c.wants_turn());
        assert!(c.next_request(now).is_some());
        c.respond(404, &json!({"error": "not found"}));
        // The peer's buffers full: the answers stall, and the connection is dropped in time.
        // Filled again until a flush leaves answers waiting: on a loaded host the kernel moves
        // what was written to the peer later (ksoftirqd), which frees room after a write was
        // refused, and the answers queued meanwhile could all fit.
        for round in 0.. {
            assert!(round < 1000, "the peer's buffers never filled");
            while c.stream.write(&[0u8; 65536]).is_ok() {}
            while c.next_request(now).is_some() {
                c.respond(404, &json!({"error": "not found"}));
            }
            assert!(c.flush(now));
            if !c.out.is_empty() {
                break;
            }
        }
        assert_eq!(c.deadline(), Some((now + DRAIN_TIMEOUT, Wait::Held)));
    }

    /// The auditor's slow reader: it pipelines requests until the front holds them back, then
    /// takes a little of its answers every 9 s — never 10 s without a byte, so the stall timer
    /// alone never fired and the connection kept its slot for good. On a fake clock: the
    /// connection must come due while it trickles.
    #[test]
    fn a_peer_that_takes_its_answers_a_trickle_at_a_time_is_dropped() {
        use nix::sys::socket::{setsockopt, sockopt};
        // Small socket buffers, the peer's set before the connection (a window once offered
        // is never taken back; an accepted socket inherits its listener's), so each of the
        // peer's reads frees only a little room.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        setsockopt(&l, sockopt::RcvBuf, &4096).unwrap();
        let ours = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        setsockopt(&ours, sockopt::SndBuf, &4096).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = TcpStream::from_std(ours);
        let t0 = Instant::now();
        let mut c = HttpConn::new(stream, t0);
        c.inbuf = b"GET /x HTTP/1.1\r\n\r\n".repeat(20_000);
        let serve = |c: &mut HttpConn, now: Instant| {
            while c.next_request(now).is_some() {
                c.respond(404, &json!({"error": "not found"}));
            }
        };
        serve(&mut c, t0);
        assert!(c.flush(t0));
        assert!(c.held, "held back: {} bytes wait", c.out.len());
        let mut now = t0;
        let mut buf = [0u8; 8192];
        for step in 1..=40 {
            now += Duration::from_secs(9);
            // One read (what its small buffer holds, at most 8 KiB), then the front's next write
            // once the window opens again (waiting for the kernel's window update, not a time).
            assert!(peer.read(&mut buf).unwrap() > 0);
            let before = c.out.len();
            // (A loaded host may defer it to ksoftirqd: up to 10 s of 1 ms naps, no timing.)
            for _ in 0..10_000 {
                assert!(c.flush(now));
                if c.out.len() < before {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(c.out.len() < before, "step {step}: the socket took nothing");
            // The daemon's next turn takes requests again while there is room.
            serve(&mut c, now);
            let (due, w) = c.deadline().expect("answers wait");
            assert_eq!(w, Wait::Held);
            if due <= now {
                // A few steps' grace at most: 8 KiB per 9 s is below the rate.
                assert!(step <= 3, "due only at step {step}");
                return;
            }
        }
        panic!("a peer taking a little every 9 s kept its connection");
    }

    #[test]
    fn requests_must_come_whole_in_time() {
        let (stream, _peer) = pair();
        let t0 = Instant::now();
        let mut c = HttpConn::new(stream, t0);
        assert_eq!(c.deadline(), Some((t0 + IDLE_TIMEOUT, Wait::Idle)));
        c.inbuf = b"POST /sertone/pre-request HTTP/1.1\r\n".to_vec();
        let t1 = t0 + Duration::from_secs(1);
        assert!(c.next_request(t1).is_none());
        assert_eq!(c.deadline(), Some((t1 + HEAD_TIMEOUT, Wait::Head)));
        // More bytes of the same head do not push its deadline back.
        c.inbuf.extend_from_slice(b"Host: 127");
        assert!(c.next_request(t1 + Duration::from_secs(5)).is_none());
        assert_eq!(c.deadline(), Some((t1 + HEAD_TIMEOUT, Wait::Head)));
        c.inbuf
            .extend_from_slice(b".0.0.1:1\r\nContent-Length: 2\r\n\r\n");
        let t2 = t1 + Duration::from_secs(6);
        assert!(c.next_request(t2).is_none());
        assert_eq!(c.deadline(), Some((t2 + BODY_TIMEOUT, Wait::Body)));
        c.inbuf.extend_from_slice(b"{}");
        assert!(c.next_request(t2).is_some());
        c.respond(400, &json!({}));
        assert!(c.flush(t2));
        assert!(c.next_request(t2).is_none());
        assert_eq!(c.deadline(), Some((t2 + IDLE_TIMEOUT, Wait::Idle)));
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
