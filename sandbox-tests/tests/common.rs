//! Shared helpers of the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub use stockade_sandbox_tests::ci::{is_root, skip_or_fail};

/// The battery binary built by cargo for this test run.
pub fn battery() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stockade-battery"))
}

/// The workspace's `stockade` binary: `$STOCKADE_BIN`, else `target/<profile>/stockade` next to
/// this test executable. Panics with what to do when it is missing: a missing runtime is a
/// failure, never a skip.
pub fn stockade() -> PathBuf {
    if let Some(p) = std::env::var_os("STOCKADE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "STOCKADE_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/stockade
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("stockade"))
        .expect("test executable has no grandparent directory");
    assert!(
        p.is_file(),
        "{} not found: run `cargo build -p stockade-runtime` first (with the same \
         CARGO_TARGET_DIR), or set STOCKADE_BIN",
        p.display()
    );
    p
}

/// stdout of a run, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Parse the closing `N passed, N failed` line.
pub fn closing(text: &str) -> (usize, usize) {
    let line = text
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "))
        .unwrap_or_else(|| panic!("no closing line in:\n{text}"));
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().expect("number"));
    (nums.next().expect("passed"), nums.next().expect("failed"))
}
