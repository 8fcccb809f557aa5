//! The loop's timers against a fake process on real pipes and a fake clock.

use super::*;
use crate::host::kv::KvStore;
use crate::host::plugin::{Health, State};
use std::collections::BTreeMap;
use std::io::Read;
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
/// stdin (what the plugin reads) and stdout (what it writes).
struct T {
    sup: Supervisor,
    idx: usize,
    to_runtime: File,
    from_runtime: File,
    _dir: tempfile::TempDir,
}

fn setup(now: Instant) -> T {
    let m = Manifest::parse(
        br#"{"name":"p","version":"1.0.0","author":"a","description":"d","entrypoint":"e",
        "requested_capabilities":["log"],"hooks":[],"api":1}"#,
    )
    .unwrap()
    .validate(&semver::Version::new(9, 0, 0))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = HostPolicy::default();
    let cfg = PluginConfig {
        manifest: m,
        ceiling: [Capability::Log].into(),
        kv: KvStore::open(dir.path(), "p", policy.kv.clone()).unwrap(),
        policy,
        config: BTreeMap::new(),
        health: Some(Health {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(1500),
        }),
    };
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let mut sup = Supervisor::new().unwrap();
    let idx = sup
        .add_child(cfg, Box::new(Fake), [Some(in_w), Some(out_r), None], now)
        .unwrap();
    let from_runtime = File::from(in_r);
    sys::set_nonblocking(from_runtime.as_fd()).unwrap();
    T {
        sup,
        idx,
        to_runtime: File::from(out_w),
        from_runtime,
        _dir: dir,
    }
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
