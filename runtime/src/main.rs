//! The `stockade` binary: parse arguments, dispatch, print the error chain once, exit with the
//! documented code. No logic lives here.

// Diagnostics go through `output::print_stderr`: `eprintln!` panics on a stderr that cannot be
// written, which aborts a release build mid-operation (the runtime's cleanup skipped).
#![deny(clippy::print_stderr)]

use clap::Parser;
use stockade_runtime::cli::{self, Cli};
use stockade_runtime::{cmd, exit::Exit, output, output::Output};

fn main() -> std::process::ExitCode {
    // First, before any thread: the runtime's own waits must not be as late as its caller's
    // timer slack allows (sandbox/process_state.rs says why). A refusal is met again, failing
    // closed, where a launch sets the plugin's.
    let _ = stockade_runtime::sandbox::adopt_kernel_timer_slack();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version itself; anything else is a usage error (EX_USAGE, 64),
            // not clap's default 2, so callers can rely on sysexits semantics — and with
            // `--json` it is the JSON error document every other failure prints.
            if !e.use_stderr() {
                let _ = e.print();
                return Exit::Ok.into();
            }
            if cli::json_requested(std::env::args_os()) {
                output::print_stdout(&cli::usage_error(&e).to_json().to_string());
            } else {
                let _ = e.print();
            }
            return Exit::Usage.into();
        }
    };
    // A write at the file-size limit fails with EFBIG rather than ending the runtime mid-write
    // (sys::ignore_file_size_signal). Not `http-bridge`: inside the sandbox, it starts the
    // plugin, which would inherit the ignored signal and not die at its own `fsize`. (It cannot
    // fail: SIGXFSZ is a valid signal to ignore.)
    if !matches!(cli.command, cli::Command::HttpBridge) {
        let _ = stockade_runtime::sys::ignore_file_size_signal();
    }
    let out = Output { json: cli.json };
    let code = run(cli, out);
    // `serve`'s last log lines, queued (`logqueue`): a second at most for a stalled reader.
    stockade_runtime::logqueue::flush(std::time::Duration::from_secs(1));
    code
}

fn run(cli: Cli, out: Output) -> std::process::ExitCode {
    match cmd::run(cli.command, out) {
        Ok(code) => match (code, output::stdout_lost()) {
            // A success whose result never reached stdout (a full disk) is not reported as one:
            // a caller would take the empty output for the answer. What the command did stays
            // done, and stderr says so.
            (Exit::Ok, Some(why)) => {
                output::print_stderr(&format!(
                    "stockade: error: the command completed, but its output could not be \
                     written to stdout: {why}"
                ));
                Exit::IoErr.into()
            }
            _ => code.into(),
        },
        Err(err) => {
            if out.json {
                output::print_stdout(&err.to_json().to_string());
            } else {
                output::print_stderr(&err.render_text());
            }
            err.exit().into()
        }
    }
}

/// AddressSanitizer's options where `ASAN_OPTIONS` does not reach (sanitizer builds only,
/// `--cfg stockade_asan`, scripts/sanitize.sh): inside a sandbox — `http-bridge`, this binary
/// run as a plugin's program, gets the sandbox's fixed environment — LeakSanitizer's exit-time
/// check ptraces the process, which the seccomp filter kills, and the process then hangs until
/// the runtime kills it (exit status 137 instead of the plugin's). The host-side processes get
/// `ASAN_OPTIONS` from the script, which overrides this.
#[cfg(stockade_asan)]
#[no_mangle]
pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
    c"detect_leaks=0".as_ptr()
}
