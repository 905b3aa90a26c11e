//! `ceremony-os compare A.iso B.iso`: two ISOs taken apart layer by layer, without rebuilding.
//!
//! Layers, outermost first: the ISO volume descriptor (ids, size, the four volume dates); the El
//! Torito boot catalog; the ISO's structure (every byte range no file's content covers: the system
//! area with the hybrid MBR/GPT, the volume descriptors, path tables, directory records, boot
//! images no file points at, unreferenced gaps and bytes after the volume); the ISO's file tree;
//! the file tree of `/live/filesystem.squashfs`; and `/live/initrd.img`: its segments, the tree
//! the kernel unpacks from all of them (`initramfs`), its hard links and the entries the kernel
//! does not unpack as named. A differing squashfs or initrd
//! in the ISO's file tree is a container: it is marked as expanded and its own layers say what
//! differs inside.
//!
//! Everything is parsed in-process from the images' bytes (`isofs`, `squashfs`, `initrd`,
//! `cpio`, `initramfs`): nothing an image holds is extracted or written anywhere, so no name, symlink or `..`
//! in it can reach the host, and [`Limits`] bound what a crafted image can make compare read.

use crate::VerifyError;
use crate::iso9660::{PrimaryVolume, read_pvd};
use crate::isofs::{IsoImage, IsoKind, SECTOR};
use crate::limits::{Budget, Limits};
use ceremony_os_tree::{Change, Entry, Kind, TreeManifest};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Members of the ISO that are unpacked into layers of their own.
pub const SQUASHFS_MEMBER: &str = "/live/filesystem.squashfs";
pub const INITRD_MEMBER: &str = "/live/initrd.img";

/// Largest initrd read into memory.
const MAX_INITRD_BYTES: u64 = 1 << 30;

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
    /// Where the layer's members are in each image, to read them again (`--diffoscope`).
    #[serde(skip)]
    pub source: LayerSource,
}

#[derive(Debug, Clone, Default)]
pub enum LayerSource {
    #[default]
    None,
    /// Paths are ISO file paths or structure labels, with `(offset, size)` in each image.
    Iso { a: Vec<(String, u64, u64)>, b: Vec<(String, u64, u64)> },
    /// Paths are inside the squashfs member at `(offset, size)` of each image.
    Squashfs { a: (u64, u64), b: (u64, u64) },
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
                out.push_str(&format!("  {:<28} {}\n", what, ceremony_os_render::controls_escaped(&d.path)));
                // Values (link targets, volume fields) are the images' text: escaped.
                if let Some(a) = &d.a {
                    out.push_str(&format!("  {:<28}   A: {}\n", "", ceremony_os_render::controls_escaped(a)));
                }
                if let Some(b) = &d.b {
                    out.push_str(&format!("  {:<28}   B: {}\n", "", ceremony_os_render::controls_escaped(b)));
                }
            }
        }
        let leaves = self.leaf_differences().len();
        if leaves == 0 {
            out.push_str(
                "\nthe images differ, yet no region or file named above explains it: treat them as \
                 different (and report this: compare's model of the image is missing something)\n",
            );
        } else {
            out.push_str(&format!("\n{leaves} differences in all\n"));
        }
        out
    }
}

/// Compare two ISOs.
/// An image to compare must be a regular file, checked before it is opened: opening a FIFO would
/// wait for a writer forever, and a block device's length is not its file size.
fn regular_image(image: &Path) -> Result<(), VerifyError> {
    let meta = std::fs::metadata(image).map_err(|e| VerifyError::io(image, e))?;
    if meta.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let what = match meta.file_type() {
        t if t.is_dir() => "a directory",
        t if t.is_fifo() => "a FIFO",
        t if t.is_block_device() => {
            "a block device (copy the disc to a file first: dd if=DEVICE of=disc.iso)"
        }
        t if t.is_char_device() => "a character device",
        t if t.is_socket() => "a socket",
        _ => "not a regular file",
    };
    Err(VerifyError::Invalid(format!("{}: {what}; compare reads ISO image files", image.display())))
}

