//! The cpio "newc" format (SVR4, with or without CRC: magic `070701` / `070702`) as the Linux
//! kernel reads an initramfs: a sequence of archives, each ended by `TRAILER!!!`, with zero
//! padding allowed between them. Parsed from bytes; nothing is written anywhere, names are
//! kept as manifest keys.

use crate::VerifyError;
use crate::limits::Budget;
use ceremony_os_tree::{Entry, Kind};

const HEADER: usize = 110;

fn hex_field(header: &[u8], index: usize) -> Option<u64> {
    let at = 6 + index * 8;
    u64::from_str_radix(std::str::from_utf8(&header[at..at + 8]).ok()?, 16).ok()
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub fn is_cpio(bytes: &[u8]) -> bool {
    bytes.starts_with(b"070701") || bytes.starts_with(b"070702")
}

/// Parse one archive at the start of `bytes`; returns its entries and the bytes it used.
pub fn parse_archive(
    bytes: &[u8],
    what: &str,
    budget: &mut Budget,
) -> Result<(Vec<Entry>, usize), VerifyError> {
    let bad = |at: usize, message: &str| VerifyError::Invalid(format!("{what}: byte {at}: {message}"));
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        if pos + HEADER > bytes.len() {
            return Err(bad(pos, "truncated cpio header (no TRAILER!!!)"));
        }
        let header = &bytes[pos..pos + HEADER];
        if !is_cpio(header) {
            return Err(bad(pos, "not a newc cpio header"));
        }
        let field =
            |i| hex_field(header, i).ok_or_else(|| bad(pos, "a cpio header field is not hexadecimal"));
        let mode = field(1)? as u32;
        let (uid, gid, mtime, size) =
            (field(2)? as u32, field(3)? as u32, field(5)? as i64, field(6)? as usize);
        let (rdev_major, rdev_minor, name_size) = (field(9)?, field(10)?, field(11)? as usize);
        let name_start = pos + HEADER;
        let name_end = name_start
            .checked_add(name_size)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad(pos, "name beyond the end"))?;
        let raw_name = &bytes[name_start..name_end];
        let raw_name = raw_name.strip_suffix(&[0]).unwrap_or(raw_name);
        let data_start = align4(name_end);
        let data_end = data_start
            .checked_add(size)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad(pos, "data beyond the end"))?;
        if raw_name == b"TRAILER!!!" {
            return Ok((entries, align4(data_end)));
        }
        budget.entry(std::path::Path::new(what))?;
        let data = &bytes[data_start..data_end];
        let kind = match mode & 0o170000 {
            0o040000 => Kind::Dir,
            0o100000 => Kind::File { size: size as u64, sha256: crate::compare::sha256_bytes(data) },
            0o120000 => Kind::Symlink { target: String::from_utf8_lossy(data).into_owned() },
            0o020000 => Kind::Special(format!("char {rdev_major}:{rdev_minor}")),
            0o060000 => Kind::Special(format!("block {rdev_major}:{rdev_minor}")),
            0o010000 => Kind::Special("fifo".into()),
            0o140000 => Kind::Special("socket".into()),
            other => Kind::Special(format!("type {other:o}")),
        };
        entries.push(Entry { path: entry_path(raw_name), kind, mode: mode & 0o7777, uid, gid, mtime });
        pos = align4(data_end);
    }
}

/// A cpio name as a manifest path: leading `./` and `/` dropped, each component escaped the
/// way the ISO reader escapes names (so `..` is a name, not a step up).
fn entry_path(raw: &[u8]) -> String {
    let trimmed = raw.strip_prefix(b"./").unwrap_or(raw);
    let parts: Vec<String> =
        trimmed.split(|b| *b == b'/').filter(|p| !p.is_empty()).map(crate::isofs::display_name).collect();
    if parts.is_empty() || parts == ["\\x2e\\(invalid name)"] {
        "/".into()
    } else {
        format!("/{}", parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn header(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
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
        out.extend(name.as_bytes());
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

    #[test]
    fn entries_and_the_trailer() {
        let mut archive = header(".", 0o40755, b"");
        archive.extend(header("evil", 0o120777, b"/etc"));
        archive.extend(header("evil/passwd", 0o100644, b"root::0:0\n"));
        archive.extend(header("../../escape", 0o100600, b"x"));
        archive.extend(header("TRAILER!!!", 0, b""));
        let used = archive.len();
        archive.extend([0u8; 512]);
        let mut budget = Budget::new(Limits::default());
        let (entries, consumed) = parse_archive(&archive, "initrd", &mut budget).unwrap();
        assert_eq!(consumed, used);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/", "/evil", "/evil/passwd", "/\\x2e\\x2e\\(invalid name)/\\x2e\\x2e\\(invalid name)/escape"]
        );
        assert_eq!(entries[1].kind, Kind::Symlink { target: "/etc".into() });
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let mut budget = Budget::new(Limits::default());
        let archive = header("a", 0o100644, b"data");
        assert!(parse_archive(&archive, "x", &mut budget).unwrap_err().to_string().contains("no TRAILER"));
        let mut lying = header("a", 0o100644, b"");
        lying[54..62].copy_from_slice(b"7fffffff");
        assert!(
            parse_archive(&lying, "x", &mut budget).unwrap_err().to_string().contains("data beyond the end")
        );
    }
}
