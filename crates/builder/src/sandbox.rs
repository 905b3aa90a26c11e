//! Running a command inside the image tree: `chroot` in fresh mount, network, UTS, IPC and PID
//! namespaces, with its own /proc and a fixed host name, so the host's network, name and mounts
//! cannot leak in, and every mount disappears with the namespace, even if the build is killed.
//! Whatever the command reads from /etc is the image's own.

use crate::toolchain::BUILD_HOSTNAME;
use ceremony_os_runner::{Cmd, Runner};
use std::path::Path;

/// `chroot root argv...` isolated as above, with /proc mounted inside the root.
pub fn in_chroot(runner: &Runner, root: &Path, argv: &[&str]) -> Cmd {
    let root_str = root.to_string_lossy();
    let script = "echo \"$0\" > /proc/sys/kernel/hostname && mount -t proc proc \"$1/proc\" && root=\"$1\" && shift 2 && exec chroot \"$root\" \"$@\"";
    runner
        .cmd("unshare", root)
        .args(["--mount", "--net", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--"])
        .args(["/bin/sh", "-c", script, BUILD_HOSTNAME, &root_str, "--"])
        .args(argv)
}
