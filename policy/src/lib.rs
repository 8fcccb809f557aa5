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
