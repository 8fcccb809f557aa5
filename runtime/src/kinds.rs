//! Every `error.kind` a command can fail with, and the one exit code that comes with it: the
//! agent-facing error contract in one place (docs/exit-codes.md, "Every `error.kind`").
//!
//! An agent branches on the exit code and, with `--json`, on `error.kind`; both are a public
//! interface. So a kind means one thing and always comes with the same code: an agent that has
//! matched a kind never has to look at the code as well to know what happened. A kind names no
//! value (a path, a name, a number): those are in the message.
//!
//! How the table is kept true (unit tests below, and [`crate::error::CmdError::new`]):
//! - each entry has a row with the same code in docs/exit-codes.md, and each row there an entry;
//! - the source is walked for the ways a kind is written down — an `Exit::X` followed by a kind
//!   (`CmdError::new(Exit::Usage, "usage", …)`, the `(exit, kind, hint)` tuples of the mapping
//!   functions), a literal kind given to `CmdError::new`/`msg` or to `serve`'s `cmd`, and every
//!   literal in a `fn kind(&self) -> &'static str` (the typed errors of `package`, `sources`,
//!   `node`, `policy::deps`, `trust::grant`) — and each must be here, with the code it is
//!   written with; each entry here must be found so (no kind documented that nothing makes);
//! - a debug build checks every error made at run time against the table (a kind computed in
//!   a way the walk does not see, an exit chosen apart from its kind): the whole test suite,
//!   which runs the debug binary, checks the kinds its failures produce.

use crate::exit::Exit;

