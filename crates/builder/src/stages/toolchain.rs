//! Stage `toolchain`: the locked build tools (xorriso, mksquashfs, grub-mkimage, isolinux...) with
//! their libraries, unpacked into a tree. Their programs run through the tree's own loader
//! (`crate::toolchain::Toolchain`), never the host's copies.

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use ceremony_os_store::Expected;

const RECIPE: u32 = 1;

pub(crate) fn run(ctx: &Ctx<'_>) -> Result<StageOutput, BuildError> {
    let mut key = KeyBuilder::new("toolchain", RECIPE);
    for p in &ctx.lock.toolchain.packages {
        key.field("deb", &format!("{} {} {} {}", p.name, p.version, p.architecture, p.sha256));
    }
    ctx.stage("toolchain", key.finish(), |out| {
        std::fs::create_dir_all(out).map_err(|e| BuildError::io(out, e))?;
        for p in &ctx.lock.toolchain.packages {
            let expected = Expected { sha256: p.sha256.clone(), size: p.size };
            if !ctx.store.has_verified(&expected)? {
                return Err(BuildError::MissingInput { label: p.spec() });
            }
            ctx.runner
                .cmd("dpkg-deb", out)
                .arg("-x")
                .arg(ctx.store.object_path(&p.sha256))
                .arg(out)
                .output()?;
        }
        ceremony_os_tree::clamp_mtimes(out, ctx.sde())?;
        super::dir_digest(out)
    })
}
