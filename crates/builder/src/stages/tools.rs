//! Stage `tools`: the `ceremony` binary that goes into the image, compiled inside the toolchain
//! jail. The Rust compiler is the caller's (its release pinned by rust-toolchain.toml, its
//! `rustc -vV` an input); everything else it touches is locked: the C compiler, linker and C
//! library come from the toolchain set, the crates from the workspace's Cargo.lock (each .crate
//! checked against the lock's checksum and unpacked here, so a tampered registry cache cannot
//! change the binary), the sources from the build's snapshot of the workspace. Inside the jail the
//! paths are fixed, so the checkout's location cannot reach the binary.

use super::Ctx;
use crate::cache::{OutputKind, StageOutput};
use crate::compiler::Compiler;
use crate::error::BuildError;
use crate::toolchain::Toolchain;
use ceremony_os_runner::FIXED_PATH;
use sha2::{Digest, Sha256};
use std::path::Path;

const RECIPE: u32 = 2;

/// Where the jail sees what this stage binds in (under `/ceremony-os/`).
const SRC: &str = "/ceremony-os/src";
const VENDOR: &str = "/ceremony-os/vendor";
const RUST: &str = "/ceremony-os/rust";

/// The workspace paths a build of `ceremony-tools` can read.
pub const WORKSPACE_SOURCES: &[&str] =
    &["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "crates", "ceremony-tools"];

#[derive(Debug, serde::Serialize)]
pub struct Inputs {
    pub recipe: u32,
    pub source_date_epoch: i64,
    pub toolchain: String,
    /// Content digest of the workspace snapshot (see `crate::sources`).
    pub sources: String,
    pub rustc: String,
    pub cargo: String,
    pub rustflags: String,
}

fn rustflags() -> String {
    format!(
        "--remap-path-prefix={SRC}=/usr/src/ceremony-os --remap-path-prefix={VENDOR}=/usr/src/crates -C strip=symbols"
    )
}

pub fn inputs(
    source_date_epoch: i64,
    toolchain: &Toolchain,
    sources_digest: &str,
    compiler: &Compiler,
) -> Inputs {
    Inputs {
        recipe: RECIPE,
        source_date_epoch,
        toolchain: toolchain.digest().to_string(),
        sources: sources_digest.to_string(),
        rustc: compiler.rustc_version.clone(),
        cargo: compiler.cargo_version.clone(),
        rustflags: rustflags(),
    }
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    inputs: &Inputs,
    toolchain: &Toolchain,
    sources: &Path,
    compiler: &Compiler,
) -> Result<StageOutput, BuildError> {
    ctx.stage("tools", inputs, OutputKind::File, |out| {
        let work = out.parent().expect("out has a parent");
        ctx.progress("tools", "unpacking the crates Cargo.lock names");
        let vendor = work.join("vendor");
        vendor_crates(ctx, compiler, sources, &vendor)?;
        let cargo_home = work.join("cargo-home");
        super::write(
            &cargo_home.join("config.toml"),
            format!(
                "[source.crates-io]\nreplace-with = \"locked\"\n\n[source.locked]\ndirectory = \"{VENDOR}\"\n\n[net]\noffline = true\n"
            ),
        )?;
        let target = work.join("target");
        std::fs::create_dir_all(&target).map_err(|e| BuildError::io(&target, e))?;
        let cargo_in_jail = if compiler.cargo.starts_with(&compiler.sysroot) {
            format!("{RUST}/{}", compiler.cargo.strip_prefix(&compiler.sysroot).expect("checked").display())
        } else {
            return Err(BuildError::Compiler {
                message: format!(
                    "cargo {} is not inside the compiler's sysroot {}; unset $CARGO or use the sysroot's cargo",
                    compiler.cargo.display(),
                    compiler.sysroot.display()
                ),
            });
        };
        toolchain
            .jail(&ctx.runner)
            .bind_ro(sources, "src")
            .bind_ro(&vendor, "vendor")
            .bind_ro(&compiler.sysroot, "rust")
            .bind_rw(&cargo_home, "cargo-home")
            .bind_rw(&target, "target")
            .cwd(SRC)
            .cmd(&[
                cargo_in_jail.as_str(),
                "build",
                "--profile",
                "image",
                "--locked",
                "--offline",
                "--package",
                "ceremony-tools",
                "--bin",
                "ceremony",
                "--target-dir",
                "/ceremony-os/target",
            ])
            .env("CARGO_HOME", "/ceremony-os/cargo-home")
            .env("RUSTC", format!("{RUST}/bin/rustc"))
            .env("PATH", format!("{RUST}/bin:{FIXED_PATH}"))
            .env("CC", "gcc")
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER", "gcc")
            .env("RUSTFLAGS", &inputs.rustflags)
            .env("CARGO_TERM_COLOR", "never")
            .run_merged(|line| {
                let line = line.trim();
                if line.starts_with("Compiling") || line.starts_with("Finished") {
                    ctx.progress("tools", line);
                } else {
                    tracing::debug!("cargo: {line}");
                }
            })?;
        let binary = target.join("image/ceremony");
        std::fs::rename(&binary, out).map_err(|e| BuildError::io(&binary, e))?;
        super::set_mode(out, 0o755)?;
        super::file_digest(out)
    })
}

/// Unpack every crate Cargo.lock names into `vendor/<name>-<version>/` as a cargo directory
/// source, from .crate files whose SHA-256 equals the lock's checksum (see `crate::crates` for
/// where they are found).
fn vendor_crates(
    ctx: &Ctx<'_>,
    compiler: &Compiler,
    workspace: &Path,
    vendor: &Path,
) -> Result<(), BuildError> {
    let crates = crate::crates::crate_files(ctx.store, &ctx.runner, compiler, workspace, &|message| {
        ctx.progress("tools", message)
    })?;
    std::fs::create_dir_all(vendor).map_err(|e| BuildError::io(vendor, e))?;
    for (krate, file) in &crates {
        let label = format!("{} {}", krate.name, krate.version);
        let bytes = std::fs::read(file).map_err(|e| BuildError::io(file, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != krate.checksum.as_hex() {
            return Err(BuildError::stage(
                "tools",
                format!(
                    "{}: SHA-256 {actual}, but Cargo.lock says {} for {label}",
                    file.display(),
                    krate.checksum
                ),
            ));
        }
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        archive.set_preserve_permissions(false);
        archive.set_preserve_mtime(false);
        archive.set_unpack_xattrs(false);
        let dir_name = format!("{}-{}", krate.name, krate.version);
        for entry in archive.entries().map_err(|e| BuildError::io(file, e))? {
            let mut entry = entry.map_err(|e| BuildError::io(file, e))?;
            let path = entry.path().map_err(|e| BuildError::io(file, e))?.into_owned();
            if path.components().next().map(|c| c.as_os_str()) != Some(std::ffi::OsStr::new(&dir_name)) {
                return Err(BuildError::stage(
                    "tools",
                    format!("{}: entry {} outside {dir_name}/", file.display(), path.display()),
                ));
            }
            entry.unpack_in(vendor).map_err(|e| BuildError::io(file, e))?;
        }
        super::write(
            &vendor.join(&dir_name).join(".cargo-checksum.json"),
            format!("{{\"files\":{{}},\"package\":\"{}\"}}", krate.checksum),
        )?;
    }
    Ok(())
}
