//! Stage `squashfs`: the normalized tree compressed by the toolchain's mksquashfs. Reproducible
//! by squashfs-tools' own design (>= 4.4) with SOURCE_DATE_EPOCH from the runner; xattrs are
//! left out so host security labels cannot leak in.

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::toolchain::Toolchain;
use ceremony_os_definition::SquashfsSection;

const RECIPE: u32 = 2;

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub normalize: String,
    pub toolchain: String,
    pub options: Vec<String>,
}

pub fn inputs(
    source_date_epoch: i64,
    squashfs: &SquashfsSection,
    normalized: &StageOutput,
    toolchain: &Toolchain,
) -> Inputs {
    let mut options = vec!["-noappend".to_string(), "-no-xattrs".to_string()];
    options.extend(squashfs.mksquashfs_options());
    Inputs {
        recipe: RECIPE,
        source_date_epoch,
        normalize: normalized.digest.clone(),
        toolchain: toolchain.digest().to_string(),
        options,
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    normalized: &StageOutput,
    toolchain: &Toolchain,
) -> Result<StageOutput, BuildError> {
    ctx.stage("squashfs", inputs, OutputKind::File, |out| {
        let work = out.parent().expect("out has a parent");
        let mut last_reported = 0;
        toolchain
            .cmd(&ctx.runner, "mksquashfs", work)
            .arg(normalized.path.join("rootfs"))
            .arg(out)
            .args(&inputs.options)
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
        set_mtime(out, inputs.source_date_epoch)?;
        super::file_digest(out)
    })
}

pub(crate) fn set_mtime(path: &std::path::Path, epoch: i64) -> Result<(), BuildError> {
    let t = filetime::FileTime::from_unix_time(epoch, 0);
    filetime::set_file_times(path, t, t).map_err(|e| BuildError::io(path, e))
}
