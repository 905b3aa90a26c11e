//! The material disc: a folder (CSRs, ceremony step configurations, scripts) as an ISO 9660 image
//! with Rock Ridge and Joliet and a `SHA256SUMS` of its files at the root. The same folder gives
//! the same bytes whatever the files' mtimes, the order they were created in, the umask or the
//! user: the folder is staged with fixed modes and dates, xorriso sorts names and writes owner 0
//! (`-r`), and every date comes from the given epoch.

use crate::MediaError;
use ceremony_os_runner::Cmd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub const SUMS_NAME: &str = "SHA256SUMS";

/// One regular file of the folder, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// An ISO 9660 volume id: 1-32 of `A-Z 0-9 _`.
pub fn validate_label(label: &str) -> Result<String, MediaError> {
    let upper = label.to_ascii_uppercase();
    if upper.is_empty() || upper.len() > 32 || !upper.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(MediaError::Invalid(format!(
            "label {label:?}: an ISO 9660 volume id has 1 to 32 letters, digits or '_'"
        )));
    }
    Ok(upper)
}

/// Copy `source` into `staging` (which must not exist): files 0644 (0755 if executable),
/// directories 0755, symlinks as they are if they stay inside the folder, every mtime `epoch`;
/// then write `SHA256SUMS` of the regular files at the root. Special files, symlinks leaving the
/// folder and an existing top-level `SHA256SUMS` are refused.
pub fn stage(source: &Path, staging: &Path, epoch: i64) -> Result<Vec<MaterialFile>, MediaError> {
    let meta = std::fs::metadata(source).map_err(|e| MediaError::io(source, e))?;
    if !meta.is_dir() {
        return Err(MediaError::Refused { path: source.to_path_buf(), message: "is not a directory".into() });
    }
    if std::fs::symlink_metadata(source.join(SUMS_NAME)).is_ok() {
        return Err(MediaError::Refused {
            path: source.join(SUMS_NAME),
            message: "the folder already has a SHA256SUMS; the material disc writes its own there".into(),
        });
    }
    std::fs::create_dir(staging).map_err(|e| MediaError::io(staging, e))?;
    let mut files = Vec::new();
    copy_dir(source, source, staging, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let sums: String = files.iter().map(|f| format!("{}  {}\n", f.sha256, f.path)).collect();
    let sums_path = staging.join(SUMS_NAME);
    std::fs::write(&sums_path, sums).map_err(|e| MediaError::io(&sums_path, e))?;
    set_mode(&sums_path, 0o644)?;
    clamp_all(staging, epoch)?;
    Ok(files)
}

fn copy_dir(root: &Path, dir: &Path, dest: &Path, files: &mut Vec<MaterialFile>) -> Result<(), MediaError> {
    set_mode(dest, 0o755)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MediaError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| MediaError::io(dir, err)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().expect("entries have names");
        let target = dest.join(name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| MediaError::io(&path, e))?;
        let relative = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        if meta.is_dir() {
            std::fs::create_dir(&target).map_err(|e| MediaError::io(&target, e))?;
            copy_dir(root, &path, &target, files)?;
        } else if meta.is_file() {
            std::fs::copy(&path, &target).map_err(|e| MediaError::io(&path, e))?;
            set_mode(&target, if meta.mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
            let (sha256, size) = crate::sha256_prefix(&target, None)?;
            files.push(MaterialFile { path: relative, sha256, size });
        } else if meta.file_type().is_symlink() {
            let link_target = std::fs::read_link(&path).map_err(|e| MediaError::io(&path, e))?;
            if !stays_inside(Path::new(&relative), &link_target) {
                return Err(MediaError::Refused {
                    path,
                    message: format!("symlink to {} points outside the folder", link_target.display()),
                });
            }
            std::os::unix::fs::symlink(&link_target, &target).map_err(|e| MediaError::io(&target, e))?;
        } else {
            return Err(MediaError::Refused {
                path,
                message: "is a device, FIFO or socket; only files, directories and symlinks go on a disc"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Does a symlink at `link` (relative to the folder) with `target` resolve inside the folder?
fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MediaError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| MediaError::io(path, e))
}

fn clamp_all(dir: &Path, epoch: i64) -> Result<(), MediaError> {
    let time = filetime::FileTime::from_unix_time(epoch, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| MediaError::io(&d, e))? {
            let path = entry.map_err(|e| MediaError::io(&d, e))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| MediaError::io(&path, e))?;
            if meta.is_dir() {
                stack.push(path.clone());
            }
            filetime::set_symlink_file_times(&path, time, time).map_err(|e| MediaError::io(&path, e))?;
        }
        filetime::set_symlink_file_times(&d, time, time).map_err(|e| MediaError::io(&d, e))?;
    }
    Ok(())
}

/// Arguments for `xorriso` (run by the caller, from the locked toolchain) that write `staging` as
/// the data ISO `output`.
pub fn xorriso_args(cmd: Cmd, staging: &Path, output: &Path, label: &str, epoch: i64) -> Cmd {
    cmd.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["-as", "mkisofs", "-o"])
        .arg(output)
        .args(["-V", label, "-volset", label, "-A", "ceremony-os material disc", "-p", "CEREMONY-OS"])
        .args(["-publisher", "CEREMONY-OS", "-iso-level", "3", "-r", "-J", "-joliet-long"])
        .arg(staging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(stays_inside(Path::new("a/link"), Path::new("b")));
        assert!(stays_inside(Path::new("a/link"), Path::new("../c")));
        assert!(!stays_inside(Path::new("a/link"), Path::new("../../etc/passwd")));
        assert!(!stays_inside(Path::new("link"), Path::new("/etc/passwd")));
        assert!(stays_inside(Path::new("link"), Path::new("./x/../y")));
    }

    #[test]
    fn labels() {
        assert_eq!(validate_label("ksk_2026").unwrap(), "KSK_2026");
        assert!(validate_label("with space").is_err());
        assert!(validate_label(&"A".repeat(33)).is_err());
    }

    #[test]
    fn staging_writes_sums_and_refuses_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("csr")).unwrap();
        std::fs::write(src.join("csr/ksk.csr"), b"csr").unwrap();
        std::fs::write(src.join("step1.toml"), b"x = 1\n").unwrap();
        std::os::unix::fs::symlink("step1.toml", src.join("current.toml")).unwrap();
        let files = stage(&src, &dir.path().join("stage"), 1_783_814_400).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["csr/ksk.csr", "step1.toml"]);
        let sums = std::fs::read_to_string(dir.path().join("stage/SHA256SUMS")).unwrap();
        assert!(sums.ends_with("  step1.toml\n"));
        assert_eq!(std::fs::metadata(dir.path().join("stage/csr")).unwrap().mtime(), 1_783_814_400);

        std::os::unix::fs::symlink("/etc/shadow", src.join("evil")).unwrap();
        let err = stage(&src, &dir.path().join("stage2"), 0).unwrap_err().to_string();
        assert!(err.contains("evil") && err.contains("points outside the folder"), "{err}");
        std::fs::remove_file(src.join("evil")).unwrap();
        std::fs::write(src.join("SHA256SUMS"), b"").unwrap();
        let err = stage(&src, &dir.path().join("stage3"), 0).unwrap_err().to_string();
        assert!(err.contains("already has a SHA256SUMS"), "{err}");
    }
}
