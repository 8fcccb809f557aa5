//! What runs inside the new namespaces: the sandbox's init (pid 1) and the program (pid 2).
//!
//! ## Why an init process
//! The program does not run as pid 1: a pid-1 process ignores every signal it has no handler
//! for (so `kill -TERM $$` or `kill -9 $$` would do nothing) and inherits every orphan. Our init
//! is a copy of the runtime that applies every layer to itself first (identity, filesystem,
//! rlimits, capabilities, no_new_privs, Landlock), starts the program, reaps zombies and exits with
//! the program's status when it ends, which makes the kernel kill whatever is left in the pid
//! namespace. It never executes anything, holds no capability, is not dumpable, runs under its
//! own seccomp filter allowing only wait/write/exit, and is killed with the runtime (parent-death
//! signal).
//!
//! ## Order (see [`contain`])
//! parent-death signal → wait for the parent's go (maps written, cgroup joined) →
//! oom_score_adj and nice at least 0, no real-time policy or I/O class, no KSM merge-any, the
//! default timer slack (process_state.rs) → neutral
//! command line → not dumpable →
//! private cgroup namespace → open bind sources → identity (setresgid/setresuid to the inside
//! ids; the user namespace keeps our capabilities for the mount work) → a new session keyring
//! (the plugin uid's) → stdio → filesystem
//! (mounts, pivot_root) → hostname, no NIS domain name → loopback → default signal dispositions → umask 022 and
//! no personality flags → rlimits (the policy's, and every other one at the runtime's value) →
//! capabilities (securebits locked,
//! bounding, ambient, inheritable, permitted, effective all empty) → no_new_privs → Landlock →
//! start the program (`clone(CLONE_VM|CLONE_VFORK)` on its own stack: no copy of our page
//! tables; we resume once it executed). The program then gets a new session, a parent-death
//! signal, close-on-exec on every descriptor but 0-2, seccomp, and `execveat` on the
//! descriptor opened by the runtime — or, for a file the sandbox's host ids could change (through
//! `/proc/self/exe`, a script's `/dev/fd/N`), on it opened again where it is read-only (held for the warm pool: everything but the exec — and the
//! filter, when it does not admit the `read` the wait is — happens before the go); init closes
//! everything but the status pipe, installs its own filter and waits.

use super::report::LayerReport;
use super::seccomp::Filters;
use super::{landlock, mounts, process_state, rlimits, LaunchStep};
use crate::package::verify::error_chain;
use crate::sys;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use stockade_policy::sandbox::{Degradation, NetworkMode, ValidatedSandboxPolicy};

/// Messages from the sandbox's init to the runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChildMsg {
    /// Layers the child applied (Landlock, capabilities …).
    Layers(Vec<LayerReport>),
    /// Setup failed at this step.
    Failed {
        /// The step.
        step: LaunchStep,
        /// The error chain, rendered.
        error: String,
        /// Set when the step did not fail but found its layer missing on this kernel (a
        /// Landlock ABI below what the policy demands) and the policy does not allow this
        /// degradation: the runtime reports a refusal (`layer_unavailable`), not a broken setup.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<Degradation>,
        /// The errno of a step that made namespaces (`cgroup_namespace`, `namespaces`), so the
        /// runtime tells a limit of the host's from a broken step (review-158).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
    },
    /// Sent by the program's own process, before its exec, when the launch asks for it
    /// (`LaunchSpec::pid_required`; [`PROGRAM_MSG`]): the kernel attaches
    /// that process's pid to the message, in the runtime's pid namespace, which is how the
    /// runtime knows the program's host pid even when it has already ended (and been reaped)
    /// by the time the runtime looks.
    Program,
    /// The program was forked and is about to exec.
    Forked {
        /// Its pid inside the sandbox.
        ns_pid: i32,
    },
}

/// [`ChildMsg::Program`] as sent: the program's process runs in the init's memory until its
/// exec (`sys::vfork_exec`), where nothing may allocate, so the message is a constant.
pub const PROGRAM_MSG: &[u8] = b"\"Program\"";

/// The program's umask: a login's (the runtime's caller's must not reach it).
const UMASK: u32 = 0o022;

/// The NIS domain name the program sees: the kernel's own when none was set (`UTS_DOMAINNAME`),
/// never the host's.
pub const NO_DOMAIN_NAME: &[u8] = b"(none)";

