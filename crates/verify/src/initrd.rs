//! An initramfs as the kernel unpacks it: a sequence of segments, each an uncompressed cpio
//! archive or a compressed stream of cpio archives (gzip, xz, zstd here), with zero padding
//! between them. A second archive appended to the first is unpacked by the kernel over the first,
//! so each segment is a layer of its own for `compare`. Bytes this reader cannot decompress
//! (bzip2, lzma, lzo, lz4 or anything else) become one opaque segment compared by digest.

use crate::VerifyError;
use crate::cpio;
use crate::limits::Budget;
use ceremony_os_tree::{Entry, Kind};
use std::io::Read;

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// `cpio`, `gzip`, `xz`, `zstd` or `unparsed`.
    pub format: &'static str,
    /// Where the segment starts in the initrd.
    pub offset: usize,
    pub entries: Vec<Entry>,
}

/// Split `bytes` into segments. `what` names the initrd in errors.
pub fn segments(bytes: &[u8], what: &str, budget: &mut Budget) -> Result<Vec<Segment>, VerifyError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        while pos < bytes.len() && bytes[pos] == 0 {
            pos += 1;
        }
        if pos >= bytes.len() {
            return Ok(out);
        }
        let rest = &bytes[pos..];
        let label = format!("{what} segment at byte {pos}");
        let (format, decompressed, used): (&'static str, Option<Vec<u8>>, usize) = if cpio::is_cpio(rest) {
            ("cpio", None, 0)
        } else if let Some(codec) = Codec::detect(rest) {
            let (data, used) = decompress(rest, codec, &label, budget)?;
            (codec.name(), Some(data), used)
        } else {
            budget.file(&label, rest.len() as u64)?;
            let entry = Entry {
                path: "/".into(),
                kind: Kind::File { size: rest.len() as u64, sha256: crate::compare::sha256_bytes(rest) },
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
            };
            out.push(Segment { format: "unparsed", offset: pos, entries: vec![entry] });
            return Ok(out);
        };
        match decompressed {
            None => {
                let (entries, used) = cpio::parse_archive(rest, &label, budget)?;
                out.push(Segment { format, offset: pos, entries });
                pos += used;
            }
            Some(data) => {
                out.push(Segment { format, offset: pos, entries: archives(&data, &label, budget)? });
                pos += used;
            }
        }
    }
}

/// Every cpio archive in a decompressed stream, merged as the kernel would (later entries win).
fn archives(data: &[u8], what: &str, budget: &mut Budget) -> Result<Vec<Entry>, VerifyError> {
    let mut merged: std::collections::BTreeMap<String, Entry> = Default::default();
    let mut pos = 0;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        let (entries, used) = cpio::parse_archive(&data[pos..], what, budget)?;
        for e in entries {
            merged.insert(e.path.clone(), e);
        }
        pos += used.max(1);
    }
    Ok(merged.into_values().collect())
}

#[derive(Debug, Clone, Copy)]
enum Codec {
    Gzip,
    Xz,
    Zstd,
}

impl Codec {
    fn detect(bytes: &[u8]) -> Option<Codec> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(Codec::Gzip)
        } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Codec::Xz)
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }
}

/// Decompress one stream from the start of `input`, bounded by the budget; returns the data and
/// how many input bytes the stream took.
fn decompress(
    input: &[u8],
    codec: Codec,
    what: &str,
    budget: &mut Budget,
) -> Result<(Vec<u8>, usize), VerifyError> {
    let mut cursor = std::io::Cursor::new(input);
    let mut data = Vec::new();
    let cap = budget.limits.max_file_bytes;
    let failed = |e: std::io::Error| VerifyError::Invalid(format!("{what}: cannot decompress: {e}"));
    let n = match codec {
        Codec::Gzip => flate2::bufread::GzDecoder::new(&mut cursor).take(cap + 1).read_to_end(&mut data),
        Codec::Xz => liblzma::bufread::XzDecoder::new(&mut cursor).take(cap + 1).read_to_end(&mut data),
        Codec::Zstd => zstd::stream::read::Decoder::with_buffer(&mut cursor)
            .map_err(failed)?
            .single_frame()
            .take(cap + 1)
            .read_to_end(&mut data),
    }
    .map_err(failed)?;
    if n as u64 > cap {
        return Err(VerifyError::Limit(format!("{what} decompresses to more than {cap} bytes")));
    }
    budget.file(what, data.len() as u64)?;
    Ok((data, (cursor.position() as usize).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::io::Write;

    fn cpio_with(name: &str, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), data).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("echo {name} | cpio -o -H newc --quiet"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_concatenated_segment_is_its_own_layer() {
        // As Debian builds it: an uncompressed early cpio, then the compressed main archive; and a
        // second compressed archive appended (which the kernel would unpack over the first).
        let mut initrd = cpio_with("early", b"microcode");
        initrd.extend(gzip(&cpio_with("init", b"#!/bin/sh\n")));
        initrd.extend([0u8; 100]);
        initrd.extend(gzip(&cpio_with("init", b"#!/bin/sh\nevil\n")));
        initrd.extend(b"trailing garbage");
        let mut budget = Budget::new(Limits::default());
        let segments = segments(&initrd, "initrd", &mut budget).unwrap();
        let formats: Vec<&str> = segments.iter().map(|s| s.format).collect();
        assert_eq!(formats, ["cpio", "gzip", "gzip", "unparsed"]);
        assert!(segments[1].entries.iter().any(|e| e.path == "/init"));
        assert_ne!(segments[1].entries, segments[2].entries, "the appended archive is seen");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut budget = Budget::new(Limits { max_file_bytes: 1 << 20, ..Limits::default() });
        let err = segments(&bomb, "initrd", &mut budget).unwrap_err().to_string();
        assert!(err.contains("decompresses to more than"), "{err}");
    }
}
