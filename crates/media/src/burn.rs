//! Burning an ISO to a CD-R or a USB stick, and checking the result by reading it back.
//!
//! The ISO is opened once (a regular file or a block device; a FIFO or socket is refused) and
//! copied into a private directory while it is hashed: what is written is that private copy, so
//! the bytes checked against the expected digest are the bytes written, even if the source changes
//! or serves other bytes to a second reader. The digest must match before the target is opened.
//! A target that is mounted, holds a mounted partition, is used as swap or is the disk the system
//! runs from is refused, naming what is mounted where (`device`). Optical drives are written by
//! xorriso (or cdrecord/wodim when asked); USB sticks and image files are written directly and
//! synced. Then the first ISO-size bytes of the device are read back and hashed: a CD-R read-back
//! carries padding after the image, so only the prefix is compared.

use crate::MediaError;
use ceremony_os_runner::Runner;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A CD/DVD writer (`/dev/sr*`, SCSI type 5).
    Optical,
    /// Any other block device, such as a USB stick.
    Block,
    /// A regular file: an image of a stick, or a test target.
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Write the bytes ourselves and sync (sticks and files).
    Direct,
    Xorriso,
    Cdrecord,
    Wodim,
}

impl Tool {
    pub fn parse(name: &str) -> Option<Tool> {
        match name {
            "direct" => Some(Tool::Direct),
            "xorriso" => Some(Tool::Xorriso),
            "cdrecord" => Some(Tool::Cdrecord),
            "wodim" => Some(Tool::Wodim),
            _ => None,
        }
    }
}

/// Everything decided before the device is touched.
#[derive(Debug)]
pub struct BurnPlan {
    /// The ISO as given.
    pub iso: PathBuf,
    /// The private copy that was hashed and is what gets written.
    private: tempfile::TempDir,
    pub iso_size: u64,
    pub iso_sha256: String,
    pub device: PathBuf,
    pub kind: DeviceKind,
    pub tool: Tool,
}

impl BurnPlan {
    /// The write step as a command line, for `--dry-run` and the log.
    pub fn describe_write(&self) -> String {
        let (iso, dev) = (self.iso.display(), self.device.display());
        let iso = format!("{iso} (its verified private copy)");
        match self.tool {
            Tool::Direct => format!("write {} bytes of {iso} to {dev}, then fsync", self.iso_size),
            Tool::Xorriso => format!("xorriso -as cdrecord -v dev={} -dao {iso}", self.xorriso_dev()),
            Tool::Cdrecord => format!("cdrecord -v dev={dev} -dao {iso}"),
            Tool::Wodim => format!("wodim -v dev={dev} -dao {iso}"),
        }
    }

    /// The verified copy of the ISO.
    pub fn private_iso(&self) -> PathBuf {
        self.private.path().join("image.iso")
    }

    fn xorriso_dev(&self) -> String {
        match self.kind {
            DeviceKind::Optical => self.device.display().to_string(),
            _ => format!("stdio:{}", self.device.display()),
        }
    }
}

/// The expected digest from `--expect`: 64 hex digits, or a SHA256SUMS file with a line for the
/// ISO's file name.
pub fn expected_digest(expect: &str, iso: &Path) -> Result<String, MediaError> {
    let trimmed = expect.trim();
    if trimmed.len() == 64 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(trimmed.to_ascii_lowercase());
    }
    let sums_path = Path::new(expect);
    let text = std::fs::read_to_string(sums_path).map_err(|e| {
        MediaError::Invalid(format!(
            "--expect {expect:?} is neither a SHA-256 (64 hex digits) nor a readable SHA256SUMS file: {e}"
        ))
    })?;
    let name = iso.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match ceremony_os_tree::sums_entry(&text, &name) {
        Ok(Some(digest)) => Ok(digest),
        Ok(None) => Err(MediaError::Invalid(format!("{} has no line for {name}", sums_path.display()))),
        Err(e) => Err(MediaError::Invalid(format!("{}: {e}", sums_path.display()))),
    }
}

