//! Stage `iso`: the hybrid ISO (CD and USB, BIOS and UEFI) assembled by the toolchain's xorriso.
//! Dates come from SOURCE_DATE_EPOCH (xorriso honours it for the volume dates and UUID) and from
//! the inputs' clamped mtimes; preparer, publisher and volume id are fixed by the definition.

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;

const RECIPE: u32 = 2;

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub squashfs: String,
    pub boot: String,
    pub toolchain: String,
    pub volume_id: String,
    pub application: String,
    pub preparer: &'static str,
    pub publisher: &'static str,
}

pub fn inputs(
    def: &ceremony_os_definition::ImageDefinition,
    squashfs: &StageOutput,
    boot: &StageOutput,
    toolchain: &Toolchain,
) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch: def.source_date_epoch(),
        squashfs: squashfs.digest.clone(),
        boot: boot.digest.clone(),
        toolchain: toolchain.digest().to_string(),
        volume_id: def.volume_id(),
        application: format!("{} {}", def.image.name, def.image.version),
        preparer: "CEREMONY-OS",
        publisher: "CEREMONY-OS",
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    squashfs: &StageOutput,
    boot: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    ctx.stage("iso", inputs, OutputKind::File, |out| {
        let work = out.parent().expect("out has a parent");
        let tree = boot.path.join("tree");
        let (y, mo, d, h, mi, s) =
            ceremony_os_definition::Timestamp::from_unix(inputs.source_date_epoch).civil();
        let modification_date = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
        toolchain
            .cmd(&ctx.runner, "xorriso", work)
            .args(["-as", "mkisofs", "-o"])
            .arg(out)
            .args([
                "-V",
                &inputs.volume_id,
                "-A",
                &inputs.application,
                "-p",
                inputs.preparer,
                "-publisher",
                inputs.publisher,
            ])
            .arg(format!("--modification-date={modification_date}"))
            .args(["-iso-level", "3", "-r", "-J", "-joliet-long", "-l"])
            .arg("-isohybrid-mbr")
            .arg(boot.path.join("isohdpfx.bin"))
            .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
            .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
            .args(["-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat"])
            .arg("-graft-points")
            .arg(format!("/={}", tree.display()))
            .arg(format!("/live/filesystem.squashfs={}", squashfs.path.display()))
            .run_merged(|line| tracing::debug!("xorriso: {line}"))?;
        super::squashfs::set_mtime(out, inputs.source_date_epoch)?;
        super::file_digest(out)
    })
}
