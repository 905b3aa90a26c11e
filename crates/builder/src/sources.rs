//! Snapshots of the build's source directories (the overlay, the workspace the `ceremony` tool is
//! compiled from), taken once at the start of a build. Stages key on the snapshot's content
//! digest and read only the snapshot, so an edit made while the build runs cannot slip into an
//! output that is recorded under the old key.
//!
//! A snapshot holds directories (0755), regular files (0644, or 0755 when any execute bit is set
//! in the checkout) and symlinks, all owned by root; device nodes, FIFOs and sockets are refused.
//! An overlay is taken whole; of the workspace, hidden entries, directories named `target` and
//! Markdown files are left out: cargo's build output, editor or VCS state and documentation are
//! not what the compiler reads.

use crate::error::BuildError;
use ceremony_os_tree::Kind;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    pub dir: PathBuf,
    /// See [`content_digest`].
    pub digest: String,
}

/// What a snapshot leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Everything,
    /// Hidden entries, `target` directories and `*.md` files are left out.
    CompilerInputs,
}

impl Keep {
    fn keeps(self, name: &str) -> bool {
        match self {
            Keep::Everything => true,
            Keep::CompilerInputs => !name.starts_with('.') && name != "target" && !name.ends_with(".md"),
        }
    }
}

/// Copy each `(source, name)` to `dest/name` under the rules above and digest the result.
pub fn snapshot(sources: &[(PathBuf, &str)], dest: &Path, keep: Keep) -> Result<SourceSnapshot, BuildError> {
    std::fs::create_dir_all(dest).map_err(|e| BuildError::io(dest, e))?;
    for (source, name) in sources {
        copy_entry(source, &dest.join(name), keep)?;
    }
    Ok(SourceSnapshot { dir: dest.to_path_buf(), digest: content_digest(dest)? })
}

fn copy_entry(from: &Path, to: &Path, keep: Keep) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from).map_err(|e| BuildError::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| BuildError::io(to, e))?;
        crate::stages::set_mode(to, 0o755)?;
        for entry in crate::cache::read_dir_sorted(from)? {
            let name = entry.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if !keep.keeps(&name) {
                continue;
            }
            copy_entry(&entry, &to.join(&name), keep)?;
        }
    } else if meta.is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| BuildError::io(from, e))?;
        std::os::unix::fs::symlink(&target, to).map_err(|e| BuildError::io(to, e))?;
    } else if meta.is_file() {
        std::fs::copy(from, to).map_err(|e| BuildError::io(from, e))?;
        crate::stages::set_mode(to, if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
    } else {
        return Err(BuildError::stage(
            "sources",
            format!(
                "{} is a device, FIFO or socket; a source tree may hold only files, directories and symlinks",
                from.display()
            ),
        ));
    }
    Ok(())
}

/// Digest of a tree's names, content, symlink targets and executable bits, not of its mtimes,
/// owners or other mode bits (which a checkout does not carry reliably).
pub fn content_digest(dir: &Path) -> Result<String, BuildError> {
    let manifest = ceremony_os_tree::TreeManifest::scan(dir)?;
    let mut text = String::new();
    for e in &manifest.entries {
        let kind = match &e.kind {
            Kind::Dir => "dir".to_string(),
            Kind::File { sha256, .. } => format!("file {sha256} {}", e.mode & 0o111 != 0),
            Kind::Symlink { target } => format!("symlink {target}"),
            Kind::Special(s) => {
                return Err(BuildError::stage(
                    "sources",
                    format!(
                        "{}{} is a {s}; only files, directories and symlinks are allowed",
                        dir.display(),
                        e.path
                    ),
                ));
            }
        };
        text.push_str(&format!("{}\t{kind}\n", e.path));
    }
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_mtime_but_not_content_or_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/a"), b"x").unwrap();
        let d1 = content_digest(dir.path()).unwrap();
        filetime::set_file_mtime(dir.path().join("etc/a"), filetime::FileTime::from_unix_time(5, 0)).unwrap();
        assert_eq!(content_digest(dir.path()).unwrap(), d1);
        crate::stages::set_mode(&dir.path().join("etc/a"), 0o755).unwrap();
        let d2 = content_digest(dir.path()).unwrap();
        assert_ne!(d2, d1);
        std::fs::write(dir.path().join("etc/a"), b"y").unwrap();
        assert_ne!(content_digest(dir.path()).unwrap(), d2);
    }

    #[test]
    fn snapshots_keep_what_they_should_and_refuse_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("target/release")).unwrap();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join("lib.rs"), b"fn main() {}").unwrap();
        std::fs::write(src.join("target/release/x"), b"built").unwrap();
        std::fs::write(src.join(".git/HEAD"), b"ref").unwrap();
        std::fs::write(src.join("README.md"), b"docs").unwrap();
        let snap =
            snapshot(&[(src.clone(), "crate")], &dir.path().join("snap"), Keep::CompilerInputs).unwrap();
        assert!(snap.dir.join("crate/lib.rs").is_file());
        assert!(!snap.dir.join("crate/target").exists());
        assert!(!snap.dir.join("crate/.git").exists());
        assert!(!snap.dir.join("crate/README.md").exists());
        let whole =
            snapshot(&[(src.clone(), "overlay")], &dir.path().join("whole"), Keep::Everything).unwrap();
        assert!(
            whole.dir.join("overlay/.git/HEAD").is_file() && whole.dir.join("overlay/README.md").is_file()
        );

        let status = std::process::Command::new("mkfifo").arg(src.join("pipe")).status().unwrap();
        assert!(status.success());
        let err =
            snapshot(&[(src, "crate")], &dir.path().join("snap2"), Keep::Everything).unwrap_err().to_string();
        assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    }
}
