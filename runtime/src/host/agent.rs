//! The agent link: NDJSON JSON-RPC from the agent (for `stockade run`: the runtime's own stdin),
//! routed into the [`Supervisor`]. Same framing and cap as the plugin link, but the agent is
//! trusted to drive the runtime, so a bad frame is answered with an error, not a disconnect.

use super::supervisor::Supervisor;
use serde_json::Value;
use std::time::Instant;
use stockade_policy::protocol::frame::FrameDecoder;
use stockade_policy::protocol::message::{
    codes, params, response_err, HookInvoke, Message, RpcError,
};

/// One agent connection's input side.
pub struct AgentLink {
    decoder: FrameDecoder,
}

impl AgentLink {
    /// A link accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// Bytes from the agent.
    pub fn on_bytes(&mut self, data: &[u8], sup: &mut Supervisor, now: Instant) {
        let mut frames = Vec::new();
        self.decoder.feed(data, &mut frames);
        for f in frames {
            let line = match f {
                Ok(l) => l,
                Err(e) => {
                    let err = RpcError::new(codes::INVALID_REQUEST, e.to_string());
                    sup.to_agent.push(response_err(&Value::Null, &err));
                    continue;
                }
            };
            match Message::parse(&line) {
                Ok(Message::Request {
                    id,
                    method,
                    params: p,
                }) if method == "hook_invoke" => match params::<HookInvoke>(&p) {
                    Ok(call) if call.deadline_ms == Some(0) => sup.to_agent.push(response_err(
                        &id,
                        &RpcError::new(codes::INVALID_PARAMS, "deadline_ms must be at least 1"),
                    )),
                    Ok(call) => sup.invoke(id, call, now),
                    Err(e) => sup.to_agent.push(response_err(&id, &e)),
                },
                Ok(Message::Request { id, method, .. }) => sup.to_agent.push(response_err(
                    &id,
                    &RpcError::new(
                        codes::METHOD_NOT_FOUND,
                        format!("unknown method `{method}`"),
                    ),
                )),
                // Notifications and responses from the agent carry nothing `run` acts on.
                Ok(_) => {}
                Err(e) => sup.to_agent.push(response_err(
                    &Value::Null,
                    &RpcError::new(e.code(), e.to_string()),
                )),
            }
        }
    }

    /// True when the agent's input stopped inside a frame.
    pub fn truncated(&self) -> bool {
        self.decoder.in_frame()
    }
}
