//! Stage `iso`: the hybrid ISO (CD and USB, BIOS and UEFI) assembled by the toolchain's xorriso.
//! Dates come from SOURCE_DATE_EPOCH (xorriso honours it for the volume dates and UUID) and from
//! the inputs' clamped mtimes; preparer, publisher and volume id are fixed by the definition.

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;

const RECIPE: u32 = 1;

pub(crate) fn run(
    ctx: &Ctx<'_>,
    squashfs: &StageOutput,
    boot: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    let def = ctx.def;
    let volume_id = def.volume_id();
    let application = format!("{} {}", def.image.name, def.image.version);
    let mut key = KeyBuilder::new("iso", RECIPE);
    key.field("squashfs", &squashfs.digest)
        .field("boot", &boot.digest)
        .field("toolchain", toolchain.digest())
        .field("volume_id", &volume_id)
        .field("application", &application)
        .field("source_date_epoch", &ctx.sde().to_string());
    ctx.stage("iso", key.finish(), |out| {
        let work = out.parent().expect("out has a parent");
        let tree = boot.path.join("tree");
        let (y, mo, d, h, mi, s) = ceremony_os_definition::Timestamp::from_unix(ctx.sde()).civil();
        let modification_date = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
        toolchain
            .cmd(&ctx.runner, "xorriso", work)
            .args(["-as", "mkisofs", "-o"])
            .arg(out)
            .args(["-V", &volume_id, "-A", &application, "-p", "CEREMONY-OS", "-publisher", "CEREMONY-OS"])
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
        super::squashfs::set_mtime(out, ctx.sde())?;
        super::file_digest(out)
    })
}
