//! `material`, `burn` and `checksum` end to end: the locked toolchain's xorriso writes the
//! material disc; burning goes to file-backed targets (directly and through xorriso's stdio:).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use predicates::str::contains;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One store for the whole file (the toolchain is fetched once).
fn store() -> &'static Path {
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    STORE.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The default definition, with a lock whose inputs can be fetched today.
fn definition() -> &'static Path {
    static DEFINITION: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEFINITION
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let definition = support::image_copy(dir.path(), "image");
            (dir, definition)
        })
        .1
}

fn write_file(path: &Path, bytes: &[u8], mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
}

/// The same content, created in a different order and with different mtimes each time.
fn material_folder(dir: &Path, reverse: bool, mtime: i64) {
    let mut files: Vec<(&str, &[u8])> = vec![
        ("step1-keygen.toml", b"[key]\nlabel = \"root-2026\"\n"),
        ("csr/intermediate.csr", b"-----BEGIN CERTIFICATE REQUEST-----\n"),
        ("scripts/check.sh", b"#!/bin/sh\necho ok\n"),
        ("README", b"material for the 2026 ceremony\n"),
    ];
    if reverse {
        files.reverse();
    }
    for (i, (name, bytes)) in files.iter().enumerate() {
        write_file(&dir.join(name), bytes, mtime + i as i64 * 1000);
    }
    std::fs::set_permissions(dir.join("scripts/check.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

fn make_material(folder: &Path, output: &Path, umask: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &format!("umask {umask} && exec \"$@\""), "sh"])
        .arg(env!("CARGO_BIN_EXE_ceremony-os"))
        .arg("material")
        .arg(folder)
        .arg("--output")
        .arg(output)
        .arg("--definition")
        .arg(definition())
        .args(extra)
        .env("CEREMONY_OS_STORE", store())
        .env_remove("SOURCE_DATE_EPOCH");
    cmd.output().unwrap()
}

fn xorriso_extract(iso: &Path, dest: &Path) {
    let status = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(dest)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn material_disc_is_reproducible_and_carries_its_sums() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    material_folder(&a, false, 1_600_000_000);
    material_folder(&b, true, 1_700_000_000);
    let (iso_a, iso_b, iso_c) =
        (dir.path().join("a.iso"), dir.path().join("b.iso"), dir.path().join("c.iso"));
    let out = make_material(&a, &iso_a, "022", &["--date", "2026-07-12T00:00:00Z", "--label", "ksk_2026"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("words"), "the digest is printed as PGP words: {stderr}");
    let out = make_material(&b, &iso_b, "077", &["--date", "2026-07-12T00:00:00Z", "--label", "ksk_2026"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&iso_a).unwrap() == std::fs::read(&iso_b).unwrap(), "same folder, different bytes");
    // The check can fail: another date gives another disc.
    let out = make_material(&a, &iso_c, "022", &["--date", "2026-07-13T00:00:00Z", "--label", "ksk_2026"]);
    assert!(out.status.success());
    assert!(std::fs::read(&iso_a).unwrap() != std::fs::read(&iso_c).unwrap());

    // What is on the disc: the tree, and a SHA256SUMS that matches the files.
    let extracted = dir.path().join("extracted");
    xorriso_extract(&iso_a, &extracted);
    let sums = std::fs::read_to_string(extracted.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    assert_eq!(listed, ["README", "csr/intermediate.csr", "scripts/check.sh", "step1-keygen.toml"]);
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        assert_eq!(support::sha256_hex(&std::fs::read(extracted.join(name)).unwrap()), digest, "{name}");
        assert_eq!(std::fs::read(extracted.join(name)).unwrap(), std::fs::read(a.join(name)).unwrap());
    }
    let mode = std::fs::metadata(extracted.join("scripts/check.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "executables stay executable (Rock Ridge)");
    let toc = std::process::Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso_a)
        .args(["-pvd_info"])
        .output()
        .unwrap();
    let toc = String::from_utf8_lossy(&toc.stdout).to_string() + &String::from_utf8_lossy(&toc.stderr);
    assert!(toc.contains("KSK_2026"), "volume id: {toc}");
    assert!(ceremony_os_verify::iso9660::has_joliet(&iso_a).unwrap(), "a Joliet tree is present");
    assert!(toc.contains("Publisher Id : CEREMONY-OS"), "{toc}");
}

#[test]
fn material_refuses_special_files_symlinks_bad_names_and_bad_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m");
    material_folder(&folder, false, 1_600_000_000);
    let date = ["--date", "2026-07-12T00:00:00Z"];
    let refused = |output: &Path, expected: &[&str]| {
        let out = make_material(&folder, output, "022", &date);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for e in expected {
            assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
        }
    };
    // A chain of two relative links, each harmless-looking: a/b/up -> ../.., a/b/x -> up/../../../etc/passwd.
    std::fs::create_dir_all(folder.join("a/b")).unwrap();
    std::os::unix::fs::symlink("../..", folder.join("a/b/up")).unwrap();
    std::os::unix::fs::symlink("up/../../../etc/passwd", folder.join("a/b/x")).unwrap();
    refused(&dir.path().join("x.iso"), &["a/b/up", "is a symlink"]);
    std::fs::remove_dir_all(folder.join("a")).unwrap();

    // A name with a newline would forge a SHA256SUMS line; invalid UTF-8 cannot be carried.
    let forged = folder.join("x\nd41d8cd98f00b204e9800998ecf8427e00000000000000000000000000000000  README");
    std::fs::write(&forged, b"x").unwrap();
    refused(&dir.path().join("x.iso"), &["control character"]);
    std::fs::remove_file(&forged).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let latin1 = folder.join(std::ffi::OsStr::from_bytes(b"caf\xe9.toml"));
    std::fs::write(&latin1, b"x").unwrap();
    refused(&dir.path().join("x.iso"), &["not valid UTF-8"]);
    std::fs::remove_file(&latin1).unwrap();

    // -o naming a device node, or a file inside the folder itself.
    let node = dir.path().join("node");
    let status = std::process::Command::new("mknod").arg(&node).args(["c", "1", "3"]).status().unwrap();
    assert!(status.success());
    refused(&node, &["is not a regular file"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&node).unwrap().file_type().is_char_device(),
        "the device node was replaced"
    );
    refused(&folder.join("scripts/disc.iso"), &["is inside the folder"]);
    assert!(!folder.join("scripts/disc.iso").exists());

    let status = std::process::Command::new("mkfifo").arg(folder.join("pipe")).status().unwrap();
    assert!(status.success());
    let out = make_material(&folder, &dir.path().join("x.iso"), "022", &["--date", "2026-07-12T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipe") && stderr.contains("FIFO"), "{stderr}");
    assert!(!dir.path().join("x.iso").exists(), "nothing written on refusal");
}

/// A small real ISO to burn, and a target "device" twice its size, full of 0xAA.
fn iso_and_target(dir: &Path) -> (PathBuf, PathBuf, String) {
    let folder = dir.join("m");
    material_folder(&folder, false, 1_600_000_000);
    let iso = dir.join("material.iso");
    let out = make_material(&folder, &iso, "022", &["--date", "2026-07-12T00:00:00Z"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&iso).unwrap();
    let target = dir.join("stick.img");
    std::fs::write(&target, vec![0xAA; bytes.len() * 2]).unwrap();
    (iso, target, support::sha256_hex(&bytes))
}

#[test]
fn burn_writes_reads_back_and_catches_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (iso, target, digest) = iso_and_target(dir.path());
    let iso_bytes = std::fs::read(&iso).unwrap();

    support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&target)
        .args(["--expect", &digest])
        .assert()
        .success()
        .stderr(contains("MATCH"));
    let written = std::fs::read(&target).unwrap();
    assert_eq!(&written[..iso_bytes.len()], &iso_bytes[..]);
    assert_eq!(written.len(), iso_bytes.len() * 2, "the device keeps its size");
    assert!(written[iso_bytes.len()..].iter().all(|&b| b == 0xAA), "nothing written past the ISO");

    // The same through xorriso's stdio: target, with a SHA256SUMS as --expect.
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(&sums, format!("{digest}  material.iso\n")).unwrap();
    let target2 = dir.path().join("stick2.img");
    std::fs::write(&target2, vec![0u8; iso_bytes.len() * 2]).unwrap();
    support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&target2)
        .arg("--expect")
        .arg(&sums)
        .args(["--tool", "xorriso"])
        .assert()
        .success()
        .stderr(contains("MATCH"));

    // One changed byte on the "disc" is caught by a read-back-only check.
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[iso_bytes.len() / 2] ^= 0x01;
    std::fs::write(&target, bytes).unwrap();
    let out = support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&target)
        .args(["--expect", &digest, "--verify-only", "--json"])
        .assert()
        .code(1)
        .stderr(contains("MISMATCH"));
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["match"], false);
    assert_eq!(report["written"], false);
    assert_eq!(
        std::fs::read(&target).unwrap()[iso_bytes.len() / 2],
        iso_bytes[iso_bytes.len() / 2] ^ 0x01,
        "verify-only wrote nothing"
    );

    // checksum of the device prefix, as a witness would run it.
    support::ceremony_os(store())
        .arg("checksum")
        .arg(&target2)
        .args(["--size", &iso_bytes.len().to_string()])
        .assert()
        .success()
        .stdout(contains(digest.as_str()));
}