/// Set this UTS namespace's NIS domain name to [`NO_DOMAIN_NAME`]. The namespace was made with a
/// copy of the runtime's names: the domain name too, which `uname` shows the program — a host's
/// `domainname corp.internal` was every plugin's. Only when it differs: stockade.service allows
/// `setdomainname` for that, and a unit that does not refuses it — failing the launch, closed —
/// only where there is a name to hide.
pub fn clear_domain_name() -> std::io::Result<()> {
    if sys::domainname()? != NO_DOMAIN_NAME {
        sys::setdomainname(NO_DOMAIN_NAME)?;
    }
    Ok(())
}

/// The NIS domain name the sandbox's UTS namespace copied could not be set back to
/// [`NO_DOMAIN_NAME`]: the launch stops (step `hostname`, whose `sethostname` passed), and the
/// message names the call and what refuses it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set the NIS domain name the sandbox's UTS namespace copied from the runtime's back \
     to (none) with setdomainname (stockade.service allows it; a unit whose SystemCallFilter= \
     lacks setdomainname, or with ProtectHostname=yes, refuses it: allow it, or clear the \
     host's domain name)"
)]
pub struct DomainNameError(#[source] pub std::io::Error);

/// The session keyring the program starts with, for the report: the runtime's caller's (a
/// login's, holding its keys — keyctl is refused inside, but the kernel still searches a
/// possessor's keyrings on its behalf) is replaced by a new, empty one.
fn leave_session_keyring() -> Result<&'static str, SessionKeyringError> {
    match sys::join_new_session_keyring() {
        Ok(_) => Ok("new, empty, the plugin uid's"),
        // No keys in this kernel: there is no keyring to inherit. A kernel with keys has
        // `/proc/key-users` (the host's /proc still: the mounts come later), and its ENOSYS is a
        // seccomp filter's answer (one of a container's): refused, not absent.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOSYS)
                && !std::path::Path::new("/proc/key-users").exists() =>
        {
            Ok("none (a kernel without keys)")
        }
        Err(e) => Err(SessionKeyringError(e)),
    }
}

