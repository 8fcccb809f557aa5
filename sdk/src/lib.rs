//! # stockade-sdk
//!
//! A Stockade plugin in a few lines (the protocol is docs/protocol.md):
//!
//! ```no_run
//! use stockade_sdk::{json, Plugin};
//! Plugin::new("hello-rust", "0.1.0")
//!     .capabilities(&["log", "register_hook"])
//!     .hook("on:flow.new", |host, payload| {
//!         host.log("info", "a flow")?;
//!         Ok(json!({"allow": true, "payload": payload}))
//!     })
//!     .run()
//!     .unwrap();
//! ```
//!
//! [`Plugin::run`] sends the handshake, then serves `hook_invoke` requests one at a time on the
//! calling thread, answering each with the handler's value (or its error as a JSON-RPC error),
//! and returns on `shutdown` or when stdin ends. Inside a handler, [`Host`] makes host API calls;
//! those that have an answer (`get_config_value`, `kv_get`, `kv_put`, `register_hook`) wait for
//! it, keeping any hook call that arrives meanwhile for later. The protocol's stream is the
//! process's stdout as it was when `run` started; from then on fd 1 is stderr (below), which the
//! runtime forwards as logs.
//!
//! ## What the SDK keeps to for you
//! The runtime terminates a plugin that breaks the protocol (docs/protocol.md §3); the SDK turns
//! the breaches a handler could cause into errors instead:
//! - a host call whose capability was not granted (the handshake's, the node's policy) is
//!   refused by the SDK with [`SdkError::NotGranted`], never sent (the runtime would terminate
//!   the plugin, `denied`): a handler that `?`s it fails that one hook call;
//! - an answer (or a host call) whose line would be longer than the runtime's `max_frame_bytes`
//!   (from the handshake's `limits`), or an answer nested deeper than the 120 levels an answer
//!   may (§3.3), is not sent: the hook call is answered with an error saying why (a host call
//!   fails with [`SdkError::FrameTooLarge`]);
//! - `$/cancel` (the call's deadline passed, the agent already has an answer): a call still
//!   queued is dropped unanswered, the handler never runs for it; a handler that makes host
//!   calls can see it was cancelled meanwhile with [`Host::cancelled`] and stop early;
//! - `ping` is answered, `shutdown` ends [`Plugin::run`], and a request of a method this SDK
//!   does not know is answered `method_not_found` (-32601) rather than left pending;
//! - stdout: [`Plugin::run`] moves the protocol to a private duplicate of fd 1 and points fd 1
//!   at stderr, so a `print!`/`println!` (the plugin's, a library's, a child process's) is a
//!   stderr line, forwarded as a log, not garbage in the protocol's stream (for which the
//!   runtime would terminate the plugin). [`Host::log`] is still the way to log on purpose.
//!
//! What it cannot keep to: a handler that panics ends the plugin (`plugin_crashed`;
//! `stockade serve` restarts it). Anything written to fd 1 *before* [`Plugin::run`] goes to the
//! protocol's stream and gets the plugin terminated: print nothing before it.
//!
//! ## Design
//! No async runtime and no threads: a plugin runs in a sandbox with a small pids limit, and one
//! call at a time is what most plugins need. While a handler runs, the plugin answers nothing
//! else: a `ping` is answered after it (keep `serve`'s `health.ping_timeout_ms` above the
//! longest hook deadline). `$/cancel` for a call already answered is ignored.
#![forbid(unsafe_code)]

pub use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, Write};

