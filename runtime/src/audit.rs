//! The audit log: one JSON record per verification, launch, grant, denial, termination, restart,
//! install and removal, hash-chained so that deleting, editing or reordering a record is
//! detected by `stockade audit verify`, which names the first record that breaks the chain.
//!
//! ## Record (schema `stockade.audit/2`; `/1` read, one JSON object per line)
//! `{"schema": "stockade.audit/2", "seq", "time", "event", "outcome", "plugin", "version",
//! "package_sha256", "signer_chain", "policy_sha256", "layers", "detail", "prev", "hash"}`:
//! `seq` counts from 0 in the file; `prev` is the previous record's `hash` (64 zeros for the
//! first); `hash` is the SHA-256 (hex) of the record's canonical JSON without `hash` (the same
//! canonical form as certificates, `stockade_trust::canonical`). docs/audit.md documents it.
//!
//! ## Sinks (`[audit]` in the policy)
//! `file`: appended under an exclusive `flock` of `<log>.lock` (concurrent `stockade` processes
//! queue; see "The lock" below), the log is opened and its last record read under the lock to
//! chain to it, and the file is fsynced before the lock is released. `journal = true`: each record as one entry on systemd's native journal socket
//! (`/run/systemd/journal/socket`), fields `MESSAGE`, `SYSLOG_IDENTIFIER=stockade-audit`,
//! `STOCKADE_AUDIT_EVENT`, `STOCKADE_AUDIT_SEQ`, `STOCKADE_AUDIT_HASH` and the whole record in
//! `STOCKADE_AUDIT_RECORD`. `stderr = true`: the journal when its socket exists, else one
//! `stockade-audit: {json}` line on stderr — but never on a stream that carries a command's
//! machine-readable output ([`AuditLog::without_stderr`]); under `serve` that line goes through
//! the daemon's log queue, written within the bounded wait or not at all
//! ([`AuditError::StderrBusy`], [`crate::logqueue`]); a command's own stderr is written as it
//! comes, and a line it does not take (EPIPE, ENOSPC) is a record not written
//! ([`AuditError::Stderr`]), as under `serve`. There is no stdout sink: stdout is
//! the protocol under `run`, the program's under `exec`, and the `--json` document elsewhere. A
//! record that cannot be written to a configured sink is an error for the command (fail closed:
//! no unaudited launch).
//!
//! ## Truncation: the head file
//! A chain proves order and integrity of what is there; cutting records off the *end* leaves a
//! valid shorter chain. So each append to `file` also replaces `<file>.head` (atomically:
//! temporary file, fsync, rename, under the log's lock) with the record count and the last
//! hash ([`Head`]). `audit verify` checks the log against it and names the missing records; a
//! writer refuses to extend a log shorter than its head says (fail closed). What it defends
//! against: a log cut short by accident (a crash, a full disk, a rotation or `truncate` by
//! mistake) and by anyone who edits the log but not the head. What it cannot: someone who can
//! write both files can cut the log and rewrite the head consistently (the head is not keyed:
//! any key would sit next to it, readable by the same root); a head file deleted with the tail
//! is reported (`--require-head` makes it a failure) but cannot say how much was lost. Against
//! those, ship the records off the host (`journal`, forwarded) or the head's hash elsewhere.
//! A crash between a head file's temporary file and its rename leaves `.stockade-tmp-…` in the
//! log's directory; a log's first append removes this uid's stale ones, and then one append a
//! minute (not each: the sweep lists the directory), never one a live writer holds
//! (`fileio::sweep_reserved`).
//!
//! ## Rotation
//! Only [`rotate`] (`stockade audit rotate`) rotates the log: under the writers' lock, the new
//! log begins with a `rotation` record chained to the old log's last record, which a chain
//! accepts as its start ([`check_chain`], [`continues`]) and which [`verify_files`] checks
//! against the file before it. Anything else (logrotate) leaves a log shorter than its head,
//! which writers refuse ([`AuditError::Truncated`], `audit.truncated`) until `audit rotate
//! --after-loss` records the loss in a new log.
//!
//! ## The lock
//! Writers serialize on `<log>.lock`, never on the log: `flock` needs only a descriptor, even a
//! read-only one, and the log is 0640 — in the packaged layout any member of the `stockade`
//! group (which gates the daemon's socket: the agents) could open it, take its lock and never
//! let go, and root's CLI then hung on every audited action, and `stockade serve`'s one loop
//! with it (every agent). The lock file is 0600 and the log directory's owner's, so only that
//! user (the daemon's) and root open it, and they are the log's only writers ([`lock_log`]).
//! Whoever waits on it (the daemon's loop included, which has no other thread) waits for one
//! append of another writer — root's CLI or another daemon on the same log: a tail read, one
//! line, the head's replacement, a few fsyncs. A writer stopped mid-append (SIGSTOP, a
//! debugger) holds it for as long as it is stopped: the CLI waits for it, `serve` only a bounded
//! time ([`AuditLog::waiting_at_most`], then `audit.busy`, 75, and its rule for a record not
//! written). What is left: the directory's owner can hold it for ever, as it can remove or
//! rewrite the log and its head; against it, ship the records off the host (`journal`).

use crate::fileio::BoundedWait;
use crate::sys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use stockade_policy::operator::AuditSection;

pub mod rotate;

/// The schema of every record this build writes: `stockade.audit/1` and its events, plus
/// [`Event::Configuration`] and [`Event::Bypass`] (docs/audit.md "Across versions").
pub const SCHEMA: &str = "stockade.audit/2";
/// The earlier schema this build reads and checks (never writes): no `configuration` or
/// `bypass` event.
pub const SCHEMA_V1: &str = "stockade.audit/1";
/// The highest schema version this build reads ([`SCHEMA`]'s).
const SCHEMA_VERSION: u32 = 2;

/// The version of a schema this build reads (`stockade.audit/1` → 1, [`SCHEMA`] → 2), `None`
/// for any other.
fn known_version(schema: &str) -> Option<u32> {
    match schema {
        SCHEMA_V1 => Some(1),
        SCHEMA => Some(SCHEMA_VERSION),
        _ => None,
    }
}
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Largest record line read back (the tail of the file is scanned for the last record).
const MAX_RECORD: u64 = 256 * 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A package was verified (or refused).
    Verification,
    /// A sandbox was launched.
    Launch,
    /// A high-risk item was granted under an authorization grant.
    Grant,
    /// Something was denied (a withheld item, a denied call).
    Denial,
    /// A sandbox ended.
    Termination,
    /// A plugin was restarted.
    Restart,
    /// A package was installed.
    Install,
    /// A package was removed.
    Removal,
    /// A crash-looping plugin was quarantined (`stockade serve`).
    Quarantine,
    /// The log was rotated (`stockade audit rotate`): the first record of a new log, chained to
    /// the last record of the file it continues ([`rotate`]).
    Rotation,
    /// A trust or policy configuration change was applied or refused: a source's pinned key
    /// (`stockade source`), a node license installed, serve's policy reload (since
    /// `stockade.audit/2`).
    Configuration,
    /// A guard was bypassed: a hook that failed open, to be recorded when it starts failing
    /// open and when it recovers, with counts — never once per call (since `stockade.audit/2`;
    /// reserved: no writer yet, docs/audit.md).
    Bypass,
}

impl Event {
    /// The first schema version that has this event: a record of an earlier schema naming it
    /// was written by no Stockade.
    fn since(self) -> u32 {
        match self {
            Event::Configuration | Event::Bypass => 2,
            _ => 1,
        }
    }
}

/// One record (what the caller fills in; `seq`, `prev` and `hash` are set by the log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Position in the file, from 0.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// What happened.
    pub event: Event,
    /// `ok`, `refused`, `denied`, the exit status …
    pub outcome: String,
    /// Plugin name.
    pub plugin: Option<String>,
    /// Plugin version.
    pub version: Option<String>,
    /// SHA-256 of the package file.
    pub package_sha256: Option<String>,
    /// Signer key ids: developer, intermediate, root.
    pub signer_chain: Vec<String>,
    /// SHA-256 of the effective policy's explanation (`policy explain --json` items).
    pub policy_sha256: Option<String>,
    /// Enforced isolation layers.
    pub layers: Vec<String>,
    /// Event-specific details.
    pub detail: Value,
    /// The previous record's hash.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

impl Record {
    /// A new record for `event` (chain fields empty until appended).
    pub fn new(event: Event, outcome: impl Into<String>) -> Self {
        Record {
            schema: SCHEMA.into(),
            seq: 0,
            time: crate::keyfile::unix_now(),
            event,
            outcome: outcome.into(),
            plugin: None,
            version: None,
            package_sha256: None,
            signer_chain: Vec::new(),
            policy_sha256: None,
            layers: Vec::new(),
            detail: Value::Null,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// Replace `detail` with `detail`, keeping what the one replaced said of the package's
    /// signature when it is not `verified` (`signature_status`, as [`keep_signature_status`]):
    /// for a record made from a plugin's audit base ([`for_report`]), whose detail is the
    /// base's. Every record so made names the base's `signer_chain` — a `grant`, a `denial`, a
    /// `quarantine`, a `removal` —, and a revoked, expired or out-of-scope key a trust mode
    /// below strict let through may be a stolen one: each says so itself (review-147; only
    /// the launch, restart and termination records did). A status `detail` already names is
    /// its own.
    pub fn set_detail(&mut self, detail: Value) {
        let base = std::mem::replace(&mut self.detail, detail);
        let status = base
            .get("signature_status")
            .filter(|s| *s != "verified")
            .cloned();
        if let (Some(s), Some(d)) = (status, self.detail.as_object_mut()) {
            d.entry("signature_status").or_insert(s);
        }
    }

    /// The hash over everything but `hash`.
    pub fn compute_hash(&self) -> Result<String, AuditError> {
        let mut v = serde_json::to_value(self).map_err(AuditError::Encode)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("hash");
        }
        let bytes = stockade_trust::canonical::to_vec(&v).map_err(AuditError::Canonical)?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log file cannot be opened, locked, read or written.
    #[error("cannot write the audit log {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be written whole (or its head not replaced), and what was written of
    /// it could not be cut off again (or the cut not synced): `tail` says what the log was
    /// seen to end in then.
    #[error("cannot write the audit log {}, and what was written of the record could not be cut off again ({cut}): {tail}", path.display())]
    Uncut {
        /// The file.
        path: PathBuf,
        /// Why the record was not written.
        #[source]
        source: std::io::Error,
        /// Why its part could not be cut off.
        cut: std::io::Error,
        /// What the log ends in, by its length after the cut was tried.
        tail: UncutTail,
    },
    /// A record cannot be encoded.
    #[error("cannot encode the audit record")]
    Encode(#[source] serde_json::Error),
    /// A record longer than an append reads back to chain the next one ([`MAX_RECORD`]).
    #[error("the audit record is {size} bytes, over the {MAX_RECORD}-byte limit of a record")]
    TooLarge { size: u64 },
    /// A record has no canonical form.
    #[error("cannot canonicalize the audit record")]
    Canonical(#[source] stockade_trust::canonical::CanonicalError),
    /// The last record of the file is of a newer schema (`stockade.audit/N`, N > 1): a newer
    /// Stockade wrote it, and this one cannot check what it chains to ([`newer_schema`]).
    #[error(
        "the last record of {} has schema `{schema}`, written by a newer Stockade; this one writes `{SCHEMA}`",
        path.display()
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The record's schema.
        schema: String,
    },
    /// The last record of the file does not parse: refusing to extend a broken chain.
    #[error("the last record of {} is not a valid audit record; run `stockade audit verify`", path.display())]
    BrokenTail {
        /// The file.
        path: PathBuf,
    },
    /// The log has fewer records than its head file says (it was cut short): refusing to
    /// extend it, which would hide the loss.
    #[error("{} holds {found} record(s) but its head file says {expected}: the log was truncated, or rotated by something else than `stockade audit rotate`", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Records in the file.
        found: u64,
        /// Records the head says were written.
        expected: u64,
    },
    /// `audit rotate --after-loss` of a log that is not shorter than its head (or has no head
    /// file): nothing says records were lost, and a loss recorded where there was none would
    /// mislead whoever reads the chain.
    #[error("{} is not shorter than its head file says (or has no head file): no loss to record", path.display())]
    NotTruncated {
        /// The file.
        path: PathBuf,
    },
    /// The log's lock file (`<log>.lock`) is not one its writers may wait on: it belongs to
    /// another user than the log directory's owner (whoever can open a lock can hold it for
    /// ever, and every audited action of root's and of the daemon would wait for it), it is not
    /// a regular file of one link, or this user is neither root nor that owner (the only ones
    /// who append to the log, [`lock_log`]).
    #[error("the audit log's lock {} cannot be used", path.display())]
    LockUnsafe {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the log's lock (`<log>.lock`) for the whole bounded wait this
    /// writer allows ([`AuditLog::waiting_at_most`]: `serve`, whose one event loop must not
    /// wait for ever behind a holder stopped mid-append), or — after one such wait ran out —
    /// at the one try made since: nothing was written.
    #[error(
        "another process held the audit log's lock {} for {} ms (a writer stopped mid-append?)",
        path.display(),
        waited.as_millis()
    )]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// How long this writer waited.
        waited: Duration,
    },
    /// The journal socket did not take the record within the bounded wait this writer allows
    /// ([`AuditLog::waiting_at_most`]): its queue is full, the journal not reading (stopped).
    #[error(
        "the journal socket {} took no record for {} ms (its queue is full: is the journal stopped?)",
        path.display(),
        waited.as_millis()
    )]
    JournalBusy {
        /// The socket.
        path: PathBuf,
        /// How long this writer waited.
        waited: Duration,
    },
    /// The `stderr` sink, without a journal, under `serve`: the daemon's stderr took nothing
    /// for the whole bounded wait ([`AuditLog::waiting_at_most`]) — whoever reads it (the
    /// supervisor that started the daemon with a pipe) stopped reading — or, after one such
    /// wait ran out, at the one try made since. Nothing was written (the record was taken back
    /// out of the daemon's log queue, [`crate::logqueue`]).
    #[error(
        "the daemon's stderr took no audit record within {} ms: its reader is not reading",
        waited.as_millis()
    )]
    StderrBusy {
        /// How long this writer waited.
        waited: Duration,
    },
    /// The `stderr` sink, without a journal: stderr failed (its reader closed its end, a full
    /// disk, `/dev/full`), so the record was not written — under `serve` the daemon's
    /// ([`crate::logqueue::Required::Failed`]), or a command's own.
    #[error("cannot write the audit record to stderr")]
    Stderr(#[source] std::io::Error),
    /// The journal socket cannot take the record.
    #[error("cannot send the audit record to the journal socket {}", path.display())]
    Journal {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `stderr` is the only sink, and stderr carries the command's machine-readable output.
    #[error("audit.stderr is the only audit sink, but stderr carries this command's JSON report and there is no journal socket")]
    StderrTaken,
}

/// What a log whose failed record could not be cut off ([`AuditError::Uncut`]) ends in, told by
/// its length after the cut was tried: it said "an incomplete record" in every case, also of a
/// whole record whose head alone failed (a `chattr +a` log refuses the truncation) and of a
/// cut made but not synced (review-169 L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UncutTail {
    /// Part of the record: the next append refuses to chain to it.
    Part,
    /// The whole record, beyond what its head names (the head's replacement failed): the log
    /// one record past its head, which the next append chains to and heals.
    Whole,
    /// Its length before the record: the cut was made but could not be synced, so a crash
    /// may bring back what was written.
    Unsynced,
    /// Unknown (the length could not be read).
    Unknown,
}

