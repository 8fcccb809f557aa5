//! The store's changes reaching a running `serve`: `stockade remove NAME` unloads the plugin
//! the daemon loaded under that name, and `stockade install`/`update` of another package of it
//! relaunches it on that package, verified and admitted as a load is.
//!
//! **How the daemon notices.** The periodic trust check (`[health] trust_check_interval_ms`,
//! [`Daemon::check_trust_now`]) and SIGHUP ([`Daemon::recheck_loaded`]) also look at the store
//! ([`Daemon::check_store_now`]): the registry is read as every name's lookup reads it
//! ([`crate::store::read_registry`]: the store directory held without following a symlink, the
//! registry the store owner's, root's or this user's — in the packaged layout the daemon's user
//! only reads root's store), and only when its file changed (a new inode, size or times:
//! [`crate::store::registry_stamp`]) or the loaded plugins did. Each plugin the daemon took from
//! the store (by its name, or as an installed dependency; [`Entry::from_store`]) is compared
//! by name and package digest with the registry's entry for it. A package file loaded by its path
//! is the operator's file and is left alone. A registry that cannot be read changes nothing
//! (it is logged once, and once more when it can be read again): an unreadable store is no
//! removal of everything.
//!
//! **Removed.** The plugin is stopped as `plugin_unload` stops it (graceful stop, the in-flight
//! calls answered `unavailable`) and unloaded; a `removal` audit record (`outcome`
//! `unloaded`, `detail.reason` `removed`), a log line, and its `unloaded` notification says
//! `reason.kind` `removed`. Its dependants decide as they decide for `plugin_unload` without
//! `force`: a plugin a loaded plugin depends on — one that is not removed too — is **kept**
//! loaded and running until they are unloaded (then it goes at the next check), with
//! `plugin_status.store_change` saying so and one log line, to the daemon's log and to the
//! agents. The daemon never takes a running plugin's dependency away on its own account (its
//! dependant would lose it under its feet, which only an agent's `force` does), nor stops a
//! plugin nobody removed. A removal of both (`stockade remove app lib`) unloads both.
//!
//! **Updated.** The registry names another package for the plugin. The updates one check finds
//! are judged as a set ([`Daemon::try_updates`]). Each package is verified as a load verifies
//! it — the stored package, read through the store as `plugin_load NAME` reads it, under the
//! daemon's own trust configuration and mode, a `verification` record written — and the
//! operator's policy must admit it ([`crate::plugin_policy::decide`]); those refusals are each
//! package's own. Then the dependencies of the packages that passed are judged together, as
//! `stockade install` judges the packages of one install
//! ([`stockade_policy::deps::plan_updates`] over the loaded plugins, each updated one replaced
//! by its new version, and one whose update an earlier check admitted and that waits for its
//! relaunch in that update's version, the one about to run): a pair that only fits together (`lib` 2 breaking the running `app` 1,
//! `app` 2 needing `lib` 2) is admitted together. A set that does not fit is cut down one
//! package at a time — the one the refusal is about: the new version that breaks a loaded
//! plugin which is not updated, the last update on the chain of an unmet requirement — and the
//! rest judged again; each package taken out is refused with its reason and the other updates
//! it was judged with named. An admitted update's running incarnation is stopped as
//! `plugin_restart` stops it (in-flight calls answered `unavailable`, the warm spare dropped)
//! and the new package launched by the relaunch that follows ([`Daemon::take_update`]): a
//! `restart` record with `reason` `"update"` and `from_version`. A quarantined or restarting
//! plugin is launched on it at once (a new package is a new start: crash count and recorded
//! quarantine cleared at that launch; a quarantined plugin whose update does not fit then goes
//! back to its quarantine, [`Daemon::update_unfit`]).
//!
//! **Relaunch order.** The updates admitted together are stopped together, and each relaunch
//! waits ([`Daemon::update_waits`]) where the versions matter: a new version whose requirement
//! the loaded version of a dependency does not meet is launched only once that dependency's
//! relaunch took its own update (dependencies first), and a new version that a dependant's
//! running incarnation does not accept is launched only once that incarnation ended (it is
//! stopping for its own update). So a dependant never runs at the same time as a version of
//! its dependency it does not accept: `app` 1 has ended before `lib` 2 starts, `lib` 2 has
//! started before `app` 2 does. The wait lasts no longer than the other's stop (at most the
//! shutdown grace). At the relaunch itself the new version is checked again against what is
//! loaded then ([`Daemon::update_fits`], [`stockade_policy::deps::check_launch`]): the
//! dependency's update admitted with it may not have happened after all (the registry went
//! back to the loaded package, the dependency was unloaded), or a dependant's update been
//! withdrawn. It does not fit: the update is refused as at a check (`store_change`, a `denial`
//! record, judged again at the next check) and the loaded package — still there: the update
//! had not taken its place — relaunched instead (`restart` record `reason`
//! `"update_refused"`). Any relaunch on the loaded package — no update to take: none
//! admitted, withdrawn (the registry back to the loaded package), or refused just then — is
//! checked the same way ([`Daemon::loaded_fits`]): a dependant whose own update was withdrawn
//! while it waited on a second dependency, after the first had been relaunched on its new
//! version, does not accept that version. It is not launched beside it but held stopped
//! ([`Phase::Held`], [`Daemon::hold_unfit`]: `plugin_status.held`, a `denial` record), and
//! launched again once it fits (a `restart` record `reason` `"dependencies_fit"`) or an update
//! admitted for it runs. A dependency whose relaunch was refused by the trust check, or that
//! was quarantined, still counts in its loaded version (its update took the package's place),
//! as a quarantined dependency of a running plugin does. A plugin whose *loaded* package the
//! trust check refuses while its update waits for the relaunch (its signer revoked meanwhile)
//! is relaunched on that update rather than quarantined (`trust_quarantine`): the refusal is
//! the old package's, and the relaunch checks the new one (`update_fits`, verified again).
//! Quarantined with the update kept, the update never ran: only a relaunch takes it, the
//! check skips an update admitted already, and `plugin_restart` judged the revoked package.
//! An agent's `plugin_restart` finding that refusal is so not refused: it answers with the
//! update the relaunch takes.
//!
//! **Refused.** The loaded version runs on, untouched: a `denial` record (`detail.request`
//! `"update"`), one log line and `plugin_status.store_change` with the refusal's kind, exit
//! and message; that package is not tried again until the registry names another one or
//! SIGHUP. A refusal of exit 75 (a held lock) is tried again at the next check, one for the
//! node's license or trust configuration too, which cannot be used: read again first, as a
//! load reads them, it admits nothing then. A refusal for the dependencies is judged again
//! once what it was judged under changed ([`Under`]): the loaded plugins (a dependency
//! relaunched on its own update, a plugin loaded or unloaded) or the store's other pending
//! updates (another package installed for a loaded plugin), and whenever another update is
//! tried in the check (one refused for the moment may be the one it needs). A refusal tried
//! again for the same reason (package, kind, words) is said once. A plugin still in its first
//! launch is updated once it is ready.

