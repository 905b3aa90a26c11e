//! Loading the definition and its lockfile together.

use anyhow::{Context, Result, bail};
use ceremony_os_definition::{ImageDefinition, Lockfile};
use std::io::Write;
use std::path::Path;

/// Load both files and refuse a lock that no longer matches its definition.
pub fn load(definition: &Path, lockfile: &Path) -> Result<(ImageDefinition, Lockfile)> {
    let def = ImageDefinition::load(definition)?;
    if !lockfile.exists() {
        bail!("{} does not exist: run `ceremony-os lock {}` first", lockfile.display(), definition.display());
    }
    let lock = Lockfile::load(lockfile)?;
    let stale = lock.staleness(&def);
    if !stale.is_empty() {
        bail!(
            "{} is stale for {}:\n  {}\nrun `ceremony-os lock` to update it",
            lockfile.display(),
            definition.display(),
            stale.join("\n  ")
        );
    }
    Ok((def, lock))
}

/// Write through a temporary file in the same directory and rename, so readers never see a
/// partial file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
