//! Reading an ISO 9660 image in-process, for `compare`: the file tree with Rock Ridge names,
//! modes, owners, times and symlinks (IEEE P1282 / SUSP), the El Torito boot catalog, and a map
//! of every byte range that is not file content (system area, descriptors, path tables,
//! directories, the boot catalog, boot images no file points at, gaps, bytes after the volume),
//! so that `compare` can compare all of the image, not only what a file tree shows.
//!
//! Nothing is extracted: file contents are hashed straight from the image. The image is hostile
//! until checked: every extent must lie inside the file, directory cycles are cut, depth, entry
//! counts and bytes read are bounded by [`Limits`], names are kept as text (never used as paths).
//! The tree is the one Linux's isofs reads (the first primary descriptor, Rock Ridge names,
//! relocated directories where their CL entry stands); what Linux and GRUB would read
//! differently, as far as modelled here, is refused: a second descriptor unlike the first, a boot
//! record away from sector 17, Rock Ridge without SP and ER on the root, a root "." elsewhere, an
//! associated file, a missing or odd NM, two entries of one name, a PX type unlike the record's,
//! RE on what no CL reads, ZF, RR, entries after ST, extended attribute records, interleaving and
//! multi-extent files. The Joliet tree's files are listed too (Joliet readers see them), each
//! said as the Rock Ridge file's bytes or not. Not modelled: isolinux's own reader.
//!
//! Reference: ECMA-119 (ISO 9660), SUSP 1.12, RRIP 1.12, El Torito 1.0.

use crate::VerifyError;
use crate::limits::{Budget, Limits};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const SECTOR: u64 = 2048;
/// Largest directory extent or path table read (a real one is a few KiB).
const MAX_DIRECTORY_BYTES: u64 = 16 << 20;

/// One file tree entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoEntry {
    /// `/`-separated path from the root; names are escaped (see [`display_name`]).
    pub path: String,
    pub kind: IsoKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoKind {
    Dir,
    /// Byte offset and length of the content in the image.
    File {
        offset: u64,
        size: u64,
    },
    Symlink(String),
}

/// A labelled byte range of the image that is not file content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub label: String,
    pub offset: u64,
    pub size: u64,
}

/// An El Torito boot catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub platform: u8,
    pub bootable: bool,
    pub media_type: u8,
    pub load_segment: u16,
    pub sector_count: u16,
    pub lba: u32,
}

#[derive(Debug, Clone)]
pub struct IsoImage {
    pub file_size: u64,
    pub volume_bytes: u64,
    pub entries: Vec<IsoEntry>,
    /// The Joliet tree's files (what Windows and other Joliet readers see): path, offset, size.
    pub joliet_files: Vec<(String, u64, u64)>,
    pub boot_entries: Vec<BootEntry>,
    pub regions: Vec<Region>,
}

/// Escape a name for display and as a manifest key: `/`, control characters, backslash and the
/// names `.`/`..` cannot be mistaken for path structure.
pub fn display_name(raw: &[u8]) -> String {
    if raw == b"." || raw == b".." || raw.is_empty() {
        return raw.iter().map(|b| format!("\\x{b:02x}")).collect::<String>() + "\\(invalid name)";
    }
    // Bytes that are not UTF-8 are escaped, not replaced: two names that differ stay two keys.
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '/' | '\\' => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path of raw name components as a manifest path: empty components dropped, each escaped.
pub fn manifest_path<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).map(display_name).collect();
    format!("/{}", parts.join("/"))
}

struct Reader<'a> {
    file: std::fs::File,
    path: &'a Path,
    size: u64,
}

