//! `stockade run`'s agent side on fd 0/1: a stalled agent (it never reads stdout) does not
//! stall the runtime, and the flags of the descriptors shared with the agent (O_NONBLOCK) are
//! restored when it ends. Real sandboxes (root).

mod leftovers;
mod protocol_common;
use leftovers::assert_no_sandbox_left;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use protocol_common::*;
use std::io::{BufRead, Read, Write};
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
    pack_as(fx, "t", ANSWER);
}

/// Pack a plugin answering with `body` (after the prelude) as `<name>.stockade`.
fn pack_as(fx: &Fixture, name: &str, body: &str) {
    let d = fx.dir().join(format!("plugin-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("manifest.json"), MANIFEST).unwrap();
    let entry = d.join("entrypoint");
    std::fs::write(&entry, format!("{PRELUDE}{body}\n")).unwrap();
    std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = fx.pack_dir(d.to_str().unwrap(), &format!("{name}.stockade"));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Answers every hook with a 60 KB result.
const BIG_ANSWER: &str = r#"hs '"log","register_hook"'
x=$(head -c 60000 /dev/zero | tr '\0' a)
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"big":"%s"}}\n' "$id" "$x" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;

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
    let mut child = run_cmd(&fx)
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
    let status = wait_within(
        &mut child,
        Duration::from_secs(90),
        "stockade run stalled behind its agent",
        || {},
    );
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

/// `stockade run t.stockade` in the fixture, stdout and stderr as given.
fn run_cmd(fx: &Fixture) -> Command {
    run_pkg(fx, "t.stockade", &[])
}

/// `stockade run PKG EXTRA…` in the fixture.
fn run_pkg(fx: &Fixture, pkg: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockade"));
    c.args(["run", pkg, "--trust", "trust", "--state-dir", "state"])
        .args(extra)
        .current_dir(fx.dir());
    c
}

/// `cmd` started with its three stdio descriptors piped.
fn spawn_piped(cmd: &mut Command) -> std::process::Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// All of `child`'s stderr (it has ended, or is about to).
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// Wait for `child` to end, calling `meanwhile` every 50 ms; fails after `limit`.
fn wait_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
    mut meanwhile: impl FnMut(),
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        meanwhile();
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests answered by the runtime itself (an unknown method, named in the answer: no plugin
/// round trip), more than 16 MiB of them, and their answers more than the 16 MiB the agent's
/// output may queue.
fn many_requests(n: usize) -> String {
    let method = format!("no_such_method_{}", "x".repeat(240));
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"{method}\"}}\n"
        ));
    }
    assert!(s.len() > 16 << 20);
    s
}

/// Exactly one answer per request, each id once.
fn check_every_answer(out: &str, n: usize) {
    let mut seen = vec![false; n + 1];
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(id) = v["id"].as_u64().and_then(|i| usize::try_from(i).ok()) {
            assert!(!seen[id], "id {id} answered twice");
            seen[id] = true;
        }
    }
    let missing = seen[1..].iter().filter(|s| !**s).count();
    assert_eq!(missing, 0, "{missing} of {n} requests got no answer");
}

/// An agent that writes all its requests before reading (a file, a fast pipe) gets every
/// answer: the runtime reads its input in turns, only while the answers have room, instead of
/// reading it all at once and declaring the agent gone when the answers piled past 16 MiB
/// (and a regular file on stdin is no longer cut at 16 MiB).
#[test]
fn a_pipelining_agent_gets_every_answer_from_a_file_or_a_pipe() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    let n = 70_000;
    let input = many_requests(n);
    std::fs::write(fx.dir().join("in.ndjson"), &input).unwrap();
    // stdin a regular file, stdout a file.
    let out = run_cmd(&fx)
        .stdin(std::fs::File::open(fx.dir().join("in.ndjson")).unwrap())
        .stdout(std::fs::File::create(fx.dir().join("out1")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("stopped reading"), "{stderr}");
    check_every_answer(&std::fs::read_to_string(fx.dir().join("out1")).unwrap(), n);
    // stdin a pipe written as fast as it drains, stdout a pipe read by the agent.
    let mut child = spawn_piped(&mut run_cmd(&fx));
    let mut w = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || w.write_all(input.as_bytes()).unwrap());
    let mut answers = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answers)
        .unwrap();
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    check_every_answer(&answers, n);
}

