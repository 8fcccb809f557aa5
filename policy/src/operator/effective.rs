//! Effective policy = operator policy ∩ developer-certificate scope ∩ manifest request, with
//! high-risk items withheld unless a verified authorization grant names them.
//!
//! Each item gets one [`Decision`] saying whether it is granted and which of the inputs decided
//! it: the first input, in the order manifest → certificate → operator file → grant, that denies
//! it; or, when granted, the operator line that allowed it. `policy explain` prints exactly
//! these decisions and `stockade run` launches with exactly [`EffectivePolicy::sandbox`] and
//! [`EffectivePolicy::host`], so what is explained is what is enforced.

use super::risk::{class_of, grant_target, RiskClass};
use super::{Origin, ResolvedPolicy};
use crate::capability::{Capability, Scope};
use crate::protocol::host::HostPolicy;
use crate::sandbox::{NetworkMode, ValidatedSandboxPolicy};
use serde::Serialize;
use std::collections::BTreeSet;

/// What is known about the plugin. `None` fields are unknown (explaining a policy for a plugin
/// name without its package): they then deny nothing, and the decision says so.
#[derive(Debug, Clone, Default)]
pub struct PluginFacts {
    /// Manifest `name`.
    pub name: String,
    /// Manifest `version`.
    pub version: Option<String>,
    /// The developer certificate's scope and the capability ceiling the verification computed
    /// for it ([`Scope::ceiling`] for a verified chain).
    pub ceiling: Option<Ceiling>,
    /// Manifest `requested_capabilities`.
    pub requested: Option<BTreeSet<Capability>>,
    /// Manifest `hooks` (empty when unknown).
    pub hooks: Vec<String>,
}

/// A certificate's scope and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    /// The scope, for reports.
    pub scope: String,
    /// The capabilities it allows.
    pub capabilities: BTreeSet<Capability>,
}

