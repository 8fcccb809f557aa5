//! `stockade serve [--socket PATH] [--config FILE] [--policy FILE | --policy-root DIR]
//! [--allow-capability CAP]… [trust flags]`: the daemon ([`crate::host::daemon`]).
//!
//! Sequence: the operator policy, as `run` reads it (`--policy FILE`, else the layers under
//! `--policy-root`; merged and validated at start, 65/66; every plugin's effective policy is
//! computed at each launch and restart by [`crate::plugin_policy::for_launch`], as under `run`)
//! → serve config (`stockade_policy::serve`, validated) → trust configuration (the policy's
//! `[trust]` applied as under `run`; read again at every load, restart and SIGHUP by
//! [`crate::host::daemon::Daemon`], so a new revocation list applies without a restart) → the
//! audit sinks of the policy's `[audit]` → signals blocked and read from a signalfd
//! (SIGINT/SIGTERM: graceful stop; SIGHUP: the policy read again, for later launches and
//! restarts, and every loaded plugin checked against the trust configuration read again) →
//! the agent socket: inherited from systemd when `LISTEN_PID`/`LISTEN_FDS` name this process
//! (fd 3), else bound at `--socket` (mode 0660, created under umask 0117 so it is never more
//! open, even for an instant; `<PATH>.lock` held for the daemon's life, so a second daemon
//! refuses at once; under it a stale socket nobody listens on is replaced, a live one or any
//! other kind of file is refused) → the config's packages loaded → `READY=1` to systemd → the
//! event loop → on a stop signal: `STOPPING=1`, every plugin stopped gracefully (then its
//! cgroup killed), the socket removed if we created it, exit 0.

