//! Unit tests of the protocol state machine against a fake process (no sandbox, no pipes).

use super::*;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use stockade_policy::manifest::Manifest;

/// A flag shared between the fake and the test.
#[derive(Default, Clone)]
struct Flag(Arc<AtomicBool>);

impl Flag {
    fn get(&self) -> bool {
        self.0.load(SeqCst)
    }
    fn set(&self, v: bool) {
        self.0.store(v, SeqCst);
    }
}

#[derive(Default)]
struct Fake {
    killed: Flag,
    /// Still running after its stdio closed (the default: it has exited).
    lingers: Flag,
    /// Does not end even when killed (a process in uninterruptible sleep).
    stuck: Flag,
}

impl Fake {
    fn ended(&self) -> bool {
        (!self.lingers.get() || self.killed.get()) && !self.stuck.get()
    }
}

impl Child for Fake {
    fn kill(&mut self) {
        self.killed.set(true);
    }
    fn has_exited(&mut self) -> bool {
        self.ended()
    }
    fn wait(self: Box<Self>) -> Value {
        // The loop must never wait for a process that has not ended.
        assert!(self.ended(), "the event loop waited for a live child");
        json!({"fake": true, "cleaned_up": true})
    }
}

struct T {
    h: PluginHandle,
    fx: Effects,
    killed: Flag,
    lingers: Flag,
    stuck: Flag,
    now: Instant,
    /// The state directory of its key/value store.
    dir: tempfile::TempDir,
}

fn setup(policy: HostPolicy) -> T {
    setup_hooks(policy, &["on:h".to_string()])
}

/// [`setup`] with a manifest declaring `hooks`.
fn setup_hooks(policy: HostPolicy, hooks: &[String]) -> T {
    setup_caps(
        policy,
        hooks,
        &[
            Capability::Log,
            Capability::RegisterHook,
            Capability::EmitEvent,
        ],
    )
}

/// [`setup_hooks`] with a manifest requesting `caps`, all within the ceiling.
fn setup_caps(policy: HostPolicy, hooks: &[String], caps: &[Capability]) -> T {
    let (cfg, dir) = config_caps(policy, hooks, caps);
    start(cfg, dir)
}

/// The configuration [`setup_caps`] starts a handle with (its kv store in the directory).
fn config_caps(
    policy: HostPolicy,
    hooks: &[String],
    caps: &[Capability],
) -> (PluginConfig, tempfile::TempDir) {
    let requested: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
    let manifest = json!({"name":"p","version":"1.0.0","author":"a","description":"d",
        "entrypoint":"e","requested_capabilities":requested,
        "hooks":hooks,"api":1});
    let m = Manifest::parse(manifest.to_string().as_bytes())
        .unwrap()
        .validate(&semver::Version::new(9, 0, 0))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kv = Some(KvStore::open(dir.path(), "p", policy.kv.clone()).unwrap());
    let cfg = PluginConfig {
        manifest: m,
        ceiling: caps.iter().copied().collect(),
        policy,
        kv,
        config: BTreeMap::new(),
        health: None,
        degraded: Vec::new(),
        admitted: Value::Null,
    };
    (cfg, dir)
}

/// A handle of `cfg` on a fake process, as the supervisor starts it.
fn start(cfg: PluginConfig, dir: tempfile::TempDir) -> T {
    let fake = Fake::default();
    let (killed, lingers, stuck) = (
        fake.killed.clone(),
        fake.lingers.clone(),
        fake.stuck.clone(),
    );
    let now = Instant::now();
    let mut fx = Effects::default();
    let h = PluginHandle::new(cfg, Box::new(fake), now, &mut fx);
    T {
        h,
        fx,
        killed,
        lingers,
        stuck,
        now,
        dir,
    }
}

impl T {
    fn feed(&mut self, line: &str) {
        self.h
            .on_stdout(format!("{line}\n").as_bytes(), self.now, &mut self.fx);
    }
    fn handshake(&mut self) {
        self.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["log","register_hook"],"hooks":["on:h"]}}"#);
        assert_eq!(self.h.state(), State::Ready);
    }
    fn sent(&mut self) -> Vec<Value> {
        let b = std::mem::take(&mut self.h.outbound);
        String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn agent(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.fx.to_agent)
    }
    fn invoke(&mut self, id: u64, deadline: Option<u64>) {
        let call = msg::HookInvoke {
            hook: "on:h".into(),
            payload: json!({"x": id}),
            deadline_ms: deadline,
        };
        self.h.invoke(json!(id), call, self.now, &mut self.fx);
    }
    fn responses(&mut self) -> Vec<Value> {
        self.agent()
            .into_iter()
            .filter(|m| m.get("method").is_none())
            .collect()
    }
}

#[test]
fn calls_before_the_handshake_wait_and_answers_reach_the_agent() {
    let mut t = setup(HostPolicy::default());
    t.invoke(10, None);
    assert!(t.sent().is_empty(), "nothing is sent before the handshake");
    t.handshake();
    let sent = t.sent();
    assert_eq!(
        sent[0]["result"]["granted"],
        json!(["log", "register_hook"])
    );
    assert_eq!(sent[1]["method"], "hook_invoke");
    assert_eq!(sent[1]["params"]["deadline_ms"], 1000);
    let id = sent[1]["id"].as_u64().unwrap();
    t.agent();
    t.feed(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"ok":1}}}}"#
    ));
    let r = t.responses();
    assert_eq!(r, vec![json!({"jsonrpc":"2.0","id":10,"result":{"ok":1}})]);
    assert_eq!(t.h.in_flight(), 0);
}

