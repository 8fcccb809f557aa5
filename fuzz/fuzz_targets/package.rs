//! The package container parser, and payload extraction into a temporary directory. The input
//! is split: the whole input as a container, and as a raw tar.gz payload extracted against an
//! empty and a permissive-looking map, written and checked without writing (`verify`'s mode);
//! both modes must reach the same verdict. Must never panic, and never write outside the tempdir.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use stockade_runtime::package::container;
use stockade_runtime::package::extract::{extract, reserve, Limits};
use stockade_trust::statement::FileEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = container::parse(data) {
        let _ = stockade_trust::statement::Statement::parse(
            &c.statement,
            &semver::Version::new(0, 1, 0),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        max_entries: 64,
        max_file_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_decompressed_bytes: 8 << 20,
        max_ratio: 200,
        ratio_floor: 1 << 20,
    };
    let _ = extract(data, &BTreeMap::new(), b"", Some(dir.path()), None, &limits);
    // A map with symlink and file entries so the fuzzer can reach the write paths.
    let mut map = BTreeMap::new();
    map.insert(
        "a".to_string(),
        FileEntry::File {
            mode: 0o644,
            sha256: [0; 32],
            size: 0,
        },
    );
    map.insert("l".to_string(), FileEntry::Symlink { target: "a".into() });
    let dir2 = tempfile::tempdir().expect("tempdir");
    let written = extract(data, &map, b"", Some(dir2.path()), None, &limits);
    let checked = extract(data, &map, b"", None, None, &limits);
    assert_eq!(
        written
            .as_ref()
            .map(|e| (e.files, e.symlinks, e.bytes))
            .map_err(std::mem::discriminant),
        checked
            .as_ref()
            .map(|e| (e.files, e.symlinks, e.bytes))
            .map_err(std::mem::discriminant),
        "written {written:?}, checked {checked:?}"
    );
    // With `a` reserved ahead (as `run` reserves the entrypoint): no panic, and accepted exactly
    // when the plain extraction is (a refusal may name another reason: the reserved file is
    // already there when an archive makes `a` a directory).
    let dir3 = tempfile::tempdir().expect("tempdir");
    let r = reserve(dir3.path(), "a").expect("reserve");
    let reserved = extract(data, &map, b"", Some(dir3.path()), Some(&r), &limits);
    assert_eq!(
        reserved
            .as_ref()
            .map(|e| (e.files, e.symlinks, e.bytes))
            .ok(),
        written
            .as_ref()
            .map(|e| (e.files, e.symlinks, e.bytes))
            .ok(),
        "reserved {reserved:?}, written {written:?}"
    );
});
