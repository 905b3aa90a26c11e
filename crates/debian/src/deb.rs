//! Reading .deb files in-process: the `ar` container, the control file, and the data archive.
//!
//! The build unpacks the locked toolchain and reads control fields with this code rather than
//! the host's dpkg-deb and tar, so the host's versions of those cannot change what is built.
//! Format: deb(5): an ar archive of `debian-binary` ("2.0\n"), `control.tar[.gz|.xz]` and
//! `data.tar[.gz|.xz]`, in that order. zstd members (used by Ubuntu, never by Debian) are refused
//! with a clear error.

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a Debian binary package: {message}", path.display())]
    Format { path: PathBuf, message: String },
}

impl DebError {
    fn format(path: &Path, message: impl Into<String>) -> Self {
        DebError::Format { path: path.to_path_buf(), message: message.into() }
    }
}

/// The text of the package's `control` file (its fields as dpkg-deb --field prints them).
pub fn control_text(deb: &Path) -> Result<String, DebError> {
    let mut text = None;
    with_member(deb, "control.tar", |archive| {
        for entry in archive.entries().map_err(|e| DebError::Io { path: deb.to_path_buf(), source: e })? {
            let mut entry = entry.map_err(|e| DebError::Io { path: deb.to_path_buf(), source: e })?;
            let path = entry.path().map_err(|e| DebError::Io { path: deb.to_path_buf(), source: e })?;
            if path == Path::new("./control") || path == Path::new("control") {
                let mut s = String::new();
                entry
                    .read_to_string(&mut s)
                    .map_err(|e| DebError::format(deb, format!("control is not UTF-8 text: {e}")))?;
                text = Some(s);
                break;
            }
        }
        Ok(())
    })?;
    text.ok_or_else(|| DebError::format(deb, "control.tar holds no ./control"))
}

/// Unpack the package's files (`data.tar`) into `dest`: [`DataTar::unpack`].
pub fn unpack_data(deb: &Path, dest: &Path) -> Result<(), DebError> {
    data_tar(deb)?.unpack(dest)
}

/// A package's file archive, decompressed into memory: split from writing it out so that a
/// caller can decompress the next package on one core while it writes this one on the other.
#[derive(Debug)]
pub struct DataTar {
    deb: PathBuf,
    tar: Vec<u8>,
}

/// The most a `data.tar` may hold when decompressed into memory (Debian's largest packages hold
/// a few hundred MB; a crafted one could decompress without end).
pub const DATA_TAR_LIMIT: u64 = 1 << 30;

/// Read and decompress the package's `data.tar` (at most [`DATA_TAR_LIMIT`] bytes).
pub fn data_tar(deb: &Path) -> Result<DataTar, DebError> {
    data_tar_within(deb, DATA_TAR_LIMIT)
}

fn data_tar_within(deb: &Path, limit: u64) -> Result<DataTar, DebError> {
    let mut tar = Vec::new();
    with_member_reader(deb, "data.tar", |reader| {
        reader
            .take(limit + 1)
            .read_to_end(&mut tar)
            .map_err(|e| DebError::Io { path: deb.to_path_buf(), source: e })?;
        if tar.len() as u64 > limit {
            return Err(DebError::format(deb, format!("data.tar decompresses to more than {limit} bytes")));
        }
        Ok(())
    })?;
    Ok(DataTar { deb: deb.to_path_buf(), tar })
}

impl DataTar {
    /// Unpack the files into `dest` with their modes, owners and mtimes, without extended
    /// attributes. Entries that would land outside `dest` are refused by the tar reader; the
    /// packages unpacked this way are verified against the lock first.
    pub fn unpack(&self, dest: &Path) -> Result<(), DebError> {
        let mut archive = tar::Archive::new(self.tar.as_slice());
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        archive.unpack(dest).map_err(|e| DebError::Io { path: self.deb.clone(), source: e })
    }
}

