//! Stage `normalize`: the final root tree. The definition's overlay (`crate::overlay`) and the
//! `ceremony` tool installed (the inputs not already in `customize`'s tree: `customize` runs
//! beside the compiler, and an overlay change rebuilds from here), known
//! non-determinism removed and mtimes clamped (as every tree stage does), static device nodes
//! dropped (the live system mounts devtmpfs; NAR cannot hold devices), the kernel and initrd
//! moved out beside the tree (they boot from the ISO, not from the squashfs), then the tree
//! manifest and the tree's NAR hash recorded beside it.

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::image_root::ImageRoot;
use crate::normalize::normalize_debian_tree;
use std::path::{Path, PathBuf};

const RECIPE: u32 = 4;

/// Paths inside a `normalize` stage output.
#[derive(Debug, Clone)]
pub struct NormalizedTree {
    pub root: PathBuf,
    pub manifest: PathBuf,
    pub nar_hash: String,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

impl NormalizedTree {
    pub fn at(output: &Path) -> Result<Self, BuildError> {
        let nar_path = output.join("rootfs.nar-hash");
        let nar_hash = std::fs::read_to_string(&nar_path).map_err(|e| BuildError::io(&nar_path, e))?;
        Ok(NormalizedTree {
            root: output.join("rootfs"),
            manifest: output.join("rootfs.manifest"),
            nar_hash: nar_hash.trim().to_string(),
            vmlinuz: output.join("kernel/vmlinuz"),
            initrd: output.join("kernel/initrd.img"),
        })
    }
}

/// Move `boot/vmlinuz-<v>` and `boot/initrd.img-<v>` (exactly one kernel) to `kernel_dir`.
fn move_kernel_out(root: &Path, kernel_dir: &Path) -> Result<(), BuildError> {
    let boot = root.join("boot");
    let kernels: Vec<String> = crate::cache::read_dir_sorted(&boot)?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    let [kernel] = kernels.as_slice() else {
        return Err(BuildError::stage(
            "normalize",
            format!("expected one vmlinuz-* in {}, found {kernels:?}", boot.display()),
        ));
    };
    let version = kernel.trim_start_matches("vmlinuz-");
    std::fs::create_dir_all(kernel_dir).map_err(|e| BuildError::io(kernel_dir, e))?;
    for (from, to) in [(kernel.clone(), "vmlinuz"), (format!("initrd.img-{version}"), "initrd.img")] {
        let source = boot.join(&from);
        std::fs::rename(&source, kernel_dir.join(to)).map_err(|e| BuildError::io(&source, e))?;
    }
    // Debian's /vmlinuz and /initrd.img convenience links would now dangle.
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        let path = root.join(link);
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).map_err(|e| BuildError::io(&path, e))?;
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub customize: String,
    pub tools: String,
    /// Content digest of the overlay snapshot, if the definition has an overlay.
    pub overlay: Option<String>,
}

pub fn inputs(
    source_date_epoch: i64,
    customized: &StageOutput,
    tools: &StageOutput,
    overlay: Option<&str>,
) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch,
        customize: customized.digest.clone(),
        tools: tools.digest.clone(),
        overlay: overlay.map(str::to_string),
    }
}

/// The output's digest covers the tree, the kernel and initrd beside it, the manifest and the
/// NAR hash file: everything later stages and `out/` take from it.
pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    customized: &StageOutput,
    tools: &StageOutput,
    overlay: Option<&Path>,
) -> Result<StageOutput, BuildError> {
    ctx.stage("normalize", inputs, OutputKind::Tree, |out| {
        let root = out.join("rootfs");
        super::copy_tree(&ctx.runner, &customized.path, &root)?;
        let image = ImageRoot::open(&root, "normalize")?;
        if let Some(dir) = overlay {
            crate::overlay::apply(&image, dir)?;
        }
        image.copy_from(&tools.path, "usr/local/bin/ceremony", 0o755)?;
        let dev = root.join("dev");
        for entry in crate::cache::read_dir_sorted(&dev)? {
            crate::cache::remove_path(&entry)?;
        }
        move_kernel_out(&root, &out.join("kernel"))?;
        normalize_debian_tree(&root, inputs.source_date_epoch)?;
        ctx.progress("normalize", "writing the tree manifest and NAR hash");
        let manifest = ceremony_os_tree::TreeManifest::scan(&root)?;
        if let Some(special) =
            manifest.entries.iter().find(|e| matches!(e.kind, ceremony_os_tree::Kind::Special(_)))
        {
            return Err(BuildError::stage(
                "normalize",
                format!("{} is a device, FIFO or socket; the image tree may hold none", special.path),
            ));
        }
        super::write(&out.join("rootfs.manifest"), manifest.render())?;
        let nar = ceremony_os_tree::nar_hash_sri(&root)?;
        super::write(&out.join("rootfs.nar-hash"), format!("{nar}\n"))?;
        ceremony_os_tree::clamp_mtimes(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}
