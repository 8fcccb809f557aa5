//! The protocol's framing and message parsing: whatever bytes a plugin (or agent) writes, split
//! at any points, the decoder never panics, never holds more than the cap, and every frame it
//! yields is within the cap; message and params parsing never panics, nor does the agent links'
//! decoding (`from_frame`, with the id a refused frame is answered under, and `hook_invoke`'s
//! typed request as `serve` and `run` take it from an agent).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_policy::protocol::frame::FrameDecoder;
use stockade_policy::protocol::message::{self, Message};

fuzz_target!(|data: &[u8]| {
    const MAX: usize = 1024;
    let mut d = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    // The first byte chooses the read size, so splits at every position get exercised.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        d.feed(chunk, &mut out);
        assert!(d.pending() <= MAX + 1);
    }
    for frame in out.iter().cloned() {
        if let Ok(Message::Request { params, .. }) = message::from_frame(frame) {
            let _ = message::HookInvoke::from_agent(&params);
            let _ = message::no_params(&params);
        }
    }
    for frame in out.into_iter().flatten() {
        assert!(frame.len() <= MAX && !frame.contains('\n'));
        if let Ok(Message::Request { params, .. } | Message::Notification { params, .. }) =
            Message::parse(&frame)
        {
            let _ = message::params::<message::Handshake>(&params);
            let _ = message::params::<message::HookInvoke>(&params);
            let _ = message::params::<message::KvPut>(&params);
        }
    }
});
