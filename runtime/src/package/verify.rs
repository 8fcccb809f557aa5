//! The fail-closed verification pipeline, in one readable function ([`open_verified_in`]).
//!
//! Order (each step stops at the first failure with its own error and exit code, see
//! `exit.rs` 80–87):
//! 1. size caps and strict container/statement syntax — the file is opened once, `fstat`ed and
//!    read with a cap through that one descriptor; nothing is re-opened afterwards;
//! 2. the developer's signature over the exact `statement.json` bytes read (and `--pub`);
//! 3. the chain: developer ← intermediate ← a pinned root, kinds, bounds;
//! 4. validity windows of both certificates at `now`;
//! 5. revocation (signed, unexpired, not rolled back, not deleted after being seen);
//! 6. scope against this node and requested capabilities against the ceiling;
//! 7. the payload digest and the signed file map's structural rules;
//! 8. safe extraction into a private 0700 directory, checking every file against the map.
//!
//! `stockade run` takes the pipeline in two parts: [`check_in`] (steps 1–7 and the directory)
//! gives a [`CheckedPackage`], from which the launch is decided and the sandbox built while
//! [`CheckedPackage::extract`] (step 8) runs; only that returns the [`VerifiedPackage`].
//!
//! Trust modes: `warn` turns failures of steps 2–6 into warnings (the report's
//! `signature_status` says which), `disabled` skips them. Steps 1, 7 and 8 protect the host and
//! are never downgraded. No plugin code runs in any step.

use super::container::{self, MAX_PACKAGE_BYTES};
use super::errors::{
    ChainStepError, FileMapError, RevocationError, ScopeError, SignatureError, VerifyError,
};
use super::extract::{extract, reserve, Limits, Reserved};
use super::report::{CertInfo, Report, SignatureStatus, Step, StepStatus};
use super::trees::{check_kept, KeptTree, Trees, WorkDir};
use crate::fileio::read_capped;
use crate::node::NodeIdentity;
use crate::state::RevocationState;
use crate::trustdir::{TrustConfig, TrustMode};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use stockade_policy::capability::{Capability, Scope};
use stockade_policy::manifest::ValidatedManifest;
use stockade_trust::cert::{CertError, Certificate};
use stockade_trust::chain::{check_validity, verify_chain};
use stockade_trust::crl::{RevocationList, Seen};
use stockade_trust::license::LicenseState;
use stockade_trust::minisign::{KeyId, Signature};
use stockade_trust::statement::Statement;

/// Where a package's files are.
#[derive(Debug)]
pub enum PackageDir {
    /// A private directory made for this use (removed on drop).
    Fresh(FreshDir),
    /// A private work directory among the kept trees (removed on drop unless kept).
    Work(WorkDir),
    /// A tree kept from an earlier run of the same package ([`super::trees`]).
    Kept(KeptTree),
}

impl PackageDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            PackageDir::Fresh(d) => &d.tree,
            PackageDir::Work(w) => w.dir.path(),
            PackageDir::Kept(k) => k.path(),
        }
    }

    /// Leave the directory where it is, for the caller to rename away before the
    /// [`KeptDir`] is dropped. The [`KeptDir`] holds the directory as it was held until then:
    /// locked until the caller is done (a fresh directory against the sweep of this user's
    /// leftovers; a work directory or kept tree among the trees against another run's eviction
    /// and sweep, which would otherwise remove it between this and the caller's rename), and
    /// what is left of it then goes as it would have (a fresh directory's private parent, and
    /// the tree if the caller could not move it; a work directory not moved; a kept tree not
    /// moved stays a kept tree).
    pub fn keep(self) -> KeptDir {
        KeptDir {
            path: self.path().to_path_buf(),
            _held: self,
        }
    }

    /// The path the sandbox binds the directory from and, when that path may pass through a
    /// directory another user owns (the trees, under the state directory), the device and inode
    /// it must be there: what the runtime wrote or checked through its descriptors.
    pub fn bind_source(&self) -> (&Path, Option<(u64, u64)>) {
        match self {
            PackageDir::Fresh(d) => (&d.tree, None),
            PackageDir::Work(w) => w.bind_source(),
            PackageDir::Kept(k) => k.bind_source(),
        }
    }

    /// Whether the files are a kept tree (checked file by file, not extracted).
    pub fn is_kept(&self) -> bool {
        matches!(self, PackageDir::Kept(_))
    }
}

/// A package that passed verification, extracted into a private directory (removed on drop) or
/// checked in a kept tree.
#[derive(Debug)]
pub struct VerifiedPackage {
    /// The package's files.
    pub dir: PackageDir,
    /// The validated manifest.
    pub manifest: ValidatedManifest,
    /// The developer certificate (if it parsed).
    pub developer: Option<Certificate>,
    /// The intermediate certificate (if it parsed).
    pub intermediate: Option<Certificate>,
    /// The report.
    pub report: Report,
    /// The signed file map the extracted tree was checked against (the store keeps checking it).
    pub files: std::collections::BTreeMap<String, stockade_trust::statement::FileEntry>,
}

/// Verify `path` and extract it under the system temp directory.
pub fn open_verified(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
) -> Result<VerifiedPackage, VerifyError> {
    open_verified_in(path, cfg, node, now, &std::env::temp_dir())
}

/// Tracks step outcomes and applies the trust mode to steps 2–6.
struct Steps<'a> {
    mode: TrustMode,
    report: &'a mut Report,
}

impl Steps<'_> {
    fn pass(&mut self, step: u8, name: &'static str, detail: String) {
        self.report.steps.push(Step {
            step,
            name,
            status: StepStatus::Pass,
            detail,
        });
    }
    fn skip(&mut self, step: u8, name: &'static str, detail: &str) {
        self.report.steps.push(Step {
            step,
            name,
            status: StepStatus::Skipped,
            detail: detail.into(),
        });
    }
    /// A trust-step failure: an error in strict mode; a warning (and the status) in warn mode.
    fn trust_fail(
        &mut self,
        step: u8,
        name: &'static str,
        status: SignatureStatus,
        err: VerifyError,
    ) -> Result<(), VerifyError> {
        let detail = error_chain(&err);
        if self.mode == TrustMode::Warn {
            self.report.steps.push(Step {
                step,
                name,
                status: StepStatus::Warn,
                detail: detail.clone(),
            });
            self.report.warnings.push(format!(
                "step {step} ({name}) failed, continuing because --trust-mode warn: {detail}"
            ));
            if self.report.signature_status == SignatureStatus::Verified {
                self.report.signature_status = status;
            }
            Ok(())
        } else {
            self.report.steps.push(Step {
                step,
                name,
                status: StepStatus::Fail,
                detail,
            });
            Err(err)
        }
    }
}

/// The error and its causes on one line, for report details.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

const TRUST_STEPS: [(u8, &str); 5] = [
    (2, "signature"),
    (3, "chain"),
    (4, "validity"),
    (5, "revocation"),
    (6, "scope"),
];

/// The whole pipeline; extraction goes into a new private directory under `work_parent`.
pub fn open_verified_in(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
    work_parent: &Path,
) -> Result<VerifiedPackage, VerifyError> {
    check_in(path, cfg, node, now, work_parent, None)?.extract()
}

/// The whole pipeline for `stockade serve`: extraction into a work directory among the trees
/// of the state directory (`<state>/trees/.work-<pid>-…`, [`Trees::work_dir`]), whether or not
/// trees are kept, locked for as long as the package is loaded; so a daemon that is SIGKILLed
/// leaves its packages where the next one's [`Trees::sweep_leftovers`] removes them, not in
/// the temp directory, which nothing sweeps. Without a state directory, or when this uid's
/// trees directory cannot be used (a state directory the sandbox's init cannot search, as
/// root's on the service user's 0750 one: docs/store.md; a trees directory not this uid's
/// alone), under `work_parent` as before, with a warning in the report when the state
/// directory exists but cannot be used.
pub fn open_verified_among(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
    trees: &Trees,
    work_parent: &Path,
) -> Result<VerifiedPackage, VerifyError> {
    let mut checked = check(path, cfg, node, now)?;
    let work = trees.work_dir();
    let dir = match work {
        Ok(w) => PackageDir::Work(w),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            PackageDir::Fresh(private_dir(work_parent)?)
        }
        Err(e) => {
            checked.report.warnings.push(format!(
                "cannot extract under the state directory (a work directory among its trees: \
                 {e}); extracted into a temporary directory, which is not swept if the daemon \
                 is killed"
            ));
            PackageDir::Fresh(private_dir(work_parent)?)
        }
    };
    CheckedPackage { checked, dir }.extract()
}

