//! The loop's timers against a fake process on real pipes and a fake clock.

use super::*;
use crate::host::kv::KvStore;
use crate::host::plugin::{Health, State};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use stockade_policy::capability::Capability;
use stockade_policy::manifest::Manifest;
use stockade_policy::protocol::host::HostPolicy;

/// A process that has always exited (the test drives its pipes).
struct Fake;

impl Child for Fake {
    fn kill(&mut self) {}
    fn has_exited(&mut self) -> bool {
        true
    }
    fn wait(self: Box<Self>) -> Value {
        json!({"fake": true, "cleaned_up": true})
    }
}

/// A supervisor with one plugin pinged every second, 1.5 s to answer; the test's ends of its
/// stdin (what the plugin reads), stdout and stderr (what it writes).
struct T {
    sup: Supervisor,
    idx: usize,
    to_runtime: File,
    from_runtime: File,
    stderr: File,
    _dir: tempfile::TempDir,
}

fn setup(now: Instant) -> T {
    setup_with(now, HostPolicy::default())
}

fn setup_with(now: Instant, policy: HostPolicy) -> T {
    let mut sup = Supervisor::new().unwrap();
    let mut t = add_to(&mut sup, now, policy);
    t.sup = sup;
    t
}

/// [`setup_with`] adding the plugin to `sup` (the returned `sup` is a fresh one: swap it in).
fn add_to(sup: &mut Supervisor, now: Instant, policy: HostPolicy) -> T {
    add_declaring(sup, now, policy, &[])
}

