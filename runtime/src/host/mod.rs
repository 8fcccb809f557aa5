//! The host side of the protocol (docs/protocol.md): one mio event loop serving sandboxed
//! plugins to an agent.
//!
//! - [`plugin`]: one plugin's protocol state machine (handshake, hook calls with deadlines and
//!   cancellation, the deny-by-default host API, stdout/stderr policing), free of I/O;
//! - [`supervisor`]: N plugins' pipes and timers in one [`mio::Poll`];
//! - [`agent`]: the agent's side (requests in, responses and notifications out);
//! - [`kv`]: the per-plugin, quota-limited, crash-safe key/value store.
//! - [`answer_cache`]: hook answers kept for `[hooks."<hook>"] cache_ttl_ms` (seed 001's key).
//! - [`admit`]: `serve`'s connection limits (in all, per uid, reserved for root) and the
//!   rate-limited log of refusals.
//! - [`quarantine`]: crash-loop quarantines recorded in the state directory, so that a restart
//!   of the daemon does not run a quarantined package again.
//!
//! The wire types and every decision (framing caps, handshake rules, the grant intersection,
//! the host policy) are in `stockade_policy::protocol`, pure and unit-tested.

pub mod admit;
pub mod agent;
pub mod answer_cache;
pub mod bypass;
pub mod conn;
pub mod daemon;
pub mod fleet;
pub mod kv;
pub mod plugin;
pub mod quarantine;
pub mod sertone;
pub mod supervisor;
pub mod systemd;
