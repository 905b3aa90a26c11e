//! Stage `customize`: the root file system made into the ceremony system. The image's identity,
//! root autologin on the configured consoles, PKCS#11 modules registered with p11-kit (SoftHSMv2,
//! OpenSC and declared vendor bundles), and the air gap by construction: excluded kernel module
//! trees deleted and blacklisted, network units masked, and the image's one initrd built from
//! what is left (inside the image tree, which sees only its own /etc).
//! The initrd pins the root file system: a live-boot component (`root_pin/`) accepts only the
//! squashfs whose SHA-256 the `boot` stage appends to the initrd, copied into memory and checked.
//! The `ceremony` tool and the overlay are installed by `normalize`: this stage runs while
//! `tools` still compiles, and a changed overlay file does not rebuild the initrd.
//!
//! Every write goes through [`ImageRoot`]: paths resolve inside the tree, so the image's absolute
//! symlinks cannot redirect a write to the build host.

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::image_root::ImageRoot;
use crate::normalize::normalize_debian_tree;
use crate::sandbox;
use ceremony_os_definition::ImageDefinition;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const RECIPE: u32 = 7;

/// Units masked besides every timer: those that would manage a network if one existed, and
/// those that write outside the memory overlay (crash logs into EFI variables, file system
/// maintenance on disks) or wait for remote file systems.
const MASKED_UNITS: &[&str] = &[
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "remote-fs.target",
];

/// Where packages install systemd units; every `*.timer` found there is masked, so nothing runs
/// on a schedule (apt-daily, dpkg-db-backup, e2scrub_all, fstrim, tmpfiles-clean...).
const UNIT_DIRS: &[&str] = &["usr/lib/systemd/system", "lib/systemd/system"];

/// Programs that could configure a network, removed (their units are masked too).
pub(crate) const REMOVED_PROGRAMS: &[&str] = &[
    "usr/lib/systemd/systemd-networkd",
    "usr/lib/systemd/systemd-networkd-wait-online",
    "usr/bin/networkctl",
];

/// PKCS#11 modules of the image's packages, registered with p11-kit when present.
const PACKAGED_MODULES: &[(&str, &str)] = &[
    ("softhsm2", "usr/lib/softhsm/libsofthsm2.so"),
    ("opensc", "usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
];

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub rootfs: String,
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub snapshot: String,
    pub hostname: String,
    pub autologin: Vec<String>,
    pub exclude_modules: Vec<String>,
    pub remove_documentation: bool,
    pub masked_units: &'static [&'static str],
    pub hsm_bundles: Vec<BundleInput>,
    pub root_pin: RootPin,
}

/// The initrd's root pin, as installed into the image before the initrd is built.
#[derive(Debug, serde::Serialize)]
pub struct RootPin {
    /// Sourced by live-boot after its own components (name order): replaces `Verify_checksums`.
    pub live_boot_component: &'static str,
    /// The initramfs-tools hook that copies what the component runs (sha256sum) into the initrd.
    pub initramfs_hook: &'static str,
}

/// Where [`RootPin`]'s files go in the image (merged /usr: /lib/live/boot is usr/lib/live/boot).
const ROOT_PIN_COMPONENT_PATH: &str = "usr/lib/live/boot/9999-ceremony-os-root";
const ROOT_PIN_HOOK_PATH: &str = "usr/share/initramfs-tools/hooks/ceremony-os-root";

#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleInput {
    pub name: String,
    pub sha256: String,
    pub module: String,
}

