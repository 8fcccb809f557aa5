//! Plugin dependencies (seed 000): the order in which a set of packages is installed, and the
//! checks that keep the installed set consistent. Pure: the store (`runtime/src/store`) hands in
//! what is installed and what is about to be, and gets back an order or the reason it refuses.
//!
//! Rules:
//! - every dependency of a plugin being installed must be satisfied by the resulting set (what is
//!   installed, with the new packages replacing their namesakes), transitively;
//! - no cycle may exist in the resulting set;
//! - replacing a plugin with another version must not break an installed plugin that depends on it;
//! - removing a plugin that an installed plugin needs is refused (the store allows `--force`).
//! - new versions of running plugins (`serve` following the store) are judged as one set, as
//!   the packages of one install are; a set that does not fit is cut down one update at a time
//!   ([`plan_updates`]).
//!
//! Every refusal names the chain that leads to it, from the plugin being installed to the problem
//! (`a 1.0.0 -> b ^2 -> c ^1`), so the operator sees *why* `c` matters.

use semver::{Version, VersionReq};
use std::collections::{BTreeMap, BTreeSet};

/// One plugin as far as dependencies are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepNode {
    /// Plugin name.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// What it needs: name → requirement.
    pub requires: BTreeMap<String, VersionReq>,
}

impl DepNode {
    /// Build from a name, a version and `(name, requirement)` pairs (already validated).
    pub fn new(
        name: impl Into<String>,
        version: Version,
        requires: impl IntoIterator<Item = (String, VersionReq)>,
    ) -> Self {
        Self {
            name: name.into(),
            version,
            requires: requires.into_iter().collect(),
        }
    }

    fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// Why a set of packages cannot be installed, or a plugin cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DepError {
    /// A required plugin is neither installed nor part of the set.
    #[error("unsatisfied dependency: {} ({name} is not installed)", chain.join(" -> "))]
    Missing {
        /// From the plugin being installed to the requirement.
        chain: Vec<String>,
        /// The missing plugin.
        name: String,
    },
    /// A required plugin is present in a version the requirement does not admit.
    #[error("unsatisfied dependency: {} ({name} {found} does not match)", chain.join(" -> "))]
    Unsatisfied {
        /// From the plugin being installed to the requirement.
        chain: Vec<String>,
        /// The plugin.
        name: String,
        /// The version that is (or would be) there.
        found: Version,
    },
    /// The dependencies loop.
    #[error("circular dependency: {}", chain.join(" -> "))]
    Cycle {
        /// The loop, first element repeated at the end.
        chain: Vec<String>,
    },
    /// Replacing a plugin would break an installed plugin that needs the old version.
    #[error("installing {name} {version} would break {dependent}, which requires {name} {req}")]
    BreaksDependent {
        /// The plugin being replaced.
        name: String,
        /// Its new version.
        version: Version,
        /// The installed plugin that needs it.
        dependent: String,
        /// What the dependent requires.
        req: VersionReq,
    },
    /// Two packages of the set have the same name.
    #[error("{0} is given twice")]
    Duplicate(String),
}

impl DepError {
    /// A stable kind for machine-readable errors.
    pub fn kind(&self) -> &'static str {
        match self {
            DepError::Missing { .. } | DepError::Unsatisfied { .. } => "store.dependency",
            DepError::Cycle { .. } => "store.dependency_cycle",
            DepError::BreaksDependent { .. } => "store.breaks_dependent",
            DepError::Duplicate(_) => "store.duplicate",
        }
    }

    /// The plugin the refusal starts from: the first link of its chain (`app` of
    /// `app 1.0.0 -> lib ^1`), or the plugin replaced or given twice.
    pub fn first_plugin(&self) -> &str {
        match self {
            DepError::Missing { chain, .. }
            | DepError::Unsatisfied { chain, .. }
            | DepError::Cycle { chain } => chain
                .first()
                .and_then(|c| c.split(' ').next())
                .unwrap_or_default(),
            DepError::BreaksDependent { name, .. } | DepError::Duplicate(name) => name,
        }
    }
}

