//! The `bypass` audit records of hooks that fail open (docs/audit.md "Configuration changes
//! and bypassed guards").
//!
//! A call answered with the hook's fail-open default instead of the plugin's answer let a guard
//! be bypassed: it must be in the audit log. Not once per call, though — a plugin that hangs on
//! every call would append (and fsync) one record per call, flooding the log and slowing every
//! call. So the log records the *transitions* of each (plugin, hook):
//!
//! * `failing_open` — the first bypass after the hook last answered (its reason and the call's
//!   method);
//! * `answered` — the hook answers again, with how many calls were let through meanwhile
//!   (`bypassed_calls`);
//! * `unloaded` / `stopped` — the plugin went away (or the daemon stops) while bypasses were
//!   still uncounted — `unloaded` also for a hook an update relaunch's version no longer
//!   declares;
//! * `fail_closed` — the plugin was launched again under a policy (a SIGHUP reload) in which
//!   the hook fails closed — or, with no incarnation running (restarting, quarantined, held),
//!   such a policy came in force — while bypasses were still uncounted: nothing is let through
//!   any more, so the run ends there.
//!
//! At most one record per key per [`INTERVAL`]: a transition within it is folded into the next
//! record's count (a flapping plugin costs one record per interval, not two per flap). A record
//! that cannot be written does not block the call — it already failed open, by policy — and is
//! logged (the daemon's stderr) instead; its count stays folded into the next one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::audit::{Event, Record};

/// At most one `bypass` record per (plugin, hook) per interval.
pub const INTERVAL: Duration = super::admit::REFUSAL_LOG_INTERVAL;

/// The most characters of a bypass's message a record keeps.
const MAX_MESSAGE: usize = 256;

/// What one (plugin, hook) did since its last record.
#[derive(Debug, Default)]
struct Key {
    /// Failing open now: since the first bypass after it last answered (reason, method,
    /// message).
    failing: Option<(String, String, String)>,
    /// Whether this failing run's first bypass is recorded.
    begun_recorded: bool,
    /// Calls let through not yet counted in a record.
    uncounted: u64,
    /// When the last record of this key was written.
    last_record: Option<Instant>,
}

impl Key {
    fn due(&self, now: Instant) -> bool {
        self.last_record
            .is_none_or(|t| now.saturating_duration_since(t) >= INTERVAL)
    }
}

/// Why a plugin's pending bypasses are closed without its answer.
#[derive(Debug, Clone, Copy)]
pub enum Gone {
    /// The plugin was unloaded (or its load failed).
    Unloaded,
    /// The daemon stops.
    Stopped,
}

/// The bypass state of every (plugin, hook) that failed open since it last answered.
#[derive(Debug, Default)]
pub struct Ledger {
    keys: BTreeMap<(String, String), Key>,
}

impl Ledger {
    /// A call of `hook` was answered with `plugin`'s fail-open default (`why`: the error's
    /// name, e.g. `deadline_exceeded`, and its message; `method`: the call's protocol method).
    /// The record to write, if this begins a failing run and one is due.
    pub fn bypassed(
        &mut self,
        plugin: &str,
        hook: &str,
        why: (&str, &str),
        method: &str,
        now: Instant,
    ) -> Option<Record> {
        let (reason, message) = why;
        let k = self
            .keys
            .entry((plugin.to_string(), hook.to_string()))
            .or_default();
        k.uncounted += 1;
        if k.failing.is_none() {
            // Bounded: a plugin's own words may be in it.
            let message: String = message.chars().take(MAX_MESSAGE).collect();
            k.failing = Some((reason.to_string(), method.to_string(), message));
            k.begun_recorded = false;
        }
        if k.begun_recorded || !k.due(now) {
            return None;
        }
        k.begun_recorded = true;
        k.last_record = Some(now);
        let (reason, method, message) = k.failing.clone().unwrap_or_default();
        Some(record(
            plugin,
            "failing_open",
            json!({"hook": hook, "reason": reason, "message": message, "method": method,
                   "bypassed_calls": k.uncounted}),
        ))
    }