/// The inherited session keyring could not be replaced: the launch stops (step
/// `process_state`).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot replace the session keyring inherited from the runtime's caller with a new one \
     (keyctl JOIN_SESSION_KEYRING: a seccomp filter refusing keyctl, as a unit's \
     SystemCallFilter=~@keyring does, or the plugin uid's key quota, kernel.keys.maxkeys)"
)]
pub struct SessionKeyringError(#[source] pub std::io::Error);

/// What the grandchild reports through the exec pipe when it could not start the program.
pub const EXEC_FAILED: u8 = 1;
/// The grandchild failed before exec (seccomp, session).
pub const PRE_EXEC_FAILED: u8 = 2;

/// Everything the child needs; a fork copies it.
pub struct ChildCtx<'a> {
    /// The runtime's scheduling policy, read before the clone: the inherited one the report
    /// names (a real-time one the child left before its cgroup join, `sandbox::prepare`).
    pub runtime_policy: i32,
    /// The validated policy.
    pub policy: &'a ValidatedSandboxPolicy,
    /// Rootless launch.
    pub rootless: bool,
    /// The filesystem plan.
    pub plan: &'a mounts::MountPlan,
    /// The program.
    pub exec_fd: &'a OwnedFd,
    /// `#!` script: keep the descriptor open across exec (/dev/fd/N).
    pub is_script: bool,
    /// The program's file is one the program could change through `/proc/self/exe` or a
    /// script's `/dev/fd/N` (its host uid owns it, or may write it:
    /// [`mounts::program_changeable`]): execute it from a descriptor opened again where it is
    /// read-only — the sandbox's bind that shows it, a bind of the file alone, or a sealed copy
    /// of a file deleted since ([`mounts::ProgramSource`]).
    pub reopen_program: bool,
    /// argv and envp.
    pub argv: &'a [CString],
    /// envp.
    pub envp: &'a [CString],
    /// Child end of the control socket.
    pub sock: &'a OwnedFd,
    /// stdin, stdout, stderr (child ends).
    pub stdio: [&'a OwnedFd; 3],
    /// Write end of the exec-status pipe (close-on-exec: EOF means exec succeeded).
    pub exec_w: &'a OwnedFd,
    /// RLIMIT_DATA to set because no memory cgroup enforces `memory_max` (rootless without a
    /// delegated cgroup, degradation allowed by policy); `None` when the cgroup does.
    pub data_limit: Option<u64>,
    /// Write end of the exit-status pipe (init writes the program's wait status).
    pub status_w: &'a OwnedFd,
    /// Compiled seccomp filters.
    pub filters: &'a Filters,
    /// Warm pool: after reporting the layers, fork the program's process and have it wait for
    /// the runtime's `R` before its seccomp and exec (EOF instead: the held sandbox was
    /// discarded; it exits).
    pub hold: bool,
    /// The program's process sends [`ChildMsg::Program`] before its exec, so the runtime learns
    /// its host pid from the kernel (`LaunchSpec::pid_required`).
    pub announce_program: bool,
}

/// Why the init's setup stopped: what [`ChildMsg::Failed`] carries.
#[derive(Debug)]
pub(super) struct Failure {
    step: LaunchStep,
    error: String,
    refused: Option<Degradation>,
    errno: Option<i32>,
}

impl From<(LaunchStep, String)> for Failure {
    fn from((step, error): (LaunchStep, String)) -> Self {
        Failure {
            step,
            error,
            refused: None,
            errno: None,
        }
    }
}

impl From<Failure> for ChildMsg {
    fn from(f: Failure) -> Self {
        ChildMsg::Failed {
            step: f.step,
            error: f.error,
            refused: f.refused,
            errno: f.errno,
        }
    }
}

/// A Landlock layer that stops the launch: a refusal when the kernel offers less than the
/// policy demands ([`landlock::LandlockError::Insufficient`]), a setup failure otherwise.
pub(super) fn landlock_failure(e: &landlock::LandlockError) -> Failure {
    Failure {
        step: LaunchStep::Landlock,
        error: error_chain(e),
        refused: e.refused(),
        errno: None,
    }
}

type Step<T> = Result<T, Failure>;

/// As [`at`], keeping the errno, for a step that makes namespaces: the runtime reads the host's
/// limits to tell which refused them ([`ChildMsg::Failed`]'s `errno`).
pub(super) fn at_errno(step: LaunchStep) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure {
        step,
        error: e.to_string(),
        refused: None,
        errno: e.raw_os_error(),
    }
}

fn at<E: std::fmt::Display>(step: LaunchStep) -> impl FnOnce(E) -> (LaunchStep, String) {
    move |e| (step, e.to_string())
}

fn send(sock: &UnixDatagram, msg: &ChildMsg) {
    if let Ok(bytes) = serde_json::to_vec(msg) {
        let _ = sock.send(&bytes);
    }
}

/// Entry point in the cloned child. Never returns.
pub fn contain(ctx: &ChildCtx<'_>) -> ! {
    let sock = match ctx.sock.try_clone() {
        Ok(fd) => UnixDatagram::from(fd),
        Err(_) => sys::exit_now(125),
    };
    match setup_and_fork(ctx, &sock) {
        Ok(pid) => run_init(ctx, pid),
        Err(failure) => {
            send(&sock, &ChildMsg::from(failure));
            sys::exit_now(125)
        }
    }
}

