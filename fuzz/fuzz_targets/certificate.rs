//! Certificate, revocation list, license, statement and plugin index parsing plus signature verification
//! against a fixed key: must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_trust::cert::Certificate;
use stockade_trust::crl::RevocationList;
use stockade_trust::license::License;
use stockade_trust::minisign::SecretKey;
use stockade_trust::statement::Statement;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_seed(&[7; 32], [7; 8]).public_key();
    if let Ok(c) = Certificate::parse(data) {
        let _ = c.verify_signature(&key);
        let _ = c.verify_signature(&c.subject_key);
        let _ = stockade_trust::chain::check_bounds(&c.body, Some(&c.body));
        let _ = stockade_trust::chain::verify_chain(&c, &c, std::slice::from_ref(&key));
    }
    if let Ok(l) = RevocationList::parse(data) {
        let seen = stockade_trust::crl::Seen {
            version: 1,
            body_sha256: Some([0; 32]),
        };
        let _ = l.verify(std::slice::from_ref(&key), 0, Some(seen));
    }
    if let Ok(l) = License::parse(data) {
        let _ = l.verify(std::slice::from_ref(&key), 0, "");
    }
    if let Ok(s) = Statement::parse(data, &semver::Version::new(0, 1, 0)) {
        let _ = s.check_file_map();
    }
    if let Ok(i) = stockade_trust::index::Index::parse(data) {
        let _ = i.check_fresh(Some((1, [0; 32])), 0);
        for e in &i.plugins {
            let _ = stockade_trust::index::choose_artifact(e, "linux-x86_64");
            let _ = i.versions(&e.id);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = stockade_trust::canonical::to_vec(&v);
    }
});
