//! `stockade-pkg-gen OUT_DIR`: write the man pages and shell completions of the `stockade` CLI
//! into `OUT_DIR`, generated from the real clap tree (`stockade_runtime::cli::Cli`), so a
//! subcommand added to `runtime/src/cli.rs` gets its page and completions with no other change.
//!
//! Layout written (what `runtime/Cargo.toml`'s deb/rpm asset lists pick up):
//! - `man/man1/stockade.1`, `man/man1/stockade-<sub>[-<subsub>].1`: one page per visible
//!   (sub)command, via `clap_mangen::generate_to`;
//! - `completions/bash/stockade`, `completions/zsh/_stockade`, `completions/fish/stockade.fish`.
//!
//! Reproducibility: the output depends only on the clap tree (no dates, no paths, no host
//! names); clap_mangen leaves the `.TH` date empty unless told one. The directory is recreated
//! from scratch so a removed subcommand does not leave a stale page behind.
//!
//! A build-time tool, not shipped: it is not in any package's asset list.

use clap::CommandFactory;
use clap_complete::{generate_to, Shell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use stockade_runtime::cli::Cli;

/// The binary name users type; completions and pages are registered under it.
const BIN: &str = "stockade";

/// The whole clap tree at once (the runtime builds each subcommand's arguments only when the
/// command line selects it).
fn full_tree() -> clap::Command {
    stockade_runtime::cli::eagerly(Cli::command)
}

/// Write every page and completion file below `out`, which is emptied first.
fn generate(out: &Path) -> std::io::Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    let man1 = out.join("man").join("man1");
    std::fs::create_dir_all(&man1)?;
    clap_mangen::generate_to(full_tree(), &man1)?;

    for (shell, dir) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let dir = out.join("completions").join(dir);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = full_tree();
        let written = generate_to(shell, &mut cmd, BIN, &dir)?;
        // clap_complete names bash's file `stockade.bash`; bash-completion's lazy loader looks
        // up /usr/share/bash-completion/completions/<command>, i.e. `stockade`.
        if shell == Shell::Bash {
            std::fs::rename(&written, dir.join(BIN))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: stockade-pkg-gen OUT_DIR");
        return ExitCode::from(64);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockade-pkg-gen: {e}");
            ExitCode::from(74)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible leaf and intermediate subcommand of the real tree, as man page names.
    fn expected_pages(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        out.push(format!("{prefix}.1"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            expected_pages(sub, &format!("{prefix}-{}", sub.get_name()), out);
        }
    }

    #[test]
    fn one_page_per_subcommand_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("gen");
        generate(&out).unwrap();

        let mut want = Vec::new();
        expected_pages(&full_tree(), BIN, &mut want);
        want.sort();
        let mut got: Vec<String> = std::fs::read_dir(out.join("man/man1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want);
        assert!(got.contains(&"stockade-exec.1".to_owned()));
        assert!(got.contains(&"stockade-ca-init.1".to_owned()));

        let exec = std::fs::read_to_string(out.join("man/man1/stockade-exec.1")).unwrap();
        assert!(exec.contains("\\-\\-policy"), "{exec}");
        // Hidden flags (e.g. `ca init --now`) stay out of the pages.
        let ca_init = std::fs::read_to_string(out.join("man/man1/stockade-ca-init.1")).unwrap();
        assert!(!ca_init.contains("\\-\\-now"));
        // The page the audit-rotate units name (Documentation=man:stockade-audit-rotate(1)).
        let rotate = std::fs::read_to_string(out.join("man/man1/stockade-audit-rotate.1")).unwrap();
        assert!(rotate.contains("\\-\\-after\\-loss"), "{rotate}");

        for f in ["bash/stockade", "zsh/_stockade", "fish/stockade.fish"] {
            let text = std::fs::read_to_string(out.join("completions").join(f)).unwrap();
            assert!(text.contains("exec"), "{f} lacks the exec subcommand");
        }
    }

    #[test]
    fn output_is_deterministic_and_stale_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        generate(&a).unwrap();
        std::fs::create_dir_all(b.join("man/man1")).unwrap();
        std::fs::write(b.join("man/man1/stockade-gone.1"), "old").unwrap();
        generate(&b).unwrap();
        assert!(!b.join("man/man1/stockade-gone.1").exists());
        let page = "man/man1/stockade-verify.1";
        assert_eq!(
            std::fs::read(a.join(page)).unwrap(),
            std::fs::read(b.join(page)).unwrap()
        );
    }
}