/// An agent that closes its end of the runtime's stdout is gone: the plugin is shut down at
/// once (said on stderr), without waiting for the agent's stdin to end.
#[test]
fn an_agent_whose_output_is_gone_ends_the_session() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    let mut child = spawn_piped(&mut run_cmd(&fx));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Wait for the first line (the plugin's state), then go away on that side only.
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    // Keep giving it something to answer (and keep stdin open).
    let status = wait_within(
        &mut child,
        Duration::from_secs(30),
        "run kept going with its agent's output gone",
        || {
            let _ = stdin.write_all(format!("{}\n", invoke(1, None)).as_bytes());
        },
    );
    let stderr = stderr_of(&mut child);
    // Seen as an error event on fd 1, or as EPIPE on the next write, whichever comes first.
    assert!(
        stderr.contains("the agent closed its output")
            || stderr.contains("cannot write to the agent"),
        "{stderr}"
    );
    assert_eq!(status.code(), Some(0), "a graceful stop: {stderr}");
}

/// Read `lines` up to the first one `pred` accepts; fails with `what` if none comes.
fn read_until(
    lines: &mut std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) {
    assert!(
        lines.by_ref().map(Result::unwrap).any(|l| pred(&l)),
        "{what}"
    );
}

/// The plugin's `plugin_state: ready` on `lines`.
fn is_ready(l: &str) -> bool {
    l.contains("\"plugin_state\"") && l.contains("\"state\":\"ready\"")
}

/// Send `sig` to `child`, then read the rest of its output and wait for it: its exit code, its
/// stderr and its last message.
fn signal_and_finish(
    child: &mut std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    sig: i32,
) -> (Option<i32>, String, serde_json::Value) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::try_from(sig).unwrap(),
    )
    .unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    let last = serde_json::from_str(rest.last().unwrap()).unwrap();
    (status.code(), stderr_of(child), last)
}

/// A foreground `run` stopped by Ctrl-C (SIGINT) or SIGTERM shuts its plugin down the graceful
/// way and leaves nothing, and its status says it was interrupted (128+N, as a shell reports
/// such a command), not 0: a script's `stockade run … && next` must not go on as if the
/// session had finished. The plugin's own clean status is in its last `plugin_state`.
#[test]
fn a_run_stopped_by_a_signal_cleans_up_and_says_so() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = spawn_piped(&mut run_cmd(&fx));
        let _stdin = child.stdin.take().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        read_until(&mut lines, "the plugin never got ready", is_ready);
        let pid = child.id();
        let (code, stderr, last) = signal_and_finish(&mut child, lines, sig);
        assert_eq!(code, Some(128 + sig), "{stderr}");
        assert_eq!(last["params"]["state"], "exited", "{last}");
        assert_eq!(last["params"]["reason"]["kind"], "shutdown", "{last}");
        assert_no_sandbox_left(pid);
    }
}

/// A signal that arrives while a session the agent ended is already stopping (its plugin
/// shutting down) interrupts nothing: the status stays 0, not 128+N.
#[test]
fn a_signal_during_the_agents_own_stop_leaves_the_status_0() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // Says it is draining, then takes a second to finish: the signal comes in that second.
    pack_as(
        &fx,
        "t",
        r#"hs '"log"'
while IFS= read -r line; do
  case $line in
    *'"method":"shutdown"'*)
      printf '%s\n' '{"jsonrpc":"2.0","method":"log","params":{"message":"draining"}}'
      sleep 1
      exit 0 ;;
  esac
done"#,
    );
    let mut child = spawn_piped(&mut run_cmd(&fx));
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, "the plugin never got ready", is_ready);
    drop(child.stdin.take());
    read_until(&mut lines, "the plugin never said it was draining", |l| {
        l.contains("\"draining\"")
    });
    let pid = child.id();
    let (code, stderr, last) = signal_and_finish(&mut child, lines, libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(last["params"]["reason"]["kind"], "shutdown", "{last}");
    assert_no_sandbox_left(pid);
}

