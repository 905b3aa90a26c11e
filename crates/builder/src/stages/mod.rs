//! The stages, in pipeline order. Each computes its cache key from its recipe version, its
//! configuration and the digests of its inputs, and produces one output (file or directory) whose
//! digest the next stages key on.

pub mod boot;
pub mod customize;
pub mod iso;
pub mod normalize;
pub mod repo;
pub mod rootfs;
pub mod squashfs;
pub mod toolchain;

use crate::cache::{StageCache, StageOutput};
use crate::error::BuildError;
use crate::{BuildObserver, StageRecord};
use ceremony_os_runner::Runner;
use ceremony_os_definition::{ImageDefinition, Lockfile};
use ceremony_os_store::Store;
use std::path::Path;
use std::time::Instant;

/// What every stage may read.
pub(crate) struct Ctx<'a> {
    pub def: &'a ImageDefinition,
    pub definition_path: &'a Path,
    pub lock: &'a Lockfile,
    pub store: &'a Store,
    pub runner: Runner,
    pub cache: &'a StageCache,
    pub observer: &'a dyn BuildObserver,
    pub records: std::cell::RefCell<Vec<StageRecord>>,
}

impl Ctx<'_> {
    pub fn sde(&self) -> i64 {
        self.def.source_date_epoch()
    }

    /// Reuse the cached output for `key`, or run `produce(out_path)` (which returns the output's
    /// digest) in a fresh work directory and commit it.
    pub fn stage(
        &self,
        name: &'static str,
        key: String,
        produce: impl FnOnce(&Path) -> Result<String, BuildError>,
    ) -> Result<StageOutput, BuildError> {
        let started = Instant::now();
        let output = match self.cache.lookup(name, &key)? {
            Some(hit) => hit,
            None => {
                self.observer.stage_started(name);
                let work = self.cache.begin(name, &key)?;
                let digest = match produce(&work.join("out")) {
                    Ok(d) => d,
                    Err(e) => {
                        if let Err(cleanup) = crate::cache::remove_tree(&work) {
                            tracing::warn!("{cleanup}");
                        }
                        return Err(e);
                    }
                };
                self.cache.commit(name, &key, &work, &digest)?
            }
        };
        let record = StageRecord {
            name,
            key: output.key.clone(),
            digest: output.digest.clone(),
            cached: output.cached,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.observer.stage_finished(&record);
        self.records.borrow_mut().push(record);
        Ok(output)
    }

    pub fn progress(&self, stage: &'static str, message: &str) {
        self.observer.progress(stage, message);
    }
}

pub(crate) fn file_digest(path: &Path) -> Result<String, BuildError> {
    Ok(ceremony_os_tree::sha256_file(path)?)
}

pub(crate) fn dir_digest(path: &Path) -> Result<String, BuildError> {
    Ok(ceremony_os_tree::TreeManifest::scan(path)?.digest())
}

pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::write(path, contents).map_err(|e| BuildError::io(path, e))
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| BuildError::io(path, e))
}

/// `cp -a` (reflinks where the file system can), for whole trees.
pub(crate) fn copy_tree(runner: &Runner, from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(to).map_err(|e| BuildError::io(to, e))?;
    runner.cmd("cp", "/").args(["-a", "--reflink=auto", "--"]).arg(from.join(".")).arg(to).output()?;
    Ok(())
}
