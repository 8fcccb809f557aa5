//! `stockade serve`'s event loop: many agent connections on a Unix socket, many plugins, one
//! [`mio::Poll`] (the [`Supervisor`]'s), one thread.
//!
//! Each turn: accept (peer credentials checked against the allowlist, then the connection
//! limits: [`super::admit`]), read agent requests
//! (bounded per connection), move plugin bytes ([`Supervisor`]), fire timers, route what the
//! plugins said ([`Daemon::route`]: fan-out answers to their aggregate, notifications to every
//! connection), supervise ([`super::fleet`]: restarts, quarantine, load/unload completion), then
//! write to the connections without ever blocking ([`super::conn`]).
//!
//! Fan-out: `hook_invoke` goes to every plugin registered for the hook; each plugin's call gets
//! its own runtime-internal id (a number in [`Daemon::calls`]) so the [`super::plugin`] state
//! machine is the same as under `run`, and its one answer per call lands in one slot of the
//! aggregate. The aggregate is answered once every slot is filled; every plugin call ends by the
//! (same) deadline at the latest, so the whole fan-out does too.

use super::admit::{admit, Limits, Refusal, RefusalLog};
use super::conn::{Closed, Conn, ReadOutcome, FRAME_BUDGET, READ_BUDGET};
use super::fleet::Entry;
use super::supervisor::Supervisor;
use crate::audit::AuditLog;
use crate::node::NodeIdentity;
use crate::output::{term, term_text};
use crate::policyfiles::PolicySource;
use crate::sys::sock::{peer_cred, PeerCred};
use crate::trustdir::TrustConfig;
use mio::net::UnixListener;
use mio::{Events, Interest, Token};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;
use stockade_policy::capability::Capability;
use stockade_policy::operator::MergedPolicy;
use stockade_policy::protocol::frame::{encode, Frame};
use stockade_policy::protocol::host::FailureMode;
use stockade_policy::protocol::message::{
    codes, from_frame, no_params, params, response_err, response_ok, HookInvoke, Message, RpcError,
};
use stockade_policy::serve::{ServeConfig, SplitMix64};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// The daemon's stderr became writable: what its log queue holds goes out (`logqueue`).
const STDERR: Token = Token(3);
/// Connection tokens live far above the plugins' (which grow by 3 per launch).
const CONN_BASE: usize = 1 << 40;

/// Everything the daemon is configured with.
pub struct DaemonConfig {
    /// The serve config.
    pub serve: ServeConfig,
    /// The operator policy (merged layers, or one `--policy` file); each plugin's effective
    /// policy is computed from it at every launch, as under `run`.
    pub policy: MergedPolicy,
    /// Where the policy came from (read again on SIGHUP).
    pub policy_source: PolicySource,
    /// The policy directories the policy in force was read without, this user unable to read
    /// them ([`crate::policyfiles::LoadedPolicy::skipped`]): a reload that leaves out another is
    /// refused ([`Daemon::reload_policy`]).
    pub policy_skipped: Vec<PathBuf>,
    /// The policy root (grants are read under it unless `trust.grants` says otherwise).
    pub policy_root: PathBuf,
    /// `--allow-capability`, narrowing every plugin's capabilities.
    pub allow_flags: Option<BTreeSet<Capability>>,
    /// The audit sinks of the policy's `[audit]`.
    pub audit: AuditLog,
    /// That `[audit]` as read at start: the sinks stay so until the daemon restarts, and a
    /// SIGHUP whose policy says otherwise says so ([`Daemon::reload_policy`]).
    pub audit_section: stockade_policy::operator::AuditSection,
    /// Frame cap for agent connections (the policy's default `protocol.max_frame_bytes`).
    pub max_frame_bytes: usize,
    /// Trust configuration for verification: as read at start, then as read again by the last
    /// load, restart or SIGHUP ([`Daemon::reread_trust`]); its state directory never changes.
    pub trust: TrustConfig,
    /// The trust flags, from which `trust` is read again (with the `[trust]` of the policy in
    /// force).
    pub trust_args: crate::cli::TrustArgs,
    /// This node.
    pub node: NodeIdentity,
}

/// One `hook_invoke` being fanned out.
pub(crate) struct FanOut {
    conn: usize,
    id: Value,
    hook: String,
    names: Vec<String>,
    results: Vec<Option<Value>>,
    pending: usize,
    /// When the answer is due whatever the plugins do (the Sertone front's deadline).
    deadline: Option<Instant>,
}

