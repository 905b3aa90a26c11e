//! The default image booted under QEMU (TCG here): the four boot paths reach a root shell on
//! ttyS0 without a key press; the booted system is air-gapped, keeps nothing, runs the ceremony
//! tools and reads a material CD; and a whole ceremony runs in it, typed on the serial console
//! as the administrator would, exported to a stick that is checked outside. Needs root, QEMU
//! and OVMF, and builds the image if needed.

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
    /// The image definition (its locked toolchain writes material discs).
    definition: PathBuf,
    version: String,
    /// SHA-256 of the ISO's `/live/filesystem.squashfs`, extracted by the host's xorriso.
    root_sha256: String,
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
        let iso = PathBuf::from(report["iso"].as_str().unwrap());
        let root = dir.path().join("filesystem.squashfs");
        host(
            "xorriso",
            &["-osirrox", "on", "-indev", iso.to_str().unwrap(), "-extract", "/live/filesystem.squashfs"]
                .into_iter()
                .chain([root.to_str().unwrap()])
                .collect::<Vec<_>>(),
            dir.path(),
        );
        Image {
            root_sha256: sha256sum(&root),
            iso,
            material,
            version: def.image.version.to_string(),
            definition,
            _dir: dir,
        }
    })
}

/// SHA-256 of a file, as the host's sha256sum prints it.
fn sha256sum(path: &Path) -> String {
    let out = host("sha256sum", &[path.to_str().unwrap()], Path::new("/"));
    out.split_whitespace().next().unwrap().to_string()
}

fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-logs")
}

