//! `ceremony-os compare` on small ISOs made here with the same structure as the image's
//! (`/live/filesystem.squashfs`, `/live/initrd.img`, BIOS and UEFI El Torito images), so every
//! kind of difference can be produced on purpose and checked for exactly.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy)]
struct Variant {
    /// Change one file's content (same length) inside the squashfs.
    content: bool,
    /// Change another file's mtime inside the squashfs.
    mtime: bool,
    /// Change the EFI boot image.
    efi: bool,
    /// Change the volume's modification date.
    date: bool,
}

const BASE: Variant = Variant { content: false, mtime: false, efi: false, date: false };

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn file(path: &Path, bytes: &[u8], mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
}

fn make_iso(dir: &Path, name: &str, v: Variant) -> PathBuf {
    let work = dir.join(name);
    let root = work.join("rootfs");
    file(&root.join("etc/a.conf"), if v.content { b"alpha=2\n" } else { b"alpha=1\n" }, 1_700_000_000);
    file(&root.join("etc/b.conf"), b"bravo\n", if v.mtime { 1_700_000_500 } else { 1_700_000_000 });
    file(&root.join("usr/bin/tool"), b"#!/bin/sh\n", 1_700_000_000);
    let stage = work.join("stage");
    std::fs::create_dir_all(stage.join("live")).unwrap();
    // Uncompressed, so a same-length change keeps every size and offset in the ISO.
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(stage.join("live/filesystem.squashfs"))
        .args(["-noappend", "-no-xattrs", "-all-root", "-noI", "-noD", "-noF", "-noX", "-no-progress"])
        .env("SOURCE_DATE_EPOCH", "1783814400"));
    let initrd = work.join("initrd");
    file(&initrd.join("init"), b"#!/bin/sh\nexec /bin/sh\n", 1_700_000_000);
    filetime::set_file_mtime(&initrd, filetime::FileTime::from_unix_time(1_700_000_000, 0)).unwrap();
    run(Command::new("/bin/sh")
        .args([
            "-c",
            "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -n -9 > \"$1\"",
            "sh",
        ])
        .arg(stage.join("live/initrd.img"))
        .current_dir(&initrd));
    file(&stage.join("boot/bios.img"), &[0x11; 2048], 1_700_000_000);
    file(&stage.join("boot/efi.img"), &vec![if v.efi { 0x23 } else { 0x22 }; 65536], 1_700_000_000);
    for dir in ["live/filesystem.squashfs", "live/initrd.img", "live", "boot", ""] {
        filetime::set_file_mtime(stage.join(dir), filetime::FileTime::from_unix_time(1_700_000_000, 0))
            .unwrap();
    }
    let iso = dir.join(format!("{name}.iso"));
    let date = if v.date { "2026071300000000" } else { "2026071200000000" };
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-o"])
        .arg(&iso)
        .args(["-V", "CMPTEST", "-r", "-J", &format!("--modification-date={date}")])
        .args(["-b", "boot/bios.img", "-no-emul-boot", "-boot-load-size", "4"])
        .args(["-eltorito-alt-boot", "-e", "boot/efi.img", "-no-emul-boot"])
        .arg(&stage)
        .env("SOURCE_DATE_EPOCH", "1783814400"));
    iso
}

