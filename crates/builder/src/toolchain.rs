//! The locked build toolchain: the toolchain package set unpacked into a directory, and its
//! programs run through the toolchain's own dynamic loader, so neither the host's tools nor its
//! libraries can change the bytes they produce.

use ceremony_os_runner::{Cmd, Runner};
use std::path::{Path, PathBuf};

const LOADER: &str = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
const LIBRARY_DIRS: [&str; 2] = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

#[derive(Debug, Clone)]
pub struct Toolchain {
    root: PathBuf,
    digest: String,
}

impl Toolchain {
    /// The toolchain stage's output: its tree and its digest (what stages using it key on).
    pub fn from_stage(output: &crate::cache::StageOutput) -> Self {
        Toolchain { root: output.path.clone(), digest: output.digest.clone() }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A file inside the toolchain tree (`usr/lib/ISOLINUX/isolinux.bin`...).
    pub fn file(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Run `usr/bin/<program>` of the toolchain. `argv0` is what the program sees as its name
    /// (multi-call binaries such as mtools dispatch on it).
    pub fn cmd(&self, runner: &Runner, program: &str, dir: &Path) -> Cmd {
        let binary = self.root.join("usr/bin").join(program);
        let library_path: Vec<String> =
            LIBRARY_DIRS.iter().map(|d| self.root.join(d).display().to_string()).collect();
        runner
            .cmd(self.root.join(LOADER), dir)
            .arg("--library-path")
            .arg(library_path.join(":"))
            .arg("--argv0")
            .arg(program)
            .arg(binary)
    }
}
