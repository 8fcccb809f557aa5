//! Signed plugin packages: the container format, building the payload, safe extraction and the
//! fail-closed verification pipeline. The launcher reuses [`open_verified`].

pub mod build;
pub mod container;
pub mod extract;
pub mod verify;

pub use verify::{open_verified, open_verified_in, Report, VerifiedPackage, VerifyError};