use super::*;

/// A new version admitted by the store check, waiting for the relaunch that runs it.
pub(crate) struct Update {
    pkg: VerifiedPackage,
    /// The plugin was quarantined (a crash loop, or its loaded package refused by the trust
    /// check) when the update was to run: should the update not fit at the relaunch
    /// ([`Daemon::update_unfit`]), it goes back to that quarantine instead of the loaded
    /// package being launched again.
    pub(super) quarantined: bool,
}

impl Update {
    /// The new version.
    pub(super) fn version(&self) -> String {
        self.pkg.manifest.version().to_string()
    }
}

/// A change of the store not applied to a loaded plugin (`plugin_status.store_change`).
#[derive(Debug, Clone)]
pub(crate) struct StoreChange {
    /// `removed` (kept: loaded plugins depend on it) or `update` (refused).
    change: &'static str,
    /// The registry's package for it (`update`), which is not tried again until another.
    package_sha256: Option<String>,
    version: Option<String>,
    kind: Option<&'static str>,
    exit: Option<u8>,
    /// What happened to the package (`update`: up to the refusal; [`StoreChange::to_json`]
    /// adds what became of the version loaded).
    message: String,
    /// An update refused: the version loaded (`"{name} {version}"`), which runs on — or is
    /// held, or stays quarantined: said as it is when the message is read.
    loaded: Option<String>,
    /// The refusal itself (`Refused::message`), without what the message adds around it (the
    /// updates it was judged with, what runs meanwhile): what "the same refusal" compares.
    reason: String,
    /// Tried again at the next check although the registry did not change: a refusal of the
    /// moment (a lock held: 75) or of the node's configuration (its license or trust
    /// configuration cannot be used), which says nothing about the package.
    again: bool,
    /// A refusal for the dependencies (stage `dependencies`): what it was judged under, tried
    /// again once that changed.
    under: Option<Under>,
}

/// Why a plugin is held stopped ([`Phase::Held`], `plugin_status.held`): its loaded package,
/// to be relaunched, does not fit the versions of the other plugins loaded now
/// ([`Daemon::hold_unfit`]). The refusal as the CLI names it (`store.dependency`,
/// `store.breaks_dependent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    kind: &'static str,
    exit: u8,
    message: String,
}

impl Held {
    pub(crate) fn to_json(&self) -> Value {
        json!({"kind": self.kind, "exit": self.exit, "message": self.message})
    }
}

/// What an update refused for its dependencies was judged under: the loaded set (names and
/// packages) and the store's other packages for loaded plugins (the updates pending, names and
/// packages). Either changed — a plugin relaunched on its own update, loaded or unloaded,
/// another package installed for a loaded plugin — the refusal may not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Under {
    loaded: Vec<(String, String)>,
    pending: Vec<(String, String)>,
}

impl StoreChange {
    /// `plugin_status.store_change` of a plugin in `phase`.
    pub(crate) fn to_json(&self, phase: Phase) -> Value {
        json!({"change": self.change, "version": self.version, "kind": self.kind,
               "exit": self.exit, "message": self.said(phase)})
    }

    /// The message, for a plugin in `phase`: an update refused says what the version loaded
    /// does then — it runs on, or it is held, stays quarantined or is being unloaded (said
    /// "runs on" whatever it did, helper-121/review-124: a held plugin's status said it ran).
    fn said(&self, phase: Phase) -> String {
        let Some(loaded) = &self.loaded else {
            return self.message.clone();
        };
        let then = match phase {
            Phase::Held => "is held stopped (plugin_status.held)",
            Phase::Quarantined => "stays quarantined",
            // `plugin_unload` (or a removal) stopping it: it does not run on (review-129).
            Phase::Unloading => "is being unloaded",
            _ => "runs on",
        };
        format!("{}; {loaded} {then}", self.message)
    }

    /// Whether the refusal is of the moment (a lock held: 75) or of the node's configuration,
    /// tried again at the next check.
    fn passing(&self) -> bool {
        self.again || self.exit == Some(crate::exit::Exit::TempFail.code())
    }

    /// Whether the refusal of the registry's package still holds with `under` the loaded set
    /// and pending updates: it is not tried again (`forced` aside) unless it passes or was
    /// for its dependencies judged under others.
    fn still_holds(&self, sha: &str, under: &Under) -> bool {
        self.package_sha256.as_deref() == Some(sha)
            && !self.passing()
            && self.under.as_ref().is_none_or(|u| u == under)
    }

