//! An initramfs as the kernel reads it: a sequence of segments, each an uncompressed cpio
//! archive or a compressed stream of cpio archives (gzip, xz, zstd here), with zero padding
//! between them, all unpacked in order into one root file system (`initramfs` models that).
//! Compressed streams are decompressed as they are parsed, never held whole: a small crafted
//! stream cannot fill memory. Bytes this reader cannot decompress (bzip2, lzma, lzo, lz4 or
//! anything else: the kernel stops unpacking there) become one opaque segment compared by digest.

use crate::VerifyError;
use crate::cpio::{self, Record};
use crate::limits::Budget;
use std::io::Read;

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// `cpio`, `gzip`, `xz`, `zstd` or `unparsed`.
    pub format: &'static str,
    /// Where the segment starts in the initrd.
    pub offset: usize,
    /// The bytes it spans, from the end of the one before (padding included) to its own end
    /// (the last one to the end of the initrd): every byte is in exactly one segment.
    pub span: (usize, usize),
    pub sha256: String,
    /// Its archives, in order (none for `unparsed`).
    pub archives: Vec<Vec<Record>>,
}

/// Split `bytes` into segments. `what` names the initrd in errors.
pub fn segments(bytes: &[u8], what: &str, budget: &mut Budget) -> Result<Vec<Segment>, VerifyError> {
    let mut out: Vec<Segment> = Vec::new();
    let mut pos = 0usize;
    loop {
        let span_start = pos;
        while pos < bytes.len() && bytes[pos] == 0 {
            pos += 1;
        }
        if pos >= bytes.len() {
            if let Some(last) = out.last_mut() {
                last.span.1 = bytes.len();
                last.sha256 = crate::compare::sha256_bytes(&bytes[last.span.0..last.span.1]);
            }
            return Ok(out);
        }
        let rest = &bytes[pos..];
        let label = format!("{what} segment at byte {pos}");
        // An uncompressed archive only where the kernel looks for one: at a four-byte boundary.
        let (format, archives, used) = if cpio::is_cpio(rest) && pos.is_multiple_of(4) {
            let (records, used) = cpio::parse_archive(rest, &label, budget)?;
            ("cpio", vec![records], used)
        } else if let Some(codec) = Codec::detect(rest) {
            let (archives, used) = decompress(rest, codec, &label, budget)?;
            (codec.name(), archives, used)
        } else {
            ("unparsed", Vec::new(), rest.len())
        };
        let span = (span_start, pos + used);
        let sha256 = crate::compare::sha256_bytes(&bytes[span.0..span.1]);
        out.push(Segment { format, offset: pos, span, sha256, archives });
        pos += used;
    }
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

/// Parse the archives of one compressed stream at the start of `input` as it decompresses,
/// bounded by the budget; returns them and how many input bytes the stream took.
fn decompress(
    input: &[u8],
    codec: Codec,
    what: &str,
    budget: &mut Budget,
) -> Result<(Vec<Vec<Record>>, usize), VerifyError> {
    let mut cursor = std::io::Cursor::new(input);
    let failed = |e: std::io::Error| VerifyError::Invalid(format!("{what}: cannot decompress: {e}"));
    let cap = budget.limits.max_file_bytes;
    let archives = {
        let stream: Box<dyn Read + '_> = match codec {
            Codec::Gzip => Box::new(flate2::bufread::GzDecoder::new(&mut cursor)),
            Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new(&mut cursor)),
            Codec::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(&mut cursor).map_err(failed)?.single_frame(),
            ),
        };
        let mut limited = Limited { inner: stream, left: cap };
        let archives = cpio::parse_stream(std::io::BufReader::new(&mut limited), what, budget);
        if limited.left == 0 {
            return Err(VerifyError::Limit(format!("{what} decompresses to more than {cap} bytes")));
        }
        archives?
    };
    Ok((archives, (cursor.position() as usize).max(1)))
}

/// A reader that gives out at most `left` bytes and then fails, so a bomb is refused, not read.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 >= self.left && n > 0 {
            self.left = 0;
            return Err(std::io::Error::other("the decompression limit is reached"));
        }
        self.left -= n as u64;
        Ok(n)
    }
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
        assert!(segments[1].archives[0].iter().any(|r| r.name == b"init"));
        assert_ne!(segments[1].archives, segments[2].archives, "the appended archive is seen");
        let spans: Vec<(usize, usize)> = segments.iter().map(|s| s.span).collect();
        assert_eq!(spans[0].0, 0);
        assert!(spans.windows(2).all(|w| w[0].1 == w[1].0), "{spans:?}");
        assert_eq!(spans[3].1, initrd.len(), "every byte is in one segment");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let bomb = zstd::encode_all(&vec![0u8; 64 << 20][..], 19).unwrap();
        assert!(bomb.len() < 64 << 10);
        let mut budget = Budget::new(Limits { max_file_bytes: 1 << 20, ..Limits::default() });
        let err = segments(&bomb, "initrd", &mut budget).unwrap_err().to_string();
        assert!(err.contains("decompresses to more than"), "{err}");
    }
}
