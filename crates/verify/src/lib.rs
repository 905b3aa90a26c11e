//! Verification: what a witness runs. `compare` takes two ISOs apart layer by layer (volume
//! descriptor, boot records, file tree, the squashfs inside, the initrd's archive) and says which
//! files differ and how; `expect` reads what was published (a digest, SHA256SUMS, an ISO, a build
//! manifest or an in-toto provenance) and compares a rebuild with it stage by stage.

pub mod compare;
pub mod expect;
pub mod iso9660;

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
}

impl VerifyError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VerifyError::Io { path: path.to_path_buf(), source }
    }
}
