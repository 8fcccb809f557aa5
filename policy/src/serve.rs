//! The `stockade serve` daemon configuration and its supervision decisions, pure.
//!
//! A small versioned TOML file, separate from the sandbox/host policy on purpose: the operator
//! policy (issue 5) can later fold it in as a `[serve]`-rooted section without touching either.
//!
//! ```toml
//! version = 1
//! [serve]
//! allowed_uids = [1000]        # besides root and the daemon's own uid, always allowed
//! allowed_gids = [998]
//! max_connections = 64
//! max_connections_per_uid = 16 # default: a quarter of max_connections; root and the
//!                              # daemon's own uid are not counted against it
//! reserved_connections = 8     # default: an eighth of max_connections; only for root and
//!                              # the daemon's own uid
//! max_outbound_bytes = 4194304 # per agent connection; past it the connection is dropped
//! load = ["/srv/plugins/a.stockade"]
//! [restart]
//! backoff_base_ms = 200
//! backoff_max_ms = 30000
//! jitter_percent = 20
//! [quarantine]
//! max_crashes = 5
//! window_ms = 60000
//! [health]
//! ping_interval_ms = 5000      # 0 disables health pings
//! ping_timeout_ms = 2000
//! trust_check_interval_ms = 5000 # the trust directory and license read again; 0: only at
//!                              # loads, restarts and SIGHUP
//! ```
//!
//! Decisions: [`backoff_ms`] (exponential backoff with jitter, the random input passed in so a
//! seeded [`SplitMix64`] makes it testable) and [`CrashWindow`] (the crash-loop breaker).

use serde::Deserialize;
use std::collections::VecDeque;

/// Largest serve config accepted (before parsing).
pub const MAX_SERVE_CONFIG_BYTES: usize = 64 * 1024;

/// `[serve]`: the agent socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSection {
    /// Peer uids allowed besides root and the daemon's own uid.
    pub allowed_uids: Vec<u32>,
    /// Peer gids allowed (a peer passes when its uid or its gid is allowed).
    pub allowed_gids: Vec<u32>,
    /// Agent connections open at once; more are refused with one error line.
    pub max_connections: usize,
    /// Connections one peer uid may hold at once, root and the daemon's own uid excepted
    /// ([`ServeSection::per_uid_limit`]): without it, one agent's uid opening connections and
    /// leaving them idle took every slot, and no other agent, root's included, could connect.
    pub max_connections_per_uid: Option<usize>,
    /// Connections only root and the daemon's own uid may take ([`ServeSection::reserved`]):
    /// with the per-uid limit alone, a few uids together could still fill every slot; these
    /// keep the operator (and its tools) able to connect whatever the agents hold. Those two
    /// uids can stop the daemon anyway, so nothing is kept from them.
    pub reserved_connections: Option<usize>,
    /// Bytes queued for one agent connection; a connection that lets more pile up is dropped.
    pub max_outbound_bytes: usize,
    /// Packages loaded at start.
    pub load: Vec<String>,
    /// The warm pool: keep one pre-built sandbox (every layer applied, the program not yet
    /// forked) per loaded plugin, so a restart only forks and executes. Costs one idle init
    /// process, a uid and a cgroup per plugin; off by default.
    pub warm: bool,
}

impl Default for ServeSection {
    fn default() -> Self {
        Self {
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            max_connections: 64,
            max_connections_per_uid: None,
            reserved_connections: None,
            max_outbound_bytes: 4 << 20,
            load: Vec::new(),
            warm: false,
        }
    }
}

impl ServeSection {
    /// Connections one uid other than root and the daemon's own may hold: `max_connections_per_uid`,
    /// by default a quarter of `max_connections` (at least 1), so that one uid is never alone
    /// in filling the socket while a few agents of one service still fit.
    pub fn per_uid_limit(&self) -> usize {
        self.max_connections_per_uid
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// Connections only root and the daemon's own uid may take: `reserved_connections`, by
    /// default an eighth of `max_connections` (8 of the default 64; none below 8 connections,
    /// where a deployment that small chose its numbers itself).
    pub fn reserved(&self) -> usize {
        self.reserved_connections
            .unwrap_or(self.max_connections / 8)
    }
}

/// `[sertone]`: the HTTP front for Sertone-style hook plugins (seed 003, docs/http-plugins.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SertoneSection {
    /// `IP:PORT` to listen on (`--sertone-listen` overrides); none: no front.
    pub listen: Option<String>,
    /// Every answer is sent within this many milliseconds; plugins that have not answered by
    /// then are bypassed (and told so through their call deadline).
    pub deadline_ms: u64,
    /// Accept a non-loopback listen address and non-loopback peers. Off: loopback only.
    pub allow_remote: bool,
    /// HTTP connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Who pays the plugins' fees, as `GET /sertone/info` tells the control center (seed 003):
    /// the operator's deployment decision (provider- or consumer-side install), not something
    /// the plugins can know.
    pub fee_model: FeeModel,
}

