//! `stockade audit rotate`: start a new log that continues the old one, so the chain stays
//! verifiable across files and no audited action ever finds a log shorter than its head.
//!
//! Any other rotation breaks the log for good: logrotate's rename + create (or copytruncate)
//! leaves an empty log under a head file that counts the old records, and every writer then
//! refuses to extend it ([`super::AuditError::Truncated`], 74) — every `install`, `run`, and
//! every load and launch of `serve`.
//!
//! ## What a rotation does (under the writers' lock, `<log>.lock`)
//! 1. The log's last record is read and checked against its head, as an append does (a log
//!    shorter than its head is not rotated: see `--after-loss` below).
//! 2. A new file is made at the rotated name `<log>.<UTC YYYYMMDDTHHMMSSZ>` (`-N` added when a
//!    file has that name: a name is never reused or replaced, `O_EXCL`) holding one record: event
//!    `rotation`, `seq` 0, `prev` the old log's last hash, `detail.previous` = the rotated name,
//!    the old log's record count and last hash ([`super::Continues`]). Fsynced.
//! 3. **The commit**: `renameat2(RENAME_EXCHANGE)` of that file and the log — in one step the
//!    log's name holds the new file and the rotated name the old records. The old records are
//!    never anywhere but at one of the two names (no moment without a log, no temporary name a
//!    sweep could remove).
//! 4. The head file is replaced (1 record, the rotation record's hash).
//!
//! Killed before 3: the log and head are as they were; the rotated name holds a file of one
//! rotation record naming itself (a rotation that never happened: [`stillborn`]), which the next
//! rotation removes. Killed between 3 and 4: the head still names the old log's last record,
//! which the new log's only record continues: writers and `audit verify` take it as a head one
//! record behind (the next append heals it), as after a crash between an append and its head.
//!
//! Why timestamped names and not `.1`, `.2`, …: a rotation record names the file it continues,
//! and shifting numbers would make every recorded name wrong at the next rotation (and a kill in
//! the middle of the shift leave two files of one number); UTC timestamps sort in the order of
//! the chain.
//!
//! ## After a loss (`--after-loss`)
//! A log already rotated by something else is shorter than its head. Accepting that silently
//! would hide a real truncation, so it takes an explicit command: the remainder (usually empty)
//! is rotated away as above, and the new log's rotation record (outcome `after_loss`) chains to
//! the last record **the head** names, its `detail.previous` the head's count and hash (no file
//! name: whoever rotated the log put the records elsewhere) and `detail.found` what the log still
//! held. The loss is thus in the chain itself, and if the records are found again (logrotate's
//! `audit.log.1`), `audit verify audit.log.1 audit.log` proves that nothing was lost after all.

use super::{
    check_head, lock_log, open_log, read_head, read_last, write_head, AuditError, Continues, Event,
    Head, Record, GENESIS, HEAD_SCHEMA,
};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What to rotate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The log is shorter than its head (rotated by something else): start a new log that
    /// records the loss ([`super::Continues`] from the head). Refused on a log that is not.
    pub after_loss: bool,
    /// Rotate only a log of at least this many bytes.
    pub min_size: Option<u64>,
    /// Keep this many rotated files (the one made now included): older ones are removed,
    /// oldest first, after the commit, and the rotation record names them (`detail.removed`).
    pub keep: Option<u32>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// The log was rotated.
    Rotated {
        /// The old log's name now.
        rotated_to: PathBuf,
        /// The new log's first record (event `rotation`).
        record: Box<Record>,
        /// Rotations killed before their commit whose leftovers were removed ([`stillborn`]).
        removed: Vec<PathBuf>,
    },
    /// Nothing was done: the log holds no record.
    Empty,
    /// Nothing was done: the log is smaller than [`Options::min_size`].
    BelowSize {
        /// Its size in bytes.
        size: u64,
    },
}

