//! minisign public key, secret key and signature parsing (and verification of a parsed
//! signature): must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_trust::minisign::{PublicKey, SecretKey, Signature};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = SecretKey::parse(text);
    if let Ok(sig) = Signature::parse(text) {
        let _ = SecretKey::from_seed([1; 32], [1; 8])
            .public_key()
            .verify(data, &sig);
        let _ = Signature::parse(&sig.to_text()).expect("our own rendering re-parses");
    }
    if let Ok(pk) = PublicKey::parse(text) {
        let again = PublicKey::parse(&pk.to_text()).expect("our own rendering re-parses");
        assert_eq!(again, pk);
    }
});
