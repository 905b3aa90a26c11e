//! `material`, `burn` and `checksum` end to end: the locked toolchain's xorriso writes the
//! material disc; burning goes to file-backed targets (directly and through xorriso's stdio:).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use predicates::str::contains;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// One store for the whole file (the toolchain is fetched once).
fn store() -> &'static Path {
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    STORE.get_or_init(|| tempfile::tempdir().unwrap()).path()
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
        .arg(repo_file("image/ceremony.toml"))
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
fn material_refuses_special_files_and_escaping_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m");
    material_folder(&folder, false, 1_600_000_000);
    std::os::unix::fs::symlink("../../etc/shadow", folder.join("csr/evil")).unwrap();
    let out = make_material(&folder, &dir.path().join("x.iso"), "022", &["--date", "2026-07-12T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("csr/evil") && stderr.contains("points outside the folder"), "{stderr}");
    std::fs::remove_file(folder.join("csr/evil")).unwrap();

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