/// Find the ar member `<prefix>[.gz|.xz]` and hand its tar archive to `f`.
fn with_member(
    deb: &Path,
    prefix: &str,
    f: impl FnOnce(&mut tar::Archive<Box<dyn Read + '_>>) -> Result<(), DebError>,
) -> Result<(), DebError> {
    with_member_reader(deb, prefix, |reader| f(&mut tar::Archive::new(reader)))
}

/// Find the ar member `<prefix>[.gz|.xz]` and hand its decompressed bytes to `f`.
fn with_member_reader(
    deb: &Path,
    prefix: &str,
    f: impl FnOnce(Box<dyn Read + '_>) -> Result<(), DebError>,
) -> Result<(), DebError> {
    let io = |source| DebError::Io { path: deb.to_path_buf(), source };
    let file = std::fs::File::open(deb).map_err(io)?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    let mut first = true;
    while let Some(member) = ar.next_entry() {
        let mut member = member.map_err(|e| DebError::format(deb, e.to_string()))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if first {
            first = false;
            let mut magic = Vec::new();
            member.read_to_end(&mut magic).map_err(io)?;
            if name != "debian-binary" || !magic.starts_with(b"2.") {
                return Err(DebError::format(
                    deb,
                    format!("first member is {name:?}, expected debian-binary 2.x"),
                ));
            }
            continue;
        }
        let Some(compression) = name.strip_prefix(prefix) else { continue };
        let reader: Box<dyn Read + '_> = match compression {
            "" => Box::new(member),
            ".gz" => Box::new(flate2::read::GzDecoder::new(member)),
            ".xz" => Box::new(liblzma::read::XzDecoder::new(member)),
            other => {
                return Err(DebError::format(deb, format!("{prefix}{other}: unsupported compression")));
            }
        };
        return f(reader);
    }
    Err(DebError::format(deb, format!("no {prefix}.* member")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .deb made by dpkg-deb, the format's reference implementation.
    fn build_deb(dir: &Path, compression: &str) -> PathBuf {
        let root = dir.join(format!("pkg-{compression}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: demo\nVersion: 1.0-1\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: demo\n",
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/demo"), b"#!/bin/sh\necho demo\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("usr/bin/demo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("demo", root.join("usr/bin/demo-link")).unwrap();
        let deb = dir.join(format!("demo-{compression}.deb"));
        let status = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
            .arg(&root)
            .arg(&deb)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        deb
    }

    #[test]
    fn reads_control_and_unpacks_data_like_dpkg_deb() {
        let dir = tempfile::tempdir().unwrap();
        for compression in ["xz", "gzip", "none"] {
            let deb = build_deb(dir.path(), compression);
            let control = control_text(&deb).unwrap();
            assert!(control.starts_with("Package: demo\nVersion: 1.0-1\n"), "{compression}: {control}");
            let dest = dir.path().join(format!("unpacked-{compression}"));
            std::fs::create_dir_all(&dest).unwrap();
            unpack_data(&deb, &dest).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dest.join("usr/bin/demo")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
            assert_eq!(std::fs::read_link(dest.join("usr/bin/demo-link")).unwrap(), Path::new("demo"));
        }
    }

    #[test]
    fn a_data_tar_larger_than_the_limit_is_refused_not_read_on() {
        let dir = tempfile::tempdir().unwrap();
        let deb = build_deb(dir.path(), "xz");
        let size = data_tar(&deb).unwrap().tar.len() as u64;
        assert!(data_tar_within(&deb, size).is_ok());
        let err = data_tar_within(&deb, size - 1).unwrap_err().to_string();
        assert!(err.contains("demo-xz.deb") && err.contains(&format!("more than {}", size - 1)), "{err}");
    }

    #[test]
    fn refuses_what_is_not_a_deb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.deb");
        std::fs::write(&path, b"!<arch>\n").unwrap();
        let err = control_text(&path).unwrap_err().to_string();
        assert!(err.contains("x.deb") && err.contains("no control.tar"), "{err}");
        std::fs::write(&path, b"not an archive at all").unwrap();
        let err = unpack_data(&path, dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a Debian binary package"), "{err}");
    }
}
