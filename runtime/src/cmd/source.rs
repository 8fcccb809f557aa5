//! `stockade source add|list|remove|repin|repin-author`: the signed indexes plugins are installed
//! from by id, and the explicit (warning-labelled) flows that replace a pinned key without a
//! rotation proof. Every change runs under the store lock, and under the sources directory's
//! lock where the configuration is in one ([`sources::lock_config`]). The steps themselves:
//! `sources/`.

use crate::cli::{
    SourceAddArgs, SourceListArgs, SourceRefreshArgs, SourceRemoveArgs, SourceRepinArgs,
    SourceRepinAuthorArgs,
};
use crate::cmd::config_audit::{audit_log, audited, config_record, refused};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::keyfile::{load_public, unix_now};
use crate::output::{term, Output};
use crate::sources::{
    self, ConfigLock, PinKind, Pins, Places, SeenIndexes, Source, SourceError, Sources, PINS_FILE,
    SOURCES_FILE,
};
use crate::store::Store;
use serde_json::json;
use std::path::Path;
use stockade_trust::index::{describe, fingerprint};
use stockade_trust::minisign::PublicKey;

/// The store lock, then the sources directory's ([`sources::lock_config`]), for a command that
/// changes configuration file `file`: only its owner may, which is said first (78
/// `source.not_owner`) — the refresh timer's user cannot open root's store for writing, and
/// that refusal (74) said nothing of why.
fn lock_to_change(
    p: &Places,
    file: &str,
    no_wait: bool,
) -> Result<(Store, Option<ConfigLock>), CmdError> {
    sources::check_owner(p, file).map_err(SourceError::into_cmd)?;
    let (store, recovered) =
        Store::open(p.state_dir(), no_wait).map_err(crate::cmd::store::store_err)?;
    crate::cmd::store::warn_unremoved(&recovered);
    let config = sources::lock_config(p, no_wait).map_err(SourceError::into_cmd)?;
    Ok((store, config))
}

fn key(path: &Path) -> Result<PublicKey, CmdError> {
    load_public(path).map_err(|e| {
        CmdError::new(Exit::DataErr, "key", e).hint("pass a minisign public key file (.pub)")
    })
}

/// Run `stockade source add`.
pub fn add(a: SourceAddArgs, out: Output) -> Result<Exit, CmdError> {
    sources::check_name(&a.name).map_err(SourceError::into_cmd)?;
    let url = if a.url.ends_with('/') {
        format!("{}index.json", a.url)
    } else {
        a.url.clone()
    };
    sources::check_url(&url).map_err(SourceError::into_cmd)?;
    let operator = key(&a.operator_key)?;
    let places = Places::new(&a.store.state_dir, a.sources.sources_dir.as_deref())
        .map_err(SourceError::into_cmd)?;
    let log = audit_log(&a.root)?;
    let _lock = lock_to_change(&places, SOURCES_FILE, a.store.lock.no_wait)?;
    // The source is added only if its index verifies now, against the key given: verified in
    // memory first, recorded, saved after (a kill while fetching leaves nothing added).
    let src = Source {
        url: url.clone(),
        operator_pubkey: operator.to_base64(),
        added_at: unix_now(),
        seen_version: None,
        seen_sha256: None,
        refreshed_at: None,
    };
    let rec = config_record(
        "source_add",
        json!({"source": a.name, "url": url, "old_key_id": null,
               "new_key_id": operator.key_id.to_string(),
               "new_fingerprint": fingerprint(&operator)}),
    );
    let pending = sources::check_add(&places, &a.name, src, unix_now())
        .map_err(|e| refused(&log, rec.clone(), e.into_cmd()))?;
    let mut rec = rec;
    rec.detail["index_version"] = pending.index().index.version.into();
    let (vi, audit_error) = audited(&log, rec, out, "source added", |step| {
        pending
            .save(&places, &mut |s| step.at(s))
            .map_err(SourceError::into_cmd)
    })?;
    let report = json!({
        "audit_error": audit_error,
        "name": a.name, "url": url,
        "operator_key_id": operator.key_id.to_string(),
        "operator_fingerprint": fingerprint(&operator),
        "index": {"name": vi.index.name, "operator": vi.index.operator, "version": vi.index.version,
                  "expires": vi.index.expires, "plugins": vi.index.plugins.len()},
    });
    out.emit(&report, |_| {
        format!(
            "added source {} ({})\npinned operator key {}\n  fingerprint {}\nindex \"{}\" version {}, {} entries, expires {}",
            term(&a.name),
            term(&url),
            operator.key_id,
            fingerprint(&operator),
            term(&vi.index.name),
            vi.index.version,
            vi.index.plugins.len(),
            term(&vi.index.expires)
        )
    });
    Ok(Exit::Ok)
}