    /// `plugin` answered a call of `hook` itself. The record to write, if it had been failing
    /// open and one is due (else the count stays folded for the next record).
    pub fn answered(&mut self, plugin: &str, hook: &str, now: Instant) -> Option<Record> {
        let key = (plugin.to_string(), hook.to_string());
        let k = self.keys.get_mut(&key)?;
        k.failing = None;
        if k.uncounted == 0 || !k.due(now) {
            return None;
        }
        let n = std::mem::take(&mut k.uncounted);
        k.last_record = Some(now);
        Some(record(
            plugin,
            "answered",
            json!({"hook": hook, "bypassed_calls": n}),
        ))
    }

    /// `plugin` was launched again, on a package that `declares(hook)` or not, under a policy
    /// in which `fails_open(hook)` or not: a hook that failed open and is not declared any more
    /// (an update relaunch on a version without it) is gone with the version that had it — an
    /// `unloaded` record, as when the plugin goes —; one declared and failing closed now (a
    /// SIGHUP'd policy made it so; a running plugin keeps its policy until its next launch)
    /// lets nothing through any more — a `fail_closed` record. Either run ends here, one
    /// record per such hook with calls let through not yet counted, whatever the interval.
    /// Left, the hook stayed marked failing open until the plugin answered it again (never,
    /// for a hook it no longer has), its `unloaded`/`stopped` record said `failing_open: true`
    /// of it, and a later fail-open run was folded into the old one, unrecorded.
    pub fn relaunched(
        &mut self,
        plugin: &str,
        declares: impl Fn(&str) -> bool,
        fails_open: impl Fn(&str) -> bool,
    ) -> Vec<Record> {
        let mut out = self.end(|p, h| p == plugin && !declares(h), "unloaded");
        out.extend(self.policy_changed(plugin, fails_open));
        out
    }

    /// `plugin`'s hooks are answered under a policy in which `fails_open(hook)` or not — at its
    /// launch ([`Ledger::relaunched`]), or while none of its incarnations runs (quarantined,
    /// held, restarting) once a SIGHUP'd policy is in force: a hook failing closed now lets
    /// nothing through any more, and its run ends — a `fail_closed` record if calls were let
    /// through not yet counted, whatever the interval.
    pub fn policy_changed(
        &mut self,
        plugin: &str,
        fails_open: impl Fn(&str) -> bool,
    ) -> Vec<Record> {
        self.end(|p, h| p == plugin && !fails_open(h), "fail_closed")
    }

    /// `plugin` is gone (or every plugin, `None`, when the daemon stops): one record per hook
    /// with calls let through not yet counted, whatever the interval — nothing is left to fold
    /// them into.
    pub fn gone(&mut self, plugin: Option<&str>, why: Gone) -> Vec<Record> {
        let outcome = match why {
            Gone::Unloaded => "unloaded",
            Gone::Stopped => "stopped",
        };
        self.end(|p, _| plugin.is_none_or(|n| n == p), outcome)
    }

    /// The runs of the keys `which(plugin, hook)` picks end: forgotten, each with calls let
    /// through not yet counted said in an `outcome` record.
    fn end(&mut self, which: impl Fn(&str, &str) -> bool, outcome: &str) -> Vec<Record> {
        let keys: Vec<(String, String)> = self
            .keys
            .keys()
            .filter(|(p, h)| which(p, h))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in keys {
            let Some(k) = self.keys.remove(&key) else {
                continue;
            };
            if k.uncounted > 0 {
                out.push(record(
                    &key.0,
                    outcome,
                    json!({"hook": key.1, "bypassed_calls": k.uncounted,
                           "failing_open": k.failing.is_some()}),
                ));
            }
        }
        out
    }
}

