//! `stockade exec [--policy FILE] [--env KEY=VALUE]… [--pid-file PATH] [--report FILE]
//! [--plugin-dir DIR] [--json] -- CMD [ARGS…]`: run any program under a sandbox policy.
//!
//! The program's stdin/stdout/stderr are pipes owned by the runtime, which relays its own stdio
//! to and from them (a poll loop; SIGINT/SIGTERM/SIGHUP received by the runtime are forwarded to
//! the program). The exit status is the program's, or 128+N when signal N killed it; runtime
//! failures use 125 (setup / a layer could not be enforced), 126 (cannot execute), 127 (not
//! found), 65 (invalid policy), 66 (policy unreadable), 64 (bad `--env`).
//!
//! The policy is `--policy FILE` (one whole policy, the operator layers are then not read) or
//! else the operator layers under `--policy-root` (`/etc/stockade/policy.toml` + drop-ins;
//! none: the built-in defaults), resolved without a plugin: `policy explain` without
//! `--plugin` reports exactly this.
//!
//! ## The report
//! With `--json`, the launch report (schema `stockade.sandbox.report/1`, see
//! [`crate::sandbox::report`]) is printed on **stderr** as one JSON document after the program
//! has ended and the sandbox is torn down, so it never mixes with the program's stdout; with
//! `--report FILE` it is also written to FILE (atomically). `--pid-file` and `--report` are
//! reserved before anything launches (a temporary file in their directory, renamed into place
//! when written), so an output that cannot be written refuses with 73 and runs nothing. Without
//! `--json` nothing is added to the program's output but one `stockade: warning: layer …` line
//! on stderr per degradation the policy allowed (the report lists them with `--json`). Audit
//! records never share stderr with the report: with `--json` the policy's `audit.stderr` sink
//! uses the journal socket or nothing (and when it is the only sink and there is no journal,
//! exec refuses to launch, exit 74: no unaudited launch).

use crate::audit::{self, AuditLog, Event, Record};
use crate::cli::ExecArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio;
use crate::output::Output;
use crate::policyfiles::{self, PolicyFilesError};
use crate::sandbox::{self, Interpreter, LaunchError, LaunchSpec, Program};
use crate::sys;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use stockade_policy::operator::effective::{effective, PluginFacts};
use stockade_policy::operator::explain::explain;
use stockade_policy::sandbox::Degradation;

