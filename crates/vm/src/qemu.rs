//! The QEMU command line for a ceremony laptop: no network unless a test asks for NICs, the ISO
//! as a CD-ROM (or as a USB stick), optional material CD and output stick, serial console on
//! standard input/output, BIOS (SeaBIOS) or UEFI (OVMF).

use crate::VmError;
use crate::accel::Accel;
use ceremony_os_runner::{Cmd, Runner};
use std::path::{Path, PathBuf};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built with Secure Boot (needs SMM), and a variable store with Microsoft's keys enrolled
/// and Secure Boot on: what a laptop bought off the shelf has.
pub const OVMF_CODE_SECURE_BOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
pub const OVMF_VARS_SECURE_BOOT: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    /// OVMF without Secure Boot.
    Uefi,
    /// OVMF with Secure Boot enforced and Microsoft's keys enrolled.
    UefiSecureBoot,
}

impl Firmware {
    pub fn is_uefi(self) -> bool {
        self != Firmware::Bios
    }

    /// The firmware code and the variable store a VM gets a writable copy of (UEFI only).
    pub fn ovmf(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some((OVMF_CODE, OVMF_VARS)),
            Firmware::UefiSecureBoot => Some((OVMF_CODE_SECURE_BOOT, OVMF_VARS_SECURE_BOOT)),
        }
    }

    /// A private, writable copy of the variable store for one VM (None for BIOS); deleted when
    /// dropped, so no VM sees what another wrote into its variables.
    pub fn vars_copy(self) -> Result<Option<tempfile::NamedTempFile>, VmError> {
        let Some((_, template)) = self.ovmf() else { return Ok(None) };
        let vars =
            tempfile::NamedTempFile::new().map_err(|e| VmError::Io { path: "/tmp".into(), source: e })?;
        std::fs::copy(template, vars.path()).map_err(|e| {
            VmError::Missing(format!(
                "UEFI needs OVMF's variable store {template} ({e}): install the ovmf package"
            ))
        })?;
        Ok(Some(vars))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Cdrom,
    UsbStick,
}

/// Network cards a test attaches to prove the image has no driver for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    VirtioNet,
    E1000,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub iso: PathBuf,
    pub firmware: Firmware,
    pub medium: Medium,
    pub material: Option<PathBuf>,
    /// Another disc in the first optical drive, enumerated before the boot CD (which moves to
    /// the second drive): a second drive holding a crafted disc. Not with `material` or a USB boot.
    pub first_cd: Option<PathBuf>,
    /// A writable disk image attached as a removable USB stick (an output stick, or an
    /// attacker's).
    pub disk: Option<PathBuf>,
    pub memory_mib: u32,
    pub nics: Vec<Nic>,
    /// No window: the serial console is the only console.
    pub headless: bool,
}

impl VmConfig {
    pub fn new(iso: &Path) -> Self {
        VmConfig {
            iso: iso.to_path_buf(),
            firmware: Firmware::Bios,
            medium: Medium::Cdrom,
            material: None,
            first_cd: None,
            disk: None,
            memory_mib: 2048,
            nics: Vec::new(),
            headless: true,
        }
    }

