//! `stockade run PKG [--policy FILE] [--allow-capability CAP]… [trust flags]`: verify a package,
//! launch its entrypoint sandboxed and serve it to the agent on this process's stdin/stdout.
//!
//! Sequence: the operator policy (`--policy FILE`, else the layers under `--policy-root`;
//! merged and validated, 65/66) → trust configuration (the stricter trust mode of flag and
//! policy, the policy's roots and revocation list) → the fail-closed verification, steps 1–7
//! (`package::check_in`, exit codes 80–87) → the effective policy for this package
//! ([`crate::plugin_policy::decide`], as `serve`'s `for_launch`: operator ∩ certificate scope ∩
//! manifest, high-risk items only with a verified grant) → verification step 8, extraction,
//! while the sandbox is built ([`extract_beside_build`]; a refusal is reported exactly as
//! before, the built sandbox dropped unused) → the records of the verification and of the
//! decision (withheld items also on stderr) → the plugin's key/value store → the sandbox let go
//! (exit 125–127) → one event loop
//! ([`crate::host`]) until the agent's stdin ends (graceful shutdown: pending calls finish or hit
//! their deadline, then `shutdown`, stdin closed, grace period, cgroup kill) or SIGINT/SIGTERM/
//! SIGHUP (the same, at once). The exit status is the plugin's, as for `exec` (docs/exit-codes.md):
//! 0 after a clean shutdown, 128+N when signal N ended it — 137 when the runtime killed it (a
//! violation, a denied call, the shutdown grace ran out); why is reported in-band
//! (`plugin_state`). A session SIGINT/SIGTERM/SIGHUP N stopped, its plugin shut down cleanly,
//! exits 128+N: it was interrupted, not finished (a signal during a stop the agent began by
//! ending stdin interrupts nothing). The package's certificate chain (strict) or a grant the
//! launch honoured expiring ends the session the same way, exit 83 or 65 ([`SessionEnd`]).
//! stdout carries only protocol frames; human
//! diagnostics go to stderr.
//!
//! Audit ([`crate::audit`], when the policy configures a sink): verification, each grant and
//! each withheld item, the launch (with the enforced layers and the effective-policy hash), and
//! from the supervisor's `plugin_state` notifications the termination (plus a denial when the
//! reason is `denied`). runtime/src/host/ is not changed for this: its notifications are read as
//! they go to the agent.

use crate::audit::{self, AuditLog, Event, Record};
use crate::cli::{RunArgs, TrustArgs};
use crate::cmd::exec::launch_error;
use crate::cmd::verify::trust_config;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::host::agent::AgentLink;
use crate::host::conn::STALL;
use crate::host::kv::KvStore;
use crate::host::plugin::PluginConfig;
use crate::host::supervisor::Supervisor;
use crate::keyfile::unix_now;
use crate::node::NodeIdentity;
use crate::output::Output;
use crate::package::trees::Trees;
use crate::package::{check_in, CheckedPackage, VerifiedPackage, VerifyError};
use crate::plugin_policy;
use crate::policyfiles::{self, PolicyFilesError};
use crate::sandbox::{self, LaunchError};
use crate::sys;
use crate::trustdir::TrustMode;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;
use stockade_policy::operator::{ResolvedPolicy, TrustModeName};
use stockade_policy::protocol::frame::encode;
use stockade_policy::protocol::host::HostPolicyError;
use stockade_policy::sandbox::ValidatedSandboxPolicy;

const AGENT: Token = Token(0);
const SIGNALS: Token = Token(1);
const AGENT_OUT: Token = Token(2);

