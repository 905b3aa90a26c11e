//! The cpio "newc" format (SVR4, with or without CRC: magic `070701` / `070702`) read as a stream
//! of records, the way the Linux kernel reads an initramfs: every header field is kept (inode,
//! link count and device numbers too: the kernel builds hard links from them), regular files'
//! bodies are hashed as they stream past and never held, symbolic link targets are kept, and an
//! archive ends where the kernel ends it. What the kernel then makes of the records is
//! `initramfs`'s model.

use crate::VerifyError;
use crate::limits::Budget;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read};

const HEADER: usize = 110;
/// The kernel's PATH_MAX: longer names and link targets are skipped.
pub const PATH_MAX: u64 = 4096;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

pub fn is_cpio(bytes: &[u8]) -> bool {
    bytes.starts_with(b"070701") || bytes.starts_with(b"070702")
}

/// One header and what its body was read as.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The name up to its NUL (the kernel reads it as a C string), at most PATH_MAX bytes kept.
    pub name: Vec<u8>,
    /// `c_namesize`: the name's length with its NUL, as the header says.
    pub name_size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: i64,
    pub ino: u32,
    /// The device the file was on (`c_devmajor`, `c_devminor`): half of a hard link's identity.
    pub dev: (u32, u32),
    /// For device nodes, the device (`c_rdevmajor`, `c_rdevminor`).
    pub rdev: (u32, u32),
    pub body_size: u64,
    pub body: Body,
    /// For `070702` archives, the header's checksum of the body.
    pub check: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A regular file's body: SHA-256 and the byte sum the `070702` check is made of.
    File { sha256: String, sum: u32 },
    /// A symbolic link's target, as the kernel reads it (up to the first NUL).
    Target(Vec<u8>),
    /// A body the kernel does not read (any other type, or a link target over PATH_MAX).
    Skipped,
}

impl Record {
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Whether the kernel reads this record's name (and so may take it for the trailer): a
    /// name of 1 to PATH_MAX bytes, on a regular file or a body-less entry that is no link.
    pub fn name_is_read(&self) -> bool {
        (1..=PATH_MAX).contains(&self.name_size)
            && self.file_type() != S_IFLNK
            && (self.file_type() == S_IFREG || self.body_size == 0)
    }

    pub fn is_trailer(&self) -> bool {
        self.name_is_read() && self.name == b"TRAILER!!!"
    }
}

/// A reader that counts what it has given out, so that errors and padding use stream offsets.
struct Counted<R> {
    inner: R,
    at: u64,
}

impl<R: BufRead> Counted<R> {
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), VerifyError> {
        let at = self.at;
        self.inner.read_exact(buf).map_err(|e| truncated(what, at, e))?;
        self.at += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), VerifyError> {
        let at = self.at;
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| truncated(what, at, e))?;
        if copied != n {
            return Err(truncated(what, at, std::io::ErrorKind::UnexpectedEof.into()));
        }
        self.at += n;
        Ok(())
    }

    fn pad4(&mut self, what: &str) -> Result<(), VerifyError> {
        self.skip((4 - self.at % 4) % 4, what)
    }

    /// Skip zero bytes; false at the end of the stream.
    fn skip_zeros(&mut self, what: &str) -> Result<bool, VerifyError> {
        loop {
            let at = self.at;
            let buf = self.inner.fill_buf().map_err(|e| truncated(what, at, e))?;
            if buf.is_empty() {
                return Ok(false);
            }
            let zeros = buf.iter().take_while(|b| **b == 0).count();
            let more = zeros < buf.len();
            self.inner.consume(zeros);
            self.at += zeros as u64;
            if more {
                return Ok(true);
            }
        }
    }
}

fn truncated(what: &str, at: u64, e: std::io::Error) -> VerifyError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        VerifyError::Invalid(format!("{what}: byte {at}: the archive ends inside an entry (no TRAILER!!!)"))
    } else {
        VerifyError::Invalid(format!("{what}: byte {at}: {e}"))
    }
}

