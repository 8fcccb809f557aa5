//! JSON-RPC 2.0 messages and the typed parameters of every method (docs/protocol.md).
//!
//! [`Message::parse`] accepts exactly one JSON object per frame with `"jsonrpc": "2.0"` and the
//! shape of a request, a notification or a response; anything else is a [`MessageError`]. Params
//! are decoded per method with `deny_unknown_fields`, so a peer cannot smuggle fields the runtime
//! would silently ignore.

use super::frame::Frame;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A request id: a JSON number or string (`null` ids are refused).
pub type Id = Value;

/// One parsed message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects a response.
    Request {
        /// Its id.
        id: Id,
        /// The method.
        method: String,
        /// The params (`null` when absent).
        params: Value,
    },
    /// A call without a response.
    Notification {
        /// The method.
        method: String,
        /// The params (`null` when absent).
        params: Value,
    },
    /// A response to an earlier request.
    Response {
        /// The id it answers.
        id: Id,
        /// `Ok(result)` or `Err(error object)`.
        outcome: Result<Value, RpcError>,
    },
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcError {
    /// The code (see [`codes`]).
    pub code: i64,
    /// A human message.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Attach structured detail.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Stable error codes (a public interface: never renumber). -32768..-32000 is JSON-RPC's range;
/// Stockade's own codes are -32001..-32099.
pub mod codes {
    /// The frame is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC 2.0 message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not match the method's schema.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The hook's deadline passed before the plugin answered.
    pub const DEADLINE_EXCEEDED: i64 = -32001;
    /// The plugin exited (crashed) before answering.
    pub const PLUGIN_CRASHED: i64 = -32002;
    /// No plugin is registered for this hook.
    pub const NOT_REGISTERED: i64 = -32003;
    /// The call is not granted (the plugin is terminated when it is the caller).
    pub const DENIED: i64 = -32004;
    /// The plugin broke the protocol and was terminated.
    pub const VIOLATION: i64 = -32005;
    /// Too many calls in flight or buffered; try again later.
    pub const OVERLOADED: i64 = -32006;
    /// The plugin is not running (never started, terminated or shutting down).
    pub const UNAVAILABLE: i64 = -32007;
    /// The plugin answered the hook with an error of its own (in `data.plugin_error`).
    pub const PLUGIN_ERROR: i64 = -32008;
    /// A key/value quota would be exceeded.
    pub const QUOTA_EXCEEDED: i64 = -32009;
    /// `serve`: a plugin of that name is already loaded.
    pub const ALREADY_LOADED: i64 = -32010;
    /// `serve`: no plugin of that name is loaded.
    pub const UNKNOWN_PLUGIN: i64 = -32011;
    /// `serve`: the package could not be verified or launched, or never became ready.
    pub const LOAD_FAILED: i64 = -32012;
    /// `serve`: the connecting peer's uid/gid is not allowed (or too many connections).
    pub const PEER_REFUSED: i64 = -32013;
    /// `serve`: a loaded plugin depends on the one to unload (`force` unloads it anyway).
    pub const IN_USE: i64 = -32014;

    /// Every code above: what docs/protocol.md §2 documents, each with its [`name`].
    pub const ALL: [i64; 18] = [
        PARSE_ERROR,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        INVALID_PARAMS,
        DEADLINE_EXCEEDED,
        PLUGIN_CRASHED,
        NOT_REGISTERED,
        DENIED,
        VIOLATION,
        OVERLOADED,
        UNAVAILABLE,
        PLUGIN_ERROR,
        QUOTA_EXCEEDED,
        ALREADY_LOADED,
        UNKNOWN_PLUGIN,
        LOAD_FAILED,
        PEER_REFUSED,
        IN_USE,
    ];

    /// The stable name of a code (for logs and `plugin_state` reasons).
    pub fn name(code: i64) -> &'static str {
        match code {
            PARSE_ERROR => "parse_error",
            INVALID_REQUEST => "invalid_request",
            METHOD_NOT_FOUND => "method_not_found",
            INVALID_PARAMS => "invalid_params",
            DEADLINE_EXCEEDED => "deadline_exceeded",
            PLUGIN_CRASHED => "plugin_crashed",
            NOT_REGISTERED => "not_registered",
            DENIED => "denied",
            VIOLATION => "violation",
            OVERLOADED => "overloaded",
            UNAVAILABLE => "unavailable",
            PLUGIN_ERROR => "plugin_error",
            QUOTA_EXCEEDED => "quota_exceeded",
            ALREADY_LOADED => "already_loaded",
            UNKNOWN_PLUGIN => "unknown_plugin",
            LOAD_FAILED => "load_failed",
            PEER_REFUSED => "peer_refused",
            IN_USE => "in_use",
            _ => "error",
        }
    }
}

