//! `policy explain` and `policy diff` as data: every effective decision as one [`Item`] with the
//! origin that decided it, and an exposure score 0–10 in the spirit of `systemd-analyze
//! security` (higher = more exposed).
//!
//! ## Exposure score
//! The sum of the weights of the items that are exposed (weights sum to 10):
//!
//! | item | weight | exposed when |
//! |---|---|---|
//! | `network` | 2.0 | network loopback granted |
//! | `writable` | 1.5 | any host path writable |
//! | `trust` | 1.5 | trust mode warn (0.75) or disabled (1.5) |
//! | `landlock_degradable` | 1.0 | Landlock may be missing (`landlock` degradable or `min_landlock_abi = 0`) |
//! | `cgroup_degradable` | 0.5 | cgroup limits may be missing in root mode |
//! | `memory_unlimited` | 0.7 | `resources.memory_max` unlimited |
//! | `pids_unlimited` | 0.7 | `resources.pids_max` unlimited |
//! | `cpu_unlimited` | 0.3 | `resources.cpu_max` unlimited |
//! | `hook_fail_open` | 0.5 | some hook fails open |
//! | `medium_risk_capabilities` | 0.5 | medium- or high-risk capabilities granted (share of them) |
//! | `sys_visible` | 0.3 | `/sys` bound |
//! | `extra_syscalls` | 0.3 | `seccomp.allow` non-empty |
//! | `core_dumps` | 0.2 | `resources.core` not 0 |

use super::effective::EffectivePolicy;
use super::risk::RiskClass;
use super::{Origin, ResolvedPolicy, TrustModeName};
use crate::protocol::host::FailureMode;
use crate::sandbox::{syscalls, CpuQuota, Degradation, Limit, NetworkMode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One explained decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// capability, hook, filesystem, network, resource, kv, seccomp, layer, trust, audit,
    /// identity.
    pub section: String,
    /// The item within the section.
    pub name: String,
    /// The effective value.
    pub value: Value,
    /// For grant-like items: granted or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted: Option<bool>,
    /// How wide the value is, for `diff` (bigger = more exposed); `None`: not ordered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Who decided.
    pub decided_by: String,
    /// Why, when more than the value says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One contribution to the exposure score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureItem {
    /// The table row.
    pub item: String,
    /// Its full weight.
    pub weight: f64,
    /// What it contributes here (0 ..= weight).
    pub contributes: f64,
}

/// The explanation of one resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The plugin it was computed for (`None`: the defaults, as `stockade exec` enforces them).
    pub plugin: Option<String>,
    /// Files, in application order.
    pub layers: Vec<String>,
    /// Every decision.
    pub items: Vec<Item>,
    /// Exposure score 0–10 (one decimal).
    pub exposure: f64,
    /// Its contributions.
    pub exposure_items: Vec<ExposureItem>,
}

fn limit(l: Limit) -> (Value, f64) {
    match l {
        Limit::Max(n) => (json!(n), n as f64),
        Limit::Unlimited => (json!("unlimited"), f64::INFINITY),
    }
}

/// `cpu_max` in words. A percentage is of ONE CPU (the cgroup quota per period), where other
/// tools (`top`, container dashboards) often mean the whole machine: `"50%"` on a 16-CPU host
/// reads as 8 CPUs and is half of one. The value stays in millicores, the unit the policy
/// accepts; the note says what it is in both readings' words.
fn cpu_share(q: CpuQuota) -> String {
    match q {
        CpuQuota::Millicores(m) => {
            let cpus = m as f64 / 1000.0;
            format!(
                "{}% of one CPU ({cpus} CPU{}), not of the machine",
                m as f64 / 10.0,
                if cpus > 1.0 { "s" } else { "" }
            )
        }
        CpuQuota::Unlimited => "no CPU quota".into(),
    }
}