#[test]
fn deadline_cancels_and_the_late_answer_is_dropped() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.invoke(1, Some(50));
    let id = t.sent()[1]["id"].as_u64().unwrap();
    t.agent();
    t.h.on_timer(Timer::Call(id), t.now, &mut t.fx);
    assert_eq!(
        t.sent(),
        vec![json!({"jsonrpc":"2.0","method":"$/cancel","params":{"id":id}})]
    );
    let r = t.responses();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["error"]["code"], codes::DEADLINE_EXCEEDED);
    t.feed(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#));
    assert!(t.responses().is_empty(), "a late answer is never delivered");
    assert_eq!(t.h.state(), State::Ready);
    // An answer to an id never sent is a violation.
    t.feed(r#"{"jsonrpc":"2.0","id":999,"result":1}"#);
    assert_eq!(t.h.state(), State::Terminated);
    assert!(t.killed.get());
}

/// An answer taken in after its deadline (the loop was busy: the deadline's timer is still
/// queued behind the input) is the deadline's error, not a late success; its timer then finds
/// nothing. An answer in time is delivered as ever.
#[test]
fn an_answer_taken_in_past_its_deadline_is_deadline_exceeded() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.invoke(1, Some(50));
    t.invoke(2, Some(50));
    let sent = t.sent();
    let (a, b) = (
        sent[1]["id"].as_u64().unwrap(),
        sent[2]["id"].as_u64().unwrap(),
    );
    t.agent();
    t.now += Duration::from_millis(50);
    t.feed(&format!(
        r#"{{"jsonrpc":"2.0","id":{a},"result":{{"ok":1}}}}"#
    ));
    assert_eq!(
        t.responses(),
        vec![json!({"jsonrpc":"2.0","id":1,"result":{"ok":1}})],
        "at the deadline: in time"
    );
    t.now += Duration::from_millis(10);
    t.feed(&format!(
        r#"{{"jsonrpc":"2.0","id":{b},"result":{{"ok":1}}}}"#
    ));
    let r = t.responses();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["id"], 2);
    assert_eq!(r[0]["error"]["code"], codes::DEADLINE_EXCEEDED, "{r:?}");
    t.h.on_timer(Timer::Call(b), t.now, &mut t.fx);
    assert!(t.responses().is_empty(), "answered once");
    assert_eq!(t.h.state(), State::Ready);
    // The plugin's own error, taken in late, likewise.
    t.invoke(3, Some(50));
    let c = t.sent()[0]["id"].as_u64().unwrap();
    t.agent();
    t.now += Duration::from_millis(51);
    t.feed(&format!(
        r#"{{"jsonrpc":"2.0","id":{c},"error":{{"code":-32000,"message":"no"}}}}"#
    ));
    let r = t.responses();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["error"]["code"], codes::DEADLINE_EXCEEDED, "{r:?}");
}

#[test]
fn ungranted_call_terminates_and_fails_pending_calls() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.invoke(1, None);
    t.agent();
    // emit_event is in the manifest and the ceiling, but the handshake did not ask for it.
    t.feed(r#"{"jsonrpc":"2.0","method":"emit_event","params":{"name":"x"}}"#);
    assert_eq!(t.h.state(), State::Terminated);
    assert!(t.killed.get());
    let agent = t.agent();
    assert!(agent
        .iter()
        .any(|m| m["error"]["code"] == codes::DENIED && m["id"] == 1));
    assert!(agent
        .iter()
        .any(|m| m["method"] == "plugin_state" && m["params"]["state"] == "terminated"));
    assert!(!agent.iter().any(|m| m["method"] == "event"));
}

/// A call that was not granted says where it stopped — the manifest, the handshake, or the
/// node — so the author knows whether there is anything of theirs to change; it was "call to
/// `kv_get`, which was not granted" for all three.
#[test]
fn a_call_not_granted_says_where_it_stopped() {
    let denial = |policy: HostPolicy, call: &str| {
        let mut t = setup(policy);
        t.handshake();
        t.agent();
        t.feed(call);
        assert_eq!(t.h.state(), State::Terminated);
        let st = t
            .agent()
            .into_iter()
            .rfind(|m| m["params"]["state"] == "terminated")
            .unwrap();
        st["params"]["reason"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let m = denial(
        HostPolicy::default(),
        r#"{"jsonrpc":"2.0","id":5,"method":"kv_get","params":{"key":"a"}}"#,
    );
    assert!(
        m.contains("the manifest's requested_capabilities do not list it"),
        "{m}"
    );
    let m = denial(
        HostPolicy::default(),
        r#"{"jsonrpc":"2.0","method":"emit_event","params":{"name":"x"}}"#,
    );
    assert!(
        m.contains("the handshake's capabilities do not ask for it"),
        "{m}"
    );
    let mut p = HostPolicy::default();
    p.capabilities.allow = Some([Capability::RegisterHook].into());
    let m = denial(
        p,
        r#"{"jsonrpc":"2.0","method":"log","params":{"message":"hi"}}"#,
    );
    assert!(m.contains("this node withheld it"), "{m}");
}

#[test]
fn operator_allowlist_and_fail_open() {
    let mut p = HostPolicy::default();
    p.capabilities.allow = Some([Capability::RegisterHook].into());
    p.hooks.insert(
        "on:h".into(),
        stockade_policy::protocol::host::HookPolicy {
            deadline_ms: Some(10),
            failure: Some(FailureMode::Open),
            default: Some(toml::Value::Boolean(true)),
            ..Default::default()
        },
    );
    let mut t = setup(p);
    t.handshake();
    assert_eq!(t.sent()[0]["result"]["granted"], json!(["register_hook"]));
    t.invoke(3, Some(5000));
    let sent = t.sent();
    assert_eq!(
        sent[0]["params"]["deadline_ms"], 10,
        "policy caps the agent's deadline"
    );
    t.agent();
    // log was asked for but the operator does not allow it: the call terminates the plugin,
    // and the pending call fails open.
    t.feed(r#"{"jsonrpc":"2.0","method":"log","params":{"message":"hi"}}"#);
    let agent = t.agent();
    assert!(agent.contains(&json!({"jsonrpc":"2.0","id":3,"result":true})));
    assert!(agent
        .iter()
        .any(|m| m["params"]["bypass"]["reason"] == "denied"));
}

#[test]
fn garbage_and_bad_handshakes_are_violations() {
    for line in [
        "hello",
        r#"{"jsonrpc":"2.0","method":"log","params":{"message":"before handshake"}}"#,
        r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"q","version":"1.0.0","api":1}}"#,
        r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"hooks":["on:other"]}}"#,
    ] {
        let mut t = setup(HostPolicy::default());
        t.feed(line);
        assert_eq!(t.h.state(), State::Terminated, "{line}");
        assert!(t.killed.get());
    }
    let mut t = setup(HostPolicy::default());
    t.h.on_timer(Timer::Handshake, t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Terminated);
}

