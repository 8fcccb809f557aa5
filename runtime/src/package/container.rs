//! The outer package container: an uncompressed ustar archive with exactly six regular-file
//! entries in a fixed order:
//!
//! | # | name                      | content                                          | cap     |
//! |---|---------------------------|--------------------------------------------------|---------|
//! | 1 | `stockade-package`        | `stockade-package-v1\n` (format marker)          | 64 B    |
//! | 2 | `statement.json`          | canonical statement (what is signed)             | 4 MiB   |
//! | 3 | `statement.json.minisig`  | developer's minisign `ED` signature over #2      | 4 KiB   |
//! | 4 | `developer.cert`          | developer certificate                            | 64 KiB  |
//! | 5 | `intermediate.cert`       | intermediate certificate                         | 64 KiB  |
//! | 6 | `payload.tar.gz`          | deterministic tar.gz of the plugin directory     | 256 MiB |
//!
//! Why tar: `tar tvf` works for an operator, and the signature can sit beside what it signs
//! (nothing self-referential). Why so strict: the package file is stored and handed on byte for
//! byte (`install` keeps it), so no byte of it may go unchecked. The container is exactly what
//! [`write()`] produces — each entry's 512-byte ustar header byte for byte as [`header`] builds it
//! (magic `ustar\0` `00`, type `0`, mode 0644, owner 0:0, mtime 0, everything else zero: no GNU
//! or PAX header, no prefix, no link name), its data, zeros to the next 512-byte boundary, and
//! after the sixth entry the end-of-archive marker (two zero blocks, 1024 bytes) and nothing
//! more. The tar crate's builder writes exactly this (no padding to a 10 KiB record), and so
//! does [`write()`], by hand, so the format does not move with the crate.

use stockade_trust::statement::MAX_STATEMENT_BYTES;

/// Marker entry name.
pub const MARKER: &str = "stockade-package";
/// Marker content.
pub const MARKER_CONTENT: &[u8] = b"stockade-package-v1\n";
/// Largest payload.
pub const MAX_PAYLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Largest package file (payload plus the small entries and tar overhead).
pub const MAX_PACKAGE_BYTES: u64 = MAX_PAYLOAD_BYTES + 8 * 1024 * 1024;

/// The entries, in order, with their caps.
pub const ENTRIES: [(&str, u64); 6] = [
    (MARKER, 64),
    ("statement.json", MAX_STATEMENT_BYTES as u64),
    ("statement.json.minisig", 4096),
    ("developer.cert", 64 * 1024),
    ("intermediate.cert", 64 * 1024),
    ("payload.tar.gz", MAX_PAYLOAD_BYTES),
];

/// The six entries' contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// `statement.json`.
    pub statement: Vec<u8>,
    /// `statement.json.minisig`.
    pub signature: Vec<u8>,
    /// `developer.cert`.
    pub developer_cert: Vec<u8>,
    /// `intermediate.cert`.
    pub intermediate_cert: Vec<u8>,
    /// `payload.tar.gz`.
    pub payload: Vec<u8>,
}

/// Why the container is rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// An entry exceeds its cap.
    #[error("entry `{name}` is {size} bytes, more than its {cap}-byte limit")]
    TooLarge {
        /// Entry name.
        name: String,
        /// Declared size.
        size: u64,
        /// Cap.
        cap: u64,
    },
    /// An entry's header is not the one [`write()`] puts there (another tar format, other
    /// metadata, bytes in unused fields).
    #[error("entry `{0}` does not have the ustar header `stockade pack` writes")]
    Header(String),
    /// Non-zero bytes between an entry's data and the next 512-byte boundary.
    #[error("entry `{0}` is followed by non-zero padding")]
    Padding(String),
    /// Wrong entry at a position.
    #[error("entry {index} must be `{expected}`, found `{found}`")]
    UnexpectedEntry {
        /// 1-based position.
        index: usize,
        /// What belongs there.
        expected: &'static str,
        /// What is there.
        found: String,
    },
    /// An entry is not a regular file.
    #[error("entry `{0}` is not a regular file")]
    NotRegular(String),
    /// Fewer than six entries.
    #[error("the package ends after {0} entries; expected 6")]
    Truncated(usize),
    /// More than six entries (or other data where the end-of-archive marker belongs).
    #[error("unexpected extra entry after `payload.tar.gz`")]
    Extra,
    /// The end-of-archive marker (two zero blocks) is missing or incomplete.
    #[error("the package does not end with the end-of-archive marker (two zero blocks)")]
    NoEndMarker,
    /// Bytes after the end-of-archive marker.
    #[error("{0} bytes follow the end-of-archive marker")]
    Trailing(usize),
    /// The marker content is wrong.
    #[error("unknown package format marker")]
    Marker,
}