    /// QEMU's arguments (without the program). `uefi_vars` is the writable OVMF variable store
    /// copy, required for UEFI.
    pub fn args(&self, accel: Accel, uefi_vars: Option<&Path>) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let machine = match self.firmware {
            Firmware::Bios => "pc",
            Firmware::Uefi => "q35",
            // OVMF's Secure Boot build keeps its variables in SMM-protected flash.
            Firmware::UefiSecureBoot => "q35,smm=on",
        };
        push(&["-machine", machine, "-accel", &accel.qemu_arg(), "-m", &self.memory_mib.to_string()]);
        push(&["-smp", "2", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"]);
        // A display adapter, as a laptop has (without one, UEFI GRUB finds no video mode and
        // says so); headless only means no window.
        push(&["-vga", "std"]);
        if self.headless {
            push(&["-display", "none"]);
        }
        if let Some((code, _)) = self.firmware.ovmf() {
            if self.firmware == Firmware::UefiSecureBoot {
                push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
            let code = option_value(Path::new(code));
            push(&["-drive", &format!("if=pflash,format=raw,readonly=on,file={code}")]);
            let vars = option_value(uefi_vars.expect("UEFI needs a variable store"));
            push(&["-drive", &format!("if=pflash,format=raw,file={vars}")]);
        }
        let iso = option_value(&self.iso);
        let needs_usb = self.medium == Medium::UsbStick || self.disk.is_some();
        if needs_usb {
            push(&["-device", "qemu-xhci,id=xhci"]);
        }
        match self.medium {
            Medium::Cdrom => {
                push(&["-drive", &format!("if=none,id=os,media=cdrom,readonly=on,format=raw,file={iso}")]);
                // Explicit buses: q35's AHCI takes one device per bus, the PC's IDE two.
                let bus = if self.first_cd.is_some() { "ide.1" } else { "ide.0" };
                push(&["-device", &format!("ide-cd,drive=os,bus={bus},bootindex=0")]);
            }
            Medium::UsbStick => {
                // snapshot=on: the guest may write to the stick, the ISO file never changes.
                push(&["-drive", &format!("if=none,id=os,format=raw,snapshot=on,file={iso}")]);
                push(&["-device", "usb-storage,bus=xhci.0,drive=os,bootindex=0"]);
            }
        }
        if let Some(first) = &self.first_cd {
            let f = option_value(first);
            push(&["-drive", &format!("if=none,id=first,media=cdrom,readonly=on,format=raw,file={f}")]);
            push(&["-device", "ide-cd,drive=first,bus=ide.0"]);
        }
        if let Some(material) = &self.material {
            let m = option_value(material);
            push(&["-drive", &format!("if=none,id=material,media=cdrom,readonly=on,format=raw,file={m}")]);
            push(&["-device", "ide-cd,drive=material,bus=ide.1"]);
        }
        if let Some(disk) = &self.disk {
            let d = option_value(disk);
            push(&["-drive", &format!("if=none,id=output,format=raw,file={d}")]);
            // Sticks say they are removable, as live-boot's search (removable devices first) sees.
            push(&["-device", "usb-storage,bus=xhci.0,drive=output,removable=on"]);
        }
        if self.nics.is_empty() {
            push(&["-nic", "none"]);
        }
        for (i, nic) in self.nics.iter().enumerate() {
            let model = match nic {
                Nic::VirtioNet => "virtio-net-pci",
                Nic::E1000 => "e1000",
            };
            push(&["-netdev", &format!("user,id=net{i},restrict=on")]);
            push(&["-device", &format!("{model},netdev=net{i}")]);
        }
        a
    }
}

/// QEMU ready to run for one VM: the command, and the VM's private UEFI variable store, which
/// lives as long as this value (keep it until QEMU has exited).
#[derive(Debug)]
pub struct QemuCommand {
    pub cmd: Cmd,
    pub uefi_vars: Option<tempfile::NamedTempFile>,
}

impl VmConfig {
    /// The one way a VM is started (`ceremony-os boot`, its KVM probe, the test harness): QEMU runs
    /// in `/` with the runner's scrubbed environment, so every file must be named by an absolute
    /// path; a relative one is refused here rather than opened against `/`.
    pub fn command(&self, runner: &Runner, accel: Accel) -> Result<QemuCommand, VmError> {
        if self.first_cd.is_some() && (self.material.is_some() || self.medium != Medium::Cdrom) {
            return Err(VmError::Missing(
                "a first CD goes before a boot CD, with no material disc (one drive each)".into(),
            ));
        }
        for path in [Some(&self.iso), self.material.as_ref(), self.first_cd.as_ref(), self.disk.as_ref()]
            .into_iter()
            .flatten()
        {
            if !path.is_absolute() {
                return Err(VmError::Missing(format!(
                    "{}: QEMU runs in /, so the file must be named by an absolute path",
                    path.display()
                )));
            }
        }
        let uefi_vars = self.firmware.vars_copy()?;
        let cmd = runner
            .cmd("qemu-system-x86_64", "/")
            .args(self.args(accel, uefi_vars.as_ref().map(|v| v.path())));
        Ok(QemuCommand { cmd, uefi_vars })
    }
}

/// A path as the value of a QEMU option: a comma ends the value unless doubled, so a file named
/// `x.iso,snapshot=off` would otherwise add an option of its own (and make a read-only ISO
/// writable). Paths that are not UTF-8 are refused before this (see `ceremony-os boot`).
fn option_value(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_in_a_file_name_cannot_add_an_option() {
        let mut c = VmConfig::new(Path::new("/x/os.iso,snapshot=off"));
        c.medium = Medium::UsbStick;
        c.material = Some("/x/m,readonly=off.iso".into());
        c.disk = Some("/x/out,,.img".into());
        let args = c.args(Accel::Tcg, None);
        assert!(
            args.contains(&"if=none,id=os,format=raw,snapshot=on,file=/x/os.iso,,snapshot=off".to_string()),
            "{args:?}"
        );
        assert!(args.iter().any(|a| a.ends_with("file=/x/m,,readonly=off.iso")), "{args:?}");
        assert!(args.iter().any(|a| a.ends_with("file=/x/out,,,,.img")), "{args:?}");
    }

    #[test]
    fn a_relative_file_name_is_refused_before_qemu_runs_in_root() {
        let runner = Runner::new(0);
        let err =
            VmConfig::new(Path::new("out/os.iso")).command(&runner, Accel::Tcg).err().unwrap().to_string();
        assert!(err.contains("out/os.iso: QEMU runs in /"), "{err}");
        let mut c = VmConfig::new(Path::new("/x/os.iso"));
        c.disk = Some("stick.img".into());
        assert!(c.command(&runner, Accel::Tcg).is_err());
        assert!(VmConfig::new(Path::new("/x/os.iso")).command(&runner, Accel::Tcg).is_ok());
    }

    #[test]
    fn a_first_cd_takes_the_first_drive_and_the_boot_cd_keeps_the_boot_index() {
        let mut c = VmConfig::new(Path::new("/x/os.iso"));
        c.first_cd = Some("/x/crafted.iso".into());
        let args = joined(&c, Accel::Tcg);
        assert!(args.contains("ide-cd,drive=os,bus=ide.1,bootindex=0"), "{args}");
        assert!(args.contains("ide-cd,drive=first,bus=ide.0 "), "{args}");
        c.material = Some("/x/m.iso".into());
        assert!(c.command(&Runner::new(0), Accel::Tcg).is_err(), "two discs on one drive");
    }

    fn joined(c: &VmConfig, accel: Accel) -> String {
        c.args(accel, Some(Path::new("/tmp/vars.fd"))).join(" ")
    }

    #[test]
    fn default_is_an_offline_bios_cd() {
        let c = VmConfig::new(Path::new("/x/os.iso"));
        let args = joined(&c, Accel::Tcg);
        assert!(args.contains("-machine pc -accel tcg,tb-size=128 -m 2048"), "{args}");
        assert!(args.contains("-nic none"), "{args}");
        assert!(args.contains("media=cdrom,readonly=on,format=raw,file=/x/os.iso"));
        assert!(args.contains("-serial stdio"));
        assert!(!args.contains("pflash"));
        assert!(!args.contains("netdev"));
    }

    #[test]
    fn uefi_usb_with_material_disk_and_nics() {
        let mut c = VmConfig::new(Path::new("/x/os.iso"));
        c.firmware = Firmware::Uefi;
        c.medium = Medium::UsbStick;
        c.material = Some("/x/material.iso".into());
        c.disk = Some("/x/out.img".into());
        c.nics = vec![Nic::VirtioNet, Nic::E1000];
        let args = joined(&c, Accel::Kvm);
        assert!(args.contains("-machine q35 -accel kvm -m"), "{args}");
        assert!(args.contains(&format!("readonly=on,file={OVMF_CODE}")));
        assert!(args.contains("file=/tmp/vars.fd"));
        assert!(args.contains("snapshot=on,file=/x/os.iso"));
        assert!(args.contains("usb-storage,bus=xhci.0,drive=os,bootindex=0"));
        assert!(args.contains("file=/x/material.iso"));
        assert!(args.contains("usb-storage,bus=xhci.0,drive=output"));
        assert!(args.contains("virtio-net-pci,netdev=net0") && args.contains("e1000,netdev=net1"));
        assert!(!args.contains("-nic none"));
    }

    #[test]
    fn secure_boot_uses_smm_the_secure_flash_and_microsofts_keys() {
        let mut c = VmConfig::new(Path::new("/x/os.iso"));
        c.firmware = Firmware::UefiSecureBoot;
        c.material = Some("/x/material.iso".into());
        let args = joined(&c, Accel::Tcg);
        assert!(args.contains("-machine q35,smm=on -accel tcg,tb-size=128"), "{args}");
        assert!(args.contains("-global driver=cfi.pflash01,property=secure,value=on"));
        assert!(args.contains(&format!("readonly=on,file={OVMF_CODE_SECURE_BOOT}")));
        // One CD per bus: q35's AHCI takes one device per bus.
        assert!(args.contains("drive=os,bus=ide.0") && args.contains("drive=material,bus=ide.1"));
        assert_eq!(Firmware::UefiSecureBoot.ovmf(), Some((OVMF_CODE_SECURE_BOOT, OVMF_VARS_SECURE_BOOT)));
        assert!(!joined(&VmConfig::new(Path::new("/x/os.iso")), Accel::Tcg).contains("secure"));
    }
}
