//! Operator policy parse + merge + resolve + lint + explain: must never panic, whatever the
//! bytes (two layers, so merging and per-plugin resolution are exercised too).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_policy::operator::effective::{effective, PluginFacts};
use stockade_policy::operator::{merge, PolicyLayer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let (a, b) = text.split_at(mid);
    let layers = [
        PolicyLayer {
            path: "a.toml".into(),
            text: a.to_string(),
        },
        PolicyLayer {
            path: "b.toml".into(),
            text: b.to_string(),
        },
    ];
    for l in [&layers[..1], &layers[..]] {
        if let Ok(m) = merge(l) {
            let _ = stockade_policy::operator::lint::lint(&m, &Default::default());
            for p in m.plugin_names() {
                if let Ok(r) = m.resolve(Some(&p), None) {
                    let e = effective(&r, &PluginFacts::default(), Some(&Default::default()));
                    let _ = stockade_policy::operator::explain::explain(&r, &e);
                }
            }
        }
    }
});
