//! The stage cache: `<root>/<stage>/<key>/` holds a stage's finished output (`out`, a file or a
//! directory), the inputs it was made from (`inputs.json`, whose SHA-256 is the key), its digest
//! (`digest`, written last) and, for trees, a seal (`seal`).
//!
//! An entry exists only once complete: work happens in `<root>/<stage>/.tmp-<key>`, which is
//! renamed into place after the output is digested. One build at a time holds the store lock;
//! it removes unfinished work it finds.
//!
//! A cache hit is checked against its recorded digest before it is used. A file output is hashed
//! again. A tree output is first compared with its seal (every entry's inode, size, mode, owner,
//! mtime and ctime: a change to a file's content or metadata changes its ctime, which no user can
//! set back); only when the seal does not match (a copied store, or an edit) is the tree hashed
//! again. An entry whose output no longer has its recorded digest is discarded and rebuilt.

use crate::error::BuildError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A stage's inputs as canonical JSON (object keys sorted, no insignificant white space) and the
/// key derived from it.
#[derive(Debug, Clone)]
pub struct KeyedInputs {
    pub json: String,
    pub key: String,
}

impl KeyedInputs {
    pub fn new(inputs: &impl serde::Serialize) -> Self {
        // serde_json's Value keeps object keys in a BTreeMap: serializing through it sorts them.
        let value = serde_json::to_value(inputs).expect("stage inputs serialize");
        let json = serde_json::to_string(&value).expect("a JSON value serializes");
        let key = hex::encode(Sha256::digest(json.as_bytes()));
        KeyedInputs { json, key }
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).expect("canonical JSON parses")
    }
}

/// Whether a stage's output is one file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    File,
    Tree,
}

/// A finished stage output.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub key: String,
    pub digest: String,
    pub path: PathBuf,
    pub cached: bool,
}

/// What a cache lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(StageOutput),
    Miss,
    /// The entry's output no longer has its recorded digest; it has been removed.
    Discarded {
        recorded: String,
        actual: String,
    },
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

    /// The entry for `key`, checked against its recorded digest (and inputs) before it is
    /// returned. An entry that fails the check is removed.
    pub fn lookup(&self, stage: &str, inputs: &KeyedInputs, kind: OutputKind) -> Result<Lookup, BuildError> {
        let dir = self.root.join(stage).join(&inputs.key);
        let digest_path = dir.join("digest");
        let recorded = match std::fs::read_to_string(&digest_path) {
            Ok(digest) => digest.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(BuildError::io(&digest_path, e)),
        };
        let out = dir.join("out");
        let recorded_inputs = std::fs::read_to_string(dir.join("inputs.json")).unwrap_or_default();
        let actual = if recorded_inputs != inputs.json {
            // The key is the inputs' digest: an entry whose inputs differ was written by hand.
            format!("inputs {}", hex::encode(Sha256::digest(recorded_inputs.as_bytes())))
        } else {
            match kind {
                OutputKind::File => match ceremony_os_tree::sha256_file(&out) {
                    Ok(d) => d,
                    Err(e) => format!("unreadable ({e})"),
                },
                OutputKind::Tree => self.verify_tree(&dir, &out, &recorded)?,
            }
        };
        if actual == recorded {
            return Ok(Lookup::Hit(StageOutput {
                key: inputs.key.clone(),
                digest: recorded,
                path: out,
                cached: true,
            }));
        }
        remove_tree(&dir)?;
        Ok(Lookup::Discarded { recorded, actual })
    }

    /// The tree's digest if its seal still holds, otherwise the digest of its content (which
    /// then re-seals it when it matches).
    fn verify_tree(&self, dir: &Path, out: &Path, recorded: &str) -> Result<String, BuildError> {
        let seal_path = dir.join("seal");
        if let (Ok(seal), Ok(current)) = (std::fs::read_to_string(&seal_path), tree_seal(out))
            && seal.trim() == current
        {
            return Ok(recorded.to_string());
        }
        let actual = match ceremony_os_tree::TreeManifest::scan(out) {
            Ok(m) => m.digest(),
            Err(e) => return Ok(format!("unreadable ({e})")),
        };
        if actual == recorded {
            write_seal(&seal_path, out)?;
        }
        Ok(actual)
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

    /// Record a finished stage: remove everything but `out`, write the inputs, the seal and the
    /// digest (last), then rename the work directory into place.
    pub fn commit(
        &self,
        stage: &str,
        inputs: &KeyedInputs,
        tmp: &Path,
        kind: OutputKind,
        digest: &str,
    ) -> Result<StageOutput, BuildError> {
        for entry in read_dir_sorted(tmp)? {
            if entry.file_name().is_some_and(|n| n != "out") {
                remove_path(&entry)?;
            }
        }
        let write = |name: &str, text: &str| {
            let path = tmp.join(name);
            std::fs::write(&path, text).map_err(|e| BuildError::io(&path, e))
        };
        write("inputs.json", &inputs.json)?;
        if kind == OutputKind::Tree {
            write_seal(&tmp.join("seal"), &tmp.join("out"))?;
        }
        write("digest", &format!("{digest}\n"))?;
        let dest = self.root.join(stage).join(&inputs.key);
        if dest.exists() {
            remove_tree(&dest)?;
        }
        std::fs::rename(tmp, &dest).map_err(|e| BuildError::io(&dest, e))?;
        if let Ok(dir) = File::open(self.root.join(stage)) {
            let _ = dir.sync_all();
        }
        Ok(StageOutput {
            key: inputs.key.clone(),
            digest: digest.to_string(),
            path: dest.join("out"),
            cached: false,
        })
    }
}

