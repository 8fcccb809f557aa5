//! Parsing and validation tests: every error names the key that caused it.

use super::*;

fn err_key(text: &str) -> String {
    match parse_policy(text) {
        Err(SandboxPolicyError::Invalid { key, .. }) => key,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn default_policy_is_strict() {
    let p = default_policy();
    assert_eq!(p.network, NetworkMode::None);
    assert!(p.proc && !p.sys);
    assert!(p.writable.is_empty());
    assert_eq!(p.resources.memory_max, Limit::Max(256 << 20));
    assert_eq!(p.resources.swap_max, Limit::Max(0));
    assert_eq!(p.resources.core, Limit::Max(0));
    assert_eq!(p.resources.pids_max, Limit::Max(64));
    assert_eq!(p.inside_uid, 1000);
    assert!(p.seccomp_allow.contains("read"));
    assert!(!p.seccomp_allow.contains("ptrace"));
    assert!(p.seccomp_conditional.contains("clone"));
    // Opt-in groups only by name: inotify reaches past the sandbox.
    assert!(!p.seccomp_groups.iter().any(|g| g == "@file-watch"));
    assert!(!p.seccomp_allow.contains("inotify_init1"));
    let named =
        parse_policy("version = 1\n[seccomp]\ngroups = [\"@default\", \"@file-watch\"]\n").unwrap();
    assert!(named.seccomp_allow.contains("inotify_init1"));
    assert!(!p.allows(Degradation::DistinctUid, false));
    assert!(p.allows(Degradation::DistinctUid, true));
    assert!(!p.allows(Degradation::Landlock, true));
}

#[test]
fn partial_cgroup_limits_fail_closed_as_root_unless_allowed() {
    let p = default_policy();
    assert!(
        !p.allows(Degradation::CgroupPartial, false),
        "root: all limits or no launch"
    );
    assert!(
        p.allows(Degradation::CgroupPartial, true),
        "implied by the rootless `cgroup`"
    );
    let p = parse_policy("version = 1\n[layers]\nallow_degraded = [\"cgroup_partial\"]\n").unwrap();
    assert!(p.allows(Degradation::CgroupPartial, false));
    assert!(
        !p.allows(Degradation::Cgroup, false),
        "partial does not imply none"
    );
    let p = parse_policy("version = 1\n[layers]\nallow_degraded_rootless = []\n").unwrap();
    assert!(!p.allows(Degradation::CgroupPartial, true));
}

#[test]
fn module_doc_example_equals_defaults() {
    // The example in the module documentation spells out the defaults; keep them in sync.
    let doc = include_str!("mod.rs");
    let example: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.strip_prefix("//! ").unwrap_or("").to_string() + "\n")
        .collect();
    let mut p = parse_policy(&example).expect("doc example parses");
    let mut d = default_policy();
    p.source = SandboxPolicyFile::default();
    d.source = SandboxPolicyFile::default();
    assert_eq!(p, d);
}

#[test]
fn unknown_key_is_rejected_naming_it() {
    let e = parse_policy("version = 1\n[network]\nmdoe = \"none\"\n").unwrap_err();
    let msg = match &e {
        SandboxPolicyError::Syntax(t) => t.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("mdoe"), "{msg}");
}

#[test]
fn version_is_required_and_checked() {
    assert!(matches!(
        parse_policy("[network]\n"),
        Err(SandboxPolicyError::Syntax(_))
    ));
    assert!(matches!(
        parse_policy("version = 2\n"),
        Err(SandboxPolicyError::Version { found: 2 })
    ));
    // A newer version's keys do not hide its version (they were "unknown field").
    assert!(matches!(
        parse_policy("version = 2\n[network]\negress = \"none\"\n"),
        Err(SandboxPolicyError::Version { found: 2 })
    ));
    assert!(matches!(
        parse_policy("version = 1\n[network]\negress = \"none\"\n"),
        Err(SandboxPolicyError::Syntax(_))
    ));
}

#[test]
fn bad_values_name_their_key() {
    assert_eq!(
        err_key("version = 1\n[resources]\nmemory_max = \"lots\"\n"),
        "resources.memory_max"
    );
    assert_eq!(
        err_key("version = 1\n[resources]\ncpu_max = \"2 cpus\"\n"),
        "resources.cpu_max"
    );
    assert_eq!(
        err_key("version = 1\n[filesystem]\nread_only = [\"usr\"]\n"),
        "filesystem.read_only"
    );
    assert_eq!(
        err_key("version = 1\n[filesystem]\nwritable = [\"/proc/sys\"]\n"),
        "filesystem.writable"
    );
    assert_eq!(
        err_key("version = 1\n[filesystem]\nread_only = [\"/usr/../etc\"]\n"),
        "filesystem.read_only"
    );
    assert_eq!(
        err_key("version = 1\n[seccomp]\ngroups = [\"@mount\"]\n"),
        "seccomp.groups"
    );
    assert_eq!(
        err_key("version = 1\n[seccomp]\nallow = [\"ptrace\"]\n"),
        "seccomp.allow"
    );
    assert_eq!(
        err_key("version = 1\n[seccomp]\nallow = [\"clone\"]\n"),
        "seccomp.allow"
    );
    assert_eq!(
        err_key("version = 1\n[identity]\ninside_uid = 0\n"),
        "identity.inside_uid"
    );
    assert_eq!(
        err_key("version = 1\n[identity]\nhostname = \"a b\"\n"),
        "identity.hostname"
    );
    assert_eq!(
        err_key("version = 1\n[filesystem]\ntmp_size = \"unlimited\"\n"),
        "filesystem.tmp_size"
    );
    assert_eq!(
        err_key("version = 1\n[layers]\nmin_landlock_abi = 42\n"),
        "layers.min_landlock_abi"
    );
}

#[test]
fn unknown_degradation_is_a_syntax_error_naming_it() {
    let e = parse_policy("version = 1\n[layers]\nallow_degraded = [\"seccomp\"]\n").unwrap_err();
    assert!(matches!(e, SandboxPolicyError::Syntax(_)), "{e:?}");
}

#[test]
fn custom_policy_resolves() {
    let p = parse_policy(
        r#"version = 1
[filesystem]
read_only = ["/usr", "/etc/ssl"]
writable = ["/var/lib/plugin-x"]
tmp_size = "1M"
[network]
mode = "loopback"
[resources]
memory_max = "64M"
cpu_max = "250m"
pids_max = 8
[seccomp]
groups = ["@default", "@basic-io"]
allow = ["getdents64"]
[layers]
min_landlock_abi = 3
allow_degraded = []
"#,
    )
    .unwrap();
    assert_eq!(p.network, NetworkMode::Loopback);
    assert_eq!(p.tmp_size, 1 << 20);
    assert_eq!(p.resources.cpu_max, CpuQuota::Millicores(250));
    assert_eq!(p.resources.pids_max, Limit::Max(8));
    assert!(p.seccomp_allow.contains("getdents64"));
    assert!(!p.seccomp_allow.contains("openat"));
    assert!(p.seccomp_conditional.contains("ioctl"));
    assert!(!p.seccomp_conditional.contains("clone"));
    assert!(p.allow_degraded.is_empty());
    assert_eq!(p.source.resources.pids_max, Some(RawSize::Bytes(8)));
    assert_eq!(p.source.resources.nofile, None);
}

#[test]
fn oversized_policy_is_refused_before_parsing() {
    let big = "#".repeat(MAX_POLICY_BYTES + 1);
    assert!(matches!(
        parse_policy(&big),
        Err(SandboxPolicyError::TooLarge { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "(?s).{0,200}") {
        let _ = parse_policy(&s);
    }

    #[test]
    fn arbitrary_limits_validate_or_name_the_key(mem in ".{0,12}", pids in proptest::num::u64::ANY) {
        let text = format!("version = 1\n[resources]\nmemory_max = {mem:?}\npids_max = {pids}\n");
        match parse_policy(&text) {
            Ok(p) => proptest::prop_assert!(p.resources.pids_max != Limit::Max(0)),
            Err(SandboxPolicyError::Invalid { key, .. }) => {
                proptest::prop_assert!(key == "resources.memory_max" || key == "resources.pids_max")
            }
            // Large integers are out of TOML's i64 range; that is a syntax error.
            Err(SandboxPolicyError::Syntax(_)) => {}
            Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
        }
    }
}

#[test]
fn invalid_values_carry_their_line() {
    let text = "version = 1\n\n[resources]\n# comment\npids_max = 8\nmemory_max = \"lots\"\n";
    match parse_policy(text) {
        Err(e @ SandboxPolicyError::Invalid { .. }) => {
            assert_eq!(
                e.to_string(),
                "invalid value for `resources.memory_max` (line 6)"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(locate_key(text, "resources.pids_max"), Some(5));
    assert_eq!(locate_key(text, "version"), Some(1));
    assert_eq!(locate_key(text, "network.mode"), None);
    assert_eq!(
        locate_key(
            "version = 1\nlayers.min_landlock_abi = 3\n",
            "layers.min_landlock_abi"
        ),
        Some(2)
    );
}

/// Values that passed validation and then failed every launch (125) at the cgroup or rlimits
/// step: no kernel applies them, so they are invalid policies, naming their key and line.
#[test]
fn values_no_kernel_can_apply_are_refused() {
    let res = |kv: &str| parse_policy(&format!("version = 1\n[resources]\n{kv}\n"));
    for (kv, key, why) in [
        (
            "cpu_max = \"99999999999999999%\"",
            "resources.cpu_max",
            "at most 175921860444m",
        ),
        (
            "cpu_max = \"175921860445m\"",
            "resources.cpu_max",
            "17592186044415 µs per 100000 µs",
        ),
        (
            "pids_max = 4194305",
            "resources.pids_max",
            "at most 4194304",
        ),
        (
            "pids_max = \"1T\"",
            "resources.pids_max",
            "the kernel's pid limit",
        ),
        // audit-134: each passed validation and failed every launch (125 at the init's fork),
        // or killed every program as it started (RLIMIT_CPU 0).
        ("pids_max = 1", "resources.pids_max", "at least 2"),
        ("pids_max = 0", "resources.pids_max", "at least 2"),
        ("nproc = 1", "resources.nproc", "at least 2"),
        ("nproc = 0", "resources.nproc", "at least 2"),
        (
            "cpu_time_secs = 0",
            "resources.cpu_time_secs",
            "RLIMIT_CPU 0 kills every program",
        ),
        (
            "nofile = \"unlimited\"",
            "resources.nofile",
            "cannot be unlimited",
        ),
        (
            "nofile = \"1T\"",
            "resources.nofile",
            "is too large: the kernel caps",
        ),
        (
            "nofile = 2147483585",
            "resources.nofile",
            "2147483584 at most",
        ),
    ] {
        match res(kv) {
            Err(e @ SandboxPolicyError::Invalid { .. }) => {
                let SandboxPolicyError::Invalid {
                    key: k,
                    line,
                    cause,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((k.as_str(), *line), (key, Some(3)), "{kv}");
                assert!(cause.to_string().contains(why), "{kv}: {cause}");
            }
            other => panic!("{kv}: {other:?}"),
        }
    }
    // The maxima themselves apply (checked against a 6.18 kernel: one more is EINVAL).
    let p = res("cpu_max = \"175921860444m\"\npids_max = 4194304\nnofile = 2147483584").unwrap();
    assert_eq!(
        p.resources.cpu_max.quota_us(units::CPU_PERIOD_US),
        Some(17_592_186_044_400)
    );
    assert_eq!(p.resources.pids_max, Limit::Max(MAX_PIDS));
    assert_eq!(p.resources.nofile, Limit::Max(MAX_NOFILE));
    assert!(res("pids_max = \"unlimited\"\ncpu_max = \"unlimited\"").is_ok());
    // The minima themselves launch (checked with `stockade exec`, and in policy_differential).
    let p = res("pids_max = 2\nnproc = 2\ncpu_time_secs = 1").unwrap();
    assert_eq!(p.resources.pids_max, Limit::Max(MIN_PROCESSES));
    assert_eq!(p.resources.nproc, Limit::Max(MIN_PROCESSES));
    assert_eq!(p.resources.cpu_time_secs, Limit::Max(1));
}

/// A read-only entry inside a writable tree would be writable (the writable bind is applied
/// after it and Landlock allows writes beneath a writable path): refused, naming both, whatever
/// the order of the lists; a writable path inside a read-only tree is what it reads as and
/// stays accepted.
#[test]
fn a_read_only_path_inside_a_writable_one_is_refused() {
    for (ro, w) in [
        ("/srv/app/config", "/srv/app"),
        ("/srv/app", "/srv/app"),
        ("/srv/app/a/b", "/srv/app"),
    ] {
        let text = format!(
            "version = 1\n[filesystem]\nread_only = [\"/usr\", \"{ro}\"]\nwritable = [\"/var/x\", \"{w}\"]\n"
        );
        match parse_policy(&text) {
            Err(SandboxPolicyError::Invalid {
                key,
                line,
                cause:
                    FieldError::ReadOnlyUnderWritable {
                        read_only,
                        writable,
                    },
            }) => {
                assert_eq!(key, "filesystem.writable");
                assert_eq!(line, Some(4));
                assert_eq!((read_only.as_str(), writable.as_str()), (ro, w));
            }
            other => panic!("{text}: expected ReadOnlyUnderWritable, got {other:?}"),
        }
    }
    // The default read-only list counts too: `/usr` writable would lose its read-only bind.
    assert_eq!(
        err_key("version = 1\n[filesystem]\nwritable = [\"/usr\"]\n"),
        "filesystem.writable"
    );
    // Siblings sharing a prefix, and writable beneath read-only, mean what they say.
    for text in [
        "version = 1\n[filesystem]\nread_only = [\"/srv/app-config\"]\nwritable = [\"/srv/app\"]\n",
        "version = 1\n[filesystem]\nread_only = [\"/srv\"]\nwritable = [\"/srv/app\"]\n",
        "version = 1\n[filesystem]\nwritable = [\"/usr/local/state\"]\n",
    ] {
        parse_policy(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

/// `cpu_max = "5m"` was accepted and shown as 5m by `policy explain`, but the runtime wrote the
/// kernel's smallest quota, 1000 µs per 100 ms: twice the CPU the file reads as. Below 10m
/// ("1%") is refused now; 10m and "1%" are the smallest accepted.
#[test]
fn a_cpu_quota_below_the_kernels_smallest_is_refused() {
    for v in ["1m", "5m", "9m"] {
        let text = format!("version = 1\n[resources]\ncpu_max = \"{v}\"\n");
        match parse_policy(&text) {
            Err(SandboxPolicyError::Invalid {
                key,
                cause: FieldError::Range(why),
                ..
            }) => {
                assert_eq!(key, "resources.cpu_max");
                assert!(why.contains("at least 10m"), "{why}");
            }
            other => panic!("{v}: {other:?}"),
        }
    }
    for v in ["10m", "1%"] {
        let p = parse_policy(&format!("version = 1\n[resources]\ncpu_max = \"{v}\"\n")).unwrap();
        assert_eq!(p.resources.cpu_max, CpuQuota::Millicores(10));
        assert_eq!(
            p.resources.cpu_max.quota_us(units::CPU_PERIOD_US),
            Some(1000)
        );
    }
}
