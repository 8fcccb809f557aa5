//! The plugins of `stockade serve` and their supervision.
//!
//! A loaded plugin is an [`Entry`]: its verified package (kept extracted for restarts), the
//! slot of its current incarnation in the [`Supervisor`](super::supervisor::Supervisor), and
//! its supervision state. Life cycle (every change is a `plugin_state` notification and one
//! stderr line):
//!
//! ```text
//! plugin_load → starting → ready ─(crash, violation, hung, unasked exit)→ restarting ─(backoff)→ starting …
//!                   │                         └─(N crashes within the window)→ quarantined
//!                   └─(never ready on the first launch)→ plugin_load fails (load_failed), unloaded
//! plugin_unload → stopping → unloaded          plugin_restart: quarantined|restarting|ready → starting
//! ```
//!
//! Backoff is `backoff_base_ms · 2^(crashes in window − 1)`, capped, with jitter
//! ([`stockade_policy::serve::backoff_ms`]). A restart whose launch the host refuses for the
//! moment (`uid_exhausted`, `cgroup_exhausted`, `clone_exhausted`: a burst of `run`s elsewhere) is no crash: it is
//! tried again on a growing backoff, the crash count unchanged. A quarantined plugin stays
//! loaded (its status and last exit are kept) but gets no calls and no restarts until an agent
//! sends `plugin_restart` (or unloads and loads it again). The quarantine is also recorded in
//! the state directory ([`super::quarantine`]): after a restart of the daemon, loading the same
//! package brings the plugin back quarantined without launching it, until `plugin_restart` or
//! `plugin_unload`.
//!
//! ## Policy and audit
//! Every launch — the first one of a `plugin_load` (or of the config's `load` list) and every
//! restart — computes the plugin's effective policy afresh with
//! [`crate::plugin_policy::for_launch`], the path `stockade run` takes (so a grant that expired
//! since the last launch is no longer honoured) — except a warm-pool launch whose spare was
//! built under a decision that involved no grant and no withheld item, under the policy still
//! in force (no SIGHUP since): that decision is a function of the policy and the package alone
//! and is reused as is (`LaunchPolicy::reusable`) — and writes the records `run` writes
//! (verification, grant, denial of a withheld item, launch) to the policy's audit sinks. Serve
//! adds: `restart` for each relaunch (instead of `launch`), `quarantine`, a `denial` for a
//! `plugin_load` refused (verification, the plugin's policy, or the launch), and `termination`
//! (plus `denial` when the reason is `denied`) from each incarnation's end. A launch whose
//! record cannot be written is undone and the load fails: no unaudited plugin. A plugin whose
//! launch honoured a grant is relaunched when the grant expires ([`Daemon::check_expiries`]),
//! its `restart` record saying `reason: "grant_expiry"`: the item goes with the grant.
//!
//! ## Trust
//! The trust configuration (trust directory and the policy's `[trust]`) is read again at every
//! load ([`Daemon::reread_trust`]), as the license is, so a revocation list installed while the
//! daemon runs applies to the next `plugin_load`, and a newer list that root's `verify` or `run`
//! remembered in the state directory is never taken for a rollback. A restart is a new launch:
//! before it the package's chain, validity, revocation and scope are checked again against the
//! configuration and license read then ([`crate::package::recheck_trust`]), and, under strict, a
//! signature failure a `warn` load let pass refuses it too
//! ([`crate::package::unverified_at_load`]). A refusal about the package quarantines the plugin
//! for that reason instead of counting a crash (until `plugin_restart` finds it trusted again).
//! SIGHUP, a load or restart that finds the configuration or license changed, and the periodic
//! trust check that finds them changed (`[health] trust_check_interval_ms`,
//! [`Daemon::check_trust_now`]: no reload needed for a new revocation list), check every
//! loaded plugin the same way: one whose package is now refused is stopped and quarantined; so
//! does the expiry of a loaded plugin's certificate chain, at that moment
//! ([`Daemon::check_expiries`]: the loop wakes up for it, no reload needed). A
//! license that does not cover a package ([`About::License`]) is the node's to fix: it stops
//! nothing that runs, and restarts wait for a license that does. A configuration that cannot
//! be used (unreadable, an invalid or expired list, a required list missing) says nothing about
//! any package: it stops nothing that runs and quarantines nothing, but refuses every load and
//! restart until fixed — a crashed plugin stays `restarting` and is tried again after its
//! backoff ([`Daemon::retry_later`]), so it comes back by itself once the configuration is
//! fixed. The `quarantine` audit record's `detail.request` says what found the refusal:
//! `restart`, `plugin_restart`, `sighup`, `trust_change` or `expiry`.
//!
//! ## The store
//! A plugin loaded from the store follows it ([`installed`]): at the periodic check and SIGHUP
//! the registry is read (when it changed) and a `stockade remove` unloads the plugin (kept while
//! a loaded plugin depends on it), an install of another package relaunches it on that package
//! once it verified under the daemon's trust and its dependencies and policy admit it.

use super::daemon::{log_line, Daemon};
use super::kv::KvStore;
use super::plugin::{Health, PluginConfig, State};
use super::quarantine::{OnLoad, Quarantined};
use crate::audit::{self, Event, Record};
use crate::keyfile::unix_now;
use crate::output::term;
use crate::package::errors::{RevocationError, ScopeError};
use crate::package::report::{Report, SignatureStatus, StepStatus};
use crate::package::trees::Trees;
use crate::package::{open_verified_among, VerifiedPackage, VerifyError};
use crate::plugin_policy::LaunchPolicy;
use crate::sandbox;
use crate::trustdir::TrustMode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stockade_policy::deps::DepNode;
use stockade_policy::protocol::host::HostPolicy;
use stockade_policy::protocol::message::{codes, params, response_err, response_ok, RpcError};
use stockade_policy::serve::{backoff_ms, CrashWindow};
use stockade_trust::chain::ValidityError;

mod installed;
pub(crate) use installed::StoreSeen;

/// Where a loaded plugin is in its life, beyond its current process's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// An incarnation is running (its handle has the details).
    Running,
    /// Waiting for the backoff to expire.
    Restarting(Instant),
    /// Crash-looped: no calls, no restarts.
    Quarantined,
    /// `plugin_unload`: stopping, then removed.
    Unloading,
    /// `plugin_restart` of a running plugin: stopping, then launched again at once.
    Relaunch,
    /// Not relaunched: its package does not fit the versions of the other plugins loaded now
    /// (a dependency relaunched on an update while this plugin's own update was withdrawn,
    /// [`Daemon::hold_unfit`]). No process; launched again once it fits (`supervise_one`) or
    /// an update is admitted for it.
    Held,
}

/// A held sandbox for a plugin's next incarnation (`[serve] warm`): built, with every layer in
/// force, up to the program's exec. Used only if the next launch computes the same sandbox
/// policy (a SIGHUP'd policy or a changed grant makes it stale: it is given up, and the launch is
/// cold). A quarantine or an unload gives it up too. Given up means killed and reaped by the
/// loop like any killed sandbox ([`Daemon::discard_spare`]), never dropped in place: dropping a
/// [`sandbox::Held`] waits for its init, which a process the kernel holds keeps alive.
struct Spare {
    held: sandbox::Held,
    /// The decision the spare was built under, and the policy generation it was computed in.
    decision: LaunchPolicy,
    generation: u64,
}

/// One loaded plugin.
pub struct Entry {
    pkg: VerifiedPackage,
    pub(crate) slot: Option<usize>,
    phase: Phase,
    restarts: u32,
    crashes: CrashWindow,
    /// Hooks of the last ready incarnation (a restarting plugin still answers for them).
    pub(crate) hooks: BTreeSet<String>,
    granted: Vec<Value>,
    last_exit: Option<Value>,
    ever_ready: bool,
    pending_load: Option<(usize, Value)>,
    pending_unload: Vec<(usize, Value)>,
    /// The effective host policy of the current incarnation (hook failure modes for calls it
    /// cannot take). While none runs (restarting, quarantined, held), its hook sections are
    /// those of the policy in force ([`Daemon::refresh_idle_hooks`]): a running incarnation
    /// keeps its launch's until its next launch, a plugin with none has no launch to keep.
    pub(crate) host: HostPolicy,
    /// The policy generation `host`'s hook sections were computed in (`None`: not yet).
    host_generation: Option<u64>,
    /// What every audit record about the current incarnation shares (package, signer chain,
    /// effective-policy hash, enforced layers).
    audit: Record,
    /// The warm pool's spare, if any.
    spare: Option<Spare>,
    /// The current incarnation's launch decision and its policy generation, with `[serve] warm`
    /// only: the spare built once it is ready takes it over.
    decision: Option<(u64, LaunchPolicy)>,
    /// When the current incarnation's launch began; taken when it is ready.
    launch_started: Option<Instant>,
    /// Launch → ready of the last incarnation (`plugin_status.launch_us`).
    last_launch_us: Option<u64>,
    /// Whether the current incarnation came from a spare.
    warm: bool,
    /// Why the last trust check of its package since its load (a restart's, SIGHUP's, a changed
    /// configuration's) refused it — `{kind, exit, message}` as a load's `load_failed` data has
    /// them — while that holds: the reason of its trust quarantine, of a restart put off
    /// ([`Daemon::retry_later`]), or of the failure of its pending `plugin_load`.
    trust_refusal: Option<TrustRefusal>,
    /// Restarts in a row refused by a trust configuration that cannot be used
    /// ([`Daemon::retry_later`]): each waits longer, up to the backoff's cap.
    trust_retries: u32,
    /// Restarts in a row whose launch the host refused for the moment (every uid of the range
    /// held, no cgroup to be had, the audit log's lock held past the wait:
    /// [`passing_launch_refusal`]): each waits longer, up to the
    /// backoff's cap, none counted as a crash ([`Daemon::relaunch`]).
    host_retries: u32,
    /// When its certificate chain expires (the earliest `not_after` of its developer and
    /// intermediate certificates, Unix seconds), until the daemon has checked it then
    /// ([`Daemon::check_expiries`]): an expiry stops a running plugin at that moment, as
    /// SIGHUP would, not only at its next restart.
    expires: Option<u64>,
    /// When the first grant the current incarnation's launch honoured expires (Unix seconds),
    /// until the daemon has acted on it ([`Daemon::check_expiries`]): the plugin is relaunched
    /// then, under a decision that withholds the item, rather than keep a high-risk item (a
    /// network, a writable path) no grant authorises any longer.
    grants_expire: Option<u64>,
    /// Why the daemon itself asked the running incarnation to stop for a relaunch
    /// (`"grant_expiry"`), for the `restart` record; none for an agent's `plugin_restart`.
    relaunch_for: Option<&'static str>,
    /// An agent's `plugin_restart` asked for the relaunch to come, until its launch is had (the
    /// `restart` record's `requested`): kept while that launch is put off for the moment, as
    /// [`Entry::relaunch_for`] is. Told by the phase instead (`Relaunch`), the restart of a
    /// plugin without a process — quarantined, held, restarting — or one tried again said
    /// `requested: false` (review-129). Holds what the record says of that request:
    /// `agent_uid`, and `quarantine_lifted` when the plugin was quarantined then (audit-135).
    restart_requested: Option<Value>,
    /// The grant targets the current incarnation's launch was authorised for
    /// ([`crate::plugin_policy::LaunchPolicy::granted_targets`]), checked again by the periodic
    /// trust check ([`Daemon::check_grants_now`]).
    grant_targets: BTreeSet<String>,
    /// What that launch's grant check read ([`crate::plugin_policy::LaunchPolicy::grant_inputs`]).
    grant_inputs: Vec<PathBuf>,
    /// Loaded by its installed name, or as an installed dependency: what the store does to
    /// that name — a removal, an update — applies to it ([`Daemon::check_store_now`]). A
    /// package file loaded by its path is the operator's file, not the store's.
    from_store: bool,
    /// The new version the store installed, verified and admitted by the store check, launched
    /// by the next relaunch instead of the package loaded ([`installed::Update`]).
    update: Option<installed::Update>,
    /// A change of the store not applied to it, and why (`plugin_status.store_change`): a
    /// removal it is kept through (loaded plugins depend on it), an update refused.
    store_change: Option<installed::StoreChange>,
    /// Why it is [`Phase::Held`] (`plugin_status.held`): the dependency check its relaunch
    /// failed.
    held: Option<installed::Held>,
    /// The version a store update taken at a relaunch replaced ([`Daemon::take_update`]),
    /// until that relaunch's launch is had: a launch put off for the moment (the trust
    /// configuration unusable, the host out of uids) and tried again is still the update's,
    /// and its `restart` record says so (`reason` `"update"`, `from_version`); with whether
    /// that update lifted a quarantine (`quarantine_lifted`).
    update_from: Option<(String, bool)>,
    /// Why the daemon itself unloads it (`{"kind": "removed", "message"}`), said by its
    /// `unloaded` notification; none for an agent's `plugin_unload`.
    unload_reason: Option<Value>,
}

impl Entry {
    /// [`Entry::grants_expire`] while an incarnation launched with those grants runs.
    fn running_grants_expire(&self) -> Option<u64> {
        match (self.phase, self.slot) {
            (Phase::Running, Some(_)) => self.grants_expire,
            _ => None,
        }
    }

    /// Whether the plugin's verified manifest declares `hook` (whatever its state now).
    pub(crate) fn declares(&self, hook: &str) -> bool {
        self.pkg.manifest.manifest().hooks.iter().any(|h| h == hook)
    }

    /// Whether an incarnation of it runs (a process starting, ready or stopping, the plugin
    /// neither quarantined, held nor waiting to restart): that incarnation keeps the policy it
    /// was launched with until the next launch.
    pub(crate) fn runs(&self, sup: &super::supervisor::Supervisor) -> bool {
        matches!(
            self.phase,
            Phase::Running | Phase::Unloading | Phase::Relaunch
        ) && self
            .slot
            .and_then(|s| sup.handle(s))
            .is_some_and(|h| matches!(h.state(), State::Starting | State::Ready | State::Stopping))
    }

