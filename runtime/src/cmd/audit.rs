//! `stockade audit verify FILE… [--require-head] [--follow]`: check an audit log's hash chain
//! and, through its head file `<FILE>.head`, that nothing was cut off its end; several files
//! (rotated logs, oldest first, then the log) are checked as one chain across rotations, and
//! `--follow` finds them itself from the log back through the rotation records. Exit 0 when
//! intact, 65 naming the first broken record (edited, deleted before it, reordered, malformed),
//! the missing range (truncated), the file that does not continue the one before it or (with
//! `--follow`) a rotated file the chain names that is gone, 66 unreadable.
//!
//! `stockade audit rotate [FILE] [--min-size SIZE] [--after-loss]`: rotate the log
//! ([`crate::audit::rotate`]).

use crate::audit::rotate::{self, Rotation};
use crate::audit::{head_path, read_head, stream_files, Continues, FilesError, StreamError};
use crate::cli::{AuditRotateArgs, AuditVerifyArgs};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::{term, Output};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Verified {
    ok: bool,
    /// The log (the last file given).
    file: String,
    /// Records in all the files given.
    records: usize,
    /// `checked`, `behind_by_one` (a crash between an append — or a rotation — and the head's
    /// replacement; nothing is missing) or `missing` (truncation at the end cannot be detected).
    head: &'static str,
    /// What the first file's first record says it continues (a rotated log's new file).
    #[serde(skip_serializing_if = "Option::is_none")]
    continues: Option<Continues>,
    /// Each file and its records, when several were given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileRecords>,
    /// The only file given holds nothing but a rotation record naming itself: a rotation
    /// killed before its commit (the next rotation removes it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stillborn: bool,
    /// `--follow` only, when the oldest file found does not start the chain: why the file it
    /// continues is not there — `removed_by_keep` (a later rotation record names it among those
    /// `[audit] keep` removed) or `lost` (it starts after a loss: `audit rotate --after-loss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    predecessor: Option<&'static str>,
}

#[derive(Serialize)]
struct FileRecords {
    file: String,
    records: usize,
}