/// Seed 003's `fee_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeModel {
    /// The provider's control center pays.
    Provider,
    /// The consumer's control center pays.
    Consumer,
    /// No fees (the default).
    #[default]
    None,
}

impl FeeModel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeeModel::Provider => "provider",
            FeeModel::Consumer => "consumer",
            FeeModel::None => "none",
        }
    }
}

impl Default for SertoneSection {
    fn default() -> Self {
        Self {
            listen: None,
            deadline_ms: 500,
            allow_remote: false,
            max_connections: 256,
            fee_model: FeeModel::None,
        }
    }
}

/// `[restart]`: exponential backoff between restarts of a crashed plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Delay before the first restart.
    pub backoff_base_ms: u64,
    /// Largest delay.
    pub backoff_max_ms: u64,
    /// Random spread, in percent of the delay (0–100), so plugins crashing together do not
    /// restart in lock-step.
    pub jitter_percent: u8,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            jitter_percent: 20,
        }
    }
}

/// `[quarantine]`: the crash-loop breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantinePolicy {
    /// Crashes within `window_ms` that quarantine a plugin.
    pub max_crashes: u32,
    /// The window.
    pub window_ms: u64,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            max_crashes: 5,
            window_ms: 60_000,
        }
    }
}

/// `[health]`: pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthPolicy {
    /// Interval between pings of a ready plugin; 0 disables them.
    pub ping_interval_ms: u64,
    /// A ping not answered within this is a hung plugin (killed, counted as a crash).
    pub ping_timeout_ms: u64,
    /// Interval between readings of the trust configuration (trust directory, revocation list)
    /// and the node's license while plugins are loaded; a change is applied to the running
    /// plugins as SIGHUP applies it (a revoked signer's plugin stopped). 0: read only at loads,
    /// restarts and SIGHUP, so a revocation waits for one of those. The grants of running
    /// plugins are checked again at the same pace (a withdrawn one relaunches its plugin).
    pub trust_check_interval_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            ping_interval_ms: 5_000,
            ping_timeout_ms: 2_000,
            trust_check_interval_ms: 5_000,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Format version (1).
    pub version: u32,
    /// `[serve]`.
    #[serde(default)]
    pub serve: ServeSection,
    /// `[restart]`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `[quarantine]`.
    #[serde(default)]
    pub quarantine: QuarantinePolicy,
    /// `[health]`.
    #[serde(default)]
    pub health: HealthPolicy,
    /// `[sertone]`.
    #[serde(default)]
    pub sertone: SertoneSection,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            version: 1,
            serve: ServeSection::default(),
            restart: RestartPolicy::default(),
            quarantine: QuarantinePolicy::default(),
            health: HealthPolicy::default(),
            sertone: SertoneSection::default(),
        }
    }
}

/// Why a serve config is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeConfigError {
    /// Larger than [`MAX_SERVE_CONFIG_BYTES`].
    #[error("serve config is larger than {MAX_SERVE_CONFIG_BYTES} bytes")]
    TooLarge,
    /// Not TOML or not this shape: `LINE:COLUMN: ` and the parser's message, on one line (the
    /// caller names the file: [`crate::TomlSyntax::in_file`]).
    #[error(transparent)]
    Syntax(crate::TomlSyntax),
    /// An unknown version.
    #[error("serve config version {0} is not supported (expected 1)")]
    Version(u32),
    /// A value out of range.
    #[error("`{0}` is out of range")]
    Range(&'static str),
}

impl ServeConfig {
    /// Parse and validate.
    pub fn parse(text: &str) -> Result<Self, ServeConfigError> {
        if text.len() > MAX_SERVE_CONFIG_BYTES {
            return Err(ServeConfigError::TooLarge);
        }
        if let Some(found) = crate::newer_toml_version(text) {
            return Err(ServeConfigError::Version(found));
        }
        let c: ServeConfig = toml::from_str(text)
            .map_err(|e| ServeConfigError::Syntax(crate::TomlSyntax::new(text, &e)))?;
        c.validate()?;
        Ok(c)
    }