/// The daemon.
pub struct Daemon {
    pub(crate) sup: Supervisor,
    pub(crate) cfg: DaemonConfig,
    listener: Option<UnixListener>,
    sigfd: OwnedFd,
    conns: BTreeMap<usize, Conn>,
    /// Open connections per peer uid (kept with `conns`, for the per-uid limit).
    conns_of_uid: HashMap<u32, usize>,
    /// Refusals at accept, logged at most once per interval and reason.
    refusals: RefusalLog,
    next_conn: usize,
    hot: Vec<usize>,
    pub(crate) plugins: BTreeMap<String, Entry>,
    /// While an agent's `plugin_load` is handled, that agent's uid: every record the load
    /// writes (verification, grant, denial, launch) names it as `detail.agent_uid`.
    pub(crate) load_agent: Option<u32>,
    /// Hook → the plugins whose ready incarnation registered it (each entry's `hooks`,
    /// inverted): a `hook_invoke` looks its targets up here instead of scanning every loaded
    /// plugin (that scan was most of the 1,000-plugin round trip's growth).
    hook_index: BTreeMap<String, BTreeSet<String>>,
    /// Runtime-internal call id → (fan-out id, result slot).
    calls: HashMap<u64, (u64, usize)>,
    next_call: u64,
    fanouts: HashMap<u64, FanOut>,
    next_fanout: u64,
    /// Hooks failing open, per (plugin, hook): their `bypass` audit records ([`super::bypass`]).
    pub(crate) bypasses: super::bypass::Ledger,
    pub(crate) rng: SplitMix64,
    pub(crate) stopping: bool,
    own_uid: u32,
    /// Connections dropped because their agent stopped reading.
    pub dropped_slow: u64,
    pub(crate) started: Instant,
    /// Bumped by every policy reload: a launch decision kept by the warm pool is reused only
    /// under the generation it was computed in.
    pub(crate) policy_generation: u64,
    /// The Sertone HTTP front (`--sertone-listen`), if configured.
    pub(crate) front: Option<super::sertone::Front>,
    /// Crash-loop quarantines recorded in the state directory (they outlive the daemon).
    pub(crate) quarantines: super::quarantine::Quarantines,
    /// When the trust configuration was last read by the periodic check
    /// (`[health] trust_check_interval_ms`, [`Daemon::check_trust_now`]).
    pub(crate) trust_checked: Instant,
    /// [`Daemon::next_expiry`]'s last answer (Unix seconds), `None` once something may have made
    /// it earlier (a load or launch setting an expiry, [`Daemon::check_expiries`]): the loop asks
    /// for it twice a turn, and a scan of every plugin at every turn put O(plugins) work on the
    /// hook path of a 1000-plugin daemon. Anything else only makes the true answer later, so a
    /// stale one is early: a wake-up that finds nothing due, whose check recomputes it.
    pub(crate) expiry_cache: std::cell::Cell<Option<Option<u64>>>,
    /// What the periodic check last found unusable (said once, not at every check).
    pub(crate) trust_check_said: Option<String>,
    /// What the grant decisions of the running granted plugins read, as the periodic check last
    /// decided them again (policy generation, plugins, files' metadata): unchanged, they are
    /// not decided again (`Daemon::check_grants_now`).
    pub(crate) grants_seen: Option<(u64, Vec<String>, Vec<String>)>,
    /// What the store check last looked at (`Daemon::check_store_now`): unchanged, the
    /// registry is not read again.
    pub(crate) store_seen: Option<super::fleet::StoreSeen>,
    /// Why the store check last found the store unreadable (said once, not at every check).
    pub(crate) store_check_said: Option<String>,
}

fn err(code: i64, m: impl Into<String>) -> RpcError {
    RpcError::new(code, m.into())
}

/// One stderr line (the daemon's log; systemd's journal takes it from there), written with one
/// `write` ([`crate::output::print_stderr`]): `eprintln!` writes the prefix, the message and the
/// newline separately (stderr is unbuffered), which is three wake-ups of the journal's reader
/// per line and lets another writer's bytes land inside a line — and it panics, so aborts the
/// daemon, when stderr cannot be written. Under `serve` the line is queued, never waited for
/// ([`crate::logqueue`]): a supervisor that stopped reading the daemon's stderr stalls nothing.
///
/// Lines carry plugin names, what plugins said (a handshake's name, a refusal's message),
/// paths and errors: each caller escapes those with [`term`] where it formats them, so that
/// none can start a line of its own (a forged `stockade serve: plugin x: ready`) or act on a
/// terminal; the whole line goes through [`term_text`] as well, the backstop `Output::emit`
/// has, for a string a caller missed.
pub(crate) fn log_line(s: &str) {
    crate::output::print_stderr(&format!("stockade serve: {}", term_text(s)));
}

