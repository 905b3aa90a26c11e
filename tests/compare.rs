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
fn efi_image_change_is_named_in_the_iso_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_iso(dir.path(), "a", BASE);
    let b = make_iso(dir.path(), "b", Variant { efi: true, ..BASE });
    let (code, report) = compare_json(&a, &b);
    assert_eq!(code, 1);
    let found = leaves(&report);
    assert!(
        found.iter().any(|(layer, path, kind, _)| layer == "iso files"
            && path == "/boot/efi.img"
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
    assert_eq!(saved, ["00-squashfs__live_filesystem.squashfs_etc_a.conf.txt"], "{saved:?}");
    let text = std::fs::read_to_string(reports.join(&saved[0])).unwrap();
    assert!(text.contains("alpha=1") && text.contains("alpha=2"), "{text}");
}

/// Compare `b` with `a` from inside their directory, by relative names (as a user types them).
fn compare_relative(dir: &Path, a: &str, b: &str) -> (i32, Value, String) {
    let out = support::ceremony_os(Path::new("/nonexistent"))
        .current_dir(dir)
        .args(["compare", a, b, "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), report, stderr)
}

/// An ISO of `stage` (a directory laid out like the image's ISO tree).
fn iso_of(stage: &Path, iso: &Path) {
    for entry in walkdir(stage) {
        let _ = filetime::set_symlink_file_times(
            &entry,
            filetime::FileTime::from_unix_time(1_700_000_000, 0),
            filetime::FileTime::from_unix_time(1_700_000_000, 0),
        );
    }
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-o"])
        .arg(iso)
        .args(["-V", "CRAFTED", "-r", "-J"])
        .arg(stage)
        .env("SOURCE_DATE_EPOCH", "1783814400"));
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if std::fs::symlink_metadata(&out[i]).unwrap().is_dir() {
            let mut children: Vec<PathBuf> =
                std::fs::read_dir(&out[i]).unwrap().map(|e| e.unwrap().path()).collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// Files anywhere under `dir`, to prove nothing was written there.
fn count_files(dir: &Path) -> usize {
    walkdir(dir).len() - 1
}

/// An initrd (gzip-compressed newc cpio) holding `evil -> target` and then `evil/planted`, as a
/// host cpio would follow the link and write through it.
fn escaping_initrd(work: &Path, target: &Path) -> Vec<u8> {
    let tree = work.join("initrd-tree");
    std::fs::create_dir_all(tree.join("evil-dir")).unwrap();
    std::fs::write(tree.join("init"), b"#!/bin/sh\n").unwrap();
    std::fs::write(tree.join("evil-dir/planted"), b"written outside\n").unwrap();
    std::os::unix::fs::symlink(target, tree.join("evil")).unwrap();
    // List `evil` (the symlink) and then a file named as if under it: rename the path in the
    // archive by writing the cpio with a name list and patching the name.
    let out = Command::new("sh")
        .arg("-c")
        .arg("printf 'init\\nevil\\nevil-dir/planted\\n' | cpio -o -H newc --quiet")
        .current_dir(&tree)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut cpio = out.stdout;
    // "evil-dir/planted" -> "evil/////planted": same length, a path through the symlink.
    let at = cpio.windows(16).position(|w| w == b"evil-dir/planted").unwrap();
    cpio[at..at + 16].copy_from_slice(b"evil/////planted");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &cpio).unwrap();
    gz.finish().unwrap()
}

#[test]
fn crafted_images_write_nothing_outside_and_every_hidden_difference_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("host-dir");
    std::fs::create_dir_all(&target).unwrap();
    make_iso(dir.path(), "a", BASE);

    // B: the same tree, but the initrd has an escaping symlink and a second archive appended
    // (which the kernel unpacks over the first), and the squashfs has a link out of the tree.
    let stage = dir.path().join("b-stage");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
    let mut initrd = std::fs::read(stage.join("live/initrd.img")).unwrap();
    initrd.extend(escaping_initrd(dir.path(), &target));
    std::fs::write(stage.join("live/initrd.img"), &initrd).unwrap();
    let root = dir.path().join("b-rootfs");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/rootfs")).arg(&root));
    std::os::unix::fs::symlink(&target, root.join("usr/escape")).unwrap();
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(stage.join("live/filesystem.squashfs"))
        .args(["-noappend", "-no-xattrs", "-all-root", "-no-progress"])
        .env("SOURCE_DATE_EPOCH", "1783814400"));
    let b = dir.path().join("b.iso");
    iso_of(&stage, &b);
    // Bytes appended after the volume.
    let mut bytes = std::fs::read(&b).unwrap();
    bytes.extend([0x5a; 4096]);
    std::fs::write(&b, &bytes).unwrap();

    let (code, report, stderr) = compare_relative(dir.path(), "a.iso", "b.iso");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(count_files(&target), 0, "compare wrote through a symlink of the image");
    let found = leaves(&report);
    let has = |layer: &str, path: &str, kind: &str| {
        found.iter().any(|(l, p, k, _)| l.starts_with(layer) && p == path && k == kind)
    };
    assert!(has("iso structure", "/bytes after the volume", "only in B"), "{found:#?}");
    assert!(has("squashfs", "/usr/escape", "only in B"), "{found:#?}");
    // The kernel unpacks the appended archive over the first: its /init wins, the link is made,
    // and the file named through the link is not created (the link points outside the initrd).
    assert!(has(UNPACKED, "/init", "content"), "{found:#?}");
    assert!(has(UNPACKED, "/evil", "only in B"), "{found:#?}");
    assert!(has(SKIPPED, "/evil/planted (segment #1, archive #0, entry #2)", "only in B"), "{found:#?}");
    let symlink = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["differences"].as_array().unwrap())
        .find(|d| d["path"] == "/usr/escape")
        .unwrap();
    assert!(
        symlink["b"].as_str().unwrap().contains(&format!("symlink to {}", target.display())),
        "{symlink}"
    );
}

