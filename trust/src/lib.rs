//! # stockade-trust
//!
//! Everything Stockade needs to decide whether bytes are trustworthy, as pure functions over
//! in-memory values: minisign-format Ed25519 keys and signatures, canonical JSON, the
//! root → intermediate → developer certificate chain with scopes, signed revocation lists,
//! licenses and the signed package statement. No file or clock is read here: callers pass bytes
//! and "now" (unix seconds), so expiry and rollback are tested without sleeping or touching disk.
//!
//! ## Modules, in the order verification uses them
//! - [`minisign`]: key and signature formats, strict Ed25519 verification;
//! - [`canonical`]: the exact bytes that are signed;
//! - [`signed`]: the `{"<body>": …, "signature": …}` envelope shared by the signed documents;
//! - [`statement`]: what a developer signs for a package (manifest + file map + payload digest);
//! - [`cert`] and [`chain`]: certificates, chain, bounds and validity;
//! - [`crl`]: revocation lists (versioned, expiring, rollback-checked);
//! - [`license`]: node licenses for `license:<serial>` scopes;
//! - [`index`]: signed plugin indexes (seed 004): parsing, rollback/freeze, platform choice, key pins.
//!
//! The file formats are summarized for auditors in `trust/FORMATS.md`.
//!
//! ## Compatibility
//! Keys and signatures are byte-compatible with minisign 0.11 (`ED` prehashed signatures;
//! unencrypted secret keys). Document formats carry `format: 1`; a new format gets a new number.
//!
//! ## Test strategy
//! Unit tests per module with fixed seeds (deterministic keys), fixtures produced by the stock
//! `minisign` binary, property tests that parsers never panic, and fuzz targets in `fuzz/`.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod cert;
pub mod chain;
pub mod crl;
pub mod grant;
pub mod index;
pub mod license;
pub mod minisign;
pub mod signed;
pub mod statement;

/// How far the start of a signed document — a certificate's `not_before`, a grant's or a
/// license's `issued_at` — may be ahead of this node's clock, in seconds. `ca issue`, `grant
/// issue` and `node license` stamp "now" on the machine that signs, and the document is often
/// used at once on other machines: without a margin a CA whose clock runs a few seconds ahead
/// of a node's makes what it just signed refused there (`validity.not_yet_valid`) for those
/// seconds. Five minutes is Kerberos' default tolerance; a document whose start is further
/// ahead (a clock far off, or one meant for later) is still not valid yet. Only the start is
/// widened: an expiry is never extended, and a revocation applies whatever its time.
pub const MAX_CLOCK_SKEW: u64 = 300;

/// The top-level `format` number of a JSON file Stockade keeps (a package statement, a CA
/// directory file, the sources and state files), as a newer Stockade marks it: looked at
/// before the file is parsed strictly (`deny_unknown_fields`), since a newer format may carry
/// fields this build does not know, which would be reported as damage instead of as a newer
/// format. `None` when the bytes are not an object with one `format` that is an unsigned
/// integer (the strict parse then says what is wrong). Each reader decides what it accepts:
/// format 1, or a marker's absence, is this build's.
pub fn json_format(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Tag {
        format: u64,
    }
    serde_json::from_slice::<Tag>(bytes).ok().map(|t| t.format)
}
