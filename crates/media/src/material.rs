//! The material disc: a folder (CSRs, ceremony step configurations, scripts) as an ISO 9660 image
//! with Rock Ridge and Joliet and a `SHA256SUMS` of its files at the root. The same folder gives
//! the same bytes whatever the files' mtimes, the order they were created in, the umask or the
//! user: the folder is staged with fixed modes and dates, xorriso sorts names and writes owner 0
//! (`-r`), and every date comes from the given epoch.
//!
//! What may go on the disc is narrow on purpose: directories and regular files. Symlinks are
//! refused (a reader's tools may follow them off the disc, and a chain of relative links is easy
//! to get wrong); so are device nodes, FIFOs and sockets. Names must be valid UTF-8 without
//! control characters (a newline would forge a line of `SHA256SUMS`), at most 103 characters
//! (Joliet's limit with `-joliet-long`), and unique within their directory ignoring case (Joliet
//! readers on Windows and macOS fold case): otherwise two files would become one on the disc.

use crate::MediaError;
use ceremony_os_runner::Cmd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest file name Joliet (with `-joliet-long`) carries without truncating.
const MAX_NAME_CHARS: usize = 103;

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
/// directories 0755, every mtime `epoch`; then write `SHA256SUMS` of the regular files at the
/// root. Anything else, a name the disc cannot carry unambiguously and an existing top-level
/// `SHA256SUMS` are refused, naming the file.
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