/// The usual protocol mistakes of an honest author are said with what to change: a print on
/// stdout (the line quoted, logs go to stderr), a misspelt handshake (the method it got), one
/// never flushed (nothing came) or never ended with a newline — they were "not JSON: expected
/// value at line 1 column 1", "the first message must be a `handshake` request" and "no
/// handshake within the deadline", with nothing telling which.
#[test]
fn protocol_mistakes_are_said_with_what_to_change() {
    let reason = |t: &mut T| {
        let st = t
            .agent()
            .into_iter()
            .rfind(|m| m["params"]["state"] == "terminated")
            .expect("a terminated plugin_state");
        st["params"]["reason"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut t = setup(HostPolicy::default());
    t.feed("starting up\u{1b}[31m");
    let m = reason(&mut t);
    assert!(
        m.contains("(the line began `starting up\\u{1b}[31m`)") && m.contains("to stderr"),
        "{m}"
    );
    let mut t = setup(HostPolicy::default());
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshak","params":{}}"#);
    let m = reason(&mut t);
    assert!(m.ends_with("not a request for `handshak`"), "{m}");
    let mut t = setup(HostPolicy::default());
    t.feed(r#"{"jsonrpc":"2.0","method":"handshake","params":{}}"#);
    let m = reason(&mut t);
    assert!(m.contains("a `handshake` needs an `id`"), "{m}");
    let mut t = setup(HostPolicy::default());
    t.h.on_timer(Timer::Handshake, t.now, &mut t.fx);
    let m = reason(&mut t);
    assert!(
        m.contains("nothing came on its stdout") && m.contains("flush"),
        "{m}"
    );
    let mut t = setup(HostPolicy::default());
    t.h.on_stdout(br#"{"jsonrpc":"2.0","id":0"#, t.now, &mut t.fx);
    t.h.on_timer(Timer::Handshake, t.now, &mut t.fx);
    let m = reason(&mut t);
    assert!(m.contains("an unfinished line"), "{m}");
}

#[test]
fn crash_fails_calls_once_and_keeps_the_exit() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.invoke(1, None);
    t.invoke(2, None);
    t.agent();
    t.h.on_stdout_eof(t.now, &mut t.fx);
    t.h.on_stderr_eof(t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Exited);
    assert!(!t.killed.get(), "an exited plugin is reaped, not killed");
    let r = t.responses();
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|m| m["error"]["code"] == codes::PLUGIN_CRASHED));
    t.invoke(3, None);
    assert_eq!(t.responses()[0]["error"]["code"], codes::UNAVAILABLE);
}

#[test]
fn undeclared_hook_registration_terminates() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.feed(r#"{"jsonrpc":"2.0","id":1,"method":"register_hook","params":{"hook":"on:h"}}"#);
    assert_eq!(t.h.state(), State::Ready);
    t.feed(r#"{"jsonrpc":"2.0","id":2,"method":"register_hook","params":{"hook":"on:nope"}}"#);
    assert_eq!(t.h.state(), State::Terminated);
}

/// An agent learns from the `ready` `plugin_state` which sandbox layers run below full
/// strength (what the policy allowed to degrade) and how the package was admitted, as a
/// person reads them on stderr: before,
/// only stderr and the audit log said so, and a program had to parse text for it. At full
/// strength the list is there and empty.
#[test]
fn the_ready_state_tells_the_agent_what_runs_degraded() {
    let ready = |t: &mut T| -> Value {
        t.handshake();
        t.agent()
            .into_iter()
            .find(|m| m["method"] == "plugin_state" && m["params"]["state"] == "ready")
            .expect("ready")["params"]
            .clone()
    };
    let mut full = setup(HostPolicy::default());
    assert_eq!(ready(&mut full)["degraded"], json!([]));
    let hooks = ["on:h".to_string()];
    let (mut cfg, dir) = config_caps(
        HostPolicy::default(),
        &hooks,
        &[Capability::Log, Capability::RegisterHook],
    );
    let layer = json!({"layer": "distinct_uid", "status": "partially_enforced",
                       "reason": "`bob` holds ids in the range"});
    cfg.degraded = vec![layer.clone()];
    cfg.admitted = json!({"signature_status": "untrusted", "warnings": ["no pinned root"]});
    let mut t = start(cfg, dir);
    let starting = t.agent();
    assert!(
        starting
            .iter()
            .all(|m| m["params"].get("degraded").is_none()),
        "only the ready state carries it: {starting:?}"
    );
    let state = ready(&mut t);
    assert_eq!(state["degraded"], json!([layer]));
    // And how verification admitted the package, beside it.
    assert_eq!(state["signature_status"], "untrusted");
    assert_eq!(state["warnings"], json!(["no pinned root"]));
}

#[test]
fn a_hook_registered_after_the_handshake_is_announced_once() {
    let mut t = setup(HostPolicy::default());
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["log","register_hook"],"hooks":[]}}"#);
    assert_eq!(t.h.state(), State::Ready);
    let ready = |msgs: Vec<Value>| -> Vec<Value> {
        msgs.into_iter()
            .filter(|m| m["method"] == "plugin_state" && m["params"]["state"] == "ready")
            .collect()
    };
    let first = ready(t.agent());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["params"]["hooks"], json!([]));
    t.feed(r#"{"jsonrpc":"2.0","id":1,"method":"register_hook","params":{"hook":"on:h"}}"#);
    let again = ready(t.agent());
    assert_eq!(again.len(), 1, "a new hook is announced");
    assert_eq!(again[0]["params"]["hooks"], json!(["on:h"]));
    // Registering it again changes nothing and says nothing.
    t.feed(r#"{"jsonrpc":"2.0","id":2,"method":"register_hook","params":{"hook":"on:h"}}"#);
    assert!(ready(t.agent()).is_empty());
    // And it is invocable.
    t.invoke(7, None);
    assert!(t.sent().iter().any(|m| m["method"] == "hook_invoke"));
}

#[test]
fn health_pings_any_answer_is_a_pong_and_silence_terminates_as_hung() {
    let mut t = setup(HostPolicy::default());
    t.h.cfg.health = Some(Health {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
    });
    t.handshake();
    t.sent();
    assert!(t.fx.timers.iter().any(|(_, k)| *k == Timer::Ping));
    // First ping answered with an error (a plugin without `ping`): alive.
    t.h.on_timer(Timer::Ping, t.now, &mut t.fx);
    let ping = t.sent();
    assert_eq!(ping[0]["method"], "ping");
    let id = ping[0]["id"].as_u64().unwrap();
    t.feed(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"no"}}}}"#
    ));
    t.h.on_timer(Timer::PingDeadline(id), t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Ready);
    // Second ping unanswered: hung.
    t.h.on_timer(Timer::Ping, t.now, &mut t.fx);
    let id2 = t.sent()[0]["id"].as_u64().unwrap();
    assert_ne!(id, id2);
    t.h.on_timer(Timer::PingDeadline(id2), t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Terminated);
    assert!(t.killed.get());
    let last = t
        .agent()
        .into_iter()
        .rev()
        .find(|m| m["method"] == "plugin_state")
        .unwrap();
    assert_eq!(last["params"]["reason"]["kind"], "hung");
}

