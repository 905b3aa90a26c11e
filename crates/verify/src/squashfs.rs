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

/// The tree of the squashfs at `[start, start + len)` of `image`.
pub fn read_tree(
    image: &Path,
    start: u64,
    len: u64,
    what: &str,
    budget: &mut Budget,
) -> Result<Vec<Entry>, VerifyError> {
    let mut window = Window::open(image, start, len)?;
    let mut sb = vec![0u8; 96];
    window.read_exact(&mut sb).map_err(|e| VerifyError::Invalid(format!("{what}: {e}")))?;
    check_superblock(&sb, len, what, budget)?;
    window.seek(SeekFrom::Start(0)).map_err(|e| VerifyError::io(image, e))?;
    let fs = FilesystemReader::from_reader(std::io::BufReader::new(window))
        .map_err(|e| VerifyError::Invalid(format!("{what}: {e}")))?;
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
                    .map_err(|e| VerifyError::Invalid(format!("{label}: {e}")))?;
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
    Ok(entries)
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
        .map_err(|e| VerifyError::Invalid(format!("{}: {e}", image.display())))?;
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
            .map_err(|e| VerifyError::Invalid(format!("{path}: {e}")))?
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
    let parts: Vec<String> = full
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(crate::isofs::display_name(name.as_bytes())),
            std::path::Component::ParentDir => Some(crate::isofs::display_name(b"..")),
            _ => None,
        })
        .collect();
    if parts.is_empty() { "/".into() } else { format!("/{}", parts.join("/")) }
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
        let kind = |p: &str| tree.iter().find(|e| e.path == p).unwrap().kind.clone();
        assert_eq!(kind("/a"), Kind::Special("char 1:3".into()));
        assert_eq!(kind("/b"), Kind::Special("char 1:259".into()));
        assert_eq!(kind("/c"), Kind::Special("block 259:70000".into()));
    }
}
