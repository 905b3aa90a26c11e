//! The build: from the lockfile to the ISO, bit for bit reproducibly.
//!
//! Stages (see `stages/`): repo -> toolchain -> (tools and rootfs, side by side) -> customize ->
//! normalize -> squashfs -> boot -> iso, then `out/`. Each stage's inputs are one value whose
//! canonical JSON is the stage's key; outputs are cached in the store (`<store>/stages`) and
//! checked against their recorded digests before reuse; `no_cache` builds every stage afresh in a
//! temporary stage root. Every subprocess goes through the runner; everything that shapes the
//! output's bytes runs from the locked toolchain tree (see `toolchain`), and the sources it reads
//! are snapshots taken when the build starts (see `sources`).

mod cache;
mod compiler;
mod crates;
mod error;
mod image_root;
mod normalize;
mod outputs;
mod overlay;
mod sandbox;
mod sources;
pub mod stages;
mod toolchain;

pub use compiler::{pinned_release, release_of};
pub use crates::{locate_crates, tools_workspace, workspace_crates};
pub use error::BuildError;
pub use outputs::{clear_previous, output_names};
pub use toolchain::Toolchain;

use cache::StageCache;
use ceremony_os_definition::published::{InputsRecord, SourceRecord};
use ceremony_os_definition::{ImageDefinition, Lockfile, relative_to};
use ceremony_os_runner::Runner;
use ceremony_os_store::Store;
use stages::{
    boot, customize, iso, normalize as normalize_stage, repo, rootfs, squashfs, toolchain as toolchain_stage,
    tools,
};
use std::path::{Path, PathBuf};

/// One stage as it ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageRecord {
    pub name: &'static str,
    pub key: String,
    pub digest: String,
    /// The stage's inputs (their canonical JSON's SHA-256 is `key`).
    pub inputs: serde_json::Value,
    pub cached: bool,
    /// Why a cache entry for this key was thrown away, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discarded: Option<String>,
    pub seconds: f64,
}

/// Progress of a build. Called from the stages' threads (`tools` and `rootfs` build side by side).
pub trait BuildObserver: Sync {
    fn stage_started(&self, _name: &'static str) {}
    fn stage_finished(&self, _record: &StageRecord) {}
    fn progress(&self, _stage: &'static str, _message: &str) {}
}

#[derive(Debug)]
pub struct BuildRequest<'a> {
    pub definition_path: &'a Path,
    pub definition: &'a ImageDefinition,
    pub lock: &'a Lockfile,
    /// The lockfile as read (its SHA-256 is recorded in the manifest; it is published in out/ as
    /// `ceremony.lock`, so a witness rebuilds from exactly it).
    pub lock_text: &'a str,
    /// Where the lock was read (to tell whether it is the one in the workspace's commit).
    pub lock_path: &'a Path,
    /// When the lock is not the committed one: the package changes from it, published in out/ as
    /// `ceremony.lock.changes`.
    pub lock_changes: Option<String>,
    pub store: &'a Store,
    pub out_dir: PathBuf,
    /// Build every stage afresh in a temporary stage root under `work_dir`.
    pub no_cache: bool,
    /// Where temporary build state goes [default: the store's tmp/].
    pub work_dir: Option<PathBuf>,
    /// How the inputs were had, recorded in the manifest and provenance when not plainly from
    /// the committed lock's archive states.
    pub inputs_record: Option<InputsRecord>,
}

impl BuildRequest<'_> {
    /// SHA-256 of the lockfile's bytes.
    pub fn lock_sha256(&self) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(self.lock_text.as_bytes()))
    }
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
    /// Where each stage's output stays (`<dir>/<stage>/<key>/out`): the store's stage cache; none
    /// for a `no_cache` build, whose stages are removed with it.
    pub stages_dir: Option<PathBuf>,
    /// The source tree the build ran from, as the manifest records it.
    pub source: SourceRecord,
}

