//! The stage cache: `<root>/<stage>/<key>/` holds a stage's finished output (`out`, a file or a
//! directory) and its digest (`digest`, written last). An entry exists only once complete: work
//! happens in `<root>/<stage>/.tmp-<key>`, which is renamed into place after the output is
//! digested. One build at a time holds the store lock; it removes unfinished work it finds.

use crate::error::BuildError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Builds a cache key: SHA-256 over `name=value` lines, in the order given.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    text: String,
}

impl KeyBuilder {
    pub fn new(stage: &str, recipe_version: u32) -> Self {
        let mut k = KeyBuilder::default();
        k.field("stage", stage).field("recipe", &recipe_version.to_string());
        k
    }

    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        // Length-prefixed so that no two different field lists produce the same text.
        self.text.push_str(&format!("{name}:{}:{value}\n", value.len()));
        self
    }

    pub fn finish(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }
}

/// A finished stage output.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub key: String,
    pub digest: String,
    pub path: PathBuf,
    pub cached: bool,
}

#[derive(Debug)]
pub struct StageCache {
    root: PathBuf,
    _lock: File,
}

impl StageCache {
    /// Open the cache at `root`, taking the lock (waiting if another build holds it) and removing
    /// unfinished work left by an interrupted build.
    pub fn open(root: &Path) -> Result<Self, BuildError> {
        std::fs::create_dir_all(root).map_err(|e| BuildError::io(root, e))?;
        let lock_path = root.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| BuildError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            eprintln!("waiting for another build using {} to finish", root.display());
            lock.lock().map_err(|e| BuildError::io(&lock_path, e))?;
        }
        let cache = StageCache { root: root.to_path_buf(), _lock: lock };
        cache.remove_unfinished()?;
        Ok(cache)
    }

    fn remove_unfinished(&self) -> Result<(), BuildError> {
        for stage in read_dir_sorted(&self.root)? {
            if !stage.is_dir() {
                continue;
            }
            for entry in read_dir_sorted(&stage)? {
                let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.starts_with(".tmp-") {
                    tracing::info!("removing unfinished stage work {}", entry.display());
                    remove_tree(&entry)?;
                }
            }
        }
        Ok(())
    }

    pub fn lookup(&self, stage: &str, key: &str) -> Result<Option<StageOutput>, BuildError> {
        let dir = self.root.join(stage).join(key);
        let digest_path = dir.join("digest");
        match std::fs::read_to_string(&digest_path) {
            Ok(digest) => Ok(Some(StageOutput {
                key: key.to_string(),
                digest: digest.trim().to_string(),
                path: dir.join("out"),
                cached: true,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BuildError::io(&digest_path, e)),
        }
    }

    /// A fresh work directory for a stage; its `out` path is where the stage writes.
    pub fn begin(&self, stage: &str, key: &str) -> Result<PathBuf, BuildError> {
        let tmp = self.root.join(stage).join(format!(".tmp-{key}"));
        if tmp.exists() {
            remove_tree(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
        Ok(tmp)
    }

    /// Record a finished stage: write the digest, then rename the work directory into place.
    pub fn commit(
        &self,
        stage: &str,
        key: &str,
        tmp: &Path,
        digest: &str,
    ) -> Result<StageOutput, BuildError> {
        let digest_path = tmp.join("digest");
        std::fs::write(&digest_path, format!("{digest}\n")).map_err(|e| BuildError::io(&digest_path, e))?;
        let dest = self.root.join(stage).join(key);
        if dest.exists() {
            remove_tree(&dest)?;
        }
        std::fs::rename(tmp, &dest).map_err(|e| BuildError::io(&dest, e))?;
        if let Ok(dir) = File::open(self.root.join(stage)) {
            let _ = dir.sync_all();
        }
        Ok(StageOutput {
            key: key.to_string(),
            digest: digest.to_string(),
            path: dest.join("out"),
            cached: false,
        })
    }
}

pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BuildError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| BuildError::io(dir, err)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    Ok(entries)
}

/// Remove a file, symlink or directory tree (see [`remove_tree`]).
pub(crate) fn remove_path(path: &Path) -> Result<(), BuildError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| BuildError::io(path, e))?;
    if meta.is_dir() {
        remove_tree(path)
    } else {
        std::fs::remove_file(path).map_err(|e| BuildError::io(path, e))
    }
}

/// Remove a tree, refusing if anything is mounted inside it (a killed chroot step must never make
/// us delete through a bind mount).
pub(crate) fn remove_tree(path: &Path) -> Result<(), BuildError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = path.to_string_lossy().into_owned();
    let inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| {
            mp.starts_with(&prefix) && (mp.len() == prefix.len() || mp.as_bytes()[prefix.len()] == b'/')
        })
        .collect();
    if !inside.is_empty() {
        return Err(BuildError::Mounted {
            path: path.to_path_buf(),
            mounts: inside.iter().map(|s| s.to_string()).collect(),
        });
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_length_prefixed_and_ordered() {
        let a = KeyBuilder::new("s", 1).field("a", "bc").finish();
        let b = KeyBuilder::new("s", 1).field("ab", "c").finish();
        assert_ne!(a, b);
        let c = KeyBuilder::new("s", 2).field("a", "bc").finish();
        assert_ne!(a, c, "the recipe version is part of the key");
    }

    #[test]
    fn unfinished_work_is_removed_and_entries_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = StageCache::open(dir.path()).unwrap();
            let tmp = cache.begin("iso", "k1").unwrap();
            std::fs::write(tmp.join("out"), b"partial").unwrap();
            assert!(cache.lookup("iso", "k1").unwrap().is_none());
        }
        let cache = StageCache::open(dir.path()).unwrap();
        assert!(!dir.path().join("iso/.tmp-k1").exists(), "interrupted work is cleaned up");
        let tmp = cache.begin("iso", "k1").unwrap();
        std::fs::write(tmp.join("out"), b"done").unwrap();
        let out = cache.commit("iso", "k1", &tmp, "abc").unwrap();
        assert!(!out.cached);
        let found = cache.lookup("iso", "k1").unwrap().unwrap();
        assert_eq!(found.digest, "abc");
        assert_eq!(std::fs::read(found.path).unwrap(), b"done");
    }
}