impl UncutTail {
    /// What a log of `now` bytes ends in, `before` before a record of `record` bytes was
    /// written to it (pure).
    fn of(before: u64, record: u64, now: Option<u64>) -> UncutTail {
        match now {
            None => UncutTail::Unknown,
            Some(n) if n == before => UncutTail::Unsynced,
            Some(n) if n == before + record => UncutTail::Whole,
            Some(_) => UncutTail::Part,
        }
    }
}

impl std::fmt::Display for UncutTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UncutTail::Part => "the log ends in an incomplete record",
            UncutTail::Whole => {
                "the log ends in the whole record, which its head file does not name (the \
                 action it records did not happen)"
            }
            UncutTail::Unsynced => {
                "the record was cut off, but the cut may not be on disk: a crash may leave the \
                 log ending in part of it"
            }
            UncutTail::Unknown => "the log may end in part of the record",
        })
    }
}

/// `<log>.head`: how many records the log had after the last append, and the last one's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Always [`HEAD_SCHEMA`].
    pub schema: String,
    /// Number of records (the last one's `seq` + 1).
    pub records: u64,
    /// The last record's `hash`.
    pub last_hash: String,
}

/// The schema name of the head file.
pub const HEAD_SCHEMA: &str = "stockade.audit.head/1";

/// The head file of a log: `<log>.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// The journal's native socket (`STOCKADE_JOURNAL_SOCKET` overrides it, for tests and for
/// containers that bind the host's journal elsewhere).
pub fn journal_socket() -> PathBuf {
    std::env::var_os("STOCKADE_JOURNAL_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/systemd/journal/socket"))
}

/// Send one record to the journal with the native protocol: `KEY=value` lines in one datagram.
/// Hand-written (a dozen lines of std) because the kept crates for it (`libsystemd`,
/// `systemd-journal-logger`) bring a logger framework or FFI for one `sendto`. Every value is
/// one line (the record is compact JSON, which escapes newlines), so the simple form of the
/// protocol suffices; a record above the socket's datagram limit fails (and with it the
/// command), never truncated silently. A datagram to a full queue (a journal that does not
/// read: stopped) blocks the sender: `wait` bounds that ([`AuditError::JournalBusy`]; `None`:
/// however long, the CLI).
fn send_journal(
    path: &Path,
    r: &Record,
    json: &str,
    wait: Option<Duration>,
) -> Result<(), AuditError> {
    let one_line = |s: &str| s.replace('\n', " ");
    let event = crate::output::enum_str(&r.event);
    let msg = format!(
        "MESSAGE=stockade-audit {event} {} {}\nSYSLOG_IDENTIFIER=stockade-audit\nPRIORITY=6\n\
         STOCKADE_AUDIT_EVENT={event}\nSTOCKADE_AUDIT_SEQ={}\nSTOCKADE_AUDIT_HASH={}\n\
         STOCKADE_AUDIT_RECORD={json}\n",
        one_line(&r.outcome),
        one_line(r.plugin.as_deref().unwrap_or("-")),
        r.seq,
        r.hash,
    );
    let err = |source| AuditError::Journal {
        path: path.to_path_buf(),
        source,
    };
    let sock = std::os::unix::net::UnixDatagram::unbound().map_err(err)?;
    // A zero timeout is refused (it would mean none): one millisecond is the least.
    let timeout = wait.map(|d| d.max(Duration::from_millis(1)));
    sock.set_write_timeout(timeout).map_err(err)?;
    match sock.send_to(msg.as_bytes(), path) {
        Ok(_) => Ok(()),
        // SO_SNDTIMEO ran out: EAGAIN.
        Err(e) if timeout.is_some() && e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(AuditError::JournalBusy {
                path: path.to_path_buf(),
                waited: timeout.unwrap_or_default(),
            })
        }
        Err(e) => Err(err(e)),
    }
}

/// Where records go.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    file: Option<PathBuf>,
    stderr: bool,
    journal: bool,
    /// stderr carries machine-readable output: the `stderr` sink may only use the journal.
    stderr_taken: bool,
    /// When the `file`'s directory was last swept for a crash's temporary files
    /// ([`sweep_due`]); shared by the clones, so a daemon sweeps once a minute at most,
    /// however many records it appends.
    swept: Arc<Mutex<Option<Instant>>>,
    /// How long an append waits for the log's lock and for the journal socket: `None` (the
    /// CLI) however long; `serve` bounds it ([`Self::waiting_at_most`]), and once a wait for
    /// the lock ran out the next appends only try it for a while ([`BoundedWait`], shared by
    /// the clones, as `swept`).
    wait: Option<BoundedWait>,
    /// The same for the `stderr` sink's line under `serve` ([`crate::logqueue`]): once its
    /// reader let a wait run out, the next records only try, for a while.
    stderr_wait: Option<BoundedWait>,
    /// `[audit] rotate_size`, `keep`: an append that leaves the file at least this big rotates
    /// it, under the lock it holds ([`rotate::rotate_held`]).
    rotation: AutoRotate,
}

/// When appends rotate the log, and how many rotated files a rotation keeps.
#[derive(Debug, Clone, Copy, Default)]
struct AutoRotate {
    size: Option<u64>,
    keep: Option<u32>,
}

impl AuditLog {
    /// The sinks the policy's `[audit]` section configures.
    pub fn from_policy(a: &AuditSection) -> Self {
        AuditLog {
            file: a.file.as_ref().map(PathBuf::from),
            stderr: a.stderr.unwrap_or(false),
            journal: a.journal.unwrap_or(false),
            stderr_taken: false,
            swept: Arc::default(),
            wait: None,
            stderr_wait: None,
            // Validated with the policy (a size above 0, keep at least 1).
            rotation: AutoRotate {
                size: a
                    .rotate_size
                    .as_deref()
                    .and_then(stockade_policy::operator::parse_size),
                keep: a.keep,
            },
        }
    }

    /// The same sinks, an append waiting `wait` at most for the log's lock (another writer's:
    /// root's CLI, another daemon) and for the journal socket to take the record — what
    /// `stockade serve` uses: its one event loop answers every agent and plugin, and a holder
    /// stopped mid-append (SIGSTOP, a debugger) stalled it for ever. Past the wait the append
    /// fails ([`AuditError::LockBusy`], [`AuditError::JournalBusy`]: `audit.busy`, 75) and the
    /// caller's rule for a record that cannot be written applies (a required record: the action
    /// is refused; a best-effort one: logged). Once a wait for the lock ran out, the following
    /// appends only try the lock, without waiting, until one takes it or
    /// [`BoundedWait::TRY_ONLY_FOR`] passed: a holder that stays stopped costs the loop one
    /// wait in that time, not one per record. Without this (the CLI), an append waits however
    /// long: one command, which its user sees waiting and can interrupt.
    ///
    /// The `stderr` sink without a journal is bounded the same way: `serve`'s stderr is a
    /// queue ([`crate::logqueue`]) whose reader may have stopped; a record it did not begin to
    /// take within the wait is not written ([`AuditError::StderrBusy`], `audit.busy`; one it
    /// took part of is finished first and counts as written), and the next
    /// ones only try while [`BoundedWait::TRY_ONLY_FOR`] lasts or until one is written.
    pub fn waiting_at_most(mut self, wait: Duration) -> Self {
        self.wait = Some(BoundedWait::new(wait));
        self.stderr_wait = Some(BoundedWait::new(wait));
        self
    }

    /// The same sinks for a command whose stderr carries its machine-readable output (`exec
    /// --json`): the `stderr` sink then goes to the journal or nowhere; when it would be the only
    /// sink and there is no journal socket, this is an error (no unaudited launch).
    pub fn without_stderr(mut self) -> Result<Self, AuditError> {
        self.stderr_taken = true;
        if self.stderr && self.file.is_none() && !self.journal && !journal_socket().exists() {
            return Err(AuditError::StderrTaken);
        }
        Ok(self)
    }

    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.stderr || self.journal
    }

    /// Append a record (chained to the file's last one) and send it to the other sinks.
    pub fn append(&self, mut r: Record) -> Result<Record, AuditError> {
        if let Some(path) = &self.file {
            r = append_to_file(path, r, &self.swept, self.wait.as_ref(), self.rotation)?;
        } else {
            r.prev = GENESIS.into();
            r.hash = r.compute_hash()?;
        }
        if !self.journal && !self.stderr {
            return Ok(r);
        }
        let line = serde_json::to_string(&r).map_err(AuditError::Encode)?;
        let socket = journal_socket();
        // `journal` requires the socket; `stderr` prefers it, falling back to stderr.
        if self.journal || socket.exists() {
            send_journal(
                &socket,
                &r,
                &line,
                self.wait.as_ref().map(BoundedWait::bound),
            )?;
        } else if !self.stderr_taken {
            let text = format!("stockade-audit: {line}\n");
            // Under `serve` the line must get past a queue that drops log lines: written
            // within the bound or not at all (fail closed).
            let wait = self.stderr_wait.as_ref();
            let bound = wait.map_or(Duration::ZERO, BoundedWait::this_time);
            match crate::logqueue::write_required(text.as_bytes(), bound) {
                // A command's own stderr, written as it comes: a record it did not take is not
                // written, and the action is refused as a file sink's failed write refuses it
                // (74). `output::print_stderr`, which it went through, drops what fails — right
                // for a message, not for a record (a closed pipe, `2>/dev/full` ran the action
                // unaudited). Rust's stderr takes a closed descriptor for a success, but fds
                // 0–2 are never closed here: the runtime opens /dev/null in their place at
                // start, which takes the record as the caller chose.
                crate::logqueue::Required::NotQueued => std::io::stderr()
                    .lock()
                    .write_all(text.as_bytes())
                    .map_err(AuditError::Stderr)?,
                crate::logqueue::Required::Written => {
                    if let Some(w) = wait {
                        w.took();
                    }
                }
                crate::logqueue::Required::Failed(e) => return Err(AuditError::Stderr(e)),
                crate::logqueue::Required::Busy => {
                    if let Some(w) = wait {
                        w.ran_out();
                    }
                    return Err(AuditError::StderrBusy { waited: bound });
                }
            }
        }
        Ok(r)
    }
}

/// Whether the log's directory is to be swept for a crash's temporary files now, when it was
/// last swept at `last` (`None`: not yet by this log): the first append sweeps, then one a
/// minute ([`crate::fileio::LEFTOVER_AGE`], the age below which a leftover is not removed
/// anyway). Not every append: a sweep lists the directory and looks at each temporary file in
/// it, under the log's lock, and the daemon appends a record for every launch, exit and denial.
fn sweep_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= crate::fileio::LEFTOVER_AGE)
}

