//! `stockade install PKG_FILE…`, `stockade list`, `stockade remove ID`, and `stockade verify [ID]`
//! for installed plugins. The crash-safety argument lives in `store/mod.rs`; dependency decisions
//! in `stockade_policy::deps` (pure). Order of `install`, each step able to refuse with nothing
//! changed:
//! 1. the node license is not frozen (seed 000: installs blocked, running plugins untouched);
//! 2. the store lock (concurrent installs queue, or exit 108 with `--no-wait`) and recovery;
//! 3. each package is copied into staging and the copy verified (the whole fail-closed pipeline,
//!    exit 80–87) and extracted there — no plugin code runs;
//! 4. versions: no silent downgrade or same-version-different-content (exit 107 unless --force);
//! 5. dependencies of the resulting set (exit 101 missing/unsatisfied, 102 cycle, 103 would break
//!    an installed dependent), which also gives the install order;
//! 6. one `begun` audit record per plugin, the commit (rename into place, registry rename),
//!    then each record's outcome (`ok`, or `failed`): see `commit_audited` for why.

use crate::audit::{append_or_fail, for_report, AuditLog, Event, Record};
use crate::cli::{InstallArgs, ListArgs, RemoveArgs, UpdateArgs, VerifyArgs};
use crate::cmd::verify::{operator_defaults, verify_context};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{FileError, HeldDirError};
use crate::keyfile::unix_now;
use crate::node::NodeIdentity;
use crate::output::{term, Output};
use crate::package::report::{Report, SignatureStatus};
use crate::package::{open_verified_in, VerifyError};
use crate::sources::{self, Fetched, PinKind, Places, Session, SourceError, Sources, Want};
use crate::store::{
    check_tree_of, Installed, Settled, Staged, Store, StoreError, TreeProblem, PACKAGE_FILE,
};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use stockade_policy::deps::{self, DepError, DepNode};
use stockade_trust::index::PinOutcome;
use stockade_trust::license::LicenseState;
use stockade_trust::minisign::PublicKey;

/// A store error as the command's error (exit 106/108/74…).
pub(crate) fn store_err(e: StoreError) -> CmdError {
    match e {
        StoreError::Locked(_) => CmdError::new(Exit::StoreLocked, "store.locked", e)
            .hint("another install or removal is running; retry, or drop --no-wait to queue"),
        StoreError::Busy(_) => CmdError::new(Exit::StoreLocked, "store.locked", e)
            .hint("installs or removals of it are running; retry once they are done"),
        StoreError::NewerFormat { .. } => CmdError::new(Exit::Config, "store.newer_format", e)
            .hint(
            "this Stockade is older than the one that wrote the store: upgrade Stockade to use \
                 it; nothing was changed (do not restore the registry from a backup: that would \
                 forget what the newer version installed)",
        ),
        StoreError::Corrupt { .. }
        | StoreError::NotARegistry { .. }
        | StoreError::Schema { .. }
        | StoreError::BadDirName(_) => CmdError::new(Exit::StoreCorrupt, "store.corrupt", e)
            .hint("restore <state-dir>/store/registry.json from a backup"),
        StoreError::Held(HeldDirError::Unsafe { .. }) => {
            CmdError::new(Exit::Config, "store.unsafe", e).hint(
                "the store directory must be a real directory of the user running stockade (or \
                 root) that no one else may write; move it aside and run the command again",
            )
        }
        StoreError::UnsafeRegistry { .. } => CmdError::new(Exit::Config, "store.unsafe", e).hint(
            "the registry must be a regular file of the store's owner (or root) that no one else \
             may write, not a symlink nor a hard link: check how it got so (someone else could \
             have changed what it says is installed), then restore it from a backup or fix its \
             owner and mode (0644)",
        ),
        StoreError::LockUnsafe { .. } => CmdError::new(Exit::Config, "store.unsafe", e).hint(
            "the store's lock must be a regular file of the store's owner, which no one else \
             may open; remove it (it is made again, 0600) and run the command again",
        ),
        StoreError::NotOwner { owner, .. } => CmdError::new(Exit::Config, "store.not_owner", e)
            .hint(format!(
                "only the store's owner (uid {owner}) installs, removes or recovers; run the \
                 command as that user (`list` and `verify` read any store)"
            )),
        StoreError::NotStateOwner { owner, .. } => {
            CmdError::new(Exit::Config, "store.not_owner", e).hint(format!(
                "a store made by this user would be this user's, and the state directory's \
                 users would refuse it; run the command as root or as the state directory's \
                 owner (uid {owner}), or give this user a state directory of its own \
                 (--state-dir)"
            ))
        }
        StoreError::NotInstalled(_) => CmdError::new(Exit::NotInstalled, "store.not_installed", e)
            .hint("pass a package file or an installed plugin's name (`stockade list` shows them)"),
        StoreError::File(FileError::TooLarge { .. }) => CmdError::new(Exit::SizeCap, "size_cap", e),
        StoreError::File(ref f)
            if f.is_not_found() || matches!(f, FileError::NotRegular { .. }) =>
        {
            CmdError::new(Exit::NoInput, "no_input", e)
        }
        StoreError::State(crate::state::StateError::Create { .. }) => {
            CmdError::new(Exit::IoErr, "store.io", e).hint(crate::state::CREATE_HINT)
        }
        _ => CmdError::new(Exit::IoErr, "store.io", e),
    }
}

pub(crate) fn dep_err(e: DepError) -> CmdError {
    let exit = match e {
        DepError::Missing { .. } | DepError::Unsatisfied { .. } => Exit::Dependency,
        DepError::Cycle { .. } => Exit::DependencyCycle,
        DepError::BreaksDependent { .. } => Exit::InUse,
        _ => Exit::Usage,
    };
    let hint = match exit {
        Exit::Dependency => "install the missing plugins first, or pass their packages in the same `stockade install`",
        Exit::DependencyCycle => "plugins cannot depend on each other in a loop; fix the manifests",
        Exit::InUse => "install a version the dependent accepts, or upgrade both together",
        _ => "give each plugin once",
    };
    CmdError::new(exit, e.kind(), e).hint(hint)
}

/// The registry entry for a verified package.
fn entry_for(r: &Report, requires: BTreeMap<String, String>, source: String) -> Installed {
    let mut chain: Vec<String> = r.chain.iter().map(|c| c.key_id.clone()).collect();
    chain.extend(r.root_key_id.iter().cloned());
    Installed {
        name: r.name.clone(),
        version: r.version.clone(),
        dir: format!("{}-{}-{}", r.name, r.version, &r.package_sha256[..12]),
        package_sha256: r.package_sha256.clone(),
        signature_status: crate::output::enum_str(&r.signature_status),
        trust_mode: crate::output::enum_str(&r.trust_mode),
        signer_key_id: r.signer_key_id.clone(),
        signer_chain: chain,
        signer_subject: r
            .chain
            .iter()
            .find(|c| c.kind == "developer")
            .map(|c| c.subject.clone()),
        granted_capabilities: r.granted_capabilities.clone(),
        tier: None,
        requires,
        source,
        installed_at: unix_now(),
    }
}