use crate::audit::AuditLog;
use crate::cli::ServeArgs;
use crate::cmd::run::trust_config_with_policy;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::host::daemon::{log_line, Daemon, DaemonConfig};
use crate::host::{sertone, systemd};
use crate::node::NodeIdentity;
use crate::output::{term, Output};
use crate::plugin_policy::flag_allowlist;
use crate::policyfiles::{self, PolicyFilesError};
use crate::sys;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;
use stockade_policy::serve::{ServeConfig, ServeConfigError, MAX_SERVE_CONFIG_BYTES};

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The config file cannot be read.
    #[error("cannot read serve config `{}`", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The config file is invalid.
    #[error("invalid serve config `{}`", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ServeConfigError,
    },
    /// Neither `--socket` nor an inherited socket.
    #[error("no agent socket: pass --socket PATH or start under systemd socket activation")]
    NoSocket,
    /// systemd passed something unusable.
    #[error("socket activation: {0}")]
    Activation(String),
    /// The inherited descriptor is not a listening Unix stream socket.
    #[error("socket activation: fd 3 is not usable")]
    Inherited(#[source] io::Error),
    /// Another daemon is listening on the path.
    #[error("`{}` is in use by a running daemon", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error("`{}` exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket path's lock (`<path>.lock`) cannot be made or taken.
    #[error("cannot use the socket's lock `{}`", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Binding failed.
    #[error("cannot create the socket `{}`", path.display())]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The event loop cannot be set up.
    #[error("cannot set up the event loop")]
    Loop(#[source] io::Error),
    /// The Sertone front's address is refused or cannot be bound.
    #[error("--sertone-listen: {0}")]
    Sertone(String),
    /// A package of the config's `load` list cannot be loaded.
    #[error("cannot load `{package}` at start: {message}")]
    Load {
        /// The package.
        package: String,
        /// The typed error's message.
        message: String,
    },
}

fn cmd(exit: Exit, kind: &'static str, e: ServeError) -> CmdError {
    CmdError::new(exit, kind, e)
}

fn load_config(path: Option<&PathBuf>) -> Result<ServeConfig, CmdError> {
    let Some(path) = path else {
        return Ok(ServeConfig::default());
    };
    let read_err = |source| {
        let e = ServeError::ReadConfig {
            path: path.clone(),
            source,
        };
        cmd(Exit::NoInput, "config_unreadable", e)
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_SERVE_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    ServeConfig::parse(&text).map_err(|source| {
        let source = match source {
            ServeConfigError::Syntax(s) => {
                ServeConfigError::Syntax(s.in_file(path.display().to_string()))
            }
            other => other,
        };
        let e = ServeError::Config {
            path: path.clone(),
            source,
        };
        cmd(Exit::DataErr, "invalid_config", e)
            .hint("fix the named key; docs/protocol.md documents the serve config")
    })
}

/// `<path>.lock`: the lock a daemon bound at `path` holds for its whole life ([`bind`]).
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Take the socket path's lock without waiting: `None` when another daemon holds it. A
/// private lock file (0600, this user's: [`sys::open_private_lock_file`]), so no other user
/// can hold it and keep the daemon from starting; never removed (a lock file unlinked while
/// another daemon is about to lock it would let both hold "the" lock through two inodes).
fn lock_socket_path(path: &Path) -> Result<Option<OwnedFd>, ServeError> {
    let lock = lock_path(path);
    let err = |source| ServeError::Lock {
        path: lock.clone(),
        source,
    };
    let fd = sys::open_private_lock_file(&lock).map_err(err)?;
    Ok(sys::try_flock_exclusive(fd.as_fd())
        .map_err(err)?
        .then_some(fd))
}

/// Bind `path`, replacing a stale socket only, and hold the path's lock ([`lock_path`]),
/// returned with the listener, for as long as the socket is ours.
///
/// Why a lock: "stale" is decided by a refused `connect`, and a socket is refused by a daemon
/// between its `bind` and its `listen`, and by a stale one until the first of two daemons
/// started together has replaced it. Two agents starting the daemon at once both took such a
/// socket for stale, both removed "it" and bound: one daemon was left serving an unlinked
/// socket no agent could reach, and its exit removed the other's. Under the lock the check,
/// the removal and the bind are one daemon's; one that finds the lock held refuses as for a
/// live daemon (`socket_in_use`, 75) and touches nothing.
fn bind(path: &Path) -> Result<(UnixListener, OwnedFd), ServeError> {
    let lock = lock_socket_path(path)?.ok_or_else(|| ServeError::InUse {
        path: path.to_path_buf(),
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(ServeError::InUse {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log_line(&format!(
                    "removing stale socket {}",
                    crate::output::term_path(path)
                ));
                std::fs::remove_file(path).map_err(|source| ServeError::Bind {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(ServeError::Bind {
                    path: path.to_path_buf(),
                    source,
                })
            }
        },
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let bind_err = |source| ServeError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let l = sys::sock::with_umask(0o117, || UnixListener::bind(path)).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_err)?;
    Ok((l, lock))
}

/// Run `stockade serve`.
pub fn run(a: ServeArgs, _out: Output) -> Result<Exit, CmdError> {
    // The socket systemd passed is claimed first, before this process opens anything that stays
    // open: descriptor 3 is then systemd's or no one's, as `inherited_listener` requires. Taken
    // later, with `LISTEN_FDS` set and nothing passed, it was the daemon's own signalfd (or a
    // lock, the Sertone front): owned twice, closed under its owner, and std aborted the daemon
    // ("IO Safety violation") instead of the usage error.
    let inherited = match systemd::listen_fds()
        .map_err(|m| cmd(Exit::Usage, "activation", ServeError::Activation(m)))?
    {
        0 => None,
        1 => Some(
            sys::sock::inherited_listener(3)
                .map_err(|e| cmd(Exit::Usage, "activation", ServeError::Inherited(e)))?,
        ),
        n => {
            let e = ServeError::Activation(format!("{n} sockets passed; serve takes exactly one"));
            return Err(cmd(Exit::Usage, "activation", e));
        }
    };
    // The command line is checked whole before any file is read: a usage error (64) is said
    // first, not hidden behind the trust directory (78) or the policy (65) it never needed.
    if inherited.is_none() && a.socket.is_none() {
        return Err(cmd(Exit::Usage, "usage", ServeError::NoSocket));
    }
    let allow_flags = flag_allowlist(&a.allow_capability)?;
    let policy_source = policyfiles::source(a.policy.as_deref(), &a.root.policy_root);
    let loaded = policyfiles::load_noting(&policy_source).map_err(PolicyFilesError::into_cmd)?;
    let (policy, policy_skipped) = (loaded.policy, loaded.skipped);
    for d in &policy_skipped {
        log_line(&format!(
            "warning: policy directory {} cannot be read by this user: its layers are not \
             applied (a SIGHUP that cannot read another is refused)",
            term(&d.display().to_string())
        ));
    }
    let defaults = policy
        .resolve(None, None)
        .map_err(|e| PolicyFilesError::Invalid(e).into_cmd())?;
    let serve = load_config(a.config.as_ref())?;
    let mut trust = trust_config_with_policy(&a.trust, &defaults)?;
    // Never wait for ever on the revocation lock root's CLI shares: one event loop serves all;
    // and once a wait ran out, only try it for a while, until it is taken again (`BoundedWait`).
    trust.revocation_lock_wait = Some(crate::state::BoundedWait::new(
        crate::host::fleet::REVOCATION_LOCK_WAIT,
    ));
    let node = NodeIdentity::load(&trust.state_dir).map_err(crate::node::NodeError::into_cmd)?;
    // A record that cannot be read stops the daemon: ignoring it would run what it quarantines.
    let quarantines =
        crate::host::quarantine::Quarantines::load(&trust.state_dir).map_err(|e| {
            if let crate::state::StateError::NewerFormat { .. } = e {
                return CmdError::new(Exit::Config, "state.newer_format", e)
                    .hint(crate::state::NEWER_FORMAT_HINT);
            }
            CmdError::new(Exit::Config, "quarantine", e).hint(
                "fix or remove <state-dir>/quarantine.json (removing it lifts every recorded quarantine)",
            )
        })?;
    // Packages are extracted under <state-dir>/trees, each locked while loaded: what a daemon
    // killed before it could clean up left there (no process holds its lock) goes now. The
    // state directory is the operator's choice, made if missing (as the key/value store makes
    // it, 0700); one that cannot be made leaves the packages in the temp directory, as before.
    let _ = crate::state::make_dir(&trust.state_dir);
    crate::package::trees::Trees::new(&trust.state_dir, 0).sweep_leftovers();
    // So are the empty cgroups of such a daemon's sandboxes: every launch sweeps them, but a
    // daemon that launches nothing (no load list, every package quarantined) would keep them.
    crate::sandbox::cgroup::sweep_leftovers();
    let loop_err = |e| cmd(Exit::OsErr, "event_loop", ServeError::Loop(e));
    // Many plugins need many descriptors (three pipes each); the children get the policy's own.
    if let Err(e) = sys::raise_nofile_soft_limit() {
        crate::output::print_stderr(&format!(
            "stockade: warning: cannot raise the open-files limit: {e}"
        ));
    }
    // SIGHUP re-reads the policy (Daemon::reload_policy); SIGINT/SIGTERM stop.
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let sigfd = sys::block_signals(&sigs)
        .and_then(|_| sys::signalfd(&sigs))
        .map_err(loop_err)?;
    // From here on the daemon's stderr (its log, the audit's `stderr` sink) never makes the
    // loop wait for its reader: a supervisor that stops reading the pipe it gave as stderr
    // would otherwise freeze every agent and plugin once the pipe is full (`logqueue`).
    crate::logqueue::install("stockade serve: ");

    // The Sertone front is bound first, before the agent socket and before any plugin starts:
    // a refused address changes nothing, and an agent that finds the socket listening finds the
    // front's port bound too (it is served once the loop runs, as the socket is).
    let front = match a.sertone_listen.as_ref().or(serve.sertone.listen.as_ref()) {
        None => None,
        Some(s) => {
            let refused = |m: String| {
                cmd(
                    Exit::SertoneListen,
                    "sertone_listen",
                    ServeError::Sertone(m),
                )
            };
            let addr = sertone::listen_addr(s, serve.sertone.allow_remote).map_err(refused)?;
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| refused(format!("cannot listen on {addr}: {e}")))?;
            Some((addr, l))
        }
    };

    let (listener, bound) = match inherited {
        None => {
            let path = a
                .socket
                .clone()
                .ok_or_else(|| cmd(Exit::Usage, "usage", ServeError::NoSocket))?;
            // A daemon already there is worth a retry (75), a path that cannot be bound is
            // not (73): two kinds, each with its own code and its own advice.
            let (l, lock) = bind(&path).map_err(|e| match e {
                ServeError::InUse { .. } => cmd(Exit::TempFail, "socket_in_use", e)
                    .hint("stop the other daemon or choose another --socket"),
                // Left by another user's daemon on this path (root's, the service user's), or
                // planted in a shared directory: the cause names the file, this says what to do.
                ServeError::Lock { .. } => cmd(Exit::CantCreate, "socket", e).hint(
                    "the socket's lock file (PATH.lock) must be this user's own regular file \
                     (0600), or absent so it is made: remove one left by another user's daemon \
                     on this path, or choose another --socket",
                ),
                _ => cmd(Exit::CantCreate, "socket", e).hint(
                    "the socket's directory must exist and be writable by this user, and \
                     nothing but a socket may be at the path; or choose another --socket",
                ),
            })?;
            (l, Some((path, lock)))
        }
        Some(l) => (l, None),
    };
    // From here on the socket file (if ours) is removed on every way out.
    let cleanup = bound.map(|(path, lock)| SocketFile { path, _lock: lock });
    let load = serve.serve.load.clone();
    let cfg = DaemonConfig {
        serve,
        // Never wait for ever on the log's lock root's CLI shares: one event loop serves all.
        audit: AuditLog::from_policy(&defaults.audit)
            .waiting_at_most(crate::host::fleet::AUDIT_WAIT),
        audit_section: defaults.audit.clone(),
        max_frame_bytes: defaults.host.protocol.max_frame_bytes,
        policy,
        policy_source,
        policy_skipped,
        policy_root: a.root.policy_root.clone(),
        allow_flags,
        trust,
        trust_args: a.trust.clone(),
        node,
    };
    let mut d = Daemon::new(cfg, quarantines, listener, sigfd).map_err(loop_err)?;
    if let Some((addr, l)) = front {
        let f = sertone::Front::new(l, &d.cfg.serve.sertone).map_err(loop_err)?;
        d.set_front(f).map_err(loop_err)?;
        log_line(&format!("sertone front on http://{addr}"));
    }
    // All verified, then launched dependencies first (a dependency refusal launches nothing).
    if let Err((package, e)) = d.load_start_set(&load) {
        // Every entry was admitted before any launched, but a later launch can still fail:
        // what started is stopped the graceful, audited way (shutdown, then SIGKILL after the
        // grace), never left to the Drop's SIGKILL.
        d.stop(Instant::now());
        d.run();
        // A killed sandbox that had not ended is waited for here (its cgroup and uid released).
        drop(d);
        // A frozen license refuses as it does for `run` (100), a registry that cannot be read
        // as the store commands do (106), a file of the node's a newer Stockade wrote (the
        // registry, the revocation state, the audit log: `*.newer_format`) as every command
        // does, with its kind, exit and hint — the package is not at fault, and "fix or remove
        // the package" sent the operator after it; any other refusal is the config's (65).
        let kind_is = |k: &str| e.data.as_ref().is_some_and(|d| d["kind"] == k);
        let newer = e
            .data
            .as_ref()
            .and_then(|d| d["kind"].as_str())
            .filter(|k| k.ends_with(".newer_format") && *k != "statement.newer_format")
            .and_then(|k| crate::kinds::KINDS.iter().find(|(known, _)| *known == k))
            .map(|&(kind, exit)| {
                let hint = e.data.as_ref().and_then(|d| d["hint"].as_str());
                (
                    exit,
                    kind,
                    hint.unwrap_or(
                        "a newer Stockade wrote it: use that version (upgrade this one); nothing \
                         was changed",
                    )
                    .to_string(),
                )
            });
        let (exit, kind, hint) = if kind_is("license_frozen") {
            (
                Exit::LicenseFrozen,
                "license_frozen",
                "fix or remove the package from [serve] load".to_string(),
            )
        } else if let Some(newer) = newer {
            newer
        } else if kind_is("store.corrupt") {
            (
                Exit::StoreCorrupt,
                "store.corrupt",
                "restore <state-dir>/store/registry.json from a backup".to_string(),
            )
        } else {
            (
                Exit::DataErr,
                "load",
                "fix or remove the package from [serve] load".to_string(),
            )
        };
        let err = ServeError::Load {
            package,
            message: e.message,
        };
        return Err(cmd(exit, kind, err).hint(hint));
    }
    match &cleanup {
        Some(f) => log_line(&format!(
            "listening on {}",
            crate::output::term_path(&f.path)
        )),
        None => log_line("listening on the socket passed by systemd"),
    }
    if let Err(e) = systemd::notify("READY=1\nSTATUS=listening") {
        log_line(&format!("sd_notify failed: {e}"));
    }
    d.run();
    let stuck = d.sup.stuck();
    if stuck > 0 {
        log_line(&format!(
            "waiting for {stuck} killed sandbox(es) that have not ended (a process in \
             uninterruptible sleep)"
        ));
    }
    // Dropping the supervisor waits for a killed sandbox that had not ended: it is gone only
    // now (its cgroup and uid released).
    drop(d);
    log_line("stopped");
    Ok(Exit::Ok)
}

/// The socket this daemon bound, with the path's lock ([`bind`]): the file is removed while
/// the lock is still held (fields drop after `drop`), so no daemon that binds the path after us
/// can have its socket removed by our exit.
struct SocketFile {
    path: PathBuf,
    _lock: OwnedFd,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
