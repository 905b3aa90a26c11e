//! Stage `rootfs`: the image's root file system, bootstrapped from the local repo by the locked
//! toolchain's mmdebstrap, apt and dpkg, run inside the toolchain jail (no network, the toolchain
//! tree as the root). Whatever mmdebstrap or a maintainer script copies or reads from "the
//! system" is the toolchain tree's fixed content, not the host's; the files Debian expects from
//! the host (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`) are then written with fixed
//! content and modes. The result must hold exactly the locked image package set.
//!
//! mmdebstrap's `essential` variant installs the `Essential: yes` packages, then apt installs every
//! other locked package by name. (Its `minbase` variant would select `Priority: required` from the
//! local repo, whose priorities come from the .debs' own control files, not the archive's
//! overrides: apt, for one, says `important` there. The lock already resolved minbase against the
//! archive, so naming its packages gives exactly that set.)

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::image_root::ImageRoot;
use crate::normalize::normalize_debian_tree;
use crate::toolchain::Toolchain;
use ceremony_os_definition::{ImageDefinition, Lockfile, Variant};
use std::collections::BTreeSet;
use std::path::Path;

const RECIPE: u32 = 5;

/// The image's own name service files: an offline system with no name servers.
pub(crate) const RESOLV_CONF: &str = "# ceremony-os: an offline system; there are no name servers.\n";

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub repo: String,
    pub toolchain: String,
    pub suite: String,
    pub architecture: String,
    /// Installed by name; with their versions, for the check that nothing else got in.
    pub packages: Vec<String>,
    pub initramfs_conf: &'static str,
    /// `INITRD` for the kernel package's hook: "No", so no initrd is built here (customize builds
    /// the image's only one, from the pruned modules).
    pub kernel_hook_initrd: &'static str,
    pub initrd_modules: Vec<String>,
    pub hostname: String,
    pub resolv_conf: &'static str,
}

/// initramfs-tools settings written before any package is installed (`MODULES=list`: only the
/// listed modules), for the initrd the customize stage builds.
pub(crate) fn initramfs_conf() -> &'static str {
    "# ceremony-os: only the modules listed in /usr/share/initramfs-tools/modules.d/ceremony-os\nMODULES=list\nRESUME=none\nCOMPRESS=gzip\n"
}

pub fn inputs(def: &ImageDefinition, lock: &Lockfile, repo: &StageOutput, toolchain: &Toolchain) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch: lock.source_date_epoch,
        repo: repo.digest.clone(),
        toolchain: toolchain.digest().to_string(),
        suite: lock.suite.clone(),
        architecture: lock.architecture.debian_name().to_string(),
        packages: lock.image.packages.iter().map(|p| p.spec()).collect(),
        initramfs_conf: initramfs_conf(),
        kernel_hook_initrd: "No",
        initrd_modules: def.kernel.initrd_modules.iter().map(|m| m.as_str().to_string()).collect(),
        hostname: def.customize.hostname.as_str().to_string(),
        resolv_conf: RESOLV_CONF,
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    variant: Variant,
    repo: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    if variant != Variant::Minbase {
        return Err(BuildError::stage("rootfs", "the image package set must use variant = \"minbase\""));
    }
    ctx.stage("rootfs", inputs, OutputKind::Tree, |out| {
        let work = out.parent().expect("out has a parent");
        let preseed = work.join("preseed");
        super::write(&preseed.join("etc/initramfs-tools/conf.d/ceremony-os.conf"), inputs.initramfs_conf)?;
        super::write(
            &preseed.join("usr/share/initramfs-tools/modules.d/ceremony-os"),
            format!("{}\n", inputs.initrd_modules.join("\n")),
        )?;
        std::fs::create_dir_all(out).map_err(|e| BuildError::io(out, e))?;
        let names: Vec<&str> = inputs.packages.iter().map(|p| p.split('_').next().unwrap_or(p)).collect();
        let include = format!("--include={}", names.join(","));
        let architectures = format!("--architectures={}", inputs.architecture);
        toolchain
            .jail(&ctx.runner)
            .bind_ro(&repo.path, "repo")
            .bind_ro(&preseed, "preseed")
            .bind_rw(out, "target")
            .cmd(&[
                "mmdebstrap",
                "--variant=essential",
                "--mode=root",
                "--format=directory",
                &architectures,
                &include,
                "--setup-hook=sync-in /ceremony-os/preseed /",
                "--aptopt=Acquire::Languages \"none\"",
                &inputs.suite,
                "/ceremony-os/target",
                "deb [trusted=yes] copy:///ceremony-os/repo ./",
            ])
            .env("INITRD", inputs.kernel_hook_initrd)
            .run_merged(|line| {
                if line.starts_with("I: ") {
                    ctx.progress("rootfs", line.trim_start_matches("I: "));
                } else {
                    tracing::debug!("mmdebstrap: {line}");
                }
            })?;
        check_package_set(out, &inputs.packages)?;
        // mmdebstrap leaves the local repo's path in sources.list and copies the (toolchain's)
        // name service files: the image gets its own.
        let image = ImageRoot::open(out, "rootfs")?;
        image.write(
            "etc/apt/sources.list",
            b"# ceremony-os: an offline image; it has no package sources.\n",
            0o644,
        )?;
        write_name_service_files(&image, &inputs.hostname, inputs.resolv_conf)?;
        normalize_debian_tree(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` with fixed content and modes.
pub(crate) fn write_name_service_files(
    image: &ImageRoot,
    hostname: &str,
    resolv_conf: &str,
) -> Result<(), BuildError> {
    image.write("etc/hostname", format!("{hostname}\n").as_bytes(), 0o644)?;
    image.write(
        "etc/hosts",
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
            .as_bytes(),
        0o644,
    )?;
    image.write("etc/resolv.conf", resolv_conf.as_bytes(), 0o644)
}

/// The installed packages (dpkg status) must be the locked image set, name, version and
/// architecture alike.
fn check_package_set(root: &Path, locked: &[String]) -> Result<(), BuildError> {
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
    let locked: BTreeSet<String> = locked.iter().cloned().collect();
    let missing: Vec<String> = locked.difference(&installed).cloned().collect();
    let unexpected: Vec<String> = installed.difference(&locked).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(BuildError::PackageSetMismatch { missing, unexpected })
    }
}
