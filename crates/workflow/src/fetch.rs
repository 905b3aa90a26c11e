//! `fetch`, the toolchain's inputs (for the material disc), and `vendor` (a release inputs
//! bundle).

use crate::Project;
use anyhow::{Context, Result};
use ceremony_os_store::bundle::{self, BundleFile, BundleWritten, EntryKind};
use ceremony_os_store::locked::{self, InputsReport, StateReport};
use ceremony_os_store::{FetchObserver, FetchOptions, FetchReport, Sources, Store};
use std::path::Path;

/// Where inputs may come from and how to download them.
#[derive(Debug, Clone, Default)]
pub struct FetchConfig {
    pub sources: Sources,
    pub options: FetchOptions,
}

/// Every input of the lock in the store, verified: the archive state (re-vouched where the
/// locked state cannot be had), the trust chain, every locked .deb, and the tool's crates that a
/// bundle holds.
pub fn fetch_inputs(
    store: &Store,
    project: &Project,
    config: &FetchConfig,
    observer: &dyn FetchObserver,
) -> Result<InputsReport> {
    let keyring = project.keyring()?;
    // Only a bundle can hold crates (cargo fetches any other in the `tools` stage).
    let crates = if config.sources.bundles.is_empty() { Vec::new() } else { project.crates()? };
    locked::fetch_inputs(
        store,
        &project.def,
        &project.lock,
        &keyring,
        &crates,
        &config.sources,
        &config.options,
        observer,
    )
    .with_context(|| format!("fetching the inputs of {}", project.lock_path.display()))
}

/// The archive state and the toolchain set's .debs only: what running the locked tools needs.
pub fn fetch_toolchain(
    store: &Store,
    project: &Project,
    config: &FetchConfig,
    observer: &dyn FetchObserver,
) -> Result<(StateReport, FetchReport)> {
    let keyring = project.keyring()?;
    let (def, lock) = (&project.def, &project.lock);
    let context = || format!("fetching the toolchain inputs of {}", project.lock_path.display());
    let state = locked::fetch_state(store, def, lock, &keyring, &config.sources, &config.options, observer)
        .with_context(context)?;
    let items = locked::package_items(def, lock, &lock.toolchain.packages);
    let packages = ceremony_os_store::fetch(store, &items, &config.sources, &config.options, observer)
        .with_context(context)?;
    Ok((state, packages))
}

/// What `vendor` did.
#[derive(Debug, Clone)]
pub struct VendorReport {
    pub inputs: InputsReport,
    pub written: BundleWritten,
}

/// `ceremony-os vendor DIR`: fetch every input, then write them as a release inputs bundle into
/// `dir`: the archive states (or the states that re-vouched for them), the .debs, and every
/// .crate of the tool's Cargo.lock (from the store, the cargo cache, or fetched by cargo).
pub fn vendor(
    store: &Store,
    project: &Project,
    dir: &Path,
    config: &FetchConfig,
    observer: &dyn FetchObserver,
    progress: &dyn Fn(&str),
) -> Result<VendorReport> {
    let inputs = fetch_inputs(store, project, config, observer)?;
    let (def, lock) = (&project.def, &project.lock);
    let mut files = locked::state_files(def, lock, &inputs.state);
    files.extend(locked::package_items(def, lock, lock.all_packages()).into_iter().map(|item| BundleFile {
        item,
        kind: EntryKind::Deb,
        suite: None,
    }));
    let crates = ceremony_os_builder::locate_crates(&project.definition_path, def, store, progress)?;
    let written = bundle::write_bundle(
        store,
        &files,
        &crates,
        &project.lock_sha256,
        &project.cargo_lock_sha256()?,
        dir,
    )
    .with_context(|| format!("writing the bundle {}", dir.display()))?;
    Ok(VendorReport { inputs, written })
}