pub fn device_kind(device: &Path) -> Result<DeviceKind, MediaError> {
    let meta = std::fs::metadata(device).map_err(|e| MediaError::io(device, e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(DeviceKind::File);
    }
    if !ft.is_block_device() {
        return Err(MediaError::Refused {
            path: device.to_path_buf(),
            message: "is neither a block device nor a regular file".into(),
        });
    }
    let name =
        device.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let scsi_type = name
        .as_ref()
        .and_then(|n| std::fs::read_to_string(format!("/sys/block/{n}/device/type")).ok())
        .map(|t| t.trim().to_string());
    let optical = scsi_type.as_deref() == Some("5") || name.as_deref().is_some_and(|n| n.starts_with("sr"));
    Ok(if optical { DeviceKind::Optical } else { DeviceKind::Block })
}

/// Copy the ISO (opened once; a regular file or block device) into a private directory, hashing
/// what is copied.
fn private_copy(iso: &Path) -> Result<(tempfile::TempDir, String, u64), MediaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(iso)
        .map_err(|e| MediaError::io(iso, e))?;
    let kind = source.metadata().map_err(|e| MediaError::io(iso, e))?.file_type();
    if !kind.is_file() && !kind.is_block_device() {
        return Err(MediaError::Refused {
            path: iso.to_path_buf(),
            message: "is not a regular file or a block device (a FIFO, socket or character device); burn reads an ISO once, from a file".into(),
        });
    }
    let private =
        tempfile::Builder::new().prefix("ceremony-os-burn-").tempdir().map_err(|e| MediaError::io(iso, e))?;
    let copy_path = private.path().join("image.iso");
    let mut copy = std::fs::File::create(&copy_path).map_err(|e| MediaError::io(&copy_path, e))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buf).map_err(|e| MediaError::io(iso, e))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        copy.write_all(&buf[..n]).map_err(|e| MediaError::io(&copy_path, e))?;
        size += n as u64;
    }
    copy.sync_all().map_err(|e| MediaError::io(&copy_path, e))?;
    Ok((private, hex::encode(sha2::Digest::finalize(hasher)), size))
}

/// How `plan` decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    pub tool: Option<Tool>,
    /// The target will be written (not only read back): it must not be in use.
    pub writes: bool,
    /// Write a disk whose file systems are mounted (never the system's own disk, never after a
    /// digest mismatch).
    pub force: bool,
}

/// Check the ISO against `expected` and the target, and decide how to write. Nothing is written
/// to the target here.
pub fn plan(iso: &Path, device: &Path, expected: &str, options: PlanOptions) -> Result<BurnPlan, MediaError> {
    let PlanOptions { tool, writes, force } = options;
    let (private, iso_sha256, iso_size) = private_copy(iso)?;
    if iso_sha256 != expected {
        return Err(MediaError::Refused {
            path: iso.to_path_buf(),
            message: format!(
                "refusing to burn: its SHA-256 is {iso_sha256}, expected {expected}; nothing was written"
            ),
        });
    }
    let kind = device_kind(device)?;
    let uses = if writes { crate::device::uses(device)? } else { Vec::new() };
    if let Some(system) = uses.iter().find(|u| u.system) {
        return Err(MediaError::Refused {
            path: device.to_path_buf(),
            message: format!("is the disk this system runs from ({}); nothing was written", system.what),
        });
    }
    if !uses.is_empty() && !force {
        let list: Vec<&str> = uses.iter().map(|u| u.what.as_str()).collect();
        return Err(MediaError::Refused {
            path: device.to_path_buf(),
            message: format!(
                "is in use: {}; unmount it first (or --force, if you are sure); nothing was written",
                list.join("; ")
            ),
        });
    }
    let tool = match (tool, kind) {
        (Some(t), _) => t,
        (None, DeviceKind::Optical) => Tool::Xorriso,
        (None, _) => Tool::Direct,
    };
    if kind == DeviceKind::Optical && tool == Tool::Direct {
        return Err(MediaError::Invalid(
            "an optical drive is written with xorriso, cdrecord or wodim".into(),
        ));
    }
    if kind != DeviceKind::Optical && matches!(tool, Tool::Cdrecord | Tool::Wodim) {
        return Err(MediaError::Invalid(format!("{} writes optical drives only", tool_name(tool))));
    }
    Ok(BurnPlan {
        iso: iso.to_path_buf(),
        private,
        iso_size,
        iso_sha256,
        device: device.to_path_buf(),
        kind,
        tool,
    })
}