/// What a launch is decided and prepared from: the signed manifest, the report, the package's
/// directory. A [`VerifiedPackage`] or, before its files are written, a [`CheckedPackage`].
#[derive(Debug, Clone, Copy)]
pub struct PackageView<'a> {
    /// The validated manifest.
    pub manifest: &'a ValidatedManifest,
    /// The report (steps 1–7 at least).
    pub report: &'a Report,
    /// The private directory the package is (or is being) extracted into, as this process
    /// reaches it.
    pub dir: &'a Path,
    /// Where the sandbox binds it from, and the device and inode it must be there
    /// ([`PackageDir::bind_source`]).
    pub bind: (&'a Path, Option<(u64, u64)>),
}

impl VerifiedPackage {
    /// Keep its work directory as the tree of this package (`stockade run`, once the plugin
    /// started from it): the next run checks it instead of extracting. A fresh directory, a
    /// kept tree, or a name another run took first stay as they are.
    pub fn keep_tree(self, trees: &Trees) -> VerifiedPackage {
        let dir = match self.dir {
            PackageDir::Work(w) => match trees.keep(
                &self.report.statement_sha256,
                w,
                super::trees::summary_of(&self.files).bytes,
            ) {
                Ok(k) => PackageDir::Kept(k),
                Err(w) => PackageDir::Work(w),
            },
            other => other,
        };
        VerifiedPackage { dir, ..self }
    }

    /// The view a launch is decided from.
    pub fn view(&self) -> PackageView<'_> {
        PackageView {
            manifest: &self.manifest,
            report: &self.report,
            dir: self.dir.path(),
            bind: self.dir.bind_source(),
        }
    }
}