/// Build the explanation.
pub fn explain(op: &ResolvedPolicy, eff: &EffectivePolicy) -> Explanation {
    let mut items = Vec::new();
    let mut push = |section: &str,
                    name: &str,
                    value: Value,
                    granted: Option<bool>,
                    width: Option<f64>,
                    by: Origin,
                    note: String| {
        items.push(Item {
            section: section.into(),
            name: name.into(),
            value,
            granted,
            width,
            decided_by: by.to_string(),
            note,
        })
    };
    for d in &eff.capabilities {
        push(
            "capability",
            &d.item,
            json!(if d.granted { "granted" } else { "withheld" }),
            Some(d.granted),
            Some(f64::from(u8::from(d.granted))),
            d.decided_by.clone(),
            format!("{} risk; {}", d.risk.as_str(), d.reason),
        );
    }
    // Each risk item's class in force (audit-145: a `[risk]` move showed only in the notes of
    // the capability rows, which `diff` does not compare, so medium ↔ low said nothing without
    // `--plugin`). Ranked by what the class requires, lower requiring less: out of high an
    // item needs no signed grant, and medium ones weigh in the exposure score — so a move
    // down widens, up narrows.
    let risk_items = crate::capability::Capability::ALL
        .iter()
        .map(|c| super::risk::capability_item(*c))
        .chain(["network", "writable"]);
    for item in risk_items {
        let class = super::risk::class_of(item, &op.risk);
        let builtin = super::risk::builtin_class(item);
        push(
            "risk",
            item,
            json!(class.as_str()),
            None,
            Some(f64::from(RiskClass::High as u8 - class as u8)),
            op.origin(&format!(
                "risk.{}",
                super::layers::dotted(std::slice::from_ref(&item.to_string()))
            )),
            if class == builtin {
                String::new()
            } else {
                format!("built in: {}", builtin.as_str())
            },
        );
    }
    // The operator's allowlist itself: without `allow` there is none, which an empty
    // `[capabilities]` section does not make plain (it reads as "none allowed").
    let (allow, allow_width, allow_by, allow_note) = match &op.host.capabilities.allow {
        Some(a) => (
            json!(a.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
            a.len(),
            op.origin("capabilities.allow"),
            String::new(),
        ),
        None => (
            json!("not restricted"),
            crate::capability::Capability::ALL.len(),
            op.capabilities_without_allow
                .last()
                .cloned()
                .unwrap_or(Origin::Default),
            "no capabilities.allow: the certificate and the manifest alone limit capabilities"
                .to_string(),
        ),
    };
    push(
        "capability",
        "operator allowlist",
        allow,
        None,
        Some(allow_width as f64),
        allow_by,
        allow_note,
    );
    for hook in &eff.hooks {
        let h = op.host.hooks.get(hook).cloned().unwrap_or_default();
        let key = |k: &str| {
            format!(
                "hooks.{}.{k}",
                super::layers::dotted(std::slice::from_ref(hook))
            )
        };
        let open = op.host.failure(hook) == FailureMode::Open;
        push(
            "hook",
            &format!("{hook} failure"),
            json!(if open { "open" } else { "closed" }),
            None,
            Some(f64::from(u8::from(open))),
            op.origin(&key("failure")),
            String::new(),
        );
        // Ranked by its length: a longer deadline holds an agent's call (and a pre-request
        // hook, the request) that much longer on a slow or stuck plugin, so a plugin section
        // that raises its signer's is a widening `plugin-widens-signer` reports.
        let deadline = op.host.deadline_ms(hook, None);
        push(
            "hook",
            &format!("{hook} deadline_ms"),
            json!(deadline),
            None,
            Some(deadline as f64),
            op.origin(&key("deadline_ms")),
            String::new(),
        );
        // The answer a call that fails open gets: one that allows (`"allow": true`) lets the
        // request through without the plugin, so it ranks above any other — while the hook
        // fails open; failing closed, the answer is never given and ranks as any other.
        let answer = op.host.fail_open_default(hook);
        let allows = open && answer.get("allow").and_then(Value::as_bool) == Some(true);
        push(
            "hook",
            &format!("{hook} default"),
            answer,
            None,
            Some(f64::from(u8::from(allows))),
            op.origin(&key("default")),
            if open {
                "the answer of a call that fails (it fails open)".to_string()
            } else {
                "the answer of a call that fails, were it to fail open (it fails closed)"
                    .to_string()
            },
        );
        push(
            "hook",
            &format!("{hook} cache_ttl_ms"),
            json!(h.cache_ttl_ms.unwrap_or(0)),
            None,
            None,
            op.origin(&key("cache_ttl_ms")),
            String::new(),
        );
        if hook == crate::sertone::PRE_REQUEST {
            // Money a control center pays on the plugin's word: shown even when unset.
            // Ranked, so that `policy diff` and `plugin-widens-signer` call a higher cap or
            // a destination no longer pinned wider (unranked, they were only "changes"): the
            // cap by its micro-USDC (unset accepts none above zero, as a cap of 0), the
            // destination "any" above a pinned one (one pinned address for another is a
            // change, not a widening).
            let fee_cap = h
                .max_fee_usdc
                .as_deref()
                .map_or(Some(0), crate::sertone::micro_usdc);
            push(
                "hook",
                &format!("{hook} max_fee_usdc"),
                json!(h.max_fee_usdc.as_deref().unwrap_or("none")),
                None,
                fee_cap.map(|micro| micro as f64),
                op.origin(&key("max_fee_usdc")),
                "no fee above zero is accepted when unset".to_string(),
            );
            push(
                "hook",
                &format!("{hook} fee_destination"),
                json!(h.fee_destination.as_deref().unwrap_or("any")),
                None,
                Some(if h.fee_destination.is_some() {
                    0.0
                } else {
                    1.0
                }),
                op.origin(&key("fee_destination")),
                String::new(),
            );
        }
    }
    push(
        "hook",
        "default deadline_ms",
        json!(op.host.protocol.default_deadline_ms),
        None,
        Some(op.host.protocol.default_deadline_ms as f64),
        op.origin("protocol.default_deadline_ms"),
        String::new(),
    );
    // The plugin's key/value store's quotas: each a bound on what the plugin may keep on the
    // host's disk, ranked by its size (a plugin section that raises one widens).
    let kv = &op.host.kv;
    for (k, v) in [
        ("max_keys", kv.max_keys),
        ("max_key_bytes", kv.max_key_bytes),
        ("max_value_bytes", kv.max_value_bytes),
        ("max_total_bytes", kv.max_total_bytes),
    ] {
        push(
            "kv",
            k,
            json!(v),
            None,
            Some(v as f64),
            op.origin(&format!("kv.{k}")),
            String::new(),
        );
    }
    let sb = &eff.sandbox;
    for p in &sb.read_only {
        push(
            "filesystem",
            &format!("read_only {p}"),
            json!("read-only"),
            Some(true),
            Some(1.0),
            op.origin("filesystem.read_only"),
            // What the launch does with it depends on the host then, which a pure reading of
            // the policy cannot see: said, so that "yes" is not read as "it will be there".
            "bound if it exists at launch (a missing path is skipped and listed in the report)"
                .into(),
        );
    }
    for g in crate::sandbox::GENERATED_ETC {
        let bound = sb
            .read_only
            .iter()
            .any(|p| crate::sandbox::is_at_or_under(g, p));
        if !bound {
            push(
                "filesystem",
                &format!("generated {g}"),
                json!("generated stub (not the host's)"),
                Some(true),
                Some(0.0),
                Origin::Default,
                "the sandbox writes its own; list the path in read_only to see the host's".into(),
            );
        }
    }
    for d in &eff.writable {
        // A granted path must be a directory on the host at launch (not a file, not a symbolic
        // link): the launch refuses anything else (125) rather than run without it.
        let note = if d.granted {
            format!(
                "{}; must be an existing directory (not a symbolic link) at launch (else the launch \
                 is refused, 125)",
                d.reason
            )
        } else {
            d.reason.clone()
        };
        push(
            "filesystem",
            &format!("writable {}", d.item),
            json!("read-write"),
            Some(d.granted),
            Some(f64::from(u8::from(d.granted))),
            d.decided_by.clone(),
            note,
        );
    }
    for (k, v, w) in [("proc", sb.proc, sb.proc), ("sys", sb.sys, sb.sys)] {
        push(
            "filesystem",
            k,
            json!(v),
            Some(v),
            Some(f64::from(u8::from(w))),
            op.origin(&format!("filesystem.{k}")),
            String::new(),
        );
    }
    for (k, v) in [("tmp_size", sb.tmp_size), ("tmp_inodes", sb.tmp_inodes)] {
        push(
            "filesystem",
            k,
            json!(v),
            None,
            Some(v as f64),
            op.origin(&format!("filesystem.{k}")),
            String::new(),
        );
    }
    let net = match sb.network {
        NetworkMode::None => "none",
        NetworkMode::Loopback => "loopback",
    };
    push(
        "network",
        "mode",
        json!(net),
        Some(eff.network.granted),
        Some(f64::from(u8::from(eff.network.granted))),
        eff.network.decided_by.clone(),
        eff.network.reason.clone(),
    );
    let r = &sb.resources;
    for (k, l) in [
        ("memory_max", r.memory_max),
        ("swap_max", r.swap_max),
        ("pids_max", r.pids_max),
        ("nofile", r.nofile),
        ("nproc", r.nproc),
        ("fsize", r.fsize),
        ("core", r.core),
        ("memlock", r.memlock),
        ("cpu_time_secs", r.cpu_time_secs),
    ] {
        let (v, w) = limit(l);
        push(
            "resource",
            k,
            v,
            None,
            Some(w),
            op.origin(&format!("resources.{k}")),
            String::new(),
        );
    }
    let (cpu, cw) = match r.cpu_max {
        CpuQuota::Millicores(m) => (json!(format!("{m}m")), m as f64),
        CpuQuota::Unlimited => (json!("unlimited"), f64::INFINITY),
    };
    push(
        "resource",
        "cpu_max",
        cpu,
        None,
        Some(cw),
        op.origin("resources.cpu_max"),
        cpu_share(r.cpu_max),
    );
    for g in syscalls::GROUPS {
        let on = sb.seccomp_groups.iter().any(|n| n == g.name);
        push(
            "seccomp",
            g.name,
            json!(if on { "allowed" } else { "killed" }),
            Some(on),
            Some(f64::from(u8::from(on))),
            op.origin("seccomp.groups"),
            g.description.to_string(),
        );
    }
    for s in sb.source.seccomp.allow.iter().flatten() {
        push(
            "seccomp",
            &format!("allow {s}"),
            json!("allowed"),
            Some(true),
            Some(1.0),
            op.origin("seccomp.allow"),
            String::new(),
        );
    }
    for d in [
        Degradation::DistinctUid,
        Degradation::Cgroup,
        Degradation::CgroupPartial,
        Degradation::Landlock,
        Degradation::LandlockNetwork,
        Degradation::LandlockScope,
    ] {
        // `allows`, not the lists: `cgroup_partial` is also allowed wherever `cgroup` is.
        let (v, w, key) = if sb.allows(d, false) {
            ("may be missing", 2.0, "layers.allow_degraded")
        } else if sb.allows(d, true) {
            (
                "required as root, may be missing rootless",
                1.0,
                "layers.allow_degraded_rootless",
            )
        } else {
            ("required", 0.0, "layers.allow_degraded")
        };
        push(
            "layer",
            d.as_str(),
            json!(v),
            None,
            Some(w),
            op.origin(key),
            String::new(),
        );
    }
    push(
        "layer",
        "min_landlock_abi",
        json!(sb.min_landlock_abi),
        None,
        Some(-f64::from(sb.min_landlock_abi)),
        op.origin("layers.min_landlock_abi"),
        String::new(),
    );
    let mode = op.trust.mode.unwrap_or(TrustModeName::Strict);
    push(
        "trust",
        "mode",
        json!(mode.as_str()),
        None,
        Some(f64::from(mode as u8)),
        op.origin("trust.mode"),
        String::new(),
    );
    for (k, v, d) in [
        ("roots", &op.trust.roots, "/etc/stockade/trust"),
        (
            "revocation",
            &op.trust.revocation,
            "<roots>/revocations.json",
        ),
        ("grants", &op.trust.grants, "/etc/stockade/grants"),
    ] {
        push(
            "trust",
            k,
            json!(v.clone().unwrap_or_else(|| d.to_string())),
            None,
            None,
            op.origin(&format!("trust.{k}")),
            String::new(),
        );
    }
    // Both ranked, so that `diff` says which way they moved (audit-145: each was `changes`):
    // without a required list the revocation step may be skipped (wider), and every operator
    // key is one more signer whose grants are accepted (a set, ordered by inclusion).
    let required = op.trust.require_revocation.unwrap_or(false);
    push(
        "trust",
        "require_revocation",
        json!(required),
        None,
        Some(if required { 0.0 } else { 1.0 }),
        op.origin("trust.require_revocation"),
        String::new(),
    );
    let keys = op.trust.operator_keys.clone().unwrap_or_default();
    push(
        "trust",
        "operator_keys",
        json!(keys),
        None,
        Some(keys.len() as f64),
        op.origin("trust.operator_keys"),
        String::new(),
    );
    // Read by `stockade run` alone: a daemon keeps each loaded package's tree while loaded.
    const KEEP_TREES_NOTE: &str = "stockade run only; serve keeps each loaded package's tree \
                                   until its unload";
    push(
        "trust",
        "keep_trees",
        json!(op.trust.keep_trees.unwrap_or(super::DEFAULT_KEEP_TREES)),
        None,
        None,
        op.origin("trust.keep_trees"),
        KEEP_TREES_NOTE.into(),
    );
    push(
        "trust",
        "keep_trees_max_mib",
        json!(op
            .trust
            .keep_trees_max_mib
            .unwrap_or(super::DEFAULT_KEEP_TREES_MAX_MIB)),
        None,
        None,
        op.origin("trust.keep_trees_max_mib"),
        KEEP_TREES_NOTE.into(),
    );
    // `[audit]` (audit-145: explain showed none of it, so `policy diff` said nothing of a
    // drop-in that turns the journal off or moves the log). Ranked as oversight: a sink gone,
    // or fewer rotated files kept, widens (what a plugin does is then recorded or kept less).
    let audit = &op.audit;
    let sink = |on: bool| Some(if on { 0.0 } else { 1.0 });
    push(
        "audit",
        "file",
        json!(audit.file.clone().unwrap_or_else(|| "none".into())),
        None,
        // One path for another changes, neither narrower.
        sink(audit.file.is_some()),
        op.origin("audit.file"),
        String::new(),
    );
    for (k, on) in [("journal", audit.journal), ("stderr", audit.stderr)] {
        push(
            "audit",
            k,
            json!(on.unwrap_or(false)),
            None,
            sink(on.unwrap_or(false)),
            op.origin(&format!("audit.{k}")),
            String::new(),
        );
    }
    push(
        "audit",
        "rotate_size",
        json!(audit.rotate_size.clone().unwrap_or_else(|| "none".into())),
        None,
        None,
        op.origin("audit.rotate_size"),
        String::new(),
    );
    push(
        "audit",
        "keep",
        match audit.keep {
            Some(n) => json!(n),
            None => json!("all"),
        },
        None,
        // Unset keeps every rotated file; a smaller `keep` removes more of them.
        Some(audit.keep.map_or(0.0, |n| 1.0 / f64::from(n.max(1)))),
        op.origin("audit.keep"),
        "rotated files kept; older ones are removed at each rotation".into(),
    );
    push(
        "identity",
        "inside uid/gid",
        json!(format!("{}/{}", sb.inside_uid, sb.inside_gid)),
        None,
        None,
        match op.origin("identity.inside_uid") {
            Origin::Default => op.origin("identity.inside_gid"),
            set => set,
        },
        String::new(),
    );
    // The rest of `[identity]` (audit-134: a reader of explain could not see them): the host
    // uids plugins run as, which must be the plugins' alone, and the UTS name they see.
    let last = u64::from(sb.uid_first) + u64::from(sb.uid_count).saturating_sub(1);
    push(
        "identity",
        "host uid range",
        json!(format!("{}-{last}", sb.uid_first)),
        None,
        None,
        match op.origin("identity.uid_first") {
            Origin::Default => op.origin("identity.uid_count"),
            set => set,
        },
        "one host uid and gid per live plugin in root mode (the caller's own uid rootless)".into(),
    );
    push(
        "identity",
        "hostname",
        json!(sb.hostname),
        None,
        None,
        op.origin("identity.hostname"),
        "the sandbox's own UTS namespace and /etc/hostname".into(),
    );
    // `[protocol]`: the plugin link's limits; each a bound on what one plugin may make the
    // host hold or forward, ranked by its size (the default hook deadline is listed with the
    // hooks).
    let pl = &op.host.protocol;
    for (k, v) in [
        ("max_frame_bytes", pl.max_frame_bytes as u64),
        ("max_in_flight", pl.max_in_flight as u64),
        ("max_events_per_sec", u64::from(pl.max_events_per_sec)),
        ("max_stderr_bytes", pl.max_stderr_bytes as u64),
        ("handshake_timeout_ms", pl.handshake_timeout_ms),
        ("frame_timeout_ms", pl.frame_timeout_ms),
        ("shutdown_grace_ms", pl.shutdown_grace_ms),
    ] {
        push(
            "protocol",
            k,
            json!(v),
            None,
            Some(v as f64),
            op.origin(&format!("protocol.{k}")),
            String::new(),
        );
    }

    let (exposure, exposure_items) = exposure(op, eff);
    Explanation {
        plugin: op.plugin.clone().or(op.signer.clone()),
        layers: op.layers.clone(),
        items,
        exposure,
        exposure_items,
    }
}

/// The exposure score and its table (see the module docs for the weights).
pub fn exposure(op: &ResolvedPolicy, eff: &EffectivePolicy) -> (f64, Vec<ExposureItem>) {
    let sb = &eff.sandbox;
    let caps_medium: Vec<bool> = eff
        .capabilities
        .iter()
        .filter(|d| d.risk >= RiskClass::Medium)
        .map(|d| d.granted)
        .collect();
    let share = if caps_medium.is_empty() {
        0.0
    } else {
        caps_medium.iter().filter(|g| **g).count() as f64 / caps_medium.len() as f64
    };
    let trust = match op.trust.mode.unwrap_or(TrustModeName::Strict) {
        TrustModeName::Strict => 0.0,
        TrustModeName::Warn => 0.5,
        TrustModeName::Disabled => 1.0,
    };
    let rows: [(&str, f64, f64); 13] = [
        ("network", 2.0, f64::from(u8::from(eff.network.granted))),
        (
            "writable",
            1.5,
            f64::from(u8::from(!sb.writable.is_empty())),
        ),
        ("trust", 1.5, trust),
        (
            "landlock_degradable",
            1.0,
            f64::from(u8::from(
                sb.allow_degraded.contains(&Degradation::Landlock) || sb.min_landlock_abi == 0,
            )),
        ),
        (
            "cgroup_degradable",
            0.5,
            f64::from(u8::from(sb.allow_degraded.contains(&Degradation::Cgroup))),
        ),
        (
            "memory_unlimited",
            0.7,
            f64::from(u8::from(sb.resources.memory_max == Limit::Unlimited)),
        ),
        (
            "pids_unlimited",
            0.7,
            f64::from(u8::from(sb.resources.pids_max == Limit::Unlimited)),
        ),
        (
            "cpu_unlimited",
            0.3,
            f64::from(u8::from(sb.resources.cpu_max == CpuQuota::Unlimited)),
        ),
        (
            "hook_fail_open",
            0.5,
            f64::from(u8::from(
                eff.hooks
                    .iter()
                    .any(|h| op.host.failure(h) == FailureMode::Open),
            )),
        ),
        ("medium_risk_capabilities", 0.5, share),
        ("sys_visible", 0.3, f64::from(u8::from(sb.sys))),
        (
            "extra_syscalls",
            0.3,
            f64::from(u8::from(
                sb.source
                    .seccomp
                    .allow
                    .as_ref()
                    .is_some_and(|a| !a.is_empty()),
            )),
        ),
        (
            "core_dumps",
            0.2,
            f64::from(u8::from(sb.resources.core != Limit::Max(0))),
        ),
    ];
    let items: Vec<ExposureItem> = rows
        .iter()
        .map(|(item, weight, frac)| ExposureItem {
            item: (*item).into(),
            weight: *weight,
            contributes: (weight * frac * 100.0).round() / 100.0,
        })
        .collect();
    let total: f64 = items.iter().map(|i| i.contributes).sum();
    ((total * 10.0).round() / 10.0, items)
}

/// How one item changed between two explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `widens`, `narrows` or `changes`.
    pub effect: &'static str,
    /// Section.
    pub section: String,
    /// Item.
    pub name: String,
    /// Value in A (`null`: absent).
    pub from: Value,
    /// Value in B (`null`: absent).
    pub to: Value,
    /// Who decides it in B (or A when removed).
    pub decided_by: String,
}