/// The same tree with a file capability and a user attribute on one binary: the kernel honours
/// them at exec, so compare names them.
#[test]
fn squashfs_extended_attributes_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    make_iso(dir.path(), "a", BASE);
    let stage = dir.path().join("b-stage");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
    let root = dir.path().join("b-rootfs");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/rootfs")).arg(&root));
    run(Command::new("setcap").arg("cap_setuid+ep").arg(root.join("usr/bin/tool")));
    run(Command::new("python3")
        .args(["-c", "import os, sys; os.setxattr(sys.argv[1], 'user.note', b'hi')"])
        .arg(root.join("usr/bin/tool")));
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(stage.join("live/filesystem.squashfs"))
        .args(["-noappend", "-all-root", "-noI", "-noD", "-noF", "-noX", "-no-progress"])
        .env("SOURCE_DATE_EPOCH", "1783814400"));
    let b = dir.path().join("b.iso");
    iso_of(&stage, &b);
    let (code, report, stderr) = compare_relative(dir.path(), "a.iso", "b.iso");
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    let layer = "squashfs /live/filesystem.squashfs extended attributes";
    assert!(
        found.iter().any(|(l, p, k, _)| l == layer && p == "/usr/bin/tool" && k == "only in B"),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|(l, p, _, _)| l.starts_with("squashfs") && l != layer && p == "/usr/bin/tool"),
        "{found:#?}"
    );
    let table = support::ceremony_os(Path::new("/nonexistent"))
        .current_dir(dir.path())
        .args(["compare", "a.iso", "b.iso"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("security.capability=0x01000002"), "{table}");
    assert!(table.contains("user.note=\"hi\""), "{table}");
}

const UNPACKED: &str = "initrd /live/initrd.img as the kernel unpacks it";
const SKIPPED: &str = "initrd /live/initrd.img entries the kernel does not unpack as named";
const HARD_LINKS: &str = "initrd /live/initrd.img hard links";

/// A gzip-compressed newc cpio of `names` under `tree` (GNU cpio), each header then passed to
/// `patch` with its name, to make what GNU cpio would not write.
fn crafted_initrd(tree: &Path, names: &[&str], patch: &dyn Fn(&str, &mut [u8])) -> Vec<u8> {
    let list: String = names.iter().map(|n| format!("{n}\n")).collect();
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(tree)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), list.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut cpio = out.stdout;
    let mut at = 0;
    while at + 110 <= cpio.len() && &cpio[at..at + 6] == b"070701" {
        let field =
            |i: usize| usize::from_str_radix(std::str::from_utf8(&cpio[at + 6 + i * 8..][..8]).unwrap(), 16);
        let (size, name_size) = (field(6).unwrap(), field(11).unwrap());
        let name = String::from_utf8_lossy(&cpio[at + 110..at + 110 + name_size - 1]).into_owned();
        let data = (at + 110 + name_size).next_multiple_of(4);
        patch(&name, &mut cpio[at..data]);
        at = (data + size).next_multiple_of(4);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &cpio).unwrap();
    gz.finish().unwrap()
}

