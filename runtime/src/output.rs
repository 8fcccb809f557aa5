//! Printing results: one JSON document on stdout with `--json`, human text otherwise.
//! Commands build a serializable report once and hand it here, so text and JSON never disagree
//! about what happened.

use serde::Serialize;
use std::io::Write;

/// Where and how a command prints its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print machine-readable JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Print `value` as pretty JSON, or the text that `text` renders from it.
    pub fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => print_stdout(&s),
                // Serialization of our own report types cannot fail (no maps with non-string
                // keys, no custom serializers that error); if it ever does, say so loudly.
                Err(e) => eprintln!("stockade: internal error: cannot serialize report: {e}"),
            }
        } else {
            let t = text(value);
            if !t.is_empty() {
                print_stdout(t.trim_end_matches('\n'));
            }
        }
    }

    /// A human-only notice on stderr (warnings, progress); suppressed in JSON mode, where the
    /// report carries the same information.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.json {
            eprintln!("stockade: {}", msg.as_ref());
        }
    }
}

/// The JSON string form of a unit enum (`signature_status`, `trust_mode`, …), for text output
/// and records that must say exactly what the JSON says.
pub fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Write one line to stdout. A closed stdout (`stockade … | head`) is not an error worth a panic:
/// the reader has what it wanted, and the exit code still reports the command's outcome.
pub fn print_stdout(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
