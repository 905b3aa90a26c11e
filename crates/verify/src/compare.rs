//! `ceremony-os compare A.iso B.iso`: two ISOs taken apart layer by layer, without rebuilding.
//!
//! Layers, outermost first: the ISO volume descriptor (ids, size, the four volume dates); the
//! boot records (system area with the hybrid MBR/GPT, the El Torito catalog and boot images, as
//! xorriso extracts them); the ISO's file tree; the file tree of `/live/filesystem.squashfs`; the
//! file tree of the initrd's archive (`/live/initrd.img`). A differing squashfs or initrd in the
//! ISO's file tree is a container: it is marked as expanded and its own layer says what differs
//! inside. Everything else is a leaf difference. Extraction uses the host's xorriso, unsquashfs,
//! cpio and decompressors (reading, unlike writing, does not need the pinned tools).

use crate::VerifyError;
use crate::iso9660::{PrimaryVolume, read_pvd};
use ceremony_os_runner::Runner;
use ceremony_os_tree::{Change, Entry, Kind, TreeManifest};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Members of the ISO that are unpacked into layers of their own.
pub const SQUASHFS_MEMBER: &str = "/live/filesystem.squashfs";
pub const INITRD_MEMBER: &str = "/live/initrd.img";

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub path: String,
    /// `content`, `metadata`, `only in A`, `only in B`, or `field` (volume descriptor).
    pub kind: String,
    /// For metadata: which of mode, owner, mtime.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    pub a: Option<String>,
    pub b: Option<String>,
    /// A container whose inside is compared in a later layer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expanded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    pub name: String,
    /// How many entries were compared.
    pub compared: usize,
    pub differences: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub a: PathBuf,
    pub b: PathBuf,
    pub a_sha256: String,
    pub b_sha256: String,
    pub identical: bool,
    pub layers: Vec<Layer>,
}

impl Report {
    /// Differences that are not containers expanded further down.
    pub fn leaf_differences(&self) -> Vec<(&str, &Difference)> {
        self.layers
            .iter()
            .flat_map(|l| l.differences.iter().filter(|d| !d.expanded).map(move |d| (l.name.as_str(), d)))
            .collect()
    }

    /// A readable table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "A  {}\n   sha256 {}\nB  {}\n   sha256 {}\n",
            self.a.display(),
            self.a_sha256,
            self.b.display(),
            self.b_sha256
        );
        if self.identical {
            out.push_str("\nidentical\n");
            return out;
        }
        for layer in &self.layers {
            if layer.differences.is_empty() {
                out.push_str(&format!("\n{}: same ({} entries compared)\n", layer.name, layer.compared));
                continue;
            }
            out.push_str(&format!(
                "\n{}: {} differences ({} entries compared)\n",
                layer.name,
                layer.differences.len(),
                layer.compared
            ));
            for d in &layer.differences {
                let what = if d.kind == "metadata" {
                    format!("metadata ({})", d.fields.join(", "))
                } else {
                    d.kind.clone()
                };
                let what = if d.expanded { format!("{what}, see below") } else { what };
                out.push_str(&format!("  {:<28} {}\n", what, d.path));
                if let Some(a) = &d.a {
                    out.push_str(&format!("  {:<28}   A: {a}\n", ""));
                }
                if let Some(b) = &d.b {
                    out.push_str(&format!("  {:<28}   B: {b}\n", ""));
                }
            }
        }
        let leaves = self.leaf_differences().len();
        out.push_str(&format!("\n{leaves} differences in all\n"));
        out
    }
}