/// `audit verify`.
pub fn verify(a: AuditVerifyArgs, out: Output) -> Result<Exit, CmdError> {
    let Some(log) = a.files.last() else {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            "no file given".to_string(),
        ));
    };
    // A rotation while the files are read (the timer's, `rotate_size`'s) moves the log from
    // under the reader: the files found before no longer chain to the file the log's name
    // leads to (65 "does not continue"), or one of them is gone (`[audit] keep`: 66) — a
    // false alarm, the longer the read the likelier (a large log takes seconds). So a check
    // that fails while the log's name came to lead to another file is made again on the files
    // as they are then, a few times at most; a failure on a log that did not change is the
    // log's, said at once.
    const ATTEMPTS: usize = 3;
    let identity = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(log).ok().map(|m| (m.dev(), m.ino()))
    };
    let mut attempt = 1;
    let r = loop {
        let before = identity();
        match verify_once(&a, log) {
            Ok(r) => break r,
            Err(_) if attempt < ATTEMPTS && identity() != before => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    out.emit(&r, |r| {
        let head = match r.head {
            "missing" => " (no head file: truncation at the end cannot be detected)",
            "behind_by_one" => ", head one record behind (an interrupted append; nothing missing)",
            _ => ", nothing cut off the end",
        };
        let mut t = if r.files.is_empty() {
            format!(
                "{}: {} record(s), chain intact{head}",
                term(&r.file),
                r.records
            )
        } else {
            let each: Vec<String> = r
                .files
                .iter()
                .map(|f| format!("{} ({})", term(&f.file), f.records))
                .collect();
            format!(
                "{}: {} record(s) in {} files, one chain intact{head}",
                each.join(" → "),
                r.records,
                r.files.len()
            )
        };
        if let Some(c) = &r.continues {
            let from = c.file.as_deref().map_or_else(
                || "the records its head counted before a loss".to_string(),
                |f| term(f).to_string(),
            );
            t.push_str(&format!(
                "\n  continues {from}: {} record(s), last hash {}",
                c.records, c.last_hash
            ));
        }
        match r.predecessor {
            Some("removed_by_keep") => t.push_str(
                "\n  the file before the oldest one was removed by `[audit] keep`, as a later \
                 rotation record says: the chain is proven from there on",
            ),
            Some(_) => t.push_str(
                "\n  the oldest file starts after a loss (`audit rotate --after-loss`): the \
                 records before it were not where the head counted them",
            ),
            None => {}
        }
        if r.stillborn {
            t.push_str(
                "\n  a rotation killed before its commit left this file (nothing in it but the \
                 rotation record naming itself); the next `stockade audit rotate` removes it",
            );
        }
        t
    });
    Ok(Exit::Ok)
}

/// One check of the files of `audit verify` (`a`; `log` its last file), as they are now.
fn verify_once(a: &AuditVerifyArgs, log: &Path) -> Result<Verified, CmdError> {
    let (files, predecessor) = if a.follow {
        if a.files.len() > 1 {
            return Err(CmdError::msg(
                Exit::Usage,
                "usage",
                "--follow takes the log alone: it finds the rotated files itself".to_string(),
            ));
        }
        follow(log)?
    } else {
        let files = a
            .files
            .iter()
            .map(|f| (f.display().to_string(), f.clone()))
            .collect();
        (files, None)
    };
    // The head is read before the log (its damage or absence said first, and the record it
    // names watched as the log is read) and again after it, which is the one checked.
    let read_the_head = || {
        let head = read_head(log).map_err(|e| {
            CmdError::new(Exit::DataErr, "audit_head", e)
                .hint("the head file is damaged; compare the log with a copy shipped elsewhere")
        })?;
        if head.is_none() && a.require_head {
            return Err(CmdError::msg(
                Exit::DataErr,
                "audit_head",
                format!(
                    "{} is missing: records cut off the end of the log cannot be detected",
                    head_path(log).display()
                ),
            )
            .hint(
                "the head was deleted (possibly with the log's tail), or the log predates head \
                 files",
            ));
        }
        Ok(head)
    };
    let head = read_the_head()?;
    let hint =
        "the log was altered at or before the named record; compare with a copy shipped elsewhere";
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    // Each file read line by line, one at a time: a log of any size is verified in bounded
    // memory (crate::audit::ChainCheck).
    let streamed = stream_files(&names, head.as_ref(), |i| {
        if i + 1 == files.len() {
            // Tests append here, as a running daemon may while a large log is read.
            crate::sys::stop_at("audit-verify-reading");
        }
        open_log(&files[i].1)
    });
    // The log's end checked against its head as it is once the log is read: a daemon may
    // append while a large log is read (seconds), and a head read before it would be behind
    // by every record appended meanwhile — a live log reported as one whose head was put back
    // (65). Read after, it is behind by one at most (an append between its log write and its
    // head's replacement), as when the whole text was read first.
    let failed = |e| match e {
        StreamError::Read { file, source } => {
            let e = crate::fileio::FileError::Read {
                path: PathBuf::from(file),
                source,
            };
            CmdError::new(Exit::NoInput, "audit_unreadable", e)
        }
        // A log a newer Stockade wrote: said as such, not as an altered log.
        StreamError::Chain(e)
            if matches!(e.source, crate::audit::ChainError::NewerFormat { .. }) =>
        {
            let c = if files.len() == 1 {
                CmdError::new(Exit::Config, "audit.newer_format", e.source)
            } else {
                CmdError::new(Exit::Config, "audit.newer_format", e)
            };
            c.hint(crate::audit::NEWER_FORMAT_HINT)
        }
        // One file: the error as it always was, without the file's name around it.
        StreamError::Chain(e) if files.len() == 1 => {
            CmdError::new(Exit::DataErr, "audit_chain", e.source).hint(hint)
        }
        StreamError::Chain(e) => CmdError::new(Exit::DataErr, "audit_chain", e).hint(
            "give the rotated files oldest first, the log last, none left out; otherwise the \
             named file was altered at or before the named record (or the one before it \
             was cut short): compare with a copy shipped elsewhere",
        ),
    };
    let chains = streamed.map_err(failed)?;
    // The log's end checked against its head as it is once the log is read: a daemon may
    // append while a large log is read (seconds), and a head read before it would be behind
    // by every record appended meanwhile — a live log reported as one whose head was put back
    // (65). Read after, it is behind by one at most (an append between its log write and its
    // head's replacement), as when the whole text was read first.
    let head = read_the_head()?;
    let behind = match names.last().zip(chains.last()) {
        Some((name, last)) => last.against_head(head.as_ref()).map_err(|source| {
            failed(StreamError::Chain(FilesError {
                file: name.clone(),
                source,
            }))
        })?,
        None => false,
    };
    let continues = chains.first().and_then(|c| c.continues.clone());
    let records = chains.iter().map(|c| c.records).sum();
    let files = if chains.len() > 1 {
        names
            .iter()
            .zip(&chains)
            .map(|(file, c)| FileRecords {
                file: file.clone(),
                records: c.records,
            })
            .collect()
    } else {
        Vec::new()
    };
    let stillborn = chains.len() == 1 && records == 1 && rotate::stillborn(log);
    Ok(Verified {
        ok: true,
        file: log.display().to_string(),
        records,
        head: match (&head, behind) {
            (None, _) => "missing",
            (Some(_), true) => "behind_by_one",
            (Some(_), false) => "checked",
        },
        continues,
        files,
        stillborn,
        predecessor,
    })
}

/// One file of the chain, opened to be read line by line (66 `audit_unreadable` naming it
/// when it cannot be opened: through [`stream_files`]).
fn open_log(f: &Path) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    std::fs::File::open(f).map(std::io::BufReader::new)
}