fn hex_field(header: &[u8], index: usize) -> Option<u32> {
    let at = 6 + index * 8;
    u32::from_str_radix(std::str::from_utf8(&header[at..at + 8]).ok()?, 16).ok()
}

/// Read one archive (up to and including the kernel's trailer) from `input`.
fn read_archive<R: BufRead>(
    input: &mut Counted<R>,
    what: &str,
    budget: &mut Budget,
) -> Result<Vec<Record>, VerifyError> {
    let mut records = Vec::new();
    loop {
        let start = input.at;
        let bad = |message: &str| VerifyError::Invalid(format!("{what}: byte {start}: {message}"));
        let mut header = [0u8; HEADER];
        input.exact(&mut header, what)?;
        if !is_cpio(&header) {
            return Err(bad("not a newc cpio header (the kernel stops unpacking here)"));
        }
        let field = |i| hex_field(&header, i).ok_or_else(|| bad("a cpio header field is not hexadecimal"));
        let name_size = u64::from(field(11)?);
        let mut record = Record {
            name: Vec::new(),
            name_size,
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            nlink: field(4)?,
            mtime: i64::from(field(5)?),
            ino: field(0)?,
            dev: (field(7)?, field(8)?),
            rdev: (field(9)?, field(10)?),
            body_size: u64::from(field(6)?),
            body: Body::Skipped,
            check: header.starts_with(b"070702").then_some(field(12)?),
        };
        // The name: kept up to PATH_MAX (the kernel skips longer ones), its NUL required.
        let kept = name_size.min(PATH_MAX);
        let mut name = vec![0u8; kept as usize];
        input.exact(&mut name, what)?;
        input.skip(name_size - kept, what)?;
        match name.iter().position(|b| *b == 0) {
            Some(nul) => name.truncate(nul),
            None if record.name_size == 0 || name_size > PATH_MAX => {}
            None => {
                return Err(bad(&format!(
                    "the name {:?} has no NUL within its {name_size} bytes (kernels read past it)",
                    String::from_utf8_lossy(&name)
                )));
            }
        }
        record.name = name;
        input.pad4(what)?;
        budget.entry(std::path::Path::new(what))?;
        let label = format!("{what}: {}", String::from_utf8_lossy(&record.name));
        record.body = match record.file_type() {
            S_IFREG => {
                budget.file(&label, record.body_size)?;
                let mut hasher = Sha256::new();
                let mut sum = 0u32;
                let mut left = record.body_size;
                let mut buffer = vec![0u8; (1 << 16).min(left as usize)];
                while left > 0 {
                    let n = (buffer.len() as u64).min(left) as usize;
                    input.exact(&mut buffer[..n], what)?;
                    hasher.update(&buffer[..n]);
                    sum = buffer[..n].iter().fold(sum, |s, b| s.wrapping_add(u32::from(*b)));
                    left -= n as u64;
                }
                Body::File { sha256: hex::encode(hasher.finalize()), sum }
            }
            S_IFLNK if record.body_size <= PATH_MAX => {
                let mut target = vec![0u8; record.body_size as usize];
                input.exact(&mut target, what)?;
                if let Some(nul) = target.iter().position(|b| *b == 0) {
                    target.truncate(nul);
                }
                Body::Target(target)
            }
            _ => {
                budget.file(&label, record.body_size)?;
                input.skip(record.body_size, what)?;
                Body::Skipped
            }
        };
        input.pad4(what)?;
        let trailer = record.is_trailer();
        records.push(record);
        if trailer {
            return Ok(records);
        }
    }
}

/// The one uncompressed archive at the start of `bytes`, and how many bytes it took (padding
/// to four bytes included).
pub fn parse_archive(
    bytes: &[u8],
    what: &str,
    budget: &mut Budget,
) -> Result<(Vec<Record>, usize), VerifyError> {
    let mut input = Counted { inner: bytes, at: 0 };
    let records = read_archive(&mut input, what, budget)?;
    Ok((records, input.at as usize))
}