/// Why a frame is not a valid message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not JSON (serde's reason in the message — e.g. nesting past its 128 levels — since the
    /// peer sees only this line).
    #[error("not JSON: {0}")]
    Json(serde_json::Error),
    /// JSON, but not a JSON-RPC 2.0 object.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Shape(&'static str),
}

impl MessageError {
    /// The JSON-RPC code for answering it.
    pub fn code(&self) -> i64 {
        match self {
            MessageError::Json(_) => codes::PARSE_ERROR,
            MessageError::Shape(_) => codes::INVALID_REQUEST,
        }
    }
}

fn valid_id(v: &Value) -> bool {
    v.is_string() || v.is_i64() || v.is_u64()
}

impl Message {
    /// Parse one frame.
    pub fn parse(frame: &str) -> Result<Message, MessageError> {
        let v: Value = serde_json::from_str(frame).map_err(MessageError::Json)?;
        let Value::Object(mut o) = v else {
            return Err(MessageError::Shape("not an object"));
        };
        if o.remove("jsonrpc") != Some(Value::String("2.0".into())) {
            return Err(MessageError::Shape("`jsonrpc` must be \"2.0\""));
        }
        let id = o.remove("id");
        if let Some(id) = &id {
            if !valid_id(id) {
                return Err(MessageError::Shape("`id` must be an integer or a string"));
            }
        }
        if let Some(method) = o.remove("method") {
            let Value::String(method) = method else {
                return Err(MessageError::Shape("`method` must be a string"));
            };
            let params = o.remove("params").unwrap_or(Value::Null);
            if !(params.is_object() || params.is_array() || params.is_null()) {
                return Err(MessageError::Shape("`params` must be an object or array"));
            }
            if !o.is_empty() {
                return Err(MessageError::Shape("unknown member"));
            }
            return Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        let Some(id) = id else {
            return Err(MessageError::Shape("neither `method` nor `id`"));
        };
        let outcome = match (o.remove("result"), o.remove("error")) {
            (Some(r), None) => Ok(r),
            (None, Some(e)) => Err(serde_json::from_value::<RpcError>(e)
                .map_err(|_| MessageError::Shape("malformed `error` object"))?),
            _ => return Err(MessageError::Shape("need exactly one of `result`, `error`")),
        };
        if !o.is_empty() {
            return Err(MessageError::Shape("unknown member"));
        }
        Ok(Message::Response { id, outcome })
    }
}

/// One frame from an agent as a message, or the error response it gets instead: an over-long
/// or non-UTF-8 frame is `invalid_request` (id `null`), a line that is no JSON-RPC message is
/// answered under [`error_id`]. The one decoding step of both agent links (`run`'s stdin and
/// `serve`'s connections).
pub fn from_frame(f: Frame) -> Result<Message, Value> {
    let line = f.map_err(|e| {
        response_err(
            &Value::Null,
            &RpcError::new(codes::INVALID_REQUEST, e.to_string()),
        )
    })?;
    Message::parse(&line).map_err(|e| {
        response_err(
            &error_id(&line, &e),
            &RpcError::new(e.code(), e.to_string()),
        )
    })
}

/// The id to answer a frame [`Message::parse`] refused with: the frame's own when it is JSON
/// with a valid `id` (a request whose other members are wrong — `"params": 5` — is answered
/// under its id, so the agent waiting for it is not left waiting), else `null`.
fn error_id(frame: &str, e: &MessageError) -> Value {
    if matches!(e, MessageError::Json(_)) {
        return Value::Null;
    }
    // Only a request's: a malformed *response* under its id could be taken for the answer to
    // one of the peer's own calls.
    serde_json::from_str::<Value>(frame)
        .ok()
        .filter(|v| v.get("method").is_some())
        .and_then(|v| v.get("id").filter(|id| valid_id(id)).cloned())
        .unwrap_or(Value::Null)
}

/// A request object.
pub fn request(id: &Id, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A notification object.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// A success response.
pub fn response_ok(id: &Id, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response (`id` is `null` when the request's id could not be read).
pub fn response_err(id: &Id, e: &RpcError) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), "2.0".into());
    m.insert("id".into(), id.clone());
    m.insert(
        "error".into(),
        serde_json::to_value(e).unwrap_or(Value::Null),
    );
    Value::Object(m)
}

/// `handshake` params (plugin → runtime, first message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handshake {
    /// Must equal the manifest's name.
    pub name: String,
    /// Must equal the manifest's version.
    pub version: String,
    /// Must equal the manifest's `api`.
    pub api: u32,
    /// Capabilities the plugin wants (⊆ the manifest's request).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Hooks the plugin wants to handle (⊆ the manifest's hooks).
    #[serde(default)]
    pub hooks: Vec<String>,
}

