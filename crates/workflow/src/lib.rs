//! The work behind the commands that take a definition and its lock: load them, lock, fetch
//! every input (re-vouching archives that moved on), write a release inputs bundle, write a
//! material disc with the lock's tools, and prepare a build, falling back to today's archive state only where the caller allows it. Front ends parse
//! arguments, call one function here per verb, and render what it returns; nothing here prints,
//! reads a terminal or parses arguments. Progress goes to the observers and callbacks given.

mod build;
mod fetch;
mod lock;
mod material;

pub use build::{Fallback, PreparedBuild, prepare_build};
pub use fetch::{FetchConfig, VendorReport, fetch_inputs, fetch_toolchain, vendor};
pub use lock::{LockCheck, LockWritten, check_lock, lock};
pub use material::{EpochSource, make_material, material_epoch};

use anyhow::{Context, Result, bail};
use ceremony_os_definition::{ImageDefinition, LockedCrate, Lockfile};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A definition and its lockfile, loaded together and checked to belong together.
#[derive(Debug, Clone)]
pub struct Project {
    pub definition_path: PathBuf,
    pub lock_path: PathBuf,
    pub def: ImageDefinition,
    pub lock: Lockfile,
    /// The lockfile as read.
    pub lock_text: String,
    /// SHA-256 of `lock_text` (what the manifest records).
    pub lock_sha256: String,
}

impl Project {
    /// Load both files and refuse a lock that no longer matches its definition.
    pub fn load(definition: &Path, lockfile: &Path) -> Result<Project> {
        let def = ImageDefinition::load(definition)?;
        if !lockfile.exists() {
            bail!(
                "{} does not exist: run `ceremony-os lock {}` first",
                lockfile.display(),
                definition.display()
            );
        }
        let bytes = std::fs::read(lockfile).with_context(|| format!("reading {}", lockfile.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8 text", lockfile.display()))?;
        let lock = Lockfile::parse(text, lockfile)?;
        let stale = lock.staleness(&def);
        if !stale.is_empty() {
            bail!(
                "{} is stale for {}:\n  {}\nrun `ceremony-os lock` to update it",
                lockfile.display(),
                definition.display(),
                stale.join("\n  ")
            );
        }
        Ok(Project {
            definition_path: definition.to_path_buf(),
            lock_path: lockfile.to_path_buf(),
            def,
            lock,
            lock_sha256: sha256_hex(&bytes),
            lock_text: text.to_string(),
        })
    }

    /// The archive keyring's bytes.
    pub fn keyring(&self) -> Result<Vec<u8>> {
        let path = self.def.keyring_path(&self.definition_path);
        std::fs::read(&path).with_context(|| format!("reading the keyring {}", path.display()))
    }

    /// The registry crates of the `ceremony` tool's Cargo.lock.
    pub fn crates(&self) -> Result<Vec<LockedCrate>> {
        let workspace = ceremony_os_builder::tools_workspace(&self.definition_path, &self.def);
        Ok(ceremony_os_builder::workspace_crates(&workspace)?)
    }

    /// SHA-256 of the tool workspace's Cargo.lock.
    fn cargo_lock_sha256(&self) -> Result<String> {
        let path = ceremony_os_builder::tools_workspace(&self.definition_path, &self.def).join("Cargo.lock");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(sha256_hex(&bytes))
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write through a temporary file in the same directory and rename, so readers never see a
/// partial file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
