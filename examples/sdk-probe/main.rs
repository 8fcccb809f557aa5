//! sdk-probe: a test plugin of stockade-runtime's tests (tests/protocol_examples.rs), built with
//! the Rust SDK, that does what its hook payload's `do` says, to probe how the SDK keeps to the
//! protocol (docs/protocol.md) where a plugin author could break it. It asks for `log` and
//! `register_hook` but not `emit_event`, which its manifest requests.
use stockade_sdk::{json, Plugin, Value};

fn nested(depth: usize) -> Value {
    let mut v = json!("x");
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

fn main() {
    let r = Plugin::new("sdk-probe", "0.1.0")
        .capabilities(&["log", "register_hook"])
        .hook("on:flow.new", |host, payload| {
            let n = payload["n"]
                .as_u64()
                .map_or(0, |n| usize::try_from(n).unwrap_or(0));
            match payload["do"].as_str().unwrap_or_default() {
                // Not asked for in the handshake: the runtime terminates a plugin that calls it.
                "emit" => host.emit_event("probe", json!({}))?,
                "log" => host.log("info", "probe log")?,
                "big" => return Ok(json!("x".repeat(n))),
                "deep" => return Ok(nested(n)),
                // stdout is the protocol's: the SDK points fd 1 at stderr, so this is a log line.
                "print" => println!("hello from a handler"),
                _ => {}
            }
            Ok(json!({"ok": true}))
        })
        .run();
    if let Err(e) = r {
        eprintln!("sdk-probe: {e}");
        std::process::exit(1);
    }
}
