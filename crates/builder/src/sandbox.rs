//! Running a command inside the image tree: `chroot` in fresh mount, network, UTS, IPC and PID
//! namespaces, with its own /proc and a fixed host name, so the host's network, name and mounts
//! cannot leak in, and every mount disappears with the namespace, even if the build is killed.

use ceremony_os_runner::{Cmd, Runner};
use std::path::Path;

/// Host name seen by everything run during the build.
pub const BUILD_HOSTNAME: &str = "ceremony-build";

/// Wrap `argv` so that it runs isolated by namespaces (no network, fixed host name, private
/// mounts). `dir` is the working directory of the wrapper.
pub fn isolated(runner: &Runner, dir: &Path, argv: &[&str]) -> Cmd {
    runner
        .cmd("unshare", dir)
        .args(["--mount", "--net", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--"])
        .args(["/bin/sh", "-c", "hostname \"$0\" && exec \"$@\"", BUILD_HOSTNAME])
        .args(argv)
}

/// `chroot root argv...` isolated as above, with /proc mounted inside the root.
pub fn in_chroot(runner: &Runner, root: &Path, argv: &[&str]) -> Cmd {
    let root_str = root.to_string_lossy();
    let script = "hostname \"$0\" && mount -t proc proc \"$1/proc\" && root=\"$1\" && shift 2 && exec chroot \"$root\" \"$@\"";
    runner
        .cmd("unshare", root)
        .args(["--mount", "--net", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--"])
        .args(["/bin/sh", "-c", script, BUILD_HOSTNAME, &root_str, "--"])
        .args(argv)
}