/// Why the plugin stopped or a host call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// Reading stdin or writing stdout failed.
    #[error("protocol I/O failed")]
    Io(#[from] io::Error),
    /// The runtime sent something that is not JSON.
    #[error("the runtime sent a frame that is not JSON")]
    Json(#[from] serde_json::Error),
    /// The runtime refused the handshake or ended the link before answering.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// A host call was answered with an error.
    #[error("host call failed ({code}): {message}")]
    Host {
        /// The JSON-RPC code (docs/protocol.md §2): e.g. -32006 `overloaded`, -32007
        /// `unavailable`, -32009 `quota_exceeded`.
        code: i64,
        /// The message.
        message: String,
        /// The error's `data`, `Null` when it has none: for a `kv_put` refused for now, its
        /// `kind` (`kv_write_budget`, `kv_locked`) and `retry_after_ms`.
        data: Value,
    },
    /// stdin ended while waiting for an answer.
    #[error("the runtime closed the link")]
    Closed,
    /// The host method was not granted at the handshake ([`Host::granted`]): the SDK did not
    /// send it, since the runtime terminates a plugin that calls one (`denied`). Ask for it in
    /// [`Plugin::capabilities`] (and the manifest); the node's policy may still withhold it.
    #[error("host method `{0}` was not granted to this plugin (granted: see Host::granted)")]
    NotGranted(String),
    /// The message would be a line longer than the runtime's `max_frame_bytes`, which it would
    /// take as a violation: it was not sent.
    #[error("a {len}-byte message is over the runtime's max_frame_bytes ({max})")]
    FrameTooLarge {
        /// The line's length, without its newline.
        len: usize,
        /// The runtime's cap (the handshake's `limits.max_frame_bytes`).
        max: usize,
    },
}

/// What a handler returns: the hook's result, or an error message sent as a JSON-RPC error.
pub type HookResult = Result<Value, HookError>;

/// A handler's error (sent to the runtime, which passes it to the agent as `plugin_error`).
///
/// `?` on any [`std::error::Error`] makes one whose message is the error and its causes,
/// `: `-separated.
#[derive(Debug)]
pub struct HookError(pub String);

impl<E: std::error::Error> From<E> for HookError {
    fn from(e: E) -> Self {
        let mut m = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            m.push_str(": ");
            m.push_str(&c.to_string());
            cause = c.source();
        }
        HookError(m)
    }
}

/// Take the protocol's stream away from fd 1: return a duplicate of stdout (close-on-exec:
/// a program the plugin starts does not get it) and point fd 1 at stderr. What `print!` had
/// buffered but not written (a line without its newline) is flushed after, to stderr.
fn protocol_output() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let mut held = stdout.lock();
    let protocol = held.as_fd().try_clone_to_owned()?;
    rustix::stdio::dup2_stdout(io::stderr().as_fd())?;
    held.flush()?;
    Ok(std::fs::File::from(protocol))
}

/// The runtime's frame cap when its handshake answer does not say (docs/protocol.md §1).
const DEFAULT_MAX_FRAME: usize = 65536;

/// How deep a hook answer's `result` (or its `error` object) may nest (docs/protocol.md §3.3).
const MAX_ANSWER_DEPTH: usize = 120;

/// How many arrays and objects `v` nests (a scalar: 0).
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

type Handler = Box<dyn FnMut(&mut Host, Value) -> HookResult>;

/// A plugin being described, then run.
pub struct Plugin {
    name: String,
    version: String,
    capabilities: Vec<String>,
    handlers: BTreeMap<String, Handler>,
}

/// The link to the runtime, for host API calls from inside a handler.
pub struct Host {
    input: Box<dyn BufRead>,
    output: Box<dyn Write>,
    next_id: u64,
    /// Hook calls that arrived while waiting for a host answer.
    queued: VecDeque<Value>,
    granted: Vec<String>,
    shutdown: bool,
    /// The runtime's frame cap (the handshake's `limits.max_frame_bytes`).
    max_frame: usize,
    /// The id of the hook call being handled.
    current: Option<Value>,
    /// Whether a `$/cancel` for it arrived.
    cancelled: bool,
}