/// Only the `toolchain` stage (cached like in a build): the locked tools, ready to run. For other
/// commands that must use the same pinned tools (the material disc's xorriso).
pub fn prepare_toolchain(
    lock: &Lockfile,
    store: &Store,
    observer: &dyn BuildObserver,
) -> Result<Toolchain, BuildError> {
    let cache = StageCache::open(&store.root().join("stages"))?;
    let ctx = stages::Ctx {
        store,
        runner: Runner::new(lock.source_date_epoch),
        cache: &cache,
        observer,
        records: Default::default(),
    };
    let output = toolchain_stage::run(&ctx, &toolchain_stage::inputs(lock))?;
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
    let lock = request.lock;
    clear_previous(&request.out_dir, def)?;
    let work_dir = request.work_dir.clone().unwrap_or_else(|| request.store.root().join("tmp"));
    std::fs::create_dir_all(&work_dir).map_err(|e| BuildError::io(&work_dir, e))?;
    let scratch = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&work_dir)
        .map_err(|e| BuildError::io(&work_dir, e))?;
    let stage_root =
        if request.no_cache { scratch.path().join("stages") } else { request.store.root().join("stages") };
    let cache = StageCache::open(&stage_root)?;
    let runner = Runner::new(def.source_date_epoch());

    // Everything read from the checkout is read once, here.
    let workspace_dir = tools_workspace(request.definition_path, def);
    let workspace_dir = workspace_dir.canonicalize().map_err(|e| BuildError::io(&workspace_dir, e))?;
    let compiler = compiler::find(&runner, &workspace_dir)?;
    let workspace_sources: Vec<(PathBuf, &str)> =
        tools::WORKSPACE_SOURCES.iter().map(|name| (workspace_dir.join(name), *name)).collect();
    let workspace = sources::snapshot(
        &workspace_sources,
        &scratch.path().join("workspace"),
        sources::Keep::CompilerInputs,
    )?;
    let overlay = match &def.customize.overlay {
        Some(dir) => Some(sources::snapshot(
            &[(relative_to(request.definition_path, dir), "overlay")],
            &scratch.path().join("overlay"),
            sources::Keep::Everything,
        )?),
        None => None,
    };
    let bundle_archives: Vec<PathBuf> =
        def.hsm_bundles.iter().map(|b| relative_to(request.definition_path, &b.archive)).collect();
    let source = source_record(&runner, &workspace_dir, request.lock_path, request.lock_text);

    let ctx =
        stages::Ctx { store: request.store, runner, cache: &cache, observer, records: Default::default() };
    let sde = def.source_date_epoch();
    let repo = repo::run(&ctx, &repo::inputs(lock))?;
    let toolchain = Toolchain::from_stage(&toolchain_stage::run(&ctx, &toolchain_stage::inputs(lock))?);
    let tools_inputs = tools::inputs(sde, &toolchain, &workspace.digest, &compiler);
    let rootfs_inputs = rootfs::inputs(def, lock, &repo, &toolchain);
    let overlay_dir = overlay.as_ref().map(|o| o.dir.join("overlay"));
    // `tools` (the compiler) on one thread, `rootfs` then `customize` on the other: neither side
    // reads the other's output until `normalize` (cold, here: tools 53 s against rootfs 32 s then
    // customize 13 s). A failure is reported at once, but the other side runs to its end (and is
    // cached).
    let (tools, customized) = std::thread::scope(|scope| {
        let tools = scope.spawn(|| {
            report_failure(
                &ctx,
                "tools",
                tools::run(&ctx, &tools_inputs, &toolchain, &workspace.dir, &compiler),
            )
        });
        let customized = report_failure(
            &ctx,
            "rootfs",
            rootfs::run(&ctx, &rootfs_inputs, lock.image.variant, &repo, &toolchain),
        )
        .and_then(|rootfs| {
            report_failure(
                &ctx,
                "customize",
                customize::run(
                    &ctx,
                    &customize::inputs(def, &rootfs),
                    &customize::Sources { rootfs: &rootfs, bundle_archives },
                ),
            )
        });
        (tools.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), customized)
    });
    let (tools, customized) = (tools?, customized?);
    let normalized = normalize_stage::run(
        &ctx,
        &normalize_stage::inputs(sde, &customized, &tools, overlay.as_ref().map(|o| o.digest.as_str())),
        &customized,
        &tools,
        overlay_dir.as_deref(),
    )?;
    let tree = normalize_stage::NormalizedTree::at(&normalized.path)?;
    let squashfs = squashfs::run(
        &ctx,
        &squashfs::inputs(sde, &def.squashfs, &normalized, &toolchain),
        &normalized,
        &toolchain,
    )?;
    let kernel = (stages::file_digest(&tree.vmlinuz)?, stages::file_digest(&tree.initrd)?);
    let boot = boot::run(
        &ctx,
        &boot::inputs(def, (&kernel.0, &kernel.1), &squashfs, &toolchain),
        &normalized,
        &toolchain,
    )?;
    let iso = iso::run(&ctx, &iso::inputs(def, &squashfs, &boot, &toolchain), &squashfs, &boot, &toolchain)?;

    let records = ctx.records_in_pipeline_order();
    observer.progress("publish", &format!("writing {}", request.out_dir.display()));
    outputs::write_outputs(
        &request.out_dir,
        &outputs::OutputInputs {
            def,
            lock,
            lock_sha256: &request.lock_sha256(),
            lock_text: request.lock_text,
            lock_changes: request.lock_changes.as_deref(),
            iso: &iso.path,
            iso_sha256: &iso.digest,
            rootfs_manifest: &tree.manifest,
            nar_hash: &tree.nar_hash,
            stages: &records,
            compiler: &compiler.rustc_version,
            tools_sha256: &tools.digest,
            source: &source,
            toolchain_digest: toolchain.digest(),
            stages_dir: (!request.no_cache).then_some(stage_root.as_path()),
            inputs_record: request.inputs_record.as_ref(),
        },
    )
}