/// Why `exec` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// An `--env` argument is neither KEY=VALUE nor the name of a variable set here. Only its
    /// KEY is kept: the value may be a secret.
    #[error(
        "`--env {0}…` is neither KEY=VALUE with a non-empty KEY without `=` or NUL nor the name \
         of a variable set in this environment"
    )]
    BadEnv(String),
    /// The launch failed.
    #[error("cannot launch the sandbox")]
    Launch(#[source] LaunchError),
    /// The pid or report file cannot be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A failed launch as the CLI's error and the `detail` of its audit record: `kind`, `error`
/// (the error's chain, as the CLI prints it) and, for a refusal the policy could have allowed,
/// `refused` (the degradation). Before review-158 `exec` and `run` recorded only `kind`: the
/// log said `layer_unavailable` without which layer or why.
pub(crate) fn launch_failure(
    e: LaunchError,
) -> (CmdError, serde_json::Map<String, serde_json::Value>) {
    let refused = e.refused_degradation();
    let err = launch_error(e);
    let mut detail = serde_json::Map::new();
    detail.insert("kind".into(), err.kind().into());
    detail.insert("error".into(), err.chain().join(": ").into());
    if let Some(d) = refused {
        detail.insert("refused".into(), d.as_str().into());
    }
    (err, detail)
}

pub(crate) fn launch_error(e: LaunchError) -> CmdError {
    launch_error_with(e, &|| {
        under_seccomp_filter() && sys::clone_refused_by_filter(sandbox::CLONE_FLAGS)
    })
}

/// The hint of a namespace refusal under a seccomp filter around the runtime.
const SECCOMP_NAMESPACES_HINT: &str = "a seccomp filter around stockade refuses the sandbox's \
     namespaces (its /proc/self/status says Seccomp: 2): inside a container, the engine's \
     default profile refuses clone, unshare and mount with namespace flags without \
     CAP_SYS_ADMIN — give the container a profile that allows them (Docker, Podman: \
     --security-opt seccomp=FILE; Kubernetes: securityContext.seccompProfile) or run it \
     privileged; under a systemd unit, its RestrictNamespaces= (`yes` refuses them all) must \
     allow user pid mnt net ipc uts cgroup, as the shipped stockade.service's does; no policy \
     lets the namespaces go";

/// [`launch_error`], whether a seccomp filter around the runtime refuses the namespaces asked
/// of `seccomp` (read only for the errors it changes; tests give their answer): one is there
/// (`Seccomp: 2`) and it answers the clone's flags itself (review-168, `clone_refused_by_filter`).
fn launch_error_with(e: LaunchError, seccomp: &dyn Fn() -> bool) -> CmdError {
    // A host switch that restricts user namespaces for this caller refused them (RHEL's
    // user.max_user_namespaces = 0, Debian's kernel.unprivileged_userns_clone = 0, Ubuntu's
    // AppArmor rule): the hint names that switch and its way out (docs/sandbox.md "Hosts that
    // restrict user namespaces"), not a list of every cause there may be. It wins over the
    // seccomp filter below: `Seccomp: 2` is also any systemd unit's SystemCallFilter=, Flatpak,
    // a browser's sandbox — filters that may well allow the namespaces —, while a switch set
    // for this caller refuses them whatever a filter says. Where a filter is there too, the
    // hint says it may refuse them as well (review-170: the filter's hint won, and the switch's
    // way out was not said).
    if let LaunchError::Namespaces {
        switch: Some(s),
        cause,
        ..
    } = &e
    {
        let mut hint = s.way_out().to_owned();
        if cause.raw_os_error() == Some(libc::EPERM) && seccomp() {
            hint.push_str("; besides, ");
            hint.push_str(SECCOMP_NAMESPACES_HINT);
        }
        return CmdError::new(
            Exit::SandboxSetup,
            "layer_unavailable",
            ExecError::Launch(e),
        )
        .hint(hint);
    }
    // A seccomp filter around the runtime refused the namespaces: inside a container, its
    // engine's default profile (no CAP_SYS_ADMIN). The way out is the container's profile, not
    // a sysctl nor root, which the runtime already is there (audit-167; the other namespace
    // refusals keep their hint below). Only where the filter itself answers the clone's flags:
    // `Seccomp: 2` alone is every stockade.service's (its SystemCallFilter=), whose filter lets
    // the namespaces pass, and there the EPERM is the kernel's — a sysctl, Ubuntu's AppArmor
    // rule — whose hint is below (review-168).
    if matches!(&e, LaunchError::Namespaces { cause, .. }
        if cause.raw_os_error() == Some(libc::EPERM) && seccomp())
    {
        return CmdError::new(
            Exit::SandboxSetup,
            "layer_unavailable",
            ExecError::Launch(e),
        )
        .hint(SECCOMP_NAMESPACES_HINT);
    }
    // Advice that depends on who runs and on the host: what this caller can do about it.
    // A controller the kernel does not offer is the host's, whoever runs: its arm below.
    if matches!(&e, LaunchError::Cgroup(c) if !c.controller_not_offered()) {
        let hint = cgroup_hint(
            nix::unistd::geteuid().is_root(),
            crate::sandbox::cgroup::host_mode(),
        );
        return CmdError::new(
            Exit::SandboxSetup,
            "layer_unavailable",
            ExecError::Launch(e),
        )
        .hint(hint);
    }
    let (exit, kind, hint) = match &e {
        LaunchError::NotFound { .. } => (
            Exit::NotFound,
            "not_found",
            "give a path, or a name found in $PATH on the host",
        ),
        LaunchError::InterpreterNotFound { interpreter, .. } => (
            Exit::NotFound,
            "interpreter_not_found",
            match interpreter {
                Interpreter::Script { crlf: true, .. } => {
                    "convert the file to LF line endings (dos2unix, or your editor's line-ending \
                     setting) and pack it again"
                }
                Interpreter::Script { .. } => {
                    "the sandbox shows /usr (and /bin, /lib through it), the package at /plugin \
                     and an empty /tmp, not the host's other directories (/opt, /home, a \
                     virtualenv outside /usr): name an interpreter under /usr \
                     (`#!/usr/bin/python3`, `#!/bin/sh`), ship the program compiled, or have \
                     the operator add the interpreter's directory to the policy's [filesystem] \
                     read_only (docs/sandbox.md)"
                }
                Interpreter::Loader(_) => {
                    "the program was linked for another system's loader (musl, another \
                     distribution, a Nix store): link it statically, build it against the \
                     host's libraries under /usr, or have the operator add the loader's \
                     directory to the policy's [filesystem] read_only (docs/sandbox.md)"
                }
            },
        ),
        // Same kind and code as any program that cannot be executed (what scripts match on),
        // the message naming the mount; the advice is about where files go, not modes.
        LaunchError::NoExec { .. } => (
            Exit::CannotExec,
            "cannot_execute",
            "a file system mounted noexec runs no program, whatever its modes: for a package \
             (`run`, `serve`), give the state directory (--state-dir, whose trees hold it) and \
             TMPDIR (where it is extracted otherwise) a file system mounted without noexec; for \
             `exec`, run the program from such a file system",
        ),
        LaunchError::CannotExecute { .. } => (
            Exit::CannotExec,
            "cannot_execute",
            "the program must be an executable regular file (and its interpreter must exist inside the sandbox)",
        ),
        LaunchError::HttpTransport(_) => (
            Exit::HttpTransport,
            "http_transport",
            "an HTTP plugin needs `[network] mode = \"loopback\"` in its policy (its own network \
             namespace with only `lo`) and its interpreter inside the sandbox",
        ),
        LaunchError::NotAllowed { .. } => (
            Exit::SandboxSetup,
            "layer_unavailable",
            "run as root (or through stockade.service), or allow the degradation in the policy's \
             [layers] section (a policy of your own: --policy FILE)",
        ),
        // Found by the sandbox's init: the kernel's Landlock is missing or older than the policy
        // demands. Being root changes nothing here.
        // The hint names the knob of the degradation refused: `min_landlock_abi` governs only
        // `landlock` itself, not the TCP restriction or scoping (review-158).
        // Under a seccomp filter (a container's profile older than Landlock) the Landlock
        // calls may be refused by the filter, not lacking in the kernel (audit-167) — only
        // where this process is refused the ABI query too (EPERM: a filter's; ENOSYS: a
        // filter's or a kernel without Landlock). A kernel that answers its ABI is what the
        // refusal measured, filter or not: stockade.service's own filter allows the calls
        // (review-168).
        LaunchError::Refused {
            degradation: Degradation::Landlock,
            ..
        } if landlock_hidden_by_filter() => (
            Exit::SandboxSetup,
            "layer_unavailable",
            "this kernel's Landlock is below the policy's minimum, or hidden by the seccomp filter \
             around stockade (its /proc/self/status says Seccomp: 2): inside a container, a \
             profile older than Landlock refuses its calls — the cause's ABI 0 then says nothing \
             of the kernel; give the container a profile that allows landlock_create_ruleset, \
             landlock_add_rule and landlock_restrict_self, use a kernel that offers Landlock, \
             lower [layers] min_landlock_abi, or allow the `landlock` degradation in the \
             policy's [layers] section (a policy of your own: --policy FILE)",
        ),
        LaunchError::Refused { degradation, .. } => (
            Exit::SandboxSetup,
            "layer_unavailable",
            refused_hint(*degradation),
        ),
        // The host's configuration refuses the namespaces every sandbox is built in: no policy
        // can allow that, being root only helps against a rule for unprivileged callers.
        LaunchError::Namespaces { .. } => (
            Exit::SandboxSetup,
            "layer_unavailable",
            "the sandbox's namespaces are its base and no policy lets them go: raise the limit \
             the cause names (sysctl user.max_user_namespaces, or the other user.max_*_namespaces \
             it names), or allow user namespaces for this caller \
             (kernel.unprivileged_userns_clone=1, the LSM's rule), or run as root (or through \
             stockade.service)",
        ),
        // The kernel (or the parent group) does not offer a controller the limits need: being
        // root or delegated changes nothing. (Every other cgroup refusal returned above.)
        LaunchError::Cgroup(c) if c.controller_not_offered() => (
            Exit::SandboxSetup,
            "layer_unavailable",
            "the cause names the controller this host does not offer: boot without \
             `cgroup_disable=` for it, or have the parent group enable it; or allow the `cgroup` \
             degradation in the policy's [layers] section (rlimits still apply; a policy of your \
             own: --policy FILE)",
        ),
        // Only root gets here (rootless, `cgroup` implies `cgroup_partial`).
        LaunchError::CgroupPartial(_) => (
            Exit::SandboxSetup,
            "layer_unavailable",
            "delegate the missing controller to the runtime's cgroup (systemd: Delegate=cpu; one \
             the cause says is not offered: boot without `cgroup_disable=` for it), set that \
             limit to \"unlimited\", or allow `cgroup_partial` in the policy's [layers]",
        ),
        // A namespace limit reached by the namespaces alive now, no process or memory to be
        // had: the moment's, not the host's configuration (review-158).
        LaunchError::CloneExhausted { .. } => (
            Exit::SandboxSetup,
            "clone_exhausted",
            "the host is out of namespaces, processes or memory right now (the cause says \
             which): retry once some sandboxes or processes have ended, or raise the limit the \
             cause names",
        ),
        LaunchError::CgroupExhausted(_) => (
            Exit::SandboxSetup,
            "cgroup_exhausted",
            "the host or the runtime is out of descriptors, memory or cgroups right now (the \
             cause says which): retry later; never taken for a host without cgroups",
        ),
        // Every uid of the range is held by a live sandbox: as many plugins run at once as the
        // range allows. A moment's condition, which ends with any of them: not the host's
        // configuration that the generic `sandbox_setup` advice points to.
        LaunchError::Uid(crate::sandbox::uid::UidError::Exhausted { .. }) => (
            Exit::SandboxSetup,
            "uid_exhausted",
            "as many plugins are running as the policy's [identity] uid_count allows, each \
             holding one uid: retry once one has ended, or widen uid_count",
        ),
        // Root of a user namespace that does not map the plugins' uid range (a rootless
        // container): the policy's range, or the container's maps, must change (audit-167).
        LaunchError::Uid(crate::sandbox::uid::UidError::Unmapped { .. }) => (
            Exit::SandboxSetup,
            "uid_unmapped",
            "inside a container with a user namespace of its own: move the policy's [identity] \
             uid_first and uid_count into the ids the cause says it maps (e.g. uid_first = \
             10000, uid_count = 50000 in rootless Podman's 65536), have the engine map the \
             plugins' range (podman --uidmap, /etc/subuid), or run stockade as a non-root user \
             there (rootless mode, docs/sandbox.md)",
        ),
        LaunchError::WritableNotDir { .. } => (
            Exit::SandboxSetup,
            "writable_path",
            "a `writable` path of the policy must be an existing directory on the host: create \
             it (owned so the plugin's uid may write, see docs/sandbox.md), or remove it from \
             [filesystem] writable",
        ),
        LaunchError::CgroupClash(_) => (
            Exit::SandboxSetup,
            "cgroup_clash",
            "a group of that name already exists below the runtime's cgroup (never adopted): \
             remove the leftover, or find what else creates stockade-* groups there",
        ),
        _ => (
            Exit::SandboxSetup,
            "sandbox_setup",
            "the named step could not be applied on this host; see the cause",
        ),
    };
    CmdError::new(exit, kind, ExecError::Launch(e)).hint(hint)
}

/// Whether a seccomp filter is around this process (`/proc/self/status`'s `Seccomp:` 2): a
/// container engine's profile, a unit's `SystemCallFilter=`, an enclosing sandbox. The runtime
/// installs none on itself, only on the sandbox's processes.
fn under_seccomp_filter() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| seccomp_filtered(&s))
}