/// Run `stockade source list`.
pub fn list(a: SourceListArgs, out: Output) -> Result<Exit, CmdError> {
    let state = &a.store.state_dir;
    let places =
        Places::new(state, a.sources.sources_dir.as_deref()).map_err(SourceError::into_cmd)?;
    let all = Sources::load(&places).map_err(SourceError::into_cmd)?;
    let seen = SeenIndexes::load(state).map_err(SourceError::into_cmd)?;
    let mut items = Vec::new();
    for (name, s) in &all.sources {
        let k = PublicKey::from_base64(&s.operator_pubkey).ok();
        // A cache that cannot be used shows as none (`expires`, `plugins` null), and why it
        // cannot, in `cache_error`, as `list`'s `index_errors` says it: it used to look like
        // a source never refreshed.
        let (cached, cache_error) = match sources::cached(state, &all, name) {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e.to_string())),
        };
        // What the next refresh enforces: the higher of the two memories (the timer's user
        // records only the shared one when the configuration is root's), and the latest refresh.
        let shared = seen.sources.get(name);
        let seen_version = s.seen_version.max(shared.map(|e| e.version));
        let refreshed_at = s.refreshed_at.max(shared.map(|e| e.refreshed_at));
        items.push(json!({
            "name": name, "url": s.url,
            "operator_key_id": k.as_ref().map(|k| k.key_id.to_string()),
            "operator_fingerprint": k.as_ref().map(fingerprint),
            "seen_version": seen_version, "refreshed_at": refreshed_at,
            "expires": cached.as_ref().map(|c| c.expires.clone()),
            "plugins": cached.as_ref().map(|c| c.plugins.len()),
            "cache_error": cache_error,
        }));
    }
    out.emit(&json!({ "sources": items }), |_| {
        if items.is_empty() {
            return "no sources configured".into();
        }
        let mut t = String::new();
        for i in &items {
            t.push_str(&format!(
                "{}  {}\n  operator key {} (sha256 {})\n  index version {}, expires {}\n",
                term(i["name"].as_str().unwrap_or("")),
                term(i["url"].as_str().unwrap_or("")),
                i["operator_key_id"].as_str().unwrap_or("?"),
                i["operator_fingerprint"].as_str().unwrap_or("?"),
                i["seen_version"],
                term(i["expires"].as_str().unwrap_or("-")),
            ));
            if let Some(e) = i["cache_error"].as_str() {
                t.push_str(&format!("  warning: {}\n", term(e)));
            }
        }
        t
    });
    Ok(Exit::Ok)
}

