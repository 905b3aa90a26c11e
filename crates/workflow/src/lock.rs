//! `lock` and `lock --check`.

use crate::fetch::FetchConfig;
use crate::{Project, write_atomically};
use anyhow::{Context, Result};
use ceremony_os_definition::{ImageDefinition, Lockfile, Sha256Digest};
use ceremony_os_store::locked::{self, StateReport};
use ceremony_os_store::{Expected, FetchObserver, Store};
use std::path::Path;

/// A lock written by [`lock`].
#[derive(Debug, Clone)]
pub struct LockWritten {
    pub lock: Lockfile,
    /// The lockfile's bytes.
    pub text: String,
}

/// Resolve the definition against today's archive, keep the archive files its trust chain needs
/// in the store, check that chain, and return the lock (not written).
pub(crate) fn resolve(
    store: &Store,
    definition_path: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<LockWritten> {
    let def = ImageDefinition::load(definition_path)?;
    let keyring = def.keyring_path(definition_path);
    let resolved = ceremony_os_debian::resolve_lock(&def, &keyring, progress)
        .with_context(|| format!("locking {}", definition_path.display()))?;
    // The archive state goes into the store first: a lock is only returned once everything its
    // trust chain needs is kept.
    for file in &resolved.files {
        let expected = Expected {
            sha256: Sha256Digest::try_from(crate::sha256_hex(&file.bytes)).expect("hex"),
            size: file.bytes.len() as u64,
        };
        store
            .insert_bytes(&file.bytes, &expected)
            .with_context(|| format!("keeping {} in the store", file.label))?;
    }
    let keyring_bytes = std::fs::read(&keyring).with_context(|| format!("reading {}", keyring.display()))?;
    locked::check_trust(store, &resolved.lock, &keyring_bytes, &Default::default())
        .context("the lock just resolved does not pass its own trust chain")?;
    let text = resolved.lock.render();
    Ok(LockWritten { lock: resolved.lock, text })
}

/// `ceremony-os lock`: resolve and write `lock_path` (atomically, after the store holds its
/// archive state).
pub fn lock(
    store: &Store,
    definition_path: &Path,
    lock_path: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<LockWritten> {
    let written = resolve(store, definition_path, progress)?;
    write_atomically(lock_path, written.text.as_bytes())?;
    Ok(written)
}

/// What `lock --check` found.
#[derive(Debug, Clone)]
pub struct LockCheck {
    /// The trust chain as checked (which archives were re-vouched, by which states).
    pub state: StateReport,
    /// Resolving today gives the same packages and archive states (none: not compared).
    pub up_to_date: Option<bool>,
}

/// `ceremony-os lock --check`: fetch the lock's archive state and check its trust chain; then,
/// when `compare_live`, resolve again and say whether the archive has moved on.
pub fn check_lock(
    store: &Store,
    project: &Project,
    config: &FetchConfig,
    observer: &dyn FetchObserver,
    compare_live: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<LockCheck> {
    let keyring = project.keyring()?;
    let state = locked::fetch_state(
        store,
        &project.def,
        &project.lock,
        &keyring,
        &config.sources,
        &config.options,
        observer,
    )
    .with_context(|| format!("the lock for {} does not hold", project.definition_path.display()))?;
    let up_to_date = if compare_live {
        let mut today = resolve(store, &project.definition_path, progress)?.lock;
        // A lock made before snapshot times were recorded is not out of date for lacking one.
        for (now, then) in today.archives.iter_mut().zip(&project.lock.archives) {
            if then.snapshot_time.is_none() {
                now.snapshot_time = None;
            }
        }
        Some(today.render() == project.lock.render())
    } else {
        None
    };
    Ok(LockCheck { state, up_to_date })
}
