//! Stage `customize`: the root file system made into the ceremony system. Overlay files, the
//! image's identity, root autologin on the configured consoles, the `ceremony` tools, PKCS#11
//! modules registered with p11-kit (SoftHSMv2, OpenSC and declared vendor bundles), and the air
//! gap by construction: excluded kernel module trees deleted and blacklisted, network units
//! masked, and a small initrd rebuilt from what is left.

use super::{Ctx, set_mode, write};
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use crate::normalize::normalize_debian_tree;
use crate::sandbox;
use ceremony_os_definition::{HsmBundle, relative_to};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const RECIPE: u32 = 2;

/// Units that would manage a network if one existed: masked so nothing even tries.
const MASKED_UNITS: &[&str] = &[
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
];

/// PKCS#11 modules of the image's packages, registered with p11-kit when present.
const PACKAGED_MODULES: &[(&str, &str)] = &[
    ("softhsm2", "usr/lib/softhsm/libsofthsm2.so"),
    ("opensc", "usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
];

/// The `ceremony` binary to install, built before the stages run.
#[derive(Debug, Clone)]
pub struct ToolsBinary {
    pub path: PathBuf,
    pub sha256: String,
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    rootfs: &StageOutput,
    tools: &ToolsBinary,
) -> Result<StageOutput, BuildError> {
    let def = ctx.def;
    let overlay = def.customize.overlay.as_ref().map(|o| relative_to(ctx.definition_path, o));
    let overlay_digest = match &overlay {
        Some(dir) => overlay_content_digest(dir)?,
        None => "none".into(),
    };
    let mut key = KeyBuilder::new("customize", RECIPE);
    key.field("rootfs", &rootfs.digest)
        .field("overlay", &overlay_digest)
        .field("tools", &tools.sha256)
        .field("name", def.image.name.as_str())
        .field("version", def.image.version.as_str())
        .field("hostname", def.customize.hostname.as_str())
        .field("autologin", &def.customize.autologin.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))
        .field(
            "exclude_modules",
            &def.kernel.exclude_modules.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        )
        .field("initramfs.conf", super::rootfs::initramfs_conf())
        .field("remove_documentation", &def.customize.remove_documentation.to_string());
    for bundle in &def.hsm_bundles {
        key.field("hsm_bundle", &format!("{} {} {}", bundle.name, bundle.sha256, bundle.module));
    }
    ctx.stage("customize", key.finish(), |out| {
        ctx.progress("customize", "copying the root file system");
        super::copy_tree(&ctx.runner, &rootfs.path, out)?;
        if let Some(dir) = &overlay {
            apply_overlay(dir, out)?;
        }
        write_identity(ctx, out)?;
        write_autologin(out, &def.customize.autologin.iter().map(|t| t.as_str()).collect::<Vec<_>>())?;
        let bin = out.join("usr/local/bin/ceremony");
        std::fs::create_dir_all(bin.parent().expect("has parent")).map_err(|e| BuildError::io(&bin, e))?;
        std::fs::copy(&tools.path, &bin).map_err(|e| BuildError::io(&bin, e))?;
        set_mode(&bin, 0o755)?;
        for bundle in &def.hsm_bundles {
            install_hsm_bundle(ctx, bundle, out)?;
        }
        for (name, module) in PACKAGED_MODULES {
            if out.join(module).exists() {
                register_module(out, name, module)?;
            }
        }
        mask_units(out)?;
        if def.customize.remove_documentation {
            remove_documentation(out)?;
        }
        let kernel_version = kernel_version(out)?;
        let removed = prune_modules(ctx, out, &kernel_version)?;
        ctx.progress(
            "customize",
            &format!("removed {} kernel modules; rebuilding the initrd", removed.len()),
        );
        write_blacklist(out, &removed)?;
        let initrd = out.join(format!("boot/initrd.img-{kernel_version}"));
        if initrd.exists() {
            std::fs::remove_file(&initrd).map_err(|e| BuildError::io(&initrd, e))?;
        }
        let script = format!("depmod {kernel_version} && update-initramfs -c -k {kernel_version}");
        sandbox::in_chroot(&ctx.runner, out, &["/bin/sh", "-c", &script])
            .run_merged(|line| tracing::debug!("initramfs: {line}"))?;
        normalize_debian_tree(out, ctx.sde())?;
        super::dir_digest(out)
    })
}

/// Digest of the overlay's content and executable bits, not of its checkout's mtimes or owner.
fn overlay_content_digest(dir: &Path) -> Result<String, BuildError> {
    let manifest = ceremony_os_tree::TreeManifest::scan(dir)?;
    let mut text = String::new();
    for e in &manifest.entries {
        let kind = match &e.kind {
            ceremony_os_tree::Kind::Dir => "dir".to_string(),
            ceremony_os_tree::Kind::File { sha256, .. } => {
                format!("file {sha256} {}", e.mode & 0o111 != 0)
            }
            ceremony_os_tree::Kind::Symlink { target } => format!("symlink {target}"),
            ceremony_os_tree::Kind::Special(s) => {
                return Err(BuildError::stage(
                    "customize",
                    format!(
                        "overlay {}{} is a {s}; only files, directories and symlinks are allowed",
                        dir.display(),
                        e.path
                    ),
                ));
            }
        };
        text.push_str(&format!("{}\t{kind}\n", e.path));
    }
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())))
}