/// Say a failed stage's error when it happens, not only when the stage beside it has finished (the
/// build returns the first of the two errors; this is where the other one is seen).
fn report_failure<T>(
    ctx: &stages::Ctx<'_>,
    stage: &'static str,
    result: Result<T, BuildError>,
) -> Result<T, BuildError> {
    if let Err(e) = &result {
        ctx.progress(stage, &format!("failed: {e} (the build stops when the stage beside it ends)"));
    }
    result
}

/// The workspace's git commit, whether tracked files differ from it, and whether the lock built
/// is the commit's (`git show HEAD:./<lock>` from the lock's directory, which must be in the same
/// commit). Outside a git work tree: commit `unknown`, not clean, lock not in it.
fn source_record(runner: &Runner, workspace: &Path, lock_path: &Path, lock_text: &str) -> SourceRecord {
    let git = |dir: &Path, args: &[&str]| {
        runner.cmd("git", dir).args(["-c", "safe.directory=*"]).args(args).output().ok().map(|o| o.stdout)
    };
    let Some(head) = git(workspace, &["rev-parse", "HEAD"]) else {
        return SourceRecord { commit: "unknown".into(), clean: false, lock_in_commit: false };
    };
    let clean =
        git(workspace, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|o| o.is_empty());
    let lock_dir = lock_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let committed = lock_path
        .file_name()
        .filter(|_| git(lock_dir, &["rev-parse", "HEAD"]).is_some_and(|h| h == head))
        .and_then(|name| git(lock_dir, &["show", &format!("HEAD:./{}", name.to_string_lossy())]));
    SourceRecord {
        commit: String::from_utf8_lossy(&head).trim().to_string(),
        clean,
        lock_in_commit: committed.is_some_and(|bytes| bytes == lock_text.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn the_source_record_says_whether_the_lock_built_is_the_commits() {
        let runner = Runner::new(0);
        let repo = tempfile::tempdir().unwrap();
        let lock = repo.path().join("image/ceremony.lock");
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::fs::write(&lock, "locked\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        let record = source_record(&runner, repo.path(), &lock, "locked\n");
        assert_eq!((record.commit.as_str(), record.clean, record.lock_in_commit), ("unknown", false, false));

        git(repo.path(), &["init", "-q"]);
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-q", "-m", "lock"]);
        let record = source_record(&runner, repo.path(), &lock, "locked\n");
        assert_eq!(record.commit.len(), 40, "{record:?}");
        assert!(record.clean && record.lock_in_commit, "{record:?}");
        // Another lock than the commit's (a fallback's), or the lock edited in the tree.
        assert!(!source_record(&runner, repo.path(), &lock, "today\n").lock_in_commit);
        std::fs::write(&lock, "edited\n").unwrap();
        let record = source_record(&runner, repo.path(), &lock, "edited\n");
        assert!(
            !record.clean && !record.lock_in_commit && record.described().ends_with("-dirty"),
            "{record:?}"
        );
        // The same bytes in a directory of no commit (a copy of the definition elsewhere).
        let copy = outside.path().join("ceremony.lock");
        std::fs::write(&copy, "locked\n").unwrap();
        assert!(!source_record(&runner, repo.path(), &copy, "locked\n").lock_in_commit);
    }
}
