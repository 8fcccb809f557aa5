//! Shared fixture for the `stockade serve` tests: a throwaway CA, `sh` worker plugins packed and
//! signed on the fly, the daemon started on a socket in the fixture directory, NDJSON clients
//! with hard read timeouts (a hang is a failure, never a stuck test), leak scans.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

#[allow(unused_imports)] // only serve_basic starts a daemon under another /etc/subuid
pub use common::with_subuid;
#[allow(unused_imports)] // used by some of the serve_* test crates only
pub use common::{go_on, hello_manifest, hello_parts, raw_tar_gz, require, unix_now, wait_stopped};
pub use common::{require_root, Fixture};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE_EXCEEDED: i64 = -32001;
pub const PLUGIN_CRASHED: i64 = -32002;
pub const NOT_REGISTERED: i64 = -32003;
pub const VIOLATION: i64 = -32005;
pub const UNAVAILABLE: i64 = -32007;
pub const ALREADY_LOADED: i64 = -32010;
pub const UNKNOWN_PLUGIN: i64 = -32011;
pub const LOAD_FAILED: i64 = -32012;
pub const PEER_REFUSED: i64 = -32013;
pub const IN_USE: i64 = -32014;

/// Whether a tool exists (skip otherwise; failure under CI=true).
pub fn require_tool(tool: &str, why: &str) -> bool {
    common::require_tool(tool, why)
}

/// A worker plugin driven by the payload of each call: `{"act": "crash"}` (or, for this
/// plugin only, `{"<its name>": "crash"}`) exits 3,
/// `"hang"` stops answering anything (pings included), `"garbage"` writes a non-protocol
/// line, `"sleep"` answers after 1 s, `"error"` answers with a plugin error; anything else is
/// answered `{"ok": true, "plugin": NAME, "n": N}`. It answers `ping`. Builtins only in the
/// loop (no fork per call), so thousands of calls are cheap.
pub const WORKER: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
n=0
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"hook_invoke"'*)
      n=$((n + 1))
      case $line in
        *'"act":"crash"'*|*'"@NAME@":"crash"'*) exit 3 ;;
        *'"act":"hang"'*|*'"@NAME@":"hang"'*) while :; do sleep 5; done ;;
        *'"act":"close"'*|*'"@NAME@":"close"'*) exec >&- 2>&-; while :; do sleep 5; done ;;
        *'"act":"garbage"'*|*'"@NAME@":"garbage"'*) printf 'this is not json\n' ;;
        *'"act":"sleep"'*|*'"@NAME@":"sleep"'*) sleep 1; printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true,"plugin":"@NAME@","n":%s}}\n' "$id" "$n" ;;
        *'"act":"error"'*|*'"@NAME@":"error"'*) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32000,"message":"no"}}\n' "$id" ;;
        *) printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true,"plugin":"@NAME@","n":%s}}\n' "$id" "$n" ;;
      esac ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;

/// Handshakes with the hooks `@FIRST@` (JSON strings, none when empty), then registers `@N@`
/// declared hooks one by one, the i-th named by the `printf` format `@HOOK@` of i (requests,
/// their answers drained by a `cat` in the background), running `@PAUSE@` after each (`:` for
/// as fast as the shell writes).
pub const REGISTER_ONE_BY_ONE: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@FIRST@]}}'
IFS= read -r reply || exit 0
exec 3<&0
cat <&3 >/dev/null &
i=0
while [ $i -lt @N@ ]; do
  i=$((i + 1))
  printf '{"jsonrpc":"2.0","id":%s,"method":"register_hook","params":{"hook":"@HOOK@"}}\n' "$i" "$i"
  @PAUSE@
done
wait
"#;

/// [`REGISTER_ONE_BY_ONE`] with its parameters.
pub fn register_one_by_one(first: &[String], n: usize, hook: &str, pause: &str) -> String {
    let first = serde_json::to_string(first).unwrap();
    REGISTER_ONE_BY_ONE
        .replace("@FIRST@", first.trim_matches(['[', ']']))
        .replace("@N@", &n.to_string())
        .replace("@HOOK@", hook)
        .replace("@PAUSE@", pause)
}

/// Pack a worker named `name` registered for `hooks`; returns the package path.
pub fn pack_worker(fx: &Fixture, name: &str, hooks: &[&str]) -> PathBuf {
    pack_script(fx, name, hooks, WORKER)
}

/// Pack `script` (`@NAME@`/`@HOOKS@` substituted) as plugin `name` declaring `hooks`.
pub fn pack_script(fx: &Fixture, name: &str, hooks: &[&str], script: &str) -> PathBuf {
    pack_script_with(fx, name, hooks, script, json!({}))
}

