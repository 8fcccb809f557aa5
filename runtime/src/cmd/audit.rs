//! `stockade audit verify FILE [--require-head]`: check an audit log's hash chain and, through
//! its head file `<FILE>.head`, that nothing was cut off its end. Exit 0 when intact, 65 naming
//! the first broken record (edited, deleted before it, reordered, malformed) or the missing
//! range (truncated), 66 unreadable.

use crate::audit::{head_path, read_head, verify_with_head};
use crate::cli::AuditVerifyArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::{term, Output};
use serde::Serialize;

#[derive(Serialize)]
struct Verified {
    ok: bool,
    file: String,
    records: usize,
    /// `checked`, `behind_by_one` (a crash between an append and the head's replacement;
    /// nothing is missing) or `missing` (truncation at the end cannot be detected).
    head: &'static str,
}

/// `audit verify`.
pub fn verify(a: AuditVerifyArgs, out: Output) -> Result<Exit, CmdError> {
    // The path in the message: the OS error alone ("No such file or directory") names nothing.
    let text = std::fs::read_to_string(&a.file).map_err(|source| {
        let e = crate::fileio::FileError::Read {
            path: a.file.clone(),
            source,
        };
        CmdError::new(Exit::NoInput, "audit_unreadable", e)
    })?;
    let head = read_head(&a.file).map_err(|e| {
        CmdError::new(Exit::DataErr, "audit_head", e)
            .hint("the head file is damaged; compare the log with a copy shipped elsewhere")
    })?;
    if head.is_none() && a.require_head {
        return Err(CmdError::msg(
            Exit::DataErr,
            "audit_head",
            format!(
                "{} is missing: records cut off the end of the log cannot be detected",
                head_path(&a.file).display()
            ),
        )
        .hint(
            "the head was deleted (possibly with the log's tail), or the log predates head files",
        ));
    }
    let (records, behind) = verify_with_head(&text, head.as_ref()).map_err(|e| {
        CmdError::new(Exit::DataErr, "audit_chain", e)
            .hint("the log was altered at or before the named record; compare with a copy shipped elsewhere")
    })?;
    let r = Verified {
        ok: true,
        file: a.file.display().to_string(),
        records,
        head: match (&head, behind) {
            (None, _) => "missing",
            (Some(_), true) => "behind_by_one",
            (Some(_), false) => "checked",
        },
    };
    out.emit(&r, |r| {
        let head = match r.head {
            "missing" => " (no head file: truncation at the end cannot be detected)",
            "behind_by_one" => ", head one record behind (an interrupted append; nothing missing)",
            _ => ", nothing cut off the end",
        };
        format!(
            "{}: {} record(s), chain intact{head}",
            term(&r.file),
            r.records
        )
    });
    Ok(Exit::Ok)
}