impl From<&Scope> for Ceiling {
    fn from(s: &Scope) -> Self {
        Ceiling {
            scope: s.to_string(),
            capabilities: s.ceiling(),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The item: a capability name, `network`, or a writable path.
    pub item: String,
    /// Granted or not.
    pub granted: bool,
    /// The item's risk class.
    pub risk: RiskClass,
    /// Who decided.
    pub decided_by: Origin,
    /// Why, in words.
    pub reason: String,
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectivePolicy {
    /// One decision per capability, in canonical order.
    pub capabilities: Vec<Decision>,
    /// The network decision.
    pub network: Decision,
    /// One decision per writable path the operator lists.
    pub writable: Vec<Decision>,
    /// The granted capabilities.
    pub granted: BTreeSet<Capability>,
    /// Hooks to explain: the manifest's and the ones the policy configures.
    pub hooks: BTreeSet<String>,
    /// The sandbox policy to launch with (network and writable paths reduced to what is granted).
    pub sandbox: ValidatedSandboxPolicy,
    /// The host policy to serve with (`capabilities.allow` = the granted set).
    #[serde(skip)]
    pub host: HostPolicy,
}

impl EffectivePolicy {
    /// Every decision: capabilities, network, writable paths.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.capabilities
            .iter()
            .chain(std::iter::once(&self.network))
            .chain(self.writable.iter())
    }
}

fn high_without_grant(
    risk: RiskClass,
    target: &str,
    grants: Option<&BTreeSet<String>>,
) -> Option<(Origin, String)> {
    let missing = grants.is_some_and(|g| !g.contains(target));
    (risk == RiskClass::High && missing).then(|| {
        (
            Origin::Grant {
                target: target.to_string(),
            },
            format!("high risk: no valid authorization grant for `{target}`"),
        )
    })
}

/// Compute the effective policy. `grants` are the targets of the grants that verified for this
/// plugin, version and scope (the runtime checks signatures, expiry and binding); `None` means
/// grants do not apply: `stockade exec`, where the operator runs a program of their own choice
/// under the policy as written, with no plugin to authorise.
pub fn effective(
    op: &ResolvedPolicy,
    facts: &PluginFacts,
    grants: Option<&BTreeSet<String>>,
) -> EffectivePolicy {
    let allow_origin = op.origin("capabilities.allow");
    let mut capabilities = Vec::new();
    let mut granted = BTreeSet::new();
    for cap in Capability::ALL {
        let risk = class_of(cap.as_str(), &op.risk);
        let target = grant_target("capability", cap.as_str());
        let denied: Option<(Origin, String)> =
            if facts.requested.as_ref().is_some_and(|r| !r.contains(&cap)) {
                Some((
                    Origin::Manifest {
                        field: "requested_capabilities".into(),
                    },
                    "not requested by the manifest".into(),
                ))
            } else if let Some(c) = facts
                .ceiling
                .as_ref()
                .filter(|c| !c.capabilities.contains(&cap))
            {
                Some((
                    Origin::Certificate {
                        scope: c.scope.clone(),
                    },
                    format!("above the ceiling of certificate scope `{}`", c.scope),
                ))
            } else if op
                .host
                .capabilities
                .allow
                .as_ref()
                .is_some_and(|a| !a.contains(&cap))
            {
                Some((
                    allow_origin.clone(),
                    "not in the operator's capabilities.allow".into(),
                ))
            } else {
                high_without_grant(risk, &target, grants)
            };
        let (granted_now, decided_by, reason) = match denied {
            Some((o, r)) => (false, o, r),
            None => {
                let mut why = Vec::new();
                why.push(if facts.requested.is_some() {
                    "requested"
                } else {
                    "granted if requested (no manifest given)"
                });
                why.push(if op.host.capabilities.allow.is_some() {
                    "allowed by the operator"
                } else {
                    "not restricted by the operator (no capabilities.allow)"
                });
                if risk == RiskClass::High && grants.is_some() {
                    why.push("authorised by a grant");
                }
                let by = if op.host.capabilities.allow.is_some() {
                    allow_origin.clone()
                } else if facts.requested.is_some() {
                    Origin::Manifest {
                        field: "requested_capabilities".into(),
                    }
                } else {
                    Origin::Default
                };
                (true, by, why.join(", "))
            }
        };
        if granted_now {
            granted.insert(cap);
        }
        capabilities.push(Decision {
            item: cap.as_str().into(),
            granted: granted_now,
            risk,
            decided_by,
            reason,
        });
    }

    let mut sandbox = op.sandbox.clone();
    let net_risk = class_of("network", &op.risk);
    let network = match op.sandbox.network {
        NetworkMode::None => Decision {
            item: "network".into(),
            granted: false,
            risk: net_risk,
            decided_by: op.origin("network.mode"),
            reason: "mode none: an empty network namespace".into(),
        },
        NetworkMode::Loopback => {
            match high_without_grant(net_risk, &grant_target("network", "loopback"), grants) {
                Some((o, r)) => {
                    sandbox.network = NetworkMode::None;
                    Decision {
                        item: "network".into(),
                        granted: false,
                        risk: net_risk,
                        decided_by: o,
                        reason: r,
                    }
                }
                None => Decision {
                    item: "network".into(),
                    granted: true,
                    risk: net_risk,
                    decided_by: op.origin("network.mode"),
                    reason: "mode loopback: a private namespace with only lo up".into(),
                },
            }
        }
    };

    let w_risk = class_of("writable", &op.risk);
    let w_origin = op.origin("filesystem.writable");
    let mut writable = Vec::new();
    sandbox.writable.clear();
    for p in &op.sandbox.writable {
        let d = match high_without_grant(w_risk, &grant_target("writable", p), grants) {
            Some((o, r)) => Decision {
                item: p.clone(),
                granted: false,
                risk: w_risk,
                decided_by: o,
                reason: r,
            },
            None => {
                sandbox.writable.push(p.clone());
                Decision {
                    item: p.clone(),
                    granted: true,
                    risk: w_risk,
                    decided_by: w_origin.clone(),
                    reason: "bound read-write".into(),
                }
            }
        };
        writable.push(d);
    }

    let mut host = op.host.clone();
    host.capabilities.allow = Some(granted.clone());
    let hooks = facts
        .hooks
        .iter()
        .chain(op.host.hooks.keys())
        .cloned()
        .collect();
    EffectivePolicy {
        capabilities,
        network,
        writable,
        granted,
        hooks,
        sandbox,
        host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{merge, PolicyLayer};
    use proptest::prelude::*;

    fn set(bits: u8) -> BTreeSet<Capability> {
        Capability::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    fn policy(allow: Option<u8>, high: u8, loopback: bool, writable: bool) -> ResolvedPolicy {
        let mut text = String::from("version = 1\n");
        if let Some(a) = allow {
            let names: Vec<String> = set(a).iter().map(|c| format!("\"{c}\"")).collect();
            text.push_str(&format!("[capabilities]\nallow = [{}]\n", names.join(", ")));
        }
        if loopback {
            text.push_str("[network]\nmode = \"loopback\"\n");
        }
        if writable {
            text.push_str("[filesystem]\nwritable = [\"/var/lib/a\", \"/var/lib/b\"]\n");
        }
        text.push_str("[risk]\n");
        for c in set(high) {
            text.push_str(&format!("{c} = \"high\"\n"));
        }
        let m = merge(&[PolicyLayer {
            path: "p.toml".into(),
            text,
        }])
        .unwrap();
        m.resolve(None, None).unwrap()
    }

    proptest! {
        /// Never grants what one of the three denies, never a high-risk item without a grant,
        /// and never loses what all allow.
        #[test]
        fn effective_is_the_intersection(
            req in 0u8..64, ceil_any in any::<bool>(), allow in proptest::option::of(0u8..64),
            high in 0u8..64, grant_bits in 0u8..64, loopback in any::<bool>(),
            writable in any::<bool>(), grant_net in any::<bool>(), grant_a in any::<bool>(),
        ) {
            let op = policy(allow, high, loopback, writable);
            let scope = if ceil_any { Scope::Any } else { Scope::License("x".into()) };
            let mut grants: BTreeSet<String> = set(grant_bits).iter().map(|c| grant_target("capability", c.as_str())).collect();
            if grant_net { grants.insert("network:loopback".into()); }
            if grant_a { grants.insert("writable:/var/lib/a".into()); }
            let facts = PluginFacts { name: "p".into(), version: Some("1.0.0".into()), ceiling: Some((&scope).into()), requested: Some(set(req)), hooks: vec![] };
            let e = effective(&op, &facts, Some(&grants));
            for cap in Capability::ALL {
                let all = set(req).contains(&cap)
                    && scope.ceiling().contains(&cap)
                    && allow.is_none_or(|a| set(a).contains(&cap))
                    && (!set(high).contains(&cap) || set(grant_bits).contains(&cap));
                prop_assert_eq!(all, e.granted.contains(&cap));
                prop_assert_eq!(all, e.host.capabilities.allow.as_ref().unwrap().contains(&cap));
            }
            prop_assert_eq!(e.sandbox.network == NetworkMode::Loopback, loopback && grant_net);
            prop_assert_eq!(e.network.granted, loopback && grant_net);
            let want_w: Vec<String> = if writable && grant_a { vec!["/var/lib/a".into()] } else { vec![] };
            prop_assert_eq!(&e.sandbox.writable, &want_w);
        }
    }

    #[test]
    fn without_grants_exec_keeps_the_policy_as_written() {
        // `exec` (grants = None): network and writable paths stay as the operator wrote them,
        // and the capabilities are the operator's allowlist.
        let op = policy(Some(0b000011), 0b111111, true, true);
        let e = effective(&op, &PluginFacts::default(), None);
        assert_eq!(e.sandbox, op.sandbox);
        assert!(e.network.granted);
        assert_eq!(e.granted, set(0b000011));
        // The same policy for a plugin without grants withholds them all.
        let e = effective(&op, &PluginFacts::default(), Some(&BTreeSet::new()));
        assert!(!e.network.granted && e.sandbox.writable.is_empty() && e.granted.is_empty());
    }

    #[test]
    fn decisions_name_who_denied() {
        let op = policy(Some(0b000001), 0, false, false);
        let facts = PluginFacts {
            name: "p".into(),
            version: None,
            ceiling: Some((&Scope::Any).into()),
            requested: Some([Capability::Log, Capability::KvPut, Capability::EmitEvent].into()),
            hooks: vec![],
        };
        let e = effective(&op, &facts, Some(&BTreeSet::new()));
        let by = |c: &str| {
            e.capabilities
                .iter()
                .find(|d| d.item == c)
                .unwrap()
                .decided_by
                .clone()
        };
        assert!(matches!(by("log"), Origin::File { line: Some(3), .. }));
        assert!(matches!(by("kv_get"), Origin::Manifest { .. }));
        assert!(matches!(by("kv_put"), Origin::Certificate { .. }));
        assert!(matches!(by("emit_event"), Origin::File { .. }));
        assert_eq!(e.granted, [Capability::Log].into());
    }
}