/// Every archive in a decompressed stream, in order, with the zero padding the kernel allows
/// between them. Memory stays bounded by names and link targets, whatever the stream's size.
pub fn parse_stream(
    stream: impl BufRead,
    what: &str,
    budget: &mut Budget,
) -> Result<Vec<Vec<Record>>, VerifyError> {
    let mut input = Counted { inner: stream, at: 0 };
    let mut archives = Vec::new();
    while input.skip_zeros(what)? {
        if !input.at.is_multiple_of(4) {
            return Err(VerifyError::Invalid(format!(
                "{what}: byte {}: an archive starts off a four-byte boundary (the kernel: broken padding)",
                input.at
            )));
        }
        archives.push(read_archive(&mut input, what, budget)?);
    }
    Ok(archives)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::limits::Limits;

    /// One newc record; `ino` and `nlink` as given, so tests can make hard links.
    pub(crate) fn record(name: &[u8], mode: u32, data: &[u8], ino: u32, nlink: u32) -> Vec<u8> {
        let mut out = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino,
            mode,
            0,
            0,
            nlink,
            1783814400u32,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        out.extend(name);
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    pub(crate) fn header(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        record(name.as_bytes(), mode, data, 1, 1)
    }

    #[test]
    fn records_and_the_trailer() {
        let mut archive = header(".", 0o40755, b"");
        archive.extend(header("evil", 0o120777, b"/etc\0ignored"));
        archive.extend(header("evil/passwd", 0o100644, b"root::0:0\n"));
        archive.extend(header("TRAILER!!!", 0, b""));
        let used = archive.len();
        archive.extend([0u8; 512]);
        let mut budget = Budget::new(Limits::default());
        let (records, consumed) = parse_archive(&archive, "initrd", &mut budget).unwrap();
        assert_eq!(consumed, used);
        let names: Vec<&[u8]> = records.iter().map(|r| r.name.as_slice()).collect();
        assert_eq!(names, [&b"."[..], b"evil", b"evil/passwd", b"TRAILER!!!"]);
        assert_eq!(records[1].body, Body::Target(b"/etc".to_vec()), "the target ends at its NUL");
        assert!(matches!(records[2].body, Body::File { .. }));
    }

    /// A symbolic link or a directory with a body named TRAILER!!! does not end the archive:
    /// the kernel reads no name for them.
    #[test]
    fn only_what_the_kernel_takes_for_the_trailer_ends_an_archive() {
        let mut archive = header("TRAILER!!!", 0o120777, b"x");
        archive.extend(header("TRAILER!!!", 0o40755, b"body"));
        archive.extend(header("after", 0o100644, b""));
        archive.extend(header("TRAILER!!!", 0, b""));
        let mut budget = Budget::new(Limits::default());
        let (records, _) = parse_archive(&archive, "initrd", &mut budget).unwrap();
        assert_eq!(records.len(), 4);
    }

    #[test]
    fn truncated_garbage_and_unterminated_names_are_errors() {
        let mut budget = Budget::new(Limits::default());
        let archive = header("a", 0o100644, b"data");
        let err = parse_archive(&archive, "x", &mut budget).unwrap_err().to_string();
        assert!(err.contains("no TRAILER"), "{err}");
        let mut lying = header("a", 0o100644, b"");
        lying[54..62].copy_from_slice(b"7fffffff");
        let err = parse_archive(&lying, "x", &mut budget).unwrap_err().to_string();
        assert!(err.contains("ends inside an entry"), "{err}");
        let mut unterminated = header("abc", 0o100644, b"");
        unterminated[94..102].copy_from_slice(b"00000003");
        let err = parse_archive(&unterminated, "x", &mut budget).unwrap_err().to_string();
        assert!(err.contains("has no NUL"), "{err}");
    }
}