    /// Check every range.
    pub fn validate(&self) -> Result<(), ServeConfigError> {
        if self.version != 1 {
            return Err(ServeConfigError::Version(self.version));
        }
        let (s, r, q, h) = (&self.serve, &self.restart, &self.quarantine, &self.health);
        let t = &self.sertone;
        let checks: [(&'static str, bool); 15] = [
            ("sertone.deadline_ms", (1..=60_000).contains(&t.deadline_ms)),
            (
                "sertone.max_connections",
                (1..=4096).contains(&t.max_connections),
            ),
            (
                "serve.max_connections",
                (1..=4096).contains(&s.max_connections),
            ),
            (
                "serve.max_connections_per_uid",
                (1..=s.max_connections).contains(&s.per_uid_limit()),
            ),
            // Other uids keep at least one connection.
            (
                "serve.reserved_connections",
                s.reserved() < s.max_connections,
            ),
            (
                "serve.max_outbound_bytes",
                (4096..=256 << 20).contains(&s.max_outbound_bytes),
            ),
            ("serve.load", s.load.len() <= 256),
            ("restart.backoff_base_ms", r.backoff_base_ms <= 3_600_000),
            (
                "restart.backoff_max_ms",
                r.backoff_max_ms >= r.backoff_base_ms && r.backoff_max_ms <= 3_600_000,
            ),
            ("restart.jitter_percent", r.jitter_percent <= 100),
            (
                "quarantine.max_crashes",
                (1..=1_000_000).contains(&q.max_crashes),
            ),
            (
                "quarantine.window_ms",
                (1..=86_400_000).contains(&q.window_ms),
            ),
            ("health.ping_interval_ms", h.ping_interval_ms <= 3_600_000),
            (
                "health.ping_timeout_ms",
                (1..=3_600_000).contains(&h.ping_timeout_ms),
            ),
            (
                "health.trust_check_interval_ms",
                h.trust_check_interval_ms <= 3_600_000,
            ),
        ];
        for (k, ok) in checks {
            if !ok {
                return Err(ServeConfigError::Range(k));
            }
        }
        Ok(())
    }
}

/// The delay before restart number `attempt` (1 = the first after a crash):
/// `base · 2^(attempt-1)`, capped at `max`, then spread by ±`jitter_percent` using `random`
/// (any u64; uniform input gives a uniform spread), never above `max`.
pub fn backoff_ms(p: &RestartPolicy, attempt: u32, random: u64) -> u64 {
    let exp = attempt.saturating_sub(1).min(40);
    let raw = p
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(p.backoff_max_ms);
    let spread = raw * u64::from(p.jitter_percent) / 100;
    if spread == 0 {
        return raw;
    }
    // Uniform in [raw - spread, raw + spread].
    let offset = random % (2 * spread + 1);
    (raw - spread + offset).min(p.backoff_max_ms)
}

/// A tiny seeded generator (SplitMix64) for the jitter: the runtime seeds it from the OS, tests
/// from a constant. Jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Crash times within the quarantine window (milliseconds on any monotonic clock).
#[derive(Debug, Clone, Default)]
pub struct CrashWindow {
    times: VecDeque<u64>,
}

impl CrashWindow {
    /// Record a crash at `now_ms`; true when the plugin must be quarantined.
    pub fn record(&mut self, p: &QuarantinePolicy, now_ms: u64) -> bool {
        self.times.push_back(now_ms);
        while self
            .times
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= p.window_ms)
        {
            self.times.pop_front();
        }
        self.times.len() >= p.max_crashes as usize
    }

    /// Crashes in the window as of the last record (the backoff attempt number).
    pub fn recent(&self) -> u32 {
        u32::try_from(self.times.len()).unwrap_or(u32::MAX)
    }

