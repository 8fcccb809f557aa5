//! One module per subcommand. Each `run` returns the exit status on success or a [`CmdError`]
//! carrying its own; `main` prints.

pub mod exec;

use crate::cli::{
    AuditCommand, CaCommand, Command, Deferred as D, GrantCommand, NodeCommand, NodeLicenseCommand,
    PolicyCommand, SourceCommand,
};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::Output;

pub mod audit;
pub mod ca;
pub mod config_audit;
pub mod grant;
pub mod http_bridge;
pub mod inspect;
pub mod keygen;
pub mod node;
pub mod pack;
pub mod policy;
pub mod run;
pub mod serve;
pub mod source;
pub mod store;
pub mod verify;

/// The end of a validity of `days` from `now` (Unix seconds): a certificate's, a revocation
/// list's or a license's (`ca`), a grant's (`grant issue`). A `--now` so late that the end is
/// past `u64::MAX` is a usage error, refused before anything is written: the sum overflowed (a
/// panic in a debug build, a window that wrapped round to 1970 in a release one, and a grant's
/// window silently cut short where it saturated).
pub(crate) fn valid_until(now: u64, days: u32) -> Result<u64, CmdError> {
    const DAY: u64 = 86_400;
    if days == 0 {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            "--days must be at least 1",
        ));
    }
    now.checked_add(u64::from(days) * DAY).ok_or_else(|| {
        CmdError::msg(
            Exit::Usage,
            "usage",
            format!(
                "--now {now} plus --days {days} is past the largest time a document can hold \
                 ({})",
                u64::MAX
            ),
        )
    })
}

/// Write a command's output file (a signed package, an issued certificate, license or grant).
/// One that exists is refused with 73 unless `force`, the rule `keygen` follows too: an issued
/// artifact (a certificate's random serial, a package already handed out) is never replaced by
/// accident. Checked at the write, after the inputs (a bad input is reported as such first):
/// without `force` the new file is linked into place only if the name is still free (no
/// check-then-write race); with it, replaced atomically.
pub(crate) fn write_output(
    path: &std::path::Path,
    bytes: &[u8],
    force: bool,
) -> Result<(), CmdError> {
    let written = if force {
        crate::fileio::write_atomic(path, bytes, 0o644)
    } else {
        crate::fileio::write_atomic_new(path, bytes, 0o644)
    };
    written.map_err(|e| {
        if e.is_exists() {
            output_exists(path)
        } else {
            output_error(e)
        }
    })
}

/// An output that exists, refused (73) without `force` before a command reads its secret key:
/// nobody types a password for a file that will not be written. [`write_output`] still decides
/// at the write (the name may be taken meanwhile); this is only the early word.
pub(crate) fn refuse_existing_output(path: &std::path::Path, force: bool) -> Result<(), CmdError> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(output_exists(path));
    }
    Ok(())
}

/// An output that cannot be written (73 `output`).
pub(crate) fn output_error(e: crate::fileio::FileError) -> CmdError {
    CmdError::new(Exit::CantCreate, "output", e)
        .hint("check that the output directory exists and is writable")
}

fn output_exists(path: &std::path::Path) -> CmdError {
    CmdError::msg(
        Exit::CantCreate,
        "output",
        format!(
            "{} already exists and --force was not given",
            path.display()
        ),
    )
    .hint("choose another output name, or pass --force to replace it")
}

/// Dispatch a parsed command line.
pub fn run(command: Command, out: Output) -> Result<Exit, CmdError> {
    match command {
        Command::Keygen(D(a)) => keygen::run(a, out),
        Command::Ca(D(CaCommand::Init(a))) => ca::init(a, out),
        Command::Ca(D(CaCommand::Issue(a))) => ca::issue(a, out),
        Command::Ca(D(CaCommand::Revoke(a))) => ca::revoke(a, out),
        Command::Ca(D(CaCommand::License(a))) => ca::license(a, out),
        Command::Pack(D(a)) => pack::run(a, out),
        Command::Verify(D(a)) => verify::run(a, out),
        Command::Inspect(D(a)) => inspect::run(a, out),
        Command::Node(D(NodeCommand::Info(a))) => node::info(a, out),
        Command::Node(D(NodeCommand::License(NodeLicenseCommand::Install(a)))) => {
            node::license_install(a, out)
        }
        Command::Exec(D(a)) => exec::run(a, out),
        Command::Run(D(a)) => run::run(a, out),
        Command::Serve(D(a)) => serve::run(a, out),
        Command::HttpBridge => http_bridge::run(),
        Command::Policy(D(PolicyCommand::Lint(a))) => policy::lint(a, out),
        Command::Policy(D(PolicyCommand::Explain(a))) => policy::explain(a, out),
        Command::Policy(D(PolicyCommand::Diff(a))) => policy::diff(a, out),
        Command::Policy(D(PolicyCommand::Schema)) => policy::schema(out),
        Command::Grant(D(GrantCommand::Issue(a))) => grant::issue(a, out),
        Command::Grant(D(GrantCommand::Verify(a))) => grant::verify(a, out),
        Command::Audit(D(AuditCommand::Verify(a))) => audit::verify(a, out),
        Command::Audit(D(AuditCommand::Rotate(a))) => audit::rotate(a, out),
        Command::Install(D(a)) => store::install(a, out),
        Command::List(D(a)) => store::list(a, out),
        Command::Remove(D(a)) => store::remove(a, out),
        Command::Update(D(a)) => store::update(a, out),
        Command::Source(D(SourceCommand::Add(a))) => source::add(a, out),
        Command::Source(D(SourceCommand::List(a))) => source::list(a, out),
        Command::Source(D(SourceCommand::Remove(a))) => source::remove(a, out),
        Command::Source(D(SourceCommand::Refresh(a))) => source::refresh(a, out),
        Command::Source(D(SourceCommand::Repin(a))) => source::repin(a, out),
        Command::Source(D(SourceCommand::RepinAuthor(a))) => source::repin_author(a, out),
    }
}
