//! One module per subcommand. Each `run` returns the exit status on success or a [`CmdError`]
//! carrying its own; `main` prints.

pub mod exec;

use crate::cli::{CaCommand, Command, NodeCommand};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::output::Output;

/// Dispatch a parsed command line.
pub fn run(command: Command, out: Output) -> Result<Exit, CmdError> {
    let _ = out;
    match command {
        Command::Keygen(a) => not_yet("keygen", &a),
        Command::Ca(CaCommand::Init(a)) => not_yet("ca init", &a),
        Command::Ca(CaCommand::Issue(a)) => not_yet("ca issue", &a),
        Command::Ca(CaCommand::Revoke(a)) => not_yet("ca revoke", &a),
        Command::Pack(a) => not_yet("pack", &a),
        Command::Verify(a) => not_yet("verify", &a),
        Command::Inspect(a) => not_yet("inspect", &a),
        Command::Node(NodeCommand::Info(a)) => not_yet("node info", &a),
        Command::Exec(a) => exec::run(a, out),
    }
}

/// Placeholder while the skeleton is being filled in; removed before any issue is called done.
fn not_yet(name: &str, args: &dyn std::fmt::Debug) -> Result<Exit, CmdError> {
    Err(CmdError::msg(
        Exit::Software,
        "unimplemented",
        format!("`{name}` is not implemented yet ({args:?})"),
    ))
}