/// A running VM, and the right to run it: one VM at a time in this test binary (two TCG guests
/// on two cores slow each other past their timeouts). The VM stops before the slot is given up.
struct OneVm {
    vm: Vm,
    _slot: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for OneVm {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl std::ops::DerefMut for OneVm {
    fn deref_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

fn start_vm(name: &str, config: &VmConfig) -> OneVm {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
    OneVm { vm: Vm::start(name, config, Accel::Tcg, &log_dir()).unwrap(), _slot: slot }
}

/// Boot and wait for the autologin shell; nothing is typed before the prompt appears.
fn boot_to_shell(name: &str, config: &VmConfig) -> OneVm {
    let mut vm = start_vm(name, config);
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
    assert_eq!(efi.status == 0, firmware.is_uefi(), "booted with the wrong firmware");
    // The console names the root's device and digest before anything of it runs.
    // live-boot takes the stick's first partition: the hybrid ISO's data.
    let device = if medium == Medium::Cdrom { "/dev/sr0" } else { "/dev/sda1" };
    let announced = format!(
        "ceremony-os: root file system from {device}: SHA-256 {}, as this disc's initrd records",
        image.root_sha256
    );
    assert!(vm.text().contains(&announced), "{announced} is not on the console:\n{}", vm.text());
    // A normal boot prints no error, so that a real one stands out.
    let console = vm.text();
    let errors: Vec<&str> = console
        .lines()
        .take_while(|l| !l.contains(PROMPT))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("can't") || l.contains("failed") || l.contains("warning")
        })
        .collect();
    assert!(errors.is_empty(), "error lines on a normal boot: {errors:#?}");
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

/// OVMF with Microsoft's keys and Secure Boot enforced: the firmware accepts Debian's shim, shim
/// accepts GRUB and the kernel, and the kernel reports Secure Boot on (and locks itself down).
#[test]
fn uefi_cd_boots_with_secure_boot_enforced() {
    let image = image();
    let config = VmConfig { firmware: Firmware::UefiSecureBoot, ..VmConfig::new(&image.iso) };
    let mut vm = boot_to_shell("uefi-cd-secure-boot", &config);
    // The variable's data byte follows its four attribute bytes.
    let variable = vm
        .run(
            "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            COMMAND_TIMEOUT,
        )
        .unwrap();
    assert_eq!((variable.status, variable.output.split_whitespace().last()), (0, Some("1")), "{variable:?}");
    let kernel =
        vm.run("dmesg | grep -i 'secure boot'; cat /sys/kernel/security/lockdown", COMMAND_TIMEOUT).unwrap();
    assert!(kernel.output.contains("Secure boot enabled"), "{kernel:?}");
    // The variables are readable (above) but cannot be written: NVRAM would keep what a write
    // left there after power-off, for any later system on the laptop to read.
    let mounted = vm.run("grep efivarfs /proc/self/mounts", COMMAND_TIMEOUT).unwrap();
    assert!(mounted.output.contains(" ro,"), "{mounted:?}");
    let write = vm
        .run(
            "printf '\\007\\000\\000\\000ceremony' > /sys/firmware/efi/efivars/CeremonyTest-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            COMMAND_TIMEOUT,
        )
        .unwrap();
    assert_ne!(write.status, 0, "a UEFI variable was written: {write:?}");
    assert!(write.output.contains("Read-only file system"), "{write:?}");
    let check = vm.run("ceremony-os-airgap-check", COMMAND_TIMEOUT).unwrap();
    assert_eq!(check.status, 0, "{check:?}");
    assert!(
        kernel.output.contains("[integrity]") || kernel.output.contains("[confidentiality]"),
        "{kernel:?}"
    );
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
    // The root is the squashfs the initrd records, from the boot CD (not the material disc in the
    // second drive), checked as a copy in memory: the loop device's file is that copy.
    let (record, _) = run("cat /run/ceremony-os-root");
    let record: Vec<&str> = record.lines().map(str::trim).collect();
    assert!(
        record.contains(&"device=/dev/sr0")
            && record.contains(&format!("sha256={}", image.root_sha256).as_str()),
        "{record:?}"
    );
    let (backing, _) = run("losetup -n -O BACK-FILE");
    assert_eq!(backing.trim(), "/run/live/ceremony-os-root/live/filesystem.squashfs");
    let (copy, _) = run(
        "sha256sum /run/live/ceremony-os-root/live/filesystem.squashfs; findmnt -n -o OPTIONS /run/live/ceremony-os-root",
    );
    assert!(copy.starts_with(&image.root_sha256) && copy.contains("ro,"), "{copy}");
    let (rw, _) = run("awk '$1 ~ \"^/dev/\" && $4 ~ \"(^|,)rw(,|$)\"' /proc/mounts");
    assert_eq!(rw.trim(), "", "block devices mounted read-write");

    // The kernel is hardened on this boot path (BIOS, no Secure Boot): its command line, the
    // lockdown LSM in integrity mode, memory zeroed on alloc and free, and the sysctls applied.
    let (cmdline, _) = run("cat /proc/cmdline");
    for token in [
        "init_on_alloc=1",
        "init_on_free=1",
        "slab_nomerge",
        "randomize_kstack_offset=on",
        "iommu.strict=1",
        "lockdown=integrity",
        "vsyscall=none",
        "page_alloc.shuffle=1",
        "iommu.passthrough=0",
        "sysctl.kernel.sysrq=0",
        "sysctl.kernel.kexec_load_disabled=1",
    ] {
        assert!(cmdline.split_whitespace().any(|t| t == token), "{token} not in {cmdline}");
    }
    let (lockdown, _) = run("cat /sys/kernel/security/lockdown");
    assert!(lockdown.contains("[integrity]"), "lockdown: {lockdown}");
    let (auto_init, _) = run("dmesg | grep -c 'heap alloc:on, heap free:on'");
    assert_eq!(auto_init.trim(), "1", "the kernel did not say it zeroes memory on alloc and free");
    let (sysctl, _) = run("systemctl show -p Result --value systemd-sysctl.service");
    assert_eq!(sysctl.trim(), "success");
    let (values, _) = run(
        "cd /proc/sys && cat kernel/sysrq kernel/kexec_load_disabled kernel/yama/ptrace_scope kernel/kptr_restrict kernel/dmesg_restrict kernel/unprivileged_bpf_disabled net/core/bpf_jit_harden kernel/perf_event_paranoid fs/protected_fifos fs/protected_regular | tr '\\n' ' '; cd /",
    );
    assert_eq!(
        values.trim(),
        "0 1 2 2 1 1 2 3 2 2",
        "sysrq kexec ptrace kptr dmesg bpf jit perf fifos regular"
    );

    // Nothing runs on a schedule, no pstore back end exists, and the units that write outside
    // the overlay are masked.
    let (timers, status) = run("systemctl list-timers --no-legend --no-pager");
    assert_eq!((timers.trim(), status), ("", 0), "timers are active");
    let (masked, _) = run(
        "systemctl is-enabled systemd-pstore.service e2scrub_reap.service remote-fs.target apt-daily.timer fstrim.timer",
    );
    assert!(masked.lines().all(|l| l.trim() == "masked") && masked.lines().count() == 5, "{masked}");
    let (pstore, _) = run("ls -A /sys/fs/pstore; grep -c pstore /proc/modules");
    assert_eq!(pstore.trim(), "0", "pstore records or modules: {pstore}");
    // No module of a channel out: USB gadget, modem, hypervisor, BMC, pstore back ends.
    let (left, _) = run(
        "find /lib/modules -name '*.ko*' | sed 's|.*/||; s|\\.ko.*||' | grep -xE 'g_ether|u_ether|usb_f_.*|pch_udc|net2280|dummy_hcd|option|qcserial|sierra|usb_wwan|cdc-wdm|cdc-acm|mhi.*|vmw_vmci|hv_vmbus|hv_utils|vboxsf|vboxguest|virtio_console|ipmi_.*|efi-pstore|ramoops|pstore_blk|pstore_zone|mtdoops'",
    );
    assert_eq!(left.trim(), "", "modules that should be gone");
    let (networkd, _) =
        run("ls /usr/lib/systemd/systemd-networkd /usr/bin/networkctl 2>&1 | grep -c 'No such file'");
    assert_eq!(networkd.trim(), "2");

    // The air-gap check ran at boot and passes here; on a device it does not expect, it warns.
    let (state, _) = run("systemctl show -p Result --value ceremony-os-airgap-check.service");
    assert_eq!(state.trim(), "success");
    let (check, status) = run("ceremony-os-airgap-check");
    assert_eq!(status, 0, "{check}");
    assert!(check.contains("air gap check: no network interface but lo"), "{check}");
    let (warning, status) = run(
        "mkdir -p /tmp/sys/class/net/lo /tmp/sys/class/net/wwan0 /tmp/sys/class/udc/dummy_udc.0 && ceremony-os-airgap-check /tmp/sys",
    );
    assert_eq!(status, 1, "{warning}");
    assert!(
        warning.contains("AIR GAP WARNING")
            && warning.contains("network interface: wwan0")
            && warning.contains("udc device: dummy_udc.0")
            && !warning.contains("interface: lo"),
        "{warning}"
    );
    // Writable UEFI variables are a way out too (they persist in the firmware's NVRAM).
    let (warning, status) = run(
        "printf 'efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec 0 0\\n' > /tmp/mounts && mkdir -p /tmp/sys0 && ceremony-os-airgap-check /tmp/sys0 /tmp/mounts",
    );
    assert_eq!(status, 1, "{warning}");
    assert!(warning.contains("writable firmware state: UEFI variables"), "{warning}");

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

/// A crafted `/live/` on a USB stick or in a drive that enumerates first (live-boot takes the
/// first medium holding `/live/*.squashfs`, removable devices first): the initrd refuses it on
/// the console and stops, rather than stacking the extra image or taking another root.
#[test]
fn a_crafted_stick_or_second_disc_cannot_replace_the_root() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("evil/etc")).unwrap();
    std::fs::write(dir.path().join("evil/etc/motd"), b"not the witnessed system\n").unwrap();
    host("mksquashfs", &["evil", "evil.squashfs", "-noappend", "-quiet"], dir.path());
    let evil_sha256 = sha256sum(&dir.path().join("evil.squashfs"));
    // The boot disc's tree with one change each, not bootable: the disc's own root plus an extra
    // image stacked over it, or the root replaced.
    std::fs::write(
        dir.path().join("grub.cfg"),
        "set timeout=0\nmenuentry CRAFTED {\n  linux /live/vmlinuz boot=live console=ttyS0,115200n8\n  initrd /live/initrd.img\n}\n",
    )
    .unwrap();
    let crafted = |name: &str, target: &str| {
        let iso = dir.path().join(name);
        host(
            "xorriso",
            &[
                "-return_with",
                "FAILURE",
                "32",
                "-indev",
                image.iso.to_str().unwrap(),
                "-outdev",
                iso.to_str().unwrap(),
                "-boot_image",
                "any",
                "discard",
                "-map",
                "evil.squashfs",
                target,
                // Its own GRUB menu, which a loader that searches devices for the disc could take.
                "-map",
                "grub.cfg",
                "/boot/grub/grub.cfg",
                "-commit",
            ],
            dir.path(),
        );
        iso
    };
    let extra = crafted("extra.iso", "/live/zz-evil.squashfs");
    let swapped = crafted("swapped.iso", "/live/filesystem.squashfs");
    let refused = |name: &str, config: &VmConfig, device: &str, reason: &str| {
        let mut vm = start_vm(name, config);
        vm.wait_for("The boot stops here.", BOOT_TIMEOUT).unwrap();
        let text = vm.text();
        // The device or its partition (a crafted ISO keeps the hybrid partition table).
        let line = text.lines().find(|l| l.contains("REFUSED the root file system on ")).unwrap_or_default();
        assert!(line.contains(&format!(" on {device}")) && line.contains(reason), "{line}\n{text}");
        assert!(
            text.contains(&format!("this disc's root file system has SHA-256 {}", image.root_sha256)),
            "{text}"
        );
        assert!(!text.contains(PROMPT) && !text.contains("not the witnessed system"), "{text}");
        assert!(!text.contains("CRAFTED"), "the crafted disc's menu ran: {text}");
        if config.firmware.is_uefi() {
            assert!(text.contains("Booting `ceremony-os"), "{text}");
        }
    };
    let extra_reason = "/live/zz-evil.squashfs is not on this disc";
    let swapped_reason = format!("its /live/filesystem.squashfs has SHA-256 {evil_sha256}, not this disc's");
    refused(
        "uefi-cd-crafted-stick",
        &VmConfig { firmware: Firmware::Uefi, disk: Some(extra.clone()), ..VmConfig::new(&image.iso) },
        "/dev/sda",
        extra_reason,
    );
    refused(
        "bios-cd-crafted-stick",
        &VmConfig { disk: Some(swapped), ..VmConfig::new(&image.iso) },
        "/dev/sda",
        &swapped_reason,
    );
    refused(
        "bios-cd-crafted-first-drive",
        &VmConfig { first_cd: Some(extra), ..VmConfig::new(&image.iso) },
        "/dev/sr0",
        extra_reason,
    );
}

#[test]
fn harness_reports_a_timeout_with_the_console_tail() {
    let image = image();
    let mut vm = start_vm("timeout", &VmConfig::new(&image.iso));
    let err = vm.wait_for("this never appears", Duration::from_secs(3)).unwrap_err().to_string();
    assert!(err.contains("timed out after 3 s"), "{err}");
    let saved = vm.save_log().unwrap();
    assert!(saved.starts_with(log_dir()) && saved.exists());
    drop(vm);
    let _ = Path::new(&saved);
}

fn host(program: &str, args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(program).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?}:\n{text}");
    text
}

