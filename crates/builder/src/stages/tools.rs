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
use std::path::{Path, PathBuf};

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
        vendor_crates(ctx, compiler, &sources.join("Cargo.lock"), &sources.join("Cargo.toml"), &vendor)?;
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

/// One registry package of Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

/// The crates.io packages of a Cargo.lock, each with its checksum. Other sources (git, other
/// registries) are refused: nothing could check them.
pub fn locked_crates(cargo_lock: &str, origin: &Path) -> Result<Vec<LockedCrate>, BuildError> {
    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
    let err = |message: String| BuildError::stage("tools", format!("{}: {message}", origin.display()));
    let value: toml::Value = toml::from_str(cargo_lock).map_err(|e| err(e.to_string()))?;
    let packages =
        value.get("package").and_then(|p| p.as_array()).ok_or_else(|| err("no [[package]]".into()))?;
    let mut crates = Vec::new();
    for p in packages {
        let field = |name: &str| p.get(name).and_then(|v| v.as_str());
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            return Err(err("a [[package]] without name or version".into()));
        };
        match field("source") {
            None => continue, // a workspace member
            Some(CRATES_IO) => {}
            Some(other) => {
                return Err(err(format!("{name} {version} comes from {other}; only crates.io is allowed")));
            }
        }
        let checksum = field("checksum")
            .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| err(format!("{name} {version} has no valid checksum")))?;
        if !valid_crate_name(name) || !valid_crate_name(version) {
            return Err(err(format!("{name:?} {version:?} is not a crate name and version")));
        }
        crates.push(LockedCrate {
            name: name.into(),
            version: version.into(),
            checksum: checksum.to_lowercase(),
        });
    }
    Ok(crates)
}

fn valid_crate_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

/// The caller's cached .crate file for `krate`, if any.
fn cached_crate(cargo_home: &Path, krate: &LockedCrate) -> Option<PathBuf> {
    let cache = cargo_home.join("registry/cache");
    let file = format!("{}-{}.crate", krate.name, krate.version);
    let mut registries: Vec<PathBuf> =
        std::fs::read_dir(&cache).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    registries.sort();
    registries.into_iter().map(|r| r.join(&file)).find(|p| p.is_file())
}

/// Unpack every crate Cargo.lock names into `vendor/<name>-<version>/` as a cargo directory
/// source, from .crate files whose SHA-256 equals the lock's checksum. Missing .crate files are
/// fetched first with the caller's cargo (`cargo fetch --locked`, from crates.io).
fn vendor_crates(
    ctx: &Ctx<'_>,
    compiler: &Compiler,
    cargo_lock: &Path,
    manifest: &Path,
    vendor: &Path,
) -> Result<(), BuildError> {
    let text = std::fs::read_to_string(cargo_lock).map_err(|e| BuildError::io(cargo_lock, e))?;
    let crates = locked_crates(&text, cargo_lock)?;
    let cargo_home = crate::compiler::cargo_home();
    if crates.iter().any(|c| cached_crate(&cargo_home, c).is_none()) {
        ctx.progress("tools", "fetching the missing .crate files from crates.io (cargo fetch --locked)");
        crate::compiler::fetch_crates(&ctx.runner, compiler, manifest)?;
    }
    std::fs::create_dir_all(vendor).map_err(|e| BuildError::io(vendor, e))?;
    for krate in &crates {
        let label = format!("{} {}", krate.name, krate.version);
        let file = cached_crate(&cargo_home, krate).ok_or_else(|| {
            BuildError::stage(
                "tools",
                format!("{label}: no .crate file under {} after cargo fetch", cargo_home.display()),
            )
        })?;
        let bytes = std::fs::read(&file).map_err(|e| BuildError::io(&file, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != krate.checksum {
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
        for entry in archive.entries().map_err(|e| BuildError::io(&file, e))? {
            let mut entry = entry.map_err(|e| BuildError::io(&file, e))?;
            let path = entry.path().map_err(|e| BuildError::io(&file, e))?.into_owned();
            if path.components().next().map(|c| c.as_os_str()) != Some(std::ffi::OsStr::new(&dir_name)) {
                return Err(BuildError::stage(
                    "tools",
                    format!("{}: entry {} outside {dir_name}/", file.display(), path.display()),
                ));
            }
            entry.unpack_in(vendor).map_err(|e| BuildError::io(&file, e))?;
        }
        super::write(
            &vendor.join(&dir_name).join(".cargo-checksum.json"),
            format!("{{\"files\":{{}},\"package\":\"{}\"}}", krate.checksum),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lock_packages_from_crates_io_only_with_checksums() {
        let lock = format!(
            "version = 4\n\n[[package]]\nname = \"ceremony-tools\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"hex\"\nversion = \"0.4.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
            "ab".repeat(32)
        );
        let crates = locked_crates(&lock, Path::new("Cargo.lock")).unwrap();
        assert_eq!(
            crates,
            [LockedCrate { name: "hex".into(), version: "0.4.3".into(), checksum: "ab".repeat(32) }]
        );

        let git = lock
            .replace("registry+https://github.com/rust-lang/crates.io-index", "git+https://example.org/x");
        let err = locked_crates(&git, Path::new("Cargo.lock")).unwrap_err().to_string();
        assert!(err.contains("hex 0.4.3 comes from git+https://example.org/x"), "{err}");

        let no_sum = lock.replace(&"ab".repeat(32), "");
        let err = locked_crates(&no_sum, Path::new("Cargo.lock")).unwrap_err().to_string();
        assert!(err.contains("hex 0.4.3 has no valid checksum"), "{err}");

        let escape = lock.replace("name = \"hex\"", "name = \"../../etc\"");
        assert!(locked_crates(&escape, Path::new("Cargo.lock")).is_err());
    }

    #[test]
    fn the_workspace_lock_is_all_crates_io() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
        let crates = locked_crates(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert!(crates.iter().any(|c| c.name == "cryptoki"));
    }
}
