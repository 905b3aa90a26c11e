//! Bounds on what `compare` reads from an image it does not trust: how many entries, how deep,
//! how many bytes hashed or decompressed in all and per file. A crafted image that exceeds them
//! stops the comparison with an error naming the limit (exit status 2), instead of filling memory
//! or running for days on a terabyte-sized sparse file.

use crate::VerifyError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries (files, directories, links) in all layers together.
    pub max_entries: u64,
    /// Directory nesting.
    pub max_depth: usize,
    /// Bytes of one file (or decompressed archive) that are read.
    pub max_file_bytes: u64,
    /// Bytes read, hashed or decompressed in all.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 4_000_000, max_depth: 256, max_file_bytes: 8 << 30, max_total_bytes: 64 << 30 }
    }
}

/// What has been used of the limits so far.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    entries: u64,
    bytes: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget { limits, entries: 0, bytes: 0 }
    }

    pub fn entry(&mut self, image: &Path) -> Result<(), VerifyError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(VerifyError::Limit(format!(
                "{}: more than {} entries in all layers",
                image.display(),
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Account for a file of `size` bytes about to be read.
    pub fn file(&mut self, what: &str, size: u64) -> Result<(), VerifyError> {
        if size > self.limits.max_file_bytes {
            return Err(VerifyError::Limit(format!(
                "{what} claims {size} bytes, more than the {} bytes compare reads of one file",
                self.limits.max_file_bytes
            )));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_total_bytes {
            return Err(VerifyError::Limit(format!(
                "reading {what} would take compare past {} bytes in all",
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }

    /// SHA-256 and length of what `reader` yields, reading at most `size` bytes (the declared
    /// size, already accounted with [`Budget::file`]).
    pub fn hash(
        &mut self,
        what: &str,
        reader: &mut dyn Read,
        size: u64,
    ) -> Result<(String, u64), VerifyError> {
        let mut hasher = Sha256::new();
        let mut limited = reader.take(size);
        let mut buffer = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = limited.read(&mut buffer).map_err(|e| VerifyError::Invalid(format!("{what}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            total += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), total))
    }
}