/// The `ceremony` tool built for the host beside `ceremony-os` (`cargo test --workspace` builds
/// it), to check the stick as a relying party would.
fn host_ceremony() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ceremony-os")).with_file_name("ceremony");
    assert!(
        path.exists(),
        "{} is missing: run the suite with `make test` (or cargo build -p ceremony-tools)",
        path.display()
    );
    path
}

#[test]
fn a_ceremony_runs_in_the_booted_image_and_its_stick_checks_outside() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    // The material disc: the plan folder of docs/ceremony-day.md, and a copy of it whose CSR was swapped.
    let prepared = dir.path().join("prepared");
    std::fs::create_dir(&prepared).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(ceremony_os_test_support::example("ceremony-day-material"))
        .current_dir(&prepared)
        .output()
        .unwrap();
    assert!(out.status.success(), "the ceremony day's plan: {}", String::from_utf8_lossy(&out.stderr));
    let folder = dir.path().join("disc");
    std::fs::create_dir(&folder).unwrap();
    host("cp", &["-r", "prepared/material", "disc/ceremony"], dir.path());
    host("cp", &["-r", "prepared/material", "disc/swapped"], dir.path());
    host(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-subj",
            "/C=CH/O=Example Bank/CN=Example Issuing CA 2026",
            "-out",
            "disc/swapped/issuing.csr",
        ],
        dir.path(),
    );
    let material = dir.path().join("material.iso");
    support::ceremony_os(&support::shared_image_store())
        .arg("material")
        .arg(&folder)
        .arg("--output")
        .arg(&material)
        .args(["--label", "MATERIAL", "--date", "2026-11-30T00:00:00Z", "--definition"])
        .arg(&image.definition)
        .assert()
        .success();
    let stick = dir.path().join("stick.img");
    std::fs::File::create(&stick).unwrap().set_len(64 << 20).unwrap();

    let config = VmConfig {
        firmware: Firmware::Uefi,
        material: Some(material),
        disk: Some(stick.clone()),
        ..VmConfig::new(&image.iso)
    };
    let mut vm = boot_to_shell("ceremony", &config);
    let run = |vm: &mut Vm, command: &str| {
        let result = vm.run(command, COMMAND_TIMEOUT).unwrap();
        (result.output, result.status)
    };
    let (links, _) = run(&mut vm, "ls /sys/class/net");
    assert_eq!(links.trim(), "lo", "the laptop has a network");
    // The rehearsal's HSM: a SoftHSM token in RAM.
    let (out, status) = run(
        &mut vm,
        "softhsm2-util --init-token --free --label root-ca --so-pin 5678 --pin 123456 > /dev/null",
    );
    assert_eq!(status, 0, "{out}");
    let (out, status) =
        run(&mut vm, "mkdir -p /media/material && mount -o ro LABEL=MATERIAL /media/material");
    assert_eq!(status, 0, "{out}");
    let (out, status) = run(&mut vm, "ceremony plan check /media/material/ceremony/plan.toml");
    assert_eq!(status, 0, "{out}");

    // The swapped CSR stops the plan before the HSM is used: no PIN asked, nothing on the token.
    let (out, status) = run(
        &mut vm,
        "mkdir /root/swapped && (cd /root/swapped && ceremony plan run /media/material/swapped/plan.toml)",
    );
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("issuing.csr has SHA-256") && out.contains("not the reviewed file"), "{out}");
    assert!(!out.contains("PIN for token"), "{out}");
    let (objects, status) = run(
        &mut vm,
        "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label root-ca --login --pin 123456 --list-objects",
    );
    assert_eq!(status, 0, "{objects}");
    assert!(!objects.contains("Object"), "the swapped run touched the token: {objects}");

    // The real plan, typed as the administrator would: "yes" to the plan's digest, the PIN at its
    // prompt, "yes" at the checkpoint.
    vm.send_line(
        "mkdir /root/ceremony && cd /root/ceremony && ceremony plan run /media/material/ceremony/plan.toml",
    )
    .unwrap();
    vm.wait_for("the plan's digest matches the script? Type yes to go on: ", COMMAND_TIMEOUT).unwrap();
    vm.send_line("yes").unwrap();
    vm.wait_for("PIN for token \"root-ca\": ", COMMAND_TIMEOUT).unwrap();
    vm.send_line("123456").unwrap();
    vm.wait_for("Type yes to go on: ", COMMAND_TIMEOUT).unwrap();
    vm.send_line("yes").unwrap();
    let console = vm.wait_for("all 6 steps of the plan are done", COMMAND_TIMEOUT).unwrap();
    vm.wait_for("root@ceremony:~/ceremony#", COMMAND_TIMEOUT).unwrap();
    let head = console
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("  sha256 "))
        .next_back()
        .expect("the console shows the transcript head")
        .to_string();
    assert!(!console.contains("123456"), "the PIN was echoed: {console}");

    let (out, status) = run(
        &mut vm,
        "ceremony export --device \"$(lsblk -dnpo PATH,TRAN | awk '$2 == \"usb\" {print $1}')\"",
    );
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("MATCH"), "{out}");
    vm.send_line("poweroff").unwrap();
    vm.wait_for("reboot: Power down", COMMAND_TIMEOUT).unwrap();
    drop(vm);

    // Outside: the stick as a FAT file system, its sums, the chain, the CRL and the transcript
    // against the head the console showed.
    host("fsck.fat", &["-n", "stick.img"], dir.path());
    std::fs::create_dir(dir.path().join("checked")).unwrap();
    host("mcopy", &["-s", "-n", "-i", "stick.img", "::*", "checked/"], dir.path());
    let checked = dir.path().join("checked");
    let sums = host("sha256sum", &["-c", "SHA256SUMS"], &checked);
    for file in [
        "root-2026.pub.pem",
        "root-2026.pem",
        "issuing.pem",
        "root-2026.crl.pem",
        "ceremony-transcript.jsonl",
    ] {
        assert!(sums.contains(&format!("{file}: OK")), "{sums}");
    }
    host(
        "openssl",
        &["verify", "-attime", "1796083200", "-CAfile", "root-2026.pem", "issuing.pem"],
        &checked,
    );
    host(
        "openssl",
        &[
            "verify",
            "-attime",
            "1796169600",
            "-crl_check",
            "-CRLfile",
            "root-2026.crl.pem",
            "-CAfile",
            "root-2026.pem",
            "issuing.pem",
        ],
        &checked,
    );
    let verified = host(
        host_ceremony().to_str().unwrap(),
        &["transcript", "verify", "--transcript", "ceremony-transcript.jsonl", "--head", &head],
        &checked,
    );
    assert!(verified.contains("6 records, chain intact"), "{verified}");
    // The chain, recomputed with sha256sum: the head is the digest of the last line.
    let last = std::fs::read_to_string(checked.join("ceremony-transcript.jsonl"))
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    std::fs::write(dir.path().join("last.jsonl"), &last).unwrap();
    let digest = host("sha256sum", &["last.jsonl"], dir.path());
    assert!(digest.starts_with(&head), "the head {head} is not the digest of the last record: {digest}");
}