pub fn compare(
    a: &Path,
    b: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, VerifyError> {
    for image in [a, b] {
        regular_image(image)?;
    }
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
    let mut budget = Budget::new(*limits);
    report.layers.push(volume_layer(&pvd_a, &pvd_b));
    progress("reading both images' structure and file trees");
    let iso_a = IsoImage::open(a, limits, &mut budget)?;
    let iso_b = IsoImage::open(b, limits, &mut budget)?;
    report.layers.push(tree_layer("boot catalog", &boot_manifest(&iso_a), &boot_manifest(&iso_b), &[]));

    let regions = |iso: &IsoImage| -> Vec<(String, u64, u64)> {
        iso.regions.iter().map(|r| (format!("/{}", r.label), r.offset, r.size)).collect()
    };
    let (regions_a, regions_b) = (regions(&iso_a), regions(&iso_b));
    let mut structure = tree_layer(
        "iso structure",
        &region_manifest(a, &regions_a, &mut budget)?,
        &region_manifest(b, &regions_b, &mut budget)?,
        &[],
    );
    for d in structure.differences.iter_mut().filter(|d| d.kind == "content") {
        if let (Some(ra), Some(rb)) =
            (regions_a.iter().find(|r| r.0 == d.path), regions_b.iter().find(|r| r.0 == d.path))
            && let Some(at) = first_differing_byte(a, ra, b, rb)?
        {
            d.fields.push(format!("first difference at byte {at} of the region"));
        }
    }
    structure.source = LayerSource::Iso { a: regions_a, b: regions_b };
    report.layers.push(structure);

    let files = |iso: &IsoImage| -> Vec<(String, u64, u64)> {
        iso.entries
            .iter()
            .filter_map(|e| match e.kind {
                IsoKind::File { offset, size } => Some((e.path.clone(), offset, size)),
                _ => None,
            })
            .collect()
    };
    let files_a = iso_manifest(a, &iso_a, &mut budget)?;
    let files_b = iso_manifest(b, &iso_b, &mut budget)?;
    let mut iso_layer = tree_layer("iso files", &files_a, &files_b, &[SQUASHFS_MEMBER, INITRD_MEMBER]);
    iso_layer.source = LayerSource::Iso { a: files(&iso_a), b: files(&iso_b) };
    report.layers.push(iso_layer);
    report.layers.push(tree_layer(
        "iso Joliet names",
        &joliet_manifest(a, &iso_a, &mut budget)?,
        &joliet_manifest(b, &iso_b, &mut budget)?,
        &[],
    ));

    let member = |iso: &IsoImage, name: &str| {
        iso.entries.iter().find_map(|e| match e.kind {
            IsoKind::File { offset, size } if e.path == name => Some((offset, size)),
            _ => None,
        })
    };
    let differs = |name: &str| files_a.get(name).map(|e| &e.kind) != files_b.get(name).map(|e| &e.kind);
    if let (Some((oa, sa)), Some((ob, sb))) =
        (member(&iso_a, SQUASHFS_MEMBER), member(&iso_b, SQUASHFS_MEMBER))
        && differs(SQUASHFS_MEMBER)
    {
        progress(&format!("reading {SQUASHFS_MEMBER} of both images"));
        let tree_a = crate::squashfs::read_tree(
            a,
            oa,
            sa,
            &format!("{}:{SQUASHFS_MEMBER}", a.display()),
            &mut budget,
        )?;
        let tree_b = crate::squashfs::read_tree(
            b,
            ob,
            sb,
            &format!("{}:{SQUASHFS_MEMBER}", b.display()),
            &mut budget,
        )?;
        let mut layer = tree_layer(
            &format!("squashfs {SQUASHFS_MEMBER}"),
            &TreeManifest { entries: tree_a.entries },
            &TreeManifest { entries: tree_b.entries },
            &[],
        );
        layer.source = LayerSource::Squashfs { a: (oa, sa), b: (ob, sb) };
        report.layers.push(layer);
        // Extended attributes are what the kernel honours too (security.capability grants
        // powers on exec): a layer of their own when either image has any.
        if !tree_a.xattrs.is_empty() || !tree_b.xattrs.is_empty() {
            report.layers.push(tree_layer(
                &format!("squashfs {SQUASHFS_MEMBER} extended attributes"),
                &TreeManifest { entries: tree_a.xattrs },
                &TreeManifest { entries: tree_b.xattrs },
                &[],
            ));
        }
    }
    if let (Some((oa, sa)), Some((ob, sb))) = (member(&iso_a, INITRD_MEMBER), member(&iso_b, INITRD_MEMBER))
        && differs(INITRD_MEMBER)
    {
        progress(&format!("reading {INITRD_MEMBER} of both images"));
        let seg_a = initrd_segments(a, oa, sa, &mut budget)?;
        let seg_b = initrd_segments(b, ob, sb, &mut budget)?;
        report.layers.extend(initrd_layers(&seg_a, &seg_b, a, b)?);
    }
    Ok(report)
}

/// The initrd's layers: its segments (every byte in one, so a difference no file explains is
/// still named), the tree the kernel unpacks from them, its hard links, and the entries the
/// kernel does not unpack as named (the last two only when either image has any).
fn initrd_layers(
    seg_a: &[crate::initrd::Segment],
    seg_b: &[crate::initrd::Segment],
    a: &Path,
    b: &Path,
) -> Result<Vec<Layer>, VerifyError> {
    let segment_manifest = |segments: &[crate::initrd::Segment]| TreeManifest {
        entries: segments
            .iter()
            .enumerate()
            .map(|(n, s)| Entry {
                path: format!("/#{n} {} at byte {}", s.format, s.offset),
                kind: Kind::File { size: (s.span.1 - s.span.0) as u64, sha256: s.sha256.clone() },
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
            })
            .collect(),
    };
    let unpacked_a = crate::initramfs::unpack(seg_a, &format!("{}:{INITRD_MEMBER}", a.display()))?;
    let unpacked_b = crate::initramfs::unpack(seg_b, &format!("{}:{INITRD_MEMBER}", b.display()))?;
    let manifest = |entries: &[Entry]| TreeManifest { entries: entries.to_vec() };
    let mut layers = vec![
        tree_layer(
            &format!("initrd {INITRD_MEMBER} segments"),
            &segment_manifest(seg_a),
            &segment_manifest(seg_b),
            &[],
        ),
        tree_layer(
            &format!("initrd {INITRD_MEMBER} as the kernel unpacks it"),
            &manifest(&unpacked_a.tree),
            &manifest(&unpacked_b.tree),
            &[],
        ),
    ];
    for (what, side_a, side_b) in [
        ("hard links", &unpacked_a.hard_links, &unpacked_b.hard_links),
        ("entries the kernel does not unpack as named", &unpacked_a.not_unpacked, &unpacked_b.not_unpacked),
    ] {
        if !side_a.is_empty() || !side_b.is_empty() {
            let name = format!("initrd {INITRD_MEMBER} {what}");
            layers.push(tree_layer(&name, &manifest(side_a), &manifest(side_b), &[]));
        }
    }
    // A segment that differs with nothing else to show for it is a container expanded below
    // only when the unpacked layers name something.
    let named_inside = layers[1..].iter().any(|l| !l.differences.is_empty());
    for d in layers[0].differences.iter_mut() {
        d.expanded = named_inside && d.kind == "content";
    }
    Ok(layers)
}

/// Read one side's bytes of a leaf difference again, for diffoscope: ISO files, structure
/// regions and squashfs files (initrd segments are parsed in memory and not kept), up to 256 MiB.
pub fn member_bytes(
    report: &Report,
    layer: &Layer,
    path: &str,
    side_a: bool,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let image = if side_a { &report.a } else { &report.b };
    let (a, b) = match &layer.source {
        LayerSource::Iso { a, b } => (a, b),
        LayerSource::Squashfs { a, b } => {
            let (offset, size) = if side_a { *a } else { *b };
            return crate::squashfs::file_bytes(image, offset, size, path, 256 << 20);
        }
        LayerSource::None => return Ok(None),
    };
    let list = if side_a { a } else { b };
    let Some((_, offset, size)) = list.iter().find(|(p, _, _)| p == path) else { return Ok(None) };
    if *size > 256 << 20 {
        return Ok(None);
    }
    let mut file = std::fs::File::open(image).map_err(|e| VerifyError::io(image, e))?;
    let mut bytes = vec![0u8; *size as usize];
    file.seek(SeekFrom::Start(*offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| VerifyError::io(image, e))?;
    Ok(Some(bytes))
}

fn boot_manifest(iso: &IsoImage) -> TreeManifest {
    let entries = iso
        .boot_entries
        .iter()
        .enumerate()
        .map(|(n, e)| Entry {
            path: format!("/entry #{n}"),
            kind: Kind::Special(format!(
                "platform 0x{:02x} {} media {} load 0x{:04x} sectors {} at sector {}",
                e.platform,
                if e.bootable { "bootable" } else { "not bootable" },
                e.media_type,
                e.load_segment,
                e.sector_count,
                e.lba
            )),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
        })
        .collect();
    TreeManifest { entries }
}

fn hash_range(
    image: &Path,
    offset: u64,
    size: u64,
    what: &str,
    budget: &mut Budget,
) -> Result<String, VerifyError> {
    budget.file(what, size)?;
    let mut file = std::fs::File::open(image).map_err(|e| VerifyError::io(image, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| VerifyError::io(image, e))?;
    let (sha256, read) = budget.hash(what, &mut file, size)?;
    if read != size {
        return Err(VerifyError::Invalid(format!("{what}: the image ends inside it")));
    }
    Ok(sha256)
}

fn region_manifest(
    image: &Path,
    regions: &[(String, u64, u64)],
    budget: &mut Budget,
) -> Result<TreeManifest, VerifyError> {
    let mut entries = Vec::new();
    for (label, offset, size) in regions {
        let sha256 = hash_range(image, *offset, *size, &format!("{}: {label}", image.display()), budget)?;
        entries.push(Entry {
            path: label.clone(),
            kind: Kind::File { size: *size, sha256 },
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
        });
    }
    entries.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(TreeManifest { entries })
}

/// The Joliet tree's files, each said relative to the Rock Ridge tree: the same bytes as the
/// Rock Ridge file of its name, or other bytes (hashed). Linux and GRUB read Rock Ridge; a
/// Joliet reader (Windows) would read these, so a Joliet record re-pointed is named.
fn joliet_manifest(image: &Path, iso: &IsoImage, budget: &mut Budget) -> Result<TreeManifest, VerifyError> {
    let mut entries = Vec::new();
    for (path, offset, size) in &iso.joliet_files {
        let same = iso.entries.iter().any(|e| {
            e.path == *path
                && matches!(e.kind, IsoKind::File { offset: o, size: s } if o == *offset && s == *size)
        });
        let said = if same {
            "the Rock Ridge file's bytes".to_string()
        } else {
            let sha256 =
                hash_range(image, *offset, *size, &format!("{}: Joliet {path}", image.display()), budget)?;
            format!("NOT the bytes of a Rock Ridge file of this name: {size} bytes, sha256 {sha256}")
        };
        entries.push(Entry {
            path: path.clone(),
            kind: Kind::Special(said),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(TreeManifest { entries })
}

fn iso_manifest(image: &Path, iso: &IsoImage, budget: &mut Budget) -> Result<TreeManifest, VerifyError> {
    let mut entries = Vec::new();
    for e in &iso.entries {
        let kind = match &e.kind {
            IsoKind::Dir => Kind::Dir,
            IsoKind::Symlink(target) => Kind::Symlink { target: target.clone() },
            IsoKind::File { offset, size } => {
                let sha256 =
                    hash_range(image, *offset, *size, &format!("{}:{}", image.display(), e.path), budget)?;
                Kind::File { size: *size, sha256 }
            }
        };
        entries.push(Entry {
            path: e.path.clone(),
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        });
    }
    entries.sort_by(|x, y| x.path.cmp(&y.path));
    entries.dedup_by(|x, y| x.path == y.path);
    Ok(TreeManifest { entries })
}

fn initrd_segments(
    image: &Path,
    offset: u64,
    size: u64,
    budget: &mut Budget,
) -> Result<Vec<crate::initrd::Segment>, VerifyError> {
    let what = format!("{}:{INITRD_MEMBER}", image.display());
    if size > MAX_INITRD_BYTES {
        return Err(VerifyError::Limit(format!(
            "{what} is {size} bytes, more than the {MAX_INITRD_BYTES} compare reads"
        )));
    }
    let mut file = std::fs::File::open(image).map_err(|e| VerifyError::io(image, e))?;
    let mut bytes = vec![0u8; size as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| VerifyError::io(image, e))?;
    crate::initrd::segments(&bytes, &what, budget)
}

/// The first offset within two regions where their bytes differ (or where the shorter ends).
fn first_differing_byte(
    a: &Path,
    ra: &(String, u64, u64),
    b: &Path,
    rb: &(String, u64, u64),
) -> Result<Option<u64>, VerifyError> {
    let mut fa = std::fs::File::open(a).map_err(|e| VerifyError::io(a, e))?;
    let mut fb = std::fs::File::open(b).map_err(|e| VerifyError::io(b, e))?;
    fa.seek(SeekFrom::Start(ra.1)).map_err(|e| VerifyError::io(a, e))?;
    fb.seek(SeekFrom::Start(rb.1)).map_err(|e| VerifyError::io(b, e))?;
    let common = ra.2.min(rb.2);
    let (mut ba, mut bb) = (vec![0u8; SECTOR as usize * 16], vec![0u8; SECTOR as usize * 16]);
    let mut done = 0u64;
    while done < common {
        let n = ((common - done) as usize).min(ba.len());
        fa.read_exact(&mut ba[..n]).map_err(|e| VerifyError::io(a, e))?;
        fb.read_exact(&mut bb[..n]).map_err(|e| VerifyError::io(b, e))?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(done + i as u64));
        }
        done += n as u64;
    }
    Ok((ra.2 != rb.2).then_some(common))
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
    Layer { name: "iso volume descriptor".into(), compared: fa.len(), differences, source: LayerSource::None }
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
    Layer {
        name: name.into(),
        compared: a.entries.len().max(b.entries.len()),
        differences,
        source: LayerSource::None,
    }
}

pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Link targets, volume fields and names are the images' text: the report shows their
    /// control characters escaped, so a crafted image cannot draw a line of its own.
    #[test]
    fn the_report_escapes_text_from_the_images() {
        let difference = Difference {
            path: "/bin/\u{1b}[2Kx".into(),
            kind: "symlink".into(),
            fields: Vec::new(),
            a: Some("/usr/bin/x".into()),
            b: Some("/tmp/x\r\nthe images are identical".into()),
            expanded: false,
        };
        let report = Report {
            a: "a.iso".into(),
            b: "b.iso".into(),
            a_sha256: "1".repeat(64),
            b_sha256: "2".repeat(64),
            identical: false,
            layers: vec![Layer {
                name: "squashfs".into(),
                compared: 1,
                differences: vec![difference],
                source: LayerSource::None,
            }],
        };
        let text = report.render();
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
        assert!(text.contains("/bin/\\x1b[2Kx"), "{text}");
        assert!(text.contains("B: /tmp/x\\x0d\\x0athe images are identical"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("the images are identical")), "{text}");
    }

    /// A FIFO, a directory or a device is refused before it is opened (a FIFO would block the
    /// open for ever).
    #[test]
    fn only_regular_files_are_compared() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.iso");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let mut progress = |_: &str| {};
        let err = compare(&fifo, &fifo, &Limits::default(), &mut progress).unwrap_err().to_string();
        assert!(err.contains("pipe.iso: a FIFO; compare reads ISO image files"), "{err}");
        let err = compare(dir.path(), dir.path(), &Limits::default(), &mut progress).unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
        let err = regular_image(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(err.contains("a character device"), "{err}");
    }
}
