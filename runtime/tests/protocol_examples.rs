//! The example plugins in `examples/` (sh, Python, C), packed and signed by the fixture and
//! served by `stockade run` in a real sandbox: each handshakes, is granted what it asked for and
//! answers hooks.

mod protocol_common;
use protocol_common::*;
use serde_json::json;
use std::path::{Path, PathBuf};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Pack `dir` in the fixture and run it with two hook calls.
fn serve(fx: &Fixture, dir: &Path) -> Session {
    let dir = dir.to_str().unwrap();
    let r = fx.pack_dir(dir, "p.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let call = |id: u64, payload: serde_json::Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"hook_invoke",
               "params":{"hook":"on:flow.new","payload":payload,"deadline_ms":5000}})
        .to_string()
    };
    run_stockade(
        fx.dir(),
        &[
            "run",
            "p.stockade",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ],
        &[
            &call(1, json!({"dst_port": 443})),
            &call(2, json!({"dst_port": 23})),
        ],
    )
}

fn check(s: &Session, plugin: &str) {
    assert_eq!(s.code, 0, "{}", s.stderr);
    let ready = s
        .notes("plugin_state")
        .into_iter()
        .find(|n| n["params"]["state"] == "ready")
        .unwrap_or_else(|| panic!("never ready: {:#?}", s.msgs))
        .clone();
    assert_eq!(ready["params"]["granted"], json!(["log", "register_hook"]));
    assert_eq!(ready["params"]["hooks"], json!(["on:flow.new"]));
    for id in [1, 2] {
        assert_eq!(s.responses(id), 1);
        assert_eq!(s.response(id)["result"]["plugin"], plugin, "{:#?}", s.msgs);
    }
    let st = s.final_state();
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(st["reason"]["sandbox"]["exit"]["code"], 0, "{st}");
}

#[test]
fn hello_sh() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    check(&serve(&fx, &example("hello")), "hello");
}

#[test]
fn hello_python() {
    if !require_root() {
        return;
    }
    if !require(
        Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 not installed (Debian package python3)",
    ) {
        return;
    }
    let fx = Fixture::new();
    let s = serve(&fx, &example("hello-python"));
    check(&s, "hello-python");
    assert_eq!(s.response(1)["result"]["allow"], true);
    assert_eq!(
        s.response(2)["result"]["allow"],
        false,
        "port 23 is refused"
    );
    assert!(s
        .notes("log")
        .iter()
        .any(|n| n["params"]["source"] == "plugin"));
}

#[test]
fn hello_c() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.path("hello-c");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::copy(example("hello-c/manifest.json"), pkg.join("manifest.json")).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(pkg.join("entrypoint"))
        .arg(example("hello-c/hello.c"))
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        other => {
            let why = format!("cannot build hello-c with cc -static (gcc, libc6-dev): {other:?}");
            require(false, &why);
            return;
        }
    }
    check(&serve(&fx, &pkg), "hello-c");
}

#[test]
fn hello_rust_with_the_sdk() {
    if !require_root() {
        return;
    }
    // `cargo test` builds the package's examples into <target>/debug/examples, named
    // `hello_rust-<hash>` (or `hello-rust` by `cargo build --example`); take the newest.
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples"))
        .unwrap();
    let bin = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n == "hello-rust" || n.starts_with("hello_rust-")) && !n.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| dir.join("hello-rust"));
    let why = format!(
        "{} not built (run the whole `cargo test`: it builds examples)",
        bin.display()
    );
    if !require(bin.exists(), &why) {
        return;
    }
    let fx = Fixture::new();
    let pkg = fx.path("hello-rust");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::copy(
        example("hello-rust/manifest.json"),
        pkg.join("manifest.json"),
    )
    .unwrap();
    std::fs::copy(&bin, pkg.join("entrypoint")).unwrap();
    let s = serve(&fx, &pkg);
    check(&s, "hello-rust");
    assert_eq!(s.response(1)["result"]["allow"], true);
    assert_eq!(s.response(2)["result"]["allow"], false);
    assert_eq!(s.response(2)["result"]["seen"], 2);
}