fn set_field(header: &mut [u8], index: usize, value: u32) {
    header[6 + index * 8..][..8].copy_from_slice(format!("{value:08x}").as_bytes());
}

/// What GNU cpio, or an unpacker merging names as paths, would call the same initrd, the kernel
/// unpacks into another tree: each case is named where the booted machine differs.
#[test]
fn the_initrd_is_compared_as_the_kernel_unpacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("initrd-tree");
    file(&tree.join("init"), b"#!/bin/sh\nhonest\n", 1_700_000_000);
    file(&tree.join("initX"), b"#!/bin/sh\nhonest\n", 1_700_000_000);
    file(&tree.join("evil"), b"#!/bin/sh\nevil!!\n", 1_700_000_000);
    file(&tree.join("etc/modprobe.d/airgap.conf"), b"install e1000 /bin/false\n", 1_700_000_000);
    file(&tree.join("etc/modprobe.X"), b"body", 1_700_000_000);
    let iso = |name: &str, initrd: Vec<u8>| {
        let stage = dir.path().join(format!("{name}-stage"));
        file(&stage.join("live/initrd.img"), &initrd, 1_700_000_000);
        let iso = dir.path().join(format!("{name}.iso"));
        iso_of(&stage, &iso);
        iso
    };
    let none = |_: &str, _: &mut [u8]| {};
    let honest = ["init", "etc", "etc/modprobe.d", "etc/modprobe.d/airgap.conf"];
    iso("a", crafted_initrd(&tree, &honest, &none));

    // `init` holds another script, and a later `init/` the honest bytes.
    let shadow = crafted_initrd(
        &tree,
        &["evil", "initX", "etc", "etc/modprobe.d", "etc/modprobe.d/airgap.conf"],
        &|name, header| {
            let named = |h: &mut [u8], from: &[u8], to: &[u8]| {
                let at = h.windows(from.len()).position(|w| w == from).unwrap();
                h[at..at + to.len()].copy_from_slice(to);
            };
            match name {
                "evil" => named(header, b"evil\0", b"init\0"),
                "initX" => named(header, b"initX", b"init/"),
                _ => {}
            }
        },
    );
    let (code, report, stderr) =
        compare_relative(dir.path(), "a.iso", &iso("shadow", shadow).display().to_string());
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    let has = |layer: &str, path: &str, kind: &str| {
        found.iter().any(|(l, p, k, _)| l == layer && p == path && k == kind)
    };
    assert!(has(UNPACKED, "/init", "content"), "{found:#?}");
    assert!(has(SKIPPED, "/init (segment #0, archive #0, entry #1)", "only in B"), "{found:#?}");

    // A directory entry with a body: the kernel skips it, and the air-gap file under it.
    let skipped = crafted_initrd(
        &tree,
        &["init", "etc", "etc/modprobe.X", "etc/modprobe.d/airgap.conf"],
        &|name, header| {
            if name == "etc/modprobe.X" {
                let at = header.windows(10).position(|w| w == b"modprobe.X").unwrap();
                header[at..at + 10].copy_from_slice(b"modprobe.d");
                set_field(header, 1, 0o40755);
            }
        },
    );
    let (code, report, stderr) =
        compare_relative(dir.path(), "a.iso", &iso("skipped", skipped).display().to_string());
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    let has = |layer: &str, path: &str, kind: &str| {
        found.iter().any(|(l, p, k, _)| l == layer && p == path && k == kind)
    };
    assert!(has(UNPACKED, "/etc/modprobe.d", "only in A"), "{found:#?}");
    assert!(has(UNPACKED, "/etc/modprobe.d/airgap.conf", "only in A"), "{found:#?}");
    assert!(has(SKIPPED, "/etc/modprobe.d (segment #0, archive #0, entry #2)", "only in B"), "{found:#?}");

    // init and evil made one hard-linked pair: evil's body is what /init holds at boot.
    let linked = crafted_initrd(
        &tree,
        &["init", "evil", "etc", "etc/modprobe.d", "etc/modprobe.d/airgap.conf"],
        &|name, header| {
            if name == "init" || name == "evil" {
                set_field(header, 0, 4242);
                set_field(header, 4, 2);
            }
        },
    );
    let (code, report, stderr) =
        compare_relative(dir.path(), "a.iso", &iso("linked", linked).display().to_string());
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    let has = |layer: &str, path: &str, kind: &str| {
        found.iter().any(|(l, p, k, _)| l == layer && p == path && k == kind)
    };
    assert!(has(UNPACKED, "/init", "content"), "{found:#?}");
    assert!(has(HARD_LINKS, "/init", "only in B"), "{found:#?}");
    let init = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == UNPACKED)
        .and_then(|l| l["differences"].as_array().unwrap().iter().find(|d| d["path"] == "/init"))
        .unwrap();
    let evil_digest = support::sha256_hex(b"#!/bin/sh\nevil!!\n");
    assert!(init["b"].as_str().unwrap().contains(&evil_digest), "{init}");

    // The same tree in another byte layout (another compression level): the segment is named.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let plain = {
        let compressed = crafted_initrd(&tree, &honest, &none);
        let mut d = flate2::read::GzDecoder::new(&compressed[..]);
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let (code, report, stderr) =
        compare_relative(dir.path(), "a.iso", &iso("relaid", gz.finish().unwrap()).display().to_string());
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    assert!(
        found
            .iter()
            .any(|(l, p, k, _)| l.ends_with("segments") && p == "/#0 gzip at byte 0" && k == "content"),
        "{found:#?}"
    );
    assert!(!found.iter().any(|(l, _, _, _)| l == UNPACKED), "{found:#?}");
}

