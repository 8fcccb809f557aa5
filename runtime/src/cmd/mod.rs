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
