//! Which agent connections `stockade serve` takes, past the allowlist: the connection limits,
//! and the log of refusals, rate-limited.
//!
//! Limits ([`admit`]): `max_connections` open at once in all; a uid other than root and the
//! daemon's own holds at most `max_connections_per_uid` of them; and the last
//! `reserved_connections` are only for root and the daemon's own uid (`[serve]`,
//! `stockade_policy::serve::ServeSection`). Without the last two, one allowed uid opening 64
//! connections and leaving them idle locked every other agent out, root included. Those two
//! uids (the privileged peers) are not limited per uid: they can stop the daemon anyway, and
//! the operator's tools connect as them.
//!
//! There is no idle timeout: an agent that only listens to the notifications (`plugin_state`,
//! `event`) sends nothing for as long as it runs, and the daemon cannot tell it from an agent
//! that holds a slot for nothing. The limits bound what idle connections can take instead.
//!
//! Refusals are logged ([`RefusalLog`]) at most once per [`REFUSAL_LOG_INTERVAL`] per reason, the
//! rest counted and said in one line when the interval ends: a peer that connects in a loop
//! is refused every time (one protocol line each) but cannot flood the daemon's log. The same
//! log, keyed by its own reasons, rate-limits the Sertone front's refusals and its bypass lines
//! (host/sertone.rs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Least time between two log lines for refusals of one reason.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The connection limits (`[serve]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_connections`.
    pub total: usize,
    /// [`ServeSection::per_uid_limit`](stockade_policy::serve::ServeSection::per_uid_limit).
    pub per_uid: usize,
    /// [`ServeSection::reserved`](stockade_policy::serve::ServeSection::reserved).
    pub reserved: usize,
}

impl Limits {
    /// The limits of a serve config.
    pub fn of(s: &stockade_policy::serve::ServeSection) -> Self {
        Self {
            total: s.max_connections,
            per_uid: s.per_uid_limit(),
            reserved: s.reserved(),
        }
    }
}

/// Why a connection is refused (its log line's reason too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// No peer credentials.
    Credentials,
    /// Not in the allowlist.
    Allowlist,
    /// `max_connections` are open.
    Total,
    /// The peer's uid holds `max_connections_per_uid`.
    PerUid,
    /// Only the reserved connections are left, and the peer is not privileged.
    Reserved,
}

impl Refusal {
    /// The config key of the limit (in the refusal's `data.limit`), for a capacity refusal.
    pub fn limit_key(self) -> Option<&'static str> {
        match self {
            Refusal::Total => Some("max_connections"),
            Refusal::PerUid => Some("max_connections_per_uid"),
            Refusal::Reserved => Some("reserved_connections"),
            Refusal::Credentials | Refusal::Allowlist => None,
        }
    }

    /// What the peer is told (the error message).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Credentials => "peer credentials unavailable",
            Refusal::Allowlist => "this uid/gid may not use the socket",
            Refusal::Total => "too many connections",
            Refusal::PerUid => "too many connections from this uid",
            Refusal::Reserved => {
                "too many connections: the ones left are reserved for root and the daemon's uid"
            }
        }
    }
}

/// Whether a peer may open one more connection: `open` are open, `open_of_uid` of them the
/// peer's uid's; `privileged` is root or the daemon's own uid.
pub fn admit(l: &Limits, privileged: bool, open: usize, open_of_uid: usize) -> Result<(), Refusal> {
    if open >= l.total {
        return Err(Refusal::Total);
    }
    if privileged {
        return Ok(());
    }
    if open_of_uid >= l.per_uid {
        return Err(Refusal::PerUid);
    }
    if open >= l.total.saturating_sub(l.reserved) {
        return Err(Refusal::Reserved);
    }
    Ok(())
}

