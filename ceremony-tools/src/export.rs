//! Export: the ceremony's results leave the laptop on a removable medium. What is exported is
//! what the transcript says was made: every output of a successful step (checked against the
//! digest its step recorded), the transcript itself, and a `SHA256SUMS` of them (digests of the
//! files as written, for `sha256sum -c`). They are laid out in a FAT image (the same bytes for
//! the same files), written to the stick (or to a new image file), synced, and read back from
//! the medium, past the kernel's cache, to be compared.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SUMS: &str = "SHA256SUMS";

/// The files to export (stick path -> bytes), `SHA256SUMS` included, and the time to stamp them
/// with (the transcript's last record).
#[derive(Debug)]
pub struct Export {
    pub files: BTreeMap<String, Vec<u8>>,
    pub epoch: i64,
    /// The transcript's head: the last one the witnesses wrote down, if nothing ran since.
    pub head: String,
    /// The transcript records a rehearsal (`plan run --dry-run`), not a ceremony.
    pub rehearsal: bool,
}

/// A name FAT (long file names) can hold and every system reads the same: no reserved
/// characters, no trailing dot or space, at most 255 characters per component.
fn fat_name(path: &str) -> Result<()> {
    for part in path.split('/') {
        let bad = part.chars().any(|c| c.is_control() || "\"*:<>?\\|".contains(c))
            || part.ends_with('.')
            || part.ends_with(' ')
            || part.chars().count() > 255;
        if bad {
            bail!(
                "{path:?} cannot be written to a FAT stick as it is (reserved character, trailing dot or space, or too long)"
            );
        }
    }
    Ok(())
}

/// Gather what the transcript at `path` says the ceremony made, checking every file against the
/// digest recorded for it.
pub fn collect(transcript_path: &Path) -> Result<Export> {
    let bytes = crate::config::read_regular(transcript_path)?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| anyhow!("{}: not UTF-8 text", transcript_path.display()))?;
    let (records, head) = crate::transcript::verify_text(&text).with_context(|| {
        format!("the transcript {} does not verify (nothing was exported)", transcript_path.display())
    })?;
    if records.is_empty() {
        bail!("the transcript {} holds no record: nothing to export", transcript_path.display());
    }
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    let (mut rehearsed, mut real) = (0, 0);
    for record in records.iter().filter(|r| r.outcome == "ok") {
        recorded.extend(record.outputs.clone());
        match &record.plan {
            Some(plan) if plan.rehearsal => rehearsed += 1,
            _ if !record.outputs.is_empty() => real += 1,
            _ => {}
        }
    }
    if rehearsed > 0 && real > 0 {
        bail!(
            "the transcript {} mixes {rehearsed} rehearsal steps with {real} ceremony steps that made files: a rehearsal needs its own work directory (nothing was exported)",
            transcript_path.display()
        );
    }
    let mut files = BTreeMap::new();
    for (path, digest) in &recorded {
        crate::config::plain_relative(path, "output").context(
            "export takes outputs named relative to the work directory; run it there, or copy this one by hand",
        )?;
        fat_name(path)?;
        let (bytes, der) = crate::config::read_own_pem(Path::new(path))?;
        let actual = crate::ca::sha256_hex(&der);
        if actual != *digest {
            bail!(
                "{path} has SHA-256 {actual} (DER), the transcript recorded {digest}: it was replaced (nothing was exported)"
            );
        }
        files.insert(path.clone(), bytes);
    }
    let name = transcript_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the transcript's file name is not UTF-8")?
        .to_string();
    fat_name(&name)?;
    if files.contains_key(&name) {
        bail!("the transcript's name {name:?} is also the name of an output (nothing was exported)");
    }
    files.insert(name, text.into_bytes());
    // FAT compares names without regard to case: two names that differ only in case are one.
    let mut folded = BTreeMap::new();
    for name in files.keys().chain(std::iter::once(&SUMS.to_string())) {
        if let Some(other) = folded.insert(name.to_lowercase(), name.clone()) {
            bail!("{other:?} and {name:?} are the same name on a FAT stick");
        }
    }
    let sums: String =
        files.iter().map(|(name, bytes)| format!("{}  {name}\n", crate::ca::sha256_hex(bytes))).collect();
    let epoch = records
        .last()
        .and_then(|r| ceremony_os_timestamp::Timestamp::parse_rfc3339_utc(&r.time).ok())
        .map_or(315_532_800, |t| t.unix());
    files.insert(SUMS.into(), sums.into_bytes());
    Ok(Export { files, epoch, head, rehearsal: rehearsed > 0 })
}

