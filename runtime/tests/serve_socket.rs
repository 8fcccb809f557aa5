//! `stockade serve`'s agent socket: peer credentials against the allowlist, systemd socket
//! activation and sd_notify (READY=1 / STOPPING=1), stale-socket handling, and a slow agent
//! connection dropped without stalling anyone else.

mod serve_common;
use serde_json::json;
use serve_common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `python3 -c` as uid and gid `uid`, no supplementary groups (setpriv): add the script and
/// its arguments.
fn python_as(uid: u32) -> Command {
    let uid = uid.to_string();
    let mut c = Command::new("setpriv");
    // The system interpreter: a per-user one (pyenv under /root) is not reachable as another uid.
    c.args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
        .args(["/usr/bin/python3", "-c"]);
    c
}

/// Connect as uid/gid 65534 (setpriv), send `line` (unless empty: a refused peer is closed at
/// once, so it only reads), return the first line received.
fn as_nobody(sock: &std::path::Path, line: &str) -> String {
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX)\ns.settimeout(30)\ns.connect(sys.argv[1])\n\
if sys.argv[2]: s.sendall(sys.argv[2].encode()+b'\\n')\nprint(s.makefile().readline().strip())\n";
    let out = python_as(65534)
        .arg(script)
        .arg(sock)
        .arg(line)
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"plugin_list","params":{}}"#;

