//! The default image booted under QEMU (TCG here): the four boot paths reach a root shell on
//! ttyS0 without a key press; the booted system is air-gapped, keeps nothing, runs the ceremony
//! tools and reads a material CD. Needs root, QEMU and OVMF, and builds the image if needed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use ceremony_os_vm::{Accel, Firmware, Medium, Nic, Vm, VmConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const PROMPT: &str = "root@ceremony:~#";

struct Image {
    _dir: tempfile::TempDir,
    iso: PathBuf,
    material: PathBuf,
    version: String,
}

/// The default image (built once, through the shared store) and a small material disc.
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = support::shared_image_store();
        let definition = support::image_copy(dir.path(), "image");
        let report = support::build_image(&store, &definition, &dir.path().join("out"), &[]);
        let folder = dir.path().join("material");
        std::fs::create_dir_all(folder.join("csr")).unwrap();
        std::fs::write(folder.join("csr/root.csr"), b"a certificate request\n").unwrap();
        std::fs::write(folder.join("step1.toml"), b"[key]\nlabel = \"root\"\n").unwrap();
        let material = dir.path().join("material.iso");
        support::ceremony_os(&store)
            .arg("material")
            .arg(&folder)
            .arg("--output")
            .arg(&material)
            .args(["--label", "MATERIAL", "--date", "2026-07-12T00:00:00Z", "--definition"])
            .arg(&definition)
            .assert()
            .success();
        let def = ceremony_os_definition::ImageDefinition::load(&definition).unwrap();
        Image {
            iso: PathBuf::from(report["iso"].as_str().unwrap()),
            material,
            version: def.image.version.to_string(),
            _dir: dir,
        }
    })
}

fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-logs")
}

/// Boot and wait for the autologin shell; nothing is typed before the prompt appears.
fn boot_to_shell(name: &str, config: &VmConfig) -> Vm {
    let mut vm = Vm::start(name, config, Accel::Tcg, &log_dir()).unwrap();
    vm.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    // The serial console must be a login on ttyS0, not just kernel output.
    let tty = vm.run("tty", COMMAND_TIMEOUT).unwrap();
    assert_eq!(tty.output.trim(), "/dev/ttyS0", "{tty:?}");
    vm
}

fn boot_path(name: &str, firmware: Firmware, medium: Medium) {
    let image = image();
    let config = VmConfig { firmware, medium, ..VmConfig::new(&image.iso) };
    let mut vm = boot_to_shell(name, &config);
    let release = vm.run("cat /etc/ceremony-os-release", COMMAND_TIMEOUT).unwrap();
    assert_eq!(release.status, 0);
    assert!(release.output.contains(&format!("VERSION={}", image.version)), "{release:?}");
    let efi = vm.run("test -d /sys/firmware/efi", COMMAND_TIMEOUT).unwrap();
    assert_eq!(efi.status == 0, firmware == Firmware::Uefi, "booted with the wrong firmware");
}

#[test]
fn bios_cd_boots_to_a_root_shell() {
    boot_path("bios-cd", Firmware::Bios, Medium::Cdrom);
}

#[test]
fn bios_usb_boots_to_a_root_shell() {
    boot_path("bios-usb", Firmware::Bios, Medium::UsbStick);
}

#[test]
fn uefi_cd_boots_to_a_root_shell() {
    boot_path("uefi-cd", Firmware::Uefi, Medium::Cdrom);
}

#[test]
fn uefi_usb_boots_to_a_root_shell() {
    boot_path("uefi-usb", Firmware::Uefi, Medium::UsbStick);
}

#[test]
fn booted_system_is_air_gapped_stateless_and_has_its_tools() {
    let image = image();
    let config = VmConfig {
        nics: vec![Nic::VirtioNet, Nic::E1000],
        material: Some(image.material.clone()),
        ..VmConfig::new(&image.iso)
    };
    let mut vm = boot_to_shell("airgap", &config);
    let mut run = |command: &str| {
        let result = vm.run(command, COMMAND_TIMEOUT).unwrap();
        (result.output, result.status)
    };

    // Two NICs are attached, yet the only interface is the loopback.
    let (pci, _) = run("cat /sys/bus/pci/devices/*/class");
    assert!(
        pci.lines().filter(|c| c.trim().starts_with("0x0200")).count() >= 2,
        "the NICs are on the bus: {pci}"
    );
    let (links, status) = run("ls /sys/class/net");
    assert_eq!((links.trim(), status), ("lo", 0));
    let (loaded, _) = run("cat /proc/modules");
    for module in ["e1000", "virtio_net", "bluetooth", "cfg80211", "mac80211"] {
        assert!(!loaded.lines().any(|l| l.starts_with(&format!("{module} "))), "{module} is loaded");
    }
    let (found, _) = run(
        "find /lib/modules -path '*/kernel/drivers/net/*' -o -path '*/kernel/net/*' -o -path '*/kernel/drivers/bluetooth/*' -o -path '*/kernel/sound/*' | wc -l",
    );
    assert_eq!(found.trim(), "0", "network, wireless, bluetooth or sound modules exist");

    // Nothing writable persists: / is an overlay over the squashfs, in memory; no block device rw.
    let (root, _) = run("findmnt -n -o FSTYPE /");
    assert_eq!(root.trim(), "overlay");
    let (lower, _) = run("findmnt -n -o FSTYPE -t squashfs | head -1");
    assert_eq!(lower.trim(), "squashfs");
    let (upper, _) = run("findmnt -n -o FSTYPE /run/live/overlay");
    assert_eq!(upper.trim(), "tmpfs");
    let (rw, _) = run("awk '$1 ~ \"^/dev/\" && $4 ~ \"(^|,)rw(,|$)\"' /proc/mounts");
    assert_eq!(rw.trim(), "", "block devices mounted read-write");

    // The ceremony tools and the HSM stack.
    let (version, status) = run("ceremony --version");
    assert_eq!(status, 0);
    assert!(version.contains(&image.version), "{version}");
    let (slots, status) = run("pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --list-slots");
    assert_eq!(status, 0, "{slots}");
    assert!(slots.contains("SoftHSM"), "{slots}");
    let (modules, _) = run("cat /etc/pkcs11/modules/*.module");
    assert!(modules.contains("libsofthsm2.so") && modules.contains("opensc-pkcs11.so"), "{modules}");

    // The material disc is readable and its checksums hold.
    let (_, status) = run("mkdir -p /media/material && mount -o ro LABEL=MATERIAL /media/material");
    assert_eq!(status, 0);
    let (check, status) = run("cd /media/material && sha256sum -c SHA256SUMS; cd /");
    assert_eq!(status, 0, "{check}");
    assert!(check.contains("csr/root.csr: OK"), "{check}");
}

#[test]
fn harness_reports_a_timeout_with_the_console_tail() {
    let image = image();
    let mut vm = Vm::start("timeout", &VmConfig::new(&image.iso), Accel::Tcg, &log_dir()).unwrap();
    let err = vm.wait_for("this never appears", Duration::from_secs(3)).unwrap_err().to_string();
    assert!(err.contains("timed out after 3 s"), "{err}");
    let saved = vm.save_log().unwrap();
    assert!(saved.starts_with(log_dir()) && saved.exists());
    drop(vm);
    let _ = Path::new(&saved);
}