impl Export {
    /// The `SHA256SUMS` on the stick.
    pub fn sums(&self) -> &[u8] {
        self.files.get(SUMS).map_or(&[], Vec::as_slice)
    }
}

/// Where the export goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A USB stick (a whole disk or a partition): overwritten from its first byte.
    Device(PathBuf),
    /// A new image file.
    Image(PathBuf),
}

/// What was written and read back.
#[derive(Debug)]
pub struct Written {
    pub sha256: String,
    pub bytes: u64,
}

/// A volume label FAT and every system accept.
fn check_label(label: &str) -> Result<()> {
    if label.is_empty()
        || label.len() > 11
        || !label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        bail!("the label {label:?} must be 1 to 11 capital letters, digits, '_' or '-'");
    }
    Ok(())
}

/// Lay the files out in a FAT image, write it to `target`, and read it back from the medium.
pub fn write(export: &Export, target: &Target, label: &str) -> Result<Written> {
    check_label(label)?;
    let files: Vec<(&str, &[u8])> = export.files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let image = ceremony_os_media::fat::fat_image(label, &files, export.epoch)?;
    let sha256 = crate::ca::sha256_hex(&image);
    let len = image.len() as u64;
    let written_to = match target {
        Target::Image(path) => {
            ceremony_os_media::write_new(path, &image)?;
            path
        }
        Target::Device(device) => {
            write_device(device, &image)?;
            device
        }
    };
    let (back, n) = ceremony_os_media::sha256_from_medium(written_to, len)?;
    if n != len || back != sha256 {
        bail!(
            "MISMATCH: {} reads back as {back} ({n} bytes), the export is {sha256} ({len} bytes): the medium is faulty; use another",
            written_to.display()
        );
    }
    Ok(Written { sha256, bytes: len })
}

/// Export writes only to USB storage: an unmounted internal disk must never be the target of a
/// mistyped device name.
fn refuse_non_usb(device: &Path) -> Result<()> {
    let real =
        std::fs::canonicalize(device).with_context(|| format!("cannot resolve {}", device.display()))?;
    let name = real.file_name().and_then(|n| n.to_str()).context("the device has no name")?;
    let sys = std::fs::canonicalize(format!("/sys/class/block/{name}"))
        .with_context(|| format!("{} has no entry in /sys/class/block", device.display()))?;
    if !sys.to_string_lossy().contains("/usb") {
        bail!(
            "{} is not on USB ({}): export writes only to a USB stick; nothing was written",
            device.display(),
            sys.display()
        );
    }
    Ok(())
}

/// Write the image from the device's first byte, after checking the device: a block device, not
/// mounted or used as swap (the live medium, the material disc), and large enough. Its last MiB
/// is zeroed too, so that no backup GPT of an earlier layout makes systems see old partitions.
fn write_device(device: &Path, image: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(device).with_context(|| format!("cannot read {}", device.display()))?;
    if !meta.file_type().is_block_device() {
        bail!("{} is not a block device; to write an image file use --image", device.display());
    }
    refuse_non_usb(device)?;
    let uses = ceremony_os_media::device::uses(device)?;
    if !uses.is_empty() {
        bail!(
            "{} is in use: {}; nothing was written",
            device.display(),
            uses.iter().map(|u| u.what.clone()).collect::<Vec<_>>().join("; ")
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .with_context(|| format!("cannot open {} for writing", device.display()))?;
    let size = file.seek(SeekFrom::End(0)).with_context(|| format!("cannot size {}", device.display()))?;
    let len = image.len() as u64;
    if size < len {
        bail!("{} holds {size} bytes; the export needs {len}", device.display());
    }
    let io = |e: std::io::Error| anyhow!("{}: {e}", device.display());
    const TAIL: u64 = 1 << 20;
    if size >= len + TAIL {
        file.seek(SeekFrom::Start(size - TAIL)).map_err(io)?;
        file.write_all(&vec![0u8; TAIL as usize]).map_err(io)?;
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(image).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fat_cannot_hold_are_refused() {
        assert!(fat_name("certs/root.pem").is_ok());
        for bad in ["a:b.pem", "a?.pem", "dir./x", "x ", "a\u{7}b", "a|b"] {
            assert!(fat_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        assert!(check_label("CEREMONY").is_ok());
        for bad in ["", "ceremony", "TWELVE_CHARS", "A B"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }
}
