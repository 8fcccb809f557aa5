//! The per-plugin key/value store behind `kv_get` / `kv_put`.
//!
//! One JSON file per plugin and signer, `<state-dir>/kv/<signer>/<plugin-name>.json`
//! ([`store_name`]): `<signer>` is the fingerprint of the developer key whose signature verified,
//! so a package of the same name from another developer never reads this one's data, and
//! `unverified` for packages admitted below strict (their claimed signer proves nothing). The
//! name comes from the verified manifest (validated: `[a-z0-9._-]`), never from the plugin's
//! messages, and keys are looked up inside that one map, so no message can name another
//! plugin's store. Every put
//! is persisted crash-safely: write a temp file in the same directory, fsync it, rename it over
//! the old one, fsync the directory — after a crash the store is either the old or the new map.
//! Quotas (keys, key and value size, total bytes) are checked before anything changes.
//!
//! Several runtimes may hold one plugin's store at once (two `stockade run`s, a run beside
//! `serve`). A put is therefore a read-modify-write under an exclusive `flock` of
//! `<plugin-name>.lock`: the map on disk is read again, the one key changed, the result written,
//! so no acknowledged put of another process is lost (the last put of a key wins). A get reads
//! the file again when it was replaced since it was last read, so it sees the other processes'
//! puts too. "Replaced" is told by inode, which is exact only because the store keeps the file
//! it read open: an inode in use cannot be handed to a new file (a freed one often is, at once).