pub fn inputs(def: &ImageDefinition, rootfs: &StageOutput) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch: def.source_date_epoch(),
        rootfs: rootfs.digest.clone(),
        name: def.image.name.to_string(),
        version: def.image.version.to_string(),
        architecture: def.image.architecture.to_string(),
        snapshot: def.debian.snapshot.to_string(),
        hostname: def.customize.hostname.to_string(),
        autologin: def.customize.autologin.iter().map(|t| t.to_string()).collect(),
        exclude_modules: def.kernel.exclude_modules.iter().map(|m| m.as_str().to_string()).collect(),
        remove_documentation: def.customize.remove_documentation,
        masked_units: MASKED_UNITS,
        hsm_bundles: def
            .hsm_bundles
            .iter()
            .map(|b| BundleInput {
                name: b.name.to_string(),
                sha256: b.sha256.as_hex().to_string(),
                module: b.module.clone(),
            })
            .collect(),
        root_pin: RootPin {
            live_boot_component: include_str!("root_pin/live-boot-component.sh"),
            initramfs_hook: include_str!("root_pin/initramfs-hook.sh"),
        },
    }
}

/// Where the stage finds what its inputs name by digest.
#[derive(Debug)]
pub struct Sources<'a> {
    pub rootfs: &'a StageOutput,
    /// Each bundle's archive, in the order of `Inputs::hsm_bundles`.
    pub bundle_archives: Vec<PathBuf>,
}