/// The seal of a tree: SHA-256 over every entry's path, inode, size, mode, owner, mtime and
/// ctime, in sorted order.
fn tree_seal(root: &Path) -> Result<String, BuildError> {
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    let mut visit = vec![root.to_path_buf()];
    while let Some(dir) = visit.pop() {
        for entry in read_dir_sorted(&dir)? {
            let meta = std::fs::symlink_metadata(&entry).map_err(|e| BuildError::io(&entry, e))?;
            let relative = entry.strip_prefix(root).unwrap_or(&entry);
            hasher.update(relative.as_os_str().as_encoded_bytes());
            hasher.update(
                format!(
                    "\0{} {} {} {}:{} {}.{} {}.{}\n",
                    meta.ino(),
                    meta.size(),
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec()
                )
                .as_bytes(),
            );
            if meta.is_dir() {
                visit.push(entry);
            }
        }
    }
    let meta = std::fs::symlink_metadata(root).map_err(|e| BuildError::io(root, e))?;
    hasher.update(format!("root {} {}.{}", meta.mode(), meta.ctime(), meta.ctime_nsec()).as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

fn write_seal(path: &Path, out: &Path) -> Result<(), BuildError> {
    let seal = tree_seal(out)?;
    std::fs::write(path, format!("{seal}\n")).map_err(|e| BuildError::io(path, e))
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

    #[derive(serde::Serialize)]
    struct Inputs {
        b: u32,
        a: &'static str,
    }

    fn keyed(a: &'static str) -> KeyedInputs {
        KeyedInputs::new(&Inputs { b: 1, a })
    }

    #[test]
    fn inputs_are_canonical_json_and_the_key_is_their_digest() {
        let k = keyed("x");
        assert_eq!(k.json, r#"{"a":"x","b":1}"#, "keys sorted, no white space");
        assert_eq!(k.key, hex::encode(Sha256::digest(k.json.as_bytes())));
        assert_ne!(keyed("y").key, k.key);
    }

    fn commit_file(cache: &StageCache, inputs: &KeyedInputs, bytes: &[u8]) -> StageOutput {
        let tmp = cache.begin("iso", &inputs.key).unwrap();
        std::fs::write(tmp.join("out"), bytes).unwrap();
        let digest = hex::encode(Sha256::digest(bytes));
        cache.commit("iso", inputs, &tmp, OutputKind::File, &digest).unwrap()
    }

    #[test]
    fn unfinished_work_is_removed_and_entries_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = keyed("x");
        {
            let cache = StageCache::open(dir.path()).unwrap();
            let tmp = cache.begin("iso", &inputs.key).unwrap();
            std::fs::write(tmp.join("out"), b"partial").unwrap();
            assert!(matches!(cache.lookup("iso", &inputs, OutputKind::File).unwrap(), Lookup::Miss));
        }
        let cache = StageCache::open(dir.path()).unwrap();
        assert!(
            !dir.path().join(format!("iso/.tmp-{}", inputs.key)).exists(),
            "interrupted work is cleaned up"
        );
        let out = commit_file(&cache, &inputs, b"done");
        assert!(!out.cached);
        let Lookup::Hit(found) = cache.lookup("iso", &inputs, OutputKind::File).unwrap() else { panic!() };
        assert_eq!(found.digest, out.digest);
        assert_eq!(std::fs::read(found.path).unwrap(), b"done");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("iso").join(&inputs.key).join("inputs.json")).unwrap(),
            inputs.json
        );
    }

    #[test]
    fn an_altered_file_entry_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(dir.path()).unwrap();
        let inputs = keyed("x");
        let out = commit_file(&cache, &inputs, b"genuine");
        std::fs::write(&out.path, b"altered").unwrap();
        let Lookup::Discarded { recorded, actual } = cache.lookup("iso", &inputs, OutputKind::File).unwrap()
        else {
            panic!("an altered entry was used")
        };
        assert_eq!(recorded, out.digest);
        assert_eq!(actual, hex::encode(Sha256::digest(b"altered")));
        assert!(!dir.path().join("iso").join(&inputs.key).exists(), "the entry is removed");
    }

    #[test]
    fn an_entry_with_other_inputs_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(dir.path()).unwrap();
        let inputs = keyed("x");
        commit_file(&cache, &inputs, b"genuine");
        std::fs::write(dir.path().join("iso").join(&inputs.key).join("inputs.json"), "{}").unwrap();
        assert!(matches!(cache.lookup("iso", &inputs, OutputKind::File).unwrap(), Lookup::Discarded { .. }));
    }

    #[test]
    fn a_tree_edit_breaks_the_seal_and_is_found_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::open(dir.path()).unwrap();
        let inputs = keyed("tree");
        let tmp = cache.begin("rootfs", &inputs.key).unwrap();
        std::fs::create_dir_all(tmp.join("out/etc")).unwrap();
        std::fs::write(tmp.join("out/etc/hostname"), b"ceremony\n").unwrap();
        let digest = ceremony_os_tree::TreeManifest::scan(&tmp.join("out")).unwrap().digest();
        let out = cache.commit("rootfs", &inputs, &tmp, OutputKind::Tree, &digest).unwrap();
        assert!(matches!(cache.lookup("rootfs", &inputs, OutputKind::Tree).unwrap(), Lookup::Hit(_)));

        // Same size, mtime set back: only the seal's ctime (and the content) can tell.
        let file = out.path.join("etc/hostname");
        let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&file).unwrap());
        std::fs::write(&file, b"attacker\n").unwrap();
        filetime::set_file_mtime(&file, mtime).unwrap();
        let Lookup::Discarded { recorded, .. } = cache.lookup("rootfs", &inputs, OutputKind::Tree).unwrap()
        else {
            panic!("an edited tree was used")
        };
        assert_eq!(recorded, digest);
    }

    #[test]
    fn a_copied_tree_fails_the_seal_but_passes_by_content_and_is_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = keyed("tree");
        {
            let cache = StageCache::open(&dir.path().join("a")).unwrap();
            let tmp = cache.begin("rootfs", &inputs.key).unwrap();
            std::fs::create_dir_all(tmp.join("out")).unwrap();
            std::fs::write(tmp.join("out/f"), b"x").unwrap();
            let digest = ceremony_os_tree::TreeManifest::scan(&tmp.join("out")).unwrap().digest();
            cache.commit("rootfs", &inputs, &tmp, OutputKind::Tree, &digest).unwrap();
        }
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.path().join("a"))
            .arg(dir.path().join("b"))
            .status()
            .unwrap();
        assert!(status.success());
        let seal_path = dir.path().join("b/rootfs").join(&inputs.key).join("seal");
        let copied_seal = std::fs::read_to_string(&seal_path).unwrap();
        let cache = StageCache::open(&dir.path().join("b")).unwrap();
        assert!(matches!(cache.lookup("rootfs", &inputs, OutputKind::Tree).unwrap(), Lookup::Hit(_)));
        assert_ne!(
            std::fs::read_to_string(&seal_path).unwrap(),
            copied_seal,
            "resealed for the copy's inodes"
        );
    }
}
