//! Preparing a build: the inputs of the committed lock, or, where the caller allows it and they
//! can be had from no source, those of a lock of today's archive state.

use crate::Project;
use crate::fetch::{FetchConfig, fetch_inputs};
use anyhow::Result;
use ceremony_os_builder::BuildRequest;
use ceremony_os_definition::PackageChange;
use ceremony_os_definition::published::{InputsRecord, RevouchedArchive, VouchingState};
use ceremony_os_store::locked::{InputsReport, LockedError};
use ceremony_os_store::{FetchError, FetchObserver, Store};
use std::path::{Path, PathBuf};

/// The committed lock's inputs could not be had; today's state was locked instead.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Why the committed lock's inputs could not be had.
    pub reason: String,
    /// The package changes from the committed lock to today's.
    pub changes: Vec<PackageChange>,
    /// Where the build publishes today's lock and the changes (beside the ISO).
    pub lock_file: PathBuf,
    pub changes_file: PathBuf,
}

impl Fallback {
    /// The changes as published in `ceremony.lock.changes`: one line each.
    pub fn listing(&self) -> String {
        if self.changes.is_empty() {
            return "no package changed: only the archive states differ\n".into();
        }
        self.changes.iter().map(|c| format!("{c}\n")).collect()
    }
}

/// Everything a build of `project` needs, in the store.
#[derive(Debug, Clone)]
pub struct PreparedBuild {
    /// What is built: the committed lock, or today's (see `fallback`).
    pub project: Project,
    pub inputs: InputsReport,
    pub fallback: Option<Fallback>,
}

impl PreparedBuild {
    /// How the inputs were had, for the manifest and provenance: none when plainly from the
    /// committed lock's archive states.
    pub fn inputs_record(&self) -> Option<InputsRecord> {
        let revouched: Vec<RevouchedArchive> = self
            .inputs
            .state
            .archives
            .iter()
            .filter(|a| !a.revouched_by.is_empty())
            .map(|a| RevouchedArchive {
                suite: a.suite.clone(),
                locked_date: a.locked_date.clone(),
                vouched_by: a
                    .revouched_by
                    .iter()
                    .map(|v| VouchingState {
                        date: v.voucher.date.clone(),
                        inrelease_sha256: v.voucher.inrelease_sha256.to_string(),
                        packages: v.packages,
                    })
                    .collect(),
            })
            .collect();
        let bundle_index_sha256 = self.inputs.bundle_index_used().map(|d| d.to_string());
        let committed_lock = self.fallback.is_none();
        (!committed_lock || !revouched.is_empty() || bundle_index_sha256.is_some()).then_some(InputsRecord {
            committed_lock,
            revouched,
            bundle_index_sha256,
        })
    }

    /// The build request for these inputs.
    pub fn request<'a>(
        &'a self,
        store: &'a Store,
        out_dir: &Path,
        no_cache: bool,
        work_dir: Option<PathBuf>,
    ) -> BuildRequest<'a> {
        BuildRequest {
            definition_path: &self.project.definition_path,
            definition: &self.project.def,
            lock: &self.project.lock,
            lock_text: &self.project.lock_text,
            lock_path: &self.project.lock_path,
            lock_changes: self.fallback.as_ref().map(Fallback::listing),
            store,
            out_dir: out_dir.to_path_buf(),
            no_cache,
            work_dir,
            inputs_record: self.inputs_record(),
        }
    }
}

/// Whether a failure to fetch means the inputs cannot be had (rather than that something is
/// wrong: a signature, a digest, the store). Only the former may fall back.
fn inputs_gone(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<LockedError>(),
        Some(LockedError::Unvouched { .. } | LockedError::Fetch(FetchError::Failed { .. }))
    ) || matches!(error.downcast_ref::<FetchError>(), Some(FetchError::Failed { .. }))
}

/// Fetch the committed lock's inputs. When they can be had from no source and `allow_relock`,
/// lock today's archive state instead (the committed lock is not touched; the build publishes
/// today's lock and the package changes in `out_dir`) and fetch that lock's inputs. A trust
/// failure never falls back.
pub fn prepare_build(
    store: &Store,
    project: &Project,
    out_dir: &Path,
    config: &FetchConfig,
    observer: &dyn FetchObserver,
    allow_relock: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<PreparedBuild> {
    let [.., lock_name, changes_name, _] = ceremony_os_builder::output_names(&project.def);
    let (lock_file, changes_file) = (out_dir.join(lock_name), out_dir.join(changes_name));
    if lock_file.canonicalize().ok() == project.lock_path.canonicalize().ok() && lock_file.exists() {
        anyhow::bail!(
            "the output directory {} holds the lock {} itself, which the build would replace; build into another directory",
            out_dir.display(),
            project.lock_path.display()
        );
    }
    let error = match fetch_inputs(store, project, config, observer) {
        Ok(inputs) => return Ok(PreparedBuild { project: project.clone(), inputs, fallback: None }),
        Err(error) if allow_relock && inputs_gone(&error) => error,
        Err(error) => return Err(error),
    };
    let reason = format!("{error:#}");
    progress(&format!(
        "The inputs of {} can no longer be had from any source, so this build cannot be the committed \
         lock's ISO. Today's archive state is locked instead ({} is left as it is); the build publishes \
         that lock as {} and the package changes as {}. The ISO built is marked in its manifest as \
         not the committed lock's; `verify` never does this.",
        project.lock_path.display(),
        project.lock_path.display(),
        lock_file.display(),
        changes_file.display()
    ));
    let today = crate::lock::resolve(store, &project.definition_path, progress)?;
    let changes = project.lock.package_changes(&today.lock);
    let relocked = Project {
        lock_path: lock_file.clone(),
        lock: today.lock,
        lock_sha256: crate::sha256_hex(today.text.as_bytes()),
        lock_text: today.text,
        ..project.clone()
    };
    let inputs = fetch_inputs(store, &relocked, config, observer)?;
    Ok(PreparedBuild {
        project: relocked,
        inputs,
        fallback: Some(Fallback { reason, changes, lock_file, changes_file }),
    })
}