/// Why `run` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The policy file cannot be read.
    #[error("cannot read policy file `{}`", path.display())]
    ReadPolicy {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy file is invalid.
    #[error("invalid policy file `{}`", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: HostPolicyError,
    },
    /// The key/value store cannot be opened.
    #[error("cannot open the plugin's key/value store")]
    Kv(#[source] crate::host::kv::KvError),
    /// The event loop cannot be set up.
    #[error("cannot set up the event loop")]
    Loop(#[source] io::Error),
    /// The verified tree cannot be made readable to the plugin's uid.
    #[error("cannot make `{}` readable to the plugin (mode 0755)", path.display())]
    TreeMode {
        /// The tree's directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The trust configuration with the policy's `[trust]` applied: [`trust_args_with_policy`], then
/// `trust.revocation` (when set) replaces `<trust dir>/revocations.json`. A revocation list the
/// policy names but that cannot be read stops the command (exit 78): fail closed.
pub fn trust_config_with_policy(
    t: &TrustArgs,
    r: &ResolvedPolicy,
) -> Result<crate::trustdir::TrustConfig, CmdError> {
    let mut cfg = trust_config(&trust_args_with_policy(t, r))?;
    cfg.require_revocations = r.trust.require_revocation.unwrap_or(false);
    if let Some(path) = &r.trust.revocation {
        let bytes = crate::fileio::read_capped(
            std::path::Path::new(path),
            stockade_trust::signed::MAX_DOC_BYTES as u64,
        )
        .map_err(|e| {
            CmdError::new(Exit::Config, "trust_dir", e).hint(format!(
                "the policy's trust.revocation ({}) names a revocation list that cannot be read",
                crate::output::term(&r.origin("trust.revocation").to_string())
            ))
        })?;
        cfg.revocations = Some(bytes);
        cfg.revocations_path = std::path::PathBuf::from(path);
    }
    Ok(cfg)
}

/// The trust flags with the policy's `[trust]` applied: the stricter mode of flag and policy,
/// and the policy's `trust.roots` when `--trust` is left at its default. A policy file in force
/// that leaves `trust.mode` unset means strict, as `policy explain` and stockade-policy(5) say:
/// a caller's `--trust-mode warn` cannot loosen an operator's policy by its silence. Only with
/// no policy file at all does the flag decide alone.
pub fn trust_args_with_policy(t: &TrustArgs, r: &ResolvedPolicy) -> TrustArgs {
    let mut t = t.clone();
    let policy_mode = r
        .trust
        .mode
        .or((!r.layers.is_empty()).then_some(TrustModeName::Strict));
    if let Some(m) = policy_mode {
        let flag: Option<TrustModeName> = match t.trust_mode.as_str() {
            "strict" => Some(TrustModeName::Strict),
            "warn" => Some(TrustModeName::Warn),
            "disabled" => Some(TrustModeName::Disabled),
            _ => None,
        };
        // An unknown flag value is left for `trust_config` to reject as a usage error.
        if flag.is_some_and(|f| m < f) {
            t.trust_mode = m.as_str().to_string();
        }
    }
    if let Some(roots) = &r.trust.roots {
        if t.trust == std::path::Path::new(crate::cli::DEFAULT_TRUST_DIR) {
            t.trust = PathBuf::from(roots);
        }
    }
    t
}

/// Run `stockade run`.
pub fn run(a: RunArgs, _out: Output) -> Result<Exit, CmdError> {
    // The flags first: a usage error (64) is said before any file is read.
    let flags = plugin_policy::flag_allowlist(&a.allow_capability)?;
    let merged = policyfiles::load(&policyfiles::source(
        a.policy.as_deref(),
        &a.root.policy_root,
    ))
    .map_err(PolicyFilesError::into_cmd)?;
    let defaults = merged
        .resolve(None, None)
        .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
    let cfg = trust_config_with_policy(&a.trust, &defaults)?;
    let node = NodeIdentity::load(&cfg.state_dir).map_err(crate::node::NodeError::into_cmd)?;
    let log = AuditLog::from_policy(&defaults.audit);
    let refused = |package: &std::path::Path, e: VerifyError| -> CmdError {
        let mut rec = Record::new(Event::Verification, "refused");
        rec.detail = json!({"file": package.display().to_string(), "kind": e.kind(), "error": e.to_string()});
        match audit::append_or_fail(&log, rec) {
            Ok(()) => e.into_cmd(),
            Err(audit_err) => audit_err,
        }
    };
    // Steps 1–7 (signature, chain, validity, revocation, scope, payload digest, file map), and
    // the tree kept from an earlier run of this package, if any, for step 8 to check.
    let keep = defaults
        .trust
        .keep_trees
        .unwrap_or(stockade_policy::operator::DEFAULT_KEEP_TREES);
    let max_mib = defaults
        .trust
        .keep_trees_max_mib
        .unwrap_or(stockade_policy::operator::DEFAULT_KEEP_TREES_MAX_MIB);
    let trees = Trees::new(&cfg.state_dir, keep as usize)
        .with_max_bytes(u64::from(max_mib) << 20)
        .explicit(
            defaults.trust.keep_trees.is_some() || defaults.trust.keep_trees_max_mib.is_some(),
        );
    // An installed plugin's name runs its stored package (verified again, like any file) — as
    // installed when it is opened, should an upgrade or removal commit once it was looked up
    // (store::with_package); a name looked up in a corrupt registry is refused as such (106).
    let (package, checked) = crate::store::with_package(
        &cfg.state_dir,
        &a.package,
        |p| {
            check_in(
                p,
                &cfg,
                &node,
                unix_now(),
                &std::env::temp_dir(),
                Some(&trees),
            )
        },
        VerifyError::is_not_found,
    )
    .map_err(crate::cmd::store::store_err)?;
    let checked = checked.map_err(|e| refused(&package, e))?;
    let name = checked.view().manifest.name().to_string();
    // A frozen license admits nothing new (seed 000): only the installed package itself starts.
    let report = checked.view().report;
    if let Err(serial) =
        crate::store::frozen_admission(&cfg.state_dir, &node, &name, &report.package_sha256)
    {
        let mut rec = audit::for_report(Event::Denial, "refused", report);
        rec.set_detail(json!({"kind": "license_frozen", "license": serial}));
        audit::append_or_fail(&log, rec)?;
        return Err(CmdError::msg(
            Exit::LicenseFrozen,
            "license_frozen",
            crate::store::frozen_refusal(&serial, &name),
        )
        .hint(crate::store::FROZEN_HINT));
    }
    // The launch is decided from the signed manifest; its records are written once the package
    // is verified. A package step 8 refuses is reported as such whatever the policy makes of it.
    let (lp, records) = match plugin_policy::decide(
        &merged,
        checked.view(),
        &a.root.policy_root,
        flags.as_ref(),
        unix_now(),
    ) {
        Ok(d) => d,
        Err(e) => return Err(checked.extract().err().map_or(e, |v| refused(&package, v))),
    };
    let sandbox_policy = lp.sandbox;
    let host_policy = lp.host;
    let mut base = lp.base;
    let grants_expire = lp.grants_expire;

    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let sigfd = sys::block_signals(&sigs)
        .and_then(|_| sys::signalfd(&sigs))
        .map_err(|e| {
            launch_error(LaunchError::Setup {
                step: sandbox::LaunchStep::Channels,
                cause: e,
            })
        })?;
    let loop_err = |e| CmdError::new(Exit::OsErr, "event_loop", RunError::Loop(e));
    let mut sup = Supervisor::new().map_err(loop_err)?;
    sup.registry()
        .register(
            &mut SourceFd(&sigfd.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )
        .map_err(loop_err)?;

    // Step 8 and the sandbox's build side by side; nothing of the plugin runs before both.
    let (pkg, prepared) =
        extract_beside_build(checked, &sandbox_policy).map_err(|e| refused(&package, e))?;
    // The plugin's own uid must be able to read what is verified (files get fixed 0644/0755
    // modes from extraction; only the private directory itself is made 0700). Before the
    // sandbox goes: the init bound the directory as its owner, the plugin reads it only after.
    // A kept tree has that mode already: it is not changed again (a read-only state directory
    // still runs what it keeps), and a change that fails names the directory.
    let dir = pkg.view().dir;
    if !std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o755) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| {
                CmdError::new(
                    Exit::CantCreate,
                    "extract",
                    RunError::TreeMode {
                        path: dir.to_path_buf(),
                        source,
                    },
                )
            },
        )?;
    }
    // What verification let pass with a warning (a trust mode below strict, a kept tree set
    // aside) is reported on stderr and in the record.
    let verified = audit::for_report(Event::Verification, "ok", &pkg.report);
    for w in &pkg.report.warnings {
        crate::output::print_stderr(&format!("stockade: warning: {}", crate::output::term(w)));
    }
    audit::append_or_fail(&log, verified)?;
    plugin_policy::record(&log, records)?;
    for w in &lp.withheld {
        crate::output::print_stderr(&format!(
            "stockade: withheld {} ({}): {}",
            crate::output::term(&w.target.to_string()),
            w.kind,
            crate::output::term(&w.message)
        ));
    }
    // Only for a plugin that can be granted kv_get or kv_put: no other makes `<state>/kv`.
    let kv = crate::host::kv::reachable(&pkg.manifest)
        .then(|| {
            crate::host::kv::store_name(&cfg.state_dir, &pkg).and_then(|(store, note)| {
                if let Some(note) = note {
                    crate::output::print_stderr(&format!(
                        "stockade: warning: {}",
                        crate::output::term(&note)
                    ));
                }
                KvStore::open(&cfg.state_dir, &store, host_policy.kv.clone())
            })
        })
        .transpose()
        .map_err(|e| {
            let hint = e.open_hint();
            let err = CmdError::new(Exit::Config, "kv_store", RunError::Kv(e));
            match hint {
                Some(h) => err.hint(h),
                None => err,
            }
        })?;
    let mut config = BTreeMap::new();
    config.insert("plugin_name".to_string(), json!(name));
    config.insert(
        "runtime_version".to_string(),
        json!(env!("CARGO_PKG_VERSION")),
    );
    if let Some(id) = &node.hardware_id {
        config.insert("node_id".to_string(), json!(id));
    }

    let sb = match prepared.and_then(Prepared::start) {
        Ok(sb) => sb,
        Err(e) => {
            let (err, mut detail) = crate::cmd::exec::launch_failure(e);
            let mut rec = base.clone();
            rec.outcome = "failed".into();
            audit::keep_signature_status(&base, &mut detail);
            rec.detail = detail.into();
            audit::append_or_fail(&log, rec)?;
            return Err(err);
        }
    };
    // The plugin started from these files: kept for the next run of this package.
    let reused = pkg.dir.is_kept();
    let pkg = pkg.keep_tree(&trees);
    let tree = match (reused, pkg.dir.is_kept()) {
        (true, _) => "reused",
        (false, true) => "kept",
        (false, false) => "temporary",
    };
    for d in sb.report().degradations() {
        crate::output::print_stderr(&format!("stockade: warning: {d}"));
    }
    let mut rec = base.clone();
    rec.outcome = "ok".into();
    rec.layers = audit::enforced_layers(sb.report());
    // How the sandbox was built: beside the package's extraction, or after it.
    let prepared = sb
        .report()
        .layers
        .iter()
        .find(|l| l.layer == "process")
        .map(|l| l.details["prepared"].clone());
    let mut detail = audit::launch_build(sb.report());
    detail.extend(
        json!({
            "pid": sb.pid(),
            "granted": host_policy.capabilities.allow,
            "prepared": prepared,
            "tree": tree,
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    audit::keep_signature_status(&base, &mut detail);
    rec.detail = detail.into();
    let layers = rec.layers.clone();
    audit::append_or_fail(&log, rec)?;
    base.layers = layers;
    let run_audit = RunAudit { log, base };
    let max_frame = host_policy.protocol.max_frame_bytes;
    let pcfg = PluginConfig {
        ceiling: pkg.report.capability_ceiling.iter().copied().collect(),
        manifest: pkg.manifest.clone(),
        policy: host_policy,
        kv,
        config,
        health: None,
        degraded: sb.report().degraded(),
        admitted: pkg.report.admitted(),
    };
    let ends = SessionEnd::of(&pkg, cfg.mode, grants_expire);
    let idx = sup.add(pcfg, sb, Instant::now()).map_err(loop_err)?;
    let (interrupted, ended) = serve(
        &mut sup,
        AgentLink::new(max_frame),
        sigfd.as_fd(),
        &run_audit,
        ends,
    );
    let status = sup
        .exit_status(idx)
        .unwrap_or(Exit::SandboxSetup.code().into());
    let status = match ended {
        Some(end) => i32::from(end.exit.code()),
        None => interrupted_status(status, interrupted),
    };
    if sup.stuck() > 0 {
        crate::output::print_stderr(
            "stockade: waiting for the killed sandbox to end (a process in uninterruptible sleep)",
        );
    }
    // Dropping the supervisor waits for a killed sandbox that had not ended: it is gone only
    // now (its cgroup and uid released).
    drop(sup);
    drop(pkg);
    let _ = io::stdout().flush();
    std::process::exit(status)
}

/// A sandbox ready to start: built and held, or (when it could not be built around the package
/// before extraction) a launch to make.
enum Prepared<'p> {
    Held(sandbox::Held),
    Spec(sandbox::LaunchSpec<'p>),
}

impl Prepared<'_> {
    fn start(self) -> Result<sandbox::Sandboxed, LaunchError> {
        match self {
            Prepared::Held(h) => h.release(),
            Prepared::Spec(s) => sandbox::launch(s),
        }
    }
}

/// Verification's step 8 (extraction, ≈ 3 ms of inflating for the benchmark's 340 KB package)
/// while the sandbox is built (the init's mount table, Landlock, … ≈ 1–2 ms during which this
/// process would only wait): the entrypoint's file is made empty first and opened, so the
/// sandbox is built around its descriptor; extraction then writes into that very file
/// ([`crate::package::extract::Reserved`]). Before the sandbox may go, the written file is
/// opened again and checked as any program is ([`sandbox::Program::open`]) and must be the same
/// file; a script (its descriptor must reach the interpreter, which the held process was not
/// set up for) is launched afresh instead. Step 8's verdict comes first: a refused package's
/// held sandbox is dropped — its init killed, its cgroup removed — before anything ran, and a
/// launch that failed is reported only for a package that verified (the order of `open_verified`
/// then `launch`). No entrypoint to reserve (an HTTP plugin, a symlinked entrypoint): extract,
/// then launch, in turn. A tree kept from an earlier run of the package (`trust.keep_trees`) is
/// handled the same way: its entrypoint is opened, the sandbox built around it while step 8
/// checks the tree file by file; one that does not match is set aside and the package extracted
/// anew, and the sandbox built around the set-aside tree is dropped for a new one.
fn extract_beside_build(
    mut checked: CheckedPackage,
    policy: &ValidatedSandboxPolicy,
) -> Result<(VerifiedPackage, Result<Prepared<'_>, LaunchError>), VerifyError> {
    // A launch made from the verified package, once its files are in place.
    let launch_after = |pkg: VerifiedPackage| {
        let spec = plugin_policy::launch_spec(pkg.view(), policy).map(Prepared::Spec);
        Ok((pkg, spec))
    };
    let in_turn = |checked: CheckedPackage| launch_after(checked.extract()?);
    let Some(entry) = checked.reserve_entrypoint()? else {
        return in_turn(checked);
    };
    let argv = plugin_policy::entry_argv(checked.view());
    // Not openable (a kept tree that lost its entrypoint: step 8 finds it out and extracts the
    // package again): extract, then launch, in turn.
    let shown = plugin_policy::entry_shown(checked.view());
    let Ok(program) = sandbox::Program::reserved(&entry) else {
        return in_turn(checked);
    };
    let program = program.named(shown.clone());
    let reserved_id = sys::file_id(program.fd.as_fd());
    let built_around = checked.view().dir.to_path_buf();
    let spec = plugin_policy::spec_with(checked.view(), policy, (program, argv.clone()));
    let mut slot = Some(checked);
    let mut extracted = None;
    let held = sandbox::prepare_held_during(spec, &mut || {
        extracted = slot.take().map(CheckedPackage::extract);
    });
    let pkg = match (extracted, slot) {
        (Some(done), _) => done?,
        (None, Some(checked)) => checked.extract()?,
        (None, None) => {
            return Err(VerifyError::Workdir(io::Error::other(
                "the package was taken for extraction and not extracted",
            )))
        }
    };
    // A kept tree that did not match was set aside and the package extracted elsewhere: the
    // sandbox built around the set-aside tree goes (whatever became of it), a new one is made.
    if pkg.view().dir != built_around {
        drop(held);
        return launch_after(pkg);
    }
    let held = match held {
        Ok(h) => h,
        Err(e) => return Ok((pkg, Err(e))),
    };
    let written = match sandbox::Program::open(&entry, "") {
        Ok(p) => p.named(shown),
        Err(e) => return Ok((pkg, Err(e.naming(&shown)))),
    };
    let same = matches!((sys::file_id(written.fd.as_fd()), reserved_id), (Ok(a), Ok(b)) if a == b);
    if same && !written.is_script {
        return Ok((pkg, Ok(Prepared::Held(held))));
    }
    drop(held);
    let spec = plugin_policy::spec_with(pkg.view(), policy, (written, argv));
    Ok((pkg, Ok(Prepared::Spec(spec))))
}

/// The agent's output (fd 1) never blocks the loop: messages are queued here and written as
/// the pipe drains (and the agent's input is read only while it has room: [`AgentInput`]). An
/// agent that lets [`MAX_AGENT_OUTBOUND`] bytes pile up all the same (it stopped
/// reading) is treated as gone, as `serve` drops such a connection: its output is discarded
/// (reported on stderr) and the plugin is shut down as after EOF on stdin. So is one that
/// stalls — its output full ([`AGENT_INPUT_HIGH_WATER`] queued: requests wait for room, or
/// would) while it takes not one byte for [`STALL`], `serve`'s rule — whether or not its stdin
/// has ended, and whether or not a request is left waiting: without the rule, an agent that
/// closed its stdin and never read kept the session, and the plugin, alive until a signal; and
/// so did one that kept its stdin open once every request it sent had gone to the plugin
/// before their answers filled its output (none waited, so none counted as stalled).
struct AgentOut {
    buf: Vec<u8>,
    /// fd 1 is non-blocking and in the poller (a pipe or socket); else writes block (a
    /// regular file never stalls).
    polled: bool,
    ok: bool,
    /// Since when the output has been full (requests waiting for room, or would) with nothing
    /// taken (reset by any write).
    stalled_since: Option<Instant>,
}

/// Bytes queued for the agent at most.
const MAX_AGENT_OUTBOUND: usize = 16 << 20;
/// How long the agent may go without taking any of its output once the plugin has ended.
const FINAL_DRAIN_MS: i32 = 10_000;

impl AgentOut {
    /// Queue what the supervisor has for the agent; false when the agent just overflowed.
    fn queue(&mut self, sup: &mut Supervisor, audit: &RunAudit) -> bool {
        for m in std::mem::take(&mut sup.to_agent) {
            audit.observe(&m);
            if !self.ok {
                continue;
            }
            let b = encode(&m);
            if self.buf.len() + b.len() > MAX_AGENT_OUTBOUND {
                self.ok = false;
                self.buf.clear();
                crate::output::print_stderr(&format!(
                    "stockade run: the agent stopped reading ({MAX_AGENT_OUTBOUND} bytes queued); \
                     treating it as gone"
                ));
                return false;
            }
            self.buf.extend_from_slice(&b);
        }
        true
    }

    fn flush(&mut self) {
        let out = io::stdout();
        while self.ok && !self.buf.is_empty() {
            match nix::unistd::write(out.as_fd(), &self.buf) {
                Ok(n) => {
                    self.buf.drain(..n);
                    self.stalled_since = None;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                // EPIPE: the agent is gone; the loop shuts the plugin down as after EOF.
                Err(e) => {
                    crate::output::print_stderr(&format!(
                        "stockade run: cannot write to the agent ({e}); dropping its output and \
                         shutting the plugin down"
                    ));
                    self.ok = false;
                    self.buf.clear();
                }
            }
        }
    }

    /// The agent's output has no room (back-pressure): requests wait for it, or would. Not
    /// only while some wait: when every request already went to the plugin before the answers
    /// filled the output, none waits, and an agent that takes none of them must stall all the
    /// same (its stdin open, nothing else would end the session).
    fn full(&self) -> bool {
        self.ok && self.buf.len() >= AGENT_INPUT_HIGH_WATER
    }

    /// Note a turn on which the agent's output has no room ([`AgentOut::full`]): once the
    /// agent has taken nothing for [`STALL`], it is treated as gone (said on stderr).
    fn stall(&mut self, now: Instant) {
        let since = *self.stalled_since.get_or_insert(now);
        if self.ok && now.duration_since(since) >= STALL {
            crate::output::print_stderr(&format!(
                "stockade run: the agent stopped reading ({} s without taking an answer, its \
                 output full); dropping its output and shutting the plugin down",
                STALL.as_secs()
            ));
            self.ok = false;
            self.buf.clear();
        }
    }

    /// When the agent counts as stalled, if its output has had no room since.
    fn stall_deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|s| s + STALL)
    }

    /// The agent's end of stdout is closed (an error event on it): as EPIPE, said at once.
    fn gone(&mut self) {
        if self.ok {
            crate::output::print_stderr(
                "stockade run: the agent closed its output; dropping it and shutting the plugin \
                 down",
            );
        }
        self.ok = false;
        self.buf.clear();
    }

    /// At the end: the agent takes the rest for as long as it keeps taking some; it is given up
    /// after [`FINAL_DRAIN_MS`] without taking a byte, or at a signal (SIGINT/SIGTERM/SIGHUP
    /// arrive on `sigfd`, blocked otherwise).
    fn drain(&mut self, sigfd: std::os::fd::BorrowedFd<'_>) {
        let idle_limit = std::time::Duration::from_millis(FINAL_DRAIN_MS as u64);
        let mut progress = Instant::now();
        self.flush();
        while self.ok && !self.buf.is_empty() && self.polled && progress.elapsed() < idle_limit {
            let before = self.buf.len();
            let ready = sys::poll(
                &[(io::stdout().as_fd(), libc::POLLOUT), (sigfd, libc::POLLIN)],
                100,
            );
            if ready.is_ok_and(|r| r[1] & libc::POLLIN != 0) {
                break;
            }
            self.flush();
            if self.buf.len() < before {
                progress = Instant::now();
            }
        }
        if !self.buf.is_empty() {
            crate::output::print_stderr(&format!(
                "stockade run: the agent did not take its last {} bytes; dropped",
                self.buf.len()
            ));
        }
    }
}

/// The exit status of a session that ended with the plugin's `status`, stopped by the signal
/// `interrupted` if one came: 128+N for signal N when the plugin stopped cleanly (0), as a
/// shell reports a command that Ctrl-C (130) or a SIGTERM (143) ended — a foreground `run`
/// stopped so is not one that finished (a script's `stockade run … && next` must not go on).
/// A plugin that did not stop cleanly keeps its own status (137: killed after the grace).
fn interrupted_status(status: i32, interrupted: Option<i32>) -> i32 {
    match interrupted {
        Some(sig) if status == 0 => 128 + sig,
        _ => status,
    }
}

/// What ends a session at a time of the wall clock: the package's certificate chain expiring
/// (`validity.expired`, 83) — under `--trust-mode strict` only: a `warn` run lets an expired
/// certificate pass with a warning, as `serve` runs such a plugin on — or a grant its launch
/// honoured expiring (`grant_expired`, 65): `run` cannot relaunch the plugin without the item
/// as `serve` does, so the session ends. The earlier of the two.
#[derive(Debug, Clone, Copy)]
struct SessionEnd {
    /// Unix seconds.
    at: u64,
    kind: &'static str,
    exit: Exit,
}

impl SessionEnd {
    fn of(pkg: &VerifiedPackage, mode: TrustMode, grants_expire: Option<u64>) -> Option<Self> {
        let chain = crate::host::fleet::chain_expiry(pkg)
            .filter(|_| mode == TrustMode::Strict)
            .map(|at| SessionEnd {
                at,
                kind: "validity.expired",
                exit: Exit::Validity,
            });
        let grant = grants_expire.map(|at| SessionEnd {
            at,
            kind: "grant_expired",
            exit: Exit::DataErr,
        });
        [chain, grant].into_iter().flatten().min_by_key(|e| e.at)
    }

    fn message(&self) -> String {
        match self.kind {
            "grant_expired" => format!(
                "a grant this session's launch honoured expired at {}: the session ends",
                self.at
            ),
            _ => format!(
                "the package's certificate chain expired at {}: the session ends",
                self.at
            ),
        }
    }
}

/// The event loop of `run`: the agent on fd 0/1, one plugin, signals. fd 0 and fd 1 are made
/// non-blocking for the loop and their flags restored at the end (they are shared with
/// whoever started us). Returns the signal that stopped the session, if one did, and the
/// expiry that ended it ([`SessionEnd`]), if one did: the session is stopped as at a signal
/// once the wall clock reaches `ends` (looked at again at least once a minute,
/// [`crate::host::fleet::expiry_wait`], so a clock stepped forwards past it ends the session
/// within that).
fn serve(
    sup: &mut Supervisor,
    mut agent: AgentLink,
    sigfd: std::os::fd::BorrowedFd<'_>,
    audit: &RunAudit,
    ends: Option<SessionEnd>,
) -> (Option<i32>, Option<SessionEnd>) {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let saved_in = sys::status_flags(stdin.as_fd()).ok();
    let saved_out = sys::status_flags(stdout.as_fd()).ok();
    // When stderr is the same file as stdout (`2>&1`), they most likely share one open file
    // description, and O_NONBLOCK on it would make the runtime's own diagnostics fail with
    // EAGAIN: then stdout stays blocking (the stalled-agent protection is lost, reported).
    let shared = sys::same_file(stdout.as_fd(), io::stderr().as_fd());
    if shared && !std::io::IsTerminal::is_terminal(&stdout) {
        crate::output::print_stderr(
            "stockade run: stdout and stderr are the same file; writes to the agent may block",
        );
    }
    let mut out = AgentOut {
        buf: Vec::new(),
        polled: !shared
            && sys::set_nonblocking(stdout.as_fd()).is_ok()
            && sup
                .registry()
                .register(&mut SourceFd(&1), AGENT_OUT, Interest::WRITABLE)
                .is_ok(),
        ok: true,
        stalled_since: None,
    };
    if !out.polled && !shared {
        if let Some(f) = saved_out {
            let _ = sys::set_status_flags(stdout.as_fd(), f);
        }
    }
    let interrupted = run_loop(sup, &mut agent, sigfd, &mut out, audit, ends);
    out.queue(sup, audit);
    out.drain(sigfd);
    for (fd, saved) in [(stdin.as_fd(), saved_in), (stdout.as_fd(), saved_out)] {
        if let Some(f) = saved {
            let _ = sys::set_status_flags(fd, f);
        }
    }
    interrupted
}

fn run_loop(
    sup: &mut Supervisor,
    agent: &mut AgentLink,
    sigfd: std::os::fd::BorrowedFd<'_>,
    out: &mut AgentOut,
    audit: &RunAudit,
    ends: Option<SessionEnd>,
) -> (Option<i32>, Option<SessionEnd>) {
    let stdin = io::stdin();
    // A pipe or socket joins the loop; a regular file or /dev/null cannot be polled (EPERM):
    // it never blocks, so it is always "readable" and read in turns like a pipe.
    let polled = sys::set_nonblocking(stdin.as_fd()).is_ok()
        && sup
            .registry()
            .register(&mut SourceFd(&0), AGENT, Interest::READABLE)
            .is_ok();
    let mut input = AgentInput {
        open: true,
        more: true,
        polled,
    };
    let mut stopping = false;
    // The first signal that stopped the session (a later one changes nothing).
    let mut interrupted = None;
    // The expiry that stopped it, if one did before anything else began a stop.
    let mut ended = None;
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if let Some(end) = ends.filter(|e| !stopping && unix_now() >= e.at) {
            crate::output::print_stderr(&format!("stockade: {}: {}", end.kind, end.message()));
            audit.expired(&end);
            ended = Some(end);
            input.close(sup);
            stopping = true;
            sup.shutdown_all(now);
        }
        if !out.queue(sup, audit) {
            input.close(sup);
        }
        out.flush();
        if input.readable(out, agent) {
            input.pump(&stdin, &mut buf, agent, sup, out, audit, now);
            out.flush();
        }
        if out.full() {
            out.stall(now);
        } else {
            out.stalled_since = None;
        }
        if !out.ok {
            // The agent's end of stdout is gone (EPIPE) or it stopped reading: as after EOF.
            input.close(sup);
        }
        // A plugin still starting gets to finish its handshake (deadline-bounded) first.
        let idle = !agent.has_backlog() && sup.in_flight() == 0 && !sup.any_starting();
        if !input.open && !stopping && (!out.ok || idle) {
            stopping = true;
            sup.shutdown_all(now);
        }
        out.queue(sup, audit);
        out.flush();
        if stopping && sup.all_gone() {
            return (interrupted, ended);
        }
        let timeout = if input.readable(out, agent) {
            Some(std::time::Duration::ZERO)
        } else {
            let now = Instant::now();
            let stall = out
                .stall_deadline()
                .map(|at| at.saturating_duration_since(now));
            let expiry = ends
                .filter(|_| !stopping)
                .map(|e| crate::host::fleet::expiry_wait(e.at, unix_now()));
            [sup.next_timeout(now), stall, expiry]
                .into_iter()
                .flatten()
                .min()
        };
        if sup.poll(&mut events, timeout).is_err() {
            return (interrupted, ended);
        }
        let now = Instant::now();
        for ev in events.iter() {
            match ev.token() {
                AGENT => input.more = true,
                // The agent closed its end of stdout: said at once, not at the next write.
                AGENT_OUT if ev.is_error() || ev.is_write_closed() => out.gone(),
                AGENT_OUT => out.flush(),
                SIGNALS => {
                    while let Ok(Some(sig)) = sys::read_signalfd(sigfd) {
                        // A signal during a stop the agent began (its input ended) interrupts
                        // nothing: the session is already finishing the way it asked.
                        if !stopping {
                            interrupted.get_or_insert(sig);
                        }
                    }
                    input.close(sup);
                    if !stopping {
                        stopping = true;
                        sup.shutdown_all(now);
                    }
                }
                // Stamped with the time of the read, not the turn's (as `serve` does): an
                // answer taken in after its deadline is the deadline's.
                t if sup.owns(t) => sup.ready(t, Instant::now()),
                _ => {}
            }
        }
        sup.serve_hot(Instant::now());
        sup.fire_timers(Instant::now());
    }
}

/// Reads of the agent's input per loop turn at most (64 KiB each), and requests answered: the
/// plugin, timers and the agent's output are served between turns however fast the agent
/// writes.
const AGENT_READ_BUDGET: usize = 4;
/// See [`AGENT_READ_BUDGET`].
const AGENT_FRAME_BUDGET: usize = 256;
/// The agent's requests are answered only while less than this is queued for its output, one
/// at a time (an answer can be far larger than its request: a cached one, a plugin's result):
/// an agent that writes requests faster than it reads the answers is slowed to its own pace
/// (its writes block) instead of growing the queue toward [`MAX_AGENT_OUTBOUND`].
const AGENT_INPUT_HIGH_WATER: usize = 1 << 20;

/// The agent's side of fd 0: whether it is still open, and whether it may have unread bytes
/// (the poller is edge-triggered: input left unread for the budget or for back-pressure gets no
/// second event, so it is read again when there is room).
struct AgentInput {
    open: bool,
    more: bool,
    polled: bool,
}

impl AgentInput {
    /// Requests wait, or input may, and the agent's output has room for their answers.
    fn readable(&self, out: &AgentOut, agent: &AgentLink) -> bool {
        out.ok && self.waiting(agent) && out.buf.len() < AGENT_INPUT_HIGH_WATER
    }

    fn waiting(&self, agent: &AgentLink) -> bool {
        agent.has_backlog() || (self.open && self.more)
    }

    /// Answer the agent's requests one at a time while its output has room, reading a chunk
    /// whenever none waits, within the turn's budgets.
    #[allow(clippy::too_many_arguments)] // the loop's parts, borrowed for one turn
    fn pump(
        &mut self,
        stdin: &io::Stdin,
        buf: &mut [u8],
        agent: &mut AgentLink,
        sup: &mut Supervisor,
        out: &mut AgentOut,
        audit: &RunAudit,
        now: Instant,
    ) {
        let (mut reads, mut frames) = (0, 0);
        while out.ok && out.buf.len() < AGENT_INPUT_HIGH_WATER && frames < AGENT_FRAME_BUDGET {
            if agent.answer_next(sup, now) {
                frames += 1;
                if !out.queue(sup, audit) {
                    return self.close(sup);
                }
                continue;
            }
            if !self.open || !self.more || reads == AGENT_READ_BUDGET {
                return;
            }
            reads += 1;
            match stdin.lock().read(buf) {
                Ok(0) => {
                    agent.finish();
                    self.close(sup);
                }
                Ok(n) => agent.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.more = false,
                Err(_) => self.close(sup),
            }
        }
    }

    /// No more input: EOF, a read error, a signal, or an agent whose output is gone.
    fn close(&mut self, sup: &mut Supervisor) {
        if self.open && self.polled {
            let _ = sup.registry().deregister(&mut SourceFd(&0));
        }
        self.open = false;
    }
}

/// The audit log of one `run`, and the fields every record of it shares.
struct RunAudit {
    log: AuditLog,
    base: Record,
}

impl RunAudit {
    /// A `denial` record of the expiry that ends the session (`detail.request` `"expiry"`),
    /// as `serve` records the quarantine of a plugin whose chain expired. Not written: said on
    /// stderr (the session ends all the same).
    fn expired(&self, end: &SessionEnd) {
        let mut rec = self.base.clone();
        rec.event = Event::Denial;
        rec.outcome = end.kind.into();
        rec.set_detail(
            json!({"request": "expiry", "kind": end.kind, "expired_at": end.at,
                            "error": end.message()}),
        );
        if let Err(e) = audit::append_or_fail(&self.log, rec) {
            crate::output::print_stderr(&e.render_text());
        }
    }

    /// Record what the supervisor tells the agent about the plugin's end and about denials
    /// (`plugin_state` terminated/exited; a `denied` reason is also a denial). The supervisor
    /// (runtime/src/host/) is not touched: its notifications are the source.
    fn observe(&self, m: &Value) {
        if m["method"] != "plugin_state" {
            return;
        }
        let p = &m["params"];
        let state = p["state"].as_str().unwrap_or_default();
        if state != "terminated" && state != "exited" {
            return;
        }
        let kind = p["reason"]["kind"].as_str().unwrap_or(state).to_string();
        let mut events = vec![Event::Termination];
        if kind == "denied" {
            events.insert(0, Event::Denial);
        }
        for ev in events {
            let mut rec = self.base.clone();
            rec.event = ev;
            rec.outcome = kind.clone();
            // Its `signer_chain` is the launch record's: so is what that says of it.
            rec.set_detail(p.clone());
            // The session goes on; a record that cannot be written is said on stderr.
            if let Err(e) = audit::append_or_fail(&self.log, rec) {
                crate::output::print_stderr(&e.render_text());
            }
        }
    }
}