    /// Forget (an explicit restart out of quarantine).
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c = ServeConfig::parse("version = 1\n").unwrap();
        assert_eq!(c, ServeConfig::default());
        assert!(matches!(
            ServeConfig::parse("version = 1\n[serve]\nallowed_uid = [1]\n"),
            Err(ServeConfigError::Syntax(_))
        ));
        assert!(matches!(
            ServeConfig::parse("version = 2\n"),
            Err(ServeConfigError::Version(2))
        ));
        // A newer version's keys do not hide its version (they were a syntax error).
        assert!(matches!(
            ServeConfig::parse("version = 2\n[serve]\nallowed_uid = [1]\n"),
            Err(ServeConfigError::Version(2))
        ));
        assert!(matches!(
            ServeConfig::parse(
                "version = 1\n[restart]\nbackoff_base_ms = 10\nbackoff_max_ms = 5\n"
            ),
            Err(ServeConfigError::Range("restart.backoff_max_ms"))
        ));
        assert!(matches!(
            ServeConfig::parse("version = 1\n[restart]\njitter_percent = 101\n"),
            Err(ServeConfigError::Range("restart.jitter_percent"))
        ));
        let c = ServeConfig::parse(
            "version = 1\n[serve]\nallowed_uids = [1000]\nallowed_gids = [5]\nload = [\"a\"]\n\
             [quarantine]\nmax_crashes = 3\nwindow_ms = 100\n[health]\nping_interval_ms = 0\n",
        )
        .unwrap();
        assert_eq!(c.serve.allowed_uids, [1000]);
        assert_eq!(c.quarantine.max_crashes, 3);
        assert_eq!(c.health.ping_interval_ms, 0);
        assert_eq!(c.health.trust_check_interval_ms, 5_000);
        let c = ServeConfig::parse("version = 1\n[health]\ntrust_check_interval_ms = 0\n").unwrap();
        assert_eq!(c.health.trust_check_interval_ms, 0);
        assert!(matches!(
            ServeConfig::parse("version = 1\n[health]\ntrust_check_interval_ms = 3600001\n"),
            Err(ServeConfigError::Range("health.trust_check_interval_ms"))
        ));
        assert!(ServeConfig::parse(&"#".repeat(MAX_SERVE_CONFIG_BYTES + 1)).is_err());
    }

    #[test]
    fn connection_limits_default_to_shares_of_the_total_and_are_checked() {
        let c = ServeConfig::default();
        assert_eq!((c.serve.per_uid_limit(), c.serve.reserved()), (16, 8));
        let c = ServeConfig::parse("version = 1\n[serve]\nmax_connections = 2\n").unwrap();
        assert_eq!((c.serve.per_uid_limit(), c.serve.reserved()), (1, 0));
        let c = ServeConfig::parse(
            "version = 1\n[serve]\nmax_connections_per_uid = 64\nreserved_connections = 0\n",
        )
        .unwrap();
        assert_eq!((c.serve.per_uid_limit(), c.serve.reserved()), (64, 0));
        for (text, key) in [
            (
                "max_connections_per_uid = 0",
                "serve.max_connections_per_uid",
            ),
            (
                "max_connections_per_uid = 65",
                "serve.max_connections_per_uid",
            ),
            ("reserved_connections = 64", "serve.reserved_connections"),
            (
                "max_connections = 4\nreserved_connections = 4",
                "serve.reserved_connections",
            ),
        ] {
            let r = ServeConfig::parse(&format!("version = 1\n[serve]\n{text}\n"));
            assert!(
                matches!(r, Err(ServeConfigError::Range(k)) if k == key),
                "{text}: {r:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let p = RestartPolicy {
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            jitter_percent: 0,
        };
        let d: Vec<u64> = (1..=6).map(|a| backoff_ms(&p, a, 12345)).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ms(&p, 0, 0), 100);
        assert_eq!(backoff_ms(&p, u32::MAX, 0), 1000);

        let p = RestartPolicy {
            jitter_percent: 20,
            ..p
        };
        let mut rng = SplitMix64::new(42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let v = backoff_ms(&p, 2, rng.next_u64());
            assert!((160..=240).contains(&v), "{v}");
            seen.insert(v);
        }
        // The spread is used, not a constant.
        assert!(seen.len() > 50, "{}", seen.len());
        for _ in 0..1000 {
            assert!(backoff_ms(&p, 9, rng.next_u64()) <= 1000);
        }
        // Seeded: reproducible.
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..5).map(|_| backoff_ms(&p, 1, r.next_u64())).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..5).map(|_| backoff_ms(&p, 1, r.next_u64())).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn crash_window_quarantines_after_n_in_window_only() {
        let q = QuarantinePolicy {
            max_crashes: 3,
            window_ms: 1000,
        };
        let mut w = CrashWindow::default();
        assert!(!w.record(&q, 0));
        assert!(!w.record(&q, 500));
        // The first crash left the window: still two.
        assert!(!w.record(&q, 1200));
        assert_eq!(w.recent(), 2);
        assert!(w.record(&q, 1300));
        w.clear();
        assert_eq!(w.recent(), 0);
        assert!(!w.record(&q, 1400));
    }
}
