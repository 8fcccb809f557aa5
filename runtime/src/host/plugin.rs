//! One plugin's side of the host protocol, as a state machine over bytes and time.
//!
//! [`PluginHandle`] never touches a descriptor: the [`super::supervisor`] feeds it what was read
//! from the plugin's stdout/stderr, the agent's `hook_invoke` calls and expired timers, and takes
//! back bytes for the plugin's stdin, messages for the agent and timers to arm ([`Effects`]). The
//! sandboxed process is behind the small [`Child`] trait, so the whole protocol is unit-tested
//! against a fake (tests at the end) while the integration tests run real sandboxes.
//!
//! States: `starting` (only a `handshake` is accepted, within a deadline) → `ready` → `stopping`
//! (after `shutdown`) → `exited` | `terminated` (killed for a violation or a denied call).
//! Every transition is reported to the agent as a `plugin_state` notification.

use super::answer_cache::{self, AnswerCache};
use super::kv::{KvError, KvStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use stockade_policy::capability::Capability;
use stockade_policy::manifest::ValidatedManifest;
use stockade_policy::protocol::frame::{encode, FrameDecoder};
use stockade_policy::protocol::host::{FailureMode, HostPolicy};
use stockade_policy::protocol::message::{
    self as msg, codes, notification, params, response_err, response_ok, Message, RpcError,
};
use stockade_policy::protocol::{check_handshake, grant};
use stockade_policy::sertone;

/// The sandboxed process, as the handle needs it.
pub trait Child {
    /// Kill everything in the sandbox now: signals only, nothing here waits.
    fn kill(&mut self);
    /// Whether it has ended by itself. Never blocks: the event loop serves every other plugin
    /// and the agent, so a process that closed its stdio but lingers must not hold it up.
    fn has_exited(&mut self) -> bool;
    /// Reap it and return its report as JSON. Blocks until it is gone, so the loop calls it
    /// only once `has_exited` said so (a killed child that does not end is kept as [`Stuck`]).
    fn wait(self: Box<Self>) -> Value;
    /// Its host pid, when known.
    fn pid(&self) -> Option<i32> {
        None
    }
}

impl Child for crate::sandbox::Sandboxed {
    fn kill(&mut self) {
        crate::sandbox::Sandboxed::kill(self);
    }
    fn has_exited(&mut self) -> bool {
        crate::sandbox::Sandboxed::has_exited(self)
    }
    fn wait(self: Box<Self>) -> Value {
        let r = crate::sandbox::Sandboxed::wait(*self);
        json!({"exit": r.exit, "cleaned_up": r.cleaned_up, "limits_hit": r.limits_hit})
    }
    fn pid(&self) -> Option<i32> {
        crate::sandbox::Sandboxed::pid(self)
    }
}

/// The start of a line a plugin wrote, for a message about it: at most 60 characters, control
/// characters escaped (it may reach a terminal through `serve`'s log, which escapes it again).
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out: String = text.chars().take(60).flat_map(char::escape_debug).collect();
    if text.chars().nth(60).is_some() {
        out.push('…');
    }
    out
}

/// [`crate::sandbox::report::ending`] of a reaped sandbox's JSON (`exit`, `limits_hit`).
fn ending_of(sandbox: &Value) -> Option<String> {
    use crate::sandbox::report::{ending, ExitInfo, LimitsHit};
    let exit: ExitInfo = serde_json::from_value(sandbox.get("exit")?.clone()).ok()?;
    let limits: LimitsHit =
        serde_json::from_value(sandbox.get("limits_hit")?.clone()).unwrap_or_default();
    ending(&exit, &limits)
}

/// A warm spare given up (stale, quarantined, unloaded): it never ran the program, so its report
/// has no exit; killed and reaped as a plugin's sandbox is ([`kill_and_reap`]).
impl Child for crate::sandbox::Held {
    fn kill(&mut self) {
        crate::sandbox::Held::kill(self);
    }
    fn has_exited(&mut self) -> bool {
        crate::sandbox::Held::has_exited(self)
    }
    fn wait(self: Box<Self>) -> Value {
        json!({"exit": null, "cleaned_up": crate::sandbox::Held::discard(*self), "spare": true})
    }
}

/// A timer a handle asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The handshake deadline.
    Handshake,
    /// A hook call's deadline (the runtime's call id).
    Call(u64),
    /// Check that a started frame completes in time (slowloris).
    Frame,
    /// The shutdown grace period ended.
    Grace,
    /// Refill the event bucket / report drops.
    Tick,
    /// stdout closed: see whether the process has ended; kill and reap it once it has
    /// lingered past [`LINGER`].
    Reap,
    /// Send a health ping (`serve`).
    Ping,
    /// The health ping with this id must have been answered by now.
    PingDeadline(u64),
    /// Hooks registered after the handshake wait to be announced ([`ANNOUNCE_INTERVAL`]).
    Announce,
    /// The supervisor's, never the handle's: read a throttled stderr again
    /// (`supervisor::STDERR_THROTTLE`).
    StderrRead,
}

/// What the supervisor must do after a handle call.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages for the agent, in order.
    pub to_agent: Vec<Value>,
    /// Timers to arm.
    pub timers: Vec<(Instant, Timer)>,
    /// Killed sandboxes that have not ended yet, for the supervisor to reap later.
    pub stuck: Vec<Stuck>,
}

/// Lifecycle state (the `state` of `plugin_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the handshake.
    Starting,
    /// Serving hooks.
    Ready,
    /// `shutdown` sent, stdin closed, waiting for it to exit.
    Stopping,
    /// Ended by itself (or after shutdown).
    Exited,
    /// Killed by the runtime.
    Terminated,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Terminated => "terminated",
        }
    }
    /// No process left.
    pub fn is_gone(self) -> bool {
        matches!(self, State::Exited | State::Terminated)
    }
}