/// `(kind, exit code)`, grouped by code. The meaning of each, and what an agent should do, is
/// in docs/exit-codes.md.
pub const KINDS: &[(&str, Exit)] = &[
    // 64: the command line is wrong.
    ("usage", Exit::Usage),
    ("bad_env", Exit::Usage),
    ("grant_invalid", Exit::Usage),
    ("activation", Exit::Usage),
    ("index.url", Exit::Usage),
    ("source.unknown", Exit::Usage),
    ("source.name", Exit::Usage),
    ("store.duplicate", Exit::Usage),
    ("audit.not_truncated", Exit::Usage),
    ("key.password_required", Exit::Usage),
    // 65: an input is malformed.
    ("invalid_policy", Exit::DataErr),
    ("invalid_config", Exit::DataErr),
    ("key", Exit::DataErr),
    ("certificate", Exit::DataErr),
    ("capability", Exit::DataErr),
    ("bounds", Exit::DataErr),
    ("validity", Exit::DataErr),
    ("manifest", Exit::DataErr),
    ("pack", Exit::DataErr),
    ("pack.secret_key", Exit::DataErr),
    ("revocation", Exit::DataErr),
    ("revocation.too_large", Exit::DataErr),
    ("license", Exit::DataErr),
    ("ca_dir_corrupt", Exit::DataErr),
    ("container", Exit::DataErr),
    ("statement", Exit::DataErr),
    ("statement.newer_format", Exit::DataErr),
    ("load", Exit::DataErr),
    ("audit_head", Exit::DataErr),
    ("audit_chain", Exit::DataErr),
    ("index.malformed", Exit::DataErr),
    ("grant_missing", Exit::DataErr),
    ("grant_malformed", Exit::DataErr),
    ("grant_wrong_signer", Exit::DataErr),
    ("grant_tampered", Exit::DataErr),
    ("grant_expired", Exit::DataErr),
    ("grant_not_yet_valid", Exit::DataErr),
    ("grant_wrong_plugin", Exit::DataErr),
    ("grant_wrong_version", Exit::DataErr),
    ("grant_wrong_scope", Exit::DataErr),
    ("grant_sign", Exit::DataErr),
    // 66: an input cannot be read.
    ("input", Exit::NoInput),
    ("no_input", Exit::NoInput),
    ("plugin_dir_missing", Exit::NoInput),
    ("policy_unreadable", Exit::NoInput),
    ("config_unreadable", Exit::NoInput),
    ("audit_unreadable", Exit::NoInput),
    ("grant_unreadable", Exit::NoInput),
    ("ca_dir_unreadable", Exit::NoInput),
    ("key.password_file", Exit::NoInput),
    // 70: a bug.
    ("internal", Exit::Software),
    ("http_bridge", Exit::Software),
    // 71: a system call failed.
    ("random", Exit::OsErr),
    ("event_loop", Exit::OsErr),
    ("workdir", Exit::OsErr),
    ("key.terminal", Exit::OsErr),
    ("key.guard", Exit::OsErr),
    // 73: an output cannot be created.
    ("output", Exit::CantCreate),
    ("cannot_write", Exit::CantCreate),
    ("ca_dir", Exit::CantCreate),
    ("extract", Exit::CantCreate),
    ("extract.io", Exit::IoErr),
    ("extract_to", Exit::CantCreate),
    ("extract_to_exists", Exit::CantCreate),
    ("state_dir", Exit::CantCreate),
    ("socket", Exit::CantCreate),
    ("source.exists", Exit::CantCreate),
    // 74: reading or writing failed midway.
    ("audit", Exit::IoErr),
    ("audit.truncated", Exit::IoErr),
    ("store.io", Exit::IoErr),
    ("source.io", Exit::IoErr),
    // 75: try again later.
    ("socket_in_use", Exit::TempFail),
    ("revocation.state_busy", Exit::TempFail),
    ("audit.busy", Exit::TempFail),
    // 77: no permission, or a permission is wrong.
    ("key.wrong_password", Exit::NoPerm),
    ("key.exposed", Exit::NoPerm),
    // 78: the trust or state directory is unusable.
    ("trust_dir", Exit::Config),
    ("node", Exit::Config),
    ("revocation.state", Exit::Config),
    ("kv_store", Exit::Config),
    ("quarantine", Exit::Config),
    ("state.newer_format", Exit::Config),
    ("audit.unsafe", Exit::Config),
    ("audit.newer_format", Exit::Config),
    ("store.unsafe", Exit::Config),
    ("store.not_owner", Exit::Config),
    ("store.newer_format", Exit::Config),
    ("ca_dir_newer_format", Exit::Config),
    ("source.unsafe", Exit::Config),
    ("source.not_owner", Exit::Config),
    ("source.left_behind", Exit::Config),
    ("source.stray_copy", Exit::Config),
    ("source.corrupt", Exit::Config),
    ("source.newer_format", Exit::Config),
    ("source.state_dir", Exit::Config),
    // 80–87: the verification step that refused the package.
    ("size_cap", Exit::SizeCap),
    ("size_cap.package", Exit::SizeCap),
    ("size_cap.entry", Exit::SizeCap),
    ("size_cap.statement", Exit::SizeCap),
    ("signature.not_pinned", Exit::Signature),
    ("signature.developer_cert", Exit::Signature),
    ("signature.malformed", Exit::Signature),
    ("signature.invalid", Exit::Signature),
    ("license.signature", Exit::Signature),
    ("trust_mode.unverified", Exit::Signature),
    ("chain", Exit::Chain),
    ("chain.certificate", Exit::Chain),
    ("chain.unknown_root", Exit::Chain),
    ("chain.bounds", Exit::Chain),
    ("chain.kind", Exit::Chain),
    ("chain.issuer_mismatch", Exit::Chain),
    ("chain.signature", Exit::Chain),
    ("license.issuer", Exit::Chain),
    ("validity.expired", Exit::Validity),
    ("validity.not_yet_valid", Exit::Validity),
    ("license.expired", Exit::Validity),
    ("license.not_yet_valid", Exit::Validity),
    ("revocation.serial", Exit::Revoked),
    ("revocation.key", Exit::Revoked),
    ("revocation.rollback", Exit::Revoked),
    ("revocation.list_changed", Exit::Revoked),
    ("revocation.list_expired", Exit::Revoked),
    ("revocation.list_invalid", Exit::Revoked),
    ("revocation.list_missing", Exit::Revoked),
    ("revocation.other_issuer", Exit::Revoked),
    ("license.rollback", Exit::Revoked),
    ("license.missing", Exit::Revoked),
    ("scope.capability_beyond_ceiling", Exit::Scope),
    ("scope.hardware", Exit::Scope),
    ("scope.license", Exit::Scope),
    ("license.hardware", Exit::Scope),
    ("file_map.structure", Exit::FileMap),
    ("file_map.payload_digest", Exit::FileMap),
    ("file_map.not_in_map", Exit::FileMap),
    ("file_map.type_mismatch", Exit::FileMap),
    ("file_map.digest_mismatch", Exit::FileMap),
    ("file_map.target_mismatch", Exit::FileMap),
    ("file_map.missing", Exit::FileMap),
    ("file_map.manifest_mismatch", Exit::FileMap),
    ("unsafe_archive.absolute_path", Exit::UnsafeArchive),
    ("unsafe_archive.dotdot", Exit::UnsafeArchive),
    ("unsafe_archive.bad_path", Exit::UnsafeArchive),
    ("unsafe_archive.symlink_escape", Exit::UnsafeArchive),
    ("unsafe_archive.hardlink", Exit::UnsafeArchive),
    ("unsafe_archive.device", Exit::UnsafeArchive),
    ("unsafe_archive.fifo", Exit::UnsafeArchive),
    ("unsafe_archive.entry_type", Exit::UnsafeArchive),
    ("unsafe_archive.setuid", Exit::UnsafeArchive),
    ("unsafe_archive.oversized", Exit::UnsafeArchive),
    ("unsafe_archive.too_many_entries", Exit::UnsafeArchive),
    ("unsafe_archive.too_large", Exit::UnsafeArchive),
    ("unsafe_archive.decompression_bomb", Exit::UnsafeArchive),
    ("unsafe_archive.duplicate", Exit::UnsafeArchive),
    ("unsafe_archive.corrupt", Exit::UnsafeArchive),
    ("unsafe_archive.write", Exit::UnsafeArchive),
    // 90–99: the sources' fail-closed order.
    ("index.fetch", Exit::IndexFetch),
    ("index.too_large", Exit::IndexFetch),
    ("index.signature", Exit::IndexSignature),
    ("index.operator_key", Exit::IndexSignature),
    ("index.rotation_needs_owner", Exit::IndexSignature),
    ("index.rollback", Exit::IndexRollback),
    ("index.changed", Exit::IndexRollback),
    ("index.expired", Exit::IndexExpired),
    ("index.not_found", Exit::IndexNotFound),
    ("index.delisted", Exit::IndexNotFound),
    ("index.unavailable", Exit::IndexUnavailable),
    ("index.artifact_digest", Exit::ArtifactDigest),
    ("index.artifact_signature", Exit::ArtifactSignature),
    ("index.author_pin", Exit::AuthorPin),
    ("index.author_pin_lost", Exit::AuthorPin),
    ("index.mismatch", Exit::IndexMismatch),
    // 100–108: the store.
    ("license_frozen", Exit::LicenseFrozen),
    ("store.license_frozen", Exit::LicenseFrozen),
    ("store.dependency", Exit::Dependency),
    ("store.too_many_dependencies", Exit::Dependency),
    ("store.dependency_cycle", Exit::DependencyCycle),
    ("store.in_use", Exit::InUse),
    ("store.breaks_dependent", Exit::InUse),
    ("store.not_installed", Exit::NotInstalled),
    ("store.corrupt", Exit::StoreCorrupt),
    ("store.conflict", Exit::Conflict),
    ("store.locked", Exit::StoreLocked),
    ("source.locked", Exit::StoreLocked),
    // 110–111: HTTP plugins.
    ("http_transport", Exit::HttpTransport),
    ("sertone_listen", Exit::SertoneListen),
    // 125–127: the runtime could not start the program.
    ("layer_unavailable", Exit::SandboxSetup),
    ("cgroup_clash", Exit::SandboxSetup),
    ("cgroup_exhausted", Exit::SandboxSetup),
    ("uid_exhausted", Exit::SandboxSetup),
    ("uid_unmapped", Exit::SandboxSetup),
    ("clone_exhausted", Exit::SandboxSetup),
    ("writable_path", Exit::SandboxSetup),
    ("sandbox_setup", Exit::SandboxSetup),
    ("pid_unknown", Exit::SandboxSetup),
    ("cannot_execute", Exit::CannotExec),
    ("not_found", Exit::NotFound),
    ("interpreter_not_found", Exit::NotFound),
];