    /// The same refusal as `other` (package, kind, the refusal's own words): said once, not
    /// at every check. Not the whole message: a check names the other updates it judged the
    /// package with, a relaunch refusing it (`update_fits`) none — compared whole, one refusal
    /// was said (recorded, logged, told) once by each.
    fn same_as(&self, other: &StoreChange) -> bool {
        self.change == other.change
            && self.package_sha256 == other.package_sha256
            && self.kind == other.kind
            && self.reason == other.reason
    }
}

/// Why an update was refused: the stage (`license`, `trust`, `verification`, `dependencies`,
/// `policy`, `store`, `audit`) and the CLI error it is.
struct Refused {
    stage: &'static str,
    kind: &'static str,
    exit: u8,
    message: String,
    /// The other updates of the check it was judged with (for its dependencies), named by
    /// the message after the refusal.
    judged_with: Vec<String>,
}

impl Refused {
    fn of(stage: &'static str, e: &crate::error::CmdError) -> Self {
        Self {
            stage,
            kind: e.kind(),
            exit: e.exit().code(),
            message: e.chain().join(": "),
            judged_with: Vec::new(),
        }
    }

    /// The node's license or trust configuration cannot be used now (`stage` `license` or
    /// `trust`): nothing is admitted, as a load admits nothing then.
    fn configuration(stage: &'static str, r: &TrustRefusal) -> Self {
        Self {
            stage,
            kind: r.kind,
            exit: r.exit,
            message: r.message.clone(),
            judged_with: Vec::new(),
        }
    }
}

/// What the store check last looked at: the registry file's stamp and the loaded plugins (name
/// and package; those being unloaded too, until gone). Equal, nothing can have changed for it.
pub(crate) type StoreSeen = (Option<[i64; 6]>, Vec<(String, String)>);