#[test]
fn a_call_after_stdout_closed_is_refused_and_exit_leaves_nothing_pending() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.invoke(1, None);
    t.sent();
    // stdout closes (the process is exiting; stderr still open): the pending call fails.
    t.h.on_stdout_eof(t.now, &mut t.fx);
    assert_eq!(t.responses()[0]["error"]["code"], codes::PLUGIN_CRASHED);
    assert_eq!(t.h.state(), State::Ready, "reaped only once stderr closes");
    // A call now is refused at once instead of waiting on a gone plugin.
    t.invoke(2, None);
    assert_eq!(t.responses()[0]["error"]["code"], codes::UNAVAILABLE);
    assert_eq!(t.h.in_flight(), 0);
    t.h.on_stderr_eof(t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Exited);
    assert_eq!(t.h.in_flight(), 0);
}

/// A ready plugin that closed stdout and stderr but is still running.
fn lingering_after_closing_its_stdio() -> T {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.lingers.set(true);
    t.h.on_stdout_eof(t.now, &mut t.fx);
    t.h.on_stderr_eof(t.now, &mut t.fx);
    t
}

#[test]
fn a_plugin_that_closes_its_stdio_but_lingers_is_polled_never_waited_for_then_killed() {
    let mut t = lingering_after_closing_its_stdio();
    // Not reaped (that would block on a running process): a look is scheduled instead.
    assert_eq!(t.h.state(), State::Ready);
    let reap: Vec<Instant> =
        t.fx.timers
            .iter()
            .filter(|(_, k)| *k == Timer::Reap)
            .map(|(at, _)| *at)
            .collect();
    assert!(reap.iter().any(|at| *at < t.now + LINGER), "{reap:?}");
    // Looks before the linger deadline find it running and back off.
    let mut at = t.now;
    for _ in 0..4 {
        at += Duration::from_millis(5);
        t.h.on_timer(Timer::Reap, at, &mut t.fx);
        assert_eq!(t.h.state(), State::Ready);
    }
    assert!(!t.killed.get());
    // Past the deadline it is killed, and says so.
    t.h.on_timer(Timer::Reap, t.now + LINGER, &mut t.fx);
    assert_eq!(t.h.state(), State::Exited);
    assert!(t.killed.get());
    assert!(t.agent().iter().any(|m| m["params"]["message"]
        .as_str()
        .is_some_and(|s| s.contains("did not exit"))));
}

