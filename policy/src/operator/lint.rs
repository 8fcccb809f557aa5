//! `policy lint`: findings about a valid policy that a security reviewer should look at, each
//! with a severity and the file:line that caused it. An *invalid* policy is not linted: merging
//! or resolving it fails with an error naming the line.
//!
//! | code | severity | when |
//! |---|---|---|
//! | `network-without-grant` | error | network mode loopback for a plugin with no grant for `network:loopback` (network high risk) |
//! | `network-needs-grant` | info | network loopback in the defaults: every plugin needs its own grant (network high risk) |
//! | `risk-lowered` | error | `[risk]` moves `network` or `writable` out of the high class: granted without a grant |
//! | `memory-unlimited` | error | `resources.memory_max = "unlimited"` |
//! | `pids-unlimited` | error | `resources.pids_max = "unlimited"` |
//! | `cpu-unlimited` | warning | `resources.cpu_max = "unlimited"` |
//! | `swap-unlimited` | warning | `resources.swap_max = "unlimited"` with a bounded `memory_max` |
//! | `rlimit-unlimited` | warning | `resources.nproc`, `fsize`, `memlock` or `cpu_time_secs` = "unlimited" (`nproc` only with a bounded `pids_max`, `memlock` with a bounded `memory_max`) |
//! | `writable-outside-plugin` | warning | a writable path outside `/var/lib/stockade/plugins/<name>` |
//! | `trust-not-strict` | error | `trust.mode` is warn or disabled |
//! | `hook-fail-open` | info / warning / error | a hook fails open: info when nothing but the built-in default makes it (the Sertone hooks, with or without a section that leaves `failure` unset), warning when a file sets `failure = "open"`, error when a file's `default` answer allows |
//! | `degradation-allowed` | warning / error | a file allows a missing layer beyond the built-in default (`landlock_network`, `landlock_scope`; rootless also `distinct_uid`, `cgroup`); error for `landlock`, `cgroup` in every mode |
//! | `landlock-optional` | warning | `layers.min_landlock_abi = 0` |
//! | `sys-visible` | warning | `filesystem.sys = true` |
//! | `extra-syscalls` | info | `seccomp.allow` lists calls beyond the groups |
//! | `core-dumps` | info | `resources.core` is not 0 |
//! | `plugin-widens-signer` | warning | a `[plugin."P"]` key wider than the same key of a `[signer."K"]` section: it wins when P is signed by K (one finding per key, naming what widens; e.g. a higher `[kv]` quota or hook `deadline_ms`, an allowing `default` of a hook that fails open) |
//! | `read-only-missing` | warning | a `read_only` entry (not one of the built-in defaults) that is not on this host: the launch skips it ([`missing_read_only`], called by the runtime, which looks the host up) |
//! | `capabilities-without-allow` | warning | a `[capabilities]` section (also per plugin or signer) without `allow`: it restricts nothing, yet reads as "none allowed" |
//! | `keep-trees-run-only` | info | a file sets `trust.keep_trees` or `trust.keep_trees_max_mib`: they bound the trees `stockade run` keeps between runs; `serve` extracts a package once per load and keeps that tree while it is loaded, whatever they say |
//! | `pair-invalid` | error | a `[plugin."P"]` and a `[signer."K"]` section each valid alone and invalid together (e.g. the signer's `read_only` path inside the plugin's `writable` one): every launch of P signed by K is refused (65) |
//!
//! Each rule above but `plugin-widens-signer`, `read-only-missing` and `pair-invalid` also runs
//! on every plugin and signer pair as a launch of P
//! signed by K resolves it: what the pair produces and no section alone does (a signer's
//! bounded `memory_max` with a plugin's unlimited `swap_max`: `swap-unlimited`) is reported
//! under the rule's code and severity, once per pair, its message naming both sections
//! ([`pair_findings`]). `plugin-widens-signer` compares every ranked item of `policy explain`,
//! the `[kv]` quotas, hook `deadline_ms` and the fail-open `default` among them.

