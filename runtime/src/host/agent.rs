//! The agent link: NDJSON JSON-RPC from the agent (for `stockade run`: the runtime's own stdin),
//! routed into the [`Supervisor`]. Same framing and cap as the plugin link, but the agent is
//! trusted to drive the runtime, so a bad frame is answered with an error, not a disconnect.

use super::supervisor::Supervisor;
use std::collections::VecDeque;
use std::time::Instant;
use stockade_policy::protocol::frame::{Frame, FrameDecoder};
use stockade_policy::protocol::message::{
    codes, from_frame, response_err, HookInvoke, Message, RpcError,
};

/// One agent connection's input side: frames decoded from the agent's bytes wait in a backlog
/// and are answered one at a time ([`AgentLink::answer_next`]), so the caller can stop while the
/// answers have no room (back-pressure per request, however large each answer is).
pub struct AgentLink {
    decoder: FrameDecoder,
    backlog: VecDeque<Frame>,
}

impl AgentLink {
    /// A link accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame),
            backlog: VecDeque::new(),
        }
    }

    /// Bytes from the agent, decoded into the backlog.
    pub fn feed(&mut self, data: &[u8]) {
        let mut frames = Vec::new();
        self.decoder.feed(data, &mut frames);
        self.backlog.extend(frames);
    }

    /// The agent's input ended: a last request without its newline is one too.
    pub fn finish(&mut self) {
        let mut frames = Vec::new();
        self.decoder.finish(&mut frames);
        self.backlog.extend(frames);
    }

    /// Whether requests wait to be answered.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Answer the oldest waiting request (false: none waits).
    pub fn answer_next(&mut self, sup: &mut Supervisor, now: Instant) -> bool {
        let Some(f) = self.backlog.pop_front() else {
            return false;
        };
        let m = match from_frame(f) {
            Ok(m) => m,
            Err(answer) => {
                sup.to_agent.push(answer);
                return true;
            }
        };
        match m {
            Message::Request {
                id,
                method,
                params: p,
            } if method == "hook_invoke" => match HookInvoke::from_agent(&p) {
                Ok(call) => sup.invoke(id, call, now),
                Err(e) => sup.to_agent.push(response_err(&id, &e)),
            },
            Message::Request { id, method, .. } => sup.to_agent.push(response_err(
                &id,
                &RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    format!("unknown method `{method}`"),
                ),
            )),
            // Notifications and responses from the agent carry nothing `run` acts on.
            _ => {}
        }
        true
    }
}