impl Daemon {
    /// A daemon serving on `listener`, stopping on the signals read from `sigfd`, honouring the
    /// quarantines an earlier daemon recorded.
    pub fn new(
        cfg: DaemonConfig,
        quarantines: super::quarantine::Quarantines,
        listener: std::os::unix::net::UnixListener,
        sigfd: OwnedFd,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        let sup = Supervisor::new()?;
        sup.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        sup.registry().register(
            &mut mio::unix::SourceFd(&sigfd.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        if crate::logqueue::watched() {
            let fd = std::io::stderr().as_fd().as_raw_fd();
            let watch =
                sup.registry()
                    .register(&mut mio::unix::SourceFd(&fd), STDERR, Interest::WRITABLE);
            // Not watchable: written directly, as before (blocking).
            if watch.is_err() {
                crate::logqueue::uninstall();
            }
        }
        let mut seed = [0u8; 8];
        // Jitter only needs spread; a clock-derived seed will do if the OS has no entropy.
        if getrandom::getrandom(&mut seed).is_err() {
            seed = u64::from(std::process::id()).to_ne_bytes();
        }
        Ok(Self {
            sup,
            cfg,
            listener: Some(listener),
            sigfd,
            conns: BTreeMap::new(),
            conns_of_uid: HashMap::new(),
            refusals: RefusalLog::default(),
            next_conn: CONN_BASE,
            hot: Vec::new(),
            plugins: BTreeMap::new(),
            load_agent: None,
            hook_index: BTreeMap::new(),
            calls: HashMap::new(),
            next_call: 1,
            fanouts: HashMap::new(),
            next_fanout: 1,
            bypasses: super::bypass::Ledger::default(),
            rng: SplitMix64::new(u64::from_ne_bytes(seed)),
            stopping: false,
            own_uid: crate::sys::ids().0,
            dropped_slow: 0,
            started: Instant::now(),
            policy_generation: 0,
            front: None,
            quarantines,
            trust_checked: Instant::now(),
            expiry_cache: std::cell::Cell::new(None),
            trust_check_said: None,
            grants_seen: None,
            store_seen: None,
            store_check_said: None,
        })
    }

    /// Serve the Sertone HTTP front too (host/sertone.rs).
    pub fn set_front(&mut self, mut front: super::sertone::Front) -> std::io::Result<()> {
        front.register(self.sup.registry())?;
        self.front = Some(front);
        Ok(())
    }

    /// The earliest fan-out deadline (the front's answers are due then).
    fn next_fanout_deadline(&self) -> Option<Instant> {
        self.fanouts.values().filter_map(|f| f.deadline).min()
    }

    /// Answer every fan-out whose deadline passed with what it has; the silent plugins are
    /// bypassed. Their late answers find no fan-out and are dropped.
    fn expire_fanouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .fanouts
            .iter()
            .filter(|(_, f)| f.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for fid in due {
            self.finish(fid);
        }
    }

    /// Serve until a stop signal, then stop every plugin gracefully.
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            self.route();
            self.supervise(now);
            self.route();
            self.flush_conns();
            if self.stopping && self.sup.all_gone() {
                break;
            }
            let mut timeout = self.sup.next_timeout(Instant::now());
            if let Some(at) = self.next_fanout_deadline() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self.conns.values().filter_map(Conn::stall_deadline).min() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self.next_restart() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self.next_expiry() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self.next_trust_check() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self.refusals.next_due() {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(at) = self
                .front
                .as_ref()
                .and_then(super::sertone::Front::next_due)
            {
                let d = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if !self.hot.is_empty() || self.front.as_ref().is_some_and(|f| !f.hot.is_empty()) {
                timeout = Some(std::time::Duration::ZERO);
            }
            if self.sup.poll(&mut events, timeout).is_err() {
                break;
            }
            let now = Instant::now();
            // Connections left over from the last turn; those this turn's reads leave over wait
            // for the next one (each is served once a turn).
            let hot = std::mem::take(&mut self.hot);
            let front_hot = self
                .front
                .as_mut()
                .map(|f| std::mem::take(&mut f.hot))
                .unwrap_or_default();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    STDERR => crate::logqueue::drain(),
                    super::sertone::LISTENER => self.sertone_accept(),
                    t if t.0 >= super::sertone::HTTP_BASE => self.sertone_event(t.0, now),
                    SIGNALS => {
                        let mut stop = false;
                        while let Ok(Some(from)) =
                            crate::sys::read_signalfd_from(self.sigfd.as_fd())
                        {
                            let sig = from.signo;
                            if sig == libc::SIGHUP {
                                self.reload_policy(now, from);
                            } else {
                                log_line(&format!("signal {sig}: stopping every plugin"));
                                stop = true;
                            }
                        }
                        if stop {
                            self.stop(now);
                        }
                    }
                    t if t.0 >= CONN_BASE => {
                        if ev.is_readable() || ev.is_read_closed() {
                            self.read_conn(t.0, &mut buf, now);
                        }
                        if let Some(c) = self.conns.get_mut(&t.0) {
                            c.flush();
                        }
                    }
                    // Each plugin read stamped with its own time, not the turn's: an answer taken
                    // in after its deadline (the turn was long: another plugin's work) is the
                    // deadline's, never a late success (`PluginHandle::on_response`).
                    t if self.sup.owns(t) => self.sup.ready(t, Instant::now()),
                    _ => {}
                }
            }
            for t in hot {
                self.read_conn(t, &mut buf, now);
            }
            for t in front_hot {
                self.sertone_event(t, now);
            }
            self.sup.serve_hot(Instant::now());
            self.sup.fire_timers(Instant::now());
            if self.next_expiry().is_some_and(|at| at <= Instant::now()) {
                self.check_expiries(Instant::now());
            }
            if self
                .next_trust_check()
                .is_some_and(|at| at <= Instant::now())
            {
                self.check_trust_now(Instant::now());
            }
            self.route();
            self.expire_fanouts(Instant::now());
            self.log_held_refusals(Instant::now());
            self.sertone_timers(Instant::now());
            crate::logqueue::drain();
        }
        self.route();
        self.flush_conns();
        // Calls let through since their hook's last record: counted before the daemon ends.
        let recs = self.bypasses.gone(None, super::bypass::Gone::Stopped);
        self.audit_bypasses(recs);
    }

    /// Write `bypass` records. One that cannot be written does not hold anything up — its call
    /// already failed open, by policy — and is said in the daemon's log instead
    /// (docs/audit.md "Configuration changes and bypassed guards").
    pub(crate) fn audit_bypasses(&self, recs: Vec<crate::audit::Record>) {
        self.audit_bypasses_of(recs, None);
    }

