//! Build errors. Each names the stage or file involved and the evidence.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Run(#[from] ceremony_os_runner::RunError),
    #[error(transparent)]
    Tree(#[from] ceremony_os_tree::TreeError),
    #[error(transparent)]
    Store(#[from] ceremony_os_store::StoreError),
    #[error(transparent)]
    Media(#[from] ceremony_os_media::MediaError),
    #[error("refusing to remove {}: file systems are still mounted inside it: {}", path.display(), mounts.join(", "))]
    Mounted { path: PathBuf, mounts: Vec<String> },
    #[error("the build needs root (mmdebstrap in root mode, chroot and namespaces); run it as root")]
    NotRoot,
    #[error("{label} is not in the store; run `ceremony-os fetch` first")]
    MissingInput { label: String },
    #[error("the image root file system does not hold exactly the locked package set:\n  missing: {}\n  not locked: {}", or_none(.missing), or_none(.unexpected))]
    PackageSetMismatch { missing: Vec<String>, unexpected: Vec<String> },
    #[error("hsm_bundle {name}: {message}")]
    HsmBundle { name: String, message: String },
    #[error("the Rust compiler: {message}")]
    Compiler { message: String },
    #[error("{stage}: {message}")]
    Stage { stage: &'static str, message: String },
}

fn or_none(list: &[String]) -> String {
    if list.is_empty() { "(none)".into() } else { list.join(", ") }
}

impl BuildError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        BuildError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn stage(stage: &'static str, message: impl Into<String>) -> Self {
        BuildError::Stage { stage, message: message.into() }
    }
}