impl Reader<'_> {
    fn read(&mut self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, VerifyError> {
        let end = offset.checked_add(len).filter(|end| *end <= self.size).ok_or_else(|| {
            VerifyError::Invalid(format!(
                "{}: {what} at byte {offset} ({len} bytes) lies beyond the end of the image ({} bytes)",
                self.path.display(),
                self.size
            ))
        })?;
        let _ = end;
        let mut buf = vec![0u8; len as usize];
        self.file.seek(SeekFrom::Start(offset)).map_err(|e| VerifyError::io(self.path, e))?;
        self.file.read_exact(&mut buf).map_err(|e| VerifyError::io(self.path, e))?;
        Ok(buf)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A directory record (ECMA-119 9.1), with its Rock Ridge fields when present.
#[derive(Debug, Default)]
struct Record {
    extent: u32,
    size: u32,
    flags: u8,
    iso_name: Vec<u8>,
    recorded: i64,
    rr_name: Option<Vec<u8>>,
    mode: Option<u32>,
    uid: u32,
    gid: u32,
    mtime: Option<i64>,
    symlink: Option<String>,
    relocated: bool,
    /// Rock Ridge CL: this record stands for the directory relocated to this extent.
    child_link: Option<u32>,
    /// An SP entry (on the root's "." record: the image uses SUSP, so Linux reads Rock Ridge).
    sp: bool,
    /// Any Rock Ridge entry (PX, NM, SL, TF, RE, CL).
    rock: bool,
    /// Why Linux and GRUB would not read this record's NM as the name compare reads.
    bad_name: Option<String>,
    /// An ER entry (on the root's "."): Linux prefers Rock Ridge to Joliet only with it.
    er: bool,
    /// The SP entry's byte count to skip in every later system use area.
    sp_skip: u8,
    /// The type PX gives (S_IFMT bits), when PX is there.
    px_type: Option<u32>,
    /// A System Use entry Linux or GRUB would read in a way compare does not model.
    unmodelled: Option<String>,
    /// Extended attribute record length, file unit size and interleave gap (all 0 when plain).
    xar: u8,
    interleaved: bool,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// ECMA-119 9.1.5: years since 1900, month, day, hour, minute, second, offset in 15 minutes.
fn seven_byte_time(b: &[u8]) -> i64 {
    let days = days_from_civil(1900 + b[0] as i64, b[1].clamp(1, 12) as i64, b[2].clamp(1, 31) as i64);
    let offset = (b[6] as i8) as i64 * 15 * 60;
    days * 86400 + b[3] as i64 * 3600 + b[4] as i64 * 60 + b[5] as i64 - offset
}

/// ECMA-119 8.4.26.1: 16 ASCII digits and an offset.
fn seventeen_byte_time(b: &[u8]) -> i64 {
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&b[r]).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0)
    };
    let days = days_from_civil(num(0..4), num(4..6).clamp(1, 12), num(6..8).clamp(1, 31));
    let offset = (b[16] as i8) as i64 * 15 * 60;
    days * 86400 + num(8..10) * 3600 + num(10..12) * 60 + num(12..14) - offset
}