/// Append `r` to the log at `path` under its lock, waiting for the lock as `wait` says (`None`:
/// however long; [`BoundedWait`]: its bound, or only trying after a wait of it ran out).
fn append_to_file(
    path: &Path,
    mut r: Record,
    swept: &Mutex<Option<Instant>>,
    wait: Option<&BoundedWait>,
    rotation: AutoRotate,
) -> Result<Record, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Taken before the log is opened: every writer opens the log under the lock, so all of
    // them append to the file at its name now.
    let _lock = match lock_log(path, wait.map(BoundedWait::this_time)) {
        Ok(l) => l,
        Err(e) => {
            if let (AuditError::LockBusy { .. }, Some(w)) = (&e, wait) {
                w.ran_out();
            }
            return Err(e);
        }
    };
    if let Some(w) = wait {
        w.took();
    }
    let mut f = open_log(path).map_err(io)?;
    crate::fileio::adopt_dir_owner(&f, path).map_err(io)?;
    // A head file's temporary that a crash left (between its create and its rename): this
    // uid's stale ones, never one in use (fileio::sweep_reserved); when one is due.
    {
        let mut last = swept.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if sweep_due(*last, now) {
            crate::fileio::sweep_reserved(&crate::fileio::parent_dir(path));
            *last = Some(now);
        }
    }
    let last = read_last(&mut f, path)?;
    check_head(path, last.as_ref(), read_head(path).map_err(io)?.as_ref())?;
    match last {
        None => {
            r.seq = 0;
            r.prev = GENESIS.into();
        }
        Some(last) => {
            r.seq = last.seq + 1;
            r.prev = last.hash;
        }
    }
    r.hash = r.compute_hash()?;
    let mut line = serde_json::to_vec(&r).map_err(AuditError::Encode)?;
    line.push(b'\n');
    // The next append reads the last record back from the file's last MAX_RECORD bytes
    // ([`read_last`]): a longer one (an `exec` of a command line of hundreds of KiB) would leave
    // it no whole record to chain to, and every later append would fail (review-138).
    if line.len() as u64 > MAX_RECORD {
        return Err(AuditError::TooLarge {
            size: line.len() as u64,
        });
    }
    // The record is written whole, with its head, or not at all. A write cut short (a full
    // file system or quota takes the bytes that fit, then ENOSPC, EDQUOT or EIO) left half a
    // record at the log's end: every later append, finding no whole record to chain to, failed,
    // and `audit verify` called the log altered. A head that cannot be replaced (no room for its
    // temporary file) left the record beyond it: the action it records was refused all the
    // same, and a second such append left the log two records past its head, which every later
    // append refused as a log cut short (`audit.truncated`). So on either failure the log is
    // cut back to its length before the record (under the lock nobody has appended since; a
    // truncation frees space, so it works on a full disk) — unless the head already names the
    // record (its rename done, only the directory's sync failed): log and head agree then.
    let before = f.metadata().map_err(io)?.len();
    let written = f.write_all(&line).and_then(|()| f.sync_all());
    let headed = written.and_then(|()| {
        write_head(
            path,
            &Head {
                schema: HEAD_SCHEMA.into(),
                records: r.seq + 1,
                last_hash: r.hash.clone(),
            },
        )
    });
    if let Err(e) = headed {
        let named = matches!(read_head(path), Ok(Some(h)) if h.last_hash == r.hash);
        if named {
            return Err(io(e));
        }
        return Err(match f.set_len(before).and_then(|()| f.sync_all()) {
            Ok(()) => io(e),
            Err(cut) => AuditError::Uncut {
                path: path.to_path_buf(),
                source: e,
                cut,
                tail: UncutTail::of(
                    before,
                    line.len() as u64,
                    f.metadata().ok().map(|m| m.len()),
                ),
            },
        });
    }
    if let Some(size) = rotation.size {
        // `[audit] rotate_size`: rotated under the lock this append holds. The record is
        // written (the action is audited), so a rotation that fails is said, not the append's
        // failure; the next append tries again.
        if f.metadata().map_err(io)?.len() >= size {
            let opts = rotate::Options {
                keep: rotation.keep,
                ..rotate::Options::default()
            };
            if let Err(e) = rotate::rotate_held(path, &mut f, opts) {
                let why = into_cmd(e).chain().join(": ");
                crate::output::print_stderr(&format!(
                    "stockade: warning: the audit log {} was not rotated (rotate_size): {}",
                    crate::output::term_path(path),
                    crate::output::term(&why)
                ));
            }
        }
    }
    // The lock goes with the descriptor.
    Ok(r)
}

/// The last record of the log open in `f` (`None`: it has none), read from its tail.
fn read_last(f: &mut std::fs::File, path: &Path) -> Result<Option<Record>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = f.metadata().map_err(io)?.len();
    let start = len.saturating_sub(MAX_RECORD);
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = String::new();
    Read::by_ref(f)
        .take(MAX_RECORD)
        .read_to_string(&mut tail)
        .map_err(io)?;
    match tail.lines().rev().find(|l| !l.trim().is_empty()) {
        None => Ok(None),
        // A record of this build's whose schema alone was changed is damage, not a newer
        // Stockade's record ([`relabelled`]).
        Some(last) if newer_schema(last).is_some() && relabelled(last) => {
            Err(AuditError::BrokenTail {
                path: path.to_path_buf(),
            })
        }
        Some(last) if newer_schema(last).is_some() => Err(AuditError::NewerFormat {
            path: path.to_path_buf(),
            schema: newer_schema(last).unwrap_or_default(),
        }),
        Some(last) => serde_json::from_str::<Record>(last)
            .ok()
            .filter(|r| known_version(&r.schema).is_some_and(|v| r.event.since() <= v))
            .map(Some)
            .ok_or_else(|| AuditError::BrokenTail {
                path: path.to_path_buf(),
            }),
    }
}

/// The schema of a record line a newer Stockade wrote (`stockade.audit/N`, N > 2), looked at
/// before the record is parsed: a newer schema may add fields this build refuses
/// (`deny_unknown_fields`), or hash them otherwise. Such a record is neither damage nor
/// tampering to report ("not a valid audit record", "the log was altered"), nor one this build
/// can check or chain to: after a downgrade, appends and `audit verify` say what it is.
fn newer_schema(line: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag {
        schema: String,
    }
    let tag: Tag = serde_json::from_str(line).ok()?;
    let n: u32 = tag.schema.strip_prefix("stockade.audit/")?.parse().ok()?;
    (n > SCHEMA_VERSION && tag.schema == format!("stockade.audit/{n}")).then_some(tag.schema)
}

/// Whether `line` is a record of a schema this build reads ([`SCHEMA`] or [`SCHEMA_V1`]),
/// looked at as [`newer_schema`] looks (the record is not judged otherwise).
fn of_this_schema(line: &str) -> bool {
    #[derive(Deserialize)]
    struct Tag {
        schema: String,
    }
    serde_json::from_str::<Tag>(line).is_ok_and(|t| known_version(&t.schema).is_some())
}

/// Whether `line`, which says a newer schema, is a record of this build's schema with that
/// field alone changed: set back to [`SCHEMA`], it is a record whose own hash checks. A newer
/// Stockade's record cannot be one — its hash covers its own schema (as this build's covers
/// `stockade.audit/1`), so it cannot be that of the same record saying another — while a
/// record relabelled to pass for a newer one (hiding an alteration behind "after a downgrade")
/// is exactly one.
fn relabelled(line: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    // Either schema this build reads: a record of this build's, or one of an earlier build's.
    [SCHEMA, SCHEMA_V1].iter().any(|schema| {
        let mut v = v.clone();
        match v.as_object_mut() {
            Some(o) => o.insert("schema".into(), (*schema).into()),
            None => return false,
        };
        serde_json::from_value::<Record>(v)
            .is_ok_and(|r| r.compute_hash().ok().as_deref() == Some(r.hash.as_str()))
    })
}

/// Whether `line` tells the log was altered after a record of a newer schema: it is of this
/// build's schema ([`of_this_schema`]: no Stockade writes one after a newer record), or a
/// record of this build's relabelled newer ([`relabelled`]).
fn of_this_build(line: &str) -> bool {
    of_this_schema(line) || (newer_schema(line).is_some() && relabelled(line))
}

/// Whether a log whose last record is `last` may be extended, given its head file: it agrees
/// with the head, or is one record ahead of it — a crash between an append and the head's
/// replacement, or between a rotation's commit and its head (the log's only record is the
/// rotation record, chained to the record the head still names: [`head_behind_by_one`]). Fewer
/// records than the head says means the log was cut short ([`AuditError::Truncated`]): a new
/// record would hide the loss.
fn check_head(path: &Path, last: Option<&Record>, head: Option<&Head>) -> Result<(), AuditError> {
    let Some(head) = head else {
        return Ok(());
    };
    let found = last.map_or(0, |l| l.seq + 1);
    let agrees = head.records == found
        && last.map_or(head.last_hash == GENESIS, |l| l.hash == head.last_hash);
    if agrees || last.is_some_and(|l| head_behind_by_one(head, l)) {
        return Ok(());
    }
    Err(AuditError::Truncated {
        path: path.to_path_buf(),
        found,
        expected: head.records,
    })
}

/// Whether `head` names the record just before `last`: in the same log (`last.seq` is the
/// head's count), or — `last` being a rotation record, the first of a new log — the last record
/// of the log it continues ([`Continues`]).
fn head_behind_by_one(head: &Head, last: &Record) -> bool {
    if last.prev != head.last_hash {
        return false;
    }
    match continues(last) {
        Some(c) => c.records == head.records,
        None => head.records + 1 == last.seq + 1,
    }
}

/// The lock file of a log: `<log>.lock`.
pub fn lock_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Take the log's lock: an exclusive `flock` of `<log>.lock`, waiting for the writer that holds
/// it. Never a lock on the log itself: `flock` needs only a descriptor, and the log is 0640 —
/// in the packaged layout every member of the `stockade` group (the agents) could open it and
/// hold its lock for ever, and every audited action of root's CLI and of the daemon's one loop
/// waited for it. The lock file is 0600 and the log directory's owner's (the daemon's user;
/// root's own directory: root's), so only that user and root — the log's only writers — can
/// open it; a writer waits at most for one append of another (a few fsyncs). How it is made,
/// checked and taken: [`crate::fileio::lock_as_dir_owner`]. One of another user, or anything
/// but a regular file of one link, is refused ([`AuditError::LockUnsafe`]: exit 78
/// `audit.unsafe`), as is a writer that is neither root nor the directory's owner (its lock
/// would be its own, which root would refuse, and it could not open the owner's).
///
/// `wait`: `None` waits for the holder however long (the CLI); `Some(d)` gives up after `d`
/// ([`AuditError::LockBusy`]): `serve`, whose one loop a holder stopped mid-append (SIGSTOP, a
/// debugger: root's CLI appends to the same log) would otherwise stall for ever.
fn lock_log(log: &Path, wait: Option<Duration>) -> Result<std::fs::File, AuditError> {
    use crate::fileio::{lock_as_dir_owner, OwnerLockError};
    let path = lock_path(log);
    lock_as_dir_owner(&path, "append to the log", wait).map_err(|e| match e {
        // The log's directory missing or unreadable: said of the log, as an open of it would.
        OwnerLockError::Dir(source) => AuditError::Io {
            path: log.to_path_buf(),
            source,
        },
        OwnerLockError::Refused(source) => AuditError::LockUnsafe { path, source },
        OwnerLockError::Io(source) => AuditError::Io { path, source },
        OwnerLockError::Busy { waited } => AuditError::LockBusy { path, waited },
    })
}

/// Open the log (created 0640, exactly, when absent) to read and append. Its directory may be
/// another user's (`/var/log/stockade` is the daemon's, and root's CLI appends to the same
/// log), so what is at the name is checked before anything is written: no symlink is followed,
/// the open does not block (`O_NONBLOCK`, cleared once the file is known to be regular: a FIFO
/// made there would hang root's command, holding the log's lock, and so every other writer's),
/// and only a regular file is taken, of one link when the writer is root or the file another
/// user's (a hard link to some other file would have root append to that file and give it to
/// the directory's owner: [`fileio::single_regular`]; a non-root writer's own file may be linked).
///
/// [`fileio::single_regular`]: crate::fileio::single_regular
fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    let open = |create: bool| {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(create)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    // A log removed between the create that found it and the open that wanted it is made
    // again; a few rounds, not forever.
    let mut rounds = 0;
    let (f, created) = loop {
        match open(true) {
            Ok(f) => break (f, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match open(false) {
            Ok(f) => break (f, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rounds < 3 => rounds += 1,
            Err(e) => return Err(e),
        }
    };
    // A hard link matters where it could make this process write to, or give away, a file it
    // would not otherwise: root's, or one of another owner. The daemon appending to its own
    // log that a backup tool hard-linked (rsnapshot-style) is not that, and must not fail
    // every audited action (74).
    let owner = std::os::unix::fs::MetadataExt::uid(&f.metadata()?);
    if links_matter(nix::unistd::geteuid().as_raw(), owner) {
        crate::fileio::single_regular(&f)?;
    } else if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "is not a regular file",
        ));
    }
    if created {
        // The umask took its bits off the 0640 given to `open`.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    }
    let flags = sys::status_flags(f.as_fd())?;
    sys::set_status_flags(f.as_fd(), flags & !libc::O_NONBLOCK)?;
    Ok(f)
}

/// Whether a second link to the log refuses it ([`open_log`]): for root, and for a file of
/// another user than the writer.
fn links_matter(euid: u32, owner: u32) -> bool {
    euid == 0 || owner != euid
}

/// The head file of `log`, if there is one.
pub fn read_head(log: &Path) -> std::io::Result<Option<Head>> {
    let p = head_path(log);
    let bytes = match crate::fileio::read_capped(&p, 4096) {
        Ok(b) => b,
        Err(crate::fileio::FileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(std::io::Error::other(e)),
    };
    serde_json::from_slice::<Head>(&bytes)
        .ok()
        .filter(|h| h.schema == HEAD_SCHEMA)
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not an audit head file", p.display()),
            )
        })
}

