//! Clamp every mtime in a tree to at most SOURCE_DATE_EPOCH (as squashfs-tools and xorriso do with
//! SOURCE_DATE_EPOCH), without following symlinks.

use crate::{TreeError, walk_sorted};
use filetime::FileTime;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Set the mtime (and atime) of every path under `root`, and `root` itself, that is newer than
/// `epoch` to `epoch`. Returns how many were changed.
pub fn clamp_mtimes(root: &Path, epoch: i64) -> Result<usize, TreeError> {
    let mut changed = 0;
    let mut paths = walk_sorted(root)?;
    paths.push(root.to_path_buf());
    let time = FileTime::from_unix_time(epoch, 0);
    for path in paths {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| TreeError::io(&path, e))?;
        if meta.mtime() > epoch || (meta.mtime() == epoch && meta.mtime_nsec() != 0) {
            filetime::set_symlink_file_times(&path, time, time).map_err(|e| TreeError::io(&path, e))?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_times_are_clamped_older_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("new"), b"x").unwrap();
        std::fs::write(root.join("old"), b"y").unwrap();
        std::os::unix::fs::symlink("new", root.join("link")).unwrap();
        filetime::set_file_mtime(root.join("old"), FileTime::from_unix_time(1000, 0)).unwrap();
        clamp_mtimes(root, 5000).unwrap();
        let mtime = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap().mtime();
        assert_eq!(mtime("new"), 5000);
        assert_eq!(mtime("link"), 5000);
        assert_eq!(mtime("old"), 1000);
        assert_eq!(std::fs::metadata(root).unwrap().mtime(), 5000);
    }
}
