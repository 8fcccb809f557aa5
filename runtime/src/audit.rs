//! The audit log: one JSON record per verification, launch, grant, denial, termination, restart,
//! install and removal, hash-chained so that deleting, editing or reordering a record is
//! detected by `stockade audit verify`, which names the first record that breaks the chain.
//!
//! ## Record (schema `stockade.audit/1`, one JSON object per line)
//! `{"schema": "stockade.audit/1", "seq", "time", "event", "outcome", "plugin", "version",
//! "package_sha256", "signer_chain", "policy_sha256", "layers", "detail", "prev", "hash"}`:
//! `seq` counts from 0 in the file; `prev` is the previous record's `hash` (64 zeros for the
//! first); `hash` is the SHA-256 (hex) of the record's canonical JSON without `hash` (the same
//! canonical form as certificates, `stockade_trust::canonical`). docs/audit.md documents it.
//!
//! ## Sinks (`[audit]` in the policy)
//! `file`: appended under an exclusive `flock` (concurrent `stockade` processes queue), the last
//! record is read under the lock to chain to it, and the file is fsynced before the lock is
//! released. `stderr = true`: each record also goes to stderr as `stockade-audit: {json}`, which
//! journald collects for a service. A record that cannot be written to the file is an error for
//! the command (fail closed: no unaudited launch).
//!
//! ## Limits
//! A chain proves order and integrity of what is there; cutting records off the *end* leaves a
//! valid shorter chain. Ship the file (or its last hash) elsewhere to detect truncation.

use crate::sys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use stockade_policy::operator::AuditSection;

/// The schema name of every record.
pub const SCHEMA: &str = "stockade.audit/1";
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
    /// A record cannot be encoded.
    #[error("cannot encode the audit record")]
    Encode(#[source] serde_json::Error),
    /// A record has no canonical form.
    #[error("cannot canonicalize the audit record")]
    Canonical(#[source] stockade_trust::canonical::CanonicalError),
    /// The last record of the file does not parse: refusing to extend a broken chain.
    #[error("the last record of {} is not a valid audit record; run `stockade audit verify`", path.display())]
    BrokenTail {
        /// The file.
        path: PathBuf,
    },
}

/// Where records go.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    file: Option<PathBuf>,
    stderr: bool,
}

impl AuditLog {
    /// The sinks the policy's `[audit]` section configures.
    pub fn from_policy(a: &AuditSection) -> Self {
        AuditLog {
            file: a.file.as_ref().map(PathBuf::from),
            stderr: a.stderr.unwrap_or(false),
        }
    }

    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.stderr
    }

    /// Append a record (chained to the file's last one) and echo it to stderr if configured.
    pub fn append(&self, mut r: Record) -> Result<Record, AuditError> {
        if let Some(path) = &self.file {
            r = append_to_file(path, r)?;
        } else {
            r.prev = GENESIS.into();
            r.hash = r.compute_hash()?;
        }
        if self.stderr {
            let line = serde_json::to_string(&r).map_err(AuditError::Encode)?;
            eprintln!("stockade-audit: {line}");
        }
        Ok(r)
    }
}

fn append_to_file(path: &Path, mut r: Record) -> Result<Record, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    sys::flock_exclusive(f.as_fd()).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let start = len.saturating_sub(MAX_RECORD);
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = String::new();
    Read::by_ref(&mut f)
        .take(MAX_RECORD)
        .read_to_string(&mut tail)
        .map_err(io)?;
    match tail.lines().rev().find(|l| !l.trim().is_empty()) {
        None => {
            r.seq = 0;
            r.prev = GENESIS.into();
        }
        Some(last) => {
            let last: Record = serde_json::from_str(last).map_err(|_| AuditError::BrokenTail {
                path: path.to_path_buf(),
            })?;
            r.seq = last.seq + 1;
            r.prev = last.hash;
        }
    }
    r.hash = r.compute_hash()?;
    let mut line = serde_json::to_vec(&r).map_err(AuditError::Encode)?;
    line.push(b'\n');
    f.write_all(&line).map_err(io)?;
    f.sync_all().map_err(io)?;
    // The lock goes with the descriptor.
    Ok(r)
}

/// Where and how a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum ChainError {
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
}

/// Check a whole log; the number of records on success.
pub fn verify_chain(text: &str) -> Result<usize, ChainError> {
    let mut prev = GENESIS.to_string();
    let mut n = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = n + 1;
        let r: Record = serde_json::from_str(line).map_err(|_| ChainError::Malformed {
            record,
            line: i + 1,
        })?;
        if r.schema != SCHEMA {
            return Err(ChainError::Malformed {
                record,
                line: i + 1,
            });
        }
        if r.compute_hash().ok().as_deref() != Some(r.hash.as_str()) {
            return Err(ChainError::Edited {
                record,
                line: i + 1,
            });
        }
        if r.prev != prev || r.seq != n as u64 {
            return Err(ChainError::Broken {
                record,
                line: i + 1,
                seq: r.seq,
                expected: n as u64,
            });
        }
        prev = r.hash;
        n += 1;
    }
    Ok(n)
}

/// A record about a verified package: name, version, digest and signer chain from the report.
pub fn for_report(event: Event, outcome: &str, r: &crate::package::report::Report) -> Record {
    let mut rec = Record::new(event, outcome);
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
    rec.signer_chain = chain;
    rec
}

/// SHA-256 of an effective policy's explanation (what `policy explain --json` prints as items).
pub fn policy_hash(e: &stockade_policy::operator::explain::Explanation) -> String {
    let bytes = serde_json::to_vec(&e.items).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Append, turning a failure into the command's error (exit 74: no unaudited action).
pub fn append_or_fail(log: &AuditLog, r: Record) -> Result<(), crate::error::CmdError> {
    if !log.enabled() {
        return Ok(());
    }
    log.append(r).map(|_| ()).map_err(|e| {
        crate::error::CmdError::new(crate::exit::Exit::IoErr, "audit", e)
            .hint("fix the [audit] file in the policy (its directory must exist and be writable)")
    })
}

/// The layers a launch report says were enforced (fully or partially), as `layer:status`.
pub fn enforced_layers(r: &crate::sandbox::report::Report) -> Vec<String> {
    r.layers
        .iter()
        .map(|l| {
            let status = serde_json::to_value(l.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            format!("{}:{status}", l.layer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        let l = AuditLog {
            file: Some(p.clone()),
            stderr: false,
        };
        for i in 0..n {
            let mut r = Record::new(Event::Launch, "ok");
            r.plugin = Some(format!("p{i}"));
            l.append(r).unwrap();
        }
        (d, p)
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

    #[test]
    fn concurrent_writers_keep_one_chain() {
        let (_d, p) = log(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let l = AuditLog {
                        file: Some(p),
                        stderr: false,
                    };
                    for _ in 0..10 {
                        l.append(Record::new(Event::Denial, "denied")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(verify_chain(&std::fs::read_to_string(&p).unwrap()), Ok(40));
    }
}
