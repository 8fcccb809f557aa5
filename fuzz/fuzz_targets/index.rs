//! A source's signed index and its detached signature, as `sources` reads a fetched pair: the
//! input is the index, a NUL byte, then the signature (neither contains a NUL when valid). The
//! signature is checked against a fixed pinned key and, failing that, the rotation path parses
//! the index for the key it claims and checks the pin; then the index is parsed and checked for
//! freshness and artifacts. Must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_runtime::fuzzing::source_signature;
use stockade_trust::index::{check_pin, choose_artifact, Index};
use stockade_trust::minisign::SecretKey;

fuzz_target!(|data: &[u8]| {
    let (bytes, sig) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let pinned = SecretKey::from_seed(&[7; 32], [7; 8]).public_key();
    if let Ok(sig) = source_signature(sig) {
        if pinned.verify(bytes, &sig).is_err() {
            if let Ok(claimed) = Index::parse(bytes) {
                let _ = claimed.operator_pubkey.verify(bytes, &sig);
                let _ = check_pin(
                    Some(&pinned),
                    &claimed.operator_pubkey,
                    &claimed.previous_operator_pubkeys,
                    |old| old.verify(bytes, &sig).is_ok(),
                );
            }
        }
    }
    if let Ok(i) = Index::parse(bytes) {
        let _ = i.check_fresh(None, 0);
        let _ = i.check_fresh(Some((u64::MAX, [0; 32])), u64::MAX);
        for e in &i.plugins {
            let _ = choose_artifact(e, "linux-x86_64");
            let _ = i.versions(&e.id);
        }
    }
});