fn compare_json(a: &Path, b: &Path) -> (i32, Value) {
    let out = support::ceremony_os(Path::new("/nonexistent"))
        .arg("compare")
        .arg(a)
        .arg(b)
        .arg("--json")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

/// `(layer, path, kind, fields)` of every difference that is not an expanded container.
fn leaves(report: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for layer in report["layers"].as_array().unwrap() {
        for d in layer["differences"].as_array().unwrap() {
            if d["expanded"] == true {
                continue;
            }
            let fields = d["fields"]
                .as_array()
                .map(|f| f.iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>().join(","));
            out.push((
                layer["name"].as_str().unwrap().to_string(),
                d["path"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
                fields.unwrap_or_default(),
            ));
        }
    }
    out
}

#[test]
fn identical_images_compare_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", BASE);
    let (code, report) = compare_json(&a, &b);
    assert_eq!((code, report["identical"].as_bool()), (0, Some(true)), "{report:#}");
    support::ceremony_os(Path::new("/nonexistent"))
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .assert()
        .success()
        .stdout(predicates::str::contains("identical"));
}

#[test]
fn one_content_and_one_mtime_change_are_named_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", Variant { content: true, mtime: true, ..BASE });
    let (code, report) = compare_json(&a, &b);
    assert_eq!(code, 1);
    let squashfs = "squashfs /live/filesystem.squashfs".to_string();
    assert_eq!(
        leaves(&report),
        [
            (squashfs.clone(), "/etc/a.conf".into(), "content".into(), String::new()),
            (squashfs, "/etc/b.conf".into(), "metadata".into(), "mtime".into()),
        ],
        "{report:#}"
    );
    let iso_files = report["layers"].as_array().unwrap().iter().find(|l| l["name"] == "iso files").unwrap();
    assert_eq!(iso_files["differences"][0]["path"], "/live/filesystem.squashfs");
    assert_eq!(iso_files["differences"][0]["expanded"], true);

    let text =
        support::ceremony_os(Path::new("/nonexistent")).arg("compare").arg(&a).arg(&b).output().unwrap();
    assert_eq!(text.status.code(), Some(1));
    let table = String::from_utf8(text.stdout).unwrap();
    assert!(
        table.contains("content") && table.contains("/etc/a.conf") && table.contains("metadata (mtime)"),
        "{table}"
    );
    assert!(table.contains("2 differences in all"), "{table}");
}

#[test]
fn efi_image_change_is_named_in_the_boot_records() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", Variant { efi: true, ..BASE });
    let (code, report) = compare_json(&a, &b);
    assert_eq!(code, 1);
    let found = leaves(&report);
    assert!(
        found.iter().any(|(layer, path, kind, _)| layer == "boot records"
            && path == "/eltorito_img2_uefi.img"
            && kind == "content"),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(layer, ..)| layer.starts_with("squashfs") || layer.starts_with("initrd")),
        "{found:?}"
    );
}

#[test]
fn volume_date_change_is_named_in_the_volume_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", Variant { date: true, ..BASE });
    let (code, report) = compare_json(&a, &b);
    assert_eq!(code, 1);
    let found = leaves(&report);
    assert!(
        found.iter().any(|(layer, path, kind, _)| layer == "iso volume descriptor"
            && path == "modification date"
            && kind == "field"),
        "{found:?}"
    );
    assert!(!found.iter().any(|(layer, ..)| layer.starts_with("squashfs")), "{found:?}");
}

#[test]
fn bad_inputs_are_errors_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_iso(dir.path(), "a", BASE);
    let truncated = dir.path().join("truncated.iso");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an image at all\n".repeat(3000)).unwrap();
    for (other, expected) in [
        (truncated.clone(), "truncated: the volume descriptor says"),
        (text.clone(), "not an ISO image"),
        (dir.path().join("missing.iso"), "No such file or directory"),
    ] {
        let out = support::ceremony_os(Path::new("/nonexistent"))
            .arg("compare")
            .arg(&good)
            .arg(&other)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected) && stderr.contains(other.to_str().unwrap()), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn diffoscope_reports_are_saved_for_differing_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", Variant { content: true, ..BASE });
    let reports = dir.path().join("reports");
    let out = support::ceremony_os(Path::new("/nonexistent"))
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .arg("--diffoscope")
        .arg(&reports)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(saved, ["squashfs__live_filesystem.squashfs_etc_a.conf.txt"], "{saved:?}");
    let text = std::fs::read_to_string(reports.join(&saved[0])).unwrap();
    assert!(text.contains("alpha=1") && text.contains("alpha=2"), "{text}");
}