pub(crate) fn run(ctx: &Ctx<'_>, inputs: &Inputs, sources: &Sources<'_>) -> Result<StageOutput, BuildError> {
    ctx.stage("customize", inputs, OutputKind::Tree, |out| {
        ctx.progress("customize", "copying the root file system");
        super::copy_tree(&ctx.runner, &sources.rootfs.path, out)?;
        let image = ImageRoot::open(out, "customize")?;
        write_identity(&image, inputs)?;
        write_autologin(&image, &inputs.autologin)?;
        for (bundle, archive) in inputs.hsm_bundles.iter().zip(&sources.bundle_archives) {
            install_hsm_bundle(&image, bundle, archive)?;
        }
        for (name, module) in PACKAGED_MODULES {
            if image.file_type(module)?.is_some() {
                register_module(&image, name, module)?;
            }
        }
        for unit in inputs.masked_units.iter().copied().map(String::from).chain(timers(&image)?) {
            image.symlink(&format!("etc/systemd/system/{unit}"), "/dev/null")?;
        }
        for program in REMOVED_PROGRAMS {
            image.remove_all(program)?;
        }
        if inputs.remove_documentation {
            remove_documentation(&image)?;
        }
        let kernel_version = kernel_version(&image)?;
        let removed = prune_modules(&image, &inputs.exclude_modules, &kernel_version)?;
        ctx.progress("customize", &format!("removed {} kernel modules; building the initrd", removed.len()));
        write_blacklist(&image, &removed)?;
        image.write(ROOT_PIN_COMPONENT_PATH, inputs.root_pin.live_boot_component.as_bytes(), 0o644)?;
        image.write(ROOT_PIN_HOOK_PATH, inputs.root_pin.initramfs_hook.as_bytes(), 0o755)?;
        let script = format!("depmod {kernel_version} && update-initramfs -c -k {kernel_version}");
        sandbox::in_chroot(&ctx.runner, out, &["/bin/sh", "-c", &script])
            .run_merged(|line| tracing::debug!("initramfs: {line}"))?;
        normalize_debian_tree(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}

fn write_identity(image: &ImageRoot, inputs: &Inputs) -> Result<(), BuildError> {
    let title = format!("{} {} ({})", inputs.name, inputs.version, inputs.architecture);
    super::rootfs::write_name_service_files(image, &inputs.hostname, super::rootfs::RESOLV_CONF)?;
    image.write(
        "etc/issue",
        format!("{title} \\l\nOffline key-ceremony system. No network.\n\n").as_bytes(),
        0o644,
    )?;
    image.write("etc/issue.net", format!("{title}\n").as_bytes(), 0o644)?;
    image.write(
        "etc/motd",
        format!(
            "\n{title}\nOffline key-ceremony system: no network drivers; nothing written here survives a reboot.\nSee /etc/ceremony/README.\n\n"
        )
        .as_bytes(),
        0o644,
    )?;
    image.write(
        "etc/ceremony-os-release",
        format!(
            "NAME={}\nVERSION={}\nARCHITECTURE={}\nSNAPSHOT={}\nSOURCE_DATE_EPOCH={}\n",
            inputs.name, inputs.version, inputs.architecture, inputs.snapshot, inputs.source_date_epoch
        )
        .as_bytes(),
        0o644,
    )?;
    // The root file system is a read-only squashfs under a memory overlay: no fstab entries.
    image.write("etc/fstab", b"# ceremony-os: the live system mounts everything itself\n", 0o644)
}

fn write_autologin(image: &ImageRoot, consoles: &[String]) -> Result<(), BuildError> {
    for console in consoles {
        let (unit, exec) = if console.starts_with("ttyS") {
            ("serial-getty", "-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM")
        } else {
            ("getty", "-/sbin/agetty --autologin root --noclear %I $TERM")
        };
        image.write(
            &format!("etc/systemd/system/{unit}@{console}.service.d/autologin.conf"),
            format!("[Service]\nExecStart=\nExecStart={exec}\n").as_bytes(),
            0o644,
        )?;
        // serial-getty@ is started by the getty generator from console=; getty@ttyN needs the link.
        if unit == "getty" {
            image.symlink(
                &format!("etc/systemd/system/getty.target.wants/getty@{console}.service"),
                "/lib/systemd/system/getty@.service",
            )?;
        }
    }
    Ok(())
}

fn register_module(image: &ImageRoot, name: &str, module_path_in_image: &str) -> Result<(), BuildError> {
    image.write(
        &format!("etc/pkcs11/modules/{name}.module"),
        format!("# registered by ceremony-os\nmodule: /{module_path_in_image}\n").as_bytes(),
        0o644,
    )
}

/// Unpack a vendor bundle (checked against its SHA-256 first) into `opt/hsm/<name>`, in-process:
/// directories, regular files (mode without set-id bits), symlinks and hard links only.
fn install_hsm_bundle(image: &ImageRoot, bundle: &BundleInput, archive: &Path) -> Result<(), BuildError> {
    use std::io::Read;
    let err = |message: String| BuildError::HsmBundle { name: bundle.name.clone(), message };
    let bytes = std::fs::read(archive).map_err(|e| err(format!("cannot read {}: {e}", archive.display())))?;
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if actual != bundle.sha256 {
        return Err(err(format!(
            "{} has SHA-256 {actual}, the definition expects {}",
            archive.display(),
            bundle.sha256
        )));
    }
    let reader: Box<dyn Read + '_> = match bytes.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(bytes.as_slice())),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Box::new(liblzma::read::XzDecoder::new(bytes.as_slice())),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::stream::read::Decoder::new(bytes.as_slice()).map_err(|e| err(format!("zstd: {e}")))?,
        ),
        _ => Box::new(bytes.as_slice()),
    };
    let base = format!("opt/hsm/{}", bundle.name);
    image.create_dir_all(&base, 0o755)?;
    let mut archive_reader = tar::Archive::new(reader);
    let entries = archive_reader.entries().map_err(|e| err(format!("{}: {e}", archive.display())))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(format!("{}: {e}", archive.display())))?;
        let raw_path = entry.path().map_err(|e| err(e.to_string()))?.to_string_lossy().into_owned();
        let clean: Vec<&str> = raw_path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if clean.is_empty() {
            continue;
        }
        if clean.contains(&"..") {
            return Err(err(format!("entry {raw_path:?} climbs out of the bundle")));
        }
        let rel = format!("{base}/{}", clean.join("/"));
        let mode = entry.header().mode().map_err(|e| err(e.to_string()))? & 0o777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => image.create_dir_all(&rel, mode | 0o700)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| err(format!("{raw_path}: {e}")))?;
                image.write(&rel, &data, mode)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(|e| err(e.to_string()))?.unwrap_or_default();
                image.symlink(&rel, &target.to_string_lossy())?;
            }
            other => {
                return Err(err(format!(
                    "entry {raw_path:?} is a {other:?}; bundles hold files, directories and symlinks"
                )));
            }
        }
    }
    let module = format!("{base}/{}", bundle.module);
    if image.file_type(&module)? != Some(rustix::fs::FileType::RegularFile) {
        return Err(err(format!("module {} is not a file in {}", bundle.module, archive.display())));
    }
    register_module(image, &bundle.name, &module)
}