/// Replace the head file atomically (called under the log's lock, so one writer at a time):
/// a temporary file of a fresh name made with `O_EXCL` in the log's directory, 0640 exactly
/// and given to the directory's owner when root writes it, fsynced, renamed over the head, the
/// directory fsynced ([`crate::fileio::write_state_file`]). The temporary name used to be
/// fixed (`<log>.head.tmp`) and opened `O_CREAT|O_TRUNC` without `O_EXCL`: the directory's
/// owner could put a FIFO there (root's command hung holding the log's lock) or a hard link to
/// another file (root truncated it and gave it away). The rename replaces whatever is at the
/// head's name without opening it, and must survive a crash, or the head could fall more than
/// one record behind the log (which a later append would take for truncation).
fn write_head(log: &Path, h: &Head) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(h).map_err(std::io::Error::other)?;
    crate::fileio::write_state_file(&head_path(log), &bytes, 0o640).map_err(|e| match e {
        crate::fileio::FileError::Write { source, .. } => source,
        e => std::io::Error::other(e),
    })
}

/// Where and how a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum ChainError {
    /// The record is of a newer schema: written by a newer Stockade, which checks it.
    #[error("record {record} (line {line}) has schema `{schema}`, written by a newer Stockade; this one checks `{SCHEMA}`")]
    NewerFormat {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
        /// Its schema.
        schema: String,
    },
    /// The record says a newer schema, but it or a record after it (in this file or a later
    /// one) is of this build's: one of `stockade.audit/1` after it — no Stockade writes that:
    /// this build never appends after a newer record ([`ChainError::NewerFormat`] is for a
    /// newer Stockade's tail alone), earlier ones refused to, and a newer one writes its own
    /// schema —, or one of this build's with its schema alone changed ([`relabelled`]). An
    /// alteration, not a newer log (which would leave every record after it unchecked).
    #[error("record {record} (line {line}) says schema `{schema}`, of a newer Stockade, but it or a record after it is one of this build's `{SCHEMA}` (its schema changed, or written after it), which no Stockade writes: the log was altered")]
    NewerAmidOlder {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
        /// The schema it says.
        schema: String,
    },
    /// The record is of `stockade.audit/1` but comes after one of `stockade.audit/2` (in its
    /// file or an earlier one given): no Stockade writes that — this build writes `/2` only,
    /// and an earlier one refuses to append after a `/2` record (`audit.newer_format`) — so a
    /// record was relabelled, or one of an earlier build's moved after this build's.
    #[error("record {record} (line {line}) has schema `{schema}` after a record of `{SCHEMA}`, which no Stockade writes: the log was altered")]
    OlderAfterNewer {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
        /// Its schema.
        schema: String,
    },
    /// The line is not a record.
    #[error("record {record} (line {line}) is not a valid audit record")]
    Malformed {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
    },
    /// The record's hash does not match its content: it was edited.
    #[error("record {record} (line {line}) was edited: its hash does not match its content")]
    Edited {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
    },
    /// `prev` or `seq` does not follow the previous record: one was deleted or reordered.
    #[error("record {record} (line {line}) does not follow the previous one (seq {seq}, expected {expected}): a record before it was deleted or the records were reordered")]
    Broken {
        /// 1-based record number.
        record: usize,
        /// 1-based line.
        line: usize,
        /// Its seq.
        seq: u64,
        /// The expected seq.
        expected: u64,
    },
    /// The log ends before the last record its head file names: records were cut off the end.
    #[error("the log was truncated: it holds {records} record(s) but its head file says {expected}; records seq {first_missing_seq}..={last_missing_seq} are missing")]
    Truncated {
        /// Records in the log.
        records: usize,
        /// Records the head says were written.
        expected: u64,
        /// The first missing record's seq.
        first_missing_seq: u64,
        /// The last missing record's seq.
        last_missing_seq: u64,
    },
    /// The record the head file names has another hash: the log was rewritten from there on.
    #[error("record {record} does not have the hash the head file names: the log was rewritten at or before it")]
    HeadMismatch {
        /// 1-based record number the head names.
        record: u64,
    },
    /// The log has more than one record after the one the head names: the head is stale or
    /// records were appended without it.
    #[error("the log holds {records} record(s) but its head file says {head}: records were appended without updating the head, or an older head file was put back")]
    HeadBehind {
        /// Records in the log.
        records: usize,
        /// Records the head says.
        head: u64,
    },
    /// Of several files checked as one chain ([`verify_files`]): this one does not begin with a
    /// rotation record naming the file before it — its record count and last hash — so a file
    /// between them is missing, that one was cut short or rewritten, or the files are out of
    /// order.
    #[error("it does not continue {previous} ({records} record(s)): {}", match continues {
        Some(c) => format!("its rotation record names a log of {} record(s) ending in {}", c.records, c.last_hash),
        None => "its first record is not a rotation record".to_string(),
    })]
    Discontinuous {
        /// The file before it.
        previous: String,
        /// The records that file holds.
        records: usize,
        /// What this file's first record says it continues.
        continues: Option<Continues>,
    },
}

/// Check a whole log; the number of records on success.
pub fn verify_chain(text: &str) -> Result<usize, ChainError> {
    chain_hashes(text).map(|h| h.len())
}

/// Check a whole log against its head file (`None`: there is none); the number of records, and
/// whether the head lagged one record behind (a crash between the append and the head's
/// replacement: the record is there and chained, so nothing is missing).
pub fn verify_with_head(text: &str, head: Option<&Head>) -> Result<(usize, bool), ChainError> {
    let chain = check_chain(text)?;
    let behind = against_head(&chain, head)?;
    Ok((chain.hashes.len(), behind))
}

/// Check a checked chain against its log's head file ([`verify_with_head`]): whether the head
/// lagged one record behind.
fn against_head(chain: &Chain, head: Option<&Head>) -> Result<bool, ChainError> {
    let hashes = &chain.hashes;
    head_check(
        hashes.len(),
        chain.continues.as_ref(),
        |k| {
            usize::try_from(k)
                .ok()
                .and_then(|i| hashes.get(i))
                .map(String::as_str)
        },
        head,
    )
}

/// [`against_head`] for a log of `n` records continuing `continues`, `hash_of(i)` the hash of
/// record `i` (from 0) if known: only the record the head names is ever asked for, so a
/// streamed check keeps that one hash ([`ChainCheck::watching`]), not the log's every hash.
fn head_check<'a>(
    n: usize,
    continues: Option<&Continues>,
    hash_of: impl Fn(u64) -> Option<&'a str>,
    head: Option<&Head>,
) -> Result<bool, ChainError> {
    let Some(h) = head else {
        return Ok(false);
    };
    // A rotation killed between its commit and the head's replacement: the new log's only
    // record continues the record the head still names (the next append heals it).
    if n == 1 && continues.is_some_and(|c| c.records == h.records && c.last_hash == h.last_hash) {
        return Ok(true);
    }
    let hash_at = |records: u64| -> &str {
        match records {
            0 => GENESIS,
            k => hash_of(k - 1).unwrap_or(""),
        }
    };
    let n64 = n as u64;
    if h.records > n64 {
        return Err(ChainError::Truncated {
            records: n,
            expected: h.records,
            first_missing_seq: n64,
            last_missing_seq: h.records - 1,
        });
    }
    if hash_at(h.records) != h.last_hash {
        return Err(ChainError::HeadMismatch { record: h.records });
    }
    match n64 - h.records {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ChainError::HeadBehind {
            records: n,
            head: h.records,
        }),
    }
}

/// A log's records as `audit verify` checked them: each one's hash, and what its first record
/// says it continues when that is a rotation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Every record's hash, in order.
    pub hashes: Vec<String>,
    /// The log this one continues (its first record is a rotation record), or `None` (it
    /// starts at [`GENESIS`]).
    pub continues: Option<Continues>,
    /// The highest schema version among its records (0: none), for the file after it
    /// ([`ChainError::OlderAfterNewer`]).
    pub schema_version: u32,
}

impl Chain {
    /// The last record's hash (the one a rotation record continuing this log chains to).
    pub fn last_hash(&self) -> &str {
        self.hashes.last().map_or(GENESIS, String::as_str)
    }
}

/// Check a whole log's chain: every record's hash, `seq` and `prev`. Its first record chains to
/// [`GENESIS`], or is a rotation record whose `prev` is the hash it names as the last of the log
/// it continues ([`continues`]: a rotated log's new file verifies alone; that the file before it
/// is the one it names is [`verify_files`]' to check).
pub fn check_chain(text: &str) -> Result<Chain, ChainError> {
    check_chain_after(text, 0)
}

/// [`check_chain`] of a file given after files whose records reach schema version `after`.
fn check_chain_after(text: &str, after: u32) -> Result<Chain, ChainError> {
    let mut check = ChainCheck::default().after(after);
    let mut hashes = Vec::new();
    for line in text.lines() {
        if let Some(hash) = check.line(line)? {
            hashes.push(hash.to_string());
        }
    }
    let summary = check.finish()?;
    Ok(Chain {
        hashes,
        continues: summary.continues,
        schema_version: summary.schema_version,
    })
}

/// A log's chain checked one line at a time: [`check_chain`]'s rules, holding one line and a
/// few hashes, so that `audit verify` reads a log of any size in bounded memory (it read each
/// file whole, and kept every record's hash: a 537 MB log took 635 MB, and one larger than
/// the memory it may have could not be verified at all).
#[derive(Debug, Clone)]
pub struct ChainCheck {
    prev: String,
    continues: Option<Continues>,
    records: usize,
    lines: usize,
    watch: Option<u64>,
    watched: Option<String>,
    before_last: Option<String>,
    /// The first record of a newer schema met (its record number, line and schema): the rest
    /// is only looked at for a record of this build's ([`of_this_build`]), which makes it an
    /// alteration; none, and the log is a newer Stockade's ([`ChainCheck::finish`]).
    newer: Option<(usize, usize, String)>,
    /// The highest schema version met so far (0: none): a record of a lower one after it is
    /// an alteration ([`ChainError::OlderAfterNewer`]).
    schema_version: u32,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self::watching(None)
    }
}

impl ChainCheck {
    /// A check that also keeps the hash of record `index` (from 0; `None`: none) — the one a
    /// head file names, for [`ChainSummary::against_head`].
    pub fn watching(index: Option<u64>) -> Self {
        Self {
            prev: GENESIS.to_string(),
            continues: None,
            records: 0,
            lines: 0,
            watch: index,
            watched: None,
            before_last: None,
            newer: None,
            schema_version: 0,
        }
    }

