//! The files the packages ship as configuration stay valid as the formats evolve: a plain
//! `cargo test` catches a change that would make the installed `/etc/stockade/policy.toml` fail
//! (packaging/ci.sh checks the installed file again with `stockade exec --policy`).

use std::path::PathBuf;

fn shipped(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The conffile claims to be the built-in strict default written out but for one line: keep
/// that true, so an auditor reading /etc/stockade/policy.toml sees what the runtime would do
/// without it.
#[test]
fn default_policy_conffile_is_the_builtin_default_but_refuses_rootless_degradation() {
    let text = shipped("policy.toml");
    let mut parsed =
        stockade_policy::sandbox::parse_policy(&text).expect("shipped policy is valid");
    let default = stockade_policy::sandbox::default_policy();
    // The one difference: an installed system never runs plugins rootless without a uid of
    // their own or cgroup limits (the built-in default allows it for a developer's run).
    assert!(parsed.allow_degraded_rootless.is_empty());
    assert!(!default.allow_degraded_rootless.is_empty());
    parsed.allow_degraded_rootless = default.allow_degraded_rootless.clone();
    // `source` is the file as written (every key present); every resolved value must match.
    parsed.source = default.source.clone();
    assert_eq!(parsed, default);
}

/// `stockade run` and `stockade serve` read the same file with the host sections split off.
#[test]
fn default_policy_conffile_is_accepted_by_run_and_serve() {
    let text = shipped("policy.toml");
    let (mut sandbox, _host) =
        stockade_policy::protocol::host::split_policy(&text).expect("run's loader accepts it");
    let default = stockade_policy::sandbox::default_policy();
    sandbox.source = default.source.clone();
    sandbox.allow_degraded_rootless = default.allow_degraded_rootless.clone();
    assert_eq!(sandbox, default);
}

/// The sysusers.d and tmpfiles.d snippets name the user and paths the runtime's defaults use.
#[test]
fn sysusers_and_tmpfiles_match_the_runtime_defaults() {
    let sysusers = shipped("sysusers.d/stockade.conf");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u stockade ")),
        "{sysusers}"
    );
    let tmpfiles = shipped("tmpfiles.d/stockade.conf");
    for dir in [
        "/var/lib/stockade",
        "/run/stockade",
        stockade_runtime_uid_lock_dir(),
        "/var/log/stockade",
        "/etc/stockade/trust",
        stockade_runtime::sources::DEFAULT_SOURCES_DIR,
    ] {
        assert!(
            tmpfiles
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.split_whitespace().nth(1) == Some(dir)),
            "tmpfiles.d lacks {dir}"
        );
    }
}

fn stockade_runtime_uid_lock_dir() -> &'static str {
    stockade_runtime::sandbox::uid::LOCK_DIR
}

/// The refresh timer's service reads root's configuration where root's CLI keeps it: its
/// `STOCKADE_SOURCES_DIR` is the runtime's default sources directory. Without it the timer
/// reads its own state directory, finds nothing configured, and refreshes nothing.
#[test]
fn the_refresh_unit_names_the_default_sources_directory() {
    let unit = shipped("../systemd/stockade-refresh.service");
    let set: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment=STOCKADE_SOURCES_DIR="))
        .collect();
    assert_eq!(
        set,
        [stockade_runtime::sources::DEFAULT_SOURCES_DIR],
        "{unit}"
    );
}