/// Check one name: what the disc and SHA256SUMS can carry.
fn check_name(path: &Path, raw: &std::ffi::OsStr) -> Result<String, MediaError> {
    let refuse = |message: String| Err(MediaError::Refused { path: path.to_path_buf(), message });
    let Some(name) = raw.to_str() else {
        return refuse(
            "its name is not valid UTF-8; the disc's Joliet names and SHA256SUMS could not carry it".into(),
        );
    };
    if name.chars().any(char::is_control) {
        return refuse(format!(
            "its name {name:?} holds a control character (a newline would forge a SHA256SUMS line)"
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return refuse(format!(
            "its name is longer than {MAX_NAME_CHARS} characters, which Joliet would truncate"
        ));
    }
    if name.contains('\\') {
        return refuse(format!("its name {name:?} holds a backslash, which sha256sum escapes"));
    }
    // Joliet is UCS-2, and xorriso writes `*:;?` as `_` there: a reader of the Joliet tree would
    // see another name than the Rock Ridge tree and SHA256SUMS list.
    if let Some(c) = name.chars().find(|c| "*:;?".contains(*c) || u32::from(*c) > 0xffff) {
        return refuse(format!(
            "its name {name:?} holds {c:?}, which the disc's Joliet names cannot carry (readers of Joliet would see another name)"
        ));
    }
    Ok(name.to_string())
}

fn copy_dir(root: &Path, dir: &Path, dest: &Path, files: &mut Vec<MaterialFile>) -> Result<(), MediaError> {
    set_mode(dest, 0o755)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MediaError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| MediaError::io(dir, err)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let mut folded: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for path in entries {
        let name = check_name(&path, path.file_name().expect("entries have names"))?;
        if let Some(other) = folded.insert(name.to_lowercase(), path.clone()) {
            return Err(MediaError::Refused {
                path,
                message: format!(
                    "its name differs from {} only in case; on the disc they would be one file",
                    other.display()
                ),
            });
        }
        let target = dest.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| MediaError::io(&path, e))?;
        let relative = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        if meta.is_dir() {
            std::fs::create_dir(&target).map_err(|e| MediaError::io(&target, e))?;
            copy_dir(root, &path, &target, files)?;
        } else if meta.is_file() {
            let mut source = crate::open_regular(&path)?;
            let mut copy = std::fs::File::create(&target).map_err(|e| MediaError::io(&target, e))?;
            std::io::copy(&mut source, &mut copy).map_err(|e| MediaError::io(&path, e))?;
            set_mode(&target, if meta.mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
            let (sha256, size) = crate::sha256_prefix(&target, None)?;
            files.push(MaterialFile { path: relative, sha256, size });
        } else if meta.file_type().is_symlink() {
            return Err(MediaError::Refused {
                path,
                message: "is a symlink; a material disc holds files and directories only (copy the file it points to)".into(),
            });
        } else {
            return Err(MediaError::Refused {
                path,
                message: "is a device, FIFO or socket; only files and directories go on a disc".into(),
            });
        }
    }
    Ok(())
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

/// A material disc to make.
#[derive(Debug)]
pub struct MaterialRequest<'a> {
    pub dir: &'a Path,
    pub output: &'a Path,
    pub label: &'a str,
    /// Every date on the disc.
    pub epoch: i64,
}

#[derive(Debug, Clone)]
pub struct MaterialReport {
    pub label: String,
    pub sha256: String,
    pub size: u64,
    pub files: Vec<MaterialFile>,
}

/// Refuse an output that is not a regular file (a device node, a directory, a symlink, a FIFO)
/// or that lies inside the folder being put on the disc.
fn check_output(dir: &Path, output: &Path) -> Result<(), MediaError> {
    let refuse =
        |message: &str| Err(MediaError::Refused { path: output.to_path_buf(), message: message.into() });
    if let Ok(meta) = std::fs::symlink_metadata(output)
        && !meta.is_file()
    {
        return refuse("exists and is not a regular file; -o only replaces a regular file");
    }
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = parent.canonicalize().map_err(|e| MediaError::io(parent, e))?;
    let dir = dir.canonicalize().map_err(|e| MediaError::io(dir, e))?;
    if parent.starts_with(&dir) {
        return refuse(&format!("is inside the folder {} that goes on the disc", dir.display()));
    }
    Ok(())
}

/// Make the disc: check the output, stage the folder, let `xorriso` (the locked toolchain's,
/// given by the caller as a command factory for a working directory) write the ISO, and rename it
/// into place only when complete.
pub fn make(
    request: &MaterialRequest<'_>,
    xorriso: &dyn Fn(&Path) -> Cmd,
) -> Result<MaterialReport, MediaError> {
    let label = validate_label(request.label)?;
    check_output(request.dir, request.output)?;
    let out_dir = request.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".material-")
        .tempdir_in(out_dir)
        .map_err(|e| MediaError::io(out_dir, e))?;
    let staging = work.path().join("disc");
    let files = stage(request.dir, &staging, request.epoch)?;
    let partial = work.path().join("material.iso");
    xorriso_args(xorriso(work.path()), &staging, &partial, &label, request.epoch).output()?;
    let (sha256, size) = crate::sha256_prefix(&partial, None)?;
    check_output(request.dir, request.output)?;
    std::fs::rename(&partial, request.output).map_err(|e| MediaError::io(request.output, e))?;
    Ok(MaterialReport { label, sha256, size, files })
}

/// Arguments for `xorriso` (run by the caller, from the locked toolchain) that write `staging` as
/// the data ISO `output`.
fn xorriso_args(cmd: Cmd, staging: &Path, output: &Path, label: &str, epoch: i64) -> Cmd {
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
        let files = stage(&src, &dir.path().join("stage"), 1_783_814_400).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["csr/ksk.csr", "step1.toml"]);
        let sums = std::fs::read_to_string(dir.path().join("stage/SHA256SUMS")).unwrap();
        assert!(sums.ends_with("  step1.toml\n"));
        assert_eq!(std::fs::metadata(dir.path().join("stage/csr")).unwrap().mtime(), 1_783_814_400);

        // A chain of relative links that each look harmless: refused like every symlink.
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::os::unix::fs::symlink("../..", src.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("up/../../../etc/passwd", src.join("a/b/x")).unwrap();
        let err = stage(&src, &dir.path().join("stage2"), 0).unwrap_err().to_string();
        assert!(err.contains("a/b/up") && err.contains("is a symlink"), "{err}");
        std::fs::remove_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("SHA256SUMS"), b"").unwrap();
        let err = stage(&src, &dir.path().join("stage3"), 0).unwrap_err().to_string();
        assert!(err.contains("already has a SHA256SUMS"), "{err}");
        std::fs::remove_file(src.join("SHA256SUMS")).unwrap();

        // Names the disc or SHA256SUMS cannot carry.
        use std::os::unix::ffi::OsStrExt;
        for (n, bad) in [
            &b"line\nd41d8cd98f00b204e9800998ecf8427e  forged"[..],
            &b"caf\xe9.txt"[..],
            "x".repeat(104).as_bytes(),
            b"csr:ksk.pem",
            b"why?.txt",
            "\u{1F600}.txt".as_bytes(),
        ]
        .into_iter()
        .enumerate()
        {
            let path = src.join(std::ffi::OsStr::from_bytes(bad));
            std::fs::write(&path, b"x").unwrap();
            let err = stage(&src, &dir.path().join(format!("names-{n}")), 0).unwrap_err().to_string();
            assert!(err.contains("its name"), "{err}");
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(src.join("README.txt"), b"a").unwrap();
        std::fs::write(src.join("readme.TXT"), b"b").unwrap();
        let err = stage(&src, &dir.path().join("case"), 0).unwrap_err().to_string();
        assert!(err.contains("only in case"), "{err}");
    }
}