    /// The check of a file given after files whose records reach schema version `version`
    /// (a rotated log's later file: its records may not go back to an earlier schema).
    pub fn after(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// The log's next line (without its line end): the record's hash, or `None` for a blank
    /// line (skipped, but counted for the line numbers errors give).
    pub fn line(&mut self, line: &str) -> Result<Option<&str>, ChainError> {
        self.lines += 1;
        if line.trim().is_empty() {
            return Ok(None);
        }
        if let Some((record, line_no, schema)) = &self.newer {
            // After a newer record: a newer Stockade's tail, unless one of this build's follows.
            if of_this_build(line) {
                return Err(ChainError::NewerAmidOlder {
                    record: *record,
                    line: *line_no,
                    schema: schema.clone(),
                });
            }
            return Ok(None);
        }
        let (record, at) = (self.records + 1, self.lines);
        if let Some(schema) = newer_schema(line) {
            // A newer Stockade's tail, or a record of this build's relabelled amid them: which
            // one is told by what follows (or by this record itself, `relabelled`).
            if relabelled(line) {
                return Err(ChainError::NewerAmidOlder {
                    record,
                    line: at,
                    schema,
                });
            }
            self.newer = Some((record, at, schema));
            return Ok(None);
        }
        let r: Record =
            serde_json::from_str(line).map_err(|_| ChainError::Malformed { record, line: at })?;
        // A schema this build reads, and an event that schema has.
        let version = match known_version(&r.schema) {
            Some(v) if r.event.since() <= v => v,
            _ => return Err(ChainError::Malformed { record, line: at }),
        };
        if r.compute_hash().ok().as_deref() != Some(r.hash.as_str()) {
            return Err(ChainError::Edited { record, line: at });
        }
        if self.records == 0 {
            if let Some(c) = continues(&r) {
                self.prev.clone_from(&c.last_hash);
                self.continues = Some(c);
            }
        }
        if version < self.schema_version {
            return Err(ChainError::OlderAfterNewer {
                record,
                line: at,
                schema: r.schema,
            });
        }
        self.schema_version = version;
        if r.prev != self.prev || r.seq != self.records as u64 {
            return Err(ChainError::Broken {
                record,
                line: at,
                seq: r.seq,
                expected: self.records as u64,
            });
        }
        if self.watch == Some(self.records as u64) {
            self.watched = Some(r.hash.clone());
        }
        let before = std::mem::replace(&mut self.prev, r.hash);
        if self.records > 0 {
            self.before_last = Some(before);
        }
        self.records += 1;
        Ok(Some(&self.prev))
    }

    /// What the lines fed so far hold; [`ChainError::NewerFormat`] if they end in a newer
    /// Stockade's records (nothing of this build's after the first of them).
    pub fn finish(self) -> Result<ChainSummary, ChainError> {
        if let Some((record, line, schema)) = self.newer {
            return Err(ChainError::NewerFormat {
                record,
                line,
                schema,
            });
        }
        let last_hash = if self.records == 0 {
            GENESIS.to_string()
        } else {
            self.prev
        };
        Ok(ChainSummary {
            records: self.records,
            last_hash,
            continues: self.continues,
            watched: self.watch.zip(self.watched),
            before_last: self.before_last,
            schema_version: self.schema_version,
        })
    }
}

/// A log checked by [`ChainCheck`]: what `audit verify` says of it and needs for the file after
/// it and for the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// How many records it holds.
    pub records: usize,
    /// Its last record's hash ([`GENESIS`] when it holds none).
    pub last_hash: String,
    /// What its first record says it continues ([`Chain::continues`]).
    pub continues: Option<Continues>,
    watched: Option<(u64, String)>,
    /// The hash of the record before the last one, if it holds two: with the last one's, what
    /// a head read after the log ([`verify_streams`]) may name without being an error.
    before_last: Option<String>,
    /// The highest schema version among its records (0: none), for the file after it.
    pub schema_version: u32,
}

impl ChainSummary {
    /// [`verify_with_head`]'s head check: whether the head lagged one record behind. The
    /// check knows the hashes of the last two records and of the one it watched
    /// ([`ChainCheck::watching`]); a head naming any other record is refused all the same (it
    /// is more than one behind), only perhaps as `HeadMismatch` rather than `HeadBehind` when
    /// the record it names was not the one watched (a head replaced while the log was read).
    pub fn against_head(&self, head: Option<&Head>) -> Result<bool, ChainError> {
        let n = self.records as u64;
        head_check(
            self.records,
            self.continues.as_ref(),
            |i| match &self.watched {
                _ if i + 1 == n => Some(self.last_hash.as_str()),
                _ if i + 2 == n => self.before_last.as_deref(),
                Some((w, h)) if *w == i => Some(h.as_str()),
                _ => None,
            },
            head,
        )
    }
}

/// Why [`verify_streams`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A file breaks the chain ([`verify_files`]' errors).
    #[error(transparent)]
    Chain(FilesError),
    /// A file could not be read (or is not UTF-8 text).
    #[error("cannot read {file}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Feed `f` each line of `reader` as `str::lines` splits text (`\n` or `\r\n` ends a line; a last
/// line without one counts), one line held at a time. A read error, or a line that is not
/// UTF-8, is `read`'s error.
fn each_line<R: std::io::BufRead>(
    mut reader: R,
    read: impl Fn(std::io::Error) -> StreamError,
    mut f: impl FnMut(&str) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(&read)? == 0 {
            return Ok(());
        }
        // `str::lines`' line ends: `\n`, or `\r\n`.
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        f(line)?;
    }
}

/// [`verify_files`], each file read line by line from `open(i)` (opened in turn, one at a
/// time) instead of held whole: its summary, and whether the head lagged one behind the last
/// file. `names`: each file's name, oldest first, the log last.
///
/// The head is checked as given, read before the log. `audit verify` reads the log first and
/// the head after it ([`stream_files`], then [`ChainSummary::against_head`]), as the
/// whole-text verify did: a head read before a log that is appended to while it is read is
/// behind by as many records as were appended meanwhile.
pub fn verify_streams<R: std::io::BufRead>(
    names: &[String],
    head: Option<&Head>,
    open: impl FnMut(usize) -> std::io::Result<R>,
) -> Result<(Vec<ChainSummary>, bool), StreamError> {
    let done = stream_files(names, head, open)?;
    let Some((name, last)) = names.last().zip(done.last()) else {
        return Ok((done, false));
    };
    let behind = last.against_head(head).map_err(|source| {
        StreamError::Chain(FilesError {
            file: name.clone(),
            source,
        })
    })?;
    Ok((done, behind))
}

/// [`verify_streams`] without the head check: each file's chain and each file after the
/// first continuing the one before; the last one's summary watching the record `watch`
/// names (a head read before: the one it most likely names when read again after).
pub fn stream_files<R: std::io::BufRead>(
    names: &[String],
    watch: Option<&Head>,
    mut open: impl FnMut(usize) -> std::io::Result<R>,
) -> Result<Vec<ChainSummary>, StreamError> {
    let mut done: Vec<ChainSummary> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let read = |source| StreamError::Read {
            file: name.clone(),
            source,
        };
        let at = |source| {
            StreamError::Chain(FilesError {
                file: name.clone(),
                source,
            })
        };
        let watch = watch
            .filter(|_| last)
            .and_then(|h| h.records.checked_sub(1));
        let after = done.last().map_or(0, |d| d.schema_version);
        let mut check = ChainCheck::watching(watch).after(after);
        each_line(open(i).map_err(read)?, read, |line| {
            check.line(line).map(|_| ()).map_err(at)
        })?;
        let summary = match check.finish() {
            // A newer record ending this file is a newer Stockade's tail only if no later file
            // holds a record of this build's (as within a file: `ChainCheck::line`).
            Err(ChainError::NewerFormat {
                record,
                line,
                schema,
            }) => {
                let mut amid = false;
                for (j, later) in names.iter().enumerate().skip(i + 1) {
                    let read_later = |source| StreamError::Read {
                        file: later.clone(),
                        source,
                    };
                    each_line(open(j).map_err(read_later)?, read_later, |l| {
                        amid |= of_this_build(l);
                        Ok(())
                    })?;
                }
                let e = if amid {
                    ChainError::NewerAmidOlder {
                        record,
                        line,
                        schema,
                    }
                } else {
                    ChainError::NewerFormat {
                        record,
                        line,
                        schema,
                    }
                };
                return Err(at(e));
            }
            other => other.map_err(at)?,
        };
        if let Some(before) = done.last() {
            let follows = summary.continues.as_ref().is_some_and(|c| {
                c.records == before.records as u64 && c.last_hash == before.last_hash
            });
            if !follows {
                return Err(at(ChainError::Discontinuous {
                    previous: names[i - 1].clone(),
                    records: before.records,
                    continues: summary.continues.clone(),
                }));
            }
        }
        done.push(summary);
    }
    Ok(done)
}

fn chain_hashes(text: &str) -> Result<Vec<String>, ChainError> {
    check_chain(text).map(|c| c.hashes)
}

/// What a rotation record says of the log its file continues (its `detail.previous`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continues {
    /// The name (in the same directory) the previous log was renamed to; `None` after a loss
    /// (`audit rotate --after-loss`): the records the head counted are wherever the one who
    /// moved them put them.
    pub file: Option<String>,
    /// How many records the previous log holds (its head's count, after a loss).
    pub records: u64,
    /// Its last record's hash: the rotation record's `prev`.
    pub last_hash: String,
}

/// What `r` says it continues: only the first record of a log (`seq` 0) that is a rotation
/// record whose `detail.previous` parses and names its own `prev` as the last hash.
pub fn continues(r: &Record) -> Option<Continues> {
    if r.event != Event::Rotation || r.seq != 0 {
        return None;
    }
    let c: Continues = serde_json::from_value(r.detail.get("previous")?.clone()).ok()?;
    (c.last_hash == r.prev && c.last_hash != GENESIS).then_some(c)
}

/// Check several logs given oldest first — rotated files, then the log (the head, when given, is
/// the last one's) — as one chain: each one's own chain ([`check_chain`]), and each file after
/// the first beginning with a rotation record that names the one before it by its record count
/// and last hash ([`ChainError::Discontinuous`] otherwise: a file missing, cut short, rewritten,
/// or given out of order). `files`: each file's name (for the error) and text. The records of
/// each file, and whether the head lagged one behind the last file.
pub fn verify_files(
    files: &[(String, String)],
    head: Option<&Head>,
) -> Result<(Vec<Chain>, bool), FilesError> {
    let mut chains: Vec<Chain> = Vec::with_capacity(files.len());
    let mut behind = false;
    for (i, (name, text)) in files.iter().enumerate() {
        let at = |source| FilesError {
            file: name.clone(),
            source,
        };
        // A newer record ending this file is a newer Stockade's tail only if no later file
        // holds a record of this build's schema (as within a file, [`check_chain`]).
        let after = chains.last().map_or(0, |c: &Chain| c.schema_version);
        let chain = check_chain_after(text, after)
            .map_err(|e| match e {
                ChainError::NewerFormat {
                    record,
                    line,
                    schema,
                } if files[i + 1..]
                    .iter()
                    .any(|(_, t)| t.lines().any(of_this_build)) =>
                {
                    ChainError::NewerAmidOlder {
                        record,
                        line,
                        schema,
                    }
                }
                e => e,
            })
            .map_err(at)?;
        if let Some(before) = i.checked_sub(1).and_then(|j| chains.get(j)) {
            let follows = chain.continues.as_ref().is_some_and(|c| {
                c.records == before.hashes.len() as u64 && c.last_hash == before.last_hash()
            });
            if !follows {
                return Err(at(ChainError::Discontinuous {
                    previous: files[i - 1].0.clone(),
                    records: before.hashes.len(),
                    continues: chain.continues.clone(),
                }));
            }
        }
        if i + 1 == files.len() {
            behind = against_head(&chain, head).map_err(at)?;
        }
        chains.push(chain);
    }
    Ok((chains, behind))
}

/// A [`ChainError`] in one of several files ([`verify_files`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("in {file}")]
pub struct FilesError {
    /// The file.
    pub file: String,
    /// What is wrong there.
    #[source]
    pub source: ChainError,
}

/// A record about a verified package: name, version, digest and signer chain from the report,
/// and in `detail` how it was trusted (`signature_status`, `trust_mode`, and the `warnings` a
/// trust mode below strict let pass): every command that verifies records the same, so an
/// auditor sees a package admitted in `warn` mode whichever command admitted it.
pub fn for_report(event: Event, outcome: &str, r: &crate::package::report::Report) -> Record {
    let mut rec = Record::new(event, outcome);
    rec.detail =
        serde_json::json!({"signature_status": r.signature_status, "trust_mode": r.trust_mode});
    if !r.warnings.is_empty() {
        rec.detail["warnings"] = serde_json::json!(r.warnings);
    }
    rec.plugin = Some(r.name.clone());
    rec.version = Some(r.version.clone());
    rec.package_sha256 = Some(r.package_sha256.clone());
    let mut chain: Vec<String> = r.signer_key_id.iter().cloned().collect();
    for c in &r.chain {
        for k in [&c.key_id, &c.issuer_key_id] {
            if !chain.contains(k) {
                chain.push(k.clone());
            }
        }
    }
    // Only a signer the signature and the chain proved is the record's `signer_chain`: a
    // package a trust mode below strict let through with an invalid signature or an untrusted
    // chain (or none checked, `disabled`) only names its key ids, which anyone can write. Every
    // record built from this one (launch, grant, termination …) said that developer ran it;
    // the ids it claims stay in `detail.claimed_signer_chain`, beside its `signature_status`.
    if signer_proven(r.signature_status) {
        rec.signer_chain = chain;
    } else {
        rec.detail["claimed_signer_chain"] = serde_json::json!(chain);
    }
    rec
}

/// Whether a package's signer key and its certificate chain were proven (steps 2 and 3 passed):
/// every status but `invalid`, `untrusted` and `skipped` (validity, revocation and scope come
/// after them).
pub fn signer_proven(s: crate::package::report::SignatureStatus) -> bool {
    use crate::package::report::SignatureStatus as S;
    !matches!(s, S::Invalid | S::Untrusted | S::Skipped)
}