#[test]
fn a_killed_plugin_that_does_not_end_is_left_for_later_not_waited_for() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.stuck.set(true);
    let started = Instant::now();
    // A violation terminates it; SIGKILL does not end it (uninterruptible sleep).
    t.feed(r#"{"jsonrpc":"2.0","id":999,"result":1}"#);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the loop was held"
    );
    assert_eq!(t.h.state(), State::Terminated);
    assert!(t.killed.get());
    let note = t
        .agent()
        .into_iter()
        .find(|m| m["params"]["state"] == "terminated")
        .unwrap();
    let sandbox = &note["params"]["reason"]["sandbox"];
    assert!(
        sandbox["reaping"]
            .as_str()
            .is_some_and(|s| s.contains("reaps it once it ends")),
        "{note}"
    );
    assert_eq!(t.h.exit_status(), Some(137), "killed: 128 + SIGKILL");
    // Handed to the supervisor, which looks again later: not yet, then once it ended.
    assert_eq!(t.fx.stuck.len(), 1);
    assert_eq!(t.fx.stuck[0].plugin(), "p");
    assert!(
        t.fx.stuck[0].try_reap().is_none(),
        "still held by the kernel"
    );
    t.stuck.set(false);
    let report = t.fx.stuck[0].try_reap().expect("ended: reaped");
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(t.fx.stuck[0].try_reap().is_none(), "reaped once");
}

#[test]
fn a_plugin_that_ends_just_after_its_stdio_closed_is_reaped_not_killed() {
    let mut t = lingering_after_closing_its_stdio();
    assert_eq!(t.h.state(), State::Ready);
    t.lingers.set(false);
    t.h.on_timer(Timer::Reap, t.now + Duration::from_millis(1), &mut t.fx);
    assert_eq!(t.h.state(), State::Exited);
    assert!(!t.killed.get(), "its own exit is kept");
}