/// Rotate the log at `log` (see the module's documentation), waiting for its lock however long.
pub fn rotate(log: &Path, opts: Options) -> Result<Rotation, AuditError> {
    let io = |source| AuditError::Io {
        path: log.to_path_buf(),
        source,
    };
    let _lock = lock_log(log, None)?;
    let mut f = open_log(log).map_err(io)?;
    crate::fileio::adopt_dir_owner(&f, log).map_err(io)?;
    rotate_held(log, &mut f, opts)
}

/// [`rotate`] by a writer that holds the log's lock and has it open in `f` (an append that
/// left it at `[audit] rotate_size`, [`super::AuditLog`]).
pub(super) fn rotate_held(
    log: &Path,
    f: &mut std::fs::File,
    opts: Options,
) -> Result<Rotation, AuditError> {
    let io = |source| AuditError::Io {
        path: log.to_path_buf(),
        source,
    };
    let size = f.metadata().map_err(io)?.len();
    let last = read_last(f, log)?;
    let head = read_head(log).map_err(io)?;
    let checked = check_head(log, last.as_ref(), head.as_ref());
    let found = last.as_ref().map_or(0, |l| l.seq + 1);
    let found_hash = last
        .as_ref()
        .map_or(GENESIS, |l| l.hash.as_str())
        .to_string();
    let (previous, outcome) = match (checked, opts.after_loss) {
        (Ok(()), false) => {
            if found == 0 {
                return Ok(Rotation::Empty);
            }
            if opts.min_size.is_some_and(|m| size < m) {
                return Ok(Rotation::BelowSize { size });
            }
            let previous = Continues {
                file: None,
                records: found,
                last_hash: found_hash.clone(),
            };
            (previous, "ok")
        }
        (Err(e), false) => return Err(e),
        (Ok(()), true) => {
            return Err(AuditError::NotTruncated {
                path: log.to_path_buf(),
            })
        }
        (Err(AuditError::Truncated { .. }), true) => {
            let head = head.unwrap_or_else(|| Head {
                schema: HEAD_SCHEMA.into(),
                records: 0,
                last_hash: GENESIS.into(),
            });
            let previous = Continues {
                file: None,
                records: head.records,
                last_hash: head.last_hash,
            };
            (previous, "after_loss")
        }
        (Err(e), true) => return Err(e),
    };
    let dir = crate::fileio::parent_dir(log);
    let removed = remove_stillborn(log, &dir);
    let (rotated_to, mut out) = create_rotated(log).map_err(io)?;
    let name = file_name(&rotated_to);
    // `keep`: the oldest rotated files past it (the one made now counted), named in the
    // record, removed once it is committed.
    let pruned: Vec<String> = match opts.keep {
        None => Vec::new(),
        Some(keep) => {
            let older: Vec<String> = rotated_names(log, &dir)
                .into_iter()
                .filter(|n| *n != name)
                .collect();
            let excess = (older.len() + 1).saturating_sub(keep.max(1) as usize);
            older.into_iter().take(excess).collect()
        }
    };
    let mut r = Record::new(Event::Rotation, outcome);
    r.seq = 0;
    r.prev.clone_from(&previous.last_hash);
    r.detail = if outcome == "ok" {
        let previous = Continues {
            file: Some(name),
            ..previous
        };
        serde_json::json!({ "previous": previous })
    } else {
        // Even an empty remainder (logrotate's `create`, copytruncate) is kept: a rotated
        // file that holds nothing but this rotation record would otherwise look like the
        // leftover of a rotation killed before its commit ([`stillborn`]).
        serde_json::json!({
            "previous": previous,
            "found": {"file": name, "records": found, "last_hash": found_hash},
        })
    };
    if !pruned.is_empty() {
        r.detail["removed"] = serde_json::json!(pruned);
    }
    r.hash = r.compute_hash()?;
    let written = (|| {
        let mut line = serde_json::to_vec(&r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        out.sync_all()?;
        sync_dir(&dir)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&rotated_to);
        return Err(io(e));
    }
    drop(out);
    crate::sys::stop_at("audit-rotate-written");
    // The commit: the log's name takes the new file, the rotated name the old records.
    if let Err(e) = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        rotated_to.as_path(),
        nix::fcntl::AT_FDCWD,
        log,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    ) {
        let _ = std::fs::remove_file(&rotated_to);
        return Err(io(std::io::Error::from(e)));
    }
    sync_dir(&dir).map_err(io)?;
    crate::sys::stop_at("audit-rotate-exchanged");
    write_head(
        log,
        &Head {
            schema: HEAD_SCHEMA.into(),
            records: 1,
            last_hash: r.hash.clone(),
        },
    )
    .map_err(io)?;
    // A kill before this leaves them; the next rotation names and removes them again.
    for n in &pruned {
        let _ = std::fs::remove_file(dir.join(n));
    }
    Ok(Rotation::Rotated {
        rotated_to,
        record: Box::new(r),
        removed,
    })
}

