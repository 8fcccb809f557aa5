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
//! it, keeping any hook call that arrives meanwhile for later. stdout belongs to the protocol:
//! print diagnostics to stderr (the runtime forwards it as logs).
//!
//! ## Design
//! No async runtime and no threads: a plugin runs in a sandbox with a small pids limit, and one
//! call at a time is what most plugins need. `$/cancel` for a call already answered is ignored.
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
        /// The JSON-RPC code (docs/protocol.md §2).
        code: i64,
        /// The message.
        message: String,
    },
    /// stdin ended while waiting for an answer.
    #[error("the runtime closed the link")]
    Closed,
}

/// What a handler returns: the hook's result, or an error message sent as a JSON-RPC error.
pub type HookResult = Result<Value, HookError>;

/// A handler's error (sent to the runtime, which passes it to the agent as `plugin_error`).
#[derive(Debug)]
pub struct HookError(pub String);

impl<E: std::error::Error> From<E> for HookError {
    fn from(e: E) -> Self {
        HookError(e.to_string())
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

    /// The capabilities to ask for (a subset of the manifest's `requested_capabilities`).
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Handle `hook` (declared in the manifest) with `f`.
    pub fn hook(
        mut self,
        hook: &str,
        f: impl FnMut(&mut Host, Value) -> HookResult + 'static,
    ) -> Self {
        self.handlers.insert(hook.into(), Box::new(f));
        self
    }

    /// Speak the protocol on stdin/stdout until `shutdown` or EOF.
    pub fn run(self) -> Result<(), SdkError> {
        let input = Box::new(io::BufReader::new(io::stdin()));
        let output = Box::new(io::LineWriter::new(io::stdout()));
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
                    let answer = match self.handlers.get_mut(&hook) {
                        Some(h) => h(&mut host, payload),
                        None => Err(HookError(format!("no handler for `{hook}`"))),
                    };
                    let frame = match answer {
                        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
                        Err(HookError(m)) => json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32000, "message": m}}),
                    };
                    host.write(&frame)?;
                }
                // Health ping (`stockade serve`): answering proves the loop is alive.
                Some("ping") => {
                    host.write(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": {}}))?
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

    fn write(&mut self, v: &Value) -> Result<(), SdkError> {
        let mut line = serde_json::to_vec(v)?;
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
                    });
                }
                return Ok(m["result"].clone());
            }
            if m["method"] == "shutdown" {
                self.shutdown = true;
            } else if m["method"] == "hook_invoke" || m["method"] == "ping" {
                self.queued.push_back(m);
            }
        }
    }

    /// Call a host API method and wait for its answer. Calling a method that was not granted
    /// gets the plugin terminated by the runtime: check [`Host::granted`] first.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, SdkError> {
        self.request_raw(method, params)
    }

    /// `log` (a notification: no answer is awaited).
    pub fn log(&mut self, level: &str, message: &str) -> Result<(), SdkError> {
        self.write(&json!({"jsonrpc": "2.0", "method": "log",
                           "params": {"level": level, "message": message}}))
    }

    /// `emit_event` (a notification).
    pub fn emit_event(&mut self, name: &str, data: Value) -> Result<(), SdkError> {
        self.write(&json!({"jsonrpc": "2.0", "method": "emit_event",
                           "params": {"name": name, "data": data}}))
    }

    /// `get_config_value`.
    pub fn config(&mut self, key: &str) -> Result<Value, SdkError> {
        Ok(self.call("get_config_value", json!({"key": key}))?["value"].clone())
    }

    /// `kv_get`.
    pub fn kv_get(&mut self, key: &str) -> Result<Option<String>, SdkError> {
        let v = self.call("kv_get", json!({"key": key}))?;
        Ok(v["value"].as_str().map(String::from))
    }

    /// `kv_put` (`None` deletes).
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
}
