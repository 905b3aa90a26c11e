//! Stage `toolchain`: the locked build tools with their libraries, unpacked in-process into a
//! tree that can also serve as a root file system: mmdebstrap, apt, dpkg, tar and the C compiler
//! run inside it (see `crate::toolchain::Jail`); xorriso and mksquashfs run through
//! its own loader. Packages are unpacked, not configured: the few files their maintainer scripts
//! would have made and the build needs are written here with fixed content.

use super::{Ctx, DebInput};
use crate::cache::{OutputKind, StageOutput};
use crate::error::BuildError;
use crate::toolchain::{BUILD_HOSTNAME, JAIL_MOUNTS};
use ceremony_os_definition::Lockfile;

const RECIPE: u32 = 2;

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub hostname: &'static str,
    pub debs: Vec<DebInput>,
}

pub fn inputs(lock: &Lockfile) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch: lock.source_date_epoch,
        hostname: BUILD_HOSTNAME,
        debs: DebInput::all(&lock.toolchain.packages),
    }
}

pub(crate) fn run(ctx: &Ctx<'_>, inputs: &Inputs) -> Result<StageOutput, BuildError> {
    ctx.stage("toolchain", inputs, OutputKind::Tree, |out| {
        std::fs::create_dir_all(out).map_err(|e| BuildError::io(out, e))?;
        let failed = |p: &DebInput, e: ceremony_os_debian::deb::DebError| {
            BuildError::stage("toolchain", format!("{}: {e}", p.label()))
        };
        // Decompressing (xz) is most of the work: one thread decompresses, in lock order, while
        // this one writes the files out in the same order (a later package's file replaces an
        // earlier one's, as when unpacked one by one).
        std::thread::scope(|scope| {
            let (send, decompressed) = std::sync::mpsc::sync_channel(2);
            scope.spawn(move || {
                for p in &inputs.debs {
                    let data = p.store_object(ctx.store).and_then(|object| {
                        ceremony_os_debian::deb::data_tar(&object).map_err(|e| failed(p, e))
                    });
                    let stop = data.is_err();
                    if send.send(data).is_err() || stop {
                        break;
                    }
                }
            });
            for (n, (p, data)) in inputs.debs.iter().zip(decompressed).enumerate() {
                if n % 25 == 0 {
                    ctx.progress("toolchain", &format!("unpacking {}/{}", n + 1, inputs.debs.len()));
                }
                data?.unpack(out).map_err(|e| failed(p, e))?;
            }
            Ok::<(), BuildError>(())
        })?;
        make_usable_as_root(out, inputs.hostname)?;
        ceremony_os_tree::clamp_mtimes(out, inputs.source_date_epoch)?;
        super::dir_digest(out)
    })
}

/// What base-passwd's and dpkg's maintainer scripts would have made, and the build's own fixed
/// view of "the system": no name servers, a fixed host name.
fn make_usable_as_root(root: &std::path::Path, hostname: &str) -> Result<(), BuildError> {
    for (master, target) in [("passwd", "etc/passwd"), ("group", "etc/group")] {
        let source = root.join(format!("usr/share/base-passwd/{master}.master"));
        let text = std::fs::read(&source).map_err(|e| {
            BuildError::stage(
                "toolchain",
                format!("{}: {e} (base-passwd must be in the toolchain set)", source.display()),
            )
        })?;
        super::write_with_mode(&root.join(target), text, 0o644)?;
    }
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", JAIL_MOUNTS] {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).map_err(|e| BuildError::io(&path, e))?;
        super::set_mode(&path, 0o755)?;
    }
    super::write_with_mode(&root.join("var/lib/dpkg/status"), "", 0o644)?;
    super::write_with_mode(&root.join("etc/resolv.conf"), "# ceremony-os build: no network\n", 0o644)?;
    super::write_with_mode(&root.join("etc/hostname"), format!("{hostname}\n"), 0o644)?;
    super::write_with_mode(
        &root.join("etc/hosts"),
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        0o644,
    )
}
