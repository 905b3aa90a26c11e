//! The build: from the lockfile to the ISO, bit for bit reproducibly.
//!
//! Stages (see `stages/`): repo -> toolchain -> rootfs -> customize -> normalize -> squashfs ->
//! boot -> iso, then `out/`. Each stage is keyed by its recipe version, configuration and input
//! digests and cached in the store (`<store>/stages`); `no_cache` builds every stage afresh in a
//! temporary stage root. Every subprocess goes through the runner; the tools that shape the
//! output's bytes run from the locked toolchain tree.

mod cache;
mod error;
mod fat;
mod normalize;
mod outputs;
mod sandbox;
pub mod stages;
mod toolchain;
mod tools;

pub use error::BuildError;
pub use outputs::{clear_previous, output_names};
pub use toolchain::Toolchain;

use cache::StageCache;
use ceremony_os_runner::Runner;
use ceremony_os_definition::{ImageDefinition, Lockfile, relative_to};
use ceremony_os_store::Store;
use std::path::{Path, PathBuf};

/// One stage as it ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageRecord {
    pub name: &'static str,
    pub key: String,
    pub digest: String,
    pub cached: bool,
    pub seconds: f64,
}

/// Progress of a build. Called from the building thread.
pub trait BuildObserver {
    fn stage_started(&self, _name: &'static str) {}
    fn stage_finished(&self, _record: &StageRecord) {}
    fn progress(&self, _stage: &'static str, _message: &str) {}
}

#[derive(Debug)]
pub struct BuildRequest<'a> {
    pub definition_path: &'a Path,
    pub definition: &'a ImageDefinition,
    pub lock: &'a Lockfile,
    /// SHA-256 of the lockfile's bytes, recorded in the manifest.
    pub lock_sha256: String,
    pub store: &'a Store,
    pub out_dir: PathBuf,
    /// Build every stage afresh in a temporary stage root under `work_dir`.
    pub no_cache: bool,
    /// Where temporary build state goes [default: the store's tmp/].
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub iso: PathBuf,
    pub iso_sha256: String,
    pub iso_size: u64,
    pub manifest: PathBuf,
    pub sbom: PathBuf,
    pub provenance: PathBuf,
    pub rootfs_manifest: PathBuf,
    pub nar_hash: String,
    pub stages: Vec<StageRecord>,
}

/// Only the `toolchain` stage (cached like in a build): the locked tools, ready to run. For other
/// commands that must use the same pinned tools (the material disc's xorriso).
pub fn prepare_toolchain(
    definition_path: &Path,
    definition: &ImageDefinition,
    lock: &Lockfile,
    store: &Store,
    observer: &dyn BuildObserver,
) -> Result<Toolchain, BuildError> {
    let cache = StageCache::open(&store.root().join("stages"))?;
    let ctx = stages::Ctx {
        def: definition,
        definition_path,
        lock,
        store,
        runner: Runner::new(definition.source_date_epoch()),
        cache: &cache,
        observer,
        records: Default::default(),
    };
    let output = stages::toolchain::run(&ctx)?;
    Ok(Toolchain::from_stage(&output))
}

pub fn build(request: &BuildRequest<'_>, observer: &dyn BuildObserver) -> Result<BuildReport, BuildError> {
    if !rustix::process::geteuid().is_root() {
        return Err(BuildError::NotRoot);
    }
    // Files this process writes into stage outputs take their mode from the umask: fix it, as the
    // runner does for every subprocess, so the caller's umask cannot reach the image.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let def = request.definition;
    clear_previous(&request.out_dir, def)?;
    let work_dir = request.work_dir.clone().unwrap_or_else(|| request.store.root().join("tmp"));
    std::fs::create_dir_all(&work_dir).map_err(|e| BuildError::io(&work_dir, e))?;
    let fresh_root = if request.no_cache {
        Some(
            tempfile::Builder::new()
                .prefix("build-")
                .tempdir_in(&work_dir)
                .map_err(|e| BuildError::io(&work_dir, e))?,
        )
    } else {
        None
    };
    let stage_root = match &fresh_root {
        Some(dir) => dir.path().to_path_buf(),
        None => request.store.root().join("stages"),
    };
    let cache = StageCache::open(&stage_root)?;
    let runner = Runner::new(def.source_date_epoch());

    let workspace = relative_to(request.definition_path, &def.customize.tools_workspace);
    let tools =
        tools::build_ceremony_tools(&runner, &workspace, &mut |line| observer.progress("tools", line))?;

    let ctx = stages::Ctx {
        def,
        definition_path: request.definition_path,
        lock: request.lock,
        store: request.store,
        runner,
        cache: &cache,
        observer,
        records: Default::default(),
    };
    let repo = stages::repo::run(&ctx)?;
    let toolchain = Toolchain::from_stage(&stages::toolchain::run(&ctx)?);
    let rootfs = stages::rootfs::run(&ctx, &repo)?;
    let customized = stages::customize::run(&ctx, &rootfs, &tools.binary)?;
    let normalized = stages::normalize::run(&ctx, &customized)?;
    let tree = stages::normalize::NormalizedTree::at(&normalized.path)?;
    let squashfs = stages::squashfs::run(&ctx, &normalized, &toolchain)?;
    let boot = stages::boot::run(&ctx, &normalized, &toolchain)?;
    let iso = stages::iso::run(&ctx, &squashfs, &boot, &toolchain)?;

    let records = ctx.records.borrow().clone();
    outputs::write_outputs(
        &request.out_dir,
        &outputs::OutputInputs {
            def,
            lock: request.lock,
            lock_sha256: &request.lock_sha256,
            iso: &iso.path,
            iso_sha256: &iso.digest,
            rootfs_manifest: &tree.manifest,
            nar_hash: &tree.nar_hash,
            stages: &records,
            compiler: &tools.compiler,
            tools_sha256: &tools.binary.sha256,
            git_commit: &tools.git_commit,
            toolchain_digest: toolchain.digest(),
        },
    )
}