/// `stockade run PKG 2>&1 | agent`, and the agent goes away: the runtime's diagnostic about it
/// ("cannot write to the agent") goes to the same dead pipe. That failed write is lost, never a
/// panic: `eprintln!` panicked there and the release build aborted (134) with the plugin up,
/// skipping its shutdown and leaving its cgroups behind.
#[test]
fn an_agent_taking_stdout_and_stderr_on_one_pipe_that_goes_away_ends_the_session() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let mut child = run_cmd(&fx)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w.try_clone().unwrap()))
        .stderr(Stdio::from(out_w))
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut agent = std::fs::File::from(out_r);
    let mut first = [0u8; 1];
    agent.read_exact(&mut first).unwrap();
    drop(agent);
    let status = wait_within(
        &mut child,
        Duration::from_secs(30),
        "run kept going with its agent gone",
        || {
            let _ = stdin.write_all(format!("{}\n", invoke(1, None)).as_bytes());
        },
    );
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop, not a panic: {status:?}"
    );
    assert_no_sandbox_left(child.id());
}

/// The same call every time (one payload: after the first, each is a cache hit, ≈ 60 KB).
fn cached_call(i: u64) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "hook_invoke",
                       "params": {"hook": "on:flow.new", "payload": {"same": true}}})
    .to_string()
}

/// `run` of a plugin answering with 60 KB, its answers cached for a minute, after the first
/// [`cached_call`] filled the cache: the child, its stdin and stdout, and what was read so far.
fn start_cached_big(
    fx: &Fixture,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::process::ChildStdout,
    Vec<u8>,
) {
    pack_as(fx, "big", BIG_ANSWER);
    std::fs::write(
        fx.dir().join("cache.toml"),
        "version = 1\n[hooks.\"on:flow.new\"]\ncache_ttl_ms = 60000\n",
    )
    .unwrap();
    let mut child = spawn_piped(&mut run_pkg(
        fx,
        "big.stockade",
        &["--policy", "cache.toml"],
    ));
    let mut w = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    w.write_all(format!("{}\n", cached_call(1)).as_bytes())
        .unwrap();
    let mut first = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("\"big\"") {
        let k = r.read(&mut chunk).unwrap();
        assert!(k > 0, "no first answer");
        first.extend_from_slice(&chunk[..k]);
    }
    (child, w, r, first)
}

/// An agent that sends its requests, closes its stdin and never reads its answers stalls: once
/// the answers queued reach the 1 MiB after which requests wait (60 KB cached answers here), and
/// it takes not a byte for 10 s, it is treated as gone and the plugin shut down. Its requests
/// waiting, the session used to never become idle, and `run` and the plugin lived until a
/// signal.
#[test]
fn an_agent_that_closes_stdin_and_never_reads_is_given_up() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let (mut child, mut w, r, _) = start_cached_big(&fx);
    // 100 more calls (6 MB of answers, short of the 16 MiB overflow), stdin closed, and
    // nothing more read.
    let input: String = (2..=101).map(|i| format!("{}\n", cached_call(i))).collect();
    w.write_all(input.as_bytes()).unwrap();
    drop(w);
    let status = wait_within(
        &mut child,
        Duration::from_secs(60),
        "run waited for ever on an agent that stopped reading after closing its stdin",
        || {},
    );
    let stderr = stderr_of(&mut child);
    assert!(
        stderr.contains("the agent stopped reading (10 s"),
        "{stderr}"
    );
    assert_eq!(status.code(), Some(0), "a graceful stop: {stderr}");
    drop(r);
}

/// Wait for a `run` whose agent keeps its stdin open (`w`) and never reads its stdout (`r`) to
/// end on its own: it must be given up as stalled (10 s without taking a byte, its output full),
/// the plugin shut down gracefully (exit 0), and no sandbox left. Killed after a generous 60 s
/// if it did not end: that is the failure.
fn given_up_with_stdin_open(
    mut child: std::process::Child,
    w: std::process::ChildStdin,
    r: std::process::ChildStdout,
    what: &str,
) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pid = child.id();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = stderr_of(&mut child);
    drop((w, r));
    let Some(status) = status else {
        panic!("{what}: run did not end in 60 s (killed) with its agent's stdin open:\n{stderr}");
    };
    assert!(
        stderr.contains("the agent stopped reading (10 s"),
        "{what}: {stderr}"
    );
    assert_eq!(status.code(), Some(0), "{what}: a graceful stop: {stderr}");
    assert_no_sandbox_left(pid);
}