/// Parse the System Use entries of a record (following CE continuations, at most 32).
fn parse_susp(
    reader: &mut Reader<'_>,
    mut area: Vec<u8>,
    skip: usize,
    record: &mut Record,
    structure: &mut Vec<Region>,
) -> Result<(), VerifyError> {
    let mut continuations = 0;
    let mut pos = skip.min(area.len());
    let mut name = Vec::new();
    let mut link_parts: Vec<String> = Vec::new();
    let mut link_partial = String::new();
    loop {
        let mut next = None;
        while pos + 4 <= area.len() {
            let sig = [area[pos], area[pos + 1]];
            let len = area[pos + 2] as usize;
            if len < 4 || pos + len > area.len() {
                break;
            }
            let body = &area[pos + 4..pos + len];
            if matches!(&sig, b"PX" | b"NM" | b"SL" | b"TF" | b"RE" | b"CL") {
                record.rock = true;
            }
            match &sig {
                b"SP" => {
                    record.sp = true;
                    record.sp_skip = body.get(2).copied().unwrap_or(0);
                }
                b"ER" => record.er = true,
                b"ZF" | b"RR" => {
                    record.unmodelled.get_or_insert(format!(
                        "a {} entry (Linux reads it: {})",
                        String::from_utf8_lossy(&sig),
                        if &sig == b"ZF" {
                            "zisofs compression"
                        } else {
                            "Rock Ridge flags that can hide NM"
                        }
                    ));
                }
                b"CL" if body.len() >= 8 => record.child_link = Some(le32(body, 0)),
                b"PX" if body.len() >= 32 => {
                    record.mode = Some(le32(body, 0));
                    record.px_type = Some(le32(body, 0) & 0o170000);
                    record.uid = le32(body, 16);
                    record.gid = le32(body, 24);
                }
                // Linux ignores an NM with flags other than CONTINUE (and cuts a name at NUL),
                // GRUB reads it otherwise: such a name is refused, not guessed.
                b"NM" if !body.is_empty() => {
                    let (flags, part) = (body[0], &body[1..]);
                    if flags & !0x01 != 0 {
                        record.bad_name =
                            Some(format!("an NM entry with flags {flags:#04x} (Linux ignores it)"));
                    } else if part.contains(&0) || part.contains(&b'/') {
                        record.bad_name = Some("an NM name holding NUL or '/'".into());
                    }
                    name.extend_from_slice(part);
                }
                b"SL" if !body.is_empty() => {
                    let mut i = 1;
                    while i + 2 <= body.len() {
                        let (flags, clen) = (body[i], body[i + 1] as usize);
                        let content = &body[(i + 2).min(body.len())..(i + 2 + clen).min(body.len())];
                        let piece = if flags & 0x08 != 0 {
                            "/".to_string()
                        } else if flags & 0x02 != 0 {
                            ".".to_string()
                        } else if flags & 0x04 != 0 {
                            "..".to_string()
                        } else {
                            String::from_utf8_lossy(content).into_owned()
                        };
                        link_partial.push_str(&piece);
                        if flags & 0x01 == 0 {
                            link_parts.push(std::mem::take(&mut link_partial));
                        }
                        i += 2 + clen;
                    }
                }
                b"TF" if !body.is_empty() => {
                    let flags = body[0];
                    let long = flags & 0x80 != 0;
                    let width = if long { 17 } else { 7 };
                    let mut at = 1;
                    for bit in 0..7 {
                        if flags & (1 << bit) == 0 {
                            continue;
                        }
                        if at + width > body.len() {
                            break;
                        }
                        // Bit 1 is the modification time.
                        if bit == 1 {
                            let stamp = &body[at..at + width];
                            record.mtime =
                                Some(if long { seventeen_byte_time(stamp) } else { seven_byte_time(stamp) });
                        }
                        at += width;
                    }
                }
                b"RE" => record.relocated = true,
                b"CE" if body.len() >= 20 => {
                    next = Some((le32(body, 0) as u64, le32(body, 8) as u64, le32(body, 16) as u64));
                }
                // Linux reads on past ST; GRUB and compare stop: entries after it are refused.
                b"ST" => {
                    if area[pos + len..].iter().any(|b| *b != 0) {
                        record
                            .unmodelled
                            .get_or_insert("entries after an ST entry (Linux reads them, GRUB stops)".into());
                    }
                    break;
                }
                _ => {}
            }
            pos += len;
        }
        match next {
            Some((block, offset, len)) if continuations < 32 && len <= SECTOR => {
                continuations += 1;
                let at = block * SECTOR + offset;
                area = reader.read(at, len, "a Rock Ridge continuation area")?;
                structure.push(Region {
                    label: "Rock Ridge continuation areas".into(),
                    offset: at,
                    size: len,
                });
                pos = 0;
            }
            _ => break,
        }
    }
    if !name.is_empty() {
        if name.len() >= 254 {
            record.bad_name =
                Some(format!("a Rock Ridge name of {} bytes (Linux cuts it at 253)", name.len()));
        } else if name == b"." || name == b".." {
            record.bad_name = Some("a Rock Ridge name '.' or '..'".into());
        }
        record.rr_name = Some(name);
    }
    if !link_parts.is_empty() || !link_partial.is_empty() {
        if !link_partial.is_empty() {
            link_parts.push(link_partial);
        }
        let mut target = String::new();
        for (i, part) in link_parts.iter().enumerate() {
            if part == "/" {
                target.push('/');
                continue;
            }
            if i > 0 && !target.ends_with('/') {
                target.push('/');
            }
            target.push_str(part);
        }
        record.symlink = Some(target);
    }
    Ok(())
}

/// The refusal of an image that Linux, GRUB or firmware would read differently from compare.
fn read_differently(image: &Path, what: &str) -> VerifyError {
    VerifyError::Invalid(format!(
        "{}: {what}; compare refuses an image that two readers would read differently",
        image.display()
    ))
}

