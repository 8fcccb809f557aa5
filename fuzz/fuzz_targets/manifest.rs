//! manifest.json parse + validate: must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_policy::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let _ = m.validate(&semver::Version::new(0, 1, 0));
    }
});