fn setup_and_fork(ctx: &ChildCtx<'_>, sock: &UnixDatagram) -> Step<i32> {
    let p = ctx.policy;
    sys::set_parent_death_signal(libc::SIGKILL).map_err(at(LaunchStep::ParentDeathSignal))?;
    // Wait for the parent: it writes our uid/gid maps and moves us into the cgroup. EOF means the
    // parent died or gave up.
    let mut go = [0u8; 1];
    match sock.recv(&mut go) {
        Ok(1) if go[0] == b'G' => {}
        _ => sys::exit_now(125),
    }
    // The runtime's caller's oom_score_adj, nice value, real-time policy and I/O class are
    // replaced first: `/proc/self/oom_score_adj` is root's once we change ids or stop being
    // dumpable (process_state.rs says which values and why).
    let process = process_state::apply(ctx.runtime_policy)
        .map_err(|e| (LaunchStep::ProcessState, error_chain(&e)))?;
    // Not dumpable: the program (same uid in rootless mode) must not read or write our memory
    // through /proc/1/mem, nor read our environment, which is a copy of the runtime's. Only now:
    // the parent needed /proc/<pid>/uid_map writable by its own uid until the go.
    // `/proc/1/cmdline` is readable by the program whatever the dumpable flag says, and our argv
    // area is still the runtime's command line: replace it with a neutral name. Before the
    // dumpable flag goes: a non-dumpable process's /proc files belong to root, and rootless we
    // could no longer open our own /proc/self/mem.
    sys::set_cmdline(b"stockade-init").map_err(at(LaunchStep::HideCmdline))?;
    sys::set_dumpable(false).map_err(at(LaunchStep::NotDumpable))?;
    // A cgroup namespace rooted at the sandbox's own cgroup (we are in it now).
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(at_errno(LaunchStep::CgroupNamespace))?;
    // Network, IPC and UTS namespaces: made here rather than by the runtime's `clone`, owned
    // by our user namespace exactly as they would be then. A new network namespace is the
    // costliest part of the clone (≈ 0.4 ms of its ≈ 0.6 ms here); made here, it is built
    // while the runtime does something useful (`stockade run` extracts the package meanwhile).
    // Nothing ran in the host's ones: this process has opened nothing since the clone.
    sys::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
        .map_err(at_errno(LaunchStep::Namespaces))?;
    // Bind sources must be mounts of *our* mount namespace (the kernel refuses to bind from
    // another one), so they are opened here, before the staging root hides anything and while
    // our host uid still passes the owner checks on the host paths.
    let sources = mounts::open_sources(ctx.plan).map_err(at(LaunchStep::MountSources))?;
    let program_source = if ctx.reopen_program {
        Some(
            mounts::open_program_source(ctx.exec_fd.as_fd(), ctx.plan, &sources)
                .map_err(at(LaunchStep::MountSources))?,
        )
    } else if ctx.is_script {
        // A script's interpreter is handed `/dev/fd/N`, whose link names the runtime's file by
        // its host path, absent inside: Node.js resolves its script's real path and failed
        // with ENOENT on the state directory. Where a read-only bind shows the file (the
        // package at /plugin), it is opened there, so the link names `/plugin/…`; elsewhere
        // it runs as before.
        match mounts::open_program_source(ctx.exec_fd.as_fd(), ctx.plan, &sources) {
            Ok(
                shown @ mounts::ProgramSource::Path {
                    inside: Some(_), ..
                },
            ) => Some(shown),
            _ => None,
        }
    } else {
        None
    };
    // The ids the program will have. Our host uid is not root *in this namespace* (uid 0 is not
    // mapped), so the kernel keeps our namespace capabilities across the switch and the mount
    // work below still works; files we create are owned by the mapped inside uid.
    sys::setresgid(p.inside_gid).map_err(at(LaunchStep::Identity))?;
    sys::setresuid(p.inside_uid).map_err(at(LaunchStep::Identity))?;
    // A session keyring of its own, made now that the ids are the plugin's: owned by its uid and
    // counted in that uid's key quota, not the runtime's (one per running plugin would exhaust
    // `stockade`'s 200). Before the filter, which refuses keyctl.
    let keyring =
        leave_session_keyring().map_err(|e| (LaunchStep::ProcessState, error_chain(&e)))?;
    // The kernel clears the parent-death signal when credentials change: set it again, then
    // make sure the runtime did not die in between (its end of the socket would be closed).
    sys::set_parent_death_signal(libc::SIGKILL).map_err(at(LaunchStep::ParentDeathSignal))?;
    if sys::poll(&[(ctx.sock.as_fd(), 0)], 0)
        .map(|r| r[0] & (libc::POLLHUP | libc::POLLERR) != 0)
        .unwrap_or(true)
    {
        sys::exit_now(125)
    }
    for (fd, target) in ctx.stdio.iter().zip(0..) {
        sys::dup2(fd.as_fd(), target).map_err(at(LaunchStep::Stdio))?;
    }
    let copied = matches!(program_source, Some(mounts::ProgramSource::Copy(_)));
    let (applied, reopened) =
        mounts::apply(ctx.plan, &sources, program_source).map_err(|(s, e)| (s, e.to_string()))?;
    drop(sources);
    // From here on the program is the re-opened descriptor; the runtime's, of the host's
    // writable mount, is closed below with everything else.
    let with_reopened;
    let ctx = match &reopened {
        Some(fd) => {
            with_reopened = ChildCtx {
                exec_fd: fd,
                ..*ctx
            };
            &with_reopened
        }
        None => ctx,
    };
    sys::sethostname(&p.hostname).map_err(at(LaunchStep::Hostname))?;
    clear_domain_name().map_err(|e| (LaunchStep::Hostname, error_chain(&DomainNameError(e))))?;
    if p.network == NetworkMode::Loopback {
        sys::net::loopback_up().map_err(at(LaunchStep::Loopback))?;
    }
    // Drop every descriptor inherited from the runtime but the ones this launch uses. Under
    // `stockade serve` those are the pipes of every other plugin: they must not live on in this
    // sandbox's init, and past the `nofile` limit set next (256 by default) nothing could be
    // opened any more (the Landlock ruleset, the exec-status report).
    sys::close_all_but(&[
        0,
        1,
        2,
        sock.as_raw_fd(),
        ctx.sock.as_raw_fd(),
        ctx.exec_fd.as_raw_fd(),
        ctx.exec_w.as_raw_fd(),
        ctx.status_w.as_raw_fd(),
    ])
    .map_err(at(LaunchStep::Stdio))?;
    // Signals the runtime ignores (SIGPIPE: Rust's default) would stay ignored across the
    // program's exec; reset once here (64 calls) rather than on the program's critical path.
    // Handlers need no reset: exec drops them. As pid 1 of its namespace, init is not
    // killed by default-action signals from inside it.
    sys::reset_signal_dispositions().map_err(at(LaunchStep::SignalDispositions))?;
    // The umask and the personality flags are inherited through fork and exec too: whatever the
    // shell or unit that started the runtime had (`umask 000`: a plugin's files in a writable
    // bind made world-writable on the host, for any user and any other plugin given the
    // directory; `setarch -R`: the plugin without ASLR, which it cannot undo, `personality`
    // being refused) would be the program's. It starts with a login's umask, 022, and the plain
    // execution domain.
    sys::set_umask(UMASK);
    sys::clear_personality_flags().map_err(at(LaunchStep::ProcessState))?;
    let mut rl = set_rlimits(p, ctx.data_limit).map_err(at(LaunchStep::Rlimits))?;
    if !ctx.plan.user_ns_limits.is_empty() {
        // Set by mounts::apply through the sandbox's own /proc.
        let caps: serde_json::Map<_, _> = ctx
            .plan
            .user_ns_limits
            .iter()
            .map(|(file, n)| ((*file).to_string(), json!(n)))
            .collect();
        rl.details["user_namespace"] = caps.into();
    }
    drop_capabilities().map_err(at(LaunchStep::Capabilities))?;
    sys::set_no_new_privs().map_err(at(LaunchStep::NoNewPrivs))?;
    // A sealed copy lives on the kernel's internal mount, which Landlock neither takes a rule
    // for nor restricts.
    let (abi, status) = landlock::apply(p, (!copied).then(|| ctx.exec_fd.as_fd()))
        .map_err(|e| (LaunchStep::Landlock, error_chain(&e)))?;
    let mut layers = vec![
        LayerReport::full(
            "filesystem_root",
            json!({"staged_on": applied.stage, "pivot_root": true, "old_root": "detached",
                   "missing_host_devices": applied.missing_dev}),
        ),
        LayerReport::full("process_state", {
            let mut d = process.details(UMASK);
            d["session_keyring"] = keyring.into();
            d
        }),
        rl,
        LayerReport::full(
            "capabilities",
            json!({"effective": 0, "permitted": 0, "inheritable": 0, "bounding": 0, "ambient": 0,
                   "securebits": "noroot, no_setuid_fixup, keep_caps, no_cap_ambient_raise: set and locked"}),
        ),
        LayerReport::full("no_new_privs", json!({"value": 1})),
    ];
    layers.extend(
        landlock::evaluate(p, ctx.rootless, abi, status).map_err(|e| landlock_failure(&e))?,
    );
    send(sock, &ChildMsg::Layers(layers));
    // The program's stack until its exec (256 KiB: the pre-exec steps and nix's argv copy
    // use a few KiB).
    let mut stack = sys::ChildStack::new(256 * 1024).map_err(at(LaunchStep::Fork))?;
    // We (the init) are single-threaded: vfork_exec's precondition. It returns once the
    // program executed (or failed to, which the exec pipe reports). Held (the warm pool), the
    // program's process waits for the runtime's `R` before its seccomp and exec, so the go
    // costs neither the fork nor the steps before the filter.
    // What the program's process needs of the heap is made here: it allocates nothing.
    let args = (sys::ExecArgs::new(ctx.argv), sys::ExecArgs::new(ctx.envp));
    let pid = sys::vfork_exec(&mut stack, &mut || exec_program(ctx, sock, &args))
        .map_err(at(LaunchStep::Fork))?;
    send(sock, &ChildMsg::Forked { ns_pid: pid });
    Ok(pid)
}

