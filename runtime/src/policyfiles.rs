//! Reading the operator policy from disk: `policy.toml` and `policy.d/*.toml` under
//! `<root>/etc/stockade`, `<root>/run/stockade` and `<root>/usr/lib/stockade`, or one whole
//! policy file given with `--policy FILE`.
//!
//! The root is `/` unless `--policy-root DIR` (or `STOCKADE_POLICY_ROOT`) says otherwise, so
//! tests and packagers can assemble a tree elsewhere. Selecting and merging the files is pure
//! code in `stockade_policy::operator`; this module only lists directories, notices masks
//! (symlinks to `/dev/null`) and reads text, capped, and adds the checks only the host can
//! make (system-call names of this architecture, the rlimits this process can hand down), so
//! that every command refuses what no launch here could enforce.

use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, FileError};
use crate::sandbox::check_enforceable;
use crate::sandbox::rlimits::Ceilings;
use std::fs;
use std::path::{Path, PathBuf};
use stockade_policy::operator::layers::{select, Listing, Tier};
use stockade_policy::operator::{
    merge, MergedPolicy, OperatorPolicyError, PolicyLayer, ResolvedPolicy,
};
use stockade_policy::sandbox::MAX_POLICY_BYTES;

/// The three configuration directories, by precedence.
pub const DIRS: [(Tier, &str); 3] = [
    (Tier::Etc, "etc/stockade"),
    (Tier::Run, "run/stockade"),
    (Tier::UsrLib, "usr/lib/stockade"),
];

/// Where a policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// One whole policy file (`--policy FILE`): replaces the operator layers.
    File(PathBuf),
    /// Several files, applied in the order given (`policy lint A B`).
    Files(Vec<PathBuf>),
    /// The operator layers under this root.
    Root(PathBuf),
}

/// Why the policy files cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFilesError {
    /// A file cannot be read.
    #[error("cannot read policy file")]
    Read(#[source] FileError),
    /// A directory cannot be listed.
    #[error("cannot list {}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    Utf8 {
        /// The file.
        path: PathBuf,
    },
    /// The merged policy is invalid.
    #[error("invalid policy")]
    Invalid(#[source] OperatorPolicyError),
}

impl PolicyFilesError {
    /// As a command error: 66 unreadable, 65 invalid.
    pub fn into_cmd(self) -> CmdError {
        match self {
            PolicyFilesError::Invalid(_) => CmdError::new(Exit::DataErr, "invalid_policy", self)
                .hint("fix the value at the named file:line; `man -l docs/man/stockade-policy.5` documents every key"),
            PolicyFilesError::Utf8 { .. } | PolicyFilesError::Read(FileError::TooLarge { .. }) => {
                CmdError::new(Exit::DataErr, "invalid_policy", self)
            }
            _ => CmdError::new(Exit::NoInput, "policy_unreadable", self),
        }
    }
}

fn is_mask(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"))
}

/// List the policy files under `root` (not following a mask).
pub fn list(root: &Path) -> Result<Vec<Listing>, PolicyFilesError> {
    list_noting(root, &mut Vec::new())
}

