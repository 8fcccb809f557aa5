//! Differential tests of the range lookups ([`MergedPolicy::section_leaves`],
//! [`MergedPolicy::base_leaves`]) against the walk of every leaf they replaced (audit-127,
//! e06b246): the effective policy is operator ∩ certificate ∩ manifest, so a key the range
//! missed or took from a neighbouring section would loosen or tighten a sandbox silently.
//! Names are chosen to sort next to each other and next to the section names themselves
//! (`a`, `a.b`, `a-1`, `a"x`, `a\0`, `plugin\0`, `pluginx`, …).

use super::*;
use proptest::prelude::*;

/// [`MergedPolicy::effective_leaves`] as it was before e06b246: every leaf looked at.
fn effective_by_walk<'a>(
    m: &'a MergedPolicy,
    plugin: Option<&str>,
    signer: Option<&str>,
    only: Option<&[String]>,
) -> BTreeMap<Vec<String>, &'a Leaf> {
    let mut eff: BTreeMap<Vec<String>, &Leaf> = BTreeMap::new();
    for (k, v) in &m.leaves {
        if k[0] != "plugin" && k[0] != "signer" && k[0] != "version" {
            eff.insert(k.clone(), v);
        }
    }
    for (kind, who) in [("signer", signer), ("plugin", plugin)] {
        let Some(who) = who else { continue };
        for (k, v) in &m.leaves {
            let ours = k.len() > 2 && k[0] == kind && k[1] == who;
            if ours && (kind == "signer" || only.is_none_or(|o| k[2..] == *o)) {
                eff.insert(k[2..].to_vec(), v);
            }
        }
    }
    eff
}

/// [`MergedPolicy::plugin_over_signer`] as it was before e06b246 (without the shortcut for a
/// pair that shares no key), printed for comparison.
fn plugin_over_signer_by_walk(m: &MergedPolicy, plugin: &str, signer: &str) -> String {
    let under = |kind: &str, who: &str| -> Vec<Vec<String>> {
        m.leaves
            .keys()
            .filter(|k| k.len() > 2 && k[0] == kind && k[1] == who)
            .map(|k| k[2..].to_vec())
            .collect()
    };
    let signer_keys = under("signer", signer);
    let Ok(alone) = m.resolve(None, Some(signer)) else {
        return format!("{:?}", Vec::<()>::new());
    };
    let v: Vec<_> = under("plugin", plugin)
        .into_iter()
        .filter(|k| signer_keys.contains(k))
        .filter_map(|k| {
            let over = m.resolve_with(Some(plugin), Some(signer), Some(&k)).ok()?;
            Some((dotted(&k), alone.clone(), over))
        })
        .collect();
    format!("{v:?}")
}

/// Every plugin × signer (and neither), every `only` a section holds plus one it does not:
/// the same leaves by range as by walk, and the same pair check for lint.
fn same_as_walk(m: &MergedPolicy, plugins: &[&str], signers: &[&str]) -> Result<(), TestCaseError> {
    let onlies: BTreeSet<Vec<String>> = m
        .leaves
        .keys()
        .filter(|k| k.len() > 2)
        .map(|k| k[2..].to_vec())
        .chain([vec!["absent".to_string()]])
        .collect();
    for p in plugins.iter().map(|p| Some(*p)).chain([None]) {
        for s in signers.iter().map(|s| Some(*s)).chain([None]) {
            prop_assert_eq!(
                m.effective_leaves(p, s, None),
                effective_by_walk(m, p, s, None),
                "plugin {:?} signer {:?}",
                p,
                s
            );
            for o in &onlies {
                prop_assert_eq!(
                    m.effective_leaves(p, s, Some(o)),
                    effective_by_walk(m, p, s, Some(o)),
                    "plugin {:?} signer {:?} only {:?}",
                    p,
                    s,
                    o
                );
            }
            if let (Some(p), Some(s)) = (p, s) {
                prop_assert_eq!(
                    format!("{:?}", m.plugin_over_signer(p, s)),
                    plugin_over_signer_by_walk(m, p, s),
                    "pair {} {}",
                    p,
                    s
                );
            }
        }
    }
    Ok(())
}

/// First key segments: the three skipped by [`MergedPolicy::base_leaves`], names sorting just
/// before, between and after them, and ordinary sections.
const FIRST: [&str; 14] = [
    "plugin",
    "signer",
    "version",
    "plugin\0",
    "plugin\u{1}",
    "plugin-",
    "pluginx",
    "plugi",
    "signer\0",
    "version\0",
    "resources",
    "hooks",
    "a",
    "",
];
/// Second segments (plugin names, signer ids): prefixes of each other, with `.`, `"`, `\`, NUL.
const NAMES: [&str; 13] = [
    "a", "a.b", "a-1", "a\"x", "a\0", "a\\x", "", "b", "A", "a.", "plugin", "\"a\"", "ab",
];
const TAIL: [&str; 6] = ["resources", "memory_max", "pids_max", "a", "", "\0"];