/// Run `stockade source refresh`: step 1 of an install for each source, then the installed
/// plugins each refreshed index delists. Every source is tried: one that does not verify (or
/// cannot be reached) keeps its cached index, the last good one, and is reported with its
/// error; the others are refreshed all the same (an unreachable mirror must not hide another
/// source's delistings). The status is the first failure's code (0 when all passed).
pub fn refresh(a: SourceRefreshArgs, out: Output) -> Result<Exit, CmdError> {
    let state = &a.store.state_dir;
    let places =
        Places::new(state, a.sources.sources_dir.as_deref()).map_err(SourceError::into_cmd)?;
    // The lock only: the shipped timer runs this as the daemon's user, which must neither
    // create the store (it would be that user's, and root refuses to work in another user's
    // store) nor recover root's (it cannot: root's staging is 0700). No store, no lock: nothing
    // is installed yet; nor on a store of another user's (root's, for the timer), whose lock
    // is its owner's alone (`Store::lock_existing` says why that user needs none).
    let _lock =
        Store::lock_existing(state, a.store.lock.no_wait).map_err(crate::cmd::store::store_err)?;
    let _config =
        sources::lock_config(&places, a.store.lock.no_wait).map_err(SourceError::into_cmd)?;
    let configured = Sources::load(&places)
        .map_err(SourceError::into_cmd)?
        .sources;
    let names: Vec<String> = match a.name {
        // A name that is not configured is the caller's mistake, not a source's failure.
        Some(n) if !configured.contains_key(&n) => {
            return Err(SourceError::UnknownSource(n).into_cmd())
        }
        Some(n) => vec![n],
        None => configured.into_keys().collect(),
    };
    let unread = names
        .is_empty()
        .then(|| sources::unread_default_config(&places, a.sources.sources_dir.as_deref()))
        .flatten()
        .map(|f| {
            format!(
                "warning: no sources are configured in {}, but {} exists and is not read: name its directory with --sources-dir or STOCKADE_SOURCES_DIR (the refresh unit's Environment=)",
                places.config_path(SOURCES_FILE).display(),
                f.display()
            )
        });
    if let Some(w) = &unread {
        out.note(w);
    }
    let installed = crate::store::read_registry(state).map_err(crate::cmd::store::store_err)?;
    let mut items = Vec::new();
    let mut exit = Exit::Ok;
    for name in &names {
        let v = match sources::refresh(&places, name, unix_now()) {
            Ok(v) => v,
            Err(e) => {
                if exit == Exit::Ok {
                    exit = e.exit();
                }
                let error = e.into_cmd().to_json_item();
                items.push(json!({"name": name, "ok": false, "error": error}));
                continue;
            }
        };
        let delisted: Vec<serde_json::Value> = installed
            .plugins
            .values()
            .filter(|p| p.source == format!("index:{name}"))
            .filter_map(|p| {
                sources::delisted_in(&v.index, &p.name)
                    .map(|why| json!({"plugin": p.name, "reason": why}))
            })
            .collect();
        items.push(json!({
            "name": name, "ok": true, "version": v.index.version, "expires": v.index.expires,
            "plugins": v.index.plugins.len(), "rotated_operator_key": v.rotated_operator,
            "delisted_installed": delisted,
        }));
    }
    let mut report = json!({ "refreshed": items });
    if let Some(w) = unread {
        report["warning"] = json!(w);
    }
    out.emit(&report, |_| {
        if items.is_empty() {
            return "no sources configured".into();
        }
        let mut t = String::new();
        for i in &items {
            let name = term(i["name"].as_str().unwrap_or(""));
            if i["ok"] == false {
                t.push_str(&format!(
                    "{name}: FAILED, cached index kept: {}\n",
                    term(i["error"]["message"].as_str().unwrap_or(""))
                ));
                for c in i["error"]["causes"].as_array().into_iter().flatten() {
                    t.push_str(&format!(
                        "  caused by: {}\n",
                        term(c.as_str().unwrap_or(""))
                    ));
                }
                continue;
            }
            t.push_str(&format!(
                "{name}: index version {} verified ({} entries, expires {})\n",
                i["version"],
                i["plugins"],
                term(i["expires"].as_str().unwrap_or("-")),
            ));
            for d in i["delisted_installed"].as_array().into_iter().flatten() {
                t.push_str(&format!(
                    "  installed plugin {} is delisted: {}\n",
                    term(d["plugin"].as_str().unwrap_or("")),
                    term(d["reason"].as_str().unwrap_or(""))
                ));
            }
        }
        t
    });
    Ok(exit)
}

