//! KVM when it really works, TCG otherwise. /dev/kvm existing is not enough: on some hosts QEMU
//! with KVM aborts as soon as a vCPU runs (an MSR assertion), so we run a short probe guest.

use ceremony_os_runner::Runner;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator to use, and why (for the one line the user sees).
pub fn choose_accel(runner: &Runner) -> (Accel, String) {
    if std::fs::metadata("/dev/kvm").is_err() {
        return (Accel::Tcg, "no /dev/kvm: using TCG (software emulation)".into());
    }
    // A guest with no boot device: SeaBIOS runs and idles. If KVM works it is still running after
    // two seconds; if it is broken QEMU aborts (or fails) at once.
    let probe = runner
        .cmd("qemu-system-x86_64", "/")
        .args(["-accel", "kvm", "-machine", "pc", "-nodefaults", "-display", "none", "-nic", "none"])
        .args(["-serial", "none", "-monitor", "none"])
        .spawn_interactive(std::process::Stdio::null());
    let Ok(mut child) = probe else {
        return (Accel::Tcg, "cannot start qemu-system-x86_64 for the KVM probe: using TCG".into());
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(status)) = child.try_wait() {
            return (Accel::Tcg, format!("KVM is present but QEMU with KVM failed ({status}): using TCG"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    (Accel::Kvm, "using KVM".into())
}