/// A package past steps 1–7 — signature, chain, validity, revocation, scope, payload digest and
/// file map — with its private directory made and nothing extracted yet. `stockade run` decides
/// the launch from it and builds the sandbox while [`CheckedPackage::extract`] (step 8) writes the
/// files (cmd/run.rs); the program runs only after that returned a [`VerifiedPackage`].
#[derive(Debug)]
pub struct CheckedPackage {
    /// Its `dir` is `None`: the directory is this struct's own until step 8.
    checked: Checked,
    dir: PackageDir,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("name", &self.report.name)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

/// The smallest entrypoint [`CheckedPackage::reserve_entrypoint`] reserves. Building the sandbox
/// beside extraction saves at most the extraction's time, which is small for a small payload;
/// and a `#!` script (known only once written) cannot start from the sandbox built around it,
/// so `run` builds another one, a waste of ≈ 3 ms. Scripts are small, compiled programs are not
/// (a static "hello" in C is ≈ 750 KB, a dynamic one ≈ 16 KB).
pub const RESERVE_MIN_BYTES: u64 = 64 * 1024;

/// Steps 1–7 of [`open_verified_in`] and the package's directory: with `trees` (`stockade
/// run`), the tree kept from an earlier run of this very package (step 8 then checks it file
/// by file instead of extracting) or a work directory among the trees (kept once the plugin
/// started); else, or when no work directory can be made there (the report says why), a
/// private directory under `work_parent`.
pub fn check_in(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
    work_parent: &Path,
    trees: Option<&Trees>,
) -> Result<CheckedPackage, VerifyError> {
    let mut checked = check(path, cfg, node, now)?;
    let fresh = || private_dir(work_parent).map(PackageDir::Fresh);
    let dir = match trees.filter(|t| t.enabled()) {
        Some(t) => match t.find(&checked.report.statement_sha256) {
            Some(kept) => PackageDir::Kept(kept),
            None => match t.work_dir() {
                Ok(w) => PackageDir::Work(w),
                // No state directory (packaging makes it): nothing is kept, as with none.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh()?,
                // Out of the sandbox's reach (root on the service user's 0750 state
                // directory): by default that is the layout, not news (Trees::explicit).
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !t.is_explicit() => {
                    fresh()?
                }
                Err(e) => {
                    checked.report.warnings.push(format!(
                        "no tree can be kept for this package (a work directory under the \
                         state directory: {e}); extracted into a temporary directory"
                    ));
                    fresh()?
                }
            },
        },
        None => fresh()?,
    };
    Ok(CheckedPackage { checked, dir })
}

/// A package directory left in place by [`PackageDir::keep`]: the caller renames [`KeptDir::path`]
/// away (`verify --extract-to`, a store's install) before dropping it; the directory stays held
/// (locked) until then, and what is left of it goes with the drop.
#[derive(Debug)]
pub struct KeptDir {
    path: std::path::PathBuf,
    _held: PackageDir,
}

impl KeptDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A private extraction directory outside the trees (`$TMPDIR`, a store's staging directory):
/// `<parent>/stockade-pkg-<pid>-<random>/tree`, under a shared `flock` of
/// `stockade-pkg-<pid>-<random>` for as long as it is used. A process killed before its drop
/// (SIGKILL: an agent's timeout) leaves it; the maker's pid and the lock let the next
/// [`private_dir`] in the same parent tell such a leftover from a directory in use — on a tmpfs
/// `/tmp` each one held a whole extracted package in memory until reboot.
///
/// Why the tree is one level down: `run` opens the tree up to 0755 for the plugin's uid, and
/// `flock` needs nothing but a descriptor, so a lock on the tree itself could be taken and held
/// for ever by any user who can search `$TMPDIR` (`/tmp`: everyone), and the sweep never
/// removed a killed run's tree. The directory locked stays 0700 and this user's, so only this
/// user (and root) can open it: the same rule as the kept trees' lock files
/// (`trees::TreeLock`), here without a file, the directory being private for good. The
/// sandbox's init binds the tree as this user, who may search its own 0700 directory; the
/// plugin reads it through the bind. An earlier build's leftover (the tree itself named
/// `stockade-pkg-<pid>-<random>`) is swept by the same rule, its own lock taken as before.
#[derive(Debug)]
pub struct FreshDir {
    tree: std::path::PathBuf,
    /// Removed on drop, before the lock is released (fields drop in order).
    _dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// The extraction directory's name in a [`FreshDir`].
const FRESH_TREE: &str = "tree";

/// What [`FreshDir`]s are named with, before `<pid>-<random>`.
const FRESH_PREFIX: &str = "stockade-pkg-";

/// A new private (0700) extraction directory under `parent`, after removing the leftovers of
/// this user's killed runs there ([`sweep_fresh_leftovers`]).
fn private_dir(parent: &Path) -> Result<FreshDir, VerifyError> {
    sweep_fresh_leftovers(parent);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{FRESH_PREFIX}{}-", std::process::id()))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(VerifyError::Workdir)?;
    let lock = super::trees::lock_dir_shared(dir.path()).map_err(VerifyError::Workdir)?;
    let tree = dir.path().join(FRESH_TREE);
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&tree)
        .map_err(VerifyError::Workdir)?;
    Ok(FreshDir {
        tree,
        _dir: dir,
        _lock: lock,
    })
}

/// Remove this user's extraction directories in `parent` that no process holds a lock on and
/// that are stale by the trees' rules (`fileio::leftover_is_stale`: the maker's pid gone, or
/// older than a minute). Names without a pid are an earlier build's, which took no lock: one may
/// be a long `run` session's package still in use, so they are left. Another user's are never
/// touched (in a sticky `/tmp` they could not be anyway); errors are ignored: a sweep is tidying,
/// never a reason to fail a run.
fn sweep_fresh_leftovers(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    super::trees::sweep_unlocked(
        parent,
        &[FRESH_PREFIX],
        |name, age, m| {
            let Some(rest) = name.strip_prefix(FRESH_PREFIX) else {
                return false;
            };
            // The metadata is the entry's own (a symlink not followed): only a real directory
            // of ours.
            crate::fileio::leftover_maker(rest).is_some()
                && m.is_dir()
                && m.uid() == me
                && crate::fileio::leftover_is_stale(rest, age)
        },
        super::trees::remove_dir_if_unlocked,
    );
}

impl CheckedPackage {
    /// The view a launch is decided from (the report has steps 1–7).
    pub fn view(&self) -> PackageView<'_> {
        PackageView {
            manifest: &self.checked.statement.manifest,
            report: &self.checked.report,
            dir: self.dir.path(),
            bind: self.dir.bind_source(),
        }
    }

    /// Make the entrypoint's file now, empty (and its parent directories), so that a launch can
    /// open it before step 8 writes it; step 8 then fills that same file. Returns its path, or
    /// `None` when there is nothing to reserve — the caller then extracts first: an HTTP plugin
    /// (its program is the runtime), an entrypoint the signed map does not list as an
    /// executable regular file (a symlink is resolved on the extracted tree), or one smaller
    /// than [`RESERVE_MIN_BYTES`]. At most once.
    pub fn reserve_entrypoint(&mut self) -> Result<Option<std::path::PathBuf>, VerifyError> {
        let manifest = &self.checked.statement.manifest;
        if manifest.http().is_some() || self.checked.reserved.is_some() {
            return Ok(None);
        }
        let entry = manifest.entrypoint();
        match self.checked.statement.files.get(entry) {
            Some(stockade_trust::statement::FileEntry::File { mode, size, .. })
                if mode & 0o111 != 0 && *size >= RESERVE_MIN_BYTES => {}
            _ => return Ok(None),
        }
        // A kept tree has the file already: step 8 checks it (and that it is this one).
        if self.dir.is_kept() {
            return Ok(Some(self.dir.path().join(entry)));
        }
        let r = reserve(self.dir.path(), entry).map_err(VerifyError::Extract)?;
        let path = self.dir.path().join(r.path());
        self.checked.reserved = Some(r);
        Ok(Some(path))
    }

    /// Step 8: extract and check every file; the package is verified once this returns.
    pub fn extract(self) -> Result<VerifiedPackage, VerifyError> {
        let CheckedPackage { mut checked, dir } = self;
        checked.dir = Some(dir);
        verified_package(checked.extract()?)
    }
}

fn verified_package(v: Verified) -> Result<VerifiedPackage, VerifyError> {
    let dir = v.dir.ok_or_else(|| {
        VerifyError::Workdir(std::io::Error::other("no extraction directory was made"))
    })?;
    Ok(VerifiedPackage {
        dir,
        manifest: v.manifest,
        developer: v.developer,
        intermediate: v.intermediate,
        report: v.report,
        files: v.files,
    })
}

/// Every step of [`open_verified_in`], with step 8 checking every entry of the payload against
/// the signed map exactly as extraction does (paths, types, limits, sizes, digests, the
/// manifest) but writing nothing: what `stockade verify` without `--extract-to` needs, without
/// the cost of writing the tree and removing it again (≈ 50 ms per 100 MB here).
pub fn verify_only(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
) -> Result<Report, VerifyError> {
    Ok(check(path, cfg, node, now)?.extract()?.report)
}

/// What the pipeline produced; `dir` is `None` when nothing was to be written.
struct Verified {
    dir: Option<PackageDir>,
    manifest: ValidatedManifest,
    developer: Option<Certificate>,
    intermediate: Option<Certificate>,
    report: Report,
    files: std::collections::BTreeMap<String, stockade_trust::statement::FileEntry>,
}

/// Steps 1–7 passed, step 8 to come: into `dir` when the caller gave one ([`check_in`]), else
/// checked without writing.
struct Checked {
    dir: Option<PackageDir>,
    payload: Vec<u8>,
    statement: Statement,
    developer: Option<Certificate>,
    intermediate: Option<Certificate>,
    report: Report,
    reserved: Option<Reserved>,
}

/// A failed step 7 or 8 in the report, and its error.
fn fail(report: &mut Report, step: u8, name: &'static str, err: VerifyError) -> VerifyError {
    report.steps.push(Step {
        step,
        name,
        status: StepStatus::Fail,
        detail: error_chain(&err),
    });
    err
}

/// Steps 1–7 of the pipeline (module docs).
fn check(
    path: &Path,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
) -> Result<Checked, VerifyError> {
    // Step 1: one open, one fstat, one capped read; then strict container and statement syntax.
    let bytes = read_capped(path, MAX_PACKAGE_BYTES).map_err(VerifyError::Read)?;
    let c = container::parse(&bytes).map_err(VerifyError::Container)?;
    let runtime_version = runtime_version();
    // The two whole-file digests — the package's (report, audit, store) and the payload's
    // (report, checked in step 7) — cover nearly the same bytes. Each is computed once; for a
    // large package side by side (one on a scoped thread, one here), for a small one in turn.
    let (package_digest, payload_digest) = if bytes.len() >= PARALLEL_DIGESTS_MIN {
        std::thread::scope(|s| {
            let package = s.spawn(|| Sha256::digest(&bytes));
            let payload = Sha256::digest(&c.payload);
            // A digest does not panic; if the thread somehow did, compute it here instead.
            let package = package.join().unwrap_or_else(|_| Sha256::digest(&bytes));
            (package, payload)
        })
    } else {
        (Sha256::digest(&bytes), Sha256::digest(&c.payload))
    };
    let statement =
        Statement::parse(&c.statement, &runtime_version).map_err(VerifyError::Statement)?;
    let mut report = Report {
        file: path.display().to_string(),
        trust_mode: cfg.mode,
        signature_status: SignatureStatus::Verified,
        steps: Vec::new(),
        warnings: Vec::new(),
        name: statement.manifest.name().to_string(),
        version: statement.manifest.version().to_string(),
        package_sha256: hex::encode(package_digest),
        statement_sha256: hex::encode(Sha256::digest(&c.statement)),
        payload_sha256: hex::encode(payload_digest),
        file_count: statement.files.len(),
        signer_key_id: None,
        trusted_comment: None,
        chain: Vec::new(),
        root_key_id: None,
        revocation_version: None,
        scope: None,
        capability_ceiling: Vec::new(),
        requested_capabilities: statement
            .manifest
            .requested_capabilities()
            .iter()
            .copied()
            .collect(),
        granted_capabilities: Vec::new(),
        extracted: None,
    };
    report.steps.push(Step {
        step: 1,
        name: "size caps and container",
        status: StepStatus::Pass,
        detail: format!(
            "{} bytes, 6 entries in order, statement canonical",
            bytes.len()
        ),
    });
    let dev = Certificate::parse(&c.developer_cert);
    let int = Certificate::parse(&c.intermediate_cert);
    for cert in [dev.as_ref().ok(), int.as_ref().ok()].into_iter().flatten() {
        report.chain.push(CertInfo::from(cert));
    }
    if let Ok(d) = &dev {
        report.scope = Some(d.body.scope.to_string());
        report.capability_ceiling = d.body.capabilities.clone();
    }
    let sig = Signature::parse(&String::from_utf8_lossy(&c.signature));
    if let Ok(s) = &sig {
        report.signer_key_id = Some(s.key_id.to_string());
        report.trusted_comment = Some(s.trusted_comment.clone());
    }

    let mut steps = Steps {
        mode: cfg.mode,
        report: &mut report,
    };
    if cfg.mode == TrustMode::Disabled {
        steps.report.signature_status = SignatureStatus::Skipped;
        for (n, name) in TRUST_STEPS {
            steps.skip(n, name, "trust mode disabled");
        }
        steps.report.warnings.push("trust mode disabled: signature, chain, validity, revocation and scope were not checked".into());
    } else {
        // Step 2: the developer's signature over the exact statement bytes.
        let r = check_signature(&c, &dev, cfg);
        match r {
            Ok(id) => steps.pass(
                2,
                "signature",
                format!(
                    "statement signed by developer key {id} (verify_strict, ED + trusted comment)"
                ),
            ),
            Err(e) => steps.trust_fail(
                2,
                "signature",
                SignatureStatus::Invalid,
                VerifyError::Signature(e),
            )?,
        }
        // Step 3: chain.
        let chain = match (&dev, &int) {
            (Ok(d), Ok(i)) => verify_chain(d, i, &cfg.root_keys()).map_err(ChainStepError::Chain),
            (Err(_), _) => Err(ChainStepError::DeveloperCert(cert_error(&c.developer_cert))),
            (_, Err(_)) => Err(ChainStepError::IntermediateCert(cert_error(
                &c.intermediate_cert,
            ))),
        };
        match chain {
            Ok(ok) => {
                steps.report.root_key_id = Some(ok.root.to_string());
                let (d, i) = (dev.as_ref().ok(), int.as_ref().ok());
                steps.pass(
                    3,
                    "chain",
                    format!(
                        "developer {} ({}) <- intermediate {} ({}) <- root {}",
                        d.map_or("", |d| d.body.subject.as_str()),
                        d.map_or("", |d| d.body.serial.as_str()),
                        i.map_or("", |i| i.body.subject.as_str()),
                        i.map_or("", |i| i.body.serial.as_str()),
                        ok.root
                    ),
                );
            }
            Err(e) => steps.trust_fail(
                3,
                "chain",
                SignatureStatus::Untrusted,
                VerifyError::Chain(e),
            )?,
        }
        // Step 4: validity.
        let certs: Vec<&Certificate> = [dev.as_ref().ok(), int.as_ref().ok()]
            .into_iter()
            .flatten()
            .collect();
        match check_validity(&certs, now) {
            Ok(()) => steps.pass(
                4,
                "validity",
                format!("{} certificates valid at {now}", certs.len()),
            ),
            Err(e) => steps.trust_fail(
                4,
                "validity",
                SignatureStatus::Expired,
                VerifyError::Validity(e),
            )?,
        }
        // Step 5: revocation.
        match check_revocation(cfg, &certs, now) {
            Ok(Some(v)) => {
                steps.report.revocation_version = Some(v);
                steps.pass(
                    5,
                    "revocation",
                    format!("revocation list version {v}: no certificate revoked"),
                );
            }
            Ok(None) => {
                steps.skip(5, "revocation", "not configured");
                steps.report.warnings.push(
                    "revocation: not configured (no revocations.json in the trust directory)"
                        .into(),
                );
            }
            Err(e) => steps.trust_fail(
                5,
                "revocation",
                SignatureStatus::Revoked,
                VerifyError::Revocation(e),
            )?,
        }
        // Step 6: scope and capabilities.
        match dev.as_ref() {
            Ok(d) => match check_scope(d, &statement.manifest, node, cfg, now) {
                Ok(detail) => steps.pass(6, "scope", detail),
                Err(e) => steps.trust_fail(
                    6,
                    "scope",
                    SignatureStatus::OutOfScope,
                    VerifyError::Scope(e),
                )?,
            },
            Err(_) => steps.skip(6, "scope", "no readable developer certificate"),
        }
    }
    if let Ok(d) = &dev {
        let ceiling: BTreeSet<Capability> = d.capabilities();
        report.granted_capabilities = statement
            .manifest
            .requested_capabilities()
            .intersection(&ceiling)
            .copied()
            .collect();
    }
    // Step 7: payload digest and map structure. Never downgraded.
    let found = payload_digest;
    if c.payload.len() as u64 != statement.payload_size {
        return Err(fail(
            &mut report,
            7,
            "file map",
            VerifyError::FileMap(FileMapError::PayloadSize {
                found: c.payload.len() as u64,
                signed: statement.payload_size,
            }),
        ));
    }
    if found[..] != statement.payload_sha256 {
        return Err(fail(
            &mut report,
            7,
            "file map",
            VerifyError::FileMap(FileMapError::PayloadDigest {
                found: hex::encode(found),
                signed: hex::encode(statement.payload_sha256),
            }),
        ));
    }
    statement.check_file_map().map_err(|e| {
        fail(
            &mut report,
            7,
            "file map",
            VerifyError::FileMap(FileMapError::Map(e)),
        )
    })?;
    report.steps.push(Step {
        step: 7,
        name: "file map",
        status: StepStatus::Pass,
        detail: format!(
            "payload sha256 {} matches; {} files; entrypoint and manifest.json present",
            hex::encode(found),
            statement.files.len()
        ),
    });
    Ok(Checked {
        dir: None,
        payload: c.payload,
        statement,
        developer: dev.ok(),
        intermediate: int.ok(),
        report,
        reserved: None,
    })
}

impl Checked {
    /// Step 8: safe extraction into the private directory (or the same checks, writing nothing).
    fn extract(self) -> Result<Verified, VerifyError> {
        let Checked {
            dir,
            payload,
            statement,
            developer,
            intermediate,
            mut report,
            reserved,
        } = self;
        let manifest_canonical = stockade_trust::canonical::to_vec(&statement.manifest_value)
            .map_err(|e| VerifyError::Workdir(std::io::Error::other(e)))?;
        // A kept tree is checked file by file; one that does not match is set aside and the
        // payload extracted again, into a new work directory.
        let (dir, reserved, kept) = match dir {
            Some(PackageDir::Kept(k)) => {
                match check_kept(k.path(), &statement.files, &manifest_canonical) {
                    Ok(summary) => (Some(PackageDir::Kept(k)), reserved, Some(summary)),
                    Err(mismatch) => {
                        report.warnings.push(format!(
                            "the tree kept for this package did not match its signed map \
                             ({mismatch}): set aside, the package extracted again"
                        ));
                        let work = k.discard_for_work().map_err(VerifyError::Workdir)?;
                        (Some(PackageDir::Work(work)), None, None)
                    }
                }
            }
            other => (other, reserved, None),
        };
        let extracted = match kept {
            Some(summary) => summary,
            None => extract(
                &payload,
                &statement.files,
                &manifest_canonical,
                dir.as_ref().map(PackageDir::path),
                reserved.as_ref(),
                &Limits::default(),
            )
            .map_err(|e| {
                // The map's own failures found on the way are step 7's, as their code (86) is.
                let (step, name) = match e.is_file_map() {
                    true => (7, "file map"),
                    false => (8, "extraction"),
                };
                fail(&mut report, step, name, VerifyError::Extract(e))
            })?,
        };
        report.steps.push(Step {
            step: 8,
            name: "extraction",
            status: StepStatus::Pass,
            detail: format!(
                "{} files, {} symlinks, {} bytes, every digest matches the signed map{}",
                extracted.files,
                extracted.symlinks,
                extracted.bytes,
                match &dir {
                    Some(d) if d.is_kept() => " (a kept tree, checked file by file)",
                    Some(_) => "",
                    None => " (checked, not written)",
                }
            ),
        });
        report.extracted = Some(extracted);
        Ok(Verified {
            dir,
            manifest: statement.manifest,
            developer,
            intermediate,
            report,
            files: statement.files,
        })
    }
}

/// From this package size on, the package's and the payload's digests are computed on two
/// threads. Below it, one after the other: starting the process's first thread costs more than
/// it saves. Measured on the benchmark VM (`perf stat -r 60 stockade verify`, both ways): the
/// 341 KB bench package 6.45 → 5.93–6.01 ms and a 1.4 MB one 9.36–9.56 → 8.79–9.08 ms in turn,
/// a 10 MB one equal either way (33–36 ms); 100 MB stays side by side (225–227 ms, as before).
const PARALLEL_DIGESTS_MIN: usize = 16 << 20;

/// This runtime's version (for `min_runtime_version`).
pub fn runtime_version() -> semver::Version {
    semver::Version::parse(env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

/// How [`recheck_trust`]'s warning begins: a package's status keeps only the latest one
/// (`serve`), since its message can carry the time of the check (an expired certificate's
/// `(now T)`) and one per check would grow without end.
pub const RECHECK_WARNING: &str =
    "trust check again failed, continuing because --trust-mode warn: ";

/// Steps 3 to 6 again, for a package verified earlier, against `cfg` and `node` as they are
/// `now`: what the trust directory decides — the pinned roots, the revocation list — can have
/// changed since, the certificates can have expired, and the node's license can have been
/// replaced (`serve` asks this before every restart and at SIGHUP: a restart is a launch, and
/// `run` would refuse it; a newer list's version is remembered as at any verification). The
/// signature and the files were checked at the load and are what they were. In `warn` mode a
/// failure comes back as a warning (`Ok(Some(..))`, the status it gives); in `disabled` mode
/// nothing is checked.
pub fn recheck_trust(
    pkg: &VerifiedPackage,
    cfg: &TrustConfig,
    node: &NodeIdentity,
    now: u64,
) -> Result<Option<(SignatureStatus, String)>, VerifyError> {
    if cfg.mode == TrustMode::Disabled {
        return Ok(None);
    }
    let result = match (&pkg.developer, &pkg.intermediate) {
        (Some(d), Some(i)) => verify_chain(d, i, &cfg.root_keys())
            .map_err(|e| {
                (
                    SignatureStatus::Untrusted,
                    VerifyError::Chain(ChainStepError::Chain(e)),
                )
            })
            .and_then(|_| {
                check_validity(&[d, i], now)
                    .map_err(|e| (SignatureStatus::Expired, VerifyError::Validity(e)))
            })
            .and_then(|_| {
                check_revocation(cfg, &[d, i], now)
                    .map_err(|e| (SignatureStatus::Revoked, VerifyError::Revocation(e)))
            })
            .and_then(|_| {
                check_scope(d, &pkg.manifest, node, cfg, now)
                    .map_err(|e| (SignatureStatus::OutOfScope, VerifyError::Scope(e)))
            })
            .map(|_| ()),
        // Loaded in a mode that let an unreadable certificate pass: still none to trust.
        (None, _) => Err((
            SignatureStatus::Untrusted,
            VerifyError::Chain(ChainStepError::Missing("developer")),
        )),
        (_, None) => Err((
            SignatureStatus::Untrusted,
            VerifyError::Chain(ChainStepError::Missing("intermediate")),
        )),
    };
    match result {
        Ok(()) => Ok(None),
        Err((status, e)) if cfg.mode == TrustMode::Warn => Ok(Some((
            status,
            format!("{RECHECK_WARNING}{}", error_chain(&e)),
        ))),
        Err((_, e)) => Err(e),
    }
}

/// What a load in a mode below strict let pass that [`recheck_trust`] does not check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The exit code `run` uses for that step's failure (81 signature, 83 validity, 85 scope).
    pub exit: crate::exit::Exit,
    /// What was let pass, for the log and the refusal's message.
    pub detail: String,
}

/// The first trust step the load of the package behind `report` did not pass and that
/// [`recheck_trust`] cannot check again: a signature (2) failure a `warn` load downgraded to a
/// warning, or every step, for a load with trust `disabled`. Chain (3), validity (4),
/// revocation (5) and scope (6) are not named: `recheck_trust` decides them anew. `serve`
/// refuses such a package once the mode in force is strict: the load that let it pass would
/// now fail.
pub fn unverified_at_load(report: &Report) -> Option<Unverified> {
    use crate::exit::Exit;
    if report.trust_mode == TrustMode::Disabled {
        return Some(Unverified {
            exit: Exit::Signature,
            detail: "loaded with trust mode disabled: signature, chain, validity, revocation \
                     and scope were never checked"
                .into(),
        });
    }
    report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Warn)
        .find_map(|s| {
            let exit = match s.step {
                2 => Exit::Signature,
                _ => return None,
            };
            Some(Unverified {
                exit,
                detail: format!(
                    "step {} ({}) failed at the load, let pass by --trust-mode warn: {}",
                    s.step, s.name, s.detail
                ),
            })
        })
}

/// The parse error of certificate bytes. Errors are not `Clone` (they hold `serde_json` and I/O
/// causes), so a step that reports one parses the in-memory bytes again: same input, same error.
fn cert_error(bytes: &[u8]) -> CertError {
    match Certificate::parse(bytes) {
        Err(e) => e,
        Ok(_) => CertError::Format(0),
    }
}

fn check_signature(
    c: &container::Container,
    dev: &Result<Certificate, CertError>,
    cfg: &TrustConfig,
) -> Result<KeyId, SignatureError> {
    let dev = dev
        .as_ref()
        .map_err(|_| SignatureError::DeveloperCert(cert_error(&c.developer_cert)))?;
    let sig = Signature::parse(&String::from_utf8_lossy(&c.signature))
        .map_err(SignatureError::Malformed)?;
    let statement = &c.statement;
    if let Some(pinned) = &cfg.pinned_developer {
        if sig.key_id != pinned.key_id || dev.subject_key != *pinned {
            return Err(SignatureError::NotPinned {
                expected: pinned.key_id,
                found: sig.key_id,
            });
        }
    }
    dev.subject_key
        .verify(statement, &sig)
        .map_err(SignatureError::Invalid)?;
    Ok(sig.key_id)
}

fn check_revocation(
    cfg: &TrustConfig,
    certs: &[&Certificate],
    now: u64,
) -> Result<Option<u64>, RevocationError> {
    check_revocation_with(cfg, certs, now, || {})
}

/// [`check_revocation`], running `meanwhile` after the list was judged against the state read
/// unlocked and before the state's lock is taken to record it: where another verification may
/// record a list (tests make that race happen there, deterministically).
fn check_revocation_with(
    cfg: &TrustConfig,
    certs: &[&Certificate],
    now: u64,
    meanwhile: impl FnOnce(),
) -> Result<Option<u64>, RevocationError> {
    let state = RevocationState::load(&cfg.state_dir).map_err(RevocationError::State)?;
    let Some(bytes) = &cfg.revocations else {
        if let Some((issuer, seen)) = state.seen.iter().next() {
            return Err(RevocationError::Missing {
                issuer: issuer.clone(),
                version: seen.version,
            });
        }
        if cfg.require_revocations {
            return Err(RevocationError::Required);
        }
        return Ok(None);
    };
    let mut list = RevocationList::parse(bytes).map_err(RevocationError::List)?;
    // Judged first against the state as read, without a lock: a list already recorded (every
    // verification but the first after a publication) is accepted with nothing written, so a
    // read-only state directory, or one whose lock this user cannot take, still verifies.
    if judge_list(cfg, &state, &mut list, now)?.is_some() {
        meanwhile();
        let lock = match RevocationState::lock_bounded(
            &cfg.state_dir,
            cfg.revocation_lock_wait.as_ref(),
        ) {
            Ok(lock) => lock,
            // Not recorded, so nothing passes: but the list was judged (signed by a pinned root,
            // unexpired, newer than the one recorded), and what it revokes is refused as such
            // (`revocation.key`/`.serial`, about the package), not only as a state that cannot
            // be written. So a list installed while `serve`'s lock wait runs out (a holder
            // stopped) still stops the plugins it revokes at SIGHUP.
            Err(e) => {
                list.check_certs(certs).map_err(RevocationError::Revoked)?;
                return Err(RevocationError::State(e));
            }
        };
        record_list(cfg, &mut list, now, lock)?;
    }
    list.check_certs(certs).map_err(RevocationError::Revoked)?;
    Ok(Some(list.body.version))
}

/// Record `list`, which [`judge_list`] found newer than the state read unlocked (or of its
/// version, with the digest that earlier builds' state lacks): under the state's lock (`_lock`,
/// taken by the caller: [`RevocationState::lock_within`]), the state is read again and the list judged again against it,
/// and saved only if it is still to be recorded. Without that, two verifications that both read
/// version N, holding lists N+1 and N+2, could save N+2 then N+1: the floor went down, and a
/// later rollback to N+1 passed. Judged again, the one holding N+1 finds N+2 recorded, reads
/// the list again ([`newer_list`]: the operator published N+2) and checks against that one,
/// as a verification that read the state after the other's save would; and one holding a list
/// of the recorded version with another body is refused (`list_changed`), where the later save
/// replaced the first list's digest.
fn record_list(
    cfg: &TrustConfig,
    list: &mut RevocationList,
    now: u64,
    _lock: crate::state::RevocationLock,
) -> Result<(), RevocationError> {
    let mut state = RevocationState::load(&cfg.state_dir).map_err(RevocationError::State)?;
    if let Some(accepted) = judge_list(cfg, &state, list, now)? {
        state.seen.insert(list.issuer.to_string(), accepted);
        state.save(&cfg.state_dir).map_err(RevocationError::State)?;
    }
    Ok(())
}

/// Judge `list` against the recorded `state`: signed by a pinned root, unexpired, not older
/// than the list recorded for its issuer (nor of its version with another body), and no other
/// issuer's list recorded. Returns what to record for its issuer, if anything: its version
/// with its digest when it is newer, or the digest that state of earlier builds lacks for the
/// version already recorded (verify refused any other body).
///
/// The list was read when the command started, the state only now: a verification running
/// beside this one may have recorded a newer list the operator put in place in between. The
/// list is then read again from its file (once, [`newer_list`]) and, if newer, replaces `list`;
/// only a list still older than the one recorded is a rollback.
fn judge_list(
    cfg: &TrustConfig,
    state: &RevocationState,
    list: &mut RevocationList,
    now: u64,
) -> Result<Option<Seen>, RevocationError> {
    let issuer = list.issuer.to_string();
    let seen = state.seen.get(&issuer).copied();
    if seen.is_some_and(|s| list.body.version < s.version) {
        if let Some(newer) = newer_list(cfg, list) {
            *list = newer;
        }
    }
    // Verified first, so a list signed by a key that is not a pinned root says exactly that.
    list.verify(&cfg.root_keys(), now, seen)
        .map_err(RevocationError::List)?;
    // A list seen before from a different issuer must not disappear either.
    if let Some((other, s)) = state.seen.iter().find(|(k, _)| **k != issuer) {
        return Err(RevocationError::OtherIssuer {
            seen_issuer: other.clone(),
            version: s.version,
            issuer,
        });
    }
    let record = seen.is_none_or(|s| list.body.version > s.version || s.body_sha256.is_none());
    Ok(record.then(|| Seen {
        version: list.body.version,
        body_sha256: Some(list.body_sha256()),
    }))
}

/// The revocation list read again from the file it came from (`cfg.revocations_path`: the trust
/// directory's, or the policy's `trust.revocation` — never the other one, which the policy did
/// not choose), if it is a newer one from the same issuer than `held` ([`judge_list`]).
/// Anything else — no list, one that cannot be read or parsed, another issuer's, not newer — is
/// `None`: `held` is then judged as it is.
fn newer_list(cfg: &TrustConfig, held: &RevocationList) -> Option<RevocationList> {
    let bytes = crate::trustdir::read_revocations(&cfg.revocations_path).ok()??;
    let fresh = RevocationList::parse(&bytes).ok()?;
    (fresh.issuer == held.issuer && fresh.body.version > held.body.version).then_some(fresh)
}

fn check_scope(
    dev: &Certificate,
    manifest: &ValidatedManifest,
    node: &NodeIdentity,
    cfg: &TrustConfig,
    now: u64,
) -> Result<String, ScopeError> {
    let detail = match &dev.body.scope {
        Scope::Any => "scope any".to_string(),
        Scope::Hardware(h) => {
            let node_id = node
                .hardware_id
                .as_ref()
                .ok_or_else(|| ScopeError::NoHardwareId(h.clone()))?;
            if node_id != h {
                return Err(ScopeError::WrongHardware {
                    cert: h.clone(),
                    node: node_id.clone(),
                });
            }
            format!("scope hardware:{h} matches this node")
        }
        Scope::License(serial) => {
            let lic = node
                .license
                .as_ref()
                .ok_or_else(|| ScopeError::NoLicense(serial.clone()))?;
            lic.verify(
                &cfg.root_keys(),
                now,
                node.hardware_id.as_deref().unwrap_or(""),
            )
            .map_err(ScopeError::License)?;
            if lic.body.serial != *serial {
                return Err(ScopeError::WrongLicense {
                    cert: serial.clone(),
                    node: lic.body.serial.clone(),
                });
            }
            // A frozen license still matches: the package was (or will be) judged an
            // admission or not where it is started (`store::frozen_admission`), so the plugins
            // installed before the freeze keep running (seed 000).
            if lic.body.state == LicenseState::Frozen {
                format!("scope license:{serial} matches this node's license (frozen: only plugins installed before the freeze may start)")
            } else {
                format!("scope license:{serial} matches this node's active license")
            }
        }
    };
    let ceiling = dev.capabilities();
    if let Some(c) = manifest
        .requested_capabilities()
        .iter()
        .find(|c| !ceiling.contains(c))
    {
        return Err(ScopeError::Capability {
            capability: *c,
            scope: dev.body.scope.to_string(),
        });
    }
    Ok(format!(
        "{detail}; requested capabilities within the certificate ceiling"
    ))
}

#[cfg(test)]
mod tests {
    use super::{unverified_at_load, Report, SignatureStatus, Step, StepStatus, TrustMode};
    use crate::exit::Exit;