/// Rock Ridge names and records that Linux, GRUB and compare would read differently: each
/// crafted image is refused with what is wrong and where, never compared as if it were clear.
#[test]
fn records_and_descriptors_two_readers_read_differently_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // a.iso has El Torito and Joliet (descriptors at sectors 16 to 19); b.iso four more files.
    let a = make_iso(dir.path(), "a", BASE);
    let stage = dir.path().join("b-stage");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
    for name in ["QQ", "RRRRR", "SSSSS", "TTTTT"] {
        std::fs::write(stage.join(name), name).unwrap();
    }
    let b = dir.path().join("b.iso");
    iso_of(&stage, &b);
    let (with_boot, with_names) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let find = |bytes: &[u8], what: &[u8]| {
        bytes.windows(what.len()).position(|w| w == what).unwrap_or_else(|| panic!("no {what:?}"))
    };
    let replace = |from: &'static [u8], to: &'static [u8]| {
        move |bytes: &mut Vec<u8>| {
            let at = find(bytes, from);
            bytes[at..at + to.len()].copy_from_slice(to);
        }
    };
    let sector = |n: usize| n * 2048..(n + 1) * 2048;
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let (names, descriptors) = ("b.iso", "a.iso");
    let cases: Vec<(&str, &str, Patch, &str)> = vec![
        (
            "dot-dot",
            names,
            Box::new(replace(b"NM\x07\x01\x00QQ", b"NM\x07\x01\x00..")),
            "a Rock Ridge name '.' or '..'",
        ),
        ("slash", names, Box::new(replace(b"NM\x0a\x01\x00RRRRR", b"NM\x0a\x01\x00up/up")), "NUL or '/'"),
        (
            "duplicate",
            names,
            Box::new(replace(b"NM\x0a\x01\x00SSSSS", b"NM\x0a\x01\x00RRRRR")),
            "a second entry named \"RRRRR\"",
        ),
        ("no-name", names, Box::new(replace(b"NM\x0a\x01\x00TTTTT", b"ZZ")), "no Rock Ridge name"),
        (
            "associated",
            names,
            Box::new(move |bytes: &mut Vec<u8>| {
                // The record of QQ: its length byte is 33 bytes before its ISO name.
                let start = find(bytes, b"\x05QQ.;1") - 32;
                bytes[start + 25] |= 0x04;
            }),
            "marked an associated file",
        ),
        (
            "second-pvd",
            descriptors,
            Box::new(move |bytes: &mut Vec<u8>| {
                // Joliet's descriptor becomes a second primary one, whose tree is Joliet's.
                let mut pvd = bytes[sector(16)].to_vec();
                pvd[156..190].copy_from_slice(&bytes[sector(18)][156..190]);
                bytes[sector(18)].copy_from_slice(&pvd);
            }),
            "sector 18: a second primary volume descriptor unlike the first",
        ),
        (
            "boot-record-moved",
            descriptors,
            Box::new(move |bytes: &mut Vec<u8>| {
                let (boot, joliet) = (bytes[sector(17)].to_vec(), bytes[sector(18)].to_vec());
                bytes[sector(17)].copy_from_slice(&joliet);
                bytes[sector(18)].copy_from_slice(&boot);
            }),
            "sector 18: an El Torito boot record away from sector 17",
        ),
        (
            "no-er",
            names,
            Box::new(move |bytes: &mut Vec<u8>| {
                // The ER entry on the root's "." (signature, length, version 1): renamed.
                let at = (0..bytes.len() - 4)
                    .find(|&i| &bytes[i..i + 2] == b"ER" && bytes[i + 3] == 1 && bytes[i + 2] > 8)
                    .unwrap();
                bytes[at..at + 2].copy_from_slice(b"XX");
            }),
            "Rock Ridge without an ER entry",
        ),
        (
            "extended-attribute-record",
            names,
            Box::new(move |bytes: &mut Vec<u8>| {
                let start = find(bytes, b"\x05QQ.;1") - 32;
                bytes[start + 1] = 1;
            }),
            "an extended attribute record or interleaving",
        ),
        (
            "px-device",
            names,
            Box::new(move |bytes: &mut Vec<u8>| {
                // QQ's PX says character device: Linux would make a device node of it.
                let start = find(bytes, b"\x05QQ.;1") - 32;
                let len = bytes[start] as usize;
                let px = start + find(&bytes[start..start + len], b"PX");
                bytes[px + 4..px + 8].copy_from_slice(&0o020644u32.to_le_bytes());
            }),
            "a PX type 20000 that is not the 100000",
        ),
        (
            "root-dot-elsewhere",
            names,
            Box::new(move |bytes: &mut Vec<u8>| {
                let root =
                    u32::from_le_bytes(bytes[16 * 2048 + 158..16 * 2048 + 162].try_into().unwrap()) as usize;
                let dot = root * 2048;
                let moved = (root as u32 + 1).to_le_bytes();
                bytes[dot + 2..dot + 6].copy_from_slice(&moved);
            }),
            "the root's \".\" record points elsewhere",
        ),
    ];
    for (name, base, patch, expected) in cases {
        let honest = if base == "a.iso" { &with_boot } else { &with_names };
        let mut bytes = honest.clone();
        patch(&mut bytes);
        assert_ne!(bytes, *honest, "{name}: patched");
        std::fs::write(dir.path().join(format!("{name}.iso")), &bytes).unwrap();
        let (code, _, stderr) = compare_relative(dir.path(), base, &format!("{name}.iso"));
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains("two readers would read differently"),
            "{name}: {stderr}"
        );
    }
}