/// Run `stockade source remove`.
pub fn remove(a: SourceRemoveArgs, out: Output) -> Result<Exit, CmdError> {
    let state = &a.store.state_dir;
    let places =
        Places::new(state, a.sources.sources_dir.as_deref()).map_err(SourceError::into_cmd)?;
    let log = audit_log(&a.root)?;
    let _lock = lock_to_change(&places, SOURCES_FILE, a.store.lock.no_wait)?;
    let mut all = Sources::load(&places).map_err(SourceError::into_cmd)?;
    let Some(gone) = all.sources.remove(&a.name) else {
        let rec = config_record("source_remove", json!({"source": a.name}));
        return Err(refused(
            &log,
            rec,
            SourceError::UnknownSource(a.name).into_cmd(),
        ));
    };
    let old = PublicKey::from_base64(&gone.operator_pubkey).ok();
    let rec = config_record(
        "source_remove",
        json!({"source": a.name, "url": gone.url,
               "old_key_id": old.as_ref().map(|k| k.key_id.to_string()), "new_key_id": null}),
    );
    let mut seen = SeenIndexes::load(state).map_err(SourceError::into_cmd)?;
    let cache = sources::IndexCache::hold(state).map_err(SourceError::into_cmd)?;
    let ((), audit_error) = audited(&log, rec, out, "source removed", |step| {
        step.at("sources_json");
        all.save(&places).map_err(SourceError::into_cmd)?;
        // The shared memory forgets it too: a source added later under this name starts afresh.
        if seen.sources.remove(&a.name).is_some() {
            step.at("index_memory");
            seen.save(state).map_err(SourceError::into_cmd)?;
        }
        Ok(())
    })?;
    cache.forget(&a.name);
    out.emit(
        &json!({"removed": a.name, "audit_error": audit_error}),
        |_| {
            format!(
                "removed source {} (plugins installed from it stay installed and get no updates)",
                a.name
            )
        },
    );
    Ok(Exit::Ok)
}

fn confirm(
    yes: bool,
    what: &str,
    old: Option<&PublicKey>,
    new: &PublicKey,
) -> Result<(), CmdError> {
    if yes {
        return Ok(());
    }
    Err(CmdError::msg(
        Exit::Usage,
        "usage",
        format!(
            "WARNING: this replaces the pinned {what} key {} with {} WITHOUT a rotation proof. Anyone holding the new key will be trusted for it. Check the new fingerprint with its owner out of band, then repeat with --yes.",
            old.map_or("(none)".into(), describe),
            describe(new)
        ),
    ))
}

/// Run `stockade source repin`.
pub fn repin(a: SourceRepinArgs, out: Output) -> Result<Exit, CmdError> {
    let places = Places::new(&a.store.state_dir, a.sources.sources_dir.as_deref())
        .map_err(SourceError::into_cmd)?;
    let new = key(&a.operator_key)?;
    let log = audit_log(&a.root)?;
    let _lock = lock_to_change(&places, SOURCES_FILE, a.store.lock.no_wait)?;
    let mut all = Sources::load(&places).map_err(SourceError::into_cmd)?;
    let mut rec = config_record(
        "source_repin",
        json!({"source": a.name, "old_key_id": null, "new_key_id": new.key_id.to_string(),
               "new_fingerprint": fingerprint(&new)}),
    );
    let Some(s) = all.sources.get_mut(&a.name) else {
        return Err(refused(
            &log,
            rec,
            SourceError::UnknownSource(a.name).into_cmd(),
        ));
    };
    let old = PublicKey::from_base64(&s.operator_pubkey).ok();
    rec.detail["old_key_id"] = json!(old.as_ref().map(|k| k.key_id.to_string()));
    rec.detail["old_fingerprint"] = json!(old.as_ref().map(fingerprint));
    confirm(
        a.yes,
        &format!("operator (source {})", a.name),
        old.as_ref(),
        &new,
    )
    .map_err(|e| refused(&log, rec.clone(), e))?;
    s.operator_pubkey = new.to_base64();
    let ((), audit_error) = audited(&log, rec, out, "operator key re-pinned", |step| {
        step.at("sources_json");
        all.save(&places).map_err(SourceError::into_cmd)
    })?;
    out.emit(
        &json!({"source": a.name, "operator_key_id": new.key_id.to_string(), "operator_fingerprint": fingerprint(&new), "audit_error": audit_error}),
        |_| format!("source {}: operator key re-pinned to {}", a.name, describe(&new)),
    );
    Ok(Exit::Ok)
}