fn tool_name(tool: Tool) -> &'static str {
    match tool {
        Tool::Direct => "direct",
        Tool::Xorriso => "xorriso",
        Tool::Cdrecord => "cdrecord",
        Tool::Wodim => "wodim",
    }
}

/// Write the ISO to the device as planned.
pub fn write(plan: &BurnPlan, runner: &Runner, progress: &mut dyn FnMut(&str)) -> Result<(), MediaError> {
    match plan.tool {
        Tool::Direct => write_direct(plan, progress),
        tool => {
            let mut cmd = runner.cmd(tool_name(tool), "/");
            cmd = match tool {
                Tool::Xorriso => {
                    cmd.args(["-as", "cdrecord", "-v"]).arg(format!("dev={}", plan.xorriso_dev()))
                }
                _ => cmd.arg("-v").arg(format!("dev={}", plan.device.display())),
            };
            cmd.arg("-dao").arg(plan.private_iso()).run_merged(|line| progress(line))?;
            Ok(())
        }
    }
}

fn write_direct(plan: &BurnPlan, progress: &mut dyn FnMut(&str)) -> Result<(), MediaError> {
    let private = plan.private_iso();
    let mut input = std::fs::File::open(&private).map_err(|e| MediaError::io(&private, e))?;
    // No truncation: a stick (or its image) is larger than the ISO and keeps its size.
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .open(&plan.device)
        .map_err(|e| MediaError::io(&plan.device, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut next_report = plan.iso_size / 10;
    loop {
        let n = input.read(&mut buf).map_err(|e| MediaError::io(&private, e))?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(|e| MediaError::io(&plan.device, e))?;
        written += n as u64;
        if written >= next_report && plan.iso_size > 0 {
            progress(&format!("written {}%", written * 100 / plan.iso_size));
            next_report += plan.iso_size / 10;
        }
    }
    output.sync_all().map_err(|e| MediaError::io(&plan.device, e))?;
    Ok(())
}

/// What reading the device back gave.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub sha256: String,
    pub bytes_read: u64,
}

pub fn read_back(plan: &BurnPlan) -> Result<ReadBack, MediaError> {
    let (sha256, bytes_read) = crate::sha256_from_medium(&plan.device, plan.iso_size)?;
    Ok(ReadBack { sha256, bytes_read })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_from_hex_or_sums_file() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("os.iso");
        let hex = "ab".repeat(32);
        assert_eq!(expected_digest(&hex.to_uppercase(), &iso).unwrap(), hex);
        let sums = dir.path().join("SHA256SUMS");
        std::fs::write(&sums, format!("{}  other.iso\n{hex}  os.iso\n", "cd".repeat(32))).unwrap();
        assert_eq!(expected_digest(sums.to_str().unwrap(), &iso).unwrap(), hex);
        std::fs::write(&sums, format!("{}  other.iso\n", "cd".repeat(32))).unwrap();
        let err = expected_digest(sums.to_str().unwrap(), &iso).unwrap_err().to_string();
        assert!(err.contains("has no line for os.iso"), "{err}");
        assert!(expected_digest("nothex", &iso).is_err());
    }
}
