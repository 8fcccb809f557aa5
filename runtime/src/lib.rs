//! # stockade-runtime
//!
//! The enforcing half of Stockade: it reads package bytes from disk, hands them to
//! `stockade-trust` for the fail-closed verification, extracts them safely, and launches the
//! plugin in the sandbox. The `stockade` binary (`main.rs`) only parses arguments and prints.
//!
//! All raw system calls live in `sys`; everything else uses safe types.

pub mod cli;
pub mod cmd;
pub mod error;
pub mod exit;
pub mod output;
pub mod sandbox;
pub mod sys;
