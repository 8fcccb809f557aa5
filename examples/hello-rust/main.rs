//! hello-rust: a Stockade plugin with the Rust SDK. Built as an example of stockade-runtime's
//! tests (`cargo build -p stockade-runtime --example hello-rust`); pack the binary as
//! `entrypoint` next to this directory's manifest.json.
use stockade_sdk::{json, Plugin};

fn main() {
    let mut seen = 0u64;
    let r = Plugin::new("hello-rust", "0.1.0")
        .capabilities(&["log", "register_hook"])
        .hook("on:flow.new", move |host, payload| {
            seen += 1;
            if seen == 1 {
                host.log("info", "hello-rust saw its first flow")?;
            }
            let allow = payload["dst_port"] != 23;
            Ok(json!({"allow": allow, "plugin": "hello-rust", "seen": seen}))
        })
        .run();
    if let Err(e) = r {
        eprintln!("hello-rust: {e}");
        std::process::exit(1);
    }
}
