//! File trees as ceremony-os sees them: a sorted manifest of every path (type, mode, owner, mtime,
//! size, SHA-256 or link target) with a parser and a diff, the tree's Nix NAR hash in SRI form
//! (what `nix-hash --type sha256 --sri DIR` prints), clamping of mtimes to SOURCE_DATE_EPOCH, and
//! SHA256SUMS lines read as `sha256sum -c` reads them.
//!
//! Walks are sorted by file name bytes, so nothing depends on the order the file system returns.

mod clamp;
mod manifest;
mod nar;
mod sums;

pub use clamp::clamp_mtimes;
pub use manifest::{Change, Entry, Kind, TreeManifest, diff};
pub use nar::nar_hash_sri;
pub use sums::sums_entry;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("manifest line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("NAR of {}: {message}", path.display())]
    Nar { path: std::path::PathBuf, message: String },
}

impl TreeError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TreeError::Io { path: path.to_path_buf(), source }
    }
}

/// SHA-256 of a file's contents, as lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> Result<String, TreeError> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(|e| TreeError::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| TreeError::io(path, e))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Every path under `root` (not `root` itself), depth first, children sorted by name bytes.
pub(crate) fn walk_sorted(root: &std::path::Path) -> Result<Vec<std::path::PathBuf>, TreeError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| TreeError::io(&dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|err| TreeError::io(&dir, err)))
            .collect::<Result<_, _>>()?;
        children.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        for child in children.iter().rev() {
            let meta = std::fs::symlink_metadata(child).map_err(|e| TreeError::io(child, e))?;
            if meta.is_dir() {
                stack.push(child.clone());
            }
        }
        // Children in order; directories are descended after (stack order), which is fine:
        // callers sort or only need every path once.
        out.extend(children);
    }
    Ok(out)
}
