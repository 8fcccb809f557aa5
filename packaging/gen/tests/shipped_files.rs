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

/// Every unit in systemd/ is in both packages (the .deb's `systemd-units` takes the units named
/// after the package, its assets the others; the rpm lists each), every timer is disabled by the
/// rpm's %preun on erase, and a unit's `Documentation=file://` names a file the packages ship.
#[test]
fn every_unit_is_shipped_by_both_packages() {
    let cargo = shipped("../runtime/Cargo.toml");
    let preun = shipped("rpm/preun.sh");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../systemd");
    let mut units: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            [".service", ".socket", ".timer"]
                .iter()
                .any(|x| n.ends_with(x))
        })
        .collect();
    units.sort();
    assert!(units.len() >= 6, "{units:?}");
    for unit in &units {
        let rpm = format!("dest = \"/usr/lib/systemd/system/{unit}\"");
        assert!(cargo.contains(&rpm), "the rpm does not ship {unit}");
        let by_cargo_deb = unit.starts_with("stockade.");
        let deb = format!("[\"../systemd/{unit}\", \"usr/lib/systemd/system/\", \"644\"]");
        assert!(
            by_cargo_deb || cargo.contains(&deb),
            "the .deb does not ship {unit}"
        );
        if unit.ends_with(".timer") {
            assert!(
                preun.contains(unit.as_str()),
                "%preun leaves {unit} enabled"
            );
        }
        let text = shipped(&format!("../systemd/{unit}"));
        for doc in text
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation="))
            .flat_map(str::split_whitespace)
            .filter_map(|d| d.strip_prefix("file://"))
        {
            let deb_dest = doc.trim_start_matches('/');
            assert!(
                cargo.contains(&format!("\"{deb_dest}\""))
                    && cargo.contains(&format!("dest = \"{doc}\"")),
                "{unit} names {doc}, which a package does not ship"
            );
        }
    }
}

/// The audit log's rotation unit runs `stockade audit rotate` — a command line the real CLI
/// parses — as the owner of the log directory tmpfiles.d makes (the writers' lock file is that
/// user's, 0600), with that directory writable and nothing else; and no logrotate snippet is
/// shipped (logrotate's rename or copytruncate leaves a log shorter than its head, and every
/// audited action then fails, 74).
#[test]
fn the_audit_rotate_unit_rotates_with_stockade_as_the_log_directorys_owner() {
    use clap::Parser;
    let unit = shipped("../systemd/stockade-audit-rotate.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(key).map(str::to_string))
            .collect()
    };
    let exec = value("ExecStart=");
    assert_eq!(exec.len(), 1, "{unit}");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(
        argv[..3],
        ["/usr/bin/stockade", "audit", "rotate"],
        "{unit}"
    );
    let cli = stockade_runtime::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{}: {e}", exec[0]));
    assert!(format!("{:?}", cli.command).contains("Rotate"));
    let tmpfiles = shipped("tmpfiles.d/stockade.conf");
    let log_dir = tmpfiles
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/var/log/stockade"))
        .unwrap();
    let owner = log_dir.split_whitespace().nth(3).unwrap();
    assert_eq!(value("User="), [owner]);
    assert_eq!(value("LogsDirectory="), ["stockade"]);
    assert_eq!(value("ProtectSystem="), ["strict"]);
    assert_eq!(value("CapabilityBoundingSet="), [""]);
    assert_eq!(value("PrivateNetwork="), ["yes"]);
    let timer = shipped("../systemd/stockade-audit-rotate.timer");
    assert!(
        timer.lines().any(|l| l.starts_with("OnCalendar=")),
        "{timer}"
    );
    let cargo = shipped("../runtime/Cargo.toml");
    assert!(
        !cargo.contains("logrotate"),
        "a logrotate snippet is shipped"
    );
}

/// brief-165: the AppArmor profile for Ubuntu's user namespace restriction is shipped where the
/// launch's hint says (`/usr/share/stockade/apparmor/stockade`), never in /etc/apparmor.d (it
/// needs AppArmor 4: a profile apparmor_parser 3 cannot parse there breaks apparmor.service on
/// Debian 12), by both packages; it grants `userns` to the installed binary and nothing else.
#[test]
fn the_apparmor_profile_is_shipped_where_the_hint_says_and_not_loaded() {
    const DEST: &str = "usr/share/stockade/apparmor/stockade";
    let way_out = stockade_runtime::sandbox::facts::UsernsSwitch::AppArmorRestrict.way_out();
    assert!(way_out.contains(&format!("/{DEST}")), "{way_out}");
    let manifest = shipped("../runtime/Cargo.toml");
    let deb = format!(r#"["../packaging/apparmor/stockade", "{DEST}", "644"]"#);
    let rpm = format!(r#"source = "../packaging/apparmor/stockade", dest = "/{DEST}""#);
    assert!(manifest.contains(&deb) && manifest.contains(&rpm));
    // No asset of either package (a line of an `assets` list) goes to /etc/apparmor.d.
    assert!(!manifest
        .lines()
        .map(str::trim_start)
        .any(|l| l.starts_with(['[', '{']) && l.contains("apparmor.d")));
    let profile = shipped("apparmor/stockade");
    let rules: Vec<&str> = profile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        [
            "abi <abi/4.0>,",
            "include <tunables/global>",
            "profile stockade /usr/bin/stockade flags=(unconfined) {",
            "userns,",
            "include if exists <local/stockade>",
            "}",
        ]
    );
}