/// The rotated name for now, `<log>.<YYYYMMDDTHHMMSSZ>[-N]`, created empty (`O_EXCL`, no
/// symlink followed, 0640 exactly, the log directory's owner's when root makes it). It sorts
/// after every rotated file there: past the newest one's N when that is of this second (a name
/// `keep` removed is not taken again), and after it whatever the clock says (a clock set back
/// does not put a newer file before an older one).
fn create_rotated(log: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let now = utc_stamp(crate::keyfile::unix_now());
    let newest = rotated_names(log, &crate::fileio::parent_dir(log))
        .pop()
        .and_then(|name| {
            let rest = name.rsplit_once(".")?.1.to_string();
            let (stamp, n) = rest.split_once('-').unwrap_or((&rest, "0"));
            Some((stamp.to_string(), n.parse::<u32>().ok()?))
        });
    let (stamp, first) = match newest {
        Some((stamp, n)) if stamp >= now => (stamp, n + 1),
        _ => (now, 0),
    };
    for n in first..first + 1000 {
        let mut p = log.as_os_str().to_owned();
        p.push(format!(".{stamp}"));
        if n > 0 {
            p.push(format!("-{n}"));
        }
        let p = PathBuf::from(p);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(f) => {
                use std::os::unix::fs::PermissionsExt;
                let given = f
                    .set_permissions(std::fs::Permissions::from_mode(0o640))
                    .and_then(|()| crate::fileio::adopt_dir_owner(&f, &p));
                if let Err(e) = given {
                    let _ = std::fs::remove_file(&p);
                    return Err(e);
                }
                return Ok((p, f));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "a thousand rotated logs of this second already exist",
    ))
}

/// Whether the file at `path` is what a rotation killed before its commit leaves at its rotated
/// name: one line, a rotation record (`seq` 0) whose `detail.previous.file` (or, after a loss,
/// `detail.found.file`) is this file's own name. No log ever looks like that: a rotated log's
/// first record names another file, and it holds the records before.
pub fn stillborn(path: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    // One record at most: a real rotated log (megabytes) is not even read.
    if !f
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() <= super::MAX_RECORD)
    {
        return false;
    }
    let mut text = String::new();
    if f.take(super::MAX_RECORD + 1)
        .read_to_string(&mut text)
        .is_err()
    {
        return false;
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let Ok(r) = serde_json::from_str::<Record>(line) else {
        return false;
    };
    let own = file_name(path);
    let names = |k: &str| r.detail[k]["file"].as_str() == Some(own.as_str());
    super::known_version(&r.schema).is_some()
        && r.event == Event::Rotation
        && r.seq == 0
        && r.compute_hash().is_ok_and(|h| h == r.hash)
        && (names("previous") || names("found"))
}