impl Plugin {
    /// A plugin named exactly as in its manifest.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            capabilities: Vec::new(),
            handlers: BTreeMap::new(),
        }
    }

    /// The capabilities to ask for at the handshake: a subset of the manifest's
    /// `requested_capabilities` (asking for one it does not request is a violation: the runtime
    /// terminates the plugin). Without `register_hook` granted, the handshake registers none of
    /// the plugin's hooks and no hook call ever comes: a plugin with handlers asks for it. Host
    /// calls are limited to what the runtime granted of these ([`Host::granted`]).
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Handle `hook` with `f` (a later handler for the same hook replaces it). Every hook with
    /// a handler is named in the handshake, so it must be among the manifest's `hooks` (else a
    /// violation). `f` gets the [`Host`] for host calls and the call's `payload`; what it
    /// returns is the answer ([`HookResult`]).
    pub fn hook(
        mut self,
        hook: &str,
        f: impl FnMut(&mut Host, Value) -> HookResult + 'static,
    ) -> Self {
        self.handlers.insert(hook.into(), Box::new(f));
        self
    }

    /// Speak the protocol on stdin/stdout until `shutdown` or EOF (then return `Ok`: the
    /// plugin should exit promptly, the runtime kills its sandbox after `shutdown_grace_ms`).
    /// An `Err` is a refused handshake, a link that failed or a frame from the runtime that is
    /// not JSON; a handler's error is never one (it answers that hook call).
    ///
    /// First it moves the protocol off fd 1 (onto a private, close-on-exec duplicate) and points
    /// fd 1 at stderr, so that a `print!`/`println!` anywhere in the plugin — or in a program it
    /// starts — becomes a log line instead of garbage in the protocol's stream, for which the
    /// runtime would terminate it. A failure to do so (stdout or stderr closed) is an
    /// [`SdkError::Io`], before anything is sent.
    pub fn run(self) -> Result<(), SdkError> {
        let input = Box::new(io::BufReader::new(io::stdin()));
        let output = Box::new(io::LineWriter::new(protocol_output()?));
        self.run_on(input, output)
    }

    /// Speak the protocol on the given streams (for tests).
    pub fn run_on(
        mut self,
        input: Box<dyn BufRead>,
        output: Box<dyn Write>,
    ) -> Result<(), SdkError> {
        let mut host = Host {
            input,
            output,
            next_id: 1,
            queued: VecDeque::new(),
            granted: Vec::new(),
            shutdown: false,
            max_frame: DEFAULT_MAX_FRAME,
            current: None,
            cancelled: false,
        };
        let hooks: Vec<&String> = self.handlers.keys().collect();
        let reply = host.request_raw(
            "handshake",
            json!({"name": self.name, "version": self.version, "api": 1,
                   "capabilities": self.capabilities, "hooks": hooks}),
        );
        let result = match reply {
            Ok(r) => r,
            Err(SdkError::Host { message, .. }) => return Err(SdkError::Handshake(message)),
            Err(e) => return Err(e),
        };
        host.granted = result["granted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(max) = result["limits"]["max_frame_bytes"].as_u64() {
            host.max_frame = usize::try_from(max).unwrap_or(usize::MAX);
        }
        while !host.shutdown {
            let msg = match host.queued.pop_front() {
                Some(m) => m,
                None => match host.read()? {
                    Some(m) => m,
                    None => return Ok(()),
                },
            };
            match msg["method"].as_str() {
                Some("shutdown") => return Ok(()),
                Some("hook_invoke") => {
                    let id = msg["id"].clone();
                    let hook = msg["params"]["hook"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let payload = msg["params"]["payload"].clone();
                    host.current = Some(id.clone());
                    host.cancelled = false;
                    let answer = match self.handlers.get_mut(&hook) {
                        Some(h) => h(&mut host, payload),
                        None => Err(HookError(format!("no handler for `{hook}`"))),
                    };
                    host.current = None;
                    if host.cancelled {
                        // The agent already has the deadline's answer; this one would be dropped.
                        continue;
                    }
                    host.answer(id, answer)?;
                }
                // Health ping (`stockade serve`): answering proves the loop is alive.
                Some("ping") => {
                    host.write(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": {}}))?
                }
                Some(other) if msg.get("id").is_some() => {
                    let m = format!("method `{other}` is not known to this plugin's SDK");
                    host.write(&json!({"jsonrpc": "2.0", "id": msg["id"],
                        "error": {"code": -32601, "message": m}}))?
                }
                _ => {} // `$/cancel` for a call already answered, stray responses
            }
        }
        Ok(())
    }
}

impl Host {
    /// The capabilities the runtime granted.
    pub fn granted(&self) -> &[String] {
        &self.granted
    }

    /// Whether the runtime cancelled the hook call being handled (`$/cancel`: its deadline
    /// passed and the agent already has an answer; whatever the handler returns is not sent).
    /// The SDK reads the runtime's messages only while waiting for a host call's answer, so
    /// this turns true only after a host call; a long handler that makes them can check it
    /// and stop early.
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// Answer hook call `id`, with an error saying why instead when the answer is one the
    /// runtime would take as a violation (too long a line, nested too deep).
    fn answer(&mut self, id: Value, answer: HookResult) -> Result<(), SdkError> {
        let frame = match answer {
            Ok(v) => {
                let depth = nesting(&v);
                if depth > MAX_ANSWER_DEPTH {
                    let m = format!(
                        "the handler's answer nests {depth} levels, more than the \
                         {MAX_ANSWER_DEPTH} an answer may (docs/protocol.md §3.3)"
                    );
                    return self.answer(id, Err(HookError(m)));
                }
                json!({"jsonrpc": "2.0", "id": id, "result": v})
            }
            Err(HookError(m)) => json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32000, "message": m}}),
        };
        match self.write(&frame) {
            Err(SdkError::FrameTooLarge { len, max }) => {
                let m = format!(
                    "the handler's answer is a {len}-byte line, over the runtime's \
                     max_frame_bytes ({max})"
                );
                let frame = json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32000, "message": m}});
                self.write(&frame)
            }
            r => r,
        }
    }

    fn write(&mut self, v: &Value) -> Result<(), SdkError> {
        let mut line = serde_json::to_vec(v)?;
        if line.len() > self.max_frame {
            return Err(SdkError::FrameTooLarge {
                len: line.len(),
                max: self.max_frame,
            });
        }
        line.push(b'\n');
        self.output.write_all(&line)?;
        self.output.flush()?;
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Value>, SdkError> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.input.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                return Ok(Some(serde_json::from_str(&line)?));
            }
        }
    }

    fn request_raw(&mut self, method: &str, params: Value) -> Result<Value, SdkError> {
        // The handshake is request 0; host calls are numbered from 1.
        let id = if method == "handshake" {
            0
        } else {
            self.next_id += 1;
            self.next_id - 1
        };
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            let Some(m) = self.read()? else {
                return Err(SdkError::Closed);
            };
            if m.get("method").is_none() && m["id"] == id {
                if let Some(e) = m.get("error") {
                    return Err(SdkError::Host {
                        code: e["code"].as_i64().unwrap_or(0),
                        message: e["message"].as_str().unwrap_or_default().into(),
                        data: e.get("data").cloned().unwrap_or(Value::Null),
                    });
                }
                return Ok(m["result"].clone());
            }
            if m["method"] == "shutdown" {
                self.shutdown = true;
            } else if m["method"] == "$/cancel" {
                let cancelled = &m["params"]["id"];
                if self.current.as_ref() == Some(cancelled) {
                    self.cancelled = true;
                }
                self.queued
                    .retain(|q| q["method"] != "hook_invoke" || &q["id"] != cancelled);
            } else if m.get("method").is_some() && m.get("id").is_some() {
                // hook_invoke, ping, and requests answered method_not_found, in turn.
                self.queued.push_back(m);
            }
        }
    }

    /// Refuse, unsent, a call the runtime would terminate the plugin for.
    fn check_granted(&self, method: &str) -> Result<(), SdkError> {
        if self.granted.iter().any(|g| g == method) {
            Ok(())
        } else {
            Err(SdkError::NotGranted(method.into()))
        }
    }

    /// Call a host API method (docs/protocol.md §3.7) and wait for its answer; hook calls and
    /// pings that arrive meanwhile are handled after the handler returns. A method not
    /// [`granted`](Host::granted) is refused with [`SdkError::NotGranted`] without being sent.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, SdkError> {
        // Checked here, not in request_raw: a second `handshake` is refused too.
        self.check_granted(method)?;
        self.request_raw(method, params)
    }

    /// `log` (a notification: no answer is awaited). `level` is `debug`, `info`, `warn` or
    /// `error` (another is logged as `info` with a runtime warning). Past the runtime's
    /// `max_events_per_sec` (shared with `emit_event`) the message is dropped and the drop
    /// counted. Needs `log` granted, else [`SdkError::NotGranted`], nothing sent.
    pub fn log(&mut self, level: &str, message: &str) -> Result<(), SdkError> {
        self.check_granted("log")?;
        self.write(&json!({"jsonrpc": "2.0", "method": "log",
                           "params": {"level": level, "message": message}}))
    }

    /// `emit_event` (a notification), reaching the agent tagged with the plugin's name. Rate
    /// limited as [`Host::log`]. Needs `emit_event` granted, else [`SdkError::NotGranted`].
    pub fn emit_event(&mut self, name: &str, data: Value) -> Result<(), SdkError> {
        self.check_granted("emit_event")?;
        self.write(&json!({"jsonrpc": "2.0", "method": "emit_event",
                           "params": {"name": name, "data": data}}))
    }

    /// `get_config_value`: `key` is `node_id`, `runtime_version` or `plugin_name` (another is
    /// [`SdkError::Host`] `invalid_params`). Needs `get_config_value` granted.
    pub fn config(&mut self, key: &str) -> Result<Value, SdkError> {
        Ok(self.call("get_config_value", json!({"key": key}))?["value"].clone())
    }

    /// `kv_get`: the value of `key` in the plugin's private store, `None` when absent. Needs
    /// `kv_get` granted.
    pub fn kv_get(&mut self, key: &str) -> Result<Option<String>, SdkError> {
        let v = self.call("kv_get", json!({"key": key}))?;
        Ok(v["value"].as_str().map(String::from))
    }

    /// `kv_put` (`None` deletes), durable once it returns `Ok`. Needs `kv_put` granted. Over
    /// the store's quota: [`SdkError::Host`] -32009 `quota_exceeded`; past the plugin's write
    /// budget (-32006) or while another process holds the store's lock (-32007), the error's
    /// `data` has `retry_after_ms`: retry after that (docs/protocol.md §3.7).
    pub fn kv_put(&mut self, key: &str, value: Option<&str>) -> Result<(), SdkError> {
        self.call("kv_put", json!({"key": key, "value": value}))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(s: &Shared) -> Vec<Value> {
        String::from_utf8(s.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn handshakes_answers_hooks_and_keeps_hook_calls_that_arrive_during_a_host_call() {
        let input = [
            r#"{"jsonrpc":"2.0","id":0,"result":{"granted":["log","register_hook","get_config_value"],"hooks":["on:a"]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"hook_invoke","params":{"hook":"on:a","payload":1,"deadline_ms":9}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"hook_invoke","params":{"hook":"on:a","payload":2,"deadline_ms":9}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"ping","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"value":"node"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"hook_invoke","params":{"hook":"on:b","payload":3,"deadline_ms":9}}"#,
            r#"{"jsonrpc":"2.0","method":"shutdown","params":{}}"#,
        ]
        .join("\n");
        let out = Shared::default();
        Plugin::new("p", "1.0.0")
            .capabilities(&["log", "get_config_value"])
            .hook("on:a", |host, payload| {
                let node = if payload == 1 {
                    host.config("node_id")?
                } else {
                    Value::Null
                };
                Ok(json!({"payload": payload, "node": node}))
            })
            .run_on(
                Box::new(io::Cursor::new(input.into_bytes())),
                Box::new(out.clone()),
            )
            .unwrap();
        let sent = lines(&out);
        assert_eq!(sent[0]["method"], "handshake");
        assert_eq!(sent[0]["params"]["hooks"], json!(["on:a"]));
        assert_eq!(sent[1]["method"], "get_config_value");
        assert_eq!(
            sent[2],
            json!({"jsonrpc":"2.0","id":1,"result":{"payload":1,"node":"node"}})
        );
        assert_eq!(sent[3]["id"], 2);
        // A ping that arrived during the host call is answered in turn.
        assert_eq!(sent[4], json!({"jsonrpc":"2.0","id":5,"result":{}}));
        assert_eq!(sent[5]["id"], 3);
        assert_eq!(sent[5]["error"]["code"], -32000);
    }

    #[test]
    fn refused_handshake_is_an_error() {
        let input = r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32005,"message":"no"}}"#;
        let r = Plugin::new("p", "1.0.0").run_on(
            Box::new(io::Cursor::new(input.as_bytes().to_vec())),
            Box::new(Shared::default()),
        );
        assert!(matches!(r, Err(SdkError::Handshake(_))));
    }

    fn run(plugin: Plugin, input: &[&str]) -> (Result<(), SdkError>, Vec<Value>) {
        let out = Shared::default();
        let r = plugin.run_on(
            Box::new(io::Cursor::new(input.join("\n").into_bytes())),
            Box::new(out.clone()),
        );
        (r, lines(&out))
    }

    fn invoke(id: u64, payload: Value) -> String {
        json!({"jsonrpc":"2.0","id":id,"method":"hook_invoke",
               "params":{"hook":"on:a","payload":payload,"deadline_ms":9}})
        .to_string()
    }

    /// A host call not granted is refused by the SDK, unsent (the runtime would terminate the
    /// plugin): the handler's `?` fails that hook call only.
    #[test]
    fn a_host_call_not_granted_is_refused_unsent() {
        let hs = r#"{"jsonrpc":"2.0","id":0,"result":{"granted":["log"],"hooks":[],"limits":{}}}"#;
        let (r, sent) = run(
            Plugin::new("p", "1.0.0")
                .capabilities(&["log", "emit_event"])
                .hook("on:a", |host, payload| {
                    let e = match payload.as_u64() {
                        Some(1) => host.emit_event("e", json!({})).unwrap_err(),
                        Some(2) => host.kv_get("k").unwrap_err(),
                        Some(3) => host.call("handshake", json!({})).unwrap_err(),
                        _ => host.call("no_such_method", json!({})).unwrap_err(),
                    };
                    assert!(matches!(&e, SdkError::NotGranted(_)), "{e}");
                    host.log("info", "logged")?;
                    Err(e.into())
                }),
            &[
                hs,
                &invoke(1, json!(1)),
                &invoke(2, json!(2)),
                &invoke(3, json!(3)),
                &invoke(4, json!(4)),
            ],
        );
        r.unwrap();
        let methods: Vec<Value> = sent.iter().map(|m| m["method"].clone()).collect();
        assert_eq!(
            methods,
            [
                json!("handshake"),
                json!("log"),
                Value::Null,
                json!("log"),
                Value::Null,
                json!("log"),
                Value::Null,
                json!("log"),
                Value::Null
            ]
        );
        for (answer, method) in [
            (2, "emit_event"),
            (4, "kv_get"),
            (6, "handshake"),
            (8, "no_such_method"),
        ] {
            let m = sent[answer]["error"]["message"].as_str().unwrap();
            assert!(m.contains(&format!("`{method}` was not granted")), "{m}");
        }
    }

    /// An answer the runtime would take as a violation — a line over the handshake's
    /// `max_frame_bytes`, a result nested past 120 levels — is replaced by an error answer.
    #[test]
    fn an_answer_too_long_or_too_deep_is_answered_with_an_error() {
        let hs = r#"{"jsonrpc":"2.0","id":0,"result":{"granted":[],"hooks":["on:a"],"limits":{"max_frame_bytes":300}}}"#;
        let nested = |d: usize| (0..d).fold(json!(0), |v, _| json!([v]));
        // The runtime takes a line of exactly max_frame_bytes (without its newline), not one more.
        let overhead = json!({"jsonrpc": "2.0", "id": 6, "result": ""})
            .to_string()
            .len();
        let at_cap = 300 - overhead;
        let (r, sent) = run(
            Plugin::new("p", "1.0.0").hook("on:a", move |_, payload| {
                let n = usize::try_from(payload["n"].as_u64().unwrap()).unwrap();
                match payload["do"].as_str().unwrap() {
                    "big" => Ok(json!("x".repeat(n))),
                    "err" => Err(HookError("e".repeat(n))),
                    _ => Ok(nested(n)),
                }
            }),
            &[
                hs,
                &invoke(1, json!({"do": "big", "n": 240})),
                &invoke(2, json!({"do": "big", "n": 300})),
                &invoke(3, json!({"do": "err", "n": 300})),
                &invoke(4, json!({"do": "deep", "n": 120})),
                &invoke(5, json!({"do": "deep", "n": 121})),
                &invoke(6, json!({"do": "big", "n": at_cap})),
                &invoke(7, json!({"do": "big", "n": at_cap + 1})),
            ],
        );
        r.unwrap();
        assert!(sent.iter().all(|m| m.to_string().len() <= 300));
        assert_eq!(sent[1]["result"].as_str().unwrap().len(), 240);
        for i in [2, 3] {
            let m = sent[i]["error"]["message"].as_str().unwrap();
            assert!(
                m.contains("over the runtime's max_frame_bytes (300)"),
                "{m}"
            );
        }
        assert_eq!(sent[4]["result"], nested(120));
        let m = sent[5]["error"]["message"].as_str().unwrap();
        assert!(m.contains("nests 121 levels"), "{m}");
        assert_eq!(sent[5]["id"], 5);
        assert_eq!(sent[6]["result"].as_str().map(str::len), Some(at_cap));
        assert_eq!(sent[6].to_string().len(), 300);
        let m = sent[7]["error"]["message"].as_str().unwrap();
        assert!(m.contains("301-byte line"), "{m}");
    }

    /// `$/cancel` of a hook call queued during a host call drops it unhandled; of the call
    /// being handled, makes `Host::cancelled` true and its answer is not sent.
    #[test]
    fn cancelled_calls_are_not_handled_or_answered() {
        let hs = r#"{"jsonrpc":"2.0","id":0,"result":{"granted":["get_config_value"],"hooks":["on:a"]}}"#;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let (r, sent) = run(
            Plugin::new("p", "1.0.0").hook("on:a", move |host, payload| {
                s2.lock().unwrap().push(payload.clone());
                if payload == 1 {
                    host.config("node_id")?;
                    assert!(host.cancelled());
                } else {
                    assert!(!host.cancelled());
                }
                Ok(payload)
            }),
            &[
                hs,
                &invoke(1, json!(1)),
                &invoke(2, json!(2)),
                &invoke(3, json!(3)),
                r#"{"jsonrpc":"2.0","method":"$/cancel","params":{"id":2}}"#,
                r#"{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{"value":"n"}}"#,
            ],
        );
        r.unwrap();
        assert_eq!(*seen.lock().unwrap(), [json!(1), json!(3)]);
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(sent[1]["method"], "get_config_value");
        assert_eq!(sent[2], json!({"jsonrpc":"2.0","id":3,"result":3}));
    }

    /// A host error keeps its `data` (a refused `kv_put`'s `retry_after_ms`); an unknown
    /// request is answered `method_not_found`; a `HookError` made by `?` carries the causes.
    #[test]
    fn host_error_data_unknown_requests_and_error_causes() {
        let hs = r#"{"jsonrpc":"2.0","id":0,"result":{"granted":["kv_put"],"hooks":["on:a"]}}"#;
        let (r, sent) = run(
            Plugin::new("p", "1.0.0").hook("on:a", |host, _| {
                let e = host.kv_put("k", Some("v")).unwrap_err();
                let SdkError::Host { code, data, .. } = &e else {
                    panic!("{e}")
                };
                assert_eq!((*code, &data["retry_after_ms"]), (-32006, &json!(250)));
                let io = SdkError::Io(io::Error::other("pipe gone"));
                Err(io.into())
            }),
            &[
                hs,
                r#"{"jsonrpc":"2.0","id":"x","method":"future_method","params":{}}"#,
                &invoke(7, json!(null)),
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32006,"message":"budget","data":{"kind":"kv_write_budget","retry_after_ms":250}}}"#,
            ],
        );
        r.unwrap();
        assert_eq!(sent[1]["id"], "x");
        assert_eq!(sent[1]["error"]["code"], -32601);
        assert_eq!(sent[2]["method"], "kv_put");
        assert_eq!(
            sent[3]["error"]["message"],
            "protocol I/O failed: pipe gone"
        );
    }
}