/// Whether a seccomp filter around this process may be what hides Landlock from the sandbox's
/// init (which inherits it): one is there, and this process too is refused the ABI query —
/// `EPERM` (a filter's: the kernel never answers it so) or `ENOSYS` (a filter's, or a kernel
/// built without Landlock). A kernel that answers its ABI is what the refusal measured.
fn landlock_hidden_by_filter() -> bool {
    under_seccomp_filter()
        && sys::landlock_abi()
            .is_err_and(|e| matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)))
}

/// [`under_seccomp_filter`] of the text of `/proc/self/status` (pure).
fn seccomp_filtered(status: &str) -> bool {
    status
        .lines()
        .any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"))
}

/// The hint of a refusal by the sandbox's init ([`LaunchError::Refused`]): what the kernel
/// lacks for `degradation` and the policy knob that lets it go. Only `landlock` is governed by
/// `min_landlock_abi`; the TCP restriction (ABI 4) and scoping (ABI 6) are degradations of their
/// own, which no minimum ABI lowers (review-158).
fn refused_hint(degradation: Degradation) -> &'static str {
    match degradation {
        Degradation::Landlock => {
            "this kernel's Landlock is below the policy's minimum (the cause names the ABI found; \
             a kernel booted with an `lsm=` list without `landlock` has none): use a kernel that \
             offers it, lower [layers] min_landlock_abi, or allow the `landlock` degradation in \
             the policy's [layers] section (a policy of your own: --policy FILE)"
        }
        Degradation::LandlockNetwork => {
            "this kernel's Landlock cannot restrict TCP bind/connect (ABI 4, Linux 6.7; the cause \
             names the ABI found), which the policy's [network] mode = \"none\" demands of it: \
             use a kernel that offers it, or allow the `landlock_network` degradation in the \
             policy's [layers] allow_degraded (the empty network namespace still applies; a \
             policy of your own: --policy FILE)"
        }
        Degradation::LandlockScope => {
            "this kernel's Landlock cannot scope abstract unix sockets and signals (ABI 6, Linux \
             6.12; the cause names the ABI found): use a kernel that offers it, or allow the \
             `landlock_scope` degradation in the policy's [layers] allow_degraded (the network \
             and pid namespaces still isolate them; a policy of your own: --policy FILE)"
        }
        // Not refused by the init today (the runtime refuses them before the clone): named
        // all the same, should one be.
        Degradation::DistinctUid | Degradation::Cgroup | Degradation::CgroupPartial => {
            "allow the degradation the cause names in the policy's [layers] allow_degraded (a \
             policy of your own: --policy FILE)"
        }
    }
}