    /// A pid no process has (a child's, once reaped).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    /// Make `parent/name` with a file in it, last changed `ago` before now.
    fn leftover(
        parent: &std::path::Path,
        name: &str,
        ago: std::time::Duration,
    ) -> std::path::PathBuf {
        let d = parent.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("payload"), "x").unwrap();
        let then = std::time::SystemTime::now() - ago;
        std::fs::File::open(&d).unwrap().set_modified(then).unwrap();
        d
    }

    /// The extraction directories a killed run left (SIGKILL skips their drop) go with the next
    /// one made in the same place; one in use (locked), one whose maker may still be between its
    /// making and its lock, another user's and anything else are left.
    #[test]
    fn a_killed_runs_extraction_directory_goes_with_the_next_one() {
        use std::os::unix::fs::MetadataExt;
        use std::time::Duration;
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let dead = dead_pid();
        let me = std::process::id();
        let killed = leftover(
            p,
            &format!("stockade-pkg-{dead}-aaaaaa"),
            Duration::from_secs(5),
        );
        // An earlier build's (no pid, no lock): maybe a long session's package still in use.
        let old_build = leftover(p, "stockade-pkg-bbbbbb", Duration::from_secs(3600));
        let just_made = leftover(p, &format!("stockade-pkg-{me}-cccccc"), Duration::ZERO);
        let in_use = super::private_dir(p).unwrap();
        // Its maker alive and well past the pause: only its lock keeps it.
        std::fs::File::open(in_use._dir.path())
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        // Another user's: only root can make one (as another user the case is left out).
        let others = crate::test_support::root_or_skip(
            "giving a directory to another uid needs root",
        )
        .then(|| {
            let d = leftover(
                p,
                &format!("stockade-pkg-{dead}-dddddd"),
                Duration::from_secs(5),
            );
            std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
            d
        });
        let unrelated = leftover(p, &format!("other-{dead}-eeeeee"), Duration::from_secs(5));

        let next = super::private_dir(p).unwrap();
        let name = next
            ._dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(name.starts_with(&format!("stockade-pkg-{me}-")), "{name}");
        assert!(!killed.exists(), "a dead maker's leftover stays");
        assert!(
            old_build.exists(),
            "an earlier build's directory was removed"
        );
        assert!(
            just_made.exists(),
            "a live maker's fresh directory was removed"
        );
        assert!(
            in_use._dir.path().exists(),
            "a locked directory was removed"
        );
        if let Some(others) = others {
            assert_eq!(std::fs::metadata(&others).unwrap().uid(), 65534);
        }
        assert!(unrelated.exists());
        // Dropped: removed as before.
        let gone = next._dir.path().to_path_buf();
        drop(next);
        assert!(!gone.exists());
    }