fn dep_node(p: &Installed) -> Result<DepNode, CmdError> {
    let corrupt = |what: String| {
        CmdError::msg(
            Exit::StoreCorrupt,
            "store.corrupt",
            format!("the store registry entry for {}: {what}", p.name),
        )
    };
    let version = semver::Version::parse(&p.version).map_err(|e| corrupt(e.to_string()))?;
    let mut requires = Vec::new();
    for (n, r) in &p.requires {
        requires.push((
            n.clone(),
            semver::VersionReq::parse(r).map_err(|e| corrupt(e.to_string()))?,
        ));
    }
    Ok(DepNode::new(p.name.clone(), version, requires))
}

/// The installed plugins as a dependency graph, by name.
fn registry_nodes(reg: &crate::store::Registry) -> Result<BTreeMap<String, DepNode>, CmdError> {
    reg.plugins
        .values()
        .map(|p| dep_node(p).map(|n| (p.name.clone(), n)))
        .collect()
}

/// What `install` prints.
#[derive(Debug, Serialize)]
struct InstallReport {
    /// Installed (or already present), in install order.
    installed: Vec<InstallItem>,
    /// Cleaned up after an interrupted run.
    recovered: crate::store::Recovery,
    /// The install committed, but its `ok` audit record could not be written (the error as
    /// `CmdError::to_json_item`; `null` otherwise): its `begun` record is in the log
    /// ([`commit_audited`]).
    audit_error: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct InstallItem {
    name: String,
    version: String,
    /// `installed`, `upgraded from X`, `already installed` …
    action: String,
    signature_status: String,
    signer_key_id: Option<String>,
    /// The author (developer) key pin, by plugin id.
    author_pin: Option<PinReport>,
    /// The same key's pin by the index's author name (installs from a source naming one).
    #[serde(skip_serializing_if = "Option::is_none")]
    author_name_pin: Option<NamePinReport>,
    /// `file:<path>` or `index:<source>`.
    source: String,
    package_sha256: String,
    path: String,
    warnings: Vec<String>,
}

/// One thing `install` was asked for.
#[derive(Debug)]
enum Target {
    /// A package file.
    File(PathBuf),
    /// An id from the configured sources, optionally `@VERSION` or `@REQ`.
    Index { id: String, want: Option<Want> },
}

/// `PKG_FILE` if it is an existing file or looks like a path; else `ID[@VERSION]`.
fn parse_target(arg: &str) -> Result<Target, CmdError> {
    let p = Path::new(arg);
    if p.metadata().is_ok_and(|m| !m.is_dir()) || arg.contains('/') || arg.ends_with(".stockade") {
        return Ok(Target::File(p.to_path_buf()));
    }
    let (id, ver) = match arg.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (arg, None),
    };
    let usage = |m: String| {
        CmdError::msg(Exit::NoInput, "no_input", m)
            .hint("pass an existing package file, or ID[@VERSION] listed by a source (`stockade source list`)")
    };
    if !stockade_policy::manifest::valid_name(id) {
        return Err(usage(format!("`{arg}` is neither a file nor a plugin id")));
    }
    let want = match ver {
        None => None,
        Some(v) => Some(match semver::Version::parse(v) {
            Ok(x) => Want::Exact(x),
            Err(_) => Want::Req(
                semver::VersionReq::parse(v)
                    .map_err(|_| usage(format!("`{v}` is not a version or requirement")))?,
            ),
        }),
    };
    Ok(Target::Index {
        id: id.to_string(),
        want,
    })
}

/// A package staged, verified and checked, waiting for the commit.
struct StagedPkg {
    staged: Staged,
    entry: Installed,
    warnings: Vec<String>,
    /// The key to pin for this plugin id and what the pin check decided.
    pin: Option<(PublicKey, PinOutcome)>,
    /// The index's author name and what its pin check decided.
    author_pin: Option<(String, PinOutcome)>,
    report: Report,
}

/// The staged copy is verified and extracted through the staging directory's descriptor: an
/// error that names where is made to name the staging directory's path instead of
/// `/proc/self/fd/N/…`, which tells the reader nothing. (`tempfile` appends the directory it
/// could not make to its error, as "{OS error} at path {path}": that one is given as its OS
/// error — text, kind and errno — in the staging directory; the others name no path.)
fn shown_in_staging(e: VerifyError, s: &Staged) -> VerifyError {
    match e {
        VerifyError::Read(f) => VerifyError::Read(f.shown_as(s.package().shown())),
        VerifyError::Workdir(io) if io.to_string().contains("/proc/self/fd/") => {
            VerifyError::Workdir(os_error_in(io, s.dir().shown()))
        }
        e => e,
    }
}

/// `io` (tempfile's "{OS error} at path /proc/self/fd/N/…") as its OS error in `dir`: the same
/// kind and text. (tempfile's wrapper gives no access to the OS error it holds — its `source`
/// skips it — so the text before " at path" is that error's.)
fn os_error_in(io: std::io::Error, dir: &Path) -> std::io::Error {
    let text = io.to_string();
    let os = text.split(" at path ").next().unwrap_or_default();
    std::io::Error::new(io.kind(), format!("{os} in {}", dir.display()))
}

/// The work of one `install` or `update`: everything is staged and checked before anything is
/// committed.
struct Job<'a> {
    log: &'a AuditLog,
    cfg: &'a crate::trustdir::TrustConfig,
    /// Where the sources' configuration is (the pins read and recorded).
    places: &'a Places,
    node: &'a NodeIdentity,
    store: &'a Store,
    session: Option<&'a Session>,
    staged: Vec<StagedPkg>,
}

