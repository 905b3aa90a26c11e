//! Stage `boot`: everything the four boot paths need, as a tree for the ISO.
//!
//! - BIOS from CD: isolinux (El Torito, no emulation, boot info table).
//! - BIOS from USB: the same isolinux behind the isohybrid MBR (`isohdpfx.bin`).
//! - UEFI from CD: El Torito EFI entry pointing at `boot/grub/efi.img`, a FAT image holding
//!   Debian's signed shim as `EFI/BOOT/BOOTX64.EFI`, Debian's signed GRUB beside it as
//!   `grubx64.efi` (the monolithic CD build: every module it needs is inside, since Secure Boot
//!   forbids loading more) and MokManager; with Secure Boot on, the firmware checks shim against
//!   Microsoft's key, shim checks GRUB and the kernel against Debian's.
//! - UEFI from USB: the same FAT image marked as the EFI system partition in the hybrid GPT/MBR.
//!
//! The initrd on the disc is the image's initrd followed by a small cpio archive holding
//! `conf/ceremony-os-root.conf`, the SHA-256 of this disc's `live/filesystem.squashfs`: the
//! kernel unpacks it over the first, and the initrd's root pin (see `customize`) accepts no other
//! root file system.
//!
//! GRUB reads `boot/grub/grub.cfg` from the disc; started from the FAT partition (USB), it finds
//! `boot/grub/grub.cfg` there, which loads the disc's from the device GRUB was started from. Both
//! loaders use the serial console (ttyS0, 115200) and the screen, and boot without a key press.

use super::{Ctx, write};
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;
use std::path::Path;

const RECIPE: u32 = 7;

/// The signed UEFI loaders, from the toolchain tree into `EFI/BOOT/` of the FAT image and of the
/// disc: shim (signed by Microsoft), GRUB for CDs (signed by Debian), MokManager (which shim
/// starts when asked to enrol a key; without it shim stops there).
const EFI_LOADERS: &[(&str, &str)] = &[
    ("usr/lib/shim/shimx64.efi.signed", "EFI/BOOT/BOOTX64.EFI"),
    ("usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed", "EFI/BOOT/grubx64.efi"),
    ("usr/lib/shim/mmx64.efi.signed", "EFI/BOOT/mmx64.efi"),
];

/// Marker file at the root of the ISO, by which GRUB finds it.
pub const MARKER: &str = ".ceremony-os";

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    /// The kernel and initrd the normalize stage moved out of the tree: all this stage reads of it.
    pub vmlinuz: String,
    pub initrd: String,
    /// The squashfs stage's output, the only root file system the initrd accepts.
    pub root_sha256: String,
    pub toolchain: String,
    /// The files the stage writes from the definition, as written.
    pub marker: String,
    pub disk_info: String,
    pub isolinux_cfg: String,
    pub grub_cfg: String,
    pub grub_early_cfg: String,
    pub efi_loaders: &'static [(&'static str, &'static str)],
    pub fat_label: &'static str,
}

