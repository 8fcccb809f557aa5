//! One module per subcommand. Each `run` returns the exit status on success or a [`CmdError`]
//! carrying its own; `main` prints.

pub mod exec;

use crate::cli::{
    AuditCommand, CaCommand, Command, GrantCommand, NodeCommand, NodeLicenseCommand, PolicyCommand,
    SourceCommand,
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
        Command::Keygen(a) => keygen::run(a, out),
        Command::Ca(CaCommand::Init(a)) => ca::init(a, out),
        Command::Ca(CaCommand::Issue(a)) => ca::issue(a, out),
        Command::Ca(CaCommand::Revoke(a)) => ca::revoke(a, out),
        Command::Ca(CaCommand::License(a)) => ca::license(a, out),
        Command::Pack(a) => pack::run(a, out),
        Command::Verify(a) => verify::run(a, out),
        Command::Inspect(a) => inspect::run(a, out),
        Command::Node(NodeCommand::Info(a)) => node::info(a, out),
        Command::Node(NodeCommand::License(NodeLicenseCommand::Install(a))) => {
            node::license_install(a, out)
        }
        Command::Exec(a) => exec::run(a, out),
        Command::Run(a) => run::run(a, out),
        Command::Serve(a) => serve::run(a, out),
        Command::HttpBridge => http_bridge::run(),
        Command::Policy(PolicyCommand::Lint(a)) => policy::lint(a, out),
        Command::Policy(PolicyCommand::Explain(a)) => policy::explain(a, out),
        Command::Policy(PolicyCommand::Diff(a)) => policy::diff(a, out),
        Command::Policy(PolicyCommand::Schema) => policy::schema(out),
        Command::Grant(GrantCommand::Issue(a)) => grant::issue(a, out),
        Command::Grant(GrantCommand::Verify(a)) => grant::verify(a, out),
        Command::Audit(AuditCommand::Verify(a)) => audit::verify(a, out),
        Command::Install(a) => store::install(a, out),
        Command::List(a) => store::list(a, out),
        Command::Remove(a) => store::remove(a, out),
        Command::Update(a) => store::update(a, out),
        Command::Source(SourceCommand::Add(a)) => source::add(a, out),
        Command::Source(SourceCommand::List(a)) => source::list(a, out),
        Command::Source(SourceCommand::Remove(a)) => source::remove(a, out),
        Command::Source(SourceCommand::Repin(a)) => source::repin(a, out),
        Command::Source(SourceCommand::RepinAuthor(a)) => source::repin_author(a, out),
    }
}