/// The exit code `kind` always comes with, or `None` for a kind that is not in [`KINDS`].
pub fn exit_of(kind: &str) -> Option<Exit> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|&(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::{exit_of, KINDS};
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// A kind is lower-case words joined by `_`, at most one `.` after a namespace: nothing
    /// that could carry a value (a path, a name, a number).
    fn well_formed(kind: &str) -> bool {
        let word = |w: &str| {
            !w.is_empty()
                && w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        };
        match kind.split_once('.') {
            Some((ns, rest)) => word(ns) && word(rest),
            None => word(kind),
        }
    }

    #[test]
    fn each_kind_is_listed_once_well_formed_and_with_an_error_code() {
        let mut seen = BTreeSet::new();
        for &(kind, exit) in KINDS {
            assert!(seen.insert(kind), "`{kind}` is listed twice");
            assert!(well_formed(kind), "`{kind}` is not a stable kind");
            assert!(exit.code() >= 64, "`{kind}` comes with {}", exit.code());
        }
        assert_eq!(exit_of("store.locked").map(|e| e.code()), Some(108));
        assert_eq!(exit_of("nothing_such"), None);
    }

    /// The rows of docs/exit-codes.md's "Every `error.kind`" table: `| `kind` | code | … |`.
    fn documented() -> BTreeMap<String, u8> {
        let doc = include_str!("../../docs/exit-codes.md");
        let start = doc
            .find("## Every `error.kind`")
            .expect("docs/exit-codes.md has an \"Every `error.kind`\" section");
        let section = &doc[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        let mut rows = BTreeMap::new();
        for line in section[..end].lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // ["", "`kind`", "code", meaning, what to do, ""]
            let (Some(kind), Some(code)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Some(kind) = kind.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
                continue;
            };
            let code: u8 = code
                .parse()
                .unwrap_or_else(|_| panic!("the row of `{kind}` has no code: {line}"));
            assert!(cells.len() >= 5, "the row of `{kind}` says nothing: {line}");
            assert!(
                rows.insert(kind.to_string(), code).is_none(),
                "`{kind}` has two rows"
            );
        }
        rows
    }

    #[test]
    fn every_kind_is_documented_with_its_code_and_nothing_else_is() {
        let rows = documented();
        for &(kind, exit) in KINDS {
            match rows.get(kind) {
                None => panic!("`{kind}` ({}) is not in docs/exit-codes.md", exit.code()),
                Some(&code) => assert_eq!(
                    code,
                    exit.code(),
                    "docs/exit-codes.md gives `{kind}` the code {code}, the program {}",
                    exit.code()
                ),
            }
        }
        for kind in rows.keys() {
            assert!(
                exit_of(kind).is_some(),
                "docs/exit-codes.md documents `{kind}`, which no command returns"
            );
        }
    }

    /// A kind as written in the source: where, and with which `Exit` variant if one is next
    /// to it.
    #[derive(Debug)]
    struct Found {
        kind: String,
        exit: Option<String>,
        at: String,
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The string literal that starts `s` (after blanks), if any.
    fn literal(s: &str) -> Option<&str> {
        let s = s.trim_start().strip_prefix('"')?;
        Some(&s[..s.find('"')?])
    }

    /// The source's code without its test module (conventionally last: `#[cfg(test)] mod`),
    /// whose kinds are examples.
    fn without_tests(text: &str) -> &str {
        let test_module = text
            .match_indices("#[cfg(test)]")
            .find(|&(i, m)| text[i + m.len()..].trim_start().starts_with("mod "));
        test_module.map_or(text, |(i, _)| &text[..i])
    }

    /// Every kind written in `text` in one of the ways the module doc lists.
    fn kinds_in(text: &str, file: &str, out: &mut Vec<Found>) {
        let text = without_tests(text);
        let line_of = |i: usize| format!("{file}:{}", text[..i].matches('\n').count() + 1);
        // `Exit::X, "kind"`: a constructor's arguments or a mapping's tuple.
        for (i, _) in text.match_indices("Exit::") {
            let rest = &text[i + "Exit::".len()..];
            let name_len = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            let after = rest[name_len..].trim_start();
            if let Some(kind) = after.strip_prefix(',').and_then(literal) {
                out.push(Found {
                    kind: kind.to_string(),
                    exit: Some(rest[..name_len].to_string()),
                    at: line_of(i),
                });
            }
        }
        // `CmdError::new(exit, "kind"`, `cmd(exit, "kind"`: a literal kind, its code chosen
        // apart (checked at run time).
        for call in ["CmdError::new(", "CmdError::msg(", " cmd("] {
            for (i, _) in text.match_indices(call) {
                let args = &text[i + call.len()..];
                let Some(comma) = args.find(',') else {
                    continue;
                };
                if args[..comma].contains("Exit::") {
                    continue;
                }
                if let Some(kind) = literal(&args[comma + 1..]) {
                    out.push(Found {
                        kind: kind.to_string(),
                        exit: None,
                        at: line_of(i),
                    });
                }
            }
        }
        // `fn kind(&self) -> &'static str { … }`: every literal of its body.
        for (i, _) in text.match_indices("fn kind(&self) -> &'static str {") {
            let body_start = i + text[i..].find('{').unwrap() + 1;
            let mut depth = 1;
            let mut end = body_start;
            for (j, c) in text[body_start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = body_start + j;
                    break;
                }
            }
            let body = &text[body_start..end];
            for (n, piece) in body.split('"').enumerate() {
                if n % 2 == 1 {
                    out.push(Found {
                        kind: piece.to_string(),
                        exit: None,
                        at: line_of(body_start),
                    });
                }
            }
        }
    }

    fn found_in_source() -> Vec<Found> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["runtime/src", "policy/src", "trust/src"] {
            rust_files(&root.join(dir), &mut files);
        }
        let mut found = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let name = f.strip_prefix(&root).unwrap().display().to_string();
            // This file's own table is what is checked, not a place kinds are made.
            if name.ends_with("runtime/src/kinds.rs") {
                continue;
            }
            kinds_in(&text, &name, &mut found);
        }
        found
    }

    #[test]
    fn every_kind_the_source_makes_is_listed_with_the_code_it_is_made_with() {
        let found = found_in_source();
        let mut wrong = Vec::new();
        for f in &found {
            match (exit_of(&f.kind), &f.exit) {
                (None, _) => wrong.push(format!(
                    "{}: `{}` is made but is not in runtime/src/kinds.rs (nor so documented)",
                    f.at, f.kind
                )),
                (Some(listed), Some(exit)) if *exit != format!("{listed:?}") => {
                    wrong.push(format!(
                        "{}: `{}` is made with Exit::{exit}, listed with {}",
                        f.at,
                        f.kind,
                        listed.code()
                    ));
                }
                _ => {}
            }
        }
        let made: BTreeSet<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        for &(kind, _) in KINDS {
            if !made.contains(kind) {
                wrong.push(format!(
                    "`{kind}` is listed, but nothing in the source makes it"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The walk itself: each way of writing a kind down is seen, a test module's are not.
    #[test]
    fn the_walk_sees_each_way_a_kind_is_written() {
        let src = r#"
            CmdError::new(Exit::IoErr, "a", e);
            CmdError::msg(
                Exit::Usage,
                "b", m);
            let (exit, kind, hint) = match e { X => (Exit::Config, "c", "hint") };
            CmdError::new(exit, "d", e);
            cmd(exit, "e", err);
            fn kind(&self) -> &'static str { match self { A => "f", B => { "g" } } }
            fn hint(&self) -> &'static str { "not a kind" }
            #[cfg(test)]
            mod tests { CmdError::new(Exit::IoErr, "h", e); }
        "#;
        let mut found = Vec::new();
        kinds_in(src, "x.rs", &mut found);
        let got: Vec<(String, Option<String>)> =
            found.into_iter().map(|f| (f.kind, f.exit)).collect();
        let want = |k: &str, e: Option<&str>| (k.to_string(), e.map(String::from));
        assert_eq!(
            got,
            vec![
                want("a", Some("IoErr")),
                want("b", Some("Usage")),
                want("c", Some("Config")),
                want("d", None),
                want("e", None),
                want("f", None),
                want("g", None),
            ]
        );
    }
}