impl ContainerError {
    /// Whether this is a size-cap violation (verification step 1) rather than a layout error.
    pub fn is_size_cap(&self) -> bool {
        matches!(self, ContainerError::TooLarge { .. })
    }
}

/// A tar block.
const BLOCK: usize = 512;
/// The end-of-archive marker: two zero blocks.
const END_MARKER: usize = 2 * BLOCK;

/// `n` rounded up to whole blocks.
fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// `v` as `field.len() - 1` zero-padded octal digits and a NUL, as the tar crate writes numbers;
/// `None` when it does not fit.
fn octal(field: &mut [u8], v: u64) -> Option<()> {
    let digits = field.len() - 1;
    let text = format!("{v:0digits$o}");
    if text.len() != digits {
        return None;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    Some(())
}

/// The header of entry `name` with `size` bytes of data, byte for byte: the only header
/// [`parse`] accepts and the one [`write()`] writes. `None` when `size` does not fit the field
/// (8 GiB and more, far beyond every cap).
pub fn header(name: &str, size: u64) -> Option<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    h.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644)?; // mode
    octal(&mut h[108..116], 0)?; // uid
    octal(&mut h[116..124], 0)?; // gid
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], 0)?; // mtime
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum: the sum of every byte, its own field counted as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..156], sum)?;
    Some(h)
}