/// A Joliet name (UCS-2, big-endian) without its `;version`, escaped like every name here.
fn joliet_name(raw: &[u8]) -> String {
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let name = String::from_utf16_lossy(&units);
    let name = name.split(';').next().unwrap_or_default();
    display_name(name.as_bytes())
}

/// A plain ISO 9660 name as Linux and GRUB read it: without `;version` and a trailing dot,
/// lowercased.
fn iso_name_as_read(iso_name: &[u8]) -> Vec<u8> {
    let name = iso_name.split(|b| *b == b';').next().unwrap_or(&[]);
    name.strip_suffix(b".").unwrap_or(name).to_ascii_lowercase()
}

/// The `.` and `..` records of a directory (identifiers 0x00 and 0x01).
fn is_self_or_parent(record: &Record) -> bool {
    record.iso_name == [0] || record.iso_name == [1]
}

/// Parse one directory record starting at `rec` (its first byte is the length).
fn parse_record(
    reader: &mut Reader<'_>,
    rec: &[u8],
    susp_skip: usize,
    structure: &mut Vec<Region>,
) -> Result<Record, VerifyError> {
    let name_len = rec[32] as usize;
    let name_end = (33 + name_len).min(rec.len());
    let mut record = Record {
        extent: le32(rec, 2),
        size: le32(rec, 10),
        flags: rec[25],
        iso_name: rec[33..name_end].to_vec(),
        recorded: seven_byte_time(&rec[18..25]),
        xar: rec[1],
        interleaved: rec[26] != 0 || rec[27] != 0,
        ..Default::default()
    };
    let su_start = name_end + usize::from(name_len.is_multiple_of(2));
    if su_start < rec.len() {
        parse_susp(reader, rec[su_start..].to_vec(), susp_skip, &mut record, structure)?;
    }
    Ok(record)
}

/// The records of one directory extent.
fn read_directory(
    reader: &mut Reader<'_>,
    extent: u32,
    size: u32,
    susp_skip: usize,
    structure: &mut Vec<Region>,
) -> Result<Vec<Record>, VerifyError> {
    let offset = extent as u64 * SECTOR;
    if size as u64 > MAX_DIRECTORY_BYTES {
        return Err(VerifyError::Limit(format!(
            "{}: a directory at byte {offset} claims {size} bytes (at most {MAX_DIRECTORY_BYTES})",
            reader.path.display()
        )));
    }
    let data = reader.read(offset, size as u64, "a directory")?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let len = data[pos] as usize;
        if len == 0 {
            // Records do not cross sectors: zero padding up to the next one.
            pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
            continue;
        }
        if len < 34 || pos + len > data.len() {
            return Err(VerifyError::Invalid(format!(
                "{}: malformed directory record at byte {}",
                reader.path.display(),
                offset + pos as u64
            )));
        }
        records.push(parse_record(reader, &data[pos..pos + len], susp_skip, structure)?);
        pos += len;
    }
    Ok(records)
}

