//! # stockade-policy
//!
//! Pure data and decisions for Stockade: the plugin manifest, the fixed capability set and the
//! certificate scopes that bound it, and the sandbox policy file. Nothing in this crate performs a
//! system call or touches the filesystem: every function takes values and returns values, so the
//! decisions that the runtime enforces can be unit- and property-tested without a kernel.
//!
//! ## Why a separate crate
//! Security teams audit *decisions*. Keeping them here, free of `unsafe` and of I/O, means the code
//! a reviewer must read to know what a plugin may do is small and self-contained; `stockade-runtime`
//! only enforces what this crate decided.
#![forbid(unsafe_code)]

pub mod capability;
pub mod deps;
pub mod manifest;
pub mod operator;
pub mod protocol;
pub mod sandbox;
pub mod sertone;
pub mod serve;

/// The `version` of a TOML file this crate reads when it is above 1: a file written for a newer
/// Stockade. Looked at before the strict parse (`deny_unknown_fields`), since a newer version
/// may have keys this build does not know, which would be reported as an unknown key instead
/// of the version. `None` for version 1, no version, or text that does not parse (the strict
/// parse says why).
pub(crate) fn newer_toml_version(text: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Tag {
        version: u32,
    }
    toml::from_str::<Tag>(text)
        .ok()
        .map(|t| t.version)
        .filter(|&v| v > 1)
}
