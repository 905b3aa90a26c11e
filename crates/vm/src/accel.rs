//! KVM when it really works, TCG otherwise. /dev/kvm existing is not enough: on some hosts QEMU
//! with KVM aborts as soon as a vCPU runs (an MSR assertion), on others it cannot emulate what the
//! firmware or boot loader runs; so a short probe boots the guest first. `--accel` overrides it.

use crate::qemu::VmConfig;
use ceremony_os_runner::Runner;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// TCG's translation cache, in MiB. QEMU's default (1 GiB where the host has the memory) made
/// every boot path 6-13 s slower on the build machine; the sizes measured and why are in the
/// docs/performance.md. Only the emulator changes: the guest and the image do not.
pub const TCG_TRANSLATION_CACHE_MIB: u32 = 128;

impl Accel {
    /// The value of QEMU's `-accel` option.
    pub fn qemu_arg(self) -> String {
        match self {
            Accel::Kvm => "kvm".to_string(),
            Accel::Tcg => format!("tcg,tb-size={TCG_TRANSLATION_CACHE_MIB}"),
        }
    }
}

/// The accelerator to use, and why (for the one line the user sees).
///
/// The probe boots the ISO of `config` with KVM for eight seconds: only the ISO, read-only, with
/// no material disc, output stick or network card, its console discarded. A QEMU that is still
/// running is not proof: where KVM cannot emulate an instruction the firmware or boot loader runs
/// (nested virtualisation, seen on the build machine), QEMU stops the guest, prints "KVM internal
/// error" and keeps running. So the probe reads QEMU's standard error as well.
pub fn choose_accel(runner: &Runner, config: &VmConfig) -> (Accel, String) {
    if std::fs::metadata("/dev/kvm").is_err() {
        return (Accel::Tcg, "no /dev/kvm: using TCG (software emulation)".into());
    }
    let probe_config = VmConfig {
        material: None,
        first_cd: None,
        disk: None,
        nics: Vec::new(),
        headless: true,
        // A USB stick is attached with snapshot=on: the probe writes nothing to the ISO.
        ..config.clone()
    };
    let qemu = match probe_config.command(runner, Accel::Kvm) {
        Ok(qemu) => qemu,
        Err(e) => return (Accel::Tcg, format!("no KVM probe ({e}): using TCG")),
    };
    let stderr = match tempfile::tempfile() {
        Ok(file) => file,
        Err(e) => return (Accel::Tcg, format!("no temporary file for the KVM probe ({e}): using TCG")),
    };
    let stderr_for_child = match stderr.try_clone() {
        Ok(file) => file,
        Err(e) => return (Accel::Tcg, format!("no temporary file for the KVM probe ({e}): using TCG")),
    };
    let probe = qemu.cmd.spawn_interactive(std::process::Stdio::from(stderr_for_child));
    let Ok(mut child) = probe else {
        return (Accel::Tcg, "cannot start qemu-system-x86_64 for the KVM probe: using TCG".into());
    };
    // Close the console's input; drain its output, so that a guest printing more than a pipe
    // holds is not stopped by a full pipe (and mistaken for one KVM runs).
    drop(child.stdin.take());
    if let Some(mut console) = child.stdout.take() {
        std::thread::spawn(move || std::io::copy(&mut console, &mut std::io::sink()));
    }
    let started = Instant::now();
    let verdict = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let said = read_all(&stderr);
            let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("nothing on stderr");
            break Some(format!("KVM is present but QEMU with KVM failed ({status}: {last}): using TCG"));
        }
        if kvm_failed(&read_all(&stderr)) {
            break Some(
                "KVM is present but cannot run this guest (\"KVM internal error\"): using TCG".into(),
            );
        }
        if started.elapsed() >= PROBE_TIME {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    match verdict {
        Some(why) => (Accel::Tcg, why),
        None => (Accel::Kvm, "using KVM".into()),
    }
}

/// How long the probe boots: under KVM the firmware and the boot loader have run by then. (On the
/// build machine QEMU reported the failure 3.3 s after it started, while SeaBIOS booted the CD.)
const PROBE_TIME: Duration = Duration::from_secs(8);

/// QEMU's report of a guest KVM could not run.
fn kvm_failed(qemu_stderr: &str) -> bool {
    qemu_stderr.contains("KVM internal error") || qemu_stderr.contains("emulation failure")
}

/// What QEMU wrote so far. Read at offset 0 without moving the offset QEMU writes at (the file
/// is shared with it), and as lossy text: one stray byte must not hide the report.
fn read_all(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = file.read_at(&mut chunk, bytes.len() as u64) {
        bytes.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_kvm_cannot_emulate_is_a_failure() {
        // As QEMU 7.2 printed it on the build machine (nested KVM, SeaBIOS booting the CD).
        let recorded = "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n\
                        KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\n";
        assert!(kvm_failed(recorded));
        assert!(!kvm_failed(
            "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n"
        ));
        assert!(!kvm_failed(""));
    }

    #[test]
    fn qemus_report_is_read_whole_behind_a_stray_byte_without_moving_its_offset() {
        use std::io::Write;
        let file = tempfile::tempfile().unwrap();
        let mut qemu_side = file.try_clone().unwrap();
        qemu_side.write_all(b"warning: \xff\xfe odd bytes\n").unwrap();
        assert!(!kvm_failed(&read_all(&file)));
        qemu_side.write_all(b"KVM internal error. Suberror: 1\n").unwrap();
        let text = read_all(&file);
        assert!(kvm_failed(&text), "{text}");
        assert!(text.starts_with("warning: "), "earlier output kept: {text}");
    }
}