use super::risk::{builtin_class, class_of};
use super::{MergedPolicy, Origin, ResolvedPolicy, RiskClass, TrustModeName};
use crate::protocol::host::FailureMode;
use crate::sandbox::{
    Degradation, Limit, NetworkMode, DEFAULT_ALLOW_DEGRADED, DEFAULT_ALLOW_DEGRADED_ROOTLESS,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Widens what a plugin can do; review it.
    Warning,
    /// Weakens isolation or trust; fix it or justify it.
    Error,
}

impl Severity {
    /// The name in reports and `--fail-level`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            _ => Err(format!("`{s}` is not a severity (info, warning, error)")),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// Where (file:line, or default).
    pub at: Origin,
    /// Stable code.
    pub code: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The plugin section it applies to (`None`: the defaults).
    pub plugin: Option<String>,
    /// What and why.
    pub message: String,
}

/// The directory a plugin's own writable data may live under.
pub const PLUGIN_DATA_DIR: &str = "/var/lib/stockade/plugins";

/// Lint every resolution (defaults, each plugin, each signer). `grants` maps a plugin name to
/// the grant targets present for it (from the policy's grants directory).
pub fn lint(m: &MergedPolicy, grants: &BTreeMap<String, BTreeSet<String>>) -> Vec<Finding> {
    let mut out = BTreeSet::new();
    for r in &resolutions(m) {
        lint_one(r, grants, &mut out);
    }
    pair_findings(m, grants, &mut out);
    // A plugin's section beats its signer's key by key ("the more specific wins"), so it can
    // widen what the signer's section narrowed: each section lints clean alone, and the pair
    // is wider than the signer's section reads. Which signer a plugin has is known only at
    // launch (its package's certificate; the policy ties no name to a key), so every pair of
    // sections is one that may meet, and the finding says "when signed by".
    for p in m.plugin_names() {
        for s in m.signer_ids() {
            for (key, alone, over) in m.plugin_over_signer(&p, &s) {
                let widens = widenings(&alone, &over, &p);
                if widens.is_empty() {
                    continue;
                }
                out.insert(Finding {
                    at: over.origin(&key),
                    code: "plugin-widens-signer",
                    severity: Severity::Warning,
                    plugin: Some(p.clone()),
                    message: format!(
                        "when `{p}` is signed by {s}, this `{key}` replaces the narrower value of \
                         [signer.\"{s}\"] at {}: {}",
                        alone.origin(&key),
                        widens.join("; ")
                    ),
                });
            }
        }
    }
    // Loading checks each section alone, and a launch resolves the pair: a pair valid alone and
    // invalid together passed lint clean and loaded, and every launch of P signed by K is
    // refused. The file is not refused for it (that pair may never meet), so lint says so.
    for (p, s, at, e) in m.invalid_pairs() {
        out.insert(Finding {
            at,
            code: "pair-invalid",
            severity: Severity::Error,
            plugin: Some(p.clone()),
            message: format!(
                "[plugin.\"{p}\"] and [signer.\"{s}\"] are invalid together, so every launch of \
                 `{p}` signed by {s} is refused (65 invalid_policy): {e}"
            ),
        });
    }
    once_per_line(out)
}

