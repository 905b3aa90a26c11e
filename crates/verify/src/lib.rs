//! Verification: what a witness runs. `rebuild` is the `verify` workflow (rebuild with no cache,
//! compare with what was published, say where it differs); `compare` takes two ISOs apart layer by
//! layer (volume descriptor, boot catalog, structure, file tree, the squashfs inside, the initrd as
//! the kernel unpacks it), parsing them in-process (`isofs`, `squashfs`, `initrd`, `cpio`,
//! `initramfs`) within `limits`;
//! `expect` reads what was published (a digest, SHA256SUMS, an ISO, a build manifest or an in-toto
//! provenance).

pub mod compare;
mod cpio;
pub mod expect;
mod initramfs;
mod initrd;
pub mod iso9660;
pub mod isofs;
pub mod limits;
pub mod rebuild;
mod squashfs;

/// Each reader of untrusted bytes on its own, for the fuzz targets (crates/fuzz): whatever the
/// input, each returns a result (an error naming what is wrong) and never panics, hangs or holds
/// more than its limits allow. `compare` reads images through the same functions.
pub mod readers {
    use crate::VerifyError;
    use crate::limits::{Budget, Limits};
    use std::path::Path;

    /// An initrd split into segments and unpacked as the kernel would: how many paths result.
    pub fn initrd(bytes: &[u8], limits: Limits) -> Result<usize, VerifyError> {
        let segments = crate::initrd::segments(bytes, "initrd", &mut Budget::new(limits))?;
        Ok(crate::initramfs::unpack(&segments, "initrd")?.tree.len())
    }

    /// One uncompressed cpio archive: how many records it holds.
    pub fn cpio(bytes: &[u8], limits: Limits) -> Result<usize, VerifyError> {
        Ok(crate::cpio::parse_archive(bytes, "cpio", &mut Budget::new(limits))?.0.len())
    }

    /// The squashfs file at `path` (all of it): how many entries its tree has.
    pub fn squashfs(path: &Path, limits: Limits) -> Result<usize, VerifyError> {
        let len = std::fs::metadata(path).map_err(|e| VerifyError::io(path, e))?.len();
        let tree = crate::squashfs::read_tree(path, 0, len, "squashfs", &mut Budget::new(limits))?;
        Ok(tree.entries.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    NotAnIso { path: std::path::PathBuf, message: String },
    #[error(transparent)]
    Run(#[from] ceremony_os_runner::RunError),
    #[error(transparent)]
    Tree(#[from] ceremony_os_tree::TreeError),
    #[error("{0}")]
    Invalid(String),
    /// A crafted or unexpectedly large image reached one of compare's limits.
    #[error("limit reached: {0}")]
    Limit(String),
}

impl VerifyError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VerifyError::Io { path: path.to_path_buf(), source }
    }
}