impl Job<'_> {
    fn refuse(&self, detail: serde_json::Value, err: CmdError) -> CmdError {
        let mut rec = Record::new(Event::Install, "refused");
        rec.detail = detail;
        match append_or_fail(self.log, rec) {
            Ok(()) => err,
            Err(audit) => audit,
        }
    }

    /// Stage a package file (a download or the caller's file), verify it (80–87), check it
    /// against its index entry (99) and its author pin (98).
    fn add(&mut self, path: &Path, label: &str, fetched: Option<&Fetched>) -> Result<(), CmdError> {
        let s = self.store.stage(path).map_err(store_err)?;
        let verified = open_verified_in(
            s.package().path(),
            self.cfg,
            self.node,
            unix_now(),
            s.dir().path(),
        );
        let mut pkg = match verified.map_err(|e| shown_in_staging(e, &s)) {
            Ok(pkg) => pkg,
            Err(e) => {
                let detail = json!({"file": label, "kind": e.kind(), "error": e.to_string()});
                return Err(self.refuse(detail, e.into_cmd()));
            }
        };
        pkg.report.file = label.to_string();
        let dev_key = pkg.developer.as_ref().map(|d| d.subject_key.clone());
        let pin = match (fetched, &dev_key) {
            (Some(f), _) => {
                if let Err(e) = sources::check_agreement(f, &pkg.manifest, dev_key.as_ref())
                    .and_then(|()| sources::check_name_pin_within(f, self.staged_authors()))
                {
                    let detail = json!({"file": label, "kind": e.kind(), "error": e.to_string()});
                    return Err(self.refuse(detail, e.into_cmd()));
                }
                Some((f.author.clone(), f.pin.clone()))
            }
            (None, Some(k)) => match sources::check_file_pin(self.places, pkg.manifest.name(), k) {
                Ok(o) => Some((k.clone(), o)),
                Err(e) => {
                    let detail = json!({"file": label, "kind": e.kind(), "error": e.to_string()});
                    return Err(self.refuse(detail, e.into_cmd()));
                }
            },
            (None, None) => None,
        };
        // A first-use pin for a plugin the store holds, signed: its pin was there and is gone.
        if let Some((_, PinOutcome::FirstUse)) = &pin {
            let installed = self.store.registry().plugins.get(pkg.manifest.name());
            let signer = installed.and_then(|p| p.signer_key_id.as_deref());
            if let Err(e) = sources::check_pin_not_lost(pkg.manifest.name(), signer) {
                let detail = json!({"file": label, "kind": e.kind(), "error": e.to_string()});
                return Err(self.refuse(detail, e.into_cmd()));
            }
        }
        let requires: BTreeMap<String, String> = pkg
            .manifest
            .manifest()
            .dependencies
            .iter()
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect();
        let source = match fetched {
            Some(f) => format!("index:{}", f.source),
            None => format!(
                "file:{}",
                std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.to_path_buf())
                    .display()
            ),
        };
        let mut entry = entry_for(&pkg.report, requires, source);
        entry.tier = pkg.manifest.manifest().tier.clone();
        let warnings = pkg.report.warnings.clone();
        let kept = pkg.dir.keep();
        self.store
            .finish_staging(&s, kept.path().to_path_buf())
            .map_err(store_err)?;
        drop(kept);
        self.staged.push(StagedPkg {
            staged: s,
            entry,
            warnings,
            pin,
            author_pin: fetched.and_then(|f| f.author_pin.clone()),
            report: pkg.report,
        });
        Ok(())
    }

    /// The author names and keys of what this job staged from the sources.
    fn staged_authors(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.staged.iter().filter_map(|p| {
            let (name, _) = p.author_pin.as_ref()?;
            let (key, _) = p.pin.as_ref()?;
            Some((name.as_str(), key))
        })
    }

    /// Steps 1–4 from the sources, then [`Job::add`].
    fn add_from_index(
        &mut self,
        id: &str,
        want: Option<&Want>,
        source: Option<&str>,
    ) -> Result<(), CmdError> {
        let Some(session) = self.session else {
            return Err(CmdError::msg(
                Exit::IndexNotFound,
                "index.not_found",
                format!("`{id}` is not a file, and no source is configured to look it up"),
            )
            .hint("add a source with `stockade source add NAME URL --operator-key KEY.pub`"));
        };
        let fetched = session
            .find(id, want, source)
            .and_then(|(vi, e)| session.fetch(self.places, vi, e, &sources::this_platform()))
            .map_err(|e| {
                let detail = json!({"id": id, "kind": e.kind(), "error": e.to_string()});
                self.refuse(detail, e.into_cmd())
            })?;
        let label = format!(
            "{}@{} from source {}",
            fetched.entry.id, fetched.entry.version, fetched.source
        );
        self.add(&fetched.path, &label, Some(&fetched))
    }

    /// With sources: fetch every dependency that neither the staged set nor the store satisfies
    /// (highest matching version), until closed — [`MAX_FETCHED_DEPENDENCIES`] at most: one
    /// more still missing is refused (`store.too_many_dependencies`, 101, an `install`
    /// `refused` record, nothing installed), where it stopped fetching and went on silently.
    /// Without sources the dependency check names what is missing.
    fn add_missing_dependencies(&mut self) -> Result<(), CmdError> {
        if self.session.is_none() {
            return Ok(());
        }
        let mut fetched = 0;
        loop {
            let mut missing = None;
            'outer: for p in &self.staged {
                for (dep, req) in &p.entry.requires {
                    let Ok(req) = semver::VersionReq::parse(req) else {
                        continue;
                    };
                    // A staged plugin is never fetched again: if its version does not fit,
                    // the dependency check names the chain.
                    if self.staged.iter().any(|s| s.entry.name == *dep) {
                        continue;
                    }
                    let installed_fits = self
                        .store
                        .registry()
                        .plugins
                        .get(dep)
                        .and_then(|h| semver::Version::parse(&h.version).ok())
                        .is_some_and(|v| req.matches(&v));
                    if !installed_fits {
                        missing = Some((dep.clone(), req));
                        break 'outer;
                    }
                }
            }
            let Some((dep, req)) = missing else {
                return Ok(());
            };
            if fetched == MAX_FETCHED_DEPENDENCIES {
                let detail = json!({"kind": "store.too_many_dependencies",
                                    "fetched": fetched, "missing": dep});
                let err = CmdError::msg(
                    Exit::Dependency,
                    "store.too_many_dependencies",
                    format!(
                        "more than {MAX_FETCHED_DEPENDENCIES} dependencies to fetch from the \
                         sources ({dep} {req} still missing after {fetched}); nothing was installed"
                    ),
                )
                .hint(
                    "install some of the dependencies first (`stockade install NAME…`), then this",
                );
                return Err(self.refuse(detail, err));
            }
            fetched += 1;
            match self.add_from_index(&dep, Some(&Want::Req(req)), None) {
                Ok(()) => {}
                // Not listed anywhere: the dependency check below names the chain.
                Err(e) if e.exit() == Exit::IndexNotFound && e.kind() == "index.not_found" => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Dependencies one `install` or `update` fetches from the sources at most (each a download
/// and a verification): a bound on what a source's index can make a node fetch, far above any
/// real plugin's dependencies.
pub const MAX_FETCHED_DEPENDENCIES: usize = 256;

/// Versions, dependencies, pins, commit, audit; the report.
fn finish(
    log: &AuditLog,
    places: &Places,
    staged: Vec<StagedPkg>,
    store: &mut Store,
    force: bool,
    recovered: crate::store::Recovery,
) -> Result<InstallReport, CmdError> {
    // Versions against what is installed.
    let mut actions = BTreeMap::new();
    for p in &staged {
        let e = &p.entry;
        let action = match store.registry().plugins.get(&e.name) {
            None => "installed".to_string(),
            Some(old) if old.package_sha256 == e.package_sha256 => "already installed".into(),
            Some(old) => {
                let (ov, nv) = (
                    semver::Version::parse(&old.version).ok(),
                    semver::Version::parse(&e.version).ok(),
                );
                let older = matches!((&ov, &nv), (Some(o), Some(n)) if n < o);
                let same = ov == nv;
                if (older || same) && !force {
                    return Err(CmdError::msg(
                        Exit::Conflict,
                        "store.conflict",
                        if same {
                            format!("{} {} is already installed with different content (package sha256 {} vs {})", e.name, e.version, old.package_sha256, e.package_sha256)
                        } else {
                            format!("{} {} is installed; {} would be a downgrade", e.name, old.version, e.version)
                        },
                    )
                    .hint("pass --force to replace it anyway"));
                }
                if older {
                    format!("downgraded from {}", old.version)
                } else if same {
                    "replaced (same version, new content)".into()
                } else {
                    format!("upgraded from {}", old.version)
                }
            }
        };
        actions.insert(e.name.clone(), action);
    }
    // Dependencies of the resulting set, and the order.
    let installed = registry_nodes(store.registry())?;
    let new: Vec<DepNode> = staged
        .iter()
        .map(|p| dep_node(&p.entry))
        .collect::<Result<_, _>>()?;
    let order = match deps::plan_install(&installed, &new) {
        Ok(o) => o,
        Err(e) => {
            let mut rec = Record::new(Event::Install, "refused");
            rec.detail = json!({"kind": e.kind(), "error": e.to_string()});
            append_or_fail(log, rec)?;
            return Err(dep_err(e));
        }
    };
    // Register: pins first (a pin without its plugin is harmless: it is the key that was
    // verified), then the store's commit, in dependency order.
    let now = unix_now();
    let mut pins: Vec<(PinKind, String, PublicKey, PinOutcome)> = Vec::new();
    for p in &staged {
        if let Some((k, o)) = &p.pin {
            pins.push((PinKind::Plugin, p.entry.name.clone(), k.clone(), o.clone()));
            if let Some((name, ao)) = &p.author_pin {
                pins.push((PinKind::Author, name.clone(), k.clone(), ao.clone()));
            }
        }
    }
    sources::record_pins(places, &pins, now).map_err(SourceError::into_cmd)?;
    let mut by_name: BTreeMap<String, StagedPkg> = staged
        .into_iter()
        .map(|p| (p.entry.name.clone(), p))
        .collect();
    let mut items = Vec::new();
    let mut reports = Vec::new();
    let mut report = InstallReport {
        installed: Vec::new(),
        recovered,
        audit_error: None,
    };
    for name in &order {
        if let Some(p) = by_name.remove(name) {
            let e = p.entry;
            report.installed.push(InstallItem {
                name: e.name.clone(),
                version: e.version.clone(),
                action: actions.remove(&e.name).unwrap_or_default(),
                signature_status: e.signature_status.clone(),
                signer_key_id: e.signer_key_id.clone(),
                author_pin: p.pin.as_ref().map(|(k, o)| PinReport::new(k, o)),
                author_name_pin: p.author_pin.as_ref().map(|(name, o)| NamePinReport {
                    name: name.clone(),
                    status: pin_status(o),
                }),
                source: e.source.clone(),
                package_sha256: e.package_sha256.clone(),
                path: store
                    .object_dir(&e)
                    .join(PACKAGE_FILE)
                    .display()
                    .to_string(),
                warnings: p.warnings,
            });
            reports.push(p.report);
            items.push((p.staged, e));
        }
    }
    let records = report
        .installed
        .iter()
        .zip(&reports)
        .map(|(item, r)| {
            let mut rec = for_report(Event::Install, BEGUN, r);
            rec.detail = json!({"action": item.action, "signature_status": item.signature_status, "source": item.source});
            rec
        })
        .collect();
    report.audit_error = commit_audited(log, records, || store.commit(items))?;
    // Where each went: the name it was staged for, or a fresh one beside a leftover recovery
    // could not remove (`Store::commit`).
    for item in &mut report.installed {
        if let Some(e) = store.registry().plugins.get(&item.name) {
            item.path = store.object_dir(e).join(PACKAGE_FILE).display().to_string();
        }
    }
    warn_left_behind(store);
    Ok(report)
}

/// Say on stderr which superseded or removed object directories a committed change could not
/// remove ([`Store::left_behind`]): the change stands, the next recovery removes them.
fn warn_left_behind(store: &Store) {
    for w in store.left_behind() {
        crate::output::print_stderr(&format!("stockade: warning: {}", term(w)));
    }
}

/// The outcome of the record written before a store change commits ([`commit_audited`]).
const BEGUN: &str = "begun";

/// Commit a store change (`commit`) between its audit records: each of `records` (outcome
/// [`BEGUN`]) appended first, then the commit, then each again with outcome `ok` — or `failed`
/// (`detail.error`) when the commit step failed (before the registry's rename: a superseded or
/// removed directory that cannot be removed after it fails nothing, [`Store::left_behind`]).
///
/// Why this order: an install or removal committed and then recorded left, after a kill between
/// the two, a change with no record at all, and an append that failed there made the command
/// exit non-zero although the change was done — the agent was told it failed and the store
/// said otherwise. Appended before the commit, a record that cannot be written refuses the
/// change with nothing changed (no unaudited change: fail closed). After the commit the change
/// is done whatever the log says: an `ok` record that cannot be written no longer fails the
/// command; the error is returned (`Ok(Some(..))`) for the report (`audit_error`) and stderr,
/// and the auditor has the `begun` record — one without an outcome after it means "look at the
/// store": the registry says whether it committed (docs/audit.md). A `failed` record that
/// cannot be written is dropped: the command fails with the commit's error anyway.
fn commit_audited(
    log: &AuditLog,
    records: Vec<Record>,
    commit: impl FnOnce() -> Result<(), StoreError>,
) -> Result<Option<serde_json::Value>, CmdError> {
    for rec in &records {
        append_or_fail(log, rec.clone())?;
    }
    if let Err(e) = commit() {
        for mut rec in records {
            rec.outcome = "failed".into();
            rec.detail["error"] = e.to_string().into();
            let _ = append_or_fail(log, rec);
        }
        return Err(store_err(e));
    }
    crate::sys::stop_at("committed");
    let mut audit_error = None;
    for mut rec in records {
        rec.outcome = "ok".into();
        if let Err(e) = append_or_fail(log, rec) {
            audit_error.get_or_insert_with(|| e.to_json_item());
        }
    }
    Ok(audit_error)
}

/// Say on stderr that a committed change's `ok` audit record is missing ([`commit_audited`]).
pub(crate) fn note_audit_error(out: Output, what: &str, e: Option<&serde_json::Value>) {
    if let Some(e) = e {
        let mut chain = vec![e["message"].as_str().unwrap_or_default()];
        chain.extend(
            e["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str()),
        );
        out.note(format!(
            "warning: {what}, but its audit record could not be written (the log has its \
             `begun` record): {}",
            chain.join(": ")
        ));
    }
}

/// How an author key was pinned, for the report.
#[derive(Debug, Serialize)]
struct PinReport {
    key_id: String,
    fingerprint: String,
    /// `first-use` (newly pinned), `pinned` (matched), `rotated from KEYID`.
    status: String,
}

impl PinReport {
    fn new(k: &PublicKey, o: &PinOutcome) -> Self {
        Self {
            key_id: k.key_id.to_string(),
            fingerprint: stockade_trust::index::fingerprint(k),
            status: pin_status(o),
        }
    }
}

/// The author-name pin of an install from a source.
#[derive(Debug, Serialize)]
struct NamePinReport {
    /// The index's `author.name`.
    name: String,
    /// As [`PinReport`]'s.
    status: String,
}

fn pin_status(o: &PinOutcome) -> String {
    match o {
        PinOutcome::FirstUse => "first-use".into(),
        PinOutcome::Match => "pinned".into(),
        PinOutcome::Rotated { from } => format!("rotated from {from}"),
    }
}

fn render_install(r: &InstallReport) -> String {
    let mut t = String::new();
    if r.installed.is_empty() {
        t.push_str("nothing to do\n");
    }
    for i in &r.installed {
        t.push_str(&format!(
            "{} {}: {} (signature_status {}, signer {})\n",
            term(&i.name),
            term(&i.version),
            term(&i.action),
            i.signature_status,
            term(i.signer_key_id.as_deref().unwrap_or("-"))
        ));
        if let Some(p) = &i.author_pin {
            if p.status != "pinned" {
                t.push_str(&format!(
                    "  author key {} pinned ({}), fingerprint {}\n",
                    p.key_id, p.status, p.fingerprint
                ));
            }
        }
        for w in &i.warnings {
            t.push_str(&format!("  warning: {}\n", term(w)));
        }
    }
    t
}

/// The frozen-license gate (seed 000): installs and updates are refused before anything is read
/// or written; nothing running is touched.
fn refuse_if_frozen(log: &AuditLog, node: &NodeIdentity) -> Result<(), CmdError> {
    if let Some(l) = node
        .license
        .as_ref()
        .filter(|l| l.body.state == LicenseState::Frozen)
    {
        let mut rec = Record::new(Event::Install, "refused");
        rec.detail = json!({"kind": "store.license_frozen", "license": l.body.serial});
        append_or_fail(log, rec)?;
        return Err(CmdError::msg(
            Exit::LicenseFrozen,
            "store.license_frozen",
            format!(
                "this node's license {} is frozen: no plugin may be installed or updated (installed plugins keep running)",
                l.body.serial
            ),
        )
        .hint("install an active license with `stockade node license install FILE`"));
    }
    Ok(())
}

fn open_store(
    state_dir: &Path,
    no_wait: bool,
    out: Output,
) -> Result<(Store, crate::store::Recovery), CmdError> {
    let (store, recovered) = Store::open(state_dir, no_wait).map_err(store_err)?;
    if !recovered.is_empty() {
        out.note(format!(
            "recovered from an interrupted run: removed {} staging and {} unreferenced directories",
            recovered.staging.len(),
            recovered.orphans.len()
        ));
    }
    warn_unremoved(&recovered);
    Ok((store, recovered))
}

/// Say on stderr which leftovers recovery could not remove ([`crate::store::Recovery::left`]):
/// the command goes on (nothing names them), and they are in its JSON report's `recovered.left`
/// where it has one.
pub fn warn_unremoved(recovered: &crate::store::Recovery) {
    for w in &recovered.left {
        crate::output::print_stderr(&format!("stockade: warning: {}", term(w)));
    }
}

/// Run `stockade install`.
pub fn install(a: InstallArgs, out: Output) -> Result<Exit, CmdError> {
    let targets: Vec<Target> = a
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<Result<_, _>>()?;
    let (log, cfg, node) = verify_context(&a.trust, &a.root.policy_root)?;
    refuse_if_frozen(&log, &node)?;
    let (mut store, recovered) = open_store(&cfg.state_dir, a.lock.no_wait, out)?;
    let places = Places::new(&cfg.state_dir, a.sources.sources_dir.as_deref())
        .map_err(SourceError::into_cmd)?;
    // Held until the pins are recorded: the sources and pins are loaded, changed and saved.
    let _config = sources::lock_config(&places, a.lock.no_wait).map_err(SourceError::into_cmd)?;
    let uses_index = targets.iter().any(|t| matches!(t, Target::Index { .. }));
    let session = if uses_index {
        Some(Session::open(&places, unix_now()).map_err(SourceError::into_cmd)?)
    } else {
        None
    };
    let mut job = Job {
        log: &log,
        cfg: &cfg,
        places: &places,
        node: &node,
        store: &store,
        session: session.as_ref(),
        staged: Vec::new(),
    };
    for t in &targets {
        match t {
            Target::File(p) => job.add(p, &p.display().to_string(), None)?,
            Target::Index { id, want } => job.add_from_index(id, want.as_ref(), None)?,
        }
    }
    job.add_missing_dependencies()?;
    let staged = job.staged;
    let report = finish(&log, &places, staged, &mut store, a.force, recovered)?;
    note_audit_error(out, "installed", report.audit_error.as_ref());
    out.emit(&report, render_install);
    Ok(Exit::Ok)
}

/// What `update` found for one installed plugin it did not update.
#[derive(Debug, Serialize)]
struct UpdateSkip {
    name: String,
    version: String,
    /// `up to date`, `installed from a file`, `delisted: …`, `source … removed`.
    reason: String,
}

/// Run `stockade update [ID]`: every plugin installed from a source (or just ID) moves to the
/// highest version its source lists, through the whole install pipeline; delisted plugins are
/// flagged and left alone.
pub fn update(a: UpdateArgs, out: Output) -> Result<Exit, CmdError> {
    let (log, cfg, node) = verify_context(&a.trust, &a.root.policy_root)?;
    refuse_if_frozen(&log, &node)?;
    let (mut store, recovered) = open_store(&cfg.state_dir, a.lock.no_wait, out)?;
    if let Some(id) = &a.id {
        if !store.registry().plugins.contains_key(id) {
            return Err(CmdError::msg(
                Exit::NotInstalled,
                "store.not_installed",
                format!("no plugin named `{id}` is installed"),
            ));
        }
    }
    let places = Places::new(&cfg.state_dir, a.sources.sources_dir.as_deref())
        .map_err(SourceError::into_cmd)?;
    // Held until the pins are recorded: the sources and pins are loaded, changed and saved.
    let _config = sources::lock_config(&places, a.lock.no_wait).map_err(SourceError::into_cmd)?;
    let session = Session::open(&places, unix_now()).map_err(SourceError::into_cmd)?;
    let installed: Vec<Installed> = store
        .registry()
        .plugins
        .values()
        .filter(|p| a.id.as_ref().is_none_or(|id| *id == p.name))
        .cloned()
        .collect();
    let mut skipped = Vec::new();
    let mut todo = Vec::new();
    for p in installed {
        let skip = |reason: String| UpdateSkip {
            name: p.name.clone(),
            version: p.version.clone(),
            reason,
        };
        let Some(src) = p.source.strip_prefix("index:") else {
            skipped.push(skip("installed from a file".into()));
            continue;
        };
        if !session.indexes().iter().any(|v| v.source == src) {
            skipped.push(skip(format!("its source `{src}` is no longer configured")));
            continue;
        }
        match session.find(&p.name, None, Some(src)) {
            Ok((_, e)) => {
                let newer = semver::Version::parse(&p.version)
                    .is_ok_and(|cur| stockade_trust::index::entry_version(e) > cur);
                if newer {
                    todo.push((p.name.clone(), e.version.clone(), src.to_string()));
                } else {
                    skipped.push(skip("up to date".into()));
                }
            }
            Err(SourceError::Delisted { reason, .. }) => {
                skipped.push(skip(format!("delisted: {reason}")));
            }
            Err(SourceError::NotFound { .. }) => {
                skipped.push(skip("no longer listed by its source".into()));
            }
            Err(e) => return Err(e.into_cmd()),
        }
    }
    let mut job = Job {
        log: &log,
        cfg: &cfg,
        places: &places,
        node: &node,
        store: &store,
        session: Some(&session),
        staged: Vec::new(),
    };
    for (id, version, src) in &todo {
        let want = semver::Version::parse(version).ok().map(Want::Exact);
        job.add_from_index(id, want.as_ref(), Some(src))?;
    }
    job.add_missing_dependencies()?;
    let staged = job.staged;
    let report = finish(&log, &places, staged, &mut store, false, recovered)?;
    note_audit_error(out, "updated", report.audit_error.as_ref());
    let doc = json!({"updated": report.installed, "skipped": skipped, "recovered": report.recovered, "audit_error": report.audit_error});
    out.emit(&doc, |_| {
        let mut t = String::new();
        for i in &report.installed {
            t.push_str(&format!(
                "{} {}: {}\n",
                term(&i.name),
                term(&i.version),
                term(&i.action)
            ));
        }
        for s in &skipped {
            t.push_str(&format!(
                "{} {}: {}\n",
                term(&s.name),
                term(&s.version),
                term(&s.reason)
            ));
        }
        if t.is_empty() {
            t.push_str("nothing installed\n");
        }
        t
    });
    Ok(Exit::Ok)
}

#[derive(Debug, Serialize)]
struct ListItem {
    #[serde(flatten)]
    installed: Installed,
    /// Why the plugin's source delisted it (from the last verified index), if it did.
    delisted: Option<String>,
    /// Installed plugins that depend on this one.
    required_by: Vec<String>,
    /// The stored package (`stockade run` it).
    package: String,
}

/// Run `stockade list`.
pub fn list(a: ListArgs, out: Output) -> Result<Exit, CmdError> {
    // Read without the lock, so that a `list` (which agents poll) never makes an install or
    // removal with `--no-wait` fail 108 beside it; leftovers are recovered only when there are
    // some and the lock is free at once (`Store::list_registry`). No store is made: there is
    // nothing to list, and one made by the daemon's user (whose state directory it is in the
    // packaged layout) would be that user's, which root's commands then refused (78
    // `store.unsafe`).
    let (reg, root) = match Store::list_registry(&a.store.state_dir).map_err(store_err)? {
        Some(crate::store::Listing {
            registry,
            root,
            recovery,
            unrecovered,
        }) => {
            // A recovery that could not be done (a lock that is not the owner's, a store that
            // cannot be listed…) or left something (an immutable leftover) does not change what
            // is installed: the listing stands, said with a warning.
            match recovery {
                Err(
                    e @ (StoreError::Corrupt { .. }
                    | StoreError::NewerFormat { .. }
                    | StoreError::Schema { .. }
                    | StoreError::BadDirName(_)
                    | StoreError::UnsafeRegistry { .. }
                    | StoreError::Held(HeldDirError::Unsafe { .. })),
                ) => return Err(store_err(e)),
                Err(e) => out.note(format!(
                    "warning: leftovers of an interrupted run could not be removed: {}",
                    store_err(e).chain().join(": ")
                )),
                Ok(r) => {
                    for w in &r.left {
                        out.note(format!("warning: {w}"));
                    }
                }
            }
            // The very leftovers an earlier `list` could not remove: not tried again (its lock
            // would fail an `install --no-wait` beside it for nothing), still said.
            if !unrecovered.is_empty() {
                out.note(format!(
                    "warning: leftovers of an interrupted run that an earlier recovery could not \
                     remove are still in {}: {}; the next install or removal tries again",
                    root.display(),
                    unrecovered.join(", ")
                ));
            }
            (registry, root)
        }
        None => (
            crate::store::Registry::default(),
            a.store.state_dir.join(crate::store::STORE_DIR),
        ),
    };
    // The delisting flags come from the cached indexes, verified against the keys the sources'
    // configuration pins; without a configuration that can be read (refused, left behind by an
    // earlier build, corrupt) there are none, and `list` says so rather than showing every
    // plugin as listed: a warning (stderr; `sources_error` in JSON), the plugins all the same.
    let mut sources_error = None;
    let configured = if reg.plugins.values().any(|p| p.source.starts_with("index:")) {
        Places::new(&a.store.state_dir, a.sources.sources_dir.as_deref())
            .and_then(|places| Sources::load(&places))
            .unwrap_or_else(|e| {
                let cmd = e.into_cmd();
                out.note(format!(
                    "warning: delisted plugins cannot be flagged: {}",
                    cmd.chain().join(": ")
                ));
                sources_error = Some(cmd.to_json_item());
                Sources::default()
            })
    } else {
        Sources::default()
    };
    // Each source's cached index, read once. One that is there but cannot be used (damaged,
    // not verifying against the pinned key) is said — a warning (stderr) and `index_errors` in
    // JSON — rather than taken for "nothing delisted": its plugins are listed all the same.
    let mut indexes: BTreeMap<&str, Option<stockade_trust::index::Index>> = BTreeMap::new();
    let mut index_errors = Vec::new();
    for src in reg
        .plugins
        .values()
        .filter_map(|p| p.source.strip_prefix("index:"))
    {
        if indexes.contains_key(src) {
            continue;
        }
        let idx = sources::cached(&a.store.state_dir, &configured, src).unwrap_or_else(|e| {
            // A cache this user may not read (the packaged layout's `indexes` is 0700 the
            // state directory owner's) is no damage, and this user's refresh cannot help.
            let hint = if e.denied {
                "this user may not read the index cache, which is the state directory owner's: \
                 run `stockade list` as root or as that user to see delisting flags"
            } else {
                "run `stockade source refresh` to fetch and verify it again"
            };
            out.note(format!(
                "warning: plugins from source `{src}` cannot be checked for delisting: {e} ({hint})"
            ));
            index_errors.push(json!({
                "source": src,
                "message": e.to_string(),
                "hint": hint,
            }));
            None
        });
        indexes.insert(src, idx);
    }
    let mut items = Vec::new();
    for p in reg.plugins.values() {
        let required_by = reg
            .plugins
            .values()
            .filter(|o| o.requires.contains_key(&p.name))
            .map(|o| format!("{} {}", o.name, o.version))
            .collect();
        let delisted = p
            .source
            .strip_prefix("index:")
            .and_then(|src| indexes.get(src)?.as_ref())
            .and_then(|idx| sources::delisted_in(idx, &p.name));
        items.push(ListItem {
            installed: p.clone(),
            delisted,
            required_by,
            package: crate::store::object_dir_in(&root, p)
                .join(PACKAGE_FILE)
                .display()
                .to_string(),
        });
    }
    let doc = json!({
        "plugins": items,
        "sources_error": sources_error,
        "index_errors": index_errors,
    });
    out.emit(&doc, |_| {
        if items.is_empty() {
            return "no plugins installed".into();
        }
        let mut t = format!(
            "{:<24} {:<12} {:<14} {:<18} {}\n",
            "NAME", "VERSION", "SIGNATURE", "SIGNER", "REQUIRES"
        );
        for i in &items {
            let p = &i.installed;
            // The registry holds what verified packages and indexes said: names, versions and
            // a delisting reason are the publishers' words, escaped for the terminal.
            let req: Vec<String> = p
                .requires
                .iter()
                .map(|(n, r)| format!("{} {}", term(n), term(r)))
                .collect();
            t.push_str(&format!(
                "{:<24} {:<12} {:<14} {:<18} {}\n",
                term(&p.name),
                term(&p.version),
                term(&p.signature_status),
                term(p.signer_key_id.as_deref().unwrap_or("-")),
                if req.is_empty() {
                    "-".into()
                } else {
                    req.join(", ")
                }
            ));
            if let Some(d) = &i.delisted {
                t.push_str(&format!("  DELISTED: {} (no updates)\n", term(d)));
            }
        }
        t
    });
    Ok(Exit::Ok)
}

/// Run `stockade remove`.
pub fn remove(a: RemoveArgs, out: Output) -> Result<Exit, CmdError> {
    let defaults = operator_defaults(&a.root.policy_root)?;
    let log = AuditLog::from_policy(&defaults.audit);
    // No store is made for a removal: without one nothing is installed.
    let store =
        Store::open_existing(&a.store.state_dir, a.store.lock.no_wait).map_err(store_err)?;
    let Some((mut store, p)) = store.and_then(|(st, _)| {
        let p = st.registry().plugins.get(&a.id).cloned()?;
        Some((st, p))
    }) else {
        return Err(CmdError::msg(
            Exit::NotInstalled,
            "store.not_installed",
            format!("no plugin named `{}` is installed", a.id),
        )
        .hint("`stockade list` shows what is installed"));
    };
    let installed = registry_nodes(store.registry())?;
    let needed_by: Vec<String> = deps::dependents(&installed, &a.id)
        .into_iter()
        .map(|(who, req)| format!("{who} (requires {} {req})", a.id))
        .collect();
    if !needed_by.is_empty() && !a.force {
        let mut rec = Record::new(Event::Removal, "refused");
        rec.plugin = Some(p.name.clone());
        rec.version = Some(p.version.clone());
        rec.detail = json!({"kind": "store.in_use", "needed_by": needed_by});
        append_or_fail(&log, rec)?;
        return Err(CmdError::msg(
            Exit::InUse,
            "store.in_use",
            format!(
                "{} {} is needed by {}",
                p.name,
                p.version,
                needed_by.join(", ")
            ),
        )
        .hint("remove those first, or pass --force"));
    }
    let mut rec = Record::new(Event::Removal, BEGUN);
    rec.plugin = Some(p.name.clone());
    rec.version = Some(p.version.clone());
    rec.package_sha256 = Some(p.package_sha256.clone());
    rec.detail = json!({"forced": a.force, "broken_dependents": needed_by});
    // As a verification record says it ([`crate::audit::for_report`]): a signer a trust mode
    // below strict let through unproven is only claimed — by the same rule
    // ([`crate::audit::signer_proven`]); a status this build cannot read proves nothing.
    let proven =
        SignatureStatus::from_name(&p.signature_status).is_some_and(crate::audit::signer_proven);
    if proven {
        rec.signer_chain = p.signer_chain.clone();
    } else {
        rec.detail["claimed_signer_chain"] = json!(p.signer_chain);
    }
    let audit_error = commit_audited(&log, vec![rec], || {
        store.remove(std::slice::from_ref(&a.id)).map(drop)
    })?;
    warn_left_behind(&store);
    note_audit_error(out, "removed", audit_error.as_ref());
    let report = json!({"removed": {"name": p.name, "version": p.version}, "broken_dependents": needed_by, "audit_error": audit_error});
    out.emit(&report, |_| {
        let mut t = format!("removed {} {}\n", term(&p.name), term(&p.version));
        for n in &needed_by {
            t.push_str(&format!(
                "warning: {} is now missing a dependency\n",
                term(n)
            ));
        }
        t
    });
    Ok(Exit::Ok)
}

#[derive(Debug, Serialize)]
struct VerifyItem {
    name: String,
    version: String,
    /// `signature_status` now (re-verified against today's trust roots and revocation list).
    signature_status: Option<String>,
    /// The verification error, if the stored package no longer verifies.
    error: Option<serde_json::Value>,
    /// Differences between the installed tree and the signed file map.
    problems: Vec<TreeProblem>,
    ok: bool,
}

/// One installed plugin checked, not yet reported: what `verify` prints of it, its audit record,
/// and the exit status it calls for (0, 105 or its verification failure's code).
struct Checked {
    item: VerifyItem,
    record: Record,
    exit: Exit,
}

/// Verify the stored package of `p` in object directory `obj` (the whole verification, against
/// today's trust roots and revocation list), its digest against the registry, and its tree
/// (made by `owner`) against the signed file map.
fn check_installed(
    p: &Installed,
    obj: &Path,
    owner: u32,
    cfg: &crate::trustdir::TrustConfig,
    node: &NodeIdentity,
) -> Result<Checked, CmdError> {
    let work = tempfile::tempdir().map_err(|e| CmdError::new(Exit::IoErr, "store.io", e))?;
    let mut item = VerifyItem {
        name: p.name.clone(),
        version: p.version.clone(),
        signature_status: None,
        error: None,
        problems: Vec::new(),
        ok: false,
    };
    let pkg = match open_verified_in(&obj.join(PACKAGE_FILE), cfg, node, unix_now(), work.path()) {
        Err(e) => {
            item.error = Some(
                json!({"kind": e.kind(), "code": e.exit().code(), "message": crate::package::verify::error_chain(&e)}),
            );
            let mut record = Record::new(Event::Verification, "refused");
            record.plugin = Some(p.name.clone());
            record.version = Some(p.version.clone());
            record.detail = json!({"installed": true, "kind": e.kind(), "error": e.to_string()});
            return Ok(Checked {
                item,
                record,
                exit: e.exit(),
            });
        }
        Ok(pkg) => pkg,
    };
    item.signature_status = Some(crate::output::enum_str(&pkg.report.signature_status));
    if pkg.report.package_sha256 != p.package_sha256 {
        item.problems.push(TreeProblem::Changed {
            path: PACKAGE_FILE.into(),
            what: format!(
                "sha256 {}, installed {}",
                pkg.report.package_sha256, p.package_sha256
            ),
        });
    }
    item.problems.extend(check_tree_of(
        &obj.join(crate::store::TREE_DIR),
        &pkg.files,
        owner,
    ));
    item.ok = item.problems.is_empty();
    let mut record = for_report(
        Event::Verification,
        if item.ok { "ok" } else { "tampered" },
        &pkg.report,
    );
    record.detail["installed"] = json!(true);
    record.detail["problems"] = json!(item.problems);
    let exit = if item.ok { Exit::Ok } else { Exit::Tampered };
    Ok(Checked { item, record, exit })
}

/// The status of a `verify` of several plugins so far (`exit`) once `next` is added: the first
/// verification failure's code, else 105 if a tree changed, else 108 if a plugin's own entry or
/// directory kept changing while it was checked, else 0.
fn first_failure(exit: Exit, next: Exit) -> Exit {
    let rank = |e: Exit| match e {
        Exit::Ok => 0,
        Exit::StoreLocked => 1,
        Exit::Tampered => 2,
        _ => 3,
    };
    if rank(next) > rank(exit) {
        next
    } else {
        exit
    }
}

/// `stockade verify [ID]` for installed plugins: re-run the whole verification of each stored
/// package, check its digest against the registry, and compare the installed tree with the signed
/// file map. Exit: the first verification failure's code, else 105 if a tree changed, else 0
/// (108 for a plugin whose own registry entry or directory changed during each of its checks).
pub fn verify_installed(a: VerifyArgs, id: Option<String>, out: Output) -> Result<Exit, CmdError> {
    let (log, cfg, node) = verify_context(&a.trust, &a.root.policy_root)?;
    // Never recovered or made: verifying changes nothing, and whoever can read the state
    // directory may do it (the daemon's user on root's store), without the store's lock when
    // it is not that user's: a finding is confirmed against the registry read again, so an
    // install or removal done meanwhile is never reported as one (`StoreView::settle`).
    let store = Store::view(&cfg.state_dir).map_err(store_err)?;
    let targets: Vec<Installed> = store
        .iter()
        .flat_map(|s| s.registry().plugins.values())
        .filter(|p| id.as_ref().is_none_or(|id| &p.name == id))
        .cloned()
        .collect();
    let not_installed = |id: &String| store_err(StoreError::NotInstalled(id.clone()));
    if let (Some(id), true) = (&id, targets.is_empty()) {
        return Err(not_installed(id));
    }
    let mut items = Vec::new();
    let mut removed = Vec::new();
    let mut exit = Exit::Ok;
    // Targets come from a store: there is one when there are any.
    for (p, s) in targets.iter().filter_map(|p| Some((p, store.as_ref()?))) {
        let settled = s
            .settle(
                p,
                |p, obj| check_installed(p, obj, s.owner(), &cfg, &node),
                |c| c.as_ref().map_or(true, |c| c.item.ok),
            )
            .map_err(store_err)?;
        match settled {
            Settled::Current(_, checked) => {
                let c = checked?;
                append_or_fail(&log, c.record)?;
                exit = first_failure(exit, c.exit);
                items.push(c.item);
            }
            Settled::Removed(p) => {
                out.note(format!(
                    "{} {} was removed while it was verified",
                    p.name, p.version
                ));
                removed.push(p.name);
            }
            Settled::Busy(p) => {
                let why = format!(
                    "it was installed or removed again while each of the {} checks of it ran \
                     (its registry entry or its directory changed): no verdict yet; verify \
                     again",
                    crate::store::SETTLE_ROUNDS
                );
                items.push(VerifyItem {
                    name: p.name,
                    version: p.version,
                    signature_status: None,
                    error: Some(json!({"kind": "store.locked", "code": Exit::StoreLocked.code(), "message": why})),
                    problems: Vec::new(),
                    ok: false,
                });
                exit = first_failure(exit, Exit::StoreLocked);
            }
        }
    }
    // The one plugin asked for was removed meanwhile: it is not installed (any more).
    if let (Some(id), true) = (&id, items.is_empty()) {
        return Err(not_installed(id));
    }
    out.emit(
        &json!({ "plugins": items, "removed_while_verifying": removed }),
        |_| {
            let mut t = String::new();
            if items.is_empty() {
                t.push_str("no plugins installed\n");
            }
            for i in &items {
                let verdict = if i.ok { "ok" } else { "FAILED" };
                t.push_str(&format!(
                    "{} {}: {verdict} (signature_status {})\n",
                    term(&i.name),
                    term(&i.version),
                    i.signature_status.as_deref().unwrap_or("-")
                ));
                if let Some(e) = &i.error {
                    t.push_str(&format!(
                        "  verification: {}\n",
                        term(e["message"].as_str().unwrap_or(""))
                    ));
                }
                for pr in &i.problems {
                    t.push_str(&format!("  {}\n", term(&pr.to_string())));
                }
            }
            t
        },
    );
    // The report above carries every failure; the status says which kind came first.
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tempfile's error for a directory it could not make names the `/proc/self/fd` path it
    /// was given; the operator is told the OS error (its text and kind, the errno's) in the
    /// staging directory instead — not "other error", not the descriptor's path.
    #[test]
    fn a_work_directory_error_keeps_its_os_error_and_names_the_staging_directory() {
        let e = tempfile::Builder::new()
            .tempdir_in("/proc/self/fd/999999/nowhere")
            .unwrap_err();
        assert!(e.to_string().contains("/proc/self/fd/"), "{e}");
        let shown = os_error_in(e, Path::new("/var/lib/stockade/store/staging/install-x"));
        let text = shown.to_string();
        assert_eq!(shown.kind(), std::io::ErrorKind::NotFound, "{text}");
        assert!(!text.contains("/proc/self/fd"), "{text}");
        assert!(text.contains("(os error 2)"), "{text}");
        assert!(
            text.ends_with(" in /var/lib/stockade/store/staging/install-x"),
            "{text}"
        );
    }
}
