//! Stage `rootfs`: the image's root file system, bootstrapped by mmdebstrap from the local repo
//! in namespaces without network. The result must hold exactly the locked image package set.
//!
//! mmdebstrap's `essential` variant installs the `Essential: yes` packages, then apt installs every
//! other locked package by name. (Its `minbase` variant would select `Priority: required` from the
//! local repo, whose priorities come from the .debs' own control files, not the archive's
//! overrides: apt, for one, says `important` there. The lock already resolved minbase against the
//! archive, so naming its packages gives exactly that set.)

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use crate::normalize::normalize_debian_tree;
use crate::sandbox;
use ceremony_os_definition::{Lockfile, Variant};
use std::collections::BTreeSet;
use std::path::Path;

const RECIPE: u32 = 3;

/// initramfs-tools settings written before any package is installed, so the kernel's first
/// initrd is already the small one (`MODULES=list`); the customize stage builds the final one.
pub(crate) fn initramfs_conf() -> &'static str {
    "# ceremony-os: only the modules listed in /usr/share/initramfs-tools/modules.d/ceremony-os\nMODULES=list\nRESUME=none\nCOMPRESS=gzip\n"
}

pub(crate) fn run(ctx: &Ctx<'_>, repo: &StageOutput) -> Result<StageOutput, BuildError> {
    if ctx.lock.image.variant != Variant::Minbase {
        return Err(BuildError::stage("rootfs", "the image package set must use variant = \"minbase\""));
    }
    let mmdebstrap_version = ctx.runner.cmd("mmdebstrap", "/").arg("--version").output()?;
    let mmdebstrap_version = String::from_utf8_lossy(&mmdebstrap_version.stdout).trim().to_string();
    let modules: Vec<&str> = ctx.def.kernel.initrd_modules.iter().map(|m| m.as_str()).collect();
    let mut key = KeyBuilder::new("rootfs", RECIPE);
    key.field("repo", &repo.digest)
        .field("variant", "essential")
        .field("mmdebstrap", &mmdebstrap_version)
        .field("initramfs.conf", initramfs_conf())
        .field("initrd_modules", &modules.join(","));
    ctx.stage("rootfs", key.finish(), |out| {
        let work = out.parent().expect("out has a parent");
        let preseed = work.join("preseed");
        super::write(&preseed.join("etc/initramfs-tools/conf.d/ceremony-os.conf"), initramfs_conf())?;
        super::write(
            &preseed.join("usr/share/initramfs-tools/modules.d/ceremony-os"),
            format!("{}\n", modules.join("\n")),
        )?;
        let names: Vec<&str> = ctx.lock.image.packages.iter().map(|p| p.name.as_str()).collect();
        let include = format!("--include={}", names.join(","));
        let setup_hook = format!("--setup-hook=sync-in {} /", preseed.display());
        let source = format!("deb [trusted=yes] copy://{} ./", repo.path.display());
        let out_str = out.display().to_string();
        let argv = [
            "mmdebstrap",
            "--variant=essential",
            "--mode=root",
            "--format=directory",
            "--architectures=amd64",
            &include,
            &setup_hook,
            "--aptopt=Acquire::Languages \"none\"",
            &ctx.lock.suite,
            &out_str,
            &source,
        ];
        sandbox::isolated(&ctx.runner, work, &argv).run_merged(|line| {
            if line.starts_with("I: ") {
                ctx.progress("rootfs", line.trim_start_matches("I: "));
            } else {
                tracing::debug!("mmdebstrap: {line}");
            }
        })?;
        check_package_set(out, ctx.lock)?;
        // mmdebstrap leaves the local repo's path (store location, cache key) in sources.list.
        super::write(
            &out.join("etc/apt/sources.list"),
            "# ceremony-os: an offline image; it has no package sources.\n",
        )?;
        std::fs::remove_dir_all(&preseed).map_err(|e| BuildError::io(&preseed, e))?;
        normalize_debian_tree(out, ctx.sde())?;
        super::dir_digest(out)
    })
}

/// The installed packages (dpkg status) must be the locked image set, name, version and
/// architecture alike.
fn check_package_set(root: &Path, lock: &Lockfile) -> Result<(), BuildError> {
    let status_path = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status_path).map_err(|e| BuildError::io(&status_path, e))?;
    let paragraphs = ceremony_os_debian::deb822::parse(&text)
        .map_err(|e| BuildError::stage("rootfs", format!("{}: {e}", status_path.display())))?;
    let installed: BTreeSet<String> = paragraphs
        .iter()
        .filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed")))
        .map(|p| {
            format!(
                "{}_{}_{}",
                p.get("Package").unwrap_or("?"),
                p.get("Version").unwrap_or("?"),
                p.get("Architecture").unwrap_or("?")
            )
        })
        .collect();
    let locked: BTreeSet<String> = lock.image.packages.iter().map(|p| p.spec()).collect();
    let missing: Vec<String> = locked.difference(&installed).cloned().collect();
    let unexpected: Vec<String> = installed.difference(&locked).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(BuildError::PackageSetMismatch { missing, unexpected })
    }
}