/// What the single-section rules find in a plugin and signer pair and in neither section alone
/// (nor the defaults): a launch of P signed by K resolves both, key by key, and the pair can be
/// what no section is — a signer's bounded `memory_max` with a plugin's unlimited `swap_max`
/// (`swap-unlimited`), a signer's loopback network for a plugin with no grant for it
/// (`network-without-grant`). Each section linted clean, or said less, and so did `lint`.
/// Every valid pair is linted as the launch resolves it ([`lint_one`]); a finding of a rule at
/// a line that no single resolution reported with that rule and severity is the pair's (a
/// signer's `failure = "open"` is a warning alone and an error with a plugin's allowing
/// `default`), reported once per pair, naming both sections. (An invalid pair is
/// `pair-invalid`'s.)
fn pair_findings(
    m: &MergedPolicy,
    grants: &BTreeMap<String, BTreeSet<String>>,
    out: &mut BTreeSet<Finding>,
) {
    let known: BTreeSet<(&'static str, Origin, Severity)> = out
        .iter()
        .map(|f| (f.code, f.at.clone(), f.severity))
        .collect();
    let signers = m.signer_ids();
    let mut found = BTreeSet::new();
    for p in m.plugin_names() {
        for s in &signers {
            let Ok(r) = m.resolve(Some(&p), Some(s)) else {
                continue;
            };
            let mut pair = BTreeSet::new();
            lint_one(&r, grants, &mut pair);
            for f in pair {
                if known.contains(&(f.code, f.at.clone(), f.severity)) {
                    continue;
                }
                found.insert(Finding {
                    plugin: Some(p.clone()),
                    message: format!(
                        "when `{p}` is signed by {s} ([plugin.\"{p}\"] with [signer.\"{s}\"], \
                         neither alone): {}",
                        f.message
                    ),
                    ..f
                });
            }
        }
    }
    out.append(&mut found);
}

/// The defaults, each plugin section and each signer section, resolved (an invalid one is
/// left out: loading reports it).
fn resolutions(m: &MergedPolicy) -> Vec<ResolvedPolicy> {
    let plugins = m.plugin_names().into_iter().map(|p| (Some(p), None));
    let signers = m.signer_ids().into_iter().map(|s| (None, Some(s)));
    std::iter::once((None, None))
        .chain(plugins)
        .chain(signers)
        .filter_map(|(p, s)| m.resolve(p.as_deref(), s.as_deref()).ok())
        .collect()
}

/// The same line seen through several resolutions is reported once (for the first).
fn once_per_line(out: BTreeSet<Finding>) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    out.into_iter()
        .filter(|f| seen.insert((f.code, f.at.clone(), f.message.clone())))
        .collect()
}

/// `read-only-missing`: each `read_only` entry a file wrote that `exists` says is not on the
/// host. The launch binds only what exists and skips the rest (listed in its report), so such
/// an entry — a typo, a look-alike letter, a trailing space (`"/usr "`) — reads as visible
/// and is not: narrower than written, never wider, but a reviewer reads a list the plugin does
/// not get. This crate does no I/O: the caller (`stockade policy lint`) looks the paths up on
/// the host, as the launch's mount plan does. The built-in default entries are not reported
/// (a file that writes the default out, as the shipped one does, expects no host to have them
/// all).
pub fn missing_read_only(m: &MergedPolicy, exists: &dyn Fn(&str) -> bool) -> Vec<Finding> {
    let mut out = BTreeSet::new();
    for r in resolutions(m) {
        let written = r
            .sandbox
            .read_only
            .iter()
            .filter(|p| !crate::sandbox::DEFAULT_READ_ONLY.contains(&p.as_str()));
        for p in written.filter(|p| !exists(p)) {
            let mut why = Vec::new();
            let trimmed = p.trim_end();
            if trimmed != p {
                why.push("it ends in whitespace".to_string());
            }
            let odd: Vec<String> = p
                .chars()
                .filter(|c| !c.is_ascii())
                .map(|c| format!("U+{:04X}", u32::from(c)))
                .collect();
            if !odd.is_empty() {
                why.push(format!("it has non-ASCII characters ({})", odd.join(" ")));
            }
            if trimmed != p && exists(trimmed) {
                why.push(format!("{trimmed:?} exists"));
            }
            out.insert(Finding {
                at: r.origin("filesystem.read_only"),
                code: "read-only-missing",
                severity: Severity::Warning,
                plugin: r.plugin.clone().or(r.signer.clone()),
                message: format!(
                    "read_only entry {p:?} is not on this host (looked up as this user): the \
                     launch skips it, so the plugin does not see it{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", why.join(", "))
                    }
                ),
            });
        }
    }
    once_per_line(out)
}

/// What `b` widens over `a`, as `policy diff` measures it (the explained items and their
/// order), one line each. Twice: with grants not applying, which shows what the operator's
/// values allow, and with no grant at all, which shows what a risk class changes (a high-risk
/// item withheld or not).
fn widenings(a: &ResolvedPolicy, b: &ResolvedPolicy, plugin: &str) -> Vec<String> {
    use super::effective::{effective, PluginFacts};
    use super::explain::{diff, explain};
    let facts = PluginFacts {
        name: plugin.to_string(),
        ..PluginFacts::default()
    };
    let no_grant = BTreeSet::new();
    let mut out = BTreeSet::new();
    for grants in [None, Some(&no_grant)] {
        let ea = explain(a, &effective(a, &facts, grants));
        let eb = explain(b, &effective(b, &facts, grants));
        for c in diff(&ea, &eb).into_iter().filter(|c| c.effect == "widens") {
            out.insert(format!("{} {}: {} -> {}", c.section, c.name, c.from, c.to));
        }
    }
    out.into_iter().collect()
}