#[test]
fn cached_answers_are_served_without_the_plugin_until_they_expire() {
    let mut p = HostPolicy::default();
    p.hooks.insert(
        "on:h".into(),
        stockade_policy::protocol::host::HookPolicy {
            cache_ttl_ms: Some(1000),
            ..Default::default()
        },
    );
    let mut t = setup(p);
    t.handshake();
    t.sent();
    t.agent();
    let t0 = t.now;
    let call = |t: &mut T, agent_id: u64, x: u64, now: Instant| {
        let c = msg::HookInvoke {
            hook: "on:h".into(),
            payload: json!({"x": x}),
            deadline_ms: None,
        };
        t.h.invoke(json!(agent_id), c, now, &mut t.fx);
    };
    let answer = |t: &mut T, result: &str| {
        let id = t.sent()[0]["id"].as_u64().unwrap();
        t.feed(&format!(r#"{{"jsonrpc":"2.0","id":{id},{result}}}"#));
    };
    // First call: the plugin answers; the answer is kept.
    call(&mut t, 1, 7, t0);
    answer(&mut t, r#""result":{"v":7}"#);
    assert_eq!(t.responses()[0]["result"], json!({"v": 7}));
    // Same payload: answered at once, nothing sent to the plugin.
    call(&mut t, 2, 7, t0 + Duration::from_millis(999));
    assert!(t.sent().is_empty());
    let r = t.responses();
    assert_eq!(
        (r[0]["id"].clone(), r[0]["result"].clone()),
        (json!(2), json!({"v": 7}))
    );
    // Another payload goes to the plugin; an error answer is not kept.
    call(&mut t, 3, 8, t0);
    answer(&mut t, r#""error":{"code":1,"message":"no"}"#);
    t.agent();
    call(&mut t, 4, 8, t0);
    assert_eq!(t.sent().len(), 1, "the error was not cached");
    // Expired: the plugin is asked again. The hits are reported on the tick.
    call(&mut t, 5, 7, t0 + Duration::from_millis(1000));
    assert_eq!(t.sent().len(), 1);
    t.agent();
    t.h.on_timer(Timer::Tick, t0, &mut t.fx);
    assert!(t.agent().iter().any(|m| m["params"]["message"]
        .as_str()
        .is_some_and(|s| s.starts_with("1 hook calls answered from the cache"))));
}

#[test]
fn a_killed_child_that_does_not_end_is_kept_for_later_not_waited_for() {
    let mut later = Vec::new();
    // Ends when killed: waited for here.
    let f = Fake::default();
    let killed = f.killed.clone();
    kill_and_reap(Box::new(f), "p", &mut later);
    assert!(killed.get());
    assert!(later.is_empty());
    // Does not end (uninterruptible sleep): the Fake's wait asserts nobody waits for it yet.
    let f = Fake::default();
    let (killed, stuck) = (f.killed.clone(), f.stuck.clone());
    stuck.set(true);
    let report = kill_and_reap(Box::new(f), "p", &mut later);
    assert!(killed.get());
    assert_eq!(later.len(), 1);
    assert_eq!(report["exit"]["signal"], libc::SIGKILL, "{report}");
    // Dropped (the runtime ends): waited for, once it can end.
    stuck.set(false);
    drop(later);
}

#[test]
fn a_plugin_shut_down_before_its_handshake_was_read_is_not_terminated_for_it() {
    let mut t = setup(HostPolicy::default());
    // The daemon stops while the plugin starts: its handshake was already on the way.
    t.h.shutdown(t.now, &mut t.fx);
    assert_eq!(t.h.state(), State::Stopping);
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["log"],"hooks":["on:h"]}}"#);
    assert_eq!(t.h.state(), State::Stopping, "not a denied host call");
    assert!(!t.killed.get());
    // Anything after it is judged as before: a second `handshake` is no host API method.
    t.feed(r#"{"jsonrpc":"2.0","id":1,"method":"handshake","params":{}}"#);
    assert_eq!(t.h.state(), State::Terminated);
}

/// The slow-frame clock times the frame open now: a plugin streaming frames whose reads end
/// mid-line (each frame done well in time) is not killed, while a frame that itself takes too
/// long still is — also when it began after the one timer was set.
#[test]
fn the_slow_frame_clock_times_the_open_frame_not_the_first_one() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    let limit = Duration::from_millis(HostPolicy::default().protocol.frame_timeout_ms);
    let line = r#"{"jsonrpc":"2.0","method":"log","params":{"message":"tick"}}"#.to_string() + "\n";
    let (head, tail) = line.split_at(line.len() / 2);
    let step = limit / 4;
    let mut now = t.now;
    t.h.on_stdout(head.as_bytes(), now, &mut t.fx);
    // Each read completes the open frame and opens the next, for 3 frame timeouts.
    for _ in 0..12 {
        now += step;
        let chunk = format!("{tail}{head}");
        t.h.on_stdout(chunk.as_bytes(), now, &mut t.fx);
        fire_due(&mut t, now);
        assert_eq!(
            t.h.state(),
            State::Ready,
            "killed while every frame was on time"
        );
    }
    // Now the open frame stalls: killed once it is older than the limit, not before.
    now += limit - step / 2;
    fire_due(&mut t, now);
    assert_eq!(t.h.state(), State::Ready);
    now += step;
    fire_due(&mut t, now);
    assert_eq!(t.h.state(), State::Terminated);
    let agent = t.agent();
    assert!(
        agent
            .iter()
            .any(|m| m["method"] == "plugin_state" && m["params"]["reason"]["kind"] == "slow_frame"),
        "{agent:?}"
    );
}

/// Fire the handle's timers due by `now` (as the supervisor's heap would), in time order.
fn fire_due(t: &mut T, now: Instant) {
    loop {
        t.fx.timers.sort_by_key(|(at, _)| *at);
        let Some(i) = t.fx.timers.iter().position(|(at, _)| *at <= now) else {
            return;
        };
        let (at, timer) = t.fx.timers.remove(i);
        t.h.on_timer(timer, at, &mut t.fx);
    }
}

/// A plugin that calls the host without ever reading its stdin cannot grow the answers queued
/// for it without end: past the cap it is terminated, and until then it is served.
#[test]
fn a_plugin_that_never_reads_its_answers_is_terminated_at_the_cap() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.sent();
    // Ids as long as a frame allows (the answers echo them); `log` is rate-limited, so most
    // answers are `overloaded` — answers all the same.
    let id = "i".repeat(60_000);
    let mut n = 0;
    while t.h.state() == State::Ready {
        assert!(
            t.h.outbound.len() <= t.h.unread_cap() + 61_000,
            "queue grew past the cap"
        );
        t.feed(&format!(
            r#"{{"jsonrpc":"2.0","id":"{id}{n}","method":"log","params":{{"message":"x"}}}}"#
        ));
        n += 1;
        assert!(n < 1_000, "never terminated");
    }
    assert!(n > 60, "terminated after {n} calls: before the cap");
    assert_eq!(t.h.state(), State::Terminated);
    let agent = t.agent();
    assert!(
        agent
            .iter()
            .any(|m| m["method"] == "plugin_state"
                && m["params"]["reason"]["kind"] == "stdin_unread"),
        "{:?}",
        agent
            .iter()
            .filter(|m| m["method"] == "plugin_state")
            .collect::<Vec<_>>()
    );
    // A plugin that reads (here: the queue drained between calls) is never stopped.
    let mut t = setup(HostPolicy::default());
    t.handshake();
    for n in 0..200 {
        t.feed(&format!(
            r#"{{"jsonrpc":"2.0","id":"{id}{n}","method":"log","params":{{"message":"x"}}}}"#
        ));
        t.sent();
    }
    assert_eq!(t.h.state(), State::Ready);
}

/// A `log` request with a level the protocol does not define is `invalid_params`; a `log`
/// notification (no answer to carry that) is kept as info, with a runtime warning.
#[test]
fn an_unknown_log_level_is_invalid_params_or_kept_as_info() {
    let mut t = setup(HostPolicy::default());
    t.handshake();
    t.sent();
    t.feed(
        r#"{"jsonrpc":"2.0","id":7,"method":"log","params":{"level":"EMERGENCY","message":"x"}}"#,
    );
    let sent = t.sent();
    assert_eq!(sent[0]["id"], 7);
    assert_eq!(sent[0]["error"]["code"], codes::INVALID_PARAMS);
    assert!(!t
        .agent()
        .iter()
        .any(|m| m["method"] == "log" && m["params"]["source"] == "plugin"));
    assert_eq!(t.h.state(), State::Ready);
    // A notification has no answer to carry the error: the message is kept, and said why.
    t.feed(r#"{"jsonrpc":"2.0","method":"log","params":{"level":"warning","message":"kept"}}"#);
    let agent = t.agent();
    assert!(agent.iter().any(|m| m["params"]["source"] == "plugin"
        && m["params"]["level"] == "info"
        && m["params"]["message"] == "kept"));
    assert!(agent.iter().any(|m| m["params"]["source"] == "runtime"
        && m["params"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`warning`")));
    assert!(t.sent().is_empty(), "nothing answers a notification");
}

/// stderr past `max_stderr_bytes` is announced once, not counted as rate-limited drops.
#[test]
fn stderr_past_its_cap_is_not_reported_as_rate_limited() {
    let mut p = HostPolicy::default();
    p.protocol.max_stderr_bytes = 100;
    let mut t = setup(p);
    t.handshake();
    let line = format!("{}\n", "e".repeat(60));
    for _ in 0..5 {
        t.h.on_stderr(line.as_bytes(), &mut t.fx);
    }
    t.h.on_timer(Timer::Tick, t.now, &mut t.fx);
    let logs: Vec<String> = t
        .agent()
        .iter()
        .filter(|m| m["method"] == "log")
        .map(|m| {
            m["params"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("stderr exceeded 100 bytes")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("rate limit")), "{logs:?}");
}

/// Hooks registered after the handshake are announced together: those of one read once, and
/// later ones at most once per `ANNOUNCE_INTERVAL` — not a `plugin_state` with the whole list for
/// each (2,000 registrations made 2,000 of them, the list growing to 2,000 hooks).
#[test]
fn hooks_registered_after_the_handshake_are_announced_together_not_one_by_one() {
    let hooks: Vec<String> = (0..2000).map(|i| format!("on:h{i}")).collect();
    let mut t = setup_hooks(HostPolicy::default(), &hooks);
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["log","register_hook"],"hooks":[]}}"#);
    assert_eq!(t.h.state(), State::Ready);
    t.agent();
    let register = |i: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"register_hook","params":{{"hook":"on:h{i}"}}}}"#,
            i + 1
        )
    };
    let ready = |msgs: &[Value]| -> Vec<Value> {
        msgs.iter()
            .filter(|m| m["method"] == "plugin_state" && m["params"]["state"] == "ready")
            .map(|m| m["params"]["hooks"].clone())
            .collect()
    };
    // One read with 1,000 registrations: one announcement, at its end, with all of them.
    let batch: String = (0..1000).map(|i| register(i) + "\n").collect();
    t.h.on_stdout(batch.as_bytes(), t.now, &mut t.fx);
    let a = ready(&t.agent());
    assert_eq!(a.len(), 1, "one announcement for the read");
    assert_eq!(a[0].as_array().unwrap().len(), 1000);
    t.sent();
    // 1,000 more, a read each, within the interval: said once, when it ends.
    for i in 1000..2000 {
        t.feed(&register(i));
        t.h.outbound.clear();
    }
    assert!(
        ready(&t.agent()).is_empty(),
        "announced within the interval"
    );
    assert_eq!(
        t.fx.timers
            .iter()
            .filter(|(_, k)| *k == Timer::Announce)
            .count(),
        1
    );
    let later = t.now + ANNOUNCE_INTERVAL;
    fire_due(&mut t, later);
    let a = ready(&t.agent());
    assert_eq!(a.len(), 1, "the rest in one announcement");
    assert_eq!(a[0].as_array().unwrap().len(), 2000);
    // Registering a hook again says nothing, even past the interval.
    t.now = later + ANNOUNCE_INTERVAL;
    t.feed(&register(5));
    assert!(ready(&t.agent()).is_empty());
}