fn set_rlimits(
    p: &ValidatedSandboxPolicy,
    data_limit: Option<u64>,
) -> std::io::Result<LayerReport> {
    // Each within the ceilings checked when the policy was loaded (rlimits::Ceilings).
    let mut details = serde_json::Map::new();
    for rl in rlimits::list(&p.resources) {
        // `core = 0` is set as 1 byte (rlimits::NO_CORE: a pipe core_pattern ignores 0).
        let value = rlimits::applied(&rl, sys::hard_rlimit(rl.resource)?);
        sys::setrlimit(rl.resource, value)?;
        details.insert(rl.report_name.into(), json!(rl.limit));
    }
    // Every other limit: the runtime's value, whoever started the runtime (rlimits::fixed says
    // which and why), never above the hard limit the runtime hands down, which a sandbox cannot
    // raise — a caller's lower one is kept, never a reason to refuse the launch.
    for f in rlimits::fixed(data_limit) {
        let value = rlimits::bounded(f.value, sys::hard_rlimit(f.resource)?);
        sys::setrlimit(f.resource, value)?;
        let shown = match data_limit {
            Some(_) if f.resource == libc::RLIMIT_DATA => {
                json!({"bytes": value, "why": "no memory cgroup: fallback for memory_max"})
            }
            _ => json!(rlimits::as_limit(value)),
        };
        details.insert(f.report_name.into(), shown);
    }
    Ok(LayerReport::full("rlimits", details.into()))
}

