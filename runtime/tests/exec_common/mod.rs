//! Shared helpers for the `exec*` integration tests: run the real `stockade` binary, read its
//! report, and skip (or, with `CI=true`, fail) when the host cannot run a test.
#![allow(dead_code)]

#[path = "../skip/mod.rs"]
mod skip;
#[allow(unused_imports)] // each test crate uses its own subset
pub use skip::{is_root, require};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stockade");

/// Run `stockade <args>` with the given stdin.
pub fn stockade(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockade");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait stockade");
    let _ = writer.join();
    out
}

/// `stockade exec [extra…] -- sh -c SCRIPT`.
pub fn sh(extra: &[&str], script: &str) -> Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    stockade(&args, b"")
}

/// Exit code (panics on death by signal: the runtime itself must never die of one).
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("stockade died by a signal: {o:?}"))
}

/// stdout as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `stockade exec --report FILE [extra…] -- sh -c SCRIPT`; returns (output, parsed report).
pub fn with_report(extra: &[&str], script: &str) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("report.json");
    let rep_s = rep.to_str().unwrap().to_string();
    let mut args = vec!["--report", rep_s.as_str()];
    args.extend_from_slice(extra);
    let o = sh(&args, script);
    let text = std::fs::read_to_string(&rep)
        .unwrap_or_else(|e| panic!("no report ({e}); stderr: {}", err(&o)));
    (o, serde_json::from_str(&text).expect("report is JSON"))
}

/// Write a policy file into a temp dir.
pub fn policy(dir: &Path, text: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The layer named `name` in a report.
pub fn layer<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {report}"))
}

/// Compile `tests/exec_helpers/<name>.c` (static, with gcc) once per test binary and return the
/// executable's path; `None` (a skip, a failure with CI=true) when gcc or a static libc is
/// missing. CI installs gcc and libc6-dev.
pub fn helper(name: &str) -> Option<std::path::PathBuf> {
    use std::sync::Mutex;
    static BUILT: Mutex<Vec<(String, std::path::PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return Some(p.clone());
    }
    if !require(
        Path::new("/usr/bin/gcc").exists(),
        "gcc builds the C test helpers",
    ) {
        return None;
    }
    let src = format!("{}/tests/exec_helpers/{name}.c", env!("CARGO_MANIFEST_DIR"));
    // World-readable directory: root-mode sandboxes run as a distinct uid and exec it from there.
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("exec-helpers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.join(name);
    let cc = Command::new("gcc")
        .args(["-static", "-O1", "-o", out.to_str().unwrap(), &src])
        .output()
        .unwrap();
    if !require(
        cc.status.success(),
        &format!(
            "gcc -static failed (libc6-dev missing?): {}",
            String::from_utf8_lossy(&cc.stderr)
        ),
    ) {
        return None;
    }
    built.push((name.to_string(), out.clone()));
    Some(out)
}

/// `stockade exec --pid-file PF -- COMMAND…`, running in the background.
pub fn exec_with_pid_file(pf: &Path, command: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["exec", "--pid-file", pf.to_str().unwrap(), "--"])
        .args(command)
        .spawn()
        .unwrap()
}

/// SIGTERM to a running runtime (as an operator's `kill` sends it).
pub fn sigterm(child: &std::process::Child) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
}
