//! Signed plugin packages: the container format, building the payload, safe extraction and the
//! fail-closed verification pipeline. The launcher reuses [`open_verified`].

pub mod build;
pub mod container;
pub mod errors;
pub mod extract;
pub mod report;
pub mod trees;
pub mod verify;

pub use errors::VerifyError;
pub use report::Report;
pub use verify::{
    check_in, open_verified, open_verified_among, open_verified_in, recheck_trust,
    unverified_at_load, verify_only, CheckedPackage, PackageDir, PackageView, VerifiedPackage,
    RECHECK_WARNING,
};