/// A Joliet record re-pointed at another file's bytes: Linux and GRUB read Rock Ridge, but a
/// Joliet reader would read other content; compare names the Joliet path, not only a region.
#[test]
fn a_joliet_record_pointing_elsewhere_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_iso(dir.path(), "a", BASE);
    let stage = dir.path().join("b-stage");
    run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
    std::fs::write(stage.join("QQ"), b"QQ").unwrap();
    std::fs::write(stage.join("RRRRR"), b"RRRRR").unwrap();
    let b = dir.path().join("b.iso");
    iso_of(&stage, &b);
    let mut bytes = std::fs::read(&b).unwrap();
    let utf16 = |name: &str| name.encode_utf16().flat_map(u16::to_be_bytes).collect::<Vec<u8>>();
    let record = |bytes: &[u8], name: &str| {
        let id = [vec![(name.len() * 2) as u8], utf16(name)].concat();
        bytes.windows(id.len()).position(|w| w == id).unwrap_or_else(|| panic!("no Joliet {name}")) - 32
    };
    let (qq, rr) = (record(&bytes, "QQ"), record(&bytes, "RRRRR"));
    let extent_and_size = bytes[rr + 2..rr + 18].to_vec();
    bytes[qq + 2..qq + 18].copy_from_slice(&extent_and_size);
    std::fs::write(dir.path().join("c.iso"), &bytes).unwrap();
    let (code, report, stderr) = compare_relative(dir.path(), "b.iso", "c.iso");
    assert_eq!(code, 1, "{stderr}");
    let found = leaves(&report);
    assert!(found.iter().any(|(l, p, _, _)| l == "iso Joliet names" && p == "/QQ"), "{found:#?}");
    assert!(
        !found.iter().any(|(l, _, _, _)| l == "iso files"),
        "the Rock Ridge tree is unchanged: {found:#?}"
    );
    let joliet =
        report["layers"].as_array().unwrap().iter().find(|l| l["name"] == "iso Joliet names").unwrap();
    let b_side = joliet["differences"][0]["b"].as_str().unwrap();
    assert!(b_side.contains("NOT the bytes of a Rock Ridge file of this name: 5 bytes"), "{b_side}");
}