/// Only `log` and `emit_event` may be notifications: a request-only method sent without an id is
/// a violation, and is not executed.
#[test]
fn a_request_only_method_sent_as_a_notification_is_a_violation_not_executed() {
    let mut t = setup(HostPolicy::default());
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["log","emit_event","register_hook"],"hooks":[]}}"#);
    t.agent();
    t.feed(r#"{"jsonrpc":"2.0","method":"log","params":{"message":"fine"}}"#);
    t.feed(r#"{"jsonrpc":"2.0","method":"emit_event","params":{"name":"fine"}}"#);
    assert_eq!(t.h.state(), State::Ready);
    t.feed(r#"{"jsonrpc":"2.0","method":"register_hook","params":{"hook":"on:h"}}"#);
    assert_eq!(t.h.state(), State::Terminated);
    assert!(t.h.hooks().is_empty(), "executed all the same");
    let agent = t.agent();
    let st = agent
        .iter()
        .rfind(|m| m["method"] == "plugin_state")
        .unwrap();
    assert_eq!(st["params"]["reason"]["kind"], "notification", "{st}");
    assert_eq!(st["params"]["reason"]["code"], codes::VIOLATION, "{st}");
}

/// A value nested `depth` levels (arrays), with a string at the bottom.
fn nested(depth: usize) -> String {
    format!("{}\"x\"{}", "[".repeat(depth), "]".repeat(depth))
}

/// An answer whose result (or error object) nests deeper than the runtime's wrapping leaves room
/// for is a violation; one at the limit reaches the agent.
#[test]
fn an_answer_nested_too_deep_for_its_wrapping_is_a_violation() {
    for (answer, ok) in [
        (format!(r#""result":{}"#, nested(MAX_ANSWER_DEPTH)), true),
        (
            format!(r#""result":{}"#, nested(MAX_ANSWER_DEPTH + 1)),
            false,
        ),
        (format!(r#""result":{}"#, nested(126)), false),
        (
            format!(
                r#""error":{{"code":1,"message":"m","data":{}}}"#,
                nested(MAX_ANSWER_DEPTH - 1)
            ),
            true,
        ),
        (
            format!(
                r#""error":{{"code":1,"message":"m","data":{}}}"#,
                nested(MAX_ANSWER_DEPTH)
            ),
            false,
        ),
    ] {
        let mut t = setup(HostPolicy::default());
        t.handshake();
        t.invoke(10, None);
        let id = t.sent()[1]["id"].as_u64().unwrap();
        t.agent();
        t.feed(&format!(r#"{{"jsonrpc":"2.0","id":{id},{answer}}}"#));
        let agent = t.agent();
        let r = agent.iter().find(|m| m["id"] == 10).expect("answered");
        if ok {
            assert_eq!(t.h.state(), State::Ready, "{answer}");
            assert_ne!(r["error"]["code"], codes::VIOLATION, "{r}");
        } else {
            assert_eq!(t.h.state(), State::Terminated, "{answer}");
            assert_eq!(r["error"]["code"], codes::VIOLATION, "{r}");
            let st = agent
                .iter()
                .rfind(|m| m["method"] == "plugin_state")
                .unwrap();
            assert_eq!(st["params"]["reason"]["kind"], "too_deep", "{st}");
        }
    }
}

/// A plugin spamming `kv_put` gets its puts of one second bounded (the audit: thousands of puts
/// stalled `serve`'s loop); past the budget each is refused at once, `overloaded`. A store
/// another process holds locked: `unavailable`, saying so and when to retry (the message was
/// "cannot persist key/value store" alone).
#[test]
fn kv_puts_past_the_write_budget_are_overloaded() {
    let mut t = setup_caps(
        HostPolicy::default(),
        &[],
        &[Capability::KvGet, Capability::KvPut],
    );
    t.feed(r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["kv_get","kv_put"]}}"#);
    assert_eq!(t.h.state(), State::Ready);
    t.sent();
    let mut lines = String::new();
    for i in 1..=100 {
        lines.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"kv_put","params":{{"key":"k","value":"{i}"}}}}"#
        ));
        lines.push('\n');
    }
    t.h.on_stdout(lines.as_bytes(), t.now, &mut t.fx);
    let answers = t.sent();
    assert_eq!(answers.len(), 100);
    let ok = answers.iter().filter(|a| a.get("result").is_some()).count();
    assert_eq!(ok, crate::host::kv::WRITE_BUDGET.puts as usize);
    for a in &answers[ok..] {
        assert_eq!(a["error"]["code"], codes::OVERLOADED, "{a}");
        assert_eq!(a["error"]["data"]["kind"], "kv_write_budget", "{a}");
    }
    assert_eq!(t.h.state(), State::Ready, "refused, not terminated");

    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(t.dir.path().join("kv/p.lock")).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    t.now += Duration::from_secs(5);
    t.feed(r#"{"jsonrpc":"2.0","id":200,"method":"kv_put","params":{"key":"k","value":"x"}}"#);
    let a = t.sent().remove(0);
    assert_eq!(a["error"]["code"], codes::UNAVAILABLE, "{a}");
    let why = a["error"]["message"].as_str().unwrap();
    assert!(why.contains("stayed locked"), "{a}");
    assert_eq!(a["error"]["data"]["kind"], "kv_locked", "{a}");
    assert!(
        a["error"]["data"]["retry_after_ms"].as_u64().unwrap() >= 2000,
        "{a}"
    );
    drop(held);
    // The puts of the backoff are refused at once, with how long is left.
    t.feed(r#"{"jsonrpc":"2.0","id":201,"method":"kv_put","params":{"key":"k","value":"y"}}"#);
    let a = t.sent().remove(0);
    assert_eq!(a["error"]["data"]["kind"], "kv_locked", "{a}");
    assert!(
        a["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0,
        "{a}"
    );
}

/// Every `reason.kind` a plugin is terminated with (the literal after the code in a
/// `terminate(fx, code, "kind", …)` of this module and its host API) is in docs/protocol.md's
/// list of them (§4.2), which an agent reads to tell a protocol breach from a hang or a denial.
#[test]
fn every_termination_kind_is_documented() {
    let doc = include_str!("../../../docs/protocol.md");
    let list_at = doc
        .find("`reason.kind` for a terminated plugin:")
        .expect("§4.2's list");
    let list = &doc[list_at..list_at + doc[list_at..].find("For an\nexited one").unwrap()];
    let mut kinds = Vec::new();
    for src in [
        include_str!("plugin.rs"),
        include_str!("plugin_host_api.rs"),
    ] {
        for (i, _) in src.match_indices("self.terminate(") {
            // The third argument, after `fx` and the code.
            let args = &src[i + "self.terminate(".len()..];
            let third = args.splitn(3, ',').nth(2).unwrap().trim_start();
            if let Some(k) = third.strip_prefix('"') {
                kinds.push(k[..k.find('"').unwrap()].to_string());
            }
        }
    }
    assert!(kinds.len() >= 12, "{kinds:?}");
    for k in &kinds {
        assert!(
            list.contains(&format!("`{k}`")),
            "`{k}` is not in docs/protocol.md's list of termination kinds"
        );
    }
}