/// [`pack_script`] with `extra` manifest fields (e.g. `dependencies`) merged in.
pub fn pack_script_with(
    fx: &Fixture,
    name: &str,
    hooks: &[&str],
    script: &str,
    extra: Value,
) -> PathBuf {
    let d = fx.dir().join(format!("src-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    let hooks_json = serde_json::to_string(hooks).unwrap();
    let mut manifest = json!({"name": name, "version": "0.1.0", "author": "tests",
        "description": "serve worker", "entrypoint": "entrypoint",
        "requested_capabilities": ["log", "register_hook"], "hooks": hooks, "api": 1});
    if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let script = script.replace("@NAME@", name).replace(
        "@HOOKS@",
        hooks_json.trim_start_matches('[').trim_end_matches(']'),
    );
    let entry = d.join("entrypoint");
    std::fs::write(&entry, script).unwrap();
    std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = format!("{name}.stockade");
    let r = fx.pack_dir(d.to_str().unwrap(), &out);
    assert_eq!(r.code, 0, "pack failed: {}", r.stderr);
    fx.dir().join(out)
}

/// A running `stockade serve`.
pub struct Serve {
    pub child: Child,
    pub sock: PathBuf,
    pub stderr: PathBuf,
}

/// The arguments `serve` gets in the fixture (trust and state from it).
pub fn serve_args(fx: &Fixture, config: &str, policy: Option<&str>) -> Vec<String> {
    let d = fx.dir();
    std::fs::write(d.join("serve.toml"), format!("version = 1\n{config}")).unwrap();
    let mut args: Vec<String> = [
        "serve",
        "--config",
        "serve.toml",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(p) = policy {
        std::fs::write(d.join("policy.toml"), format!("version = 1\n{p}")).unwrap();
        args.extend(["--policy".to_string(), "policy.toml".to_string()]);
    }
    args
}

impl Serve {
    /// Start on `<fixture>/serve.sock` and wait until it accepts.
    pub fn start(fx: &Fixture, config: &str, policy: Option<&str>) -> Serve {
        Self::start_env(fx, config, policy, &[])
    }

    /// [`Serve::start`] with `env` set for the daemon (a debug build's test hooks).
    pub fn start_env(
        fx: &Fixture,
        config: &str,
        policy: Option<&str>,
        env: &[(&str, &str)],
    ) -> Serve {
        Self::start_under(fx, config, policy, env, &[])
    }

    /// [`Serve::start_env`], the daemon started by `wrapper` (a program and its arguments that
    /// then execute the daemon's path and arguments, keeping its pid: e.g. [`with_subuid`]'s);
    /// empty: directly.
    pub fn start_under(
        fx: &Fixture,
        config: &str,
        policy: Option<&str>,
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> Serve {
        let sock = fx.dir().join("serve.sock");
        let mut args = serve_args(fx, config, policy);
        if policy.is_none() {
            // The host's /etc/stockade (if a package is installed) must not leak into the test.
            let none = fx.dir().join("no-policy-root");
            args.extend([
                "--policy-root".to_string(),
                none.to_string_lossy().into_owned(),
            ]);
        }
        args.extend(["--socket".to_string(), sock.to_string_lossy().into_owned()]);
        let stderr = fx.dir().join("serve.stderr");
        let child = common::command_under(wrapper, env!("CARGO_BIN_EXE_stockade"))
            .args(&args)
            .current_dir(fx.dir())
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn stockade serve");
        let s = Serve {
            child,
            sock,
            stderr,
        };
        s.wait_listening();
        s
    }

    /// Start with `extra` arguments after the fixture's (no `--policy`), e.g. `--policy-root`.
    pub fn start_with(fx: &Fixture, config: &str, extra: &[&str]) -> Serve {
        Self::start_with_under(fx, config, extra, &[])
    }

    /// [`Serve::start_with`] started by `wrapper` (as [`Serve::start_under`]'s), e.g.
    /// `setpriv` to run the daemon as another user.
    pub fn start_with_under(
        fx: &Fixture,
        config: &str,
        extra: &[&str],
        wrapper: &[String],
    ) -> Serve {
        let sock = fx.dir().join("serve.sock");
        let mut args = serve_args(fx, config, None);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--socket".to_string(), sock.to_string_lossy().into_owned()]);
        let stderr = fx.dir().join("serve.stderr");
        let child = common::command_under(wrapper, env!("CARGO_BIN_EXE_stockade"))
            .args(&args)
            .current_dir(fx.dir())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("STOCKADE_POLICY_ROOT")
            .env_remove("STOCKADE_JOURNAL_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn stockade serve");
        let s = Serve {
            child,
            sock,
            stderr,
        };
        s.wait_listening();
        s
    }

    /// Wait until the socket accepts connections (or fail after 30 s).
    pub fn wait_listening(&self) {
        let start = Instant::now();
        while UnixStream::connect(&self.sock).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "serve never listened: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client.
    pub fn client(&self) -> Client {
        Client::connect(&self.sock)
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// SIGTERM, then wait (fail after 60 s); returns the exit code.
    pub fn stop(&mut self) -> i32 {
        signal(self.pid(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("serve did not stop within 60 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop cleanly (exit 0, else the log is shown), read what `c` still had coming until the
    /// daemon closed it, and return every plugin pid `c` saw (for the leak checks).
    pub fn stop_and_drain(&mut self, c: &mut Client) -> Vec<i64> {
        assert_eq!(self.stop(), 0, "{}", self.log());
        while c.recv().is_some() {}
        c.seen_pids.clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Send a signal by name with kill(1) (the tests stay free of `unsafe`).
pub fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// An NDJSON client; every read has a 60 s timeout.
pub struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
    /// Notifications seen while waiting for responses.
    pub notes: Vec<Value>,
    /// Every plugin pid any `plugin_state` it read named.
    pub seen_pids: Vec<i64>,
    next_id: u64,
}

impl Client {
    pub fn connect(p: &Path) -> Client {
        let s = UnixStream::connect(p).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            notes: Vec::new(),
            seen_pids: Vec::new(),
            next_id: 1000,
        }
    }

    pub fn send(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes()).unwrap();
    }

    /// The next message; None at EOF.
    pub fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("read (60 s timeout)");
        if n == 0 {
            return None;
        }
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["method"] == "plugin_state" {
            self.seen_pids.extend(v["params"]["pid"].as_i64());
        }
        Some(v)
    }

    /// Send a request and return its response (notifications are kept in `notes`).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.recv().expect("connection closed while waiting");
            if m.get("method").is_some() {
                self.notes.push(m);
                continue;
            }
            if m["id"] == id {
                return m;
            }
            panic!("unexpected response {m}");
        }
    }

    /// `call` that must succeed; returns `result`.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("result").is_some(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// `call` that must fail; returns the error code.
    pub fn err(&mut self, method: &str, params: Value) -> i64 {
        let r = self.call(method, params);
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method} did not fail: {r}"))
    }

    /// Wait for a `plugin_state` of `plugin` in `state` (kept notes first); its params. Notes up
    /// to it are consumed (pids are collected first for the leak checks).
    pub fn wait_state(&mut self, plugin: &str, state: &str) -> Value {
        let hit = |m: &Value| {
            m["method"] == "plugin_state"
                && m["params"]["plugin"] == plugin
                && m["params"]["state"] == state
        };
        // Notes are consumed in order up to the hit: a later wait never sees an older state.
        if let Some(i) = self.notes.iter().position(hit) {
            let hit = self.notes[i]["params"].clone();
            self.notes.drain(..=i);
            return hit;
        }
        self.notes.clear();
        loop {
            let m = self
                .recv()
                .expect("connection closed while waiting for a state");
            if hit(&m) {
                return m["params"].clone();
            }
            self.notes.push(m);
        }
    }
}

/// A `hook_invoke` params object.
pub fn invoke(hook: &str, payload: Value, deadline_ms: Option<u64>) -> Value {
    let mut p = json!({"hook": hook, "payload": payload});
    if let Some(d) = deadline_ms {
        p["deadline_ms"] = d.into();
    }
    p
}

/// Cgroup directories the daemon with `pid` created (`stockade-<pid>-<uid>-<n>`), anywhere under
/// /sys/fs/cgroup.
pub fn cgroups_of(pid: i32) -> Vec<PathBuf> {
    let prefix = format!("stockade-{pid}-");
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(p.clone());
            }
            if depth < 8 {
                stack.push((p, depth + 1));
            }
        }
    }
    found
}

/// Live processes among `pids` (zombies count: nobody reaped them).
pub fn alive(pids: &[i64]) -> Vec<i64> {
    pids.iter()
        .copied()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

/// Processes whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let ppid = st
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<i32>().ok());
        if ppid == Some(pid) {
            v.push(p);
        }
    }
    v
}