/// A directory deeper than ISO 9660 allows is relocated by Rock Ridge (RE under rr_moved, a CL
/// record where it belongs): compare reads it where Linux does, and names the file in it.
#[test]
fn a_relocated_deep_directory_is_compared_where_linux_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    make_iso(dir.path(), "a", BASE);
    let deep = "a/b/c/d/e/f/g/h/i";
    let mut isos = Vec::new();
    for (name, content) in [("one", b"deep 1\n"), ("two", b"deep 2\n")] {
        let stage = dir.path().join(format!("{name}-stage"));
        run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
        std::fs::create_dir_all(stage.join(deep)).unwrap();
        std::fs::write(stage.join(deep).join("deep.txt"), content).unwrap();
        for entry in walkdir(&stage) {
            filetime::set_symlink_file_times(
                &entry,
                filetime::FileTime::from_unix_time(1_700_000_000, 0),
                filetime::FileTime::from_unix_time(1_700_000_000, 0),
            )
            .unwrap();
        }
        let iso = dir.path().join(format!("{name}.iso"));
        run(Command::new("xorriso")
            .args(["-as", "mkisofs", "-o"])
            .arg(&iso)
            .args(["-V", "DEEP", "-r", "-J", "-rr_reloc_dir", "rr_moved"])
            .arg(&stage)
            .env("SOURCE_DATE_EPOCH", "1783814400"));
        isos.push(iso);
    }
    let bytes = std::fs::read(&isos[0]).unwrap();
    assert!(bytes.windows(4).any(|w| w == b"CL\x0c\x01"), "xorriso relocated the deep directory");
    let (code, report) = compare_json(&isos[0], &isos[1]);
    assert_eq!(code, 1, "{report:#}");
    let found = leaves(&report);
    let path = format!("/{deep}/deep.txt");
    assert!(found.iter().any(|(l, p, k, _)| l == "iso files" && *p == path && k == "content"), "{found:#?}");
}

#[test]
fn a_huge_sparse_file_and_a_too_deep_tree_stop_at_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    make_iso(dir.path(), "a", BASE);
    for (name, prepare, expected) in [
        ("sparse", 0, "more than the 8589934592 bytes compare reads of one file"),
        ("deep", 1, "nest deeper than 256 levels"),
    ] {
        let stage = dir.path().join(format!("{name}-stage"));
        run(Command::new("cp").arg("-a").arg(dir.path().join("a/stage")).arg(&stage));
        let root = dir.path().join(format!("{name}-rootfs"));
        run(Command::new("cp").arg("-a").arg(dir.path().join("a/rootfs")).arg(&root));
        if prepare == 0 {
            let f = std::fs::File::create(root.join("huge")).unwrap();
            f.set_len(9 << 30).unwrap();
        } else {
            let deep: PathBuf = (0..300).map(|_| "d").collect();
            std::fs::create_dir_all(root.join(deep)).unwrap();
        }
        run(Command::new("mksquashfs")
            .arg(&root)
            .arg(stage.join("live/filesystem.squashfs"))
            .args(["-noappend", "-no-xattrs", "-all-root", "-no-progress"])
            .env("SOURCE_DATE_EPOCH", "1783814400"));
        let b = dir.path().join(format!("{name}.iso"));
        iso_of(&stage, &b);
        let (code, _, stderr) = compare_relative(dir.path(), "a.iso", &format!("{name}.iso"));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("limit reached") && stderr.contains(expected), "{stderr}");
    }
}
