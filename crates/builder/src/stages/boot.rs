//! Stage `boot`: everything the four boot paths need, as a tree for the ISO.
//!
//! - BIOS from CD: isolinux (El Torito, no emulation, boot info table).
//! - BIOS from USB: the same isolinux behind the isohybrid MBR (`isohdpfx.bin`).
//! - UEFI from CD: El Torito EFI entry pointing at `boot/grub/efi.img`, a FAT image holding a
//!   standalone GRUB (`EFI/BOOT/BOOTX64.EFI`) built by grub-mkimage with an embedded config.
//! - UEFI from USB: the same FAT image marked as the EFI system partition in the hybrid GPT/MBR.
//!
//! GRUB finds the disc by a marker file and loads `boot/grub/grub.cfg`; both loaders use the
//! serial console (ttyS0, 115200) and the screen, and boot without a key press.

use super::{Ctx, write};
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;
use std::path::Path;

const RECIPE: u32 = 3;

/// GRUB modules built into BOOTX64.EFI.
const GRUB_EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "normal",
    "linux",
    "search",
    "search_fs_file",
    "configfile",
    "echo",
    "test",
    "ls",
    "cat",
    "serial",
    "terminal",
    "terminfo",
    "gzio",
    "all_video",
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
    pub toolchain: String,
    /// The files the stage writes from the definition, as written.
    pub marker: String,
    pub disk_info: String,
    pub isolinux_cfg: String,
    pub grub_cfg: String,
    pub grub_early_cfg: String,
    pub grub_modules: &'static [&'static str],
    pub fat_label: &'static str,
}

/// `kernel` is the `(vmlinuz, initrd)` SHA-256 pair of the normalize stage's output.
pub fn inputs(
    def: &ceremony_os_definition::ImageDefinition,
    kernel: (&str, &str),
    toolchain: &Toolchain,
) -> Inputs {
    let title = format!("{} {}", def.image.name, def.image.version);
    Inputs {
        recipe: RECIPE,
        source_date_epoch: def.source_date_epoch(),
        vmlinuz: kernel.0.to_string(),
        initrd: kernel.1.to_string(),
        toolchain: toolchain.digest().to_string(),
        marker: format!("{}\n", def.artifact_stem()),
        disk_info: format!("{title} ({}) {}\n", def.image.architecture, def.debian.snapshot),
        isolinux_cfg: isolinux_cfg(&title, &def.kernel.cmdline),
        grub_cfg: grub_cfg(&title, &def.kernel.cmdline),
        grub_early_cfg: format!(
            "search --no-floppy --set=root --file /{MARKER}\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n"
        ),
        grub_modules: GRUB_EFI_MODULES,
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
        let work = out.parent().expect("out has a parent");
        copy(&vmlinuz, &tree.join("live/vmlinuz"))?;
        copy(&initrd, &tree.join("live/initrd.img"))?;
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

        // UEFI: standalone GRUB in a FAT image
        write(&tree.join("boot/grub/grub.cfg"), &inputs.grub_cfg)?;
        let early = work.join("grub-early.cfg");
        write(&early, &inputs.grub_early_cfg)?;
        let efi_binary = work.join("BOOTX64.EFI");
        toolchain
            .cmd(&ctx.runner, "grub-mkimage", work)
            .args(["--format", "x86_64-efi", "--prefix", "/boot/grub", "--directory"])
            .arg(toolchain.file("usr/lib/grub/x86_64-efi"))
            .arg("--config")
            .arg(&early)
            .arg("--output")
            .arg(&efi_binary)
            .args(inputs.grub_modules)
            .output()?;
        let efi_bytes = std::fs::read(&efi_binary).map_err(|e| BuildError::io(&efi_binary, e))?;
        write(&tree.join("EFI/BOOT/BOOTX64.EFI"), &efi_bytes)?;
        ceremony_os_media::fat::write_fat_image(
            &tree.join("boot/grub/efi.img"),
            inputs.fat_label,
            &[("EFI/BOOT/BOOTX64.EFI", efi_bytes)],
            inputs.source_date_epoch,
        )?;
        ceremony_os_tree::clamp_mtimes(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::copy(from, to).map_err(|e| BuildError::io(from, e))?;
    super::set_mode(to, 0o644)
}

fn isolinux_cfg(title: &str, cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\nDEFAULT live\n\nLABEL live\n  MENU LABEL {title}\n  KERNEL /live/vmlinuz\n  APPEND initrd=/live/initrd.img {cmdline}\n"
    )
}

fn grub_cfg(title: &str, cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=1\nset default=0\n\nmenuentry \"{title}\" {{\n  linux /live/vmlinuz {cmdline}\n  initrd /live/initrd.img\n}}\n"
    )
}