/// Everything a handle needs besides its process.
pub struct PluginConfig {
    /// The verified manifest.
    pub manifest: ValidatedManifest,
    /// The developer certificate's capability ceiling.
    pub ceiling: BTreeSet<Capability>,
    /// The operator's host policy.
    pub policy: HostPolicy,
    /// The plugin's key/value store; `None` when its manifest requests neither `kv_get` nor
    /// `kv_put`, so that no call can reach one ([`crate::host::kv::reachable`]).
    pub kv: Option<KvStore>,
    /// `get_config_value` answers (the allowlisted, non-secret subset).
    pub config: BTreeMap<String, Value>,
    /// Health pings (`serve`; `run` does not ping).
    pub health: Option<Health>,
    /// The sandbox's layers below full strength ([`crate::sandbox::report::Report::degraded`]),
    /// told to agents in the `ready` `plugin_state`.
    pub degraded: Vec<Value>,
    /// How verification admitted the package: `{"signature_status", "warnings"}` (the
    /// verification report's), told to agents in the `ready` `plugin_state` — as `serve`'s
    /// plugin status does — so an agent of `run` learns that a trust mode below strict let the
    /// package pass without parsing stderr. `Null`: nothing to tell (tests' fakes).
    pub admitted: Value,
}

/// Health ping timing: a ready plugin gets a `ping` request every `interval`; one not answered
/// (by a result or an error: any answer proves the plugin's loop is alive) within `timeout`
/// means the plugin hangs, and it is terminated.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// Between pings.
    pub interval: Duration,
    /// Answer deadline.
    pub timeout: Duration,
}

struct Call {
    agent_id: Value,
    hook: String,
    /// The payload until the call is sent to the plugin.
    payload: Option<Value>,
    deadline_ms: u64,
    /// When its deadline passes: an answer taken in later (the loop was busy when it came) is
    /// `deadline_exceeded` like one that never came — never a late success.
    due: Instant,
    /// Where a successful answer is cached, and for how long (`cache_ttl_ms`).
    cache: Option<(answer_cache::Key, Duration)>,
}

/// Bytes queued for the plugin's stdin are capped: past this, new calls are `overloaded`.
const MAX_OUTBOUND: usize = 1024 * 1024;
/// Answers to the plugin's own calls queued for its stdin, on top of the calls: past
/// [`PluginHandle::unread_cap`] the plugin is terminated (`stdin_unread`), since only it can
/// drain them and it is not reading.
const MAX_UNREAD_ANSWERS: usize = 4 * MAX_OUTBOUND;
/// How long a plugin may linger after closing its stdout before it is killed.
const LINGER: Duration = Duration::from_millis(500);
/// First and longest wait between two looks at whether a plugin whose stdio closed has ended.
/// Its stdio closes a moment before its init exits, so the first look comes soon; the
/// kernel's pidfd would say it without polling, but would cost a descriptor and a token per
/// plugin for an event that occurs once per plugin's life.
const REAP_POLL: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(50));
/// How long the loop waits for a killed sandbox to end before it is left to be reaped later.
/// SIGKILL ends a sandbox within moments, unless one of its processes sleeps uninterruptibly
/// (a write to a dead NFS server): the kernel then holds the namespace's init — and a
/// `waitpid` on it — until that process wakes, and the loop serves every other plugin and the
/// agent.
const KILL_WAIT: Duration = Duration::from_millis(100);

/// A killed sandbox that had not ended within [`KILL_WAIT`]: the event loop keeps it and looks
/// again now and then ([`Stuck::try_reap`], driven by the supervisor's timer), never blocking
/// on it. Not a thread: `sandbox::launch` needs this process single-threaded, so a reaper
/// thread blocked for as long as the stuck process sleeps would make every launch (loads,
/// restarts, the warm pool's spares) of every plugin fail meanwhile.
///
/// Dropping it waits for the sandbox to end (a runtime about to exit: its cgroup and uid lease
/// are released before the runtime is gone).
pub struct Stuck {
    plugin: String,
    since: Instant,
    child: Option<Box<dyn Child>>,
}

impl std::fmt::Debug for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stuck")
            .field("plugin", &self.plugin)
            .field("pid", &self.child.as_ref().and_then(|c| c.pid()))
            .finish_non_exhaustive()
    }
}

impl Stuck {
    /// The plugin it ran.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Reap it if it has ended by now, without blocking: its report (the sandbox torn down,
    /// its cgroup removed and uid lease released), or `None` while the kernel still holds it.
    pub fn try_reap(&mut self) -> Option<Value> {
        let c = self.child.as_mut()?;
        if !c.has_exited() {
            return None;
        }
        self.child.take().map(|c| c.wait())
    }

    /// How long ago it was killed.
    pub fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            drop(c.wait());
        }
    }
}

