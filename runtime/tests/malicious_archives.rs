//! Malicious payloads, each wrapped in a properly signed package (so signature, chain and file
//! map pass and extraction is what rejects it), each with its own error kind and exit 87 —
//! whether the entries are only checked (`verify`) or written as they are (`--extract-to`).

mod common;

use common::*;
use stockade_trust::statement::FileEntry;

fn refused(extra: Vec<RawEntry>, map_extra: Vec<(&str, FileEntry)>, kind: &str) {
    let fx = Fixture::new();
    let (mut entries, mut map) = hello_parts();
    entries.extend(extra);
    for (k, v) in map_extra {
        map.insert(k.to_string(), v);
    }
    fx.craft(
        "evil.stockade",
        &hello_manifest(),
        &map,
        raw_tar_gz(&entries),
    );
    let r = fx.verify("evil.stockade", &[]);
    assert_eq!(
        r.code, 87,
        "{kind}: stdout {}\nstderr {}",
        r.stdout, r.stderr
    );
    assert_eq!(r.kind(), kind);
    // Nothing escaped next to the fixture.
    assert!(!fx.path("escaped").exists());
    // `verify` alone checks without writing; with --extract-to the entries are written as they
    // are checked: the same refusal, and nothing left at the destination.
    let r = fx.verify("evil.stockade", &["--extract-to", "tree"]);
    assert_eq!(r.code, 87, "{kind} (written): {}", r.stderr);
    assert_eq!(r.kind(), kind, "written");
    assert!(!fx.path("tree").exists());
    assert!(!fx.path("escaped").exists());
}

#[test]
fn absolute_path() {
    refused(
        vec![RawEntry::file("/tmp/stockade-escaped", 0o644, b"x")],
        vec![],
        "unsafe_archive.absolute_path",
    );
}

#[test]
fn dotdot_path() {
    refused(
        vec![RawEntry::file("../escaped", 0o644, b"x")],
        vec![],
        "unsafe_archive.dotdot",
    );
    refused(
        vec![RawEntry::file("a/../../escaped", 0o644, b"x")],
        vec![],
        "unsafe_archive.dotdot",
    );
}

#[test]
fn symlink_leaving_the_tree() {
    refused(
        vec![RawEntry::special(
            "link",
            tar::EntryType::Symlink,
            "../../../../etc/passwd",
        )],
        vec![],
        "unsafe_archive.symlink_escape",
    );
    refused(
        vec![RawEntry::special(
            "link",
            tar::EntryType::Symlink,
            "/etc/passwd",
        )],
        vec![],
        "unsafe_archive.symlink_escape",
    );
}

#[test]
fn symlink_not_in_map() {
    let fx = Fixture::new();
    let (mut entries, map) = hello_parts();
    entries.push(RawEntry::special(
        "alias",
        tar::EntryType::Symlink,
        "entrypoint",
    ));
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    let r = fx.verify("p.stockade", &[]);
    assert_eq!((r.code, r.kind().as_str()), (86, "file_map.not_in_map"));
}

#[test]
fn signed_symlink_inside_the_tree_is_fine() {
    let fx = Fixture::new();
    let (mut entries, mut map) = hello_parts();
    entries.push(RawEntry::special(
        "bin/run",
        tar::EntryType::Symlink,
        "../entrypoint",
    ));
    map.insert(
        "bin/run".into(),
        FileEntry::Symlink {
            target: "../entrypoint".into(),
        },
    );
    fx.craft("p.stockade", &hello_manifest(), &map, raw_tar_gz(&entries));
    let r = fx.verify("p.stockade", &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["extracted"]["symlinks"], 1);
}

#[test]
fn hardlink() {
    refused(
        vec![RawEntry::special("hl", tar::EntryType::Link, "entrypoint")],
        vec![],
        "unsafe_archive.hardlink",
    );
}

#[test]
fn devices() {
    refused(
        vec![RawEntry::special("null", tar::EntryType::Char, "")],
        vec![],
        "unsafe_archive.device",
    );
    refused(
        vec![RawEntry::special("sda", tar::EntryType::Block, "")],
        vec![],
        "unsafe_archive.device",
    );
}

#[test]
fn fifo() {
    refused(
        vec![RawEntry::special("pipe", tar::EntryType::Fifo, "")],
        vec![],
        "unsafe_archive.fifo",
    );
}

#[test]
fn directory_entries_are_not_accepted() {
    refused(
        vec![RawEntry::special("dir", tar::EntryType::Directory, "")],
        vec![],
        "unsafe_archive.entry_type",
    );
}

#[test]
fn setuid_and_setgid_bits() {
    refused(
        vec![RawEntry::file("suid", 0o4755, b"x")],
        vec![("suid", entry(0o755, b"x"))],
        "unsafe_archive.setuid",
    );
    refused(
        vec![RawEntry::file("sgid", 0o2755, b"x")],
        vec![("sgid", entry(0o755, b"x"))],
        "unsafe_archive.setuid",
    );
}

#[test]
fn oversized_entry() {
    // The header claims 65 MiB; the check fires on the header, before any content is read.
    let mut e = RawEntry::file("huge", 0o644, b"");
    e.size = Some(65 * 1024 * 1024);
    refused(vec![e], vec![], "unsafe_archive.oversized");
}

#[test]
fn duplicate_entry() {
    let (entries, _) = hello_parts();
    let dup = RawEntry::file("manifest.json", 0o644, &entries[1].data);
    refused(vec![dup], vec![], "unsafe_archive.duplicate");
}

#[test]
fn decompression_bomb() {
    // 8 MiB of zeros gzip to ~8 KiB: far beyond the allowed ratio (200:1 past 1 MiB). The file is in the signed
    // map with its true size and digest, so only the bomb check can stop it.
    let zeros = vec![0u8; 8 * 1024 * 1024];
    refused(
        vec![RawEntry::file("zeros", 0o644, &zeros)],
        vec![("zeros", entry(0o644, &zeros))],
        "unsafe_archive.decompression_bomb",
    );
}

#[test]
fn too_many_entries() {
    // 9998 empty files + manifest + entrypoint fill the 10000-file map; one more entry is refused
    // by the count before anything else looks at it.
    let mut extra = Vec::new();
    let mut map_extra = Vec::new();
    let names: Vec<String> = (0..9998).map(|i| format!("f{i:05}")).collect();
    for n in &names {
        extra.push(RawEntry::file(n, 0o644, b""));
        map_extra.push((n.as_str(), entry(0o644, b"")));
    }
    extra.push(RawEntry::file("one-too-many", 0o644, b""));
    refused(extra, map_extra, "unsafe_archive.too_many_entries");
}
