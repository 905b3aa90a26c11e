//! Stage `repo`: a flat apt repository holding exactly the locked image .debs, copied from the
//! store after verification. From here on nothing comes from the network.

use super::Ctx;
use crate::cache::{KeyBuilder, StageOutput};
use crate::error::BuildError;
use ceremony_os_store::Expected;

const RECIPE: u32 = 1;

pub(crate) fn run(ctx: &Ctx<'_>) -> Result<StageOutput, BuildError> {
    let mut key = KeyBuilder::new("repo", RECIPE);
    key.field("suite", &ctx.lock.suite).field("snapshot", &ctx.lock.snapshot.to_string());
    for p in &ctx.lock.image.packages {
        key.field("deb", &format!("{} {} {} {} {}", p.name, p.version, p.architecture, p.sha256, p.path));
    }
    ctx.stage("repo", key.finish(), |out| {
        std::fs::create_dir_all(out).map_err(|e| BuildError::io(out, e))?;
        let mut stanzas = Vec::new();
        for p in &ctx.lock.image.packages {
            let expected = Expected { sha256: p.sha256.clone(), size: p.size };
            if !ctx.store.has_verified(&expected)? {
                return Err(BuildError::MissingInput { label: p.spec() });
            }
            let deb = out.join(p.file_name());
            let object = ctx.store.object_path(&p.sha256);
            std::fs::copy(&object, &deb).map_err(|e| BuildError::io(&deb, e))?;
            // The store's file modes are the fetching process's business, not the image's.
            super::set_mode(&deb, 0o644)?;
            let control = ctx.runner.cmd("dpkg-deb", out).arg("--field").arg(&deb).output()?;
            let control = String::from_utf8_lossy(&control.stdout);
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
            suite = ctx.lock.suite,
            arch = ctx.lock.architecture,
        );
        super::write(&out.join("Release"), release)?;
        ceremony_os_tree::clamp_mtimes(out, ctx.sde())?;
        super::dir_digest(out)
    })
}
