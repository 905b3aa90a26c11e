//! Discs for the ceremony: the material disc (a reproducible data ISO of a folder, with a
//! `SHA256SUMS` inside), burning any ISO to a CD-R or USB stick with read-back verification,
//! reproducible FAT images, and what a device is used for.

pub mod burn;
pub mod device;
pub mod fat;
pub mod material;

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Run(#[from] ceremony_os_runner::RunError),
    #[error("{}: {message}", path.display())]
    Refused { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl MediaError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        MediaError::Io { path: path.to_path_buf(), source }
    }
}

/// Open a file for reading only if it is a regular file (opened without blocking, then checked,
/// so a FIFO cannot hang the caller).
pub fn open_regular(path: &Path) -> Result<std::fs::File, MediaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| MediaError::io(path, e))?;
    if !file.metadata().map_err(|e| MediaError::io(path, e))?.is_file() {
        return Err(MediaError::Refused {
            path: path.to_path_buf(),
            message: "is not a regular file".into(),
        });
    }
    Ok(file)
}

/// Create `path` holding `bytes`, only if it does not exist: written and synced under a
/// temporary name in the same directory (mode 0644), then linked to its name only if the name is
/// still free. A failure leaves nothing behind, and nothing is ever overwritten.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".ceremony-partial-")
        .tempfile_in(dir)
        .map_err(|e| MediaError::io(dir, e))?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| MediaError::io(path, e))?;
    file.persist_noclobber(path).map_err(|e| MediaError::io(path, e.error))?;
    Ok(())
}

/// SHA-256 (hex) of the first `len` bytes `path` holds on its medium, and how many bytes were
/// read: what was written is synced and the kernel's cached pages of the file or device are
/// dropped first, so the bytes are read from the device rather than from memory.
pub fn sha256_from_medium(path: &Path, len: u64) -> Result<(String, u64), MediaError> {
    let file = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
    file.sync_all().map_err(|e| MediaError::io(path, e))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(|e| MediaError::io(path, e.into()))?;
    sha256_prefix(path, Some(len))
}

/// SHA-256 (hex) of the first `limit` bytes of `path` (all of it if `None`), and how many bytes
/// were read. Reading stops early at end of file.
pub fn sha256_prefix(path: &Path, limit: Option<u64>) -> Result<(String, u64), MediaError> {
    let file = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
    let mut reader: Box<dyn Read> = match limit {
        Some(n) => Box::new(file.take(n)),
        None => Box::new(file),
    };
    let mut hasher = Sha256::new();
    let n = std::io::copy(&mut reader, &mut hasher).map_err(|e| MediaError::io(path, e))?;
    Ok((hex::encode(hasher.finalize()), n))
}
