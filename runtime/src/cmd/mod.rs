//! One module per subcommand. Each `run` returns the exit status on success or a [`CmdError`]
//! carrying its own; `main` prints.

pub mod exec;

use crate::cli::{CaCommand, Command, NodeCommand, NodeLicenseCommand};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::Output;

pub mod ca;
pub mod inspect;
pub mod keygen;
pub mod node;
pub mod pack;
pub mod run;
pub mod serve;
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
    }
}