/// [`list`], adding to `skipped` each `policy.d` directory left out because this user may not
/// read it (or traverse the directory above it).
fn list_noting(root: &Path, skipped: &mut Vec<PathBuf>) -> Result<Vec<Listing>, PolicyFilesError> {
    let mut out = Vec::new();
    for (tier, rel) in DIRS {
        let dir = root.join(rel);
        let main = dir.join("policy.toml");
        if main.symlink_metadata().is_ok() {
            out.push(Listing {
                tier,
                dropin: None,
                masked: is_mask(&main),
                path: main.to_string_lossy().into_owned(),
            });
        }
        let d = dir.join("policy.d");
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // A directory the caller may not even traverse (e.g. root's 0700 /run/stockade, the
            // uid-lock directory, seen by a rootless caller) is skipped: its layers are root's,
            // and a rootless launch runs with the caller's own rights anyway. Not printed,
            // because `exec --json` keeps stderr for the launch report; `policy explain` lists
            // the layers that were read.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                skipped.push(d);
                continue;
            }
            Err(source) => return Err(PolicyFilesError::List { path: d, source }),
        };
        for e in entries {
            let e = e.map_err(|source| PolicyFilesError::List {
                path: d.clone(),
                source,
            })?;
            let p = e.path();
            out.push(Listing {
                tier,
                dropin: Some(e.file_name().to_string_lossy().into_owned()),
                masked: is_mask(&p),
                path: p.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(out)
}

fn read_layer(path: &Path) -> Result<PolicyLayer, PolicyFilesError> {
    let bytes = read_capped(path, MAX_POLICY_BYTES as u64).map_err(PolicyFilesError::Read)?;
    let text = String::from_utf8(bytes).map_err(|_| PolicyFilesError::Utf8 {
        path: path.to_path_buf(),
    })?;
    Ok(PolicyLayer {
        path: path.to_string_lossy().into_owned(),
        text,
    })
}

/// Read the layers of a source, in application order (empty: no file, built-in defaults).
pub fn read_layers(src: &PolicySource) -> Result<Vec<PolicyLayer>, PolicyFilesError> {
    read_layers_noting(src, &mut Vec::new())
}

/// [`read_layers`], adding to `skipped` the policy directories left out as unreadable.
fn read_layers_noting(
    src: &PolicySource,
    skipped: &mut Vec<PathBuf>,
) -> Result<Vec<PolicyLayer>, PolicyFilesError> {
    match src {
        PolicySource::File(p) => Ok(vec![read_layer(p)?]),
        PolicySource::Files(ps) => ps.iter().map(|p| read_layer(p)).collect(),
        PolicySource::Root(root) => select(&list_noting(root, skipped)?)
            .iter()
            .map(|l| read_layer(Path::new(&l.path)))
            .collect(),
    }
}

/// Read and merge (every plugin and signer section validated too, and checked against what
/// this host can enforce: [`crate::sandbox::check_enforceable`]).
pub fn load(src: &PolicySource) -> Result<MergedPolicy, PolicyFilesError> {
    load_noting(src).map(|l| l.policy)
}

/// A policy as [`load`] reads it, with the directories it left out.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The merged, validated policy.
    pub policy: MergedPolicy,
    /// The `policy.d` directories of a policy root left out because this user may not read
    /// them (root's 0700 `/run/stockade` seen by a rootless caller): their layers are not in
    /// `policy`. `serve` refuses a reload that leaves out one it read at start
    /// (`Daemon::reload_policy`): that would weaken every later restart without a word.
    pub skipped: Vec<PathBuf>,
}

/// [`load`], saying which policy directories were left out as unreadable.
pub fn load_noting(src: &PolicySource) -> Result<LoadedPolicy, PolicyFilesError> {
    let mut skipped = Vec::new();
    let layers = read_layers_noting(src, &mut skipped)?;
    let m = merge(&layers).map_err(PolicyFilesError::Invalid)?;
    let ceilings = Ceilings::of_this_process();
    m.validate_all_with(|r| enforceable(r, &ceilings))
        .map_err(PolicyFilesError::Invalid)?;
    Ok(LoadedPolicy { policy: m, skipped })
}

/// The host's half of validation for one resolution, its error tied to the file:line that set
/// the value (or the default).
fn enforceable(r: &ResolvedPolicy, ceilings: &Ceilings) -> Result<(), OperatorPolicyError> {
    check_enforceable(&r.sandbox, ceilings).map_err(|e| OperatorPolicyError::Value {
        key: e.key().to_string(),
        at: r.origin(e.key()),
        cause: Box::new(e),
    })
}

/// The source for `exec`/`run`: `--policy FILE` when given, else the layers under the root.
pub fn source(file: Option<&Path>, root: &Path) -> PolicySource {
    match file {
        Some(f) => PolicySource::File(f.to_path_buf()),
        None => PolicySource::Root(root.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_under_a_root_follow_systemd_precedence() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "etc/stockade/policy.d",
            "usr/lib/stockade/policy.d",
            "run/stockade",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(
            r.join("usr/lib/stockade/policy.toml"),
            "version = 1\n[resources]\npids_max = 10\n",
        )
        .unwrap();
        fs::write(
            r.join("usr/lib/stockade/policy.d/10-a.toml"),
            "version = 1\n[resources]\npids_max = 20\n",
        )
        .unwrap();
        fs::write(
            r.join("usr/lib/stockade/policy.d/20-b.toml"),
            "version = 1\n[resources]\nnofile = 99\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/stockade/policy.d/20-b.toml")).unwrap();
        let m = load(&PolicySource::Root(r.to_path_buf())).unwrap();
        let p = m.resolve(None, None).unwrap();
        assert_eq!(
            p.sandbox.resources.pids_max,
            stockade_policy::sandbox::Limit::Max(20)
        );
        assert_eq!(
            p.sandbox.resources.nofile,
            stockade_policy::sandbox::Limit::Max(256),
            "masked"
        );
        assert!(p
            .origin("resources.pids_max")
            .to_string()
            .ends_with("10-a.toml:3"));
        // An /etc main file replaces the vendor's whole.
        fs::write(r.join("etc/stockade/policy.toml"), "version = 1\n").unwrap();
        let m = load(&PolicySource::Root(r.to_path_buf())).unwrap();
        assert_eq!(m.layers.len(), 2);
    }
}