/// `kernel` is the `(vmlinuz, initrd)` SHA-256 pair of the normalize stage's output.
pub fn inputs(
    def: &ceremony_os_definition::ImageDefinition,
    kernel: (&str, &str),
    squashfs: &StageOutput,
    toolchain: &Toolchain,
) -> Inputs {
    let title = format!("{} {}", def.image.name, def.image.version);
    Inputs {
        recipe: RECIPE,
        source_date_epoch: def.source_date_epoch(),
        vmlinuz: kernel.0.to_string(),
        initrd: kernel.1.to_string(),
        root_sha256: squashfs.digest.clone(),
        toolchain: toolchain.digest().to_string(),
        marker: format!("{}\n", def.artifact_stem()),
        disk_info: format!("{title} ({}) {}\n", def.image.architecture, def.debian.snapshot),
        isolinux_cfg: isolinux_cfg(&title, &def.kernel.cmdline),
        grub_cfg: grub_cfg(&title, &def.kernel.cmdline),
        grub_early_cfg: grub_early_cfg(),
        efi_loaders: EFI_LOADERS,
        fat_label: "EFIBOOT",
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    normalized: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    let tree = super::normalize::NormalizedTree::at(&normalized.path)?;
    let (vmlinuz, initrd) = (tree.vmlinuz, tree.initrd);
    ctx.stage("boot", inputs, OutputKind::Tree, |out| {
        for (path, recorded) in [(&vmlinuz, &inputs.vmlinuz), (&initrd, &inputs.initrd)] {
            let actual = super::file_digest(path)?;
            if actual != *recorded {
                return Err(BuildError::stage(
                    "boot",
                    format!("{} changed since its digest was taken", path.display()),
                ));
            }
        }
        let tree = out.join("tree");
        copy(&vmlinuz, &tree.join("live/vmlinuz"))?;
        let mut pinned = std::fs::read(&initrd).map_err(|e| BuildError::io(&initrd, e))?;
        pinned.resize(pinned.len().next_multiple_of(4), 0);
        pinned.extend(root_pin_archive(&inputs.root_sha256, inputs.source_date_epoch));
        write(&tree.join("live/initrd.img"), &pinned)?;
        super::set_mode(&tree.join("live/initrd.img"), 0o644)?;
        write(&tree.join(MARKER), &inputs.marker)?;
        write(&tree.join(".disk/info"), &inputs.disk_info)?;

        // BIOS: isolinux
        copy(&toolchain.file("usr/lib/ISOLINUX/isolinux.bin"), &tree.join("isolinux/isolinux.bin"))?;
        copy(
            &toolchain.file("usr/lib/syslinux/modules/bios/ldlinux.c32"),
            &tree.join("isolinux/ldlinux.c32"),
        )?;
        copy(&toolchain.file("usr/lib/ISOLINUX/isohdpfx.bin"), &out.join("isohdpfx.bin"))?;
        write(&tree.join("isolinux/isolinux.cfg"), &inputs.isolinux_cfg)?;

        // UEFI: signed shim and GRUB, in a FAT image and on the disc
        write(&tree.join("boot/grub/grub.cfg"), &inputs.grub_cfg)?;
        let mut fat_files = Vec::new();
        for (from, to) in inputs.efi_loaders {
            let source = toolchain.file(from);
            let bytes = std::fs::read(&source).map_err(|e| BuildError::io(&source, e))?;
            write(&tree.join(to), &bytes)?;
            fat_files.push((*to, bytes));
        }
        fat_files.push(("boot/grub/grub.cfg", inputs.grub_early_cfg.clone().into_bytes()));
        ceremony_os_media::fat::write_fat_image(
            &tree.join("boot/grub/efi.img"),
            inputs.fat_label,
            &fat_files,
            inputs.source_date_epoch,
        )?;
        ceremony_os_tree::clamp_mtimes(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}

/// An uncompressed cpio (newc) archive holding `conf/ceremony-os-root.conf`, which the initrd's
/// root pin sources: `ROOT_SHA256=<hex>`.
fn root_pin_archive(root_sha256: &str, mtime: i64) -> Vec<u8> {
    let config = format!("ROOT_SHA256={root_sha256}\n");
    let mut archive = Vec::new();
    let entries: [(&str, u32, &[u8]); 3] = [
        ("conf", 0o040755, b""),
        ("conf/ceremony-os-root.conf", 0o100644, config.as_bytes()),
        ("TRAILER!!!", 0, b""),
    ];
    for (ino, (name, mode, data)) in (1u32..).zip(entries) {
        let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
        let ino = if name == "TRAILER!!!" { 0 } else { ino };
        let mtime = if name == "TRAILER!!!" { 0 } else { u32::try_from(mtime).unwrap_or(0) };
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize (with its NUL), check
        archive.extend(b"070701");
        for field in [ino, mode, 0, 0, nlink, mtime, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0]
        {
            archive.extend(format!("{field:08x}").as_bytes());
        }
        archive.extend(name.as_bytes());
        archive.push(0);
        archive.resize(archive.len().next_multiple_of(4), 0);
        archive.extend(data);
        archive.resize(archive.len().next_multiple_of(4), 0);
    }
    archive
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::copy(from, to).map_err(|e| BuildError::io(from, e))?;
    super::set_mode(to, 0o644)
}

/// The FAT image's `grub.cfg`: load the disc's own `grub.cfg` from the device GRUB was started
/// from (`$cmdpath`: the CD for El Torito, the stick's whole disk for its EFI partition), never
/// from the first device that holds the marker, which a stick plugged in beside the CD could.
fn grub_early_cfg() -> String {
    format!(
        "regexp --set=1:medium '^\\(([^,)]+)' \"$cmdpath\"\nif [ -n \"$medium\" -a -f \"($medium)/{MARKER}\" ]; then\n  set root=$medium\n  set prefix=($root)/boot/grub\n  configfile ($root)/boot/grub/grub.cfg\nelse\n  echo \"ceremony-os: GRUB started from $cmdpath, which does not hold this disc (/{MARKER}); the boot stops here.\"\n  sleep 3600\nfi\n"
    )
}

fn isolinux_cfg(title: &str, cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\nDEFAULT live\n\nLABEL live\n  MENU LABEL {title}\n  KERNEL /live/vmlinuz\n  APPEND initrd=/live/initrd.img {cmdline}\n"
    )
}

fn grub_cfg(title: &str, cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=0\nset default=0\n\nmenuentry \"{title}\" {{\n  linux /live/vmlinuz {cmdline}\n  initrd /live/initrd.img\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU cpio (a host package of `make setup`) reads the archive as the kernel's newc format.
    #[test]
    fn the_root_pin_archive_is_newc_that_cpio_unpacks() {
        let digest = "ab".repeat(32);
        let archive = root_pin_archive(&digest, 1_783_814_400);
        assert_eq!(archive.len() % 4, 0);
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio is installed by make setup");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        let config = std::fs::read_to_string(dir.path().join("conf/ceremony-os-root.conf")).unwrap();
        assert_eq!(config, format!("ROOT_SHA256={digest}\n"));
        let meta = std::fs::metadata(dir.path().join("conf/ceremony-os-root.conf")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&meta), 1_783_814_400);
    }
}