/// Wait up to `limit` for a killed child to end (looking at it without blocking).
fn ended_within(c: &mut dyn Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut pause = Duration::from_micros(100);
    loop {
        if c.has_exited() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep(pause.min(until - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Kill a child and reap it: waited for at most [`KILL_WAIT`] on the event loop; one that has
/// not ended by then is pushed on `stuck` for the loop to reap once it ends — never a blocking
/// wait in the loop for a sandbox a process in uninterruptible sleep holds up. Its report, or
/// what is known now when it is left for later. Used for a plugin terminated or killed after
/// its grace, and for a launch undone (its audit record could not be written).
pub fn kill_and_reap(mut c: Box<dyn Child>, plugin: &str, stuck: &mut Vec<Stuck>) -> Value {
    c.kill();
    if ended_within(c.as_mut(), KILL_WAIT) {
        return c.wait();
    }
    let pid = c.pid();
    stuck.push(Stuck {
        plugin: plugin.to_string(),
        since: Instant::now(),
        child: Some(c),
    });
    let t = KILL_WAIT.as_millis();
    // It was sent SIGKILL and ends of it when the kernel lets it go: that is its status.
    let killed = json!({"code": null, "signal": libc::SIGKILL, "status": 128 + libc::SIGKILL});
    json!({"exit": killed, "cleaned_up": false, "pid": pid,
           "reaping": format!("later: the sandbox had not ended {t} ms after SIGKILL (a process \
                               in uninterruptible sleep); the runtime reaps it once it ends")})
}

/// Least time between two announcements of hooks registered after the handshake. Each one is a
/// `plugin_state` carrying the whole hook list (up to a manifest's worth, 64 KiB), which every
/// agent gets and none may miss (it is never discarded, unlike `log` and `event`): announcing
/// every registration made a plugin registering its 5,900 declared hooks one by one cost the
/// daemon 5,900 messages of up to 64 KiB for each agent (1 GB, agents dropped). Registrations are
/// instead gathered: those of one read are announced once, at its end, and one coming less than
/// this after the last announcement waits for the interval's end, with every other until then.
/// So a plugin costs each agent at most one hook list per interval, and a plugin registering a
/// hook or two after its handshake has it announced at once.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);

/// How deep a hook answer's `result` (or its `error` object) may nest (arrays and objects, the
/// error object itself counting one). The plugin's frame may nest 127 levels (its parser's and
/// most agents' limit: serde_json refuses the 128th), so its `result` up to 126; but the runtime
/// wraps what a plugin answered before an agent reads it — `serve`'s aggregate puts a result 4
/// levels down (`{result: {results: [{result: …}]}}`) and a plugin error 6 (`… {error: {data:
/// {plugin_error: …}}}`), `run` a plugin error 3 — and an answer nested past 127 is refused by
/// the agent's parser whole, with the other plugins' results in it. So an answer deeper than
/// this is a violation (`too_deep`), under `run` as under `serve`, and every wrapped answer stays
/// within 127.
const MAX_ANSWER_DEPTH: usize = 120;

/// How many arrays and objects `v` nests (a scalar: 0). The values come from frames the parser
/// already bounded to 127 levels, so the recursion is bounded too.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Longest stderr line forwarded (the rest of the line is cut).
const MAX_STDERR_LINE: usize = 4096;

/// One plugin.
pub struct PluginHandle {
    cfg: PluginConfig,
    child: Option<Box<dyn Child>>,
    state: State,
    decoder: FrameDecoder,
    frame_since: Option<Instant>,
    stderr_line: Vec<u8>,
    stderr_bytes: usize,
    stderr_capped: bool,
    stderr_open: bool,
    /// Bytes read from its stderr, forwarded or not.
    stderr_read: u64,
    link_closed: bool,
    /// Set when stdout closed: past this, a process still there is killed.
    linger_until: Option<Instant>,
    /// Wait before the next look at whether it has ended (doubles up to `REAP_POLL.1`).
    reap_poll: Duration,
    exit_status: Option<i32>,
    /// Bytes for the plugin's stdin.
    pub outbound: Vec<u8>,
    /// Close the plugin's stdin once `outbound` is flushed.
    pub close_stdin: bool,
    granted: BTreeSet<Capability>,
    /// What its handshake asked for (a call outside `granted` is told by where it stopped).
    asked: BTreeSet<Capability>,
    hooks: BTreeSet<String>,
    calls: BTreeMap<u64, Call>,
    backlog: VecDeque<u64>,
    next_id: u64,
    tokens: u32,
    dropped: u64,
    late: u64,
    /// Shut down while starting, before its handshake was read: the handshake still to come is
    /// dropped (the plugin ends on the `shutdown` that follows), not taken for a host call.
    shut_before_handshake: bool,
    ping: Option<u64>,
    answers: AnswerCache,
    cache_hits: u64,
    /// Hooks were registered since the last `plugin_state` said which (see
    /// [`ANNOUNCE_INTERVAL`]).
    hooks_unannounced: bool,
    /// The last announcement of late hooks, and whether a [`Timer::Announce`] is armed.
    announced_at: Option<Instant>,
    announce_armed: bool,
}

impl PluginHandle {
    /// A freshly launched plugin; arms the handshake deadline.
    pub fn new(cfg: PluginConfig, child: Box<dyn Child>, now: Instant, fx: &mut Effects) -> Self {
        let p = &cfg.policy.protocol;
        fx.timers
            .push((now + ms(p.handshake_timeout_ms), Timer::Handshake));
        fx.timers.push((now + Duration::from_secs(1), Timer::Tick));
        let h = Self {
            decoder: FrameDecoder::new(p.max_frame_bytes),
            tokens: p.max_events_per_sec,
            cfg,
            child: Some(child),
            state: State::Starting,
            frame_since: None,
            stderr_line: Vec::new(),
            stderr_bytes: 0,
            stderr_capped: false,
            stderr_open: true,
            stderr_read: 0,
            link_closed: false,
            linger_until: None,
            reap_poll: REAP_POLL.0,
            exit_status: None,
            outbound: Vec::new(),
            close_stdin: false,
            granted: BTreeSet::new(),
            asked: BTreeSet::new(),
            hooks: BTreeSet::new(),
            calls: BTreeMap::new(),
            backlog: VecDeque::new(),
            next_id: 1,
            dropped: 0,
            late: 0,
            shut_before_handshake: false,
            ping: None,
            answers: AnswerCache::default(),
            cache_hits: 0,
            hooks_unannounced: false,
            announced_at: None,
            announce_armed: false,
        };
        h.report_state(fx, None);
        h
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.cfg.manifest.name()
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The process's exit status once reaped (128+N when signal N ended it).
    pub fn exit_status(&self) -> Option<i32> {
        self.exit_status
    }

    /// Hooks it is registered for.
    pub fn hooks(&self) -> &BTreeSet<String> {
        &self.hooks
    }

    /// Hook calls not yet answered.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Whether timer `t` of this handle still has something to do when it fires: a call's
    /// deadline while that call is pending, a ping's while that ping waits for its answer
    /// ([`Self::on_timer`] ignores them otherwise); every other kind — one or two of each per
    /// plugin, each re-arming itself or firing once — counts as pending.
    pub fn timer_pending(&self, t: &Timer) -> bool {
        match t {
            Timer::Call(id) => self.calls.contains_key(id),
            Timer::PingDeadline(id) => self.ping == Some(*id),
            _ => true,
        }
    }

    /// The sandbox layers below full strength ([`PluginConfig::degraded`]).
    pub fn degraded(&self) -> &[Value] {
        &self.cfg.degraded
    }

    /// Capabilities granted by the handshake.
    pub fn granted(&self) -> &BTreeSet<Capability> {
        &self.granted
    }

    /// The sandboxed program's host pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| c.pid())
    }

    fn report_state(&self, fx: &mut Effects, reason: Option<Value>) {
        let mut p = json!({"plugin": self.name(), "state": self.state.as_str()});
        if let Some(pid) = self.pid() {
            p["pid"] = json!(pid);
        }
        if self.state == State::Ready {
            p["granted"] = json!(self.granted);
            p["hooks"] = json!(self.hooks);
            p["degraded"] = json!(self.cfg.degraded);
            if let Value::Object(admitted) = &self.cfg.admitted {
                for (k, v) in admitted {
                    p[k] = v.clone();
                }
            }
        }
        if let Some(r) = reason {
            p["reason"] = r;
        }
        fx.to_agent.push(notification("plugin_state", p));
    }

    /// Announce the hooks registered since the last announcement, once for all of them: now, or
    /// at the end of the [`ANNOUNCE_INTERVAL`] that began with the last one.
    fn announce_hooks(&mut self, now: Instant, fx: &mut Effects) {
        if !self.hooks_unannounced || self.state != State::Ready {
            return;
        }
        match self.announced_at.map(|t| t + ANNOUNCE_INTERVAL) {
            Some(due) if due > now => {
                if !self.announce_armed {
                    self.announce_armed = true;
                    fx.timers.push((due, Timer::Announce));
                }
            }
            _ => {
                self.hooks_unannounced = false;
                self.announced_at = Some(now);
                self.report_state(fx, None);
            }
        }
    }

    fn send(&mut self, v: &Value) {
        self.outbound.extend_from_slice(&encode(v));
    }

    /// The most bytes the plugin's stdin queue may hold before an answer to its own call is
    /// queued: the calls' cap, the answers' allowance, and room for one frame of each.
    pub(super) fn unread_cap(&self) -> usize {
        MAX_OUTBOUND + MAX_UNREAD_ANSWERS + 2 * self.cfg.policy.protocol.max_frame_bytes
    }

    fn log(&self, fx: &mut Effects, level: &str, source: &str, message: String) {
        fx.to_agent.push(notification(
            "log",
            json!({"plugin": self.name(), "level": level, "source": source, "message": message}),
        ));
    }

    /// Answer an agent's call with an error, or with the hook's default when it fails open.
    fn fail(&self, fx: &mut Effects, agent_id: &Value, hook: &str, e: RpcError) {
        self.fail_as(fx, agent_id, hook, e, false);
    }

    /// [`Self::fail`], `invalid_answer` when the plugin answered and the runtime's check of a
    /// Sertone answer refused it: the bypass says so (`bypass.invalid_answer`), for the front's
    /// `bypass` audit record — never told by the words of its message.
    fn fail_as(
        &self,
        fx: &mut Effects,
        agent_id: &Value,
        hook: &str,
        e: RpcError,
        invalid_answer: bool,
    ) {
        // A plugin's own error answer is an answer, not a failure to bypass — except for a
        // Sertone hook, whose error or invalid answer the front bypasses like a crash (seed
        // 003), so an agent's call of it is answered the same way.
        let answered = e.code == codes::PLUGIN_ERROR && !sertone::is_sertone_hook(hook);
        // The mode of the hook, not of its section: a section without `failure` keeps the
        // hook's default (open for the Sertone hooks, seed 003).
        let bypass = self.cfg.policy.failure(hook) == FailureMode::Open
            && !answered
            && !matches!(e.code, codes::INVALID_PARAMS | codes::NOT_REGISTERED);
        if bypass {
            let default = self.cfg.policy.fail_open_default(hook);
            fx.to_agent.push(response_ok(agent_id, default));
            let mut by = json!({"hook": hook, "id": agent_id, "code": e.code,
                                "reason": codes::name(e.code), "message": e.message});
            if invalid_answer {
                by["invalid_answer"] = json!(true);
            }
            fx.to_agent.push(notification(
                "log",
                json!({"plugin": self.name(), "level": "warn", "source": "runtime",
                       "message": format!("hook `{hook}` bypassed (fail-open): {}", e.message),
                       "bypass": by}),
            ));
        } else {
            fx.to_agent.push(response_err(agent_id, &e));
        }
    }

    /// A plugin's answer to Sertone hook `hook` checked as the front checks it
    /// ([`sertone::check_answer`], under this plugin's fee rules): an invalid one is a
    /// `plugin_error` (bypassed when the hook fails open, [`Self::fail`]), never passed on — an
    /// agent's call of the hook got a fee above the operator's `max_fee_usdc` or to another
    /// address than the pinned one as the plugin wrote it. Other hooks' answers pass unlooked at.
    fn check_sertone_answer(&self, hook: &str, answer: &Value) -> Result<(), RpcError> {
        if !sertone::is_sertone_hook(hook) {
            return Ok(());
        }
        let rules = sertone::Rules::of(&self.cfg.policy, hook);
        sertone::check_answer(hook, answer, &rules)
            .map_err(|e| RpcError::new(codes::PLUGIN_ERROR, format!("invalid answer: {e}")))
    }

    /// An agent's `hook_invoke`.
    pub fn invoke(
        &mut self,
        agent_id: Value,
        call: msg::HookInvoke,
        now: Instant,
        fx: &mut Effects,
    ) {
        let deadline_ms = self.cfg.policy.deadline_ms(&call.hook, call.deadline_ms);
        let reject = |code, m: &str| RpcError::new(code, m.to_string());
        let err = match self.state {
            State::Ready if !self.hooks.contains(&call.hook) => Some(reject(
                codes::NOT_REGISTERED,
                "no plugin is registered for this hook",
            )),
            // Its stdout closed: it is exiting (reaped once stderr closes too); a call now
            // would never be answered nor time out once the handle is gone.
            _ if self.link_closed => Some(reject(codes::UNAVAILABLE, "the plugin is exiting")),
            State::Starting | State::Ready => None,
            _ => Some(reject(codes::UNAVAILABLE, "the plugin is not running")),
        };
        // `[hooks."<hook>"] cache_ttl_ms`: a call the plugin answered before (same payload)
        // is answered from the cache, needing nothing of the plugin, not even room in its queue.
        let ttl = self
            .cfg
            .policy
            .hooks
            .get(&call.hook)
            .and_then(|h| h.cache_ttl_ms);
        let cache = ttl.filter(|t| *t > 0 && err.is_none()).map(|t| {
            let m = self.cfg.manifest.manifest();
            let k = answer_cache::key(m.name.as_str(), &m.version, &call.hook, &call.payload);
            (k, ms(t))
        });
        if let Some(v) = cache.and_then(|(k, _)| self.answers.get(&k, now)) {
            self.cache_hits += 1;
            return fx.to_agent.push(response_ok(&agent_id, v));
        }
        let err = err.or_else(|| {
            (self.calls.len() >= self.cfg.policy.protocol.max_in_flight
                || self.outbound.len() > MAX_OUTBOUND)
                .then(|| reject(codes::OVERLOADED, "too many hook calls in flight"))
        });
        if let Some(e) = err {
            return self.fail(fx, &agent_id, &call.hook, e);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.calls.insert(
            id,
            Call {
                agent_id,
                hook: call.hook,
                payload: Some(call.payload),
                deadline_ms,
                due: now + ms(deadline_ms),
                cache,
            },
        );
        fx.timers.push((now + ms(deadline_ms), Timer::Call(id)));
        self.backlog.push_back(id);
        if self.state == State::Ready {
            self.dispatch(fx);
        }
    }

    /// Send queued calls (those that arrived before the handshake, in order).
    fn dispatch(&mut self, fx: &mut Effects) {
        while let Some(id) = self.backlog.pop_front() {
            let Some(c) = self.calls.get_mut(&id) else {
                continue; // already timed out
            };
            let Some(payload) = c.payload.take() else {
                continue;
            };
            if !self.hooks.contains(&c.hook) {
                let c = self.calls.remove(&id).expect("present");
                let e = RpcError::new(
                    codes::NOT_REGISTERED,
                    "no plugin is registered for this hook",
                );
                self.fail(fx, &c.agent_id, &c.hook, e);
                continue;
            }
            let v = msg::request(
                &json!(id),
                "hook_invoke",
                json!({"hook": c.hook, "payload": payload, "deadline_ms": c.deadline_ms}),
            );
            self.send(&v);
        }
    }

    /// Bytes read from the plugin's stdout.
    pub fn on_stdout(&mut self, data: &[u8], now: Instant, fx: &mut Effects) {
        if self.state.is_gone() {
            return;
        }
        let mut frames = Vec::new();
        // A newline in this read ended the frame that was open before it: whatever is open
        // now started in this read.
        let frame_ended = data.contains(&b'\n');
        self.decoder.feed(data, &mut frames);
        for f in frames {
            if self.state.is_gone() {
                return;
            }
            match f {
                Ok(line) => match Message::parse(&line) {
                    Ok(m) => self.on_message(m, now, fx),
                    Err(e) => {
                        let what = format!(
                            "stdout is not a protocol message: {e} (the line began `{}`); stdout \
                             carries only JSON-RPC messages, one per line: write logs and other \
                             output to stderr, which the runtime forwards as `log` lines",
                            excerpt(line.as_bytes())
                        );
                        self.terminate(fx, codes::VIOLATION, "garbage", what);
                    }
                },
                Err(e) => self.terminate(fx, codes::VIOLATION, "frame", e.to_string()),
            }
        }
        if self.state.is_gone() {
            return;
        }
        self.announce_hooks(now, fx);
        // The slow-frame clock times the frame open now, from its first byte (this read's time):
        // a plugin streaming frames whose reads end mid-line completes each in time. One timer
        // runs while frames are open; it re-arms itself for a frame started after it was set.
        match (self.decoder.in_frame(), self.frame_since) {
            (true, None) => {
                self.frame_since = Some(now);
                let t = self.cfg.policy.protocol.frame_timeout_ms;
                fx.timers.push((now + ms(t), Timer::Frame));
            }
            (true, Some(_)) if frame_ended => self.frame_since = Some(now),
            (false, _) => self.frame_since = None,
            _ => {}
        }
    }

    fn on_message(&mut self, m: Message, now: Instant, fx: &mut Effects) {
        // Only the first message after a shutdown sent while starting may be that handshake.
        let late_handshake = std::mem::take(&mut self.shut_before_handshake);
        match (self.state, m) {
            (
                State::Starting,
                Message::Request {
                    id,
                    method,
                    params: p,
                },
            ) if method == "handshake" => self.handshake(id, &p, now, fx),
            (State::Starting, m) => {
                let got = match m {
                    Message::Request { method, .. } => {
                        format!("a request for `{}`", excerpt(method.as_bytes()))
                    }
                    Message::Notification { method, .. } => format!(
                        "a notification `{}` (a `handshake` needs an `id`)",
                        excerpt(method.as_bytes())
                    ),
                    Message::Response { .. } => "a response".into(),
                };
                let what = format!("the first message must be a `handshake` request, not {got}");
                self.terminate(fx, codes::VIOLATION, "handshake", what)
            }
            (State::Stopping, Message::Request { method, .. })
                if method == "handshake" && late_handshake => {}
            (_, Message::Response { id, outcome }) => self.on_response(id, outcome, now, fx),
            (
                _,
                Message::Request {
                    id,
                    method,
                    params: p,
                },
            ) => self.host_call(Some(id), &method, &p, now, fx),
            (_, Message::Notification { method, params: p }) => {
                self.host_call(None, &method, &p, now, fx)
            }
        }
    }

    fn handshake(&mut self, id: Value, p: &Value, now: Instant, fx: &mut Effects) {
        let h: msg::Handshake = match params(p) {
            Ok(h) => h,
            Err(e) => return self.terminate(fx, codes::VIOLATION, "handshake", e.message),
        };
        let asked = match check_handshake(&self.cfg.manifest, &h) {
            Ok(c) => c,
            Err(e) => return self.terminate(fx, codes::VIOLATION, "handshake", e.to_string()),
        };
        self.granted = grant(
            &asked,
            &self.cfg.ceiling,
            self.cfg.policy.capabilities.allow.as_ref(),
        );
        self.asked = asked;
        // The handshake's hooks are registered at once when `register_hook` is granted.
        if self.granted.contains(&Capability::RegisterHook) {
            self.hooks = h.hooks.into_iter().collect();
        }
        let pr = &self.cfg.policy.protocol;
        let reply = json!({
            "granted": self.granted,
            "hooks": self.hooks,
            "limits": {"max_frame_bytes": pr.max_frame_bytes, "max_events_per_sec": pr.max_events_per_sec},
        });
        self.send(&response_ok(&id, reply));
        self.state = State::Ready;
        self.report_state(fx, None);
        if let Some(h) = self.cfg.health {
            fx.timers.push((now + h.interval, Timer::Ping));
        }
        self.dispatch(fx);
    }

    fn on_response(
        &mut self,
        id: Value,
        outcome: Result<Value, RpcError>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let n = id.as_u64().unwrap_or(0);
        if n > 0 && self.ping == Some(n) {
            // Any answer, even an error, shows the plugin's loop is alive.
            self.ping = None;
            return;
        }
        match self.calls.get(&n) {
            Some(c) if c.payload.is_none() => {
                let depth = match &outcome {
                    Ok(r) => nesting(r),
                    Err(e) => 1 + e.data.as_ref().map_or(0, nesting),
                };
                if depth > MAX_ANSWER_DEPTH {
                    let why = format!(
                        "its answer to a hook call nests {depth} levels, more than the \
                         {MAX_ANSWER_DEPTH} an answer may"
                    );
                    return self.terminate(fx, codes::VIOLATION, "too_deep", why);
                }
                let c = self.calls.remove(&n).expect("present");
                if now > c.due {
                    // Its deadline timer is still queued behind this turn's input: the agent
                    // was promised an answer by the deadline, and gets the deadline's.
                    self.late += 1;
                    let e = RpcError::new(
                        codes::DEADLINE_EXCEEDED,
                        format!("no answer within {} ms", c.deadline_ms),
                    );
                    return self.fail(fx, &c.agent_id, &c.hook, e);
                }
                match outcome {
                    Ok(r) => {
                        if let Err(e) = self.check_sertone_answer(&c.hook, &r) {
                            return self.fail_as(fx, &c.agent_id, &c.hook, e, true);
                        }
                        if let Some((k, ttl)) = c.cache {
                            self.answers.put(k, &r, now, now + ttl);
                        }
                        fx.to_agent.push(response_ok(&c.agent_id, r));
                    }
                    Err(e) => {
                        let e =
                            RpcError::new(codes::PLUGIN_ERROR, "the plugin answered with an error")
                                .with_data(json!({"plugin_error": e}));
                        self.fail(fx, &c.agent_id, &c.hook, e);
                    }
                }
            }
            // An answer to a call we already gave up on (deadline): dropped, never delivered.
            _ if n > 0 && n < self.next_id => self.late += 1,
            _ => self.terminate(
                fx,
                codes::VIOLATION,
                "response",
                format!("response to id {id}, which the runtime never sent"),
            ),
        }
    }

    /// The plugin's stdout reached EOF: it exited, or closed the link (which ends it too). Its
    /// calls fail at once; the process is reaped once it has ended by itself after its stderr
    /// closed as well (so its own exit status is kept and its last lines are forwarded), or
    /// killed if it lingers past [`LINGER`]. Nothing here waits: see [`Child::has_exited`].
    pub fn on_stdout_eof(&mut self, now: Instant, fx: &mut Effects) {
        if self.state.is_gone() || self.link_closed {
            return;
        }
        self.link_closed = true;
        self.linger_until = Some(now + LINGER);
        if self.decoder.in_frame() {
            self.log(
                fx,
                "warn",
                "runtime",
                "stdout ended inside a frame (no newline)".into(),
            );
        }
        let (code, why) = if self.state == State::Stopping {
            (codes::UNAVAILABLE, "the plugin stopped")
        } else {
            (codes::PLUGIN_CRASHED, "the plugin exited before answering")
        };
        self.fail_all(fx, code, why);
        if self.stderr_open {
            fx.timers.push((now + LINGER, Timer::Reap));
        } else {
            self.try_reap(now, fx);
        }
    }

    /// The plugin's stderr reached EOF.
    pub fn on_stderr_eof(&mut self, now: Instant, fx: &mut Effects) {
        if !self.stderr_line.is_empty() {
            let line = std::mem::take(&mut self.stderr_line);
            self.stderr_out(line, fx);
        }
        self.stderr_open = false;
        if self.link_closed && !self.state.is_gone() {
            self.try_reap(now, fx);
        }
    }

    /// Its stdio is closed: reap it if it has ended, kill it if it lingered too long, else look
    /// again a little later.
    fn try_reap(&mut self, now: Instant, fx: &mut Effects) {
        let ended = self.child.as_mut().is_none_or(|c| c.has_exited());
        let deadline = self.linger_until.unwrap_or(now);
        if ended || now >= deadline {
            if !ended {
                let t = LINGER.as_millis();
                let m = format!("closed its stdout but did not exit within {t} ms; killed");
                self.log(fx, "warn", "runtime", m);
            }
            return self.exited(!ended, fx);
        }
        let next = (now + self.reap_poll).min(deadline);
        self.reap_poll = (self.reap_poll * 2).min(REAP_POLL.1);
        fx.timers.push((next, Timer::Reap));
    }

    fn exited(&mut self, kill: bool, fx: &mut Effects) {
        let stopping = self.state == State::Stopping;
        // Nothing may stay pending on a gone plugin (its timers are dropped with it).
        self.fail_all(fx, codes::UNAVAILABLE, "the plugin exited");
        self.state = State::Exited;
        let report = self.reap(kill, fx);
        let kind = if stopping { "shutdown" } else { "exited" };
        let mut reason = json!({"kind": kind, "sandbox": report});
        // What ended it, in words (the seccomp filter, the OOM killer, a limit): a SIGKILL of
        // the runtime's own (it lingered) is said by the warning logged above, not here.
        if let Some(m) = (!kill).then(|| ending_of(&reason["sandbox"])).flatten() {
            reason["message"] = json!(m);
        }
        self.report_state(fx, Some(reason));
    }

    /// Bytes from the plugin's stderr: forwarded as `log` lines, size- and rate-capped.
    pub fn on_stderr(&mut self, data: &[u8], fx: &mut Effects) {
        self.stderr_read += data.len() as u64;
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut self.stderr_line);
                self.stderr_out(line, fx);
            } else if self.stderr_line.len() < MAX_STDERR_LINE {
                self.stderr_line.push(b);
            }
        }
    }

    /// Bytes read from the plugin's stderr so far, forwarded or not.
    pub fn stderr_read(&self) -> u64 {
        self.stderr_read
    }

    /// Whether the plugin has written more than `max_stderr_bytes` to its stderr: nothing more
    /// of it is forwarded (or ever will be, once that much was forwarded), so the supervisor
    /// reads the rest slowly (`supervisor::STDERR_THROTTLE`) instead of as fast as the plugin
    /// writes. Counted in bytes read, not in lines forwarded: a flood without a newline
    /// forwards nothing and must be throttled all the same.
    pub fn stderr_throttled(&self) -> bool {
        self.stderr_capped || self.stderr_read > self.cfg.policy.protocol.max_stderr_bytes as u64
    }

    fn stderr_out(&mut self, line: Vec<u8>, fx: &mut Effects) {
        self.stderr_bytes += line.len() + 1;
        let cap = self.cfg.policy.protocol.max_stderr_bytes;
        if self.stderr_bytes > cap || self.tokens == 0 {
            if self.stderr_bytes > cap && !self.stderr_capped {
                self.stderr_capped = true;
                self.log(
                    fx,
                    "warn",
                    "runtime",
                    format!("stderr exceeded {cap} bytes; the rest is dropped"),
                );
            }
            // Past the cap the one warning above says it all; only the rate limit is counted.
            if self.stderr_bytes <= cap {
                self.dropped += 1;
            }
            return;
        }
        self.tokens -= 1;
        self.log(
            fx,
            "info",
            "stderr",
            String::from_utf8_lossy(&line).into_owned(),
        );
    }

    /// A timer fired.
    pub fn on_timer(&mut self, t: Timer, now: Instant, fx: &mut Effects) {
        match t {
            Timer::Handshake if self.state == State::Starting => {
                // Whatever the plugin wrote so far is an unfinished line, or nothing: a
                // handshake written but never flushed (stdio buffers a pipe) never left it.
                let seen = if self.decoder.in_frame() {
                    "its stdout has an unfinished line: end the handshake with a newline"
                } else {
                    "nothing came on its stdout: a handshake written but not flushed stays in \
                     the plugin's buffer (Python, C stdio buffer a pipe), flush after each line"
                };
                let t = self.cfg.policy.protocol.handshake_timeout_ms;
                let what = format!("no handshake within the deadline ({t} ms); {seen}");
                self.terminate(fx, codes::VIOLATION, "handshake_timeout", what)
            }
            Timer::Call(id) => {
                let Some(c) = self.calls.remove(&id) else {
                    return;
                };
                if c.payload.is_none() && !self.state.is_gone() {
                    self.send(&notification("$/cancel", json!({"id": id})));
                }
                let e = RpcError::new(
                    codes::DEADLINE_EXCEEDED,
                    format!("no answer within {} ms", c.deadline_ms),
                );
                self.fail(fx, &c.agent_id, &c.hook, e);
            }
            Timer::Frame => {
                let limit = ms(self.cfg.policy.protocol.frame_timeout_ms);
                match self.frame_since {
                    Some(_) if self.state.is_gone() => {}
                    Some(since) if now.duration_since(since) >= limit => {
                        self.terminate(
                            fx,
                            codes::VIOLATION,
                            "slow_frame",
                            "a frame was not completed in time".into(),
                        );
                    }
                    // A frame begun after this timer was set: its own deadline.
                    Some(since) => fx.timers.push((since + limit, Timer::Frame)),
                    None => {}
                }
            }
            Timer::Reap if self.link_closed && !self.state.is_gone() => self.try_reap(now, fx),
            Timer::Ping if self.state == State::Ready => {
                let Some(h) = self.cfg.health else { return };
                if self.ping.is_none() {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.ping = Some(id);
                    self.send(&msg::request(&json!(id), "ping", json!({})));
                    fx.timers.push((now + h.timeout, Timer::PingDeadline(id)));
                }
                fx.timers.push((now + h.interval, Timer::Ping));
            }
            Timer::PingDeadline(id) if self.ping == Some(id) && self.state == State::Ready => {
                let t = self.cfg.health.map_or(0, |h| h.timeout.as_millis());
                self.terminate(
                    fx,
                    codes::UNAVAILABLE,
                    "hung",
                    format!("no answer to a health ping within {t} ms"),
                );
            }
            Timer::Grace if self.state == State::Stopping => {
                self.log(
                    fx,
                    "warn",
                    "runtime",
                    "did not exit within the shutdown grace period; killed".into(),
                );
                self.terminate(
                    fx,
                    codes::UNAVAILABLE,
                    "shutdown_timeout",
                    "killed after the grace period".into(),
                );
            }
            Timer::Announce => {
                self.announce_armed = false;
                self.announce_hooks(now, fx);
            }
            Timer::Tick if !self.state.is_gone() => {
                self.flush_counters(fx);
                self.tokens = self.cfg.policy.protocol.max_events_per_sec;
                fx.timers.push((now + Duration::from_secs(1), Timer::Tick));
            }
            _ => {}
        }
    }

    /// Graceful stop: `shutdown` notification, close stdin, kill after the grace period.
    pub fn shutdown(&mut self, now: Instant, fx: &mut Effects) {
        if !matches!(self.state, State::Starting | State::Ready) {
            return;
        }
        self.shut_before_handshake = self.state == State::Starting;
        self.fail_all(fx, codes::UNAVAILABLE, "the plugin is shutting down");
        self.send(&notification("shutdown", json!({})));
        self.close_stdin = true;
        self.state = State::Stopping;
        self.report_state(fx, None);
        let g = self.cfg.policy.protocol.shutdown_grace_ms;
        fx.timers.push((now + ms(g), Timer::Grace));
    }

    /// Kill the plugin for `why` and fail its calls with `code`.
    fn terminate(&mut self, fx: &mut Effects, code: i64, kind: &str, why: String) {
        if self.state.is_gone() {
            return;
        }
        self.state = State::Terminated;
        let report = self.reap(true, fx);
        self.fail_all(fx, code, &why);
        self.log(fx, "error", "runtime", format!("plugin terminated: {why}"));
        self.report_state(
            fx,
            Some(json!({"kind": kind, "code": code, "message": why, "sandbox": report})),
        );
    }

    /// Report what was dropped since the last report.
    fn flush_counters(&mut self, fx: &mut Effects) {
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            self.log(
                fx,
                "warn",
                "runtime",
                format!("{n} log/event messages dropped (rate limit)"),
            );
        }
        if self.late > 0 {
            let n = std::mem::take(&mut self.late);
            self.log(fx, "debug", "runtime", format!("{n} late answers dropped"));
        }
        if self.cache_hits > 0 {
            let n = std::mem::take(&mut self.cache_hits);
            let m = format!("{n} hook calls answered from the cache (cache_ttl_ms)");
            self.log(fx, "debug", "runtime", m);
        }
    }

    fn reap(&mut self, kill: bool, fx: &mut Effects) -> Value {
        self.outbound.clear();
        self.close_stdin = true;
        // Runs on every way out (exit, termination), so drops are never left unreported.
        self.flush_counters(fx);
        match self.child.take() {
            Some(c) => {
                let report = if kill {
                    kill_and_reap(c, self.cfg.manifest.name(), &mut fx.stuck)
                } else {
                    c.wait()
                };
                self.exit_status = report["exit"]["status"]
                    .as_i64()
                    .and_then(|s| i32::try_from(s).ok());
                report
            }
            None => Value::Null,
        }
    }

    fn fail_all(&mut self, fx: &mut Effects, code: i64, why: &str) {
        self.backlog.clear();
        for (_, c) in std::mem::take(&mut self.calls) {
            self.fail(
                fx,
                &c.agent_id,
                &c.hook,
                RpcError::new(code, why.to_string()),
            );
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[path = "plugin_host_api.rs"]
mod host_api;

#[cfg(test)]
#[path = "plugin_tests.rs"]
mod tests;
