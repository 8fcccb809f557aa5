//! `stockade serve` with a stderr nobody reads: its log (and the audit log's `stderr` sink,
//! without a journal) never makes the one event loop wait for the reader (`logqueue`).

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One request on a fresh connection, its answer left unread (but its first byte): once it has arrived the client
/// closes, and the daemon's next read of the connection fails (ECONNRESET: unread data), which
/// it logs ("connection … failed; closed", one line). Panics when no answer came within
/// `wait`: the loop is stuck.
fn logged_reset(sock: &std::path::Path, wait: Duration) {
    let s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(wait)).unwrap();
    (&s).write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"plugin_list\",\"params\":{}}\n")
        .unwrap();
    // One byte of the answer read, the rest left unread.
    let mut b = [0u8; 1];
    let n = (&s)
        .read(&mut b)
        .expect("no answer: the daemon's loop is stuck behind its stderr");
    assert_eq!(n, 1);
}

/// One call on a connection with a read timeout of `wait`: its response.
fn call_within(sock: &std::path::Path, method: &str, params: Value, wait: Duration) -> Value {
    let s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(wait)).unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    (&s).write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut r = BufReader::new(&s);
    loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .unwrap_or_else(|e| panic!("{method}: no answer within {wait:?}: {e}"));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 7 {
            return v;
        }
    }
}

#[test]
fn a_stderr_nobody_reads_stalls_no_agent_and_refuses_a_required_stderr_audit_record() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // A pipe as stderr, not read until the end (a supervisor that stopped reading).
    let (mut child, guard, sock) = start_audited_to_stderr(&fx, Stdio::piped());
    // ~60 bytes a line: 6,000 lines fill the 64 KiB pipe and the 256 KiB queue behind it.
    let wait = Duration::from_secs(15);
    for _ in 0..6000 {
        logged_reset(&sock, wait);
    }
    // Every answer still comes (15 s each at most; the old loop froze in its 1,100th log write).
    let list = call_within(&sock, "plugin_list", json!({}), wait);
    assert_eq!(list["result"]["plugins"], json!([]), "{list}");
    // A required audit record (the refused verification's) cannot be written within the
    // daemon's bound: the load is refused `audit.busy` (75), never done unaudited, never hung.
    let missing = fx.dir().join("missing.stockade");
    let r = call_within(&sock, "plugin_load", json!({"package": missing}), wait);
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "audit.busy", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 75, "{r}");
    assert!(
        r["error"]["data"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("stopped reading")),
        "{r}"
    );

    // Read again: what was queued comes out, with how many lines were dropped.
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = err.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    let list = call_within(&sock, "plugin_list", json!({}), wait);
    assert!(list.get("result").is_some(), "{list}");
    std::thread::sleep(Duration::from_millis(300));
    signal(i32::try_from(child.id()).unwrap(), "TERM");
    let status = child.wait().unwrap();
    drop(guard);
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("log line(s) dropped: stderr was not being read"),
        "{log}"
    );
    assert!(log.contains("stockade serve: stopped"), "{log}");
    // Whole lines only: every line is one of the daemon's or one audit record.
    for l in log.lines() {
        assert!(
            l.starts_with("stockade serve: ") || l.starts_with("stockade-audit: "),
            "a line cut or mixed: {l:?}"
        );
    }
}

/// A daemon whose audit log's only sink is its `stderr` (no journal), listening on its socket:
/// the child, its guard and the socket's path.
fn start_audited_to_stderr(
    fx: &Fixture,
    stderr: Stdio,
) -> (std::process::Child, KillOnDrop, std::path::PathBuf) {
    let sock = fx.dir().join("serve.sock");
    let mut args = serve_args(fx, "", Some("[audit]\nstderr = true\n"));
    args.extend(["--socket".to_string(), sock.to_string_lossy().into_owned()]);
    let child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .env_remove("NOTIFY_SOCKET")
        .env("STOCKADE_JOURNAL_SOCKET", fx.dir().join("no-journal"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn stockade serve");
    let guard = KillOnDrop(child.id());
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, guard, sock)
}

/// Kills the daemon if the test fails before it stopped it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// A daemon whose stderr is a device that is no terminal and whose `poll` never says writable
/// (`/dev/kmsg`, here `/dev/random`, which behaves the same once the kernel's generator is
/// ready and keeps nothing written to it) writes its lines as they come: the old queue waited
/// for a "writable" that never came, so no log line ever went out and, with the audit log's
/// `stderr` sink and no journal, every load was refused `audit.busy` after the 1-s wait.
#[test]
fn a_stderr_device_that_never_polls_writable_is_written_as_it_comes() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let device = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/random")
        .unwrap();
    let (mut child, guard, sock) = start_audited_to_stderr(&fx, device.into());
    let wait = Duration::from_secs(15);
    // The refused verification's audit record goes out: the load fails for what it is.
    let missing = fx.dir().join("missing.stockade");
    let r = call_within(&sock, "plugin_load", json!({"package": missing}), wait);
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_ne!(r["error"]["data"]["kind"], "audit.busy", "{r}");
    signal(i32::try_from(child.id()).unwrap(), "TERM");
    let status = child.wait().unwrap();
    drop(guard);
    assert_eq!(status.code(), Some(0));
}

/// A daemon whose stderr's reader closed its end (a supervisor that went away), with the audit
/// log's `stderr` sink and no journal: a required record cannot be written (EPIPE), so the
/// action it records is refused (`audit`, 74), as a file sink's failed write refuses it. The
/// queue counted the lost record as written: the load went on, unaudited.
#[test]
fn a_stderr_whose_reader_closed_refuses_a_required_stderr_audit_record() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut child, guard, sock) = start_audited_to_stderr(&fx, Stdio::piped());
    // The reader goes away.
    drop(child.stderr.take());
    let wait = Duration::from_secs(15);
    let missing = fx.dir().join("missing.stockade");
    let r = call_within(&sock, "plugin_load", json!({"package": missing}), wait);
    assert_eq!(r["error"]["code"], LOAD_FAILED, "{r}");
    assert_eq!(r["error"]["data"]["kind"], "audit", "{r}");
    assert_eq!(r["error"]["data"]["exit"], 74, "{r}");
    signal(i32::try_from(child.id()).unwrap(), "TERM");
    let status = child.wait().unwrap();
    drop(guard);
    assert_eq!(status.code(), Some(0));
}