    /// The name `plugin_status` shows as `state`.
    pub(crate) fn state_name(&self, sup: &super::supervisor::Supervisor) -> &'static str {
        match self.phase {
            Phase::Restarting(_) => "restarting",
            Phase::Quarantined => "quarantined",
            // As its `plugin_state` said it (`hold_unfit`); no process, so nothing else to say.
            Phase::Held => "held",
            _ => match self.slot.and_then(|s| sup.handle(s)).map(|h| h.state()) {
                Some(State::Starting) => "starting",
                Some(State::Ready) => "ready",
                Some(State::Stopping) => "stopping",
                Some(State::Exited) => "exited",
                Some(State::Terminated) => "terminated",
                None => "stopped",
            },
        }
    }
}

/// What the log says when the trust configuration cannot be used.
const REFUSES: &str = "the trust configuration refuses every load and restart until it is fixed \
                       (running plugins keep running)";
/// The refusal's code and kind for a package loaded under `warn` (or `disabled`) with a failure
/// no recheck decides again, once the mode in force is strict
/// ([`crate::package::unverified_at_load`]): a `load_failed`'s, a quarantine's `reason` and
/// `plugin_status.trust_refusal`'s, so listed in runtime/src/kinds.rs (81, whatever the step:
/// only a signature failure, or a load with trust disabled, is refused so).
const UNVERIFIED: (crate::exit::Exit, &str) =
    (crate::exit::Exit::Signature, "trust_mode.unverified");
/// The log's name for a load or restart that found the trust configuration changed.
const NEW_TRUST: &str = "new trust configuration";

/// How long a verification in the daemon waits for `<state-dir>/revocation-state.lock` to
/// record a newer revocation list (`TrustConfig::revocation_lock_wait`): long enough for another
/// verification's one load and save, short enough that the one event loop — every agent and
/// plugin — is not held up noticeably. A holder that keeps it longer (root's CLI stopped while
/// it records) fails the load closed (`revocation.state_busy`, 75) instead of stalling the
/// daemon for ever; after that, loads, restarts and SIGHUP checks only try the lock (no wait)
/// until one takes it or [`crate::fileio::BoundedWait::TRY_ONLY_FOR`] passed, so a holder that
/// stays costs the event loop one wait in that time, not one per load.
pub(crate) const REVOCATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long an audit append in the daemon waits for the log's lock (`<log>.lock`, which root's
/// CLI takes too for its own appends) and for the journal socket
/// ([`crate::audit::AuditLog::waiting_at_most`]): one append of another writer (a few fsyncs) is
/// waited for; a holder stopped mid-append fails a required record's action closed
/// (`audit.busy`, 75) and leaves a best-effort record logged as not written, instead of
/// stalling the one event loop for ever.
pub(crate) const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a loaded plugin's package is not trusted any longer ([`Daemon::check_loaded`]).
#[derive(Debug, Clone)]
struct TrustRefusal {
    /// The verification's kind (`revocation.key`, …) or the configuration's (`trust_dir`).
    kind: &'static str,
    /// Its exit code, as `run` and `verify` would exit.
    exit: u8,
    message: String,
    /// What the CLI says to do about that kind (its `hint`), if anything.
    hint: Option<String>,
    /// What it is about, which decides what becomes of the plugin.
    about: About,
}

/// What a [`TrustRefusal`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum About {
    /// The package's own certificates (revoked, expired, not under a pinned root, a ceiling
    /// or hardware id it does not meet): the plugin is stopped and quarantined.
    Package,
    /// The node's license does not cover the package (none, another serial, expired): the
    /// node's to fix. A running plugin keeps running; a restart waits for a license that does.
    License,
    /// A trust configuration or license file that cannot be used: nothing about any one
    /// package, every load and restart refused until it is fixed.
    Configuration,
    /// The node's clock is before the start of a certificate's validity the load found
    /// begun: the clock was set back since (an NTP step, `date -s`), nothing about the
    /// package. As for [`About::License`], a running plugin keeps running and a restart waits
    /// (retried) until the clock is right again; it is not quarantined.
    Clock,
}

impl About {
    /// What the log adds after a refusal that stops nothing.
    fn consequence(self) -> &'static str {
        match self {
            About::License => {
                "the node's license does not cover it: its restarts wait for one that does \
                 (a running incarnation keeps running)"
            }
            About::Clock => {
                "the node's clock went back since its load: its restarts wait until the clock \
                 is right again (a running incarnation keeps running)"
            }
            _ => REFUSES,
        }
    }
}

impl TrustRefusal {
    /// What the log adds after it: [`About::consequence`], but for a lock another process held
    /// past the daemon's bounded wait, which is no configuration to fix and passes by itself.
    fn consequence(&self) -> &'static str {
        if self.kind == "revocation.state_busy" {
            "another process holds the revocation state's lock: loads and restarts that must record \
             a newer list are refused until it is free (running plugins keep running)"
        } else {
            self.about.consequence()
        }
    }

    /// The trust configuration cannot be read or used: nothing about any one package.
    fn unusable(e: &crate::error::CmdError) -> TrustRefusal {
        TrustRefusal {
            kind: e.kind(),
            exit: e.exit().code(),
            message: format!(
                "cannot read the trust configuration: {}",
                e.chain().join(": ")
            ),
            hint: e.hint_text().map(str::to_string),
            about: About::Configuration,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"kind": self.kind, "exit": self.exit, "message": self.message});
        if let Some(h) = &self.hint {
            v["hint"] = json!(h);
        }
        v
    }

    /// The `load_failed` error a load or restart it refuses is answered with.
    fn load_failed(&self) -> RpcError {
        let mut data = json!({"kind": self.kind, "exit": self.exit});
        if let Some(h) = &self.hint {
            data["hint"] = json!(h);
        }
        load_failed(self.message.clone(), data)
    }
}

/// Why [`Daemon::try_verify_for_load`] loaded nothing.
enum LoadFailure {
    /// No package file at the path (not audited yet: the store may name another now).
    Gone(VerifyError),
    /// Refused, audited, answered.
    Refused(RpcError),
}

impl LoadFailure {
    fn is_gone(&self) -> bool {
        matches!(self, LoadFailure::Gone(_))
    }
}

/// A `load_failed` error. Its `data.kind`, when it has one, is the kind the CLI would fail
/// with (runtime/src/kinds.rs), and `data.exit` the code that kind always comes with
/// (docs/protocol.md §2): filled in from the table where the refusal did not say it (the
/// dependency refusals, the key/value store), so an agent can branch on either as it would on
/// the CLI's.
fn load_failed(msg: impl Into<String>, mut data: Value) -> RpcError {
    if let Some(kind) = data.get("kind").and_then(Value::as_str) {
        let exit = crate::kinds::exit_of(kind).map(crate::exit::Exit::code);
        debug_assert!(exit.is_some(), "load_failed: kind `{kind}` is not listed");
        match (exit, data.get("exit")) {
            (Some(exit), None) => data["exit"] = json!(exit),
            (exit, Some(given)) => debug_assert_eq!(Some(given), exit.map(|e| json!(e)).as_ref()),
            (None, None) => {}
        }
    }
    RpcError::new(codes::LOAD_FAILED, msg.into()).with_data(data)
}

/// A `load_failed`'s `data` for a refusal the CLI would fail with as `err`: its kind, its exit
/// code and its hint (the very text the CLI prints after `hint:`, when it has one).
fn refusal_data(err: &crate::error::CmdError) -> Value {
    let mut data = json!({"kind": err.kind(), "exit": err.exit().code()});
    if let Some(h) = err.hint_text() {
        data["hint"] = json!(h);
    }
    data
}

/// The `load_failed` of a plugin whose policy could not be decided (its sections are invalid,
/// or a record could not be written).
fn policy_refusal(err: &crate::error::CmdError) -> RpcError {
    load_failed(
        format!("refused by the policy: {}", err.chain().join(": ")),
        refusal_data(err),
    )
}

/// ` (the last: …)` for a crash loop's message, from the last end's reason: its message
/// (killed by the seccomp filter, a protocol violation, a failed launch…) or its exit code, so
/// the quarantine says why without digging the last `exited` out of the log. Empty when
/// nothing is known.
fn last_end(last_exit: Option<&Value>) -> String {
    let Some(r) = last_exit else {
        return String::new();
    };
    match (r["message"].as_str(), r["sandbox"]["exit"]["code"].as_i64()) {
        (Some(m), _) => format!(" (the last: {m})"),
        (None, Some(c)) => format!(" (the last: exited with code {c})"),
        (None, None) => String::new(),
    }
}

/// The daemon's log line for a `plugin_state` (after `stockade serve: `). The reason's message
/// is often the plugin's own words (a handshake naming another plugin, a refused frame), so
/// every string in it is escaped ([`term`]): a newline in it cannot start a line that reads as
/// the daemon's own (`plugin x: ready`), an escape sequence cannot act on a terminal.
pub(crate) fn state_line(p: &Value) -> String {
    let name = p["plugin"].as_str().unwrap_or("");
    let state = p["state"].as_str().unwrap_or("");
    let why = match p.get("reason") {
        Some(r) => {
            let kind = term(r["kind"].as_str().unwrap_or(""));
            match r["message"].as_str() {
                Some(m) => format!(" ({kind}: {})", term(m)),
                None => format!(" ({kind})"),
            }
        }
        None if state == "restarting" => format!(
            " (in {} ms; crash {} in the window)",
            p["delay_ms"], p["crashes"]
        ),
        None => String::new(),
    };
    format!("plugin {}: {}{why}", term(name), term(state))
}

impl Daemon {
    /// What every audit record about `name`'s current incarnation shares, if it is loaded.
    pub(crate) fn plugin_audit_base(&self, name: &str) -> Option<&Record> {
        self.plugins.get(name).map(|e| &e.audit)
    }

    /// `r`, naming the agent whose `plugin_load` it comes from ([`Daemon::load_agent`]).
    pub(crate) fn for_agent(&self, mut r: Record) -> Record {
        if let (Some(uid), Some(d)) = (self.load_agent, r.detail.as_object_mut()) {
            d.insert("agent_uid".into(), json!(uid));
        }
        r
    }

    /// Append a record; a failure is logged (the event already happened).
    fn audit(&self, r: Record) {
        if let Err(e) = audit::append_or_fail(&self.cfg.audit, self.for_agent(r)) {
            log_line(&format!(
                "audit record not written: {}",
                term(&e.chain().join(": "))
            ));
        }
    }

    /// Append a record that must be written before going on (fail closed).
    fn audit_or_fail(&self, r: Record) -> Result<(), RpcError> {
        audit::append_or_fail(&self.cfg.audit, self.for_agent(r)).map_err(|e| {
            load_failed(
                format!("cannot write the audit record: {}", e.chain().join(": ")),
                refusal_data(&e),
            )
        })
    }

    /// The `denial` record of a refused `plugin_load` (`base`: what is known of the package).
    fn deny_load(&self, base: Record, path: &Path, stage: &str, kind: &str, error: &str) {
        let mut rec = base;
        rec.event = Event::Denial;
        rec.outcome = "refused".into();
        rec.set_detail(
            json!({"request": "plugin_load", "package": path.display().to_string(),
                            "stage": stage, "kind": kind, "error": error}),
        );
        self.audit(rec);
    }

    /// A name could not be looked up because the store's registry cannot be read (corrupt,
    /// unknown schema, a non-plain directory): refused, audited, with the store's own kind and
    /// exit code (`store.corrupt`, 106), never taken for a missing file.
    fn store_unreadable(&self, entry: &Path, e: crate::store::StoreError) -> RpcError {
        let err = crate::cmd::store::store_err(e);
        let msg = format!(
            "cannot look up `{}`: {}",
            entry.display(),
            err.chain().join(": ")
        );
        self.deny_load(
            Record::new(Event::Denial, ""),
            entry,
            "store",
            err.kind(),
            &msg,
        );
        load_failed(msg, refusal_data(&err))
    }

