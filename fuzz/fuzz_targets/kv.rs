//! The key/value store's file (`<state>/kv/[<signer>/]<plugin>.json`), as the store reads it
//! back: its bytes are a plugin's keys and values, in a file the state directory's owner may
//! also edit. Whatever the bytes, reading them must not panic; a file the store accepts must
//! be counted by its quota as exactly the bytes its strings take when the store writes it again
//! (else a plugin could write past its quota, or a store within it read back as over), and
//! what the store writes must read back as the same map.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_runtime::fuzzing::kv_store_file;

/// Larger than any input the fuzzer makes: the cap is tested by the unit tests.
const CAP: u64 = 1 << 30;

fuzz_target!(|data: &[u8]| {
    let Some((map, total)) = kv_store_file(data, CAP) else {
        return;
    };
    let written = serde_json::to_vec(&map).expect("a map of strings serializes");
    // `{}` and, per entry, `"k":"v"` and the comma between entries.
    let punctuation = 2 + 5 * map.len() + map.len().saturating_sub(1);
    assert_eq!(
        written.len(),
        total + punctuation,
        "the quota's count is not what the file takes"
    );
    let (again, total_again) =
        kv_store_file(&written, CAP).expect("what the store writes reads back");
    assert_eq!(again, map);
    assert_eq!(total_again, total);
});
