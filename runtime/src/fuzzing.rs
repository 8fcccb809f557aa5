//! Entry points for the fuzz targets in `fuzz/`: the parsers of untrusted bytes that live in
//! the runtime's private modules, each reached through one function here.
//!
//! Compiled only when cargo-fuzz builds the crate (`cfg(fuzzing)`) and in the unit tests, so
//! the public API of an ordinary build does not grow by these functions, and the parsers stay
//! private to their modules (nothing else in the workspace can start to depend on them).

/// The Sertone HTTP front's request parser (`host::sertone`) over the bytes a network peer
/// sent on one connection: each whole request, pipelined ones included, as (bytes it used, its
/// body), and the status that closed the connection if one did.
pub fn front_requests(buf: &[u8], port: u16) -> (Vec<(usize, Vec<u8>)>, Option<u16>) {
    crate::host::sertone::read_all(buf, port)
}

/// The HTTP bridge's reader of the plugin's answer head (`cmd::http_bridge`): `None` while more
/// bytes are needed, else (status, where the body starts, its Content-Length), or the refusal.
pub fn bridge_answer_head(buf: &[u8]) -> std::io::Result<Option<(u16, usize, Option<usize>)>> {
    crate::cmd::http_bridge::head_of(buf).map(|h| h.map(|h| (h.code, h.body_at, h.len)))
}

/// The sources' reader of an index's detached signature (`sources`), as fetched from the
/// source's server.
pub fn source_signature(
    bytes: &[u8],
) -> Result<stockade_trust::minisign::Signature, Box<dyn std::error::Error + Send + Sync>> {
    crate::sources::parse_sig(bytes)
}

/// The key/value store's reader of its file (`host::kv`) over the bytes on disk (a plugin's
/// keys and values, in a file the state directory's owner may edit): the map it holds and what
/// the store's quota counts for it (its strings' bytes as stored, escaped), or `None` when the
/// store refuses the file. `cap` is the largest file read.
pub fn kv_store_file(
    bytes: &[u8],
    cap: u64,
) -> Option<(std::collections::BTreeMap<String, String>, usize)> {
    let map = crate::host::kv::parse_file(bytes, cap, "fuzz.json").ok()?;
    let total = crate::host::kv::total_of(&map);
    Some((map, total))
}