    /// [`Daemon::audit_bypasses`], each record naming the incarnation whose hook was bypassed
    /// (`version`, `package_sha256`, `signer_chain`, `policy_sha256`, `layers`, as its other
    /// records do): `gone`'s, for a plugin already taken out of the fleet, else the loaded one's.
    pub(crate) fn audit_bypasses_of(
        &self,
        recs: Vec<crate::audit::Record>,
        gone: Option<&crate::audit::Record>,
    ) {
        for mut rec in recs {
            let base = gone.or_else(|| {
                rec.plugin
                    .as_deref()
                    .and_then(|p| self.plugin_audit_base(p))
            });
            if let Some(b) = base {
                rec.version.clone_from(&b.version);
                rec.package_sha256.clone_from(&b.package_sha256);
                rec.signer_chain.clone_from(&b.signer_chain);
                rec.policy_sha256.clone_from(&b.policy_sha256);
                rec.layers.clone_from(&b.layers);
                // It names the base's `signer_chain`, and what the base says of it.
                if let Some(d) = rec.detail.as_object_mut() {
                    crate::audit::keep_signature_status(b, d);
                }
            }
            let what = format!(
                "plugin {} hook {}: {} ({} call(s) let through)",
                rec.plugin.as_deref().unwrap_or(""),
                rec.detail["hook"].as_str().unwrap_or(""),
                rec.outcome,
                rec.detail["bypassed_calls"]
            );
            if let Err(e) = crate::audit::append_or_fail(&self.cfg.audit, rec) {
                log_line(&format!(
                    "bypass audit record not written: {}: {}",
                    term(&what),
                    term(&e.to_string())
                ));
            }
        }
    }

    /// The refusals not logged in an interval that has ended, one line per reason.
    fn log_held_refusals(&mut self, now: Instant) {
        for (why, n) in self.refusals.due(now) {
            log_line(&format!(
                "{n} more connection(s) refused ({}) in the last {} s, not logged one by one",
                why.message(),
                super::admit::REFUSAL_LOG_INTERVAL.as_secs()
            ));
        }
    }