/// `hook_invoke` params (agent → runtime: `deadline_ms` optional; runtime → plugin: always set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookInvoke {
    /// The hook point.
    pub hook: String,
    /// The hook's input (opaque to the runtime).
    #[serde(default)]
    pub payload: Value,
    /// Milliseconds the plugin has to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

impl HookInvoke {
    /// An agent's `hook_invoke` params (under `run` and on serve's socket), checked before any
    /// plugin sees them: `deadline_ms`, when given, at least 1; a Sertone hook's payload rebuilt
    /// to its metadata fields ([`crate::sertone::metadata_only`]), as the HTTP front rebuilds
    /// it — seed 003's plugins never see payloads, whichever path the call takes — and refused
    /// when it cannot be.
    pub fn from_agent(p: &Value) -> Result<Self, RpcError> {
        let mut call: Self = params(p)?;
        if call.deadline_ms == Some(0) {
            return Err(RpcError::new(
                codes::INVALID_PARAMS,
                "deadline_ms must be at least 1",
            ));
        }
        call.payload = crate::sertone::metadata_only(&call.hook, &call.payload).map_err(|e| {
            RpcError::new(
                codes::INVALID_PARAMS,
                format!("invalid params: `{}` payload: {e}", call.hook),
            )
        })?;
        Ok(call)
    }
}

/// `log` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `debug`, `info`, `warn` or `error`.
    #[serde(default = "default_level")]
    pub level: String,
    /// The line.
    pub message: String,
}

fn default_level() -> String {
    "info".into()
}

/// `emit_event` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitEvent {
    /// The event name.
    pub name: String,
    /// Its data.
    #[serde(default)]
    pub data: Value,
}

/// `get_config_value`, `kv_get` and `register_hook` take one string each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// The key.
    pub key: String,
}

/// `register_hook` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterHook {
    /// The hook point (must be declared in the manifest).
    pub hook: String,
}

/// `kv_put` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvPut {
    /// The key.
    pub key: String,
    /// The value (a string; `null` deletes).
    pub value: Option<String>,
}

/// Decode params of a method, mapping failure to an `invalid_params` error. Params are by name
/// (an object; the documented schemas are objects): serde would also fill a struct from an
/// array, in field order, which the protocol does not define.
pub fn params<T: serde::de::DeserializeOwned>(p: &Value) -> Result<T, RpcError> {
    if p.is_array() {
        return Err(RpcError::new(
            codes::INVALID_PARAMS,
            "invalid params: by name (an object), not by position",
        ));
    }
    serde_json::from_value(p.clone())
        .map_err(|e| RpcError::new(codes::INVALID_PARAMS, format!("invalid params: {e}")))
}

