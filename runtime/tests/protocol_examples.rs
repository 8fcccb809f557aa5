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

/// The binary of this package's Rust example `name` (`[[example]]` in runtime/Cargo.toml), or
/// `None` (a skip, said by `require`) when it was not built. `cargo test` builds the package's
/// examples into <target>/debug/examples, named `name-<hash>` with `_` for `-` (or `name` by
/// `cargo build --example`); take the newest.
fn example_bin(name: &str) -> Option<PathBuf> {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples"))
        .unwrap();
    let hashed = format!("{}-", name.replace('-', "_"));
    let bin = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n == name || n.starts_with(&hashed)) && !n.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| dir.join(name));
    let why = format!(
        "{} not built (run the whole `cargo test`: it builds examples)",
        bin.display()
    );
    require(bin.exists(), &why).then_some(bin)
}

/// A package directory in `fx` of this package's Rust example `name`: its manifest and its
/// built binary as the entrypoint; `None` (a skip, said by `require`) when it was not built.
fn rust_example_pkg(fx: &Fixture, name: &str) -> Option<PathBuf> {
    let bin = example_bin(name)?;
    let pkg = fx.path(name);
    std::fs::create_dir(&pkg).unwrap();
    std::fs::copy(
        example(&format!("{name}/manifest.json")),
        pkg.join("manifest.json"),
    )
    .unwrap();
    std::fs::copy(&bin, pkg.join("entrypoint")).unwrap();
    Some(pkg)
}

#[test]
fn hello_rust_with_the_sdk() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let Some(pkg) = rust_example_pkg(&fx, "hello-rust") else {
        return;
    };
    let s = serve(&fx, &pkg);
    check(&s, "hello-rust");
    assert_eq!(s.response(1)["result"]["allow"], true);
    assert_eq!(s.response(2)["result"]["allow"], false);
    assert_eq!(s.response(2)["result"]["seen"], 2);
}

/// The Rust SDK keeps a plugin author's mistakes from breaking the protocol, under the real
/// runtime: a host call the handshake did not get granted (here `emit_event`, not asked for), an
/// answer over `max_frame_bytes` and one nested past the 120 levels an answer may (§3.3) each
/// fail that one hook call (`plugin_error`, the SDK's reason in it) instead of getting the
/// plugin terminated (`denied`, `violation`), and a handler's `println!` is a stderr log line,
/// not `garbage`; the plugin goes on serving and exits cleanly.
#[test]
fn the_sdk_turns_an_authors_protocol_breaches_into_hook_errors() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let Some(pkg) = rust_example_pkg(&fx, "sdk-probe") else {
        return;
    };
    let r = fx.pack_dir(pkg.to_str().unwrap(), "p.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let payloads = [
        json!({"do": "deep", "n": 121}),
        json!({"do": "big", "n": 70_000}),
        json!({"do": "emit"}),
        json!({"do": "deep", "n": 120}),
        json!({"do": "log"}),
        json!({"do": "print"}),
    ];
    let calls: Vec<String> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"jsonrpc":"2.0","id":i + 1,"method":"hook_invoke",
                   "params":{"hook":"on:flow.new","payload":p,"deadline_ms":5000}})
            .to_string()
        })
        .collect();
    let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
    let s = run_stockade(
        fx.dir(),
        &[
            "run",
            "p.stockade",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ],
        &calls,
    );
    assert_eq!(s.code, 0, "{}\n{:#?}", s.stderr, s.msgs);
    for (id, why) in [
        (1, "nests 121 levels"),
        (2, "max_frame_bytes"),
        (3, "not granted"),
    ] {
        assert_eq!(s.error_code(id), -32008, "{:#?}", s.msgs);
        let e = s.response(id)["error"]["data"]["plugin_error"].to_string();
        assert!(e.contains(why), "{id}: {e}");
    }
    // An answer at the limit reaches the agent whole.
    let (mut v, mut depth) = (&s.response(4)["result"], 0);
    while let Some([inner]) = v.as_array().map(Vec::as_slice) {
        (v, depth) = (inner, depth + 1);
    }
    assert_eq!((depth, v), (120, &json!("x")), "{:#?}", s.msgs);
    assert_eq!(s.response(5)["result"]["ok"], true, "{:#?}", s.msgs);
    // A `println!` in a handler reaches stderr (a log line), not the protocol's stream, where
    // it was garbage: the plugin was terminated (review-159).
    assert_eq!(s.response(6)["result"]["ok"], true, "{:#?}", s.msgs);
    assert!(
        s.msgs.iter().any(|m| m["method"] == "log"
            && m["params"]["message"]
                .as_str()
                .is_some_and(|t| t.contains("hello from a handler"))),
        "{:#?}",
        s.msgs
    );
    let st = s.final_state();
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(st["reason"]["sandbox"]["exit"]["code"], 0, "{st}");
}
