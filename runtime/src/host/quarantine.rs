//! Quarantines that outlive the daemon: `<state-dir>/quarantine.json`.
//!
//! Why: a plugin quarantined for crash-looping stays out of service until an agent says
//! otherwise (`plugin_restart`, or `plugin_unload`). Held only in memory, the quarantine would
//! be forgotten by a restart of the daemon (a crash of its own, `systemctl restart`, a reboot),
//! and the config's `load` list or an agent's `plugin_load` would run the crash-looping package
//! again — `max_crashes` more crashes per daemon start, of a plugin that may be crashing on
//! purpose. So it is written down, under the plugin's name and bound to the exact package that
//! crashed (its SHA-256): loading that package again brings the plugin back quarantined, without
//! a launch; loading another package of that name (a fixed version) clears it.
//!
//! The file is written atomically (`state::save_json`, 0600) on every change. One that
//! does not parse stops the daemon at start (exit 78, like the other state files): ignoring it
//! would run what it quarantines. So does one another user than root and the state directory's
//! owner could have written (`state::load_json`): emptied by that user, it would be read as no
//! quarantine at all.

use crate::state::{load_json, save_json, StateError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file under the state directory.
pub const QUARANTINE_FILE: &str = "quarantine.json";

/// One plugin's quarantine, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantined {
    /// The package that crash-looped (hex SHA-256 of the package file).
    pub package_sha256: String,
    /// When it was quarantined (Unix seconds).
    pub since: u64,
    /// Crashes within the window at that moment.
    pub crashes: u32,
    /// The window (ms).
    pub window_ms: u64,
}

/// The daemon's recorded quarantines, by plugin name.
#[derive(Debug)]
pub struct Quarantines {
    dir: PathBuf,
    map: BTreeMap<String, Quarantined>,
}

/// What a load of `package_sha256` under `name` meets.
#[derive(Debug, PartialEq, Eq)]
pub enum OnLoad {
    /// Nothing recorded for that name (or only for another package, now cleared).
    Clear,
    /// That very package is quarantined.
    Quarantined(Quarantined),
}

impl Quarantines {
    /// The quarantines recorded under `state_dir` (an absent file is none).
    pub fn load(state_dir: &Path) -> Result<Self, StateError> {
        Ok(Self {
            dir: state_dir.to_path_buf(),
            map: load_json(state_dir, QUARANTINE_FILE, 4 * 1024 * 1024)?,
        })
    }

    /// What loading `package_sha256` as `name` meets; a record of another package of that name
    /// is dropped (and the file written) on the way.
    pub fn on_load(&mut self, name: &str, package_sha256: &str) -> Result<OnLoad, StateError> {
        match self.map.get(name) {
            None => Ok(OnLoad::Clear),
            Some(q) if q.package_sha256 == package_sha256 => Ok(OnLoad::Quarantined(q.clone())),
            Some(_) => {
                self.clear(name)?;
                Ok(OnLoad::Clear)
            }
        }
    }

    /// Whether that very package is quarantined (looking only: nothing is dropped).
    pub fn holds(&self, name: &str, package_sha256: &str) -> bool {
        self.map
            .get(name)
            .is_some_and(|q| q.package_sha256 == package_sha256)
    }

    /// Record `name` as quarantined.
    pub fn record(&mut self, name: &str, q: Quarantined) -> Result<(), StateError> {
        self.map.insert(name.to_string(), q);
        self.save()
    }

    /// Forget `name`'s quarantine (`plugin_restart`, `plugin_unload`); writes only if there was
    /// one.
    pub fn clear(&mut self, name: &str) -> Result<(), StateError> {
        if self.map.remove(name).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), StateError> {
        save_json(&self.dir, QUARANTINE_FILE, &self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sha: &str) -> Quarantined {
        Quarantined {
            package_sha256: sha.into(),
            since: 1_800_000_000,
            crashes: 3,
            window_ms: 60_000,
        }
    }

    #[test]
    fn a_quarantine_survives_a_reload_for_that_package_only() {
        let d = tempfile::tempdir().unwrap();
        let mut qs = Quarantines::load(d.path()).unwrap();
        assert_eq!(qs.on_load("a", "11").unwrap(), OnLoad::Clear);
        qs.record("a", q("11")).unwrap();
        qs.record("b", q("22")).unwrap();

        // A new daemon reads it back.
        let mut qs = Quarantines::load(d.path()).unwrap();
        assert_eq!(qs.on_load("a", "11").unwrap(), OnLoad::Quarantined(q("11")));
        // Another package of that name clears it, on disk too.
        assert_eq!(qs.on_load("a", "33").unwrap(), OnLoad::Clear);
        let mut qs = Quarantines::load(d.path()).unwrap();
        assert_eq!(qs.on_load("a", "11").unwrap(), OnLoad::Clear);
        assert_eq!(qs.on_load("b", "22").unwrap(), OnLoad::Quarantined(q("22")));
        qs.clear("b").unwrap();
        let mut qs = Quarantines::load(d.path()).unwrap();
        assert_eq!(qs.on_load("b", "22").unwrap(), OnLoad::Clear);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_set() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(QUARANTINE_FILE), b"{\"a\": 1}").unwrap();
        let e = Quarantines::load(d.path()).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e:?}");
        std::fs::write(d.path().join(QUARANTINE_FILE), b"not json").unwrap();
        assert!(Quarantines::load(d.path()).is_err());
    }

    /// A file a newer daemon wrote (`"format": 2` beside the quarantines, as after a
    /// downgrade) is refused as one, left as it is — it was "corrupt", with the hint to remove
    /// it, which lifts every quarantine — while a plugin named `format` is still a plugin.
    #[test]
    fn a_newer_daemons_file_is_refused_as_such_and_a_plugin_named_format_still_reads() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(QUARANTINE_FILE);
        let newer = br#"{"format": 2, "a": {"package_sha256": "11", "since": 1, "crashes": 5, "window_ms": 60000, "until": 9}}"#;
        std::fs::write(&path, newer).unwrap();
        let e = Quarantines::load(d.path()).unwrap_err();
        assert!(
            matches!(&e, StateError::NewerFormat { path: p, format: 2 } if p == &path),
            "{e:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), newer);
        let mut qs = Quarantines {
            dir: d.path().to_path_buf(),
            map: BTreeMap::new(),
        };
        qs.record("format", q("11")).unwrap();
        let mut qs = Quarantines::load(d.path()).unwrap();
        assert_eq!(
            qs.on_load("format", "11").unwrap(),
            OnLoad::Quarantined(q("11"))
        );
    }

    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mut qs = Quarantines::load(d.path()).unwrap();
        qs.record("a", q("11")).unwrap();
        let m = std::fs::metadata(d.path().join(QUARANTINE_FILE)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
}
