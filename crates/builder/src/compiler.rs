//! The Rust compiler the `tools` stage uses, found the way the user runs it: `$RUSTC` or `rustc`
//! on the caller's PATH (a rustup proxy resolves through the workspace's rust-toolchain.toml),
//! then `cargo` beside it in the compiler's sysroot (or `$CARGO`). Only the sysroot is used
//! afterwards, read-only inside the toolchain jail; nothing is looked up under HOME unless the
//! caller's own rustup does so.
//!
//! A compiler whose release is not the one rust-toolchain.toml pins is refused before anything is
//! built: the ISO embeds what it compiles.

use crate::error::BuildError;
use ceremony_os_runner::{Cmd, Runner};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Caller environment variables that locate the compiler (and nothing else).
const LOCATING_VARIABLES: &[&str] = &["PATH", "HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_HOME"];

#[derive(Debug, Clone)]
pub struct Compiler {
    /// The compiler's sysroot (`rustc --print sysroot`): `bin/rustc`, `lib/rustlib/...`.
    pub sysroot: PathBuf,
    /// The cargo to run, inside `sysroot` when it lives there.
    pub cargo: PathBuf,
    /// `rustc -vV`.
    pub rustc_version: String,
    /// `cargo -V`.
    pub cargo_version: String,
}

/// A command run with the caller's locating variables (see [`LOCATING_VARIABLES`]).
fn caller_cmd(runner: &Runner, program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Cmd {
    let mut cmd = runner.cmd(program, dir);
    for name in LOCATING_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            cmd = cmd.env(name, value);
        }
    }
    cmd
}

/// The release rust-toolchain.toml pins (`[toolchain] channel = "1.95.0"`).
pub fn pinned_release(toolchain_toml: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(toolchain_toml).ok()?;
    value.get("toolchain")?.get("channel")?.as_str().map(str::to_string)
}

/// The `release:` line of `rustc -vV`.
pub fn release_of(rustc_version: &str) -> Option<&str> {
    rustc_version.lines().find_map(|l| l.strip_prefix("release: ")).map(str::trim)
}

pub fn find(runner: &Runner, workspace: &Path) -> Result<Compiler, BuildError> {
    let rustc: OsString = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let run = |args: &[&str]| -> Result<String, BuildError> {
        let out =
            caller_cmd(runner, &rustc, workspace).args(args).output().map_err(|e| BuildError::Compiler {
                message: format!("cannot run {} (from $RUSTC or PATH): {e}", rustc.to_string_lossy()),
            })?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let rustc_version = run(&["-vV"])?;
    let sysroot = PathBuf::from(run(&["--print", "sysroot"])?);
    let toml_path = workspace.join("rust-toolchain.toml");
    let toml = std::fs::read_to_string(&toml_path).map_err(|e| BuildError::io(&toml_path, e))?;
    let pinned = pinned_release(&toml).ok_or_else(|| BuildError::Compiler {
        message: format!("{}: no [toolchain] channel", toml_path.display()),
    })?;
    let found = release_of(&rustc_version).unwrap_or("unknown");
    if found != pinned {
        return Err(BuildError::Compiler {
            message: format!(
                "{} is rustc {found}, but {} pins {pinned}; the image embeds what it compiles, so only {pinned} may build it",
                rustc.to_string_lossy(),
                toml_path.display()
            ),
        });
    }
    let cargo = match std::env::var_os("CARGO") {
        Some(cargo) => PathBuf::from(cargo),
        None if sysroot.join("bin/cargo").is_file() => sysroot.join("bin/cargo"),
        None => PathBuf::from("cargo"),
    };
    let cargo_version = caller_cmd(runner, &cargo, workspace)
        .arg("-V")
        .output()
        .map_err(|e| BuildError::Compiler { message: format!("cannot run {}: {e}", cargo.display()) })?;
    let cargo_version = String::from_utf8_lossy(&cargo_version.stdout).trim().to_string();
    if !sysroot.join("bin/rustc").is_file() {
        return Err(BuildError::Compiler {
            message: format!("the compiler's sysroot {} has no bin/rustc", sysroot.display()),
        });
    }
    Ok(Compiler { sysroot, cargo, rustc_version, cargo_version })
}

/// `cargo fetch --locked` with the caller's cargo configuration: fills the caller's registry
/// cache with the .crate files the lock names (from crates.io), nothing else.
pub fn fetch_crates(runner: &Runner, compiler: &Compiler, manifest: &Path) -> Result<(), BuildError> {
    let dir = manifest.parent().unwrap_or(Path::new("/"));
    caller_cmd(runner, &compiler.cargo, dir)
        .args(["fetch", "--locked", "--manifest-path"])
        .arg(manifest)
        .output()?;
    Ok(())
}

/// The caller's cargo home (where `cargo fetch` leaves .crate files).
pub fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cargo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_release_and_the_compiler_release() {
        assert_eq!(pinned_release("[toolchain]\nchannel = \"1.95.0\"\n").as_deref(), Some("1.95.0"));
        assert_eq!(pinned_release("[toolchain]\nprofile = \"minimal\"\n"), None);
        let vv = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 20.1.8\n";
        assert_eq!(release_of(vv), Some("1.95.0"));
        assert_eq!(release_of("garbage"), None);
    }
}