fn drop_capabilities() -> Result<(), Box<dyn std::error::Error>> {
    // Securebits first (needs CAP_SETPCAP): uid 0 never regains capabilities, set*uid never
    // adjusts them, ambient capabilities cannot be raised; each bit locked.
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    sys::set_securebits(bits)?;
    sys::drop_bounding_set()?;
    caps::clear(None, caps::CapSet::Ambient)?;
    caps::clear(None, caps::CapSet::Inheritable)?;
    caps::clear(None, caps::CapSet::Effective)?;
    caps::clear(None, caps::CapSet::Permitted)?;
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
        caps::CapSet::Ambient,
    ] {
        if !caps::read(None, set)?.is_empty() {
            return Err(format!("capability set {set:?} is not empty after clearing").into());
        }
    }
    Ok(())
}

/// Tell the runtime why the program could not start, then exit.
fn report_exec_failure(w: &OwnedFd, kind: u8, e: &std::io::Error) -> ! {
    let errno = e.raw_os_error().unwrap_or(0);
    let mut msg = [0u8; 5];
    msg[0] = kind;
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    if let Ok(fd) = w.try_clone() {
        let _ = std::fs::File::from(fd).write_all(&msg);
    }
    sys::exit_now(if kind == EXEC_FAILED { 127 } else { 125 })
}