/// The refusals' log, at most one line per reason per [`REFUSAL_LOG_INTERVAL`]. A reason is
/// any ordered key: the agent socket's [`Refusal`] by default.
#[derive(Debug)]
pub struct RefusalLog<K = Refusal> {
    /// Per reason: when its interval ends (its last line + the interval), and the refusals
    /// not logged since.
    held: BTreeMap<K, (Instant, u64)>,
}

impl<K> Default for RefusalLog<K> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> RefusalLog<K> {
    /// A refusal for `why` at `now`: whether to log it (then its line is written now, and the
    /// interval begins), else it is counted.
    pub fn note(&mut self, why: K, now: Instant) -> bool {
        match self.held.get_mut(&why) {
            Some((until, n)) if now < *until => {
                *n += 1;
                false
            }
            _ => {
                self.held.insert(why, (now + REFUSAL_LOG_INTERVAL, 0));
                true
            }
        }
    }

    /// When the next count is due (for the loop's timeout).
    pub fn next_due(&self) -> Option<Instant> {
        self.held
            .values()
            .filter(|(_, n)| *n > 0)
            .map(|(until, _)| *until)
            .min()
    }

    /// The counts of the intervals ended by `now`, one per reason that had refusals not logged
    /// (its next one is logged at once again).
    pub fn due(&mut self, now: Instant) -> Vec<(K, u64)> {
        let mut out = Vec::new();
        self.held.retain(|why, (until, n)| {
            if now < *until {
                return true;
            }
            if *n > 0 {
                out.push((why.clone(), *n));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        total: 8,
        per_uid: 3,
        reserved: 2,
    };

    #[test]
    fn one_uid_cannot_take_every_connection_and_the_reserve_is_root_s() {
        // One uid: its own limit.
        assert_eq!(admit(&L, false, 2, 2), Ok(()));
        assert_eq!(admit(&L, false, 3, 3), Err(Refusal::PerUid));
        // Several uids: the reserve is left.
        assert_eq!(admit(&L, false, 5, 2), Ok(()));
        assert_eq!(admit(&L, false, 6, 0), Err(Refusal::Reserved));
        // The privileged: the reserve, no per-uid limit, the total still.
        assert_eq!(admit(&L, true, 6, 6), Ok(()));
        assert_eq!(admit(&L, true, 7, 7), Ok(()));
        assert_eq!(admit(&L, true, 8, 0), Err(Refusal::Total));
        assert_eq!(admit(&L, false, 8, 0), Err(Refusal::Total));
        // No reserve: every slot for anyone, within the per-uid limit.
        let l = Limits { reserved: 0, ..L };
        assert_eq!(admit(&l, false, 7, 0), Ok(()));
    }

    #[test]
    fn refusals_are_logged_once_per_interval_and_reason_then_counted() {
        let t0 = Instant::now();
        let mut log = RefusalLog::default();
        assert!(log.note(Refusal::PerUid, t0));
        assert_eq!(log.next_due(), None, "nothing held back yet");
        for i in 1..=50 {
            assert!(!log.note(Refusal::PerUid, t0 + Duration::from_millis(i)));
        }
        // Another reason is logged on its own.
        assert!(log.note(Refusal::Allowlist, t0 + Duration::from_millis(60)));
        let end = t0 + REFUSAL_LOG_INTERVAL;
        assert_eq!(log.next_due(), Some(end));
        assert_eq!(log.due(end - Duration::from_millis(1)), []);
        assert_eq!(log.due(end), [(Refusal::PerUid, 50)]);
        assert_eq!(log.next_due(), None);
        // The interval over: the next refusal is logged at once.
        assert!(log.note(Refusal::PerUid, end + Duration::from_millis(1)));
        // The allowlist's interval ended with nothing held back: nothing to say, logged again.
        assert_eq!(log.due(t0 + REFUSAL_LOG_INTERVAL * 2), []);
        assert!(log.note(Refusal::Allowlist, t0 + REFUSAL_LOG_INTERVAL * 2));
    }
}