impl IsoImage {
    pub fn open(path: &Path, limits: &Limits, budget: &mut Budget) -> Result<Self, VerifyError> {
        let file = std::fs::File::open(path).map_err(|e| VerifyError::io(path, e))?;
        let meta = file.metadata().map_err(|e| VerifyError::io(path, e))?;
        if !meta.is_file() {
            return Err(VerifyError::NotAnIso {
                path: path.to_path_buf(),
                message: "not a regular file".into(),
            });
        }
        let pvd = crate::iso9660::read_pvd(path)?;
        let mut reader = Reader { file, path, size: meta.len() };
        let mut structure =
            vec![Region { label: "system area (MBR, GPT, boot code)".into(), offset: 0, size: 16 * SECTOR }];

        // Volume descriptors up to the terminator.
        let mut pvd_sector = None;
        let mut joliet_root = None;
        let mut catalog = None;
        let mut index = 16u64;
        loop {
            if index > 16 + 64 {
                return Err(VerifyError::Invalid(format!(
                    "{}: no volume descriptor set terminator",
                    path.display()
                )));
            }
            let sector = reader.read(index * SECTOR, SECTOR, "a volume descriptor")?;
            if &sector[1..6] != b"CD001" {
                return Err(VerifyError::Invalid(format!(
                    "{}: sector {index} is not a volume descriptor",
                    path.display()
                )));
            }
            // Linux reads the first primary descriptor, GRUB the last, and firmware the boot
            // record at sector 17 only: an image they would read differently is refused.
            let ambiguous = |what: &str| read_differently(path, &format!("sector {index}: {what}"));
            if index == 16 && sector[0] != 1 {
                return Err(ambiguous(
                    "not the primary volume descriptor (isolinux and Linux look for it here)",
                ));
            }
            match sector[0] {
                0 if sector[7..30].starts_with(b"EL TORITO SPECIFICATION") => {
                    if index != 17 {
                        return Err(ambiguous(
                            "an El Torito boot record away from sector 17, where firmware looks",
                        ));
                    }
                    catalog = Some(le32(&sector, 71))
                }
                1 => match &pvd_sector {
                    None => pvd_sector = Some(sector.clone()),
                    Some(first) if *first == sector => {}
                    Some(_) => {
                        return Err(ambiguous(
                            "a second primary volume descriptor unlike the first (Linux reads the first, GRUB the last)",
                        ));
                    }
                },
                2 if matches!(&sector[88..91], b"%/@" | b"%/C" | b"%/E") => match &joliet_root {
                    None => joliet_root = Some(sector[156..190].to_vec()),
                    Some(first) if first[..] == sector[156..190] => {}
                    Some(_) => {
                        return Err(ambiguous(
                            "a second Joliet descriptor with another root (Linux reads the first, GRUB the last)",
                        ));
                    }
                },
                255 => break,
                _ => {}
            }
            index += 1;
        }
        structure.push(Region {
            label: "volume descriptors".into(),
            offset: 16 * SECTOR,
            size: (index - 15) * SECTOR,
        });
        let pvd_sector = pvd_sector.ok_or_else(|| {
            VerifyError::Invalid(format!("{}: no primary volume descriptor", path.display()))
        })?;
        if le16(&pvd_sector, 128) as u64 != SECTOR {
            return Err(VerifyError::Invalid(format!("{}: logical block size is not 2048", path.display())));
        }
        // Path tables (L and M).
        let table_size = (le32(&pvd_sector, 132) as u64).min(MAX_DIRECTORY_BYTES);
        for (label, at) in [
            ("path table (L)", le32(&pvd_sector, 140)),
            ("path table (M)", u32::from_be_bytes(pvd_sector[148..152].try_into().expect("4"))),
        ] {
            if at != 0 {
                reader.read(at as u64 * SECTOR, table_size, label)?;
                structure.push(Region { label: label.into(), offset: at as u64 * SECTOR, size: table_size });
            }
        }

        // The primary (Rock Ridge) tree.
        let root = parse_record(&mut reader, &pvd_sector[156..190], 0, &mut structure)?;
        let mut entries = Vec::new();
        let mut visited = BTreeSet::new();
        // The root's "." record carries SUSP's SP entry, which tells how many bytes to skip.
        let first = read_directory(&mut reader, root.extent, root.size, 0, &mut structure)?;
        let susp_skip = 0;
        let root_meta = first.iter().find(|r| r.iso_name == [0]);
        // Linux reads Rock Ridge only where the root's "." record has SUSP's SP entry, and prefers
        // it to Joliet only with an ER entry there too; it lists the root from that "." record.
        let refuse_image = |what: &str| read_differently(path, what);
        let rock = root_meta.is_some_and(|r| r.sp);
        match root_meta {
            None => return Err(refuse_image("the root directory has no \".\" record")),
            Some(dot) if dot.extent != root.extent => {
                return Err(refuse_image(
                    "the root's \".\" record points elsewhere than the volume descriptor (Linux lists the root from it)",
                ));
            }
            Some(dot) if dot.sp && !dot.er => {
                return Err(refuse_image(
                    "Rock Ridge without an ER entry (Linux then reads the Joliet tree, GRUB and compare Rock Ridge)",
                ));
            }
            Some(dot) if dot.sp && dot.sp_skip != 0 => {
                return Err(refuse_image("an SP entry that skips bytes of every system use area"));
            }
            Some(_) if !rock && joliet_root.is_some() => {
                return Err(refuse_image(
                    "Joliet without Rock Ridge (Linux and GRUB read the Joliet names, compare the ISO names)",
                ));
            }
            Some(_) => {}
        }
        let mut relocated = Vec::new();
        let mut cl_targets = BTreeSet::new();
        entries.push(IsoEntry {
            path: "/".into(),
            kind: IsoKind::Dir,
            mode: root_meta.and_then(|r| r.mode).unwrap_or(0o40555) & 0o7777,
            uid: root_meta.map(|r| r.uid).unwrap_or(0),
            gid: root_meta.map(|r| r.gid).unwrap_or(0),
            mtime: root_meta.map(|r| r.mtime.unwrap_or(r.recorded)).unwrap_or(0),
        });
        let mut stack = vec![(root.extent, root.size, String::new(), 0usize)];
        while let Some((extent, size, dir_path, depth)) = stack.pop() {
            if depth > limits.max_depth {
                return Err(VerifyError::Limit(format!(
                    "{}: directories nest deeper than {} levels at {dir_path}",
                    path.display(),
                    limits.max_depth
                )));
            }
            if !visited.insert(extent) {
                return Err(VerifyError::Invalid(format!(
                    "{}: directory {dir_path}/ points back at an extent already visited (a cycle)",
                    path.display()
                )));
            }
            structure.push(Region {
                label: format!("directory records of {}/", dir_path),
                offset: extent as u64 * SECTOR,
                size: size as u64,
            });
            let records = read_directory(&mut reader, extent, size, susp_skip, &mut structure)?;
            let mut names = BTreeSet::new();
            for mut record in records {
                if is_self_or_parent(&record) {
                    continue;
                }
                // A relocated directory is read where its CL record stands, as Linux does; GRUB
                // reads it where it is, so an RE record no CL points at is refused below.
                if record.relocated {
                    let at = format!("{dir_path}/{}", display_name(&record.iso_name));
                    relocated.push((record.extent, record.size, record.flags & 0x02 != 0, at));
                    continue;
                }
                budget.entry(path)?;
                let shown = display_name(&record.iso_name);
                let refuse = |what: String| {
                    read_differently(path, &format!("in {dir_path}/, the record {shown:?}: {what}"))
                };
                if record.flags & 0x04 != 0 {
                    return Err(refuse("marked an associated file (Linux hides it, GRUB reads it)".into()));
                }
                if let Some(why) = record.bad_name.as_ref().or(record.unmodelled.as_ref()) {
                    return Err(refuse(why.clone()));
                }
                if record.xar != 0 || record.interleaved {
                    return Err(refuse(
                        "an extended attribute record or interleaving (Linux reads the data elsewhere than GRUB)".into(),
                    ));
                }
                let raw = match (&record.rr_name, rock) {
                    (Some(name), true) => name.clone(),
                    (None, true) => {
                        return Err(refuse(
                            "no Rock Ridge name (Linux and GRUB derive others from the ISO name)".into(),
                        ));
                    }
                    (_, false) if record.rock => {
                        return Err(refuse(
                            "Rock Ridge entries in an image whose root has no SP entry (Linux ignores them)"
                                .into(),
                        ));
                    }
                    (_, false) => iso_name_as_read(&record.iso_name),
                };
                if !names.insert(raw.clone()) {
                    return Err(refuse(format!(
                        "a second entry named {:?} in one directory",
                        display_name(&raw)
                    )));
                }
                let entry_path = format!("{dir_path}/{}", display_name(&raw));
                if let Some(location) = record.child_link {
                    // The relocated directory's own "." record gives its size and attributes.
                    let dot =
                        read_directory(&mut reader, location, SECTOR as u32, susp_skip, &mut structure)?
                            .into_iter()
                            .next()
                            .filter(|r| r.iso_name == [0] && r.extent == location)
                            .ok_or_else(|| {
                                refuse(format!("a CL entry to sector {location}, which holds no directory"))
                            })?;
                    record = Record { iso_name: record.iso_name, ..dot };
                    cl_targets.insert(location);
                }
                let is_dir = record.flags & 0x02 != 0;
                // Linux and GRUB take the type from PX: it must be what compare reads.
                let read_as = if record.symlink.is_some() {
                    0o120000
                } else if is_dir {
                    0o040000
                } else {
                    0o100000
                };
                if record.px_type.is_some_and(|t| t != read_as) {
                    return Err(refuse(format!(
                        "a PX type {:o} that is not the {:o} its flags and entries say",
                        record.px_type.unwrap_or(0),
                        read_as
                    )));
                }
                if record.flags & 0x80 != 0 {
                    return Err(VerifyError::Invalid(format!(
                        "{}: {entry_path} is a multi-extent file, which compare does not read",
                        path.display()
                    )));
                }
                let default_mode = if is_dir { 0o40555 } else { 0o100444 };
                let kind = if let Some(target) = &record.symlink {
                    IsoKind::Symlink(target.clone())
                } else if is_dir {
                    stack.push((record.extent, record.size, entry_path.clone(), depth + 1));
                    IsoKind::Dir
                } else {
                    let offset = record.extent as u64 * SECTOR;
                    let size = record.size as u64;
                    if offset.checked_add(size).is_none_or(|end| end > reader.size) {
                        return Err(VerifyError::Invalid(format!(
                            "{}: {entry_path} claims {size} bytes at byte {offset}, beyond the end of the image",
                            path.display()
                        )));
                    }
                    IsoKind::File { offset, size }
                };
                entries.push(IsoEntry {
                    path: entry_path,
                    kind,
                    mode: record.mode.unwrap_or(default_mode) & 0o7777,
                    uid: record.uid,
                    gid: record.gid,
                    mtime: record.mtime.unwrap_or(record.recorded),
                });
            }
        }

        // What Linux hides (RE) is only what it reads elsewhere: a relocated directory a CL entry
        // points at, or a directory (xorriso's rr_moved, also marked RE) holding only such.
        let mut hidden = relocated;
        let mut rounds = 0;
        while let Some((extent, size, is_dir, at)) = hidden.pop() {
            if cl_targets.contains(&extent) {
                continue;
            }
            rounds += 1;
            if !is_dir || rounds > 64 {
                return Err(refuse_image(&format!(
                    "{at} is marked relocated (RE) but no CL entry points at it (Linux hides it, GRUB reads it)"
                )));
            }
            structure.push(Region {
                label: format!("directory records of {at}/ (relocated, hidden)"),
                offset: extent as u64 * SECTOR,
                size: size as u64,
            });
            for child in read_directory(&mut reader, extent, size, susp_skip, &mut structure)? {
                if is_self_or_parent(&child) {
                    continue;
                }
                if !child.relocated {
                    return Err(refuse_image(&format!(
                        "{at} is marked relocated (RE), which Linux hides, but holds {:?}, which is not (GRUB reads it)",
                        display_name(&child.iso_name)
                    )));
                }
                let child_at = format!("{at}/{}", display_name(&child.iso_name));
                hidden.push((child.extent, child.size, child.flags & 0x02 != 0, child_at));
            }
        }

        // The Joliet tree: its directories are structure (its files share the primary's extents).
        let mut joliet_files = Vec::new();
        if let Some(root) = joliet_root {
            let root = parse_record(&mut reader, &root, usize::MAX, &mut structure)?;
            let mut stack = vec![(root.extent, root.size, 0usize, String::new())];
            let mut seen = BTreeSet::new();
            while let Some((extent, size, depth, dir_path)) = stack.pop() {
                if depth > limits.max_depth || !seen.insert(extent) {
                    continue;
                }
                budget.entry(path)?;
                structure.push(Region {
                    label: "Joliet directory records".into(),
                    offset: extent as u64 * SECTOR,
                    size: size as u64,
                });
                for record in read_directory(&mut reader, extent, size, usize::MAX, &mut structure)? {
                    if is_self_or_parent(&record) {
                        continue;
                    }
                    let entry_path = format!("{dir_path}/{}", joliet_name(&record.iso_name));
                    if record.flags & 0x02 != 0 {
                        stack.push((record.extent, record.size, depth + 1, entry_path));
                    } else {
                        joliet_files.push((entry_path, record.extent as u64 * SECTOR, record.size as u64));
                    }
                }
            }
        }

        // El Torito: the catalog and every boot image.
        let mut boot_entries = Vec::new();
        if let Some(lba) = catalog {
            let bytes = reader.read(lba as u64 * SECTOR, SECTOR, "the El Torito boot catalog")?;
            structure.push(Region {
                label: "El Torito boot catalog".into(),
                offset: lba as u64 * SECTOR,
                size: SECTOR,
            });
            let mut platform = bytes[1];
            for chunk in bytes.chunks(32).skip(1) {
                if chunk.iter().all(|b| *b == 0) {
                    break;
                }
                match chunk[0] {
                    0x90 | 0x91 => platform = chunk[1],
                    0x88 | 0x00 => boot_entries.push(BootEntry {
                        platform,
                        bootable: chunk[0] == 0x88,
                        media_type: chunk[1],
                        load_segment: le16(chunk, 2),
                        sector_count: le16(chunk, 6),
                        lba: le32(chunk, 8),
                    }),
                    _ => {}
                }
            }
        }

        let mut image = IsoImage {
            file_size: reader.size,
            volume_bytes: pvd.volume_bytes,
            entries,
            joliet_files,
            boot_entries,
            regions: Vec::new(),
        };
        image.regions = image.structure_map(structure);
        Ok(image)
    }