#[test]
fn peer_credentials_are_checked_against_the_allowlist() {
    if !require_root() || !require_tool("setpriv", "run a client as another uid") {
        return;
    }
    let fx = Fixture::new();
    let mut s = Serve::start(&fx, "", None);
    let mode = std::fs::metadata(&s.sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    // Past the file mode (opened up here on purpose), the uid check still refuses.
    std::fs::set_permissions(&s.sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let r: serde_json::Value = serde_json::from_str(&as_nobody(&s.sock, "")).unwrap();
    assert_eq!(r["error"]["code"], PEER_REFUSED, "{r}");
    assert_eq!(r["error"]["data"]["uid"], 65534, "{r}");
    assert!(
        s.log().contains("connection refused: uid 65534"),
        "{}",
        s.log()
    );
    // Root (and the daemon's own uid) are allowed.
    s.client().ok("plugin_list", json!({}));
    assert_eq!(s.stop(), 0);

    // Allowlisted by uid.
    let fx = Fixture::new();
    let mut s = Serve::start(&fx, "[serve]\nallowed_uids = [65534]\n", None);
    std::fs::set_permissions(&s.sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let r: serde_json::Value = serde_json::from_str(&as_nobody(&s.sock, LIST)).unwrap();
    assert_eq!(r["result"]["plugins"], json!([]), "{r}");
    assert_eq!(s.stop(), 0);
}

/// `n` connections as `uid` (setpriv), opened one after the other and held open until the
/// returned process's stdin closes; for each, the first line it got once it sent a
/// `plugin_list` (an answer, or the refusal the daemon sent at accept).
fn hold_as(
    sock: &std::path::Path,
    uid: u32,
    n: usize,
) -> (std::process::Child, Vec<serde_json::Value>) {
    let script = r#"import socket,sys
conns=[]
for i in range(int(sys.argv[2])):
    s=socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1]); conns.append(s)
for s in conns:
    try: s.sendall(sys.argv[3].encode()+b'\n')
    except OSError: pass
    try: line=s.makefile().readline().strip()
    except OSError: line=''
    print(line or '{}', flush=True)
sys.stdin.read()
"#;
    let mut child = python_as(uid)
        .arg(script)
        .arg(sock)
        .arg(n.to_string())
        .arg(LIST)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = (0..n)
        .map(|_| {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
        })
        .collect();
    (child, lines)
}

/// How many of `lines` were answered, and the refusals' `data.limit`s.
fn answered_and_refused(lines: &[serde_json::Value]) -> (usize, Vec<String>) {
    let ok = lines
        .iter()
        .filter(|l| l["result"]["plugins"].is_array())
        .count();
    let refused = lines
        .iter()
        .filter(|l| l.get("result").is_none())
        .map(|l| {
            assert_eq!(l["error"]["code"], PEER_REFUSED, "{l}");
            l["error"]["data"]["limit"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    (ok, refused)
}

/// The audit's lock-out: one allowed uid opening as many connections as it may and leaving them
/// idle took all 64, and every other agent was refused, root's too. Now one uid holds a quarter
/// of them, a few uids together all but the reserved ones, and root (or the daemon's uid)
/// always gets in; each refusal is one `peer_refused` line naming the limit, and is logged.
#[test]
fn one_uid_cannot_take_every_connection_and_root_always_gets_in() {
    if !require_root() || !require_tool("setpriv", "run a client as another uid") {
        return;
    }
    // The defaults: 64 in all, 16 per uid, 8 reserved.
    let fx = Fixture::new();
    let mut s = Serve::start(&fx, "[serve]\nallowed_uids = [65534]\n", None);
    std::fs::set_permissions(&s.sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (mut nobody, lines) = hold_as(&s.sock, 65534, 70);
    let (ok, refused) = answered_and_refused(&lines);
    assert_eq!(ok, 16, "answered; refused: {refused:?}");
    assert!(
        refused.iter().all(|l| l == "max_connections_per_uid"),
        "{refused:?}"
    );
    let r = lines.iter().find(|l| l.get("error").is_some()).unwrap();
    assert_eq!(r["error"]["data"]["uid"], 65534, "{r}");
    assert_eq!(r["error"]["data"]["max"], 16, "{r}");
    // Root still gets in while nobody's connections are held.
    s.client().ok("plugin_list", json!({}));
    assert!(
        s.log().contains("connection refused: uid 65534")
            && s.log().contains("(max_connections_per_uid)"),
        "{}",
        s.log()
    );
    drop(nobody.stdin.take());
    nobody.wait().unwrap();
    assert_eq!(s.stop(), 0);

    // Two uids, the limits set: 8 in all, 4 per uid, 2 reserved.
    let fx = Fixture::new();
    let mut s = Serve::start(
        &fx,
        "[serve]\nallowed_uids = [65534, 65533]\nmax_connections = 8\n\
         max_connections_per_uid = 4\nreserved_connections = 2\n",
        None,
    );
    std::fs::set_permissions(&s.sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (mut a, lines) = hold_as(&s.sock, 65534, 6);
    assert_eq!(
        answered_and_refused(&lines),
        (4, vec!["max_connections_per_uid".to_string(); 2])
    );
    // The second uid gets what is left but the reserve.
    let (mut b, lines) = hold_as(&s.sock, 65533, 4);
    assert_eq!(
        answered_and_refused(&lines),
        (2, vec!["reserved_connections".to_string(); 2])
    );
    // Root takes the reserve; past it, max_connections holds for root too.
    let mut c1 = s.client();
    c1.ok("plugin_list", json!({}));
    let mut c2 = s.client();
    c2.ok("plugin_list", json!({}));
    let m = s.client().recv().expect("a refusal line");
    assert_eq!(m["error"]["code"], PEER_REFUSED, "{m}");
    assert_eq!(m["error"]["data"]["limit"], "max_connections", "{m}");
    assert!(s.log().contains("(reserved_connections)"), "{}", s.log());
    for p in [&mut a, &mut b] {
        drop(p.stdin.take());
        p.wait().unwrap();
    }
    assert_eq!(s.stop(), 0);
}

#[test]
fn socket_activation_and_sd_notify() {
    if !require_root() || !require_tool("python3", "pass a listening socket as fd 3") {
        return;
    }
    let fx = Fixture::new();
    let pkg = pack_worker(&fx, "a", &["on:x"]);
    let sock = fx.dir().join("activated.sock");
    let notify = UnixDatagram::bind(fx.dir().join("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // What systemd does: bind and listen, pass it as fd 3, LISTEN_PID = the service's pid
    // (python execs stockade, keeping its pid), NOTIFY_SOCKET for readiness.
    let launcher = "import os,socket,sys\n\
s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\ns.bind(sys.argv[1])\ns.listen(16)\n\
os.dup2(s.fileno(),3)\nos.set_inheritable(3,True)\n\
os.environ['LISTEN_FDS']='1'\nos.environ['LISTEN_PID']=str(os.getpid())\n\
os.execv(sys.argv[2],sys.argv[2:])\n";
    let mut args = serve_args(&fx, &format!("[serve]\nload = [{:?}]\n", pkg), None);
    args.insert(0, env!("CARGO_BIN_EXE_stockade").to_string());
    let stderr = fx.dir().join("serve.stderr");
    let child = Command::new("python3")
        .arg("-c")
        .arg(launcher)
        .arg(&sock)
        .args(&args)
        .current_dir(fx.dir())
        .env("NOTIFY_SOCKET", fx.dir().join("notify.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut s = Serve {
        child,
        sock: sock.clone(),
        stderr,
    };
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // Ready means the config's packages were launched and the socket is served.
    let mut c = s.client();
    // It may have become ready before this connection existed (then its `plugin_state` went to
    // nobody): poll the status instead of waiting for the notification.
    loop {
        let st = c.ok("plugin_status", json!({"name": "a"}));
        if st["state"] == "ready" {
            break;
        }
        assert_eq!(st["state"], "starting", "{st}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.log()
            .contains("listening on the socket passed by systemd"),
        "{}",
        s.log()
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    // The socket belongs to systemd: left in place.
    assert!(sock.exists());
}

/// `LISTEN_FDS=1` with no descriptor 3 passed (a wrapper that set the variables, or a unit whose
/// socket did not come): the daemon takes nothing it opened itself for its listener. It took
/// descriptor 3 late, after its own signalfd (and locks, the Sertone front…) could have been
/// given that number — taking ownership of a descriptor another object owned, closing it under
/// that owner on the refusal. Now it claims descriptor 3 before opening anything: not open, a
/// usage error naming it.
#[test]
fn socket_activation_without_the_descriptor_takes_none_of_the_daemons_own() {
    if !require_tool(
        "python3",
        "exec the daemon with LISTEN_PID set to its own pid",
    ) {
        return;
    }
    let fx = Fixture::new();
    let launcher = "import os,sys\n\
try:\n    os.close(3)\nexcept OSError:\n    pass\n\
os.environ['LISTEN_FDS']='1'\nos.environ['LISTEN_PID']=str(os.getpid())\n\
os.execv(sys.argv[1],sys.argv[1:])\n";
    let mut args = serve_args(&fx, "", None);
    args.insert(0, env!("CARGO_BIN_EXE_stockade").to_string());
    let o = Command::new("python3")
        .arg("-c")
        .arg(launcher)
        .args(&args)
        .current_dir(fx.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("Bad file descriptor"), "{err}");
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let path = fx.dir().join("serve.sock");
    // Stale: bound, then its listener gone.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut s = Serve::start(&fx, "", None);
    s.client().ok("plugin_list", json!({}));
    assert!(s.log().contains("removing stale socket"), "{}", s.log());

    // Live: a second daemon on the same path refuses (EX_TEMPFAIL) and leaves it alone. The
    // kind says which of the two refusals it is (`socket` was both, 73 and 75).
    let mut args = serve_args(&fx, "", None);
    args.extend(["--socket".into(), path.to_string_lossy().into_owned()]);
    args.push("--json".into());
    let kind = |out: &std::process::Output| {
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        j["error"]["kind"].as_str().unwrap_or_default().to_string()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert_eq!(kind(&out), "socket_in_use", "{out:?}");
    s.client().ok("plugin_list", json!({}));
    assert_eq!(s.stop(), 0);

    // A regular file: refused (EX_CANTCREAT), untouched.
    std::fs::write(&path, b"precious").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    assert_eq!(kind(&out), "socket", "{out:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

/// A daemon bound at a path holds `<path>.lock` for its life; a second one that finds it held
/// refuses as for a live daemon (75, `socket_in_use`) and leaves the path alone, even when the
/// socket there refuses connections — as a daemon's does between its `bind` and its `listen`,
/// or a stale one that an earlier of two daemons started together is about to replace. Both
/// used to take such a socket for stale, remove it and bind: two daemons up, the first on an
/// unlinked socket no agent could reach, whose exit then removed the second's socket. Here the
/// held lock stands for that other daemon, so the race is decided without any timing.
#[test]
fn a_daemon_that_finds_the_socket_lock_held_leaves_the_path_alone() {
    use std::os::unix::fs::MetadataExt;
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let path = fx.dir().join("serve.sock");
    // A socket that refuses connections (bound, never listening).
    drop(UnixListener::bind(&path).unwrap());
    let ino = std::fs::metadata(&path).unwrap().ino();
    let lock = std::fs::File::create(fx.dir().join("serve.sock.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let mut args = serve_args(&fx, "", None);
    args.extend(["--socket".into(), path.to_string_lossy().into_owned()]);
    args.push("--json".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until it exits or takes the path: one that took it serves for ever, so it is stopped
    // and the test fails.
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if UnixStream::connect(&path).is_ok() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("a second daemon took the path: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["error"]["kind"], "socket_in_use", "{out:?}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "the socket was replaced"
    );

    // The lock free (the other daemon gone), the stale socket is replaced; the daemon holds
    // the lock while it serves, and removes its socket when it stops.
    drop(held);
    let mut s = Serve::start(&fx, "", None);
    s.client().ok("plugin_list", json!({}));
    let lock = std::fs::File::open(fx.dir().join("serve.sock.lock")).unwrap();
    let busy = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock);
    assert!(
        busy.is_err(),
        "the serving daemon does not hold the socket's lock"
    );
    assert_eq!(s.stop(), 0);
    assert!(!path.exists());
}

/// A socket lock file that is another user's (left by that user's daemon on this path, or
/// planted in a shared directory) is refused, 73 `socket`, with a hint that names the lock file —
/// not "nothing but a socket may be at the path", which sent the operator to the socket.
#[test]
fn another_users_socket_lock_is_refused_naming_the_lock_file() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let path = fx.dir().join("serve.sock");
    let lock = fx.dir().join("serve.sock.lock");
    std::fs::write(&lock, "").unwrap();
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
    let mut args = serve_args(&fx, "", None);
    args.extend(["--socket".into(), path.to_string_lossy().into_owned()]);
    args.push("--json".into());
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(&args)
        .current_dir(fx.dir())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["error"]["kind"], "socket", "{j}");
    assert!(
        j["error"]["hint"].as_str().unwrap().contains("PATH.lock"),
        "{j}"
    );
    assert!(j.to_string().contains("serve.sock.lock"), "{j}");
    assert!(!path.exists(), "a socket was made");
}

#[test]
fn a_connection_that_stops_reading_is_dropped_and_others_are_served() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let mut s = Serve::start(&fx, "[serve]\nmax_outbound_bytes = 4096\n", None);
    let slow = UnixStream::connect(&s.sock).unwrap();
    let mut w = slow.try_clone().unwrap();
    // Requests, never reading the answers: kernel buffers fill, then the daemon holds its
    // requests (back-pressure), and once the agent has taken nothing for conn::STALL (10 s)
    // with requests waiting, the daemon drops the connection (the writes then fail: stop).
    let writer = std::thread::spawn(move || {
        let line = format!("{LIST}\n").repeat(100);
        for _ in 0..2000 {
            if w.write_all(line.as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    let dropped = writer.join().unwrap();
    // Meanwhile and after, another agent is served normally.
    let mut c = s.client();
    c.ok("plugin_list", json!({}));
    assert!(dropped, "the slow connection was never dropped");
    assert!(s.log().contains("it stopped reading"), "{}", s.log());
    // The slow agent sees the end (EOF, or a reset: it left requests unread), never a hang.
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut r = BufReader::new(slow);
    let mut line = String::new();
    loop {
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => line.clear(),
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "no end within 30 s"
                );
                break;
            }
        }
    }
    assert_eq!(s.stop(), 0);
}

/// A plugin whose every hook answer carries 32 KiB (built with shell builtins only; a plugin's
/// frame is at most 64 KiB).
const BIG_ANSWERS: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
b=x; i=0; while [ $i -lt 15 ]; do b=$b$b; i=$((i + 1)); done
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"big":"%s"}}\n' "$id" "$b" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;

/// An agent that sends a few small requests at once, keeps its side open and never reads, while
/// the answers (plugins', coming later) pile up past the point where its input would be paused
/// but below the overflow cap: nothing of it is left unread, so it was never paused, and it held
/// a connection and its buffered answers for as long as the daemon ran. The stall rule counts
/// any connection whose answers fill it, paused or not: dropped after conn::STALL (10 s).
#[test]
fn a_connection_whose_answers_pile_up_unread_is_dropped_though_nothing_waits() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = pack_script(&fx, "big", &["on:x"], BIG_ANSWERS);
    // The answers must fill the daemon's buffer past a quarter of its cap, and not to the cap,
    // whatever the kernel's socket buffer (≤ wmem_default of data) takes first: with a cap of
    // at least 4 × wmem_default, wmem_default + half the cap of answers leaves between a half
    // and three quarters of it to the daemon.
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992);
    let cap = (4 * wmem).max(1 << 20);
    let answers = (wmem + cap / 2).div_ceil(32 * 1024);
    let mut s = Serve::start(
        &fx,
        &format!("[serve]\nmax_outbound_bytes = {cap}\n[health]\nping_interval_ms = 0\n"),
        None,
    );
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    let (sock, mut w) = connect_raw(&s, Duration::from_secs(60));
    let mut batch = String::new();
    for id in 1..=answers {
        let params = invoke("on:x", json!({"n": id}), Some(30_000));
        batch.push_str(
            &json!({"jsonrpc": "2.0", "id": id, "method": "hook_invoke", "params": params})
                .to_string(),
        );
        batch.push('\n');
    }
    w.write_all(batch.as_bytes()).unwrap();
    // Never read; never closed. Within 40 s (STALL is 10 s) the daemon says it dropped it.
    let until = std::time::Instant::now() + Duration::from_secs(40);
    while !s.log().contains("it stopped reading") {
        assert!(
            std::time::Instant::now() < until,
            "a connection holding unread answers was never dropped: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another agent is served meanwhile and after.
    c.ok("plugin_list", json!({}));
    drop((sock, w));
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// An agent that sends its requests and then shuts down its writing side (`socat` and `nc -N`
/// with piped input do) gets every answer — a `hook_invoke` answered later by a plugin too —
/// and then the end of the connection.
#[test]
fn a_half_closed_connection_gets_every_answer_then_the_end() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let pkg = pack_worker(&fx, "w", &["on:x"]);
    let mut s = Serve::start(&fx, "[serve]\n", None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    let (sock, mut w) = connect_raw(&s, Duration::from_secs(30));
    let params = invoke("on:x", json!({"n": 1}), Some(10_000));
    let hook = json!({"jsonrpc": "2.0", "id": 2, "method": "hook_invoke", "params": params});
    // The last request without its newline: the end of input completes it.
    w.write_all(format!("{LIST}\n{hook}").as_bytes()).unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let mut ids = Vec::new();
    for v in answers_until_eof(sock).0 {
        assert!(v.get("result").is_some(), "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2], "every request answered before the end");
    assert_eq!(s.stop(), 0);
}

/// An agent that pipelines requests as fast as it can while reading the answers as fast as it
/// can is slowed to its reading pace, never dropped: its requests are answered one at a time,
/// only while its answers have room. (Answers of one turn's reading used to overflow a small
/// outbound cap, and so did those of one 64 KiB read: with plugins loaded, a 48-byte
/// `plugin_list` gets an answer of hundreds of bytes.)
#[test]
fn a_pipelining_agent_that_reads_is_slowed_not_dropped() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let mut s = Serve::start(&fx, "[serve]\nmax_outbound_bytes = 65536\n", None);
    let mut c = s.client();
    for name in ["a", "b", "c"] {
        let pkg = pack_worker(&fx, name, &["on:x"]);
        c.ok("plugin_load", json!({"package": pkg}));
    }
    // `plugin_list` (large answers), then `hook_invoke` fanned out to the three (most answered
    // `overloaded` at once by the supervisor, beyond the calls in flight: answers that reach
    // the connection only through the daemon's routing, counted all the same).
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "hook_invoke",
                      "params": {"hook": "on:x", "payload": {}}});
    for (request, amplify) in [(LIST.to_string(), 10), (call.to_string(), 1)] {
        let (sock, mut w) = connect_raw(&s, Duration::from_secs(60));
        let n = 5_000;
        let line = format!("{request}\n");
        let len = line.len();
        let writer = std::thread::spawn(move || {
            w.write_all(line.repeat(n).as_bytes()).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let (answers, bytes) = answers_until_eof(sock);
        writer.join().unwrap();
        assert_eq!(answers.len(), n, "{request}: log: {}", s.log());
        assert!(bytes > amplify * n * len, "answers amplify: {bytes} bytes");
        assert!(!s.log().contains("stopped reading"), "{}", s.log());
    }
    assert_eq!(s.stop(), 0);
}

/// A plugin's burst of large notifications cannot get agents dropped — one reading as fast as
/// it can, nor one not reading for a while: past an eighth of its outbound cap a connection's
/// notifications are discarded and counted (a `log` says how many), never its answers.
#[test]
fn a_burst_of_notifications_discards_notifications_not_agents() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let flood = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
x=$(head -c 60000 /dev/zero | tr '\0' a)
i=0
while [ $i -lt 300 ]; do
  printf '{"jsonrpc":"2.0","method":"log","params":{"message":"%s"}}\n' "$x"
  i=$((i + 1))
done
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;
    let pkg = pack_script(&fx, "flood", &["on:x"], flood);
    // No health pings: on a loaded machine a ping unanswered during the burst would restart the
    // plugin, whose second burst would count past the 300 lines the assertion allows.
    let mut s = Serve::start(&fx, "[serve]\n[health]\nping_interval_ms = 0\n", None);
    let (reader, mut w) = connect_raw(&s, Duration::from_secs(2));
    let seen = std::thread::spawn(move || {
        let (mut big, mut dropped) = (0, 0u64);
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["params"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 50_000)
            {
                big += 1;
            }
            dropped += v["params"]["dropped_notifications"].as_u64().unwrap_or(0);
        }
        (big, dropped)
    });
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    // The loader reads nothing while the burst goes on (about 3 s at 100 lines a second).
    std::thread::sleep(Duration::from_secs(4));
    // (The event rate limit lets 100 lines a second through; the rest are dropped by it.)
    let (big, dropped) = seen.join().unwrap();
    assert!(
        big >= 1 && big + dropped <= 300,
        "{big} seen, {dropped} counted"
    );
    // Both connections are still served; the one that did not read was told what it missed.
    c.ok("plugin_list", json!({}));
    let missed: u64 = c
        .notes
        .iter()
        .filter_map(|n| n["params"]["dropped_notifications"].as_u64())
        .sum();
    assert!(
        missed > 0,
        "the idle loader's notifications were discarded and counted"
    );
    w.write_all(format!("{LIST}\n").as_bytes()).unwrap();
    assert!(!s.log().contains("stopped reading"), "{}", s.log());
    assert_eq!(s.stop(), 0);
}

/// The audit's finding: a plugin registering a hook every 100 ms had its whole hook list (13 KiB
/// here) announced each time, and every announcement was kept in the queue of an agent that
/// does not read — 60 of them, 0.7 MB, past what the socket holds and the connection's 64 KiB
/// cap: the agent dropped. A connection's queue now keeps the newest announcement of each
/// plugin in place of the unsent ones, so the agent is kept and reads the whole list at last.
#[test]
fn an_agent_that_does_not_read_holds_the_newest_announcement_not_every_one() {
    if !require_root() {
        return;
    }
    const FIRST: usize = 140;
    let (late_n, cap) = late_registrations(FIRST);
    let first: Vec<String> = (1..=FIRST).map(|i| format!("on:h{i:060}")).collect();
    let late: Vec<String> = (1..=late_n).map(|i| format!("on:late{i:060}")).collect();
    let all: Vec<&str> = first.iter().chain(&late).map(String::as_str).collect();
    // One registration every 100 ms: one announcement of the whole list each.
    let script = register_one_by_one(&first, late_n, "on:late%060d", "sleep 0.1");
    let fx = Fixture::new();
    let pkg = pack_script(&fx, "late", &all, &script);
    // Every announcement (the whole list) fits in a quarter of the cap: the agent is never
    // without room, so never dropped for a stall, however long this takes.
    let mut s = Serve::start(
        &fx,
        &format!("[serve]\nmax_outbound_bytes = {cap}\n[health]\nping_interval_ms = 0\n"),
        None,
    );
    let (slow, _w) = connect_raw(&s, Duration::from_secs(30));
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    // The reading agent sees every registration through.
    loop {
        let st = c.wait_state("late", "ready");
        if st["hooks"].as_array().map(Vec::len) == Some(FIRST + late_n) {
            break;
        }
    }
    // The one that did not read is still connected, and gets the whole list.
    let (mut readies, mut whole) = (0, false);
    for line in BufReader::new(slow).lines() {
        let line = line.unwrap_or_else(|e| panic!("{e}: {}", s.log()));
        let m: serde_json::Value = serde_json::from_str(&line).unwrap();
        let p = &m["params"];
        if m["method"] == "plugin_state" && p["plugin"] == "late" && p["state"] == "ready" {
            readies += 1;
            whole = p["hooks"].as_array().map(Vec::len) == Some(FIRST + late_n);
            if whole {
                break;
            }
        }
    }
    assert!(
        whole,
        "the agent that did not read was dropped after {readies} announcements: {}",
        s.log()
    );
    assert!(
        readies < late_n,
        "{readies} announcements: none was replaced"
    );
    assert!(!s.log().contains("dropped"), "{}", s.log());
    assert_eq!(s.stop(), 0);
}

/// How many hooks the test above registers late, and the outbound cap it sets, for the test to
/// hold on this host. What the agent that does not read gets is what the daemon's socket to it
/// took, then what its queue held: the socket takes up to its send buffer — the host's
/// `net.core.wmem_default`, which the daemon does not change, and half as much again (the
/// kernel lets the write that reaches the limit through; the agent's receive buffer does not
/// count for a Unix stream socket) — and the queue up to the cap. Every announcement carries at
/// least the first `first` hooks (67 bytes each at least), so the agent can get no more
/// announcements than those two hold; with more registrations than that, some must have been
/// replaced. 60 with the usual 208 KiB (the agent got 19 announcements here); more on a host
/// with a larger default: with 60 fixed, a default above ≈ 0.7 MB took all 60 in the socket,
/// none needed replacing, and the test failed though nothing was wrong. The cap is kept at four
/// times the largest announcement (and at least 64 KiB).
fn late_registrations(first: usize) -> (usize, usize) {
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (smallest, per_hook_max, overhead) = (first * 67, 71, 512);
    let mut late = 60;
    loop {
        let cap = (4 * ((first + late) * per_hook_max + overhead)).max(65536);
        let gets_at_most = (wmem * 3 / 2 + cap).div_ceil(smallest) + 1;
        if late > gets_at_most {
            return (late, cap);
        }
        late = gets_at_most + 1;
    }
}

/// A raw connection to the daemon (reading end with `timeout`, writing end).
fn connect_raw(s: &Serve, timeout: Duration) -> (UnixStream, UnixStream) {
    let sock = UnixStream::connect(&s.sock).unwrap();
    sock.set_read_timeout(Some(timeout)).unwrap();
    let w = sock.try_clone().unwrap();
    (sock, w)
}

/// Every answer (a message with an id and no method) read until the daemon ends the
/// connection, and the bytes of all lines read.
fn answers_until_eof(sock: UnixStream) -> (Vec<serde_json::Value>, usize) {
    let (mut answers, mut bytes) = (Vec::new(), 0);
    for line in BufReader::new(sock).lines() {
        let line = line.unwrap();
        bytes += line.len();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v.get("id").is_some() && v.get("method").is_none() {
            answers.push(v);
        }
    }
    (answers, bytes)
}

/// A message larger than `max_outbound_bytes` reaches an agent that reads: a plugin declaring
/// 150 hooks (its `ready` announcement and its `plugin_list` entry about 9 KiB each) under a
/// 4 KiB cap got every connection dropped as one that "stopped reading", at the load and at each
/// `plugin_list` after (audit-127; under the default 4 MiB, a `plugin_list` of many plugins or
/// a fan-out of many large results did the same).
#[test]
fn a_message_larger_than_the_outbound_cap_reaches_a_reading_agent() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let hooks: Vec<String> = (0..150)
        .map(|i| format!("on:a_fairly_long_hook_name_of_a_real_plugin.number_{i}"))
        .collect();
    let hooks: Vec<&str> = hooks.iter().map(String::as_str).collect();
    let pkg = pack_worker(&fx, "many", &hooks);
    let mut s = Serve::start(&fx, "[serve]\nmax_outbound_bytes = 4096\n", None);
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": pkg}));
    let ready = c.wait_state("many", "ready");
    assert!(ready.to_string().len() > 4096, "{ready}");
    let mut other = s.client();
    let list = other.ok("plugin_list", json!({}));
    assert!(list.to_string().len() > 4096, "{list}");
    assert!(list.to_string().contains("number_149"), "{list}");
    assert!(!s.log().contains("dropped"), "{}", s.log());
    assert_eq!(s.stop(), 0);
}
