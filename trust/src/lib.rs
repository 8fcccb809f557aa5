//! # stockade-trust
//!
//! Everything Stockade needs to decide whether bytes are trustworthy, as pure functions over
//! in-memory values: minisign-format Ed25519 keys and signatures, canonical JSON, the
//! root → intermediate → developer certificate chain with scopes, signed revocation lists and the
//! signed package statement. No file or clock is read here: callers pass bytes and "now".
#![forbid(unsafe_code)]