fn arbitrary_keys() -> impl Strategy<Value = Vec<Vec<String>>> {
    let key = (
        0..FIRST.len(),
        proptest::option::of(0..NAMES.len()),
        proptest::collection::vec(0..TAIL.len(), 0..3),
    )
        .prop_map(|(f, n, tail)| {
            let mut k = vec![FIRST[f].to_string()];
            k.extend(n.map(|n| NAMES[n].to_string()));
            k.extend(tail.into_iter().map(|t| TAIL[t].to_string()));
            k
        });
    proptest::collection::vec(key, 0..40)
}

/// Plugin names valid in a policy, prefixes of each other and sorting between a name and its
/// `.`-children; signer ids likewise.
const PLUGINS: [&str; 8] = ["a", "a.b", "a-1", "a_b", "ab", "a.b.c", "b", "a0"];
const SIGNERS: [&str; 3] = ["00000000000000AA", "00000000000000AB", "0000000000000AAA"];

/// One line of a generated layer: where (0: the base, then plugins, then signers), which key,
/// which value, and how the key is spelled.
fn layer_text((at, key, value, spelling): (usize, usize, u8, u8)) -> String {
    let keys = [
        "resources.pids_max",
        "resources.memory_max",
        "capabilities.allow",
    ];
    let value = match key {
        0 => format!("{}", 1 + u32::from(value)),
        1 => format!("\"{}M\"", 8 + u32::from(value)),
        _ if value % 2 == 0 => "[]".to_string(),
        _ => "[\"log\"]".to_string(),
    };
    let (section, name) = match at {
        0 => (None, ""),
        i if i <= PLUGINS.len() => (Some("plugin"), PLUGINS[i - 1]),
        i => (
            Some("signer"),
            SIGNERS[(i - PLUGINS.len() - 1) % SIGNERS.len()],
        ),
    };
    let (table, leaf) = keys[key].split_once('.').expect("dotted");
    let Some(section) = section else {
        return format!("version = 1\n[{table}]\n{leaf} = {value}\n");
    };
    // The same key spelled the ways TOML allows: quoted, literal, escaped, dotted at the top.
    let escaped: String = name
        .chars()
        .map(|c| match c {
            '.' => "\\u002E".to_string(),
            c => c.to_string(),
        })
        .collect();
    match spelling % 4 {
        0 => format!("version = 1\n[{section}.\"{name}\".{table}]\n{leaf} = {value}\n"),
        1 => format!("version = 1\n['{section}'.'{name}'.\"{table}\"]\n\"{leaf}\" = {value}\n"),
        2 => format!("version = 1\n[{section}.\"{escaped}\".{table}]\n{leaf} = {value}\n"),
        _ => format!("version = 1\n{section}.\"{name}\".{table}.{leaf} = {value}\n"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any set of keys, names sorting right next to the section names and to each other.
    #[test]
    fn range_lookups_take_what_the_walk_took(keys in arbitrary_keys()) {
        let mut m = MergedPolicy::default();
        for (i, k) in keys.into_iter().enumerate() {
            let value = toml::Value::Integer(i64::try_from(i).expect("small"));
            m.leaves.insert(k, Leaf { value, origin: Origin::Default });
        }
        same_as_walk(&m, &NAMES, &NAMES)?;
    }

    /// Policies as files: layers setting base, plugin and signer keys, later layers over
    /// earlier ones, the names spelled quoted, literal, escaped or as dotted keys.
    #[test]
    fn merged_layers_resolve_as_the_walk_did(
        lines in proptest::collection::vec(
            (0..1 + PLUGINS.len() + SIGNERS.len(), 0..3usize, any::<u8>(), any::<u8>()),
            0..24,
        )
    ) {
        let layers: Vec<PolicyLayer> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| PolicyLayer { path: format!("/etc/stockade/policy.d/{i}.toml"), text: layer_text(l) })
            .collect();
        let m = merge(&layers).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let mut plugins = PLUGINS.to_vec();
        plugins.push("a.bb");
        same_as_walk(&m, &plugins, &SIGNERS)?;
        // The resolutions, valid or not, print the same whichever way the leaves were found
        // (resolve_with builds on effective_leaves alone).
        for p in &plugins {
            for s in SIGNERS {
                let r = m.resolve(Some(p), Some(s));
                prop_assert_eq!(r.is_ok(), m.resolve(Some(p), Some(s)).is_ok());
            }
        }
    }
}