fn lint_one(
    r: &ResolvedPolicy,
    grants: &BTreeMap<String, BTreeSet<String>>,
    out: &mut BTreeSet<Finding>,
) {
    let plugin = r.plugin.clone().or(r.signer.clone());
    let mut push = |key: &str, code: &'static str, severity: Severity, message: String| {
        out.insert(Finding {
            at: r.origin(key),
            code,
            severity,
            plugin: plugin.clone(),
            message,
        });
    };
    // An item moved out of the high class needs no grant any more: the grant lints below would
    // say it is withheld while it is granted, so the move itself is the finding.
    for (item, class) in &r.risk {
        if builtin_class(item) == RiskClass::High && *class != RiskClass::High {
            push(
                &format!("risk.{}", super::layers::dotted(std::slice::from_ref(item))),
                "risk-lowered",
                Severity::Error,
                format!(
                    "`{item}` moved from high to {} risk: it is granted without a signed grant",
                    class.as_str()
                ),
            );
        }
    }
    let network_high = class_of("network", &r.risk) == RiskClass::High;
    if r.sandbox.network == NetworkMode::Loopback && network_high {
        match &r.plugin {
            Some(p) if !grants.get(p).is_some_and(|g| g.contains("network:loopback")) => push(
                "network.mode",
                "network-without-grant",
                Severity::Error,
                format!("plugin `{p}` gets network access but no grant for `network:loopback` is present: it will be withheld"),
            ),
            Some(_) => {}
            None => push(
                "network.mode",
                "network-needs-grant",
                Severity::Info,
                "network loopback for every plugin: each needs a signed grant for `network:loopback`".into(),
            ),
        }
    }
    if r.sandbox.resources.memory_max == Limit::Unlimited {
        push(
            "resources.memory_max",
            "memory-unlimited",
            Severity::Error,
            "no memory limit: one plugin can exhaust the host's memory".into(),
        );
    }
    // A bounded memory_max reads as "this much memory at most"; with unlimited swap the
    // plugin's pages beyond it go to swap without bound (cgroup v2 `memory.swap.max`, v1
    // `memsw`), so RAM + swap is not bounded. Only said when memory itself is bounded (else
    // `memory-unlimited` already is).
    if r.sandbox.resources.swap_max == Limit::Unlimited
        && r.sandbox.resources.memory_max != Limit::Unlimited
    {
        push(
            "resources.swap_max",
            "swap-unlimited",
            Severity::Warning,
            "no swap limit: beyond memory_max the plugin's memory goes to swap without bound"
                .into(),
        );
    }
    if r.sandbox.resources.pids_max == Limit::Unlimited {
        push(
            "resources.pids_max",
            "pids-unlimited",
            Severity::Error,
            "no process limit: a fork bomb reaches the host's limits".into(),
        );
    }
    // CPU time is taken back the moment the plugin stops, and the scheduler still shares the
    // CPUs between cgroups, so no quota cannot take the host down as no memory or process limit
    // can: a warning, not an error. But an agent's other plugins and the host's services then
    // compete with a plugin that may keep every CPU busy.
    if r.sandbox.resources.cpu_max == crate::sandbox::CpuQuota::Unlimited {
        push(
            "resources.cpu_max",
            "cpu-unlimited",
            Severity::Warning,
            "no CPU quota: one plugin can keep every CPU of the host busy".into(),
        );
    }
    // The rlimits read as bounds too, but none of them is the one that keeps the host whole
    // (pids_max, memory_max and cpu_max are; RLIMIT_FSIZE bounds one file, never the sum), so
    // "unlimited" is a warning, as `swap-unlimited` is, and one code for the one meaning:
    // each finding names what is gone. Like `swap-unlimited`, said only while the cgroup limit
    // it backs is bounded (else `pids-unlimited` / `memory-unlimited` already is). The runtime
    // accepts "unlimited" only where its own hard limit is (`check_enforceable`), so what a
    // valid policy says here is what the sandbox gets.
    let res = &r.sandbox.resources;
    for (key, limit, covered, what) in [
        (
            "nproc",
            res.nproc,
            res.pids_max == Limit::Unlimited,
            "RLIMIT_NPROC: the backstop under pids_max is gone, so where the cgroup is \
             missing (a rootless launch may run without one) nothing bounds the plugin's processes",
        ),
        (
            "fsize",
            res.fsize,
            false,
            "RLIMIT_FSIZE: the plugin may write files of any size wherever it may write \
             (/tmp stays bounded by tmp_size)",
        ),
        (
            "memlock",
            res.memlock,
            res.memory_max == Limit::Unlimited,
            "RLIMIT_MEMLOCK: the plugin may lock all of its memory into RAM, where neither \
             swap nor reclaim can take it back",
        ),
        (
            "cpu_time_secs",
            res.cpu_time_secs,
            false,
            "RLIMIT_CPU: no bound on the CPU time a process uses in all (cpu_max bounds only \
             its rate)",
        ),
    ] {
        if limit == Limit::Unlimited && !covered {
            push(
                &format!("resources.{key}"),
                "rlimit-unlimited",
                Severity::Warning,
                format!("no `{key}` limit ({what})"),
            );
        }
    }
    for w in &r.sandbox.writable {
        let own = r
            .plugin
            .as_ref()
            .map(|p| format!("{PLUGIN_DATA_DIR}/{p}"))
            .is_some_and(|own| crate::sandbox::is_at_or_under(w, &own));
        if !own {
            push(
                "filesystem.writable",
                "writable-outside-plugin",
                Severity::Warning,
                format!("`{w}` is writable but outside the plugin's own {PLUGIN_DATA_DIR}/<name>"),
            );
        }
    }
    if let Some(m) = r.trust.mode.filter(|m| *m != TrustModeName::Strict) {
        push(
            "trust.mode",
            "trust-not-strict",
            Severity::Error,
            format!(
                "trust mode `{}`: packages are admitted without passing the signature, chain, validity, revocation and scope checks (each must still carry a signature)",
                m.as_str()
            ),
        );
    }
    // Read by `run` alone (audit-145 asked whether `serve` ignoring them was a defect: it is
    // not, a daemon extracts each package once per load, keeps that tree for as long as it is
    // loaded and relaunches from it, so its trees are bounded by what is loaded). An operator
    // setting them for a daemon's host is told they change nothing there.
    for key in ["trust.keep_trees", "trust.keep_trees_max_mib"] {
        // The defaults' resolution alone: `[trust]` is top-level, in every section's too.
        if r.plugin.is_none() && r.signer.is_none() && matches!(r.origin(key), Origin::File { .. })
        {
            push(
                key,
                "keep-trees-run-only",
                Severity::Info,
                format!(
                    "`{key}` bounds the trees `stockade run` keeps between runs; `stockade serve` \
                     ignores it: a daemon extracts each package once per load and keeps that \
                     tree (relaunches included) until the unload"
                ),
            );
        }
    }
    // Every hook a section names, and the Sertone hooks even without one: they fail open by
    // default (seed 003), which a policy that never mentions them must still be told.
    let sertone = [crate::sertone::PRE_REQUEST, crate::sertone::POST_RESPONSE];
    let hooks: BTreeSet<&str> = r
        .host
        .hooks
        .keys()
        .map(String::as_str)
        .chain(sertone)
        .collect();
    for hook in hooks {
        if r.host.failure(hook) != FailureMode::Open {
            continue;
        }
        // A default that allows is an error — unless it is the hook's own built-in answer
        // written out (a Sertone pre-request hook already answers `{"allow": true}` when it
        // fails open, `HostPolicy::fail_open_default`): that file weakens nothing more than
        // `failure = "open"` alone, and the two must not lint as an error and a warning.
        let builtin = crate::sertone::fail_open_answer(hook);
        let allows = r
            .host
            .hooks
            .get(hook)
            .and_then(|h| h.default.as_ref())
            .filter(|d| {
                builtin.is_none() || serde_json::to_value(d).ok().as_ref() != builtin.as_ref()
            })
            .is_some_and(|d| d.get("allow").and_then(|a| a.as_bool()) == Some(true));
        let key = format!(
            "hooks.{}.failure",
            super::layers::dotted(&[hook.to_string()])
        );
        // What a file weakens is a warning (an error when its own default allows); the
        // built-in fail-open of the Sertone hooks is the seed's promise, not the file's doing,
        // and only a note — or every policy, the shipped one included, would fail the lint.
        let (severity, message) = if allows {
            (
                Severity::Error,
                format!("hook `{hook}` fails open with an allowing default: a crashed or slow plugin is bypassed"),
            )
        } else if r.is_set(&key) {
            (
                Severity::Warning,
                format!("hook `{hook}` fails open: a crashed or slow plugin is bypassed"),
            )
        } else {
            (
                Severity::Info,
                format!(
                    "hook `{hook}` fails open by default (seed 003; no section sets `failure`): a \
                     crashed or slow plugin is bypassed; set `failure = \"closed\"` in \
                     [hooks.\"{hook}\"] to make its failure deny"
                ),
            )
        };
        push(&key, "hook-fail-open", severity, message);
    }
    for (key, set, rootless) in [
        ("layers.allow_degraded", &r.sandbox.allow_degraded, false),
        (
            "layers.allow_degraded_rootless",
            &r.sandbox.allow_degraded_rootless,
            true,
        ),
    ] {
        if !r.is_set(key) {
            continue;
        }
        // What the built-in default tolerates in that mode is no finding: the lint reports
        // what a file weakens, and a file that writes the default out (the shipped
        // /etc/stockade/policy.toml, docs/sandbox.md's example) weakens nothing — it must lint
        // as clean as a file that leaves the key out. Anything beyond it still is one.
        let default_in_mode = |d: &Degradation| {
            DEFAULT_ALLOW_DEGRADED.contains(d)
                || (rootless && DEFAULT_ALLOW_DEGRADED_ROOTLESS.contains(d))
        };
        for d in set.iter().filter(|d| !default_in_mode(d)) {
            let severe = !rootless && matches!(d, Degradation::Landlock | Degradation::Cgroup);
            push(
                key,
                "degradation-allowed",
                if severe {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                format!(
                    "the launch goes on without `{}`{}",
                    d.as_str(),
                    if rootless { " when rootless" } else { "" }
                ),
            );
        }
    }
    if r.sandbox.min_landlock_abi == 0 {
        push(
            "layers.min_landlock_abi",
            "landlock-optional",
            Severity::Warning,
            "Landlock may be absent: the filesystem is then confined by mounts alone".into(),
        );
    }
    if r.sandbox.sys {
        push(
            "filesystem.sys",
            "sys-visible",
            Severity::Warning,
            "the host's /sys is visible (read-only): it reveals hardware and kernel details".into(),
        );
    }
    if let Some(extra) = r
        .sandbox
        .source
        .seccomp
        .allow
        .as_ref()
        .filter(|a| !a.is_empty())
    {
        push(
            "seccomp.allow",
            "extra-syscalls",
            Severity::Info,
            format!(
                "system calls allowed beyond the groups: {}",
                extra.join(", ")
            ),
        );
    }
    if r.sandbox.resources.core != Limit::Max(0) {
        push(
            "resources.core",
            "core-dumps",
            Severity::Info,
            "core dumps allowed: they may carry plugin memory to the host".into(),
        );
    }
    // `[capabilities]` restricts only through `allow` ("when set, only these"): a section
    // without it reads as "none allowed" and restricts nothing. Reported at the section's own
    // line (it sets no key), saying what is in force instead.
    for at in &r.capabilities_without_allow {
        let message = match &r.host.capabilities.allow {
            None => "[capabilities] without `allow` does not restrict: every capability the \
                     certificate and the manifest allow is granted (a high-risk one with its \
                     grant); write `allow = []` to allow none"
                .to_string(),
            Some(_) => format!(
                "[capabilities] without `allow` changes nothing: the allowlist set at {} \
                 applies (write `allow = []` to allow none)",
                r.origin("capabilities.allow")
            ),
        };
        out.insert(Finding {
            at: at.clone(),
            code: "capabilities-without-allow",
            severity: Severity::Warning,
            plugin: plugin.clone(),
            message,
        });
    }
}
