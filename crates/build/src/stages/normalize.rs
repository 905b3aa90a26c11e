//! Stage `normalize`: the final root tree. Known non-determinism removed and mtimes clamped (as
//! every tree stage does), static device nodes dropped (the live system mounts devtmpfs; NAR
//! cannot hold devices), then the tree manifest and the tree's NAR hash recorded beside it.

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use crate::normalize::normalize_debian_tree;
use std::path::{Path, PathBuf};

const RECIPE: u32 = 1;

/// Paths inside a `normalize` stage output.
#[derive(Debug, Clone)]
pub struct NormalizedTree {
    pub root: PathBuf,
    pub manifest: PathBuf,
    pub nar_hash: String,
}

impl NormalizedTree {
    pub fn at(output: &Path) -> Result<Self, BuildError> {
        let nar_path = output.join("rootfs.nar-hash");
        let nar_hash = std::fs::read_to_string(&nar_path)
            .map_err(|e| BuildError::io(&nar_path, e))?
            .trim()
            .to_string();
        Ok(NormalizedTree {
            root: output.join("rootfs"),
            manifest: output.join("rootfs.manifest"),
            nar_hash,
        })
    }
}

pub(crate) fn run(ctx: &Ctx<'_>, customized: &StageOutput) -> Result<StageOutput, BuildError> {
    let mut key = KeyBuilder::new("normalize", RECIPE);
    key.field("customize", &customized.digest);
    ctx.stage("normalize", key.finish(), |out| {
        let root = out.join("rootfs");
        super::copy_tree(&ctx.runner, &customized.path, &root)?;
        let dev = root.join("dev");
        for entry in crate::cache::read_dir_sorted(&dev)? {
            crate::cache::remove_tree(&entry)
                .or_else(|_| std::fs::remove_file(&entry).map_err(|e| BuildError::io(&entry, e)))?;
        }
        normalize_debian_tree(&root, ctx.sde())?;
        ctx.progress("normalize", "writing the tree manifest and NAR hash");
        let manifest = ceremony_os_tree::TreeManifest::scan(&root)?;
        if let Some(special) = manifest
            .entries
            .iter()
            .find(|e| matches!(e.kind, ceremony_os_tree::Kind::Special(_)))
        {
            return Err(BuildError::stage(
                "normalize",
                format!(
                    "{} is a device, FIFO or socket; the image tree may hold none",
                    special.path
                ),
            ));
        }
        super::write(&out.join("rootfs.manifest"), manifest.render())?;
        let nar = ceremony_os_tree::nar_hash_sri(&root)?;
        super::write(&out.join("rootfs.nar-hash"), format!("{nar}\n"))?;
        ceremony_os_tree::clamp_mtimes(out, ctx.sde())?;
        Ok(manifest.digest())
    })
}