/// A launch or restart record's `detail` (built on `base`, a [`for_report`] record) keeps
/// `signature_status` whenever it is not `verified`: a trust mode below strict that let a
/// revoked, expired or out-of-scope key through keeps its proven `signer_chain` in the
/// record, and a revoked key may be a stolen one — the record must say so, not only the
/// verification record before it (review-138 L1).
pub fn keep_signature_status(base: &Record, detail: &mut serde_json::Map<String, Value>) {
    match base.detail.get("signature_status") {
        Some(s) if s != "verified" => {
            detail.insert("signature_status".into(), s.clone());
        }
        _ => {}
    }
}

/// SHA-256 of an effective policy's explanation (what `policy explain --json` prints as items).
pub fn policy_hash(e: &stockade_policy::operator::explain::Explanation) -> String {
    let bytes = serde_json::to_vec(&e.items).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Append, turning a failure into the command's error (exit 74: no unaudited action; 78
/// `audit.unsafe` for an unusable lock; 75 `audit.busy` when a bounded wait ran out,
/// [`AuditLog::waiting_at_most`]). The
/// record is stamped with the time it is written: records are built from fields a launch
/// computed once (its `base`), and a termination hours later must not carry the launch's time.
pub fn append_or_fail(log: &AuditLog, mut r: Record) -> Result<(), crate::error::CmdError> {
    if !log.enabled() {
        return Ok(());
    }
    r.time = crate::keyfile::unix_now();
    log.append(r).map(|_| ()).map_err(into_cmd)
}

/// What to do about a log a newer Stockade wrote ([`AuditError::NewerFormat`],
/// [`ChainError::NewerFormat`]).
pub const NEWER_FORMAT_HINT: &str = "the log was written by a newer Stockade (a downgrade): \
    use the version that wrote it, which appends to and checks it; to go on with this one, move \
    the log and its .head file aside together (kept whole, the newer version verifies them) so it \
    starts a new log; nothing was written";

/// The command error for an audit log that cannot be written (or rotated): its kind, exit code
/// and what to do (docs/exit-codes.md).
pub fn into_cmd(e: AuditError) -> crate::error::CmdError {
    use crate::error::CmdError;
    use crate::exit::Exit;
    match &e {
        AuditError::LockUnsafe { path, source } => {
            // Only what applies: a writer refused for who it is (the lock file may not even
            // exist) is not told to remove it, which would change nothing.
            let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                "only the log directory's owner and root append to the log: run this as one \
                 of them, or name a log in a directory of this user's (`[audit] file`)"
                    .to_string()
            } else {
                format!(
                    "only the log directory's owner and root append to the log, under a lock \
                     file of that owner's: remove {} (the next append makes it again, 0600, \
                     that owner's)",
                    path.display()
                )
            };
            return CmdError::new(Exit::Config, "audit.unsafe", e).hint(hint);
        }
        AuditError::Truncated { path, .. } => {
            let hint = format!(
                "a log rotated by something else than `stockade audit rotate` (logrotate's \
                 rename or copytruncate): keep the rotated file and run `stockade audit rotate \
                 --after-loss {}`, which starts a new log whose first record records the loss and \
                 chains to the last record the head names (docs/audit.md, \"Rotation\"); \
                 otherwise the log was cut short: `stockade audit verify` names the missing \
                 records",
                path.display()
            );
            return CmdError::new(Exit::IoErr, "audit.truncated", e).hint(hint);
        }
        AuditError::NewerFormat { .. } => {
            return CmdError::new(Exit::Config, "audit.newer_format", e).hint(NEWER_FORMAT_HINT);
        }
        AuditError::NotTruncated { .. } => {
            return CmdError::new(Exit::Usage, "audit.not_truncated", e).hint(
                "--after-loss is for a log shorter than its head file (rotated by something \
                 else); rotate this one without it",
            );
        }
        _ => {}
    }
    let busy = match &e {
        AuditError::LockBusy { path, .. } => Some(format!(
            "another writer of the log (root's `stockade` command, another daemon) held its \
             lock past this daemon's wait; retry; if it stays held, find its holder \
             (`fuser -v {}`) and let it finish or end it",
            path.display()
        )),
        AuditError::JournalBusy { .. } => Some(
            "the journal is not taking records (stopped or overloaded: `systemctl status \
             systemd-journald`); retry"
                .to_string(),
        ),
        AuditError::StderrBusy { .. } => Some(
            "whoever reads the daemon's stderr stopped reading it (the `stderr` audit sink \
             writes there when there is no journal socket): make it read again, or give the \
             [audit] section a `file` or the journal; retry"
                .to_string(),
        ),
        _ => None,
    };
    if let Some(hint) = busy {
        return CmdError::new(Exit::TempFail, "audit.busy", e).hint(hint);
    }
    if let AuditError::TooLarge { .. } = &e {
        return CmdError::new(Exit::IoErr, "audit", e).hint(
            "a record that long cannot be chained to; nothing was written or run: shorten what \
             it records (an `exec` command line of hundreds of KiB: pass the data in a file)",
        );
    }
    if let AuditError::Stderr(_) = &e {
        return CmdError::new(Exit::IoErr, "audit", e).hint(
            "the `stderr` audit sink writes to stderr when there is no journal socket: give \
             the command a stderr that takes what is written (not a closed pipe or a full \
             disk), or give the [audit] section a `file` or the journal",
        );
    }
    let hint = storage_hint(&e).unwrap_or(
        "fix the [audit] sinks in the policy (a file's directory must exist and be writable; \
         `journal` needs the journal socket)",
    );
    CmdError::new(Exit::IoErr, "audit", e).hint(hint)
}

/// The hint for a log write refused for want of room, its errno deciding: a full file system
/// (`ENOSPC`), an exhausted quota (`EDQUOT`) or a file-size limit (`EFBIG`) is not cured by
/// fixing the `[audit]` sinks, which is all the hint said before (audit-166 L4, review-169 L4).
/// `None`: any other cause, or an error that is no write of the log's.
fn storage_hint(e: &AuditError) -> Option<&'static str> {
    let (AuditError::Io { source, .. } | AuditError::Uncut { source, .. }) = e else {
        return None;
    };
    match source.raw_os_error()? {
        libc::ENOSPC => Some(
            "the audit log's file system is full (of bytes or of inodes): free space there, or \
             name a log on another file system (`[audit] file`)",
        ),
        libc::EDQUOT => Some(
            "the disk quota on the audit log's file system is used up (the log directory's \
             owner's, or its group's or project's): raise the quota or free space within it",
        ),
        libc::EFBIG => Some(
            "the audit log reached the runtime's file-size limit (its unit's `LimitFSIZE=`, a \
             shell's `ulimit -f`) or the file system's largest file: raise or remove the limit \
             for stockade, or rotate the log below it (`stockade audit rotate`, `[audit] \
             rotate_size`)",
        ),
        _ => None,
    }
}

/// What a launch or restart record's `detail` says of how the sandbox was built, beside its
/// `layers`: `mode` (`root`, `capabilities` or `rootless`) and `degraded`, each layer below full
/// strength the policy let through with its `reason` and `not_applied` (the limits or rules
/// missing), as the agent's `ready` `plugin_state` has it. `layers` alone said
/// `cgroup:partially_enforced` without which limit was missing, and nothing said the mode, so
/// the log could not tell an auditor what a degraded launch ran without.
pub fn launch_build(
    r: &crate::sandbox::report::Report,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("mode".into(), r.mode.clone().into());
    m.insert("degraded".into(), r.degraded().into());
    m
}

