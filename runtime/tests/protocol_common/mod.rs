//! Shared fixture for the protocol conformance tests: a throwaway CA, small `sh` plugins packed
//! and signed on the fly, and `stockade run` driven with NDJSON on stdin under a hard timeout
//! (a hang of the runtime is a test failure, never a stuck test run).
#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

#[allow(unused_imports)] // each test crate uses its own subset
pub use common::{require, require_root, unix_now, with_subuid, Fixture};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Helpers every test plugin starts with: `hs CAPS` sends the handshake (CAPS is a JSON list
/// body such as `"log","emit_event"`) and reads the reply; `id_of LINE` extracts a numeric id.
pub const PRELUDE: &str = r#"#!/bin/sh
hs() { printf '%s\n' "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"handshake\",\"params\":{\"name\":\"t\",\"version\":\"0.1.0\",\"api\":1,\"capabilities\":[$1],\"hooks\":[\"on:flow.new\"]}}"; IFS= read -r reply; }
id_of() { printf '%s' "$1" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p'; }
"#;

/// The manifest every test plugin is packed with.
pub const MANIFEST: &str = r#"{"name":"t","version":"0.1.0","author":"tests","description":"conformance",
"entrypoint":"entrypoint","requested_capabilities":["log","emit_event","register_hook"],
"hooks":["on:flow.new"],"api":1}"#;

/// A session's outcome.
pub struct Session {
    /// Every NDJSON message the runtime wrote.
    pub msgs: Vec<Value>,
    /// Its exit status.
    pub code: i32,
    /// Its stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Session {
    /// The response to agent request `id`.
    pub fn response(&self, id: u64) -> &Value {
        self.msgs
            .iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no response to {id} in {:#?}\n{}", self.msgs, self.stderr))
    }
    /// Every response to agent request `id` (exactly one is required).
    pub fn responses(&self, id: u64) -> usize {
        self.msgs
            .iter()
            .filter(|m| m["id"] == id && m.get("method").is_none())
            .count()
    }
    /// The error code of the response to `id`.
    pub fn error_code(&self, id: u64) -> i64 {
        self.response(id)["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("response {id} is not an error: {}", self.response(id)))
    }
    /// Notifications with `method`.
    pub fn notes(&self, method: &str) -> Vec<&Value> {
        self.msgs.iter().filter(|m| m["method"] == method).collect()
    }
    /// The params of the first `ready` `plugin_state`.
    pub fn ready(&self) -> Value {
        self.notes("plugin_state")
            .into_iter()
            .find(|n| n["params"]["state"] == "ready")
            .expect("a ready plugin_state")["params"]
            .clone()
    }

    /// The last `plugin_state` notification's params.
    pub fn final_state(&self) -> &Value {
        &self.notes("plugin_state").last().expect("a plugin_state")["params"]
    }
}

/// Pack `script` (appended to [`PRELUDE`]) as plugin `t` and run it with `input` lines on
/// stdin (then EOF), `policy` as the policy file (if any) and `extra` arguments.
pub fn session(script: &str, policy: Option<&str>, extra: &[&str], input: &[&str]) -> Session {
    let fx = Fixture::new();
    session_in(
        &fx,
        MANIFEST,
        ("dev.cert", "int/ca.cert"),
        script,
        policy,
        extra,
        input,
    )
}

/// [`session`] in an existing fixture, with its own manifest and (developer, intermediate)
/// certificates.
pub fn session_in(
    fx: &Fixture,
    manifest: &str,
    certs: (&str, &str),
    script: &str,
    policy: Option<&str>,
    extra: &[&str],
    input: &[&str],
) -> Session {
    session_signed(fx, "dev.key", manifest, certs, script, policy, extra, input)
}

/// [`session_in`], signed with `key` (the developer certificate's key).
#[allow(clippy::too_many_arguments)]
pub fn session_signed(
    fx: &Fixture,
    key: &str,
    manifest: &str,
    (devcert, intcert): (&str, &str),
    script: &str,
    policy: Option<&str>,
    extra: &[&str],
    input: &[&str],
) -> Session {
    let args = pack_session(fx, key, manifest, (devcert, intcert), script, policy, extra);
    run_stockade_under(fx.dir(), &[], &args, input)
}

/// [`session`], with `stockade` started by `wrapper` (a program and its arguments, which then
/// run stockade's path and arguments): e.g. in a mount namespace of its own.
pub fn session_under(
    wrapper: &[String],
    script: &str,
    policy: Option<&str>,
    input: &[&str],
) -> Session {
    let fx = Fixture::new();
    let certs = ("dev.cert", "int/ca.cert");
    let args = pack_session(&fx, "dev.key", MANIFEST, certs, script, policy, &[]);
    run_stockade_under(fx.dir(), wrapper, &args, input)
}

/// Pack `script` as [`session_signed`] does and return the `run` arguments for it (for a test
/// that drives the session itself).
#[allow(clippy::too_many_arguments)]
pub fn pack_session(
    fx: &Fixture,
    key: &str,
    manifest: &str,
    (devcert, intcert): (&str, &str),
    script: &str,
    policy: Option<&str>,
    extra: &[&str],
) -> Vec<String> {
    let d = fx.dir();
    let _ = std::fs::remove_dir_all(d.join("plugin"));
    std::fs::create_dir(d.join("plugin")).unwrap();
    std::fs::write(d.join("plugin/manifest.json"), manifest).unwrap();
    let entry = d.join("plugin/entrypoint");
    std::fs::write(&entry, format!("{PRELUDE}{script}\n")).unwrap();
    std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    common::ok(
        d,
        &[
            "pack",
            "plugin",
            "--key",
            key,
            "--devcert",
            devcert,
            "--intcert",
            intcert,
            "-o",
            "t.stockade",
            // Each session packs its plugin again over the last one's.
            "--force",
        ],
    );
    let mut args = vec![
        "run",
        "t.stockade",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ];
    if let Some(p) = policy {
        std::fs::write(d.join("policy.toml"), format!("version = 1\n{p}")).unwrap();
        args.extend_from_slice(&["--policy", "policy.toml"]);
    }
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

/// Run `stockade ARGS` in `dir` with NDJSON `input`, killing it (and failing) after 60 s.
pub fn run_stockade(dir: &std::path::Path, args: &[&str], input: &[&str]) -> Session {
    run_stockade_under(dir, &[], args, input)
}

/// [`run_stockade`], started by `wrapper` (empty: directly).
pub fn run_stockade_under<A: AsRef<std::ffi::OsStr>>(
    dir: &std::path::Path,
    wrapper: &[String],
    args: &[A],
    input: &[&str],
) -> Session {
    let start = Instant::now();
    let mut child = common::command_under(wrapper, env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockade");
    let mut stdin = child.stdin.take().unwrap();
    let data: String = input.iter().map(|l| format!("{l}\n")).collect();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(data.as_bytes());
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let r_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let r_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("stockade run hung (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = w.join();
    let stdout = r_out.join().unwrap();
    let stderr = r_err.join().unwrap();
    let msgs = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("runtime wrote a non-JSON line ({e}): {l}"))
        })
        .collect();
    Session {
        msgs,
        code: status.code().unwrap_or(-1),
        stderr,
        took: start.elapsed(),
    }
}

/// An agent `hook_invoke` request line.
pub fn invoke(id: u64, deadline_ms: Option<u64>) -> String {
    let mut p = serde_json::json!({"hook": "on:flow.new", "payload": {"n": id}});
    if let Some(d) = deadline_ms {
        p["deadline_ms"] = d.into();
    }
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "hook_invoke", "params": p})
        .to_string()
}
