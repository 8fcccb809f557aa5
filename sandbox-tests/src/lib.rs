//! Escape probes, the battery that runs them, and the posture check from outside.
//!
//! # Design
//! The probes are a static C multi-call binary (`probes/`, built by `build.rs`) so that they run
//! unchanged inside a sandbox with an empty root and inside a bare qemu initramfs. Each probe
//! attempts one thing a plugin must not be able to do and exits 0 (the action succeeded),
//! 1 (denied) or 2 (probe error), printing one line.
//!
//! The battery ([`battery`]) runs every probe twice: natively, where the action must succeed
//! (the *control*: it proves the probe really exercises the mechanism on this kernel, so a
//! "denied" in the sandbox means something), and under `stockade exec` (or a stand-in wrapper),
//! where it must not. The per-probe rules that turn two runs into a verdict live in
//! [`rules`]; they are pure functions, unit-tested without a kernel.
//!
//! The posture check ([`posture`]) looks at a running sandboxed process from the host side, as
//! gVisor's sandboxposture does: credentials, capability sets, seccomp mode, namespaces,
//! rlimits, fds and cgroup of every thread, compared with the expected posture.
//!
//! # Compatibility
//! Linux x86-64 only (the arch probes use x86 instructions). Native controls need root. The
//! battery has no run-time dependency on cargo and builds with `+crt-static`.
//!
//! # Test strategy
//! Unit tests cover the verdict rules and the `/proc` parsers on canned text; the integration
//! tests in `tests/` run the real battery and posture check against the workspace's `stockade`.
//! A test that cannot run (not root, binary missing) says why, and fails when `CI=true`
//! ([`ci::skip_or_fail`]).

#![forbid(unsafe_code)]

pub mod battery;
pub mod ci;
pub mod expect;
pub mod fixtures;
pub mod host;
pub mod posture;
pub mod rules;
pub mod run;

/// Path of the probe binary built by `build.rs` for this checkout.
pub const BUILT_PROBE: &str = env!("STOCKADE_PROBE_BUILT");
