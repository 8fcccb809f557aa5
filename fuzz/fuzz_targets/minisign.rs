//! minisign public key, secret key and signature parsing (and verification of a parsed
//! signature): must never panic, and an encrypted secret key parses only with scrypt
//! parameters within the caps (its password is never tried here: that is the costly part the
//! caps bound).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_trust::minisign::{
    PublicKey, SecretKey, SecretKeyFile, Signature, MAX_KDF_MEMORY, MAX_KDF_WORK,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = SecretKey::parse(text);
    if let Ok(SecretKeyFile::Encrypted(e)) = SecretKeyFile::parse(text) {
        let cost = e.cost();
        assert!(cost.memory_bytes() <= MAX_KDF_MEMORY);
        assert!((1u64 << cost.log_n) * u64::from(cost.p) <= MAX_KDF_WORK);
    }
    if let Ok(sig) = Signature::parse(text) {
        let _ = SecretKey::from_seed(&[1; 32], [1; 8])
            .public_key()
            .verify(data, &sig);
        let _ = Signature::parse(&sig.to_text()).expect("our own rendering re-parses");
    }
    if let Ok(pk) = PublicKey::parse(text) {
        let again = PublicKey::parse(&pk.to_text()).expect("our own rendering re-parses");
        assert_eq!(again, pk);
    }
});
