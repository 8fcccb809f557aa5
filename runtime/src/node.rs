//! This node's identity: a derived hardware id and its license.
//!
//! Hardware id: hex of the first 16 bytes of SHA-256(`stockade-hardware-id/v1\0` ‖ machine-id),
//! machine-id from `/etc/machine-id` (fallback `/var/lib/dbus/machine-id`). Derived rather than
//! raw so the id we print and put in certificates does not disclose the machine-id (which
//! systemd documents as confidential), and stable because machine-id is.
//!
//! License: `<state-dir>/license.json`, written by `stockade node license install FILE` (which
//! verifies it against the trust roots first), or copied there by an operator.
//!
//! Rollback: `node license install` remembers the highest `issued_at` per serial and the
//! license it installs as the one installed last (`<state-dir>/license-state.json`,
//! [`crate::state::LicenseMemory`]) before it writes the license, and refuses a license issued
//! before the newest remembered of its serial, or not after the one installed last (of any
//! serial) unless it is that same file ([`License::check_not_rolled_back`]). Every reader of
//! the license ([`load_license`]: `verify`, `run`, `install`, `serve`'s loads, `node info`)
//! refuses such a license too, and a missing file once one was installed (exit 84, as a rolled
//! back revocation list): a freeze must not be lifted by putting an old active license back —
//! of the frozen one's serial or of another — or by deleting the frozen one. A memory without
//! the license installed last (written by an earlier build) bounds each serial only for readers,
//! until the next install, which takes the license in place for the one installed last.
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, read_owned_in, FileError};
use crate::state::{LicenseMemory, StateError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use stockade_trust::license::{check_installed, License, LicenseError};
use stockade_trust::signed::MAX_DOC_BYTES;

/// Where the machine id is looked for, in order.
pub const MACHINE_ID_PATHS: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// File name of the license inside the state directory.
pub const LICENSE_FILE: &str = "license.json";

/// Why the node identity cannot be determined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No machine-id file.
    #[error("no machine id found (looked in /etc/machine-id and /var/lib/dbus/machine-id)")]
    NoMachineId,
    /// A machine-id file exists but is malformed.
    #[error("machine id in {} is not 32 hex digits", .0.display())]
    BadMachineId(PathBuf),
    /// The license file cannot be read.
    #[error("cannot read the node license")]
    LicenseFile(#[source] FileError),
    /// The license file is malformed.
    #[error("the node license {} is malformed", path.display())]
    License {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LicenseError,
    },
    /// What was installed before cannot be read (`license-state.json`).
    #[error("cannot read which licenses were installed on this node")]
    Memory(#[source] StateError),
    /// The license is older than one installed before, or missing after one was installed.
    #[error("the node license is rolled back")]
    Rollback(#[source] LicenseError),
}

impl NodeError {
    /// The documented exit code: 84 for a rollback (as for a revocation list), else 78 (the
    /// state directory is unusable).
    pub fn exit(&self) -> Exit {
        match self {
            NodeError::Rollback(_) => Exit::Revoked,
            _ => Exit::Config,
        }
    }

    /// A stable kind for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Rollback(LicenseError::Missing { .. }) => "license.missing",
            NodeError::Rollback(_) => "license.rollback",
            NodeError::Memory(StateError::NewerFormat { .. }) => "state.newer_format",
            _ => "node",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            NodeError::Rollback(_) => "install the latest license of this node again with `stockade node license install FILE` (the one named, or one issued after it)",
            NodeError::Memory(StateError::NewerFormat { .. }) => crate::state::NEWER_FORMAT_HINT,
            NodeError::Memory(_) => "fix <state-dir>/license-state.json (removing it forgets which licenses were installed: an older one would be accepted again)",
            // Not "remove it": once a license was installed, a missing one is a rollback.
            _ => "reinstall the license with `stockade node license install FILE`, or fix <state-dir>/license.json",
        }
    }

    /// As the command's error: its exit code, kind and hint.
    pub fn into_cmd(self) -> CmdError {
        let (exit, kind, hint) = (self.exit(), self.kind(), self.hint());
        CmdError::new(exit, kind, self).hint(hint)
    }
}

/// Derive the hardware id from a machine-id string.
pub fn hardware_id_from_machine_id(machine_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"stockade-hardware-id/v1\0");
    h.update(machine_id.trim().as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// This node's hardware id.
pub fn hardware_id() -> Result<String, NodeError> {
    hardware_id_from(&MACHINE_ID_PATHS.map(Path::new))
}

fn hardware_id_from(paths: &[&Path]) -> Result<String, NodeError> {
    for p in paths {
        match read_capped(p, 4096) {
            Ok(b) => {
                let s = String::from_utf8_lossy(&b);
                let id = s.trim();
                if id.len() != 32 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(NodeError::BadMachineId(p.to_path_buf()));
                }
                return Ok(hardware_id_from_machine_id(id));
            }
            Err(_) => continue,
        }
    }
    Err(NodeError::NoMachineId)
}

/// What verification needs to know about this node.
#[derive(Debug, Clone, Default)]
pub struct NodeIdentity {
    /// Derived hardware id, if a machine id exists.
    pub hardware_id: Option<String>,
    /// The installed license (signature not yet verified), if any.
    pub license: Option<License>,
}

impl NodeIdentity {
    /// Read the hardware id and `<state_dir>/license.json`. A missing machine id is not an error
    /// here (only `hardware:` scopes need it, and they fail closed without it); a malformed
    /// or rolled back license file is.
    pub fn load(state_dir: &Path) -> Result<Self, NodeError> {
        Ok(Self {
            hardware_id: hardware_id().ok(),
            license: load_license(state_dir)?,
        })
    }
}

/// Read and parse `<state_dir>/license.json` if it exists, and refuse it if it is a rollback
/// ([`License::check_not_rolled_back`] against `license-state.json`: older than the newest of
/// its serial installed, or not newer than the license installed last unless it is that file),
/// or missing when one was installed (rollback by deletion).
pub fn load_license(state_dir: &Path) -> Result<Option<License>, NodeError> {
    let license = read_license(state_dir)?;
    let memory = LicenseMemory::load(state_dir).map_err(NodeError::Memory)?;
    check_installed(license.as_ref(), &memory.seen, memory.floor.as_ref())
        .map_err(NodeError::Rollback)?;
    Ok(license)
}

/// `<state_dir>/license.json` read and parsed (`None`: there is none), not yet checked against
/// what the node installed before ([`load_license`] does that).
///
/// Read as the state directory's other files are ([`read_owned_in`]: a regular file of one link,
/// not through a symlink, of this user, root or the directory's owner, writable by no one
/// else; anything else 78 `node`, naming the file). The license is signed, so a file someone
/// else put there could only be another license the CA issued for this node, which the
/// rollback memory judges; but a symlink made it read wherever it pointed (a FIFO or device
/// too), and it is the one state file that was read so.
pub fn read_license(state_dir: &Path) -> Result<Option<License>, NodeError> {
    let path = state_dir.join(LICENSE_FILE);
    match read_owned_in(state_dir, LICENSE_FILE, MAX_DOC_BYTES as u64) {
        Ok(b) => License::parse(&b)
            .map(Some)
            .map_err(|source| NodeError::License { path, source }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(NodeError::LicenseFile(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn derivation_is_stable_and_not_the_raw_id() {
        let a = hardware_id_from_machine_id("0123456789abcdef0123456789abcdef\n");
        assert_eq!(
            a,
            hardware_id_from_machine_id("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(a.len(), 32);
        assert!(!a.contains("0123456789abcdef"));
    }

    /// Writes `<dir>/license.json`, a license signed by a test root, and returns it.
    fn write_license(
        dir: &Path,
        serial: &str,
        state: stockade_trust::license::LicenseState,
        issued_at: u64,
    ) -> License {
        use stockade_trust::license::LicenseBody;
        use stockade_trust::minisign::SecretKey;
        let root = SecretKey::from_seed(&[7; 32], [7; 8]);
        let body = LicenseBody {
            format: 1,
            serial: serial.into(),
            state,
            hardware_id: None,
            issued_at,
            expires_at: None,
            issuer_key_id: root.public_key().key_id.to_string(),
        };
        let bytes = License::issue(&body, &root, "").unwrap();
        std::fs::write(dir.join(LICENSE_FILE), &bytes).unwrap();
        License::parse(&bytes).unwrap()
    }

    fn assert_rollback_past(dir: &Path, named: &str) {
        let e = load_license(dir).unwrap_err();
        assert_eq!((e.exit(), e.kind()), (Exit::Revoked, "license.rollback"));
        assert!(
            e.source().unwrap().to_string().contains(named),
            "{named}: {e:?}"
        );
    }

    /// A license file put in place by hand that was issued before the license installed last,
    /// of another serial, or in the same second without being that file, is a rollback to every
    /// reader.
    #[test]
    fn an_older_license_of_another_serial_is_refused_by_readers() {
        use stockade_trust::license::LicenseState;
        let d = tempfile::tempdir().unwrap();
        let frozen = write_license(d.path(), "L1", LicenseState::Frozen, 200);
        let mut memory = LicenseMemory::default();
        memory.seen.insert("L2".into(), 100);
        frozen.remember(&mut memory.seen);
        memory.floor = Some(frozen.floor());
        memory.save(d.path()).unwrap();
        assert_eq!(load_license(d.path()).unwrap().unwrap().body.serial, "L1");
        for (serial, state, at) in [
            ("L2", LicenseState::Active, 100),
            ("L3", LicenseState::Active, 150),
            ("L3", LicenseState::Active, 200),
            ("L1", LicenseState::Active, 200),
        ] {
            write_license(d.path(), serial, state, at);
            assert_rollback_past(d.path(), "license L1 issued at 200");
        }
        // A license the CA issues now, under a new serial, is read.
        write_license(d.path(), "L3", LicenseState::Active, 300);
        assert_eq!(load_license(d.path()).unwrap().unwrap().body.serial, "L3");
    }

    /// An earlier build let license A issued at 500 be installed, then license B issued at 300
    /// (of another serial): its memory `{"A": 500, "B": 300}` has no floor, and B still reads
    /// (the per-serial rule alone); an older license of a serial does not.
    #[test]
    fn an_earlier_builds_memory_keeps_the_installed_license() {
        use stockade_trust::license::LicenseState;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(crate::state::LICENSE_STATE_FILE),
            r#"{"A": 500, "B": 300}"#,
        )
        .unwrap();
        write_license(d.path(), "B", LicenseState::Active, 300);
        assert_eq!(load_license(d.path()).unwrap().unwrap().body.serial, "B");
        write_license(d.path(), "A", LicenseState::Active, 500);
        assert_eq!(load_license(d.path()).unwrap().unwrap().body.serial, "A");
        write_license(d.path(), "B", LicenseState::Active, 299);
        assert_rollback_past(d.path(), "license B issued at 300");
    }

    #[test]
    fn fallback_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("none");
        let good = d.path().join("mid");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert!(hardware_id_from(&[&missing, &good]).is_ok());
        assert!(matches!(
            hardware_id_from(&[&missing]),
            Err(NodeError::NoMachineId)
        ));
        std::fs::write(&good, "short").unwrap();
        assert!(matches!(
            hardware_id_from(&[&good]),
            Err(NodeError::BadMachineId(_))
        ));
    }

    /// `license.json` is read as the other state files are: a symlink to a good license, a
    /// second link to it or a file others may write is refused (78 `node`, naming the file),
    /// not read.
    #[test]
    fn a_license_file_others_could_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        use stockade_trust::license::LicenseState;
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        write_license(elsewhere.path(), "L1", LicenseState::Active, 100);
        let good = elsewhere.path().join(LICENSE_FILE);
        let path = d.path().join(LICENSE_FILE);
        std::fs::copy(&good, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_license(d.path()).unwrap().is_some());
        let check = |why: &str| {
            let e = read_license(d.path()).unwrap_err();
            assert_eq!((e.exit(), e.kind()), (Exit::Config, "node"), "{e:?}");
            let NodeError::LicenseFile(FileError::Unsafe {
                path: named,
                why: said,
            }) = &e
            else {
                panic!("{why}: {e:?}");
            };
            assert_eq!(named, &path);
            assert!(said.contains(why), "{said}");
        };
        // A copy made by hand under a umask of 002 (0664), as docs/exit-codes.md's `node` row
        // says: refused too, though the license in it is signed.
        for mode in [0o666, 0o664] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            check("writable by group or others");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::hard_link(&path, d.path().join("second")).unwrap();
        check("another link");
        std::fs::remove_file(d.path().join("second")).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&good, &path).unwrap();
        check("symlink");
    }
}
