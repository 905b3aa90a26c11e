//! The locked build toolchain: the toolchain package set unpacked into a tree (the `toolchain`
//! stage) and two ways to run its programs, so that neither the host's tools nor its libraries
//! nor its configuration files can change the bytes they produce:
//!
//! - [`Toolchain::cmd`] runs one program through the tree's own dynamic loader (mksquashfs,
//!   xorriso: programs that only read and write the files they are given);
//! - [`Jail`] runs a command with the tree as its root file system (read-only), in fresh mount,
//!   network, UTS, IPC and PID namespaces with private /proc, /dev, /tmp and /run, and only the
//!   directories it is given bound in under `/ceremony-os/`. mmdebstrap, apt, dpkg, tar, the C
//!   compiler and linker run this way: whatever they read from "the system" (/etc, /usr/share,
//!   the host name) is the locked tree's, never the host's.
//!
//! The host provides only the kernel and `unshare`, `mount` and `chroot` (util-linux, coreutils),
//! with the `sh` that strings them together; none of them writes into the output.

use ceremony_os_runner::{Cmd, Runner};
use std::path::{Path, PathBuf};

const LOADER: &str = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
const LIBRARY_DIRS: [&str; 2] = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// Host name seen by everything run during the build.
pub const BUILD_HOSTNAME: &str = "ceremony-build";

/// Directory of the toolchain tree under which a [`Jail`] binds its directories.
pub const JAIL_MOUNTS: &str = "ceremony-os";

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

    /// Run `usr/bin/<program>` of the toolchain through its own loader. `argv0` is what the
    /// program sees as its name (multi-call binaries such as mtools dispatch on it).
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

    /// A jail with this tree as its root.
    pub fn jail<'a>(&'a self, runner: &'a Runner) -> Jail<'a> {
        Jail { toolchain: self, runner, binds: Vec::new(), cwd: "/".into() }
    }
}

/// A command to run with the toolchain tree as its root; see the module documentation.
#[derive(Debug)]
pub struct Jail<'a> {
    toolchain: &'a Toolchain,
    runner: &'a Runner,
    binds: Vec<(PathBuf, String, bool)>,
    cwd: String,
}

/// Sets up the namespaces' file systems and enters the root. Arguments: the root, then
/// (host path, path inside, "ro"|"rw") triples, then "--", the working directory and the command.
const JAIL_SCRIPT: &str = r#"set -eu
root=$1; shift
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  : > "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -m 1777 "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=0755 tmpfs "$root/ceremony-os"
while [ "$1" != "--" ]; do
  host=$1; inside=$root/ceremony-os/$2; mode=$3; shift 3
  if [ -d "$host" ]; then mkdir -p "$inside"; else mkdir -p "$(dirname "$inside")"; : > "$inside"; fi
  mount --bind "$host" "$inside"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$inside"; fi
done
shift
cwd=$1; shift
echo "$HOSTNAME_IN_JAIL" > /proc/sys/kernel/hostname
unset HOSTNAME_IN_JAIL
exec chroot "$root" /usr/bin/env --chdir="$cwd" "$@"
"#;

impl Jail<'_> {
    /// Bind `host` read-only at `/ceremony-os/<inside>`.
    pub fn bind_ro(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push((host.to_path_buf(), inside.to_string(), false));
        self
    }

    /// Bind `host` writable at `/ceremony-os/<inside>`.
    pub fn bind_rw(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push((host.to_path_buf(), inside.to_string(), true));
        self
    }

    /// The working directory inside the jail (default `/`).
    pub fn cwd(mut self, inside: &str) -> Self {
        self.cwd = inside.to_string();
        self
    }

    /// The command `argv` (looked up on the fixed PATH inside the jail).
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(self, argv: &[S]) -> Cmd {
        let mut cmd = self
            .runner
            .cmd("unshare", "/")
            .args(["--mount", "--net", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--"])
            .args(["/bin/sh", "-c", JAIL_SCRIPT, "jail"])
            .arg(&self.toolchain.root)
            .env("HOSTNAME_IN_JAIL", BUILD_HOSTNAME);
        for (host, inside, writable) in &self.binds {
            cmd = cmd.arg(host).arg(inside).arg(if *writable { "rw" } else { "ro" });
        }
        cmd.arg("--").arg(&self.cwd).args(argv)
    }
}
