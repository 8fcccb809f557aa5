//! Printing results: one JSON document on stdout with `--json`, human text otherwise.
//! Commands build a serializable report once and hand it here, so text and JSON never disagree
//! about what happened.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;
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
                // keys, paths through [`path_text`]); if it ever does, say so loudly, and the
                // result is lost: not 0 with an empty stdout (the binary turns it into 74).
                Err(e) => {
                    let msg = format!("cannot serialize report: {e}");
                    print_stderr(&format!("stockade: internal error: {msg}"));
                    let mut lost = STDOUT_LOST.lock().unwrap_or_else(|p| p.into_inner());
                    lost.get_or_insert(msg);
                }
            }
        } else {
            // Each renderer escapes the untrusted strings it lays out ([`term`]); the whole text
            // is passed through [`term_text`] once more, so that a string a renderer missed can
            // still break no more than its own line.
            let t = text(value);
            if !t.is_empty() {
                print_stdout(&term_text(t.trim_end_matches('\n')));
            }
        }
    }

    /// A human-only notice on stderr (warnings, progress); suppressed in JSON mode, where the
    /// report carries the same information.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.json {
            print_stderr(&format!("stockade: {}", term_text(msg.as_ref())));
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
/// the reader has what it wanted, and the exit code still reports the command's outcome. Any
/// other failure (a full disk, an I/O error) is remembered for [`stdout_lost`]: the result is
/// lost, and a command that would say "done" with 0 must not (`stockade --json list > f` on a
/// full disk left an empty `f` and 0).
pub fn print_stdout(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut lost = STDOUT_LOST.lock().unwrap_or_else(|p| p.into_inner());
            lost.get_or_insert_with(|| e.to_string());
        }
    }
}

/// The first failure of [`print_stdout`] other than a reader that went away.
static STDOUT_LOST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Why the command's output could not be written to stdout, if it could not (a reader that
/// closed the pipe does not count). The binary turns a success whose result is lost into 74.
pub fn stdout_lost() -> Option<String> {
    STDOUT_LOST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Write one line to stderr, with one `write` where it fits, ignoring a failure. Every
/// diagnostic of the runtime goes through here, never `eprintln!`: that macro panics when
/// stderr cannot be written (a reader that went away, `2>&1 | agent` once the agent exits; a
/// full disk), and release builds abort on a panic, so a warning printed mid-operation would
/// kill the runtime on the spot — no plugin shut down, no cgroup removed, no record written,
/// the documented exit code replaced by 134. A message nobody can read is lost; the command
/// goes on and ends as it would have (`clippy::print_stderr` is denied in this crate).
/// Under `stockade serve` the line goes through [`crate::logqueue`] instead: the daemon's one
/// loop never waits for whoever reads its stderr.
pub fn print_stderr(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    if crate::logqueue::push(text.as_bytes()) {
        return;
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Whether a terminal could act on `c` instead of showing it: a control character (C0, DEL,
/// C1: escape sequences, carriage return, backspace, CSI), or an invisible format character
/// that reorders or hides what follows it (bidi marks, embeddings, overrides and isolates,
/// zero-width characters, line and paragraph separators, the BOM) — "Trojan Source" display.
fn terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

fn escape_if(s: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// An untrusted string (from a package, an index, a certificate, a license, a grant, a file
/// name) as it may be printed to a terminal in text output: every control and format character
/// a terminal would act on is shown escaped (`\x1b`, `\r` as `\x0d`, U+202E as `\u{202e}`),
/// newlines and tabs included, so the string stays on its line and reads as what it is. The
/// bytes themselves are kept as they are in JSON output (`--json`), where serde escapes.
pub fn term(s: &str) -> Cow<'_, str> {
    escape_if(s, terminal_unsafe)
}

/// A path in a JSON report (`#[serde(serialize_with = "crate::output::path_text")]`): its
/// text, each byte that is not UTF-8 shown as U+FFFD (`Path::display`'s form, the one error
/// messages use). serde's own form of a path fails on such bytes, which lost the whole report:
/// `--json keygen -o` a directory named in Latin-1 printed nothing and exited 0 (audit-171).
pub fn path_text<S: serde::Serializer>(
    p: &impl AsRef<std::path::Path>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.as_ref().to_string_lossy())
}

/// [`path_text`] for an optional path (`null` when absent).
pub fn opt_path_text<S: serde::Serializer>(
    p: &Option<std::path::PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&*p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// [`term`] for a path (a file or directory name is untrusted too), as `Path::display` shows
/// it.
pub fn term_path(p: &std::path::Path) -> String {
    term(&p.display().to_string()).into_owned()
}

/// [`term`] for text laid out by us, as a whole: newlines and tabs are kept, everything else a
/// terminal would act on is escaped. The last line of defence in [`Output::emit`],
/// [`Output::note`] and the error printer; renderers still escape each untrusted field with
/// [`term`], which alone keeps an embedded newline from forging a line.
pub fn term_text(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| c != '\n' && c != '\t' && terminal_unsafe(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// audit-171: a path that is not UTF-8 is its lossy text in a JSON report; a report whose
    /// serialization fails anyway is a lost result (74), not an empty stdout and 0.
    #[test]
    fn paths_not_utf8_are_lossy_text_and_a_failed_report_is_lost() {
        use std::os::unix::ffi::OsStrExt;
        use std::path::{Path, PathBuf};
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/odd-\xff"));
        #[derive(Serialize)]
        struct Shown {
            #[serde(serialize_with = "path_text")]
            p: PathBuf,
            #[serde(serialize_with = "opt_path_text")]
            q: Option<PathBuf>,
            #[serde(serialize_with = "opt_path_text")]
            none: Option<PathBuf>,
        }
        let v = serde_json::to_value(Shown {
            p: odd.clone(),
            q: Some(odd.clone()),
            none: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"p": "/tmp/odd-\u{fffd}", "q": "/tmp/odd-\u{fffd}", "none": null})
        );
        assert_eq!(
            serde_json::to_value(Shown {
                p: "/a b".into(),
                q: None,
                none: None
            })
            .unwrap()["p"],
            "/a b"
        );
        #[derive(Serialize)]
        struct Raw<'a> {
            p: &'a Path,
        }
        assert!(stdout_lost().is_none());
        Output { json: true }.emit(&Raw { p: &odd }, |_| String::new());
        assert!(
            stdout_lost().is_some_and(|e| e.contains("cannot serialize report")),
            "{:?}",
            stdout_lost()
        );
    }

    #[test]
    fn term_escapes_controls_and_format_characters() {
        assert!(matches!(term("plain caf\u{e9} \u{4e2d}"), Cow::Borrowed(_)));
        assert_eq!(
            term("x\u{1b}[31mRED\u{1b}[0m\rentrypoint"),
            "x\\x1b[31mRED\\x1b[0m\\x0dentrypoint"
        );
        assert_eq!(term("a\nb\tc\u{7f}\u{9b}"), "a\\x0ab\\x09c\\x7f\\u{9b}");
        for (c, shown) in [
            ('\u{202A}', "\\u{202a}"),
            ('\u{202E}', "\\u{202e}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{200E}', "\\u{200e}"),
            ('\u{200F}', "\\u{200f}"),
            ('\u{061C}', "\\u{61c}"),
        ] {
            assert_eq!(term(&format!("A{c}B")), format!("A{shown}B"));
        }
        assert_eq!(term_text("a\nb\t\u{1b}\u{202e}"), "a\nb\t\\x1b\\u{202e}");
    }
}