    /// `run` opens its extraction directory up to 0755 for the plugin's uid. When that directory
    /// was also what the sweep locked, any user who can search `$TMPDIR` (`/tmp`: everyone)
    /// could open it and hold a shared `flock` on it for ever, and the directory a killed run
    /// left there was never removed. The lock is now its private parent's, which stays 0700:
    /// that user can open neither.
    #[test]
    fn another_user_can_lock_no_extraction_directory() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::test_support::root_or_skip("holding a lock as another uid needs root")
            || !crate::test_support::require(
                std::path::Path::new("/usr/bin/flock").exists(),
                "holding a lock as another user needs flock(1) (util-linux)",
            )
        {
            return;
        }
        let nobody = 65534;
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let dir = super::PackageDir::Fresh(super::private_dir(p).unwrap());
        // What `run` does for the plugin's uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rel = dir.path().strip_prefix(p).unwrap();
        let mut tried = vec![rel.to_path_buf()];
        tried.extend(
            rel.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(std::path::Path::to_path_buf),
        );
        // The control: the same user can lock a 0755 directory beside it (a failing helper,
        // not the layout, would otherwise pass the checks below).
        let open_dir = p.join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (held, _holder) =
            crate::test_support::hold::hold_lock_as(p, nobody, nobody, "open", false);
        assert!(
            held,
            "the other user could not lock a 0755 directory: the probe is broken"
        );
        for t in &tried {
            let (held, _holder) = crate::test_support::hold::hold_lock_as(
                p,
                nobody,
                nobody,
                t.to_str().unwrap(),
                false,
            );
            assert!(!held, "another user locked {}", t.display());
        }
    }

    /// A load report in `mode` whose trust steps 2–6 ended as `statuses` says.
    fn report(mode: TrustMode, statuses: [StepStatus; 5]) -> Report {
        let names = ["signature", "chain", "validity", "revocation", "scope"];
        Report {
            file: "p.stockade".into(),
            trust_mode: mode,
            signature_status: SignatureStatus::Verified,
            steps: (2u8..)
                .zip(names.iter().zip(statuses))
                .map(|(step, (name, status))| Step {
                    step,
                    name,
                    status,
                    detail: format!("{name} detail"),
                })
                .collect(),
            warnings: Vec::new(),
            name: "p".into(),
            version: "0.1.0".into(),
            package_sha256: String::new(),
            statement_sha256: String::new(),
            payload_sha256: String::new(),
            file_count: 0,
            signer_key_id: None,
            trusted_comment: None,
            chain: Vec::new(),
            root_key_id: None,
            revocation_version: None,
            scope: None,
            capability_ceiling: Vec::new(),
            requested_capabilities: Vec::new(),
            granted_capabilities: Vec::new(),
            extracted: None,
        }
    }

    /// Only what a recheck cannot decide again is named: a chain, validity, revocation or scope
    /// warning is left to `recheck_trust`, a signature warning is named with its step's exit
    /// code, and a `disabled` load names everything.
    #[test]
    fn unverified_at_load_names_only_the_steps_no_recheck_decides() {
        use StepStatus::{Pass, Skipped, Warn};
        let clean = report(TrustMode::Strict, [Pass, Pass, Pass, Skipped, Pass]);
        assert_eq!(unverified_at_load(&clean), None);
        let rechecked = report(TrustMode::Warn, [Pass, Warn, Warn, Warn, Warn]);
        assert_eq!(unverified_at_load(&rechecked), None);
        let u = unverified_at_load(&report(TrustMode::Warn, [Warn, Pass, Warn, Pass, Pass]))
            .expect("named");
        assert_eq!(u.exit, Exit::Signature);
        assert!(u.detail.contains("step 2"), "{}", u.detail);
        let disabled = report(TrustMode::Disabled, [Skipped; 5]);
        assert_eq!(
            unverified_at_load(&disabled).map(|u| u.exit),
            Some(Exit::Signature)
        );
    }

    /// A root key, and revocation lists it signs.
    struct Lists {
        root: stockade_trust::minisign::SecretKey,
    }

    /// `now` for [`Lists`]: between every list's issue and expiry.
    const NOW: u64 = 1_000;

    impl Lists {
        fn new() -> Lists {
            Lists {
                root: stockade_trust::minisign::SecretKey::from_seed(&[7; 32], [7; 8]),
            }
        }

        /// List `version`, revoking `serial` (another serial, another body).
        fn list(&self, version: u64, serial: char) -> Vec<u8> {
            let body = stockade_trust::crl::RevocationBody {
                format: 1,
                version,
                issued_at: 10,
                expires_at: 10 * NOW,
                issuer_key_id: self.root.public_key().key_id.to_string(),
                revoked_serials: vec![serial.to_string().repeat(32)],
                revoked_key_ids: vec![],
            };
            stockade_trust::crl::RevocationList::issue(&body, &self.root, "").unwrap()
        }

        /// A developer certificate of serial `serial` × 32 signed by this root (one that
        /// [`Self::list`] of that `serial` revokes).
        fn cert(&self, serial: char) -> stockade_trust::cert::Certificate {
            use stockade_policy::capability::Scope;
            use stockade_trust::cert::{CertBody, CertKind, Certificate};
            let subject =
                stockade_trust::minisign::SecretKey::from_seed(&[9; 32], [9; 8]).public_key();
            let body = CertBody {
                format: 1,
                kind: CertKind::Developer,
                serial: serial.to_string().repeat(32),
                subject: "dev".into(),
                subject_key: subject.to_base64(),
                key_id: subject.key_id.to_string(),
                scope: Scope::Any,
                capabilities: vec![],
                not_before: 1,
                not_after: 10 * NOW,
                issuer_key_id: self.root.public_key().key_id.to_string(),
            };
            Certificate::parse(&Certificate::issue(&body, &self.root, "").unwrap()).unwrap()
        }

        /// A verification's trust configuration: this root pinned, `list` read from the trust
        /// directory's `revocations.json` in `trust` when the command started.
        fn config(
            &self,
            trust: &std::path::Path,
            state: &std::path::Path,
            list: &[u8],
        ) -> super::TrustConfig {
            super::TrustConfig {
                mode: TrustMode::Strict,
                dir: trust.to_path_buf(),
                roots: vec![(trust.join("root.pub"), self.root.public_key())],
                revocations: Some(list.to_vec()),
                revocations_path: trust.join("revocations.json"),
                require_revocations: false,
                pinned_developer: None,
                state_dir: state.to_path_buf(),
                revocation_lock_wait: None,
            }
        }
    }

    /// A trust directory (`.1`) whose `revocations.json` is list 1, and a state directory (`.2`)
    /// in which a verification recorded it.
    fn list_1_recorded(l: &Lists) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (trust, state) = (d.path().join("trust"), d.path().join("state"));
        std::fs::create_dir(&trust).unwrap();
        std::fs::write(trust.join("revocations.json"), l.list(1, 'a')).unwrap();
        let cfg = l.config(&trust, &state, &l.list(1, 'a'));
        assert_eq!(super::check_revocation(&cfg, &[], NOW).unwrap(), Some(1));
        assert_eq!(floor(&state), 1);
        (d, trust, state)
    }

    /// The version recorded in `state` (one issuer).
    fn floor(state: &std::path::Path) -> u64 {
        let s = crate::state::RevocationState::load(state).unwrap();
        assert_eq!(s.seen.len(), 1);
        s.seen.values().next().unwrap().version
    }

    /// Audit 89 F3: two verifications read version 1 recorded; the one holding list 3 records
    /// it while the one holding list 2 is between its read and its save. The later save must
    /// not put the floor back to 2 (a rollback to list 2 would then pass): under the state's
    /// lock the state is read again, list 2 is older than 3, the list file (now list 3) is read
    /// again and checked instead, and nothing lower is written. The race is made where it
    /// happens, by `check_revocation_with`'s `meanwhile`, not by timing.
    #[test]
    fn racing_verifications_never_lower_the_revocation_floor() {
        let l = Lists::new();
        let (_d, trust, state) = list_1_recorded(&l);
        let file = trust.join("revocations.json");
        // The operator publishes list 2, then list 3; one verification read 2, the next 3.
        let holds_2 = l.config(&trust, &state, &l.list(2, 'a'));
        let holds_3 = l.config(&trust, &state, &l.list(3, 'a'));
        std::fs::write(&file, l.list(3, 'a')).unwrap();
        let checked = super::check_revocation_with(&holds_2, &[], NOW, || {
            assert_eq!(
                super::check_revocation(&holds_3, &[], NOW).unwrap(),
                Some(3)
            );
            assert_eq!(floor(&state), 3);
        });
        assert_eq!(floor(&state), 3, "the floor went down");
        assert_eq!(
            checked.unwrap(),
            Some(3),
            "checked against the list read again"
        );
        // Later, list 2 back in place is the rollback it is.
        std::fs::write(&file, l.list(2, 'a')).unwrap();
        let e = super::check_revocation(&holds_2, &[], NOW).unwrap_err();
        assert!(
            matches!(
                e,
                super::RevocationError::List(stockade_trust::crl::CrlError::Rollback { .. })
            ),
            "{e:?}"
        );
    }

    /// Two lists of one version with other bodies (two lists signed under one version, the later
    /// possibly without a revocation), held by two verifications that both read the version
    /// before: the second to record is refused as it is when it comes after the first, instead
    /// of replacing the digest recorded.
    #[test]
    fn racing_verifications_of_two_bodies_of_one_version_are_refused() {
        let l = Lists::new();
        let (_d, trust, state) = list_1_recorded(&l);
        let first = l.config(&trust, &state, &l.list(2, 'a'));
        let second = l.config(&trust, &state, &l.list(2, 'b'));
        let recorded = || crate::state::RevocationState::load(&state).unwrap();
        let e = super::check_revocation_with(&second, &[], NOW, || {
            super::check_revocation(&first, &[], NOW).unwrap();
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                super::RevocationError::List(stockade_trust::crl::CrlError::Changed { .. })
            ),
            "{e:?}"
        );
        let first_digest = stockade_trust::crl::RevocationList::parse(&l.list(2, 'a'))
            .unwrap()
            .body_sha256();
        let s = recorded();
        let seen = s.seen.values().next().unwrap();
        assert_eq!((seen.version, seen.body_sha256), (2, Some(first_digest)));
    }

    /// A state directory whose lock cannot be taken (here a symbolic link planted at its name)
    /// records nothing and fails closed (`revocation.state`, 78), the link not followed; a list
    /// already recorded is still accepted there, with no lock and nothing written.
    #[test]
    fn a_revocation_lock_that_cannot_be_taken_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let (trust, state) = (d.path().join("trust"), d.path().join("state"));
        std::fs::create_dir(&trust).unwrap();
        std::fs::create_dir(&state).unwrap();
        let l = Lists::new();
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, b"").unwrap();
        let lock = state.join(crate::state::REVOCATION_LOCK_FILE);
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        let cfg = l.config(&trust, &state, &l.list(1, 'a'));
        let e = super::check_revocation(&cfg, &[], NOW).unwrap_err();
        assert!(
            matches!(
                e,
                super::RevocationError::State(crate::state::StateError::Lock { .. })
            ),
            "{e:?}"
        );
        let e = super::VerifyError::Revocation(e);
        assert_eq!((e.kind(), e.exit()), ("revocation.state", Exit::Config));
        // The hint says whose lock it is, not "restore the state file" (nothing is wrong
        // with that file).
        assert!(
            e.hint().contains("the state directory's owner"),
            "{}",
            e.hint()
        );
        assert!(!e.hint().contains("restore"), "{}", e.hint());
        // Not only a busy lock (`revocation.state_busy`): whatever keeps the lock from being
        // taken, a certificate the list that was not recorded revokes is refused as revoked
        // (84), not as a state that cannot be written (78) — docs/exit-codes.md says so.
        let e = super::check_revocation(&cfg, &[&l.cert('a')], NOW).unwrap_err();
        assert!(matches!(e, super::RevocationError::Revoked(_)), "{e:?}");
        assert_eq!(super::VerifyError::Revocation(e).exit(), Exit::Revoked);
        assert!(!state.join(crate::state::REVOCATION_STATE_FILE).exists());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"");
        // Recorded before (by hand here): accepted without the lock.
        let mut recorded = crate::state::RevocationState::default();
        let list = stockade_trust::crl::RevocationList::parse(&l.list(1, 'a')).unwrap();
        recorded.seen.insert(
            list.issuer.to_string(),
            stockade_trust::crl::Seen {
                version: 1,
                body_sha256: Some(list.body_sha256()),
            },
        );
        recorded.save(&state).unwrap();
        assert_eq!(super::check_revocation(&cfg, &[], NOW).unwrap(), Some(1));
    }

    /// Review-98 L4: `serve` verifies on its one event loop, and a newer list is recorded under
    /// the state's lock, which root's CLI takes too. A holder that kept it (a CLI stopped while
    /// it recorded) stalled the daemon for ever. With a bounded wait (`serve`'s), the
    /// verification fails closed once it has run out (`revocation.state_busy`, 75): the list
    /// not recorded and nothing passed — but a certificate the list revokes is still refused as
    /// revoked. Once the lock is released the list is recorded as before.
    #[test]
    fn a_revocation_lock_held_past_a_bounded_wait_fails_closed() {
        let l = Lists::new();
        let (_d, trust, state) = list_1_recorded(&l);
        // Another open file description: its `flock` excludes this process's next one.
        let held = crate::state::RevocationState::lock(&state).unwrap();
        let mut cfg = l.config(&trust, &state, &l.list(2, 'b'));
        let wait = std::time::Duration::from_millis(200);
        cfg.revocation_lock_wait = Some(crate::state::BoundedWait::new(wait));
        let started = std::time::Instant::now();
        let e = super::check_revocation(&cfg, &[], NOW).unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= wait && took < std::time::Duration::from_secs(5),
            "{took:?}"
        );
        assert!(
            matches!(
                e,
                super::RevocationError::State(crate::state::StateError::LockBusy { .. })
            ),
            "{e:?}"
        );
        let e = super::VerifyError::Revocation(e);
        assert_eq!(
            (e.kind(), e.exit()),
            ("revocation.state_busy", Exit::TempFail)
        );
        assert!(e.hint().contains("try again"), "{}", e.hint());
        assert_eq!(floor(&state), 1, "nothing recorded");
        // A certificate list 2 revokes: refused as revoked, not only as busy.
        let cert = l.cert('b');
        let e = super::check_revocation(&cfg, &[&cert], NOW).unwrap_err();
        assert!(matches!(e, super::RevocationError::Revoked(_)), "{e:?}");
        assert_eq!(floor(&state), 1);
        drop(held);
        assert_eq!(super::check_revocation(&cfg, &[], NOW).unwrap(), Some(2));
        assert_eq!(floor(&state), 2);
    }

    /// Review L3: a work directory among the trees that `keep` leaves for its caller to rename
    /// away stays locked until the [`super::KeptDir`] is dropped. Its lock went with `keep`
    /// before, and another run's sweep or eviction could remove the directory between the keep
    /// and the caller's rename. Made old enough here for any sweep to take it for a killed run's
    /// leftover, were it not locked; not moved, it goes with the drop.
    #[test]
    fn a_kept_work_directory_stays_locked_until_the_caller_is_done() {
        let state = tempfile::tempdir().unwrap();
        let trees = super::Trees::new(state.path(), 0);
        let kept = super::PackageDir::Work(trees.work_dir().unwrap()).keep();
        let real = state
            .path()
            .join(crate::package::trees::TREES_DIR)
            .join(kept.path().file_name().unwrap());
        assert!(real.is_dir(), "{}", real.display());
        let long_ago = std::time::SystemTime::now() - 2 * crate::fileio::LEFTOVER_AGE;
        std::fs::File::open(&real)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        trees.sweep_leftovers();
        assert!(real.is_dir(), "swept while its caller was still to move it");
        drop(kept);
        assert!(!real.exists(), "left behind");
    }
}