/// Compare two explanations item by item.
/// `widens` when set `b` holds all of `a` and more, `narrows` when `a` holds all of `b` and
/// more, else `changes` (two JSON arrays, taken as sets).
fn set_effect(a: &Value, b: &Value) -> &'static str {
    let set = |v: &Value| -> std::collections::BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect()
    };
    let (a, b) = (set(a), set(b));
    match (a.is_subset(&b), b.is_subset(&a)) {
        (true, false) => "widens",
        (false, true) => "narrows",
        _ => "changes",
    }
}

pub fn diff(a: &Explanation, b: &Explanation) -> Vec<Change> {
    let key = |i: &Item| (i.section.clone(), i.name.clone());
    let am: std::collections::BTreeMap<_, _> = a.items.iter().map(|i| (key(i), i)).collect();
    let bm: std::collections::BTreeMap<_, _> = b.items.iter().map(|i| (key(i), i)).collect();
    let mut out = Vec::new();
    for (k, ia) in &am {
        match bm.get(k) {
            None => out.push(Change {
                effect: if ia.granted == Some(false) {
                    "changes"
                } else {
                    "narrows"
                },
                section: k.0.clone(),
                name: k.1.clone(),
                from: ia.value.clone(),
                to: Value::Null,
                decided_by: ia.decided_by.clone(),
            }),
            Some(ib) if ib.value != ia.value || ib.granted != ia.granted => {
                let effect = match (ia.width, ib.width) {
                    // A set (the operator allowlist) is ordered by inclusion, not by its size:
                    // `[log, emit_event]` → `[kv_put]` is smaller and narrows nothing.
                    (Some(_), Some(_)) if ia.value.is_array() && ib.value.is_array() => {
                        set_effect(&ia.value, &ib.value)
                    }
                    (Some(x), Some(y)) if y > x => "widens",
                    (Some(x), Some(y)) if y < x => "narrows",
                    _ => "changes",
                };
                out.push(Change {
                    effect,
                    section: k.0.clone(),
                    name: k.1.clone(),
                    from: ia.value.clone(),
                    to: ib.value.clone(),
                    decided_by: ib.decided_by.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for (k, ib) in &bm {
        if !am.contains_key(k) {
            out.push(Change {
                effect: if ib.granted == Some(false) {
                    "changes"
                } else {
                    "widens"
                },
                section: k.0.clone(),
                name: k.1.clone(),
                from: Value::Null,
                to: ib.value.clone(),
                decided_by: ib.decided_by.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::effective::{effective, PluginFacts};
    use crate::operator::{merge, PolicyLayer};

    fn ex(text: &str) -> Explanation {
        let m = merge(&[PolicyLayer {
            path: "p.toml".into(),
            text: text.into(),
        }])
        .unwrap();
        let r = m.resolve(None, None).unwrap();
        let e = effective(&r, &PluginFacts::default(), None);
        explain(&r, &e)
    }

    #[test]
    fn default_policy_scores_low_and_every_item_has_an_origin() {
        let e = ex("version = 1\n");
        assert!(e.exposure <= 1.0, "{}", e.exposure);
        assert!(e.items.iter().all(|i| !i.decided_by.is_empty()));
        let weights: f64 = e.exposure_items.iter().map(|i| i.weight).sum();
        assert!((weights - 10.0).abs() < 1e-9);
    }

    /// The launch binds a `read_only` path only if the host has it, and refuses a `writable` one
    /// the host lacks: a bare "yes" read as "it will be there" (audit C1), so each row says it.
    #[test]
    fn paths_say_what_the_launch_does_when_the_host_lacks_them() {
        let e = ex("version = 1\n[filesystem]\nread_only = [\"/srv/ro\"]\n\
                    writable = [\"/srv/rw\"]\n");
        let note = |name: &str| {
            let i = e.items.iter().find(|i| i.name == name).unwrap();
            i.note.clone()
        };
        assert!(
            note("read_only /srv/ro").contains("missing path is skipped"),
            "{e:?}"
        );
        assert!(
            note("writable /srv/rw").contains("launch is refused, 125"),
            "{e:?}"
        );
    }

    /// `cpu_max = "50%"` is half of ONE CPU (audit-90 L8), which explain printed as `500m`
    /// alone: a reader used to machine-wide percentages takes it for half the machine.
    #[test]
    fn cpu_max_is_explained_as_a_share_of_one_cpu() {
        let note = |text: &str| {
            let e = ex(text);
            let i = e.items.iter().find(|i| i.name == "cpu_max").unwrap();
            (i.value.clone(), i.note.clone())
        };
        let (v, n) = note("version = 1\n[resources]\ncpu_max = \"50%\"\n");
        assert_eq!(v, json!("500m"));
        assert_eq!(n, "50% of one CPU (0.5 CPU), not of the machine");
        let (_, n) = note("version = 1\n[resources]\ncpu_max = \"1500m\"\n");
        assert_eq!(n, "150% of one CPU (1.5 CPUs), not of the machine");
        let (_, n) = note("version = 1\n");
        assert_eq!(n, "100% of one CPU (1 CPU), not of the machine");
        let (_, n) = note("version = 1\n[resources]\ncpu_max = \"15m\"\n");
        assert_eq!(n, "1.5% of one CPU (0.015 CPU), not of the machine");
        let (v, n) = note("version = 1\n[resources]\ncpu_max = \"unlimited\"\n");
        assert_eq!((v, n.as_str()), (json!("unlimited"), "no CPU quota"));
    }

    /// An empty `[capabilities]` reads as "none allowed" and restricts nothing (audit-90 L6):
    /// explain says "not restricted", decided by that section's line.
    #[test]
    fn capabilities_without_allow_are_explained_as_not_restricted() {
        let item = |text: &str| {
            let e = ex(text);
            let i = e
                .items
                .iter()
                .find(|i| i.section == "capability" && i.name == "operator allowlist")
                .cloned();
            i.map(|i| (i.value, i.decided_by))
        };
        assert_eq!(
            item("version = 1\n\n[capabilities]\n"),
            Some((json!("not restricted"), "p.toml:3".to_string()))
        );
        assert_eq!(
            item("version = 1\n"),
            Some((json!("not restricted"), "default".to_string()))
        );
        assert_eq!(
            item("version = 1\n[capabilities]\nallow = [\"kv_get\", \"log\"]\n"),
            Some((json!(["log", "kv_get"]), "p.toml:3".to_string()))
        );
        assert_eq!(
            item("version = 1\n[capabilities]\nallow = []\n"),
            Some((json!([]), "p.toml:3".to_string()))
        );
        let e = ex("version = 1\n[capabilities]\n");
        let log = e.items.iter().find(|i| i.name == "log").unwrap();
        assert!(
            log.note.contains("not restricted by the operator"),
            "{log:?}"
        );
    }

    /// A `[risk]` move shows in `diff` without `--plugin`, ranked by what the class requires:
    /// down widens (medium → low weighs less in the exposure score; out of high needs no
    /// grant), up narrows. Before helper-152 (audit-145's finding) the class was only in the
    /// capability rows' notes, which `diff` does not compare: medium ↔ low said nothing.
    #[test]
    fn diff_ranks_a_risk_class_move() {
        let base = ex("version = 1\n");
        let moved = ex("version = 1\n[risk]\nkv_put = \"low\"\nlog = \"medium\"\n\
                        writable = \"medium\"\n");
        let d = diff(&base, &moved);
        let change = |n: &str| {
            d.iter()
                .find(|c| c.section == "risk" && c.name == n)
                .map(|c| (c.effect, c.from.clone(), c.to.clone(), c.decided_by.clone()))
        };
        assert_eq!(
            change("kv_put"),
            Some(("widens", json!("medium"), json!("low"), "p.toml:3".into()))
        );
        assert_eq!(
            change("log"),
            Some(("narrows", json!("low"), json!("medium"), "p.toml:4".into()))
        );
        assert_eq!(
            change("writable"),
            Some(("widens", json!("high"), json!("medium"), "p.toml:5".into()))
        );
        assert_eq!(change("emit_event"), None);
        assert_eq!(d.iter().filter(|c| c.section == "risk").count(), 3, "{d:?}");
        // And back: each move the other way.
        let back = diff(&moved, &base);
        let effect = |n: &str| {
            back.iter()
                .find(|c| c.section == "risk" && c.name == n)
                .map(|c| c.effect)
        };
        assert_eq!(effect("kv_put"), Some("narrows"));
        assert_eq!(effect("log"), Some("widens"));
        // The row notes the built-in class when moved.
        let row = moved
            .items
            .iter()
            .find(|i| i.section == "risk" && i.name == "kv_put")
            .unwrap();
        assert_eq!(row.note, "built in: medium");
    }

    #[test]
    fn diff_says_what_widens_and_narrows() {
        let a = ex("version = 1\n[resources]\nmemory_max = \"64M\"\n");
        let b = ex("version = 1\n[resources]\nmemory_max = \"unlimited\"\npids_max = 8\n[network]\nmode = \"loopback\"\n");
        assert!(b.exposure > a.exposure);
        let d = diff(&a, &b);
        let eff = |s: &str, n: &str| {
            d.iter()
                .find(|c| c.section == s && c.name == n)
                .map(|c| c.effect)
        };
        assert_eq!(eff("resource", "memory_max"), Some("widens"));
        assert_eq!(eff("resource", "pids_max"), Some("narrows"));
        assert_eq!(eff("network", "mode"), Some("widens"));
        assert_eq!(eff("resource", "nofile"), None);
    }

    /// audit-145: `require_revocation` and `operator_keys` were unranked (`changes`), and
    /// `[audit]` was not explained at all, so `policy diff` said nothing of a drop-in that
    /// turns a sink off: each weakening widens now, its reverse narrows.
    #[test]
    fn diff_ranks_revocation_operator_keys_and_the_audit_sinks() {
        let effect = |a: &str, b: &str, section: &str, name: &str| {
            diff(
                &ex(&format!("version = 1\n{a}")),
                &ex(&format!("version = 1\n{b}")),
            )
            .into_iter()
            .find(|c| c.section == section && c.name == name)
            .map(|c| c.effect)
        };
        let req = |v: bool| format!("[trust]\nrequire_revocation = {v}\n");
        let t = ("trust", "require_revocation");
        assert_eq!(effect(&req(true), &req(false), t.0, t.1), Some("widens"));
        assert_eq!(effect(&req(false), &req(true), t.0, t.1), Some("narrows"));
        let keys = |k: &str| format!("[trust]\noperator_keys = [{k}]\n");
        let (one, two) = (r#""/etc/a.pub""#, r#""/etc/a.pub", "/etc/b.pub""#);
        let k = ("trust", "operator_keys");
        assert_eq!(effect(&keys(one), &keys(two), k.0, k.1), Some("widens"));
        assert_eq!(effect(&keys(two), &keys(one), k.0, k.1), Some("narrows"));
        let other = r#""/etc/b.pub""#;
        assert_eq!(effect(&keys(one), &keys(other), k.0, k.1), Some("changes"));
        let audit = |t: &str| format!("[audit]\n{t}\n");
        let file = audit(r#"file = "/var/log/stockade/audit.log""#);
        assert_eq!(effect(&file, "", "audit", "file"), Some("widens"));
        assert_eq!(effect("", &file, "audit", "file"), Some("narrows"));
        let moved = audit(r#"file = "/tmp/audit.log""#);
        assert_eq!(effect(&file, &moved, "audit", "file"), Some("changes"));
        for sink in ["journal", "stderr"] {
            let (on, off) = (
                audit(&format!("{sink} = true")),
                audit(&format!("{sink} = false")),
            );
            assert_eq!(effect(&on, &off, "audit", sink), Some("widens"), "{sink}");
            assert_eq!(effect(&off, &on, "audit", sink), Some("narrows"), "{sink}");
        }
        let (five, two) = (audit("keep = 5"), audit("keep = 2"));
        assert_eq!(effect(&five, &two, "audit", "keep"), Some("widens"));
        assert_eq!(effect(&five, "", "audit", "keep"), Some("narrows"));
        assert_eq!(effect("", &two, "audit", "keep"), Some("widens"));
    }

    /// The operator allowlist is a set: ranked by inclusion, not by how many it names
    /// (`[emit_event, log]` → `[kv_put]` "narrowed", review-98 L3); "not restricted" is wider
    /// than any list.
    #[test]
    fn diff_ranks_the_operator_allowlist_by_inclusion() {
        let allow = |list: Option<&str>| {
            ex(&match list {
                Some(l) => format!("version = 1\n[capabilities]\nallow = [{l}]\n"),
                None => "version = 1\n".to_string(),
            })
        };
        let effect = |a: &Explanation, b: &Explanation| {
            diff(a, b)
                .into_iter()
                .find(|c| c.section == "capability" && c.name == "operator allowlist")
                .map(|c| c.effect)
        };
        let two = allow(Some("\"log\", \"emit_event\""));
        let other = allow(Some("\"kv_put\""));
        let one = allow(Some("\"log\""));
        assert_eq!(effect(&two, &other), Some("changes"));
        assert_eq!(effect(&one, &other), Some("changes"));
        assert_eq!(effect(&two, &one), Some("narrows"));
        assert_eq!(effect(&one, &two), Some("widens"));
        assert_eq!(effect(&two, &allow(None)), Some("widens"));
        assert_eq!(effect(&allow(None), &one), Some("narrows"));
    }

    /// The Sertone fee cap and destination were unranked, so `policy diff` (and lint's
    /// `plugin-widens-signer`) called a higher cap or an unpinned destination a "change": a
    /// higher cap (unset is none above zero) and "any" destination widen, the reverse narrows,
    /// one pinned address for another changes.
    #[test]
    fn diff_ranks_the_fee_cap_and_destination() {
        let hook = crate::sertone::PRE_REQUEST;
        let fee = |cap: Option<&str>, to: Option<&str>| {
            let mut t = format!("version = 1\n[hooks.\"{hook}\"]\nfailure = \"closed\"\n");
            if let Some(c) = cap {
                t.push_str(&format!("max_fee_usdc = \"{c}\"\n"));
            }
            if let Some(a) = to {
                t.push_str(&format!("fee_destination = \"{a}\"\n"));
            }
            ex(&t)
        };
        let effect = |a: &Explanation, b: &Explanation, name: &str| {
            diff(a, b)
                .into_iter()
                .find(|c| c.name == format!("{hook} {name}"))
                .map(|c| c.effect)
        };
        let (x, y) = (
            Some("0x1111111111111111111111111111111111111111"),
            Some("0x2222222222222222222222222222222222222222"),
        );
        let cap = "max_fee_usdc";
        assert_eq!(
            effect(&fee(None, x), &fee(Some("0.5"), x), cap),
            Some("widens")
        );
        assert_eq!(
            effect(&fee(Some("0.5"), x), &fee(Some("2"), x), cap),
            Some("widens")
        );
        assert_eq!(
            effect(&fee(Some("2"), x), &fee(Some("0.25"), x), cap),
            Some("narrows")
        );
        assert_eq!(
            effect(&fee(Some("0.5"), x), &fee(None, x), cap),
            Some("narrows")
        );
        let to = "fee_destination";
        assert_eq!(effect(&fee(None, x), &fee(None, None), to), Some("widens"));
        assert_eq!(effect(&fee(None, None), &fee(None, x), to), Some("narrows"));
        assert_eq!(effect(&fee(None, x), &fee(None, y), to), Some("changes"));
    }
}
