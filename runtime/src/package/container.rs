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
//! (nothing self-referential). The parser reads raw entries (no GNU long-name or PAX
//! interpretation) and accepts nothing but the six names, in order, as regular files.

use std::io::Read;
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
    /// The tar structure is broken.
    #[error("not a readable tar archive")]
    Tar(#[source] std::io::Error),
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
    /// More than six entries.
    #[error("unexpected extra entry after `payload.tar.gz`")]
    Extra,
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

/// Parse a package held in memory.
pub fn parse(bytes: &[u8]) -> Result<Container, ContainerError> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = archive.entries().map_err(ContainerError::Tar)?.raw(true);
    let mut out: [Vec<u8>; 6] = Default::default();
    for (i, (name, cap)) in ENTRIES.iter().enumerate() {
        let mut entry = match entries.next() {
            Some(e) => e.map_err(ContainerError::Tar)?,
            None => return Err(ContainerError::Truncated(i)),
        };
        let found = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if found != *name {
            return Err(ContainerError::UnexpectedEntry {
                index: i + 1,
                expected: name,
                found,
            });
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ContainerError::NotRegular(found));
        }
        let size = entry.header().size().map_err(ContainerError::Tar)?;
        if size > *cap {
            return Err(ContainerError::TooLarge {
                name: found,
                size,
                cap: *cap,
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(*cap + 1)
            .read_to_end(&mut buf)
            .map_err(ContainerError::Tar)?;
        out[i] = buf;
    }
    if let Some(extra) = entries.next() {
        // A trailing entry, even a broken one, means this is not our format.
        let _ = extra;
        return Err(ContainerError::Extra);
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

/// Serialize a container (deterministic headers: mode 0644, mtime 0, uid/gid 0).
pub fn write(c: &Container) -> Result<Vec<u8>, std::io::Error> {
    let mut b = tar::Builder::new(Vec::new());
    let parts: [&[u8]; 6] = [
        MARKER_CONTENT,
        &c.statement,
        &c.signature,
        &c.developer_cert,
        &c.intermediate_cert,
        &c.payload,
    ];
    for ((name, _), data) in ENTRIES.iter().zip(parts) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()
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
}
