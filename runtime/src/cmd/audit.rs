//! `stockade audit verify FILE`: check an audit log's hash chain. Exit 0 when intact, 65 naming
//! the first broken record (edited, deleted before it, reordered, malformed), 66 unreadable.

use crate::audit::verify_chain;
use crate::cli::AuditVerifyArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::Output;
use serde::Serialize;

#[derive(Serialize)]
struct Verified {
    ok: bool,
    file: String,
    records: usize,
}

/// `audit verify`.
pub fn verify(a: AuditVerifyArgs, out: Output) -> Result<Exit, CmdError> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| CmdError::new(Exit::NoInput, "audit_unreadable", e))?;
    let records = verify_chain(&text).map_err(|e| {
        CmdError::new(Exit::DataErr, "audit_chain", e)
            .hint("the log was altered at or before the named record; compare with a copy shipped elsewhere")
    })?;
    let r = Verified {
        ok: true,
        file: a.file.display().to_string(),
        records,
    };
    out.emit(&r, |r| {
        format!("{}: {} record(s), chain intact", r.file, r.records)
    });
    Ok(Exit::Ok)
}