/// The program's side (it runs in our memory until exec, see `sys::vfork_exec`): last steps,
/// the runtime's go when held, seccomp, exec. Never returns, and allocates nothing — our heap is
/// its heap, and it may be stopped for good anywhere (killed; its own seccomp filter refusing a
/// call): every error is an `io::Error` without a message (only its `errno` is reported), the
/// exec's arrays are `args`, made before the clone.
fn exec_program(
    ctx: &ChildCtx<'_>,
    sock: &UnixDatagram,
    (argv, envp): &(sys::ExecArgs<'_>, sys::ExecArgs<'_>),
) -> ! {
    let pre = |r: std::io::Result<()>| {
        if let Err(e) = r {
            report_exec_failure(ctx.exec_w, PRE_EXEC_FAILED, &e)
        }
    };
    // First, so the runtime learns this process's host pid from the kernel whatever happens
    // next (a failure before exec is reported, and the pid unused). Lost, the runtime falls
    // back to looking in /proc.
    if ctx.announce_program {
        let _ = sock.send(PROGRAM_MSG);
    }
    pre(sys::setsid());
    pre(sys::set_parent_death_signal(libc::SIGKILL));
    // Dispositions are already the defaults (init reset them); the mask is the runtime's.
    pre(sys::unblock_all_signals());
    // Everything but stdio (and the script's descriptor) closes at exec; the exec pipe too, which
    // is how the runtime learns that exec succeeded.
    pre(sys::cloexec_from(3));
    if ctx.is_script {
        pre(sys::set_cloexec(ctx.exec_fd.as_fd(), false));
    }
    let seccomp = || {
        if super::seccomp::install(ctx.filters).is_err() {
            let e = std::io::Error::from(std::io::ErrorKind::Other);
            report_exec_failure(ctx.exec_w, PRE_EXEC_FAILED, &e)
        }
    };
    // Held, the filter goes on before the wait when it admits the `read` the wait is.
    let filter_first = ctx.hold && ctx.filters.admits_read;
    if filter_first {
        seccomp();
    }
    if ctx.hold {
        // Anything but `R` (EOF: the runtime discarded the held sandbox) ends here, reported
        // as a failure before exec so that the exec pipe's EOF never reads as a success.
        let mut go = [0u8; 1];
        match sys::read_fd(sock.as_fd(), &mut go) {
            Ok(1) if go[0] == b'R' => {}
            // The held sandbox was discarded.
            Ok(_) => report_exec_failure(
                ctx.exec_w,
                PRE_EXEC_FAILED,
                &std::io::Error::from(std::io::ErrorKind::Other),
            ),
            Err(e) => report_exec_failure(ctx.exec_w, PRE_EXEC_FAILED, &e),
        }
    }
    if !filter_first {
        seccomp();
    }
    let e = sys::execveat_fd(ctx.exec_fd.as_fd(), argv, envp);
    report_exec_failure(ctx.exec_w, EXEC_FAILED, &e)
}

/// The init loop: reap everything, and when the program ends, hand its status to the runtime and
/// exit (which kills the rest of the pid namespace).
fn run_init(ctx: &ChildCtx<'_>, program: i32) -> ! {
    // Keep only the status pipe: the program's stdio and the exec pipe must reach EOF when the
    // program's side closes them, not stay open in init.
    if sys::close_all_except(ctx.status_w.as_raw_fd()).is_err() {
        sys::exit_now(125)
    }
    let Ok(mut status_pipe) = ctx.status_w.try_clone().map(std::fs::File::from) else {
        sys::exit_now(125)
    };
    // From here on init only waits, writes and exits; its own small seccomp filter says so.
    if super::seccomp::install_init(ctx.filters).is_err() {
        sys::exit_now(125)
    }
    loop {
        match sys::wait4(-1, 0) {
            Ok((pid, status, cpu_us)) if pid == program => {
                // The status, then the program's CPU time (µs): one write, 12 bytes, which the
                // runtime reads in `Sandboxed::wait`.
                let mut msg = [0u8; 12];
                msg[..4].copy_from_slice(&status.to_ne_bytes());
                msg[4..].copy_from_slice(&cpu_us.to_ne_bytes());
                let _ = status_pipe.write_all(&msg);
                let code = super::report::ExitInfo::from_wait_status(status).status;
                sys::exit_now(code & 0xff)
            }
            Ok(_) => continue,
            Err(_) => sys::exit_now(125),
        }
    }
}

/// Read the exec pipe to its end: `Ok(None)` means exec succeeded.
pub fn read_exec_result(fd: OwnedFd) -> std::io::Result<Option<(u8, i32)>> {
    let mut buf = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut buf)?;
    if buf.len() < 5 {
        return Ok(None);
    }
    let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    Ok(Some((buf[0], errno)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constant the program's process sends is the message the runtime decodes.
    #[test]
    fn program_msg_is_the_serialized_variant() {
        assert_eq!(serde_json::to_vec(&ChildMsg::Program).unwrap(), PROGRAM_MSG);
    }
}
