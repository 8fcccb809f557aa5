//! `stockade run`'s agent side on fd 0/1: a stalled agent (it never reads stdout) does not
//! stall the runtime, and the flags of the descriptors shared with the agent (O_NONBLOCK) are
//! restored when it ends. Real sandboxes (root).

mod protocol_common;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use protocol_common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Answers every hook at once (builtins only: thousands of calls stay cheap).
const ANSWER: &str = r#"hs '"log","register_hook"'
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true,"pad":"................................................"}}\n' "$id" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;

fn pack(fx: &Fixture) {
    let d = fx.dir();
    std::fs::create_dir_all(d.join("plugin")).unwrap();
    std::fs::write(d.join("plugin/manifest.json"), MANIFEST).unwrap();
    let entry = d.join("plugin/entrypoint");
    std::fs::write(&entry, format!("{PRELUDE}{ANSWER}\n")).unwrap();
    std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = fx.pack_dir("plugin", "t.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn nonblocking(fd: &std::os::fd::OwnedFd) -> bool {
    let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    fl.contains(OFlag::O_NONBLOCK)
}

#[test]
fn a_stalled_agent_does_not_stall_run_and_fd_flags_are_restored() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    // O_CLOEXEC: only the ends given as stdin/stdout may reach the child (a leaked write end
    // would keep its stdin from ever ending).
    let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    // The test keeps duplicates of the child's ends: the same open file descriptions, so the
    // flags the child leaves on them are visible here.
    let in_r_probe = in_r.try_clone().unwrap();
    let out_w_probe = out_w.try_clone().unwrap();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args([
            "run",
            "t.stockade",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ])
        .current_dir(fx.dir())
        .stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ~300 KiB of answers, far more than the 64 KiB pipe; stdout is not read until the
    // runtime has exited.
    let mut w = std::fs::File::from(in_w);
    let mut input = String::new();
    for i in 1..=3000 {
        input.push_str(&invoke(i, Some(30_000)));
        input.push('\n');
    }
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(input.as_bytes());
    });
    let mut err = child.stderr.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "stockade run stalled behind its agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    writer.join().unwrap();
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("did not take its last"),
        "the undrained rest is reported: {stderr}"
    );
    assert!(!nonblocking(&in_r_probe), "fd 0's O_NONBLOCK was left set");
    assert!(!nonblocking(&out_w_probe), "fd 1's O_NONBLOCK was left set");
    // What reached the pipe is whole protocol lines (up to a possibly cut last one).
    drop(out_w_probe);
    let mut out = String::new();
    std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 100);
    for l in &lines[..lines.len() - 1] {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
}