    /// `[serve] load` at start, and `plugin_load` at run time (seed 000: the operator does not
    /// manage load order). Every entry (a package file, or an installed plugin's name) is
    /// verified first; a dependency neither in the list nor loaded is added from the store when
    /// an installed version satisfies it; then the plugins are launched dependencies first. A
    /// dependency neither listed, loaded nor installed in a fitting version (a loaded plugin
    /// counts in the version it runs), or a cycle, refuses before anything is launched, naming
    /// the chain; so does an entry the node does not admit ([`Self::admit`]). A launch that
    /// fails after others started names them (`data.started`; they stay loaded). `Err` carries
    /// the entry it concerns. The names come back in launch order: an entry's dependencies
    /// before it.
    pub fn load_start_set(
        &mut self,
        entries: &[String],
    ) -> Result<Vec<String>, (String, RpcError)> {
        let state_dir = self.cfg.trust.state_dir.clone();
        let mut set: Vec<(String, std::path::PathBuf, VerifiedPackage)> = Vec::new();
        // The plugins taken from the store (by name, or as a dependency) rather than from a
        // file the operator named: the store's changes apply to them (`check_store_now`).
        let mut from_store = BTreeSet::new();
        for e in entries {
            // An installed plugin's name loads its package as installed when it is opened,
            // should an upgrade or removal commit once it was looked up (store::with_package).
            let (path, pkg) = crate::store::with_package(
                &state_dir,
                Path::new(e),
                |p| self.try_verify_for_load(p),
                LoadFailure::is_gone,
            )
            .map_err(|err| (e.clone(), self.store_unreadable(Path::new(e), err)))?;
            let pkg = self
                .loaded_or_refused(&path, pkg)
                .map_err(|err| (e.clone(), err))?;
            if set
                .iter()
                .any(|(_, _, p)| p.manifest.name() == pkg.manifest.name())
            {
                let msg = format!("`{}` is listed twice", pkg.manifest.name());
                return Err((e.clone(), RpcError::new(codes::ALREADY_LOADED, msg)));
            }
            self.admit(&path, &pkg).map_err(|err| (e.clone(), err))?;
            // `with_package` hands a file back as it was given, a name as its stored package.
            if path.as_path() != Path::new(e) {
                from_store.insert(pkg.manifest.name().to_string());
            }
            set.push((e.clone(), path, pkg));
        }
        // A package an earlier daemon quarantined is loaded without running (answered at once,
        // quarantined): nothing is launched for it, so nothing it needs is looked for.
        let node = |this: &Self, p: &VerifiedPackage| {
            let mut n = p.manifest.dep_node();
            if this.quarantines.holds(&n.name, &p.report.package_sha256) {
                n.requires.clear();
            }
            n
        };
        // Close the set over installed dependencies (a bounded walk: each round adds one).
        while let Some((needed_by, dep)) = set.iter().find_map(|(_, _, p)| {
            node(self, p)
                .requires
                .into_keys()
                .find(|d| {
                    !set.iter().any(|(_, _, q)| q.manifest.name() == d)
                        && !self.plugins.contains_key(d)
                })
                .map(|d| (p.manifest.name().to_string(), d))
        }) {
            let installed = crate::store::with_installed(
                &state_dir,
                &dep,
                |p| self.try_verify_for_load(p),
                LoadFailure::is_gone,
            )
            .map_err(|err| (dep.clone(), self.store_unreadable(Path::new(&dep), err)))?;
            let Some((path, pkg)) = installed else {
                break; // named by the order check below
            };
            let pkg = self
                .loaded_or_refused(&path, pkg)
                .map_err(|err| (dep.clone(), err))?;
            if pkg.manifest.name() != dep {
                let msg = format!(
                    "the store's package for `{dep}` is named `{}`",
                    pkg.manifest.name()
                );
                return Err((dep, load_failed(msg, Value::Null)));
            }
            self.admit(&path, &pkg).map_err(|err| (dep.clone(), err))?;
            log_line(&format!(
                "loading installed {} {} (needed by {})",
                term(&dep),
                term(&pkg.manifest.version().to_string()),
                term(&needed_by)
            ));
            from_store.insert(dep.clone());
            set.push((dep.clone(), path, pkg));
        }
        let nodes: Vec<_> = set.iter().map(|(_, _, p)| node(self, p)).collect();
        let in_set: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let loaded = self.loaded_nodes(|dep| in_set.contains(dep));
        let order = stockade_policy::deps::plan_install(&loaded, &nodes).map_err(|err| {
            let entry = set
                .iter()
                .find(|(_, _, p)| p.manifest.name() == err.first_plugin())
                .map_or_else(|| err.first_plugin().to_string(), |(e, _, _)| e.clone());
            (
                entry,
                load_failed(
                    err.to_string(),
                    refusal_data(&crate::cmd::store::dep_err(err)),
                ),
            )
        })?;
        // Every entry was admitted above, before any launches: a refusal leaves nothing running.
        let mut names = Vec::new();
        for name in order {
            let Some(i) = set.iter().position(|(_, _, p)| p.manifest.name() == name) else {
                continue;
            };
            let (entry, path, pkg) = set.swap_remove(i);
            match self.start_verified(&path, pkg) {
                Ok(n) => {
                    if let Some(e) = self.plugins.get_mut(&n) {
                        e.from_store = from_store.contains(&n);
                    }
                    names.push(n)
                }
                Err(mut err) if !names.is_empty() => {
                    err.message =
                        format!("{} (started before it: {})", err.message, names.join(", "));
                    let mut data = match err.data.take() {
                        Some(Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    };
                    data.insert("started".into(), json!(names));
                    err.data = Some(Value::Object(data));
                    return Err((entry, err));
                }
                Err(err) => return Err((entry, err)),
            }
        }
        Ok(names)
    }

    /// Verification of a package to load, audited; a refusal is audited as a denial too.
    /// [`Self::try_verify_for_load`]'s outcome for a load: a package found gone is refused as
    /// any other verification failure (audited, `load_failed` with its kind), once the store
    /// said it is not being replaced (`store::with_installed`).
    fn loaded_or_refused(
        &mut self,
        path: &Path,
        r: Result<VerifiedPackage, LoadFailure>,
    ) -> Result<VerifiedPackage, RpcError> {
        match r {
            Ok(pkg) => Ok(pkg),
            Err(LoadFailure::Refused(err)) => Err(err),
            Err(LoadFailure::Gone(e)) => Err(self.verification_refused(path, e)),
        }
    }

    /// The license and trust configuration read again, then the package at `path` verified for
    /// a load. A package file that is not there is [`LoadFailure::Gone`], said before anything
    /// is audited: an installed plugin's may have been replaced by an upgrade since it was
    /// looked up, and is looked up again ([`crate::store::with_installed`]).
    fn try_verify_for_load(&mut self, path: &Path) -> Result<VerifiedPackage, LoadFailure> {
        if let Err((stage, r)) = self.reread_configuration(Instant::now()) {
            self.deny_load(
                Record::new(Event::Denial, ""),
                path,
                stage,
                r.kind,
                &r.message,
            );
            return Err(LoadFailure::Refused(r.load_failed()));
        }
        let pkg = match self.verify_package(path) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Err(LoadFailure::Gone(e)),
            Err(e) => return Err(LoadFailure::Refused(self.verification_refused(path, e))),
        };
        self.audit_or_fail(audit::for_report(Event::Verification, "ok", &pkg.report))
            .map_err(LoadFailure::Refused)?;
        Ok(pkg)
    }

    /// What every admission of a package (a load, a store update) reads again first. The
    /// license can change while the daemon runs (`stockade node license install`, a freeze),
    /// for the certificate scopes and the frozen rule alike: one that cannot be read (`node`,
    /// 78), or is rolled back (an older one put back, or the file deleted after an install:
    /// `license.rollback` / `license.missing`, 84), admits nothing. So can the trust directory
    /// (a new revocation list, a root added or removed) and, after SIGHUP, the policy's
    /// `[trust]`: every verification reads them again, as `run` would. A configuration or
    /// license that changed is applied to the loaded plugins too: the daemon knows it. Refused:
    /// the stage (`license` or `trust`) and why.
    fn reread_configuration(&mut self, now: Instant) -> Result<(), (&'static str, TrustRefusal)> {
        let license_changed = self.reread_license().map_err(|r| ("license", r))?;
        let trust_changed = self
            .reread_trust()
            .map_err(|e| ("trust", TrustRefusal::unusable(&e)))?;
        if trust_changed || license_changed {
            self.check_all(now, NEW_TRUST, "trust_change", None)
        }
        Ok(())
    }

    /// The package at `path` verified under the daemon's trust configuration and license now,
    /// extracted under the state directory, locked while loaded: a killed daemon's trees are
    /// swept by the next one (`serve` start), never left in the temp directory.
    fn verify_package(&self, path: &Path) -> Result<VerifiedPackage, VerifyError> {
        let trees = Trees::new(&self.cfg.trust.state_dir, 0);
        open_verified_among(
            path,
            &self.cfg.trust,
            &self.cfg.node,
            unix_now(),
            &trees,
            &std::env::temp_dir(),
        )
    }

    /// The `verification` record of a package refused at its verification.
    fn verification_refused_record(path: &Path, e: &VerifyError) -> Record {
        let mut rec = Record::new(Event::Verification, "refused");
        rec.detail = json!({"file": path.display().to_string(), "kind": e.kind(),
                            "error": e.to_string()});
        rec
    }

    fn verification_refused(&mut self, path: &Path, e: VerifyError) -> RpcError {
        let (kind, exit, hint) = (e.kind(), e.exit().code(), e.hint());
        if let Err(err) = self.audit_or_fail(Self::verification_refused_record(path, &e)) {
            return err;
        }
        // With its causes: the step alone ("revocation check failed") does not name the file
        // at fault (a state file a newer Stockade wrote, say, which the hint calls "the one
        // named").
        let msg = format!(
            "package `{}` failed verification: {}",
            path.display(),
            crate::package::verify::error_chain(&e)
        );
        self.deny_load(
            Record::new(Event::Denial, ""),
            path,
            "verification",
            kind,
            &msg,
        );
        load_failed(msg, json!({"kind": kind, "exit": exit, "hint": hint}))
    }

    /// Whether a verified package may be loaded at all: its name is not loaded already and a
    /// frozen license admits it (a frozen-license refusal is audited as a denial).
    /// [`Self::load_start_set`] asks this of every entry before it launches any, so a refusal
    /// never leaves earlier entries running.
    fn admit(&self, path: &Path, pkg: &VerifiedPackage) -> Result<(), RpcError> {
        let name = pkg.manifest.name();
        if self.plugins.contains_key(name) {
            return Err(RpcError::new(
                codes::ALREADY_LOADED,
                format!("a plugin named `{name}` is already loaded"),
            ));
        }
        // A frozen license admits nothing new (seed 000): only the installed package itself.
        let frozen = crate::store::frozen_admission(
            &self.cfg.trust.state_dir,
            &self.cfg.node,
            name,
            &pkg.report.package_sha256,
        );
        if let Err(serial) = frozen {
            let msg = crate::store::frozen_refusal(&serial, name);
            let base = audit::for_report(Event::Denial, "", &pkg.report);
            self.deny_load(base, path, "license", "license_frozen", &msg);
            let exit = crate::exit::Exit::LicenseFrozen.code();
            return Err(load_failed(
                msg,
                json!({"kind": "license_frozen", "exit": exit, "license": serial,
                       "hint": crate::store::FROZEN_HINT}),
            ));
        }
        Ok(())
    }

    /// Admission ([`Self::admit`], quarantine) and the first launch of a verified package.
    fn start_verified(&mut self, path: &Path, pkg: VerifiedPackage) -> Result<String, RpcError> {
        self.admit(path, &pkg)?;
        let name = pkg.manifest.name().to_string();
        // What a trust mode below strict let pass goes to the daemon's log as `run` puts it on
        // stderr; `plugin_status` carries it for as long as the plugin is loaded.
        for w in &pkg.report.warnings {
            log_line(&format!("plugin {}: warning: {}", term(&name), term(w)));
        }
        let recorded = self
            .quarantines
            .on_load(&name, &pkg.report.package_sha256)
            .unwrap_or_else(|err| {
                // Only dropping another package's record can fail here; it does not match
                // this package, so the load goes on.
                log_line(&format!(
                    "plugin {}: cannot drop the quarantine recorded for another package: {}",
                    term(&name),
                    term(&err.to_string())
                ));
                OnLoad::Clear
            });
        // The plugin's own uid must be able to read what was verified.
        std::fs::set_permissions(pkg.dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| load_failed(format!("cannot prepare the package: {e}"), Value::Null))?;
        let base = audit::for_report(Event::Launch, "", &pkg.report);
        let mut entry = Entry {
            pkg,
            slot: None,
            phase: Phase::Running,
            restarts: 0,
            crashes: CrashWindow::default(),
            hooks: BTreeSet::new(),
            granted: Vec::new(),
            last_exit: None,
            ever_ready: false,
            pending_load: None,
            pending_unload: Vec::new(),
            host: HostPolicy::default(),
            host_generation: None,
            audit: base,
            spare: None,
            decision: None,
            launch_started: None,
            last_launch_us: None,
            warm: false,
            trust_refusal: None,
            trust_retries: 0,
            host_retries: 0,
            expires: None,
            grants_expire: None,
            relaunch_for: None,
            restart_requested: None,
            grant_targets: BTreeSet::new(),
            grant_inputs: Vec::new(),
            from_store: false,
            update: None,
            store_change: None,
            held: None,
            update_from: None,
            unload_reason: None,
        };
        entry.expires = chain_expiry(&entry.pkg);
        self.expiry_cache.set(None);
        if let OnLoad::Quarantined(q) = recorded {
            return self.load_quarantined(name, entry, &q);
        }
        let slot = match self.launch(&mut entry, Event::Launch, json!({})) {
            Ok(s) => s,
            Err((stage, err)) => {
                let kind = err
                    .data
                    .as_ref()
                    .and_then(|d| d["kind"].as_str())
                    .unwrap_or("");
                self.deny_load(entry.audit.clone(), path, stage, kind, &err.message);
                return Err(err);
            }
        };
        entry.slot = Some(slot);
        self.plugins.insert(name.clone(), entry);
        Ok(name)
    }

    /// Load the package an earlier daemon quarantined, without launching it: loaded, quarantined,
    /// its declared hooks answered by their failure mode, as if it had crash-looped here.
    fn load_quarantined(
        &mut self,
        name: String,
        mut entry: Entry,
        q: &Quarantined,
    ) -> Result<String, RpcError> {
        entry.phase = Phase::Quarantined;
        // Its incarnations were ready before they crashed: after `plugin_restart`, a crash is
        // counted like any other, not taken for a failed load.
        entry.ever_ready = true;
        // Its hooks are answered by their failure mode, which is the plugin's own host policy:
        // the default one would answer a hook the operator made fail closed (a Sertone
        // firewall's) as failing open. Decided, not recorded: nothing is granted or launched.
        let lp = crate::plugin_policy::decide(
            &self.cfg.policy,
            entry.pkg.view(),
            &self.cfg.policy_root,
            self.cfg.allow_flags.as_ref(),
            unix_now(),
        )
        .map_err(|err| policy_refusal(&err))?;
        entry.host = lp.0.host;
        entry.host_generation = Some(self.policy_generation);
        let mut rec = entry.audit.clone();
        rec.event = Event::Quarantine;
        rec.outcome = "crash_loop".into();
        rec.set_detail(
            json!({"restored": true, "since": q.since, "crashes": q.crashes,
                            "window_ms": q.window_ms}),
        );
        self.audit_or_fail(rec)?;
        let hooks = entry
            .pkg
            .manifest
            .manifest()
            .hooks
            .iter()
            .cloned()
            .collect();
        self.plugins.insert(name.clone(), entry);
        self.set_hooks(&name, hooks);
        self.note_state(
            &name,
            "quarantined",
            json!({"crashes": q.crashes, "window_ms": q.window_ms, "since": q.since, "restored": true,
                   "reason": {"kind": "crash_loop",
                              "message": format!("quarantined by an earlier run of the daemon at {} ({} crashes within {} ms); send plugin_restart to try again", q.since, q.crashes, q.window_ms)}}),
        );
        Ok(name)
    }