/// Compare two ISOs. `work` holds the extracted trees (removed by the caller).
pub fn compare(
    a: &Path,
    b: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, VerifyError> {
    let pvd_a = read_pvd(a)?;
    let pvd_b = read_pvd(b)?;
    progress("hashing both images");
    let a_sha256 = ceremony_os_tree::sha256_file(a)?;
    let b_sha256 = ceremony_os_tree::sha256_file(b)?;
    let mut report = Report {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        a_sha256: a_sha256.clone(),
        b_sha256: b_sha256.clone(),
        identical: a_sha256 == b_sha256,
        layers: Vec::new(),
    };
    if report.identical {
        return Ok(report);
    }
    let runner = Runner::new(0);
    report.layers.push(volume_layer(&pvd_a, &pvd_b));

    let (wa, wb) = (work.join("a"), work.join("b"));
    for (iso, dir) in [(a, &wa), (b, &wb)] {
        progress(&format!("extracting {}", iso.display()));
        std::fs::create_dir_all(dir).map_err(|e| VerifyError::io(dir, e))?;
        runner
            .cmd("xorriso", dir)
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract_boot_images"])
            .arg(dir.join("boot"))
            .args(["-extract", "/"])
            .arg(dir.join("iso"))
            .output()?;
    }
    report.layers.push(tree_layer(
        "boot records",
        &dir_manifest(&wa.join("boot"))?,
        &dir_manifest(&wb.join("boot"))?,
        &[],
    ));
    let iso_a = dir_manifest(&wa.join("iso"))?;
    let iso_b = dir_manifest(&wb.join("iso"))?;
    report.layers.push(tree_layer("iso files", &iso_a, &iso_b, &[SQUASHFS_MEMBER, INITRD_MEMBER]));

    let differs = |member: &str| iso_a.get(member).map(|e| &e.kind) != iso_b.get(member).map(|e| &e.kind);
    if differs(SQUASHFS_MEMBER)
        && iso_a.get(SQUASHFS_MEMBER).is_some()
        && iso_b.get(SQUASHFS_MEMBER).is_some()
    {
        for dir in [&wa, &wb] {
            progress(&format!("unpacking {SQUASHFS_MEMBER} of {}", dir.display()));
            runner
                .cmd("unsquashfs", dir)
                .args(["-quiet", "-no-progress", "-no-xattrs", "-d"])
                .arg(dir.join("squashfs"))
                .arg(dir.join("iso/live/filesystem.squashfs"))
                .output()?;
        }
        report.layers.push(tree_layer(
            &format!("squashfs {SQUASHFS_MEMBER}"),
            &dir_manifest(&wa.join("squashfs"))?,
            &dir_manifest(&wb.join("squashfs"))?,
            &[],
        ));
    }
    if differs(INITRD_MEMBER) && iso_a.get(INITRD_MEMBER).is_some() && iso_b.get(INITRD_MEMBER).is_some() {
        for dir in [&wa, &wb] {
            progress(&format!("unpacking {INITRD_MEMBER} of {}", dir.display()));
            unpack_initrd(&runner, &dir.join("iso/live/initrd.img"), &dir.join("initrd"))?;
        }
        report.layers.push(tree_layer(
            &format!("initrd {INITRD_MEMBER}"),
            &dir_manifest(&wa.join("initrd"))?,
            &dir_manifest(&wb.join("initrd"))?,
            &[],
        ));
    }
    Ok(report)
}

/// The extracted member files of a layer, for diffoscope: `(A file, B file)` for a leaf content
/// difference, if both exist on disk under `work`.
pub fn member_files(work: &Path, layer: &str, path: &str) -> Option<(PathBuf, PathBuf)> {
    let sub = if layer == "boot records" {
        "boot"
    } else if layer == "iso files" {
        "iso"
    } else if layer.starts_with("squashfs") {
        "squashfs"
    } else if layer.starts_with("initrd") {
        "initrd"
    } else {
        return None;
    };
    let relative = path.trim_start_matches('/');
    let (a, b) = (work.join("a").join(sub).join(relative), work.join("b").join(sub).join(relative));
    (a.is_file() && b.is_file()).then_some((a, b))
}

fn volume_layer(a: &PrimaryVolume, b: &PrimaryVolume) -> Layer {
    let fa = a.fields();
    let fb = b.fields();
    let differences = fa
        .iter()
        .zip(&fb)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((name, x), (_, y))| Difference {
            path: name.to_string(),
            kind: "field".into(),
            fields: Vec::new(),
            a: Some(x.clone()),
            b: Some(y.clone()),
            expanded: false,
        })
        .collect();
    Layer { name: "iso volume descriptor".into(), compared: fa.len(), differences }
}

fn describe(e: &Entry) -> String {
    let what = match &e.kind {
        Kind::Dir => "directory".to_string(),
        Kind::File { size, sha256 } => format!("{size} bytes sha256 {sha256}"),
        Kind::Symlink { target } => format!("symlink to {target}"),
        Kind::Special(s) => s.clone(),
    };
    format!("{what}, mode {:04o}, owner {}:{}, mtime {}", e.mode, e.uid, e.gid, e.mtime)
}

fn tree_layer(name: &str, a: &TreeManifest, b: &TreeManifest, containers: &[&str]) -> Layer {
    let differences = ceremony_os_tree::diff(a, b)
        .into_iter()
        .map(|change| {
            let (kind, fields, ea, eb) = match &change {
                Change::Added(e) => ("only in B", vec![], None, Some(e)),
                Change::Removed(e) => ("only in A", vec![], Some(e), None),
                Change::Content { before, after } => ("content", vec![], Some(before), Some(after)),
                Change::Metadata { before, after, fields } => {
                    ("metadata", fields.iter().map(|f| f.to_string()).collect(), Some(before), Some(after))
                }
            };
            let path = change.path().to_string();
            Difference {
                expanded: kind == "content" && containers.contains(&path.as_str()),
                path,
                kind: kind.into(),
                fields,
                a: ea.map(describe),
                b: eb.map(describe),
            }
        })
        .collect();
    Layer { name: name.into(), compared: a.entries.len().max(b.entries.len()), differences }
}

fn dir_manifest(dir: &Path) -> Result<TreeManifest, VerifyError> {
    if !dir.exists() {
        return Ok(TreeManifest::default());
    }
    let mut manifest = TreeManifest::scan(dir)?;
    // The extraction directory itself is ours, not the image's.
    manifest.entries.retain(|e| e.path != "/");
    Ok(manifest)
}

/// Unpack an initramfs (gzip, zstd, xz or uncompressed newc cpio) into `dest`.
fn unpack_initrd(runner: &Runner, initrd: &Path, dest: &Path) -> Result<(), VerifyError> {
    let mut magic = [0u8; 6];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(initrd).map_err(|e| VerifyError::io(initrd, e))?;
        f.read_exact(&mut magic).map_err(|e| VerifyError::io(initrd, e))?;
    }
    let decompress = match magic {
        [0x1f, 0x8b, ..] => "gzip -dc",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd -dcq",
        [0xfd, b'7', b'z', b'X', b'Z', 0] => "xz -dc",
        [b'0', b'7', b'0', b'7', b'0', b'1'] => "cat",
        _ => {
            return Err(VerifyError::Invalid(format!(
                "{}: unknown initrd format (magic {})",
                initrd.display(),
                hex::encode(magic)
            )));
        }
    };
    std::fs::create_dir_all(dest).map_err(|e| VerifyError::io(dest, e))?;
    let script = format!("{decompress} \"$1\" | cpio -idmu --quiet --no-absolute-filenames");
    runner.cmd("/bin/sh", dest).args(["-c", &script, "sh"]).arg(initrd).output()?;
    Ok(())
}

pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