/// Copy the overlay over the root: directories 0755, files 0644 (0755 if executable in the
/// checkout), symlinks as they are, everything owned by root.
fn apply_overlay(from: &Path, to: &Path) -> Result<(), BuildError> {
    for entry in crate::cache::read_dir_sorted(from)? {
        let name = entry.file_name().expect("entries have names");
        let dest = to.join(name);
        let meta = std::fs::symlink_metadata(&entry).map_err(|e| BuildError::io(&entry, e))?;
        if meta.is_dir() {
            if !dest.is_dir() {
                std::fs::create_dir_all(&dest).map_err(|e| BuildError::io(&dest, e))?;
                set_mode(&dest, 0o755)?;
            }
            apply_overlay(&entry, &dest)?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&entry).map_err(|e| BuildError::io(&entry, e))?;
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| BuildError::io(&dest, e))?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::remove_file(&dest);
            std::fs::copy(&entry, &dest).map_err(|e| BuildError::io(&dest, e))?;
            set_mode(&dest, if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
        }
        std::os::unix::fs::lchown(&dest, Some(0), Some(0)).map_err(|e| BuildError::io(&dest, e))?;
    }
    Ok(())
}

fn write_identity(ctx: &Ctx<'_>, root: &Path) -> Result<(), BuildError> {
    let def = ctx.def;
    let hostname = def.customize.hostname.as_str();
    let title = format!("{} {} ({})", def.image.name, def.image.version, def.image.architecture);
    write(&root.join("etc/hostname"), format!("{hostname}\n"))?;
    write(
        &root.join("etc/hosts"),
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    )?;
    write(&root.join("etc/issue"), format!("{title} \\l\nOffline key-ceremony system. No network.\n\n"))?;
    write(&root.join("etc/issue.net"), format!("{title}\n"))?;
    write(
        &root.join("etc/motd"),
        format!(
            "\n{title}\nOffline key-ceremony system: no network drivers; nothing written here survives a reboot.\nSee /etc/ceremony/README.\n\n"
        ),
    )?;
    write(
        &root.join("etc/ceremony-os-release"),
        format!(
            "NAME={}\nVERSION={}\nARCHITECTURE={}\nSNAPSHOT={}\nSOURCE_DATE_EPOCH={}\n",
            def.image.name,
            def.image.version,
            def.image.architecture,
            def.debian.snapshot,
            def.source_date_epoch()
        ),
    )?;
    // The root file system is a read-only squashfs under a memory overlay: no fstab entries.
    write(&root.join("etc/fstab"), "# ceremony-os: the live system mounts everything itself\n")?;
    Ok(())
}

fn write_autologin(root: &Path, consoles: &[&str]) -> Result<(), BuildError> {
    for console in consoles {
        let (unit, exec) = if console.starts_with("ttyS") {
            ("serial-getty", "-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM")
        } else {
            ("getty", "-/sbin/agetty --autologin root --noclear %I $TERM")
        };
        let path = root.join(format!("etc/systemd/system/{unit}@{console}.service.d/autologin.conf"));
        write(&path, format!("[Service]\nExecStart=\nExecStart={exec}\n"))?;
        // serial-getty@ is started by the getty generator from console=; getty@ttyN needs the link.
        if unit == "getty" {
            let wants = root.join("etc/systemd/system/getty.target.wants");
            std::fs::create_dir_all(&wants).map_err(|e| BuildError::io(&wants, e))?;
            let link = wants.join(format!("getty@{console}.service"));
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("/lib/systemd/system/getty@.service", &link)
                .map_err(|e| BuildError::io(&link, e))?;
        }
    }
    Ok(())
}

fn register_module(root: &Path, name: &str, module_path_in_image: &str) -> Result<(), BuildError> {
    write(
        &root.join(format!("etc/pkcs11/modules/{name}.module")),
        format!("# registered by ceremony-os\nmodule: /{module_path_in_image}\n"),
    )
}

fn install_hsm_bundle(ctx: &Ctx<'_>, bundle: &HsmBundle, root: &Path) -> Result<(), BuildError> {
    let archive = relative_to(ctx.definition_path, &bundle.archive);
    let err = |message: String| BuildError::HsmBundle { name: bundle.name.to_string(), message };
    let actual =
        super::file_digest(&archive).map_err(|e| err(format!("cannot read {}: {e}", archive.display())))?;
    if actual != bundle.sha256.as_hex() {
        return Err(err(format!(
            "{} has SHA-256 {actual}, the definition expects {}",
            archive.display(),
            bundle.sha256
        )));
    }
    let dest_relative = format!("opt/hsm/{}", bundle.name);
    let dest = root.join(&dest_relative);
    std::fs::create_dir_all(&dest).map_err(|e| BuildError::io(&dest, e))?;
    ctx.runner
        .cmd("tar", &dest)
        .args(["--extract", "--no-same-owner", "--delay-directory-restore", "--file"])
        .arg(&archive)
        .arg("--directory")
        .arg(&dest)
        .output()?;
    let module = format!("{dest_relative}/{}", bundle.module);
    if !root.join(&module).is_file() {
        return Err(err(format!("module {} is not in {}", bundle.module, archive.display())));
    }
    register_module(root, bundle.name.as_str(), &module)
}

