//! The `ceremony` binary that goes into the image: built from the workspace's `ceremony-tools`
//! with `--locked`, paths remapped and symbols stripped, so the same sources and compiler give the
//! same bytes wherever the checkout lives. The compiler (pinned by rust-toolchain.toml) is an input:
//! its version is recorded in the build manifest.

use crate::error::BuildError;
use ceremony_os_runner::{Cmd, FIXED_PATH, Runner};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ToolsBuild {
    pub binary: crate::stages::customize::ToolsBinary,
    /// `rustc -vV` of the compiler that built it.
    pub compiler: String,
    /// The workspace's git commit (`-dirty` if tracked files are modified), or `unknown`.
    pub git_commit: String,
}

fn git_commit(runner: &Runner, workspace: &Path) -> String {
    let head = runner.cmd("git", workspace).args(["rev-parse", "HEAD"]).output();
    let Ok(head) = head else { return "unknown".into() };
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let dirty = runner
        .cmd("git", workspace)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty { format!("{commit}-dirty") } else { commit }
}

/// Where cargo and rustup live: from CARGO_HOME / RUSTUP_HOME, else under HOME. These locate the
/// compiler; they never reach the output (paths are remapped).
fn tool_homes() -> (PathBuf, PathBuf) {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let cargo = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cargo"));
    let rustup = std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".rustup"));
    (cargo, rustup)
}

fn rust_cmd(runner: &Runner, program: &str, workspace: &Path) -> Cmd {
    let (cargo_home, rustup_home) = tool_homes();
    runner
        .cmd(program, workspace)
        .env("PATH", format!("{}:{FIXED_PATH}", cargo_home.join("bin").display()))
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .env(
            "RUSTFLAGS",
            format!(
                "--remap-path-prefix={}=/usr/src/ceremony-os --remap-path-prefix={}=/usr/src/cargo -C strip=symbols",
                workspace.display(),
                cargo_home.display()
            ),
        )
}

pub fn build_ceremony_tools(
    runner: &Runner,
    workspace: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ToolsBuild, BuildError> {
    let workspace = workspace.canonicalize().map_err(|e| BuildError::io(workspace, e))?;
    let target_dir = workspace.join("target/image-tools");
    rust_cmd(runner, "cargo", &workspace)
        .args(["build", "--release", "--locked", "--package", "ceremony-tools", "--bin", "ceremony"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .run_merged(|line| {
            let line = line.trim();
            if line.starts_with("Compiling") || line.starts_with("Finished") {
                progress(line);
            }
        })?;
    let compiler = rust_cmd(runner, "rustc", &workspace).arg("-vV").output()?;
    let path = target_dir.join("release/ceremony");
    let sha256 = crate::stages::file_digest(&path)?;
    Ok(ToolsBuild {
        binary: crate::stages::customize::ToolsBinary { path, sha256 },
        compiler: String::from_utf8_lossy(&compiler.stdout).trim().to_string(),
        git_commit: git_commit(runner, &workspace),
    })
}
