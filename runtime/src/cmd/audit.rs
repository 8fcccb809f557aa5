//! `stockade audit verify FILE… [--require-head]`: check an audit log's hash chain and, through
//! its head file `<FILE>.head`, that nothing was cut off its end; several files (rotated logs,
//! oldest first, then the log) are checked as one chain across rotations. Exit 0 when intact, 65
//! naming the first broken record (edited, deleted before it, reordered, malformed), the missing
//! range (truncated) or the file that does not continue the one before it, 66 unreadable.
//!
//! `stockade audit rotate [FILE] [--min-size SIZE] [--after-loss]`: rotate the log
//! ([`crate::audit::rotate`]).

use crate::audit::rotate::{self, Rotation};
use crate::audit::{head_path, read_head, verify_files, Continues};
use crate::cli::{AuditRotateArgs, AuditVerifyArgs};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::{term, Output};
use serde::Serialize;
use std::path::PathBuf;

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
}

#[derive(Serialize)]
struct FileRecords {
    file: String,
    records: usize,
}

/// `audit verify`.
pub fn verify(a: AuditVerifyArgs, out: Output) -> Result<Exit, CmdError> {
    let mut texts = Vec::with_capacity(a.files.len());
    for f in &a.files {
        // The path in the message: the OS error alone ("No such file or directory") names nothing.
        let text = std::fs::read_to_string(f).map_err(|source| {
            let e = crate::fileio::FileError::Read {
                path: f.clone(),
                source,
            };
            CmdError::new(Exit::NoInput, "audit_unreadable", e)
        })?;
        texts.push((f.display().to_string(), text));
    }
    let Some(log) = a.files.last() else {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            "no file given".to_string(),
        ));
    };
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
            "the head was deleted (possibly with the log's tail), or the log predates head files",
        ));
    }
    let hint =
        "the log was altered at or before the named record; compare with a copy shipped elsewhere";
    let (chains, behind) = verify_files(&texts, head.as_ref()).map_err(|e| {
        if texts.len() == 1 {
            // One file: the error as it always was, without the file's name around it.
            CmdError::new(Exit::DataErr, "audit_chain", e.source).hint(hint)
        } else {
            CmdError::new(Exit::DataErr, "audit_chain", e).hint(
                "give the rotated files oldest first, the log last, none left out; otherwise the \
                 named file was altered at or before the named record (or the one before it \
                 was cut short): compare with a copy shipped elsewhere",
            )
        }
    })?;
    let continues = chains.first().and_then(|c| c.continues.clone());
    let records = chains.iter().map(|c| c.hashes.len()).sum();
    let files = if chains.len() > 1 {
        texts
            .iter()
            .zip(&chains)
            .map(|((file, _), c)| FileRecords {
                file: file.clone(),
                records: c.hashes.len(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let stillborn = chains.len() == 1 && records == 1 && rotate::stillborn(log);
    let r = Verified {
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