/// Manual pages, info pages, translations and documentation, as `dpkg --path-exclude` setups
/// drop them; `/usr/share/doc/*/copyright` stays (licences travel with the binaries).
fn remove_documentation(root: &Path) -> Result<(), BuildError> {
    for dir in ["usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/linda"] {
        crate::cache::remove_tree(&root.join(dir))?;
    }
    let locale = root.join("usr/share/locale");
    if locale.is_dir() {
        for entry in crate::cache::read_dir_sorted(&locale)? {
            if entry.file_name().is_some_and(|n| n != "locale.alias") {
                crate::cache::remove_path(&entry)?;
            }
        }
    }
    let doc = root.join("usr/share/doc");
    if doc.is_dir() {
        for package in crate::cache::read_dir_sorted(&doc)? {
            if std::fs::symlink_metadata(&package).map_err(|e| BuildError::io(&package, e))?.is_dir() {
                for entry in crate::cache::read_dir_sorted(&package)? {
                    if entry.file_name().is_some_and(|n| n != "copyright") {
                        crate::cache::remove_path(&entry)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn mask_units(root: &Path) -> Result<(), BuildError> {
    let dir = root.join("etc/systemd/system");
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
    for unit in MASKED_UNITS {
        let link = dir.join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).map_err(|e| BuildError::io(&link, e))?;
    }
    Ok(())
}

fn kernel_version(root: &Path) -> Result<String, BuildError> {
    let versions: Vec<String> = crate::cache::read_dir_sorted(&root.join("lib/modules"))?
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BuildError::stage(
            "customize",
            format!("expected exactly one kernel in lib/modules, found {versions:?}"),
        )),
    }
}

/// Delete the excluded module trees; return the names of the modules removed, sorted.
fn prune_modules(ctx: &Ctx<'_>, root: &Path, kernel_version: &str) -> Result<Vec<String>, BuildError> {
    let base = root.join("lib/modules").join(kernel_version).join("kernel");
    let mut removed = BTreeSet::new();
    for tree in &ctx.def.kernel.exclude_modules {
        let dir = base.join(tree.as_str());
        if !dir.exists() {
            ctx.progress(
                "customize",
                &format!("module tree {} does not exist in kernel {kernel_version}", tree.as_str()),
            );
            continue;
        }
        collect_module_names(&dir, &mut removed)?;
        crate::cache::remove_tree(&dir)?;
    }
    Ok(removed.into_iter().collect())
}

fn collect_module_names(dir: &Path, names: &mut BTreeSet<String>) -> Result<(), BuildError> {
    for entry in crate::cache::read_dir_sorted(dir)? {
        if entry.is_dir() {
            collect_module_names(&entry, names)?;
        } else if let Some(name) = entry.file_name().and_then(|n| n.to_str())
            && let Some(stem) =
                [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| name.strip_suffix(ext))
        {
            names.insert(stem.replace('-', "_"));
        }
    }
    Ok(())
}

fn write_blacklist(root: &Path, modules: &[String]) -> Result<(), BuildError> {
    let mut text = String::from(
        "# ceremony-os air gap: these modules were removed from the image; should one ever appear,\n# it must not load.\n",
    );
    for m in modules {
        text.push_str(&format!("blacklist {m}\ninstall {m} /bin/false\n"));
    }
    write(&root.join("etc/modprobe.d/ceremony-os-airgap.conf"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_digest_ignores_mtime_but_not_content_or_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/a"), b"x").unwrap();
        let d1 = overlay_content_digest(dir.path()).unwrap();
        filetime::set_file_mtime(dir.path().join("etc/a"), filetime::FileTime::from_unix_time(5, 0)).unwrap();
        assert_eq!(overlay_content_digest(dir.path()).unwrap(), d1);
        set_mode(&dir.path().join("etc/a"), 0o755).unwrap();
        let d2 = overlay_content_digest(dir.path()).unwrap();
        assert_ne!(d2, d1);
        std::fs::write(dir.path().join("etc/a"), b"y").unwrap();
        assert_ne!(overlay_content_digest(dir.path()).unwrap(), d2);
    }

    #[test]
    fn module_names_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wireless/intel")).unwrap();
        std::fs::write(dir.path().join("wireless/intel/iwlwifi.ko"), b"").unwrap();
        std::fs::write(dir.path().join("e1000e.ko.xz"), b"").unwrap();
        std::fs::write(dir.path().join("mac80211-hwsim.ko"), b"").unwrap();
        std::fs::write(dir.path().join("README"), b"").unwrap();
        let mut names = BTreeSet::new();
        collect_module_names(dir.path(), &mut names).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["e1000e", "iwlwifi", "mac80211_hwsim"]);
    }
}