/// Open descriptors of `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Every pid reported in `plugin_state` notifications.
pub fn pids_in(notes: &[Value]) -> Vec<i64> {
    notes
        .iter()
        .filter(|m| m["method"] == "plugin_state")
        .filter_map(|m| m["params"]["pid"].as_i64())
        .collect()
}

/// The sending half of a [`Client`], for a writer thread.
pub struct Writer(UnixStream);

impl Writer {
    pub fn send(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.0.write_all(line.as_bytes()).unwrap();
    }
}

impl Client {
    /// A second handle on the same connection for writing from another thread.
    pub fn writer(&self) -> Writer {
        Writer(self.w.try_clone().unwrap())
    }
}

impl Client {
    /// The next message, or None when nothing arrives within `t` (or at EOF).
    pub fn recv_within(&mut self, t: Duration) -> Option<Value> {
        self.w.set_read_timeout(Some(t)).unwrap();
        let mut line = String::new();
        let r = self.r.read_line(&mut line);
        self.w
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        match r {
            Ok(n) if n > 0 => Some(serde_json::from_str(&line).unwrap()),
            _ => None,
        }
    }
}

/// A v1 freezer cgroup holding one process, thawed and removed when dropped (a failed test
/// must not leave a frozen process behind: its sandbox could never end).
pub struct Frozen(std::path::PathBuf);