/// The layers a launch report says were enforced (fully or partially), as `layer:status`.
pub fn enforced_layers(r: &crate::sandbox::report::Report) -> Vec<String> {
    r.layers
        .iter()
        .map(|l| {
            let status = crate::output::enum_str(&l.status);
            format!("{}:{status}", l.layer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of docs/audit.md's tables is one line: a line that follows a row without
    /// starting with `|` is rendered as a row of its own, its text in the first column (the
    /// record-field table's `policy_sha256` row was split so by helper-152's edit, its tail
    /// shown as a field of its own; review-156).
    #[test]
    fn the_audit_docs_table_rows_are_one_line_each() {
        let doc = include_str!("../../docs/audit.md");
        let (mut in_table, mut fenced) = (false, false);
        let mut split = vec![];
        for (n, line) in doc.lines().enumerate() {
            if line.starts_with("```") {
                fenced = !fenced;
                in_table = false;
            } else if !fenced && line.starts_with('|') {
                in_table = true;
            } else {
                if !fenced && in_table && !line.trim().is_empty() {
                    split.push(format!("docs/audit.md:{}: {line}", n + 1));
                }
                in_table = false;
            }
        }
        assert!(
            split.is_empty(),
            "table rows continued on a line of their own: {split:#?}"
        );
    }

    /// Root never writes through a second link (it could be to a file of root's); a user's
    /// own log hard-linked by a backup tool is still written by that user (the daemon).
    #[test]
    fn a_second_link_matters_for_root_and_for_another_users_file_only() {
        assert!(links_matter(0, 0));
        assert!(links_matter(0, 995));
        assert!(links_matter(995, 0));
        assert!(links_matter(995, 996));
        assert!(!links_matter(995, 995));
    }

    /// review-147: a record made from a plugin's base keeps a `signature_status` other than
    /// `verified` when its detail is replaced — never a `verified` one, and never over one
    /// its own detail names.
    #[test]
    fn a_records_own_detail_keeps_what_its_base_said_of_the_signature() {
        let base = |status: &str| {
            let mut r = Record::new(Event::Launch, "");
            r.detail = serde_json::json!({"signature_status": status, "trust_mode": "warn"});
            r
        };
        let mut r = base("revoked");
        r.set_detail(serde_json::json!({"request": "plugin_unload"}));
        assert_eq!(
            r.detail,
            serde_json::json!({"request": "plugin_unload", "signature_status": "revoked"})
        );
        let mut r = base("verified");
        r.set_detail(serde_json::json!({"request": "plugin_unload"}));
        assert_eq!(r.detail, serde_json::json!({"request": "plugin_unload"}));
        let mut r = base("expired");
        r.set_detail(serde_json::json!({"signature_status": "out_of_scope"}));
        assert_eq!(r.detail["signature_status"], "out_of_scope");
        let mut r = Record::new(Event::Install, "refused");
        r.set_detail(serde_json::json!({"kind": "k"}));
        assert_eq!(r.detail, serde_json::json!({"kind": "k"}));
    }

    /// A chain of records of the given schemas and events, as their writers would make it.
    fn chain_of(records: &[(&str, Event)]) -> String {
        let mut prev = GENESIS.to_string();
        let mut text = String::new();
        for (seq, (schema, event)) in records.iter().enumerate() {
            let mut r = Record::new(*event, "ok");
            r.schema = (*schema).to_string();
            r.seq = seq as u64;
            r.prev = prev;
            r.hash = r.compute_hash().unwrap();
            prev = r.hash.clone();
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        text
    }

    /// This build writes `stockade.audit/2` and reads `/1` before it (a log an earlier build
    /// began); a `/1` record after a `/2` one is written by no Stockade (an alteration), a `/1`
    /// record of an event `/1` does not have is not a record, and `/3` is a newer Stockade's.
    #[test]
    fn schema_2_is_written_and_1_read_only_before_it() {
        assert_eq!(Record::new(Event::Launch, "ok").schema, "stockade.audit/2");
        let (v1, v2) = (SCHEMA_V1, SCHEMA);
        let ok = chain_of(&[
            (v1, Event::Launch),
            (v1, Event::Termination),
            (v2, Event::Configuration),
            (v2, Event::Bypass),
            (v2, Event::Launch),
        ]);
        assert_eq!(check_chain(&ok).unwrap().hashes.len(), 5);
        let down = chain_of(&[
            (v1, Event::Launch),
            (v2, Event::Launch),
            (v1, Event::Launch),
        ]);
        assert!(
            matches!(
                check_chain(&down),
                Err(ChainError::OlderAfterNewer { record: 3, .. })
            ),
            "{:?}",
            check_chain(&down)
        );
        let unknown = chain_of(&[(v1, Event::Launch), (v1, Event::Configuration)]);
        assert_eq!(
            check_chain(&unknown).unwrap_err(),
            ChainError::Malformed { record: 2, line: 2 }
        );
        let newer = chain_of(&[(v2, Event::Launch), ("stockade.audit/3", Event::Launch)]);
        assert!(matches!(
            check_chain(&newer),
            Err(ChainError::NewerFormat { record: 2, .. })
        ));
        // Across files: a later file going back to `/1` after an earlier file's `/2`.
        let files = [("a".to_string(), chain_of(&[(v2, Event::Launch)]))];
        let (chains, _) = verify_files(&files, None).unwrap();
        assert_eq!(chains[0].schema_version, 2);
        let later = chain_of(&[(v1, Event::Launch)]);
        assert!(matches!(
            check_chain_after(&later, 2),
            Err(ChainError::OlderAfterNewer { record: 1, .. })
        ));
        let mut streamed = ChainCheck::default().after(2);
        assert!(matches!(
            streamed.line(later.trim_end()),
            Err(ChainError::OlderAfterNewer { .. })
        ));
        // An append after a `/1` log's last record chains to it, in `/2`.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        std::fs::write(&p, chain_of(&[(v1, Event::Launch)])).unwrap();
        file_log(&p)
            .append(Record::new(Event::Launch, "ok"))
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(check_chain(&text).unwrap().schema_version, 2);
        // A log ending in a `/1` record naming a `/2` event is damaged, not appended to.
        std::fs::write(&p, &unknown).unwrap();
        assert!(matches!(
            file_log(&p).append(Record::new(Event::Launch, "ok")),
            Err(AuditError::BrokenTail { .. })
        ));
    }

    fn file_log(p: &Path) -> AuditLog {
        AuditLog {
            file: Some(p.to_path_buf()),
            ..AuditLog::default()
        }
    }

    fn log(n: usize) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        let l = file_log(&p);
        for i in 0..n {
            let mut r = Record::new(Event::Launch, "ok");
            r.plugin = Some(format!("p{i}"));
            l.append(r).unwrap();
        }
        (d, p)
    }

    /// A head file's temporary left by a crash (between its create and its rename) goes when
    /// the log is next opened: this uid's stale one, not a fresh one (it may be another
    /// writer's, in a directory the log shares).
    #[test]
    fn opening_the_log_sweeps_a_crashed_writers_temporary_file() {
        let (d, p) = log(1);
        let tmp = |name: &str, age: std::time::Duration| {
            let t = d.path().join(format!(".stockade-tmp-{name}"));
            std::fs::write(&t, b"{").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&t)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - age)
                .unwrap();
            t
        };
        let stale = tmp("crashed", std::time::Duration::from_secs(120));
        let fresh = tmp("fresh", std::time::Duration::ZERO);
        file_log(&p)
            .append(Record::new(Event::Launch, "ok"))
            .unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert_eq!(verify_chain(&std::fs::read_to_string(&p).unwrap()), Ok(2));
    }

    /// The review's finding: every append listed the log's directory (the sweep), under the
    /// log's lock, on the daemon's busiest path. A log sweeps on its first append, then once a
    /// minute: a leftover that turns up after the first append stays through the next ones,
    /// until a minute has gone (here: the last sweep set back) or another opening of the log
    /// (another command) sweeps.
    #[test]
    fn a_log_sweeps_on_its_first_append_and_then_once_a_minute_not_every_time() {
        let (d, p) = log(0);
        let l = file_log(&p);
        l.append(Record::new(Event::Launch, "ok")).unwrap();
        let stale = d.path().join(".stockade-tmp-crashed");
        std::fs::write(&stale, b"{").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
        l.append(Record::new(Event::Launch, "ok")).unwrap();
        l.clone().append(Record::new(Event::Launch, "ok")).unwrap();
        assert!(stale.exists(), "swept again on a later append");
        let minute_ago = Instant::now()
            .checked_sub(crate::fileio::LEFTOVER_AGE)
            .unwrap();
        *l.swept.lock().unwrap() = Some(minute_ago);
        l.append(Record::new(Event::Launch, "ok")).unwrap();
        assert!(!stale.exists(), "not swept a minute later");
        assert_eq!(verify_chain(&std::fs::read_to_string(&p).unwrap()), Ok(4));
    }

    /// Writers lock `<log>.lock`, never the log: the log is 0640, and `flock` needs only a
    /// descriptor, so any reader of it (a member of its group) could lock it for ever, and every
    /// append waited for it (root's CLI, the daemon's loop). Here the reader is this process on
    /// a descriptor of its own, whose lock conflicts as another process's would. The lock file
    /// is 0600 and, found wider, narrowed back. The wait for the append is bounded only so that
    /// a writer still waiting on the reader fails the test instead of hanging it.
    #[test]
    fn a_lock_on_the_log_itself_stalls_no_writer() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (_d, p) = log(1);
        let reader = std::fs::File::open(&p).unwrap();
        let _held =
            nix::fcntl::Flock::lock(reader, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        let append = |p: &Path| {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = p.to_path_buf();
            std::thread::spawn(move || {
                let _ = tx.send(file_log(&p).append(Record::new(Event::Launch, "ok")));
            });
            rx.recv_timeout(std::time::Duration::from_secs(30))
                .expect("the append waited for the reader's lock on the log")
                .unwrap()
        };
        assert_eq!(append(&p).seq, 1);
        let mode = || std::fs::metadata(lock_path(&p)).unwrap().mode() & 0o7777;
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(lock_path(&p), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(append(&p).seq, 2);
        assert_eq!(mode(), 0o600, "narrowed back");
        let head = read_head(&p).unwrap().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(verify_with_head(&text, Some(&head)), Ok((3, false)));
    }

    #[test]
    fn chain_detects_edit_delete_reorder() {
        let (_d, p) = log(4);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(verify_chain(&text), Ok(4));
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replacen("\"p2\"", "\"pX\"", 1);
        assert!(matches!(
            verify_chain(&edited),
            Err(ChainError::Edited { record: 3, .. })
        ));
        let deleted = [lines[0], lines[1], lines[3]].join("\n");
        assert!(matches!(
            verify_chain(&deleted),
            Err(ChainError::Broken { record: 3, .. })
        ));
        let reordered = [lines[0], lines[2], lines[1], lines[3]].join("\n");
        assert!(matches!(
            verify_chain(&reordered),
            Err(ChainError::Broken { record: 2, .. })
        ));
        let first_gone = lines[1..].join("\n");
        assert!(matches!(
            verify_chain(&first_gone),
            Err(ChainError::Broken { record: 1, .. })
        ));
    }

    /// The streamed check `audit verify` uses ([`verify_streams`], one line at a time, one
    /// watched hash) decides as the whole-text one ([`verify_with_head`]) for every head — each
    /// count from 0 to past the end, with the right hash and a wrong one — and every edit,
    /// deletion and reordering, with the same errors.
    #[test]
    fn the_streamed_check_agrees_with_the_whole_text_one() {
        let (_d, p) = log(5);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let whole = verify_chain(&text).unwrap();
        let hashes = check_chain(&text).unwrap().hashes;
        let mut texts = vec![
            text.clone(),
            text.replace('\n', "\r\n\n  \n"),
            text.replacen("\"p2\"", "\"pX\"", 1),
            [lines[0], lines[1], lines[3], lines[4]].join("\n"),
            [lines[0], lines[2], lines[1]].join("\n"),
            lines[..3].join("\n"),
            format!("{}\nnot json", lines[0]),
            String::new(),
        ];
        texts.push(texts[1].replacen("\"p4\"", "\"pY\"", 1));
        let mut heads = vec![None];
        for n in 0..=whole + 1 {
            let records = n as u64;
            let last = match n {
                0 => GENESIS.to_string(),
                k => hashes.get(k - 1).cloned().unwrap_or_default(),
            };
            for last_hash in [last, "f".repeat(64)] {
                heads.push(Some(Head {
                    schema: HEAD_SCHEMA.into(),
                    records,
                    last_hash,
                }));
            }
        }
        for t in &texts {
            for h in &heads {
                let streamed = verify_streams(&["log".to_string()], h.as_ref(), |_| {
                    Ok(std::io::Cursor::new(t.as_bytes()))
                });
                let streamed = match streamed {
                    Ok((s, behind)) => Ok((s[0].records, behind)),
                    Err(StreamError::Chain(e)) => Err(e.source),
                    Err(e) => panic!("{e}"),
                };
                let whole = verify_with_head(t, h.as_ref());
                // A head read after the log (`audit verify`: not the one watched) is accepted
                // exactly when it was, from the last two records' hashes alone.
                if let Ok(files) = stream_files(&["log".to_string()], None, |_| {
                    Ok(std::io::Cursor::new(t.as_bytes()))
                }) {
                    let after = files[0].against_head(h.as_ref());
                    match &whole {
                        Ok((_, behind)) => assert_eq!(after, Ok(*behind), "{t:?} {h:?}"),
                        Err(_) => assert!(after.is_err(), "{t:?} {h:?}"),
                    }
                }
                assert_eq!(streamed, whole, "{t:?} {h:?}");
            }
        }
    }

    /// Rotated files as `audit verify` streams them ([`verify_streams`]) and as it read them
    /// whole ([`verify_files`]): the same records per file, the same head verdict and the same
    /// error for every file altered (CRLF and blank lines, a last line without its newline, an
    /// edit, a cut, a record of a newer schema in a later file), dropped or given out of
    /// order, against every head (review-132).
    #[test]
    fn streamed_rotated_files_agree_with_the_whole_text_check() {
        let (_d, p) = log(3);
        let l = file_log(&p);
        let mut rotated = Vec::new();
        for _ in 0..2 {
            match rotate::rotate(&p, rotate::Options::default()).unwrap() {
                rotate::Rotation::Rotated { rotated_to, .. } => rotated.push(rotated_to),
                other => panic!("{other:?}"),
            }
            for _ in 0..2 {
                l.append(Record::new(Event::Denial, "denied")).unwrap();
            }
        }
        rotated.push(p.clone());
        let texts: Vec<String> = rotated
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let newer = texts[1]
            .lines()
            .next()
            .unwrap()
            .replace("\"stockade.audit/2\"", "\"stockade.audit/3\"");
        let alter: [&dyn Fn(&str) -> String; 7] = [
            &|t| t.to_string(),
            &|t| t.replace('\n', "\r\n\n \n"),
            &|t| t.trim_end_matches('\n').to_string(),
            &|t| {
                t.replacen("\"ok\"", "\"no\"", 1)
                    .replacen("\"denied\"", "\"dx\"", 1)
            },
            &|t| t.lines().take(2).collect::<Vec<_>>().join("\n"),
            &|t| format!("{t}{newer}\n"),
            &|t| format!("\n\r\n{t}"),
        ];
        let whole: Vec<(String, String)> = (0..3)
            .map(|k| (format!("f{k}"), texts[k].clone()))
            .collect();
        let (chains, behind) = verify_files(&whole, read_head(&p).unwrap().as_ref()).unwrap();
        let counts: Vec<usize> = chains.iter().map(|c| c.hashes.len()).collect();
        assert_eq!((counts, behind), (vec![3, 3, 3], false));
        let head = read_head(&p).unwrap();
        let mut heads = vec![None, head.clone()];
        if let Some(h) = &head {
            heads.push(Some(Head {
                records: h.records - 1,
                ..h.clone()
            }));
        }
        let mut orders: Vec<Vec<usize>> =
            vec![vec![0, 1, 2], vec![1, 2], vec![0, 2], vec![1, 0, 2]];
        orders.push(vec![2]);
        for order in &orders {
            for (which, f) in order.iter().enumerate() {
                for a in &alter {
                    let files = one_altered(&texts, order, which, *a);
                    for h in &heads {
                        let (streamed, whole) = streamed_and_whole(&files, h.as_ref());
                        assert_eq!(streamed, whole, "order {order:?} file {f} {h:?}");
                    }
                }
            }
        }
    }

    /// `text`'s records relabelled `schema` with every hash recomputed (the first record's
    /// `prev` kept): what one who rewrites a file whole makes of it.
    fn relabel_whole(text: &str, schema: &str) -> String {
        let mut prev: Option<String> = None;
        let mut out = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut r: Record = serde_json::from_str(line).unwrap();
            r.schema = schema.to_string();
            if let Some(p) = prev.take() {
                r.prev = p;
            }
            r.hash = r.compute_hash().unwrap();
            prev = Some(r.hash.clone());
            out.push_str(&serde_json::to_string(&r).unwrap());
            out.push('\n');
        }
        out
    }

    /// A log an earlier build began (`stockade.audit/1`), appended to and rotated by this one
    /// (`/2`): every file verifies, streamed or whole, alone and together (`--follow`'s
    /// order); a later file rewritten whole as `/1` (its hashes recomputed), or a `/1` file
    /// given after a `/2` one, is `OlderAfterNewer` — the same error, file and counts from
    /// the streamed check as from the whole-text one, for every head (review-140).
    #[test]
    fn streamed_and_whole_agree_across_schema_1_and_2_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        let v1 = chain_of(&[
            (SCHEMA_V1, Event::Launch),
            (SCHEMA_V1, Event::Termination),
            (SCHEMA_V1, Event::Launch),
        ]);
        std::fs::write(&p, &v1).unwrap();
        let hashes = check_chain(&v1).unwrap().hashes;
        write_head(
            &p,
            &Head {
                schema: HEAD_SCHEMA.into(),
                records: 3,
                last_hash: hashes[2].clone(),
            },
        )
        .unwrap();
        let l = file_log(&p);
        let mut files = Vec::new();
        for _ in 0..2 {
            match rotate::rotate(&p, rotate::Options::default()).unwrap() {
                rotate::Rotation::Rotated { rotated_to, .. } => files.push(rotated_to),
                other => panic!("{other:?}"),
            }
            for _ in 0..2 {
                l.append(Record::new(Event::Configuration, "ok")).unwrap();
            }
        }
        files.push(p.clone());
        let texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert_eq!(texts[0], v1, "the /1 file is rotated as it was");
        let head = read_head(&p).unwrap();
        let all: Vec<(String, String)> = (0..3)
            .map(|k| (format!("f{k}"), texts[k].clone()))
            .collect();
        let (chains, behind) = verify_files(&all, head.as_ref()).unwrap();
        let versions: Vec<u32> = chains.iter().map(|c| c.schema_version).collect();
        assert_eq!((versions, behind), (vec![1, 2, 2], false));
        // Rotation records only (a configuration record has no `/1` form): rewritten as `/1`.
        let launches_only = |t: &str| {
            t.lines()
                .filter(|l| !l.contains("\"configuration\""))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let alter: [&dyn Fn(&str) -> String; 5] = [
            &|t| t.to_string(),
            &|t| relabel_whole(t, SCHEMA_V1),
            &|t| relabel_whole(&launches_only(t), SCHEMA_V1),
            &|t| relabel_whole(t, SCHEMA),
            &|t| t.replace('\n', "\r\n\n \n"),
        ];
        let mut heads = vec![None, head.clone()];
        if let Some(h) = &head {
            heads.push(Some(Head {
                records: h.records - 1,
                ..h.clone()
            }));
        }
        let orders: [&[usize]; 6] = [&[0, 1, 2], &[1, 2], &[0, 2], &[1, 0, 2], &[2, 0], &[0]];
        let mut older_after_newer = 0;
        for order in orders {
            for which in 0..order.len() {
                for a in &alter {
                    let files = one_altered(&texts, order, which, *a);
                    for h in &heads {
                        let (streamed, whole) = streamed_and_whole(&files, h.as_ref());
                        assert_eq!(streamed, whole, "order {order:?} file {which} {h:?}");
                        if let Err(FilesError {
                            source: ChainError::OlderAfterNewer { .. },
                            ..
                        }) = &whole
                        {
                            older_after_newer += 1;
                        }
                    }
                }
            }
        }
        assert!(older_after_newer > 0, "no case reached the schema order");
        // The one that matters: the live file rewritten whole as `/1` after a `/2` file.
        let mut forged = all.clone();
        forged[2].1 = relabel_whole(&launches_only(&texts[2]), SCHEMA_V1);
        assert!(matches!(
            verify_files(&forged, None),
            Err(FilesError {
                source: ChainError::OlderAfterNewer { record: 1, .. },
                ..
            })
        ));
    }

    /// `texts` in `order` as files `f{k}`, the one at position `which` passed through `alter`.
    fn one_altered(
        texts: &[String],
        order: &[usize],
        which: usize,
        alter: &dyn Fn(&str) -> String,
    ) -> Vec<(String, String)> {
        order
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let t = if i == which {
                    alter(&texts[*k])
                } else {
                    texts[*k].clone()
                };
                (format!("f{k}"), t)
            })
            .collect()
    }

    /// Records per file and whether the head is one behind, or the chain error.
    type Verdict = Result<(Vec<usize>, bool), FilesError>;

    /// Records per file and "head behind" — or the chain error — of `files` as the streamed
    /// check (`verify_streams`) and the whole-text one (`verify_files`) find them, in that
    /// order, for the differential tests to compare.
    fn streamed_and_whole(files: &[(String, String)], head: Option<&Head>) -> (Verdict, Verdict) {
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let whole =
            verify_files(files, head).map(|(c, b)| (c.iter().map(|c| c.hashes.len()).collect(), b));
        let streamed = verify_streams(&names, head, |i| {
            Ok(std::io::Cursor::new(files[i].1.clone().into_bytes()))
        });
        let streamed = match streamed {
            Ok((s, b)) => Ok((s.iter().map(|s| s.records).collect::<Vec<_>>(), b)),
            Err(StreamError::Chain(e)) => Err(e),
            Err(e) => panic!("{e}"),
        };
        (streamed, whole)
    }

    #[test]
    fn concurrent_writers_keep_one_chain() {
        let (_d, p) = log(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let l = file_log(&p);
                    for _ in 0..10 {
                        l.append(Record::new(Event::Denial, "denied")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let head = read_head(&p).unwrap().unwrap();
        assert_eq!(verify_with_head(&text, Some(&head)), Ok((40, false)));
    }

    #[test]
    fn head_detects_truncation_and_writers_refuse_to_hide_it() {
        let (_d, p) = log(5);
        let text = std::fs::read_to_string(&p).unwrap();
        let head = read_head(&p).unwrap().unwrap();
        assert_eq!(head.records, 5);
        assert_eq!(verify_with_head(&text, Some(&head)), Ok((5, false)));
        let lines: Vec<&str> = text.lines().collect();
        // Cut the last two records: the chain alone is still valid, the head is not.
        let cut = lines[..3].join("\n") + "\n";
        assert_eq!(verify_chain(&cut), Ok(3));
        assert_eq!(
            verify_with_head(&cut, Some(&head)),
            Err(ChainError::Truncated {
                records: 3,
                expected: 5,
                first_missing_seq: 3,
                last_missing_seq: 4
            })
        );
        assert!(matches!(
            verify_with_head("", Some(&head)),
            Err(ChainError::Truncated { records: 0, .. })
        ));
        // A writer will not extend the cut log (it would hide the loss).
        std::fs::write(&p, &cut).unwrap();
        let e = file_log(&p)
            .append(Record::new(Event::Launch, "ok"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                AuditError::Truncated {
                    found: 3,
                    expected: 5,
                    ..
                }
            ),
            "{e}"
        );
        std::fs::write(&p, "").unwrap();
        assert!(file_log(&p)
            .append(Record::new(Event::Launch, "ok"))
            .is_err());
        // A head one record behind (crash between the append and the head's replacement) is
        // accepted by both, and the next append heals it.
        std::fs::write(&p, &text).unwrap();
        let stale = Head {
            records: 4,
            last_hash: serde_json::from_str::<Record>(lines[3]).unwrap().hash,
            ..head.clone()
        };
        assert_eq!(verify_with_head(&text, Some(&stale)), Ok((5, true)));
        std::fs::write(head_path(&p), serde_json::to_vec(&stale).unwrap()).unwrap();
        file_log(&p)
            .append(Record::new(Event::Launch, "ok"))
            .unwrap();
        assert_eq!(read_head(&p).unwrap().unwrap().records, 6);
        // Two behind, or a head naming another hash, is not.
        let older = Head {
            records: 3,
            ..stale.clone()
        };
        assert!(verify_with_head(&text, Some(&older)).is_err());
        let wrong = Head {
            last_hash: GENESIS.into(),
            ..head
        };
        assert_eq!(
            verify_with_head(&text, Some(&wrong)),
            Err(ChainError::HeadMismatch { record: 5 })
        );
    }

    #[test]
    fn journal_sink_sends_one_datagram_per_record() {
        let d = tempfile::tempdir().unwrap();
        let sock_path = d.path().join("journal.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        let mut r = Record::new(Event::Denial, "withheld");
        r.plugin = Some("p".into());
        r.hash = r.compute_hash().unwrap();
        send_journal(&sock_path, &r, &serde_json::to_string(&r).unwrap(), None).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = sock.recv(&mut buf).unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            msg.contains("\nSYSLOG_IDENTIFIER=stockade-audit\n"),
            "{msg}"
        );
        assert!(msg.contains("\nSTOCKADE_AUDIT_EVENT=denial\n"), "{msg}");
        let rec = msg
            .lines()
            .find_map(|l| l.strip_prefix("STOCKADE_AUDIT_RECORD="))
            .unwrap();
        assert_eq!(serde_json::from_str::<Record>(rec).unwrap(), r);
        // Nobody listening: an error, not a silent loss.
        drop(sock);
        assert!(send_journal(&sock_path, &r, "{}", None).is_err());
    }

    /// A journal that does not read (stopped) fills its socket's queue, and a datagram to a full
    /// queue blocks its sender: `serve`'s one loop for ever. With a bounded wait the record
    /// fails after it (`audit.busy`, 75), as a held lock does.
    #[test]
    fn a_journal_that_takes_nothing_fails_a_bounded_append_after_its_wait() {
        let d = tempfile::tempdir().unwrap();
        let sock_path = d.path().join("journal.sock");
        let _sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        let r = Record::new(Event::Denial, "withheld");
        let json = "x".repeat(16 * 1024);
        let wait = Duration::from_millis(100);
        let started = Instant::now();
        let e = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the queue never filled"
            );
            if let Err(e) = send_journal(&sock_path, &r, &json, Some(wait)) {
                break e;
            }
        };
        assert!(matches!(e, AuditError::JournalBusy { .. }), "{e:?}");
    }

    /// `serve`'s appends wait for the log's lock a bounded time ([`AuditLog::waiting_at_most`]):
    /// a holder stopped mid-append (root's CLI under SIGSTOP) stalled the daemon's one loop for
    /// ever. Past the wait the append fails (`audit.busy`, 75), nothing written; the next ones
    /// only try the lock (one wait, not one per record) until one takes it; then the chain goes
    /// on unbroken.
    #[test]
    fn a_bounded_append_gives_up_on_a_held_lock_then_only_tries_until_it_is_free() {
        let (_d, p) = log(1);
        let held = crate::fileio::lock_as_dir_owner(&lock_path(&p), "test", None).unwrap();
        let wait = Duration::from_millis(300);
        let l = file_log(&p).waiting_at_most(wait);
        let started = Instant::now();
        let e = l.append(Record::new(Event::Launch, "ok")).unwrap_err();
        let took = started.elapsed();
        assert!(took >= wait && took < Duration::from_secs(10), "{took:?}");
        assert!(matches!(e, AuditError::LockBusy { .. }), "{e:?}");
        // Only tried now: no second wait, in this clone as in the log itself.
        let started = Instant::now();
        let e =
            crate::audit::append_or_fail(&l.clone(), Record::new(Event::Launch, "ok")).unwrap_err();
        assert!(started.elapsed() < wait, "{:?}", started.elapsed());
        assert_eq!(
            (e.kind(), e.exit()),
            ("audit.busy", crate::exit::Exit::TempFail)
        );
        assert!(e.render_text().contains("fuser"), "{}", e.render_text());
        assert_eq!(verify_chain(&std::fs::read_to_string(&p).unwrap()), Ok(1));
        drop(held);
        assert_eq!(l.append(Record::new(Event::Launch, "ok")).unwrap().seq, 1);
        assert!(!l.wait.as_ref().unwrap().gave_up(), "waits again");
        // The CLI's log (no bound) waits for the holder, however long.
        let held = crate::fileio::lock_as_dir_owner(&lock_path(&p), "test", None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(file_log(&q).append(Record::new(Event::Launch, "ok")));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "gave up"
        );
        drop(held);
        let r = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(r.seq, 2);
    }

    /// A log write refused for want of room is hinted with what gives it room, the cause's
    /// errno deciding — free space, a quota, a file-size limit —, not "fix the [audit] sinks"
    /// (audit-166 L4, review-169 L4); whether the part written was cut off or not. Any other
    /// cause keeps the sinks' hint.
    #[test]
    fn a_log_write_refused_for_want_of_room_is_hinted_by_its_cause() {
        let err = |n| std::io::Error::from_raw_os_error(n);
        let hint = |e: AuditError| into_cmd(e).hint_text().unwrap().to_string();
        let io = |n| AuditError::Io {
            path: "/l/audit.log".into(),
            source: err(n),
        };
        let uncut = |n| AuditError::Uncut {
            path: "/l/audit.log".into(),
            source: err(n),
            cut: err(libc::EPERM),
            tail: UncutTail::Part,
        };
        for (n, says) in [
            (libc::ENOSPC, "free space"),
            (libc::EDQUOT, "raise the quota"),
            (libc::EFBIG, "LimitFSIZE="),
        ] {
            for h in [hint(io(n)), hint(uncut(n))] {
                assert!(h.contains(says), "{n}: {h}");
                assert!(!h.contains("fix the [audit] sinks"), "{n}: {h}");
            }
        }
        assert!(hint(io(libc::EFBIG)).contains("ulimit -f"));
        for h in [hint(io(libc::EACCES)), hint(uncut(libc::EIO))] {
            assert!(h.starts_with("fix the [audit] sinks"), "{h}");
        }
    }

    /// A failed record that could not be cut off is said as what the log was seen to end in —
    /// part of it, the whole of it beyond its head, or nothing of it but a cut not synced —:
    /// every case said "the log ends in an incomplete record" (review-169 L2).
    #[test]
    fn a_record_not_cut_off_says_what_the_log_ends_in() {
        let said = |now| {
            AuditError::Uncut {
                path: "/l/audit.log".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                cut: std::io::Error::from_raw_os_error(libc::EPERM),
                tail: UncutTail::of(1000, 300, now),
            }
            .to_string()
        };
        assert!(
            said(Some(1100)).ends_with("an incomplete record"),
            "{}",
            said(Some(1100))
        );
        let whole = said(Some(1300));
        assert!(
            whole.contains("the whole record") && !whole.contains("incomplete"),
            "{whole}"
        );
        let unsynced = said(Some(1000));
        assert!(unsynced.contains("may not be on disk"), "{unsynced}");
        assert!(said(None).contains("may end in part"), "{}", said(None));
    }
}
