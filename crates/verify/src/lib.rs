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