    /// Launch an incarnation of `e` under its effective policy, computed now (as `run` does),
    /// and audit it as `event` (`launch` or `restart`). On failure, which stage refused it
    /// (`policy`, `launch`, `audit`) and the agent's error.
    fn launch(
        &mut self,
        e: &mut Entry,
        event: Event,
        extra: Value,
    ) -> Result<usize, (&'static str, RpcError)> {
        // `launch_us` counts everything from here: policy, key/value store, sandbox, handshake.
        let started = Instant::now();
        let first_launch = matches!(event, Event::Launch);
        let generation = self.policy_generation;
        let pkg = &e.pkg;
        let name = pkg.manifest.name().to_string();
        // The warm pool: a spare whose decision involved no grant, computed under the policy
        // still in force, is used with that decision (it cannot have changed); otherwise the
        // decision is computed afresh and the spare serves only if its sandbox policy is the
        // new decision's, to the byte.
        let (lp, spare) = match e.spare.take() {
            Some(sp) if sp.decision.reusable && sp.generation == generation => {
                (sp.decision, Some(sp.held))
            }
            spare => {
                let lp = crate::plugin_policy::for_launch(
                    &self.cfg.policy,
                    pkg.view(),
                    &self.cfg.policy_root,
                    self.cfg.allow_flags.as_ref(),
                    &self.cfg.audit,
                    unix_now(),
                )
                .map_err(|err| (decision_stage(err.kind()), policy_refusal(&err)))?;
                let (held, stale) = match spare {
                    Some(sp) if sp.decision.sandbox == lp.sandbox => (Some(sp.held), None),
                    stale => (None, stale),
                };
                self.discard_spare(&name, stale);
                (lp, held)
            }
        };
        e.audit = lp.base.clone();
        e.grants_expire = lp.grants_expire;
        self.expiry_cache.set(None);
        e.grant_targets = lp.granted_targets.clone();
        e.grant_inputs = lp.grant_inputs.clone();
        for w in &lp.withheld {
            log_line(&format!(
                "plugin {}: withheld {} ({}): {}",
                term(&name),
                term(&w.target),
                w.kind,
                term(&w.message)
            ));
        }
        let state = &self.cfg.trust.state_dir;
        // Only for a plugin that can be granted kv_get or kv_put: no other makes `<state>/kv`.
        let kv = crate::host::kv::reachable(&pkg.manifest)
            .then(|| {
                crate::host::kv::store_name(state, pkg).and_then(|(store, note)| {
                    if let Some(note) = note {
                        log_line(&format!("plugin {}: warning: {}", term(&name), term(&note)));
                    }
                    KvStore::open(state, &store, lp.host.kv.clone())
                })
            })
            .transpose()
            .map_err(|err| {
                // With its causes, as `run` prints them: the store's error alone ("cannot load
                // key/value store `…`") did not say why (too large, not JSON, another's file).
                let hint = err.open_hint();
                let mut ce =
                    crate::error::CmdError::new(crate::exit::Exit::Config, "kv_store", err);
                if let Some(h) = hint {
                    ce = ce.hint(h);
                }
                let why = ce.chain().join(": ");
                (
                    "launch",
                    load_failed(
                        format!("cannot open the key/value store: {why}"),
                        refusal_data(&ce),
                    ),
                )
            })?;
        let mut config = BTreeMap::new();
        config.insert("plugin_name".to_string(), json!(name));
        config.insert(
            "runtime_version".to_string(),
            json!(env!("CARGO_PKG_VERSION")),
        );
        if let Some(id) = &self.cfg.node.hardware_id {
            config.insert("node_id".to_string(), json!(id));
        }
        let failed = |this: &Self, err: sandbox::LaunchError| {
            let (ce, mut detail) = crate::cmd::exec::launch_failure(err);
            let mut rec = lp.base.clone();
            rec.event = event;
            rec.outcome = "failed".into();
            audit::keep_signature_status(&lp.base, &mut detail);
            rec.detail = Value::Object(detail);
            this.audit(rec);
            (
                "launch",
                load_failed(
                    format!("cannot launch the plugin: {}", ce.chain().join(": ")),
                    refusal_data(&ce),
                ),
            )
        };
        // A spare built under this very policy skips the construction. One that cannot be
        // released (its init ended while held: killed from outside, or by an ancestor group's
        // OOM killer) says nothing about the plugin: the launch is made cold instead of failing
        // and being counted as a crash.
        let cold =
            || crate::plugin_policy::launch_spec(pkg.view(), &lp.sandbox).and_then(sandbox::launch);
        // A spare handed back is given up like any other (`discard_spare`: killed, reaped by the
        // loop), never dropped here, which would wait for an init that may not end.
        let mut given_back = None;
        let launched = match spare.map(sandbox::Held::release_or_return) {
            Some(Ok(sb)) => {
                e.warm = true;
                Ok(sb)
            }
            Some(Err((err, back))) => {
                log_line(&format!(
                    "plugin {}: the warm spare could not be used ({}); launching cold",
                    term(&name),
                    term(&crate::cmd::exec::launch_error(err).chain().join(": "))
                ));
                given_back = back;
                e.warm = false;
                cold()
            }
            None => {
                e.warm = false;
                cold()
            }
        };
        if let Some(held) = given_back {
            self.sup.kill_and_reap(&name, held);
        }
        let mut sb = match launched {
            Ok(sb) => sb,
            Err(err) => return Err(failed(self, err)),
        };
        e.launch_started = Some(started);
        for d in sb.report().degradations() {
            log_line(&format!("plugin {}: warning: {}", term(&name), term(&d)));
        }
        // Kept only for the warm pool's next spare (~17 KiB per plugin otherwise wasted).
        e.decision = self.cfg.serve.serve.warm.then(|| (generation, lp.clone()));
        let mut rec = lp.base.clone();
        rec.event = event;
        rec.outcome = "ok".into();
        rec.layers = audit::enforced_layers(sb.report());
        let mut detail = json!({"pid": sb.pid(), "granted": lp.host.capabilities.allow});
        if let Some(d) = detail.as_object_mut() {
            d.extend(audit::launch_build(sb.report()));
        }
        if let (Some(d), Value::Object(x)) = (detail.as_object_mut(), extra) {
            d.extend(x);
        }
        if let Some(d) = detail.as_object_mut() {
            audit::keep_signature_status(&lp.base, d);
        }
        rec.detail = detail;
        e.audit.layers = rec.layers.clone();
        if let Err(err) = self.audit_or_fail(rec) {
            // No unaudited plugin: undo the launch (without a blocking wait in the loop).
            self.sup.kill_and_reap(&name, Box::new(sb));
            return Err(("audit", err));
        }
        // What the agents are told of a degraded layer keeps its reason: taken before the
        // layers' details are shed.
        let degraded = sb.report().degraded();
        sb.shed_layer_details();
        let h = &self.cfg.serve.health;
        let health = (h.ping_interval_ms > 0).then(|| Health {
            interval: Duration::from_millis(h.ping_interval_ms),
            timeout: Duration::from_millis(h.ping_timeout_ms),
        });
        if self.front.is_some() && first_launch {
            warn_sertone_deadline(&name, e, &lp.host, self.cfg.serve.sertone.deadline_ms);
        }
        e.host = lp.host.clone();
        e.host_generation = Some(generation);
        // Hooks that failed open and that this launch's package no longer declares (an
        // update's), or that fail closed under its policy: their runs end.
        let recs = self.bypasses.relaunched(
            &name,
            |hook| e.declares(hook),
            |hook| lp.host.failure(hook) == stockade_policy::protocol::host::FailureMode::Open,
        );
        self.audit_bypasses_of(recs, Some(&e.audit));
        let pcfg = PluginConfig {
            ceiling: pkg.report.capability_ceiling.iter().copied().collect(),
            manifest: pkg.manifest.clone(),
            policy: lp.host,
            kv,
            config,
            health,
            degraded,
            admitted: pkg.report.admitted(),
        };
        // The handshake deadline runs from here, when the program exists: not from when the
        // request arrived, before verification, extraction and the sandbox's construction
        // (which for a large package on a slow or busy host can take most of it).
        self.sup.add(pcfg, sb, Instant::now()).map_err(|err| {
            (
                "launch",
                load_failed(format!("cannot watch the plugin: {err}"), Value::Null),
            )
        })
    }

    /// Plugin `name` has no incarnation running ([`Entry::runs`]) and its hook sections were
    /// computed under an earlier policy generation (its last launch came before a SIGHUP, or
    /// the reload came while it ran and it crashed since): they are computed again under the
    /// policy in force ([`crate::plugin_policy::hooks_for`]), which its calls are answered by
    /// (`Daemon::unavailable_entry`, the Sertone front's rules) until its next launch. A hook
    /// that was failing open and fails closed now ends its run (a `fail_closed` `bypass`
    /// record), as at a relaunch. A policy that does not resolve for it (its next launch would
    /// be refused) makes every hook of it fail closed. Called for every plugin at a reload and
    /// before a call is answered for one that cannot take it.
    pub(crate) fn refresh_idle_hooks(&mut self, name: &str) {
        use stockade_policy::protocol::host::{FailureMode, HookPolicy};
        let generation = self.policy_generation;
        let Some(e) = self.plugins.get(name) else {
            return;
        };
        if e.host_generation == Some(generation) || e.runs(&self.sup) {
            return;
        }
        let hooks = match crate::plugin_policy::hooks_for(&self.cfg.policy, e.pkg.view()) {
            Ok(h) => h,
            Err(err) => {
                log_line(&format!(
                    "plugin {}: every hook fails closed until its next launch: the policy in \
                     force does not resolve for it: {}",
                    term(name),
                    term(&err.to_string())
                ));
                let closed = HookPolicy {
                    failure: Some(FailureMode::Closed),
                    ..HookPolicy::default()
                };
                e.pkg
                    .manifest
                    .manifest()
                    .hooks
                    .iter()
                    .chain(&e.hooks)
                    .map(|h| (h.clone(), closed.clone()))
                    .collect()
            }
        };
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        e.host.hooks = hooks;
        e.host_generation = Some(generation);
        let host = &e.host;
        let recs = self
            .bypasses
            .policy_changed(name, |hook| host.failure(hook) == FailureMode::Open);
        let base = e.audit.clone();
        self.audit_bypasses_of(recs, Some(&base));
    }