/// A file's first record, if its first non-blank line is one: read up to that line alone
/// (66 `audit_unreadable` naming the file when it cannot be read).
fn first_record_of(f: &Path) -> Result<Option<crate::audit::Record>, CmdError> {
    use std::io::BufRead;
    // The path in the message: the OS error alone ("No such file or directory") names nothing.
    let unreadable = |source| {
        let e = crate::fileio::FileError::Read {
            path: f.to_path_buf(),
            source,
        };
        CmdError::new(Exit::NoInput, "audit_unreadable", e)
    };
    let mut reader = open_log(f).map_err(unreadable)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(unreadable)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            return Ok(serde_json::from_str(line.trim_end_matches(['\n', '\r'])).ok());
        }
    }
}

/// `--follow`: the log and the rotated files it continues, oldest first, found from the log
/// back through each file's first record (a rotation record's `detail.previous.file`, a plain
/// name in the log's directory) — not by listing the directory, whose `<log>.*` also holds the
/// head and lock files, leftovers of killed rotations, and names that sort `-10` before `-2`.
/// It stops at a file that does not continue another (the chain's start, or a first record
/// [`stream_files`] then reports as broken), at one continuing a loss (`lost`), or at one
/// whose predecessor a later rotation record says `[audit] keep` removed (`removed_by_keep`).
/// A named file that is missing otherwise fails (65): that gap is what a deleted file looks
/// like. Each name is taken once, so files naming each other cannot loop.
fn follow(log: &Path) -> Result<FollowedFiles, CmdError> {
    let broken = |message: String| CmdError::msg(Exit::DataErr, "audit_chain", message);
    let mut files = vec![(log.display().to_string(), log.to_path_buf())];
    let mut seen: HashSet<String> = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .into_iter()
        .collect();
    let mut removed: HashSet<String> = HashSet::new();
    let predecessor = loop {
        let (newer, path) = files.last().expect("the log is there");
        let Some(first) = first_record_of(path)? else {
            break None;
        };
        let names = (first.event == crate::audit::Event::Rotation)
            .then(|| first.detail.get("removed").and_then(|v| v.as_array()))
            .flatten();
        if let Some(names) = names {
            removed.extend(names.iter().filter_map(|n| n.as_str().map(str::to_string)));
        }
        let Some(c) = crate::audit::continues(&first) else {
            break None;
        };
        let Some(name) = c.file else {
            break Some("lost");
        };
        let plain = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
        if !plain {
            return Err(broken(format!(
                "{newer} begins by continuing {name:?}, which is not a file name in the log's directory"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(broken(format!(
                "{newer} begins by continuing {name}, a file already in the chain after it: the files loop"
            )));
        }
        let path = log.with_file_name(&name);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if removed.contains(&name) {
                    break Some("removed_by_keep");
                }
                return Err(broken(format!(
                    "{} is missing: {newer} begins by continuing it ({} record(s), last hash {}), \
                     and no rotation record says [audit] keep removed it",
                    path.display(),
                    c.records,
                    c.last_hash
                ))
                .hint("it was deleted or moved: put it back, or give the files still there explicitly (oldest first, the log last) to prove the chain from the oldest one"));
            }
            _ => {}
        }
        files.push((path.display().to_string(), path));
    };
    files.reverse();
    Ok((files, predecessor))
}

/// The files `--follow` found (name and path), oldest first, and why the oldest one's
/// predecessor is not among them when it continues one.
type FollowedFiles = (Vec<(String, PathBuf)>, Option<&'static str>);

#[derive(Serialize)]
struct Rotated {
    ok: bool,
    file: String,
    /// Whether the log was rotated (`false`: it holds no record, or is below `--min-size`).
    rotated: bool,
    /// Why not, when it was not: `empty` or `below_min_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'static str>,
    /// The old records' name now.
    #[serde(skip_serializing_if = "Option::is_none")]
    rotated_to: Option<String>,
    /// The new log's first record (event `rotation`; outcome `ok`, or `after_loss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<crate::audit::Record>,
    /// Leftovers of rotations killed before their commit, removed (the rotated files `keep`
    /// removed are in `record.detail.removed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leftovers_removed: Vec<String>,
}

/// `audit rotate`.
pub fn rotate(a: AuditRotateArgs, out: Output) -> Result<Exit, CmdError> {
    // Without FILE: the operator policy's log, and its `[audit] keep`.
    let (file, keep): (PathBuf, Option<u32>) = match a.file {
        Some(f) => (f, None),
        None => {
            let defaults = crate::cmd::verify::operator_defaults(&a.root.policy_root)?;
            let file = defaults.audit.file.map(PathBuf::from).ok_or_else(|| {
                CmdError::msg(
                    Exit::Usage,
                    "usage",
                    "the operator policy has no `[audit] file` to rotate".to_string(),
                )
                .hint("name the log: `stockade audit rotate FILE`")
            })?;
            (file, defaults.audit.keep)
        }
    };
    let opts = rotate::Options {
        after_loss: a.after_loss,
        min_size: a.min_size,
        keep,
    };
    let done = rotate::rotate(&file, opts).map_err(crate::audit::into_cmd)?;
    let mut r = Rotated {
        ok: true,
        file: file.display().to_string(),
        rotated: false,
        skipped: None,
        rotated_to: None,
        record: None,
        leftovers_removed: Vec::new(),
    };
    match done {
        Rotation::Rotated {
            rotated_to,
            record,
            removed,
        } => {
            r.rotated = true;
            r.rotated_to = Some(rotated_to.display().to_string());
            r.record = Some(*record);
            r.leftovers_removed = removed.iter().map(|p| p.display().to_string()).collect();
        }
        Rotation::Empty => r.skipped = Some("empty"),
        Rotation::BelowSize { .. } => r.skipped = Some("below_min_size"),
    }
    out.emit(&r, |r| {
        let mut t = match (&r.rotated_to, &r.record, r.skipped) {
            (to, Some(rec), _) if rec.outcome == "after_loss" => format!(
                "{} restarted after a loss: the new log chains to the last of the {} record(s) \
                 its head counted (wherever they were moved: `stockade audit verify THAT_FILE \
                 {}` proves nothing is missing); {}",
                term(&r.file),
                rec.detail["previous"]["records"],
                term(&r.file),
                match to {
                    Some(to) => format!(
                        "the {} record(s) it still held are now {}",
                        rec.detail["found"]["records"],
                        term(to)
                    ),
                    None => String::new(),
                }
            ),
            (Some(to), Some(rec), _) => format!(
                "{} rotated: its {} record(s) are now {}; the new log continues them",
                term(&r.file),
                rec.detail["previous"]["records"],
                term(to)
            ),
            (_, _, Some("below_min_size")) => {
                format!("{}: below --min-size, not rotated", term(&r.file))
            }
            _ => format!("{}: no record in it, not rotated", term(&r.file)),
        };
        let pruned = r
            .record
            .as_ref()
            .and_then(|rec| rec.detail["removed"].as_array());
        for n in pruned.into_iter().flatten().filter_map(|n| n.as_str()) {
            t.push_str(&format!("\n  removed {} ([audit] keep)", term(n)));
        }
        for p in &r.leftovers_removed {
            t.push_str(&format!(
                "\n  removed {} (a rotation killed before its commit)",
                term(p)
            ));
        }
        t
    });
    Ok(Exit::Ok)
}