/// Remove the leftovers of rotations killed before their commit ([`stillborn`]) beside `log`:
/// only files named as rotated logs of it. Best effort: one that cannot be removed stays (it
/// breaks nothing: no chain names it).
fn remove_stillborn(log: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for name in rotated_names(log, dir) {
        let p = dir.join(&name);
        if stillborn(&p) && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// The names of `log`'s rotated files in `dir` (`<log>.<YYYYMMDDTHHMMSSZ>[-N]`), oldest first
/// (by time, then N as a number).
fn rotated_names(log: &Path, dir: &Path) -> Vec<String> {
    let prefix = format!("{}.", file_name(log));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<(String, u64, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?;
            if !is_stamp(rest) {
                return None;
            }
            let (stamp, n) = rest.split_once('-').unwrap_or((rest, "0"));
            Some((stamp.to_string(), n.parse().ok()?, name.clone()))
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, _, n)| n).collect()
}

/// `YYYYMMDDTHHMMSSZ`, optionally `-N`.
fn is_stamp(s: &str) -> bool {
    let (stamp, n) = s.split_once('-').unwrap_or((s, "0"));
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && !n.is_empty()
        && n.bytes().all(|c| c.is_ascii_digit())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `YYYYMMDDTHHMMSSZ` of unix seconds (UTC; days to a civil date after Howard Hinnant's
/// `civil_from_days`).
fn utc_stamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::super::{verify_files, verify_with_head, AuditLog, ChainError, FilesError};
    use super::*;

    fn file_log(p: &Path) -> AuditLog {
        AuditLog {
            file: Some(p.to_path_buf()),
            ..AuditLog::default()
        }
    }

    fn append(p: &Path, n: usize) {
        for _ in 0..n {
            file_log(p)
                .append(Record::new(Event::Launch, "ok"))
                .unwrap();
        }
    }

    fn rotated(p: &Path) -> PathBuf {
        match rotate(p, Options::default()).unwrap() {
            Rotation::Rotated { rotated_to, .. } => rotated_to,
            other => panic!("not rotated: {other:?}"),
        }
    }

    fn texts(files: &[&Path]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(f).unwrap())
            })
            .collect()
    }

    /// Rotations keep one chain across the files: the new log verifies alone (its first
    /// record, the rotation record, is a chain start), all of them in order verify as one, and
    /// a file left out, cut short or given out of order breaks the continuity.
    #[test]
    fn rotated_logs_verify_alone_and_as_one_chain() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        append(&p, 3);
        let r1 = rotated(&p);
        append(&p, 2);
        let r2 = rotated(&p);
        append(&p, 1);
        assert_ne!(r1, r2, "a rotated name is never reused");
        let head = read_head(&p).unwrap().unwrap();
        assert_eq!(head.records, 2);
        let log = std::fs::read_to_string(&p).unwrap();
        assert_eq!(verify_with_head(&log, Some(&head)), Ok((2, false)));
        let (chains, behind) = verify_files(&texts(&[&r1, &r2, &p]), Some(&head)).unwrap();
        assert!(!behind);
        let counts: Vec<usize> = chains.iter().map(|c| c.hashes.len()).collect();
        assert_eq!(counts, [3, 3, 2]);
        assert_eq!(chains[0].continues, None);
        let c = chains[2].continues.clone().unwrap();
        assert_eq!(
            (c.file.as_deref(), c.records, c.last_hash.as_str()),
            (
                Some(r2.file_name().unwrap().to_str().unwrap()),
                3,
                chains[1].last_hash()
            )
        );
        let discontinuous = |files: &[&Path]| {
            matches!(
                verify_files(&texts(files), Some(&head)),
                Err(FilesError {
                    source: ChainError::Discontinuous { .. },
                    ..
                })
            )
        };
        assert!(discontinuous(&[&r1, &p]), "the middle file left out");
        assert!(discontinuous(&[&r2, &r1, &p]), "out of order");
        // The first rotated file cut short: it verifies alone, but not as the one before r2.
        let text = std::fs::read_to_string(&r1).unwrap();
        let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&r1, cut).unwrap();
        assert!(discontinuous(&[&r1, &r2, &p]));
    }

    /// A rotation record's `prev` must be the hash it names: an edited one is not a chain start.
    #[test]
    fn a_forged_rotation_start_is_not_a_chain_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        append(&p, 1);
        rotated(&p);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut r: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        r.detail["previous"]["last_hash"] = GENESIS.into();
        r.hash = r.compute_hash().unwrap();
        let forged = serde_json::to_string(&r).unwrap();
        assert!(matches!(
            super::super::verify_chain(&forged),
            Err(ChainError::Broken { record: 1, .. })
        ));
    }

    /// The states a kill leaves, at each step: before the commit (the log and head untouched, a
    /// stillborn file at the rotated name, removed by the next rotation) and between the commit
    /// and the head (the head names the rotated file's last record): the next append works and
    /// `audit verify` passes in both. (Real kills at both points: tests/audit_rotate_cli.rs.)
    #[test]
    fn a_rotation_killed_at_any_step_leaves_a_log_that_appends_and_verifies() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        append(&p, 3);
        let old_log = std::fs::read(&p).unwrap();
        let old_head = std::fs::read(super::super::head_path(&p)).unwrap();
        let r = rotated(&p);
        let new_log = std::fs::read(&p).unwrap();

        // Killed between the commit (the exchange) and the head's replacement.
        std::fs::write(super::super::head_path(&p), &old_head).unwrap();
        let head = read_head(&p).unwrap().unwrap();
        let text = String::from_utf8(new_log.clone()).unwrap();
        assert_eq!(verify_with_head(&text, Some(&head)), Ok((1, true)));
        append(&p, 1);
        assert_eq!(read_head(&p).unwrap().unwrap().records, 2, "healed");
        let head = read_head(&p).unwrap().unwrap();
        assert!(verify_files(&texts(&[&r, &p]), Some(&head)).is_ok());

        // Killed before the commit: the old log and head as they were, and at the rotated
        // name a file of the rotation record alone.
        std::fs::write(&p, &old_log).unwrap();
        std::fs::write(super::super::head_path(&p), &old_head).unwrap();
        std::fs::write(&r, &new_log).unwrap();
        assert!(stillborn(&r));
        append(&p, 1);
        let head = read_head(&p).unwrap().unwrap();
        assert_eq!(head.records, 4);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(verify_with_head(&text, Some(&head)), Ok((4, false)));
        match rotate(&p, Options::default()).unwrap() {
            Rotation::Rotated {
                rotated_to,
                removed,
                ..
            } => {
                assert_eq!(removed, std::slice::from_ref(&r));
                // (Its name may be taken again: no chain ever named the leftover.)
                assert!(!stillborn(&rotated_to));
                let text = std::fs::read_to_string(&rotated_to).unwrap();
                assert_eq!(super::super::verify_chain(&text), Ok(4));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Appenders (threads here: each takes the lock on its own descriptor, as another process
    /// would; tests/audit_rotate_cli.rs runs the rotations as processes) and rotations in
    /// between: every record lands in exactly one file, and the files form one chain.
    #[test]
    fn concurrent_appenders_and_rotations_keep_one_chain() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        append(&p, 1);
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || append(&p, 20))
            })
            .collect();
        let mut rotated_files = Vec::new();
        for _ in 0..5 {
            if let Rotation::Rotated { rotated_to, .. } = rotate(&p, Options::default()).unwrap() {
                rotated_files.push(rotated_to);
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        rotated_files.sort();
        let mut files: Vec<&Path> = rotated_files.iter().map(PathBuf::as_path).collect();
        files.push(&p);
        let head = read_head(&p).unwrap().unwrap();
        let (chains, _) = verify_files(&texts(&files), Some(&head)).unwrap();
        let rotations = chains.len() - 1;
        let total: usize = chains.iter().map(|c| c.hashes.len()).sum();
        assert_eq!(
            total,
            61 + rotations,
            "every record once, plus each rotation's"
        );
    }

    /// A log rotated by something else (logrotate: rename + create) is shorter than its head:
    /// neither an append nor a plain rotation extends it; `--after-loss` starts a new log that
    /// chains to what the head names and says what was lost, and with the file the records
    /// were moved to the chain is whole again. `--after-loss` on an intact log is refused.
    #[test]
    fn after_loss_records_the_loss_and_chains_to_the_head() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        append(&p, 3);
        let moved = d.path().join("audit.log.1");
        std::fs::rename(&p, &moved).unwrap();
        std::fs::write(&p, b"").unwrap();
        let truncated = |e: AuditError| {
            matches!(
                e,
                AuditError::Truncated {
                    found: 0,
                    expected: 3,
                    ..
                }
            )
        };
        assert!(truncated(
            file_log(&p)
                .append(Record::new(Event::Launch, "ok"))
                .unwrap_err()
        ));
        assert!(truncated(rotate(&p, Options::default()).unwrap_err()));
        let opts = Options {
            after_loss: true,
            ..Options::default()
        };
        let Rotation::Rotated {
            record, rotated_to, ..
        } = rotate(&p, opts).unwrap()
        else {
            panic!("not rotated")
        };
        assert_eq!(record.outcome, "after_loss");
        assert_eq!(record.detail["previous"]["records"], 3);
        assert_eq!(record.detail["previous"]["file"], serde_json::Value::Null);
        assert_eq!(record.detail["found"]["records"], 0);
        assert_eq!(std::fs::metadata(&rotated_to).unwrap().len(), 0);
        append(&p, 1);
        let head = read_head(&p).unwrap().unwrap();
        assert_eq!(head.records, 2);
        let (chains, _) = verify_files(&texts(&[&moved, &p]), Some(&head)).unwrap();
        assert_eq!(chains.len(), 2);
        assert!(matches!(
            rotate(&p, opts).unwrap_err(),
            AuditError::NotTruncated { .. }
        ));
    }

    /// `[audit] rotate_size`: the append that leaves the log at the size rotates it, under the
    /// lock it holds; `keep` removes the oldest rotated files past it, each rotation record
    /// naming those it removed; what is kept verifies as one chain with the log.
    #[test]
    fn appends_rotate_at_the_size_and_keep_prunes_the_oldest_recording_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        let section = stockade_policy::operator::AuditSection {
            file: Some(p.display().to_string()),
            rotate_size: Some("1K".into()),
            keep: Some(2),
            ..Default::default()
        };
        let l = AuditLog::from_policy(&section);
        let mut r = Record::new(Event::Launch, "ok");
        r.detail = serde_json::json!({"pad": "x".repeat(600)});
        for _ in 0..8 {
            l.append(r.clone()).unwrap();
        }
        let kept = rotated_names(&p, d.path());
        assert_eq!(kept.len(), 2, "{kept:?}");
        let text = std::fs::read_to_string(&p).unwrap();
        let first: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.event, Event::Rotation);
        assert!(
            first.detail["removed"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{first:?}"
        );
        assert!(
            std::fs::metadata(&p).unwrap().len() < 1024,
            "rotated at the size"
        );
        let mut files: Vec<PathBuf> = kept.iter().map(|n| d.path().join(n)).collect();
        files.push(p.clone());
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let head = read_head(&p).unwrap().unwrap();
        assert!(verify_files(&texts(&refs), Some(&head)).is_ok());
    }

    /// Nothing to rotate: an empty log, or one below `min_size`; nothing is made.
    #[test]
    fn an_empty_or_small_log_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.log");
        assert_eq!(rotate(&p, Options::default()).unwrap(), Rotation::Empty);
        append(&p, 1);
        let size = std::fs::metadata(&p).unwrap().len();
        let opts = Options {
            min_size: Some(size + 1),
            ..Options::default()
        };
        assert_eq!(rotate(&p, opts).unwrap(), Rotation::BelowSize { size });
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| is_stamp(n.trim_start_matches("audit.log.")))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn stamps_are_utc_and_recognised() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_601_599), "20261206T235959Z");
        assert_eq!(utc_stamp(1_796_601_600), "20261207T000000Z");
        assert!(is_stamp("20261207T235959Z"));
        assert!(is_stamp("20261207T235959Z-12"));
        assert!(!is_stamp("20261207T235959Z-"));
        assert!(!is_stamp("head"));
        assert!(!is_stamp("lock"));
    }
}