/// The order in which to install `new` (dependencies first) so that the installed set stays
/// consistent, or why it cannot be done. `installed` is keyed by name.
pub fn plan_install(
    installed: &BTreeMap<String, DepNode>,
    new: &[DepNode],
) -> Result<Vec<String>, DepError> {
    let mut after = installed.clone();
    let mut new_names = BTreeSet::new();
    for n in new {
        if !new_names.insert(n.name.clone()) {
            return Err(DepError::Duplicate(n.name.clone()));
        }
        after.insert(n.name.clone(), n.clone());
    }
    // An upgrade or downgrade must keep every installed dependent satisfied.
    for n in new {
        for dep in installed.values() {
            if new_names.contains(&dep.name) {
                continue; // replaced too: checked as a new node below
            }
            if let Some(req) = dep.requires.get(&n.name) {
                if !req.matches(&n.version) {
                    return Err(DepError::BreaksDependent {
                        name: n.name.clone(),
                        version: n.version.clone(),
                        dependent: dep.label(),
                        req: req.clone(),
                    });
                }
            }
        }
    }
    // Depth-first from each new package over the resulting graph: post-order is the install
    // order; a node met again on the current path is a cycle.
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for n in new {
        let mut path = Vec::new();
        visit(&after, &n.name, &mut path, &mut done, &mut order)?;
    }
    Ok(order
        .into_iter()
        .filter(|n| new_names.contains(n))
        .collect())
}

/// What [`plan_updates`] decides for updates of running plugins judged together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// The admitted updates, dependencies first.
    pub order: Vec<String>,
    /// The refused updates, in the order refused, each with the refusal that named it.
    pub refused: Vec<(String, DepError)>,
}

/// New versions of running plugins (`candidates`, one per name) judged as one set against the
/// plugins that run (`running`, keyed by name; a candidate replaces its namesake), as
/// [`plan_install`] judges the packages of one install: a pair that only fits together (`lib` 2
/// breaking the running `app` 1, which `app` 2 needing `lib` ^2 replaces) is admitted together.
///
/// A set that does not fit is cut down one candidate at a time, the rest judged again until
/// it fits (or nothing is left). The candidate taken out is the one the refusal is about:
/// - the new version that breaks a running plugin which is not updated
///   ([`DepError::BreaksDependent`]: that plugin keeps its version whatever else is admitted,
///   so this candidate can never be);
/// - the last candidate on the chain of an unmet requirement ([`DepError::Missing`],
///   [`DepError::Unsatisfied`]): the one whose own requirement fails, or whose chain of running
///   plugins leads to it;
/// - the first candidate of a loop ([`DepError::Cycle`]).
///
/// So every refused candidate has a refusal that holds in the set it was judged in, and the
/// admitted ones fit (the result of [`plan_install`] on them). It is not a search for the
/// largest subset that fits: a requirement met by neither the candidate nor the running
/// version refuses the candidate that requires, never its dependency's candidate. A refusal
/// that names no candidate (the running plugins themselves do not fit) refuses every one left.
pub fn plan_updates(running: &BTreeMap<String, DepNode>, candidates: &[DepNode]) -> UpdatePlan {
    let mut left: Vec<DepNode> = candidates.to_vec();
    let mut refused = Vec::new();
    loop {
        let err = match plan_install(running, &left) {
            Ok(order) => return UpdatePlan { order, refused },
            Err(e) => e,
        };
        let is_left = |n: &str| left.iter().any(|c| c.name == n);
        let name_of = |label: &String| label.split(' ').next().unwrap_or_default().to_string();
        let culprit = match &err {
            DepError::BreaksDependent { name, .. } | DepError::Duplicate(name) => {
                Some(name.clone())
            }
            DepError::Missing { chain, .. } | DepError::Unsatisfied { chain, .. } => chain
                [..chain.len().saturating_sub(1)]
                .iter()
                .rev()
                .map(name_of)
                .find(|n| is_left(n)),
            DepError::Cycle { chain } => chain.iter().map(name_of).find(|n| is_left(n)),
        };
        match culprit.and_then(|n| left.iter().position(|c| c.name == n)) {
            Some(i) => {
                let c = left.remove(i);
                refused.push((c.name, err));
            }
            None => {
                refused.extend(left.drain(..).map(|c| (c.name, err.clone())));
            }
        }
    }
}