fn record(plugin: &str, outcome: &str, detail: Value) -> Record {
    let mut r = Record::new(Event::Bypass, outcome);
    r.plugin = Some(plugin.to_string());
    r.detail = detail;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_run_is_one_record_begun_and_one_counted() {
        let mut l = Ledger::default();
        let t = Instant::now();
        let r = l
            .bypassed("a", "on:x", ("timeout", "t"), "hook_invoke", t)
            .unwrap();
        assert_eq!(r.outcome, "failing_open");
        assert_eq!(r.detail["reason"], "timeout");
        assert_eq!(r.detail["method"], "hook_invoke");
        for i in 1..5u32 {
            assert!(l
                .bypassed(
                    "a",
                    "on:x",
                    ("timeout", "t"),
                    "hook_invoke",
                    t + INTERVAL * i
                )
                .is_none());
        }
        let r = l.answered("a", "on:x", t + INTERVAL * 6).unwrap();
        assert_eq!(r.outcome, "answered");
        assert_eq!(r.detail["bypassed_calls"], 5);
        // Answers after that are not records.
        assert!(l.answered("a", "on:x", t + INTERVAL * 7).is_none());
        assert!(l.gone(None, Gone::Stopped).is_empty());
    }

    #[test]
    fn a_flapping_hook_is_at_most_one_record_per_interval_its_counts_folded() {
        let mut l = Ledger::default();
        let t = Instant::now();
        let ms = Duration::from_millis(1);
        let mut recs = 0;
        for i in 0..100u32 {
            recs += usize::from(
                l.bypassed("a", "h", ("timeout", "t"), "m", t + ms * (2 * i))
                    .is_some(),
            );
            recs += usize::from(l.answered("a", "h", t + ms * (2 * i + 1)).is_some());
        }
        assert_eq!(recs, 1, "only the first bypass within the interval");
        let r = l.gone(Some("a"), Gone::Unloaded);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome, "unloaded");
        assert_eq!(r[0].detail["bypassed_calls"], 100);
        // Another plugin's key is its own.
        assert!(l.bypassed("b", "h", ("timeout", "t"), "m", t).is_some());
    }

    /// review-147: a hook the relaunched version no longer declares ends its run as `unloaded`
    /// (gone with the version that had it), whatever its failure mode now — never `fail_closed`,
    /// nor left failing open for the plugin's unload.
    #[test]
    fn a_hook_an_update_drops_ends_its_run_as_unloaded() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert!(l.bypassed("a", "h", ("timeout", "t"), "m", t).is_some());
        assert!(l.bypassed("a", "g", ("timeout", "t"), "m", t).is_some());
        let r = l.relaunched("a", |hook| hook == "g", |_| true);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].outcome, "unloaded");
        assert_eq!(r[0].detail["hook"], "h");
        assert_eq!(r[0].detail["bypassed_calls"], 1);
        let r = l.relaunched("a", |_| false, |_| false);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].outcome.as_str(), &r[0].detail["hook"]),
            ("unloaded", &json!("g"))
        );
        assert!(l.gone(None, Gone::Stopped).is_empty());
    }

    /// review-147: a policy change for a plugin with no incarnation running ends the runs of
    /// its hooks failing closed now, and only those, and only that plugin's.
    #[test]
    fn a_policy_change_ends_the_runs_of_the_hooks_it_makes_fail_closed() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert!(l.bypassed("a", "h", ("unavailable", "t"), "m", t).is_some());
        assert!(l.bypassed("a", "g", ("unavailable", "t"), "m", t).is_some());
        assert!(l.bypassed("b", "h", ("unavailable", "t"), "m", t).is_some());
        let r = l.policy_changed("a", |hook| hook == "g");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].outcome.as_str(), &r[0].detail["hook"]),
            ("fail_closed", &json!("h"))
        );
        assert!(l.policy_changed("a", |hook| hook == "g").is_empty());
        let r = l.gone(None, Gone::Stopped);
        assert_eq!(r.len(), 2, "a's g and b's h go on: {r:?}");
    }

    /// A hook relaunched failing closed ends its run: counted now, not marked failing open
    /// until the plugin answers, and a later fail-open run is a new one, recorded as begun.
    #[test]
    fn a_hook_relaunched_failing_closed_ends_its_failing_run() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert!(l.bypassed("a", "h", ("timeout", "t"), "m", t).is_some());
        assert!(l.bypassed("a", "g", ("timeout", "t"), "m", t).is_some());
        assert!(l.bypassed("a", "h", ("timeout", "t"), "m", t).is_none());
        let r = l.relaunched("a", |_| true, |hook| hook == "g");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].outcome, "fail_closed");
        assert_eq!(r[0].detail["hook"], "h");
        assert_eq!(r[0].detail["bypassed_calls"], 2);
        // Fail-open again later: a new run, begun with its own record.
        let r = l
            .bypassed("a", "h", ("timeout", "t"), "m", t + INTERVAL)
            .expect("a new failing run");
        assert_eq!(r.outcome, "failing_open");
        assert_eq!(r.detail["bypassed_calls"], 1);
        // `g` still fails open: its run goes on, counted at the end.
        let r = l.gone(Some("a"), Gone::Unloaded);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r.iter().all(|r| r.detail["failing_open"] == true), "{r:?}");
    }
}