/// The entry name a header carries (its `prefix`, if any, joined as tar does), for messages.
fn name_in(h: &[u8]) -> String {
    let field = |f: &[u8]| {
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let (name, prefix) = (field(&h[..100]), field(&h[345..500]));
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// A size field: 11 octal digits and a NUL (what [`header`] writes; anything else is refused
/// by the comparison with it anyway).
fn size_in(h: &[u8]) -> Option<u64> {
    let field = &h[124..136];
    if field[11] != 0 || !field[..11].iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    field[..11].iter().try_fold(0u64, |v, &b| {
        v.checked_mul(8)?.checked_add(u64::from(b - b'0'))
    })
}

fn zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Parse a package held in memory: exactly the six entries, each with the header [`header`]
/// builds and zero padding, then the end-of-archive marker and nothing else.
pub fn parse(bytes: &[u8]) -> Result<Container, ContainerError> {
    let mut out: [Vec<u8>; 6] = Default::default();
    let mut at = 0usize;
    for (i, (name, cap)) in ENTRIES.iter().enumerate() {
        let h = match bytes.get(at..at + BLOCK) {
            Some(h) if !zeros(h) => h,
            // The end (or an end-of-archive marker) before all six.
            _ => return Err(ContainerError::Truncated(i)),
        };
        let found = name_in(h);
        if found != *name {
            return Err(ContainerError::UnexpectedEntry {
                index: i + 1,
                expected: name,
                found,
            });
        }
        if h[156] != b'0' {
            return Err(ContainerError::NotRegular(found));
        }
        let size = size_in(h).ok_or_else(|| ContainerError::Header(found.clone()))?;
        if size > *cap {
            return Err(ContainerError::TooLarge {
                name: found,
                size,
                cap: *cap,
            });
        }
        if header(name, size).as_ref().map(|c| &c[..]) != Some(h) {
            return Err(ContainerError::Header(found));
        }
        // `size` is at most a cap (256 MiB): it fits a usize.
        let start = at + BLOCK;
        let end =
            start + usize::try_from(size).map_err(|_| ContainerError::Header(found.clone()))?;
        let (Some(data), Some(pad)) = (bytes.get(start..end), bytes.get(end..padded(end))) else {
            return Err(ContainerError::Truncated(i));
        };
        if !zeros(pad) {
            return Err(ContainerError::Padding(found));
        }
        out[i] = data.to_vec();
        at = padded(end);
    }
    let rest = &bytes[at..];
    if rest.len() >= BLOCK && !zeros(&rest[..BLOCK]) {
        // A trailing entry, even a broken one, means this is not our format.
        return Err(ContainerError::Extra);
    }
    if rest.len() < END_MARKER || !zeros(&rest[..END_MARKER]) {
        return Err(ContainerError::NoEndMarker);
    }
    if rest.len() > END_MARKER {
        return Err(ContainerError::Trailing(rest.len() - END_MARKER));
    }
    let [marker, statement, signature, developer_cert, intermediate_cert, payload] = out;
    if marker != MARKER_CONTENT {
        return Err(ContainerError::Marker);
    }
    Ok(Container {
        statement,
        signature,
        developer_cert,
        intermediate_cert,
        payload,
    })
}

/// The entries' contents, in [`ENTRIES`] order.
fn parts(c: &Container) -> [&[u8]; 6] {
    [
        MARKER_CONTENT,
        &c.statement,
        &c.signature,
        &c.developer_cert,
        &c.intermediate_cert,
        &c.payload,
    ]
}

/// Serialize a container: each entry's [`header`], its data, zero padding to the block, then
/// the end-of-archive marker (byte for byte what the tar crate's builder writes for these
/// headers, so packages made before this function wrote them by hand are unchanged).
pub fn write(c: &Container) -> Result<Vec<u8>, std::io::Error> {
    let parts = parts(c);
    let total: usize = parts.iter().map(|d| BLOCK + padded(d.len())).sum();
    let mut out = Vec::with_capacity(total + END_MARKER);
    for ((name, _), data) in ENTRIES.iter().zip(parts) {
        let h = header(name, data.len() as u64).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("entry `{name}` is too large for a ustar header"),
            )
        })?;
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(padded(out.len()), 0);
    }
    out.resize(out.len() + END_MARKER, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Container {
        Container {
            statement: b"{}".to_vec(),
            signature: b"sig".to_vec(),
            developer_cert: b"d".to_vec(),
            intermediate_cert: b"i".to_vec(),
            payload: b"p".to_vec(),
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(parse(&write(&sample()).unwrap()).unwrap(), sample());
    }

    #[test]
    fn strict_layout() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "other", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(matches!(
            parse(&bytes),
            Err(ContainerError::UnexpectedEntry { index: 1, .. })
        ));
        let mut good = write(&sample()).unwrap();
        // Truncate to the first two entries (each small entry is 512 + 512 bytes).
        good.truncate(2048);
        assert!(matches!(parse(&good), Err(ContainerError::Truncated(2))));
        assert!(parse(b"garbage").is_err());
    }

    /// What the tar crate's builder writes for the same entries (how `write` worked before it
    /// wrote the headers itself).
    fn tar_builder(c: &Container) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for ((name, _), data) in ENTRIES.iter().zip(parts(c)) {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Every package written so far reads back: `write` is byte for byte the tar crate's
    /// builder, and a package packed by an earlier release (the fuzz seed) parses.
    #[test]
    fn the_format_is_the_one_always_written() {
        let sizes = Container {
            statement: vec![b's'; 511],
            signature: vec![b'g'; 512],
            developer_cert: vec![b'd'; 513],
            intermediate_cert: Vec::new(),
            payload: vec![7; 5000],
        };
        for c in [sample(), sizes] {
            let bytes = write(&c).unwrap();
            assert_eq!(bytes, tar_builder(&c));
            assert_eq!(parse(&bytes).unwrap(), c);
        }
        let seed = include_bytes!("../../../fuzz/seeds/package/hello.stockade");
        let c = parse(seed).unwrap();
        assert_eq!(write(&c).unwrap(), seed);
    }

    /// Entry `index`'s header offset in a package `write` made.
    fn header_at(bytes: &[u8], index: usize) -> usize {
        let mut at = 0;
        for _ in 0..index {
            let size = usize::try_from(size_in(&bytes[at..at + BLOCK]).unwrap()).unwrap();
            at += BLOCK + padded(size);
        }
        at
    }

    /// Change entry `index`'s header and give it a valid checksum again, so that only the
    /// change itself can be what is refused.
    fn edit_header(bytes: &mut [u8], index: usize, edit: impl FnOnce(&mut [u8])) {
        let at = header_at(bytes, index);
        let h = &mut bytes[at..at + BLOCK];
        edit(h);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..156], sum).unwrap();
    }

    /// Nothing but the exact container: no bytes after the end-of-archive marker (not even
    /// zeros: the packer pads to no record size), the marker itself, the ustar header as
    /// written (no GNU or PAX form, no other metadata), zero padding.
    #[test]
    fn nothing_but_the_exact_container() {
        let good = write(&sample()).unwrap();
        let refused = |bytes: &[u8]| parse(bytes).unwrap_err();

        let mut hidden = good.clone();
        hidden.extend(std::iter::repeat_n(0u8, 1536));
        hidden.extend(b"HIDDEN".repeat(2500));
        assert!(matches!(refused(&hidden), ContainerError::Trailing(_)));
        let mut record = good.clone();
        record.resize(padded(good.len()).max(10240), 0);
        assert!(matches!(refused(&record), ContainerError::Trailing(n) if n == 10240 - good.len()));
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(refused(&extra), ContainerError::Trailing(1)));
        for cut in [END_MARKER, BLOCK, 1] {
            let short = &good[..good.len() - cut];
            assert!(
                matches!(refused(short), ContainerError::NoEndMarker),
                "{cut}"
            );
        }
        let mut garbage_marker = good.clone();
        let n = garbage_marker.len();
        garbage_marker[n - 1] = 1;
        assert!(matches!(
            refused(&garbage_marker),
            ContainerError::NoEndMarker
        ));

        // GNU's magic, PAX's extended header type, metadata the packer never writes.
        let mut gnu = good.clone();
        edit_header(&mut gnu, 2, |h| h[257..265].copy_from_slice(b"ustar  \0"));
        assert!(
            matches!(refused(&gnu), ContainerError::Header(n) if n == "statement.json.minisig")
        );
        let mut pax = good.clone();
        edit_header(&mut pax, 0, |h| h[156] = b'x');
        assert!(matches!(refused(&pax), ContainerError::NotRegular(_)));
        let mut old_regular = good.clone();
        edit_header(&mut old_regular, 5, |h| h[156] = 0);
        assert!(matches!(
            refused(&old_regular),
            ContainerError::NotRegular(_)
        ));
        for (at, value) in [
            (100, &b"0000600\0"[..]), // mode
            (265, b"root"),           // uname
            (157, b"x"),              // link name
            (345, b"dir"),            // prefix: the name becomes dir/…
            (501, b"HIDDEN"),         // the header's unused tail
            (101, b"\0"),             // a number written otherwise
        ] {
            let mut b = good.clone();
            edit_header(&mut b, 1, |h| {
                h[at..at + value.len()].copy_from_slice(value)
            });
            assert!(
                matches!(
                    refused(&b),
                    ContainerError::Header(_) | ContainerError::UnexpectedEntry { index: 2, .. }
                ),
                "byte {at}: {:?}",
                refused(&b)
            );
        }
        // Non-zero bytes in an entry's padding.
        let mut pad = good.clone();
        let at = header_at(&pad, 1) + BLOCK + 2; // the statement is 2 bytes
        pad[at] = b'X';
        assert!(matches!(refused(&pad), ContainerError::Padding(n) if n == "statement.json"));
        // An entry cut short.
        let cut = &good[..header_at(&good, 5) + BLOCK];
        assert!(matches!(refused(cut), ContainerError::Truncated(5)));
        assert_eq!(parse(&good).unwrap(), sample());
    }
}