/// The hint of a `cgroup` refusal ([`LaunchError::Cgroup`]: no group could be made below the
/// runtime's cgroup), for a caller that is root or not on a host whose cgroups are `mode`.
/// Before helper-152 one text served all: it told a root caller to "run as root", and offered
/// every rootless caller systemd's delegation, which gives a user a cgroup v2 subtree only —
/// on a v1 or hybrid host (memory, pids, cpu on v1 hierarchies) `Delegate=yes` hands it no
/// controller this layer uses.
fn cgroup_hint(root: bool, mode: crate::sandbox::cgroup::HostMode) -> String {
    use crate::sandbox::cgroup::HostMode;
    const ALLOW: &str = "or allow the `cgroup` degradation in the policy's [layers] section (a \
                         policy of your own: --policy FILE)";
    let how = match (root, mode) {
        (_, HostMode::None) => "this host mounts no cgroup filesystem this layer can use: \
             neither cgroup2 at /sys/fs/cgroup nor a v1 hierarchy of memory, pids or cpu (a \
             container without one, say, or a hybrid host's `unified` alone): mount cgroup2 \
             there (or the v1 memory, pids and cpu controllers), run stockade on the host or in \
             a container given a cgroup of its own"
            .to_string(),
        (true, HostMode::V2) => "root could not make the group below its own cgroup (the cause \
             names the directory): run stockade in a cgroup it may manage (stockade.service, or \
             a container given a writable cgroup namespace), or see the cause"
            .to_string(),
        (true, HostMode::V1) => "root could not make the group in the cgroup v1 hierarchies \
             (memory, pids, cpu; the cause names which): check that each is mounted and \
             writable here (not a read-only container mount), or see the cause"
            .to_string(),
        (false, HostMode::V2) => "run as root (or through stockade.service), or run stockade \
             in a cgroup delegated to this user (systemd: `systemd-run --user --scope -p \
             Delegate=yes stockade …`)"
            .to_string(),
        (false, HostMode::V1) => "run as root (or through stockade.service): this host keeps \
             memory, pids and cpu on cgroup v1 hierarchies (legacy or hybrid), which systemd \
             does not delegate to a user (`Delegate=yes` gives a cgroup v2 subtree only)"
            .to_string(),
    };
    format!("{how}; {ALLOW}")
}

fn parse_env(items: &[String]) -> Result<Vec<(String, String)>, CmdError> {
    let mut env: Vec<(String, String)> = sandbox::BASE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for item in items {
        let key = item.split_once('=').map_or(item.as_str(), |(k, _)| k);
        let bad = || CmdError::new(Exit::Usage, "bad_env", ExecError::BadEnv(key.to_string()));
        // `--env KEY`: the value of KEY in this process's environment, so a secret need not be
        // on the command line, where `/proc/<pid>/cmdline` shows it to every local user.
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item.clone(), std::env::var(item).map_err(|_| bad())?),
        };
        if k.is_empty() || k.contains('\0') || v.contains('\0') {
            return Err(bad());
        }
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    Ok(env)
}

