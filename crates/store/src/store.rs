//! The store on disk: layout, verified insertion, verification of what is already there.

use ceremony_os_definition::Sha256Digest;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What a file must be to enter the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub sha256: Sha256Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("SHA-256 mismatch: expected {expected}, got {actual}")]
    Hash { expected: Sha256Digest, actual: Sha256Digest },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_path_buf(), source }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`. A relative `root` is made absolute
    /// here, once: stage outputs under it are bound into jails that run elsewhere.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let root = &std::path::absolute(root).map_err(|e| StoreError::io(root, e))?;
        for sub in ["sha256", "tmp", "partial"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// `$XDG_CACHE_HOME/ceremony-os/store`, else `$HOME/.cache/ceremony-os/store`.
    pub fn default_root() -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/var/cache"));
        cache.join("ceremony-os").join("store")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object with this digest lives (whether or not it is there).
    pub fn object_path(&self, sha256: &Sha256Digest) -> PathBuf {
        self.root.join("sha256").join(sha256.as_hex())
    }

    /// Hold the store's fetch lock (waiting for another process that holds it): one fetch at a
    /// time writes partial downloads, so two processes never write the same partial file.
    pub(crate) fn lock_for_fetch(&self) -> Result<File, StoreError> {
        let path = self.root.join("fetch.lock");
        let file = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        if file.try_lock().is_err() {
            tracing::warn!("waiting for another fetch using {}", self.root.display());
            file.lock().map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(file)
    }

    pub(crate) fn partial_path(&self, sha256: &Sha256Digest) -> PathBuf {
        self.root.join("partial").join(sha256.as_hex())
    }

    /// Is the object present with the right size and digest? A present but corrupt object is
    /// removed (and reported through the returned `Err` only if removal fails).
    pub fn has_verified(&self, expected: &Expected) -> Result<bool, StoreError> {
        let path = self.object_path(&expected.sha256);
        match verify_file(&path, expected) {
            Ok(()) => Ok(true),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(StoreError::Io { path, source }) => Err(StoreError::Io { path, source }),
            Err(mismatch) => {
                tracing::warn!("store object {} is corrupt ({mismatch}); removing it", path.display());
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                Ok(false)
            }
        }
    }

    /// Move a complete file (on the store's file system) into the store if it verifies; the file
    /// is consumed either way.
    pub(crate) fn adopt(&self, file: &Path, expected: &Expected) -> Result<PathBuf, StoreError> {
        let result = verify_file(file, expected).and_then(|()| {
            File::open(file).and_then(|f| f.sync_all()).map_err(|e| StoreError::io(file, e))?;
            let dest = self.object_path(&expected.sha256);
            std::fs::rename(file, &dest).map_err(|e| StoreError::io(&dest, e))?;
            sync_dir(&self.root.join("sha256"));
            Ok(dest)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(file);
        }
        result
    }

    /// Copy `source` into the store through a temporary file, verifying as it copies. Only a
    /// regular file is read: a FIFO, device or socket is refused without blocking on it.
    pub fn insert_file(&self, source: &Path, expected: &Expected) -> Result<PathBuf, StoreError> {
        let mut input = open_regular(source)?;
        let tmp_dir = self.root.join("tmp");
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| StoreError::io(&tmp_dir, e))?;
        let (file, tmp_path) = tmp.keep().map_err(|e| StoreError::io(&tmp_dir, e.error))?;
        let mut output = std::io::BufWriter::new(file);
        let copied = std::io::copy(&mut (&mut input).take(expected.size + 1), &mut output)
            .and_then(|n| output.flush().map(|()| n));
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(StoreError::io(source, e));
        }
        self.adopt(&tmp_path, expected)
    }

    /// Add `bytes` as the object `expected` names, after checking them.
    pub fn insert_bytes(&self, bytes: &[u8], expected: &Expected) -> Result<PathBuf, StoreError> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| StoreError::io(&tmp_dir, e))?;
        tmp.write_all(bytes).map_err(|e| StoreError::io(tmp.path(), e))?;
        let (_, tmp_path) = tmp.keep().map_err(|e| StoreError::io(&tmp_dir, e.error))?;
        self.adopt(&tmp_path, expected)
    }
}

/// Open a file for reading only if it is a regular file (opened without blocking, then checked,
/// so a FIFO cannot hang the caller).
pub fn open_regular(path: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    let meta = file.metadata().map_err(|e| StoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(StoreError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, device, socket or directory)",
            ),
        ));
    }
    Ok(file)
}

/// Check a file's size and SHA-256.
pub(crate) fn verify_file(path: &Path, expected: &Expected) -> Result<(), StoreError> {
    let meta = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
    if meta.len() != expected.size {
        return Err(StoreError::Size { expected: expected.size, actual: meta.len() });
    }
    let actual = sha256_file(path)?;
    if actual != expected.sha256 {
        return Err(StoreError::Hash { expected: expected.sha256.clone(), actual });
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<Sha256Digest, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| StoreError::io(path, e))?;
    Ok(Sha256Digest::from_bytes(&hasher.finalize().into()))
}

fn sync_dir(dir: &Path) {
    // Make the rename durable; failure here only weakens durability, never correctness.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected_for(bytes: &[u8]) -> Expected {
        Expected { sha256: Sha256Digest::from_bytes(&Sha256::digest(bytes).into()), size: bytes.len() as u64 }
    }

    /// Stage outputs are bound into jails by their store path: a relative one would name
    /// nothing there (`--store target/tmp/store` once failed the tools stage so).
    #[test]
    fn a_relative_root_is_made_absolute() {
        // cargo runs unit tests in the package's directory.
        let store = Store::open(Path::new("../../target/relative-store")).unwrap();
        assert!(store.root().is_absolute(), "{}", store.root().display());
        assert!(store.root().join("sha256").is_dir());
    }

    #[test]
    fn insert_verifies_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let src = dir.path().join("a.deb");
        std::fs::write(&src, b"hello").unwrap();
        let good = expected_for(b"hello");
        let stored = store.insert_file(&src, &good).unwrap();
        assert_eq!(std::fs::read(stored).unwrap(), b"hello");
        assert!(store.has_verified(&good).unwrap());

        let wrong = expected_for(b"hellp");
        let err = store.insert_file(&src, &wrong).unwrap_err();
        assert!(matches!(err, StoreError::Hash { .. }), "{err}");
        assert!(!store.object_path(&wrong.sha256).exists());
        assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0, "temp file left behind");
    }

    #[test]
    fn corrupt_object_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = expected_for(b"hello");
        std::fs::write(store.object_path(&good.sha256), b"jello").unwrap();
        assert!(!store.has_verified(&good).unwrap());
        assert!(!store.object_path(&good.sha256).exists());
    }
}
