//! The per-plugin key/value store behind `kv_get` / `kv_put`.
//!
//! One JSON file per plugin, `<state-dir>/kv/<plugin-name>.json`. The file name comes from the
//! verified manifest's name (validated: `[a-z0-9_-]`), never from the plugin's messages, and keys
//! are looked up inside that one map, so no message can name another plugin's store. Every put
//! is persisted crash-safely: write a temp file in the same directory, fsync it, rename it over
//! the old one, fsync the directory — after a crash the store is either the old or the new map.
//! Quotas (keys, key and value size, total bytes) are checked before anything changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
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

/// One plugin's store.
#[derive(Debug)]
pub struct KvStore {
    path: PathBuf,
    map: BTreeMap<String, String>,
    quota: KvQuota,
}

fn total(map: &BTreeMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl KvStore {
    /// Open (or start empty) the store of `plugin` under `state_dir/kv/`.
    pub fn open(state_dir: &Path, plugin: &str, quota: KvQuota) -> Result<Self, KvError> {
        let path = state_dir.join("kv").join(format!("{plugin}.json"));
        let map = match fs::File::open(&path) {
            Ok(f) => {
                let mut text = String::new();
                let cap = (quota.max_total_bytes * 2 + 4096) as u64;
                let load = |source| KvError::Load {
                    path: path.clone(),
                    source,
                };
                f.take(cap).read_to_string(&mut text).map_err(load)?;
                serde_json::from_str(&text)
                    .map_err(|e| load(io::Error::new(io::ErrorKind::InvalidData, e)))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(KvError::Load { path, source }),
        };
        Ok(Self { path, map, quota })
    }

    /// Read a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Set (or with `None` delete) a key, persisting before returning.
    pub fn put(&mut self, key: &str, value: Option<&str>) -> Result<(), KvError> {
        let q = &self.quota;
        if key.is_empty() || key.len() > q.max_key_bytes {
            return Err(KvError::Quota("key size"));
        }
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
        self.persist(&next).map_err(KvError::Persist)?;
        self.map = next;
        Ok(())
    }

    fn persist(&self, map: &BTreeMap<String, String>) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
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
            fs::File::open(dir)?.sync_all()
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
        let b = KvStore::open(d.path(), "beta", quota()).unwrap();
        assert_eq!(b.get("k"), None, "another plugin's store is separate");
        let a2 = KvStore::open(d.path(), "alpha", quota()).unwrap();
        assert_eq!(a2.get("k"), Some("v"));
        a.put("k", None).unwrap();
        assert_eq!(
            KvStore::open(d.path(), "alpha", quota()).unwrap().get("k"),
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
        assert_eq!(s.get("c"), None);
        assert_eq!(
            KvStore::open(d.path(), "p", quota()).unwrap().get("b"),
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
}