/// An output file (`--pid-file`, `--report`), reserved before anything launches
/// ([`fileio::reserve`]): a temporary file is created in its directory at once and renamed
/// over the path when the contents are known. So an output that cannot be written (a missing
/// or read-only directory, a path that is a directory) refuses the command with 73 before the
/// program runs — not after it ran (the report) or never (the pid file) — and the path itself
/// appears only complete.
struct Reserved {
    path: PathBuf,
    file: fileio::Reserved,
}

impl Reserved {
    fn new(path: &Path) -> Result<Self, CmdError> {
        let err = |source| {
            write_error(path, source)
                .hint("the output's directory must exist and be writable; nothing was run")
        };
        if path.is_dir() {
            return Err(err(io::Error::from(io::ErrorKind::IsADirectory)));
        }
        // What an earlier exec SIGKILLed before its commit left there (the report's temporary
        // file is reserved for as long as the program runs) goes now: only this uid's stale,
        // unlocked `.stockade-tmp-…` files, never one in use (fileio::sweep_reserved).
        fileio::sweep_reserved(&fileio::parent_dir(path));
        // 0666 less the umask, as a plain create would give.
        let file = fileio::reserve(path, 0o666).map_err(|e| err(os_error(e)))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Write, fsync and rename into place (a failure removes the temporary file).
    fn commit(self, contents: &[u8]) -> Result<(), CmdError> {
        let path = self.path;
        self.file
            .commit(contents, None, None, true)
            .map_err(|e| write_error(&path, os_error(e)))
    }
}

/// The OS error behind a file operation's failure (the path is in `ExecError::Write`).
fn os_error(e: fileio::FileError) -> io::Error {
    match e {
        fileio::FileError::Write { source, .. } | fileio::FileError::Read { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

fn write_error(path: &Path, source: io::Error) -> CmdError {
    CmdError::new(
        Exit::CantCreate,
        "cannot_write",
        ExecError::Write {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// Run the command. On success this does not return: it exits with the program's status after
/// the sandbox has been torn down (the status is not one of [`Exit`]'s fixed codes).
pub fn run(args: ExecArgs, out: Output) -> Result<Exit, CmdError> {
    // `--policy FILE` is one whole policy; without it the operator layers under the policy root
    // (none: the built-in defaults). Grants do not apply: exec runs the operator's own program.
    // The `--env` flags first: a usage error (64) is said before any file is read.
    let env = parse_env(&args.env)?;
    let merged = policyfiles::load(&policyfiles::source(
        args.policy.as_deref(),
        &args.root.policy_root,
    ))
    .map_err(PolicyFilesError::into_cmd)?;
    let resolved = merged
        .resolve(None, None)
        .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
    let policy = resolved.sandbox.clone();
    let mut log = AuditLog::from_policy(&resolved.audit);
    if out.json {
        // stderr carries the launch report: audit records must not land in it.
        log = log.without_stderr().map_err(|e| {
            CmdError::new(Exit::IoErr, "audit", e)
                .hint("configure audit.file or audit.journal in the policy, or drop --json (or use --report FILE)")
        })?;
    }
    let eff = effective(&resolved, &PluginFacts::default(), None);
    let policy_sha256 = audit::policy_hash(&explain(&resolved, &eff));
    if let Some(dir) = &args.plugin_dir {
        if !dir.is_dir() {
            return Err(CmdError::msg(
                Exit::NoInput,
                "plugin_dir_missing",
                format!("`--plugin-dir {}` is not a directory", dir.display()),
            ));
        }
    }
    // Outputs first: one that cannot be written refuses before anything runs.
    let pid_file = args.pid_file.as_deref().map(Reserved::new).transpose()?;
    let report_file = args.report.as_deref().map(Reserved::new).transpose()?;
    let name = args.command.first().cloned().unwrap_or_default();
    // var_os: a $PATH that is not UTF-8 is searched as it is, not replaced by the default.
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let program = Program::open(&name, &search).map_err(launch_error)?;

    // Signals for the runtime arrive on a signalfd (blocked first, so none is lost); the program
    // unblocks everything before exec.
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let sigfd = sys::block_signals(&sigs)
        .and_then(|_| sys::signalfd(&sigs))
        .map_err(|e| {
            launch_error(LaunchError::Setup {
                step: sandbox::LaunchStep::Channels,
                cause: e,
            })
        })?;

    let spec = LaunchSpec {
        policy: &policy,
        program,
        argv: args.command.clone(),
        env,
        package_dir: args.plugin_dir.clone(),
        package_dir_id: None,
        // A pid file asked for must be written, also for a program that ends at once.
        pid_required: args.pid_file.is_some(),
        uid_lock_dir: PathBuf::from(sandbox::uid::LOCK_DIR),
    };
    let mut sb = match sandbox::launch(spec) {
        Ok(sb) => sb,
        Err(e) => {
            let (err, mut detail) = launch_failure(e);
            let mut rec = Record::new(Event::Launch, "failed");
            rec.policy_sha256 = Some(policy_sha256);
            detail.insert("command".into(), serde_json::json!(args.command));
            rec.detail = detail.into();
            audit::append_or_fail(&log, rec)?;
            return Err(err);
        }
    };
    // Every degradation the policy allowed, said where a person reads it (with --json stderr
    // carries only the report document, which lists them).
    if !out.json {
        for d in sb.report().degradations() {
            crate::output::print_stderr(&format!("stockade: warning: {d}"));
        }
    }
    let mut rec = Record::new(Event::Launch, "ok");
    rec.policy_sha256 = Some(policy_sha256.clone());
    rec.layers = audit::enforced_layers(sb.report());
    let mut detail = audit::launch_build(sb.report());
    detail.insert("command".into(), serde_json::json!(args.command));
    detail.insert("pid".into(), serde_json::json!(sb.pid()));
    rec.detail = detail.into();
    if let Err(e) = audit::append_or_fail(&log, rec) {
        sb.kill();
        return Err(e);
    }
    // A pid file asked for is written: the kernel named the program's process at its launch,
    // even one that has already ended (the file is then removed again below).
    if let Some(reserved) = pid_file {
        let written = match sb.pid() {
            Some(pid) => reserved.commit(format!("{pid}\n").as_bytes()),
            None => Err(CmdError::msg(
                Exit::SandboxSetup,
                "pid_unknown",
                "the sandboxed program's host pid is not known, so --pid-file cannot be written",
            )),
        };
        if let Err(e) = written {
            sb.kill();
            return Err(e);
        }
    }

    relay(&mut sb, sigfd.as_fd());
    wait_forwarding(&mut sb, sigfd.as_fd());
    let report = sb.wait();
    if let Some(path) = &args.pid_file {
        let _ = fs::remove_file(path);
    }
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(reserved) = report_file {
        reserved.commit(json.as_bytes())?;
    }
    if out.json {
        crate::output::print_stderr(&json);
    } else if let Some(m) = report
        .exit
        .and_then(|e| sandbox::report::ending(&e, &report.limits_hit))
    {
        // The status alone (159, 137) does not tell the sandbox's verdict from a crash.
        crate::output::print_stderr(&format!("stockade: the program ended: {m}"));
    }
    let status = report
        .exit
        .map_or(Exit::SandboxSetup.code().into(), |e| e.status);
    let mut rec = Record::new(Event::Termination, status.to_string());
    rec.policy_sha256 = Some(policy_sha256);
    rec.layers = audit::enforced_layers(&report);
    rec.detail = serde_json::json!({"command": args.command, "exit": report.exit, "limits_hit": report.limits_hit});
    // The program has ended; a failed record is reported but does not replace its status.
    if let Err(e) = audit::append_or_fail(&log, rec) {
        crate::output::print_stderr(&e.render_text());
    }
    let _ = io::stdout().flush();
    std::process::exit(status)
}

/// The program closed its stdout and stderr, but may go on running: wait for the sandbox to
/// end while still forwarding the signals it is owed (SIGINT/SIGTERM/SIGHUP stay blocked for
/// the signalfd, so a blocking wait would leave them unanswered for as long as it runs).
fn wait_forwarding(sb: &mut sandbox::Sandboxed, sigfd: BorrowedFd<'_>) {
    let mut pause_ms = 1;
    while !sb.has_exited() {
        if sys::poll(&[(sigfd, libc::POLLIN)], pause_ms).is_ok_and(|r| r[0] != 0) {
            while let Ok(Some(sig)) = sys::read_signalfd(sigfd) {
                let _ = sb.signal(sig);
            }
        }
        pause_ms = (pause_ms * 2).min(50);
    }
}

/// Relay stdio until the program's stdout and stderr are both closed (which happens at the
/// latest when its init exits, since that kills everything in the sandbox). Our stdin is read
/// only when the previous chunk has been fully written to the program (the pipe to it is
/// non-blocking), so a program that does not read its stdin can never stall the relay of its
/// output.
fn relay(sb: &mut sandbox::Sandboxed, sigfd: BorrowedFd<'_>) {
    let mut child_in: Option<fs::File> = sb.stdin.take().map(fs::File::from);
    if let Some(f) = &child_in {
        if sys::set_nonblocking(f.as_fd()).is_err() {
            child_in = None;
        }
    }
    let mut child_out: Option<fs::File> = sb.stdout.take().map(fs::File::from);
    let mut child_err: Option<fs::File> = sb.stderr.take().map(fs::File::from);
    let stdin = io::stdin();
    let mut stdin_open = child_in.is_some();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while child_out.is_some() || child_err.is_some() {
        let mut fds: Vec<(BorrowedFd<'_>, i16)> = vec![(sigfd, libc::POLLIN)];

        let i_out = push(
            child_out.as_ref().map(|f| f.as_fd()),
            libc::POLLIN,
            &mut fds,
        );
        let i_err = push(
            child_err.as_ref().map(|f| f.as_fd()),
            libc::POLLIN,
            &mut fds,
        );
        let i_in = push(
            (stdin_open && pending.is_empty()).then(|| stdin.as_fd()),
            libc::POLLIN,
            &mut fds,
        );
        let i_to = push(
            child_in
                .as_ref()
                .filter(|_| !pending.is_empty())
                .map(|f| f.as_fd()),
            libc::POLLOUT,
            &mut fds,
        );
        let Ok(rev) = sys::poll(&fds, -1) else { break };
        let ready = |i: Option<usize>| i.is_some_and(|i| rev[i] != 0);
        if rev[0] != 0 {
            // Forward SIGINT/SIGTERM/SIGHUP to the program; it decides how to end.
            while let Ok(Some(sig)) = sys::read_signalfd(sigfd) {
                let _ = sb.signal(sig);
            }
        }
        if ready(i_out) && !pump(child_out.as_ref(), &mut io::stdout().lock(), &mut buf) {
            child_out = None;
        }
        if ready(i_err) && !pump(child_err.as_ref(), &mut io::stderr().lock(), &mut buf) {
            child_err = None;
        }
        if ready(i_in) {
            match stdin.lock().read(&mut buf) {
                Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                // Our stdin ended: close the program's.
                _ => {
                    stdin_open = false;
                    child_in = None;
                }
            }
        }
        if ready(i_to) {
            match child_in.as_ref().map(|mut f| f.write(&pending)) {
                Some(Ok(n)) => {
                    pending.drain(..n);
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The program closed its stdin: stop feeding it.
                _ => {
                    stdin_open = false;
                    child_in = None;
                    pending.clear();
                }
            }
        }
        if !stdin_open && pending.is_empty() {
            child_in = None;
        }
    }
}

fn push<'a>(
    fd: Option<BorrowedFd<'a>>,
    ev: i16,
    fds: &mut Vec<(BorrowedFd<'a>, i16)>,
) -> Option<usize> {
    fd.map(|fd| {
        fds.push((fd, ev));
        fds.len() - 1
    })
}

/// Copy one read's worth from `from` to `to`; false once `from` reached EOF or failed, or once
/// `to` cannot take more (e.g. `stockade exec -- yes | head -1`): the caller then closes the
/// pipe, so the program gets EPIPE/SIGPIPE exactly as it would writing to `to` directly.
fn pump(from: Option<&fs::File>, to: &mut dyn Write, buf: &mut [u8]) -> bool {
    let Some(mut f) = from else { return false };
    match f.read(buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).and_then(|_| to.flush()).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::{cgroup_hint, launch_error, seccomp_filtered};
    use crate::sandbox::{cgroup::CgroupError, LaunchError};

    /// review-170: a namespace refusal by a host switch set for this caller is hinted with
    /// that switch's way out even under a seccomp filter around the runtime (`Seccomp: 2` is
    /// also a systemd unit's SystemCallFilter=, Flatpak, a browser's sandbox), the filter said
    /// besides; without a switch the filter's hint stays (audit-167). The filter's hint won
    /// before, and the switch's way out was not said.
    #[test]
    fn a_switch_set_for_this_caller_wins_over_a_seccomp_filter_in_the_hint() {
        use crate::sandbox::facts::UsernsSwitch;
        let hint = |switch: Option<UsernsSwitch>, seccomp: bool| {
            let e = LaunchError::Namespaces {
                which: "user, pid and mount",
                why: "x".into(),
                switch,
                cause: std::io::Error::from_raw_os_error(libc::EPERM),
            };
            let c = super::launch_error_with(e, &move || seccomp);
            assert_eq!((c.exit().code(), c.kind()), (125, "layer_unavailable"));
            c.hint_text().unwrap().to_owned()
        };
        for s in [
            UsernsSwitch::UnprivilegedUsernsClone,
            UsernsSwitch::AppArmorRestrict,
            UsernsSwitch::MaxUserNamespaces,
        ] {
            let h = hint(Some(s), true);
            assert!(h.starts_with(s.way_out()), "{s:?}: {h}");
            assert!(h.contains("Seccomp: 2"), "{s:?}: {h}");
            assert_eq!(hint(Some(s), false), s.way_out(), "{s:?}");
        }
        let h = hint(None, true);
        assert!(h.starts_with("a seccomp filter around stockade"), "{h}");
        assert!(!h.contains("sysctl"), "{h}");
    }

    /// Only mode 2 (a filter) counts: 0 none, 1 strict (which would not let this read run).
    #[test]
    fn a_seccomp_filter_is_read_from_the_status_seccomp_field() {
        assert!(seccomp_filtered(
            "Name:\tstockade\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        ));
        assert!(!seccomp_filtered("Seccomp:\t0\nSeccomp_filters:\t0\n"));
        assert!(!seccomp_filtered("Name:\tx\n"));
    }

    /// The `cgroup` refusal's hint fits the caller and the host (review-148): root is not told
    /// to run as root, and systemd's delegation is offered only where it gives a user the
    /// controllers (cgroup v2), not on a v1 or hybrid host, where it is told so instead.
    #[test]
    fn the_cgroup_hint_fits_the_caller_and_the_hosts_cgroups() {
        use crate::sandbox::cgroup::HostMode;
        for mode in [HostMode::V2, HostMode::V1, HostMode::None] {
            let root = cgroup_hint(true, mode);
            assert!(!root.contains("run as root"), "{mode:?}: {root}");
            assert!(!root.contains("Delegate=yes"), "{mode:?}: {root}");
            assert!(root.contains("`cgroup` degradation"), "{mode:?}: {root}");
        }
        let user_v2 = cgroup_hint(false, HostMode::V2);
        assert!(user_v2.starts_with("run as root"), "{user_v2}");
        assert!(
            user_v2.contains("systemd-run --user --scope -p Delegate=yes"),
            "{user_v2}"
        );
        let user_v1 = cgroup_hint(false, HostMode::V1);
        assert!(user_v1.starts_with("run as root"), "{user_v1}");
        assert!(!user_v1.contains("systemd-run"), "{user_v1}");
        assert!(user_v1.contains("cgroup v2 subtree only"), "{user_v1}");
        assert!(cgroup_hint(false, HostMode::None).contains("no cgroup filesystem"));
        // Through launch_error: the kind and code are unchanged, the hint is this host's.
        let e = launch_error(LaunchError::Cgroup(CgroupError::Missing("memory")));
        assert_eq!((e.exit().code(), e.kind()), (125, "layer_unavailable"));
        let want = cgroup_hint(
            nix::unistd::geteuid().is_root(),
            crate::sandbox::cgroup::host_mode(),
        );
        assert_eq!(e.hint_text(), Some(want.as_str()));
    }

    /// The kinds 125 carries are an interface (audit `detail.kind`, serve's `data.kind`): each
    /// cgroup refusal has its own, and a hint that fits it.
    #[test]
    fn cgroup_refusals_carry_their_own_kind_and_hint() {
        let clash = launch_error(LaunchError::CgroupClash(CgroupError::Exists(
            "/sys/fs/cgroup/stockade-1-0-0".into(),
        )));
        assert_eq!((clash.exit().code(), clash.kind()), (125, "cgroup_clash"));
        let partial = launch_error(LaunchError::CgroupPartial("cpu_max".into()));
        assert_eq!(
            (partial.exit().code(), partial.kind()),
            (125, "layer_unavailable")
        );
        let j = partial.to_json();
        let hint = j["error"]["hint"].as_str().unwrap();
        assert!(
            hint.contains("cgroup_partial") && !hint.contains("run as root"),
            "{hint}"
        );
    }

    /// audit-154: a controller the kernel does not offer (`cgroup_disable=memory`) is refused
    /// with advice that names the boot option, not "run as root".
    #[test]
    fn a_controller_not_offered_is_refused_with_its_own_hint() {
        let e = launch_error(LaunchError::Cgroup(CgroupError::NotOffered {
            controller: "memory",
            file: "/sys/fs/cgroup/cgroup.controllers".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        }));
        assert_eq!((e.exit().code(), e.kind()), (125, "layer_unavailable"));
        let j = e.to_json();
        let hint = j["error"]["hint"].as_str().unwrap();
        assert!(
            hint.contains("cgroup_disable=") && !hint.contains("run as root"),
            "{hint}"
        );
        assert!(j["error"]["causes"].to_string().contains("`memory`"), "{j}");
        // review-158: the same on a v1 or hybrid kernel (no memory hierarchy mounted at all).
        let e = launch_error(LaunchError::Cgroup(CgroupError::Disabled {
            controller: "memory",
            file: "/proc/cgroups".into(),
        }));
        assert_eq!((e.exit().code(), e.kind()), (125, "layer_unavailable"));
        let j = e.to_json();
        let hint = j["error"]["hint"].as_str().unwrap();
        assert!(
            hint.contains("cgroup_disable=") && !hint.contains("mounted"),
            "{hint}"
        );
    }

    /// review-158: a refusal by the sandbox's init is hinted with the knob of the degradation
    /// it names: `min_landlock_abi` only for `landlock`, never for the TCP restriction or
    /// scoping, which no minimum ABI lets go.
    #[test]
    fn a_landlock_refusal_hint_names_the_knob_of_its_degradation() {
        use stockade_policy::sandbox::Degradation;
        let hint = |degradation| {
            let e = launch_error(LaunchError::Refused {
                degradation,
                cause: crate::sandbox::ChildError("kernel Landlock ABI 3".into()),
            });
            assert_eq!((e.exit().code(), e.kind()), (125, "layer_unavailable"));
            e.hint_text().unwrap().to_string()
        };
        let landlock = hint(Degradation::Landlock);
        assert!(landlock.contains("min_landlock_abi"), "{landlock}");
        assert!(landlock.contains("`landlock` degradation"), "{landlock}");
        for (d, name) in [
            (Degradation::LandlockNetwork, "`landlock_network`"),
            (Degradation::LandlockScope, "`landlock_scope`"),
        ] {
            let h = hint(d);
            assert!(!h.contains("min_landlock_abi"), "{name}: {h}");
            assert!(h.contains(name), "{name}: {h}");
        }
    }

    /// review-158: the audit detail of a failed launch names the degradation refused (the same
    /// for `exec`, `run` and `serve`, which all build it here), and none where no policy could
    /// have allowed it.
    #[test]
    fn a_failed_launch_detail_names_the_degradation_refused() {
        use stockade_policy::sandbox::Degradation;
        let refused = |e: LaunchError| {
            let (err, d) = super::launch_failure(e);
            assert_eq!(d["kind"], err.kind());
            assert_eq!(d["error"], err.chain().join(": ").as_str());
            d.get("refused")
                .and_then(|r| r.as_str())
                .map(str::to_string)
        };
        assert_eq!(
            refused(LaunchError::Cgroup(CgroupError::Missing("memory"))).as_deref(),
            Some("cgroup")
        );
        assert_eq!(
            refused(LaunchError::CgroupPartial("cpu_max".into())).as_deref(),
            Some("cgroup_partial")
        );
        assert_eq!(
            refused(LaunchError::Refused {
                degradation: Degradation::LandlockScope,
                cause: crate::sandbox::ChildError("scoping".into()),
            })
            .as_deref(),
            Some("landlock_scope")
        );
        assert_eq!(
            refused(LaunchError::Namespaces {
                which: "user, pid and mount",
                why: "0".into(),
                switch: None,
                cause: std::io::Error::from_raw_os_error(libc::ENOSPC),
            }),
            None
        );
    }
}