/// Detaches a loop device (unmounting it first) when dropped.
struct LoopDevice {
    device: String,
    mount: Option<PathBuf>,
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(mount) = &self.mount {
            let _ = std::process::Command::new("umount").arg(mount).status();
        }
        let _ = std::process::Command::new("losetup").args(["-d", &self.device]).status();
    }
}

#[test]
fn burn_refuses_a_fifo_source_and_a_mounted_target() {
    let dir = tempfile::tempdir().unwrap();
    let (iso, target, digest) = iso_and_target(dir.path());

    // A FIFO could serve the checked bytes to one reader and other bytes to the next.
    let fifo = dir.path().join("iso.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    support::ceremony_os(store())
        .arg("burn")
        .arg(&fifo)
        .arg("--device")
        .arg(&target)
        .args(["--expect", &digest])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(contains("is not a regular file or a block device"));

    // A stick with a mounted, writable ext4 file system on it.
    let image = dir.path().join("stick-with-fs.img");
    std::fs::write(&image, vec![0u8; 32 << 20]).unwrap();
    assert!(
        std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image).status().unwrap().success()
    );
    let device =
        std::process::Command::new("losetup").args(["--find", "--show"]).arg(&image).output().unwrap();
    assert!(device.status.success(), "{}", String::from_utf8_lossy(&device.stderr));
    let mut lo =
        LoopDevice { device: String::from_utf8(device.stdout).unwrap().trim().to_string(), mount: None };
    let mount_point = dir.path().join("mounted");
    std::fs::create_dir_all(&mount_point).unwrap();
    assert!(
        std::process::Command::new("mount").arg(&lo.device).arg(&mount_point).status().unwrap().success()
    );
    lo.mount = Some(mount_point.clone());
    let before = std::fs::read(&image).unwrap();
    for device in [PathBuf::from(&lo.device), image.clone()] {
        support::ceremony_os(store())
            .arg("burn")
            .arg(&iso)
            .arg("--device")
            .arg(&device)
            .args(["--expect", &digest])
            .assert()
            .code(1)
            .stderr(contains("is in use"))
            .stderr(contains(mount_point.to_str().unwrap()))
            .stderr(contains("(rw)"));
    }
    assert!(std::fs::read(&image).unwrap() == before, "a mounted file system was written over");
    // Checking a disc by reading it back does not write, so a mounted one may be read.
    support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&lo.device)
        .args(["--expect", &digest, "--verify-only"])
        .assert()
        .code(1)
        .stderr(contains("MISMATCH"));
}

#[test]
fn burn_refuses_a_wrong_digest_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (iso, target, digest) = iso_and_target(dir.path());
    let before = std::fs::read(&target).unwrap();
    let wrong = format!("{}{}", &digest[..63], if digest.ends_with('0') { '1' } else { '0' });
    support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&target)
        .args(["--expect", &wrong])
        .assert()
        .code(1)
        .stderr(contains("refusing to burn"))
        .stderr(contains(wrong.as_str()));
    assert!(std::fs::read(&target).unwrap() == before, "the target was touched");

    support::ceremony_os(store())
        .arg("burn")
        .arg(&iso)
        .arg("--device")
        .arg(&target)
        .args(["--expect", &digest, "--dry-run"])
        .assert()
        .success()
        .stderr(contains("would run: write"));
    assert!(std::fs::read(&target).unwrap() == before, "--dry-run touched the target");
}