/// Params of a method that takes none: absent, `null` or `{}`.
pub fn no_params(p: &Value) -> Result<(), RpcError> {
    match p {
        Value::Null => Ok(()),
        Value::Object(o) if o.is_empty() => Ok(()),
        _ => Err(RpcError::new(
            codes::INVALID_PARAMS,
            "invalid params: this method takes none",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_by_name_and_a_method_without_params_takes_none() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct P {
            a: u32,
            b: String,
        }
        let ok: P = params(&serde_json::json!({"a": 1, "b": "x"})).unwrap();
        assert_eq!(ok.a, 1);
        let e = params::<P>(&serde_json::json!([1, "x"])).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        assert!(no_params(&Value::Null).is_ok());
        assert!(no_params(&serde_json::json!({})).is_ok());
        for bad in [
            serde_json::json!({"x": 1}),
            serde_json::json!([]),
            serde_json::json!(1),
        ] {
            assert_eq!(no_params(&bad).unwrap_err().code, codes::INVALID_PARAMS);
        }
    }

    #[test]
    fn a_malformed_request_is_answered_under_its_id_when_it_has_one() {
        let f = r#"{"jsonrpc":"2.0","id":7,"method":"m","params":5}"#;
        let e = Message::parse(f).unwrap_err();
        assert_eq!(error_id(f, &e), serde_json::json!(7));
        let f = r#"{"jsonrpc":"2.0","id":null,"method":"m","params":5}"#;
        assert_eq!(error_id(f, &Message::parse(f).unwrap_err()), Value::Null);
        let f = "{not json";
        assert_eq!(error_id(f, &Message::parse(f).unwrap_err()), Value::Null);
        let f = r#"{"jsonrpc":"2.0","id":7,"result":1,"error":{}}"#;
        assert_eq!(error_id(f, &Message::parse(f).unwrap_err()), Value::Null);
    }

    #[test]
    fn a_frame_nested_too_deep_says_so() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = Message::parse(&deep).unwrap_err();
        assert_eq!(e.code(), codes::PARSE_ERROR);
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn parses_the_three_shapes() {
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#).unwrap();
        assert!(matches!(m, Message::Request { .. }));
        let m = Message::parse(r#"{"jsonrpc":"2.0","method":"m"}"#).unwrap();
        assert!(matches!(
            m,
            Message::Notification {
                params: Value::Null,
                ..
            }
        ));
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":"x","result":3}"#).unwrap();
        assert_eq!(
            m,
            Message::Response {
                id: json!("x"),
                outcome: Ok(json!(3))
            }
        );
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"no"}}"#)
            .unwrap();
        assert!(matches!(
            m,
            Message::Response {
                outcome: Err(_),
                ..
            }
        ));
    }

    #[test]
    fn an_agents_sertone_call_is_rebuilt_to_metadata() {
        let pre = json!({"request_id": "r", "api_id": "a", "consumer_wallet_hash": "h",
                         "endpoint_path": "/p", "timestamp": 1});
        let mut sent = pre.clone();
        sent["request_body"] = json!("SECRET");
        let call =
            HookInvoke::from_agent(&json!({"hook": crate::sertone::PRE_REQUEST, "payload": sent}))
                .unwrap();
        assert_eq!(call.payload, pre);
        let e = HookInvoke::from_agent(
            &json!({"hook": crate::sertone::POST_RESPONSE, "payload": {"response_body": "x"}}),
        )
        .unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        let e = HookInvoke::from_agent(&json!({"hook": "h", "deadline_ms": 0})).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        let other = json!({"hook": "on:flow.new", "payload": {"request_body": "kept"}});
        assert_eq!(
            HookInvoke::from_agent(&other).unwrap().payload["request_body"],
            "kept"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "hello",
            "[]",
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#,
            r#"{"jsonrpc":"2.0","method":"m"#,
        ] {
            assert!(Message::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Message::parse("x").unwrap_err().code(), codes::PARSE_ERROR);
        assert_eq!(
            Message::parse("{}").unwrap_err().code(),
            codes::INVALID_REQUEST
        );
    }

    #[test]
    fn params_deny_unknown_fields() {
        let e = params::<Handshake>(&json!({"name":"a","version":"1","api":1,"x":1})).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        let h: HookInvoke = params(&json!({"hook":"h"})).unwrap();
        assert_eq!(h.deadline_ms, None);
    }

    #[test]
    fn every_code_has_a_distinct_name() {
        let names: std::collections::BTreeSet<_> =
            codes::ALL.iter().map(|c| codes::name(*c)).collect();
        assert_eq!(names.len(), codes::ALL.len());
        assert!(!names.contains("error"), "a code without a name of its own");
        // A code added to the module and not to `ALL` would be checked by nothing.
        let consts = include_str!("message.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("pub const") && l.contains(": i64 = -32"))
            .count();
        assert_eq!(consts, codes::ALL.len());
    }

    /// docs/protocol.md §2 lists every code with the name the runtime gives it, and nothing
    /// else: an agent branches on the code and logs the name.
    #[test]
    fn every_code_is_documented_with_its_name() {
        let doc = include_str!("../../../docs/protocol.md");
        let start = doc
            .find("## 2. Error codes")
            .expect("§2 of docs/protocol.md");
        let section = &doc[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
        let mut documented = std::collections::BTreeMap::new();
        for line in section.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(code), Some(name)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Ok(code) = code.parse::<i64>() else {
                continue;
            };
            documented.insert(code, name.trim_matches('`').to_string());
        }
        let actual: std::collections::BTreeMap<i64, String> = codes::ALL
            .iter()
            .map(|&c| (c, codes::name(c).to_string()))
            .collect();
        assert_eq!(documented, actual);
    }
}
