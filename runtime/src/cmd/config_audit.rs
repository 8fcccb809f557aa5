//! The `configuration` audit records of the CLI's trust configuration changes (`stockade
//! source add|remove|repin|repin-author`, `stockade node license install`): each change written
//! `begun` before it is saved and `ok` (or `failed`) after, a refused one `refused` — the same
//! shape as the store's records (`cmd::store`). docs/audit.md "Configuration changes and
//! bypassed guards".

use crate::audit::{append_or_fail, AuditLog, Event, Record};
use crate::cli::PolicyRootArg;
use crate::error::CmdError;
use crate::output::Output;

/// The operator policy's audit log, which records every change of the trust configuration
/// the CLI makes (docs/audit.md "Configuration changes and bypassed guards").
pub(crate) fn audit_log(root: &PolicyRootArg) -> Result<AuditLog, CmdError> {
    let defaults = crate::cmd::verify::operator_defaults(&root.policy_root)?;
    Ok(AuditLog::from_policy(&defaults.audit))
}

/// A `configuration` record of `change` (`source_add`, `source_remove`, `source_repin`,
/// `author_repin`, `license_install`), `detail` saying what changed; `detail.uid` the caller's
/// real uid.
pub(crate) fn config_record(change: &str, mut detail: serde_json::Value) -> Record {
    let mut rec = Record::new(Event::Configuration, BEGUN);
    detail["change"] = change.into();
    detail["uid"] = crate::sys::real_uid().into();
    rec.detail = detail;
    rec
}

/// The outcome of the record written before a change is saved ([`audited`]).
const BEGUN: &str = "begun";

/// A change refused with nothing changed (`e`): recorded `refused` with its `detail.kind`; a
/// record that cannot be written fails the command with that error instead (74), as a
/// refused removal does.
pub(crate) fn refused(log: &AuditLog, mut rec: Record, e: CmdError) -> CmdError {
    rec.outcome = "refused".into();
    rec.detail["kind"] = e.kind().into();
    match append_or_fail(log, rec) {
        Ok(()) => e,
        Err(audit) => audit,
    }
}

/// Where the saving of a change is ([`audited`]): the name of the file being written, set by
/// the save before each write. A change is several files written one after another, and one
/// failing after another was written leaves part of it made: the `failed` record names the
/// step it failed at (`detail.step`), the steps before it in that change's order having been
/// written (docs/audit.md "Configuration changes and bypassed guards").
#[derive(Debug, Default)]
pub(crate) struct Step(Option<&'static str>);

impl Step {
    /// The save is writing `name` now.
    pub(crate) fn at(&mut self, name: &'static str) {
        self.0 = Some(name);
    }
}

/// Save a trust configuration change (`save`) between its records, as the store commits a
/// change (`cmd::store::commit_audited`): `begun` first — not written, the change is not made
/// (74, nothing changed: no unrecorded re-pin) —, then `ok`, or `failed` with `detail.error`
/// and `detail.step`, the step `save` reached ([`Step`]). An `ok` record that cannot be
/// written after the change was saved no longer undoes it: the command succeeds with
/// `audit_error` in its report and a warning on stderr.
pub(crate) fn audited<T>(
    log: &AuditLog,
    rec: Record,
    out: Output,
    what: &str,
    save: impl FnOnce(&mut Step) -> Result<T, CmdError>,
) -> Result<(T, Option<serde_json::Value>), CmdError> {
    append_or_fail(log, rec.clone())?;
    let mut step = Step::default();
    let done = match save(&mut step) {
        Ok(done) => done,
        Err(e) => {
            let mut rec = rec;
            rec.outcome = "failed".into();
            rec.detail["error"] = e.chain().join(": ").into();
            rec.detail["kind"] = e.kind().into();
            if let Some(s) = step.0 {
                rec.detail["step"] = s.into();
            }
            let _ = append_or_fail(log, rec);
            return Err(e);
        }
    };
    let mut rec = rec;
    rec.outcome = "ok".into();
    let audit_error = append_or_fail(log, rec).err().map(|e| e.to_json_item());
    crate::cmd::store::note_audit_error(out, what, audit_error.as_ref());
    Ok((done, audit_error))
}