impl Frozen {
    /// Freeze `pid` in a new freezer cgroup; None when this host has no v1 freezer.
    pub fn freeze(pid: i64) -> Option<Frozen> {
        let root = std::path::Path::new("/sys/fs/cgroup/freezer");
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let d = root.join(format!("stockade-test-{}-{pid}", std::process::id()));
        std::fs::create_dir(&d).unwrap();
        let f = Frozen(d);
        std::fs::write(f.0.join("cgroup.procs"), pid.to_string()).unwrap();
        std::fs::write(f.0.join("freezer.state"), "FROZEN").unwrap();
        let t = std::time::Instant::now();
        while std::fs::read_to_string(f.0.join("freezer.state"))
            .unwrap()
            .trim()
            != "FROZEN"
        {
            assert!(t.elapsed().as_secs() < 10, "the freezer never froze {pid}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Some(f)
    }

    pub fn thaw(&self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
        let t = std::time::Instant::now();
        while std::fs::remove_dir(&self.0).is_err() && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Take `lock` (a lock file of the daemon's: its `flock` from another open file description
/// excludes the daemon's, as a stopped CLI's would) and hold it while one client sends
/// `plugin_load` of `package` and, 300 ms later, another asks for `plugin_status` of `watched`.
/// Returns the lock (held until dropped), the status answer — which must come while the load
/// waits or once it gave up: a daemon that waited on the lock for ever answered no other
/// client — and the load's answer.
pub fn load_beside_held_lock(
    s: &Serve,
    lock: &Path,
    package: &Path,
    watched: &str,
) -> (nix::fcntl::Flock<std::fs::File>, Value, Value) {
    let file = std::fs::File::open(lock).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut loader = s.client();
    loader.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "plugin_load",
                        "params": {"package": package}}));
    std::thread::sleep(Duration::from_millis(300));
    let mut watcher = s.client();
    watcher.send(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "plugin_status",
                         "params": {"name": watched}}),
    );
    let answer = |c: &mut Client, id: i64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = c
                .recv_within(left)
                .unwrap_or_else(|| panic!("no answer to {what} while {} is held", lock.display()));
            if m["id"] == id {
                break m;
            }
        }
    };
    let status = answer(&mut watcher, 7, "another client's plugin_status");
    let loaded = answer(&mut loader, 1, "plugin_load");
    (held, status, loaded)
}

/// libfaketime's preload library (Debian package `faketime`, which scripts/test.sh installs),
/// if installed: `/usr/lib/<triplet>/faketime/libfaketime.so.1`.
pub fn faketime_lib() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file())
}

/// A daemon whose wall clock (not its monotonic one) is offset by what `clock` holds —
/// libfaketime's `FAKETIME_TIMESTAMP_FILE`, read again at every call (`FAKETIME_NO_CACHE`):
/// write `-1y`, `+2d` or `+0` to it to step the daemon's clock while it runs. The host's clock
/// is never touched. None (after [`require`]) when libfaketime is not installed.
pub fn serve_with_clock(fx: &Fixture, config: &str, clock: &Path) -> Option<Serve> {
    let lib = faketime_lib();
    if !require(
        lib.is_some(),
        "libfaketime is not installed (Debian package `faketime`): the test steps the \
         daemon's wall clock with it",
    ) {
        return None;
    }
    let lib = lib?.to_string_lossy().into_owned();
    if !clock.exists() {
        std::fs::write(clock, "+0\n").unwrap();
    }
    let file = clock.to_string_lossy().into_owned();
    Some(Serve::start_env(
        fx,
        config,
        None,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    ))
}
