//! Every example plugin answers the health `ping` (docs/protocol.md §3.5) — run directly on a
//! pipe here (the protocol logic, no sandbox needed); `serve_*` tests cover pings end to end.
//! The Rust example gets it from the SDK (unit-tested in `sdk/`).

#[path = "skip/mod.rs"]
mod skip;
use skip::require;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

const SESSION: &str = concat!(
    r#"{"jsonrpc":"2.0","id":0,"result":{"granted":["log","register_hook"],"hooks":["on:flow.new"],"limits":{}}}"#,
    "\n",
    r#"{"id":7,"jsonrpc":"2.0","method":"ping","params":{}}"#,
    "\n",
    r#"{"id":8,"jsonrpc":"2.0","method":"hook_invoke","params":{"deadline_ms":100,"hook":"on:flow.new","payload":{}}}"#,
    "\n",
    r#"{"id":9,"jsonrpc":"2.0","method":"ping","params":{}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"shutdown","params":{}}"#,
    "\n"
);

fn answers(cmd: &mut Command) -> Vec<serde_json::Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn example");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SESSION.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &serde_json::Value| m.get("method").is_none())
        .collect()
}

fn check(v: &[serde_json::Value]) {
    let ids: Vec<_> = v.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [7, 8, 9], "{v:?}");
    assert!(v[0].get("result").is_some());
    assert!(v[2].get("result").is_some());
}

#[test]
fn sh_python_and_c_examples_answer_ping() {
    check(&answers(&mut Command::new(example("hello/entrypoint"))));
    if require(
        Path::new("/usr/bin/python3").exists(),
        "hello-python: /usr/bin/python3 not installed (Debian package python3)",
    ) {
        check(&answers(
            Command::new("/usr/bin/python3").arg(example("hello-python/entrypoint")),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("hello-c");
    let built = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(example("hello-c/hello.c"))
        .status();
    match built {
        Ok(s) if s.success() => check(&answers(&mut Command::new(&bin))),
        other => {
            require(false, &format!("hello-c: no C compiler ({other:?})"));
        }
    }
}