impl Daemon {
    /// The store check (module doc): at the periodic trust check and at SIGHUP (`forced`: the
    /// registry read whatever its stamp, refused updates tried again).
    pub(crate) fn check_store_now(&mut self, now: Instant, forced: bool) {
        if self.stopping
            || !self
                .plugins
                .values()
                .any(|e| e.from_store && e.phase != Phase::Unloading)
        {
            self.store_seen = None;
            return;
        }
        let state_dir = self.cfg.trust.state_dir.clone();
        // Every plugin there, those being unloaded too: the updates are judged against them
        // (`try_updates`, `loaded_nodes`) until they are gone, so a refusal for one of them is
        // keyed to a set that changes when it is gone. Left out, the set did not change then:
        // the check did not run again and the refusal held until SIGHUP or another install.
        let loaded: Vec<(String, String)> = self
            .plugins
            .iter()
            .map(|(n, e)| (n.clone(), e.pkg.report.package_sha256.clone()))
            .collect();
        let read = crate::store::registry_stamp(&state_dir).and_then(|stamp| {
            let seen = (stamp, loaded);
            if !forced && self.store_seen.as_ref() == Some(&seen) {
                return Ok(None);
            }
            crate::store::read_registry(&state_dir).map(|r| Some((seen, r)))
        });
        let (seen, registry) = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let msg = crate::cmd::store::store_err(e).chain().join(": ");
                if self.store_check_said.as_ref() != Some(&msg) {
                    log_line(&format!(
                        "store check: the store cannot be read ({}); loaded plugins are left as \
                         they are until it can",
                        term(&msg)
                    ));
                    self.store_check_said = Some(msg);
                }
                return;
            }
        };
        if self.store_check_said.take().is_some() {
            log_line("store check: the store can be read again");
        }
        self.store_seen = Some(seen.clone());
        let mut passing = false;
        let from_store: Vec<String> = self
            .plugins
            .iter()
            .filter(|(_, e)| e.from_store && e.phase != Phase::Unloading)
            .map(|(n, _)| n.clone())
            .collect();
        // Removed: unloaded, unless a loaded plugin that is not removed too depends on it (its
        // dependency is not taken away under it). A plugin kept so keeps its own dependencies.
        let removed: BTreeSet<String> = from_store
            .iter()
            .filter(|n| !registry.plugins.contains_key(*n))
            .cloned()
            .collect();
        let mut unload = removed.clone();
        loop {
            let kept: Vec<String> = unload
                .iter()
                .filter(|n| {
                    self.loaded_dependents(n)
                        .iter()
                        .any(|d| !unload.contains(d))
                })
                .cloned()
                .collect();
            if kept.is_empty() {
                break;
            }
            for k in kept {
                unload.remove(&k);
            }
        }
        for name in &removed {
            if unload.contains(name) {
                self.unload_removed(name, now);
            } else {
                self.keep_removed(name);
            }
        }
        // Updated: another package named for it. The updates of one check are judged as a
        // set (`try_updates`); what they are judged under keys a refusal for dependencies.
        let under = Under {
            loaded: seen.1.clone(),
            pending: from_store
                .iter()
                .filter(|n| !removed.contains(*n))
                .filter_map(|n| {
                    let sha = &registry.plugins[n].package_sha256;
                    (*sha != self.plugins[n].pkg.report.package_sha256)
                        .then(|| (n.clone(), sha.clone()))
                })
                .collect(),
        };
        let mut tried = Vec::new();
        let mut held_for_dependencies = Vec::new();
        for name in from_store.iter().filter(|n| !removed.contains(*n)) {
            let installed = &registry.plugins[name];
            let e = &self.plugins[name];
            // Unloaded or quarantined for a new trust configuration by an update tried before
            // it in this check (`admit_update` applies a configuration that changed): an
            // unloading plugin is not relaunched.
            if e.phase == Phase::Unloading {
                continue;
            }
            let sha = &installed.package_sha256;
            if *sha == e.pkg.report.package_sha256 {
                // Its own package (again): nothing to do, nothing held.
                if self.withdraw_update(name) {
                    log_line(&format!(
                        "store check: plugin {}: the update waiting for its relaunch is \
                         no longer installed; it runs on as loaded",
                        term(name)
                    ));
                }
                let e = self.plugins.get_mut(name).expect("present");
                e.store_change = None;
                continue;
            }
            if e.update.as_ref().map(|u| &u.pkg.report.package_sha256) == Some(sha) {
                continue; // admitted already, waiting for its relaunch
            }
            // Another package installed over the update waiting for its relaunch: that update
            // is no longer installed, and is dropped as when the registry goes back to the
            // loaded package (`withdraw_update`); the package named now is judged in its
            // place. Kept, it was run should that package be refused — a package the store no
            // longer holds, while the refusal said the loaded version ran on (review-129).
            if let Some(replaced) = e.update.as_ref().map(|u| u.version()) {
                self.withdraw_update(name);
                log_line(&format!(
                    "store check: plugin {}: the update waiting for its relaunch ({}) is no \
                     longer installed: another package was installed over it",
                    term(name),
                    term(&replaced)
                ));
            }
            let e = &self.plugins[name];
            if let Some(c) = &e.store_change {
                if !forced && c.still_holds(sha, &under) {
                    if c.under.is_some() {
                        held_for_dependencies.push((name.clone(), installed.clone()));
                    }
                    continue; // refused, not tried again until another package or SIGHUP
                }
            }
            // Its first launch has not come to a handshake yet: updated once it is ready.
            if !e.ever_ready {
                passing = true;
                continue;
            }
            tried.push((name.clone(), installed.clone()));
        }
        // A refusal for dependencies was judged with the updates tried then: one tried again
        // now (a refusal that passes) may be the one it needs, so it is judged with them again.
        if !tried.is_empty() {
            tried.extend(held_for_dependencies);
        }
        passing |= self.try_updates(tried, &under, now);
        // Something to try again at the next check although neither changed.
        if passing {
            self.store_seen = None;
        }
    }

    /// A removed plugin nothing loaded depends on (or only removed ones): stopped and unloaded
    /// as `plugin_unload` does it, its `unloaded` saying `reason.kind` `removed`.
    fn unload_removed(&mut self, name: &str, now: Instant) {
        let e = self.plugins.get_mut(name).expect("present");
        let version = e.pkg.manifest.version().to_string();
        let message = format!(
            "`{name}` {version} was removed from the store ({}); unloaded",
            self.cfg.trust.state_dir.display()
        );
        e.phase = Phase::Unloading;
        e.update = None;
        e.store_change = None;
        e.unload_reason = Some(json!({"kind": "removed", "message": message}));
        if let Some(slot) = e.slot {
            self.sup.shutdown(slot, now);
        }
        let mut rec = e.audit.clone();
        rec.event = Event::Removal;
        rec.outcome = "unloaded".into();
        rec.set_detail(json!({"request": "store_check", "reason": "removed"}));
        self.audit(rec);
        log_line(&format!(
            "store check: plugin {} {}: removed from the store; unloading it",
            term(name),
            term(&version)
        ));
    }

    /// A removed plugin a loaded plugin depends on: kept, said once (log and agents).
    fn keep_removed(&mut self, name: &str) {
        let dependents = self.loaded_dependents(name);
        let message = format!(
            "`{name}` was removed from the store but is kept loaded while {} depend(s) on it; \
             it is unloaded once they are (plugin_unload them, or remove them too)",
            dependents.join(", ")
        );
        self.withdraw_update(name);
        let e = self.plugins.get_mut(name).expect("present");
        if e.store_change
            .as_ref()
            .is_some_and(|c| c.message == message)
        {
            return;
        }
        e.store_change = Some(StoreChange {
            change: "removed",
            package_sha256: None,
            version: None,
            kind: None,
            exit: None,
            message: message.clone(),
            loaded: None,
            reason: message.clone(),
            again: false,
            under: None,
        });
        log_line(&format!(
            "store check: plugin {}: {}",
            term(name),
            term(&message)
        ));
        self.tell_agents(name, "warn", &message);
    }

    /// A runtime `log` notification about plugin `name` to every agent.
    fn tell_agents(&mut self, name: &str, level: &str, message: &str) {
        let n = stockade_policy::protocol::message::notification(
            "log",
            json!({"plugin": name, "level": level, "source": "runtime", "message": message}),
        );
        self.sup.to_agent.push(n);
    }

    /// The store names another package than the one loaded for each of `tried` (name and the
    /// registry's entry): each verified, audited and checked against the policy on its own,
    /// then the dependencies of those that passed judged together
    /// ([`stockade_policy::deps::plan_updates`] over the loaded plugins, each replaced by its
    /// candidate), and the admitted ones run by a relaunch; refused, the loaded version runs
    /// on and the refusal is kept. Whether a refusal is to be tried again at the next check.
    fn try_updates(
        &mut self,
        tried: Vec<(String, crate::store::Installed)>,
        under: &Under,
        now: Instant,
    ) -> bool {
        let mut passing = false;
        let mut verified = Vec::new();
        for (name, installed) in tried {
            // Unloaded for a new trust configuration by an update verified before it.
            if self
                .plugins
                .get(&name)
                .is_none_or(|e| e.phase == Phase::Unloading)
            {
                continue;
            }
            match self.admit_update(&name, now) {
                Ok(Some(pkg)) => verified.push((name, installed, pkg)),
                Ok(None) => {} // removed meanwhile: the next check unloads it
                Err(r) => {
                    passing |= self
                        .refuse_update(
                            &name,
                            installed.package_sha256,
                            installed.version,
                            r,
                            Some(under),
                            None,
                        )
                        .passing()
                }
            }
        }
        verified.retain(|(n, _, _)| {
            self.plugins
                .get(n)
                .is_some_and(|e| e.phase != Phase::Unloading)
        });
        let nodes: Vec<_> = verified
            .iter()
            .map(|(_, _, p)| p.manifest.dep_node())
            .collect();
        // What runs: the loaded plugins, each with an update admitted at an earlier check and
        // still waiting for its relaunch in that update's version — the one about to run
        // (`update_waits` orders the relaunches; `update_fits` checks each again should that
        // update not happen after all). Judged against the version being replaced, an update
        // fitting only the new one was refused and run at a later check, and one fitting only
        // the old one admitted, to be refused at its relaunch.
        let mut running = self.loaded_nodes(|_| false);
        for (n, node) in running.iter_mut() {
            if let Some(up) = self.plugins.get(n).and_then(|e| e.update.as_ref()) {
                let mut new = up.pkg.manifest.dep_node();
                new.requires.retain(|dep, _| self.plugins.contains_key(dep));
                *node = new;
            }
        }
        let plan = stockade_policy::deps::plan_updates(&running, &nodes);
        let mut verified: BTreeMap<String, (crate::store::Installed, VerifiedPackage)> =
            verified.into_iter().map(|(n, i, p)| (n, (i, p))).collect();
        let labels: BTreeMap<String, String> = verified
            .iter()
            .map(|(n, (_, p))| (n.clone(), format!("{n} {}", p.manifest.version())))
            .collect();
        for (name, err) in plan.refused {
            let Some((installed, _)) = verified.remove(&name) else {
                continue;
            };
            let mut r = Refused::of("dependencies", &crate::cmd::store::dep_err(err));
            r.judged_with = labels
                .iter()
                .filter(|(n, _)| **n != name)
                .map(|(_, l)| l.clone())
                .collect();
            passing |= self
                .refuse_update(
                    &name,
                    installed.package_sha256,
                    installed.version,
                    r,
                    Some(under),
                    None,
                )
                .passing();
        }
        // Dependencies first: the relaunches themselves are ordered as they come
        // (`update_waits`).
        for name in plan.order {
            if let Some((_, pkg)) = verified.remove(&name) {
                self.run_update(&name, pkg, now);
            }
        }
        passing
    }

    /// Update `installed` of `name` refused for `r`: the loaded version runs on, the refusal
    /// kept (`plugin_status.store_change`), audited, logged and told the agents once. `then`:
    /// the phase the plugin is about to be in, when not the one it is in (refused at a
    /// relaunch: held, or back to its quarantine), for the words of the log and notification.
    fn refuse_update(
        &mut self,
        name: &str,
        sha: String,
        version: String,
        r: Refused,
        under: Option<&Under>,
        then: Option<Phase>,
    ) -> StoreChange {
        let old = self.plugins[name].pkg.manifest.version().to_string();
        let error = if r.judged_with.is_empty() {
            r.message.clone()
        } else {
            format!(
                "{} (judged together with the other updates of this check: {})",
                r.message,
                r.judged_with.join(", ")
            )
        };
        let change = StoreChange {
            again: matches!(r.stage, "license" | "trust"),
            under: under.filter(|_| r.stage == "dependencies").cloned(),
            change: "update",
            package_sha256: Some(sha),
            version: Some(version.clone()),
            kind: Some(r.kind),
            exit: Some(r.exit),
            message: format!(
                "{} {} installed in the store is not run ({} refused it: {error})",
                name, version, r.stage
            ),
            loaded: Some(format!("{name} {old}")),
            reason: r.message.clone(),
        };
        // Said as what becomes of the version loaded: the phase it is in, or — refused at a
        // relaunch (`update_unfit`) — the one that relaunch leads to.
        let phase = match then {
            Some(phase) => phase,
            None => self.plugins[name].phase,
        };
        let said = change.said(phase);
        let e = self.plugins.get_mut(name).expect("present");
        // Tried again (a passing refusal, another loaded set, SIGHUP) and refused for the same
        // reason: said once — one record, one log line —, not at every check.
        if e.store_change.as_ref().is_some_and(|c| c.same_as(&change)) {
            e.store_change = Some(change.clone());
            return change;
        }
        let mut rec = e.audit.clone();
        rec.event = Event::Denial;
        rec.outcome = "refused".into();
        rec.set_detail(
            json!({"request": "update", "stage": r.stage, "kind": r.kind,
                            "version": version, "error": error}),
        );
        e.store_change = Some(change.clone());
        self.audit(rec);
        log_line(&format!(
            "store check: plugin {}: {}",
            term(name),
            term(&said)
        ));
        self.tell_agents(name, "warn", &said);
        change
    }

    /// Admitted update `pkg` of `name`: the running incarnation stopped as `plugin_restart`
    /// stops it, the new package run by the relaunch that follows ([`Self::take_update`]).
    fn run_update(&mut self, name: &str, pkg: VerifiedPackage, now: Instant) {
        let old = self.plugins[name].pkg.manifest.version().to_string();
        let new = pkg.manifest.version().to_string();
        let message =
            format!("{name} {new} installed in the store; relaunching {name} {old} on it");
        log_line(&format!(
            "store check: plugin {}: {}",
            term(name),
            term(&message)
        ));
        self.tell_agents(name, "info", &message);
        let e = self.plugins.get_mut(name).expect("present");
        let quarantined = e.phase == Phase::Quarantined;
        e.update = Some(Update { pkg, quarantined });
        e.store_change = None;
        e.relaunch_for = Some("update");
        match (e.phase, e.slot) {
            (Phase::Running | Phase::Relaunch, Some(slot)) => {
                e.phase = Phase::Relaunch;
                self.sup.shutdown(slot, now);
            }
            // Quarantined: a new package is a new start, its launch lifts the quarantine (the
            // crash count and the record of the old package are dropped by the relaunch,
            // `take_update`; kept until then, they are still the old package's should the
            // update not fit at the relaunch: `update_unfit` puts the plugin back).
            _ => e.phase = Phase::Restarting(now),
        }
    }

    /// The stored package of loaded plugin `name`, verified for a load under the daemon's trust
    /// configuration (audited as a load's verification), and the policy checked. `None`: it is
    /// not installed any longer.
    fn admit_update(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Result<Option<VerifiedPackage>, Refused> {
        // The license and trust configuration read again, as a load reads them: one that
        // cannot be used admits nothing. Verified under the license in force instead, the
        // update was admitted, the running version stopped, and its relaunch refused for that
        // license (`recheck`): the plugin was left stopped.
        self.reread_configuration(now)
            .map_err(|(stage, r)| Refused::configuration(stage, &r))?;
        let used = crate::store::with_installed(
            &self.cfg.trust.state_dir,
            name,
            |p| self.verify_package(p),
            VerifyError::is_not_found,
        )
        .map_err(|e| Refused::of("store", &crate::cmd::store::store_err(e)))?;
        let Some((path, verified)) = used else {
            return Ok(None);
        };
        let pkg = match verified {
            Ok(pkg) => pkg,
            Err(v) => {
                self.audit(Self::verification_refused_record(&path, &v));
                return Err(Refused {
                    stage: "verification",
                    kind: v.kind(),
                    exit: v.exit().code(),
                    message: crate::package::verify::error_chain(&v),
                    judged_with: Vec::new(),
                });
            }
        };
        audit::append_or_fail(
            &self.cfg.audit,
            self.for_agent(audit::for_report(Event::Verification, "ok", &pkg.report)),
        )
        .map_err(|e| Refused::of("audit", &e))?;
        if pkg.manifest.name() != name {
            return Err(Refused {
                stage: "store",
                kind: "store.corrupt",
                exit: crate::exit::Exit::StoreCorrupt.code(),
                message: format!(
                    "the store's package for `{name}` is named `{}`",
                    pkg.manifest.name()
                ),
                judged_with: Vec::new(),
            });
        }
        // Its dependencies are judged with the other updates of the check (`try_updates`).
        crate::plugin_policy::decide(
            &self.cfg.policy,
            pkg.view(),
            &self.cfg.policy_root,
            self.cfg.allow_flags.as_ref(),
            unix_now(),
        )
        .map_err(|e| Refused::of("policy", &e))?;
        // The plugin's own uid must be able to read what was verified (as at a load).
        std::fs::set_permissions(pkg.dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(
            |e| Refused {
                stage: "store",
                kind: "store.io",
                exit: crate::exit::Exit::IoErr.code(),
                message: format!("cannot prepare the package: {e}"),
                judged_with: Vec::new(),
            },
        )?;
        Ok(Some(pkg))
    }

    /// Whether the relaunch of `name` onto the update admitted for it waits for another
    /// plugin's (module doc, "Relaunch order"): for a dependency its new version does not
    /// accept in the version loaded, until that one's relaunch took its own update; for a
    /// dependant whose running incarnation does not accept the new version, until that
    /// incarnation ended (it is stopping for its own update). Neither waits for long: the
    /// updates were admitted together, so each stop was begun, and the new versions have no
    /// loop (`plan_updates`), nor does a plugin without a process wait on its dependant. A
    /// quarantined or unloading plugin is not waited for: its update is not taken by itself
    /// (one whose loaded package the trust check refused is not left quarantined with an
    /// update: it is relaunched on it, `trust_quarantine`, and waited for as any).
    pub(super) fn update_waits(&self, name: &str) -> bool {
        let Some(up) = self.plugins.get(name).and_then(|e| e.update.as_ref()) else {
            return false;
        };
        let new = up.pkg.manifest.dep_node();
        self.plugins
            .iter()
            // A quarantined plugin's update is not taken until an agent restarts it (the trust
            // check quarantined it after the admission): waited for, the dependant stayed
            // `stopped` for ever. Not waited for, the relaunch checks what is loaded
            // (`update_fits`: the old version relaunched when the new one does not fit).
            .filter(|(n, e)| {
                *n != name
                    && !matches!(e.phase, Phase::Unloading | Phase::Quarantined)
                    && e.update.is_some()
            })
            .any(|(n, e)| {
                let dependency = new
                    .requires
                    .get(n)
                    .is_some_and(|req| !req.matches(e.pkg.manifest.version()));
                let dependant = e.slot.is_some()
                    && e.pkg
                        .manifest
                        .dep_node()
                        .requires
                        .get(name)
                        .is_some_and(|req| !req.matches(&new.version));
                dependency || dependant
            })
    }

    /// The other plugins as [`stockade_policy::deps::check_launch`] sees them at a relaunch of
    /// `name`: each in its loaded version (the dependencies), and each with what it needs of
    /// `name` (the dependants) — one that runs, in its running version; one stopped for its own
    /// update, in that update's (its own relaunch is checked in turn); one held or quarantined,
    /// in its loaded version. A plugin being unloaded is not there.
    fn launch_context(&self, name: &str) -> (BTreeMap<String, DepNode>, BTreeMap<String, DepNode>) {
        let others = || {
            self.plugins
                .iter()
                .filter(move |(n, e)| *n != name && e.phase != Phase::Unloading)
        };
        let dependencies = others()
            .map(|(n, e)| (n.clone(), e.pkg.manifest.dep_node()))
            .collect();
        let dependants = others()
            .map(|(n, e)| {
                let node = match (&e.update, e.slot) {
                    (Some(u), None) => u.pkg.manifest.dep_node(),
                    _ => e.pkg.manifest.dep_node(),
                };
                (n.clone(), node)
            })
            .collect();
        (dependencies, dependants)
    }

    /// At the relaunch onto the update admitted for `name`: whether its new version still fits
    /// what is loaded now ([`stockade_policy::deps::check_launch`]). The set was judged at the
    /// check, but a dependency's update may not have happened after all — the registry went
    /// back to its loaded package, its relaunch was refused, it was unloaded —, and a
    /// dependant's update withdrawn leaves its old version to run. Its requirements are met by
    /// the versions loaded (a dependency still waiting for its own relaunch accepted in the
    /// version loaded: `update_waits`), and no other plugin needs another version of it
    /// ([`Self::launch_context`]).
    pub(super) fn update_fits(&self, name: &str) -> Result<(), stockade_policy::deps::DepError> {
        let Some(up) = self.plugins.get(name).and_then(|e| e.update.as_ref()) else {
            return Ok(());
        };
        let (dependencies, dependants) = self.launch_context(name);
        stockade_policy::deps::check_launch(&dependencies, &dependants, &up.pkg.manifest.dep_node())
    }

    /// At a relaunch of `name` on its loaded package (no update to take: none admitted,
    /// withdrawn, or refused at this relaunch), and while it is held: whether that package
    /// still fits what is loaded now, as [`Self::update_fits`] asks of an update. Loaded
    /// together, its dependencies fitted it; since then one may have been relaunched on an
    /// update this plugin's own update was to follow — and that update was withdrawn (the
    /// registry back to the loaded package) or refused. A dependency that is not loaded any
    /// longer (an agent unloaded it by force) is not asked for: the plugin ran on without it,
    /// as it does at any restart. Nor is what a quarantined or held dependant needs of it: that
    /// one does not run, and is checked itself before it runs again (`plugin_restart`'s
    /// `dependencies_loaded`, this check) — counted, a crash restart of a plugin that ran was
    /// held for the needs of one loaded quarantined without looking (an earlier daemon's
    /// quarantine). Nor what the update of a dependant stopped for it needs: that version does
    /// not run yet, and its relaunch checks it against this plugin's loaded version
    /// (`update_fits`) — counted, this plugin was held (review-124) only until that update was
    /// refused for it, as it then is.
    pub(super) fn loaded_fits(&self, name: &str) -> Result<(), stockade_policy::deps::DepError> {
        let Some(e) = self.plugins.get(name) else {
            return Ok(());
        };
        let (dependencies, mut dependants) = self.launch_context(name);
        dependants.retain(|n, _| {
            self.plugins.get(n).is_some_and(|d| {
                let runs_later = matches!(d.phase, Phase::Quarantined | Phase::Held)
                    || (d.update.is_some() && d.slot.is_none());
                !runs_later
            })
        });
        let mut node = e.pkg.manifest.dep_node();
        node.requires
            .retain(|dep, _| dependencies.contains_key(dep));
        stockade_policy::deps::check_launch(&dependencies, &dependants, &node)
    }

    /// The loaded package of `name` does not fit what is loaded now (`loaded_fits`), at a
    /// relaunch: it is not launched beside a dependency version it does not accept, nor one a
    /// dependant does not accept, but held stopped ([`Phase::Held`]: no process, its calls
    /// answered `unavailable` as a stopped plugin's) — fail closed. Said as a refused update is
    /// (`plugin_status.held` with the refusal's kind, exit and message, a `denial` record with
    /// `detail.request` `"restart"` and `detail.stage` `dependencies`, a log line, a `log`
    /// notification) and as a state (`plugin_state` `held`, the status's `state`), once. Launched again as soon as it fits (`supervise_one` asks at every
    /// turn: a dependency relaunched on another version, unloaded), when an update admitted
    /// for it runs, or by `plugin_restart` once what it needs is loaded in fitting versions.
    pub(super) fn hold_unfit(&mut self, name: &str, err: stockade_policy::deps::DepError) {
        let r = Refused::of("dependencies", &crate::cmd::store::dep_err(err));
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        let version = e.pkg.manifest.version().to_string();
        let held = Held {
            kind: r.kind,
            exit: r.exit,
            message: format!(
                "{name} {version} is not relaunched ({}); it is held stopped until what it \
                 needs is loaded in fitting versions",
                r.message
            ),
        };
        e.phase = Phase::Held;
        e.relaunch_for = None;
        // The relaunch asked for ends here; the one that follows is the daemon's.
        e.restart_requested = None;
        // No incarnation is coming until it fits: the warm spare (an init, a uid, a cgroup)
        // goes now, as for a quarantine.
        let spare = e.spare.take();
        e.decision = None;
        let said = e.held.as_ref() == Some(&held);
        e.held = Some(held.clone());
        self.discard_spare(name, spare);
        if said {
            return;
        }
        let e = &self.plugins[name];
        let mut rec = e.audit.clone();
        rec.event = Event::Denial;
        rec.outcome = "refused".into();
        rec.set_detail(
            json!({"request": "restart", "stage": "dependencies", "kind": r.kind,
                            "version": version, "error": r.message}),
        );
        self.audit(rec);
        log_line(&format!("plugin {}: {}", term(name), term(&held.message)));
        self.tell_agents(name, "warn", &held.message);
        // Its state, as a quarantine is said: an agent following `plugin_state` saw the last
        // incarnation end and then nothing — it could not tell a plugin held from one about to
        // be relaunched. Its relaunch says `starting` and `ready` as any launch does.
        self.note_state(name, "held", json!({ "reason": held.to_json() }));
    }

    /// The update admitted for `name` no longer fits at its relaunch (`update_fits`): it is
    /// dropped — the loaded package, still there (`take_update` did not run), is relaunched
    /// instead —, refused as any update is (`plugin_status.store_change`, a `denial` record,
    /// a log line, a notification) and judged again at the next check, with the others.
    /// A plugin that was quarantined when the update was to run goes back to its quarantine
    /// instead (its crash count, recorded quarantine and trust refusal still the loaded
    /// package's): relaunched, a crash-looping package was started once more. `true` then:
    /// nothing is to be launched.
    pub(super) fn update_unfit(
        &mut self,
        name: &str,
        err: stockade_policy::deps::DepError,
    ) -> bool {
        let Some(up) = self.plugins.get_mut(name).and_then(|e| e.update.take()) else {
            return false;
        };
        // The refusal as the check words it (`same_as` leaves out the updates the check names
        // it with), so that the check judging it again with what runs then says it once (one
        // record, one log line), not twice.
        let r = Refused::of("dependencies", &crate::cmd::store::dep_err(err));
        let sha = up.pkg.report.package_sha256.clone();
        let version = up.pkg.manifest.version().to_string();
        // What the relaunch that follows does with the loaded package (`relaunch`): back to
        // the quarantine, held (`loaded_fits`), or launched.
        let then = if up.quarantined {
            Phase::Quarantined
        } else if self.loaded_fits(name).is_err() {
            Phase::Held
        } else {
            Phase::Running
        };
        let mut change = self.refuse_update(name, sha, version, r, None, Some(then));
        // Judged again at the next check (as a refusal of the moment), with what runs then.
        change.again = true;
        self.store_seen = None;
        let Some(e) = self.plugins.get_mut(name) else {
            return false;
        };
        e.store_change = Some(change);
        if up.quarantined {
            self.back_to_quarantine(name);
            return true;
        }
        e.relaunch_for = Some("update_refused");
        false
    }

    /// A plugin quarantined when its update was to run ([`Update::quarantined`]) whose update
    /// will not run after all (it does not fit at the relaunch: `update_unfit`; it is no longer
    /// installed: `withdraw_update`) goes back to that quarantine — its crash count, recorded
    /// quarantine and trust refusal still the loaded package's (`take_update` did not run).
    /// Relaunched instead, a crash-looping package was started once more, no `plugin_restart`
    /// asked.
    fn back_to_quarantine(&mut self, name: &str) {
        let Some(e) = self.plugins.get_mut(name) else {
            return;
        };
        e.phase = Phase::Quarantined;
        e.relaunch_for = None;
        // Said again to the agents, for the reason it had (the update's relaunch had it
        // `stopped` or `restarting` meanwhile).
        let reason = match &e.trust_refusal {
            Some(r) => r.to_json(),
            None => json!({"kind": "crash_loop",
                           "message": "quarantined for its crashes; send plugin_restart \
                                       to try again"}),
        };
        let version = e.pkg.manifest.version().to_string();
        log_line(&format!(
            "store check: plugin {}: {} stays quarantined",
            term(name),
            term(&version)
        ));
        self.note_state(name, "quarantined", json!({ "reason": reason }));
    }

    /// The update admitted for `name` and waiting for its relaunch is no longer installed (the
    /// registry back to the loaded package, another package installed over it, the plugin
    /// removed but kept for its dependants):
    /// it is dropped. A plugin quarantined when it was admitted goes back to that quarantine
    /// (`back_to_quarantine`; review-124: its crash-quarantined package was relaunched as a
    /// plain restart). Otherwise the relaunch asked for it, if still to come, is the loaded
    /// package's: its `restart` record says `reason` `"update_withdrawn"`, not `"update"`
    /// (review-124: said so with no `from_version`, for a relaunch on the very version that
    /// ran). Whether there was one.
    fn withdraw_update(&mut self, name: &str) -> bool {
        let Some(e) = self.plugins.get_mut(name) else {
            return false;
        };
        let Some(up) = e.update.take() else {
            return false;
        };
        // Only one without a process: one stopping has its loaded package refused by the trust
        // check (`trust_quarantine` relaunches it on the update), and its relaunch's `recheck`
        // quarantines it again.
        if up.quarantined && e.slot.is_none() {
            self.back_to_quarantine(name);
        } else if e.relaunch_for == Some("update") {
            e.relaunch_for = Some("update_withdrawn");
        }
        true
    }

    /// At a relaunch: the update the store check admitted for `name` takes the loaded
    /// package's place (the old tree is released with it), its certificate expiry, crash count,
    /// warm spare and recorded quarantine those of a new start. The version it replaced, and
    /// whether the plugin was quarantined when the update was admitted (that quarantine ends).
    pub(super) fn take_update(&mut self, name: &str) -> Option<(String, bool)> {
        let e = self.plugins.get_mut(name)?;
        let up = e.update.take()?;
        let from = e.pkg.manifest.version().to_string();
        let lifted = up.quarantined;
        let spare = e.spare.take();
        e.decision = None;
        e.pkg = up.pkg;
        e.expires = chain_expiry(&e.pkg);
        e.trust_refusal = None;
        e.trust_retries = 0;
        e.host_retries = 0;
        e.crashes.clear();
        e.audit = audit::for_report(Event::Launch, "", &e.pkg.report);
        let sha = e.pkg.report.package_sha256.clone();
        self.expiry_cache.set(None);
        self.discard_spare(name, spare);
        if let Err(err) = self.quarantines.on_load(name, &sha) {
            log_line(&format!(
                "plugin {}: cannot drop the quarantine recorded for its earlier package: {}",
                term(name),
                term(&err.to_string())
            ));
        }
        Some((from, lifted))
    }
}