/// Run `stockade source repin-author`.
pub fn repin_author(a: SourceRepinAuthorArgs, out: Output) -> Result<Exit, CmdError> {
    let places = Places::new(&a.store.state_dir, a.sources.sources_dir.as_deref())
        .map_err(SourceError::into_cmd)?;
    if !stockade_policy::manifest::valid_name(&a.id) {
        return Err(CmdError::msg(
            Exit::Usage,
            "usage",
            format!("`{}` is not a plugin id", a.id),
        ));
    }
    // A name with nothing visible names no author (no pin is ever kept or checked for it).
    if let Some(name) = &a.author {
        if stockade_trust::index::author_pin_key(name).is_empty()
            || !stockade_trust::index::allowed_author_name(name)
        {
            return Err(CmdError::msg(
                Exit::Usage,
                "usage",
                format!("`{name}` is not an author name an index could pin"),
            ));
        }
    }
    let new = key(&a.author_key)?;
    let log = audit_log(&a.root)?;
    let _lock = lock_to_change(&places, PINS_FILE, a.store.lock.no_wait)?;
    let mut pins = Pins::load(&places).map_err(SourceError::into_cmd)?;
    let old = pins.key(&a.id).map_err(SourceError::into_cmd)?;
    let mut rec = config_record(
        "author_repin",
        json!({"plugin": a.id, "author": a.author,
               "old_key_id": old.as_ref().map(|k| k.key_id.to_string()),
               "new_key_id": new.key_id.to_string(), "new_fingerprint": fingerprint(&new)}),
    );
    confirm(
        a.yes,
        &format!("author (plugin {})", a.id),
        old.as_ref(),
        &new,
    )
    .map_err(|e| refused(&log, rec.clone(), e))?;
    let now = unix_now();
    pins.set(&a.id, &new, "manual", now);
    let mut replaced = Vec::new();
    if let Some(name) = &a.author {
        // Look-alike spellings pinned before are one author with this name: their pins go
        // (said in the prompt and the output). Pins that disagree are replaced too.
        replaced = pins.lookalikes(name);
        let old = pins.key_of(PinKind::Author, name).ok().flatten();
        let what = match replaced.is_empty() {
            true => format!("author `{name}`"),
            false => format!(
                "author `{name}` (replacing the pins of the look-alike names {})",
                replaced
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        rec.detail["old_author_key_id"] = json!(old.as_ref().map(|k| k.key_id.to_string()));
        rec.detail["replaced_author_pins"] = json!(replaced);
        confirm(a.yes, &what, old.as_ref(), &new).map_err(|e| refused(&log, rec.clone(), e))?;
        pins.set_of(PinKind::Author, name, &new, "manual", now);
    }
    let ((), audit_error) = audited(&log, rec, out, "author key re-pinned", |step| {
        step.at("pins_json");
        pins.save(&places).map_err(SourceError::into_cmd)
    })?;
    out.emit(
        &json!({"id": a.id, "author": a.author, "replaced_author_pins": replaced, "author_key_id": new.key_id.to_string(), "author_fingerprint": fingerprint(&new), "audit_error": audit_error}),
        |_| format!("{}: author key re-pinned to {}", a.id, describe(&new)),
    );
    Ok(Exit::Ok)
}
