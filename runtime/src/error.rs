//! The error a command hands back to `main`: a typed cause chain plus the exit code and, where we
//! know one, a hint that tells the user what to do next.
//!
//! Module errors stay typed (`thiserror` enums, one per module, causes linked with `#[source]`);
//! each module converts into [`CmdError`] at the command boundary by choosing the exit code. The
//! chain is printed exactly once, by [`CmdError::render_text`] or [`CmdError::to_json`].

use crate::exit::Exit;
use crate::output::{term, term_text};
use serde_json::json;
use std::error::Error as StdError;

/// A failed command: what went wrong (with its `source()` chain), which documented exit code it
/// maps to, a stable machine-readable `kind`, and an optional next step for the user.
#[derive(Debug)]
pub struct CmdError {
    exit: Exit,
    kind: &'static str,
    hint: Option<String>,
    err: Box<dyn StdError + Send + Sync + 'static>,
}

impl CmdError {
    /// Wrap a typed error with its exit code and stable kind (e.g. `"signature"`). The pair
    /// must be one of [`crate::kinds::KINDS`]: a debug build (every test) stops on one that is
    /// not, an undocumented kind or a kind with another code than its documented one.
    pub fn new(exit: Exit, kind: &'static str, err: impl StdError + Send + Sync + 'static) -> Self {
        debug_assert_eq!(
            crate::kinds::exit_of(kind),
            Some(exit),
            "error kind `{kind}` with exit {}: not as listed in runtime/src/kinds.rs",
            exit.code()
        );
        Self {
            exit,
            kind,
            hint: None,
            err: Box::new(err),
        }
    }

    /// An error that is only a message (usage mistakes found after argument parsing).
    pub fn msg(exit: Exit, kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(exit, kind, Message(message.into()))
    }

    /// Attach what the user should do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// What the user should do about it, if said ([`Self::hint`]): the CLI prints it, and
    /// `serve` hands it to an agent in a `load_failed`'s `data.hint`.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The exit code this error maps to.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The stable, machine-readable error kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The error and each of its causes, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.err.to_string()];
        let mut cur: Option<&(dyn StdError + 'static)> = self.err.source();
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out
    }

    /// Human-readable rendering: the message, each cause on its own line, then the hint.
    /// Messages embed untrusted strings (names, paths, comments from packages and indexes):
    /// each is printed through [`term`], so none can move the cursor, repaint the line or
    /// start a line of its own.
    pub fn render_text(&self) -> String {
        let chain = self.chain();
        let mut s = format!("stockade: error: {}", term(&chain[0]));
        for cause in &chain[1..] {
            s.push_str("\n  caused by: ");
            s.push_str(&term(cause));
        }
        if let Some(h) = &self.hint {
            s.push_str("\n  hint: ");
            s.push_str(&term_text(h));
        }
        s
    }

    /// Machine-readable rendering used with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let chain = self.chain();
        json!({
            "ok": false,
            "exit_code": self.exit.code(),
            "error": {
                "kind": self.kind,
                "message": chain[0],
                "causes": &chain[1..],
                "hint": self.hint,
            }
        })
    }

    /// The `error` object of [`CmdError::to_json`] with the exit code in it (`exit`): for an
    /// error reported inside a result that goes on, which has no exit code of its own to carry
    /// it (one source's failed refresh among several, `list`'s unreadable sources
    /// configuration).
    pub fn to_json_item(&self) -> serde_json::Value {
        let mut error = self.to_json()["error"].take();
        error["exit"] = json!(self.exit.code());
        error
    }
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.err)
    }
}

/// A plain message error, for [`CmdError::msg`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_is_printed_once_in_order_with_hint() {
        let e = CmdError::new(Exit::IoErr, "audit", Outer(std::io::Error::other("inner")))
            .hint("check the disk");
        assert_eq!(e.chain(), vec!["outer".to_string(), "inner".to_string()]);
        let t = e.render_text();
        assert_eq!(t.matches("inner").count(), 1);
        assert!(t.ends_with("hint: check the disk"));
        let j = e.to_json();
        assert_eq!(j["exit_code"], 74);
        assert_eq!(j["error"]["kind"], "audit");
        assert_eq!(j["error"]["causes"][0], "inner");
        let item = e.to_json_item();
        assert_eq!(item["exit"], 74);
        assert_eq!(item["kind"], "audit");
        assert_eq!(item["hint"], "check the disk");
    }

    #[test]
    fn text_rendering_escapes_what_messages_embed() {
        let e = CmdError::new(
            Exit::DataErr,
            "statement",
            Outer(std::io::Error::other("path `a\u{1b}[2J\rb\n  hint: ok`")),
        );
        let t = e.render_text();
        assert!(!t.contains('\u{1b}') && !t.contains('\r'), "{t:?}");
        assert_eq!(t.lines().count(), 2, "{t}");
        // JSON keeps the message as it is (serde escapes it).
        assert!(e.to_json()["error"]["causes"][0]
            .as_str()
            .unwrap()
            .contains('\u{1b}'));
    }
}