/// Manual pages, info pages, translations and documentation, as `dpkg --path-exclude` setups
/// drop them; `/usr/share/doc/*/copyright` stays (licences travel with the binaries).
fn remove_documentation(image: &ImageRoot) -> Result<(), BuildError> {
    for dir in ["usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/linda"] {
        image.remove_all(dir)?;
    }
    if image.file_type("usr/share/locale")? == Some(rustix::fs::FileType::Directory) {
        for name in image.list("usr/share/locale")? {
            if name != "locale.alias" {
                image.remove_all(&format!("usr/share/locale/{name}"))?;
            }
        }
    }
    if image.file_type("usr/share/doc")? == Some(rustix::fs::FileType::Directory) {
        for package in image.list("usr/share/doc")? {
            let dir = format!("usr/share/doc/{package}");
            if image.file_type(&dir)? == Some(rustix::fs::FileType::Directory) {
                for name in image.list(&dir)? {
                    if name != "copyright" {
                        image.remove_all(&format!("{dir}/{name}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn kernel_version(image: &ImageRoot) -> Result<String, BuildError> {
    let mut versions = Vec::new();
    for name in image.list("lib/modules")? {
        if image.file_type(&format!("lib/modules/{name}"))? == Some(rustix::fs::FileType::Directory) {
            versions.push(name);
        }
    }
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BuildError::stage(
            "customize",
            format!("expected exactly one kernel in lib/modules, found {versions:?}"),
        )),
    }
}

/// Delete the excluded module trees; return the names of the modules removed, sorted.
/// Every timer unit the packages installed, sorted.
fn timers(image: &ImageRoot) -> Result<Vec<String>, BuildError> {
    let mut timers = BTreeSet::new();
    for dir in UNIT_DIRS {
        if image.file_type(dir)? == Some(rustix::fs::FileType::Directory) {
            timers.extend(image.list(dir)?.into_iter().filter(|name| name.ends_with(".timer")));
        }
    }
    Ok(timers.into_iter().collect())
}

/// Remove each excluded entry: a directory of modules, or one module named by its path without
/// the `.ko` extension. An entry that matches nothing is an error: a typo must not leave a
/// driver in the image unnoticed.
fn prune_modules(
    image: &ImageRoot,
    excluded: &[String],
    kernel_version: &str,
) -> Result<Vec<String>, BuildError> {
    let mut removed = BTreeSet::new();
    for entry in excluded {
        let rel = format!("lib/modules/{kernel_version}/kernel/{entry}");
        if image.file_type(&rel)? == Some(rustix::fs::FileType::Directory) {
            collect_module_names(image, &rel, &mut removed)?;
            image.remove_all(&rel)?;
            continue;
        }
        let mut found = false;
        for ext in MODULE_EXTENSIONS {
            let file = format!("{rel}{ext}");
            if image.file_type(&file)? == Some(rustix::fs::FileType::RegularFile) {
                let name = file.rsplit('/').next().expect("has a name");
                removed.extend(module_stem(name));
                image.remove_all(&file)?;
                found = true;
            }
        }
        if !found {
            return Err(BuildError::stage(
                "customize",
                format!(
                    "kernel.exclude_modules entry {entry:?} is neither a module directory nor a module in kernel {kernel_version}"
                ),
            ));
        }
    }
    Ok(removed.into_iter().collect())
}

const MODULE_EXTENSIONS: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

fn collect_module_names(
    image: &ImageRoot,
    dir: &str,
    names: &mut BTreeSet<String>,
) -> Result<(), BuildError> {
    for name in image.list(dir)? {
        let rel = format!("{dir}/{name}");
        if image.file_type(&rel)? == Some(rustix::fs::FileType::Directory) {
            collect_module_names(image, &rel, names)?;
        } else if let Some(stem) = module_stem(&name) {
            names.insert(stem);
        }
    }
    Ok(())
}

/// `e1000e.ko.xz` -> `e1000e`; `mac80211-hwsim.ko` -> `mac80211_hwsim` (as modprobe names it).
fn module_stem(file_name: &str) -> Option<String> {
    MODULE_EXTENSIONS.iter().find_map(|ext| file_name.strip_suffix(ext)).map(|stem| stem.replace('-', "_"))
}

fn write_blacklist(image: &ImageRoot, modules: &[String]) -> Result<(), BuildError> {
    let mut text = String::from(
        "# ceremony-os air gap: these modules were removed from the image; should one ever appear,\n# it must not load.\n",
    );
    for m in modules {
        text.push_str(&format!("blacklist {m}\ninstall {m} /bin/false\n"));
    }
    image.write("etc/modprobe.d/ceremony-os-airgap.conf", text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_modules_are_directories_or_single_modules_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("lib/modules/6.1.0-1-amd64/kernel");
        std::fs::create_dir_all(kernel.join("drivers/usb/class")).unwrap();
        std::fs::create_dir_all(kernel.join("fs/pstore")).unwrap();
        for file in ["drivers/usb/class/cdc-wdm.ko", "drivers/usb/class/usblp.ko", "fs/pstore/ramoops.ko.xz"]
        {
            std::fs::write(kernel.join(file), b"").unwrap();
        }
        let image = ImageRoot::open(dir.path(), "customize").unwrap();
        let excluded = ["fs/pstore".to_string(), "drivers/usb/class/cdc-wdm".to_string()];
        let removed = prune_modules(&image, &excluded, "6.1.0-1-amd64").unwrap();
        assert_eq!(removed, ["cdc_wdm", "ramoops"]);
        assert!(!kernel.join("fs/pstore").exists() && !kernel.join("drivers/usb/class/cdc-wdm.ko").exists());
        assert!(kernel.join("drivers/usb/class/usblp.ko").exists(), "a neighbour was removed");
        let err =
            prune_modules(&image, &["drivers/usb/class/cdc-wmd".to_string()], "6.1.0-1-amd64").unwrap_err();
        assert!(err.to_string().contains("\"drivers/usb/class/cdc-wmd\" is neither"), "{err}");
    }

    #[test]
    fn every_timer_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("usr/lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        for unit in ["apt-daily.timer", "apt-daily.service", "fstrim.timer"] {
            std::fs::write(units.join(unit), b"").unwrap();
        }
        let image = ImageRoot::open(dir.path(), "customize").unwrap();
        assert_eq!(timers(&image).unwrap(), ["apt-daily.timer", "fstrim.timer"]);
    }

    #[test]
    fn module_names_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wireless/intel")).unwrap();
        std::fs::write(dir.path().join("wireless/intel/iwlwifi.ko"), b"").unwrap();
        std::fs::write(dir.path().join("e1000e.ko.xz"), b"").unwrap();
        std::fs::write(dir.path().join("mac80211-hwsim.ko"), b"").unwrap();
        std::fs::write(dir.path().join("README"), b"").unwrap();
        let image = ImageRoot::open(dir.path(), "customize").unwrap();
        let mut names = BTreeSet::new();
        for top in image.list("").unwrap() {
            if image.file_type(&top).unwrap() == Some(rustix::fs::FileType::Directory) {
                collect_module_names(&image, &top, &mut names).unwrap();
            } else if let Some(stem) = module_stem(&top) {
                names.insert(stem);
            }
        }
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["e1000e", "iwlwifi", "mac80211_hwsim"]);
    }
}
