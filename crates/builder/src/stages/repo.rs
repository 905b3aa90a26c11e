//! Stage `repo`: a flat apt repository holding exactly the locked image .debs, copied from the
//! store after verification, with a Packages index made from their own control files (read
//! in-process, not by the host's dpkg-deb). From here on nothing comes from the network.

use super::{Ctx, DebInput};
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use ceremony_os_definition::Lockfile;

const RECIPE: u32 = 2;

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub suite: String,
    pub architecture: String,
    pub source_date_epoch: i64,
    pub debs: Vec<DebInput>,
}

pub fn inputs(lock: &Lockfile) -> Inputs {
    Inputs {
        recipe: RECIPE,
        suite: lock.suite.clone(),
        architecture: lock.architecture.debian_name().to_string(),
        source_date_epoch: lock.source_date_epoch,
        debs: DebInput::all(&lock.image.packages),
    }
}

pub(crate) fn run(ctx: &Ctx<'_>, inputs: &Inputs) -> Result<StageOutput, BuildError> {
    ctx.stage("repo", inputs, OutputKind::Tree, |out| {
        std::fs::create_dir_all(out).map_err(|e| BuildError::io(out, e))?;
        let mut stanzas = Vec::new();
        for p in &inputs.debs {
            let object = p.store_object(ctx.store)?;
            let deb = out.join(p.file_name());
            std::fs::copy(&object, &deb).map_err(|e| BuildError::io(&deb, e))?;
            // The store's file modes are the fetching process's business, not the image's.
            super::set_mode(&deb, 0o644)?;
            let control = ceremony_os_debian::deb::control_text(&deb)
                .map_err(|e| BuildError::stage("repo", e.to_string()))?;
            stanzas.push(format!(
                "{}\nFilename: ./{}\nSize: {}\nSHA256: {}\n",
                control.trim_end(),
                p.file_name(),
                p.size,
                p.sha256
            ));
        }
        let packages = stanzas.join("\n");
        super::write(&out.join("Packages"), &packages)?;
        let release = format!(
            "Origin: ceremony-os\nLabel: ceremony-os\nSuite: {suite}\nCodename: {suite}\nArchitectures: {arch}\nSHA256:\n {} {} Packages\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(packages.as_bytes())),
            packages.len(),
            suite = inputs.suite,
            arch = inputs.architecture,
        );
        super::write(&out.join("Release"), release)?;
        ceremony_os_tree::clamp_mtimes(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}
