//! # stockade-runtime
//!
//! The enforcing half of Stockade: it reads package bytes from disk, hands them to
//! `stockade-trust` for the fail-closed verification, extracts them safely, and launches the
//! plugin in the sandbox. The `stockade` binary (`main.rs`) only parses arguments and prints.
//!
//! All raw system calls live in `sys`; everything else uses safe types.
//!
//! Sandbox: [`sandbox`] (the launch pipeline and every layer), [`sys`] (the only module with
//! `unsafe`).
//!
//! Trust and packages: [`package`] (container, deterministic payload, safe extraction and the
//! verification pipeline, `package::open_verified` for the launcher), [`trustdir`] (pinned roots,
//! revocation list, trust modes), [`state`] (rollback memory), [`node`] (hardware id, license),
//! [`sources`] (signed indexes, operator and author key pins, downloads), [`store`] (the crash-safe plugin store: staging, commit by registry rename, recovery),
//! [`fileio`] (capped single-fd reads, exclusive and atomic writes; directories held by
//! descriptor and made under a temporary name: `fileio::held`), [`keyfile`] (key files).

// Diagnostics go through `output::print_stderr`: `eprintln!` panics on a stderr that cannot be
// written, which aborts a release build mid-operation (the runtime's cleanup skipped).
#![deny(clippy::print_stderr)]

pub mod audit;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod exit;
pub mod fileio;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod keyfile;
pub mod kinds;
pub mod logqueue;
pub mod node;
pub mod output;
pub mod package;
pub mod password;
pub mod plugin_policy;
pub mod policyfiles;
pub mod sandbox;
pub mod sources;
pub mod state;
pub mod store;
pub mod sys;
#[cfg(test)]
mod test_support;
pub mod trustdir;