    /// `plugin_load {package}`: answered once the plugin is ready (or failed).
    pub(crate) fn plugin_load(&mut self, conn: usize, id: Value, p: &Value) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Load {
            package: String,
        }
        let r = params::<Load>(p).and_then(|l| {
            if self.stopping {
                return Err(RpcError::new(codes::UNAVAILABLE, "the daemon is stopping"));
            }
            // An installed plugin's name loads its stored package (verified again like any
            // file); an existing file of that name wins.
            // Its installed dependencies that are not loaded yet are loaded first, as for
            // `[serve] load`; the plugin named is the last one launched.
            // Every record of this load names the agent that asked for it.
            self.load_agent = self.peer_uid(conn);
            let names = self.load_start_set(std::slice::from_ref(&l.package));
            self.load_agent = None;
            let names = names.map_err(|(_, err)| err)?;
            names
                .last()
                .cloned()
                .ok_or_else(|| load_failed("nothing was loaded", Value::Null))
        });
        match r {
            // Quarantined by an earlier daemon: loaded as it is, answered now.
            Ok(name) if self.plugins.get(&name).map(|e| e.phase) == Some(Phase::Quarantined) => {
                let st = self.status(&name);
                self.send(conn, &response_ok(&id, st));
            }
            Ok(name) => {
                if let Some(e) = self.plugins.get_mut(&name) {
                    e.pending_load = Some((conn, id));
                }
            }
            Err(e) => self.send(conn, &response_err(&id, &e)),
        }
    }

    /// Whether connection `conn` waits for a `plugin_load` (answered once ready) or a
    /// `plugin_unload` (once gone).
    pub(crate) fn fleet_awaits(&self, conn: usize) -> bool {
        self.plugins.values().any(|e| {
            e.pending_load.as_ref().is_some_and(|(c, _)| *c == conn)
                || e.pending_unload.iter().any(|(c, _)| *c == conn)
        })
    }

    /// `plugin_unload {name}`: graceful stop, then cgroup kill after the grace period;
    /// answered once it is gone.
    pub(crate) fn plugin_unload(&mut self, conn: usize, id: Value, p: &Value, now: Instant) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Unload {
            name: String,
            #[serde(default)]
            force: bool,
        }
        let checked = params::<Unload>(p).and_then(|u| {
            self.name_param(&json!({"name": u.name}))?;
            // As `stockade remove` refuses to remove what an installed plugin needs, a plugin
            // another loaded one depends on stays unless forced (then the log names them).
            let needed_by = self.loaded_dependents(&u.name);
            if !needed_by.is_empty() && !u.force {
                let msg = format!("{} is needed by {}", u.name, needed_by.join(", "));
                return Err(RpcError::new(codes::IN_USE, msg)
                    .with_data(json!({"dependents": needed_by, "hint": "unload those first, or pass \"force\": true"})));
            }
            if !needed_by.is_empty() {
                log_line(&format!(
                    "plugin {}: unloaded by force; now without a dependency: {}",
                    term(&u.name),
                    term(&needed_by.join(", "))
                ));
            }
            Ok((u.name, u.force, needed_by))
        });
        let (name, force, needed_by) = match checked {
            Ok(n) => n,
            Err(e) => return self.send(conn, &response_err(&id, &e)),
        };
        // An agent took a plugin out of the daemon: said in the log as the store's unload is
        // (`removal` `unloaded`), with who asked, whether by force past its dependents, and
        // whether it ended a quarantine (recorded in the state directory, lifted with it). Before
        // audit-135 only its `termination` said it stopped — a plugin without a process
        // (quarantined, waiting to restart) left no record at all.
        let agent = self.peer_uid(conn);
        let e = &self.plugins[&name];
        // Already being unloaded (another request's, still stopping): answered with it once it
        // is gone; it unloads nothing more, so it writes no second record (review-138).
        if e.phase == Phase::Unloading {
            let e = self.plugins.get_mut(&name).expect("checked");
            e.pending_unload.push((conn, id));
            return;
        }
        let quarantined = e.phase == Phase::Quarantined;
        let mut rec = e.audit.clone();
        rec.event = Event::Removal;
        rec.outcome = "unloaded".into();
        rec.set_detail(json!({"request": "plugin_unload", "reason": "unloaded",
                            "agent_uid": agent, "force": force, "dependents": needed_by,
                            "quarantined": quarantined}));
        // Unloading a quarantined plugin lifts its quarantine (the one recorded in the state
        // directory): no quarantine is lifted unaudited, so its record is required, as a
        // launch's is, and the unload refused when it cannot be written (review-138). Stopping
        // a running plugin takes nothing away from what confines it: best-effort, as its
        // termination record is, and made even while another writer holds the log's lock.
        if quarantined {
            if let Err(err) = self.audit_or_fail(rec) {
                return self.send(conn, &response_err(&id, &err));
            }
        } else {
            self.audit(rec);
        }
        let e = self.plugins.get_mut(&name).expect("checked");
        e.pending_unload.push((conn, id));
        e.phase = Phase::Unloading;
        if let Some(slot) = e.slot {
            self.sup.shutdown(slot, now);
        }
        // Without a process (restarting, quarantined) `supervise` finishes it this turn.
    }

    /// The loaded plugins as dependency nodes, each in the version it runs. A requirement is
    /// kept only where it names a loaded plugin or one `keep` names (about to be loaded): one
    /// whose plugin was unloaded by force since does not refuse an unrelated load, while a new
    /// version of a plugin a loaded one needs is still checked against that need.
    fn loaded_nodes(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, DepNode> {
        self.plugins
            .iter()
            .map(|(n, e)| {
                let mut d = e.pkg.manifest.dep_node();
                d.requires
                    .retain(|dep, _| self.plugins.contains_key(dep) || keep(dep));
                (n.clone(), d)
            })
            .collect()
    }

    /// Whether what `name` needs is loaded in fitting versions (a quarantine lifted: the plugin
    /// was loaded without looking, as one an earlier daemon quarantined is).
    fn dependencies_loaded(&self, name: &str) -> Result<(), RpcError> {
        let mut loaded = self.loaded_nodes(|_| false);
        if loaded.remove(name).is_none() {
            return Ok(());
        }
        let node = self.plugins[name].pkg.manifest.dep_node();
        stockade_policy::deps::plan_install(&loaded, &[node])
            .map(|_| ())
            .map_err(|err| {
                load_failed(
                    err.to_string(),
                    refusal_data(&crate::cmd::store::dep_err(err)),
                )
            })
    }

    /// The loaded plugins (not being unloaded) whose manifests depend on `name`.
    fn loaded_dependents(&self, name: &str) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|(n, e)| *n != name && e.phase != Phase::Unloading)
            .filter(|(_, e)| e.pkg.manifest.dep_node().requires.contains_key(name))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `plugin_restart {name}`: out of quarantine or backoff at once (crash count cleared); a
    /// running plugin is stopped gracefully first.
    pub(crate) fn plugin_restart(
        &mut self,
        conn: usize,
        p: &Value,
        now: Instant,
    ) -> Result<Value, RpcError> {
        let name = self.name_param(p)?;
        if self.stopping {
            return Err(RpcError::new(codes::UNAVAILABLE, "the daemon is stopping"));
        }
        if self.plugins[&name].phase == Phase::Unloading {
            return Err(RpcError::new(codes::UNAVAILABLE, "the plugin is unloading"));
        }
        // Not launched while what it needs is not loaded in fitting versions: a quarantine
        // lifted, or a plugin held for that (its relaunch would hold it again).
        if matches!(self.plugins[&name].phase, Phase::Quarantined | Phase::Held) {
            self.dependencies_loaded(&name)?;
        }
        // Verified again before anything is stopped or lifted: a package the trust
        // configuration now refuses is not started again. When its certificate itself is
        // refused (revoked, no longer under a pinned root), a running incarnation is stopped too,
        // as at SIGHUP; a refusal of the configuration (an invalid list) only refuses the restart.
        //
        // With a store update admitted and waiting for this relaunch, the refusal of the loaded
        // package is that package's, and the relaunch launches the update, verified again then
        // (`trust_quarantine`, as the periodic check does it): the restart is not refused, and
        // the answer says it is onto the update. Answered with the refusal, the agent was told
        // the restart was refused while the plugin was relaunched on its update.
        if let Err(refusal) = self.recheck(&name, now) {
            let e = &self.plugins[&name];
            let onto_update = refusal.about == About::Package && e.ever_ready && e.update.is_some();
            let err = refusal.load_failed();
            if !onto_update {
                let mut rec = e.audit.clone();
                rec.event = Event::Denial;
                rec.outcome = "refused".into();
                rec.set_detail(json!({"request": "plugin_restart", "stage": "verification",
                                    "kind": refusal.kind, "error": refusal.message}));
                self.audit(rec);
            }
            if refusal.about == About::Package {
                self.trust_quarantine(&name, refusal, "plugin_restart", now);
            }
            if onto_update {
                return Ok(self.restart_answer(&name));
            }
            return Err(err);
        }
        // Lifted on disk first: if that fails the plugin stays quarantined (the record would
        // quarantine it again at the daemon's next start).
        self.quarantines.clear(&name).map_err(|err| {
            RpcError::new(
                codes::UNAVAILABLE,
                format!("cannot lift the recorded quarantine: {err}"),
            )
        })?;
        let agent = self.peer_uid(conn);
        let e = self.plugins.get_mut(&name).expect("checked");
        // A second request before the relaunch is had does not hide the lift the first made.
        let lifted = e.phase == Phase::Quarantined
            || e.restart_requested
                .as_ref()
                .is_some_and(|r| r["quarantine_lifted"] == true);
        e.crashes.clear();
        // The agent's restart, not a relaunch the daemon had pending (its reason would show
        // in this restart's record).
        e.relaunch_for = None;
        e.restart_requested = Some(json!({"agent_uid": agent, "quarantine_lifted": lifted}));
        match e.slot {
            Some(slot) => {
                e.phase = Phase::Relaunch;
                self.sup.shutdown(slot, now);
            }
            None => e.phase = Phase::Restarting(now),
        }
        Ok(self.restart_answer(&name))
    }

    /// `plugin_restart`'s answer: `update` names the store update the relaunch takes
    /// (`{"version", "from_version"}`; checked again at that relaunch, docs/store.md), null
    /// when it relaunches the package loaded.
    fn restart_answer(&self, name: &str) -> Value {
        let update = self.plugins.get(name).and_then(|e| {
            let up = e.update.as_ref()?;
            Some(json!({"version": up.version(),
                        "from_version": e.pkg.manifest.version().to_string()}))
        });
        json!({"name": name, "restarting": true, "update": update})
    }

    /// `plugin_status` of one plugin.
    pub(crate) fn status(&self, name: &str) -> Value {
        let Some(e) = self.plugins.get(name) else {
            return Value::Null;
        };
        let h = e.slot.and_then(|s| self.sup.handle(s));
        json!({
            "name": name,
            "version": e.pkg.manifest.manifest().version.to_string(),
            "signature_status": e.pkg.report.signature_status,
            "warnings": e.pkg.report.warnings,
            "state": e.state_name(&self.sup),
            "pid": h.and_then(|h| h.pid()),
            "restarts": e.restarts,
            "crashes": e.crashes.recent(),
            "quarantined": e.phase == Phase::Quarantined,
            "granted": h.map_or_else(|| e.granted.clone(), |h| h.granted().iter().map(|c| json!(c)).collect()),
            "hooks": e.hooks,
            "degraded": h.map(|h| h.degraded()),
            "in_flight": h.map_or(0, |h| h.in_flight()),
            "last_exit": e.last_exit,
            "launch_us": e.last_launch_us,
            "warm": e.warm,
            "spare": e.spare.is_some(),
            "trust_refusal": e.trust_refusal.as_ref().map(TrustRefusal::to_json),
            "from_store": e.from_store,
            "store_change": e.store_change.as_ref().map(|c| c.to_json(e.phase)),
            "held": e.held.as_ref().filter(|_| e.phase == Phase::Held).map(|h| h.to_json()),
        })
    }

    /// `[serve] warm`: build the next incarnation's sandbox now, while this one runs, so a
    /// restart only forks and executes. Costs one idle init, a uid and a cgroup per plugin.
    fn refill_spare(&mut self, name: &str) {
        if !self.cfg.serve.serve.warm || self.stopping {
            return;
        }
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        if e.spare.is_some() {
            return;
        }
        // The spare takes the decision over; the next launch records it again.
        let Some((generation, decision)) = e.decision.take() else {
            return;
        };
        match crate::plugin_policy::launch_spec(e.pkg.view(), &decision.sandbox)
            .and_then(sandbox::prepare_held)
        {
            Ok(held) => {
                e.spare = Some(Spare {
                    held,
                    decision,
                    generation,
                })
            }
            Err(err) => log_line(&format!(
                "plugin {}: no warm spare: {}",
                term(name),
                term(&crate::cmd::exec::launch_error(err).chain().join(": "))
            )),
        }
    }

    /// Give a warm spare up (stale, quarantined, unloaded): killed, and reaped by the loop — at
    /// once, or later if the kernel holds it (`Supervisor::kill_and_reap`), never waited for
    /// here: its init cannot end while a process of its pid namespace sleeps uninterruptibly
    /// or sits in a frozen cgroup, and a blocking wait would stop every plugin and agent.
    fn discard_spare(&mut self, name: &str, spare: Option<Spare>) {
        if let Some(sp) = spare {
            self.sup.kill_and_reap(name, Box::new(sp.held));
        }
    }

    /// A `plugin_state` from a handle: log it, remember what status needs.
    pub(crate) fn on_plugin_state(&mut self, p: &Value) {
        let name = p["plugin"].as_str().unwrap_or("");
        let state = p["state"].as_str().unwrap_or("");
        let reason = p.get("reason");
        log_line(&state_line(p));
        let mut records = Vec::new();
        if state == "ready" && self.plugins.contains_key(name) {
            let hooks = p["hooks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|h| h.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            self.set_hooks(name, hooks);
        }
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        match state {
            "ready" => {
                e.granted = p["granted"].as_array().cloned().unwrap_or_default();
                // A repeated `ready` (a hook registered after the handshake) keeps the figure.
                if let Some(t) = e.launch_started.take() {
                    e.last_launch_us =
                        Some(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }
            "exited" | "terminated" => {
                e.last_exit = reason.cloned();
                let kind = reason
                    .and_then(|r| r["kind"].as_str())
                    .unwrap_or(state)
                    .to_string();
                let mut events = vec![Event::Termination];
                if kind == "denied" {
                    events.insert(0, Event::Denial);
                }
                let base = e.audit.clone();
                for ev in events {
                    let mut rec = base.clone();
                    rec.event = ev;
                    rec.outcome = kind.clone();
                    // Its `signer_chain` is the launch record's: so is what that says of it.
                    rec.set_detail(p.clone());
                    records.push(rec);
                }
            }
            _ => {}
        }
        for r in records {
            self.audit(r);
        }
        if state == "ready" {
            self.refill_spare(name);
        }
    }

    fn note_state(&mut self, name: &str, state: &str, extra: Value) {
        let mut p = json!({"plugin": name, "state": state});
        if let (Some(o), Value::Object(x)) = (p.as_object_mut(), extra) {
            o.extend(x);
        }

        let n = stockade_policy::protocol::message::notification("plugin_state", p);
        self.sup.to_agent.push(n);
    }

    /// When the earliest certificate chain of a loaded plugin, or grant a running incarnation
    /// was launched with, expires, not yet acted on ([`Self::check_expiries`]); the loop wakes
    /// up then.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        let at = match self.expiry_cache.get() {
            Some(at) => at,
            None => {
                let at = self
                    .plugins
                    .values()
                    .filter(|e| !matches!(e.phase, Phase::Quarantined | Phase::Unloading))
                    .flat_map(|e| [e.expires, e.running_grants_expire()])
                    .flatten()
                    .min();
                self.expiry_cache.set(Some(at));
                at
            }
        }?;
        Some(Instant::now() + expiry_wait(at, unix_now()))
    }

    /// Every loaded plugin whose certificate chain has expired by now is checked again
    /// ([`Self::check_loaded`]) and, refused (`validity.expired`, 83), stopped and quarantined
    /// as SIGHUP would ([`Self::trust_quarantine`], `detail.request` `"expiry"`): the daemon
    /// knows when a certificate expires, so an expired plugin does not run on until its next
    /// restart or a SIGHUP. Each expiry is checked once: under `--trust-mode warn` the plugin
    /// runs on with the warning, as at a restart. A running incarnation whose launch honoured a
    /// grant that has expired by now is stopped and relaunched at once ([`Phase::Relaunch`],
    /// no crash counted; [`Entry::relaunch_for`] says why in the `restart` record): the launch
    /// computes the policy afresh and withholds the item.
    pub(crate) fn check_expiries(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.expiry_cache.set(None);
        let clock = unix_now();
        let due: Vec<String> = self
            .plugins
            .iter_mut()
            .filter(|(_, e)| !matches!(e.phase, Phase::Quarantined | Phase::Unloading))
            .filter(|(_, e)| e.expires.is_some_and(|at| at <= clock))
            .map(|(n, e)| {
                e.expires = None;
                n.clone()
            })
            .collect();
        let granted: Vec<String> = self
            .plugins
            .iter_mut()
            .filter(|(_, e)| e.running_grants_expire().is_some_and(|at| at <= clock))
            .map(|(n, e)| {
                e.grants_expire = None;
                n.clone()
            })
            .collect();
        for name in granted {
            let e = self.plugins.get_mut(&name).expect("present");
            let Some(slot) = e.slot else { continue };
            log_line(&format!(
                "grant expiry: plugin {}: a grant its launch honoured has expired; relaunching \
                 it under the policy in force",
                term(&name)
            ));
            e.phase = Phase::Relaunch;
            e.relaunch_for = Some("grant_expiry");
            self.sup.shutdown(slot, now);
        }
        for name in due {
            match self.check_loaded(&name) {
                Ok(()) => {}
                Err(r) if r.about == About::Package => {
                    log_line(&format!(
                        "certificate expiry: plugin {}: {}: {}; stopping it",
                        term(&name),
                        r.kind,
                        term(&r.message)
                    ));
                    self.trust_quarantine(&name, r, "expiry", now);
                }
                Err(r) => log_line(&format!(
                    "certificate expiry: plugin {}: {}: {}; {}",
                    term(&name),
                    r.kind,
                    term(&r.message),
                    r.consequence()
                )),
            }
        }
    }

    /// When the periodic trust check is due (`[health] trust_check_interval_ms` after the last
    /// one; none when it is 0, while no plugin is loaded — a load reads the configuration
    /// anyway — or once stopping).
    pub(crate) fn next_trust_check(&self) -> Option<Instant> {
        let every = self.cfg.serve.health.trust_check_interval_ms;
        if self.stopping || every == 0 || self.plugins.is_empty() {
            return None;
        }
        Some(self.trust_checked + Duration::from_millis(every))
    }

    /// The periodic trust check: the license and the trust configuration read again
    /// ([`Self::reread_license`], [`Self::reread_trust`]) and, when either changed, every loaded
    /// plugin checked against them as SIGHUP checks them ([`Self::check_all`], `detail.request`
    /// `"trust_change"`): a revocation list put in the trust directory, or a root key removed,
    /// stops the plugins it refuses within the interval, no `systemctl reload` needed. A few
    /// small files, nothing read when nothing changed beyond them. One that cannot be used is
    /// logged once (and once more when it can be used again), not at every check; as at
    /// SIGHUP, it stops nothing and the configuration in force is kept.
    pub(crate) fn check_trust_now(&mut self, now: Instant) {
        self.trust_checked = now;
        let license = self.reread_license();
        let reread = self.reread_trust();
        let problem = match (&license, &reread) {
            (Err(r), _) => Some(r.message.clone()),
            (_, Err(e)) => Some(e.chain().join(": ")),
            _ => None,
        };
        if problem != self.trust_check_said {
            match &problem {
                Some(p) => log_line(&format!("trust check: {REFUSES}: {}", term(p))),
                None => {
                    log_line("trust check: the trust configuration and license can be used again")
                }
            }
            self.trust_check_said = problem;
        }
        // A list or root that changed is applied even when the license cannot be read now (the
        // one in force is kept): a revocation is never held back by another file's trouble.
        if matches!(license, Ok(true)) || matches!(reread, Ok(true)) {
            self.check_all(now, "trust check", "trust_change", None);
        }
        self.check_grants_now(now);
        self.check_store_now(now, false);
    }

    /// Every running plugin whose launch honoured grants has them checked again (the grant
    /// files and operator keys read now, under the policy in force): one a target of which no
    /// grant authorises any longer — its grant file removed or replaced, its operator key
    /// dropped — is stopped and relaunched at once ([`Phase::Relaunch`], no crash counted, the
    /// `restart` record's `reason` `"grant_withdrawn"`), its launch withholding the item. A
    /// target the policy in force no longer asks for is not withheld, so a SIGHUP's changes
    /// still wait for the next restart.
    ///
    /// Only when something such a decision reads changed since the last pass — a grants
    /// directory or one of its files, an operator key, the policy (SIGHUP) — or the plugins it
    /// covers did: otherwise nothing is read but their metadata
    /// ([`crate::plugin_policy::grant_inputs_stamp`]). Deciding again reads every grant file
    /// and verifies every signature naming a target, for each granted plugin: with a thousand
    /// plugins granted the network, a million file reads and signature checks every interval,
    /// the loop stalled for as long.
    fn check_grants_now(&mut self, now: Instant) {
        let names: Vec<String> = self
            .plugins
            .iter()
            .filter(|(_, e)| {
                e.phase == Phase::Running && e.slot.is_some() && !e.grant_targets.is_empty()
            })
            .map(|(n, _)| n.clone())
            .collect();
        let stamp = (
            self.policy_generation,
            names.clone(),
            crate::plugin_policy::grant_inputs_stamp(
                names.iter().flat_map(|n| &self.plugins[n].grant_inputs),
            ),
        );
        if self.grants_seen.as_ref() == Some(&stamp) {
            return;
        }
        self.grants_seen = Some(stamp);
        for name in names {
            let e = &self.plugins[&name];
            let lp = match crate::plugin_policy::decide(
                &self.cfg.policy,
                e.pkg.view(),
                &self.cfg.policy_root,
                self.cfg.allow_flags.as_ref(),
                unix_now(),
            ) {
                Ok((lp, _)) => lp,
                // Said once per change of what it read (the stamp above), not at every check.
                // Left running: its next launch decides again and refuses if this persists.
                Err(err) => {
                    log_line(&format!(
                        "grant check: plugin {}: its grants cannot be decided again ({}); it                          runs on with those its launch honoured until its next launch",
                        term(&name),
                        term(&err.to_string())
                    ));
                    continue;
                }
            };
            let lost: Vec<String> = lp
                .withheld
                .iter()
                .filter(|w| e.grant_targets.contains(&w.target))
                .map(|w| format!("{} ({})", w.target, w.kind))
                .collect();
            if lost.is_empty() {
                continue;
            }
            log_line(&format!(
                "grant check: plugin {}: no grant authorises {} any longer; relaunching it under \
                 the policy in force",
                term(&name),
                term(&lost.join(", "))
            ));
            let e = self.plugins.get_mut(&name).expect("present");
            let Some(slot) = e.slot else { continue };
            e.phase = Phase::Relaunch;
            e.relaunch_for = Some("grant_withdrawn");
            self.sup.shutdown(slot, now);
        }
    }

    /// The earliest pending restart.
    pub(crate) fn next_restart(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.plugins
            .values()
            .filter_map(|e| match e.phase {
                Phase::Restarting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Act on state changes: load replies, finished unloads, crashes, due restarts.
    ///
    /// Only plugins that can have changed are looked at: those without a running incarnation
    /// (restarting, quarantined, relaunching, unloading) and those whose slot the supervisor
    /// acted on since the last turn. A slot nobody touched is in the state it was last seen in.
    pub(crate) fn supervise(&mut self, now: Instant) {
        let touched = self.sup.take_touched();
        let names: Vec<String> = self
            .plugins
            .iter()
            .filter(|(_, e)| e.slot.is_none_or(|s| touched.contains(&s)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.supervise_one(&name, now);
        }
        // A relaunch onto an update that waited for another plugin's (`update_waits`), or a
        // plugin held for its dependencies (`Phase::Held`), may have been let go by one later
        // in this turn — a dependency relaunched on another version, a dependant quarantined:
        // looked at again, not at the next event (which, with no process of its own and both
        // periodic intervals 0, may never come), for as long as one more was let go (each
        // round launches one at least, or stops).
        let waiting = |d: &Self| -> Vec<String> {
            d.plugins
                .iter()
                .filter(|(_, e)| e.slot.is_none() && (e.update.is_some() || e.phase == Phase::Held))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut left = waiting(self);
        while !left.is_empty() {
            for name in &left {
                self.supervise_one(name, now);
            }
            let now_left = waiting(self);
            if now_left.len() >= left.len() {
                break;
            }
            left = now_left;
        }
    }

    fn supervise_one(&mut self, name: &str, now: Instant) {
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        let state = e.slot.and_then(|s| self.sup.handle(s)).map(|h| h.state());
        if state == Some(State::Ready) && !e.ever_ready {
            e.ever_ready = true;
        }
        if state == Some(State::Ready) {
            if let Some((conn, id)) = e.pending_load.take() {
                let st = self.status(name);
                self.send(conn, &response_ok(&id, st));
            }
            return;
        }
        let gone = state.is_some_and(State::is_gone);
        if gone {
            let slot = e.slot.take().expect("gone implies a slot");
            self.sup.remove(slot);
        }
        let e = self.plugins.get_mut(name).expect("present");
        if e.slot.is_some() {
            return; // starting or stopping: nothing to decide yet
        }
        // Matched by value: the held plugin's guard asks the whole daemon (`loaded_fits`).
        let phase = e.phase;
        match phase {
            Phase::Unloading => {
                // Unloaded on purpose: a quarantine recorded for it ends with it.
                if let Err(err) = self.quarantines.clear(name) {
                    log_line(&format!(
                        "plugin {}: cannot lift the recorded quarantine: {}",
                        term(name),
                        term(&err.to_string())
                    ));
                }
                self.unindex_hooks(name);
                let mut e = self.plugins.remove(name).expect("present");
                self.discard_spare(name, e.spare.take());
                // Calls its hooks let through since their last record: counted as it goes.
                let recs = self
                    .bypasses
                    .gone(Some(name), super::bypass::Gone::Unloaded);
                self.audit_bypasses_of(recs, Some(&e.audit));
                let last = e.last_exit.clone();
                for (conn, id) in e.pending_unload {
                    self.send(
                        conn,
                        &response_ok(
                            &id,
                            json!({"name": name, "state": "unloaded", "last_exit": last}),
                        ),
                    );
                }
                if let Some((conn, id)) = e.pending_load {
                    // Dropped by a trust check before it was ready: the load fails for that
                    // refusal, its kind and exit as any refused load's.
                    let err = match (&e.trust_refusal, &e.unload_reason) {
                        (Some(r), _) => r.load_failed(),
                        // Removed from the store during its first launch: the store's
                        // answer for a name it does not have (104, with its hint).
                        (None, Some(why)) => load_failed(
                            why["message"].as_str().unwrap_or("removed from the store"),
                            refusal_data(&crate::cmd::store::store_err(
                                crate::store::StoreError::NotInstalled(name.to_string()),
                            )),
                        ),
                        (None, None) => load_failed("unloaded before it became ready", Value::Null),
                    };
                    self.send(conn, &response_err(&id, &err));
                }
                let extra = match e.unload_reason {
                    Some(reason) => json!({ "reason": reason }),
                    None => json!({}),
                };
                self.note_state(name, "unloaded", extra);
            }
            _ if self.stopping => {
                if let Some((conn, id)) = e.pending_load.take() {
                    let err = RpcError::new(codes::UNAVAILABLE, "the daemon is stopping");
                    self.send(conn, &response_err(&id, &err));
                }
            }
            Phase::Running if !e.ever_ready => {
                // The first launch never became ready: the load fails, nothing stays loaded.
                self.unindex_hooks(name);
                let mut e = self.plugins.remove(name).expect("present");
                self.discard_spare(name, e.spare.take());
                // The Sertone front bypasses a plugin still starting (it declares the hook):
                // calls let through meanwhile are counted now, as at an unload, naming this
                // package — left for the daemon's stop, they were counted without its version.
                let recs = self
                    .bypasses
                    .gone(Some(name), super::bypass::Gone::Unloaded);
                self.audit_bypasses_of(recs, Some(&e.audit));
                let err = load_failed(
                    "the plugin ended before completing its handshake",
                    json!({"last_exit": e.last_exit}),
                );
                if let Some((conn, id)) = e.pending_load {
                    self.send(conn, &response_err(&id, &err));
                }
                self.note_state(name, "unloaded", json!({"reason": {"kind": "load_failed"}}));
            }
            Phase::Running if gone => self.crashed(name, now),
            Phase::Relaunch | Phase::Restarting(_) => {
                let due = match e.phase {
                    Phase::Restarting(at) => at <= now,
                    _ => true,
                };
                // An update's relaunch waits for its dependency's, or for its stopping dependant
                // that does not accept it to end (store updates judged together).
                if due && !self.update_waits(name) {
                    self.relaunch(name, now);
                }
            }
            // Held for its dependencies: launched again as soon as it fits what is loaded (a
            // dependency relaunched on another version, unloaded), looked at every turn and
            // again after the others of the turn (`supervise`'s re-look) — a held plugin has no
            // process and no timer, and what changes that is another plugin's relaunch, unload
            // or quarantine, perhaps later in the same turn.
            Phase::Held if self.loaded_fits(name).is_ok() => {
                log_line(&format!(
                    "plugin {}: what it needs is loaded in fitting versions now; relaunching it",
                    term(name)
                ));
                let e = self.plugins.get_mut(name).expect("present");
                e.relaunch_for = Some("dependencies_fit");
                self.relaunch(name, now);
            }
            _ => {}
        }
    }

    fn crashed(&mut self, name: &str, now: Instant) {
        let q = self.cfg.serve.quarantine;
        let r = self.cfg.serve.restart;
        let now_ms =
            u64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        let random = self.rng.next_u64();
        let e = self.plugins.get_mut(name).expect("present");
        if e.crashes.record(&q, now_ms) {
            e.phase = Phase::Quarantined;
            // No incarnation is coming until `plugin_restart`: the warm pool's spare (its init,
            // waiting program, host uid and cgroup) goes now, not at unload or stop. It is
            // killed and reaped as any sandbox (`discard_spare`); `plugin_restart` launches cold
            // and a new spare is built once that incarnation is ready (`refill_spare`).
            let spare = e.spare.take();
            e.decision = None;
            let n = e.crashes.recent();
            let last = last_end(e.last_exit.as_ref());
            let mut rec = e.audit.clone();
            let recorded = Quarantined {
                package_sha256: e.pkg.report.package_sha256.clone(),
                since: unix_now(),
                crashes: n,
                window_ms: q.window_ms,
            };
            rec.event = Event::Quarantine;
            rec.outcome = "crash_loop".into();
            // Recorded so that a restart of the daemon does not run it again; if that fails the
            // quarantine still holds for this daemon's life, and the record says so.
            let persisted = match self.quarantines.record(name, recorded) {
                Ok(()) => true,
                Err(err) => {
                    log_line(&format!(
                        "plugin {}: cannot record the quarantine in the state directory: {}",
                        term(name),
                        term(&err.to_string())
                    ));
                    false
                }
            };
            rec.set_detail(
                json!({"crashes": n, "window_ms": q.window_ms, "last_exit": e.last_exit,
                                "persisted": persisted}),
            );
            self.audit(rec);
            self.discard_spare(name, spare);
            self.note_state(
                name,
                "quarantined",
                json!({"crashes": n, "window_ms": q.window_ms,
                       "reason": {"kind": "crash_loop",
                                  "message": format!("{n} crashes within {} ms{}; send plugin_restart to try again",
                                                     q.window_ms, last)}}),
            );
            return;
        }
        let delay = backoff_ms(&r, e.crashes.recent(), random);
        e.phase = Phase::Restarting(now + Duration::from_millis(delay));
        let (restarts, crashes) = (e.restarts, e.crashes.recent());
        self.note_state(
            name,
            "restarting",
            json!({"delay_ms": delay, "restarts": restarts, "crashes": crashes}),
        );
    }

    /// Read the trust configuration again — the trust directory (root keys, revocation list)
    /// with the `[trust]` of the policy in force, as `run` reads them — and use it from now on.
    /// A few small files: read at each load, restart and SIGHUP, never per call. The state
    /// directory is the one the daemon started with, whatever the policy says now. Whether
    /// what decides trust (mode, roots, list) changed since it was last read.
    pub(crate) fn reread_trust(&mut self) -> Result<bool, crate::error::CmdError> {
        let defaults = self
            .cfg
            .policy
            .resolve(None, None)
            .map_err(|e| crate::policyfiles::PolicyFilesError::Invalid(e).into_cmd())?;
        let mut t = crate::cmd::run::trust_config_with_policy(&self.cfg.trust_args, &defaults)?;
        t.state_dir = self.cfg.trust.state_dir.clone();
        t.revocation_lock_wait = self.cfg.trust.revocation_lock_wait.clone();
        let old = &self.cfg.trust;
        let changed = t.mode != old.mode
            || t.revocations != old.revocations
            || t.require_revocations != old.require_revocations
            || t.root_keys() != old.root_keys();
        self.cfg.trust = t;
        Ok(changed)
    }

    /// The node's license read again (`stockade node license install` and a freeze change it
    /// while the daemon runs): `Ok(true)` when it is another than the one in force. One that
    /// cannot be read (`node`, 78) or is rolled back (`license.rollback` / `license.missing`,
    /// 84) refuses without saying anything about any package, as an unusable trust
    /// configuration does; the license in force stays.
    fn reread_license(&mut self) -> Result<bool, TrustRefusal> {
        let l = crate::node::load_license(&self.cfg.trust.state_dir).map_err(|e| TrustRefusal {
            kind: e.kind(),
            exit: e.exit().code(),
            message: format!(
                "cannot use this node's license: {}",
                crate::package::verify::error_chain(&e)
            ),
            hint: Some(e.hint().to_string()),
            about: About::Configuration,
        })?;
        let digest =
            |l: &Option<stockade_trust::license::License>| l.as_ref().map(|l| l.file_sha256());
        let changed = digest(&l) != digest(&self.cfg.node.license);
        self.cfg.node.license = l;
        Ok(changed)
    }

    /// [`Self::reread_license`] and [`Self::reread_trust`], then [`Self::check_loaded`]; a
    /// configuration or license that changed is applied to the other loaded plugins too
    /// ([`Self::check_all`]).
    fn recheck(&mut self, name: &str, now: Instant) -> Result<(), TrustRefusal> {
        let license = self.reread_license();
        let reread = self.reread_trust();
        if let (Ok(l), Ok(t)) = (&license, &reread) {
            if *l || *t {
                self.check_all(now, NEW_TRUST, "trust_change", Some(name));
            }
        }
        if let Err(e) = reread {
            return Err(TrustRefusal::unusable(&e));
        }
        license?;
        self.check_loaded(name)
    }

    /// Whether loaded plugin `name`'s package is still trusted under the trust configuration
    /// and license in force ([`crate::package::recheck_trust`]: chain, validity, revocation and
    /// scope; under strict also what a `warn` or `disabled` load let pass,
    /// [`crate::package::unverified_at_load`]). What a trust mode below strict lets pass is
    /// logged and shown in its status, as at the load.
    fn check_loaded(&mut self, name: &str) -> Result<(), TrustRefusal> {
        let Some(e) = self.plugins.get_mut(name) else {
            return Ok(());
        };
        match crate::package::recheck_trust(&e.pkg, &self.cfg.trust, &self.cfg.node, unix_now()) {
            Ok(passed) => {
                if let Some((status, warning)) = passed {
                    if !e.pkg.report.warnings.contains(&warning) {
                        log_line(&format!(
                            "plugin {}: warning: {}",
                            term(name),
                            term(&warning)
                        ));
                        // The latest check's in place of the last one's: its message can carry
                        // the time of the check (an expired certificate's `now`), and a plugin
                        // checked at every restart and SIGHUP for months gathered one per check
                        // in its status and in every `ready` it announced. The log has each.
                        let w = &mut e.pkg.report.warnings;
                        w.retain(|w| !w.starts_with(crate::package::RECHECK_WARNING));
                        w.push(warning);
                    }
                    if e.pkg.report.signature_status == SignatureStatus::Verified {
                        e.pkg.report.signature_status = status;
                    }
                }
                // What a `warn` (or `disabled`) load let pass and no recheck decides again: under
                // strict, that load would have failed, so the package is refused now.
                if self.cfg.trust.mode == TrustMode::Strict {
                    if let Some(u) = crate::package::unverified_at_load(&e.pkg.report) {
                        return Err(TrustRefusal {
                            kind: UNVERIFIED.1,
                            exit: UNVERIFIED.0.code(),
                            message: format!(
                                "the package of `{name}` is not trusted under --trust-mode \
                                 strict: {}",
                                u.detail
                            ),
                            hint: Some(
                                "`plugin_unload` and `plugin_load` it again: a full \
                                 verification under the mode in force (a package that \
                                 verifies passes it)"
                                    .to_string(),
                            ),
                            about: About::Package,
                        });
                    }
                }
                e.trust_refusal = None;
                Ok(())
            }
            Err(v) => {
                let about = match &v {
                    VerifyError::Validity(ValidityError::NotYetValid { .. })
                        if validity_passed_at_load(&e.pkg.report) =>
                    {
                        About::Clock
                    }
                    VerifyError::Scope(
                        ScopeError::NoLicense(_)
                        | ScopeError::License(_)
                        | ScopeError::WrongLicense { .. },
                    ) => About::License,
                    VerifyError::Chain(_)
                    | VerifyError::Validity(_)
                    | VerifyError::Scope(_)
                    | VerifyError::Revocation(RevocationError::Revoked(_)) => About::Package,
                    _ => About::Configuration,
                };
                // The message names what is at fault, as `about` does: a revocation list gone
                // missing or expired says nothing against the package, and an operator reading
                // "no longer trusted" would look at the wrong thing.
                let what = match about {
                    About::Package => format!("the package of `{name}` is no longer trusted"),
                    About::License => {
                        format!("this node's license does not cover the package of `{name}`")
                    }
                    About::Configuration => format!(
                        "cannot check the package of `{name}`: the trust configuration cannot \
                         be used"
                    ),
                    About::Clock => format!(
                        "this node's clock is behind the certificates of `{name}`, valid at its \
                         load"
                    ),
                };
                Err(TrustRefusal {
                    kind: v.kind(),
                    exit: v.exit().code(),
                    message: format!("{what}: {}", crate::package::verify::error_chain(&v)),
                    hint: Some(v.hint().to_string()),
                    about,
                })
            }
        }
    }

    /// A loaded plugin the trust configuration refuses (`request`: what found out — a
    /// `restart`, `plugin_restart`, `sighup`, `trust_change`) is not run any longer: a running incarnation is
    /// stopped gracefully, the warm spare dropped, and the plugin stays loaded, quarantined for
    /// that reason (`plugin_status.trust_refusal`), until `plugin_restart` finds it trusted again
    /// or it is unloaded. Not recorded in the state directory: a later daemon verifies the
    /// package again at its load anyway. One never ready yet is unloaded instead (its
    /// `plugin_load` fails).
    ///
    /// One with a store update admitted and waiting for its relaunch (the loaded package's
    /// signer revoked while it stopped or waited for it) is relaunched on that update instead,
    /// as a quarantined plugin's update is run at once (`run_update`): the refusal is the
    /// loaded package's, and only a relaunch takes an update — kept quarantined, the good new
    /// package never ran (the store check skips an update admitted already; `plugin_restart`
    /// judges the loaded package, refused). The relaunch keeps it fail-closed: the new version
    /// must still fit what is loaded (`update_fits`; not fitting, the plugin goes back to this
    /// quarantine: `update_unfit`) and is verified again (`recheck`).
    fn trust_quarantine(&mut self, name: &str, refusal: TrustRefusal, request: &str, now: Instant) {
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        let spare = e.spare.take();
        e.decision = None;
        let reason = refusal.to_json();
        e.trust_refusal = Some(refusal.clone());
        let onto_update = e.ever_ready && e.update.is_some();
        e.phase = match (e.ever_ready, onto_update, e.slot) {
            (false, _, _) => Phase::Unloading,
            (true, false, _) => Phase::Quarantined,
            (true, true, Some(_)) => Phase::Relaunch,
            (true, true, None) => Phase::Restarting(now),
        };
        if let Some(up) = e.update.as_mut().filter(|_| onto_update) {
            e.relaunch_for = Some("update");
            // Not fitting at the relaunch, it goes back to this quarantine (`update_unfit`).
            up.quarantined = true;
        }
        if let Some(slot) = e.slot {
            self.sup.shutdown(slot, now);
        }
        let mut rec = e.audit.clone();
        rec.event = Event::Quarantine;
        rec.outcome = refusal.kind.into();
        rec.set_detail(json!({"request": request, "reason": reason}));
        let quarantined = e.phase == Phase::Quarantined;
        self.audit(rec);
        self.discard_spare(name, spare);
        if quarantined {
            self.note_state(name, "quarantined", json!({"reason": reason}));
        } else if onto_update {
            log_line(&format!(
                "plugin {}: its loaded package is refused ({}); relaunched on the update \
                 waiting for it",
                term(name),
                term(&refusal.message)
            ));
        } else {
            log_line(&format!(
                "plugin {}: unloaded before it became ready: {}",
                term(name),
                term(&refusal.message)
            ));
        }
    }

    /// SIGHUP: the trust configuration read again and every loaded plugin checked against it
    /// ([`Self::check_all`]).
    pub(crate) fn recheck_loaded(&mut self, now: Instant) {
        if let Err(r) = self.reread_license() {
            log_line(&format!("SIGHUP: {REFUSES}: {}", term(&r.message)));
        }
        match self.reread_trust() {
            Ok(_) => self.check_all(now, "SIGHUP", "sighup", None),
            Err(e) => log_line(&format!(
                "SIGHUP: {REFUSES}: {}",
                term(&e.chain().join(": "))
            )),
        }
        self.check_store_now(now, true);
    }

    /// Every loaded plugin (but `except`) checked against the trust configuration in force, at
    /// SIGHUP and whenever a load or restart finds it changed (`trigger` and `request` say which,
    /// in the log and the audit record): the daemon knows it now. One whose certificate it
    /// refuses (revoked, no longer under a pinned root) is stopped and quarantined
    /// ([`Self::trust_quarantine`]). A configuration that cannot be used (an invalid, expired or
    /// rolled-back list) says nothing about any one plugin: the running ones keep running, the
    /// log says that loads and restarts are refused until it is fixed.
    fn check_all(&mut self, now: Instant, trigger: &str, request: &str, except: Option<&str>) {
        // A load that finds the configuration changed runs this, but what it stops is the
        // trust change's doing, not the loading agent's request: its records do not name that
        // agent (`detail.agent_uid`, [`Self::for_agent`]; review-138).
        let agent = self.load_agent.take();
        self.check_all_now(now, trigger, request, except);
        self.load_agent = agent;
    }

    /// [`Self::check_all`], without an agent.
    fn check_all_now(&mut self, now: Instant, trigger: &str, request: &str, except: Option<&str>) {
        let names: Vec<String> = self
            .plugins
            .iter()
            .filter(|(n, e)| {
                Some(n.as_str()) != except
                    && !matches!(e.phase, Phase::Quarantined | Phase::Unloading)
                    // Refused already and waiting for its relaunch onto its update
                    // (`trust_quarantine`), which verifies that update: not refused again.
                    && !(e.trust_refusal.is_some() && e.update.is_some())
            })
            .map(|(n, _)| n.clone())
            .collect();
        let mut said = false;
        // One wait for the revocation lock, not one per plugin: after one ran out, the others
        // only try it (each would wait the same and find the same holder) — and so do the
        // loads, restarts and rounds after this one, until one takes it or a while passed
        // (`fileio::BoundedWait`). What a list not recorded revokes is still found
        // (`check_revocation`).
        for name in names {
            match self.check_loaded(&name) {
                Ok(()) => {}
                Err(r) if r.about == About::Package => {
                    log_line(&format!(
                        "{trigger}: plugin {}: {}: {}; stopping it",
                        term(&name),
                        r.kind,
                        term(&r.message)
                    ));
                    self.trust_quarantine(&name, r, request, now);
                }
                Err(r) if matches!(r.about, About::License | About::Clock) => log_line(&format!(
                    "{trigger}: plugin {}: {}: {}; {}",
                    term(&name),
                    r.kind,
                    term(&r.message),
                    r.consequence()
                )),
                Err(r) if !said => {
                    said = true;
                    log_line(&format!(
                        "{trigger}: {}: {}: {}",
                        r.consequence(),
                        r.kind,
                        term(&r.message)
                    ));
                }
                Err(_) => {}
            }
        }
    }

    /// A restart the trust configuration refuses without saying anything about the package (it
    /// cannot be read, its list is invalid, expired or missing while required): not a crash
    /// and no quarantine — the configuration is what is wrong, and it stops nothing that runs.
    /// The plugin stays `restarting`, the refusal in its status, and is tried again after its
    /// backoff, longer at each refusal in a row up to `backoff_max_ms` (the crash count
    /// unchanged), so it comes back by itself once the configuration is fixed. The same for a
    /// license that does not cover the package ([`About::License`]). The first refusal in a row
    /// is audited (a `denial` of the `restart`), not each retry.
    fn retry_later(&mut self, name: &str, refusal: TrustRefusal, now: Instant) {
        let r = self.cfg.serve.restart;
        let random = self.rng.next_u64();
        let e = self.plugins.get_mut(name).expect("present");
        if e.trust_retries == 0 {
            let mut rec = e.audit.clone();
            rec.event = Event::Denial;
            rec.outcome = "refused".into();
            rec.set_detail(json!({"request": "restart", "stage": "verification",
                                "kind": refusal.kind, "error": refusal.message}));
            self.audit(rec);
        }
        let e = self.plugins.get_mut(name).expect("present");
        let crashes = e.crashes.recent();
        e.trust_retries = e.trust_retries.saturating_add(1);
        let delay = backoff_ms(&r, crashes.max(1).saturating_add(e.trust_retries), random);
        e.phase = Phase::Restarting(now + Duration::from_millis(delay));
        let reason = refusal.to_json();
        e.trust_refusal = Some(refusal.clone());
        let restarts = e.restarts;
        log_line(&format!(
            "plugin {}: not restarted, trying again in {delay} ms: {}: {}: {}",
            term(name),
            refusal.consequence(),
            refusal.kind,
            term(&refusal.message)
        ));
        self.note_state(
            name,
            "restarting",
            json!({"delay_ms": delay, "restarts": restarts, "crashes": crashes,
                   "reason": reason}),
        );
    }

    fn relaunch(&mut self, name: &str, now: Instant) {
        // A new version the store check admitted takes the loaded package's place first: the
        // old incarnation has ended (stopped as for a restart), and this launch is the new one's.
        // Unless it no longer fits what is loaded now (a dependency's update admitted with it
        // did not happen after all): refused, and the loaded package relaunched instead — the
        // dependant's new version launched against a dependency version it does not accept —,
        // or, quarantined when its update was to run, the plugin put back in that quarantine.
        if let Err(err) = self.update_fits(name) {
            if self.update_unfit(name, err) {
                return; // quarantined again, as it was when the update was to run
            }
        }
        // No update to take (none admitted, withdrawn, or refused just now): the loaded package
        // must fit what is loaded now as well — its dependencies may have been relaunched on
        // versions it does not accept while its own update waited (and was then withdrawn).
        // Not fitting, it is held stopped, never launched beside them.
        if self.plugins.get(name).is_some_and(|e| e.update.is_none()) {
            if let Err(err) = self.loaded_fits(name) {
                return self.hold_unfit(name, err);
            }
        }
        if let Some(e) = self.plugins.get_mut(name) {
            e.held = None;
        }
        if let Some(from) = self.take_update(name) {
            if let Some(e) = self.plugins.get_mut(name) {
                e.update_from = Some(from);
            }
        }
        // A restart is a new launch of the package: whom the trust directory trusts now decides
        // it, not whom it trusted at the load. Refused, it is not a crash: when the refusal is
        // about the package, quarantined for its reason until `plugin_restart` finds it trusted
        // again; when the configuration cannot be used, tried again later.
        if let Err(refusal) = self.recheck(name, now) {
            if refusal.about == About::Package {
                log_line(&format!(
                    "plugin {}: not restarted: {}",
                    term(name),
                    term(&refusal.message)
                ));
                // Its quarantine record says it; a later launch is `plugin_restart`'s.
                if let Some(e) = self.plugins.get_mut(name) {
                    e.update_from = None;
                }
                return self.trust_quarantine(name, refusal, "restart", now);
            }
            return self.retry_later(name, refusal, now);
        }
        let mut e = self.plugins.remove(name).expect("present");
        e.trust_retries = 0;
        let by_daemon = e.relaunch_for.take();
        let requested = e.restart_requested.take();
        let mut extra = json!({"restarts": e.restarts + 1,
                               "requested": requested.is_some() && by_daemon.is_none(),
                               "last_exit": e.last_exit});
        // Who asked, and whether that lifted a quarantine: a crash-looping or refused plugin
        // let out again is an agent's decision the log must name.
        if let (Some(Value::Object(asked)), None, Some(d)) =
            (&requested, by_daemon, extra.as_object_mut())
        {
            d.extend(asked.clone());
        }
        if let Some(why) = by_daemon {
            extra["reason"] = json!(why);
        }
        // Said as the update it is, whoever asked for the relaunch that ran it (an agent's
        // `plugin_restart` in between included), and when its launch was put off for the
        // moment and is tried again (`update_from` kept until the launch is had).
        if let Some((from, lifted)) = &e.update_from {
            extra["reason"] = json!("update");
            extra["from_version"] = json!(from);
            // A quarantined plugin's update is a new start: its quarantine ends with it.
            if *lifted {
                extra["quarantine_lifted"] = json!(true);
            }
        }
        let r = self.launch(&mut e, Event::Restart, extra);
        match r {
            Ok(slot) => {
                e.update_from = None;
                e.slot = Some(slot);
                e.restarts += 1;
                e.host_retries = 0;
                e.phase = Phase::Running;
                self.plugins.insert(name.to_string(), e);
            }
            // The host had no uid or cgroup to give at that moment (a burst of agents' `run`s
            // filling the uid range): nothing about the plugin, so not a crash — counted as
            // one, such a burst quarantined a plugin that never failed. Tried again on the
            // backoff, longer each time in a row, until the launch is had.
            Err((_, err)) if passing_launch_refusal(&err) => {
                let r = self.cfg.serve.restart;
                let random = self.rng.next_u64();
                e.host_retries = e.host_retries.saturating_add(1);
                let crashes = e.crashes.recent();
                let delay = backoff_ms(&r, crashes.max(1).saturating_add(e.host_retries), random);
                e.phase = Phase::Restarting(now + Duration::from_millis(delay));
                let restarts = e.restarts;
                let kind = err.data.as_ref().and_then(|d| d.get("kind")).cloned();
                // Still the relaunch it was (`dependencies_fit`, `grant_expiry`,
                // `update_withdrawn`, …): the `restart` record of the try that is had says why,
                // as an update's does (`update_from`). Taken for this try, it was a plain
                // restart's record then (review-124).
                e.relaunch_for = by_daemon;
                e.restart_requested = requested;
                log_line(&format!(
                    "plugin {}: not restarted, trying again in {delay} ms (not counted as a \
                     crash): {}",
                    term(name),
                    term(&err.message)
                ));
                self.plugins.insert(name.to_string(), e);
                self.note_state(
                    name,
                    "restarting",
                    json!({"delay_ms": delay, "restarts": restarts, "crashes": crashes,
                           "reason": {"kind": kind, "message": err.message}}),
                );
            }
            Err((_, err)) => {
                // Its `restart` record (`failed`) said the update; what follows is a crash's.
                e.update_from = None;
                log_line(&format!(
                    "plugin {}: restart failed: {}",
                    term(name),
                    term(&err.message)
                ));
                e.last_exit = Some(json!({"kind": "launch_failed", "message": err.message}));
                e.phase = Phase::Running;
                self.plugins.insert(name.to_string(), e);
                self.crashed(name, now);
            }
        }
    }
}

/// The longest the loop sleeps towards an expiry before it reads the wall clock again.
///
/// An expiry is a wall-clock time (Unix seconds) and the loop's sleep a monotonic one: a
/// `not_after` far ahead — `u64::MAX`, what a CA outside stockade writes for "never" — is no
/// overflow of the loop's `Instant` (it panicked the daemon at the load), and a wall clock
/// stepped forwards past an expiry (NTP, `date -s`) is noticed within this even when no other
/// timer wakes the loop. A step backwards only makes the wait longer.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// How long to sleep towards the expiry at `at` when the wall clock says `clock` (both Unix
/// seconds): the seconds left, whole seconds — at most one second late, never early (the check
/// acts only once the clock says expired, and a wake-up before that waits again) — and at most
/// [`EXPIRY_RECHECK`].
pub(crate) fn expiry_wait(at: u64, clock: u64) -> Duration {
    Duration::from_secs(at.saturating_sub(clock)).min(EXPIRY_RECHECK)
}

/// Whether the load of the package behind `report` found its certificates' validity begun
/// (step 4 passed, not let pass by `--trust-mode warn`): one not yet valid at a later check
/// then means the node's clock went back ([`About::Clock`]).
fn validity_passed_at_load(report: &Report) -> bool {
    report
        .steps
        .iter()
        .any(|s| s.step == 4 && s.status == StepStatus::Pass)
}

/// The earliest `not_after` of a package's developer and intermediate certificates (Unix
/// seconds; none when a mode below strict loaded it without them).
pub(crate) fn chain_expiry(pkg: &VerifiedPackage) -> Option<u64> {
    [&pkg.developer, &pkg.intermediate]
        .into_iter()
        .flatten()
        .map(|c| c.body.not_after)
        .min()
}

/// The `detail.stage` of a launch refused while its policy was decided: `audit` when the
/// audit log could not take its records — every `audit` kind (`audit`, `audit.truncated`,
/// `audit.unsafe`, `audit.busy`, `audit.newer_format`, …), not a list of them that a new one
/// misses (`audit.newer_format` was filed under `policy`; review-130) — else `policy`.
fn decision_stage(kind: &str) -> &'static str {
    if kind == "audit" || kind.starts_with("audit.") {
        "audit"
    } else {
        "policy"
    }
}

/// Whether a launch failed for a reason of the host's at that moment, not of the plugin's: every
/// uid of the range held by live sandboxes (`uid_exhausted`), no cgroup to be had for want of
/// descriptors, memory or cgroups (`cgroup_exhausted`), no namespace, process or memory for the
/// sandbox's clone (`clone_exhausted`, review-158) — the CLI's "retry" kinds (125) — or its
/// audit record not written because another writer held the log's lock past the daemon's wait
/// (`audit.busy`, 75: a root CLI stopped mid-append), which counted as a crash quarantined a
/// plugin for a lock it never touched.
fn passing_launch_refusal(err: &RpcError) -> bool {
    matches!(
        err.data
            .as_ref()
            .and_then(|d| d.get("kind"))
            .and_then(Value::as_str),
        Some("uid_exhausted" | "cgroup_exhausted" | "clone_exhausted" | "audit.busy")
    )
}

/// Log, at a plugin's launch, each Sertone hook whose per-hook cap (`[hooks."<hook>"]
/// deadline_ms`, else `[protocol] default_deadline_ms`) is below the front's `[sertone]
/// deadline_ms`: the front asks for its deadline and the plugin's policy silently caps it, so an
/// operator who raised only the front's would otherwise see the plugin time out sooner than
/// configured, with nothing saying why.
fn warn_sertone_deadline(name: &str, e: &Entry, host: &HostPolicy, front_ms: u64) {
    use stockade_policy::sertone::{POST_RESPONSE, PRE_REQUEST};
    for hook in [PRE_REQUEST, POST_RESPONSE] {
        let capped = host.deadline_ms(hook, Some(front_ms));
        if e.declares(hook) && capped < front_ms {
            log_line(&format!(
                "warning: plugin {}: {hook}: the Sertone front's deadline_ms = {front_ms} is \
                 capped at {capped} ms by the policy's per-hook deadline; raise \
                 [hooks.\"{hook}\"] deadline_ms (or [protocol] default_deadline_ms) for it",
                term(name)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    /// review-158: a launch whose clone found the host out of namespaces, processes or memory
    /// at that moment (`clone_exhausted`) is retried on the backoff like the other "retry"
    /// kinds, not counted as a crash towards quarantine; the host's configuration
    /// (`layer_unavailable`) and a broken step (`sandbox_setup`) are not.
    #[test]
    fn a_clone_refused_for_the_moment_is_no_crash() {
        let refusal =
            |kind: &str| super::load_failed("launch refused", serde_json::json!({ "kind": kind }));
        for kind in [
            "uid_exhausted",
            "cgroup_exhausted",
            "clone_exhausted",
            "audit.busy",
        ] {
            assert!(super::passing_launch_refusal(&refusal(kind)), "{kind}");
        }
        for kind in ["layer_unavailable", "sandbox_setup"] {
            assert!(!super::passing_launch_refusal(&refusal(kind)), "{kind}");
        }
    }

    /// A launch refused because the audit log could not take its records is filed under stage
    /// `audit` whatever the audit kind (`audit.newer_format` was filed under `policy`:
    /// review-130); a policy's own refusal under `policy`. Every `audit` kind this build has
    /// (`kinds.rs`) is one.
    #[test]
    fn every_audit_refusal_of_a_launch_is_filed_under_audit() {
        use super::decision_stage;
        let audit_kinds: Vec<&str> = crate::kinds::KINDS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k == "audit" || k.starts_with("audit."))
            .collect();
        assert!(
            audit_kinds.contains(&"audit.newer_format"),
            "{audit_kinds:?}"
        );
        for k in audit_kinds {
            assert_eq!(decision_stage(k), "audit", "{k}");
        }
        for k in ["invalid_policy", "grant", "audit_chain", "policy"] {
            assert_eq!(decision_stage(k), "policy", "{k}");
        }
    }

    /// A revocation lock held past the bounded wait is said as what it is — another process's
    /// lock, which passes — not as a trust configuration to fix (the log said "refuses every load
    /// and restart until it is fixed").
    #[test]
    fn a_busy_revocation_lock_is_not_said_as_a_configuration_to_fix() {
        use super::{About, TrustRefusal, REFUSES};
        let refusal = |kind| TrustRefusal {
            kind,
            exit: 75,
            message: String::new(),
            hint: None,
            about: About::Configuration,
        };
        let busy = refusal("revocation.state_busy").consequence();
        assert!(busy.contains("holds the revocation state's lock") && !busy.contains("fixed"));
        assert_eq!(refusal("revocation.list").consequence(), REFUSES);
    }

    /// The wake-up for an expiry is the seconds left, but never more than a minute: a
    /// `not_after` of `u64::MAX` overflowed the loop's `Instant`, and a wall clock stepped
    /// forwards past an expiry was noticed only when the monotonic wait for the old clock ran
    /// out (when nothing else woke the loop).
    #[test]
    fn an_expiry_wait_is_the_seconds_left_at_most_a_minute() {
        use super::{expiry_wait, EXPIRY_RECHECK};
        use std::time::{Duration, Instant};
        assert_eq!(expiry_wait(1_010, 1_000), Duration::from_secs(10));
        assert_eq!(expiry_wait(1_000, 1_000), Duration::ZERO);
        assert_eq!(expiry_wait(1_000, 2_000), Duration::ZERO, "already expired");
        assert_eq!(expiry_wait(1_000 + 86_400 * 365, 1_000), EXPIRY_RECHECK);
        for at in [u64::MAX, u64::MAX / 2, 253_402_300_800] {
            let wait = expiry_wait(at, 1_000);
            assert_eq!(wait, EXPIRY_RECHECK);
            assert!(Instant::now().checked_add(wait).is_some());
        }
    }

    use super::state_line;
    use serde_json::json;

    /// A plugin's own words in a `plugin_state` reason (here the name its handshake claimed)
    /// stay inside the daemon's log line: the newline that would start a forged `plugin t:
    /// ready` line, the escape sequence and the bidi override are shown escaped.
    #[test]
    fn a_state_line_escapes_what_the_plugin_said() {
        let said = "Evil\nstockade serve: plugin t: ready\u{1b}[2J\u{202e}X";
        let p = json!({"plugin": "t", "state": "terminated",
                       "reason": {"kind": "handshake", "code": -32010,
                                  "message": format!("handshake name `{said}` is not the manifest's `t`")}});
        let line = state_line(&p);
        assert!(!line.contains('\n'), "{line:?}");
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert_eq!(
            line,
            "plugin t: terminated (handshake: handshake name `Evil\\x0astockade serve: plugin t: \
             ready\\x1b[2J\\u{202e}X` is not the manifest's `t`)"
        );
        // The kind and the state, strings of the notification too, are escaped as well.
        let p = json!({"plugin": "t", "state": "x\ny", "reason": {"kind": "k\u{1b}"}});
        assert_eq!(state_line(&p), "plugin t: x\\x0ay (k\\x1b)");
        let p = json!({"plugin": "t", "state": "restarting", "delay_ms": 250, "crashes": 2});
        assert_eq!(
            state_line(&p),
            "plugin t: restarting (in 250 ms; crash 2 in the window)"
        );
    }
}