use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use stockade_policy::protocol::host::KvQuota;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A quota would be exceeded.
    #[error("quota exceeded: {0}")]
    Quota(&'static str),
    /// The store file is unreadable or corrupt.
    #[error("cannot load key/value store `{}`", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Persisting failed (nothing changed).
    #[error("cannot persist key/value store")]
    Persist(#[source] io::Error),
}

/// The store of a verified package, relative to `<state-dir>/kv` (see the module docs). A store
/// of the layout before signers (`kv/<name>.json`) is moved to the signer's place the first time
/// the installed package of that name (name and SHA-256: its owner) opens it.
pub fn store_name(
    state_dir: &Path,
    pkg: &crate::package::VerifiedPackage,
) -> Result<String, KvError> {
    use crate::package::report::SignatureStatus;
    let name = pkg.manifest.name();
    let signer = pkg
        .developer
        .as_ref()
        .filter(|_| pkg.report.signature_status == SignatureStatus::Verified)
        .map(|d| stockade_trust::index::fingerprint(&d.subject_key));
    let Some(signer) = signer else {
        return Ok(format!("unverified/{name}"));
    };
    let owner = || crate::store::is_installed(state_dir, name, &pkg.report.package_sha256);
    adopt_legacy(&state_dir.join("kv"), name, &signer, owner)?;
    Ok(format!("{signer}/{name}"))
}

/// Move `kv/<name>.json` (the layout before signers) to `kv/<signer>/<name>.json` when there is
/// no store there yet and `owner()` says the package opening it owns the old one.
fn adopt_legacy(
    kv: &Path,
    name: &str,
    signer: &str,
    owner: impl FnOnce() -> bool,
) -> Result<(), KvError> {
    let (legacy, now) = (
        kv.join(format!("{name}.json")),
        kv.join(signer).join(format!("{name}.json")),
    );
    if legacy.is_file() && !now.exists() && owner() {
        fs::create_dir_all(kv.join(signer))
            .and_then(|()| fs::rename(&legacy, &now))
            .map_err(|source| KvError::Load {
                path: legacy.clone(),
                source,
            })?;
    }
    Ok(())
}

/// One plugin's store.
#[derive(Debug)]
pub struct KvStore {
    path: PathBuf,
    map: BTreeMap<String, String>,
    /// The file `map` was read from, kept open (None: there was none).
    seen: Option<fs::File>,
    quota: KvQuota,
}

fn total(map: &BTreeMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl KvStore {
    /// Open (or start empty) the store `name` (from [`store_name`]) under `state_dir/kv/`.
    pub fn open(state_dir: &Path, name: &str, quota: KvQuota) -> Result<Self, KvError> {
        let path = state_dir.join("kv").join(format!("{name}.json"));
        let mut s = Self {
            path,
            map: BTreeMap::new(),
            seen: None,
            quota,
        };
        s.reload()?;
        Ok(s)
    }

    /// Read the file again if it is not the one `map` came from.
    fn reload(&mut self) -> Result<(), KvError> {
        let load = |source| KvError::Load {
            path: self.path.clone(),
            source,
        };
        let id = |m: &fs::Metadata| (m.dev(), m.ino());
        match fs::metadata(&self.path) {
            Ok(now) => {
                let held = self.seen.as_ref().and_then(|f| f.metadata().ok());
                if held.is_some_and(|h| id(&h) == id(&now)) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.map.clear();
                self.seen = None;
                return Ok(());
            }
            Err(e) => return Err(load(e)),
        }
        // Replaced since: read what is there now (and hold that very file).
        let mut f = fs::File::open(&self.path).map_err(load)?;
        let mut text = String::new();
        let cap = (self.quota.max_total_bytes * 2 + 4096) as u64;
        (&mut f).take(cap).read_to_string(&mut text).map_err(load)?;
        self.map = serde_json::from_str(&text)
            .map_err(|e| load(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        self.seen = Some(f);
        Ok(())
    }

    /// Read a key (as the store is now, other processes' puts included).
    pub fn get(&mut self, key: &str) -> Result<Option<&str>, KvError> {
        self.reload()?;
        Ok(self.map.get(key).map(String::as_str))
    }

    /// Set (or with `None` delete) a key, persisting before returning.
    pub fn put(&mut self, key: &str, value: Option<&str>) -> Result<(), KvError> {
        if key.is_empty() || key.len() > self.quota.max_key_bytes {
            return Err(KvError::Quota("key size"));
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(KvError::Persist)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))
            .map_err(KvError::Persist)?;
        // Held until the new map is in place (dropped at return).
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| KvError::Persist(e.into()))?;
        self.reload()?;
        let q = &self.quota;
        let mut next = self.map.clone();
        match value {
            Some(v) => {
                if v.len() > q.max_value_bytes {
                    return Err(KvError::Quota("value size"));
                }
                next.insert(key.to_string(), v.to_string());
            }
            None => {
                next.remove(key);
            }
        }
        if next.len() > q.max_keys {
            return Err(KvError::Quota("number of keys"));
        }
        if total(&next) > q.max_total_bytes {
            return Err(KvError::Quota("total bytes"));
        }
        self.seen = Some(self.persist(&next).map_err(KvError::Persist)?);
        self.map = next;
        Ok(())
    }

    /// Write `map` in place of the file; returns the new file, open.
    fn persist(&self, map: &BTreeMap<String, String>) -> io::Result<fs::File> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let r = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(map).map_err(io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            fs::File::open(dir)?.sync_all()?;
            Ok(f)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> KvQuota {
        KvQuota {
            max_keys: 2,
            max_key_bytes: 8,
            max_value_bytes: 10,
            max_total_bytes: 24,
        }
    }

    #[test]
    fn persists_and_reloads_per_plugin() {
        let d = tempfile::tempdir().unwrap();
        let mut a = KvStore::open(d.path(), "alpha", quota()).unwrap();
        a.put("k", Some("v")).unwrap();
        let mut b = KvStore::open(d.path(), "beta", quota()).unwrap();
        assert_eq!(
            b.get("k").unwrap(),
            None,
            "another plugin's store is separate"
        );
        let mut a2 = KvStore::open(d.path(), "alpha", quota()).unwrap();
        assert_eq!(a2.get("k").unwrap(), Some("v"));
        a.put("k", None).unwrap();
        assert_eq!(
            KvStore::open(d.path(), "alpha", quota())
                .unwrap()
                .get("k")
                .unwrap(),
            None
        );
    }

    #[test]
    fn quotas_refuse_without_changing_anything() {
        let d = tempfile::tempdir().unwrap();
        let mut s = KvStore::open(d.path(), "p", quota()).unwrap();
        assert!(matches!(
            s.put("k", Some(&"x".repeat(11))),
            Err(KvError::Quota(_))
        ));
        assert!(matches!(
            s.put(&"k".repeat(9), Some("v")),
            Err(KvError::Quota(_))
        ));
        s.put("a", Some("0123456789")).unwrap();
        assert!(matches!(
            s.put("b", Some("0123456789ab")),
            Err(KvError::Quota(_))
        ));
        s.put("b", Some("1")).unwrap();
        assert!(matches!(
            s.put("c", Some("1")),
            Err(KvError::Quota("number of keys"))
        ));
        assert_eq!(s.get("c").unwrap(), None);
        assert_eq!(
            KvStore::open(d.path(), "p", quota())
                .unwrap()
                .get("b")
                .unwrap(),
            Some("1")
        );
    }

    #[test]
    fn corrupt_store_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("kv")).unwrap();
        fs::write(d.path().join("kv/p.json"), "not json").unwrap();
        assert!(matches!(
            KvStore::open(d.path(), "p", quota()),
            Err(KvError::Load { .. })
        ));
    }

    #[test]
    fn two_holders_of_one_store_never_lose_each_others_puts() {
        let d = tempfile::tempdir().unwrap();
        let q = KvQuota {
            max_keys: 100,
            ..quota()
        };
        let mut a = KvStore::open(d.path(), "p", q.clone()).unwrap();
        let mut b = KvStore::open(d.path(), "p", q.clone()).unwrap();
        a.put("a", Some("1")).unwrap();
        b.put("b", Some("2")).unwrap();
        assert_eq!(a.get("b").unwrap(), Some("2"), "a sees b's put");
        a.put("c", Some("3")).unwrap();
        let mut fresh = KvStore::open(d.path(), "p", q).unwrap();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            assert_eq!(fresh.get(k).unwrap(), Some(v), "{k}");
        }
        // Quotas count what is on disk, not what this holder last read.
        b.put("b", None).unwrap();
        assert_eq!(a.get("b").unwrap(), None);
    }

    #[test]
    fn concurrent_puts_from_threads_are_all_kept() {
        let d = tempfile::tempdir().unwrap();
        let q = KvQuota {
            max_keys: 1000,
            max_total_bytes: 1 << 20,
            ..quota()
        };
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (dir, q) = (d.path().to_path_buf(), q.clone());
                std::thread::spawn(move || {
                    let mut s = KvStore::open(&dir, "p", q).unwrap();
                    for i in 0..25 {
                        s.put(&format!("{t}-{i}"), Some("v")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut s = KvStore::open(d.path(), "p", q).unwrap();
        for t in 0..4 {
            for i in 0..25 {
                assert_eq!(s.get(&format!("{t}-{i}")).unwrap(), Some("v"), "{t}-{i}");
            }
        }
    }

    #[test]
    fn a_store_of_the_old_layout_goes_to_its_owner_only() {
        let d = tempfile::tempdir().unwrap();
        let kv = d.path().join("kv");
        fs::create_dir(&kv).unwrap();
        fs::write(kv.join("p.json"), r#"{"k":"v"}"#).unwrap();
        // Not the installed package: left where it is.
        adopt_legacy(&kv, "p", "aa", || false).unwrap();
        assert!(kv.join("p.json").exists() && !kv.join("aa").exists());
        // The owner: moved, and then read under the signer.
        adopt_legacy(&kv, "p", "bb", || true).unwrap();
        assert!(!kv.join("p.json").exists());
        let mut s = KvStore::open(d.path(), "bb/p", quota()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some("v"));
        // Never over an existing store.
        fs::write(kv.join("p.json"), r#"{"k":"old"}"#).unwrap();
        adopt_legacy(&kv, "p", "bb", || true).unwrap();
        assert!(kv.join("p.json").exists());
        let mut s = KvStore::open(d.path(), "bb/p", quota()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some("v"));
    }
}