/// The stall rule with the agent's stdin still open: an agent that keeps it open, sends
/// requests whose 60 KB answers fill the pipe and the 1 MiB after which requests wait, and never
/// reads its stdout, is given up once it has taken nothing for 10 s — with requests left
/// waiting (cached answers, given at once), and with none left (every request passed to the
/// plugin before its answers arrived and filled the output: nothing counted as stalled, and the
/// session, the plugin with it, lived until a signal).
#[test]
fn an_agent_that_keeps_stdin_open_and_never_reads_is_given_up() {
    if !require_root() {
        return;
    }
    // Requests left waiting: 100 more cached calls (6 MB of answers, short of the 16 MiB
    // overflow).
    let fx = Fixture::new();
    let (child, mut w, r, _) = start_cached_big(&fx);
    let input: String = (2..=101).map(|i| format!("{}\n", cached_call(i))).collect();
    w.write_all(input.as_bytes()).unwrap();
    given_up_with_stdin_open(child, w, r, "requests waiting");

    // None left waiting: 100 calls the plugin answers (not cached), all read and passed to it
    // at once; their 6 MB of answers fill the output only afterwards.
    let fx = Fixture::new();
    pack_as(&fx, "big", BIG_ANSWER);
    let mut child = spawn_piped(&mut run_pkg(&fx, "big.stockade", &[]));
    let mut w = child.stdin.take().unwrap();
    let r = child.stdout.take().unwrap();
    let input: String = (1..=100)
        .map(|i| format!("{}\n", invoke(i, Some(30_000))))
        .collect();
    w.write_all(input.as_bytes()).unwrap();
    given_up_with_stdin_open(child, w, r, "no request waiting");
}

/// Answers far larger than their requests (60 KB results, served from the answer cache at once,
/// without the plugin), pipelined by an agent that reads slowly: every one arrives — the
/// requests are answered one at a time while the output has room (a 64 KiB read of them used
/// to queue gigabytes), and at the end the agent keeps its answers as long as it keeps taking
/// them (the final drain gave up after 100 polls however fast they returned).
#[test]
fn large_answers_to_a_slow_pipelining_agent_all_arrive() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // After the first call, each is a cache hit; the rest are pipelined once it was answered.
    let (child, mut w, mut r, mut all) = start_cached_big(&fx);
    let n = 600;
    let input: String = (2..=n).map(|i| format!("{}\n", cached_call(i))).collect();
    let mut chunk = vec![0u8; 4096];
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(input.as_bytes());
    });
    loop {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => all.extend_from_slice(&chunk[..k]),
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let answers = String::from_utf8(all)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"big\""))
        .count();
    assert_eq!(answers as u64, n, "{stderr}");
}

/// An agent that closes its end of stdout while nothing is being written to it ends the session
/// at once (an error event on fd 1), not when its stdin ends.
#[test]
fn an_agent_that_closes_its_output_while_idle_ends_the_session() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    let mut child = spawn_piped(&mut run_cmd(&fx));
    let _stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    // Let the runtime write what it has, then go away without asking for anything.
    std::thread::sleep(Duration::from_millis(300));
    drop(stdout);
    let status = wait_within(
        &mut child,
        Duration::from_secs(20),
        "run kept going with its agent's output closed",
        || {},
    );
    assert_eq!(status.code(), Some(0));
}

/// A last request without its newline at the end of the input is answered (`printf '{…}'`).
#[test]
fn a_last_request_without_its_newline_is_answered() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    pack(&fx);
    let out = run_cmd(&fx)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            let mut w = c.stdin.take().unwrap();
            w.write_all(format!("{}\n{}", invoke(1, None), invoke(2, None)).as_bytes())?;
            drop(w);
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("result").is_some())
        .filter_map(|v| v["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![1, 2], "{text}");
}
