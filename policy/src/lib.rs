//! # stockade-policy
//!
//! Pure data and decisions for Stockade: the plugin manifest, the fixed capability set and the
//! certificate scopes that bound it, and the sandbox policy file. Nothing in this crate performs a
//! system call or touches the filesystem: every function takes values and returns values, so the
//! decisions that the runtime enforces can be unit- and property-tested without a kernel.
//!
//! ## Why a separate crate
//! Security teams audit *decisions*. Keeping them here, free of `unsafe` and of I/O, means the code
//! a reviewer must read to know what a plugin may do is small and self-contained; `stockade-runtime`
//! only enforces what this crate decided.
#![forbid(unsafe_code)]

pub mod capability;
pub mod deps;
pub mod manifest;
pub mod operator;
pub mod protocol;
pub mod sandbox;
pub mod sertone;
pub mod serve;

/// The `version` of a TOML file this crate reads when it is above 1: a file written for a newer
/// Stockade. Looked at before the strict parse (`deny_unknown_fields`), since a newer version
/// may have keys this build does not know, which would be reported as an unknown key instead
/// of the version. `None` for version 1, no version, or text that does not parse (the strict
/// parse says why).
pub(crate) fn newer_toml_version(text: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Tag {
        version: u32,
    }
    toml::from_str::<Tag>(text)
        .ok()
        .map(|t| t.version)
        .filter(|&v| v > 1)
}

/// A TOML file that does not parse, or is not the shape its reader expects, said on one line:
/// `[FILE:]LINE:COLUMN: message`. The parser's own `Display` is a multi-line snippet of the
/// file with a caret under the column; the runtime prints every error with its control
/// characters escaped (untrusted text may not move the terminal's cursor), which turned that
/// snippet into one unreadable line of `\x0a`. Here the message keeps only the parser's words
/// (its lines joined with `, `) and the span becomes a position, as compilers print one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", self.position())]
pub struct TomlSyntax {
    file: Option<String>,
    /// 1-based line and column (in characters) of the start of the parser's span.
    at: Option<(usize, usize)>,
    message: String,
}

impl TomlSyntax {
    /// The parser's error `e` on `text`, the text it parsed.
    pub fn new(text: &str, e: &toml::de::Error) -> Self {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let at = e.span().map(|span| {
            let start = floor_char_boundary(text, span.start);
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            (line, before[line_start..].chars().count() + 1)
        });
        TomlSyntax {
            file: None,
            at,
            message,
        }
    }

    /// The same error, said of the file `path`.
    #[must_use]
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The 1-based line, when the parser gave a span.
    pub fn line(&self) -> Option<usize> {
        self.at.map(|(line, _)| line)
    }

    /// The parser's message, on one line.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn position(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(file);
            out.push(':');
        }
        if let Some((line, column)) = self.at {
            out.push_str(&format!("{line}:{column}:"));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out
    }
}

/// The largest char boundary of `text` at or below `i` (a span past the end is clamped).
fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::TomlSyntax;

    fn syntax(text: &str) -> TomlSyntax {
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        TomlSyntax::new(text, &e)
    }

    #[test]
    fn toml_errors_are_one_line_at_line_and_column() {
        let s = syntax("version = 1\n[resources\n");
        assert_eq!(
            s.to_string(),
            "2:11: invalid table header, expected `.`, `]`"
        );
        assert_eq!(s.line(), Some(2));
        let s = s.in_file("p.toml");
        assert_eq!(
            s.to_string(),
            "p.toml:2:11: invalid table header, expected `.`, `]`"
        );
        // The column counts characters, not bytes.
        let s = syntax("k = \"é\" x\n");
        assert!(s.to_string().starts_with("1:9: "), "{s}");
        assert!(!s.to_string().contains('\n'), "{s}");
    }
}
