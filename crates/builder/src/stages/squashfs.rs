//! Stage `squashfs`: the normalized tree compressed by the toolchain's mksquashfs. Reproducible
//! by squashfs-tools' own design (>= 4.4) with SOURCE_DATE_EPOCH from the runner; xattrs are
//! left out so host security labels cannot leak in.

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;
use ceremony_os_definition::Compression;

const RECIPE: u32 = 1;

fn compression_args(c: Compression) -> &'static [&'static str] {
    match c {
        Compression::Xz => &["-comp", "xz", "-Xbcj", "x86", "-b", "1M"],
        Compression::Zstd => &["-comp", "zstd", "-Xcompression-level", "19", "-b", "1M"],
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    normalized: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    let compression = ctx.def.squashfs.compression;
    let mut key = KeyBuilder::new("squashfs", RECIPE);
    key.field("tree", &normalized.digest)
        .field("toolchain", toolchain.digest())
        .field("options", &compression_args(compression).join(" "));
    ctx.stage("squashfs", key.finish(), |out| {
        let work = out.parent().expect("out has a parent");
        let mut last_reported = 0;
        toolchain
            .cmd(&ctx.runner, "mksquashfs", work)
            .arg(normalized.path.join("rootfs"))
            .arg(out)
            .args(["-noappend", "-no-xattrs"])
            .args(compression_args(compression))
            .run_merged(|line| {
                // The progress bar: "[====/   ] 5593/11000  50%".
                let percent = line
                    .strip_suffix('%')
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(percent) = percent {
                    if percent >= last_reported + 10 {
                        last_reported = percent - percent % 10;
                        ctx.progress("squashfs", &format!("{percent}%"));
                    }
                } else if !line.trim().is_empty() {
                    tracing::debug!("mksquashfs: {line}");
                }
            })?;
        set_mtime(out, ctx.sde())?;
        super::file_digest(out)
    })
}

pub(crate) fn set_mtime(path: &std::path::Path, epoch: i64) -> Result<(), BuildError> {
    let t = filetime::FileTime::from_unix_time(epoch, 0);
    filetime::set_file_times(path, t, t).map_err(|e| BuildError::io(path, e))
}