    /// Every byte range that no file's content covers, labelled: the structures found, boot images
    /// no file points at, unreferenced gaps, and bytes after the volume.
    fn structure_map(&self, mut structure: Vec<Region>) -> Vec<Region> {
        let mut files: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                IsoKind::File { offset, size } if size > 0 => Some((offset, offset + size)),
                _ => None,
            })
            .collect();
        for (n, boot) in self.boot_entries.iter().enumerate() {
            let offset = boot.lba as u64 * SECTOR;
            let inside_a_file = files.iter().any(|(start, end)| *start <= offset && offset < *end);
            if !inside_a_file {
                let size = (boot.sector_count as u64 * 512).max(512);
                structure.push(Region { label: format!("boot image #{n} (not a file)"), offset, size });
            }
        }
        files.extend(structure.iter().map(|r| (r.offset, r.offset + r.size)));
        files.sort();
        // Gaps between everything known, then what lies after the volume.
        let mut gaps = Vec::new();
        let mut covered = 0u64;
        let volume_end = self.volume_bytes.min(self.file_size);
        for (start, end) in &files {
            if *start > covered && covered < volume_end {
                gaps.push((covered, (*start).min(volume_end)));
            }
            covered = covered.max(*end);
        }
        if covered < volume_end {
            gaps.push((covered, volume_end));
        }
        for (n, (start, end)) in gaps.into_iter().enumerate() {
            structure.push(Region {
                label: format!("unreferenced bytes #{n}"),
                offset: start,
                size: end - start,
            });
        }
        if self.file_size > self.volume_bytes {
            structure.push(Region {
                label: "bytes after the volume".into(),
                offset: self.volume_bytes,
                size: self.file_size - self.volume_bytes,
            });
        }
        // Regions with the same label (Rock Ridge continuation areas...) are kept apart by order.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for region in &mut structure {
            let n = counts.entry(region.label.clone()).or_default();
            if *n > 0 {
                region.label = format!("{} ({})", region.label, *n + 1);
            }
            *n += 1;
        }
        structure
    }
}

#[cfg(test)]
mod tests {
    use super::display_name;

    #[test]
    fn names_that_differ_stay_different_keys() {
        assert_ne!(display_name(b"a\xff"), display_name(b"a\xfe"), "lossy UTF-8 made both a\u{fffd}");
        assert_eq!(display_name(b"a\xff"), "a\\xff");
        assert_eq!(display_name("a\u{fffd}".as_bytes()), "a\u{fffd}", "the real character is kept");
        assert_eq!(display_name(b"x/y\\z"), "x\\x2fy\\x5cz");
        assert_eq!(display_name(b".."), "\\x2e\\x2e\\(invalid name)");
    }
}
