//! The file tree of a squashfs inside an ISO, read in-process with backhand from the ISO's
//! bytes (no extraction, no host unsquashfs): names, modes, owners, mtimes, symlink targets,
//! device numbers and content digests. The superblock is checked first (magic, version, sizes
//! inside the member, inode count within the limits) so a crafted one fails early and clearly.

use crate::VerifyError;
use crate::limits::Budget;
use backhand::{FilesystemReader, InnerNode};
use ceremony_os_tree::{Entry, Kind};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A window `[start, start + len)` of a file, read and seeked as a file of its own.
#[derive(Debug)]
pub struct Window {
    file: std::fs::File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Window {
    pub fn open(path: &Path, start: u64, len: u64) -> Result<Self, VerifyError> {
        let file = std::fs::File::open(path).map_err(|e| VerifyError::io(path, e))?;
        Ok(Window { file, start, len, pos: 0 })
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let read = self.file.read(&mut buf[..n])?;
        self.pos += read as u64;
        Ok(read)
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(n) => self.len as i128 + n as i128,
            SeekFrom::Current(n) => self.pos as i128 + n as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

/// Check the squashfs 4.0 superblock at the start of `window` (96 bytes).
fn check_superblock(sb: &[u8], len: u64, what: &str, budget: &Budget) -> Result<(), VerifyError> {
    let bad = |m: String| VerifyError::Invalid(format!("{what}: {m}"));
    if sb.len() < 96 || &sb[0..4] != b"hsqs" {
        return Err(bad("not a squashfs (no hsqs magic)".into()));
    }
    let inodes = u32::from_le_bytes(sb[4..8].try_into().expect("4")) as u64;
    let (major, minor) = (u16::from_le_bytes([sb[28], sb[29]]), u16::from_le_bytes([sb[30], sb[31]]));
    let bytes_used = u64::from_le_bytes(sb[40..48].try_into().expect("8"));
    if (major, minor) != (4, 0) {
        return Err(bad(format!("squashfs version {major}.{minor}; only 4.0 is read")));
    }
    if bytes_used > len {
        return Err(bad(format!("the superblock says {bytes_used} bytes, the member has {len}")));
    }
    if inodes > budget.limits.max_entries {
        return Err(VerifyError::Limit(format!(
            "{what}: {inodes} inodes, more than {}",
            budget.limits.max_entries
        )));
    }
    Ok(())
}

/// What compare reads of a squashfs: its tree, and the extended attributes per path.
#[derive(Debug)]
pub struct Tree {
    pub entries: Vec<Entry>,
    pub xattrs: Vec<Entry>,
}

/// What backhand says of an error: some of its errors display as nothing, so their name and
/// fields are said instead.
fn backhand_said(e: &backhand::BackhandError) -> String {
    let text = e.to_string();
    if !text.trim().is_empty() {
        return text;
    }
    match format!("{e:?}") {
        debug if debug.chars().any(char::is_alphanumeric) => format!("its tables do not parse ({debug})"),
        _ => "its tables do not parse (the superblock's table pointers or the tables are wrong)".into(),
    }
}

/// The tree of the squashfs at `[start, start + len)` of `image`, from one parse.
pub fn read_tree(
    image: &Path,
    start: u64,
    len: u64,
    what: &str,
    budget: &mut Budget,
) -> Result<Tree, VerifyError> {
    let mut window = Window::open(image, start, len)?;
    let mut sb = vec![0u8; 96];
    window.read_exact(&mut sb).map_err(|e| VerifyError::Invalid(format!("{what}: {e}")))?;
    check_superblock(&sb, len, what, budget)?;
    window.seek(SeekFrom::Start(0)).map_err(|e| VerifyError::io(image, e))?;
    let invalid = |e: String| VerifyError::Invalid(format!("{what}: {e}"));
    let mut squashfs = backhand::Squashfs::from_reader(std::io::BufReader::new(window))
        .map_err(|e| invalid(backhand_said(&e)))?;
    let xattrs = read_xattrs(&mut squashfs).map_err(invalid)?;
    let fs = squashfs.into_filesystem_reader().map_err(|e| invalid(backhand_said(&e)))?;
    let mut entries = Vec::new();
    for node in fs.files() {
        budget.entry(image)?;
        let depth = node.fullpath.components().count();
        if depth > budget.limits.max_depth {
            return Err(VerifyError::Limit(format!(
                "{what}: directories nest deeper than {} levels",
                budget.limits.max_depth
            )));
        }
        let path = tree_path(&node.fullpath);
        let kind = match &node.inner {
            InnerNode::Dir(_) => Kind::Dir,
            InnerNode::File(file) => {
                let size = file.file_len() as u64;
                let label = format!("{what}{path}");
                budget.file(&label, size)?;
                let mut reader = fs
                    .file(file)
                    .reader_checked()
                    .map_err(|e| VerifyError::Invalid(format!("{label}: {}", backhand_said(&e))))?;
                let (sha256, read) = budget.hash(&label, &mut reader, size)?;
                if read != size {
                    return Err(VerifyError::Invalid(format!(
                        "{label}: {read} bytes, the inode says {size}"
                    )));
                }
                Kind::File { size, sha256 }
            }
            InnerNode::Symlink(link) => Kind::Symlink { target: link.link.to_string_lossy().into_owned() },
            InnerNode::CharacterDevice(d) => Kind::Special(format!("char {}", device(d.device_number))),
            InnerNode::BlockDevice(d) => Kind::Special(format!("block {}", device(d.device_number))),
            InnerNode::NamedPipe => Kind::Special("fifo".into()),
            InnerNode::Socket => Kind::Special("socket".into()),
        };
        entries.push(Entry {
            path,
            kind,
            mode: node.header.permissions as u32 & 0o7777,
            uid: node.header.uid,
            gid: node.header.gid,
            mtime: node.header.mtime as i64,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Tree { entries, xattrs })
}

/// The content of the file at manifest path `path` in the squashfs at `[start, start + len)`,
/// if it is a regular file of at most `max` bytes.
pub fn file_bytes(
    image: &Path,
    start: u64,
    len: u64,
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let window = Window::open(image, start, len)?;
    let fs = FilesystemReader::from_reader(std::io::BufReader::new(window))
        .map_err(|e| VerifyError::Invalid(format!("{}: {}", image.display(), backhand_said(&e))))?;
    for node in fs.files() {
        if tree_path(&node.fullpath) != path {
            continue;
        }
        let InnerNode::File(file) = &node.inner else { return Ok(None) };
        if file.file_len() as u64 > max {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        fs.file(file)
            .reader_checked()
            .map_err(|e| VerifyError::Invalid(format!("{path}: {}", backhand_said(&e))))?
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| VerifyError::Invalid(format!("{path}: {e}")))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

/// backhand's full path as a manifest path (each component escaped like the ISO's names).
fn tree_path(full: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::isofs::manifest_path(full.components().filter_map(|c| match c {
        std::path::Component::Normal(name) => Some(name.as_bytes()),
        std::path::Component::ParentDir => Some(&b".."[..]),
        _ => None,
    }))
}

/// The extended attributes the booted kernel reads: an entry for each path that has any
/// (`security.capability=0x...; user.note="..."`), and one for each set no path refers to, so
/// every set is named somewhere. backhand reads no xattrs, so the directory table is walked here
/// from its inodes (each path's inode gives its set) and the xattr tables read as the kernel does.
fn read_xattrs(fs: &mut backhand::Squashfs) -> Result<Vec<Entry>, String> {
    if fs.superblock.xattr_table == u64::MAX {
        return Ok(Vec::new());
    }
    let sets = xattr_sets(fs)?;
    let mut named = vec![false; sets.len()];
    let mut entries = Vec::new();
    let mut stack = vec![(fs.root_inode.clone(), String::new())];
    let mut visited = std::collections::HashSet::new();
    while let Some((inode, path)) = stack.pop() {
        let shown = if path.is_empty() { "/".to_string() } else { path.clone() };
        if let Some(index) = xattr_index(&inode)
            && index != u32::MAX
        {
            let set = sets
                .get(index as usize)
                .ok_or_else(|| format!("{shown}: xattr set #{index} of {} does not exist", sets.len()))?;
            named[index as usize] = true;
            entries.push(xattr_entry(shown.clone(), set));
        }
        if let Some((block_index, size, offset)) = directory_listing(&inode) {
            if !visited.insert(inode.header.inode_number) {
                return Err(format!("{shown}: a directory that contains itself"));
            }
            for (name, number) in directory_entries(fs, block_index, size, offset)? {
                let child =
                    fs.inodes.get(&number).ok_or_else(|| format!("{shown}: inode {number} missing"))?;
                stack.push((child.clone(), format!("{path}/{}", crate::isofs::display_name(&name))));
            }
        }
    }
    for (index, set) in sets.iter().enumerate().filter(|(i, _)| !named[*i]) {
        entries.push(xattr_entry(format!("/(xattr set #{index}, named by no path)"), set));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// One xattr set: (full key, value) pairs.
type XattrSet = Vec<(String, Vec<u8>)>;

fn xattr_entry(path: String, set: &[(String, Vec<u8>)]) -> Entry {
    let shown: Vec<String> = set
        .iter()
        .map(|(key, value)| match std::str::from_utf8(value) {
            Ok(text) if !text.chars().any(char::is_control) => format!("{key}={text:?}"),
            _ => format!("{key}=0x{}", hex::encode(value)),
        })
        .collect();
    Entry { path, kind: Kind::Special(shown.join("; ")), mode: 0, uid: 0, gid: 0, mtime: 0 }
}

fn xattr_index(inode: &backhand::Inode) -> Option<u32> {
    use backhand::v4::inode::InodeInner as I;
    match &inode.inner {
        I::ExtendedDirectory(d) => Some(d.xattr_index),
        I::ExtendedFile(f) => Some(f.xattr_index),
        I::ExtendedSymlink(l) => Some(l.xattr_index),
        I::ExtendedBlockDevice(d) | I::ExtendedCharacterDevice(d) => Some(d.xattr_index),
        I::ExtendedNamedPipe(p) | I::ExtendedSocket(p) => Some(p.xattr_index),
        _ => None,
    }
}

/// A directory inode's listing: (block, size with the 3 bytes of `.` and `..`, offset).
fn directory_listing(inode: &backhand::Inode) -> Option<(u32, u32, u16)> {
    use backhand::v4::inode::InodeInner as I;
    match &inode.inner {
        I::BasicDirectory(d) => Some((d.block_index, u32::from(d.file_size), d.block_offset)),
        I::ExtendedDirectory(d) => Some((d.block_index, d.file_size, d.block_offset)),
        _ => None,
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The names and inode numbers of one directory listing (squashfs 4.0 directory headers, each
/// with up to 256 entries relative to its inode number).
fn directory_entries(
    fs: &backhand::Squashfs,
    block_index: u32,
    size: u32,
    offset: u16,
) -> Result<Vec<(Vec<u8>, u32)>, String> {
    if size <= 3 {
        return Ok(Vec::new());
    }
    let at = fs.dir_blocks.0.get(&u64::from(block_index)).ok_or("a directory listing outside the table")?;
    let bytes = fs
        .dir_blocks
        .1
        .get(*at as usize + offset as usize..)
        .and_then(|b| b.get(..size as usize - 3))
        .ok_or("a directory listing beyond the table")?;
    let truncated = || "a truncated directory listing".to_string();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let count = le32(bytes, pos).ok_or_else(truncated)? as usize + 1;
        let base = le32(bytes, pos + 8).ok_or_else(truncated)?;
        pos += 12;
        for _ in 0..count {
            let delta = le16(bytes, pos + 2).ok_or_else(truncated)? as i16;
            let name_len = le16(bytes, pos + 6).ok_or_else(truncated)? as usize + 1;
            let name = bytes.get(pos + 8..pos + 8 + name_len).ok_or_else(truncated)?.to_vec();
            out.push((name, base.wrapping_add_signed(i32::from(delta))));
            pos += 8 + name_len;
        }
    }
    Ok(out)
}

/// Every xattr set of the image, by index: (full key, value) pairs, out-of-line values resolved.
fn xattr_sets(fs: &mut backhand::Squashfs) -> Result<Vec<XattrSet>, String> {
    let backhand::Squashfs { superblock, kind, file, .. } = fs;
    let read_at = |file: &mut Box<dyn backhand::BufReadSeek + '_>, at: u64, n: usize| {
        let mut buf = vec![0u8; n];
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| format!("xattr table at byte {at}: {e}"))?;
        Ok::<_, String>(buf)
    };
    let table = read_at(file, superblock.xattr_table, 16)?;
    let (kv_start, ids) = (le64(&table, 0).unwrap_or(0), le32(&table, 8).unwrap_or(0) as usize);
    if ids as u64 > superblock.bytes_used / 16 {
        return Err(format!("the xattr table claims {ids} sets"));
    }
    let blocks = ids.div_ceil(512);
    let pointers = read_at(file, superblock.xattr_table + 16, blocks * 8)?;
    // Metadata blocks from `from` up to `to`, decompressed and joined, with where each began.
    let mut metadata = |from: u64, to: u64| {
        let mut data = Vec::new();
        let mut starts = std::collections::HashMap::new();
        let mut at = from;
        while at < to {
            starts.insert(at - from, data.len());
            let raw = u16::from_le_bytes(read_at(file, at, 2)?.try_into().expect("2")) & 0x7fff;
            file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
            let block = backhand::v4::metadata::read_block(file, superblock, kind)
                .map_err(|e| format!("xattr metadata at byte {at}: {}", backhand_said(&e)))?;
            data.extend(block);
            at += 2 + u64::from(raw);
        }
        Ok::<_, String>((data, starts))
    };
    // The key/value area runs from its start up to the first block of ids.
    let kv_end = le64(&pointers, 0).unwrap_or(superblock.xattr_table);
    let (kv, kv_blocks) = metadata(kv_start, kv_end)?;
    let mut id_bytes = Vec::new();
    for b in 0..blocks {
        let at = le64(&pointers, b * 8).ok_or("xattr id pointers")?;
        id_bytes.extend(metadata(at, at + 1)?.0);
    }
    let resolve = |reference: u64| -> Result<usize, String> {
        let block = kv_blocks
            .get(&(reference >> 16))
            .ok_or(format!("xattr reference {reference:#x} into no block"))?;
        Ok(block + (reference & 0xffff) as usize)
    };
    let mut sets = Vec::with_capacity(ids);
    for id in 0..ids {
        let reference = le64(&id_bytes, id * 16).ok_or("xattr ids truncated")?;
        let count = le32(&id_bytes, id * 16 + 8).ok_or("xattr ids truncated")? as usize;
        let mut pos = resolve(reference)?;
        let mut set = Vec::new();
        for _ in 0..count.min(kv.len()) {
            let bad = || format!("xattr set #{id}: truncated");
            let kind = le16(&kv, pos).ok_or_else(bad)?;
            let name_len = le16(&kv, pos + 2).ok_or_else(bad)? as usize;
            let name = kv.get(pos + 4..pos + 4 + name_len).ok_or_else(bad)?;
            pos += 4 + name_len;
            let value_len = le32(&kv, pos).ok_or_else(bad)? as usize;
            let mut value = kv.get(pos + 4..pos + 4 + value_len).ok_or_else(bad)?.to_vec();
            pos += 4 + value_len;
            if kind & 0x100 != 0 {
                // Out of line: the value holds a reference to the real one.
                let at = resolve(le64(&value, 0).ok_or_else(bad)?)?;
                let real_len = le32(&kv, at).ok_or_else(bad)? as usize;
                value = kv.get(at + 4..at + 4 + real_len).ok_or_else(bad)?.to_vec();
            }
            let prefix = match kind & 0xff {
                0 => "user.",
                1 => "trusted.",
                2 => "security.",
                _ => "unknown.",
            };
            set.push((format!("{prefix}{}", String::from_utf8_lossy(name).escape_debug()), value));
        }
        sets.push(set);
    }
    Ok(sets)
}

/// A squashfs device number as Linux decodes it (new_decode_dev): 12 bits of major, 20 of minor,
/// the minor's high bits above the major's (1:259 is not 1:3).
fn device(number: u32) -> String {
    let major = (number & 0xfff00) >> 8;
    let minor = (number & 0xff) | ((number >> 12) & 0xfff00);
    format!("{major}:{minor}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn mksquashfs(root: &Path, image: &Path, extra: &[&str]) {
        let made = std::process::Command::new("mksquashfs")
            .arg(root)
            .arg(image)
            .args(["-noappend", "-no-progress", "-quiet"])
            .args(extra)
            .status()
            .unwrap();
        assert!(made.success());
    }

    fn set_xattr(path: &Path, key: &str, hex_value: &str) {
        let set = std::process::Command::new("python3")
            .args(["-c", "import os, sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]))"])
            .arg(path)
            .args([key, hex_value])
            .status()
            .unwrap();
        assert!(set.success());
    }

    /// The attributes mksquashfs stored (read back by getfattr-independent code: the values the
    /// test set), on files, a directory and a symlink, with a value long enough to be stored out
    /// of line when shared, and a set two paths share.
    #[test]
    fn extended_attributes_are_read_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::write(root.join("usr/bin/plain"), b"plain\n").unwrap();
        std::fs::write(root.join("usr/bin/twin"), b"twin\n").unwrap();
        let capped = std::process::Command::new("setcap")
            .arg("cap_setuid+ep")
            .arg(root.join("usr/bin/tool"))
            .status()
            .unwrap();
        assert!(capped.success());
        set_xattr(&root.join("usr/bin/tool"), "user.note", &hex::encode("hello"));
        // What the host's kernel holds for cap_setuid+ep, read back by Python: the oracle.
        let cap = std::process::Command::new("python3")
            .args(["-c", "import os, sys; print(os.getxattr(sys.argv[1], 'security.capability').hex())"])
            .arg(root.join("usr/bin/tool"))
            .output()
            .unwrap();
        let cap = String::from_utf8(cap.stdout).unwrap().trim().to_string();
        assert_eq!(cap.len(), 40, "a VFS_CAP_REVISION_2 value: {cap}");
        set_xattr(&root.join("usr/bin/twin"), "user.note", &hex::encode("hello"));
        // Three 3000-byte values: the key/value area spans two 8 KiB metadata blocks.
        set_xattr(&root.join("usr"), "user.big", &"ab".repeat(3000));
        set_xattr(&root.join("usr/bin"), "user.big", &"cd".repeat(3000));
        set_xattr(&root, "user.big", &"ef".repeat(3000));
        let image = dir.path().join("x.squashfs");
        mksquashfs(&root, &image, &[]);
        let size = std::fs::metadata(&image).unwrap().len();
        let mut budget = Budget::new(Limits::default());
        let got = read_tree(&image, 0, size, "x", &mut budget).unwrap().xattrs;
        let shown: Vec<(String, String)> = got
            .iter()
            .map(|e| match &e.kind {
                Kind::Special(s) => (e.path.clone(), s.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let tool = shown.iter().find(|(p, _)| p == "/usr/bin/tool").unwrap_or_else(|| panic!("{shown:#?}"));
        assert!(tool.1.contains(&format!("security.capability=0x{cap};")), "{tool:?}");
        assert!(tool.1.contains("user.note=\"hello\""), "{tool:?}");
        let usr = shown.iter().find(|(p, _)| p == "/usr").unwrap_or_else(|| panic!("{shown:#?}"));
        assert!(usr.1.contains(&format!("user.big=0x{}", "ab".repeat(3000))), "a long value");
        let bin = shown.iter().find(|(p, _)| p == "/usr/bin").unwrap_or_else(|| panic!("{shown:#?}"));
        assert_eq!(bin.1, format!("user.big=0x{}", "cd".repeat(3000)));
        let top = shown.iter().find(|(p, _)| p == "/").unwrap_or_else(|| panic!("{shown:#?}"));
        assert_eq!(top.1, format!("user.big=0x{}", "ef".repeat(3000)));
        assert!(shown.iter().any(|(p, s)| p == "/usr/bin/twin" && s == "user.note=\"hello\""), "{shown:#?}");
        assert!(!shown.iter().any(|(p, _)| p == "/usr/bin/plain"), "{shown:#?}");
        // Without xattrs stored, there are none.
        mksquashfs(&root, &image, &["-no-xattrs"]);
        let size = std::fs::metadata(&image).unwrap().len();
        assert!(read_tree(&image, 0, size, "x", &mut budget).unwrap().xattrs.is_empty());
    }

    /// A superblock whose table pointers are altered is refused with something said after the
    /// colon (backhand displays some of its errors as nothing).
    #[test]
    fn a_malformed_squashfs_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("root/f"), b"f\n").unwrap();
        let image = dir.path().join("x.squashfs");
        mksquashfs(&dir.path().join("root"), &image, &[]);
        let honest = std::fs::read(&image).unwrap();
        // The id, inode and directory table pointers (superblock bytes 64..88).
        for at in [64, 72, 80] {
            let mut bytes = honest.clone();
            bytes[at] ^= 0xff;
            std::fs::write(&image, &bytes).unwrap();
            let mut budget = Budget::new(Limits::default());
            let err = read_tree(&image, 0, bytes.len() as u64, "x", &mut budget).unwrap_err().to_string();
            let reason = err.strip_prefix("x: ").unwrap_or_else(|| panic!("{err}"));
            assert!(reason.chars().filter(|c| c.is_alphanumeric()).count() > 10, "byte {at}: {err:?}");
            assert!(!reason.contains("()"), "byte {at}: {err:?}");
        }
    }

    /// Device nodes made by mksquashfs (the encoder Linux's squashfs reads) come back with the
    /// numbers given: minors above 255 and majors above 255 included.
    #[test]
    fn device_numbers_decode_as_linux_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let image = dir.path().join("devices.squashfs");
        let made = std::process::Command::new("mksquashfs")
            .arg(dir.path().join("root"))
            .arg(&image)
            .args(["-noappend", "-no-progress", "-quiet"])
            .args(["-p", "a c 644 0 0 1 3", "-p", "b c 644 0 0 1 259", "-p", "c b 644 0 0 259 70000"])
            .status()
            .unwrap();
        assert!(made.success());
        let size = std::fs::metadata(&image).unwrap().len();
        let mut budget = Budget::new(Limits::default());
        let tree = read_tree(&image, 0, size, "devices", &mut budget).unwrap();
        let kind = |p: &str| tree.entries.iter().find(|e| e.path == p).unwrap().kind.clone();
        assert_eq!(kind("/a"), Kind::Special("char 1:3".into()));
        assert_eq!(kind("/b"), Kind::Special("char 1:259".into()));
        assert_eq!(kind("/c"), Kind::Special("block 259:70000".into()));
    }
}