/// Whether `node` may be launched now, beside what is loaded: each of its own requirements met
/// by the version of `dependencies` (keyed by name) that is loaded — [`DepError::Missing`],
/// [`DepError::Unsatisfied`] — and no plugin of `dependants` (keyed by name) requiring it in
/// another version ([`DepError::BreaksDependent`]). `node`'s namesake in either is not looked
/// at. Direct requirements only: what is loaded was judged when it was loaded or admitted.
///
/// `serve` asks it at the relaunch of an admitted update (the set was judged at the check,
/// but a dependency's update may not have happened after all).
pub fn check_launch(
    dependencies: &BTreeMap<String, DepNode>,
    dependants: &BTreeMap<String, DepNode>,
    node: &DepNode,
) -> Result<(), DepError> {
    for (dep, req) in &node.requires {
        let chain = vec![node.label(), format!("{dep} {req}")];
        match dependencies.get(dep).filter(|d| d.name != node.name) {
            None => {
                return Err(DepError::Missing {
                    chain,
                    name: dep.clone(),
                })
            }
            Some(d) if !req.matches(&d.version) => {
                return Err(DepError::Unsatisfied {
                    chain,
                    name: dep.clone(),
                    found: d.version.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for d in dependants.values().filter(|d| d.name != node.name) {
        if let Some(req) = d.requires.get(&node.name) {
            if !req.matches(&node.version) {
                return Err(DepError::BreaksDependent {
                    name: node.name.clone(),
                    version: node.version.clone(),
                    dependent: d.label(),
                    req: req.clone(),
                });
            }
        }
    }
    Ok(())
}

fn visit(
    graph: &BTreeMap<String, DepNode>,
    name: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<(), DepError> {
    if done.contains(name) {
        return Ok(());
    }
    if let Some(pos) = path.iter().position(|p| p == name) {
        let mut chain: Vec<String> = path[pos..]
            .iter()
            .map(|p| graph.get(p).map_or_else(|| p.clone(), DepNode::label))
            .collect();
        chain.push(graph.get(name).map_or_else(|| name.into(), DepNode::label));
        return Err(DepError::Cycle { chain });
    }
    // Callers only pass names present in the graph.
    let Some(node) = graph.get(name) else {
        return Ok(());
    };
    path.push(name.to_string());
    for (dep, req) in &node.requires {
        let chain = || {
            let mut c: Vec<String> = path
                .iter()
                .filter_map(|p| graph.get(p).map(DepNode::label))
                .collect();
            c.push(format!("{dep} {req}"));
            c
        };
        match graph.get(dep) {
            None => {
                return Err(DepError::Missing {
                    chain: chain(),
                    name: dep.clone(),
                })
            }
            Some(d) if !req.matches(&d.version) => {
                return Err(DepError::Unsatisfied {
                    chain: chain(),
                    name: dep.clone(),
                    found: d.version.clone(),
                })
            }
            Some(_) => visit(graph, dep, path, done, order)?,
        }
    }
    path.pop();
    done.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

/// The installed plugins that need `name` (label and requirement), for refusing a removal.
pub fn dependents(installed: &BTreeMap<String, DepNode>, name: &str) -> Vec<(String, VersionReq)> {
    installed
        .values()
        .filter(|n| n.name != name)
        .filter_map(|n| n.requires.get(name).map(|r| (n.label(), r.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str, v: &str, deps: &[(&str, &str)]) -> DepNode {
        DepNode::new(
            name,
            Version::parse(v).unwrap(),
            deps.iter()
                .map(|(n, r)| (n.to_string(), VersionReq::parse(r).unwrap())),
        )
    }

    fn set(nodes: &[DepNode]) -> BTreeMap<String, DepNode> {
        nodes.iter().map(|n| (n.name.clone(), n.clone())).collect()
    }

    #[test]
    fn orders_dependencies_first() {
        let new = [
            node("app", "1.0.0", &[("lib", "^1"), ("util", "^2")]),
            node("util", "2.1.0", &[("lib", "^1.2")]),
            node("lib", "1.3.0", &[]),
        ];
        let order = plan_install(&BTreeMap::new(), &new).unwrap();
        assert_eq!(order, ["lib", "util", "app"]);
    }

    #[test]
    fn installed_dependencies_satisfy() {
        let installed = set(&[node("lib", "1.3.0", &[])]);
        let order = plan_install(&installed, &[node("app", "1.0.0", &[("lib", "^1")])]).unwrap();
        assert_eq!(order, ["app"]);
    }

    #[test]
    fn missing_and_unsatisfied_name_the_chain() {
        let e = plan_install(
            &BTreeMap::new(),
            &[
                node("app", "1.0.0", &[("util", "^2")]),
                node("util", "2.0.0", &[("lib", "^1")]),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e,
            DepError::Missing {
                chain: vec!["app 1.0.0".into(), "util 2.0.0".into(), "lib ^1".into()],
                name: "lib".into()
            }
        );
        assert!(e
            .to_string()
            .contains("app 1.0.0 -> util 2.0.0 -> lib ^1 (lib is not installed)"));
        assert_eq!(e.first_plugin(), "app");
        let installed = set(&[node("lib", "2.0.0", &[])]);
        let e = plan_install(&installed, &[node("app", "1.0.0", &[("lib", "^1")])]).unwrap_err();
        assert!(matches!(e, DepError::Unsatisfied { ref found, .. } if found.major == 2));
        assert_eq!(e.kind(), "store.dependency");
    }

    #[test]
    fn cycles_are_refused_with_the_loop() {
        let e = plan_install(
            &BTreeMap::new(),
            &[
                node("a", "1.0.0", &[("b", "*")]),
                node("b", "1.0.0", &[("c", "*")]),
                node("c", "1.0.0", &[("a", "*")]),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e,
            DepError::Cycle {
                chain: vec![
                    "a 1.0.0".into(),
                    "b 1.0.0".into(),
                    "c 1.0.0".into(),
                    "a 1.0.0".into()
                ]
            }
        );
        assert_eq!(e.first_plugin(), "a");
        // A cycle closed through an installed plugin.
        let installed = set(&[node("b", "1.0.0", &[("a", "*")])]);
        let e = plan_install(&installed, &[node("a", "1.0.0", &[("b", "*")])]).unwrap_err();
        assert_eq!(e.kind(), "store.dependency_cycle");
    }

    #[test]
    fn upgrades_must_not_break_dependents() {
        let installed = set(&[
            node("lib", "1.3.0", &[]),
            node("app", "1.0.0", &[("lib", "^1")]),
        ]);
        let e = plan_install(&installed, &[node("lib", "2.0.0", &[])]).unwrap_err();
        assert!(e.to_string().contains("would break app 1.0.0"), "{e}");
        assert!(plan_install(&installed, &[node("lib", "1.4.0", &[])]).is_ok());
        // Upgrading both together is fine.
        assert!(plan_install(
            &installed,
            &[
                node("lib", "2.0.0", &[]),
                node("app", "2.0.0", &[("lib", "^2")])
            ]
        )
        .is_ok());
    }

    #[test]
    fn duplicates_and_dependents() {
        let e = plan_install(
            &BTreeMap::new(),
            &[node("a", "1.0.0", &[]), node("a", "2.0.0", &[])],
        )
        .unwrap_err();
        assert_eq!(e, DepError::Duplicate("a".into()));
        let installed = set(&[
            node("lib", "1.3.0", &[]),
            node("app", "1.0.0", &[("lib", "^1")]),
        ]);
        assert_eq!(dependents(&installed, "lib").len(), 1);
        assert!(dependents(&installed, "app").is_empty());
    }

    #[test]
    fn updates_that_only_fit_together_are_admitted_together() {
        let running = set(&[
            node("lib", "1.0.0", &[]),
            node("app", "1.0.0", &[("lib", "^1")]),
        ]);
        let lib2 = node("lib", "2.0.0", &[]);
        let app2 = node("app", "2.0.0", &[("lib", "^2")]);
        // Alone, each is refused against what runs.
        assert!(plan_install(&running, std::slice::from_ref(&lib2)).is_err());
        assert!(plan_install(&running, std::slice::from_ref(&app2)).is_err());
        // Together: both, lib first.
        let plan = plan_updates(&running, &[app2.clone(), lib2.clone()]);
        assert_eq!(plan.order, ["lib", "app"]);
        assert!(plan.refused.is_empty());
        // `app` 2 wanting lib ^3: it is refused for its requirement, then `lib` 2 alone for the
        // running `app` 1 it breaks.
        let app3 = node("app", "2.0.0", &[("lib", "^3")]);
        let plan = plan_updates(&running, &[app3, lib2.clone()]);
        assert!(plan.order.is_empty());
        let names: Vec<&str> = plan.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["app", "lib"]);
        assert!(matches!(plan.refused[0].1, DepError::Unsatisfied { .. }));
        assert_eq!(plan.refused[1].1.kind(), "store.breaks_dependent");
        // An unrelated update is admitted whatever the others do.
        let tool = node("tool", "1.1.0", &[]);
        let mut running_t = running.clone();
        running_t.insert("tool".into(), node("tool", "1.0.0", &[]));
        let plan = plan_updates(&running_t, &[lib2.clone(), tool]);
        assert_eq!(plan.order, ["tool"]);
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].0, "lib");
    }

    #[test]
    fn the_last_candidate_on_an_unmet_chain_is_refused_first() {
        // app 2 -> lib 2 -> util ^3, util 2 runs: lib 2's own requirement fails (refused
        // first), then app 2 for the lib 1 that runs on.
        let running = set(&[
            node("util", "2.0.0", &[]),
            node("lib", "1.0.0", &[("util", "^2")]),
            node("app", "1.0.0", &[("lib", "^1")]),
        ]);
        let plan = plan_updates(
            &running,
            &[
                node("app", "2.0.0", &[("lib", "^2")]),
                node("lib", "2.0.0", &[("util", "^3")]),
            ],
        );
        assert!(plan.order.is_empty());
        let names: Vec<&str> = plan.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lib", "app"]);
        // A loop between two candidates: the first of the loop refused, the other then fits.
        let running = set(&[node("a", "1.0.0", &[]), node("b", "1.0.0", &[])]);
        let plan = plan_updates(
            &running,
            &[
                node("a", "1.1.0", &[("b", "*")]),
                node("b", "1.1.0", &[("a", "*")]),
            ],
        );
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].1.kind(), "store.dependency_cycle");
        assert_eq!(plan.order.len(), 1);
    }

    #[test]
    fn a_launch_checks_its_own_requirements_and_its_dependants() {
        let lib1 = node("lib", "1.0.0", &[]);
        let lib2 = node("lib", "2.0.0", &[]);
        let app1 = node("app", "1.0.0", &[("lib", "^1")]);
        let app2 = node("app", "2.0.0", &[("lib", "^2")]);
        let none = BTreeMap::new();
        assert!(check_launch(&set(std::slice::from_ref(&lib2)), &none, &app2).is_ok());
        assert_eq!(
            check_launch(&set(std::slice::from_ref(&lib1)), &none, &app2)
                .unwrap_err()
                .kind(),
            "store.dependency"
        );
        assert!(matches!(
            check_launch(&none, &none, &app2),
            Err(DepError::Missing { .. })
        ));
        assert_eq!(
            check_launch(&none, &set(&[app1]), &lib2)
                .unwrap_err()
                .kind(),
            "store.breaks_dependent"
        );
        assert!(check_launch(&none, &set(&[app2]), &lib2).is_ok());
    }

    fn arb_graph() -> impl Strategy<Value = Vec<DepNode>> {
        // Up to 6 plugins p0..p5, each depending on a random subset of the others with a
        // requirement on major 1 or 2; versions 1.x or 2.x.
        proptest::collection::vec(
            (
                1u64..3,
                proptest::collection::btree_map(0usize..6, 1u64..3, 0..4),
            ),
            1..6,
        )
        .prop_map(|specs| {
            specs
                .iter()
                .enumerate()
                .map(|(i, (major, deps))| {
                    DepNode::new(
                        format!("p{i}"),
                        Version::new(*major, 0, 0),
                        deps.iter().filter(|(d, _)| **d != i).map(|(d, m)| {
                            (
                                format!("p{d}"),
                                VersionReq::parse(&format!("^{m}")).unwrap(),
                            )
                        }),
                    )
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever the graph: a plan lists every new plugin once, each after all its
        /// dependencies, and every requirement holds; a refusal is a real problem.
        #[test]
        fn plan_is_a_valid_order_or_a_true_refusal(new in arb_graph()) {
            let all = set(&new);
            match plan_install(&BTreeMap::new(), &new) {
                Ok(order) => {
                    prop_assert_eq!(order.len(), new.len());
                    for (i, name) in order.iter().enumerate() {
                        for (dep, req) in &all[name].requires {
                            let d = all.get(dep);
                            prop_assert!(d.is_some_and(|d| req.matches(&d.version)));
                            let pos = order.iter().position(|o| o == dep).unwrap();
                            prop_assert!(pos < i, "{} before {}", dep, name);
                        }
                    }
                }
                Err(DepError::Missing { name, .. }) => prop_assert!(!all.contains_key(&name)),
                Err(DepError::Unsatisfied { name, found, .. }) => {
                    prop_assert_eq!(&all[&name].version, &found);
                }
                Err(DepError::Cycle { chain }) => {
                    prop_assert!(chain.len() >= 3);
                    prop_assert_eq!(chain.first(), chain.last());
                }
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }

        /// Whatever the running set and the updates: the admitted ones fit together (as one
        /// install of them would), every candidate is either admitted or refused, once.
        #[test]
        fn admitted_updates_fit_and_every_candidate_is_decided(
            old in arb_graph(), new in arb_graph()
        ) {
            let running = set(&old);
            let candidates: Vec<DepNode> = set(&new).into_values().collect();
            let plan = plan_updates(&running, &candidates);
            let admitted: Vec<DepNode> = candidates
                .iter()
                .filter(|c| plan.order.contains(&c.name))
                .cloned()
                .collect();
            prop_assert!(plan_install(&running, &admitted).is_ok());
            prop_assert_eq!(plan.order.len() + plan.refused.len(), candidates.len());
            for c in &candidates {
                let n = plan.order.iter().filter(|o| **o == c.name).count()
                    + plan.refused.iter().filter(|(r, _)| *r == c.name).count();
                prop_assert_eq!(n, 1);
            }
        }
    }
}
