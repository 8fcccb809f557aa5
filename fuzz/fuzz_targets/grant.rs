//! Grant files (`*.grant`, trust.grants): parse, then verify and authorise against a fixed
//! operator key, bound to the grant's own plugin (so a seed signed by that key reaches the
//! window and binding checks): must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_trust::grant::{authorise, Binding, Grant};
use stockade_trust::minisign::SecretKey;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_seed(&[7; 32], [7; 8]).public_key();
    let Ok(g) = Grant::parse(data) else { return };
    let b = &g.body;
    let binding = Binding {
        plugin: &b.plugin,
        version: &b.plugin_version,
        scope: &b.scope,
    };
    for now in [0, b.issued_at, b.expires_at.saturating_sub(1), u64::MAX] {
        let _ = g.verify(std::slice::from_ref(&key), &binding, now);
        for t in &b.targets {
            let _ = authorise(
                std::slice::from_ref(&g),
                std::slice::from_ref(&key),
                &binding,
                t,
                now,
            );
        }
    }
});