    /// SIGHUP: read the policy again. A valid one applies to every later launch (loads and
    /// restarts; running plugins keep theirs until they restart); an invalid or unreadable one
    /// is reported and the one in force is kept. Then the trust configuration is read again
    /// and every loaded plugin checked against it ([`Daemon::recheck_loaded`]). The audit sinks
    /// and the connections' frame cap stay as read at start; a reload that changes either says
    /// so (a log warning, the record's `detail.not_applied`).
    ///
    /// A reload that leaves out a policy directory the policy in force was read with — this
    /// user can no longer read it (a `chmod 0700` of `policy.d`, a directory above it made
    /// another's) — is refused too: its layers would silently drop out of every later restart,
    /// which is how a directory that only restricts would weaken every plugin's sandbox.
    ///
    /// Each reload, applied or refused, is a `configuration` record (`policy_reload`: the
    /// sender's uid and pid, the SHA-256 of the policy in force before and of the one read,
    /// the refusal's `kind` and `reason`); an applied one whose record cannot be written is not
    /// applied (docs/audit.md "Configuration changes and bypassed guards").
    fn reload_policy(&mut self, now: Instant, from: crate::sys::SignalFrom) {
        let fingerprint = |p: &stockade_policy::operator::MergedPolicy| {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                p.canonical_text().as_bytes(),
            ))
        };
        let mut rec = crate::audit::Record::new(crate::audit::Event::Configuration, "ok");
        rec.detail = json!({
            "change": "policy_reload", "uid": from.uid, "pid": from.pid,
            "policy_sha256_before": fingerprint(&self.cfg.policy),
            "policy_sha256_after": null,
        });
        let refused = |mut rec: crate::audit::Record, kind: &str, reason: &str| {
            rec.outcome = "refused".into();
            rec.detail["kind"] = kind.into();
            rec.detail["reason"] = reason.into();
            rec
        };
        match crate::policyfiles::load_noting(&self.cfg.policy_source) {
            Ok(l)
                if l.skipped
                    .iter()
                    .any(|d| !self.cfg.policy_skipped.contains(d)) =>
            {
                let lost: Vec<String> = l
                    .skipped
                    .iter()
                    .filter(|d| !self.cfg.policy_skipped.contains(d))
                    .map(|d| term(&d.display().to_string()).into_owned())
                    .collect();
                let why = format!(
                    "{} cannot be read by this user any longer, and its layers would be left out",
                    lost.join(", ")
                );
                log_line(&format!(
                    "SIGHUP: policy not reloaded, keeping the one in force: {why}; make it \
                     readable again, or restart the daemon to run without them"
                ));
                self.audit_reload(refused(rec, "policy_dir_unreadable", &why));
            }
            Ok(l) => {
                let p = l.policy;
                rec.detail["policy_sha256_after"] = fingerprint(&p).into();
                rec.detail["layers"] = json!(p.layers);
                // What a reload does not apply, said rather than left to look applied
                // (audit-145: an `[audit]` change was "policy reloaded" and nothing else).
                let unapplied = self.unapplied_at_reload(&p);
                if !unapplied.is_empty() {
                    let keys: Vec<&str> = unapplied.iter().map(|(key, _)| *key).collect();
                    rec.detail["not_applied"] = json!(keys);
                }
                if let Err(e) = crate::audit::append_or_fail(&self.cfg.audit, rec) {
                    log_line(&format!(
                        "SIGHUP: policy not reloaded, keeping the one in force: its audit record \
                         cannot be written: {}",
                        term(&e.chain().join(": "))
                    ));
                    self.recheck_loaded(now);
                    return;
                }
                log_line(&format!(
                    "SIGHUP: policy reloaded ({} layer(s)); it applies from the next launch or restart",
                    p.layers.len()
                ));
                for (key, stays) in &unapplied {
                    log_line(&format!(
                        "SIGHUP: warning: the reloaded policy changes `{key}`, which {stays}"
                    ));
                }
                self.cfg.policy = p;
                self.cfg.policy_skipped = l.skipped;
                self.policy_generation += 1;
                // A plugin none of whose incarnations runs answers by the policy in force now
                // (review-147): a hook it made fail closed lets nothing through from here.
                let names: Vec<String> = self.plugins.keys().cloned().collect();
                for name in names {
                    self.refresh_idle_hooks(&name);
                }
            }
            Err(e) => {
                let e = e.into_cmd();
                let why = e.chain().join(": ");
                log_line(&format!(
                    "SIGHUP: policy not reloaded, keeping the one in force: {}",
                    term(&why)
                ));
                self.audit_reload(refused(rec, e.kind(), &why));
            }
        }
        self.recheck_loaded(now);
    }

    /// The settings of `p` (its defaults' resolution) that differ from those read at start and
    /// that no reload applies, each with what of it stays so (for the log): the audit sinks
    /// (`[audit]`) and the agent connections' frame cap (`protocol.max_frame_bytes`, which is
    /// also every plugin's, and that a plugin's next launch or restart does take — review-146:
    /// the warning said it stayed, for all). A policy that does not resolve applies nothing
    /// anyway.
    fn unapplied_at_reload(
        &self,
        p: &stockade_policy::operator::MergedPolicy,
    ) -> Vec<(&'static str, &'static str)> {
        let Ok(defaults) = p.resolve(None, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !defaults.audit.same_in_effect(&self.cfg.audit_section) {
            out.push(("audit", "stays as read at start until the daemon restarts"));
        }
        if defaults.host.protocol.max_frame_bytes != self.cfg.max_frame_bytes {
            out.push((
                "protocol.max_frame_bytes",
                "stays as read at start for agent connections until the daemon restarts \
                 (plugins take it at their next launch or restart)",
            ));
        }
        out
    }

    /// Append a refused reload's record; one that cannot be written is logged (nothing changed).
    fn audit_reload(&self, rec: crate::audit::Record) {
        if let Err(e) = crate::audit::append_or_fail(&self.cfg.audit, rec) {
            log_line(&format!(
                "audit record not written: {}",
                term(&e.chain().join(": "))
            ));
        }
    }

    /// Begin the graceful stop (signal): no new connections or restarts, every plugin stopped.
    pub fn stop(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let _ = super::systemd::notify("STOPPING=1");
        if let Some(mut l) = self.listener.take() {
            let _ = self.sup.registry().deregister(&mut l);
        }
        self.sup.shutdown_all(now);
    }

    fn allowed(&self, p: &PeerCred) -> bool {
        let s = &self.cfg.serve.serve;
        self.privileged(p) || s.allowed_uids.contains(&p.uid) || s.allowed_gids.contains(&p.gid)
    }

    /// Root and the daemon's own uid: always allowed, not limited per uid, and the only peers
    /// that may take the reserved connections ([`super::admit`]).
    fn privileged(&self, p: &PeerCred) -> bool {
        p.uid == 0 || p.uid == self.own_uid
    }

    /// Refuse a connection: one best-effort error line (the socket is fresh: its buffer has
    /// room), then it is closed (dropped by the caller); the log line, rate-limited.
    fn refuse(
        &mut self,
        stream: &mut mio::net::UnixStream,
        why: Refusal,
        peer: Option<&PeerCred>,
        log: impl FnOnce() -> String,
    ) {
        use std::io::Write;
        let mut data = match peer {
            Some(p) => json!({"uid": p.uid, "gid": p.gid, "pid": p.pid}),
            None => Value::Null,
        };
        if let Some(key) = why.limit_key() {
            let l = Limits::of(&self.cfg.serve.serve);
            let max = match why {
                Refusal::PerUid => l.per_uid,
                Refusal::Reserved => l.reserved,
                _ => l.total,
            };
            data["limit"] = json!(key);
            data["max"] = json!(max);
        }
        let e = err(codes::PEER_REFUSED, why.message()).with_data(data);
        let _ = stream.write(&encode(&response_err(&Value::Null, &e)));
        if self.refusals.note(why, Instant::now()) {
            log_line(&format!(
                "connection refused: {} (refusals for this reason are logged once per {} s)",
                log(),
                super::admit::REFUSAL_LOG_INTERVAL.as_secs()
            ));
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, _) = match l.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log_line(&format!("accept failed: {e}"));
                    return;
                }
            };
            let peer = match peer_cred(stream.as_fd()) {
                Ok(p) => p,
                Err(e) => {
                    self.refuse(&mut stream, Refusal::Credentials, None, || {
                        format!("no peer credentials ({e})")
                    });
                    continue;
                }
            };
            let who = format!("uid {} gid {} pid {}", peer.uid, peer.gid, peer.pid);
            if !self.allowed(&peer) {
                self.refuse(&mut stream, Refusal::Allowlist, Some(&peer), || {
                    format!("{who} is not in the allowlist")
                });
                continue;
            }
            let open = self.conns.len();
            let of_uid = self.conns_of_uid.get(&peer.uid).copied().unwrap_or(0);
            let limits = Limits::of(&self.cfg.serve.serve);
            if let Err(why) = admit(&limits, self.privileged(&peer), open, of_uid) {
                let log = || match why {
                    Refusal::PerUid => format!(
                        "{who}: its uid holds {of_uid} connections (max_connections_per_uid)"
                    ),
                    Refusal::Reserved => format!(
                        "{who}: {open} connections open, the other {} are reserved for root and \
                         the daemon's uid (reserved_connections)",
                        limits.total - open
                    ),
                    _ => format!("{who}: {open} connections open (max_connections)"),
                };
                self.refuse(&mut stream, why, Some(&peer), log);
                continue;
            }
            let t = self.next_conn;
            self.next_conn += 1;
            if let Err(e) = self.sup.registry().register(
                &mut stream,
                Token(t),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log_line(&format!("cannot register a connection: {e}"));
                continue;
            }
            let s = &self.cfg.serve.serve;
            let max_frame = self.cfg.max_frame_bytes;
            self.conns
                .insert(t, Conn::new(stream, peer, max_frame, s.max_outbound_bytes));
            *self.conns_of_uid.entry(peer.uid).or_default() += 1;
            // Data may already be there (edge-triggered): read it on this turn.
            self.mark_hot(t);
        }
    }

    /// Answer a connection's requests one at a time while its answers have room (else it waits,
    /// `paused`, the rest in its backlog, until `flush_conns` sees them drained), reading a chunk
    /// whenever the backlog is empty, up to [`READ_BUDGET`] chunks and [`FRAME_BUDGET`] requests
    /// (then it is served again next turn, after the plugins and the other agents: one agent
    /// pipelining as fast as it can does not stretch everyone's turn).
    fn read_conn(&mut self, t: usize, buf: &mut [u8], now: Instant) {
        let (mut reads, mut frames) = (0, 0);
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            if !c.has_room() {
                c.paused = true;
                return;
            }
            if let Some(f) = c.backlog.pop_front() {
                if frames == FRAME_BUDGET {
                    c.backlog.push_front(f);
                    self.mark_hot(t);
                    return;
                }
                frames += 1;
                self.answer_frame(t, f, now);
                // Answers the supervisor gave at once (`overloaded`, a cached answer) reach the
                // connection now, so the next frame's room counts them.
                self.route();
                continue;
            }
            if reads == READ_BUDGET {
                self.mark_hot(t);
                return;
            }
            reads += 1;
            let mut decoded = Vec::new();
            let outcome = c.read_chunk(buf, &mut decoded);
            c.backlog.extend(decoded);
            if matches!(outcome, ReadOutcome::Drained) && c.backlog.is_empty() {
                return;
            }
        }
    }

    fn answer_frame(&mut self, t: usize, f: Frame, now: Instant) {
        match from_frame(f) {
            Ok(Message::Request {
                id,
                method,
                params: p,
            }) => self.request(t, id, &method, &p, now),
            // Notifications and responses from an agent carry nothing serve acts on.
            Ok(_) => {}
            Err(answer) => self.send(t, &answer),
        }
    }

    /// Serve connection `t` again on the next turn (once).
    fn mark_hot(&mut self, t: usize) {
        if !self.hot.contains(&t) {
            self.hot.push(t);
        }
    }

    /// Whether connection `t` still has a request in progress: a `hook_invoke` fan-out, or a
    /// `plugin_load` / `plugin_unload` answered when the plugin is ready or gone.
    fn awaits_answers(&self, t: usize) -> bool {
        self.fanouts.values().any(|f| f.conn == t) || self.fleet_awaits(t)
    }

    /// The uid of connection `conn`'s peer (an agent's request recorded with who made it).
    pub(crate) fn peer_uid(&self, conn: usize) -> Option<u32> {
        self.conns.get(&conn).map(|c| c.peer.uid)
    }

    pub(crate) fn send(&mut self, conn: usize, v: &Value) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue(v);
        }
    }

    /// A notification for every connection (docs/protocol.md: serve has no subscriptions;
    /// every allowed connection receives every notification).
    pub(crate) fn broadcast(&mut self, v: &Value) {
        for c in self.conns.values_mut() {
            c.queue_notification(v);
        }
    }

    fn request(&mut self, conn: usize, id: Value, method: &str, p: &Value, now: Instant) {
        let r = match method {
            "hook_invoke" => match HookInvoke::from_agent(p) {
                Ok(call) => return self.fan_out(conn, id, call, now),
                Err(e) => Err(e),
            },
            "plugin_load" => return self.plugin_load(conn, id, p),
            "plugin_unload" => return self.plugin_unload(conn, id, p, now),
            "plugin_restart" => self.plugin_restart(conn, p, now),
            "plugin_list" => no_params(p).map(|()| {
                json!({"plugins": self
                .plugins
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .iter()
                .map(|n| self.status(n))
                .collect::<Vec<_>>()})
            }),
            "plugin_status" => self.name_param(p).map(|n| self.status(&n)),
            _ => Err(err(
                codes::METHOD_NOT_FOUND,
                format!("unknown method `{method}`"),
            )),
        };
        let v = match r {
            Ok(v) => response_ok(&id, v),
            Err(e) => response_err(&id, &e),
        };
        self.send(conn, &v);
    }

    /// `{name}` of a loaded plugin.
    pub(crate) fn name_param(&self, p: &Value) -> Result<String, RpcError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Name {
            name: String,
        }
        let n: Name = params(p)?;
        if !self.plugins.contains_key(&n.name) {
            return Err(err(
                codes::UNKNOWN_PLUGIN,
                format!("no plugin `{}` is loaded", n.name),
            ));
        }
        Ok(n.name)
    }

    /// The entry for a plugin that cannot take the call now (starting, restarting,
    /// quarantined, held): the hook's failure mode decides, as for a crashed plugin — its
    /// launch's while an incarnation runs, else the policy in force's
    /// ([`Daemon::refresh_idle_hooks`], called first).
    fn unavailable_entry(&self, plugin: &str, hook: &str, why: &str) -> Value {
        let e = err(codes::UNAVAILABLE, why);
        // The plugin's own effective hook policy (its `[plugin."NAME"]` section applied).
        let host = self.plugins.get(plugin).map(|e| &e.host);
        match host {
            Some(p) if p.failure(hook) == FailureMode::Open => json!({
                "plugin": plugin, "result": p.fail_open_default(hook),
                "bypassed": {"hook": hook, "code": e.code, "reason": codes::name(e.code), "message": e.message},
            }),
            _ => json!({"plugin": plugin, "error": e}),
        }
    }

    /// Plugin `name`'s registered hooks are now `hooks`: its entry and the index, together.
    pub(crate) fn set_hooks(&mut self, name: &str, hooks: BTreeSet<String>) {
        self.unindex_hooks(name);
        for h in &hooks {
            self.hook_index
                .entry(h.clone())
                .or_default()
                .insert(name.to_string());
        }
        if let Some(e) = self.plugins.get_mut(name) {
            e.hooks = hooks;
        }
    }

    /// Plugin `name`'s hooks leave the index (before its entry is removed or its hooks change).
    pub(crate) fn unindex_hooks(&mut self, name: &str) {
        let Some(e) = self.plugins.get(name) else {
            return;
        };
        for h in &e.hooks {
            if let Some(set) = self.hook_index.get_mut(h) {
                set.remove(name);
                if set.is_empty() {
                    self.hook_index.remove(h);
                }
            }
        }
    }

    /// An agent's `hook_invoke`: to every plugin whose ready incarnation registered the hook
    /// (in name order, as the index keeps them).
    fn fan_out(&mut self, conn: usize, id: Value, call: HookInvoke, now: Instant) {
        let targets: Vec<String> = self
            .hook_index
            .get(&call.hook)
            .map(|set| {
                set.iter()
                    .filter(|n| self.plugins.contains_key(*n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if targets.is_empty() {
            let e = err(
                codes::NOT_REGISTERED,
                "no plugin is registered for this hook",
            );
            return self.send(conn, &response_err(&id, &e));
        }
        self.fan_out_to(conn, id, call, targets, now, None);
    }

    /// Send `call` to each of `targets` (not empty) and collect one entry per plugin into the
    /// answer for `conn`; a target that is not ready gets its unavailable entry at once. With a
    /// `deadline`, the answer is due then whatever the plugins do (`expire_fanouts`).
    pub(crate) fn fan_out_to(
        &mut self,
        conn: usize,
        id: Value,
        call: HookInvoke,
        targets: Vec<String>,
        now: Instant,
        deadline: Option<Instant>,
    ) {
        use super::plugin::State;
        let fid = self.next_fanout;
        self.next_fanout += 1;
        let mut f = FanOut {
            conn,
            id,
            hook: call.hook.clone(),
            results: vec![None; targets.len()],
            names: targets.clone(),
            pending: 0,
            deadline,
        };
        let mut sends = Vec::new();
        for (i, name) in targets.iter().enumerate() {
            let e = &self.plugins[name];
            let ready = e.slot.filter(|&s| {
                self.sup
                    .handle(s)
                    .is_some_and(|h| h.state() == State::Ready && h.hooks().contains(&call.hook))
            });
            match ready {
                Some(slot) => {
                    let cid = self.next_call;
                    self.next_call += 1;
                    self.calls.insert(cid, (fid, i));
                    f.pending += 1;
                    sends.push((slot, cid));
                }
                None => {
                    let why = format!("the plugin is {}", e.state_name(&self.sup));
                    self.refresh_idle_hooks(name);
                    f.results[i] = Some(self.unavailable_entry(name, &call.hook, &why));
                }
            }
        }
        let done = f.pending == 0;
        self.fanouts.insert(fid, f);
        for (slot, cid) in sends {
            self.sup.invoke_on(slot, json!(cid), call.clone(), now);
        }
        if done {
            self.finish(fid);
        }
    }

    fn finish(&mut self, fid: u64) {
        let Some(f) = self.fanouts.remove(&fid) else {
            return;
        };
        self.note_bypasses(&f);
        if f.conn >= super::sertone::HTTP_BASE {
            let results = f.names.into_iter().zip(f.results).collect();
            return self.sertone_finish(f.conn, &f.hook, results);
        }
        let results: Vec<Value> = f
            .results
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let v = response_ok(&f.id, json!({"hook": f.hook, "results": results}));
        self.send(f.conn, &v);
    }

    /// Each plugin's entry in an agent's finished fan-out: a bypass (`bypassed`: its fail-open default
    /// stood in for its answer) or its own answer, for the hook's `bypass` records.
    fn note_bypasses(&mut self, f: &FanOut) {
        if f.conn >= super::sertone::HTTP_BASE {
            return; // the front decides what it bypasses (`sertone_answer`)
        }
        let now = Instant::now();
        let mut recs = Vec::new();
        for (name, e) in f.names.iter().zip(&f.results) {
            let Some(e) = e else { continue };
            let rec = if let Some(b) = e.get("bypassed") {
                let why = (
                    b["reason"].as_str().unwrap_or("unknown"),
                    b["message"].as_str().unwrap_or(""),
                );
                self.bypasses
                    .bypassed(name, &f.hook, why, "hook_invoke", now)
            } else if e.get("result").is_some()
                || e["error"]["code"].as_i64() == Some(codes::PLUGIN_ERROR)
            {
                self.bypasses.answered(name, &f.hook, now)
            } else {
                None
            };
            recs.extend(rec);
        }
        self.audit_bypasses(recs);
    }

    /// Route what the plugins said: answers into their fan-out, notifications to everyone.
    pub(crate) fn route(&mut self) {
        let msgs = std::mem::take(&mut self.sup.to_agent);
        if msgs.is_empty() {
            return;
        }
        // Call id → its resolved slot, for the fail-open log that follows a bypassed answer.
        let mut resolved: HashMap<u64, (u64, usize)> = HashMap::new();
        // Answered after the whole batch, so a bypass log is folded into its entry first.
        let mut done = Vec::new();
        for mut m in msgs {
            if m.get("method").is_none() {
                let Some(cid) = m["id"].as_u64() else {
                    continue;
                };
                let Some((fid, i)) = self.calls.remove(&cid) else {
                    continue;
                };
                resolved.insert(cid, (fid, i));
                let Some(f) = self.fanouts.get_mut(&fid) else {
                    continue;
                };
                let name = f.names[i].clone();
                // An answer the loop took in only after its deadline is the deadline's already
                // (the plugin's handle, `PluginHandle::on_response`, stamped with the time each
                // read happens: `Supervisor::ready` below), never a late success.
                let entry = match (m.get("result"), m.get("error")) {
                    (Some(r), _) => json!({"plugin": name, "result": r}),
                    (_, Some(e)) => json!({"plugin": name, "error": e}),
                    _ => json!({"plugin": name, "error": err(codes::UNAVAILABLE, "no answer")}),
                };
                if f.results[i].is_none() {
                    f.results[i] = Some(entry);
                    f.pending -= 1;
                }
                if f.pending == 0 {
                    done.push(fid);
                }
                continue;
            }
            let method = m["method"].as_str().unwrap_or("").to_string();
            if method == "log" {
                if let Some(b) = m["params"].get_mut("bypass") {
                    let cid = b["id"].as_u64().unwrap_or(0);
                    if let Some(b) = b.as_object_mut() {
                        b.remove("id"); // internal; meaningless to agents
                    }
                    self.mark_bypassed(resolved.get(&cid).copied(), &m["params"]["bypass"]);
                }
            }
            if method == "plugin_state" {
                self.on_plugin_state(&m["params"]);
            }
            self.broadcast(&m);
        }
        for fid in done {
            self.finish(fid);
        }
    }

    fn mark_bypassed(&mut self, at: Option<(u64, usize)>, bypass: &Value) {
        let Some((fid, i)) = at else { return };
        if let Some(Some(e)) = self.fanouts.get_mut(&fid).map(|f| &mut f.results[i]) {
            e["bypassed"] = bypass.clone();
        }
    }

    fn flush_conns(&mut self) {
        let (mut gone, mut ended, mut resume) = (Vec::new(), Vec::new(), Vec::new());
        let now = Instant::now();
        for (t, c) in self.conns.iter_mut() {
            if c.pending() > 0 {
                c.flush();
            }
            c.report_dropped();
            if c.closed.is_some() {
                gone.push(*t);
            } else if !c.has_room() {
                // Answers pile up: whether its input is paused for back-pressure or every
                // request was read before the answers came, an agent that takes nothing at all
                // stalls and is dropped (STALL) — else one that never reads held its connection
                // and up to the cap of answers for as long as the daemon ran.
                if c.stalled(now) {
                    gone.push(*t);
                }
            } else if c.paused {
                // Input left unread for back-pressure: read again now that its answers drained.
                c.paused = false;
                resume.push(*t);
            } else if c.read_closed && c.pending() == 0 && c.backlog.is_empty() {
                ended.push(*t);
            }
        }
        for t in resume {
            self.mark_hot(t);
        }
        // Input ended and every answer written: closed once nothing it asked for is pending.
        for t in ended {
            if !self.awaits_answers(t) {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.closed = Some(Closed::Eof);
                }
                gone.push(t);
            }
        }
        for t in gone {
            if let Some(mut c) = self.conns.remove(&t) {
                let _ = self.sup.registry().deregister(&mut c.stream);
                if let Some(n) = self.conns_of_uid.get_mut(&c.peer.uid) {
                    *n -= 1;
                    if *n == 0 {
                        self.conns_of_uid.remove(&c.peer.uid);
                    }
                }
                match c.closed {
                    Some(Closed::Overflow) => {
                        self.dropped_slow += 1;
                        log_line(&format!(
                            "connection of uid {} pid {} dropped: it stopped reading and its \
                             outbound buffer is full ({} dropped so far)",
                            c.peer.uid, c.peer.pid, self.dropped_slow
                        ));
                    }
                    Some(Closed::Stalled) => {
                        self.dropped_slow += 1;
                        log_line(&format!(
                            "connection of uid {} pid {} dropped: it stopped reading ({} s without \
                             taking an answer, its answers piling up; {} dropped so far)",
                            c.peer.uid,
                            c.peer.pid,
                            super::conn::STALL.as_secs(),
                            self.dropped_slow
                        ));
                    }
                    Some(Closed::Error) => log_line(&format!(
                        "connection of uid {} pid {} failed; closed",
                        c.peer.uid, c.peer.pid
                    )),
                    _ => {}
                }
            }
        }
    }
}