/// [`add_to`] of a plugin whose manifest declares `hooks` (and asks for `register_hook`).
fn add_declaring(sup: &mut Supervisor, now: Instant, policy: HostPolicy, hooks: &[&str]) -> T {
    let m = Manifest::parse(
        json!({"name": "p", "version": "1.0.0", "author": "a", "description": "d",
               "entrypoint": "e", "requested_capabilities": ["log", "register_hook"],
               "hooks": hooks, "api": 1})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
    .validate(&semver::Version::new(9, 0, 0))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = PluginConfig {
        manifest: m,
        ceiling: [Capability::Log, Capability::RegisterHook].into(),
        kv: Some(KvStore::open(dir.path(), "p", policy.kv.clone()).unwrap()),
        policy,
        config: BTreeMap::new(),
        health: Some(Health {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(1500),
        }),
        degraded: Vec::new(),
        admitted: serde_json::Value::Null,
    };
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let (err_r, err_w) = nix::unistd::pipe().unwrap();
    let idx = sup
        .add_child(
            cfg,
            Box::new(Fake),
            [Some(in_w), Some(out_r), Some(err_r)],
            now,
        )
        .unwrap();
    let from_runtime = File::from(in_r);
    sys::set_nonblocking(from_runtime.as_fd()).unwrap();
    let stderr = File::from(err_w);
    sys::set_nonblocking(stderr.as_fd()).unwrap();
    T {
        sup: Supervisor::new().unwrap(),
        idx,
        to_runtime: File::from(out_w),
        from_runtime,
        stderr,
        _dir: dir,
    }
}

/// One turn of the loop at `now`, as `serve` and `run` make it: readiness, the reads left
/// over, the timers.
fn turn(sup: &mut Supervisor, now: Instant) {
    let mut events = Events::with_capacity(64);
    sup.poll(&mut events, Some(Duration::ZERO)).unwrap();
    for ev in events.iter() {
        if sup.owns(ev.token()) {
            sup.ready(ev.token(), now);
        }
    }
    sup.serve_hot(now);
    sup.fire_timers(now);
}

/// Write to `f` (non-blocking) as much as it takes now, in lines of 1 KiB; how much it took.
fn flood(f: &mut File) -> usize {
    let line = [b"x".repeat(1023), b"\n".to_vec()].concat();
    let mut n = 0;
    loop {
        match f.write(&line) {
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

/// What the pipe behind `f` holds at most.
fn pipe_capacity(f: &File) -> usize {
    let n = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
    usize::try_from(n).unwrap()
}

impl T {
    fn write(&mut self, line: &str) {
        self.to_runtime
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
    fn read(&mut self) -> Vec<Value> {
        let mut b = Vec::new();
        let _ = self.from_runtime.read_to_end(&mut b);
        String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn state(&self) -> State {
        self.sup.handle(self.idx).unwrap().state()
    }
}

const HANDSHAKE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1}}"#;

/// The audit's finding: past `max_stderr_bytes` a plugin's stderr was still read as fast as it
/// wrote (half a core, for bytes thrown away). Now, over a second of the loop turning every
/// 10 ms with the pipe refilled at every turn, the host takes the cap (with the read that
/// crossed it), then at most one throttled read per interval: the plugin gets in no more than
/// that and what its pipe holds, 0.3 MB (before: 64 KiB a turn, 6 MB). Another plugin's stderr, under its cap, is read as it comes,
/// every line forwarded on the turn it was written.
#[test]
fn a_flooding_stderr_is_read_at_the_throttle_s_pace_and_a_quiet_one_as_it_comes() {
    let t0 = Instant::now();
    let cap = 4096;
    let mut policy = HostPolicy::default();
    policy.protocol.max_stderr_bytes = cap;
    policy.protocol.max_events_per_sec = 1000;
    let mut t = setup_with(t0, policy.clone());
    let mut quiet = add_to(&mut t.sup, t0, policy);
    for p in [&mut t, &mut quiet] {
        p.write(HANDSHAKE);
    }
    turn(&mut t.sup, t0);
    let mut written = 0;
    let turns = 100;
    let step = Duration::from_millis(10);
    for k in 1..=turns {
        let now = t0 + step * k;
        written += flood(&mut t.stderr);
        let line = format!("quiet {k}\n");
        quiet.stderr.write_all(line.as_bytes()).unwrap();
        turn(&mut t.sup, now);
        let said = t
            .sup
            .to_agent
            .drain(..)
            .any(|m| m["method"] == "log" && m["params"]["message"] == line.trim_end());
        assert!(
            said,
            "the quiet plugin's line {k} was not forwarded on its turn"
        );
    }
    let elapsed = step * turns;
    let reads = usize::try_from(elapsed.as_millis() / STDERR_THROTTLE.1.as_millis()).unwrap() + 1;
    // The cap, the read that crossed it (one buffer), what the pipe holds, the throttled reads.
    let bound = cap + t.sup.buf.len() + pipe_capacity(&t.stderr) + reads * STDERR_THROTTLE.0;
    assert!(
        written <= bound,
        "the plugin wrote {written} bytes to its stderr in {} ms of the loop: it is read faster \
         than the throttle ({bound} at most)",
        elapsed.as_millis()
    );
    let h = t.sup.handle(t.idx).unwrap();
    assert!(h.stderr_read() <= written as u64);
    assert_eq!(h.state(), State::Ready);
}

/// A plugin whose stderr is throttled still ends as any other: one that exits (its pipes
/// closed, its stderr full) is reaped once it lingered, one that hangs is killed; either way
/// its stderr pipe is closed.
#[test]
fn a_throttled_stderr_does_not_keep_a_plugin_from_being_reaped_or_killed() {
    for hang in [false, true] {
        let t0 = Instant::now();
        let mut policy = HostPolicy::default();
        policy.protocol.max_stderr_bytes = 1024;
        let mut t = setup_with(t0, policy);
        t.write(HANDSHAKE);
        turn(&mut t.sup, t0);
        flood(&mut t.stderr);
        turn(&mut t.sup, t0);
        assert!(t.sup.slots[&t.idx].stderr_paused, "not throttled");
        flood(&mut t.stderr);
        if !hang {
            // Exits with its stderr full: its ends of stdout and stderr closed.
            t.to_runtime = File::open("/dev/null").unwrap();
            t.stderr = File::open("/dev/null").unwrap();
        }
        let mut now = t0;
        while !t.state().is_gone() {
            now += Duration::from_millis(10);
            assert!(now < t0 + Duration::from_secs(10), "never ended");
            turn(&mut t.sup, now);
        }
        let want = if hang {
            State::Terminated
        } else {
            State::Exited
        };
        assert_eq!(t.state(), want);
        let slot = &t.sup.slots[&t.idx];
        assert!(slot.stderr.is_none(), "its stderr pipe is still open");
    }
}

/// The audit's stall: the plugin answered its ping in time, but the loop was busy elsewhere
/// (another plugin's kv writes) until past the ping's deadline, and its timers came due before
/// it read the pong. The pong already waiting is read first: no "hung".
#[test]
fn a_pong_already_sent_is_read_before_the_ping_deadline_fires() {
    let t0 = Instant::now();
    let mut t = setup(t0);
    t.write(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1}}"#);
    t.sup.ready(token(t.idx, 0), t0);
    assert_eq!(t.state(), State::Ready);
    assert!(t.read()[0]["result"]["granted"].is_array());

    t.sup.fire_timers(t0 + Duration::from_millis(1000));
    let ping = t.read();
    assert_eq!(ping[0]["method"], "ping");
    let id = ping[0]["id"].as_u64().unwrap();
    t.write(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    // The loop comes back 2 s later, straight to its timers (the pong's readiness not seen yet).
    t.sup.fire_timers(t0 + Duration::from_millis(3000));
    assert_eq!(t.state(), State::Ready, "killed for a pong it had sent");

    // A ping that really goes unanswered still means hung.
    t.sup.fire_timers(t0 + Duration::from_millis(4000));
    let ping = t.read();
    assert_eq!(ping[0]["method"], "ping");
    t.sup.fire_timers(t0 + Duration::from_millis(6000));
    assert_eq!(t.state(), State::Terminated);
    let hung = t
        .sup
        .to_agent
        .iter()
        .any(|m| m["method"] == "plugin_state" && m["params"]["reason"]["kind"] == "hung");
    assert!(hung, "{:?}", t.sup.to_agent);
}

/// A daemon that runs for months launches plugins without end (every restart, load and
/// relaunch takes a new slot number): once a gone plugin is removed, nothing of it is kept.
/// Slots used to be a vector indexed by number, a removed one left as an empty entry the size
/// of a whole slot (about 1 KiB), so a daemon's memory grew with every launch it ever made.
#[test]
fn a_removed_plugin_leaves_no_slot_behind() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new().unwrap();
    let mut seen = BTreeSet::new();
    for round in 0..50u64 {
        let now = t0 + Duration::from_secs(round);
        let mut t = add_to(&mut sup, now, HostPolicy::default());
        assert!(seen.insert(t.idx), "slot number {} used twice", t.idx);
        // It exits: its ends of stdout and stderr closed.
        t.to_runtime = File::open("/dev/null").unwrap();
        t.stderr = File::open("/dev/null").unwrap();
        let mut at = now;
        while !sup.handle(t.idx).unwrap().state().is_gone() {
            at += Duration::from_millis(10);
            assert!(at < now + Duration::from_secs(1), "never ended");
            turn(&mut sup, at);
        }
        sup.remove(t.idx);
        assert!(sup.handle(t.idx).is_none());
    }
    assert_eq!(sup.slots.len(), 0, "slots kept for plugins long gone");
    assert!(sup.all_gone());
}

/// A hook call answered at once leaves nothing queued behind it, whatever its deadline: its
/// deadline timer used to stay in the heap until the deadline, so under an operator's long
/// deadline (up to an hour) the heap held every call of the last hour — 40 bytes each, about
/// 170 MB at 1,000 calls a second — for a daemon that had nothing pending. The heap is compacted
/// once it doubled since its last compaction: it holds what is pending, not what was.
#[test]
fn answered_calls_leave_no_timers_behind() {
    let t0 = Instant::now();
    let mut policy = HostPolicy::default();
    policy.protocol.default_deadline_ms = 3_600_000;
    let mut sup = Supervisor::new().unwrap();
    let mut t = add_declaring(&mut sup, t0, policy, &["on:x"]);
    t.sup = sup;
    t.write(
        r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["register_hook"],"hooks":["on:x"]}}"#,
    );
    turn(&mut t.sup, t0);
    assert_eq!(t.state(), State::Ready);
    assert!(t.read()[0]["result"]["hooks"] == json!(["on:x"]));
    let baseline = t.sup.timers.len();
    let mut now = t0;
    let mut answered = 0;
    for round in 0..200 {
        now += Duration::from_millis(10);
        for i in 0..32 {
            let call = HookInvoke {
                hook: "on:x".into(),
                payload: json!({"n": round * 32 + i}),
                deadline_ms: Some(3_600_000),
            };
            t.sup.invoke_on(t.idx, json!(round * 32 + i), call, now);
        }
        turn(&mut t.sup, now);
        for m in t.read() {
            if m["method"] == "ping" {
                t.write(&format!(
                    r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
                    m["id"]
                ));
            }
            if m["method"] == "hook_invoke" {
                t.write(&format!(
                    r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
                    m["id"]
                ));
                answered += 1;
            }
        }
        turn(&mut t.sup, now);
        assert_eq!(t.state(), State::Ready);
    }
    assert_eq!(answered, 200 * 32);
    let answers = t
        .sup
        .to_agent
        .iter()
        .filter(|m| m.get("result").is_some())
        .count();
    assert_eq!(answers, 200 * 32, "every call answered");
    assert_eq!(t.sup.handle(t.idx).unwrap().in_flight(), 0);
    assert!(
        t.sup.timers.len() <= baseline + 2 * TIMER_COMPACT_FLOOR,
        "{} timers queued for {} pending calls",
        t.sup.timers.len(),
        t.sup.handle(t.idx).unwrap().in_flight()
    );
}
